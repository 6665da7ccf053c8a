//! A session's roll as a teacher sees it, and the teacher's acts on it: open a session without a
//! capture (manual roll call), mark a student, settle a "needs review" item. The CLI and the
//! teacher screen both go through here, so both behave alike.

use serde::Serialize;

use super::capture::Scored;
use super::lesson::Moment;
use crate::store::{
    Consent, Mark, MarkSource, MarkStatus, SessionRecord, Store, StoreError, StudentRecord,
};

/// One student of the section and where they stand in the session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RollRow {
    pub student: String,
    /// Given and family name, for the screen.
    pub name: String,
    /// `None`: not marked yet (no capture, nobody marked them).
    pub status: Option<MarkStatus>,
    pub source: Option<MarkSource>,
    pub score: Option<f32>,
    /// For a review mark: the best candidates of the face, best first.
    pub candidates: Vec<Scored>,
    pub consent: Consent,
    pub n_templates: usize,
}

/// Every active student of a section, by id, with their mark in `session` if there is one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Roll {
    pub section: String,
    pub session: Option<String>,
    pub rows: Vec<RollRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(
        "{student} is not waiting for review in session {session}; use `edge-agent mark` to change a mark"
    )]
    NotInReview { session: String, student: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A teacher's decision on a "needs review" item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewDecision {
    /// It is them: present.
    Confirm,
    /// It is not them: absent.
    Reject,
}

impl ReviewDecision {
    /// The teacher's mark the decision stands for.
    pub fn status(self) -> MarkStatus {
        match self {
            ReviewDecision::Confirm => MarkStatus::Present,
            ReviewDecision::Reject => MarkStatus::Absent,
        }
    }
}

