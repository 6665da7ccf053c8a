//! One sync cycle: push the outbox in batches, then pull the school's changes page by page. Each
//! call has the configured timeout; a failed call is retried after 1 s, 2 s, 4 s (plus jitter), at
//! most that many retries a cycle, and whatever is left waits for the next cycle. Every call of a
//! cycle carries the cycle's request id, which the server logs too.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::Serialize;
use shared_proto::sync::{BoxReport, Event};

use super::SyncError;
use super::breaker::{Breaker, BreakerRule};
use super::client::{CallError, Client};
use super::wire::{Outgoing, to_wire};
use crate::config::SyncConfig;
use crate::store::{DeviceIdentity, Store, SyncState, now_ms};

/// The longest `Retry-After` a cycle waits out itself; a longer one ends the cycle, and the next
/// cycle comes at the sync interval.
const MAX_RETRY_AFTER_WAIT_MS: u64 = 10_000;

/// Rejection reasons a cycle report carries; the rest are in the outbox with theirs.
pub const SHOWN_REJECTIONS: usize = 5;

/// What one cycle did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CycleReport {
    pub request_id: String,
    /// Events the server acknowledged.
    pub pushed: usize,
    /// Events the server (or the box itself) refused; kept with their reasons.
    pub rejected: usize,
    /// The reasons of the first `SHOWN_REJECTIONS` of them, as `code: reason`, for the person
    /// at the box (an event refused for a clock far ahead says to set the clock).
    pub rejections: Vec<String>,
    /// Changes applied from the server.
    pub pulled: usize,
    pub templates_added: usize,
    pub templates_purged: usize,
    pub retries: usize,
    /// Set when the cycle ended early; what is left waits for the next cycle.
    pub error: Option<String>,
    /// Set when the breaker kept the cycle from calling the server at all.
    pub breaker_open_ms: Option<i64>,
    /// How far the box's clock was ahead of the server's (behind when negative), when an
    /// answer said (`sync::clock`).
    pub clock_offset_ms: Option<i64>,
}

impl CycleReport {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.breaker_open_ms.is_none()
    }
}

/// Runs cycles for one box: its store connection, its HTTP client, its rules.
pub struct Syncer {
    store: Store,
    client: Client,
    device: DeviceIdentity,
    config: SyncConfig,
    rule: BreakerRule,
}

/// Why a cycle stopped before its end.
enum Stop {
    Call(CallError),
    Store(SyncError),
}

impl From<crate::store::StoreError> for Stop {
    fn from(e: crate::store::StoreError) -> Stop {
        Stop::Store(e.into())
    }
}

/// A cycle's retry budget and breaker bookkeeping.
struct Attempts {
    retries_left: usize,
    retries_used: usize,
    probing: bool,
}

