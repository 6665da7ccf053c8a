//! Transactions: one multi-document transaction per store write, run again from the start on a
//! transient error (a write conflict, a primary stepping down), with the change feed's rows
//! written last, under the school's feed lock.
//!
//! Why a lock: a change's `seq` comes from a per-school counter, and two transactions that take
//! seqs 5 and 6 could commit in the order 6, 5; a pull between the two commits would read 6, move
//! its cursor past 5 and never see it. So every transaction that may write a school's feed holds
//! that school's lock from before it starts until it has committed, and seqs become visible in
//! order. The lock lives in this process: this assumes one server process per database. Several
//! processes on one database would need a visibility watermark (a pull reading only up to the
//! lowest seq still being committed) instead.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use mongodb::options::{ReadConcern, WriteConcern};
use shared_proto::roster::RosterDiff;
use shared_proto::sync::EnrolmentRole;
use tokio::sync::OwnedMutexGuard;

use super::docs::StudentDoc;
use super::error::DbError;
use super::names::{SCHOOLS, STUDENTS};
use super::{MongoStore, accounts, events, feed, guardians, roster, templates};
use crate::domain::Write;
use crate::domain::excusal::Excusal;
use crate::domain::feed::Change;
use crate::domain::guardian::Guardian;
use crate::domain::provisioning::HeldCode;
use crate::domain::push::{Facts, Wanted};
use crate::store::transaction::{Kind, Transaction};
use crate::store::{Device, Millis, RosterBatch, StoreError, Student};

/// Runs of one transaction before a transient error is handed to the caller as `Unavailable`.
const MAX_ATTEMPTS: u32 = 12;
/// Commits retried when the server could not say whether a commit happened.
const MAX_COMMIT_ATTEMPTS: u32 = 4;

pub type BoxFuture<'b, T> = Pin<Box<dyn Future<Output = T> + Send + 'b>>;

