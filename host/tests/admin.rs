//! The admin endpoint is locked down: the real endpoint (the worker's
//! router on its server setup, over a real socket) in front of a real
//! registry; the worker binary for the checks made at start.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llma_sentiment::admin::{AdminConfigError, AdminSettings};
use llma_sentiment::config::{Config, Secret};
use llma_sentiment::engine::Limits;
use llma_sentiment::registry::Registry;
use serde_json::{json, Value};

const TOKEN: &str = "admin-test-token-0123456789abcdef";

/// One request to the endpoint, with the token if given; (status, JSON body).
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, answer) = common::ops::http(&addr.to_string(), method, path, &headers, &body);
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

struct Endpoint {
    addr: SocketAddr,
    registry: Arc<Registry>,
    /// `plugin.dir`: activation is allowed from here.
    plugin_dir: tempfile::TempDir,
    _server: llma_sentiment::http_server::Server,
    _rt: tokio::runtime::Runtime,
}

/// The default plugin and model as version 1, the endpoint on a free
/// loopback port, activation allowed from a fresh `plugin.dir` only.
fn endpoint(limits: Limits) -> Endpoint {
    let engine = Arc::new(common::engine(limits));
    let plugin = common::load(&engine, &common::plugin_wasm(), &common::model("default"));
    let registry = Arc::new(Registry::new(engine, plugin, None, Duration::from_secs(600)).unwrap());
    let plugin_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.worker.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    config.worker.admin_token = Some(Secret::new(TOKEN));
    config.plugin.dir = Some(plugin_dir.path().to_path_buf());
    let settings = AdminSettings::from_config(&config).unwrap().expect("the endpoint is on");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(llma_sentiment::admin::serve(settings, registry.clone())).unwrap();
    Endpoint { addr: server.local_addr(), registry, plugin_dir, _server: server, _rt: rt }
}

/// The hostile plugin (cheap to load, passes the self-test) copied into `dir`.
fn hostile_in(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.wasm");
    std::fs::copy(common::hostile_wasm(), &path).unwrap();
    path
}

/// The default bundle plus the hostile plugin's marker telling its `load` how to misbehave.
fn hostile_model(dir: &Path, load: &str) -> PathBuf {
    let model = dir.join(format!("model-{load}"));
    std::fs::create_dir(&model).unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::copy(common::model("default").join(f), model.join(f)).unwrap();
    }
    std::fs::write(model.join("hostile-load"), load).unwrap();
    model
}

#[test]
fn requests_without_or_with_a_wrong_token_are_refused_401_and_change_nothing() {
    let e = endpoint(Limits::default());
    let v1 = e.registry.current().label();
    let plugin = hostile_in(e.plugin_dir.path());
    // The hostile plugin labels the self-test's texts otherwise than the
    // default it replaces, on the same model: only a forced activation passes.
    let activate = json!({"path": plugin, "force": true});
    for token in [None, Some("wrong-token-0123456789abcdef"), Some(""), Some(&TOKEN[1..])] {
        for (method, path, body) in [
            ("GET", "/plugin", None),
            ("GET", "/healthz", None),
            ("POST", "/plugin/activate", Some(activate.clone())),
            ("POST", "/plugin/rollback", None),
        ] {
            let (status, body) = request(e.addr, method, path, token, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"], "missing or wrong bearer token");
        }
    }
    assert_eq!(e.registry.current().label(), v1, "nothing was activated");
    assert_eq!(e.registry.current().seq, 1);
    assert!(e.registry.previous().is_none(), "nothing was switched");
    assert!(!e.registry.is_activating());

    // The right token: the same activation goes through.
    let (status, body) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(activate));
    assert_eq!(status, 200, "{body}");
    assert_eq!(e.registry.current().seq, 2);
    let (status, body) = request(e.addr, "GET", "/plugin", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(body["previous"]["version"], v1);
}

#[test]
fn a_path_outside_the_allowed_directories_is_refused_with_the_reason() {
    let e = endpoint(Limits::default());
    let outside = tempfile::tempdir().unwrap();
    let outside_plugin = hostile_in(outside.path());
    let inside_plugin = hostile_in(e.plugin_dir.path());
    let outside_model = hostile_model(outside.path(), "none");
    let escape = e.plugin_dir.path().join("escape.wasm");
    std::os::unix::fs::symlink(&outside_plugin, &escape).unwrap();
    let dotdot = e.plugin_dir.path().join("..").join(outside.path().file_name().unwrap()).join("hostile.wasm");
    assert!(dotdot.exists());
    let cases = [
        (json!({"path": outside_plugin}), "plugin"),
        (json!({"path": escape}), "plugin"),
        (json!({"path": dotdot}), "plugin"),
        (json!({"path": inside_plugin, "model_dir": outside_model}), "model_dir"),
    ];
    for (body, what) in cases {
        let (status, answer) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(body.clone()));
        assert_eq!(status, 403, "{body}: {answer}");
        let reason = answer["error"].as_str().unwrap();
        assert!(reason.starts_with(what) && reason.contains("is outside the directories activation is allowed from"), "{reason}");
        assert!(reason.contains(&std::fs::canonicalize(e.plugin_dir.path()).unwrap().display().to_string()), "names the allowed dir: {reason}");
    }
    let (status, answer) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(json!({"path": "relative.wasm"})));
    assert_eq!(status, 403);
    assert!(answer["error"].as_str().unwrap().contains("not an absolute path"), "{answer}");
    assert_eq!(e.registry.current().seq, 1, "nothing was activated");
}

