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
    /// Enrolment only: the face is turned too far from the camera to make a good template.
    NotFrontal,
    /// Enrolment only: the face already matches another student at the confident threshold.
    LooksLikeAnother,
    /// The inference runtime failed on this input.
    Inference,
}

crate::vocabulary!(ErrorCode, "ML error code", {
    Unreadable => "unreadable",
    UndecodableImage => "undecodable_image",
    ImageTooLarge => "image_too_large",
    ImageTooSmall => "image_too_small",
    NoFace => "no_face",
    SeveralFaces => "several_faces",
    FaceTooSmall => "face_too_small",
    FaceTooBlurry => "face_too_blurry",
    NotFrontal => "not_frontal",
    LooksLikeAnother => "looks_like_another",
    Inference => "inference",
});

/// The ML service's HTTP API (`edge-agent serve`, issue 17): the paths, the requests its JSON
/// bodies carry (images as base64 JPEG or PNG), and its answers. Multipart bodies carry the same
/// images as file parts and the rest as JSON parts of the same names.
pub mod service {
    use serde::{Deserialize, Serialize};

    use super::{DetectedFace, ErrorCode};
    use crate::{EmbeddingSpace, ModelId};

    pub const HEALTH: &str = "/health";
    pub const STATUS: &str = "/v1/ml/status";
    pub const METRICS: &str = "/metrics";
    pub const DETECT_FACES: &str = "/v1/ml/detect-faces";
    pub const ENCODE_FACE: &str = "/v1/ml/encode-face";
    pub const MATCH_FACES: &str = "/v1/ml/match-faces";
    pub const BATCH_MATCH: &str = "/v1/ml/batch-match";
    pub const ENROL_FACES: &str = "/v1/ml/enrol-faces";
    pub const EMBED_CROPS: &str = "/v1/ml/embed-crops";
    /// The API key, also accepted as `Authorization: Bearer KEY`.
    pub const API_KEY_HEADER: &str = "x-api-key";

