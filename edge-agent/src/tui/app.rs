//! The teacher screen as a state machine: `App::handle(AppEvent)` updates the state and returns
//! the effects (jobs for the workers, quitting) for the event loop to carry out. No I/O here, so
//! tests drive it with keys and worker replies and read the state and the rendered buffer.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::attendance::roll::{ReviewDecision, Roll, RollRow};
use crate::store::{Consent, MarkSource, MarkStatus, SectionRecord};

use super::SyncIndicator;

/// Everything the event loop hands the screen: keys from the terminal, replies from the workers,
/// sync updates, and a clock tick that animates a running capture.
#[derive(Clone, Debug)]
pub enum AppEvent {
    Key(KeyEvent),
    /// The terminal can no longer be read: quit as `q` would.
    TerminalClosed,
    /// The terminal changed size; the next draw uses the new one.
    Resize,
    Tick,
    /// The school's active sections and the ones whose lesson is under way now.
    Sections {
        sections: Vec<SectionRecord>,
        now: Vec<String>,
    },
    /// A fresh roll read after store job `seq` (or after a capture), with the outbox depth.
    Roll {
        seq: u64,
        roll: Roll,
        waiting: usize,
    },
    /// Store job `seq` failed; a fresh roll follows so the screen shows what is really stored.
    StoreFailed {
        seq: u64,
        message: String,
    },
    Vision(VisionStatus),
    Captured(Result<CaptureSummary, String>),
    EnrolChecked(Result<EnrolPreview, String>),
    EnrolKept(Result<String, String>),
    Sync(SyncIndicator),
}

/// Whether captures and enrolment can run.
#[derive(Clone, Debug, PartialEq)]
pub enum VisionStatus {
    /// Models loading and the camera opening, on the vision worker.
    Loading,
    Ready {
        source: String,
    },
    /// No camera, no models: why, in a sentence that says what to do. Manual marking still works.
    Unavailable(String),
    /// `recognition = false` at this school.
    Disabled,
}

/// What the last burst found beyond the roll itself.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSummary {
    pub session: String,
    pub n_frames: usize,
    pub unknown_faces: usize,
    pub too_small_faces: usize,
    pub not_on_roster: Vec<String>,
    /// "7 of 30 students need re-enrolment for fr_feature-v2: ...", when any do.
    pub reenrolment: Option<String>,
    pub elapsed_ms: u64,
}

/// The quality verdict of an enrolment photo that passed every check, before it is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolPreview {
    pub student: String,
    pub eye_distance: f32,
    pub min_eye_distance: f32,
    pub sharpness: f32,
    pub min_sharpness: f32,
    pub yaw_degrees: f32,
    pub max_yaw_degrees: f32,
}

/// What the event loop must do for the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Store(StoreJob),
    Vision(VisionJob),
    Quit,
}

/// Work for the store worker; each job answers with `AppEvent::Roll` (or `Sections`).
#[derive(Clone, Debug, PartialEq)]
pub enum StoreJob {
    Sections,
    Load {
        seq: u64,
        section: String,
        session: Option<String>,
    },
    /// Opens a session without a capture (manual roll call, or marks before the first capture).
    Open {
        seq: u64,
        section: String,
    },
    Mark {
        seq: u64,
        session: String,
        student: String,
        status: MarkStatus,
    },
    Review {
        seq: u64,
        session: String,
        student: String,
        decision: ReviewDecision,
    },
    /// The teacher left the roll (another section, or quit): the session is closed. Answers
    /// nothing unless it fails.
    Close {
        session: String,
    },
}

