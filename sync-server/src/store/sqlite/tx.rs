//! `store::transaction`'s primitives on the writer's connection, inside its transaction.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use rusqlite::Connection;
use shared_proto::roster::RosterDiff;
use shared_proto::sync::EnrolmentRole;

use super::{accounts, events, excusals, guardians, roster, templates};
use crate::domain::Write;
use crate::domain::excusal::Excusal;
use crate::domain::guardian::Guardian;
use crate::domain::provisioning::HeldCode;
use crate::domain::push::{Facts, Wanted};
use crate::store::transaction::{Kind, Transaction};
use crate::store::{Device, Millis, RosterBatch, StoreError, Student};

pub struct Tx<'c>(pub &'c Connection);

/// Runs an operation over `Tx` to its end on this thread. Every primitive is a SQLite call that
/// returns without waiting, so the operation is done after one poll; it never sleeps or hops
/// threads.
pub fn finish<T>(operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match pin!(operation).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        // A bug, not bad input: something awaited that is not a SQLite primitive.
        Poll::Pending => Err(StoreError::Backend(
            "a SQLite operation waited for something other than SQLite".to_owned(),
        )),
    }
}

impl Transaction for Tx<'_> {
    type Error = StoreError;

    async fn facts(&mut self, wanted: &Wanted<'_>) -> Result<Facts, StoreError> {
        events::facts(self.0, wanted)
    }

    async fn trips_of(&mut self, sections: &[&str]) -> Result<Vec<Excusal>, StoreError> {
        excusals::of_sections(self.0, sections.iter().copied())
    }

    async fn trip(&mut self, school_id: &str, id: &str) -> Result<Option<Excusal>, StoreError> {
        excusals::one(self.0, school_id, id)
    }

    async fn student(&mut self, school_id: &str, id: &str) -> Result<Option<Student>, StoreError> {
        roster::student(self.0, school_id, id)
    }

    async fn live_templates(&mut self, student_id: &str) -> Result<Vec<String>, StoreError> {
        templates::live_ids(self.0, student_id)
    }

    async fn enrolled_in(
        &mut self,
        student_id: &str,
    ) -> Result<Vec<(String, EnrolmentRole)>, StoreError> {
        roster::enrolled_in(self.0, student_id)
    }

    async fn guardian(
        &mut self,
        school_id: &str,
        id: &str,
    ) -> Result<Option<Guardian>, StoreError> {
        guardians::one(self.0, school_id, id)
    }

    async fn guardian_by_email(
        &mut self,
        school_id: &str,
        email: &str,
    ) -> Result<Option<Guardian>, StoreError> {
        guardians::by_email(self.0, school_id, email)
    }

    async fn provisioning_code(&mut self, code_hash: &str) -> Result<Option<HeldCode>, StoreError> {
        accounts::provisioning_code(self.0, code_hash)
    }

    async fn school_exists(&mut self, school_id: &str) -> Result<bool, StoreError> {
        Ok(accounts::school(self.0, school_id)?.is_some())
    }

    async fn roster(&mut self, school_id: &str) -> Result<RosterBatch, StoreError> {
        roster::held(self.0, school_id)
    }

    async fn held_elsewhere(
        &mut self,
        kind: Kind,
        school_id: &str,
        ids: &[&str],
    ) -> Result<Option<String>, StoreError> {
        roster::held_elsewhere(self.0, kind, school_id, ids)
    }

    async fn write_roster(
        &mut self,
        school_id: &str,
        diff: &RosterDiff<'_, RosterBatch>,
    ) -> Result<(), StoreError> {
        roster::write_roster(self.0, school_id, diff)
    }

    async fn write(&mut self, school_id: &str, writes: &[Write<'_>]) -> Result<(), StoreError> {
        events::write(self.0, school_id, writes)
    }

    async fn record_applied(
        &mut self,
        device_id: &str,
        applied: &[(&str, &'static str)],
        now: Millis,
    ) -> Result<(), StoreError> {
        events::record_applied(self.0, device_id, applied, now)
    }

    async fn redeem(
        &mut self,
        code_hash: &str,
        device: &Device,
        now: Millis,
    ) -> Result<(), StoreError> {
        accounts::redeem(self.0, code_hash, device, now)
    }
}
