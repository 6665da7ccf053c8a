//! OneRoster 1.1 import as a school's IT person meets it: a valid export, then that export with
//! one thing broken at a time, each refused with the `file:line` to fix.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use edge_agent::roster::{
    AcademicSession, Enrolment, EnrolmentRole, Org, Person, RosterError, Section, read_oneroster,
};
use tempfile::TempDir;

const MANIFEST: &str = "\
propertyName,value
manifest.version,1.0
oneroster.version,1.1
file.academicSessions,bulk
file.categories,absent
file.classes,bulk
file.courses,absent
file.demographics,absent
file.enrollments,bulk
file.orgs,bulk
file.users,bulk
source.systemName,Example SIS
";

const ORGS: &str = "\
sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
o1,,,Riverside District,district,,
o2,,,Riverside Primary,school,RP01,o1
";

const ACADEMIC_SESSIONS: &str = "\
sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
y2024,,,2024-2025,schoolYear,2024-09-01,2025-07-15,,2025
term1,,,Autumn term,term,2024-09-01,2024-12-20,y2024,2025
";

// Columns in OneRoster's order but not all of them, and a name with a quoted comma: columns are
// found by name, values by CSV rules.
const USERS: &str = "\
sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,email,agentSourcedIds
s1,,,true,o2,student,ada,Ada,Lovelace,,p1
s2,,,true,o2,student,jose,José,Martínez,,
s3,,,true,o2,student,sam,Sam,\"Smith, Jr\",,
s4,tobedeleted,,true,o2,student,left,Lee,Gone,,
s5,,,false,o2,student,off,Ola,Disabled,,
s6,,,true,o2,student,bo,Bo,Chen,,
t1,,,true,o2,teacher,mrsb,Mary,Brown,brown@example.org,
t2,,,true,o2,teacher,mrw,Will,White,,
p1,,,true,o2,parent,lovelace,Anne,Lovelace,,s1
";

// schoolSourcedId before title, unlike the specification's order.
const CLASSES: &str = "\
sourcedId,status,dateLastModified,schoolSourcedId,title,classCode,classType,courseSourcedId,termSourcedIds
c1,,,o2,Year 3 Maths,3M,scheduled,k1,term1
c2,,,o2,Year 3 Science,3S,scheduled,k2,term1
";

const ENROLLMENTS: &str = "\
sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e1,,,c1,o2,s1,student,false,,
e2,,,c1,o2,s2,student,false,,
e3,,,c1,o2,s3,student,false,,
e4,,,c1,o2,t1,teacher,true,,
e5,,,c2,o2,s4,student,false,,
e6,,,c2,o2,s5,student,false,,
e7,,,c2,o2,s6,student,false,,
e8,,,c2,o2,t2,teacher,true,,
e9,tobedeleted,,c2,o2,t1,teacher,false,,
";

/// A small valid OneRoster 1.1 bulk export: 2 orgs, 2 sessions, 6 students, 2 teachers, a
/// parent, 2 classes and 9 enrolments.
fn valid_export() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in [
        ("manifest.csv", MANIFEST),
        ("orgs.csv", ORGS),
        ("academicSessions.csv", ACADEMIC_SESSIONS),
        ("users.csv", USERS),
        ("classes.csv", CLASSES),
        ("enrollments.csv", ENROLLMENTS),
    ] {
        fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

/// Replaces the one occurrence of `from` in `file`, so that each case changes exactly what it says.
fn replace(dir: &Path, file: &str, from: &[u8], to: &[u8]) {
    let path = dir.join(file);
    let bytes = fs::read(&path).unwrap();
    let matches: Vec<usize> = (0..bytes.len())
        .filter(|&start| bytes[start..].starts_with(from))
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "{:?} in {file}",
        String::from_utf8_lossy(from)
    );
    let mut edited = bytes[..matches[0]].to_vec();
    edited.extend_from_slice(to);
    edited.extend_from_slice(&bytes[matches[0] + from.len()..]);
    fs::write(path, edited).unwrap();
}

