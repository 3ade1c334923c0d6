//! Who can make the worker run what: with `plugin.trusted_keys` set, every
//! activation path (start, the admin endpoint, the plugin directory)
//! refuses a component without a valid signature from a trusted key, and
//! counts it; the compile cache loads nothing it did not write (SHA-256
//! recorded at write time) from a dir nobody else can write. Real
//! components (the plugins `make signed-plugins` signed with the tests'
//! key), a real registry, the real endpoint, watcher and binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llma_sentiment::engine::{EngineError, EngineOptions, InstanceSlot, Limits, PluginEngine, SnapshotPolicy};
use llma_sentiment::registry::{Registry, SwapError};
use llma_sentiment::signature::{self, Refusal, TrustedKeys};
use serde_json::{json, Value};

fn metric(name_and_labels: &str) -> f64 {
    llma_sentiment::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn refused(reason: &str) -> f64 {
    metric(&format!("llma_sentiment_plugin_refused_total{{reason=\"{reason}\"}}"))
}

/// Waits up to 60 s for `done`.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests' key, trusted.
fn test_keys() -> TrustedKeys {
    TrustedKeys::load(&[common::public_key()]).unwrap()
}

/// A fresh key pair in `dir`: (secret key file, public key file).
fn new_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (sk, pk) = (dir.join(format!("{name}.sk")), dir.join(format!("{name}.pk")));
    signature::keygen(&sk, &pk).unwrap();
    (sk, pk)
}

fn sign_with(sk: &Path, wasm: &[u8]) -> Vec<u8> {
    signature::sign(&signature::secret_key(sk).unwrap(), wasm).unwrap()
}

