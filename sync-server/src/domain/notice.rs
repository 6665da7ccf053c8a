//! Notices: the e-mails the server sends (issue 16), decided once for both stores and every caller.
//!
//! Decided here:
//! - what a guardian is told, and when (`plan_guardians`): only final marks (a lesson's grace
//!   period over, the mark as it stands then), absences and lateness only (never a mark waiting
//!   for review), one mail per contact per school day, then a correction whenever what they were
//!   told no longer holds;
//! - the idempotency key that makes planning the same thing twice, by one process or two, enqueue
//!   it once (`key`);
//! - what an SMTP answer does to a notice (`after_attempt`): sent, retried after 1, 5, 15 and then
//!   every 60 minutes up to `MAX_ATTEMPTS`, or failed with the server's answer kept;
//! - which notices a sender may claim, and for how long (`Claim`).
//!
//! The stores keep notices and lease them out; `notify` renders and sends them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared_proto::sync::MarkStatus;

use super::guardian::Guardian;
use crate::store::{AttendanceRow, Millis};

/// Tries before a notice that keeps failing transiently is given up as failed.
pub const MAX_ATTEMPTS: u32 = 10;
/// Waits after the 1st, 2nd, 3rd failed try, then `RETRY_MINUTES[3]` after every later one.
pub const RETRY_MINUTES: [i64; 4] = [1, 5, 15, 60];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A guardian's first notice of a day: their children's absent and late lessons.
    Absence,
    /// A guardian's later notice of the same day: what changed since they were told.
    Correction,
    /// The school admins' daily digest.
    AdminDigest,
    /// A box offline during school hours, to the admins.
    OfflineAlert,
}

shared_proto::vocabulary!(Kind, "notice kind", {
    Absence => "absence",
    Correction => "correction",
    AdminDigest => "admin_digest",
    OfflineAlert => "offline_alert",
});

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Absence => "absence notice",
            Kind::Correction => "correction",
            Kind::AdminDigest => "admins' digest",
            Kind::OfflineAlert => "offline box alert",
        }
    }

    /// Sent to a guardian (and so with an unsubscribe link).
    pub fn to_guardian(self) -> bool {
        matches!(self, Kind::Absence | Kind::Correction)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Queued,
    /// Leased to one sender until `lease_until`; a lease that runs out (the sender died) makes the
    /// notice claimable again.
    Sending,
    Sent,
    Failed,
}

shared_proto::vocabulary!(State, "notice state", {
    Queued => "queued",
    Sending => "sending",
    Sent => "sent",
    Failed => "failed",
});

/// A notice, rendered when it was enqueued: what is sent is what was decided then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What it says and to whom.
    pub letter: Letter,
    pub state: State,
    /// Tries so far, counting one that is under way.
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
    /// The last failure, as the SMTP server (or the connection) said it.
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub sent_at: Option<Millis>,
}

/// What a notice says and to whom: everything a new notice holds but its delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    pub id: String,
    /// `<id@domain>`: the same on every try, so a copy sent twice (a crash between the SMTP
    /// server's accept and the commit) is recognisable as one notice.
    pub message_id: String,
    pub school_id: String,
    pub kind: Kind,
    /// `key`: the same notice planned twice is enqueued once.
    pub key: String,
    /// Lower-case address.
    pub recipient: String,
    /// The contact it goes to, for a guardian's notice: whether they still want it is checked
    /// before it is sent.
    pub guardian_id: Option<String>,
    /// The school day it is about, `YYYY-MM-DD` in the school's time zone.
    pub day: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// What the recipient knows once it is sent (JSON of `Vec<Told>` for a guardian's notice):
    /// the next notice of the day tells only what changed.
    pub facts: String,
    /// The students it names: erasing one deletes the notices that name them.
    pub students: Vec<String>,
}

impl Notice {
    /// `letter` as it is enqueued at `now`: due at once, untried, leased to nobody.
    pub fn queued(letter: Letter, now: Millis) -> Notice {
        Notice {
            letter,
            state: State::Queued,
            attempts: 0,
            next_attempt_at: now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: now,
            sent_at: None,
        }
    }
}

/// The idempotency key of a notice: its school, kind, recipient, day, how many notices of the day
/// that recipient had been sent before it, and its content (the facts it tells). Two processes
/// planning from the same facts enqueue one notice; the count lets a day that changes back and
/// forth still send each change.
pub fn key(
    school_id: &str,
    kind: Kind,
    recipient: &str,
    day: &str,
    before: usize,
    facts: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        school_id,
        kind.as_str(),
        recipient,
        day,
        &before.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(Sha256::digest(facts.as_bytes()));
    hex::encode(h.finalize())
}

