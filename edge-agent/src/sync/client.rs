//! The HTTP side of sync: one blocking reqwest client (rustls with ring) per sync thread, every
//! call bounded by the configured timeout, every failure sorted into "try again later" or "the
//! server said no".

use std::time::Duration;

use serde::de::DeserializeOwned;
use shared_proto::PROTOCOL_VERSION;
use shared_proto::sync::{
    ApiError, BoxReport, Event, PROTOCOL_HEADER, ProvisionRequest, ProvisionResponse, PullResponse,
    PushRequest, PushResponse, REQUEST_ID_HEADER,
};

use super::SyncError;
use super::clock::Reading;
use crate::config::SyncConfig;

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer, a cut or garbled answer, or a server error: worth retrying.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server is up and busy (429, 503) and said when to come back (`Retry-After`): not a
    /// sign it is down, so the breaker does not count it; `Syncer` waits that long, or stops
    /// the cycle when it is longer than a cycle should wait.
    #[error("server busy ({status}): {message}; it asked to retry in {retry_after_s} s")]
    Busy {
        status: u16,
        retry_after_s: u64,
        message: String,
    },
    /// The server answered and refused: retrying the same call will not help.
    #[error("server refused the request ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

impl CallError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Unreachable(_) | CallError::Busy { .. })
    }
}

pub struct Client {
    http: reqwest::blocking::Client,
    server: String,
    token: Option<String>,
    /// The clock of the last answer that had one (`Date`), whatever the answer said.
    clock: std::sync::Mutex<Option<Reading>>,
}

