//! The school roster as a student information system exports it: the records an import yields
//! (`RosterImport`), parsed and validated from the files of a OneRoster 1.1 CSV bulk export held in
//! memory (`RosterFiles`). No I/O: the box reads the files from a folder, the server from an
//! upload, and both get the same rules and the same messages.
//!
//! The stores apply a `RosterImport` in one transaction, so everything is checked here first:
//! an export is either wholly valid or refused with every problem listed as `file:line`.

mod checks;
mod export;
mod files;
mod people;
mod table;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

// Values echoed in problems are cut short.
use crate::ids::shown;

pub use export::parse_oneroster;
pub use files::RosterFiles;

use crate::ids::{ID_RULE, IdError};

/// How many problems an invalid export lists; the rest are counted. A broken 2.5 MB upload can
/// have a problem on every line, and nobody fixes an export from a 20 MB list: the first few
/// hundred show what is wrong, and the count says how much.
pub const MAX_LISTED_PROBLEMS: usize = 200;

/// Everything one export says that Rollcall keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterImport {
    /// From orgs.csv, which an export may leave out.
    pub orgs: Vec<Org>,
    /// From academicSessions.csv, which an export may leave out.
    pub academic_sessions: Vec<AcademicSession>,
    /// From classes.csv.
    pub sections: Vec<Section>,
    /// Users with role `student` in users.csv, and users enrolled as student in some class
    /// whatever their users.csv role: every student enrolment names a student here.
    pub students: Vec<Person>,
    /// Users with role `teacher` in users.csv, and users enrolled as teacher in some class
    /// whatever their users.csv role (some SIS list everyone as `student`). Other roles (parents,
    /// aides, ...) are valid but not kept unless enrolled. A person can be in both lists.
    pub teachers: Vec<Person>,
    /// Enrolments as student or teacher; administrator and proctor enrolments are not kept.
    pub enrolments: Vec<Enrolment>,
    /// Parents, guardians and relatives with an `email`, each with the students of the export
    /// that `agentSourcedIds` links them to (a student's agents, or a guardian's students). The
    /// server tells them of absences; the box has no use for them.
    pub guardians: Vec<Guardian>,
    /// What was accepted but read leniently, for the operator to see beside the counts.
    pub warnings: Vec<RosterWarning>,
}

/// Rows of a valid export that were read leniently: what was done, in which file, to how many
/// rows. Displayed as `file: N rows ...; what was done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterWarning {
    pub file: &'static str,
    pub rows: usize,
    pub kind: WarningKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// `status` was OneRoster 1.0's `inactive`: read as 1.1's `tobedeleted`.
    InactiveStatus,
    /// An enrolment's role differs from the user's role in users.csv: the enrolment decides the
    /// person's part in that class.
    EnrolmentRoleDiffers,
    /// A parent, guardian or relative with no `email`: not kept, since no notice could reach them.
    GuardianWithoutEmail,
    /// A `file.*` row of manifest.csv without a value: read as `absent`.
    BlankManifestValue,
}

impl fmt::Display for RosterWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RosterWarning { file, rows, kind } = self;
        let (rows, has, enrol) = if *rows == 1 {
            ("1 row".to_owned(), "has", "enrols")
        } else {
            (format!("{rows} rows"), "have", "enrol")
        };
        match kind {
            WarningKind::InactiveStatus => write!(
                f,
                "{file}: {rows} {has} status \"inactive\" (OneRoster 1.0); read as tobedeleted"
            ),
            WarningKind::EnrolmentRoleDiffers => write!(
                f,
                "{file}: {rows} {enrol} a user in a role other than their role in users.csv; the enrolment's role was kept for that class"
            ),
            WarningKind::GuardianWithoutEmail => write!(
                f,
                "{file}: {rows} {has} a parent, guardian or relative with no email; not kept, since no notice could reach them"
            ),
            WarningKind::BlankManifestValue => {
                write!(f, "{file}: {rows} {has} no value; read as absent")
            }
        }
    }
}

/// A school, district or other organisation (orgs.csv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// OneRoster's `type`: school, district, department, local, state, national.
    pub kind: String,
}

/// A school year, term, semester or grading period (academicSessions.csv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcademicSession {
    pub id: String,
    pub title: String,
    /// OneRoster's `type`: schoolYear, term, semester, gradingPeriod.
    pub kind: String,
    /// `YYYY-MM-DD`, checked to be well formed and not after `end_date`.
    pub start_date: String,
    pub end_date: String,
}

/// A class that meets and takes attendance (classes.csv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub id: String,
    pub title: String,
    /// The org that teaches it; in orgs.csv when the export has that file.
    pub school_id: String,
    /// False when the export marks it `tobedeleted`.
    pub active: bool,
}

/// A student or teacher (users.csv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    /// False when the export marks the user `tobedeleted` or `enabledUser` is false.
    pub active: bool,
}

/// A parent, guardian or relative (users.csv), as the export gives them: the address is checked
/// where it is kept, as one typed on the dashboard is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardian {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    /// Their users.csv role: `parent`, `guardian` or `relative`.
    pub relationship: &'static str,
    pub active: bool,
    /// Sorted, each a student of the export.
    pub student_ids: Vec<String>,
}

/// A person in a section (enrollments.csv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub section_id: String,
    pub person_id: String,
    pub role: EnrolmentRole,
    /// False when the export marks the enrolment `tobedeleted`.
    pub active: bool,
}

/// A person's part in a section: the wire's enum, so the roster and the sync protocol share one
/// set of words.
pub use crate::sync::EnrolmentRole;

