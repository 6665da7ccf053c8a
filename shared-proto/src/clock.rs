//! How far a box's clock may be from the server's, and how to say it: one rule for the box (its
//! `doctor`, `sync`, `status` and the teacher's screen) and the server (the devices page and the
//! admins' digest). Every mark carries the box's time: a clock behind dates a lesson's roll to
//! another day (the server takes it, since an offline box pushes old events), and a clock ahead
//! dates it later, or gets the marks refused once it is further ahead than the server's
//! `max_clock_ahead_hours` (24 h by default).

use serde::Serialize;

/// How far from the server's a clock may be before it is wrong: marks carry the box's time, and a
/// minute is where "when did this student arrive" starts to be wrong.
pub const CLOCK_FAIL_MS: i64 = 60_000;
/// Where `doctor` warns. An HTTP `Date` has whole seconds, so a reading is up to a second off by
/// itself; the warning allows that second on top.
pub const CLOCK_WARN_MS: i64 = 5_000;
const DATE_RESOLUTION_MS: i64 = 1_000;

/// What IT does about a box whose clock is off.
pub const CLOCK_FIX: &str = "set the box's clock from the network: timedatectl set-ntp true";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockVerdict {
    Ok,
    Warn,
    Fail,
}

/// What an offset (the box's clock less the server's) means.
pub fn verdict(offset_ms: i64) -> ClockVerdict {
    match offset_ms.saturating_abs() {
        d if d > CLOCK_FAIL_MS => ClockVerdict::Fail,
        d if d > CLOCK_WARN_MS + DATE_RESOLUTION_MS => ClockVerdict::Warn,
        _ => ClockVerdict::Ok,
    }
}

/// "3 days behind the server's", "2 h ahead of the server's", "4 min behind the server's": the
/// offset as a person reads it, by [`amount`].
pub fn describe(offset_ms: i64) -> String {
    let side = if offset_ms < 0 {
        "behind the server's"
    } else {
        "ahead of the server's"
    };
    format!("{} {side}", amount(offset_ms))
}

/// How long `ms` is (its sign ignored) as a person says it: to the nearest unit, seconds rounded
/// down (a fraction of a second off reads "0 s"), the unit chosen after rounding (59.5 min is
/// "1 h"), hours up to 47 and days after, so that a clock 30 h ahead does not read "1 day" beside
/// a server that allows 24 h. The box's clock rule and the server's refusal of events from a
/// clock ahead (`rules::check_clock`) both say it so.
pub fn amount(ms: i64) -> String {
    let s = ms.saturating_abs() / 1000;
    let nearest = |unit: i64| (s + unit / 2) / unit;
    match s {
        0..60 => format!("{s} s"),
        60..3_570 => format!("{} min", nearest(60)),
        3_570..171_000 => format!("{} h", nearest(3600)),
        _ => format!("{} days", nearest(86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_off_fails_and_a_second_of_header_rounding_passes() {
        assert_eq!(verdict(0), ClockVerdict::Ok);
        assert_eq!(verdict(5_900), ClockVerdict::Ok);
        assert_eq!(verdict(-6_001), ClockVerdict::Warn);
        assert_eq!(verdict(60_000), ClockVerdict::Warn);
        assert_eq!(verdict(60_001), ClockVerdict::Fail);
        assert_eq!(verdict(-3 * 86_400_000), ClockVerdict::Fail);
        assert_eq!(verdict(i64::MIN), ClockVerdict::Fail);
    }

    #[test]
    fn an_offset_reads_as_a_person_would_say_it() {
        // Three days less the header's rounding and the round trip is still three days.
        assert_eq!(
            describe(-3 * 86_400_000 + 1_500),
            "3 days behind the server's"
        );
        assert_eq!(
            describe(-3 * 86_400_000 - 5_000),
            "3 days behind the server's"
        );
        assert_eq!(
            describe(86_400_000 + 7_200_000),
            "26 h ahead of the server's"
        );
        assert_eq!(
            describe(2 * 3_600_000 + 59_000),
            "2 h ahead of the server's"
        );
        assert_eq!(describe(-4 * 60_000 - 20_000), "4 min behind the server's");
        assert_eq!(describe(-4 * 60_000 - 40_000), "5 min behind the server's");
        assert_eq!(describe(12_999), "12 s ahead of the server's");
        assert_eq!(describe(-400), "0 s behind the server's");
        // The unit after rounding: never "60 min" or "48 h".
        assert_eq!(describe(59 * 60_000 + 30_000), "1 h ahead of the server's");
        assert_eq!(
            describe(-(23 * 3_600_000 + 1_800_000)),
            "24 h behind the server's"
        );
        assert_eq!(
            describe(47 * 3_600_000 + 1_800_000),
            "2 days ahead of the server's"
        );
        // A clock set ten days ahead that has run on a little since is still ten days ahead.
        assert_eq!(amount(10 * 86_400_000 + 3 * 3_600_000), "10 days");
        assert_eq!(describe(i64::MIN), "106751991167 days behind the server's");
    }
}
