//! Cranelift's compiled functions, kept across plugin loads.
//!
//! wasmtime's incremental compilation asks this store for each function by a
//! key that covers the function's code and the compiler's settings, and
//! compiles only the functions it does not find. A plugin is compiled in up
//! to three forms (as it is, instrumented for the snapshot, and the
//! snapshot) that share all their functions, and successive builds of a
//! plugin share most of theirs (tract, the tokenizer, std): with the store
//! kept on disk between loads, a new plugin version, a worker restarted
//! after its artifacts were pruned or a second worker on the machine
//! compiles only what changed.
//!
//! The store is in memory during a load (one load at a time per engine)
//! and one file in the compile cache dir between loads (`<key>.functions`,
//! the key naming the engine like an artifact's, so it is pruned with them),
//! checked against its digest before it is read like every cached native
//! code (see `integrity`). The file holds the functions of the latest load,
//! then older ones, up to [`MAX_FILE_BYTES`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use wasmtime::Engine;

use super::cache::{digest_path, discard, engine_fingerprint, mark_used, write_with_digest};
use super::integrity;

/// The file's size cap: about two plugins' functions (the sentiment
/// plugin's take ~140 MB, its snapshot's own ~3,000 of them included).
pub const MAX_FILE_BYTES: usize = 256 << 20;

/// A function no load asked for this many times in a row leaves the file:
/// those compiled for one snapshot only (code that reads the snapshot's
/// own constants) and those of plugins no longer loaded.
const MAX_IDLE_LOADS: u32 = 4;

/// What starts a file of this format (and changes with it).
const MAGIC: &[u8; 8] = b"LLMAFN1\n";

/// How a load's functions were obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionStats {
    /// Compiled by Cranelift during the load.
    pub compiled: u64,
    /// Found in the store (from disk or an earlier form of the same load).
    pub reused: u64,
}

#[derive(Debug, Default)]
struct Entry {
    code: Vec<u8>,
    /// Loads in a row that did not ask for it, before the current one.
    idle: u32,
    /// Asked for or compiled during the current load.
    used: bool,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<Vec<u8>, Entry>,
    stats: FunctionStats,
    /// The file to read at the first lookup: a load served entirely by
    /// cached artifacts never reads it.
    unread: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub(super) struct FunctionCache(Mutex<Store>);

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut store = self.0.lock();
        if let Some(file) = store.unread.take() {
            store.read(&file);
        }
        let store = &mut *store;
        let entry = store.entries.get_mut(key)?;
        entry.used = true;
        store.stats.reused += 1;
        Some(Cow::Owned(entry.code.clone()))
    }

    fn insert(&self, key: &[u8], code: Vec<u8>) -> bool {
        let mut store = self.0.lock();
        store.stats.compiled += 1;
        store.entries.insert(key.to_vec(), Entry { code, idle: 0, used: true });
        true
    }
}

/// The store's file in `dir` for this engine (the same wasmtime build,
/// settings and CPU features as the code in it).
pub(super) fn path(engine: &Engine, dir: &Path) -> PathBuf {
    let mut h = engine_fingerprint(engine);
    sha2::Digest::update(&mut h, b"functions");
    dir.join(format!("{}.functions", hex::encode(sha2::Digest::finalize(h))))
}

impl Store {
    /// Adds the entries of `file` (when it exists and matches its digest),
    /// counted as unused so far. A file that does not match or parse is
    /// deleted, logged and counted, and the load compiles what it needs.
    fn read(&mut self, file: &Path) {
        if !file.is_file() {
            return;
        }
        let parsed = integrity::read_checked(file, &digest_path(file))
            .map_err(|m| (m.reason(), m.to_string()))
            .and_then(|bytes| parse(&bytes).map_err(|why| ("malformed", why.to_string())));
        match parsed {
            Ok(entries) => {
                for (key, idle, code) in entries {
                    self.entries.entry(key).or_insert(Entry { code, idle, used: false });
                }
            }
            Err((reason, why)) => {
                discard(file, "functions", reason);
                tracing::warn!(path = %file.display(), reason = %why, "discarded the cached compiled functions; compiling them again");
            }
        }
    }
}

impl FunctionCache {
    /// Starts a load whose store is kept in `file` (none: in memory only,
    /// for this load).
    pub(super) fn begin(&self, file: Option<&Path>) {
        let mut store = self.0.lock();
        store.stats = FunctionStats::default();
        store.unread = file.map(Path::to_path_buf);
    }

    /// Ends a load: writes the store to `file` when the load changed it
    /// (this load's functions first, then the others by how recently a load
    /// used them, up to [`MAX_FILE_BYTES`] and [`MAX_IDLE_LOADS`]), empties
    /// it and returns what the load compiled and reused.
    pub(super) fn finish(&self, file: Option<&Path>) -> FunctionStats {
        let mut store = self.0.lock();
        let stats = store.stats;
        let entries = std::mem::take(&mut store.entries);
        store.unread = None;
        drop(store);
        let Some(file) = file else { return stats };
        if stats.compiled > 0 || entries.values().any(|e| !e.used) {
            if let Err(e) = write_with_digest(file, &serialize(entries)) {
                tracing::warn!(path = %file.display(), error = %e, "cannot cache the compiled functions");
            }
        } else if stats.reused > 0 {
            mark_used(file);
        }
        stats
    }
}

