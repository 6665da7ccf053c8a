//! Protocol v1 to the server's own types and back: the only place that knows the shape of a push,
//! a push's answer and a pulled change. The decisions (`domain`) and the stores take and return
//! `domain::event`, `domain::push::Outcome` and `domain::feed` values, so a protocol v2 is a second
//! set of conversions here, not a change to any rule or store.

use shared_proto::sync::{self as wire, EventBody, Rejection};

use crate::domain::event::{Body, Event, Template};
use crate::domain::feed::{Change, Entry};
use crate::domain::push::{Outcome, Refused};
use crate::store::{BoxState, Millis};

impl From<wire::Event> for Event {
    fn from(event: wire::Event) -> Event {
        let body = match event.body {
            EventBody::SessionOpened {
                session,
                section,
                started_at,
            } => Body::SessionOpened {
                session,
                section,
                started_at,
            },
            EventBody::SessionClosed { session } => Body::SessionClosed { session },
            EventBody::MarkSet {
                session,
                student,
                status,
                source,
                score,
                decided_at,
                by,
            } => Body::MarkSet {
                session,
                student,
                status,
                source,
                score,
                decided_at,
                by,
            },
            EventBody::TemplateAdded { template } => Body::TemplateAdded(template.into()),
            EventBody::TemplateDeleted { template, student } => {
                Body::TemplateDeleted { template, student }
            }
            EventBody::ConsentChanged {
                student,
                consent,
                by,
            } => Body::ConsentChanged {
                student,
                consent,
                by,
            },
        };
        Event {
            id: event.id,
            at: event.at,
            body,
        }
    }
}

impl From<wire::TemplateData> for Template {
    fn from(t: wire::TemplateData) -> Template {
        Template {
            id: t.id,
            student: t.student,
            embedding: t.embedding,
            quality: t.quality,
            source: t.source,
            created_at: t.created_at,
        }
    }
}

impl From<Template> for wire::TemplateData {
    fn from(t: Template) -> wire::TemplateData {
        wire::TemplateData {
            id: t.id,
            student: t.student,
            embedding: t.embedding,
            quality: t.quality,
            source: t.source,
            created_at: t.created_at,
        }
    }
}

impl From<Outcome> for wire::PushResponse {
    fn from(outcome: Outcome) -> wire::PushResponse {
        wire::PushResponse {
            acked: outcome.acked,
            rejected: outcome.refused.into_iter().map(Rejection::from).collect(),
        }
    }
}

/// What a push's report says of its box, with the box's clock against the server's at `received_at`
/// (once the body is read). The request's transit counts as the box being behind: milliseconds on
/// a school's network, a few seconds for a large push on a slow link, against the clock rule's
/// minute (`shared_proto::clock`).
pub fn box_state(report: wire::BoxReport, received_at: Millis) -> BoxState {
    BoxState {
        app_version: report.app_version,
        outbox_waiting: report.outbox_waiting,
        clock_offset_ms: report.clock_ms.map(|at| at.saturating_sub(received_at)),
    }
}

impl From<Refused> for Rejection {
    fn from(refused: Refused) -> Rejection {
        Rejection {
            id: refused.id,
            code: refused.code,
            reason: refused.reason,
        }
    }
}