/// Work for the vision worker, which owns the pipeline and the camera.
#[derive(Clone, Debug, PartialEq)]
pub enum VisionJob {
    /// A burst; with no session yet, the capture opens one.
    Capture {
        section: String,
        session: Option<String>,
    },
    EnrolCheck {
        student: String,
    },
    /// Store the face the last `EnrolCheck` accepted.
    EnrolKeep,
    EnrolDiscard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Roster,
    Picker,
    Enrol,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SessionState {
    /// Nothing stored yet for this section in this run.
    None,
    /// A capture or an `Open` job is creating it; acts wait in `queued`.
    Opening,
    Open(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum EnrolPhase {
    Idle,
    Checking(String),
    Preview(EnrolPreview),
    Refused { student: String, reason: String },
    Keeping(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
}

/// A teacher's act that needs the session id, which is still being made.
#[derive(Clone, Debug, PartialEq)]
enum Queued {
    Mark(String, MarkStatus),
    Review(String, ReviewDecision),
    Capture,
}

pub struct App {
    pub screen: Screen,
    pub recognition: bool,
    pub vision: VisionStatus,
    pub sections: Vec<SectionRecord>,
    pub lessons_now: Vec<String>,
    pub section: Option<String>,
    pub session: SessionState,
    /// The section's students, in display order (see `group_rank`).
    pub rows: Vec<RollRow>,
    pub selected: usize,
    pub picker_selected: usize,
    pub enrol_selected: usize,
    pub enrol: EnrolPhase,
    pub capturing: bool,
    pub last_capture: Option<CaptureSummary>,
    pub message: Option<Message>,
    pub sync: Option<SyncIndicator>,
    pub waiting: usize,
    pub ticks: u64,
    /// `q` was pressed while acts still wait for their session: quit once they are sent.
    pub quitting: bool,
    queued: Vec<Queued>,
    store_seq: u64,
    /// The section asked for on the command line, until the section list arrives.
    wanted_section: Option<String>,
}

/// Display order of the roll: what needs the teacher first, present students last.
pub fn group_rank(status: Option<MarkStatus>) -> u8 {
    match status {
        Some(MarkStatus::Review) => 0,
        Some(MarkStatus::Absent) => 1,
        None => 2,
        Some(MarkStatus::Late) => 3,
        Some(MarkStatus::Excused) => 4,
        Some(MarkStatus::Present) => 5,
    }
}

pub fn status_label(status: Option<MarkStatus>) -> &'static str {
    match status {
        Some(MarkStatus::Review) => "needs review",
        Some(status) => status.as_str(),
        None => "unmarked",
    }
}

impl App {
    pub fn new(recognition: bool, section: Option<String>) -> App {
        App {
            screen: Screen::Roster,
            recognition,
            vision: if recognition {
                VisionStatus::Loading
            } else {
                VisionStatus::Disabled
            },
            sections: Vec::new(),
            lessons_now: Vec::new(),
            section: None,
            session: SessionState::None,
            rows: Vec::new(),
            selected: 0,
            picker_selected: 0,
            enrol_selected: 0,
            enrol: EnrolPhase::Idle,
            capturing: false,
            last_capture: None,
            message: None,
            sync: None,
            waiting: 0,
            ticks: 0,
            quitting: false,
            queued: Vec::new(),
            store_seq: 0,
            wanted_section: section,
        }
    }

    /// The first jobs: the section list (which then picks the section).
    pub fn start(&mut self) -> Vec<Effect> {
        vec![Effect::Store(StoreJob::Sections)]
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.session {
            SessionState::Open(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the screen changes on a tick (a spinner turns).
    pub fn animating(&self) -> bool {
        self.capturing
            || matches!(self.enrol, EnrolPhase::Checking(_) | EnrolPhase::Keeping(_))
            || self.vision == VisionStatus::Loading
    }

    pub fn handle(&mut self, event: AppEvent) -> Vec<Effect> {
        let mut effects = match event {
            AppEvent::Key(key) => self.key(key),
            AppEvent::TerminalClosed => self.quit(),
            AppEvent::Resize => Vec::new(),
            AppEvent::Tick => {
                self.ticks += 1;
                Vec::new()
            }
            AppEvent::Sections { sections, now } => self.sections_arrived(sections, now),
            AppEvent::Roll { seq, roll, waiting } => self.roll_arrived(seq, roll, waiting),
            AppEvent::StoreFailed { seq, message } => {
                self.error(message);
                if seq >= self.store_seq && self.session == SessionState::Opening {
                    // The session could not be opened: nothing waits for it any more.
                    self.session = SessionState::None;
                    self.queued.clear();
                }
                Vec::new()
            }
            AppEvent::Vision(status) => {
                if let VisionStatus::Unavailable(reason) = &status {
                    // Said once, in full; the roll's border keeps a short reminder.
                    self.error(reason.clone());
                }
                self.vision = status;
                Vec::new()
            }
            AppEvent::Captured(result) => self.captured(result),
            AppEvent::EnrolChecked(result) => {
                if let EnrolPhase::Checking(student) = &self.enrol {
                    self.enrol = match result {
                        Ok(preview) => EnrolPhase::Preview(preview),
                        Err(reason) => EnrolPhase::Refused {
                            student: student.clone(),
                            reason,
                        },
                    };
                }
                Vec::new()
            }
            AppEvent::EnrolKept(result) => {
                self.enrol = EnrolPhase::Idle;
                match result {
                    Ok(text) => self.info(text),
                    Err(text) => self.error(text),
                }
                self.reload()
            }
            AppEvent::Sync(indicator) => {
                self.waiting = indicator.waiting;
                self.sync = Some(indicator);
                Vec::new()
            }
        };
        if self.quitting && self.queued.is_empty() {
            effects.extend(self.leave_roll());
            effects.push(Effect::Quit);
        }
        effects
    }

    fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            kind: MessageKind::Info,
            text: text.into(),
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            kind: MessageKind::Error,
            text: text.into(),
        });
    }

    fn next_seq(&mut self) -> u64 {
        self.store_seq += 1;
        self.store_seq
    }

    fn reload(&mut self) -> Vec<Effect> {
        let Some(section) = self.section.clone() else {
            return Vec::new();
        };
        let seq = self.next_seq();
        vec![Effect::Store(StoreJob::Load {
            seq,
            section,
            session: self.session_id().map(str::to_owned),
        })]
    }

    fn sections_arrived(&mut self, sections: Vec<SectionRecord>, now: Vec<String>) -> Vec<Effect> {
        self.sections = sections;
        self.lessons_now = now;
        if self.sections.is_empty() {
            self.error(
                "this box has no sections: import a roster with `edge-agent roster import DIR`",
            );
            return Vec::new();
        }
        let choice = match self.wanted_section.take() {
            Some(wanted) if self.sections.iter().any(|s| s.id == wanted) => Some(wanted),
            Some(wanted) => {
                self.error(format!("no active section {wanted:?}: pick one"));
                None
            }
            None if self.lessons_now.len() == 1 => Some(self.lessons_now[0].clone()),
            None => None,
        };
        match choice {
            Some(section) => self.choose_section(section),
            None => {
                if self.message.is_none() {
                    self.info(if self.lessons_now.is_empty() {
                        "no lesson in the timetable now: pick a section"
                    } else {
                        "several lessons now: pick a section"
                    });
                }
                self.picker_selected = self
                    .sections
                    .iter()
                    .position(|s| self.lessons_now.contains(&s.id))
                    .unwrap_or(0);
                self.screen = Screen::Picker;
                Vec::new()
            }
        }
    }

    fn choose_section(&mut self, section: String) -> Vec<Effect> {
        self.screen = Screen::Roster;
        if self.section.as_deref() == Some(section.as_str()) {
            return Vec::new();
        }
        let mut effects = self.leave_roll();
        self.section = Some(section);
        self.session = SessionState::None;
        self.rows.clear();
        self.selected = 0;
        self.last_capture = None;
        effects.extend(self.reload());
        effects
    }

    /// The teacher leaves the roll on screen: its session, if one is open, is closed.
    fn leave_roll(&mut self) -> Vec<Effect> {
        match self.session_id() {
            Some(session) => vec![Effect::Store(StoreJob::Close {
                session: session.to_owned(),
            })],
            None => Vec::new(),
        }
    }

    fn roll_arrived(&mut self, seq: u64, roll: Roll, waiting: usize) -> Vec<Effect> {
        self.waiting = waiting;
        if self.section.as_deref() != Some(roll.section.as_str()) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        match (&self.session, &roll.session) {
            (SessionState::Opening, Some(session)) => {
                self.session = SessionState::Open(session.clone());
                effects = self.flush_queue();
            }
            // The store found this lesson's session from before a restart: continue it.
            (SessionState::None, Some(session)) => {
                self.session = SessionState::Open(session.clone());
            }
            _ => {}
        }
        // An older reply than the last job sent would undo marks shown already: the newer one
        // is on its way.
        if seq >= self.store_seq {
            self.set_rows(roll.rows);
        }
        effects
    }

    fn set_rows(&mut self, mut rows: Vec<RollRow>) {
        rows.sort_by(|a, b| {
            (group_rank(a.status), &a.name, &a.student).cmp(&(
                group_rank(b.status),
                &b.name,
                &b.student,
            ))
        });
        self.rows = rows;
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.enrol_selected = self.enrol_selected.min(self.rows.len().saturating_sub(1));
    }

    fn captured(&mut self, result: Result<CaptureSummary, String>) -> Vec<Effect> {
        self.capturing = false;
        match result {
            Ok(summary) => {
                self.info(format!(
                    "capture done: {} frames in {:.1} s",
                    summary.n_frames,
                    summary.elapsed_ms as f64 / 1e3
                ));
                let mut effects = Vec::new();
                if self.session == SessionState::Opening {
                    self.session = SessionState::Open(summary.session.clone());
                    effects = self.flush_queue();
                }
                self.last_capture = Some(summary);
                effects.extend(self.reload());
                effects
            }
            Err(reason) => {
                self.error(format!("capture failed: {reason}"));
                if self.session == SessionState::Opening {
                    // The capture would have opened the session; acts queued meanwhile still
                    // need one.
                    self.queued.retain(|q| *q != Queued::Capture);
                    if self.queued.is_empty() {
                        self.session = SessionState::None;
                    } else if let Some(section) = self.section.clone() {
                        let seq = self.next_seq();
                        return vec![Effect::Store(StoreJob::Open { seq, section })];
                    }
                }
                Vec::new()
            }
        }
    }

    fn flush_queue(&mut self) -> Vec<Effect> {
        let Some(session) = self.session_id().map(str::to_owned) else {
            return Vec::new();
        };
        let queued = std::mem::take(&mut self.queued);
        let mut effects = Vec::new();
        for act in queued {
            effects.extend(match act {
                Queued::Mark(student, status) => self.mark_job(&session, student, status),
                Queued::Review(student, decision) => self.review_job(&session, student, decision),
                Queued::Capture => self.capture_job(Some(session.clone())),
            });
        }
        effects
    }

    fn mark_job(&mut self, session: &str, student: String, status: MarkStatus) -> Vec<Effect> {
        let seq = self.next_seq();
        vec![Effect::Store(StoreJob::Mark {
            seq,
            session: session.to_owned(),
            student,
            status,
        })]
    }

    fn review_job(
        &mut self,
        session: &str,
        student: String,
        decision: ReviewDecision,
    ) -> Vec<Effect> {
        let seq = self.next_seq();
        vec![Effect::Store(StoreJob::Review {
            seq,
            session: session.to_owned(),
            student,
            decision,
        })]
    }

    fn capture_job(&mut self, session: Option<String>) -> Vec<Effect> {
        let Some(section) = self.section.clone() else {
            return Vec::new();
        };
        self.capturing = true;
        self.info("capturing…");
        vec![Effect::Vision(VisionJob::Capture { section, session })]
    }

    /// Runs `act` with the session id, or queues it while the session is being opened (opening
    /// it first if nobody is).
    fn with_session(&mut self, act: Queued) -> Vec<Effect> {
        match self.session.clone() {
            SessionState::Open(session) => match act {
                Queued::Mark(student, status) => self.mark_job(&session, student, status),
                Queued::Review(student, decision) => self.review_job(&session, student, decision),
                Queued::Capture => self.capture_job(Some(session)),
            },
            SessionState::Opening => {
                self.queued.push(act);
                Vec::new()
            }
            SessionState::None => {
                self.session = SessionState::Opening;
                if act == Queued::Capture {
                    // The capture stores the new session itself, with its machine marks.
                    return self.capture_job(None);
                }
                self.queued.push(act);
                let Some(section) = self.section.clone() else {
                    return Vec::new();
                };
                let seq = self.next_seq();
                vec![Effect::Store(StoreJob::Open { seq, section })]
            }
        }
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c || (key.code == KeyCode::Char('q') && !self.busy_enrolling()) {
            return self.quit();
        }
        match self.screen {
            Screen::Roster => self.roster_key(key.code),
            Screen::Picker => self.picker_key(key.code),
            Screen::Enrol => self.enrol_key(key.code),
        }
    }

    fn busy_enrolling(&self) -> bool {
        self.screen == Screen::Enrol && matches!(self.enrol, EnrolPhase::Preview(_))
    }

    fn quit(&mut self) -> Vec<Effect> {
        if self.queued.is_empty() {
            let mut effects = self.leave_roll();
            effects.push(Effect::Quit);
            return effects;
        }
        // Marks the teacher made wait for the session id: send them first, then quit.
        self.quitting = true;
        self.info("saving marks, then quitting…");
        Vec::new()
    }

    fn roster_key(&mut self, code: KeyCode) -> Vec<Effect> {
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1))
            }
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => {
                self.selected = (self.selected + 10).min(self.rows.len().saturating_sub(1))
            }
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = self.rows.len().saturating_sub(1),
            KeyCode::Char('c') => return self.capture(),
            KeyCode::Char('p') => return self.mark(MarkStatus::Present),
            KeyCode::Char('a') => return self.mark(MarkStatus::Absent),
            KeyCode::Char('l') => return self.mark(MarkStatus::Late),
            KeyCode::Char('e') => return self.mark(MarkStatus::Excused),
            KeyCode::Char('y') => return self.review(ReviewDecision::Confirm),
            KeyCode::Char('n') => return self.review(ReviewDecision::Reject),
            KeyCode::Char('s') => {
                if self.capturing || !self.queued.is_empty() {
                    self.error("wait for the capture to finish before changing section");
                } else {
                    self.picker_selected = self
                        .section
                        .as_ref()
                        .and_then(|id| self.sections.iter().position(|s| &s.id == id))
                        .unwrap_or(0);
                    self.screen = Screen::Picker;
                }
            }
            KeyCode::Char('E') => {
                if !self.recognition {
                    self.error(
                        "face recognition is disabled at this school: enrolment is not available",
                    );
                } else if self.section.is_some() {
                    self.enrol_selected = self.selected;
                    self.enrol = EnrolPhase::Idle;
                    self.screen = Screen::Enrol;
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// Why a capture or enrolment cannot run now, if it cannot.
    fn vision_refusal(&self) -> Option<String> {
        match &self.vision {
            VisionStatus::Ready { .. } => None,
            VisionStatus::Loading => {
                Some("the camera and the models are still starting: try again in a moment".into())
            }
            VisionStatus::Unavailable(reason) => Some(reason.clone()),
            VisionStatus::Disabled => Some(
                "face recognition is disabled at this school: mark by hand with p/a/l/e".into(),
            ),
        }
    }

    fn capture(&mut self) -> Vec<Effect> {
        if self.section.is_none() {
            self.screen = Screen::Picker;
            return Vec::new();
        }
        if let Some(reason) = self.vision_refusal() {
            self.error(reason);
            return Vec::new();
        }
        if self.capturing || self.queued.contains(&Queued::Capture) {
            self.info("a capture is already running");
            return Vec::new();
        }
        self.with_session(Queued::Capture)
    }

    fn mark(&mut self, status: MarkStatus) -> Vec<Effect> {
        match self.show_teacher_mark(status, "") {
            Some(student) => self.with_session(Queued::Mark(student, status)),
            None => Vec::new(),
        }
    }

    /// Shows a teacher's mark on the selected row at once, ahead of the store (whose reply, or
    /// its error and a fresh roll, follows in milliseconds); returns the row's student.
    fn show_teacher_mark(&mut self, status: MarkStatus, note: &str) -> Option<String> {
        let row = self.rows.get_mut(self.selected)?;
        row.status = Some(status);
        row.source = Some(MarkSource::Teacher);
        row.candidates.clear();
        let (student, name) = (row.student.clone(), row.name.clone());
        self.info(format!("{name}: {}{note}", status.as_str()));
        let rows = std::mem::take(&mut self.rows);
        self.set_rows(rows);
        Some(student)
    }

    fn review(&mut self, decision: ReviewDecision) -> Vec<Effect> {
        let Some(row) = self.rows.get_mut(self.selected) else {
            return Vec::new();
        };
        if row.status != Some(MarkStatus::Review) {
            let text = format!(
                "{} is not waiting for review: use p/a/l/e to change the mark",
                row.name
            );
            self.error(text);
            return Vec::new();
        }
        match self.show_teacher_mark(decision.status(), " (review settled)") {
            Some(student) => self.with_session(Queued::Review(student, decision)),
            None => Vec::new(),
        }
    }

    fn picker_key(&mut self, code: KeyCode) -> Vec<Effect> {
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.picker_selected = self.picker_selected.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.picker_selected =
                    (self.picker_selected + 1).min(self.sections.len().saturating_sub(1))
            }
            KeyCode::Enter => {
                if let Some(section) = self.sections.get(self.picker_selected) {
                    let id = section.id.clone();
                    self.message = None;
                    return self.choose_section(id);
                }
            }
            KeyCode::Esc if self.section.is_some() => self.screen = Screen::Roster,
            _ => {}
        }
        Vec::new()
    }

    fn enrol_key(&mut self, code: KeyCode) -> Vec<Effect> {
        match (&self.enrol, code) {
            (EnrolPhase::Preview(_), KeyCode::Char('k') | KeyCode::Enter) => {
                if let EnrolPhase::Preview(preview) = &self.enrol {
                    self.enrol = EnrolPhase::Keeping(preview.student.clone());
                }
                vec![Effect::Vision(VisionJob::EnrolKeep)]
            }
            (EnrolPhase::Preview(_), KeyCode::Char('r') | KeyCode::Esc) => {
                self.enrol = EnrolPhase::Idle;
                self.info("photo discarded: nothing was stored");
                vec![Effect::Vision(VisionJob::EnrolDiscard)]
            }
            (EnrolPhase::Checking(_) | EnrolPhase::Keeping(_), _) => Vec::new(),
            (_, KeyCode::Esc) => {
                self.enrol = EnrolPhase::Idle;
                self.screen = Screen::Roster;
                Vec::new()
            }
            (_, KeyCode::Up | KeyCode::Char('k')) => {
                self.enrol_selected = self.enrol_selected.saturating_sub(1);
                self.enrol = EnrolPhase::Idle;
                Vec::new()
            }
            (_, KeyCode::Down | KeyCode::Char('j')) => {
                self.enrol_selected =
                    (self.enrol_selected + 1).min(self.rows.len().saturating_sub(1));
                self.enrol = EnrolPhase::Idle;
                Vec::new()
            }
            (_, KeyCode::Char('c') | KeyCode::Enter) => self.enrol_check(),
            _ => Vec::new(),
        }
    }

    fn enrol_check(&mut self) -> Vec<Effect> {
        let Some(row) = self.rows.get(self.enrol_selected) else {
            return Vec::new();
        };
        if row.consent != Consent::Granted {
            // Same rule as the CLI and `enrolment::check`, said before the camera is used.
            self.enrol = EnrolPhase::Refused {
                student: row.student.clone(),
                reason: format!(
                    "{} has no recorded consent: a guardian's consent must be recorded before enrolment",
                    row.name
                ),
            };
            return Vec::new();
        }
        if let Some(reason) = self.vision_refusal() {
            self.error(reason);
            return Vec::new();
        }
        if self.capturing {
            self.info("a capture is running: try again when it is done");
            return Vec::new();
        }
        let student = row.student.clone();
        self.enrol = EnrolPhase::Checking(student.clone());
        vec![Effect::Vision(VisionJob::EnrolCheck { student })]
    }
}
