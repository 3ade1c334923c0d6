//! Where the Temporal frontend is and how this process connects to it.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};

/// The `temporal` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// Temporal frontend, host:port (or a URL).
    pub address: String,
    pub namespace: String,
    /// `llm-analytics-task-queue` in production.
    pub task_queue: String,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            address: "127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "development-task-queue".into(),
        }
    }
}

impl TemporalConfig {
    pub fn url(&self) -> Result<url::Url, url::ParseError> {
        if self.address.contains("://") {
            url::Url::parse(&self.address)
        } else {
            url::Url::parse(&format!("http://{}", self.address))
        }
    }
}

/// `llma-sentiment@<host>:<pid>`: distinct for every process of a task queue.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("llma-sentiment@{host}:{}", std::process::id())
}

pub async fn connect(temporal: &TemporalConfig) -> anyhow::Result<Client> {
    connect_as(temporal, &default_identity()).await
}

pub async fn connect_as(temporal: &TemporalConfig, identity: &str) -> anyhow::Result<Client> {
    let url = temporal.url().with_context(|| format!("TEMPORAL_ADDRESS {:?} is not host:port", temporal.address))?;
    let options = ConnectionOptions::new(url).identity(identity.to_string()).build();
    let connection = Connection::connect(options).await.with_context(|| format!("connecting to Temporal at {}", temporal.address))?;
    Ok(Client::new(connection, ClientOptions::new(temporal.namespace.clone()).build())?)
}

