//! The versions a rollback can go back to: those the current one replaced,
//! the last [`HISTORY_LEN`], each while its grace period lasts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PluginVersion;

/// How many replaced versions stay loaded for rollback (each holds its
/// compiled code and snapshot mapping until its grace period ends).
pub const HISTORY_LEN: usize = 3;

/// Oldest first, at most [`HISTORY_LEN`].
#[derive(Default)]
pub(super) struct History(Vec<Previous>);

struct Previous {
    version: Arc<PluginVersion>,
    until: Instant,
}

impl History {
    /// Keeps `replaced` for `grace`; the oldest beyond [`HISTORY_LEN`] goes.
    pub(super) fn push(&mut self, replaced: Arc<PluginVersion>, grace: Duration) {
        let until = Instant::now().checked_add(grace).unwrap_or_else(Instant::now);
        self.0.push(Previous { version: replaced, until });
        let excess = self.0.len().saturating_sub(HISTORY_LEN);
        self.0.drain(..excess);
    }

    /// The versions still in their grace period, newest first.
    pub(super) fn live(&mut self) -> Vec<Arc<PluginVersion>> {
        self.drop_expired();
        self.0.iter().rev().map(|p| p.version.clone()).collect()
    }

    /// Takes out the newest version `wanted` picks, dropping the ones newer
    /// than it (a rollback never goes forth again).
    pub(super) fn take_back(&mut self, wanted: impl Fn(&PluginVersion) -> bool) -> Option<Arc<PluginVersion>> {
        self.drop_expired();
        let at = self.0.iter().rposition(|p| wanted(&p.version))?;
        let target = self.0.swap_remove(at).version;
        self.0.truncate(at);
        Some(target)
    }

    fn drop_expired(&mut self) {
        let now = Instant::now();
        self.0.retain(|p| now < p.until);
    }
}
