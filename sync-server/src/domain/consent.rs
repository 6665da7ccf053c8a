//! Consent: the one rule for a recorded decision, whether it comes from a box's `consent_changed`
//! event or from the admin API.

use shared_proto::sync::Consent;

use super::Write;
use super::audit::{Action, Entry};
use crate::store::roster::Stored;
use crate::store::{Millis, Student};

/// Whether face templates of a student with this consent may be made and kept: only `granted`.
/// The one rule for a box's `template_added` (`push`), a decision that tombstones (`decide`) and
/// central enrolment's uploads and queue (`ml_client`).
pub fn allows_templates(consent: Consent) -> bool {
    consent == Consent::Granted
}

/// Records `consent` for the student `held`, whose live templates are `live_templates`.
///
/// - A decision older than the one held (`at` before `consent_at`) changes nothing: boxes push
///   late, and the office's later decision must stand.
/// - The boxes hear of the student again only when the state changes.
/// - Any state but `granted` tombstones every live template: a face is only kept with consent.
///
/// `held` and `live_templates` are updated to the decision, so a later event of the same push
/// sees it. Returns the templates it tombstoned.
pub fn decide(
    held: &mut Student,
    live_templates: &mut Vec<String>,
    consent: Consent,
    by: &str,
    at: Millis,
    writes: &mut Vec<Write<'_>>,
) -> Vec<String> {
    if held.consent_at.is_some_and(|held_at| at < held_at) {
        return Vec::new();
    }
    let student = held.id.clone();
    writes.push(Write::SetConsent {
        student: student.clone(),
        consent,
        by: by.to_owned(),
        at,
    });
    let changed = held.consent != consent;
    writes.push(Write::Audit(Entry {
        school_id: Some(held.school_id.clone()),
        at,
        actor: by.to_owned(),
        action: Action::ConsentChanged,
        subject: student.clone(),
        detail: format!("{} -> {}", held.consent.as_str(), consent.as_str()),
    }));
    held.consent = consent;
    held.consent_by = Some(by.to_owned());
    held.consent_at = Some(at);
    if changed {
        writes.push(Write::Change(held.change()));
    }
    if allows_templates(consent) {
        return Vec::new();
    }
    let tombstoned = std::mem::take(live_templates);
    for template in &tombstoned {
        writes.extend(Write::tombstone(template, &student));
    }
    tombstoned
}
