//! `edge-agent daemon`: the box as a service. It runs the sync loop (holding the box's sync lock,
//! so a teacher screen beside it shows its state instead of syncing), answers `/health`,
//! `/metrics`, `/status` and `POST /sync` on a loopback address, tells systemd when it is ready
//! and that it is alive (`Type=notify`, `WatchdogSec`), and runs the ML service too when
//! `[daemon] ml_service` asks.
//!
//! The loop runs on its own thread (`sync::spawn_as`); the HTTP side is a small tokio runtime.
//! The daemon is alive while its loop ticks: a loop stuck longer than `STALE` stops the watchdog
//! pings (systemd restarts the daemon) and turns `/health` to 503.

mod metrics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sd_notify::NotifyState;
use serde::Serialize;

use crate::config::{Config, DATABASE_FILE};
use crate::store::Store;
use crate::sync::lock::Holder;
use crate::sync::{Report, Status, SyncNudge};

/// Longest a loop may go without a tick, beyond its interval, before the daemon counts as stuck:
/// a cycle's calls time out long before (each `timeout_s`, a few retries).
const STALE: Duration = Duration::from_secs(300);

/// What the ML service needs to run inside the daemon (prepared by `cli::serve`).
pub type MlService = (crate::api::ServeOptions, Vec<crate::vision::Pipeline>);

/// Runs the daemon until SIGTERM or Ctrl-C.
pub fn run(data_dir: &Path, config: Config, ml: Option<MlService>) -> Result<()> {
    // Two async threads: they answer a handful of local requests (and the ML service's, whose
    // inference has threads of its own).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("daemon")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(data_dir.to_owned(), config, ml))
}

async fn serve(data_dir: PathBuf, config: Config, ml: Option<MlService>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.daemon.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.daemon.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let state = Arc::new(Daemon {
        interval: Duration::from_secs_f64(config.sync.interval_s),
        started: Instant::now(),
        ticks: Mutex::new(Ticks::default()),
        nudge: Mutex::new(None),
        captures: Mutex::new(metrics::Captures::default()),
        stats_store: Mutex::new(None),
        data_dir: data_dir.clone(),
    });
    let reporter = Arc::clone(&state);
    let handle = crate::sync::spawn_as(
        Holder::daemon(url.clone()),
        data_dir.join(DATABASE_FILE),
        data_dir.clone(),
        config.sync.clone(),
        move |report| reporter.record(report),
    );
    *state.nudge.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.nudge());
    let ml_task = ml.map(|(options, pipelines)| {
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve(options, pipelines).await {
                tracing::error!(error = %e, "the ML service stopped");
            }
        })
    });
    let app = axum::Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/sync", post(sync_now))
        .with_state(Arc::clone(&state));
    println!("listening on {addr}");
    tracing::info!(%addr, data_dir = %data_dir.display(), "daemon ready");
    let _ = sd_notify::notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("syncing; health at {url}/health")),
    ]);
    let watchdog = tokio::spawn(watchdog(Arc::clone(&state)));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(crate::api::shutdown())
        .await
        .context("the daemon's HTTP side stopped");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    watchdog.abort();
    if let Some(task) = ml_task {
        task.abort();
    }
    // The cycle in flight ends before the process does: its events are acknowledged or not, never
    // half-recorded.
    let _ = tokio::task::spawn_blocking(move || handle.stop()).await;
    tracing::info!("daemon stopped");
    served
}

/// What the loop told the daemon.
#[derive(Default)]
struct Ticks {
    last: Option<(Instant, Report)>,
    cycles: u64,
    failed_cycles: u64,
    /// The last error, and when (ms since the epoch).
    last_error: Option<(i64, String)>,
}

struct Daemon {
    interval: Duration,
    started: Instant,
    ticks: Mutex<Ticks>,
    nudge: Mutex<Option<SyncNudge>>,
    captures: Mutex<metrics::Captures>,
    /// The connection `/metrics` reads the captures' timings through, opened at the first scrape.
    stats_store: Mutex<Option<Store>>,
    data_dir: PathBuf,
}

impl Daemon {
    fn record(&self, report: Report) {
        let mut ticks = self.ticks.lock().unwrap_or_else(|p| p.into_inner());
        match &report {
            Ok((Some(cycle), _)) => {
                ticks.cycles += 1;
                if let Some(error) = &cycle.error {
                    ticks.failed_cycles += 1;
                    ticks.last_error = Some((crate::store::now_ms(), error.clone()));
                }
            }
            Ok((None, _)) => {}
            Err(error) => {
                ticks.failed_cycles += 1;
                ticks.last_error = Some((crate::store::now_ms(), error.clone()));
            }
        }
        ticks.last = Some((Instant::now(), report));
    }

