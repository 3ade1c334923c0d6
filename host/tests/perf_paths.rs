//! The fast paths keep results exact: the result cache, length-bucketed
//! batching and the bounded instance pool, on real inference inside the
//! component (the small `default` and `roberta-tiny` bundles).

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use llma_sentiment::engine::{InstanceSlot, Label, Limits, PluginEngine};
use llma_sentiment::event::GenerationEvent;
use llma_sentiment::pipeline::{self, Analysis, PipelineOptions};
use llma_sentiment::pool::InstancePool;
use llma_sentiment::registry::Registry;
use llma_sentiment::cache::{CacheScope, ResultCache, ENTRY_OVERHEAD_BYTES};
use serde_json::{json, Value};

/// User messages of very different lengths, in an order that sorting by
/// length changes, with a repeated message.
fn messages() -> Vec<String> {
    let mut m: Vec<String> = vec![
        "the staff were lovely and the food was great, thank you so much for the recommendation".into(),
        "ok".into(),
        "this is broken and I hate it".into(),
        "the service was slow but the staff were lovely and helpful. ".repeat(12),
        "what time is the meeting".into(),
        "thanks!".into(),
        "ok".into(),
    ];
    for i in 0..6 {
        m.push(format!("message number {i} about the quarterly report, {}", "numbers ".repeat(i * 3)));
    }
    // Close enough in length to share batches.
    for t in ["I really like this answer, thanks", "I really hate this answer, sorry", "this answer is fine I guess, ok.", "can you make it a bit shorter pls"] {
        m.push(t.into());
    }
    m
}

fn generation(uuid: &str, user: &[String]) -> GenerationEvent {
    let mut input = vec![json!({"role": "system", "content": "You are helpful."})];
    for (i, text) in user.iter().enumerate() {
        input.push(json!({"role": "user", "content": text}));
        input.push(json!({"role": "assistant", "content": format!("answer {i}")}));
    }
    let event = json!({
        "uuid": uuid,
        "event": "$ai_generation",
        "team_id": 2,
        "distinct_id": "u",
        "timestamp": "2025-03-14T09:12:45Z",
        "properties": {"$ai_trace_id": "t", "$ai_input": input},
    });
    GenerationEvent::parse(&event).expect("valid event")
}

