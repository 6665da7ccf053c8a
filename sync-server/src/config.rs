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
    /// MongoDB database name. Default `rollcall`.
    #[serde(default = "default_mongodb_database")]
    pub mongodb_database: String,
    /// Largest JSON request body, in bytes. Default 4 MiB (a full push of 1000 events with
    /// templates is about 3 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest OneRoster upload, all files together, in bytes. Default 32 MiB.
    #[serde(default = "default_max_roster_bytes")]
    pub max_roster_bytes: usize,
    /// How long a login lasts, in minutes. Default 720 (12 h).
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u32,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection is kept. Default 20.
    #[serde(default = "default_header_timeout_seconds")]
    pub header_timeout_seconds: u32,
    /// Longest pause, in seconds, while a client sends a request body. Default 30.
    #[serde(default = "default_body_timeout_seconds")]
    pub body_timeout_seconds: u32,
    /// How far ahead of the server's clock a pushed event's times may be, in hours, before the
    /// event is refused. Default 24. (Times in the past are always fine: boxes stay offline.)
    #[serde(default = "default_max_clock_ahead_hours")]
    pub max_clock_ahead_hours: u32,
    /// Password checks (argon2, 19 MiB each) run at once; more wait in a short queue and the
    /// rest are answered 503 with `Retry-After`. Default: the number of CPUs, 2 to 4 (each
    /// holds 19 MiB for good).
    #[serde(default)]
    pub password_workers: Option<usize>,
    /// Where `/metrics` is served. Default: on `listen`, beside the API. Set to another address
    /// (`127.0.0.1:9440`) to serve it only there.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Send notices (issue 16) through this SMTP server. Without it none are planned or sent.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Make templates of uploaded photos through this ML service (`edge-agent serve`, issue 17).
    /// Without it students are enrolled only in front of a box.
    #[serde(default)]
    pub ml: Option<MlConfig>,
}

/// `[ml]`: the ML service central enrolment calls, how patiently, and the job queue on disk.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MlConfig {
    /// `http://127.0.0.1:8700`.
    pub url: String,
    /// The service's key (it keeps only its sha256). Better given as `ROLLCALL_ML_API_KEY`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Seconds one call may take before it counts as a failure. Default 30.
    #[serde(default = "default_ml_timeout_s")]
    pub timeout_s: f64,
    /// Failed calls in a row that open the breaker. Default 5.
    #[serde(default = "default_ml_breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds the breaker stays open before one probe call. Default 60.
    #[serde(default = "default_ml_breaker_reset_s")]
    pub breaker_reset_s: f64,
    /// Waits before the retries of a failed call. Default 1, 2 and 4 s.
    #[serde(default = "default_ml_retry_delays_ms")]
    pub retry_delays_ms: Vec<u64>,
    /// Photos waiting on disk, all jobs together; an upload that would pass it is refused.
    /// Default 5,000.
    #[serde(default = "default_ml_max_waiting_photos")]
    pub max_waiting_photos: usize,
    /// Hours a photo may wait for the service before it is deleted unprocessed. Default 24.
    #[serde(default = "default_ml_photo_max_age_hours")]
    pub photo_max_age_hours: u32,
    /// Largest upload (a ZIP of photos), in bytes. Default 256 MiB.
    #[serde(default = "default_ml_max_upload_bytes")]
    pub max_upload_bytes: usize,
    /// Largest photo, in bytes. Default 10 MiB.
    #[serde(default = "default_ml_max_photo_bytes")]
    pub max_photo_bytes: usize,
    /// Most templates one call to the service carries. A larger gallery goes first in calls
    /// without photos, each this many (~2.8 KB of JSON a template), so that no call passes the
    /// service's `max_body_bytes`. Default 2,000 (~5.6 MB).
    #[serde(default = "default_ml_gallery_part")]
    pub gallery_part: usize,
}

fn default_ml_gallery_part() -> usize {
    2_000
}

fn default_ml_timeout_s() -> f64 {
    30.0
}

