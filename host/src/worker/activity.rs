//! `classify_sentiment_activity`: classify every event of the input, write
//! the sentiment events, return what happened to each.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_sdk::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

use super::deadline::AttemptDeadline;
use super::input::WorkflowInput;
use crate::event::GenerationEvent;
use crate::pipeline::{self, Attempt, Cancelled, Driver, Failure, Outcome, PipelineOptions, Progress, Summary};
use crate::pool::InstancePool;
use crate::registry::{PluginVersion, Registry};
use crate::cache::ResultCache;
use crate::sink::ClickHouseSink;

/// The activity's result: the pipeline's summary, every event listed.
pub type ClassificationSummary = Summary;

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

impl HeartbeatDetails {
    fn new(summary: &Summary, event_index: usize, events_total: usize, p: Progress) -> HeartbeatDetails {
        HeartbeatDetails {
            event_index,
            events_total,
            message_index: p.done,
            messages_total: p.total,
            processed: summary.classified,
            skipped: summary.skipped,
            failed: summary.failed,
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
    /// Told of every start, message and end, to notice held slots.
    pub watchdog: Arc<super::Watchdog>,
    /// Caps every write once the worker is stopping.
    pub stop: super::Stop,
    pub faults: Faults,
}

/// Test-only fault switches: empty unless built with the `fault-injection`
/// feature (the tests' builds), so no shipped binary can be told to fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Fail attempt 1 after its insert succeeded.
    #[cfg(feature = "fault-injection")]
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

/// How often a task heartbeats while it waits for a free instance or a
/// plugin call runs: a third of the heartbeat timeout (10 s of the default
/// 30 s; the SDK sends at most one per 0.8 of it).
fn heartbeat_every() -> std::time::Duration {
    (super::options::activity_timeouts().heartbeat / 3).max(std::time::Duration::from_millis(500))
}

#[activities]
impl SentimentActivities {
    #[activity(name = "classify_sentiment_activity")]
    pub async fn classify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: temporalio_common::data_converters::RawValue,
    ) -> Result<ClassificationSummary, ActivityError> {
        let _in_flight = self.watchdog.enter();
        let mut timer = crate::metrics::ActivityTimer::start();
        let info = ctx.info();
        // The last attempt (by this task's own retry policy) skips messages
        // that trap instead of failing on them.
        let policy_max = info.retry_policy.as_ref().map(|p| p.maximum_attempts()).filter(|&m| m > 0);
        let attempt = Attempt { number: info.attempt.max(1), max: policy_max };
        let workflow_id = info.workflow_id.clone().unwrap_or_default();
        // Nothing below outlives the attempt: classification stops at
        // `work_until`, the insert at `write_until`.
        let deadline = AttemptDeadline::new(info.deadline, super::options::activity_timeouts().start_to_close);
        let mut driver = Driver::new(self.options.clone(), attempt, true);
        let input = WorkflowInput::decode(&input).map_err(|e| non_retryable("MalformedInput", e))?;
        let total = input.events().len();
        // The whole task runs on the version that was current when it
        // started, even if a newer one is activated meanwhile.
        let version = self.registry.current();
        let mut to_write = Vec::new();
        let mut cancelled = false;

        let uuid_of = |i: usize| super::rollout::event_uuid(&input.events()[i]).and_then(|u| uuid::Uuid::parse_str(u).ok());
        for (index, raw) in input.events().iter().enumerate().skip(input.start_at()) {
            if deadline.out_of_work_time() {
                // The attempt must end before Temporal gives up on it. What
                // is left goes to a further round (a new activity with its
                // own attempts) when this one got anywhere; when it did not
                // even reach one event, a further round would do no better.
                if driver.summary().read() > 0 {
                    tracing::warn!(workflow_id, event_index = index, left = total - index, "the attempt's deadline is near: the rest goes to a further round");
                    driver.resume_at(index);
                } else {
                    for rest in index..total {
                        tracing::warn!(workflow_id, event_index = rest, event_uuid = ?uuid_of(rest), "event missed: the attempt had no time for any event");
                        driver.record_missed(rest, uuid_of(rest), "the attempt had no time for any event");
                    }
                }
                break;
            }
            let generation = match GenerationEvent::parse(raw) {
                Ok(g) => g,
                Err(e) => {
                    driver.record(index, None, &Outcome::Failed(e.clone().into()));
                    if !input.is_batch() {
                        return Err(non_retryable("MalformedEvent", e));
                    }
                    tracing::warn!(workflow_id, event_index = index, error = %e, "skipping malformed event");
                    continue;
                }
            };
            let uuid = generation.uuid;
            let span = tracing::info_span!("event", workflow_id, event_uuid = %uuid, team_id = generation.team_id);
            let options = driver.options().clone();
            let result = self
                .classify_one(&ctx, &version, options, generation, index, total, driver.summary(), deadline.work_until)
                .instrument(span.clone())
                .await;
            let _guard = span.enter();
            let Ok(outcome) = result else {
                cancelled = true;
                break;
            };
            // The attempt's deadline cut this event off. After other events of
            // this round it starts the next round, with a whole attempt of
            // its own. As the round's first event it had a whole attempt: it
            // fails retryably (its own retries), and on the last attempt it
            // is missed and the events after it go to a further round.
            if deadline.out_of_work_time() && !matches!(outcome, Outcome::Classified(_)) {
                if driver.summary().read() > 0 {
                    tracing::warn!(event_index = index, left = total - index, "the attempt's deadline cut this event off: it and the rest go to a further round");
                    driver.resume_at(index);
                    break;
                }
                if attempt.is_last() {
                    tracing::warn!(event_index = index, "event missed: it cannot be classified within an attempt");
                    driver.record_missed(index, Some(uuid), "it cannot be classified within an attempt");
                    continue;
                }
            }
            if let Outcome::Failed(f) = &outcome {
                tracing::warn!(error = %f.message, retryable = f.retryable, attempt = attempt.number, "event failed");
            }
            let line = driver.record(index, Some(uuid), &outcome);
            tracing::info!(event_index = index, status = %line.status, "event done");
            if let Outcome::Classified(event) = outcome {
                to_write.push(*event);
            }
        }

        // A retry: the attempt before may have written its rows and lost
        // only its completion (a restarted server, a timeout after the
        // insert). Rows already stored are not inserted a second time.
        if attempt.number > 1 && !to_write.is_empty() {
            let uuids: Vec<uuid::Uuid> = to_write.iter().map(|e| e.uuid).collect();
            let stored = self.within_write_deadline(&deadline, "the stored-rows lookup", self.sink.stored(&uuids)).await?;
            if !stored.is_empty() {
                tracing::info!(workflow_id, stored = stored.len(), "rows an earlier attempt wrote are not inserted again");
                to_write.retain(|e| !stored.contains(&e.uuid));
            }
        }
        // Whatever happens next, what was classified is written first.
        if !to_write.is_empty() {
            let span = tracing::info_span!("insert", workflow_id, rows = to_write.len());
            let insert = self.sink.insert(&to_write).instrument(span);
            self.within_write_deadline(&deadline, "the insert", insert).await?;
        }
        if cancelled {
            return Err(ActivityError::cancelled());
        }
        #[cfg(feature = "fault-injection")]
        if self.faults.fail_first_attempt_after_insert && attempt.number == 1 {
            return Err(retryable("InjectedFault", "fault injection: failing attempt 1 after its insert"));
        }
        // A trap may be the instance's bad luck: fail this attempt so
        // Temporal retries; on the last attempt the event is given up instead
        // of failing the whole workflow.
        if let Some(reason) = driver.retry_reason() {
            return Err(retryable("PluginTrapped", reason));
        }
        let summary = driver.into_summary();
        if !input.is_batch() && summary.failed > 0 {
            let reason = summary.events.first().and_then(|e| e.reason.clone()).unwrap_or_default();
            return Err(non_retryable("ClassificationFailed", reason));
        }
        tracing::info!(
            workflow_id,
            processed = summary.classified,
            skipped = summary.skipped,
            failed = summary.failed,
            missed = summary.missed,
            resume_at = summary.resume_at,
            "activity done"
        );
        timer.succeeded();
        Ok(summary)
    }
}

impl SentimentActivities {
    /// A ClickHouse call under the attempt's write deadline (capped by the
    /// stop's); its error, or running out of time, as the activity's failure.
    /// An insert that timed out may have been written: the retry finds its
    /// rows stored.
    async fn within_write_deadline<T>(
        &self,
        deadline: &AttemptDeadline,
        what: &str,
        call: impl std::future::Future<Output = Result<T, crate::sink::SinkError>>,
    ) -> Result<T, ActivityError> {
        match tokio::time::timeout_at(self.stop.cap(deadline.write_until).into(), call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_retryable() => Err(retryable("ClickHouseUnavailable", e)),
            Ok(Err(e)) => Err(non_retryable("ClickHouseRejected", e)),
            Err(_) => Err(retryable("ClickHouseUnavailable", format!("{what} did not finish before the attempt's deadline"))),
        }
    }

