use super::bindings::PluginError;

/// Why a plugin instance stopped: each kind means something different to an
/// operator (see the README's troubleshooting section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The call ran past its epoch (wall-clock) deadline: a hang.
    Deadline,
    /// The call used up its fuel budget: runaway computation.
    OutOfFuel,
    /// The guest recursed past the wasm stack limit.
    StackOverflow,
    /// The guest tried to grow memory past the per-instance cap.
    MemoryLimit,
    /// The guest panicked or aborted (`unreachable`).
    Panic,
    /// The guest accessed memory out of bounds (a bug, or its shadow stack overflowed).
    MemoryFault,
    /// The owner interrupted the call (activity cancelled, shutdown).
    Cancelled,
    /// Any other trap (bad memory access, ...).
    Other,
}

impl TrapKind {
    pub const ALL: [TrapKind; 8] = [
        TrapKind::Deadline,
        TrapKind::OutOfFuel,
        TrapKind::StackOverflow,
        TrapKind::MemoryLimit,
        TrapKind::Panic,
        TrapKind::MemoryFault,
        TrapKind::Cancelled,
        TrapKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Deadline => "deadline",
            TrapKind::OutOfFuel => "out_of_fuel",
            TrapKind::StackOverflow => "stack_overflow",
            TrapKind::MemoryLimit => "memory_limit",
            TrapKind::Panic => "panic",
            TrapKind::MemoryFault => "memory_fault",
            TrapKind::Cancelled => "cancelled",
            TrapKind::Other => "other",
        }
    }

    pub(crate) fn classify(err: &wasmtime::Error) -> TrapKind {
        use wasmtime::Trap;
        if err.downcast_ref::<super::instance::Interrupted>().is_some() {
            return TrapKind::Cancelled;
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
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