impl From<Entry> for wire::Change {
    fn from(entry: Entry) -> wire::Change {
        use wire::ChangeBody as Wire;
        let body = match entry.change {
            Change::Section { id, title, active } => Wire::Section { id, title, active },
            Change::Student {
                id,
                given_name,
                family_name,
                active,
                consent,
            } => Wire::Student {
                id,
                given_name,
                family_name,
                active,
                consent,
            },
            Change::Teacher {
                id,
                given_name,
                family_name,
                active,
            } => Wire::Teacher {
                id,
                given_name,
                family_name,
                active,
            },
            Change::Enrolment {
                section,
                person,
                role,
                active,
            } => Wire::Enrolment {
                section,
                person,
                role,
                active,
            },
            Change::Schedule { section, slots } => Wire::Schedule { section, slots },
            Change::Template { template } => Wire::Template {
                template: template.into(),
            },
            Change::TemplateDeleted { template, student } => {
                Wire::TemplateDeleted { template, student }
            }
            Change::StudentErased { student } => Wire::StudentErased { student },
            Change::Mark {
                session,
                student,
                status,
                source,
                decided_at,
                by,
                event,
            } => Wire::Mark {
                session,
                student,
                status,
                source,
                decided_at,
                by,
                event,
            },
        };
        wire::Change {
            seq: entry.seq,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use shared_proto::sync::{ChangeBody, Consent, Embedding, EnrolmentRole, ScheduleSlot};
    use shared_proto::{EmbeddingSpace, ModelId};

    use super::*;

    fn template() -> Template {
        Template {
            id: "0190f1f0-0000-7000-8000-000000000901".into(),
            student: "ada".into(),
            embedding: Embedding {
                model: ModelId::new("fr_feature", "6e524bb134157e6f").unwrap(),
                space: EmbeddingSpace::new("fr_feature-v1").unwrap(),
                vector: vec![0.25, -1.0, 0.5],
            },
            quality: 0.9,
            source: "box:1".into(),
            created_at: 7,
        }
    }

    /// Every kind of change, as the store keeps it.
    fn changes() -> Vec<Change> {
        vec![
            Change::Section {
                id: "maths".into(),
                title: "Maths".into(),
                active: true,
            },
            Change::Student {
                id: "ada".into(),
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                active: false,
                consent: Consent::Withdrawn,
            },
            Change::Teacher {
                id: "t1".into(),
                given_name: "Tom".into(),
                family_name: "Kilburn".into(),
                active: true,
            },
            Change::Enrolment {
                section: "maths".into(),
                person: "ada".into(),
                role: EnrolmentRole::Student,
                active: true,
            },
            Change::Schedule {
                section: "maths".into(),
                slots: vec![ScheduleSlot {
                    weekday: 1,
                    starts: "08:30".into(),
                    ends: "09:15".into(),
                    room: None,
                }],
            },
            Change::Template {
                template: template(),
            },
            Change::TemplateDeleted {
                template: template().id,
                student: "ada".into(),
            },
            Change::StudentErased {
                student: "ada".into(),
            },
        ]
    }

    /// The storage form of a feed row equals protocol v1's form of the same change, so rows
    /// stored before the split read as the same change, and the change keys agree.
    #[test]
    fn stored_changes_read_as_protocol_v1_wrote_them() {
        for (seq, change) in changes().into_iter().enumerate() {
            let stored = serde_json::to_value(&change).unwrap();
            let wire = wire::Change::from(Entry {
                seq: seq as u64,
                change: change.clone(),
            });
            assert_eq!(serde_json::to_value(&wire.body).unwrap(), stored);
            let v1: ChangeBody = serde_json::from_value(stored.clone()).unwrap();
            assert_eq!(v1, wire.body);
            let read: Change = serde_json::from_value(serde_json::to_value(&v1).unwrap()).unwrap();
            assert_eq!(read, change);
        }
    }

    #[test]
    fn a_pushed_event_keeps_every_field() {
        let json = serde_json::json!([
            {"id": "e1", "at": 5, "kind": "session_opened", "session": "s1", "section": "maths", "started_at": 4},
            {"id": "e2", "at": 6, "kind": "mark_set", "session": "s1", "student": "ada", "status": "late",
             "source": "teacher", "score": 0.5, "decided_at": 6, "by": "t1"},
            {"id": "e3", "at": 7, "kind": "template_added", "template": serde_json::to_value(template()).unwrap()},
            {"id": "e4", "at": 8, "kind": "consent_changed", "student": "ada", "consent": "granted", "by": "office"},
        ]);
        let wire: Vec<wire::Event> = serde_json::from_value(json).unwrap();
        let events: Vec<Event> = wire.into_iter().map(Event::from).collect();
        assert_eq!(events[0].body.kind(), "session_opened");
        assert!(matches!(
            &events[1].body,
            Body::MarkSet { by: Some(by), score: Some(s), decided_at: 6, .. } if by == "t1" && *s == 0.5
        ));
        assert_eq!(events[2].body, Body::TemplateAdded(template()));
        assert_eq!(events[3].at, 8);
    }
}
