//! `llma-sentiment schedule`: the front door of the seed's pipeline. A
//! Kafka consumer in a consumer group reads PostHog's events JSON topic,
//! keeps the `$ai_generation` events its rules select ([`filter`]), groups
//! them into workflows ([`batcher`]) and starts
//! `llma-run-sentiment-classification` for each ([`starter`]).
//!
//! Guarantees: at-least-once and in order per partition (an offset is
//! committed only once every workflow start up to it was acknowledged:
//! [`offsets`]); nothing started twice (deterministic workflow ids, conflict
//! policy use-existing); Temporal unavailable: starts are retried with
//! backoff and, at `max_in_flight` starts waiting, the partitions are
//! paused (bounded memory, nothing committed, nothing dropped); a message
//! that is not a usable event is counted by reason, logged with its offset
//! and committed past.

pub mod batcher;
mod consumer;
pub mod filter;
pub mod offsets;
mod ops;
pub mod starter;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use tokio::task::JoinSet;

use crate::config::Config;
use batcher::{BatchRules, Batcher, Unit};
use consumer::{Context, EventsConsumer};
use filter::{Filter, PRODUCT_TRACK_HEADER};
use offsets::Tracker;
use starter::{Outcome, StartSettings};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("kafka consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka brokers {brokers}: {refused}")]
    Refused { brokers: String, refused: consumer::Refused },
    #[error("kafka TLS settings: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("schedule.teams: {0}")]
    Teams(#[from] crate::config::BadTeam),
    #[error("binding the metrics endpoint {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("stopped before Temporal could be reached")]
    StoppedBeforeTemporal,
}