/// What a sender asks for: up to `limit` notices due at `now` (queued and due, or leased to a
/// sender whose lease has run out), leased to `owner` until `lease_until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Unique to this claim: a sender finishes only notices its claim still holds.
    pub owner: String,
    pub now: Millis,
    pub lease_until: Millis,
    pub limit: usize,
}

/// The SMTP server's answer to one try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// 4xx, a refused connection, a timeout: try again later.
    Transient(String),
    /// 5xx: the server will not take it.
    Permanent(String),
    /// Not sent, and never to be (the guardian unsubscribed or was removed).
    Dropped(String),
}

/// The fields a finished try sets on its notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub state: State,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub sent_at: Option<Millis>,
}

/// What a try's `outcome` does to a notice that has now had `attempts` tries.
pub fn after_attempt(notice: &Notice, outcome: &Delivery, now: Millis) -> Finish {
    let done = |state, error: Option<&str>, sent_at| Finish {
        state,
        attempts: notice.attempts,
        next_attempt_at: notice.next_attempt_at,
        last_error: error.map(str::to_owned),
        sent_at,
    };
    match outcome {
        Delivery::Accepted => done(State::Sent, None, Some(now)),
        Delivery::Permanent(why) | Delivery::Dropped(why) => done(State::Failed, Some(why), None),
        Delivery::Transient(why) if notice.attempts >= MAX_ATTEMPTS => done(
            State::Failed,
            Some(&format!("gave up after {MAX_ATTEMPTS} tries: {why}")),
            None,
        ),
        Delivery::Transient(why) => {
            let wait = RETRY_MINUTES[(notice.attempts.max(1) as usize - 1).min(3)];
            Finish {
                state: State::Queued,
                attempts: notice.attempts,
                next_attempt_at: now + wait * 60_000,
                last_error: Some(why.clone()),
                sent_at: None,
            }
        }
    }
}

/// A claimed notice handed back untried (the SMTP server just failed another, or the lease is too
/// short for another try): queued as it was, the claim's try not counted.
pub fn release(notice: &Notice, due: Millis, why: &str) -> Finish {
    Finish {
        state: State::Queued,
        attempts: notice.attempts.saturating_sub(1),
        next_attempt_at: due,
        last_error: Some(why.to_owned()),
        sent_at: None,
    }
}

/// A failed notice sent again from the dashboard: queued now, with its tries counted afresh.
/// Only a failed notice can be resent (a sent one was delivered; a queued one is on its way).
pub fn resend(now: Millis) -> Finish {
    Finish {
        state: State::Queued,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        sent_at: None,
    }
}

/// One lesson a guardian is told about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Told {
    pub student_id: String,
    pub starts: Millis,
    pub session_id: String,
    pub section_id: String,
    /// `absent` or `late`.
    pub status: String,
}

/// A guardian's notice to enqueue, before it is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub kind: Kind,
    pub key: String,
    pub guardian: Guardian,
    /// Everything they know once it is sent.
    pub now_told: Vec<Told>,
    /// What it tells: for a first notice everything, for a correction what changed.
    pub change: Change,
}

/// What a correction changes of what a guardian was told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Newly absent or late, or with another status than they were told.
    pub added: Vec<Told>,
    /// Told before, now neither absent nor late (a correction to present or excused).
    pub withdrawn: Vec<Told>,
}

/// When guardians hear of a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardianTiming {
    /// One digest at the school's digest time.
    Digest,
    /// As soon as a lesson's grace period is over.
    AfterEachLesson,
    /// Not at all.
    Off,
}

/// The school's notice settings that `plan_guardians` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardianRules {
    pub timing: GuardianTiming,
    /// Minutes after its end that a lesson's marks are final.
    pub grace_minutes: u32,
    /// The digest's time on the school day, in milliseconds.
    pub digest_at: Millis,
    /// Whether a correction is sent after a notice went out.
    pub corrections: bool,
}

/// A school day, for planning guardians' notices of it.
pub struct Day<'a> {
    /// `YYYY-MM-DD`.
    pub day: &'a str,
    pub school_id: &'a str,
    pub now: Millis,
    /// The school's contacts, opted out or not.
    pub guardians: &'a [Guardian],
    /// The day's marks.
    pub marks: &'a [AttendanceRow],
    /// When each session's lesson ends (`lessons::register`), for the grace period.
    pub lesson_ends: &'a HashMap<String, Millis>,
    /// The day's guardians' notices enqueued so far (any state), oldest first.
    pub told: &'a [Notice],
    /// Whether a contact told nothing yet may get a first notice: today, yes; on an earlier day
    /// only corrections are sent (a family never hears of a past day out of the blue).
    pub first_notices: bool,
}

