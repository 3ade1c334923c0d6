//! Hot swap of plugin versions under load, on real servers: activation via
//! the admin endpoint and via the plugin directory, rejection of broken
//! versions, rollback.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::free_port;
use common::services::{run_bin, WorkerProcess};
use common::stack::{block, event, sentiment_uuid, Stack};
use serde_json::Value;

/// The plugin rebuilt with `tag` (see `common::rebuilt`), as `dir/name`.
fn rebuilt_plugin(dir: &Path, name: &str, tag: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, common::rebuilt(&std::fs::read(common::plugin_wasm()).unwrap(), tag)).unwrap();
    path
}

/// The admin endpoint's bearer token in these tests (the worker and the CLI read it from the environment).
const TOKEN: &str = "swap-test-admin-token-0123456789";

struct SwapWorker {
    worker: WorkerProcess,
    admin: String,
    metrics: String,
    plugin_dir: tempfile::TempDir,
}

/// A worker serving `v1.wasm` of its plugin directory; the admin endpoint
/// activates from that directory and from `allowed`.
fn start_worker(stack: &Stack, allowed: &[&Path]) -> SwapWorker {
    let plugin_dir = tempfile::tempdir().unwrap();
    rebuilt_plugin(plugin_dir.path(), "v1.wasm", "v1");
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = plugin_dir.path().to_str().unwrap().to_string();
    let model = common::model("default");
    let allowed = std::env::join_paths(allowed).unwrap().into_string().unwrap();
    let worker = stack.worker(&[
        ("LLMA_SENTIMENT_PLUGIN_DIR", dir.as_str()),
        ("LLMA_SENTIMENT_MODEL_DIR", model.to_str().unwrap()),
        ("LLMA_SENTIMENT_ADMIN_ADDR", addr.as_str()),
        ("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN),
        ("LLMA_SENTIMENT_WORKER_ADMIN_ALLOWED_DIRS", allowed.as_str()),
        ("LLMA_SENTIMENT_PLUGIN_POLL_MS", "200"),
        ("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0"),
    ]);
    let metrics = common::ops::metrics_addr(&worker.log_text());
    SwapWorker { worker, admin: format!("http://{addr}"), metrics, plugin_dir }
}

fn plugin_cmd(admin: &str, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["plugin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin-url", admin]);
    let out = run_bin(&all, &[("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN)], None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.success(), value, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn active_version(admin: &str) -> String {
    let (ok, v, err) = plugin_cmd(admin, &["status"]);
    assert!(ok, "{err}");
    v["active"]["version"].as_str().unwrap().to_string()
}

/// Events of one stream, as written: (version, model) of each.
fn written_versions(stack: &Stack, events: &[Value]) -> Vec<(String, String)> {
    let uuids: Vec<_> = events.iter().map(sentiment_uuid).collect();
    let rows = block(stack.sink().fetch_final(&uuids)).unwrap();
    assert_eq!(rows.len(), events.len(), "every event written once");
    rows.iter()
        .map(|r| {
            let p = &r.properties;
            (p["$ai_sentiment_plugin_version"].as_str().unwrap().to_string(), p["$ai_sentiment_model"].as_str().unwrap().to_string())
        })
        .collect()
}

fn events(n: usize, tag: &str) -> Vec<Value> {
    (0..n).map(|i| event(&format!("{tag} {i}: thanks, that was really helpful"))).collect()
}

fn all_completed(results: &[Value]) {
    for r in results {
        assert_eq!(r["status"], "completed", "{r}");
    }
}

/// Submits `before` in a background thread, runs `swap` once some of them
/// were written, then submits `after`; returns both streams' results.
fn stream_with_swap(stack: &Stack, before: &[Value], after: &[Value], swap: impl FnOnce()) -> (Vec<Value>, Vec<Value>) {
    std::thread::scope(|s| {
        let first = s.spawn(|| stack.submit(before, false, true));
        let sink = stack.sink();
        let deadline = Instant::now() + Duration::from_secs(120);
        while block(sink.count_final(Some(42))).unwrap() < 20 {
            assert!(Instant::now() < deadline, "the stream did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        swap();
        let second = stack.submit(after, false, true);
        (first.join().unwrap(), second)
    })
}

#[test]
fn swap_under_load_then_rollback_without_failures() {
    let stack = Stack::start();
    let scratch = tempfile::tempdir().unwrap();
    let models = common::models_dir();
    let w = start_worker(&stack, &[scratch.path(), models.as_path()]);
    let v1 = active_version(&w.admin);
    let tiny = common::model("roberta-tiny");
    let v2_file = rebuilt_plugin(scratch.path(), "v2.wasm", "v2");

    // v1 -> v2 mid-stream through the admin endpoint; v2 also brings another model.
    let (a, b) = (events(140, "a"), events(80, "b"));
    let mut v2 = String::new();
    let (ra, rb) = stream_with_swap(&stack, &a, &b, || {
        let (ok, v, err) = plugin_cmd(&w.admin, &["activate", v2_file.to_str().unwrap(), "--with-model", tiny.to_str().unwrap()]);
        assert!(ok, "activate: {err} {v}");
        v2 = v["activated"]["version"].as_str().unwrap().to_string();
    });
    all_completed(&ra);
    all_completed(&rb);
    assert_ne!(v1, v2);
    let va = written_versions(&stack, &a);
    let vb = written_versions(&stack, &b);
    for (version, model) in va.iter().chain(&vb) {
        let expected_model = if *version == v1 { "llma/vader-lexicon-sentiment" } else { "llma/roberta-tiny-random" };
        assert!(*version == v1 || *version == v2, "unknown version {version}");
        assert_eq!(model, expected_model, "version and model travel together");
    }
    assert!(va.iter().any(|(v, _)| *v == v1), "the stream started on v1");
    assert!(vb.iter().all(|(v, _)| *v == v2), "every task after the swap ran v2");

    // Rollback under load: back to v1 with no failure.
    let (c, d) = (events(100, "c"), events(60, "d"));
    let (rc, rd) = stream_with_swap(&stack, &c, &d, || {
        let (ok, v, err) = plugin_cmd(&w.admin, &["rollback"]);
        assert!(ok, "rollback: {err} {v}");
        assert_eq!(v["activated"]["version"].as_str().unwrap(), v1);
    });
    all_completed(&rc);
    all_completed(&rd);
    assert!(written_versions(&stack, &d).iter().all(|(v, _)| *v == v1), "every task after the rollback ran v1");
    drop(w);
}

#[test]
fn a_new_file_in_the_plugin_directory_is_picked_up_and_broken_versions_are_rejected() {
    let stack = Stack::start();
    let scratch = tempfile::tempdir().unwrap();
    let w = start_worker(&stack, &[scratch.path()]);
    let v1 = active_version(&w.admin);

    // Broken builds are refused with a reason and v1 keeps serving.
    let not_a_component = scratch.path().join("broken.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").unwrap();
    let (ok, v, _) = plugin_cmd(&w.admin, &["activate", not_a_component.to_str().unwrap()]);
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("component"), "{v}");

    let bad_model = hostile_model_dir(scratch.path(), "bad-scores", "hostile-bad-scores", "");
    let hostile = scratch.path().join("hostile.wasm");
    std::fs::copy(common::hostile_wasm(), &hostile).unwrap();
    let (ok, v, _) = plugin_cmd(&w.admin, &["activate", hostile.to_str().unwrap(), "--with-model", bad_model.to_str().unwrap()]);
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("self-test"), "{v}");

    let trap_model = hostile_model_dir(scratch.path(), "trap-on-load", "hostile-load", "panic");
    let (ok, v, _) = plugin_cmd(&w.admin, &["activate", hostile.to_str().unwrap(), "--with-model", trap_model.to_str().unwrap()]);
    assert!(!ok);
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("load") && err.contains("panic"), "{v}");
    assert_eq!(active_version(&w.admin), v1, "v1 kept serving");

    // A broken file dropped in the directory is rejected too (its rejection
    // logged), v1 still serving after it; then a good one is served.
    std::fs::copy(&not_a_component, w.plugin_dir.path().join("v1b-broken.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::ops::json_lines(&w.worker.log_text()).iter().any(|l| {
        l["message"].as_str().is_some_and(|m| m.starts_with("plugin rejected"))
            && l["path"].as_str().is_some_and(|p| p.ends_with("v1b-broken.wasm"))
    }) {
        assert!(Instant::now() < deadline, "the broken file was never rejected:\n{}", w.worker.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(active_version(&w.admin), v1);

    std::thread::sleep(Duration::from_millis(20)); // a later mtime than the broken file
    let v2_path = rebuilt_plugin(w.plugin_dir.path(), "v2.wasm", "v2");
    // A new build compiles cold (~12 s on an idle 2-core machine).
    let deadline = Instant::now() + Duration::from_secs(300);
    while active_version(&w.admin) == v1 {
        assert!(Instant::now() < deadline, "the new file was never activated:\n{}", w.worker.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let v2 = active_version(&w.admin);
    // Four versions were refused (three via the admin endpoint, one from the
    // directory), one was switched to; the info gauge names the new one.
    let scrape = common::ops::Scrape::take(&w.metrics);
    assert_eq!(scrape.value("llma_sentiment_plugin_rejections_total", &[]), 4.0);
    assert_eq!(scrape.value("llma_sentiment_plugin_swaps_total", &[]), 1.0);
    assert_eq!(scrape.value("llma_sentiment_plugin_info", &[("version", v2.as_str())]), 1.0);
    assert!(scrape.0.iter().filter(|s| s.metric == "llma_sentiment_plugin_info").count() == 1, "one active version");
    let evs = events(5, "after-dir-swap");
    all_completed(&stack.submit(&evs, false, true));
    assert!(written_versions(&stack, &evs).iter().all(|(v, _)| *v == v2));
    assert!(v2_path.exists());

    // `plugin check` validates offline with the same steps.
    let out = run_bin(&["plugin", "check", v2_path.to_str().unwrap(), "--model", common::model("default").to_str().unwrap()], &[], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"]["version"], v2);
    let out = run_bin(&["plugin", "check", not_a_component.to_str().unwrap()], &[], None);
    assert!(!out.status.success());
}

/// The default bundle plus one of the hostile plugin's marker files, which
/// tells that plugin how to misbehave with this model.
fn hostile_model_dir(scratch: &std::path::Path, name: &str, marker: &str, content: &str) -> std::path::PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::copy(common::model("default").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join(marker), content).unwrap();
    dir
}

/// A restarted worker serves the version that was active (recorded beside
/// the cache), not the newest file of its plugin directory, and says so; a
/// plugin given explicitly wins over the record.
#[test]
fn a_restarted_worker_serves_the_version_that_was_active() {
    let stack = Stack::start();
    let scratch = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    rebuilt_plugin(plugin_dir.path(), "v1.wasm", "v1");
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("http://{addr}");
    let dir = plugin_dir.path().to_str().unwrap().to_string();
    let allowed = scratch.path().to_str().unwrap().to_string();
    let env = [
        ("LLMA_SENTIMENT_PLUGIN_DIR", dir.as_str()),
        ("LLMA_SENTIMENT_ADMIN_ADDR", addr.as_str()),
        ("LLMA_SENTIMENT_ADMIN_TOKEN", TOKEN),
        ("LLMA_SENTIMENT_WORKER_ADMIN_ALLOWED_DIRS", allowed.as_str()),
        ("LLMA_SENTIMENT_PLUGIN_POLL_MS", "200"),
    ];
    let first = stack.worker(&env);
    let v2_file = rebuilt_plugin(scratch.path(), "v2.wasm", "v2");
    let (ok, v, err) = plugin_cmd(&admin, &["activate", v2_file.to_str().unwrap()]);
    assert!(ok, "activate: {err} {v}");
    let v2 = v["activated"]["version"].as_str().unwrap().to_string();
    first.terminate(Duration::from_secs(60));

    // While it was down, a newer file arrived in the plugin directory.
    rebuilt_plugin(plugin_dir.path(), "v3.wasm", "v3");
    let mut second = stack.worker(&env);
    assert_eq!(active_version(&admin), v2, "the restart served another version");
    second.wait_for_log("starting with the version active before the restart", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(active_version(&admin), v2, "the watcher switched to a file that was there at start");
    second.terminate(Duration::from_secs(60));

    let explicit = rebuilt_plugin(scratch.path(), "explicit.wasm", "explicit");
    let mut with_plugin: Vec<(&str, &str)> = env.to_vec();
    with_plugin.push(("LLMA_SENTIMENT_PLUGIN", explicit.to_str().unwrap()));
    let mut third = stack.worker(&with_plugin);
    let served = active_version(&admin);
    assert_ne!(served, v2, "the plugin given explicitly lost to the record");
    assert!(explicit_source(&admin).ends_with("explicit.wasm"), "{served}");
    third.wait_for_log("starting with the plugin given explicitly", Duration::from_secs(10));
}

fn explicit_source(admin: &str) -> String {
    let (ok, v, err) = plugin_cmd(admin, &["status"]);
    assert!(ok, "{err}");
    v["active"]["source"].as_str().unwrap_or_default().to_string()
}

