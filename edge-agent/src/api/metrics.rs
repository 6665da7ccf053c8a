//! The service's `/metrics` (Prometheus text): requests by route and status, a latency histogram
//! per stage of inference (p50/p95/p99 are read from them), the queue's depth and capacity, and
//! requests refused because the queue was full.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use shared_proto::metrics::{Histogram, escape_label};

/// Stages of a request, each with its own latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Waiting for a free pipeline.
    Queue,
    /// Decoding the image (after its header was checked).
    Decode,
    /// Detection, alignment and quality of every face.
    Detect,
    /// The liveness model, one run per face (detect-faces).
    Liveness,
    /// The embedder, on the faces used.
    Embed,
    /// Detection, embedding and one-to-one matching of a frame (batch-match).
    MatchFrame,
    /// A whole request, from arrival to answer.
    Request,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::Liveness => "liveness",
            Stage::Embed => "embed",
            Stage::MatchFrame => "match_frame",
            Stage::Request => "request",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    stages: Mutex<BTreeMap<(String, Stage), Histogram>>,
    rejected_busy: AtomicU64,
    rejected_unauthorized: AtomicU64,
    gallery_sent: AtomicU64,
    gallery_reused: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((route.to_owned(), status)).or_default() += 1;
    }

    pub fn time(&self, route: &str, stage: Stage, seconds: f64) {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages
            .entry((route.to_owned(), stage))
            .or_default()
            .record(seconds);
    }

    pub fn count_busy(&self) {
        self.rejected_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// An `enrol-faces` call's gallery: `sent` templates in the call, `reused` from the kept
    /// gallery it named.
    pub fn count_gallery(&self, sent: usize, reused: usize) {
        self.gallery_sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.gallery_reused
            .fetch_add(reused as u64, Ordering::Relaxed);
    }

    pub fn count_unauthorized(&self) {
        self.rejected_unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, queue_depth: usize, queue_capacity: usize, pipelines: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP rollcall_ml_requests_total Requests by route and status.\n");
        out.push_str("# TYPE rollcall_ml_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "rollcall_ml_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape_label(route)
            );
        }
        out.push_str(
            "# HELP rollcall_ml_stage_seconds Time per stage of a request, by route and stage.\n",
        );
        out.push_str("# TYPE rollcall_ml_stage_seconds histogram\n");
        for ((route, stage), histogram) in
            self.stages.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let labels = format!(
                "route=\"{}\",stage=\"{}\"",
                escape_label(route),
                stage.label()
            );
            histogram.write(&mut out, "rollcall_ml_stage_seconds", &labels);
        }
        let gauges = [
            (
                "rollcall_ml_queue_depth",
                "Requests waiting for a pipeline.",
                queue_depth as u64,
            ),
            (
                "rollcall_ml_queue_capacity",
                "Requests that may wait before more are refused.",
                queue_capacity as u64,
            ),
            (
                "rollcall_ml_pipelines",
                "Pipelines inferring at once.",
                pipelines as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "rollcall_ml_rejected_busy_total",
                "Requests refused with 503 because the queue was full.",
                &self.rejected_busy,
            ),
            (
                "rollcall_ml_rejected_unauthorized_total",
                "Requests refused with 401 (no or a wrong API key).",
                &self.rejected_unauthorized,
            ),
            (
                "rollcall_ml_gallery_templates_sent_total",
                "Gallery templates sent with enrol-faces calls.",
                &self.gallery_sent,
            ),
            (
                "rollcall_ml_gallery_templates_reused_total",
                "Gallery templates enrol-faces calls named by a kept gallery instead of sending them.",
                &self.gallery_reused,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}