fn replace_text(dir: &Path, file: &str, from: &str, to: &str) {
    replace(dir, file, from.as_bytes(), to.as_bytes());
}

/// Renames one column in the header line, leaving names that merely contain it alone.
fn rename_column(dir: &Path, file: &str, column: &str, new_name: &str) {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let names: Vec<&str> = header.split(',').collect();
    assert!(names.contains(&column), "{column} in {file}");
    let names: Vec<&str> = names
        .into_iter()
        .map(|name| if name == column { new_name } else { name })
        .collect();
    fs::write(path, format!("{}\n{rest}", names.join(","))).unwrap();
}

/// Builds the valid export, lets `edit` break it, and compares the whole error message with
/// `expected`, one problem per line (`{dir}` stands for the export's folder).
fn check(edit: impl FnOnce(&Path), expected: &[&str]) -> RosterError {
    let dir = valid_export();
    edit(dir.path());
    let error = read_oneroster(dir.path()).expect_err("the edited export should be refused");
    let expected = expected.join("\n");
    let expected = expected.replace("{dir}", &dir.path().display().to_string());
    assert_eq!(error.to_string(), expected);
    error
}

fn person(id: &str, given_name: &str, family_name: &str, active: bool) -> Person {
    Person {
        id: id.into(),
        given_name: given_name.into(),
        family_name: family_name.into(),
        active,
    }
}

#[test]
fn valid_export_gives_every_record_with_its_fields() {
    let dir = valid_export();
    let roster = read_oneroster(dir.path()).unwrap();

    assert_eq!(roster.orgs.len(), 2);
    assert_eq!(
        roster.orgs[1],
        Org {
            id: "o2".into(),
            name: "Riverside Primary".into(),
            kind: "school".into(),
        }
    );
    assert_eq!(
        roster.academic_sessions[1],
        AcademicSession {
            id: "term1".into(),
            title: "Autumn term".into(),
            kind: "term".into(),
            start_date: "2024-09-01".into(),
            end_date: "2024-12-20".into(),
        }
    );
    assert_eq!(roster.academic_sessions.len(), 2);
    assert_eq!(
        roster.sections,
        [
            Section {
                id: "c1".into(),
                title: "Year 3 Maths".into(),
                school_id: "o2".into(),
                active: true,
            },
            Section {
                id: "c2".into(),
                title: "Year 3 Science".into(),
                school_id: "o2".into(),
                active: true,
            },
        ]
    );
    assert_eq!(
        roster.students,
        [
            person("s1", "Ada", "Lovelace", true),
            person("s2", "José", "Martínez", true),
            person("s3", "Sam", "Smith, Jr", true),
            person("s4", "Lee", "Gone", false),
            person("s5", "Ola", "Disabled", false),
            person("s6", "Bo", "Chen", true),
        ]
    );
    // The parent is valid but not kept.
    assert_eq!(
        roster.teachers,
        [
            person("t1", "Mary", "Brown", true),
            person("t2", "Will", "White", true),
        ]
    );
    assert_eq!(roster.enrolments.len(), 9);
    assert_eq!(
        roster.enrolments[3],
        Enrolment {
            section_id: "c1".into(),
            person_id: "t1".into(),
            role: EnrolmentRole::Teacher,
            active: true,
        }
    );
    let n_student_enrolments = roster
        .enrolments
        .iter()
        .filter(|enrolment| enrolment.role == EnrolmentRole::Student)
        .count();
    assert_eq!(n_student_enrolments, 6);
    assert!(!roster.enrolments[8].active, "e9 is tobedeleted");
}