/// One school's feed lock each, made on first use.
#[derive(Default)]
pub struct FeedLocks {
    by_school: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl FeedLocks {
    async fn lock(&self, school_id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map only means another thread panicked while inserting; the map itself
            // is still whole.
            let mut by_school = self
                .by_school
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            by_school.entry(school_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A transaction in progress.
pub struct Tx<'a> {
    pub store: &'a MongoStore,
    pub session: ClientSession,
    /// The school whose feed lock this transaction holds; `None`: it may not write the feed.
    feed_school: Option<String>,
    /// Changes written so far, in order; they get their seqs at commit (`feed::flush`).
    pending: Vec<Change>,
}

impl Tx<'_> {
    /// Adds a change to the school's feed, in this transaction.
    pub fn feed(&mut self, body: Change) -> Result<(), DbError> {
        if self.feed_school.is_none() {
            // A bug, not bad input: the caller of `run` said this write touches no feed.
            return Err(StoreError::Backend(
                "a change-feed write in a transaction that holds no feed lock".to_owned(),
            )
            .into());
        }
        self.pending.push(body);
        Ok(())
    }

    /// As `feed`, for a transaction that finds out only as it runs that it writes `school_id`'s
    /// feed (a push of marks that meets a trip booked ahead): without the lock, `run` starts it
    /// again holding the lock.
    pub fn feed_of(&mut self, school_id: &str, body: Change) -> Result<(), DbError> {
        if self.feed_school.is_none() {
            return Err(DbError::FeedLockNeeded(school_id.to_owned()));
        }
        self.feed(body)
    }
}

/// Runs `body` in a transaction and commits it, retrying the whole of it on transient errors.
/// `feed_school`: the school whose change feed `body` may write (`Tx::feed`); its lock is held
/// until the commit.
pub async fn run<'a, C, T, F>(
    store: &'a MongoStore,
    feed_school: Option<&str>,
    ctx: &mut C,
    mut body: F,
) -> Result<T, StoreError>
where
    C: Send,
    T: Send,
    F: for<'b> FnMut(&'b mut Tx<'a>, &'b mut C) -> BoxFuture<'b, Result<T, DbError>>,
{
    let mut _feed_guard = match feed_school {
        Some(school_id) => Some(store.feed_locks.lock(school_id).await),
        None => None,
    };
    let session = store.client.start_session().await.map_err(DbError::from)?;
    if let Err(e) = store.sessions.record(store, &session).await {
        // Only the recovery of a crash depends on the record: the transaction can go ahead, and
        // a later one on the same session tries again.
        tracing::warn!(error = %e, "could not record a database session id");
    }
    let mut tx = Tx {
        store,
        session,
        feed_school: feed_school.map(str::to_owned),
        pending: Vec::new(),
    };
    let mut attempt = 1;
    loop {
        tx.pending.clear();
        tx.session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            .await
            .map_err(DbError::from)?;
        let outcome = match body(&mut tx, &mut *ctx).await {
            Ok(value) => flush_and_commit(&mut tx).await.map(|()| value),
            Err(e) => {
                // The transaction's own error is the one to report; a failed abort only means
                // the server already dropped it.
                let _ = tx.session.abort_transaction().await;
                Err(e)
            }
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(DbError::FeedLockNeeded(school_id)) if tx.feed_school.is_none() => {
                // Not an attempt that failed: the same transaction, now allowed to write the feed.
                _feed_guard = Some(store.feed_locks.lock(&school_id).await);
                tx.feed_school = Some(school_id);
            }
            Err(e) if e.is_transient_transaction_error() && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn flush_and_commit(tx: &mut Tx<'_>) -> Result<(), DbError> {
    if let Some(school_id) = tx.feed_school.clone() {
        let pending = std::mem::take(&mut tx.pending);
        if let Err(e) = feed::flush(tx, &school_id, pending).await {
            let _ = tx.session.abort_transaction().await;
            return Err(e);
        }
    }
    let mut attempt = 1;
    loop {
        match tx.session.commit_transaction().await.map_err(DbError::from) {
            Ok(()) => return Ok(()),
            // Committing again is safe: the server answers with the first commit's outcome.
            Err(e) if e.is_unknown_commit_result() && attempt < MAX_COMMIT_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Jittered exponential backoff: 4, 8, 16 ... ms, at most 250 ms, plus up to half of that again
/// so that two transactions that conflicted do not meet again at the same instant.
fn backoff(attempt: u32) -> Duration {
    let base_ms = (4u64 << attempt.min(6)).min(250);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base_ms + nanos % (base_ms / 2 + 1))
}

/// `store::transaction`'s primitives, each a query or a write in this transaction's session.
impl Transaction for Tx<'_> {
    type Error = DbError;

    async fn facts(&mut self, wanted: &Wanted<'_>) -> Result<Facts, DbError> {
        events::facts(self, wanted).await
    }

    async fn trips_of(&mut self, sections: &[&str]) -> Result<Vec<Excusal>, DbError> {
        events::excusals_in(self, doc! { "section_id": { "$in": sections } }).await
    }

    async fn trip(&mut self, school_id: &str, id: &str) -> Result<Option<Excusal>, DbError> {
        let filter = doc! { "_id": id, "school_id": school_id };
        Ok(events::excusals_in(self, filter).await?.pop())
    }

    async fn student(&mut self, school_id: &str, id: &str) -> Result<Option<Student>, DbError> {
        let held = self
            .coll::<StudentDoc>(STUDENTS)
            .find_one(doc! { "_id": id, "school_id": school_id })
            .session(&mut self.session)
            .await?;
        Ok(held.map(StudentDoc::into_student))
    }

    async fn live_templates(&mut self, student_id: &str) -> Result<Vec<String>, DbError> {
        templates::live_ids(self, student_id).await
    }

    async fn enrolled_in(
        &mut self,
        student_id: &str,
    ) -> Result<Vec<(String, EnrolmentRole)>, DbError> {
        roster::enrolled_in(self, student_id).await
    }

    async fn guardian(&mut self, school_id: &str, id: &str) -> Result<Option<Guardian>, DbError> {
        let filter = doc! { "_id": id, "school_id": school_id };
        Ok(guardians::find(self, filter).await?.pop())
    }

    async fn guardian_by_email(
        &mut self,
        school_id: &str,
        email: &str,
    ) -> Result<Option<Guardian>, DbError> {
        let filter = doc! { "school_id": school_id, "email": email };
        Ok(guardians::find(self, filter).await?.pop())
    }

    async fn provisioning_code(&mut self, code_hash: &str) -> Result<Option<HeldCode>, DbError> {
        accounts::provisioning_code(self, code_hash).await
    }

    async fn school_exists(&mut self, school_id: &str) -> Result<bool, DbError> {
        let school = self
            .coll::<Document>(SCHOOLS)
            .find_one(doc! { "_id": school_id })
            .projection(doc! { "_id": 1 })
            .session(&mut self.session)
            .await?;
        Ok(school.is_some())
    }

    async fn roster(&mut self, school_id: &str) -> Result<RosterBatch, DbError> {
        roster::held_roster(self, school_id).await
    }

    async fn held_elsewhere(
        &mut self,
        kind: Kind,
        school_id: &str,
        ids: &[&str],
    ) -> Result<Option<String>, DbError> {
        roster::held_elsewhere(self, kind, school_id, ids).await
    }

    async fn write_roster(
        &mut self,
        school_id: &str,
        diff: &RosterDiff<'_, RosterBatch>,
    ) -> Result<(), DbError> {
        roster::write_roster(self, school_id, diff).await
    }

    async fn write(&mut self, school_id: &str, writes: &[Write<'_>]) -> Result<(), DbError> {
        events::write(self, school_id, writes).await
    }

    async fn record_applied(
        &mut self,
        device_id: &str,
        applied: &[(&str, &'static str)],
        now: Millis,
    ) -> Result<(), DbError> {
        events::record_applied(self, device_id, applied, now).await
    }

    async fn redeem(
        &mut self,
        code_hash: &str,
        device: &Device,
        now: Millis,
    ) -> Result<(), DbError> {
        accounts::redeem(self, code_hash, device, now).await
    }
}
