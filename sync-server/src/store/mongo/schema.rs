//! What a database must hold before the first request: its schema version (a newer one is
//! refused untouched), every collection (a transaction cannot create one on every server) and
//! every index, unique ones for the keys the store's invariants rest on.

use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use super::error::DbError;
use super::names::*;
use crate::store::StoreError;

/// Version of the document layout this build writes. Raise it with a migration when the layout
/// changes incompatibly.
/// 2: marks decided by the office (a word schema 1 servers cannot read), the audit log, what boxes
/// report, school settings.
pub const SUPPORTED_SCHEMA: i64 = 2;

/// MongoDB's code for "collection already exists".
const NAMESPACE_EXISTS: i32 = 48;

const COLLECTIONS: &[&str] = &[
    META,
    SCHOOLS,
    USERS,
    AUTH_SESSIONS,
    DEVICES,
    PROVISIONING_CODES,
    SECTIONS,
    STUDENTS,
    TEACHERS,
    ENROLMENTS,
    TEMPLATES,
    SESSIONS,
    MARKS,
    APPLIED_EVENTS,
    CHANGES,
    FEED_COUNTERS,
    SERVER_SESSIONS,
    AUDIT_LOG,
    EXCUSALS,
    GUARDIANS,
    NOTICES,
];

/// The index set. Entities keyed by their own id (schools, sections, students, sessions,
/// templates, event ids, provisioning code hashes, login token hashes) use `_id`, which is
/// always unique.
fn indexes() -> Vec<(&'static str, &'static str, Document, bool)> {
    vec![
        (USERS, "username_unique", doc! { "username": 1 }, true),
        (DEVICES, "token_hash_unique", doc! { "token_hash": 1 }, true),
        (
            DEVICES,
            "school_created",
            doc! { "school_id": 1, "created_at": 1 },
            false,
        ),
        (SECTIONS, "school", doc! { "school_id": 1 }, false),
        (STUDENTS, "school", doc! { "school_id": 1 }, false),
        (TEACHERS, "school", doc! { "school_id": 1 }, false),
        (
            ENROLMENTS,
            "section_person_unique",
            doc! { "section_id": 1, "person_id": 1 },
            true,
        ),
        (ENROLMENTS, "person", doc! { "person_id": 1 }, false),
        (ENROLMENTS, "school", doc! { "school_id": 1 }, false),
        (
            TEMPLATES,
            "school_student",
            doc! { "school_id": 1, "student_id": 1 },
            false,
        ),
        (TEMPLATES, "student", doc! { "student_id": 1 }, false),
        (
            MARKS,
            "session_student_unique",
            doc! { "session_id": 1, "student_id": 1 },
            true,
        ),
        (MARKS, "student", doc! { "student_id": 1 }, false),
        (
            GUARDIANS,
            "school_email_unique",
            doc! { "school_id": 1, "email": 1 },
            true,
        ),
        (GUARDIANS, "student", doc! { "student_ids": 1 }, false),
        (NOTICES, "key_unique", doc! { "key": 1 }, true),
        (
            NOTICES,
            "due",
            doc! { "state": 1, "next_attempt_at": 1 },
            false,
        ),
        (NOTICES, "lease", doc! { "lease_owner": 1 }, false),
        (
            NOTICES,
            "school_created",
            doc! { "school_id": 1, "created_at": -1 },
            false,
        ),
        (
            NOTICES,
            "school_day",
            doc! { "school_id": 1, "day": 1 },
            false,
        ),
        (
            NOTICES,
            "school_students",
            doc! { "school_id": 1, "student_ids": 1 },
            false,
        ),
        (
            EXCUSALS,
            "section_from",
            doc! { "section_id": 1, "from_ms": 1 },
            false,
        ),
        (
            MARKS,
            "school_placed",
            doc! { "school_id": 1, "placed_at": 1 },
            false,
        ),
        (
            CHANGES,
            "school_key_unique",
            doc! { "school_id": 1, "key": 1 },
            true,
        ),
        (
            SESSIONS,
            "school_started",
            doc! { "school_id": 1, "started_at": 1 },
            false,
        ),
        (
            MARKS,
            "school_section_placed",
            doc! { "school_id": 1, "section_id": 1, "placed_at": 1 },
            false,
        ),
        (
            AUDIT_LOG,
            "school_at",
            doc! { "school_id": 1, "at": -1 },
            false,
        ),
        (
            CHANGES,
            "school_seq_unique",
            doc! { "school_id": 1, "seq": 1 },
            true,
        ),
    ]
}

pub async fn prepare(db: &Database) -> Result<(), StoreError> {
    refuse_newer(db).await?;
    let existing = db.list_collection_names().await.map_err(DbError::from)?;
    for name in COLLECTIONS {
        if existing.iter().any(|e| e == name) {
            continue;
        }
        match db.create_collection(*name).await {
            Ok(()) => {}
            // Another server process created it in the meantime.
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {}
            Err(e) => return Err(DbError::from(e).into()),
        }
    }
    for (collection, name, keys, unique) in indexes() {
        let model = IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .name(name.to_owned())
                    .unique(unique)
                    .build(),
            )
            .build();
        db.collection::<Document>(collection)
            .create_index(model)
            .await
            .map_err(|e| {
                StoreError::from(DbError::from(e)).context(&format!("index {collection}.{name}"))
            })?;
    }
    db.collection::<Document>(META)
        .update_one(
            doc! { "_id": "schema" },
            doc! { "$max": { "version": SUPPORTED_SCHEMA } },
        )
        .upsert(true)
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Refuses a database whose schema a newer server wrote, before anything is written to it.
async fn refuse_newer(db: &Database) -> Result<(), StoreError> {
    let found = db
        .collection::<Document>(META)
        .find_one(doc! { "_id": "schema" })
        .await
        .map_err(DbError::from)?;
    let version = match found.as_ref().map(|d| d.get("version")) {
        None | Some(None) => return Ok(()),
        Some(Some(v)) => v.as_i64().or_else(|| v.as_i32().map(i64::from)),
    };
    match version {
        Some(v) if v <= SUPPORTED_SCHEMA => Ok(()),
        Some(v) => Err(StoreError::NewerSchema(format!(
            "MongoDB database {} was written by a newer sync-server (schema {v}, this build \
             knows up to {SUPPORTED_SCHEMA}); it was not modified. Upgrade sync-server",
            db.name()
        ))),
        None => Err(StoreError::Backend(format!(
            "MongoDB database {} has an unreadable schema version; is it a Rollcall database?",
            db.name()
        ))),
    }
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

impl StoreError {
    /// The same error, naming what was being done.
    fn context(self, what: &str) -> StoreError {
        match self {
            StoreError::Unavailable(e) => StoreError::Unavailable(format!("{what}: {e}")),
            StoreError::Backend(e) => StoreError::Backend(format!("{what}: {e}")),
            other => other,
        }
    }
}
