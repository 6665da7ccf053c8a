//! The attendance subcommands: roster import, consent, enrolment, capture, teacher marks.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{
    Command, ConsentDecision, ReviewDecision, RosterCommand, ScheduleCommand, SessionCommand,
    TeacherStatus, VisionArgs,
};
use crate::attendance::capture::{CaptureOutcome, capture};
use crate::attendance::lesson::{Moment, lesson_at, parse_weekday};
use crate::attendance::roll::{self, open_manual_session, review, session_roll};
use crate::capture::{FrameSource, ImageFiles, ImageLimits, load_image};
use crate::config::{CONFIG_FILE, Config, DATABASE_FILE};
use crate::enrolment::{self, EnrolOptions, Enrolled, Reembedded, enrol, reembed};
use crate::store::{Consent, MarkSource, MarkStatus, Slot, Store, now_ms};

pub(super) fn open_store(data_dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
    Ok(Store::open(&data_dir.join(DATABASE_FILE))?)
}

/// Whether face recognition is on at this school (`edge-agent.toml`).
pub(super) fn recognition(data_dir: &Path) -> Result<bool> {
    Ok(Config::load(&data_dir.join(CONFIG_FILE))?.recognition)
}

fn require_recognition(data_dir: &Path, what: &str) -> Result<()> {
    if !recognition(data_dir)? {
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
                "imported {} sections, {} students, {} teachers, {} enrolments; {} records no longer listed marked inactive",
                summary.sections,
                summary.students,
                summary.teachers,
                summary.enrolments,
                summary.deactivated
            )?;
            // Guardians are the server's (its absence notices); the box keeps none, so a guardian
            // the server could not keep says nothing about the box's import.
            let about_the_box = import
                .warnings
                .iter()
                .filter(|w| w.kind != shared_proto::oneroster::WarningKind::GuardianWithoutEmail);
            for warning in about_the_box {
                writeln!(out, "warning: {warning}")?;
            }
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
            replace,
            keep_crop,
            pick,
        } => {
            require_recognition(data_dir, "enrolment")?;
            let mut store = open_store(data_dir)?;
            let mut pipeline = vision.pipeline(data_dir)?;
            let options = EnrolOptions {
                force,
                keep_crop,
                pick,
            };
            if replace {
                return re_enrol(&mut pipeline, &mut store, &student, &images, &options, out);
            }
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
                    Ok(enrolled) => print_enrolled(out, image, &enrolled)?,
                    Err(e) => {
                        n_failed += 1;
                        eprintln!("error: {}: {e:#}", image.display());
                    }
                }
            }
            return Ok(if n_failed > 0 { 1 } else { 0 });
        }
        Command::Reembed { json } => {
            require_recognition(data_dir, "re-embedding")?;
            let mut store = open_store(data_dir)?;
            let mut pipeline = vision.pipeline(data_dir)?;
            let report = reembed(&mut pipeline, &mut store)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                print_reembedded(&report, out)?;
            }
            return Ok(0);
        }
        Command::Capture {
            section,
            images,
            source,
            frames,
            json,
        } => {
            require_recognition(data_dir, "capture")?;
            // Open the source before the models load: a missing camera is the likelier failure.
            let (mut source, n_frames): (Box<dyn FrameSource>, usize) = match source {
                Some(spec) => (spec.open()?, frames),
                None => (Box::new(ImageFiles::new(images.clone())), images.len()),
            };
            let mut store = open_store(data_dir)?;
            let mut pipeline = vision.pipeline(data_dir)?;
            let frames = source.grab(n_frames)?;
            let outcome = capture(&mut pipeline, &mut store, &section, &frames)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
            } else {
                print_outcome(out, &outcome)?;
            }
        }
        Command::Session(SessionCommand::Open { section, at }) => {
            let mut store = open_store(data_dir)?;
            let section = match section {
                Some(section) => section,
                None => lesson_at(&store, moment(at.as_deref())?)?.section_id,
            };
            let session = open_manual_session(&mut store, &section)?;
            writeln!(out, "{session}")?;
            eprintln!(
                "session {session} open for {section}: mark students with `edge-agent mark {session} STUDENT present|absent|late|excused`"
            );
        }
        Command::Session(SessionCommand::Close { session }) => {
            let mut store = open_store_existing(data_dir)?;
            if store.close_session(&session, now_ms())? {
                writeln!(out, "session {session} closed")?;
            } else {
                writeln!(out, "session {session} was already closed")?;
            }
        }
        Command::Session(SessionCommand::Show { session, json }) => {
            let store = open_store_existing(data_dir)?;
            let roll = session_roll(&store, &session)?;
            let rows: Vec<(&str, &str, &str)> = roll
                .rows
                .iter()
                .map(|r| {
                    (
                        r.student.as_str(),
                        r.status.map_or("unmarked", MarkStatus::as_str),
                        r.source.map_or("-", MarkSource::as_str),
                    )
                })
                .collect();
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|(student, status, source)| {
                        serde_json::json!({"student": student, "status": status, "source": source})
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"session": session, "section": roll.section, "students": rows})
                )?;
            } else {
                writeln!(out, "session {session} — section {}", roll.section)?;
                for (student, status, source) in rows {
                    writeln!(out, "  {student:<24} {status:<9} {source}")?;
                }
            }
        }
        Command::Schedule(command) => schedule(command, data_dir, out)?,
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
            open_store_existing(data_dir)?.set_teacher_mark(&session, &student, status, &by)?;
            writeln!(out, "{student}: {}", status.as_str())?;
        }
        Command::Review {
            session,
            student,
            decision,
            by,
        } => {
            let decision = match decision {
                ReviewDecision::Confirm => roll::ReviewDecision::Confirm,
                ReviewDecision::Reject => roll::ReviewDecision::Reject,
            };
            let mut store = open_store_existing(data_dir)?;
            let status = review(&mut store, &session, &student, decision, &by)?;
            writeln!(out, "{student}: {}", status.as_str())?;
        }
        Command::Tui(_) => unreachable!("the teacher screen is started in cli::run"),
        Command::Detect { .. }
        | Command::Embed { .. }
        | Command::Compare { .. }
        | Command::Identify { .. }
        | Command::Provision { .. }
        | Command::Sync { .. }
        | Command::Status { .. }
        | Command::Serve { .. }
        | Command::Daemon
        | Command::Doctor { .. }
        | Command::HashKey => {
            unreachable!("vision and sync commands are dispatched in cli::run")
        }
    }
    Ok(0)
}

