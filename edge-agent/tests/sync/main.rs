//! Boxes and a server converging, as real processes on loopback: `edge-agent` binaries with their
//! own data folders, a real `sync-server` (embedded store, and the MongoDB-wire server that
//! scripts/test starts), and a proxy that breaks the network on purpose.

#[path = "../common/mod.rs"]
mod common;
mod daemon;
mod enrol;
mod fixtures;
mod proxy;
mod server;
mod tls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edge_agent::store::{NewTemplate, Store};
use serde_json::Value;
use shared_proto::sync::{ChangeBody, PullResponse};

use proxy::FlakyProxy;
use server::{Backend, Server};

use fixtures::{SECTION, SYNTHETIC_MODEL};

/// A classroom box: the real binary over its own data folder.
struct Classroom {
    dir: tempfile::TempDir,
}

impl Classroom {
    fn new(sync_config: &str) -> Classroom {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("edge-agent.toml"), sync_config).unwrap();
        Classroom { dir }
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
        cmd.arg("--data-dir")
            .arg(self.data())
            .args(args)
            .env("ROLLCALL_LOG", "warn");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        output
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn provision(&self, server_base: &str, code: &str) {
        let out = self.ok(&["provision", "--server", server_base, "--code", code]);
        assert!(out.contains("provisioned"), "{out}");
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    fn waiting(&self) -> u64 {
        self.status()["outbox"]["waiting"].as_u64().unwrap()
    }

    /// `sync --once` until a cycle reaches the server with nothing left to push; returns the
    /// cycles it took, and panics once `CONVERGE_WITHIN` has passed. A deadline, not a number
    /// of cycles: a cycle that an open breaker skips takes milliseconds, one that pushes to a
    /// server on a loaded host takes seconds (issue 12).
    fn sync_until_done(&self) -> usize {
        let deadline = Instant::now() + CONVERGE_WITHIN;
        let mut cycles = 0;
        loop {
            cycles += 1;
            let output = self.run(&["sync", "--once"]);
            if output.status.success() && self.waiting() == 0 {
                return cycles;
            }
            assert!(
                Instant::now() < deadline,
                "not converged after {cycles} cycles in {CONVERGE_WITHIN:?}: {}",
                self.status()
            );
            // An open breaker skips cycles at once: no need to spin on it.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One cycle that succeeds with nothing left to push.
    fn sync_once_done(&self) {
        let out = self.ok(&["sync", "--once"]);
        assert_eq!(self.waiting(), 0, "{out}");
    }

    fn store(&self) -> Store {
        Store::open(&self.data().join("rollcall.sqlite")).unwrap()
    }
}

/// How long a box may take to converge after a fault. A healthy run takes seconds and returns
/// as soon as it has converged; the margin is for a 2-core host that also builds and runs the
/// rest of the suite.
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);

/// Fast retries and a short breaker, so fault tests take seconds, not minutes.
const QUICK_SYNC: &str = "[sync]\ninterval_s = 1\ntimeout_s = 2\nretry_delays_ms = [20, 40, 80]\nbreaker_failures = 5\nbreaker_cooldown_s = 0.2\n";

fn school(backend: Backend, students: &[common::Student]) -> (Server, tempfile::TempDir) {
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), students);
    let mut server = Server::start(backend);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    server.set_up_school(roster.path(), &ids);
    (server, roster)
}

pub(crate) fn synthetic_students(n: usize) -> Vec<common::Student> {
    (0..n)
        .map(|i| common::Student {
            id: format!("pupil_{i}"),
            enrol_photo: PathBuf::new(),
            class_photo: PathBuf::new(),
        })
        .collect()
}

/// A provisioned box that has pulled the school's roster.
fn joined(server: &Server, config: &str, name: &str) -> Classroom {
    let classroom = Classroom::new(config);
    classroom.provision(&server.base, &server.provisioning_code(name));
    classroom.sync_until_done();
    classroom
}

/// `n` machine-marked sessions written into the box's store; returns the events they made.
fn record_sessions(classroom: &Classroom, n: usize, students: &[String]) -> usize {
    fixtures::record_sessions(&mut classroom.store(), n, students)
}

fn add_synthetic_templates(classroom: &Classroom, students: &[String], per_student: usize) {
    fixtures::add_synthetic_templates(&mut classroom.store(), students, per_student);
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x.get("student").unwrap_or(x).as_str().unwrap().to_owned())
        .collect()
}

