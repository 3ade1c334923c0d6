//! TLS to every server, on real servers with certificates this file makes
//! (rcgen): ClickHouse's `https_port`, Redis's `--tls-port`, Temporal through
//! a TLS-terminating proxy (tokio-rustls, below) in front of the plain dev
//! server, and the admin endpoint with its CLI client. Each works over TLS
//! (a row written and read, a cache hit, a workflow run), and a wrong CA, a
//! plain-text server or a missing client certificate fails fast with an
//! error naming the server, never falling back to clear text.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::pki::Pki;
use common::redis::RedisServer;
use common::services::{run_bin, TemporalServer, WorkerProcess};
use common::stack::{block, event};
use common::{free_port, ClickHouseServer};
use llma_sentiment::cache::{CacheScope, ResultCache};
use llma_sentiment::config::{Config, Secret, TemporalConfig};
use llma_sentiment::engine::{Label, MessageResult, OverallResult, Scores};
use llma_sentiment::event::{EventOptions, EventTime, GenerationEvent, Producer, SentimentEvent};
use llma_sentiment::sink::{ClickHouseSink, ErrorKind, SinkConfig};
use llma_sentiment::tls::TlsFiles;
use llma_sentiment::worker::TemporalConnectError;
use serde_json::Value;
use uuid::Uuid;

/// Every failure below must come well within this: a handshake that fails
/// is answered at once, and a hang would take the servers' timeouts.
const FAST: Duration = Duration::from_secs(8);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A TLS-terminating TCP proxy in front of a plain server (the Temporal dev
/// server cannot serve TLS itself): HTTP/2 passes through untouched. With
/// `client_ca` it requires a client certificate signed by it (mutual TLS).
/// Stopped on drop.
struct TlsProxy {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl TlsProxy {
    fn start(upstream: &str, cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsProxy {
        use llma_sentiment::tls;
        let provider = tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let roots = Arc::new(tls::roots(Some(ca)).unwrap());
                builder.with_client_cert_verifier(rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider).build().unwrap())
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(tls::read_certs("cert", cert).unwrap(), tls::read_key("key", key).unwrap()).unwrap();
        // gRPC: the client insists on HTTP/2 being negotiated.
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_string();
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(client)).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy { addr, rt: Some(rt) }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The sentiment event the pipeline makes of a generation.
fn sentiment_of(raw: &Value) -> SentimentEvent {
    let g = GenerationEvent::parse(raw).unwrap();
    let scores = Scores { negative: 0.1, neutral: 0.2, positive: 0.7 };
    let m = MessageResult { label: Label::Positive, score: 0.7, scores };
    let overall = OverallResult { label: Label::Positive, score: 0.7, scores, messages: vec![m] };
    let producer = Producer { model: "m".into(), plugin_version: "0.1.0".into() };
    let started = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
    SentimentEvent::build(&g, &overall, &[], &producer, EventTime::new(started).unwrap(), started, &EventOptions::default())
}

fn sink_config(url: &str, tls: TlsFiles) -> SinkConfig {
    // The handshake's deadline is twice the connect timeout.
    SinkConfig { url: url.to_string(), tls, connect_timeout: Duration::from_secs(2), ..SinkConfig::default() }
}

/// A port that accepts connections and never says a word (a plain-text
/// server waiting for the rest of a line); open while the value lives.
fn silent_port() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    (port, holder)
}

/// Connecting fails, fast, with a final TLS error that names ClickHouse and its URL.
fn assert_clickhouse_tls_failure(config: SinkConfig, what: &str) {
    let url = config.url.clone();
    let started = Instant::now();
    let err = block(ClickHouseSink::connect(config)).expect_err(what);
    let text = err.to_string();
    eprintln!("{what} ({:?}): {text}", started.elapsed());
    assert!(started.elapsed() < FAST, "{what}: took {:?}: {text}", started.elapsed());
    assert_eq!(err.kind(), Some(ErrorKind::Tls), "{what}: {text}");
    assert!(!err.is_retryable(), "{what}");
    assert_eq!(err.attempt(), Some(1), "{what}: a TLS failure is not retried: {text}");
    assert!(text.contains("ClickHouse") && text.contains("TLS handshake failed") && text.contains(&url), "{what}: {text}");
}

#[test]
fn clickhouse_over_https_with_a_client_certificate() {
    let pki = Pki::new("clickhouse");
    let (cert, key) = pki.server("clickhouse", &["127.0.0.1", "localhost"]);
    let client = pki.client("clickhouse-client");
    let ch = ClickHouseServer::start_tls(&cert, &key, Some(&pki.ca_file));
    let https = ch.https_url.clone().expect("the server serves https");

    // The sink: migrate, a row written and read back, over mutual TLS.
    let sink = block(ClickHouseSink::connect(sink_config(&https, pki.files(Some(&client))))).expect("connects over https");
    block(sink.migrate()).expect("migrates over https");
    let raw = event("TLS all the way");
    let event = sentiment_of(&raw);
    block(sink.insert(std::slice::from_ref(&event))).expect("inserts over https");
    let stored = block(sink.fetch_final(&[event.uuid])).expect("reads over https");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].uuid, event.uuid);
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 1);

    // The binary, configured through its keys: `migrate` over https.
    let env = [
        ("CLICKHOUSE_URL", https.as_str()),
        ("LLMA_SENTIMENT_CLICKHOUSE_TLS_CA", s(&pki.ca_file)),
        ("LLMA_SENTIMENT_CLICKHOUSE_TLS_CERT", s(&client.0)),
        ("LLMA_SENTIMENT_CLICKHOUSE_TLS_KEY", s(&client.1)),
    ];
    let out = run_bin(&["migrate"], &env, None);
    assert!(out.status.success(), "migrate over https: {}", String::from_utf8_lossy(&out.stderr));

    // What must fail, fast and by name.
    let stranger = Pki::new("stranger");
    assert_clickhouse_tls_failure(sink_config(&https, stranger.files(Some(&client))), "a CA that did not sign the server's certificate");
    assert_clickhouse_tls_failure(sink_config(&ch.url.replace("http://", "https://"), pki.files(Some(&client))), "https to the plain HTTP port");
    let (silent, _holder) = silent_port();
    assert_clickhouse_tls_failure(sink_config(&format!("https://127.0.0.1:{silent}"), pki.files(Some(&client))), "a port that never answers TLS");
    let no_cert = block(ClickHouseSink::connect(sink_config(&https, pki.files(None))));
    let err = no_cert.expect_err("the server requires a client certificate");
    assert_eq!(err.kind(), Some(ErrorKind::Tls), "{err}");
    // A TLS file with a clear-text URL is refused before any connection.
    let out = run_bin(&["migrate"], &[("CLICKHOUSE_URL", ch.url.as_str()), env[1]], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("clickhouse.url") && stderr.contains("https://"), "{stderr}");
}

