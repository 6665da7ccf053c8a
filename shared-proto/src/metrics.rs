//! The Prometheus text exposition both daemons write by hand (`/metrics` of the server and of the
//! box's ML service): latency histograms and label escaping, so the two pages read alike.

use std::fmt::Write as _;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One latency histogram over `LATENCY_BUCKETS_S`.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the overflow is `count` minus their sum.
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    sum_s: f64,
    count: u64,
}

impl Histogram {
    pub fn record(&mut self, seconds: f64) {
        if let Some(bucket) = LATENCY_BUCKETS_S.iter().position(|&le| seconds <= le) {
            self.buckets[bucket] += 1;
        }
        self.sum_s += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `_bucket`, `_sum` and `_count` lines of series `name` with `labels` (already escaped,
    /// `a="b",c="d"`, or empty).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS_S.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum_s);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_overflow_counts() {
        let mut h = Histogram::default();
        for s in [0.0005, 0.003, 0.003, 100.0] {
            h.record(s);
        }
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "stage=\"detect\"");
        assert!(out.contains("x_seconds_bucket{stage=\"detect\",le=\"0.001\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{stage=\"detect\",le=\"0.005\"} 3\n"));
        assert!(out.contains("x_seconds_bucket{stage=\"detect\",le=\"30\"} 3\n"));
        assert!(out.contains("x_seconds_bucket{stage=\"detect\",le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_seconds_count{stage=\"detect\"} 4\n"));
        let mut bare = String::new();
        h.write(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 4\n") && bare.contains("y_count 4\n"));
    }
}
