//! A group excused ahead of time: a school trip or event booked by the office for a section and a
//! range of days, before its lessons are held. The marks of lessons already held are corrected
//! when it is booked (`domain::correction`); lessons held later meet it here, when the box pushes
//! its roll: a student the camera did not see in a lesson the trip covers is excused by the
//! office, as if the office had corrected the mark the moment the trip was booked.
//!
//! So the human order decides the rest (`shared_proto::sync::mark_wins`): a student the camera saw
//! stays present (they came after all); a teacher's decision made after the booking wins over it,
//! as any later human decision does; the machine's own "absent" is kept for the recognition audit.

use jiff::tz::TimeZone;
use shared_proto::sync::{MarkSource, MarkStatus};

use super::Write;
use super::audit::{Action, Entry};
use super::correction::{self, Correction, Decision, MAX_REASON_CHARS};
use super::push::Facts;
use crate::store::Millis;

/// The longest trip booked at once.
pub const MAX_DAYS: i64 = 366;
const DAY_MS: Millis = 24 * 60 * 60 * 1000;
const HOUR_MS: Millis = 60 * 60 * 1000;

/// A booked trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excusal {
    /// A new id (UUIDv7). The marks it excuses keep the ids of the box's events.
    pub id: String,
    pub school_id: String,
    pub section_id: String,
    /// Lessons that start in `[from, to)` are covered.
    pub from: Millis,
    pub to: Millis,
    pub reason: String,
    /// The admin who booked it: "decided by" on the marks it excuses.
    pub by: String,
    /// When it was booked: the decision time of the marks it excuses.
    pub at: Millis,
}

/// Why a booking is refused (nothing is written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a trip needs a reason (at most {MAX_REASON_CHARS} characters)")]
    Reason,
    #[error("the last day comes before the first")]
    Backwards,
    #[error("a trip is booked for at most {MAX_DAYS} days at a time")]
    TooLong,
}

impl Excusal {
    /// Checks a booking before it is stored.
    pub fn check(&self) -> Result<(), Refusal> {
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(Refusal::Reason);
        }
        if self.to <= self.from {
            return Err(Refusal::Backwards);
        }
        // A school's days are local (`api::attendance::range_of`): a range across the end of
        // summer time is an hour longer than its days.
        if self.to - self.from > MAX_DAYS * DAY_MS + HOUR_MS {
            return Err(Refusal::TooLong);
        }
        Ok(())
    }

    /// The days the trip covers as the school reads them (`tz`, its time zone): `2024-09-02`, or
    /// `2024-09-02 to 2024-09-04`. A booking covers whole school days, from local midnight.
    pub fn days(&self, tz: &TimeZone) -> String {
        let day = |at: Millis| {
            super::lessons::day_of(at, tz).map_or_else(|| at.to_string(), |d| d.to_string())
        };
        let (first, last) = (day(self.from), day(self.to - 1));
        if first == last {
            first
        } else {
            format!("{first} to {last}")
        }
    }

    /// Whether a lesson of `section` of `school` that started at `started_at` is on the trip.
    fn covers(&self, school: &str, section: &str, started_at: Millis) -> bool {
        self.school_id == school
            && self.section_id == section
            && (self.from..self.to).contains(&started_at)
    }
}

/// Why a booking is refused: the trip itself, or the correction of lessons already held.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookingRefusal {
    #[error("{0}")]
    Trip(#[from] Refusal),
    #[error("{0}")]
    Held(#[from] correction::Refusal),
}

/// Books `trip` in one transaction with the excuse of the marks of lessons it covers that were
/// held already (`held`, each to `Excused`, decided like an office correction with the trip's
/// reason), and the audit line. `facts`: what `correction::wanted(held)` names.
pub fn book<'e>(
    trip: &'e Excusal,
    held: &'e [Correction],
    decision: &'e Decision,
    facts: &'e Facts,
    tz: &TimeZone,
) -> Result<(Vec<Write<'e>>, correction::Outcome), BookingRefusal> {
    trip.check()?;
    let (mut writes, outcome) = if held.is_empty() {
        (Vec::new(), correction::Outcome::default())
    } else {
        correction::plan(&trip.school_id, held, decision, facts)?
    };
    writes.push(Write::BookExcusal(trip));
    writes.push(Write::Audit(Entry {
        school_id: Some(trip.school_id.clone()),
        at: trip.at,
        actor: trip.by.clone(),
        action: Action::TripBooked,
        subject: trip.section_id.clone(),
        detail: format!(
            "{}: {}; {} held mark(s) excused now",
            trip.days(tz),
            trip.reason.trim(),
            outcome.applied
        ),
    }));
    Ok((writes, outcome))
}

