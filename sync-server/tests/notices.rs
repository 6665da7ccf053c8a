//! Notices (issue 16) end to end, against a real SMTP server (`scripts/smtp_sink.py`, aiosmtpd):
//! a school day under a clock the test moves, a relay that is down, busy (451) or refusing (550),
//! one-click unsubscribe, hostile names, and, on the MongoDB-wire server that `scripts/test`
//! starts, two server processes sharing one outbox and a sender killed mid-burst.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::smtp::{Mail, Sink};
use common::{START, Server, event_id, push_body};
use serde_json::json;
use shared_proto::sync::{Event, EventBody, MarkSource, MarkStatus};
use sync_server::api::Clock;
use sync_server::config::{SmtpConfig, SmtpSecurity};
use sync_server::domain::guardian::{Contact, Relationship};
use sync_server::domain::notice::{Kind, Letter, Notice, State};
use sync_server::notify::Notifier;
use sync_server::store::{Millis, NoticeQuery, Store};

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "Hill School <attendance@hill.example.org>".into(),
        public_url: "http://rollcall.hill.example.org".into(),
        plan_every_seconds: 60,
        timeout_seconds: 5,
        lease_seconds: 60,
        max_per_second: 1000,
        concurrency: 1,
    }
}

fn notifier(server: &Server, port: u16) -> Notifier {
    Notifier::new(server.store.clone(), server.clock.clone(), &smtp(port)).unwrap()
}

/// A session of `section` opened at `at` with one mark per (student, status), by the machine.
fn lesson(n: u64, section: &str, at: Millis, marks: &[(&str, MarkStatus)]) -> Vec<Event> {
    let session = format!("sess-{n}");
    let mut events = vec![Event {
        id: event_id(n * 100),
        at,
        body: EventBody::SessionOpened {
            session: session.clone(),
            section: section.to_owned(),
            started_at: at,
        },
    }];
    for (i, (student, status)) in marks.iter().enumerate() {
        events.push(mark(
            n * 100 + 1 + i as u64,
            &session,
            student,
            *status,
            at + 1000,
            None,
        ));
    }
    events
}

fn mark(
    id: u64,
    session: &str,
    student: &str,
    status: MarkStatus,
    at: Millis,
    teacher: Option<&str>,
) -> Event {
    Event {
        id: event_id(id),
        at,
        body: EventBody::MarkSet {
            session: session.to_owned(),
            student: student.to_owned(),
            status,
            source: if teacher.is_some() {
                MarkSource::Teacher
            } else {
                MarkSource::Machine
            },
            score: teacher.is_none().then_some(0.8),
            decided_at: at,
            by: teacher.map(str::to_owned),
        },
    }
}

async fn link(server: &Server, school: &str, student: &str, given: &str, email: &str) -> String {
    let contact = Contact {
        given_name: given.into(),
        family_name: "Home".into(),
        email: email.into(),
        relationship: Relationship::Parent,
    };
    server
        .store
        .link_guardian(school, student, &contact, "test", START)
        .await
        .unwrap()
        .unwrap()
        .guardian
        .id
}

