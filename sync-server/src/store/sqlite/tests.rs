//! SQLite-only behaviour: what the contract suite cannot say for every backend.

use super::*;

fn school() -> School {
    School {
        id: "sch-1".into(),
        name: "North".into(),
    }
}

#[tokio::test]
async fn reopening_keeps_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("server.sqlite");
    {
        let store = SqliteStore::open(&path).expect("open new");
        store.create_school(&school()).await.expect("create school");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.schools().await.expect("schools"), vec![school()]);
}

#[tokio::test]
async fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.sqlite");
    {
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", 999)
            .expect("set version");
    }
    let before = std::fs::read(&path).expect("read file");
    match SqliteStore::open(&path) {
        Err(StoreError::NewerSchema(message)) => {
            assert!(message.contains("999"), "{message}");
            assert!(message.contains("Upgrade sync-server"), "{message}");
        }
        Err(other) => panic!("expected NewerSchema, got {other}"),
        Ok(_) => panic!("a newer database was opened"),
    }
    assert_eq!(std::fs::read(&path).expect("read file"), before);
    assert!(!dir.path().join("server.sqlite-wal").exists());
}

#[tokio::test]
async fn not_a_database_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.sqlite");
    std::fs::write(
        &path,
        b"this is not sqlite, just text long enough to have a header...",
    )
    .expect("write");
    match SqliteStore::open(&path) {
        Err(e) => assert!(e.to_string().contains("server.sqlite"), "{e}"),
        Ok(_) => panic!("a text file was opened as a database"),
    }
}

#[tokio::test]
async fn pragmas_are_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    let (mode, sync, fk, version) = store
        .writer
        .run(|conn| {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((mode, sync, fk, version))
        })
        .await
        .expect("read pragmas");
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    assert_eq!(fk, 1);
    assert_eq!(version, schema::supported_version());
}

/// A failing job in a group rolls back alone: the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_write_does_not_undo_its_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).expect("open"));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let id = format!("sch-{}", i % 20);
            store
                .create_school(&School {
                    id,
                    name: format!("School {i}"),
                })
                .await
        }));
    }
    let mut n_ok = 0;
    let mut n_conflict = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => n_ok += 1,
            Err(StoreError::Conflict(_)) => n_conflict += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((n_ok, n_conflict), (20, 20));
    assert_eq!(store.schools().await.expect("schools").len(), 20);
}

/// Marks have no index led by the student or the school (schema version 2): attendance queries
/// and erasure must still never scan the whole `marks` table.
#[tokio::test]
async fn attendance_and_erasure_never_scan_all_marks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    let plans = store
        .writer
        .run(|conn| {
            let mut plans = Vec::new();
            let by_student: &[&dyn rusqlite::ToSql] =
                &[&"sch-1", &0, &100, &None::<String>, &"stu-1"];
            let by_section: &[&dyn rusqlite::ToSql] =
                &[&"sch-1", &0, &100, &"sec-1", &None::<String>];
            let erase: &[&dyn rusqlite::ToSql] = &[&"stu-1", &"sch-1"];
            for (sql, values) in [
                (attendance::attendance_sql(false, true), by_student),
                (attendance::attendance_sql(true, false), by_section),
                (roster::ERASE_MARKS[0].to_owned(), erase),
                (roster::ERASE_MARKS[1].to_owned(), erase),
            ] {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let lines: Vec<String> = stmt
                    .query_map(values, |r| r.get::<_, String>(3))?
                    .collect::<Result<_, _>>()?;
                plans.push(lines.join("; "));
            }
            Ok(plans)
        })
        .await
        .expect("query plans");
    for plan in &plans {
        assert!(
            !plan.contains("SCAN m") && !plan.contains("SCAN marks"),
            "a full scan of marks: {plan}"
        );
    }
    // A student's marks: their sections (schema 8), those sections' sessions, then one seek per
    // session on (session, student), not the session's roll.
    assert!(
        plans[0].contains("SEARCH ss USING PRIMARY KEY (school_id=? AND student_id=?)"),
        "{}",
        plans[0]
    );
    assert!(plans[0].contains("sessions_section_start"), "{}", plans[0]);
    assert!(plans[0].contains("marks_pending"), "{}", plans[0]);
    assert!(
        plans[0].contains("PRIMARY KEY (session_id=? AND student_id=?)"),
        "{}",
        plans[0]
    );
    assert!(plans[1].contains("sessions_section_start"), "{}", plans[1]);
}

