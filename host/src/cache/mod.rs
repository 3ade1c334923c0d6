//! Per-message results, keyed by what determines them: the plugin build, the
//! model, and the exact (truncated) text. `$ai_input` re-sends every earlier
//! message of a conversation, so most messages of a generation were
//! classified by an earlier one, often on another worker.
//!
//! Two tiers behind one lookup: the in-process LRU ([`memory`], L1) and,
//! when configured, a Redis shared by every worker ([`redis`], L2). The
//! pipeline asks once per generation for all its texts and stores its new
//! results once; it never learns which tier answered, only the counts.
//! L2 is best effort: when it is down, slow or answers garbage, lookups go
//! on with L1 alone.

pub mod memory;
pub mod redis;
mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::engine::{MessageResult, Plugin, PluginInfo};
use crate::single_flight::{Claim, InFlight};
pub use memory::{MemoryStats, MemoryTier, ENTRY_OVERHEAD_BYTES};
pub use self::redis::{RedisSettings, RedisStats, RedisTier};

/// What a cached result is valid for: one plugin build running one model.
/// Two versions with different component bytes or different model files
/// never share entries.
#[derive(Debug, Clone)]
pub struct CacheScope(Arc<ScopeParts>);

#[derive(Debug)]
struct ScopeParts {
    /// The in-process identity (model files by path, size and mtime).
    local: String,
    /// The identity other processes share: a digest of the component, the
    /// version, the model name and the model files' *contents*, so that
    /// workers on other machines (other paths, other mtimes) with the same
    /// build and model meet in Redis.
    shared: String,
}

impl PartialEq for CacheScope {
    fn eq(&self, other: &Self) -> bool {
        self.0.local == other.0.local
    }
}

impl Eq for CacheScope {}

impl std::hash::Hash for CacheScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.local.hash(state)
    }
}

impl CacheScope {
    pub fn of(plugin: &Plugin, info: &PluginInfo) -> CacheScope {
        let local = format!("{}|{}|{}|{}", plugin.wasm_sha256, info.version, info.model_name, plugin.model_identity);
        let content = plugin.model_content_digest();
        let shared = digest(&format!("{}|{}|{}|{content}", plugin.wasm_sha256, info.version, info.model_name));
        CacheScope(Arc::new(ScopeParts { local, shared }))
    }

    pub fn from_parts(wasm_sha256: &str, plugin_version: &str, model_name: &str, model_identity: &str) -> CacheScope {
        let local = format!("{wasm_sha256}|{plugin_version}|{model_name}|{model_identity}");
        let shared = digest(&local);
        CacheScope(Arc::new(ScopeParts { local, shared }))
    }

    pub fn as_str(&self) -> &str {
        &self.0.local
    }

    /// Hex digest naming this scope outside the process (Redis keys).
    pub fn shared_id(&self) -> &str {
        &self.0.shared
    }
}

fn digest(s: &str) -> String {
    crate::engine::sha256_hex(s.as_bytes())
}

/// How many messages of one lookup each tier answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierCounts {
    pub l1: u64,
    pub l2: u64,
    pub misses: u64,
}

impl TierCounts {
    pub fn hits(&self) -> u64 {
        self.l1 + self.l2
    }

    pub fn add(&mut self, other: TierCounts) {
        self.l1 += other.l1;
        self.l2 += other.l2;
        self.misses += other.misses;
    }
}

/// What the tiers knew about one generation's texts, in their order.
#[derive(Debug)]
pub struct Lookup {
    pub results: Vec<Option<MessageResult>>,
    pub counts: TierCounts,
}

/// Counters and occupancy of both tiers, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Messages answered by a tier, and by neither.
    pub hits: u64,
    pub misses: u64,
    pub l1_hits: u64,
    pub l2_hits: u64,
    pub insertions: u64,
    pub evictions: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    /// Redis calls that failed, timed out or answered garbage.
    pub l2_errors: u64,
}

impl CacheStats {
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// What one in-flight classification is keyed by (the cache's key).
pub type FlightKey = (CacheScope, Box<str>);

/// The tiers behind one lookup, and single-flight in front of them.
pub struct ResultCache {
    memory: MemoryTier,
    shared: Option<RedisTier>,
    counts: Mutex<TierCounts>,
    /// Texts being classified now by some task sharing this cache.
    in_flight: InFlight<FlightKey, MessageResult>,
}

impl ResultCache {
    /// The in-process tier alone, bounded by `capacity_bytes` (0 disables it).
    pub fn new(capacity_bytes: usize) -> ResultCache {
        ResultCache::from_tiers(MemoryTier::new(capacity_bytes), None)
    }

