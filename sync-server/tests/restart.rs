//! The real `sync-server` process is killed (SIGKILL) between a push and the box's retry of it,
//! and started again on the same data: nothing acked is lost and nothing is applied twice. On the
//! embedded store and on the MongoDB-wire server the test script starts.

mod common;

use serde_json::{Value, json};

use common::process::{Place, log_in, ok};
use common::{lesson_events, push_body, roster_files, template_event};

async fn restart_between_push_and_retry(mongo: Option<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(dir.path(), mongo);
    let http = common::http_client();
    place.create_admin();
    let (mut server, base) = place.serve(&http).await;

    // A school with a roster, one consenting student and one provisioned box.
    let admin = log_in(&http, &base).await;
    ok(http
        .post(format!("{base}/v1/schools"))
        .bearer_auth(&admin)
        .json(&json!({"id": "r", "name": "Riverside"}))
        .send()
        .await
        .unwrap())
    .await;
    let mut form = reqwest::multipart::Form::new();
    for (name, text) in roster_files("r", &[]) {
        form = form.part(
            name.clone(),
            reqwest::multipart::Part::text(text).file_name(name),
        );
    }
    ok(http
        .post(format!("{base}/v1/schools/r/roster"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap())
    .await;
    ok(http
        .put(format!("{base}/v1/schools/r/students/r-s1/consent"))
        .bearer_auth(&admin)
        .json(&json!({"consent": "granted", "by": "parent form"}))
        .send()
        .await
        .unwrap())
    .await;
    let code = ok(http
        .post(format!("{base}/v1/schools/r/provisioning-codes"))
        .bearer_auth(&admin)
        .json(&json!({"device_name": "room 12"}))
        .send()
        .await
        .unwrap())
    .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = ok(http
        .post(format!("{base}/v1/devices/provision"))
        .json(&json!({"protocol": 1, "code": code}))
        .send()
        .await
        .unwrap())
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The push is applied and acked; the box dies before it hears so, and will send it again.
    let mut events = lesson_events("r-math", "r-s1", 1);
    events.push(template_event("r-s1", 10));
    let body = push_body(&events);
    let push = |base: String| {
        let (http, device, body) = (http.clone(), device.clone(), body.clone());
        async move {
            ok(http
                .post(format!("{base}/v1/sync/push"))
                .bearer_auth(&device)
                .json(&body)
                .send()
                .await
                .unwrap())
            .await
        }
    };
    let first = push(base.clone()).await;
    assert_eq!(first["acked"].as_array().unwrap().len(), 3, "{first}");

    // SIGKILL: no shutdown, no flush.
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, base) = place.serve(&http).await;

    let retry = push(base.clone()).await;
    assert_eq!(retry["acked"], first["acked"], "{retry}");
    assert_eq!(retry["rejected"], json!([]));

    // Applied once: one mark, one template in the feed, both kept across the kill.
    let admin = log_in(&http, &base).await;
    let rows = ok(http
        .get(format!(
            "{base}/v1/schools/r/attendance?section=r-math&from=2024-09-02&to=2024-09-02"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap())
    .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["student_id"], "r-s1");
    assert_eq!(rows[0]["status"], "present");
    let page = ok(http
        .get(format!("{base}/v1/sync/pull?cursor=0&limit=1000"))
        .bearer_auth(&device)
        .send()
        .await
        .unwrap())
    .await;
    let templates: Vec<&Value> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "template")
        .collect();
    assert_eq!(templates.len(), 1, "{templates:?}");
    assert_eq!(page["more"], false);

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_a_kill_between_push_and_retry() {
    restart_between_push_and_retry(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_store_survives_a_kill_between_push_and_retry() {
    let uri = std::env::var("ROLLCALL_TEST_MONGODB_URI").expect(
        "ROLLCALL_TEST_MONGODB_URI is not set: run scripts/test, which starts a MongoDB-wire server",
    );
    let database = format!("restart_{}", uuid::Uuid::new_v4().simple());
    restart_between_push_and_retry(Some((uri, database))).await;
}
