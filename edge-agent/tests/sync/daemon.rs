//! `edge-agent daemon` (issue 18) as systemd runs it: a real process with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC`, syncing a provisioned box with a real server while the teacher's screen loop
//! runs beside it, answering `/health`, `/metrics`, `/status` and `POST /sync`, and handing sync
//! back to the screen when it stops.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::Backend;
use super::{Classroom, QUICK_SYNC, capture, common, joined, record_sessions, school};

/// A daemon killed when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon as systemd starts it, on a free local port; its address.
fn start_daemon(classroom: &Classroom, notify: &std::path::Path) -> (Daemon, String) {
    let mut child = classroom
        .command(&["daemon"])
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = common::listening_address(&mut child).unwrap_or_else(|line| panic!("{line:?}"));
    (Daemon(child), format!("http://{addr}"))
}

/// The next message on the notify socket, within 20 s.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn get(url: &str) -> (u16, String) {
    let response = reqwest::blocking::Client::new().get(url).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn the_daemon_syncs_beside_the_screen_reports_its_health_and_hands_back() {
    let students = common::students(2);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    let (server, _roster) = school(Backend::Embedded, &students);
    let config = format!("{QUICK_SYNC}[daemon]\nlisten = \"127.0.0.1:0\"\n");
    let classroom = joined(&server, &config, "room A");
    for s in &students {
        classroom.ok(&[
            "enroll",
            "--student",
            &s.id,
            s.enrol_photo.to_str().unwrap(),
        ]);
    }
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    // What the server has of this box before the daemon runs, to count what the daemon sends.
    let (applied_before, sent_before) = (
        server.events_applied(),
        classroom.store().outbox_counts().unwrap().sent,
    );
    let (mut daemon, url) = start_daemon(&classroom, &notify_path);
    let ready = next_notification(&notify);
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("STATUS=syncing; health at {url}/health")),
        "{ready}"
    );
    // Watchdog pings at half of WATCHDOG_USEC while the loop ticks.
    let ping = next_notification(&notify);
    assert_eq!(ping.trim_end(), "WATCHDOG=1");
    // The first ping may come before the sync thread has taken the lock (the watchdog's first
    // tick is at once, and the loop counts as alive until its first cycle is due).
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        if let Some(holder) = edge_agent::sync::lock::holder(classroom.data()) {
            break holder;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never held the sync lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (holder.by.as_str(), holder.url.as_deref()),
        ("daemon", Some(url.as_str()))
    );

    // The teacher's screen starts beside it: its loop does not sync, it follows the daemon.
    let (reports, inbox) = std::sync::mpsc::channel();
    let sync_config = edge_agent::config::Config::load(&classroom.data().join("edge-agent.toml"))
        .unwrap()
        .sync;
    let screen = edge_agent::sync::spawn(
        classroom.data().join("rollcall.sqlite"),
        classroom.data().to_owned(),
        sync_config,
        move |report| {
            let _ = reports.send(report);
        },
    );
    // The teacher captures and marks; the screen asks the daemon, which syncs them.
    let outcome = capture(
        &classroom,
        &[&students[0].class_photo, &students[1].class_photo],
    );
    let ids_set: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(super::names(&outcome["present"]), ids_set, "{outcome}");
    record_sessions(&classroom, 3, &ids);
    screen.nudge().sync_now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let health: Value = loop {
        let (code, body) = get(&format!("{url}/health"));
        assert_eq!(code, 200, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        if health["outbox_waiting"] == 0 && health["status"] == "ok" {
            break health;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["syncing"], "daemon", "{health}");
    assert_eq!(health["provisioned"], true, "{health}");
    assert_eq!(health["breaker"], "closed", "{health}");
    assert!(health["sync_lag_s"].as_i64().unwrap() < 30, "{health}");
    // Every report the screen got came from the daemon's state: no cycle of its own.
    let seen: Vec<_> = inbox.try_iter().collect();
    assert!(!seen.is_empty());
    for report in &seen {
        let (cycle, status) = report.as_ref().unwrap();
        assert!(cycle.is_none(), "the screen ran a cycle beside the daemon");
        assert!(status.device_id.is_some());
    }

    let (code, metrics) = get(&format!("{url}/metrics"));
    assert_eq!(code, 200);
    assert_eq!(
        common::metric(&metrics, "rollcall_edge_up"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        common::metric(&metrics, "rollcall_edge_outbox_waiting"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        common::metric(&metrics, "rollcall_edge_sync_cycles_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("rollcall_edge_breaker{state=\"closed\"} 1"),
        "{metrics}"
    );
    // The box's clock against the server's, on one host: within the clock rule's minute, and
    // within a whole-second Date header and a round trip of nothing.
    let clock = common::metric(&metrics, "rollcall_edge_clock_offset_seconds")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(clock.abs() < 2.0, "{metrics}");
    // The capture the screen's process made, stage by stage.
    assert_eq!(
        common::metric(&metrics, "rollcall_edge_captures_total"),
        Some(1.0),
        "{metrics}"
    );
    // Every face the detector finds in the two frames, as `detect` counts them.
    let detected: usize = [&students[0].class_photo, &students[1].class_photo]
        .iter()
        .map(|photo| {
            let line = classroom.ok(&["detect", "--json", photo.to_str().unwrap()]);
            let found: Value = serde_json::from_str(&line).unwrap();
            found["faces"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(
        common::metric(&metrics, "rollcall_edge_capture_faces_total"),
        Some(detected as f64),
        "{metrics}"
    );
    assert!(
        metrics.contains("rollcall_edge_capture_stage_seconds_count{stage=\"frames\"} 1"),
        "{metrics}"
    );
    let (code, status) = get(&format!("{url}/status"));
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["outbox"]["waiting"], 0, "{status}");
    // The server applied exactly what the box sent through the daemon.
    let sent = classroom.store().outbox_counts().unwrap().sent;
    assert!(sent > sent_before);
    let server_events = server.events_applied();
    assert_eq!(server_events - applied_before, (sent - sent_before) as u64);

    // systemd stops the daemon: STOPPING, a clean exit, and the screen takes sync over.
    let pid = daemon.0.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let message = next_notification(&notify);
        if message.contains("STOPPING=1") {
            break;
        }
        assert!(Instant::now() < deadline, "no STOPPING=1");
    }
    assert!(daemon.0.wait().unwrap().success());
    record_sessions(&classroom, 1, &ids);
    screen.nudge().sync_now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while classroom.store().outbox_counts().unwrap().waiting > 0 {
        assert!(
            Instant::now() < deadline,
            "the screen did not take sync over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        edge_agent::sync::lock::holder(classroom.data()).map(|h| h.by),
        Some("screen".to_owned())
    );
    // And what the screen sent after it took over.
    let sent_after = classroom.store().outbox_counts().unwrap().sent;
    assert_eq!(
        server.events_applied() - server_events,
        (sent_after - sent) as u64
    );
    screen.stop();
}

/// `doctor` on a provisioned box: every check passes but the plain-HTTP server (a warning with
/// its fix); with the server down, the server check fails and so does the exit status; with no
/// camera, the camera check fails and says what to do.
#[test]
fn doctor_checks_a_box_and_names_each_fix() {
    let students = super::synthetic_students(2);
    let (mut server, _roster) = school(Backend::Embedded, &students);
    let classroom = joined(&server, QUICK_SYNC, "room A");
    let frames = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::students(1)[0].enrol_photo.clone(),
        frames.path().join("frame.jpg"),
    )
    .unwrap();
    let source = format!("images:{}", frames.path().display());
    let doctor = |extra: &[&str]| {
        let mut args = vec!["doctor", "--json"];
        args.extend_from_slice(extra);
        let output = classroom.run(&args);
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let verdicts: std::collections::BTreeMap<String, String> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["verdict"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (output.status.code(), verdicts, report)
    };
    let (code, verdicts, report) = doctor(&["--source", &source]);
    assert_eq!(code, Some(0), "{report}");
    let expected: Vec<(&str, &str)> = vec![
        ("camera", "ok"),
        ("clock", "ok"),
        ("disk", "ok"),
        ("models", "ok"),
        ("outbox", "ok"),
        // No template yet on this box: nobody can be recognised.
        ("recognition", "warn"),
        ("runtime", "ok"),
        // Plain HTTP in the test: the token crosses the network unencrypted.
        ("server", "warn"),
        ("store", "ok"),
    ];
    let got: Vec<(&str, &str)> = verdicts
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, expected, "{report}");
    let server_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "server")
        .unwrap();
    assert!(
        server_check["detail"]
            .as_str()
            .unwrap()
            .contains("answered this box's token"),
        "{report}"
    );
    assert!(
        server_check["fix"].as_str().unwrap().contains("HTTPS"),
        "{report}"
    );

    // The text form: a line per check, a fix under each warning.
    let text = classroom.ok(&["doctor", "--source", &source]);
    assert!(
        text.lines().any(|l| l.starts_with("ok    models ")),
        "{text}"
    );
    assert!(text.contains("fix: serve the server over HTTPS"), "{text}");

    // A Jetson's setting on a runtime without TensorRT: inference falls back to the CPU, and
    // doctor warns with the fix.
    let config = classroom.data().join("edge-agent.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[vision]\nprovider = \"tensorrt\"\n");
    std::fs::write(&config, text).unwrap();
    let (code, verdicts, report) = doctor(&["--source", &source]);
    assert_eq!(
        (code, verdicts["runtime"].as_str()),
        (Some(0), "warn"),
        "{report}"
    );
    assert!(report.to_string().contains("inference on cpu"), "{report}");

    // The server down, and a camera that is not there: both fail, with their fixes.
    server.kill();
    let (code, verdicts, report) = doctor(&["--source", "camera:7"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(verdicts["server"], "fail", "{report}");
    assert_eq!(verdicts["camera"], "fail", "{report}");
    assert!(!verdicts.contains_key("clock"), "{report}");
    assert_eq!(verdicts["store"], "ok", "{report}");
}
