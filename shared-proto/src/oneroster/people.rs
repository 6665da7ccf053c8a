//! users.csv and enrollments.csv: OneRoster's role vocabularies, who is kept (students and
//! teachers), and who may be enrolled as what.

use std::collections::HashMap;

use super::checks::{Index, Lookup, RowChecks, is_active, is_enabled, role_in};
use super::files::{CLASSES, USERS};
use super::table::{Column, Table};
use super::{Enrolment, EnrolmentRole, Person, Problem, RosterError, RosterImport, RowError};

const USER_ROLES: &[&str] = &[
    "administrator",
    "aide",
    "guardian",
    "parent",
    "proctor",
    "relative",
    "student",
    "teacher",
];
const ENROLMENT_ROLES: &[&str] = &["administrator", "proctor", "student", "teacher"];

pub(super) struct UserColumns {
    id: Column,
    role: Column,
    given_name: Column,
    family_name: Column,
    status: Option<Column>,
    enabled_user: Option<Column>,
}

impl UserColumns {
    pub fn find(table: &Table) -> Result<Self, RosterError> {
        Ok(UserColumns {
            id: table.required("sourcedId")?,
            role: table.required("role")?,
            given_name: table.required("givenName")?,
            family_name: table.required("familyName")?,
            status: table.optional("status"),
            enabled_user: table.optional("enabledUser"),
        })
    }
}

/// Reads users into `roster.students` and `roster.teachers`; returns every valid user's role
/// (parents too), which enrollments are checked against.
pub(super) fn read_users(
    table: &Table,
    columns: &UserColumns,
    problems: &mut Vec<RowError>,
    roster: &mut RosterImport,
) -> Index<&'static str> {
    let mut checks = RowChecks::new(table.file, problems);
    let mut kept = HashMap::new();
    for row in &table.rows {
        let required = [
            columns.id,
            columns.role,
            columns.given_name,
            columns.family_name,
        ];
        let has_values = checks.has_values_and_new_id(row, columns.id, &required);
        let role = row.get(columns.role);
        // An empty role was reported as empty already.
        let role = if role.is_empty() {
            None
        } else {
            checks.check(row.line, role_in(USER_ROLES, role))
        };
        let status = checks.check(row.line, is_active(row.get_optional(columns.status)));
        let enabled = checks.check(row.line, is_enabled(row.get_optional(columns.enabled_user)));
        let (true, Some(role), Some(status), Some(enabled)) = (has_values, role, status, enabled)
        else {
            continue;
        };
        let id = row.get(columns.id);
        kept.insert(id.to_owned(), role);
        let person = Person {
            id: id.to_owned(),
            given_name: row.get(columns.given_name).to_owned(),
            family_name: row.get(columns.family_name).to_owned(),
            active: status && enabled,
        };
        match role {
            "student" => roster.students.push(person),
            "teacher" => roster.teachers.push(person),
            _ => {}
        }
    }
    checks.into_index(kept, table, columns.id)
}

pub(super) struct EnrolmentColumns {
    id: Column,
    class_id: Column,
    user_id: Column,
    role: Column,
    status: Option<Column>,
}

impl EnrolmentColumns {
    pub fn find(table: &Table) -> Result<Self, RosterError> {
        Ok(EnrolmentColumns {
            id: table.required("sourcedId")?,
            class_id: table.required("classSourcedId")?,
            user_id: table.required("userSourcedId")?,
            role: table.required("role")?,
            status: table.optional("status"),
        })
    }
}

/// Reads student and teacher enrolments, each naming a known class and a user of that role.
pub(super) fn read_enrolments(
    table: &Table,
    columns: &EnrolmentColumns,
    class_index: &Index<()>,
    user_index: &Index<&'static str>,
    problems: &mut Vec<RowError>,
) -> Vec<Enrolment> {
    let mut checks = RowChecks::new(table.file, problems);
    // (class, user) -> first line: the store keys enrolments by the pair, so a second one would
    // only fail later inside its transaction, without a line to point at.
    let mut first_line_of_pair: HashMap<(String, String), u64> = HashMap::new();
    let mut enrolments = Vec::new();
    for row in &table.rows {
        let required = [columns.id, columns.class_id, columns.user_id, columns.role];
        let mut is_ok = checks.has_values_and_new_id(row, columns.id, &required);
        let (class_id, user_id) = (row.get(columns.class_id), row.get(columns.user_id));
        let role = row.get(columns.role);
        let role = if role.is_empty() {
            None
        } else {
            checks.check(row.line, role_in(ENROLMENT_ROLES, role))
        };
        let active = checks.check(row.line, is_active(row.get_optional(columns.status)));

        // A reference to a row that had its own problem is not reported again: fixing that row
        // fixes this one.
        match class_index.lookup(class_id) {
            Lookup::Kept(()) => {}
            Lookup::Rejected => is_ok = false,
            // An empty id was reported as empty already.
            Lookup::Unknown if class_id.is_empty() => is_ok = false,
            Lookup::Unknown => {
                let problem = Problem::UnknownReference {
                    kind: "class",
                    id: class_id.to_owned(),
                    file: CLASSES,
                };
                checks.report(row.line, problem);
                is_ok = false;
            }
        }
        if user_id.is_empty() {
            is_ok = false;
        } else {
            match (user_index.lookup(user_id), role) {
                (Lookup::Rejected, _) => is_ok = false,
                (Lookup::Unknown, _) => {
                    let problem = Problem::UnknownReference {
                        kind: "user",
                        id: user_id.to_owned(),
                        file: USERS,
                    };
                    checks.report(row.line, problem);
                    is_ok = false;
                }
                // Administrators and proctors are not kept, so any user role will do for them.
                (Lookup::Kept(&user_role), Some(enrolled_as @ ("student" | "teacher")))
                    if user_role != enrolled_as =>
                {
                    let problem = Problem::RoleMismatch {
                        user_id: user_id.to_owned(),
                        enrolled_as,
                        user_role,
                    };
                    checks.report(row.line, problem);
                    is_ok = false;
                }
                _ => {}
            }
        }

        let role = match role {
            Some("student") => EnrolmentRole::Student,
            Some("teacher") => EnrolmentRole::Teacher,
            _ => continue,
        };
        let (true, Some(active)) = (is_ok, active) else {
            continue;
        };
        // Only rows whose class and user were kept get here.
        let pair = (class_id.to_owned(), user_id.to_owned());
        if let Some(&first_line) = first_line_of_pair.get(&pair) {
            let problem = Problem::DuplicateEnrolment {
                user_id: user_id.to_owned(),
                class_id: class_id.to_owned(),
                first_line,
            };
            checks.report(row.line, problem);
            continue;
        }
        first_line_of_pair.insert(pair, row.line);
        enrolments.push(Enrolment {
            section_id: class_id.to_owned(),
            person_id: user_id.to_owned(),
            role,
            active,
        });
    }
    enrolments
}
