//! The store's writes that read what is held, ask `domain` what to do and carry out what it says,
//! each written once over `Transaction`: the narrow set of reads and writes a backend offers inside
//! one of its transactions. A backend runs each of these in one transaction of its own (SQLite: a
//! savepoint on the group-commit writer thread; MongoDB: a multi-document transaction, run again
//! on a transient error) and implements only the primitives, never the order of the steps.
//!
//! Each is also an `Operation`, a value holding what it needs: `Store`'s methods for these writes
//! build one and hand it to `Store::transact`, the one method a backend writes for all of them.
//! So which operation runs with which arguments, and which school's change feed it may write, is
//! decided here and nowhere in a backend.
//!
//! Why async: MongoDB's primitives wait on the network. SQLite's never wait, so on the writer
//! thread one poll runs a whole operation (`sqlite::tx::finish`): no thread hop per primitive,
//! and group commit keeps batching pushes as before.

use jiff::tz::TimeZone;
use shared_proto::sync::{Consent, EnrolmentRole};

use shared_proto::roster::{RecordDiff, RecordKey, RosterDiff, RosterRecord, roster_diff};

use super::{
    Device, Millis, RedeemRefusal, RosterBatch, RosterSummary, StoreError, Student, roster, rules,
};
use crate::domain;
use crate::domain::Write;
use crate::domain::correction::{Correction, Decision, Outcome as CorrectionOutcome, Refusal};
use crate::domain::event::Event;
use crate::domain::excusal::{BookingRefusal, Excusal};
use crate::domain::guardian::{Contact, Guardian, Linked, Refusal as GuardianRefusal};
use crate::domain::provisioning::{self, HeldCode};
use crate::domain::push::{self, Facts, Outcome, Wanted};

/// What a backend reads and writes inside one transaction. Reads see the transaction's snapshot
/// and its own writes.
// Static dispatch only (each backend calls the operations with its own type), so no `Send` bound
// is promised here: MongoDB's futures are `Send` because its type's are, which the compiler sees.
#[allow(async_fn_in_trait)]
pub trait Transaction {
    /// The backend's error. MongoDB's keeps the driver's labels until its transaction loop has
    /// decided whether to run the transaction again.
    type Error: From<StoreError>;

