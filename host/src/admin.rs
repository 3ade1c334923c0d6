//! The worker's admin endpoint (loopback HTTP, off unless an address is
//! configured): plugin status, activation and rollback, liveness.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/healthz` | 200 while the process runs |
//! | GET | `/plugin` | active (and rollback) version as JSON |
//! | POST | `/plugin/activate` | body `{"path": "...", "model_dir": "..."?}`: validate, then switch |
//! | POST | `/plugin/rollback` | switch back to the previous version |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::registry::{Registry, VersionStatus};

/// Largest request body accepted (a path and a model dir).
const MAX_BODY: usize = 64 * 1024;

pub fn status_json(registry: &Registry) -> Value {
    json!({
        "active": VersionStatus::from(&*registry.current()),
        "previous": registry.previous().map(|p| VersionStatus::from(&*p)),
    })
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

async fn handle(registry: Arc<Registry>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let response = match (parts.method, parts.uri.path()) {
        (Method::GET, "/healthz") => reply(StatusCode::OK, json!({"status": "ok"})),
        (Method::GET, "/plugin") => reply(StatusCode::OK, status_json(&registry)),
        (Method::POST, "/plugin/activate") => {
            let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": e.to_string()}))),
            };
            let request: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, json!({"error": format!("body is not JSON: {e}")}))),
            };
            let Some(path) = request.get("path").and_then(Value::as_str).map(PathBuf::from) else {
                return Ok(reply(StatusCode::BAD_REQUEST, json!({"error": "body needs {\"path\": \"/path/to/plugin.wasm\"}"})));
            };
            let model_dir = request.get("model_dir").and_then(Value::as_str).map(PathBuf::from);
            let reg = registry.clone();
            // Compiling a component takes seconds: keep it off the async threads.
            let outcome = tokio::task::spawn_blocking(move || reg.activate_file(&path, model_dir.as_deref())).await;
            match outcome {
                Ok(Ok(v)) => reply(StatusCode::OK, json!({"activated": VersionStatus::from(&*v)})),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "plugin activation rejected");
                    reply(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": e.to_string()}))
                }
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()})),
            }
        }
        (Method::POST, "/plugin/rollback") => match registry.rollback() {
            Ok(v) => reply(StatusCode::OK, json!({"activated": VersionStatus::from(&*v)})),
            Err(e) => reply(StatusCode::CONFLICT, json!({"error": e.to_string()})),
        },
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    };
    Ok(response)
}

/// Binds `addr` and serves until the process ends.
pub async fn serve(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "admin endpoint listening");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(registry.clone(), req));
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            });
        }
    });
    Ok(())
}

/// Client side of the endpoint, for `llma-sentiment plugin activate|rollback|status`.
pub async fn call(base: &str, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
    use hyper_util::client::legacy::Client;
    let client: Client<_, Full<Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("{}{}", base.trim_end_matches('/'), path).parse()?;
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    Ok((status, value))
}
