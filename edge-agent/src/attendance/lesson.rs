//! Which lesson is under way: a moment of the week (now, or `DAY-HH:MM`) looked up in the
//! timetable. The CLI's `session open` and `schedule now` and the teacher screen share it.

use crate::store::{Slot, Store, StoreError, minutes_of_day};

#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    #[error("{0:?}: expected DAY-HH:MM, e.g. mon-08:40")]
    BadMoment(String),
    #[error("{0:?} is not a time as HH:MM")]
    BadTime(String),
    #[error("{0:?} is not a weekday: use mon, tue, ... sun or 1-7")]
    BadWeekday(String),
    #[error("no lesson in the timetable at this time; pass --section")]
    NoLesson,
    #[error("several lessons at this time ({}); pass --section", .0.join(", "))]
    SeveralLessons(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A moment of the week: ISO weekday (1 = Monday) and minute of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    pub weekday: u8,
    pub minute: u16,
}

impl Moment {
    /// Now, in the box's local time zone.
    pub fn now() -> Moment {
        let now = jiff::Zoned::now();
        Moment {
            weekday: now.weekday().to_monday_one_offset() as u8,
            minute: now.hour() as u16 * 60 + now.minute() as u16,
        }
    }

    /// The moment of the week at `ms` (Unix milliseconds) in the box's local time zone, and the
    /// milliseconds past its minute; `None` for a time jiff cannot hold.
    pub fn at_ms(ms: i64) -> Option<(Moment, i64)> {
        let zoned = jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::system());
        let moment = Moment {
            weekday: zoned.weekday().to_monday_one_offset() as u8,
            minute: zoned.hour() as u16 * 60 + zoned.minute() as u16,
        };
        let past_minute = i64::from(zoned.second()) * 1000 + i64::from(zoned.millisecond());
        Some((moment, past_minute))
    }

    /// Parses `mon-08:40` (or `1-08:40`).
    pub fn parse(text: &str) -> Result<Moment, LessonError> {
        let (day, time) = text
            .split_once('-')
            .ok_or_else(|| LessonError::BadMoment(text.to_owned()))?;
        Ok(Moment {
            weekday: parse_weekday(day)?,
            minute: minutes_of_day(time).ok_or_else(|| LessonError::BadTime(time.to_owned()))?,
        })
    }
}

/// `mon`, `Tuesday`, ... or `1`-`7`, as an ISO weekday.
pub fn parse_weekday(text: &str) -> Result<u8, LessonError> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let lower = text.to_ascii_lowercase();
    if let Some(i) = DAYS.iter().position(|d| lower.starts_with(d)) {
        return Ok(i as u8 + 1);
    }
    match lower.parse::<u8>() {
        Ok(n @ 1..=7) => Ok(n),
        _ => Err(LessonError::BadWeekday(text.to_owned())),
    }
}

/// The one lesson under way at `moment`; an error naming the choices otherwise.
pub fn lesson_at(store: &Store, moment: Moment) -> Result<Slot, LessonError> {
    let mut lessons = store.lessons_at(moment.weekday, moment.minute)?;
    match lessons.len() {
        1 => Ok(lessons.remove(0)),
        0 => Err(LessonError::NoLesson),
        _ => Err(LessonError::SeveralLessons(
            lessons.into_iter().map(|s| s.section_id).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments() {
        assert_eq!(
            Moment::parse("tue-08:40").unwrap(),
            Moment {
                weekday: 2,
                minute: 520
            }
        );
        assert_eq!(Moment::parse("7-23:59").unwrap().weekday, 7);
        for bad in ["tue", "xyz-08:40", "tue-8:40", "8-10:00"] {
            assert!(Moment::parse(bad).is_err(), "{bad}");
        }
    }
}
