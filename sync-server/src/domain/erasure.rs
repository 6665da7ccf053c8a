//! Erasure of a student (a guardian's or the school's request): what goes and what every box of
//! the school is told so it purges its copy.

use shared_proto::sync::EnrolmentRole;

use super::feed::Change;

use super::Write;

/// Erases `student`, who holds `live_templates` and the active enrolments `enrolments` (section,
/// role). The feed keeps only ids: a tombstone per template, each enrolment ended, and the
/// student's own tombstone last, so a box that applies the changes in order never holds a face or
/// a place in a roll of someone it no longer knows.
pub fn decide(
    student: &str,
    live_templates: Vec<String>,
    enrolments: Vec<(String, EnrolmentRole)>,
) -> Vec<Write<'static>> {
    let mut writes = Vec::with_capacity(live_templates.len() + enrolments.len() + 2);
    for template in live_templates {
        writes.push(Write::Change(Change::TemplateDeleted {
            template,
            student: student.to_owned(),
        }));
    }
    for (section, role) in enrolments {
        writes.push(Write::Change(Change::Enrolment {
            section,
            person: student.to_owned(),
            role,
            active: false,
        }));
    }
    writes.push(Write::EraseStudent {
        student: student.to_owned(),
    });
    writes.push(Write::Change(Change::StudentErased {
        student: student.to_owned(),
    }));
    writes
}
