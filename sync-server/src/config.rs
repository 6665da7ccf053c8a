//! `sync-server.toml`: where to listen and which store to use.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `sync-server.toml`. Unknown keys are refused so a typo never silently falls back to a default.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8440`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Folder for the embedded SQLite store and its backups. Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// MongoDB URI; when set the server uses MongoDB instead of the embedded store.
    #[serde(default)]
    pub mongodb_uri: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8440".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

impl Config {
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            reason: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Which store this configuration selects, in words for the start-up log.
    pub fn store_description(&self) -> String {
        match &self.mongodb_uri {
            Some(_) => "MongoDB".to_owned(),
            None => format!("embedded SQLite in {}", self.data_dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_embedded_store() {
        let config = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8440");
        assert_eq!(config.store_description(), "embedded SQLite in data");
    }

    #[test]
    fn typos_are_refused_with_the_file_name() {
        let err = Config::parse("mongo_uri = 'x'", Path::new("c.toml")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("c.toml:") && message.contains("mongo_uri"),
            "{message}"
        );
    }
}
