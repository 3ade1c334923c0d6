//! On-disk cache of compiled components.
//!
//! Compiling the 20+ MB plugin with Cranelift takes ~12 s; loading the
//! compiled artifact takes ~30 ms. An artifact is only valid for the same
//! wasmtime build, engine `Config` and CPU features, so the key covers all
//! three, plus the component's own bytes.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::EngineError;

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
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
    /// `None` disables caching (every load compiles).
    pub fn new(dir: Option<PathBuf>) -> Self {
        CompileCache { dir }
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
                // SAFETY: the file is an artifact this cache wrote with
                // `precompile_component` for an engine with the same
                // compatibility hash (part of the key); wasmtime also checks
                // the header and refuses a mismatched artifact.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled artifact"),
                }
            }
        }
        let compiled = engine.precompile_component(wasm).map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        if let Some(path) = self.path(&key) {
            if let Err(e) = write_atomically(&path, &compiled) {
                tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
            }
        }
        // SAFETY: the bytes were produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        Ok((component, false))
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
}
