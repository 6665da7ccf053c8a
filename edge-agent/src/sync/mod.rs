//! The box's side of sync protocol v1: provisioning, push and pull cycles under a retry budget and
//! a circuit breaker, and the background loop of the long-running agent.
//!
//! Sync runs on its own thread with its own store connection (SQLite WAL: a capture or a teacher's
//! mark never waits for the network, only, at worst, for one short page transaction).

mod agent;
mod breaker;
mod client;
mod cycle;
mod wire;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use agent::{Report, SyncHandle, SyncNudge, spawn};
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

pub fn read_token(data_dir: &Path) -> Result<String, SyncError> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SyncError::NotProvisioned),
        Err(source) => Err(SyncError::Token { path, source }),
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
    let rule = BreakerRule::from_config(config);
    Ok(Status {
        device_id: device.as_ref().map(|d| d.device_id.clone()),
        school_id: device.as_ref().map(|d| d.school_id.clone()),
        server: device.map(|d| d.server),
        breaker: rule.state(&link, now_ms()),
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

    #[test]
    fn no_token_means_not_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_token(dir.path()),
            Err(SyncError::NotProvisioned)
        ));
    }
}
