//! The MongoDB backend of `Store` (official `mongodb` driver), for districts and replica sets.
//! Every write uses majority write concern; every write of more than one document runs in one
//! multi-document transaction (`tx`), retried whole on transient errors. Indexes are created at
//! start (`schema`), and a database written by a newer server is refused before anything writes
//! to it.
//!
//! Documents use the entity's own id as `_id` where it has one (sections, students, sessions,
//! templates, event ids, ...), so the `_id` index is the unique key the invariants need.

mod accounts;
mod audit;
mod docs;
mod error;
mod events;
mod feed;
mod guardians;
mod notices;
mod roster;
mod schema;
mod sessions;
mod templates;
mod tx;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, Database};
use shared_proto::EmbeddingSpace;
use shared_proto::sync::{MarkSource, MarkStatus, ScheduleSlot};

use super::transaction::{Done, Operation};
use super::{
    AttendanceQuery, AttendanceRow, AuthSession, ChangePage, CropRead, Device, Enrolment, KeptCrop,
    MachineDecisions, Millis, NoticeQuery, ProvisioningCode, RosterBatch, School, Section, Seen,
    Store, StoreCounts, StoreError, Student, Tally, TallyRow, TemplateRead, User, stored_space,
};
use docs::{MarkDoc, SectionDoc, StudentDoc, TemplateDoc};
use error::DbError;
pub use schema::SUPPORTED_SCHEMA;
use tx::{FeedLocks, Tx};

use crate::domain::audit::{Entry as AuditEntry, Query as AuditQuery};
use crate::domain::event::Template;
use crate::domain::excusal::Excusal;
use crate::domain::guardian::Guardian;
use crate::domain::notice::{Claim, Finish, Notice, State as NoticeState};
use crate::domain::settings::SchoolSettings;

/// Collection names, in one place so indexes and queries cannot drift apart.
mod names {
    pub const META: &str = "meta";
    pub const SCHOOLS: &str = "schools";
    pub const USERS: &str = "users";
    pub const AUTH_SESSIONS: &str = "auth_sessions";
    pub const DEVICES: &str = "devices";
    pub const PROVISIONING_CODES: &str = "provisioning_codes";
    pub const SECTIONS: &str = "sections";
    pub const STUDENTS: &str = "students";
    pub const TEACHERS: &str = "teachers";
    pub const ENROLMENTS: &str = "enrolments";
    pub const TEMPLATES: &str = "templates";
    pub const SESSIONS: &str = "sessions";
    pub const MARKS: &str = "marks";
    pub const APPLIED_EVENTS: &str = "applied_events";
    pub const CHANGES: &str = "changes";
    pub const FEED_COUNTERS: &str = "feed_counters";
    pub const SERVER_SESSIONS: &str = "server_sessions";
    pub const AUDIT_LOG: &str = "audit_log";
    pub const EXCUSALS: &str = "excusals";
    pub const GUARDIANS: &str = "guardians";
    pub const NOTICES: &str = "notices";
}

pub struct MongoStore {
    client: Client,
    db: Database,
    feed_locks: FeedLocks,
    /// Pushes applied at once. Each is one transaction; past a handful, concurrent transactions
    /// mostly conflict and retry (the load bench saw 128 at once fall to ~22 events/s on the
    /// test server), so the rest wait here instead.
    push_permits: tokio::sync::Semaphore,
    sessions: sessions::SessionLog,
}

const CONCURRENT_PUSHES: usize = 8;

/// How long `close` waits for the driver to end its sessions and close its connections: it
/// waits for operations still running, and a process told to stop should not hang on one.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

