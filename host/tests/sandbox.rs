//! The engine's limits and sandbox, against a plugin that misbehaves on purpose.

mod common;

use std::time::{Duration, Instant};

use std::ops::ControlFlow;

use llma_sentiment::engine::{EngineError, InstanceSlot, Limits, Metering, TrapKind};
use llma_sentiment::event::{GenerationEvent, SkipReason};
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use serde_json::json;

/// The hostile plugin on an engine under `limits`, with a model directory it never reads.
fn slot_with(limits: Limits) -> (llma_sentiment::engine::PluginEngine, InstanceSlot, tempfile::TempDir) {
    let engine = common::engine(limits);
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    (engine, InstanceSlot::new(plugin), model)
}

fn classify_one(slot: &mut InstanceSlot, text: &str) -> Result<f32, EngineError> {
    slot.get().expect("instance").classify(&[text.to_string()]).map(|r| r[0].score)
}

/// Held by every test of this binary that traps an instance: the trap
/// counters are process-wide, so a test sees exactly its own traps.
static TRAPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn trapping() -> std::sync::MutexGuard<'static, ()> {
    TRAPS.lock().unwrap_or_else(|p| p.into_inner())
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

/// Fuel metering with a budget a spinning guest spends in well under a second.
fn small_fuel_budget() -> Limits {
    Limits { fuel_base: 50_000_000, fuel_per_token: 0, metering: Metering::Fuel, ..Limits::default() }
}

/// Fuel without practical limit, and a wall-clock deadline of `deadline` per call.
fn deadline_only(deadline: Duration) -> Limits {
    Limits {
        call_deadline_base: deadline,
        call_deadline_per_text: Duration::ZERO,
        fuel_base: u64::MAX / 2,
        fuel_per_token: 0,
        ..Limits::default()
    }
}

/// The worker's engine (epoch metering, the default) checks the deadline on
/// every tick of its epoch ticker.
#[test]
fn a_spinning_guest_is_stopped_by_its_wall_clock_deadline() {
    assert_eq!(Limits::default().metering, Metering::Epoch);
    let (_e, slot, _m) = slot_with(deadline_only(Duration::from_millis(300)));
    stopped_by_the_deadline(slot);
}

/// With fuel metering and no epoch checks the deadline is checked each time
/// the call yields on fuel.
#[test]
fn with_fuel_metering_a_spinning_guest_is_stopped_at_its_deadline() {
    let (_e, slot, _m) = slot_with(Limits { metering: Metering::Fuel, ..deadline_only(Duration::from_millis(300)) });
    stopped_by_the_deadline(slot);
}

fn stopped_by_the_deadline(mut slot: InstanceSlot) {
    let _traps = trapping();
    let before = traps_counted(TrapKind::Deadline);
    let started = Instant::now();
    let err = classify_one(&mut slot, "spin").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::Deadline), "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(traps_counted(TrapKind::Deadline) - before, 1.0, "this trap was counted once");
    assert_recovers(&mut slot);
}

#[test]
fn a_spinning_guest_is_stopped_by_fuel() {
    let limits = small_fuel_budget();
    let (_e, mut slot, _m) = slot_with(limits);
    let _traps = trapping();
    let before = traps_counted(TrapKind::OutOfFuel);
    let err = classify_one(&mut slot, "spin").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::OutOfFuel), "{err}");
    assert_eq!(traps_counted(TrapKind::OutOfFuel) - before, 1.0, "this trap was counted once");
    assert_recovers(&mut slot);
}

#[test]
fn cancelling_a_call_in_flight_stops_it_as_cancelled() {
    cancelled(Metering::Epoch);
}

#[test]
fn with_fuel_metering_cancelling_a_call_in_flight_stops_it_as_cancelled() {
    cancelled(Metering::Fuel);
}

