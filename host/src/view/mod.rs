//! `llma-sentiment serve`: the Sentiment pages over the stored events,
//! read-only (a ClickHouse user that may only SELECT is enough).
//!
//! | path | what |
//! |---|---|
//! | `/` | traces ranked by negative or positive intensity ([`crate::browse::traces`]) |
//! | `/traces/{id}` | one trace's generations in time order, a bar per message |
//! | `/trend` | per day counts and mean scores, as SVG charts |
//! | `/api/traces`, `/api/traces/{id}`, `/api/trend` | the same data as JSON |
//! | `POST /api/traces/{id}/classify` | on-demand classification (`serve.classify`, rate-limited) |
//! | `POST /api/classify?team=N` | the same for up to 20 traces of a team (`{"trace_ids": [...]}`) |
//! | `/login` | a form that sets the token cookie, for browsers |
//!
//! Served by the project's one HTTP setup (`http_server`: connection cap,
//! header-read and request timeouts). Locked down like the admin endpoint:
//! loopback by default; any other address needs `serve.allow_remote`, TLS
//! and a token. With a token set every request but `/login` carries it,
//! as `Authorization: Bearer` or as the cookie `/login` sets.

mod api;
mod chart;
mod classify;
mod pages;

pub use classify::Classifier;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::admin::{digest, presented_bearer, same_digest, MIN_TOKEN_LEN};
use crate::config::ServeConfig;
use crate::http_server::{Server, Timeouts};
use crate::sink::ClickHouseSink;

/// Every query is bounded by the sink's own timeouts (35 s by default); the
/// request a little longer, so the page says which read timed out.
const TIMEOUTS: Timeouts = Timeouts { header_read: Duration::from_secs(10), request: Duration::from_secs(60) };
/// The cookie `/login` sets to the token.
pub const TOKEN_COOKIE: &str = "llma_sentiment_token";

/// Why `serve` refuses to start as configured.
#[derive(Debug, thiserror::Error)]
pub enum ServeConfigError {
    #[error(
        "serve.addr {0} is not a loopback address: the pages bind only loopback unless serve.allow_remote is true \
         ($LLMA_SENTIMENT_SERVE_ALLOW_REMOTE=true), with TLS and a token"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "serve.addr {0} is not a loopback address and the pages have no TLS: set serve.tls_cert and serve.tls_key \
         (--tls-cert, --tls-key)"
    )]
    RemoteWithoutTls(SocketAddr),
    #[error(
        "serve.addr {0} is not a loopback address and the pages have no token: set serve.token \
         ($LLMA_SENTIMENT_SERVE_TOKEN) or serve.token_file (--token-file)"
    )]
    RemoteWithoutToken(SocketAddr),
    #[error("serve token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("the serve token must be at least {MIN_TOKEN_LEN} characters long")]
    TokenTooShort,
    #[error("serve TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What the pages enforce, checked once at start.
pub struct ServeSettings {
    pub addr: SocketAddr,
    /// SHA-256 of the token, when one is set.
    token_digest: Option<[u8; 32]>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The pages' default window.
    window_days: u32,
}

impl ServeSettings {
    pub fn from_config(serve: &ServeConfig) -> Result<ServeSettings, ServeConfigError> {
        let addr = serve.addr;
        let remote = !addr.ip().is_loopback();
        if remote && !serve.allow_remote {
            return Err(ServeConfigError::NotLoopback(addr));
        }
        let files = crate::tls::TlsFiles { cert: serve.tls_cert.clone(), key: serve.tls_key.clone(), ca: None };
        files.check()?;
        let tls = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::tls::server_config(cert, key, &[b"http/1.1"])?)),
            _ => None,
        };
        if remote && tls.is_none() {
            return Err(ServeConfigError::RemoteWithoutTls(addr));
        }
        let token = match (&serve.token, &serve.token_file) {
            (Some(t), _) => Some(t.expose().trim().to_string()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ServeConfigError::TokenFile { path: path.clone(), reason: e.to_string() })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        match &token {
            None if remote => return Err(ServeConfigError::RemoteWithoutToken(addr)),
            Some(t) if t.chars().count() < MIN_TOKEN_LEN => return Err(ServeConfigError::TokenTooShort),
            _ => {}
        }
        Ok(ServeSettings { addr, token_digest: token.as_deref().map(digest), tls, window_days: serve.window_days })
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// What every handler reads.
struct ViewState {
    sink: ClickHouseSink,
    token_digest: Option<[u8; 32]>,
    secure_cookie: bool,
    window_days: u32,
    templates: minijinja::Environment<'static>,
    /// `serve.classify`: the plugin and limits of `POST .../classify`.
    classifier: Option<Arc<Classifier>>,
}

/// The digest of the token cookie of `headers`, if any.
fn presented_cookie(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| digest(value.trim()))
}

