//! The shared tier: results in a Redis every worker of a task queue uses, so
//! the generations of one conversation find each other's results whichever
//! worker they land on.
//!
//! Stored: key `llma-sentiment:v1:<scope digest>:<sha256 of the text>`,
//! value 13 bytes (label index, then the negative, neutral and positive
//! scores as little-endian f32), with a TTL. No message text leaves the
//! process. The label is stored, not re-derived from the scores: which label
//! a message gets is the plugin's rule.
//!
//! Best effort, never in the way: every call has a short timeout (and never
//! outlasts the caller's deadline); a failure, a timeout or a value that
//! does not decode counts as an error, the lookup goes on without L2, and
//! L2 is left alone for a moment ([`PAUSE_AFTER_ERROR`]). The connection is
//! made in the background: a worker starts while Redis is down and uses it
//! once it answers. State changes (available / unavailable) are logged once
//! each.
//!
//! TLS: a `rediss://` URL connects over rustls (the CA file and client
//! certificate of `cache.redis_tls_*`, else the system roots). A handshake
//! that fails is no outage to ride out but a setting to fix: the start-up
//! check ([`RedisTier::check`]) fails the start with it, and the calls count
//! it as a `tls` error. A `rediss://` URL never falls back to clear text.
//!
//! Callers are synchronous (the pipeline runs on blocking threads): each
//! call runs on this tier's own small runtime and the caller waits for it
//! with a timeout, so it never needs (or blocks) the caller's runtime.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

mod connect;
mod state;

pub use connect::{check_url, RedisConnectError, RedisSettings, RedisTierError};
use connect::{client, error_kind, handshake};
use state::{Conn, State, UNKNOWN, UP};

use super::value::{decode, encode};
use super::CacheScope;
use crate::engine::MessageResult;
use crate::outcome::RedisErrorKind;

/// How long L2 is skipped after a failed call: a Redis that is down or slow
/// costs at most one timeout per pause, per process.
pub const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(1);
/// How long one background connection attempt may take (it never delays a lookup).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Between failed connection attempts.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

const KEY_PREFIX: &str = "llma-sentiment:v1:";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Texts Redis answered with a result, and without.
    pub hits: u64,
    pub misses: u64,
    /// Calls that failed, timed out or answered garbage.
    pub errors: u64,
    pub available: bool,
}

/// The Redis tier. Cheap to share (`&self` everywhere); see the module docs.
pub struct RedisTier {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: ::redis::Client,
    /// For a `rediss://` URL, the trust and identity the client uses, for [`RedisTier::check`]'s own handshake.
    tls: Option<Arc<rustls::ClientConfig>>,
    state: Arc<State>,
    ttl_secs: u64,
    timeout: Duration,
}