/// A registry serving the hostile plugin (cheap to compile, passes the
/// self-test) on an empty bundle (kept alive by the returned dir), trusting
/// `keys`: activating the hostile plugin again passes every check but the
/// signature's.
fn hostile_registry(keys: TrustedKeys) -> (tempfile::TempDir, Arc<Registry>) {
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let engine = Arc::new(common::engine(Limits::default()));
    let plugin = common::load(&engine, &common::signed_hostile_wasm(), &model.path().to_path_buf());
    let registry = Registry::new(engine, plugin, None, Duration::from_secs(600)).unwrap().with_trusted_keys(Some(Arc::new(keys)));
    (model, Arc::new(registry))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn refusal_of(result: Result<Arc<llma_sentiment::registry::PluginVersion>, SwapError>) -> Refusal {
    match result {
        Err(SwapError::Refused(r)) => r,
        Err(e) => panic!("refused for another reason than the signature: {e}"),
        Ok(v) => panic!("activated {}", v.label()),
    }
}

/// Unsigned, signed by another key, one flipped byte after signing: each
/// refused with its reason, counted, and the serving version untouched;
/// the signed file then activates.
#[test]
fn only_a_component_signed_by_a_trusted_key_is_activated() {
    let (_model, registry) = hostile_registry(test_keys());
    let scratch = tempfile::tempdir().unwrap();
    let unsigned = std::fs::read(common::hostile_wasm()).unwrap();
    let signed = std::fs::read(common::signed_hostile_wasm()).unwrap();
    let (other_sk, _) = new_pair(scratch.path(), "other");

    let before = (refused("unsigned"), refused("untrusted"));
    let file = write(scratch.path(), "unsigned.wasm", &unsigned);
    assert_eq!(refusal_of(registry.activate_file(&file, None)), Refusal::Unsigned);
    let file = write(scratch.path(), "other-key.wasm", &sign_with(&other_sk, &unsigned));
    assert_eq!(refusal_of(registry.activate_file(&file, None)), Refusal::Untrusted);
    // A byte of the code section (well past the signature section at the
    // front) changed after signing.
    let mut flipped = signed.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let file = write(scratch.path(), "flipped.wasm", &flipped);
    assert_eq!(refusal_of(registry.activate_file(&file, None)), Refusal::Untrusted);
    assert!(refused("unsigned") >= before.0 + 1.0 && refused("untrusted") >= before.1 + 2.0, "refusals are counted");
    assert_eq!(registry.current().seq, 1, "nothing was activated");

    let file = write(scratch.path(), "signed.wasm", &signed);
    let v2 = registry.activate_file(&file, None).expect("the signed component activates");
    assert_eq!(v2.seq, 2);
    // A rollback goes back to a version that passed the same check (the
    // history holds only activated versions).
    assert_eq!(registry.rollback().unwrap().seq, 1);
}

/// The format signs the sections, not the 8-byte preamble: a signed
/// component whose preamble says "core module" still carries a signature
/// wasmsign2 accepts. The host runs components only, so it refuses any
/// other preamble before it looks at the signature (and before compiling).
#[test]
fn a_swapped_preamble_is_refused_although_the_format_does_not_cover_it() {
    let signed = std::fs::read(common::signed_hostile_wasm()).unwrap();
    let mut module_preamble = signed.clone();
    module_preamble[4..8].copy_from_slice(&[0x01, 0x00, 0x00, 0x00]);
    let pk = wasmsign2::PublicKey::from_any(&std::fs::read(common::public_key()).unwrap()).unwrap();
    pk.verify(&mut std::io::Cursor::new(&module_preamble), None)
        .expect("wasmsign2 itself does not cover the preamble: the swapped file still verifies");
    let refusal = test_keys().verify(&module_preamble).unwrap_err();
    assert!(matches!(refusal, Refusal::NotAComponent(ref p) if p == "0061736d01000000"), "{refusal:?}");

    let (_model, registry) = hostile_registry(test_keys());
    let scratch = tempfile::tempdir().unwrap();
    let before = refused("not_a_component");
    let file = write(scratch.path(), "swapped.wasm", &module_preamble);
    assert!(matches!(refusal_of(registry.activate_file(&file, None)), Refusal::NotAComponent(_)));
    assert!(refused("not_a_component") >= before + 1.0);
    // Not wasm at all (a preamble-sized file of something else) is the same refusal.
    assert!(matches!(test_keys().verify(b"\x7fELF\x02\x01\x01\x00rest"), Err(Refusal::NotAComponent(_))));
}

/// Key rotation: with the old and the new key trusted, a component signed
/// by either is accepted, and one signed by both verifies under each alone.
#[test]
fn two_trusted_keys_accept_either_signature_and_a_doubly_signed_component() {
    let scratch = tempfile::tempdir().unwrap();
    let (new_sk, new_pk) = new_pair(scratch.path(), "new");
    let unsigned = std::fs::read(common::hostile_wasm()).unwrap();
    let old_signed = std::fs::read(common::signed_hostile_wasm()).unwrap();
    let new_signed = sign_with(&new_sk, &unsigned);
    let both = sign_with(&new_sk, &old_signed);

    let rotation = TrustedKeys::load(&[common::public_key(), new_pk.clone()]).unwrap();
    assert_eq!(rotation.verify(&old_signed), Ok(1));
    assert_eq!(rotation.verify(&new_signed), Ok(1));
    assert_eq!(rotation.verify(&both), Ok(2), "both signatures are valid");
    assert_eq!(test_keys().verify(&both), Ok(1), "still accepted where only the old key is trusted");
    assert_eq!(TrustedKeys::load(&[new_pk]).unwrap().verify(&both), Ok(1), "and where only the new one is");
    assert_eq!(test_keys().verify(&new_signed), Err(Refusal::Untrusted), "the new key alone is not the old one");

    // Through a real registry trusting both: each activates.
    let (_model, registry) = hostile_registry(rotation);
    for (name, bytes) in [("old.wasm", &old_signed), ("new.wasm", &new_signed), ("both.wasm", &both)] {
        let file = write(scratch.path(), name, bytes);
        registry.activate_file(&file, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(registry.current().seq, 4);
}

/// The admin endpoint's activation: an unsigned file in an allowed
/// directory is refused with the reason (422) and counted; the next signed
/// one activates.
#[test]
fn the_admin_endpoint_refuses_an_unsigned_file_and_then_activates_a_signed_one() {
    const TOKEN: &str = "trust-test-admin-token-0123456789";
    let (_model, registry) = hostile_registry(test_keys());
    let plugin_dir = tempfile::tempdir().unwrap();
    let mut config = llma_sentiment::config::Config::default();
    config.worker.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    config.worker.admin_token = Some(llma_sentiment::config::Secret::new(TOKEN));
    config.plugin.dir = Some(plugin_dir.path().to_path_buf());
    let settings = llma_sentiment::admin::AdminSettings::from_config(&config).unwrap().expect("the endpoint is on");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(llma_sentiment::admin::serve(settings, registry.clone())).unwrap();
    let addr = server.local_addr().to_string();
    let activate = |path: &Path| {
        let auth = format!("Bearer {TOKEN}");
        let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
        let (status, body) = common::ops::http(&addr, "POST", "/plugin/activate", &headers, &json!({"path": path}).to_string());
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };

    let before = refused("unsigned");
    let unsigned = plugin_dir.path().join("unsigned.wasm");
    std::fs::copy(common::hostile_wasm(), &unsigned).unwrap();
    let (status, body) = activate(&unsigned);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not signed"), "{body}");
    assert!(refused("unsigned") >= before + 1.0);
    assert_eq!(registry.current().seq, 1);

    let signed = plugin_dir.path().join("signed.wasm");
    std::fs::copy(common::signed_hostile_wasm(), &signed).unwrap();
    let (status, body) = activate(&signed);
    assert_eq!((status, body["activated"]["seq"].as_u64()), (200, Some(2)), "{body}");
}

/// The plugin directory: an unsigned file arriving is refused and counted,
/// the current version keeps serving, and a signed file arriving after it
/// is activated.
#[test]
fn the_plugin_directory_refuses_an_unsigned_file_and_then_activates_a_signed_one() {
    let (_model, registry) = hostile_registry(test_keys());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_rescan, rescan_rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = {
        let _entered = rt.enter();
        llma_sentiment::watcher::spawn(dir.path().to_path_buf(), registry.clone(), Duration::from_millis(50), rescan_rx)
    };

    // The files there when the watcher starts count as seen: let it take
    // its first look at the empty directory before one arrives.
    std::thread::sleep(Duration::from_secs(2));
    let before = refused("unsigned");
    std::fs::copy(common::hostile_wasm(), dir.path().join("a-unsigned.wasm")).unwrap();
    eventually("the unsigned file to be refused", || refused("unsigned") >= before + 1.0);
    assert_eq!(registry.current().seq, 1, "the current version keeps serving");

    // Newer than the refused one (the watcher serves the newest file).
    let signed = dir.path().join("b-signed.wasm");
    std::fs::copy(common::signed_hostile_wasm(), &signed).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options().append(true).open(&signed).unwrap().set_modified(later).unwrap();
    eventually("the signed file to be activated", || registry.current().seq == 2);
    assert_eq!(registry.current().source.as_deref(), Some(signed.as_path()));
}

/// At start: `--plugin FILE` (here `plugin check`, the worker's own load
/// path) with trusted keys refuses an unsigned file with the reason and
/// accepts the signed one; `plugin verify` says the same with `--key`.
#[test]
fn start_and_the_cli_refuse_an_unsigned_plugin_and_accept_a_signed_one() {
    let pk = common::public_key();
    let trusted = [("LLMA_SENTIMENT_PLUGIN_TRUSTED_KEYS", pk.to_str().unwrap())];
    // An empty bundle: the hostile plugin needs none, and the default
    // bundle's canaries are not its labels.
    let model = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.path().join(f), b"{}").unwrap();
    }
    let model = model.path().to_path_buf();
    let check = |wasm: &Path| {
        common::cli_env(&["--model", model.to_str().unwrap(), "plugin", "check", wasm.to_str().unwrap()], &trusted, b"")
    };
    let (ok, _, stderr) = check(&common::hostile_wasm());
    assert!(!ok && stderr.contains("refused: the component is not signed"), "{stderr}");
    let (ok, stdout, stderr) = check(&common::signed_hostile_wasm());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"ok\":true"), "{stdout}");

    // The worker refuses before it connects anywhere: given the file, or
    // starting with the newest file of its plugin directory (a cache of its
    // own: no version recorded by another test's worker).
    let (ok, _, stderr) = common::cli_env(&["--plugin", common::hostile_wasm().to_str().unwrap(), "worker"], &trusted, b"");
    assert!(!ok && stderr.contains("not signed"), "{stderr}");
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::copy(common::hostile_wasm(), dir.path().join("v1.wasm")).unwrap();
    let args = ["--cache-dir", cache.path().to_str().unwrap(), "worker", "--plugin-dir", dir.path().to_str().unwrap()];
    let (ok, _, stderr) = common::cli_env(&args, &trusted, b"");
    assert!(!ok && stderr.contains("v1.wasm refused: the component is not signed"), "{stderr}");

    // The embedded default is trusted as built in.
    let (ok, stdout, stderr) = common::cli_env(&["classify", "I love this"], &trusted, b"");
    assert!(ok && stdout.contains("positive"), "{stdout} {stderr}");

    let verify = |wasm: &Path| common::cli(&["plugin", "verify", "--key", pk.to_str().unwrap(), wasm.to_str().unwrap()], "");
    assert!(verify(&common::signed_plugin_wasm()).0);
    let (ok, _, stderr) = verify(&common::plugin_wasm());
    assert!(!ok && stderr.contains("not signed"), "{stderr}");
}

