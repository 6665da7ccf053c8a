//! The cases every roster store is tested with (the box's store, both server backends), written
//! once so that "full import" cannot come to mean three things again. Test data, not API: each
//! store's suite applies `held` in full, then `batch` with `scope`, and compares what it holds
//! with `expected`.
//!
//! Rosters are written as short lists: `"s1"` is an active record, `"-s1"` an inactive one,
//! `"s1=Ada"` one with that title or given name; enrolments are `"section/person"`, as a
//! student unless `":teacher"` follows.

use std::collections::BTreeMap;

use super::ImportScope;
use crate::oneroster::{Enrolment, EnrolmentRole, Person, RosterImport, Section};

/// The org every case's sections belong to.
pub const CASE_ORG: &str = "org-1";

pub struct RosterCase {
    pub name: &'static str,
    /// Applied first as a full import: what the store holds before `batch`.
    pub held: RosterImport,
    pub batch: RosterImport,
    pub scope: ImportScope,
    /// Every record held after `batch`, and whether it is active.
    pub expected: RosterState,
    /// What `batch` reports deactivated: active records it left out.
    pub deactivated: usize,
    /// How many records `batch` writes; on the server, how many change-feed keys it moves.
    pub n_writes: usize,
}

/// Each record a store holds for the school, by id, and whether it is active; enrolments by
/// `"section/person"`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RosterState {
    pub sections: BTreeMap<String, bool>,
    pub students: BTreeMap<String, bool>,
    pub teachers: BTreeMap<String, bool>,
    pub enrolments: BTreeMap<String, bool>,
}

/// An enrolment's key in `RosterState`.
pub fn enrolment_key(section_id: &str, person_id: &str) -> String {
    format!("{section_id}/{person_id}")
}

/// `"-s1=Ada"` -> (`s1`, `Some("Ada")`, inactive).
fn parse(entry: &str) -> (&str, Option<&str>, bool) {
    let (entry, active) = match entry.strip_prefix('-') {
        Some(rest) => (rest, false),
        None => (entry, true),
    };
    match entry.split_once('=') {
        Some((id, name)) => (id, Some(name), active),
        None => (entry, None, active),
    }
}

fn people(entries: &[&str]) -> Vec<Person> {
    entries
        .iter()
        .map(|entry| {
            let (id, name, active) = parse(entry);
            Person {
                id: id.to_owned(),
                given_name: name.unwrap_or("Given").to_owned(),
                family_name: format!("Family {id}"),
                active,
            }
        })
        .collect()
}

/// A roster from short lists (see the module's comment).
pub fn roster(
    sections: &[&str],
    students: &[&str],
    teachers: &[&str],
    enrolments: &[&str],
) -> RosterImport {
    RosterImport {
        sections: sections
            .iter()
            .map(|entry| {
                let (id, title, active) = parse(entry);
                Section {
                    id: id.to_owned(),
                    title: title.unwrap_or("Class").to_owned(),
                    school_id: CASE_ORG.to_owned(),
                    active,
                }
            })
            .collect(),
        students: people(students),
        teachers: people(teachers),
        enrolments: enrolments
            .iter()
            .map(|entry| {
                let (key, _, active) = parse(entry);
                let (key, role) = match key.strip_suffix(":teacher") {
                    Some(key) => (key, EnrolmentRole::Teacher),
                    None => (key, EnrolmentRole::Student),
                };
                let (section_id, person_id) = key.split_once('/').expect("section/person");
                Enrolment {
                    section_id: section_id.to_owned(),
                    person_id: person_id.to_owned(),
                    role,
                    active,
                }
            })
            .collect(),
        ..RosterImport::default()
    }
}

/// The state a store should hold, from short lists without names or roles.
pub fn state(
    sections: &[&str],
    students: &[&str],
    teachers: &[&str],
    enrolments: &[&str],
) -> RosterState {
    let map = |entries: &[&str]| -> BTreeMap<String, bool> {
        entries
            .iter()
            .map(|entry| {
                let (id, _, active) = parse(entry);
                (id.to_owned(), active)
            })
            .collect()
    };
    RosterState {
        sections: map(sections),
        students: map(students),
        teachers: map(teachers),
        enrolments: map(enrolments),
    }
}

/// A school with two classes: c1 (s1, s2, s3, taught by t1) and c2 (s3, taught by t2).
fn school() -> RosterImport {
    roster(
        &["c1", "c2"],
        &["s1", "s2", "s3"],
        &["t1", "t2"],
        &[
            "c1/s1",
            "c1/s2",
            "c1/s3",
            "c1/t1:teacher",
            "c2/s3",
            "c2/t2:teacher",
        ],
    )
}

fn school_state() -> RosterState {
    state(
        &["c1", "c2"],
        &["s1", "s2", "s3"],
        &["t1", "t2"],
        &["c1/s1", "c1/s2", "c1/s3", "c1/t1", "c2/s3", "c2/t2"],
    )
}

/// The school without c2, s3 and t2: what a full import of it deactivates.
fn smaller_school() -> RosterImport {
    roster(
        &["c1"],
        &["s1", "s2"],
        &["t1"],
        &["c1/s1", "c1/s2", "c1/t1:teacher"],
    )
}

