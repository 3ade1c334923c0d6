//! One generation through the plugin: extract, classify in batches
//! (reporting after every message), aggregate, build the sentiment event.
//! Shared by the CLI and the Temporal activity.

use std::ops::ControlFlow;

use chrono::Utc;

use crate::engine::{EngineError, ExtractOptions, Instance, InstanceSlot, MessageResult, PluginError};
use crate::event::{GenerationEvent, Producer, SentimentEvent, SkipReason};

#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    pub max_messages: u32,
    pub max_chars: u32,
    /// Texts per `classify` call (capped by the plugin's own limit).
    pub batch_size: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { max_messages: 50, max_chars: 2000, batch_size: 8 }
    }
}

/// Reported after each classified message.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Messages of this generation classified so far.
    pub done: usize,
    pub total: usize,
}

#[derive(Debug)]
pub enum Analysis {
    Sentiment(Box<SentimentEvent>),
    Skipped(SkipReason),
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cancelled")]
    Cancelled,
}

impl PipelineError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Engine(e) => e.is_retryable(),
            PipelineError::Cancelled => true,
        }
    }
}

pub fn producer(instance: &Instance, wasm_sha256: &str) -> Producer {
    let info = instance.info();
    Producer { model: info.model_name.clone(), plugin_version: crate::engine::version_label(info, wasm_sha256) }
}

pub fn analyze(
    slot: &mut InstanceSlot,
    generation: &GenerationEvent,
    options: &PipelineOptions,
    mut progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Analysis, PipelineError> {
    let ai_input = match generation.ai_input_json() {
        Ok(json) => json,
        Err(reason) => return Ok(Analysis::Skipped(reason)),
    };
    let instance = slot.get()?;
    let extract_options = ExtractOptions { max_messages: options.max_messages, max_chars: options.max_chars };
    let messages = match instance.extract(&ai_input, extract_options) {
        Ok(m) => m,
        // `ai_input` came from serde_json, so the plugin cannot find it
        // malformed unless it disagrees about JSON: nothing to classify.
        Err(EngineError::Plugin { error: PluginError::InvalidInput(_), .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if messages.is_empty() {
        return Ok(Analysis::Skipped(SkipReason::NoUserMessages));
    }
    let batch = options.batch_size.clamp(1, instance.info().limits.max_batch.max(1) as usize);
    let texts: Vec<String> = messages.into_iter().map(|m| m.text).collect();
    let mut results: Vec<MessageResult> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch) {
        let instance = slot.get()?;
        results.extend(instance.classify(chunk)?);
        for done in results.len() + 1 - chunk.len()..=results.len() {
            if progress(Progress { done, total: texts.len() }).is_break() {
                return Err(PipelineError::Cancelled);
            }
        }
    }
    let sha = slot.plugin().wasm_sha256.clone();
    let instance = slot.get()?;
    let overall = instance.aggregate(&results)?.ok_or(PipelineError::Engine(EngineError::Plugin {
        call: "aggregate",
        error: PluginError::InvalidArgument("no overall result for a non-empty list".into()),
    }))?;
    let event = SentimentEvent::build(generation, &overall, &producer(instance, &sha), Utc::now());
    Ok(Analysis::Sentiment(Box::new(event)))
}
