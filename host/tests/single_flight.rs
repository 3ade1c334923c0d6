//! One classification per distinct text at a time: a generation that meets a
//! text another task is classifying waits for that task's result (and keeps
//! heartbeating, and stops on a cancel), or classifies the text itself when
//! that task gives up. The "other task" here is the test holding the claim,
//! so every case is deterministic.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use llma_sentiment::engine::{InstanceSlot, Label, Limits, MessageResult, Scores};
use llma_sentiment::event::GenerationEvent;
use llma_sentiment::pipeline::{self, Analysis, PipelineError, PipelineOptions};
use llma_sentiment::cache::{CacheScope, ResultCache};
use llma_sentiment::single_flight::Claim;
use serde_json::json;

/// The hostile plugin answers every ordinary text neutral 0.5; "a|b" is two messages.
fn setup() -> (llma_sentiment::engine::PluginEngine, InstanceSlot, CacheScope, tempfile::TempDir) {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let engine = common::engine(Limits::default());
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    let mut slot = InstanceSlot::new(plugin.clone());
    let scope = CacheScope::of(&plugin, slot.get().unwrap().info());
    (engine, slot, scope, model)
}

fn generation(ai_input: &str) -> GenerationEvent {
    let v = json!({"uuid": uuid::Uuid::new_v4().to_string(), "team_id": 1, "distinct_id": "d", "properties": {"$ai_input": ai_input}});
    GenerationEvent::parse(&v).unwrap()
}

/// A result no plugin call here produces: positive 0.875.
fn sentinel() -> MessageResult {
    MessageResult { label: Label::Positive, score: 0.875, scores: Scores { negative: 0.0625, neutral: 0.0625, positive: 0.875 } }
}

fn scores(a: &Analysis) -> Vec<f64> {
    match a {
        Analysis::Sentiment(e) => serde_json::to_value(&e.properties).unwrap()["$ai_sentiment_messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["score"].as_f64().unwrap())
            .collect(),
        other => panic!("expected a sentiment event, got {other:?}"),
    }
}

type Task = std::thread::JoinHandle<Result<Analysis, PipelineError>>;

/// Another task analysing "a|b" on `slot`; its progress reports arrive on the receiver.
fn spawn_task(mut slot: InstanceSlot, cache: &Arc<ResultCache>) -> (Task, std::sync::mpsc::Receiver<usize>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let cache = cache.clone();
    let task = std::thread::spawn(move || {
        pipeline::analyze_cached(&mut slot, &generation("a|b"), &PipelineOptions::default(), Some(&cache), |p| {
            let _ = tx.send(p.done);
            ControlFlow::Continue(())
        })
    });
    (task, rx)
}

#[test]
fn a_text_in_flight_is_waited_for_not_classified_again() {
    let (_e, slot, scope, _m) = setup();
    let cache = Arc::new(ResultCache::default());
    let Claim::Lead(leader) = cache.claim(&scope, "a") else { panic!("the test leads \"a\"") };
    let (task, beats_rx) = spawn_task(slot, &cache);
    // "b" is ours to classify; then the task waits for "a", heartbeating.
    let mut beats_while_waiting = 0;
    while beats_while_waiting < 3 {
        let done = beats_rx.recv_timeout(Duration::from_secs(60)).expect("the waiting task heartbeats");
        if done == 1 {
            beats_while_waiting += 1;
        }
    }
    assert!(!task.is_finished(), "the task must wait for the text in flight");
    cache.insert(&scope, "a", sentinel());
    leader.publish(sentinel());
    let analysis = task.join().unwrap().unwrap();
    // "a" carries the leader's result, "b" the plugin's.
    assert_eq!(scores(&analysis), vec![0.875, 0.5]);
    assert_eq!(cache.deduplicated_in_flight(), 1);
}

#[test]
fn a_cancel_stops_the_wait() {
    let (_e, mut slot, scope, _m) = setup();
    let cache = ResultCache::default();
    let Claim::Lead(_leader) = cache.claim(&scope, "a") else { panic!() };
    let mut beats = 0;
    let out = pipeline::analyze_cached(&mut slot, &generation("a|b"), &PipelineOptions::default(), Some(&cache), |_| {
        beats += 1;
        if beats > 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    assert!(matches!(out, Err(PipelineError::Cancelled)), "{out:?}");
    assert_eq!(cache.deduplicated_in_flight(), 0);
}

#[test]
fn a_text_whose_leader_gives_up_is_classified_by_the_follower() {
    let (_e, slot, scope, _m) = setup();
    let cache = Arc::new(ResultCache::default());
    let Claim::Lead(leader) = cache.claim(&scope, "a") else { panic!() };
    let (task, beats_rx) = spawn_task(slot, &cache);
    while beats_rx.recv_timeout(Duration::from_secs(60)).expect("heartbeats") != 1 {}
    // The leader failed (trapped, cancelled): nothing is published.
    drop(leader);
    let analysis = task.join().unwrap().unwrap();
    assert_eq!(scores(&analysis), vec![0.5, 0.5]);
    assert_eq!(cache.deduplicated_in_flight(), 0);
    // And it is cached for the next task.
    assert!(cache.lookup(&scope, &["a"], None).results[0].is_some());
}

/// A leader that never finishes does not make a follower miss its own
/// deadline: with 1.5 s left and a classify budget of 1 s per call, the
/// follower waits about half a second, then classifies the text itself.
#[test]
fn a_follower_stops_waiting_in_time_to_classify_the_text_itself() {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let limits = Limits { call_deadline_base: Duration::from_millis(500), call_deadline_per_text: Duration::from_millis(500), ..Limits::default() };
    let engine = common::engine(limits);
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    let mut slot = InstanceSlot::new(plugin.clone());
    let scope = CacheScope::of(&plugin, slot.get().unwrap().info());
    let cache = ResultCache::default();
    let cache = Arc::new(cache);
    let Claim::Lead(_stuck) = cache.claim(&scope, "a") else { panic!() };
    let started = std::time::Instant::now();
    slot.set_deadline(Some(started + Duration::from_millis(1500)));
    let (tx, rx) = std::sync::mpsc::channel();
    let task_cache = cache.clone();
    std::thread::spawn(move || {
        let out = pipeline::analyze_cached(&mut slot, &generation("a|b"), &PipelineOptions::default(), Some(&task_cache), |_| ControlFlow::Continue(()));
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(30)).expect("the follower still waits for a leader that never finishes");
    let took = started.elapsed();
    assert_eq!(scores(&out.unwrap()), vec![0.5, 0.5], "the follower classified \"a\" itself");
    assert!(took < Duration::from_millis(1500), "it waited past its own deadline: {took:?}");
    assert_eq!(cache.deduplicated_in_flight(), 0);
}

