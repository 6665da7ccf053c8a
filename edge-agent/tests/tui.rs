//! The teacher screen end to end: the real binary in a tmux terminal of 80x24, a store with a
//! class enrolled from ../shared/faces, `--source images:DIR` replaying class photos as camera
//! frames. Keys go in with `send-keys`, the screen comes back with `capture-pane`, and the
//! database must hold exactly what the teacher left on the screen.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::tmux::Tmux;
use common::{faces_dir, pipeline};
use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::enrolment::{EnrolOptions, MAX_ENROL_YAW_DEGREES, enrol};
use edge_agent::store::{MarkSource, MarkStatus, Store};
use edge_agent::vision::{Pick, Pipeline, select_face};

const SECTION: &str = "c1";

struct Person {
    id: String,
    enrol_photo: PathBuf,
    class_photo: PathBuf,
    similarity: f32,
}

/// The screen's name for a roster id: `write_oneroster` splits it at the first `_`.
fn display_name(id: &str) -> String {
    let (given, family) = id.split_once('_').unwrap_or((id, ""));
    format!("{given} {family}").trim().to_owned()
}

fn central_vector(pipeline: &mut Pipeline, photo: &Path, enrolment: bool) -> Option<Vec<f32>> {
    let (frame, mut faces) = common::faces_of(pipeline, photo);
    let pick = if enrolment { None } else { Some(Pick::Central) };
    let idx = select_face(&faces, &pipeline.gate, pick, frame.dimensions()).ok()?;
    if enrolment && faces[idx].quality.yaw_degrees.abs() > MAX_ENROL_YAW_DEGREES {
        return None;
    }
    let face = faces.swap_remove(idx);
    Some(pipeline.embed([&face.aligned]).ok()?.remove(0).vector)
}

/// From LFW's same-person pairs: two students whose class photos match clearly, one whose photo
/// lands between the review and confident thresholds, and one who stays home.
fn class(pipeline: &mut Pipeline) -> (Vec<Person>, Person, Person) {
    let (review, confident) = (
        pipeline.manifest().embedder.review,
        pipeline.manifest().embedder.confident,
    );
    let dir = faces_dir().join("lfw-dev");
    let pairs = std::fs::read_to_string(dir.join("pairs.tsv")).unwrap();
    let (mut present, mut reviewed, mut home) = (Vec::new(), None, None);
    let mut seen = Vec::new();
    for line in pairs.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let id = cols[2].split('/').next().unwrap().to_owned();
        if cols[1] != "1" || seen.contains(&id) {
            continue;
        }
        seen.push(id.clone());
        let enrol_photo = dir.join("images").join(cols[2]);
        let class_photo = dir.join("images").join(cols[3]);
        let (Some(a), Some(b)) = (
            central_vector(pipeline, &enrol_photo, true),
            central_vector(pipeline, &class_photo, false),
        ) else {
            continue;
        };
        let person = Person {
            id,
            enrol_photo,
            class_photo,
            similarity: a.iter().zip(&b).map(|(x, y)| x * y).sum(),
        };
        // Margins from both thresholds, so a small difference between this measure and the
        // capture's cannot move anyone across one.
        if person.similarity > review + 0.02 && person.similarity < confident - 0.02 {
            reviewed.get_or_insert(person);
        } else if person.similarity > confident + 0.1 && present.len() < 2 {
            present.push(person);
        } else if home.is_none() {
            home = Some(person);
        }
        if present.len() == 2
            && let (Some(_), Some(_)) = (&reviewed, &home)
        {
            return (present, reviewed.take().unwrap(), home.take().unwrap());
        }
    }
    panic!("LFW dev lacks two clear pairs, one in the review band and one more person");
}

