//! The default plugin and model bundle compiled into the binary.
//!
//! The model directory must be a real directory (the sandbox preopens it), so
//! the bundle is written once to the cache dir under its content hash.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod files {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("this binary was built without the embedded default plugin and model (build it with `make build`), so pass --plugin and --model")]
    Missing,
    #[error("cannot write the embedded model to {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

pub fn available() -> bool {
    !files::PLUGIN.is_empty()
}

pub fn plugin() -> Result<&'static [u8], EmbeddedError> {
    if available() { Ok(files::PLUGIN) } else { Err(EmbeddedError::Missing) }
}

/// Writes the default bundle under `cache_dir` (once per content) and returns its path.
pub fn model_dir(cache_dir: &Path) -> Result<PathBuf, EmbeddedError> {
    if !available() {
        return Err(EmbeddedError::Missing);
    }
    let mut h = Sha256::new();
    for (name, bytes) in files::MODEL_FILES {
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let digest = hex::encode(h.finalize());
    let dir = cache_dir.join("models").join(format!("default-{}", &digest[..16]));
    let werr = |path: &Path, source| EmbeddedError::Write { path: path.display().to_string(), source };
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    // Private like the rest of the cache dir (see `engine::cache_dir`),
    // whatever the umask.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .map_err(|e| werr(&dir, e))?;
    for (name, bytes) in files::MODEL_FILES {
        let path = dir.join(name);
        crate::engine::write_atomically(&path, bytes).map_err(|e| werr(&path, e))?;
    }
    let marker = dir.join(".complete");
    crate::engine::write_atomically(&marker, digest.as_bytes()).map_err(|e| werr(&marker, e))?;
    Ok(dir)
}
