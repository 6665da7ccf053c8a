//! The background sync loop of the long-running agent: a thread of its own, with its own store
//! connection, that runs a cycle every `interval_s` (or at once when asked) and reports each one.
//! Nothing the teacher does waits for it.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{CycleReport, Status, Syncer, status, syncer};
use crate::config::SyncConfig;
use crate::store::Store;

enum Command {
    SyncNow,
    Stop,
}

/// Controls a running sync loop; dropping it stops the loop after the cycle in flight.
pub struct SyncHandle {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// Asks a running loop for a cycle now; cheap to clone and call often: requests that arrive
/// while a cycle runs make one more cycle, not one each.
#[derive(Clone)]
pub struct SyncNudge(mpsc::Sender<Command>);

impl SyncNudge {
    pub fn sync_now(&self) {
        let _ = self.0.send(Command::SyncNow);
    }
}

impl SyncHandle {
    /// A handle that only asks for cycles, for the screen's event loop.
    pub fn nudge(&self) -> SyncNudge {
        SyncNudge(self.commands.clone())
    }

    /// Stops the loop and waits for the cycle in flight, if any, to end.
    pub fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// What the loop reports after each cycle: the cycle (when one ran) and the box's sync status,
/// or why it could not sync at all (not provisioned, no store).
pub type Report = Result<(Option<CycleReport>, Status), String>;

/// Starts the loop for the box whose database is `database` and data folder `data_dir`.
/// `on_report` runs on the sync thread after every cycle.
pub fn spawn(
    database: PathBuf,
    data_dir: PathBuf,
    config: SyncConfig,
    mut on_report: impl FnMut(Report) + Send + 'static,
) -> SyncHandle {
    let (commands, inbox) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            let interval = Duration::from_secs_f64(config.interval_s);
            let mut current: Option<Syncer> = None;
            loop {
                on_report(run_once(&mut current, &database, &data_dir, &config));
                match inbox.recv_timeout(interval) {
                    Ok(Command::SyncNow) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                // Requests that piled up during the cycle (a teacher marking a row of students)
                // make one cycle, not one each.
                loop {
                    match inbox.try_recv() {
                        Ok(Command::SyncNow) => {}
                        Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
            }
        })
        .expect("the OS can start a thread");
    SyncHandle {
        commands,
        thread: Some(thread),
    }
}

/// One tick: builds the syncer on first use (or after provisioning), runs a cycle, reads status.
fn run_once(
    current: &mut Option<Syncer>,
    database: &std::path::Path,
    data_dir: &std::path::Path,
    config: &SyncConfig,
) -> Report {
    if current.is_none() {
        let store = Store::open(database).map_err(|e| e.to_string())?;
        // Not provisioned yet (no identity, or no token): report, and look again next tick.
        let provisioned = store.device().map_err(|e| e.to_string())?.is_some()
            && data_dir.join(super::TOKEN_FILE).exists();
        if !provisioned {
            return Ok((None, status(&store, config).map_err(|e| e.to_string())?));
        }
        *current = Some(syncer(data_dir, store, config).map_err(|e| e.to_string())?);
    }
    let syncer = current.as_mut().expect("built above");
    let report = syncer.cycle().map_err(|e| e.to_string())?;
    let status = status(syncer.store(), config).map_err(|e| e.to_string())?;
    Ok((Some(report), status))
}
