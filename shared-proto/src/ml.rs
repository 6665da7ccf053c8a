//! The ML API: what an ML endpoint (an `edge-agent` box, its CLI with `--json`, later its HTTP API)
//! answers about images. Coordinates are pixels of the original image, after EXIF orientation.

use serde::{Deserialize, Serialize};

use crate::{EmbeddingSpace, ModelId};

/// One detected face.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectedFace {
    /// `[x1, y1, x2, y2]`.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detector confidence, 0-1.
    pub score: f32,
    /// Image-left eye, image-right eye, nose tip, left and right mouth corners, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
    pub quality: FaceQuality,
}

/// Measurements that decide whether a face is good enough to match or enrol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceQuality {
    /// Width and height of the detection box, pixels.
    pub box_width: f32,
    pub box_height: f32,
    /// Distance between the eye landmarks, pixels. Under ~12 px faces are counted, never matched.
    pub eye_distance: f32,
    /// Variance of the Laplacian of the aligned 112x112 grey face: low means blurry.
    pub sharpness: f32,
    /// Rough head yaw from the landmarks, degrees (0 = frontal, sign = towards image-right).
    pub yaw_degrees: f32,
    /// Probability that the face is a live person rather than a photo or screen, 0-1. Reported
    /// only: it decides nothing on its own yet.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub liveness: Option<f32>,
}

/// Answer for one image of a detect call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectResponse {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<DetectedFace>,
}

/// Answer for one image of an embed call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub image: String,
    pub model: ModelId,
    /// Vectors are comparable only within one space.
    pub space: EmbeddingSpace,
    /// L2-normalised; similarity is the dot product.
    pub embedding: Vec<f32>,
}

/// A per-image failure: a stable machine-readable code plus a sentence for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageError {
    pub image: String,
    pub error: ErrorCode,
    pub message: String,
}

/// Machine-readable reasons an image gives no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The file could not be read.
    Unreadable,
    /// Not a JPEG or PNG, or corrupt.
    UndecodableImage,
    /// Too large (pixels or bytes) to decode safely.
    ImageTooLarge,
    /// Too small to hold a face.
    ImageTooSmall,
    NoFace,
    SeveralFaces,
    FaceTooSmall,
    FaceTooBlurry,
    /// The inference runtime failed on this input.
    Inference,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_snake_case() {
        let e = ImageError {
            image: "a.jpg".into(),
            error: ErrorCode::SeveralFaces,
            message: "2 usable faces".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"image":"a.jpg","error":"several_faces","message":"2 usable faces"}"#
        );
        assert_eq!(serde_json::from_str::<ImageError>(&json).unwrap(), e);
    }

    #[test]
    fn detected_face_uses_box_key() {
        let face = DetectedFace {
            bbox: [1.0, 2.0, 3.0, 4.0],
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
            quality: FaceQuality {
                box_width: 2.0,
                box_height: 2.0,
                eye_distance: 1.0,
                sharpness: 100.0,
                yaw_degrees: 0.0,
                liveness: None,
            },
        };
        let value = serde_json::to_value(&face).unwrap();
        assert_eq!(value["box"], serde_json::json!([1.0, 2.0, 3.0, 4.0]));
        assert!(value["quality"].get("liveness").is_none());
    }
}
