//! `/openapi.json`: an OpenAPI 3.0 document of every route, written by hand from one table
//! (`ROUTES`). A test holds this table and the router's route table to the same set.

use axum::Json;
use serde_json::{Map, Value, json};
use shared_proto::sync::{Consent, EnrolmentRole, MarkSource, MarkStatus};

use crate::store::Role;

/// Who may call a route.
#[derive(Clone, Copy)]
enum Access {
    Public,
    /// Any logged-in user; teachers limited to their sections.
    User,
    Admin,
    Device,
}

enum Body {
    None,
    Json(&'static str),
    Multipart,
}

struct RouteDoc {
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    request: Body,
    /// Query parameters: (name, description).
    query: &'static [(&'static str, &'static str)],
    /// Success status and the schema of its body (`None`: no body).
    ok: (u16, Option<&'static str>),
    /// Error statuses beyond the ones every route of its access level has.
    errors: &'static [u16],
}

const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/healthz",
        access: Access::Public,
        summary: "The process is up.",
        request: Body::None,
        query: &[],
        ok: (200, Some("Health")),
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/readyz",
        access: Access::Public,
        summary: "The store answers; 503 `unavailable` when it does not.",
        request: Body::None,
        query: &[],
        ok: (200, Some("Health")),
        errors: &[503],
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        access: Access::Public,
        summary: "Prometheus text: requests and latency per route, events applied and rejected, pull pages.",
        request: Body::None,
        query: &[],
        ok: (200, Some("text")),
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/openapi.json",
        access: Access::Public,
        summary: "This document.",
        request: Body::None,
        query: &[],
        ok: (200, Some("object")),
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/auth/login",
        access: Access::Public,
        summary: "Trade a username and password for a session token (12 h). Failures are limited per username and address (5 a minute), per address (20) and per username from new addresses (30): 429 `rate_limited` with Retry-After. More password checks at once than the server runs: 503 `unavailable` with Retry-After.",
        request: Body::Json("LoginRequest"),
        query: &[],
        ok: (200, Some("LoginResponse")),
        errors: &[400, 401, 413, 429, 503],
    },
    RouteDoc {
        method: "post",
        path: "/v1/auth/logout",
        access: Access::User,
        summary: "End this session.",
        request: Body::None,
        query: &[],
        ok: (204, None),
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/devices/provision",
        access: Access::Public,
        summary: "A box trades a one-time provisioning code for its device token. Unknown code: 400, used or expired: 410, both `provisioning_code_invalid`.",
        request: Body::Json("ProvisionRequest"),
        query: &[],
        ok: (200, Some("ProvisionResponse")),
        errors: &[400, 410, 413, 429],
    },
    RouteDoc {
        method: "post",
        path: "/v1/sync/push",
        access: Access::Device,
        summary: "Apply a batch of outbox events, idempotent by event id. A newer protocol is refused before the rest is read; over 1000 events: 413 `batch_too_large`; over the body limit: 413 `payload_too_large`. Nothing is applied on any error.",
        request: Body::Json("PushRequest"),
        query: &[],
        ok: (200, Some("PushResponse")),
        errors: &[400, 413],
    },
    RouteDoc {
        method: "get",
        path: "/v1/sync/pull",
        access: Access::Device,
        summary: "The device's school's changes after the cursor, in server order.",
        request: Body::None,
        query: &[
            (
                "cursor",
                "Decimal cursor from the last page's next_cursor; default 0.",
            ),
            ("limit", "Page size; default 500, at most 1000."),
        ],
        ok: (200, Some("PullResponse")),
        errors: &[400],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools",
        access: Access::Admin,
        summary: "Every school (district admin) or one's own (school admin).",
        request: Body::None,
        query: &[],
        ok: (200, Some("SchoolList")),
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools",
        access: Access::Admin,
        summary: "Create a school (district admins only).",
        request: Body::Json("School"),
        query: &[],
        ok: (201, Some("School")),
        errors: &[400, 409],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/provisioning-codes",
        access: Access::Admin,
        summary: "Create a one-time provisioning code for a box; the code is shown once.",
        request: Body::Json("NewProvisioningCode"),
        query: &[],
        ok: (201, Some("ProvisioningCode")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/devices",
        access: Access::Admin,
        summary: "The school's boxes, with last sync and revocation.",
        request: Body::None,
        query: &[],
        ok: (200, Some("DeviceList")),
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/devices/{device}/revoke",
        access: Access::Admin,
        summary: "Revoke a box's token; its next call gets 401 `token_revoked`.",
        request: Body::None,
        query: &[],
        ok: (204, None),
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/sections",
        access: Access::Admin,
        summary: "The school's sections.",
        request: Body::None,
        query: &[],
        ok: (200, Some("SectionList")),
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/sections",
        access: Access::Admin,
        summary: "Create or update a section.",
        request: Body::Json("Section"),
        query: &[],
        ok: (200, Some("Section")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/students",
        access: Access::Admin,
        summary: "The school's students with their consent.",
        request: Body::None,
        query: &[],
        ok: (200, Some("StudentList")),
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/students",
        access: Access::Admin,
        summary: "Create or update a student (consent is kept; change it with its own route).",
        request: Body::Json("NewStudent"),
        query: &[],
        ok: (200, Some("Student")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "put",
        path: "/v1/schools/{school}/students/{student}/consent",
        access: Access::Admin,
        summary: "Record consent; a withdrawal makes every box purge the student's templates.",
        request: Body::Json("ConsentUpdate"),
        query: &[],
        ok: (200, Some("Student")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "delete",
        path: "/v1/schools/{school}/students/{student}",
        access: Access::Admin,
        summary: "Erase a student: record, templates and marks; every box purges them.",
        request: Body::None,
        query: &[],
        ok: (204, None),
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/sections/{section}/enrolments",
        access: Access::Admin,
        summary: "Who is in a section.",
        request: Body::None,
        query: &[],
        ok: (200, Some("EnrolmentList")),
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/sections/{section}/enrolments",
        access: Access::Admin,
        summary: "Add, update or deactivate one enrolment.",
        request: Body::Json("NewEnrolment"),
        query: &[],
        ok: (200, Some("Enrolment")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/sections/{section}/schedule",
        access: Access::Admin,
        summary: "A section's timetable.",
        request: Body::None,
        query: &[],
        ok: (200, Some("Schedule")),
        errors: &[404],
    },
    RouteDoc {
        method: "put",
        path: "/v1/schools/{school}/sections/{section}/schedule",
        access: Access::Admin,
        summary: "Replace a section's timetable (weekday 1-7, HH:MM, starts before ends).",
        request: Body::Json("Schedule"),
        query: &[],
        ok: (200, Some("Schedule")),
        errors: &[400, 404],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/roster",
        access: Access::Admin,
        summary: "Upload a full OneRoster 1.1 bulk export: one multipart part per CSV file, named by its file name. All or nothing: problems give 422 `invalid_roster` listing the first 200 `file:line: reason` lines and how many more there were. Rows read leniently (OneRoster 1.0's `inactive`, an enrolment role other than the users.csv role, a blank manifest value) are counted in `warnings`.",
        request: Body::Multipart,
        query: &[],
        ok: (200, Some("RosterSummary")),
        errors: &[400, 404, 413, 422],
    },
    RouteDoc {
        method: "post",
        path: "/v1/schools/{school}/users",
        access: Access::Admin,
        summary: "Create a teacher (with teacher_id, their roster sourcedId) or an admin of the school.",
        request: Body::Json("NewUser"),
        query: &[],
        ok: (201, Some("User")),
        errors: &[400, 404, 409],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/attendance",
        access: Access::User,
        summary: "Marks by session start in a range of days (UTC). Teachers: only sections they teach (403 `forbidden` for others).",
        request: Body::None,
        query: &[
            (
                "section",
                "One section; teachers get all of theirs without it.",
            ),
            ("from", "First day, YYYY-MM-DD; default today."),
            ("to", "Last day, YYYY-MM-DD, included; default `from`."),
        ],
        ok: (200, Some("AttendanceList")),
        errors: &[400],
    },
    RouteDoc {
        method: "get",
        path: "/v1/schools/{school}/students/{student}/attendance",
        access: Access::User,
        summary: "One student's marks in a range of days (UTC). Teachers get only the rows of their sections.",
        request: Body::None,
        query: &[
            ("from", "First day, YYYY-MM-DD; default today."),
            ("to", "Last day, YYYY-MM-DD, included; default `from`."),
        ],
        ok: (200, Some("AttendanceList")),
        errors: &[400, 404],
    },
];

/// The (method, path) pairs this document describes, methods upper-case.
#[cfg(test)]
pub(super) fn documented_routes() -> Vec<(String, &'static str)> {
    ROUTES
        .iter()
        .map(|route| (route.method.to_uppercase(), route.path))
        .collect()
}

fn schema_ref(name: &str) -> Value {
    match name {
        "text" => json!({"type": "string"}),
        "object" => json!({"type": "object"}),
        name => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn error_response(status: u16) -> Value {
    let description = match status {
        400 => "`invalid_json`, `invalid_request` or `unsupported_protocol`",
        401 => "`unauthorized` (no, unknown or expired token) or `token_revoked`",
        403 => "`forbidden` (wrong role, a teacher outside their sections) or `wrong_school`",
        404 => "`not_found`",
        409 => "`conflict`",
        410 => "`provisioning_code_invalid` (used or expired)",
        413 => "`payload_too_large` or `batch_too_large`",
        422 => "`invalid_roster`",
        429 => "`rate_limited`; see Retry-After",
        503 => "`unavailable`; see Retry-After",
        _ => "error",
    };
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("ApiError")}},
    })
}

fn operation(route: &RouteDoc) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(route.summary));
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(route.query.iter().map(|(name, description)| {
        json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
    }));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    match route.request {
        Body::None => {}
        Body::Json(schema) => {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}}),
            );
        }
        Body::Multipart => {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"multipart/form-data": {"schema": {
                    "type": "object",
                    "description": "One part per CSV file, named by its file name: manifest.csv, users.csv, classes.csv, enrollments.csv, and optionally orgs.csv and academicSessions.csv.",
                    "additionalProperties": {"type": "string", "format": "binary"},
                }}}}),
            );
        }
    }
    let mut responses = Map::new();
    let (ok_status, ok_schema) = route.ok;
    let ok = match ok_schema {
        Some("text") => {
            json!({"description": "ok", "content": {"text/plain": {"schema": schema_ref("text")}}})
        }
        Some(schema) => {
            json!({"description": "ok", "content": {"application/json": {"schema": schema_ref(schema)}}})
        }
        None => json!({"description": "done, no body"}),
    };
    responses.insert(ok_status.to_string(), ok);
    let access_errors: &[u16] = match route.access {
        Access::Public => &[],
        Access::User | Access::Admin | Access::Device => &[401, 403],
    };
    let scope_errors: &[u16] = if route.path.contains("{school}") {
        &[403]
    } else {
        &[]
    };
    for status in access_errors
        .iter()
        .chain(scope_errors)
        .chain(route.errors)
        .chain(&[500])
    {
        responses.insert(status.to_string(), error_response(*status));
    }
    op.insert("responses".into(), Value::Object(responses));
    match route.access {
        Access::Public => {
            op.insert("security".into(), json!([]));
        }
        Access::User => {
            op.insert("security".into(), json!([{"session": []}]));
            op.insert("x-rollcall-access".into(), json!("admin or teacher"));
        }
        Access::Admin => {
            op.insert("security".into(), json!([{"session": []}]));
            op.insert("x-rollcall-access".into(), json!("admin"));
        }
        Access::Device => {
            op.insert("security".into(), json!([{"device": []}]));
            op.insert("x-rollcall-access".into(), json!("device"));
        }
    }
    Value::Object(op)
}

