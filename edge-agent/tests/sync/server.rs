//! A real `sync-server` process for the box's end-to-end tests, on the embedded store or on the
//! MongoDB-wire server that scripts/test starts, plus the admin calls that set a school up.
//! Shared with benches/sync.rs, which uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN: &str = "district";
pub const PASSWORD: &str = "correct horse battery";
pub const SCHOOL: &str = "o1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Mongo,
}

/// `target/<profile>/sync-server`, built by `cargo test --workspace` before any test runs.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(format!("sync-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: these tests run the real server; build it with `cargo build -p sync-server` (scripts/test's `cargo test --workspace` does)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub port: u16,
    pub base: String,
    data_dir: tempfile::TempDir,
    /// `serve --config`: the `[tls]` section of an HTTPS server.
    config: Option<PathBuf>,
    mongo: Option<(String, String)>,
    child: Option<Child>,
    pub http: reqwest::blocking::Client,
    admin_token: Option<String>,
}

impl Server {
    /// A fresh server with one district admin, listening on a port it keeps across restarts.
    pub fn start(backend: Backend) -> Server {
        Server::start_with(backend, None, "")
    }

    /// `start` with these lines as its configuration file (an `[ml]` section, say).
    pub fn start_configured(backend: Backend, config: &str) -> Server {
        Server::start_with(backend, None, config)
    }

