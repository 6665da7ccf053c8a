use super::*;
use crate::{EmbeddingSpace, ModelId};

fn model() -> ModelId {
    ModelId::new("fr_feature", "6e524bb134157e6f9b3f2afd").unwrap()
}

fn space() -> EmbeddingSpace {
    EmbeddingSpace::new("fr_feature-v1").unwrap()
}

fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
}

fn every_event() -> Vec<Event> {
    let template = TemplateData {
        id: "0190f1f0-0000-7000-8000-000000000001".into(),
        student: "s1".into(),
        embedding: Embedding {
            model: model(),
            space: space(),
            vector: vec![0.25, -1.5, f32::MIN_POSITIVE, 3.0e-9],
        },
        quality: 0.9,
        source: "box:room-12".into(),
        created_at: 1_700_000_000_000,
    };
    let bodies = vec![
        EventBody::SessionOpened {
            session: "sess".into(),
            section: "math-7a".into(),
            started_at: 1_700_000_000_000,
        },
        EventBody::SessionClosed {
            session: "sess".into(),
        },
        EventBody::MarkSet {
            session: "sess".into(),
            student: "s1".into(),
            status: MarkStatus::Late,
            source: MarkSource::Teacher,
            score: Some(0.61),
            decided_at: 1_700_000_001_000,
            by: Some("t1".into()),
        },
        EventBody::MarkSet {
            session: "sess".into(),
            student: "s2".into(),
            status: MarkStatus::Absent,
            source: MarkSource::Machine,
            score: None,
            decided_at: 1_700_000_001_000,
            by: None,
        },
        EventBody::TemplateAdded { template },
        EventBody::TemplateDeleted {
            template: "t".into(),
            student: "s1".into(),
        },
        EventBody::ConsentChanged {
            student: "s1".into(),
            consent: Consent::Withdrawn,
            by: "guardian letter".into(),
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            id: format!("0190f1f0-0000-7000-8000-00000000001{i}"),
            at: 1_700_000_000_000 + i as i64,
            body,
        })
        .collect()
}

#[test]
fn every_event_kind_round_trips() {
    let push = PushRequest {
        protocol: PROTOCOL_VERSION,
        events: every_event(),
        report: Some(BoxReport {
            app_version: "0.9.0".into(),
            outbox_waiting: 12,
            clock_ms: Some(1_700_000_000_123),
        }),
    };
    round_trip(&push);
    let bytes = serde_json::to_vec(&push).unwrap();
    assert_eq!(decode_push(&bytes).unwrap(), push);
}

/// A report of a box before `clock_ms` reads as one that says nothing of its clock, and a report
/// without a clock is written as such a box wrote it.
#[test]
fn a_report_without_the_boxs_clock_is_still_read() {
    let push = decode_push(
        br#"{"protocol":2,"events":[],"report":{"app_version":"0.9.0","outbox_waiting":1}}"#,
    )
    .unwrap();
    let report = push.report.unwrap();
    assert_eq!(report.clock_ms, None);
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        r#"{"app_version":"0.9.0","outbox_waiting":1}"#
    );
}

