//! The in-process tier: a byte-bounded LRU of per-message results shared by
//! every task of a process.
//!
//! Bounded by bytes: the weight of an entry is its text plus a fixed
//! overhead, so a few long pasted documents cannot crowd out the memory budget.

use std::sync::atomic::{AtomicU64, Ordering};
use parking_lot::Mutex;

use super::CacheScope;
use crate::engine::MessageResult;

/// Bytes an entry costs beyond its text: the key and value structs, the
/// LRU's node and hash-table slot (measured order of magnitude, not exact).
pub const ENTRY_OVERHEAD_BYTES: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    scope: CacheScope,
    text: Box<str>,
}

struct Lru {
    map: lru::LruCache<Key, MessageResult>,
    bytes: usize,
}

/// A byte-bounded LRU of per-message results; capacity 0 disables it (every
/// lookup misses, nothing is stored).
pub struct MemoryTier {
    lru: Option<Mutex<Lru>>,
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    insertions: AtomicU64,
    evictions: AtomicU64,
}

fn weight(text: &str) -> usize {
    text.len() + ENTRY_OVERHEAD_BYTES
}

impl MemoryTier {
    pub fn new(capacity_bytes: usize) -> MemoryTier {
        MemoryTier {
            lru: (capacity_bytes > 0).then(|| Mutex::new(Lru { map: lru::LruCache::unbounded(), bytes: 0 })),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            insertions: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Capacity in MiB, as the `LLMA_SENTIMENT_RESULT_CACHE_MB` knob gives it.
    pub fn with_megabytes(mb: u64) -> MemoryTier {
        MemoryTier::new(usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
    }

    pub fn is_enabled(&self) -> bool {
        self.lru.is_some()
    }

    fn lock(&self) -> Option<parking_lot::MutexGuard<'_, Lru>> {
        self.lru.as_ref().map(|m| m.lock())
    }

    pub fn get(&self, scope: &CacheScope, text: &str) -> Option<MessageResult> {
        let found = self.lock().and_then(|mut lru| {
            let key = Key { scope: scope.clone(), text: text.into() };
            lru.map.get(&key).copied()
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The result for `text` without counting a lookup.
    pub fn peek(&self, scope: &CacheScope, text: &str) -> Option<MessageResult> {
        self.lock().and_then(|mut lru| lru.map.get(&Key { scope: scope.clone(), text: text.into() }).copied())
    }

    pub fn insert(&self, scope: &CacheScope, text: &str, result: MessageResult) {
        let w = weight(text);
        let Some(mut lru) = self.lock() else { return };
        if w > self.capacity_bytes {
            return;
        }
        let key = Key { scope: scope.clone(), text: text.into() };
        if lru.map.put(key, result).is_none() {
            lru.bytes += w;
            self.insertions.fetch_add(1, Ordering::Relaxed);
        }
        while lru.bytes > self.capacity_bytes {
            let Some((old, _)) = lru.map.pop_lru() else { break };
            lru.bytes = lru.bytes.saturating_sub(weight(&old.text));
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> MemoryStats {
        let (entries, bytes) = self.lock().map(|l| (l.map.len() as u64, l.bytes as u64)).unwrap_or((0, 0));
        MemoryStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            insertions: self.insertions.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries,
            bytes,
            capacity_bytes: self.capacity_bytes as u64,
        }
    }
}

/// The tier's counters and occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub hits: u64,
    pub misses: u64,
    pub insertions: u64,
    pub evictions: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

impl Default for MemoryTier {
    /// 64 MiB: ~300k short messages, or ~30k at the 2000-character cap.
    fn default() -> Self {
        MemoryTier::with_megabytes(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Label, Scores};

    fn r(label: Label, score: f32) -> MessageResult {
        MessageResult { label, score, scores: Scores { negative: 0.0, neutral: 1.0 - score, positive: score } }
    }

    fn same(a: Option<MessageResult>, b: Option<MessageResult>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    fn scope(sha: &str) -> CacheScope {
        CacheScope::from_parts(sha, "0.1.0", "m", "dir")
    }

    #[test]
    fn a_stored_result_is_found_and_counted() {
        let cache = MemoryTier::new(1 << 20);
        let s = scope("a");
        assert!(cache.get(&s, "hi").is_none());
        cache.insert(&s, "hi", r(Label::Positive, 0.9));
        assert!(same(cache.get(&s, "hi"), Some(r(Label::Positive, 0.9))));
        let st = cache.stats();
        assert_eq!((st.hits, st.misses, st.entries, st.insertions), (1, 1, 1, 1));
        assert_eq!(st.bytes, (2 + ENTRY_OVERHEAD_BYTES) as u64);
    }

    #[test]
    fn scopes_never_share_entries() {
        let cache = MemoryTier::new(1 << 20);
        cache.insert(&scope("a"), "hi", r(Label::Positive, 0.9));
        assert!(cache.get(&scope("b"), "hi").is_none());
        assert!(cache.get(&CacheScope::from_parts("a", "0.1.0", "m", "other-dir"), "hi").is_none());
        assert!(cache.get(&scope("a"), "hi").is_some());
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let per = 10 + ENTRY_OVERHEAD_BYTES;
        let cache = MemoryTier::new(3 * per);
        let s = scope("a");
        for t in ["aaaaaaaaa0", "aaaaaaaaa1", "aaaaaaaaa2"] {
            cache.insert(&s, t, r(Label::Neutral, 0.5));
        }
        // Touch 0 so that 1 is the least recently used.
        assert!(cache.get(&s, "aaaaaaaaa0").is_some());
        cache.insert(&s, "aaaaaaaaa3", r(Label::Neutral, 0.5));
        assert!(cache.get(&s, "aaaaaaaaa1").is_none());
        assert!(cache.get(&s, "aaaaaaaaa0").is_some());
        let st = cache.stats();
        assert_eq!((st.entries, st.evictions), (3, 1));
        assert!(st.bytes <= st.capacity_bytes);
        // One long text evicts as many short ones as its bytes need.
        cache.insert(&s, &"x".repeat(2 * per - ENTRY_OVERHEAD_BYTES), r(Label::Neutral, 0.5));
        let st = cache.stats();
        assert!(st.bytes <= st.capacity_bytes, "{st:?}");
        assert_eq!(st.entries, 2);
    }

    #[test]
    fn a_text_larger_than_the_cache_is_not_stored() {
        let cache = MemoryTier::new(50);
        cache.insert(&scope("a"), &"x".repeat(100), r(Label::Neutral, 0.5));
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = MemoryTier::with_megabytes(0);
        assert!(!cache.is_enabled());
        cache.insert(&scope("a"), "hi", r(Label::Positive, 0.9));
        assert!(cache.get(&scope("a"), "hi").is_none());
        assert_eq!(cache.stats().misses, 1);
    }
}