    /// `start` over HTTPS at `https://localhost:PORT` with this certificate and key (PEM); the
    /// admin client trusts `ca_pem` only.
    pub fn start_https(backend: Backend, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Server {
        Server::start_with(backend, Some((cert_pem, key_pem, ca_pem)), "")
    }

    fn start_with(backend: Backend, tls: Option<(&str, &str, &str)>, extra: &str) -> Server {
        let mongo = (backend == Backend::Mongo).then(|| {
            let uri = std::env::var("ROLLCALL_TEST_MONGODB_URI").unwrap_or_else(|_| {
                panic!(
                    "ROLLCALL_TEST_MONGODB_URI is not set: run scripts/test, which starts a MongoDB-wire server"
                )
            });
            (
                uri,
                format!("rollcall_edge_{}", uuid::Uuid::now_v7().simple()),
            )
        });
        let port = free_port();
        edge_agent::sync::install_crypto_provider();
        let data_dir = tempfile::tempdir().unwrap();
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        let (base, config) = match tls {
            None => (format!("http://127.0.0.1:{port}"), None),
            Some((cert_pem, key_pem, ca_pem)) => {
                let dir = data_dir.path();
                std::fs::write(dir.join("server.pem"), cert_pem).unwrap();
                std::fs::write(dir.join("server.key"), key_pem).unwrap();
                let config = dir.join("sync-server.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
                        dir.join("server.pem"),
                        dir.join("server.key")
                    ),
                )
                .unwrap();
                http = http
                    .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
                (format!("https://localhost:{port}"), Some(config))
            }
        };
        let config = match (config, extra.is_empty()) {
            (config, true) => config,
            (None, false) => {
                let path = data_dir.path().join("sync-server.toml");
                std::fs::write(&path, extra).unwrap();
                Some(path)
            }
            (Some(path), false) => {
                let mut text = std::fs::read_to_string(&path).unwrap();
                text.insert_str(0, &format!("{extra}\n"));
                std::fs::write(&path, text).unwrap();
                Some(path)
            }
        };
        let mut server = Server {
            port,
            base,
            data_dir,
            config,
            mongo,
            child: None,
            http: http.build().unwrap(),
            admin_token: None,
        };
        let mut create = server
            .command()
            .args(["admin", "create", "--username", ADMIN, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        create
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        assert!(create.wait().unwrap().success(), "admin create failed");
        server.resume();
        server
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(server_binary());
        cmd.env("ROLLCALL_SERVER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("ROLLCALL_SERVER_DATA_DIR", self.data_dir.path())
            .env("RUST_LOG", "info");
        match &self.mongo {
            Some((uri, database)) => cmd
                .env("ROLLCALL_MONGODB_URI", uri)
                .env("ROLLCALL_MONGODB_DATABASE", database),
            None => cmd.env("ROLLCALL_MONGODB_URI", ""),
        };
        cmd
    }

    /// Starts `serve` (again) and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        // Every run appends to one log: the tests read request ids from it, and a failing run
        // leaves it for reading.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut serve = self.command();
        serve.arg("serve");
        if let Some(config) = &self.config {
            serve.arg("--config").arg(config);
        }
        self.child = Some(serve.stdout(Stdio::null()).stderr(log).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send()
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POSTs a ZIP of photos to central enrolment as `name`; the job it answers with (202).
    pub fn upload_zip(&self, name: &str, zip: Vec<u8>) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/v1/schools/{SCHOOL}/photos?name={name}",
                self.base
            ))
            .bearer_auth(self.token())
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        response.json().unwrap()
    }

    /// Polls an enrolment job until nothing of it waits.
    pub fn enrolment_done(&self, job: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let path = format!("/v1/schools/{SCHOOL}/enrolment-jobs/{job}");
            let job = self.call(reqwest::Method::GET, &path, None);
            if job["waiting"] == 0 {
                return job;
            }
            assert!(Instant::now() < deadline, "still waiting: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's data folder (its store, its enrolment jobs).
    pub fn data_path(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The admin's session token.
    pub fn token(&self) -> &str {
        self.admin_token.as_deref().expect("log_in first")
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("server.log")
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub fn log_in(&mut self) {
        let reply = self.call(
            reqwest::Method::POST,
            "/v1/auth/login",
            Some(json!({"username": ADMIN, "password": PASSWORD})),
        );
        self.admin_token = Some(reply["token"].as_str().unwrap().to_owned());
    }

    /// The school `o1` with the OneRoster export in `roster_dir`, every student consenting.
    pub fn set_up_school(&mut self, roster_dir: &std::path::Path, students: &[String]) {
        self.log_in();
        self.call(
            reqwest::Method::POST,
            "/v1/schools",
            Some(json!({"id": SCHOOL, "name": "Riverside Primary"})),
        );
        let mut form = reqwest::blocking::multipart::Form::new();
        for entry in std::fs::read_dir(roster_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            form = form.part(
                name.clone(),
                reqwest::blocking::multipart::Part::text(text).file_name(name),
            );
        }
        let response = self
            .http
            .post(format!("{}/v1/schools/{SCHOOL}/roster", self.base))
            .bearer_auth(self.admin_token.as_ref().unwrap())
            .multipart(form)
            .send()
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "roster: {status}: {}",
            response.text().unwrap()
        );
        for student in students {
            self.set_consent(student, "granted");
        }
    }

    pub fn set_consent(&self, student: &str, consent: &str) {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/schools/{SCHOOL}/students/{student}/consent"),
            Some(json!({"consent": consent, "by": "guardian's form"})),
        );
    }

    pub fn provisioning_code(&self, device_name: &str) -> String {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/schools/{SCHOOL}/provisioning-codes"),
            Some(json!({"device_name": device_name})),
        )["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Today's attendance rows of the section.
    pub fn attendance(&self, section: &str) -> Vec<Value> {
        let reply = self.call(
            reqwest::Method::GET,
            &format!("/v1/schools/{SCHOOL}/attendance?section={section}"),
            None,
        );
        match reply {
            Value::Array(rows) => rows,
            other => other["rows"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| panic!("attendance answer: {other}")),
        }
    }

    /// The embedded store's file, read-only, beside the running server (WAL lets both be).
    fn read_store(&self) -> rusqlite::Connection {
        assert!(self.mongo.is_none(), "reads the embedded store only");
        rusqlite::Connection::open_with_flags(
            self.data_dir.path().join("rollcall-server.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// When the server recorded session `id` as closed, read from the embedded store's file (the
    /// JSON API does not show it); `None` while it is open.
    pub fn session_closed_at(&self, id: &str) -> Option<i64> {
        self.read_store()
            .query_row("SELECT closed_at FROM sessions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// How far the clock of the box named `name` was from the server's at its last push's
    /// report, read from the embedded store's file (the devices page shows it in words).
    pub fn device_clock_offset(&self, name: &str) -> Option<i64> {
        self.read_store()
            .query_row(
                "SELECT clock_offset_ms FROM devices WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Events the store holds (applied once each), from `/metrics`.
    pub fn events_applied(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let applied = crate::common::metric(&text, "rollcall_store_events_applied")
            .unwrap_or_else(|| panic!("no rollcall_store_events_applied in /metrics:\n{text}"));
        applied as u64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
