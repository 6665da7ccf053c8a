//! Load generator: simulated classroom boxes push 100-event batches and pull, against a real
//! `sync-server serve` process on loopback, on the embedded store and on a MongoDB-wire server.
//!
//! `cargo bench -p sync-server --bench load [-- --quick] [-- --backend embedded|mongo]
//! [-- --baseline PATH [--rounds N]] [-- --boxes 1,16,128]`
//!
//! `--notices`: instead, issue 16's rows: 16 boxes paced at the target rate, in 20 pairs of rows,
//! one with nothing to send and one while the server sends a batch of notices to a local SMTP sink
//! (`scripts/smtp_sink.py`); prints the push p99 while sending as a share of the rows without, and
//! each notice delivered once. `--rate N` sets the server's `max_per_second` (default 50).
//!
//! `--baseline PATH`: another build's `sync-server` binary (the code before a change). Both servers
//! run side by side and take each row in turn, so that the two are compared in one run on one
//! machine; the closing lines give this build's throughput as a share of the baseline's.
//! `--rounds N` runs every row N times (default 1), the builds' order alternating, and gives the
//! median share with each round's.
//!
//! For MongoDB it uses `ROLLCALL_TEST_MONGODB_URI` when set, else starts `.venv/bin/secantusd-py`
//! (made by scripts/setup) in memory on a free port. The generator and the server share the
//! machine's cores, as they would not in production: the figures are a floor.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../../benches/host.rs"]
mod host;
mod support;

use serde_json::{Value, json};
use shared_proto::PROTOCOL_VERSION;
use shared_proto::sync::{
    BoxReport, Event, EventBody, MarkSource, MarkStatus, PROTOCOL_HEADER, PullResponse,
    PushRequest, PushResponse,
};
use support::{Process, free_port, mongo_uri, wait_for_port};

/// Boxes provisioned, one per section; each concurrency level uses the first N.
const BOXES: usize = 128;
const STUDENTS_PER_SECTION: usize = 30;
const EVENTS_PER_PUSH: usize = 100;
/// A box pulls after every this many pushes, until it has caught up.
const PUSHES_PER_PULL: usize = 10;
const PULL_LIMIT: usize = 500;
const CONCURRENCY: [usize; 3] = [1, 16, 128];
/// The throughput target is 20,000 events/s; paced rows offer 10 % more, so that what is
/// acked can show the target met rather than merely offered.
const TARGET_EVENTS_PER_S: f64 = 22_000.0;
const PASSWORD: &str = "load-test-password";
const SCHOOL: &str = "load-school";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

enum Backend {
    Embedded,
    Mongo(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded SQLite",
            Backend::Mongo(_) => "MongoDB wire (SecantusDB)",
        }
    }
}

/// A `sync-server serve` process with an admin account, in its own data folder.
struct Server {
    base: String,
    /// The MongoDB database it uses, when on MongoDB.
    database: String,
    process: Process,
    data: tempfile::TempDir,
}

impl Server {
    fn start(backend: &Backend, bin: &Path) -> Server {
        Server::start_with(backend, bin, "")
    }

    /// With `config` as its `sync-server.toml` (listen, data folder and store still from the
    /// environment).
    fn start_with(backend: &Backend, bin: &Path, config: &str) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let database = format!("load_{}", uuid::Uuid::new_v4().simple());
        let configure = |cmd: &mut Command| {
            cmd.env("ROLLCALL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
                .env("ROLLCALL_SERVER_DATA_DIR", data.path())
                .env("RUST_LOG", "warn");
            match backend {
                Backend::Embedded => cmd.env("ROLLCALL_MONGODB_URI", ""),
                Backend::Mongo(uri) => cmd
                    .env("ROLLCALL_MONGODB_URI", uri)
                    .env("ROLLCALL_MONGODB_DATABASE", &database),
            };
        };
        let mut admin = Command::new(bin);
        admin
            .args(["admin", "create", "--username", "admin", "--password-stdin"])
            .stdin(Stdio::piped());
        configure(&mut admin);
        let mut child = admin.spawn().expect("sync-server admin create");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(PASSWORD.as_bytes())
            .expect("password");
        assert!(child.wait().expect("admin create").success());

        let config_file = data.path().join("sync-server.toml");
        std::fs::write(&config_file, config).expect("config file");
        let mut serve = Command::new(bin);
        serve
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .stdout(Stdio::null());
        configure(&mut serve);
        let process = Process(serve.spawn().expect("sync-server serve"));
        wait_for_port(port, Duration::from_secs(30));
        Server {
            base: format!("http://127.0.0.1:{port}"),
            database,
            process,
            data,
        }
    }

