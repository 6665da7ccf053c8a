//! A OneRoster upload to one school, decided once for the API and the roster page: which records
//! of an export are the school's (`batch_of`), and what applying it would change (`Preview`), read
//! from the same `shared_proto::roster` diff that the stores apply. Pure: the caller reads what the
//! school holds (`Store::roster`) and writes with `Store::apply_roster`.

use std::collections::{BTreeSet, HashMap};

use shared_proto::oneroster::{self, RosterError, RosterFiles, RosterImport, RosterWarning};
use shared_proto::roster::{ImportScope, RecordDiff, RosterDiffError, roster_diff};
use shared_proto::sync::Consent;

use super::guardian::Contact;
use crate::store::{Enrolment, RosterBatch, Section, Student, Teacher};

/// Why an export cannot be applied to the school; nothing of it is.
#[derive(Debug, thiserror::Error)]
pub enum UploadRefusal {
    /// The export itself is wrong: every problem as `file:line: reason`.
    #[error("{0}")]
    Export(#[from] RosterError),
    /// A district export none of whose classes is this school's.
    #[error(
        "classes.csv: the classes belong to several schools ({}) and none is {school}: upload one school's export, or use its sourcedId as the school id",
        .orgs.join(", ")
    )]
    OtherSchools { orgs: Vec<String>, school: String },
    /// An enrolment names a section neither the school nor the export has.
    #[error("{0}")]
    Diff(#[from] RosterDiffError),
}

impl UploadRefusal {
    /// The problems one per line, as the page lists them: `file:line: reason`, at most
    /// `oneroster::MAX_LISTED_PROBLEMS` and then how many more.
    pub fn problems(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_owned).collect()
    }
}

/// An uploaded export (its files by name) read for `school_id`: the batch `batch_of` keeps, and
/// what the parser read leniently. The API's upload and the roster page both start here.
pub fn read(school_id: &str, files: Vec<(String, Vec<u8>)>) -> Result<Upload, UploadRefusal> {
    let files = RosterFiles::from_files("the upload", files)?;
    let mut import = oneroster::parse_oneroster(&files)?;
    let warnings = std::mem::take(&mut import.warnings);
    let guardians = std::mem::take(&mut import.guardians);
    let batch = batch_of(school_id, import)?;
    let students: BTreeSet<&str> = batch.students.iter().map(|s| s.id.as_str()).collect();
    let guardians = guardians
        .into_iter()
        .filter_map(|guardian| {
            let relationship = guardian.relationship.parse().ok()?;
            let children: Vec<String> = guardian
                .student_ids
                .into_iter()
                .filter(|id| students.contains(id.as_str()))
                .collect();
            let contact = Contact {
                given_name: guardian.given_name,
                family_name: guardian.family_name,
                email: guardian.email,
                relationship,
            };
            (guardian.active && !children.is_empty()).then_some((contact, children))
        })
        .collect();
    Ok(Upload {
        batch,
        warnings,
        guardians,
    })
}

/// An upload read for one school.
#[derive(Clone, Debug)]
pub struct Upload {
    pub batch: RosterBatch,
    /// What the parser read leniently.
    pub warnings: Vec<RosterWarning>,
    /// The export's active guardians of the school's students, each with those students, linked
    /// after the roster is applied (`link_guardians`): an import adds guardians, and removing one
    /// is done on the dashboard.
    pub guardians: Vec<(Contact, Vec<String>)>,
}

/// What linking an upload's guardians came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardiansLinked {
    /// Links to a student made or found in place.
    pub linked: usize,
    /// Contacts refused (`guardian::Contact::check`: an address or a name that cannot be kept).
    pub refused: usize,
}

