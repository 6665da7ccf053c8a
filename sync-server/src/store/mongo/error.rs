//! Errors inside the MongoDB backend: driver errors keep their labels until the transaction loop
//! has decided whether to retry, then become `StoreError`s.

use mongodb::error::{
    Error as MongoError, ErrorKind, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};

use crate::store::StoreError;

/// MongoDB's code for a unique index violation.
const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "the server is stepping down, starting or unreachable": retry later.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict, outside a transaction's labels
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Mongo(#[from] MongoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A concurrent transaction wrote a key this one needs (a duplicate event id): run the
    /// transaction again, which will see the other one's result.
    #[error("a concurrent write took {0}; retrying")]
    Race(String),
    /// The transaction writes the feed of this school and holds no feed lock: `tx::run` runs it
    /// again holding the lock.
    #[error("the change feed of school {0} needs its lock")]
    FeedLockNeeded(String),
}

impl DbError {
    /// A stored document that does not read back as its type: corruption, reported with `what`
    /// (which names the record and field), never read as a default or skipped (ARCHITECTURE.md).
    pub fn corrupt(what: impl std::fmt::Display) -> DbError {
        DbError::Store(StoreError::Backend(what.to_string()))
    }

    /// Worth running the whole transaction again.
    pub fn is_transient_transaction_error(&self) -> bool {
        match self {
            DbError::Mongo(e) => e.contains_label(TRANSIENT_TRANSACTION_ERROR),
            DbError::Race(_) => true,
            DbError::Store(_) | DbError::FeedLockNeeded(_) => false,
        }
    }

    pub fn is_unknown_commit_result(&self) -> bool {
        matches!(self, DbError::Mongo(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT))
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        match e {
            DbError::Store(e) => e,
            DbError::Race(what) => {
                StoreError::Unavailable(format!("concurrent writes kept taking {what}; retry"))
            }
            // `tx::run` takes the lock and runs again: reaching here is a bug (a transaction
            // that already held another school's lock).
            DbError::FeedLockNeeded(school) => StoreError::Backend(format!(
                "a change-feed write for school {school} in a transaction without its lock"
            )),
            DbError::Mongo(e) if is_transient(&e) => StoreError::Unavailable(e.to_string()),
            DbError::Mongo(e) => StoreError::Backend(e.to_string()),
        }
    }
}

/// The database cannot be reached, is changing primaries, or lost a race worth retrying.
pub fn is_transient(e: &MongoError) -> bool {
    if [
        TRANSIENT_TRANSACTION_ERROR,
        UNKNOWN_TRANSACTION_COMMIT_RESULT,
        RETRYABLE_WRITE_ERROR,
    ]
    .iter()
    .any(|label| e.contains_label(label))
    {
        return true;
    }
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => server_codes(e).iter().any(|c| TRANSIENT_CODES.contains(c)),
    }
}

/// A unique index refused the write.
pub fn is_duplicate_key(e: &MongoError) -> bool {
    server_codes(e).contains(&DUPLICATE_KEY)
}

/// Every server error code an error carries (a bulk insert carries one per failed document).
fn server_codes(e: &MongoError) -> Vec<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => vec![c.code],
        ErrorKind::Write(WriteFailure::WriteError(w)) => vec![w.code],
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => vec![w.code],
        ErrorKind::InsertMany(m) => {
            let mut codes: Vec<i32> = m.write_errors.iter().flatten().map(|w| w.code).collect();
            codes.extend(m.write_concern_error.iter().map(|w| w.code));
            codes
        }
        _ => Vec::new(),
    }
}

/// An insert's failure: a taken unique key is `Conflict(what)`.
pub fn insert_error(e: MongoError, what: &str) -> DbError {
    if is_duplicate_key(&e) {
        DbError::Store(StoreError::Conflict(what.to_owned()))
    } else {
        DbError::Mongo(e)
    }
}
