//! `classify_sentiment_activity`: classify every event of the input, write
//! the sentiment events, return what happened to each.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_sdk::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

use super::input::WorkflowInput;
use crate::event::{GenerationEvent, SentimentEvent};
use crate::pipeline::{self, Analysis, PipelineError, PipelineOptions, Progress};
use crate::pool::InstancePool;
use crate::registry::{PluginVersion, Registry};
use crate::result_cache::ResultCache;
use crate::sink::ClickHouseSink;

/// Progress recorded with every heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HeartbeatDetails {
    pub event_index: usize,
    pub events_total: usize,
    pub message_index: usize,
    pub messages_total: usize,
    pub processed: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EventOutcome {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_uuid: Option<String>,
    /// `classified`, `skipped` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Skip reason or failure message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClassificationSummary {
    pub processed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub skip_reasons: BTreeMap<String, usize>,
    pub events: Vec<EventOutcome>,
}

impl ClassificationSummary {
    fn heartbeat(&self, event_index: usize, events_total: usize, p: Progress) -> HeartbeatDetails {
        HeartbeatDetails {
            event_index,
            events_total,
            message_index: p.done,
            messages_total: p.total,
            processed: self.processed,
            skipped: self.skipped,
            failed: self.failed,
        }
    }
}

pub struct SentimentActivities {
    pub registry: Arc<Registry>,
    pub pool: Arc<InstancePool>,
    pub sink: Arc<ClickHouseSink>,
    pub options: PipelineOptions,
    /// Per-message results shared by every task of the worker.
    pub cache: Arc<ResultCache>,
    /// Fault injection for tests: fail attempt 1 after its insert succeeded.
    pub fail_first_attempt_after_insert: bool,
}

fn non_retryable(kind: &str, msg: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(anyhow::anyhow!("{msg}")).type_name(kind.to_string()).non_retryable(true).build(),
    )
}

fn retryable(kind: &str, msg: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(ApplicationFailure::builder(anyhow::anyhow!("{msg}")).type_name(kind.to_string()).build())
}

/// How often a task waiting for a free instance heartbeats (the heartbeat
/// timeout is 30 s).
const WAIT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

enum EventResult {
    Written(Box<SentimentEvent>),
    Skipped(&'static str),
    Failed { reason: String, retryable: bool },
    Cancelled,
}

#[activities]
impl SentimentActivities {
    #[activity(name = "classify_sentiment_activity")]
    pub async fn classify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Value,
    ) -> Result<ClassificationSummary, ActivityError> {
        let mut timer = crate::metrics::ActivityTimer::start();
        let info = ctx.info();
        let attempt = info.attempt.max(1);
        // The last attempt skips messages that trap instead of failing on them.
        let last_attempt = attempt >= super::workflow::activity_timeouts().max_attempts;
        let options = PipelineOptions { skip_trapping_messages: last_attempt, ..self.options.clone() };
        let workflow_id = info.workflow_id.clone().unwrap_or_default();
        let input = WorkflowInput::parse(&input).map_err(|e| non_retryable("MalformedInput", e))?;
        let total = input.events().len();
        // The whole task runs on the version that was current when it
        // started, even if a newer one is activated meanwhile.
        let version = self.registry.current();
        let mut summary = ClassificationSummary::default();
        let mut to_write: Vec<SentimentEvent> = Vec::new();
        let mut retry_reason: Option<String> = None;
        let mut cancelled = false;

        for (index, raw) in input.events().iter().enumerate() {
            let generation = match GenerationEvent::parse(raw) {
                Ok(g) => g,
                Err(e) => {
                    crate::metrics::record_event(crate::metrics::Outcome::Failed, None);
                    if !input.is_batch() {
                        return Err(non_retryable("MalformedEvent", e));
                    }
                    tracing::warn!(workflow_id, event_index = index, error = %e, "skipping malformed event");
                    summary.failed += 1;
                    summary.events.push(EventOutcome {
                        index,
                        status: "failed".into(),
                        reason: Some(e.to_string()),
                        ..Default::default()
                    });
                    continue;
                }
            };
            let uuid = generation.uuid.to_string();
            let span = tracing::info_span!("event", workflow_id, event_uuid = %uuid, team_id = generation.team_id);
            let result = self.classify_one(&ctx, &version, &options, generation, index, total, &summary).instrument(span.clone()).await;
            let _guard = span.enter();
            let mut outcome = EventOutcome { index, generation_uuid: Some(uuid), ..Default::default() };
            match result {
                EventResult::Written(event) => {
                    summary.processed += 1;
                    outcome.status = "classified".into();
                    outcome.sentiment_uuid = Some(event.uuid.to_string());
                    outcome.label = event.properties.get("$ai_sentiment_label").and_then(Value::as_str).map(String::from);
                    outcome.score = event.properties.get("$ai_sentiment_score").and_then(Value::as_f64).map(|s| s as f32);
                    crate::metrics::record_event(crate::metrics::Outcome::Classified, None);
                    let messages = match event.properties.get("$ai_sentiment_messages") {
                        Some(Value::Array(list)) => list.len(),
                        Some(Value::Object(by_index)) => by_index.len(),
                        _ => 0,
                    };
                    crate::metrics::record_messages_classified(messages);
                    to_write.push(*event);
                }
                EventResult::Skipped(reason) => {
                    summary.skipped += 1;
                    *summary.skip_reasons.entry(reason.to_string()).or_default() += 1;
                    crate::metrics::record_event(crate::metrics::Outcome::Skipped, Some(reason));
                    outcome.status = "skipped".into();
                    outcome.reason = Some(reason.to_string());
                }
                EventResult::Failed { reason, retryable } => {
                    tracing::warn!(error = %reason, retryable, attempt, "event failed");
                    // A trap may be the instance's bad luck: fail this attempt
                    // once so Temporal retries; on the last attempt give up on
                    // the event instead of failing the whole workflow.
                    if retryable && !last_attempt && retry_reason.is_none() {
                        retry_reason = Some(reason.clone());
                    }
                    crate::metrics::record_event(crate::metrics::Outcome::Failed, None);
                    summary.failed += 1;
                    outcome.status = "failed".into();
                    outcome.reason = Some(reason);
                }
                EventResult::Cancelled => {
                    cancelled = true;
                    break;
                }
            }
            tracing::info!(event_index = index, status = %outcome.status, "event done");
            summary.events.push(outcome);
        }

        // Whatever happens next, what was classified is written first: a
        // retry rewrites the same uuids, which the table collapses.
        if !to_write.is_empty() {
            let span = tracing::info_span!("insert", workflow_id, rows = to_write.len());
            self.sink.insert(&to_write).instrument(span).await.map_err(|e| {
                if e.is_retryable() { retryable("ClickHouseUnavailable", e) } else { non_retryable("ClickHouseRejected", e) }
            })?;
        }
        if cancelled {
            return Err(ActivityError::cancelled());
        }
        if self.fail_first_attempt_after_insert && attempt == 1 {
            return Err(retryable("InjectedFault", "fault injection: failing attempt 1 after its insert"));
        }
        if let Some(reason) = retry_reason {
            return Err(retryable("PluginTrapped", reason));
        }
        if !input.is_batch() && summary.failed > 0 {
            let reason = summary.events.first().and_then(|e| e.reason.clone()).unwrap_or_default();
            return Err(non_retryable("ClassificationFailed", reason));
        }
        tracing::info!(workflow_id, processed = summary.processed, skipped = summary.skipped, failed = summary.failed, "activity done");
        timer.succeeded();
        Ok(summary)
    }
}