pub fn cases() -> Vec<RosterCase> {
    vec![
        RosterCase {
            name: "the same roster again writes nothing",
            held: school(),
            batch: school(),
            scope: ImportScope::Full,
            expected: school_state(),
            deactivated: 0,
            n_writes: 0,
        },
        RosterCase {
            name: "a full import deactivates every kind it leaves out",
            held: school(),
            batch: smaller_school(),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "-c2"],
                &["s1", "s2", "-s3"],
                &["t1", "-t2"],
                &["c1/s1", "c1/s2", "-c1/s3", "c1/t1", "-c2/s3", "-c2/t2"],
            ),
            // c2, s3, t2 and three enrolments.
            deactivated: 6,
            n_writes: 6,
        },
        RosterCase {
            name: "a partial import only inserts and updates",
            held: school(),
            batch: roster(&[], &["s2=Renamed", "s4"], &[], &["c1/s4"]),
            scope: ImportScope::Partial,
            expected: state(
                &["c1", "c2"],
                &["s1", "s2", "s3", "s4"],
                &["t1", "t2"],
                &[
                    "c1/s1", "c1/s2", "c1/s3", "c1/s4", "c1/t1", "c2/s3", "c2/t2",
                ],
            ),
            deactivated: 0,
            n_writes: 3,
        },
        RosterCase {
            name: "the last row of an id wins, and a batch that ends where it began writes nothing",
            held: school(),
            batch: roster(
                &["c1=Other", "c1", "c2"],
                &["s1", "s2", "s3", "s2", "-s2"],
                &["t1", "t2"],
                &[
                    "c1/s1",
                    "c1/s2",
                    "c1/s3",
                    "c1/t1:teacher",
                    "c2/s3",
                    "-c2/s3",
                    "c2/t2:teacher",
                ],
            ),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "c2"],
                &["s1", "-s2", "s3"],
                &["t1", "t2"],
                &["c1/s1", "c1/s2", "c1/s3", "c1/t1", "-c2/s3", "c2/t2"],
            ),
            // Named inactive by the batch: updated, not left out.
            deactivated: 0,
            n_writes: 2,
        },
        RosterCase {
            name: "an inactive record named active again is reactivated",
            held: roster(
                &["c1", "-c2"],
                &["s1", "-s2"],
                &["-t1"],
                &["c1/s1", "-c1/s2", "c1/t1:teacher"],
            ),
            batch: roster(
                &["c1", "c2"],
                &["s1", "s2"],
                &["t1"],
                &["c1/s1", "c1/s2", "c1/t1:teacher"],
            ),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "c2"],
                &["s1", "s2"],
                &["t1"],
                &["c1/s1", "c1/s2", "c1/t1"],
            ),
            deactivated: 0,
            n_writes: 4,
        },
        RosterCase {
            name: "what is inactive already and left out is not written again",
            held: roster(&["c1"], &["s1", "-s2"], &[], &["c1/s1", "-c1/s2"]),
            batch: roster(&["c1"], &["s1"], &[], &["c1/s1"]),
            scope: ImportScope::Full,
            expected: state(&["c1"], &["s1", "-s2"], &[], &["c1/s1", "-c1/s2"]),
            deactivated: 0,
            n_writes: 0,
        },
        RosterCase {
            name: "a person dropped from the roster loses their enrolments",
            held: school(),
            batch: roster(
                &["c1", "c2"],
                &["s1", "s2"],
                &["t1", "t2"],
                &["c1/s1", "c1/s2", "c1/t1:teacher", "c2/t2:teacher"],
            ),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "c2"],
                &["s1", "s2", "-s3"],
                &["t1", "t2"],
                &["c1/s1", "c1/s2", "-c1/s3", "c1/t1", "-c2/s3", "c2/t2"],
            ),
            deactivated: 3,
            n_writes: 3,
        },
        RosterCase {
            name: "a person who is student and teacher can stop being one of them",
            held: roster(&["c1", "c2"], &["p1"], &["p1"], &["c1/p1", "c2/p1:teacher"]),
            batch: roster(&["c1", "c2"], &["p1"], &[], &["c1/p1"]),
            scope: ImportScope::Full,
            expected: state(&["c1", "c2"], &["p1"], &["-p1"], &["c1/p1", "-c2/p1"]),
            deactivated: 2,
            n_writes: 2,
        },
        RosterCase {
            name: "new records are inserted as the batch says, inactive ones too",
            held: roster(&["c1"], &["s1"], &[], &["c1/s1"]),
            batch: roster(
                &["c1", "c9"],
                &["s1", "s8", "-s9"],
                &["t9"],
                &["c1/s1", "c9/s8", "-c9/s9", "c9/t9:teacher"],
            ),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "c9"],
                &["s1", "s8", "-s9"],
                &["t9"],
                &["c1/s1", "c9/s8", "-c9/s9", "c9/t9"],
            ),
            deactivated: 0,
            n_writes: 7,
        },
        RosterCase {
            name: "a new title, name or role is one write each",
            held: school(),
            batch: roster(
                &["c1=Maths", "c2"],
                &["s1=Ada", "s2", "s3"],
                // s3 now helps teach c2: a teacher as well as a student.
                &["t1", "t2", "s3"],
                &[
                    "c1/s1",
                    "c1/s2",
                    "c1/s3",
                    "c1/t1:teacher",
                    "c2/s3:teacher",
                    "c2/t2:teacher",
                ],
            ),
            scope: ImportScope::Full,
            expected: state(
                &["c1", "c2"],
                &["s1", "s2", "s3"],
                &["t1", "t2", "s3"],
                &["c1/s1", "c1/s2", "c1/s3", "c1/t1", "c2/s3", "c2/t2"],
            ),
            deactivated: 0,
            n_writes: 4,
        },
        RosterCase {
            name: "an empty full import deactivates the whole school",
            held: school(),
            batch: RosterImport::default(),
            scope: ImportScope::Full,
            expected: state(
                &["-c1", "-c2"],
                &["-s1", "-s2", "-s3"],
                &["-t1", "-t2"],
                &["-c1/s1", "-c1/s2", "-c1/s3", "-c1/t1", "-c2/s3", "-c2/t2"],
            ),
            deactivated: 13,
            n_writes: 13,
        },
    ]
}
