//! Prometheus metrics of the process, in one registry, and the thin
//! `record_*` calls the worker's modules make. Recording is cheap (atomics)
//! and always on; the metrics are only served when an address is configured
//! (see `ops_server`).
//!
//! Every name starts with `llma_sentiment_`; see the metrics list in docs/operations.md.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::outcome::{EventStatus, RedisErrorKind, SkipReason, TrapKind};

/// Per-message inference: from ~1 ms (short texts, small models) to the
/// ~4 s a 512-token text costs RoBERTa-base inside wasm, and past the deadline.
const INFERENCE_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// An activity runs up to its 2-minute start-to-close timeout.
const ACTIVITY_BUCKETS: [f64; 13] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Declares every metric once, as `field: Type = constructor;`: the struct
/// and the registration of each in the one registry follow from the list.
macro_rules! metrics {
    ($($field:ident: $ty:ty = $make:expr;)*) => {
        struct Metrics {
            registry: Registry,
            $($field: $ty,)*
        }

        fn registered() -> Metrics {
            let registry = Registry::new();
            $(
                let $field: $ty = $make.expect("valid metric");
                registry.register(Box::new($field.clone())).expect("metric registered once");
            )*
            Metrics { registry, $($field,)* }
        }
    };
}

metrics! {
    events: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_events_total", "$ai_generation events handled (by activities and `analyze`), by outcome (classified, skipped, failed)"), &["outcome"]);
    events_skipped: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_events_skipped_total", "Events with nothing to classify, by reason"), &["reason"]);
    messages_classified: IntCounter = IntCounter::new("llma_sentiment_messages_classified_total", "User messages of the $ai_sentiment events built (by activities and `analyze`)");
    cache: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_cache_lookups_total", "Result cache lookups of user messages, by tier (l1 in process, l2 Redis) and result (hit, miss); l2 counts only the l1 misses Redis answered for"), &["tier", "result"]);
    redis_errors: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_redis_errors_total", "Redis result cache calls that did not work, by kind (timeout, unavailable, garbage, server, tls); each means in-process cache only for that call"), &["kind"]);
    redis_available: IntGauge = IntGauge::new("llma_sentiment_redis_available", "1 while the Redis result cache answers, 0 after a failed call or connection attempt (stays 0 when no Redis is configured)");
    activities_in_flight: IntGauge = IntGauge::new("llma_sentiment_activities_in_flight", "Activities running now (each holds one activity slot)");
    worker_stuck: IntGauge = IntGauge::new("llma_sentiment_worker_stuck", "1 while the watchdog finds the worker stuck (all slots held without progress, or Temporal unreachable); see /readyz for the reason");
    traps: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_traps_total", "Plugin instance traps, by kind"), &["kind"]);
    clickhouse_rows: IntCounter = IntCounter::new("llma_sentiment_clickhouse_insert_rows_total", "Rows ClickHouse acknowledged");
    clickhouse_errors: IntCounter = IntCounter::new("llma_sentiment_clickhouse_insert_errors_total", "Inserts that failed after all their retries");
    clickhouse_retries: IntCounter = IntCounter::new("llma_sentiment_clickhouse_retries_total", "ClickHouse requests (inserts, reads, schema checks) retried after a retryable failure");
    heartbeats: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_heartbeats_total", "Activity heartbeats, by result (recorded, failed: the SDK refused it)"), &["result"]);
    instances: IntGaugeVec = IntGaugeVec::new(Opts::new("llma_sentiment_instances", "Plugin instances of the worker's pool, by state (busy: checked out by a task, idle), sampled every second"), &["state"]);
    instances_capacity: IntGauge = IntGauge::new("llma_sentiment_instances_capacity", "The most plugin instances the worker's pool holds (worker.instances)");
    plugin_swaps: IntCounter = IntCounter::new("llma_sentiment_plugin_swaps_total", "Plugin version switches (activations and rollbacks)");
    plugin_rejections: IntCounter = IntCounter::new("llma_sentiment_plugin_rejections_total", "Plugin versions that failed validation and were not activated");
    plugin_info: IntGaugeVec = IntGaugeVec::new(Opts::new("llma_sentiment_plugin_info", "The active plugin version (value 1)"), &["version", "model"]);
    snapshots: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_plugin_snapshots_total", "Plugins whose instances start from a pre-initialised snapshot, by how it was had (created, reused)"), &["outcome"]);
    snapshot_fallbacks: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_plugin_snapshot_fallbacks_total", "Plugins whose instances load the model themselves, by reason (no_init_export, init_failed, wizer, store, disabled, not_cached)"), &["reason"]);
    snapshots_discarded: IntCounter = IntCounter::new("llma_sentiment_plugin_snapshots_discarded_total", "Cached snapshot files found damaged (no digest, digest mismatch, refused by wasmtime), deleted and rebuilt");
    plugins_refused: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_plugin_refused_total", "Plugin files refused before compiling because plugin.trusted_keys is set, by reason (unsigned, untrusted, not_a_component, malformed)"), &["reason"]);
    cache_discarded: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_plugin_cache_discarded_total", "Cached compiled artifacts, snapshots and function stores deleted and rebuilt instead of loaded, by kind (artifact, snapshot, functions) and reason (no_digest, mismatch: not the SHA-256 recorded when written, unreadable, refused by wasmtime, malformed)"), &["kind", "reason"]);
    deduplicated_in_flight: IntCounter = IntCounter::new("llma_sentiment_texts_deduplicated_in_flight_total", "Texts a task got from another task classifying the same text at the same moment (single-flight), instead of classifying them");
    schedule_consumed: IntCounter = IntCounter::new("llma_sentiment_schedule_consumed_total", "`schedule`: messages read from the events topic");
    schedule_filtered: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_schedule_filtered_total", "`schedule`: messages that start no workflow, by reason (other_product, other_event, team_not_allowed; unusable: no_payload, not_json, not_an_object, no_uuid, no_team, bad_properties), committed past"), &["reason"]);
    schedule_sampled_out: IntCounter = IntCounter::new("llma_sentiment_schedule_sampled_out_total", "`schedule`: $ai_generation events left out by the rollout percentage");
    schedule_workflows: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_schedule_workflows_total", "`schedule`: workflow starts Temporal answered, by result (started; already_started: the id existed, nothing started twice; rejected: Temporal refused the input, committed past)"), &["result"]);
    schedule_events_started: IntCounter = IntCounter::new("llma_sentiment_schedule_events_started_total", "`schedule`: events in workflows Temporal started");
    schedule_start_errors: IntCounter = IntCounter::new("llma_sentiment_schedule_start_errors_total", "`schedule`: workflow start attempts that failed and are retried (Temporal unreachable, timeouts)");
    schedule_in_flight: IntGauge = IntGauge::new("llma_sentiment_schedule_in_flight", "`schedule`: workflow starts not yet acknowledged by Temporal");
    schedule_paused: IntGauge = IntGauge::new("llma_sentiment_schedule_paused", "`schedule`: 1 while the partitions are paused (in-flight bound reached)");
    schedule_commits: IntCounterVec = IntCounterVec::new(Opts::new("llma_sentiment_schedule_commits_total", "`schedule`: offset commits, by result (ok, error)"), &["result"]);
    schedule_lag: IntGaugeVec = IntGaugeVec::new(Opts::new("llma_sentiment_schedule_lag", "`schedule`: messages of each partition held here past its committed offset (the brokers' high watermark minus the committed offset, from librdkafka's statistics every 5 s)"), &["partition"]);
    inference_seconds: Histogram = Histogram::with_opts(HistogramOpts::new("llma_sentiment_inference_seconds", "Model inference time per message (a batch's time over its size)").buckets(INFERENCE_BUCKETS.to_vec()));
    activity_seconds: HistogramVec = HistogramVec::new(HistogramOpts::new("llma_sentiment_activity_seconds", "classify_sentiment_activity duration, by result").buckets(ACTIVITY_BUCKETS.to_vec()), &["result"]);
}

