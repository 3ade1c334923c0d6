//! The cache dir holds native code the engine maps and runs (compiled
//! artifacts, snapshots), so nobody but this user may be able to write to
//! it: it is created 0700, and a cache dir that is, or holds anything that
//! is, owned by another user or writable by group or others is refused with
//! the offending path. Refused, not worked around (disabling the cache
//! would hide the problem behind 12 s compiles at every start, and a
//! writable parent could swap the dir again): the operator fixes the
//! permissions or points `plugin.cache_dir` elsewhere.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    #[error("cache dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "cache dir refused: {path} {why}; it holds native code the worker runs, so only its own user (uid {uid}) may write \
         to it (fix with `chown -R {uid} DIR && chmod -R go-w DIR`, or set plugin.cache_dir elsewhere)"
    )]
    Unsafe { path: PathBuf, why: String, uid: u32 },
}

/// Creates `dir` (0700, with its missing parents) and checks it and
/// everything in it.
pub fn secure(dir: &Path) -> Result<(), CacheDirError> {
    let io = |path: &Path, source| CacheDirError::Io { path: path.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io(dir, e))?;
    let uid = rustix::process::geteuid().as_raw();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since it was listed (another process sharing the dir
            // renamed its temporary or pruned an entry): nothing to check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != dir => continue,
            Err(e) => return Err(io(&path, e)),
        };
        if let Some(why) = unsafe_because(&meta, uid) {
            return Err(CacheDirError::Unsafe { path, why, uid });
        }
        if meta.is_dir() {
            let listing = match std::fs::read_dir(&path) {
                Ok(listing) => listing,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != dir => continue,
                Err(e) => return Err(io(&path, e)),
            };
            for entry in listing {
                pending.push(entry.map_err(|e| io(&path, e))?.path());
            }
        }
    }
    Ok(())
}

/// Why a file or directory of the cache could be written by someone else.
fn unsafe_because(meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    if meta.uid() != uid {
        return Some(format!("is owned by uid {}", meta.uid()));
    }
    // A symbolic link's own mode bits mean nothing (always 0777).
    let mode = meta.permissions().mode();
    (!meta.file_type().is_symlink() && mode & 0o022 != 0).then(|| format!("is writable by group or others (mode {:o})", mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_refused_once_others_can_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/cache");
        secure(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let file = dir.join("k.cwasm");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        secure(&dir).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = secure(&dir).unwrap_err().to_string();
        assert!(err.contains("k.cwasm") && err.contains("writable by group"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o707)).unwrap();
        assert!(secure(&dir).unwrap_err().to_string().contains("mode 707"));
    }
}