/// The roll of `section`, with the marks of `session` (which must belong to it) if given.
pub fn roll(store: &Store, section: &str, session: Option<&str>) -> Result<Roll, StoreError> {
    let marks = match session {
        Some(session) => store.marks(session)?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for student in store.section_students(section)? {
        let record = store.student(&student)?;
        let mark = marks.iter().find(|m| m.student_id == student);
        rows.push(row(store, record, mark)?);
    }
    Ok(Roll {
        section: section.to_owned(),
        session: session.map(str::to_owned),
        rows,
    })
}

/// The roll of a session, its section looked up.
pub fn session_roll(store: &Store, session: &str) -> Result<Roll, StoreError> {
    let section = store.session_section(session)?;
    roll(store, &section, Some(session))
}

fn row(store: &Store, record: StudentRecord, mark: Option<&Mark>) -> Result<RollRow, StoreError> {
    let candidates = mark
        .and_then(|m| m.candidates.clone())
        .map(|c| c.0)
        .unwrap_or_default();
    let name = format!("{} {}", record.given_name, record.family_name)
        .trim()
        .to_owned();
    Ok(RollRow {
        n_templates: store.template_count(&record.id)?,
        name: if name.is_empty() {
            record.id.clone()
        } else {
            name
        },
        student: record.id,
        status: mark.map(|m| m.status),
        source: mark.map(|m| m.source),
        score: mark.and_then(|m| m.score),
        candidates,
        consent: record.consent,
    })
}

/// Stores a new session (a capture's, or an empty one) and returns its id. Every new session goes
/// through here: sessions whose lesson has ended are closed first.
pub fn open_session(store: &mut Store, record: &SessionRecord<'_>) -> Result<String, StoreError> {
    close_ended_sessions(store, crate::store::now_ms())?;
    store.record_session(record)
}

/// Opens a session with no capture and no marks (manual roll call, or a capture still to come);
/// returns its id.
pub fn open_manual_session(store: &mut Store, section: &str) -> Result<String, StoreError> {
    open_session(
        store,
        &SessionRecord {
            section_id: section,
            n_frames: 0,
            unknown_faces: 0,
            too_small_faces: 0,
            not_on_roster: &[],
            marks: &[],
        },
    )
}

/// How far back a restarted screen looks for a session to continue when the section has no
/// lesson in the timetable now.
pub const RESUME_WINDOW_MS: i64 = 45 * 60 * 1000;

/// The session of `section` that a screen opened at `now` (`now_ms`) should continue rather than
/// start another: the latest one begun since the lesson under way started by the timetable, or in
/// the last [`RESUME_WINDOW_MS`] when the timetable has no lesson of the section now. A box
/// restarted mid-lesson keeps one session per lesson.
pub fn resumable_session(
    store: &Store,
    section: &str,
    now: super::lesson::Moment,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let lesson_start = store
        .lessons_at(now.weekday, now.minute)?
        .into_iter()
        .filter(|slot| slot.section_id == section)
        .filter_map(|slot| crate::store::minutes_of_day(&slot.starts))
        .min();
    let since = match lesson_start {
        // Minutes since the lesson began, plus the seconds of the current minute.
        Some(start) => now_ms - (i64::from(now.minute.saturating_sub(start)) * 60 + 59) * 1000,
        None => now_ms - RESUME_WINDOW_MS,
    };
    store.latest_session_since(section, since)
}

/// Closes every open session whose lesson has ended by `now_ms`, at the end of its lesson; called
/// whenever a session opens (`open_session`). The teacher screen closes its session when the teacher leaves the
/// roll, but a screen killed mid-lesson, or a session opened from the CLI, has nobody to close
/// it: this leaves nothing open for ever. Returns how many it closed.
pub fn close_ended_sessions(store: &mut Store, now_ms: i64) -> Result<usize, StoreError> {
    let mut n_closed = 0;
    for open in store.open_sessions()? {
        let started = Moment::at_ms(open.started_at);
        let lesson_ends = match started {
            Some((moment, _)) => store
                .lessons_at(moment.weekday, moment.minute)?
                .into_iter()
                .filter(|slot| slot.section_id == open.section_id)
                .filter_map(|slot| crate::store::minutes_of_day(&slot.ends))
                .max(),
            None => None,
        };
        let ends = lesson_end_ms(open.started_at, started, lesson_ends);
        if ends <= now_ms && store.close_session(&open.id, ends)? {
            n_closed += 1;
        }
    }
    Ok(n_closed)
}

/// When the lesson of a session that began at `started_at` ends: the end (`lesson_ends`, a minute
/// of the day) of the timetable's lesson it began in, else [`RESUME_WINDOW_MS`] after it began,
/// when a restarted screen would no longer continue it either.
fn lesson_end_ms(started_at: i64, started: Option<(Moment, i64)>, lesson_ends: Option<u16>) -> i64 {
    match (started, lesson_ends) {
        (Some((moment, past_minute)), Some(ends)) => {
            started_at - past_minute + i64::from(ends.saturating_sub(moment.minute)) * 60_000
        }
        _ => started_at + RESUME_WINDOW_MS,
    }
}

/// Settles a review item: confirmed is present, rejected is absent, as a teacher's mark. Refused
/// for a student who is not waiting for review, so a stray key cannot overwrite another mark.
pub fn review(
    store: &mut Store,
    session: &str,
    student: &str,
    decision: ReviewDecision,
    by: &str,
) -> Result<MarkStatus, ReviewError> {
    let in_review = store
        .marks(session)?
        .iter()
        .any(|m| m.student_id == student && m.status == MarkStatus::Review);
    if !in_review {
        return Err(ReviewError::NotInReview {
            session: session.to_owned(),
            student: student.to_owned(),
        });
    }
    let status = decision.status();
    store.set_teacher_mark(session, student, status, by)?;
    Ok(status)
}

#[cfg(test)]
mod close_tests {
    use super::*;

    #[test]
    fn a_session_ends_with_its_lesson_or_when_it_would_no_longer_be_resumed() {
        let monday_0840 = Moment {
            weekday: 1,
            minute: 8 * 60 + 40,
        };
        // Begun at 08:40:30.5 in a lesson that ends at 09:15: 34 min 29.5 s later.
        let started_at = 1_000_000_000;
        assert_eq!(
            lesson_end_ms(started_at, Some((monday_0840, 30_500)), Some(9 * 60 + 15)),
            started_at + 34 * 60_000 + 29_500
        );
        assert_eq!(
            lesson_end_ms(started_at, Some((monday_0840, 30_500)), None),
            started_at + RESUME_WINDOW_MS
        );
        assert_eq!(
            lesson_end_ms(started_at, None, None),
            started_at + RESUME_WINDOW_MS
        );
    }

    #[test]
    fn a_session_whose_lesson_ended_is_closed_when_the_next_opens() {
        let mut store = resume_tests::store_with_lesson();
        let first = open_manual_session(&mut store, "c1").unwrap();
        let opened = crate::store::now_ms();
        // Still its lesson (or its 45 minutes): the next session leaves it open.
        assert_eq!(close_ended_sessions(&mut store, opened + 1000).unwrap(), 0);
        let second = open_manual_session(&mut store, "c1").unwrap();
        let opened_second = crate::store::now_ms();
        assert_eq!(store.open_sessions().unwrap().len(), 2);
        // Long after: both close, each once, at most 45 minutes after it began.
        let later = opened_second + RESUME_WINDOW_MS + 60_000;
        assert_eq!(close_ended_sessions(&mut store, later).unwrap(), 2);
        assert_eq!(close_ended_sessions(&mut store, later).unwrap(), 0);
        for session in [&first, &second] {
            let closed_at = store.session_closed_at(session).unwrap().unwrap();
            assert!(closed_at <= opened_second + RESUME_WINDOW_MS, "{closed_at}");
        }
        assert!(store.check_invariants().unwrap().is_empty());
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::attendance::lesson::Moment;
    use crate::roster::{RosterImport, Section};
    use crate::store::Slot;

    pub(super) fn store_with_lesson() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let import = RosterImport {
            sections: vec![Section {
                id: "c1".into(),
                title: "7B".into(),
                school_id: "o1".into(),
                active: true,
            }],
            ..RosterImport::default()
        };
        store.apply_roster(&import, "test").unwrap();
        store
            .set_schedule(
                "c1",
                &[Slot {
                    section_id: "c1".into(),
                    weekday: 1,
                    starts: "08:30".into(),
                    ends: "09:15".into(),
                    room: None,
                }],
                "test",
            )
            .unwrap();
        store
    }

    #[test]
    fn a_session_of_the_lesson_under_way_is_continued_and_an_older_one_is_not() {
        let mut store = store_with_lesson();
        let session = open_manual_session(&mut store, "c1").unwrap();
        let opened = crate::store::now_ms();
        // Ten minutes into the lesson: the session opened now is this lesson's.
        let in_lesson = Moment {
            weekday: 1,
            minute: 8 * 60 + 40,
        };
        assert_eq!(
            resumable_session(&store, "c1", in_lesson, opened + 1000).unwrap(),
            Some(session.clone())
        );
        // An hour later by the clock, the lesson under way began after that session: a new lesson,
        // a new session.
        assert_eq!(
            resumable_session(&store, "c1", in_lesson, opened + 3_600_000).unwrap(),
            None
        );
        // No lesson now: a session of the last 45 minutes, no older.
        let free = Moment {
            weekday: 2,
            minute: 12 * 60,
        };
        assert_eq!(
            resumable_session(&store, "c1", free, opened + 60_000).unwrap(),
            Some(session)
        );
        assert_eq!(
            resumable_session(&store, "c1", free, opened + RESUME_WINDOW_MS + 1).unwrap(),
            None
        );
    }
}
