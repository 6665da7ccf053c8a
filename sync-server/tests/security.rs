//! What a field probe of the server broke (issue 13), each shown fixed: guessing passwords and
//! codes in parallel, memory under a flood of logins, half-sent and idle connections, oversized
//! and stalled bodies, unbounded metrics, a session id shared across schools, event times far in
//! the future, and error answers that said too much or were not JSON.

mod common;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use shared_proto::sync::{Event, EventBody, MarkSource, MarkStatus};
use sync_server::Config;
use sync_server::api::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::process::{Place, client_from, login_status, memory_kib};
use common::{DISTRICT_ADMIN, PASSWORD, Reply, START, Server, event_id, push_body};

async fn login(server: &Server, username: impl AsRef<str>, password: String) -> Reply {
    let username = username.as_ref();
    server
        .post(
            "/v1/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await
}

fn count(replies: &[Reply], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// 60 wrong passwords at once used to all be checked (the limit was checked before argon2 and
/// the failure recorded after), and the right one in the same burst was let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_get_no_more_tries_than_the_limit() {
    let server = Server::start().await;
    let guesses =
        join_all((0..60).map(|n| login(&server, DISTRICT_ADMIN, format!("guess {n:04}"))));
    let right = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        login(&server, DISTRICT_ADMIN, PASSWORD.to_owned()).await
    };
    let (guesses, right) = tokio::join!(guesses, right);
    let checked = count(&guesses, 401);
    assert!(
        checked <= Limits::default().login_failures_per_minute,
        "{checked} guesses were checked"
    );
    assert_eq!(count(&guesses, 429), 60 - checked);
    right.assert_error(429, "rate_limited");
    assert!(right.headers.contains_key("retry-after"));
}

/// 200 logins from one address at once: at most the address's 20 are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_gets_its_limit_and_no_more() {
    let server = Server::start().await;
    let replies =
        join_all((0..200).map(|n| login(&server, format!("user{n}"), "x".repeat(12)))).await;
    let checked = count(&replies, 401);
    assert!(
        checked <= Limits::default().address_failures_per_minute,
        "{checked} logins were checked"
    );
    assert_eq!(count(&replies, 429), 200 - checked);
}

/// Provisioning codes had the same check-then-record race, and shared the address's bucket
/// with logins: a school's mistyped passwords blocked its boxes, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_guesses_are_limited_in_a_bucket_of_their_own() {
    let server = Server::start().await;
    let admin = server.district_admin().await;
    server
        .post(
            "/v1/schools",
            Some(&admin),
            json!({"id": "north", "name": "North"}),
        )
        .await
        .assert_ok();
    let guesses = join_all((0..40).map(|n| {
        let server = &server;
        async move { server.redeem(&format!("WRNG-{n:04}-CODE")).await }
    }))
    .await;
    let checked = count(&guesses, 400);
    assert!(
        checked <= Limits::default().code_failures_per_minute,
        "{checked} codes were checked"
    );
    assert_eq!(count(&guesses, 429), 40 - checked);
    // Logins from the same address still work...
    server.district_admin().await;
    // ...and 20 failed logins do not stop a right code.
    join_all((0..20).map(|n| login(&server, format!("user{n}"), "x".repeat(12)))).await;
    let code = server.provisioning_code(&admin, "north", 60).await;
    // The code bucket is still full from the guesses: the same answer a box would get, 429,
    // until the minute passes.
    server.redeem(&code).await.assert_error(429, "rate_limited");
    server.clock.advance_ms(61_000);
    server.redeem(&code).await.assert_ok();
}

/// Anyone could lock any account by failing five logins as it. Now the lock is per address;
/// a flood from many addresses closes the account to new addresses only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_elsewhere_does_not_lock_the_owner_out() {
    let server = Server::start().await;
    let base = &server.base;
    let school = client_from("127.0.0.1");
    assert_eq!(
        login_status(&school, base, DISTRICT_ADMIN, PASSWORD).await,
        200
    );
    for n in 2..42 {
        let attacker = client_from(&format!("127.0.0.{n}"));
        let status = login_status(&attacker, base, DISTRICT_ADMIN, "not the password").await;
        assert!(status == 401 || status == 429, "{status}");
    }
    let stranger = client_from("127.0.0.99");
    assert_eq!(
        login_status(&stranger, base, DISTRICT_ADMIN, PASSWORD).await,
        429,
        "a new address is held back while the account is under attack"
    );
    assert_eq!(
        login_status(&school, base, DISTRICT_ADMIN, PASSWORD).await,
        200
    );
}

