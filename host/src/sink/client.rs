//! HTTP client construction and the bounded retry loop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use super::config::SinkConfig;
use super::classify::classify;
use super::error::{ConfigProblem, ErrorKind, Failure, SinkError, SinkField};

/// TCP keepalive probes on pooled connections (as the crate's default client).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Idle pooled connections are dropped before the server's keep-alive timeout
/// (3 s on older servers, 10 s on 23.11+), so a reused socket is rarely stale.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A `clickhouse::Client` whose connector sets TCP_NODELAY (the crate's default
/// connector does not, and every small insert then waits for a delayed ACK),
/// with the configured credentials. No default database: every statement
/// names its database, so `CREATE DATABASE` works before the database exists.
///
/// An `https://` URL gets the same connector wrapped in rustls, HTTPS only:
/// a URL that says TLS never falls back to clear text. The TLS handshake is
/// inside each attempt, so `with_retry`'s attempt timeout bounds it too.
pub(crate) fn build_client(config: &SinkConfig) -> Result<clickhouse::Client, SinkError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(TCP_KEEPALIVE));
    connector.set_connect_timeout(Some(config.connect_timeout));
    let mut builder = HyperClient::builder(TokioExecutor::new());
    let mut client = if config.uses_tls() {
        // The TLS connector hands the plain one https:// URIs; it sets the
        // ALPN protocols (http/1.1) itself.
        connector.enforce_http(false);
        let tls = config
            .tls
            .client_config(&[])
            .map_err(|e| SinkError::Config(ConfigProblem::new(SinkField::Tls, format!("ClickHouse TLS: {e}"))))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(connector);
        // The TCP connect has its own timeout: twice it leaves the handshake
        // at least as long, and a server that never answers it (a plain
        // HTTP port waiting for a line) fails as TLS, at once final.
        let https = crate::tls::HandshakeDeadline::new(https, config.connect_timeout * 2);
        clickhouse::Client::with_http_client(builder.pool_idle_timeout(POOL_IDLE_TIMEOUT).build(https))
    } else {
        connector.enforce_http(true);
        clickhouse::Client::with_http_client(builder.pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector))
    };
    client = client.with_url(&config.url).with_user(&config.user);
    if let Some(password) = &config.password {
        client = client.with_password(password);
    }
    Ok(client)
}

/// Counters of a sink, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub rows_written: AtomicU64,
    pub chunks_written: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub retries: AtomicU64,
}

/// A snapshot of a sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Rows acknowledged by the server (retried rows counted once).
    pub rows_written: u64,
    /// INSERT statements acknowledged by the server.
    pub chunks_written: u64,
    /// Attempts of any request that failed (retried or not).
    pub failed_attempts: u64,
    /// Attempts started after a failed one.
    pub retries: u64,
}

impl Counters {
    pub fn snapshot(&self) -> SinkStats {
        SinkStats {
            rows_written: self.rows_written.load(Ordering::Relaxed),
            chunks_written: self.chunks_written.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// Runs `attempt(n)` (n = 1, 2, ...) until it succeeds, fails with a final
/// error, or `attempts` (normally `config.attempts`) attempts have failed. Each attempt is
/// cut off after `config.attempt_timeout()`; between attempts it sleeps the
/// (jittered) exponential backoff. Total time is therefore bounded by
/// `config.max_request_duration()`. Logs attempts without messages or data.
pub(crate) async fn with_retry<T, F, Fut>(
    config: &SinkConfig,
    attempts: u32,
    counters: &Counters,
    op: &'static str,
    rows: usize,
    mut attempt: F,
) -> Result<T, SinkError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, clickhouse::error::Error>>,
{
    let attempts = attempts.max(1);
    let mut waits = config.backoffs(attempts);
    let limit = config.attempt_timeout();
    let mut n = 1;
    loop {
        let started = Instant::now();
        let failure = match tokio::time::timeout(limit, attempt(n)).await {
            Ok(Ok(value)) => {
                tracing::debug!(
                    op,
                    rows,
                    attempt = n,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "clickhouse request done"
                );
                return Ok(value);
            }
            Ok(Err(e)) => {
                let mut failure = classify(&e);
                if failure.kind == ErrorKind::Tls {
                    // Which server refused: there may be several ClickHouses in one config's history.
                    failure.message = format!("{}: {}", crate::secret::redact_url(&config.url), failure.message);
                }
                failure
            }
            Err(_) => Failure::timeout(limit),
        };
        counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
        let retryable = failure.kind.is_retryable();
        let backoff = if retryable { waits.next() } else { None };
        tracing::warn!(
            op,
            rows,
            attempt = n,
            attempts,
            kind = failure.kind.as_str(),
            code = failure.code,
            retryable,
            backoff_ms = backoff.map(|b| b.as_millis() as u64),
            "clickhouse request failed; {}",
            if backoff.is_some() { "retrying" } else { "giving up" }
        );
        let Some(backoff) = backoff else {
            return Err(failure.into_error(op, n, attempts));
        };
        tokio::time::sleep(backoff).await;
        counters.retries.fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_clickhouse_retry();
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::error::ErrorKind;
    use std::sync::atomic::AtomicU32;

    fn fast(attempts: u32) -> SinkConfig {
        SinkConfig {
            attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            connect_timeout: Duration::from_millis(50),
            request_timeout: Duration::from_millis(50),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retries_retryable_then_succeeds() {
        let counters = Counters::default();
        let calls = AtomicU32::new(0);
        let out = with_retry(&fast(5), 5, &counters, "test", 1, |n| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 3 {
                    Err(clickhouse::error::Error::BadResponse("Code: 252. Too many parts".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        let s = counters.snapshot();
        assert_eq!((s.failed_attempts, s.retries), (2, 2));
    }

    #[tokio::test]
    async fn final_error_is_not_retried() {
        let counters = Counters::default();
        let err = with_retry(&fast(5), 5, &counters, "test", 1, |_| async {
            Err::<(), _>(clickhouse::error::Error::BadResponse("Code: 60. Table x does not exist".into()))
        })
        .await
        .unwrap_err();
        assert_eq!((err.kind(), err.attempt(), err.code()), (Some(ErrorKind::Schema), Some(1), Some(60)));
        assert_eq!(counters.snapshot().retries, 0);
    }

    #[tokio::test]
    async fn gives_up_after_attempts_and_times_out_hung_attempts() {
        let counters = Counters::default();
        let config = fast(3);
        let started = Instant::now();
        let err = with_retry(&config, 3, &counters, "test", 1, |_| {
            std::future::pending::<Result<(), clickhouse::error::Error>>()
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() <= config.max_request_duration() + Duration::from_secs(1));
        assert!(err.is_retryable());
        assert_eq!((err.kind(), err.attempt()), (Some(ErrorKind::Timeout), Some(3)));
        assert!(err.to_string().contains("attempt 3 of 3"), "{err}");
    }
}
