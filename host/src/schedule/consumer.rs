//! The Kafka side: the consumer's settings and its rebalance callbacks.
//!
//! Offsets are committed by hand, only what [`Tracker`] allows (never
//! librdkafka's auto-commit, which commits what was read). On a revocation
//! the callback, which librdkafka runs inside the poll before the
//! partitions move, commits what is done and ends the partition's epoch:
//! its open batch and unfinished starts are abandoned, and the next owner
//! reads them again (deterministic workflow ids: nothing starts twice).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::offsets::Tracker;
use crate::config::{KafkaConfig, ScheduleConfig};

/// librdkafka's own session and poll settings are its defaults; these are
/// the ones the scheduler depends on.
pub fn client_config(schedule: &ScheduleConfig, kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &schedule.brokers)
        .set("group.id", &schedule.group)
        .set("enable.auto.commit", "false")
        // Not the store either: what is committed comes from the tracker.
        .set("enable.auto.offset.store", "false")
        // A new group starts at the oldest message kept: nothing is skipped.
        .set("auto.offset.reset", "earliest")
        // Bounded prefetch: the memory a paused consumer holds.
        .set("queued.max.messages.kbytes", "16384")
        .set("session.timeout.ms", schedule.session_timeout_ms.to_string())
        // The lag per partition comes from librdkafka's statistics (no extra request).
        .set("statistics.interval.ms", "5000")
        .set("client.id", crate::worker::default_identity());
    for (name, value) in kafka.properties() {
        c.set(name, value);
    }
    c
}

/// The rebalance callbacks' view of the offsets; the run loop shares it.
pub struct Context {
    pub topic: String,
    pub tracker: Arc<Mutex<Tracker>>,
    /// Partitions revoked since the run loop last looked (it drops their open batches).
    pub revoked: Arc<Mutex<Vec<i32>>>,
    /// The last error retrying cannot mend (TLS, authentication, a protocol
    /// mismatch), as librdkafka reported it.
    pub refused: Mutex<Option<Refused>>,
    /// Set once the group assigned partitions here: the brokers took this client.
    pub contacted: AtomicBool,
}

impl Context {
    /// A refusal met before the brokers ever took this client (taken: it is
    /// answered once); `None` once they did, when a refusal is retried.
    pub fn refused_before_contact(&self) -> Option<Refused> {
        if self.contacted.load(Ordering::Relaxed) {
            return None;
        }
        self.refused.lock().take()
    }
}

/// Why the brokers would not talk to this client: librdkafka retries these
/// for ever, so a scheduler that meets one before the brokers ever took it
/// names it and stops (run loop) instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("TLS with the brokers failed: {0}")]
    Tls(String),
    #[error("the brokers refused the SASL login: {0}")]
    Authentication(String),
    #[error("the brokers speak another security protocol than kafka.security_protocol: {0}")]
    Protocol(String),
}

impl Refused {
    /// The errors of the kinds above; `None` for the ones retrying may mend
    /// (a broker down, a timeout).
    pub fn classify(error: &KafkaError, reason: &str) -> Option<Refused> {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::SSL) => Some(Refused::Tls(reason.to_string())),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                Some(Refused::Authentication(reason.to_string()))
            }
            _ => Refused::from_text(reason),
        }
    }

    /// From librdkafka's text alone: a failed handshake comes as a
    /// transport failure whose reason is OpenSSL's; a plaintext client
    /// meeting a TLS listener sees the connection closed at its first
    /// request (the ApiVersion query), and the reverse gets librdkafka's own
    /// hint about `security.protocol`.
    pub fn from_text(text: &str) -> Option<Refused> {
        if text.contains("SSL handshake failed") || text.contains("SSL routines") {
            Some(Refused::Tls(text.to_string()))
        } else if text.contains("SASL authentication error") || text.contains("Authentication failed") {
            Some(Refused::Authentication(text.to_string()))
        } else if text.contains("security.protocol") || (text.contains("Disconnected") && text.contains("in state APIVERSION_QUERY")) {
            Some(Refused::Protocol(text.to_string()))
        } else {
            None
        }
    }
}

impl ClientContext for Context {
    /// librdkafka's own log lines (through its main queue, served by the
    /// poll), where a failed handshake or login is told first.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // A connection failure is facility FAIL, at info level when the peer closed it.
        if facility == "FAIL" || (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            if let Some(refused) = Refused::from_text(message) {
                *self.refused.lock() = Some(refused);
            }
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match Refused::classify(&error, reason) {
            Some(refused) => {
                tracing::error!(error = %refused, "kafka brokers refused the connection");
                *self.refused.lock() = Some(refused);
            }
            None => tracing::warn!(error = %error, reason, "kafka client error (librdkafka retries)"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let lags: Vec<(i32, i64)> = statistics
            .topics
            .get(&self.topic)
            .map(|t| {
                // Partition -1 is librdkafka's internal one; a lag of -1 means
                // not known yet (nothing committed, no watermark fetched).
                t.partitions.values().filter(|p| p.partition >= 0 && p.consumer_lag >= 0).map(|p| (p.partition, p.consumer_lag)).collect()
            })
            .unwrap_or_default();
        crate::metrics::set_schedule_lag(&lags);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let mut commit = TopicPartitionList::new();
        let mut partitions = Vec::new();
        {
            let mut tracker = self.tracker.lock();
            for element in list.elements_for_topic(&self.topic) {
                let partition = element.partition();
                partitions.push(partition);
                if let Some(offset) = tracker.revoke(partition) {
                    let _ = commit.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
                }
            }
        }
        if commit.count() > 0 {
            let ok = consumer.commit(&commit, CommitMode::Sync).is_ok();
            crate::metrics::record_schedule_commit(ok);
            tracing::info!(?partitions, committed = ok, "partitions revoked: done offsets committed, the rest left to the next owner");
        } else {
            tracing::info!(?partitions, "partitions revoked");
        }
        self.revoked.lock().extend(partitions);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut tracker = self.tracker.lock();
                let partitions: Vec<i32> = list.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
                for p in &partitions {
                    tracker.assign(*p);
                }
                self.contacted.store(true, Ordering::Relaxed);
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            crate::metrics::record_schedule_commit(false);
            tracing::warn!(error = %e, offsets = ?offsets.to_topic_map(), "offset commit failed (the next commit carries them)");
        }
    }
}

pub type EventsConsumer = StreamConsumer<Context>;

/// Commits `(partition, offset)` pairs of `topic`.
pub fn commit(consumer: &EventsConsumer, topic: &str, offsets: &[(i32, i64)], mode: CommitMode) -> bool {
    if offsets.is_empty() {
        return true;
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    let ok = match consumer.commit(&list, mode) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, ?offsets, "offset commit failed");
            false
        }
    };
    crate::metrics::record_schedule_commit(ok);
    if ok {
        tracing::debug!(?offsets, "offsets committed");
    }
    ok
}

/// Pauses or resumes every partition assigned now.
pub fn set_paused(consumer: &EventsConsumer, paused: bool) {
    let Ok(assignment) = consumer.assignment() else { return };
    let result = if paused { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
    if let Err(e) = result {
        tracing::warn!(error = %e, paused, "cannot pause/resume the partitions");
    }
    crate::metrics::set_schedule_paused(paused);
}