/// However many reads come at once, at most `MAX_READERS` connections read (each holds a page
/// cache): the others wait their turn, and every read is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_beyond_the_pool_wait_their_turn() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).expect("open"));
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reads = (0..40).map(|_| {
        let (store, now, most) = (Arc::clone(&store), Arc::clone(&now), Arc::clone(&most));
        tokio::spawn(async move {
            store
                .readers
                .run(move |conn| {
                    let reading = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(reading, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)
                })
                .await
        })
    });
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.expect("task").expect("read"), 1);
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=worker::MAX_READERS).contains(&most),
        "{most} reads at once"
    );
}

/// A school's attendance comes in its order from the indexes (schema 15): a sort of every week's
/// marks was two thirds of a year's export.
#[tokio::test]
async fn a_schools_attendance_is_listed_without_a_sort() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    let plan = store
        .writer
        .run(|conn| {
            let by_school: &[&dyn rusqlite::ToSql] =
                &[&"sch-1", &0, &100, &None::<String>, &None::<String>];
            let sql = attendance::attendance_sql(false, false);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let lines: Vec<String> = stmt
                .query_map(by_school, |r| r.get::<_, String>(3))?
                .collect::<Result<_, _>>()?;
            Ok(lines.join("; "))
        })
        .await
        .expect("query plan");
    assert!(plan.contains("MERGE (UNION ALL)"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "a sort: {plan}");
}

/// Writes a database at schema `version` (the first `version` migrations, as a build of that time
/// left it) holding `data`, for a migration test to open with this build.
fn database_at_version(path: &Path, version: usize, data: &str) {
    let mut conn = Connection::open(path).expect("create");
    let tx = conn.transaction().expect("tx");
    for sql in &schema::MIGRATIONS[..version] {
        tx.execute_batch(sql)
            .expect("the migrations up to the version");
    }
    tx.pragma_update(None, "user_version", version as i64)
        .expect("version");
    tx.execute_batch(data).expect("the version's data");
    tx.commit().expect("commit");
}

