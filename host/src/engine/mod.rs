//! The wasmtime side: one `PluginEngine` per process (engine, compile
//! cache, snapshots), one `Plugin` per plugin version (compiled,
//! pre-initialised when it can be, and pre-instantiated once), and
//! `Instance`s whose every call runs under a wall-clock deadline, checked
//! on epoch ticks or fuel yields, and with fuel metering a fuel budget
//! (`Metering`). A trapped instance is poisoned and must be replaced;
//! `InstanceSlot` does that for its owner. Callers ask for a plugin and get
//! one whose instances come ready; how (snapshot or model load) is the
//! engine's business, reported in `Plugin::instance_start`.

pub mod background;
mod bindings;
mod cache;
pub mod cache_dir;
mod contract;
pub mod cpu;
mod error;
mod function_cache;
mod instance;
mod integrity;
mod interrupt;
mod limiter;
mod limits;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine};

pub use bindings::{
    AggregationRule, ExtractOptions, Extraction, Label, Labelling, MessageResult, OverallResult, PluginError, PluginInfo,
    PluginLimits, Scores, Truncation, UserMessage,
};
pub use contract::{Contract, PluginOptions};
pub use cache::{sha256_hex, write_atomically, CompileCache, DEFAULT_BUDGET_BYTES as DEFAULT_CACHE_BUDGET_BYTES};
pub use error::{EngineError, TrapKind};
pub use function_cache::FunctionStats;
pub use instance::{Instance, InstanceSlot};
pub use interrupt::InterruptOnDrop;
pub use llma_wasi_host::HostState;
pub use limits::{Limits, Metering};
pub use snapshot::{Fallback, SnapshotPolicy};

/// The newest WIT interface version this host speaks; a plugin of another
/// major version is refused, one of an older minor serves what it has.
pub const INTERFACE_VERSION: &str = "1.1.0";

/// How events and logs name a plugin build: its version and build hash.
pub fn version_label(info: &PluginInfo, wasm_sha256: &str) -> String {
    format!("{}+{}", info.version, &wasm_sha256[..wasm_sha256.len().min(12)])
}

/// Guest path of the read-only model directory.
pub const GUEST_MODEL_DIR: &str = "/model";

/// How a `PluginEngine` is set up; the defaults are the worker's.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub snapshots: SnapshotPolicy,
    /// Disk the compile cache (artifacts and snapshots) may take; the least
    /// recently used entries go when a new one would pass it.
    pub cache_budget_bytes: u64,
    /// Write `/tmp/perf-PID.map` naming the compiled guest functions, so
    /// `perf report` attributes samples to them (`llma-bench compare
    /// --perf-map`); off in the worker.
    pub perf_map: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { snapshots: SnapshotPolicy::default(), cache_budget_bytes: cache::DEFAULT_BUDGET_BYTES, perf_map: false }
    }
}

pub struct PluginEngine {
    engine: Engine,
    limits: Limits,
    options: EngineOptions,
    cache: CompileCache,
    functions: Arc<function_cache::FunctionCache>,
    /// One load at a time: the function store is one per engine.
    loading: parking_lot::Mutex<()>,
    ticker: EpochTicker,
}

