//! A mark decided on the dashboard: an office correction, a teacher's correction of their own
//! section's roll, or a whole group excused for a school trip. The decision is a mark like a box's,
//! under the same rule (`mark_wins`: people beat the machine, the later person wins), with a
//! required reason recorded in the audit log, and a `mark` change in the feed that carries it to the
//! box of the session (protocol 2), so the teacher screen shows the roll the office sees.

use shared_proto::sync::{MarkSource, MarkStatus, mark_wins};

use super::audit::{Action, Entry};
use super::feed::Change;
use super::push::{Facts, HeldMark, Wanted};
use super::{MarkWrite, Write};
use crate::store::Millis;

/// The longest reason kept; longer ones are refused rather than cut.
pub const MAX_REASON_CHARS: usize = 500;

/// One mark to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correction {
    pub session: String,
    pub student: String,
    pub status: MarkStatus,
    /// A new id for the decision (UUIDv7): `mark_wins` breaks ties on it, on the server and the box.
    pub event_id: String,
}

/// Who decided, when and why, for every correction of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The section the corrections were made from: every session must be one of its own (the
    /// caller checked that the user may correct it).
    pub section: String,
    /// `Office` for an admin, `Teacher` for a teacher on their own section.
    pub source: MarkSource,
    /// The username, shown as "decided by" on the roll and in the audit log.
    pub by: String,
    pub reason: String,
    pub at: Millis,
}

/// Why a correction request is refused as a whole (nothing is written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a correction needs a reason (at most {MAX_REASON_CHARS} characters)")]
    Reason,
    #[error("\"needs review\" is the camera's question, not a decision: choose a status")]
    Review,
    #[error("nothing to correct")]
    Empty,
    #[error("session {0} is not one of this section's")]
    UnknownSession(String),
    #[error("student {0} is not one of this school's")]
    UnknownStudent(String),
}

/// What a request came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Marks set now.
    pub applied: usize,
    /// Marks left as they were: the same status already held, or a later decision stands.
    pub unchanged: usize,
}

/// Checks a request before anything is looked up (`plan` starts with it).
fn validate(corrections: &[Correction], decision: &Decision) -> Result<(), Refusal> {
    let reason = decision.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(Refusal::Reason);
    }
    if corrections.is_empty() {
        return Err(Refusal::Empty);
    }
    if corrections.iter().any(|c| c.status == MarkStatus::Review) {
        return Err(Refusal::Review);
    }
    Ok(())
}

/// The records `plan` reads.
pub fn wanted(corrections: &[Correction]) -> Wanted<'_> {
    let mut wanted = Wanted::default();
    for c in corrections {
        wanted.sessions.insert(&c.session);
        wanted.students.insert(&c.student);
        wanted.marks.insert((&c.session, &c.student));
    }
    wanted
}

/// Decides the corrections of `school` against `facts` (read in the same transaction): every
/// session and student must be the school's, else nothing is written; a mark already holding the
/// status, or decided later than `decision.at`, is left alone.
pub fn plan<'e>(
    school: &str,
    corrections: &'e [Correction],
    decision: &'e Decision,
    facts: &'e Facts,
) -> Result<(Vec<Write<'e>>, Outcome), Refusal> {
    validate(corrections, decision)?;
    let mut writes = Vec::new();
    let mut outcome = Outcome::default();
    for c in corrections {
        let session = facts
            .sessions
            .get(&c.session)
            .filter(|s| s.school_id == school && s.section_id == decision.section)
            .ok_or_else(|| Refusal::UnknownSession(c.session.clone()))?;
        if facts
            .students
            .get(&c.student)
            .is_none_or(|s| s.school_id != school)
        {
            return Err(Refusal::UnknownStudent(c.student.clone()));
        }
        let held: Option<&HeldMark> = facts.marks.get(&c.session).and_then(|m| m.get(&c.student));
        let held_status = held.map(|h| h.status);
        if held.is_some_and(|h| h.status == c.status && h.source.is_human()) {
            outcome.unchanged += 1;
            continue;
        }
        if let Some(held) = held {
            let wins = mark_wins(
                (decision.source, decision.at, &c.event_id),
                (held.source, held.decided_at, &held.event_id),
            );
            if !wins {
                outcome.unchanged += 1;
                continue;
            }
        }
        writes.push(Write::SetMark(MarkWrite {
            session: &c.session,
            student: &c.student,
            device: &session.device_id,
            status: c.status,
            source: decision.source,
            score: None,
            decided_at: decision.at,
            decided_by: Some(&decision.by),
            event_id: &c.event_id,
            filed_under: Some((session.section_id.clone(), session.started_at)),
            machine: HeldMark::machine_after(decision.source, c.status, held),
        }));
        writes.push(Write::Change(Change::Mark {
            session: c.session.clone(),
            student: c.student.clone(),
            status: c.status,
            source: decision.source,
            decided_at: decision.at,
            by: Some(decision.by.clone()),
            event: c.event_id.clone(),
        }));
        let was = match held_status {
            Some(status) => status.as_str(),
            None => "no mark",
        };
        writes.push(Write::Audit(Entry {
            school_id: Some(school.to_owned()),
            at: decision.at,
            actor: decision.by.clone(),
            action: Action::MarkCorrected,
            subject: format!("{}/{}", c.session, c.student),
            detail: format!(
                "{was} -> {} in section {}: {}",
                c.status.as_str(),
                session.section_id,
                decision.reason.trim()
            ),
        }));
        outcome.applied += 1;
    }
    Ok((writes, outcome))
}
