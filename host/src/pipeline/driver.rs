//! The one driver of a run of events, for `analyze` and the activity alike:
//! events in, typed outcomes out; the trap policy, the metrics and the
//! summary live here, so the two callers are adapters only (a progress bar
//! and stdout or ClickHouse for `analyze`, heartbeats and the sink for the
//! activity).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Analysis, PipelineError, PipelineOptions, Progress};
use crate::engine::InstanceSlot;
use crate::event::{EventError, GenerationEvent, SentimentEvent};
use crate::outcome::{EventStatus, SkipReason};
use crate::cache::ResultCache;

/// Which attempt at a run this is. The trap policy hangs on it: before the
/// last attempt a message that traps the plugin fails the event (retryably,
/// so the run is retried on fresh instances); on the last one it is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// From 1.
    pub number: u32,
    /// Attempts the retry policy allows; `None` when unbounded.
    pub max: Option<u32>,
}

impl Attempt {
    /// A run nobody retries (`analyze`): always its last attempt.
    pub const ONLY: Attempt = Attempt { number: 1, max: Some(1) };

    /// Without a bound a trapping message is still retried only once: the
    /// second attempt counts as the last.
    pub fn is_last(self) -> bool {
        self.number >= self.max.unwrap_or(2)
    }
}

/// Why an event failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    pub fn new(message: impl std::fmt::Display, retryable: bool) -> Failure {
        Failure { message: message.to_string(), retryable }
    }
}

impl From<EventError> for Failure {
    fn from(e: EventError) -> Self {
        Failure::new(e, false)
    }
}

/// What became of one event.
#[derive(Debug)]
pub enum Outcome {
    Classified(Box<SentimentEvent>),
    Skipped(SkipReason),
    Failed(Failure),
}

impl Outcome {
    pub fn status(&self) -> EventStatus {
        match self {
            Outcome::Classified(_) => EventStatus::Classified,
            Outcome::Skipped(_) => EventStatus::Skipped,
            Outcome::Failed(_) => EventStatus::Failed,
        }
    }
}

