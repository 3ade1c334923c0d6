//! PostHog-2026 options through the WIT contract: the plugin (1.1) applies
//! them; a plugin built against 1.0 still serves the seed's rules and is
//! refused at activation when asked for an option it cannot honour.

mod common;

use std::sync::Arc;
use std::time::Duration;

use llma_sentiment::engine::{
    AggregationRule, Contract, Extraction, Label, Labelling, Limits, MessageResult, PluginOptions, Scores, Truncation,
};
use llma_sentiment::registry::{Registry, SwapError};
use serde_json::json;

fn posthog() -> PluginOptions {
    PluginOptions {
        extraction: Extraction { max_messages: 1, max_chars: 1000, truncation: Truncation::HeadTail(300) },
        labelling: Labelling { neutral_margin: 0.15, rule: AggregationRule::Mean },
    }
}

/// The default bundle for `wasm`; for the hostile plugin, which labels
/// every ordinary text neutral, without the canaries that would refuse it.
fn registry(wasm: &std::path::Path, options: PluginOptions) -> Result<Registry, SwapError> {
    let engine = Arc::new(common::engine(Limits::default()));
    let mut model = common::model("default");
    if wasm == common::hostile_wasm() {
        let bare = common::cache_dir().join("default-without-canaries");
        std::fs::create_dir_all(&bare).unwrap();
        for f in ["model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"] {
            std::fs::copy(model.join(f), bare.join(f)).unwrap();
        }
        model = bare;
    }
    let plugin = common::load(&engine, &wasm.to_path_buf(), &model);
    Registry::with_options(engine, plugin, None, Duration::ZERO, options)
}

fn result(negative: f32, neutral: f32, positive: f32) -> MessageResult {
    let scores = Scores { negative, neutral, positive };
    let (label, score) = [(Label::Negative, negative), (Label::Neutral, neutral), (Label::Positive, positive)]
        .into_iter()
        .fold((Label::Negative, f32::MIN), |best, c| if c.1 > best.1 { c } else { best });
    MessageResult { label, score, scores }
}

#[test]
fn a_1_0_plugin_loads_and_serves_the_seed_rules() {
    let registry = registry(&common::hostile_wasm(), PluginOptions::default()).expect("a 1.0 plugin serves the seed's options");
    let version = registry.current();
    assert_eq!(version.plugin.contract, Contract::V1_0);
    assert_eq!(version.info.interface_version, "1.0.0");
    let mut slot = llma_sentiment::engine::InstanceSlot::new(version.plugin.clone());
    let instance = slot.get().unwrap();
    let messages = instance.extract("\"a|b\"", Extraction::default()).unwrap();
    assert_eq!(messages.len(), 2);
    let results = instance.classify(&["a".into(), "b".into()]).unwrap();
    let overall = instance.aggregate(&results, Labelling::default()).unwrap().expect("an overall result");
    assert_eq!(overall.label, Label::Neutral);
    assert_eq!(overall.messages.len(), 2);
    // Asked directly (past activation) for a 1.1 option: a typed error, not the seed's rule.
    let err = instance.aggregate(&results, posthog().labelling).unwrap_err();
    assert!(err.to_string().contains("need(s) interface 1.1"), "{err}");
    let err = instance.extract("\"a\"", posthog().extraction).unwrap_err();
    assert!(err.to_string().contains("head-tail"), "{err}");
}

#[test]
fn asking_a_1_0_plugin_for_any_1_1_option_fails_at_activation() {
    let seed = PluginOptions::default();
    let cases = [
        ("head-tail", PluginOptions { extraction: posthog().extraction, ..seed }),
        ("neutral_margin 0.15", PluginOptions { labelling: Labelling { neutral_margin: 0.15, ..seed.labelling }, ..seed }),
        ("aggregation rule mean", PluginOptions { labelling: Labelling { rule: AggregationRule::Mean, ..seed.labelling }, ..seed }),
    ];
    for (needle, options) in cases {
        match registry(&common::hostile_wasm(), options) {
            Err(e @ SwapError::UnsupportedOptions { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle) && msg.contains("1.1") && msg.contains("exports 1.0"), "{msg}");
            }
            Err(e) => panic!("{needle}: wrong error {e}"),
            Ok(_) => panic!("{needle}: a 1.0 plugin was activated for an option it cannot honour"),
        }
    }
    // Options 1.0 has (max_messages, tail max_chars, head_chars 0) are fine.
    let last_message = PluginOptions {
        extraction: Extraction { max_messages: 1, max_chars: 1000, truncation: Truncation::HeadTail(0) },
        ..seed
    };
    registry(&common::hostile_wasm(), last_message).expect("1.0 options on a 1.0 plugin");
}

