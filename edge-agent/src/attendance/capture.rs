//! A capture session: a burst of frames -> faces -> one-to-one matches against the section's
//! enrolled students -> fused per student -> present / needs review / absent, stored with its marks.

use image::RgbImage;
use serde::Serialize;

use super::Thresholds;
use super::evidence::{FrameEvidence, Unmatched, decide, fuse, match_faces};
use super::gallery::Gallery;
use crate::store::{CaptureStats, Mark, MarkSource, MarkStatus, SessionRecord, Store, StoreError};
use crate::vision::{Pipeline, VisionError};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error("section {0} has no enrolled student with a face template: enrol students first")]
    NobodyEnrolled(String),
    /// Templates are never compared across embedding spaces, so a new embedder needs its
    /// templates made again (`edge-agent reembed` from kept crops, or a new enrolment).
    #[error(
        "section {section}: {need} of {of} students need re-enrolment for {running} (their \
         templates are in {found}): run `edge-agent reembed` or enrol them again"
    )]
    OtherSpaceOnly {
        section: String,
        need: usize,
        of: usize,
        found: String,
        running: String,
    },
    #[error("a capture needs at least one frame")]
    NoFrames,
}

/// A student and a face's similarity to them; the store keeps review candidates as these.
pub use crate::store::Scored;

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
    /// Students of the section whose templates are all in another embedding space: the box
    /// cannot recognise them, so they go to review (with no candidates) instead of absent.
    pub need_reenrolment: Vec<String>,
    /// The space they need templates in: this box's embedder's.
    pub space: String,
}

impl CaptureOutcome {
    /// "7 of 30 students need re-enrolment for fr_feature-v2", when any do.
    pub fn reenrolment_notice(&self) -> Option<String> {
        if self.need_reenrolment.is_empty() {
            return None;
        }
        let of = self.present.len() + self.review.len() + self.absent.len();
        Some(format!(
            "{} of {of} students need re-enrolment for {}: {}",
            self.need_reenrolment.len(),
            self.space,
            self.need_reenrolment.join(", ")
        ))
    }
}

/// Where a face that matches nobody in the section is looked for among the rest of the school.
#[derive(Clone, Copy)]
pub enum SchoolSearch<'a> {
    /// sqlite-vec nearest neighbour per face: nothing to set up, ~22 ms per face at 15k templates.
    /// Right for one capture per process (the CLI).
    Store,
    /// A school-wide `Gallery` that a long-running caller keeps (and rebuilds when templates
    /// change): well under a millisecond per frame.
    Cached(&'a Gallery),
}

/// Runs a capture of `section_id` over `frames` and stores the session and its machine marks.
pub fn capture(
    pipeline: &mut Pipeline,
    store: &mut Store,
    section_id: &str,
    frames: &[RgbImage],
) -> Result<CaptureOutcome, CaptureError> {
    capture_with(pipeline, store, section_id, frames, SchoolSearch::Store)
}

/// [`capture`], choosing how unmatched faces are looked up school-wide.
pub fn capture_with(
    pipeline: &mut Pipeline,
    store: &mut Store,
    section_id: &str,
    frames: &[RgbImage],
    school: SchoolSearch<'_>,
) -> Result<CaptureOutcome, CaptureError> {
    let (mut outcome, marks, mut stats) = assess(pipeline, store, section_id, frames, school)?;
    let record_started = std::time::Instant::now();
    outcome.session = super::roll::open_session(
        store,
        &SessionRecord {
            section_id,
            n_frames: frames.len(),
            unknown_faces: outcome.unknown_faces,
            too_small_faces: outcome.too_small_faces,
            not_on_roster: &outcome.not_on_roster,
            marks: &marks,
        },
    )?;
    stats.record_ms = ms_since(record_started);
    tracing::debug!(
        marks = marks.len(),
        record_ms = stats.record_ms,
        "capture: session stored"
    );
    keep_stats(store, stats);
    Ok(outcome)
}

/// Keeps a capture's stats for the daemon's `/metrics`; a capture never fails for them.
fn keep_stats(store: &Store, stats: CaptureStats) {
    if let Err(e) = store.record_capture_stats(&stats) {
        tracing::warn!(error = %e, "cannot keep the capture's timings");
    }
}

