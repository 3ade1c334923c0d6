//! Interop with clients nobody here wrote, on real servers: the official
//! Temporal Python SDK starting the workflow with PostHog's payload, the
//! official `clickhouse-client` reading the rows back, the `temporal` CLI
//! describing a running activity; and the offline backfill
//! (`analyze --output clickhouse`, progress output).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::services::{bin, run_bin};
use common::stack::{block, Stack};
use common::ClickHouseServer;
use serde_json::{json, Value};
use uuid::Uuid;

// ---- helpers ----

/// A `$ai_generation` row as PostHog's sentiment scheduler takes it from the
/// `clickhouse_events_json` topic (nodejs `RawKafkaEvent`): ClickHouse-format
/// timestamps, `properties` as a JSON string, person and group columns.
fn kafka_event(team_id: i64, person_id: Uuid, input: Value) -> Value {
    let properties = json!({
        "$ai_trace_id": "trace-interop",
        "$ai_session_id": "session-interop",
        "$ai_span_id": "span-interop",
        "$ai_model": "gpt-4o-mini",
        "$ai_provider": "openai",
        "$ai_input": input,
        "$ai_output_choices": [{"role": "assistant", "content": "Sorry about that."}],
        "$ai_input_tokens": 42,
        "$ai_output_tokens": 7,
        "$lib": "posthog-python",
    });
    json!({
        "uuid": Uuid::new_v4().to_string(),
        "event": "$ai_generation",
        "team_id": team_id,
        "project_id": team_id,
        "distinct_id": "user-interop",
        "person_id": person_id.to_string(),
        "timestamp": "2026-11-01 10:00:00.123000",
        "created_at": "2026-11-01 10:00:01.456000",
        "captured_at": null,
        "elements_chain": "",
        "properties": properties.to_string(),
        "person_created_at": "2026-10-01 09:00:00",
        "person_properties": "{}",
        "group0_properties": "",
        "person_mode": "full",
        "historical_migration": false,
    })
}

fn chat(user_text: &str) -> Value {
    json!([
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": user_text},
    ])
}