impl Syncer {
    pub fn new(store: Store, client: Client, device: DeviceIdentity, config: SyncConfig) -> Syncer {
        Syncer {
            rule: super::breaker::rule_of(&config),
            store,
            client,
            device,
            config,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One cycle; never returns early with an error: everything that went wrong is in the report
    /// and in the stored link state.
    pub fn cycle(&mut self) -> Result<CycleReport, SyncError> {
        let mut report = CycleReport {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..CycleReport::default()
        };
        let mut link = self.store.sync_state()?;
        let now = now_ms();
        let probing = match self.rule.state(&link.breaker, now) {
            Breaker::Open { retry_in_ms } => {
                report.breaker_open_ms = Some(retry_in_ms);
                return Ok(report);
            }
            Breaker::HalfOpen => true,
            Breaker::Closed => false,
        };
        link.last_attempt_at = Some(now);
        let mut attempts = Attempts {
            retries_left: if probing {
                0
            } else {
                self.config.retry_delays_ms.len()
            },
            retries_used: 0,
            probing,
        };
        let span = tracing::info_span!("sync", request_id = %report.request_id);
        let _entered = span.enter();
        let outcome = self
            .push_all(&mut link, &mut attempts, &mut report)
            .and_then(|()| self.pull_all(&mut link, &mut attempts, &mut report));
        report.retries = attempts.retries_used;
        if let Some(reading) = self.client.take_clock() {
            report.clock_offset_ms = Some(reading.offset_ms());
            link.clock_offset_ms = Some(reading.offset_ms());
            link.clock_read_at = Some(reading.received_ms);
            if super::clock::verdict(reading.offset_ms()) == super::clock::ClockVerdict::Fail {
                tracing::warn!(
                    offset_ms = reading.offset_ms(),
                    "this box's clock is {}: {}",
                    super::clock::describe(reading.offset_ms()),
                    super::clock::CLOCK_FIX
                );
            }
        }
        match outcome {
            Ok(()) => {
                link.last_error = None;
                tracing::info!(
                    pushed = report.pushed,
                    rejected = report.rejected,
                    pulled = report.pulled,
                    "sync cycle done"
                );
            }
            Err(Stop::Call(e)) => {
                tracing::warn!(error = %e, "sync cycle stopped; the rest waits for the next cycle");
                link.last_error = Some(e.to_string());
                report.error = Some(e.to_string());
            }
            Err(Stop::Store(e)) => {
                tracing::error!(error = %e, "sync cycle stopped by the local store");
                link.last_error = Some(e.to_string());
                report.error = Some(e.to_string());
            }
        }
        self.store.set_sync_state(&link)?;
        Ok(report)
    }

    /// Runs `call` under the cycle's retry budget and the breaker.
    fn call<T>(
        &self,
        link: &mut SyncState,
        attempts: &mut Attempts,
        call: impl Fn(&Client) -> Result<T, CallError>,
    ) -> Result<T, Stop> {
        loop {
            let wait_ms = match call(&self.client) {
                Ok(value) => {
                    self.rule.record_success(&mut link.breaker);
                    attempts.probing = false;
                    return Ok(value);
                }
                // The server answered and said no (a revoked token, a request too large): it is
                // up, so the breaker, which is for a server that is down, counts a success.
                // Retrying would get the same answer; the refusal is the cycle's error.
                Err(e @ CallError::Refused { .. }) => {
                    self.rule.record_success(&mut link.breaker);
                    attempts.probing = false;
                    return Err(Stop::Call(e));
                }
                // Up, and asked us to come back later: wait that long within the cycle if it is
                // short and a retry is left, else leave it to a later cycle. Either way the
                // breaker, which is for a server that is down, counts a success.
                Err(e @ CallError::Busy { retry_after_s, .. }) => {
                    self.rule.record_success(&mut link.breaker);
                    attempts.probing = false;
                    let wait_ms = retry_after_s.saturating_mul(1000);
                    if attempts.retries_left == 0 || wait_ms > MAX_RETRY_AFTER_WAIT_MS {
                        return Err(Stop::Call(e));
                    }
                    tracing::info!(error = %e, retry_in_ms = wait_ms, "server busy; retrying when it asked");
                    wait_ms
                }
                Err(e) => {
                    let open =
                        self.rule.record_failure(&mut link.breaker, now_ms()) || attempts.probing;
                    if open || !e.is_transient() || attempts.retries_left == 0 {
                        return Err(Stop::Call(e));
                    }
                    let delay = self.config.retry_delays_ms[attempts.retries_used];
                    tracing::info!(error = %e, retry_in_ms = delay, "sync call failed; retrying");
                    delay
                }
            };
            std::thread::sleep(with_jitter(wait_ms));
            attempts.retries_left -= 1;
            attempts.retries_used += 1;
        }
    }

    fn push_all(
        &mut self,
        link: &mut SyncState,
        attempts: &mut Attempts,
        report: &mut CycleReport,
    ) -> Result<(), Stop> {
        loop {
            let queued = self.store.waiting_events(self.config.push_batch)?;
            if queued.is_empty() {
                return Ok(());
            }
            let mut events: Vec<Event> = Vec::with_capacity(queued.len());
            let mut refused_here = Vec::new();
            for event in &queued {
                match to_wire(&self.store, event, &self.device.device_id)? {
                    Outgoing::Send(event) => events.push(event),
                    Outgoing::Unsendable { code, reason } => {
                        tracing::warn!(event = %event.id, code, %reason, "outbox event kept unsent");
                        refused_here.push((event.id.clone(), code.to_owned(), reason));
                    }
                }
            }
            let mut acked = Vec::new();
            let mut rejected = refused_here;
            if !events.is_empty() {
                let request_id = report.request_id.clone();
                // The partial index `outbox_waiting` answers this without reading sent rows.
                let outbox_waiting = self.store.pending_event_count()? as u64;
                let answer = self.call(link, attempts, |client| {
                    let about_me = BoxReport {
                        app_version: env!("CARGO_PKG_VERSION").to_owned(),
                        outbox_waiting,
                        // Stamped per attempt: a push retried after timeouts and waits would
                        // otherwise read as a box minutes behind.
                        clock_ms: Some(now_ms()),
                    };
                    client.push(&events, &about_me, &request_id)
                })?;
                link.last_push_at = Some(now_ms());
                acked = answer.acked;
                for r in answer.rejected {
                    tracing::warn!(event = %r.id, code = ?r.code, reason = %r.reason, "server rejected an event");
                    rejected.push((r.id, super::wire_name(r.code), r.reason));
                }
            }
            let settled = acked.len() + rejected.len();
            report.pushed += acked.len();
            report.rejected += rejected.len();
            for (_, code, reason) in &rejected {
                if report.rejections.len() < SHOWN_REJECTIONS {
                    report.rejections.push(format!("{code}: {reason}"));
                }
            }
            self.store.settle_events(&acked, &rejected)?;
            if settled == 0 {
                // A server that answers without settling anything would make this loop spin.
                return Err(Stop::Call(CallError::Unreachable(
                    "the server acknowledged none of the events pushed".into(),
                )));
            }
        }
    }

    fn pull_all(
        &mut self,
        link: &mut SyncState,
        attempts: &mut Attempts,
        report: &mut CycleReport,
    ) -> Result<(), Stop> {
        loop {
            let cursor = self.store.cursor()?;
            let request_id = report.request_id.clone();
            let limit = self.config.pull_page;
            let page = self.call(link, attempts, |client| {
                client.pull(cursor.as_deref(), limit, &request_id)
            })?;
            let summary = self.store.apply_changes(
                &self.device.school_id,
                &page.changes,
                &page.next_cursor,
            )?;
            link.last_pull_at = Some(now_ms());
            report.pulled += summary.changes;
            report.templates_added += summary.templates_added;
            report.templates_purged += summary.templates_purged;
            if !page.more || page.changes.is_empty() {
                return Ok(());
            }
        }
    }
}

/// `ms` plus up to a quarter more, so boxes that failed together do not retry together.
fn with_jitter(ms: u64) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let extra = if ms == 0 { 0 } else { random % (ms / 4 + 1) };
    Duration::from_millis(ms + extra)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server on loopback that answers every request with `status` and `body`.
    fn server_answering(status: &'static str, body: &'static str) -> String {
        server_answering_with(status, "", body)
    }

    /// `server_answering`, with `headers` (each ending in `\r\n`) in every answer.
    fn server_answering_with(
        status: &'static str,
        headers: &'static str,
        body: &'static str,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Headers up to the blank line; a pull has no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{address}")
    }

    /// Runs `n_cycles` cycles of a box (nothing to push, so each pulls) against `server`, with a
    /// breaker that opens after 3 failures and no retries; returns the reports and the link.
    fn cycles_against(server: &str, n_cycles: usize) -> (Vec<CycleReport>, SyncState) {
        cycles_with_retries(server, n_cycles, vec![])
    }

    fn cycles_with_retries(
        server: &str,
        n_cycles: usize,
        retry_delays_ms: Vec<u64>,
    ) -> (Vec<CycleReport>, SyncState) {
        let config = SyncConfig {
            retry_delays_ms,
            breaker_failures: 3,
            breaker_cooldown_s: 600.0,
            ..SyncConfig::default()
        };
        let client = Client::new(server, Some("token".into()), &config).unwrap();
        let device = DeviceIdentity {
            device_id: "d1".into(),
            school_id: "north".into(),
            server: server.into(),
            provisioned_at: 0,
        };
        let store = Store::open_in_memory().unwrap();
        let mut syncer = Syncer::new(store, client, device, config);
        let reports = (0..n_cycles).map(|_| syncer.cycle().unwrap()).collect();
        (reports, syncer.store.sync_state().unwrap())
    }

    /// Issue 13: a 4xx refusal (a revoked token) counted against the breaker as if the server
    /// were down.
    #[test]
    fn a_refusal_is_reported_and_never_opens_the_breaker() {
        let server = server_answering(
            "401 Unauthorized",
            r#"{"code":"token_revoked","message":"this device was revoked by the school's admin","request_id":"r1"}"#,
        );
        let (reports, link) = cycles_against(&server, 5);
        for report in &reports {
            assert_eq!(report.breaker_open_ms, None, "{report:?}");
            assert_eq!(
                report.error.as_deref(),
                Some(
                    "server refused the request (401 token_revoked): this device was revoked by the school's admin"
                )
            );
        }
        assert_eq!(link.breaker.consecutive_failures, 0);
        assert_eq!(link.breaker.breaker_opened_at, None);
    }

    /// A box that lost its time (no RTC battery, no network time) learns how far off it is from
    /// the server's `Date` on any answer, a refusal too, and keeps it for the screen and `status`.
    #[test]
    fn every_answer_tells_the_box_how_far_its_clock_is_off() {
        let three_days_ago = jiff::Timestamp::from_millisecond(now_ms() - 3 * 86_400_000).unwrap();
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&three_days_ago)
            .unwrap();
        let headers: &'static str = Box::leak(format!("date: {date}\r\n").into_boxed_str());
        for (status, body) in [
            (
                "200 OK",
                r#"{"protocol":1,"changes":[],"next_cursor":"0","more":false}"#,
            ),
            (
                "401 Unauthorized",
                r#"{"code":"token_revoked","message":"revoked","request_id":"r1"}"#,
            ),
        ] {
            let server = server_answering_with(status, headers, body);
            let (_, link) = cycles_against(&server, 1);
            let offset = link.clock_offset_ms.expect("the answer's clock was kept");
            // Ahead by three days, and by up to a second more for the header's whole seconds
            // (rounded down) and the time the test takes to answer.
            assert!(
                (3 * 86_400_000 - 100..=3 * 86_400_000 + 5_000).contains(&offset),
                "{status}: {offset}"
            );
            assert!(
                link.clock_read_at
                    .is_some_and(|at| (now_ms() - at).abs() < 10_000)
            );
            assert_eq!(
                super::super::clock::describe(offset),
                "3 days ahead of the server's"
            );
        }
        // An answer without a Date says nothing of the clock, and nothing is made up.
        let server = server_answering(
            "200 OK",
            r#"{"protocol":1,"changes":[],"next_cursor":"0","more":false}"#,
        );
        let (_, link) = cycles_against(&server, 1);
        assert_eq!((link.clock_offset_ms, link.clock_read_at), (None, None));
    }

