//! Pre-initialised snapshots: instances made from one answer exactly like
//! instances that loaded the model; a snapshot is never reused for another
//! model or plugin; a damaged file is rebuilt, never loaded; plugins without
//! the init export fall back to loading (counted in /metrics).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llma_sentiment::engine::{
    EngineOptions, Fallback, InstanceSlot, Limits, MessageResult, Plugin, PluginEngine, InstanceStart, SnapshotPolicy,
};

fn engine(policy: SnapshotPolicy) -> PluginEngine {
    let options = EngineOptions { snapshots: policy, ..EngineOptions::default() };
    PluginEngine::with_options(Limits::default(), Some(common::cache_dir().join("compiled")), options).expect("engine")
}

fn load(engine: &PluginEngine, wasm: &Path, model: &Path) -> Arc<Plugin> {
    Arc::new(engine.load_plugin_file(wasm, model).expect("plugin loads"))
}

fn snapshot_path(plugin: &Plugin) -> PathBuf {
    match &plugin.instance_start {
        InstanceStart::Snapshot { path, .. } => path.clone(),
        InstanceStart::Load(why) => panic!("expected a snapshot, instances load the model: {why}"),
    }
}

fn created(plugin: &Plugin) -> bool {
    matches!(plugin.instance_start, InstanceStart::Snapshot { created: true, .. })
}

fn texts() -> Vec<String> {
    let long = "the service was slow but the staff were lovely and helpful. ".repeat(120);
    ["I love this, thank you!", "this is broken and I hate it", "what time is the meeting", "ok", "", &long]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Single texts and one padded batch of all of them.
fn results(plugin: &Arc<Plugin>) -> Vec<MessageResult> {
    let mut slot = InstanceSlot::new(plugin.clone());
    let texts = texts();
    let mut out: Vec<MessageResult> = texts.iter().map(|t| slot.get().unwrap().classify(std::slice::from_ref(t)).unwrap()[0]).collect();
    out.extend(slot.get().unwrap().classify(&texts).unwrap());
    out
}

fn metric(name_and_labels: &str) -> f64 {
    llma_sentiment::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn same_results(model: &Path) {
    let snap = load(&engine(SnapshotPolicy::Create), &common::plugin_wasm(), model);
    let fresh = load(&engine(SnapshotPolicy::Off), &common::plugin_wasm(), model);
    assert!(snap.from_snapshot(), "{:?}", snap.instance_start);
    assert!(matches!(fresh.instance_start, InstanceStart::Load(Fallback::Disabled)), "{:?}", fresh.instance_start);
    let (a, b) = (InstanceSlot::new(snap.clone()).get().unwrap().info().clone(), InstanceSlot::new(fresh.clone()).get().unwrap().info().clone());
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "the snapshot instance reports the info of the real load");
    let (a, b) = (results(&snap), results(&fresh));
    let mut max = 0f32;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.label, y.label);
        for (p, q) in [(x.scores.negative, y.scores.negative), (x.scores.neutral, y.scores.neutral), (x.scores.positive, y.scores.positive)] {
            max = max.max((p - q).abs());
        }
    }
    eprintln!("{}: max |score diff| snapshot vs fresh load {max:e}", model.display());
    assert!(max <= 1e-6, "snapshot instance differs from a fresh load by {max}");
}

#[test]
fn a_snapshot_instance_classifies_like_a_freshly_loaded_one_default_bundle() {
    same_results(&common::model("default"));
}

#[test]
fn a_snapshot_instance_classifies_like_a_freshly_loaded_one_roberta_tiny() {
    same_results(&common::model("roberta-tiny"));
}

#[test]
fn another_model_or_plugin_never_reuses_a_snapshot() {
    let engine = engine(SnapshotPolicy::Create);
    let default = load(&engine, &common::plugin_wasm(), &common::model("default"));
    let tiny = load(&engine, &common::plugin_wasm(), &common::model("roberta-tiny"));
    assert_ne!(snapshot_path(&default), snapshot_path(&tiny));
    let name = |p: &Arc<Plugin>| InstanceSlot::new(p.clone()).get().unwrap().info().model_name.clone();
    assert_ne!(name(&default), name(&tiny));
    // Same plugin and model again: the same file, not made twice.
    let again = load(&engine, &common::plugin_wasm(), &common::model("default"));
    assert_eq!(snapshot_path(&again), snapshot_path(&default));
    assert!(!created(&again));
    // Another plugin (without the init export) with the same model loads the
    // model itself, and says so in /metrics.
    let before = metric("llma_sentiment_plugin_snapshot_fallbacks_total{reason=\"no_init_export\"}");
    let hostile = load(&engine, &common::hostile_wasm(), &common::model("default"));
    assert!(matches!(hostile.instance_start, InstanceStart::Load(Fallback::NoInitExport)), "{:?}", hostile.instance_start);
    assert_eq!(InstanceSlot::new(hostile).get().unwrap().info().name, "llma-hostile-plugin");
    assert!(metric("llma_sentiment_plugin_snapshot_fallbacks_total{reason=\"no_init_export\"}") >= before + 1.0);
}

