//! Reports: a school's (or a teacher's sections') attendance over a date range, as a per-section
//! summary page and as CSV files. The store is read a week at a time, so a year's export streams
//! with the memory of one week whatever the school's size.
//!
//! CSV is RFC 4180: UTF-8, one header row, CRLF line ends, a field quoted when it holds a comma, a
//! quote or a line break. A field a spreadsheet would run as a formula (starting with `=`, `+`,
//! `-`, `@`, a tab or a carriage return) gets a leading `'`: names come from uploaded rosters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use serde::Deserialize;
use shared_proto::sync::MarkStatus;

use super::session::WebUser;
use super::{Chrome, WebError, one_decimal, rolls, school_of, section_titles, student_names};
use crate::api::attendance::{is_visible, is_visible_section, visible_sections};
use crate::api::{ApiError, AppState};
use crate::domain::attendance::Counts;
use crate::domain::lessons;
use crate::domain::settings::SchoolSettings;
use crate::store::{AttendanceQuery, AttendanceRow, Millis, Tally};

const DAY_MS: Millis = 24 * 60 * 60 * 1000;
/// How much of a range one store read covers.
const CHUNK_DAYS: i64 = 7;

#[derive(Clone, Deserialize)]
pub(super) struct ReportParams {
    school: Option<String>,
    /// First day, YYYY-MM-DD (the school's); default: 30 days before today.
    from: Option<String>,
    /// Last day, YYYY-MM-DD, included; default: today.
    to: Option<String>,
    /// One section; default: every section the user may see.
    section: Option<String>,
}

/// A report's scope, checked: the school, the days, which sections, and the names to print.
struct Scope {
    school_id: String,
    /// The school's settings (read once per request), and their time zone: its days and clock.
    settings: SchoolSettings,
    tz: TimeZone,
    from: Millis,
    to: Millis,
    from_day: String,
    to_day: String,
    /// The sections the user may see (`visible_sections`); `None`: every one.
    visible: Option<BTreeSet<String>>,
    /// The one section asked for, if any (one the user may see).
    section: Option<String>,
    section_titles: HashMap<String, String>,
    student_names: HashMap<String, String>,
    /// Each section's and student's place in the alphabetical order of titles and names: rows
    /// are sorted on these numbers, not by comparing strings a million times.
    title_rank: HashMap<String, u32>,
    name_rank: HashMap<String, u32>,
}

/// Each key's place when the map's values are sorted (ties by key).
fn ranks(names: &HashMap<String, String>) -> HashMap<String, u32> {
    let mut sorted: Vec<(&String, &String)> = names.iter().collect();
    sorted.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), i as u32))
        .collect()
}

impl Scope {
    async fn of(
        state: &AppState,
        user: &WebUser,
        params: ReportParams,
    ) -> Result<Option<Scope>, WebError> {
        let Some(school_id) = school_of(user, params.school)? else {
            return Ok(None);
        };
        let visible = visible_sections(state, &user.user, &school_id).await?;
        let settings = state.store().school_settings(&school_id).await?;
        let tz = settings.tz();
        let rolls::Days {
            from_day,
            to_day,
            from,
            to,
        } = rolls::Days::of(params.from, params.to, 30, state.now(), &tz)?;
        let section = params.section.filter(|s| !s.is_empty());
        if let (Some(own), Some(one)) = (&visible, &section)
            && !own.contains(one)
        {
            return Err(WebError::from(ApiError::Forbidden(
                "you can report on your own sections only".to_owned(),
            )));
        }
        let section_titles = section_titles(state, &school_id).await?;
        let student_names = student_names(state, &school_id).await?;
        let title_rank = ranks(&section_titles);
        let name_rank = ranks(&student_names);
        Ok(Some(Scope {
            title_rank,
            name_rank,
            school_id,
            settings,
            tz,
            from,
            to,
            from_day,
            to_day,
            visible,
            section,
            section_titles,
            student_names,
        }))
    }

    /// As `of`, for a file: a district admin must have picked a school.
    async fn required(
        state: &AppState,
        user: &WebUser,
        params: ReportParams,
    ) -> Result<Scope, WebError> {
        Scope::of(state, user, params).await?.ok_or_else(|| {
            WebError::from(ApiError::InvalidRequest("pick a school first".to_owned()))
        })
    }

