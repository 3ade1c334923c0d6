//! Connecting to the shared tier: its settings, the client for a `redis://`
//! or `rediss://` URL (rustls, never clear text for `rediss://`), the TLS
//! handshake the start-up check makes, and how a failed call is labelled.

use std::sync::Arc;
use std::time::Duration;

use crate::outcome::RedisErrorKind;

/// Where the shared tier is and how it is used (from `cache.*`).
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`; never logged with its credentials.
    pub url: String,
    pub ttl: Duration,
    /// Per call (lookup or write), connection wait included.
    pub timeout: Duration,
    /// With a `rediss://` URL: CA file, client certificate and key.
    pub tls: crate::tls::TlsFiles,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisTierError {
    #[error("cache.redis_url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot start the Redis client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("Redis TLS settings: {0}")]
    TlsFiles(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Connect(#[from] RedisConnectError),
}

/// Why one connection to Redis failed ([`RedisTier::check`]).
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    #[error(
        "Redis at {target}: TLS handshake failed: {reason} (check cache.redis_tls_ca and the client certificate, and \
         that the server speaks TLS on this port)"
    )]
    Tls { target: String, reason: String },
    #[error("Redis at {target}: no answer within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("Redis at {target}: {reason}")]
    Failed { target: String, reason: String },
}

impl RedisConnectError {
    pub fn is_tls(&self) -> bool {
        matches!(self, RedisConnectError::Tls { .. })
    }
}

/// A TCP connection to `host:port` and a TLS handshake on it, each within `timeout`.
pub(super) async fn handshake(
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    target: String,
) -> Result<(), RedisConnectError> {
    let failed = |reason: String| RedisConnectError::Failed { target: target.clone(), reason };
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Err(_) => return Err(RedisConnectError::Timeout { target, after: timeout }),
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Ok(Ok(tcp)) => tcp,
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| failed(format!("host {host}: {e}")))?;
    match tokio::time::timeout(timeout, tokio_rustls::TlsConnector::from(tls).connect(name, tcp)).await {
        Err(_) => Err(RedisConnectError::Tls {
            target,
            reason: format!("no handshake within {timeout:?}: the port accepts connections but does not answer TLS"),
        }),
        Ok(Err(e)) => {
            let reason = crate::tls::tls_failure(&e).unwrap_or_else(|| e.to_string());
            Err(RedisConnectError::Tls { target, reason })
        }
        Ok(Ok(_)) => Ok(()),
    }
}

/// The client for `settings`: over TLS for a `rediss://` URL, with the
/// configured files read (and checked) now, so a bad one is named at start.
pub(super) fn client(settings: &RedisSettings) -> Result<::redis::Client, RedisTierError> {
    let url = settings.url.as_str();
    let url_error = |e: ::redis::RedisError| RedisTierError::Url { url: crate::secret::redact_url(url), reason: e.to_string() };
    if !url.trim_start().starts_with("rediss://") {
        return ::redis::Client::open(url).map_err(url_error);
    }
    // redis builds its rustls configuration on the process default provider.
    crate::tls::install_default_provider();
    let (root_cert, identity) = settings.tls.pem()?;
    let client_tls = identity.map(|(client_cert, client_key)| ::redis::ClientTlsConfig { client_cert, client_key });
    ::redis::Client::build_with_tls(url, ::redis::TlsCertificates { client_tls, root_cert }).map_err(url_error)
}

/// Checks a URL without connecting (for config validation).
pub fn check_url(url: &str) -> Result<(), RedisTierError> {
    ::redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| RedisTierError::Url { url: crate::secret::redact_url(url), reason: e.to_string() })
}

/// How `/metrics` labels a failed call.
pub(super) fn error_kind(e: &::redis::RedisError) -> RedisErrorKind {
    if crate::tls::tls_failure(e).is_some() {
        RedisErrorKind::Tls
    } else if e.is_timeout() {
        RedisErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        RedisErrorKind::Unavailable
    } else if matches!(e.kind(), ::redis::ErrorKind::TypeError | ::redis::ErrorKind::ParseError) {
        RedisErrorKind::Garbage
    } else {
        RedisErrorKind::Server
    }
}