/// Per-message (label, score) and the overall scores of an analysis.
fn outcome(analysis: Analysis) -> (Vec<(String, f64)>, Value) {
    let Analysis::Sentiment(event) = analysis else { panic!("expected a sentiment event") };
    let properties = serde_json::to_value(&event.properties).unwrap();
    let messages = properties["$ai_sentiment_messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["label"].as_str().unwrap().to_string(), m["score"].as_f64().unwrap()))
        .collect();
    (messages, properties["$ai_sentiment_scores"].clone())
}

fn run(slot: &mut InstanceSlot, g: &GenerationEvent, options: PipelineOptions, cache: Option<&ResultCache>) -> (Vec<(String, f64)>, Value) {
    let mut reported = Vec::new();
    let analysis = pipeline::analyze_cached(slot, g, &options, cache, |p| {
        reported.push(p.done);
        ControlFlow::Continue(())
    })
    .expect("analysis");
    let (messages, overall) = outcome(analysis);
    // Progress after every message's result, cached ones included.
    assert_eq!(reported, (1..=messages.len()).collect::<Vec<_>>());
    (messages, overall)
}

fn assert_close(a: &[(String, f64)], b: &[(String, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.0, y.0, "{what}: label of message {i}");
        assert!((x.1 - y.1).abs() < 1e-5, "{what}: score of message {i}: {} vs {}", x.1, y.1);
    }
}

fn engine_and_slot(model: &Path) -> (PluginEngine, InstanceSlot) {
    let engine = common::engine(Limits::default());
    let plugin = common::load(&engine, &common::plugin_wasm(), &model.to_path_buf());
    (engine, InstanceSlot::new(plugin))
}

fn unbatched() -> PipelineOptions {
    PipelineOptions { batch_size: 1, bucket_by_length: false, ..Default::default() }
}

#[test]
fn bucketed_batches_give_the_unbatched_results_in_message_order() {
    let (_e, mut slot) = engine_and_slot(&common::model("roberta-tiny"));
    let user = messages();
    let mut distinct = user.clone();
    distinct.sort();
    distinct.dedup();
    let lengths: Vec<usize> = distinct.iter().map(|t| t.chars().count()).collect();
    assert!(pipeline::plan_batches(&lengths, 8, true).iter().any(|b| b.len() >= 3), "some batch must hold several texts");
    let g = generation("0195a3b2-7c1e-7a10-8f00-0000000000a1", &user);
    let reference = run(&mut slot, &g, unbatched(), None);
    for batch in [3, 8] {
        let bucketed = run(&mut slot, &g, PipelineOptions { batch_size: batch, bucket_by_length: true, ..Default::default() }, None);
        assert_close(&bucketed.0, &reference.0, &format!("bucketed, batch {batch}"));
        for k in ["negative", "neutral", "positive"] {
            let (x, y) = (bucketed.1[k].as_f64().unwrap(), reference.1[k].as_f64().unwrap());
            assert!((x - y).abs() < 1e-5, "overall {k}: {x} vs {y}");
        }
    }
    // The tiny model's random weights give every message a distinct score:
    // a mix-up of the order would show.
    let scores: std::collections::HashSet<u64> = reference.0.iter().map(|m| (m.1 * 1e7) as u64).collect();
    assert!(scores.len() >= messages().len() - 2, "scores too alike to detect reordering: {:?}", reference.0);
}

#[test]
fn cached_results_equal_uncached_ones() {
    let (_e, mut slot) = engine_and_slot(&common::model("roberta-tiny"));
    let user = messages();
    let g = generation("0195a3b2-7c1e-7a10-8f00-0000000000a2", &user);
    let uncached = run(&mut slot, &g, unbatched(), None);
    let cache = ResultCache::new(1 << 20);
    let first = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    let after_first = cache.stats();
    let distinct: std::collections::HashSet<&String> = user.iter().collect();
    assert_eq!(after_first.hits, 0);
    assert_eq!(after_first.misses as usize, user.len());
    assert_eq!(after_first.entries as usize, distinct.len(), "each distinct text classified and stored once");
    let second = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    assert_eq!(cache.stats().hits as usize, user.len(), "every message of the repeat is a hit");
    assert_close(&first.0, &uncached.0, "first pass with the cache");
    assert_eq!(second, first, "all-hit pass returns exactly the stored results");

    // Stored entries are exactly what a single-text classify returns.
    let plugin = slot.plugin().clone();
    let scope = CacheScope::of(&plugin, slot.get().unwrap().info());
    for text in &user {
        let stored = cache.lookup(&scope, &[text.as_str()], None).results[0].expect("stored");
        let single = slot.get().unwrap().classify(std::slice::from_ref(text)).unwrap()[0];
        assert_eq!(stored.label, single.label, "{text}");
        for (x, y) in [(stored.scores.negative, single.scores.negative), (stored.scores.neutral, single.scores.neutral), (stored.scores.positive, single.scores.positive)] {
            assert!((x - y).abs() < 1e-5, "{text}: cached {x} vs single {y}");
        }
    }
}

#[test]
fn the_cache_stays_within_its_bytes_under_real_traffic() {
    let (_e, mut slot) = engine_and_slot(&common::model("default"));
    let user = messages();
    // Room for the three shortest texts' worth of bytes, far fewer than the messages.
    let capacity = 3 * (40 + ENTRY_OVERHEAD_BYTES);
    let cache = ResultCache::new(capacity);
    let g = generation("0195a3b2-7c1e-7a10-8f00-0000000000a3", &user);
    let reference = run(&mut slot, &g, unbatched(), None);
    for _ in 0..2 {
        let cached = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
        assert_close(&cached.0, &reference.0, "through a tiny cache");
        let st = cache.stats();
        assert!(st.bytes <= capacity as u64, "{st:?}");
        assert!(st.entries > 0 && st.entries < user.len() as u64, "{st:?}");
    }
    assert!(cache.stats().evictions > 0);
}

/// The same component rebuilt (see `common::rebuilt`): another build
/// (another SHA-256) that behaves identically.
fn rebuilt_component() -> Vec<u8> {
    common::rebuilt(&std::fs::read(common::plugin_wasm()).unwrap(), "2")
}

#[test]
fn a_hot_swapped_version_never_gets_the_old_versions_results() {
    let engine = Arc::new(common::engine(Limits::default()));
    let tiny = common::model("roberta-tiny");
    let plugin = common::load(&engine, &common::plugin_wasm(), &tiny);
    let registry = Registry::new(engine.clone(), plugin, None, Duration::from_secs(600)).expect("first version");
    let pool = Arc::new(InstancePool::bounded(1, |_| true));
    let cache = ResultCache::new(1 << 20);
    let g = generation("0195a3b2-7c1e-7a10-8f00-0000000000a4", &messages()[..4]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let v1 = registry.current();
    let mut slot = rt.block_on(pool.checkout(&v1)).unwrap();
    let on_v1 = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    drop(slot);
    let hits_on_v1 = cache.stats().hits;
    assert_eq!(hits_on_v1, 4);

    // Another build of the plugin, same model: same answers, separate entries.
    let v2 = registry.activate_bytes(&rebuilt_component(), None, None).expect("second version");
    assert_ne!(v1.plugin.wasm_sha256, v2.plugin.wasm_sha256);
    let mut slot = rt.block_on(pool.checkout(&registry.current())).unwrap();
    assert!(Arc::ptr_eq(slot.version(), &v2));
    let before = cache.stats();
    let on_v2 = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    let after = cache.stats();
    assert_eq!(after.hits, before.hits, "no hit on the old version's entries");
    assert_eq!(after.misses - before.misses, 4);
    assert_close(&on_v2.0, &on_v1.0, "same component code");
    drop(slot);
    assert!(pool.high_water() <= 1, "the swap made room instead of growing the pool");

    // Another model under the same build: its own entries and its own answers.
    let v3 = registry.activate_bytes(&rebuilt_component(), None, Some(&common::model("default"))).expect("third version");
    let mut slot = rt.block_on(pool.checkout(&v3)).unwrap();
    let before = cache.stats();
    let on_v3 = run(&mut slot, &g, PipelineOptions::default(), Some(&cache));
    assert_eq!(cache.stats().hits, before.hits);
    let mut fresh = InstanceSlot::new(v3.plugin.clone());
    assert_eq!(on_v3, run(&mut fresh, &g, PipelineOptions::default(), None));
    assert_ne!(on_v3.0, on_v1.0, "the two models disagree somewhere, so crossing would show");
}

#[test]
fn the_pool_never_holds_more_instances_than_its_bound() {
    let engine = Arc::new(common::engine(Limits::default()));
    let plugin = common::load(&engine, &common::plugin_wasm(), &common::model("default"));
    let registry = Arc::new(Registry::new(engine, plugin, None, Duration::from_secs(600)).unwrap());
    let pool = Arc::new(InstancePool::bounded(2, |_| true));
    let version = registry.current();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Capacity 1 worth of waiting: a third checkout waits until one returns.
    let a = pool.try_checkout(&version).expect("free");
    let b = rt.block_on(pool.checkout(&version)).unwrap();
    assert!(pool.try_checkout(&version).is_none(), "full");
    let mut waiting = Box::pin(pool.checkout(&version));
    assert!(waiting.as_mut().now_or_never().is_none(), "a third task must wait");
    drop(a);
    let c = rt.block_on(waiting).expect("proceeds once one is returned");
    drop((b, c));
    assert_eq!(pool.checked_out(), 0);

    // Many more concurrent tasks than instances, each classifying for real.
    let texts: Vec<String> = ["I love this, thank you!", "this is broken and I hate it"].iter().map(|t| t.to_string()).collect();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (pool, version, texts) = (pool.clone(), version.clone(), texts.clone());
            tasks.push(tokio::spawn(async move {
                let mut slot = pool.checkout(&version).await.unwrap();
                let out = pool.checked_out();
                let labels = tokio::task::spawn_blocking(move || {
                    let r = slot.get().unwrap().classify(&texts).unwrap();
                    drop(slot);
                    r
                })
                .await
                .unwrap();
                (out, labels)
            }));
        }
        futures::future::join_all(tasks).await
    });
    for r in results {
        let (out, labels) = r.unwrap();
        assert!(out <= 2, "{out} checked out at once");
        assert_eq!((labels[0].label, labels[1].label), (Label::Positive, Label::Negative));
    }
    assert!(pool.high_water() <= 2, "high water {}", pool.high_water());
    assert!(pool.idle_count() <= 2);
}

