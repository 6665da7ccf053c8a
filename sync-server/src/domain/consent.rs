//! Consent: the one rule for a recorded decision, whether it comes from a box's `consent_changed`
//! event or from the admin API.

use shared_proto::sync::{ChangeBody, Consent};

use super::{HeldStudent, Write};
use crate::store::Millis;

/// Records `consent` for `student`, held as `held` with the live templates `live_templates`.
///
/// - A decision older than the one held (`at` before `consent_at`) changes nothing: boxes push
///   late, and the office's later decision must stand.
/// - The boxes hear of the student again only when the state changes.
/// - Any state but `granted` tombstones every live template: a face is only kept with consent.
///
/// `held` is updated to the decision, so a later event of the same push sees it.
pub fn decide(
    student: &str,
    held: &mut HeldStudent,
    live_templates: &mut Vec<String>,
    consent: Consent,
    by: &str,
    at: Millis,
    writes: &mut Vec<Write<'_>>,
) {
    if held.consent_at.is_some_and(|held_at| at < held_at) {
        return;
    }
    writes.push(Write::SetConsent {
        student: student.to_owned(),
        consent,
        by: by.to_owned(),
        at,
    });
    let changed = held.consent != consent;
    held.consent = consent;
    held.consent_at = Some(at);
    if changed {
        writes.push(Write::Change(held.change(student)));
    }
    if consent != Consent::Granted {
        for template in live_templates.drain(..) {
            writes.push(Write::Tombstone {
                template: template.clone(),
                student: student.to_owned(),
            });
            writes.push(Write::Change(ChangeBody::TemplateDeleted {
                template,
                student: student.to_owned(),
            }));
        }
    }
}
