//! On-disk cache of compiled components.
//!
//! Compiling the 20+ MB plugin with Cranelift takes ~12 s; loading the
//! compiled artifact takes ~30 ms. An artifact is only valid for the same
//! wasmtime build, engine `Config` and CPU features, so the key covers all
//! three, plus the component's own bytes.
//!
//! Every plugin version adds an artifact (~75 MB) and, per model, a snapshot
//! (RoBERTa-base: ~570 MB on disk), so the cache has a budget: whenever an
//! entry is written, the least recently used ones (by the time their files
//! were last written or loaded) are removed until the rest fits. A running
//! instance keeps its mapping of a removed file; another process that wanted
//! it compiles or snapshots again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::{integrity, EngineError};

/// Disk the cache may take by default: artifacts and snapshots of about a
/// dozen plugin versions or models of RoBERTa-base's size.
pub const DEFAULT_BUDGET_BYTES: u64 = 8 << 30;

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    budget_bytes: u64,
}

/// Feeds std's `Hash` into SHA-256 so the key does not depend on the
/// (unspecified) std hasher.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A hasher already fed with everything a compiled artifact depends on
/// besides its input: the wasmtime build and engine `Config` (wasmtime's
/// compatibility hash) and the CPU features of this host (Cranelift compiles
/// for the features it detects, so an artifact made on an AVX-512 machine
/// must not be loaded from a cache dir shared with an AVX2 one).
pub(super) fn engine_fingerprint(engine: &Engine) -> Sha256 {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(super::cpu::features().as_bytes());
    h.0
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    /// `None` disables caching (every load compiles); the cache's files
    /// take at most `budget_bytes` of disk (allocated blocks: snapshots are
    /// sparse), beyond the entry just written.
    pub fn new(dir: Option<PathBuf>, budget_bytes: u64) -> Self {
        if let Some(dir) = &dir {
            remove_stale_temporaries(dir, STALE_TEMPORARY);
        }
        CompileCache { dir, budget_bytes }
    }

    /// Where artifacts (and snapshots, beside them) are kept.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn key(engine: &Engine, wasm: &[u8]) -> String {
        let mut h = engine_fingerprint(engine);
        h.update(wasm);
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{key}.cwasm")))
    }

    /// Loads the compiled component from the cache, or compiles and stores it.
    /// Returns whether the cache served it.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8]) -> Result<(Component, bool), EngineError> {
        let key = Self::key(engine, wasm);
        if let Some(path) = self.path(&key) {
            if path.is_file() {
                if let Some(component) = load_checked(engine, &path) {
                    mark_used(&path);
                    return Ok((component, true));
                }
            }
        }
        let compiled = engine.precompile_component(wasm).map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        if let Some(path) = self.path(&key) {
            match write_with_digest(&path, &compiled) {
                Ok(()) => {
                    self.prune(&[&key]);
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component"),
            }
        }
        // SAFETY: the bytes were produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        Ok((component, false))
    }

    /// Removes whole entries (every file of one key), least recently used
    /// first, until the cache fits its budget; never those in `keep`, and
    /// never a file whose name is not `<key>.…` with a 64-hex-digit key (the
    /// directory may be shared). Returns the number of entries removed.
    pub fn prune(&self, keep: &[&str]) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let Ok(listing) = std::fs::read_dir(dir) else { return 0 };
        // key -> (bytes on disk, newest use, files)
        let mut entries: HashMap<String, (u64, SystemTime, Vec<PathBuf>)> = HashMap::new();
        for file in listing.flatten() {
            let name = file.file_name();
            let Some((key, _)) = name.to_str().and_then(|n| n.split_once('.')) else { continue };
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let entry = entries.entry(key.to_string()).or_insert((0, UNIX_EPOCH, Vec::new()));
            entry.0 += meta.blocks() * 512;
            entry.1 = entry.1.max(meta.modified().unwrap_or(UNIX_EPOCH));
            entry.2.push(file.path());
        }
        let mut total: u64 = entries.values().map(|e| e.0).sum();
        let mut oldest_first: Vec<_> = entries.into_iter().filter(|(key, _)| !keep.contains(&key.as_str())).collect();
        oldest_first.sort_by_key(|(_, (_, used, _))| *used);
        let mut removed = 0;
        for (key, (bytes, _, files)) in oldest_first {
            if total <= self.budget_bytes {
                break;
            }
            for file in files {
                let _ = std::fs::remove_file(file);
            }
            total = total.saturating_sub(bytes);
            removed += 1;
            tracing::info!(key = %key, bytes, budget = self.budget_bytes, "removed the least recently used compile cache entry");
        }
        removed
    }
}

/// Where the SHA-256 of the file at `path` (`<key>.cwasm`, `<key>.functions`,
/// `<key>.snapshot.cwasm`) is recorded: the same name with the extension
/// `digest`, so pruning, which goes by the key, removes both.
pub(super) fn digest_path(path: &Path) -> PathBuf {
    path.with_extension("digest")
}

