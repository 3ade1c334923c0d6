//! Warm plugin instances shared by the activities of one worker.
//!
//! Each concurrent task checks out one `InstanceSlot` (one wasm instance with
//! its model loaded) of the plugin version it pinned, so a model is loaded
//! once per instance, not per task, and no instance is ever used by two
//! threads at once. Instances of versions that are no longer live are
//! dropped when they come back.

use std::sync::{Arc, Mutex};

use crate::engine::InstanceSlot;
use crate::registry::PluginVersion;

type IsLive = dyn Fn(&PluginVersion) -> bool + Send + Sync;

pub struct InstancePool {
    idle: Mutex<Vec<(Arc<PluginVersion>, InstanceSlot)>>,
    is_live: Box<IsLive>,
}

impl InstancePool {
    /// `is_live` tells whether instances of a version are worth keeping.
    pub fn new(is_live: impl Fn(&PluginVersion) -> bool + Send + Sync + 'static) -> Self {
        InstancePool { idle: Mutex::new(Vec::new()), is_live: Box::new(is_live) }
    }

    /// An idle slot of `version`, its validation instance, or a new slot
    /// (instantiated lazily on first use).
    pub fn checkout(self: &Arc<Self>, version: &Arc<PluginVersion>) -> PooledSlot {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.iter().position(|(v, _)| Arc::ptr_eq(v, version)).map(|i| idle.swap_remove(i).1)
        };
        let slot = reused
            .or_else(|| version.take_warm_slot())
            .unwrap_or_else(|| InstanceSlot::new(version.plugin.clone()));
        PooledSlot { slot: Some(slot), version: version.clone(), pool: self.clone() }
    }

    /// Instantiates `n` slots of `version` up front so the first tasks do not
    /// pay for model loads.
    pub fn warm(self: &Arc<Self>, version: &Arc<PluginVersion>, n: usize) -> Result<(), crate::engine::EngineError> {
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = self.checkout(version);
            s.get()?;
            slots.push(s);
        }
        Ok(())
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Drops idle instances of versions that are no longer live.
    pub fn prune(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).retain(|(v, _)| (self.is_live)(v));
    }
}

/// A checked-out slot; goes back to the pool when dropped.
pub struct PooledSlot {
    slot: Option<InstanceSlot>,
    version: Arc<PluginVersion>,
    pool: Arc<InstancePool>,
}

impl PooledSlot {
    pub fn version(&self) -> &Arc<PluginVersion> {
        &self.version
    }
}

impl std::ops::Deref for PooledSlot {
    type Target = InstanceSlot;
    fn deref(&self) -> &InstanceSlot {
        self.slot.as_ref().expect("slot is present until drop")
    }
}

impl std::ops::DerefMut for PooledSlot {
    fn deref_mut(&mut self) -> &mut InstanceSlot {
        self.slot.as_mut().expect("slot is present until drop")
    }
}

impl Drop for PooledSlot {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if (self.pool.is_live)(&self.version) {
                self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push((self.version.clone(), slot));
            }
        }
    }
}
