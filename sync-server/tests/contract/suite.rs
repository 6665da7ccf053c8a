//! What every `Store` backend must do, as async tests over a `Backend` (one fresh, empty location
//! that can be opened again). `contract_tests!` turns them into `#[tokio::test]`s for a backend.
//!
//! Every test starts from `fixture`: two schools, the first with two sections, four students (all
//! but `STU_NO_CONSENT` with consent granted), two teachers and a provisioned device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::tz::TimeZone;
use shared_proto::roster::ImportScope;
use shared_proto::roster::cases::{RosterState, cases, enrolment_key};
use shared_proto::sync::{
    Change, ChangeBody, Consent, Embedding, EnrolmentRole, Event, EventBody, MAX_PULL_LIMIT,
    MarkSource, MarkStatus, PushResponse, RejectCode, ScheduleSlot, TemplateData,
};
use shared_proto::{EmbeddingSpace, ModelId};
use sync_server::domain::audit::{Action, Entry as AuditEntry, Query as AuditQuery};
use sync_server::domain::correction::{Correction, Decision};
use sync_server::domain::excusal::Excusal;
use sync_server::domain::guardian::{Contact, Refusal as GuardianRefusal, Relationship};
use sync_server::store::{
    AttendanceQuery, AttendanceRow, AuthSession, BoxState, Device, Enrolment, ProvisioningCode,
    RedeemRefusal, Role, RosterBatch, RosterSummary, School, Section, Seen, Store, StoreError,
    Student, Teacher, TemplateRead, User,
};

/// One fresh, empty location of a backend (a temp dir, a unique database name). `open` again
/// opens the same data: drop the first store before reopening.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn open(&self) -> std::sync::Arc<dyn sync_server::store::Store>;
}

/// One `#[tokio::test]` per suite test for the backend made by `$new_backend` (an async fn
/// returning `impl Backend`).
#[macro_export]
macro_rules! contract_tests {
    ($new_backend:expr) => {
        $crate::contract_tests!(@each $new_backend;
            idempotent_push,
            duplicate_ids_in_one_batch_apply_once,
            marks_before_their_session,
            template_deleted_before_added_stays_deleted,
            older_mark_after_newer_loses,
            teacher_beats_machine,
            rejections_leave_the_rest_of_the_batch_applied,
            session_rules,
            consent_withdrawn_tombstones_templates,
            consent_changed_event_tombstones_templates,
            erase_student_leaves_tombstones,
            kept_crops_go_with_their_templates,
            pull_pages_in_order,
            pull_later_change_supersedes_earlier,
            pull_consistent_under_concurrent_pushes,
            restart_between_push_and_retry,
            provisioning_code_single_use,
            provisioning_code_expires,
            device_revocation,
            users_and_auth_sessions,
            password_reset_ends_the_users_sessions,
            full_roster_deactivates_missing,
            roster_cases,
            roster_refusals,
            attendance_by_section_dates_and_student,
            sections_of_teacher,
            schedule_replaces_timetable,
            school_ids_are_unique,
            office_corrections_follow_the_human_order,
            audit_log_per_school,
            boxes_report_and_acknowledge_purges,
            machine_decisions_survive_corrections,
            tally_counts_what_attendance_lists,
            trips_booked_ahead_excuse_what_the_camera_did_not_see,
            guardians_are_one_contact_per_address,
            the_notice_outbox_leases_each_notice_to_one_sender,
        );
    };
    (@each $new_backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::suite::$name(&$new_backend().await).await
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Fixture

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 24 * 60 * 60 * 1000;

const SCHOOL: &str = "school-north";
const OTHER_SCHOOL: &str = "school-south";
const SECTION_A: &str = "sec-math";
const SECTION_B: &str = "sec-art";
const OTHER_SECTION: &str = "sec-south";
const STU_1: &str = "stu-1";
const STU_2: &str = "stu-2";
const STU_3: &str = "stu-3";
/// Enrolled in `SECTION_A`, consent never given.
const STU_NO_CONSENT: &str = "stu-4";
const OTHER_STUDENT: &str = "stu-south";
/// Teaches `SECTION_A`.
const TEACHER_A: &str = "tea-1";
/// Teaches `SECTION_B`.
const TEACHER_B: &str = "tea-2";

struct Fixture {
    store: Arc<dyn Store>,
    /// A box of `SCHOOL`.
    device: Device,
}

fn section(id: &str, school_id: &str, title: &str) -> Section {
    Section {
        id: id.into(),
        school_id: school_id.into(),
        title: title.into(),
        active: true,
    }
}

fn student(id: &str, school_id: &str) -> Student {
    Student {
        id: id.into(),
        school_id: school_id.into(),
        given_name: format!("Given {id}"),
        family_name: format!("Family {id}"),
        active: true,
        consent: Consent::None,
        consent_by: None,
        consent_at: None,
    }
}

fn teacher(id: &str) -> Teacher {
    Teacher {
        id: id.into(),
        school_id: SCHOOL.into(),
        given_name: format!("Given {id}"),
        family_name: format!("Family {id}"),
        active: true,
    }
}

fn enrolment(section_id: &str, person_id: &str, role: EnrolmentRole) -> Enrolment {
    Enrolment {
        section_id: section_id.into(),
        person_id: person_id.into(),
        role,
        active: true,
    }
}

/// `SCHOOL`'s whole roster.
fn roster() -> RosterBatch {
    use EnrolmentRole::{Student as S, Teacher as T};
    RosterBatch {
        sections: vec![
            section(SECTION_A, SCHOOL, "Maths 7A"),
            section(SECTION_B, SCHOOL, "Art 7B"),
        ],
        students: [STU_1, STU_2, STU_3, STU_NO_CONSENT]
            .iter()
            .map(|id| student(id, SCHOOL))
            .collect(),
        teachers: vec![teacher(TEACHER_A), teacher(TEACHER_B)],
        enrolments: vec![
            enrolment(SECTION_A, STU_1, S),
            enrolment(SECTION_A, STU_2, S),
            enrolment(SECTION_A, STU_NO_CONSENT, S),
            enrolment(SECTION_A, TEACHER_A, T),
            enrolment(SECTION_B, STU_3, S),
            enrolment(SECTION_B, TEACHER_B, T),
        ],
    }
}

fn device_for(n: u32) -> Device {
    Device {
        id: format!("dev-{n}"),
        // Taken from the code when redeemed.
        school_id: String::new(),
        name: format!("Room {n}"),
        token_hash: format!("token-hash-{n}"),
        created_at: T0,
        revoked_at: None,
        last_seen_at: None,
        activity: Default::default(),
    }
}

fn code_for(school_id: &str, n: u32, expires_at: i64) -> ProvisioningCode {
    ProvisioningCode {
        code_hash: format!("code-hash-{n}"),
        school_id: school_id.into(),
        device_name: Some(format!("Room {n}")),
        created_by: "admin".into(),
        expires_at,
    }
}

/// A provisioned device of `school_id`.
async fn provision(store: &dyn Store, school_id: &str, n: u32) -> Device {
    store
        .create_provisioning_code(&code_for(school_id, n, T0 + DAY))
        .await
        .expect("create provisioning code");
    store
        .redeem_provisioning_code(&format!("code-hash-{n}"), &device_for(n), T0)
        .await
        .expect("redeem")
        .expect("a fresh code is accepted")
}

async fn fixture(backend: &impl Backend) -> Fixture {
    let store = backend.open().await;
    for (id, name) in [(SCHOOL, "North"), (OTHER_SCHOOL, "South")] {
        store
            .create_school(&School {
                id: id.into(),
                name: name.into(),
            })
            .await
            .expect("create school");
    }
    store
        .apply_roster(SCHOOL, &roster(), true)
        .await
        .expect("roster");
    let other = RosterBatch {
        sections: vec![section(OTHER_SECTION, OTHER_SCHOOL, "South 1")],
        students: vec![student(OTHER_STUDENT, OTHER_SCHOOL)],
        teachers: vec![],
        enrolments: vec![enrolment(
            OTHER_SECTION,
            OTHER_STUDENT,
            EnrolmentRole::Student,
        )],
    };
    store
        .apply_roster(OTHER_SCHOOL, &other, true)
        .await
        .expect("other roster");
    for id in [STU_1, STU_2, STU_3] {
        grant(&*store, id, T0).await;
    }
    store
        .set_consent(OTHER_SCHOOL, OTHER_STUDENT, Consent::Granted, "parent", T0)
        .await
        .expect("consent");
    let device = provision(&*store, SCHOOL, 1).await;
    Fixture { store, device }
}

async fn grant(store: &dyn Store, student_id: &str, at: i64) {
    store
        .set_consent(SCHOOL, student_id, Consent::Granted, "parent", at)
        .await
        .expect("grant consent");
}

// ---------------------------------------------------------------------------------------------
// Events

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn event(at: i64, body: EventBody) -> Event {
    Event {
        id: new_id(),
        at,
        body,
    }
}

fn opened(session: &str, section: &str, started_at: i64) -> Event {
    event(
        started_at,
        EventBody::SessionOpened {
            session: session.into(),
            section: section.into(),
            started_at,
        },
    )
}

fn closed(session: &str, at: i64) -> Event {
    event(
        at,
        EventBody::SessionClosed {
            session: session.into(),
        },
    )
}

fn machine_mark(session: &str, student: &str, status: MarkStatus, decided_at: i64) -> Event {
    event(
        decided_at,
        EventBody::MarkSet {
            session: session.into(),
            student: student.into(),
            status,
            source: MarkSource::Machine,
            score: Some(0.8),
            decided_at,
            by: None,
        },
    )
}

fn teacher_mark(session: &str, student: &str, status: MarkStatus, decided_at: i64) -> Event {
    event(
        decided_at,
        EventBody::MarkSet {
            session: session.into(),
            student: student.into(),
            status,
            source: MarkSource::Teacher,
            score: None,
            decided_at,
            by: Some(TEACHER_A.into()),
        },
    )
}

fn template_data(student: &str, seed: f32) -> TemplateData {
    TemplateData {
        id: new_id(),
        student: student.into(),
        embedding: Embedding {
            model: ModelId::new("fr_feature", "6e524bb134157e6f").expect("model id"),
            space: EmbeddingSpace::new("fr_feature-v1").expect("space"),
            vector: vec![seed, 0.5, -0.25, 1.0],
        },
        quality: 0.9,
        source: "box:dev-1".into(),
        created_at: T0,
    }
}

fn template_added(template: &TemplateData) -> Event {
    event(
        T0,
        EventBody::TemplateAdded {
            template: template.clone(),
        },
    )
}

fn template_deleted(template_id: &str, student: &str) -> Event {
    event(
        T0,
        EventBody::TemplateDeleted {
            template: template_id.into(),
            student: student.into(),
        },
    )
}

fn consent_changed(student: &str, consent: Consent, at: i64) -> Event {
    event(
        at,
        EventBody::ConsentChanged {
            student: student.into(),
            consent,
            by: "parent".into(),
        },
    )
}

fn ids(events: &[&Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn push(fx: &Fixture, events: &[Event]) -> PushResponse {
    push_from(&*fx.store, &fx.device, events).await
}

/// A push as the HTTP API makes it: protocol v1's events through the codec into the store, and
/// the store's outcome back as the box reads it. The suite speaks the wire so its cases read as
/// what a box sends; `sync_server::api::codec` is the one place that converts.
async fn push_from(store: &dyn Store, device: &Device, events: &[Event]) -> PushResponse {
    let events: Vec<_> = events.iter().cloned().map(Into::into).collect();
    store
        .apply_events(device, &events, T0)
        .await
        .expect("push")
        .into()
}

/// A page of the feed as a box reads it.
async fn pull_page(store: &dyn Store, school_id: &str, cursor: u64, limit: usize) -> WirePage {
    let page = store.pull(school_id, cursor, limit).await.expect("pull");
    WirePage {
        changes: page.changes.into_iter().map(Change::from).collect(),
        next_cursor: page.next_cursor,
        more: page.more,
    }
}

/// The feed key of a pulled change: protocol v1's form of a change reads as the stored one
/// (`api::codec`'s tests hold them equal), whose `key` says which entity it describes.
fn feed_key(body: &ChangeBody) -> String {
    let json = serde_json::to_value(body).expect("encode");
    let stored: sync_server::domain::feed::Change = serde_json::from_value(json).expect("decode");
    stored.key()
}

struct WirePage {
    changes: Vec<Change>,
    next_cursor: u64,
    more: bool,
}

/// A student's live templates, as the wire carries them.
async fn templates_of(store: &dyn Store, school_id: &str, student_id: &str) -> Vec<TemplateData> {
    let templates = store
        .templates_of(school_id, TemplateRead::Student(student_id.to_owned()))
        .await;
    templates
        .expect("templates")
        .into_iter()
        .map(Into::into)
        .collect()
}

/// Pushes and asserts every event was acked.
async fn push_ok(fx: &Fixture, events: &[Event]) {
    let response = push(fx, events).await;
    assert_eq!(response.acked, ids(&events.iter().collect::<Vec<_>>()));
    assert_eq!(response.rejected, vec![]);
}

/// Every mark `SCHOOL` holds.
async fn all_marks(fx: &Fixture) -> Vec<AttendanceRow> {
    attendance(fx, None, None, 0, i64::MAX).await
}

async fn attendance(
    fx: &Fixture,
    section_id: Option<&str>,
    student_id: Option<&str>,
    from: i64,
    to: i64,
) -> Vec<AttendanceRow> {
    let mut rows = fx
        .store
        .attendance(&AttendanceQuery {
            school_id: SCHOOL.into(),
            section_id: section_id.map(Into::into),
            student_id: student_id.map(Into::into),
            from,
            to,
        })
        .await
        .expect("attendance");
    rows.sort_by(|a, b| (&a.session_id, &a.student_id).cmp(&(&b.session_id, &b.student_id)));
    rows
}

/// The one mark of `student` in `session`.
async fn the_mark(fx: &Fixture, session: &str, student: &str) -> AttendanceRow {
    let rows: Vec<_> = all_marks(fx)
        .await
        .into_iter()
        .filter(|r| r.session_id == session && r.student_id == student)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().expect("one row")
}

// ---------------------------------------------------------------------------------------------
// Feed

/// The whole feed of `school_id` from `cursor`, pulled page by page; asserts `seq` strictly
/// increases and returns the changes with the last cursor.
async fn pull_all(
    store: &dyn Store,
    school_id: &str,
    cursor: u64,
) -> (Vec<(u64, ChangeBody)>, u64) {
    let mut cursor = cursor;
    let mut changes = Vec::new();
    loop {
        let page = pull_page(store, school_id, cursor, MAX_PULL_LIMIT).await;
        for change in page.changes {
            assert!(change.seq > cursor, "seq {} after {cursor}", change.seq);
            cursor = change.seq;
            changes.push((change.seq, change.body));
        }
        assert_eq!(page.next_cursor, cursor);
        if !page.more {
            return (changes, cursor);
        }
    }
}

/// The latest change per entity key.
async fn feed(store: &dyn Store, school_id: &str) -> BTreeMap<String, ChangeBody> {
    let (changes, _) = pull_all(store, school_id, 0).await;
    let mut latest = BTreeMap::new();
    for (_, body) in changes {
        let previous = latest.insert(feed_key(&body), body);
        assert!(previous.is_none(), "a key appears twice in one pull");
    }
    latest
}

fn template_key(template_id: &str) -> String {
    format!("template:{template_id}")
}

fn tombstone_of(template_id: &str, student: &str) -> ChangeBody {
    ChangeBody::TemplateDeleted {
        template: template_id.into(),
        student: student.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Push: idempotence and ordering

pub async fn idempotent_push(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let template = template_data(STU_1, 0.1);
    let batch = vec![
        opened("sess-1", SECTION_A, T0),
        machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 10),
        template_added(&template),
    ];
    let before = fx.store.counts().await.expect("counts");
    for _ in 0..3 {
        push_ok(&fx, &batch).await;
    }
    let after = fx.store.counts().await.expect("counts");
    assert_eq!(after.events_applied - before.events_applied, 3);

    let marks = all_marks(&fx).await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].event_id, batch[1].id);
    assert_eq!(marks[0].status, MarkStatus::Present);
    assert_eq!(marks[0].section_id.as_deref(), Some(SECTION_A));
    assert_eq!(marks[0].device_id, fx.device.id);

    assert_eq!(
        templates_of(&*fx.store, SCHOOL, STU_1).await,
        vec![template.clone()]
    );
    let templates_in_feed = pull_all(&*fx.store, SCHOOL, 0)
        .await
        .0
        .into_iter()
        .filter(|(_, body)| matches!(body, ChangeBody::Template { .. }))
        .count();
    assert_eq!(templates_in_feed, 1);
}

pub async fn duplicate_ids_in_one_batch_apply_once(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let mark = machine_mark("sess-1", STU_1, MarkStatus::Present, T0);
    let other = machine_mark("sess-1", STU_2, MarkStatus::Absent, T0);
    let response = push(&fx, &[mark.clone(), other.clone(), mark.clone()]).await;
    assert_eq!(response.acked, ids(&[&mark, &other]));
    assert_eq!(response.rejected, vec![]);
    assert_eq!(fx.store.counts().await.expect("counts").events_applied, 2);
    assert_eq!(all_marks(&fx).await.len(), 2);
}

pub async fn marks_before_their_session(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let mark = machine_mark("sess-late", STU_1, MarkStatus::Present, T0 + 60_000);
    push_ok(&fx, std::slice::from_ref(&mark)).await;

    let row = the_mark(&fx, "sess-late", STU_1).await;
    assert_eq!(row.section_id, None);
    assert_eq!(row.started_at, None);
    assert_eq!(row.event_id, mark.id);
    // Without its session the mark has no section, but it is found by its decision time.
    assert_eq!(
        attendance(&fx, Some(SECTION_A), None, 0, i64::MAX).await,
        vec![]
    );
    assert_eq!(
        attendance(&fx, None, Some(STU_1), T0 + 60_000, T0 + 60_001)
            .await
            .len(),
        1
    );

    // Closing a session that never opened waits for the opening.
    let close = closed("sess-late", T0 + 120_000);
    let response = push(&fx, std::slice::from_ref(&close)).await;
    assert_eq!(response.acked, Vec::<String>::new());
    assert_eq!(response.rejected.len(), 1);
    assert_eq!(response.rejected[0].code, RejectCode::UnknownSession);

    push_ok(&fx, &[opened("sess-late", SECTION_A, T0), close]).await;
    let row = the_mark(&fx, "sess-late", STU_1).await;
    assert_eq!(row.section_id.as_deref(), Some(SECTION_A));
    assert_eq!(row.started_at, Some(T0));
    assert_eq!(
        attendance(&fx, Some(SECTION_A), None, T0, T0 + 1)
            .await
            .len(),
        1
    );
    // The student's history finds it under its section now, by the session's start.
    let history = attendance(&fx, None, Some(STU_1), T0, T0 + 1).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].section_id.as_deref(), Some(SECTION_A));
}

pub async fn template_deleted_before_added_stays_deleted(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let template = template_data(STU_1, 0.2);
    push_ok(&fx, &[template_deleted(&template.id, STU_1)]).await;
    push_ok(&fx, &[template_added(&template)]).await;

    assert_eq!(templates_of(&*fx.store, SCHOOL, STU_1).await, vec![]);
    let feed = feed(&*fx.store, SCHOOL).await;
    assert_eq!(
        feed.get(&template_key(&template.id)),
        Some(&tombstone_of(&template.id, STU_1))
    );
}

pub async fn older_mark_after_newer_loses(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let newer = machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 20);
    let older = machine_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 10);
    push_ok(&fx, std::slice::from_ref(&newer)).await;
    push_ok(&fx, std::slice::from_ref(&older)).await;
    let row = the_mark(&fx, "sess-1", STU_1).await;
    assert_eq!(
        (row.status, row.event_id.as_str()),
        (MarkStatus::Present, newer.id.as_str())
    );

    // The same between two teacher decisions, arriving in one batch.
    let newer = teacher_mark("sess-2", STU_2, MarkStatus::Excused, T0 + 20);
    let older = teacher_mark("sess-2", STU_2, MarkStatus::Late, T0 + 10);
    push_ok(&fx, &[newer.clone(), older]).await;
    let row = the_mark(&fx, "sess-2", STU_2).await;
    assert_eq!(
        (row.status, row.event_id.as_str()),
        (MarkStatus::Excused, newer.id.as_str())
    );

    // A later decision replaces an earlier one.
    let latest = machine_mark("sess-1", STU_1, MarkStatus::Late, T0 + 30);
    push_ok(&fx, std::slice::from_ref(&latest)).await;
    let row = the_mark(&fx, "sess-1", STU_1).await;
    assert_eq!(
        (row.status, row.event_id.as_str()),
        (MarkStatus::Late, latest.id.as_str())
    );
}

