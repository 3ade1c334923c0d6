//! Warm plugin instances shared by the activities of one worker.
//!
//! Each concurrent activity checks out one `InstanceSlot` (one wasm instance
//! with its model loaded), so a model is loaded once per instance, not per
//! task, and no instance is ever used by two threads at once.

use std::sync::{Arc, Mutex};

use crate::engine::{InstanceSlot, Plugin};

pub struct InstancePool {
    plugin: Arc<Plugin>,
    idle: Mutex<Vec<InstanceSlot>>,
}

impl InstancePool {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        InstancePool { plugin, idle: Mutex::new(Vec::new()) }
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// An idle slot, or a new one (instantiated lazily on first use).
    pub fn checkout(self: &Arc<Self>) -> PooledSlot {
        let slot = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        PooledSlot { slot: Some(slot.unwrap_or_else(|| InstanceSlot::new(self.plugin.clone()))), pool: self.clone() }
    }

    /// Instantiates `n` slots up front so the first tasks do not pay for model loads.
    pub fn warm(self: &Arc<Self>, n: usize) -> Result<(), crate::engine::EngineError> {
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = self.checkout();
            s.get()?;
            slots.push(s);
        }
        Ok(())
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// A checked-out slot; goes back to the pool when dropped.
pub struct PooledSlot {
    slot: Option<InstanceSlot>,
    pool: Arc<InstancePool>,
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
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
        }
    }
}