fn cancelled(metering: Metering) {
    // Neither fuel nor the deadline would stop this spin for a minute.
    let (_e, mut slot, _m) = slot_with(Limits { metering, ..deadline_only(Duration::from_secs(60)) });
    let _traps = trapping();
    let before = traps_counted(TrapKind::Cancelled);
    slot.get().expect("instance");
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    slot.set_interrupt(cancel.clone());
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let err = classify_one(&mut slot, "spin").unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.trap_kind(), Some(TrapKind::Cancelled), "{err}");
    // Generous (the deadline is 60 s): stopped by the cancel, not by a limit.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    eprintln!("{metering:?}: stopped {:?} after the cancel", started.elapsed().saturating_sub(Duration::from_millis(300)));
    assert_eq!(traps_counted(TrapKind::Cancelled) - before, 1.0);
    slot.clear_interrupt();
    assert_recovers(&mut slot);
}

#[test]
fn a_poisoned_instance_refuses_calls_until_replaced() {
    let _traps = trapping();
    let limits = small_fuel_budget();
    let (_e, slot, _m) = slot_with(limits);
    let mut instance = slot.plugin().instantiate().unwrap();
    assert!(instance.classify(&["spin".into()]).is_err());
    assert_eq!(instance.poisoned(), Some(TrapKind::OutOfFuel));
    let err = instance.classify(&["hello".into()]).unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
}

#[test]
fn unbounded_recursion_is_a_stack_overflow_trap() {
    let _traps = trapping();
    let (_e, mut slot, _m) = slot_with(Limits::default());
    let err = classify_one(&mut slot, "recurse").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::StackOverflow), "{err}");
    assert_recovers(&mut slot);
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let _traps = trapping();
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let (_e, mut slot, _m) = slot_with(limits);
    let err = classify_one(&mut slot, "alloc").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::MemoryLimit), "{err}");
    assert_recovers(&mut slot);
}

#[test]
fn a_guest_panic_is_a_trap_not_a_crash() {
    let _traps = trapping();
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
    let _traps = trapping();
    let limits = Limits { load_fuel: 50_000_000, metering: Metering::Fuel, ..Limits::default() };
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
    let _traps = trapping();
    let limits = small_fuel_budget();
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
            let p = serde_json::to_value(&event.properties).unwrap();
            assert_eq!(p["$ai_sentiment_skipped_messages"], 1, "{p}");
            assert_eq!(event.properties.skipped_messages, Some(1));
            assert_eq!(p["$ai_sentiment_messages"].as_array().map(Vec::len), Some(2));
            assert_eq!(p["$ai_sentiment_label"], "neutral");
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
        Ok(Analysis::Sentiment(event)) => {
            let p = serde_json::to_value(&event.properties).unwrap();
            assert!(p.get("$ai_sentiment_skipped_messages").is_none(), "{p}");
            assert_eq!(event.properties.skipped_messages, None);
        }
        other => panic!("expected a sentiment event, got {other:?}"),
    }
}

fn generous() -> Limits {
    Limits {
        call_deadline_base: Duration::from_secs(60),
        call_deadline_per_text: Duration::ZERO,
        fuel_base: u64::MAX / 2,
        fuel_per_token: 0,
        ..Limits::default()
    }
}

