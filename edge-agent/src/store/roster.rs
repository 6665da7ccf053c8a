//! Applying a OneRoster bulk import: all of it in one transaction, idempotent, as
//! `shared_proto::roster` decides for the box and the server alike. A bulk file is the whole
//! truth about the school, so what the box holds and the file no longer lists (sections,
//! students, teachers, enrolments) becomes inactive rather than deleted: marks and history stay.

use rusqlite::{Transaction, params};
use shared_proto::roster::{ImportScope, RosterDiffError, roster_diff};

use super::{Store, StoreError, word};
use crate::roster::{Enrolment, Person, RosterImport, Section};

/// What an import changed, for the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub sections: usize,
    pub students: usize,
    pub teachers: usize,
    pub enrolments: usize,
    /// Sections, students, teachers and enrolments active before and absent from this bulk
    /// file, now inactive.
    pub deactivated: usize,
}

impl Store {
    pub fn apply_roster(
        &mut self,
        import: &RosterImport,
        actor: &str,
    ) -> Result<ImportSummary, StoreError> {
        let tx = self.conn.transaction()?;
        let held = held_roster(&tx)?;
        let diff = roster_diff(&held, import, ImportScope::Full).map_err(|e| match e {
            RosterDiffError::UnknownSection { section_id, .. } => {
                StoreError::UnknownSection(section_id)
            }
        })?;
        {
            let mut upsert = tx.prepare(
                "INSERT INTO sections (id, title, school_id, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET title = ?2, school_id = ?3, active = ?4",
            )?;
            for s in diff.sections.upserts() {
                upsert.execute(params![s.id, s.title, s.school_id, s.active])?;
            }
            let mut deactivate = tx.prepare("UPDATE sections SET active = 0 WHERE id = ?1")?;
            for s in &diff.sections.deactivations {
                deactivate.execute([&s.id])?;
            }
            for (table, people) in [("students", &diff.students), ("teachers", &diff.teachers)] {
                // Consent is not the roster's: a held student keeps theirs.
                let mut upsert = tx.prepare(&format!(
                    "INSERT INTO {table} (id, given_name, family_name, active) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET given_name = ?2, family_name = ?3, active = ?4"
                ))?;
                for p in people.upserts() {
                    upsert.execute(params![p.id, p.given_name, p.family_name, p.active])?;
                }
                let mut deactivate =
                    tx.prepare(&format!("UPDATE {table} SET active = 0 WHERE id = ?1"))?;
                for p in &people.deactivations {
                    deactivate.execute([&p.id])?;
                }
            }
            let mut upsert = tx.prepare(
                "INSERT INTO enrolments (section_id, person_id, role, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (section_id, person_id) DO UPDATE SET role = ?3, active = ?4",
            )?;
            for e in diff.enrolments.upserts() {
                upsert.execute(params![
                    e.section_id,
                    e.person_id,
                    e.role.as_str(),
                    e.active
                ])?;
            }
            let mut deactivate = tx.prepare(
                "UPDATE enrolments SET active = 0 WHERE section_id = ?1 AND person_id = ?2",
            )?;
            for e in &diff.enrolments.deactivations {
                deactivate.execute([&e.section_id, &e.person_id])?;
            }
        }
        let counts = diff.counts();
        let summary = ImportSummary {
            sections: counts.sections,
            students: counts.students,
            teachers: counts.teachers,
            enrolments: counts.enrolments,
            deactivated: counts.deactivated,
        };
        Store::audit(
            &tx,
            actor,
            "roster_import",
            &serde_json::to_string(&summary).expect("plain data"),
        )?;
        tx.commit()?;
        Ok(summary)
    }
}

