//! A capture session: a burst of frames -> faces -> one-to-one matches against the section's
//! enrolled students -> fused per student -> present / needs review / absent, stored with its marks.

use std::collections::{BTreeMap, BTreeSet};

use image::RgbImage;
use serde::Serialize;

use super::gallery::Gallery;
use super::{Thresholds, Verdict, assign};
use crate::store::{Mark, MarkSource, MarkStatus, SessionRecord, Store, StoreError};
use crate::vision::{Pipeline, VisionError};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error("section {0} has no enrolled student with a face template: enrol students first")]
    NobodyEnrolled(String),
    #[error("a capture needs at least one frame")]
    NoFrames,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub student: String,
    pub score: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReviewItem {
    pub student: String,
    pub candidates: Vec<Scored>,
}

/// The result a teacher sees, and `capture --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptureOutcome {
    pub session: String,
    pub section: String,
    pub present: Vec<Scored>,
    pub review: Vec<ReviewItem>,
    pub absent: Vec<String>,
    pub unknown_faces: usize,
    pub too_small_faces: usize,
    pub not_on_roster: Vec<String>,
}

/// Best evidence so far for one student across the burst.
struct Evidence {
    score: f32,
    candidates: Vec<Scored>,
}

/// Runs a capture of `section_id` over `frames` and stores the session and its machine marks.
pub fn capture(
    pipeline: &mut Pipeline,
    store: &mut Store,
    section_id: &str,
    frames: &[RgbImage],
) -> Result<CaptureOutcome, CaptureError> {
    if frames.is_empty() {
        return Err(CaptureError::NoFrames);
    }
    let thresholds = Thresholds {
        confident: pipeline.manifest().embedder.confident,
        review: pipeline.manifest().embedder.review,
    };
    let model_id = pipeline.model_id().to_string();
    let roster = store.section_students(section_id)?;
    let gallery = Gallery::new(
        pipeline.manifest().embedder.dimensions,
        store.templates_of(&roster, &model_id)?,
    );
    if gallery.n_templates() == 0 {
        return Err(CaptureError::NobodyEnrolled(section_id.to_owned()));
    }
    let enrolled = gallery.students();

    let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
    let mut not_on_roster = BTreeSet::new();
    let (mut unknown_faces, mut too_small_faces) = (0, 0);
    for frame in frames {
        let faces = pipeline.faces(frame)?;
        let (large, small): (Vec<_>, Vec<_>) = faces
            .into_iter()
            .partition(|f| pipeline.gate.large_enough(&f.quality));
        let embeddings = pipeline.embed(large.iter().map(|f| &f.aligned))?;
        let vectors: Vec<Vec<f32>> = embeddings.iter().map(|e| e.vector.clone()).collect();
        let similarity = gallery.best_per_student(&vectors);
        let assigned = assign(&similarity, thresholds.review);
        let mut frame_unknown = 0;
        for (face_idx, embedding) in embeddings.iter().enumerate() {
            let Some(pair) = assigned.iter().find(|a| a.face_idx == face_idx) else {
                // Matches nobody here: perhaps a student of another section.
                match store
                    .nearest_templates(&embedding.vector, &model_id, 1)?
                    .first()
                {
                    Some((student, score))
                        if thresholds.verdict(*score) == Verdict::Confident
                            && !roster.contains(student) =>
                    {
                        not_on_roster.insert(student.clone());
                    }
                    _ => frame_unknown += 1,
                }
                continue;
            };
            let student = enrolled[pair.person_idx].clone();
            let mut candidates: Vec<Scored> = enrolled
                .iter()
                .zip(&similarity[face_idx])
                .map(|(s, &score)| Scored {
                    student: s.clone(),
                    score,
                })
                .collect();
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
            candidates.truncate(3);
            let better = evidence
                .get(&student)
                .is_none_or(|e| pair.similarity > e.score);
            if better {
                evidence.insert(
                    student,
                    Evidence {
                        score: pair.similarity,
                        candidates,
                    },
                );
            }
        }
        // The same people are in every frame of a burst: count the largest frame, not the sum.
        unknown_faces = unknown_faces.max(frame_unknown);
        too_small_faces = too_small_faces.max(small.len());
    }

    let mut outcome = CaptureOutcome {
        session: String::new(),
        section: section_id.to_owned(),
        present: Vec::new(),
        review: Vec::new(),
        absent: Vec::new(),
        unknown_faces,
        too_small_faces,
        not_on_roster: not_on_roster.into_iter().collect(),
    };
    let mut marks = Vec::with_capacity(roster.len());
    for student in &roster {
        let (status, score, candidates) = match evidence.get(student) {
            Some(e) if thresholds.verdict(e.score) == Verdict::Confident => {
                outcome.present.push(Scored {
                    student: student.clone(),
                    score: e.score,
                });
                (MarkStatus::Present, Some(e.score), None)
            }
            Some(e) => {
                outcome.review.push(ReviewItem {
                    student: student.clone(),
                    candidates: e.candidates.clone(),
                });
                let json = serde_json::to_string(&e.candidates).expect("plain data");
                (MarkStatus::Review, Some(e.score), Some(json))
            }
            None => {
                outcome.absent.push(student.clone());
                (MarkStatus::Absent, None, None)
            }
        };
        marks.push(Mark {
            student_id: student.clone(),
            status,
            source: MarkSource::Machine,
            score,
            candidates,
        });
    }
    outcome.session = store.record_session(&SessionRecord {
        section_id,
        n_frames: frames.len(),
        unknown_faces,
        too_small_faces,
        not_on_roster: &outcome.not_on_roster,
        marks: &marks,
    })?;
    Ok(outcome)
}