    /// One image, base64 (standard alphabet, padding optional; a data URL's prefix is allowed).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ImageRequest {
        pub image: String,
    }

    /// Which face to use when a photo holds several usable ones (default: refuse the photo).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum FacePick {
        Largest,
        Central,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EncodeRequest {
        pub image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pick: Option<FacePick>,
    }

    /// `encode-face`: the image's one usable face as a template.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EncodeResponse {
        pub model: ModelId,
        pub space: EmbeddingSpace,
        /// L2-normalised; similarity is the dot product.
        pub embedding: Vec<f32>,
        /// The face the template was made from, with its quality (what an enrolment gate checks).
        pub face: DetectedFace,
    }

    /// One side of `match-faces`: an image (`{"image": base64}`, or the bare base64 string a file
    /// part becomes), or a template already made.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum FaceInput {
        Bare(String),
        Image {
            image: String,
        },
        Embedding {
            embedding: Vec<f32>,
            /// Checked against the service's: templates compare only within one space.
            space: EmbeddingSpace,
        },
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct MatchRequest {
        pub a: FaceInput,
        pub b: FaceInput,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pick: Option<FacePick>,
    }

    /// What a similarity means at the manifest's thresholds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MatchVerdict {
        /// At or above `confident`.
        Same,
        /// Between `review` and `confident`: a person decides.
        Review,
        Different,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct MatchResponse {
        pub similarity: f32,
        pub verdict: MatchVerdict,
        pub confident: f32,
        pub review: f32,
        pub space: EmbeddingSpace,
    }

    /// A student's template in a gallery sent with `batch-match`: the vector as a list of numbers
    /// (`embedding`), or as base64 of little-endian f32 (`f32le`, the sync protocol's encoding: a
    /// third of the bytes, and far quicker to read for a gallery of thousands).
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub struct GalleryTemplate {
        pub student: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub embedding: Vec<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub f32le: Option<String>,
    }

    impl GalleryTemplate {
        /// The vector, from whichever form was sent.
        pub fn vector(self) -> Result<Vec<f32>, String> {
            match (self.embedding.is_empty(), self.f32le) {
                (false, None) => Ok(self.embedding),
                (true, Some(text)) => crate::sync::f32le_decode(&text).map_err(|e| e.to_string()),
                (false, Some(_)) => Err("send \"embedding\" or \"f32le\", not both".into()),
                (true, None) => Err("no vector: send \"embedding\" or \"f32le\"".into()),
            }
        }
    }

    /// `batch-match`: a frame's faces against a section's templates.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct BatchMatchRequest {
        pub image: String,
        /// The templates' space, checked against the service's.
        pub space: EmbeddingSpace,
        /// Several templates of one student count as one person, scored by the best.
        pub gallery: Vec<GalleryTemplate>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ScoredStudent {
        pub student: String,
        pub score: f32,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ReviewStudent {
        pub student: String,
        /// The face's best students, best first.
        pub candidates: Vec<ScoredStudent>,
    }

    /// The box's own decision for one frame: faces matched one-to-one, confident ones present,
    /// those between the thresholds for review, the gallery's other students absent.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct BatchMatchResponse {
        pub width: u32,
        pub height: u32,
        pub present: Vec<ScoredStudent>,
        pub review: Vec<ReviewStudent>,
        pub absent: Vec<String>,
        /// Faces large enough to match that matched nobody of the gallery.
        pub unknown_faces: usize,
        /// Faces too small to match (counted, never matched).
        pub too_small_faces: usize,
    }

    /// The most photos one `enrol-faces` call takes: a bulk enrolment sends its photos in calls of
    /// this many, each with the school's gallery or what was added to a gallery the service keeps.
    pub const MAX_ENROL_PHOTOS: usize = 8;

    /// A photo to make a template of, for `student`.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EnrolPhoto {
        pub student: String,
        pub image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pick: Option<FacePick>,
    }

    /// `enrol-faces`: photos through the box's enrolment gate (one usable face, its size and
    /// sharpness, its pose, and not already another student's face), each decided on its own. The
    /// gallery is the school's templates, checked for look-alikes (`force` skips that check); a
    /// photo enrolled earlier in the call counts as part of the gallery for the later ones.
    ///
    /// The service keeps the last few galleries it was sent, each under the id it answered with
    /// (`EnrolResponse::gallery_id`). A later call may name one as `gallery_base` and send in
    /// `gallery` only the templates added since: a bulk enrolment of a large school then sends
    /// its gallery once, not with every call of 8 photos. A base the service no longer keeps (it
    /// restarted, or let it go for newer ones) is refused with 409 [`GALLERY_UNKNOWN`]: send the
    /// whole gallery again.
    ///
    /// A call with no photos and a gallery only keeps the gallery: one too large for a call's
    /// body goes in parts, each naming the gallery kept from the one before. A call with neither
    /// is refused (400).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EnrolRequest {
        pub photos: Vec<EnrolPhoto>,
        /// The gallery's space, checked against the service's.
        pub space: EmbeddingSpace,
        /// A gallery this service answered with, kept: this call's gallery is it plus `gallery`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gallery_base: Option<String>,
        #[serde(default)]
        pub gallery: Vec<GalleryTemplate>,
        #[serde(default)]
        pub force: bool,
        /// Answer each enrolled photo with its aligned face (`crop`), for a school that keeps
        /// crops to re-embed after a model change.
        #[serde(default)]
        pub keep_crops: bool,
    }

    /// What became of one photo of an `enrol-faces` call.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "outcome", rename_all = "snake_case")]
    pub enum EnrolOutcome {
        Enrolled {
            /// L2-normalised, in the response's space.
            embedding: Vec<f32>,
            face: DetectedFace,
            /// The template's quality, 0-1, as the box scores its own (sharpness and pose).
            score: f32,
            /// With `keep_crops`: the aligned face the template was made from, base64 of RGB
            /// bytes, `size` x `size` (see [`crate::crop`]).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            crop: Option<String>,
        },
        Refused {
            error: ErrorCode,
            message: String,
            /// For `looks_like_another`: the student the face matches, and how well.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            other: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            similarity: Option<f32>,
        },
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EnrolResponse {
        pub model: ModelId,
        pub space: EmbeddingSpace,
        /// One per photo, in the request's order.
        pub photos: Vec<EnrolOutcome>,
        /// The id under which the service keeps this call's gallery as it was sent (base and
        /// `gallery`, not the photos enrolled in the call), for the next call's `gallery_base`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub gallery_id: Option<String>,
    }

    /// The error code of an `enrol-faces` call whose `gallery_base` the service does not keep.
    pub const GALLERY_UNKNOWN: &str = "gallery_unknown";

    /// The most crops one `embed-crops` call takes.
    pub const MAX_EMBED_CROPS: usize = 32;

    /// `embed-crops`: aligned faces kept at enrolment, embedded again by this service's model
    /// (re-embedding after a model change: no photo, no detection, no gate).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EmbedCropsRequest {
        /// The crops' side in pixels, checked against the service's embedder.
        pub size: u32,
        /// Base64 of RGB bytes, `size` x `size` x 3 each.
        pub crops: Vec<String>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct EmbedCropsResponse {
        pub model: ModelId,
        pub space: EmbeddingSpace,
        /// One per crop, in the request's order; L2-normalised.
        pub embeddings: Vec<Vec<f32>>,
    }

    /// A model file the service verified at start.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ModelFileStatus {
        pub name: String,
        pub file: String,
        pub sha256: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct StatusResponse {
        /// `edge-agent`'s version.
        pub version: String,
        pub model: ModelId,
        pub space: EmbeddingSpace,
        pub dimensions: usize,
        pub confident: f32,
        pub review: f32,
        /// The execution provider in use (`cpu`, `cuda`, `tensorrt`) and the one asked for.
        pub provider: String,
        pub provider_asked: String,
        pub runtime: String,
        pub models: Vec<ModelFileStatus>,
        pub pipelines: usize,
        pub queue_capacity: usize,
    }

    /// Why a call has no answer: an image's `ErrorCode` (`no_face`, `several_faces`, ...) or one of
    /// `unauthorized`, `busy`, `invalid_request`, `payload_too_large`, `not_found`.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ErrorBody {
        pub error: String,
        pub message: String,
        pub request_id: String,
    }

    impl ErrorBody {
        /// The image error this names, when it is one.
        pub fn code(&self) -> Option<ErrorCode> {
            self.error.parse().ok()
        }
    }
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
    fn error_code_words_are_serdes() {
        for &code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
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