/// The teacher screen on `data` in an 80x24 tmux terminal; "EXITED:<status>" shows when it ends.
fn start_screen(data: &Path, source: &str) -> Tmux {
    let command = format!(
        "{} --data-dir {} --source {source} --section {SECTION}; echo EXITED:$?; sleep 60",
        env!("CARGO_BIN_EXE_edge-agent"),
        data.display(),
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Tmux::start(workspace, &command, 80, 24)
}

/// Issue 6: no camera is a clear message, on the screen and from `capture`, and the teacher
/// still marks by hand.
#[test]
fn without_a_camera_the_screen_says_so_and_marks_by_hand() {
    if Path::new("/dev/video0").exists() {
        eprintln!("skipped: this machine has a camera (/dev/video0)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (roster, data) = (dir.path().join("roster"), dir.path().join("data"));
    for d in [&roster, &data] {
        std::fs::create_dir_all(d).unwrap();
    }
    let students: Vec<common::Student> = ["Ann_Lee", "Bo_Chan"]
        .iter()
        .map(|id| common::Student {
            id: id.to_string(),
            enrol_photo: PathBuf::new(),
            class_photo: PathBuf::new(),
        })
        .collect();
    common::write_oneroster(&roster, &students);
    let mut store = Store::open(&data.join("rollcall.sqlite")).unwrap();
    store
        .apply_roster(
            &edge_agent::roster::read_oneroster(&roster).unwrap(),
            "test",
        )
        .unwrap();
    drop(store);

    let capture = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--data-dir")
        .arg(&data)
        .args(["capture", "--section", SECTION, "--source", "camera"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&capture.stderr);
    assert_eq!(capture.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no camera found"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let tmux = start_screen(&data, "camera");
    let minute = Duration::from_secs(60);
    tmux.wait_for("the no-camera message", minute, |s| {
        s.contains("no camera found") && s.contains("NOT MARKED (2)")
    });
    tmux.keys("c");
    tmux.keys("p");
    tmux.wait_for("the mark", minute, |s| {
        s.contains("PRESENT (1)") && s.contains("Roll · session")
    });
    tmux.keys("q");
    tmux.wait_for("the program to exit", minute, |s| s.contains("EXITED:0"));
    let store = Store::open(&data.join("rollcall.sqlite")).unwrap();
    let session = store
        .pending_events()
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "session_opened")
        .expect("the mark opened a session");
    let session: serde_json::Value = serde_json::from_str(&session.payload).unwrap();
    let marks: Vec<(String, MarkStatus, MarkSource)> = store
        .marks(session["session"].as_str().unwrap())
        .unwrap()
        .into_iter()
        .map(|m| (m.student_id, m.status, m.source))
        .collect();
    assert_eq!(
        marks,
        vec![("Ann_Lee".into(), MarkStatus::Present, MarkSource::Teacher)]
    );
}

#[test]
fn capture_review_and_mark_through_the_screen() {
    let mut pipeline = pipeline();
    let (present, reviewed, home) = class(&mut pipeline);
    let dir = tempfile::tempdir().unwrap();
    let (roster, data, frames) = (
        dir.path().join("roster"),
        dir.path().join("data"),
        dir.path().join("frames"),
    );
    for d in [&roster, &data, &frames] {
        std::fs::create_dir_all(d).unwrap();
    }
    let students: Vec<common::Student> = present
        .iter()
        .chain([&reviewed, &home])
        .map(|p| common::Student {
            id: p.id.clone(),
            enrol_photo: p.enrol_photo.clone(),
            class_photo: p.class_photo.clone(),
        })
        .collect();
    common::write_oneroster(&roster, &students);
    let mut store = Store::open(&data.join("rollcall.sqlite")).unwrap();
    store
        .apply_roster(
            &edge_agent::roster::read_oneroster(&roster).unwrap(),
            "test",
        )
        .unwrap();
    for s in &students {
        store
            .set_consent(&s.id, edge_agent::store::Consent::Granted, "guardian")
            .unwrap();
        let photo = load_image(&s.enrol_photo, &ImageLimits::default()).unwrap();
        enrol(
            &mut pipeline,
            &mut store,
            &s.id,
            &photo,
            &EnrolOptions::default(),
        )
        .unwrap_or_else(|e| panic!("enrolling {}: {e}", s.id));
    }
    drop(store);
    // The camera sees the three who came, one photo each; the fourth stays home.
    for (i, p) in present.iter().chain([&reviewed]).enumerate() {
        std::os::unix::fs::symlink(&p.class_photo, frames.join(format!("{i:02}.jpg"))).unwrap();
    }

    let tmux = start_screen(&data, &format!("images:{}", frames.display()));
    let minute = Duration::from_secs(60);
    tmux.wait_for("the camera and the models", minute, |s| {
        s.contains("capture from images:")
    });

    tmux.keys("c");
    let screen = tmux.wait_for("the capture's result", minute, |s| {
        s.contains("capture done") && s.contains("NEEDS REVIEW (1)")
    });
    let line_of = |screen: &str, id: &str| -> String {
        let name = display_name(id);
        screen
            .lines()
            // A review row's candidates line names other students too.
            .find(|l| l.contains(&name) && !l.contains("looks like"))
            .unwrap_or_else(|| panic!("{name} is not on the screen:\n{screen}"))
            .to_owned()
    };
    for p in &present {
        assert!(line_of(&screen, &p.id).contains("present"), "{screen}");
    }
    assert!(
        line_of(&screen, &reviewed.id).contains("needs review"),
        "{screen}"
    );
    assert!(line_of(&screen, &home.id).contains("absent"), "{screen}");
    assert!(screen.contains("ABSENT (1)"), "{screen}");
    // The background sync loop runs beside the screen and says the box has not joined a server.
    assert!(screen.contains("sync: not provisioned"), "{screen}");

    // The review item is first and selected: confirm it. The cursor stays in place, which is now
    // the one absent student: they came in late.
    tmux.keys("y");
    let screen = tmux.wait_for("the confirmed review", minute, |s| {
        s.contains("review settled") && s.contains("PRESENT (3)")
    });
    assert!(
        line_of(&screen, &reviewed.id).contains("teacher"),
        "{screen}"
    );
    tmux.keys("l");
    tmux.wait_for("the late mark", minute, |s| {
        s.contains("LATE (1)") && line_of(s, &home.id).contains("late")
    });

    // Smaller and larger terminals redraw; the program keeps running.
    tmux.resize(60, 20);
    tmux.wait_for("a 60x20 screen", minute, |s| {
        s.lines().count() <= 20 && s.contains("Rollcall") && s.contains("LATE (1)")
    });
    tmux.resize(200, 60);
    tmux.wait_for("a 200x60 screen", minute, |s| {
        s.contains("Rollcall") && s.contains("present absent late excused")
    });
    tmux.resize(80, 24);

    tmux.keys("q");
    tmux.wait_for("the program to exit", minute, |s| s.contains("EXITED:0"));
    drop(tmux);

    // The box restarts mid-lesson: the screen continues the lesson's session, marks and all,
    // rather than opening a second one.
    let tmux = start_screen(&data, &format!("images:{}", frames.display()));
    tmux.wait_for("the session from before the restart", minute, |s| {
        s.contains("LATE (1)") && s.contains("PRESENT (3)")
    });
    tmux.keys("q");
    tmux.wait_for("the program to exit", minute, |s| s.contains("EXITED:0"));

    let store = Store::open(&data.join("rollcall.sqlite")).unwrap();
    let sessions: Vec<String> = {
        let outbox = store.pending_events().unwrap();
        outbox
            .iter()
            .filter(|e| e.kind == "session_opened")
            .map(|e| e.payload.clone())
            .collect()
    };
    assert_eq!(
        sessions.len(),
        1,
        "one session for the lesson: {sessions:?}"
    );
    let session: serde_json::Value = serde_json::from_str(&sessions[0]).unwrap();
    let mut marks: Vec<(String, MarkStatus, MarkSource)> = store
        .marks(session["session"].as_str().unwrap())
        .unwrap()
        .into_iter()
        .map(|m| (m.student_id, m.status, m.source))
        .collect();
    marks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (
            present[0].id.clone(),
            MarkStatus::Present,
            MarkSource::Machine,
        ),
        (
            present[1].id.clone(),
            MarkStatus::Present,
            MarkSource::Machine,
        ),
        (
            reviewed.id.clone(),
            MarkStatus::Present,
            MarkSource::Teacher,
        ),
        (home.id.clone(), MarkStatus::Late, MarkSource::Teacher),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(marks, expected);
    // Quitting left the roll: the first quit closed the session, the second changed nothing.
    let session_id = session["session"].as_str().unwrap();
    assert!(store.session_closed_at(session_id).unwrap().is_some());
    let closes = store
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "session_closed")
        .count();
    assert_eq!(closes, 1);
    assert!(store.check_invariants().unwrap().is_empty());
}