/// A Redis serving TLS on a second port, requiring client certificates
/// when `mutual`; (server, TLS port).
fn redis_tls(pki: &Pki, mutual: bool) -> (RedisServer, u16) {
    let (cert, key) = pki.server("redis", &["127.0.0.1"]);
    let port = free_port();
    let args = format!(
        "--tls-port {port} --tls-cert-file {} --tls-key-file {} --tls-ca-cert-file {} --tls-auth-clients {}",
        s(&cert),
        s(&key),
        s(&pki.ca_file),
        if mutual { "yes" } else { "no" }
    );
    (RedisServer::start_with(&[("REDIS_EXTRA_ARGS", args.as_str())]), port)
}

fn redis_config(url: &str, files: TlsFiles) -> Config {
    let mut config = Config::default();
    config.cache.redis_url = Some(url.to_string());
    config.cache.redis_tls_ca = files.ca;
    config.cache.redis_tls_cert = files.cert;
    config.cache.redis_tls_key = files.key;
    // The first call waits for the connection and its handshake.
    config.cache.redis_timeout_ms = 2000;
    config
}

fn redis_failure(config: &Config, what: &str) -> String {
    let started = Instant::now();
    let err = config.result_cache().err().unwrap_or_else(|| panic!("{what}: the cache started"));
    eprintln!("{what} ({:?}): {err}", started.elapsed());
    assert!(started.elapsed() < FAST, "{what}: took {:?}", started.elapsed());
    err.to_string()
}