#[test]
fn excel_saves_with_bom_crlf_and_capitals_are_accepted() {
    let dir = valid_export();
    let expected = read_oneroster(dir.path()).unwrap();
    for file in ["users.csv", "classes.csv", "enrollments.csv"] {
        let path = dir.path().join(file);
        let text = fs::read_to_string(&path).unwrap().replace('\n', "\r\n");
        let text = text
            .replace(",true,", ",TRUE,")
            .replace(",false,", ",FALSE,");
        fs::write(&path, format!("\u{feff}{text}")).unwrap();
    }
    assert_eq!(read_oneroster(dir.path()).unwrap(), expected);
}

#[test]
fn optional_files_may_be_left_out() {
    let dir = valid_export();
    for file in ["orgs.csv", "academicSessions.csv"] {
        fs::remove_file(dir.path().join(file)).unwrap();
    }
    replace_text(
        dir.path(),
        "manifest.csv",
        "file.orgs,bulk",
        "file.orgs,absent",
    );
    let academic_sessions = "file.academicSessions,bulk";
    let absent = "file.academicSessions,absent";
    replace_text(dir.path(), "manifest.csv", academic_sessions, absent);
    let roster = read_oneroster(dir.path()).unwrap();
    assert!(roster.orgs.is_empty() && roster.academic_sessions.is_empty());
    assert_eq!(roster.students.len(), 6);
}

#[test]
fn missing_files_are_named() {
    let error = check(
        |dir| fs::remove_file(dir.join("users.csv")).unwrap(),
        &[
            "users.csv: not found in {dir}; a OneRoster 1.1 bulk export always has manifest.csv, users.csv, classes.csv and enrollments.csv",
        ],
    );
    assert!(matches!(
        error,
        RosterError::MissingFile {
            file: "users.csv",
            ..
        }
    ));
    check(
        |dir| fs::remove_file(dir.join("orgs.csv")).unwrap(),
        &["orgs.csv: not found in {dir}; manifest.csv lists it as a bulk file"],
    );
}

#[test]
fn each_required_column_is_named_when_missing() {
    for (file, columns) in [
        (
            "users.csv",
            &["sourcedId", "role", "givenName", "familyName"][..],
        ),
        ("classes.csv", &["sourcedId", "title", "schoolSourcedId"]),
        (
            "enrollments.csv",
            &["sourcedId", "classSourcedId", "userSourcedId", "role"],
        ),
        ("orgs.csv", &["sourcedId", "name", "type"]),
        (
            "academicSessions.csv",
            &["sourcedId", "title", "type", "startDate", "endDate"],
        ),
        ("manifest.csv", &["propertyName", "value"]),
    ] {
        for &column in columns {
            let expected = format!("{file}:1: missing column \"{column}\"");
            let error = check(|dir| rename_column(dir, file, column, "x"), &[&expected]);
            assert!(matches!(error, RosterError::BadFile(_)));
        }
    }
}

#[test]
fn manifest_must_say_bulk_oneroster_1_1() {
    let version = "oneroster.version,1.1";
    check(
        |dir| replace_text(dir, "manifest.csv", version, "oneroster.version,1.0"),
        &["manifest.csv:3: oneroster.version is \"1.0\"; only OneRoster 1.1 exports are supported"],
    );
    check(
        |dir| replace_text(dir, "manifest.csv", &format!("{version}\n"), ""),
        &["manifest.csv:1: no oneroster.version row; only OneRoster 1.1 exports are supported"],
    );
    // A delta export leaves unchanged files out; the delta is the thing to report, not the gap.
    check(
        |dir| {
            replace_text(dir, "manifest.csv", "file.users,bulk", "file.users,delta");
            fs::remove_file(dir.join("users.csv")).unwrap();
        },
        &[
            "manifest.csv:11: file.users is \"delta\"; only bulk files are supported (export a full bulk set instead)",
        ],
    );
}

