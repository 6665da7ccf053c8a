//! What attendance figures mean, for every page, export and digest that shows one: the marks of a
//! group counted by status, and the attendance rate.

use shared_proto::sync::MarkStatus;

use crate::store::AttendanceRow;

/// Marks counted by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub present: usize,
    pub absent: usize,
    pub late: usize,
    pub excused: usize,
    /// Needs review: the machine was not sure and nobody has decided yet.
    pub review: usize,
}

impl Counts {
    pub fn of<'r>(rows: impl IntoIterator<Item = &'r AttendanceRow>) -> Counts {
        let mut counts = Counts::default();
        for row in rows {
            counts.add(row.status);
        }
        counts
    }

    /// Adds `n` marks of `status`.
    pub fn add_n(&mut self, status: MarkStatus, n: usize) {
        match status {
            MarkStatus::Present => self.present += n,
            MarkStatus::Absent => self.absent += n,
            MarkStatus::Late => self.late += n,
            MarkStatus::Excused => self.excused += n,
            MarkStatus::Review => self.review += n,
        }
    }

    pub fn add(&mut self, status: MarkStatus) {
        self.add_n(status, 1);
    }

    pub fn total(&self) -> usize {
        self.present + self.absent + self.late + self.excused + self.review
    }

    /// The share of decided, unexcused marks that were attended (present or late), in percent;
    /// `None` when there is none. An excused absence counts neither way, and a mark still
    /// needing review is not decided yet: counting it as absent would report absences nobody
    /// has confirmed.
    pub fn attendance_percent(&self) -> Option<f64> {
        let attended = self.present + self.late;
        let counted = attended + self.absent;
        (counted > 0).then(|| 100.0 * attended as f64 / counted as f64)
    }
}

impl Counts {
    /// The share of decided sessions missed, excused or not, in percent; `None` when none is
    /// decided. Chronic absence counts every absence: an excused one is still a lesson missed.
    pub fn missed_percent(&self) -> Option<f64> {
        let missed = self.absent + self.excused;
        let decided = missed + self.present + self.late;
        (decided > 0).then(|| 100.0 * missed as f64 / decided as f64)
    }

    /// Whether these marks show chronic absence (`missed_percent` at or over `threshold`, the
    /// school's setting: `SchoolSettings::chronic_percent`, 10 by default, the common US
    /// definition).
    pub fn chronically_absent(&self, threshold_percent: f64) -> bool {
        self.missed_percent()
            .is_some_and(|p| p >= threshold_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excused_and_unreviewed_marks_do_not_count_against_a_rate() {
        let mut counts = Counts::default();
        for status in [
            MarkStatus::Present,
            MarkStatus::Late,
            MarkStatus::Absent,
            MarkStatus::Excused,
            MarkStatus::Review,
        ] {
            counts.add(status);
        }
        assert_eq!(counts.total(), 5);
        let percent = counts.attendance_percent().unwrap();
        assert!((percent - 200.0 / 3.0).abs() < 1e-9, "{percent}");
        assert_eq!(Counts::default().attendance_percent(), None);
        let only_excused = Counts {
            excused: 3,
            ..Counts::default()
        };
        assert_eq!(only_excused.attendance_percent(), None);
        assert_eq!(only_excused.missed_percent(), Some(100.0));
    }

    #[test]
    fn chronic_absence_counts_excused_absences_from_ten_percent() {
        let term = |missed: usize, attended: usize| Counts {
            present: attended,
            excused: missed,
            review: 5,
            ..Counts::default()
        };
        assert!(term(2, 18).chronically_absent(10.0), "2 of 20 is 10 %");
        assert!(!term(1, 18).chronically_absent(10.0));
        assert!(!Counts::default().chronically_absent(10.0));
    }
}