    /// What the store holds of the records a push names.
    async fn facts(&mut self, wanted: &Wanted<'_>) -> Result<Facts, Self::Error>;
    /// Trips booked for any of `sections`, whichever school.
    async fn trips_of(&mut self, sections: &[&str]) -> Result<Vec<Excusal>, Self::Error>;
    async fn trip(&mut self, school_id: &str, id: &str) -> Result<Option<Excusal>, Self::Error>;
    async fn student(&mut self, school_id: &str, id: &str) -> Result<Option<Student>, Self::Error>;
    /// Ids of the student's templates that are not tombstones.
    async fn live_templates(&mut self, student_id: &str) -> Result<Vec<String>, Self::Error>;
    /// The sections the student is actively enrolled in, with the role.
    async fn enrolled_in(
        &mut self,
        student_id: &str,
    ) -> Result<Vec<(String, EnrolmentRole)>, Self::Error>;
    async fn guardian(
        &mut self,
        school_id: &str,
        id: &str,
    ) -> Result<Option<Guardian>, Self::Error>;
    async fn guardian_by_email(
        &mut self,
        school_id: &str,
        email: &str,
    ) -> Result<Option<Guardian>, Self::Error>;
    async fn provisioning_code(&mut self, code_hash: &str)
    -> Result<Option<HeldCode>, Self::Error>;
    async fn school_exists(&mut self, school_id: &str) -> Result<bool, Self::Error>;
    /// Everything the school holds of its roster.
    async fn roster(&mut self, school_id: &str) -> Result<RosterBatch, Self::Error>;
    /// One of `ids` of `kind` that a school other than `school_id` holds, if any.
    async fn held_elsewhere(
        &mut self,
        kind: Kind,
        school_id: &str,
        ids: &[&str],
    ) -> Result<Option<String>, Self::Error>;

    /// Carries out a decision's writes for `school_id`, in order.
    async fn write(&mut self, school_id: &str, writes: &[Write<'_>]) -> Result<(), Self::Error>;
    /// Writes the records a roster diff names (their changes are `write`'s).
    async fn write_roster(
        &mut self,
        school_id: &str,
        diff: &RosterDiff<'_, RosterBatch>,
    ) -> Result<(), Self::Error>;
    /// Records a push's applied event ids (id, kind), so a repeat is acked and changes nothing.
    async fn record_applied(
        &mut self,
        device_id: &str,
        applied: &[(&str, &'static str)],
        now: Millis,
    ) -> Result<(), Self::Error>;
    /// Marks the code used by `device` and adds the device; a code another redemption took first
    /// is an error the backend reports (MongoDB: a race, run again).
    async fn redeem(
        &mut self,
        code_hash: &str,
        device: &Device,
        now: Millis,
    ) -> Result<(), Self::Error>;
}

/// One of this module's operations with what it needs, owned: SQLite sends it to its writer
/// thread, MongoDB runs it again after a transient error.
pub enum Operation {
    Push {
        device: Device,
        events: Vec<Event>,
        now: Millis,
    },
    Roster {
        school_id: String,
        batch: RosterBatch,
        full: bool,
    },
    Consent {
        school_id: String,
        student_id: String,
        consent: Consent,
        by: String,
        at: Millis,
    },
    Correct {
        school_id: String,
        corrections: Vec<Correction>,
        decision: Decision,
    },
    BookTrip {
        trip: Excusal,
        held: Vec<Correction>,
        /// The school's, in which the audit line names the trip's days.
        tz: TimeZone,
    },
    CancelTrip {
        school_id: String,
        id: String,
        by: String,
        at: Millis,
        tz: TimeZone,
    },
    LinkGuardian {
        school_id: String,
        student_id: String,
        contact: Contact,
        by: String,
        at: Millis,
    },
    UnlinkGuardian {
        school_id: String,
        student_id: String,
        guardian_id: String,
        by: String,
        at: Millis,
    },
    Erase {
        school_id: String,
        student_id: String,
    },
    Redeem {
        code_hash: String,
        device: Device,
        now: Millis,
    },
}

/// What an `Operation` gives back: the variant of the same name.
pub enum Done {
    Push(Outcome),
    Roster(RosterSummary),
    Consent,
    Correct(Result<CorrectionOutcome, Refusal>),
    BookTrip(Result<CorrectionOutcome, BookingRefusal>),
    CancelTrip(Option<Excusal>),
    LinkGuardian(Result<Linked, GuardianRefusal>),
    UnlinkGuardian(Result<(), GuardianRefusal>),
    Erase,
    Redeem(Result<Device, RedeemRefusal>),
}

impl Done {
    /// A backend answered an operation with another's result: a bug in the backend, reported
    /// rather than panicked on.
    pub fn mismatch(operation: &str) -> StoreError {
        StoreError::Backend(format!(
            "the store answered {operation} with another operation's result"
        ))
    }
}

impl Operation {
    /// The school whose change feed the operation may write, if any (MongoDB holds that school's
    /// feed lock until the commit). A push of marks and sessions only, the bulk of the traffic,
    /// names none, so such pushes never wait for one another on the lock.
    pub fn feed_school(&self) -> Option<&str> {
        match self {
            Operation::Push { device, events, .. } => events
                .iter()
                .any(|e| e.body.may_write_feed())
                .then_some(device.school_id.as_str()),
            Operation::Roster { school_id, .. }
            | Operation::Consent { school_id, .. }
            | Operation::Correct { school_id, .. }
            | Operation::Erase { school_id, .. } => Some(school_id),
            Operation::BookTrip { trip, .. } => Some(&trip.school_id),
            Operation::CancelTrip { .. }
            | Operation::LinkGuardian { .. }
            | Operation::UnlinkGuardian { .. }
            | Operation::Redeem { .. } => None,
        }
    }

    /// Runs the operation in `tx`. A free function of `T`, not a trait's, so a backend's future
    /// is `Send` exactly when its transaction's is.
    pub async fn run<T: Transaction>(&self, tx: &mut T) -> Result<Done, T::Error> {
        Ok(match self {
            Operation::Push {
                device,
                events,
                now,
            } => Done::Push(apply_events(tx, device, events, *now).await?),
            Operation::Roster {
                school_id,
                batch,
                full,
            } => Done::Roster(apply_roster(tx, school_id, batch, *full).await?),
            Operation::Consent {
                school_id,
                student_id,
                consent,
                by,
                at,
            } => {
                set_consent(tx, school_id, student_id, *consent, by, *at).await?;
                Done::Consent
            }
            Operation::Correct {
                school_id,
                corrections,
                decision,
            } => Done::Correct(correct_marks(tx, school_id, corrections, decision).await?),
            Operation::BookTrip { trip, held, tz } => {
                Done::BookTrip(book_excusal(tx, trip, held, tz).await?)
            }
            Operation::CancelTrip {
                school_id,
                id,
                by,
                at,
                tz,
            } => Done::CancelTrip(cancel_excusal(tx, school_id, id, by, *at, tz).await?),
            Operation::LinkGuardian {
                school_id,
                student_id,
                contact,
                by,
                at,
            } => Done::LinkGuardian(
                link_guardian(tx, school_id, student_id, contact, by, *at).await?,
            ),
            Operation::UnlinkGuardian {
                school_id,
                student_id,
                guardian_id,
                by,
                at,
            } => Done::UnlinkGuardian(
                unlink_guardian(tx, school_id, student_id, guardian_id, by, *at).await?,
            ),
            Operation::Erase {
                school_id,
                student_id,
            } => {
                erase_student(tx, school_id, student_id).await?;
                Done::Erase
            }
            Operation::Redeem {
                code_hash,
                device,
                now,
            } => Done::Redeem(redeem_provisioning_code(tx, code_hash, device, *now).await?),
        })
    }
}

/// The roster kinds whose ids are global (OneRoster sourcedIds), so one school's id can be
/// another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Section,
    Student,
    Teacher,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Section => "section",
            Kind::Student => "student",
            Kind::Teacher => "teacher",
        }
    }
}

/// A roster batch as `shared_proto::roster` decides: what the school holds is read, an id another
/// school holds is refused (never moved), and each record the diff names is written with its
/// change.
async fn apply_roster<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    batch: &RosterBatch,
    full: bool,
) -> Result<RosterSummary, T::Error> {
    if !tx.school_exists(school_id).await? {
        return Err(StoreError::NotFound(format!("school {school_id}")).into());
    }
    let held = tx.roster(school_id).await?;
    let diff = roster_diff(&held, batch, roster::scope(full)).map_err(StoreError::from)?;
    // Only a new id can be another school's: the school's own are in `held`.
    let new = [
        (Kind::Section, new_ids(&diff.sections)),
        (Kind::Student, new_ids(&diff.students)),
        (Kind::Teacher, new_ids(&diff.teachers)),
    ];
    for (kind, ids) in new {
        if ids.is_empty() {
            continue;
        }
        if let Some(id) = tx.held_elsewhere(kind, school_id, &ids).await? {
            return Err(rules::id_taken(kind.noun(), &id).into());
        }
    }
    tx.write_roster(school_id, &diff).await?;
    tx.write(school_id, &roster::changes(&diff)).await?;
    Ok(diff.counts().into())
}

/// The ids of one kind's new records.
fn new_ids<'a, T: RosterRecord>(diff: &RecordDiff<'a, T>) -> Vec<&'a str> {
    let ids = diff.inserts.iter().map(|r| r.key());
    ids.filter_map(|key| match key {
        RecordKey::Id(id) => Some(id),
        RecordKey::Enrolment { .. } => None,
    })
    .collect()
}