impl SentimentActivities {
    /// Runs one generation on a pooled instance in a blocking thread,
    /// heartbeating after every message and racing the activity's
    /// cancellation: a cancel interrupts the plugin call in flight. While
    /// every instance is busy it waits for one, heartbeating meanwhile.
    async fn classify_one(
        &self,
        ctx: &ActivityContext,
        version: &Arc<PluginVersion>,
        options: &PipelineOptions,
        generation: GenerationEvent,
        index: usize,
        total: usize,
        summary: &ClassificationSummary,
    ) -> EventResult {
        let waiting = Progress { done: 0, total: 0 };
        let mut slot = {
            let checkout = self.pool.checkout(version);
            tokio::pin!(checkout);
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + WAIT_HEARTBEAT, WAIT_HEARTBEAT);
            loop {
                tokio::select! {
                    biased;
                    slot = &mut checkout => match slot {
                        Ok(slot) => break slot,
                        Err(e) => return EventResult::Failed { reason: e.to_string(), retryable: true },
                    },
                    _ = ctx.cancelled() => return EventResult::Cancelled,
                    _ = beat.tick() => {
                        if let Err(e) = ctx.record_heartbeat(summary.heartbeat(index, total, waiting)).await {
                            tracing::warn!(error = %e, "heartbeat not recorded");
                        }
                    }
                }
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let cancel = Arc::new(AtomicBool::new(false));
        let cache = self.cache.clone();
        let options = options.clone();
        let cancel_flag = cancel.clone();
        // The plugin runs on a blocking thread: carry the event's span there.
        let span = tracing::Span::current();
        let mut job = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            slot.set_interrupt(cancel_flag.clone());
            let result = pipeline::analyze_cached(&mut slot, &generation, &options, Some(&cache), |p| {
                let _ = tx.send(p);
                if cancel_flag.load(Ordering::Relaxed) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            slot.clear_interrupt();
            result
        });
        let result = loop {
            tokio::select! {
                Some(p) = rx.recv() => {
                    if let Err(e) = ctx.record_heartbeat(summary.heartbeat(index, total, p)).await {
                        tracing::warn!(error = %e, "heartbeat not recorded");
                    }
                }
                _ = ctx.cancelled(), if !cancel.load(Ordering::Relaxed) => {
                    cancel.store(true, Ordering::Relaxed);
                }
                joined = &mut job => break joined,
            }
        };
        match result {
            Err(join) => EventResult::Failed { reason: format!("classification task died: {join}"), retryable: true },
            Ok(Ok(Analysis::Sentiment(event))) => EventResult::Written(event),
            Ok(Ok(Analysis::Skipped(reason))) => EventResult::Skipped(reason.as_str()),
            Ok(Err(_)) if cancel.load(Ordering::Relaxed) => EventResult::Cancelled,
            Ok(Err(PipelineError::Cancelled)) => EventResult::Cancelled,
            Ok(Err(e)) => EventResult::Failed { reason: e.to_string(), retryable: e.is_retryable() },
        }
    }
}
