//! Paths the Makefile hands to the tests. A missing one is a setup error,
//! not a reason to skip: run the tests through `make test`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use llma_sentiment::engine::{Limits, Plugin, PluginEngine};

fn env_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set: run the tests with `make test`"));
    let p = PathBuf::from(v);
    assert!(p.exists(), "{var}={} does not exist: run `make build` first", p.display());
    p
}

pub fn models_dir() -> PathBuf {
    env_path("LLMA_TEST_MODELS")
}

pub fn model(name: &str) -> PathBuf {
    models_dir().join(name)
}

pub fn plugin_wasm() -> PathBuf {
    env_path("LLMA_TEST_PLUGIN")
}

pub fn hostile_wasm() -> PathBuf {
    env_path("LLMA_TEST_HOSTILE_PLUGIN")
}

pub fn python() -> PathBuf {
    env_path("LLMA_TEST_PYTHON")
}

pub fn repo() -> PathBuf {
    env_path("LLMA_TEST_REPO")
}

/// A shared compile cache, so each test binary compiles a component once.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join("llma-test-cache")
}

pub fn engine(limits: Limits) -> PluginEngine {
    PluginEngine::new(limits, Some(cache_dir().join("compiled"))).expect("engine")
}

pub fn load(engine: &PluginEngine, wasm: &PathBuf, model: &PathBuf) -> Arc<Plugin> {
    Arc::new(engine.load_plugin_file(wasm, model).expect("plugin loads"))
}
