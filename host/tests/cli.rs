//! The standalone CLI contract, with the embedded default plugin and model,
//! run from a directory that holds none of the project's files.

mod common;

use serde_json::{json, Value};

use common::{cli, cli_env};

fn cli_bytes(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    cli_env(args, &[], stdin)
}

fn lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn extract_prints_indexed_user_messages() {
    let input = json!([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "tool_result", "content": "42"}]},
        {"role": "user", "content": [{"type": "tool_result", "content": "only a tool"}]},
        {"role": "user", "content": "bye"}
    ]);
    let (ok, out, err) = cli(&["extract"], &input.to_string());
    assert!(ok, "{err}");
    assert_eq!(lines(&out), vec![json!([{"index": 1, "text": "hello 42"}, {"index": 3, "text": "bye"}])]);
}

#[test]
fn extract_rejects_invalid_json_with_a_clear_error() {
    let (ok, _out, err) = cli(&["extract"], "{not json");
    assert!(!ok);
    assert!(err.contains("not valid JSON"), "{err}");
}

#[test]
fn classify_prints_one_line_per_text() {
    let (ok, out, err) = cli(&["classify", "I love this, thank you!", "this is broken and I hate it", "what time is the meeting"], "");
    assert!(ok, "{err}");
    let rows = lines(&out);
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["positive", "negative", "neutral"]);
    for r in &rows {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["text", "label", "score", "scores"]);
        let s = &r["scores"];
        assert_eq!(r["score"], s[r["label"].as_str().unwrap()]);
    }
    assert_eq!(rows[0]["text"], "I love this, thank you!");
}