fn default_ml_breaker_failures() -> u32 {
    5
}

fn default_ml_breaker_reset_s() -> f64 {
    60.0
}

fn default_ml_retry_delays_ms() -> Vec<u64> {
    vec![1000, 2000, 4000]
}

fn default_ml_max_waiting_photos() -> usize {
    5000
}

fn default_ml_photo_max_age_hours() -> u32 {
    24
}

fn default_ml_max_upload_bytes() -> usize {
    256 * 1024 * 1024
}

fn default_ml_max_photo_bytes() -> usize {
    10 * 1024 * 1024
}

/// `[smtp]`: the school's or district's mail relay, and what notices need to name the server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default 587 (submission with STARTTLS).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` (implicit, port 465) or `none` (a relay on this machine only).
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// Better given as `ROLLCALL_SMTP_PASSWORD` than written in the file.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, e.g. `Hill School <attendance@hill.example.org>`.
    pub from: String,
    /// The dashboard's address as guardians reach it, for unsubscribe links
    /// (`https://rollcall.hill.example.org`).
    pub public_url: String,
    /// Seconds between looks for notices due. Default 60.
    #[serde(default = "default_plan_every_seconds")]
    pub plan_every_seconds: u32,
    /// Seconds one SMTP exchange may take before it counts as a transient failure. Default 30.
    #[serde(default = "default_smtp_timeout_seconds")]
    pub timeout_seconds: u32,
    /// Seconds a sender holds the notices it claimed; one whose sender died is sent again after
    /// it. A notice is tried only while more than the SMTP timeout of its lease is left, so it
    /// must be longer than `timeout_seconds` by 10 or more. Default 120.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// Most messages sent per second. Default 50: a district's 10,000 in under four minutes,
    /// while the pushes of the boxes keep their latency (unpaced, sending took a core of a
    /// two-core server and multiplied the push p99 by nine; PERFORMANCE.md, issue 16). Many relays
    /// limit senders too.
    #[serde(default = "default_max_per_second")]
    pub max_per_second: u32,
    /// Messages sent at once. Default 1: a process killed between the relay's accept and the
    /// commit sends each message in flight twice (same Message-ID), so N at once may duplicate N.
    #[serde(default = "default_smtp_concurrency")]
    pub concurrency: usize,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_plan_every_seconds() -> u32 {
    60
}

fn default_smtp_timeout_seconds() -> u32 {
    30
}

fn default_lease_seconds() -> u32 {
    120
}

fn default_max_per_second() -> u32 {
    50
}

fn default_smtp_concurrency() -> usize {
    1
}

/// `[tls]`: PEM files, as a school's CA or an ACME client writes them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Environment variables that override the file, for containers and systemd units.
pub const ENV_LISTEN: &str = "ROLLCALL_SERVER_LISTEN";
pub const ENV_DATA_DIR: &str = "ROLLCALL_SERVER_DATA_DIR";
pub const ENV_MONGODB_URI: &str = "ROLLCALL_MONGODB_URI";
pub const ENV_MONGODB_DATABASE: &str = "ROLLCALL_MONGODB_DATABASE";
pub const ENV_SMTP_PASSWORD: &str = "ROLLCALL_SMTP_PASSWORD";
pub const ENV_ML_API_KEY: &str = "ROLLCALL_ML_API_KEY";