#[test]
fn redis_over_rediss_with_a_client_certificate() {
    let pki = Pki::new("redis");
    let client = pki.client("redis-client");
    let (redis, tls_port) = redis_tls(&pki, true);
    let url = format!("rediss://127.0.0.1:{tls_port}");

    // One process stores, another finds it in Redis: a real cache hit over mutual TLS.
    let config = redis_config(&url, pki.files(Some(&client)));
    let scope = CacheScope::from_parts("0123abcd", "0.1.0", "tls-model", "tls-model-files");
    let result = MessageResult { label: Label::Neutral, score: 0.6, scores: Scores { negative: 0.2, neutral: 0.6, positive: 0.2 } };
    let a: ResultCache = config.result_cache().expect("the cache starts over rediss");
    a.store(&scope, &[("a text over TLS", result)], None);
    let b = config.result_cache().unwrap();
    let found = b.lookup(&scope, &["a text over TLS", "never stored"], None);
    assert_eq!((found.counts.l1, found.counts.l2, found.counts.misses), (0, 1, 1), "{:?}", found.counts);
    assert_eq!(format!("{:?}", found.results[0]), format!("{:?}", Some(result)));
    assert_eq!(redis.keys().len(), 1, "written through the TLS port, seen on the plain one");

    // What must fail, fast and by name: the start refuses, the tier does not run on without it.
    let stranger = Pki::new("stranger");
    let e = redis_failure(&redis_config(&url, stranger.files(Some(&client))), "wrong CA");
    assert!(e.contains(&format!("Redis at {url}")) && e.contains("TLS handshake failed"), "{e}");
    let plain = format!("rediss://127.0.0.1:{}", redis.port);
    let e = redis_failure(&redis_config(&plain, pki.files(Some(&client))), "rediss to the plain port");
    assert!(e.contains("Redis at") && e.contains("TLS handshake failed"), "{e}");
    let e = redis_failure(&redis_config(&url, pki.files(None)), "no client certificate");
    assert!(e.contains("Redis at") && e.contains("TLS handshake failed"), "{e}");
}

/// A Temporal config for `address` over TLS with `files`, the name its certificate holds.
fn temporal(address: &str, files: TlsFiles, name: Option<&str>) -> TemporalConfig {
    TemporalConfig {
        address: address.to_string(),
        tls_ca: files.ca,
        tls_cert: files.cert,
        tls_key: files.key,
        tls_server_name: name.map(str::to_string),
        ..TemporalConfig::default()
    }
}

fn temporal_failure(config: &TemporalConfig, what: &str) -> TemporalConnectError {
    let started = Instant::now();
    let err = block(llma_sentiment::worker::connect(config)).err().unwrap_or_else(|| panic!("{what}: connected"));
    eprintln!("{what} ({:?}): {err}", started.elapsed());
    assert!(started.elapsed() < FAST, "{what}: took {:?}: {err}", started.elapsed());
    assert!(err.to_string().contains("Temporal at"), "{what}: {err}");
    err
}

