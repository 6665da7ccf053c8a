//! The admins' web pages over HTTP, on a real server over the embedded store: sign-in and its
//! cookie, CSRF on every form, who sees which page, and hostile names shown as text.

mod common;

use common::{DISTRICT_ADMIN, PASSWORD, Server, lesson_events, push_body};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use shared_proto::sync::{Event, EventBody, MarkStatus};
use sync_server::api::Clock;
use sync_server::store::Store;

/// A browser-like client on one server: keeps its cookies by hand and follows no redirect, so a
/// test sees each answer.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// Fails the test, showing the page, unless it holds `text`.
    #[track_caller]
    fn shows(&self, text: &str) {
        assert!(self.html.contains(text), "no {text:?} in: {}", self.html);
    }

    /// Fails the test, showing the page, if it holds `text`.
    #[track_caller]
    fn lacks(&self, text: &str) {
        assert!(!self.html.contains(text), "{text:?} in: {}", self.html);
    }
}

impl Browser {
    fn new(server: &Server) -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        // A page's refusal is a page a person reads, never the API's JSON error.
        if response.status().is_client_error() || response.status().is_server_error() {
            let kind = headers.get(reqwest::header::CONTENT_TYPE);
            assert!(
                kind.is_some_and(|k| k.to_str().unwrap().starts_with("text/html")),
                "{} answered {} as {kind:?}",
                response.url(),
                response.status()
            );
        }
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !set.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        Page {
            status: response.status().as_u16(),
            headers,
            html: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    /// Opens the sign-in page and signs in; returns the answer to the form.
    async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200, "{}", page.html);
        let csrf = hidden_csrf(&page.html);
        self.post(
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
        .await
    }
}

/// The value of the page's first hidden `csrf` input.
fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_the_session() {
    let server = Server::start().await;
    let mut browser = Browser::new(&server);

    let home = browser.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.headers[LOCATION], "/login");

    let login = browser.get("/login").await;
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        login
            .html
            .contains("<label for=\"username\">Username</label>")
    );

    let wrong = browser.sign_in(DISTRICT_ADMIN, "not the password").await;
    assert_eq!(wrong.status, 401);
    wrong.shows("Wrong username or password.");
    assert!(!browser.cookies.iter().any(|(k, _)| k == "rollcall_session"));

    let signed_in = browser.sign_in(DISTRICT_ADMIN, PASSWORD).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.html);
    let set: Vec<&str> = signed_in
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("rollcall_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP here: {session}");

    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "{}", home.html);
    home.shows("district admin");
    let csrf = hidden_csrf(&home.html);

    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (out.status, out.headers[LOCATION].to_str().unwrap()),
        (303, "/login")
    );
    // The old cookie is worth nothing now, even replayed.
    let stale = Browser {
        cookies: vec![(
            "rollcall_session".into(),
            session.split(['=', ';']).nth(1).unwrap().into(),
        )],
        ..Browser::new(&server)
    }
    .get("/")
    .await;
    assert_eq!(stale.status, 303);
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused() {
    let server = Server::start().await;
    let mut browser = Browser::new(&server);
    // The sign-in form: its token must match the cookie the form page set.
    browser.get("/login").await;
    let forged = browser
        .post(
            "/login",
            &[
                ("username", DISTRICT_ADMIN),
                ("password", PASSWORD),
                ("csrf", "guess"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.html);
    assert!(forged.html.contains("open the sign-in page again"));

    assert_eq!(browser.sign_in(DISTRICT_ADMIN, PASSWORD).await.status, 303);
    let refused = browser
        .post("/logout", &[("csrf", "0".repeat(64).as_str())])
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still signed in");
}

#[tokio::test]
async fn each_role_sees_its_own_sections_and_rolls() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.school("south").await;
    let pushed = server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(&lesson_events(&north.math(), &north.s1(), 1)),
        )
        .await;
    pushed.assert_ok();

    // The district admin picks a school, then sees its sections and the roll.
    let mut district = Browser::new(&server);
    district.sign_in(DISTRICT_ADMIN, PASSWORD).await;
    let schools = district.get("/").await;
    schools.shows("href=\"/?school=north\"");
    let north_page = district.get("/sections?school=north").await;
    assert_eq!(north_page.status, 200);
    assert!(
        north_page
            .html
            .contains("/sections/north-math?school=north"),
        "{}",
        north_page.html
    );
    assert!(
        north_page.html.contains("Not taken"),
        "art has no roll: {}",
        north_page.html
    );

    // The school admin: their school only.
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let roll = admin.get("/sections/north-math").await;
    assert_eq!(roll.status, 200, "{}", roll.html);
    assert!(
        roll.html.contains("mark-present") && roll.html.contains("machine"),
        "{}",
        roll.html
    );
    assert!(roll.html.contains("0.80"), "the score: {}", roll.html);
    assert_eq!(admin.get("/?school=south").await.status, 403);
    assert_eq!(
        admin.get("/sections/south-math?school=south").await.status,
        403
    );

    // The teacher: own section (maths) only.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let home = teacher.get("/").await;
    assert!(
        home.html.contains("north-math") && !home.html.contains("north-art"),
        "{}",
        home.html
    );
    assert_eq!(teacher.get("/sections/north-math").await.status, 200);
    let art = teacher.get("/sections/north-art").await;
    assert_eq!(art.status, 403);
    art.shows("your own sections only");
}

#[tokio::test]
async fn hostile_names_are_shown_as_text() {
    let server = Server::start().await;
    let district = server.district_admin().await;
    server
        .post(
            "/v1/schools",
            Some(&district),
            json!({"id": "evil", "name": "<script>alert(1)</script> & Co"}),
        )
        .await
        .assert_ok();
    let mut browser = Browser::new(&server);
    browser.sign_in(DISTRICT_ADMIN, PASSWORD).await;
    let page = browser.get("/").await;
    page.lacks("<script>alert(1)");
    assert!(
        page.html
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; Co"),
        "{}",
        page.html
    );
    let typed = browser.sign_in("<b>who</b>", "x").await;
    assert!(
        !typed.html.contains("<b>who</b>") && typed.html.contains("&#60;b&#62;who"),
        "{}",
        typed.html
    );
}

#[tokio::test]
async fn reports_summarise_per_section_and_export_rfc_4180_csv() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    // The fixture's lessons are on 2024-09-02.
    let range = "from=2024-09-01&to=2024-09-30";

    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get(&format!("/reports?{range}")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    page.shows("<label for=\"from\">From</label>");
    assert!(
        page.html.contains("100.0"),
        "one present of one: {}",
        page.html
    );
    assert_eq!(
        page.html
            .matches("data-label=\"Attendance %\">100.0</td>")
            .count(),
        2,
        "maths and art, one present of one each: {}",
        page.html
    );
    // A whole school lists only its chronic absentees: none here.
    let students = &page.html[page.html.find("id=\"students\"").expect("students")..];
    assert!(
        students.contains("Students at or over the chronic-absence threshold")
            && students.contains("<p>None.</p>"),
        "{students}"
    );
    // One section picked: it stays picked among all the choices, and only it is summarised.
    let one = admin
        .get(&format!("/reports?{range}&section=north-math"))
        .await;
    let students = &one.html[one.html.find("id=\"students\"").expect("students")..];
    assert!(
        students.contains("/students/north-s1") && students.contains("Ada Lovelace"),
        "every student of the section: {students}"
    );
    assert!(
        one.html
            .contains("<option value=\"north-math\" selected>Maths</option>")
            && one
                .html
                .contains("<option value=\"north-art\">Art</option>"),
        "{}",
        one.html
    );
    one.lacks("<th scope=\"row\">Art</th>");

    let csv = admin.get(&format!("/reports/attendance.csv?{range}")).await;
    assert_eq!(csv.status, 200, "{}", csv.html);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers["content-disposition"],
        "attachment; filename=\"attendance_north_2024-09-01_2024-09-30.csv\""
    );
    let lines: Vec<&str> = csv.html.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "date,start,section_id,section,student_id,student,code,status,source,decided_by,session_id,start_utc"
    );
    assert_eq!(lines.len(), 3, "a header and two marks: {lines:?}");
    assert!(
        lines[1..].iter().any(
            |l| l.starts_with("2024-09-02,08:00,north-math,Maths,north-s1,")
                && l.contains(",P,present,machine,")
        ),
        "{lines:?}"
    );

    let summary = admin.get(&format!("/reports/summary.csv?{range}")).await;
    let lines: Vec<&str> = summary.html.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "section_id,section,sessions,present,absent,late,excused,review,attendance_percent"
    );
    assert!(
        lines.contains(&"north-math,Maths,1,1,0,0,0,0,100.0"),
        "{lines:?}"
    );

    // A teacher reports on their own section only.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let theirs = teacher
        .get(&format!("/reports/attendance.csv?{range}"))
        .await;
    let lines: Vec<&str> = theirs.html.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2, "maths only: {lines:?}");
    assert!(lines[1].contains(",north-math,"), "{lines:?}");
    let art = teacher
        .get(&format!(
            "/reports/attendance.csv?{range}&section=north-art"
        ))
        .await;
    assert_eq!(art.status, 403);
    // And a bad date is a page that says so.
    let bad = admin.get("/reports?from=2024-13-01").await;
    assert_eq!(bad.status, 400);
    bad.shows("is not a date like");
}

