//! The embedded SQLite backend of `Store`: one file in the server's data directory, nothing to
//! install. WAL with `synchronous=FULL` (an acked event survives power loss), foreign keys on,
//! versioned migrations (`schema`). One writer thread commits queued writes in groups (`worker`);
//! reads run on their own connections so they never queue behind writes.

mod accounts;
mod attendance;
mod audit;
mod events;
mod excusals;
mod feed;
mod guardians;
mod notices;
mod roster;
mod schema;
mod templates;
mod tx;
mod worker;

pub use worker::WRITER_THREAD;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{Type, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row};
use shared_proto::EmbeddingSpace;
use shared_proto::sync::{MarkStatus, ScheduleSlot};

use super::rules::Owner;
use super::transaction::{Done, Kind, Operation};
use super::{
    AttendanceQuery, AttendanceRow, AuthSession, ChangePage, CropRead, Device, Enrolment, KeptCrop,
    MachineDecisions, Millis, NoticeQuery, ProvisioningCode, RosterBatch, School, Section, Seen,
    Store, StoreCounts, StoreError, Student, Tally, TemplateRead, User,
};
use crate::domain::audit::{Entry as AuditEntry, Query as AuditQuery};
use crate::domain::event::Template;
use crate::domain::excusal::Excusal;
use crate::domain::guardian::Guardian;
use crate::domain::notice::{Claim, Finish, Notice, State as NoticeState};
use crate::domain::settings::SchoolSettings;
use tx::{Tx, finish};
use worker::{Checkpointer, Readers, Writer};

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A report's range cut into one part per core (at most four), each read on a reader of its own
/// at the same time: SQLite runs a query on one thread, and counting a month of a school's marks was
/// most of the reports page's time (PERFORMANCE.md, issue 15). Every session and mark falls in
/// exactly one part, read in one snapshot. Ranges under two days, or over a school year and a bit
/// (an open-ended query), stay whole.
fn at_once(from: Millis, to: Millis) -> Vec<(Millis, Millis)> {
    const DAY: Millis = 86_400_000;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let n = cores.min(4) as Millis;
    let span = to.saturating_sub(from);
    if n < 2 || !(2 * DAY..=400 * DAY).contains(&span) {
        return vec![(from, to)];
    }
    // Inner bounds fall on UTC midnights: a part is whole days, whatever the caller counts.
    let step = span / n;
    let bound = |i: Millis| ((from + i * step) / DAY * DAY).clamp(from, to);
    let mut parts: Vec<(Millis, Millis)> = (0..n)
        .map(|i| {
            let start = if i == 0 { from } else { bound(i) };
            let end = if i == n - 1 { to } else { bound(i + 1) };
            (start, end)
        })
        .collect();
    parts.retain(|(start, end)| start < end);
    parts
}

pub struct SqliteStore {
    writer: Writer,
    /// Held only to be dropped after the writer (fields drop in order), stopping its thread.
    _checkpointer: Checkpointer,
    readers: Arc<Readers>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) and migrates the database at `path`.
    /// A database written by a newer build is refused with `NewerSchema`, untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        // Read the version before anything writes: switching to WAL would already modify a
        // newer database that must be left as it is.
        schema::refuse_newer(&conn, path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} cannot use write-ahead logging (journal mode {mode}); put it on a local disk",
                path.display()
            )));
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        // FULL syncs the WAL on every commit: an acked push survives power loss. Group commit
        // keeps that to one fsync per group of pushes.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "cache_size", -32_000)?;
        // Each push of a group runs in a SAVEPOINT whose sub-journal copies every page it
        // touches first: keep that journal in memory, not in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "wal_autocheckpoint", worker::WRITER_CHECKPOINT_PAGES)?;
        schema::migrate(&mut conn, path)?;
        Ok(SqliteStore {
            writer: Writer::start(conn)?,
            _checkpointer: Checkpointer::start(path)?,
            readers: Readers::new(path),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            // Another process holds the file, or the disk is full or failing: worth a retry.
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// An insert's failure: a taken unique key is `Conflict(what)`, a missing referenced row (the
/// school, the user) is `NotFound(missing)`.
fn insert_error(e: rusqlite::Error, what: &str, missing: &str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &e {
        match failure.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                return StoreError::Conflict(what.to_owned());
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return StoreError::NotFound(missing.to_owned());
            }
            _ => {}
        }
    }
    StoreError::from(e)
}

