//! OneRoster 1.1 CSV bulk exports: the order of checks, the manifest, the columns each file must
//! have, and orgs, academic sessions and classes; users and enrolments are in `people`.

use std::collections::{HashMap, HashSet};

use super::checks::{Findings, Index, Lookup, RowChecks, check_date};
use super::files::{
    ACADEMIC_SESSIONS, CLASSES, ENROLLMENTS, FILE_ORDER, MANIFEST, ORGS, RosterFiles, USERS,
};
use super::people::{
    EnrolmentColumns, UserColumns, guardians, people_by_part, read_enrolments, read_users,
};
use super::table::{Column, Table};
use super::{
    AcademicSession, Org, Problem, RosterError, RosterImport, RowError, Section, WarningKind,
};

const ALWAYS_IN_AN_EXPORT: &str = "a OneRoster 1.1 bulk export always has manifest.csv, users.csv, classes.csv and enrollments.csv";

/// Checks the OneRoster 1.1 bulk export in `files`. Missing files, missing columns and an
/// unsupported manifest stop at the first; row problems are all collected into
/// `RosterError::Invalid`, so one round of fixes is enough. What real exports do that OneRoster
/// 1.1 bulk files should not, but that means one thing only, is accepted and listed in
/// `RosterImport::warnings`.
pub fn parse_oneroster(files: &RosterFiles) -> Result<RosterImport, RosterError> {
    let mut findings = Findings::default();
    let problems = &mut findings.problems;

    // The manifest comes first: a delta export may leave files out, and "only bulk is
    // supported" is the useful thing to say then, not "users.csv is missing".
    let manifest = Table::parse(MANIFEST, required(files, MANIFEST)?, problems)?;
    let bulk_files = check_manifest(&manifest, &mut findings)?;
    let problems = &mut findings.problems;

    // Required files are all looked for before any is parsed, so a wrong folder or upload is
    // reported as missing files rather than as whatever an optional file in it happens to contain.
    let classes = required(files, CLASSES)?;
    let users = required(files, USERS)?;
    let enrollments = required(files, ENROLLMENTS)?;
    let mut parse_optional = |file: &'static str| -> Result<Option<Table>, RosterError> {
        match files.get(file) {
            Some(bytes) => Table::parse(file, bytes, problems).map(Some),
            None if bulk_files.contains(&file) => Err(RosterError::MissingFile {
                file,
                export: files.export().to_owned(),
                why: "manifest.csv lists it as a bulk file",
            }),
            None => Ok(None),
        }
    };
    let orgs = parse_optional(ORGS)?;
    let academic_sessions = parse_optional(ACADEMIC_SESSIONS)?;
    let classes = Table::parse(CLASSES, classes, problems)?;
    let users = Table::parse(USERS, users, problems)?;
    let enrollments = Table::parse(ENROLLMENTS, enrollments, problems)?;

    // Every file's columns before any file's rows: a missing column stops the import, and row
    // problems found before it would only be noise.
    let org_columns = orgs.as_ref().map(OrgColumns::find).transpose()?;
    let session_columns = academic_sessions
        .as_ref()
        .map(SessionColumns::find)
        .transpose()?;
    let class_columns = ClassColumns::find(&classes)?;
    let user_columns = UserColumns::find(&users)?;
    let enrolment_columns = EnrolmentColumns::find(&enrollments)?;

    let mut roster = RosterImport::default();
    let org_index = match (&orgs, &org_columns) {
        (Some(table), Some(columns)) => {
            Some(read_orgs(table, columns, &mut findings, &mut roster.orgs))
        }
        _ => None,
    };
    if let (Some(table), Some(columns)) = (&academic_sessions, &session_columns) {
        roster.academic_sessions = read_academic_sessions(table, columns, &mut findings);
    }
    let class_index = read_classes(
        &classes,
        &class_columns,
        org_index.as_ref(),
        &mut findings,
        &mut roster.sections,
    );
    let (user_index, users) = read_users(&users, &user_columns, &mut findings);
    roster.enrolments = read_enrolments(
        &enrollments,
        &enrolment_columns,
        &class_index,
        &user_index,
        &mut findings,
    );
    let guardians = guardians(&users, &mut findings);
    (roster.students, roster.teachers) = people_by_part(users, &roster.enrolments);
    let students: HashSet<&str> = roster.students.iter().map(|p| p.id.as_str()).collect();
    roster.guardians = guardians
        .into_iter()
        .filter_map(|mut guardian| {
            guardian
                .student_ids
                .retain(|id| students.contains(id.as_str()));
            (!guardian.student_ids.is_empty()).then_some(guardian)
        })
        .collect();

    if findings.problems.is_empty() {
        roster.warnings = findings.into_warnings();
        return Ok(roster);
    }
    let mut problems = findings.problems;
    // Stable, so problems of one line keep the order they were found in.
    problems.sort_by_key(|problem| {
        let file_idx = FILE_ORDER.iter().position(|&file| file == problem.file);
        (file_idx, problem.line)
    });
    Err(RosterError::Invalid(problems))
}

