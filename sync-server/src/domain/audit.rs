//! The audit log: who did what to whose records, kept per school for the dashboard's audit page
//! and its CSV. A decision that changes records writes its entry in the same transaction
//! (`Write::Audit`), so a correction is never applied without a trace nor traced without being
//! applied; actions that are single store calls (a sign-in, a revocation) append theirs after.

use crate::store::Millis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    SignIn,
    MarkCorrected,
    ConsentChanged,
    StudentErased,
    DeviceRevoked,
    ProvisioningCodeIssued,
    RosterUploaded,
    AccountCreated,
    PasswordReset,
    TripBooked,
    TripCancelled,
    GuardianLinked,
    GuardianUnlinked,
    PhotosEnrolled,
    TemplatesReembedded,
}

shared_proto::vocabulary!(Action, "audit action", {
    SignIn => "sign_in",
    MarkCorrected => "mark_corrected",
    ConsentChanged => "consent_changed",
    StudentErased => "student_erased",
    DeviceRevoked => "device_revoked",
    ProvisioningCodeIssued => "provisioning_code_issued",
    RosterUploaded => "roster_uploaded",
    AccountCreated => "account_created",
    PasswordReset => "password_reset",
    TripBooked => "trip_booked",
    TripCancelled => "trip_cancelled",
    GuardianLinked => "guardian_linked",
    GuardianUnlinked => "guardian_unlinked",
    PhotosEnrolled => "photos_enrolled",
    TemplatesReembedded => "templates_reembedded",
});

impl Action {
    /// As the audit page names it.
    pub fn label(self) -> &'static str {
        match self {
            Action::SignIn => "signed in",
            Action::MarkCorrected => "corrected a mark",
            Action::ConsentChanged => "changed consent",
            Action::StudentErased => "erased a student",
            Action::DeviceRevoked => "revoked a box",
            Action::ProvisioningCodeIssued => "issued a box code",
            Action::RosterUploaded => "uploaded a roster",
            Action::AccountCreated => "created an account",
            Action::PasswordReset => "reset a password",
            Action::TripBooked => "booked a trip",
            Action::TripCancelled => "cancelled a trip",
            Action::GuardianLinked => "added a guardian",
            Action::GuardianUnlinked => "removed a guardian",
            Action::PhotosEnrolled => "enrolled photos",
            Action::TemplatesReembedded => "re-embedded kept face crops",
        }
    }
}

/// One line of a school's audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The school whose records it touched; `None` for a district admin's sign-in.
    pub school_id: Option<String>,
    pub at: Millis,
    /// The username (or, for a box's event, the teacher's id) of whoever acted.
    pub actor: String,
    pub action: Action,
    /// The record acted on: `session/student` for a mark, a student id, a device id, a username.
    pub subject: String,
    /// What changed and why, as a person reads it (a correction's reason is here).
    pub detail: String,
}

/// Which entries the audit page asks for: a school's, newest first, in `[from, to)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub school_id: String,
    pub from: Millis,
    pub to: Millis,
    pub action: Option<Action>,
    /// Entries whose actor is exactly this.
    pub actor: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}