#[test]
fn a_plugin_call_never_runs_past_its_callers_deadline() {
    let _traps = trapping();
    // The call's own budget (60 s) is longer than what the caller has left.
    let (_e, mut slot, _m) = slot_with(generous());
    slot.get().unwrap();
    slot.set_deadline(Some(Instant::now() + Duration::from_millis(300)));
    let started = Instant::now();
    let err = classify_one(&mut slot, "spin").unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::Deadline), "{err}");
    assert!(err.to_string().contains("deadline passed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Past the deadline no call starts at all.
    let err = classify_one(&mut slot, "hello").unwrap_err();
    assert!(err.to_string().contains("before the call"), "{err}");
    slot.clear_interrupt();
    assert_recovers(&mut slot);
}

#[test]
fn dropping_the_interrupt_guard_stops_the_call_in_flight() {
    let _traps = trapping();
    let (_e, mut slot, _m) = slot_with(generous());
    slot.get().unwrap();
    let guard = llma_sentiment::engine::InterruptOnDrop::new();
    slot.set_interrupt(guard.flag());
    let job = std::thread::spawn(move || {
        let started = Instant::now();
        let result = classify_one(&mut slot, "spin");
        (result, started.elapsed(), slot)
    });
    std::thread::sleep(Duration::from_millis(300));
    // What an activity future does when Temporal (or a shutdown) drops it.
    drop(guard);
    let (result, took, mut slot) = job.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.trap_kind(), Some(TrapKind::Cancelled), "{err}");
    assert!(took < Duration::from_secs(5), "the spinning call ran {took:?} after the drop");
    slot.clear_interrupt();
    assert_recovers(&mut slot);
}