    /// The marks of `[from, to)` this scope covers, in the order a report lists them.
    async fn read(
        &self,
        state: &AppState,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<AttendanceRow>, WebError> {
        let mut rows = self.read_unsorted(state, from, to).await?;
        let rank = |ranks: &HashMap<String, u32>, id: Option<&String>| {
            id.and_then(|id| ranks.get(id)).copied().unwrap_or(u32::MAX)
        };
        rows.sort_by_cached_key(|row| {
            (
                when(row),
                rank(&self.title_rank, row.section_id.as_ref()),
                rank(&self.name_rank, Some(&row.student_id)),
            )
        });
        Ok(rows)
    }

    /// The marks this scope covers, in the store's order: for sums.
    async fn read_unsorted(
        &self,
        state: &AppState,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<AttendanceRow>, WebError> {
        let query = AttendanceQuery {
            school_id: self.school_id.clone(),
            section_id: self.section.clone(),
            student_id: None,
            from,
            to,
        };
        let mut rows = state.store().attendance(&query).await?;
        rows.retain(|row| is_visible(row, self.visible.as_ref()));
        Ok(rows)
    }

    /// The chunks of the range, each read on its own.
    fn chunks(&self) -> Vec<(Millis, Millis)> {
        let mut chunks = Vec::new();
        let mut start = self.from;
        while start < self.to {
            let end = (start + CHUNK_DAYS * DAY_MS).min(self.to);
            chunks.push((start, end));
            start = end;
        }
        chunks
    }

    fn title<'s>(&'s self, row: &'s AttendanceRow) -> &'s str {
        row.section_id.as_deref().map_or("", |id| {
            self.section_titles.get(id).map_or(id, String::as_str)
        })
    }

    fn name<'s>(&'s self, row: &'s AttendanceRow) -> &'s str {
        self.student_names
            .get(&row.student_id)
            .map_or(&row.student_id, String::as_str)
    }

    fn file_name(&self, what: &str) -> String {
        let safe = file_safe(&self.school_id);
        format!("{what}_{safe}_{}_{}.csv", self.from_day, self.to_day)
    }
}

/// An id as a file name may carry it: anything but letters, digits, `-` and `_` becomes `_`.
pub(super) fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// When a mark happened: its session's start, or its decision while the session has not arrived.
fn when(row: &AttendanceRow) -> Millis {
    row.started_at.unwrap_or(row.decided_at)
}

/// The one-letter code of a mark in exports and grids.
pub(super) fn code(status: MarkStatus) -> &'static str {
    match status {
        MarkStatus::Present => "P",
        MarkStatus::Absent => "A",
        MarkStatus::Late => "L",
        MarkStatus::Excused => "E",
        MarkStatus::Review => "R",
    }
}

/// One CSV record, RFC 4180, with the formula guard: see `push_csv_record`.
pub(super) fn csv_record(fields: &[&str]) -> String {
    let mut out = String::new();
    push_csv_record(&mut out, fields);
    out
}

/// Appends one CSV record to `out`, RFC 4180, with the formula guard (a field a spreadsheet would
/// run as a formula starts with a quote). A year's export writes a million of these into one
/// buffer per week; the checks look at bytes, as every character they look for is ASCII.
pub(super) fn push_csv_record(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guard = matches!(
            field.as_bytes().first(),
            Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
        );
        let quoted = field
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if quoted {
            out.push('"');
        }
        if guard {
            out.push('\'');
        }
        if quoted {
            for (j, part) in field.split('"').enumerate() {
                if j > 0 {
                    out.push_str("\"\"");
                }
                out.push_str(part);
            }
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

/// A section's line of the summary.
pub(super) struct SummaryLine {
    id: String,
    title: String,
    sessions: usize,
    counts: Counts,
    percent: String,
}

/// One student's figures over a report's scope.
pub(super) struct StudentLine {
    id: String,
    name: String,
    counts: Counts,
    percent: String,
    missed: String,
    /// At or over the school's chronic-absence threshold.
    flagged: bool,
}

/// Per student, by name: what the page lists when one section is asked for, and the flagged ones
/// for a whole school.
fn student_lines(
    scope: &Scope,
    by_student: HashMap<String, Counts>,
    threshold: f64,
) -> Vec<StudentLine> {
    let mut lines: Vec<StudentLine> = by_student
        .into_iter()
        .map(|(id, counts)| StudentLine {
            name: scope
                .student_names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.clone()),
            percent: one_decimal(counts.attendance_percent()),
            missed: one_decimal(counts.missed_percent()),
            flagged: counts.chronically_absent(threshold),
            counts,
            id,
        })
        .collect();
    lines.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    lines
}

/// Per section: sessions held and marks counted over the scope (`Store::tally`, counted in the
/// store; past days kept a few minutes, `past::Past`); and per student.
async fn summary(
    state: &AppState,
    scope: &Scope,
) -> Result<(Vec<SummaryLine>, HashMap<String, Counts>), WebError> {
    let query = AttendanceQuery {
        school_id: scope.school_id.clone(),
        section_id: scope.section.clone(),
        student_id: None,
        from: scope.from,
        to: scope.to,
    };
    // Days before the school's today as `past::Past` holds them (a report usually ends today),
    // today live.
    let now = state.now();
    let today = lessons::day_of(now, &scope.tz).and_then(|day| lessons::bounds(day, &scope.tz));
    let until = today
        .map_or(now, |(start, _)| start)
        .clamp(scope.from, scope.to);
    let key = format!("{}/{}", scope.from, scope.section.as_deref().unwrap_or(""));
    let past = state
        .web_caches()
        .past_tallies
        .get_or_read(&scope.school_id, key, until, now, || async {
            let past = AttendanceQuery {
                to: until,
                ..query.clone()
            };
            Ok(state.store().tally(&past).await?)
        })
        .await?;
    let today = AttendanceQuery {
        from: until,
        ..query
    };
    let tally = Tally::merged(vec![
        past.as_ref().clone(),
        state.store().tally(&today).await?,
    ]);
    let visible = |section: Option<&str>| is_visible_section(section, scope.visible.as_ref());
    let mut by_section: BTreeMap<String, (usize, Counts)> = BTreeMap::new();
    for (section, sessions) in tally.sessions {
        if visible(Some(&section)) {
            by_section.entry(section).or_default().0 = sessions as usize;
        }
    }
    let mut by_student: HashMap<String, Counts> = HashMap::new();
    for row in tally.marks {
        if !visible(row.section_id.as_deref()) {
            continue;
        }
        let n = row.count as usize;
        by_student
            .entry(row.student_id)
            .or_default()
            .add_n(row.status, n);
        if let Some(section) = row.section_id {
            by_section
                .entry(section)
                .or_default()
                .1
                .add_n(row.status, n);
        }
    }
    let mut lines: Vec<SummaryLine> = by_section
        .into_iter()
        .map(|(id, (sessions, counts))| SummaryLine {
            title: scope
                .section_titles
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.clone()),
            id,
            sessions,
            percent: one_decimal(counts.attendance_percent()),
            counts,
        })
        .collect();
    lines.sort_by(|a, b| (&a.title, &a.id).cmp(&(&b.title, &b.id)));
    Ok((lines, by_student))
}

#[derive(Template, WebTemplate)]
#[template(path = "reports.html")]
struct ReportsPage {
    chrome: Chrome,
    from: String,
    to: String,
    section: String,
    sections: Vec<(String, String)>,
    lines: Vec<SummaryLine>,
    /// Every student of the section asked for, or the flagged ones of the school.
    students: Vec<StudentLine>,
    chronic_percent: u8,
    /// The school's time zone, in which its days are counted.
    time_zone: String,
    /// The query string of the CSV links.
    query: String,
}

/// `GET /reports`: the range's per-section summary, and the CSV links.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<ReportParams>,
) -> Result<Response, WebError> {
    let Some(scope) = Scope::of(&state, &user, params).await? else {
        return Ok(axum::response::Redirect::to("/").into_response());
    };
    let (lines, by_student) = summary(&state, &scope).await?;
    let settings = &scope.settings;
    let mut students = student_lines(&scope, by_student, settings.chronic_threshold());
    // A whole school lists only the students it should worry about; one section lists all.
    if scope.section.is_none() {
        students.retain(|s| s.flagged);
    }
    // The choices of the form: every section the user may see.
    let mut sections: Vec<(String, String)> = scope
        .section_titles
        .iter()
        .filter(|(id, _)| scope.visible.as_ref().is_none_or(|own| own.contains(*id)))
        .map(|(id, title)| (id.clone(), title.clone()))
        .collect();
    sections.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let section = scope.section.clone().unwrap_or_default();
    let query = serde_urlencoded::to_string([
        ("school", scope.school_id.as_str()),
        ("from", scope.from_day.as_str()),
        ("to", scope.to_day.as_str()),
        ("section", section.as_str()),
    ])
    .unwrap_or_default();
    let page = ReportsPage {
        chrome: Chrome::of(&user, Some(scope.school_id.clone())),
        from: scope.from_day.clone(),
        to: scope.to_day.clone(),
        section,
        sections,
        lines,
        students,
        chronic_percent: settings.chronic_percent,
        time_zone: settings.time_zone.clone(),
        query,
    };
    Ok(page.into_response())
}