/// The database's path, if it exists: a read (or the teacher screen) must not leave an empty
/// database behind.
pub(super) fn existing_database(data_dir: &Path) -> Result<PathBuf> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        bail!(
            "no Rollcall database in {} (import a roster first, or pass --data-dir)",
            data_dir.display()
        );
    }
    Ok(path)
}

pub(super) fn open_store_existing(data_dir: &Path) -> Result<Store> {
    Ok(Store::open(&existing_database(data_dir)?)?)
}

/// The moment to look a lesson up at: `--at DAY-HH:MM`, or now.
fn moment(at: Option<&str>) -> Result<Moment> {
    Ok(match at {
        Some(at) => Moment::parse(at)?,
        None => Moment::now(),
    })
}

fn schedule(command: ScheduleCommand, data_dir: &Path, out: &mut impl Write) -> Result<()> {
    match command {
        ScheduleCommand::Add {
            section,
            day,
            start,
            end,
            room,
        } => {
            let mut store = open_store_existing(data_dir)?;
            let mut slots = store.schedule(Some(&section))?;
            slots.push(Slot {
                section_id: section.clone(),
                weekday: parse_weekday(&day)?,
                starts: start,
                ends: end,
                room,
            });
            store.set_schedule(&section, &slots, "schedule")?;
            writeln!(out, "{section}: {} weekly lessons", slots.len())?;
        }
        ScheduleCommand::Clear { section } => {
            open_store_existing(data_dir)?.set_schedule(&section, &[], "schedule")?;
            writeln!(out, "{section}: no lessons")?;
        }
        ScheduleCommand::List { section } => {
            for slot in open_store_existing(data_dir)?.schedule(section.as_deref())? {
                print_slot(out, &slot)?;
            }
        }
        ScheduleCommand::Now { at } => {
            let store = open_store_existing(data_dir)?;
            print_slot(out, &lesson_at(&store, moment(at.as_deref())?)?)?;
        }
    }
    Ok(())
}

