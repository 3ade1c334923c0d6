//! TLS for every connection the worker makes (Temporal, ClickHouse, Redis,
//! the admin client) and serves (the admin endpoint): rustls with the ring
//! provider, never OpenSSL. This module turns the configured files into
//! rustls configurations and tells a TLS failure from any other one, so each
//! client can name it; what TLS means for each server (its keys, its URL
//! scheme) stays with that server's module.
//!
//! Trust: a CA file replaces the system roots (the convention of the Temporal
//! CLI, redis-cli and curl's `--cacert`); without one the system roots are
//! used (`rustls-native-certs`: `/etc/ssl/certs` here, or `$SSL_CERT_FILE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// The files of one client's TLS settings: whom to trust and, for mutual
/// TLS, who this client is. Every field is optional; a certificate and its
/// key come together ([`TlsFiles::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) the server's certificate must chain to; the
    /// system roots when unset.
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// A certificate without its key (or the reverse) cannot work.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(TlsError::Half { given: "certificate", missing: "key" }),
            (None, Some(_)) => Err(TlsError::Half { given: "key", missing: "certificate" }),
            _ => Ok(()),
        }
    }

    /// The client certificate and key, read, when both are set.
    pub fn identity(&self) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        self.check()?;
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((read_certs("client certificate", cert)?, read_key("client key", key)?))),
            _ => Ok(None),
        }
    }

    /// The files' PEM text, checked first (so that a bad file is named
    /// here), for clients that take PEM bytes (the Temporal SDK, redis):
    /// the CA file's, and the client certificate's and key's.
    pub fn pem(&self) -> Result<(Option<Vec<u8>>, Option<(Vec<u8>, Vec<u8>)>), TlsError> {
        let read = |what: &'static str, path: &Path| std::fs::read(path).map_err(|e| read_error(what, path, e));
        let ca = match &self.ca {
            Some(path) => {
                read_certs("CA file", path)?;
                Some(read("CA file", path)?)
            }
            None => None,
        };
        let identity = match (self.identity()?, &self.cert, &self.key) {
            (Some(_), Some(cert), Some(key)) => Some((read("client certificate", cert)?, read("client key", key)?)),
            _ => None,
        };
        Ok((ca, identity))
    }

    /// A client configuration trusting `ca` (else the system roots), with
    /// the client certificate when one is set, speaking `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        let roots = roots(self.ca.as_deref())?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_root_certificates(roots);
        let mut config = match self.identity()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(TlsError::Rustls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Why TLS settings cannot be used. Raised before any connection is made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {reason}", path.display())]
    Read { what: &'static str, path: PathBuf, reason: String },
    #[error("{what} {} holds no PEM certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}", path.display())]
    NoKey { what: &'static str, path: PathBuf, reason: String },
    #[error("a client {given} is set without its {missing}: mutual TLS needs both")]
    Half { given: &'static str, missing: &'static str },
    #[error("no system root certificates could be loaded ({0}): set a CA file")]
    NoSystemRoots(String),
    #[error("TLS configuration: {0}")]
    Rustls(rustls::Error),
}

/// The one crypto provider of the process: ring (already built for tonic).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process default, for the crates that build their rustls
/// configurations with `ClientConfig::builder()` (redis). Idempotent.
pub fn install_default_provider() {
    // Fails only when a default is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read { what, path: path.to_path_buf(), reason: e.to_string() }
}

/// Every certificate of a PEM file; none is an error (a key file given as
/// the CA, an empty file).
pub fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| read_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(what, path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::NoKey { what, path: path.to_path_buf(), reason: e.to_string() })
}

/// The CA file's certificates, or the system roots without one.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in read_certs("CA file", path)? {
                store.add(cert).map_err(|e| read_error("CA file", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
                return Err(TlsError::NoSystemRoots(why));
            }
        }
    }
    Ok(store)
}

/// A server configuration presenting `cert` (chain) with `key`, speaking `alpn`.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs("certificate", cert)?;
    let key = read_key("key", key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS handshake (with the TCP connect before it) that did not finish in
/// time: a plain-text server reading a ClientHello as the start of its own
/// protocol may wait for more forever.
#[derive(Debug, thiserror::Error)]
#[error("no TLS handshake within {0:?}: the port accepts connections but does not answer TLS")]
pub struct HandshakeTimeout(pub std::time::Duration);

/// A connector (hyper-rustls') whose connections must be made, handshake
/// included, within `limit`; past it the attempt fails with
/// [`HandshakeTimeout`], which [`tls_failure`] reports as a TLS failure.
#[derive(Debug, Clone)]
pub struct HandshakeDeadline<C> {
    inner: C,
    limit: std::time::Duration,
}

impl<C> HandshakeDeadline<C> {
    pub fn new(inner: C, limit: std::time::Duration) -> Self {
        HandshakeDeadline { inner, limit }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C, R> tower_service::Service<hyper::Uri> for HandshakeDeadline<C>
where
    C: tower_service::Service<hyper::Uri, Response = R>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = R;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let (connecting, limit) = (self.inner.call(uri), self.limit);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(made) => made.map_err(Into::into),
                Err(_) => Err(Box::new(HandshakeTimeout(limit)) as BoxError),
            }
        })
    }
}

/// The TLS failure in `err`'s chain, if any: a rustls error (a certificate
/// that does not verify, a server that does not speak TLS, a refused client
/// certificate), also inside the `io::Error`s TLS streams return (nested, in
/// hyper-rustls), or a handshake the server cut short.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(t) = e.downcast_ref::<HandshakeTimeout>() {
            return Some(t.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // tokio-rustls' words for a peer that closed during the handshake
            // (a plain-text server hanging up on a ClientHello).
            if io.to_string().contains("tls handshake eof") {
                return Some("the server closed the connection during the TLS handshake (does it speak TLS?)".into());
            }
            // An io::Error's `source()` skips the error it wraps: look inside.
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_needs_its_key() {
        let half = TlsFiles { cert: Some("c.pem".into()), ..Default::default() };
        assert!(matches!(half.check(), Err(TlsError::Half { missing: "key", .. })));
        let half = TlsFiles { key: Some("k.pem".into()), ..Default::default() };
        assert!(matches!(half.check(), Err(TlsError::Half { missing: "certificate", .. })));
        assert!(TlsFiles::default().check().is_ok());
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = roots(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("CA file") && e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        assert!(matches!(roots(Some(&empty)), Err(TlsError::NoCertificate { .. })));
        assert!(matches!(read_key("key", &empty), Err(TlsError::NoKey { .. })));
    }

    #[test]
    fn system_roots_load_here() {
        assert!(!roots(None).unwrap().is_empty());
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert!(tls_failure(&io).unwrap().contains("UnknownIssuer"));
        // hyper-rustls wraps tokio-rustls' io::Error in another one.
        let nested = std::io::Error::other(io);
        assert!(tls_failure(&nested).unwrap().contains("UnknownIssuer"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(tls_failure(&plain).is_none());
    }
}
