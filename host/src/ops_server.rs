//! The worker's metrics and health endpoint (HTTP, off unless an address is
//! configured), for Prometheus and for an orchestrator's probes:
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/healthz` | 200 while the process runs |
//! | GET | `/readyz` | 200 when the plugin is loaded, Temporal answers, ClickHouse answers and the watchdog finds the worker not stuck; else 503. JSON body with each check |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::config::TemporalConfig;
use crate::registry::Registry;
use crate::sink::ClickHouseSink;

/// A readiness probe must answer well within an orchestrator's probe timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
pub struct Readiness {
    registry: Arc<Registry>,
    sink: Arc<ClickHouseSink>,
    temporal: TemporalConfig,
    watchdog: Arc<crate::worker::Watchdog>,
    /// Connected on first use and kept: the client reconnects by itself.
    client: tokio::sync::Mutex<Option<temporalio_client::Client>>,
}

impl Readiness {
    pub fn new(
        registry: Arc<Registry>,
        sink: Arc<ClickHouseSink>,
        temporal: TemporalConfig,
        watchdog: Arc<crate::worker::Watchdog>,
    ) -> Arc<Readiness> {
        Arc::new(Readiness { registry, sink, temporal, watchdog, client: tokio::sync::Mutex::new(None) })
    }

    fn plugin(&self) -> Result<String, String> {
        let v = self.registry.current();
        if v.info.labels.is_empty() {
            return Err("the active plugin reports no labels".into());
        }
        Ok(v.label())
    }

    async fn temporal(&self) -> Result<(), String> {
        use temporalio_common::protos::grpc::health::v1::{health_check_response::ServingStatus, HealthCheckRequest};
        let mut guard = self.client.lock().await;
        if guard.is_none() {
            let client = tokio::time::timeout(CHECK_TIMEOUT, crate::worker::connect(&self.temporal))
                .await
                .map_err(|_| format!("no connection within {CHECK_TIMEOUT:?}"))?
                .map_err(|e| format!("{e:#}"))?;
            *guard = Some(client);
        }
        let client = guard.as_ref().expect("connected above");
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

    async fn clickhouse(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, self.sink.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }

    /// Runs every check; ready when all pass.
    pub async fn check(&self) -> (bool, Value) {
        let (temporal, clickhouse) = tokio::join!(self.temporal(), self.clickhouse());
        let plugin = self.plugin();
        let watchdog = match self.watchdog.stuck_reason() {
            None => Ok(self.watchdog.in_flight()),
            Some(reason) => Err(reason),
        };
        let ready = plugin.is_ok() && temporal.is_ok() && clickhouse.is_ok() && watchdog.is_ok();
        let one = |r: Result<Value, String>| match r {
            Ok(detail) => json!({"ok": true, "detail": detail}),
            Err(error) => json!({"ok": false, "error": error}),
        };
        let failed: Vec<&str> = [
            ("plugin", plugin.is_ok()),
            ("temporal", temporal.is_ok()),
            ("clickhouse", clickhouse.is_ok()),
            ("watchdog", watchdog.is_ok()),
        ]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect();
        let body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "failed": failed,
            "checks": {
                "plugin": one(plugin.map(Value::from)),
                "temporal": one(temporal.map(|()| Value::from(self.temporal.address.clone()))),
                "clickhouse": one(clickhouse.map(|()| Value::from(self.sink.table().to_string()))),
                "watchdog": one(watchdog.map(|n| Value::from(format!("{n} activities in flight")))),
            },
        });
        (ready, body)
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn handle(readiness: Arc<Readiness>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    const JSON: &str = "application/json";
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(StatusCode::OK, crate::metrics::CONTENT_TYPE, crate::metrics::render()),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, JSON, json!({"status": "ok"}).to_string()),
        (&Method::GET, "/readyz") => {
            let (ready, body) = readiness.check().await;
            if !ready {
                tracing::warn!(checks = %body["checks"], "not ready");
            }
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            reply(status, JSON, body.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, JSON, json!({"error": "not found"}).to_string()),
    };
    Ok(response)
}

/// Binds `addr` and serves until the process ends.
pub async fn serve(addr: SocketAddr, readiness: Arc<Readiness>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            };
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(readiness.clone(), req));
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
    });
    Ok(())
}
