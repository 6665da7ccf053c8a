//! Central enrolment's side of the ML service (`edge-agent serve`, issue 17). `MlClient` calls the
//! service under one circuit breaker (`shared_proto::breaker`: the box's rule) with a timeout and
//! retries; `JobQueue` keeps uploaded photos on disk until the service has made templates of them;
//! `Enroller` runs the jobs and stores each template as the domain's `template_added`, so every box
//! of the school pulls it as it pulls a template another box made. A school that keeps face
//! crops has them re-embedded after a model change (`reembed`).
//!
//! The server compares no vectors: the enrolment gate (one usable face, size, sharpness, pose, not
//! another student's face) is the box's own code, run by the service.

mod enrol;
mod gallery;
mod jobs;
mod reembed;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use shared_proto::breaker::{Breaker, BreakerRule, Link};
use shared_proto::ml::service::{
    self as wire, EmbedCropsRequest, EmbedCropsResponse, EnrolRequest, EnrolResponse,
    StatusResponse,
};

pub use enrol::{EnrolHealth, Enroller, SubmitError, Upload};
pub use jobs::{Job, Photo, PhotoState};
pub use reembed::{ReembedError, Reembedded, kept_crops};

use crate::api::Clock;
use crate::config::MlConfig;

/// Why a call to the service has no answer.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error(
        "the ML service is not called while its breaker is open (it failed {failures} times in a row); next try in {} s",
        (retry_in_ms + 999) / 1000
    )]
    BreakerOpen { retry_in_ms: i64, failures: u32 },
    #[error("the ML service cannot be reached: {0}")]
    Unreachable(String),
    #[error("the ML service is busy: {0}")]
    Busy(String),
    #[error("the ML service refused the call ({status}, {error}): {message}")]
    Refused {
        status: u16,
        error: String,
        message: String,
    },
    #[error("the ML service answered something unreadable: {0}")]
    Garbled(String),
}

impl MlError {
    /// The service is down or busy: the work waits for it rather than failing.
    pub fn is_down(&self) -> bool {
        matches!(
            self,
            MlError::BreakerOpen { .. } | MlError::Unreachable(_) | MlError::Busy(_)
        )
    }
}

/// One try of a call.
enum Attempt<T> {
    Answer(T),
    /// The service answered and said no: it is up.
    Refused(MlError),
    /// It answered 503: up, but full; come back after this.
    Busy(Duration),
    /// No answer (refused connection, timeout, 5xx): counts against the breaker.
    Failed(String),
}

pub struct MlClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
    rule: BreakerRule,
    retry_delays: Vec<Duration>,
    link: Mutex<Link>,
    clock: Arc<dyn Clock>,
    /// The service's status once read: its space decides which templates make the gallery.
    status: Mutex<Option<StatusResponse>>,
}

impl MlClient {
    pub fn new(config: &MlConfig, clock: Arc<dyn Clock>) -> Result<MlClient, MlError> {
        // reqwest is built without a crypto provider of its own: ring, as the rest of the server.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs_f64(config.timeout_s);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| MlError::Unreachable(format!("cannot build an HTTP client: {e}")))?;
        Ok(MlClient {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone().unwrap_or_default(),
            rule: BreakerRule::new(config.breaker_failures, config.breaker_reset_s),
            retry_delays: config
                .retry_delays_ms
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
            link: Mutex::new(Link::default()),
            clock,
            status: Mutex::new(None),
        })
    }

    /// The breaker now, and the failures it counted.
    pub fn breaker(&self) -> (Breaker, Link) {
        let link = *self.link.lock().unwrap_or_else(|p| p.into_inner());
        (self.rule.state(&link, self.clock.now()), link)
    }

