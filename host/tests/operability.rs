//! What an operator sees, on real servers: the effective config, metrics
//! scraped from a running worker, health and readiness, JSON logs.

mod common;

use common::ops::{deploy_metric_names, http_get, json_lines, metrics_addr, served_metric_names, Scrape};
use common::services::run_bin;
use common::stack::{event, Stack};
use serde_json::{json, Value};
use uuid::Uuid;

#[test]
fn metrics_and_json_logs_of_a_running_worker_match_what_it_processed() {
    let stack = Stack::start();
    let worker = stack.worker(&[("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0"), ("LLMA_SENTIMENT_LOG_FORMAT", "json")]);
    let addr = metrics_addr(&worker.log_text());

    let before = Scrape::take(&addr);
    assert_eq!(before.value("llma_sentiment_events_total", &[("outcome", "classified")]), 0.0);
    assert_eq!(before.value("llma_sentiment_cache_lookups_total", &[("tier", "l1"), ("result", "hit")]), 0.0);
    assert_eq!(before.value("llma_sentiment_traps_total", &[("kind", "deadline")]), 0.0);

    // Texts no log line may contain.
    let secrets = ["zebra-marker-one I love this, thank you!", "zebra-marker-two this is broken and I hate it", "zebra-marker-three meh"];
    let good: Vec<Value> = secrets.iter().map(|t| event(t)).collect();
    let mut batch = good.clone();
    batch.push(json!({"event": "$ai_generation", "team_id": "not a number", "properties": {}}));
    batch.push(json!({"uuid": Uuid::new_v4().to_string(), "team_id": 42, "distinct_id": "u",
        "properties": {"$ai_input": [{"role": "assistant", "content": "hi"}]}}));
    let results = stack.submit(&batch, true, true);
    assert_eq!(results[0]["status"], "completed", "{results:?}");
    let singles: Vec<Value> = (0..2).map(|i| event(&format!("zebra-marker-single-{i} great"))).collect();
    let results = stack.submit(&singles, false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");

    let after = Scrape::take(&addr);
    assert_eq!(after.value("llma_sentiment_events_total", &[("outcome", "classified")]), 5.0);
    assert_eq!(after.value("llma_sentiment_events_total", &[("outcome", "skipped")]), 1.0);
    assert_eq!(after.value("llma_sentiment_events_total", &[("outcome", "failed")]), 1.0);
    assert_eq!(after.value("llma_sentiment_events_skipped_total", &[("reason", "no_user_messages")]), 1.0);
    assert_eq!(after.value("llma_sentiment_events_skipped_total", &[("reason", "no_ai_input")]), 0.0);
    // Every `event()` holds two user messages.
    assert_eq!(after.value("llma_sentiment_messages_classified_total", &[]), 10.0);
    assert_eq!(after.value("llma_sentiment_clickhouse_insert_rows_total", &[]), 5.0);
    assert_eq!(after.value("llma_sentiment_clickhouse_insert_errors_total", &[]), 0.0);
    assert_eq!(after.value("llma_sentiment_activity_seconds_count", &[("result", "ok")]), 3.0);
    // The startup self-test classifies too, so at least the activities' messages.
    assert!(after.value("llma_sentiment_inference_seconds_count", &[]) >= 10.0);
    assert_eq!(after.value("llma_sentiment_plugin_swaps_total", &[]), 0.0);
    let info = after.0.iter().find(|s| s.metric == "llma_sentiment_plugin_info").expect("plugin info gauge");
    assert!(info.labels.get("version").is_some_and(|v| v.contains('+')), "{:?}", info.labels);
    assert_eq!(info.labels.get("model"), Some("llma/vader-lexicon-sentiment"));
    let sink = stack.sink();
    assert_eq!(common::stack::block(sink.count_final(Some(42))).unwrap(), 5);

    let log = worker.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "the log holds a message text:\n{log}");
    }
    assert!(!log.contains("zebra-marker"), "the log holds a message text:\n{log}");
    let lines = json_lines(&log);
    // Every line logged inside an activity names its workflow.
    let activity_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "RunActivity")))
        .collect();
    assert!(activity_lines.len() >= 9, "{log}");
    for line in &activity_lines {
        let workflow = line["workflow_id"].as_str().or(line["span"]["workflow_id"].as_str());
        assert!(workflow.is_some_and(|w| w.starts_with("t-")), "a line without its workflow id: {line}");
    }
    // Lines about one event (the malformed one has no uuid) carry its uuid and team.
    let event_lines: Vec<&Value> = lines.iter().filter(|l| l["message"] == "event done").collect();
    assert_eq!(event_lines.len(), 6, "one `event done` line per well-formed event:\n{log}");
    let mut seen = Vec::new();
    for line in &event_lines {
        let span = &line["span"];
        assert_eq!(span["name"], "event", "{line}");
        assert!(span["workflow_id"].as_str().is_some_and(|w| w.starts_with("t-")), "{line}");
        assert!(span["event_uuid"].as_str().is_some_and(|u| Uuid::parse_str(u).is_ok()), "{line}");
        assert_eq!(span["team_id"], 42, "{line}");
        seen.push(span["event_uuid"].as_str().unwrap().to_string());
    }
    for e in good.iter().chain(&singles) {
        assert!(seen.iter().any(|u| e["uuid"] == u.as_str()), "no log line for event {}", e["uuid"]);
    }

    // A later generation re-sending earlier messages (as `$ai_input` does)
    // is answered from the result cache.
    let hits = |s: &Scrape| s.value("llma_sentiment_cache_lookups_total", &[("tier", "l1"), ("result", "hit")]);
    let misses = |s: &Scrape| s.value("llma_sentiment_cache_lookups_total", &[("tier", "l1"), ("result", "miss")]);
    assert!(hits(&after) + misses(&after) >= 10.0, "every classified message was looked up");
    let results = stack.submit(&[event(secrets[0])], false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");
    let again = Scrape::take(&addr);
    assert_eq!(hits(&again) - hits(&after), 2.0, "both messages of the repeated generation hit");
    assert_eq!(misses(&again), misses(&after));
}