fn capture(classroom: &Classroom, photos: &[&Path]) -> Value {
    let mut args = vec!["capture", "--section", SECTION, "--json", "--images"];
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    serde_json::from_str(&classroom.ok(&args)).unwrap()
}

/// Enrolled on A, recognised on B; A's teacher override wins on the server; a consent withdrawn
/// on the server leaves no vector on either box and B no longer recognises the student.
fn two_boxes_converge(backend: Backend) {
    let students = common::students(3);
    let (server, _roster) = school(backend, &students);
    let a = joined(&server, "", "room A");
    let b = joined(&server, "", "room B");
    for classroom in [&a, &b] {
        let ids = classroom.store().section_students(SECTION).unwrap();
        assert_eq!(ids.len(), 3, "the roster reached the box: {ids:?}");
    }

    for s in &students[..2] {
        a.ok(&[
            "enroll",
            "--student",
            &s.id,
            s.enrol_photo.to_str().unwrap(),
        ]);
    }
    // One request id per cycle, in the box's report and in the server's log of every call.
    let out = a.ok(&["sync", "--once"]);
    let request_id = out.split_whitespace().nth(1).unwrap().trim_end_matches(':');
    assert_eq!(request_id.len(), 36, "{out}");
    let logged = server.log().matches(request_id).count();
    assert!(
        logged >= 2,
        "push and pull of cycle {request_id} logged {logged} times"
    );
    b.sync_until_done();
    for s in &students[..2] {
        assert_eq!(b.store().template_count(&s.id).unwrap(), 1, "{}", s.id);
    }
    let outcome = capture(&b, &[&students[0].class_photo, &students[1].class_photo]);
    let recognised = &names(&outcome["present"]) | &names(&outcome["review"]);
    assert_eq!(
        recognised,
        [students[0].id.clone(), students[1].id.clone()].into(),
        "{outcome}"
    );

    // A's machine says present; its teacher says absent; the server keeps the teacher's word.
    let on_a = capture(&a, &[&students[0].class_photo]);
    let session = on_a["session"].as_str().unwrap().to_owned();
    a.sync_until_done();
    a.ok(&["mark", &session, &students[0].id, "absent", "--by", "mrsb"]);
    a.sync_until_done();
    let rows = server.attendance(SECTION);
    let row = rows
        .iter()
        .find(|r| r["session_id"] == session.as_str() && r["student_id"] == students[0].id.as_str())
        .unwrap_or_else(|| panic!("no row for the override in {rows:?}"));
    assert_eq!(
        (
            row["status"].as_str(),
            row["source"].as_str(),
            row["decided_by"].as_str()
        ),
        (Some("absent"), Some("teacher"), Some("mrsb")),
        "{row}"
    );

    // Consent withdrawn centrally: both boxes purge, and B stops recognising the student.
    let gone = &students[0].id;
    server.set_consent(gone, "withdrawn");
    a.sync_until_done();
    b.sync_until_done();
    for classroom in [&a, &b] {
        let store = classroom.store();
        assert_eq!(store.template_count(gone).unwrap(), 0);
        assert!(
            store.check_invariants().unwrap().is_empty(),
            "{:?}",
            store.check_invariants()
        );
    }
    let after = capture(&b, &[&students[0].class_photo, &students[1].class_photo]);
    let recognised = &names(&after["present"]) | &names(&after["review"]);
    assert!(!recognised.contains(gone), "{after}");
    assert!(recognised.contains(&students[1].id), "{after}");
}

#[test]
fn two_boxes_converge_on_the_embedded_store() {
    two_boxes_converge(Backend::Embedded);
}

#[test]
fn two_boxes_converge_on_mongodb() {
    two_boxes_converge(Backend::Mongo);
}