#[test]
fn the_plugin_exports_1_1_and_applies_the_options() {
    let registry = registry(&common::plugin_wasm(), posthog()).expect("the plugin serves PostHog's options");
    let version = registry.current();
    assert_eq!(version.plugin.contract, Contract::V1_1);
    assert_eq!(version.info.interface_version, "1.1.0");
    let mut slot = llma_sentiment::engine::InstanceSlot::new(version.plugin.clone());
    let instance = slot.get().unwrap();

    let long: String = "é".repeat(300) + &"x".repeat(1000) + &"😀".repeat(695);
    let input = json!([{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": long}]);
    let messages = instance.extract(&input.to_string(), posthog().extraction).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].index, 2);
    assert_eq!(messages[0].text, format!("{}\n...\n{}", "é".repeat(300), "😀".repeat(695)));

    // Margin and mean in the plugin: means 0.3 / 0.3 / 0.4 are within 0.15 of neutral.
    let results = [result(0.5, 0.2, 0.3), result(0.1, 0.4, 0.5)];
    let overall = instance.aggregate(&results, posthog().labelling).unwrap().unwrap();
    assert_eq!(overall.label, Label::Neutral);
    assert!((overall.score - 0.3).abs() < 1e-6, "{overall:?}");
    assert!((overall.scores.positive - 0.4).abs() < 1e-6, "{overall:?}");
    // Per message: 0.5 - 0.2 > 0.15 stays negative; 0.5 - 0.4 <= 0.15 becomes neutral (score 0.4).
    let labels: Vec<(Label, f32)> = overall.messages.iter().map(|m| (m.label, m.score)).collect();
    assert_eq!(labels, vec![(Label::Negative, 0.5), (Label::Neutral, 0.4)]);
    // The seed's options through the same 1.1 calls: the worst label, unchanged.
    let seed = instance.aggregate(&results, Labelling::default()).unwrap().unwrap();
    assert_eq!((seed.label, seed.score), (Label::Negative, 0.5));
}

#[test]
fn options_the_plugin_refuses_fail_at_activation_with_its_reason() {
    let no_tail = PluginOptions {
        extraction: Extraction { max_messages: 1, max_chars: 100, truncation: Truncation::HeadTail(95) },
        ..PluginOptions::default()
    };
    let bad_margin = PluginOptions { labelling: Labelling { neutral_margin: 1.5, rule: AggregationRule::Worst }, ..PluginOptions::default() };
    for (needle, options) in [("head_chars 95", no_tail), ("margin 1.5", bad_margin)] {
        match registry(&common::plugin_wasm(), options) {
            Err(e @ SwapError::UnsupportedOptions { .. }) => assert!(e.to_string().contains(needle), "{e}"),
            Err(e) => panic!("{needle}: wrong error {e}"),
            Ok(_) => panic!("{needle}: activated with options the plugin refuses"),
        }
    }
}

// ---------------------------------------------------------------- the command line

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn aggregate_prints_the_plugins_result_under_the_given_rule_and_margin() {
    let scores = r#"[{"negative":0.5,"neutral":0.2,"positive":0.3},{"negative":0.1,"neutral":0.4,"positive":0.5}]"#;
    let (ok, out, err) = common::cli(&["aggregate", "--rule", "mean", "--neutral-margin", "0.15"], scores);
    assert!(ok, "{err}");
    let o = &json_lines(&out)[0];
    assert_eq!(o["label"], "neutral", "{o}");
    assert!((o["score"].as_f64().unwrap() - 0.3).abs() < 1e-6, "{o}");
    assert!((o["scores"]["positive"].as_f64().unwrap() - 0.4).abs() < 1e-6, "{o}");
    let labels: Vec<&str> = o["messages"].as_array().unwrap().iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["negative", "neutral"]);
    // The seed's rule by default: the worst label, its most confident message.
    let (ok, out, err) = common::cli(&["aggregate"], scores);
    assert!(ok, "{err}");
    let o = &json_lines(&out)[0];
    assert_eq!((o["label"].as_str(), o["score"].as_f64()), (Some("negative"), Some(0.5)), "{o}");
    // Nothing to aggregate, and input that is not scores.
    assert_eq!(common::cli(&["aggregate"], "[]").1.trim(), "null");
    let (ok, _, err) = common::cli(&["aggregate"], r#"[{"negative":0.5}]"#);
    assert!(!ok && err.contains("entry 0: `neutral`"), "{err}");
    let (ok, _, err) = common::cli(&["aggregate", "--neutral-margin", "2"], scores);
    assert!(!ok && err.contains("margin 2"), "{err}");
}

#[test]
fn extract_takes_the_head_tail_flags() {
    let input = json!([{"role": "user", "content": "first"}, {"role": "user", "content": "0123456789abcdefghijXYZ"}]);
    let args = ["extract", "--max-messages", "1", "--max-chars", "16", "--truncation", "head-tail", "--head-chars", "4"];
    let (ok, out, err) = common::cli(&args, &input.to_string());
    assert!(ok, "{err}");
    assert_eq!(json_lines(&out)[0], json!([{"index": 1, "text": "0123\n...\nghijXYZ"}]));
    // A 1.0 plugin is refused before it runs, naming what it lacks.
    let hostile = common::hostile_wasm();
    let model = common::model("default");
    let mut with_hostile = vec!["--plugin", hostile.to_str().unwrap(), "--model", model.to_str().unwrap()];
    with_hostile.extend(args);
    let (ok, _, err) = common::cli(&with_hostile, &input.to_string());
    assert!(!ok, "a 1.0 plugin ran a head-tail extraction");
    assert!(err.contains("head-tail") && err.contains("exports 1.0"), "{err}");
}

#[test]
fn submit_dry_run_prints_each_rollout_decision_without_temporal() {
    // Buckets from Python's hashlib: ...0001 -> 51.19, ...0002 -> 39.56.
    let events = [
        json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 1, "distinct_id": "d"}),
        json!({"uuid": "0190b6a5-0000-7000-8000-000000000002", "team_id": 1, "distinct_id": "d"}),
        json!({"team_id": 1, "distinct_id": "no uuid"}),
    ];
    let input: String = events.iter().map(|e| format!("{e}\n")).collect::<String>() + "not json\n";
    // A Temporal address nothing listens on: a dry run never dials it.
    let args = ["submit", "--dry-run", "--rollout-percent", "50", "--temporal-address", "127.0.0.1:9"];
    let (ok, out, err) = common::cli(&args, &input);
    assert!(ok, "{err}");
    let rows = json_lines(&out);
    assert_eq!(rows[0], json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "start": false}));
    assert_eq!(rows[1], json!({"uuid": "0190b6a5-0000-7000-8000-000000000002", "start": true}));
    assert_eq!(rows[2], json!({"uuid": null, "start": false}));
    assert_eq!(rows[3]["line"], 4);
    assert!(err.contains("1 would start, 2 not in the 50% rollout, 1 unreadable"), "{err}");
    let (ok, out, _) = common::cli(&["submit", "--dry-run", "--rollout-percent", "51.2"], &input);
    assert!(ok);
    assert_eq!(json_lines(&out)[0]["start"], true, "51.19 < 51.2");
    let (ok, _, err) = common::cli(&["submit", "--dry-run", "--rollout-percent", "101"], &input);
    assert!(!ok && err.contains("0..=100"), "{err}");
}