impl PluginEngine {
    pub fn with_options(limits: Limits, cache_dir: Option<PathBuf>, options: EngineOptions) -> Result<Self, EngineError> {
        // Native code is loaded from it: nobody else may be able to write it.
        if let Some(dir) = &cache_dir {
            cache_dir::secure(dir)?;
        }
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(limits.metering.fuel());
        config.epoch_interruption(limits.metering.epoch());
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // The plugin's kernel uses relaxed SIMD's `f32x4.relaxed_madd` (the
        // host's FMA where it has one); deterministic mode would make it a
        // call per product.
        config.wasm_relaxed_simd(true);
        config.relaxed_simd_deterministic(false);
        // A snapshot's heap is one memory image up to the memory cap, so
        // instances map it copy-on-write instead of copying it in.
        config.memory_guaranteed_dense_image_size(limits.memory_bytes as u64);
        if options.perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let functions = Arc::new(function_cache::FunctionCache::default());
        config.enable_incremental_compilation(functions.clone()).map_err(|e| EngineError::Compile(format!("engine: {e:#}")))?;
        let engine = Engine::new(&config).map_err(|e| EngineError::Compile(format!("engine: {e:#}")))?;
        let ticker = if limits.metering.epoch() { EpochTicker::start(engine.clone(), limits.epoch_tick)? } else { EpochTicker::none() };
        Ok(PluginEngine { engine, limits, options, cache: CompileCache::new(cache_dir, options.cache_budget_bytes), functions, loading: Default::default(), ticker })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    /// Reads, compiles (or loads from the cache) and pre-instantiates a
    /// plugin; `model_dir` is what its instances will see, read-only.
    pub fn load_plugin_file(&self, path: &Path, model_dir: &Path) -> Result<Plugin, EngineError> {
        let wasm = std::fs::read(path).map_err(|source| EngineError::ReadPlugin { path: path.display().to_string(), source })?;
        self.load_plugin(&wasm, model_dir)
    }

    /// A plugin whose instances come ready: from a pre-initialised snapshot
    /// (made now if the policy allows and none is cached), else by loading
    /// the model in each instance.
    pub fn load_plugin(&self, wasm: &[u8], model_dir: &Path) -> Result<Plugin, EngineError> {
        let _one_at_a_time = self.loading.lock();
        let functions = self.cache.dir().map(|dir| function_cache::path(&self.engine, dir));
        self.functions.begin(functions.as_deref());
        let plugin = self.prepare_plugin(wasm, model_dir);
        let stats = self.functions.finish(functions.as_deref());
        if stats.compiled > 0 || stats.reused > 0 {
            tracing::info!(compiled = stats.compiled, reused = stats.reused, "compiled the plugin: its functions compiled now and reused from earlier compiles");
        }
        plugin.map(|plugin| Plugin { functions: stats, ..plugin })
    }

    /// Test hook: instantiates any component under this engine's sandbox
    /// and limits, without looking for the contract (see
    /// `instance::instantiate_bare`).
    #[cfg(feature = "fault-injection")]
    pub fn instantiate_bare(&self, wasm: &[u8]) -> Result<(), EngineError> {
        let component = wasmtime::component::Component::new(&self.engine, wasm)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        let linker = llma_wasi_host::linker(&self.engine).map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        instance::instantiate_bare(&linker, &component, &self.limits)
    }

    fn prepare_plugin(&self, wasm: &[u8], model_dir: &Path) -> Result<Plugin, EngineError> {
        let model_dir = check_model_dir(model_dir)?;
        let started = Instant::now();
        let (component, from_cache) = self.cache.load_or_compile(&self.engine, wasm)?;
        let compile_time = started.elapsed();
        let wasm_sha256 = sha256_hex(wasm);
        let model_identity = model_identity(&model_dir);
        let key = snapshot::key(&self.engine, &wasm_sha256, &model_identity);
        let made = snapshot::load_or_create(snapshot::Request {
            engine: &self.engine,
            policy: self.options.snapshots,
            dir: self.cache.dir(),
            compile_cache: &self.cache,
            wasm,
            plain: &component,
            model_dir: &model_dir,
            key: &key,
            limits: &self.limits,
        });
        let (component, instance_start) = match made {
            Ok(s) => {
                crate::metrics::record_snapshot(if s.created { "created" } else { "reused" });
                tracing::info!(
                    path = %s.path.display(),
                    created = s.created,
                    ms = s.took.as_millis() as u64,
                    file_mb = s.file_bytes >> 20,
                    "plugin instances start from a pre-initialised snapshot"
                );
                let instance_start =
                    InstanceStart::Snapshot { path: s.path, created: s.created, took: s.took, file_bytes: s.file_bytes };
                (s.component, instance_start)
            }
            Err(why) => {
                crate::metrics::record_snapshot_fallback(why.reason());
                if why.is_failure() {
                    tracing::warn!(reason = %why, "no plugin snapshot: every instance loads the model itself");
                } else {
                    tracing::debug!(reason = %why, "no plugin snapshot");
                }
                (component, InstanceStart::Load(why))
            }
        };
        let linker = llma_wasi_host::linker(&self.engine).map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        let contract = Contract::of(&component, &self.engine)?;
        let pre = linker.instantiate_pre(&component).map_err(|e| EngineError::WrongWorld(format!("{e:#}")))?;
        let pre = contract::ContractPre::new(contract, pre)?;
        Ok(Plugin {
            pre,
            contract,
            model_identity,
            model_dir,
            limits: self.limits.clone(),
            wasm_sha256,
            from_cache,
            compile_time,
            functions: FunctionStats::default(),
            instance_start,
            model_digest: std::sync::OnceLock::new(),
            _epochs: self.ticker.token.clone(),
        })
    }
}

/// How a plugin's instances get their model.
#[derive(Debug, Clone)]
pub enum InstanceStart {
    /// Mapped from a pre-initialised snapshot (`created` now or cached).
    Snapshot { path: PathBuf, created: bool, took: Duration, file_bytes: u64 },
    /// Each instance loads the model itself, for this reason.
    Load(Fallback),
}

fn check_model_dir(dir: &Path) -> Result<PathBuf, EngineError> {
    let err = |reason: &str| EngineError::ModelDir { path: dir.display().to_string(), reason: reason.to_string() };
    let dir = dir.canonicalize().map_err(|e| err(&e.to_string()))?;
    if !dir.is_dir() {
        return Err(err("not a directory"));
    }
    for file in ["model.onnx", "tokenizer.json", "config.json"] {
        if !dir.join(file).is_file() {
            return Err(err(&format!("missing {file}")));
        }
    }
    Ok(dir)
}

/// The files of a model bundle that determine its results.
pub const MODEL_FILES: [&str; 4] = ["model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"];

/// Names the model files a plugin loads: their directory, sizes and
/// modification times. Cheap (no hashing of a ~500 MB model), and changes
/// when a bundle is replaced in place.
fn model_identity(dir: &Path) -> String {
    let mut id = dir.display().to_string();
    for file in MODEL_FILES {
        let meta = std::fs::metadata(dir.join(file)).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        id.push_str(&format!("|{file}:{len}:{mtime}"));
    }
    id
}

/// One plugin version, compiled and linked; instantiating it is cheap.
pub struct Plugin {
    pre: contract::ContractPre,
    /// The interface version the component exports.
    pub contract: Contract,
    model_dir: PathBuf,
    limits: Limits,
    /// Identifies the plugin build (SHA-256 of the component bytes).
    pub wasm_sha256: String,
    /// Identifies the model files (see `model_identity`); with `wasm_sha256`
    /// it scopes the result cache.
    pub model_identity: String,
    /// Whether the compiled artifact came from the disk cache.
    pub from_cache: bool,
    /// Time to compile, or to load the cached artifact.
    pub compile_time: Duration,
    /// Functions Cranelift compiled and reused for this load, over every
    /// form compiled (see `function_cache`).
    pub functions: FunctionStats,
    /// Snapshot or model load, and why.
    pub instance_start: InstanceStart,
    /// SHA-256 over the model files' contents, computed on first use.
    model_digest: std::sync::OnceLock<String>,
    /// Keeps the epoch ticker running while instances may exist.
    _epochs: Arc<()>,
}

impl Plugin {
    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// SHA-256 over the model files' contents (what workers on other
    /// machines, other paths and mtimes, share a result cache by). Computed
    /// once per loaded plugin, on first use (a 500 MB model takes about a
    /// second), and never under a lock other callers wait on for anything
    /// else. An unreadable file counts by the local identity instead, which
    /// never matches another machine's: a miss, never a mix-up.
    pub fn model_content_digest(&self) -> &str {
        self.model_digest.get_or_init(|| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for file in MODEL_FILES {
                h.update(file.as_bytes());
                match std::fs::File::open(self.model_dir.join(file)) {
                    Ok(mut f) => {
                        if std::io::copy(&mut f, &mut h).is_err() {
                            h.update(self.model_identity.as_bytes());
                        }
                    }
                    Err(_) => h.update(b"-"),
                }
            }
            hex::encode(h.finalize())
        })
    }