    /// Capacity in MiB, as `pipeline.result_cache_mb` gives it.
    pub fn with_megabytes(mb: u64) -> ResultCache {
        ResultCache::from_tiers(MemoryTier::with_megabytes(mb), None)
    }

    pub fn from_tiers(memory: MemoryTier, shared: Option<RedisTier>) -> ResultCache {
        ResultCache { memory, shared, counts: Mutex::new(TierCounts::default()), in_flight: InFlight::default() }
    }

    /// After a miss in every tier: lead the classification of `text`,
    /// follow the task already on it, or find it in L1, put there by a task
    /// that just finished it.
    pub fn claim(&self, scope: &CacheScope, text: &str) -> Claim<'_, FlightKey, MessageResult> {
        self.in_flight.claim((scope.clone(), text.into()), || self.memory.peek(scope, text))
    }

    /// Texts a task took from another one in flight instead of classifying them.
    pub fn deduplicated_in_flight(&self) -> u64 {
        self.in_flight.deduplicated()
    }

    /// Keeps one result in L1 at once (before its flight is published);
    /// [`ResultCache::share`] sends the generation's new results to L2.
    pub fn insert(&self, scope: &CacheScope, text: &str, result: MessageResult) {
        self.memory.insert(scope, text, result);
    }

    /// Sends newly computed results to L2 in one pipelined write (at most until `deadline`).
    pub fn share(&self, scope: &CacheScope, entries: &[(&str, MessageResult)], deadline: Option<Instant>) {
        if let (Some(shared), false) = (&self.shared, entries.is_empty()) {
            shared.set_many(scope, entries, deadline);
        }
    }

    pub fn shared(&self) -> Option<&RedisTier> {
        self.shared.as_ref()
    }

    /// Results for `texts` from L1, then from L2 for the rest (one round
    /// trip, at most until `deadline`). L2 answers are kept in L1.
    pub fn lookup(&self, scope: &CacheScope, texts: &[&str], deadline: Option<Instant>) -> Lookup {
        let mut results: Vec<Option<MessageResult>> = texts.iter().map(|t| self.memory.get(scope, t)).collect();
        let mut counts = TierCounts { l1: results.iter().filter(|r| r.is_some()).count() as u64, ..Default::default() };
        let l1_misses = texts.len() as u64 - counts.l1;
        crate::metrics::record_cache_lookups("l1", counts.l1, l1_misses);
        if let (Some(shared), true) = (&self.shared, l1_misses > 0) {
            let mut distinct: Vec<&str> = Vec::new();
            for (text, r) in texts.iter().zip(&results) {
                if r.is_none() && !distinct.contains(text) {
                    distinct.push(*text);
                }
            }
            if let Some(found) = shared.get_many(scope, &distinct, deadline) {
                let found: HashMap<&str, MessageResult> =
                    distinct.iter().zip(found).filter_map(|(t, r)| r.map(|r| (*t, r))).collect();
                for (text, r) in found.iter() {
                    self.memory.insert(scope, text, *r);
                }
                for (text, slot) in texts.iter().zip(results.iter_mut()) {
                    if slot.is_none() {
                        if let Some(r) = found.get(text) {
                            *slot = Some(*r);
                            counts.l2 += 1;
                        }
                    }
                }
                crate::metrics::record_cache_lookups("l2", counts.l2, l1_misses - counts.l2);
            }
        }
        counts.misses = texts.len() as u64 - counts.l1 - counts.l2;
        self.counts.lock().add(counts);
        Lookup { results, counts }
    }

    /// Keeps newly computed results in L1 and sends them to L2 in one
    /// pipelined write (at most until `deadline`).
    pub fn store(&self, scope: &CacheScope, entries: &[(&str, MessageResult)], deadline: Option<Instant>) {
        for (text, r) in entries {
            self.memory.insert(scope, text, *r);
        }
        self.share(scope, entries, deadline);
    }

    pub fn stats(&self) -> CacheStats {
        let m = self.memory.stats();
        let c = *self.counts.lock();
        CacheStats {
            hits: c.hits(),
            misses: c.misses,
            l1_hits: c.l1,
            l2_hits: c.l2,
            insertions: m.insertions,
            evictions: m.evictions,
            entries: m.entries,
            bytes: m.bytes,
            capacity_bytes: m.capacity_bytes,
            l2_errors: self.shared.as_ref().map_or(0, |s| s.stats().errors),
        }
    }
}

impl Default for ResultCache {
    /// 64 MiB in process, no Redis.
    fn default() -> Self {
        ResultCache::from_tiers(MemoryTier::default(), None)
    }
}