/// How long to wait between attempts to reach Temporal at start.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// Runs until SIGTERM/SIGINT, then starts the open batches, waits for the
/// starts in flight and commits, within `schedule.shutdown_secs`.
pub async fn run(config: &Config) -> Result<(), ScheduleError> {
    let sc = &config.schedule;
    crate::metrics::init();
    let reasons: Vec<&str> = filter::Skip::FILTERED.iter().map(|s| s.as_str()).collect();
    crate::metrics::init_schedule(&reasons);
    let filter = Filter { teams: sc.team_allowlist()?, rollout_percent: sc.rollout_percent };
    let mut stop = std::pin::pin!(crate::worker::wait_for_signal());

    // Temporal first: consuming before it answers would only fill the in-flight bound.
    let client = loop {
        tokio::select! {
            _ = &mut stop => return Err(ScheduleError::StoppedBeforeTemporal),
            connected = tokio::time::timeout(Duration::from_secs(30), crate::worker::connect(&config.temporal)) => match connected {
                Ok(Ok(client)) => break client,
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "Temporal not reachable yet: retrying"),
                Err(_) => tracing::warn!("Temporal not reachable within 30 s: retrying"),
            }
        }
        tokio::time::sleep(CONNECT_RETRY).await;
    };

    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let context =
        Context { topic: sc.topic.clone(), tracker: tracker.clone(), revoked: revoked.clone(), refused: Mutex::new(None), contacted: Default::default() };
    // A bad file is named here, not by librdkafka's OpenSSL error text.
    config.kafka.tls().pem()?;
    if config.kafka.protocol() == Some(crate::config::KafkaProtocol::SaslPlaintext)
        && config.kafka.sasl_mechanism.as_deref().is_some_and(|m| m.trim().eq_ignore_ascii_case("PLAIN"))
    {
        tracing::warn!("kafka.sasl_mechanism PLAIN over sasl_plaintext sends the password in clear text: use sasl_ssl or SCRAM");
    }
    let consumer: Arc<EventsConsumer> = Arc::new(consumer::client_config(sc, &config.kafka).create_with_context(context)?);
    consumer.subscribe(&[&sc.topic])?;

    let server = match sc.metrics_addr {
        Some(addr) => {
            let probe = Arc::new(ops::Probe { client: client.clone(), consumer: consumer.clone(), topic: sc.topic.clone() });
            let server = crate::ops_server::serve(addr, probe)
                .await
                .map_err(|source| ScheduleError::Bind { addr, source })?;
            Some(server)
        }
        None => None,
    };
    let settings = StartSettings {
        namespace: config.temporal.namespace.clone(),
        task_queue: config.temporal.task_queue.clone(),
        identity: crate::worker::default_identity(),
        execution_timeout: config.workflow.execution_timeout(),
    };
    let rules = BatchRules {
        topic: sc.topic.clone(),
        id_prefix: sc.id_prefix.clone(),
        batch_events: sc.batch_events,
        batch_age: sc.batch_age(),
        batch_max_bytes: sc.batch_max_bytes,
    };
    tracing::info!(
        brokers = %sc.brokers, topic = %sc.topic, group = %sc.group, task_queue = %settings.task_queue,
        batch_events = sc.batch_events, batch_age_ms = sc.batch_age_ms, rollout_percent = sc.rollout_percent,
        teams = %if sc.teams.trim().is_empty() { "all" } else { sc.teams.as_str() },
        "scheduler consuming"
    );
    let mut run = Loop {
        consumer,
        client,
        settings: Arc::new(settings),
        filter,
        batcher: Batcher::new(rules),
        tracker,
        revoked,
        tasks: JoinSet::new(),
        topic: sc.topic.clone(),
        max_in_flight: sc.max_in_flight,
        paused: false,
    };
    if let Err(refused) = run.consume(stop, sc.commit_interval()).await {
        if let Some(server) = server {
            server.shutdown(crate::worker::stop::ENDPOINTS_SHUTDOWN).await;
        }
        return Err(ScheduleError::Refused { brokers: sc.brokers.clone(), refused });
    }
    run.shut_down(sc.shutdown_bound()).await;
    if let Some(server) = server {
        server.shutdown(crate::worker::stop::ENDPOINTS_SHUTDOWN).await;
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

struct Loop {
    consumer: Arc<EventsConsumer>,
    client: temporalio_client::Client,
    settings: Arc<StartSettings>,
    filter: Filter,
    batcher: Batcher,
    tracker: Arc<Mutex<Tracker>>,
    revoked: Arc<Mutex<Vec<i32>>>,
    tasks: JoinSet<(Unit, Outcome)>,
    topic: String,
    max_in_flight: usize,
    paused: bool,
}

/// An idle loop still wakes this often (open batches, pause state).
const IDLE: Duration = Duration::from_secs(1);

impl Loop {
    /// Until `stop`; `Err` when the brokers refused this client before they
    /// ever took it (a TLS, login or protocol error: retrying cannot mend
    /// it). One that comes later, with partitions held, is logged and
    /// retried (a certificate being rotated).
    async fn consume(
        &mut self,
        mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
        commit_every: Duration,
    ) -> Result<(), consumer::Refused> {
        let mut commit_tick = tokio::time::interval(commit_every);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(refused) = self.consumer.context().refused_before_contact() {
                return Err(refused);
            }
            self.forget_revoked();
            // At the bound the partitions pause; polling goes on, so the
            // group keeps this member and rebalances still reach it.
            let full = self.tasks.len() >= self.max_in_flight;
            if full != self.paused {
                consumer::set_paused(&self.consumer, full);
                self.paused = full;
                tracing::info!(in_flight = self.tasks.len(), paused = full, "in-flight bound: partitions {}", if full { "paused" } else { "resumed" });
            }
            let due = self.batcher.next_deadline().unwrap_or_else(|| Instant::now() + IDLE).min(Instant::now() + IDLE);
            // A message borrows its consumer: this handle, not `self`.
            let consumer = self.consumer.clone();
            tokio::select! {
                _ = &mut stop => {
                    tracing::info!("shutdown requested: starting open batches, finishing starts, committing");
                    return Ok(());
                }
                message = consumer.recv() => {
                    let units = match message {
                        Ok(m) => self.take(&m),
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka consumer error");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Vec::new()
                        }
                    };
                    self.spawn(units);
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => self.finish(joined),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {
                    let units = self.batcher.expired(Instant::now());
                    self.spawn(units);
                }
                _ = commit_tick.tick() => {
                    let offsets = self.tracker.lock().take_commits();
                    consumer::commit(&self.consumer, &self.topic, &offsets, CommitMode::Async);
                }
            }
        }
    }

    /// One message: skipped (done at once) or into a batch.
    fn take(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<Unit> {
        crate::metrics::record_schedule_consumed();
        let (partition, offset) = (m.partition(), m.offset());
        let track = m.headers().and_then(|h| h.iter().find(|h| h.key == PRODUCT_TRACK_HEADER).map(|h| h.value.unwrap_or_default()));
        let epoch = self.tracker.lock().read(partition, offset);
        match self.filter.check(m.payload(), track) {
            Ok(kept) => {
                let json = serde_json::to_vec(&kept.event).unwrap_or_default();
                self.batcher.push(partition, epoch, offset, &kept.uuid, &json, Instant::now())
            }
            Err(skip) => {
                if skip == filter::Skip::SampledOut {
                    crate::metrics::record_schedule_sampled_out();
                } else {
                    crate::metrics::record_schedule_filtered(skip.as_str());
                }
                if skip.is_unusable() {
                    tracing::warn!(topic = %self.topic, partition, offset, reason = skip.as_str(), "unusable message: skipped and committed past");
                } else {
                    tracing::debug!(partition, offset, reason = skip.as_str(), "message starts no workflow");
                }
                self.tracker.lock().done(partition, epoch, &[offset]);
                Vec::new()
            }
        }
    }

    fn spawn(&mut self, units: Vec<Unit>) {
        for unit in units {
            let (client, settings, tracker) = (self.client.clone(), self.settings.clone(), self.tracker.clone());
            self.tasks.spawn(async move {
                let ours = || tracker.lock().epoch(unit.partition) == Some(unit.epoch);
                let outcome = starter::start(&client, &settings, &unit, ours).await;
                (unit, outcome)
            });
        }
        crate::metrics::set_schedule_in_flight(self.tasks.len());
    }

    fn finish(&mut self, joined: Result<(Unit, Outcome), tokio::task::JoinError>) {
        crate::metrics::set_schedule_in_flight(self.tasks.len());
        let (unit, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                // Its offsets stay pending, so nothing past them is committed (never lost).
                tracing::error!(error = %e, "a workflow start task failed: its partition commits no further until a restart");
                return;
            }
        };
        let result = match &outcome {
            Outcome::Started => "started",
            Outcome::AlreadyStarted => "already_started",
            Outcome::Rejected(error) => {
                tracing::error!(workflow_id = %unit.workflow_id, partition = unit.partition, offsets = ?unit.offsets, %error, "Temporal refused the workflow input: skipped and committed past");
                "rejected"
            }
            Outcome::Abandoned => {
                tracing::info!(workflow_id = %unit.workflow_id, partition = unit.partition, "start abandoned: the partition moved to another scheduler");
                return;
            }
        };
        crate::metrics::record_schedule_workflow(result, unit.events);
        tracing::debug!(workflow_id = %unit.workflow_id, partition = unit.partition, events = unit.events, result, "workflow start acknowledged");
        self.tracker.lock().done(unit.partition, unit.epoch, &unit.offsets);
    }

    /// Open batches of partitions revoked since the last turn are dropped.
    fn forget_revoked(&mut self) {
        let revoked: Vec<i32> = std::mem::take(&mut *self.revoked.lock());
        for partition in revoked {
            let dropped = self.batcher.abandon(partition);
            if dropped > 0 {
                tracing::info!(partition, events = dropped, "open batch of a revoked partition dropped: the next owner reads it again");
            }
        }
    }

    /// Stops reading, starts the open batches, waits for the starts within
    /// `bound`, commits what was acknowledged and leaves the group.
    async fn shut_down(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        consumer::set_paused(&self.consumer, true);
        self.forget_revoked();
        let units = self.batcher.drain();
        self.spawn(units);
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(joined) = self.tasks.join_next() => self.finish(joined),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.tasks.len(), bound_secs = bound.as_secs(), "shutdown bound reached: starts still in flight are left (re-read by the next owner; ids are deterministic)");
                    break;
                }
            }
        }
        self.tasks.abort_all();
        let offsets = self.tracker.lock().all_commits();
        let ok = consumer::commit(&self.consumer, &self.topic, &offsets, CommitMode::Sync);
        tracing::info!(?offsets, committed = ok, "final commit");
        // Leaving the group now hands the partitions over at once instead
        // of after the session timeout.
        self.consumer.unsubscribe();
    }
}
