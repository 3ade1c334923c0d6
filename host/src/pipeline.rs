//! One generation through the plugin: extract, look up the result cache,
//! classify the rest in length-bucketed batches (reporting after every
//! message), aggregate, build the sentiment event. [`Driver`] runs a stream
//! of events through it for `analyze` and the Temporal activity alike.

mod batches;
mod driver;

pub use batches::plan_batches;

use std::collections::HashMap;
use std::ops::ControlFlow;

use chrono::Utc;

use crate::cache::{CacheScope, FlightKey, ResultCache};
use crate::engine::{EngineError, Instance, InstanceSlot, MessageResult, PluginError, PluginOptions, TrapKind};
use crate::event::{ClassifiedMessage, EventOptions, EventTime, GenerationEvent, Producer, SentimentEvent, SkipReason};
use crate::single_flight::{Claim, Leader, Waited};

/// How long a task waiting for another's result waits between heartbeats.
const FOLLOW_TICK: std::time::Duration = std::time::Duration::from_millis(200);

pub use driver::{classify_event, Attempt, Cancelled, Driver, EventOutcome, Failure, Outcome, Summary};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Extraction and labelling rules, passed to the plugin as they are.
    pub plugin: PluginOptions,
    /// The schema and contents of the events written.
    pub events: EventOptions,
    /// Texts per `classify` call (capped by the plugin's own limit).
    pub batch_size: usize,
    /// Classify shortest texts first so that batches pad little (results
    /// still come back in message order).
    pub bucket_by_length: bool,
    /// Skip a message that traps the plugin (on a fresh instance, alone)
    /// instead of failing the generation. The [`Driver`] sets it on the last
    /// attempt (always, for `analyze`), so a message that kills the sandbox
    /// is retried once by the worker, then dropped.
    pub skip_trapping_messages: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            plugin: PluginOptions::default(),
            events: EventOptions::default(),
            batch_size: 8,
            bucket_by_length: true,
            skip_trapping_messages: false,
        }
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