/// Whose the record of `kind` with `id` is (the kinds whose rows belong to one school).
fn owner(conn: &Connection, kind: Kind, id: &str, school_id: &str) -> Result<Owner, StoreError> {
    let sql = match kind {
        Kind::Section => "SELECT school_id FROM sections WHERE id = ?1",
        Kind::Student => "SELECT school_id FROM students WHERE id = ?1",
        Kind::Teacher => "SELECT school_id FROM teachers WHERE id = ?1",
    };
    let school: Option<String> = conn
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(Owner::of(school.as_deref(), school_id))
}

/// A stored value that does not read back as its type: corruption, reported as a conversion
/// error naming the column (of SQL type `ty`), never read as a default or skipped.
fn corrupt(column: usize, ty: Type, why: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, ty, why.to_string().into())
}

/// A column holding one of our enums' words (`shared_proto::vocabulary`), as the schema's CHECK
/// constraints name them, read in place (a year's export reads two per mark); another word, or no
/// text, is corruption, not guessed at.
fn word<T>(r: &Row<'_>, column: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = shared_proto::vocabulary::UnknownWord>,
{
    opt_word(r, column)?.ok_or_else(|| corrupt(column, Type::Null, "no value where a word belongs"))
}

/// As `word`, for a column that may be NULL.
fn opt_word<T>(r: &Row<'_>, column: usize) -> rusqlite::Result<Option<T>>
where
    T: std::str::FromStr<Err = shared_proto::vocabulary::UnknownWord>,
{
    let text = match r.get_ref(column)? {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|e| corrupt(column, Type::Text, e))?
        }
        other => return Err(corrupt(column, other.data_type(), "not text")),
    };
    text.parse()
        .map(Some)
        .map_err(|_| corrupt(column, Type::Text, format!("unexpected value {text:?}")))
}