    /// `GET /v1/ml/status`, read once and kept (a restarted service with another model is seen
    /// when a call is refused for its space, which forgets it).
    pub async fn status(&self) -> Result<StatusResponse, MlError> {
        if let Some(status) = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(status);
        }
        let status: StatusResponse = self.call(wire::STATUS, None).await?;
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.clone());
        Ok(status)
    }

    /// Forgets the status read: the next `status` asks the service (which may have been
    /// restarted with another model).
    pub fn forget_status(&self) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `POST /v1/ml/enrol-faces`.
    pub async fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, MlError> {
        self.post(wire::ENROL_FACES, request).await
    }

    /// `POST /v1/ml/embed-crops`.
    pub async fn embed_crops(
        &self,
        request: &EmbedCropsRequest,
    ) -> Result<EmbedCropsResponse, MlError> {
        self.post(wire::EMBED_CROPS, request).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        request: &impl serde::Serialize,
    ) -> Result<T, MlError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| MlError::Garbled(format!("cannot encode the request: {e}")))?;
        let answer = self.call(path, Some(body)).await;
        if let Err(MlError::Refused { status: 400, .. }) = &answer {
            // Perhaps the service now embeds in another space: read its status again next time.
            self.forget_status();
        }
        answer
    }

    /// A call under the breaker: refused at once while it is open; one try when it is half open;
    /// else tries after each of `retry_delays` while the service cannot be reached or is busy.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, MlError> {
        let probing = {
            let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
            match self.rule.state(&link, self.clock.now()) {
                Breaker::Closed => false,
                Breaker::HalfOpen => true,
                Breaker::Open { retry_in_ms } => {
                    return Err(MlError::BreakerOpen {
                        retry_in_ms,
                        failures: link.consecutive_failures,
                    });
                }
            }
        };
        let mut retries = self.retry_delays.iter();
        loop {
            let (error, wait) = match self.once(path, body.as_deref()).await {
                Attempt::Answer(value) => {
                    self.up();
                    return Ok(value);
                }
                Attempt::Refused(e) => {
                    self.up();
                    return Err(e);
                }
                Attempt::Busy(after) => {
                    self.up();
                    (
                        MlError::Busy(format!("it asked to come back in {} s", after.as_secs())),
                        Some(after),
                    )
                }
                Attempt::Failed(why) => {
                    let open = {
                        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
                        self.rule.record_failure(&mut link, self.clock.now())
                    };
                    if open {
                        tracing::warn!(error = %why, "ML service breaker open");
                    }
                    if open || probing {
                        return Err(MlError::Unreachable(why));
                    }
                    (MlError::Unreachable(why), None)
                }
            };
            if probing {
                return Err(error);
            }
            let Some(&delay) = retries.next() else {
                return Err(error);
            };
            let delay = wait.map_or(delay, |after| after.max(delay));
            tracing::info!(%error, retry_in_ms = delay.as_millis() as u64, "ML service call failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    fn up(&self) {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        self.rule.record_success(&mut link);
    }

    async fn once<T: DeserializeOwned>(&self, path: &str, body: Option<&[u8]>) -> Attempt<T> {
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(body) => self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            None => self.http.get(&url),
        }
        .header(wire::API_KEY_HEADER, &self.api_key);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(format!("{path}: no answer in time"));
            }
            Err(e) => return Attempt::Failed(format!("{path}: {e}")),
        };
        let status = response.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Attempt::Busy(Duration::from_secs(after.min(60)));
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(format!("{path}: no answer in time"));
            }
            Err(e) => return Attempt::Failed(format!("{path}: {e}")),
        };
        if status.is_server_error() {
            return Attempt::Failed(format!("{path}: answered {status}"));
        }
        if !status.is_success() {
            let body: Option<wire::ErrorBody> = serde_json::from_slice(&bytes).ok();
            return Attempt::Refused(MlError::Refused {
                status: status.as_u16(),
                error: body.as_ref().map_or_else(String::new, |b| b.error.clone()),
                message: body.map_or_else(
                    || String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    |b| b.message,
                ),
            });
        }
        match serde_json::from_slice(&bytes) {
            Ok(value) => Attempt::Answer(value),
            Err(e) => Attempt::Refused(MlError::Garbled(format!("{path}: {e}"))),
        }
    }
}
