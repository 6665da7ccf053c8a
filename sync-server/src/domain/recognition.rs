//! The recognition self-audit: how often people changed what the machine decided, per section and
//! per box, week by week. A rising rate flags a camera that moved, a bad template or a model
//! problem before a teacher has to say so.
//!
//! What counts, decided here once for every store (which only count marks, `Store::
//! machine_decisions`):
//! - a machine decision is a mark whose machine status is known: the machine's own mark, or a
//!   person's mark that replaced one (`HeldMark::machine_after` keeps it through corrections);
//! - *missed*: the machine said absent, a person present or late (a student not recognised);
//! - *wrong person*: the machine said present or late, a person absent (someone taken for them);
//! - *review confirmed* / *rejected*: the machine asked, a person said present or late / absent;
//! - anything else a person changed (present to excused, late to present) is neither: timing and
//!   paperwork, not recognition.
//!
//! The change rate is (missed + wrong person) over the decisions that were not a review request.
//! People are teachers and the office alike: an office correction of a machine's "present" to
//! "absent" is as much a recognition error as a teacher's.

use std::collections::BTreeMap;

use shared_proto::sync::{MarkSource, MarkStatus};

use crate::store::MachineDecisions;

/// A line is flagged when its last `RECENT_WEEKS` change at least `MIN_RISING_PERCENT` of at
/// least `MIN_RECENT_DECISIONS` decisions, and at least `RISE_FACTOR` times the earlier weeks' rate.
pub const RECENT_WEEKS: usize = 2;
pub const MIN_RISING_PERCENT: f64 = 5.0;
pub const MIN_RECENT_DECISIONS: u64 = 20;
pub const RISE_FACTOR: f64 = 2.0;

/// What became of one machine decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Kept,
    Missed,
    WrongPerson,
    ReviewConfirmed,
    ReviewRejected,
    /// A review request nobody answered yet.
    ReviewOpen,
    /// Changed by a person for another reason than recognition.
    Other,
}

/// The outcome of a mark the machine decided `machine` and that holds `status` from `source`.
pub fn outcome(machine: MarkStatus, status: MarkStatus, source: MarkSource) -> Outcome {
    use MarkStatus::*;
    let attended = |s: MarkStatus| matches!(s, Present | Late);
    match machine {
        Review if !source.is_human() => Outcome::ReviewOpen,
        Review if attended(status) => Outcome::ReviewConfirmed,
        Review if status == Absent => Outcome::ReviewRejected,
        Review => Outcome::Other,
        _ if !source.is_human() || status == machine => Outcome::Kept,
        Absent if attended(status) => Outcome::Missed,
        m if attended(m) && status == Absent => Outcome::WrongPerson,
        _ => Outcome::Other,
    }
}

/// The machine decisions of one line (a section or a box) over some time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub decisions: u64,
    pub missed: u64,
    pub wrong_person: u64,
    pub review_confirmed: u64,
    pub review_rejected: u64,
    pub review_open: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: Outcome, n: u64) {
        self.decisions += n;
        match outcome {
            Outcome::Missed => self.missed += n,
            Outcome::WrongPerson => self.wrong_person += n,
            Outcome::ReviewConfirmed => self.review_confirmed += n,
            Outcome::ReviewRejected => self.review_rejected += n,
            Outcome::ReviewOpen => self.review_open += n,
            Outcome::Kept | Outcome::Other => {}
        }
    }

    fn plus(self, other: Outcomes) -> Outcomes {
        Outcomes {
            decisions: self.decisions + other.decisions,
            missed: self.missed + other.missed,
            wrong_person: self.wrong_person + other.wrong_person,
            review_confirmed: self.review_confirmed + other.review_confirmed,
            review_rejected: self.review_rejected + other.review_rejected,
            review_open: self.review_open + other.review_open,
        }
    }

    /// Decisions that were a present/absent call, not a review request.
    pub fn calls(&self) -> u64 {
        self.decisions - self.review_confirmed - self.review_rejected - self.review_open
    }

    /// Machine calls people changed (missed or wrong person).
    pub fn changed(&self) -> u64 {
        self.missed + self.wrong_person
    }

    /// The change rate in percent; `None` without a call.
    pub fn change_percent(&self) -> Option<f64> {
        let calls = self.calls();
        (calls > 0).then(|| 100.0 * self.changed() as f64 / calls as f64)
    }
}

/// One section's or box's weeks.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The section's or the box's id.
    pub id: String,
    /// One tally per week of the audit, oldest first.
    pub weeks: Vec<Outcomes>,
    pub total: Outcomes,
    /// The last weeks' change rate rose: see `RISE_FACTOR`.
    pub rising: bool,
}

/// The audit of some weeks.
#[derive(Clone, Debug, PartialEq)]
pub struct Audit {
    pub by_section: Vec<Line>,
    pub by_box: Vec<Line>,
}

