//! The `schedule` and `kafka` sections: where `llma-sentiment schedule`
//! reads `$ai_generation` events from, which it starts workflows for, and
//! the few librdkafka settings a managed Kafka needs (SASL, TLS).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The events consumer (`llma-sentiment schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// PostHog's events JSON topic.
    pub topic: String,
    /// The consumer group: schedulers of one group share the partitions.
    pub group: String,
    /// Team ids whose events start workflows, comma-separated; empty: every team.
    pub teams: String,
    /// PostHog's rollout rule on the generation uuid (see `worker::rollout`).
    pub rollout_percent: f64,
    /// Events per workflow: 1 starts `{"event_data": ...}` per event, more
    /// start `{"events": [...]}` batches of one partition.
    pub batch_events: usize,
    /// A batch that is not full starts once its first event waited this long, ms.
    pub batch_age_ms: u64,
    /// A batch's input stays within this many bytes (Temporal warns above 512 KiB).
    pub batch_max_bytes: usize,
    /// Workflow starts not yet acknowledged by Temporal; at the bound the
    /// consumer pauses its partitions.
    pub max_in_flight: usize,
    /// Workflow ids start with this.
    pub id_prefix: String,
    /// `/metrics`, `/healthz`, `/readyz` of the scheduler; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// After SIGTERM/SIGINT: open batches start, in-flight starts finish and
    /// offsets are committed within this bound; what is left is re-read later.
    pub shutdown_secs: u64,
    /// How often acknowledged offsets are committed, ms.
    pub commit_interval_ms: u64,
    /// librdkafka `session.timeout.ms`: how long a scheduler that died
    /// unannounced keeps its partitions before the group hands them over.
    pub session_timeout_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "clickhouse_events_json".into(),
            group: "llma-sentiment-scheduler".into(),
            teams: String::new(),
            rollout_percent: 100.0,
            batch_events: 1,
            batch_age_ms: 30_000,
            batch_max_bytes: crate::worker::DEFAULT_BATCH_MAX_BYTES,
            max_in_flight: 64,
            id_prefix: "llma-sentiment".into(),
            metrics_addr: None,
            shutdown_secs: 20,
            commit_interval_ms: 1000,
            session_timeout_ms: 45_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not a team id")]
pub struct BadTeam(pub String);

impl ScheduleConfig {
    /// The allowlist; `None` lets every team through.
    pub fn team_allowlist(&self) -> Result<Option<Vec<i64>>, BadTeam> {
        let teams: Vec<i64> = self
            .teams
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<i64>().map_err(|_| BadTeam(t.to_string())))
            .collect::<Result<_, _>>()?;
        Ok((!teams.is_empty()).then_some(teams))
    }

    pub fn batch_age(&self) -> Duration {
        Duration::from_millis(self.batch_age_ms)
    }

    pub fn shutdown_bound(&self) -> Duration {
        Duration::from_secs(self.shutdown_secs)
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

/// librdkafka settings for a managed Kafka: only these are passed through
/// (an allow-list, so a config file cannot switch off what the scheduler
/// relies on: manual commits, the group, the offsets reset, the brokers'
/// host name check).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// Never logged nor printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password: Option<Secret>,
    /// `ssl.ca.location`: the CA file (PEM) that signs the brokers'
    /// certificates; the system's CA store when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// `ssl.certificate.location`: the client certificate (PEM) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// `ssl.key.location`: its private key (PEM, unencrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// `kafka.security_protocol`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaProtocol {
    pub fn tls(self) -> bool {
        matches!(self, KafkaProtocol::Ssl | KafkaProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl)
    }
}

/// The SASL mechanisms this build's librdkafka has (no GSSAPI, no OAUTHBEARER).
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl KafkaConfig {
    /// The protocol, plaintext when unset; `None` for a name librdkafka does not know.
    pub fn protocol(&self) -> Option<KafkaProtocol> {
        match self.security_protocol.as_deref().map(|p| p.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("plaintext") => Some(KafkaProtocol::Plaintext),
            Some("ssl") => Some(KafkaProtocol::Ssl),
            Some("sasl_plaintext") => Some(KafkaProtocol::SaslPlaintext),
            Some("sasl_ssl") => Some(KafkaProtocol::SaslSsl),
            Some(_) => None,
        }
    }

    /// The TLS files, in the form the other clients' settings take.
    pub fn tls(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() }
    }

    /// The settings that cannot work together, as (key, reason).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let Some(protocol) = self.protocol() else {
            return Err(("kafka.security_protocol", "must be plaintext, ssl, sasl_plaintext or sasl_ssl".into()));
        };
        let mechanism = self.sasl_mechanism.as_deref().map(str::trim).filter(|m| !m.is_empty());
        match (protocol.sasl(), mechanism) {
            (true, None) => return Err(("kafka.sasl_mechanism", format!("{} needs a mechanism: one of {}", self.security_protocol.as_deref().unwrap_or_default().trim(), SASL_MECHANISMS.join(", ")))),
            (true, Some(m)) if !SASL_MECHANISMS.iter().any(|k| k.eq_ignore_ascii_case(m)) => {
                return Err(("kafka.sasl_mechanism", format!("{m} is not in this build: one of {}", SASL_MECHANISMS.join(", "))))
            }
            (true, Some(_)) if self.sasl_username.as_deref().is_none_or(|u| u.trim().is_empty()) || self.sasl_password.is_none() => {
                return Err(("kafka.sasl_username", "SASL needs kafka.sasl_username and kafka.sasl_password".into()))
            }
            (false, Some(_)) => return Err(("kafka.sasl_mechanism", "set, but kafka.security_protocol is not sasl_plaintext or sasl_ssl".into())),
            _ => {}
        }
        let tls = self.tls();
        if !tls.is_empty() && !protocol.tls() {
            return Err(("kafka.security_protocol", "a kafka.tls_* file is set, but the protocol is not ssl or sasl_ssl: TLS needs one of them".into()));
        }
        tls.check().map_err(|e| ("kafka.tls_key", e.to_string()))
    }

    /// The librdkafka properties set, as (name, value); the password is in
    /// it, so this never goes to a log.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut set = |name: &'static str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                out.push((name, v.trim().to_string()));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        set("security.protocol", self.security_protocol.clone());
        set("sasl.mechanism", self.sasl_mechanism.as_ref().map(|m| m.to_ascii_uppercase()));
        set("sasl.username", self.sasl_username.clone());
        set("sasl.password", self.sasl_password.as_ref().map(|s| s.expose().to_string()));
        set("ssl.ca.location", path(&self.tls_ca));
        set("ssl.certificate.location", path(&self.tls_cert));
        set("ssl.key.location", path(&self.tls_key));
        if self.protocol().is_some_and(KafkaProtocol::tls) {
            // librdkafka's default since 2.0, set so that no default can
            // turn the brokers' host name check off.
            set("ssl.endpoint.identification.algorithm", Some("https".into()));
        }
        out
    }
}