static METRICS: LazyLock<Metrics> = LazyLock::new(registered);

/// Creates every metric with its zero value, so a scrape shows the full set
/// (and labelled series operators alert on) before the first event.
pub fn init() {
    let m = &*METRICS;
    for status in EventStatus::ALL {
        m.events.with_label_values(&[status.as_str()]);
    }
    for reason in SkipReason::ALL {
        m.events_skipped.with_label_values(&[reason.as_str()]);
    }
    for tier in ["l1", "l2"] {
        for result in ["hit", "miss"] {
            m.cache.with_label_values(&[tier, result]);
        }
    }
    for kind in RedisErrorKind::ALL {
        m.redis_errors.with_label_values(&[kind.as_str()]);
    }
    for kind in TrapKind::ALL {
        m.traps.with_label_values(&[kind.as_str()]);
    }
    for outcome in ["created", "reused"] {
        m.snapshots.with_label_values(&[outcome]);
    }
    for reason in ["no_init_export", "init_failed", "wizer", "store"] {
        m.snapshot_fallbacks.with_label_values(&[reason]);
    }
    for reason in ["unsigned", "untrusted", "not_a_component", "malformed"] {
        m.plugins_refused.with_label_values(&[reason]);
    }
    for kind in ["artifact", "snapshot", "functions"] {
        m.cache_discarded.with_label_values(&[kind, "mismatch"]);
    }
    for result in ["recorded", "failed"] {
        m.heartbeats.with_label_values(&[result]);
    }
    for state in ["busy", "idle"] {
        m.instances.with_label_values(&[state]);
    }
}

