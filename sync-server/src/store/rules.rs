//! What a pushed event means, independent of the backend: the checks that need no lookup, and the
//! rules that `domain::push` carries out for every backend.
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

use shared_proto::sync::RejectCode;

use crate::domain::event::{Body, Event};
use crate::domain::push::Refused;

use crate::store::{Millis, StoreError};

/// Whose a record (section, student, session) is, seen from the pushing device's school.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Ours,
    OtherSchool,
    Missing,
}

/// Why one event is not applied; becomes a `Refused` with the event's id.
pub struct Refusal(pub RejectCode, pub String);

impl Owner {
    /// Whose a record is, from the school it belongs to (`None`: no such record) and the school
    /// asking.
    pub fn of(school_of_record: Option<&str>, ours: &str) -> Owner {
        match school_of_record {
            None => Owner::Missing,
            Some(school) if school == ours => Owner::Ours,
            Some(_) => Owner::OtherSchool,
        }
    }

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
pub fn validate(event: &Event) -> Result<(), Refused> {
    let reject = |code, reason: &str| {
        Err(Refused {
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
        Body::SessionOpened {
            session,
            section,
            started_at,
        } => {
            if *started_at < 0 {
                return reject(RejectCode::InvalidEvent, "session start is before 1970");
            }
            vec![session, section]
        }
        Body::SessionClosed { session } => vec![session],
        Body::MarkSet {
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
        Body::TemplateAdded(template) => {
            if !(0.0..=1.0).contains(&template.quality) {
                return reject(RejectCode::InvalidEvent, "quality is not between 0 and 1");
            }
            if uuid::Uuid::parse_str(&template.id).is_err() {
                return reject(RejectCode::InvalidEvent, "template id is not a UUID");
            }
            vec![&template.student]
        }
        Body::TemplateDeleted { template, student } => vec![template, student],
        Body::ConsentChanged { student, by, .. } => vec![student, by],
    };
    if ids.iter().any(|id| id.trim().is_empty() || id.len() > 256) {
        return reject(
            RejectCode::InvalidEvent,
            "an id is empty or longer than 256 characters",
        );
    }
    Ok(())
}

/// An id another school holds (ids are global OneRoster sourcedIds): refused, never moved. The
/// message names only the id the caller sent, never whose it is.
pub fn id_taken(noun: &str, id: &str) -> StoreError {
    StoreError::Conflict(format!("{noun} id {id}"))
}

/// Refuses an event whose times are more than `max_ahead_ms` ahead of `now`. A box whose clock
/// ran ahead would otherwise write a mark decided in year 9999 that beats every later
/// correction for ever. Times in the past are fine: boxes stay offline for weeks.
pub fn check_clock(event: &Event, now: Millis, max_ahead_ms: Millis) -> Result<(), Refused> {
    // Runs for every pushed event: no allocation.
    let body_time = match &event.body {
        Body::SessionOpened { started_at, .. } => Some(("session start", *started_at)),
        Body::MarkSet { decided_at, .. } => Some(("decision time", *decided_at)),
        Body::TemplateAdded(template) => Some(("template time", template.created_at)),
        Body::SessionClosed { .. } | Body::TemplateDeleted { .. } | Body::ConsentChanged { .. } => {
            None
        }
    };
    let times = std::iter::once(("event time", event.at)).chain(body_time);
    let limit = now.saturating_add(max_ahead_ms);
    match times.into_iter().find(|&(_, at)| at > limit) {
        None => Ok(()),
        Some((what, at)) => Err(Refused {
            id: event.id.clone(),
            code: RejectCode::InvalidEvent,
            reason: format!(
                "{what} {} is {} ahead of the server's clock (at most {} h allowed): set the box's clock, then record it again",
                describe_time(at),
                shared_proto::clock::amount(at - now),
                max_ahead_ms / 3_600_000
            ),
        }),
    }
}

fn describe_time(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at).map_or_else(
        |_| format!("{at} ms after 1970 (beyond the calendar)"),
        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_proto::sync::{MarkSource, MarkStatus};

    fn mark(id: &str, score: Option<f32>) -> Event {
        Event {
            id: id.into(),
            at: 1,
            body: Body::MarkSet {
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
    fn times_far_ahead_are_refused_and_the_past_is_fine() {
        let good = "0190f1f0-0000-7000-8000-000000000001";
        let day = 24 * 3_600_000;
        let now = 1_780_000_000_000;
        let mut event = mark(good, None);
        event.at = now;
        if let Body::MarkSet { decided_at, .. } = &mut event.body {
            *decided_at = 253_388_563_200_000; // 9999-06-01
        }
        let refused = check_clock(&event, now, day).unwrap_err();
        assert_eq!(refused.code, RejectCode::InvalidEvent);
        assert!(
            refused.reason.starts_with("decision time 9999-")
                && refused.reason.contains("set the box's clock"),
            "{}",
            refused.reason
        );
        if let Body::MarkSet { decided_at, .. } = &mut event.body {
            *decided_at = now + day - 1;
        }
        assert!(check_clock(&event, now, day).is_ok());
        event.at = now - 60 * day;
        assert!(
            check_clock(&event, now, day).is_ok(),
            "weeks offline is fine"
        );
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