#[test]
fn temporal_over_tls_mutual_tls_server_name_and_api_key() {
    let server = TemporalServer::start();
    let pki = Pki::new("temporal");
    // Only the override names the proxy's certificate: the address is an IP.
    let (cert, key) = pki.server("temporal", &["temporal.test"]);
    let client = pki.client("temporal-client");
    let proxy = TlsProxy::start(&server.address, &cert, &key, Some(&pki.ca_file));
    let address = proxy.addr.to_string();

    let good = temporal(&address, pki.files(Some(&client)), Some("temporal.test"));
    block(llma_sentiment::worker::connect(&good)).expect("mutual TLS with the server-name override connects");
    // The API key rides the same TLS (the dev server takes any).
    let keyed = TemporalConfig { api_key: Some(Secret::new("tmprl-test-key")), ..good.clone() };
    block(llma_sentiment::worker::connect(&keyed)).expect("an API key over mutual TLS connects");

    let stranger = Pki::new("stranger");
    let e = temporal_failure(&temporal(&address, stranger.files(Some(&client)), Some("temporal.test")), "wrong CA");
    assert!(matches!(e, TemporalConnectError::Tls { .. }), "{e}");
    let e = temporal_failure(&temporal(&address, pki.files(Some(&client)), None), "the IP is not the certificate's name");
    assert!(matches!(e, TemporalConnectError::Tls { .. }), "{e}");
    let e = temporal_failure(&temporal(&server.address, pki.files(Some(&client)), Some("temporal.test")), "TLS to the plain dev server");
    assert!(matches!(e, TemporalConnectError::Tls { .. }), "{e}");
    let e = temporal_failure(&temporal(&address, pki.files(None), Some("temporal.test")), "no client certificate");
    assert!(e.to_string().contains("temporal.tls_cert"), "{e}");
    // An API key alone turns TLS on (system roots, which do not know this
    // CA): it is never sent in clear text.
    let key_only = TemporalConfig { address: address.clone(), api_key: Some(Secret::new("tmprl-test-key")), ..TemporalConfig::default() };
    let e = temporal_failure(&key_only, "API key, system roots");
    assert!(matches!(e, TemporalConnectError::Tls { .. }), "{e}");
    assert!(!e.to_string().contains("tmprl-test-key"), "{e}");

    // The binary, through the Temporal CLI's environment names: a wrong CA stops `submit` by name.
    let events = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(events.path(), event("hello").to_string()).unwrap();
    let env = [
        ("TEMPORAL_ADDRESS", address.as_str()),
        ("TEMPORAL_TLS_CA", s(&stranger.ca_file)),
        ("TEMPORAL_TLS_CERT", s(&client.0)),
        ("TEMPORAL_TLS_KEY", s(&client.1)),
        ("TEMPORAL_TLS_SERVER_NAME", "temporal.test"),
    ];
    let started = Instant::now();
    let out = run_bin(&["submit", s(events.path())], &env, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Temporal at") && stderr.contains("TLS handshake failed"), "{stderr}");
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
}

/// The worker end to end with every connection on TLS: Temporal through
/// the mutual-TLS proxy (server name overridden), ClickHouse over https,
/// Redis over rediss; one workflow's row read back over https.
#[test]
fn a_worker_runs_with_every_server_on_tls() {
    let pki = Pki::new("stack");
    let (t_cert, t_key) = pki.server("temporal", &["temporal.test"]);
    let (c_cert, c_key) = pki.server("clickhouse", &["127.0.0.1"]);
    let client = pki.client("worker");
    let server = TemporalServer::start();
    let proxy = TlsProxy::start(&server.address, &t_cert, &t_key, Some(&pki.ca_file));
    let ch = ClickHouseServer::start_tls(&c_cert, &c_key, None);
    let (redis, redis_port) = redis_tls(&pki, false);
    let (temporal_address, https) = (proxy.addr.to_string(), ch.https_url.clone().unwrap());
    let redis_url = format!("rediss://127.0.0.1:{redis_port}");
    let queue = format!("tls-{}", Uuid::new_v4());
    let env = [
        ("TEMPORAL_ADDRESS", temporal_address.as_str()),
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", s(&pki.ca_file)),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", s(&client.0)),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", s(&client.1)),
        ("TEMPORAL_TLS_SERVER_NAME", "temporal.test"),
        ("CLICKHOUSE_URL", https.as_str()),
        ("LLMA_SENTIMENT_CLICKHOUSE_TLS_CA", s(&pki.ca_file)),
        ("REDIS_URL", redis_url.as_str()),
        ("LLMA_SENTIMENT_CACHE_REDIS_TLS_CA", s(&pki.ca_file)),
        ("LLMA_SENTIMENT_TASK_QUEUE", queue.as_str()),
    ];
    let out = run_bin(&["migrate"], &env, None);
    assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
    let worker = WorkerProcess::start(&env, &[]);

    let raw = event("I really love how secure this is");
    let events = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(events.path(), raw.to_string()).unwrap();
    let out = run_bin(&["submit", "--wait", "--id-prefix", "tls", s(events.path())], &env, None);
    assert!(out.status.success(), "submit: {}\n{}", String::from_utf8_lossy(&out.stderr), worker.log_text());

    let sink = block(ClickHouseSink::connect(sink_config(&https, pki.files(None)))).unwrap();
    let generation_uuid = Uuid::parse_str(raw["uuid"].as_str().unwrap()).unwrap();
    let stored = block(sink.fetch_by_generation(generation_uuid)).unwrap().expect("the worker wrote the row over https");
    assert_eq!(stored.event, "$ai_sentiment");
    assert!(!redis.keys().is_empty(), "the worker wrote its results to Redis over TLS");
    let log = worker.log_text();
    assert!(!log.contains("Redis result cache unavailable"), "{log}");
    let status = worker.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}");
}

