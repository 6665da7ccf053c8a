//! The teacher's and IT's day through the real binary: roster import, consent, enrolment, capture
//! with `--json`, review and teacher marks, the recognition off switch, and manual roll call by
//! the timetable.

mod common;

use common::{edge_agent, names, ok};

use serde_json::Value;

const SECTION: &str = "c1";

#[test]
fn import_enrol_capture_review_and_mark() {
    let students = common::students(4);
    let dir = tempfile::tempdir().unwrap();
    let (roster, data) = (dir.path().join("roster"), dir.path().join("data"));
    std::fs::create_dir_all(&roster).unwrap();
    common::write_oneroster(&roster, &students);
    let out = ok(&data, &["roster", "import", roster.to_str().unwrap()]);
    assert!(out.contains("4 students"), "{out}");

    for s in &students {
        ok(&data, &["consent", &s.id, "grant", "--by", "guardian"]);
        let out = ok(
            &data,
            &[
                "enroll",
                "--student",
                &s.id,
                s.enrol_photo.to_str().unwrap(),
            ],
        );
        assert!(out.contains("no photo kept"), "{out}");
    }
    // Three of the four are in the burst (one frame each); the fourth stays home.
    let frames: Vec<&str> = students[..3]
        .iter()
        .map(|s| s.class_photo.to_str().unwrap())
        .collect();
    let mut args = vec!["capture", "--section", SECTION, "--json", "--images"];
    args.extend(&frames);
    let outcome: Value = serde_json::from_str(&ok(&data, &args)).unwrap();
    let mut present_or_review = [names(&outcome["present"]), names(&outcome["review"])].concat();
    present_or_review.sort();
    let mut expected: Vec<String> = students[..3].iter().map(|s| s.id.clone()).collect();
    expected.sort();
    assert_eq!(present_or_review, expected, "{outcome}");
    assert_eq!(names(&outcome["absent"]), vec![students[3].id.clone()]);
    for key in ["unknown_faces", "too_small_faces"] {
        assert!(outcome[key].is_u64(), "{key} in {outcome}");
    }
    assert!(outcome["not_on_roster"].as_array().unwrap().is_empty());

    let session = outcome["session"].as_str().unwrap();
    let home = &students[3].id;
    assert_eq!(
        ok(&data, &["mark", session, home, "late"]).trim(),
        format!("{home}: late")
    );
    // Only a review item can be confirmed or rejected.
    let refused = edge_agent(&data, &["review", session, home, "confirm"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not waiting for review"));
    // A teacher can't mark a student of another class, nor into a session that doesn't exist.
    assert_eq!(
        edge_agent(&data, &["mark", session, "nobody", "present"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        edge_agent(&data, &["mark", "no-such-session", home, "present"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn with_recognition_switched_off_capture_and_enrolment_refuse() {
    let students = common::students(2);
    let dir = tempfile::tempdir().unwrap();
    let (roster, data) = (dir.path().join("roster"), dir.path().join("data"));
    std::fs::create_dir_all(&roster).unwrap();
    common::write_oneroster(&roster, &students);
    ok(&data, &["roster", "import", roster.to_str().unwrap()]);
    ok(
        &data,
        &["consent", &students[0].id, "grant", "--by", "guardian"],
    );
    std::fs::write(data.join("edge-agent.toml"), "recognition = false\n").unwrap();

    for args in [
        vec![
            "enroll",
            "--student",
            &students[0].id,
            students[0].enrol_photo.to_str().unwrap(),
        ],
        vec![
            "capture",
            "--section",
            SECTION,
            "--images",
            students[0].class_photo.to_str().unwrap(),
        ],
    ] {
        let output = edge_agent(&data, &args);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("face recognition is disabled at this school"),
            "{stderr}"
        );
    }

    // Manual roll call still works: the timetable picks the section, the teacher marks by hand.
    ok(
        &data,
        &[
            "schedule",
            "add",
            "--section",
            SECTION,
            "--day",
            "tue",
            "--start",
            "08:30",
            "--end",
            "09:15",
            "--room",
            "12",
        ],
    );
    let listed = ok(&data, &["schedule", "list"]);
    assert!(
        listed.contains("Tue 08:30-09:15") && listed.contains(SECTION),
        "{listed}"
    );
    let refused = edge_agent(&data, &["session", "open", "--at", "tue-09:15"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no lesson in the timetable"),
        "the lesson ends at 09:15"
    );
    let session = ok(&data, &["session", "open", "--at", "tue-08:40"]);
    let session = session.trim();
    ok(&data, &["mark", session, &students[0].id, "present"]);
    ok(&data, &["mark", session, &students[1].id, "late"]);
    let shown: Value =
        serde_json::from_str(&ok(&data, &["session", "show", session, "--json"])).unwrap();
    assert_eq!(shown["section"], SECTION);
    let statuses: Vec<(String, String)> = shown["students"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["student"].as_str().unwrap().to_owned(),
                format!(
                    "{} by {}",
                    r["status"].as_str().unwrap(),
                    r["source"].as_str().unwrap()
                ),
            )
        })
        .collect();
    let mut expected = vec![
        (students[0].id.clone(), "present by teacher".to_owned()),
        (students[1].id.clone(), "late by teacher".to_owned()),
    ];
    expected.sort();
    assert_eq!(statuses, expected);
    // A bad lesson is refused with the reason, and nothing is written.
    let bad = edge_agent(
        &data,
        &[
            "schedule",
            "add",
            "--section",
            SECTION,
            "--day",
            "tue",
            "--start",
            "10:00",
            "--end",
            "09:00",
        ],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must end after it starts"));
    assert_eq!(ok(&data, &["schedule", "list"]).lines().count(), 1);

    // A typo in the switch is an error, not silently "on".
    std::fs::write(data.join("edge-agent.toml"), "recognise = false\n").unwrap();
    let output = edge_agent(
        &data,
        &["capture", "--section", SECTION, "--images", "x.jpg"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("recognise"));
}

/// Issue 14 (item 7): `enroll --replace` swaps a student's templates for the new photo's in one
/// step, and queues a `template_deleted` for each old one; with no usable photo it keeps them.
#[test]
fn re_enrolment_replaces_the_templates_and_tells_the_server() {
    let students = common::students(1);
    let student = &students[0];
    let dir = tempfile::tempdir().unwrap();
    let (roster, data) = (dir.path().join("roster"), dir.path().join("data"));
    std::fs::create_dir_all(&roster).unwrap();
    common::write_oneroster(&roster, &students);
    ok(&data, &["roster", "import", roster.to_str().unwrap()]);
    ok(
        &data,
        &["consent", &student.id, "grant", "--by", "guardian"],
    );
    let enrol_photo = student.enrol_photo.to_str().unwrap();
    ok(&data, &["enroll", "--student", &student.id, enrol_photo]);
    let store = || edge_agent::store::Store::open(&data.join("rollcall.sqlite")).unwrap();
    let old = store().all_templates("fr_feature-v1").unwrap();
    assert_eq!(old.len(), 1);

    let not_a_photo = dir.path().join("not-a-photo.jpg");
    std::fs::write(&not_a_photo, "text").unwrap();
    let refused = edge_agent(
        &data,
        &[
            "enroll",
            "--replace",
            "--student",
            &student.id,
            not_a_photo.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("templates were kept"));
    assert_eq!(store().all_templates("fr_feature-v1").unwrap(), old);

    let class_photo = student.class_photo.to_str().unwrap();
    let out = ok(
        &data,
        &["enroll", "--replace", "--student", &student.id, class_photo],
    );
    assert!(out.contains("1 earlier templates deleted"), "{out}");
    let store = store();
    let now = store.all_templates("fr_feature-v1").unwrap();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].uuid, old[0].uuid);
    let deleted: Vec<String> = store
        .pending_events()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "template_deleted")
        .map(|e| e.payload)
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(deleted[0].contains(&old[0].uuid), "{deleted:?}");
    assert!(store.check_invariants().unwrap().is_empty());
}
