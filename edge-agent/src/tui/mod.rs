//! The teacher screen (ratatui): the section's roll, one key to take attendance, one key to fix a
//! mark, enrolment at the box. This module owns the terminal and the event loop; `app` is the
//! state machine, `ui` draws it, `worker` does the storage and vision work off this thread.
//!
//! One `mpsc` channel carries every `AppEvent`: keys and resizes from a terminal reader thread,
//! replies from the workers, and sync updates from whoever runs sync (`Tui::sync_updates`).

pub mod app;
pub mod ui;
mod worker;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyEventKind};

pub use app::{App, AppEvent, Effect};

use crate::capture::SourceSpec;
use crate::vision::PipelineOptions;

/// How often a running capture's spinner turns.
const TICK: Duration = Duration::from_millis(150);

/// The sync state the screen shows: set by the sync loop, shown in the header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncIndicator {
    /// `None`: not known yet (no attempt so far).
    pub online: Option<bool>,
    /// Outbox events not yet acknowledged by the server.
    pub waiting: usize,
    /// When the last push or pull succeeded, ms since the Unix epoch.
    pub last_sync_ms: Option<i64>,
    /// One line on the last attempt (e.g. the error of a failed push), may be empty.
    pub detail: String,
    /// How far the box's clock was from the server's at the last answer (`sync::clock`).
    pub clock_offset_ms: Option<i64>,
}

impl SyncIndicator {
    /// What the screen shows of one report of the background sync loop.
    pub fn from_report(report: &crate::sync::Report) -> SyncIndicator {
        match report {
            Err(error) => SyncIndicator {
                online: Some(false),
                detail: error.clone(),
                ..SyncIndicator::default()
            },
            Ok((None, status)) if status.device_id.is_none() => SyncIndicator {
                online: None,
                waiting: status.outbox.waiting,
                detail: "not provisioned".into(),
                ..SyncIndicator::default()
            },
            // The daemon syncs: what it recorded of its last attempt.
            Ok((None, status)) => SyncIndicator {
                online: status
                    .link
                    .last_attempt_at
                    .map(|_| status.link.breaker.consecutive_failures == 0),
                waiting: status.outbox.waiting,
                last_sync_ms: status.link.last_success_at(),
                clock_offset_ms: status.link.clock_offset_ms,
                detail: match (&status.link.last_error, status.outbox.rejected) {
                    (Some(error), _) if status.link.breaker.consecutive_failures > 0 => {
                        error.clone()
                    }
                    (_, 0) => String::new(),
                    (_, n) => format!("{n} events rejected: see edge-agent status"),
                },
            },
            Ok((Some(cycle), status)) => SyncIndicator {
                online: Some(cycle.succeeded()),
                waiting: status.outbox.waiting,
                last_sync_ms: status.link.last_success_at(),
                clock_offset_ms: status.link.clock_offset_ms,
                detail: match (&cycle.error, status.outbox.rejected) {
                    (Some(error), _) => error.clone(),
                    (None, 0) => String::new(),
                    (None, n) => format!("{n} events rejected: see edge-agent status"),
                },
            },
        }
    }
}

/// A handle for the sync loop to update the screen's indicator from any thread.
#[derive(Clone)]
pub struct SyncUpdates(Sender<AppEvent>);

impl SyncUpdates {
    /// Shows `indicator`; `false` once the screen has closed (the sender may stop then).
    pub fn send(&self, indicator: SyncIndicator) -> bool {
        self.0.send(AppEvent::Sync(indicator)).is_ok()
    }
}

pub struct TuiOptions {
    /// The box's database; it must exist (the CLI checks).
    pub database: PathBuf,
    /// `recognition` of `edge-agent.toml`: when off, the screen is a manual roll call.
    pub recognition: bool,
    pub pipeline: PipelineOptions,
    pub source: SourceSpec,
    /// The section to open; default: the lesson under way by the timetable, else a picker.
    pub section: Option<String>,
    /// Asks the sync loop for a cycle once a mark, review or capture is stored, so the server
    /// hears of it in seconds rather than at the next tick.
    pub sync: Option<crate::sync::SyncNudge>,
}

