//! Choosing the one face of a photo that an enrolment or an `embed` call is about.

use super::Face;
use super::quality::QualityGate;

/// How to choose when several usable faces are in one photo.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// The face with the largest box.
    Largest,
    /// The face nearest the image centre (the LFW convention: ~1 point more accurate than largest).
    Central,
}

impl From<shared_proto::ml::service::FacePick> for Pick {
    fn from(pick: shared_proto::ml::service::FacePick) -> Pick {
        match pick {
            shared_proto::ml::service::FacePick::Largest => Pick::Largest,
            shared_proto::ml::service::FacePick::Central => Pick::Central,
        }
    }
}

/// Why a photo has no single usable face.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Unusable {
    #[error("no face found")]
    NoFace,
    #[error(
        "{n_faces} usable faces found; pass --pick largest|central to choose one, or crop the photo"
    )]
    SeveralFaces { n_faces: usize },
    #[error("the face is too small: eyes {eye_distance:.1} px apart, at least {min:.0} px needed")]
    FaceTooSmall { eye_distance: f32, min: f32 },
    #[error("the face is too blurry: sharpness {sharpness:.1}, at least {min:.0} needed")]
    FaceTooBlurry { sharpness: f32, min: f32 },
}

impl Unusable {
    /// The code callers of `--json` and of the ML service see.
    pub fn code(&self) -> shared_proto::ml::ErrorCode {
        use shared_proto::ml::ErrorCode;
        match self {
            Unusable::NoFace => ErrorCode::NoFace,
            Unusable::SeveralFaces { .. } => ErrorCode::SeveralFaces,
            Unusable::FaceTooSmall { .. } => ErrorCode::FaceTooSmall,
            Unusable::FaceTooBlurry { .. } => ErrorCode::FaceTooBlurry,
        }
    }
}

/// The index of the one usable face of a photo.
///
/// Faces too small to match are background and ignored; blurry faces count only when no sharp one
/// exists (then the photo is refused as blurry).
pub fn select_face(
    faces: &[Face],
    gate: &QualityGate,
    pick: Option<Pick>,
    image_size: (u32, u32),
) -> Result<usize, Unusable> {
    if faces.is_empty() {
        return Err(Unusable::NoFace);
    }
    let large: Vec<usize> = (0..faces.len())
        .filter(|&i| gate.large_enough(&faces[i].quality))
        .collect();
    if large.is_empty() {
        let eye_distance = faces
            .iter()
            .map(|f| f.quality.eye_distance)
            .fold(0.0, f32::max);
        return Err(Unusable::FaceTooSmall {
            eye_distance,
            min: gate.min_eye_distance,
        });
    }
    let sharp: Vec<usize> = large
        .iter()
        .copied()
        .filter(|&i| gate.sharp_enough(&faces[i].quality))
        .collect();
    let candidates = if sharp.is_empty() { &large } else { &sharp };
    let chosen = match (candidates.len(), pick) {
        (1, _) => candidates[0],
        (n_faces, None) => return Err(Unusable::SeveralFaces { n_faces }),
        (_, Some(Pick::Largest)) => *candidates
            .iter()
            .max_by(|&&a, &&b| area(&faces[a]).total_cmp(&area(&faces[b])))
            .expect("not empty"),
        (_, Some(Pick::Central)) => {
            let centre = [image_size.0 as f32 / 2.0, image_size.1 as f32 / 2.0];
            *candidates
                .iter()
                .min_by(|&&a, &&b| {
                    distance(&faces[a], centre).total_cmp(&distance(&faces[b], centre))
                })
                .expect("not empty")
        }
    };
    if sharp.is_empty() {
        return Err(Unusable::FaceTooBlurry {
            sharpness: faces[chosen].quality.sharpness,
            min: gate.min_sharpness,
        });
    }
    Ok(chosen)
}

fn area(face: &Face) -> f32 {
    face.detection.width() * face.detection.height()
}

fn distance(face: &Face, to: [f32; 2]) -> f32 {
    let [x, y] = face.detection.centre();
    (x - to[0]).powi(2) + (y - to[1]).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::{AlignedFace, Detection, FaceQuality};

    fn face(bbox: [f32; 4], eye_distance: f32, sharpness: f32) -> Face {
        Face {
            detection: Detection {
                bbox,
                score: 0.9,
                landmarks: [[0.0; 2]; 5],
            },
            quality: FaceQuality {
                box_width: bbox[2] - bbox[0],
                box_height: bbox[3] - bbox[1],
                eye_distance,
                sharpness,
                yaw_degrees: 0.0,
                liveness: None,
            },
            aligned: AlignedFace {
                size: 1,
                rgb: vec![0; 3],
            },
        }
    }

    fn check(faces: &[Face], pick: Option<Pick>) -> Result<usize, Unusable> {
        select_face(faces, &QualityGate::default(), pick, (200, 100))
    }

    #[test]
    fn one_sharp_large_face_is_chosen_and_background_faces_ignored() {
        let faces = [
            face([0.0, 0.0, 10.0, 10.0], 4.0, 100.0),
            face([50.0, 20.0, 150.0, 90.0], 40.0, 100.0),
        ];
        assert_eq!(check(&faces, None), Ok(1));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        assert_eq!(check(&[], None), Err(Unusable::NoFace));
        assert!(matches!(
            check(&[face([0.0, 0.0, 10.0, 10.0], 5.0, 100.0)], None),
            Err(Unusable::FaceTooSmall { .. })
        ));
        assert!(matches!(
            check(&[face([0.0, 0.0, 99.0, 99.0], 40.0, 3.0)], None),
            Err(Unusable::FaceTooBlurry { .. })
        ));
        let two = [
            face([0.0, 0.0, 60.0, 60.0], 30.0, 100.0),
            face([90.0, 20.0, 130.0, 60.0], 20.0, 100.0),
        ];
        assert_eq!(
            check(&two, None),
            Err(Unusable::SeveralFaces { n_faces: 2 })
        );
    }

    #[test]
    fn pick_chooses_largest_or_central() {
        let two = [
            face([0.0, 0.0, 60.0, 60.0], 30.0, 100.0),
            face([90.0, 30.0, 120.0, 60.0], 20.0, 100.0),
        ];
        assert_eq!(check(&two, Some(Pick::Largest)), Ok(0));
        assert_eq!(check(&two, Some(Pick::Central)), Ok(1));
    }

    #[test]
    fn a_blurry_face_beside_a_sharp_one_is_ignored() {
        let two = [
            face([0.0, 0.0, 60.0, 60.0], 30.0, 2.0),
            face([90.0, 30.0, 120.0, 60.0], 20.0, 100.0),
        ];
        assert_eq!(check(&two, None), Ok(1));
    }
}
