//! The active plugin version across restarts. Every switch (activation,
//! rollback) records which component and model serve, beside the cache; a
//! restarted worker serves that version again, not whatever file is newest
//! in `plugin.dir`. A plugin or model given explicitly wins over the record.
//! Workers of one task queue that share a cache dir share the record (they
//! serve one version); those of other queues do not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record of the workers of `task_queue` (at `address`, in `namespace`)
/// whose cache dir is `cache_dir`.
pub fn file_for(cache_dir: &Path, address: &str, namespace: &str, task_queue: &str) -> PathBuf {
    let queue = crate::engine::sha256_hex(format!("{address}\n{namespace}\n{task_queue}").as_bytes());
    cache_dir.join(format!("active-plugin-{}.json", &queue[..16]))
}

/// What served when the record was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRecord {
    /// The component file; `None` for the embedded default.
    pub plugin: Option<PathBuf>,
    pub model_dir: PathBuf,
    /// SHA-256 of the component's bytes when it was activated.
    pub plugin_sha256: String,
}

impl ActiveRecord {
    /// Records `self` in `path` (atomically: a crash leaves the old record).
    pub fn save(&self, path: &Path) {
        let written = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|json| crate::engine::write_atomically(path, &json));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot record the active plugin version: a restart serves the configured one");
        }
    }

    /// The record in `path`, if it still describes files that exist with the
    /// same bytes (the embedded default: this binary's); why not otherwise.
    pub fn load(path: &Path) -> Result<Option<ActiveRecord>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let record: ActiveRecord = serde_json::from_slice(&bytes).map_err(|e| format!("not a record: {e}"))?;
        let sha256 = match &record.plugin {
            Some(file) => crate::engine::sha256_hex(&std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?),
            None => crate::engine::sha256_hex(crate::embedded::plugin().map_err(|e| e.to_string())?),
        };
        if sha256 != record.plugin_sha256 {
            return Err("the component changed since it was activated".into());
        }
        if !record.model_dir.is_dir() {
            return Err(format!("the model dir {} is gone", record.model_dir.display()));
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_holds_only_while_its_files_do() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("p.wasm");
        std::fs::write(&plugin, b"component bytes").unwrap();
        let record = ActiveRecord {
            plugin: Some(plugin.clone()),
            model_dir: dir.path().to_path_buf(),
            plugin_sha256: crate::engine::sha256_hex(b"component bytes"),
        };
        let file = file_for(dir.path(), "127.0.0.1:7233", "default", "q");
        assert_ne!(file, file_for(dir.path(), "127.0.0.1:7233", "default", "another-queue"));
        assert_eq!(ActiveRecord::load(&file), Ok(None), "no record yet");
        record.save(&file);
        assert_eq!(ActiveRecord::load(&file), Ok(Some(record.clone())));
        std::fs::write(&plugin, b"other bytes").unwrap();
        assert!(ActiveRecord::load(&file).unwrap_err().contains("changed"));
        std::fs::write(&file, b"{").unwrap();
        assert!(ActiveRecord::load(&file).is_err());
    }
}