impl GuardiansLinked {
    /// `summary` followed by "; 12 guardian links (2 guardians refused: address or name)", for
    /// the audit log and the page; `summary` alone for an export without guardians.
    pub fn after(self, summary: String) -> String {
        let links = if self.linked == 1 { "link" } else { "links" };
        match (self.linked, self.refused) {
            (0, 0) => summary,
            (linked, 0) => format!("{summary}; {linked} guardian {links}"),
            (linked, n) => format!(
                "{summary}; {linked} guardian {links} ({n} guardian{} refused: address or name)",
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The storage batch of an export for `school_id`. An export of one school goes in whole, whatever
/// its org ids are; from a district export only the classes of this school (by the classes' school
/// sourcedId) and the people enrolled in them are kept. Consent is not a roster's: new students
/// have none, and an update keeps what is held (`store::roster::Stored`).
pub fn batch_of(school_id: &str, import: RosterImport) -> Result<RosterBatch, UploadRefusal> {
    let orgs: BTreeSet<&str> = import
        .sections
        .iter()
        .map(|section| section.school_id.as_str())
        .collect();
    let whole_export = orgs.len() <= 1;
    if !whole_export && !orgs.contains(school_id) {
        return Err(UploadRefusal::OtherSchools {
            orgs: orgs.into_iter().map(str::to_owned).collect(),
            school: school_id.to_owned(),
        });
    }
    let kept_sections: BTreeSet<String> = import
        .sections
        .iter()
        .filter(|section| whole_export || section.school_id == school_id)
        .map(|section| section.id.clone())
        .collect();
    let enrolments: Vec<Enrolment> = import
        .enrolments
        .into_iter()
        .filter(|enrolment| kept_sections.contains(&enrolment.section_id))
        .collect();
    let enrolled: BTreeSet<&str> = enrolments
        .iter()
        .map(|enrolment| enrolment.person_id.as_str())
        .collect();
    let keep_person = |id: &str| whole_export || enrolled.contains(id);
    let students = import
        .students
        .iter()
        .filter(|person| keep_person(&person.id))
        .map(|person| Student {
            id: person.id.clone(),
            school_id: school_id.to_owned(),
            given_name: person.given_name.clone(),
            family_name: person.family_name.clone(),
            active: person.active,
            consent: Consent::None,
            consent_by: None,
            consent_at: None,
        })
        .collect();
    let teachers = import
        .teachers
        .iter()
        .filter(|person| keep_person(&person.id))
        .map(|person| Teacher {
            id: person.id.clone(),
            school_id: school_id.to_owned(),
            given_name: person.given_name.clone(),
            family_name: person.family_name.clone(),
            active: person.active,
        })
        .collect();
    let sections = import
        .sections
        .into_iter()
        .filter(|section| kept_sections.contains(&section.id))
        .map(|section| Section {
            school_id: school_id.to_owned(),
            ..section
        })
        .collect();
    Ok(RosterBatch {
        sections,
        students,
        teachers,
        enrolments,
    })
}

/// What applying a full export would change, kind by kind, in words an admin checks before
/// applying: the records added, changed (and how) and deactivated. Two previews are equal when the
/// same upload would write the same records, which is how the page notices that the school changed
/// between the preview and the click on "apply".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    pub sections: Changes,
    pub students: Changes,
    pub teachers: Changes,
    pub enrolments: Changes,
}

/// One kind's changes, each a line naming the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deactivated: Vec<String>,
    /// Records the export names that stay as they are.
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.deactivated.is_empty()
    }
}

impl Preview {
    fn kinds(&self) -> [&Changes; 4] {
        [
            &self.sections,
            &self.students,
            &self.teachers,
            &self.enrolments,
        ]
    }

    /// Whether applying writes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.kinds().iter().all(|changes| changes.is_empty())
    }

    /// "3 added, 1 changed, 2 deactivated", over every kind of record.
    pub fn summary(&self) -> String {
        let total = |list: fn(&Changes) -> usize| self.kinds().into_iter().map(list).sum::<usize>();
        format!(
            "{} added, {} changed, {} deactivated",
            total(|c| c.added.len()),
            total(|c| c.changed.len()),
            total(|c| c.deactivated.len())
        )
    }
}

/// The preview of applying `batch` in full to a school that holds `held`: the stores' own diff
/// (`shared_proto::roster::roster_diff`), put in words.
pub fn preview(held: &RosterBatch, batch: &RosterBatch) -> Result<Preview, UploadRefusal> {
    let diff = roster_diff(held, batch, ImportScope::Full)?;
    // Names for enrolments' lines: the export's, else the held ones.
    let mut people: HashMap<&str, String> = HashMap::new();
    let mut titles: HashMap<&str, &str> = HashMap::new();
    for roster in [held, batch] {
        for s in &roster.students {
            people.insert(&s.id, format!("{} {}", s.given_name, s.family_name));
        }
        for t in &roster.teachers {
            people.insert(&t.id, format!("{} {}", t.given_name, t.family_name));
        }
        for s in &roster.sections {
            titles.insert(&s.id, &s.title);
        }
    }
    let person = |id: &str| match people.get(id) {
        Some(name) => format!("{name} ({id})"),
        None => id.to_owned(),
    };
    let section = |id: &str| match titles.get(id) {
        Some(title) => format!("{title} ({id})"),
        None => id.to_owned(),
    };
    Ok(Preview {
        sections: changes(
            &diff.sections,
            |s| format!("{} ({})", s.title, s.id),
            |held, wanted| {
                let mut how = Vec::new();
                if held.title != wanted.title {
                    how.push(format!("title \"{}\" → \"{}\"", held.title, wanted.title));
                }
                how.extend(activity(held.active, wanted.active));
                how
            },
        ),
        students: changes(
            &diff.students,
            |s| format!("{} {} ({})", s.given_name, s.family_name, s.id),
            |held, wanted| {
                name_change(
                    (&held.given_name, &held.family_name, held.active),
                    (&wanted.given_name, &wanted.family_name, wanted.active),
                )
            },
        ),
        teachers: changes(
            &diff.teachers,
            |t| format!("{} {} ({})", t.given_name, t.family_name, t.id),
            |held, wanted| {
                name_change(
                    (&held.given_name, &held.family_name, held.active),
                    (&wanted.given_name, &wanted.family_name, wanted.active),
                )
            },
        ),
        enrolments: changes(
            &diff.enrolments,
            |e| {
                format!(
                    "{} in {} as {}",
                    person(&e.person_id),
                    section(&e.section_id),
                    e.role.as_str()
                )
            },
            |held, wanted| {
                let mut how = Vec::new();
                if held.role != wanted.role {
                    how.push(format!("{} → {}", held.role.as_str(), wanted.role.as_str()));
                }
                how.extend(activity(held.active, wanted.active));
                how
            },
        ),
    })
}

