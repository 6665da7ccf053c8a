//! The outbox: events waiting to be pushed to the server, written in the same transaction as the
//! change they describe. Ids are UUIDv7 made here, so the server can apply each at most once.
//!
//! What a row says is one type, [`OutboxPayload`]: its serde tag is the row's `kind` column and
//! its content the `payload` column (JSON), so writing, reading back (`sync::wire`) and the
//! invariants' SQL (`check`) all agree on one shape.

use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now_ms};
use shared_proto::sync::{Consent, MarkSource, MarkStatus};

#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    pub id: String,
    pub kind: String,
    pub payload: String,
}

/// What an outbox row says, in the box's words. Field order is the order rows have been written
/// in since the first schema (`session_opened` was a `json!` in insertion order, which the
/// workspace's serde_json keeps), so a new row is byte for byte an old one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum OutboxPayload {
    SessionOpened(SessionOpened),
    SessionClosed(SessionClosed),
    MarkSet(MarkSet),
    TemplateAdded(TemplateAdded),
    TemplateDeleted(TemplateDeleted),
    ConsentChanged(ConsentChanged),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionOpened {
    pub session: String,
    pub section: String,
    /// Absent from rows of the first builds: the row's `created_at` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionClosed {
    pub session: String,
    pub closed_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkSet {
    pub session: String,
    pub student: String,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    /// When it was decided.
    pub at: i64,
    /// The teacher; `None` for the machine.
    pub by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateAdded {
    pub template: String,
    pub student: String,
    pub model: String,
    /// Absent from rows written before embedding spaces (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    pub quality: f32,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateDeleted {
    pub template: String,
    pub student: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentChanged {
    pub student: String,
    pub consent: Consent,
    pub by: String,
    pub at: i64,
    pub templates_purged: usize,
}

impl OutboxPayload {
    /// Every `kind` a row can hold.
    pub const KINDS: &'static [&'static str] = &[
        "session_opened",
        "session_closed",
        "mark_set",
        "template_added",
        "template_deleted",
        "consent_changed",
    ];

    /// The `kind` column: the serde tag (a test holds the two together).
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxPayload::SessionOpened(_) => "session_opened",
            OutboxPayload::SessionClosed(_) => "session_closed",
            OutboxPayload::MarkSet(_) => "mark_set",
            OutboxPayload::TemplateAdded(_) => "template_added",
            OutboxPayload::TemplateDeleted(_) => "template_deleted",
            OutboxPayload::ConsentChanged(_) => "consent_changed",
        }
    }

    /// The `payload` column: the serde content, written straight from the variant's fields.
    pub fn payload_json(&self) -> String {
        let json = match self {
            OutboxPayload::SessionOpened(p) => serde_json::to_string(p),
            OutboxPayload::SessionClosed(p) => serde_json::to_string(p),
            OutboxPayload::MarkSet(p) => serde_json::to_string(p),
            OutboxPayload::TemplateAdded(p) => serde_json::to_string(p),
            OutboxPayload::TemplateDeleted(p) => serde_json::to_string(p),
            OutboxPayload::ConsentChanged(p) => serde_json::to_string(p),
        };
        json.expect("outbox payloads are plain data")
    }

    /// Reads a row back from its `kind` and `payload` columns.
    pub fn from_row(kind: &str, payload: &str) -> Result<OutboxPayload, serde_json::Error> {
        let content: serde_json::Value = serde_json::from_str(payload)?;
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": content}))
    }
}

/// Queues `payload` in `tx`; returns the event's id.
pub(super) fn push(tx: &Transaction<'_>, payload: &OutboxPayload) -> Result<String, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    tx.prepare_cached(
        "INSERT INTO outbox (id, kind, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        id,
        payload.kind(),
        payload.payload_json(),
        now_ms()
    ])?;
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// One payload of every kind, as the store writes them.
    pub fn one_of_each() -> Vec<OutboxPayload> {
        vec![
            OutboxPayload::SessionOpened(SessionOpened {
                session: "s1".into(),
                section: "c1".into(),
                started_at: Some(1_700_000_000_000),
            }),
            OutboxPayload::SessionClosed(SessionClosed {
                session: "s1".into(),
                closed_at: 1_700_000_900_000,
            }),
            OutboxPayload::MarkSet(MarkSet {
                session: "s1".into(),
                student: "ada".into(),
                status: MarkStatus::Late,
                source: MarkSource::Teacher,
                score: Some(0.5),
                at: 1_700_000_100_000,
                by: Some("ms-lee".into()),
            }),
            OutboxPayload::TemplateAdded(TemplateAdded {
                template: "t1".into(),
                student: "ada".into(),
                model: "fr_feature@f79ab88dd853".into(),
                space: Some("fr_feature-v1".into()),
                quality: 0.5,
                source: "enrol-photo".into(),
            }),
            OutboxPayload::TemplateDeleted(TemplateDeleted {
                template: "t0".into(),
                student: "ada".into(),
            }),
            OutboxPayload::ConsentChanged(ConsentChanged {
                student: "ada".into(),
                consent: Consent::Withdrawn,
                by: "guardian".into(),
                at: 1_700_000_200_000,
                templates_purged: 2,
            }),
        ]
    }

    /// The columns a row gets are serde's tag and content, and read back to the same payload.
    #[test]
    fn kind_and_payload_columns_are_the_serde_tag_and_content() {
        let payloads = one_of_each();
        let kinds: Vec<&str> = payloads.iter().map(OutboxPayload::kind).collect();
        assert_eq!(kinds, OutboxPayload::KINDS);
        for payload in payloads {
            let tagged = serde_json::to_value(&payload).unwrap();
            assert_eq!(tagged["kind"], payload.kind());
            let content: serde_json::Value = serde_json::from_str(&payload.payload_json()).unwrap();
            assert_eq!(tagged["payload"], content);
            let back = OutboxPayload::from_row(payload.kind(), &payload.payload_json()).unwrap();
            assert_eq!(back, payload);
        }
    }

    /// Rows exactly as builds before the typed payload wrote them (the first builds' session
    /// without `started_at`, templates without `space`) still read, and new rows are written
    /// byte for byte as before.
    #[test]
    fn rows_of_earlier_builds_still_read() {
        let rows = [
            ("session_opened", r#"{"session":"s1","section":"c1"}"#),
            (
                "session_opened",
                r#"{"session":"s1","section":"c1","started_at":1700000000000}"#,
            ),
            (
                "mark_set",
                r#"{"session":"s1","student":"ada","status":"review","source":"machine","score":0.4,"at":5,"by":null}"#,
            ),
            (
                "template_added",
                r#"{"template":"t1","student":"ada","model":"fr_feature@6e524bb13415","quality":17.5,"source":"enrol-photo"}"#,
            ),
            (
                "template_added",
                r#"{"template":"t1","student":"ada","model":"fr_feature@f79ab88dd853","space":"fr_feature-v1","quality":0.5,"source":"enrol-photo"}"#,
            ),
            (
                "consent_changed",
                r#"{"student":"ada","consent":"granted","by":"form","at":5,"templates_purged":0}"#,
            ),
        ];
        for (kind, payload) in rows {
            let read = OutboxPayload::from_row(kind, payload)
                .unwrap_or_else(|e| panic!("{kind} {payload}: {e}"));
            assert_eq!(read.kind(), kind);
            assert_eq!(read.payload_json(), payload, "written as before");
        }
        assert!(OutboxPayload::from_row("note", "{}").is_err());
        assert!(OutboxPayload::from_row("mark_set", r#"{"session":"s1"}"#).is_err());
    }
}
