//! The store on bad input, through the library and through the binary: a file that is not a
//! database, a database from a newer build, and ids that do not exist. Each is refused with one
//! clear line and nothing is written.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::faces_dir;
use edge_agent::roster::{Enrolment, EnrolmentRole, Person, RosterImport, Section};
use edge_agent::store::{MarkStatus, SessionRecord, Store, StoreError};
use tempfile::TempDir;

const DATABASE_FILE: &str = "rollcall.sqlite";
const SECTION: &str = "c1";
const STUDENT: &str = "s1";
/// Where SQLite keeps `PRAGMA user_version`: four big-endian bytes of the file header.
const USER_VERSION_OFFSET: usize = 60;

/// A data folder whose database holds one section with one student, who has no recorded consent.
fn data_dir_with_roster() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    let roster = RosterImport {
        sections: vec![Section {
            id: SECTION.into(),
            title: "Year 3 Maths".into(),
            school_id: "o1".into(),
            active: true,
        }],
        students: vec![Person {
            id: STUDENT.into(),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            active: true,
        }],
        enrolments: vec![Enrolment {
            section_id: SECTION.into(),
            person_id: STUDENT.into(),
            role: EnrolmentRole::Student,
            active: true,
        }],
        ..RosterImport::default()
    };
    store.apply_roster(&roster, "test").unwrap();
    dir
}

fn photo() -> PathBuf {
    faces_dir().join("lfw-dev/images/Abel_Pacheco/Abel_Pacheco_0001.jpg")
}

/// Runs `edge-agent --data-dir DIR ARGS` and checks that it failed with exit code 1 and exactly
/// one line on stderr, without a panic; returns that line.
fn refused(data_dir: &Path, args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?} printed a result");
    stderr.trim_end().to_owned()
}

fn pending_events(data_dir: &Path) -> usize {
    Store::open(&data_dir.join(DATABASE_FILE))
        .unwrap()
        .pending_events()
        .unwrap()
        .len()
}

#[test]
fn a_text_file_given_as_the_database_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let text = "name,present\nAda,yes\n".repeat(100);
    fs::write(&path, &text).unwrap();

    let error = Store::open(&path)
        .err()
        .expect("a text file is no database");
    assert!(
        matches!(&error, StoreError::NotADatabase { path: p, .. } if *p == path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("is not a Rollcall database"), "{message}");

    let line = refused(dir.path(), &["mark", "session", STUDENT, "present"]);
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(line.contains("is not a Rollcall database"), "{line}");
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn a_database_from_a_newer_build_is_refused_and_not_modified() {
    let dir = data_dir_with_roster();
    let path = dir.path().join(DATABASE_FILE);
    // Closing the last connection checkpoints the WAL: the header is all in the main file now.
    let mut bytes = fs::read(&path).unwrap();
    let header = &mut bytes[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4];
    let supported = i32::from_be_bytes(header.try_into().unwrap()) as i64;
    assert!(supported >= 1, "a fresh store has run its migrations");
    header.copy_from_slice(&(supported as i32 + 1).to_be_bytes());
    fs::write(&path, &bytes).unwrap();

    match Store::open(&path) {
        Err(StoreError::NewerSchema {
            path: p,
            found,
            supported: known,
        }) => {
            assert_eq!((p, found, known), (path.clone(), supported + 1, supported));
        }
        Err(other) => panic!("expected NewerSchema, got {other:?}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "the refused open wrote to the file"
    );

    let line = refused(dir.path(), &["mark", "session", STUDENT, "present"]);
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(
        line.contains(&format!(
            "schema {}, this build knows up to {supported}",
            supported + 1
        )),
        "{line}"
    );
    assert!(line.contains("it was not modified"), "{line}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "the refused CLI run wrote to the file"
    );
}

#[test]
fn capture_of_an_unknown_section_is_refused() {
    let dir = data_dir_with_roster();
    let mut store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    let error = store.section_students("no-such-class").unwrap_err();
    assert!(matches!(&error, StoreError::UnknownSection(s) if s == "no-such-class"));
    let error = store
        .record_session(&SessionRecord {
            section_id: "no-such-class",
            n_frames: 1,
            unknown_faces: 0,
            too_small_faces: 0,
            not_on_roster: &[],
            marks: &[],
        })
        .unwrap_err();
    assert!(matches!(&error, StoreError::UnknownSection(s) if s == "no-such-class"));
    drop(store);

    let photo = photo();
    let line = refused(
        dir.path(),
        &[
            "capture",
            "--section",
            "no-such-class",
            "--images",
            photo.to_str().unwrap(),
        ],
    );
    assert_eq!(line, "error: unknown section \"no-such-class\"");
    assert_eq!(pending_events(dir.path()), 0);
}

#[test]
fn enrolment_without_consent_says_how_to_record_it() {
    let dir = data_dir_with_roster();
    let photo = photo();
    let line = refused(
        dir.path(),
        &["enroll", "--student", STUDENT, photo.to_str().unwrap()],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: student {STUDENT} has no recorded consent (none recorded): record it with `edge-agent consent {STUDENT} grant --by NAME` first",
            photo.display()
        )
    );
    let store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    assert_eq!(store.template_count(STUDENT).unwrap(), 0);
    assert_eq!(store.pending_events().unwrap(), vec![]);
}

#[test]
fn a_mark_for_an_unknown_session_is_refused() {
    let dir = data_dir_with_roster();
    let mut store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    let error = store
        .set_teacher_mark("no-such-session", STUDENT, MarkStatus::Present, "ms-lee")
        .unwrap_err();
    assert!(matches!(&error, StoreError::UnknownSession(s) if s == "no-such-session"));
    drop(store);

    let line = refused(
        dir.path(),
        &[
            "mark",
            "no-such-session",
            STUDENT,
            "present",
            "--by",
            "ms-lee",
        ],
    );
    assert_eq!(line, "error: unknown capture session \"no-such-session\"");
    let store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    assert_eq!(store.pending_events().unwrap(), vec![]);
    assert_eq!(store.check_invariants().unwrap(), Vec::<String>::new());
}
