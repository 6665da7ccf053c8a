//! What a pushed event means, independent of the backend: the checks that need no lookup, and the
//! rules both backends apply in `apply_events`.
//!
//! Per kind, in the device's school (`WrongSchool` when the id exists in another school, the
//! `Unknown*` code when it exists nowhere):
//! - `session_opened`: the section must exist. Creates the session (device, section, start); a
//!   repeat with another section is `InvalidEvent`.
//! - `session_closed`: the session must exist (`UnknownSession`); records the closing time.
//! - `mark_set`: the student must exist. The session need not have arrived yet (events of one box
//!   may arrive out of order). Replaces the held mark only if `mark_wins`; either way the event is
//!   acked.
//! - `template_added`: the student must exist and have consent `granted` (`NoConsent`). Stores the
//!   template and writes a `Template` change, unless a tombstone for that template id is already
//!   held (a delete that arrived first wins).
//! - `template_deleted`: tombstones the template (even one not seen yet) and writes a
//!   `TemplateDeleted` change.
//! - `consent_changed`: as `Store::set_consent` with the event's `by` and `at`.
//!
//! An event whose id was applied before is acked without being looked at again, and an id that
//! appears twice in one batch is applied once.

use shared_proto::sync::{Event, EventBody, RejectCode, Rejection};

/// Whose a record (section, student, session) is, seen from the pushing device's school.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Ours,
    OtherSchool,
    Missing,
}

/// Why one event is not applied; becomes a `Rejection` with the event's id.
pub struct Refusal(pub RejectCode, pub String);

impl Owner {
    /// The rule for every id an event names: the device's own school's `what` (named `id`) is
    /// fine; another school's is `WrongSchool`; none at all is `missing`, and `why_missing`
    /// (when given) says why.
    pub fn check(
        self,
        what: &str,
        id: &str,
        missing: RejectCode,
        why_missing: &str,
    ) -> Result<(), Refusal> {
        match self {
            Owner::Ours => Ok(()),
            Owner::OtherSchool => Err(Refusal(
                RejectCode::WrongSchool,
                format!("{what} {id} belongs to another school"),
            )),
            Owner::Missing => Err(Refusal(missing, format!("no {what} {id}{why_missing}"))),
        }
    }
}

/// Checks an event can be applied at all, before any lookup.
pub fn validate(event: &Event) -> Result<(), Rejection> {
    let reject = |code, reason: &str| {
        Err(Rejection {
            id: event.id.clone(),
            code,
            reason: reason.to_owned(),
        })
    };
    if uuid::Uuid::parse_str(&event.id).is_err() {
        return reject(RejectCode::InvalidId, "event id is not a UUID");
    }
    if event.at < 0 {
        return reject(RejectCode::InvalidEvent, "event time is before 1970");
    }
    let ids: Vec<&str> = match &event.body {
        EventBody::SessionOpened {
            session,
            section,
            started_at,
        } => {
            if *started_at < 0 {
                return reject(RejectCode::InvalidEvent, "session start is before 1970");
            }
            vec![session, section]
        }
        EventBody::SessionClosed { session } => vec![session],
        EventBody::MarkSet {
            session,
            student,
            score,
            decided_at,
            ..
        } => {
            if score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                return reject(RejectCode::InvalidEvent, "score is not between 0 and 1");
            }
            if *decided_at < 0 {
                return reject(RejectCode::InvalidEvent, "decision time is before 1970");
            }
            vec![session, student]
        }
        EventBody::TemplateAdded { template } => {
            if !(0.0..=1.0).contains(&template.quality) {
                return reject(RejectCode::InvalidEvent, "quality is not between 0 and 1");
            }
            if uuid::Uuid::parse_str(&template.id).is_err() {
                return reject(RejectCode::InvalidEvent, "template id is not a UUID");
            }
            vec![&template.student]
        }
        EventBody::TemplateDeleted { template, student } => vec![template, student],
        EventBody::ConsentChanged { student, by, .. } => vec![student, by],
    };
    if ids.iter().any(|id| id.trim().is_empty() || id.len() > 256) {
        return reject(
            RejectCode::InvalidEvent,
            "an id is empty or longer than 256 characters",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_proto::sync::{MarkSource, MarkStatus};

    fn mark(id: &str, score: Option<f32>) -> Event {
        Event {
            id: id.into(),
            at: 1,
            body: EventBody::MarkSet {
                session: "s".into(),
                student: "p".into(),
                status: MarkStatus::Present,
                source: MarkSource::Machine,
                score,
                decided_at: 1,
                by: None,
            },
        }
    }

    #[test]
    fn checks_ids_and_ranges() {
        let good = "0190f1f0-0000-7000-8000-000000000001";
        assert!(validate(&mark(good, Some(0.5))).is_ok());
        assert_eq!(
            validate(&mark("nope", None)).unwrap_err().code,
            RejectCode::InvalidId
        );
        assert_eq!(
            validate(&mark(good, Some(1.5))).unwrap_err().code,
            RejectCode::InvalidEvent
        );
        assert_eq!(
            validate(&mark(good, Some(f32::NAN))).unwrap_err().code,
            RejectCode::InvalidEvent
        );
    }
}
