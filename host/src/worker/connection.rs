//! Where the Temporal frontend is and how this process connects to it:
//! plain gRPC on a local dev server, or TLS (system roots or a CA file,
//! mutual TLS with a client certificate, a server-name override) and an API
//! key, the two ways into Temporal Cloud.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions};

use crate::secret::Secret;
use crate::tls::{TlsError, TlsFiles};

/// How long connecting (TCP, the TLS handshake and the first call, which
/// proves the server answers) may take before it counts as failed: a server
/// that accepts and never answers must not hang a start or a probe.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `temporal` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// Temporal frontend, host:port (or a URL).
    pub address: String,
    pub namespace: String,
    /// `llm-analytics-task-queue` in production.
    pub task_queue: String,
    /// TLS on or off; when unset, on as soon as any `tls_*` key or the API
    /// key is set (or the address is an `https://` URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// CA certificate(s) the server's certificate must chain to; the system roots when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (with `tls_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate is checked against, when not the address's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Sent as `Authorization: Bearer`; never logged nor printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            address: "127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "development-task-queue".into(),
            tls: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            api_key: None,
        }
    }
}

/// Why this process could not connect to Temporal.
#[derive(Debug, thiserror::Error)]
pub enum TemporalConnectError {
    #[error("temporal.address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("Temporal TLS settings: {0}")]
    TlsFiles(#[from] TlsError),
    /// The handshake failed: a certificate that does not verify against the
    /// configured CA or name, a server that does not speak TLS, a refused
    /// client certificate. Never retried in clear text.
    #[error(
        "Temporal at {address}: TLS handshake failed: {reason} (check temporal.tls_ca, temporal.tls_server_name and the \
         client certificate, and that the server speaks TLS)"
    )]
    Tls { address: String, reason: String },
    #[error("Temporal at {address}: no connection within {after:?}")]
    Timeout { address: String, after: Duration },
    #[error("Temporal at {address}: {reason}")]
    Connect { address: String, reason: String },
}

impl TemporalConfig {
    fn tls_files(&self) -> TlsFiles {
        TlsFiles { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() }
    }

    fn explicit_scheme(&self) -> Option<&str> {
        self.address.split_once("://").map(|(scheme, _)| scheme)
    }

    /// Whether connections use TLS (see [`TemporalConfig::tls`]).
    pub fn uses_tls(&self) -> bool {
        self.tls.unwrap_or_else(|| {
            !self.tls_files().is_empty()
                || self.tls_server_name.is_some()
                || self.api_key.is_some()
                || self.explicit_scheme() == Some("https")
        })
    }

    /// The settings that cannot work together; `(key, reason)`. Checked
    /// when the config loads, so nothing is ever sent in clear text that was
    /// meant to be protected.
    pub fn check_tls(&self) -> Result<(), (&'static str, String)> {
        if self.tls == Some(false) {
            let set = [
                ("temporal.tls_ca", self.tls_ca.is_some()),
                ("temporal.tls_cert", self.tls_cert.is_some()),
                ("temporal.tls_key", self.tls_key.is_some()),
                ("temporal.tls_server_name", self.tls_server_name.is_some()),
                ("temporal.api_key", self.api_key.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
                return Err(("temporal.tls", format!("is false, but {key} is set: it needs TLS (the API key would go out in clear text)")));
            }
            if self.explicit_scheme() == Some("https") {
                return Err(("temporal.tls", "is false, but temporal.address is an https:// URL".into()));
            }
        }
        if self.uses_tls() && self.explicit_scheme() == Some("http") {
            return Err(("temporal.address", "is an http:// URL, but TLS is on: write host:port or https://".into()));
        }
        self.tls_files().check().map_err(|e| ("temporal.tls_key", e.to_string()))?;
        if self.api_key.as_ref().is_some_and(|k| k.expose().trim().is_empty()) {
            return Err(("temporal.api_key", "is empty".into()));
        }
        Ok(())
    }

    /// The frontend's URL: `host:port` becomes `https://` with TLS on,
    /// `http://` otherwise. tonic speaks TLS only to `https://` URLs (and
    /// clear text to `http://` ones even when TLS is configured), so the
    /// scheme is what keeps TLS on.
    pub fn url(&self) -> Result<url::Url, url::ParseError> {
        if self.address.contains("://") {
            url::Url::parse(&self.address)
        } else {
            let scheme = if self.uses_tls() { "https" } else { "http" };
            url::Url::parse(&format!("{scheme}://{}", self.address))
        }
    }

    /// The SDK's TLS options, the files read (and checked) now so that a bad
    /// one is named here rather than inside a transport error.
    fn tls_options(&self) -> Result<Option<TlsOptions>, TlsError> {
        if !self.uses_tls() {
            return Ok(None);
        }
        let (ca, identity) = self.tls_files().pem()?;
        let client = identity.map(|(cert, key)| ClientTlsOptions::builder().client_cert(cert).client_private_key(key).build());
        Ok(Some(
            TlsOptions::builder()
                .maybe_server_root_ca_cert(ca)
                .maybe_domain(self.tls_server_name.clone())
                .maybe_client_tls_options(client)
                .build(),
        ))
    }
}

/// `llma-sentiment@<host>:<pid>`: distinct for every process of a task queue.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("llma-sentiment@{host}:{}", std::process::id())
}