fn required<'f>(files: &'f RosterFiles, file: &'static str) -> Result<&'f [u8], RosterError> {
    files.get(file).ok_or_else(|| RosterError::MissingFile {
        file,
        export: files.export().to_owned(),
        why: ALWAYS_IN_AN_EXPORT,
    })
}

/// Checks that the export is OneRoster 1.1 and bulk; returns the optional files it lists as bulk.
fn check_manifest(
    manifest: &Table,
    findings: &mut Findings,
) -> Result<Vec<&'static str>, RosterError> {
    let property = manifest.required("propertyName")?;
    let value = manifest.required("value")?;
    let bad_manifest = |line, problem| {
        RosterError::BadFile(RowError {
            file: MANIFEST,
            line,
            problem,
        })
    };
    let mut has_version = false;
    let mut bulk_files = Vec::new();
    for row in &manifest.rows {
        let (name, value) = (row.get(property), row.get(value));
        if name.eq_ignore_ascii_case("oneroster.version") {
            if value != "1.1" {
                return Err(bad_manifest(
                    row.line,
                    Problem::UnsupportedVersion(value.to_owned()),
                ));
            }
            has_version = true;
        } else if let Some(listed_file) = name.strip_prefix("file.") {
            if value.eq_ignore_ascii_case("delta") {
                return Err(bad_manifest(row.line, Problem::DeltaFile(name.to_owned())));
            } else if value.eq_ignore_ascii_case("bulk") {
                let optional_file = [ORGS, ACADEMIC_SESSIONS]
                    .into_iter()
                    .find(|file| file.strip_suffix(".csv") == Some(listed_file));
                bulk_files.extend(optional_file);
            } else if value.is_empty() {
                // Some exporters leave the value of files they do not write blank.
                findings.warn(MANIFEST, WarningKind::BlankManifestValue);
            } else if !value.eq_ignore_ascii_case("absent") {
                return Err(bad_manifest(
                    row.line,
                    Problem::UnknownFileMode {
                        property: name.to_owned(),
                        value: value.to_owned(),
                    },
                ));
            }
        }
    }
    if !has_version {
        return Err(bad_manifest(manifest.header_line, Problem::NoVersion));
    }
    Ok(bulk_files)
}

struct OrgColumns {
    id: Column,
    name: Column,
    kind: Column,
    status: Option<Column>,
}

impl OrgColumns {
    fn find(table: &Table) -> Result<Self, RosterError> {
        Ok(OrgColumns {
            id: table.required("sourcedId")?,
            name: table.required("name")?,
            kind: table.required("type")?,
            status: table.optional("status"),
        })
    }
}

/// Reads orgs into `orgs` and returns their index, which classes' schoolSourcedId refers to.
fn read_orgs(
    table: &Table,
    columns: &OrgColumns,
    findings: &mut Findings,
    orgs: &mut Vec<Org>,
) -> Index<()> {
    let mut checks = RowChecks::new(table.file, findings);
    let mut kept = HashMap::new();
    for row in &table.rows {
        let has_values = checks.has_values_and_new_id(
            row,
            columns.id,
            &[columns.id, columns.name, columns.kind],
        );
        let is_usable = checks.is_usable_id(row, columns.id);
        // Orgs have no `active` field to keep, but a misspelt status is still a broken export.
        let status = checks.is_active(row, columns.status);
        if has_values && is_usable && status.is_some() {
            kept.insert(row.get(columns.id).to_owned(), ());
            orgs.push(Org {
                id: row.get(columns.id).to_owned(),
                name: row.get(columns.name).to_owned(),
                kind: row.get(columns.kind).to_owned(),
            });
        }
    }
    checks.into_index(kept, table, columns.id)
}

