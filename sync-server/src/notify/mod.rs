//! Notices (issue 16): planning what is due (`plan`), rendering it (`mail`), and sending it from
//! the store's durable outbox over SMTP (lettre, rustls with ring).
//!
//! The loop is one task per server process: every `plan_every` it plans each school's notices
//! (`domain::notice` decides; enqueueing is idempotent by key, so two processes planning at once
//! enqueue each notice once), and in between it claims due notices with a lease and sends them,
//! a few at a time. A notice's outcome is `domain::notice::after_attempt`'s: sent, retried with
//! backoff, or failed with the server's answer. A process killed mid-send leaves its notices
//! leased; they are claimed again when the lease runs out and sent with the same Message-ID.

pub mod mail;
mod plan;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lettre::message::Mailbox;
use relay::Relay;

use crate::api::Clock;
use crate::config::SmtpConfig;
use crate::domain::notice::{self, Claim, Delivery, Letter, Notice};
use crate::store::{Millis, Store, StoreError};

/// Notices claimed at once.
const BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("smtp.from \"{0}\" is not a sender address")]
    From(String),
    #[error("cannot set up SMTP to {host}: {reason}")]
    Transport { host: String, reason: String },
}

/// What one `deliver` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub claimed: usize,
    pub sent: usize,
    /// Queued again for a later try.
    pub retried: usize,
    pub failed: usize,
}

