//! The worker's admin endpoint (off unless `worker.admin_addr` is set):
//! plugin status, activation and rollback. It can make the worker run any
//! plugin it can read, so it is locked down by default: it binds loopback
//! addresses only (unless `worker.admin_allow_remote`, and then only with
//! TLS: `worker.admin_tls_cert` and `worker.admin_tls_key`, served by
//! rustls, so the token never crosses a network in clear text), every request needs
//! the bearer token (`worker.admin_token`, or the file
//! `worker.admin_token_file`), and it activates plugins and models only
//! from `plugin.dir` and `worker.admin_allowed_dirs`.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/healthz` | 200 while the process runs |
//! | GET | `/plugin` | active (and rollback) version, and whether an activation runs, as JSON |
//! | POST | `/plugin/activate` | body `{"path": "...", "model_dir": "..."?, "force": true?}`: validate (canaries too, unless forced), then switch |
//! | POST | `/plugin/rollback` | switch back to the previous version, or `{"to": NAME}` to one of the history |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{Config, Secret, WorkerConfig};
use crate::http_server::{Server, Timeouts};
use crate::registry::{Registry, VersionStatus};

/// Largest request body accepted (a path and a model dir).
const MAX_BODY: usize = 64 * 1024;
/// A token shorter than this is refused at start: it could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// An activation compiles a component and loads a model (bounded by
/// `limits.load_deadline_ms`, 2 min by default); the request may take that long.
const TIMEOUTS: Timeouts = Timeouts { header_read: Duration::from_secs(10), request: Duration::from_secs(300) };
/// The client waits a little longer than the server, so it sees the server's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(310);
const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the admin endpoint refuses to start (or the client to call it).
#[derive(Debug, thiserror::Error)]
pub enum AdminConfigError {
    #[error(
        "worker.admin_addr {0} is not a loopback address: the admin endpoint activates plugins, so it binds only \
         loopback unless worker.admin_allow_remote is true ($LLMA_SENTIMENT_WORKER_ADMIN_ALLOW_REMOTE=true)"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "the admin endpoint needs a bearer token: set worker.admin_token ($LLMA_SENTIMENT_ADMIN_TOKEN) or \
         worker.admin_token_file ($LLMA_SENTIMENT_ADMIN_TOKEN_FILE)"
    )]
    NoToken,
    #[error("admin token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("the admin token must be at least {MIN_TOKEN_LEN} characters long")]
    TokenTooShort,
    #[error("worker.admin_allowed_dirs: {path}: {reason}")]
    AllowedDir { path: PathBuf, reason: String },
    #[error(
        "worker.admin_addr {0} is not a loopback address and the admin endpoint has no TLS: the bearer token would \
         cross the network in clear text; set worker.admin_tls_cert and worker.admin_tls_key \
         ($LLMA_SENTIMENT_WORKER_ADMIN_TLS_CERT, $LLMA_SENTIMENT_WORKER_ADMIN_TLS_KEY)"
    )]
    RemoteWithoutTls(SocketAddr),
    #[error("admin endpoint TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The admin token as configured (`worker.admin_token` wins over
/// `worker.admin_token_file`), for the endpoint and for the CLI client.
pub fn token(worker: &WorkerConfig) -> Result<Secret, AdminConfigError> {
    let token = match (&worker.admin_token, &worker.admin_token_file) {
        (Some(t), _) => t.expose().trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| AdminConfigError::TokenFile { path: path.clone(), reason: e.to_string() })?
            .trim()
            .to_string(),
        (None, None) => return Err(AdminConfigError::NoToken),
    };
    if token.is_empty() {
        return Err(AdminConfigError::NoToken);
    }
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(AdminConfigError::TokenTooShort);
    }
    Ok(Secret::new(token))
}

