//! A real server for HTTP tests: the API on 127.0.0.1:0 over an embedded store in a temp dir,
//! with a clock the test moves, and helpers that log in, provision boxes and build schools.

#![allow(dead_code)]

pub mod process;
pub mod smtp;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use shared_proto::sync::{Embedding, Event, EventBody, MarkSource, MarkStatus, TemplateData};
use shared_proto::{EmbeddingSpace, ModelId};
use sync_server::api::{self, AppState, Clock, Limits};
use sync_server::store::sqlite::SqliteStore;
use sync_server::store::{Millis, Role, Store, User};

/// 2024-09-02 08:00 UTC, a Monday.
pub const START: Millis = 1_725_264_000_000;
pub const DISTRICT_ADMIN: &str = "district";
pub const PASSWORD: &str = "correct horse battery";

/// A reqwest client. A workspace build unifies reqwest's features with edge-agent's
/// `rustls-no-provider`, under which a client panics unless a rustls crypto provider is installed.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance_ms(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts an error answer: its status, its code, and that it carries the request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {}",
            self.text
        );
        let request_id = self.headers["x-request-id"].to_str().unwrap();
        assert_eq!(self.body["request_id"], request_id, "{}", self.text);
    }

    pub fn assert_ok(&self) -> &Value {
        assert!(
            (200..300).contains(&self.status),
            "{}: {}",
            self.status,
            self.text
        );
        &self.body
    }
}

/// What a school fixture holds: its ids and a token of each kind.
pub struct SchoolFixture {
    pub id: String,
    pub admin: String,
    /// Teaches `{id}-math` only.
    pub teacher: String,
    pub device: String,
    pub device_id: String,
}

