//! A real `sync-server` process on loopback, for tests that kill it, read its memory or start it
//! from a configuration file, and for benches/login.rs (which includes this file and names the
//! binary to run).

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::PASSWORD;

pub const ADMIN: &str = "process-admin";

/// Where the server keeps its data: a folder, plus a database name on MongoDB; and which
/// `sync-server` binary runs there.
pub struct Place<'a> {
    pub data_dir: &'a Path,
    pub mongo: Option<(String, String)>,
    pub bin: PathBuf,
}

impl<'a> Place<'a> {
    /// The binary this crate built.
    pub fn new(data_dir: &'a Path, mongo: Option<(String, String)>) -> Place<'a> {
        Place {
            data_dir,
            mongo,
            bin: env!("CARGO_BIN_EXE_sync-server").into(),
        }
    }

    pub fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ROLLCALL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROLLCALL_SERVER_DATA_DIR", self.data_dir)
            .env("RUST_LOG", "warn");
        match &self.mongo {
            Some((uri, database)) => cmd
                .env("ROLLCALL_MONGODB_URI", uri)
                .env("ROLLCALL_MONGODB_DATABASE", database),
            None => cmd.env("ROLLCALL_MONGODB_URI", ""),
        };
        cmd
    }

    /// The district admin `ADMIN` with password `PASSWORD`.
    pub fn create_admin(&self) {
        let mut child = self
            .command(free_port())
            .args(["admin", "create", "--username", ADMIN, "--password-stdin"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Starts `serve` and waits until it answers `/healthz`.
    pub async fn serve(&self, http: &reqwest::Client) -> (Child, String) {
        self.serve_with_config(http, "").await
    }

    /// `serve` with `config` as its TOML file (the environment still sets listen and data_dir).
    pub async fn serve_with_config(&self, http: &reqwest::Client, config: &str) -> (Child, String) {
        let port = free_port();
        let path = self.data_dir.join("sync-server.toml");
        std::fs::write(&path, config).unwrap();
        let child = self
            .command(port)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (child, base)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The JSON of a 2xx answer; panics with the body otherwise.
pub async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A session token of `ADMIN`.
pub async fn log_in(http: &reqwest::Client, base: &str) -> String {
    let login = json!({"username": ADMIN, "password": PASSWORD});
    let reply = ok(http
        .post(format!("{base}/v1/auth/login"))
        .json(&login)
        .send()
        .await
        .unwrap())
    .await;
    reply["token"].as_str().unwrap().to_owned()
}

/// A client whose requests come from `ip` (any 127.x.y.z reaches a server on 127.0.0.1), as
/// many people behind their own addresses would.
pub fn client_from(ip: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The status of a login of `username` with `password` through `client` (0: no answer).
pub async fn login_status(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> u16 {
    client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Resident and peak memory of process `pid`, in KiB (`VmRSS`, `VmHWM`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