/// `llma_sentiment_events_total{outcome=...}` of this process's metrics.
fn events_counted(outcome: &str) -> f64 {
    let text = llma_sentiment::metrics::render();
    let prefix = format!("llma_sentiment_events_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// The driver `analyze` runs (no retries: its only attempt is the last): a
/// message that traps is skipped like on the worker's last attempt, a line
/// that is not an event fails alone, and the driver records the metrics.
/// (Only this test of this binary drives events, so the counters' deltas are its own.)
#[test]
fn analyze_s_driver_skips_trapping_messages_and_records_metrics() {
    let _traps = trapping();
    use llma_sentiment::pipeline::{Attempt, Driver, Outcome};
    let limits = small_fuel_budget();
    let (_engine, mut slot, _model) = slot_with(limits);
    let before = ["classified", "skipped", "failed"].map(events_counted);
    let mut driver = Driver::new(PipelineOptions::default(), Attempt::ONLY, false);
    assert!(driver.options().skip_trapping_messages);
    let line = |ai_input: &str| {
        json!({"uuid": uuid::Uuid::new_v4().to_string(), "team_id": 1, "distinct_id": "d", "properties": {"$ai_input": ai_input}})
            .to_string()
    };
    let (_, mixed) = driver.run_text(0, &line("hello|spin|fine"), &mut slot, None).unwrap();
    match mixed {
        Outcome::Classified(event) => assert_eq!(event.properties.skipped_messages, Some(1)),
        other => panic!("expected a sentiment event, got {other:?}"),
    }
    let (record, hopeless) = driver.run_text(1, &line("spin|recurse"), &mut slot, None).unwrap();
    assert!(matches!(hopeless, Outcome::Skipped(SkipReason::PluginTrapped)), "{hopeless:?}");
    assert_eq!(record.reason.as_deref(), Some("plugin_trapped"));
    let (record, broken) = driver.run_text(2, "{not json", &mut slot, None).unwrap();
    assert!(matches!(broken, Outcome::Failed(ref f) if !f.retryable), "{broken:?}");
    assert_eq!(record.generation_uuid, None);
    assert_eq!(driver.retry_reason(), None, "the only attempt never asks for a retry");
    let s = driver.summary();
    assert_eq!((s.read(), s.classified, s.skipped, s.failed), (3, 1, 1, 1));
    let after = ["classified", "skipped", "failed"].map(events_counted);
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [1.0, 1.0, 1.0]);
}

/// Fixture components for the caps that bite at instantiation: one core
/// module instantiated `instances` times, each with `memories` memories of
/// `pages` pages, one table (with `table`), and (`grow_table`) a start
/// function that grows that table without end.
mod fixtures {
    use wasm_encoder::*;

    pub fn component(instances: u32, memories: u32, pages: u64, table: bool, grow_table: bool) -> Vec<u8> {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        m.section(&funcs);
        if table {
            let mut tables = TableSection::new();
            tables.table(TableType { element_type: RefType::FUNCREF, table64: false, minimum: 1, maximum: None, shared: false });
            m.section(&tables);
        }
        let mut mems = MemorySection::new();
        for _ in 0..memories {
            mems.memory(MemoryType { minimum: pages, maximum: None, memory64: false, shared: false, page_size_log2: None });
        }
        m.section(&mems);
        if grow_table {
            m.section(&StartSection { function_index: 0 });
        }
        let mut code = CodeSection::new();
        let mut f = Function::new([]);
        if grow_table {
            f.instruction(&Instruction::Loop(BlockType::Empty));
            f.instruction(&Instruction::RefNull(HeapType::Abstract { shared: false, ty: AbstractHeapType::Func }));
            f.instruction(&Instruction::I32Const(4096));
            f.instruction(&Instruction::TableGrow(0));
            f.instruction(&Instruction::Drop);
            f.instruction(&Instruction::Br(0));
            f.instruction(&Instruction::End);
        }
        f.instruction(&Instruction::End);
        code.function(&f);
        m.section(&code);

        let mut c = Component::new();
        c.section(&ModuleSection(&m));
        let mut inst = InstanceSection::new();
        for _ in 0..instances {
            inst.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        }
        c.section(&inst);
        c.finish()
    }
}

/// Each cap of the sandbox against a component made to go past it: refused
/// or trapped with the cap named, in bounded time, and the engine serves the
/// next plugin call.
#[test]
fn caps_on_tables_memories_and_instances_hold_at_instantiation() {
    let (engine, mut slot, _m) = slot_with(Limits::default());
    let limits = Limits::default();
    // The fixture itself is fine: one instance, one small memory.
    engine.instantiate_bare(&fixtures::component(1, 1, 1, true, false)).expect("a component inside every cap");
    let started = Instant::now();
    let cases = [
        // A table.grow loop: stopped at the elements cap, not at the host's memory.
        (fixtures::component(1, 1, 1, true, true), "sandbox cap: table elements would reach"),
        // One memory more than allowed.
        (fixtures::component(1, limits.max_memories as u32 + 1, 1, false, false), "memory count too high"),
        // Memories each under the cap whose total is not (3 GiB twice).
        (fixtures::component(1, 2, 3 << 14, false, false), "sandbox cap: linear memory bytes would reach"),
        // One table more than allowed.
        (fixtures::component(limits.max_tables as u32 + 1, 0, 0, true, false), "table count too high"),
        // One core instance more than allowed.
        (fixtures::component(limits.max_instances as u32 + 1, 0, 0, false, false), "instance count too high"),
    ];
    for (i, (wasm, want)) in cases.iter().enumerate() {
        let err = engine.instantiate_bare(wasm).unwrap_err();
        assert!(matches!(err, EngineError::Instantiate(_)), "case {i}: {err}");
        assert!(err.to_string().contains(want), "case {i}: {err}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_recovers(&mut slot);
}

/// A guest that opens files and never closes them: stopped at the handle
/// cap (a trap, or a denied open the guest reports), the next call served.
#[test]
fn a_wasi_handle_flood_is_bounded() {
    let _traps = trapping();
    let limits = Limits { max_handles: 256, ..Limits::default() };
    let (_e, mut slot, _m) = slot_with(limits);
    let before = traps_counted(TrapKind::HandleLimit);
    match classify_one(&mut slot, "handles") {
        Err(EngineError::Plugin { error, .. }) => {
            let text = error.to_string();
            let opened: usize = text
                .split("denied after ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{text}"));
            assert!(opened < 256, "{opened} handles opened under a cap of 256");
        }
        Err(err) => {
            assert_eq!(err.trap_kind(), Some(TrapKind::HandleLimit), "{err}");
            assert_eq!(traps_counted(TrapKind::HandleLimit), before + 1.0);
        }
        Ok(score) => panic!("the flood ended without an error: {score}"),
    }
    assert_recovers(&mut slot);
}