#[test]
fn the_profiles_load_from_config_alone_and_the_readme_shows_posthogs() {
    use llma_sentiment::config::{load, Config, EventSchema, Sources};
    let dir = common::repo_root().join("profiles");
    let posthog_toml = std::fs::read_to_string(dir.join("posthog-2026.toml")).unwrap();
    let readme = std::fs::read_to_string(common::repo_root().join("docs/operations.md")).unwrap();
    assert!(readme.contains(&posthog_toml), "README must show profiles/posthog-2026.toml as it is");
    let c = load(&Sources { file: Some(dir.join("posthog-2026.toml")), ..Default::default() }).unwrap();
    assert_eq!(c.pipeline.plugin_options(), posthog());
    assert_eq!(c.pipeline.event_schema, EventSchema::Evaluation);
    let seed = load(&Sources { file: Some(dir.join("seed.toml")), ..Default::default() }).unwrap();
    assert_eq!(seed, Config::default(), "the seed profile is the defaults");
    assert_eq!(seed.pipeline.plugin_options(), PluginOptions::default());
}

// ---------------------------------------------------------------- the pipeline

use llma_sentiment::event::{EventOptions, EventSchema, GenerationEvent};
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use llma_sentiment::cache::ResultCache;

/// An event's properties as they are stored.
fn props(e: &llma_sentiment::event::SentimentEvent) -> serde_json::Value {
    serde_json::to_value(&e.properties).unwrap()
}