impl RedisTier {
    /// Starts connecting in the background and returns at once.
    pub fn new(settings: &RedisSettings) -> Result<RedisTier, RedisTierError> {
        let client = client(settings)?;
        let tls = match client.get_connection_info().addr {
            ::redis::ConnectionAddr::TcpTls { .. } => Some(Arc::new(settings.tls.client_config(&[])?)),
            _ => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("llma-redis")
            .enable_all()
            .build()
            .map_err(RedisTierError::Runtime)?;
        let state = Arc::new(State {
            conn: watch::Sender::new(Conn::Down { retry_at: Instant::now() }),
            health: AtomicU8::new(UNKNOWN),
            paused_until: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            target: crate::secret::redact_url(&settings.url),
        });
        let tier = RedisTier {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            client,
            tls,
            state,
            ttl_secs: settings.ttl.as_secs().max(1),
            timeout: settings.timeout,
        };
        tier.reconnect_if_due();
        Ok(tier)
    }

    pub fn stats(&self) -> RedisStats {
        let s = &self.state;
        RedisStats {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            available: s.health.load(Ordering::SeqCst) == UP,
        }
    }

    /// Whether the last call (or connection attempt) worked.
    pub fn is_available(&self) -> bool {
        self.state.health.load(Ordering::SeqCst) == UP
    }

    /// Whether the tier talks TLS (a `rediss://` URL).
    pub fn uses_tls(&self) -> bool {
        self.state.target.starts_with("rediss://")
    }

    /// The start-up check, within `timeout` for each step: a TLS handshake
    /// of its own (with the trust the client uses) for a `rediss://` URL,
    /// then one new connection and a PING. It tells a TLS failure (a setting
    /// to fix) from an outage; a port that accepts and never completes a
    /// handshake (a plain-text server waiting for a line) counts as TLS.
    pub fn check(&self, timeout: Duration) -> Result<(), RedisConnectError> {
        let target = self.state.target.clone();
        if let (::redis::ConnectionAddr::TcpTls { host, port, .. }, Some(tls)) = (&self.client.get_connection_info().addr, &self.tls) {
            let handshake = handshake(host.clone(), *port, tls.clone(), timeout, target.clone());
            match self.run(Instant::now() + timeout * 2, handshake) {
                None => return Err(RedisConnectError::Timeout { target, after: timeout * 2 }),
                Some(Err(e)) => return Err(e),
                Some(Ok(())) => {}
            }
        }
        let client = self.client.clone();
        let outcome = self.run(Instant::now() + timeout, async move {
            let config = ::redis::AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
            let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
            ::redis::cmd("PING").query_async::<String>(&mut conn).await
        });
        match outcome {
            Some(Ok(_)) => Ok(()),
            None => Err(RedisConnectError::Timeout { target, after: timeout }),
            Some(Err(e)) => Err(match crate::tls::tls_failure(&e) {
                Some(reason) => RedisConnectError::Tls { target, reason },
                None => RedisConnectError::Failed { target, reason: e.to_string() },
            }),
        }
    }

    /// The key of one text: no text, only digests.
    pub fn key(scope: &CacheScope, text: &str) -> String {
        format!("{KEY_PREFIX}{}:{}", &scope.shared_id()[..32], crate::engine::sha256_hex(text.as_bytes()))
    }

    /// Results for `texts` (one MGET), or `None` when L2 cannot answer in time.
    pub fn get_many(&self, scope: &CacheScope, texts: &[&str], deadline: Option<Instant>) -> Option<Vec<Option<MessageResult>>> {
        let until = self.call_deadline(deadline)?;
        let mut conn = self.connection(until)?;
        let keys: Vec<String> = texts.iter().map(|t| RedisTier::key(scope, t)).collect();
        let values = self.run(until, async move {
            ::redis::cmd("MGET").arg(&keys).query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await
        });
        let values = match values {
            None => return self.timed_out(),
            Some(Err(e)) => {
                self.state.failed(error_kind(&e), &e.to_string());
                return None;
            }
            Some(Ok(v)) if v.len() != texts.len() => {
                self.state.failed(RedisErrorKind::Garbage, &format!("MGET of {} keys answered {} values", texts.len(), v.len()));
                return None;
            }
            Some(Ok(v)) => v,
        };
        let mut garbage = 0usize;
        let results: Vec<Option<MessageResult>> = values
            .into_iter()
            .map(|v| {
                let v = v?;
                let decoded = decode(&v);
                garbage += decoded.is_none() as usize;
                decoded
            })
            .collect();
        let hits = results.iter().filter(|r| r.is_some()).count() as u64;
        self.state.hits.fetch_add(hits, Ordering::Relaxed);
        self.state.misses.fetch_add(texts.len() as u64 - hits, Ordering::Relaxed);
        if garbage > 0 {
            // Counted, and those texts are classified again (and rewritten).
            self.state.count_error(RedisErrorKind::Garbage);
            tracing::debug!(values = garbage, "Redis held values that do not decode: treated as misses");
        } else {
            self.state.set_health(true, "");
        }
        Some(results)
    }

    /// Writes `entries` with the TTL (one pipelined round trip); a failure
    /// is counted and otherwise ignored.
    pub fn set_many(&self, scope: &CacheScope, entries: &[(&str, MessageResult)], deadline: Option<Instant>) {
        let Some(until) = self.call_deadline(deadline) else { return };
        let Some(mut conn) = self.connection(until) else { return };
        let mut pipe = ::redis::pipe();
        for (text, result) in entries {
            pipe.cmd("SET").arg(RedisTier::key(scope, text)).arg(&encode(result)[..]).arg("EX").arg(self.ttl_secs).ignore();
        }
        match self.run(until, async move { pipe.query_async::<()>(&mut conn).await }) {
            None => {
                self.timed_out::<()>();
            }
            Some(Err(e)) => self.state.failed(error_kind(&e), &e.to_string()),
            Some(Ok(())) => self.state.set_health(true, ""),
        }
    }

    fn timed_out<T>(&self) -> Option<T> {
        self.state.failed(RedisErrorKind::Timeout, &format!("no answer within {:?}", self.timeout));
        None
    }

    /// When the call must be over, or `None` when L2 is paused after an
    /// error or the caller has no time left.
    fn call_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        let now = Instant::now();
        let paused = self.state.paused_until.lock().is_some_and(|t| now < t);
        if paused {
            return None;
        }
        let until = deadline.map_or(now + self.timeout, |d| d.min(now + self.timeout));
        (until > now).then_some(until)
    }