impl MongoStore {
    /// Connects to `uri`, refuses a database written by a newer server, and creates every
    /// collection and index that is missing. A server that cannot be reached is `Unavailable`.
    pub async fn connect(uri: &str, database: &str) -> Result<MongoStore, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Backend(format!("invalid MongoDB URI: {e}")))?;
        options
            .app_name
            .get_or_insert_with(|| "rollcall-sync-server".to_owned());
        // An acked push must survive the loss of the primary.
        options.write_concern = Some(WriteConcern::majority());
        options.read_concern = Some(ReadConcern::majority());
        let client = Client::with_options(options)
            .map_err(|e| StoreError::Backend(format!("invalid MongoDB options: {e}")))?;
        let db = client.database(database);
        schema::prepare(&db).await?;
        Ok(MongoStore {
            client,
            db,
            feed_locks: FeedLocks::default(),
            push_permits: tokio::sync::Semaphore::new(CONCURRENT_PUSHES),
            sessions: sessions::SessionLog::default(),
        })
    }

    /// Ends the transactions that an earlier server process on this database left open when it
    /// died, so that the pushes it was applying can be applied again at once rather than after
    /// the database reaps them (a minute on MongoDB; `sessions` says why). For the one process
    /// that serves the database, before it answers; returns how many sessions it ended.
    pub async fn end_earlier_sessions(&self) -> Result<usize, StoreError> {
        Ok(sessions::end_earlier(self).await?)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    fn coll<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection(name)
    }
}

/// Reads every document of a non-transactional cursor.
async fn collect<T>(cursor: mongodb::Cursor<T>) -> Result<Vec<T>, DbError>
where
    T: serde::de::DeserializeOwned + Send + Sync + Unpin,
{
    Ok(cursor.try_collect().await?)
}

#[async_trait]
impl Store for MongoStore {
    async fn transact(&self, mut operation: Operation) -> Result<Done, StoreError> {
        let _permit = match operation {
            Operation::Push { .. } => {
                Some(self.push_permits.acquire().await.map_err(|_| {
                    StoreError::Unavailable("the store is shutting down".to_owned())
                })?)
            }
            _ => None,
        };
        let feed_school = operation.feed_school().map(str::to_owned);
        tx::run(
            self,
            feed_school.as_deref(),
            &mut operation,
            |tx, operation| Box::pin(operation.run(tx)),
        )
        .await
    }