/// Version 1 databases flag the marks whose session has not arrived when they are migrated.
#[tokio::test]
async fn migration_2_flags_marks_without_their_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sqlite");
    database_at_version(
        &path,
        1,
        "INSERT INTO schools (id, name) VALUES ('sch-1', 'North');
         INSERT INTO sections (id, school_id, title, active) VALUES ('sec-1', 'sch-1', 'A', 1);
         INSERT INTO sessions (id, school_id, device_id, section_id, started_at)
             VALUES ('sess-here', 'sch-1', 'dev-1', 'sec-1', 10);
         INSERT INTO marks (session_id, student_id, school_id, device_id, status, source,
             decided_at, event_id)
             VALUES ('sess-here', 'stu-1', 'sch-1', 'dev-1', 'present', 'machine', 11, 'e1'),
                    ('sess-later', 'stu-1', 'sch-1', 'dev-1', 'absent', 'machine', 12, 'e2');",
    );
    let store = SqliteStore::open(&path).expect("migrate");
    let flags = store
        .writer
        .run(|conn| {
            let mut stmt =
                conn.prepare("SELECT session_id, session_pending FROM marks ORDER BY session_id")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .expect("flags");
    assert_eq!(
        flags,
        vec![("sess-here".to_owned(), 0), ("sess-later".to_owned(), 1)]
    );
}

/// Version 5 databases keep the machine's decision of their machine marks when migrated; a
/// person's mark from before has none (the decision it replaced was not kept).
#[tokio::test]
async fn migration_6_keeps_the_machines_own_marks_as_its_decisions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sqlite");
    database_at_version(
        &path,
        5,
        "INSERT INTO schools (id, name) VALUES ('sch-1', 'North');
         INSERT INTO sections (id, school_id, title, active) VALUES ('sec-1', 'sch-1', 'A', 1);
         INSERT INTO sessions (id, school_id, device_id, section_id, started_at)
             VALUES ('sess-1', 'sch-1', 'dev-1', 'sec-1', 10);
         INSERT INTO marks (session_id, student_id, school_id, device_id, status, source,
             decided_at, event_id)
             VALUES ('sess-1', 'stu-1', 'sch-1', 'dev-1', 'review', 'machine', 11, 'e1'),
                    ('sess-1', 'stu-2', 'sch-1', 'dev-1', 'absent', 'teacher', 12, 'e2');",
    );
    let store = SqliteStore::open(&path).expect("migrate");
    let kept = store
        .writer
        .run(|conn| {
            let mut stmt =
                conn.prepare("SELECT student_id, machine_status FROM marks ORDER BY student_id")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .expect("machine statuses");
    assert_eq!(
        kept,
        vec![
            ("stu-1".to_owned(), Some("review".to_owned())),
            ("stu-2".to_owned(), None)
        ]
    );
}

/// Version 7 databases list, once migrated, the sections their students have marks in: a student's
/// history reads only those (schema 8).
#[tokio::test]
async fn migration_8_lists_each_students_sections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sqlite");
    database_at_version(
        &path,
        7,
        "INSERT INTO schools (id, name) VALUES ('sch-1', 'North');
         INSERT INTO sections (id, school_id, title, active)
             VALUES ('sec-1', 'sch-1', 'A', 1), ('sec-2', 'sch-1', 'B', 1);
         INSERT INTO sessions (id, school_id, device_id, section_id, started_at)
             VALUES ('sess-1', 'sch-1', 'dev-1', 'sec-1', 10),
                    ('sess-2', 'sch-1', 'dev-1', 'sec-1', 20),
                    ('sess-3', 'sch-1', 'dev-2', 'sec-2', 30);
         INSERT INTO marks (session_id, student_id, school_id, device_id, status, source,
             decided_at, event_id)
             VALUES ('sess-1', 'stu-1', 'sch-1', 'dev-1', 'present', 'machine', 11, 'e1'),
                    ('sess-2', 'stu-1', 'sch-1', 'dev-1', 'absent', 'machine', 21, 'e2'),
                    ('sess-3', 'stu-1', 'sch-1', 'dev-2', 'late', 'teacher', 31, 'e3'),
                    ('sess-3', 'stu-2', 'sch-1', 'dev-2', 'present', 'machine', 31, 'e4');",
    );
    let store = SqliteStore::open(&path).expect("migrate");
    let listed = store
        .writer
        .run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT student_id, section_id FROM student_sections ORDER BY student_id, section_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .expect("student sections");
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        listed,
        vec![
            pair("stu-1", "sec-1"),
            pair("stu-1", "sec-2"),
            pair("stu-2", "sec-2")
        ]
    );
    let history = store
        .attendance(&AttendanceQuery {
            school_id: "sch-1".into(),
            student_id: Some("stu-1".into()),
            from: 0,
            to: 100,
            ..AttendanceQuery::default()
        })
        .await
        .expect("history");
    let sessions: Vec<&str> = history.iter().map(|r| r.session_id.as_str()).collect();
    assert_eq!(sessions, ["sess-1", "sess-2", "sess-3"]);
}

/// The parts a range is counted in cover it exactly, one after the other.
#[test]
fn a_range_is_cut_into_parts_that_cover_it() {
    const DAY: Millis = 86_400_000;
    for (from, to) in [(0, 30 * DAY), (5, 7 * DAY + 3), (0, DAY), (0, i64::MAX)] {
        let parts = at_once(from, to);
        assert_eq!(parts.first().map(|p| p.0), Some(from));
        assert_eq!(parts.last().map(|p| p.1), Some(to));
        assert!(
            parts
                .windows(2)
                .all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1)
        );
    }
    assert_eq!(at_once(0, i64::MAX), vec![(0, i64::MAX)]);
    // Inner bounds on midnights (UTC).
    for (start, _) in at_once(5, 30 * DAY).iter().skip(1) {
        assert_eq!(start % DAY, 0);
    }
}