/// `plugin keygen` + `plugin sign` make a file `plugin verify` accepts with
/// that key and refuses with another; signing again adds a signature.
#[test]
fn keygen_sign_and_verify_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| common::cli(args, "");
    assert!(run(&["plugin", "keygen", "--secret", &p("a.sk"), "--public", &p("a.pk")]).0);
    assert!(run(&["plugin", "keygen", "--secret", &p("b.sk"), "--public", &p("b.pk")]).0);
    let (ok, _, stderr) = run(&["plugin", "keygen", "--secret", &p("a.sk"), "--public", &p("c.pk")]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let hostile = common::hostile_wasm();
    assert!(run(&["plugin", "sign", "--key", &p("a.sk"), hostile.to_str().unwrap(), "-o", &p("a.wasm")]).0);
    assert!(run(&["plugin", "verify", "--key", &p("a.pk"), &p("a.wasm")]).0);
    let (ok, _, stderr) = run(&["plugin", "verify", "--key", &p("b.pk"), &p("a.wasm")]);
    assert!(!ok && stderr.contains("no valid signature from a trusted key"), "{stderr}");
    assert!(run(&["plugin", "sign", "--key", &p("b.sk"), &p("a.wasm"), "-o", &p("ab.wasm")]).0);
    let (ok, stdout, _) = run(&["plugin", "verify", "--key", &p("a.pk"), "--key", &p("b.pk"), &p("ab.wasm")]);
    assert!(ok && stdout.contains("\"signed_by_trusted_keys\":2"), "{stdout}");
}

