//! The outbox: events waiting to be pushed to the server, written in the same transaction as the
//! change they describe. Ids are UUIDv7 made here, so the server can apply each at most once.

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms};

#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    pub id: String,
    pub kind: String,
    pub payload: String,
}

pub(super) fn push(
    tx: &Transaction<'_>,
    kind: &str,
    payload: &impl Serialize,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let payload = serde_json::to_string(payload).expect("outbox payloads are plain data");
    tx.execute(
        "INSERT INTO outbox (id, kind, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, kind, payload, now_ms()],
    )?;
    Ok(id)
}

impl Store {
    /// Events not yet acknowledged by the server, oldest first.
    pub fn pending_events(&self) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, payload FROM outbox WHERE sent_at IS NULL ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(OutboxEvent {
                id: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many events wait to be pushed: the "events waiting" of the sync indicator, the same
    /// count as `outbox_counts().waiting` (rejected events do not wait), read from the partial
    /// index `outbox_waiting` alone, since the screen asks after every mark.
    pub fn pending_event_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND rejected_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }
}