/// One generation without a result cache.
pub fn analyze(
    slot: &mut InstanceSlot,
    generation: &GenerationEvent,
    options: &PipelineOptions,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Analysis, PipelineError> {
    analyze_cached(slot, generation, options, None, progress)
}

/// One generation: messages found in `cache` count at once; the rest (each
/// distinct text once) are classified shortest first in batches, so that a
/// batch pads little, and stored in `cache`. Results are aggregated in
/// message order whatever order they were computed in.
///
/// The cache holds what `classify` returned for the exact text as cut: an
/// extraction option that changes the cut changes the key, and the label
/// options (margin, rule) apply afterwards, in `aggregate`, so results are
/// shared across them without changing any label.
pub fn analyze_cached(
    slot: &mut InstanceSlot,
    generation: &GenerationEvent,
    options: &PipelineOptions,
    cache: Option<&ResultCache>,
    mut progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Analysis, PipelineError> {
    let started = Utc::now();
    let ai_input = match generation.ai_input_json() {
        Ok(json) => json,
        Err(reason) => return nothing_to_classify(slot, generation, options, reason, started),
    };
    let plugin = slot.plugin().clone();
    let instance = slot.get()?;
    let messages = match instance.extract(&ai_input, options.plugin.extraction) {
        Ok(m) => m,
        // serde_json read or wrote `ai_input`, so the plugin cannot find it
        // malformed unless it disagrees about JSON: nothing to classify.
        Err(EngineError::Plugin { error: PluginError::InvalidInput(_), .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if messages.is_empty() {
        return nothing_to_classify(slot, generation, options, SkipReason::NoUserMessages, started);
    }
    let batch = options.batch_size.clamp(1, instance.info().limits.max_batch.max(1) as usize);
    let scope = cache.map(|_| CacheScope::of(&plugin, instance.info()));
    let (indices, texts): (Vec<u32>, Vec<String>) = messages.into_iter().map(|m| (m.index, m.text)).unzip();
    let total = texts.len();
    let mut results: Vec<Option<MessageResult>> = vec![None; total];
    let mut done = 0usize;
    let mut report = |done: usize| {
        if progress(Progress { done, total }).is_break() {
            Err(PipelineError::Cancelled)
        } else {
            Ok(())
        }
    };

    // One lookup for every text of the generation, whichever tier answers.
    if let (Some(cache), Some(scope)) = (cache, &scope) {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for (i, hit) in cache.lookup(scope, &refs, slot.deadline()).results.into_iter().enumerate() {
            if hit.is_some() {
                results[i] = hit;
                done += 1;
                report(done)?;
            }
        }
    }
    // Distinct uncached texts, each with the messages it answers.
    let mut pending: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, text) in texts.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        match position.get(text.as_str()) {
            Some(&p) => pending[p].1.push(i),
            None => {
                position.insert(text, pending.len());
                pending.push((text, vec![i]));
            }
        }
    }

    // Single-flight: a text another task sharing the cache is classifying
    // right now is waited for (below), not classified twice.
    let mut leaders: Vec<Option<Leader<'_, FlightKey, MessageResult>>> = Vec::with_capacity(pending.len());
    let mut followers = Vec::new();
    let mut mine = Vec::new();
    let mut ready = Vec::new();
    for (p, (text, _)) in pending.iter().enumerate() {
        let claim = cache.zip(scope.as_ref()).map(|(cache, scope)| cache.claim(scope, text));
        leaders.push(None);
        match claim {
            None => mine.push(p),
            Some(Claim::Lead(l)) => {
                leaders[p] = Some(l);
                mine.push(p);
            }
            Some(Claim::Follow(f)) => followers.push((p, f)),
            Some(Claim::Ready(r)) => ready.push((p, r)),
        }
    }
    let mut trapped = 0usize;
    // What this generation computed, for the shared tier (one write at the end).
    let mut computed_now: Vec<(&str, MessageResult)> = Vec::new();
    for (p, r) in ready {
        settle(&mut results, &pending[p].1, Some(r), &mut trapped, &mut done, &mut report)?;
    }

    let lengths: Vec<usize> = mine.iter().map(|&p| pending[p].0.chars().count()).collect();
    for group in plan_batches(&lengths, batch, options.bucket_by_length) {
        let group: Vec<usize> = group.into_iter().map(|g| mine[g]).collect();
        let chunk: Vec<String> = group.iter().map(|&p| pending[p].0.to_string()).collect();
        let computed: Vec<Option<MessageResult>> = match slot.get()?.classify(&chunk) {
            Ok(computed) => computed.into_iter().map(Some).collect(),
            Err(e) if options.skip_trapping_messages && is_skippable_trap(&e) => {
                tracing::warn!(error = %e, texts = chunk.len(), "a batch trapped the plugin: classifying its texts one by one");
                classify_skipping_traps(slot, &chunk)?
            }
            Err(e) => return Err(e.into()),
        };
        for (&p, result) in group.iter().zip(computed) {
            if let (Some(cache), Some(scope), Some(result)) = (cache, &scope, result) {
                cache.insert(scope, pending[p].0, result);
                computed_now.push((pending[p].0, result));
            }
            // Published after the insert; a trapped text is abandoned (dropped).
            if let (Some(leader), Some(result)) = (leaders[p].take(), result) {
                leader.publish(result);
            }
            settle(&mut results, &pending[p].1, result, &mut trapped, &mut done, &mut report)?;
        }
    }
    // Our own texts are published: now wait for the others' (heartbeating
    // between ticks, so a cancel stops the wait), or classify a text whose
    // leader gave up.
    // A follower waits only while it could still classify the text itself
    // before its own deadline (a slow or stuck leader must not make this
    // task miss it); then it stops waiting and does.
    let stop_waiting = slot.deadline().map(|d| d.checked_sub(slot.plugin().classify_deadline(1)).unwrap_or(d));
    for (p, follower) in followers {
        let result = loop {
            let left = stop_waiting.map(|t| t.saturating_duration_since(std::time::Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                break None;
            }
            match follower.wait(left.map_or(FOLLOW_TICK, |l| l.min(FOLLOW_TICK))) {
                Waited::Ready(r) => break Some(r),
                Waited::Abandoned => break None,
                Waited::Pending => report(done)?,
            }
        };
        let result = match result {
            Some(r) => Some(r),
            None => {
                let text = [pending[p].0.to_string()];
                let computed = match slot.get()?.classify(&text) {
                    Ok(mut one) => one.pop(),
                    Err(e) if options.skip_trapping_messages && is_skippable_trap(&e) => classify_skipping_traps(slot, &text)?.pop().flatten(),
                    Err(e) => return Err(e.into()),
                };
                if let (Some(cache), Some(scope), Some(r)) = (cache, &scope, computed) {
                    cache.insert(scope, pending[p].0, r);
                    computed_now.push((pending[p].0, r));
                }
                computed
            }
        };
        settle(&mut results, &pending[p].1, result, &mut trapped, &mut done, &mut report)?;
    }
    if let (Some(cache), Some(scope)) = (cache, &scope) {
        cache.share(scope, &computed_now, slot.deadline());
    }
    if trapped == total {
        return Ok(Analysis::Skipped(SkipReason::PluginTrapped));
    }

    // The messages that have a result (the others trapped), in message order.
    let (kept, results): (Vec<usize>, Vec<MessageResult>) =
        results.into_iter().enumerate().filter_map(|(i, r)| r.map(|r| (i, r))).unzip();
    if results.len() + trapped != total {
        return Err(PipelineError::Engine(EngineError::Plugin {
            call: "classify",
            error: PluginError::Inference(format!("{} results for {total} messages", results.len())),
        }));
    }
    let sha = slot.plugin().wasm_sha256.clone();
    let instance = slot.get()?;
    let overall = instance.aggregate(&results, options.plugin.labelling)?.ok_or(PipelineError::Engine(EngineError::Plugin {
        call: "aggregate",
        error: PluginError::InvalidArgument("no overall result for a non-empty list".into()),
    }))?;
    if overall.messages.len() != kept.len() {
        return Err(PipelineError::Engine(EngineError::Plugin {
            call: "aggregate",
            error: PluginError::InvalidArgument(format!("{} message results for {} messages", overall.messages.len(), kept.len())),
        }));
    }
    let classified: Vec<ClassifiedMessage> = kept
        .iter()
        .zip(&overall.messages)
        .map(|(&i, r)| ClassifiedMessage { index: indices[i], text: texts[i].clone(), result: *r })
        .collect();
    let producer = producer(instance, &sha);
    let mut event = SentimentEvent::build(generation, &overall, &classified, &producer, EventTime::now(), started, &options.events);
    event.properties.skipped_messages = (trapped > 0).then_some(trapped);
    Ok(Analysis::Sentiment(Box::new(event)))
}

/// A generation with no user message: a skip, or with `emit_empty` (and a
/// generation event whose input has nothing to classify) PostHog's defaulted event.
fn nothing_to_classify(
    slot: &mut InstanceSlot,
    generation: &GenerationEvent,
    options: &PipelineOptions,
    reason: SkipReason,
    started: chrono::DateTime<Utc>,
) -> Result<Analysis, PipelineError> {
    if !options.events.emit_empty || !matches!(reason, SkipReason::NoAiInput | SkipReason::NoUserMessages) {
        return Ok(Analysis::Skipped(reason));
    }
    let sha = slot.plugin().wasm_sha256.clone();
    let producer = producer(slot.get()?, &sha);
    Ok(Analysis::Sentiment(Box::new(SentimentEvent::empty(generation, &producer, EventTime::now(), started, &options.events))))
}

/// Records `result` (`None`: the text trapped) for each message it answers,
/// reporting after each.
fn settle(
    results: &mut [Option<MessageResult>],
    messages: &[usize],
    result: Option<MessageResult>,
    trapped: &mut usize,
    done: &mut usize,
    report: &mut impl FnMut(usize) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    for &i in messages {
        match result {
            Some(result) => results[i] = Some(result),
            None => *trapped += 1,
        }
        *done += 1;
        report(*done)?;
    }
    Ok(())
}

/// A trap of the sandbox (not a cancellation, which must stop the task).
fn is_skippable_trap(e: &EngineError) -> bool {
    e.trap_kind().is_some_and(|k| k != TrapKind::Cancelled)
}

/// Each text alone, each on a live instance (a trapped one is replaced
/// before the next text): `None` for the texts that trap.
fn classify_skipping_traps(slot: &mut InstanceSlot, texts: &[String]) -> Result<Vec<Option<MessageResult>>, PipelineError> {
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        match slot.get()?.classify(std::slice::from_ref(text)) {
            Ok(mut one) => out.push(one.pop()),
            Err(e) if is_skippable_trap(&e) => {
                tracing::warn!(error = %e, chars = text.chars().count(), "skipping a user message that traps the plugin");
                out.push(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
