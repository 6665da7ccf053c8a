//! Row checks every OneRoster file shares: required values, unique and usable sourcedIds, the
//! status vocabulary, dates, and an index of ids that other files refer to.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::files::FILE_ORDER;
use super::table::{Column, Row, Table};
use super::{Problem, RosterWarning, RowError, WarningKind};
use crate::ids::check_id;

/// Everything an export's checks found: the problems that refuse it, and the rows read leniently.
#[derive(Default)]
pub(super) struct Findings {
    pub problems: Vec<RowError>,
    warnings: Vec<RosterWarning>,
}

impl Findings {
    /// Counts one more row of `file` read leniently in the way `kind` says.
    pub fn warn(&mut self, file: &'static str, kind: WarningKind) {
        let existing = self
            .warnings
            .iter_mut()
            .find(|warning| warning.file == file && warning.kind == kind);
        match existing {
            Some(warning) => warning.rows += 1,
            None => self.warnings.push(RosterWarning {
                file,
                rows: 1,
                kind,
            }),
        }
    }

    /// The warnings in the order files are listed in, as problems are.
    pub fn into_warnings(mut self) -> Vec<RosterWarning> {
        // Stable, so warnings of one file keep the order they were found in.
        self.warnings
            .sort_by_key(|warning| FILE_ORDER.iter().position(|&file| file == warning.file));
        self.warnings
    }
}

/// Collects one file's row problems and remembers where each sourcedId was first used.
pub(super) struct RowChecks<'f> {
    file: &'static str,
    findings: &'f mut Findings,
    first_line_of_id: HashMap<String, u64>,
}

impl<'f> RowChecks<'f> {
    pub fn new(file: &'static str, findings: &'f mut Findings) -> Self {
        RowChecks {
            file,
            findings,
            first_line_of_id: HashMap::new(),
        }
    }

    pub fn report(&mut self, line: u64, problem: Problem) {
        self.findings.problems.push(RowError {
            file: self.file,
            line,
            problem,
        });
    }

    pub fn warn(&mut self, kind: WarningKind) {
        self.findings.warn(self.file, kind);
    }

    /// Reports a value of `column` that is not a usable id (`crate::ids`); true when it is one.
    /// An empty value is false without a report: required values report that themselves.
    pub fn is_usable_id(&mut self, row: &Row, column: Column) -> bool {
        let id = row.get(column);
        if id.is_empty() {
            return false;
        }
        let checked = check_id(id).map_err(|error| Problem::BadId {
            column: column.name,
            id: id.to_owned(),
            error,
        });
        self.check(row.line, checked).is_some()
    }

    /// The row's `status` as "active or not", reporting an unknown one; OneRoster 1.0's
    /// `inactive`, which exports still use, is read as `tobedeleted` and counted as a warning.
    pub fn is_active(&mut self, row: &Row, status: Option<Column>) -> Option<bool> {
        let status = row.get_optional(status);
        if status.eq_ignore_ascii_case("inactive") {
            self.warn(WarningKind::InactiveStatus);
            return Some(false);
        }
        self.check(row.line, is_active(status))
    }

    /// Reports empty required values and a reused sourcedId; true when there was neither.
    pub fn has_values_and_new_id(&mut self, row: &Row, id: Column, required: &[Column]) -> bool {
        let mut is_ok = true;
        for &column in required {
            if row.get(column).is_empty() {
                self.report(row.line, Problem::EmptyValue(column.name));
                is_ok = false;
            }
        }
        let id = row.get(id);
        if !id.is_empty() {
            match self.first_line_of_id.entry(id.to_owned()) {
                Entry::Occupied(first) => {
                    let first_line = *first.get();
                    self.report(
                        row.line,
                        Problem::DuplicateId {
                            id: id.to_owned(),
                            first_line,
                        },
                    );
                    is_ok = false;
                }
                Entry::Vacant(slot) => {
                    slot.insert(row.line);
                }
            }
        }
        is_ok
    }

    /// Turns a check's result into "keep the row or not", reporting the problem if there is one.
    pub fn check<T>(&mut self, line: u64, result: Result<T, Problem>) -> Option<T> {
        result.map_err(|problem| self.report(line, problem)).ok()
    }

