//! The box's configuration file, `<data dir>/edge-agent.toml`. Strict: an unknown key is an error.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration file's name inside the data folder.
pub const CONFIG_FILE: &str = "edge-agent.toml";
/// The database's file name inside the data folder.
pub const DATABASE_FILE: &str = "rollcall.sqlite";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Face recognition on this box. Some jurisdictions forbid it in schools: when `false`, capture
    /// and enrolment refuse and manual roll call works as usual. Default `true`.
    #[serde(default = "default_true")]
    pub recognition: bool,
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Config {
        Config { recognition: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Reads the file if it exists; no file means the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            }),
        }
    }
}