pub struct Notifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    relay: Relay,
    from: Mailbox,
    public_url: String,
    lease_ms: Millis,
    /// How long one SMTP exchange may take.
    timeout_ms: Millis,
    concurrency: usize,
    /// The time between two messages' starts (`max_per_second`), and when the next may start.
    spacing: Duration,
    next_start: tokio::sync::Mutex<tokio::time::Instant>,
    plan_every: Duration,
    secret: mail::Secret,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: &SmtpConfig,
    ) -> Result<Notifier, NotifyError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| NotifyError::From(config.from.clone()))?;
        let relay = Relay::new(config).map_err(|e| NotifyError::Transport {
            host: config.host.clone(),
            reason: e.to_string(),
        })?;
        Ok(Notifier {
            store,
            clock,
            relay,
            from,
            public_url: config.public_url.clone(),
            lease_ms: Millis::from(config.lease_seconds) * 1000,
            timeout_ms: Millis::from(config.timeout_seconds) * 1000,
            concurrency: config.concurrency.max(1),
            spacing: Duration::from_secs(1) / config.max_per_second.max(1),
            next_start: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            plan_every: Duration::from_secs(u64::from(config.plan_every_seconds)),
            secret: mail::Secret::default(),
        })
    }

    /// The key that signs unsubscribe links.
    async fn secret(&self) -> Result<&str, StoreError> {
        self.secret.get(self.store.as_ref()).await
    }

    /// Plans every school's notices due now and enqueues them; returns how many were new.
    pub async fn plan(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut added = 0;
        for school in self.store.schools().await? {
            let notices = plan::school(self, &school, now).await?;
            if !notices.is_empty() {
                added += self.store.enqueue_notices(&notices).await?;
            }
        }
        Ok(added)
    }

    /// Claims the notices due now (one batch) and sends them, `concurrency` at a time. After a
    /// transient failure the rest of the batch is handed back untried for a minute (a relay that
    /// is down is not asked 64 times), and so is any notice whose lease could run out during its
    /// try (another process would send it again).
    pub async fn deliver(&self) -> Result<Delivered, StoreError> {
        let now = self.clock.now();
        let claim = Claim {
            owner: uuid::Uuid::now_v7().to_string(),
            now,
            lease_until: now + self.lease_ms,
            limit: BATCH,
        };
        let claimed = self.store.claim_notices(&claim).await?;
        let mut delivered = Delivered {
            claimed: claimed.len(),
            ..Delivered::default()
        };
        let owner = claim.owner.as_str();
        let halted: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let mut tries = futures_util::stream::iter(claimed)
            .map(|notice| {
                let halted = &halted;
                async move {
                    let now = self.clock.now();
                    let stop = halted.lock().map(|h| h.clone()).unwrap_or(None);
                    let finish = if let Some(why) = stop {
                        notice::release(&notice, now + 60_000, &why)
                    } else if now + self.timeout_ms >= claim.lease_until {
                        notice::release(&notice, now, "its claim ran short; sent in the next")
                    } else {
                        self.wait_for_turn().await;
                        let outcome = self.try_once(&notice).await;
                        if let Delivery::Transient(why) = &outcome
                            && let Ok(mut h) = halted.lock()
                        {
                            h.get_or_insert_with(|| why.clone());
                        }
                        notice::after_attempt(&notice, &outcome, self.clock.now())
                    };
                    let kept = self.store.finish_notice(&notice.letter.id, owner, &finish).await?;
                    if !kept {
                        tracing::warn!(notice = %notice.letter.id, "a notice's lease ran out while it was sent");
                    }
                    if let Some(error) = &finish.last_error {
                        tracing::info!(notice = %notice.letter.id, to = %notice.letter.recipient, state = %finish.state, error, "notice not sent");
                    }
                    Ok::<_, StoreError>(finish.state)
                }
            })
            .buffer_unordered(self.concurrency);
        while let Some(state) = tries.next().await {
            match state? {
                notice::State::Sent => delivered.sent += 1,
                notice::State::Queued => delivered.retried += 1,
                _ => delivered.failed += 1,
            }
        }
        Ok(delivered)
    }

    /// Waits until the next message may start, at most `max_per_second` a second.
    async fn wait_for_turn(&self) {
        let start = {
            let mut next = self.next_start.lock().await;
            let start = (*next).max(tokio::time::Instant::now());
            *next = start + self.spacing;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// One try at sending `notice`.
    async fn try_once(&self, notice: &Notice) -> Delivery {
        let mut unsubscribe = None;
        if let Some(guardian_id) = &notice.letter.guardian_id {
            // Unsubscribing is honoured at once: a notice queued before it is not sent.
            match self
                .store
                .guardian(&notice.letter.school_id, guardian_id)
                .await
            {
                Ok(Some(g)) if g.opted_out_at.is_none() => {}
                Ok(Some(_)) => {
                    return Delivery::Dropped("not sent: the guardian unsubscribed".into());
                }
                Ok(None) => {
                    return Delivery::Dropped(
                        "not sent: the guardian was removed from the school".into(),
                    );
                }
                Err(e) => return Delivery::Transient(format!("the store: {e}")),
            }
            let secret = match self.secret().await {
                Ok(secret) => secret,
                Err(e) => return Delivery::Transient(format!("the store: {e}")),
            };
            unsubscribe = Some(mail::unsubscribe_url(
                &self.public_url,
                secret,
                &notice.letter.school_id,
                guardian_id,
            ));
        }
        let message = match mail::message(&notice.letter, &self.from, unsubscribe.as_deref()) {
            Ok(message) => message,
            Err(e) => return Delivery::Permanent(e.to_string()),
        };
        self.relay.send(&message).await
    }

    /// Plans and sends until `stop` resolves: plans every `plan_every`, sends whenever notices are
    /// due (looking every second when none are). A store or SMTP failure is logged and tried again.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut next_plan = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_plan {
                match self.plan().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, "notices enqueued"),
                    Err(e) => tracing::warn!(error = %e, "cannot plan notices"),
                }
                next_plan = tokio::time::Instant::now() + self.plan_every;
            }
            let busy = match self.deliver().await {
                Ok(d) => d.claimed > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send notices");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            } else if futures_util::FutureExt::now_or_never(&mut stop).is_some() {
                return;
            }
        }
    }

    /// A notice of `school`, rendered, queued now.
    #[allow(clippy::too_many_arguments)]
    fn notice(
        &self,
        school_id: &str,
        kind: notice::Kind,
        key: String,
        recipient: &str,
        guardian_id: Option<&str>,
        day: &str,
        (subject, text, html): mail::Rendered,
        facts: String,
        students: Vec<String>,
        now: Millis,
    ) -> Notice {
        let id = uuid::Uuid::now_v7().to_string();
        Notice::queued(
            Letter {
                message_id: format!("<{id}@{}>", self.from.email.domain()),
                id,
                school_id: school_id.to_owned(),
                kind,
                key,
                recipient: recipient.to_owned(),
                guardian_id: guardian_id.map(str::to_owned),
                day: day.to_owned(),
                subject,
                text,
                html,
                facts,
                students,
            },
            now,
        )
    }
}