/// The artifact at `path`, if it matches its recorded digest and wasmtime
/// accepts it; otherwise it is deleted (with its digest), logged and
/// counted, and the caller compiles anew. The file is read once: the bytes
/// checked are the bytes deserialized.
fn load_checked(engine: &Engine, path: &Path) -> Option<Component> {
    let (reason, why) = match integrity::read_checked(path, &digest_path(path)) {
        // SAFETY: the bytes are an artifact this cache wrote with
        // `precompile_component` for an engine with the same compatibility
        // hash (part of the key), unchanged since (their SHA-256 is the one
        // recorded when they were written, in a dir only this user can
        // write); wasmtime also checks the header.
        Ok(bytes) => match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => return Some(c),
            Err(e) => ("refused", format!("wasmtime refused it: {e:#}")),
        },
        Err(m) => (m.reason(), m.to_string()),
    };
    discard(path, "artifact", reason);
    tracing::warn!(path = %path.display(), reason = %why, "discarded a cached compiled artifact; compiling it again");
    None
}

/// Writes `bytes` to `path`, then their digest beside it (see
/// [`digest_path`]): the digest goes last, so a crash in between leaves a
/// file without one, which the next load discards.
pub(super) fn write_with_digest(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes)?;
    write_atomically(&digest_path(path), integrity::digest_bytes(bytes).as_bytes())
}

/// Deletes a cached file that failed its check, and its digest, and counts
/// it by `kind` and `reason`; the caller logs why and rebuilds it.
pub(super) fn discard(path: &Path, kind: &str, reason: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(digest_path(path));
    crate::metrics::record_cache_discarded(kind, reason);
}

/// Records that a cached file was just used: pruning goes by this time.
pub(super) fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A temporary file this old is left over from a write that never finished
/// (a process killed mid-write). Writes are short: the bytes exist before the
/// file is made, so a live writer's file is minutes old at most.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes the leftover temporaries of killed writes (`.artifact-*.tmp`,
/// see [`write_atomically`]) from the cache dir; those of live writers
/// (other processes sharing the dir) are younger than `older_than`.
fn remove_stale_temporaries(dir: &Path, older_than: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".artifact-") && name.ends_with(".tmp")) {
            continue;
        }
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if age.is_some_and(|a| a >= older_than) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %entry.path().display(), "removed the leftover of an unfinished cache write"),
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove the leftover of an unfinished cache write"),
            }
        }
    }
}

/// Writes to a uniquely named temporary file beside `path` and renames it
/// over `path`, so a concurrent reader or a crash never sees half an
/// artifact, and two writers (threads or processes) never share a temp file.
/// All-zero blocks are left as holes (a snapshot's memory image is mostly
/// zeroed garbage).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".artifact-").suffix(".tmp").tempfile_in(dir)?;
    llma_sparse_file::write_sparse(tmp.as_file_mut(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A killed write's temporary goes at the next start; a live writer's
    /// (younger) and every other file stay.
    #[test]
    fn leftovers_of_killed_writes_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".artifact-killed.tmp");
        let live = dir.path().join(".artifact-live.tmp");
        let artifact = dir.path().join("k.cwasm");
        for f in [&old, &live, &artifact] {
            std::fs::write(f, b"x").unwrap();
        }
        let an_hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().append(true).open(&old).unwrap().set_modified(an_hour_ago).unwrap();
        std::fs::File::options().append(true).open(&artifact).unwrap().set_modified(an_hour_ago).unwrap();
        CompileCache::new(Some(dir.path().to_path_buf()), u64::MAX);
        assert!(!old.exists(), "the killed write's leftover stays");
        assert!(live.exists() && artifact.exists(), "a live write or an artifact was removed");
    }

    #[test]
    fn concurrent_writers_of_one_artifact_never_leave_a_torn_or_stray_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomically(path, &vec![i; 256 * 1024]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 256 * 1024);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "one writer's bytes only");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.cwasm")], "no temp file left behind");
    }

    fn key(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn file(dir: &Path, name: &str, mib: usize, age_secs: u64) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![0x5a; mib << 20]).unwrap();
        let when = SystemTime::now() - std::time::Duration::from_secs(age_secs);
        std::fs::File::options().append(true).open(&path).unwrap().set_modified(when).unwrap();
        path
    }

    #[test]
    fn pruning_removes_whole_entries_least_recently_used_first_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (k1, k2, k3, k4) = (key(1), key(2), key(3), key(4));
        let oldest = file(d, &format!("{k1}.cwasm"), 1, 400);
        let snapshot = file(d, &format!("{k2}.snapshot.cwasm"), 2, 300);
        let sidecar = file(d, &format!("{k2}.snapshot.digest"), 0, 300);
        let used = file(d, &format!("{k3}.cwasm"), 1, 500);
        let newest = file(d, &format!("{k4}.cwasm"), 1, 10);
        let foreign = file(d, "notes.cwasm", 1, 1000);
        let short = file(d, "abc.cwasm", 1, 1000);
        // The oldest by write time, but loaded just now.
        mark_used(&used);

        // 5 MiB of entries against 3.5 MiB: k1 is the least recently used
        // but kept, so k2 goes, with both its files.
        let cache = CompileCache::new(Some(d.to_path_buf()), 7 << 19);
        assert_eq!(cache.prune(&[&k1]), 1);
        assert!(oldest.exists() && !snapshot.exists() && !sidecar.exists());
        assert_eq!(cache.prune(&[]), 0, "within the budget: nothing more");
        // 3 MiB against 2.5: the least recently used goes, not k3 (written
        // first, used last).
        let smaller = CompileCache::new(Some(d.to_path_buf()), 5 << 19);
        assert_eq!(smaller.prune(&[]), 1);
        assert!(!oldest.exists() && used.exists() && newest.exists());
        assert!(foreign.exists() && short.exists(), "files not named by a key are never touched");

        let none = CompileCache::new(None, 0);
        assert_eq!(none.prune(&[]), 0);
    }
}
