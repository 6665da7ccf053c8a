//! The HTTP API end to end: a real server on loopback over the embedded store. Every route
//! without a token, with the wrong role, school or device; the limits on bad input with nothing
//! applied; provisioning, push and pull; request ids, metrics and the OpenAPI document.

mod common;

use std::collections::BTreeSet;

use common::{
    DISTRICT_ADMIN, PASSWORD, Server, event_id, lesson_events, push_body, roster_files,
    template_event,
};
use reqwest::Method;
use serde_json::{Value, json};
use shared_proto::sync::{MAX_PUSH_EVENTS, PullResponse};
use sync_server::api::served_routes;
use sync_server::store::Store;

/// A concrete path for a route template, naming school `school`'s fixtures.
fn concrete(path: &str, school: &str) -> String {
    path.replace("{school}", school)
        .replace("{section}", &format!("{school}-math"))
        .replace("{student}", &format!("{school}-s1"))
        .replace("{device}", "no-such-device")
}

/// The routes of the OpenAPI document: (METHOD, path template, access).
async fn documented(server: &Server) -> Vec<(String, String, String)> {
    let doc = server.get("/openapi.json", None).await;
    let mut routes = Vec::new();
    for (path, methods) in doc.assert_ok()["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let access = operation["x-rollcall-access"]
                .as_str()
                .unwrap_or("public")
                .to_owned();
            routes.push((method.to_uppercase(), path.clone(), access));
        }
    }
    routes
}

/// Sends `method path` with `token` and, for methods with a body, `{}`.
async fn call(server: &Server, method: &str, path: &str, token: Option<&str>) -> common::Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let has_body = method == Method::POST || method == Method::PUT;
    let builder = server.request(method, path, token);
    let builder = if has_body {
        builder.json(&json!({}))
    } else {
        builder
    };
    server.send(builder).await
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_served() {
    let server = Server::start().await;
    let documented: BTreeSet<(String, String)> = documented(&server)
        .await
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = served_routes()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    assert_eq!(documented, served);
    // And the router really answers each one (no "no route" 404, no 405).
    for (method, path) in &served {
        let reply = call(&server, method, &concrete(path, "nowhere"), None).await;
        assert!(
            !(reply.status == 404 && reply.text.contains("openapi.json")) && reply.status != 405,
            "{method} {path}: {}",
            reply.text
        );
    }
    // And any other method on a documented path is refused: the router serves nothing the
    // document leaves out.
    let paths: BTreeSet<&String> = served.iter().map(|(_, path)| path).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if served.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            call(&server, method, &concrete(path, "nowhere"), None)
                .await
                .assert_error(405, "invalid_request");
        }
    }
    let unknown = server.get("/v1/nothing-here", None).await;
    unknown.assert_error(404, "not_found");
}

/// The document's enums are the vocabulary's words, written from the same table as the code's.
#[tokio::test]
async fn openapi_enums_are_the_vocabulary_words() {
    use shared_proto::sync::{Consent, EnrolmentRole, MarkSource, MarkStatus};
    use sync_server::store::Role;

    let server = Server::start().await;
    let doc = server.get("/openapi.json", None).await;
    let schemas = &doc.assert_ok()["components"]["schemas"];
    for (name, words) in [
        ("MarkStatus", MarkStatus::WORDS),
        ("MarkSource", MarkSource::WORDS),
        ("Consent", Consent::WORDS),
        ("EnrolmentRole", EnrolmentRole::WORDS),
        ("Role", Role::WORDS),
    ] {
        assert_eq!(schemas[name]["type"], "string", "{name}");
        assert_eq!(schemas[name]["enum"], json!(words), "{name}");
    }
    // And they are what the types that carry them point at.
    assert_eq!(
        schemas["Attendance"]["properties"]["status"]["$ref"],
        "#/components/schemas/MarkStatus"
    );
    assert_eq!(
        schemas["User"]["properties"]["role"]["$ref"],
        "#/components/schemas/Role"
    );
}

