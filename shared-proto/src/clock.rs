//! How far a box's clock may be from the server's, and how to say it: one rule for the box (its
//! `doctor`, `status` and the teacher's screen) and the server (the dashboard's devices page).
//! Every mark carries the box's time: a clock behind dates a lesson's roll to another day (the
//! server takes it, since an offline box pushes old events), and a clock ahead gets the marks
//! refused by the server's own rule (`max_clock_ahead_hours`).

use serde::Serialize;

/// How far from the server's a clock may be before it is wrong: marks carry the box's time, and a
/// minute is where "when did this student arrive" starts to be wrong.
pub const CLOCK_FAIL_MS: i64 = 60_000;
/// Where `doctor` warns. An HTTP `Date` has whole seconds, so a reading is up to a second off by
/// itself; the verdict allows that second on top.
pub const CLOCK_WARN_MS: i64 = 5_000;
const DATE_RESOLUTION_MS: i64 = 1_000;

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

/// "3 days behind", "2 h ahead", "4 min behind", "12 s ahead": the offset as a person reads it,
/// to the nearest unit (seconds rounded down, so a clock a fraction of a second off reads "0 s").
pub fn describe(offset_ms: i64) -> String {
    let side = if offset_ms < 0 { "behind" } else { "ahead" };
    let s = offset_ms.saturating_abs() / 1000;
    let nearest = |unit: i64| (s + unit / 2) / unit;
    let amount = match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", nearest(60)),
        3600..86_400 => format!("{} h", nearest(3600)),
        _ => match nearest(86_400) {
            1 => "1 day".to_owned(),
            days => format!("{days} days"),
        },
    };
    format!("{amount} {side}")
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
        assert_eq!(describe(-3 * 86_400_000 + 1_500), "3 days behind");
        assert_eq!(describe(-3 * 86_400_000 - 5_000), "3 days behind");
        assert_eq!(describe(86_400_000 + 7_200_000), "1 day ahead");
        assert_eq!(describe(2 * 3_600_000 + 59_000), "2 h ahead");
        assert_eq!(describe(-4 * 60_000 - 20_000), "4 min behind");
        assert_eq!(describe(-4 * 60_000 - 40_000), "5 min behind");
        assert_eq!(describe(12_999), "12 s ahead");
        assert_eq!(describe(-400), "0 s behind");
        assert_eq!(describe(i64::MIN), "106751991167 days behind");
    }
}
