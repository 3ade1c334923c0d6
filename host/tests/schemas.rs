//! Both event schemas on real servers (Temporal dev server, ClickHouse 18.16,
//! the worker binary): `$ai_evaluation` rows as PostHog's UI reads them, both
//! schemas in one table, and trace / session sentiment read back from them.

mod common;

use std::time::Duration;

use common::services::run_bin;
use common::stack::{block, event, Stack};
use llma_sentiment::event::EventSchema;
use serde_json::{json, Value};
use uuid::Uuid;

fn profile(name: &str) -> String {
    common::repo_root().join("profiles").join(format!("{name}.toml")).display().to_string()
}

fn generation_uuid(e: &Value) -> Uuid {
    Uuid::parse_str(e["uuid"].as_str().unwrap()).unwrap()
}

fn all_completed(results: &[Value]) {
    for r in results {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["result"]["failed"], 0, "{r}");
    }
}

/// `llma-sentiment ARGS` against the stack's ClickHouse, as JSON.
fn read(stack: &Stack, args: &[&str]) -> Value {
    let out = run_bin(args, &stack.env(), None);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn an_evaluation_row_written_by_the_worker_has_every_property() {
    let stack = Stack::start();
    let config = profile("posthog-2026");
    let _worker = stack.worker(&[("LLMA_SENTIMENT_CONFIG", &config)]);
    let ev = event("this is broken and I hate it");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    all_completed(&stack.submit(std::slice::from_ref(&ev), false, true));

    let sink = stack.sink();
    let uuid = EventSchema::Evaluation.uuid_for(generation_uuid(&ev));
    assert_ne!(uuid, EventSchema::Sentiment.uuid_for(generation_uuid(&ev)));
    let rows = block(sink.fetch_final(&[uuid])).unwrap();
    assert_eq!(rows.len(), 1, "one evaluation row");
    assert_eq!(block(sink.count_raw(Some(42))).unwrap(), 1, "and nothing else");
    let row = &rows[0];
    assert_eq!(row.event, "$ai_evaluation");
    assert_eq!((row.team_id, row.distinct_id.as_str()), (42, "user-1"));
    assert_eq!(row.timestamp.to_rfc3339(), "2026-11-01T10:00:00+00:00");
    let p = &row.properties;
    for (key, want) in [
        ("$ai_evaluation_type", json!("online")),
        ("$ai_evaluation_runtime", json!("sentiment")),
        ("$ai_evaluation_result_type", json!("sentiment")),
        ("$ai_evaluation_id", json!("llma-sentiment")),
        ("$ai_evaluation_name", json!("Sentiment")),
        ("$ai_evaluation_reasoning", json!("Classified 1 user message(s) as negative")),
        ("$ai_target_event_id", json!(ev["uuid"])),
        ("$ai_target_event_type", json!("$ai_generation")),
        ("$ai_target_type", json!("generation_uuid")),
        ("$ai_trace_id", json!("trace-1")),
        ("$session_id", json!("session-1")),
        ("$ai_sentiment_label", json!("negative")),
        ("$ai_sentiment_message_count", json!(1)),
    ] {
        assert_eq!(p.get(key), Some(&want), "{key} in {}", row.properties_json);
    }
    let start = llma_sentiment::event::parse_timestamp(p["$ai_evaluation_start_time"].as_str().unwrap()).unwrap();
    assert!(start >= before && start <= chrono::Utc::now(), "{start}");
    let scores = &p["$ai_sentiment_scores"];
    let sum: f64 = ["negative", "neutral", "positive"].iter().map(|k| scores[*k].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3, "{scores}");
    assert_eq!(p["$ai_sentiment_score"], scores["negative"]);
    // max_messages = 1: the last user message, keyed by its index in $ai_input.
    let messages = p["$ai_sentiment_messages"].as_object().expect("messages keyed by index");
    assert_eq!(messages.keys().collect::<Vec<_>>(), vec!["3"]);
    let m = &messages["3"];
    assert_eq!(m["label"], "negative");
    assert_eq!(m["score"], scores["negative"], "one message: the mean is the message");
    assert_eq!(m["scores"], *scores);
    assert!(m.get("text").is_none(), "store_text is off by default");
}

#[test]
fn both_schemas_share_a_table_once_each_after_retries_and_trace_reads_the_latest() {
    let stack = Stack::start();
    let events: Vec<Value> =
        ["thanks, that is perfect", "this is broken and I hate it", "what time is it"].iter().map(|t| event(t)).collect();
    let fault = ("LLMA_SENTIMENT_FAULT_FAIL_FIRST_ATTEMPT", "true");
    let seed = stack.worker(&[fault]);
    all_completed(&stack.submit(&events, true, true));
    seed.terminate(Duration::from_secs(30));

    // On the seed's rows: every generation, both its user messages.
    let trace = read(&stack, &["trace", "trace-1"]);
    assert_eq!((trace["generation_count"].as_u64(), trace["message_count"].as_u64()), (Some(3), Some(6)), "{trace}");
    assert!(trace["generations"].as_array().unwrap().iter().all(|g| g["event"] == "$ai_sentiment"), "{trace}");

    // created_at has whole seconds: the re-run must be in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    let config = profile("posthog-2026");
    let posthog = stack.worker(&[fault, ("LLMA_SENTIMENT_CONFIG", &config)]);
    all_completed(&stack.submit(&events, true, true));
    posthog.terminate(Duration::from_secs(30));

    let sink = stack.sink();
    // Two schemas per generation; the retried attempts (the fault fails
    // every first attempt after its insert) found their rows stored and
    // wrote none again: one raw row per generation and schema.
    assert_eq!(block(sink.count_raw(Some(42))).unwrap(), 6);
    assert_eq!(block(sink.count_final(Some(42))).unwrap(), 6);
    for e in &events {
        for schema in [EventSchema::Sentiment, EventSchema::Evaluation] {
            let rows = block(sink.fetch_final(&[schema.uuid_for(generation_uuid(e))])).unwrap();
            assert_eq!(rows.len(), 1, "{schema:?} of {}", e["uuid"]);
            assert_eq!(rows[0].event, schema.event_name());
        }
    }

    // The latest event per generation wins: the evaluation rows, one message each.
    let args = ["--config", config.as_str(), "trace", "trace-1"];
    let trace = read(&stack, &args);
    assert_eq!((trace["generation_count"].as_u64(), trace["message_count"].as_u64()), (Some(3), Some(3)), "{trace}");
    let generations = trace["generations"].as_array().unwrap();
    assert!(generations.iter().all(|g| g["event"] == "$ai_evaluation"), "{trace}");
    let mut read_uuids: Vec<&str> = generations.iter().map(|g| g["generation_uuid"].as_str().unwrap()).collect();
    let mut sent: Vec<&str> = events.iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    read_uuids.sort();
    sent.sort();
    assert_eq!(read_uuids, sent);
    // The overall is the mean of the stored per-message scores ...
    let stored: Vec<Value> = events
        .iter()
        .map(|e| {
            let row = block(sink.fetch_final(&[EventSchema::Evaluation.uuid_for(generation_uuid(e))])).unwrap().remove(0);
            row.properties["$ai_sentiment_messages"].as_object().unwrap().values().next().unwrap()["scores"].clone()
        })
        .collect();
    for class in ["negative", "neutral", "positive"] {
        let mean = stored.iter().map(|s| s[class].as_f64().unwrap()).sum::<f64>() / 3.0;
        assert!((trace["scores"][class].as_f64().unwrap() - mean).abs() < 1e-6, "{class}: {trace}");
    }
    // ... labelled by the plugin's rule with the profile's margin, as `aggregate` does.
    let stdin = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(stdin.path(), Value::Array(stored).to_string()).unwrap();
    let out = run_bin(&["--config", &config, "aggregate"], &[], Some(stdin.path()));
    let aggregated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trace["label"], aggregated["label"], "{trace} vs {aggregated}");
    // The session holds the same generations (`$session_id` in the evaluation schema).
    let session = read(&stack, &["--config", &config, "session", "session-1", "--team-id", "42"]);
    assert_eq!((session["generation_count"].as_u64(), session["label"].clone()), (Some(3), trace["label"].clone()), "{session}");
    assert_eq!(read(&stack, &["trace", "no-such-trace"])["generation_count"], 0);
}