/// The guardians' notices due for `day` at `day.now`: for each contact who has not opted out,
/// a first notice when the school's timing says so and something final is to be told, then a
/// correction whenever what they know no longer matches the final marks. Notices already
/// enqueued have the same key and are not enqueued twice.
pub fn plan_guardians(rules: &GuardianRules, day: &Day<'_>) -> Vec<Draft> {
    if rules.timing == GuardianTiming::Off {
        return Vec::new();
    }
    let grace = Millis::from(rules.grace_minutes) * 60_000;
    // Final: the lesson ended more than the grace period ago. The mark as it stands now is what
    // counts, so a change inside the grace period is never told.
    let mut finals: HashMap<&str, Vec<Told>> = HashMap::new();
    for mark in day.marks {
        let (Some(section), Some(starts)) = (&mark.section_id, mark.started_at) else {
            continue;
        };
        let Some(ends) = day.lesson_ends.get(&mark.session_id) else {
            continue;
        };
        if day.now < ends + grace {
            continue;
        }
        let status = match mark.status {
            MarkStatus::Absent => "absent",
            MarkStatus::Late => "late",
            // Present, excused by the office, or waiting for a person's review: nothing to tell.
            MarkStatus::Present | MarkStatus::Excused | MarkStatus::Review => continue,
        };
        finals.entry(&mark.student_id).or_default().push(Told {
            student_id: mark.student_id.clone(),
            starts,
            session_id: mark.session_id.clone(),
            section_id: section.clone(),
            status: status.to_owned(),
        });
    }
    // What each contact was told last; `None` where that notice's facts do not parse (written by
    // another build, or damaged): what they know is unknown, so no correction is built on it.
    let mut sent_before: HashMap<&str, (usize, Option<Vec<Told>>)> = HashMap::new();
    for notice in day.told.iter().filter(|n| n.letter.kind.to_guardian()) {
        let entry = sent_before.entry(&notice.letter.recipient).or_default();
        entry.0 += 1;
        entry.1 = serde_json::from_str(&notice.letter.facts)
            .inspect_err(|e| {
                tracing::error!(notice = %notice.letter.id, error = %e,
                    "a guardian's notice whose facts do not parse: no correction follows it");
            })
            .ok();
    }
    let mut out = Vec::new();
    for guardian in day.guardians.iter().filter(|g| g.opted_out_at.is_none()) {
        let mut now_told: Vec<Told> = guardian
            .student_ids
            .iter()
            .filter_map(|s| finals.get(s.as_str()))
            .flatten()
            .cloned()
            .collect();
        now_told.sort();
        let (before, was_told) = match sent_before.get(guardian.email.as_str()) {
            None => (0, &[][..]),
            Some((n, Some(told))) => (*n, &told[..]),
            Some((_, None)) => continue,
        };
        let kind = if before == 0 {
            let due = match rules.timing {
                GuardianTiming::Digest => day.now >= rules.digest_at,
                GuardianTiming::AfterEachLesson | GuardianTiming::Off => true,
            };
            if now_told.is_empty() || !due || !day.first_notices {
                continue;
            }
            Kind::Absence
        } else {
            if !rules.corrections || now_told == was_told {
                continue;
            }
            Kind::Correction
        };
        let change = changes(was_told, &now_told);
        // A first notice is one per contact and day whatever it says: two processes planning it
        // a moment apart (a mark changed in between) still enqueue one.
        let facts = match kind {
            Kind::Absence => String::new(),
            _ => serde_json::to_string(&now_told).unwrap_or_default(),
        };
        out.push(Draft {
            kind,
            key: key(
                day.school_id,
                kind,
                &guardian.email,
                day.day,
                before,
                &facts,
            ),
            guardian: guardian.clone(),
            now_told,
            change,
        });
    }
    out.sort_by(|a, b| a.guardian.email.cmp(&b.guardian.email));
    out
}