/// Installs ring as rustls's crypto provider, once per process (reqwest is built without one so
/// that no C crypto library is compiled in).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    /// A client for `server` (`http://` or `https://` base URL), with the device token once the
    /// box is provisioned.
    pub fn new(
        server: &str,
        token: Option<String>,
        config: &SyncConfig,
    ) -> Result<Client, SyncError> {
        install_crypto_provider();
        let server = server.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(SyncError::BadServer(server));
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs_f64(config.timeout_s))
            .connect_timeout(Duration::from_secs_f64(config.timeout_s))
            // The server closes a connection idle for 20 s (its header timeout); dropping ours
            // first means a request is never written into a socket the server is closing.
            .pool_idle_timeout(Duration::from_secs(10))
            .user_agent(concat!("rollcall-edge-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| SyncError::CaFile {
                path: path.clone(),
                reason: source.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SyncError::CaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(SyncError::CaFile {
                    path: path.clone(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| SyncError::Http(e.to_string()))?;
        Ok(Client {
            http,
            server,
            token,
            clock: std::sync::Mutex::new(None),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Trades a one-time provisioning code for this box's identity and token.
    pub fn provision(
        &self,
        code: &str,
        name: Option<&str>,
    ) -> Result<ProvisionResponse, CallError> {
        let body = ProvisionRequest {
            protocol: PROTOCOL_VERSION,
            code: code.to_owned(),
            name: name.map(str::to_owned),
        };
        self.send(
            self.http
                .post(format!("{}/v1/devices/provision", self.server))
                .json(&body),
            None,
        )
    }

    pub fn push(
        &self,
        events: &[Event],
        report: &BoxReport,
        request_id: &str,
    ) -> Result<PushResponse, CallError> {
        let body = PushRequest {
            protocol: PROTOCOL_VERSION,
            events: events.to_vec(),
            report: Some(report.clone()),
        };
        self.send(
            self.authorized(self.http.post(format!("{}/v1/sync/push", self.server)))
                .json(&body),
            Some(request_id),
        )
    }

    pub fn pull(
        &self,
        cursor: Option<&str>,
        limit: usize,
        request_id: &str,
    ) -> Result<PullResponse, CallError> {
        self.send(
            self.authorized(self.http.get(self.pull_url(cursor, limit))),
            Some(request_id),
        )
    }

    fn pull_url(&self, cursor: Option<&str>, limit: usize) -> String {
        let mut url = format!("{}/v1/sync/pull?limit={limit}", self.server);
        if let Some(cursor) = cursor {
            url.push_str("&cursor=");
            url.push_str(&percent_encode(cursor));
        }
        url
    }

    fn authorized(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        request_id: Option<&str>,
    ) -> Result<T, CallError> {
        answer(self.call(request, request_id)?)
    }

    /// Sends a request with the protocol's headers; the response as it came. Its clock, when
    /// it has one, is kept for [`Client::take_clock`].
    fn call(
        &self,
        request: reqwest::blocking::RequestBuilder,
        request_id: Option<&str>,
    ) -> Result<reqwest::blocking::Response, CallError> {
        let mut request = request.header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        let started = std::time::Instant::now();
        let response = request
            .send()
            .map_err(|e| CallError::Unreachable(describe(&e)))?;
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|value| value.to_str().ok());
        let reading = Reading::from_date(
            date,
            crate::store::now_ms(),
            started.elapsed().as_millis() as i64,
        );
        if reading.is_some() {
            *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = reading;
        }
        Ok(response)
    }

    /// The clock of the last answer since the last call of this, if one had a `Date`.
    pub fn take_clock(&self) -> Option<Reading> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// An authenticated pull of at most one change, applied nowhere: whether the server answers
    /// this box's token, with the server's clock (its `Date` header) and the round trip.
    pub fn probe(&self, cursor: Option<&str>) -> Result<Probe, CallError> {
        self.take_clock();
        let started = std::time::Instant::now();
        let response = self.call(
            self.authorized(self.http.get(self.pull_url(cursor, 1))),
            None,
        )?;
        let round_trip_ms = started.elapsed().as_millis() as i64;
        let clock = self.take_clock();
        let _: PullResponse = answer(response)?;
        Ok(Probe {
            clock,
            round_trip_ms,
        })
    }
}

/// What [`Client::probe`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The server's clock; `None` without a `Date` header.
    pub clock: Option<Reading>,
    pub round_trip_ms: i64,
}

/// A response read whole and sorted: the answer, or why not.
fn answer<T: DeserializeOwned>(response: reqwest::blocking::Response) -> Result<T, CallError> {
    let status = response.status();
    // Retry-After in seconds only: our server sends no HTTP date there, and a date would need the
    // box's clock.
    let retry_after_s = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    // Reading the whole body is part of the call: a connection cut mid-answer is a failure,
    // never half an answer.
    let body = response
        .bytes()
        .map_err(|e| CallError::Unreachable(describe(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| CallError::Unreachable(format!("unreadable answer ({status}): {e}")));
    }
    let error: Option<ApiError> = serde_json::from_slice(&body).ok();
    let (code, message) = match error {
        Some(e) => (super::wire_name(e.code), e.message),
        None => (
            String::new(),
            String::from_utf8_lossy(&body).chars().take(200).collect(),
        ),
    };
    let busy = status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::SERVICE_UNAVAILABLE;
    if let Some(retry_after_s) = retry_after_s.filter(|_| busy) {
        return Err(CallError::Busy {
            status: status.as_u16(),
            retry_after_s,
            message,
        });
    }
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        return Err(CallError::Unreachable(format!("{status}: {message}")));
    }
    Err(CallError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// The error and its causes in one line (reqwest's own message stops at the outermost layer).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("invalid peer certificate") {
        // The likeliest cause in a school: its own CA, not yet given to the box.
        text.push_str(
            " (the server's certificate is not trusted: if the school signs its own certificates, set ca_file in [sync] to its certificate authority's PEM file)",
        );
    }
    text
}

/// Cursors are decimal numbers today; encoding keeps any future opaque cursor intact in a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_is_not_a_url_is_refused() {
        let err = Client::new("example.org", None, &SyncConfig::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("http://"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("school-ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let config = SyncConfig {
            ca_file: Some(path.clone()),
            ..SyncConfig::default()
        };
        let err = Client::new("https://rollcall.example", None, &config)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("school-ca.pem"), "{err}");
        let missing = SyncConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..SyncConfig::default()
        };
        let err = Client::new("https://rollcall.example", None, &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn cursors_are_encoded_for_urls() {
        assert_eq!(percent_encode("1234"), "1234");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn nothing_listening_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Some("t".into()),
            &SyncConfig::default(),
        )
        .unwrap();
        let err = client.pull(None, 10, "r1").unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}