    /// The breaker still opens for a server that is down (5xx), after `breaker_failures`.
    #[test]
    fn server_errors_open_the_breaker() {
        let server = server_answering(
            "500 Internal Server Error",
            r#"{"code":"internal","message":"internal error","request_id":"r1"}"#,
        );
        let (reports, link) = cycles_against(&server, 4);
        assert!(reports[..3].iter().all(|r| r.breaker_open_ms.is_none()));
        assert!(reports[3].breaker_open_ms.is_some(), "{:?}", reports[3]);
        assert_eq!(link.breaker.consecutive_failures, 3);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..100 {
            let d = with_jitter(1000).as_millis();
            assert!((1000..=1250).contains(&d), "{d}");
        }
        assert_eq!(with_jitter(0), Duration::ZERO);
    }

    /// A busy server's `Retry-After` is waited out (not the 20 ms retry delay), and being busy
    /// never opens the breaker.
    #[test]
    fn a_busy_server_is_retried_when_it_asked() {
        let server = server_answering_with(
            "503 Service Unavailable",
            "retry-after: 1\r\n",
            r#"{"code":"unavailable","message":"the server is checking too many logins at once","request_id":"r1"}"#,
        );
        let started = std::time::Instant::now();
        let (reports, link) = cycles_with_retries(&server, 2, vec![20, 20]);
        let elapsed = started.elapsed();
        for report in &reports {
            assert_eq!(report.breaker_open_ms, None, "{report:?}");
            assert_eq!(report.retries, 2);
            assert!(
                report
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("asked to retry in 1 s")),
                "{report:?}"
            );
        }
        assert!(elapsed >= Duration::from_secs(4), "waited only {elapsed:?}");
        assert_eq!(link.breaker.consecutive_failures, 0);
        assert_eq!(link.breaker.breaker_opened_at, None);
    }

    /// A wait longer than a cycle should take ends the cycle at once; the next one tries again.
    #[test]
    fn a_long_retry_after_ends_the_cycle_without_waiting() {
        let server = server_answering_with(
            "429 Too Many Requests",
            "retry-after: 58\r\n",
            r#"{"code":"rate_limited","message":"too many failed attempts; retry in 58 s","request_id":"r1"}"#,
        );
        let started = std::time::Instant::now();
        let (reports, link) = cycles_with_retries(&server, 4, vec![20, 20]);
        assert!(started.elapsed() < Duration::from_secs(5));
        for report in &reports {
            assert_eq!(report.retries, 0, "{report:?}");
            assert_eq!(report.breaker_open_ms, None, "{report:?}");
        }
        assert_eq!(link.breaker.breaker_opened_at, None);
    }
}
