//! The attendance subcommands: roster import, consent, enrolment, capture, teacher marks.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{Command, ConsentDecision, ReviewDecision, RosterCommand, TeacherStatus, VisionArgs};
use crate::attendance::capture::{CaptureOutcome, capture};
use crate::capture::{ImageLimits, load_image};
use crate::config::Config;
use crate::enrolment::{EnrolOptions, enrol};
use crate::store::{Consent, MarkStatus, Store};

const DATABASE_FILE: &str = "rollcall.sqlite";
const CONFIG_FILE: &str = "edge-agent.toml";

fn open_store(data_dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
    Ok(Store::open(&data_dir.join(DATABASE_FILE))?)
}

fn require_recognition(data_dir: &Path, what: &str) -> Result<()> {
    let config = Config::load(&data_dir.join(CONFIG_FILE))?;
    if !config.recognition {
        bail!(
            "face recognition is disabled at this school ({}: recognition = false), so {what} is not available; mark attendance by hand with `edge-agent mark`",
            data_dir.join(CONFIG_FILE).display()
        );
    }
    Ok(())
}

pub(super) fn run(
    command: Command,
    vision: &VisionArgs,
    data_dir: &Path,
    out: &mut impl Write,
) -> Result<i32> {
    match command {
        Command::Roster(RosterCommand::Import { dir }) => {
            let import = crate::roster::read_oneroster(&dir)?;
            let summary = open_store(data_dir)?.apply_roster(&import, "roster-import")?;
            writeln!(
                out,
                "imported {} sections, {} students, {} teachers, {} enrolments; {} students no longer listed marked inactive",
                summary.sections,
                summary.students,
                summary.teachers,
                summary.enrolments,
                summary.deactivated_students
            )?;
        }
        Command::Consent {
            student,
            decision,
            by,
        } => {
            let consent = match decision {
                ConsentDecision::Grant => Consent::Granted,
                ConsentDecision::Withdraw => Consent::Withdrawn,
            };
            let purged = open_store(data_dir)?.set_consent(&student, consent, &by)?;
            match consent {
                Consent::Withdrawn => writeln!(
                    out,
                    "consent withdrawn for {student}; {purged} face templates deleted"
                )?,
                _ => writeln!(out, "consent granted for {student}")?,
            }
        }
        Command::Enroll {
            student,
            images,
            force,
            keep_crop,
            pick,
        } => {
            require_recognition(data_dir, "enrolment")?;
            let mut store = open_store(data_dir)?;
            let mut pipeline = vision.pipeline()?;
            let options = EnrolOptions {
                force,
                keep_crop,
                pick,
            };
            let mut n_failed = 0;
            for image in &images {
                let result = load_image(image, &ImageLimits::default())
                    .map_err(anyhow::Error::from)
                    .and_then(|frame| {
                        Ok(enrol(
                            &mut pipeline,
                            &mut store,
                            &student,
                            &frame,
                            &options,
                        )?)
                    });
                match result {
                    Ok(enrolled) => writeln!(
                        out,
                        "{}: enrolled {student} (template {}, eyes {:.0} px, sharpness {:.0}){}",
                        image.display(),
                        enrolled.template,
                        enrolled.eye_distance,
                        enrolled.sharpness,
                        if enrolled.crop_kept {
                            "; aligned 112x112 crop kept"
                        } else {
                            "; no photo kept"
                        }
                    )?,
                    Err(e) => {
                        n_failed += 1;
                        eprintln!("error: {}: {e:#}", image.display());
                    }
                }
            }
            return Ok(if n_failed > 0 { 1 } else { 0 });
        }
        Command::Capture {
            section,
            images,
            camera,
            json,
        } => {
            require_recognition(data_dir, "capture")?;
            if let Some(camera) = camera {
                bail!(
                    "camera {camera}: live camera capture is not built yet; pass frames with --images"
                );
            }
            let mut store = open_store(data_dir)?;
            let mut pipeline = vision.pipeline()?;
            let frames = images
                .iter()
                .map(|p| load_image(p, &ImageLimits::default()))
                .collect::<Result<Vec<_>, _>>()?;
            let outcome = capture(&mut pipeline, &mut store, &section, &frames)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
            } else {
                print_outcome(out, &outcome)?;
            }
        }
        Command::Mark {
            session,
            student,
            status,
            by,
        } => {
            let status = match status {
                TeacherStatus::Present => MarkStatus::Present,
                TeacherStatus::Absent => MarkStatus::Absent,
                TeacherStatus::Late => MarkStatus::Late,
                TeacherStatus::Excused => MarkStatus::Excused,
            };
            open_store(data_dir)?.set_teacher_mark(&session, &student, status, &by)?;
            writeln!(out, "{student}: {}", status.as_str())?;
        }
        Command::Review {
            session,
            student,
            decision,
            by,
        } => {
            let mut store = open_store(data_dir)?;
            let in_review = store
                .marks(&session)?
                .iter()
                .any(|m| m.student_id == student && m.status == MarkStatus::Review);
            if !in_review {
                bail!(
                    "{student} is not waiting for review in session {session}; use `edge-agent mark` to change a mark"
                );
            }
            let status = match decision {
                ReviewDecision::Confirm => MarkStatus::Present,
                ReviewDecision::Reject => MarkStatus::Absent,
            };
            store.set_teacher_mark(&session, &student, status, &by)?;
            writeln!(out, "{student}: {}", status.as_str())?;
        }
        Command::Detect { .. }
        | Command::Embed { .. }
        | Command::Compare { .. }
        | Command::Identify { .. } => {
            unreachable!("vision commands are dispatched in cli::run")
        }
    }
    Ok(0)
}

fn print_outcome(out: &mut impl Write, outcome: &CaptureOutcome) -> Result<()> {
    writeln!(
        out,
        "session {} — section {}",
        outcome.session, outcome.section
    )?;
    writeln!(out, "present ({}):", outcome.present.len())?;
    for p in &outcome.present {
        writeln!(out, "  {:<24} {:.2}", p.student, p.score)?;
    }
    writeln!(out, "needs review ({}):", outcome.review.len())?;
    for r in &outcome.review {
        let candidates: Vec<String> = r
            .candidates
            .iter()
            .map(|c| format!("{} {:.2}", c.student, c.score))
            .collect();
        writeln!(
            out,
            "  {:<24} candidates: {}",
            r.student,
            candidates.join(", ")
        )?;
    }
    writeln!(
        out,
        "absent ({}): {}",
        outcome.absent.len(),
        outcome.absent.join(", ")
    )?;
    writeln!(
        out,
        "unknown faces: {}; too small to match: {}; not on this roster: {}",
        outcome.unknown_faces,
        outcome.too_small_faces,
        if outcome.not_on_roster.is_empty() {
            "-".to_owned()
        } else {
            outcome.not_on_roster.join(", ")
        }
    )?;
    Ok(())
}
