//! A school's own settings: its time zone (what "today" and a lesson's time mean), the share of
//! missed lessons that makes chronic absence, and how long a box may be silent before the
//! dashboard calls it offline, what notices it sends (issue 16), and whether central enrolment
//! keeps face crops (issue 17). Stored as this type's serde
//! form on both stores; a field missing from stored settings reads as its default.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::guardian::{Contact, Relationship};
use super::notice::{GuardianRules, GuardianTiming};
use crate::store::Millis;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchoolSettings {
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Missing this percentage of decided lessons or more (excused or not) is chronic absence; the
    /// common US definition is 10.
    pub chronic_percent: u8,
    /// A box not heard from for this long is offline.
    pub offline_minutes: u32,
    /// When guardians hear of absences.
    pub guardian_notices: GuardianTiming,
    /// Minutes after a lesson's end before its marks are final and may be told.
    pub grace_minutes: u32,
    /// `HH:MM`, school time: when the guardians' digest goes out.
    pub digest_time: String,
    /// Whether a guardian who was told of an absence that was then corrected hears of it.
    pub corrections: bool,
    /// Whether the admins get the daily digest, and at what time (`HH:MM`).
    pub admin_digest: bool,
    pub admin_digest_time: String,
    /// Whether the admins are told at once of a box offline during school hours.
    pub offline_alerts: bool,
    /// Where the admins' digest and alerts go (lower case, checked like a guardian's).
    pub admin_emails: Vec<String>,
    /// Whether central enrolment keeps each template's 112x112 aligned face (never the photo), so
    /// that a model change re-embeds them instead of asking for new photos. Off by default;
    /// switched off, every kept crop is deleted.
    pub keep_crops: bool,
}

impl Default for SchoolSettings {
    fn default() -> SchoolSettings {
        SchoolSettings {
            time_zone: "UTC".to_owned(),
            chronic_percent: 10,
            offline_minutes: 30,
            guardian_notices: GuardianTiming::Digest,
            grace_minutes: 30,
            digest_time: "16:00".to_owned(),
            corrections: true,
            admin_digest: true,
            admin_digest_time: "16:30".to_owned(),
            offline_alerts: true,
            admin_emails: Vec::new(),
            keep_crops: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("\"{0}\" is not a time zone this server knows (an IANA name like Europe/Berlin)")]
    TimeZone(String),
    #[error("the chronic-absence threshold must be 1-50 %")]
    Chronic,
    #[error("a box is offline after 5-10080 minutes (a week)")]
    Offline,
    #[error("marks are final 0-240 minutes after a lesson ends")]
    Grace,
    #[error("\"{0}\" is not a time of day like 16:00")]
    Time(String),
    #[error(transparent)]
    AdminEmail(#[from] super::guardian::Refusal),
}

impl SchoolSettings {
    /// Checks every field; what the settings form and the API accept.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if TimeZone::get(&self.time_zone).is_err() {
            return Err(SettingsError::TimeZone(self.time_zone.clone()));
        }
        if !(1..=50).contains(&self.chronic_percent) {
            return Err(SettingsError::Chronic);
        }
        if !(5..=10_080).contains(&self.offline_minutes) {
            return Err(SettingsError::Offline);
        }
        if self.grace_minutes > 240 {
            return Err(SettingsError::Grace);
        }
        for time in [&self.digest_time, &self.admin_digest_time] {
            if shared_proto::sync::minutes_of_day(time).is_none() {
                return Err(SettingsError::Time(time.chars().take(20).collect()));
            }
        }
        for email in &self.admin_emails {
            admin_email(email)?;
        }
        Ok(())
    }

    /// What `notice::plan_guardians` follows on a day whose local midnight is `midnight`.
    pub fn guardian_rules(&self, midnight: Millis) -> GuardianRules {
        GuardianRules {
            timing: self.guardian_notices,
            grace_minutes: self.grace_minutes,
            digest_at: midnight + minutes_ms(&self.digest_time),
            corrections: self.corrections,
        }
    }

    /// The admins' digest time on a day whose local midnight is `midnight`.
    pub fn admin_digest_at(&self, midnight: Millis) -> Millis {
        midnight + minutes_ms(&self.admin_digest_time)
    }

    /// The school's time zone; UTC for a name this build does not know (settings are checked when
    /// saved, but a database may outlive a time zone's name).
    pub fn tz(&self) -> TimeZone {
        TimeZone::get(&self.time_zone).unwrap_or(TimeZone::UTC)
    }

    pub fn chronic_threshold(&self) -> f64 {
        f64::from(self.chronic_percent)
    }
}

/// `HH:MM` in milliseconds after midnight; a time that does not read (refused when saved) is
/// 16:00.
fn minutes_ms(time: &str) -> Millis {
    Millis::from(shared_proto::sync::minutes_of_day(time).unwrap_or(16 * 60)) * 60_000
}

/// An admin's address as kept: checked and lower-cased as a guardian's is, one rule for both.
pub fn admin_email(email: &str) -> Result<String, super::guardian::Refusal> {
    Contact {
        given_name: "admin".into(),
        family_name: "admin".into(),
        email: email.to_owned(),
        relationship: Relationship::Guardian,
    }
    .check()
    .map(|c| c.email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert_eq!(SchoolSettings::default().validate(), Ok(()));
        let berlin = SchoolSettings {
            time_zone: "Europe/Berlin".into(),
            ..SchoolSettings::default()
        };
        assert_eq!(berlin.validate(), Ok(()));
        let bad = SchoolSettings {
            time_zone: "Mars/Olympus".into(),
            ..SchoolSettings::default()
        };
        assert!(matches!(bad.validate(), Err(SettingsError::TimeZone(_))));
        assert_eq!(bad.tz(), TimeZone::UTC);
        let bad = SchoolSettings {
            chronic_percent: 0,
            ..SchoolSettings::default()
        };
        assert_eq!(bad.validate(), Err(SettingsError::Chronic));
        // Stored settings missing a field read with its default.
        let old: SchoolSettings = serde_json::from_str(r#"{"time_zone":"Europe/Paris"}"#).unwrap();
        assert_eq!(old.chronic_percent, 10);
        assert_eq!(old.guardian_notices, GuardianTiming::Digest);
        assert_eq!(old.guardian_rules(0).digest_at, 16 * 3_600_000);
        let bad = SchoolSettings {
            digest_time: "25:00".into(),
            ..SchoolSettings::default()
        };
        assert!(matches!(bad.validate(), Err(SettingsError::Time(_))));
        let bad = SchoolSettings {
            admin_emails: vec!["office@school.org\r\nBcc: x@y.org".into()],
            ..SchoolSettings::default()
        };
        assert!(matches!(bad.validate(), Err(SettingsError::AdminEmail(_))));
    }
}
