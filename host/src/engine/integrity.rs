//! SHA-256 digests of the cache's native code, recorded when an artifact or
//! a snapshot is written and checked before it is deserialized.
//!
//! A compiled artifact is machine code that `deserialize` maps and runs
//! without any check of its own beyond a header; a file changed on disk
//! would run as it is. The digest is a sidecar beside the file
//! (`<file stem>.digest`: `"<len> <sha256 hex>"`, a SHA-256 hash list), written after the file
//! (each write atomic): a crash in between leaves a file without a digest,
//! which is discarded like a mismatch. The cache dir's ownership check
//! (`cache_dir`) is what keeps others from rewriting both; the digest makes
//! any change to a file (a flipped bit, a truncation, an edit made with the
//! right permissions but not through the cache) a rebuild, never a load.

use std::path::Path;

/// Why a cached file was not loaded; each has a label for `/metrics`.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("no digest beside it (file is {actual})")]
    NoDigest { actual: String },
    #[error("digest {actual} does not match the recorded {expected}")]
    Differs { actual: String, expected: String },
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
}

impl Mismatch {
    pub fn reason(&self) -> &'static str {
        match self {
            Mismatch::NoDigest { .. } => "no_digest",
            Mismatch::Differs { .. } => "mismatch",
            Mismatch::Unreadable(_) => "unreadable",
        }
    }
}

/// `"<len> <sha256 hex>"` of `bytes`: a SHA-256 hash list over 1 MiB
/// chunks (see `llma_sparse_file::digest`).
pub fn digest_bytes(bytes: &[u8]) -> String {
    llma_sparse_file::digest_bytes(bytes)
}

/// [`digest_bytes`] of a file, its holes not read (a snapshot spans the
/// model's whole heap: 1.6 GB apparent for RoBERTa-base, ~570 MB of data),
/// its chunks hashed on every core.
pub fn digest_file(path: &Path) -> std::io::Result<String> {
    llma_sparse_file::digest(path)
}

fn expected(sidecar: &Path) -> String {
    std::fs::read_to_string(sidecar).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn compare(actual: String, expected: String) -> Result<String, Mismatch> {
    if expected.is_empty() {
        Err(Mismatch::NoDigest { actual })
    } else if actual == expected {
        Ok(actual)
    } else {
        Err(Mismatch::Differs { actual, expected })
    }
}

/// Checks the file at `path` against its recorded digest; returns the digest.
pub fn check_file(path: &Path, sidecar: &Path) -> Result<String, Mismatch> {
    let actual = digest_file(path).map_err(Mismatch::Unreadable)?;
    compare(actual, expected(sidecar))
}

/// Reads the file at `path` once and checks those bytes against its
/// recorded digest: what is checked is what is loaded.
pub fn read_checked(path: &Path, sidecar: &Path) -> Result<Vec<u8>, Mismatch> {
    let bytes = std::fs::read(path).map_err(Mismatch::Unreadable)?;
    compare(digest_bytes(&bytes), expected(sidecar))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_accepted_only_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (file, sidecar) = (dir.path().join("a.cwasm"), dir.path().join("a.digest"));
        let bytes = vec![9u8; 3 << 20];
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read_checked(&file, &sidecar).unwrap_err().reason(), "no_digest");
        std::fs::write(&sidecar, digest_bytes(&bytes)).unwrap();
        assert_eq!(read_checked(&file, &sidecar).unwrap(), bytes);
        assert_eq!(check_file(&file, &sidecar).unwrap(), digest_bytes(&bytes), "streamed and in-memory digests agree");
        let mut changed = bytes.clone();
        changed[(2 << 20) + 5] ^= 0x80;
        std::fs::write(&file, &changed).unwrap();
        assert_eq!(read_checked(&file, &sidecar).unwrap_err().reason(), "mismatch");
        assert_eq!(check_file(&file, &sidecar).unwrap_err().reason(), "mismatch");
    }
}