fn generation(ai_input: serde_json::Value) -> GenerationEvent {
    GenerationEvent::parse(&json!({
        "uuid": "0190b6a5-0000-7000-8000-00000000aaaa", "team_id": 7, "distinct_id": "d", "timestamp": "2026-11-01T10:00:00Z",
        "properties": {"$ai_trace_id": "t", "$ai_session_id": "s", "$ai_input": ai_input}
    }))
    .unwrap()
}

fn run(slot: &mut llma_sentiment::engine::InstanceSlot, g: &GenerationEvent, options: &PipelineOptions, cache: Option<&ResultCache>) -> Analysis {
    pipeline::analyze_cached(slot, g, options, cache, |_| std::ops::ControlFlow::Continue(())).expect("pipeline runs")
}

fn event_of(a: Analysis) -> llma_sentiment::event::SentimentEvent {
    match a {
        Analysis::Sentiment(e) => *e,
        Analysis::Skipped(r) => panic!("skipped: {r:?}"),
    }
}

fn slot_of_the_plugin() -> (llma_sentiment::engine::PluginEngine, llma_sentiment::engine::InstanceSlot) {
    let engine = common::engine(Limits::default());
    let plugin = common::load(&engine, &common::plugin_wasm(), &common::model("default"));
    (engine, llma_sentiment::engine::InstanceSlot::new(plugin))
}