#[tokio::test]
async fn admins_make_a_code_a_box_can_use_and_revoke_a_box_after_confirming() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;

    let page = admin.get("/devices").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("Revoke…"),
        "the fixture's box: {}",
        page.html
    );
    let csrf = hidden_csrf(&page.html);

    let made = admin
        .post(
            "/devices/codes",
            &[
                ("csrf", &csrf),
                ("device_name", "Room 12"),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.html);
    let marker = "class=\"the-code\">";
    let at = made.html.find(marker).expect("the code shown") + marker.len();
    let code = made.html[at..].split('<').next().unwrap().to_owned();
    assert_eq!(code.len(), 14, "{code}");
    let redeemed = server.redeem(&code).await;
    let device_id = redeemed.assert_ok()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = redeemed.body["token"].as_str().unwrap().to_owned();
    let listed = admin.get("/devices").await;
    // The box named itself ("room 12", `Server::redeem`): a name the box gives wins the code's.
    listed.shows("room 12");
    assert!(!listed.html.contains(&code), "a code is shown once");

    // Revoking asks first, needs the form's token, then the box is refused.
    let confirm = admin.get(&format!("/devices/{device_id}/revoke")).await;
    assert_eq!(confirm.status, 200);
    confirm.shows("Revoke room 12?");
    let forged = admin
        .post(&format!("/devices/{device_id}/revoke"), &[("csrf", "x")])
        .await;
    assert_eq!(forged.status, 403);
    let done = admin
        .post(
            &format!("/devices/{device_id}/revoke"),
            &[("csrf", &hidden_csrf(&confirm.html))],
        )
        .await;
    assert_eq!(done.status, 303);
    let location = done.headers[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/devices?school=north&revoked="),
        "{location}"
    );
    let after = admin.get(&location).await;
    after.shows("Revoked room 12");
    server
        .get("/v1/sync/pull", Some(&token))
        .await
        .assert_error(401, "token_revoked");
    // The fixture's own box still works.
    server
        .get("/v1/sync/pull", Some(&north.device))
        .await
        .assert_ok();

    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    assert_eq!(teacher.get("/devices").await.status, 403);
    assert!(!teacher.get("/").await.html.contains("/devices"));
}

/// A box back from a holiday with last term's time: its marks reach the server dated days ago,
/// which the server cannot refuse (an offline box pushes old events), so the devices page says
/// which box it is and what to do, by the clock rule the box applies too. A push without a
/// report (protocol 1) leaves what the last report said; a report without a clock clears it.
#[tokio::test]
async fn the_devices_page_names_a_box_whose_clock_is_off() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let report = |clock_ms: Option<i64>| {
        let mut report = json!({"app_version": "0.9.8", "outbox_waiting": 0});
        if let Some(at) = clock_ms {
            report["clock_ms"] = json!(at);
        }
        json!({"protocol": 2, "events": [], "report": report})
    };
    let now = server.clock.now();
    for (clock_ms, shown) in [
        (
            Some(now - 3 * 86_400_000),
            Some("<strong class=\"warn\">Clock 3 days behind the server"),
        ),
        (
            Some(now + 20_000),
            Some("<span class=\"muted\">Clock 20 s ahead of the server"),
        ),
        (Some(now + 2_000), None),
    ] {
        server
            .post("/v1/sync/push", Some(&north.device), report(clock_ms))
            .await
            .assert_ok();
        let page = admin.get("/devices").await;
        match shown {
            Some(shown) => page.shows(shown),
            None => page.lacks("Clock "),
        }
        if clock_ms == Some(now - 3 * 86_400_000) {
            page.shows("at its last push: its marks carry the wrong time; set the box");
        } else {
            page.lacks("its marks carry the wrong time");
        }
    }
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            report(Some(now - 2 * 3_600_000)),
        )
        .await
        .assert_ok();
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            json!({"protocol": 1, "events": []}),
        )
        .await
        .assert_ok();
    admin
        .get("/devices")
        .await
        .shows("<strong class=\"warn\">Clock 2 h behind the server");
    server
        .post("/v1/sync/push", Some(&north.device), report(None))
        .await
        .assert_ok();
    admin.get("/devices").await.lacks("Clock ");
}