/// Two sessions taken while the server is down arrive once each when it is back.
fn offline_sessions_arrive_once(backend: Backend) {
    let students = synthetic_students(4);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (mut server, _roster) = school(backend, &students);
    // A breaker that stays open long enough to be seen.
    let slow_breaker = QUICK_SYNC.replace("breaker_cooldown_s = 0.2", "breaker_cooldown_s = 2");
    let a = joined(&server, &slow_breaker, "room A");
    let before = server.events_applied();
    server.kill();

    let mut sessions = Vec::new();
    for _ in 0..2 {
        let out = a.ok(&["session", "open", "--section", SECTION]);
        let session = out
            .split_whitespace()
            .find(|w| w.len() == 36)
            .unwrap()
            .to_owned();
        for (i, student) in ids.iter().enumerate() {
            let status = ["present", "absent", "late", "excused"][i % 4];
            a.ok(&["mark", &session, student, status]);
        }
        sessions.push(session);
    }
    // One call and three retries, then the cycle gives up; the fifth failure opens the breaker,
    // which then keeps cycles from calling at all until its cooldown has passed.
    let offline = a.run(&["sync", "--once"]);
    assert_eq!(offline.status.code(), Some(1), "no server, no success");
    let status = a.status();
    assert_eq!(status["outbox"]["waiting"], 2 * (1 + 4), "{status}");
    assert_eq!(status["link"]["consecutive_failures"], 4, "{status}");
    assert_eq!(status["breaker"]["state"], "closed", "{status}");
    let error = status["link"]["last_error"].as_str().unwrap();
    assert!(error.contains("unreachable"), "{status}");
    a.run(&["sync", "--once"]);
    let opened = Instant::now();
    let status = a.status();
    assert_eq!(status["link"]["consecutive_failures"], 5, "{status}");
    assert_eq!(status["breaker"]["state"], "open", "{status}");
    let skipped = String::from_utf8(a.run(&["sync", "--once"]).stdout).unwrap();
    assert!(skipped.contains("skipped"), "{skipped}");
    let text = a.ok(&["status"]);
    assert!(
        text.contains("waiting     10 events") && text.contains("breaker     open"),
        "{text}"
    );

    server.resume();
    std::thread::sleep(Duration::from_secs(2).saturating_sub(opened.elapsed()));
    let resumed = Instant::now();
    let cycles = a.sync_until_done();
    eprintln!(
        "offline sessions: converged in {cycles} cycles, {:?} after the server was back",
        resumed.elapsed()
    );
    // Once more: nothing left to send, nothing applied twice.
    a.sync_once_done();
    assert_eq!(server.events_applied() - before, 10);
    let rows = server.attendance(SECTION);
    for session in &sessions {
        let marks: Vec<&Value> = rows
            .iter()
            .filter(|r| r["session_id"] == session.as_str())
            .collect();
        assert_eq!(marks.len(), 4, "{rows:?}");
        assert!(marks.iter().all(|r| r["source"] == "teacher"));
    }
}

#[test]
fn offline_sessions_arrive_once_on_the_embedded_store() {
    offline_sessions_arrive_once(Backend::Embedded);
}

#[test]
fn offline_sessions_arrive_once_on_mongodb() {
    offline_sessions_arrive_once(Backend::Mongo);
}

/// How much data the bulk tests move, and how: the MongoDB-wire test server is a Python program,
/// an order of magnitude slower than the embedded store, so it gets smaller batches, longer
/// timeouts and a sixth of the data.
struct Bulk {
    sessions: usize,
    templates_per_student: usize,
    config: String,
}

fn bulk(backend: Backend) -> Bulk {
    match backend {
        Backend::Embedded => Bulk {
            sessions: 600,
            templates_per_student: 300,
            config: QUICK_SYNC.to_owned(),
        },
        Backend::Mongo => Bulk {
            sessions: 100,
            templates_per_student: 50,
            config: format!(
                "{}push_batch = 50\n",
                QUICK_SYNC.replace("timeout_s = 2", "timeout_s = 20")
            ),
        },
    }
}