/// A template's space is its own, or its model's for one stored before spaces; a space that does
/// not parse is corruption for every reader, the kept crops' too, never a guess.
#[tokio::test]
async fn a_template_whose_space_does_not_parse_is_corruption_for_every_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    store.create_school(&school()).await.expect("create school");
    let insert = |id: &'static str, space: Option<&'static str>| {
        store.writer.run(move |conn| {
            conn.execute(
                "INSERT INTO templates (id, school_id, student_id, model_id, embedding, space,
                     quality, source, created_at, crop)
                 VALUES (?1, 'sch-1', 'stu-1', 'w600k_mbf@0123456789ab', ?2, ?3, 0.9, 'box', 1, ?4)",
                rusqlite::params![id, vec![0u8; 12], space, vec![7u8; 12]],
            )?;
            Ok(())
        })
    };
    // Stored before spaces: its model's space.
    insert("t-old", None).await.expect("insert");
    let model: shared_proto::ModelId = "w600k_mbf@0123456789ab".parse().expect("model id");
    let crops = store
        .kept_crops("sch-1", CropRead::Listed)
        .await
        .expect("crops");
    assert_eq!(crops.len(), 1);
    assert_eq!(crops[0].space, EmbeddingSpace::of_model(&model));
    insert("t-bad", Some("Not A Space!")).await.expect("insert");
    let crops = store.kept_crops("sch-1", CropRead::Listed).await;
    assert!(
        matches!(&crops, Err(StoreError::Backend(why)) if why.contains("Not A Space!")),
        "{crops:?}"
    );
    let ids = ["t-bad".to_owned()];
    assert!(
        store
            .kept_crops("sch-1", CropRead::Bytes(&ids))
            .await
            .is_err()
    );
    assert!(
        store
            .templates_of("sch-1", TemplateRead::School)
            .await
            .is_err()
    );
    assert!(store.live_template_ids("sch-1").await.is_err());
}

/// A notice whose student list does not parse, or an erasure that names no student, is corruption
/// for its readers, never an empty list or a skipped line (an erasure skipped would leave the
/// student's data on every box).
#[tokio::test]
async fn a_notice_or_an_erasure_that_does_not_parse_is_corruption() {
    use crate::domain::notice::{Claim, Kind as NoticeKind, Letter};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    store.create_school(&school()).await.expect("create school");
    let letter = Letter {
        id: "n-1".into(),
        message_id: "<n-1@example.org>".into(),
        school_id: "sch-1".into(),
        kind: NoticeKind::Absence,
        key: "k-1".into(),
        recipient: "home@example.org".into(),
        guardian_id: None,
        day: "2026-12-01".into(),
        subject: "Ann".into(),
        text: "Ann was absent".into(),
        html: "<p>Ann was absent</p>".into(),
        facts: "[]".into(),
        students: vec!["stu-1".into()],
    };
    let added = store
        .enqueue_notices(&[Notice::queued(letter, 1)])
        .await
        .expect("enqueue");
    assert_eq!(added, 1);
    let query = NoticeQuery {
        school_id: "sch-1".into(),
        day: None,
        state: None,
        limit: 10,
    };
    let listed = store.notices(&query).await.expect("notices");
    assert_eq!(listed[0].letter.students, ["stu-1"]);
    store
        .writer
        .run(|conn| {
            conn.execute(
                "UPDATE notices SET students = '[\"stu-1\"' WHERE id = 'n-1'",
                [],
            )?;
            conn.execute(
                "INSERT INTO changes (school_id, seq, key, body)
                 VALUES ('sch-1', 1, 'erased:?', '{\"kind\":\"student_erased\"}')",
                [],
            )?;
            Ok(())
        })
        .await
        .expect("corrupt");
    assert!(store.notices(&query).await.is_err());
    assert!(store.notice("sch-1", "n-1").await.is_err());
    let claim = Claim {
        owner: "sender".into(),
        now: 2,
        lease_until: 60_002,
        limit: 10,
    };
    assert!(store.claim_notices(&claim).await.is_err());
    let erasures = store.erasures_since("sch-1", 0).await;
    assert!(
        matches!(&erasures, Err(StoreError::Backend(why)) if why.contains("erasure at seq 1 ")),
        "{erasures:?}"
    );
}

