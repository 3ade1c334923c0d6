//! Picks up new plugin versions from a directory: the newest `*.wasm` (by
//! modification time, then name) is the one to serve. Polling (not inotify)
//! keeps it portable and lets a file finish being written: a file is only
//! considered once its size and mtime held still for one poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    path: PathBuf,
    modified: SystemTime,
    len: u64,
}

/// The newest `*.wasm` in `dir`, if any.
pub fn newest_plugin(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    Ok(newest(dir)?.map(|c| c.path))
}

fn newest(dir: &Path) -> std::io::Result<Option<Candidate>> {
    let mut best: Option<Candidate> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        let c = Candidate { path, modified: meta.modified()?, len: meta.len() };
        if best.as_ref().is_none_or(|b| (c.modified, &c.path) > (b.modified, &b.path)) {
            best = Some(c);
        }
    }
    Ok(best)
}

/// Watches `dir` every `interval`; a message on `rescan` (SIGHUP) polls at
/// once and activates the newest file even if it was there before. The
/// files present at start count as seen: a restarted worker keeps serving
/// the version that was active (see `active_version`), and only a file that
/// arrives later (or a SIGHUP) switches it.
pub fn spawn(
    dir: PathBuf,
    registry: Arc<Registry>,
    interval: Duration,
    mut rescan: tokio::sync::mpsc::UnboundedReceiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: Option<Candidate> = newest(&dir).ok().flatten();
        let mut pending: Option<Candidate> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                Some(()) = rescan.recv() => { pending = None; seen = None; }
            }
            let current = match newest(&dir) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugin directory");
                    continue;
                }
            };
            if seen.as_ref() == Some(&current) {
                continue;
            }
            // Only a file that held still since the last poll is complete.
            if pending.as_ref() != Some(&current) {
                pending = Some(current);
                continue;
            }
            seen = pending.take();
            let path = current.path.clone();
            let reg = registry.clone();
            tracing::info!(path = %path.display(), "new plugin file: validating");
            match tokio::task::spawn_blocking(move || reg.activate_file(&path, None)).await {
                Ok(Ok(v)) => tracing::info!(version = %v.label(), "plugin from the directory is active"),
                Ok(Err(e)) => tracing::error!(path = %current.path.display(), error = %e, "plugin rejected; the current version keeps serving"),
                Err(e) => tracing::error!(error = %e, "plugin validation task died"),
            }
        }
    })
}