#[test]
fn a_trapped_pooled_instance_is_replaced_within_the_bound() {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let limits = Limits { fuel_base: 50_000_000, fuel_per_token: 0, metering: llma_sentiment::engine::Metering::Fuel, ..Limits::default() };
    let engine = Arc::new(common::engine(limits));
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    let registry = Registry::new(engine, plugin, None, Duration::from_secs(600)).expect("the hostile plugin passes the self-test");
    let pool = Arc::new(InstancePool::bounded(1, |_| true));
    let version = registry.current();

    let mut slot = pool.try_checkout(&version).expect("free");
    let err = slot.get().unwrap().classify(&["spin".into()]).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    drop(slot);
    // The same pooled slot hands out a fresh instance in place of the trapped one.
    let mut slot = pool.try_checkout(&version).expect("returned");
    let r = slot.get().expect("a fresh instance").classify(&["hello".into()]).expect("serves");
    assert_eq!(r[0].score, 0.5);
    assert!(pool.try_checkout(&version).is_none(), "still one instance at most");
    drop(slot);
    assert_eq!((pool.high_water(), pool.idle_count()), (1, 1));
}

/// A registry serving the hostile plugin on an empty bundle (kept alive by
/// the returned dir), and the plugin's bytes to activate again.
fn hostile_registry() -> (tempfile::TempDir, Vec<u8>, Arc<Registry>) {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let engine = Arc::new(common::engine(Limits::default()));
    let hostile = std::fs::read(common::hostile_wasm()).unwrap();
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    let registry = Arc::new(Registry::new(engine, plugin, None, Duration::from_secs(600)).unwrap());
    (model, hostile, registry)
}