/// The decision of the marks a booking excuses at once: the office's, with the trip's reason.
pub fn decision_of(trip: &Excusal) -> Decision {
    Decision {
        section: trip.section_id.clone(),
        source: MarkSource::Office,
        by: trip.by.clone(),
        reason: trip.reason.clone(),
        at: trip.at,
    }
}

/// Cancels `trip` (held by the school): later lessons are no longer excused by it; marks it
/// excused stay, as any office decision does, until someone corrects them.
pub fn cancel(trip: &Excusal, by: &str, at: Millis, tz: &TimeZone) -> Vec<Write<'static>> {
    vec![
        Write::CancelExcusal {
            id: trip.id.clone(),
        },
        Write::Audit(Entry {
            school_id: Some(trip.school_id.clone()),
            at,
            actor: by.to_owned(),
            action: Action::TripCancelled,
            subject: trip.section_id.clone(),
            detail: format!("{}: {}", trip.days(tz), trip.reason.trim()),
        }),
    ]
}

/// The booking that turns a box's decision into an office excuse, if any: only the machine's
/// "absent" (a student the camera did not see) in a lesson a trip covers. Of two bookings that
/// cover it, the earlier decides (both excuse; the earlier is the decision that stood first).
pub fn excusing<'a>(
    excusals: &'a [Excusal],
    school: &str,
    section: &str,
    started_at: Millis,
    source: MarkSource,
    status: MarkStatus,
) -> Option<&'a Excusal> {
    if source != MarkSource::Machine || status != MarkStatus::Absent {
        return None;
    }
    excusals
        .iter()
        .filter(|e| e.covers(school, section, started_at))
        .min_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trip(from: Millis, to: Millis) -> Excusal {
        Excusal {
            id: "trip-1".into(),
            school_id: "north".into(),
            section_id: "maths".into(),
            from,
            to,
            reason: "Museum".into(),
            by: "admin".into(),
            at: 5,
        }
    }

    #[test]
    fn only_the_machines_absent_in_a_covered_lesson_is_excused() {
        let trips = [trip(100, 200)];
        let excused = |section, at, source, status| {
            excusing(&trips, "north", section, at, source, status).is_some()
        };
        use MarkSource::{Machine, Teacher};
        use MarkStatus::{Absent, Present, Review};
        assert!(excused("maths", 100, Machine, Absent));
        assert!(excused("maths", 199, Machine, Absent));
        assert!(
            !excused("maths", 200, Machine, Absent),
            "the range ends before to"
        );
        assert!(!excused("maths", 99, Machine, Absent));
        assert!(!excused("art", 150, Machine, Absent), "another section");
        assert!(!excused("maths", 150, Machine, Present), "came after all");
        assert!(
            !excused("maths", 150, Machine, Review),
            "the teacher decides"
        );
        assert!(!excused("maths", 150, Teacher, Absent), "a person decided");
        assert!(excusing(&trips, "south", "maths", 150, Machine, Absent).is_none());
    }

    #[test]
    fn bookings_are_checked() {
        assert_eq!(trip(0, DAY_MS).check(), Ok(()));
        assert_eq!(trip(DAY_MS, DAY_MS).check(), Err(Refusal::Backwards));
        assert_eq!(
            trip(0, (MAX_DAYS + 1) * DAY_MS).check(),
            Err(Refusal::TooLong)
        );
        // The longest trip across the end of summer time.
        assert_eq!(trip(0, MAX_DAYS * DAY_MS + HOUR_MS).check(), Ok(()));
        let blank = Excusal {
            reason: "  ".into(),
            ..trip(0, DAY_MS)
        };
        assert_eq!(blank.check(), Err(Refusal::Reason));
    }
}