/// A bundle of our own, so its snapshot is ours to damage.
fn private_bundle(from: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::model(from)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn changed_model_files_or_a_damaged_snapshot_make_a_new_one() {
    let bundle = private_bundle("default");
    let engine = engine(SnapshotPolicy::Create);
    let first = load(&engine, &common::plugin_wasm(), bundle.path());
    assert!(created(&first));
    let path = snapshot_path(&first);
    let want = results(&first);
    // The file is mapped while a plugin made from it lives: damaging it in
    // place under a live mapping would fault that process (SIGBUS past a
    // truncation), which is why the host itself only ever unlinks and renames.
    drop(first);

    // One flipped byte in the middle: detected, deleted, rebuilt.
    let discarded = metric("llma_sentiment_plugin_snapshots_discarded_total");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let rebuilt = load(&engine, &common::plugin_wasm(), bundle.path());
    assert!(created(&rebuilt), "a damaged snapshot must be rebuilt: {:?}", rebuilt.instance_start);
    assert_eq!(snapshot_path(&rebuilt), path);
    assert!(metric("llma_sentiment_plugin_snapshots_discarded_total") >= discarded + 1.0);
    // The SHA-256 recorded when the snapshot was written no longer matches.
    assert!(metric("llma_sentiment_plugin_cache_discarded_total{kind=\"snapshot\",reason=\"mismatch\"}") >= 1.0);
    assert_eq!(format!("{:?}", results(&rebuilt)), format!("{want:?}"));
    drop(rebuilt);

    // A truncated one is never mapped either; a one-shot command (which does
    // not make snapshots) falls back to loading instead.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 3).unwrap();
    let one_shot = load(&self::engine(SnapshotPolicy::UseExisting), &common::plugin_wasm(), bundle.path());
    assert!(matches!(one_shot.instance_start, InstanceStart::Load(Fallback::NotCached)), "{:?}", one_shot.instance_start);
    assert!(!path.exists(), "the truncated snapshot was deleted");
    assert_eq!(format!("{:?}", results(&one_shot)), format!("{want:?}"));

    // Other model files, same directory: another key, and the new info.
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bundle.path().join("config.json")).unwrap()).unwrap();
    config["_name_or_path"] = "renamed-for-the-test".into();
    std::fs::write(bundle.path().join("config.json"), config.to_string()).unwrap();
    let renamed = load(&engine, &common::plugin_wasm(), bundle.path());
    assert_ne!(snapshot_path(&renamed), path);
    assert_eq!(InstanceSlot::new(renamed).get().unwrap().info().model_name, "renamed-for-the-test");
}

#[test]
fn a_plugin_whose_init_cannot_load_the_model_falls_back_with_the_reason() {
    let bundle = private_bundle("default");
    std::fs::write(bundle.path().join("config.json"), r#"{"id2label": {"0": "happy", "1": "sad", "2": "meh"}}"#).unwrap();
    let plugin = load(&engine(SnapshotPolicy::Create), &common::plugin_wasm(), bundle.path());
    match &plugin.instance_start {
        InstanceStart::Load(Fallback::InitFailed(why)) => assert!(why.contains("happy"), "{why}"),
        other => panic!("expected an init failure, got {other:?}"),
    }
    let err = plugin.instantiate().err().expect("the ordinary load fails the same way");
    assert!(err.to_string().contains("happy"), "{err}");
}

/// What `wizer-initialize` read and parsed is freed before the snapshot and
/// must not be in it: the plugin zeroes large blocks as they are freed during
/// init (with volatile stores: a plain memset before `free` is removed by the
/// optimiser). `tokenizer.json`'s text is never live after parsing, so any
/// stretch of it in the snapshot is garbage the image carries; for
/// RoBERTa-base that garbage once made the image 1.4 GB, past wasm's 1 GiB
/// module limit.
#[test]
fn a_snapshot_carries_none_of_the_bytes_its_init_read_and_freed() {
    let bundle = private_bundle("roberta-tiny");
    let plugin = load(&engine(SnapshotPolicy::Create), &common::plugin_wasm(), bundle.path());
    let image = std::fs::read(snapshot_path(&plugin)).unwrap();
    let text = std::fs::read(bundle.path().join("tokenizer.json")).unwrap();
    const WINDOW: usize = 48;
    let probes: Vec<usize> = (1..32).map(|i| i * (text.len() - WINDOW) / 32).collect();
    let found: Vec<usize> = probes.iter().copied().filter(|&at| memchr::memmem::find(&image, &text[at..at + WINDOW]).is_some()).collect();
    assert!(
        found.is_empty(),
        "{} of {} stretches of tokenizer.json's text are in the snapshot (at offsets {found:?}): freed init memory was not zeroed",
        found.len(),
        probes.len()
    );
}