    /// Runs one generation on a pooled instance in a blocking thread,
    /// heartbeating after every message and racing the activity's
    /// cancellation: a cancel interrupts the plugin call in flight. While
    /// every instance is busy it waits for one, heartbeating meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn classify_one(
        &self,
        ctx: &ActivityContext,
        version: &Arc<PluginVersion>,
        options: PipelineOptions,
        generation: GenerationEvent,
        index: usize,
        total: usize,
        summary: &Summary,
        work_until: std::time::Instant,
    ) -> Result<Outcome, Cancelled> {
        let waiting = Progress { done: 0, total: 0 };
        let out_of_time = tokio::time::sleep_until(work_until.into());
        tokio::pin!(out_of_time);
        let mut slot = {
            let checkout = self.pool.checkout(version);
            tokio::pin!(checkout);
            let every = heartbeat_every();
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    biased;
                    slot = &mut checkout => match slot {
                        Ok(slot) => break slot,
                        Err(e) => return Ok(Outcome::Failed(Failure::new(e, true))),
                    },
                    _ = ctx.cancelled() => return Err(Cancelled),
                    _ = &mut out_of_time => {
                        return Ok(Outcome::Failed(Failure::new("no plugin instance was free before the attempt's deadline", true)));
                    }
                    _ = beat.tick() => {
                        heartbeat(ctx, HeartbeatDetails::new(summary, index, total, waiting)).await;
                    }
                }
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        // Interrupts the plugin call in flight when this future is cancelled
        // or dropped (the SDK dropping it, a shutdown): the blocking job
        // never keeps running for a task Temporal has given up.
        let cancel = crate::engine::InterruptOnDrop::new();
        let cache = self.cache.clone();
        let cancel_flag = cancel.flag();
        // The plugin runs on a blocking thread: carry the event's span there.
        let span = tracing::Span::current();
        let mut job = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            slot.set_interrupt(cancel_flag.clone());
            slot.set_deadline(Some(work_until));
            let result = pipeline::classify_event(&mut slot, &generation, &options, Some(&cache), |p| {
                let _ = tx.send(p);
                if cancel_flag.load(Ordering::Relaxed) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            slot.clear_interrupt();
            result
        });
        // The pipeline reports after every classify call (a batch of up to
        // `pipeline.batch_size` texts). A call on a large model can outlast
        // the heartbeat timeout, so the task also beats on a timer while the
        // call runs: the sandbox bounds the call (its deadline, at most
        // `work_until`, traps it), so until then it is alive and working.
        let every = heartbeat_every();
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last = Progress { done: 0, total: 0 };
        let result = loop {
            tokio::select! {
                // In this order: a report sent before the job ended is
                // recorded before its end is seen (a random pick could drop
                // a short task's only report).
                biased;
                Some(p) = rx.recv() => {
                    last = p;
                    self.watchdog.progress();
                    heartbeat(ctx, HeartbeatDetails::new(summary, index, total, p)).await;
                }
                _ = beat.tick() => {
                    // Past `work_until` the call is being trapped: no longer
                    // progress for the watchdog, but still this task's.
                    if std::time::Instant::now() < work_until {
                        self.watchdog.progress();
                    }
                    heartbeat(ctx, HeartbeatDetails::new(summary, index, total, last)).await;
                }
                _ = ctx.cancelled(), if !cancel.is_set() => cancel.interrupt(),
                joined = &mut job => break joined,
            }
        };
        match result {
            Err(join) => Ok(Outcome::Failed(Failure::new(format!("classification task died: {join}"), true))),
            // The interrupt makes the call in flight fail: that is the cancel.
            Ok(Ok(Outcome::Failed(_))) if cancel.is_set() => Err(Cancelled),
            Ok(result) => result,
        }
    }
}

/// Records one heartbeat, counted in `/metrics` whether the SDK took it or not.
async fn heartbeat(ctx: &ActivityContext, details: HeartbeatDetails) {
    let recorded = ctx.record_heartbeat(details).await;
    crate::metrics::record_heartbeat(recorded.is_ok());
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "heartbeat not recorded");
    }
}