/// The activity was cancelled (or the run interrupted) in the middle of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// One generation through the plugin as an [`Outcome`] (any thread: the
/// activity runs it on a blocking one). `options.skip_trapping_messages`
/// is the trap policy; take the options from [`Driver::options`].
pub fn classify_event(
    slot: &mut InstanceSlot,
    generation: &GenerationEvent,
    options: &PipelineOptions,
    cache: Option<&ResultCache>,
    progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Outcome, Cancelled> {
    match super::analyze_cached(slot, generation, options, cache, progress) {
        Ok(Analysis::Sentiment(event)) => Ok(Outcome::Classified(event)),
        Ok(Analysis::Skipped(reason)) => Ok(Outcome::Skipped(reason)),
        Err(PipelineError::Cancelled) => Err(Cancelled),
        Err(e) => Ok(Outcome::Failed(Failure::new(&e, e.is_retryable()))),
    }
}

/// One event's line in a [`Summary`] (and in the activity's result).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventOutcome {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_uuid: Option<Uuid>,
    pub status: EventStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment_uuid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Skip reason or failure message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a run did: counts by status and skip reason, and (for the
/// activity, whose result lists them) every event's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Events classified (the activity's result has always called them `processed`).
    #[serde(rename = "processed")]
    pub classified: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Events no round reached (see [`EventStatus::Missed`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: usize,
    pub skip_reasons: BTreeMap<SkipReason, usize>,
    pub events: Vec<EventOutcome>,
    /// Set when an activity ran out of time after classifying some of its
    /// batch: the index a further round goes on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Summary {
    /// Events seen: every one ends classified, skipped, failed or missed.
    pub fn read(&self) -> usize {
        self.classified + self.skipped + self.failed + self.missed
    }

    /// Adds a further round's result to this one (its events come after
    /// this one's); `resume_at` becomes the round's.
    pub fn merge(&mut self, round: Summary) {
        self.classified += round.classified;
        self.skipped += round.skipped;
        self.failed += round.failed;
        self.missed += round.missed;
        for (reason, n) in round.skip_reasons {
            *self.skip_reasons.entry(reason).or_default() += n;
        }
        self.events.extend(round.events);
        self.resume_at = round.resume_at;
    }

    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Classified(_) => self.classified += 1,
            Outcome::Skipped(reason) => {
                self.skipped += 1;
                *self.skip_reasons.entry(*reason).or_default() += 1;
            }
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// Runs a stream of events: parses each, classifies it under the trap
/// policy of this attempt, records the metrics, and tallies the outcomes.
pub struct Driver {
    options: PipelineOptions,
    attempt: Attempt,
    keep_events: bool,
    summary: Summary,
    retry: Option<String>,
}

impl Driver {
    /// `keep_events`: list every event's outcome in the summary (the
    /// activity returns them; a backfill of millions only counts).
    pub fn new(options: PipelineOptions, attempt: Attempt, keep_events: bool) -> Driver {
        let options = PipelineOptions { skip_trapping_messages: attempt.is_last(), ..options };
        Driver { options, attempt, keep_events, summary: Summary::default(), retry: None }
    }

    /// The options every event of this attempt runs with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    pub fn attempt(&self) -> Attempt {
        self.attempt
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// A failure that makes this attempt worth retrying: a retryable one
    /// (a trap may be the instance's bad luck) before the last attempt.
    pub fn retry_reason(&self) -> Option<&str> {
        self.retry.as_deref()
    }

    pub fn into_summary(self) -> Summary {
        self.summary
    }

    /// One event given as JSON text (an `analyze` line), start to end.
    pub fn run_text(
        &mut self,
        index: usize,
        text: &str,
        slot: &mut InstanceSlot,
        cache: Option<&ResultCache>,
    ) -> Result<(EventOutcome, Outcome), Cancelled> {
        let (uuid, outcome) = match GenerationEvent::parse_text(text) {
            Ok(generation) => {
                let outcome = classify_event(slot, &generation, &self.options, cache, |_| ControlFlow::Continue(()))?;
                (Some(generation.uuid), outcome)
            }
            Err(Some(e)) => (None, Outcome::Failed(e.into())),
            Err(None) => (None, Outcome::Failed(Failure::new("not valid JSON", false))),
        };
        Ok((self.record(index, uuid, &outcome), outcome))
    }

    /// Records what became of event `index`: metrics, counts, the retry
    /// decision; returns its line for the caller to report.
    pub fn record(&mut self, index: usize, generation_uuid: Option<Uuid>, outcome: &Outcome) -> EventOutcome {
        let status = outcome.status();
        let mut line =
            EventOutcome { index, generation_uuid, status, sentiment_uuid: None, label: None, score: None, reason: None };
        match outcome {
            Outcome::Classified(event) => {
                let p = &event.properties;
                line.sentiment_uuid = Some(event.uuid);
                line.label = Some(p.label.as_str().to_string());
                line.score = Some(p.score);
                crate::metrics::record_event(status.as_str(), None);
                crate::metrics::record_messages_classified(p.messages.len());
            }
            Outcome::Skipped(reason) => {
                line.reason = Some(reason.as_str().to_string());
                crate::metrics::record_event(status.as_str(), Some(reason.as_str()));
            }
            Outcome::Failed(failure) => {
                if failure.retryable && !self.attempt.is_last() && self.retry.is_none() {
                    self.retry = Some(failure.message.clone());
                }
                line.reason = Some(failure.message.clone());
                crate::metrics::record_event(status.as_str(), None);
            }
        }
        self.summary.count(outcome);
        if self.keep_events {
            self.summary.events.push(line.clone());
        }
        line
    }

    /// Records event `index` as missed: no round reached it, and none will.
    pub fn record_missed(&mut self, index: usize, generation_uuid: Option<Uuid>, reason: &str) {
        let status = EventStatus::Missed;
        crate::metrics::record_event(status.as_str(), None);
        self.summary.missed += 1;
        if self.keep_events {
            let reason = Some(reason.to_string());
            self.summary.events.push(EventOutcome { index, generation_uuid, status, sentiment_uuid: None, label: None, score: None, reason });
        }
    }

    /// Ends this round at event `index`: a further round goes on from there.
    pub fn resume_at(&mut self, index: usize) {
        self.summary.resume_at = Some(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_follows_the_retry_policy() {
        assert!(Attempt::ONLY.is_last());
        assert!(!Attempt { number: 1, max: Some(2) }.is_last());
        assert!(Attempt { number: 2, max: Some(2) }.is_last());
        assert!(!Attempt { number: 2, max: Some(5) }.is_last());
        assert!(Attempt { number: 5, max: Some(5) }.is_last());
        assert!(!Attempt { number: 1, max: None }.is_last());
        assert!(Attempt { number: 2, max: None }.is_last());
    }

    #[test]
    fn the_driver_skips_traps_on_the_last_attempt_only() {
        let before = Driver::new(PipelineOptions::default(), Attempt { number: 1, max: Some(2) }, false);
        assert!(!before.options().skip_trapping_messages);
        let last = Driver::new(PipelineOptions::default(), Attempt { number: 2, max: Some(2) }, false);
        assert!(last.options().skip_trapping_messages);
    }

    #[test]
    fn outcomes_are_tallied_and_a_retryable_failure_retries_only_before_the_last_attempt() {
        let mut first = Driver::new(PipelineOptions::default(), Attempt { number: 1, max: Some(2) }, true);
        first.record(0, None, &Outcome::Failed(Failure::new("malformed", false)));
        assert_eq!(first.retry_reason(), None);
        first.record(1, Some(Uuid::nil()), &Outcome::Skipped(SkipReason::NoUserMessages));
        first.record(2, Some(Uuid::nil()), &Outcome::Failed(Failure::new("trapped", true)));
        first.record(3, Some(Uuid::nil()), &Outcome::Failed(Failure::new("trapped again", true)));
        assert_eq!(first.retry_reason(), Some("trapped"));
        let s = first.summary();
        assert_eq!((s.read(), s.classified, s.skipped, s.failed), (4, 0, 1, 3));
        assert_eq!(s.skip_reasons.get(&SkipReason::NoUserMessages), Some(&1));
        assert_eq!(s.events.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2, 3]);

        let mut last = Driver::new(PipelineOptions::default(), Attempt::ONLY, false);
        last.record(0, None, &Outcome::Failed(Failure::new("trapped", true)));
        assert_eq!(last.retry_reason(), None);
        assert!(last.summary().events.is_empty(), "a driver that only counts keeps no lines");
        assert_eq!(last.summary().failed, 1);
    }

    /// Rounds of one batch add up to one result, and only the last round's
    /// `resume_at` counts.
    #[test]
    fn rounds_merge_into_one_summary() {
        let mut first = Driver::new(PipelineOptions::default(), Attempt::ONLY, true);
        first.record(0, Some(Uuid::from_u128(1)), &Outcome::Skipped(SkipReason::NoAiInput));
        first.resume_at(1);
        let mut second = Driver::new(PipelineOptions::default(), Attempt::ONLY, true);
        second.record(1, Some(Uuid::from_u128(2)), &Outcome::Skipped(SkipReason::NoAiInput));
        second.record_missed(2, Some(Uuid::from_u128(3)), "out of time");
        let mut total = first.into_summary();
        assert_eq!(total.resume_at, Some(1));
        total.merge(second.into_summary());
        assert_eq!((total.read(), total.skipped, total.missed, total.resume_at), (3, 2, 1, None));
        assert_eq!(total.skip_reasons.get(&SkipReason::NoAiInput), Some(&2));
        assert_eq!(total.events.iter().map(|e| (e.index, e.status)).collect::<Vec<_>>(), [
            (0, EventStatus::Skipped),
            (1, EventStatus::Skipped),
            (2, EventStatus::Missed)
        ]);
        let v = serde_json::to_value(&total).unwrap();
        assert_eq!((v["missed"].as_u64(), v.get("resume_at")), (Some(1), None));
    }

    #[test]
    fn the_summary_keeps_the_activity_result_shape() {
        let mut d = Driver::new(PipelineOptions::default(), Attempt::ONLY, true);
        d.record(0, None, &Outcome::Failed(Failure::new("event has no uuid", false)));
        d.record(1, Some(Uuid::from_u128(1)), &Outcome::Skipped(SkipReason::NoAiInput));
        let v = serde_json::to_value(d.summary()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "processed": 0, "skipped": 1, "failed": 1, "skip_reasons": {"no_ai_input": 1},
                "events": [
                    {"index": 0, "status": "failed", "reason": "event has no uuid"},
                    {"index": 1, "generation_uuid": "00000000-0000-0000-0000-000000000001", "status": "skipped", "reason": "no_ai_input"},
                ]
            })
        );
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(&back, d.summary());
    }
}
