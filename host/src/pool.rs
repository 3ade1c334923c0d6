//! Warm plugin instances shared by the activities of one worker.
//!
//! A task checks out one `InstanceSlot` (one wasm instance with its model
//! loaded) of the plugin version it pinned, so a model is loaded once per
//! instance, not per task, and no instance is ever used by two threads at
//! once. The pool holds at most `capacity` instances (checked out plus idle):
//! a worker may run more activities than it has instances, since most of an
//! activity's time goes to Temporal and ClickHouse round trips, and a task
//! that finds every instance busy waits, asynchronously, for one to come
//! back. Instances of versions that are no longer live are dropped when they
//! come back; an idle instance of another version is dropped to make room.

use std::sync::Arc;
use parking_lot::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::InstanceSlot;
use crate::registry::PluginVersion;

type IsLive = dyn Fn(&PluginVersion) -> bool + Send + Sync;

struct Idle {
    slots: Vec<(Arc<PluginVersion>, InstanceSlot)>,
    /// Slots checked out now.
    out: usize,
    /// Most slots that existed at once (idle + out), for tests and logs.
    high_water: usize,
}

pub struct InstancePool {
    idle: Mutex<Idle>,
    /// One permit per instance the pool may hold; a checkout holds one.
    permits: Arc<Semaphore>,
    capacity: usize,
    is_live: Box<IsLive>,
}

#[derive(Debug, thiserror::Error)]
#[error("the instance pool is closed")]
pub struct PoolClosed;

impl InstancePool {
    /// A pool of at most `capacity` instances (at least 1). `is_live` tells
    /// whether instances of a version are worth keeping.
    pub fn bounded(capacity: usize, is_live: impl Fn(&PluginVersion) -> bool + Send + Sync + 'static) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        InstancePool {
            idle: Mutex::new(Idle { slots: Vec::new(), out: 0, high_water: 0 }),
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            is_live: Box::new(is_live),
        }
    }

    /// The worker's pool: instances of a version stay while `registry`
    /// (held weakly, so the pool does not keep it alive) serves it or keeps
    /// it for rollback.
    pub fn for_registry(capacity: usize, registry: &Arc<crate::registry::Registry>) -> Self {
        let registry = Arc::downgrade(registry);
        InstancePool::bounded(capacity, move |v| registry.upgrade().is_some_and(|r| r.is_live(v)))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Idle> {
        self.idle.lock()
    }

    /// A slot of `version`, waiting (without blocking a thread; dropping the
    /// future cancels the wait) while all instances are checked out.
    pub async fn checkout(self: &Arc<Self>, version: &Arc<PluginVersion>) -> Result<PooledSlot, PoolClosed> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| PoolClosed)?;
        Ok(self.take(version, permit))
    }

    /// A slot of `version` if an instance is free now.
    pub fn try_checkout(self: &Arc<Self>, version: &Arc<PluginVersion>) -> Option<PooledSlot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.take(version, permit))
    }

    /// An idle slot of `version`, its validation instance, or a new slot
    /// (instantiated lazily on first use), making room by dropping an idle
    /// instance of another version when the pool is full.
    fn take(self: &Arc<Self>, version: &Arc<PluginVersion>, permit: OwnedSemaphorePermit) -> PooledSlot {
        let mut evicted = None;
        let mut idle = self.lock();
        // An idle instance of this version, else room for a new one.
        let reused = idle.slots.iter().position(|(v, _)| Arc::ptr_eq(v, version)).map(|i| idle.slots.swap_remove(i).1);
        let slot = match reused {
            Some(slot) => {
                idle.out += 1;
                slot
            }
            None => {
                drop(idle);
                // The permit guarantees out < capacity, so an idle slot exists to drop.
                evicted = self.make_room();
                version.take_warm_slot().unwrap_or_else(|| InstanceSlot::new(version.plugin.clone()))
            }
        };
        // Unmapping an instance's memory takes a while: not under the lock.
        drop(evicted);
        PooledSlot { slot: Some(slot), version: version.clone(), pool: self.clone(), _permit: permit }
    }

    /// Instantiates up to `n` slots of `version` (at most the capacity) up
    /// front so the first tasks do not pay for model loads.
    pub fn warm(self: &Arc<Self>, version: &Arc<PluginVersion>, n: usize) -> Result<(), crate::engine::EngineError> {
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n.min(self.capacity) {
            let Some(mut s) = self.try_checkout(version) else { break };
            s.get()?;
            slots.push(s);
        }
        Ok(())
    }

    pub fn idle_count(&self) -> usize {
        self.lock().slots.len()
    }

    /// Slots checked out now.
    pub fn checked_out(&self) -> usize {
        self.lock().out
    }

    /// The most instances (idle + checked out) the pool ever held at once.
    pub fn high_water(&self) -> usize {
        self.lock().high_water
    }

    /// Makes room for one more instance (dropping an idle one of another
    /// version when the pool is full) and counts it as checked out.
    fn make_room(&self) -> Option<InstanceSlot> {
        let mut idle = self.lock();
        let mut evicted = None;
        if idle.slots.len() + idle.out + 1 > self.capacity {
            let victim = idle
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, (v, _))| ((self.is_live)(v), v.seq))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                let (v, slot) = idle.slots.swap_remove(i);
                tracing::debug!(version = %v.label(), "dropping an idle instance of another version to make room");
                evicted = Some(slot);
            }
        }
        idle.out += 1;
        idle.high_water = idle.high_water.max(idle.out + idle.slots.len());
        evicted
    }

    /// Publishes the instance counts to `/metrics` every `every`, for as
    /// long as the pool lives (the task holds it weakly).
    pub fn sample_metrics(self: &Arc<Self>, every: std::time::Duration) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                let idle = pool.lock();
                crate::metrics::set_instances(idle.out, idle.slots.len(), pool.capacity);
            }
        });
    }

    /// Drops idle instances of versions that are no longer live.
    pub fn prune(&self) {
        self.lock().slots.retain(|(v, _)| (self.is_live)(v));
    }
}