pub async fn teacher_beats_machine(backend: &impl Backend) {
    let fx = fixture(backend).await;
    // Teacher first, then a later machine mark: the teacher's stays.
    let by_teacher = teacher_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 10);
    let by_machine = machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 50);
    push_ok(&fx, std::slice::from_ref(&by_teacher)).await;
    push_ok(&fx, std::slice::from_ref(&by_machine)).await;
    let row = the_mark(&fx, "sess-1", STU_1).await;
    assert_eq!(row.status, MarkStatus::Absent);
    assert_eq!(row.source, MarkSource::Teacher);
    assert_eq!(row.decided_by.as_deref(), Some(TEACHER_A));
    assert_eq!(row.event_id, by_teacher.id);

    // Machine first, then a teacher decision made earlier than it: the teacher's wins.
    let by_machine = machine_mark("sess-1", STU_2, MarkStatus::Present, T0 + 50);
    let by_teacher = teacher_mark("sess-1", STU_2, MarkStatus::Late, T0 + 5);
    push_ok(&fx, std::slice::from_ref(&by_machine)).await;
    push_ok(&fx, std::slice::from_ref(&by_teacher)).await;
    let row = the_mark(&fx, "sess-1", STU_2).await;
    assert_eq!(row.status, MarkStatus::Late);
    assert_eq!(row.source, MarkSource::Teacher);
    assert_eq!(row.score, None);
    assert_eq!(row.decided_at, T0 + 5);
    assert_eq!(row.event_id, by_teacher.id);

    // Same source: the later decision wins in either order of arrival, and at the same
    // decision time the larger event id does.
    let newer = machine_mark("sess-1", STU_3, MarkStatus::Present, T0 + 60);
    let older = machine_mark("sess-1", STU_3, MarkStatus::Absent, T0 + 20);
    push_ok(&fx, std::slice::from_ref(&newer)).await;
    push_ok(&fx, std::slice::from_ref(&older)).await;
    assert_eq!(the_mark(&fx, "sess-1", STU_3).await.event_id, newer.id);
    let later = machine_mark("sess-1", STU_3, MarkStatus::Absent, T0 + 70);
    push_ok(&fx, std::slice::from_ref(&later)).await;
    assert_eq!(the_mark(&fx, "sess-1", STU_3).await.event_id, later.id);
    let mut tie_low = machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 80);
    let mut tie_high = machine_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 80);
    if tie_low.id > tie_high.id {
        std::mem::swap(&mut tie_low.id, &mut tie_high.id);
    }
    let (tie_low, tie_high) = (teacher_twin(&tie_low), teacher_twin(&tie_high));
    push_ok(&fx, std::slice::from_ref(&tie_high)).await;
    push_ok(&fx, std::slice::from_ref(&tie_low)).await;
    assert_eq!(the_mark(&fx, "sess-1", STU_1).await.event_id, tie_high.id);
}

/// The same decision made by a teacher, so that it competes with the teacher's mark held for
/// that student (machine marks would lose to it whatever their time).
fn teacher_twin(machine: &Event) -> Event {
    let mut event = machine.clone();
    if let EventBody::MarkSet {
        source, by, score, ..
    } = &mut event.body
    {
        *source = MarkSource::Teacher;
        *by = Some(TEACHER_A.into());
        *score = None;
    }
    event
}

pub async fn rejections_leave_the_rest_of_the_batch_applied(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let good_mark = machine_mark("sess-1", STU_1, MarkStatus::Present, T0);
    let unknown_student = machine_mark("sess-1", "stu-nobody", MarkStatus::Present, T0);
    let other_school_section = opened("sess-2", OTHER_SECTION, T0);
    let other_school_student = machine_mark("sess-1", OTHER_STUDENT, MarkStatus::Present, T0);
    let no_consent = template_added(&template_data(STU_NO_CONSENT, 0.3));
    let mut bad_id = machine_mark("sess-1", STU_2, MarkStatus::Present, T0);
    bad_id.id = "not-a-uuid".into();
    let bad_score = event(
        T0,
        EventBody::MarkSet {
            session: "sess-1".into(),
            student: STU_2.into(),
            status: MarkStatus::Present,
            source: MarkSource::Machine,
            score: Some(1.5),
            decided_at: T0,
            by: None,
        },
    );
    let unknown_section = opened("sess-3", "sec-nowhere", T0);
    let good_template = template_data(STU_2, 0.4);
    let good_template_event = template_added(&good_template);

    let batch = vec![
        good_mark.clone(),
        unknown_student.clone(),
        other_school_section.clone(),
        other_school_student.clone(),
        no_consent.clone(),
        bad_id.clone(),
        bad_score.clone(),
        unknown_section.clone(),
        good_template_event.clone(),
    ];
    let response = push(&fx, &batch).await;
    assert_eq!(response.acked, ids(&[&good_mark, &good_template_event]));
    let codes: Vec<(String, RejectCode)> = response
        .rejected
        .iter()
        .map(|r| (r.id.clone(), r.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (unknown_student.id.clone(), RejectCode::UnknownStudent),
            (other_school_section.id.clone(), RejectCode::WrongSchool),
            (other_school_student.id.clone(), RejectCode::WrongSchool),
            (no_consent.id.clone(), RejectCode::NoConsent),
            (bad_id.id.clone(), RejectCode::InvalidId),
            (bad_score.id.clone(), RejectCode::InvalidEvent),
            (unknown_section.id.clone(), RejectCode::UnknownSection),
        ]
    );
    assert!(response.rejected.iter().all(|r| !r.reason.is_empty()));

    assert_eq!(fx.store.counts().await.expect("counts").events_applied, 2);
    let marks = all_marks(&fx).await;
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].event_id, good_mark.id);
    assert_eq!(
        templates_of(&*fx.store, SCHOOL, STU_2).await,
        vec![good_template]
    );
    assert_eq!(
        templates_of(&*fx.store, SCHOOL, STU_NO_CONSENT).await,
        vec![]
    );

    // A rejected event is not recorded: once consent arrives, the same event is applied.
    grant(&*fx.store, STU_NO_CONSENT, T0 + 1).await;
    push_ok(&fx, std::slice::from_ref(&no_consent)).await;
    assert_eq!(
        templates_of(&*fx.store, SCHOOL, STU_NO_CONSENT).await.len(),
        1
    );
}

