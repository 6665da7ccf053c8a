//! `Liveness`: the probability that a face is a live person rather than a printed photo or a screen.
//! Reported with every face; it decides nothing alone yet (DESIGN.md: a face failing liveness goes to
//! review, never straight to "present").

use fast_image_resize::{
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image, images::ImageRef,
};
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::VisionError;
use super::manifest::LivenessSpec;

pub struct Liveness {
    session: Session,
    spec: LivenessSpec,
    resizer: Resizer,
}

impl Liveness {
    pub(super) fn new(session: Session, spec: LivenessSpec) -> Liveness {
        Liveness {
            session,
            spec,
            resizer: Resizer::new(),
        }
    }

    pub fn spec(&self) -> &LivenessSpec {
        &self.spec
    }

    /// Uses a different input description, for calibration experiments (channel order).
    pub fn set_spec(&mut self, spec: LivenessSpec) {
        self.spec = spec;
    }

    /// Crops the face box enlarged by `box_scale` (clamped to the frame), resizes it to the model's
    /// square and returns the softmax probability of the live class.
    pub fn live_probability(
        &mut self,
        frame: &RgbImage,
        bbox: &[f32; 4],
    ) -> Result<f32, VisionError> {
        let name = &self.spec.name;
        let size = self
            .spec
            .input
            .size
            .expect("checked when the manifest was parsed");
        let [left, top, right, bottom] =
            enlarged_box(bbox, self.spec.box_scale, frame.width(), frame.height());
        if right <= left || bottom <= top {
            return Err(VisionError::inference(
                name,
                "face box lies outside the frame",
            ));
        }
        let source = ImageRef::new(
            frame.width(),
            frame.height(),
            frame.as_raw(),
            PixelType::U8x3,
        )
        .map_err(|e| VisionError::inference(name, e))?;
        let mut crop = Image::new(size, size, PixelType::U8x3);
        let options = ResizeOptions::new()
            .crop(
                left as f64,
                top as f64,
                (right - left) as f64,
                (bottom - top) as f64,
            )
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer
            .resize(&source, &mut crop, &options)
            .map_err(|e| VisionError::inference(name, e))?;
        let mut input = Vec::new();
        self.spec.input.push_planar(crop.buffer(), &mut input);
        let side = size as usize;
        let tensor = TensorRef::from_array_view(([1, 3, side, side], input.as_slice()))
            .map_err(|e| VisionError::inference(name, e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.name.as_str() => tensor])
            .map_err(|e| VisionError::inference(name, e))?;
        let (_, logits) = outputs[self.spec.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| VisionError::inference(name, e))?;
        softmax(logits)
            .get(self.spec.live_class)
            .copied()
            .ok_or_else(|| {
                VisionError::inference(
                    name,
                    format!(
                        "{} classes, live class is {}",
                        logits.len(),
                        self.spec.live_class
                    ),
                )
            })
    }
}

/// The box scaled around its centre, rounded outwards to whole pixels and clamped to the frame
/// (whole pixels, so the crop can never poke past the frame by a rounding error).
fn enlarged_box(bbox: &[f32; 4], scale: f32, width: u32, height: u32) -> [u32; 4] {
    let [cx, cy] = [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0];
    let [half_w, half_h] = [
        (bbox[2] - bbox[0]) * scale / 2.0,
        (bbox[3] - bbox[1]) * scale / 2.0,
    ];
    let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32) as u32;
    [
        clamp((cx - half_w).floor(), width),
        clamp((cy - half_h).floor(), height),
        clamp((cx + half_w).ceil(), width),
        clamp((cy + half_h).ceil(), height),
    ]
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enlarged_box_is_clamped_to_the_frame() {
        assert_eq!(
            enlarged_box(&[40.0, 40.0, 60.0, 60.0], 2.0, 100, 100),
            [30, 30, 70, 70]
        );
        assert_eq!(
            enlarged_box(&[0.0, 0.0, 20.0, 20.0], 3.0, 100, 100),
            [0, 0, 40, 40]
        );
        assert_eq!(
            enlarged_box(&[40.5, 60.2, 99.9, 99.7], 2.7, 100, 100),
            [0, 26, 100, 100]
        );
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[3.9, -0.5, -3.4]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > 0.98);
    }
}