#[test]
fn every_change_kind_round_trips() {
    let changes = vec![
        ChangeBody::Section {
            id: "math-7a".into(),
            title: "Maths 7A".into(),
            active: true,
        },
        ChangeBody::Student {
            id: "s1".into(),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            active: true,
            consent: Consent::Granted,
        },
        ChangeBody::Teacher {
            id: "t1".into(),
            given_name: "Alan".into(),
            family_name: "Turing".into(),
            active: false,
        },
        ChangeBody::Enrolment {
            section: "math-7a".into(),
            person: "s1".into(),
            role: EnrolmentRole::Student,
            active: true,
        },
        ChangeBody::Schedule {
            section: "math-7a".into(),
            slots: vec![ScheduleSlot {
                weekday: 1,
                starts: "08:30".into(),
                ends: "09:15".into(),
                room: Some("12".into()),
            }],
        },
        ChangeBody::TemplateDeleted {
            template: "t".into(),
            student: "s1".into(),
        },
        ChangeBody::StudentErased {
            student: "s1".into(),
        },
        ChangeBody::Mark {
            session: "sess".into(),
            student: "s1".into(),
            status: MarkStatus::Excused,
            source: MarkSource::Office,
            decided_at: 1_700_000_000_000,
            by: Some("office".into()),
            event: "e1".into(),
        },
    ];
    let page = PullResponse {
        protocol: PROTOCOL_VERSION,
        changes: changes
            .into_iter()
            .enumerate()
            .map(|(i, body)| Change {
                seq: i as u64 + 1,
                body,
            })
            .collect(),
        next_cursor: "7".into(),
        more: false,
    };
    round_trip(&page);
}

#[test]
fn embeddings_travel_as_base64_of_little_endian_f32() {
    let embedding = Embedding {
        model: model(),
        space: space(),
        vector: vec![1.0, -2.0],
    };
    let json = serde_json::to_value(&embedding).unwrap();
    // 1.0 = 00 00 80 3f, -2.0 = 00 00 00 c0.
    assert_eq!(
        json,
        serde_json::json!({"model": "fr_feature@6e524bb13415", "space": "fr_feature-v1", "f32le": "AACAPwAAAMA="})
    );
    round_trip(&embedding);
}

#[test]
fn an_embedding_from_a_build_before_spaces_lands_in_its_models_space() {
    // Boxes and servers from before spaces send only the model id.
    let old = serde_json::json!({"model": "fr_feature@7cf1cb7e95b9", "f32le": "AACAPw=="});
    let embedding: Embedding = serde_json::from_value(old).unwrap();
    assert_eq!(embedding.space, space());
    let other = serde_json::json!({"model": "w600k_mbf@0123456789ab", "f32le": "AACAPw=="});
    let embedding: Embedding = serde_json::from_value(other).unwrap();
    assert_eq!(embedding.space.as_str(), "w600k_mbf@0123456789ab");
    // A malformed space is refused, never defaulted to the model's.
    let bad_space = serde_json::json!({"model": "fr_feature@7cf1cb7e95b9", "space": "Not A Space", "f32le": "AACAPw=="});
    assert!(serde_json::from_value::<Embedding>(bad_space).is_err());
    // A build from before spaces read an embedding as exactly this (no `deny_unknown_fields`):
    // today's embeddings still decode there, with the same vector.
    #[derive(Deserialize)]
    struct BeforeSpaces {
        model: ModelId,
        f32le: String,
    }
    let today = Embedding {
        model: model(),
        space: space(),
        vector: vec![1.0],
    };
    let old: BeforeSpaces = serde_json::from_value(serde_json::to_value(&today).unwrap()).unwrap();
    assert_eq!((old.model, old.f32le.as_str()), (model(), "AACAPw=="));
}

#[test]
fn broken_embeddings_are_refused() {
    for (f32le, expected) in [
        ("not base64!", "not valid base64"),
        ("AACAPwAA", "not a whole number"),
        ("", "0 dimensions"),
        ("AADAfw==", "NaN"),
    ] {
        let json = serde_json::json!({"model": "fr_feature@6e524bb13415", "f32le": f32le});
        let err = serde_json::from_value::<Embedding>(json).unwrap_err();
        assert!(err.to_string().contains(expected), "{f32le}: {err}");
    }
    let bad_model = serde_json::json!({"model": "fr_feature", "f32le": "AACAPw=="});
    assert!(serde_json::from_value::<Embedding>(bad_model).is_err());
}