impl SchoolFixture {
    pub fn math(&self) -> String {
        format!("{}-math", self.id)
    }
    pub fn art(&self) -> String {
        format!("{}-art", self.id)
    }
    /// In maths, consent granted.
    pub fn s1(&self) -> String {
        format!("{}-s1", self.id)
    }
    /// In art.
    pub fn s2(&self) -> String {
        format!("{}-s2", self.id)
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Server {
        Server::start_full(limits, None, |_| ()).await
    }

    /// A server with central enrolment calling the ML service at `ml_url` (the browser test gives
    /// an address where nothing answers: its uploads wait, as when the service is down).
    pub async fn start_enrolling(ml_url: &str) -> Server {
        Server::start_enrolling_over(ml_url, |_| ()).await
    }

    /// As `start_enrolling`, with `jobs` given the enrolment jobs' folder first, as a restart
    /// finds it.
    pub async fn start_enrolling_over(ml_url: &str, jobs: impl FnOnce(&std::path::Path)) -> Server {
        let config = sync_server::Config::parse(
            &format!(
                "[ml]\nurl = \"{ml_url}\"\napi_key = \"k\"\nretry_delays_ms = [10]\nbreaker_failures = 2\n"
            ),
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        Server::start_full(Limits::default(), config.ml, jobs).await
    }

    async fn start_full(
        limits: Limits,
        ml: Option<sync_server::config::MlConfig>,
        jobs: impl FnOnce(&std::path::Path),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("enrol-jobs")).unwrap();
        jobs(&dir.path().join("enrol-jobs"));
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("rollcall-server.sqlite")).unwrap());
        let admin = User {
            id: "u-district".into(),
            username: DISTRICT_ADMIN.into(),
            password_hash: api::hash_password(PASSWORD).unwrap(),
            role: Role::Admin,
            school_id: None,
            teacher_id: None,
        };
        store.create_user(&admin).await.unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(START)));
        let state = AppState::with_clock(store.clone(), limits, clock.clone());
        if let Some(ml) = ml {
            let enroller = sync_server::ml_client::Enroller::open(
                store.clone(),
                &ml,
                &dir.path().join("enrol-jobs"),
                clock.clone(),
            )
            .unwrap();
            let enroller = Arc::new(enroller);
            state.set_enroller(enroller.clone());
            tokio::spawn(enroller.run(std::future::pending::<()>()));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(api::serve(listener, state, async {
            stopped.await.ok();
        }));
        Server {
            base,
            http: http_client(),
            store,
            clock,
            shutdown: Some(shutdown),
            _dir: dir,
        }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.request(Method::POST, path, token).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.request(Method::PUT, path, token).json(&body))
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let reply = self
            .post(
                "/v1/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        reply.assert_ok()["token"].as_str().unwrap().to_owned()
    }

    pub async fn district_admin(&self) -> String {
        self.login(DISTRICT_ADMIN, PASSWORD).await
    }

    /// A provisioning code for `school`, valid `ttl_minutes`.
    pub async fn provisioning_code(&self, admin: &str, school: &str, ttl_minutes: u32) -> String {
        let reply = self
            .post(
                &format!("/v1/schools/{school}/provisioning-codes"),
                Some(admin),
                json!({"device_name": "room 12", "ttl_minutes": ttl_minutes}),
            )
            .await;
        reply.assert_ok()["code"].as_str().unwrap().to_owned()
    }

    pub async fn redeem(&self, code: &str) -> Reply {
        self.post(
            "/v1/devices/provision",
            None,
            json!({"protocol": 1, "code": code, "name": "room 12"}),
        )
        .await
    }

    /// The box of `device` (its token) syncs its school's feed as a box does (protocol 2): it
    /// pulls a page from the start, stores the cursor after applying it, then pulls from there,
    /// which tells the server everything up to that cursor is applied (an erasure purged).
    pub async fn box_syncs_its_feed(&self, device: &str) {
        let pull = |cursor: &str| {
            self.request(
                Method::GET,
                &format!("/v1/sync/pull?cursor={cursor}"),
                Some(device),
            )
            .header("x-rollcall-protocol", "2")
        };
        let first = self.send(pull("0")).await;
        first.assert_ok();
        let next = first.body["next_cursor"].as_str().unwrap().to_owned();
        self.send(pull(&next)).await.assert_ok();
    }

    /// (device id, device token) of a new box of `school`.
    pub async fn provision(&self, admin: &str, school: &str) -> (String, String) {
        let code = self.provisioning_code(admin, school, 60).await;
        let reply = self.redeem(&code).await;
        let body = reply.assert_ok();
        assert_eq!(body["school_id"], school);
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn upload_roster(
        &self,
        token: &str,
        school: &str,
        files: Vec<(String, String)>,
    ) -> Reply {
        let mut form = reqwest::multipart::Form::new();
        for (name, text) in files {
            let part = reqwest::multipart::Part::text(text).file_name(name.clone());
            form = form.part(name, part);
        }
        self.send(
            self.request(
                Method::POST,
                &format!("/v1/schools/{school}/roster"),
                Some(token),
            )
            .multipart(form),
        )
        .await
    }

    /// School `id` from a OneRoster upload (sections `{id}-math` taught by `{id}-t1` with
    /// `{id}-s1`, `{id}-art` taught by `{id}-t2` with `{id}-s2`), `{id}-s1`'s consent granted,
    /// a school admin, a teacher account for `{id}-t1`, and a provisioned box.
    pub async fn school(&self, id: &str) -> SchoolFixture {
        let district = self.district_admin().await;
        self.post(
            "/v1/schools",
            Some(&district),
            json!({"id": id, "name": format!("{id} school")}),
        )
        .await
        .assert_ok();
        self.upload_roster(&district, id, roster_files(id, &[]))
            .await
            .assert_ok();
        self.put(
            &format!("/v1/schools/{id}/students/{id}-s1/consent"),
            Some(&district),
            json!({"consent": "granted", "by": "parent form 7"}),
        )
        .await
        .assert_ok();
        for (username, role, teacher_id) in [
            (format!("{id}-admin"), "admin", None),
            (format!("{id}-teacher"), "teacher", Some(format!("{id}-t1"))),
        ] {
            self.post(
                &format!("/v1/schools/{id}/users"),
                Some(&district),
                json!({"username": username, "password": PASSWORD, "role": role, "teacher_id": teacher_id}),
            )
            .await
            .assert_ok();
        }
        let admin = self.login(&format!("{id}-admin"), PASSWORD).await;
        let teacher = self.login(&format!("{id}-teacher"), PASSWORD).await;
        let (device_id, device) = self.provision(&admin, id).await;
        SchoolFixture {
            id: id.to_owned(),
            admin,
            teacher,
            device,
            device_id,
        }
    }

    /// A lesson in each of the school's sections on START (2024-09-02 08:00 UTC), pushed by its
    /// box: `s1` present in maths, `s2` present in art, both by the machine.
    pub async fn push_two_lessons(&self, school: &SchoolFixture) {
        let mut events = lesson_events(&school.math(), &school.s1(), 1);
        events.extend(lesson_events(&school.art(), &school.s2(), 10));
        self.post("/v1/sync/push", Some(&school.device), push_body(&events))
            .await
            .assert_ok();
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
    }
}

