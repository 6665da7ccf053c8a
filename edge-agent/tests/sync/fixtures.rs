//! What boxes write without a camera: machine-marked sessions and synthetic templates, straight
//! into a store, for the sync tests and benches/sync.rs.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use edge_agent::config::SyncConfig;
use edge_agent::store::{Mark, MarkSource, MarkStatus, NewTemplate, SessionRecord, Store};
use edge_agent::sync::{provision, syncer};

use crate::server::Server;

/// The section of `common::write_oneroster`.
pub const SECTION: &str = "c1";
/// A model id for synthetic templates: the boxes store and forward them, never compare them with
/// the real embedder's.
pub const SYNTHETIC_MODEL: &str = "synthetic@0123456789ab";

/// `n` machine-marked sessions of `students` (what captures would write): 1 + students.len()
/// events each; returns how many.
pub fn record_sessions(store: &mut Store, n: usize, students: &[String]) -> usize {
    for i in 0..n {
        let marks: Vec<Mark> = students
            .iter()
            .enumerate()
            .map(|(j, s)| Mark {
                student_id: s.clone(),
                status: if (i + j) % 3 == 0 {
                    MarkStatus::Absent
                } else {
                    MarkStatus::Present
                },
                source: MarkSource::Machine,
                score: Some(0.61),
                candidates: None,
            })
            .collect();
        store
            .record_session(&SessionRecord {
                section_id: SECTION,
                n_frames: 1,
                unknown_faces: 0,
                too_small_faces: 0,
                not_on_roster: &[],
                marks: &marks,
            })
            .unwrap();
    }
    n * (1 + students.len())
}

/// Pushes `templates` (student, vector) from a new box of the school, in the model and space of
/// the ML service whose `/v1/ml/status` answered `status`: templates as boxes would have enrolled.
pub fn push_templates<'s>(
    server: &Server,
    status: &serde_json::Value,
    templates: impl IntoIterator<Item = (&'s str, Vec<f32>)>,
) {
    let (model_id, space) = (
        status["model"].as_str().unwrap(),
        status["space"].as_str().unwrap(),
    );
    let room = Room::join(server, "template maker");
    let mut store = room.store();
    for (student_id, vector) in templates {
        let template = NewTemplate {
            student_id,
            model_id,
            space,
            vector: &vector,
            quality: 0.8,
            source: "enrol-photo",
            crop: None,
        };
        store.add_template(&template, "test").unwrap();
    }
    drop(store);
    room.sync_all();
}

/// `per_student` distinct synthetic 512-d templates for each student.
pub fn add_synthetic_templates(store: &mut Store, students: &[String], per_student: usize) {
    for (i, student) in students.iter().enumerate() {
        for k in 0..per_student {
            let vector: Vec<f32> = (0..512)
                .map(|d| ((i * 7919 + k * 104_729 + d) as f32).sin())
                .collect();
            store
                .add_template(
                    &NewTemplate {
                        student_id: student,
                        model_id: SYNTHETIC_MODEL,
                        // A model nobody named a space for is a space of its own, spelt like
                        // its id (`EmbeddingSpace::of_model`): the server and box B agree.
                        space: SYNTHETIC_MODEL,
                        vector: &vector,
                        quality: 0.8,
                        source: "enrol-photo",
                        crop: None,
                    },
                    "test",
                )
                .unwrap();
        }
    }
}

/// A provisioned box of the school, in a folder of its own, synced by hand (for the benches).
pub struct Room {
    pub dir: tempfile::TempDir,
    pub config: SyncConfig,
}

impl Room {
    pub fn join(server: &Server, name: &str) -> Room {
        let dir = tempfile::tempdir().unwrap();
        let config = SyncConfig::default();
        let mut store = Store::open(&dir.path().join("rollcall.sqlite")).unwrap();
        provision(
            &mut store,
            dir.path(),
            &server.base,
            &server.provisioning_code(name),
            None,
            &config,
        )
        .unwrap();
        let b = Room { dir, config };
        b.sync_all();
        b
    }

    pub fn store(&self) -> Store {
        Store::open(&self.dir.path().join("rollcall.sqlite")).unwrap()
    }

    /// Cycles until nothing waits and a cycle succeeded; returns the time taken.
    pub fn sync_all(&self) -> Duration {
        let mut syncer = syncer(self.dir.path(), self.store(), &self.config).unwrap();
        let started = Instant::now();
        loop {
            let report = syncer.cycle().unwrap();
            assert!(report.error.is_none(), "{report:?}");
            if self.store().outbox_counts().unwrap().waiting == 0 {
                return started.elapsed();
            }
        }
    }
}