#[test]
fn analyze_prints_events_skips_and_errors_per_line() {
    let gen_uuid = "0190b6a5-1111-7000-8000-000000000001";
    let good = json!({"uuid": gen_uuid, "event": "$ai_generation", "team_id": 7, "distinct_id": "d1",
        "timestamp": "2026-11-01T10:00:00Z", "person_id": "0190b6a5-2222-7000-8000-000000000002",
        "properties": {"$ai_trace_id": "t1", "$ai_session_id": "s1", "$ai_generation_id": "g1",
            "$ai_input": [{"role": "user", "content": "I love it"}, {"role": "user", "content": "but this part is awful"}]}});
    let as_string = json!({"uuid": "0190b6a5-1111-7000-8000-000000000003", "team_id": 7, "distinct_id": "d1",
        "properties": json!({"$ai_input": "thank you so much"}).to_string()});
    let no_input = json!({"uuid": "0190b6a5-1111-7000-8000-000000000004", "team_id": 7, "distinct_id": "d1", "properties": {}});
    let no_user = json!({"uuid": "0190b6a5-1111-7000-8000-000000000005", "team_id": 7, "distinct_id": "d1",
        "properties": {"$ai_input": [{"role": "assistant", "content": "hi"}]}});
    let input = [good.to_string(), "{broken".into(), as_string.to_string(), String::new(), no_input.to_string(),
        no_user.to_string(), json!({"team_id": 1}).to_string()]
    .join("\n");
    let (ok, out, err) = cli(&["analyze"], &input);
    assert!(ok, "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 6, "{out}");

    let e = &rows[0];
    assert_eq!(e["event"], "$ai_sentiment");
    assert_eq!(e["team_id"], 7);
    assert_eq!(e["distinct_id"], "d1");
    assert_eq!(e["person_id"], "0190b6a5-2222-7000-8000-000000000002");
    assert_eq!(e["timestamp"], "2026-11-01T10:00:00.000000Z");
    let uuid = uuid::Uuid::parse_str(e["uuid"].as_str().unwrap()).unwrap();
    assert_eq!(uuid.get_version_num(), 5);
    let p = &e["properties"];
    assert_eq!(p["$ai_trace_id"], "t1");
    assert_eq!(p["$ai_session_id"], "s1");
    assert_eq!(p["$ai_parent_id"], "g1");
    assert_eq!(p["$ai_generation_event_uuid"], gen_uuid);
    assert_eq!(p["$ai_sentiment_label"], "negative");
    assert_eq!(p["$ai_sentiment_model"], "llma/vader-lexicon-sentiment");
    let msgs = p["$ai_sentiment_messages"].as_array().unwrap();
    assert_eq!(msgs.iter().map(|m| m["label"].as_str().unwrap()).collect::<Vec<_>>(), ["positive", "negative"]);
    assert_eq!(msgs[0].as_object().unwrap().len(), 2, "each message is {{label, score}}");
    assert_eq!(p["$ai_sentiment_score"], msgs[1]["score"]);
    assert_eq!(p["$ai_sentiment_scores"]["negative"], msgs[1]["score"]);

    assert_eq!(rows[1]["line"], 2);
    assert!(rows[1]["error"].as_str().unwrap().starts_with("line 2:"));
    assert_eq!(rows[2]["properties"]["$ai_sentiment_label"], "positive");
    // No $ai_generation_id / $ai_span_id: the parent is the generation itself.
    assert_eq!(rows[2]["properties"]["$ai_parent_id"], "0190b6a5-1111-7000-8000-000000000003");
    assert_eq!(rows[3], json!({"skipped": true, "skip_reason": "no_ai_input", "generation_uuid": "0190b6a5-1111-7000-8000-000000000004"}));
    assert_eq!(rows[4], json!({"skipped": true, "skip_reason": "no_user_messages", "generation_uuid": "0190b6a5-1111-7000-8000-000000000005"}));
    assert_eq!(rows[5]["line"], 7);
    assert!(rows[5]["error"].as_str().unwrap().contains("uuid"), "{}", rows[5]);
}

#[test]
fn analyze_of_the_shipped_samples_gives_one_line_per_event() {
    let samples = std::fs::read_to_string(common::repo().join("samples/events.jsonl")).unwrap();
    let (ok, out, err) = cli(&["analyze", "-"], &samples);
    assert!(ok, "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), samples.lines().filter(|l| !l.trim().is_empty()).count());
    assert!(rows.iter().any(|r| r["event"] == "$ai_sentiment"));
    assert!(rows.iter().any(|r| r["skip_reason"] == "no_user_messages"));
    assert!(rows.iter().all(|r| r.get("error").is_none()), "{out}");
}

#[test]
fn an_explicit_plugin_and_model_override_the_embedded_default() {
    let plugin = common::plugin_wasm();
    let model = common::model("roberta-tiny");
    let (ok, out, err) = cli(&["--plugin", plugin.to_str().unwrap(), "--model", model.to_str().unwrap(), "info"], "");
    assert!(ok, "{err}");
    let info = &lines(&out)[0];
    assert_eq!(info["model"], "llma/roberta-tiny-random");
    assert_eq!(info["max_tokens"], 512);
    let (ok, _, err) = cli(&["--model", "/nonexistent", "classify", "x"], "");
    assert!(!ok);
    assert!(err.contains("/nonexistent"), "{err}");
}

/// Producers send what this test sends: a line that is not UTF-8 (an error
/// for that line; the run goes on) and lone UTF-16 surrogate escapes, which
/// JavaScript emits when it cuts a string inside an emoji (read as U+FFFD,
/// the event classified), in the event and in properties sent as a string.
#[test]
fn analyze_reports_a_non_utf8_line_and_reads_lone_surrogates() {
    let event = |uuid: &str, properties: &str| {
        format!(r#"{{"uuid":"{uuid}","event":"$ai_generation","team_id":1,"distinct_id":"d","properties":{properties}}}"#)
    };
    let mut input = Vec::new();
    input.extend_from_slice(event("0195a3b2-7c1e-7a10-8f00-000000000001", r#"{"$ai_input":[{"role":"user","content":"I love this, thank you!"}]}"#).as_bytes());
    input.extend_from_slice(b"\n{\"uuid\": \"caf\xe9\"}\n");
    input.extend_from_slice(event("0195a3b2-7c1e-7a10-8f00-000000000003", r#"{"$ai_input":[{"role":"user","content":"\ud800 I hate this"}]}"#).as_bytes());
    input.push(b'\n');
    let as_string = r#""{\"$ai_input\":[{\"role\":\"user\",\"content\":\"\\ud83d this is broken and I hate it\"}]}""#;
    input.extend_from_slice(event("0195a3b2-7c1e-7a10-8f00-000000000004", as_string).as_bytes());
    input.push(b'\n');
    let (ok, out, err) = cli_bytes(&["analyze", "--progress", "off"], &input);
    assert!(ok, "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 4, "{out}");
    assert_eq!(rows[0]["properties"]["$ai_sentiment_label"], "positive", "{out}");
    assert_eq!(rows[1]["line"], 2, "{out}");
    assert!(rows[1]["error"].as_str().unwrap().starts_with("line 2: not UTF-8"), "{out}");
    for row in &rows[2..] {
        assert_eq!(row["event"], "$ai_sentiment", "{out}");
        assert_eq!(row["properties"]["$ai_sentiment_label"], "negative", "{out}");
    }
    assert!(err.contains("analyze: 4 events read, 3 classified, skipped 0, 1 failed"), "{err}");
}

#[test]
fn extract_reads_a_lone_surrogate_as_a_replacement_character() {
    let (ok, out, err) = cli(&["extract"], r#"[{"role":"user","content":"\ud800 I hate this"}]"#);
    assert!(ok, "{err}");
    assert_eq!(lines(&out), vec![json!([{"index": 0, "text": "\u{FFFD} I hate this"}])]);
}

/// `analyze` has no retries, so its run is its last attempt: a message that
/// traps the plugin is skipped (as on the worker's last attempt) instead of
/// failing the line.
#[test]
fn analyze_skips_messages_that_trap_the_plugin() {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let event = |n: u32, ai_input: &str| {
        json!({"uuid": format!("0190b6a5-2222-7000-8000-00000000000{n}"), "team_id": 1, "distinct_id": "d",
               "properties": {"$ai_input": ai_input}})
        .to_string()
    };
    let input = format!("{}\n{}\n", event(1, "hello|spin|fine"), event(2, "spin|recurse"));
    let hostile = common::hostile_wasm();
    let (ok, out, err) = cli_env(
        &["--plugin", hostile.to_str().unwrap(), "--model", model.path().to_str().unwrap(), "analyze", "-"],
        &[("LLMA_SENTIMENT_LIMITS_METERING", "fuel"), ("LLMA_SENTIMENT_LIMITS_FUEL_BASE", "50000000"), ("LLMA_SENTIMENT_LIMITS_FUEL_PER_TOKEN", "0")],
        input.as_bytes(),
    );
    assert!(ok, "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["properties"]["$ai_sentiment_skipped_messages"], 1, "{}", rows[0]);
    assert_eq!(rows[0]["properties"]["$ai_sentiment_messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        rows[1],
        json!({"skipped": true, "skip_reason": "plugin_trapped", "generation_uuid": "0190b6a5-2222-7000-8000-000000000002"})
    );
    assert!(err.contains("2 events read, 1 classified, skipped 1 (plugin_trapped: 1), 0 failed"), "{err}");
}
