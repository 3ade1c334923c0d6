//! The engine's limits and sandbox, against a plugin that misbehaves on purpose.

mod common;

use std::time::{Duration, Instant};

use std::ops::ControlFlow;

use llma_sentiment::engine::{EngineError, InstanceSlot, Limits, TrapKind};
use llma_sentiment::event::{GenerationEvent, SkipReason};
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use serde_json::json;

fn slot_with(limits: Limits) -> (llma_sentiment::engine::PluginEngine, InstanceSlot, tempfile::TempDir) {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let engine = common::engine(limits);
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    (engine, InstanceSlot::new(plugin), model)
}

fn classify_one(slot: &mut InstanceSlot, text: &str) -> Result<f32, EngineError> {
    slot.get().expect("instance").classify(&[text.to_string()]).map(|r| r[0].score)
}

/// `llma_sentiment_traps_total{kind=...}` of this process's metrics.
fn traps_counted(kind: TrapKind) -> f64 {
    let text = llma_sentiment::metrics::render();
    let prefix = format!("llma_sentiment_traps_total{{kind=\"{}\"}} ", kind.as_str());
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().expect("a number"))
}

fn assert_recovers(slot: &mut InstanceSlot) {
    let score = classify_one(slot, "hello").expect("a fresh instance serves the next call");
    assert_eq!(score, 0.5);
}

#[test]
fn a_spinning_guest_is_stopped_by_the_epoch_deadline() {
    let limits = Limits {
        call_deadline_base: Duration::from_millis(300),
        call_deadline_per_text: Duration::ZERO,
        fuel_base: u64::MAX / 2,
        fuel_per_token: 0,
        ..Limits::default()
    };
    let (_e, mut slot, _m) = slot_with(limits);
    let started = Instant::now();
    let err = classify_one(&mut slot, "spin").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::Deadline), "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Tests of this binary run in parallel and share the counters: at least ours.
    assert!(traps_counted(TrapKind::Deadline) >= 1.0);
    assert_recovers(&mut slot);
}

#[test]
fn a_spinning_guest_is_stopped_by_fuel() {
    let limits = Limits { fuel_base: 50_000_000, fuel_per_token: 0, ..Limits::default() };
    let (_e, mut slot, _m) = slot_with(limits);
    let err = classify_one(&mut slot, "spin").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::OutOfFuel), "{err}");
    assert!(traps_counted(TrapKind::OutOfFuel) >= 1.0);
    assert_recovers(&mut slot);
}

#[test]
fn a_poisoned_instance_refuses_calls_until_replaced() {
    let limits = Limits { fuel_base: 50_000_000, fuel_per_token: 0, ..Limits::default() };
    let (_e, slot, _m) = slot_with(limits);
    let mut instance = slot.plugin().instantiate().unwrap();
    assert!(instance.classify(&["spin".into()]).is_err());
    assert_eq!(instance.poisoned(), Some(TrapKind::OutOfFuel));
    let err = instance.classify(&["hello".into()]).unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
}

#[test]
fn unbounded_recursion_is_a_stack_overflow_trap() {
    let (_e, mut slot, _m) = slot_with(Limits::default());
    let err = classify_one(&mut slot, "recurse").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::StackOverflow), "{err}");
    assert_recovers(&mut slot);
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let (_e, mut slot, _m) = slot_with(limits);
    let err = classify_one(&mut slot, "alloc").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::MemoryLimit), "{err}");
    assert_recovers(&mut slot);
}

#[test]
fn a_guest_panic_is_a_trap_not_a_crash() {
    let (_e, mut slot, _m) = slot_with(Limits::default());
    let err = classify_one(&mut slot, "panic").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::Panic), "{err}");
    assert_recovers(&mut slot);
}

#[test]
fn escapes_from_the_sandbox_are_denied() {
    let (_e, mut slot, model) = slot_with(Limits::default());
    for attempt in ["socket", "read:/etc/passwd", "read:/model/../../../../etc/passwd", "read:/tmp", "write-model", "env"] {
        match classify_one(&mut slot, attempt) {
            Err(EngineError::Plugin { error, .. }) => assert!(error.to_string().contains("denied"), "{attempt}: {error}"),
            other => panic!("{attempt}: the sandbox did not hold: {other:?}"),
        }
    }
    assert!(!model.path().join("pwned").exists());
    // Reading the model directory itself is allowed.
    assert!(matches!(classify_one(&mut slot, "read:/model/config.json"), Ok(1.0)));
}

#[test]
fn a_trap_in_load_is_a_typed_error() {
    let limits = Limits { load_fuel: 50_000_000, ..Limits::default() };
    let (_e, slot, model) = slot_with(limits);
    std::fs::write(model.path().join("hostile-load"), "spin").unwrap();
    match slot.plugin().instantiate() {
        Err(EngineError::Trapped { call: "load", kind: TrapKind::OutOfFuel, .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a spinning load must not succeed"),
    }
}

/// The hostile plugin reads `$ai_input` "a|b|c" as three user messages.
fn generation(ai_input: &str) -> GenerationEvent {
    let v = json!({"uuid": uuid::Uuid::new_v4().to_string(), "team_id": 1, "distinct_id": "d", "properties": {"$ai_input": ai_input}});
    GenerationEvent::parse(&v).expect("a well-formed event")
}

#[test]
fn on_the_last_attempt_a_message_that_traps_is_skipped_and_the_others_are_classified() {
    let limits = Limits { fuel_base: 50_000_000, fuel_per_token: 0, ..Limits::default() };
    let (_engine, mut slot, _model) = slot_with(limits);
    let before_last = PipelineOptions::default();
    let last = PipelineOptions { skip_trapping_messages: true, ..before_last.clone() };
    let mixed = generation("hello|spin|fine");

    // Before the last attempt a trap fails the generation, retryably.
    let err = pipeline::analyze(&mut slot, &mixed, &before_last, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.is_retryable(), "{err}");

    // On the last attempt the spinning message is dropped, the others count,
    // and progress still reaches every message.
    let mut progress = Vec::new();
    match pipeline::analyze(&mut slot, &mixed, &last, |p| {
        progress.push((p.done, p.total));
        ControlFlow::Continue(())
    }) {
        Ok(Analysis::Sentiment(event)) => {
            assert_eq!(event.properties[pipeline::SKIPPED_MESSAGES_PROPERTY], 1, "{:?}", event.properties);
            assert_eq!(event.properties["$ai_sentiment_messages"].as_array().map(Vec::len), Some(2));
            assert_eq!(event.properties["$ai_sentiment_label"], "neutral");
        }
        other => panic!("expected a sentiment event, got {other:?}"),
    }
    assert_eq!(progress.last(), Some(&(3, 3)), "{progress:?}");

    // Nothing but hostile messages: the event is skipped with its reason.
    match pipeline::analyze(&mut slot, &generation("spin|recurse"), &last, |_| ControlFlow::Continue(())) {
        Ok(Analysis::Skipped(SkipReason::PluginTrapped)) => {}
        other => panic!("expected a plugin_trapped skip, got {other:?}"),
    }

    // A generation without trouble carries no skipped count.
    match pipeline::analyze(&mut slot, &generation("hello|fine"), &before_last, |_| ControlFlow::Continue(())) {
        Ok(Analysis::Sentiment(event)) => assert!(!event.properties.contains_key(pipeline::SKIPPED_MESSAGES_PROPERTY)),
        other => panic!("expected a sentiment event, got {other:?}"),
    }
}
