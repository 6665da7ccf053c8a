//! The dashboard's pages on a demo school (`sync-server demo-data`: 1,000 students x 180 school
//! days, 900,000 marks), served by a real `sync-server serve` process on loopback: each page's
//! p50 and p95 over repeated requests, timed at the client (an upper bound on the server's time:
//! loopback adds well under a millisecond), and the year's attendance CSV with the server's
//! resident memory sampled while it streams.
//!
//! `cargo bench -p sync-server --bench pages [-- --backend embedded|mongo] [-- --students N]
//! [-- --days N]`. MongoDB: `ROLLCALL_TEST_MONGODB_URI` when set, else `.venv/bin/secantusd-py` in
//! memory (made by scripts/setup); the Python server fills slowly, so its default is 60 days.

#[path = "../../benches/host.rs"]
mod host;
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Process, free_port, mongo_uri, wait_for_port};

const PASSWORD: &str = "bench-password-1";
const SCHOOL: &str = "demo";
const RUNS: usize = 40;

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Server {
    base: String,
    process: Process,
    _data: tempfile::TempDir,
    fill_s: f64,
}

fn start(mongo: Option<&str>, students: usize, days: usize) -> Server {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sync-server"));
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let database = format!("pages_{}", uuid::Uuid::new_v4().simple());
    let configure = |cmd: &mut Command| {
        cmd.env("ROLLCALL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROLLCALL_SERVER_DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .env("ROLLCALL_MONGODB_URI", mongo.unwrap_or(""))
            .env("ROLLCALL_MONGODB_DATABASE", &database);
    };
    let started = Instant::now();
    let mut demo = Command::new(&bin);
    demo.args(["demo-data", "--school", SCHOOL])
        .args([
            "--students",
            &students.to_string(),
            "--days",
            &days.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut demo);
    assert!(
        demo.status().expect("demo-data").success(),
        "demo-data failed"
    );
    let fill_s = started.elapsed().as_secs_f64();
    let mut admin = Command::new(&bin);
    admin
        .args([
            "admin",
            "create",
            "--username",
            "bench-admin",
            "--school",
            SCHOOL,
        ])
        .args(["--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    configure(&mut admin);
    let mut child = admin.spawn().expect("admin create");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(PASSWORD.as_bytes())
        .expect("password");
    assert!(child.wait().expect("admin create").success());
    let mut serve = Command::new(&bin);
    serve.arg("serve").stdout(Stdio::null());
    configure(&mut serve);
    let process = Process(serve.spawn().expect("serve"));
    wait_for_port(port, Duration::from_secs(30));
    Server {
        base: format!("http://127.0.0.1:{port}"),
        process,
        _data: data,
        fill_s,
    }
}

/// Signs in through the form; returns the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let csrf_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|p| p.starts_with("rollcall_login_csrf="))
        })
        .expect("login csrf cookie")
        .to_owned();
    let html = login.text().await.expect("login html");
    let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    let csrf = html[at..].split('"').next().expect("csrf").to_owned();
    let answer = http
        .post(format!("{base}/login"))
        .header("cookie", csrf_cookie)
        .form(&[
            ("username", "bench-admin"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("sign in");
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|p| p.starts_with("rollcall_session="))
        })
        .expect("session cookie")
        .to_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(store: &str, server: &Server, days: usize) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = &server.base;
    let cookie = sign_in(&http, base).await;
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let year_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 364))
        .strftime("%Y-%m-%d")
        .to_string();
    let pages = [
        ("Today", "/".to_owned()),
        ("Sections", "/sections".to_owned()),
        ("Section roll", format!("/sections/{SCHOOL}-7A")),
        ("Student (180 days)", format!("/students/{SCHOOL}-s00001")),
        ("Reports (30 days)", "/reports".to_owned()),
        ("Devices", "/devices".to_owned()),
        ("Audit log", "/audit".to_owned()),
        ("Users", "/users".to_owned()),
        ("Settings", "/settings".to_owned()),
        ("Recognition (8 weeks)", "/recognition".to_owned()),
        ("Roster", "/roster".to_owned()),
    ];
    for (name, path) in pages {
        let mut times = Vec::with_capacity(RUNS);
        // The first load is not among the timed ones: it also fills the pages' caches of past
        // days (`web::past`), so it is shown on its own.
        let mut first = 0.0;
        for i in 0..RUNS + 3 {
            let started = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("page");
            assert_eq!(response.status(), 200, "{path}");
            let _ = response.bytes().await.expect("body");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i == 0 {
                first = ms;
            } else if i >= 3 {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        let p95 = percentile(&times, 0.95);
        println!(
            "| {store} | {name} | {first:.1} | {:.1} | {p95:.1} | {:.1} | {} |",
            percentile(&times, 0.5),
            times[times.len() - 1],
            if p95 <= 50.0 { "met" } else { "**missed**" }
        );
    }
    // The year's CSV, streamed: its time and the server's memory while it streams.
    let pid = server.process.0.id();
    let before = rss_mib(pid);
    let started = Instant::now();
    let mut response = http
        .get(format!(
            "{base}/reports/attendance.csv?school={SCHOOL}&from={year_ago}&to={today}"
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("csv");
    assert_eq!(response.status(), 200);
    let (mut bytes, mut rows, mut peak) = (0usize, 0usize, before);
    while let Some(chunk) = response.chunk().await.expect("csv chunk") {
        bytes += chunk.len();
        rows += chunk.iter().filter(|b| **b == b'\n').count();
        peak = peak.max(rss_mib(pid));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| {store} | year CSV ({days} school days): {} rows, {:.0} MiB | | {seconds:.2} s | | server RSS {before:.0} -> peak {peak:.0} MiB | {} |",
        rows.saturating_sub(1),
        bytes as f64 / 1_048_576.0,
        if seconds <= 2.0 { "met" } else { "**missed**" }
    );
}

fn main() {
    // A workspace build gives reqwest edge-agent's `rustls-no-provider`: install one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = arg("--backend");
    let students: usize = arg("--students").map_or(1000, |s| s.parse().expect("--students"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{}",
        host::banner(
            "none (the server links no ML library)",
            "server: tokio, one worker per core; client: one request at a time"
        )
    );
    println!("| store | page | first ms | p50 ms | p95 ms | max ms | target p95 <= 50 ms |");
    println!("|---|---|---|---|---|---|---|");
    if only.as_deref() != Some("mongo") {
        let days: usize = arg("--days").map_or(180, |s| s.parse().expect("--days"));
        let server = start(None, students, days);
        eprintln!("embedded: demo data in {:.1} s", server.fill_s);
        runtime.block_on(measure("embedded SQLite", &server, days));
    }
    if only.as_deref() != Some("embedded") {
        let days: usize = arg("--days").map_or(60, |s| s.parse().expect("--days"));
        let (uri, _mongo) = mongo_uri();
        let server = start(Some(&uri), students, days);
        eprintln!("mongo: demo data in {:.1} s", server.fill_s);
        runtime.block_on(measure(
            &format!("MongoDB wire (SecantusDB), {days} days"),
            &server,
            days,
        ));
    }
}
