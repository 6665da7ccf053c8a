//! Applying a OneRoster bulk import: all of it in one transaction, idempotent, and students missing
//! from the bulk file marked inactive rather than deleted (their marks and history stay).

use rusqlite::params;

use super::{Store, StoreError};
use crate::roster::RosterImport;

/// What an import changed, for the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub sections: usize,
    pub students: usize,
    pub teachers: usize,
    pub enrolments: usize,
    /// Students active before and absent from this bulk file, now inactive.
    pub deactivated_students: usize,
}

impl Store {
    pub fn apply_roster(
        &mut self,
        import: &RosterImport,
        actor: &str,
    ) -> Result<ImportSummary, StoreError> {
        let tx = self.conn.transaction()?;
        for s in &import.sections {
            tx.execute(
                "INSERT INTO sections (id, title, school_id, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET title = ?2, school_id = ?3, active = ?4",
                params![s.id, s.title, s.school_id, s.active],
            )?;
        }
        for (table, people) in [
            ("students", &import.students),
            ("teachers", &import.teachers),
        ] {
            let mut upsert = tx.prepare(&format!(
                "INSERT INTO {table} (id, given_name, family_name, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET given_name = ?2, family_name = ?3, active = ?4"
            ))?;
            for p in people {
                upsert.execute(params![p.id, p.given_name, p.family_name, p.active])?;
            }
        }
        // A bulk file is the whole truth: what it no longer lists is inactive.
        tx.execute("UPDATE enrolments SET active = 0", [])?;
        for e in &import.enrolments {
            let role = e.role.as_str();
            tx.execute(
                "INSERT INTO enrolments (section_id, person_id, role, active) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (section_id, person_id) DO UPDATE SET role = ?3, active = ?4",
                params![e.section_id, e.person_id, role, e.active],
            )?;
        }
        let listed: std::collections::HashSet<&str> =
            import.students.iter().map(|s| s.id.as_str()).collect();
        let mut deactivated_students = 0;
        {
            let mut stmt = tx.prepare("SELECT id FROM students WHERE active = 1")?;
            let active: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in active.iter().filter(|id| !listed.contains(&id.as_str())) {
                tx.execute("UPDATE students SET active = 0 WHERE id = ?1", [id])?;
                deactivated_students += 1;
            }
        }
        let summary = ImportSummary {
            sections: import.sections.len(),
            students: import.students.len(),
            teachers: import.teachers.len(),
            enrolments: import.enrolments.len(),
            deactivated_students,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::{Enrolment, EnrolmentRole, Person, Section};

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
        assert_eq!(again.deactivated_students, 0);
        assert_eq!(store.section_students("c1").unwrap(), ["a", "b", "c"]);

        let dropped = store.apply_roster(&import(&["a", "c"]), "test").unwrap();
        assert_eq!(dropped.deactivated_students, 1);
        assert_eq!(store.section_students("c1").unwrap(), ["a", "c"]);
        // Kept, not deleted: its history stays readable.
        assert!(!store.student("b").unwrap().active);
    }
}
