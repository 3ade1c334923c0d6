//! Which plugin and model to run: explicit paths, or the embedded default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::embedded;
use crate::signature::{Refusal, TrustedKeys};
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
    /// `plugin.trusted_keys`: a plugin file must be signed by one of them.
    pub trusted_keys: Option<Arc<TrustedKeys>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    CacheDir(#[from] crate::engine::cache_dir::CacheDirError),
    #[error("no cache dir: no $XDG_CACHE_HOME and no home directory, and the shared temp dir is never used; set plugin.cache_dir (LLMA_SENTIMENT_CACHE_DIR)")]
    NoCacheDir,
    #[error("plugin {path} refused: {refusal}")]
    Refused { path: String, refusal: Refusal },
}

/// The user's cache dir (`$XDG_CACHE_HOME`, else `~/.cache`) +
/// `llma-sentiment`: where `plugin.cache_dir` (set by its layers,
/// `$LLMA_SENTIMENT_CACHE_DIR` among them) points when unset. Never the
/// shared temp dir: the cache holds native code the worker runs.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("llma-sentiment"))
}

impl PluginSource {
    /// The cache dir, created 0700 and checked: nobody else can write it.
    pub fn secure_cache_dir(&self) -> Result<PathBuf, SourceError> {
        let dir = self.cache_dir()?;
        crate::engine::cache_dir::secure(&dir)?;
        Ok(dir)
    }

    /// Where the cache is (not created nor checked: see `secure_cache_dir`).
    pub fn cache_dir(&self) -> Result<PathBuf, SourceError> {
        self.cache_dir.clone().or_else(default_cache_dir).ok_or(SourceError::NoCacheDir)
    }

    fn compile_cache_dir(&self) -> Result<Option<PathBuf>, SourceError> {
        Ok((!self.no_compile_cache).then(|| self.cache_dir()).transpose()?.map(|d| d.join("compiled")))
    }

    /// The engine, keeping compiled artifacts and snapshots in the cache dir
    /// (neither without the compile cache); `snapshots` says whether this
    /// command may spend the time to make a snapshot.
    pub fn engine(&self, limits: Limits, snapshots: SnapshotPolicy) -> Result<PluginEngine, SourceError> {
        // The whole dir, not only the compiled artifacts: it also holds the
        // unpacked default model and the record of the active version.
        self.secure_cache_dir()?;
        let mut options = EngineOptions { snapshots, ..EngineOptions::default() };
        if let Some(budget) = self.cache_budget_bytes {
            options.cache_budget_bytes = budget;
        }
        Ok(PluginEngine::with_options(limits, self.compile_cache_dir()?, options)?)
    }

    pub fn model_dir(&self) -> Result<PathBuf, SourceError> {
        match &self.model_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(embedded::model_dir(&self.cache_dir()?)?),
        }
    }

    pub fn load(&self, engine: &PluginEngine) -> Result<Arc<Plugin>, SourceError> {
        let model_dir = self.model_dir()?;
        let plugin = match &self.plugin {
            Some(p) => engine.load_plugin(&self.read_trusted(p)?, &model_dir)?,
            // Trusted by being built in: the binary is what the operator runs.
            None => engine.load_plugin(embedded::plugin()?, &model_dir)?,
        };
        tracing::debug!(
            from_cache = plugin.from_cache,
            compile_ms = plugin.compile_time.as_millis() as u64,
            functions_compiled = plugin.functions.compiled,
            functions_reused = plugin.functions.reused,
            from_snapshot = plugin.from_snapshot(),
            "plugin ready"
        );
        Ok(Arc::new(plugin))
    }

    /// Reads the plugin file once and, with trusted keys, verifies that very
    /// buffer: the caller compiles the bytes returned, never the file again
    /// (the signature does not cover the preamble, and the file may change).
    pub fn read_trusted(&self, path: &Path) -> Result<Vec<u8>, SourceError> {
        let wasm = std::fs::read(path)
            .map_err(|source| crate::engine::EngineError::ReadPlugin { path: path.display().to_string(), source })?;
        crate::signature::enforce(self.trusted_keys.as_deref(), &wasm).map_err(|refusal| SourceError::Refused { path: path.display().to_string(), refusal })?;
        Ok(wasm)
    }
}
