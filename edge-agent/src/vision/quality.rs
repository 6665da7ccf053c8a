//! Quality of a detected face: size, eye distance, sharpness and rough pose, and the gate that
//! decides whether a face is usable for matching or enrolment.

use shared_proto::ml::FaceQuality;

use super::align::AlignedFace;
use super::detect::Detection;

/// Thresholds a face must meet to be matched or enrolled.
#[derive(Clone, Debug)]
pub struct QualityGate {
    /// Below this eye distance (pixels) different people look too alike: count, never match.
    pub min_eye_distance: f32,
    /// Variance of the Laplacian of the aligned grey face below which it is too blurry.
    /// Calibrated on LFW dev: its blurriest face scores 11.7 (1 % under 29), while a Gaussian blur
    /// of sigma 2 px brings a typical face from 80 to 3.
    pub min_sharpness: f32,
}

impl Default for QualityGate {
    fn default() -> QualityGate {
        QualityGate {
            min_eye_distance: 12.0,
            min_sharpness: 8.0,
        }
    }
}

impl QualityGate {
    pub fn large_enough(&self, quality: &FaceQuality) -> bool {
        quality.eye_distance >= self.min_eye_distance
    }

    pub fn sharp_enough(&self, quality: &FaceQuality) -> bool {
        quality.sharpness >= self.min_sharpness
    }
}

/// One 0-1 score of a face as a template, stored with it and sent to the server: sharpness
/// saturating (a typical LFW face, ~80, scores 0.6; the gate's 8 scores 0.14), scaled down as the
/// face turns (yaw 45 halves it; 60, the enrolment limit, leaves a third).
pub fn template_score(quality: &FaceQuality) -> f32 {
    let sharp = quality.sharpness.max(0.0) / (quality.sharpness.max(0.0) + 50.0);
    let frontal = 1.0 - (quality.yaw_degrees.abs() / 90.0).min(1.0);
    (sharp * frontal).clamp(0.0, 1.0)
}

pub fn measure_quality(detection: &Detection, aligned: &AlignedFace) -> FaceQuality {
    FaceQuality {
        box_width: detection.width(),
        box_height: detection.height(),
        eye_distance: detection.eye_distance(),
        sharpness: laplacian_variance(&aligned.grey(), aligned.size as usize),
        yaw_degrees: rough_yaw_degrees(&detection.landmarks),
        liveness: None,
    }
}

/// Variance of the 4-neighbour Laplacian over the interior of a square grey image.
fn laplacian_variance(grey: &[f32], size: usize) -> f32 {
    if size < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            let i = y * size + x;
            let l = (grey[i - 1] + grey[i + 1] + grey[i - size] + grey[i + size] - 4.0 * grey[i])
                as f64;
            sum += l;
            sum_sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean) as f32
}

/// Head yaw from how far the nose tip sits from the eyes' midpoint, measured along the eye line
/// (so head roll does not count): 0 when frontal, about ±90 when the nose reaches an eye.
fn rough_yaw_degrees(landmarks: &[[f32; 2]; 5]) -> f32 {
    let [left, right, nose] = [landmarks[0], landmarks[1], landmarks[2]];
    let (ex, ey) = (right[0] - left[0], right[1] - left[1]);
    let eye_distance = (ex * ex + ey * ey).sqrt();
    if eye_distance < f32::EPSILON {
        return 0.0;
    }
    let mid = [(left[0] + right[0]) / 2.0, (left[1] + right[1]) / 2.0];
    let along = ((nose[0] - mid[0]) * ex + (nose[1] - mid[1]) * ey) / eye_distance;
    (along / (eye_distance / 2.0))
        .clamp(-1.0, 1.0)
        .asin()
        .to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_image_has_no_sharpness_and_a_checkerboard_plenty() {
        assert_eq!(laplacian_variance(&[128.0; 16 * 16], 16), 0.0);
        let checker: Vec<f32> = (0..256)
            .map(|i| {
                if (i / 16 + i % 16) % 2 == 0 {
                    0.0
                } else {
                    255.0
                }
            })
            .collect();
        assert!(laplacian_variance(&checker, 16) > 1000.0);
    }

    #[test]
    fn yaw_is_zero_when_frontal_and_grows_as_the_nose_moves() {
        let frontal = [
            [40.0, 50.0],
            [70.0, 50.0],
            [55.0, 65.0],
            [42.0, 80.0],
            [68.0, 80.0],
        ];
        assert!(rough_yaw_degrees(&frontal).abs() < 1e-3);
        let mut turned = frontal;
        turned[2][0] = 62.5;
        assert!((rough_yaw_degrees(&turned) - 30.0).abs() < 0.1);
    }
}
