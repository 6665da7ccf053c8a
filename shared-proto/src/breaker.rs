//! The circuit breaker, as a pure function of a link's recorded failures and the clock: after
//! `failures` consecutive calls that found the other side unreachable it opens; after `cooldown`
//! one probe call may go; a success closes it, a failed probe opens it again.
//!
//! One rule for both callers: the box's sync client (which stores its `Link`, so a restarted box
//! does not hammer a server that was down a minute ago) and the server's ML client (which keeps it
//! in memory). What counts as a failure is the caller's: an answer that refuses a request is an
//! answer, and counts as a success.

use serde::{Deserialize, Serialize};

/// What the breaker reads: the failures in a row and when it opened. The field names are the
/// box's status JSON and store columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub consecutive_failures: u32,
    pub breaker_opened_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Breaker {
    /// Calls go through, with retries.
    Closed,
    /// Cooldown over: one call goes, without retries.
    HalfOpen,
    /// No calls until `retry_in_ms` has passed.
    Open { retry_in_ms: i64 },
}

impl Breaker {
    pub fn as_str(&self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::HalfOpen => "half_open",
            Breaker::Open { .. } => "open",
        }
    }

    /// While open: whole seconds until the next probe, rounded up.
    pub fn retry_in_s(&self) -> Option<i64> {
        match self {
            Breaker::Open { retry_in_ms } => Some((retry_in_ms + 999) / 1000),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerRule {
    pub failures: u32,
    pub cooldown_ms: i64,
}

impl BreakerRule {
    /// `failures` in a row open it; `cooldown_s` later one probe may go.
    pub fn new(failures: u32, cooldown_s: f64) -> BreakerRule {
        BreakerRule {
            failures: failures.max(1),
            cooldown_ms: (cooldown_s.max(0.0) * 1000.0) as i64,
        }
    }

    pub fn state(&self, link: &Link, now: i64) -> Breaker {
        match link.breaker_opened_at {
            None => Breaker::Closed,
            Some(opened) if now - opened >= self.cooldown_ms => Breaker::HalfOpen,
            Some(opened) => Breaker::Open {
                retry_in_ms: self.cooldown_ms - (now - opened),
            },
        }
    }

    pub fn record_success(&self, link: &mut Link) {
        link.consecutive_failures = 0;
        link.breaker_opened_at = None;
    }

    /// Counts a failed call; returns whether the breaker is (now) open.
    pub fn record_failure(&self, link: &mut Link, now: i64) -> bool {
        let was_probing = link.breaker_opened_at.is_some();
        link.consecutive_failures = link.consecutive_failures.saturating_add(1);
        if was_probing || link.consecutive_failures >= self.failures {
            link.breaker_opened_at = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: BreakerRule = BreakerRule {
        failures: 5,
        cooldown_ms: 60_000,
    };

    #[test]
    fn opens_after_five_failures_probes_after_a_minute_and_closes_on_success() {
        let mut link = Link::default();
        for i in 0..4 {
            assert!(!RULE.record_failure(&mut link, i), "failure {i}");
            assert_eq!(RULE.state(&link, i), Breaker::Closed);
        }
        assert!(RULE.record_failure(&mut link, 1000));
        assert_eq!(
            RULE.state(&link, 31_000),
            Breaker::Open {
                retry_in_ms: 30_000
            }
        );
        assert_eq!(RULE.state(&link, 61_000), Breaker::HalfOpen);
        RULE.record_success(&mut link);
        assert_eq!(RULE.state(&link, 61_000), Breaker::Closed);
        assert_eq!(link.consecutive_failures, 0);
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_minute() {
        let mut link = Link::default();
        for i in 0..5 {
            RULE.record_failure(&mut link, i);
        }
        assert_eq!(RULE.state(&link, 70_000), Breaker::HalfOpen);
        assert!(RULE.record_failure(&mut link, 70_000));
        assert_eq!(
            RULE.state(&link, 70_001),
            Breaker::Open {
                retry_in_ms: 59_999
            }
        );
    }

    #[test]
    fn a_rule_of_zero_failures_still_needs_one() {
        assert_eq!(BreakerRule::new(0, 1.5).failures, 1);
        assert_eq!(BreakerRule::new(5, 1.5).cooldown_ms, 1500);
    }
}
