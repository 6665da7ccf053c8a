//! Alignment: a least-squares similarity transform (rotation, uniform scale, translation) of the
//! detector's five landmarks onto the embedder's template, then a bilinear warp of the face into a
//! small square. Without it the embedder loses ~9 points of LFW accuracy.

use image::RgbImage;

/// An aligned face crop: `size` x `size` interleaved RGB bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignedFace {
    pub size: u32,
    pub rgb: Vec<u8>,
}

/// `[x', y'] = [[a, -b], [b, a]] [x, y] + [tx, ty]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// Least-squares fit of `to ≈ T(from)` (the closed form of Umeyama's method for 2-D similarities).
    pub fn fit(from: &[[f32; 2]], to: &[[f32; 2]]) -> Similarity {
        let n = from.len().min(to.len()).max(1) as f64;
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(sx, sy), p| {
                (sx + p[0] as f64, sy + p[1] as f64)
            });
            (sx / n, sy / n)
        };
        let (fx, fy) = mean(from);
        let (tx, ty) = mean(to);
        let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
        for (p, q) in from.iter().zip(to) {
            let (px, py) = (p[0] as f64 - fx, p[1] as f64 - fy);
            let (qx, qy) = (q[0] as f64 - tx, q[1] as f64 - ty);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        if norm <= f64::EPSILON {
            // All landmarks on one point: nothing to fit. Identity keeps the warp well defined.
            return Similarity {
                a: 1.0,
                b: 0.0,
                tx: 0.0,
                ty: 0.0,
            };
        }
        let (a, b) = (dot / norm, cross / norm);
        Similarity {
            a: a as f32,
            b: b as f32,
            tx: (tx - (a * fx - b * fy)) as f32,
            ty: (ty - (b * fx + a * fy)) as f32,
        }
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, -self.b / det);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }
}

/// Warps the face whose landmarks are given (frame pixels) onto `template` in a `size` square.
///
/// Pixels are sampled bilinearly with pixel `i` at coordinate `i` (OpenCV's `warpAffine`
/// convention, which the reference used); outside the frame reads black.
pub fn align_face(
    frame: &RgbImage,
    landmarks: &[[f32; 2]; 5],
    template: &[[f32; 2]; 5],
    size: u32,
) -> AlignedFace {
    let crop_from_frame = Similarity::fit(landmarks, template);
    let frame_from_crop = crop_from_frame.inverse();
    let (width, height) = (frame.width() as i64, frame.height() as i64);
    let src = frame.as_raw();
    let stride = width as usize * 3;
    let mut rgb = vec![0u8; (size * size * 3) as usize];
    let pixel = |x: i64, y: i64| -> [f32; 3] {
        if x < 0 || y < 0 || x >= width || y >= height {
            [0.0; 3]
        } else {
            let i = y as usize * stride + x as usize * 3;
            [src[i] as f32, src[i + 1] as f32, src[i + 2] as f32]
        }
    };
    for v in 0..size {
        for u in 0..size {
            let [sx, sy] = frame_from_crop.apply([u as f32, v as f32]);
            // floor() and round() are library calls on baseline x86-64 (no SSE4.1) and cost more
            // than the rest of the warp: truncate and correct instead.
            let (x0, y0) = (floor_i64(sx), floor_i64(sy));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            // Most of a face lies inside the frame: read the 2x2 block directly there.
            let [p00, p10, p01, p11] = if x0 >= 0 && y0 >= 0 && x0 + 1 < width && y0 + 1 < height {
                let i = y0 as usize * stride + x0 as usize * 3;
                let at = |i: usize| [src[i] as f32, src[i + 1] as f32, src[i + 2] as f32];
                [at(i), at(i + 3), at(i + stride), at(i + stride + 3)]
            } else {
                [
                    pixel(x0, y0),
                    pixel(x0 + 1, y0),
                    pixel(x0, y0 + 1),
                    pixel(x0 + 1, y0 + 1),
                ]
            };
            let out = ((v * size + u) * 3) as usize;
            for c in 0..3 {
                let top = p00[c] + (p10[c] - p00[c]) * fx;
                let bottom = p01[c] + (p11[c] - p01[c]) * fx;
                // `as u8` saturates, so this rounds and clamps to 0..=255 in one step.
                rgb[out + c] = (top + (bottom - top) * fy + 0.5) as u8;
            }
        }
    }
    AlignedFace { size, rgb }
}

fn floor_i64(v: f32) -> i64 {
    let t = v as i64;
    if (t as f32) > v { t - 1 } else { t }
}

impl AlignedFace {
    /// Luma (BT.601) of each pixel, for quality measures.
    pub fn grey(&self) -> Vec<f32> {
        self.rgb
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_an_exact_similarity() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 5.0,
            ty: -2.0,
        };
        let from = [
            [10.0, 20.0],
            [40.0, 22.0],
            [25.0, 35.0],
            [12.0, 50.0],
            [38.0, 51.0],
        ];
        let to = from.map(|p| truth.apply(p));
        let fitted = Similarity::fit(&from, &to);
        for (got, want) in [fitted.a, fitted.b, fitted.tx, fitted.ty]
            .iter()
            .zip([0.8, 0.3, 5.0, -2.0])
        {
            assert!((got - want).abs() < 1e-4, "{fitted:?}");
        }
        let back = fitted.inverse().apply(to[2]);
        assert!((back[0] - 25.0).abs() < 1e-3 && (back[1] - 35.0).abs() < 1e-3);
    }

    #[test]
    fn landmarks_already_on_the_template_give_a_copy() {
        let template = [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ];
        let frame = RgbImage::from_fn(112, 112, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let aligned = align_face(&frame, &template, &template, 112);
        assert_eq!(aligned.rgb, frame.into_raw());
    }

    #[test]
    fn degenerate_landmarks_do_not_panic() {
        let frame = RgbImage::new(4, 4);
        let aligned = align_face(&frame, &[[1.0, 1.0]; 5], &[[0.0, 0.0]; 5], 8);
        assert_eq!(aligned.rgb.len(), 8 * 8 * 3);
    }
}
