//! Draws the teacher screen from the app's state alone: header with the sync indicator (and under
//! it, while the box's clock is off, a row that says so), the counts, the roll (or the section
//! picker, or enrolment), a message line and the key bar.
//! Laid out for 80x24 first; narrower screens truncate, wider ones show more.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

use super::SyncIndicator;
use super::app::{
    App, EnrolPhase, MessageKind, Screen, SessionState, VisionStatus, group_rank, status_label,
};
use crate::attendance::roll::RollRow;
use crate::store::{Consent, MarkSource, MarkStatus};
use crate::sync::clock::{self, ClockVerdict};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub fn render(frame: &mut Frame, app: &App) {
    let summary_lines = summary_lines(app);
    let banner = clock_banner(app);
    let [header, clock, summary, body, message, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(summary_lines.len() as u16),
        Constraint::Min(3),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, header, app);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), clock);
    }
    frame.render_widget(Paragraph::new(summary_lines), summary);
    match app.screen {
        Screen::Roster => render_roster(frame, body, app),
        Screen::Picker => render_picker(frame, body, app),
        Screen::Enrol => render_enrol(frame, body, app),
    }
    frame.render_widget(
        Paragraph::new(message_line(app)).wrap(Wrap { trim: true }),
        message,
    );
    frame.render_widget(Paragraph::new(key_bar(app, keys.width)), keys);
}

fn spinner(app: &App) -> &'static str {
    SPINNER[(app.ticks % SPINNER.len() as u64) as usize]
}

fn status_style(status: Option<MarkStatus>) -> Style {
    let color = match status {
        Some(MarkStatus::Present) => Color::Green,
        Some(MarkStatus::Review) => Color::Yellow,
        Some(MarkStatus::Absent) => Color::Red,
        Some(MarkStatus::Late) => Color::Magenta,
        Some(MarkStatus::Excused) => Color::Blue,
        None => Color::DarkGray,
    };
    Style::new().fg(color)
}

fn render_header(frame: &mut Frame, area: Rect, app: &App) {
    let sync = sync_text(app.sync.as_ref(), app.waiting);
    let [left, right] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(sync.chars().count() as u16),
    ])
    .areas(area);
    let section = match &app.section {
        Some(id) => match app.sections.iter().find(|s| &s.id == id) {
            Some(s) => format!("{} ({})", s.title, s.id),
            None => id.clone(),
        },
        None => "no section chosen".to_owned(),
    };
    let title = Line::from(vec![
        Span::styled("Rollcall", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(" · {section}")),
    ]);
    frame.render_widget(Paragraph::new(title), left);
    let style = match app.sync.as_ref().and_then(|s| s.online) {
        Some(true) => Style::new().fg(Color::Green),
        Some(false) => Style::new().fg(Color::Yellow),
        None => Style::new().fg(Color::DarkGray),
    };
    frame.render_widget(Paragraph::new(Span::styled(sync, style)), right);
}

/// "online · 0 waiting · last sync 08:41", or "sync: not set up · 3 waiting" before the sync
/// loop has said anything.
pub fn sync_text(sync: Option<&SyncIndicator>, waiting: usize) -> String {
    let Some(sync) = sync else {
        return format!("sync: not set up · {waiting} waiting");
    };
    let state = match sync.online {
        Some(true) => "● online".to_owned(),
        Some(false) => "○ offline".to_owned(),
        None if sync.detail.is_empty() => "sync: starting".to_owned(),
        // Not provisioned, or no store: the loop's one-word reason.
        None => format!("sync: {}", sync.detail),
    };
    let last = sync
        .last_sync_ms
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| {
            let local = t.to_zoned(jiff::tz::TimeZone::system());
            format!(" · last sync {}", local.strftime("%H:%M"))
        })
        .unwrap_or_default();
    format!("{state} · {waiting} waiting{last}")
}