/// What the endpoint enforces, checked once at start.
pub struct AdminSettings {
    pub addr: SocketAddr,
    /// SHA-256 of the token: requests are compared digest to digest, so the
    /// comparison's timing says nothing about the token.
    token_digest: [u8; 32],
    /// Canonical directories activation may read plugins and models from.
    allowed: Vec<PathBuf>,
    /// Serve https with this (certificate and key read at start).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("addr", &self.addr)
            .field("allowed", &self.allowed)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminSettings {
    /// `None` when the endpoint is off; an error when it may not start as configured.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn from_config(config: &Config) -> Result<Option<AdminSettings>, AdminConfigError> {
        let worker = &config.worker;
        let Some(addr) = worker.admin_addr else { return Ok(None) };
        if !addr.ip().is_loopback() && !worker.admin_allow_remote {
            return Err(AdminConfigError::NotLoopback(addr));
        }
        let files = crate::tls::TlsFiles { cert: worker.admin_tls_cert.clone(), key: worker.admin_tls_key.clone(), ca: None };
        files.check()?;
        let tls = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::tls::server_config(cert, key, &[b"http/1.1"])?)),
            _ => None,
        };
        if !addr.ip().is_loopback() && tls.is_none() {
            return Err(AdminConfigError::RemoteWithoutTls(addr));
        }
        let token = token(worker)?;
        let mut allowed = Vec::new();
        for dir in config.plugin.dir.iter().chain(&worker.admin_allowed_dirs) {
            let real = std::fs::canonicalize(dir)
                .map_err(|e| AdminConfigError::AllowedDir { path: dir.clone(), reason: e.to_string() })?;
            if !real.is_dir() {
                return Err(AdminConfigError::AllowedDir { path: dir.clone(), reason: "not a directory".into() });
            }
            allowed.push(real);
        }
        Ok(Some(AdminSettings { addr, token_digest: digest(token.expose()), allowed, tls }))
    }

    /// The canonical form of `path` if it lies inside an allowed directory;
    /// else why not. Symlinks and `..` are resolved first, so neither leads out.
    fn allowed_path(&self, what: &str, path: &Path) -> Result<PathBuf, String> {
        if self.allowed.is_empty() {
            return Err("activation through the admin endpoint is off: no directory allows it (set plugin.dir or worker.admin_allowed_dirs)".into());
        }
        if !path.is_absolute() {
            return Err(format!("{what} {} is not an absolute path", path.display()));
        }
        let real = std::fs::canonicalize(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
        if self.allowed.iter().any(|dir| real.starts_with(dir)) {
            return Ok(real);
        }
        let dirs: Vec<String> = self.allowed.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "{what} {} is outside the directories activation is allowed from ({}): see plugin.dir and worker.admin_allowed_dirs",
            path.display(),
            dirs.join(", ")
        ))
    }
}

/// SHA-256 of a token: tokens are compared digest to digest.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The digest of the `Authorization: Bearer` token of `headers`, if any (the
/// scheme is case-insensitive, RFC 9110).
pub(crate) fn presented_bearer(headers: &axum::http::HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| digest(token.trim()))
}

/// Compared in constant time, so the answer's timing says nothing about the token.
pub(crate) fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]))
}

pub fn status_json(registry: &Registry) -> Value {
    json!({
        "active": VersionStatus::from(&*registry.current()),
        "previous": registry.previous().map(|p| VersionStatus::from(&*p)),
        "history": registry.history().iter().map(|p| VersionStatus::from(&**p)).collect::<Vec<_>>(),
        "activating": registry.is_activating(),
    })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

struct AdminState {
    settings: AdminSettings,
    registry: Arc<Registry>,
}

/// Every route needs `Authorization: Bearer <token>`; the token is never logged.
async fn require_token(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let matches = presented_bearer(request.headers()).is_some_and(|p| same_digest(&p, &state.settings.token_digest));
    if !matches {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), "admin request refused: missing or wrong bearer token");
        let mut response = reply(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

pub fn router(settings: AdminSettings, registry: Arc<Registry>) -> Router {
    let state = Arc::new(AdminState { settings, registry });
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/plugin", get(|State(s): State<Arc<AdminState>>| async move { Json(status_json(&s.registry)) }))
        .route("/plugin/activate", post(activate))
        .route("/plugin/rollback", post(rollback))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, json!({"error": "not found"})) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn activate(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": format!("body is not JSON: {e}")})),
    };
    let Some(path) = request.get("path").and_then(Value::as_str).map(PathBuf::from) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "body needs {\"path\": \"/path/to/plugin.wasm\"}"}));
    };
    let model_dir = request.get("model_dir").and_then(Value::as_str).map(PathBuf::from);
    // A version whose canary texts are labelled otherwise is refused unless forced.
    let force = request.get("force").and_then(Value::as_bool).unwrap_or(false);
    let checked = state.settings.allowed_path("plugin", &path).and_then(|path| {
        let model_dir = model_dir.map(|d| state.settings.allowed_path("model_dir", &d)).transpose()?;
        Ok((path, model_dir))
    });
    let (path, model_dir) = match checked {
        Ok(paths) => paths,
        Err(reason) => {
            tracing::warn!(error = %reason, "plugin activation refused");
            return reply(StatusCode::FORBIDDEN, json!({"error": reason}));
        }
    };
    let registry = state.registry.clone();
    // Compiling a component takes seconds: keep it off the async threads.
    match tokio::task::spawn_blocking(move || registry.activate_file_with(&path, model_dir.as_deref(), force)).await {
        Ok(Ok(v)) => reply(StatusCode::OK, json!({"activated": VersionStatus::from(&*v)})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "plugin activation rejected");
            reply(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": e.to_string()}))
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()})),
    }
}