fn changes<T>(
    diff: &RecordDiff<'_, T>,
    label: impl Fn(&T) -> String,
    how: impl Fn(&T, &T) -> Vec<String>,
) -> Changes {
    Changes {
        added: diff.inserts.iter().map(|r| label(r)).collect(),
        changed: diff
            .updates
            .iter()
            .map(|u| format!("{}: {}", label(u.held), how(u.held, u.wanted).join("; ")))
            .collect(),
        deactivated: diff.deactivations.iter().map(|r| label(r)).collect(),
        unchanged: diff.n_in_batch - diff.inserts.len() - diff.updates.len(),
    }
}

fn name_change(held: (&str, &str, bool), wanted: (&str, &str, bool)) -> Vec<String> {
    let mut how = Vec::new();
    if (held.0, held.1) != (wanted.0, wanted.1) {
        how.push(format!(
            "name \"{} {}\" → \"{} {}\"",
            held.0, held.1, wanted.0, wanted.1
        ));
    }
    how.extend(activity(held.2, wanted.2));
    how
}

fn activity(held: bool, wanted: bool) -> Option<String> {
    match (held, wanted) {
        (false, true) => Some("active again".to_owned()),
        (true, false) => Some("marked inactive by the export".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_proto::sync::EnrolmentRole;

    fn student(id: &str, given: &str, active: bool) -> Student {
        Student {
            id: id.to_owned(),
            school_id: "north".to_owned(),
            given_name: given.to_owned(),
            family_name: "Lovelace".to_owned(),
            active,
            consent: Consent::Granted,
            consent_by: None,
            consent_at: None,
        }
    }

    fn section(id: &str, title: &str) -> Section {
        Section {
            id: id.to_owned(),
            school_id: "north".to_owned(),
            title: title.to_owned(),
            active: true,
        }
    }

    fn enrolment(section: &str, person: &str) -> Enrolment {
        Enrolment {
            section_id: section.to_owned(),
            person_id: person.to_owned(),
            role: EnrolmentRole::Student,
            active: true,
        }
    }

    #[test]
    fn a_preview_names_what_is_added_changed_and_deactivated() {
        let held = RosterBatch {
            sections: vec![section("m", "Maths")],
            students: vec![
                student("s1", "Ada", true),
                student("s2", "Alan", true),
                student("s3", "Grace", false),
            ],
            teachers: vec![],
            enrolments: vec![enrolment("m", "s1"), enrolment("m", "s2")],
        };
        let batch = RosterBatch {
            sections: vec![section("m", "Mathematics"), section("a", "Art")],
            // s1 unchanged, s2 left out, s3 back, s4 new.
            students: vec![
                student("s1", "Ada", true),
                student("s3", "Grace", true),
                student("s4", "Emmy", true),
            ],
            teachers: vec![],
            enrolments: vec![enrolment("m", "s1"), enrolment("a", "s4")],
        };
        let preview = preview(&held, &batch).unwrap();
        assert_eq!(preview.sections.added, ["Art (a)"]);
        assert_eq!(
            preview.sections.changed,
            ["Maths (m): title \"Maths\" → \"Mathematics\""]
        );
        assert_eq!(preview.students.added, ["Emmy Lovelace (s4)"]);
        assert_eq!(
            preview.students.changed,
            ["Grace Lovelace (s3): active again"]
        );
        assert_eq!(preview.students.deactivated, ["Alan Lovelace (s2)"]);
        assert_eq!(preview.students.unchanged, 1);
        assert_eq!(
            preview.enrolments.added,
            ["Emmy Lovelace (s4) in Art (a) as student"]
        );
        assert_eq!(
            preview.enrolments.deactivated,
            ["Alan Lovelace (s2) in Mathematics (m) as student"]
        );
        assert_eq!(preview.summary(), "3 added, 2 changed, 2 deactivated");
        assert!(!preview.is_empty());
        assert!(self::preview(&batch, &batch).unwrap().is_empty());
    }

    #[test]
    fn an_enrolment_in_a_section_nobody_has_is_refused() {
        let batch = RosterBatch {
            students: vec![student("s1", "Ada", true)],
            enrolments: vec![enrolment("nowhere", "s1")],
            ..RosterBatch::default()
        };
        let refusal = preview(&RosterBatch::default(), &batch).unwrap_err();
        assert!(refusal.to_string().contains("nowhere"), "{refusal}");
    }
}
