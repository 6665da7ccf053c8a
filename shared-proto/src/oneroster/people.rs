//! users.csv and enrollments.csv: OneRoster's role vocabularies, and who is kept as a student or
//! a teacher: their users.csv role, and whatever they are enrolled as.

use std::collections::{HashMap, HashSet};

use super::checks::{Findings, Index, Lookup, RowChecks, is_enabled, role_in};
use super::files::{CLASSES, USERS};
use super::table::{Column, Table};
use super::{Enrolment, EnrolmentRole, Guardian, Person, Problem, RosterError, WarningKind};

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
    email: Option<Column>,
    agents: Option<Column>,
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
            email: table.optional("email"),
            agents: table.optional("agentSourcedIds"),
        })
    }
}

/// A valid row of users.csv.
pub(super) struct User {
    person: Person,
    /// The users.csv role, in OneRoster's spelling.
    role: &'static str,
    email: String,
    /// `agentSourcedIds`: a student's guardians, or a guardian's students.
    agents: Vec<String>,
}

/// Reads users; returns every valid user's role (parents too), which enrollments look up, and
/// the users in file order.
pub(super) fn read_users(
    table: &Table,
    columns: &UserColumns,
    findings: &mut Findings,
) -> (Index<&'static str>, Vec<User>) {
    let mut checks = RowChecks::new(table.file, findings);
    let mut kept = HashMap::new();
    let mut users = Vec::new();
    for row in &table.rows {
        let required = [
            columns.id,
            columns.role,
            columns.given_name,
            columns.family_name,
        ];
        let has_values = checks.has_values_and_new_id(row, columns.id, &required);
        let is_usable = checks.is_usable_id(row, columns.id);
        let role = row.get(columns.role);
        // An empty role was reported as empty already.
        let role = if role.is_empty() {
            None
        } else {
            checks.check(row.line, role_in(USER_ROLES, role))
        };
        let status = checks.is_active(row, columns.status);
        let enabled = checks.check(row.line, is_enabled(row.get_optional(columns.enabled_user)));
        let (true, true, Some(role), Some(status), Some(enabled)) =
            (has_values, is_usable, role, status, enabled)
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
        let agents = row
            .get_optional(columns.agents)
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        let email = row.get_optional(columns.email).trim().to_owned();
        users.push(User {
            person,
            role,
            email,
            agents,
        });
    }
    (checks.into_index(kept, table, columns.id), users)
}

/// Students and teachers, each in users.csv order: a user is kept as their users.csv role (when
/// it is student or teacher) and as every role they are enrolled in, so that every enrolment
/// names a person of its role, which is all the stores ask.
pub(super) fn people_by_part(
    users: Vec<User>,
    enrolments: &[Enrolment],
) -> (Vec<Person>, Vec<Person>) {
    let enrolled_as: HashSet<(&str, EnrolmentRole)> = enrolments
        .iter()
        .map(|enrolment| (enrolment.person_id.as_str(), enrolment.role))
        .collect();
    let (mut students, mut teachers) = (Vec::new(), Vec::new());
    for User { person, role, .. } in users {
        let id = person.id.as_str();
        let is_student = role == "student" || enrolled_as.contains(&(id, EnrolmentRole::Student));
        let is_teacher = role == "teacher" || enrolled_as.contains(&(id, EnrolmentRole::Teacher));
        match (is_student, is_teacher) {
            (true, true) => {
                students.push(person.clone());
                teachers.push(person);
            }
            (true, false) => students.push(person),
            (false, true) => teachers.push(person),
            (false, false) => {}
        }
    }
    (students, teachers)
}

const GUARDIAN_ROLES: [&str; 3] = ["parent", "guardian", "relative"];

/// Parents, guardians and relatives with an address, each linked to every user whose
/// `agentSourcedIds` names them and every user their own names (`export` keeps only students).
/// One without an address is a warning.
pub(super) fn guardians(users: &[User], findings: &mut Findings) -> Vec<Guardian> {
    let mut links: HashMap<&str, Vec<String>> = HashMap::new();
    for user in users {
        let own = GUARDIAN_ROLES.contains(&user.role);
        for agent in &user.agents {
            if own {
                links
                    .entry(&user.person.id)
                    .or_default()
                    .push(agent.clone());
            } else {
                links.entry(agent).or_default().push(user.person.id.clone());
            }
        }
    }
    let mut kept = Vec::new();
    for user in users.iter().filter(|u| GUARDIAN_ROLES.contains(&u.role)) {
        if user.email.is_empty() {
            findings.warn(USERS, WarningKind::GuardianWithoutEmail);
            continue;
        }
        let mut student_ids = links.remove(user.person.id.as_str()).unwrap_or_default();
        student_ids.sort();
        student_ids.dedup();
        kept.push(Guardian {
            id: user.person.id.clone(),
            given_name: user.person.given_name.clone(),
            family_name: user.person.family_name.clone(),
            email: user.email.clone(),
            relationship: user.role,
            active: user.person.active,
            student_ids,
        });
    }
    kept
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

/// Reads student and teacher enrolments, each naming a known class and a known user. A user's
/// users.csv role may differ from the enrolment's (a teacher taking a class, an SIS that lists
/// everyone as `student`): the enrolment decides their part in that class, and such rows are
/// counted as a warning.
pub(super) fn read_enrolments(
    table: &Table,
    columns: &EnrolmentColumns,
    class_index: &Index<()>,
    user_index: &Index<&'static str>,
    findings: &mut Findings,
) -> Vec<Enrolment> {
    let mut checks = RowChecks::new(table.file, findings);
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
        let active = checks.is_active(row, columns.status);

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
        let mut user_role = None;
        if user_id.is_empty() {
            is_ok = false;
        } else {
            match user_index.lookup(user_id) {
                Lookup::Kept(&role) => user_role = Some(role),
                Lookup::Rejected => is_ok = false,
                Lookup::Unknown => {
                    let problem = Problem::UnknownReference {
                        kind: "user",
                        id: user_id.to_owned(),
                        file: USERS,
                    };
                    checks.report(row.line, problem);
                    is_ok = false;
                }
            }
        }

        // Administrators and proctors are not kept, so their users.csv role does not matter.
        let (role, enrolled_as) = match role {
            Some(enrolled_as @ "student") => (EnrolmentRole::Student, enrolled_as),
            Some(enrolled_as @ "teacher") => (EnrolmentRole::Teacher, enrolled_as),
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
        if user_role.is_some_and(|user_role| user_role != enrolled_as) {
            checks.warn(WarningKind::EnrolmentRoleDiffers);
        }
        enrolments.push(Enrolment {
            section_id: class_id.to_owned(),
            person_id: user_id.to_owned(),
            role,
            active,
        });
    }
    enrolments
}
