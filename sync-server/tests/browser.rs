//! The web pages in a real browser: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, which `scripts/test` installs like tmux). A person's path through the pages:
//! sign in, read the sections' counts, open a roll, sign out; screenshots of each page at
//! 1280x800 and 390x844 go to `target/web-screenshots/` to be looked at (kept whether the run
//! passes or fails).

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DISTRICT_ADMIN, PASSWORD, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use sync_server::api::Clock;
use sync_server::store::Store;

/// A chromedriver on a free loopback port, ended when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Chromium, its child, goes with it on drop.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}): install Debian's chromium and chromium-driver, as scripts/test does")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                         "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display())],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal");
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: a test that panics never closes its browser session.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves the page at both sizes as `<name>-1280.png` and `<name>-390.png`.
async fn screenshots(browser: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1280, 800), (390, 844)] {
        browser.set_window_size(width, height).await.unwrap();
        let png = browser.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
    }
    browser.set_window_size(1280, 800).await.unwrap();
}

/// Waits until the page at `path` has loaded: a click or a submit returns before the browser has
/// followed the answer.
async fn wait_for_path(browser: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = browser.current_url().await.unwrap();
        let ready = browser
            .execute("return document.readyState", vec![])
            .await
            .unwrap();
        if url.path() == path && ready == "complete" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still at {url} after 20 s, waiting for {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `base` + `path` and waits until it has loaded (at `path` without its query).
async fn open(browser: &Client, base: &str, path: &str) {
    browser.goto(&format!("{base}{path}")).await.unwrap();
    wait_for_path(browser, path.split('?').next().unwrap_or(path)).await;
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_signs_in_reads_the_counts_opens_a_roll_and_signs_out() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    // START is Monday 08:00 UTC: maths (07:45) has its roll, art (07:00) has none in time.
    for (section, starts, ends) in [
        (north.math(), "07:45", "08:30"),
        (north.art(), "07:00", "07:40"),
    ] {
        server
            .put(
                &format!("/v1/schools/north/sections/{section}/schedule"),
                Some(&north.admin),
                serde_json::json!({ "slots": [{"weekday": 1, "starts": starts, "ends": ends, "room": "R12"}] }),
            )
            .await
            .assert_ok();
    }

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;

    browser.goto(&format!("{}/", server.base)).await.unwrap();
    wait_for_path(&browser, "/login").await;
    screenshots(&browser, "login").await;
    let form = browser.form(Locator::Css("main form")).await.unwrap();
    form.set_by_name("username", "north-admin").await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    form.submit().await.unwrap();

    wait_for_path(&browser, "/").await;
    assert_eq!(text_of(&browser, "main h1").await, "north school: today");
    let lessons = text_of(&browser, "main table.lessons tbody").await;
    assert!(
        lessons
            .lines()
            .any(|l| l.starts_with("Maths") && l.contains("07:45-08:30 taken 1 0 0 0 0")),
        "the maths lesson, taken: {lessons:?}"
    );
    assert!(
        lessons
            .lines()
            .any(|l| l.starts_with("Art") && l.contains("Not registered")),
        "{lessons:?}"
    );
    screenshots(&browser, "today").await;
    let sections = browser.find(Locator::LinkText("Sections")).await.unwrap();
    sections.click().await.unwrap();
    wait_for_path(&browser, "/sections").await;
    assert_eq!(text_of(&browser, "main h1").await, "north school");
    let rows = text_of(&browser, "main tbody").await;
    let maths = rows.lines().find(|line| line.starts_with("Maths"));
    assert!(
        maths.is_some_and(|row| row.ends_with("2024-09-02 08:00 UTC 1 0 0 0 0")),
        "one present in maths: {rows:?}"
    );
    screenshots(&browser, "sections").await;

    let link = browser.find(Locator::LinkText("Maths")).await.unwrap();
    link.click().await.unwrap();
    wait_for_path(&browser, &format!("/sections/{}", north.math())).await;
    assert_eq!(text_of(&browser, "main h1").await, "Maths");
    let roll = text_of(&browser, "main tbody").await;
    assert!(
        roll.contains("present") && roll.contains("machine") && roll.contains("0.80"),
        "{roll}"
    );
    screenshots(&browser, "section").await;
    // The grid below the roll: P for the one lesson, and the student's rate.
    let grid = text_of(&browser, "table.grid tbody").await;
    assert!(grid.contains('P') && grid.contains("100.0"), "{grid}");
    let section_url = browser.current_url().await.unwrap();
    browser.goto(&format!("{section_url}#grid")).await.unwrap();
    screenshots(&browser, "section-grid").await;

    // Correct the mark, with a reason; the roll then says who decided, and the audit log why.
    let form = browser.form(Locator::Css("form.roll")).await.unwrap();
    form.set_by_name(&format!("mark:{}", north.s1()), "late")
        .await
        .unwrap();
    form.set_by_name("reason", "Arrived after the dentist")
        .await
        .unwrap();
    form.submit().await.unwrap();
    assert_eq!(wait_for_notice(&browser).await, "1 mark corrected.");
    let roll = text_of(&browser, "main tbody").await;
    assert!(roll.contains("office (north-admin)"), "{roll}");
    screenshots(&browser, "section-corrected").await;
    let audit = browser.find(Locator::LinkText("Audit log")).await.unwrap();
    audit.click().await.unwrap();
    wait_for_path(&browser, "/audit").await;
    let lines = text_of(&browser, "main tbody").await;
    assert!(
        lines.contains("corrected a mark") && lines.contains("Arrived after the dentist"),
        "{lines}"
    );
    screenshots(&browser, "audit").await;
    browser.back().await.unwrap();
    browser.back().await.unwrap();
    wait_for_path(&browser, &format!("/sections/{}", north.math())).await;

    // The first student of the roll, from their name.
    let student = browser.find(Locator::Css("main tbody th a")).await.unwrap();
    student.click().await.unwrap();
    wait_for_path(&browser, &format!("/students/{}", north.s1())).await;
    let figures = text_of(&browser, "main section.card").await;
    assert!(figures.contains("Attended"), "{figures}");
    screenshots(&browser, "student").await;

    // Reports: the nav's link, then a range with the fixture's lessons.
    let reports = browser.find(Locator::LinkText("Reports")).await.unwrap();
    reports.click().await.unwrap();
    wait_for_path(&browser, "/reports").await;
    let form = browser.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("from", "2024-09-01").await.unwrap();
    form.set_by_name("to", "2024-09-30").await.unwrap();
    form.submit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("from=2024-09-01")
    {
        assert!(Instant::now() < deadline, "the report form did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_path(&browser, "/reports").await;
    let summary = text_of(&browser, "main tbody").await;
    assert!(
        summary.contains("Maths") && summary.contains("100.0"),
        "{summary}"
    );
    screenshots(&browser, "reports").await;

    // Devices: the fixture's box, whose clock lost three days, then a new code, shown once.
    let three_days_ago = server.clock.now() - 3 * 86_400_000;
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            serde_json::json!({"protocol": 2, "events": [], "report": {
                "app_version": "0.9.8", "outbox_waiting": 0, "clock_ms": three_days_ago}}),
        )
        .await
        .assert_ok();
    let devices = browser.find(Locator::LinkText("Devices")).await.unwrap();
    devices.click().await.unwrap();
    wait_for_path(&browser, "/devices").await;
    let state = text_of(&browser, "main tbody td[data-label='State']").await;
    assert!(
        state.contains(
            "Clock 3 days behind the server's at its last push: its marks carry the wrong time"
        ),
        "{state}"
    );
    let form = browser
        .form(Locator::Css("form[action='/devices/codes']"))
        .await
        .unwrap();
    form.set_by_name("device_name", "Room 12").await.unwrap();
    form.submit().await.unwrap();
    wait_for_path(&browser, "/devices/codes").await;
    let code = text_of(&browser, ".the-code").await;
    assert_eq!(code.len(), 14, "{code}");
    screenshots(&browser, "devices-code").await;

    let users = browser.find(Locator::LinkText("Users")).await.unwrap();
    users.click().await.unwrap();
    wait_for_path(&browser, "/users").await;
    let accounts = text_of(&browser, "main tbody").await;
    assert!(accounts.contains("north-teacher"), "{accounts}");
    screenshots(&browser, "users").await;

    let sign_out = browser
        .find(Locator::Css("header form button"))
        .await
        .unwrap();
    sign_out.click().await.unwrap();
    wait_for_path(&browser, "/login").await;
    // Signed out for good: the start page sends the browser back to sign in.
    browser.goto(&format!("{}/", server.base)).await.unwrap();
    wait_for_path(&browser, "/login").await;
    browser.close().await.unwrap();
}

/// Signs `username` in from the sign-in page; waits for Today.
async fn sign_in(browser: &Client, base: &str, username: &str) {
    open(browser, base, "/login").await;
    let form = browser.form(Locator::Css("main form")).await.unwrap();
    form.set_by_name("username", username).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    form.submit().await.unwrap();
    wait_for_path(browser, "/").await;
}

/// Waits until the browser's address contains `part`.
async fn wait_for_url(browser: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser.current_url().await.unwrap().as_str().contains(part) {
        assert!(
            Instant::now() < deadline,
            "no {part} in the address after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = browser.current_url().await.unwrap();
    wait_for_path(browser, url.path()).await;
}

/// Chooses the export's files in the roster page's file input and sends the form.
async fn upload(browser: &Client, dir: &std::path::Path, files: Vec<(String, String)>) {
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(&name);
        std::fs::write(&path, text).unwrap();
        paths.push(path.display().to_string());
    }
    let input = browser.find(Locator::Css("input#files")).await.unwrap();
    // Chromedriver takes several files for a `multiple` input as one path per line.
    input.send_keys(&paths.join("\n")).await.unwrap();
    let form = browser
        .form(Locator::Css("form[enctype='multipart/form-data']"))
        .await
        .unwrap();
    mark_page(browser).await;
    form.submit().await.unwrap();
    wait_for_new_page(browser).await;
}

/// Marks the page shown now, so that `wait_for_new_page` can tell it from the next one at the
/// same address.
async fn mark_page(browser: &Client) {
    browser
        .execute("window.rollcallOldPage = true;", vec![])
        .await
        .unwrap();
}

/// Waits until a page other than the marked one has loaded.
async fn wait_for_new_page(browser: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let loaded = browser
            .execute(
                "return window.rollcallOldPage === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await;
        if loaded.is_ok_and(|v| v == serde_json::json!(true)) {
            return;
        }
        assert!(Instant::now() < deadline, "no new page after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_admin_uploads_a_roster_exports_a_csv_and_erases_a_student() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, "north-admin").await;

    // A roster with a row lacking its id, line 6 of users.csv: the page names the line.
    let roster = browser.find(Locator::LinkText("Roster")).await.unwrap();
    roster.click().await.unwrap();
    wait_for_path(&browser, "/roster").await;
    let broken = tempfile::tempdir().unwrap();
    let files = common::roster_files("north", &[",,true,student,No,Id"]);
    upload(&browser, broken.path(), files).await;
    screenshots(&browser, "roster-problem").await;
    let problems = text_of(&browser, "main .problems").await;
    assert!(problems.contains("users.csv:6:"), "{problems}");

    // The fixed export adds Grace: previewed, then applied.
    let fixed = tempfile::tempdir().unwrap();
    let files = common::roster_files("north", &["north-s3,,true,student,Grace,Hopper"]);
    upload(&browser, fixed.path(), files).await;
    let preview = text_of(&browser, "main section.card").await;
    assert!(
        preview.contains("1 added") && preview.contains("Grace Hopper (north-s3)"),
        "{preview}"
    );
    screenshots(&browser, "roster-preview").await;
    let apply = browser
        .find(Locator::Css("form[action='/roster/apply'] button"))
        .await
        .unwrap();
    apply.click().await.unwrap();
    wait_for_url(&browser, "applied=").await;
    assert_eq!(
        text_of(&browser, "main .notice").await,
        "Roster applied: 1 added, 0 changed, 0 deactivated."
    );
    screenshots(&browser, "roster-applied").await;

    // The month's CSV, fetched by the page's own link with the browser's session: a header
    // and one row per student and session.
    open(
        &browser,
        &server.base,
        "/reports?from=2024-09-01&to=2024-09-30",
    )
    .await;
    let link = browser
        .find(Locator::Css("a[href^='/reports/attendance.csv']"))
        .await
        .unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    let csv = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.text()).then(done, e => done('failed: ' + e));",
            vec![serde_json::json!(href)],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap().to_owned();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("date,start,section_id"), "{csv}");
    assert_eq!(rows.len(), 3, "two lessons of one student each: {csv}");
    assert!(
        rows.iter()
            .any(|r| r.contains(&north.s1()) && r.contains(",P,present,machine,")),
        "{csv}"
    );

    // Erase Ada: asked first, then each box's purge state, which changes once the box syncs.
    open(&browser, &server.base, &format!("/students/{}", north.s1())).await;
    let erase = browser
        .find(Locator::Css("main a[href*='/erase']"))
        .await
        .unwrap();
    erase.click().await.unwrap();
    wait_for_path(&browser, &format!("/students/{}/erase", north.s1())).await;
    screenshots(&browser, "erase-confirm").await;
    let confirm = browser
        .find(Locator::Css("main form button.danger"))
        .await
        .unwrap();
    confirm.click().await.unwrap();
    wait_for_path(&browser, &format!("/erasures/{}", north.s1())).await;
    let boxes = text_of(&browser, "main tbody").await;
    assert!(boxes.contains("Not purged yet"), "{boxes}");
    screenshots(&browser, "erasure-pending").await;
    server.box_syncs_its_feed(&north.device).await;
    mark_page(&browser).await;
    browser.refresh().await.unwrap();
    wait_for_new_page(&browser).await;
    let boxes = text_of(&browser, "main tbody").await;
    assert!(
        boxes.contains("Purged") && !boxes.contains("Not purged yet"),
        "{boxes}"
    );
    screenshots(&browser, "erasure-purged").await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn the_recognition_audit_shows_the_demo_schools_askew_camera() {
    let server = Server::start().await;
    // Three weeks of the demo school up to Monday 14:00 (START is Monday 08:00 UTC).
    let now = common::START + 6 * 3_600_000;
    let spec = sync_server::demo::DemoSpec {
        school_id: "demo".into(),
        students: 75,
        days: 15,
    };
    sync_server::demo::fill(&*server.store, &spec, now, |_, _| {})
        .await
        .expect("demo data");
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
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, "demo-admin").await;
    let link = browser
        .find(Locator::LinkText("Recognition"))
        .await
        .unwrap();
    link.click().await.unwrap();
    wait_for_path(&browser, "/recognition").await;
    let rising = browser
        .find_all(Locator::Css("tr.rising th"))
        .await
        .unwrap();
    assert_eq!(rising.len(), 2, "the askew camera's section and box");
    screenshots(&browser, "recognition").await;
    browser.close().await.unwrap();
}

/// Waits for the answer to a form: the page it redirects to carries a notice.
async fn wait_for_notice(browser: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("notice=")
    {
        assert!(Instant::now() < deadline, "the form's answer did not come");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text_of(browser, "main .notice").await
}

#[tokio::test]
async fn an_admin_books_a_trip_ahead_and_adds_a_guardian() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.push_two_lessons(&north).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, "north-admin").await;

    // Next week's trip, booked on the section page (today is 2024-09-02).
    let section = format!("/sections/{}", north.math());
    open(&browser, &server.base, &section).await;
    let form = browser
        .form(Locator::Css("form[action$='/excuse']"))
        .await
        .unwrap();
    form.set_by_name("from", "2024-09-09").await.unwrap();
    form.set_by_name("to", "2024-09-13").await.unwrap();
    form.set_by_name("reason", "Field week at the coast")
        .await
        .unwrap();
    form.submit().await.unwrap();
    let notice = wait_for_notice(&browser).await;
    assert!(
        notice.starts_with("Trip booked for 2024-09-09 to 2024-09-13: no lesson held yet"),
        "{notice}"
    );
    let trips = text_of(&browser, "section[aria-labelledby='trips-title'] tbody").await;
    assert!(
        trips.contains("2024-09-09 to 2024-09-13") && trips.contains("Field week at the coast"),
        "{trips}"
    );
    let url = browser.current_url().await.unwrap();
    browser.goto(&format!("{url}#trips-title")).await.unwrap();
    screenshots(&browser, "section-trips").await;

    // A guardian, added on the student page.
    let student = format!("/students/{}", north.s1());
    open(&browser, &server.base, &student).await;
    assert!(
        text_of(&browser, "section[aria-labelledby='guardians-title']")
            .await
            .contains("No guardian on record")
    );
    let form = browser
        .form(Locator::Css("form[action$='/guardians']"))
        .await
        .unwrap();
    form.set_by_name("given_name", "Grace").await.unwrap();
    form.set_by_name("family_name", "Hopper").await.unwrap();
    form.set_by_name("email", "grace.hopper@example.org")
        .await
        .unwrap();
    form.set_by_name("relationship", "guardian").await.unwrap();
    form.submit().await.unwrap();
    assert_eq!(wait_for_notice(&browser).await, "Grace Hopper added.");
    let guardians = text_of(&browser, "section[aria-labelledby='guardians-title'] tbody").await;
    assert!(
        guardians.contains("Grace Hopper")
            && guardians.contains("guardian")
            && guardians.contains("grace.hopper@example.org")
            && guardians.contains("receives them"),
        "{guardians}"
    );
    screenshots(&browser, "student-guardians").await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn an_admin_reads_the_notices_sent_and_failed_and_a_guardian_unsubscribes() {
    use common::START;
    use common::smtp::Sink;
    use sync_server::config::{SmtpConfig, SmtpSecurity};
    use sync_server::domain::notice::{Kind, Letter, Notice};
    use sync_server::notify::Notifier;
    use sync_server::notify::mail::{GuardianMail, Line};

    let server = Server::start().await;
    let north = server.school("north").await;
    let sink = Sink::start(&[], &["bounce@example.org"]);
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "North School <attendance@north.example.org>".into(),
        public_url: server.base.clone(),
        plan_every_seconds: 60,
        timeout_seconds: 5,
        lease_seconds: 60,
        max_per_second: 1000,
        concurrency: 1,
    };
    let notifier = Notifier::new(server.store.clone(), server.clock.clone(), &config).unwrap();
    let contact = sync_server::domain::guardian::Contact {
        given_name: "Grace".into(),
        family_name: "Hopper".into(),
        email: "grace.hopper@example.org".into(),
        relationship: sync_server::domain::guardian::Relationship::Guardian,
    };
    let grace = server
        .store
        .link_guardian("north", &north.s1(), &contact, "test", START)
        .await
        .unwrap()
        .unwrap()
        .guardian;
    let mail = |to: &str| GuardianMail {
        school: "North school".into(),
        greeting: format!("Grace Hopper ({to})"),
        date: "Monday 2 September 2024".into(),
        correction: false,
        lines: vec![
            Line {
                name: "Ada".into(),
                status: "absent".into(),
                lesson: "Maths".into(),
                time: "08:00".into(),
            },
            Line {
                name: "Ada".into(),
                status: "late".into(),
                lesson: "Art".into(),
                time: "10:00".into(),
            },
        ],
        withdrawn: Vec::new(),
        unsubscribe: format!("{}/unsubscribe?...", server.base),
    };
    let notices: Vec<Notice> = ["grace.hopper@example.org", "bounce@example.org"]
        .iter()
        .enumerate()
        .map(|(n, to)| {
            let (subject, text, html) = mail(to).render().unwrap();
            let letter = Letter {
                id: format!("n-{n}"),
                school_id: "north".into(),
                kind: Kind::Absence,
                key: format!("k-{n}"),
                recipient: (*to).into(),
                guardian_id: (n == 0).then(|| grace.id.clone()),
                day: "2024-09-02".into(),
                subject,
                text,
                html,
                facts: String::new(),
                students: vec![north.s1()],
                message_id: format!("<n-{n}@north.example.org>"),
            };
            let mut notice = Notice::queued(letter, START);
            notice.created_at = START + n as i64;
            notice
        })
        .collect();
    server.store.enqueue_notices(&notices).await.unwrap();
    let done = notifier.deliver().await.unwrap();
    assert_eq!((done.sent, done.failed), (1, 1));
    let sent = sink.wait_for(1, 10).await;
    let link = sent[0]
        .header("list-unsubscribe")
        .trim_matches(['<', '>'])
        .to_owned();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, "north-admin").await;
    open(&browser, &server.base, "/notices").await;
    let table = text_of(&browser, "main table tbody").await;
    assert!(
        table.contains("bounce@example.org") && table.contains("failed"),
        "{table}"
    );
    assert!(table.contains("550"), "{table}");
    screenshots(&browser, "notices").await;
    open(&browser, &server.base, "/notices/n-0").await;
    assert!(
        text_of(&browser, "pre")
            .await
            .contains("Ada was absent in Maths at 08:00.")
    );
    screenshots(&browser, "notice").await;
    open(&browser, &server.base, "/notices/preview?kind=absence").await;
    assert!(
        text_of(&browser, "pre")
            .await
            .contains("Sam was absent in Science 4A at 13:30.")
    );
    screenshots(&browser, "notice-preview").await;
    open(&browser, &server.base, "/settings").await;
    screenshots(&browser, "settings").await;

    // The guardian's link: a page with one button, then done.
    browser.goto(&link).await.unwrap();
    wait_for_path(&browser, "/unsubscribe").await;
    screenshots(&browser, "unsubscribe").await;
    browser
        .form(Locator::Css("main form"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    // The answer is the page itself (no redirect: the link must work without a session).
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.find(Locator::Css("main .notice")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the unsubscribe answer did not come"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = text_of(&browser, "main .notice").await;
    assert!(said.starts_with("Done: you will get no more"), "{said}");
    screenshots(&browser, "unsubscribed").await;
    let held = server
        .store
        .guardian("north", &grace.id)
        .await
        .unwrap()
        .unwrap();
    assert!(held.opted_out_at.is_some());
    browser.close().await.unwrap();
}

/// The district admin's first visit: the schools list, a new school refused for an id taken, then
/// created, landing on its settings.
#[tokio::test]
async fn the_district_admin_creates_a_school() {
    let server = Server::start().await;
    server.school("north").await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, DISTRICT_ADMIN).await;
    assert_eq!(text_of(&browser, "main h1").await, "Schools");

    let form = browser
        .form(Locator::Css("form[action='/schools']"))
        .await
        .unwrap();
    form.set_by_name("name", "North Again").await.unwrap();
    form.set_by_name("id", "north").await.unwrap();
    mark_page(&browser).await;
    form.submit().await.unwrap();
    wait_for_new_page(&browser).await;
    assert_eq!(
        text_of(&browser, "main [role=alert]").await,
        "school north already exists"
    );
    fits_a_phone(&browser).await;
    screenshots(&browser, "schools-refused").await;

    let form = browser
        .form(Locator::Css("form[action='/schools']"))
        .await
        .unwrap();
    form.set_by_name("name", "West High School").await.unwrap();
    form.set_by_name("id", "west-high").await.unwrap();
    form.submit().await.unwrap();
    wait_for_path(&browser, "/settings").await;
    assert!(
        text_of(&browser, "main [role=status]")
            .await
            .starts_with("School created."),
    );
    fits_a_phone(&browser).await;
    screenshots(&browser, "school-created").await;
    assert!(server.store.school("west-high").await.unwrap().is_some());
    browser.close().await.unwrap();
}

/// Asserts that nothing of the page's main part is wider than a 390 px phone (a page that scrolls
/// sideways hides its right edge); the window is back at 1280 after.
async fn fits_a_phone(browser: &Client) {
    browser.set_window_size(390, 844).await.unwrap();
    let wide = browser
        .execute(
            "const w = document.documentElement.clientWidth; return Array.from(document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > w + 1).map(e => e.tagName + ' ' + (e.id || e.getAttribute('name') || '') + ' to ' + Math.round(e.getBoundingClientRect().right) + ' px').join('; ');",
            vec![],
        )
        .await
        .unwrap();
    browser.set_window_size(1280, 800).await.unwrap();
    assert_eq!(wide, serde_json::json!(""), "wider than a phone");
}

/// Central enrolment while the ML service is down: a ZIP uploaded on the Enrolment page gets its
/// report at once for what cannot be enrolled, its photo waits, the page says why, and the
/// student page offers its own photo form.
#[tokio::test]
async fn an_admin_uploads_a_zip_of_photos_while_the_ml_service_is_down() {
    use std::io::Write;
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let server = Server::start_enrolling(&dead_url).await;
    let north = server.school("north").await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    sign_in(&browser, &server.base, "north-admin").await;

    // `../shared/faces` beside the checkout, or `ROLLCALL_FACES`, as in edge-agent's tests.
    let faces = std::env::var_os("ROLLCALL_FACES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces")
        });
    let photo = faces.join("lfw-dev/images/Abel_Pacheco/Abel_Pacheco_0001.jpg");
    let zip_path = profile.path().join("yearbook-2024.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, bytes) in [
            (
                format!("{}.jpg", north.s1()),
                std::fs::read(&photo).unwrap(),
            ),
            (
                "Jordan_Stranger.jpg".to_owned(),
                std::fs::read(&photo).unwrap(),
            ),
            ("notes.txt".to_owned(), b"class of 2024".to_vec()),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(&bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    open(&browser, &server.base, "/enrolment").await;
    let input = browser.find(Locator::Css("input#zip")).await.unwrap();
    input
        .send_keys(&zip_path.display().to_string())
        .await
        .unwrap();
    let form = browser
        .form(Locator::Css("form[enctype='multipart/form-data']"))
        .await
        .unwrap();
    form.submit().await.unwrap();
    wait_for_url(&browser, "/enrolment/").await;
    let report = text_of(&browser, "main table tbody").await;
    assert!(
        report.contains("Jordan_Stranger.jpg")
            && report.contains("no student of this school")
            && report.contains("notes.txt")
            && report.contains("waiting"),
        "{report}"
    );
    // The runner finds nothing listening: the breaker opens, and the page (which refreshes
    // itself) says the photos wait.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.refresh().await.unwrap();
        let url = browser.current_url().await.unwrap();
        wait_for_path(&browser, url.path()).await;
        let text = text_of(&browser, "main").await;
        if text.contains("not answering") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    screenshots(&browser, "enrolment-job").await;
    fits_a_phone(&browser).await;

    open(&browser, &server.base, "/enrolment").await;
    let service = text_of(&browser, "section[aria-labelledby='service-title']").await;
    assert!(
        service.contains("Not answering") && service.contains("Photos waiting: 1 of at most 5000"),
        "{service}"
    );
    let jobs = text_of(&browser, "main table tbody").await;
    assert!(jobs.contains("yearbook-2024.zip"), "{jobs}");
    screenshots(&browser, "enrolment").await;
    fits_a_phone(&browser).await;
    let crops = text_of(&browser, "section[aria-labelledby='crops-title']").await;
    assert!(crops.contains("This school keeps no face crops"), "{crops}");

    // The school keeps crops from now on (Settings); the Enrolment page offers re-embedding.
    open(&browser, &server.base, "/settings").await;
    browser
        .find(Locator::Css("input[name='keep_crops']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .form(Locator::Css("main form"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    wait_for_url(&browser, "saved=1").await;
    assert!(
        server
            .store
            .school_settings("north")
            .await
            .unwrap()
            .keep_crops
    );
    open(&browser, &server.base, "/enrolment").await;
    let crops = text_of(&browser, "section[aria-labelledby='crops-title']").await;
    assert!(
        crops.contains("0 kept") && crops.contains("Re-embed kept crops"),
        "{crops}"
    );
    let url = browser.current_url().await.unwrap();
    browser.goto(&format!("{url}#crops-title")).await.unwrap();
    screenshots(&browser, "enrolment-crops").await;

    let student = format!("/students/{}", north.s1());
    open(&browser, &server.base, &student).await;
    let consent = text_of(&browser, "section[aria-labelledby='consent-title']").await;
    assert!(
        consent.contains("Photos (1 to 5, JPEG or PNG)"),
        "{consent}"
    );
    let url = browser.current_url().await.unwrap();
    browser.goto(&format!("{url}#consent-title")).await.unwrap();
    screenshots(&browser, "student-enrol").await;
    browser.close().await.unwrap();
}