fn to(mails: &[Mail], address: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.header("to").contains(address))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_school_day_tells_each_family_once_then_corrects_and_honours_unsubscribing() {
    let server = Server::start().await;
    let hill = server.school("hill").await;
    let sink = Sink::start(&[], &[]);
    let notifier = notifier(&server, sink.port);
    // One family of two children (its name tries markup), and a guardian who opted out.
    let family = link(
        &server,
        "hill",
        &hill.s1(),
        "<i>Pat</i>",
        "home@example.org",
    )
    .await;
    assert_eq!(
        link(&server, "hill", &hill.s2(), "Pat", "HOME@example.org").await,
        family
    );
    let other = link(&server, "hill", &hill.s1(), "Sam", "other@example.org").await;
    assert!(
        server
            .store
            .opt_out_guardian("hill", &other, START)
            .await
            .unwrap()
    );

    // 08:00 maths: Ada absent. 08:00 art: Alan late. 10:00 art: Alan absent, then marked present
    // by his teacher at 11:20, inside the grace period (off-timetable lessons last an hour: final
    // at 11:30).
    let mut events = lesson(1, &hill.math(), START, &[(&hill.s1(), MarkStatus::Absent)]);
    events.extend(lesson(
        2,
        &hill.art(),
        START,
        &[(&hill.s2(), MarkStatus::Late)],
    ));
    events.extend(lesson(
        3,
        &hill.art(),
        START + 2 * HOUR,
        &[(&hill.s2(), MarkStatus::Absent)],
    ));
    events.push(mark(
        900,
        "sess-3",
        &hill.s2(),
        MarkStatus::Present,
        START + 3 * HOUR + 20 * MINUTE,
        Some("hill-t2"),
    ));
    server
        .post("/v1/sync/push", Some(&hill.device), push_body(&events))
        .await
        .assert_ok();

    // Before the 16:00 digest, nothing; at 16:00 one mail for the family, none for the opted out.
    server.clock.advance_ms(7 * HOUR + 59 * MINUTE);
    assert_eq!(notifier.plan().await.unwrap(), 0);
    server.clock.advance_ms(MINUTE);
    assert_eq!(notifier.plan().await.unwrap(), 1);
    assert_eq!(
        notifier.plan().await.unwrap(),
        0,
        "planned twice, enqueued once"
    );
    let d = notifier.deliver().await.unwrap();
    assert_eq!((d.sent, d.failed, d.retried), (1, 0, 0));
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let digest = &mails[0];
    assert_eq!(digest.header("to"), "home@example.org");
    assert!(
        digest.header("subject").contains("Ada and Alan"),
        "{digest:?}"
    );
    assert!(
        digest.body.contains("Ada was absent in Maths at 08:00"),
        "{}",
        digest.body
    );
    assert!(digest.body.contains("Alan was late in Art at 08:00"));
    assert!(
        !digest.body.contains("10:00"),
        "a mark changed in its grace period is not told"
    );
    assert!(
        digest.body.contains("&#60;i&#62;Pat&#60;/i&#62;"),
        "the HTML part escapes names: {}",
        digest.body
    );
    assert!(!digest.body.contains("<i>Pat</i> Home,</p>"));
    assert!(digest.header("message-id").ends_with("@hill.example.org>"));
    assert_eq!(
        digest.header("list-unsubscribe-post"),
        "List-Unsubscribe=One-Click"
    );
    let link = digest
        .header("list-unsubscribe")
        .trim_matches(|c| c == '<' || c == '>')
        .replace("http://rollcall.hill.example.org", &server.base);

    // 17:00: the office finds Ada was there after all: a correction to the same family.
    server
        .post(
            "/v1/sync/push",
            Some(&hill.device),
            push_body(&[mark(
                901,
                "sess-1",
                &hill.s1(),
                MarkStatus::Present,
                START + 9 * HOUR,
                Some("hill-t1"),
            )]),
        )
        .await
        .assert_ok();
    server.clock.advance_ms(HOUR);
    assert_eq!(notifier.plan().await.unwrap(), 1);
    notifier.deliver().await.unwrap();
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let correction = &mails[1];
    assert!(
        correction.header("subject").contains("correction"),
        "{correction:?}"
    );
    assert!(
        correction
            .body
            .contains("Ada was not absent in Maths at 08:00 after all"),
        "{}",
        correction.body
    );
    assert_ne!(correction.header("message-id"), digest.header("message-id"));
    assert!(to(&mails, "other@example.org").is_empty());

    // One click (RFC 8058), honoured at once: a later change tells them nothing.
    let reply = server
        .http
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let forged = link.replace("token=", "token=00");
    assert_eq!(
        server.http.post(&forged).send().await.unwrap().status(),
        400
    );
    let g = server
        .store
        .guardian("hill", &family)
        .await
        .unwrap()
        .unwrap();
    assert!(g.opted_out_at.is_some());
    server
        .post(
            "/v1/sync/push",
            Some(&hill.device),
            push_body(&[mark(
                902,
                "sess-2",
                &hill.s2(),
                MarkStatus::Absent,
                START + 10 * HOUR,
                Some("hill-t2"),
            )]),
        )
        .await
        .assert_ok();
    server.clock.advance_ms(HOUR);
    assert_eq!(notifier.plan().await.unwrap(), 0);
}