fn print_slot(out: &mut impl Write, slot: &Slot) -> Result<()> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    writeln!(
        out,
        "{} {}-{} {:<16} {}",
        DAYS[usize::from(slot.weekday.clamp(1, 7)) - 1],
        slot.starts,
        slot.ends,
        slot.section_id,
        slot.room.as_deref().unwrap_or("")
    )?;
    Ok(())
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
        if candidates.is_empty() {
            writeln!(
                out,
                "  {:<24} no template for {}: check by hand",
                r.student, outcome.space
            )?;
            continue;
        }
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
    if let Some(notice) = outcome.reenrolment_notice() {
        writeln!(
            out,
            "{notice} (they are in review: this box cannot recognise them; `edge-agent reembed` or enrol them again)"
        )?;
    }
    Ok(())
}

fn print_reembedded(report: &Reembedded, out: &mut impl Write) -> Result<()> {
    let students: std::collections::BTreeSet<&str> =
        report.made.iter().map(|(s, _, _)| s.as_str()).collect();
    writeln!(
        out,
        "re-embedded {} kept crops of {} students into {}{}",
        report.made.len(),
        students.len(),
        report.space,
        if report.already > 0 {
            format!(" ({} done by an earlier run)", report.already)
        } else {
            String::new()
        }
    )?;
    for (template, reason) in &report.skipped {
        writeln!(out, "skipped template {template}: {reason}")?;
    }
    if report.need_reenrolment.is_empty() {
        writeln!(
            out,
            "every student with a template has one in {}",
            report.space
        )?;
    } else {
        writeln!(
            out,
            "{} students need re-enrolment for {} (no kept crop): {}",
            report.need_reenrolment.len(),
            report.space,
            report.need_reenrolment.join(", ")
        )?;
    }
    Ok(())
}

fn print_enrolled(out: &mut dyn Write, image: &Path, enrolled: &Enrolled) -> Result<()> {
    writeln!(
        out,
        "{}: enrolled {} (template {}, eyes {:.0} px, sharpness {:.0}){}",
        image.display(),
        enrolled.student,
        enrolled.template,
        enrolled.eye_distance,
        enrolled.sharpness,
        if enrolled.crop_kept {
            "; aligned 112x112 crop kept"
        } else {
            "; no photo kept"
        }
    )?;
    Ok(())
}

/// `enroll --replace`: every photo is checked first; the student's templates are replaced by
/// the good ones in one transaction, or kept when none passes. Exit 1 when any photo failed.
fn re_enrol(
    pipeline: &mut crate::vision::Pipeline,
    store: &mut Store,
    student: &str,
    images: &[PathBuf],
    options: &EnrolOptions,
    out: &mut dyn Write,
) -> Result<i32> {
    let mut passed = Vec::new();
    for image in images {
        let checked = load_image(image, &ImageLimits::default())
            .map_err(anyhow::Error::from)
            .and_then(|frame| Ok(enrolment::check(pipeline, store, student, &frame, options)?));
        match checked {
            Ok(candidate) => passed.push((image, candidate)),
            Err(e) => eprintln!("error: {}: {e:#}", image.display()),
        }
    }
    if passed.is_empty() {
        bail!("no photo of {student} passed: their templates were kept as they were");
    }
    let n_passed = passed.len();
    let (passed_images, candidates): (Vec<&PathBuf>, Vec<_>) = passed.into_iter().unzip();
    let (enrolled, deleted) = enrolment::replace(store, student, &candidates, "enrol-photo")?;
    for (image, enrolled) in passed_images.into_iter().zip(&enrolled) {
        print_enrolled(out, image, enrolled)?;
    }
    writeln!(
        out,
        "{student}: {} earlier templates deleted (the server is told at the next sync)",
        deleted.len()
    )?;
    Ok(if n_passed < images.len() { 1 } else { 0 })
}
