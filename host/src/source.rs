//! Which plugin and model to run: explicit paths, or the embedded default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::embedded;
use crate::engine::{EngineOptions, Limits, Plugin, PluginEngine, SnapshotPolicy};

#[derive(Debug, Clone, Default)]
pub struct PluginSource {
    /// A plugin component (`.wasm`); `None` for the embedded default.
    pub plugin: Option<PathBuf>,
    /// A model bundle directory; `None` for the embedded default.
    pub model_dir: Option<PathBuf>,
    /// Compiled-component cache and unpacked default model; `None` for the user cache dir.
    pub cache_dir: Option<PathBuf>,
    /// Disables the compiled-component cache.
    pub no_compile_cache: bool,
    /// Disk the compiled-component cache may take (`None`: the engine's default).
    pub cache_budget_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// The user's cache dir, else the temp dir: where `plugin.cache_dir` (set
/// by its layers, `$LLMA_SENTIMENT_CACHE_DIR` among them) points when unset.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("llma-sentiment")
}

impl PluginSource {
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    fn compile_cache_dir(&self) -> Option<PathBuf> {
        (!self.no_compile_cache).then(|| self.cache_dir().join("compiled"))
    }

    /// The engine, keeping compiled artifacts and snapshots in the cache dir
    /// (neither without the compile cache); `snapshots` says whether this
    /// command may spend the time to make a snapshot.
    pub fn engine(&self, limits: Limits, snapshots: SnapshotPolicy) -> Result<PluginEngine, SourceError> {
        let mut options = EngineOptions { snapshots, ..EngineOptions::default() };
        if let Some(budget) = self.cache_budget_bytes {
            options.cache_budget_bytes = budget;
        }
        Ok(PluginEngine::with_options(limits, self.compile_cache_dir(), options)?)
    }

    pub fn model_dir(&self) -> Result<PathBuf, SourceError> {
        match &self.model_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(embedded::model_dir(&self.cache_dir())?),
        }
    }

    pub fn load(&self, engine: &PluginEngine) -> Result<Arc<Plugin>, SourceError> {
        let model_dir = self.model_dir()?;
        let plugin = match &self.plugin {
            Some(p) => engine.load_plugin_file(Path::new(p), &model_dir)?,
            None => engine.load_plugin(embedded::plugin()?, &model_dir)?,
        };
        tracing::debug!(
            from_cache = plugin.from_cache,
            compile_ms = plugin.compile_time.as_millis() as u64,
            from_snapshot = plugin.from_snapshot(),
            "plugin ready"
        );
        Ok(Arc::new(plugin))
    }
}
