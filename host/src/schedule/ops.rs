//! The scheduler's `/metrics`, `/healthz` and `/readyz` (the worker's
//! routes, with the scheduler's checks): ready when Temporal's frontend is
//! serving and the brokers answer a metadata request for the topic, each
//! within 3 s.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::consumer::Consumer;
use serde_json::{json, Value};

use super::consumer::EventsConsumer;
use crate::ops_server::CHECK_TIMEOUT;

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

    async fn check(&self) -> (bool, Value) {
        let (temporal, kafka) = tokio::join!(crate::ops_server::temporal_serving(&self.client), self.kafka());
        let ready = temporal.is_ok() && kafka.is_ok();
        let one = |r: Result<String, String>| match r {
            Ok(detail) => json!({"ok": true, "detail": detail}),
            Err(error) => json!({"ok": false, "error": error}),
        };
        let failed: Vec<&str> =
            [("temporal", temporal.is_ok()), ("kafka", kafka.is_ok())].into_iter().filter(|(_, ok)| !ok).map(|(n, _)| n).collect();
        let body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "failed": failed,
            "checks": {"temporal": one(temporal.map(|()| "serving".to_string())), "kafka": one(kafka)},
        });
        (ready, body)
    }
}

pub fn router(probe: Arc<Probe>) -> Router {
    Router::new()
        .route("/metrics", get(|| async { ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render()) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .with_state(probe)
}

async fn readyz(State(probe): State<Arc<Probe>>) -> (StatusCode, Json<Value>) {
    let (ready, body) = probe.check().await;
    if !ready {
        tracing::warn!(checks = %body["checks"], "not ready");
    }
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