/// Without trusted keys, a worker with a plugin directory or an admin
/// endpoint says loudly who chooses its code (before anything slow: the
/// missing model stops it right after).
#[test]
fn a_worker_without_trusted_keys_warns_about_the_plugin_directory_and_the_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A cache of its own: no version recorded by another test's worker.
    let cache = tempfile::tempdir().unwrap();
    let env = [("LLMA_SENTIMENT_ADMIN_TOKEN", "trust-test-admin-token-0123456789"), ("LLMA_SENTIMENT_WORKER_ADMIN_ADDR", "127.0.0.1:0")];
    let (ok, _, stderr) = common::cli_env(
        &[
            "--log-format", "json", "--cache-dir", cache.path().to_str().unwrap(), "--model", "/nonexistent-model", "worker",
            "--plugin-dir", dir.path().to_str().unwrap(),
        ],
        &env,
        b"",
    );
    assert!(!ok, "the missing model stops it");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("\"WARN\"") && l.contains("without plugin.trusted_keys")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings.iter().any(|l| l.contains("plugin.dir")) && warnings.iter().any(|l| l.contains("admin endpoint")));
}

/// An engine with its own cache dir (snapshots off: artifacts only).
fn private_engine(dir: &Path) -> PluginEngine {
    let options = EngineOptions { snapshots: SnapshotPolicy::Off, ..EngineOptions::default() };
    PluginEngine::with_options(Limits::default(), Some(dir.to_path_buf()), options).expect("engine")
}

