//! The circuit breaker, as a pure function of the stored link state and the clock: after
//! `failures` consecutive calls that found the server unreachable it opens (a refusal is an
//! answer, and `Syncer` counts it as a success); after `cooldown` one probe call may go; a success
//! closes it, a failed probe opens it again. Stored, so a restarted agent does not hammer a server
//! that was down a minute ago.

use serde::Serialize;

use crate::config::SyncConfig;
use crate::store::SyncState;

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

#[derive(Clone, Copy, Debug)]
pub struct BreakerRule {
    pub failures: u32,
    pub cooldown_ms: i64,
}

impl BreakerRule {
    pub fn from_config(config: &SyncConfig) -> BreakerRule {
        BreakerRule {
            failures: config.breaker_failures,
            cooldown_ms: (config.breaker_cooldown_s * 1000.0) as i64,
        }
    }

    pub fn state(&self, link: &SyncState, now: i64) -> Breaker {
        match link.breaker_opened_at {
            None => Breaker::Closed,
            Some(opened) if now - opened >= self.cooldown_ms => Breaker::HalfOpen,
            Some(opened) => Breaker::Open {
                retry_in_ms: self.cooldown_ms - (now - opened),
            },
        }
    }

    pub fn record_success(&self, link: &mut SyncState) {
        link.consecutive_failures = 0;
        link.breaker_opened_at = None;
    }

    /// Counts a failed call; returns whether the breaker is (now) open.
    pub fn record_failure(&self, link: &mut SyncState, now: i64) -> bool {
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
        let mut link = SyncState::default();
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
        let mut link = SyncState::default();
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
}