/// A row of its own while the box's clock is further from the server's than the rule allows:
/// every mark taken now carries the wrong time, and a message would soon cover it. The teacher
/// calls IT; `edge-agent status` and `doctor` give IT the command.
fn clock_banner(app: &App) -> Option<Line<'static>> {
    let offset = app.sync.as_ref()?.clock_offset_ms?;
    // A clock far ahead also gets marks refused (the server's `max_clock_ahead_hours`).
    let harm = if offset < 0 {
        "marks get the wrong time"
    } else {
        "marks get the wrong time or are refused"
    };
    (clock::verdict(offset) == ClockVerdict::Fail).then(|| {
        Line::styled(
            format!(
                "⚠ Clock {}: {harm}. Ask IT to set it.",
                clock::describe(offset)
            ),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )
    })
}

fn summary_lines(app: &App) -> Vec<Line<'static>> {
    let count = |status: Option<MarkStatus>| app.rows.iter().filter(|r| r.status == status).count();
    let mut spans = Vec::new();
    // Present, review and absent always; the rest when someone has them, so a capture's extra
    // counts still fit 80 columns.
    for status in [
        Some(MarkStatus::Present),
        Some(MarkStatus::Review),
        Some(MarkStatus::Absent),
        Some(MarkStatus::Late),
        Some(MarkStatus::Excused),
        None,
    ] {
        let label = match status {
            Some(MarkStatus::Review) => "review",
            other => status_label(other),
        };
        let always = matches!(
            status,
            Some(MarkStatus::Present | MarkStatus::Review | MarkStatus::Absent)
        );
        if !always && count(status) == 0 {
            continue;
        }
        if !spans.is_empty() {
            spans.push(Span::raw(" · "));
        }
        spans.push(Span::styled(
            format!("{label} {}", count(status)),
            status_style(status),
        ));
    }
    let mut lines = vec![Line::from(spans)];
    if let Some(capture) = &app.last_capture {
        let mut text = format!(
            "last capture: unknown faces {} · too small to match {}",
            capture.unknown_faces, capture.too_small_faces
        );
        if !capture.not_on_roster.is_empty() {
            text += &format!(
                " · not on this roster: {}",
                capture.not_on_roster.join(", ")
            );
        }
        lines.push(Line::styled(text, Style::new().fg(Color::DarkGray)));
        if let Some(notice) = &capture.reenrolment {
            lines.push(Line::styled(notice.clone(), Style::new().fg(Color::Yellow)));
        }
    }
    lines
}

fn name_of<'a>(app: &'a App, student: &'a str) -> &'a str {
    app.rows
        .iter()
        .find(|r| r.student == student)
        .map_or(student, |r| r.name.as_str())
}

fn row_item(app: &App, row: &RollRow, name_width: usize) -> ListItem<'static> {
    let by = match row.source {
        Some(MarkSource::Teacher) => "teacher",
        Some(MarkSource::Office) => "office",
        Some(MarkSource::Machine) => "camera",
        None => "",
    };
    let score = row.score.map(|s| format!("{s:.2}")).unwrap_or_default();
    let spans = vec![
        Span::raw(format!("{:<name_width$} ", truncate(&row.name, name_width))),
        Span::styled(
            format!("{:<12} ", status_label(row.status)),
            status_style(row.status),
        ),
        Span::styled(format!("{by:<8}"), Style::new().fg(Color::DarkGray)),
        Span::raw(format!("{score:>5}")),
    ];
    let mut lines = vec![Line::from(spans)];
    // A review row's candidates go on a line of their own: they need the width.
    if row.status == Some(MarkStatus::Review) && !row.candidates.is_empty() {
        let candidates: Vec<String> = row
            .candidates
            .iter()
            .map(|c| format!("{} {:.2}", name_of(app, &c.student), c.score))
            .collect();
        lines.push(Line::styled(
            format!("  looks like: {}", candidates.join(" · ")),
            Style::new().fg(Color::Yellow),
        ));
    }
    ListItem::new(lines)
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn group_title(status: Option<MarkStatus>) -> &'static str {
    match status {
        Some(MarkStatus::Review) => "NEEDS REVIEW",
        Some(MarkStatus::Absent) => "ABSENT",
        None => "NOT MARKED",
        Some(MarkStatus::Late) => "LATE",
        Some(MarkStatus::Excused) => "EXCUSED",
        Some(MarkStatus::Present) => "PRESENT",
    }
}

