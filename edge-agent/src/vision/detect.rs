//! `Detector`: RetinaFace on a whole frame at (about) its own resolution, decoded into boxes and five
//! landmarks per face, in pixels of the frame it was given.

use fast_image_resize::{
    PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image, images::ImageRef,
};
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::VisionError;
use super::manifest::DetectorSpec;

/// How a frame is sized for the detector.
#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// Frames whose longer side exceeds this many pixels are scaled down first: beyond ~1280 px the
    /// cost grows with the area while classroom faces are already large enough to find.
    pub max_side: u32,
    /// Extra scale applied after that, for rooms whose back rows are small (1.5 finds ~80 % of
    /// crowded faces instead of ~70 %, at 2.25x the cost).
    pub upscale: f32,
}

impl Default for DetectOptions {
    fn default() -> DetectOptions {
        DetectOptions {
            max_side: 1280,
            upscale: 1.0,
        }
    }
}

impl DetectOptions {
    /// The factor from frame pixels to detector-input pixels.
    pub fn scale_for(&self, width: u32, height: u32) -> f32 {
        let longer = width.max(height).max(1) as f32;
        (self.max_side as f32 / longer).min(1.0) * self.upscale
    }
}

/// One face as the detector saw it, in frame pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Image-left eye, image-right eye, nose tip, left and right mouth corners.
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    pub fn centre(&self) -> [f32; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }

    pub fn eye_distance(&self) -> f32 {
        let [l, r] = [self.landmarks[0], self.landmarks[1]];
        ((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2)).sqrt()
    }
}

pub struct Detector {
    session: Session,
    spec: DetectorSpec,
    options: DetectOptions,
    resizer: Resizer,
    /// Reused between frames of the same size.
    input: Vec<f32>,
}

impl Detector {
    pub(super) fn new(session: Session, spec: DetectorSpec, options: DetectOptions) -> Detector {
        Detector {
            session,
            spec,
            options,
            resizer: Resizer::new(),
            input: Vec::new(),
        }
    }

    pub fn options(&self) -> &DetectOptions {
        &self.options
    }

    pub fn set_options(&mut self, options: DetectOptions) {
        self.options = options;
    }

    /// Finds faces in an RGB frame, best score first.
    pub fn detect(&mut self, frame: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        let (width, height) = frame.dimensions();
        let scale = self.options.scale_for(width, height);
        let input_width = ((width as f32 * scale).round() as u32).max(1);
        let input_height = ((height as f32 * scale).round() as u32).max(1);

        let resized;
        let pixels: &[u8] = if (input_width, input_height) == (width, height) {
            frame.as_raw()
        } else {
            resized = self.resize(frame, input_width, input_height)?;
            resized.buffer()
        };
        self.input.clear();
        self.spec.input.push_planar(pixels, &mut self.input);

        let name = &self.spec.name;
        let shape = [1, 3, input_height as usize, input_width as usize];
        let tensor = TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(|e| VisionError::inference(name, e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.name.as_str() => tensor])
            .map_err(|e| VisionError::inference(name, e))?;
        let extract = |output: &str| {
            outputs[output]
                .try_extract_tensor::<f32>()
                .map(|(_, data)| data)
                .map_err(|e| VisionError::inference(name, e))
        };
        let boxes = extract(&self.spec.outputs.boxes)?;
        let scores = extract(&self.spec.outputs.scores)?;
        let landmarks = extract(&self.spec.outputs.landmarks)?;

        let mut detections = decode(
            &self.spec,
            input_width,
            input_height,
            boxes,
            scores,
            landmarks,
        )
        .map_err(|reason| VisionError::inference(name, reason))?;
        detections = non_maximum_suppression(detections, self.spec.nms_iou);
        let to_frame = 1.0 / scale;
        for detection in &mut detections {
            for v in &mut detection.bbox {
                *v *= to_frame;
            }
            for point in &mut detection.landmarks {
                point[0] *= to_frame;
                point[1] *= to_frame;
            }
        }
        Ok(detections)
    }

    fn resize(
        &mut self,
        frame: &RgbImage,
        width: u32,
        height: u32,
    ) -> Result<Image<'static>, VisionError> {
        let name = &self.spec.name;
        let source = ImageRef::new(
            frame.width(),
            frame.height(),
            frame.as_raw(),
            PixelType::U8x3,
        )
        .map_err(|e| VisionError::inference(name, e))?;
        let mut resized = Image::new(width, height, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
            fast_image_resize::FilterType::Bilinear,
        ));
        self.resizer
            .resize(&source, &mut resized, &options)
            .map_err(|e| VisionError::inference(name, e))?;
        Ok(resized)
    }
}