/// Why an export was refused. Nothing is half-imported: any error means no roster at all.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// A file the export must contain is not among its files.
    #[error("{file}: not found in {export}; {why}")]
    MissingFile {
        file: &'static str,
        /// What `RosterFiles` calls the export: the folder or upload to look in.
        export: String,
        why: &'static str,
    },
    /// The same file name was given twice (an archive with two users.csv): which one is the
    /// export cannot be guessed.
    #[error("{file}: given twice in {export}; an export has one of each file")]
    DuplicateFile { file: &'static str, export: String },
    /// A file of the export exists but could not be read. Only the code that gathers the files
    /// (the box reading a folder) returns this; parsing does no I/O and never does.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A problem that makes a whole file unusable (its header, the manifest), so checking stops
    /// there: the rows of such a file cannot be read meaningfully.
    #[error("{0}")]
    BadFile(RowError),
    /// Every row problem of the export, in file order and then line order, so that one round of
    /// fixes in the student information system is enough.
    #[error("{}", one_per_line(.0))]
    Invalid(Vec<RowError>),
}

/// The first [`MAX_LISTED_PROBLEMS`] problems, one per line, then how many more there were.
fn one_per_line(errors: &[RowError]) -> String {
    let mut lines: Vec<String> = errors
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(RowError::to_string)
        .collect();
    let n_more = errors.len().saturating_sub(MAX_LISTED_PROBLEMS);
    if n_more > 0 {
        let problems = if n_more == 1 { "problem" } else { "problems" };
        lines.push(format!("... and {n_more} more {problems}"));
    }
    lines.join("\n")
}

/// One problem at one place: displayed as `file:line: problem`, the way editors and `grep -n`
/// name places, so a school's IT person can jump straight to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct RowError {
    pub file: &'static str,
    /// 1-based physical line in the file; the header is line 1.
    pub line: u64,
    pub problem: Problem,
}

/// What is wrong, in words that say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    EmptyFile,
    NotUtf8,
    MissingColumn(&'static str),
    DuplicateColumn(String),
    FieldCount {
        found: usize,
        expected: usize,
    },
    EmptyValue(&'static str),
    DuplicateId {
        id: String,
        first_line: u64,
    },
    UnknownRole {
        role: String,
        expected: &'static [&'static str],
    },
    UnknownStatus(String),
    UnknownEnabledUser(String),
    NotADate {
        column: &'static str,
        value: String,
    },
    EndBeforeStart {
        start: String,
        end: String,
    },
    /// A sourcedId that names a record the other file does not have.
    UnknownReference {
        kind: &'static str,
        id: String,
        file: &'static str,
    },
    /// A sourcedId that is kept but does not follow the id rule of `crate::ids`.
    BadId {
        column: &'static str,
        id: String,
        error: IdError,
    },
    DuplicateEnrolment {
        user_id: String,
        class_id: String,
        first_line: u64,
    },
    NoVersion,
    UnsupportedVersion(String),
    DeltaFile(String),
    UnknownFileMode {
        property: String,
        value: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::EmptyFile => write!(f, "the file is empty; expected a header row"),
            Problem::NotUtf8 => write!(f, "not UTF-8 text (save the file as UTF-8)"),
            Problem::MissingColumn(column) => write!(f, "missing column \"{column}\""),
            Problem::DuplicateColumn(column) => {
                let column = shown(column);
                write!(f, "column \"{column}\" appears twice in the header")
            }
            Problem::FieldCount { found, expected } => write!(
                f,
                "{found} fields, but the header has {expected} (a value containing a comma needs double quotes)"
            ),
            Problem::EmptyValue(column) => write!(f, "{column} is empty"),
            Problem::DuplicateId { id, first_line } => {
                let id = shown(id);
                write!(f, "sourcedId \"{id}\" is already used on line {first_line}")
            }
            Problem::UnknownRole { role, expected } => {
                let (role, expected) = (shown(role), expected.join(", "));
                write!(f, "unknown role \"{role}\" (expected one of {expected})")
            }
            Problem::UnknownStatus(status) => write!(
                f,
                "unknown status \"{}\" (expected active, tobedeleted or empty)",
                shown(status)
            ),
            Problem::UnknownEnabledUser(value) => {
                let value = shown(value);
                write!(f, "enabledUser is \"{value}\" (expected true or false)")
            }
            Problem::NotADate { column, value } => {
                let value = shown(value);
                write!(f, "{column} \"{value}\" is not a date like 2024-09-01")
            }
            Problem::EndBeforeStart { start, end } => {
                write!(f, "endDate {end} is before startDate {start}")
            }
            Problem::UnknownReference { kind, id, file } => {
                write!(f, "{kind} \"{}\" is not in {file}", shown(id))
            }
            Problem::BadId { column, id, error } => write!(
                f,
                "{column} \"{}\" is not a usable id: {error} (ids are {ID_RULE})",
                shown(id)
            ),
            Problem::DuplicateEnrolment {
                user_id,
                class_id,
                first_line,
            } => write!(
                f,
                "user \"{}\" is already enrolled in class \"{}\" on line {first_line}",
                shown(user_id),
                shown(class_id)
            ),
            Problem::NoVersion => write!(
                f,
                "no oneroster.version row; only OneRoster 1.1 exports are supported"
            ),
            Problem::UnsupportedVersion(version) => write!(
                f,
                "oneroster.version is \"{}\"; only OneRoster 1.1 exports are supported",
                shown(version)
            ),
            Problem::DeltaFile(property) => write!(
                f,
                "{} is \"delta\"; only bulk files are supported (export a full bulk set instead)",
                shown(property)
            ),
            Problem::UnknownFileMode { property, value } => {
                let (property, value) = (shown(property), shown(value));
                write!(
                    f,
                    "{property} is \"{value}\" (expected bulk, delta or absent)"
                )
            }
        }
    }
}