/// 250 concurrent unauthenticated logins took the server from 10 MiB to 4.5 GiB. Now the
/// password checks run on a few workers with reused memory; the excess is told to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_bounded_under_250_concurrent_logins() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(dir.path(), None);
    let http = common::http_client();
    let (mut server, base) = place.serve(&http).await;
    let pid = server.id();
    // Warm up: one login, so the first worker's memory is counted in the baseline.
    login_status(&http, &base, "nobody", "warm up please").await;
    let (before_kib, _) = memory_kib(pid);
    let clients: Vec<reqwest::Client> = (0..250)
        .map(|n| client_from(&format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)))
        .collect();
    let started = Instant::now();
    let answers = join_all(clients.iter().enumerate().map(|(n, client)| {
        let base = base.clone();
        async move {
            let response = client
                .post(format!("{base}/v1/auth/login"))
                .json(&json!({"username": format!("user{n}"), "password": "wrong password"}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.headers().contains_key("retry-after"),
            )
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let (after_kib, peak_kib) = memory_kib(pid);
    server.kill().unwrap();
    server.wait().unwrap();
    let refused = answers.iter().filter(|(status, _)| *status == 401).count();
    let busy = answers
        .iter()
        .filter(|&&(status, retry)| status == 503 && retry)
        .count();
    eprintln!(
        "250 logins in {:.2} s: {refused} checked, {busy} told to retry; RSS {} -> {} MiB, peak {} MiB",
        elapsed.as_secs_f64(),
        before_kib / 1024,
        after_kib / 1024,
        peak_kib / 1024
    );
    assert_eq!(refused + busy, 250, "{answers:?}");
    assert!(
        peak_kib.saturating_sub(before_kib) <= 100 * 1024,
        "RSS grew from {before_kib} KiB to a peak of {peak_kib} KiB"
    );
}

/// Reads from `stream` until the server closes it or `limit` passes; the text read and when
/// the close came.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&text).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), None),
        }
    }
}

/// Writes `bytes` to a new connection to `server` as they are (a request cut anywhere), then
/// reads as `read_until_closed` does.
async fn send_raw(server: &Server, bytes: &[u8], limit: Duration) -> (String, Option<Duration>) {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream, limit).await
}

fn short_timeouts() -> Limits {
    Limits {
        header_timeout_seconds: 1,
        body_timeout_seconds: 1,
        ..Limits::default()
    }
}

#[test]
fn timeouts_default_to_at_most_30_seconds() {
    // What a server started without a configuration file gets.
    let limits = Limits::from(&Config::defaults());
    assert!(limits.header_timeout_seconds <= 30);
    assert!(limits.body_timeout_seconds <= 30);
}

/// A request whose headers never end used to hold its socket for ever.
#[tokio::test]
async fn a_half_sent_request_is_dropped_after_the_header_timeout() {
    let server = Server::start_with(short_timeouts()).await;
    let (_, closed) = send_raw(
        &server,
        b"POST /v1/auth/login HTTP/1.1\r\nHost: rollcall\r\nContent-Ty",
        Duration::from_secs(10),
    )
    .await;
    let closed = closed.expect("the server kept a half-sent request open");
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
}

/// An idle keep-alive connection is closed too.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start_with(short_timeouts()).await;
    let (text, closed) = send_raw(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: rollcall\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let closed = closed.expect("the server kept an idle connection open");
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
}

/// A declared length far over the limit is refused before the body is read.
#[tokio::test]
async fn an_oversized_content_length_is_refused_at_once() {
    let server = Server::start().await;
    let (text, closed) = send_raw(
        &server,
        b"POST /v1/auth/login HTTP/1.1\r\nHost: rollcall\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"payload_too_large\""), "{text}");
    assert!(closed.is_some(), "the connection is not kept for the rest");
}

/// A body that stops arriving is answered 408 after the body timeout.
#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let server = Server::start_with(short_timeouts()).await;
    let (text, closed) = send_raw(
        &server,
        b"POST /v1/auth/login HTTP/1.1\r\nHost: rollcall\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("stopped arriving"), "{text}");
    assert!(closed.is_some_and(|after| after < Duration::from_secs(5)));
}

/// Too many headers get the same JSON error shape as every other refusal.
#[tokio::test]
async fn too_many_headers_get_a_json_431() {
    let server = Server::start().await;
    let mut request = server.request(reqwest::Method::GET, "/healthz", None);
    for n in 0..150 {
        request = request.header(format!("x-filler-{n}"), "y");
    }
    let reply = server.send(request).await;
    reply.assert_error(431, "invalid_request");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("headers of")
    );
}