/// Sorts the store's counts of each week (oldest first; the caller says where a week starts, in
/// the school's time zone) per section and per box, lines by id.
pub fn audit(weeks: &[Vec<MachineDecisions>]) -> Audit {
    let mut by_section: BTreeMap<&str, Vec<Outcomes>> = BTreeMap::new();
    let mut by_box: BTreeMap<&str, Vec<Outcomes>> = BTreeMap::new();
    let rows = weeks
        .iter()
        .enumerate()
        .flat_map(|(week, rows)| rows.iter().map(move |row| (week, row)));
    for (week, row) in rows {
        let machine = row.machine.unwrap_or(row.status);
        let outcome = outcome(machine, row.status, row.source);
        for lines in [
            (&mut by_section, &row.section_id),
            (&mut by_box, &row.device_id),
        ] {
            let tallies = lines
                .0
                .entry(lines.1.as_str())
                .or_insert_with(|| vec![Outcomes::default(); weeks.len()]);
            tallies[week].add(outcome, row.count);
        }
    }
    let lines = |map: BTreeMap<&str, Vec<Outcomes>>| {
        map.into_iter()
            .map(|(id, weeks)| Line {
                id: id.to_owned(),
                total: weeks.iter().fold(Outcomes::default(), |a, &b| a.plus(b)),
                rising: rising(&weeks),
                weeks,
            })
            .collect()
    };
    Audit {
        by_section: lines(by_section),
        by_box: lines(by_box),
    }
}

/// Whether the last `RECENT_WEEKS` changed markedly more machine calls than the weeks before.
fn rising(weeks: &[Outcomes]) -> bool {
    let split = weeks.len().saturating_sub(RECENT_WEEKS);
    let sum = |ws: &[Outcomes]| ws.iter().fold(Outcomes::default(), |a, &b| a.plus(b));
    let (earlier, recent) = (sum(&weeks[..split]), sum(&weeks[split..]));
    let Some(recent_percent) = recent.change_percent() else {
        return false;
    };
    let earlier_percent = earlier.change_percent().unwrap_or(0.0);
    recent.calls() >= MIN_RECENT_DECISIONS
        && recent_percent >= MIN_RISING_PERCENT
        && recent_percent >= RISE_FACTOR * earlier_percent
}

#[cfg(test)]
mod tests {
    use super::*;
    use MarkSource::{Machine, Office, Teacher};
    use MarkStatus::{Absent, Excused, Late, Present, Review};

    #[test]
    fn outcomes_name_what_a_person_did_to_a_machine_decision() {
        assert_eq!(outcome(Present, Present, Machine), Outcome::Kept);
        assert_eq!(outcome(Present, Present, Teacher), Outcome::Kept);
        assert_eq!(outcome(Present, Absent, Teacher), Outcome::WrongPerson);
        assert_eq!(outcome(Late, Absent, Office), Outcome::WrongPerson);
        assert_eq!(outcome(Absent, Present, Teacher), Outcome::Missed);
        assert_eq!(outcome(Absent, Late, Teacher), Outcome::Missed);
        assert_eq!(outcome(Review, Review, Machine), Outcome::ReviewOpen);
        assert_eq!(outcome(Review, Present, Teacher), Outcome::ReviewConfirmed);
        assert_eq!(outcome(Review, Absent, Teacher), Outcome::ReviewRejected);
        assert_eq!(outcome(Present, Excused, Office), Outcome::Other);
        assert_eq!(outcome(Present, Late, Teacher), Outcome::Other);
    }

    fn row(section: &str, machine: MarkStatus, status: MarkStatus, n: u64) -> MachineDecisions {
        MachineDecisions {
            section_id: section.to_owned(),
            device_id: "box-1".to_owned(),
            machine: Some(machine),
            status,
            source: if machine == status { Machine } else { Teacher },
            count: n,
        }
    }

    #[test]
    fn a_section_whose_changes_rise_in_the_last_weeks_is_flagged() {
        let weeks: Vec<Vec<MachineDecisions>> = (0..6)
            .map(|week| {
                // Maths: 1 change in 50 every week. Art: the same, then 8 in 40 in the last two.
                let changed = if week >= 4 { 8 } else { 1 };
                vec![
                    row("maths", Present, Present, 49),
                    row("maths", Present, Absent, 1),
                    row("art", Present, Present, 40 - changed),
                    row("art", Absent, Present, changed),
                ]
            })
            .collect();
        let audit = audit(&weeks);
        let [art, maths] = &audit.by_section[..] else {
            panic!("{:?}", audit.by_section);
        };
        assert_eq!((art.id.as_str(), maths.id.as_str()), ("art", "maths"));
        assert!(art.rising && !maths.rising);
        assert_eq!(art.weeks[5].missed, 8);
        assert_eq!(art.weeks[5].change_percent(), Some(20.0));
        assert_eq!(maths.total.decisions, 300);
        assert_eq!(maths.total.wrong_person, 6);
        // The box sees both sections.
        assert_eq!(audit.by_box[0].total.decisions, 300 + 240);
    }

    #[test]
    fn few_decisions_never_flag() {
        let mut weeks = vec![Vec::new(); 6];
        weeks[5].push(row("art", Absent, Present, 3));
        let audit = audit(&weeks);
        assert!(!audit.by_section[0].rising);
        assert_eq!(audit.by_section[0].weeks[5].change_percent(), Some(100.0));
    }
}
