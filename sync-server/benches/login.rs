//! Logins under load (issue 13): throughput of right passwords one after another and 16 at a
//! time, and the server's memory while 250 unauthenticated logins arrive at once, each from its
//! own loopback address (so the per-address limit does not turn them away first).
//!
//! `cargo bench -p sync-server --bench login [-- --server PATH]...`: each `--server` is a
//! `sync-server` binary to measure, in the order given, in this one run (an older build for a
//! before/after ratio); without one, the binary this bench was built with.

#[path = "../../benches/host.rs"]
mod host;

// The tests' harness for a real server process: Place, client_from, memory_kib.
#[path = "../tests/common/process.rs"]
#[allow(dead_code)]
mod process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use futures_util::future::join_all;

use process::{ADMIN, Place, client_from, login_status, memory_kib};

/// What `process` logs its admin in with.
const PASSWORD: &str = "correct horse battery";
const SEQUENTIAL: usize = 40;
const PARALLEL: usize = 16;
const PARALLEL_ROUNDS: usize = 5;
const FLOOD: usize = 250;

/// A served binary, killed when dropped.
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

async fn start(bin: &Path, http: &reqwest::Client) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let place = Place {
        bin: bin.to_owned(),
        ..Place::new(dir.path(), None)
    };
    place.create_admin();
    let (child, base) = place.serve(http).await;
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn memory_mib(pid: u32) -> (f64, f64) {
    let (rss_kib, peak_kib) = memory_kib(pid);
    (rss_kib as f64 / 1024.0, peak_kib as f64 / 1024.0)
}

async fn measure(bin: &Path, label: &str) {
    let http = reqwest::Client::new();
    let server = start(bin, &http).await;
    let base = &server.base;
    // Right passwords, one after another.
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        assert_eq!(login_status(&http, base, ADMIN, PASSWORD).await, 200);
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
                .map(|client| login_status(client, base, ADMIN, PASSWORD)),
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
    let statuses = join_all(clients.iter().enumerate().map(|(n, c)| async move {
        login_status(c, base, &format!("user{n}"), "wrong password").await
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
}

/// `path` as given, or from the workspace root: `cargo bench` runs benches in `sync-server/`,
/// while a person names binaries from where they typed the command.
fn server_path(path: &str) -> PathBuf {
    let given = PathBuf::from(path);
    let from_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    match (given.exists(), from_root.exists()) {
        (true, _) => given,
        (false, true) => from_root,
        (false, false) => panic!("--server {path}: no such file"),
    }
}

fn main() {
    let mut servers: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--server" {
            servers.push(server_path(&args.next().expect("--server PATH")));
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
