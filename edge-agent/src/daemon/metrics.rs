//! The daemon's `/metrics` (Prometheus text, written as the server's and the ML service's are,
//! with `shared_proto::metrics`): the sync link (outbox depth, lag, breaker, cycles, last error)
//! from the loop's last status, and the captures' stage latencies and faces, read from the store
//! where whoever captured (the screen, the CLI) left them.

use std::fmt::Write as _;

use shared_proto::metrics::{Histogram, escape_label};

use crate::store::CaptureStats;
use crate::sync::{Breaker, Status};

/// Capture stages, as labelled.
const STAGES: [&str; 6] = ["gallery", "frames", "school", "decide", "record", "total"];

/// Captures seen since the daemon started, folded into histograms.
#[derive(Default)]
pub struct Captures {
    last_id: i64,
    stages: [Histogram; STAGES.len()],
    captures: u64,
    faces: u64,
    frames: u64,
}

impl Captures {
    /// The last capture row folded in.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Folds in captures newer than the last (rows from before the daemon started count too: a
    /// daemon restarted mid-day still shows the morning's).
    pub fn take(&mut self, rows: Vec<(i64, CaptureStats)>) {
        for (id, stats) in rows {
            if id <= self.last_id {
                continue;
            }
            self.last_id = id;
            let ms = [
                stats.gallery_ms,
                stats.frames_ms,
                stats.school_ms,
                stats.decide_ms,
                stats.record_ms,
                stats.total_ms(),
            ];
            for (histogram, ms) in self.stages.iter_mut().zip(ms) {
                histogram.record(ms / 1e3);
            }
            self.captures += 1;
            self.faces += stats.faces as u64;
            self.frames += stats.frames as u64;
        }
    }
}

/// Seconds since the last successful push or pull; `None` before the first.
pub fn sync_lag_s(status: &Status) -> Option<i64> {
    let last = status.link.last_success_at()?;
    Some(((crate::store::now_ms() - last) / 1000).max(0))
}

pub struct Snapshot<'a> {
    pub status: Option<&'a Status>,
    pub cycles: u64,
    pub failed_cycles: u64,
    pub last_error_ms: Option<i64>,
    pub alive: bool,
    pub captures: &'a Captures,
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "rollcall_edge_up",
        "1 while the sync loop ticks; 0 when it is stuck.",
        u8::from(s.alive).to_string(),
    );
    if let Some(status) = s.status {
        gauge(
            "rollcall_edge_provisioned",
            "1 once the box has joined its school's server.",
            u8::from(status.device_id.is_some()).to_string(),
        );
        gauge(
            "rollcall_edge_outbox_waiting",
            "Events recorded on the box and not yet acknowledged by the server.",
            status.outbox.waiting.to_string(),
        );
        gauge(
            "rollcall_edge_outbox_rejected",
            "Events the server rejected (see edge-agent status).",
            status.outbox.rejected.to_string(),
        );
        if let Some(lag) = sync_lag_s(status) {
            gauge(
                "rollcall_edge_sync_lag_seconds",
                "Seconds since the last successful push or pull.",
                lag.to_string(),
            );
        }
        gauge(
            "rollcall_edge_sync_consecutive_failures",
            "Failed calls to the server in a row.",
            status.link.breaker.consecutive_failures.to_string(),
        );
        if let Some(offset) = status.link.clock_offset_ms {
            let help = format!(
                "How far the box's clock was ahead of the server's at its last answer (behind when negative); over {} s in either direction, marks carry the wrong time.",
                shared_proto::clock::CLOCK_FAIL_MS / 1000
            );
            gauge(
                "rollcall_edge_clock_offset_seconds",
                &help,
                format!("{:.3}", offset as f64 / 1e3),
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP rollcall_edge_breaker 1 for the circuit breaker's state now.\n# TYPE rollcall_edge_breaker gauge"
    );
    let now = s.status.map(|st| st.breaker.as_str());
    let states = [
        Breaker::Closed,
        Breaker::HalfOpen,
        Breaker::Open { retry_in_ms: 0 },
    ];
    for state in states.map(|b| b.as_str()) {
        let _ = writeln!(
            out,
            "rollcall_edge_breaker{{state=\"{state}\"}} {}",
            u8::from(now == Some(state))
        );
    }
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "rollcall_edge_sync_cycles_total",
        "Sync cycles this daemon ran.",
        s.cycles,
    );
    counter(
        "rollcall_edge_sync_failed_cycles_total",
        "Sync cycles that stopped on an error.",
        s.failed_cycles,
    );
    counter(
        "rollcall_edge_captures_total",
        "Captures of the box (by any process) since the daemon started.",
        s.captures.captures,
    );
    counter(
        "rollcall_edge_capture_faces_total",
        "Faces detected in those captures.",
        s.captures.faces,
    );
    counter(
        "rollcall_edge_capture_frames_total",
        "Frames of those captures.",
        s.captures.frames,
    );
    if let Some(at) = s.last_error_ms {
        let _ = writeln!(
            out,
            "# HELP rollcall_edge_last_error_timestamp_seconds When the last sync error happened.\n# TYPE rollcall_edge_last_error_timestamp_seconds gauge\nrollcall_edge_last_error_timestamp_seconds {}",
            at / 1000
        );
    }
    let _ = writeln!(
        out,
        "# HELP rollcall_edge_capture_stage_seconds Time per capture stage.\n# TYPE rollcall_edge_capture_stage_seconds histogram"
    );
    for (stage, histogram) in STAGES.iter().zip(&s.captures.stages) {
        histogram.write(
            &mut out,
            "rollcall_edge_capture_stage_seconds",
            &format!("stage=\"{}\"", escape_label(stage)),
        );
    }
    out
}