    /// The index of the file's ids: `kept` from the caller, and every sourcedId the file named,
    /// unreadable rows included, as seen.
    pub fn into_index<T>(self, kept: HashMap<String, T>, table: &Table, id: Column) -> Index<T> {
        let mut seen: HashSet<String> = self.first_line_of_id.into_keys().collect();
        seen.extend(
            table
                .unreadable_rows
                .iter()
                .map(|row| row.get(id).to_owned()),
        );
        Index { kept, seen }
    }
}

/// The ids of one file as other files see them.
pub(super) struct Index<T> {
    pub kept: HashMap<String, T>,
    /// Ids of rows that had problems too: a reference to one of those is not reported again,
    /// because the row's own problem is the one to fix.
    pub seen: HashSet<String>,
}

pub(super) enum Lookup<'a, T> {
    Kept(&'a T),
    Rejected,
    Unknown,
}

impl<T> Index<T> {
    pub fn lookup(&self, id: &str) -> Lookup<'_, T> {
        match self.kept.get(id) {
            Some(value) => Lookup::Kept(value),
            None if self.seen.contains(id) => Lookup::Rejected,
            None => Lookup::Unknown,
        }
    }
}

/// OneRoster 1.1 bulk `status`: empty (the usual in bulk files) or `active`, or `tobedeleted`.
pub(super) fn is_active(status: &str) -> Result<bool, Problem> {
    if status.is_empty() || status.eq_ignore_ascii_case("active") {
        Ok(true)
    } else if status.eq_ignore_ascii_case("tobedeleted") {
        Ok(false)
    } else {
        Err(Problem::UnknownStatus(status.to_owned()))
    }
}

/// users.csv `enabledUser`, matched ignoring case because Excel rewrites `false` as `FALSE`.
pub(super) fn is_enabled(enabled_user: &str) -> Result<bool, Problem> {
    if enabled_user.is_empty() || enabled_user.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if enabled_user.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Problem::UnknownEnabledUser(enabled_user.to_owned()))
    }
}

/// The vocabulary's own spelling of `value` (matched ignoring ASCII case), or an unknown role.
pub(super) fn role_in(
    vocabulary: &'static [&'static str],
    value: &str,
) -> Result<&'static str, Problem> {
    vocabulary
        .iter()
        .copied()
        .find(|word| word.eq_ignore_ascii_case(value))
        .ok_or_else(|| Problem::UnknownRole {
            role: value.to_owned(),
            expected: vocabulary,
        })
}

/// A OneRoster date, `YYYY-MM-DD`. Only the shape and ranges are checked (not "31 February"):
/// the point is that dates compare as text, which the start-before-end check relies on.
pub(super) fn check_date(column: &'static str, value: &str) -> Result<(), Problem> {
    let bytes = value.as_bytes();
    let is_digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| value.get(range).and_then(|s| s.parse().ok());
    let is_date = bytes.len() == 10
        && is_digits(0..4)
        && bytes[4] == b'-'
        && is_digits(5..7)
        && bytes[7] == b'-'
        && is_digits(8..10)
        && number(5..7).is_some_and(|month: u8| (1..=12).contains(&month))
        && number(8..10).is_some_and(|day: u8| (1..=31).contains(&day));
    if is_date {
        Ok(())
    } else {
        Err(Problem::NotADate {
            column,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_days() {
        for good in ["2024-09-01", "2025-12-31"] {
            assert_eq!(check_date("startDate", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "2024-9-1",
            "01/09/2024",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
        ] {
            assert!(check_date("startDate", bad).is_err(), "{bad}");
        }
        // Multi-byte text of the right length must not be sliced inside a character.
        assert!(check_date("startDate", "2024-é-01").is_err());
    }

    #[test]
    fn vocabularies_ignore_case_and_name_the_choices() {
        assert_eq!(role_in(&["student", "teacher"], "Student"), Ok("student"));
        let problem = role_in(&["student", "teacher"], "pupil").unwrap_err();
        assert_eq!(
            problem.to_string(),
            "unknown role \"pupil\" (expected one of student, teacher)"
        );
        assert_eq!(is_active(""), Ok(true));
        assert_eq!(is_active("tobedeleted"), Ok(false));
        assert!(is_active("inactive").is_err());
        assert_eq!(is_enabled("FALSE"), Ok(false));
        assert!(is_enabled("no").is_err());
    }
}