fn render_roster(frame: &mut Frame, area: Rect, app: &App) {
    let title = match &app.session {
        SessionState::Open(id) => format!(" Roll · session {} ", short_id(id)),
        SessionState::Opening => " Roll · opening session… ".to_owned(),
        SessionState::None => " Roll · nothing stored yet: c captures, p/a/l/e marks ".to_owned(),
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(vision_label(app));
    let name_width = area.width.saturating_sub(44).clamp(8, 28) as usize;
    let mut items = Vec::new();
    let mut selected_item = None;
    let mut last_group = None;
    for (row_idx, row) in app.rows.iter().enumerate() {
        let group = group_rank(row.status);
        if last_group != Some(group) {
            last_group = Some(group);
            let n = app
                .rows
                .iter()
                .filter(|r| group_rank(r.status) == group)
                .count();
            let hint = if row.status == Some(MarkStatus::Review) {
                ": y confirms, n rejects"
            } else {
                ""
            };
            items.push(ListItem::new(Line::styled(
                format!("{} ({n}){hint}", group_title(row.status)),
                status_style(row.status).add_modifier(Modifier::BOLD),
            )));
        }
        if row_idx == app.selected {
            selected_item = Some(items.len());
        }
        items.push(row_item(app, row, name_width));
    }
    if items.is_empty() {
        let text = if app.section.is_none() {
            "No section: press s to pick one."
        } else {
            "Loading the roll…"
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let list = List::new(items)
        .block(block)
        .highlight_symbol("▶ ")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(selected_item);
    frame.render_stateful_widget(list, area, &mut state);
}

fn short_id(id: &str) -> &str {
    // UUIDv7s share their leading time digits within a day: the tail tells sessions apart.
    &id[id.len().saturating_sub(8)..]
}

fn vision_label(app: &App) -> String {
    match &app.vision {
        VisionStatus::Loading => format!(" {} starting camera and models… ", spinner(app)),
        VisionStatus::Ready { source } => format!(" capture from {source} "),
        VisionStatus::Unavailable(_) => " no capture: manual marking only ".to_owned(),
        VisionStatus::Disabled => " face recognition off: manual roll call ".to_owned(),
    }
}

fn render_picker(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Pick a section (Enter) ");
    let items: Vec<ListItem> = app
        .sections
        .iter()
        .map(|s| {
            let now = if app.lessons_now.contains(&s.id) {
                "  ← lesson now"
            } else {
                ""
            };
            ListItem::new(format!("{} ({}){now}", s.title, s.id))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_symbol("▶ ")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.picker_selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn render_enrol(frame: &mut Frame, area: Rect, app: &App) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let items: Vec<ListItem> = app
        .rows
        .iter()
        .map(|r| {
            let consent = match r.consent {
                Consent::Granted => "consent",
                Consent::None => "no consent",
                Consent::Withdrawn => "withdrawn",
            };
            ListItem::new(format!(
                "{:<18} {:<10} {} tpl",
                truncate(&r.name, 18),
                consent,
                r.n_templates
            ))
        })
        .collect();
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(" Enrol: student "))
        .highlight_symbol("▶ ")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.enrol_selected));
    frame.render_stateful_widget(list, left, &mut state);

    let verdict = Block::new().borders(Borders::ALL).title(" Photo check ");
    let ok = |pass: bool| {
        if pass {
            Span::styled("✓", Style::new().fg(Color::Green))
        } else {
            Span::styled("✗", Style::new().fg(Color::Red))
        }
    };
    let lines: Vec<Line> = match &app.enrol {
        EnrolPhase::Idle => vec![Line::raw(
            "Pick a student, ask them to face the camera, and press c.",
        )],
        EnrolPhase::Checking(student) => vec![Line::raw(format!(
            "{} taking a photo of {}…",
            spinner(app),
            name_of(app, student)
        ))],
        EnrolPhase::Keeping(student) => vec![Line::raw(format!(
            "{} storing the template of {}…",
            spinner(app),
            name_of(app, student)
        ))],
        EnrolPhase::Preview(p) => vec![
            Line::from(vec![ok(true), Span::raw(" one face found")]),
            Line::from(vec![
                ok(p.eye_distance >= p.min_eye_distance),
                Span::raw(format!(
                    " size: eyes {:.0} px apart (≥ {:.0})",
                    p.eye_distance, p.min_eye_distance
                )),
            ]),
            Line::from(vec![
                ok(p.sharpness >= p.min_sharpness),
                Span::raw(format!(
                    " sharpness {:.0} (≥ {:.0})",
                    p.sharpness, p.min_sharpness
                )),
            ]),
            Line::from(vec![
                ok(p.yaw_degrees.abs() <= p.max_yaw_degrees),
                Span::raw(format!(
                    " pose: turned {:.0}° (≤ {:.0}°)",
                    p.yaw_degrees.abs(),
                    p.max_yaw_degrees
                )),
            ]),
            Line::from(vec![ok(true), Span::raw(" not anyone else's face")]),
            Line::raw(""),
            Line::styled(
                format!("k keeps it for {}; r retakes", name_of(app, &p.student)),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ],
        EnrolPhase::Refused { student, reason } => vec![
            Line::from(vec![
                ok(false),
                Span::raw(format!(" not kept for {}", name_of(app, student))),
            ]),
            Line::styled(reason.clone(), Style::new().fg(Color::Red)),
            Line::raw(""),
            Line::raw("c tries again."),
        ],
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(verdict)
            .wrap(Wrap { trim: true }),
        right,
    );
}

fn message_line(app: &App) -> Line<'static> {
    if app.capturing {
        return Line::styled(
            format!(
                "{} capturing: taking a burst of frames and recognising faces…",
                spinner(app)
            ),
            Style::new().fg(Color::Cyan),
        );
    }
    match &app.message {
        Some(message) => {
            let style = match message.kind {
                MessageKind::Info => Style::new(),
                MessageKind::Error => Style::new().fg(Color::Red),
            };
            Line::styled(message.text.clone(), style)
        }
        None => Line::raw(""),
    }
}

fn key_bar(app: &App, width: u16) -> Line<'static> {
    let keys: &[(&str, &str)] = match (app.screen, &app.enrol) {
        (Screen::Roster, _) if width >= 110 => &[
            ("c", "capture"),
            ("↑↓", "move"),
            ("p a l e", "present absent late excused"),
            ("y n", "confirm reject review"),
            ("E", "enrol"),
            ("s", "section"),
            ("q", "quit"),
        ],
        (Screen::Roster, _) => &[
            ("c", "capture"),
            ("↑↓", "move"),
            ("p/a/l/e", "mark"),
            ("y/n", "review"),
            ("E", "enrol"),
            ("s", "section"),
            ("q", "quit"),
        ],
        (Screen::Picker, _) => &[
            ("↑↓", "move"),
            ("Enter", "open"),
            ("Esc", "back"),
            ("q", "quit"),
        ],
        (Screen::Enrol, EnrolPhase::Preview(_)) => {
            &[("k", "keep"), ("r", "retake"), ("Esc", "discard")]
        }
        (Screen::Enrol, _) => &[
            ("↑↓", "student"),
            ("c", "take photo"),
            ("Esc", "back"),
            ("q", "quit"),
        ],
    };
    let mut spans = Vec::new();
    for (key, label) in keys {
        spans.push(Span::styled(
            format!(" {key} "),
            Style::new().add_modifier(Modifier::REVERSED),
        ));
        // The key stands out by itself: one space after its label is enough (fits 80 columns).
        spans.push(Span::raw(format!("{label} ")));
    }
    Line::from(spans)
}