struct SessionColumns {
    id: Column,
    title: Column,
    kind: Column,
    start_date: Column,
    end_date: Column,
    status: Option<Column>,
}

impl SessionColumns {
    fn find(table: &Table) -> Result<Self, RosterError> {
        Ok(SessionColumns {
            id: table.required("sourcedId")?,
            title: table.required("title")?,
            kind: table.required("type")?,
            start_date: table.required("startDate")?,
            end_date: table.required("endDate")?,
            status: table.optional("status"),
        })
    }
}

fn read_academic_sessions(
    table: &Table,
    columns: &SessionColumns,
    findings: &mut Findings,
) -> Vec<AcademicSession> {
    let mut checks = RowChecks::new(table.file, findings);
    let mut sessions = Vec::new();
    for row in &table.rows {
        let required = [
            columns.id,
            columns.title,
            columns.kind,
            columns.start_date,
            columns.end_date,
        ];
        let mut is_ok = checks.has_values_and_new_id(row, columns.id, &required);
        is_ok &= checks.is_usable_id(row, columns.id);
        is_ok &= checks.is_active(row, columns.status).is_some();
        let (start, end) = (row.get(columns.start_date), row.get(columns.end_date));
        // Empty dates were reported as empty already.
        let start_ok = !start.is_empty()
            && checks
                .check(row.line, check_date("startDate", start))
                .is_some();
        let end_ok =
            !end.is_empty() && checks.check(row.line, check_date("endDate", end)).is_some();
        if start_ok && end_ok && end < start {
            let (start, end) = (start.to_owned(), end.to_owned());
            checks.report(row.line, Problem::EndBeforeStart { start, end });
            is_ok = false;
        }
        if is_ok && start_ok && end_ok {
            sessions.push(AcademicSession {
                id: row.get(columns.id).to_owned(),
                title: row.get(columns.title).to_owned(),
                kind: row.get(columns.kind).to_owned(),
                start_date: start.to_owned(),
                end_date: end.to_owned(),
            });
        }
    }
    sessions
}

struct ClassColumns {
    id: Column,
    title: Column,
    school_id: Column,
    status: Option<Column>,
}

impl ClassColumns {
    fn find(table: &Table) -> Result<Self, RosterError> {
        Ok(ClassColumns {
            id: table.required("sourcedId")?,
            title: table.required("title")?,
            school_id: table.required("schoolSourcedId")?,
            status: table.optional("status"),
        })
    }
}

/// Reads classes into `sections`; their schools are checked against orgs.csv when the export
/// has it. Returns the index that enrollments refer to.
fn read_classes(
    table: &Table,
    columns: &ClassColumns,
    org_index: Option<&Index<()>>,
    findings: &mut Findings,
    sections: &mut Vec<Section>,
) -> Index<()> {
    let mut checks = RowChecks::new(table.file, findings);
    let mut kept = HashMap::new();
    for row in &table.rows {
        let required = [columns.id, columns.title, columns.school_id];
        let mut is_ok = checks.has_values_and_new_id(row, columns.id, &required);
        is_ok &= checks.is_usable_id(row, columns.id);
        let active = checks.is_active(row, columns.status);
        let school_id = row.get(columns.school_id);
        // With orgs.csv, the school must be one of its orgs, whose ids are checked there.
        if org_index.is_none() {
            is_ok &= checks.is_usable_id(row, columns.school_id);
        }
        if let Some(org_index) = org_index
            && !school_id.is_empty()
            && matches!(org_index.lookup(school_id), Lookup::Unknown)
        {
            let problem = Problem::UnknownReference {
                kind: "school",
                id: school_id.to_owned(),
                file: ORGS,
            };
            checks.report(row.line, problem);
            is_ok = false;
        }
        if let (true, Some(active)) = (is_ok, active) {
            kept.insert(row.get(columns.id).to_owned(), ());
            sections.push(Section {
                id: row.get(columns.id).to_owned(),
                title: row.get(columns.title).to_owned(),
                school_id: school_id.to_owned(),
                active,
            });
        }
    }
    checks.into_index(kept, table, columns.id)
}