impl crate::registry::InstanceGate for InstancePool {
    fn reserve(self: Arc<Self>) -> Box<dyn crate::registry::Reserved> {
        // Blocks the activation's thread (never an async one: activations
        // run on blocking threads); the semaphore needs no runtime.
        let permit = futures::executor::block_on(self.permits.clone().acquire_owned()).ok();
        let evicted = self.make_room();
        drop(evicted);
        Box::new(Reservation { pool: self, _permit: permit, kept: false })
    }
}

/// Room for an activation's validation instance (see `InstanceGate`).
struct Reservation {
    pool: Arc<InstancePool>,
    _permit: Option<OwnedSemaphorePermit>,
    kept: bool,
}

impl crate::registry::Reserved for Reservation {
    fn keep(mut self: Box<Self>, version: &Arc<PluginVersion>, slot: InstanceSlot) {
        self.kept = true;
        let mut idle = self.pool.lock();
        idle.out = idle.out.saturating_sub(1);
        idle.slots.push((version.clone(), slot));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            let mut idle = self.pool.lock();
            idle.out = idle.out.saturating_sub(1);
        }
    }
}

/// A checked-out slot; goes back to the pool when dropped, and only then
/// frees its place for a waiting task.
pub struct PooledSlot {
    slot: Option<InstanceSlot>,
    version: Arc<PluginVersion>,
    pool: Arc<InstancePool>,
    // Released after `drop` has put the slot back (fields drop after it).
    _permit: OwnedSemaphorePermit,
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
        // A dead version's instance is dropped here, before taking the lock.
        let keep = (self.pool.is_live)(&self.version);
        let slot = self.slot.take().filter(|_| keep);
        let mut idle = self.pool.lock();
        idle.out = idle.out.saturating_sub(1);
        if let Some(slot) = slot {
            idle.slots.push((self.version.clone(), slot));
        }
    }
}
