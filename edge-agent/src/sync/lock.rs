//! Exactly one process of a box syncs: the one holding `data_dir/sync.lock`, an advisory lock the
//! OS releases when its process ends, however it ends. The daemon holds it while it runs; a teacher
//! screen started beside it finds it held, shows the state the daemon records in the store, and
//! asks the daemon for a cycle at the address the file names. Without a daemon the screen takes
//! the lock and syncs by itself; a daemon started then waits for it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "sync.lock";

/// Who holds the lock, as its file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `daemon` or `screen`.
    pub by: String,
    pub pid: u32,
    /// The daemon's local address (`http://127.0.0.1:8701`), where `POST /sync` asks for a cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Holder {
    pub fn daemon(url: String) -> Holder {
        Holder {
            by: "daemon".into(),
            pid: std::process::id(),
            url: Some(url),
        }
    }

    pub fn screen() -> Holder {
        Holder {
            by: "screen".into(),
            pid: std::process::id(),
            url: None,
        }
    }
}

/// The lock, held until dropped.
#[derive(Debug)]
pub struct SyncLock {
    _file: File,
}

impl SyncLock {
    /// Takes the lock for `holder` if nobody holds it; `None` when another process does.
    pub fn try_acquire(data_dir: &Path, holder: &Holder) -> std::io::Result<Option<SyncLock>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path(data_dir))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let text = serde_json::to_string(holder).map_err(std::io::Error::other)?;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(text.as_bytes())?;
        Ok(Some(SyncLock { _file: file }))
    }
}

/// How long `holder` waits for a new holder to write its name: it writes right after it takes the
/// lock, so only a reader that comes in between (a few microseconds, longer on a loaded box) waits.
const HOLDER_WRITES_WITHIN: Duration = Duration::from_millis(50);

/// Who holds the lock now: `None` when nobody does (or the file does not say).
pub fn holder(data_dir: &Path) -> Option<Holder> {
    holder_within(data_dir, HOLDER_WRITES_WITHIN)
}

fn holder_within(data_dir: &Path, wait: Duration) -> Option<Holder> {
    let mut file = File::open(path(data_dir)).ok()?;
    // Held by nobody: whatever the file says is an earlier holder's.
    if file.try_lock_shared().is_ok() {
        return None;
    }
    // Held: the holder takes the lock before it writes its name over the earlier holder's, so an
    // empty or half-written file is read again until it says, or the holder has let go.
    let deadline = Instant::now() + wait;
    loop {
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        if let Ok(holder) = serde_json::from_str(&text) {
            return Some(holder);
        }
        if Instant::now() >= deadline || file.try_lock_shared().is_ok() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()), None);
        let daemon = Holder::daemon("http://127.0.0.1:8701".into());
        let lock = SyncLock::try_acquire(dir.path(), &daemon).unwrap().unwrap();
        // Another open file description (another process, or the screen's thread) is refused.
        assert!(
            SyncLock::try_acquire(dir.path(), &Holder::screen())
                .unwrap()
                .is_none()
        );
        assert_eq!(holder(dir.path()), Some(daemon));
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        let screen = SyncLock::try_acquire(dir.path(), &Holder::screen()).unwrap();
        assert!(screen.is_some());
        assert_eq!(holder(dir.path()).unwrap().by, "screen");
    }

    #[test]
    fn a_reader_between_the_lock_and_the_holders_name_waits_for_the_name() {
        let dir = tempfile::tempdir().unwrap();
        // What `try_acquire` does, with a pause between taking the lock and writing the name.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path(dir.path()))
            .unwrap();
        file.try_lock().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let text = serde_json::to_string(&Holder::screen()).unwrap();
            file.write_all(text.as_bytes()).unwrap();
            file
        });
        // A long wait, so that a loaded machine cannot fail the test by pausing the writer.
        let read = holder_within(dir.path(), Duration::from_secs(10));
        assert_eq!(read.map(|h| h.by).as_deref(), Some("screen"));
        let file = writer.join().unwrap();
        // A holder that never says is nobody the reader can name, after a short wait.
        file.set_len(0).unwrap();
        let started = Instant::now();
        assert_eq!(holder(dir.path()), None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