#[test]
fn the_admin_endpoint_needs_tls_off_loopback_and_serves_https_to_the_cli() {
    use llma_sentiment::admin::{AdminConfigError, AdminSettings};
    const TOKEN: &str = "admin-tls-test-token-0123456789";
    let pki = Pki::new("admin");
    let (cert, key) = pki.server("admin", &["127.0.0.1", "localhost"]);
    let mut config = Config::default();
    config.worker.admin_token = Some(Secret::new(TOKEN));
    config.worker.admin_allow_remote = true;
    config.worker.admin_addr = Some("0.0.0.0:9".parse().unwrap());
    assert!(matches!(AdminSettings::from_config(&config), Err(AdminConfigError::RemoteWithoutTls(_))));
    config.worker.admin_tls_cert = Some(cert.clone());
    config.worker.admin_tls_key = Some(key.clone());
    assert!(AdminSettings::from_config(&config).unwrap().is_some_and(|s| s.uses_tls()), "off loopback with TLS");

    // The worker refuses at start, by name, before it needs any server.
    let port = free_port();
    let remote = format!("0.0.0.0:{port}");
    let env = [
        ("LLMA_SENTIMENT_ADMIN_ADDR", remote.as_str()),
        ("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN),
        ("LLMA_SENTIMENT_WORKER_ADMIN_ALLOW_REMOTE", "true"),
        ("LLMA_SENTIMENT_TEMPORAL_ADDRESS", "127.0.0.1:1"),
        ("LLMA_SENTIMENT_CLICKHOUSE_URL", "http://127.0.0.1:1"),
    ];
    let out = run_bin(&["worker"], &env, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no TLS") && stderr.contains("worker.admin_tls_cert"), "{stderr}");
    assert!(!stderr.contains(TOKEN));

    // Served over https (on loopback here: tests bind loopback only).
    config.worker.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    let engine = Arc::new(common::engine(llma_sentiment::engine::Limits::default()));
    let plugin = common::load(&engine, &common::plugin_wasm(), &common::model("default"));
    let registry = Arc::new(llma_sentiment::registry::Registry::new(engine, plugin, None, Duration::from_secs(60)).unwrap());
    let settings = AdminSettings::from_config(&config).unwrap().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(llma_sentiment::admin::serve(settings, registry.clone())).unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().port());

    let cli = |env: &[(&str, &str)]| {
        let mut all = vec![("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN), ("LLMA_SENTIMENT_ADMIN_URL", url.as_str())];
        all.extend_from_slice(env);
        let started = Instant::now();
        let out = run_bin(&["plugin", "status"], &all, None);
        assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stdout, stderr) = cli(&[("LLMA_SENTIMENT_ADMIN_TLS_CA", s(&pki.ca_file))]);
    assert!(ok, "{stderr}");
    let status: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(status["active"]["version"], registry.current().label(), "{status}");
    // Without the CA (the system roots do not know it): a TLS error, by name.
    let (ok, _, stderr) = cli(&[]);
    assert!(!ok && stderr.contains("TLS handshake with the admin endpoint failed"), "{stderr}");
    // Plain HTTP to the https port gets no answer (the connection is
    // closed), let alone the plugin status.
    let answer = {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(server.local_addr()).unwrap();
        plain.set_read_timeout(Some(FAST)).unwrap();
        let _ = write!(plain, "GET /plugin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        let _ = plain.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    };
    assert!(!answer.contains("HTTP/1.1 200") && !answer.contains("active"), "{answer}");
    rt.block_on(server.shutdown(Duration::from_secs(5)));
}
