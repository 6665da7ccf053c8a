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
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub vision: VisionConfig,
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
}

/// `[daemon]`: the box as a service (`edge-agent daemon`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where `/health`, `/metrics`, `/status` and `POST /sync` answer. Loopback: they are for
    /// the box's own screen, its service manager and a local monitoring agent.
    pub listen: String,
    /// Also run the ML service (`[serve]`, as `edge-agent serve` does) in the daemon.
    pub ml_service: bool,
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            listen: "127.0.0.1:8701".into(),
            ml_service: false,
        }
    }
}

/// `[vision]`: where inference runs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VisionConfig {
    /// `cpu` (default), `cuda` or `tensorrt`; a runtime without it falls back to the CPU with a
    /// warning (`vision::runtime::resolve`).
    pub provider: crate::vision::runtime::Provider,
}

/// `[serve]`: the ML service (`edge-agent serve`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on. Loopback by default: the server reaches it through the school's
    /// network only when IT says so.
    pub listen: String,
    /// sha256 (hex) of the API key callers send; the key itself is never stored. Required:
    /// `edge-agent serve` refuses to start without it. `edge-agent hash-key` makes it.
    pub api_key_sha256: Option<String>,
    /// Pipelines working at once, each on its own thread (default: one per two cores).
    pub pipelines: Option<usize>,
    /// Requests waiting for a pipeline before more are refused with 503.
    pub queue: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Galleries sent with `enrol-faces` kept for later calls to name instead of sending them
    /// again (`api::galleries`); 0 keeps none, and every call sends its whole gallery.
    pub kept_galleries: usize,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: "127.0.0.1:8700".into(),
            api_key_sha256: None,
            pipelines: None,
            queue: 16,
            max_body_bytes: 20 * 1024 * 1024,
            kept_galleries: 4,
        }
    }
}

impl ServeConfig {
    fn check(&self) -> Result<(), String> {
        if let Some(hash) = &self.api_key_sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(
                "serve.api_key_sha256 must be 64 hex digits (run `edge-agent hash-key`)".into(),
            );
        }
        if self.pipelines == Some(0) || self.pipelines.is_some_and(|n| n > 64) {
            return Err("serve.pipelines must be between 1 and 64".into());
        }
        if !(1..=10_000).contains(&self.queue) {
            return Err(format!(
                "serve.queue must be between 1 and 10000, got {}",
                self.queue
            ));
        }
        if !(1024..=512 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err("serve.max_body_bytes must be between 1 KiB and 512 MiB".into());
        }
        if self.kept_galleries > 64 {
            return Err("serve.kept_galleries must be between 0 and 64".into());
        }
        Ok(())
    }

    /// Pipelines to load: the setting, else one per two cores (at least one).
    pub fn pipelines(&self) -> usize {
        self.pipelines.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        })
    }
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Config {
        Config {
            recognition: true,
            sync: SyncConfig::default(),
            vision: VisionConfig::default(),
            serve: ServeConfig::default(),
            daemon: DaemonConfig::default(),
        }
    }
}

/// `[sync]`: how the box talks to the server. The defaults are the legacy design's numbers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Seconds between sync cycles of the long-running agent.
    pub interval_s: f64,
    /// Seconds before one HTTP call is abandoned.
    pub timeout_s: f64,
    /// Waits before the retries of a failed call within one cycle (jitter of up to a quarter is
    /// added); their count is the most retries a cycle makes.
    pub retry_delays_ms: Vec<u64>,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_failures: u32,
    /// Seconds an open breaker waits before one probe call.
    pub breaker_cooldown_s: f64,
    /// Events per push (the server takes up to 1000).
    pub push_batch: usize,
    /// Changes per pull page (the server gives up to 1000).
    pub pull_page: usize,
    /// PEM file of the school's own certificate authority: when set, only it is trusted for the
    /// server's certificate.
    pub ca_file: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            interval_s: 30.0,
            timeout_s: 10.0,
            retry_delays_ms: vec![1000, 2000, 4000],
            breaker_failures: 5,
            breaker_cooldown_s: 60.0,
            push_batch: 500,
            pull_page: 500,
            ca_file: None,
        }
    }
}

impl SyncConfig {
    fn check(&self) -> Result<(), String> {
        let seconds = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(())
            } else {
                Err(format!(
                    "sync.{name} must be between 0 and 86400 seconds, got {v}"
                ))
            }
        };
        seconds("interval_s", self.interval_s)?;
        seconds("timeout_s", self.timeout_s)?;
        seconds("breaker_cooldown_s", self.breaker_cooldown_s)?;
        if self.breaker_failures == 0 {
            return Err("sync.breaker_failures must be at least 1".into());
        }
        for (name, v) in [
            ("push_batch", self.push_batch),
            ("pull_page", self.pull_page),
        ] {
            if !(1..=1000).contains(&v) {
                return Err(format!("sync.{name} must be between 1 and 1000, got {v}"));
            }
        }
        if self.retry_delays_ms.iter().any(|&ms| ms > 600_000) {
            return Err("sync.retry_delays_ms: each wait must be at most 600000 ms".into());
        }
        Ok(())
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
            Ok(text) => {
                let invalid = |reason: String| ConfigError::Invalid {
                    path: path.to_owned(),
                    reason,
                };
                let config: Config = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
                config.sync.check().map_err(invalid)?;
                config.serve.check().map_err(invalid)?;
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            }),
        }
    }
}