#[async_trait]
impl Store for SqliteStore {
    async fn transact(&self, operation: Operation) -> Result<Done, StoreError> {
        self.writer
            .run(move |conn| finish(operation.run(&mut Tx(conn))))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_school(&self, school: &School) -> Result<(), StoreError> {
        let school = school.clone();
        self.writer
            .run(move |conn| accounts::create_school(conn, &school))
            .await
    }

    async fn schools(&self) -> Result<Vec<School>, StoreError> {
        self.readers.run(accounts::schools).await
    }

    async fn school(&self, id: &str) -> Result<Option<School>, StoreError> {
        let id = id.to_owned();
        self.readers
            .run(move |conn| accounts::school(conn, &id))
            .await
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.writer
            .run(move |conn| accounts::create_user(conn, &user))
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.readers
            .run(move |conn| accounts::user_by_name(conn, &username))
            .await
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        self.readers.run(accounts::count_admins).await
    }

    async fn school_settings(&self, school_id: &str) -> Result<SchoolSettings, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| accounts::school_settings(conn, &school_id))
            .await
    }

    async fn set_school_settings(
        &self,
        school_id: &str,
        settings: &SchoolSettings,
    ) -> Result<(), StoreError> {
        let (school_id, settings) = (school_id.to_owned(), settings.clone());
        self.writer
            .run(move |conn| accounts::set_school_settings(conn, &school_id, &settings))
            .await
    }

    async fn users(&self, school_id: &str) -> Result<Vec<User>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| accounts::users(conn, &school_id))
            .await
    }

    async fn set_password(
        &self,
        school_id: &str,
        user_id: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let (school_id, user_id, hash) = (
            school_id.to_owned(),
            user_id.to_owned(),
            password_hash.to_owned(),
        );
        self.writer
            .run(move |conn| accounts::set_password(conn, &school_id, &user_id, &hash))
            .await
    }

    async fn create_auth_session(&self, session: &AuthSession) -> Result<(), StoreError> {
        let session = session.clone();
        self.writer
            .run(move |conn| accounts::create_auth_session(conn, &session))
            .await
    }

    async fn user_by_session(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<User>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.readers
            .run(move |conn| accounts::user_by_session(conn, &token_hash, now))
            .await
    }

    async fn delete_auth_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_owned();
        self.writer
            .run(move |conn| accounts::delete_auth_session(conn, &token_hash))
            .await
    }

    async fn sections_of_teacher(
        &self,
        school_id: &str,
        teacher_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (school_id, teacher_id) = (school_id.to_owned(), teacher_id.to_owned());
        self.readers
            .run(move |conn| roster::sections_of_teacher(conn, &school_id, &teacher_id))
            .await
    }

    async fn create_provisioning_code(&self, code: &ProvisioningCode) -> Result<(), StoreError> {
        let code = code.clone();
        self.writer
            .run(move |conn| accounts::create_provisioning_code(conn, &code))
            .await
    }

    async fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.readers
            .run(move |conn| accounts::device_by_token(conn, &token_hash))
            .await
    }

    async fn devices(&self, school_id: &str) -> Result<Vec<Device>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| accounts::devices(conn, &school_id))
            .await
    }

    async fn revoke_device(
        &self,
        school_id: &str,
        device_id: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (school_id, device_id) = (school_id.to_owned(), device_id.to_owned());
        self.writer
            .run(move |conn| accounts::revoke_device(conn, &school_id, &device_id, now))
            .await
    }

    async fn device_seen(
        &self,
        device_id: &str,
        seen: &Seen,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (device_id, seen) = (device_id.to_owned(), seen.clone());
        self.writer
            .run(move |conn| accounts::device_seen(conn, &device_id, &seen, now))
            .await
    }

    async fn erasures_since(
        &self,
        school_id: &str,
        seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| feed::erasures_since(conn, &school_id, seq))
            .await
    }

    async fn roster(&self, school_id: &str) -> Result<RosterBatch, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| roster::held(conn, &school_id))
            .await
    }

    async fn sections(&self, school_id: &str) -> Result<Vec<Section>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| roster::sections(conn, &school_id))
            .await
    }

    async fn students(&self, school_id: &str) -> Result<Vec<Student>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| roster::students(conn, &school_id))
            .await
    }

    async fn student(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Option<Student>, StoreError> {
        let (school_id, student_id) = (school_id.to_owned(), student_id.to_owned());
        self.readers
            .run(move |conn| roster::student(conn, &school_id, &student_id))
            .await
    }

    async fn enrolments(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<Enrolment>, StoreError> {
        let (school_id, section_id) = (school_id.to_owned(), section_id.to_owned());
        self.readers
            .run(move |conn| roster::enrolments(conn, &school_id, &section_id))
            .await
    }

    async fn set_schedule(
        &self,
        school_id: &str,
        section_id: &str,
        slots: &[ScheduleSlot],
    ) -> Result<(), StoreError> {
        let (school_id, section_id) = (school_id.to_owned(), section_id.to_owned());
        let slots = slots.to_vec();
        self.writer
            .run(move |conn| roster::set_schedule(conn, &school_id, &section_id, &slots))
            .await
    }

    async fn schedule(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<ScheduleSlot>, StoreError> {
        let (school_id, section_id) = (school_id.to_owned(), section_id.to_owned());
        self.readers
            .run(move |conn| roster::schedule(conn, &school_id, &section_id))
            .await
    }

    async fn timetable(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, Vec<ScheduleSlot>)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| roster::timetable(conn, &school_id))
            .await
    }

    async fn excusals(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<Excusal>, StoreError> {
        let (school_id, section_id) = (school_id.to_owned(), section_id.to_owned());
        self.readers
            .run(move |conn| excusals::of_section(conn, &school_id, &section_id))
            .await
    }

    async fn guardians_of(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Vec<Guardian>, StoreError> {
        let (school_id, student_id) = (school_id.to_owned(), student_id.to_owned());
        self.readers
            .run(move |conn| guardians::of_student(conn, &school_id, &student_id))
            .await
    }

    async fn guardians(&self, school_id: &str) -> Result<Vec<Guardian>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| guardians::of_school(conn, &school_id))
            .await
    }

    async fn guardian(&self, school_id: &str, id: &str) -> Result<Option<Guardian>, StoreError> {
        let (school_id, id) = (school_id.to_owned(), id.to_owned());
        self.readers
            .run(move |conn| guardians::one(conn, &school_id, &id))
            .await
    }

    async fn opt_out_guardian(
        &self,
        school_id: &str,
        guardian_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let (school_id, id) = (school_id.to_owned(), guardian_id.to_owned());
        self.writer
            .run(move |conn| guardians::opt_out(conn, &school_id, &id, at))
            .await
    }

    async fn enqueue_notices(&self, notices: &[Notice]) -> Result<usize, StoreError> {
        let notices = notices.to_vec();
        self.writer
            .run(move |conn| notices::enqueue(conn, &notices))
            .await
    }

    async fn claim_notices(&self, claim: &Claim) -> Result<Vec<Notice>, StoreError> {
        let claim = claim.clone();
        self.writer
            .run(move |conn| notices::claim(conn, &claim))
            .await
    }

    async fn finish_notice(
        &self,
        id: &str,
        owner: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        let (id, owner, finish) = (id.to_owned(), owner.to_owned(), finish.clone());
        self.writer
            .run(move |conn| notices::finish(conn, &id, &owner, &finish))
            .await
    }

    async fn resend_notice(
        &self,
        school_id: &str,
        id: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        let (school_id, id, finish) = (school_id.to_owned(), id.to_owned(), finish.clone());
        self.writer
            .run(move |conn| notices::resend(conn, &school_id, &id, &finish))
            .await
    }

    async fn notices(&self, query: &NoticeQuery) -> Result<Vec<Notice>, StoreError> {
        let query = query.clone();
        self.readers
            .run(move |conn| notices::list(conn, &query))
            .await
    }

    async fn notice(&self, school_id: &str, id: &str) -> Result<Option<Notice>, StoreError> {
        let (school_id, id) = (school_id.to_owned(), id.to_owned());
        self.readers
            .run(move |conn| notices::one(conn, &school_id, &id))
            .await
    }

    async fn notice_counts(&self, school_id: &str) -> Result<Vec<(NoticeState, u64)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| notices::counts(conn, &school_id))
            .await
    }

    async fn notice_secret(&self, fresh: &str) -> Result<String, StoreError> {
        let fresh = fresh.to_owned();
        self.writer
            .run(move |conn| notices::secret(conn, &fresh))
            .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.writer
            .run(move |conn| audit::append(conn, &entry))
            .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.readers
            .run(move |conn| audit::entries(conn, &query))
            .await
    }

    async fn templates_of(
        &self,
        school_id: &str,
        read: TemplateRead,
    ) -> Result<Vec<Template>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| templates::templates_of(conn, &school_id, &read))
            .await
    }

    async fn live_template_ids(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, EmbeddingSpace)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| templates::live_ids_of_school(conn, &school_id))
            .await
    }

    async fn keep_crop(
        &self,
        school_id: &str,
        template_id: &str,
        crop: &[u8],
    ) -> Result<bool, StoreError> {
        let (school_id, template_id, crop) =
            (school_id.to_owned(), template_id.to_owned(), crop.to_vec());
        self.writer
            .run(move |conn| templates::keep_crop(conn, &school_id, &template_id, &crop))
            .await
    }

    async fn kept_crops(
        &self,
        school_id: &str,
        read: CropRead<'_>,
    ) -> Result<Vec<KeptCrop>, StoreError> {
        let school_id = school_id.to_owned();
        let ids = match read {
            CropRead::Listed => None,
            CropRead::Bytes(ids) => Some(ids.to_vec()),
        };
        self.readers
            .run(move |conn| templates::kept_crops(conn, &school_id, ids.as_deref()))
            .await
    }

    async fn drop_crops(&self, school_id: &str) -> Result<u64, StoreError> {
        let school_id = school_id.to_owned();
        self.writer
            .run(move |conn| templates::drop_crops(conn, &school_id))
            .await
    }

    async fn pull(
        &self,
        school_id: &str,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| feed::pull(conn, &school_id, cursor, limit))
            .await
    }

    async fn attendance(&self, query: &AttendanceQuery) -> Result<Vec<AttendanceRow>, StoreError> {
        let query = query.clone();
        self.readers
            .run(move |conn| attendance::attendance(conn, &query))
            .await
    }

    async fn latest_sessions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, String, Millis)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| attendance::latest_sessions(conn, &school_id, from, to))
            .await
    }

    async fn tally(&self, query: &AttendanceQuery) -> Result<Tally, StoreError> {
        let parts = at_once(query.from, query.to).into_iter().map(|(from, to)| {
            let part = AttendanceQuery {
                from,
                to,
                ..query.clone()
            };
            self.readers.run(move |conn| attendance::tally(conn, &part))
        });
        Ok(Tally::merged(
            futures_util::future::try_join_all(parts).await?,
        ))
    }

    async fn machine_decisions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<MachineDecisions>, StoreError> {
        let parts = at_once(from, to).into_iter().map(|(from, to)| {
            let school_id = school_id.to_owned();
            self.readers
                .run(move |conn| attendance::machine_decisions(conn, &school_id, from, to))
        });
        let parts = futures_util::future::try_join_all(parts).await?;
        Ok(MachineDecisions::merged(parts.into_iter().flatten()))
    }

    async fn counts_by_hour(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, MarkStatus, u64)>, StoreError> {
        let school_id = school_id.to_owned();
        self.readers
            .run(move |conn| attendance::counts_by_hour(conn, &school_id, from, to))
            .await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.readers.run(attendance::counts).await
    }
}

#[cfg(test)]
mod tests;