async fn require_token(State(state): State<Arc<ViewState>>, request: Request, next: Next) -> Response {
    let Some(want) = state.token_digest else { return next.run(request).await };
    if request.uri().path() == "/login" {
        return next.run(request).await;
    }
    let headers = request.headers();
    let presented = presented_bearer(headers).or_else(|| presented_cookie(headers));
    if presented.is_some_and(|p| same_digest(&p, &want)) {
        return next.run(request).await;
    }
    tracing::warn!(method = %request.method(), path = %request.uri().path(), "request refused: missing or wrong token");
    if request.uri().path().starts_with("/api/") {
        let body = axum::Json(serde_json::json!({"error": "missing or wrong bearer token"}));
        let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    }
    // A browser: to the form that sets the cookie.
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
}

fn router(settings: &ServeSettings, sink: ClickHouseSink, classifier: Option<Arc<Classifier>>) -> Router {
    let state = Arc::new(ViewState {
        sink,
        token_digest: settings.token_digest,
        secure_cookie: settings.tls.is_some(),
        window_days: settings.window_days,
        templates: pages::templates(),
        classifier,
    });
    Router::new()
        .route("/", get(pages::sentiment))
        .route("/traces/{id}", get(pages::trace))
        .route("/traces/{id}/classify", post(classify::classify_page))
        .route("/trend", get(pages::trend))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/api/traces", get(api::traces))
        .route("/api/traces/{id}", get(api::trace))
        .route("/api/trend", get(api::trend))
        .route("/api/classify", post(classify::classify_batch))
        .route("/api/traces/{id}/classify", post(classify::classify))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(axum::extract::DefaultBodyLimit::max(4096))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Binds the pages; they serve until shut down.
pub async fn serve(settings: ServeSettings, sink: ClickHouseSink, classifier: Option<Classifier>) -> std::io::Result<Server> {
    let router = router(&settings, sink, classifier.map(Arc::new));
    crate::http_server::serve_tls("sentiment pages", settings.addr, router, TIMEOUTS, settings.tls.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addr: &str) -> ServeConfig {
        ServeConfig { addr: addr.parse().unwrap(), ..ServeConfig::default() }
    }

    #[test]
    fn off_loopback_needs_permission_tls_and_a_token() {
        assert!(ServeSettings::from_config(&config("127.0.0.1:0")).unwrap().token_digest.is_none());
        let remote = config("0.0.0.0:0");
        assert!(matches!(ServeSettings::from_config(&remote), Err(ServeConfigError::NotLoopback(_))));
        let allowed = ServeConfig { allow_remote: true, ..remote };
        assert!(matches!(ServeSettings::from_config(&allowed), Err(ServeConfigError::RemoteWithoutTls(_))));
        let short = ServeConfig { token: Some(crate::config::Secret::new("short")), ..config("127.0.0.1:0") };
        assert!(matches!(ServeSettings::from_config(&short), Err(ServeConfigError::TokenTooShort)));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; llma_sentiment_token=0123456789abcdef ; c=d".parse().unwrap());
        assert_eq!(presented_cookie(&headers), Some(digest("0123456789abcdef")));
    }
}