    /// Whether the loop ticked lately (or the daemon has only just started).
    fn alive(&self) -> bool {
        let ticks = self.ticks.lock().unwrap_or_else(|p| p.into_inner());
        let since = ticks
            .last
            .as_ref()
            .map_or_else(|| self.started.elapsed(), |(at, _)| at.elapsed());
        since <= self.interval + STALE
    }

    fn status(&self) -> Option<Status> {
        let ticks = self.ticks.lock().unwrap_or_else(|p| p.into_inner());
        match &ticks.last {
            Some((_, Ok((_, status)))) => Some(status.clone()),
            _ => None,
        }
    }
}

/// Pings systemd's watchdog at half its period while the loop is alive.
async fn watchdog(state: Arc<Daemon>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut every = tokio::time::interval(period / 2);
    loop {
        every.tick().await;
        if state.alive() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("the sync loop has not ticked for too long: no watchdog ping");
        }
    }
}

/// `/health`'s answer.
#[derive(Serialize)]
struct Health {
    /// `ok`, `degraded` (the server is not reached, or events were rejected) or `stuck` (503).
    status: &'static str,
    /// Who syncs: `daemon` (this process), or `screen` when a screen held the lock first.
    syncing: String,
    provisioned: bool,
    breaker: Option<&'static str>,
    outbox_waiting: Option<usize>,
    outbox_rejected: Option<usize>,
    /// Seconds since the last successful push or pull.
    sync_lag_s: Option<i64>,
    last_error: Option<String>,
    uptime_s: u64,
}

async fn health(State(state): State<Arc<Daemon>>) -> Response {
    let status = state.status();
    let last_error = state
        .ticks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .last_error
        .clone()
        .map(|(_, e)| e);
    let alive = state.alive();
    let degraded = status
        .as_ref()
        .is_none_or(|s| s.link.breaker.consecutive_failures > 0 || s.outbox.rejected > 0);
    // Reading the lock's holder touches the file, and waits up to 50 ms for a new holder's name
    // (`lock::holder`): off the async workers, which serve the screen's `/sync` meanwhile.
    let data_dir = state.data_dir.clone();
    let holder = tokio::task::spawn_blocking(move || crate::sync::lock::holder(&data_dir))
        .await
        .ok()
        .flatten()
        .map_or_else(|| "nobody".to_owned(), |h| h.by);
    let health = Health {
        status: match (alive, degraded) {
            (false, _) => "stuck",
            (true, true) => "degraded",
            (true, false) => "ok",
        },
        syncing: holder,
        provisioned: status.as_ref().is_some_and(|s| s.device_id.is_some()),
        breaker: status.as_ref().map(|s| s.breaker.as_str()),
        outbox_waiting: status.as_ref().map(|s| s.outbox.waiting),
        outbox_rejected: status.as_ref().map(|s| s.outbox.rejected),
        sync_lag_s: status.as_ref().and_then(metrics::sync_lag_s),
        last_error,
        uptime_s: state.started.elapsed().as_secs(),
    };
    let code = if alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health)).into_response()
}

async fn metrics(State(state): State<Arc<Daemon>>) -> Response {
    let after = state
        .captures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .last_id();
    let reader = Arc::clone(&state);
    let fresh = tokio::task::spawn_blocking(move || {
        let mut held = reader.stats_store.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(Store::open(&reader.data_dir.join(DATABASE_FILE))?);
        }
        held.as_ref()
            .expect("opened above")
            .capture_stats_after(after)
    })
    .await;
    let text = {
        let mut captures = state.captures.lock().unwrap_or_else(|p| p.into_inner());
        match fresh {
            Ok(Ok(rows)) => captures.take(rows),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the captures' timings"),
            Err(e) => tracing::warn!(error = %e, "cannot read the captures' timings"),
        }
        // `status` and `alive` take the ticks' lock themselves: read before holding it.
        let (status, alive) = (state.status(), state.alive());
        let ticks = state.ticks.lock().unwrap_or_else(|p| p.into_inner());
        metrics::render(&metrics::Snapshot {
            status: status.as_ref(),
            cycles: ticks.cycles,
            failed_cycles: ticks.failed_cycles,
            last_error_ms: ticks.last_error.as_ref().map(|(at, _)| *at),
            alive,
            captures: &captures,
        })
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(state): State<Arc<Daemon>>) -> Response {
    match state.status() {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sync status yet").into_response(),
    }
}

/// `POST /sync`: a cycle now (the screen asks after each mark).
async fn sync_now(State(state): State<Arc<Daemon>>) -> StatusCode {
    if let Some(nudge) = &*state.nudge.lock().unwrap_or_else(|p| p.into_inner()) {
        nudge.sync_now();
    }
    StatusCode::ACCEPTED
}