/// A notice to `to`, as the planner would enqueue it.
fn notice(school: &str, n: usize, to: &str, now: Millis) -> Notice {
    let id = uuid::Uuid::now_v7().to_string();
    let letter = Letter {
        message_id: format!("<{id}@hill.example.org>"),
        key: format!("test-{school}-{n}-{id}"),
        id,
        school_id: school.into(),
        kind: Kind::AdminDigest,
        recipient: to.into(),
        guardian_id: None,
        day: "2024-09-02".into(),
        subject: format!("Notice {n}"),
        text: format!("Notice number {n}."),
        html: format!("<p>Notice number {n}.</p>"),
        facts: String::new(),
        students: Vec::new(),
    };
    Notice::queued(letter, now)
}

fn unique_ids(mails: &[Mail]) -> HashSet<String> {
    mails
        .iter()
        .map(|m| m.header("message-id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_relay_down_for_a_while_gets_every_notice_once_when_it_is_back() {
    let server = Server::start().await;
    server.school("hill").await;
    let port = common::process::free_port();
    let notifier = notifier(&server, port);
    let now = server.clock.now();
    let notices: Vec<Notice> = (0..3)
        .map(|n| notice("hill", n, &format!("office{n}@example.org"), now))
        .collect();
    assert_eq!(server.store.enqueue_notices(&notices).await.unwrap(), 3);
    assert_eq!(server.store.enqueue_notices(&notices).await.unwrap(), 0);
    // Nothing listens: connection refused, the batch handed back for a minute.
    let d = notifier.deliver().await.unwrap();
    assert_eq!((d.claimed, d.sent, d.retried), (3, 0, 3));
    assert_eq!(
        notifier.deliver().await.unwrap().claimed,
        0,
        "not before a minute"
    );
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_on(port, dir.path(), &[], &[], None);
    server.clock.advance_ms(MINUTE);
    let d = notifier.deliver().await.unwrap();
    assert_eq!((d.claimed, d.sent), (3, 3));
    assert_eq!(notifier.deliver().await.unwrap().claimed, 0);
    let mails = sink.mails();
    assert_eq!(mails.len(), 3);
    assert_eq!(unique_ids(&mails).len(), 3);
}

#[tokio::test]
async fn a_busy_relay_is_retried_and_a_refused_address_fails_without_holding_the_queue() {
    let server = Server::start().await;
    server.school("hill").await;
    let sink = Sink::start(&["451"], &["bad@example.org"]);
    let notifier = notifier(&server, sink.port);
    let now = server.clock.now();
    let notices = vec![
        notice("hill", 0, "first@example.org", now),
        notice("hill", 1, "bad@example.org", now),
        notice("hill", 2, "third@example.org", now),
    ];
    server.store.enqueue_notices(&notices).await.unwrap();
    // 451 to the first: retried in a minute, the rest handed back.
    let d = notifier.deliver().await.unwrap();
    assert_eq!((d.sent, d.retried, d.failed), (0, 3, 0));
    server.clock.advance_ms(MINUTE);
    let d = notifier.deliver().await.unwrap();
    assert_eq!((d.sent, d.retried, d.failed), (2, 0, 1));
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    assert!(to(&mails, "bad@example.org").is_empty());
    let failed = server
        .store
        .notices(&NoticeQuery {
            school_id: "hill".into(),
            day: None,
            state: Some(State::Failed),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].letter.recipient, "bad@example.org");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("550"),
        "{:?}",
        failed[0].last_error
    );
    let first = server
        .store
        .notices(&NoticeQuery {
            school_id: "hill".into(),
            day: None,
            state: Some(State::Sent),
            limit: 10,
        })
        .await
        .unwrap();
    assert!(
        first.iter().any(|n| n.attempts == 2),
        "the 451 counted a try"
    );

    // Sent again (the notices page's button; tests/web.rs drives the page).
    let queued = server
        .store
        .resend_notice(
            "hill",
            &failed[0].letter.id,
            &sync_server::domain::notice::resend(now),
        )
        .await
        .unwrap();
    assert!(queued);
    assert_eq!(notifier.deliver().await.unwrap().failed, 1, "refused again");
}

fn mongo_uri() -> String {
    std::env::var("ROLLCALL_TEST_MONGODB_URI").expect(
        "ROLLCALL_TEST_MONGODB_URI is not set: run scripts/test, which starts a MongoDB-wire server",
    )
}

async fn wait_all_sent(store: &dyn Store, school: &str, n: u64, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = store.notice_counts(school).await.unwrap();
        let sent = counts
            .iter()
            .find(|(s, _)| *s == State::Sent)
            .map_or(0, |(_, n)| *n);
        if sent == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sent} of {n} sent after {secs} s: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_server_processes_on_one_mongodb_send_each_of_500_notices_once() {
    let database = format!("rollcall_notices_{}", uuid::Uuid::now_v7().simple());
    let store = sync_server::store::mongo::MongoStore::connect(&mongo_uri(), &database)
        .await
        .unwrap();
    let sink = Sink::start(&[], &[]);
    let http = common::http_client();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mongo = Some((mongo_uri(), database.clone()));
    let place_a = common::process::Place::new(dir_a.path(), mongo.clone());
    let place_b = common::process::Place::new(dir_b.path(), mongo);
    let config = sink.config("timeout_seconds = 5\nlease_seconds = 30\nmax_per_second = 1000");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as Millis;
    let notices: Vec<Notice> = (0..500)
        .map(|n| notice("two", n, &format!("parent{n}@example.org"), now))
        .collect();
    store.enqueue_notices(&notices).await.unwrap();
    let (mut a, _) = place_a.serve_with_config(&http, &config).await;
    let (mut b, _) = place_b.serve_with_config(&http, &config).await;
    wait_all_sent(&store, "two", 500, 120).await;
    a.kill().ok();
    b.kill().ok();
    a.wait().ok();
    b.wait().ok();
    let mails = sink.mails();
    assert_eq!(unique_ids(&mails).len(), 500);
    assert_eq!(mails.len(), 500, "no notice was sent twice");
}

#[tokio::test]
async fn a_sender_killed_mid_burst_loses_nothing_and_duplicates_at_most_one() {
    let database = format!("rollcall_notices_{}", uuid::Uuid::now_v7().simple());
    let store = sync_server::store::mongo::MongoStore::connect(&mongo_uri(), &database)
        .await
        .unwrap();
    let sink = Sink::start(&[], &[]);
    let http = common::http_client();
    let dir = tempfile::tempdir().unwrap();
    let place = common::process::Place::new(dir.path(), Some((mongo_uri(), database.clone())));
    let config = sink.config("timeout_seconds = 2\nlease_seconds = 12\nmax_per_second = 1000");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as Millis;
    let notices: Vec<Notice> = (0..300)
        .map(|n| notice("kill", n, &format!("parent{n}@example.org"), now))
        .collect();
    store.enqueue_notices(&notices).await.unwrap();
    let (mut first, _) = place.serve_with_config(&http, &config).await;
    sink.wait_for(60, 60).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().ok();
    let (mut second, _) = place.serve_with_config(&http, &config).await;
    wait_all_sent(&store, "kill", 300, 120).await;
    second.kill().ok();
    second.wait().ok();
    let mails = sink.mails();
    let ids = unique_ids(&mails);
    assert_eq!(ids.len(), 300, "every notice was delivered");
    assert!(
        mails.len() <= 301,
        "{} messages for 300 notices: more than one duplicate for one kill",
        mails.len()
    );
}

#[tokio::test]
async fn admins_get_an_alert_for_a_box_offline_in_lessons_and_a_daily_digest() {
    use shared_proto::sync::ScheduleSlot;
    use sync_server::domain::notice::GuardianTiming;
    let server = Server::start().await;
    let hill = server.school("hill").await;
    let sink = Sink::start(&[], &[]);
    let notifier = notifier(&server, sink.port);
    let mut settings = server.store.school_settings("hill").await.unwrap();
    settings.guardian_notices = GuardianTiming::Off;
    settings.admin_emails = vec!["office@hill.example.org".into()];
    server
        .store
        .set_school_settings("hill", &settings)
        .await
        .unwrap();
    let slot = |starts: &str, ends: &str| ScheduleSlot {
        weekday: 1,
        starts: starts.into(),
        ends: ends.into(),
        room: None,
    };
    let store = &server.store;
    store
        .set_schedule("hill", &hill.math(), &[slot("08:00", "08:45")])
        .await
        .unwrap();
    store
        .set_schedule("hill", &hill.art(), &[slot("09:00", "09:45")])
        .await
        .unwrap();
    // Maths registered at 08:00 with Ada absent; art never registered; the box then goes quiet.
    // Its report says its clock is three days behind (a holiday without network time).
    let mut body = push_body(&lesson(
        1,
        &hill.math(),
        START,
        &[(&hill.s1(), MarkStatus::Absent)],
    ));
    body["protocol"] = json!(2);
    body["report"] = json!({
        "app_version": "0.9.8",
        "outbox_waiting": 0,
        "clock_ms": server.clock.now() - 3 * 24 * HOUR,
    });
    server
        .post("/v1/sync/push", Some(&hill.device), body)
        .await
        .assert_ok();
    server.clock.advance_ms(5 * MINUTE);
    assert_eq!(
        notifier.plan().await.unwrap(),
        0,
        "the box was just heard from"
    );
    // 09:10: silent for 70 minutes while art is on: one alert, once.
    server.clock.advance_ms(65 * MINUTE);
    assert_eq!(notifier.plan().await.unwrap(), 1);
    assert_eq!(notifier.plan().await.unwrap(), 0);
    // 10:00: lessons are over, no alert would be sent now; 16:30: the digest.
    server.clock.advance_ms(50 * MINUTE);
    assert_eq!(notifier.plan().await.unwrap(), 0);
    server.clock.advance_ms(6 * HOUR + 30 * MINUTE);
    assert_eq!(notifier.plan().await.unwrap(), 1);
    assert_eq!(notifier.plan().await.unwrap(), 0, "one digest a day");
    assert_eq!(notifier.deliver().await.unwrap().sent, 2);
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    assert!(
        mails
            .iter()
            .all(|m| m.header("to") == "office@hill.example.org")
    );
    assert!(
        mails
            .iter()
            .all(|m| m.header("list-unsubscribe").is_empty())
    );
    let alert = &mails[0];
    assert!(alert.header("subject").contains("is offline"), "{alert:?}");
    assert!(
        alert.body.contains("has not been heard from since 08:00"),
        "{}",
        alert.body
    );
    let digest = &mails[1];
    assert!(
        digest.header("subject").contains("attendance digest"),
        "{digest:?}"
    );
    for line in [
        "Lessons not registered: 1",
        "- Art, 09:00-09:45",
        "- Maths: 1",
        "Erasures not yet purged by every box: 0",
        "Notices that failed today: 0",
    ] {
        assert!(digest.body.contains(line), "{line:?} in {}", digest.body);
    }
    assert!(
        digest.body.contains(", last heard 08:00"),
        "{}",
        digest.body
    );
    // The box's clock, by the rule its own screen applies.
    assert!(
        digest.body.contains("Boxes whose clock is wrong at their last push (their marks carry the wrong time; set the box's clock from the network: timedatectl set-ntp true):")
            && digest.body.contains(", clock 3 days behind the server's"),
        "{}",
        digest.body
    );
    assert!(!alert.body.contains("clock"), "{}", alert.body);
}