#[test]
fn readyz_turns_503_naming_clickhouse_when_clickhouse_stops() {
    let mut stack = Stack::start();
    let worker = stack.worker(&[("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0")]);
    let addr = metrics_addr(&worker.log_text());

    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    for check in ["plugin", "temporal", "clickhouse"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{body}");
    }

    stack.ch.stop();
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    let not_ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(not_ready["status"], "not_ready");
    assert_eq!(not_ready["failed"], json!(["clickhouse"]), "{body}");
    assert_eq!(not_ready["checks"]["clickhouse"]["ok"], false);
    assert!(not_ready["checks"]["clickhouse"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert_eq!(not_ready["checks"]["temporal"]["ok"], true, "{body}");
    // Liveness does not depend on the servers.
    assert_eq!(http_get(&addr, "/healthz").0, 200);
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llma-sentiment.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn config_merges_file_env_alias_and_flags_and_redacts_the_password() {
    let (_dir, path) = write_config(
        r#"
[temporal]
address = "file-host:7233"
task_queue = "from-file"
namespace = "file-namespace"

[clickhouse]
password = "file-secret-pw"
table = "sentiment_events"

[pipeline]
max_messages = 10
max_chars = 500

[workflow]
max_attempts = 3
"#,
    );
    let out = run_bin(
        &["config", "--task-queue", "from-flag", "--max-chars", "100"],
        &[
            ("LLMA_SENTIMENT_CONFIG", path.as_str()),
            ("TEMPORAL_ADDRESS", "env-host:7233"),
            ("POSTHOG_SENTIMENT_MODEL_CACHE", "/srv/models/seed"),
            ("CLICKHOUSE_PASSWORD", "env-secret-pw"),
            ("LLMA_SENTIMENT_LIMITS_FUEL_BASE", "12345"),
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("secret-pw") && !stderr.contains("secret-pw"), "password shown:\n{stdout}\n{stderr}");
    let c: toml::Table = toml::from_str(&stdout).unwrap_or_else(|e| panic!("not TOML ({e}):\n{stdout}"));
    assert_eq!(c["temporal"]["address"].as_str(), Some("env-host:7233"), "env over file");
    assert_eq!(c["temporal"]["task_queue"].as_str(), Some("from-flag"), "flag over file");
    assert_eq!(c["temporal"]["namespace"].as_str(), Some("file-namespace"), "file over default");
    assert_eq!(c["clickhouse"]["password"].as_str(), Some("<redacted>"));
    assert_eq!(c["clickhouse"]["table"].as_str(), Some("sentiment_events"));
    assert_eq!(c["clickhouse"]["user"].as_str(), Some("default"), "default");
    assert_eq!(c["plugin"]["model_dir"].as_str(), Some("/srv/models/seed"), "seed alias");
    assert_eq!(c["pipeline"]["max_messages"].as_integer(), Some(10));
    assert_eq!(c["pipeline"]["max_chars"].as_integer(), Some(100), "flag over file");
    assert_eq!(c["pipeline"]["batch_size"].as_integer(), Some(8));
    assert_eq!(c["workflow"]["max_attempts"].as_integer(), Some(3));
    assert_eq!(c["workflow"]["start_to_close_secs"].as_integer(), Some(120));
    assert_eq!(c["limits"]["fuel_base"].as_integer(), Some(12345));
    assert_eq!(c["limits"]["memory_bytes"].as_integer(), Some(4 << 30));

    // What `config` prints is a valid config file for the next run.
    let (_dir2, printed) = write_config(&stdout);
    let again = run_bin(&["config"], &[("LLMA_SENTIMENT_CONFIG", printed.as_str())], None);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn bad_config_keys_and_values_are_named_with_a_non_zero_exit() {
    let cases = [
        ("[temporal]\nadress = \"x:1\"\n", vec!["adress", "temporal"]),
        ("[pipeline]\nmax_messages = \"many\"\n", vec!["pipeline.max_messages"]),
        ("[workflow]\nmax_attempts = 0\n", vec!["workflow.max_attempts"]),
        ("[log]\nformat = \"xml\"\n", vec!["log.format", "xml"]),
        ("[temporal\n", vec!["TOML"]),
        ("[kafka]\nsecurity_protocol = \"tls\"\n", vec!["kafka.security_protocol", "sasl_ssl"]),
        ("[kafka]\nsecurity_protocol = \"sasl_ssl\"\n", vec!["kafka.sasl_mechanism", "SCRAM-SHA-512"]),
        ("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\nsasl_password = \"p\"\n", vec!["kafka.sasl_mechanism", "GSSAPI is not in this build"]),
        ("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n", vec!["kafka.sasl_username", "kafka.sasl_password"]),
        ("[kafka]\nsasl_mechanism = \"PLAIN\"\n", vec!["kafka.sasl_mechanism", "not sasl_plaintext or sasl_ssl"]),
        ("[kafka]\ntls_ca = \"/ca.pem\"\n", vec!["kafka.security_protocol", "TLS needs"]),
        ("[kafka]\nsecurity_protocol = \"ssl\"\ntls_cert = \"/c.pem\"\n", vec!["kafka.tls_key", "key"]),
    ];
    for (text, needles) in cases {
        let (_dir, path) = write_config(text);
        let out = run_bin(&["--config", &path, "config"], &[], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{text:?}: the error does not name {needle:?}: {stderr}");
        }
        assert!(out.stdout.is_empty());
    }
    let out = run_bin(&["config"], &[("LLMA_SENTIMENT_WORKER_METRICS_ADDR", "not-an-address")], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("worker.metrics_addr") && stderr.contains("LLMA_SENTIMENT_WORKER_METRICS_ADDR"), "{stderr}");
    let out = run_bin(&["--config", "/nonexistent/llma.toml", "config"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/llma.toml"));
}

#[test]
fn configured_activity_options_and_execution_timeout_reach_temporal() {
    let stack = Stack::start();
    let _worker = stack.worker(&[
        ("LLMA_SENTIMENT_WORKFLOW_HEARTBEAT_TIMEOUT_SECS", "45"),
        ("LLMA_SENTIMENT_WORKFLOW_MAX_ATTEMPTS", "3"),
        ("LLMA_SENTIMENT_WORKFLOW_RETRY_MAX_INTERVAL_SECS", "7"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, event("thanks, all good").to_string()).unwrap();
    let mut env = stack.env();
    env.push(("LLMA_SENTIMENT_WORKFLOW_EXECUTION_TIMEOUT_SECS", "900"));
    let out = run_bin(&["submit", "--wait", "--id-prefix", "cfg", file.to_str().unwrap()], &env, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "completed", "{result}");
    let history = stack.temporal.history(result["workflow_id"].as_str().unwrap());
    let started = history.iter().find(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED").unwrap();
    assert_eq!(started["workflowExecutionStartedEventAttributes"]["workflowExecutionTimeout"], "900s");
    let scheduled = &history
        .iter()
        .find(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
        .expect("activity scheduled")["activityTaskScheduledEventAttributes"];
    assert_eq!(scheduled["heartbeatTimeout"], "45s");
    assert_eq!(scheduled["retryPolicy"]["maximumAttempts"], 3);
    assert_eq!(scheduled["retryPolicy"]["maximumInterval"], "7s");
    // Unchanged keys keep the seed's values.
    assert_eq!(scheduled["startToCloseTimeout"], "120s");
    assert_eq!(scheduled["retryPolicy"]["initialInterval"], "2s");
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_metrics_a_running_worker_serves() {
    // The rules are valid and each alert fires on its case and stays quiet on its look-alikes.
    common::script("promtool.sh", &["install".as_ref()]);
    let check = common::script("promtool.sh", &["check".as_ref()]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("SUCCESS: 11 rules found"), "{check:?}");
    let used = deploy_metric_names();
    assert!(used.len() >= 30, "the dashboard covers the worker's and the scheduler's metrics: {used:?}");

    let stack = Stack::start();
    let worker = stack.worker(&[("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0"), ("LLMA_SENTIMENT_LOG_FORMAT", "json")]);
    let addr = metrics_addr(&worker.log_text());
    let results = stack.submit(&[event("I love this dashboard")], false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");
    // The scheduler's own series (per partition) are held to a running scheduler in kafka.rs.
    let served = served_metric_names(&addr);
    let missing: Vec<&String> =
        used.iter().filter(|n| !n.starts_with("llma_sentiment_schedule_") && !served.contains(*n)).collect();
    assert!(missing.is_empty(), "used by deploy/ but not served: {missing:?}\nserved: {served:?}");
    // The series new for the dashboard say what happened: the one activity
    // heartbeated, nothing was retried, and the pool's instances are sampled.
    let scrape = Scrape::take(&addr);
    assert!(scrape.value("llma_sentiment_heartbeats_total", &[("result", "recorded")]) >= 1.0);
    assert_eq!(scrape.value("llma_sentiment_heartbeats_total", &[("result", "failed")]), 0.0);
    assert_eq!(scrape.value("llma_sentiment_clickhouse_retries_total", &[]), 0.0);
    let capacity = scrape.value("llma_sentiment_instances_capacity", &[]);
    assert!(capacity >= 1.0);
    let instances = scrape.value("llma_sentiment_instances", &[("state", "idle")]) + scrape.value("llma_sentiment_instances", &[("state", "busy")]);
    assert!(instances >= 1.0 && instances <= capacity, "{instances} instances of at most {capacity}");
}