fn ms_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// Another burst for a session that is already open (the teacher took attendance again, e.g.
/// after latecomers came in): it can only raise a machine mark (absent -> review -> present),
/// since a student missing from one burst was still seen in the earlier one; teacher marks stay.
/// The outcome describes this burst; the session's marks are the merged result.
pub fn recapture_with(
    pipeline: &mut Pipeline,
    store: &mut Store,
    session_id: &str,
    frames: &[RgbImage],
    school: SchoolSearch<'_>,
) -> Result<CaptureOutcome, CaptureError> {
    let section_id = store.session_section(session_id)?;
    let (mut outcome, marks, mut stats) = assess(pipeline, store, &section_id, frames, school)?;
    let record_started = std::time::Instant::now();
    let rank = |status: MarkStatus| match status {
        MarkStatus::Absent => 0,
        MarkStatus::Review => 1,
        _ => 2,
    };
    let before = store.marks(session_id)?;
    let raised: Vec<Mark> = marks
        .into_iter()
        .filter(
            |m| match before.iter().find(|b| b.student_id == m.student_id) {
                None => true,
                Some(b) => b.source == MarkSource::Machine && rank(m.status) > rank(b.status),
            },
        )
        .collect();
    store.update_machine_marks(session_id, &raised)?;
    stats.record_ms = ms_since(record_started);
    keep_stats(store, stats);
    outcome.session = session_id.to_owned();
    Ok(outcome)
}

/// Runs the burst and decides every student's machine mark, timing its stages; stores nothing.
fn assess(
    pipeline: &mut Pipeline,
    store: &mut Store,
    section_id: &str,
    frames: &[RgbImage],
    school: SchoolSearch<'_>,
) -> Result<(CaptureOutcome, Vec<Mark>, CaptureStats), CaptureError> {
    if frames.is_empty() {
        return Err(CaptureError::NoFrames);
    }
    let thresholds = Thresholds::of(pipeline);
    let space = pipeline.space().to_string();
    let started = std::time::Instant::now();
    let section = SectionGallery::load(pipeline, store, section_id, &space)?;
    let mut stats = CaptureStats {
        at: crate::store::now_ms(),
        frames: frames.len(),
        gallery_ms: ms_since(started),
        ..CaptureStats::default()
    };
    let mut evidence = Vec::with_capacity(frames.len());
    for (frame_idx, frame) in frames.iter().enumerate() {
        let gathered = FrameContext {
            store,
            school,
            space: &space,
            gallery: &section.gallery,
            thresholds,
        }
        .gather(pipeline, frame_idx, frame, &mut stats)?;
        evidence.push(gathered);
    }
    let decide_started = std::time::Instant::now();
    let fused = fuse(&evidence, &section.roster, thresholds);
    let decisions = decide(
        &fused,
        &section.roster,
        &section.need_reenrolment,
        thresholds,
    );
    let outcome = CaptureOutcome {
        session: String::new(),
        section: section_id.to_owned(),
        present: decisions.present,
        review: decisions.review,
        absent: decisions.absent,
        unknown_faces: fused.unknown_faces,
        too_small_faces: fused.too_small_faces,
        not_on_roster: fused.not_on_roster.into_iter().collect(),
        need_reenrolment: section.need_reenrolment,
        space,
    };
    stats.decide_ms = ms_since(decide_started);
    tracing::debug!(total_ms = ms_since(started), "capture: burst assessed");
    Ok((outcome, decisions.marks, stats))
}

/// The section's students and the gallery of their templates in the running space.
struct SectionGallery {
    roster: Vec<String>,
    gallery: Gallery,
    /// Students whose templates are all in another space (see `CaptureOutcome`).
    need_reenrolment: Vec<String>,
}

impl SectionGallery {
    /// Loads the section's templates in `space`; an error when nobody can be recognised.
    fn load(
        pipeline: &Pipeline,
        store: &Store,
        section_id: &str,
        space: &str,
    ) -> Result<SectionGallery, CaptureError> {
        let started = std::time::Instant::now();
        let roster = store.section_students(section_id)?;
        let gallery = Gallery::new(
            pipeline.manifest().embedder.dimensions,
            store.templates_of(&roster, space)?,
        );
        // Only students the gallery lacks can hold templates elsewhere: on a normal capture that
        // is nobody enrolled late, so this costs a query per missing student, not per student.
        let missing: Vec<String> = roster
            .iter()
            .filter(|s| !gallery.students().contains(s))
            .cloned()
            .collect();
        let spaces = store.template_spaces_of(&missing, space)?;
        if gallery.n_templates() == 0 {
            if spaces.counts.is_empty() {
                return Err(CaptureError::NobodyEnrolled(section_id.to_owned()));
            }
            let found: Vec<String> = spaces
                .counts
                .iter()
                .map(|(space, n)| format!("{n} in {space}"))
                .collect();
            return Err(CaptureError::OtherSpaceOnly {
                section: section_id.to_owned(),
                need: spaces.elsewhere_only.len(),
                of: roster.len(),
                found: found.join(", "),
                running: space.to_owned(),
            });
        }
        if !spaces.elsewhere_only.is_empty() {
            tracing::warn!(
                section = section_id,
                students = spaces.elsewhere_only.len(),
                %space,
                "capture: students with templates only in another embedding space cannot be recognised"
            );
        }
        tracing::debug!(
            templates = gallery.n_templates(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "capture: section gallery loaded"
        );
        Ok(SectionGallery {
            roster,
            gallery,
            need_reenrolment: spaces.elsewhere_only,
        })
    }
}

/// What gathering one frame's evidence needs besides the pipeline.
struct FrameContext<'a> {
    store: &'a Store,
    school: SchoolSearch<'a>,
    space: &'a str,
    gallery: &'a Gallery,
    thresholds: Thresholds,
}