fn default_listen() -> String {
    "127.0.0.1:8440".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_mongodb_database() -> String {
    "rollcall".to_owned()
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_roster_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_session_minutes() -> u32 {
    12 * 60
}

fn default_header_timeout_seconds() -> u32 {
    20
}

fn default_body_timeout_seconds() -> u32 {
    30
}

fn default_max_clock_ahead_hours() -> u32 {
    24
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
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
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

    /// The defaults, as if from an empty file.
    pub fn defaults() -> Config {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            mongodb_uri: None,
            mongodb_database: default_mongodb_database(),
            max_body_bytes: default_max_body_bytes(),
            max_roster_bytes: default_max_roster_bytes(),
            session_minutes: default_session_minutes(),
            header_timeout_seconds: default_header_timeout_seconds(),
            body_timeout_seconds: default_body_timeout_seconds(),
            max_clock_ahead_hours: default_max_clock_ahead_hours(),
            password_workers: None,
            metrics_listen: None,
            metrics_token: None,
            tls: None,
            smtp: None,
            ml: None,
        }
    }

    /// The file when one is given, else the defaults; then the environment's overrides
    /// (`ROLLCALL_SERVER_LISTEN`, ...), then the checks.
    pub fn load_with_env(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::defaults(),
        };
        let config = config.with_env(|name| std::env::var(name).ok());
        config.check(&path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string()))?;
        Ok(config)
    }

    /// Applies the overrides that `lookup` (the environment, in production) finds. An empty
    /// `ROLLCALL_MONGODB_URI` means "no MongoDB", so a unit can switch back to the embedded store.
    pub fn with_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Config {
        if let Some(listen) = lookup(ENV_LISTEN) {
            self.listen = listen;
        }
        if let Some(data_dir) = lookup(ENV_DATA_DIR) {
            self.data_dir = PathBuf::from(data_dir);
        }
        if let Some(uri) = lookup(ENV_MONGODB_URI) {
            self.mongodb_uri = Some(uri).filter(|uri| !uri.trim().is_empty());
        }
        if let Some(database) = lookup(ENV_MONGODB_DATABASE) {
            self.mongodb_database = database;
        }
        if let (Some(smtp), Some(password)) = (&mut self.smtp, lookup(ENV_SMTP_PASSWORD)) {
            smtp.password = Some(password);
        }
        if let (Some(ml), Some(key)) = (&mut self.ml, lookup(ENV_ML_API_KEY)) {
            ml.api_key = Some(key);
        }
        self
    }

    /// Cross-field checks, with messages that say what to change.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |reason: String| {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                reason,
            })
        };
        if !is_host_port(&self.listen) {
            return invalid(format!(
                "listen \"{}\" is not host:port like 127.0.0.1:8440",
                self.listen
            ));
        }
        if self.mongodb_uri.is_some() && self.mongodb_database.trim().is_empty() {
            return invalid(
                "mongodb_database is empty; name the database (default rollcall)".to_owned(),
            );
        }
        if self.max_body_bytes < 64 * 1024 {
            return invalid(
                "max_body_bytes is under 64 KiB; a push of templates needs more".to_owned(),
            );
        }
        if self.max_roster_bytes < self.max_body_bytes {
            return invalid("max_roster_bytes is smaller than max_body_bytes".to_owned());
        }
        if self.session_minutes == 0 {
            return invalid("session_minutes is 0; logins would expire at once".to_owned());
        }
        if self.header_timeout_seconds == 0 || self.body_timeout_seconds == 0 {
            return invalid(
                "header_timeout_seconds and body_timeout_seconds must be at least 1".to_owned(),
            );
        }
        if self.password_workers == Some(0) {
            return invalid("password_workers is 0; nobody could log in".to_owned());
        }
        if let Some(metrics_listen) = &self.metrics_listen
            && !is_host_port(metrics_listen)
        {
            return invalid(format!(
                "metrics_listen \"{metrics_listen}\" is not host:port like 127.0.0.1:9440"
            ));
        }
        if self.metrics_listen.as_deref() == Some(self.listen.as_str()) {
            return invalid(
                "metrics_listen is the same address as listen; leave it out to serve /metrics there"
                    .to_owned(),
            );
        }
        if self
            .metrics_token
            .as_deref()
            .is_some_and(|token| token.trim().len() < 16)
        {
            return invalid(
                "metrics_token is shorter than 16 characters; use a long random one".to_owned(),
            );
        }
        if let Some(smtp) = &self.smtp {
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return invalid(format!(
                    "smtp.from \"{}\" is not a sender like Hill School <attendance@hill.example.org>",
                    smtp.from
                ));
            }
            if !(smtp.public_url.starts_with("https://") || smtp.public_url.starts_with("http://"))
            {
                return invalid(format!(
                    "smtp.public_url \"{}\" is not an http(s) address guardians can open",
                    smtp.public_url
                ));
            }
            if smtp.timeout_seconds == 0
                || smtp.max_per_second == 0
                || smtp.lease_seconds < smtp.timeout_seconds.saturating_add(10)
                || smtp.concurrency == 0
                || smtp.plan_every_seconds == 0
            {
                return invalid(
                    "smtp: timeout_seconds, max_per_second, concurrency and plan_every_seconds must be at least 1, and lease_seconds at least timeout_seconds + 10"
                        .to_owned(),
                );
            }
        }
        if let Some(ml) = &self.ml {
            if !(ml.url.starts_with("http://") || ml.url.starts_with("https://")) {
                return invalid(format!(
                    "ml.url \"{}\" is not an http(s) address like http://127.0.0.1:8700",
                    ml.url
                ));
            }
            if ml.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
                return invalid(format!(
                    "ml: no api_key; set it, or {ENV_ML_API_KEY}, to the key whose sha256 the service has"
                ));
            }
            if !(ml.timeout_s > 0.0 && ml.breaker_reset_s >= 0.0)
                || ml.breaker_failures == 0
                || ml.max_waiting_photos == 0
                || ml.photo_max_age_hours == 0
                || ml.max_photo_bytes == 0
                || ml.gallery_part == 0
                || ml.max_upload_bytes < ml.max_photo_bytes
            {
                return invalid(
                    "ml: timeout_s, breaker_failures, max_waiting_photos, photo_max_age_hours, max_photo_bytes and gallery_part must be above 0, and max_upload_bytes at least max_photo_bytes"
                        .to_owned(),
                );
            }
        }
        Ok(())
    }

    /// The folder of central enrolment's waiting photos.
    pub fn enrol_jobs_dir(&self) -> PathBuf {
        self.data_dir.join("enrol-jobs")
    }

    /// The password workers to run: as configured, else one per CPU, 2 to 4: more would not
    /// log anyone in faster on a box whose cores also serve the API, and each holds 19 MiB.
    pub fn password_workers(&self) -> usize {
        self.password_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
        })
    }

    /// The embedded store's file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("rollcall-server.sqlite")
    }

    /// Which store this configuration selects, in words for the start-up log.
    pub fn store_description(&self) -> String {
        match &self.mongodb_uri {
            Some(_) => format!("MongoDB database {}", self.mongodb_database),
            None => format!("embedded SQLite in {}", self.data_dir.display()),
        }
    }
}

