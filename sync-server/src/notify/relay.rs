//! The SMTP connection(s) notices go out on. For `security = "none"` and `"starttls"` the server
//! opens its own TCP connections with `TCP_NODELAY`: lettre writes a message and its closing
//! `<CRLF>.<CRLF>` separately, and with Nagle's algorithm against the relay's delayed ACK every
//! message waited 40 ms (25 messages a second, whatever the relay; PERFORMANCE.md, issue 16).
//! Implicit TLS (`"tls"`, port 465) goes through lettre's own pool, which cannot set it.
//!
//! Idle connections are kept and reused; a reused one that fails before the relay answered is
//! replaced by a fresh one once, so a relay that closed an idle connection costs no retry.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Mutex;

use crate::config::{SmtpConfig, SmtpSecurity};
use crate::domain::notice::Delivery;

pub(super) enum Relay {
    Direct(Direct),
    Pooled(AsyncSmtpTransport<Tokio1Executor>),
}

pub(super) struct Direct {
    host: String,
    port: u16,
    starttls: bool,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl Relay {
    pub(super) fn new(config: &SmtpConfig) -> Result<Relay, lettre::transport::smtp::Error> {
        let timeout = Duration::from_secs(u64::from(config.timeout_seconds));
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            _ => None,
        };
        match config.security {
            SmtpSecurity::Tls => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?
                    .port(config.port)
                    .timeout(Some(timeout));
                if let Some(credentials) = credentials {
                    builder = builder.credentials(credentials);
                }
                Ok(Relay::Pooled(builder.build()))
            }
            SmtpSecurity::Starttls | SmtpSecurity::None => Ok(Relay::Direct(Direct {
                host: config.host.clone(),
                port: config.port,
                starttls: config.security == SmtpSecurity::Starttls,
                credentials,
                timeout,
                hello: ClientId::default(),
                idle: Mutex::new(Vec::new()),
            })),
        }
    }

    /// One try at handing `message` to the relay.
    pub(super) async fn send(&self, message: &Message) -> Delivery {
        match self {
            Relay::Pooled(transport) => match transport.send(message.clone()).await {
                Ok(_) => Delivery::Accepted,
                Err(e) => outcome(&e),
            },
            Relay::Direct(direct) => direct.send(message).await,
        }
    }
}

fn outcome(e: &lettre::transport::smtp::Error) -> Delivery {
    if e.is_permanent() {
        Delivery::Permanent(e.to_string())
    } else {
        Delivery::Transient(e.to_string())
    }
}

impl Direct {
    async fn connect(&self) -> Result<AsyncSmtpConnection, Delivery> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Delivery::Transient(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|e| failed("timed out connecting to", &e))?
        .map_err(|e| failed("cannot connect to", &e))?;
        tcp.set_nodelay(true)
            .map_err(|e| failed("cannot set TCP_NODELAY towards", &e))?;
        let mut conn = tokio::time::timeout(
            self.timeout,
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
        )
        .await
        .map_err(|e| failed("no greeting from", &e))?
        .map_err(|e| outcome(&e))?;
        if self.starttls {
            let tls = TlsParameters::new(self.host.clone()).map_err(|e| outcome(&e))?;
            conn.starttls(tls, &self.hello)
                .await
                .map_err(|e| outcome(&e))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| outcome(&e))?;
        }
        Ok(conn)
    }

    async fn send(&self, message: &Message) -> Delivery {
        let body = message.formatted();
        let reused = self.idle.lock().await.pop();
        let fresh = reused.is_none();
        let mut conn = match reused {
            Some(conn) => conn,
            None => match self.connect().await {
                Ok(conn) => conn,
                Err(failed) => return failed,
            },
        };
        let mut answer = self.try_on(&mut conn, message, &body).await;
        // A kept connection the relay had closed fails on its first write, before any answer
        // (neither a 4xx nor a 5xx, nor a timeout, after which the relay may have the message):
        // once more on a new one.
        let closed = matches!(&answer, Some(Err(e))
            if !e.is_permanent() && !e.is_transient() && !e.is_timeout());
        if !fresh && closed {
            conn = match self.connect().await {
                Ok(conn) => conn,
                Err(failed) => return failed,
            };
            answer = self.try_on(&mut conn, message, &body).await;
        }
        match answer {
            Some(Ok(())) => {
                self.idle.lock().await.push(conn);
                Delivery::Accepted
            }
            Some(Err(e)) => outcome(&e),
            None => Delivery::Transient(format!(
                "{}:{} did not answer within {} s",
                self.host,
                self.port,
                self.timeout.as_secs()
            )),
        }
    }

    /// `None` on a timeout; the connection is not reused after any failure.
    async fn try_on(
        &self,
        conn: &mut AsyncSmtpConnection,
        message: &Message,
        body: &[u8],
    ) -> Option<Result<(), lettre::transport::smtp::Error>> {
        let sent = tokio::time::timeout(self.timeout, conn.send(message.envelope(), body)).await;
        match sent {
            Ok(Ok(_)) => Some(Ok(())),
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    }
}
