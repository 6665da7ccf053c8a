//! Connections: the accept loop every listener runs. HTTP/1.1 through hyper with a timer, so a
//! client that half-sends a request's headers, or leaves a keep-alive connection idle, is dropped
//! after `header_timeout`; optionally TLS (rustls with ring) in front. axum's own `serve` sets no
//! timer, and a few hundred such sockets used to exhaust the file descriptors until `accept()`
//! failed and `/healthz` went unanswered.
//!
//! Request bodies get their own idle timeout in the router (`guard`): hyper's timer covers only
//! the head.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;

/// Headers hyper itself accepts; `guard` refuses more than `guard::MAX_HEADERS` with a JSON 431,
/// so hyper's own bare 431 is only met far beyond that.
const HYPER_MAX_HEADERS: usize = 512;

/// How connections are served.
#[derive(Clone)]
pub struct Transport {
    /// Time to send a request's head, and to start the next one on a kept-alive connection;
    /// also the time a TLS handshake may take.
    pub header_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not make a server identity: {reason}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl Transport {
    pub fn plain(header_timeout: Duration) -> Transport {
        Transport {
            header_timeout,
            tls: None,
        }
    }

    /// HTTPS with the PEM certificate chain and private key in these files.
    pub fn https(
        header_timeout: Duration,
        cert_file: &Path,
        key_file: &Path,
    ) -> Result<Transport, TlsError> {
        let certificate = |reason: String| TlsError::Certificate {
            path: cert_file.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| certificate(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(certificate("no PEM certificate in it".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
            path: key_file.to_owned(),
            reason: e.to_string(),
        })?;
        let identity = |reason: String| TlsError::Identity {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            reason,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| identity(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| identity(e.to_string()))?;
        // HTTP/1.1 only: the timeouts above are hyper's HTTP/1 ones.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Transport {
            header_timeout,
            tls: Some(TlsAcceptor::from(Arc::new(config))),
        })
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish and closes idle connections. The router sees each client's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(transport.header_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    let transport = Arc::new(transport);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON replies: send them at once rather than wait for Nagle.
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(axum::Extension(ConnectInfo(remote)).layer(router.clone()));
        let http = http.clone();
        let watcher = graceful.watcher();
        let transport = transport.clone();
        tokio::spawn(async move {
            let served = match &transport.tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(transport.header_timeout, acceptor.accept(stream));
                    let tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(tls), service))
                        .await
                }
            };
            if let Err(e) = served {
                // Timeouts and clients that hang up are normal on the open internet.
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