fn string() -> Value {
    json!({"type": "string"})
}

fn millis() -> Value {
    json!({"type": "integer", "format": "int64", "description": "milliseconds since the Unix epoch, UTC"})
}

fn object(required: &[&str], properties: Value) -> Value {
    if required.is_empty() {
        // OpenAPI 3.0 wants `required` to list at least one name, or to be left out.
        return json!({"type": "object", "properties": properties});
    }
    json!({"type": "object", "required": required, "properties": properties})
}

fn list_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

fn schemas() -> Value {
    let consent = json!({"type": "string", "enum": Consent::WORDS});
    let role = json!({"type": "string", "enum": EnrolmentRole::WORDS});
    let slot = object(
        &["weekday", "starts", "ends"],
        json!({"weekday": {"type": "integer", "minimum": 1, "maximum": 7}, "starts": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}, "ends": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}, "room": string()}),
    );
    let entries: Vec<(&str, Value)> = vec![
        (
            "ApiError",
            object(
                &["code", "message"],
                json!({
                    "code": {"type": "string", "enum": [
                        "invalid_json", "invalid_request", "unsupported_protocol", "unauthorized",
                        "token_revoked", "forbidden", "wrong_school", "not_found", "conflict",
                        "payload_too_large", "batch_too_large", "rate_limited",
                        "provisioning_code_invalid", "invalid_roster", "unavailable", "internal"]},
                    "message": string(),
                    "request_id": string(),
                }),
            ),
        ),
        ("Health", object(&["status"], json!({"status": string()}))),
        (
            "LoginRequest",
            object(
                &["username", "password"],
                json!({"username": string(), "password": {"type": "string", "format": "password"}}),
            ),
        ),
        (
            "LoginResponse",
            object(
                &["token", "expires_at", "role"],
                json!({"token": string(), "expires_at": millis(), "role": {"type": "string", "enum": Role::WORDS}, "school_id": {"type": "string", "nullable": true}}),
            ),
        ),
        (
            "ProvisionRequest",
            object(
                &["protocol", "code"],
                json!({"protocol": {"type": "integer"}, "code": string(), "name": string()}),
            ),
        ),
        (
            "ProvisionResponse",
            object(
                &["device_id", "school_id", "token"],
                json!({"device_id": string(), "school_id": string(), "token": string()}),
            ),
        ),
        (
            "Event",
            json!({
                "type": "object",
                "required": ["id", "at", "kind"],
                "description": "One outbox event; the other fields depend on kind (see shared_proto::sync::EventBody).",
                "properties": {"id": {"type": "string", "format": "uuid"}, "at": millis(), "kind": {"type": "string", "enum": ["session_opened", "session_closed", "mark_set", "template_added", "template_deleted", "consent_changed"]}},
                "additionalProperties": true,
            }),
        ),
        (
            "PushRequest",
            object(
                &["protocol", "events"],
                json!({"protocol": {"type": "integer"}, "events": {"type": "array", "maxItems": 1000, "items": schema_ref("Event")}}),
            ),
        ),
        (
            "PushResponse",
            object(
                &["acked", "rejected"],
                json!({
                    "acked": {"type": "array", "items": string()},
                    "rejected": {"type": "array", "items": object(&["id", "code", "reason"], json!({"id": string(), "code": {"type": "string", "enum": ["invalid_id", "unknown_section", "unknown_student", "unknown_session", "wrong_school", "no_consent", "invalid_event"]}, "reason": string()}))},
                }),
            ),
        ),
        (
            "Change",
            json!({
                "type": "object",
                "required": ["seq", "kind"],
                "description": "One change of the school's feed; the other fields depend on kind (see shared_proto::sync::ChangeBody).",
                "properties": {"seq": {"type": "integer", "format": "int64"}, "kind": {"type": "string", "enum": ["section", "student", "teacher", "enrolment", "schedule", "template", "template_deleted", "student_erased"]}},
                "additionalProperties": true,
            }),
        ),
        (
            "PullResponse",
            object(
                &["protocol", "changes", "next_cursor", "more"],
                json!({"protocol": {"type": "integer"}, "changes": list_of("Change"), "next_cursor": string(), "more": {"type": "boolean"}}),
            ),
        ),
        (
            "School",
            object(&["id", "name"], json!({"id": string(), "name": string()})),
        ),
        ("SchoolList", list_of("School")),
        (
            "NewProvisioningCode",
            object(
                &[],
                json!({"device_name": string(), "ttl_minutes": {"type": "integer", "minimum": 1, "maximum": 10080, "default": 1440}}),
            ),
        ),
        (
            "ProvisioningCode",
            object(
                &["code", "expires_at"],
                json!({"code": {"type": "string", "example": "7KQ3-M2XP-9RDA"}, "expires_at": millis()}),
            ),
        ),
        (
            "Device",
            object(
                &["id", "school_id", "name", "created_at"],
                json!({"id": string(), "school_id": string(), "name": string(), "created_at": millis(), "revoked_at": millis(), "last_seen_at": millis()}),
            ),
        ),
        ("DeviceList", list_of("Device")),
        (
            "Section",
            object(
                &["id", "title"],
                json!({"id": string(), "title": string(), "active": {"type": "boolean", "default": true}}),
            ),
        ),
        ("SectionList", list_of("Section")),
        (
            "NewStudent",
            object(
                &["id", "given_name", "family_name"],
                json!({"id": string(), "given_name": string(), "family_name": string(), "active": {"type": "boolean", "default": true}}),
            ),
        ),
        (
            "Student",
            object(
                &["id", "given_name", "family_name", "active", "consent"],
                json!({"id": string(), "given_name": string(), "family_name": string(), "active": {"type": "boolean"}, "consent": consent, "consent_by": string(), "consent_at": millis()}),
            ),
        ),
        ("StudentList", list_of("Student")),
        (
            "ConsentUpdate",
            object(&["consent"], json!({"consent": consent, "by": string()})),
        ),
        (
            "NewEnrolment",
            object(
                &["person_id", "role"],
                json!({"person_id": string(), "role": role, "active": {"type": "boolean", "default": true}}),
            ),
        ),
        (
            "Enrolment",
            object(
                &["section_id", "person_id", "role", "active"],
                json!({"section_id": string(), "person_id": string(), "role": role, "active": {"type": "boolean"}}),
            ),
        ),
        ("EnrolmentList", list_of("Enrolment")),
        ("ScheduleSlot", slot),
        (
            "Schedule",
            object(&["slots"], json!({"slots": list_of("ScheduleSlot")})),
        ),
        (
            "RosterSummary",
            object(
                &[
                    "sections",
                    "students",
                    "teachers",
                    "enrolments",
                    "deactivated",
                    "warnings",
                ],
                json!({"sections": {"type": "integer"}, "students": {"type": "integer"}, "teachers": {"type": "integer"}, "enrolments": {"type": "integer"}, "deactivated": {"type": "integer"}, "warnings": list_of("RosterWarning")}),
            ),
        ),
        (
            "RosterWarning",
            object(
                &["file", "rows", "message"],
                json!({"file": string(), "rows": {"type": "integer"}, "message": string()}),
            ),
        ),
        (
            "NewUser",
            object(
                &["username", "password", "role"],
                json!({"username": string(), "password": {"type": "string", "format": "password", "minLength": 10}, "role": {"type": "string", "enum": Role::WORDS}, "teacher_id": string()}),
            ),
        ),
        (
            "User",
            object(
                &["id", "username", "role"],
                json!({"id": string(), "username": string(), "role": {"type": "string", "enum": Role::WORDS}, "school_id": string(), "teacher_id": string()}),
            ),
        ),
        (
            "Attendance",
            object(
                &[
                    "session_id",
                    "device_id",
                    "student_id",
                    "status",
                    "source",
                    "decided_at",
                ],
                json!({
                    "session_id": string(), "section_id": string(), "started_at": millis(), "device_id": string(),
                    "student_id": string(),
                    "status": {"type": "string", "enum": MarkStatus::WORDS},
                    "source": {"type": "string", "enum": MarkSource::WORDS},
                    "score": {"type": "number"}, "decided_at": millis(), "decided_by": string(),
                }),
            ),
        ),
        ("AttendanceList", list_of("Attendance")),
    ];
    Value::Object(
        entries
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect(),
    )
}

/// The whole document.
fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(route.method.to_owned(), operation(route));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Rollcall sync server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Device sync (protocol v1), accounts and the admin API. Every error body is an ApiError with the request id; every response carries X-Request-Id.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer", "description": "A login token from POST /v1/auth/login."},
                "device": {"type": "http", "scheme": "bearer", "description": "A device token from POST /v1/devices/provision."},
            },
            "schemas": schemas(),
        },
    })
}

/// `GET /openapi.json`.
pub(super) async fn document() -> Json<Value> {
    Json(openapi())
}
