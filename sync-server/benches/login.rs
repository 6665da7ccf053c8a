//! Logins under load (issue 13): throughput of right passwords one after another and 16 at a
//! time, and the server's memory while 250 unauthenticated logins arrive at once, each from its
//! own loopback address (so the per-address limit does not turn them away first).
//!
//! `cargo bench -p sync-server --bench login [-- --server PATH]...`: each `--server` is a
//! `sync-server` binary to measure, in the order given, in this one run (an older build for a
//! before/after ratio); without one, the binary this bench was built with.

#[path = "../../benches/host.rs"]
mod host;

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

const ADMIN: &str = "bench-admin";
const PASSWORD: &str = "correct horse battery";
const SEQUENTIAL: usize = 40;
const PARALLEL: usize = 16;
const PARALLEL_ROUNDS: usize = 5;
const FLOOD: usize = 250;

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(bin: &Path, http: &reqwest::Client) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let command = |port: u16| {
        let mut cmd = Command::new(bin);
        cmd.env("ROLLCALL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROLLCALL_SERVER_DATA_DIR", dir.path())
            .env("ROLLCALL_MONGODB_URI", "")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null());
        cmd
    };
    let mut admin = command(free_port())
        .args(["admin", "create", "--username", ADMIN, "--password-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sync-server admin create");
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(admin.wait().unwrap().success());
    let port = free_port();
    let child = command(port)
        .arg("serve")
        .spawn()
        .expect("sync-server serve");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login(client: &reqwest::Client, base: &str, username: &str, password: &str) -> u16 {
    client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn measure(bin: &Path, label: &str) -> f64 {
    let http = reqwest::Client::new();
    let server = start(bin, &http).await;
    let base = &server.base;
    // Right passwords, one after another.
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        assert_eq!(login(&http, base, ADMIN, PASSWORD).await, 200);
    }
    let sequential = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();
    // Right passwords, 16 at a time, as 16 people would: each from their own address (a login
    // counts against its address while it is being checked).
    let people: Vec<reqwest::Client> = (0..PARALLEL)
        .map(|n| client_from(&format!("127.0.3.{}", n + 1)))
        .collect();
    let started = Instant::now();
    for _ in 0..PARALLEL_ROUNDS {
        let statuses = join_all(
            people
                .iter()
                .map(|client| login(client, base, ADMIN, PASSWORD)),
        )
        .await;
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 503),
            "{statuses:?}"
        );
    }
    let parallel = (PARALLEL * PARALLEL_ROUNDS) as f64 / started.elapsed().as_secs_f64();
    // The flood: unknown users, one address each.
    let pid = server.child.id();
    let (before, _) = memory_mib(pid);
    let clients: Vec<reqwest::Client> = (0..FLOOD)
        .map(|n| client_from(&format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)))
        .collect();
    let started = Instant::now();
    let statuses =
        join_all(clients.iter().enumerate().map(|(n, c)| async move {
            login(c, base, &format!("user{n}"), "wrong password").await
        }))
        .await;
    let flood_s = started.elapsed().as_secs_f64();
    let (after, peak) = memory_mib(pid);
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let turned_away = statuses.iter().filter(|&&s| s == 503 || s == 429).count();
    let other = FLOOD - checked - turned_away;
    println!(
        "| {label} | {sequential:.1} | {parallel:.1} | {flood_s:.2} | {checked} / {turned_away} / {other} | {before:.0} | {peak:.0} | {after:.0} | {:+.0} |",
        peak - before
    );
    peak - before
}

fn main() {
    let mut servers: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--server" {
            servers.push(args.next().expect("--server PATH").into());
        }
    }
    if servers.is_empty() {
        servers.push(env!("CARGO_BIN_EXE_sync-server").into());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{}",
        host::banner(
            "none (argon2id, 19 MiB, 2 passes: the crate's defaults)",
            "server: tokio, one worker per core, password workers: one per CPU, 2 to 4 (the default); clients on the same cores"
        )
    );
    println!(
        "| server | logins/s one at a time | logins/s {PARALLEL} at a time | {FLOOD} at once: s | checked / turned away / other | RSS before MiB | peak MiB | after MiB | growth MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for bin in &servers {
        let label = bin.display().to_string();
        runtime.block_on(measure(bin, &label));
    }
}