pub async fn session_rules(backend: &impl Backend) {
    let fx = fixture(backend).await;
    push_ok(&fx, &[opened("sess-1", SECTION_A, T0)]).await;
    // A repeat (another event of the same opening) is fine; another section is not.
    push_ok(&fx, &[opened("sess-1", SECTION_A, T0)]).await;
    let moved = opened("sess-1", SECTION_B, T0);
    let response = push(&fx, std::slice::from_ref(&moved)).await;
    assert_eq!(response.rejected.len(), 1);
    assert_eq!(response.rejected[0].code, RejectCode::InvalidEvent);

    // Another school's box cannot close or mark this school's session.
    let other_device = provision(&*fx.store, OTHER_SCHOOL, 2).await;
    assert_eq!(other_device.school_id, OTHER_SCHOOL);
    let close = closed("sess-1", T0 + 1);
    let mark = machine_mark("sess-1", OTHER_STUDENT, MarkStatus::Present, T0 + 1);
    let response = push_from(&*fx.store, &other_device, &[close.clone(), mark.clone()]).await;
    let codes: Vec<_> = response
        .rejected
        .iter()
        .map(|r| (r.id.clone(), r.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (close.id, RejectCode::WrongSchool),
            (mark.id, RejectCode::WrongSchool)
        ]
    );
    push_ok(&fx, &[closed("sess-1", T0 + 2)]).await;
}

// ---------------------------------------------------------------------------------------------
// Consent and erasure

