//! The box's side of sync protocol v1: provisioning, push and pull cycles under a retry budget and
//! a circuit breaker, and the background loop of the long-running agent.
//!
//! Sync runs on its own thread with its own store connection (SQLite WAL: a capture or a teacher's
//! mark never waits for the network, only, at worst, for one short page transaction).

mod agent;
mod breaker;
mod client;
pub mod clock;
mod cycle;
pub mod lock;
mod wire;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use agent::{Report, SyncHandle, SyncNudge, spawn, spawn_as};
pub use breaker::{Breaker, BreakerRule};
pub use client::{CallError, Client, install_crypto_provider};
pub use cycle::{CycleReport, Syncer};
pub use wire::{Outgoing, to_wire};

use crate::config::SyncConfig;
use crate::store::{
    DeviceIdentity, OutboxCounts, RejectedEvent, Store, StoreError, SyncState, now_ms,
};

/// The device token's file in the data folder; readable by the agent's user only.
pub const TOKEN_FILE: &str = "device-token";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "this box is not provisioned: run `edge-agent provision --server URL --code CODE` with a code from the school's admin"
    )]
    NotProvisioned,
    #[error("server address {0:?} must start with http:// or https://")]
    BadServer(String),
    #[error("school CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up HTTP: {0}")]
    Http(String),
    #[error("device token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The token file holds something no server ever issued (a disk error, an editor, a copy
    /// gone wrong). Found before any call, so it is never mistaken for an unreachable server.
    #[error(
        "device token file {path} is corrupt ({problem}): provision this box again with `edge-agent provision --server URL --code CODE` and a new code from the school's admin"
    )]
    CorruptToken { path: PathBuf, problem: String },
    #[error("provisioning failed: {0}")]
    Provision(CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the token so that only the owner can read it: created 0600 under a temporary name, then
/// renamed over the old one, so a crash leaves the old token or the new one, never half of one.
pub fn write_token(data_dir: &Path, token: &str) -> Result<(), SyncError> {
    let path = data_dir.join(TOKEN_FILE);
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    let fail = |source| SyncError::Token {
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok(())
}

/// The token in the data folder, checked to be one a server could have issued: surrounding
/// whitespace (a newline added by hand) is dropped, anything else wrong is `CorruptToken`.
pub fn read_token(data_dir: &Path) -> Result<String, SyncError> {
    let path = data_dir.join(TOKEN_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SyncError::NotProvisioned);
        }
        Err(source) => return Err(SyncError::Token { path, source }),
    };
    match token_problem(&bytes) {
        None => Ok(String::from_utf8_lossy(&bytes).trim().to_owned()),
        Some(problem) => Err(SyncError::CorruptToken { path, problem }),
    }
}

/// What makes `bytes` no bearer token, if anything. Servers issue base64url; any HTTP bearer
/// token (RFC 6750's token68: letters, digits and `- . _ ~ + /`, then `=` padding) is accepted,
/// so that a server issuing another kind still works. A value outside it would not even make a
/// valid header, which reqwest reported as a failed call: "server unreachable".
fn token_problem(bytes: &[u8]) -> Option<String> {
    const MAX_TOKEN_BYTES: usize = 1024;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some("it is not text".to_owned());
    };
    let token = text.trim();
    if token.is_empty() {
        return Some("it is empty".to_owned());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Some(format!("it is {} bytes long", token.len()));
    }
    let body = token.trim_end_matches('=');
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/');
    match token.chars().find(|&c| c.is_whitespace()) {
        Some(_) => Some("it has whitespace inside".to_owned()),
        None => body
            .chars()
            .find(|&c| !is_token_char(c))
            .map(|c| format!("it contains {c:?}")),
    }
}

/// Trades `code` for a device identity and token, stores both. The token is written before the
/// identity: a crash in between leaves a box that is simply provisioned again.
pub fn provision(
    store: &mut Store,
    data_dir: &Path,
    server: &str,
    code: &str,
    name: Option<&str>,
    config: &SyncConfig,
) -> Result<DeviceIdentity, SyncError> {
    let client = Client::new(server, None, config)?;
    let answer = client.provision(code, name).map_err(SyncError::Provision)?;
    if let Some(current) = store.device()?
        && current.school_id != answer.school_id
    {
        return Err(StoreError::OtherSchool {
            current: current.school_id,
            new: answer.school_id,
        }
        .into());
    }
    write_token(data_dir, &answer.token)?;
    let device = DeviceIdentity {
        device_id: answer.device_id,
        school_id: answer.school_id,
        server: client.server().to_owned(),
        provisioned_at: now_ms(),
    };
    store.set_device(&device)?;
    Ok(device)
}