/// What `now` adds to and withdraws from `before`, per lesson and student.
fn changes(before: &[Told], now: &[Told]) -> Change {
    let lesson = |t: &Told| (t.student_id.clone(), t.session_id.clone());
    let before: BTreeMap<_, &Told> = before.iter().map(|t| (lesson(t), t)).collect();
    let after: BTreeMap<_, &Told> = now.iter().map(|t| (lesson(t), t)).collect();
    Change {
        added: after
            .iter()
            .filter(|(k, t)| before.get(*k).is_none_or(|b| b.status != t.status))
            .map(|(_, t)| (*t).clone())
            .collect(),
        withdrawn: before
            .iter()
            .filter(|(k, _)| !after.contains_key(*k))
            .map(|(_, t)| (*t).clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use shared_proto::sync::MarkSource;

    use super::*;
    use crate::domain::guardian::Relationship;

    const HOUR: Millis = 3_600_000;

    fn guardian(email: &str, children: &[&str]) -> Guardian {
        Guardian {
            id: format!("g-{email}"),
            school_id: "s".into(),
            given_name: "Pat".into(),
            family_name: "Doe".into(),
            email: email.into(),
            relationship: Relationship::Parent,
            opted_out_at: None,
            student_ids: children.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn mark(session: &str, student: &str, status: MarkStatus, starts: Millis) -> AttendanceRow {
        AttendanceRow {
            session_id: session.into(),
            section_id: Some("maths".into()),
            started_at: Some(starts),
            device_id: "box".into(),
            student_id: student.into(),
            status,
            source: MarkSource::Machine,
            score: None,
            decided_at: starts,
            decided_by: None,
            event_id: format!("e-{session}-{student}"),
        }
    }

    fn rules(timing: GuardianTiming) -> GuardianRules {
        GuardianRules {
            timing,
            grace_minutes: 30,
            digest_at: 16 * HOUR,
            corrections: true,
        }
    }

    fn notice(draft: &Draft) -> Notice {
        let letter = Letter {
            id: draft.key.clone(),
            school_id: "s".into(),
            kind: draft.kind,
            key: draft.key.clone(),
            recipient: draft.guardian.email.clone(),
            guardian_id: Some(draft.guardian.id.clone()),
            day: "2026-12-01".into(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            facts: serde_json::to_string(&draft.now_told).unwrap(),
            students: Vec::new(),
            message_id: String::new(),
        };
        Notice::queued(letter, 0)
    }

    fn plan(
        rules: &GuardianRules,
        guardians: &[Guardian],
        marks: &[AttendanceRow],
        told: &[Notice],
        now: Millis,
    ) -> Vec<Draft> {
        let ends: HashMap<String, Millis> = [("l1".to_owned(), 9 * HOUR), ("l2".into(), 11 * HOUR)]
            .into_iter()
            .collect();
        plan_guardians(
            rules,
            &Day {
                day: "2026-12-01",
                school_id: "s",
                now,
                guardians,
                marks,
                lesson_ends: &ends,
                told,
                first_notices: true,
            },
        )
    }

    #[test]
    fn a_family_gets_one_digest_of_final_absences_at_the_digest_time() {
        let family = [guardian("home@example.org", &["ann", "bob"])];
        let marks = [
            mark("l1", "ann", MarkStatus::Absent, 8 * HOUR),
            mark("l1", "bob", MarkStatus::Present, 8 * HOUR),
            mark("l2", "bob", MarkStatus::Late, 10 * HOUR),
            mark("l2", "ann", MarkStatus::Review, 10 * HOUR),
        ];
        let rules = rules(GuardianTiming::Digest);
        assert!(plan(&rules, &family, &marks, &[], 15 * HOUR).is_empty());
        let drafts = plan(&rules, &family, &marks, &[], 16 * HOUR);
        assert_eq!(drafts.len(), 1, "one mail for two children");
        assert_eq!(drafts[0].kind, Kind::Absence);
        let told: Vec<_> = drafts[0]
            .now_told
            .iter()
            .map(|t| (t.student_id.as_str(), t.status.as_str()))
            .collect();
        assert_eq!(told, [("ann", "absent"), ("bob", "late")]);
        // Planned again from the same facts: the same key, so the store keeps one.
        assert_eq!(
            plan(&rules, &family, &marks, &[], 16 * HOUR + 60_000)[0].key,
            drafts[0].key
        );
        // Once enqueued, nothing more while nothing changes.
        let told = [notice(&drafts[0])];
        assert!(plan(&rules, &family, &marks, &told, 17 * HOUR).is_empty());
    }

    #[test]
    fn only_final_marks_are_told_and_a_change_after_sending_is_a_correction() {
        let family = [guardian("home@example.org", &["ann"])];
        let rules = rules(GuardianTiming::AfterEachLesson);
        let absent = [mark("l1", "ann", MarkStatus::Absent, 8 * HOUR)];
        // Lesson l1 ends at 09:00; with 30 minutes' grace its marks are final at 09:30.
        assert!(plan(&rules, &family, &absent, &[], 9 * HOUR + 29 * 60_000).is_empty());
        // Changed to present inside the grace period: nothing is ever sent.
        let present = [mark("l1", "ann", MarkStatus::Present, 8 * HOUR)];
        assert!(plan(&rules, &family, &present, &[], 10 * HOUR).is_empty());
        let first = plan(&rules, &family, &absent, &[], 9 * HOUR + 30 * 60_000);
        assert_eq!(first.len(), 1);
        // A correction to present after it went out.
        let told = [notice(&first[0])];
        let correction = plan(&rules, &family, &present, &told, 12 * HOUR);
        assert_eq!(correction.len(), 1);
        assert_eq!(correction[0].kind, Kind::Correction);
        assert!(correction[0].change.added.is_empty());
        assert_eq!(correction[0].change.withdrawn.len(), 1);
        assert_ne!(correction[0].key, first[0].key);
        // Corrections off: nothing.
        let quiet = GuardianRules {
            corrections: false,
            ..rules
        };
        assert!(plan(&quiet, &family, &present, &told, 12 * HOUR).is_empty());
    }

    /// A sent notice whose facts do not parse leaves what the contact knows unknown: no correction
    /// is built on "told nothing" (which would tell every absence again as news), and the other
    /// contacts of the school are planned as ever.
    #[test]
    fn no_correction_follows_a_notice_whose_facts_do_not_parse() {
        let family = [
            guardian("home@example.org", &["ann"]),
            guardian("other@example.org", &["bob"]),
        ];
        let rules = rules(GuardianTiming::AfterEachLesson);
        let absent = [
            mark("l1", "ann", MarkStatus::Absent, 8 * HOUR),
            mark("l1", "bob", MarkStatus::Absent, 8 * HOUR),
        ];
        let first = plan(&rules, &family, &absent, &[], 10 * HOUR);
        assert_eq!(first.len(), 2);
        let mut told: Vec<Notice> = first.iter().map(notice).collect();
        told[0].letter.facts = "{not json".into();
        let late = [
            mark("l1", "ann", MarkStatus::Late, 8 * HOUR),
            mark("l1", "bob", MarkStatus::Late, 8 * HOUR),
        ];
        let corrections = plan(&rules, &family, &late, &told, 12 * HOUR);
        let to: Vec<&str> = corrections
            .iter()
            .map(|d| d.guardian.email.as_str())
            .collect();
        assert_eq!(to, ["other@example.org"]);
        assert_eq!(corrections[0].kind, Kind::Correction);
    }

    #[test]
    fn opted_out_contacts_and_schools_with_notices_off_get_nothing() {
        let mut family = guardian("home@example.org", &["ann"]);
        family.opted_out_at = Some(1);
        let marks = [mark("l1", "ann", MarkStatus::Absent, 8 * HOUR)];
        let digest = rules(GuardianTiming::Digest);
        assert!(plan(&digest, &[family.clone()], &marks, &[], 17 * HOUR).is_empty());
        family.opted_out_at = None;
        let off = rules(GuardianTiming::Off);
        assert!(plan(&off, &[family], &marks, &[], 17 * HOUR).is_empty());
    }

    #[test]
    fn transient_failures_are_retried_with_backoff_then_given_up() {
        let draft = plan(
            &rules(GuardianTiming::Digest),
            &[guardian("home@example.org", &["ann"])],
            &[mark("l1", "ann", MarkStatus::Absent, 8 * HOUR)],
            &[],
            17 * HOUR,
        );
        let mut n = notice(&draft[0]);
        let busy = Delivery::Transient("451 4.3.0 try later".into());
        let mut waits = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            n.attempts = attempt;
            let finish = after_attempt(&n, &busy, 0);
            if attempt < MAX_ATTEMPTS {
                assert_eq!(finish.state, State::Queued);
                waits.push(finish.next_attempt_at / 60_000);
            } else {
                assert_eq!(finish.state, State::Failed);
                assert!(finish.last_error.unwrap().contains("451"));
            }
        }
        assert_eq!(waits, [1, 5, 15, 60, 60, 60, 60, 60, 60]);
        let refused = after_attempt(&n, &Delivery::Permanent("550 no such user".into()), 5);
        assert_eq!(refused.state, State::Failed);
        assert_eq!(refused.last_error.as_deref(), Some("550 no such user"));
        let sent = after_attempt(&n, &Delivery::Accepted, 7);
        assert_eq!((sent.state, sent.sent_at), (State::Sent, Some(7)));
    }
}
