//! Sync benchmark: bytes on the wire per mark and per template; how long a box takes to catch up
//! after an outage (10,000 events pushed, 10,000 changes pulled) against a real `sync-server` on
//! loopback (embedded store); and what a sync in flight costs a capture running beside it.
//!
//! `cargo build --release -p sync-server && cargo bench -p edge-agent --bench sync [-- --quick]`.
//! Times are from this one process and machine: compare rows with each other.

#[path = "../tests/common/mod.rs"]
mod common;
// The banner (CPU, runtime, threads) that every benchmark table starts with.
#[path = "common/mod.rs"]
mod bench_common;
#[path = "../tests/sync/fixtures.rs"]
mod fixtures;
#[path = "../tests/sync/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_agent::attendance::capture::capture;
use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::enrolment::{EnrolOptions, enrol};
use edge_agent::store::Store;
use edge_agent::sync::{Outgoing, syncer, to_wire};
use shared_proto::PROTOCOL_VERSION;
use shared_proto::sync::PushRequest;

use fixtures::{Room, SECTION, SYNTHETIC_MODEL as MODEL, add_synthetic_templates, record_sessions};
use server::{Backend, Server};

/// JSON bytes per event of a full push of `kind`, the way the client sends it.
fn wire_bytes(store: &Store, kind: &str) -> (usize, f64) {
    let events: Vec<_> = store
        .waiting_events(100_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .take(500)
        .map(
            |e| match to_wire(store, &e, "0190f1f0-0000-7000-8000-000000000001").unwrap() {
                Outgoing::Send(event) => event,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    let n = events.len();
    let body = serde_json::to_vec(&PushRequest {
        protocol: PROTOCOL_VERSION,
        events,
        report: None,
    })
    .unwrap();
    (n, body.len() as f64 / n as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let students = common::students(if quick { 6 } else { 12 });
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), &students);
    let mut server = Server::start(Backend::Embedded);
    server.set_up_school(roster.path(), &ids);

    println!(
        "{}",
        bench_common::banner(
            "capture pipeline: ONNX Runtime's default (one per core); sync: its own thread; server: tokio, one worker per core"
        )
    );
    println!("| measure | value |");
    println!("|---|---|");

    // 1. Bytes on the wire.
    let a = Room::join(&server, "room A");
    {
        let mut store = a.store();
        record_sessions(&mut store, 100, &ids);
        add_synthetic_templates(&mut store, &ids, 100 / ids.len() + 1);
        let (n, mark) = wire_bytes(&store, "mark_set");
        println!("| JSON bytes per mark (push of {n}) | {mark:.0} |");
        let (n, template) = wire_bytes(&store, "template_added");
        println!("| JSON bytes per 512-d template (push of {n}) | {template:.0} |");
    }
    a.sync_all();

    // 2. Catch-up after an outage: 10,000 events waiting on the box, then a new box pulling
    // 10,000 template changes.
    let n_events = 10_000;
    let pushed = {
        let mut store = a.store();
        let per_session = 1 + ids.len();
        let n = record_sessions(&mut store, n_events / per_session, &ids);
        let took = a.sync_all();
        (n, took)
    };
    println!(
        "| push catch-up: {} events (sessions and marks) | {:.2} s ({:.0} events/s) |",
        pushed.0,
        pushed.1.as_secs_f64(),
        pushed.0 as f64 / pushed.1.as_secs_f64()
    );
    {
        let mut store = a.store();
        let per_student = n_events / ids.len();
        add_synthetic_templates(&mut store, &ids, per_student);
        let n = per_student * ids.len();
        let took = a.sync_all();
        println!(
            "| push catch-up: {n} templates | {:.2} s ({:.0} templates/s) |",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
    }
    {
        let started = Instant::now();
        let b = Room::join(&server, "room B");
        let took = started.elapsed();
        let held = b.store().all_templates(MODEL).unwrap().len();
        println!(
            "| pull catch-up: new box, {held} templates + roster | {:.2} s ({:.0} changes/s) |",
            took.as_secs_f64(),
            held as f64 / took.as_secs_f64()
        );
    }

    // 3. A capture with and without a sync in flight beside it (the sync loop pushing marks
    // back to back on its own thread and connection, as in the long-running agent).
    let mut pipeline = common::pipeline();
    {
        let mut store = a.store();
        for s in &students {
            let photo = load_image(&s.enrol_photo, &ImageLimits::default()).unwrap();
            let _ = enrol(
                &mut pipeline,
                &mut store,
                &s.id,
                &photo,
                &EnrolOptions::default(),
            );
        }
    }
    let frames: Vec<_> = students
        .iter()
        .take(5)
        .map(|s| load_image(&s.class_photo, &ImageLimits::default()).unwrap())
        .collect();
    let busy = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let background = {
        let (busy, stop, cycles) = (busy.clone(), stop.clone(), cycles.clone());
        let dir = a.dir.path().to_owned();
        let ids = ids.clone();
        let config = a.config.clone();
        std::thread::spawn(move || {
            let db = dir.join("rollcall.sqlite");
            let mut writer = Store::open(&db).unwrap();
            let mut syncer = syncer(&dir, Store::open(&db).unwrap(), &config).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if !busy.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                record_sessions(&mut writer, 100, &ids);
                syncer.cycle().unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let rounds = if quick { 5 } else { 15 };
    let mut store = a.store();
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    capture(&mut pipeline, &mut store, SECTION, &frames).unwrap();
    for _ in 0..rounds {
        for with_sync in [false, true] {
            busy.store(with_sync, Ordering::Relaxed);
            if with_sync {
                std::thread::sleep(Duration::from_millis(50));
            }
            let started = Instant::now();
            capture(&mut pipeline, &mut store, SECTION, &frames).unwrap();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            busy.store(false, Ordering::Relaxed);
            if with_sync {
                loaded.push(ms)
            } else {
                quiet.push(ms)
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    let (quiet, loaded) = (median(quiet), median(loaded));
    println!(
        "| capture of {} frames, no sync (median of {rounds}) | {quiet:.0} ms |",
        frames.len()
    );
    println!(
        "| same capture, sync pushing marks beside it ({} cycles ran) | {loaded:.0} ms ({:.2}x) |",
        cycles.load(Ordering::Relaxed),
        loaded / quiet
    );

    // 4. `edge-agent daemon` (issue 18): idle, at the default 30 s interval; then syncing every
    // 200 ms while marks keep arriving, beside the same captures in this process.
    drop(store);
    let idle_s = if quick { 10 } else { 60 };
    let daemon = Daemon::start(&a, 30.0);
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, t0) = (daemon.cpu_s(), Instant::now());
    std::thread::sleep(Duration::from_secs(idle_s));
    let idle_cpu = (daemon.cpu_s() - cpu0) / t0.elapsed().as_secs_f64();
    println!(
        "| daemon idle ({idle_s} s, default 30 s interval): CPU, RSS now, peak RSS | {:.2} % of a core, {:.1} MiB, {:.1} MiB |",
        idle_cpu * 100.0,
        daemon.rss_mib("VmRSS"),
        daemon.rss_mib("VmHWM")
    );
    drop(daemon);
    let daemon = Daemon::start(&a, 0.2);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, dir, ids) = (stop.clone(), a.dir.path().to_owned(), ids.clone());
        std::thread::spawn(move || {
            let mut store = Store::open(&dir.join("rollcall.sqlite")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                record_sessions(&mut store, 5, &ids);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut store = a.store();
    let mut beside = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        capture(&mut pipeline, &mut store, SECTION, &frames).unwrap();
        beside.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let beside = median(beside);
    println!(
        "| same capture, the daemon syncing every 200 ms beside it (peak RSS {:.1} MiB) | {beside:.0} ms ({:.2}x) |",
        daemon.rss_mib("VmHWM"),
        beside / quiet
    );
    drop(daemon);
    server.kill();
}

/// `edge-agent daemon` over a room's data folder, killed when dropped.
struct Daemon(std::process::Child);

impl Daemon {
    fn start(room: &Room, interval_s: f64) -> Daemon {
        use std::io::BufRead;
        std::fs::write(
            room.dir.path().join("edge-agent.toml"),
            format!("[sync]\ninterval_s = {interval_s}\n[daemon]\nlisten = \"127.0.0.1:0\"\n"),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("--data-dir")
            .arg(room.dir.path())
            .arg("daemon")
            .env("ROLLCALL_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "{line}");
        Daemon(child)
    }

    /// CPU seconds the process has used (user + system).
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        // Fields after the command name (which may hold spaces) start at its closing ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    fn rss_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
