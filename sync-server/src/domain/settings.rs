//! A school's own settings: its time zone (what "today" and a lesson's time mean), the share of
//! missed lessons that makes chronic absence, and how long a box may be silent before the
//! dashboard calls it offline. Stored as this type's serde form on both stores.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

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
}

impl Default for SchoolSettings {
    fn default() -> SchoolSettings {
        SchoolSettings {
            time_zone: "UTC".to_owned(),
            chronic_percent: 10,
            offline_minutes: 30,
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
        Ok(())
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
    }
}
