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
        guardians: vec![],
        warnings: vec![],
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

fn enrolment(section_id: &str, person_id: &str, role: EnrolmentRole) -> Enrolment {
    Enrolment {
        section_id: section_id.into(),
        person_id: person_id.into(),
        role,
        active: true,
    }
}

fn ids(people: &[Person]) -> Vec<&str> {
    people.iter().map(|person| person.id.as_str()).collect()
}

fn warnings(roster: &RosterImport) -> Vec<String> {
    roster.warnings.iter().map(ToString::to_string).collect()
}

/// Issue 13: a teacher enrolled as a student in one class, and an SIS that lists everyone as
/// `student` in users.csv, were refused; the enrolment decides the person's part in the class.
#[test]
fn the_enrolment_role_decides_and_is_counted_as_a_warning() {
    let roster = parse(|upload| {
        // Mary teaches c1 and takes c2 as a student; Bo is listed as a student but teaches c2.
        replace_in(
            upload,
            "users.csv",
            "t1,,true,teacher,Mary,Brown\n",
            "t1,,true,teacher,Mary,Brown\nb1,,true,student,Bo,Chen\n",
        );
        replace_in(
            upload,
            "classes.csv",
            "c1,Year 3 Maths,o2,k1\n",
            "c1,Year 3 Maths,o2,k1\nc2,Staff First Aid,o2,k2\n",
        );
        replace_in(
            upload,
            "enrollments.csv",
            "e3,c1,t1,teacher\n",
            "e3,c1,t1,teacher\ne4,c2,t1,student\ne5,c2,b1,teacher\n",
        );
    })
    .unwrap();
    // Every enrolment names a person of its role, so the stores apply it as they are.
    assert_eq!(ids(&roster.students), ["s1", "s2", "t1", "b1"]);
    assert_eq!(ids(&roster.teachers), ["t1", "b1"]);
    assert_eq!(
        roster.enrolments[3..],
        [
            enrolment("c2", "t1", EnrolmentRole::Student),
            enrolment("c2", "b1", EnrolmentRole::Teacher),
        ]
    );
    assert_eq!(
        warnings(&roster),
        [
            "enrollments.csv: 2 rows enrol a user in a role other than their role in users.csv; the enrolment's role was kept for that class"
        ]
    );
    assert_eq!(
        roster.warnings,
        [RosterWarning {
            file: "enrollments.csv",
            rows: 2,
            kind: WarningKind::EnrolmentRoleDiffers,
        }]
    );
}

/// Issue 13: OneRoster 1.0's `inactive` was refused as an unknown status.
#[test]
fn inactive_is_read_as_tobedeleted_and_counted_per_file() {
    let roster = parse(|upload| {
        replace_in(upload, "users.csv", "s1,,true", "s1,inactive,true");
        replace_in(upload, "users.csv", "t1,,true", "t1,Inactive,true");
        // A status column in enrollments.csv, as 1.0 exports have it.
        let (_, enrollments) = upload
            .iter_mut()
            .find(|(file, _)| *file == "enrollments.csv")
            .unwrap();
        *enrollments = "\
sourcedId,classSourcedId,userSourcedId,role,status
e1,c1,s1,student,inactive
e2,c1,s2,student,
e3,c1,t1,teacher,active
"
        .to_owned();
    })
    .unwrap();
    assert!(!roster.students[0].active && !roster.teachers[0].active);
    assert!(!roster.enrolments[0].active && roster.enrolments[1].active);
    assert_eq!(
        warnings(&roster),
        [
            "users.csv: 2 rows have status \"inactive\" (OneRoster 1.0); read as tobedeleted",
            "enrollments.csv: 1 row has status \"inactive\" (OneRoster 1.0); read as tobedeleted",
        ]
    );
}

/// Issue 13: a blank manifest value for a file was refused as an unknown file mode.
#[test]
fn a_blank_manifest_value_is_absent() {
    let roster = parse(|upload| {
        replace_in(upload, "manifest.csv", "file.orgs,absent", "file.orgs,");
        replace_in(upload, "manifest.csv", "file.courses,bulk", "file.courses,");
    })
    .unwrap();
    assert_eq!(
        warnings(&roster),
        ["manifest.csv: 2 rows have no value; read as absent"]
    );
}