#[tokio::test]
async fn a_student_page_shows_the_rate_and_admins_record_consent_there() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    let page_of = |student: &str| format!("/students/{student}?from=2024-09-01&to=2024-09-30");

    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let roll = admin.get("/sections/north-math").await;
    assert!(
        roll.html
            .contains("href=\"/students/north-s1?school=north\""),
        "{}",
        roll.html
    );
    let page = admin.get(&page_of("north-s1")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html
            .contains("Attended 100.0 % of decided lessons; missed 0.0 %"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("Chronically absent"));
    page.shows("Now: <strong>granted</strong>");

    let csrf = hidden_csrf(&page.html);
    let forged = admin
        .post(
            "/students/north-s1/consent",
            &[("csrf", "x"), ("consent", "withdrawn")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let done = admin
        .post(
            "/students/north-s1/consent",
            &[
                ("csrf", &csrf),
                ("consent", "withdrawn"),
                ("by", "parent letter 12"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    assert_eq!(done.headers[LOCATION], "/students/north-s1?school=north");
    let after = admin.get(&page_of("north-s1")).await;
    assert!(
        after
            .html
            .contains("Now: <strong>withdrawn</strong>, recorded from parent letter 12"),
        "{}",
        after.html
    );
    // The same rule as the API's: the boxes are told to purge.
    let feed = server.store.pull("north", 0, 1000).await.unwrap();
    assert!(feed.changes.iter().any(|e| matches!(
        &e.change,
        sync_server::domain::feed::Change::Student { id, consent: shared_proto::sync::Consent::Withdrawn, .. }
            if id == "north-s1"
    )));

    // Left empty, "given by" is the admin who records it (the API refuses an empty one).
    let again = admin
        .post(
            "/students/north-s1/consent",
            &[("csrf", &csrf), ("consent", "granted"), ("by", "")],
        )
        .await;
    assert_eq!(again.status, 303, "{}", again.html);
    let granted = admin.get(&page_of("north-s1")).await;
    assert!(
        granted
            .html
            .contains("Now: <strong>granted</strong>, recorded from north-admin"),
        "{}",
        granted.html
    );

    // A teacher: their own section's students, without the consent form.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let theirs = teacher.get(&page_of("north-s1")).await;
    assert_eq!(theirs.status, 200, "{}", theirs.html);
    assert!(!theirs.html.contains("consent-title"));
    assert_eq!(teacher.get(&page_of("north-s2")).await.status, 403);
    let refused = teacher
        .post(
            "/students/north-s1/consent",
            &[("csrf", &hidden_csrf(&theirs.html)), ("consent", "granted")],
        )
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn admins_create_accounts_and_a_new_password_signs_the_user_out() {
    let server = Server::start().await;
    server.school("north").await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get("/users").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("north-teacher") && page.html.contains("north-t1"),
        "{}",
        page.html
    );
    let csrf = hidden_csrf(&page.html);

    // A teacher needs their roster id: refused with why, the name kept.
    let refused = admin
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("username", "ms.lee"),
                ("password", "long enough pw"),
                ("role", "teacher"),
                ("teacher_id", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, 200);
    refused.shows("a teacher needs teacher_id");
    refused.shows("value=\"ms.lee\"");
    let created = admin
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("username", "ms.lee"),
                ("password", "long enough pw"),
                ("role", "teacher"),
                ("teacher_id", "north-t1"),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.html);
    let listed = admin.get(created.headers[LOCATION].to_str().unwrap()).await;
    listed.shows("Saved: account ms.lee created.");

    let mut lee = Browser::new(&server);
    assert_eq!(lee.sign_in("ms.lee", "long enough pw").await.status, 303);
    assert_eq!(lee.get("/").await.status, 200);
    assert_eq!(lee.get("/users").await.status, 403);

    // A new password: too short is refused; then the old sessions end and the new one works.
    let at = listed.html.find("ms.lee").unwrap();
    let form_at = listed.html[at..].find("action=\"/users/").unwrap() + at + 15;
    let user_id = listed.html[form_at..].split('/').next().unwrap().to_owned();
    let short = admin
        .post(
            &format!("/users/{user_id}/password"),
            &[("csrf", &csrf), ("password", "short")],
        )
        .await;
    short.shows("(for ms.lee)");
    let forged = admin
        .post(
            &format!("/users/{user_id}/password"),
            &[("csrf", "x"), ("password", "another long one")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let reset = admin
        .post(
            &format!("/users/{user_id}/password"),
            &[("csrf", &csrf), ("password", "another long one")],
        )
        .await;
    assert_eq!(reset.status, 303, "{}", reset.html);
    assert_eq!(lee.get("/").await.status, 303, "signed out everywhere");
    assert_eq!(lee.sign_in("ms.lee", "long enough pw").await.status, 401);
    assert_eq!(lee.sign_in("ms.lee", "another long one").await.status, 303);
}

#[tokio::test]
async fn the_district_admin_creates_a_school_from_the_schools_page() {
    let server = Server::start().await;
    server.school("north").await;
    let mut district = Browser::new(&server);
    district.sign_in(DISTRICT_ADMIN, PASSWORD).await;
    let schools = district.get("/").await;
    schools.shows("action=\"/schools\"");
    let csrf = hidden_csrf(&schools.html);

    // Refused with why, what was typed kept: an id with a space, then an id taken.
    let bad = district
        .post(
            "/schools",
            &[("csrf", &csrf), ("id", "west high"), ("name", "West High")],
        )
        .await;
    assert_eq!(bad.status, 200, "{}", bad.html);
    bad.shows("role=\"alert\"");
    bad.shows("school id");
    bad.shows("value=\"West High\"");
    let taken = district
        .post(
            "/schools",
            &[("csrf", &csrf), ("id", "north"), ("name", "Another North")],
        )
        .await;
    assert_eq!(taken.status, 200, "{}", taken.html);
    taken.shows("school north already exists");
    taken.shows("value=\"Another North\"");

    // Created: its settings page, with what to do next; the list shows it.
    let created = district
        .post(
            "/schools",
            &[("csrf", &csrf), ("id", " west "), ("name", " West High ")],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.html);
    let location = created.headers[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, "/settings?school=west&created=1");
    let settings = district.get(&location).await;
    assert_eq!(settings.status, 200, "{}", settings.html);
    assert!(
        settings.html.contains("School created.")
            && settings.html.contains("href=\"/users?school=west\""),
        "{}",
        settings.html
    );
    let school = server.store.school("west").await.unwrap().unwrap();
    assert_eq!(school.name, "West High");
    let listed = district.get("/").await;
    listed.shows("href=\"/?school=west\"");

    // Without the form's token, or by a school's admin: refused, nothing created.
    let forged = district
        .post(
            "/schools",
            &[("csrf", "guess"), ("id", "east"), ("name", "East")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.html);
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let own = admin.get("/").await;
    own.lacks("action=\"/schools\"");
    let admin_csrf = hidden_csrf(&own.html);
    let refused = admin
        .post(
            "/schools",
            &[("csrf", &admin_csrf), ("id", "east"), ("name", "East")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    assert!(
        refused
            .html
            .contains("only a district admin creates schools"),
        "{}",
        refused.html
    );
    assert!(server.store.school("east").await.unwrap().is_none());
}

#[tokio::test]
async fn erasing_a_student_asks_first_then_tells_every_box() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let confirm = admin.get("/students/north-s1/erase").await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    confirm.shows("It cannot be undone");
    let forged = admin
        .post("/students/north-s1/erase", &[("csrf", "x")])
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        admin.get("/students/north-s1").await.status,
        200,
        "still there"
    );

    let done = admin
        .post(
            "/students/north-s1/erase",
            &[("csrf", &hidden_csrf(&confirm.html))],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    let erasure_page = done.headers[LOCATION].to_str().unwrap().to_owned();
    assert!(
        erasure_page.starts_with("/erasures/north-s1"),
        "{erasure_page}"
    );
    let erasure = admin.get(&erasure_page).await;
    erasure.shows("The student is erased");
    erasure.shows("Not purged yet");
    assert_eq!(admin.get("/students/north-s1").await.status, 404);
    let feed = server.store.pull("north", 0, 1000).await.unwrap();
    assert!(feed.changes.iter().any(|e| matches!(
        &e.change,
        sync_server::domain::feed::Change::StudentErased { student } if student == "north-s1"
    )));
    let devices = admin.get("/devices").await;
    assert!(
        devices.html.contains("/erasures/north-s1"),
        "a purge pending: {}",
        devices.html
    );

    // The box syncs: it pulls the erasure, then (its cursor stored after applying the page)
    // pulls from past it, which acknowledges the purge. It reports itself with its push.
    server.box_syncs_its_feed(&north.device).await;
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            json!({"protocol": 2, "events": [], "report": {"app_version": "0.9.7", "outbox_waiting": 3}}),
        )
        .await
        .assert_ok();
    let erasure = admin.get(&erasure_page).await;
    erasure.shows("Purged");
    erasure.lacks("Not purged yet");
    let devices = admin.get("/devices").await;
    devices.lacks("/erasures/north-s1");
    assert!(
        devices.html.contains("0.9.7"),
        "the box's report: {}",
        devices.html
    );

    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    assert_eq!(teacher.get("/students/north-s2/erase").await.status, 403);
}

/// The hidden value of the input named `name`.
fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name}: {html}"))
        + needle.len();
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_correction_is_audited_and_reaches_the_box_and_a_trip_excuses_a_group() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    let math = north.math();
    let s1 = north.s1();
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let roll = admin.get(&format!("/sections/{math}")).await;
    assert_eq!(roll.status, 200, "{}", roll.html);
    roll.shows("Correct the mark of");
    let csrf = hidden_csrf(&roll.html);
    let session = hidden(&roll.html, "session");
    let (mark, was) = (format!("mark:{s1}"), format!("was:{s1}"));

    // No reason: refused, nothing changed.
    let refused = admin
        .post(
            &format!("/sections/{math}/marks"),
            &[
                ("csrf", &csrf),
                ("session", &session),
                ("reason", " "),
                (&mark, "absent"),
                (&was, "present"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    refused.shows("needs a reason");
    // Without the form's token: refused.
    let forged = admin
        .post(
            &format!("/sections/{math}/marks"),
            &[("session", &session), ("reason", "x"), (&mark, "absent")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.html);
    forged.shows("came from another page");

    let done = admin
        .post(
            &format!("/sections/{math}/marks"),
            &[
                ("csrf", &csrf),
                ("session", &session),
                ("reason", "Arrived after a dentist appointment"),
                (&mark, "late"),
                (&was, "present"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    let to = done.headers[LOCATION].to_str().unwrap().to_owned();
    let roll = admin.get(&to).await;
    roll.shows("1 mark corrected");
    assert!(
        roll.html.contains("mark-late") && roll.html.contains("office (north-admin)"),
        "{}",
        roll.html
    );

    // The audit log has it with its reason, and its CSV too.
    let audit = admin.get("/audit").await;
    assert_eq!(audit.status, 200, "{}", audit.html);
    assert!(
        audit.html.contains("corrected a mark")
            && audit.html.contains("Arrived after a dentist appointment")
            && audit.html.contains("signed in"),
        "{}",
        audit.html
    );
    let csv = admin.get("/audit.csv?action=mark_corrected").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.html
            .starts_with("at_utc,actor,action,subject,detail\r\n")
    );
    assert_eq!(csv.html.lines().count(), 2, "{}", csv.html);

    // The box's next pull (protocol 2) carries it; a box of protocol 1 is not sent it.
    let pull = |version: &'static str| {
        server
            .request(reqwest::Method::GET, "/v1/sync/pull", Some(&north.device))
            .header("x-rollcall-protocol", version)
    };
    let v2 = server.send(pull("2")).await;
    v2.assert_ok();
    let marks: Vec<_> = v2.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "mark")
        .collect();
    assert_eq!(marks.len(), 1, "{}", v2.body);
    assert_eq!(marks[0]["status"], "late");
    assert_eq!(marks[0]["source"], "office");
    assert_eq!(marks[0]["session"], session.as_str());
    let v1 = server.send(pull("1")).await;
    v1.assert_ok();
    assert_eq!(v1.body["protocol"], 1);
    assert!(
        v1.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] != "mark"),
        "{}",
        v1.body
    );
    assert_eq!(v1.body["next_cursor"], v2.body["next_cursor"]);

    // A teacher of the section may correct it too (as the teacher); not another section.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let roll = teacher.get(&format!("/sections/{math}")).await;
    let t_csrf = hidden_csrf(&roll.html);
    let by_teacher = teacher
        .post(
            &format!("/sections/{math}/marks"),
            &[
                ("csrf", &t_csrf),
                ("session", &session),
                ("reason", "saw her come in"),
                (&mark, "present"),
                (&was, "late"),
            ],
        )
        .await;
    assert_eq!(by_teacher.status, 303, "{}", by_teacher.html);
    let roll = teacher.get(&format!("/sections/{math}")).await;
    roll.shows("teacher (north-teacher)");
    assert!(!roll.html.contains("Excuse the whole group"), "admins only");
    let art = north.art();
    let refused = teacher
        .post(
            &format!("/sections/{art}/excuse"),
            &[
                ("csrf", &t_csrf),
                ("from", "2024-09-02"),
                ("to", "2024-09-02"),
                ("reason", "trip"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);

    // A trip: the whole maths group excused over the day, in one action.
    let trip = admin
        .post(
            &format!("/sections/{math}/excuse"),
            &[
                ("csrf", &csrf),
                ("from", "2024-09-01"),
                ("to", "2024-09-03"),
                ("reason", "Science museum trip"),
            ],
        )
        .await;
    assert_eq!(trip.status, 303, "{}", trip.html);
    let roll = admin.get(trip.headers[LOCATION].to_str().unwrap()).await;
    roll.shows(
        "Trip booked for 2024-09-01 to 2024-09-03: 1 mark of a lesson already held excused now",
    );
    roll.shows("mark-excused");
    // The grid shows the excused lesson as E; an excused lesson counts neither way, but it is a
    // lesson missed, so one of one is over the chronic threshold.
    roll.shows("class=\"code code-E\">E</td>");
    roll.shows("(chronic)");
    let audit = admin.get("/audit?action=mark_corrected").await;
    audit.shows("Science museum trip");
    // Teachers do not read the audit log.
    assert_eq!(teacher.get("/audit").await.status, 403);
}

#[tokio::test]
async fn today_shows_the_timetables_lessons_in_the_schools_time_zone() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    // START is Monday 2024-09-02 08:00 UTC, 10:00 in Berlin. Maths at 10:00 Berlin holds the
    // pushed maths roll; art at 09:00 Berlin has none (the art roll, at 10:00, is outside it);
    // maths again at 14:00 is still to come.
    for (section, slots) in [
        (
            north.math(),
            json!([{"weekday": 1, "starts": "10:00", "ends": "10:45", "room": "R12"},
                   {"weekday": 1, "starts": "14:00", "ends": "14:45"},
                   {"weekday": 2, "starts": "10:00", "ends": "10:45"}]),
        ),
        (
            north.art(),
            json!([{"weekday": 1, "starts": "09:00", "ends": "09:45"}]),
        ),
    ] {
        server
            .put(
                &format!("/v1/schools/north/sections/{section}/schedule"),
                Some(&north.admin),
                json!({ "slots": slots }),
            )
            .await
            .assert_ok();
    }
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    // Settings: the school's time zone, checked.
    let settings = admin.get("/settings").await;
    assert_eq!(settings.status, 200, "{}", settings.html);
    let csrf = hidden_csrf(&settings.html);
    let bad = admin
        .post(
            "/settings",
            &[
                ("csrf", &csrf),
                ("time_zone", "Mars/Olympus"),
                ("chronic_percent", "10"),
                ("offline_minutes", "30"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.html);
    bad.shows("not a time zone");
    let saved = admin
        .post(
            "/settings",
            &[
                ("csrf", &csrf),
                ("time_zone", "Europe/Berlin"),
                ("chronic_percent", "12"),
                ("offline_minutes", "45"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);

    let today = admin.get("/").await;
    assert_eq!(today.status, 200, "{}", today.html);
    let html = &today.html;
    assert!(
        html.contains("Monday 2 September 2024 (Europe/Berlin)"),
        "{html}"
    );
    assert!(
        html.contains("<strong>3</strong> lessons in the timetable"),
        "{html}"
    );
    assert!(html.contains("<strong>1</strong> not registered"), "{html}");
    let lessons =
        &html[html.find("id=\"lessons\"").unwrap()..html.find("id=\"absences\"").unwrap()];
    let rows: Vec<&str> = lessons.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 4, "three lessons and the art roll: {lessons}");
    assert!(
        rows[0].contains("09:00-09:45") && rows[0].contains("Not registered"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("10:00-10:45")
            && rows[1].contains("R12")
            && rows[1].contains("?session=sess-1"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].contains("14:00-14:45") && rows[2].contains("Not taken yet"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3].contains("outside the timetable") && rows[3].contains("north-art"),
        "{}",
        rows[3]
    );
    assert!(
        lessons.contains("<svg"),
        "a bar per taken lesson: {lessons}"
    );
    // No box has been heard from within 45 minutes? The fixture's box pushed just now.
    assert!(html.contains("<strong>0</strong> boxes offline"), "{html}");
    server.clock.advance_ms(46 * 60_000);
    let later_page = admin.get("/").await;
    later_page.shows("box offline");
    // The sections' list moved to /sections.
    let sections = admin.get("/sections").await;
    sections.shows("Latest roll");
}

#[tokio::test]
async fn demo_data_makes_a_school_the_pages_show() {
    let server = Server::start().await;
    // START is Monday 08:00 UTC; at 14:00 the day's five lessons have all been held.
    let now = common::START + 6 * 3_600_000;
    let spec = sync_server::demo::DemoSpec {
        school_id: "demo".into(),
        students: 60,
        days: 5,
    };
    let summary = sync_server::demo::fill(&*server.store, &spec, now, |_, _| {})
        .await
        .expect("demo data");
    assert_eq!(summary.sections, 3);
    assert_eq!(summary.sessions, 3 * 5 * 5, "five lessons a day, five days");
    assert_eq!(summary.marks, 60 * 5 * 5);
    // The same school again is refused, not doubled.
    assert!(
        sync_server::demo::fill(&*server.store, &spec, now, |_, _| {})
            .await
            .is_err()
    );
    server
        .store
        .create_user(&sync_server::store::User {
            id: "demo-admin".into(),
            username: "demo-admin".into(),
            password_hash: sync_server::api::hash_password(PASSWORD).unwrap(),
            role: sync_server::store::Role::Admin,
            school_id: Some("demo".into()),
            teacher_id: None,
        })
        .await
        .unwrap();
    server.clock.advance_ms(6 * 3_600_000);
    let mut admin = Browser::new(&server);
    admin.sign_in("demo-admin", PASSWORD).await;
    let today = admin.get("/").await;
    assert_eq!(today.status, 200, "{}", today.html);
    assert!(
        today
            .html
            .contains("<strong>15</strong> lessons in the timetable"),
        "{}",
        today.html
    );
    today.shows("<strong>0</strong> not registered");
    assert!(
        today.html.contains("school days:"),
        "the line: {}",
        today.html
    );
    let rows = server
        .store
        .attendance(&sync_server::store::AttendanceQuery {
            school_id: "demo".into(),
            from: 0,
            to: now + 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let sources: std::collections::HashSet<_> = rows.iter().map(|r| r.source).collect();
    assert!(
        sources.len() == 2,
        "machine marks and teacher corrections: {sources:?}"
    );
    // The demo's askew camera stands out in the recognition self-audit, its section and its box.
    let audit = admin.get("/recognition").await;
    assert_eq!(audit.status, 200, "{}", audit.html);
    assert_eq!(
        audit.html.matches("<tr class=\"rising\">").count(),
        2,
        "{}",
        audit.html
    );
    // Guardians, brothers and sisters sharing a family's contact, and a trip booked ahead.
    let sibling = admin.get("/students/demo-s00001").await;
    assert!(
        sibling.html.contains("family00000@example.org")
            && sibling.html.contains("also guardian of 1 other student"),
        "{}",
        sibling.html
    );
    let first = admin.get("/sections/demo-7A").await;
    first.shows("Field trip to the science museum");
}

impl Browser {
    /// Posts the roster page's upload form: its CSRF token and the export's files.
    async fn upload_roster(&mut self, csrf: &str, files: Vec<(String, String)>) -> Page {
        let mut form = reqwest::multipart::Form::new().text("csrf", csrf.to_owned());
        for (name, text) in files {
            let part = reqwest::multipart::Part::text(text).file_name(name);
            form = form.part("files", part);
        }
        let request = self
            .http
            .post(format!("{}/roster", self.base))
            .multipart(form);
        self.send(request).await
    }
}

/// The value of the page's hidden `upload` input: the previewed upload's id.
fn hidden_upload(html: &str) -> String {
    let at = html
        .find("name=\"upload\" value=\"")
        .expect("an apply form")
        + 21;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_roster_upload_lists_its_problems_by_line_and_applies_only_what_was_previewed() {
    let server = Server::start().await;
    server.school("north").await;
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    assert_eq!(teacher.get("/roster").await.status, 403);

    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get("/roster").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("enctype=\"multipart/form-data\""));
    let csrf = hidden_csrf(&page.html);

    // Without the page's token nothing is read.
    let forged = admin
        .upload_roster("x", common::roster_files("north", &[]))
        .await;
    assert_eq!(forged.status, 403, "{}", forged.html);

    // A row without its sourcedId, on line 6 of users.csv: listed by file and line.
    let broken = admin
        .upload_roster(
            &csrf,
            common::roster_files("north", &[",,true,student,No,Id"]),
        )
        .await;
    assert_eq!(broken.status, 422, "{}", broken.html);
    broken.shows("Nothing was applied");
    broken.shows("users.csv:6:");

    // Grace is new, Alan's family name changes: the preview says so and nothing is written yet.
    let changed = |extra: &[&str]| {
        let mut files = common::roster_files("north", extra);
        files[1].1 = files[1].1.replace("Alan,Turing", "Alan,Turing-Smith");
        files
    };
    let preview = admin
        .upload_roster(&csrf, changed(&["north-s3,,true,student,Grace,Hopper"]))
        .await;
    assert_eq!(preview.status, 200, "{}", preview.html);
    for line in [
        "1 added",
        "Grace Hopper (north-s3)",
        "1 changed",
        "Alan Turing (north-s2): name",
    ] {
        assert!(preview.html.contains(line), "{line}: {}", preview.html);
    }
    let held = server.store.students("north").await.unwrap();
    assert_eq!(held.len(), 2, "a preview writes nothing");

    let upload = hidden_upload(&preview.html);
    let forged_apply = admin
        .post(
            "/roster/apply",
            &[("csrf", "x"), ("upload", upload.as_str())],
        )
        .await;
    assert_eq!(forged_apply.status, 403);
    let applied = admin
        .post(
            "/roster/apply",
            &[("csrf", &csrf), ("upload", upload.as_str())],
        )
        .await;
    assert_eq!(applied.status, 303, "{}", applied.html);
    let done = admin.get(applied.headers[LOCATION].to_str().unwrap()).await;
    assert!(
        done.html
            .contains("Roster applied: 1 added, 1 changed, 0 deactivated."),
        "{}",
        done.html
    );
    let held = server.store.students("north").await.unwrap();
    assert_eq!(held.len(), 3);
    assert!(held.iter().any(|s| s.family_name == "Turing-Smith"));
    // Consent is not a roster's: Ada's stays granted.
    let ada = held.iter().find(|s| s.id == "north-s1").unwrap();
    assert_eq!(ada.consent, shared_proto::sync::Consent::Granted);

    // Applied once only.
    let again = admin
        .post(
            "/roster/apply",
            &[("csrf", &csrf), ("upload", upload.as_str())],
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.html);
    again.shows("no longer waiting");

    let audit = admin.get("/audit").await;
    audit.shows("1 added, 1 changed, 0 deactivated");

    // Grace left out: previewed as a deactivation. Then the school changes through the API
    // before the click: the page shows the new preview and applies nothing.
    let leaving = admin.upload_roster(&csrf, changed(&[])).await;
    leaving.shows("1 deactivated");
    let district = server.district_admin().await;
    server
        .upload_roster(
            &district,
            "north",
            changed(&[
                "north-s3,,true,student,Grace,Hopper",
                "north-s4,,true,student,Emmy,Noether",
            ]),
        )
        .await
        .assert_ok();
    let stale = admin
        .post(
            "/roster/apply",
            &[
                ("csrf", &csrf),
                ("upload", hidden_upload(&leaving.html).as_str()),
            ],
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.html);
    assert!(
        stale.html.contains("changed since the preview") && stale.html.contains("2 deactivated"),
        "{}",
        stale.html
    );
    let held = server.store.students("north").await.unwrap();
    assert!(held.iter().all(|s| s.active), "nothing applied");
}

/// The machine's "present" of `lesson_events(section, student, first_id)`, changed on the box a
/// minute later by the teacher to "absent", as event `id`.
fn teacher_says_absent(section: &str, student: &str, first_id: u64, id: u64) -> Event {
    let mut event = lesson_events(section, student, first_id).remove(1);
    event.id = common::event_id(id);
    if let shared_proto::sync::EventBody::MarkSet {
        status,
        source,
        score,
        decided_at,
        by,
        ..
    } = &mut event.body
    {
        *status = shared_proto::sync::MarkStatus::Absent;
        *source = shared_proto::sync::MarkSource::Teacher;
        *score = None;
        *decided_at += 60_000;
        *by = Some("north-t1".into());
    }
    event
}

#[tokio::test]
async fn the_recognition_audit_counts_what_teachers_changed_per_section_and_box() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    // On the box, the teacher marks absent the student the machine saw in maths.
    let override_event = teacher_says_absent(&north.math(), &north.s1(), 1, 50);
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(std::slice::from_ref(&override_event)),
        )
        .await
        .assert_ok();

    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    assert_eq!(teacher.get("/recognition").await.status, 403);

    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get("/recognition").await;
    assert_eq!(page.status, 200, "{}", page.html);
    let row_of = |name: &str| {
        let at = page
            .html
            .find(&format!("<th scope=\"row\" class=\"nowrap\">{name}</th>"))
            .unwrap_or_else(|| panic!("no row {name}: {}", page.html));
        page.html[at..].split("</tr>").next().unwrap().to_owned()
    };
    let maths = row_of("Maths");
    assert!(maths.contains("100.0 % (1/1)"), "{maths}");
    assert!(maths.contains("data-label=\"Wrong person\">1<"), "{maths}");
    let art = row_of("Art");
    assert!(art.contains("0.0 % (0/1)"), "{art}");
    // The box made both calls: one changed of two.
    let boxes = &page.html[page.html.find("By box").unwrap()..];
    assert!(boxes.contains("50.0 % (1/2)"), "{boxes}");
}

/// Past days are counted again at most every five minutes (as Today's line); today is always live.
#[tokio::test]
async fn the_recognition_audit_reads_past_days_again_after_five_minutes() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    server.clock.advance_ms(24 * 60 * 60 * 1000);
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let maths_of = |html: &str| {
        let at = html
            .find("<th scope=\"row\" class=\"nowrap\">Maths</th>")
            .unwrap_or_else(|| panic!("no maths row: {html}"));
        html[at..].split("</tr>").next().unwrap().to_owned()
    };
    let before = admin.get("/recognition").await;
    assert!(
        maths_of(&before.html).contains("0.0 % (0/1)"),
        "{}",
        before.html
    );

    // Yesterday's maths roll is changed by the teacher's box a day late.
    let late = teacher_says_absent(&north.math(), &north.s1(), 1, 51);
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(std::slice::from_ref(&late)),
        )
        .await
        .assert_ok();
    let cached = admin.get("/recognition").await;
    assert!(
        maths_of(&cached.html).contains("0.0 % (0/1)"),
        "{}",
        cached.html
    );
    server.clock.advance_ms(5 * 60 * 1000);
    let after = admin.get("/recognition").await;
    assert!(
        maths_of(&after.html).contains("100.0 % (1/1)"),
        "{}",
        after.html
    );
}

/// A report keeps past days for five minutes: a correction made on the dashboard shows at once, a
/// box's late sync of a past day within five minutes.
#[tokio::test]
async fn reports_show_a_correction_at_once_and_a_late_sync_within_five_minutes() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    server.clock.advance_ms(24 * 60 * 60 * 1000);
    let report = "/reports?from=2024-09-01&to=2024-09-30";
    // The per-section summary, above the students.
    let rates = |html: &str| {
        let html = &html[..html.find("id=\"students\"").expect("students")];
        let full = html
            .matches("data-label=\"Attendance %\">100.0</td>")
            .count();
        let none = html.matches("data-label=\"Attendance %\">0.0</td>").count();
        (full, none)
    };
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get(report).await;
    assert_eq!(rates(&page.html), (2, 0), "{}", page.html);

    let (math, s1) = (north.math(), north.s1());
    let roll = admin.get(&format!("/sections/{math}")).await;
    let (mark, was) = (format!("mark:{s1}"), format!("was:{s1}"));
    let done = admin
        .post(
            &format!("/sections/{math}/marks"),
            &[
                ("csrf", &hidden_csrf(&roll.html)),
                ("session", &hidden(&roll.html, "session")),
                ("reason", "Was not there"),
                (&mark, "absent"),
                (&was, "present"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    let page = admin.get(report).await;
    assert_eq!(rates(&page.html), (1, 1), "{}", page.html);

    // The art teacher's box syncs yesterday's change a day late.
    let late = teacher_says_absent(&north.art(), &north.s2(), 10, 52);
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(std::slice::from_ref(&late)),
        )
        .await
        .assert_ok();
    let page = admin.get(report).await;
    assert_eq!(rates(&page.html), (1, 1), "{}", page.html);
    server.clock.advance_ms(5 * 60 * 1000);
    let page = admin.get(report).await;
    assert_eq!(rates(&page.html), (0, 2), "{}", page.html);
}

/// A trip booked ahead on the section page is listed, excuses the camera's "absent" of a lesson
/// held on its day when the box pushes the roll, and can be cancelled; both are in the audit log.
/// `lesson_events` moved by `shift_ms`, in which the camera did not see the student.
fn missed_lesson(section: &str, student: &str, first_id: u64, shift_ms: i64) -> Vec<Event> {
    let mut events = lesson_events(section, student, first_id);
    for event in &mut events {
        event.at += shift_ms;
        match &mut event.body {
            EventBody::SessionOpened { started_at, .. } => *started_at += shift_ms,
            EventBody::MarkSet {
                status,
                score,
                decided_at,
                ..
            } => {
                *status = MarkStatus::Absent;
                *score = None;
                *decided_at += shift_ms;
            }
            _ => {}
        }
    }
    events
}

/// An upload whose job file cannot be read when the server starts (its permissions after a
/// restore) is kept on disk, and the enrolment page tells the admin, who would otherwise never
/// learn that its photos wait.
#[tokio::test]
async fn the_enrolment_page_tells_of_an_upload_that_could_not_be_read() {
    let server = Server::start_enrolling_over("http://127.0.0.1:9", |jobs| {
        // A folder where the file should be: unreadable even to root, as tests may run.
        std::fs::create_dir_all(jobs.join("upload-1").join("job.json")).unwrap();
    })
    .await;
    server.school("north").await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get("/enrolment").await;
    assert_eq!(page.status, 200, "{}", page.html);
    page.shows("1 upload could not be read</strong> when the server started. It was kept");
}

/// A school far from UTC reads its own days and times. In Sydney (AEST, UTC+10) a Monday 08:00
/// lesson is Sunday 22:00 UTC: the section page shows it at 08:00 AEST, a trip booked for Monday
/// excuses it, the export and the API count it on Monday, and the audit names the trip's Monday.
/// Read in UTC, each of these put it on Sunday.
#[tokio::test]
async fn a_school_far_from_utc_reads_its_own_days() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let (math, s1) = (north.math(), north.s1());
    let settings = sync_server::domain::settings::SchoolSettings {
        time_zone: "Australia/Sydney".into(),
        ..Default::default()
    };
    server
        .store
        .set_school_settings("north", &settings)
        .await
        .unwrap();
    // START is Monday 2024-09-02 08:00 UTC, 18:00 in Sydney: the lesson was ten hours earlier.
    let events = missed_lesson(&math, &s1, 70, -10 * 60 * 60 * 1000);
    server
        .post("/v1/sync/push", Some(&north.device), push_body(&events))
        .await
        .assert_ok();
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get(&format!("/sections/{math}")).await;
    page.shows("2024-09-02 08:00 AEST");
    page.lacks("UTC");
    let booked = admin
        .post(
            &format!("/sections/{math}/excuse"),
            &[
                ("csrf", &hidden_csrf(&page.html)),
                ("from", "2024-09-02"),
                ("to", "2024-09-02"),
                ("reason", "Museum"),
            ],
        )
        .await;
    assert_eq!(booked.status, 303, "{}", booked.html);
    let page = admin.get(booked.headers[LOCATION].to_str().unwrap()).await;
    page.shows("Trip booked for 2024-09-02: 1 mark of a lesson already held excused now");

    let csv = admin
        .get("/reports/attendance.csv?from=2024-09-02&to=2024-09-02")
        .await;
    let lines: Vec<&str> = csv.html.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2, "a header and Monday's mark: {lines:?}");
    assert!(
        lines[1].starts_with(&format!("2024-09-02,08:00,{math},"))
            && lines[1].contains(",excused,office,north-admin,")
            && lines[1].ends_with(",sess-70,2024-09-01T22:00:00Z"),
        "{lines:?}"
    );
    let report = admin.get("/reports?from=2024-09-02&to=2024-09-02").await;
    report.shows("Days are the school's, in its time zone (Australia/Sydney)");
    let api = server
        .get(
            "/v1/schools/north/attendance?from=2024-09-02",
            Some(&north.admin),
        )
        .await;
    api.assert_ok();
    assert_eq!(api.body.as_array().map(Vec::len), Some(1), "{}", api.text);
    let sunday = server
        .get(
            "/v1/schools/north/attendance?from=2024-09-01",
            Some(&north.admin),
        )
        .await;
    assert_eq!(
        sunday.body.as_array().map(Vec::len),
        Some(0),
        "{}",
        sunday.text
    );

    let audit = admin.get("/audit").await;
    audit.shows("2024-09-02: Museum");
    audit.lacks("UTC");

    // The recognition audit's weeks are the school's: Monday's lesson is in the week of 2 Sep,
    // which UTC would have begun after it.
    let recognition = admin.get("/recognition").await;
    recognition.shows("Monday in the school's time zone, Australia/Sydney");
    let at = recognition
        .html
        .find("<th scope=\"row\" class=\"nowrap\">Maths</th>")
        .unwrap_or_else(|| panic!("no maths row: {}", recognition.html));
    let maths = recognition.html[at..].split("</tr>").next().unwrap();
    assert!(
        maths.contains("data-label=\"26 Aug\" class=\"nowrap\">-</td>")
            && maths.contains("data-label=\"2 Sep\" class=\"nowrap\">0.0 % (0/1)</td>"),
        "{maths}"
    );
}

#[tokio::test]
async fn a_trip_booked_ahead_excuses_the_lessons_held_on_its_days() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let (math, s1) = (north.math(), north.s1());
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get(&format!("/sections/{math}")).await;
    page.shows("No trip booked from today on.");
    // Today is 2024-09-02: the trip is tomorrow.
    let booked = admin
        .post(
            &format!("/sections/{math}/excuse"),
            &[
                ("csrf", &hidden_csrf(&page.html)),
                ("from", "2024-09-03"),
                ("to", "2024-09-03"),
                ("reason", "Trip to the <b>museum</b>"),
            ],
        )
        .await;
    assert_eq!(booked.status, 303, "{}", booked.html);
    let page = admin.get(booked.headers[LOCATION].to_str().unwrap()).await;
    assert!(
        page.html
            .contains("Trip booked for 2024-09-03: no lesson held yet to excuse"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("<td data-label=\"Reason\">Trip to the &#60;b&#62;museum&#60;/b&#62;</td>"),
        "{}",
        page.html
    );

    // Tomorrow the camera does not see the student.
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let events = missed_lesson(&math, &s1, 60, DAY);
    // The next day (a day's sign-in has expired by then).
    server.clock.advance_ms(DAY);
    server
        .post("/v1/sync/push", Some(&north.device), push_body(&events))
        .await
        .assert_ok();
    admin.sign_in("north-admin", PASSWORD).await;
    let roll = admin
        .get(&format!("/sections/{math}?session=sess-60"))
        .await;
    assert!(
        roll.html
            .contains("<span class=\"mark mark-excused\">excused</span>"),
        "{}",
        roll.html
    );
    assert!(
        roll.html
            .contains("<td data-label=\"Decided by\">office (north-admin)</td>"),
        "{}",
        roll.html
    );

    // Cancelled: no longer listed; the mark it excused stays.
    let action = format!("/sections/{math}/trips/");
    let at = roll.html.find(&action).expect("a cancel form") + action.len();
    let trip = roll.html[at..].split('/').next().unwrap().to_owned();
    let cancelled = admin
        .post(
            &format!("/sections/{math}/trips/{trip}/cancel"),
            &[("csrf", &hidden_csrf(&roll.html))],
        )
        .await;
    assert_eq!(cancelled.status, 303, "{}", cancelled.html);
    let page = admin
        .get(cancelled.headers[LOCATION].to_str().unwrap())
        .await;
    page.shows("cancelled");
    page.shows("No trip booked from today on.");
    let audit = admin.get("/audit").await;
    audit.shows("booked a trip");
    audit.shows("cancelled a trip");

    // A teacher may neither book nor cancel.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let own = teacher.get(&format!("/sections/{math}")).await;
    own.lacks("Trips booked");
    let refused = teacher
        .post(
            &format!("/sections/{math}/excuse"),
            &[
                ("csrf", &hidden_csrf(&own.html)),
                ("from", "2024-09-04"),
                ("to", "2024-09-04"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.html);
}

/// Posts the student page's "add a guardian" form, with the token of `page`.
async fn add_guardian(
    browser: &mut Browser,
    student: &str,
    page: &str,
    given: &str,
    email: &str,
) -> Page {
    browser
        .post(
            &format!("/students/{student}/guardians"),
            &[
                ("csrf", &hidden_csrf(page)),
                ("given_name", given),
                ("family_name", "Hopper"),
                ("email", email),
                ("relationship", "parent"),
            ],
        )
        .await
}

/// Admins add and remove a student's guardians on the student page; an address held already is
/// the same contact for a second child; a hostile name shows as text and an address with a line
/// break is refused; a teacher sees the guardians of their own students but cannot change them.
#[tokio::test]
async fn admins_keep_a_students_guardians_on_the_student_page() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let (s1, s2) = (north.s1(), north.s2());
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get(&format!("/students/{s1}")).await;
    page.shows("No guardian on record");
    let added = add_guardian(
        &mut admin,
        &s1,
        &page.html,
        "<script>alert(1)</script>",
        "Grace@Example.org",
    )
    .await;
    assert_eq!(added.status, 303, "{}", added.html);
    let page = admin.get(added.headers[LOCATION].to_str().unwrap()).await;
    page.shows("added.");
    assert!(
        page.html
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; Hopper"),
        "{}",
        page.html
    );
    page.lacks("<script>alert(1)");
    page.shows("grace@example.org");
    page.shows("receives them");

    // A line break in the address: refused, nothing added.
    let refused = add_guardian(
        &mut admin,
        &s2,
        &page.html,
        "Eve",
        "eve@example.org\r\nBcc: all@example.org",
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    refused.shows("not an e-mail address");

    // The same address for another child: one contact, linked to both.
    let second = add_guardian(&mut admin, &s2, &page.html, "Grace", "grace@example.org").await;
    assert_eq!(second.status, 303, "{}", second.html);
    let page2 = admin.get(second.headers[LOCATION].to_str().unwrap()).await;
    page2.shows("already a guardian at the school");
    page2.shows("also guardian of 1 other student");

    // A teacher sees them on their own student's page, without the forms.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    let seen = teacher.get(&format!("/students/{s1}")).await;
    assert_eq!(seen.status, 200, "{}", seen.html);
    seen.shows("grace@example.org");
    seen.lacks("Add the guardian");
    let forbidden = add_guardian(&mut teacher, &s1, &seen.html, "Tom", "tom@example.org").await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.html);

    // Removed from the first child; still the second's.
    let action = format!("/students/{s1}/guardians/");
    let at = page.html.find(&action).expect("a remove form") + action.len();
    let id = page.html[at..].split('/').next().unwrap().to_owned();
    let removed = admin
        .post(
            &format!("/students/{s1}/guardians/{id}/remove"),
            &[("csrf", &hidden_csrf(&page.html))],
        )
        .await;
    assert_eq!(removed.status, 303, "{}", removed.html);
    let page = admin.get(&format!("/students/{s1}")).await;
    page.shows("No guardian on record");
    let page2 = admin.get(&format!("/students/{s2}")).await;
    page2.shows("grace@example.org");
    let audit = admin.get("/audit").await;
    audit.shows("added a guardian");
    audit.shows("removed a guardian");
}

/// A roster's parents, guardians and relatives with an address become the guardians of the
/// students that `agentSourcedIds` links them to, on the roster page and through the API alike; a
/// guardian whose address could carry a second recipient is refused and counted.
#[tokio::test]
async fn a_roster_upload_brings_the_students_guardians() {
    let server = Server::start().await;
    server.school("north").await;
    let mut files = common::roster_files("north", &[]);
    files[1].1 = "sourcedId,status,enabledUser,role,givenName,familyName,email,agentSourcedIds\n\
        north-s1,,true,student,Ada,Lovelace,,north-p1\n\
        north-s2,,true,student,Alan,Turing,,\n\
        north-t1,,true,teacher,Mary,Brown,,\n\
        north-t2,,true,teacher,Tom,Green,,\n\
        north-p1,,true,parent,Anne,Lovelace,Anne@Example.org,\n\
        north-p2,,true,guardian,Sara,Turing,sara@example.org,north-s2\n\
        north-p3,,true,relative,Eve,Two,\"eve@example.org, x@example.org\",north-s2\n"
        .to_owned();
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let form = admin.get("/roster").await;
    let csrf = hidden_csrf(&form.html);
    let preview = admin.upload_roster(&csrf, files.clone()).await;
    assert_eq!(preview.status, 200, "{}", preview.html);
    let applied = admin
        .post(
            "/roster/apply",
            &[("csrf", &csrf), ("upload", &hidden_upload(&preview.html))],
        )
        .await;
    assert_eq!(applied.status, 303, "{}", applied.html);
    let done = admin.get(applied.headers[LOCATION].to_str().unwrap()).await;
    assert!(
        done.html
            .contains("2 guardian links (1 guardian refused: address or name)"),
        "{}",
        done.html
    );
    let ada = admin.get("/students/north-s1").await;
    assert!(
        ada.html.contains("Anne Lovelace") && ada.html.contains("anne@example.org"),
        "{}",
        ada.html
    );
    let alan = admin.get("/students/north-s2").await;
    alan.shows("sara@example.org");
    alan.lacks("eve@example.org");

    // The API's upload of the same export: the links are in place, nothing doubles.
    let district = server.district_admin().await;
    let reply = server.upload_roster(&district, "north", files).await;
    let body = reply.assert_ok();
    assert_eq!(body["guardian_links"], 2, "{body}");
    assert_eq!(body["guardians_refused"], 1, "{body}");
    let ada = admin.get("/students/north-s1").await;
    assert_eq!(
        ada.html.matches("anne@example.org</a>").count(),
        1,
        "{}",
        ada.html
    );
}

#[tokio::test]
async fn the_devices_page_shows_each_boxs_embedding_space_from_its_templates() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let before = admin.get("/devices").await;
    before.shows("no template yet");

    let template = common::template_event(&north.s1(), 70);
    let shared_proto::sync::EventBody::TemplateAdded { template: data } = &template.body else {
        unreachable!("a template event");
    };
    let space = data.embedding.space.as_str().to_owned();
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(std::slice::from_ref(&template)),
        )
        .await
        .assert_ok();
    let after = admin.get("/devices").await;
    assert!(
        after
            .html
            .contains(&format!("data-label=\"Embedding space\">{space}<")),
        "{space}: {}",
        after.html
    );
}

/// The notices page lists the school's outbox with each failure's reason, sends a failed notice
/// again, and names the guardians who unsubscribed; the settings page saves the notice settings
/// and refuses an admin address that could carry a second header. Admins only.
#[tokio::test]
async fn admins_see_the_notices_resend_a_failed_one_and_set_when_notices_go() {
    use common::START;
    use sync_server::domain::guardian::{Contact, Relationship};
    use sync_server::domain::notice::{self, Claim, Delivery, Kind, Letter, Notice, State};
    let server = Server::start().await;
    let north = server.school("north").await;
    let now = START;
    let failed = Notice::queued(
        Letter {
            id: "n-1".into(),
            school_id: "north".into(),
            kind: Kind::Absence,
            key: "k-1".into(),
            recipient: "grace@example.org".into(),
            guardian_id: None,
            day: "2024-09-02".into(),
            subject: "North school: Ada missed lessons on Monday 2 September 2024".into(),
            text: "Ada was absent in Maths at 08:00.".into(),
            html: "<p>Ada was absent in Maths at 08:00.</p>".into(),
            facts: String::new(),
            students: Vec::new(),
            message_id: "<n-1@north.example.org>".into(),
        },
        now,
    );
    server.store.enqueue_notices(&[failed]).await.unwrap();
    let claimed = server
        .store
        .claim_notices(&Claim {
            owner: "test".into(),
            now,
            lease_until: now + 60_000,
            limit: 10,
        })
        .await
        .unwrap();
    let refused = Delivery::Permanent("permanent error (550): 5.1.1 No such mailbox here".into());
    let finish = notice::after_attempt(&claimed[0], &refused, now);
    assert!(
        server
            .store
            .finish_notice("n-1", "test", &finish)
            .await
            .unwrap()
    );
    let contact = Contact {
        given_name: "Grace".into(),
        family_name: "Hopper".into(),
        email: "grace@example.org".into(),
        relationship: Relationship::Parent,
    };
    let linked = server
        .store
        .link_guardian("north", &north.s1(), &contact, "test", now)
        .await
        .unwrap()
        .unwrap();
    server
        .store
        .opt_out_guardian("north", &linked.guardian.id, now)
        .await
        .unwrap();

    let mut admin = Browser::new(&server);
    admin.sign_in("north-admin", PASSWORD).await;
    let page = admin.get("/notices").await;
    assert_eq!(page.status, 200, "{}", page.html);
    page.shows("grace@example.org");
    page.shows("No such mailbox here");
    page.shows("no mail relay set");
    assert!(
        page.html.contains("Grace Hopper"),
        "the unsubscribed are listed"
    );
    let one = admin.get("/notices/n-1").await;
    one.shows("Ada was absent in Maths at 08:00.");
    one.shows("&#60;n-1@north.example.org&#62;");
    let resent = admin
        .post("/notices/n-1/resend", &[("csrf", &hidden_csrf(&page.html))])
        .await;
    assert_eq!(resent.status, 303, "{}", resent.html);
    let page = admin.get(resent.headers[LOCATION].to_str().unwrap()).await;
    page.shows("Queued again");
    let queued = server
        .store
        .notices(&sync_server::store::NoticeQuery {
            school_id: "north".into(),
            day: None,
            state: Some(State::Queued),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);

    // Settings: the notice fields are saved; an address with a line break is refused.
    let settings = admin.get("/settings").await;
    let csrf = hidden_csrf(&settings.html);
    let form = |emails: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("time_zone", "Europe/Berlin".to_owned()),
            ("chronic_percent", "10".to_owned()),
            ("offline_minutes", "30".to_owned()),
            ("guardian_notices", "after_each_lesson".to_owned()),
            ("grace_minutes", "20".to_owned()),
            ("digest_time", "15:30".to_owned()),
            ("corrections", "1".to_owned()),
            ("admin_digest_time", "16:45".to_owned()),
            ("admin_emails", emails.to_owned()),
        ]
    };
    let bad = form("office@north.example.org\r\nBcc: all@example.org");
    let refused = admin
        .post(
            "/settings",
            &bad.iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    let good = form("Office@North.example.org, head@north.example.org");
    let saved = admin
        .post(
            "/settings",
            &good
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let held = server.store.school_settings("north").await.unwrap();
    assert_eq!(held.grace_minutes, 20);
    assert_eq!(held.digest_time, "15:30");
    assert!(held.corrections && !held.admin_digest && !held.offline_alerts);
    assert_eq!(
        held.admin_emails,
        ["office@north.example.org", "head@north.example.org"]
    );

    // The preview renders each kind from example people with the school's name, and says when
    // the settings just saved send it.
    let preview = admin.get("/notices/preview").await;
    assert_eq!(preview.status, 200, "{}", preview.html);
    preview.shows("Alex and Sam missed lessons on");
    assert!(
        preview
            .html
            .contains("- Alex was absent in Maths 7B at 09:00."),
        "{}",
        preview.html
    );
    assert!(
        preview
            .html
            .contains("20 minutes after the end of the first lesson"),
        "{}",
        preview.html
    );
    let digest = admin.get("/notices/preview?kind=admin_digest").await;
    assert!(
        digest
            .html
            .contains("Not sent: the admins&#39; digest is off."),
        "{}",
        digest.html
    );
    let correction = admin.get("/notices/preview?kind=correction").await;
    assert!(
        correction
            .html
            .contains("Alex was not absent in Maths 7B at 09:00 after all."),
        "{}",
        correction.html
    );
    assert_eq!(admin.get("/notices/preview?kind=sms").await.status, 400);
    assert!(
        server
            .store
            .notices(&sync_server::store::NoticeQuery {
                school_id: "north".into(),
                day: None,
                state: None,
                limit: 10,
            })
            .await
            .unwrap()
            .len()
            == 1,
        "a preview stores nothing"
    );

    // A teacher has no notices page.
    let mut teacher = Browser::new(&server);
    teacher.sign_in("north-teacher", PASSWORD).await;
    assert_eq!(teacher.get("/notices").await.status, 403);
    assert_eq!(teacher.get("/notices/preview").await.status, 403);
}
