//! End to end on real servers: Temporal dev server, ClickHouse 18.16, the
//! worker binary with the embedded default plugin.

mod common;

use std::time::{Duration, Instant};

use common::stack::{block, event, sentiment_uuid, Stack};
use serde_json::{json, Value};
use uuid::Uuid;

#[test]
fn a_workflow_started_by_the_temporal_cli_writes_its_row() {
    let stack = Stack::start();
    let _worker = stack.worker(&[]);
    let ev = event("this is broken and I hate it");
    let wf = format!("cli-{}", Uuid::new_v4());
    stack.temporal.cli(&[
        "workflow", "start", "--type", "llma-run-sentiment-classification", "--task-queue", &stack.queue,
        "--workflow-id", &wf, "--execution-timeout", "10m", "--input", &json!({"event_data": ev}).to_string(),
    ]);
    assert_eq!(stack.wait_status(&wf, Duration::from_secs(60)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");

    let history = stack.temporal.history(&wf);
    let started = history.iter().find(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED").unwrap();
    assert_eq!(started["workflowExecutionStartedEventAttributes"]["workflowExecutionTimeout"], "600s");
    let scheduled = history
        .iter()
        .find(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
        .expect("activity scheduled")["activityTaskScheduledEventAttributes"]
        .clone();
    assert_eq!(scheduled["activityType"]["name"], "classify_sentiment_activity");
    assert_eq!(scheduled["scheduleToCloseTimeout"], "300s");
    assert_eq!(scheduled["startToCloseTimeout"], "120s");
    assert_eq!(scheduled["heartbeatTimeout"], "30s");
    assert_eq!(scheduled["retryPolicy"]["initialInterval"], "2s");
    assert_eq!(scheduled["retryPolicy"]["maximumInterval"], "10s");
    assert_eq!(scheduled["retryPolicy"]["maximumAttempts"], 2);
    let completed = history.iter().find(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_COMPLETED").expect("activity completed");
    let summary = payload_json(&completed["activityTaskCompletedEventAttributes"]["result"]["payloads"][0]);
    assert_eq!((summary["processed"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!(summary["events"][0]["status"], "classified", "{summary}");
    assert_eq!(summary["events"][0]["sentiment_uuid"], sentiment_uuid(&ev).to_string(), "{summary}");

    let sink = stack.sink();
    let row = block(sink.fetch_final(&[sentiment_uuid(&ev)])).unwrap();
    assert_eq!(row.len(), 1, "one row for the generation");
    let row = &row[0];
    let p = &row.properties;
    assert_eq!(row.event, "$ai_sentiment");
    assert_eq!(row.team_id, 42);
    assert_eq!(row.distinct_id, "user-1");
    assert_eq!(row.timestamp.to_rfc3339(), "2026-11-01T10:00:00+00:00");
    assert_eq!(p["$ai_sentiment_label"], "negative");
    assert_eq!(p["$ai_generation_event_uuid"], ev["uuid"]);
    assert_eq!(p["$ai_trace_id"], "trace-1");
    assert_eq!(p["$ai_session_id"], "session-1");
    assert_eq!(p["$ai_parent_id"], "span-1");
    assert_eq!(p["$ai_sentiment_model"], "llma/vader-lexicon-sentiment");
    let messages = p["$ai_sentiment_messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["label"], "neutral");
    assert_eq!(messages[1]["label"], "negative");
    let scores = &p["$ai_sentiment_scores"];
    let sum: f64 = ["negative", "neutral", "positive"].iter().map(|k| scores[*k].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3);
    assert_eq!(p["$ai_sentiment_score"].as_f64().unwrap(), scores["negative"].as_f64().unwrap());
}

/// A `json/plain` payload of `temporal workflow show --output json`, which
/// shows it decoded or as `{metadata, data}` with base64 data.
fn payload_json(payload: &Value) -> Value {
    use base64::Engine;
    match payload.get("data").and_then(Value::as_str) {
        Some(data) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64 payload data");
            serde_json::from_slice(&bytes).expect("JSON payload")
        }
        None => payload.clone(),
    }
}

#[test]
fn a_batch_with_a_malformed_event_writes_the_others() {
    let stack = Stack::start();
    let _worker = stack.worker(&[]);
    let good: Vec<Value> = ["I love this, thank you!", "meh", "awful"].iter().map(|t| event(t)).collect();
    let mut batch = good.clone();
    batch.insert(1, json!({"event": "$ai_generation", "team_id": "not a number", "properties": {}}));
    let no_user = json!({"uuid": Uuid::new_v4().to_string(), "team_id": 42, "distinct_id": "u",
        "properties": {"$ai_input": [{"role": "assistant", "content": "hi"}]}});
    batch.push(no_user);
    let results = stack.submit(&batch, true, true);
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["processed"], 3);
    assert_eq!(r["result"]["failed"], 1);
    assert_eq!(r["result"]["skipped"], 1);
    assert_eq!(r["result"]["skip_reasons"]["no_user_messages"], 1);
    let sink = stack.sink();
    let uuids: Vec<Uuid> = good.iter().map(sentiment_uuid).collect();
    assert_eq!(block(sink.fetch_final(&uuids)).unwrap().len(), 3);
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 3);
}

/// What producers send that strict parsers refuse: a line that is not UTF-8
/// (reported by line number; the others still start) and a lone surrogate
/// escape, which reaches the worker as it was read (submit forwards lines
/// unchanged) and is classified as U+FFFD. `--batch` splits the lines into
/// workflows under the byte bound.
#[test]
fn bad_input_lines_do_not_stop_submit_and_lone_surrogates_are_classified() {
    let stack = Stack::start();
    let _worker = stack.worker(&[]);
    let good: Vec<Value> = (0..6).map(|i| event(&format!("review {i}: I love this, thank you!"))).collect();
    let surrogate = event("PLACEHOLDER").to_string().replace("PLACEHOLDER", "\\ud800 I hate this");
    let surrogate_event: Value = llma_sentiment::jsonl::from_str(&surrogate).unwrap();
    let mut input = Vec::new();
    for (i, e) in good.iter().enumerate() {
        input.extend_from_slice(e.to_string().as_bytes());
        input.push(b'\n');
        if i == 1 {
            input.extend_from_slice(b"{\"uuid\": \"caf\xe9\"}\n");
            input.extend_from_slice(surrogate.as_bytes());
            input.push(b'\n');
        }
    }
    // Each event line is ~450 bytes: at most two per workflow.
    let results = stack.submit_raw(&input, &["--batch", "--batch-max-bytes", "1000", "--wait"]);
    let bad: Vec<&Value> = results.iter().filter(|r| r.get("line").is_some()).collect();
    assert_eq!(bad.len(), 1, "{results:?}");
    assert_eq!(bad[0]["line"], 3);
    assert!(bad[0]["error"].as_str().unwrap().starts_with("line 3: not UTF-8"), "{results:?}");
    let workflows: Vec<&Value> = results.iter().filter(|r| r.get("workflow_id").is_some()).collect();
    assert!(workflows.len() >= 4, "7 events in workflows of at most 2: {results:?}");
    assert!(workflows.iter().all(|r| r["status"] == "completed"), "{results:?}");
    let processed: u64 = workflows.iter().map(|r| r["result"]["processed"].as_u64().unwrap()).sum();
    assert_eq!(processed, 7, "{results:?}");
    let row = block(stack.sink().fetch_final(&[sentiment_uuid(&surrogate_event)])).unwrap();
    assert_eq!(row.len(), 1, "the event with a lone surrogate was written");
    assert_eq!(row[0].properties["$ai_sentiment_label"], "negative");
}

#[test]
fn a_retried_activity_leaves_one_event_per_generation_and_heartbeats() {
    let stack = Stack::start();
    // Background merges would collapse the duplicate rows this test counts.
    stack.stop_merges();
    let _worker = stack.worker(&[("LLMA_SENTIMENT_FAULT_FAIL_FIRST_ATTEMPT", "true")]);
    let events: Vec<Value> = (0..5).map(|i| event(&format!("message number {i} is great"))).collect();
    let started = stack.submit(&events, true, false);
    let wf = started[0]["workflow_id"].as_str().unwrap().to_string();
    // Between attempt 1 (failed after its insert) and attempt 2 Temporal waits
    // 2 s; the pending activity then shows attempt 1's heartbeat details.
    let deadline = Instant::now() + Duration::from_secs(60);
    let details = loop {
        let d = stack.temporal.describe(&wf);
        if let Some(pa) = d["pendingActivities"].as_array().and_then(|a| a.first()) {
            if pa["heartbeatDetails"].is_object() || pa["heartbeatDetails"].is_array() {
                break pa["heartbeatDetails"].clone();
            }
        }
        assert!(Instant::now() < deadline, "no heartbeat details seen: {d}");
        assert_ne!(d["workflowExecutionInfo"]["status"], "WORKFLOW_EXECUTION_STATUS_COMPLETED", "completed before a heartbeat was seen");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = details.to_string();
    for key in ["event_index", "events_total", "message_index", "messages_total"] {
        assert!(text.contains(key), "heartbeat details lack {key}: {text}");
    }
    assert_eq!(stack.wait_status(&wf, Duration::from_secs(60)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");
    let history = stack.temporal.history(&wf);
    let started_attempt = history
        .iter()
        .find(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED")
        .map(|e| e["activityTaskStartedEventAttributes"]["attempt"].clone());
    assert_eq!(started_attempt, Some(json!(2)), "the activity ran twice");
    let sink = stack.sink();
    // Attempt 1 inserted every event; attempt 2 found them stored and wrote
    // none again (merges are stopped: a second insert would show here).
    assert_eq!(block(sink.count_raw(Some(42))).unwrap(), 5, "raw rows");
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 5);
}

#[test]
fn clickhouse_down_during_a_batch_then_back_loses_and_duplicates_nothing() {
    let mut stack = Stack::start();
    let worker = stack.worker(&[]);
    let events: Vec<Value> = (0..20).map(|i| event(&format!("review {i}: terrible and slow"))).collect();
    stack.ch.stop();
    let started = stack.submit(&events, true, false);
    let wf = started[0]["workflow_id"].as_str().unwrap().to_string();
    // The insert must have failed against the stopped server, and be retrying, before it comes back.
    let insert_retries = |log: &str| {
        common::ops::json_lines(log)
            .iter()
            .filter(|l| l["message"] == "clickhouse request failed; retrying" && l["op"] == "insert")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while insert_retries(&worker.log_text()) == 0 {
        assert!(Instant::now() < deadline, "no failed insert attempt seen:\n{}", worker.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    stack.ch.restart();
    assert_eq!(stack.wait_status(&wf, Duration::from_secs(120)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");
    let log = worker.log_text();
    assert!(insert_retries(&log) >= 1);
    let history = stack.temporal.history(&wf);
    let attempts = history.iter().filter(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED").count();
    assert_eq!(attempts, 1, "the sink's retries rode out the outage inside one activity attempt");
    let sink = stack.sink();
    let uuids: Vec<Uuid> = events.iter().map(sentiment_uuid).collect();
    assert_eq!(block(sink.fetch_final(&uuids)).unwrap().len(), 20, "no event lost");
    // Raw rows: the failed attempts never reached the server, so nothing was written twice.
    assert_eq!(block(sink.count_raw(Some(42))).unwrap(), 20, "no event duplicated");
}

#[test]
fn sigterm_during_a_batch_finishes_the_work_and_exits_cleanly() {
    let stack = Stack::start();
    let worker = stack.worker(&[]);
    let long_input: Vec<Value> = (0..40).map(|i| json!({"role": "user", "content": format!("turn {i}: the answer was wrong and I am annoyed")})).collect();
    let events: Vec<Value> = (0..400)
        .map(|_| {
            let mut e = event("x");
            e["properties"]["$ai_input"] = Value::Array(long_input.clone());
            e
        })
        .collect();
    // ~1.2 MB of input: one workflow (under Temporal's 2 MiB), so its one
    // activity is in flight when the worker is stopped.
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    let started = stack.submit_raw(lines.join("\n").as_bytes(), &["--batch", "--batch-max-bytes", "1900000"]);
    assert_eq!(started.len(), 1, "{started:?}");
    let wf = started[0]["workflow_id"].as_str().unwrap().to_string();
    // Wait until the activity is running (its first heartbeat), then stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = stack.temporal.describe(&wf);
        if d["pendingActivities"].as_array().and_then(|a| a.first()).is_some_and(|pa| !pa["heartbeatDetails"].is_null()) {
            break;
        }
        assert!(Instant::now() < deadline, "activity never heartbeated");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = worker.terminate(Duration::from_secs(60));
    assert!(status.success(), "worker exit status {status}");
    // The in-flight activity finished within the grace period and its
    // events were written before the process exited ...
    let sink = stack.sink();
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 400, "every classified event was written before exit");
    // ... and the workflow completes once a worker is back to run its last
    // workflow task, without writing anything twice.
    let _second = stack.worker(&[]);
    assert_eq!(stack.wait_status(&wf, Duration::from_secs(60)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 400);
}

/// A worker serving the hostile plugin (it needs no model: an empty bundle
/// directory, kept alive with the worker).
fn hostile_worker(stack: &Stack, extra_env: &[(&str, &str)]) -> (tempfile::TempDir, common::services::WorkerProcess) {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let hostile = common::hostile_wasm();
    let mut env = vec![("LLMA_SENTIMENT_PLUGIN", hostile.to_str().unwrap()), ("LLMA_SENTIMENT_MODEL_DIR", model.path().to_str().unwrap())];
    env.extend_from_slice(extra_env);
    let worker = stack.worker(&env);
    (model, worker)
}

/// A message that traps the sandbox fails attempt 1 (retryably, the instance
/// replaced); attempt 2 skips that message, classifies the rest and writes
/// the event once. Nothing is retried beyond the policy's 2 attempts.
#[test]
fn a_message_that_traps_is_retried_once_then_skipped() {
    let stack = Stack::start();
    let (_model, _worker) = hostile_worker(&stack, &[("LLMA_SENTIMENT_LIMITS_METERING", "fuel"), ("LLMA_SENTIMENT_LIMITS_FUEL_BASE", "50000000"), ("LLMA_SENTIMENT_LIMITS_FUEL_PER_TOKEN", "0")]);
    // The hostile plugin reads "a|b" as two user messages; "spin" loops forever.
    let mut mixed = event("unused");
    mixed["properties"]["$ai_input"] = json!("hello|spin|fine");
    let mut hopeless = event("unused");
    hopeless["properties"]["$ai_input"] = json!("spin");
    let results = stack.submit(&[mixed.clone(), hopeless.clone()], false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");
    let outcome = |e: &Value| {
        results
            .iter()
            .find_map(|r| r["result"]["events"].as_array()?.iter().find(|o| o["generation_uuid"] == e["uuid"]).cloned())
            .unwrap_or_else(|| panic!("no outcome for {}: {results:?}", e["uuid"]))
    };
    assert_eq!(outcome(&mixed)["status"], "classified", "{results:?}");
    assert_eq!(outcome(&hopeless)["status"], "skipped", "{results:?}");
    assert_eq!(outcome(&hopeless)["reason"], "plugin_trapped", "{results:?}");
    for r in &results {
        let wf = r["workflow_id"].as_str().unwrap();
        let history = stack.temporal.history(wf);
        let attempts: Vec<u64> = history
            .iter()
            .filter(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED")
            .filter_map(|e| e["activityTaskStartedEventAttributes"]["attempt"].as_u64())
            .collect();
        assert_eq!(attempts.iter().max(), Some(&2), "one retry, no more: {wf} {attempts:?}");
    }
    let rows = block(stack.sink().fetch_final(&[sentiment_uuid(&mixed), sentiment_uuid(&hopeless)])).unwrap();
    assert_eq!(rows.len(), 1, "only the generation with a classifiable message has a row");
    assert_eq!(rows[0].properties["$ai_sentiment_skipped_messages"], 1);
    assert_eq!(rows[0].properties["$ai_sentiment_messages"].as_array().map(Vec::len), Some(2));
}

/// A plugin call whose own budget (10 min) outlasts the attempt
/// (start-to-close 10 s) stops at the attempt's deadline: each attempt ends
/// with the activity's own answer, never with Temporal timing it out, and on
/// the last one the event is missed (best effort) so the workflow completes.
#[test]
fn a_plugin_call_never_outlives_its_activity_attempt() {
    let stack = Stack::start();
    let (_model, _worker) = hostile_worker(
        &stack,
        &[
            ("LLMA_SENTIMENT_LIMITS_CALL_DEADLINE_BASE_MS", "600000"),
            ("LLMA_SENTIMENT_LIMITS_FUEL_BASE", "1000000000000000"),
            ("LLMA_SENTIMENT_LIMITS_FUEL_PER_TOKEN", "0"),
            ("LLMA_SENTIMENT_WORKFLOW_START_TO_CLOSE_SECS", "10"),
        ],
    );
    let mut spin = event("unused");
    spin["properties"]["$ai_input"] = json!("spin");
    let started = std::time::Instant::now();
    let results = stack.submit(&[spin.clone()], false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");
    // It had its retries and cannot be classified within an attempt: missed.
    let events = results[0]["result"]["events"].as_array().unwrap();
    assert_eq!(events[0]["status"], "missed", "{results:?}");
    assert_eq!(results[0]["result"]["missed"], 1, "{results:?}");
    let wf = results[0]["workflow_id"].as_str().unwrap();
    let history = stack.temporal.history(wf);
    let types: Vec<&str> = history.iter().filter_map(|e| e["eventType"].as_str()).collect();
    assert!(!types.contains(&"EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT"), "an attempt ran into start-to-close: {types:?}");
    // A retried attempt is not an event of its own: the last attempt's start
    // records the attempt number and why the one before it failed.
    let started_attempt = history
        .iter()
        .find(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED")
        .map(|e| &e["activityTaskStartedEventAttributes"])
        .expect("the activity started");
    assert_eq!(started_attempt["attempt"].as_u64(), Some(2), "{started_attempt}");
    let before = &started_attempt["lastFailure"];
    assert!(before.get("timeoutFailureInfo").is_none(), "attempt 1 was timed out by Temporal: {before}");
    assert!(before["message"].as_str().is_some_and(|m| m.contains("deadline")), "attempt 1 failed for another reason: {before}");
    // Two attempts of at most 10 s each, and the retry backoff (generous: loaded machines).
    assert!(started.elapsed() < std::time::Duration::from_secs(90), "took {:?}", started.elapsed());
}

/// A plugin call longer than the heartbeat timeout (2 s here; the hostile
/// plugin computes for 7 s, well inside the call's own deadline) keeps its
/// attempt alive: the task heartbeats on a timer while the call runs, and the
/// watchdog counts the live call as progress (the only activity slot is held
/// for the whole call, which would otherwise read as stuck and exit the
/// worker). The workflow completes on attempt 1 with no timeout in its
/// history, and the row is written once.
#[test]
fn a_plugin_call_longer_than_the_heartbeat_timeout_completes_on_its_first_attempt() {
    let stack = Stack::start();
    let (_model, mut worker) = hostile_worker(
        &stack,
        &[("LLMA_SENTIMENT_WORKFLOW_HEARTBEAT_TIMEOUT_SECS", "2"), ("LLMA_SENTIMENT_WORKER_MAX_CONCURRENT_ACTIVITIES", "1")],
    );
    let mut slow = event("unused");
    slow["properties"]["$ai_input"] = json!("busy:7000");
    let results = stack.submit(&[slow.clone()], false, true);
    assert!(results.iter().all(|r| r["status"] == "completed"), "{results:?}");
    assert_eq!(results[0]["result"]["events"][0]["status"], "classified", "{results:?}");
    let wf = results[0]["workflow_id"].as_str().unwrap();
    let history = stack.temporal.history(wf);
    let types: Vec<&str> = history.iter().filter_map(|e| e["eventType"].as_str()).collect();
    assert!(!types.contains(&"EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT"), "an attempt was timed out: {types:?}");
    let attempts: Vec<u64> = history
        .iter()
        .filter(|e| e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED")
        .filter_map(|e| e["activityTaskStartedEventAttributes"]["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, [1], "{types:?}");
    assert_eq!(block(stack.sink().count_raw(Some(42))).unwrap(), 1, "one raw row");
    assert!(worker.wait_exit(Duration::from_millis(100)).is_none(), "the watchdog exited a working worker: {}", worker.log_text());
}

/// A batch longer than one attempt: 24 generations of ~0.4 s each against a
/// start-to-close of 8 s (4 s of it for classification) goes on in further
/// rounds, each a new activity, until every generation is classified and
/// written once (raw rows, merges stopped; no attempt timed out). The
/// history of those rounds replays against the workflow code; the same
/// history with one round's activity renamed does not (the replay check can
/// fail).
#[test]
fn a_batch_longer_than_an_attempt_finishes_in_rounds_and_replays() {
    let stack = Stack::start();
    stack.stop_merges();
    let (_model, _worker) = hostile_worker(&stack, &[("LLMA_SENTIMENT_WORKFLOW_START_TO_CLOSE_SECS", "8")]);
    // Distinct texts: the result cache must not make the later ones free.
    let events: Vec<Value> = (0..24)
        .map(|i| {
            let mut e = event("unused");
            e["properties"]["$ai_input"] = json!(format!("busy:{}", 400 + i));
            e
        })
        .collect();
    let results = stack.submit(&events, true, true);
    assert_eq!(results.len(), 1, "one batch workflow: {results:?}");
    assert_eq!(results[0]["status"], "completed", "{results:?}");
    let summary = &results[0]["result"];
    assert_eq!((summary["processed"].as_u64(), summary.get("missed"), summary.get("resume_at")), (Some(24), None, None), "{summary}");
    let indices: Vec<u64> = summary["events"].as_array().unwrap().iter().filter_map(|e| e["index"].as_u64()).collect();
    assert_eq!(indices, (0..24).collect::<Vec<u64>>(), "every event once, in order");

    let wf = results[0]["workflow_id"].as_str().unwrap();
    let history = stack.temporal.history(wf);
    let types: Vec<&str> = history.iter().filter_map(|e| e["eventType"].as_str()).collect();
    let rounds = types.iter().filter(|t| **t == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED").count();
    assert!(rounds >= 2, "one activity would have held the batch: {types:?}");
    assert!(!types.contains(&"EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT"), "{types:?}");
    let sink = stack.sink();
    assert_eq!(block(sink.count_raw(Some(42))).unwrap(), 24, "raw rows");
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 24);

    use llma_sentiment::worker::SentimentWorkflow;
    use temporalio_common::protos::temporal::api::common::v1::ActivityType;
    use temporalio_common::protos::temporal::api::history::v1::{history_event::Attributes, History, HistoryEvent};
    let temporal = llma_sentiment::worker::TemporalConfig {
        address: stack.temporal.address.clone(),
        namespace: "default".into(),
        task_queue: stack.queue.clone(),
        ..Default::default()
    };
    let events: Vec<HistoryEvent> = block(async {
        let client = llma_sentiment::worker::connect(&temporal).await.unwrap();
        client.get_workflow_handle::<SentimentWorkflow>(wf).fetch_history(Default::default()).into_events().await.unwrap()
    });
    let replay = |events: Vec<HistoryEvent>| {
        use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
        let mut options = WorkflowReplayerOptions::new().build();
        options.register_workflow::<SentimentWorkflow>().unwrap();
        let replayer = WorkflowReplayer::new(options).unwrap();
        block(replayer.replay_workflow(History { events }.into()))
    };
    replay(events.clone()).unwrap_or_else(|e| panic!("the history of {rounds} rounds does not replay: {e}"));
    let mut tampered = events;
    let second = tampered
        .iter_mut()
        .filter_map(|e| match &mut e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => Some(a),
            _ => None,
        })
        .nth(1)
        .unwrap();
    second.activity_type = Some(ActivityType { name: "another_activity".into() });
    assert!(replay(tampered).is_err(), "a history the code did not make replays");
}

/// The stop's bound (worker/stop.rs): grace + 10 s of writes + 5 s to exit,
/// plus slack for a loaded machine (the process start and a log flush).
fn stop_bound(grace_secs: u64) -> Duration {
    Duration::from_secs(grace_secs + 10 + 5 + 5)
}

/// SIGTERM while a plugin call runs (12 s, past the 1 s grace period): the
/// worker cancels it, exits within its stop budget, and the event is
/// classified by another worker after Temporal's retry, written once (raw
/// rows).
#[test]
fn sigterm_during_a_long_call_exits_within_the_budget_and_loses_nothing() {
    let stack = Stack::start();
    stack.stop_merges();
    let (_model, worker) = hostile_worker(&stack, &[("LLMA_SENTIMENT_WORKER_GRACE_PERIOD_SECS", "1")]);
    let mut slow = event("unused");
    slow["properties"]["$ai_input"] = json!("busy:12000");
    let started = stack.submit(&[slow.clone()], false, false);
    let wf = started[0]["workflow_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.temporal.describe(&wf)["pendingActivities"][0]["state"] != "PENDING_ACTIVITY_STATE_STARTED" {
        assert!(Instant::now() < deadline, "the activity never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    worker.terminate(Duration::from_secs(120));
    let took = stopping.elapsed();
    assert!(took <= stop_bound(1), "the worker took {took:?} to stop");
    let (_model2, _second) = hostile_worker(&stack, &[]);
    assert_eq!(stack.wait_status(&wf, Duration::from_secs(120)), "WORKFLOW_EXECUTION_STATUS_COMPLETED");
    assert_eq!(block(stack.sink().count_raw(Some(42))).unwrap(), 1, "the event's row, once");
}

/// SIGTERM while a plugin activation is validating (its `load` computes for
/// a minute): the activation is abandoned and the worker exits within its
/// stop budget.
#[test]
fn sigterm_during_an_activation_exits_within_the_budget() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("hostile.wasm");
    std::fs::copy(common::hostile_wasm(), &plugin).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::copy(common::model("default").join(f), model.join(f)).unwrap();
    }
    std::fs::write(model.join("hostile-load"), "busy:60000").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}");
    let token = "a-token-of-sixteen-or-more";
    let allowed = dir.path().to_str().unwrap();
    let admin = [
        ("LLMA_SENTIMENT_WORKER_ADMIN_ADDR", addr.as_str()),
        ("LLMA_SENTIMENT_WORKER_ADMIN_TOKEN", token),
        ("LLMA_SENTIMENT_WORKER_ADMIN_ALLOWED_DIRS", allowed),
        ("LLMA_SENTIMENT_WORKER_GRACE_PERIOD_SECS", "1"),
    ];
    let mut worker = stack.worker(&admin);
    worker.wait_for_log("worker polling", Duration::from_secs(120));
    let client_env = [("LLMA_SENTIMENT_ADMIN_URL", url.as_str()), ("LLMA_SENTIMENT_WORKER_ADMIN_TOKEN", token)];
    let activate = {
        let mut cmd = std::process::Command::new(common::services::bin());
        cmd.args(["plugin", "activate", plugin.to_str().unwrap(), "--with-model", model.to_str().unwrap()]);
        cmd.envs(client_env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = common::services::run_bin(&["plugin", "status"], &client_env, None);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if status["activating"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the activation never started: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopping = Instant::now();
    let status = worker.terminate(Duration::from_secs(120));
    let took = stopping.elapsed();
    assert!(took <= stop_bound(1), "the worker took {took:?} to stop ({status})");
    let mut activate = activate;
    let _ = activate.kill();
    let _ = activate.wait();
}

/// No snapshot prepared (`plugin.snapshots = use-existing`, the default, and
/// no `plugin prepare`): the first start serves from instances that loaded
/// the model and makes the snapshot in the background; the next start maps
/// it, with no manual step.
#[test]
fn a_first_start_makes_the_snapshot_in_the_background_for_the_next() {
    let stack = Stack::start();
    let cache = tempfile::tempdir().unwrap();
    // The canonical name wins over the alias the test harness sets.
    let env = [("LLMA_SENTIMENT_PLUGIN_CACHE_DIR", cache.path().to_str().unwrap())];
    let mut first = stack.worker(&env);
    assert!(first.log_text().contains(r#""from_snapshot":false"#), "{}", first.log_text());
    let results = stack.submit(&[event("this is broken and I hate it")], false, true);
    assert_eq!(results[0]["status"], "completed", "served while the snapshot is made: {results:?}");
    first.wait_for_log("snapshot made in the background", Duration::from_secs(600));
    first.terminate(Duration::from_secs(60));
    let second = stack.worker(&env);
    assert!(second.log_text().contains(r#""from_snapshot":true"#), "the next start did not map the snapshot: {}", second.log_text());
}

/// With `worker.instances` unset, a memory budget with no room for a second
/// instance (1 MiB) bounds the pool to one (one per core otherwise), and the
/// log says what one instance measured and why; the worker serves.
#[test]
fn a_memory_budget_bounds_the_instances() {
    let stack = Stack::start();
    let worker = stack.worker(&[("LLMA_SENTIMENT_WORKER_MEMORY_BUDGET_MB", "1")]);
    let log = worker.log_text();
    let line = log.lines().find(|l| l.contains("plugin instances that fit in the memory budget")).unwrap_or_else(|| panic!("{log}"));
    let fields: Value = serde_json::from_str(line).unwrap();
    assert_eq!(fields["instances"], 1, "{line}");
    assert_eq!(fields["wanted"], std::thread::available_parallelism().unwrap().get(), "{line}");
    assert_eq!(fields["budget_from"], "worker.memory_budget_mb", "{line}");
    assert!(fields["per_instance_mb"].as_u64().is_some_and(|mb| mb >= 1), "{line}");
    let results = stack.submit(&[event("thanks, that was helpful")], false, true);
    assert_eq!(results[0]["status"], "completed", "{results:?}");
}

