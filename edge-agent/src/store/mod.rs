//! The box's database: SQLite (WAL, foreign keys) with sqlite-vec for face templates. The only
//! module that runs SQL. Every state change commits in one transaction with its outbox event.

mod check;
pub mod outbox;
mod roster;
mod schedule;
mod schema;
mod sessions;
mod stats;
mod students;
mod sync;
mod templates;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use outbox::{OutboxEvent, OutboxPayload};
pub use roster::ImportSummary;
pub use schedule::{Slot, SlotError, minutes_of_day};
pub use sessions::{Candidates, Mark, MarkSource, MarkStatus, OpenSession, Scored, SessionRecord};
pub use stats::{CaptureStats, KEPT_CAPTURES};
pub use students::{Consent, SectionRecord, StudentRecord};
pub use sync::{
    DeviceIdentity, OutboxCounts, PullSummary, QueuedEvent, RejectedEvent, StoredTemplate,
    SyncState,
};
pub use templates::{KeptCrop, NewTemplate, Replaced, TemplateRecord, TemplateSpaces};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is not a Rollcall database ({reason}); pass a new or existing .sqlite file")]
    NotADatabase { path: PathBuf, reason: String },
    #[error(
        "{path} was written by a newer Rollcall (schema {found}, this build knows up to {supported}); it was not modified. Upgrade edge-agent"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("unknown student {0:?}")]
    UnknownStudent(String),
    #[error("unknown section {0:?}")]
    UnknownSection(String),
    #[error("unknown capture session {0:?}")]
    UnknownSession(String),
    #[error(
        "the review candidates of {student} in session {session} cannot be read ({reason}); the database was changed outside Rollcall"
    )]
    UnreadableCandidates {
        session: String,
        student: String,
        reason: String,
    },
    #[error("section {section}: {reason}")]
    InvalidSlot { section: String, reason: String },
    #[error("student {student} is not enrolled in section {section}")]
    NotInSection { student: String, section: String },
    #[error(
        "this box belongs to school {current}; it cannot join school {new} with the same data folder (start from a new --data-dir)"
    )]
    OtherSchool { current: String, new: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub struct Store {
    conn: Connection,
}

fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_vec_init has the signature SQLite expects of an extension entry point;
        // registering it before any connection opens makes every connection load it.
        unsafe {
            #[allow(clippy::missing_transmute_annotations)]
            rusqlite::ffi::sqlite3_auto_extension(Some(std::mem::transmute(
                sqlite_vec::sqlite3_vec_init as *const (),
            )));
        }
    });
}

/// Milliseconds since the Unix epoch: the one clock format stored.
/// A column holding one of the shared enums' words (`shared_proto::vocabulary`). Another word
/// is a conversion error naming the column: a mark read back as something it was not would be
/// worse than an error.
fn word<T>(column: usize, text: &str) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = shared_proto::vocabulary::UnknownWord>,
{
    text.parse()
        .map_err(|e: shared_proto::vocabulary::UnknownWord| {
            rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
        })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        register_sqlite_vec();
        let not_db = |e: rusqlite::Error| StoreError::NotADatabase {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let conn = Connection::open(path).map_err(not_db)?;
        // Read the version before anything writes: a file that is not SQLite is named as such, and
        // a newer database is refused untouched (switching it to WAL would already modify it).
        schema::refuse_newer(&conn, path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(not_db)?;
        Store::prepare(conn, path)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        register_sqlite_vec();
        Store::prepare(Connection::open_in_memory()?, Path::new(":memory:"))
    }

    fn prepare(mut conn: Connection, path: &Path) -> Result<Store, StoreError> {
        conn.pragma_update(None, "foreign_keys", true)?;
        // FULL: a commit is on the disk before it returns. Under WAL, NORMAL syncs only at
        // checkpoints, so a box unplugged mid-lesson (they are, in classrooms) could lose the
        // last marks a teacher saw saved; docs/PERFORMANCE.md has what FULL costs per commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A capture and a pulled page each run a dozen statements per row, prepared once: room
        // for all of them, where rusqlite's default of 16 would evict some in every page.
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn, path)?;
        Ok(Store { conn })
    }

    /// SQLite's `synchronous` setting of this connection, by name (`FULL` for every store).
    pub fn synchronous(&self) -> Result<&'static str, StoreError> {
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok(match level {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            _ => "EXTRA",
        })
    }

    /// Sets `synchronous` (`NORMAL`, `FULL`) on this connection: only the durability benchmark
    /// does, to compare the two in one process.
    #[doc(hidden)]
    pub fn set_synchronous(&self, level: &str) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "synchronous", level)?;
        Ok(())
    }

    /// A raw connection to a database at an older schema `version`, created if needed: migration
    /// tests fill it as an older build would, then open it with [`Store::open`].
    #[doc(hidden)]
    pub fn legacy_database(path: &Path, version: usize) -> Result<Connection, StoreError> {
        register_sqlite_vec();
        let mut conn = Connection::open(path)?;
        schema::migrate_to(&mut conn, path, version)?;
        Ok(conn)
    }

    /// `PRAGMA integrity_check`: `ok` or the problems found.
    /// `PRAGMA quick_check`: the page structure without the index contents, quick enough to
    /// run on a box in use (`doctor`).
    pub fn quick_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?)
    }

    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    fn audit(
        tx: &rusqlite::Transaction<'_>,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![now_ms(), actor, action, detail],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: the box ran WAL with `synchronous=NORMAL`, so a power cut could lose the last
    /// committed marks.
    #[test]
    fn commits_are_durable_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.sqlite");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.synchronous().unwrap(), "FULL");
        let journal_mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal_mode, "wal");
        // A second connection (the sync thread's, the screen's workers') is opened the same way.
        let again = Store::open(&path).unwrap();
        assert_eq!(again.synchronous().unwrap(), "FULL");
    }

    /// Issue 14: a word the box does not know was read as "review" or "none" before; now it is
    /// an error that names the column and the words it takes.
    #[test]
    fn an_unknown_word_in_a_column_is_an_error_not_a_guess() {
        assert_eq!(word::<Consent>(4, "granted").unwrap(), Consent::Granted);
        let message = word::<Consent>(4, "maybe").unwrap_err().to_string();
        assert!(
            message.contains("index: 4") && message.contains("none, granted, withdrawn"),
            "{message}"
        );
    }
}
