//! What a box reports happened, as the server's rules read it. `api::codec` makes these from
//! whichever protocol version the box speaks, so the decisions and the stores never see the wire:
//! a protocol v2 changes the codec, not this.
//!
//! The values inside (statuses, consent, embeddings, timetable slots) are the shared vocabulary of
//! `shared_proto`; only the shape of a message is the wire's.

use serde::{Deserialize, Serialize};
use shared_proto::sync::{Consent, Embedding, MarkSource, MarkStatus};

use crate::store::Millis;

/// Something that happened on a box, once, with an id made there.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    /// When it happened on the box.
    pub at: Millis,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    SessionOpened {
        session: String,
        section: String,
        started_at: Millis,
    },
    SessionClosed {
        session: String,
    },
    MarkSet {
        session: String,
        student: String,
        status: MarkStatus,
        source: MarkSource,
        score: Option<f32>,
        decided_at: Millis,
        /// The teacher who decided; `None` for the machine.
        by: Option<String>,
    },
    TemplateAdded(Template),
    TemplateDeleted {
        template: String,
        student: String,
    },
    ConsentChanged {
        student: String,
        consent: Consent,
        by: String,
    },
}

impl Body {
    /// The word the store records an applied event under.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::SessionOpened { .. } => "session_opened",
            Body::SessionClosed { .. } => "session_closed",
            Body::MarkSet { .. } => "mark_set",
            Body::TemplateAdded(_) => "template_added",
            Body::TemplateDeleted { .. } => "template_deleted",
            Body::ConsentChanged { .. } => "consent_changed",
        }
    }

    /// Whether applying the event may write the school's change feed. A mark may too, when it
    /// meets a trip booked ahead, but that is rare enough to be found out as the push runs
    /// (MongoDB then runs it again holding the feed lock, `store::mongo::tx`).
    pub fn may_write_feed(&self) -> bool {
        matches!(
            self,
            Body::TemplateAdded(_) | Body::TemplateDeleted { .. } | Body::ConsentChanged { .. }
        )
    }
}

/// A face template as the server keeps it. Its serde form is the change feed's storage form
/// (`domain::feed`), which matches protocol v1's today so feeds written before the split still
/// read (`api::codec`'s tests hold both to it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub student: String,
    pub embedding: Embedding,
    /// Quality score of the photo it came from, 0-1.
    pub quality: f32,
    /// `box:<device>`, `central`, ...: for audits.
    pub source: String,
    pub created_at: Millis,
}
