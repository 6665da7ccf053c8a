//! What sync needs from the database: the box's identity, the outbox as a queue (waiting, sent,
//! rejected with the server's reason), the pull cursor, the link's health, and applying a pulled
//! page of changes in the same transaction as the cursor that follows it.

use rusqlite::{OptionalExtension, Transaction, params};
use shared_proto::sync::{
    Change, ChangeBody, Consent as WireConsent, MarkSource, MarkStatus, mark_wins,
};

use super::templates::{self, NewTemplate, purge_student, vector_from_bytes};
use super::{Store, StoreError, now_ms, word};

/// Who this box is to the server, written by `provision`. The token is not here: it lives in a
/// file only the agent's user can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub school_id: String,
    pub server: String,
    pub provisioned_at: i64,
}

/// An outbox event with the time it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedEvent {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
}

impl QueuedEvent {
    /// What the row says; an error for a row this build cannot read.
    pub fn payload(&self) -> Result<super::OutboxPayload, serde_json::Error> {
        super::OutboxPayload::from_row(&self.kind, &self.payload)
    }
}

/// An event the server refused (or the box could not send), kept with the reason.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RejectedEvent {
    pub id: String,
    pub kind: String,
    pub code: String,
    pub reason: String,
    pub at: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub waiting: usize,
    pub sent: usize,
    pub rejected: usize,
}

/// The link's health as last recorded: what `status` shows and what the circuit breaker reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncState {
    pub last_push_at: Option<i64>,
    pub last_pull_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    /// How far the box's clock was ahead of the server's (behind when negative) at the last
    /// answer that said (`sync::clock`), and when by the box's clock.
    pub clock_offset_ms: Option<i64>,
    pub clock_read_at: Option<i64>,
    /// What the circuit breaker reads (`consecutive_failures`, `breaker_opened_at` in the JSON).
    #[serde(flatten)]
    pub breaker: shared_proto::breaker::Link,
}

impl SyncState {
    /// When the last push or pull succeeded: what the screen's indicator and the daemon's lag show.
    pub fn last_success_at(&self) -> Option<i64> {
        self.last_push_at.max(self.last_pull_at)
    }
}

/// A template as the wire needs it (`template_added`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTemplate {
    pub uuid: String,
    pub student_id: String,
    pub model_id: String,
    pub space: String,
    pub vector: Vec<f32>,
    pub quality: f32,
    pub source: String,
    pub created_at: i64,
}

/// What applying one pulled page did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullSummary {
    pub changes: usize,
    pub templates_added: usize,
    pub templates_purged: usize,
    /// Templates this box cannot hold (a vector length other than the store's): logged, skipped.
    pub templates_skipped: usize,
    /// Office corrections of this box's sessions that won over the mark held here.
    pub marks_corrected: usize,
}

/// Dimensions of the `template_vectors` column.
const STORED_DIMENSIONS: usize = 512;

