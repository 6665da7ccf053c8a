//! Durability benchmark: what `synchronous=FULL` (every commit on the disk before it returns)
//! costs against `NORMAL` (WAL synced only at checkpoints) for the commits a lesson makes: one
//! teacher mark, a capture's session with its 30 machine marks, and a later capture of the same
//! session. Both settings run in this one process on the same disk, interleaved round by round,
//! so the ratio is the figure to read.
//!
//! `cargo bench -p edge-agent --bench durability [-- --quick]`; `ROLLCALL_BENCH_DIR` puts the
//! databases on another disk (default: the system's temporary folder).

#[path = "common/mod.rs"]
mod bench_common;

use std::path::Path;
use std::time::Instant;

use edge_agent::roster::{Enrolment, EnrolmentRole, Person, RosterImport, Section};
use edge_agent::store::{Mark, MarkSource, MarkStatus, SessionRecord, Store};

const SECTION: &str = "c1";
const CLASS_SIZE: usize = 30;
const LEVELS: [&str; 2] = ["NORMAL", "FULL"];

fn student_id(idx: usize) -> String {
    format!("s{idx:02}")
}

fn class_roster() -> RosterImport {
    let ids: Vec<String> = (0..CLASS_SIZE).map(student_id).collect();
    RosterImport {
        sections: vec![Section {
            id: SECTION.into(),
            title: "Year 3 Maths".into(),
            school_id: "o1".into(),
            active: true,
        }],
        students: ids
            .iter()
            .map(|id| Person {
                id: id.clone(),
                given_name: id.clone(),
                family_name: "Bench".into(),
                active: true,
            })
            .collect(),
        enrolments: ids
            .iter()
            .map(|id| Enrolment {
                section_id: SECTION.into(),
                person_id: id.clone(),
                role: EnrolmentRole::Student,
                active: true,
            })
            .collect(),
        ..RosterImport::default()
    }
}

fn machine_marks(round: usize) -> Vec<Mark> {
    (0..CLASS_SIZE)
        .map(|idx| Mark {
            student_id: student_id(idx),
            status: if (idx + round).is_multiple_of(4) {
                MarkStatus::Review
            } else {
                MarkStatus::Present
            },
            source: MarkSource::Machine,
            score: Some(0.6),
            candidates: None,
        })
        .collect()
}

/// Milliseconds per call of `op`, `n` calls.
fn time_each(n: usize, mut op: impl FnMut(usize)) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let started = Instant::now();
            op(i);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// The lesson's commits on `store`, `n_marks` teacher marks and `n_captures` captures.
fn one_round(store: &mut Store, n_marks: usize, n_captures: usize) -> [Vec<f64>; 3] {
    let captures = time_each(n_captures, |i| {
        store
            .record_session(&SessionRecord {
                section_id: SECTION,
                n_frames: 5,
                unknown_faces: 0,
                too_small_faces: 0,
                not_on_roster: &[],
                marks: &machine_marks(i),
            })
            .unwrap();
    });
    let session = store.record_session(&SessionRecord {
        section_id: SECTION,
        n_frames: 5,
        unknown_faces: 0,
        too_small_faces: 0,
        not_on_roster: &[],
        marks: &machine_marks(0),
    });
    let session = session.unwrap();
    let recaptures = time_each(n_captures, |i| {
        store
            .update_machine_marks(&session, &machine_marks(i + 1))
            .unwrap();
    });
    let marks = time_each(n_marks, |i| {
        let status = [MarkStatus::Present, MarkStatus::Absent][i % 2];
        store
            .set_teacher_mark(&session, &student_id(i % CLASS_SIZE), status, "teacher")
            .unwrap();
    });
    [marks, captures, recaptures]
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn open(dir: &Path, level: &str) -> Store {
    let store = Store::open(&dir.join(format!("{level}.sqlite"))).unwrap();
    store.set_synchronous(level).unwrap();
    assert_eq!(store.synchronous().unwrap(), level);
    store
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n_marks, n_captures) = if quick { (2, 50, 10) } else { (5, 200, 40) };
    let root = std::env::var_os("ROLLCALL_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(&root).unwrap();

    let mut stores: Vec<Store> = LEVELS.iter().map(|level| open(dir.path(), level)).collect();
    for store in &mut stores {
        store.apply_roster(&class_roster(), "bench").unwrap();
    }
    // [level][commit kind] -> ms per commit, rounds interleaved so that the disk's moods fall on
    // both settings alike.
    let mut times: Vec<[Vec<f64>; 3]> = LEVELS.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for (store, level_times) in stores.iter_mut().zip(&mut times) {
            let round = one_round(store, n_marks, n_captures);
            for (all, new) in level_times.iter_mut().zip(round) {
                all.extend(new);
            }
        }
    }

    println!(
        "{}",
        bench_common::banner("one store connection on the main thread, as each box worker has")
    );
    println!(
        "- databases in {} (WAL); {rounds} rounds, NORMAL and FULL interleaved\n",
        root.display()
    );
    println!(
        "| commit | NORMAL median ms | NORMAL p95 ms | FULL median ms | FULL p95 ms | FULL / NORMAL (median) |"
    );
    println!("|---|---|---|---|---|---|");
    let kinds = [
        "a teacher's mark (1 mark + outbox event + audit row)",
        "a capture's session (30 machine marks + 31 outbox events)",
        "a later capture of the session (30 machine marks)",
    ];
    for (kind_idx, kind) in kinds.iter().enumerate() {
        let normal = &times[0][kind_idx];
        let full = &times[1][kind_idx];
        let (normal_median, full_median) = (quantile(normal, 0.5), quantile(full, 0.5));
        println!(
            "| {kind} | {normal_median:.3} | {:.3} | {full_median:.3} | {:.3} | {:.1}x |",
            quantile(normal, 0.95),
            quantile(full, 0.95),
            full_median / normal_median
        );
    }
}
