//! The tier's shared state: the connection (made in the background), its
//! health (each change logged once and exported), the pause after an error,
//! and the counters.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use ::redis::aio::ConnectionManager;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::PAUSE_AFTER_ERROR;
use crate::outcome::RedisErrorKind;

#[derive(Clone)]
pub(super) enum Conn {
    Connecting,
    Ready(ConnectionManager),
    Down { retry_at: Instant },
}

pub(super) const UNKNOWN: u8 = 0;
pub(super) const UP: u8 = 1;
pub(super) const DOWN: u8 = 2;

pub(super) struct State {
    pub(super) conn: watch::Sender<Conn>,
    pub(super) health: AtomicU8,
    pub(super) paused_until: Mutex<Option<Instant>>,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) errors: AtomicU64,
    /// The URL without credentials, for logs.
    pub(super) target: String,
}

impl State {
    pub(super) fn set_health(&self, up: bool, reason: &str) {
        let new = if up { UP } else { DOWN };
        if self.health.swap(new, Ordering::SeqCst) == new {
            return;
        }
        crate::metrics::set_redis_available(up);
        if up {
            tracing::info!(redis = %self.target, "Redis result cache available: using the shared tier");
        } else {
            tracing::warn!(redis = %self.target, reason, "Redis result cache unavailable: in-process cache only until it answers again");
        }
    }

    pub(super) fn count_error(&self, kind: RedisErrorKind) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_redis_error(kind.as_str());
    }

    pub(super) fn failed(&self, kind: RedisErrorKind, reason: &str) {
        self.count_error(kind);
        *self.paused_until.lock() = Some(Instant::now() + PAUSE_AFTER_ERROR);
        self.set_health(false, &format!("{}: {reason}", kind.as_str()));
    }
}