/// Two templates of `STU_1`, pushed by the fixture's device.
async fn two_templates(fx: &Fixture) -> Vec<TemplateData> {
    let templates = vec![template_data(STU_1, 0.5), template_data(STU_1, 0.6)];
    push_ok(
        fx,
        &templates.iter().map(template_added).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(templates_of(&*fx.store, SCHOOL, STU_1).await.len(), 2);
    // The whole school's: the same two, and no other school's.
    let school: Vec<TemplateData> = fx
        .store
        .templates_of(SCHOOL, TemplateRead::School)
        .await
        .expect("templates")
        .into_iter()
        .map(Into::into)
        .collect();
    assert_eq!(school, templates_of(&*fx.store, SCHOOL, STU_1).await);
    // Their ids and spaces alone, in no given order.
    let mut live = fx.store.live_template_ids(SCHOOL).await.expect("ids");
    live.sort();
    let mut want: Vec<_> = templates
        .iter()
        .map(|t| (t.id.clone(), t.embedding.space.clone()))
        .collect();
    want.sort();
    assert_eq!(live, want);
    // By id: a live one, an unknown one left out.
    let by_id = TemplateRead::Ids(vec![templates[1].id.clone(), "no-such-template".into()]);
    let read = fx.store.templates_of(SCHOOL, by_id).await.expect("by id");
    assert_eq!(
        read.into_iter()
            .map(Into::into)
            .collect::<Vec<TemplateData>>(),
        [templates[1].clone()]
    );
    templates
}

async fn assert_tombstoned(fx: &Fixture, templates: &[TemplateData]) {
    assert_eq!(templates_of(&*fx.store, SCHOOL, STU_1).await, vec![]);
    let live = fx.store.live_template_ids(SCHOOL).await.expect("ids");
    assert!(
        live.iter()
            .all(|(id, _)| templates.iter().all(|t| &t.id != id))
    );
    let ids = templates.iter().map(|t| t.id.clone()).collect();
    let read = fx.store.templates_of(SCHOOL, TemplateRead::Ids(ids)).await;
    assert!(read.expect("by id").is_empty());
    let feed = feed(&*fx.store, SCHOOL).await;
    for template in templates {
        assert_eq!(
            feed.get(&template_key(&template.id)),
            Some(&tombstone_of(&template.id, STU_1))
        );
    }
}

fn consent_in_feed(feed: &BTreeMap<String, ChangeBody>, student_id: &str) -> Option<Consent> {
    match feed.get(&format!("student:{student_id}")) {
        Some(ChangeBody::Student { consent, .. }) => Some(*consent),
        _ => None,
    }
}

pub async fn consent_withdrawn_tombstones_templates(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let templates = two_templates(&fx).await;
    fx.store
        .set_consent(SCHOOL, STU_1, Consent::Withdrawn, "parent", T0 + 100)
        .await
        .expect("withdraw");
    assert_tombstoned(&fx, &templates).await;
    let feed_now = feed(&*fx.store, SCHOOL).await;
    assert_eq!(consent_in_feed(&feed_now, STU_1), Some(Consent::Withdrawn));

    // A decision older than the withdrawal changes nothing.
    grant(&*fx.store, STU_1, T0 + 50).await;
    let held = fx
        .store
        .student(SCHOOL, STU_1)
        .await
        .expect("student")
        .expect("held");
    assert_eq!(held.consent, Consent::Withdrawn);
    assert_eq!(held.consent_at, Some(T0 + 100));

    // Without consent no new template is taken.
    let late = template_added(&template_data(STU_1, 0.7));
    let response = push(&fx, std::slice::from_ref(&late)).await;
    assert_eq!(response.rejected.len(), 1);
    assert_eq!(response.rejected[0].code, RejectCode::NoConsent);

    assert!(matches!(
        fx.store
            .set_consent(SCHOOL, "stu-nobody", Consent::Granted, "parent", T0)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        fx.store
            .set_consent(SCHOOL, OTHER_STUDENT, Consent::Withdrawn, "parent", T0 + 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn consent_changed_event_tombstones_templates(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let templates = two_templates(&fx).await;
    push_ok(&fx, &[consent_changed(STU_1, Consent::Withdrawn, T0 + 100)]).await;
    assert_tombstoned(&fx, &templates).await;
    let held = fx
        .store
        .student(SCHOOL, STU_1)
        .await
        .expect("student")
        .expect("held");
    assert_eq!(held.consent, Consent::Withdrawn);
    assert_eq!(held.consent_by.as_deref(), Some("parent"));
    assert_eq!(held.consent_at, Some(T0 + 100));

    // Granted again later: the student's new templates are taken, the old ones stay deleted.
    push_ok(&fx, &[consent_changed(STU_1, Consent::Granted, T0 + 200)]).await;
    let again = template_data(STU_1, 0.9);
    push_ok(
        &fx,
        &[template_added(&again), template_added(&templates[0])],
    )
    .await;
    assert_eq!(templates_of(&*fx.store, SCHOOL, STU_1).await, vec![again]);
}

pub async fn erase_student_leaves_tombstones(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let templates = two_templates(&fx).await;
    push_ok(
        &fx,
        &[
            opened("sess-1", SECTION_A, T0),
            machine_mark("sess-1", STU_1, MarkStatus::Present, T0),
            machine_mark("sess-1", STU_2, MarkStatus::Present, T0),
        ],
    )
    .await;
    fx.store.erase_student(SCHOOL, STU_1).await.expect("erase");

    assert_tombstoned(&fx, &templates).await;
    let feed = feed(&*fx.store, SCHOOL).await;
    assert_eq!(
        feed.get(&format!("student:{STU_1}")),
        Some(&ChangeBody::StudentErased {
            student: STU_1.into()
        })
    );
    assert_eq!(
        fx.store.student(SCHOOL, STU_1).await.expect("student"),
        None
    );
    assert!(
        fx.store
            .students(SCHOOL)
            .await
            .expect("students")
            .iter()
            .all(|s| s.id != STU_1)
    );
    let marks = all_marks(&fx).await;
    assert_eq!(
        marks
            .iter()
            .map(|m| m.student_id.as_str())
            .collect::<Vec<_>>(),
        vec![STU_2]
    );
    // A box that still sends the erased student's events is told the student is gone.
    let late = machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 1);
    let response = push(&fx, std::slice::from_ref(&late)).await;
    assert_eq!(response.rejected.len(), 1);
    assert_eq!(response.rejected[0].code, RejectCode::UnknownStudent);

    assert!(matches!(
        fx.store.erase_student(SCHOOL, OTHER_STUDENT).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A face crop kept with a live template is read back, never kept with a tombstone, and goes
/// when its template is deleted, its student erased, or the school stops keeping crops.
pub async fn kept_crops_go_with_their_templates(backend: &impl Backend) {
    use sync_server::store::CropRead::{Bytes, Listed};
    use sync_server::store::KeptCrop;
    let fx = fixture(backend).await;
    let templates = two_templates(&fx).await;
    let crop = |seed: u8| vec![seed; 112 * 112 * 3];
    for (i, t) in templates.iter().enumerate() {
        assert!(
            fx.store
                .keep_crop(SCHOOL, &t.id, &crop(i as u8 + 1))
                .await
                .expect("keep")
        );
    }
    let other = template_data(STU_2, 0.1);
    push_ok(&fx, std::slice::from_ref(&template_added(&other))).await;
    assert!(
        fx.store
            .keep_crop(SCHOOL, &other.id, &crop(9))
            .await
            .expect("keep")
    );
    // Another school's template, or none at all: nothing kept.
    assert!(
        !fx.store
            .keep_crop(OTHER_SCHOOL, &other.id, &crop(9))
            .await
            .expect("keep")
    );
    assert!(
        !fx.store
            .keep_crop(SCHOOL, &new_id(), &crop(9))
            .await
            .expect("keep")
    );

    // Listed: every crop, without bytes; with bytes: those named (an unknown id left out).
    let listed = fx.store.kept_crops(SCHOOL, Listed).await.expect("crops");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|k| k.crop.is_empty()));
    let mut ids: Vec<String> = listed.iter().map(|k| k.template.clone()).collect();
    ids.push(new_id());
    let kept = fx
        .store
        .kept_crops(SCHOOL, Bytes(&ids))
        .await
        .expect("crops");
    assert_eq!(kept.len(), 3);
    let mut held: Vec<(String, String, u8, usize)> = kept
        .iter()
        .map(|k| {
            (
                k.template.clone(),
                k.student.clone(),
                k.crop[0],
                k.crop.len(),
            )
        })
        .collect();
    held.sort();
    let mut expected = vec![
        (templates[0].id.clone(), STU_1.to_owned(), 1, 112 * 112 * 3),
        (templates[1].id.clone(), STU_1.to_owned(), 2, 112 * 112 * 3),
        (other.id.clone(), STU_2.to_owned(), 9, 112 * 112 * 3),
    ];
    expected.sort();
    assert_eq!(held, expected);
    assert!(
        kept.iter()
            .all(|k| k.space.as_str() == "fr_feature-v1" && k.quality == 0.9)
    );
    // Listed without bytes: the same crops, in the same order.
    let same = |a: &KeptCrop, b: &KeptCrop| {
        (&a.template, &a.student, a.quality) == (&b.template, &b.student, b.quality)
    };
    assert!(listed.iter().zip(&kept).all(|(a, b)| same(a, b)));
    // Another school's crops, by list or by id: none.
    assert_eq!(
        fx.store
            .kept_crops(OTHER_SCHOOL, Bytes(&ids))
            .await
            .expect("crops"),
        vec![]
    );
    assert_eq!(
        fx.store
            .kept_crops(OTHER_SCHOOL, Listed)
            .await
            .expect("crops"),
        vec![]
    );
    // The templates of a student still hold no crop bytes in what the look-alike check reads.
    assert_eq!(templates_of(&*fx.store, SCHOOL, STU_1).await, templates);

    // A template deleted takes its crop; a tombstone keeps none.
    push_ok(&fx, &[template_deleted(&templates[0].id, STU_1)]).await;
    assert!(
        !fx.store
            .keep_crop(SCHOOL, &templates[0].id, &crop(1))
            .await
            .expect("keep")
    );
    let kept = async || -> BTreeSet<String> {
        let crops = fx.store.kept_crops(SCHOOL, Listed).await.expect("crops");
        crops.into_iter().map(|k| k.template).collect()
    };
    assert_eq!(
        kept().await,
        BTreeSet::from([templates[1].id.clone(), other.id.clone()])
    );
    // Erasure takes the student's.
    fx.store.erase_student(SCHOOL, STU_1).await.expect("erase");
    assert_eq!(kept().await, BTreeSet::from([other.id.clone()]));
    // The setting switched off takes the rest.
    assert_eq!(fx.store.drop_crops(SCHOOL).await.expect("drop"), 1);
    assert_eq!(
        fx.store.kept_crops(SCHOOL, Listed).await.expect("crops"),
        vec![]
    );
    assert_eq!(fx.store.drop_crops(SCHOOL).await.expect("drop"), 0);
}

// ---------------------------------------------------------------------------------------------
// Pull

pub async fn pull_pages_in_order(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let (everything, last) = pull_all(&*fx.store, SCHOOL, 0).await;
    // 2 sections, 4 students, 2 teachers, 6 enrolments: one change each.
    assert_eq!(everything.len(), 14);

    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let page = pull_page(&*fx.store, SCHOOL, cursor, 3).await;
        assert!(page.changes.len() <= 3);
        for change in &page.changes {
            assert!(change.seq > cursor);
            cursor = change.seq;
            paged.push((change.seq, change.body.clone()));
        }
        assert_eq!(page.next_cursor, cursor);
        if !page.more {
            break;
        }
        assert_eq!(page.changes.len(), 3, "a page before the last is full");
    }
    assert_eq!(paged, everything);
    assert_eq!(cursor, last);

    // Caught up: an empty page that keeps the cursor.
    let page = pull_page(&*fx.store, SCHOOL, last, 3).await;
    assert_eq!(
        (page.changes.len(), page.next_cursor, page.more),
        (0, last, false)
    );

    // Only this school's changes.
    let (south, _) = pull_all(&*fx.store, OTHER_SCHOOL, 0).await;
    assert_eq!(south.len(), 3);
    assert!(
        south
            .iter()
            .all(|(_, body)| feed_key(body) != format!("student:{STU_1}"))
    );
}

pub async fn pull_later_change_supersedes_earlier(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let first = vec![slot(1, "08:00")];
    let second = vec![slot(2, "09:00"), slot(4, "10:00")];
    fx.store
        .set_schedule(SCHOOL, SECTION_A, &first)
        .await
        .expect("schedule");
    let (_, cursor) = pull_all(&*fx.store, SCHOOL, 0).await;
    fx.store
        .set_schedule(SCHOOL, SECTION_A, &second)
        .await
        .expect("schedule");

    // From the start: the schedule once, in its latest state.
    let feed = feed(&*fx.store, SCHOOL).await;
    assert_eq!(
        feed.get(&format!("schedule:{SECTION_A}")),
        Some(&ChangeBody::Schedule {
            section: SECTION_A.into(),
            slots: second.clone()
        })
    );
    // From where a box stopped: only the new state, after its cursor.
    let (after, _) = pull_all(&*fx.store, SCHOOL, cursor).await;
    assert_eq!(after.len(), 1);
    assert!(after[0].0 > cursor);
    assert_eq!(
        after[0].1,
        ChangeBody::Schedule {
            section: SECTION_A.into(),
            slots: second
        }
    );
}

pub async fn pull_consistent_under_concurrent_pushes(backend: &impl Backend) {
    let fx = Arc::new(fixture(backend).await);
    const N_BATCHES: usize = 40;
    const PER_BATCH: usize = 10;
    let pushes_done = Arc::new(AtomicBool::new(false));

    let pusher = {
        let fx = Arc::clone(&fx);
        let pushes_done = Arc::clone(&pushes_done);
        tokio::spawn(async move {
            let mut written = BTreeSet::new();
            for batch_idx in 0..N_BATCHES {
                let student = [STU_1, STU_2, STU_3][batch_idx % 3];
                let templates: Vec<TemplateData> = (0..PER_BATCH)
                    .map(|i| template_data(student, i as f32 / 10.0))
                    .collect();
                written.extend(templates.iter().map(|t| t.id.clone()));
                push_ok(
                    &fx,
                    &templates.iter().map(template_added).collect::<Vec<_>>(),
                )
                .await;
                tokio::task::yield_now().await;
            }
            pushes_done.store(true, Ordering::SeqCst);
            written
        })
    };

    let mut cursor = 0;
    let mut seen_templates: HashMap<String, usize> = HashMap::new();
    let mut n_pages = 0;
    loop {
        // Read the flag before the pull: a pull that starts after the last push must see it.
        let done_before_pull = pushes_done.load(Ordering::SeqCst);
        let page = pull_page(&*fx.store, SCHOOL, cursor, 7).await;
        n_pages += 1;
        assert!(page.changes.len() <= 7);
        for change in &page.changes {
            assert!(change.seq > cursor, "seq {} not after {cursor}", change.seq);
            cursor = change.seq;
            if let ChangeBody::Template { template } = &change.body {
                *seen_templates.entry(template.id.clone()).or_default() += 1;
            }
        }
        assert_eq!(page.next_cursor, cursor);
        if done_before_pull && !page.more {
            break;
        }
        if !page.more {
            tokio::task::yield_now().await;
        }
    }
    let written = pusher.await.expect("pusher");
    assert_eq!(written.len(), N_BATCHES * PER_BATCH);
    let seen: BTreeSet<String> = seen_templates.keys().cloned().collect();
    assert_eq!(seen, written);
    let seen_twice: Vec<_> = seen_templates.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(seen_twice, Vec::<(&String, &usize)>::new());
    assert!(n_pages > N_BATCHES * PER_BATCH / 7);
}

// ---------------------------------------------------------------------------------------------
// Restart

pub async fn restart_between_push_and_retry(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let template = template_data(STU_1, 0.1);
    let batch = vec![
        opened("sess-1", SECTION_A, T0),
        machine_mark("sess-1", STU_1, MarkStatus::Present, T0),
        machine_mark("sess-1", STU_2, MarkStatus::Absent, T0),
        template_added(&template),
        closed("sess-1", T0 + 1),
    ];
    push_ok(&fx, &batch).await;
    let device = fx.device.clone();
    drop(fx);

    let fx = Fixture {
        store: backend.open().await,
        device,
    };
    // The box never got the answer and sends the same batch again.
    push_ok(&fx, &batch).await;
    assert_eq!(
        fx.store.counts().await.expect("counts").events_applied,
        batch.len() as u64
    );
    let marks = all_marks(&fx).await;
    assert_eq!(
        marks
            .iter()
            .map(|m| (m.student_id.as_str(), m.status, m.event_id.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (STU_1, MarkStatus::Present, batch[1].id.as_str()),
            (STU_2, MarkStatus::Absent, batch[2].id.as_str()),
        ]
    );
    assert_eq!(
        templates_of(&*fx.store, SCHOOL, STU_1).await,
        vec![template]
    );
    assert_eq!(
        fx.store
            .device_by_token(&fx.device.token_hash)
            .await
            .expect("device"),
        Some(fx.device.clone())
    );
}

// ---------------------------------------------------------------------------------------------
// Devices and accounts

pub async fn provisioning_code_single_use(backend: &impl Backend) {
    let fx = fixture(backend).await;
    fx.store
        .create_provisioning_code(&code_for(SCHOOL, 7, T0 + DAY))
        .await
        .expect("code");
    assert!(matches!(
        fx.store
            .create_provisioning_code(&code_for(SCHOOL, 7, T0 + DAY))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let racers: Vec<_> = [8, 9]
        .into_iter()
        .map(|n| {
            let store = Arc::clone(&fx.store);
            tokio::spawn(async move {
                let mut device = device_for(n);
                // Whatever school the caller guesses, the code's school is the device's.
                device.school_id = OTHER_SCHOOL.into();
                store
                    .redeem_provisioning_code("code-hash-7", &device, T0)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.expect("task").expect("redeem"));
    }
    let winners: Vec<&Device> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(winners[0].school_id, SCHOOL);
    assert!(outcomes.contains(&Err(RedeemRefusal::AlreadyUsed)));

    let devices = fx.store.devices(SCHOOL).await.expect("devices");
    let mut device_ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    device_ids.sort();
    let mut expected = vec![fx.device.id.as_str(), winners[0].id.as_str()];
    expected.sort();
    assert_eq!(device_ids, expected);
    assert_eq!(
        fx.store.devices(OTHER_SCHOOL).await.expect("devices"),
        vec![]
    );

    // A box that sends no name is named by its code; a box's own name wins over the code's.
    fx.store
        .create_provisioning_code(&code_for(SCHOOL, 10, T0 + DAY))
        .await
        .expect("code");
    let unnamed = Device {
        name: String::new(),
        ..device_for(10)
    };
    let device = fx
        .store
        .redeem_provisioning_code("code-hash-10", &unnamed, T0)
        .await
        .expect("redeem")
        .expect("a fresh code");
    assert_eq!(device.name, "Room 10");
    let listed = fx.store.devices(SCHOOL).await.expect("devices");
    assert!(
        listed
            .iter()
            .any(|d| d.id == "dev-10" && d.name == "Room 10")
    );

    assert_eq!(
        fx.store
            .redeem_provisioning_code("code-hash-unknown", &device_for(10), T0)
            .await
            .expect("redeem"),
        Err(RedeemRefusal::Unknown)
    );
}

pub async fn provisioning_code_expires(backend: &impl Backend) {
    let fx = fixture(backend).await;
    fx.store
        .create_provisioning_code(&code_for(SCHOOL, 7, T0 + 1000))
        .await
        .expect("code");
    assert_eq!(
        fx.store
            .redeem_provisioning_code("code-hash-7", &device_for(7), T0 + 1001)
            .await
            .expect("redeem"),
        Err(RedeemRefusal::Expired)
    );
    assert_eq!(fx.store.devices(SCHOOL).await.expect("devices").len(), 1);
    assert_eq!(
        fx.store
            .device_by_token("token-hash-7")
            .await
            .expect("device"),
        None
    );

    fx.store
        .create_provisioning_code(&code_for(SCHOOL, 8, T0 + 1000))
        .await
        .expect("code");
    let device = fx
        .store
        .redeem_provisioning_code("code-hash-8", &device_for(8), T0 + 999)
        .await
        .expect("redeem")
        .expect("an unexpired code is accepted");
    assert_eq!(device.school_id, SCHOOL);
}

pub async fn device_revocation(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let token = fx.device.token_hash.clone();
    let held = fx.store.device_by_token(&token).await.expect("device");
    assert_eq!(held, Some(fx.device.clone()));
    assert_eq!(held.and_then(|d| d.revoked_at), None);

    fx.store
        .device_seen(&fx.device.id, &Seen::Push(None, None), T0 + 5)
        .await
        .expect("seen");
    assert!(matches!(
        fx.store
            .revoke_device(OTHER_SCHOOL, &fx.device.id, T0 + 10)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        fx.store.revoke_device(SCHOOL, "dev-nowhere", T0 + 10).await,
        Err(StoreError::NotFound(_))
    ));
    fx.store
        .revoke_device(SCHOOL, &fx.device.id, T0 + 10)
        .await
        .expect("revoke");
    let held = fx
        .store
        .device_by_token(&token)
        .await
        .expect("device")
        .expect("a revoked device is still found");
    assert_eq!(held.revoked_at, Some(T0 + 10));
    assert_eq!(held.last_seen_at, Some(T0 + 5));
    assert_eq!(fx.store.devices(SCHOOL).await.expect("devices"), vec![held]);
    assert_eq!(
        fx.store
            .device_by_token("token-hash-unknown")
            .await
            .expect("device"),
        None
    );
}

pub async fn users_and_auth_sessions(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let admin = User {
        id: "user-admin".into(),
        username: "admin".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Admin,
        school_id: None,
        teacher_id: None,
    };
    let teacher_user = User {
        id: "user-teacher".into(),
        username: "t.one".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$b3RoZXI".into(),
        role: Role::Teacher,
        school_id: Some(SCHOOL.into()),
        teacher_id: Some(TEACHER_A.into()),
    };
    assert_eq!(fx.store.count_admins().await.expect("count"), 0);
    fx.store.create_user(&admin).await.expect("admin");
    fx.store.create_user(&teacher_user).await.expect("teacher");
    assert_eq!(fx.store.count_admins().await.expect("count"), 1);
    let same_name = User {
        id: "user-other".into(),
        ..admin.clone()
    };
    assert!(matches!(
        fx.store.create_user(&same_name).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        fx.store.user_by_name("t.one").await.expect("user"),
        Some(teacher_user.clone())
    );
    assert_eq!(fx.store.user_by_name("nobody").await.expect("user"), None);

    fx.store
        .create_auth_session(&AuthSession {
            token_hash: "session-hash".into(),
            user_id: teacher_user.id.clone(),
            expires_at: T0 + 1000,
        })
        .await
        .expect("session");
    assert_eq!(
        fx.store
            .user_by_session("session-hash", T0)
            .await
            .expect("user"),
        Some(teacher_user.clone())
    );
    assert_eq!(
        fx.store
            .user_by_session("session-hash", T0 + 2000)
            .await
            .expect("user"),
        None,
        "an expired session gives no user"
    );
    assert_eq!(
        fx.store
            .user_by_session("other-hash", T0)
            .await
            .expect("user"),
        None
    );
    fx.store
        .delete_auth_session("session-hash")
        .await
        .expect("logout");
    assert_eq!(
        fx.store
            .user_by_session("session-hash", T0)
            .await
            .expect("user"),
        None
    );
}

pub async fn password_reset_ends_the_users_sessions(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let user = |id: &str, name: &str, school: &str| User {
        id: id.into(),
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$b2xk".into(),
        role: Role::Teacher,
        school_id: Some(school.into()),
        teacher_id: Some(TEACHER_A.into()),
    };
    let (zed, amy, far) = (
        user("u-zed", "zed", SCHOOL),
        user("u-amy", "amy", SCHOOL),
        user("u-far", "far", OTHER_SCHOOL),
    );
    for (account, token) in [
        (&zed, "zed-1"),
        (&zed, "zed-2"),
        (&amy, "amy-1"),
        (&far, "far-1"),
    ] {
        if fx
            .store
            .user_by_name(&account.username)
            .await
            .expect("user")
            .is_none()
        {
            fx.store.create_user(account).await.expect("user");
        }
        fx.store
            .create_auth_session(&AuthSession {
                token_hash: token.into(),
                user_id: account.id.clone(),
                expires_at: T0 + DAY,
            })
            .await
            .expect("session");
    }
    let names: Vec<String> = fx
        .store
        .users(SCHOOL)
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["amy", "zed"], "the school's accounts, by name");

    fx.store
        .set_password(SCHOOL, "u-zed", "$argon2id$new")
        .await
        .expect("reset");
    let zed_now = fx
        .store
        .user_by_name("zed")
        .await
        .expect("user")
        .expect("zed");
    assert_eq!(zed_now.password_hash, "$argon2id$new");
    for token in ["zed-1", "zed-2"] {
        assert_eq!(
            fx.store.user_by_session(token, T0).await.expect("user"),
            None,
            "every session of the old password ends"
        );
    }
    assert!(
        fx.store
            .user_by_session("amy-1", T0)
            .await
            .expect("user")
            .is_some(),
        "other users stay signed in"
    );
    // Only a user of the school named.
    for (school, id) in [
        (SCHOOL, "u-far"),
        (SCHOOL, "u-nobody"),
        (OTHER_SCHOOL, "u-amy"),
    ] {
        assert!(
            matches!(
                fx.store.set_password(school, id, "$argon2id$x").await,
                Err(StoreError::NotFound(_))
            ),
            "{school} {id}"
        );
    }
    assert!(
        fx.store
            .user_by_session("far-1", T0)
            .await
            .expect("user")
            .is_some()
    );
}

pub async fn school_ids_are_unique(backend: &impl Backend) {
    let fx = fixture(backend).await;
    assert!(matches!(
        fx.store
            .create_school(&School {
                id: SCHOOL.into(),
                name: "Again".into()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    let schools = fx.store.schools().await.expect("schools");
    let mut names: Vec<&str> = schools.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["North", "South"]);
    assert_eq!(
        fx.store.school(OTHER_SCHOOL).await.expect("school"),
        Some(School {
            id: OTHER_SCHOOL.into(),
            name: "South".into()
        })
    );
    assert_eq!(
        fx.store.school("school-nowhere").await.expect("school"),
        None
    );
    fx.store.ping().await.expect("ping");
}

// ---------------------------------------------------------------------------------------------
// Roster and attendance

pub async fn full_roster_deactivates_missing(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let mut smaller = roster();
    smaller.students.retain(|s| s.id != STU_3);
    smaller.enrolments.retain(|e| e.person_id != STU_3);

    // Not full: what is left out stays.
    let summary = fx
        .store
        .apply_roster(SCHOOL, &smaller, false)
        .await
        .expect("roster");
    assert_eq!(summary.deactivated, 0);
    let student_3 = fx
        .store
        .student(SCHOOL, STU_3)
        .await
        .expect("student")
        .expect("held");
    assert!(student_3.active);

    let (_, cursor) = pull_all(&*fx.store, SCHOOL, 0).await;
    let summary = fx
        .store
        .apply_roster(SCHOOL, &smaller, true)
        .await
        .expect("roster");
    assert_eq!(
        summary,
        RosterSummary {
            sections: 2,
            students: 3,
            teachers: 2,
            enrolments: 5,
            deactivated: 2,
        }
    );
    let student_3 = fx
        .store
        .student(SCHOOL, STU_3)
        .await
        .expect("student")
        .expect("held");
    assert!(!student_3.active, "deactivated, never deleted");
    // The roster carries no consent: what was recorded stays.
    assert_eq!(student_3.consent, Consent::Granted);
    let enrolments = fx
        .store
        .enrolments(SCHOOL, SECTION_B)
        .await
        .expect("enrolments");
    assert_eq!(
        enrolments,
        vec![
            Enrolment {
                active: false,
                ..enrolment(SECTION_B, STU_3, EnrolmentRole::Student)
            },
            enrolment(SECTION_B, TEACHER_B, EnrolmentRole::Teacher),
        ]
    );
    // Boxes learn exactly what changed.
    let (after, _) = pull_all(&*fx.store, SCHOOL, cursor).await;
    let mut keys: Vec<String> = after.iter().map(|(_, body)| feed_key(body)).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("enrolment:{SECTION_B}:{STU_3}"),
            format!("student:{STU_3}")
        ]
    );
    assert!(after.iter().any(|(_, body)| matches!(
        body,
        ChangeBody::Student { id, active: false, consent: Consent::Granted, .. } if id == STU_3
    )));
    // The other school is untouched.
    assert!(
        fx.store
            .students(OTHER_SCHOOL)
            .await
            .expect("students")
            .iter()
            .all(|s| s.active)
    );
    let sections = fx.store.sections(SCHOOL).await.expect("sections");
    assert_eq!(sections.len(), 2);
    assert!(sections.iter().all(|s| s.active && s.school_id == SCHOOL));
}

/// A case's roster as `school_id`'s batch, its ids prefixed: ids are global, and each case has a
/// school of its own in one store.
fn batch_of_case(
    school_id: &str,
    prefix: &str,
    import: &shared_proto::oneroster::RosterImport,
) -> RosterBatch {
    let id = |id: &str| format!("{prefix}{id}");
    RosterBatch {
        sections: import
            .sections
            .iter()
            .map(|s| Section {
                active: s.active,
                ..section(&id(&s.id), school_id, &s.title)
            })
            .collect(),
        students: import
            .students
            .iter()
            .map(|p| Student {
                given_name: p.given_name.clone(),
                family_name: p.family_name.clone(),
                active: p.active,
                ..student(&id(&p.id), school_id)
            })
            .collect(),
        teachers: import
            .teachers
            .iter()
            .map(|p| Teacher {
                school_id: school_id.into(),
                given_name: p.given_name.clone(),
                family_name: p.family_name.clone(),
                active: p.active,
                ..teacher(&id(&p.id))
            })
            .collect(),
        enrolments: import
            .enrolments
            .iter()
            .map(|e| Enrolment {
                active: e.active,
                ..enrolment(&id(&e.section_id), &id(&e.person_id), e.role)
            })
            .collect(),
    }
}

/// The roster a box of the school would hold after pulling the whole feed, ids unprefixed.
fn roster_state_of_feed(feed: &BTreeMap<String, ChangeBody>, prefix: &str) -> RosterState {
    let id = |id: &str| id.strip_prefix(prefix).expect("a case's id").to_owned();
    let mut state = RosterState::default();
    for body in feed.values() {
        match body {
            ChangeBody::Section { id: s, active, .. } => {
                state.sections.insert(id(s), *active);
            }
            ChangeBody::Student { id: s, active, .. } => {
                state.students.insert(id(s), *active);
            }
            ChangeBody::Teacher { id: t, active, .. } => {
                state.teachers.insert(id(t), *active);
            }
            ChangeBody::Enrolment {
                section,
                person,
                active,
                ..
            } => {
                state
                    .enrolments
                    .insert(enrolment_key(&id(section), &id(person)), *active);
            }
            other => panic!("a roster wrote {other:?}"),
        }
    }
    state
}

/// The cases the box's store and both backends share (`shared_proto::roster::cases`): what is
/// held after a batch, what is reported deactivated, and how many change-feed keys it moves.
pub async fn roster_cases(backend: &impl Backend) {
    let fx = fixture(backend).await;
    for (n, case) in cases().into_iter().enumerate() {
        let school_id = format!("school-case-{n}");
        let prefix = format!("case{n}.");
        fx.store
            .create_school(&School {
                id: school_id.clone(),
                name: case.name.into(),
            })
            .await
            .expect("create school");
        let held = batch_of_case(&school_id, &prefix, &case.held);
        fx.store
            .apply_roster(&school_id, &held, true)
            .await
            .expect(case.name);
        // Consent is not a roster's: the batch's students carry none, and none is lost.
        for student in &held.students {
            fx.store
                .set_consent(&school_id, &student.id, Consent::Granted, "parent", T0)
                .await
                .expect("consent");
        }
        let (_, cursor) = pull_all(&*fx.store, &school_id, 0).await;

        let batch = batch_of_case(&school_id, &prefix, &case.batch);
        let full = case.scope == ImportScope::Full;
        let summary = fx
            .store
            .apply_roster(&school_id, &batch, full)
            .await
            .expect(case.name);
        assert_eq!(summary.deactivated, case.deactivated, "{}", case.name);
        let (after, _) = pull_all(&*fx.store, &school_id, cursor).await;
        assert_eq!(after.len(), case.n_writes, "{}: {after:?}", case.name);
        let feed = feed(&*fx.store, &school_id).await;
        assert_eq!(
            roster_state_of_feed(&feed, &prefix),
            case.expected,
            "{}",
            case.name
        );

        // The store's own reads say the same as its feed.
        let sections = fx.store.sections(&school_id).await.expect("sections");
        let sections: BTreeMap<String, bool> = sections
            .into_iter()
            .map(|s| (s.id[prefix.len()..].to_owned(), s.active))
            .collect();
        assert_eq!(sections, case.expected.sections, "{}", case.name);
        let students = fx.store.students(&school_id).await.expect("students");
        for student in &students {
            let held_before = held.students.iter().any(|s| s.id == student.id);
            let consent = if held_before {
                Consent::Granted
            } else {
                Consent::None
            };
            assert_eq!(student.consent, consent, "{}: {}", case.name, student.id);
        }
        let students: BTreeMap<String, bool> = students
            .into_iter()
            .map(|s| (s.id[prefix.len()..].to_owned(), s.active))
            .collect();
        assert_eq!(students, case.expected.students, "{}", case.name);
        let mut enrolments = BTreeMap::new();
        for section in case.expected.sections.keys() {
            let of_section = fx
                .store
                .enrolments(&school_id, &format!("{prefix}{section}"))
                .await
                .expect("enrolments");
            for e in of_section {
                let key =
                    enrolment_key(&e.section_id[prefix.len()..], &e.person_id[prefix.len()..]);
                enrolments.insert(key, e.active);
            }
        }
        assert_eq!(enrolments, case.expected.enrolments, "{}", case.name);
    }
}

/// A batch that names another school's id, or enrols into another school's section, is refused
/// whole: nothing of it is written.
pub async fn roster_refusals(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let (_, cursor) = pull_all(&*fx.store, SCHOOL, 0).await;
    let mut taken = roster();
    taken.students.push(student(OTHER_STUDENT, SCHOOL));
    taken.students.push(student("stu-new", SCHOOL));
    assert!(matches!(
        fx.store.apply_roster(SCHOOL, &taken, true).await,
        Err(StoreError::Conflict(_))
    ));
    let mut taken = roster();
    taken
        .sections
        .push(section(OTHER_SECTION, SCHOOL, "Mine now"));
    assert!(matches!(
        fx.store.apply_roster(SCHOOL, &taken, false).await,
        Err(StoreError::Conflict(_))
    ));
    let mut elsewhere = roster();
    elsewhere.students.push(student("stu-new", SCHOOL));
    elsewhere
        .enrolments
        .push(enrolment(OTHER_SECTION, "stu-new", EnrolmentRole::Student));
    assert!(matches!(
        fx.store.apply_roster(SCHOOL, &elsewhere, true).await,
        Err(StoreError::NotFound(_))
    ));
    let (after, _) = pull_all(&*fx.store, SCHOOL, cursor).await;
    assert_eq!(after, vec![]);
    assert_eq!(
        fx.store.student(SCHOOL, "stu-new").await.expect("student"),
        None
    );
    let other = fx.store.sections(OTHER_SCHOOL).await.expect("sections");
    assert_eq!(other, vec![section(OTHER_SECTION, OTHER_SCHOOL, "South 1")]);
}

pub async fn attendance_by_section_dates_and_student(backend: &impl Backend) {
    let fx = fixture(backend).await;
    push_ok(
        &fx,
        &[
            opened("sess-a1", SECTION_A, T0),
            machine_mark("sess-a1", STU_1, MarkStatus::Present, T0 + 10),
            machine_mark("sess-a1", STU_2, MarkStatus::Absent, T0 + 10),
            opened("sess-a2", SECTION_A, T0 + DAY),
            teacher_mark("sess-a2", STU_1, MarkStatus::Late, T0 + DAY + 10),
            opened("sess-b1", SECTION_B, T0),
            machine_mark("sess-b1", STU_3, MarkStatus::Present, T0 + 10),
        ],
    )
    .await;
    let keys = |rows: Vec<AttendanceRow>| -> Vec<(String, String, MarkStatus)> {
        rows.into_iter()
            .map(|r| (r.session_id, r.student_id, r.status))
            .collect()
    };
    let key =
        |session: &str, student: &str, status| (session.to_owned(), student.to_owned(), status);

    assert_eq!(
        keys(attendance(&fx, Some(SECTION_A), None, T0, T0 + DAY).await),
        vec![
            key("sess-a1", STU_1, MarkStatus::Present),
            key("sess-a1", STU_2, MarkStatus::Absent)
        ]
    );
    assert_eq!(
        keys(attendance(&fx, Some(SECTION_A), None, T0, T0 + 2 * DAY).await),
        vec![
            key("sess-a1", STU_1, MarkStatus::Present),
            key("sess-a1", STU_2, MarkStatus::Absent),
            key("sess-a2", STU_1, MarkStatus::Late)
        ]
    );
    assert_eq!(
        keys(attendance(&fx, Some(SECTION_A), None, T0 + 1, T0 + DAY).await),
        vec![]
    );
    assert_eq!(
        keys(attendance(&fx, None, Some(STU_1), T0, T0 + 2 * DAY).await),
        vec![
            key("sess-a1", STU_1, MarkStatus::Present),
            key("sess-a2", STU_1, MarkStatus::Late)
        ]
    );
    assert_eq!(
        keys(attendance(&fx, Some(SECTION_B), Some(STU_3), 0, i64::MAX).await),
        vec![key("sess-b1", STU_3, MarkStatus::Present)]
    );

    let row = attendance(&fx, None, Some(STU_1), T0 + DAY, T0 + 2 * DAY)
        .await
        .into_iter()
        .next()
        .expect("one row");
    assert_eq!(
        row,
        AttendanceRow {
            session_id: "sess-a2".into(),
            section_id: Some(SECTION_A.into()),
            started_at: Some(T0 + DAY),
            device_id: fx.device.id.clone(),
            student_id: STU_1.into(),
            status: MarkStatus::Late,
            source: MarkSource::Teacher,
            score: None,
            decided_at: T0 + DAY + 10,
            decided_by: Some(TEACHER_A.into()),
            event_id: row.event_id.clone(),
        }
    );

    let other_school = fx
        .store
        .attendance(&AttendanceQuery {
            school_id: OTHER_SCHOOL.into(),
            from: 0,
            to: i64::MAX,
            ..AttendanceQuery::default()
        })
        .await
        .expect("attendance");
    assert_eq!(other_school, vec![]);
}

pub async fn sections_of_teacher(backend: &impl Backend) {
    let fx = fixture(backend).await;
    // Compared as sorted lists: the order of a teacher's sections is not part of the contract.
    let of = |teacher_id: &'static str, school_id: &'static str| {
        let store = Arc::clone(&fx.store);
        async move {
            let mut sections = store
                .sections_of_teacher(school_id, teacher_id)
                .await
                .expect("sections of teacher");
            sections.sort();
            sections
        }
    };
    assert_eq!(of(TEACHER_A, SCHOOL).await, vec![SECTION_A.to_owned()]);
    assert_eq!(of(TEACHER_B, SCHOOL).await, vec![SECTION_B.to_owned()]);
    assert_eq!(of(TEACHER_A, OTHER_SCHOOL).await, Vec::<String>::new());
    // A student's enrolment does not make them a teacher.
    assert_eq!(of(STU_1, SCHOOL).await, Vec::<String>::new());

    // Teaching both, then no longer teaching A.
    let mut batch = roster();
    batch
        .enrolments
        .push(enrolment(SECTION_B, TEACHER_A, EnrolmentRole::Teacher));
    fx.store
        .apply_roster(SCHOOL, &batch, true)
        .await
        .expect("roster");
    assert_eq!(
        of(TEACHER_A, SCHOOL).await,
        vec![SECTION_B.to_owned(), SECTION_A.to_owned()]
    );
    batch
        .enrolments
        .retain(|e| !(e.section_id == SECTION_A && e.person_id == TEACHER_A));
    fx.store
        .apply_roster(SCHOOL, &batch, true)
        .await
        .expect("roster");
    assert_eq!(of(TEACHER_A, SCHOOL).await, vec![SECTION_B.to_owned()]);
}

fn slot(weekday: u8, starts: &str) -> ScheduleSlot {
    ScheduleSlot {
        weekday,
        starts: starts.into(),
        ends: "11:30".into(),
        room: Some("R1".into()),
    }
}

pub async fn schedule_replaces_timetable(backend: &impl Backend) {
    let fx = fixture(backend).await;
    assert_eq!(
        fx.store
            .schedule(SCHOOL, SECTION_A)
            .await
            .expect("schedule"),
        vec![]
    );
    let slots = vec![slot(1, "08:00"), slot(3, "09:15")];
    fx.store
        .set_schedule(SCHOOL, SECTION_A, &slots)
        .await
        .expect("schedule");
    assert_eq!(
        fx.store
            .schedule(SCHOOL, SECTION_A)
            .await
            .expect("schedule"),
        slots
    );
    fx.store
        .set_schedule(SCHOOL, SECTION_A, &slots[1..])
        .await
        .expect("schedule");
    assert_eq!(
        fx.store
            .schedule(SCHOOL, SECTION_A)
            .await
            .expect("schedule"),
        slots[1..].to_vec()
    );
    assert!(matches!(
        fx.store.set_schedule(SCHOOL, "sec-nowhere", &slots).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        fx.store.set_schedule(SCHOOL, OTHER_SECTION, &slots).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        fx.store
            .schedule(OTHER_SCHOOL, OTHER_SECTION)
            .await
            .expect("schedule"),
        vec![]
    );
}

// ---------------------------------------------------------------------------------------------
// Corrections and the audit log

fn correction(session: &str, student: &str, status: MarkStatus) -> Correction {
    Correction {
        session: session.into(),
        student: student.into(),
        status,
        event_id: new_id(),
    }
}

fn office(section: &str, at: i64, reason: &str) -> Decision {
    Decision {
        section: section.into(),
        source: MarkSource::Office,
        by: "office-ann".into(),
        reason: reason.into(),
        at,
    }
}

async fn audit_lines(store: &dyn Store, action: Option<Action>) -> Vec<AuditEntry> {
    store
        .audit(&AuditQuery {
            school_id: SCHOOL.into(),
            from: 0,
            to: i64::MAX,
            action,
            actor: None,
            limit: 1000,
        })
        .await
        .expect("audit")
}

fn contact(given: &str, email: &str) -> Contact {
    Contact {
        given_name: given.into(),
        family_name: "Hopper".into(),
        email: email.into(),
        relationship: Relationship::Parent,
    }
}

/// One contact per address in a school, linked to each child (`domain::guardian`): a second child's
/// guardian with a known address is the same contact; the last unlink or the erasure of the last
/// child deletes the contact; refusals write nothing; links and unlinks are audited.
pub async fn guardians_are_one_contact_per_address(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let store = &*fx.store;
    let linked = store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Grace", " Grace@Example.org"),
            "office-ann",
            T0,
        )
        .await
        .expect("store")
        .expect("linked");
    assert!(!linked.existing);
    assert_eq!(linked.guardian.email, "grace@example.org");
    // Stu 3, another section: the same address is the same contact, its name kept.
    let second = store
        .link_guardian(
            SCHOOL,
            STU_3,
            &contact("G.", "grace@example.ORG"),
            "office-ann",
            T0 + 1,
        )
        .await
        .expect("store")
        .expect("linked");
    assert!(second.existing);
    assert_eq!(second.guardian.id, linked.guardian.id);
    assert_eq!(second.guardian.given_name, "Grace");
    assert_eq!(
        second.guardian.student_ids,
        vec![STU_1.to_owned(), STU_3.to_owned()]
    );
    // Linking again changes nothing.
    store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Grace", "grace@example.org"),
            "office-ann",
            T0 + 2,
        )
        .await
        .expect("store")
        .expect("linked");
    let other = store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Alan", "alan@example.org"),
            "office-ann",
            T0 + 3,
        )
        .await
        .expect("store")
        .expect("linked");
    let of_1 = store.guardians_of(SCHOOL, STU_1).await.expect("guardians");
    assert_eq!(
        of_1.iter()
            .map(|g| g.given_name.as_str())
            .collect::<Vec<_>>(),
        ["Alan", "Grace"]
    );
    assert_eq!(
        of_1[1].student_ids,
        vec![STU_1.to_owned(), STU_3.to_owned()]
    );

    // Refused: a header in the address, another school's student, a guardian not linked.
    let hostile = store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Eve", "eve@example.org\r\nBcc: all@example.org"),
            "office-ann",
            T0,
        )
        .await
        .expect("store");
    assert!(
        matches!(hostile, Err(GuardianRefusal::Email(_))),
        "{hostile:?}"
    );
    let foreign = store
        .link_guardian(
            SCHOOL,
            OTHER_STUDENT,
            &contact("Eve", "eve@example.org"),
            "office-ann",
            T0,
        )
        .await
        .expect("store");
    assert!(
        matches!(foreign, Err(GuardianRefusal::UnknownStudent(_))),
        "{foreign:?}"
    );
    let not_linked = store
        .unlink_guardian(SCHOOL, STU_3, &other.guardian.id, "office-ann", T0)
        .await
        .expect("store");
    assert!(not_linked.is_err());
    assert_eq!(
        store
            .guardians_of(SCHOOL, STU_1)
            .await
            .expect("guardians")
            .len(),
        2
    );

    // Unlinked from Stu 1, Grace stays for Stu 3; Alan, left with no child, is deleted.
    for id in [&linked.guardian.id, &other.guardian.id] {
        store
            .unlink_guardian(SCHOOL, STU_1, id, "office-ann", T0 + 4)
            .await
            .expect("store")
            .expect("unlinked");
    }
    assert_eq!(
        store.guardians_of(SCHOOL, STU_1).await.expect("guardians"),
        vec![]
    );
    let of_3 = store.guardians_of(SCHOOL, STU_3).await.expect("guardians");
    assert_eq!(of_3.len(), 1);
    assert_eq!(of_3[0].student_ids, vec![STU_3.to_owned()]);
    let again = store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Alan", "alan@example.org"),
            "office-ann",
            T0 + 5,
        )
        .await
        .expect("store")
        .expect("linked");
    assert!(!again.existing, "Alan was deleted");

    // Erasing Stu 3 deletes Grace, who had no other child.
    store.erase_student(SCHOOL, STU_3).await.expect("erase");
    let relinked = store
        .link_guardian(
            SCHOOL,
            STU_2,
            &contact("Grace", "grace@example.org"),
            "office-ann",
            T0 + 6,
        )
        .await
        .expect("store")
        .expect("linked");
    assert!(!relinked.existing, "Grace was deleted with her last child");

    assert_eq!(
        audit_lines(store, Some(Action::GuardianLinked)).await.len(),
        5
    );
    assert_eq!(
        audit_lines(store, Some(Action::GuardianUnlinked))
            .await
            .len(),
        2
    );
}

fn trip(id: &str, section: &str, from: i64, to: i64, at: i64) -> Excusal {
    Excusal {
        id: id.into(),
        school_id: SCHOOL.into(),
        section_id: section.into(),
        from,
        to,
        reason: "Science museum".into(),
        by: "office-ann".into(),
        at,
    }
}

/// A trip booked for a section excuses at once the marks of lessons already held, and later the
/// machine's "absent" of each lesson it covers as the box pushes it (sent back to the box as a
/// `mark` change); a student the camera saw stays present, a teacher's later decision wins, and a
/// cancelled trip excuses nothing more. Booking and cancelling are audited.
pub async fn trips_booked_ahead_excuse_what_the_camera_did_not_see(backend: &impl Backend) {
    let fx = fixture(backend).await;
    push_ok(
        &fx,
        &[
            opened("sess-1", SECTION_A, T0),
            machine_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 10),
        ],
    )
    .await;
    // Booked after the first lesson, for it and the next two days.
    let booked = trip("trip-1", SECTION_A, T0 - 60_000, T0 + 2 * DAY, T0 + 100);
    let outcome = fx
        .store
        .book_excusal(
            &booked,
            &[correction("sess-1", STU_1, MarkStatus::Excused)],
            &TimeZone::UTC,
        )
        .await
        .expect("store")
        .expect("booked");
    assert_eq!(outcome.applied, 1);
    assert_eq!(
        the_mark(&fx, "sess-1", STU_1).await.status,
        MarkStatus::Excused
    );
    assert_eq!(
        fx.store.excusals(SCHOOL, SECTION_A).await.expect("trips"),
        vec![booked.clone()]
    );
    assert_eq!(
        fx.store.excusals(SCHOOL, SECTION_B).await.expect("trips"),
        vec![]
    );
    // A refused booking writes nothing.
    let backwards = trip("trip-x", SECTION_A, T0, T0, T0 + 100);
    assert!(
        fx.store
            .book_excusal(&backwards, &[], &TimeZone::UTC)
            .await
            .expect("store")
            .is_err()
    );

    let (_, cursor) = pull_all(&*fx.store, SCHOOL, 0).await;
    // The next day's lesson: the camera does not see Stu 1, sees Stu 2; Stu 3's art is not on it.
    push_ok(
        &fx,
        &[
            opened("sess-2", SECTION_A, T0 + DAY),
            machine_mark("sess-2", STU_1, MarkStatus::Absent, T0 + DAY + 10),
            machine_mark("sess-2", STU_2, MarkStatus::Present, T0 + DAY + 10),
            opened("sess-art", SECTION_B, T0 + DAY),
            machine_mark("sess-art", STU_3, MarkStatus::Absent, T0 + DAY + 10),
        ],
    )
    .await;
    let excused = the_mark(&fx, "sess-2", STU_1).await;
    assert_eq!(
        (
            excused.status,
            excused.source,
            excused.decided_by.as_deref(),
            excused.decided_at
        ),
        (
            MarkStatus::Excused,
            MarkSource::Office,
            Some("office-ann"),
            T0 + 100
        )
    );
    assert_eq!(
        the_mark(&fx, "sess-2", STU_2).await.status,
        MarkStatus::Present
    );
    assert_eq!(
        the_mark(&fx, "sess-art", STU_3).await.status,
        MarkStatus::Absent
    );
    let (changes, _) = pull_all(&*fx.store, SCHOOL, cursor).await;
    let told: Vec<_> = changes
        .iter()
        .filter_map(|(_, c)| match c {
            ChangeBody::Mark {
                session,
                student,
                status,
                ..
            } => Some((session.as_str(), student.as_str(), *status)),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![("sess-2", STU_1, MarkStatus::Excused)]);
    // The machine's own decision is kept for the recognition audit.
    let kept = fx
        .store
        .machine_decisions(SCHOOL, T0 + DAY, T0 + 2 * DAY)
        .await
        .expect("machine decisions");
    assert!(
        kept.iter().any(|d| d.machine == Some(MarkStatus::Absent)
            && d.status == MarkStatus::Excused
            && d.section_id == SECTION_A),
        "{kept:?}"
    );

    // The teacher, later, says Stu 1 did come: the later person wins.
    push_ok(
        &fx,
        &[teacher_mark(
            "sess-2",
            STU_1,
            MarkStatus::Present,
            T0 + DAY + 20,
        )],
    )
    .await;
    assert_eq!(
        the_mark(&fx, "sess-2", STU_1).await.status,
        MarkStatus::Present
    );

    // Cancelled: the third day's absence stands.
    let cancelled = fx
        .store
        .cancel_excusal(
            SCHOOL,
            "trip-1",
            "office-bob",
            T0 + DAY + 100,
            &TimeZone::UTC,
        )
        .await
        .expect("cancel");
    assert_eq!(cancelled, Some(booked));
    assert_eq!(
        fx.store
            .cancel_excusal(
                SCHOOL,
                "trip-1",
                "office-bob",
                T0 + DAY + 100,
                &TimeZone::UTC
            )
            .await
            .expect("cancel again"),
        None
    );
    push_ok(
        &fx,
        &[
            opened("sess-3", SECTION_A, T0 + DAY + 3_600_000),
            machine_mark("sess-3", STU_1, MarkStatus::Absent, T0 + DAY + 3_600_010),
        ],
    )
    .await;
    assert_eq!(
        the_mark(&fx, "sess-3", STU_1).await.status,
        MarkStatus::Absent
    );
    assert_eq!(
        fx.store.excusals(SCHOOL, SECTION_A).await.expect("trips"),
        vec![]
    );

    let booked_lines = audit_lines(&*fx.store, Some(Action::TripBooked)).await;
    assert_eq!(booked_lines.len(), 1, "{booked_lines:?}");
    // T0 is 2023-11-14 22:13 UTC: the trip's days as a school in UTC reads them.
    assert!(
        booked_lines[0]
            .detail
            .starts_with("2023-11-14 to 2023-11-16: Science museum"),
        "{booked_lines:?}"
    );
    let cancelled_lines = audit_lines(&*fx.store, Some(Action::TripCancelled)).await;
    assert_eq!(cancelled_lines.len(), 1);
    assert_eq!(cancelled_lines[0].actor, "office-bob");
}

/// People beat the machine and, among people, the later decision wins, whether the teacher
/// decided at the box or the office on the dashboard (`mark_wins`). A correction is audited with
/// its reason and sent to boxes as a `mark` change, in one transaction; a refused request writes
/// nothing.
pub async fn office_corrections_follow_the_human_order(backend: &impl Backend) {
    let fx = fixture(backend).await;
    push_ok(
        &fx,
        &[
            opened("sess-1", SECTION_A, T0),
            machine_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 10),
            machine_mark("sess-1", STU_2, MarkStatus::Present, T0 + 10),
            teacher_mark("sess-1", STU_3, MarkStatus::Absent, T0 + 20),
        ],
    )
    .await;
    let (_, cursor) = pull_all(&*fx.store, SCHOOL, 0).await;

    // The office beats the machine; a teacher's earlier decision loses to the office's later one.
    let outcome = fx
        .store
        .correct_marks(
            SCHOOL,
            &[
                correction("sess-1", STU_1, MarkStatus::Excused),
                correction("sess-1", STU_3, MarkStatus::Late),
            ],
            &office(SECTION_A, T0 + 100, "note from a parent"),
        )
        .await
        .expect("store")
        .expect("accepted");
    assert_eq!((outcome.applied, outcome.unchanged), (2, 0));
    let row = the_mark(&fx, "sess-1", STU_1).await;
    assert_eq!(
        (row.status, row.source, row.decided_by.as_deref()),
        (MarkStatus::Excused, MarkSource::Office, Some("office-ann"))
    );
    assert_eq!(row.section_id.as_deref(), Some(SECTION_A));
    assert_eq!(row.device_id, fx.device.id, "filed under the session's box");
    assert_eq!(
        the_mark(&fx, "sess-1", STU_3).await.status,
        MarkStatus::Late
    );

    // Both travel to the boxes as `mark` changes.
    let (changes, _) = pull_all(&*fx.store, SCHOOL, cursor).await;
    let marks: Vec<_> = changes
        .iter()
        .filter_map(|(_, c)| match c {
            ChangeBody::Mark {
                student,
                status,
                source,
                by,
                ..
            } => Some((student.as_str(), *status, *source, by.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        marks,
        vec![
            (
                STU_1,
                MarkStatus::Excused,
                MarkSource::Office,
                Some("office-ann")
            ),
            (
                STU_3,
                MarkStatus::Late,
                MarkSource::Office,
                Some("office-ann")
            ),
        ]
    );

    // A later teacher decision at the box beats the office; an earlier one, or the machine, not.
    push_ok(
        &fx,
        &[teacher_mark("sess-1", STU_1, MarkStatus::Present, T0 + 50)],
    )
    .await;
    push_ok(
        &fx,
        &[machine_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 900)],
    )
    .await;
    assert_eq!(
        the_mark(&fx, "sess-1", STU_1).await.status,
        MarkStatus::Excused
    );
    push_ok(
        &fx,
        &[teacher_mark("sess-1", STU_1, MarkStatus::Present, T0 + 200)],
    )
    .await;
    let row = the_mark(&fx, "sess-1", STU_1).await;
    assert_eq!(
        (row.status, row.source),
        (MarkStatus::Present, MarkSource::Teacher)
    );

    // ...and a correction older than the held human decision is left alone.
    let outcome = fx
        .store
        .correct_marks(
            SCHOOL,
            &[correction("sess-1", STU_1, MarkStatus::Absent)],
            &office(SECTION_A, T0 + 150, "late paperwork"),
        )
        .await
        .expect("store")
        .expect("accepted");
    assert_eq!((outcome.applied, outcome.unchanged), (0, 1));
    assert_eq!(
        the_mark(&fx, "sess-1", STU_1).await.status,
        MarkStatus::Present
    );

    // The audit log holds each applied correction with its reason, newest first.
    let lines = audit_lines(&*fx.store, Some(Action::MarkCorrected)).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.actor == "office-ann"
        && l.detail.contains("note from a parent")
        && l.school_id.as_deref() == Some(SCHOOL)));
    assert!(lines.iter().any(
        |l| l.subject == format!("sess-1/{STU_1}") && l.detail.starts_with("absent -> excused")
    ));

    // Refused as a whole, writing nothing: no reason, another section's session, another
    // school's student, "review".
    let before = audit_lines(&*fx.store, None).await.len();
    for (corrections, decision) in [
        (
            vec![correction("sess-1", STU_2, MarkStatus::Absent)],
            office(SECTION_A, T0 + 300, "  "),
        ),
        (
            vec![correction("sess-1", STU_2, MarkStatus::Absent)],
            office(SECTION_B, T0 + 300, "wrong section"),
        ),
        (
            vec![
                correction("sess-1", STU_2, MarkStatus::Absent),
                correction("sess-1", OTHER_STUDENT, MarkStatus::Absent),
            ],
            office(SECTION_A, T0 + 300, "another school's student"),
        ),
        (
            vec![correction("sess-1", STU_2, MarkStatus::Review)],
            office(SECTION_A, T0 + 300, "review"),
        ),
    ] {
        let answer = fx
            .store
            .correct_marks(SCHOOL, &corrections, &decision)
            .await
            .expect("store");
        assert!(answer.is_err(), "{decision:?}: {answer:?}");
    }
    assert_eq!(
        the_mark(&fx, "sess-1", STU_2).await.status,
        MarkStatus::Present
    );
    assert_eq!(audit_lines(&*fx.store, None).await.len(), before);
}

/// The audit log keeps consent decisions (in their transaction) and the lines appended after an
/// action, per school, filtered by action and actor, newest first.
pub async fn audit_log_per_school(backend: &impl Backend) {
    let fx = fixture(backend).await;
    fx.store
        .set_consent(SCHOOL, STU_1, Consent::Withdrawn, "office-ann", T0 + 10)
        .await
        .expect("consent");
    for (at, actor, action) in [
        (T0 + 20, "office-ann", Action::SignIn),
        (T0 + 30, "office-bob", Action::DeviceRevoked),
    ] {
        fx.store
            .append_audit(&AuditEntry {
                school_id: Some(SCHOOL.into()),
                at,
                actor: actor.into(),
                action,
                subject: "x".into(),
                detail: String::new(),
            })
            .await
            .expect("append");
    }
    fx.store
        .append_audit(&AuditEntry {
            school_id: Some(OTHER_SCHOOL.into()),
            at: T0 + 40,
            actor: "south-admin".into(),
            action: Action::SignIn,
            subject: "x".into(),
            detail: String::new(),
        })
        .await
        .expect("append");
    let consent = audit_lines(&*fx.store, Some(Action::ConsentChanged)).await;
    let withdrawal: Vec<_> = consent.iter().filter(|l| l.at == T0 + 10).collect();
    assert_eq!(withdrawal.len(), 1, "{consent:?}");
    assert_eq!(withdrawal[0].subject, STU_1);
    assert_eq!(withdrawal[0].detail, "granted -> withdrawn");
    let recent = fx
        .store
        .audit(&AuditQuery {
            school_id: SCHOOL.into(),
            from: T0 + 5,
            to: T0 + 1000,
            action: None,
            actor: None,
            limit: 2,
        })
        .await
        .expect("audit");
    let seen: Vec<_> = recent.iter().map(|l| l.at).collect();
    assert_eq!(seen, vec![T0 + 30, T0 + 20], "newest first, limited");
    let bob = fx
        .store
        .audit(&AuditQuery {
            school_id: SCHOOL.into(),
            from: 0,
            to: i64::MAX,
            action: None,
            actor: Some("office-bob".into()),
            limit: 10,
        })
        .await
        .expect("audit");
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].action, Action::DeviceRevoked);
}

/// A box's pushes say how it is (version, outbox depth, its clock against the server's); its
/// pulls how far it has applied the feed, which never moves back; an erasure is purged on a box
/// once it has pulled past it.
pub async fn boxes_report_and_acknowledge_purges(backend: &impl Backend) {
    let fx = fixture(backend).await;
    let state = BoxState {
        app_version: "0.9.1".into(),
        outbox_waiting: 42,
        clock_offset_ms: Some(-3 * 86_400_000),
    };
    let seen = |seen: Seen, at: i64| {
        let store = fx.store.clone();
        let id = fx.device.id.clone();
        async move { store.device_seen(&id, &seen, at).await.expect("seen") }
    };
    seen(
        Seen::Push(Some(state.clone()), Some("fr_feature-v1".into())),
        T0 + 10,
    )
    .await;
    seen(Seen::Pull(7), T0 + 20).await;
    seen(Seen::Pull(3), T0 + 30).await;
    // A push without a report (a protocol 1 box) keeps the last one, and one without a template
    // the last space.
    seen(Seen::Push(None, None), T0 + 40).await;
    let devices = fx.store.devices(SCHOOL).await.expect("devices");
    let held = devices
        .iter()
        .find(|d| d.id == fx.device.id)
        .expect("the box");
    assert_eq!(held.activity.state, Some(state.clone()));
    assert_eq!(
        held.activity.embedding_space.as_deref(),
        Some("fr_feature-v1"),
        "a push without a template keeps the box's space"
    );
    assert_eq!(held.activity.acked_seq, 7, "a cursor never moves back");
    assert_eq!(held.activity.last_push_at, Some(T0 + 40));
    assert_eq!(held.activity.last_pull_at, Some(T0 + 30));
    assert_eq!(held.last_seen_at, Some(T0 + 40));
    // A report without the box's clock (a box before it) forgets the last one: it is not
    // known any more.
    let unclocked = BoxState {
        clock_offset_ms: None,
        ..state
    };
    seen(Seen::Push(Some(unclocked.clone()), None), T0 + 50).await;
    let devices = fx.store.devices(SCHOOL).await.expect("devices");
    let held = devices
        .iter()
        .find(|d| d.id == fx.device.id)
        .expect("the box");
    assert_eq!(held.activity.state, Some(unclocked));

    fx.store.erase_student(SCHOOL, STU_2).await.expect("erase");
    let erasures = fx.store.erasures_since(SCHOOL, 0).await.expect("erasures");
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    let (seq, student) = erasures[0].clone();
    assert_eq!(student, STU_2);
    let (_, end) = pull_all(&*fx.store, SCHOOL, 0).await;
    assert!(seq <= end);
    assert_eq!(
        fx.store
            .erasures_since(SCHOOL, seq)
            .await
            .expect("erasures"),
        vec![]
    );
    assert!(
        fx.store
            .erasures_since(OTHER_SCHOOL, 0)
            .await
            .expect("erasures")
            .is_empty()
    );
    seen(Seen::Pull(seq), T0 + 50).await;
    let devices = fx.store.devices(SCHOOL).await.expect("devices");
    let held = devices
        .iter()
        .find(|d| d.id == fx.device.id)
        .expect("the box");
    assert!(held.activity.acked_seq >= seq);
}

/// What the machine decided stays with a mark that people change, teacher or office, so the
/// recognition self-audit can count the changes; marks a person made first have none.
pub async fn machine_decisions_survive_corrections(backend: &impl Backend) {
    use sync_server::store::MachineDecisions;
    let fx = fixture(backend).await;
    push_ok(
        &fx,
        &[
            opened("sess-1", SECTION_A, T0),
            machine_mark("sess-1", STU_1, MarkStatus::Present, T0 + 10),
            machine_mark("sess-1", STU_2, MarkStatus::Absent, T0 + 10),
            machine_mark("sess-1", STU_3, MarkStatus::Review, T0 + 10),
            teacher_mark("sess-1", STU_NO_CONSENT, MarkStatus::Absent, T0 + 10),
        ],
    )
    .await;
    // The teacher: the first student was not there, the review was right. Then the office marks
    // present the one the machine missed.
    push_ok(
        &fx,
        &[
            teacher_mark("sess-1", STU_1, MarkStatus::Absent, T0 + 20),
            teacher_mark("sess-1", STU_3, MarkStatus::Present, T0 + 20),
        ],
    )
    .await;
    fx.store
        .correct_marks(
            SCHOOL,
            &[correction("sess-1", STU_2, MarkStatus::Present)],
            &office(SECTION_A, T0 + 100, "was in the library, seen by Ms Lee"),
        )
        .await
        .expect("store")
        .expect("accepted");
    // A later teacher decision still keeps the machine's, not the office's.
    push_ok(
        &fx,
        &[teacher_mark("sess-1", STU_2, MarkStatus::Late, T0 + 200)],
    )
    .await;

    // In the store's order: section, box, machine decision, status, source.
    let rows = fx
        .store
        .machine_decisions(SCHOOL, T0 - DAY, T0 + DAY)
        .await
        .unwrap();
    let row = |machine, status, source, count| MachineDecisions {
        section_id: SECTION_A.to_owned(),
        device_id: fx.device.id.clone(),
        machine: Some(machine),
        status,
        source,
        count,
    };
    assert_eq!(
        rows,
        vec![
            row(MarkStatus::Absent, MarkStatus::Late, MarkSource::Teacher, 1),
            row(
                MarkStatus::Present,
                MarkStatus::Absent,
                MarkSource::Teacher,
                1
            ),
            row(
                MarkStatus::Review,
                MarkStatus::Present,
                MarkSource::Teacher,
                1
            ),
        ]
    );
    assert!(
        fx.store
            .machine_decisions(SCHOOL, T0 + DAY, T0 + 2 * DAY)
            .await
            .unwrap()
            .is_empty()
    );

    // Three days later the teacher again marks absent a student the machine saw: over the days
    // between, the two count as one line of two, however the store reads them.
    push_ok(
        &fx,
        &[
            opened("sess-4", SECTION_A, T0 + 3 * DAY),
            machine_mark("sess-4", STU_1, MarkStatus::Present, T0 + 3 * DAY + 10),
        ],
    )
    .await;
    push_ok(
        &fx,
        &[teacher_mark(
            "sess-4",
            STU_1,
            MarkStatus::Absent,
            T0 + 3 * DAY + 20,
        )],
    )
    .await;
    let rows = fx
        .store
        .machine_decisions(SCHOOL, T0 - DAY, T0 + 5 * DAY)
        .await
        .unwrap();
    assert_eq!(
        rows[1],
        row(
            MarkStatus::Present,
            MarkStatus::Absent,
            MarkSource::Teacher,
            2
        ),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
}

/// `tally` counts exactly what `attendance` lists, per section, student and status, with the
/// sessions held per section; a mark whose session has not arrived counts under no section.
pub async fn tally_counts_what_attendance_lists(backend: &impl Backend) {
    use std::collections::BTreeMap;
    let fx = fixture(backend).await;
    push_ok(
        &fx,
        &[
            opened("sess-a1", SECTION_A, T0),
            machine_mark("sess-a1", STU_1, MarkStatus::Present, T0 + 10),
            machine_mark("sess-a1", STU_2, MarkStatus::Absent, T0 + 10),
            opened("sess-a2", SECTION_A, T0 + DAY),
            teacher_mark("sess-a2", STU_1, MarkStatus::Present, T0 + DAY + 10),
            teacher_mark("sess-a2", STU_2, MarkStatus::Absent, T0 + DAY + 10),
            opened("sess-b1", SECTION_B, T0),
            machine_mark("sess-b1", STU_3, MarkStatus::Present, T0 + 10),
            opened("sess-b2", SECTION_B, T0 + 2 * DAY),
            machine_mark("sess-later", STU_3, MarkStatus::Late, T0 + 20),
        ],
    )
    .await;
    type Key = (Option<String>, String, &'static str);
    for (section, from, to) in [
        (None, T0, T0 + 3 * DAY),
        (Some(SECTION_A), T0, T0 + 3 * DAY),
        (None, T0 + DAY, T0 + 3 * DAY),
        (None, 0, T0),
    ] {
        let query = AttendanceQuery {
            school_id: SCHOOL.into(),
            section_id: section.map(str::to_owned),
            student_id: None,
            from,
            to,
        };
        let listed = fx.store.attendance(&query).await.expect("attendance");
        let mut expected: BTreeMap<Key, u64> = BTreeMap::new();
        for row in &listed {
            *expected
                .entry((
                    row.section_id.clone(),
                    row.student_id.clone(),
                    row.status.as_str(),
                ))
                .or_default() += 1;
        }
        let tally = fx.store.tally(&query).await.expect("tally");
        let counted: BTreeMap<Key, u64> = tally
            .marks
            .iter()
            .map(|r| {
                (
                    (
                        r.section_id.clone(),
                        r.student_id.clone(),
                        r.status.as_str(),
                    ),
                    r.count,
                )
            })
            .collect();
        assert_eq!(counted, expected, "{section:?} {from}..{to}");
        let mut sessions = tally.sessions.clone();
        sessions.sort();
        let want: Vec<(String, u64)> = match (section, from) {
            (None, T0) => vec![(SECTION_B.into(), 2), (SECTION_A.into(), 2)],
            (Some(_), _) => vec![(SECTION_A.into(), 2)],
            (None, 0) => vec![],
            _ => vec![(SECTION_B.into(), 1), (SECTION_A.into(), 1)],
        };
        let mut want = want;
        want.sort();
        assert_eq!(sessions, want, "{section:?} {from}..{to}");
    }
    // The mark whose session has not arrived is among the whole school's, under no section.
    let all = fx
        .store
        .tally(&AttendanceQuery {
            school_id: SCHOOL.into(),
            from: T0,
            to: T0 + 3 * DAY,
            ..AttendanceQuery::default()
        })
        .await
        .unwrap();
    assert!(
        all.marks
            .iter()
            .any(|r| r.section_id.is_none() && r.student_id == STU_3 && r.count == 1)
    );
}

fn outbox_notice(n: usize, at: i64) -> sync_server::domain::notice::Notice {
    use sync_server::domain::notice::{Kind, Letter, Notice};
    let letter = Letter {
        id: format!("notice-{n}"),
        school_id: SCHOOL.into(),
        kind: Kind::AdminDigest,
        key: format!("key-{n}"),
        recipient: format!("office{n}@example.org"),
        guardian_id: None,
        day: "2023-11-14".into(),
        subject: format!("Digest {n}"),
        text: "text".into(),
        html: "<p>html</p>".into(),
        facts: "[]".into(),
        students: Vec::new(),
        message_id: format!("<notice-{n}@example.org>"),
    };
    Notice::queued(letter, at)
}

/// The notice outbox (`domain::notice`): a key is enqueued once; a claim leases each due notice
/// to one claim only, counting a try; only the lease holder finishes it; a lease that ran out is
/// claimable again; only a failed notice is resent; the unsubscribe secret is kept once; a
/// guardian's opting out keeps its first time.
pub async fn the_notice_outbox_leases_each_notice_to_one_sender(backend: &impl Backend) {
    use sync_server::domain::notice::{self, Claim, Delivery, State};
    let fx = fixture(backend).await;
    let store = &*fx.store;
    let notices: Vec<_> = (0..6).map(|n| outbox_notice(n, T0 + n as i64)).collect();
    assert_eq!(store.enqueue_notices(&notices).await.expect("enqueue"), 6);
    let mut again = outbox_notice(0, T0);
    again.letter.id = "another-id".into();
    assert_eq!(store.enqueue_notices(&[again]).await.expect("enqueue"), 0);
    let one = store.notice(SCHOOL, "notice-1").await.expect("one notice");
    assert_eq!(
        one.map(|n| n.letter.recipient),
        Some("office1@example.org".into())
    );
    assert!(
        store
            .notice("another-school", "notice-1")
            .await
            .expect("another school's")
            .is_none(),
        "a notice is found only within its school"
    );

    // Two claims at once: every due notice goes to exactly one; the not-yet-due one to none.
    let claim = |owner: &str, limit| Claim {
        owner: owner.into(),
        now: T0 + 4,
        lease_until: T0 + 60_000,
        limit,
    };
    let (claim_a, claim_b) = (claim("a", 3), claim("b", 3));
    let (a, b) = tokio::join!(store.claim_notices(&claim_a), store.claim_notices(&claim_b));
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    let mut ids: Vec<&str> = a.iter().chain(&b).map(|n| n.letter.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["notice-0", "notice-1", "notice-2", "notice-3", "notice-4"]
    );
    assert!(
        a.iter()
            .chain(&b)
            .all(|n| n.attempts == 1 && n.state == State::Sending)
    );
    assert!(
        store
            .claim_notices(&claim("c", 10))
            .await
            .expect("claim")
            .is_empty()
    );

    // Only the holder of the lease finishes.
    let first = &a[0];
    let sent = notice::after_attempt(first, &Delivery::Accepted, T0 + 5);
    assert!(
        !store
            .finish_notice(&first.letter.id, "b", &sent)
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_notice(&first.letter.id, "a", &sent)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_notice(&first.letter.id, "a", &sent)
            .await
            .expect("finish"),
        "finished once"
    );
    let refused = notice::after_attempt(&a[1], &Delivery::Permanent("550 no".into()), T0 + 5);
    assert!(
        store
            .finish_notice(&a[1].letter.id, "a", &refused)
            .await
            .expect("finish")
    );

    // b's sender died: after its lease, its notices (and the one now due) are claimed again.
    let late = Claim {
        owner: "d".into(),
        now: T0 + 60_000,
        lease_until: T0 + 120_000,
        limit: 10,
    };
    let reclaimed = store.claim_notices(&late).await.expect("claim");
    let mut expected: Vec<&str> = b.iter().map(|n| n.letter.id.as_str()).collect();
    expected.extend(a[2..].iter().map(|n| n.letter.id.as_str()));
    expected.push("notice-5");
    expected.sort();
    let mut got: Vec<&str> = reclaimed.iter().map(|n| n.letter.id.as_str()).collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(
        reclaimed
            .iter()
            .filter(|n| n.letter.id != "notice-5")
            .all(|n| n.attempts == 2)
    );

    // Listing, counting, resending.
    let query = |state| sync_server::store::NoticeQuery {
        school_id: SCHOOL.into(),
        day: Some("2023-11-14".into()),
        state,
        limit: 100,
    };
    let all = store.notices(&query(None)).await.expect("notices");
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].letter.id, "notice-5", "newest first");
    let failed = store
        .notices(&query(Some(State::Failed)))
        .await
        .expect("notices");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("550 no"));
    let counts = store.notice_counts(SCHOOL).await.expect("counts");
    assert!(counts.contains(&(State::Sent, 1)) && counts.contains(&(State::Failed, 1)));
    assert!(
        store
            .notice_counts(OTHER_SCHOOL)
            .await
            .expect("counts")
            .is_empty()
    );
    assert!(
        !store
            .resend_notice(SCHOOL, &first.letter.id, &notice::resend(T0))
            .await
            .expect("resend"),
        "a sent notice is not resent"
    );
    assert!(
        !store
            .resend_notice(OTHER_SCHOOL, &failed[0].letter.id, &notice::resend(T0))
            .await
            .expect("resend"),
        "nor another school's"
    );
    assert!(
        store
            .resend_notice(SCHOOL, &failed[0].letter.id, &notice::resend(T0))
            .await
            .expect("resend")
    );
    let queued = store
        .notices(&query(Some(State::Queued)))
        .await
        .expect("notices");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].attempts, 0);

    // The unsubscribe secret: the first one stays.
    let secret = store.notice_secret("first").await.expect("secret");
    assert_eq!(secret, "first");
    assert_eq!(
        store.notice_secret("second").await.expect("secret"),
        "first"
    );

    // Opting out keeps its first time; an unknown contact is `false`.
    let linked = store
        .link_guardian(
            SCHOOL,
            STU_1,
            &contact("Grace", "grace@example.org"),
            "office",
            T0,
        )
        .await
        .expect("store")
        .expect("linked");
    let id = &linked.guardian.id;
    assert!(
        store
            .opt_out_guardian(SCHOOL, id, T0 + 1)
            .await
            .expect("opt out")
    );
    assert!(
        store
            .opt_out_guardian(SCHOOL, id, T0 + 2)
            .await
            .expect("opt out")
    );
    assert!(
        !store
            .opt_out_guardian(OTHER_SCHOOL, id, T0)
            .await
            .expect("opt out")
    );
    let held = store
        .guardian(SCHOOL, id)
        .await
        .expect("guardian")
        .expect("held");
    assert_eq!(held.opted_out_at, Some(T0 + 1));
    let all = store.guardians(SCHOOL).await.expect("guardians");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].student_ids, [STU_1]);
}
