//! Outbox rows -> protocol v1 events. The outbox keeps what the box decided, in its own words;
//! this is the one place that says how each kind looks on the wire.

use serde::Deserialize;
use shared_proto::sync::{
    Consent, Embedding, Event, EventBody, MarkSource, MarkStatus, TemplateData,
};
use shared_proto::{EmbeddingSpace, ModelId};

use crate::store::{QueuedEvent, Store, StoreError};

/// What becomes of one outbox row.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    Send(Event),
    /// Cannot be sent; kept in the outbox as rejected with this code and reason.
    Unsendable {
        code: &'static str,
        reason: String,
    },
}

#[derive(Deserialize)]
struct SessionOpened {
    session: String,
    section: String,
    started_at: Option<i64>,
}

#[derive(Deserialize)]
struct MarkSet {
    session: String,
    student: String,
    status: MarkStatus,
    source: MarkSource,
    score: Option<f32>,
    at: i64,
    by: Option<String>,
}

#[derive(Deserialize)]
struct TemplateAdded {
    template: String,
}

#[derive(Deserialize)]
struct ConsentChanged {
    student: String,
    consent: Consent,
    by: String,
}

/// Older boxes stored the raw sharpness as a template's quality; the wire wants 0-1.
fn wire_quality(stored: f32) -> f32 {
    if stored > 1.0 {
        stored / (stored + 50.0)
    } else {
        stored.max(0.0)
    }
}

/// The wire event for `event`, reading the template's vector for `template_added`.
pub fn to_wire(
    store: &Store,
    event: &QueuedEvent,
    device_id: &str,
) -> Result<Outgoing, StoreError> {
    let unreadable = |e: serde_json::Error| Outgoing::Unsendable {
        code: "unreadable_payload",
        reason: format!("outbox {} payload cannot be read: {e}", event.kind),
    };
    let body = match event.kind.as_str() {
        "session_opened" => match serde_json::from_str::<SessionOpened>(&event.payload) {
            Ok(p) => EventBody::SessionOpened {
                session: p.session,
                section: p.section,
                started_at: p.started_at.unwrap_or(event.created_at),
            },
            Err(e) => return Ok(unreadable(e)),
        },
        "mark_set" => match serde_json::from_str::<MarkSet>(&event.payload) {
            Ok(p) => EventBody::MarkSet {
                session: p.session,
                student: p.student,
                status: p.status,
                source: p.source,
                // Cosine similarity can dip below 0 for an absent student's best face.
                score: p.score.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0)),
                decided_at: p.at,
                by: p.by,
            },
            Err(e) => return Ok(unreadable(e)),
        },
        "consent_changed" => match serde_json::from_str::<ConsentChanged>(&event.payload) {
            Ok(p) => EventBody::ConsentChanged {
                student: p.student,
                consent: p.consent,
                by: p.by,
            },
            Err(e) => return Ok(unreadable(e)),
        },
        "template_added" => {
            let p = match serde_json::from_str::<TemplateAdded>(&event.payload) {
                Ok(p) => p,
                Err(e) => return Ok(unreadable(e)),
            };
            let Some(template) = store.stored_template(&p.template)? else {
                return Ok(Outgoing::Unsendable {
                    code: "purged_before_sync",
                    reason: format!(
                        "template {} was deleted on this box (consent withdrawn) before it was sent; it must not leave the box",
                        p.template
                    ),
                });
            };
            let model = match template.model_id.parse::<ModelId>() {
                Ok(model) => model,
                Err(e) => {
                    return Ok(Outgoing::Unsendable {
                        code: "bad_model_id",
                        reason: format!("template {}: model id {e}", template.uuid),
                    });
                }
            };
            let space = match template.space.parse::<EmbeddingSpace>() {
                Ok(space) => space,
                Err(e) => {
                    return Ok(Outgoing::Unsendable {
                        code: "bad_space",
                        reason: format!("template {}: {e}", template.uuid),
                    });
                }
            };
            let source = if template.source == "sync" {
                template.source
            } else {
                format!("box:{device_id}:{}", template.source)
            };
            EventBody::TemplateAdded {
                template: TemplateData {
                    id: template.uuid,
                    student: template.student_id,
                    embedding: Embedding {
                        model,
                        space,
                        vector: template.vector,
                    },
                    quality: wire_quality(template.quality),
                    source,
                    created_at: template.created_at,
                },
            }
        }
        other => {
            return Ok(Outgoing::Unsendable {
                code: "unknown_kind",
                reason: format!("outbox kind {other:?} has no wire form in protocol v1"),
            });
        }
    };
    Ok(Outgoing::Send(Event {
        id: event.id.clone(),
        at: event.created_at,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Consent as StoreConsent, NewTemplate};

    fn store_with_student() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let import = crate::roster::RosterImport {
            students: vec![crate::roster::Person {
                id: "s1".into(),
                given_name: "Ada".into(),
                family_name: "L".into(),
                active: true,
            }],
            ..Default::default()
        };
        store.apply_roster(&import, "test").unwrap();
        store
            .set_consent("s1", StoreConsent::Granted, "form")
            .unwrap();
        store
    }

    fn wire_of_all(store: &Store) -> Vec<Outgoing> {
        store
            .waiting_events(100)
            .unwrap()
            .iter()
            .map(|e| to_wire(store, e, "dev1").unwrap())
            .collect()
    }

    #[test]
    fn every_kind_the_box_writes_has_a_wire_form() {
        let mut store = store_with_student();
        let vector: Vec<f32> = (0..512).map(|i| (i as f32).sin()).collect();
        let model = "w600k_mbf@0123456789ab";
        store
            .add_template(
                &NewTemplate {
                    student_id: "s1",
                    model_id: model,
                    space: "w600k_mbf-v1",
                    vector: &vector,
                    quality: 0.7,
                    source: "enrol-photo",
                    crop: None,
                },
                "t",
            )
            .unwrap();
        let out = wire_of_all(&store);
        assert_eq!(out.len(), 2);
        let Outgoing::Send(consent) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(consent.body.kind(), "consent_changed");
        let Outgoing::Send(Event {
            body: EventBody::TemplateAdded { template },
            ..
        }) = &out[1]
        else {
            panic!("{out:?}")
        };
        assert_eq!(template.embedding.vector, vector);
        assert_eq!(template.embedding.model.to_string(), model);
        assert_eq!(template.embedding.space.as_str(), "w600k_mbf-v1");
        assert_eq!(template.source, "box:dev1:enrol-photo");
        assert!((template.quality - 0.7).abs() < 1e-6);
    }

    #[test]
    fn a_template_purged_before_sync_stays_on_the_box() {
        let mut store = store_with_student();
        store
            .add_template(
                &NewTemplate {
                    student_id: "s1",
                    model_id: "w600k_mbf@0123456789ab",
                    space: "w600k_mbf-v1",
                    vector: &[0.1; 512],
                    quality: 0.5,
                    source: "enrol-photo",
                    crop: None,
                },
                "t",
            )
            .unwrap();
        store
            .set_consent("s1", StoreConsent::Withdrawn, "form")
            .unwrap();
        let out = wire_of_all(&store);
        assert!(
            matches!(
                &out[1],
                Outgoing::Unsendable {
                    code: "purged_before_sync",
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(matches!(&out[2], Outgoing::Send(e) if e.body.kind() == "consent_changed"));
    }

    #[test]
    fn raw_sharpness_of_older_boxes_becomes_a_score() {
        assert_eq!(wire_quality(0.4), 0.4);
        assert!((wire_quality(50.0) - 0.5).abs() < 1e-6);
    }
}