/// The scheduler's series at zero (`llma-sentiment schedule`).
pub fn init_schedule(filter_reasons: &[&str]) {
    let m = &*METRICS;
    for reason in filter_reasons {
        m.schedule_filtered.with_label_values(&[reason]);
    }
    for result in ["started", "already_started", "rejected"] {
        m.schedule_workflows.with_label_values(&[result]);
    }
    for result in ["ok", "error"] {
        m.schedule_commits.with_label_values(&[result]);
    }
}

pub fn record_schedule_consumed() {
    METRICS.schedule_consumed.inc();
}

pub fn record_schedule_filtered(reason: &str) {
    METRICS.schedule_filtered.with_label_values(&[reason]).inc();
}

pub fn record_schedule_sampled_out() {
    METRICS.schedule_sampled_out.inc();
}

/// A workflow start Temporal answered: `result` is started, already_started or rejected.
pub fn record_schedule_workflow(result: &str, events: usize) {
    METRICS.schedule_workflows.with_label_values(&[result]).inc();
    if result == "started" {
        METRICS.schedule_events_started.inc_by(events as u64);
    }
}

pub fn record_schedule_start_error() {
    METRICS.schedule_start_errors.inc();
}

pub fn set_schedule_in_flight(n: usize) {
    METRICS.schedule_in_flight.set(n as i64);
}

pub fn set_schedule_paused(paused: bool) {
    METRICS.schedule_paused.set(paused as i64);
}

/// The lag of every partition held now, replacing the last report (a
/// partition that moved away loses its series).
pub fn set_schedule_lag(lags: &[(i32, i64)]) {
    let m = &*METRICS;
    m.schedule_lag.reset();
    for (partition, lag) in lags {
        m.schedule_lag.with_label_values(&[&partition.to_string()]).set(*lag);
    }
}

pub fn record_schedule_commit(ok: bool) {
    METRICS.schedule_commits.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
}

/// One input event handled by the pipeline (`analyze` or an activity):
/// `status` and the skip reason are the labels of the `outcome` vocabulary.
pub fn record_event(status: &str, skip_reason: Option<&str>) {
    let m = &*METRICS;
    m.events.with_label_values(&[status]).inc();
    if let Some(reason) = skip_reason {
        m.events_skipped.with_label_values(&[reason]).inc();
    }
}

/// One `classify` call of `texts` messages that took `elapsed` (any call:
/// activities, validation self-tests, the CLI).
pub fn record_inference(texts: usize, elapsed: Duration) {
    if texts == 0 {
        return;
    }
    let per_message = elapsed.as_secs_f64() / texts as f64;
    for _ in 0..texts {
        METRICS.inference_seconds.observe(per_message);
    }
}

/// User messages of a sentiment event the pipeline built.
pub fn record_messages_classified(messages: usize) {
    METRICS.messages_classified.inc_by(messages as u64);
}

