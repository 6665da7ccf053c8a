//! The parser on in-memory exports, as the server receives them. The full catalogue of broken
//! exports runs through the box's folder reader in `edge-agent/tests/roster.rs`.

use super::*;

const MANIFEST: &str = "\
propertyName,value
oneroster.version,1.1
file.classes,bulk
file.courses,bulk
file.enrollments,bulk
file.orgs,absent
file.users,bulk
";

const USERS: &str = "\
sourcedId,status,enabledUser,role,givenName,familyName
s1,,true,student,Ada,Lovelace
s2,tobedeleted,true,student,José,\"Martínez, Jr\"
t1,,true,teacher,Mary,Brown
";

const CLASSES: &str = "\
sourcedId,title,schoolSourcedId,courseSourcedId
c1,Year 3 Maths,o2,k1
";

const ENROLLMENTS: &str = "\
sourcedId,classSourcedId,userSourcedId,role
e1,c1,s1,student
e2,c1,s2,student
e3,c1,t1,teacher
";

/// A small valid upload; courses.csv is in the export but not read.
fn valid_upload() -> Vec<(&'static str, String)> {
    [
        ("manifest.csv", MANIFEST),
        ("users.csv", USERS),
        ("courses.csv", "sourcedId,title\nk1,Maths\n"),
        ("classes.csv", CLASSES),
        ("enrollments.csv", ENROLLMENTS),
    ]
    .into_iter()
    .map(|(file, text)| (file, text.to_owned()))
    .collect()
}

/// Parses `valid_upload` after `edit` has changed it, as an upload called `upload.zip`.
fn parse(edit: impl FnOnce(&mut Vec<(&'static str, String)>)) -> Result<RosterImport, RosterError> {
    let mut upload = valid_upload();
    edit(&mut upload);
    let files = RosterFiles::from_files("upload.zip", upload)?;
    parse_oneroster(&files)
}

/// Refused with exactly `expected`, one problem per line.
fn check_refused(edit: impl FnOnce(&mut Vec<(&'static str, String)>), expected: &[&str]) {
    let error = parse(edit).expect_err("the edited upload should be refused");
    assert_eq!(error.to_string(), expected.join("\n"));
}

fn replace_in(upload: &mut [(&'static str, String)], file: &str, from: &str, to: &str) {
    let (_, text) = upload.iter_mut().find(|(name, _)| *name == file).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
    *text = text.replace(from, to);
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
fn valid_upload_gives_its_records_and_ignores_files_not_read() {
    let roster = parse(|_| {}).unwrap();
    let expected = RosterImport {
        orgs: vec![],
        academic_sessions: vec![],
        sections: vec![Section {
            id: "c1".into(),
            title: "Year 3 Maths".into(),
            school_id: "o2".into(),
            active: true,
        }],
        students: vec![
            person("s1", "Ada", "Lovelace", true),
            person("s2", "José", "Martínez, Jr", false),
        ],
        teachers: vec![person("t1", "Mary", "Brown", true)],
        enrolments: vec![
            Enrolment {
                section_id: "c1".into(),
                person_id: "s1".into(),
                role: EnrolmentRole::Student,
                active: true,
            },
            Enrolment {
                section_id: "c1".into(),
                person_id: "s2".into(),
                role: EnrolmentRole::Student,
                active: true,
            },
            Enrolment {
                section_id: "c1".into(),
                person_id: "t1".into(),
                role: EnrolmentRole::Teacher,
                active: true,
            },
        ],
    };
    assert_eq!(roster, expected);
}

#[test]
fn row_problems_name_file_and_line() {
    check_refused(
        |upload| {
            replace_in(upload, "enrollments.csv", "e2,c1,", "e2,c9,");
            replace_in(
                upload,
                "users.csv",
                "t1,,true,teacher,Mary",
                "t1,,yes,teacher,",
            );
        },
        &[
            "users.csv:4: givenName is empty",
            "users.csv:4: enabledUser is \"yes\" (expected true or false)",
            "enrollments.csv:3: class \"c9\" is not in classes.csv",
        ],
    );
    let error = parse(|upload| replace_in(upload, "users.csv", "student,Ada", "pupil,Ada"));
    let Err(RosterError::Invalid(problems)) = error else {
        panic!("a row problem is Invalid: {error:?}");
    };
    assert_eq!((problems[0].file, problems[0].line), ("users.csv", 2));
}

#[test]
fn missing_files_name_the_export() {
    check_refused(
        |upload| upload.retain(|(file, _)| *file != "users.csv"),
        &[
            "users.csv: not found in upload.zip; a OneRoster 1.1 bulk export always has manifest.csv, users.csv, classes.csv and enrollments.csv",
        ],
    );
    check_refused(
        |upload| replace_in(upload, "manifest.csv", "file.orgs,absent", "file.orgs,bulk"),
        &["orgs.csv: not found in upload.zip; manifest.csv lists it as a bulk file"],
    );
    // Names are bare and exact, as in a folder: whoever unpacks an archive strips its folders.
    check_refused(
        |upload| upload[0].0 = "export/manifest.csv",
        &[
            "manifest.csv: not found in upload.zip; a OneRoster 1.1 bulk export always has manifest.csv, users.csv, classes.csv and enrollments.csv",
        ],
    );
}

#[test]
fn a_file_given_twice_is_refused() {
    check_refused(
        |upload| upload.push(("users.csv", USERS.to_owned())),
        &["users.csv: given twice in upload.zip; an export has one of each file"],
    );
    // Files that are not read may repeat: they are never looked at.
    parse(|upload| upload.push(("courses.csv", String::new()))).unwrap();
}