    /// Its process id, for its CPU time (`ServerCpu`).
    fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// The OneRoster export of the synthetic school: one section per box.
fn roster_files() -> Vec<(&'static str, String)> {
    let mut users = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,email,agentSourcedIds\n".to_owned();
    let mut classes = "sourcedId,status,dateLastModified,title,classCode,classType,schoolSourcedId,courseSourcedId,termSourcedIds\n".to_owned();
    let mut enrollments = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n".to_owned();
    for b in 0..BOXES {
        classes += &format!("c{b},,,Class {b},C{b},scheduled,{SCHOOL},k1,\n");
        for s in 0..STUDENTS_PER_SECTION {
            let id = student_id(b, s);
            users += &format!("{id},,,true,{SCHOOL},student,{id},Student,{id},,\n");
            enrollments += &format!("e{b}-{s},,,c{b},{SCHOOL},{id},student,false,,\n");
        }
    }
    vec![
        (
            "manifest.csv",
            "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.classes,bulk\nfile.enrollments,bulk\nfile.users,bulk\n".to_owned(),
        ),
        ("users.csv", users),
        ("classes.csv", classes),
        ("enrollments.csv", enrollments),
    ]
}

fn student_id(section: usize, seat: usize) -> String {
    format!("s{section}-{seat}")
}

async fn expect_json(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"))
}

/// Logs in, makes the school and its roster, and provisions every box; returns device tokens.
async fn set_up(client: &reqwest::Client, base: &str) -> Vec<String> {
    let login = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    let admin = expect_json(login, "login").await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let school = client
        .post(format!("{base}/v1/schools"))
        .bearer_auth(&admin)
        .json(&json!({"id": SCHOOL, "name": "Load Test School"}))
        .send()
        .await
        .expect("school");
    expect_json(school, "create school").await;
    let mut form = reqwest::multipart::Form::new();
    for (name, text) in roster_files() {
        form = form.part(
            name,
            reqwest::multipart::Part::bytes(text.into_bytes()).file_name(name),
        );
    }
    let roster = client
        .post(format!("{base}/v1/schools/{SCHOOL}/roster"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .expect("roster");
    expect_json(roster, "roster upload").await;
    let mut tokens = Vec::with_capacity(BOXES);
    for b in 0..BOXES {
        let code = client
            .post(format!("{base}/v1/schools/{SCHOOL}/provisioning-codes"))
            .bearer_auth(&admin)
            .json(&json!({"device_name": format!("room-{b}")}))
            .send()
            .await
            .expect("code");
        let code = expect_json(code, "provisioning code").await["code"]
            .as_str()
            .expect("code")
            .to_owned();
        let device = client
            .post(format!("{base}/v1/devices/provision"))
            .json(&json!({"protocol": PROTOCOL_VERSION, "code": code, "name": format!("room-{b}")}))
            .send()
            .await
            .expect("provision");
        tokens.push(
            expect_json(device, "provision").await["token"]
                .as_str()
                .expect("token")
                .to_owned(),
        );
    }
    tokens
}

/// One push: three sessions of the box's section, each opened and marked for all 30 students
/// (93 events), six teacher corrections on the last one, and its closing: 100 events.
fn batch(section: usize) -> PushRequest {
    let now = now_ms();
    let id = || uuid::Uuid::now_v7().to_string();
    let mut events = Vec::with_capacity(EVENTS_PER_PUSH);
    let mut session = String::new();
    for _ in 0..3 {
        session = id();
        events.push(Event {
            id: id(),
            at: now,
            body: EventBody::SessionOpened {
                session: session.clone(),
                section: format!("c{section}"),
                started_at: now,
            },
        });
        for seat in 0..STUDENTS_PER_SECTION {
            events.push(Event {
                id: id(),
                at: now,
                body: EventBody::MarkSet {
                    session: session.clone(),
                    student: student_id(section, seat),
                    status: if seat % 7 == 0 {
                        MarkStatus::Absent
                    } else {
                        MarkStatus::Present
                    },
                    source: MarkSource::Machine,
                    score: (seat % 7 != 0).then_some(0.62),
                    decided_at: now,
                    by: None,
                },
            });
        }
    }
    for seat in 0..6 {
        events.push(Event {
            id: id(),
            at: now + 1,
            body: EventBody::MarkSet {
                session: session.clone(),
                student: student_id(section, seat * 5),
                status: MarkStatus::Late,
                source: MarkSource::Teacher,
                score: None,
                decided_at: now + 1,
                by: Some("teacher".into()),
            },
        });
    }
    events.push(Event {
        id: id(),
        at: now + 2,
        body: EventBody::SessionClosed { session },
    });
    assert_eq!(events.len(), EVENTS_PER_PUSH);
    PushRequest {
        protocol: PROTOCOL_VERSION,
        events,
        // What a box of this protocol sends with every push. Without its clock: bodies are made
        // before a row, so theirs would read up to a row behind, and the server would record each
        // box crossing the clock rule's warning (a box stamps its clock as it pushes).
        report: Some(BoxReport {
            app_version: env!("CARGO_PKG_VERSION").into(),
            outbox_waiting: EVENTS_PER_PUSH as u64,
            clock_ms: None,
        }),
    }
}

fn push_body(section: usize) -> Vec<u8> {
    serde_json::to_vec(&batch(section)).expect("push body")
}

#[derive(Default)]
struct BoxResult {
    cursor: String,
    push: Vec<Duration>,
    pull: Vec<Duration>,
    events: usize,
    changes: usize,
}

/// One simulated box: push, and every few pushes pull until caught up, until `deadline`. Paced,
/// it pushes on a fixed schedule and a push's latency counts from when it was due, so a server
/// that falls behind shows it in the percentiles instead of slowing the generator down.
/// What one box does in a row: until when, on what schedule (phase, interval), with which bodies.
struct Row {
    deadline: Instant,
    pace: Option<(Duration, Duration)>,
    bodies: Vec<Vec<u8>>,
}

async fn run_box(
    client: reqwest::Client,
    base: Arc<str>,
    token: String,
    section: usize,
    mut cursor: String,
    row: Row,
) -> BoxResult {
    let Row {
        deadline,
        pace,
        bodies,
    } = row;
    let mut bodies = bodies.into_iter();
    let mut result = BoxResult::default();
    let mut pushes = 0;
    let mut ticker = pace.map(|(phase, interval)| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    while Instant::now() < deadline {
        let start = match &mut ticker {
            Some(ticker) => ticker.tick().await.into_std(),
            None => Instant::now(),
        };
        if start >= deadline {
            break;
        }
        // Made before the row began, so that the generator's own JSON work does not take CPU from
        // the server it measures; made now only if the row outruns the estimate.
        let body = bodies.next().unwrap_or_else(|| push_body(section));
        let response = client
            .post(format!("{base}/v1/sync/push"))
            .bearer_auth(&token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("push");
        let status = response.status();
        let text = response.text().await.expect("push body");
        result.push.push(start.elapsed());
        assert!(status.is_success(), "push: {status} {text}");
        let acked: PushResponse = serde_json::from_str(&text).expect("push response");
        assert!(
            acked.rejected.is_empty() && acked.acked.len() == EVENTS_PER_PUSH,
            "push rejected events: {:?}",
            acked.rejected.first()
        );
        result.events += acked.acked.len();
        pushes += 1;
        if pushes % PUSHES_PER_PULL == 0 {
            cursor = pull_all(&client, &base, &token, cursor, &mut result).await;
        }
    }
    result.cursor = cursor;
    result
}

/// Pulls from `cursor` until caught up; returns the new cursor.
async fn pull_all(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    mut cursor: String,
    result: &mut BoxResult,
) -> String {
    loop {
        let start = Instant::now();
        let response = client
            .get(format!(
                "{base}/v1/sync/pull?cursor={cursor}&limit={PULL_LIMIT}"
            ))
            .bearer_auth(token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .send()
            .await
            .expect("pull");
        let status = response.status();
        let text = response.text().await.expect("pull body");
        result.pull.push(start.elapsed());
        assert!(status.is_success(), "pull: {status} {text}");
        let page: PullResponse = serde_json::from_str(&text).expect("pull page");
        result.changes += page.changes.len();
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    cursor
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].as_secs_f64() * 1e3
}

/// One build under test: its binary and the name its rows carry.
struct Build {
    bin: PathBuf,
    label: &'static str,
}

/// One row: the first `boxes` boxes push (paced at `TARGET_EVENTS_PER_S` together, or as fast as
/// acked) and pull for `seconds`; returns what they saw, latencies sorted, and the wall time.
async fn row(
    client: &reqwest::Client,
    base: &Arc<str>,
    tokens: &[String],
    cursors: &mut [String],
    boxes: usize,
    paced: bool,
    seconds: u64,
) -> (BoxResult, f64) {
    // Paced: together the boxes offer TARGET_EVENTS_PER_S, each at its own phase.
    let interval =
        Duration::from_secs_f64(boxes as f64 * EVENTS_PER_PUSH as f64 / TARGET_EVENTS_PER_S);
    // Bodies for the whole row, made before it starts: what the pacing offers, or for the
    // unpaced rows twice the target rate (a box makes more on the spot if it runs out).
    let rate = if paced {
        TARGET_EVENTS_PER_S
    } else {
        2.0 * TARGET_EVENTS_PER_S
    };
    let per_box =
        (rate * seconds as f64 / EVENTS_PER_PUSH as f64 / boxes as f64).ceil() as usize + 1;
    let mut bodies: Vec<Vec<Vec<u8>>> = (0..boxes)
        .map(|b| (0..per_box).map(|_| push_body(b)).collect())
        .collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..boxes)
        .map(|b| {
            let phase = interval.mul_f64(b as f64 / boxes as f64);
            tokio::spawn(run_box(
                client.clone(),
                base.clone(),
                tokens[b].clone(),
                b,
                cursors[b].clone(),
                Row {
                    deadline,
                    pace: paced.then_some((phase, interval)),
                    bodies: std::mem::take(&mut bodies[b]),
                },
            ))
        })
        .collect();
    let mut all = BoxResult::default();
    for (b, task) in tasks.into_iter().enumerate() {
        let r = task.await.expect("box task");
        cursors[b] = r.cursor;
        all.push.extend(r.push);
        all.pull.extend(r.pull);
        all.events += r.events;
        all.changes += r.changes;
    }
    let wall = start.elapsed().as_secs_f64();
    all.push.sort();
    all.pull.sort();
    (all, wall)
}

/// A client, the school and its boxes on `server`, and each box's cursor after the roster.
async fn prepare(
    backend: &Backend,
    server: &Server,
) -> (reqwest::Client, Arc<str>, Vec<String>, Vec<String>) {
    // A workspace build gives reqwest edge-agent's `rustls-no-provider`: install one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(BOXES)
        .build()
        .expect("client");
    let setup = Instant::now();
    let tokens = set_up(&client, &server.base).await;
    eprintln!(
        "{}: school of {BOXES} sections x {STUDENTS_PER_SECTION} students and {BOXES} boxes set up in {:.1} s",
        backend.name(),
        setup.elapsed().as_secs_f64()
    );
    let base: Arc<str> = server.base.clone().into();
    // A box pulls its school's roster when it is provisioned, not in the middle of the day: catch
    // up before the timed rows, which then pull only what the rows themselves change. Every box is
    // of the same school, so they share one feed and one box's catch-up serves them all (128 of
    // them took longer than a bench run can wait on the Python MongoDB-wire server).
    let catch_up = Instant::now();
    let mut roster = BoxResult::default();
    let cursor = pull_all(&client, &base, &tokens[0], "0".to_owned(), &mut roster).await;
    eprintln!(
        "{}: one box pulled the roster ({} changes) in {:.1} s",
        backend.name(),
        roster.changes,
        catch_up.elapsed().as_secs_f64()
    );
    (client, base, tokens, vec![cursor; BOXES])
}

/// CPU time a server process has used: all its threads (`/proc/PID/stat`, which also counts
/// threads that have ended, in ticks of 10 ms) and its SQLite writer thread
/// (`/proc/PID/task/TID/schedstat`, nanoseconds, kernel time in its flushes included). The
/// writer's time per event bounds the embedded store's pushes; a row's figure shows where a
/// change's time went. It is no steadier than throughput on a shared host (in an A/A run, the
/// two servers of one build differed by 2-19 % in a round), so compare builds over rounds, as
/// for throughput.
/// Zero where `/proc` cannot be read (not Linux).
#[derive(Clone, Copy, Default)]
struct ServerCpu {
    all_ns: u64,
    writer_ns: u64,
}

/// Linux reports `/proc/PID/stat` times in ticks of `USER_HZ`, which is 100 on every
/// architecture we build for.
const NS_PER_TICK: u64 = 10_000_000;

impl ServerCpu {
    fn read(pid: u32) -> ServerCpu {
        let all_ns = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // The fields after the command's closing parenthesis: utime and stime are the
                // 12th and 13th of them (fields 14 and 15 of the line).
                let rest = stat.rsplit_once(')')?.1;
                let mut fields = rest.split_whitespace().skip(11);
                let utime: u64 = fields.next()?.parse().ok()?;
                let stime: u64 = fields.next()?.parse().ok()?;
                Some((utime + stime) * NS_PER_TICK)
            })
            .unwrap_or(0);
        let mut writer_ns = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = task.path();
            let is_writer = std::fs::read_to_string(path.join("comm"))
                .is_ok_and(|comm| comm.trim() == sync_server::store::sqlite::WRITER_THREAD);
            if is_writer {
                writer_ns += std::fs::read_to_string(path.join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        ServerCpu { all_ns, writer_ns }
    }

    /// CPU ms per 1,000 events acked since `earlier`: the whole server's and the writer's.
    fn per_thousand(self, earlier: ServerCpu, events: usize) -> (f64, f64) {
        let per = |ns: u64| ns as f64 / 1e6 / (events.max(1) as f64 / 1000.0);
        (
            per(self.all_ns.saturating_sub(earlier.all_ns)),
            per(self.writer_ns.saturating_sub(earlier.writer_ns)),
        )
    }
}

/// One row's figures, printed as a table line; returns its events/s.
fn print_row(
    backend: &Backend,
    build: &Build,
    (boxes, paced): (usize, bool),
    all: &BoxResult,
    wall: f64,
    (server_cpu, writer_cpu): (f64, f64),
) -> f64 {
    let events_per_s = all.events as f64 / wall;
    // MongoDB's server has no writer thread of its own: its writes wait on the database.
    let writer = if matches!(backend, Backend::Embedded) {
        format!(" (writer {writer_cpu:.1})")
    } else {
        String::new()
    };
    let p99 = percentile(&all.push, 0.99);
    let verdict = if boxes == 128 && paced && matches!(backend, Backend::Embedded) {
        if events_per_s >= 20_000.0 && p99 <= 50.0 {
            "; target >= 20,000 events/s and p99 <= 50 ms: met"
        } else {
            "; target >= 20,000 events/s and p99 <= 50 ms: NOT met"
        }
    } else {
        ""
    };
    let mode = if paced {
        format!("paced, {TARGET_EVENTS_PER_S} offered")
    } else {
        "as fast as acked".to_owned()
    };
    println!(
        "| {}{} | {boxes} | {mode} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} changes pulled; server CPU {server_cpu:.1} ms per 1,000 events{writer}{verdict} |",
        backend.name(),
        build.label,
        all.push.len(),
        events_per_s,
        percentile(&all.push, 0.50),
        percentile(&all.push, 0.95),
        p99,
        all.pull.len(),
        percentile(&all.pull, 0.50),
        percentile(&all.pull, 0.99),
        all.changes,
    );
    events_per_s
}

/// A build's server, set up and caught up, ready for rows.
struct Running {
    server: Server,
    client: reqwest::Client,
    base: Arc<str>,
    tokens: Vec<String>,
    cursors: Vec<String>,
}

/// Runs every row against each of `builds` on `backend`, `rounds` times. With two builds (a
/// baseline and this one) both servers run side by side and each row is run on one just after the
/// other, the order alternating from row to row and round to round: a drift of the host (another
/// tenant, the disk's write cache) then falls on both alike. Prints each unpaced row's throughput
/// as a share of the baseline's: the median of the rounds' shares, and each round's.
async fn compare(
    backend: &Backend,
    builds: &[Build],
    levels: &[usize],
    seconds: u64,
    rounds: usize,
) -> Vec<String> {
    let mut running = Vec::new();
    for build in builds {
        let server = Server::start(backend, &build.bin);
        let (client, base, tokens, cursors) = prepare(backend, &server).await;
        running.push(Running {
            server,
            client,
            base,
            tokens,
            cursors,
        });
    }
    let rows: Vec<(usize, bool)> = levels
        .iter()
        .flat_map(|&n| [(n, false), (n, true)])
        .collect();
    // events_per_s[row][build][round]
    let mut events_per_s = vec![vec![Vec::new(); builds.len()]; rows.len()];
    for round in 0..rounds {
        for (r, &(boxes, paced)) in rows.iter().enumerate() {
            let mut order: Vec<usize> = (0..builds.len()).collect();
            if (round + r) % 2 == 1 {
                order.reverse();
            }
            for b in order {
                let run = &mut running[b];
                let cpu_before = ServerCpu::read(run.server.pid());
                let (all, wall) = row(
                    &run.client,
                    &run.base,
                    &run.tokens,
                    &mut run.cursors,
                    boxes,
                    paced,
                    seconds,
                )
                .await;
                let cpu = ServerCpu::read(run.server.pid()).per_thousand(cpu_before, all.events);
                let rate = print_row(backend, &builds[b], (boxes, paced), &all, wall, cpu);
                events_per_s[r][b].push(rate);
            }
        }
    }
    let mut lines = Vec::new();
    for (&(boxes, paced), per_build) in rows.iter().zip(&events_per_s) {
        let [was, is] = &per_build[..] else { break };
        if paced {
            continue;
        }
        let mut shares: Vec<f64> = was.iter().zip(is).map(|(w, i)| 100.0 * i / w).collect();
        let each = shares
            .iter()
            .map(|s| format!("{s:.1} %"))
            .collect::<Vec<_>>()
            .join(", ");
        shares.sort_by(f64::total_cmp);
        let median = if shares.len() % 2 == 1 {
            shares[shares.len() / 2]
        } else {
            (shares[shares.len() / 2 - 1] + shares[shares.len() / 2]) / 2.0
        };
        lines.push(format!(
            "{}, {boxes} boxes as fast as acked: {median:.1} % of the baseline (median of {rounds} rounds: {each})",
            backend.name(),
        ));
    }
    lines
}

/// Pairs of rows of the `--notices` run: one row with nothing to send, one while the server sends
/// a batch (as many notices as it sends in a row at its rate), their order alternating.
const NOTICE_PAIRS: usize = 20;
const NOTICE_BOXES: usize = 16;
/// The server's `max_per_second` when `--rate` does not set it (its own default).
const DEFAULT_RATE: u32 = 50;

/// What the host did during a row, from `/proc`: CPU time stolen by the hypervisor, CPU time idle
/// waiting for I/O, and the time every task was stalled on I/O (pressure stall information). A
/// stall the host causes shows here; a stall the server causes does not.
#[derive(Clone, Copy, Default)]
struct HostTimes {
    steal: u64,
    iowait: u64,
    total: u64,
    io_full_us: u64,
}

impl HostTimes {
    fn now() -> HostTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let io_full_us = std::fs::read_to_string("/proc/pressure/io")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("full"))
            .and_then(|l| l.rsplit_once("total="))
            .and_then(|(_, t)| t.trim().parse().ok())
            .unwrap_or(0);
        HostTimes {
            iowait: at(4),
            steal: at(7),
            total: cpu.iter().take(8).sum(),
            io_full_us,
        }
    }

    /// (steal %, iowait %, ms every task waited on I/O) since `earlier`.
    fn since(self, earlier: HostTimes) -> (f64, f64, f64) {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        (
            100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total,
            100.0 * self.iowait.saturating_sub(earlier.iowait) as f64 / total,
            self.io_full_us.saturating_sub(earlier.io_full_us) as f64 / 1000.0,
        )
    }
}

/// The paced boxes of the `--notices` run: each call runs one row, prints it with the host's
/// counters, and adds its pushes to a phase (before, while or after sending).
struct Rows {
    client: reqwest::Client,
    base: Arc<str>,
    tokens: Vec<String>,
    cursors: Vec<String>,
    store: &'static str,
    seconds: u64,
}

impl Rows {
    fn header() {
        println!(
            "| store | row | pushes | events/s | push p50 ms | push p95 ms | push p99 ms | steal % | iowait % | all tasks stalled on I/O, ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
    }

    async fn run(&mut self, label: &str, phase: &mut Phase) {
        let host = HostTimes::now();
        let (one, wall) = row(
            &self.client,
            &self.base,
            &self.tokens,
            &mut self.cursors,
            NOTICE_BOXES,
            true,
            self.seconds,
        )
        .await;
        let (steal, iowait, io_ms) = HostTimes::now().since(host);
        println!(
            "| {} | {label} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {steal:.1} | {iowait:.1} | {io_ms:.0} |",
            self.store,
            one.push.len(),
            one.events as f64 / wall,
            percentile(&one.push, 0.50),
            percentile(&one.push, 0.95),
            percentile(&one.push, 0.99),
        );
        phase.rows.push(percentile(&one.push, 0.99));
        phase.push.extend(one.push);
        phase.push.sort();
    }
}

/// The pushes of the rows before, while or after sending.
#[derive(Default)]
struct Phase {
    push: Vec<Duration>,
    /// Each row's p99, ms.
    rows: Vec<f64>,
}

impl Phase {
    fn p99(&self) -> f64 {
        percentile(&self.push, 0.99)
    }

    fn line(&self, name: &str) -> String {
        let mut sorted = self.rows.clone();
        sorted.sort_by(f64::total_cmp);
        format!(
            "{name}: {} pushes in {} rows; p99 of all {:.1} ms; row p99s: median {:.1} ms, worst {:.1} ms",
            self.push.len(),
            self.rows.len(),
            self.p99(),
            sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
            sorted.last().copied().unwrap_or(0.0),
        )
    }
}

/// Issue 16: does sending notices slow the boxes' pushes? `NOTICE_BOXES` boxes push at the paced
/// rate in rows back to back; every other row the server sends a batch of notices to a local SMTP
/// sink, and the rows without are the baseline. Interleaved so that the host's own drift (these
/// shared machines stall for a fraction of a second every minute or two, and get noisier or quieter
/// for minutes) weighs on both alike.
async fn run_notices(backend: &Backend, seconds: u64, rate: Option<u32>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // In production the relay is another machine: the sink's files are kept off the server's disk
    // where the host has a memory file system.
    let shm = Path::new("/dev/shm");
    let out = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("sink folder");
    let port = free_port();
    let mut sink = Command::new(root.join(".venv/bin/python"));
    sink.arg(root.join("scripts/smtp_sink.py"))
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::null());
    let _sink = Process(
        sink.spawn()
            .expect("scripts/smtp_sink.py in .venv (scripts/setup)"),
    );
    wait_for_port(port, Duration::from_secs(30));
    let rate = rate.unwrap_or(DEFAULT_RATE);
    let config = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Load School <attendance@load.example.org>\"\npublic_url = \"http://127.0.0.1:1\"\nplan_every_seconds = 3600\nmax_per_second = {rate}\n"
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sync-server"));
    let server = Server::start_with(backend, &bin, &config);
    let (client, base, tokens, cursors) = prepare(backend, &server).await;
    let mut rows = Rows {
        client,
        base,
        tokens,
        cursors,
        store: backend.name(),
        seconds,
    };
    Rows::header();
    // Two rows warm the server up (a cold server's first seconds have several times a warm one's
    // p99).
    for n in 1..=2 {
        rows.run(&format!("warm-up {n}"), &mut Phase::default())
            .await;
    }

    // Each batch is put in the outbox from a second connection to the server's database, as
    // another process (a planner) would, due at once.
    let store: Arc<dyn sync_server::store::Store> = match backend {
        Backend::Embedded => Arc::new(
            sync_server::store::sqlite::SqliteStore::open(
                &server.data.path().join("rollcall-server.sqlite"),
            )
            .expect("the server's database"),
        ),
        Backend::Mongo(uri) => Arc::new(
            sync_server::store::mongo::MongoStore::connect(uri, &server.database)
                .await
                .expect("the server's database"),
        ),
    };
    let count = || {
        std::fs::read_dir(out.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    };
    let per_batch = rate as usize * seconds as usize;
    let mut enqueued = 0;
    let mut enqueue_s = 0.0;
    let (mut quiet, mut sending) = (Phase::default(), Phase::default());
    // Each pair's quiet row and sending row against each other: the sending row's p99 as a share
    // of its neighbour's.
    let mut pair_ratios = Vec::new();
    for pair in 1..=NOTICE_PAIRS {
        let mut pair_p99 = [0.0; 2];
        // Odd pairs: quiet first; even pairs: sending first.
        let order = if pair % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for sends in order {
            // A quiet row starts with nothing left to send.
            let deadline = Instant::now() + Duration::from_secs(120);
            while count() < enqueued {
                assert!(
                    Instant::now() < deadline,
                    "{} of {enqueued} notices sent after 2 minutes",
                    count()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !sends {
                rows.run(&format!("pair {pair}: nothing to send"), &mut quiet)
                    .await;
                pair_p99[0] = *quiet.rows.last().unwrap();
                continue;
            }
            let batch = notice_batch(per_batch, enqueued);
            let started = Instant::now();
            store.enqueue_notices(&batch).await.expect("enqueue");
            enqueue_s += started.elapsed().as_secs_f64();
            enqueued += per_batch;
            let sent_before = count();
            rows.run(&format!("pair {pair}: sending {per_batch}"), &mut sending)
                .await;
            pair_p99[1] = *sending.rows.last().unwrap();
            println!(
                "|  | ({} sent in the row) | | | | | | | | |",
                count() - sent_before
            );
        }
        pair_ratios.push(100.0 * pair_p99[1] / pair_p99[0]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < enqueued && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each notice once: as many distinct Message-IDs as messages.
    let mut ids = std::collections::HashSet::new();
    let mut messages = 0;
    for entry in std::fs::read_dir(out.path())
        .expect("sink folder")
        .filter_map(Result::ok)
    {
        if entry.path().extension().is_none_or(|x| x != "eml") {
            continue;
        }
        messages += 1;
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        {
            ids.insert(line.to_owned());
        }
    }
    println!(
        "\n{}: {enqueued} notices in {NOTICE_PAIRS} batches of {per_batch}, enqueued at {:.0}/s, sent at max_per_second {rate} over one SMTP connection; the sink holds {messages} messages with {} distinct Message-IDs.",
        backend.name(),
        enqueued as f64 / enqueue_s,
        ids.len(),
    );
    println!("{}", quiet.line("nothing to send"));
    println!("{}", sending.line("while sending"));
    pair_ratios.sort_by(f64::total_cmp);
    println!(
        "push p99 while sending: {:.1} ms, {:.0} % of the rows with nothing to send ({:.1} ms); per pair, the sending row's p99 against its neighbour's: median {:.0} %, middle half {:.0}-{:.0} %; target: within 10 %.",
        sending.p99(),
        100.0 * sending.p99() / quiet.p99(),
        quiet.p99(),
        pair_ratios[pair_ratios.len() / 2],
        pair_ratios[pair_ratios.len() / 4],
        pair_ratios[pair_ratios.len() * 3 / 4],
    );
}

/// `n` absence notices, due now, numbered from `first`.
fn notice_batch(n: usize, first: usize) -> Vec<sync_server::domain::notice::Notice> {
    use sync_server::domain::notice::{Kind, Letter, Notice};
    let now = now_ms();
    (first..first + n)
        .map(|n| {
            let id = uuid::Uuid::now_v7().to_string();
            let letter = Letter {
                message_id: format!("<{id}@load.example.org>"),
                key: format!("bench-{id}"),
                id,
                school_id: SCHOOL.into(),
                kind: Kind::Absence,
                recipient: format!("parent{n}@example.org"),
                guardian_id: None,
                day: "2026-12-01".into(),
                subject: format!("Load School: Student {n} missed lessons on Tuesday 1 December 2026"),
                text: format!("Dear parent,\n\nLoad School recorded on Tuesday 1 December 2026:\n\n- Student {n} was absent in Class 1 at 08:00.\n"),
                html: format!("<p>Dear parent,</p><p>Load School recorded on Tuesday 1 December 2026:</p><ul><li>Student {n} was absent in Class 1 at 08:00.</li></ul>"),
                facts: String::new(),
                students: Vec::new(),
            };
            Notice::queued(letter, now)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let seconds = if quick { 3 } else { 10 };
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |n| n.parse::<usize>().expect("--rounds takes a number"));
    // `--boxes 1,128`: these levels instead of `CONCURRENCY`, each 1 to `BOXES`.
    let levels: Vec<usize> = args
        .iter()
        .position(|a| a == "--boxes")
        .and_then(|i| args.get(i + 1))
        .map_or(CONCURRENCY.to_vec(), |list| {
            let level = |n: &str| n.trim().parse().ok().filter(|n| (1..=BOXES).contains(n));
            let each = |n: &str| {
                level(n)
                    .unwrap_or_else(|| panic!("--boxes takes 1 to {BOXES}, e.g. 1,128; not {n:?}"))
            };
            list.split(',').map(each).collect()
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{}",
        host::banner(
            "none (the server links no ML library)",
            &format!(
                "server: tokio, one worker per core; generator: tokio, {} workers, on the same cores",
                runtime.metrics().num_workers()
            )
        )
    );
    if args.iter().any(|a| a == "--notices") {
        // `--rate N`: the server's max_per_second (default: the server's own default).
        let rate = args
            .iter()
            .position(|a| a == "--rate")
            .and_then(|i| args.get(i + 1))
            .map(|r| r.parse::<u32>().expect("--rate takes messages per second"));
        println!("{NOTICE_BOXES} boxes, paced, offer {TARGET_EVENTS_PER_S} events/s together.");
        if only.as_deref() != Some("mongo") {
            runtime.block_on(run_notices(&Backend::Embedded, seconds, rate));
        }
        if only.as_deref() == Some("mongo") {
            let (uri, _mongo) = mongo_uri();
            runtime.block_on(run_notices(&Backend::Mongo(uri), seconds, rate));
        }
        return;
    }
    println!(
        "| store | boxes | load | pushes | events/s | push p50 ms | push p95 ms | push p99 ms | pull pages | pull p50 ms | pull p99 ms | note |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let own = Build {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_sync-server")),
        label: "",
    };
    let builds = match args.iter().position(|a| a == "--baseline") {
        Some(i) => {
            let bin = PathBuf::from(
                args.get(i + 1)
                    .expect("--baseline takes a sync-server binary"),
            );
            assert!(bin.is_file(), "no baseline binary at {}", bin.display());
            vec![
                Build {
                    bin,
                    label: " (baseline)",
                },
                Build {
                    label: " (this build)",
                    ..own
                },
            ]
        }
        None => vec![own],
    };
    let mut ratios = Vec::new();
    if only.as_deref() != Some("mongo") {
        ratios.extend(runtime.block_on(compare(
            &Backend::Embedded,
            &builds,
            &levels,
            seconds,
            rounds,
        )));
    }
    if only.as_deref() != Some("embedded") {
        let (uri, _mongo) = mongo_uri();
        ratios.extend(runtime.block_on(compare(
            &Backend::Mongo(uri),
            &builds,
            &levels,
            seconds,
            rounds,
        )));
    }
    for line in ratios {
        println!("{line}");
    }
    println!(
        "\n{EVENTS_PER_PUSH} events per push; each box pulls (limit {PULL_LIMIT}) after every {PUSHES_PER_PULL} pushes until caught up; {seconds} s per row; legacy backend: p50 200 ms, p95 500 ms, p99 1000 ms."
    );
}