#[test]
fn bad_values_are_reported_at_their_line() {
    let cases: [(&str, &str, &str, &str); 10] = [
        (
            "users.csv",
            "s6,,,true,o2,student,",
            "s6,,,true,o2,pupil,",
            "users.csv:7: unknown role \"pupil\" (expected one of administrator, aide, guardian, parent, proctor, relative, student, teacher)",
        ),
        (
            "enrollments.csv",
            "e3,,,c1,",
            "e3,,,c9,",
            "enrollments.csv:4: class \"c9\" is not in classes.csv",
        ),
        (
            "enrollments.csv",
            "c1,o2,s2,",
            "c1,o2,s22,",
            "enrollments.csv:3: user \"s22\" is not in users.csv",
        ),
        (
            "enrollments.csv",
            "e2,",
            "e1,",
            "enrollments.csv:3: sourcedId \"e1\" is already used on line 2",
        ),
        ("users.csv", "p1,", ",", "users.csv:10: sourcedId is empty"),
        (
            "classes.csv",
            "Year 3 Science",
            "",
            "classes.csv:3: title is empty",
        ),
        (
            "classes.csv",
            "c2,,,o2,",
            "c2,,,o9,",
            "classes.csv:3: school \"o9\" is not in orgs.csv",
        ),
        (
            "users.csv",
            "p1,,,true,o2,parent,",
            "p/1,,,true,o2,parent,",
            "users.csv:10: sourcedId \"p/1\" is not a usable id: it contains '/' (ids are 1-128 characters of letters, digits and - _ . : @)",
        ),
        (
            "users.csv",
            "s5,,,false,",
            "s5,gone,,false,",
            "users.csv:6: unknown status \"gone\" (expected active, tobedeleted or empty)",
        ),
        (
            "academicSessions.csv",
            "2024-12-20",
            "20/12/2024",
            "academicSessions.csv:3: endDate \"20/12/2024\" is not a date like 2024-09-01",
        ),
    ];
    for (file, from, to, expected) in cases {
        check(|dir| replace_text(dir, file, from, to), &[expected]);
    }
}

// s2's and t1's rows below cannot be read, and enrollments name both: saying "not in users.csv"
// about them as well would send the reader looking for the wrong problem.

#[test]
fn latin1_text_is_refused_at_its_line() {
    check(
        |dir| replace(dir, "users.csv", "José".as_bytes(), b"Jos\xe9"),
        &["users.csv:3: not UTF-8 text (save the file as UTF-8)"],
    );
}

#[test]
fn a_short_row_is_refused_at_its_line() {
    check(
        |dir| replace_text(dir, "users.csv", "mrsb,Mary,", "mrsb,"),
        &[
            "users.csv:8: 10 fields, but the header has 11 (a value containing a comma needs double quotes)",
        ],
    );
}

#[test]
fn every_row_problem_is_listed_in_file_and_line_order() {
    let error = check(
        |dir| {
            replace_text(dir, "enrollments.csv", "e3,,,c1,", "e3,,,c9,");
            replace_text(
                dir,
                "users.csv",
                "s6,,,true,o2,student,",
                "s6,,,true,o2,pupil,",
            );
            replace_text(dir, "enrollments.csv", "e9,", "e8,");
            replace_text(dir, "users.csv", ",Ada,", ",,");
        },
        &[
            "users.csv:2: givenName is empty",
            "users.csv:7: unknown role \"pupil\" (expected one of administrator, aide, guardian, parent, proctor, relative, student, teacher)",
            "enrollments.csv:4: class \"c9\" is not in classes.csv",
            "enrollments.csv:10: sourcedId \"e8\" is already used on line 9",
        ],
    );
    let RosterError::Invalid(problems) = error else {
        panic!("row problems come together: {error:?}");
    };
    assert_eq!(problems[2].file, "enrollments.csv");
    assert_eq!(problems[2].line, 4);
}

#[test]
fn duplicate_enrolment_of_one_user_in_one_class_is_refused() {
    check(
        |dir| replace_text(dir, "enrollments.csv", "e2,,,c1,o2,s2,", "e2,,,c1,o2,s1,"),
        &["enrollments.csv:3: user \"s1\" is already enrolled in class \"c1\" on line 2"],
    );
}

