//! The timetable: when each section meets and where, so the box knows which class is in front of
//! it. Like the roster it belongs to the school (imported here, or sent by the server), so a change
//! is audited but is not an outbox event.

use rusqlite::params;

use super::{Store, StoreError};

/// One weekly meeting of a section. Times are the school's local wall clock, `HH:MM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub section_id: String,
    /// 1 = Monday ... 7 = Sunday (ISO 8601).
    pub weekday: u8,
    pub starts: String,
    pub ends: String,
    pub room: Option<String>,
}

/// Why a slot is refused; checked before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("weekday {0} is not 1 (Monday) to 7 (Sunday)")]
    Weekday(u8),
    #[error("{0:?} is not a time of day as HH:MM (00:00 to 23:59)")]
    Time(String),
    #[error("a lesson must end after it starts ({starts} to {ends})")]
    EndsBeforeStart { starts: String, ends: String },
}

/// Minutes after midnight of an `HH:MM` time: the wire's one reading of it.
pub use shared_proto::sync::minutes_of_day;

impl Slot {
    pub fn check(&self) -> Result<(), SlotError> {
        if !(1..=7).contains(&self.weekday) {
            return Err(SlotError::Weekday(self.weekday));
        }
        let starts =
            minutes_of_day(&self.starts).ok_or_else(|| SlotError::Time(self.starts.clone()))?;
        let ends = minutes_of_day(&self.ends).ok_or_else(|| SlotError::Time(self.ends.clone()))?;
        if ends <= starts {
            return Err(SlotError::EndsBeforeStart {
                starts: self.starts.clone(),
                ends: self.ends.clone(),
            });
        }
        Ok(())
    }
}

impl Store {
    /// Replaces the whole timetable of `section_id` in one transaction.
    pub fn set_schedule(
        &mut self,
        section_id: &str,
        slots: &[Slot],
        actor: &str,
    ) -> Result<(), StoreError> {
        self.section_students(section_id)?;
        for slot in slots {
            slot.check().map_err(|e| StoreError::InvalidSlot {
                section: section_id.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM schedule WHERE section_id = ?1", [section_id])?;
        for slot in slots {
            tx.execute(
                "INSERT INTO schedule (section_id, weekday, starts, ends, room) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![section_id, slot.weekday, slot.starts, slot.ends, slot.room],
            )?;
        }
        Store::audit(
            &tx,
            actor,
            "schedule",
            &format!("{section_id}: {} weekly lessons", slots.len()),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The timetable, by weekday and start; of one section, or of every section.
    pub fn schedule(&self, section_id: Option<&str>) -> Result<Vec<Slot>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT section_id, weekday, starts, ends, room FROM schedule
             WHERE ?1 IS NULL OR section_id = ?1 ORDER BY weekday, starts, section_id",
        )?;
        let rows = stmt.query_map([section_id], |r| {
            Ok(Slot {
                section_id: r.get(0)?,
                weekday: r.get(1)?,
                starts: r.get(2)?,
                ends: r.get(3)?,
                room: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lessons under way at `weekday` and `minute` (of the day), of sections that are still active.
    /// Usually one; two overlapping lessons are both returned so the teacher can pick.
    pub fn lessons_at(&self, weekday: u8, minute: u16) -> Result<Vec<Slot>, StoreError> {
        let active: Vec<Slot> = self
            .schedule(None)?
            .into_iter()
            .filter(|s| s.weekday == weekday)
            .filter(|s| {
                let (Some(a), Some(b)) = (minutes_of_day(&s.starts), minutes_of_day(&s.ends))
                else {
                    return false;
                };
                a <= minute && minute < b
            })
            .collect();
        let mut out = Vec::with_capacity(active.len());
        for slot in active {
            let still_active: bool = self.conn.query_row(
                "SELECT active FROM sections WHERE id = ?1",
                [&slot.section_id],
                |r| r.get(0),
            )?;
            if still_active {
                out.push(slot);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(minutes_of_day("08:30"), Some(510));
        assert_eq!(minutes_of_day("23:59"), Some(1439));
        for bad in ["24:00", "8:30", "08:60", "0830", "", "ab:cd"] {
            assert_eq!(minutes_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn slots_are_checked() {
        let slot = |weekday, starts: &str, ends: &str| Slot {
            section_id: "s".into(),
            weekday,
            starts: starts.into(),
            ends: ends.into(),
            room: None,
        };
        assert!(slot(1, "08:30", "09:15").check().is_ok());
        assert_eq!(
            slot(0, "08:30", "09:15").check(),
            Err(SlotError::Weekday(0))
        );
        assert!(matches!(
            slot(1, "09:15", "08:30").check(),
            Err(SlotError::EndsBeforeStart { .. })
        ));
        assert!(matches!(
            slot(1, "9:15", "10:00").check(),
            Err(SlotError::Time(_))
        ));
    }
}
