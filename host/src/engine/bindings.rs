//! Host bindings generated from the WIT contract in `wit/`.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});

pub use exports::llma::sentiment::sentiment::{
    Error as PluginError, ExtractOptions, Label, Limits as PluginLimits, MessageResult, OverallResult, PluginInfo, Scores,
    UserMessage,
};

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            PluginError::ModelNotLoaded => write!(f, "model not loaded"),
            PluginError::ModelLoad(m) => write!(f, "model load: {m}"),
            PluginError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            PluginError::Tokenize(m) => write!(f, "tokenize: {m}"),
            PluginError::Inference(m) => write!(f, "inference: {m}"),
        }
    }
}