fn serialize(entries: HashMap<Vec<u8>, Entry>) -> Vec<u8> {
    let mut kept: Vec<(u32, Vec<u8>, Vec<u8>)> = entries
        .into_iter()
        .map(|(key, e)| (if e.used { 0 } else { e.idle + 1 }, key, e.code))
        .filter(|(idle, _, _)| *idle <= MAX_IDLE_LOADS)
        .collect();
    // The most recently used first, then by key: the same store writes the
    // same file.
    kept.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut out = MAGIC.to_vec();
    for (idle, key, code) in kept {
        if out.len() + 12 + key.len() + code.len() > MAX_FILE_BYTES {
            break;
        }
        out.extend_from_slice(&idle.to_le_bytes());
        for part in [&key, &code] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(&'static str);

/// The file's entries: (key, idle loads, code).
fn parse(bytes: &[u8]) -> Result<Vec<(Vec<u8>, u32, Vec<u8>)>, Malformed> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(Malformed("not a function cache file of this version"))?;
    let word = |rest: &mut &[u8]| -> Result<u32, Malformed> {
        let (word, tail) = rest.split_first_chunk::<4>().ok_or(Malformed("truncated entry"))?;
        *rest = tail;
        Ok(u32::from_le_bytes(*word))
    };
    let part = |rest: &mut &[u8]| -> Result<Vec<u8>, Malformed> {
        let len = word(rest)? as usize;
        let part = rest.get(..len).ok_or(Malformed("truncated entry"))?;
        *rest = &rest[len..];
        Ok(part.to_vec())
    };
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let idle = word(&mut rest)?;
        let key = part(&mut rest)?;
        let code = part(&mut rest)?;
        entries.push((key, idle, code));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn a_store_round_trips_through_its_file_with_the_latest_load_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.functions");
        let cache = FunctionCache::default();
        cache.begin(Some(&file));
        assert!(cache.get(b"a").is_none());
        cache.insert(b"a", vec![1; 10]);
        cache.insert(b"b", vec![2; 20]);
        assert_eq!(cache.finish(Some(&file)), FunctionStats { compiled: 2, reused: 0 });
        assert!(cache.get(b"a").is_none(), "finish empties the store");

        cache.begin(Some(&file));
        assert_eq!(cache.get(b"b").as_deref(), Some(&[2u8; 20][..]));
        cache.insert(b"c", vec![3; 5]);
        assert_eq!(cache.finish(Some(&file)), FunctionStats { compiled: 1, reused: 1 });
        let entries = parse(&std::fs::read(&file).unwrap()).unwrap();
        let keys: Vec<_> = entries.iter().map(|(k, idle, _)| (k.as_slice(), *idle)).collect();
        assert_eq!(keys, [(&b"b"[..], 0), (b"c", 0), (b"a", 1)], "this load's functions, then the older one");

        // A function no load asks for leaves after MAX_IDLE_LOADS loads.
        for _ in 0..MAX_IDLE_LOADS {
            cache.begin(Some(&file));
            assert!(cache.get(b"b").is_some() && cache.get(b"c").is_some());
            cache.finish(Some(&file));
        }
        let keys: Vec<_> = parse(&std::fs::read(&file).unwrap()).unwrap().into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn a_changed_or_malformed_file_is_discarded_and_the_load_compiles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.functions");
        let cache = FunctionCache::default();
        cache.begin(Some(&file));
        cache.insert(b"a", vec![1; 10]);
        cache.finish(Some(&file));
        let mut bytes = std::fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        cache.begin(Some(&file));
        assert!(cache.get(b"a").is_none(), "changed code was served");
        assert!(!file.exists() && !digest_path(&file).exists(), "the changed file stays");

        // Recorded, but not a store: a truncated entry.
        let bad = [MAGIC.as_slice(), &5u32.to_le_bytes(), b"ab"].concat();
        std::fs::write(&file, &bad).unwrap();
        std::fs::write(digest_path(&file), integrity::digest_bytes(&bad)).unwrap();
        cache.begin(Some(&file));
        assert!(cache.get(b"a").is_none());
        assert!(!file.exists());
        assert_eq!(cache.finish(None), FunctionStats::default());
    }

    #[test]
    fn the_file_keeps_to_its_cap_dropping_older_functions_first() {
        let big = vec![0u8; MAX_FILE_BYTES / 4];
        let mut entries = HashMap::new();
        for (key, idle, used) in [(b"old2", 2, false), (b"new1", 3, true), (b"new2", 0, true), (b"old1", 0, false)] {
            entries.insert(key.to_vec(), Entry { code: big.clone(), idle, used });
        }
        let kept = parse(&serialize(entries)).unwrap();
        let keys: Vec<_> = kept.iter().map(|(k, _, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"new1"[..], b"new2", b"old1"]);
    }
}
