//! The box's circuit breaker: `shared_proto::breaker`'s rule (the server's ML client uses the same
//! one) with the box's settings. The link it reads is stored (`SyncState::breaker`), so a restarted
//! agent does not hammer a server that was down a minute ago; a refusal is an answer, and
//! `Syncer` counts it as a success.

pub use shared_proto::breaker::{Breaker, BreakerRule};

use crate::config::SyncConfig;

/// The rule of `[sync] breaker_failures` and `breaker_cooldown_s`.
pub fn rule_of(config: &SyncConfig) -> BreakerRule {
    BreakerRule::new(config.breaker_failures, config.breaker_cooldown_s)
}
