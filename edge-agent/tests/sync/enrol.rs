//! Central enrolment (issue 17) end to end: a real `sync-server` with `[ml]` calling a real
//! `edge-agent serve`; photos uploaded to the server become templates that a box pulls and
//! recognises; the breaker opens on a service that is down and the queued photos go through once
//! it is back; a stalling service is timed out and retried on the configured schedule.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::multipart;
use serde_json::Value;

use super::common::{self, MlService};
use super::fixtures::push_templates;
use super::proxy::FlakyProxy;
use super::server::{Backend, SCHOOL, Server, free_port};
use super::{capture, joined, names};

/// `[ml]` for a service at `port`, with these breaker and retry settings.
fn ml_config(port: u16, extra: &str) -> String {
    format!(
        "[ml]\nurl = \"http://127.0.0.1:{port}\"\napi_key = \"{}\"\n{extra}\n",
        common::ML_KEY
    )
}

/// The school of `students`, every one consenting, on a server configured with `config`.
fn school_with(
    backend: Backend,
    students: &[common::Student],
    config: &str,
) -> (Server, tempfile::TempDir) {
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), students);
    let mut server = Server::start_configured(backend, config);
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    server.set_up_school(roster.path(), &ids);
    (server, roster)
}

/// POSTs one student's photos; (status, job).
fn upload_photos(
    server: &Server,
    student: &str,
    photos: &[&std::path::Path],
    query: &str,
) -> (u16, Value) {
    let mut form = multipart::Form::new();
    for photo in photos {
        form = form.file("photo", photo).unwrap();
    }
    let response = server
        .http
        .post(format!(
            "{}/v1/schools/{SCHOOL}/students/{student}/photos?{query}",
            server.base
        ))
        .bearer_auth(server.token())
        .multipart(form)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

/// (name, state, code) of each photo of a job's report, sorted by name.
fn report(job: &Value) -> Vec<(String, String, String)> {
    let mut lines: Vec<(String, String, String)> = job["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
                p["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    lines.sort();
    lines
}

/// An admin at the dashboard, signed in through the login form (cookies by hand, no redirects
/// followed).
struct Dashboard {
    base: String,
    http: reqwest::blocking::Client,
    cookies: Vec<(String, String)>,
}

impl Dashboard {
    fn sign_in(server: &Server) -> Dashboard {
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut dashboard = Dashboard {
            base: server.base.clone(),
            http,
            cookies: Vec::new(),
        };
        let (_, _, login) = dashboard.get("/login");
        let form = serde_urlencoded::to_string([
            ("username", super::server::ADMIN),
            ("password", super::server::PASSWORD),
            ("csrf", &csrf(&login)),
        ])
        .unwrap();
        let (status, _, _) = dashboard.post_form("/login", form);
        assert_eq!(status, 303, "signed in");
        dashboard
    }

    /// (status, location, body).
    fn send(&mut self, request: reqwest::blocking::RequestBuilder) -> (u16, String, String) {
        use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
        let header = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request.header(COOKIE, header).send().unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            let (pair, _) = set.to_str().unwrap().split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
        let location = response
            .headers()
            .get(LOCATION)
            .map_or_else(String::new, |l| l.to_str().unwrap().to_owned());
        (
            response.status().as_u16(),
            location,
            response.text().unwrap(),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&mut self, path: &str) -> (u16, String, String) {
        let request = self.http.get(self.url(path));
        self.send(request)
    }

    fn post_form(&mut self, path: &str, form: String) -> (u16, String, String) {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        self.send(request)
    }

    fn post_multipart(&mut self, path: &str, form: multipart::Form) -> (u16, String, String) {
        let request = self.http.post(self.url(path)).multipart(form);
        self.send(request)
    }

    /// Enrols a student from a photo with the form on the student's page; the job page's HTML.
    fn enrol(&mut self, student: &str, photo: &std::path::Path) -> String {
        let (status, _, page) = self.get(&format!("/students/{student}?school={SCHOOL}"));
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Enrol from photos"), "{page}");
        let form = multipart::Form::new()
            .text("csrf", csrf(&page))
            .text("school", SCHOOL)
            .file("photo", photo)
            .unwrap();
        let (status, job_page, body) =
            self.post_multipart(&format!("/students/{student}/photos"), form);
        assert_eq!(status, 303, "{body}");
        assert!(job_page.starts_with("/enrolment/"), "{job_page}");
        let (status, _, html) = self.get(&job_page);
        assert_eq!(status, 200, "{html}");
        html
    }

    /// Ticks (or unticks) the settings page's "keep face crops", the rest as it is.
    fn keep_crops(&mut self, keep: bool) {
        let (status, _, page) = self.get(&format!("/settings?school={SCHOOL}"));
        assert_eq!(status, 200, "{page}");
        let value = |name: &str| {
            let at = page
                .find(&format!("name=\"{name}\""))
                .unwrap_or_else(|| panic!("a {name} field"));
            let tail = &page[at..];
            match tail.find("value=\"") {
                Some(v) if v < tail.find('>').unwrap() => {
                    tail[v + 7..].split('"').next().unwrap().to_owned()
                }
                _ => String::new(),
            }
        };
        let mut fields = vec![
            ("csrf".to_owned(), csrf(&page)),
            ("school".to_owned(), SCHOOL.to_owned()),
            ("crops_shown".to_owned(), "1".to_owned()),
        ];
        for name in ["time_zone", "chronic_percent", "offline_minutes"] {
            fields.push((name.to_owned(), value(name)));
        }
        if keep {
            fields.push(("keep_crops".to_owned(), "1".to_owned()));
        }
        let form = serde_urlencoded::to_string(&fields).unwrap();
        let (status, location, body) = self.post_form("/settings", form);
        assert_eq!(status, 303, "{body}");
        assert!(location.contains("saved=1"), "{location}");
    }
}

/// The CSRF token of a dashboard page's form.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// A student's photos and a school's ZIP, enrolled on the server through the ML service, reach a
/// box that never saw the students, and it marks them present from class photos; the gate
/// refuses a look-alike and the ZIP's report names every file that was not enrolled.
fn photos_enrolled_centrally_are_recognised_by_a_box(backend: Backend) {
    let students = common::students(3);
    let service = MlService::start("pipelines = 1", "");
    let (server, _roster) = school_with(backend, &students, &ml_config(service.port, ""));
    let classroom = joined(&server, "", "room A");

    // One student's photo on the dashboard: the form waits for the template, then shows the job.
    let html = Dashboard::sign_in(&server).enrol(&students[0].id, &students[0].enrol_photo);
    assert!(html.contains("1 enrolled"), "{html}");
    assert!(html.contains("Every box of the school receives"), "{html}");
    // The same face for someone else is a look-alike: refused, naming whom it matches.
    refused_as_look_alike(&server, &students[1], &students[0]);

    // A ZIP: a student by file name, one by a numbered name, a stranger, a text file.
    let bytes = common::zip_of(&[
        (
            &format!("{}.jpg", students[1].id),
            std::fs::read(&students[1].enrol_photo).unwrap(),
        ),
        (
            &format!("year/{}_2.jpg", students[2].id),
            std::fs::read(&students[2].enrol_photo).unwrap(),
        ),
        (
            "Nobody_Here.jpg",
            std::fs::read(&students[2].enrol_photo).unwrap(),
        ),
        ("readme.txt", b"photos of the year".to_vec()),
    ]);
    let job = server.upload_zip("year.zip", bytes);
    let job = server.enrolment_done(job["id"].as_str().unwrap(), Duration::from_secs(120));
    let mut expected = vec![
        (
            "Nobody_Here.jpg".to_owned(),
            "refused".to_owned(),
            "unknown_student".to_owned(),
        ),
        (
            format!("{}.jpg", students[1].id),
            "enrolled".to_owned(),
            String::new(),
        ),
        (
            "readme.txt".to_owned(),
            "refused".to_owned(),
            "not_an_image".to_owned(),
        ),
        (
            format!("year/{}_2.jpg", students[2].id),
            "enrolled".to_owned(),
            String::new(),
        ),
    ];
    expected.sort();
    assert_eq!(report(&job), expected, "{job}");
    // The service kept each call's gallery: the look-alike's call named the first call's (empty)
    // and sent the one template added since; the ZIP's named that one and sent none.
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_sent_total"),
        1
    );
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_reused_total"),
        1
    );
    let overview = server.call(
        Method::GET,
        &format!("/v1/schools/{SCHOOL}/enrolment"),
        None,
    );
    assert_eq!(overview["service"]["breaker"], "closed", "{overview}");
    assert_eq!(overview["service"]["waiting_photos"], 0, "{overview}");
    assert_eq!(overview["jobs"].as_array().unwrap().len(), 3, "{overview}");
    // The photos are gone from the server's disk; only the reports are kept.
    let jobs_dir = server.data_path().join("enrol-jobs");
    for entry in std::fs::read_dir(&jobs_dir).unwrap() {
        let files: Vec<String> = std::fs::read_dir(entry.unwrap().path())
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["job.json"], "{}", jobs_dir.display());
    }

    // The box pulls the three templates and recognises the three students in class.
    classroom.sync_until_done();
    for s in &students {
        assert_eq!(
            classroom.store().template_count(&s.id).unwrap(),
            1,
            "{}",
            s.id
        );
    }
    let outcome = capture(
        &classroom,
        &[
            &students[0].class_photo,
            &students[1].class_photo,
            &students[2].class_photo,
        ],
    );
    // Each class photo is another photo of its student: all three present, nobody to review.
    let ids: std::collections::BTreeSet<String> = students.iter().map(|s| s.id.clone()).collect();
    assert_eq!(names(&outcome["present"]), ids, "{outcome}");
    assert_eq!(outcome["review"], serde_json::json!([]), "{outcome}");

    // IT's way: `sync-server enrol-photos` uploads a ZIP, follows the job, and reports by file.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("term-2.zip");
    std::fs::write(
        &zip,
        common::zip_of(&[
            (
                &format!("{}_3.jpg", students[0].id),
                std::fs::read(&students[0].enrol_photo).unwrap(),
            ),
            (
                "Nobody_Else.jpg",
                std::fs::read(&students[0].enrol_photo).unwrap(),
            ),
        ]),
    )
    .unwrap();
    let mut cli = std::process::Command::new(super::server::server_binary())
        .arg("enrol-photos")
        .arg(&zip)
        .args(["--server", &server.base, "--school", SCHOOL])
        .args(["--username", super::server::ADMIN, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(super::server::PASSWORD.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Nobody_Else.jpg\trefused\tunknown_student\tno student of this school"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("1 of 2 photos enrolled, 1 refused, 0 dropped, 0 expired"),
        "{stdout}"
    );
    // Not a terminal: the progress is a line per tenth, the last one full.
    assert!(
        stderr
            .trim_end()
            .ends_with("2/2 photos  enrolled 1  refused 1"),
        "{stderr}"
    );
}

#[test]
fn photos_enrolled_centrally_are_recognised_by_a_box_on_the_embedded_store() {
    photos_enrolled_centrally_are_recognised_by_a_box(Backend::Embedded);
}

#[test]
fn photos_enrolled_centrally_are_recognised_by_a_box_on_mongodb() {
    photos_enrolled_centrally_are_recognised_by_a_box(Backend::Mongo);
}

/// `n` templates of `student`, made on a box of the school in the service's model and space and
/// pushed: unit vectors unlike any face.
fn add_templates(server: &Server, service: &MlService, student: &str, n: usize) {
    let status: Value = reqwest::blocking::Client::new()
        .get(service.url("/v1/ml/status"))
        .header("x-api-key", common::ML_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let dimensions = status["dimensions"].as_u64().unwrap() as usize;
    let one_hot = (0..n).map(|i| {
        let mut vector = vec![0.0f32; dimensions];
        vector[i % dimensions] = 1.0;
        (student, vector)
    });
    push_templates(server, &status, one_hot);
}

/// Uploads `like`'s photo as `student`'s: refused, a look-alike naming `like`.
fn refused_as_look_alike(server: &Server, student: &common::Student, like: &common::Student) {
    let (status, job) = upload_photos(server, &student.id, &[&like.enrol_photo], "wait_s=60");
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["report"][0]["code"], "looks_like_another", "{job}");
    let reason = job["report"][0]["reason"].as_str().unwrap();
    assert!(reason.contains(&like.id), "{job}");
}

/// A school whose server sends galleries in parts of 4 to a service of one pipeline and `serve`
/// (more of its `[serve]`): student 0 enrolled centrally, then 40 templates of student 2 pushed by
/// a box, so the next call's gallery holds 41 templates new to the service.
fn gallery_of_41_in_parts_of_4(
    serve: &str,
) -> (Vec<common::Student>, MlService, Server, tempfile::TempDir) {
    let students = common::students(3);
    let service = MlService::start(&format!("pipelines = 1\n{serve}"), "");
    let (server, roster) = school_with(
        Backend::Embedded,
        &students,
        &ml_config(service.port, "gallery_part = 4"),
    );
    let (status, job) = upload_photos(
        &server,
        &students[0].id,
        &[&students[0].enrol_photo],
        "wait_s=60",
    );
    assert_eq!(
        (status, &job["report"][0]["state"]),
        (200, &"enrolled".into()),
        "{job}"
    );
    add_templates(&server, &service, &students[2].id, 40);
    (students, service, server, roster)
}

/// A gallery larger than one call to the service may carry goes in parts: calls without photos,
/// each naming the gallery the service kept from the one before. The photo's call after them is
/// checked against all of it.
#[test]
fn a_gallery_past_the_services_body_limit_goes_in_parts() {
    // A call of one photo (at most ~18 KB of base64) and 4 templates (~2.8 KB each) fits in
    // 64 KiB; one with the 41 templates below (~115 KB) would be refused with 413.
    let (students, service, server, _roster) =
        gallery_of_41_in_parts_of_4("max_body_bytes = 65536");

    // The same face for someone else: found among the parts, a look-alike.
    refused_as_look_alike(&server, &students[1], &students[0]);
    // Each of the 41 went once: 10 parts of 4, then 1 with the photo.
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_sent_total"),
        41
    );
    let calls = |status: u16| {
        service.metric(&format!(
            "rollcall_ml_requests_total{{route=\"/v1/ml/enrol-faces\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(calls(200), 1 + 10 + 1);

    // The student's own face: enrolled, on the gallery built (nothing sent again).
    let (status, job) = upload_photos(
        &server,
        &students[1].id,
        &[&students[1].enrol_photo],
        "wait_s=60",
    );
    assert_eq!(
        (status, &job["report"][0]["state"]),
        (200, &"enrolled".into()),
        "{job}"
    );
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_sent_total"),
        41
    );
}

/// A service that keeps no galleries says so in every answer (no gallery id): after the first,
/// a gallery past `gallery_part` goes whole with the photos, with no part call first that the
/// service would let go at once.
#[test]
fn a_service_that_keeps_no_galleries_is_sent_no_parts() {
    let (students, service, server, _roster) = gallery_of_41_in_parts_of_4("kept_galleries = 0");

    // The look-alike is found in the whole gallery, sent once with the photo: 41 templates in one
    // call. Parts would have been a call of 4 more, answered without an id.
    refused_as_look_alike(&server, &students[1], &students[0]);
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_sent_total"),
        41
    );
    assert_eq!(
        service.metric("rollcall_ml_requests_total{route=\"/v1/ml/enrol-faces\",status=\"200\"}"),
        2
    );
}

/// The service down: five failed calls open the breaker and the photos wait on disk; a student
/// whose consent is withdrawn meanwhile has their photos dropped and deleted; the service back,
/// a probe after the reset time closes the breaker and the queued photos are enrolled.
#[test]
fn queued_photos_wait_for_a_service_that_is_down_and_go_through_once_it_is_back() {
    let students = common::students(2);
    let port = free_port();
    let (server, _roster) = school_with(
        Backend::Embedded,
        &students,
        &ml_config(
            port,
            "timeout_s = 5\nretry_delays_ms = [50, 100, 200]\nbreaker_failures = 5\nbreaker_reset_s = 3",
        ),
    );
    let (status, waiting) = upload_photos(
        &server,
        &students[0].id,
        &[&students[0].enrol_photo],
        "wait_s=0",
    );
    assert_eq!(status, 202, "{waiting}");
    let (status, dropped) = upload_photos(
        &server,
        &students[1].id,
        &[&students[1].enrol_photo],
        "wait_s=0",
    );
    assert_eq!(status, 202, "{dropped}");

    // Nothing listens: 4 tries of one call, then a fifth opens the breaker.
    let deadline = Instant::now() + Duration::from_secs(60);
    let overview = loop {
        let overview = server.call(
            Method::GET,
            &format!("/v1/schools/{SCHOOL}/enrolment"),
            None,
        );
        if overview["service"]["breaker"] == "open" {
            break overview;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never opened: {overview}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        overview["service"]["failures"].as_u64().unwrap() >= 5,
        "{overview}"
    );
    assert_eq!(overview["service"]["waiting_photos"], 2, "{overview}");
    assert!(overview["service"]["last_error"].is_string(), "{overview}");
    // While open, calls fail fast: a new upload is queued, not tried.
    let failures = overview["service"]["failures"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let still = server.call(
        Method::GET,
        &format!("/v1/schools/{SCHOOL}/enrolment"),
        None,
    );
    assert_eq!(
        still["service"]["failures"].as_u64().unwrap(),
        failures,
        "{still}"
    );

    // Consent withdrawn while the photo waits.
    server.set_consent(&students[1].id, "withdrawn");

    // The service comes up on the configured port; the probe closes the breaker.
    let mut service = MlService::start_on(&format!("127.0.0.1:{port}"), "pipelines = 1", "");
    let job = server.enrolment_done(waiting["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["enrolled"], 1, "{job}");
    let job = server.enrolment_done(dropped["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["dropped"], 1, "{job}");
    assert_eq!(job["report"][0]["code"], "no_consent", "{job}");
    let overview = server.call(
        Method::GET,
        &format!("/v1/schools/{SCHOOL}/enrolment"),
        None,
    );
    assert_eq!(overview["service"]["breaker"], "closed", "{overview}");
    let dir = server
        .data_path()
        .join("enrol-jobs")
        .join(dropped["id"].as_str().unwrap());
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["job.json"], "the dropped photo was deleted");

    // A restarted service keeps no gallery: the call naming the one kept before is refused as
    // `gallery_unknown`, and the server sends the whole gallery at once.
    service.kill();
    let service = MlService::start_on(&format!("127.0.0.1:{port}"), "pipelines = 1", "");
    let (status, again) = upload_photos(
        &server,
        &students[0].id,
        &[&students[0].enrol_photo],
        "wait_s=60",
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["enrolled"], 1, "{again}");
    assert_eq!(
        service.metric("rollcall_ml_requests_total{route=\"/v1/ml/enrol-faces\",status=\"409\"}"),
        1
    );
    assert_eq!(
        service.metric("rollcall_ml_gallery_templates_sent_total"),
        1
    );
}

/// A service that stalls: each call times out after `timeout_s` and is retried after the
/// configured delays; the third try gets through.
#[test]
fn a_stalling_service_is_timed_out_and_retried_on_schedule() {
    let students = common::students(1);
    let service = MlService::start("pipelines = 1", "");
    let proxy = FlakyProxy::stalling(service.port, 2, Duration::from_secs(5));
    let (server, _roster) = school_with(
        Backend::Embedded,
        &students,
        &ml_config(
            proxy.port,
            "timeout_s = 1\nretry_delays_ms = [300, 600, 1200]\nbreaker_failures = 5",
        ),
    );
    let started = Instant::now();
    let (status, job) = upload_photos(
        &server,
        &students[0].id,
        &[&students[0].enrol_photo],
        "wait_s=60",
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["enrolled"], 1, "{job}");
    assert_eq!(
        proxy
            .counts
            .stalled
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // Two timeouts of 1 s and the waits of 300 and 600 ms before the retries.
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    let log = server.log();
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ML service call failed; retrying"))
        .collect();
    assert_eq!(retries.len(), 2, "{log}");
    assert!(retries[0].contains("retry_in_ms=300"), "{}", retries[0]);
    assert!(retries[1].contains("retry_in_ms=600"), "{}", retries[1]);
    assert!(retries[0].contains("no answer in time"), "{}", retries[0]);
}

/// The vectors of the server's live templates, by source, from its embedded database.
fn server_templates(server: &Server) -> Vec<(String, String, String, Vec<f32>)> {
    let db = rusqlite::Connection::open(server.data_path().join("rollcall-server.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT id, student_id, space, embedding FROM templates WHERE tombstone = 0
             ORDER BY student_id, space",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let blob: Vec<u8> = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            blob.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The enrolment overview's `keep_crops` and `kept_crops`.
fn crops_of(server: &Server) -> (Option<bool>, Option<u64>) {
    let overview = server.call(
        Method::GET,
        &format!("/v1/schools/{SCHOOL}/enrolment"),
        None,
    );
    (
        overview["keep_crops"].as_bool(),
        overview["kept_crops"].as_u64(),
    )
}

/// A school that keeps face crops: central enrolment keeps each template's aligned face, and
/// after a model change re-embedding makes a template in the new space from each, equal to the
/// one the photo made, which a box recognises; once per crop and space. Switched off, the crops
/// are deleted. (No second embedding model ships with this build, so the model change is made
/// by relabelling the stored templates as an older space, with the server stopped.)
#[test]
fn kept_face_crops_are_reembedded_after_a_model_change() {
    let students = common::students(2);
    let service = MlService::start("pipelines = 1", "");
    let (mut server, _roster) =
        school_with(Backend::Embedded, &students, &ml_config(service.port, ""));
    let mut dashboard = Dashboard::sign_in(&server);
    dashboard.keep_crops(true);
    for s in &students {
        let (status, job) = upload_photos(&server, &s.id, &[&s.enrol_photo], "wait_s=60");
        assert_eq!(
            (status, job["report"][0]["state"].as_str()),
            (200, Some("enrolled")),
            "{job}"
        );
    }
    assert_eq!(crops_of(&server), (Some(true), Some(2)));
    // Nothing to do in the service's own space.
    let reembed = format!("/v1/schools/{SCHOOL}/reembed");
    let report = server.call(Method::POST, &reembed, None);
    assert_eq!(
        (report["made"].as_u64(), report["already"].as_u64()),
        (Some(0), Some(2)),
        "{report}"
    );

    // The model changes: the templates held were made by the one before.
    let made_by_photos = server_templates(&server);
    assert_eq!(made_by_photos.len(), 2);
    server.kill();
    let db = rusqlite::Connection::open(server.data_path().join("rollcall-server.sqlite")).unwrap();
    db.execute("UPDATE templates SET space = 'fr_feature-v0'", [])
        .unwrap();
    drop(db);
    server.resume();

    // From the dashboard's Enrolment page: two new templates, in the service's space.
    let (status, _, page) = dashboard.get(&format!("/enrolment?school={SCHOOL}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("2 kept"), "{page}");
    let (status, location, body) = dashboard.post_form(
        "/enrolment/reembed",
        serde_urlencoded::to_string([("csrf", csrf(&page).as_str()), ("school", SCHOOL)]).unwrap(),
    );
    assert_eq!(status, 303, "{body}");
    let (_, _, page) = dashboard.get(&location);
    assert!(
        page.contains(
            "Re-embedded into fr_feature-v1: 2 new templates from kept crops; 0 already there."
        ),
        "{page}"
    );
    let held = server_templates(&server);
    assert_eq!(held.len(), 4, "{held:?}");
    for (old_id, student, _, old) in &made_by_photos {
        let (_, _, _, new) = held
            .iter()
            .find(|(id, s, space, _)| s == student && space == "fr_feature-v1" && id != old_id)
            .unwrap_or_else(|| panic!("{student}: no template in the new space"));
        let cosine: f32 = old.iter().zip(new).map(|(a, b)| a * b).sum();
        assert!(cosine >= 0.9999, "{student}: {cosine}");
    }
    // Again: every crop is already there.
    let report = server.call(Method::POST, &reembed, None);
    assert_eq!(
        (report["made"].as_u64(), report["already"].as_u64()),
        (Some(0), Some(2)),
        "{report}"
    );
    assert_eq!(report["need_photos"], serde_json::json!([]), "{report}");

    // A box on the new model pulls them and marks both students present.
    let classroom = joined(&server, "", "room A");
    classroom.sync_until_done();
    let outcome = capture(
        &classroom,
        &[&students[0].class_photo, &students[1].class_photo],
    );
    let ids: std::collections::BTreeSet<String> = students.iter().map(|s| s.id.clone()).collect();
    assert_eq!(names(&outcome["present"]), ids, "{outcome}");

    // The school stops keeping crops: they are deleted, and a student is enrolled without one.
    dashboard.keep_crops(false);
    assert_eq!(crops_of(&server), (Some(false), Some(0)));
    let (status, job) = upload_photos(
        &server,
        &students[0].id,
        &[&students[0].class_photo],
        "wait_s=60&force=true",
    );
    assert_eq!(status, 200, "{job}");
    assert_eq!(crops_of(&server), (Some(false), Some(0)));
    let (status, _, audit) = dashboard.get(&format!("/audit?school={SCHOOL}"));
    assert_eq!(status, 200, "{audit}");
    assert!(audit.contains("re-embedded kept face crops"), "{audit}");
}