/// The server is SIGKILLed while a box pushes thousands of events and started again: the box
/// retries and the server ends with every event exactly once.
fn server_killed_during_a_push_loses_and_doubles_nothing(backend: Backend) {
    let students = synthetic_students(4);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (mut server, _roster) = school(backend, &students);
    let bulk = bulk(backend);
    let a = joined(&server, &bulk.config, "room A");
    let before = server.events_applied();
    let total = record_sessions(&a, bulk.sessions, &ids);

    let mut sync = a
        .command(&["sync", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.events_applied() == before {
        assert!(Instant::now() < deadline, "the push never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let _ = sync.wait();
    let mid = a.store().outbox_counts().unwrap();
    assert!(
        mid.waiting > 0,
        "the kill came too late to test anything: {mid:?}"
    );
    server.resume();
    let resumed = Instant::now();
    let cycles = a.sync_until_done();
    eprintln!(
        "server killed during a push: converged in {cycles} cycles, {:?} after the restart",
        resumed.elapsed()
    );
    assert_eq!(server.events_applied() - before, total as u64);
    assert_eq!(server.attendance(SECTION).len(), bulk.sessions * 4);
}

/// A box SIGKILLed again and again while it pulls 1200 templates (200 on MongoDB) in pages of
/// 20: its cursor never runs ahead of the templates it holds, and it ends with all of them.
fn box_killed_during_a_pull_never_stores_a_cursor_ahead_of_its_data(backend: Backend) {
    let students = synthetic_students(4);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(backend, &students);
    let bulk = bulk(backend);
    let seeder = joined(&server, &bulk.config, "seeder");
    add_synthetic_templates(&seeder, &ids, bulk.templates_per_student);
    seeder.sync_until_done();

    // The feed as the server holds it: template ids by sequence number.
    let probe = joined(&server, QUICK_SYNC, "probe");
    let feed = full_feed(&server, &probe);
    let templates: Vec<(u64, String)> = feed
        .iter()
        .filter_map(|c| match &c.body {
            ChangeBody::Template { template } => Some((c.seq, template.id.clone())),
            _ => None,
        })
        .collect();
    let total = 4 * bulk.templates_per_student;
    assert_eq!(templates.len(), total);

    let config = format!("{}pull_page = 20\n", bulk.config);
    let b = Classroom::new(&config);
    b.provision(&server.base, &server.provisioning_code("room B"));
    // Each round kills the box as soon as it has stored a page beyond where the round began,
    // so the kill lands in the middle of a pull however fast the server answers.
    let cursor_of = |c: &Classroom| -> u64 {
        c.store()
            .cursor()
            .unwrap()
            .map_or(0, |c| c.parse().unwrap())
    };
    let mut kills = 0;
    for round in 0..12 {
        let start = cursor_of(&b);
        let mut sync = b
            .command(&["sync", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while sync.try_wait().unwrap().is_none() && cursor_of(&b) == start {
            std::thread::sleep(Duration::from_millis(1));
        }
        if sync.try_wait().unwrap().is_none() {
            sync.kill().unwrap();
            kills += 1;
        }
        sync.wait().unwrap();
        let store = b.store();
        let cursor: u64 = store.cursor().unwrap().map_or(0, |c| c.parse().unwrap());
        let held: BTreeSet<String> = store
            .all_templates(SYNTHETIC_MODEL)
            .unwrap()
            .into_iter()
            .map(|t| t.uuid)
            .collect();
        for (seq, id) in &templates {
            if *seq <= cursor {
                assert!(
                    held.contains(id),
                    "round {round}: cursor {cursor} is past template {id} (seq {seq}), which the box does not hold"
                );
            }
        }
        assert!(store.check_invariants().unwrap().is_empty());
    }
    assert!(kills >= 3, "only {kills} kills landed during a pull");
    b.sync_until_done();
    assert_eq!(
        b.store().all_templates(SYNTHETIC_MODEL).unwrap().len(),
        total
    );
}

/// Every change of the school, pulled with `classroom`'s token.
fn full_feed(server: &Server, classroom: &Classroom) -> Vec<shared_proto::sync::Change> {
    let token = std::fs::read_to_string(classroom.data().join("device-token")).unwrap();
    let mut cursor: Option<String> = None;
    let mut changes = Vec::new();
    loop {
        let mut url = format!("{}/v1/sync/pull?limit=1000", server.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: PullResponse = server
            .http
            .get(url)
            .bearer_auth(token.trim())
            .send()
            .unwrap()
            .json()
            .unwrap();
        changes.extend(page.changes);
        cursor = Some(page.next_cursor);
        if !page.more {
            return changes;
        }
    }
}

/// 250 events and 40 templates through a proxy that spoils 30 % of connections: both boxes end
/// with the same state as the server, nothing lost, nothing doubled.
fn a_flaky_network_loses_and_doubles_nothing(backend: Backend) {
    let students = synthetic_students(4);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(backend, &students);
    let proxy = FlakyProxy::start(server.port, 0.3, Duration::from_millis(1500), 0x5eed_2026);
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    // Small batches and pages: many calls, so many of them meet a fault.
    let config = format!("{QUICK_SYNC}push_batch = 10\npull_page = 10\n")
        .replace("timeout_s = 2", "timeout_s = 1");

    let a = Classroom::new(&config);
    let code = server.provisioning_code("room A");
    // Provisioning is one call without retries: try it until a connection passes.
    let mut provisioned = false;
    for _ in 0..10 {
        if a.run(&["provision", "--server", &via_proxy, "--code", &code])
            .status
            .success()
        {
            provisioned = true;
            break;
        }
    }
    assert!(provisioned, "provisioning never got through the proxy");
    a.sync_until_done();
    let before = server.events_applied();
    let events = record_sessions(&a, 50, &ids);
    add_synthetic_templates(&a, &ids, 10);
    let cycles = a.sync_until_done();
    assert_eq!(server.events_applied() - before, events as u64 + 40);
    assert_eq!(server.attendance(SECTION).len(), 50 * 4);

    let b = Classroom::new(&config);
    let code = server.provisioning_code("room B");
    let mut provisioned = false;
    for _ in 0..10 {
        if b.run(&["provision", "--server", &via_proxy, "--code", &code])
            .status
            .success()
        {
            provisioned = true;
            break;
        }
    }
    assert!(provisioned);
    // Until B has pulled everything: its cursor reaches the feed's end.
    let end = full_feed(&server, &a).last().unwrap().seq;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        b.run(&["sync", "--once"]);
        let cursor: u64 = b
            .store()
            .cursor()
            .unwrap()
            .map_or(0, |c| c.parse().unwrap());
        if cursor >= end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not catch up: cursor {cursor} of {end}"
        );
    }
    let held = |c: &Classroom| -> BTreeSet<String> {
        c.store()
            .all_templates(SYNTHETIC_MODEL)
            .unwrap()
            .into_iter()
            .map(|t| t.uuid)
            .collect()
    };
    assert_eq!(held(&b), held(&a));
    assert_eq!(held(&b).len(), 40);
    let faults = proxy.counts.faults();
    assert!(faults >= 10, "the proxy spoiled only {faults} connections");
    eprintln!(
        "flaky network: {cycles} cycles for A; proxy passed {}, dropped {}, stalled {}, cut {}",
        proxy
            .counts
            .passed
            .load(std::sync::atomic::Ordering::Relaxed),
        proxy
            .counts
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        proxy
            .counts
            .stalled
            .load(std::sync::atomic::Ordering::Relaxed),
        proxy.counts.cut.load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// An event the server refuses stays on the box with the server's reason, is shown by `status`,
/// and goes again only when asked.
#[test]
fn rejected_events_are_kept_and_shown() {
    let students = synthetic_students(2);
    let (server, _roster) = school(Backend::Embedded, &students);
    let a = joined(&server, QUICK_SYNC, "room A");
    // The box's own roster import knows a pupil the server has never heard of.
    let mut local = synthetic_students(2);
    local.push(common::Student {
        id: "ghost_pupil".into(),
        enrol_photo: PathBuf::new(),
        class_photo: PathBuf::new(),
    });
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), &local);
    a.ok(&["roster", "import", roster.path().to_str().unwrap()]);
    let session = a
        .ok(&["session", "open", "--section", SECTION])
        .trim()
        .to_owned();
    a.ok(&["mark", &session, "ghost_pupil", "present"]);
    a.ok(&["mark", &session, "pupil_0", "late"]);
    a.sync_until_done();

    let status = a.status();
    assert_eq!(status["outbox"]["waiting"], 0, "{status}");
    assert_eq!(status["outbox"]["rejected"], 1, "{status}");
    let rejected = &status["rejected"][0];
    assert_eq!(rejected["kind"], "mark_set", "{status}");
    assert_eq!(rejected["code"], "unknown_student", "{status}");
    let text = a.ok(&["status"]);
    assert!(
        text.contains("rejected") && text.contains("unknown_student"),
        "{text}"
    );
    let rows = server.attendance(SECTION);
    assert_eq!(
        rows.len(),
        1,
        "the good mark of the same push arrived: {rows:?}"
    );

    let again = a.ok(&["sync", "--once", "--retry-rejected"]);
    assert!(
        again.contains("1 rejected events back in the queue") && again.contains("rejected 1"),
        "{again}"
    );
    assert_eq!(a.status()["outbox"]["rejected"], 1);
}

/// Issue 14 (item 7): the box sends `session_closed` and `template_deleted`. A session closed
/// on the box is closed on the server at the box's time; a re-enrolment's deleted templates are
/// tombstoned in the feed, and another box that held them purges them.
#[test]
fn closed_sessions_and_replaced_templates_reach_the_server() {
    let students = synthetic_students(2);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(Backend::Embedded, &students);
    let a = joined(&server, QUICK_SYNC, "room A");
    let session = a
        .ok(&["session", "open", "--section", SECTION])
        .trim()
        .to_owned();
    a.ok(&["mark", &session, &ids[0], "present"]);
    assert!(a.ok(&["session", "close", &session]).contains("closed"));
    assert!(
        a.ok(&["session", "close", &session])
            .contains("already closed")
    );
    let closed_at = a.store().session_closed_at(&session).unwrap().unwrap();
    add_synthetic_templates(&a, &ids[..1], 2);
    a.sync_until_done();
    assert_eq!(server.session_closed_at(&session), Some(closed_at));

    let b = joined(&server, QUICK_SYNC, "room B");
    assert_eq!(b.store().template_count(&ids[0]).unwrap(), 2);
    let vector: Vec<f32> = (0..512).map(|d| (d as f32).cos()).collect();
    let replaced = a
        .store()
        .replace_templates(
            &ids[0],
            &[NewTemplate {
                student_id: &ids[0],
                model_id: SYNTHETIC_MODEL,
                space: SYNTHETIC_MODEL,
                vector: &vector,
                quality: 0.8,
                source: "enrol-photo",
                crop: None,
            }],
            "test",
        )
        .unwrap();
    assert_eq!(replaced.deleted.len(), 2);
    a.sync_until_done();
    let tombstoned: BTreeSet<String> = full_feed(&server, &b)
        .into_iter()
        .filter_map(|c| match c.body {
            ChangeBody::TemplateDeleted { template, .. } => Some(template),
            _ => None,
        })
        .collect();
    for template in &replaced.deleted {
        assert!(tombstoned.contains(template), "{template}: {tombstoned:?}");
    }
    b.sync_until_done();
    let held: Vec<String> = b
        .store()
        .all_templates(SYNTHETIC_MODEL)
        .unwrap()
        .into_iter()
        .map(|t| t.uuid)
        .collect();
    assert_eq!(held, replaced.added);
    for classroom in [&a, &b] {
        assert!(classroom.store().check_invariants().unwrap().is_empty());
    }
}

/// Sync commands on a box that never joined say what to do, and nothing panics.
#[test]
fn an_unprovisioned_box_says_how_to_join() {
    let a = Classroom::new("");
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), &synthetic_students(1));
    a.ok(&["roster", "import", roster.path().to_str().unwrap()]);
    let text = a.ok(&["status"]);
    assert!(text.contains("not provisioned"), "{text}");
    let sync = a.run(&["sync", "--once"]);
    assert_eq!(sync.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&sync.stderr);
    assert!(stderr.contains("edge-agent provision --server"), "{stderr}");
    let bad = a.run(&["provision", "--server", "rollcall.example", "--code", "x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http://"));
}

/// The long-running agent's loop: it syncs on its own thread while the teacher keeps marking on
/// another connection, runs a cycle when nudged (many nudges during a cycle make one more), reports
/// each cycle, and stops when asked.
#[test]
fn the_background_loop_syncs_while_the_teacher_marks() {
    let students = synthetic_students(3);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(Backend::Embedded, &students);
    let a = joined(&server, QUICK_SYNC, "room A");
    let before = server.events_applied();
    let config = edge_agent::config::Config::load(&a.data().join("edge-agent.toml"))
        .unwrap()
        .sync;
    let (reports, inbox) = std::sync::mpsc::channel();
    let handle = edge_agent::sync::spawn(
        a.data().join("rollcall.sqlite"),
        a.data().to_owned(),
        // A long tick: only the nudges below make cycles after the first.
        edge_agent::config::SyncConfig {
            interval_s: 600.0,
            ..config
        },
        move |report| {
            let _ = reports.send(report);
        },
    );
    let nudge = handle.nudge();
    let mut events = 0;
    for _ in 0..20 {
        events += record_sessions(&a, 1, &ids);
        nudge.sync_now();
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = a.store();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.outbox_counts().unwrap().waiting > 0 {
        assert!(
            Instant::now() < deadline,
            "the loop did not drain the outbox"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    let cycles: Vec<_> = inbox.try_iter().collect();
    assert!(
        (2..=21).contains(&cycles.len()),
        "{} cycles for 20 nudges",
        cycles.len()
    );
    let (last, status) = cycles.last().unwrap().as_ref().unwrap();
    assert!(last.as_ref().unwrap().succeeded(), "{last:?}");
    assert_eq!(status.device_id.as_deref().map(str::len), Some(36));
    assert_eq!(server.events_applied() - before, events as u64);
    assert!(store.check_invariants().unwrap().is_empty());
}

#[test]
fn server_killed_during_a_push_loses_and_doubles_nothing_on_the_embedded_store() {
    server_killed_during_a_push_loses_and_doubles_nothing(Backend::Embedded);
}

#[test]
fn server_killed_during_a_push_loses_and_doubles_nothing_on_mongodb() {
    server_killed_during_a_push_loses_and_doubles_nothing(Backend::Mongo);
}

#[test]
fn box_killed_during_a_pull_never_stores_a_cursor_ahead_of_its_data_on_the_embedded_store() {
    box_killed_during_a_pull_never_stores_a_cursor_ahead_of_its_data(Backend::Embedded);
}

#[test]
fn box_killed_during_a_pull_never_stores_a_cursor_ahead_of_its_data_on_mongodb() {
    box_killed_during_a_pull_never_stores_a_cursor_ahead_of_its_data(Backend::Mongo);
}

#[test]
fn a_flaky_network_loses_and_doubles_nothing_on_the_embedded_store() {
    a_flaky_network_loses_and_doubles_nothing(Backend::Embedded);
}

#[test]
fn a_flaky_network_loses_and_doubles_nothing_on_mongodb() {
    a_flaky_network_loses_and_doubles_nothing(Backend::Mongo);
}

/// A box whose clock ran far ahead (a dead clock battery): the server refuses its marks, which
/// would otherwise beat every later correction, and the box says why and what to do.
#[test]
fn a_box_whose_clock_is_far_ahead_is_told_to_set_it() {
    let students = synthetic_students(2);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(Backend::Embedded, &students);
    let classroom = joined(&server, "", "room 7");
    record_sessions(&classroom, 1, &ids);
    let ten_days_ms = 10 * 24 * 3_600_000_i64;
    let moved = rusqlite::Connection::open(classroom.data().join("rollcall.sqlite"))
        .unwrap()
        .execute(
            "UPDATE outbox SET payload = json_set(payload, '$.at', json_extract(payload, '$.at') + ?1)
             WHERE kind = 'mark_set' AND sent_at IS NULL",
            [ten_days_ms],
        )
        .unwrap();
    assert_eq!(moved, ids.len());
    let out = classroom.ok(&["sync", "--once"]);
    assert!(
        out.contains(&format!("rejected {}", ids.len()))
            && out.contains("rejected: invalid_event: decision time")
            && out.contains("10 days ahead of the server's clock")
            && out.contains("set the box's clock"),
        "{out}"
    );
    assert!(server.attendance(SECTION).is_empty());
}

/// `edge-agent ARGS` on `classroom` with the box's clock `shift` off the real one (libfaketime,
/// e.g. "-3d"); the monotonic clock stays true, as the kernel's does when the wall clock is set.
fn faketime_command(classroom: &Classroom, shift: &str, args: &[&str]) -> String {
    let mut words = vec![
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_owned(),
        "faketime".into(),
        "-f".into(),
        shift.into(),
        env!("CARGO_BIN_EXE_edge-agent").into(),
        "--data-dir".into(),
        classroom.data().display().to_string(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    words.join(" ")
}

/// A box back from a holiday with last term's time (no RTC battery, no network time): the server
/// takes its marks, since an offline box pushes old events, so only the box can tell. Every
/// answer's `Date` shows it: `sync` and `status` say so with the fix, and so does the teacher's
/// screen; once the clock is set, nothing is said.
#[test]
fn a_box_whose_clock_is_days_behind_says_so_everywhere() {
    let students = synthetic_students(2);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(Backend::Embedded, &students);
    let classroom = joined(&server, "", "room 9");
    // Something to push, so the push's report carries the box's clock to the server.
    record_sessions(&classroom, 1, &ids);
    let sync = Command::new("sh")
        .arg("-c")
        .arg(faketime_command(&classroom, "-3d", &["sync", "--once"]))
        .output()
        .expect("faketime is installed (scripts/test installs it)");
    let out = String::from_utf8_lossy(&sync.stdout);
    assert!(
        sync.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(
        out.contains("clock: this box's clock is 3 days behind the server's, so its marks carry the wrong time: set the box's clock from the network: timedatectl set-ntp true"),
        "{out}"
    );
    let three_days_behind = -3 * 86_400_000 - 5_000..=-3 * 86_400_000 + 5_000;
    let offset = classroom.status()["link"]["clock_offset_ms"]
        .as_i64()
        .unwrap();
    assert!(three_days_behind.contains(&offset), "{offset}");
    // The server measured the same from the push's report, for the devices page.
    let measured = server.device_clock_offset("room 9").unwrap();
    assert!(three_days_behind.contains(&measured), "{measured}");
    let status = classroom.ok(&["status"]);
    assert!(
        status.contains("clock       3 days behind the server's: set the box's clock from the network: timedatectl set-ntp true (as the server's answer of "),
        "{status}"
    );

    // The clock set again: the next answer says so, and nothing is shown.
    let in_time = |classroom: &Classroom| {
        let out = classroom.ok(&["sync", "--once"]);
        assert!(!out.contains("clock"), "{out}");
        let offset = classroom.status()["link"]["clock_offset_ms"]
            .as_i64()
            .unwrap();
        assert!(offset.abs() < 5_000, "{offset}");
        let status = classroom.ok(&["status"]);
        assert!(
            status.contains("clock       in time with the server's (as the server's answer of ")
                && !status.contains("timedatectl"),
            "{status}"
        );
    };
    record_sessions(&classroom, 1, &ids);
    in_time(&classroom);
    let measured = server.device_clock_offset("room 9").unwrap();
    assert!(measured.abs() < 5_000, "{measured}");

    // The teacher's screen under the wrong clock again: its own sync loop finds it out, since
    // the store now says the clock is right.
    let screen = common::tmux::Tmux::start(
        classroom.data(),
        &format!(
            "{}; echo EXITED:$?; sleep 60",
            faketime_command(
                &classroom,
                "-3d",
                &["--source", "camera", "--section", SECTION]
            )
        ),
        80,
        24,
    );
    let text = screen.wait_for("the clock's warning", Duration::from_secs(60), |s| {
        s.contains(
            "⚠ Clock 3 days behind the server's: marks get the wrong time. Ask IT to set it.",
        )
    });
    assert!(text.contains("● online"), "{text}");
    screen.keys("q");
    screen.wait_for("the screen to exit", Duration::from_secs(60), |s| {
        s.contains("EXITED:0")
    });

    in_time(&classroom);
}

/// A school that runs its server behind its own CA: a box refuses the real server's certificate
/// (with a message that says what to set) until `ca_file` names that CA; then it provisions,
/// pulls its roster and pushes attendance over HTTPS.
#[test]
fn a_box_syncs_over_https_only_when_it_trusts_the_schools_ca() {
    let ca = tls::SchoolCa::new();
    let students = synthetic_students(2);
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), &students);
    let mut server = Server::start_https(Backend::Embedded, &ca.cert_pem, &ca.key_pem, &ca.ca_pem);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    server.set_up_school(roster.path(), &ids);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let code = server.provisioning_code("room 9");

    let stranger = Classroom::new("");
    let refused = stranger.run(&["provision", "--server", &server.base, "--code", &code]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("certificate is not trusted") && stderr.contains("ca_file"),
        "{stderr}"
    );
    assert!(!stranger.data().join("device-token").exists());

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("school-ca.pem");
    std::fs::write(&ca_path, &ca.ca_pem).unwrap();
    let config = format!("[sync]\nca_file = {:?}\n", ca_path.to_str().unwrap());
    // The refused attempt never reached the server, so the code is still good.
    let trusted = Classroom::new(&config);
    trusted.provision(&server.base, &code);
    trusted.sync_until_done();
    assert_eq!(trusted.store().section_students(SECTION).unwrap().len(), 2);
    let events = record_sessions(&trusted, 1, &ids);
    assert!(events > 0);
    trusted.sync_until_done();
    let rows = server.attendance(SECTION);
    assert_eq!(rows.len(), ids.len(), "{rows:?}");
}