/// Everything the box holds of the roster, one query per kind: the box holds one school.
fn held_roster(tx: &Transaction<'_>) -> Result<RosterImport, StoreError> {
    let mut stmt = tx.prepare("SELECT id, title, school_id, active FROM sections")?;
    let sections = stmt.query_map([], |r| {
        Ok(Section {
            id: r.get(0)?,
            title: r.get(1)?,
            school_id: r.get(2)?,
            active: r.get(3)?,
        })
    })?;
    let sections = sections.collect::<Result<_, _>>()?;
    let people = |table: &str| -> Result<Vec<Person>, StoreError> {
        let mut stmt = tx.prepare(&format!(
            "SELECT id, given_name, family_name, active FROM {table}"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(Person {
                id: r.get(0)?,
                given_name: r.get(1)?,
                family_name: r.get(2)?,
                active: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let mut stmt = tx.prepare("SELECT section_id, person_id, role, active FROM enrolments")?;
    let enrolments = stmt.query_map([], |r| {
        Ok(Enrolment {
            section_id: r.get(0)?,
            person_id: r.get(1)?,
            role: word(2, &r.get::<_, String>(2)?)?,
            active: r.get(3)?,
        })
    })?;
    let enrolments = enrolments.collect::<Result<_, _>>()?;
    Ok(RosterImport {
        sections,
        students: people("students")?,
        teachers: people("teachers")?,
        enrolments,
        ..RosterImport::default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shared_proto::roster::cases::{RosterState, cases};

    use super::*;
    use crate::roster::EnrolmentRole;

    fn import(students: &[&str]) -> RosterImport {
        RosterImport {
            sections: vec![Section {
                id: "c1".into(),
                title: "7B".into(),
                school_id: "o1".into(),
                active: true,
            }],
            students: students
                .iter()
                .map(|id| Person {
                    id: (*id).into(),
                    given_name: "G".into(),
                    family_name: "F".into(),
                    active: true,
                })
                .collect(),
            enrolments: students
                .iter()
                .map(|id| Enrolment {
                    section_id: "c1".into(),
                    person_id: (*id).into(),
                    role: EnrolmentRole::Student,
                    active: true,
                })
                .collect(),
            ..RosterImport::default()
        }
    }

    #[test]
    fn reimport_is_idempotent_and_dropped_students_become_inactive() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .apply_roster(&import(&["a", "b", "c"]), "test")
            .unwrap();
        let again = store
            .apply_roster(&import(&["a", "b", "c"]), "test")
            .unwrap();
        assert_eq!(again.deactivated, 0);
        assert_eq!(store.section_students("c1").unwrap(), ["a", "b", "c"]);

        let dropped = store.apply_roster(&import(&["a", "c"]), "test").unwrap();
        // b and b's enrolment.
        assert_eq!(dropped.deactivated, 2);
        assert_eq!(store.section_students("c1").unwrap(), ["a", "c"]);
        // Kept, not deleted: its history stays readable.
        assert!(!store.student("b").unwrap().active);
    }

    /// What the box holds, in the shared cases' terms.
    fn held_state(store: &Store) -> RosterState {
        let read = |sql: &str| -> BTreeMap<String, bool> {
            let mut stmt = store.conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        RosterState {
            sections: read("SELECT id, active FROM sections"),
            students: read("SELECT id, active FROM students"),
            teachers: read("SELECT id, active FROM teachers"),
            enrolments: read("SELECT section_id || '/' || person_id, active FROM enrolments"),
        }
    }

    #[test]
    fn the_shared_roster_cases() {
        // The box imports bulk files only: the partial cases are the server's admin API's.
        let full_cases = cases().into_iter().filter(|c| c.scope == ImportScope::Full);
        for case in full_cases {
            let mut store = Store::open_in_memory().unwrap();
            store.apply_roster(&case.held, "test").unwrap();
            let before = store.conn.total_changes();
            let summary = store.apply_roster(&case.batch, "test").unwrap();
            // Less the import's audit row.
            let n_writes = store.conn.total_changes() - before - 1;
            assert_eq!(held_state(&store), case.expected, "{}", case.name);
            assert_eq!(summary.deactivated, case.deactivated, "{}", case.name);
            assert_eq!(n_writes, case.n_writes as u64, "{}", case.name);
        }
    }
}
