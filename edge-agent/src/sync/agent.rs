//! The background sync loop of the long-running agent: a thread of its own, with its own store
//! connection, that runs a cycle every `interval_s` (or at once when asked) and reports each one.
//! Nothing the teacher does waits for it. Only the holder of the box's sync lock (`lock`) runs
//! cycles: a loop that cannot take it reports the state its holder records in the store, and
//! passes requests for a cycle on to a daemon holder; it takes over once the lock is free.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::lock::{Holder, SyncLock};
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

/// What the loop reports after each tick: the cycle (when this loop ran one) and the box's sync
/// status, or why it could not sync at all (no store). No cycle with a device in the status: the
/// box is synced by another process (its state is in `status.link`); with none: not provisioned.
pub type Report = Result<(Option<CycleReport>, Status), String>;

/// Starts the loop for the box whose database is `database` and data folder `data_dir`, syncing
/// as the teacher screen. `on_report` runs on the sync thread after every tick.
pub fn spawn(
    database: PathBuf,
    data_dir: PathBuf,
    config: SyncConfig,
    on_report: impl FnMut(Report) + Send + 'static,
) -> SyncHandle {
    spawn_as(Holder::screen(), database, data_dir, config, on_report)
}

/// [`spawn`], holding the sync lock as `holder`.
pub fn spawn_as(
    holder: Holder,
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
            // The connection a loop that does not sync reads the holder's state through.
            let mut watching: Option<Store> = None;
            let mut lock: Option<SyncLock> = None;
            let mut asked = false;
            loop {
                if lock.is_none() {
                    lock = match SyncLock::try_acquire(&data_dir, &holder) {
                        Ok(lock) => lock,
                        Err(e) => {
                            on_report(Err(format!("cannot open the sync lock: {e}")));
                            None
                        }
                    };
                }
                if lock.is_some() {
                    watching = None;
                }
                let report = match lock {
                    Some(_) => run_once(&mut current, &database, &data_dir, &config),
                    None => watch_once(&mut watching, &database, &data_dir, &config, asked),
                };
                on_report(report);
                // Someone else syncs: look at its state often, so the screen follows it.
                let wait = match lock {
                    Some(_) => interval,
                    None => interval.min(WATCH_INTERVAL),
                };
                asked = match inbox.recv_timeout(wait) {
                    Ok(Command::SyncNow) => true,
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                // Requests that piled up during the cycle (a teacher marking a row of students)
                // make one cycle, not one each.
                loop {
                    match inbox.try_recv() {
                        Ok(Command::SyncNow) => asked = true,
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

/// How often a loop that does not hold the lock reads the holder's state.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// One tick of a loop that does not sync: asks a daemon holder for a cycle when the teacher did
/// something, then reads the state the holder records.
fn watch_once(
    watching: &mut Option<Store>,
    database: &std::path::Path,
    data_dir: &std::path::Path,
    config: &SyncConfig,
    asked: bool,
) -> Report {
    if asked && let Some(url) = super::lock::holder(data_dir).and_then(|h| h.url) {
        // Best effort: the daemon syncs on its own tick anyway.
        if let Err(e) = ask_for_cycle(&url) {
            tracing::debug!(error = %e, "cannot ask the daemon for a cycle");
        }
    }
    if watching.is_none() {
        *watching = Some(Store::open(database).map_err(|e| e.to_string())?);
    }
    let store = watching.as_ref().expect("opened above");
    Ok((None, status(store, config).map_err(|e| e.to_string())?))
}

/// `POST {url}/sync` on the daemon's local address.
fn ask_for_cycle(url: &str) -> Result<(), String> {
    super::install_crypto_provider();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(format!("{url}/sync"))
        .send()
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the daemon answered {}", response.status()))
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