/// Back to the previous version, or with `{"to": NAME}` to that version of
/// the history (a label, plugin version or activation number).
async fn rollback(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let to = match serde_json::from_slice::<Value>(&body) {
        _ if body.is_empty() => None,
        Ok(v) => match v.get("to") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "`to` names a version: a string or a number"})),
        },
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": format!("body is not JSON: {e}")})),
    };
    let registry = state.registry.clone();
    // Fast (it never waits for an activation), but it may drop an old
    // version, and unmapping its instances' memory is not for an async thread.
    let rolled = move || match to {
        Some(name) => registry.rollback_to(&name),
        None => registry.rollback(),
    };
    match tokio::task::spawn_blocking(rolled).await {
        Ok(Ok(v)) => reply(StatusCode::OK, json!({"activated": VersionStatus::from(&*v)})),
        Ok(Err(e)) => reply(StatusCode::CONFLICT, json!({"error": e.to_string()})),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()})),
    }
}

/// Binds the endpoint; it serves until shut down.
pub async fn serve(settings: AdminSettings, registry: Arc<Registry>) -> std::io::Result<Server> {
    let (addr, tls) = (settings.addr, settings.tls.clone());
    crate::http_server::serve_tls("admin", addr, router(settings, registry), TIMEOUTS, tls).await
}

/// Client side of the endpoint, for `llma-sentiment plugin activate|rollback|status`:
/// https (rustls, trusting `tls_ca` or else the system roots) for an
/// `https://` base, never falling back to clear text.
pub async fn call(
    base: &str,
    token: &Secret,
    tls_ca: Option<&Path>,
    method: hyper::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    use http_body_util::Full;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CLIENT_CONNECT_TIMEOUT));
    let uri: hyper::Uri = format!("{}{}", base.trim_end_matches('/'), path).parse()?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))?;
    let builder = Client::builder(hyper_util::rt::TokioExecutor::new());
    let (status, bytes) = if base.starts_with("https://") {
        connector.enforce_http(false);
        let files = crate::tls::TlsFiles { ca: tls_ca.map(Path::to_path_buf), ..Default::default() };
        let tls = files.client_config(&[])?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(connector);
        let https = crate::tls::HandshakeDeadline::new(https, CLIENT_CONNECT_TIMEOUT * 2);
        exchange(builder.build(https), req).await?
    } else {
        anyhow::ensure!(tls_ca.is_none(), "admin.tls_ca is set, but the admin URL {base} is not https://");
        exchange(builder.build(connector), req).await?
    };
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    Ok((status, value))
}

/// One request and its whole answer, within [`CLIENT_TIMEOUT`]; a failed
/// TLS handshake said as such.
async fn exchange<C>(
    client: hyper_util::client::legacy::Client<C, http_body_util::Full<Bytes>>,
    req: hyper::Request<http_body_util::Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    let exchange = async {
        let resp = match client.request(req).await {
            Ok(resp) => resp,
            Err(e) => match crate::tls::tls_failure(&e) {
                Some(reason) => anyhow::bail!("TLS handshake with the admin endpoint failed: {reason} (check admin.tls_ca)"),
                None => return Err(e.into()),
            },
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange).await.map_err(|_| anyhow::anyhow!("no answer within {CLIENT_TIMEOUT:?}"))?
}