#[test]
fn the_workers_pool_keeps_instances_of_the_current_and_rollback_versions_only() {
    let (_model, hostile, registry) = hostile_registry();
    // The constructor the worker uses, with its liveness check.
    let pool = Arc::new(InstancePool::for_registry(4, &registry));

    let v1 = registry.current();
    drop(pool.try_checkout(&v1).unwrap());
    assert_eq!(pool.idle_count(), 1);
    let v2 = registry.activate_bytes(&hostile, None, None).unwrap();
    let held_v1 = pool.try_checkout(&v1).unwrap();
    drop(pool.try_checkout(&v2).unwrap());
    pool.prune();
    assert_eq!(pool.idle_count(), 1, "v2's instance kept; v1's is checked out");
    drop(held_v1);
    assert_eq!(pool.idle_count(), 2, "v1 is the rollback target: its instance is kept");

    // The history keeps the last 3 replaced versions: after v3, v4 and v5
    // it holds v2, v3, v4, and v1 is dead.
    let held_v1 = pool.try_checkout(&v1).unwrap();
    drop(pool.try_checkout(&v1).unwrap());
    assert_eq!(pool.idle_count(), 2, "v2's instance and a second one of v1");
    let v3 = registry.activate_bytes(&hostile, None, None).unwrap();
    pool.prune();
    assert_eq!(pool.idle_count(), 2, "v1 is still in the history");
    for _ in 0..2 {
        registry.activate_bytes(&hostile, None, None).unwrap();
    }
    assert_eq!(registry.history().iter().map(|v| v.seq).collect::<Vec<_>>(), [4, 3, 2]);
    pool.prune();
    assert_eq!(pool.idle_count(), 1, "v1's idle instance pruned, v2's kept");
    drop(held_v1);
    assert_eq!(pool.idle_count(), 1, "a dead version's instance is dropped when it comes back");
    drop(pool.try_checkout(&v3).unwrap());
    assert_eq!(pool.idle_count(), 2);

    // Rollbacks go back along the history and drop the version rolled away
    // from: to v4 (v5 dropped), to v3, to v2; then only v2 is live.
    registry.rollback().unwrap();
    pool.prune();
    assert_eq!(pool.idle_count(), 2, "v4 current, v2 and v3 in the history");
    registry.rollback().unwrap();
    registry.rollback().unwrap();
    pool.prune();
    assert_eq!(registry.current().seq, 2);
    assert_eq!(pool.idle_count(), 1, "v3 was rolled away from: only v2's instance stays");
    // Without the registry nothing is live.
    drop(registry);
    pool.prune();
    assert_eq!(pool.idle_count(), 0);
}

