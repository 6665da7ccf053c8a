//! The database sessions this process runs transactions on, recorded so that the next server
//! process on the database can end them.
//!
//! Why: a server that is SIGKILLed (or loses its machine) in the middle of a push leaves that
//! push's transaction open on the database server, and the database does not abort it when the
//! connection drops: MongoDB keeps it until `transactionLifetimeLimitSeconds` (60 s by default)
//! have passed, and so does the MongoDB-wire server of the tests. Until then it holds its writes'
//! locks, and the box's retry of the same push, whose event ids it already wrote, meets a
//! `WriteConflict` on every attempt: a minute of 503s after every crash. Each session id is
//! recorded once, before its first transaction (the driver pools sessions, so that is a handful
//! of writes per process); the serving process kills the recorded sessions of its predecessor at
//! start, which aborts their transactions and frees their locks.
//!
//! This assumes one server process per database, as the change feed's lock already does (`tx`):
//! a second live process would have its transactions aborted, and they would be run again.

use std::collections::HashSet;
use std::sync::Mutex;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::{ClientSession, Collection};

use super::MongoStore;
use super::error::DbError;
use super::names::SERVER_SESSIONS;

/// Session ids this process has recorded already, as the raw bytes of their UUIDs.
#[derive(Default)]
pub struct SessionLog {
    recorded: Mutex<HashSet<Vec<u8>>>,
}

impl SessionLog {
    /// Records `session`'s id in the database unless this process did so before. Call it before
    /// the session's transaction writes anything: a lock taken by an unrecorded session could
    /// not be freed by the next process.
    pub async fn record(&self, store: &MongoStore, session: &ClientSession) -> Result<(), DbError> {
        let Some(id) = session.id().get("id").cloned() else {
            // Every driver session id is `{ id: UUID }`; anything else cannot be killed by id.
            return Ok(());
        };
        let key = match &id {
            Bson::Binary(binary) => binary.bytes.clone(),
            other => other.to_string().into_bytes(),
        };
        if self.lock().contains(&key) {
            return Ok(());
        }
        // An upsert: the same id recorded twice (a failed write retried) stays one record.
        log(store)
            .update_one(
                doc! { "_id": id },
                doc! { "$setOnInsert": { "recorded_at": DateTime::now() } },
            )
            .upsert(true)
            .await?;
        self.lock().insert(key);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        // A poisoned set only means another thread panicked while inserting; it is still whole.
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn log(store: &MongoStore) -> Collection<Document> {
    store.coll(SERVER_SESSIONS)
}

/// Kills every session an earlier process recorded, which aborts the transactions it left open,
/// and forgets the records. Returns how many there were. The records are dropped even when the
/// kill is refused: by the next start the database has long reaped those sessions itself.
pub async fn end_earlier(store: &MongoStore) -> Result<usize, DbError> {
    let records: Vec<Document> = log(store).find(doc! {}).await?.try_collect().await?;
    let ids: Vec<Bson> = records
        .into_iter()
        .filter_map(|mut record| record.remove("_id"))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let lsids: Vec<Document> = ids.iter().map(|id| doc! { "id": id.clone() }).collect();
    let killed = store
        .client
        .database("admin")
        .run_command(doc! { "killSessions": lsids })
        .await;
    log(store)
        .delete_many(doc! { "_id": { "$in": &ids } })
        .await?;
    killed?;
    Ok(ids.len())
}
