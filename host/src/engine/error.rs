use super::bindings::PluginError;

pub use crate::outcome::TrapKind;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read plugin {path}: {source}")]
    ReadPlugin { path: String, source: std::io::Error },
    #[error(transparent)]
    CacheDir(#[from] super::cache_dir::CacheDirError),
    #[error("plugin does not compile as a component: {0}")]
    Compile(String),
    #[error("plugin does not implement the llma:sentiment/plugin world: {0}")]
    WrongWorld(String),
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    #[error("model directory {path}: {reason}")]
    ModelDir { path: String, reason: String },
    #[error("plugin trapped in `{call}` ({kind}): {detail}")]
    Trapped { call: &'static str, kind: TrapKind, detail: String },
    #[error("plugin `{call}` failed: {error}")]
    Plugin { call: &'static str, error: PluginError },
    /// An option the plugin's interface version cannot honour.
    #[error("plugin cannot honour the options: {0}")]
    Unsupported(String),
}

impl EngineError {
    /// Whether trying the same work again (on a fresh instance) may succeed.
    /// A trap is retried once by the caller's policy; plugin errors about the
    /// input are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Trapped { .. } => true,
            EngineError::Plugin { error, .. } => matches!(error, PluginError::ModelNotLoaded | PluginError::Inference(_)),
            _ => false,
        }
    }

    pub fn trap_kind(&self) -> Option<TrapKind> {
        match self {
            EngineError::Trapped { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