    fn reconnect_if_due(&self) {
        let now = Instant::now();
        let due = self.state.conn.send_if_modified(|c| match c {
            Conn::Down { retry_at } if now >= *retry_at => {
                *c = Conn::Connecting;
                true
            }
            _ => false,
        });
        if !due {
            return;
        }
        let (client, state) = (self.client.clone(), self.state.clone());
        // The manager reconnects by itself once it exists; its own retries
        // stay short because every call is bounded by our timeout anyway.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(500);
        self.handle.spawn(async move {
            let next = match tokio::time::timeout(CONNECT_TIMEOUT * 2, ConnectionManager::new_with_config(client, config)).await {
                Ok(Ok(manager)) => {
                    state.set_health(true, "");
                    Conn::Ready(manager)
                }
                Ok(Err(e)) => {
                    state.count_error(error_kind(&e));
                    state.set_health(false, &format!("connect: {e}"));
                    Conn::Down { retry_at: Instant::now() + RECONNECT_INTERVAL }
                }
                Err(_) => {
                    state.count_error(RedisErrorKind::Timeout);
                    state.set_health(false, "connect: timed out");
                    Conn::Down { retry_at: Instant::now() + RECONNECT_INTERVAL }
                }
            };
            state.conn.send_replace(next);
        });
    }

    /// The connection, waiting for one being made until `until` at most.
    fn connection(&self, until: Instant) -> Option<ConnectionManager> {
        self.reconnect_if_due();
        let current = self.state.conn.borrow().clone();
        match current {
            Conn::Ready(m) => Some(m),
            Conn::Down { .. } => None,
            Conn::Connecting => {
                let mut rx = self.state.conn.subscribe();
                self.run(until, async move {
                    let c = rx.wait_for(|c| !matches!(c, Conn::Connecting)).await.ok()?.clone();
                    match c {
                        Conn::Ready(m) => Some(m),
                        _ => None,
                    }
                })
                .flatten()
            }
        }
    }

    /// Runs `fut` on the tier's runtime; `None` if it is not done by `until`
    /// (it is then dropped there).
    fn run<T: Send + 'static>(&self, until: Instant, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let limit = until.saturating_duration_since(Instant::now());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            if let Ok(v) = tokio::time::timeout(limit, fut).await {
                let _ = tx.send(v);
            }
        });
        // The task ends itself at `limit`; the margin only covers scheduling.
        rx.recv_timeout(limit + Duration::from_millis(5)).ok()
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        // May be dropped inside another runtime, where a blocking shutdown panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_digests_only() {
        let scope = CacheScope::from_parts("sha", "0.1.0", "m", "dir");
        let k = RedisTier::key(&scope, "I love this secret text");
        assert!(k.starts_with(KEY_PREFIX), "{k}");
        assert!(!k.contains("love") && !k.contains("dir"), "{k}");
        assert_eq!(k.len(), KEY_PREFIX.len() + 32 + 1 + 64);
        assert_ne!(k, RedisTier::key(&CacheScope::from_parts("sha2", "0.1.0", "m", "dir"), "I love this secret text"));
    }

    #[test]
    fn settings_debug_hides_the_password() {
        let s = RedisSettings {
            url: "redis://:hunter2@127.0.0.1:6379".into(),
            ttl: Duration::from_secs(1),
            timeout: Duration::from_millis(50),
            tls: Default::default(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
