//! The worker's metrics and health endpoint (HTTP, off unless an address is
//! configured), for Prometheus and for an orchestrator's probes:
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/healthz` | 200 while the process runs |
//! | GET | `/readyz` | 200 when the plugin is loaded, Temporal answers, ClickHouse answers and the watchdog finds the worker not stuck; else 503. JSON body with each check |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::TemporalConfig;
use crate::http_server::{Server, Timeouts};
use crate::registry::Registry;
use crate::sink::ClickHouseSink;

/// A readiness probe must answer well within an orchestrator's probe timeout.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
pub struct ReadinessProbe {
    registry: Arc<Registry>,
    sink: Arc<ClickHouseSink>,
    temporal: TemporalConfig,
    watchdog: Arc<crate::worker::Watchdog>,
    /// Connected on first use and kept: the client reconnects by itself.
    client: tokio::sync::Mutex<Option<temporalio_client::Client>>,
}

impl ReadinessProbe {
    pub fn new(
        registry: Arc<Registry>,
        sink: Arc<ClickHouseSink>,
        temporal: TemporalConfig,
        watchdog: Arc<crate::worker::Watchdog>,
    ) -> Arc<ReadinessProbe> {
        Arc::new(ReadinessProbe { registry, sink, temporal, watchdog, client: tokio::sync::Mutex::new(None) })
    }

    fn plugin(&self) -> Result<String, String> {
        let v = self.registry.current();
        if v.info.labels.is_empty() {
            return Err("the active plugin reports no labels".into());
        }
        Ok(v.label())
    }

    async fn temporal(&self) -> Result<(), String> {
        let mut guard = self.client.lock().await;
        if guard.is_none() {
            let client = tokio::time::timeout(CHECK_TIMEOUT, crate::worker::connect(&self.temporal))
                .await
                .map_err(|_| format!("no connection within {CHECK_TIMEOUT:?}"))?
                .map_err(|e| format!("{e:#}"))?;
            *guard = Some(client);
        }
        temporal_serving(guard.as_ref().expect("connected above")).await
    }

    async fn clickhouse(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, self.sink.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
}

impl Readiness for ReadinessProbe {
    async fn check(&self) -> (bool, Value) {
        let (temporal, clickhouse) = tokio::join!(self.temporal(), self.clickhouse());
        let plugin = self.plugin();
        let watchdog = match self.watchdog.stuck_reason() {
            None => Ok(self.watchdog.in_flight()),
            Some(reason) => Err(reason),
        };
        readiness(vec![
            ("plugin", plugin.map(Value::from)),
            ("temporal", temporal.map(|()| Value::from(self.temporal.address.clone()))),
            ("clickhouse", clickhouse.map(|()| Value::from(self.sink.table().to_string()))),
            ("watchdog", watchdog.map(|n| Value::from(format!("{n} activities in flight")))),
        ])
    }
}

/// What a process's `/readyz` runs (the worker's checks, the scheduler's).
pub trait Readiness: Send + Sync + 'static {
    /// Every check, each within `CHECK_TIMEOUT`; ready when all pass, and
    /// the body (see [`readiness`]).
    fn check(&self) -> impl std::future::Future<Output = (bool, Value)> + Send;
}

/// `/readyz`'s answer from named checks: ready when every one passed; the
/// body names the failed ones and holds each check's detail or error.
pub fn readiness(checks: Vec<(&'static str, Result<Value, String>)>) -> (bool, Value) {
    let failed: Vec<&str> = checks.iter().filter(|(_, r)| r.is_err()).map(|(name, _)| *name).collect();
    let ready = failed.is_empty();
    let checks: serde_json::Map<String, Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let one = match r {
                Ok(detail) => json!({"ok": true, "detail": detail}),
                Err(error) => json!({"ok": false, "error": error}),
            };
            (name.to_string(), one)
        })
        .collect();
    (ready, json!({"status": if ready { "ready" } else { "not_ready" }, "failed": failed, "checks": checks}))
}

/// Whether Temporal's frontend answers a gRPC health check as serving,
/// within `CHECK_TIMEOUT` (the worker's and the scheduler's `/readyz`).
pub async fn temporal_serving(client: &temporalio_client::Client) -> Result<(), String> {
    use temporalio_common::protos::grpc::health::v1::{health_check_response::ServingStatus, HealthCheckRequest};
    let request = temporalio_client::tonic::Request::new(HealthCheckRequest {
        service: "temporal.api.workflowservice.v1.WorkflowService".into(),
    });
    let mut health = client.connection().health_service();
    let response = tokio::time::timeout(CHECK_TIMEOUT, health.check(request))
        .await
        .map_err(|_| format!("no answer within {CHECK_TIMEOUT:?}"))?
        .map_err(|e| e.message().to_string())?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("frontend is {}", other.as_str_name())),
    }
}

/// ReadinessProbe checks take at most `CHECK_TIMEOUT` each, run at once.
pub const TIMEOUTS: Timeouts = Timeouts { header_read: Duration::from_secs(10), request: Duration::from_secs(10) };

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router<P: Readiness>(readiness: Arc<P>) -> Router {
    Router::new()
        .route("/metrics", get(|| async { ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render()) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .with_state(readiness)
}

async fn readyz<P: Readiness>(State(readiness): State<Arc<P>>) -> (StatusCode, Json<Value>) {
    let (ready, body) = readiness.check().await;
    if !ready {
        tracing::warn!(checks = %body["checks"], "not ready");
    }
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Binds `addr` and serves until shut down.
pub async fn serve<P: Readiness>(addr: SocketAddr, readiness: Arc<P>) -> std::io::Result<Server> {
    crate::http_server::serve("metrics", addr, router(readiness), TIMEOUTS).await
}