/// Turns the raw per-anchor outputs into detections above the score threshold, in input pixels.
///
/// Anchors, in output order: for each stride a ceil(W/s) x ceil(H/s) grid, row by row, each cell
/// holding one anchor per size, centred at ((x+0.5)s, (y+0.5)s).
fn decode(
    spec: &DetectorSpec,
    width: u32,
    height: u32,
    boxes: &[f32],
    scores: &[f32],
    landmarks: &[f32],
) -> Result<Vec<Detection>, String> {
    let n_anchors: usize = spec
        .strides
        .iter()
        .zip(&spec.anchor_sizes)
        .map(|(&s, sizes)| (width.div_ceil(s) * height.div_ceil(s)) as usize * sizes.len())
        .sum();
    if boxes.len() != n_anchors * 4
        || scores.len() != n_anchors * 2
        || landmarks.len() != n_anchors * 10
    {
        return Err(format!(
            "expected {n_anchors} anchors for a {width}x{height} input, got outputs of {}, {} and {} values",
            boxes.len(),
            scores.len(),
            landmarks.len()
        ));
    }
    let [centre_variance, size_variance] = spec.variances;
    let mut detections = Vec::new();
    let mut anchor_idx = 0;
    for (&stride, sizes) in spec.strides.iter().zip(&spec.anchor_sizes) {
        let (cols, rows) = (width.div_ceil(stride), height.div_ceil(stride));
        for y in 0..rows {
            for x in 0..cols {
                let cx = (x as f32 + 0.5) * stride as f32;
                let cy = (y as f32 + 0.5) * stride as f32;
                for &size in sizes {
                    let idx = anchor_idx;
                    anchor_idx += 1;
                    let score = scores[idx * 2 + 1];
                    if score <= spec.score_threshold {
                        continue;
                    }
                    let size = size as f32;
                    let d = &boxes[idx * 4..idx * 4 + 4];
                    let bx = cx + d[0] * centre_variance * size;
                    let by = cy + d[1] * centre_variance * size;
                    let bw = size * (d[2] * size_variance).exp();
                    let bh = size * (d[3] * size_variance).exp();
                    let l = &landmarks[idx * 10..idx * 10 + 10];
                    let point = |k: usize| {
                        [
                            cx + l[2 * k] * centre_variance * size,
                            cy + l[2 * k + 1] * centre_variance * size,
                        ]
                    };
                    detections.push(Detection {
                        bbox: [bx - bw / 2.0, by - bh / 2.0, bx + bw / 2.0, by + bh / 2.0],
                        score,
                        landmarks: [point(0), point(1), point(2), point(3), point(4)],
                    });
                }
            }
        }
    }
    Ok(detections)
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = w * h;
    let union = area(a) + area(b) - intersection;
    if union <= 0.0 {
        0.0
    } else {
        intersection / union
    }
}

/// Greedy NMS: keeps the best-scoring box of every group overlapping by more than `max_iou`.
fn non_maximum_suppression(mut detections: Vec<Detection>, max_iou: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(detections.len().min(64));
    for candidate in detections {
        if kept
            .iter()
            .all(|k| iou(&k.bbox, &candidate.bbox) <= max_iou)
        {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn nms_keeps_best_of_overlapping_boxes() {
        let kept = non_maximum_suppression(
            vec![
                detection([0.0, 0.0, 10.0, 10.0], 0.7),
                detection([1.0, 1.0, 11.0, 11.0], 0.9),
                detection([20.0, 20.0, 30.0, 30.0], 0.8),
            ],
            0.4,
        );
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn iou_of_disjoint_and_identical_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[0.0, 0.0, 2.0, 2.0]), 1.0);
    }

    #[test]
    fn decode_places_a_zero_offset_anchor_at_its_cell_centre() {
        let spec = super::super::Manifest::builtin().detector;
        let (w, h) = (32, 32);
        let n: usize = [8u32, 16, 32]
            .iter()
            .map(|s| (w / s * h / s) as usize * 2)
            .sum();
        let boxes = vec![0.0; n * 4];
        let landmarks = vec![0.0; n * 10];
        let mut scores = vec![0.0; n * 2];
        // Anchor 3 is stride 8, cell (1, 0), second size (32 px).
        scores[3 * 2 + 1] = 0.99;
        let found = decode(&spec, w, h, &boxes, &scores, &landmarks).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].bbox, [-4.0, -12.0, 28.0, 20.0]);
        assert_eq!(found[0].landmarks[2], [12.0, 4.0]);
    }

    #[test]
    fn decode_refuses_outputs_of_the_wrong_size() {
        let spec = super::super::Manifest::builtin().detector;
        assert!(decode(&spec, 32, 32, &[0.0; 4], &[0.0; 2], &[0.0; 10]).is_err());
    }

    #[test]
    fn large_frames_are_scaled_to_max_side() {
        let options = DetectOptions::default();
        assert_eq!(options.scale_for(1280, 720), 1.0);
        assert_eq!(options.scale_for(1920, 1080), 1280.0 / 1920.0);
        assert_eq!(options.scale_for(250, 250), 1.0);
        let up = DetectOptions {
            upscale: 1.5,
            ..DetectOptions::default()
        };
        assert_eq!(up.scale_for(1280, 720), 1.5);
    }
}
