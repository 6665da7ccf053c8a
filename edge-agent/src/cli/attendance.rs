//! The attendance subcommands: roster import, consent, enrolment, capture, teacher marks.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{
    Command, ConsentDecision, ReviewDecision, RosterCommand, ScheduleCommand, SessionCommand,
    TeacherStatus, VisionArgs,
};
use crate::attendance::capture::{CaptureOutcome, capture};
use crate::capture::{ImageLimits, load_image};
use crate::config::Config;
use crate::enrolment::{EnrolOptions, enrol};
use crate::store::{Consent, MarkStatus, SessionRecord, Slot, Store, minutes_of_day};

const DATABASE_FILE: &str = "rollcall.sqlite";
pub(super) const CONFIG_FILE: &str = "edge-agent.toml";

pub(super) fn open_store(data_dir: &Path) -> Result<Store> {
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
        Command::Session(SessionCommand::Open { section, at }) => {
            let mut store = open_store(data_dir)?;
            let section = match section {
                Some(section) => section,
                None => lesson_now(&store, at.as_deref())?.section_id,
            };
            let session = store.record_session(&SessionRecord {
                section_id: &section,
                n_frames: 0,
                unknown_faces: 0,
                too_small_faces: 0,
                not_on_roster: &[],
                marks: &[],
            })?;
            writeln!(out, "{session}")?;
            eprintln!(
                "session {session} open for {section}: mark students with `edge-agent mark {session} STUDENT present|absent|late|excused`"
            );
        }
        Command::Session(SessionCommand::Show { session, json }) => {
            let store = open_store_existing(data_dir)?;
            let (section, rows) = session_roll(&store, &session)?;
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
                    serde_json::json!({"session": session, "section": section, "students": rows})
                )?;
            } else {
                writeln!(out, "session {session} — section {section}")?;
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
            let mut store = open_store_existing(data_dir)?;
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
        | Command::Identify { .. }
        | Command::Provision { .. }
        | Command::Sync { .. }
        | Command::Status { .. } => {
            unreachable!("vision and sync commands are dispatched in cli::run")
        }
    }
    Ok(0)
}

/// Opens the database only if it exists: a read must not leave an empty database behind.
pub(super) fn open_store_existing(data_dir: &Path) -> Result<Store> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        bail!(
            "no Rollcall database in {} (import a roster first, or pass --data-dir)",
            data_dir.display()
        );
    }
    Ok(Store::open(&path)?)
}

/// A student, their status, and who decided it.
type RollRow = (String, &'static str, &'static str);

/// Each student of the session's section with their status and who decided it.
fn session_roll(store: &Store, session: &str) -> Result<(String, Vec<RollRow>)> {
    let marks = store.marks(session)?;
    let section = store.session_section(session)?;
    let rows = store
        .section_students(&section)?
        .into_iter()
        .map(
            |student| match marks.iter().find(|m| m.student_id == student) {
                Some(m) => (student, m.status.as_str(), m.source.as_str()),
                None => (student, "unmarked", "-"),
            },
        )
        .collect();
    Ok((section, rows))
}

/// Parses `mon-08:40` (or `1-08:40`) into an ISO weekday and a minute of the day.
fn parse_moment(text: &str) -> Result<(u8, u16)> {
    let (day, time) = text
        .split_once('-')
        .with_context(|| format!("{text:?}: expected DAY-HH:MM, e.g. mon-08:40"))?;
    let day = parse_weekday(day)?;
    let minute =
        minutes_of_day(time).with_context(|| format!("{time:?} is not a time as HH:MM"))?;
    Ok((day, minute))
}

fn parse_weekday(text: &str) -> Result<u8> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let lower = text.to_ascii_lowercase();
    if let Some(i) = DAYS.iter().position(|d| lower.starts_with(d)) {
        return Ok(i as u8 + 1);
    }
    match lower.parse::<u8>() {
        Ok(n @ 1..=7) => Ok(n),
        _ => bail!("{text:?} is not a weekday: use mon, tue, ... sun or 1-7"),
    }
}

/// The one lesson under way now (local time) or at `at`; an error naming the choices otherwise.
fn lesson_now(store: &Store, at: Option<&str>) -> Result<Slot> {
    let (weekday, minute) = match at {
        Some(at) => parse_moment(at)?,
        None => {
            let now = jiff::Zoned::now();
            (
                now.weekday().to_monday_one_offset() as u8,
                now.hour() as u16 * 60 + now.minute() as u16,
            )
        }
    };
    let mut lessons = store.lessons_at(weekday, minute)?;
    match lessons.len() {
        1 => Ok(lessons.remove(0)),
        0 => bail!("no lesson in the timetable at this time; pass --section"),
        _ => {
            let names: Vec<&str> = lessons.iter().map(|s| s.section_id.as_str()).collect();
            bail!(
                "several lessons at this time ({}); pass --section",
                names.join(", ")
            )
        }
    }
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
            print_slot(out, &lesson_now(&store, at.as_deref())?)?;
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