#[test]
fn truncated_or_garbled_files_never_panic() {
    for file in [
        "manifest.csv",
        "users.csv",
        "classes.csv",
        "enrollments.csv",
    ] {
        let dir = valid_export();
        let path = dir.path().join(file);
        let original = fs::read(&path).unwrap();
        // Every 7th byte rather than all of them: each case writes a file, and the writes are
        // what takes time here.
        for length in (0..=original.len()).step_by(7) {
            fs::write(&path, &original[..length]).unwrap();
            let _ = read_oneroster(dir.path());
            let mut garbled = original.clone();
            garbled[length.min(original.len() - 1)] = [b'"', 0xff, b'\r'][length % 3];
            fs::write(&path, &garbled).unwrap();
            let _ = read_oneroster(dir.path());
        }
    }
}

/// `edge-agent roster import` on `export`, with a fresh data folder.
fn import_with_the_cli(export: &Path) -> Output {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["roster", "import"])
        .arg(export)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// Issue 13: real OneRoster exports that were refused (a teacher enrolled as a student, an SIS
/// listing a teacher as `student`, OneRoster 1.0's `inactive`, a blank manifest value) are
/// imported, and the CLI says what was read leniently beside the counts.
#[test]
fn lenient_reads_are_imported_and_printed_as_warnings() {
    let dir = valid_export();
    let dir = dir.path();
    replace_text(
        dir,
        "enrollments.csv",
        "c2,o2,t1,teacher",
        "c2,o2,t1,student",
    );
    replace_text(
        dir,
        "users.csv",
        "t2,,,true,o2,teacher,",
        "t2,,,true,o2,student,",
    );
    replace_text(dir, "users.csv", "s4,tobedeleted,", "s4,inactive,");
    replace_text(dir, "classes.csv", "c2,,,", "c2,inactive,,");
    replace_text(dir, "manifest.csv", "file.courses,absent", "file.courses,");

    let roster = read_oneroster(dir).unwrap();
    let ids = |people: &[Person]| -> Vec<String> {
        people.iter().map(|person| person.id.clone()).collect()
    };
    assert_eq!(
        ids(&roster.students),
        ["s1", "s2", "s3", "s4", "s5", "s6", "t1", "t2"]
    );
    assert_eq!(ids(&roster.teachers), ["t1", "t2"]);
    assert!(!roster.students[3].active && !roster.sections[1].active);

    let output = import_with_the_cli(dir);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "imported 2 sections, 8 students, 2 teachers, 9 enrolments; 0 records no longer listed marked inactive
warning: manifest.csv: 1 row has no value; read as absent
warning: classes.csv: 1 row has status \"inactive\" (OneRoster 1.0); read as tobedeleted
warning: users.csv: 1 row has status \"inactive\" (OneRoster 1.0); read as tobedeleted
warning: enrollments.csv: 2 rows enrol a user in a role other than their role in users.csv; the enrolment's role was kept for that class
"
    );
}

/// Issue 13: an export with a problem on every line printed every one of them.
#[test]
fn the_cli_lists_200_problems_and_counts_the_rest() {
    let dir = valid_export();
    let users = dir.path().join("users.csv");
    let mut text = fs::read_to_string(&users).unwrap();
    for i in 0..5000 {
        text.push_str(&format!("x/{i},,,true,o2,student,u,A,B,,\n"));
    }
    fs::write(&users, text).unwrap();
    let output = import_with_the_cli(dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("users.csv:11: sourcedId \"x/0\" is not a usable id"),
        "{stderr}"
    );
    assert!(stderr.contains("\n... and 4800 more problems"), "{stderr}");
    assert_eq!(stderr.matches("is not a usable id").count(), 200);
    assert!(stderr.len() < 40_000, "{} bytes", stderr.len());
}
