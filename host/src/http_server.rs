//! The one HTTP server setup of the worker's two endpoints (metrics/health
//! and admin): an `axum` router served over HTTP/1 with a header-read
//! timeout, a per-request timeout, accept errors backed off instead of
//! spun on, and a graceful shutdown that lets requests in flight finish
//! within a bound; over TLS (rustls) when given a server configuration,
//! the handshake bounded by the header-read timeout too.
//!
//! The accept loop drives hyper's HTTP/1 connection directly rather than
//! `axum::serve`, because `axum::serve` sets no timer on hyper, and without
//! one hyper applies no header-read timeout: a client that never finishes
//! its request line would hold a connection forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a client may take to send its request head, and how long a
/// request may take to be answered.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub request: Duration,
}
/// Connections served at once; the next waits in the listen backlog until
/// one closes, so a flood of idle clients costs a bounded number of tasks.
pub const MAX_CONNECTIONS: usize = 64;
/// Waits after a failed `accept` (e.g. out of file descriptors): doubling
/// from the first to the second, reset by the next accepted connection.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// A bound, serving endpoint. Dropping it stops accepting at once; call
/// [`Server::shutdown`] to let requests in flight finish.
pub struct Server {
    name: &'static str,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// The accept loop; `None` once shut down.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Binds `addr` and serves `router` on it; a request that outlives
/// `timeouts.request` is answered `503`. `name` goes into the log lines
/// (`"{name} endpoint listening"`).
pub async fn serve(name: &'static str, addr: SocketAddr, router: Router, timeouts: Timeouts) -> std::io::Result<Server> {
    serve_tls(name, addr, router, timeouts, None).await
}

/// [`serve`], over TLS when `tls` is set: https only, a client speaking
/// plain HTTP gets its connection closed.
pub async fn serve_tls(
    name: &'static str,
    addr: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "{name} endpoint listening");
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        timeouts.request,
    ));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(name, listener, router, timeouts.header_read, tls, stopped));
    Ok(Server { name, addr, stop, task: Some(task) })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, asks every open connection to finish its request in
    /// flight and close, and waits for them at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else { return };
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "{} endpoint: connections still open after the grace period, closing them", self.name);
            task.abort();
        }
        tracing::info!("{} endpoint stopped", self.name);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves one connection (plain or TLS) until it closes or a stop asks it
/// to finish its request in flight.
async fn serve_connection<I, S>(name: &'static str, io: I, service: S, header_read: Duration, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).header_read_timeout(header_read).serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop_requested(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "{name} connection ended");
    }
}

/// Returns once a stop was requested (or the server dropped), holding no
/// borrow of the channel afterwards.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    header_read: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        while connections.try_join_next().is_some() {}
        while connections.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = stop_requested(&mut stopped) => break,
                _ = connections.join_next() => {}
            }
        }
        if *stopped.borrow() {
            break;
        }
        let accepted = tokio::select! {
            _ = stop_requested(&mut stopped) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF.0;
                (stream, peer)
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "{name} endpoint: accept failed");
                tokio::select! {
                    _ = stop_requested(&mut stopped) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        // Handlers that need the client's address read it as axum's `ConnectInfo`.
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))));
        let stop = stopped.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Some(acceptor) = tls else {
                return serve_connection(name, TokioIo::new(stream), service, header_read, stop).await;
            };
            // Bounded like the request head: a client that never finishes
            // its handshake must not hold one of the connection slots.
            match tokio::time::timeout(header_read, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(name, TokioIo::new(stream), service, header_read, stop).await,
                Ok(Err(e)) => tracing::info!(error = %e, "{name} endpoint: TLS handshake failed"),
                Err(_) => tracing::info!(timeout_ms = header_read.as_millis() as u64, "{name} endpoint: TLS handshake not finished in time"),
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::sync::Notify;

    use super::*;

    const HEADER_READ: Duration = Duration::from_millis(500);

    /// `/slow` tells `entered` when its handler runs, then takes 1.5 s.
    fn router(entered: Arc<Notify>) -> Router {
        Router::new().route("/fast", get(|| async { "ok" })).route(
            "/slow",
            get(move || async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow"
            }),
        )
    }

    async fn start(request: Duration) -> (Server, Arc<Notify>) {
        let entered = Arc::new(Notify::new());
        let timeouts = Timeouts { header_read: HEADER_READ, request };
        (serve("test", "127.0.0.1:0".parse().unwrap(), router(entered.clone()), timeouts).await.unwrap(), entered)
    }

    fn get_blocking(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        raw
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let (server, _) = start(Duration::from_secs(5)).await;
        let addr = server.local_addr();
        let closed_by_server = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            // The client's own bound, far past the server's header timeout:
            // a server without one leaves this read hanging until it errors.
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n").unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).is_ok()
        })
        .await
        .unwrap();
        assert!(closed_by_server, "the client's read timed out: the server kept the half-sent request open");
        let answer = tokio::task::spawn_blocking(move || get_blocking(addr, "/fast")).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// With every connection slot held by idle clients, a new request waits
    /// (unanswered) until one of them closes; then it is served.
    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let timeouts = Timeouts { header_read: Duration::from_secs(60), request: Duration::from_secs(5) };
        let server = serve("test", "127.0.0.1:0".parse().unwrap(), router(Arc::new(Notify::new())), timeouts).await.unwrap();
        let addr = server.local_addr();
        let mut idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(get_blocking(addr, "/fast"));
        });
        let waited = tokio::task::spawn_blocking(move || {
            let early = rx.recv_timeout(Duration::from_secs(1));
            (early, rx)
        })
        .await
        .unwrap();
        assert!(waited.0.is_err(), "served past the cap: {:?}", waited.0);
        drop(idle.pop());
        let answer = tokio::task::spawn_blocking(move || waited.1.recv_timeout(Duration::from_secs(30))).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_is_answered_503() {
        let (server, _) = start(Duration::from_millis(200)).await;
        let addr = server.local_addr();
        let answer = tokio::task::spawn_blocking(move || get_blocking(addr, "/slow")).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }

    #[tokio::test]
    async fn shutdown_finishes_the_request_in_flight_then_refuses_connections() {
        let (server, entered) = start(Duration::from_secs(10)).await;
        let addr = server.local_addr();
        let in_flight = tokio::task::spawn_blocking(move || get_blocking(addr, "/slow"));
        entered.notified().await;
        server.shutdown(Duration::from_secs(10)).await;
        let answer = in_flight.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"), "{answer}");
        assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting after shutdown");
    }
}