/// An activation's validation instance takes room in the pool: with every
/// instance checked out the activation waits for one to come back, the pool
/// never holds more instances than its bound, and the validation instance
/// serves on as an idle instance of the new version.
#[test]
fn an_activation_waits_for_room_in_the_pool_and_hands_its_instance_over() {
    let (_model, hostile, registry) = hostile_registry();
    let pool = Arc::new(InstancePool::for_registry(1, &registry));
    let gate: Arc<dyn llma_sentiment::registry::InstanceGate> = pool.clone();
    registry.set_instance_gate(Arc::downgrade(&gate));

    let held = pool.try_checkout(&registry.current()).unwrap();
    let activation = std::thread::spawn({
        let registry = registry.clone();
        move || registry.activate_bytes(&hostile, None, None).map(|v| v.seq)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!activation.is_finished() && registry.is_activating(), "the activation did not wait for room");
    assert_eq!(registry.current().seq, 1);
    drop(held);
    assert_eq!(activation.join().unwrap().unwrap(), 2);
    assert_eq!(pool.high_water(), 1, "more instances at once than the pool's bound");
    assert_eq!(pool.idle_count(), 1, "the validation instance serves on");
    let v2 = registry.current();
    let slot = pool.try_checkout(&v2).unwrap();
    assert_eq!((pool.idle_count(), pool.high_water()), (0, 1), "the first task got the validation instance");
    drop(slot);
}

/// The model's content digest (the shared cache's scope) is computed once
/// per loaded plugin, not per generation: files changed on disk after the
/// first use do not change it, and a freshly loaded plugin reads them anew.
#[test]
fn the_model_digest_is_computed_once_per_loaded_plugin() {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let engine = common::engine(Limits::default());
    let plugin = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    let first = plugin.model_content_digest().to_string();
    let scope = CacheScope::of(&plugin, InstanceSlot::new(plugin.clone()).get().unwrap().info());
    std::fs::write(model.path().join("config.json"), b"{\"changed\": true}").unwrap();
    assert_eq!(plugin.model_content_digest(), first, "read again for a later generation");
    assert_eq!(CacheScope::of(&plugin, InstanceSlot::new(plugin.clone()).get().unwrap().info()), scope);
    let reloaded = common::load(&engine, &common::hostile_wasm(), &model.path().to_path_buf());
    assert_ne!(reloaded.model_content_digest(), first, "a new activation reads the files anew");
}