    /// The wall-time budget of one `classify` call of `texts` texts.
    pub fn classify_deadline(&self, texts: usize) -> Duration {
        self.limits.classify_deadline(texts)
    }

    pub fn from_snapshot(&self) -> bool {
        matches!(self.instance_start, InstanceStart::Snapshot { .. })
    }

    /// A new instance with its model loaded: mapped from the snapshot, or
    /// loaded by the instance under the load budget.
    pub fn instantiate(&self) -> Result<Instance, EngineError> {
        let model_dir = (!self.from_snapshot()).then_some(self.model_dir.as_path());
        Instance::new(&self.pre, model_dir, self.limits.clone())
    }
}

/// Advances the engine's epoch every tick, so epoch deadlines measure wall
/// time. The thread runs while the engine or any plugin holds the token.
struct EpochTicker {
    token: Arc<()>,
}

impl EpochTicker {
    /// An engine without epoch interruption has nothing to tick.
    fn none() -> Self {
        EpochTicker { token: Arc::new(()) }
    }

    fn start(engine: Engine, tick: Duration) -> Result<Self, EngineError> {
        let token = Arc::new(());
        let weak: Weak<()> = Arc::downgrade(&token);
        std::thread::Builder::new()
            .name("llma-epoch-ticker".into())
            .spawn(move || {
                while weak.upgrade().is_some() {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| EngineError::Instantiate(format!("cannot start the epoch ticker: {e}")))?;
        Ok(EpochTicker { token })
    }
}