#[test]
fn rollback_answers_while_an_activation_is_still_validating() {
    // The activation below spins in the plugin's load until this deadline.
    let e = endpoint(Limits { load_deadline: Duration::from_secs(6), ..Limits::default() });
    let v1 = e.registry.current().label();
    let plugin = hostile_in(e.plugin_dir.path());
    let (status, body) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(json!({"path": plugin, "force": true})));
    assert_eq!(status, 200, "{body}");
    let spin = hostile_model(e.plugin_dir.path(), "spin");
    let addr = e.addr;
    let slow = std::thread::spawn(move || {
        request(addr, "POST", "/plugin/activate", Some(TOKEN), Some(json!({"path": plugin, "model_dir": spin})))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !request(e.addr, "GET", "/plugin", Some(TOKEN), None).1["activating"].as_bool().unwrap() {
        assert!(Instant::now() < deadline, "the activation never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = request(e.addr, "POST", "/plugin/rollback", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["activated"]["version"], v1);
    assert!(e.registry.is_activating() && !slow.is_finished(), "the rollback was answered only after the activation ended");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 422, "the spinning load hits its deadline: {body}");
    assert_eq!(e.registry.current().label(), v1, "the failed activation switched nothing");
}

#[test]
fn the_endpoint_is_locked_down_by_default() {
    let mut config = Config::default();
    assert!(AdminSettings::from_config(&config).unwrap().is_none(), "off unless an address is set");
    config.worker.admin_addr = Some("127.0.0.1:9".parse().unwrap());
    assert!(matches!(AdminSettings::from_config(&config), Err(AdminConfigError::NoToken)));
    config.worker.admin_token = Some(Secret::new("short"));
    assert!(matches!(AdminSettings::from_config(&config), Err(AdminConfigError::TokenTooShort)));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{TOKEN}\n")).unwrap();
    config.worker.admin_token = None;
    config.worker.admin_token_file = Some(file.path().to_path_buf());
    let settings = AdminSettings::from_config(&config).unwrap().unwrap();
    assert!(!format!("{settings:?}").contains(TOKEN), "the token never shows");
    for addr in ["0.0.0.0:9", "192.0.2.1:9", "[::]:9"] {
        config.worker.admin_addr = Some(addr.parse().unwrap());
        assert!(matches!(AdminSettings::from_config(&config), Err(AdminConfigError::NotLoopback(_))), "{addr}");
    }
    config.worker.admin_allow_remote = true;
    // Allowed explicitly, and then only with TLS (tests/tls.rs serves it so).
    assert!(matches!(AdminSettings::from_config(&config), Err(AdminConfigError::RemoteWithoutTls(_))));
}

#[test]
fn a_worker_refuses_a_non_loopback_admin_bind_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("0.0.0.0:{port}");
    // No Temporal or ClickHouse here: the worker must stop before it needs them.
    let env = [
        ("LLMA_SENTIMENT_ADMIN_ADDR", addr.as_str()),
        ("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN),
        ("LLMA_SENTIMENT_TEMPORAL_ADDRESS", "127.0.0.1:1"),
        ("LLMA_SENTIMENT_CLICKHOUSE_URL", "http://127.0.0.1:1"),
    ];
    let out = common::services::run_bin(&["worker"], &env, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not a loopback address") && stderr.contains("worker.admin_allow_remote"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    // Nor on loopback without a token.
    let loopback = format!("127.0.0.1:{port}");
    let out = common::services::run_bin(&["worker"], &[("LLMA_SENTIMENT_ADMIN_ADDR", loopback.as_str()), env[2], env[3]], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs a bearer token"), "{stderr}");
}

/// Rollback goes back along the history: a second rollback goes further
/// back, never to the build just rolled away from; `{"to": N}` goes to a
/// named version of the history and drops the ones between.
#[test]
fn rollback_goes_back_along_the_history_and_to_a_named_version() {
    let e = endpoint(Limits::default());
    let plugin = hostile_in(e.plugin_dir.path());
    let seq = |e: &Endpoint| e.registry.current().seq;
    let activate = |e: &Endpoint| {
        let (status, body) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(json!({"path": plugin, "force": true})));
        assert_eq!(status, 200, "{body}");
    };
    let rollback = |e: &Endpoint, body: Option<Value>| request(e.addr, "POST", "/plugin/rollback", Some(TOKEN), body);
    activate(&e);
    activate(&e);
    assert_eq!(seq(&e), 3);
    let (_, status) = request(e.addr, "GET", "/plugin", Some(TOKEN), None);
    let history: Vec<u64> = status["history"].as_array().unwrap().iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(history, [2, 1], "newest first: {status}");
    assert_eq!(rollback(&e, None).0, 200);
    assert_eq!(seq(&e), 2);
    assert_eq!(rollback(&e, None).0, 200);
    assert_eq!(seq(&e), 1, "the second rollback went back to 3, the build just rolled away from");
    let (status, body) = rollback(&e, None);
    assert_eq!(status, 409, "nothing further back: {body}");

    activate(&e);
    activate(&e);
    activate(&e);
    assert_eq!(seq(&e), 6);
    let (status, body) = rollback(&e, Some(json!({"to": "4"})));
    assert_eq!((status, body["activated"]["seq"].as_u64()), (200, Some(4)), "{body}");
    let left: Vec<u64> = e.registry.history().iter().map(|v| v.seq).collect();
    assert_eq!(left, [1], "4 and the versions after it left the history");
    let (status, body) = rollback(&e, Some(json!({"to": "5"})));
    assert_eq!(status, 409, "5 was dropped from the history: {body}");
    assert!(body["error"].as_str().unwrap().contains("no version \"5\""), "{body}");
    let (status, _) = rollback(&e, Some(json!({"to": [1]})));
    assert_eq!(status, 400);
}

/// The self-test means something: a version that labels the bundle's
/// canaries otherwise (here: everything positive) is refused with the
/// disagreeing texts, as is a build that labels the self-test's texts
/// otherwise than the serving one on the same model; `force` overrides.
#[test]
fn a_version_that_labels_its_canaries_otherwise_is_refused_unless_forced() {
    let e = endpoint(Limits::default());
    let plugin = hostile_in(e.plugin_dir.path());
    let positive = hostile_model(e.plugin_dir.path(), "ok");
    std::fs::copy(common::model("default").join("canary.json"), positive.join("canary.json")).unwrap();
    std::fs::write(positive.join("hostile-always-positive"), b"").unwrap();
    let body = |force: bool| json!({"path": plugin, "model_dir": positive, "force": force});
    let (status, answer) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(body(false)));
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("canary") && error.contains(r#""this is broken and I hate it": expected negative, got positive"#), "{error}");
    assert!(!error.contains("I love this, thank you!\": expected"), "an agreeing canary is listed: {error}");
    assert_eq!(e.registry.current().seq, 1, "nothing was activated");

    // Same model, another build that labels the self-test otherwise.
    let (status, answer) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(json!({"path": plugin})));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("the serving version says"), "{answer}");

    let (status, answer) = request(e.addr, "POST", "/plugin/activate", Some(TOKEN), Some(body(true)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(e.registry.current().seq, 2);
}

/// The auth scheme is matched case-insensitively (RFC 9110), the token
/// exactly; another scheme or a near token is refused.
#[test]
fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let e = endpoint(Limits::default());
    let status = |auth: &str| common::ops::http(&e.addr.to_string(), "GET", "/plugin", &[("Authorization", auth)], "").0;
    for ok in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}"), format!("BEARER  {TOKEN} ")] {
        assert_eq!(status(&ok), 200, "{ok}");
    }
    for refused in [format!("Basic {TOKEN}"), format!("Bearer {}", TOKEN.to_uppercase()), format!("Bearer{TOKEN}"), format!("Bearer {TOKEN}x")] {
        assert_eq!(status(&refused), 401, "{refused}");
    }
}