/// A push from a box, decided by `domain::push`.
async fn apply_events<T: Transaction>(
    tx: &mut T,
    device: &Device,
    events: &[Event],
    now: Millis,
) -> Result<Outcome, T::Error> {
    let wanted = Wanted::of(events);
    let facts = tx.facts(&wanted).await?;
    let sections: Vec<&str> = facts.lesson_sections(&wanted).into_iter().collect();
    let trips = if sections.is_empty() {
        Vec::new()
    } else {
        tx.trips_of(&sections).await?
    };
    let plan = push::plan(device, events, facts, &trips);
    tx.write(&device.school_id, &plan.writes).await?;
    if !plan.applied.is_empty() {
        tx.record_applied(&device.id, &plan.applied, now).await?;
    }
    Ok(plan.outcome)
}

/// The office sets a student's consent (`domain::consent`).
async fn set_consent<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    student_id: &str,
    consent: Consent,
    by: &str,
    at: Millis,
) -> Result<(), T::Error> {
    let Some(mut held) = tx.student(school_id, student_id).await? else {
        return Err(StoreError::NotFound(format!("student {student_id}")).into());
    };
    let mut live = tx.live_templates(student_id).await?;
    let mut writes = Vec::new();
    domain::consent::decide(&mut held, &mut live, consent, by, at, &mut writes);
    tx.write(school_id, &writes).await
}