/// Invented methods made one series each: 20,000 of them made the page 33.6 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invented_methods_do_not_grow_the_metrics() {
    let server = Server::start().await;
    for chunk in (0..2000).collect::<Vec<_>>().chunks(200) {
        join_all(chunk.iter().map(|n| {
            let method = reqwest::Method::from_bytes(format!("PROBE{n}").as_bytes()).unwrap();
            server.send(server.request(method, "/healthz", None))
        }))
        .await;
    }
    let text = server.metrics().await;
    assert!(!text.contains("PROBE"), "a client's method became a label");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.len() < 20_000, "{} bytes", text.len());
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let token = "scrape-me-with-this-long-token";
    let server = Server::start_with(Limits {
        metrics_token: Some(token.to_owned()),
        ..Limits::default()
    })
    .await;
    server
        .get("/metrics", None)
        .await
        .assert_error(401, "unauthorized");
    server
        .get("/metrics", Some("a-wrong-token-of-some-length"))
        .await
        .assert_error(401, "unauthorized");
    let reply = server.get("/metrics", Some(token)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("rollcall_http_requests_total"));
}

/// `metrics_listen` serves `/metrics` on its own address, and only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_move_to_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(dir.path(), None);
    let http = common::http_client();
    let metrics_port = common::process::free_port();
    let (mut server, base) = place
        .serve_with_config(
            &http,
            &format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\n"),
        )
        .await;
    let on_api = http.get(format!("{base}/metrics")).send().await.unwrap();
    let on_own = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(on_api.status().as_u16(), 404);
    assert_eq!(on_own.status().as_u16(), 200);
    assert!(
        on_own
            .text()
            .await
            .unwrap()
            .contains("rollcall_http_requests_total")
    );
}

fn mark(id: u64, session: &str, student: &str, decided_at: i64) -> Event {
    Event {
        id: event_id(id),
        at: decided_at,
        body: EventBody::MarkSet {
            session: session.to_owned(),
            student: student.to_owned(),
            status: MarkStatus::Present,
            source: MarkSource::Machine,
            score: Some(0.9),
            decided_at,
            by: None,
        },
    }
}

fn attended(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row["student_id"].as_str().unwrap())
        .collect()
}

/// A mark that arrives before its session waits for it; a box of another school that opened a
/// session of the same id used to adopt that mark into its own school's attendance.
#[tokio::test]
async fn a_pending_mark_never_joins_another_schools_session() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let south = server.school("south").await;
    let reply = server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(&[mark(1, "shared-session", &north.s1(), START)]),
        )
        .await;
    assert_eq!(reply.assert_ok()["rejected"], json!([]));
    let opened = Event {
        id: event_id(2),
        at: START,
        body: EventBody::SessionOpened {
            session: "shared-session".into(),
            section: south.math(),
            started_at: START,
        },
    };
    let reply = server
        .post("/v1/sync/push", Some(&south.device), push_body(&[opened]))
        .await;
    assert_eq!(reply.assert_ok()["rejected"], json!([]));

    let day = "from=2024-09-02&to=2024-09-02";
    let south_rows = server
        .get(
            &format!("/v1/schools/south/attendance?{day}"),
            Some(&south.admin),
        )
        .await;
    assert!(
        !attended(south_rows.assert_ok()).contains(&north.s1().as_str()),
        "{}",
        south_rows.text
    );
    let north_rows = server
        .get(
            &format!("/v1/schools/north/attendance?{day}"),
            Some(&north.admin),
        )
        .await;
    assert_eq!(attended(north_rows.assert_ok()), vec![north.s1().as_str()]);
}

/// A mark decided "in 9999" used to beat every later correction for ever.
#[tokio::test]
async fn event_times_far_ahead_are_refused_and_the_past_is_fine() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let day_ms = 24 * 60 * 60 * 1000;
    let far = mark(1, "s-far", &north.s1(), START + 30 * day_ms);
    let past = mark(2, "s-past", &north.s1(), START - 30 * day_ms);
    let reply = server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(&[far, past]),
        )
        .await;
    let body = reply.assert_ok();
    assert_eq!(body["acked"], json!([event_id(2)]), "{body}");
    let rejected = &body["rejected"][0];
    assert_eq!(rejected["id"], event_id(1));
    assert_eq!(rejected["code"], "invalid_event");
    let reason = rejected["reason"].as_str().unwrap();
    assert!(
        reason.contains("30 days ahead of the server's clock")
            && reason.contains("set the box's clock"),
        "{reason}"
    );
}

/// Ids are unique across the district, so an id another school holds is refused; the answer
/// does not say whose it is.
#[tokio::test]
async fn a_taken_id_does_not_say_whose_it_is() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.school("south").await;
    let reply = server
        .post(
            "/v1/schools/north/students",
            Some(&north.admin),
            json!({"id": "south-s1", "given_name": "Ada", "family_name": "Byron"}),
        )
        .await;
    reply.assert_error(409, "conflict");
    let message = reply.body["message"].as_str().unwrap();
    assert!(!message.contains("school"), "{message}");
}