/// `GET /reports/attendance.csv`: one row per student and session, streamed a week at a time.
pub(super) async fn attendance_csv(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<ReportParams>,
) -> Result<Response, WebError> {
    let scope = Scope::required(&state, &user, params).await?;
    let file_name = scope.file_name("attendance");
    // Day and start are the school's (its settings' time zone); `start_utc` is the instant.
    let header_row = csv_record(&[
        "date",
        "start",
        "section_id",
        "section",
        "student_id",
        "student",
        "code",
        "status",
        "source",
        "decided_by",
        "session_id",
        "start_utc",
    ]);
    let scope = Arc::new(scope);
    let mut chunks = scope.chunks().into_iter();
    let first = read_ahead(&state, &scope, chunks.next());
    let stream = futures_util::stream::unfold(
        (state, scope, chunks, Some(header_row), first),
        |(state, scope, mut chunks, header_row, next)| async move {
            if let Some(header_row) = header_row {
                return Some((Ok(header_row), (state, scope, chunks, None, next)));
            }
            let reading = next?;
            // The week after this one is read while this one is written out: the store's reader
            // and this task run on different cores.
            let after = read_ahead(&state, &scope, chunks.next());
            let read = match reading.await {
                Ok(read) => read.map_err(|WebError(e)| e.to_string()),
                Err(join) => Err(join.to_string()),
            };
            let rows = match read {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "attendance export failed part way");
                    // Ends the body: the client sees a cut-off download.
                    let error = Err(std::io::Error::other(error));
                    return Some((error, (state, scope, chunks, None, None)));
                }
            };
            let mut times = Times::default();
            let mut text = String::with_capacity(rows.len() * ROW_BYTES);
            for row in &rows {
                attendance_record(&mut text, &scope, row, &mut times);
            }
            Some((Ok(text), (state, scope, chunks, None, after)))
        },
    );
    Ok(csv_response(&file_name, Body::from_stream(stream)))
}