/// Marks decided on the server (`domain::correction`).
async fn correct_marks<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    corrections: &[Correction],
    decision: &Decision,
) -> Result<Result<CorrectionOutcome, Refusal>, T::Error> {
    let facts = tx.facts(&domain::correction::wanted(corrections)).await?;
    match domain::correction::plan(school_id, corrections, decision, &facts) {
        Ok((writes, outcome)) => {
            tx.write(school_id, &writes).await?;
            Ok(Ok(outcome))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// A trip booked ahead, and the marks of its lessons already held (`domain::excusal`).
async fn book_excusal<T: Transaction>(
    tx: &mut T,
    trip: &Excusal,
    held: &[Correction],
    tz: &TimeZone,
) -> Result<Result<CorrectionOutcome, BookingRefusal>, T::Error> {
    let facts = tx.facts(&domain::correction::wanted(held)).await?;
    let decision = domain::excusal::decision_of(trip);
    match domain::excusal::book(trip, held, &decision, &facts, tz) {
        Ok((writes, outcome)) => {
            tx.write(&trip.school_id, &writes).await?;
            Ok(Ok(outcome))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Returns the trip cancelled, `None` if the school holds no trip `id`.
async fn cancel_excusal<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    id: &str,
    by: &str,
    at: Millis,
    tz: &TimeZone,
) -> Result<Option<Excusal>, T::Error> {
    let Some(trip) = tx.trip(school_id, id).await? else {
        return Ok(None);
    };
    tx.write(school_id, &domain::excusal::cancel(&trip, by, at, tz))
        .await?;
    Ok(Some(trip))
}

/// A guardian's contact linked to a student (`domain::guardian`).
async fn link_guardian<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    student_id: &str,
    contact: &Contact,
    by: &str,
    at: Millis,
) -> Result<Result<Linked, GuardianRefusal>, T::Error> {
    let contact = match contact.check() {
        Ok(contact) => contact,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let known = tx.student(school_id, student_id).await?.is_some();
    let held = tx.guardian_by_email(school_id, &contact.email).await?;
    match domain::guardian::link(school_id, student_id, known, &contact, held, by, at) {
        Ok((writes, linked)) => {
            tx.write(school_id, &writes).await?;
            Ok(Ok(linked))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

async fn unlink_guardian<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    student_id: &str,
    guardian_id: &str,
    by: &str,
    at: Millis,
) -> Result<Result<(), GuardianRefusal>, T::Error> {
    let Some(held) = tx.guardian(school_id, guardian_id).await? else {
        return Ok(Err(GuardianRefusal::NotLinked(student_id.to_owned())));
    };
    match domain::guardian::unlink(&held, student_id, by, at) {
        Ok(writes) => {
            tx.write(school_id, &writes).await?;
            Ok(Ok(()))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Erasure, as `domain::erasure` decides it.
async fn erase_student<T: Transaction>(
    tx: &mut T,
    school_id: &str,
    student_id: &str,
) -> Result<(), T::Error> {
    if tx.student(school_id, student_id).await?.is_none() {
        return Err(StoreError::NotFound(format!("student {student_id}")).into());
    }
    let enrolments = tx.enrolled_in(student_id).await?;
    let live = tx.live_templates(student_id).await?;
    let writes = domain::erasure::decide(student_id, live, enrolments);
    tx.write(school_id, &writes).await
}

/// A box provisioned with a one-time code (`domain::provisioning`).
async fn redeem_provisioning_code<T: Transaction>(
    tx: &mut T,
    code_hash: &str,
    device: &Device,
    now: Millis,
) -> Result<Result<Device, RedeemRefusal>, T::Error> {
    let code = tx.provisioning_code(code_hash).await?;
    let device = match provisioning::redeem(code, device, now) {
        Ok(device) => device,
        Err(refusal) => return Ok(Err(refusal)),
    };
    tx.redeem(code_hash, &device, now).await?;
    Ok(Ok(device))
}