/// The mark upsert, the statement a push runs per mark, builds no temporary B-tree (schema 16):
/// the CHECKs' `IN` lists built two or three per mark written.
#[tokio::test]
async fn writing_a_mark_builds_no_temporary_b_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    let ops = store
        .writer
        .run(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN {}", events::SET_MARK))?;
            // Unbound parameters are NULL: the program is the same.
            let mut rows = stmt.raw_query();
            let mut ops = Vec::new();
            while let Some(row) = rows.next()? {
                ops.push(row.get::<_, String>(1)?);
            }
            Ok(ops)
        })
        .await
        .expect("program");
    assert!(ops.len() > 10, "{ops:?}");
    assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{ops:?}");
}

/// Marks take every word of their statuses and sources and no other: the CHECKs of schema 16
/// spell the words of `MarkStatus` and `MarkSource` out.
#[tokio::test]
async fn marks_take_exactly_the_words_of_their_enums() {
    use shared_proto::sync::{MarkSource, MarkStatus};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("s.sqlite")).expect("open");
    let write = |student: String,
                 status: &'static str,
                 source: &'static str,
                 machine: Option<&'static str>| {
        store.writer.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO schools (id, name) VALUES ('sch-1', 'North')",
                [],
            )?;
            conn.prepare(events::SET_MARK)?.execute(rusqlite::params![
                "sess-1",
                student,
                "sch-1",
                "dev-1",
                status,
                source,
                None::<f64>,
                1,
                None::<String>,
                "e1",
                false,
                machine
            ])?;
            Ok(())
        })
    };
    for status in MarkStatus::WORDS {
        for source in MarkSource::WORDS {
            write(format!("{status}-{source}"), status, source, Some(status))
                .await
                .unwrap_or_else(|e| panic!("{status} by {source}: {e}"));
        }
    }
    write("no-machine".into(), "present", "teacher", None)
        .await
        .expect("a person's mark keeps no machine decision");
    for (status, source, machine) in [
        ("here", "machine", None),
        ("present", "robot", None),
        ("present", "machine", Some("here")),
        ("Present", "machine", None),
    ] {
        let refused = write("bad".into(), status, source, machine)
            .await
            .expect_err(&format!("{status} by {source} ({machine:?}) was taken"));
        assert!(
            refused.to_string().contains("CHECK constraint failed"),
            "{refused}"
        );
    }
}

/// Version 15 databases keep every mark, every column of it, when schema 16 rebuilds `marks` with
/// its CHECKs as comparisons; the rebuilt table still refuses a word no enum has.
#[tokio::test]
async fn migration_16_keeps_every_mark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sqlite");
    database_at_version(
        &path,
        15,
        "INSERT INTO schools (id, name) VALUES ('sch-1', 'North');
         INSERT INTO marks (session_id, student_id, school_id, device_id, status, source,
             score, decided_at, decided_by, event_id, session_pending, machine_status)
             VALUES ('sess-1', 'stu-1', 'sch-1', 'dev-1', 'review', 'machine', 0.41, 11,
                     NULL, 'e1', 1, 'review'),
                    ('sess-1', 'stu-2', 'sch-1', 'dev-1', 'excused', 'office', NULL, 12,
                     'office-1', 'e2', 0, 'absent');",
    );
    let store = SqliteStore::open(&path).expect("migrate");
    type Row = (
        String,
        String,
        String,
        Option<f64>,
        i64,
        Option<String>,
        String,
        i64,
        Option<String>,
    );
    let (rows, refused) = store
        .writer
        .run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT student_id, status, source, score, decided_at, decided_by, event_id,
                     session_pending, machine_status
                 FROM marks ORDER BY student_id",
            )?;
            let rows: Vec<Row> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let refused = conn
                .execute(
                    "UPDATE marks SET status = 'here' WHERE student_id = 'stu-1'",
                    [],
                )
                .err()
                .map(|e| e.to_string());
            Ok((rows, refused))
        })
        .await
        .expect("marks");
    let word = |w: &str| w.to_owned();
    assert_eq!(
        rows,
        vec![
            (
                word("stu-1"),
                word("review"),
                word("machine"),
                Some(0.41),
                11,
                None,
                word("e1"),
                1,
                Some(word("review"))
            ),
            (
                word("stu-2"),
                word("excused"),
                word("office"),
                None,
                12,
                Some(word("office-1")),
                word("e2"),
                0,
                Some(word("absent"))
            ),
        ]
    );
    let refused = refused.expect("a word no enum has was taken");
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
}