    async fn close(&self) {
        // The driver ends its sessions on the server when its last handle is dropped, in a task
        // it spawns then. A process that exits at once can stop the runtime under that task,
        // which then panics inside the driver (mongodb 3.9, `connection_requester.rs`: a send
        // to the connection pool's worker, gone, unwrapped). Shutting down here, while the
        // runtime runs, leaves the drop nothing to do (the driver's "clean shutdown").
        let shutdown = self.client.clone().shutdown();
        if tokio::time::timeout(CLOSE_WITHIN, shutdown).await.is_err() {
            tracing::warn!(
                within = ?CLOSE_WITHIN,
                "the MongoDB client did not shut down in time; exiting anyway"
            );
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    async fn create_school(&self, school: &School) -> Result<(), StoreError> {
        Ok(accounts::create_school(self, school).await?)
    }

    async fn schools(&self) -> Result<Vec<School>, StoreError> {
        Ok(accounts::schools(self).await?)
    }

    async fn school(&self, id: &str) -> Result<Option<School>, StoreError> {
        Ok(accounts::school(self, id).await?)
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        Ok(accounts::create_user(self, user).await?)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(accounts::user_by_name(self, username).await?)
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        Ok(accounts::count_admins(self).await?)
    }

    async fn school_settings(&self, school_id: &str) -> Result<SchoolSettings, StoreError> {
        Ok(accounts::school_settings(self, school_id).await?)
    }

    async fn set_school_settings(
        &self,
        school_id: &str,
        settings: &SchoolSettings,
    ) -> Result<(), StoreError> {
        Ok(accounts::set_school_settings(self, school_id, settings).await?)
    }

    async fn users(&self, school_id: &str) -> Result<Vec<User>, StoreError> {
        Ok(accounts::users(self, school_id).await?)
    }

    async fn set_password(
        &self,
        school_id: &str,
        user_id: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut ctx = (school_id, user_id, password_hash);
        tx::run(self, None, &mut ctx, |tx, (school_id, user_id, hash)| {
            Box::pin(accounts::set_password(tx, school_id, user_id, hash))
        })
        .await
    }

    async fn create_auth_session(&self, session: &AuthSession) -> Result<(), StoreError> {
        Ok(accounts::create_auth_session(self, session).await?)
    }

    async fn user_by_session(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<User>, StoreError> {
        Ok(accounts::user_by_session(self, token_hash, now).await?)
    }

    async fn delete_auth_session(&self, token_hash: &str) -> Result<(), StoreError> {
        Ok(accounts::delete_auth_session(self, token_hash).await?)
    }

    async fn sections_of_teacher(
        &self,
        school_id: &str,
        teacher_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(roster::sections_of_teacher(self, school_id, teacher_id).await?)
    }

    async fn create_provisioning_code(&self, code: &ProvisioningCode) -> Result<(), StoreError> {
        Ok(accounts::create_provisioning_code(self, code).await?)
    }

    async fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StoreError> {
        Ok(accounts::device_by_token(self, token_hash).await?)
    }

    async fn devices(&self, school_id: &str) -> Result<Vec<Device>, StoreError> {
        Ok(accounts::devices(self, school_id).await?)
    }

    async fn revoke_device(
        &self,
        school_id: &str,
        device_id: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        Ok(accounts::revoke_device(self, school_id, device_id, now).await?)
    }

    async fn device_seen(
        &self,
        device_id: &str,
        seen: &Seen,
        now: Millis,
    ) -> Result<(), StoreError> {
        Ok(accounts::device_seen(self, device_id, seen, now).await?)
    }

    async fn erasures_since(
        &self,
        school_id: &str,
        seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        Ok(feed::erasures_since(self, school_id, seq).await?)
    }

    async fn roster(&self, school_id: &str) -> Result<RosterBatch, StoreError> {
        // One snapshot, so the four kinds agree with each other.
        let mut school_id = school_id.to_owned();
        tx::run(self, None, &mut school_id, |tx, school_id| {
            Box::pin(roster::held_roster(tx, school_id))
        })
        .await
    }

    async fn sections(&self, school_id: &str) -> Result<Vec<Section>, StoreError> {
        let cursor = self
            .coll::<SectionDoc>(names::SECTIONS)
            .find(doc! { "school_id": school_id })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(DbError::from)?;
        Ok(collect(cursor)
            .await?
            .into_iter()
            .map(SectionDoc::into_section)
            .collect())
    }

    async fn students(&self, school_id: &str) -> Result<Vec<Student>, StoreError> {
        let cursor = self
            .coll::<StudentDoc>(names::STUDENTS)
            .find(doc! { "school_id": school_id })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(DbError::from)?;
        Ok(collect(cursor)
            .await?
            .into_iter()
            .map(StudentDoc::into_student)
            .collect())
    }

    async fn student(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Option<Student>, StoreError> {
        let found = self
            .coll::<StudentDoc>(names::STUDENTS)
            .find_one(doc! { "_id": student_id, "school_id": school_id })
            .await
            .map_err(DbError::from)?;
        Ok(found.map(StudentDoc::into_student))
    }

    async fn enrolments(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<Enrolment>, StoreError> {
        Ok(roster::enrolments(self, school_id, section_id).await?)
    }

    async fn set_schedule(
        &self,
        school_id: &str,
        section_id: &str,
        slots: &[ScheduleSlot],
    ) -> Result<(), StoreError> {
        let mut ctx = (school_id, section_id, slots);
        tx::run(
            self,
            Some(school_id),
            &mut ctx,
            |tx, (school_id, section_id, slots)| {
                Box::pin(roster::set_schedule(tx, school_id, section_id, slots))
            },
        )
        .await
    }

    async fn schedule(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<ScheduleSlot>, StoreError> {
        let found = self
            .coll::<SectionDoc>(names::SECTIONS)
            .find_one(doc! { "_id": section_id, "school_id": school_id })
            .await
            .map_err(DbError::from)?;
        Ok(found.map(|s| s.schedule).unwrap_or_default())
    }

    async fn timetable(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, Vec<ScheduleSlot>)>, StoreError> {
        let cursor = self
            .coll::<SectionDoc>(names::SECTIONS)
            .find(doc! { "school_id": school_id, "schedule.0": { "$exists": true } })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(DbError::from)?;
        Ok(collect(cursor)
            .await?
            .into_iter()
            .map(|s| (s.id, s.schedule))
            .collect())
    }

    async fn excusals(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<Excusal>, StoreError> {
        let mut ctx = (school_id, section_id);
        tx::run(self, None, &mut ctx, |tx, (school_id, section_id)| {
            Box::pin(async move {
                let filter = doc! { "section_id": *section_id, "school_id": *school_id };
                events::excusals_in(tx, filter).await
            })
        })
        .await
    }

    async fn guardians_of(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Vec<Guardian>, StoreError> {
        let mut ctx = (school_id, student_id);
        tx::run(self, None, &mut ctx, |tx, (school_id, student_id)| {
            Box::pin(async move {
                let filter = doc! { "school_id": *school_id, "student_ids": *student_id };
                guardians::find(tx, filter).await
            })
        })
        .await
    }

    async fn guardians(&self, school_id: &str) -> Result<Vec<Guardian>, StoreError> {
        let mut ctx = school_id;
        tx::run(self, None, &mut ctx, |tx, school_id| {
            Box::pin(async move { guardians::find(tx, doc! { "school_id": *school_id }).await })
        })
        .await
    }

    async fn guardian(&self, school_id: &str, id: &str) -> Result<Option<Guardian>, StoreError> {
        let mut ctx = (school_id, id);
        tx::run(self, None, &mut ctx, |tx, (school_id, id)| {
            Box::pin(async move {
                let filter = doc! { "school_id": *school_id, "_id": *id };
                Ok(guardians::find(tx, filter).await?.pop())
            })
        })
        .await
    }

    async fn opt_out_guardian(
        &self,
        school_id: &str,
        guardian_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        Ok(notices::opt_out(self, school_id, guardian_id, at).await?)
    }

    async fn enqueue_notices(&self, notices: &[Notice]) -> Result<usize, StoreError> {
        Ok(notices::enqueue(self, notices).await?)
    }

    async fn claim_notices(&self, claim: &Claim) -> Result<Vec<Notice>, StoreError> {
        Ok(notices::claim(self, claim).await?)
    }

    async fn finish_notice(
        &self,
        id: &str,
        owner: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        Ok(notices::finish(self, id, owner, finish).await?)
    }

    async fn resend_notice(
        &self,
        school_id: &str,
        id: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        Ok(notices::resend(self, school_id, id, finish).await?)
    }

    async fn notices(&self, query: &NoticeQuery) -> Result<Vec<Notice>, StoreError> {
        Ok(notices::list(self, query).await?)
    }

    async fn notice(&self, school_id: &str, id: &str) -> Result<Option<Notice>, StoreError> {
        Ok(notices::one(self, school_id, id).await?)
    }

    async fn notice_counts(&self, school_id: &str) -> Result<Vec<(NoticeState, u64)>, StoreError> {
        Ok(notices::counts(self, school_id).await?)
    }

    async fn notice_secret(&self, fresh: &str) -> Result<String, StoreError> {
        Ok(notices::secret(self, fresh).await?)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        Ok(audit::append(self, entry).await?)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(audit::entries(self, query).await?)
    }

    async fn templates_of(
        &self,
        school_id: &str,
        read: TemplateRead,
    ) -> Result<Vec<Template>, StoreError> {
        let mut filter = doc! { "school_id": school_id, "tombstone": false };
        match read {
            TemplateRead::School => {}
            TemplateRead::Student(student_id) => {
                filter.insert("student_id", student_id);
            }
            TemplateRead::Ids(ids) => {
                filter.insert("_id", doc! { "$in": ids });
            }
        }
        let cursor = self
            .coll::<TemplateDoc>(names::TEMPLATES)
            .find(filter)
            .projection(doc! { "crop": 0 })
            .sort(doc! { "created_at": 1, "_id": 1 })
            .await
            .map_err(DbError::from)?;
        let held = collect(cursor).await?;
        let mut templates = Vec::with_capacity(held.len());
        for doc in held {
            templates.push(doc.into_template()?);
        }
        Ok(templates)
    }

    async fn live_template_ids(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, EmbeddingSpace)>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Live {
            #[serde(rename = "_id")]
            id: String,
            #[serde(default)]
            model_id: Option<String>,
            #[serde(default)]
            space: Option<String>,
        }
        let cursor = self
            .coll::<Live>(names::TEMPLATES)
            .find(doc! { "school_id": school_id, "tombstone": false })
            .projection(doc! { "_id": 1, "model_id": 1, "space": 1 })
            .await
            .map_err(DbError::from)?;
        collect(cursor)
            .await?
            .into_iter()
            .map(|live| {
                let model = live.model_id.as_deref().unwrap_or_default();
                let space = stored_space(live.space.as_deref(), model)
                    .map_err(|e| StoreError::Backend(format!("template {}: {e}", live.id)))?;
                Ok((live.id, space))
            })
            .collect()
    }

    async fn keep_crop(
        &self,
        school_id: &str,
        template_id: &str,
        crop: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(templates::keep_crop(self, school_id, template_id, crop).await?)
    }

    async fn kept_crops(
        &self,
        school_id: &str,
        read: CropRead<'_>,
    ) -> Result<Vec<KeptCrop>, StoreError> {
        Ok(templates::kept_crops(self, school_id, read).await?)
    }

    async fn drop_crops(&self, school_id: &str) -> Result<u64, StoreError> {
        Ok(templates::drop_crops(self, school_id).await?)
    }

    async fn pull(
        &self,
        school_id: &str,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage, StoreError> {
        Ok(feed::pull(self, school_id, cursor, limit).await?)
    }

    async fn attendance(&self, query: &AttendanceQuery) -> Result<Vec<AttendanceRow>, StoreError> {
        let mut filter = doc! {
            "school_id": &query.school_id,
            "placed_at": { "$gte": query.from, "$lt": query.to },
        };
        if let Some(section_id) = &query.section_id {
            filter.insert("section_id", section_id);
        }
        if let Some(student_id) = &query.student_id {
            filter.insert("student_id", student_id);
        }
        let cursor = self
            .coll::<MarkDoc>(names::MARKS)
            .find(filter)
            .sort(doc! { "placed_at": 1, "session_id": 1, "student_id": 1 })
            .await
            .map_err(DbError::from)?;
        Ok(collect(cursor)
            .await?
            .into_iter()
            .map(MarkDoc::into_row)
            .collect())
    }

    async fn latest_sessions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, String, Millis)>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Started {
            #[serde(rename = "_id")]
            id: String,
            section_id: String,
            started_at: Millis,
        }
        let cursor = self
            .coll::<Started>(names::SESSIONS)
            .find(doc! { "school_id": school_id, "started_at": { "$gte": from, "$lt": to } })
            .projection(doc! { "_id": 1, "section_id": 1, "started_at": 1 })
            .await
            .map_err(DbError::from)?;
        let mut latest: std::collections::BTreeMap<String, (String, Millis)> =
            std::collections::BTreeMap::new();
        for s in collect(cursor).await? {
            let newer = latest
                .get(&s.section_id)
                .is_none_or(|(id, at)| (s.started_at, &s.id) > (*at, id));
            if newer {
                latest.insert(s.section_id, (s.id, s.started_at));
            }
        }
        Ok(latest
            .into_iter()
            .map(|(section, (session, at))| (section, session, at))
            .collect())
    }

    async fn counts_by_hour(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, MarkStatus, u64)>, StoreError> {
        // Counted here rather than in an aggregation pipeline, which not every MongoDB-wire
        // server runs: only the two fields counted cross the wire.
        #[derive(serde::Deserialize)]
        struct Placed {
            started_at: Millis,
            status: MarkStatus,
        }
        let cursor = self
            .coll::<Placed>(names::MARKS)
            .find(doc! {
                "school_id": school_id,
                "placed_at": { "$gte": from, "$lt": to },
                "section_id": { "$ne": null },
            })
            .projection(doc! { "_id": 0, "started_at": 1, "status": 1 })
            .await
            .map_err(DbError::from)?;
        let mut counts: std::collections::BTreeMap<(Millis, &'static str), (MarkStatus, u64)> =
            std::collections::BTreeMap::new();
        for placed in collect(cursor).await? {
            let hour = placed.started_at.div_euclid(3_600_000) * 3_600_000;
            counts
                .entry((hour, placed.status.as_str()))
                .or_insert((placed.status, 0))
                .1 += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((hour, _), (status, n))| (hour, status, n))
            .collect())
    }

    async fn tally(&self, query: &AttendanceQuery) -> Result<Tally, StoreError> {
        // Counted here, as `counts_by_hour`: only the fields counted cross the wire.
        #[derive(serde::Deserialize)]
        struct Placed {
            section_id: Option<String>,
            student_id: String,
            status: MarkStatus,
        }
        let mut filter = doc! {
            "school_id": &query.school_id,
            "placed_at": { "$gte": query.from, "$lt": query.to },
        };
        let mut sessions_filter = doc! {
            "school_id": &query.school_id,
            "started_at": { "$gte": query.from, "$lt": query.to },
        };
        if let Some(section_id) = &query.section_id {
            filter.insert("section_id", section_id);
            sessions_filter.insert("section_id", section_id);
        }
        let cursor = self
            .coll::<Placed>(names::MARKS)
            .find(filter)
            .projection(doc! { "_id": 0, "section_id": 1, "student_id": 1, "status": 1 })
            .await
            .map_err(DbError::from)?;
        let mut marks: std::collections::HashMap<(Option<String>, String, &'static str), TallyRow> =
            std::collections::HashMap::new();
        for p in collect(cursor).await? {
            let key = (
                p.section_id.clone(),
                p.student_id.clone(),
                p.status.as_str(),
            );
            marks
                .entry(key)
                .or_insert(TallyRow {
                    section_id: p.section_id,
                    student_id: p.student_id,
                    status: p.status,
                    count: 0,
                })
                .count += 1;
        }
        #[derive(serde::Deserialize)]
        struct Held {
            section_id: String,
        }
        let cursor = self
            .coll::<Held>(names::SESSIONS)
            .find(sessions_filter)
            .projection(doc! { "_id": 0, "section_id": 1 })
            .await
            .map_err(DbError::from)?;
        let mut sessions: std::collections::BTreeMap<String, u64> =
            std::collections::BTreeMap::new();
        for s in collect(cursor).await? {
            *sessions.entry(s.section_id).or_default() += 1;
        }
        Ok(Tally {
            marks: marks.into_values().collect(),
            sessions: sessions.into_iter().collect(),
        })
    }

    async fn machine_decisions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<MachineDecisions>, StoreError> {
        // Counted here, as `counts_by_hour`: only the fields counted cross the wire.
        #[derive(serde::Deserialize)]
        struct Decided {
            section_id: String,
            device_id: String,
            #[serde(default)]
            machine_status: Option<MarkStatus>,
            status: MarkStatus,
            source: MarkSource,
        }
        let cursor = self
            .coll::<Decided>(names::MARKS)
            .find(doc! {
                "school_id": school_id,
                "placed_at": { "$gte": from, "$lt": to },
                "section_id": { "$ne": null },
                "$or": [
                    { "machine_status": { "$exists": true } },
                    { "source": MarkSource::Machine.as_str() },
                ],
            })
            .projection(doc! {
                "_id": 0, "section_id": 1, "device_id": 1,
                "machine_status": 1, "status": 1, "source": 1,
            })
            .await
            .map_err(DbError::from)?;
        let marks = collect(cursor).await?;
        Ok(MachineDecisions::merged(marks.into_iter().map(|d| {
            MachineDecisions {
                section_id: d.section_id,
                device_id: d.device_id,
                machine: d.machine_status,
                status: d.status,
                source: d.source,
                count: 1,
            }
        })))
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        // Counted from the collections' metadata rather than kept in a counter document: one
        // document that every push increments would make all pushes of all schools conflict.
        // MongoDB keeps these counts exact except after an unclean shutdown (until the next
        // `validate`), which is good enough for `/metrics`.
        let events_applied = self
            .coll::<Document>(names::APPLIED_EVENTS)
            .estimated_document_count()
            .await
            .map_err(DbError::from)?;
        let changes = self
            .coll::<Document>(names::CHANGES)
            .estimated_document_count()
            .await
            .map_err(DbError::from)?;
        Ok(StoreCounts {
            events_applied,
            changes,
        })
    }
}

impl Tx<'_> {
    fn coll<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.store.coll(name)
    }

    /// Every document of `name` matching `filter`, in `sort` order, read in this transaction.
    async fn find_all<T>(
        &mut self,
        name: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Vec<T>, DbError>
    where
        T: serde::de::DeserializeOwned + Send + Sync + Unpin,
    {
        let mut cursor = self
            .coll::<T>(name)
            .find(filter)
            .sort(sort)
            .session(&mut self.session)
            .await?;
        Ok(cursor.stream(&mut self.session).try_collect().await?)
    }
}
