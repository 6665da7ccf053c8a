//! A school's lessons of one day, from its timetable in the school's time zone, and whether each
//! was registered: the one rule for "taken", "not taken yet" and "not registered" that the Today
//! page shows (and a daily digest will send).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use shared_proto::sync::ScheduleSlot;

use crate::store::Millis;

/// A session opened this long before its lesson's start still registers it: teachers open the roll
/// while pupils come in.
pub const EARLY_MS: Millis = 15 * 60 * 1000;
/// A lesson without a session this long after its start is "not registered".
pub const GRACE_MS: Millis = 10 * 60 * 1000;

/// One lesson of the day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lesson {
    pub section: String,
    pub starts: Millis,
    pub ends: Millis,
    pub room: Option<String>,
}

/// A session as the day's registrations see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub section: String,
    pub session: String,
    pub started_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The session that registered it.
    Taken(String),
    /// Not started yet, or within its grace period.
    NotYet,
    /// Started more than `GRACE_MS` ago with no session.
    NotRegistered,
}

/// `HH:MM` as minutes after midnight (the wire's one reading of a slot's time).
fn minutes(text: &str) -> Option<i64> {
    shared_proto::sync::minutes_of_day(text).map(i64::from)
}

/// `HH:MM` of `at` in `tz`, as pages and notices show a lesson's time; empty when out of range.
pub fn clock(at: Millis, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(at).map_or_else(
        |_| String::new(),
        |t| t.to_zoned(tz.clone()).strftime("%H:%M").to_string(),
    )
}

/// The local day of `at` in `tz`.
pub fn day_of(at: Millis, tz: &TimeZone) -> Option<Date> {
    Some(
        Timestamp::from_millisecond(at)
            .ok()?
            .to_zoned(tz.clone())
            .date(),
    )
}

/// The instant `minutes` after local midnight of `day` in `tz` (a DST gap resolves later, as
/// `jiff` does by default).
fn at(day: Date, minutes: i64, tz: &TimeZone) -> Option<Millis> {
    let time = jiff::civil::time((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
    Some(
        day.to_datetime(time)
            .to_zoned(tz.clone())
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

/// `[start, end)` of the local `day` in milliseconds.
pub fn bounds(day: Date, tz: &TimeZone) -> Option<(Millis, Millis)> {
    let start = day.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
    let end = day
        .tomorrow()
        .ok()?
        .to_zoned(tz.clone())
        .ok()?
        .timestamp()
        .as_millisecond();
    Some((start, end))
}

/// The lessons of `day` from the sections' timetables, by start then section. Slots that do not
/// read as times are skipped (the API refuses them on the way in).
pub fn of_day(timetable: &[(String, Vec<ScheduleSlot>)], day: Date, tz: &TimeZone) -> Vec<Lesson> {
    let weekday = day.weekday().to_monday_one_offset() as u8;
    let mut lessons: Vec<Lesson> = timetable
        .iter()
        .flat_map(|(section, slots)| slots.iter().map(move |slot| (section, slot)))
        .filter(|(_, slot)| slot.weekday == weekday)
        .filter_map(|(section, slot)| {
            Some(Lesson {
                section: section.clone(),
                starts: at(day, minutes(&slot.starts)?, tz)?,
                ends: at(day, minutes(&slot.ends)?, tz)?,
                room: slot.room.clone(),
            })
        })
        .collect();
    lessons.sort_by(|a, b| (a.starts, &a.section).cmp(&(b.starts, &b.section)));
    lessons
}

/// Each lesson with its registration at `now`, and the sessions no lesson claimed (a roll taken
/// outside the timetable). A session registers the first lesson of its section that it started
/// within (`EARLY_MS` before its start to its end), and only one.
pub fn register(
    lessons: Vec<Lesson>,
    held: &[Held],
    now: Millis,
) -> (Vec<(Lesson, Registration)>, Vec<Held>) {
    let mut unclaimed: Vec<Held> = held.to_vec();
    unclaimed.sort_by_key(|h| h.started_at);
    let mut out = Vec::with_capacity(lessons.len());
    for lesson in lessons {
        let claimed = unclaimed.iter().position(|h| {
            h.section == lesson.section
                && h.started_at >= lesson.starts - EARLY_MS
                && h.started_at < lesson.ends
        });
        let registration = match claimed {
            Some(i) => Registration::Taken(unclaimed.remove(i).session),
            None if now >= lesson.starts + GRACE_MS => Registration::NotRegistered,
            None => Registration::NotYet,
        };
        out.push((lesson, registration));
    }
    (out, unclaimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(weekday: u8, starts: &str, ends: &str) -> ScheduleSlot {
        ScheduleSlot {
            weekday,
            starts: starts.into(),
            ends: ends.into(),
            room: None,
        }
    }

    #[test]
    fn lessons_are_placed_in_the_schools_time_zone_and_registered_once() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // Monday 2024-09-02; Berlin is UTC+2 in summer.
        let day = jiff::civil::date(2024, 9, 2);
        let timetable = vec![
            (
                "maths".to_owned(),
                vec![
                    slot(1, "08:00", "08:45"),
                    slot(1, "10:00", "10:45"),
                    slot(2, "08:00", "08:45"),
                ],
            ),
            ("art".to_owned(), vec![slot(1, "09:00", "09:45")]),
        ];
        let lessons = of_day(&timetable, day, &tz);
        assert_eq!(lessons.len(), 3);
        let six_utc = 1_725_256_800_000; // 2024-09-02 06:00 UTC = 08:00 in Berlin
        assert_eq!(lessons[0].starts, six_utc);
        assert_eq!(lessons[1].section, "art");
        let held = vec![
            Held {
                section: "maths".into(),
                session: "s1".into(),
                started_at: six_utc - 5 * 60_000,
            },
            Held {
                section: "maths".into(),
                session: "s9".into(),
                started_at: six_utc + 30 * 60_000,
            },
        ];
        // At 09:30 Berlin: maths 08:00 taken by s1, art 09:00 not registered, maths 10:00 not yet;
        // s9 (a second roll in the same lesson) claimed by none.
        let now = six_utc + 90 * 60_000;
        let (registered, unclaimed) = register(lessons, &held, now);
        assert_eq!(registered[0].1, Registration::Taken("s1".into()));
        assert_eq!(registered[1].1, Registration::NotRegistered);
        assert_eq!(registered[2].1, Registration::NotYet);
        assert_eq!(unclaimed.len(), 1);
        assert_eq!(bounds(day, &tz).unwrap().0, six_utc - 8 * 3_600_000);
    }
}