/// Messages one tier of the result cache answered (`hits`) and did not.
pub fn record_cache_lookups(tier: &str, hits: u64, misses: u64) {
    let m = &*METRICS;
    m.cache.with_label_values(&[tier, "hit"]).inc_by(hits);
    m.cache.with_label_values(&[tier, "miss"]).inc_by(misses);
}

pub fn record_redis_error(kind: &str) {
    METRICS.redis_errors.with_label_values(&[kind]).inc();
}

pub fn set_redis_available(up: bool) {
    METRICS.redis_available.set(up as i64);
}

pub fn set_activities_in_flight(n: usize) {
    METRICS.activities_in_flight.set(n as i64);
}

pub fn set_worker_stuck(stuck: bool) {
    METRICS.worker_stuck.set(stuck as i64);
}

pub fn record_trap(kind: &str) {
    METRICS.traps.with_label_values(&[kind]).inc();
}

pub fn record_insert_rows(rows: usize) {
    METRICS.clickhouse_rows.inc_by(rows as u64);
}

pub fn record_insert_error() {
    METRICS.clickhouse_errors.inc();
}

/// A ClickHouse request about to be retried.
pub fn record_clickhouse_retry() {
    METRICS.clickhouse_retries.inc();
}

/// One activity heartbeat, `recorded` or not.
pub fn record_heartbeat(recorded: bool) {
    METRICS.heartbeats.with_label_values(&[if recorded { "recorded" } else { "failed" }]).inc();
}

/// The pool's instances now: `busy` checked out, `idle` ready, of at most `capacity`.
pub fn set_instances(busy: usize, idle: usize, capacity: usize) {
    let m = &*METRICS;
    m.instances.with_label_values(&["busy"]).set(busy as i64);
    m.instances.with_label_values(&["idle"]).set(idle as i64);
    m.instances_capacity.set(capacity as i64);
}

/// The active plugin version changed to `version` (counted as a swap unless
/// it is the first version of the process).
pub fn record_plugin_active(version: &str, model: &str, swap: bool) {
    let m = &*METRICS;
    if swap {
        m.plugin_swaps.inc();
    }
    m.plugin_info.reset();
    m.plugin_info.with_label_values(&[version, model]).set(1);
}

/// A plugin's instances start from a snapshot `outcome` (created, reused).
pub fn record_snapshot(outcome: &str) {
    METRICS.snapshots.with_label_values(&[outcome]).inc();
}

/// A plugin's instances load the model themselves, for `reason`.
pub fn record_snapshot_fallback(reason: &str) {
    METRICS.snapshot_fallbacks.with_label_values(&[reason]).inc();
}

pub fn record_snapshot_discarded() {
    METRICS.snapshots_discarded.inc();
}

/// A plugin file refused for its signature (`signature::Refusal::reason`).
pub fn record_plugin_refused(reason: &str) {
    METRICS.plugins_refused.with_label_values(&[reason]).inc();
}

/// A cached `kind` (artifact, snapshot) deleted instead of loaded, for `reason`.
pub fn record_cache_discarded(kind: &str, reason: &str) {
    METRICS.cache_discarded.with_label_values(&[kind, reason]).inc();
}

pub fn record_deduplicated_in_flight() {
    METRICS.deduplicated_in_flight.inc();
}

pub fn record_plugin_rejected() {
    METRICS.plugin_rejections.inc();
}

/// Observes an activity's duration when dropped; `result` says how it ended
/// (`ok` unless set otherwise).
pub struct ActivityTimer {
    started: Instant,
    result: &'static str,
}

impl ActivityTimer {
    pub fn start() -> Self {
        ActivityTimer { started: Instant::now(), result: "error" }
    }

    pub fn succeeded(&mut self) {
        self.result = "ok";
    }
}

impl Drop for ActivityTimer {
    fn drop(&mut self) {
        METRICS.activity_seconds.with_label_values(&[self.result]).observe(self.started.elapsed().as_secs_f64());
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    // Encoding into a Vec only fails on metric families the registry cannot
    // produce (all of ours are valid), so an error leaves the output empty.
    if let Err(e) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";
