//! Exactly one process of a box syncs: the one holding `data_dir/sync.lock`, an advisory lock the
//! OS releases when its process ends, however it ends. The daemon holds it while it runs; a teacher
//! screen started beside it finds it held, shows the state the daemon records in the store, and
//! asks the daemon for a cycle at the address the file names. Without a daemon the screen takes
//! the lock and syncs by itself; a daemon started then waits for it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

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

/// Who holds the lock now: `None` when nobody does (or the file does not say).
pub fn holder(data_dir: &Path) -> Option<Holder> {
    let mut file = File::open(path(data_dir)).ok()?;
    // Held by nobody: whatever the file says is an earlier holder's.
    if file.try_lock_shared().is_ok() {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
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
}
