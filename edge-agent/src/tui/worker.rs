//! The teacher screen's two workers, each on its own thread with its own database connection
//! (SQLite in WAL: readers and one writer at a time, short transactions): the store worker does
//! the teacher's marks and reads rolls in milliseconds; the vision worker owns the camera and the
//! pipeline and runs captures and enrolment checks, which take seconds. Both answer on the app's
//! event channel, so the screen never waits for either.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};

use super::app::{AppEvent, CaptureSummary, EnrolPreview, StoreJob, VisionJob, VisionStatus};
use crate::attendance::Gallery;
use crate::attendance::capture::{SchoolSearch, capture_with, recapture_with};
use crate::attendance::lesson::{Moment, lesson_at};
use crate::attendance::roll::{
    Roll, open_manual_session, resumable_session, review, roll, session_roll,
};
use crate::capture::{BURST_FRAMES, FrameSource, SourceSpec};
use crate::enrolment::{self, EnrolCandidate, EnrolOptions, MAX_ENROL_YAW_DEGREES};
use crate::store::{Store, StoreError, now_ms};
use crate::vision::{Pipeline, PipelineOptions};

/// Who the teacher screen records as the author of a mark (the box has no teacher login yet).
const MARKED_BY: &str = "teacher";

pub fn spawn_store_worker(
    database: PathBuf,
    events: Sender<AppEvent>,
    jobs: Receiver<StoreJob>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tui-store".into())
        .spawn(move || {
            let mut store = match Store::open(&database) {
                Ok(store) => store,
                Err(e) => {
                    let _ = events.send(AppEvent::StoreFailed {
                        seq: u64::MAX,
                        message: e.to_string(),
                    });
                    return;
                }
            };
            // Ends when the event loop drops its sender, after every job sent has been done:
            // a teacher's last mark is written before the program exits.
            for job in jobs {
                let reply = store_job(&mut store, job);
                for event in reply {
                    if events.send(event).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("spawning a thread only fails when the system is out of resources")
}

/// A roll read from the store as the screen's event, with the count of events waiting.
fn roll_event(store: &Store, seq: u64, roll: Result<Roll, StoreError>) -> AppEvent {
    let event = roll.and_then(|roll| {
        Ok(AppEvent::Roll {
            seq,
            roll,
            waiting: store.pending_event_count()?,
        })
    });
    event.unwrap_or_else(|e| AppEvent::StoreFailed {
        seq,
        message: e.to_string(),
    })
}

fn store_job(store: &mut Store, job: StoreJob) -> Vec<AppEvent> {
    let read_roll = |store: &Store, seq: u64, section: &str, session: Option<&str>| {
        roll_event(store, seq, roll(store, section, session))
    };
    let failed = |seq: u64, message: String| AppEvent::StoreFailed { seq, message };
    match job {
        StoreJob::Sections => {
            let result = store.sections().map(|sections| {
                // Zero or several lessons now both leave the choice to the teacher.
                let now = match lesson_at(store, Moment::now()) {
                    Ok(slot) => vec![slot.section_id],
                    Err(_) => Vec::new(),
                };
                AppEvent::Sections { sections, now }
            });
            vec![result.unwrap_or_else(|e| failed(0, e.to_string()))]
        }
        StoreJob::Load {
            seq,
            section,
            session,
        } => {
            // A screen restarted mid-lesson continues that lesson's session instead of opening
            // a second one; a failed lookup only means a new session later.
            let session = session.or_else(|| {
                resumable_session(store, &section, Moment::now(), now_ms())
                    .ok()
                    .flatten()
            });
            vec![read_roll(store, seq, &section, session.as_deref())]
        }
        StoreJob::Open { seq, section } => match open_manual_session(store, &section) {
            Ok(session) => vec![read_roll(store, seq, &section, Some(&session))],
            Err(e) => vec![failed(seq, format!("cannot open a session: {e}"))],
        },
        StoreJob::Mark {
            seq,
            session,
            student,
            status,
        } => {
            let written = store.set_teacher_mark(&session, &student, status, MARKED_BY);
            after_write(store, seq, &session, written.map_err(|e| e.to_string()))
        }
        StoreJob::Review {
            seq,
            session,
            student,
            decision,
        } => {
            let written = review(store, &session, &student, decision, MARKED_BY);
            after_write(
                store,
                seq,
                &session,
                written.map(|_| ()).map_err(|e| e.to_string()),
            )
        }
        StoreJob::Close { session } => match store.close_session(&session, now_ms()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![failed(0, format!("cannot close session {session}: {e}"))],
        },
    }
}

/// The roll after a write, preceded by the write's error if it failed (the roll then shows what
/// is really stored, undoing what the screen showed ahead of the store).
fn after_write(
    store: &Store,
    seq: u64,
    session: &str,
    written: Result<(), String>,
) -> Vec<AppEvent> {
    let mut events = Vec::new();
    if let Err(message) = written {
        events.push(AppEvent::StoreFailed { seq, message });
    }
    events.push(roll_event(store, seq, session_roll(store, session)));
    events
}

pub struct VisionWorkerOptions {
    pub database: PathBuf,
    pub pipeline: PipelineOptions,
    pub source: SourceSpec,
}

/// Starts the vision worker: it opens the frame source and loads the models on its own thread,
/// then reports `VisionStatus::Ready` (or why it cannot run) and waits for jobs.
pub fn spawn_vision_worker(
    options: VisionWorkerOptions,
    events: Sender<AppEvent>,
    jobs: Receiver<VisionJob>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tui-vision".into())
        .spawn(move || {
            let mut worker = match VisionWorker::start(&options) {
                Ok(worker) => worker,
                Err(e) => {
                    tracing::warn!("capture unavailable: {e:#}");
                    let _ = events.send(AppEvent::Vision(VisionStatus::Unavailable(format!(
                        "{e:#}"
                    ))));
                    return;
                }
            };
            let ready = VisionStatus::Ready {
                source: worker.source.describe(),
            };
            if events.send(AppEvent::Vision(ready)).is_err() {
                return;
            }
            for job in jobs {
                if let Some(event) = worker.job(job)
                    && events.send(event).is_err()
                {
                    return;
                }
            }
        })
        .expect("spawning a thread only fails when the system is out of resources")
}

struct VisionWorker {
    source: Box<dyn FrameSource>,
    pipeline: Pipeline,
    store: Store,
    /// Every template of the school, kept for the worker's life and rebuilt after an enrolment:
    /// a face matching nobody in the section is looked up here instead of one scan per face.
    school: Gallery,
    candidate: Option<EnrolCandidate>,
}

impl VisionWorker {
    fn start(options: &VisionWorkerOptions) -> Result<VisionWorker> {
        // The source first: a missing camera is the likelier failure, and says so in a second
        // instead of after the models load.
        let source = options.source.open()?;
        let pipeline = Pipeline::load(&options.pipeline)?;
        let store = Store::open(&options.database)
            .with_context(|| format!("opening {}", options.database.display()))?;
        let school = school_gallery(&pipeline, &store)?;
        Ok(VisionWorker {
            source,
            pipeline,
            store,
            school,
            candidate: None,
        })
    }

    fn job(&mut self, job: VisionJob) -> Option<AppEvent> {
        match job {
            VisionJob::Capture { section, session } => Some(AppEvent::Captured(
                self.capture(&section, session.as_deref())
                    .map_err(|e| format!("{e:#}")),
            )),
            VisionJob::EnrolCheck { student } => Some(AppEvent::EnrolChecked(
                self.enrol_check(&student).map_err(|e| format!("{e:#}")),
            )),
            VisionJob::EnrolKeep => Some(AppEvent::EnrolKept(
                self.enrol_keep().map_err(|e| format!("{e:#}")),
            )),
            VisionJob::EnrolDiscard => {
                self.candidate = None;
                None
            }
        }
    }

    fn capture(&mut self, section: &str, session: Option<&str>) -> Result<CaptureSummary> {
        let started = Instant::now();
        let frames = self.source.grab(BURST_FRAMES)?;
        let school = SchoolSearch::Cached(&self.school);
        let outcome = match session {
            None => capture_with(
                &mut self.pipeline,
                &mut self.store,
                section,
                &frames,
                school,
            )?,
            Some(session) => recapture_with(
                &mut self.pipeline,
                &mut self.store,
                session,
                &frames,
                school,
            )?,
        };
        let reenrolment = outcome.reenrolment_notice();
        Ok(CaptureSummary {
            reenrolment,
            session: outcome.session,
            n_frames: frames.len(),
            unknown_faces: outcome.unknown_faces,
            too_small_faces: outcome.too_small_faces,
            not_on_roster: outcome.not_on_roster,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    fn enrol_check(&mut self, student: &str) -> Result<EnrolPreview> {
        self.candidate = None;
        let frame = self.source.grab(1)?.remove(0);
        let candidate = enrolment::check(
            &mut self.pipeline,
            &self.store,
            student,
            &frame,
            &EnrolOptions::default(),
        )?;
        let preview = EnrolPreview {
            student: student.to_owned(),
            eye_distance: candidate.quality.eye_distance,
            min_eye_distance: self.pipeline.gate.min_eye_distance,
            sharpness: candidate.quality.sharpness,
            min_sharpness: self.pipeline.gate.min_sharpness,
            yaw_degrees: candidate.quality.yaw_degrees,
            max_yaw_degrees: MAX_ENROL_YAW_DEGREES,
        };
        self.candidate = Some(candidate);
        Ok(preview)
    }

    fn enrol_keep(&mut self) -> Result<String> {
        let candidate = self
            .candidate
            .take()
            .context("no checked photo to keep: capture one first")?;
        let enrolled = enrolment::keep(&mut self.store, &candidate, "enrol-camera")?;
        self.school = school_gallery(&self.pipeline, &self.store)?;
        Ok(format!(
            "enrolled {}: template {} kept",
            enrolled.student, enrolled.template
        ))
    }
}

fn school_gallery(pipeline: &Pipeline, store: &Store) -> Result<Gallery> {
    Ok(Gallery::of_school(
        store,
        pipeline.space().as_str(),
        pipeline.manifest().embedder.dimensions,
    )?)
}