/// The teacher screen, before it runs: made first so the caller can take `sync_updates`.
pub struct Tui {
    events_tx: Sender<AppEvent>,
    events: Receiver<AppEvent>,
}

impl Default for Tui {
    fn default() -> Tui {
        Tui::new()
    }
}

impl Tui {
    pub fn new() -> Tui {
        let (events_tx, events) = mpsc::channel();
        Tui { events_tx, events }
    }

    pub fn sync_updates(&self) -> SyncUpdates {
        SyncUpdates(self.events_tx.clone())
    }

    /// Runs the screen until the teacher quits. The terminal is restored however it ends,
    /// a panic included (ratatui's init installs the hook).
    pub fn run(self, options: TuiOptions) -> Result<()> {
        let (store_tx, store_jobs) = mpsc::channel();
        let store_worker = worker::spawn_store_worker(
            options.database.clone(),
            self.events_tx.clone(),
            store_jobs,
        );
        let (vision_tx, vision_jobs) = mpsc::channel();
        let vision_worker = options.recognition.then(|| {
            worker::spawn_vision_worker(
                worker::VisionWorkerOptions {
                    database: options.database.clone(),
                    pipeline: options.pipeline.clone(),
                    source: options.source.clone(),
                },
                self.events_tx.clone(),
                vision_jobs,
            )
        });
        spawn_terminal_reader(self.events_tx.clone());

        let mut app = App::new(options.recognition, options.section.clone());
        let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
        let result = (|| -> Result<()> {
            let mut effects = app.start();
            loop {
                for effect in effects.drain(..) {
                    match effect {
                        // A worker that has stopped (the vision worker when capture is
                        // unavailable) takes no jobs; the app never sends it any then.
                        Effect::Store(job) => {
                            let _ = store_tx.send(job);
                        }
                        Effect::Vision(job) => {
                            let _ = vision_tx.send(job);
                        }
                        Effect::Quit => return Ok(()),
                    }
                }
                terminal.draw(|frame| ui::render(frame, &app))?;
                let event = loop {
                    match self.events.recv_timeout(TICK) {
                        Ok(event) => break event,
                        Err(RecvTimeoutError::Timeout) if app.animating() => break AppEvent::Tick,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                };
                // A roll follows every stored mark, review and capture.
                if let (AppEvent::Roll { .. }, Some(sync)) = (&event, &options.sync) {
                    sync.sync_now();
                }
                effects = app.handle(event);
            }
        })();
        ratatui::restore();
        // The store worker finishes the jobs already sent, so the last mark is on disk before
        // the program exits.
        drop(store_tx);
        let _ = store_worker.join();
        // The vision worker ends its job in flight (a capture, or loading the models): exiting
        // while ONNX Runtime runs on another thread tears the runtime down under it and the
        // process dies with SIGSEGV (seen when quitting while the models load).
        drop(vision_tx);
        if let Some(vision_worker) = vision_worker {
            let _ = vision_worker.join();
        }
        result
    }
}

/// Reads the terminal on its own thread: the loop then waits on one channel for everything.
fn spawn_terminal_reader(events: Sender<AppEvent>) {
    std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            loop {
                let app_event = match event::read() {
                    Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => AppEvent::Key(key),
                    Ok(Event::Resize(..)) => AppEvent::Resize,
                    Ok(_) => continue,
                    Err(e) => {
                        // Without a terminal nobody can press q: close the screen instead.
                        tracing::warn!("reading the terminal failed: {e}");
                        let _ = events.send(AppEvent::TerminalClosed);
                        return;
                    }
                };
                if events.send(app_event).is_err() {
                    return;
                }
            }
        })
        .expect("spawning a thread only fails when the system is out of resources");
}