/// A chunk of an export, being read (and sorted) on a task of its own.
type Reading = tokio::task::JoinHandle<Result<Vec<AttendanceRow>, WebError>>;

fn read_ahead(
    state: &AppState,
    scope: &Arc<Scope>,
    chunk: Option<(Millis, Millis)>,
) -> Option<Reading> {
    let (from, to) = chunk?;
    let (state, scope) = (state.clone(), Arc::clone(scope));
    Some(tokio::spawn(
        async move { scope.read(&state, from, to).await },
    ))
}

/// The day and time of the last row's session: a session's rows are consecutive, and formatting a
/// time was most of a year's export.
#[derive(Default)]
struct Times {
    at: Option<Millis>,
    day: String,
    start: String,
    utc: String,
}

/// About the length of an attendance row, to size a week's buffer once.
const ROW_BYTES: usize = 160;

fn attendance_record(out: &mut String, scope: &Scope, row: &AttendanceRow, times: &mut Times) {
    let at = when(row);
    if times.at != Some(at) {
        times.at = Some(at);
        times.day = rolls::day(at, &scope.tz);
        times.start = lessons::clock(at, &scope.tz);
        times.utc =
            jiff::Timestamp::from_millisecond(at).map_or_else(|_| String::new(), |t| t.to_string());
    }
    push_csv_record(
        out,
        &[
            &times.day,
            &times.start,
            row.section_id.as_deref().unwrap_or(""),
            scope.title(row),
            &row.student_id,
            scope.name(row),
            code(row.status),
            row.status.as_str(),
            row.source.as_str(),
            row.decided_by.as_deref().unwrap_or(""),
            &row.session_id,
            &times.utc,
        ],
    );
}

/// `GET /reports/summary.csv`: the summary page as CSV.
pub(super) async fn summary_csv(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<ReportParams>,
) -> Result<Response, WebError> {
    let scope = Scope::required(&state, &user, params).await?;
    let mut text = csv_record(&[
        "section_id",
        "section",
        "sessions",
        "present",
        "absent",
        "late",
        "excused",
        "review",
        "attendance_percent",
    ]);
    for line in summary(&state, &scope).await?.0 {
        let c = line.counts;
        text.push_str(&csv_record(&[
            &line.id,
            &line.title,
            &line.sessions.to_string(),
            &c.present.to_string(),
            &c.absent.to_string(),
            &c.late.to_string(),
            &c.excused.to_string(),
            &c.review.to_string(),
            if line.percent == "-" {
                ""
            } else {
                &line.percent
            },
        ]));
    }
    Ok(csv_response(&scope.file_name("summary"), Body::from(text)))
}

pub(super) fn csv_response(file_name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_record(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            csv_record(&["O\"Neil, Pat", "x\ny"]),
            "\"O\"\"Neil, Pat\",\"x\ny\"\r\n"
        );
        assert_eq!(
            csv_record(&["=HYPERLINK(1)", "-3", "@x"]),
            "'=HYPERLINK(1),'-3,'@x\r\n"
        );
        assert_eq!(csv_record(&["=a,b"]), "\"'=a,b\"\r\n");
    }
}