/// A compiled artifact changed on disk is never deserialized: its SHA-256
/// no longer matches the one recorded when it was written, so it is
/// deleted, counted and compiled again, and the plugin serves.
#[test]
fn a_tampered_artifact_is_discarded_rebuilt_and_counted_and_the_call_still_served() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("compiled");
    let model = common::model("default");
    let first = private_engine(&cache).load_plugin_file(&common::hostile_wasm(), &model).unwrap();
    assert!(!first.from_cache);
    drop(first);
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("the artifact was written");
    assert!(artifact.with_extension("digest").is_file(), "its digest beside it");

    let before = metric("llma_sentiment_plugin_cache_discarded_total{kind=\"artifact\",reason=\"mismatch\"}");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&artifact, &bytes).unwrap();
    let engine = private_engine(&cache);
    let rebuilt = Arc::new(engine.load_plugin_file(&common::hostile_wasm(), &model).unwrap());
    assert!(!rebuilt.from_cache, "a tampered artifact must be compiled again, not loaded");
    assert!(metric("llma_sentiment_plugin_cache_discarded_total{kind=\"artifact\",reason=\"mismatch\"}") >= before + 1.0);
    let served = InstanceSlot::new(rebuilt.clone()).get().unwrap().classify(&["hello".into()]).expect("the call is served");
    assert_eq!(served.len(), 1);
    assert!(engine.load_plugin_file(&common::hostile_wasm(), &model).unwrap().from_cache, "the rebuilt artifact is cached again");

    // An artifact without its digest (a write that crashed in between) is not loaded either.
    std::fs::remove_file(artifact.with_extension("digest")).unwrap();
    assert!(!private_engine(&cache).load_plugin_file(&common::hostile_wasm(), &model).unwrap().from_cache);
}

/// A cache dir others could write to, or holding a file of another user,
/// is refused with the path and why, by the engine and by the binary; a
/// new one is made 0700.
#[test]
fn a_cache_dir_others_can_write_to_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("new/cache");
    private_engine(&cache);
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700, "made private");

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770)).unwrap();
    let err = PluginEngine::with_options(Limits::default(), Some(cache.clone()), EngineOptions::default()).err().expect("refused");
    assert!(matches!(err, EngineError::CacheDir(_)), "{err}");
    assert!(err.to_string().contains("writable by group or others (mode 770)"), "{err}");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A file someone else owns (tests run as root: uid 65534 is nobody).
    let planted = cache.join(format!("{}.cwasm", "ab".repeat(32)));
    std::fs::write(&planted, b"not ours").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let err = PluginEngine::with_options(Limits::default(), Some(cache.clone()), EngineOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("is owned by uid 65534") && err.to_string().contains(&*planted.to_string_lossy()), "{err}");

    // The binary: a group-writable cache dir stops a command with the reason.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_llma-sentiment"));
    let out = cmd.args(["info"]).env("LLMA_SENTIMENT_CACHE_DIR", &shared).env_remove("LLMA_SENTIMENT_CONFIG").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cache dir refused") && stderr.contains("writable by group"), "{stderr}");
}