#[test]
fn label_options_share_cached_results_without_their_labels_and_a_new_cut_is_a_new_key() {
    let (_engine, mut slot) = slot_of_the_plugin();
    let long = format!("{} but the support was awful and slow", "the weather report said it might rain later ".repeat(40));
    let g = generation(json!([{"role": "user", "content": long}, {"role": "user", "content": "thanks, that works"}]));
    let cache = ResultCache::new(1 << 20);
    let seed = PipelineOptions::default();
    let first = event_of(run(&mut slot, &g, &seed, Some(&cache)));
    assert_eq!((cache.stats().misses, cache.stats().hits), (2, 0));

    // Label options: every text is found in the cache, and the labels are
    // the ones the same options give without any cache.
    let margin = 0.5;
    let wide = PipelineOptions {
        plugin: PluginOptions { labelling: Labelling { neutral_margin: margin, rule: AggregationRule::Mean }, ..seed.plugin },
        events: EventOptions { schema: EventSchema::Evaluation, ..EventOptions::default() },
        ..seed.clone()
    };
    let cached = event_of(run(&mut slot, &g, &wide, Some(&cache)));
    assert_eq!((cache.stats().misses, cache.stats().hits), (2, 2), "label options do not change the cache key");
    let uncached = event_of(run(&mut slot, &g, &wide, None));
    let without_time = |e: &llma_sentiment::event::SentimentEvent| {
        let mut p = props(e);
        p.as_object_mut().unwrap().remove("$ai_evaluation_start_time");
        p
    };
    assert_eq!(without_time(&cached), without_time(&uncached));
    // Each message labelled by the margin rule from its own scores, not the seed's label.
    for (i, m) in props(&cached)["$ai_sentiment_messages"].as_object().unwrap() {
        let p = |k: &str| m["scores"][k].as_f64().unwrap();
        let (top, p_top) = [("negative", p("negative")), ("neutral", p("neutral")), ("positive", p("positive"))]
            .into_iter()
            .fold(("negative", f64::MIN), |b, c| if c.1 > b.1 { c } else { b });
        let gap = ((p_top - p("neutral")) * 1e4).round() / 1e4;
        let want = if top != "neutral" && gap <= margin { "neutral" } else { top };
        assert_eq!(m["label"], want, "message {i}: {m}");
    }
    assert_eq!(props(&first)["$ai_sentiment_messages"].as_array().map(Vec::len), Some(2));

    // A head+tail cut changes the long text: one new key; the short text is the same.
    let cut = PipelineOptions {
        plugin: PluginOptions {
            extraction: Extraction { truncation: Truncation::HeadTail(300), max_chars: 1000, ..seed.plugin.extraction },
            ..seed.plugin
        },
        ..seed.clone()
    };
    run(&mut slot, &g, &cut, Some(&cache));
    assert_eq!((cache.stats().misses, cache.stats().hits), (3, 3));
}

#[test]
fn emit_empty_writes_the_defaulted_event_and_store_text_keeps_the_cut_text() {
    let (_engine, mut slot) = slot_of_the_plugin();
    let no_user = generation(json!([{"role": "assistant", "content": "hello"}]));
    assert!(matches!(run(&mut slot, &no_user, &PipelineOptions::default(), None), Analysis::Skipped(_)));
    let evaluation = EventOptions { schema: EventSchema::Evaluation, emit_empty: true, store_text: true, ..EventOptions::default() };
    let options = PipelineOptions { events: evaluation.clone(), ..PipelineOptions::default() };
    let empty = event_of(run(&mut slot, &no_user, &options, None));
    assert_eq!(empty.event, "$ai_evaluation");
    let p = &props(&empty);
    assert_eq!((p["$ai_sentiment_label"].as_str(), p["$ai_sentiment_score"].as_f64()), (Some("neutral"), Some(0.0)));
    assert_eq!(p["$ai_sentiment_message_count"], 0);
    assert_eq!(p["$ai_sentiment_messages"], json!({}));
    assert_eq!(p["$ai_evaluation_reasoning"], "Classified 0 user message(s) as neutral");
    // `$ai_input` missing entirely: the same default; another event kind: still a skip.
    let mut no_input = no_user.clone();
    no_input.ai_input = None;
    assert!(matches!(run(&mut slot, &no_input, &options, None), Analysis::Sentiment(_)));
    let mut other = no_user.clone();
    other.event = "$pageview".into();
    assert!(matches!(run(&mut slot, &other, &options, None), Analysis::Skipped(_)));

    let g = generation(json!([{"role": "user", "content": "first"}, {"role": "user", "content": "x".repeat(1500)}]));
    let posthog_cut = PipelineOptions { plugin: posthog(), events: evaluation, ..PipelineOptions::default() };
    let e = event_of(run(&mut slot, &g, &posthog_cut, None));
    let p = props(&e);
    let m = &p["$ai_sentiment_messages"]["1"];
    assert_eq!(m["text"], format!("{}\n...\n{}", "x".repeat(300), "x".repeat(695)));
    let scores = &m["scores"];
    assert!(scores["negative"].is_number() && scores["neutral"].is_number() && scores["positive"].is_number(), "{m}");
    // Off by default: no text anywhere in the event.
    let plain = event_of(run(&mut slot, &g, &PipelineOptions::default(), None));
    assert!(!serde_json::to_string(&plain).unwrap().contains("xxxx"), "{plain:?}");
}