/// A OneRoster 1.1 bulk export of school `id`; `extra_users` are appended to users.csv.
pub fn roster_files(id: &str, extra_users: &[&str]) -> Vec<(String, String)> {
    let manifest = "propertyName,value\noneroster.version,1.1\nfile.classes,bulk\nfile.courses,bulk\nfile.enrollments,bulk\nfile.orgs,absent\nfile.users,bulk\n";
    let mut users = format!(
        "sourcedId,status,enabledUser,role,givenName,familyName\n\
         {id}-s1,,true,student,Ada,Lovelace\n\
         {id}-s2,,true,student,Alan,Turing\n\
         {id}-t1,,true,teacher,Mary,Brown\n\
         {id}-t2,,true,teacher,Tom,Green\n"
    );
    for line in extra_users {
        users.push_str(line);
        users.push('\n');
    }
    let classes = format!(
        "sourcedId,title,schoolSourcedId,courseSourcedId\n{id}-math,Maths,{id},k1\n{id}-art,Art,{id},k1\n"
    );
    let enrollments = format!(
        "sourcedId,classSourcedId,userSourcedId,role\n\
         {id}-e1,{id}-math,{id}-s1,student\n\
         {id}-e2,{id}-math,{id}-t1,teacher\n\
         {id}-e3,{id}-art,{id}-s2,student\n\
         {id}-e4,{id}-art,{id}-t2,teacher\n"
    );
    vec![
        ("manifest.csv".into(), manifest.into()),
        ("users.csv".into(), users),
        ("courses.csv".into(), "sourcedId,title\nk1,Maths\n".into()),
        ("classes.csv".into(), classes),
        ("enrollments.csv".into(), enrollments),
    ]
}

/// A UUIDv7-shaped event id, distinct per `n`.
pub fn event_id(n: u64) -> String {
    format!("0190f1f0-0000-7000-8000-{n:012x}")
}

/// A session of `section` opened at START and a machine mark for `student` in it, with ids
/// from `first_id`.
pub fn lesson_events(section: &str, student: &str, first_id: u64) -> Vec<Event> {
    let session = format!("sess-{first_id}");
    vec![
        Event {
            id: event_id(first_id),
            at: START,
            body: EventBody::SessionOpened {
                session: session.clone(),
                section: section.to_owned(),
                started_at: START,
            },
        },
        Event {
            id: event_id(first_id + 1),
            at: START + 1000,
            body: EventBody::MarkSet {
                session,
                student: student.to_owned(),
                status: MarkStatus::Present,
                source: MarkSource::Machine,
                score: Some(0.8),
                decided_at: START + 1000,
                by: None,
            },
        },
    ]
}

/// A template for `student` (who must have consent).
pub fn template_event(student: &str, id: u64) -> Event {
    let model = ModelId::new("fr_feature", &"ab12".repeat(16)).unwrap();
    Event {
        id: event_id(id),
        at: START,
        body: EventBody::TemplateAdded {
            template: TemplateData {
                id: format!("0190f1f0-0000-7000-9000-{id:012x}"),
                student: student.to_owned(),
                embedding: Embedding {
                    space: EmbeddingSpace::of_model(&model),
                    model,
                    vector: vec![0.6, 0.8, 0.0, 0.0],
                },
                quality: 0.9,
                source: "box:test".into(),
                created_at: START,
            },
        },
    }
}

pub fn push_body(events: &[Event]) -> Value {
    json!({"protocol": 1, "events": events})
}