#[tokio::test]
async fn every_protected_route_refuses_missing_and_unknown_tokens() {
    let server = Server::start().await;
    let routes = documented(&server).await;
    assert!(
        routes
            .iter()
            .filter(|(.., access)| access != "public")
            .count()
            >= 20
    );
    for (method, path, access) in routes {
        if access == "public" {
            continue;
        }
        let path = concrete(&path, "north");
        call(&server, &method, &path, None)
            .await
            .assert_error(401, "unauthorized");
        call(&server, &method, &path, Some("not-a-token"))
            .await
            .assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn teachers_and_devices_are_refused_admin_routes_and_other_sections() {
    let server = Server::start().await;
    let north = server.school("north").await;
    for (method, path, access) in documented(&server).await {
        let path = concrete(&path, "north");
        match access.as_str() {
            "admin" => {
                call(&server, &method, &path, Some(&north.teacher))
                    .await
                    .assert_error(403, "forbidden");
                call(&server, &method, &path, Some(&north.device))
                    .await
                    .assert_error(403, "forbidden");
            }
            "device" => {
                call(&server, &method, &path, Some(&north.teacher))
                    .await
                    .assert_error(403, "forbidden");
            }
            _ => {}
        }
    }

    // Marks in both sections: the teacher of maths sees maths only.
    server.push_two_lessons(&north).await;
    let day = "from=2024-09-02&to=2024-09-02";
    server
        .get(
            &format!("/v1/schools/north/attendance?section={}&{day}", north.art()),
            Some(&north.teacher),
        )
        .await
        .assert_error(403, "forbidden");
    let own = server
        .get(
            &format!(
                "/v1/schools/north/attendance?section={}&{day}",
                north.math()
            ),
            Some(&north.teacher),
        )
        .await;
    assert_eq!(own.assert_ok().as_array().unwrap().len(), 1, "{}", own.text);
    let all_of_theirs = server
        .get(
            &format!("/v1/schools/north/attendance?{day}"),
            Some(&north.teacher),
        )
        .await;
    let rows = all_of_theirs.assert_ok().as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["section_id"], north.math());
    // A student of art: the admin sees the mark, the maths teacher gets none of it.
    let path = format!("/v1/schools/north/students/{}/attendance?{day}", north.s2());
    let by_admin = server.get(&path, Some(&north.admin)).await;
    assert_eq!(by_admin.assert_ok().as_array().unwrap().len(), 1);
    let by_teacher = server.get(&path, Some(&north.teacher)).await;
    assert_eq!(by_teacher.assert_ok(), &json!([]));
}

#[tokio::test]
async fn school_admins_and_teachers_are_held_to_their_school() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let south = server.school("south").await;
    for (method, path, access) in documented(&server).await {
        if !path.contains("{school}") {
            continue;
        }
        let path = concrete(&path, "north");
        call(&server, &method, &path, Some(&south.admin))
            .await
            .assert_error(403, "wrong_school");
        if access == "admin or teacher" {
            call(&server, &method, &path, Some(&south.teacher))
                .await
                .assert_error(403, "wrong_school");
        }
    }
    // A school admin lists only their school; only a district admin creates schools.
    let schools = server.get("/v1/schools", Some(&south.admin)).await;
    assert_eq!(
        schools.assert_ok(),
        &json!([{"id": "south", "name": "south school"}])
    );
    server
        .post(
            "/v1/schools",
            Some(&south.admin),
            json!({"id": "east", "name": "East"}),
        )
        .await
        .assert_error(403, "forbidden");
    // A district admin may use any school.
    let district = server.district_admin().await;
    let sections = server
        .get("/v1/schools/north/sections", Some(&district))
        .await;
    assert_eq!(sections.assert_ok().as_array().unwrap().len(), 2);
    // North's box pulls nothing of south's.
    let pull = server
        .get("/v1/sync/pull?limit=1000", Some(&north.device))
        .await;
    let pull: PullResponse = serde_json::from_value(pull.assert_ok().clone()).unwrap();
    assert!(!pull.changes.is_empty());
    for change in &pull.changes {
        let key = feed_key(&change.body);
        assert!(key.contains("north-") && !key.contains("south"), "{key}");
    }
}

