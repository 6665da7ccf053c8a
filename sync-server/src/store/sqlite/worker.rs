//! Where SQLite runs: one writer thread that owns the only writing connection and commits queued
//! jobs in groups, and a pool of read connections used from `spawn_blocking`. Neither ever blocks
//! the async runtime.
//!
//! Checkpoints, which copy the WAL back into the database file and fsync it, run on a thread of
//! their own (`Checkpointer`), so the writer only appends to the WAL and its pushes never wait
//! for a checkpoint; the writer checkpoints itself only if that thread falls far behind.
//!
//! Group commit: the writer takes every job already queued (up to `MAX_GROUP`), runs each inside
//! its own SAVEPOINT of one transaction, and answers them all after the single COMMIT. A job that
//! fails rolls back to its savepoint and affects no other job; one fsync serves the whole group,
//! which is what lets a hundred boxes push at once on a slow disk.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// The writer thread's name: what `top -H`, `perf` and the load bench (which reads its CPU time
/// from `/proc`) know it by.
pub const WRITER_THREAD: &str = "sqlite-writer";

/// Most jobs committed together: bounds how long the first job of a group waits for the others.
const MAX_GROUP: usize = 32;
/// Read connections open at most, each with its page cache (`configure_reader`): reads beyond
/// these wait their turn. Unbounded, a burst of page loads or one page's parallel parts opened a
/// connection each (PERFORMANCE.md, "The year's CSV without SQLite's sort").
pub(super) const MAX_READERS: usize = 8;

/// A write job, type-erased so jobs with different results share one queue.
trait Job: Send {
    /// Runs the job inside an open savepoint; `false` when it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's fate is known: `Err` when the commit failed.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => std::panic::catch_unwind(AssertUnwindSafe(|| work(conn)))
                .unwrap_or_else(|panic| Err(StoreError::Backend(panic_text(&panic)))),
            None => Err(StoreError::Backend("write job ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend("write job never ran".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away (request cancelled); the work is committed regardless.
        let _ = self.reply.send(answer);
    }
}

fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("write job panicked: {what}")
}

/// The writer thread and its queue. Dropping it lets the thread finish the queued jobs, close the
/// connection and exit, and waits for that, so the same file can be reopened right away.
pub struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the write transaction and returns its result once committed.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Unavailable("the SQLite writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, group);
    }
}

fn commit_group(conn: &Connection, mut group: Vec<Box<dyn Job>>) {
    let failed_all = |group: Vec<Box<dyn Job>>, e: &rusqlite::Error| {
        for job in group {
            job.finish(Err(StoreError::from(clone_error(e))));
        }
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return failed_all(group, &e);
    }
    for job in &mut group {
        if let Err(e) = run_in_savepoint(conn, job.as_mut()) {
            // The savepoint could not be set or undone: the transaction is in an unknown state,
            // so nothing of the group may be committed.
            let _ = conn.execute_batch("ROLLBACK");
            return failed_all(group, &e);
        }
        if conn.is_autocommit() {
            // SQLite rolled back the whole transaction itself (disk full, I/O error).
            return failed_all(
                group,
                &rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the write transaction was rolled back".into()),
                ),
            );
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for job in group {
                job.finish(Ok(()));
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            failed_all(group, &e);
        }
    }
}

fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> Result<(), rusqlite::Error> {
    conn.execute_batch("SAVEPOINT job")?;
    if job.run(conn) {
        conn.execute_batch("RELEASE job")
    } else if conn.is_autocommit() {
        Ok(())
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    }
}

/// `rusqlite::Error` is not `Clone`; every job of a failed group gets its own copy of the cause.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which the writer checkpoints by itself (`wal_autocheckpoint`): a safety net
/// for a checkpointer that cannot keep up, 4x SQLite's default.
pub const WRITER_CHECKPOINT_PAGES: i64 = 4_000;

/// A thread with its own connection that runs a PASSIVE checkpoint every `CHECKPOINT_EVERY`. A
/// passive checkpoint never blocks the writer or the readers; what it cannot copy this time
/// (frames a reader still needs) it copies next time. Dropping it stops the thread.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    let done = conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
                    if let Err(e) = done {
                        tracing::warn!("WAL checkpoint failed (the writer will do it): {e}");
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Read connections, opened on demand and reused, `MAX_READERS` at most. WAL lets them read
/// while the writer writes; each statement sees only committed transactions.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may be in use.
    permits: Arc<tokio::sync::Semaphore>,
}

impl Readers {
    pub fn new(path: &Path) -> Arc<Readers> {
        Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        })
    }

    /// Runs `work` on a read connection on the blocking pool, once one is free.
    pub async fn run<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("read connections closed: {e}")))?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = work(&conn);
            readers.put_back(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open(&self.path)?;
        super::configure_reader(&conn)?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_READERS
        {
            idle.push(conn);
        }
    }
}
