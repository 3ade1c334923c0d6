use super::bindings::PluginError;

pub use crate::outcome::TrapKind;

/// Which [`TrapKind`] a wasmtime error is.
pub(crate) fn trap_kind_of(err: &wasmtime::Error) -> TrapKind {
    use wasmtime::Trap;
    if err.downcast_ref::<super::instance::Interrupted>().is_some() {
        return TrapKind::Cancelled;
    }
    if err.downcast_ref::<super::instance::CallerDeadline>().is_some() {
        return TrapKind::Deadline;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => TrapKind::Deadline,
        Some(Trap::OutOfFuel) => TrapKind::OutOfFuel,
        Some(Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(Trap::UnreachableCodeReached) => TrapKind::Panic,
        Some(Trap::MemoryOutOfBounds) => TrapKind::MemoryFault,
        _ if format!("{err:#}").contains("forcing trap when growing memory") => TrapKind::MemoryLimit,
        _ => TrapKind::Other,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read plugin {path}: {source}")]
    ReadPlugin { path: String, source: std::io::Error },
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