/// `host:port`; a host name (`localhost:8440`) is fine too: it is resolved when the server binds.
fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_embedded_store() {
        let config = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(config, Config::defaults());
        assert_eq!(config.listen, "127.0.0.1:8440");
        assert_eq!(config.store_description(), "embedded SQLite in data");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let config = Config::parse(
            "listen = '0.0.0.0:1'\nmongodb_uri = 'mongodb://x'",
            Path::new("c.toml"),
        )
        .unwrap()
        .with_env(|name| match name {
            ENV_LISTEN => Some("127.0.0.1:9".to_owned()),
            ENV_DATA_DIR => Some("/var/lib/rollcall".to_owned()),
            ENV_MONGODB_URI => Some(String::new()),
            _ => None,
        });
        assert_eq!(config.listen, "127.0.0.1:9");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/rollcall"));
        assert_eq!(config.mongodb_uri, None);
        assert_eq!(
            config.sqlite_path(),
            PathBuf::from("/var/lib/rollcall/rollcall-server.sqlite")
        );
        assert!(config.check("c.toml").is_ok());
    }

    #[test]
    fn a_bad_listen_address_is_refused() {
        let config = Config::defaults()
            .with_env(|name| (name == ENV_LISTEN).then(|| "localhost".to_owned()));
        let message = config.check("defaults").unwrap_err().to_string();
        assert!(message.contains("listen \"localhost\""), "{message}");
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