impl Store {
    pub fn device(&self) -> Result<Option<DeviceIdentity>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT device_id, school_id, server, provisioned_at FROM sync_device WHERE id = 1",
                [],
                |r| {
                    Ok(DeviceIdentity {
                        device_id: r.get(0)?,
                        school_id: r.get(1)?,
                        server: r.get(2)?,
                        provisioned_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records the box's identity. A box moves to another school only with a new data folder:
    /// its sessions, marks and cursor belong to the first one.
    pub fn set_device(&mut self, device: &DeviceIdentity) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let current: Option<String> = tx
            .query_row("SELECT school_id FROM sync_device WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(school) = current
            && school != device.school_id
        {
            return Err(StoreError::OtherSchool {
                current: school,
                new: device.school_id.clone(),
            });
        }
        tx.execute(
            "INSERT INTO sync_device (id, device_id, school_id, server, provisioned_at)
             VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET device_id = ?1, school_id = ?2, server = ?3, provisioned_at = ?4",
            params![
                device.device_id,
                device.school_id,
                device.server,
                device.provisioned_at
            ],
        )?;
        // A new token must not inherit the old one's failures.
        tx.execute(
            "UPDATE sync_state SET consecutive_failures = 0, breaker_opened_at = NULL, last_error = NULL",
            [],
        )?;
        Store::audit(
            &tx,
            "provision",
            "provision",
            &format!(
                "device {} of school {} at {}",
                device.device_id, device.school_id, device.server
            ),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` events waiting for the server (neither acknowledged nor rejected), oldest first.
    pub fn waiting_events(&self, limit: usize) -> Result<Vec<QueuedEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, payload, created_at FROM outbox
             WHERE sent_at IS NULL AND rejected_at IS NULL ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(QueuedEvent {
                id: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the server's answer to a push in one transaction: acked events are sent, rejected
    /// ones kept with their code and reason. Ids the box does not hold are ignored.
    pub fn settle_events(
        &mut self,
        acked: &[String],
        rejected: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let at = now_ms();
        let tx = self.conn.transaction()?;
        {
            let mut sent = tx.prepare_cached(
                "UPDATE outbox SET sent_at = ?2 WHERE id = ?1 AND sent_at IS NULL",
            )?;
            for id in acked {
                sent.execute(params![id, at])?;
            }
            let mut refused = tx.prepare_cached(
                "UPDATE outbox SET rejected_at = ?2, rejected_code = ?3, rejected_reason = ?4
                 WHERE id = ?1 AND sent_at IS NULL",
            )?;
            for (id, code, reason) in rejected {
                refused.execute(params![id, at, code, reason])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Puts rejected events back in the queue (after the cause was fixed on the server).
    pub fn requeue_rejected(&mut self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET rejected_at = NULL, rejected_code = NULL, rejected_reason = NULL
             WHERE rejected_at IS NOT NULL AND sent_at IS NULL",
            [],
        )?)
    }

    pub fn rejected_events(&self) -> Result<Vec<RejectedEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, rejected_code, rejected_reason, rejected_at FROM outbox
             WHERE rejected_at IS NOT NULL AND sent_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RejectedEvent {
                id: r.get(0)?,
                kind: r.get(1)?,
                code: r.get(2)?,
                reason: r.get(3)?,
                at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE sent_at IS NULL AND rejected_at IS NULL),
                    COUNT(*) FILTER (WHERE sent_at IS NOT NULL),
                    COUNT(*) FILTER (WHERE sent_at IS NULL AND rejected_at IS NOT NULL)
             FROM outbox",
            [],
            |r| {
                Ok(OutboxCounts {
                    waiting: r.get::<_, i64>(0)? as usize,
                    sent: r.get::<_, i64>(1)? as usize,
                    rejected: r.get::<_, i64>(2)? as usize,
                })
            },
        )?)
    }

    /// Where the next pull starts; `None` before the first page.
    pub fn cursor(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT cursor FROM sync_cursor WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn sync_state(&self) -> Result<SyncState, StoreError> {
        Ok(self.conn.query_row(
            "SELECT last_push_at, last_pull_at, last_attempt_at, last_error, consecutive_failures,
                    breaker_opened_at, clock_offset_ms, clock_read_at FROM sync_state WHERE id = 1",
            [],
            |r| {
                Ok(SyncState {
                    last_push_at: r.get(0)?,
                    last_pull_at: r.get(1)?,
                    last_attempt_at: r.get(2)?,
                    last_error: r.get(3)?,
                    clock_offset_ms: r.get(6)?,
                    clock_read_at: r.get(7)?,
                    breaker: shared_proto::breaker::Link {
                        consecutive_failures: r.get::<_, i64>(4)? as u32,
                        breaker_opened_at: r.get(5)?,
                    },
                })
            },
        )?)
    }

    pub fn set_sync_state(&mut self, state: &SyncState) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_state SET last_push_at = ?1, last_pull_at = ?2, last_attempt_at = ?3,
                 last_error = ?4, consecutive_failures = ?5, breaker_opened_at = ?6,
                 clock_offset_ms = ?7, clock_read_at = ?8 WHERE id = 1",
            params![
                state.last_push_at,
                state.last_pull_at,
                state.last_attempt_at,
                state.last_error,
                state.breaker.consecutive_failures,
                state.breaker.breaker_opened_at,
                state.clock_offset_ms,
                state.clock_read_at
            ],
        )?;
        Ok(())
    }

    /// One template with its vector, or `None` when it is gone (consent withdrawn since).
    pub fn stored_template(&self, uuid: &str) -> Result<Option<StoredTemplate>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT t.uuid, t.student_id, t.model_id, t.space, v.embedding, t.quality, t.source,
                        t.created_at
                 FROM face_templates t JOIN template_vectors v ON v.template_id = t.id
                 WHERE t.uuid = ?1",
                [uuid],
                |r| {
                    Ok(StoredTemplate {
                        uuid: r.get(0)?,
                        student_id: r.get(1)?,
                        model_id: r.get(2)?,
                        space: r.get(3)?,
                        vector: vector_from_bytes(&r.get::<_, Vec<u8>>(4)?),
                        quality: r.get::<_, f64>(5)? as f32,
                        source: r.get(6)?,
                        created_at: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// How many templates the box holds per embedding space.
    pub fn templates_by_space(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT space, COUNT(*) FROM face_templates GROUP BY space ORDER BY space")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies one pulled page and stores `next_cursor`, in one transaction: after a crash the
    /// cursor is never ahead of the data. Every change is an upsert or a purge, so a page applied
    /// twice is harmless.
    pub fn apply_changes(
        &mut self,
        school_id: &str,
        changes: &[Change],
        next_cursor: &str,
    ) -> Result<PullSummary, StoreError> {
        let tx = self.conn.transaction()?;
        let mut summary = PullSummary {
            changes: changes.len(),
            ..PullSummary::default()
        };
        for change in changes {
            apply_change(&tx, school_id, change, &mut summary)?;
        }
        tx.execute(
            "INSERT INTO sync_cursor (id, cursor) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET cursor = ?1",
            [next_cursor],
        )?;
        tx.commit()?;
        Ok(summary)
    }
}

/// The feed orders an entity by its latest change, so an enrolment can arrive before its section
/// or a template before its student: a placeholder row (inactive, no names) holds the reference
/// until the entity's own change fills it in.
fn ensure_section(tx: &Transaction<'_>, school_id: &str, id: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sections (id, title, school_id, active) VALUES (?1, ?1, ?2, 0)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![id, school_id])?;
    Ok(())
}

fn ensure_student(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO students (id, given_name, family_name, active) VALUES (?1, '', '', 0)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute([id])?;
    Ok(())
}

/// Whether the box's latest consent decision for `student` is a withdrawal the server has not
/// acknowledged yet.
fn withdrawn_here_unsent(tx: &Transaction<'_>, student: &str) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT json_extract(payload, '$.consent') = 'withdrawn' AND sent_at IS NULL FROM outbox
             WHERE kind = 'consent_changed' AND json_extract(payload, '$.student') = ?1
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([student], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// Notes that the server's change `seq` purged a template, so `check_invariants` can tell it from
/// a lost one.
fn record_purge(
    tx: &Transaction<'_>,
    uuid: &str,
    student: &str,
    seq: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sync_purges (template_uuid, student_id, change_seq, at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![uuid, student, seq as i64, now_ms()])?;
    Ok(())
}

fn purge_template(
    tx: &Transaction<'_>,
    uuid: &str,
    student: &str,
    seq: u64,
) -> Result<usize, StoreError> {
    tx.prepare_cached(
        "DELETE FROM template_vectors WHERE template_id IN (SELECT id FROM face_templates WHERE uuid = ?1)",
    )?
    .execute([uuid])?;
    let n = tx
        .prepare_cached("DELETE FROM face_templates WHERE uuid = ?1")?
        .execute([uuid])?;
    if n > 0 {
        record_purge(tx, uuid, student, seq)?;
    }
    Ok(n)
}

fn purge_all_of(tx: &Transaction<'_>, student: &str, seq: u64) -> Result<usize, StoreError> {
    let uuids: Vec<String> = {
        let mut stmt =
            tx.prepare_cached("SELECT uuid FROM face_templates WHERE student_id = ?1")?;
        stmt.query_map([student], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for uuid in &uuids {
        record_purge(tx, uuid, student, seq)?;
    }
    purge_student(tx, student)
}

fn apply_change(
    tx: &Transaction<'_>,
    school_id: &str,
    change: &Change,
    summary: &mut PullSummary,
) -> Result<(), StoreError> {
    match &change.body {
        ChangeBody::Section { id, title, active } => {
            tx.prepare_cached(
                "INSERT INTO sections (id, title, school_id, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET title = ?2, school_id = ?3, active = ?4",
            )?
            .execute(params![id, title, school_id, active])?;
        }
        ChangeBody::Student {
            id,
            given_name,
            family_name,
            active,
            consent,
        } => {
            tx.prepare_cached(
                "INSERT INTO students (id, given_name, family_name, active, consent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET given_name = ?2, family_name = ?3, active = ?4, consent = ?5",
            )?
            .execute(params![id, given_name, family_name, active, consent.as_str()])?;
            // The server sends a tombstone too; this keeps the rule even if a page held only this.
            if *consent != WireConsent::Granted {
                summary.templates_purged += purge_all_of(tx, id, change.seq)?;
            }
        }
        ChangeBody::Teacher {
            id,
            given_name,
            family_name,
            active,
        } => {
            tx.prepare_cached(
                "INSERT INTO teachers (id, given_name, family_name, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET given_name = ?2, family_name = ?3, active = ?4",
            )?
            .execute(params![id, given_name, family_name, active])?;
        }
        ChangeBody::Enrolment {
            section,
            person,
            role,
            active,
        } => {
            ensure_section(tx, school_id, section)?;
            let role = role.as_str();
            tx.prepare_cached(
                "INSERT INTO enrolments (section_id, person_id, role, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (section_id, person_id) DO UPDATE SET role = ?3, active = ?4",
            )?
            .execute(params![section, person, role, active])?;
        }
        ChangeBody::Schedule { section, slots } => {
            ensure_section(tx, school_id, section)?;
            tx.prepare_cached("DELETE FROM schedule WHERE section_id = ?1")?
                .execute([section])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO schedule (section_id, weekday, starts, ends, room) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for slot in slots {
                insert.execute(params![
                    section,
                    slot.weekday,
                    slot.starts,
                    slot.ends,
                    slot.room
                ])?;
            }
        }
        ChangeBody::Template { template } => {
            if template.embedding.vector.len() != STORED_DIMENSIONS {
                tracing::warn!(
                    template = %template.id,
                    model = %template.embedding.model,
                    dimensions = template.embedding.vector.len(),
                    "pulled template skipped: this box stores {STORED_DIMENSIONS}-d vectors"
                );
                summary.templates_skipped += 1;
                return Ok(());
            }
            let known: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM face_templates WHERE uuid = ?1)")?
                .query_row([&template.id], |r| r.get(0))?;
            if known {
                return Ok(());
            }
            ensure_student(tx, &template.student)?;
            if withdrawn_here_unsent(tx, &template.student)? {
                // Withdrawn on this box and not yet told to the server: never store the face again.
                return Ok(());
            }
            templates::insert(
                tx,
                &template.id,
                &NewTemplate {
                    student_id: &template.student,
                    model_id: &template.embedding.model.to_string(),
                    space: template.embedding.space.as_str(),
                    vector: &template.embedding.vector,
                    quality: template.quality,
                    source: "sync",
                    crop: None,
                },
                template.created_at,
            )?;
            summary.templates_added += 1;
        }
        ChangeBody::TemplateDeleted { template, student } => {
            summary.templates_purged += purge_template(tx, template, student, change.seq)?;
        }
        ChangeBody::StudentErased { student } => {
            summary.templates_purged += purge_all_of(tx, student, change.seq)?;
        }
        ChangeBody::Mark {
            session,
            student,
            status,
            source,
            decided_at,
            by,
            event,
        } => {
            if apply_mark(
                tx,
                change.seq,
                session,
                student,
                *status,
                *source,
                *decided_at,
                by.as_deref(),
                event,
            )? {
                summary.marks_corrected += 1;
            }
        }
    }
    Ok(())
}

/// A mark decided on the server (an office correction), applied when this box holds the session
/// and the decision wins over the mark held here by the rule the server uses (`mark_wins`): a
/// teacher's later decision here, not yet pushed, stands, and wins on the server too when it
/// arrives. Nothing is queued: the server already has it. Returns whether the mark changed.
#[allow(clippy::too_many_arguments)]
fn apply_mark(
    tx: &Transaction<'_>,
    seq: u64,
    session: &str,
    student: &str,
    status: MarkStatus,
    source: MarkSource,
    decided_at: i64,
    by: Option<&str>,
    event: &str,
) -> Result<bool, StoreError> {
    let ours: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM capture_sessions WHERE id = ?1)")?
        .query_row([session], |r| r.get(0))?;
    if !ours {
        return Ok(false);
    }
    let held = tx
        .prepare_cached(
            "SELECT source, decided_at FROM marks WHERE session_id = ?1 AND student_id = ?2",
        )?
        .query_row([session, student], |r| {
            Ok((
                word::<MarkSource>(0, &r.get::<_, String>(0)?)?,
                r.get::<_, i64>(1)?,
            ))
        })
        .optional()?;
    if let Some((held_source, held_at)) = held {
        // The id that decided the held mark: its latest event here or the correction pulled.
        let held_id: String = tx
            .prepare_cached(
                "SELECT COALESCE(MAX(id), '') FROM (
                     SELECT id FROM outbox WHERE kind = 'mark_set'
                         AND json_extract(payload, '$.session') = ?1
                         AND json_extract(payload, '$.student') = ?2
                     UNION ALL
                     SELECT event_id FROM sync_marks WHERE session_id = ?1 AND student_id = ?2)",
            )?
            .query_row([session, student], |r| r.get(0))?;
        if !mark_wins(
            (source, decided_at, event),
            (held_source, held_at, &held_id),
        ) {
            return Ok(false);
        }
    }
    ensure_student(tx, student)?;
    tx.prepare_cached(super::sessions::SET_MARK)?
        .execute(params![
            session,
            student,
            status.as_str(),
            source.as_str(),
            None::<f64>,
            None::<String>,
            decided_at,
            by
        ])?;
    tx.prepare_cached(
        "INSERT INTO sync_marks (session_id, student_id, event_id, status, source, change_seq, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        session,
        student,
        event,
        status.as_str(),
        source.as_str(),
        seq as i64,
        now_ms()
    ])?;
    Ok(true)
}