fn write_jsonl(dir: &Path, name: &str, events: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

fn samples() -> PathBuf {
    common::repo().join("samples/events.jsonl")
}

fn generation_sentiment_uuid(e: &Value) -> String {
    llma_sentiment::sink::sentiment_uuid_for(Uuid::parse_str(e["uuid"].as_str().unwrap()).unwrap()).to_string()
}

/// Runs `tests/interop/start_workflow.py` with the venv's Python; returns
/// the line it printed.
fn python_start(stack: &Stack, workflow_id: &str, events_file: &Path, single: bool) -> Value {
    let script = common::repo().join("tests/interop/start_workflow.py");
    let mut cmd = Command::new(common::python());
    cmd.arg(&script)
        .args(["--address", &stack.temporal.address, "--task-queue", &stack.queue, "--workflow-id", workflow_id])
        .arg("--events")
        .arg(events_file)
        .stdin(Stdio::null());
    if single {
        cmd.arg("--single");
    }
    let out = cmd.output().expect("run the Python client");
    assert!(
        out.status.success(),
        "Python client failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("Python client printed {stdout:?}: {e}"))
}

/// The server's native TCP port (what `clickhouse-client` speaks), from the
/// env file `scripts/clickhouse.sh start` wrote.
fn tcp_port(ch: &ClickHouseServer) -> String {
    let env = std::fs::read_to_string(ch.dir().join("env")).expect("clickhouse env file");
    env.lines().find_map(|l| l.strip_prefix("CLICKHOUSE_TCP_PORT=")).expect("CLICKHOUSE_TCP_PORT").trim().to_string()
}

/// Runs the official `clickhouse-client` (the Debian package's binary) and
/// returns its stdout.
fn clickhouse_client(ch: &ClickHouseServer, query: &str) -> String {
    let client = std::env::var_os("CLICKHOUSE_CLIENT_BIN").unwrap_or_else(|| "clickhouse-client".into());
    let out = Command::new(client)
        .args(["--host", "127.0.0.1", "--port", &tcp_port(ch), "--query", query])
        .stdin(Stdio::null())
        .output()
        .expect("run clickhouse-client (scripts/clickhouse.sh install provides it)");
    assert!(out.status.success(), "clickhouse-client {query:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn client_count(ch: &ClickHouseServer, sql: &str) -> u64 {
    clickhouse_client(ch, sql).trim().parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Int64 columns come quoted from JSONEachRow on old servers.
fn as_i64(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Standard base64 (the encoding `json/plain` payloads' `data` has in
/// Temporal's JSON output).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The heartbeat details object in a pending activity of `temporal workflow
/// describe --output json`, whether the CLI shows payloads decoded or as
/// `{metadata, data}` with base64 data.
fn heartbeat_details(pending: &Value) -> Option<Value> {
    fn find(v: &Value) -> Option<Value> {
        match v {
            Value::Object(m) if m.contains_key("event_index") => Some(v.clone()),
            Value::Object(m) => {
                let decoded = m
                    .get("data")
                    .and_then(Value::as_str)
                    .and_then(base64_decode)
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|j| find(&j));
                decoded.or_else(|| m.values().find_map(find))
            }
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(&pending["heartbeatDetails"])
}

// ---- the Temporal Python SDK and clickhouse-client ----

#[test]
fn a_python_temporalio_client_sends_posthogs_payload_and_clickhouse_client_reads_the_rows() {
    let stack = Stack::start();
    let _worker = stack.worker(&[]);
    let dir = tempfile::tempdir().unwrap();
    let person = Uuid::new_v4();
    let negative = kafka_event(77, person, chat("this is broken again and I hate it"));
    let positive = kafka_event(77, person, chat("I love this, thank you so much!"));
    let assistant_only = kafka_event(77, person, json!([{"role": "assistant", "content": "hello"}]));
    let batch = [negative.clone(), positive.clone(), assistant_only.clone()];

    // PostHog's batch input: {"events": [...]}.
    let wf = format!("llma-sentiment-interop-{}", Uuid::new_v4());
    let printed = python_start(&stack, &wf, &write_jsonl(dir.path(), "batch.jsonl", &batch), false);
    assert_eq!(printed["workflow_id"], wf.as_str());
    let r = &printed["result"];
    assert_eq!(r["processed"], 2, "{r}");
    assert_eq!(r["skipped"], 1, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["skip_reasons"], json!({"no_user_messages": 1}), "{r}");
    let events = r["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    let expected = [(&negative, "classified", Some("negative")), (&positive, "classified", Some("positive")), (&assistant_only, "skipped", None)];
    for (i, (sent, status, label)) in expected.iter().enumerate() {
        let e = &events[i];
        assert_eq!(e["index"], i, "{e}");
        assert_eq!(e["generation_uuid"], sent["uuid"], "{e}");
        assert_eq!(e["status"], *status, "{e}");
        match label {
            Some(l) => {
                assert_eq!(e["label"], *l, "{e}");
                assert_eq!(e["sentiment_uuid"], generation_sentiment_uuid(sent).as_str(), "{e}");
                let score = e["score"].as_f64().unwrap();
                assert!(score > 0.0 && score <= 1.0, "{e}");
            }
            None => assert_eq!(e["reason"], "no_user_messages", "{e}"),
        }
    }

    // The first version's single-event input: {"event_data": {...}}.
    let single = kafka_event(78, person, chat("what time is the meeting tomorrow"));
    let wf_single = format!("llma-sentiment-interop-single-{}", Uuid::new_v4());
    let printed = python_start(&stack, &wf_single, &write_jsonl(dir.path(), "single.jsonl", &[single.clone()]), true);
    let r = &printed["result"];
    assert_eq!((r["processed"].as_u64(), r["skipped"].as_u64(), r["failed"].as_u64()), (Some(1), Some(0), Some(0)), "{r}");
    assert_eq!(r["events"][0]["label"], "neutral", "{r}");

    // Read back with the official client.
    let ch = &stack.ch;
    assert_eq!(client_count(ch, "SELECT count() FROM default.events FINAL WHERE team_id = 77"), 2);
    assert_eq!(client_count(ch, "SELECT count() FROM default.events FINAL WHERE team_id = 78"), 1);
    let rows = clickhouse_client(
        ch,
        "SELECT event, toString(uuid) AS uuid, team_id, distinct_id, toString(person_id) AS person_id, \
         toString(timestamp) AS timestamp, properties FROM default.events FINAL WHERE team_id = 77 \
         ORDER BY uuid FORMAT JSONEachRow",
    );
    let rows: Vec<Value> = rows.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (sent, label) in [(&negative, "negative"), (&positive, "positive")] {
        let uuid = generation_sentiment_uuid(sent);
        let row = rows.iter().find(|r| r["uuid"] == uuid.as_str()).unwrap_or_else(|| panic!("no row {uuid}: {rows:?}"));
        assert_eq!(row["event"], "$ai_sentiment");
        assert_eq!(as_i64(&row["team_id"]), 77);
        assert_eq!(row["distinct_id"], "user-interop");
        assert_eq!(row["person_id"], person.to_string().as_str());
        // The generation's time, at DateTime's second precision.
        assert_eq!(row["timestamp"], "2026-11-01 10:00:00");
        let p: Value = serde_json::from_str(row["properties"].as_str().expect("properties is a String column")).unwrap();
        assert_eq!(p["$ai_sentiment_label"], label, "{p}");
        assert_eq!(p["$ai_generation_event_uuid"], sent["uuid"], "{p}");
        assert_eq!(p["$ai_trace_id"], "trace-interop");
        assert_eq!(p["$ai_session_id"], "session-interop");
        assert_eq!(p["$ai_parent_id"], "span-interop");
        assert_eq!(p["$ai_sentiment_model"], "llma/vader-lexicon-sentiment");
        assert!(p["$ai_sentiment_plugin_version"].as_str().is_some_and(|v| !v.is_empty()), "{p}");
        let scores = &p["$ai_sentiment_scores"];
        let sum: f64 = ["negative", "neutral", "positive"].iter().map(|k| scores[*k].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "{p}");
        assert_eq!(p["$ai_sentiment_score"].as_f64(), scores[label].as_f64(), "{p}");
        assert_eq!(p["$ai_sentiment_messages"].as_array().map(Vec::len), Some(1), "{p}");
    }
}

// ---- heartbeat details of a running activity, from `temporal workflow describe` ----

#[test]
fn temporal_describe_shows_the_running_activitys_heartbeat_progress() {
    let stack = Stack::start();
    let _worker = stack.worker(&[]);
    const EVENTS: usize = 300;
    const MESSAGES: usize = 40;
    // Distinct texts everywhere, so that no cache makes the run too short
    // to watch.
    let events: Vec<Value> = (0..EVENTS)
        .map(|e| {
            let input: Vec<Value> = (0..MESSAGES)
                .map(|m| json!({"role": "user", "content": format!("event {e} turn {m}: the answer was wrong and I am annoyed")}))
                .collect();
            let mut ev = common::stack::event("x");
            ev["properties"]["$ai_input"] = Value::Array(input);
            ev
        })
        .collect();
    // `submit` (not a terminal here) reports its progress as plain lines.
    let dir = tempfile::tempdir().unwrap();
    let file = write_jsonl(dir.path(), "events.jsonl", &events);
    // ~1.7 MB of input in one workflow (under Temporal's 2 MiB), so one long activity.
    let args = ["submit", "--batch", "--batch-max-bytes", "1900000", "--progress-every", "1", file.to_str().unwrap()];
    let out = run_bin(&args, &stack.env(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "submit: {stderr}");
    // It streams its input, so it counts without a total.
    assert!(stderr.lines().any(|l| l.starts_with("progress: 1 workflows, ")), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("progress: 1 workflows, ") && l.contains("done in")), "{stderr}");
    let started: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(started["status"], "started", "{started}");
    let wf = started["workflow_id"].as_str().unwrap().to_string();

    // The SDK throttles heartbeats to the server (at most one per ~80% of
    // the 30 s heartbeat timeout after the first), so a long run shows the
    // first details and then later ones: watch until the workflow ends.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let d = stack.temporal.describe(&wf);
        if d["workflowExecutionInfo"]["status"] != "WORKFLOW_EXECUTION_STATUS_RUNNING" {
            break;
        }
        if let Some(pa) = d["pendingActivities"].as_array().and_then(|a| a.first()) {
            if let Some(details) = heartbeat_details(pa) {
                assert_eq!(pa["activityType"]["name"], "classify_sentiment_activity", "{pa}");
                assert_eq!(pa["state"], "PENDING_ACTIVITY_STATE_STARTED", "{pa}");
                assert_eq!(pa["attempt"], 1, "{pa}");
                assert!(pa["lastHeartbeatTime"].is_string(), "{pa}");
                if seen.last() != Some(&details) {
                    seen.push(details);
                }
            }
        }
        assert!(Instant::now() < deadline, "still running after 240 s: {d}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!seen.is_empty(), "no heartbeat details seen while the activity ran");
    for h in &seen {
        let n = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {h}"));
        assert_eq!(n("events_total"), EVENTS as u64, "{h}");
        assert_eq!(n("messages_total"), MESSAGES as u64, "{h}");
        assert!(n("event_index") < EVENTS as u64, "{h}");
        assert!((1..=MESSAGES as u64).contains(&n("message_index")), "{h}");
        // Every event before the current one is accounted for.
        assert_eq!(n("processed") + n("skipped") + n("failed"), n("event_index"), "{h}");
    }
    let key = |h: &Value| (h["event_index"].as_u64().unwrap(), h["message_index"].as_u64().unwrap());
    assert!(seen.windows(2).all(|w| key(&w[1]) > key(&w[0])), "progress goes forward: {seen:?}");

    assert_eq!(stack.wait_status(&wf, Duration::from_secs(240)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");
    assert_eq!(block(stack.sink().count_final(Some(42))).unwrap(), EVENTS as u64);
}

// ---- offline backfill: analyze --output clickhouse ----

fn analyze_into(ch: &ClickHouseServer, extra: &[&str]) -> std::process::Output {
    let samples = samples();
    let mut args = vec!["analyze", samples.to_str().unwrap(), "--output", "clickhouse"];
    args.extend_from_slice(extra);
    run_bin(&args, &[("CLICKHOUSE_URL", ch.url.as_str())], None)
}

fn migrate(ch: &ClickHouseServer) {
    let out = run_bin(&["migrate"], &[("CLICKHOUSE_URL", ch.url.as_str())], None);
    assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn analyze_writes_to_clickhouse_idempotently_with_plain_progress_lines() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    // The raw row count below must stay what was inserted: no background merge.
    clickhouse_client(&ch, "SYSTEM STOP MERGES default.events");
    // Batches of 4 rows: the 9 classified samples take three INSERTs.
    let out = analyze_into(&ch, &["--insert-batch-size", "4", "--progress-every", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one summary line");
    assert_eq!(summary["read"], 13, "{summary}");
    assert_eq!(summary["classified"], 9, "{summary}");
    assert_eq!(summary["written"], 9, "{summary}");
    assert_eq!(summary["skipped"], 4, "{summary}");
    assert_eq!(summary["skip_reasons"], json!({"no_user_messages": 4}), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["table"], "`default`.`events`", "{summary}");

    // Not a terminal: plain lines, no bar drawing.
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert_eq!(progress.len(), 3, "{stderr}");
    assert!(progress[0].starts_with("progress: 5/13 events (38%), ") && progress[0].contains(" events/s, ETA "), "{stderr}");
    assert!(progress[1].starts_with("progress: 10/13 events (76%), "), "{stderr}");
    assert!(progress[2].starts_with("progress: 13/13 events (100%), ") && progress[2].contains("done in"), "{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}'), "no terminal control in plain mode: {stderr:?}");
    assert!(stderr.contains("analyze: 13 events read, 9 classified, 9 written to `default`.`events`, skipped 4 (no_user_messages: 4), 0 failed"), "{stderr}");

    let expected: Vec<String> = std::fs::read_to_string(samples())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| ![4, 10, 11, 12].contains(&e["uuid"].as_str().unwrap()[34..].parse::<u32>().unwrap()))
        .map(|e| generation_sentiment_uuid(&e))
        .collect();
    assert_eq!(expected.len(), 9);
    let count_final = || client_count(&ch, "SELECT count() FROM default.events FINAL WHERE event = '$ai_sentiment'");
    assert_eq!(count_final(), 9);
    let stored = clickhouse_client(&ch, "SELECT toString(uuid) FROM default.events FINAL ORDER BY uuid");
    let mut stored: Vec<&str> = stored.lines().collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    stored.sort();
    want.sort();
    assert_eq!(stored, want);

    // A re-run writes the same uuids again: more physical rows, none more under FINAL.
    let out = analyze_into(&ch, &["--progress", "off"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("progress: "));
    assert_eq!(client_count(&ch, "SELECT count() FROM default.events"), 18);
    assert_eq!(count_final(), 9);
}

#[test]
fn analyze_into_a_missing_table_fails_clearly_before_classifying() {
    let ch = ClickHouseServer::start();
    let out = analyze_into(&ch, &["--clickhouse-table", "no_such_table"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`default`.`no_such_table` is not usable: run `llma-sentiment migrate` (0 rows written)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn clickhouse_going_down_mid_backfill_fails_with_the_rows_written_so_far() {
    let mut ch = ClickHouseServer::start();
    migrate(&ch);
    let lines: Vec<String> = std::fs::read_to_string(samples()).unwrap().lines().map(String::from).collect();
    let mut child = Command::new(bin())
        .args(["analyze", "-", "--output", "clickhouse", "--insert-batch-size", "2", "--flush-interval-secs", "3600"])
        .env("CLICKHOUSE_URL", &ch.url)
        .env("LLMA_SENTIMENT_CACHE_DIR", common::cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Lines 1 and 2 are both classified: one full batch, written.
    writeln!(stdin, "{}\n{}", lines[0], lines[1]).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client_count(&ch, "SELECT count() FROM default.events") < 2 {
        assert!(Instant::now() < deadline, "the first batch was never written");
        std::thread::sleep(Duration::from_millis(100));
    }
    ch.stop();
    // The rest holds 7 more classified events: the next batch fails.
    for l in &lines[2..] {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("error: writing to `default`.`events` failed: 2 rows were written before the failure, 2 classified rows were not"), "{stderr}");
    assert!(stderr.contains("re-running the backfill is safe"), "{stderr}");
    assert!(stderr.contains("ClickHouse insert failed"), "the sink's cause is shown: {stderr}");
}

// ---- a terminal: the indicatif bar ----

#[test]
fn analyze_on_a_terminal_draws_a_progress_bar() {
    let dir = tempfile::tempdir().unwrap();
    let stdout_file = dir.path().join("out.jsonl");
    let command = format!(
        "'{}' analyze '{}' > '{}'",
        bin().display(),
        samples().display(),
        stdout_file.display()
    );
    // `script` gives the command a pseudo-terminal as stderr.
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("LLMA_SENTIMENT_CACHE_DIR", common::cache_dir())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(!screen.contains("panicked"), "{screen}");
    // The bar: drawn and redrawn in place, with its count, rate and ETA.
    assert!(screen.contains("/13 events ("), "{screen:?}");
    assert!(screen.contains("ETA"), "{screen:?}");
    assert!(screen.contains('\r') || screen.contains("\u{1b}["), "bar redraws in place: {screen:?}");
    assert!(screen.contains("progress: 13/13 events (100%)"), "final line: {screen:?}");
    assert!(screen.contains("analyze: 13 events read, 9 classified"), "{screen:?}");
    // stdout (redirected) still holds exactly the 13 records.
    let records = std::fs::read_to_string(&stdout_file).unwrap();
    assert_eq!(records.lines().count(), 13, "{records}");
    for l in records.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}