/// A syncer for the box whose data folder is `data_dir`, on its own store connection.
pub fn syncer(data_dir: &Path, store: Store, config: &SyncConfig) -> Result<Syncer, SyncError> {
    let device = store.device()?.ok_or(SyncError::NotProvisioned)?;
    let token = read_token(data_dir)?;
    let client = Client::new(&device.server, Some(token), config)?;
    Ok(Syncer::new(store, client, device, config.clone()))
}

/// The name an enum of the protocol has on the wire (`unknown_student`, `token_revoked`, ...).
fn wire_name(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Everything `edge-agent status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub device_id: Option<String>,
    pub school_id: Option<String>,
    pub server: Option<String>,
    pub link: SyncState,
    pub breaker: Breaker,
    pub outbox: OutboxCounts,
    pub rejected: Vec<RejectedEvent>,
    pub cursor: Option<String>,
    /// Templates per embedding space: only those in `running_space` are compared with faces.
    pub templates_by_space: Vec<(String, usize)>,
    /// The space of this build's embedder.
    pub running_space: String,
}

pub fn status(store: &Store, config: &SyncConfig) -> Result<Status, SyncError> {
    let device = store.device()?;
    let link = store.sync_state()?;
    let rule = breaker::rule_of(config);
    Ok(Status {
        device_id: device.as_ref().map(|d| d.device_id.clone()),
        school_id: device.as_ref().map(|d| d.school_id.clone()),
        server: device.map(|d| d.server),
        breaker: rule.state(&link.breaker, now_ms()),
        link,
        outbox: store.outbox_counts()?,
        rejected: store.rejected_events()?,
        cursor: store.cursor()?,
        templates_by_space: store.templates_by_space()?,
        running_space: crate::vision::Manifest::builtin()
            .embedder_space()
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_token(dir.path(), "secret-1").unwrap();
        write_token(dir.path(), "secret-2").unwrap();
        let meta = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(read_token(dir.path()).unwrap(), "secret-2");
        assert!(!dir.path().join("device-token.tmp").exists());
    }

    /// Issue 13: a corrupt token file was reported as "server unreachable" and counted against
    /// the breaker.
    #[test]
    fn a_corrupt_token_says_so_and_what_to_do_before_any_call() {
        let dir = tempfile::tempdir().unwrap();
        write_token(dir.path(), "Ab-_9xyz\n").unwrap();
        assert_eq!(read_token(dir.path()).unwrap(), "Ab-_9xyz");
        for (content, problem) in [
            (&b""[..], "it is empty"),
            (b" \n", "it is empty"),
            (b"\xff\xfe\x00token", "it is not text"),
            (b"abc def", "it has whitespace inside"),
            (b"abc\ndef", "it has whitespace inside"),
            (b"abc\"def", "it contains '\"'"),
            (b"t\xc3\xa9", "it contains '\u{e9}'"),
        ] {
            std::fs::write(dir.path().join(TOKEN_FILE), content).unwrap();
            let error = read_token(dir.path()).unwrap_err();
            let SyncError::CorruptToken {
                path,
                problem: found,
            } = &error
            else {
                panic!("{content:?}: {error}");
            };
            assert_eq!(found, problem, "{content:?}");
            assert!(path.ends_with(TOKEN_FILE));
            let message = error.to_string();
            assert!(
                message.contains("device-token") && message.contains("edge-agent provision"),
                "{message}"
            );
        }

        // A box with such a file gets no syncer, so no call fails and the breaker counts nothing.
        let mut store = Store::open(&dir.path().join("rollcall.sqlite")).unwrap();
        store
            .set_device(&DeviceIdentity {
                device_id: "d1".into(),
                school_id: "north".into(),
                server: "http://127.0.0.1:9".into(),
                provisioned_at: 0,
            })
            .unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "abc def").unwrap();
        let config = SyncConfig::default();
        let store = Store::open(&dir.path().join("rollcall.sqlite")).unwrap();
        let error = syncer(dir.path(), store, &config).err().unwrap();
        assert!(matches!(error, SyncError::CorruptToken { .. }), "{error}");
        let store = Store::open(&dir.path().join("rollcall.sqlite")).unwrap();
        assert_eq!(store.sync_state().unwrap().breaker.consecutive_failures, 0);
    }

    #[test]
    fn no_token_means_not_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_token(dir.path()),
            Err(SyncError::NotProvisioned)
        ));
    }
}
