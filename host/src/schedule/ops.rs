//! The scheduler's `/readyz` checks (served on the worker's routes, see
//! `ops_server`): ready when Temporal's frontend is
//! serving and the brokers answer a metadata request for the topic, each
//! within 3 s.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use serde_json::Value;

use super::consumer::EventsConsumer;
use crate::ops_server::{readiness, Readiness, CHECK_TIMEOUT};

pub struct Probe {
    pub client: temporalio_client::Client,
    pub consumer: Arc<EventsConsumer>,
    pub topic: String,
}

impl Probe {
    async fn kafka(&self) -> Result<String, String> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        // librdkafka's metadata call blocks; its own timeout bounds it.
        let answer = tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), CHECK_TIMEOUT).map_err(|e| e.to_string())?;
            let partitions = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
            let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            if partitions == 0 {
                return Err(format!("topic {topic} has no partitions"));
            }
            Ok(format!("{partitions} partition(s), {assigned} assigned here"))
        });
        match tokio::time::timeout(CHECK_TIMEOUT + Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
}

impl Readiness for Probe {
    async fn check(&self) -> (bool, Value) {
        let (temporal, kafka) = tokio::join!(crate::ops_server::temporal_serving(&self.client), self.kafka());
        readiness(vec![("temporal", temporal.map(|()| Value::from("serving"))), ("kafka", kafka.map(Value::from))])
    }
}