/// Issue 13: roster ids skipped the id rule of the JSON API (`/`, spaces, 5,000 characters).
#[test]
fn kept_ids_follow_the_id_rule() {
    let long_id = "x".repeat(5000);
    check_refused(
        |upload| {
            let users = format!(
                "t1,,true,teacher,Mary,Brown\ns 1,,true,student,A,B\n{long_id},,true,student,C,D\n"
            );
            replace_in(upload, "users.csv", "t1,,true,teacher,Mary,Brown\n", &users);
            let classes = "c1,Year 3 Maths,o2,k1\nc/2,Art,o 2,k1\n";
            replace_in(upload, "classes.csv", "c1,Year 3 Maths,o2,k1\n", classes);
        },
        &[
            "classes.csv:3: sourcedId \"c/2\" is not a usable id: it contains '/' (ids are 1-128 characters of letters, digits and - _ . : @)",
            "classes.csv:3: schoolSourcedId \"o 2\" is not a usable id: it contains ' ' (ids are 1-128 characters of letters, digits and - _ . : @)",
            "users.csv:5: sourcedId \"s 1\" is not a usable id: it contains ' ' (ids are 1-128 characters of letters, digits and - _ . : @)",
            &format!(
                "users.csv:6: sourcedId \"{}...\" is not a usable id: it is 5000 characters long (ids are 1-128 characters of letters, digits and - _ . : @)",
                "x".repeat(60)
            ),
        ],
    );
    // Enrolment ids are not kept, so they may be anything; 128 characters is an id.
    parse(|upload| {
        replace_in(upload, "enrollments.csv", "e1,", "e/1 (2024),");
        replace_in(upload, "users.csv", "s1,", &format!("{},", "s".repeat(128)));
        replace_in(
            upload,
            "enrollments.csv",
            ",s1,",
            &format!(",{},", "s".repeat(128)),
        );
    })
    .unwrap();
}

/// Issue 13: a 2.5 MB upload gave a 20 MB list of problems.
#[test]
fn the_problem_list_stops_at_200_and_counts_the_rest() {
    let error = parse(|upload| {
        let rows: String = (0..1234)
            .map(|i| format!("x{i},,true,pupil,A,B\n"))
            .collect();
        let (_, users) = upload
            .iter_mut()
            .find(|(file, _)| *file == "users.csv")
            .unwrap();
        users.push_str(&rows);
    })
    .unwrap_err();
    let RosterError::Invalid(problems) = &error else {
        panic!("row problems are Invalid: {error:?}");
    };
    assert_eq!(problems.len(), 1234, "every problem is kept for callers");
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), MAX_LISTED_PROBLEMS + 1);
    assert!(
        lines[0].starts_with("users.csv:5: unknown role \"pupil\""),
        "{}",
        lines[0]
    );
    assert_eq!(lines[MAX_LISTED_PROBLEMS], "... and 1034 more problems");
}

#[test]
fn guardians_with_an_email_are_linked_to_students_either_way_round() {
    let roster = parse(|upload| {
        let (_, users) = upload
            .iter_mut()
            .find(|(name, _)| *name == "users.csv")
            .unwrap();
        *users = "\
sourcedId,status,enabledUser,role,givenName,familyName,email,agentSourcedIds
s1,,true,student,Ada,Lovelace,,\"p1,p2\"
s2,tobedeleted,true,student,José,\"Martínez, Jr\",,
t1,,true,teacher,Mary,Brown,mary@school.org,
p1,,true,parent,Anne,Lovelace,anne@example.org,
p2,,true,guardian,Byron,Lovelace,,
p3,,true,relative,Rosa,Martínez,rosa@example.org,\"s2,x9\"
p4,,true,parent,Nobody,Linked,nobody@example.org,
"
        .to_owned();
    })
    .unwrap();
    let linked: Vec<(&str, &str, &str, Vec<String>)> = roster
        .guardians
        .iter()
        .map(|g| {
            (
                g.id.as_str(),
                g.email.as_str(),
                g.relationship,
                g.student_ids.clone(),
            )
        })
        .collect();
    // p2 has no address; p4 no student; x9 is no student of the export.
    assert_eq!(
        linked,
        vec![
            ("p1", "anne@example.org", "parent", vec!["s1".to_owned()]),
            ("p3", "rosa@example.org", "relative", vec!["s2".to_owned()]),
        ]
    );
    let warnings: Vec<String> = roster.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "users.csv: 1 row has a parent, guardian or relative with no email; not kept, since no notice could reach them"
        ]
    );
    // Neither a parent nor a teacher's address makes them a student or a guardian.
    assert_eq!(roster.students.len(), 2);
    assert_eq!(roster.teachers.len(), 1);
}
