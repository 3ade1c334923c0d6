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