#[tokio::test]
async fn revoked_device_tokens_get_token_revoked() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server
        .post("/v1/sync/push", Some(&north.device), push_body(&[]))
        .await
        .assert_ok();
    server
        .send(server.request(
            Method::POST,
            &format!("/v1/schools/north/devices/{}/revoke", north.device_id),
            Some(&north.admin),
        ))
        .await
        .assert_ok();
    let events = lesson_events(&north.math(), &north.s1(), 1);
    server
        .post("/v1/sync/push", Some(&north.device), push_body(&events))
        .await
        .assert_error(401, "token_revoked");
    server
        .get("/v1/sync/pull", Some(&north.device))
        .await
        .assert_error(401, "token_revoked");
    assert_eq!(server.store.counts().await.unwrap().events_applied, 0);
    let devices = server
        .get("/v1/schools/north/devices", Some(&north.admin))
        .await;
    let device = &devices.assert_ok()[0];
    assert_eq!(device["id"], north.device_id.as_str());
    assert!(device["revoked_at"].is_i64());
    assert!(device["last_seen_at"].is_i64());
    // Revoking a device the school does not have.
    server
        .send(server.request(
            Method::POST,
            "/v1/schools/north/devices/nope/revoke",
            Some(&north.admin),
        ))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn provisioning_codes_are_single_use_and_expire() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let code = server.provisioning_code(&north.admin, "north", 60).await;
    assert_eq!(code.len(), 14, "{code}");
    // Typed in lower case without dashes, it still works, once.
    let typed = code.replace('-', "").to_lowercase();
    let first = server.redeem(&typed).await;
    assert_eq!(first.assert_ok()["school_id"], "north");
    let again = server.redeem(&code).await;
    again.assert_error(410, "provisioning_code_invalid");
    assert!(
        again.body["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );

    let unknown = server.redeem("AAAA-BBBB-CCCC").await;
    unknown.assert_error(400, "provisioning_code_invalid");
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown")
    );

    let short_lived = server.provisioning_code(&north.admin, "north", 1).await;
    server.clock.advance_ms(61_000);
    let late = server.redeem(&short_lived).await;
    late.assert_error(410, "provisioning_code_invalid");
    assert!(late.body["message"].as_str().unwrap().contains("expired"));

    // A newer protocol is refused before the code is looked at, so the code stays usable.
    let fresh = server.provisioning_code(&north.admin, "north", 60).await;
    server
        .post(
            "/v1/devices/provision",
            None,
            json!({"protocol": 3, "code": fresh}),
        )
        .await
        .assert_error(400, "unsupported_protocol");
    server.redeem(&fresh).await.assert_ok();
    // The fixture's box and the two provisioned here.
    let devices = server
        .get("/v1/schools/north/devices", Some(&north.admin))
        .await;
    assert_eq!(devices.assert_ok().as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn logins_are_rate_limited_per_username_and_per_address() {
    let server = Server::start().await;
    let login = |username: &str, password: &str| {
        server.post(
            "/v1/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
    };
    for _ in 0..5 {
        login(DISTRICT_ADMIN, "wrong password!")
            .await
            .assert_error(401, "unauthorized");
    }
    let limited = login(DISTRICT_ADMIN, PASSWORD).await;
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    server.clock.advance_ms(61_000);
    login(DISTRICT_ADMIN, PASSWORD).await.assert_ok();

    // Unknown users fail like wrong passwords; 20 failures from one address block it.
    for n in 0..20 {
        login(&format!("nobody{n}"), "whatever pass")
            .await
            .assert_error(401, "unauthorized");
    }
    login("nobody-else", "whatever pass")
        .await
        .assert_error(429, "rate_limited");
    assert!(
        server
            .metrics()
            .await
            .contains("rollcall_login_failures_total 25")
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_logins_expire() {
    let server = Server::start().await;
    let token = server.district_admin().await;
    server.get("/v1/schools", Some(&token)).await.assert_ok();
    server
        .send(server.request(Method::POST, "/v1/auth/logout", Some(&token)))
        .await
        .assert_ok();
    server
        .get("/v1/schools", Some(&token))
        .await
        .assert_error(401, "unauthorized");

    let token = server.district_admin().await;
    server.clock.advance_ms(12 * 60 * 60 * 1000 + 1);
    server
        .get("/v1/schools", Some(&token))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn bad_pushes_are_refused_whole() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let push = |body: Vec<u8>| {
        server.send(
            server
                .request(Method::POST, "/v1/sync/push", Some(&north.device))
                .header("content-type", "application/json")
                .body(body),
        )
    };

    // One event over the batch limit: none of the valid events is applied.
    let events: Vec<_> = (0..=MAX_PUSH_EVENTS as u64)
        .flat_map(|n| lesson_events(&north.math(), &north.s1(), 2 * n + 1))
        .take(MAX_PUSH_EVENTS + 1)
        .collect();
    push(serde_json::to_vec(&push_body(&events)).unwrap())
        .await
        .assert_error(413, "batch_too_large");

    // A body over the limit (4 MiB).
    let mut huge = serde_json::to_vec(&push_body(&events[..2])).unwrap();
    huge.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    push(huge).await.assert_error(413, "payload_too_large");

    // Malformed JSON, and JSON of the wrong shape.
    push(b"{\"protocol\": 1, \"events\": [".to_vec())
        .await
        .assert_error(400, "invalid_json");
    push(br#"{"protocol": 1, "events": [{"id": 7}]}"#.to_vec())
        .await
        .assert_error(400, "invalid_json");

    // Protocol versions: newer and stale in the body, newer in the header.
    for protocol in [3, 0] {
        let mut body = push_body(&events[..2]);
        body["protocol"] = json!(protocol);
        let reply = push(serde_json::to_vec(&body).unwrap()).await;
        reply.assert_error(400, "unsupported_protocol");
    }
    let body = serde_json::to_vec(&push_body(&events[..2])).unwrap();
    server
        .send(
            server
                .request(Method::POST, "/v1/sync/push", Some(&north.device))
                .header("x-rollcall-protocol", "3")
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await
        .assert_error(400, "unsupported_protocol");

    assert_eq!(server.store.counts().await.unwrap().events_applied, 0);
    let rows = server
        .get(
            "/v1/schools/north/attendance?from=2024-09-01&to=2024-09-30",
            Some(&north.admin),
        )
        .await;
    assert_eq!(rows.assert_ok(), &json!([]));

    // Other bodies: malformed login, an unknown field in an admin body, a bad pull cursor.
    server
        .send(
            server
                .request(Method::POST, "/v1/auth/login", None)
                .body("{"),
        )
        .await
        .assert_error(400, "invalid_json");
    server
        .post(
            "/v1/schools/north/sections",
            Some(&north.admin),
            json!({"id": "x", "title": "X", "colour": "red"}),
        )
        .await
        .assert_error(400, "invalid_json");
    server
        .get("/v1/sync/pull?cursor=abc", Some(&north.device))
        .await
        .assert_error(400, "invalid_request");
    server
        .get("/v1/sync/pull?limit=0", Some(&north.device))
        .await
        .assert_error(400, "invalid_request");
}

/// Every embedding travels with its space, and the server keeps the one it was given. A box from
/// before spaces sends only the model id: its template lands in that model's space
/// (`EmbeddingSpace::of_model`), the answer a new box would give for it.
#[tokio::test]
async fn templates_keep_their_embedding_space_and_old_boxes_get_their_models() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut events = lesson_events(&north.math(), &north.s1(), 1);
    events.push(template_event(&north.s1(), 3));
    events.push(template_event(&north.s1(), 4));
    let mut body = push_body(&events);
    let named = &mut body["events"][2]["template"]["embedding"];
    named["space"] = json!("fr_feature-v9");
    let old_box = &mut body["events"][3]["template"]["embedding"];
    old_box.as_object_mut().unwrap().remove("space");
    old_box["model"] = json!("fr_feature@7cf1cb7e95b9");
    let reply = server
        .post("/v1/sync/push", Some(&north.device), body)
        .await;
    assert_eq!(reply.assert_ok()["acked"].as_array().unwrap().len(), 4);

    let pulled = server
        .get("/v1/sync/pull?cursor=0&limit=100", Some(&north.device))
        .await;
    let spaces: Vec<(String, String)> = pulled.assert_ok()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "template")
        .map(|c| {
            let e = &c["template"]["embedding"];
            (
                e["model"].as_str().unwrap().to_owned(),
                e["space"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let model = events_model(&events[2]);
    assert_eq!(
        spaces,
        vec![
            (model, "fr_feature-v9".to_owned()),
            (
                "fr_feature@7cf1cb7e95b9".to_owned(),
                "fr_feature-v1".to_owned()
            )
        ]
    );
}

fn events_model(event: &shared_proto::sync::Event) -> String {
    match &event.body {
        shared_proto::sync::EventBody::TemplateAdded { template } => {
            template.embedding.model.to_string()
        }
        other => panic!("not a template: {other:?}"),
    }
}

#[tokio::test]
async fn push_then_pull() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut events = lesson_events(&north.math(), &north.s1(), 1);
    events.push(template_event(&north.s1(), 3));
    // s2 has no consent: their template is rejected, the rest applied.
    events.push(template_event(&north.s2(), 4));
    let ids: Vec<String> = (1..=4).map(event_id).collect();
    for _ in 0..3 {
        let reply = server
            .post("/v1/sync/push", Some(&north.device), push_body(&events))
            .await;
        let body = reply.assert_ok();
        assert_eq!(body["acked"], json!(ids[..3]), "{}", reply.text);
        assert_eq!(body["rejected"][0]["id"], ids[3].as_str());
        assert_eq!(body["rejected"][0]["code"], "no_consent");
    }
    assert_eq!(server.store.counts().await.unwrap().events_applied, 3);

    // Page through the feed two changes at a time.
    let mut cursor = "0".to_owned();
    let mut seqs = Vec::new();
    let mut keys = BTreeSet::new();
    loop {
        let reply = server
            .get(
                &format!("/v1/sync/pull?cursor={cursor}&limit=2"),
                Some(&north.device),
            )
            .await;
        let page: PullResponse = serde_json::from_value(reply.assert_ok().clone()).unwrap();
        assert!(page.changes.len() <= 2);
        seqs.extend(page.changes.iter().map(|change| change.seq));
        keys.extend(page.changes.iter().map(|change| feed_key(&change.body)));
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    for key in [
        format!("section:{}", north.math()),
        format!("student:{}", north.s1()),
        "template:0190f1f0-0000-7000-9000-000000000003".to_owned(),
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert!(!keys.contains("template:0190f1f0-0000-7000-9000-000000000004"));

    // The mark is there for the admin, with its decision.
    let rows = server
        .get(
            &format!(
                "/v1/schools/north/attendance?section={}&from=2024-09-02",
                north.math()
            ),
            Some(&north.admin),
        )
        .await;
    let rows = rows.assert_ok().as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["student_id"], north.s1());
    assert_eq!(rows[0]["status"], "present");
    assert_eq!(rows[0]["device_id"], north.device_id.as_str());

    // Consent withdrawn: the box learns to purge the template.
    server
        .put(
            &format!("/v1/schools/north/students/{}/consent", north.s1()),
            Some(&north.admin),
            json!({"consent": "withdrawn"}),
        )
        .await
        .assert_ok();
    let reply = server
        .get(
            &format!("/v1/sync/pull?cursor={cursor}"),
            Some(&north.device),
        )
        .await;
    let page: PullResponse = serde_json::from_value(reply.assert_ok().clone()).unwrap();
    assert!(
        page.changes.iter().any(|change| matches!(
            &change.body,
            shared_proto::sync::ChangeBody::TemplateDeleted { template, .. }
                if template == "0190f1f0-0000-7000-9000-000000000003"
        )),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let server = Server::start().await;
    let reply = server
        .send(
            server
                .request(Method::GET, "/v1/schools", None)
                .header("x-request-id", "box-12.cycle_7"),
        )
        .await;
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.headers["x-request-id"], "box-12.cycle_7");
    assert_eq!(reply.body["request_id"], "box-12.cycle_7");

    let made = server.get("/healthz", None).await;
    let id = made.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let long = "x".repeat(200);
    let replaced = server
        .send(
            server
                .request(Method::GET, "/healthz", None)
                .header("x-request-id", &long),
        )
        .await;
    let id = replaced.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let server = Server::start().await;
    let north = server.school("north").await;
    server.get("/healthz", None).await.assert_ok();
    server.get("/readyz", None).await.assert_ok();
    server
        .post(
            "/v1/sync/push",
            Some(&north.device),
            push_body(&lesson_events(&north.math(), &north.s1(), 1)),
        )
        .await
        .assert_ok();
    server
        .get("/v1/sync/pull", Some(&north.device))
        .await
        .assert_ok();
    server
        .get("/v1/schools/north/sections", Some(&north.admin))
        .await
        .assert_ok();
    server
        .get("/v1/schools/south/sections", Some(&north.admin))
        .await;
    let text = server.metrics().await;
    for line in [
        r#"rollcall_http_requests_total{route="/healthz",method="GET",status="200"} 1"#,
        r#"rollcall_http_requests_total{route="/v1/sync/push",method="POST",status="200"} 1"#,
        r#"rollcall_http_requests_total{route="/v1/schools/{school}/sections",method="GET",status="200"} 1"#,
        r#"rollcall_http_requests_total{route="/v1/schools/{school}/sections",method="GET",status="403"} 1"#,
        r#"rollcall_http_request_duration_seconds_count{route="/v1/sync/pull",method="GET"} 1"#,
        "rollcall_sync_events_applied_total 2",
        "rollcall_sync_events_rejected_total 0",
        "rollcall_sync_pull_pages_total 1",
        "rollcall_store_events_applied 2",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}

#[tokio::test]
async fn roster_uploads_are_all_or_nothing() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let before = server
        .get("/v1/schools/north/students", Some(&north.admin))
        .await;
    let before = before.assert_ok().clone();
    assert_eq!(before.as_array().unwrap().len(), 2);
    let consent_of_s1 = |students: &Value| {
        students
            .as_array()
            .unwrap()
            .iter()
            .find(|student| student["id"] == "north-s1")
            .map(|student| student["consent"].clone())
    };
    assert_eq!(consent_of_s1(&before), Some(json!("granted")));

    let files = roster_files(
        "north",
        &[
            "north-s3,,true,student,Grace,Hopper",
            "north-s4,,maybe,student,Bad,Row",
        ],
    );
    let refused = server.upload_roster(&north.admin, "north", files).await;
    refused.assert_error(422, "invalid_roster");
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("users.csv:7:"), "{message}");
    let after = server
        .get("/v1/schools/north/students", Some(&north.admin))
        .await;
    assert_eq!(after.assert_ok(), &before);

    let files = roster_files("north", &["north-s3,,true,student,Grace,Hopper"]);
    let summary = server.upload_roster(&north.admin, "north", files).await;
    assert!(summary.assert_ok()["students"].is_u64(), "{}", summary.text);
    let after = server
        .get("/v1/schools/north/students", Some(&north.admin))
        .await;
    assert_eq!(after.assert_ok().as_array().unwrap().len(), 3);
    // A roster never changes consent.
    assert_eq!(consent_of_s1(&after.body), Some(json!("granted")));

    let not_multipart = server
        .post("/v1/schools/north/roster", Some(&north.admin), json!({}))
        .await;
    not_multipart.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn admin_api_round_trip() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let admin = Some(north.admin.as_str());
    server
        .post(
            "/v1/schools/north/students",
            admin,
            json!({"id": "north-s9", "given_name": "Emmy", "family_name": "Noether"}),
        )
        .await
        .assert_ok();
    server
        .post(
            &format!("/v1/schools/north/sections/{}/enrolments", north.math()),
            admin,
            json!({"person_id": "north-s9", "role": "student"}),
        )
        .await
        .assert_ok();
    let enrolments = server
        .get(
            &format!("/v1/schools/north/sections/{}/enrolments", north.math()),
            admin,
        )
        .await;
    let enrolments = enrolments.assert_ok().as_array().unwrap();
    assert!(enrolments.iter().any(|e| e["person_id"] == "north-s9"));

    let schedule_path = format!("/v1/schools/north/sections/{}/schedule", north.math());
    let slots =
        json!({"slots": [{"weekday": 1, "starts": "08:30", "ends": "09:15", "room": "12"}]});
    server
        .put(&schedule_path, admin, slots.clone())
        .await
        .assert_ok();
    assert_eq!(server.get(&schedule_path, admin).await.assert_ok(), &slots);
    server
        .put(
            &schedule_path,
            admin,
            json!({"slots": [{"weekday": 8, "starts": "08:30", "ends": "09:15"}]}),
        )
        .await
        .assert_error(400, "invalid_request");

    server
        .post(
            "/v1/schools/north/users",
            admin,
            json!({"username": "north-teacher", "password": PASSWORD, "role": "teacher", "teacher_id": "north-t2"}),
        )
        .await
        .assert_error(409, "conflict");
    server
        .post(
            "/v1/schools/north/users",
            admin,
            json!({"username": "shorty", "password": "short", "role": "admin"}),
        )
        .await
        .assert_error(400, "invalid_request");

    let erase = server
        .send(server.request(Method::DELETE, "/v1/schools/north/students/north-s9", admin))
        .await;
    assert_eq!(erase.status, 204, "{}", erase.text);
    let students = server.get("/v1/schools/north/students", admin).await;
    assert!(!students.text.contains("north-s9"));
    server
        .get(
            "/v1/schools/nowhere/sections",
            Some(&server.district_admin().await),
        )
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::start().await;
    assert_eq!(
        server.get("/healthz", None).await.assert_ok()["status"],
        "ok"
    );
    assert_eq!(
        server.get("/readyz", None).await.assert_ok()["status"],
        "ready"
    );
    let doc: Value = server.get("/openapi.json", None).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn admin_create_makes_an_admin_who_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], password: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(args)
            .env("ROLLCALL_SERVER_DATA_DIR", dir.path())
            .env_remove("ROLLCALL_MONGODB_URI")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let short = run(
        &["admin", "create", "--username", "root", "--password-stdin"],
        "short\n",
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("shorter than 10"));

    let made = run(
        &["admin", "create", "--username", "root", "--password-stdin"],
        "a long password\n",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let taken = run(
        &["admin", "create", "--username", "root", "--password-stdin"],
        "a long password\n",
    );
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already taken"));
    let no_school = run(
        &[
            "admin",
            "create",
            "--username",
            "other",
            "--school",
            "x",
            "--password-stdin",
        ],
        "a long password\n",
    );
    assert!(String::from_utf8_lossy(&no_school.stderr).contains("no school x"));

    let store =
        sync_server::store::sqlite::SqliteStore::open(&dir.path().join("rollcall-server.sqlite"))
            .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let user = runtime
        .block_on(store.user_by_name("root"))
        .unwrap()
        .unwrap();
    assert_eq!(user.school_id, None);
    assert!(user.password_hash.starts_with("$argon2id$"));
}

/// At a terminal (tmux here) `admin create` asks for the password and never shows it.
#[test]
fn admin_create_at_a_terminal_does_not_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let session = format!("rollcall-admin-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let command = format!(
        "env -u ROLLCALL_MONGODB_URI ROLLCALL_SERVER_DATA_DIR={} {} admin create --username clerk; echo exit=$?; sleep 30",
        dir.path().display(),
        env!("CARGO_BIN_EXE_sync-server")
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "20",
        &command,
    ]);
    let screen = |wanted: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = tmux(&["capture-pane", "-p", "-t", &session]);
            if text.contains(wanted) || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let asked = screen("Password for clerk:");
    assert!(asked.contains("Password for clerk:"), "{asked}");
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "correct horse battery",
        "Enter",
    ]);
    let done = screen("exit=");
    tmux(&["kill-session", "-t", &session]);
    assert!(done.contains("exit=0"), "{done}");
    assert!(!done.contains("correct horse"), "{done}");

    let store =
        sync_server::store::sqlite::SqliteStore::open(&dir.path().join("rollcall-server.sqlite"))
            .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let user = runtime
        .block_on(store.user_by_name("clerk"))
        .unwrap()
        .unwrap();
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let stored = PasswordHash::new(&user.password_hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse battery", &stored)
            .is_ok(),
        "the password typed unseen is the one stored"
    );
}

/// Issue 13: real exports refused before (a student teaching a class, OneRoster 1.0's
/// `inactive`, a blank manifest value) are applied, with warnings beside the counts; a users.csv
/// student enrolled as teacher is a teacher of that section.
#[tokio::test]
async fn roster_upload_reads_real_exports_leniently_and_returns_warnings() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let mut files = roster_files(
        "north",
        &[
            "north-s3,inactive,true,student,Grace,Hopper",
            "north-s4,,true,student,Ida,Noether",
        ],
    );
    let file = |files: &mut Vec<(String, String)>, name: &str| -> usize {
        files.iter().position(|(file, _)| file == name).unwrap()
    };
    let enrollments = file(&mut files, "enrollments.csv");
    files[enrollments]
        .1
        .push_str("north-e5,north-art,north-s4,teacher\n");
    let manifest = file(&mut files, "manifest.csv");
    files[manifest].1 = files[manifest]
        .1
        .replace("file.courses,bulk", "file.courses,");

    let reply = server.upload_roster(&north.admin, "north", files).await;
    let summary = reply.assert_ok();
    assert_eq!(summary["students"], 4, "{}", reply.text);
    assert_eq!(summary["teachers"], 3, "{}", reply.text);
    assert_eq!(
        summary["warnings"],
        json!([
            {"file": "manifest.csv", "rows": 1, "message": "manifest.csv: 1 row has no value; read as absent"},
            {"file": "users.csv", "rows": 1, "message": "users.csv: 1 row has status \"inactive\" (OneRoster 1.0); read as tobedeleted"},
            {"file": "enrollments.csv", "rows": 1, "message": "enrollments.csv: 1 row enrols a user in a role other than their role in users.csv; the enrolment's role was kept for that class"},
        ])
    );
    let sections = server
        .store
        .sections_of_teacher("north", "north-s4")
        .await
        .unwrap();
    assert_eq!(sections, ["north-art"]);
    let feed = server.store.pull("north", 0, 1000).await.unwrap();
    let is_teacher_s4 = |entry: &sync_server::domain::feed::Entry| matches!(&entry.change, sync_server::domain::feed::Change::Teacher { id, .. } if id == "north-s4");
    assert!(
        feed.changes.iter().any(is_teacher_s4),
        "a teacher record for north-s4"
    );
    let students = server
        .get("/v1/schools/north/students", Some(&north.admin))
        .await;
    let grace = students
        .assert_ok()
        .as_array()
        .unwrap()
        .iter()
        .find(|student| student["id"] == "north-s3")
        .cloned()
        .unwrap();
    assert_eq!(grace["active"], false, "{grace}");
}

/// Issue 13: roster uploads skipped the JSON API's id rule (`/`, spaces, 5,000 characters).
#[tokio::test]
async fn roster_upload_refuses_ids_the_json_api_refuses() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let long_id = "x".repeat(5000);
    let files = roster_files(
        "north",
        &[
            "north/s3,,true,student,Grace,Hopper",
            "north s4,,true,student,Ida,Noether",
            &format!("{long_id},,true,student,Long,Id"),
        ],
    );
    let refused = server.upload_roster(&north.admin, "north", files).await;
    refused.assert_error(422, "invalid_roster");
    let message = refused.body["message"].as_str().unwrap();
    let rule = "(ids are 1-128 characters of letters, digits and - _ . : @)";
    assert_eq!(
        message,
        format!(
            "users.csv:6: sourcedId \"north/s3\" is not a usable id: it contains '/' {rule}\n\
             users.csv:7: sourcedId \"north s4\" is not a usable id: it contains ' ' {rule}\n\
             users.csv:8: sourcedId \"{}...\" is not a usable id: it is 5000 characters long {rule}",
            "x".repeat(60)
        )
    );
    // The JSON API says the same rule in its own words, from the same check.
    let made = server
        .post(
            "/v1/schools/north/students",
            Some(&north.admin),
            json!({"id": "north/s3", "given_name": "Grace", "family_name": "Hopper"}),
        )
        .await;
    made.assert_error(400, "invalid_request");
    let message = made.body["message"].as_str().unwrap();
    assert_eq!(
        message,
        "student id \"north/s3\" must be 1-128 characters of letters, digits and - _ . : @"
    );
}

/// Issue 13: a 2.5 MB upload with a problem on every row answered with a 20 MB error body.
#[tokio::test]
async fn roster_upload_errors_list_200_problems_and_count_the_rest() {
    let server = Server::start().await;
    let north = server.school("north").await;
    let rows: Vec<String> = (0..20_000)
        .map(|i| format!("north-x{i},,maybe,student,A,B"))
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let refused = server
        .upload_roster(&north.admin, "north", roster_files("north", &rows))
        .await;
    refused.assert_error(422, "invalid_roster");
    let message = refused.body["message"].as_str().unwrap();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 201, "{}", lines[..3].join("\n"));
    assert_eq!(
        lines[0],
        "users.csv:6: enabledUser is \"maybe\" (expected true or false)"
    );
    assert_eq!(lines[200], "... and 19800 more problems");
    assert!(refused.text.len() < 40_000, "{} bytes", refused.text.len());
}

/// The document is valid OpenAPI, as a client generator would read it: checked by PyPI's
/// `openapi-spec-validator` from the project's virtualenv (scripts/setup installs it).
#[tokio::test]
async fn openapi_document_passes_a_spec_validator() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup, which makes the project's virtualenv",
        python.display()
    );
    let server = Server::start().await;
    let doc = server.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &doc.text).unwrap();
    let out = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.contains("OK"), "{said}");
}

/// The feed key of a pulled change: protocol v1's form of a change reads as the stored one
/// (`api::codec`'s tests hold them equal), whose `key` says which entity it describes.
fn feed_key(body: &shared_proto::sync::ChangeBody) -> String {
    let json = serde_json::to_value(body).expect("encode");
    let stored: sync_server::domain::feed::Change = serde_json::from_value(json).expect("decode");
    stored.key()
}