impl FrameContext<'_> {
    /// Detects and embeds the frame's faces large enough to match, matches them to the section,
    /// and looks the rest up school-wide.
    fn gather(
        &self,
        pipeline: &mut Pipeline,
        frame_idx: usize,
        frame: &RgbImage,
        stats: &mut CaptureStats,
    ) -> Result<FrameEvidence, CaptureError> {
        let frame_started = std::time::Instant::now();
        let found = match_frame(pipeline, frame, self.gallery, self.thresholds)?;
        let matching_ms = ms_since(frame_started);
        stats.frames_ms += matching_ms;
        stats.faces += found.matches.len() + found.leftover.len() + found.too_small;
        // Faces that match nobody here: perhaps students of another section.
        let everyone: Vec<usize> = (0..found.leftover.len()).collect();
        let unmatched = school_best(
            self.store,
            self.school,
            self.space,
            &everyone,
            &found.leftover,
        )?
        .into_iter()
        .map(|(nearest, score)| Unmatched { nearest, score })
        .collect();
        let school_ms = ms_since(frame_started) - matching_ms;
        stats.school_ms += school_ms;
        tracing::debug!(
            frame = frame_idx,
            faces = found.matches.len() + found.leftover.len(),
            too_small = found.too_small,
            matching_ms,
            school_ms,
            "capture: frame done"
        );
        Ok(FrameEvidence {
            matches: found.matches,
            unmatched,
            too_small: found.too_small,
        })
    }
}

/// One frame's faces matched to a gallery, before any school-wide lookup.
pub struct FrameMatch {
    /// Faces matched one-to-one to the gallery's students, at or above the review threshold.
    pub matches: Vec<super::evidence::FaceMatch>,
    /// The embeddings of the faces large enough to match that matched nobody.
    pub leftover: Vec<Vec<f32>>,
    /// Faces too small to match (counted, never matched).
    pub too_small: usize,
}

/// Detects the frame's faces, embeds those large enough to match (one batch), and matches them
/// one-to-one to `gallery`'s students: what the box does with every frame of a capture, and what
/// the ML service's batch-match does with a gallery it is sent.
pub fn match_frame(
    pipeline: &mut Pipeline,
    frame: &RgbImage,
    gallery: &Gallery,
    thresholds: Thresholds,
) -> Result<FrameMatch, crate::vision::VisionError> {
    let faces = pipeline.faces(frame)?;
    let (large, small): (Vec<_>, Vec<_>) = faces
        .into_iter()
        .partition(|f| pipeline.gate.large_enough(&f.quality));
    let vectors: Vec<Vec<f32>> = pipeline
        .embed(large.iter().map(|f| &f.aligned))?
        .into_iter()
        .map(|e| e.vector)
        .collect();
    let similarity = gallery.best_per_student(&vectors);
    let (matches, unmatched) = match_faces(gallery.students(), &similarity, thresholds);
    Ok(FrameMatch {
        matches,
        leftover: unmatched.iter().map(|&i| vectors[i].clone()).collect(),
        too_small: small.len(),
    })
}

/// The best student of the whole school, and the similarity, for each of `faces` (indices into
/// `vectors`); `None` when the school holds no template at all.
fn school_best(
    store: &Store,
    school: SchoolSearch<'_>,
    space: &str,
    faces: &[usize],
    vectors: &[Vec<f32>],
) -> Result<Vec<(Option<String>, f32)>, CaptureError> {
    if faces.is_empty() {
        return Ok(Vec::new());
    }
    match school {
        SchoolSearch::Store => faces
            .iter()
            .map(|&i| {
                let nearest = store.nearest_templates(&vectors[i], space, 1)?;
                Ok(match nearest.into_iter().next() {
                    Some((student, score)) => (Some(student), score),
                    None => (None, f32::MIN),
                })
            })
            .collect(),
        SchoolSearch::Cached(gallery) => {
            let wanted: Vec<Vec<f32>> = faces.iter().map(|&i| vectors[i].clone()).collect();
            Ok(gallery
                .best_per_student(&wanted)
                .into_iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map_or((None, f32::MIN), |(idx, &score)| {
                            (Some(gallery.students()[idx].clone()), score)
                        })
                })
                .collect())
        }
    }
}
