//! Outbox rows -> protocol v1 events. The outbox keeps what the box decided, in its own words
//! (`store::OutboxPayload`); this is the one place that says how each kind looks on the wire.

use shared_proto::sync::{Embedding, Event, EventBody, TemplateData};
use shared_proto::{EmbeddingSpace, ModelId};

use crate::store::outbox::{
    ConsentChanged, MarkSet, SessionClosed, SessionOpened, TemplateAdded, TemplateDeleted,
};
use crate::store::{OutboxPayload, QueuedEvent, Store, StoreError};

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
    if !OutboxPayload::KINDS.contains(&event.kind.as_str()) {
        return Ok(Outgoing::Unsendable {
            code: "unknown_kind",
            reason: format!(
                "outbox kind {:?} has no wire form in protocol v1",
                event.kind
            ),
        });
    }
    let payload = match event.payload() {
        Ok(payload) => payload,
        Err(e) => {
            return Ok(Outgoing::Unsendable {
                code: "unreadable_payload",
                reason: format!("outbox {} payload cannot be read: {e}", event.kind),
            });
        }
    };
    // When it happened on the box: the row's time, except a close, which may be recorded after
    // the lesson it ends (the server keeps the event's time as the session's `closed_at`).
    let (at, body) = match payload {
        OutboxPayload::SessionOpened(p) => (event.created_at, session_opened(p, event.created_at)),
        OutboxPayload::SessionClosed(p) => (p.closed_at, session_closed(p)),
        OutboxPayload::MarkSet(p) => (event.created_at, mark_set(p)),
        OutboxPayload::TemplateAdded(p) => match template_added(store, p, device_id)? {
            Ok(body) => (event.created_at, body),
            Err(unsendable) => return Ok(unsendable),
        },
        OutboxPayload::TemplateDeleted(p) => (event.created_at, template_deleted(p)),
        OutboxPayload::ConsentChanged(p) => (event.created_at, consent_changed(p)),
    };
    Ok(Outgoing::Send(Event {
        id: event.id.clone(),
        at,
        body,
    }))
}

/// Rows of the first builds have no `started_at`: the session began when its row was written.
fn session_opened(p: SessionOpened, created_at: i64) -> EventBody {
    EventBody::SessionOpened {
        session: p.session,
        section: p.section,
        started_at: p.started_at.unwrap_or(created_at),
    }
}

fn session_closed(p: SessionClosed) -> EventBody {
    EventBody::SessionClosed { session: p.session }
}

fn mark_set(p: MarkSet) -> EventBody {
    EventBody::MarkSet {
        session: p.session,
        student: p.student,
        status: p.status,
        source: p.source,
        // Cosine similarity can dip below 0 for an absent student's best face.
        score: p.score.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0)),
        decided_at: p.at,
        by: p.by,
    }
}

fn template_deleted(p: TemplateDeleted) -> EventBody {
    EventBody::TemplateDeleted {
        template: p.template,
        student: p.student,
    }
}

fn consent_changed(p: ConsentChanged) -> EventBody {
    EventBody::ConsentChanged {
        student: p.student,
        consent: p.consent,
        by: p.by,
    }
}

/// The template as it is stored now (the vector is not in the outbox), or why it cannot leave.
fn template_added(
    store: &Store,
    p: TemplateAdded,
    device_id: &str,
) -> Result<Result<EventBody, Outgoing>, StoreError> {
    let Some(template) = store.stored_template(&p.template)? else {
        return Ok(Err(Outgoing::Unsendable {
            code: "purged_before_sync",
            reason: format!(
                "template {} was deleted on this box (consent withdrawn, or a re-enrolment replaced it) before it was sent; it must not leave the box",
                p.template
            ),
        }));
    };
    let model = match template.model_id.parse::<ModelId>() {
        Ok(model) => model,
        Err(e) => {
            return Ok(Err(Outgoing::Unsendable {
                code: "bad_model_id",
                reason: format!("template {}: model id {e}", template.uuid),
            }));
        }
    };
    let space = match template.space.parse::<EmbeddingSpace>() {
        Ok(space) => space,
        Err(e) => {
            return Ok(Err(Outgoing::Unsendable {
                code: "bad_space",
                reason: format!("template {}: {e}", template.uuid),
            }));
        }
    };
    let source = if template.source == "sync" {
        template.source
    } else {
        format!("box:{device_id}:{}", template.source)
    };
    Ok(Ok(EventBody::TemplateAdded {
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