#[test]
fn a_newer_protocol_is_refused_before_its_events_are_read() {
    // Version 3 may carry kinds this build does not know: the code must say "version", not "JSON".
    let body = br#"{"protocol": 3, "events": [{"id": "x", "at": 1, "kind": "hologram_seen"}]}"#;
    let err = decode_push(body).unwrap_err();
    assert_eq!(err.code(), ApiErrorCode::UnsupportedProtocol);
    assert!(err.to_string().contains("newer"), "{err}");

    let missing = br#"{"events": []}"#;
    assert_eq!(
        decode_push(missing).unwrap_err().code(),
        ApiErrorCode::UnsupportedProtocol
    );
    let stale = br#"{"protocol": 0, "events": []}"#;
    assert_eq!(decode_push(stale).unwrap_err(), WireError::StaleProtocol(0));
}

#[test]
fn malformed_pushes_are_invalid_json() {
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"protocol": 1, "events": [{"id": "x", "at": 1, "kind": "hologram_seen"}]}"#,
        br#"{"protocol": 1, "events": [{"id": "x", "kind": "session_closed", "session": "s"}]}"#,
        br#"{"protocol": "1", "events": []}"#,
    ] {
        let err = decode_push(body).unwrap_err();
        assert_eq!(
            err.code(),
            ApiErrorCode::InvalidJson,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn teacher_beats_machine_then_later_decision_wins() {
    use MarkSource::*;
    assert!(mark_wins((Teacher, 1, "a"), (Machine, 9, "b")));
    assert!(!mark_wins((Machine, 9, "b"), (Teacher, 1, "a")));
    assert!(mark_wins((Machine, 5, "a"), (Machine, 4, "b")));
    assert!(!mark_wins((Teacher, 4, "z"), (Teacher, 5, "a")));
    // Equal times: the id decides, the same way on every replica.
    assert!(mark_wins((Teacher, 5, "b"), (Teacher, 5, "a")));
    assert!(!mark_wins((Teacher, 5, "a"), (Teacher, 5, "a")));
}

#[test]
fn office_and_teacher_are_both_people_and_the_later_decides() {
    use MarkSource::*;
    // The office beats the machine whatever the times, like a teacher.
    assert!(mark_wins((Office, 1, "a"), (Machine, 9, "b")));
    assert!(!mark_wins((Machine, 9, "b"), (Office, 1, "a")));
    // Among people the later decision wins, whoever made it.
    assert!(mark_wins((Office, 6, "a"), (Teacher, 5, "b")));
    assert!(mark_wins((Teacher, 7, "a"), (Office, 6, "b")));
    assert!(!mark_wins((Teacher, 5, "z"), (Office, 6, "a")));
    // Equal times: the id, not the role.
    assert!(mark_wins((Teacher, 5, "b"), (Office, 5, "a")));
    assert!(!mark_wins((Office, 5, "a"), (Teacher, 5, "b")));
}

#[test]
fn a_server_serves_the_version_before_and_leaves_marks_out_of_its_feed() {
    assert_eq!(check_protocol(1), Ok(1));
    assert_eq!(check_protocol(2), Ok(2));
    assert_eq!(check_protocol(0), Err(WireError::StaleProtocol(0)));
    assert!(matches!(
        check_protocol(3),
        Err(WireError::NewerProtocol { found: 3, .. })
    ));
    let mark = ChangeBody::Mark {
        session: "s".into(),
        student: "st".into(),
        status: MarkStatus::Excused,
        source: MarkSource::Office,
        decided_at: 5,
        by: Some("office".into()),
        event: "e".into(),
    };
    assert!(!speaks(1, &mark));
    assert!(speaks(2, &mark));
    assert!(speaks(
        1,
        &ChangeBody::StudentErased {
            student: "st".into()
        }
    ));
}

#[test]
fn error_codes_are_snake_case_strings() {
    let err = ApiError {
        code: ApiErrorCode::BatchTooLarge,
        message: "too many".into(),
        request_id: None,
    };
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        serde_json::json!({"code": "batch_too_large", "message": "too many"})
    );
    round_trip(&err);
}