pub async fn connect(temporal: &TemporalConfig) -> Result<Client, TemporalConnectError> {
    connect_as(temporal, &default_identity()).await
}

pub async fn connect_as(temporal: &TemporalConfig, identity: &str) -> Result<Client, TemporalConnectError> {
    let address = temporal.address.clone();
    let url = temporal.url().map_err(|e| TemporalConnectError::Address { address: address.clone(), reason: format!("not host:port or a URL: {e}") })?;
    // The SDK's TLS (tonic's) takes the process-default provider when one is set.
    crate::tls::install_default_provider();
    let options = ConnectionOptions::new(url)
        .identity(identity.to_string())
        .connect_timeout(CONNECT_TIMEOUT)
        .maybe_tls_options(temporal.tls_options()?)
        .maybe_api_key(temporal.api_key.as_ref().map(|k| k.expose().trim().to_string()))
        .build();
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options)).await {
        Err(_) => return Err(TemporalConnectError::Timeout { address, after: CONNECT_TIMEOUT }),
        Ok(Err(e)) => {
            return Err(match crate::tls::tls_failure(&e).filter(|_| temporal.uses_tls()) {
                Some(reason) => TemporalConnectError::Tls { address, reason },
                None => TemporalConnectError::Connect { address, reason: connect_failure(&e, temporal.uses_tls()) },
            })
        }
        Ok(Ok(connection)) => connection,
    };
    Client::new(connection, ClientOptions::new(temporal.namespace.clone()).build())
        .map_err(|e| TemporalConnectError::Connect { address: temporal.address.clone(), reason: error_chain(&e) })
}

/// What went wrong connecting, in words: the first call's status without
/// its debug dump, and the hint a mutual-TLS refusal needs (TLS 1.3 servers
/// reject a client certificate after the handshake, so the client sees a
/// closed connection, not a TLS error).
fn connect_failure(e: &temporalio_client::errors::ClientConnectError, tls: bool) -> String {
    use temporalio_client::errors::ClientConnectError as E;
    let E::SystemInfoCallError(status) = e else { return error_chain(e) };
    let mut reason = format!("the first call failed: {:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        reason = format!("{reason}: {}", error_chain(source));
    }
    // A transport failure (the connection closed or broke), not an answer
    // of the server: which code tonic gives it varies with the timing.
    use temporalio_client::tonic::Code;
    let closed = std::error::Error::source(status).is_some() || matches!(status.code(), Code::Cancelled | Code::Unavailable | Code::Unknown);
    if tls && closed {
        reason += " (the server closed the connection after the TLS handshake: with mutual TLS, check temporal.tls_cert and temporal.tls_key)";
    }
    reason
}

/// Each distinct message of an error's chain, outermost first.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_picks_the_scheme_and_is_on_when_anything_asks_for_it() {
        let plain = TemporalConfig::default();
        assert!(!plain.uses_tls());
        assert_eq!(plain.url().unwrap().scheme(), "http");
        let keyed = TemporalConfig { api_key: Some(Secret::new("k")), address: "ns.tmprl.cloud:7233".into(), ..Default::default() };
        assert!(keyed.uses_tls());
        assert_eq!(keyed.url().unwrap().as_str(), "https://ns.tmprl.cloud:7233/");
        let ca = TemporalConfig { tls_ca: Some("ca.pem".into()), ..Default::default() };
        assert!(ca.uses_tls() && ca.check_tls().is_ok());
        let https = TemporalConfig { address: "https://h:7233".into(), ..Default::default() };
        assert!(https.uses_tls());
    }

    #[test]
    fn settings_that_would_send_clear_text_are_refused() {
        let off_with_key = TemporalConfig { tls: Some(false), api_key: Some(Secret::new("k")), ..Default::default() };
        assert_eq!(off_with_key.check_tls().unwrap_err().0, "temporal.tls");
        let http_with_tls = TemporalConfig { tls: Some(true), address: "http://h:1".into(), ..Default::default() };
        assert_eq!(http_with_tls.check_tls().unwrap_err().0, "temporal.address");
        let half = TemporalConfig { tls_cert: Some("c.pem".into()), ..Default::default() };
        assert_eq!(half.check_tls().unwrap_err().0, "temporal.tls_key");
    }

    #[test]
    fn the_api_key_is_not_shown() {
        let c = TemporalConfig { api_key: Some(Secret::new("tmprl-hunter2")), ..Default::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
