use std::ops::AsyncFnOnce;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llma_wasi_host::HostState;
use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::bindings::{self, Extraction, Labelling, MessageResult, OverallResult, PluginInfo, Scores, UserMessage};
use super::contract::{Contract, ContractBindings, ContractPre, PluginOptions};
use super::interrupt::{drive, on_epoch, run_under_limits, CallerDeadline, Interrupted, Stop};
use super::limiter::{CapExceeded, Capped, SandboxLimiter};
use super::{EngineError, Limits, Plugin, TrapKind, GUEST_MODEL_DIR};

/// Instantiates `component` in a sandboxed store under `limits` (no model
/// directory), contract or not: the caps that bite at instantiation (counts
/// of memories, tables and instances, initial sizes, start functions) are
/// the same for any component.
#[cfg(feature = "fault-injection")]
pub(super) fn instantiate_bare(
    linker: &wasmtime::component::Linker<HostState>,
    component: &wasmtime::component::Component,
    limits: &Limits,
) -> Result<(), EngineError> {
    let mut store = new_store(linker.engine(), limits, None)?;
    run_under_limits(&mut store, async |s| linker.instantiate_async(s, component).await.map(drop))
        .map_err(|e| EngineError::Instantiate(format!("{e:#}")))
}

/// The sandbox: the model directory read-only (when the instance must load
/// it), nothing else. No env, no args, no stdio, no sockets or name lookups.
fn sandbox(model_dir: Option<&Path>) -> Result<WasiCtx, EngineError> {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    // File reads run on the calling thread: `drive` has no reactor.
    b.allow_blocking_current_thread(true);
    b.socket_addr_check(|_, _| Box::pin(async { false }));
    if let Some(model_dir) = model_dir {
        b.preopened_dir(model_dir, GUEST_MODEL_DIR, FsPerms::ReadOnly).map_err(|e| EngineError::ModelDir {
            path: model_dir.display().to_string(),
            reason: format!("cannot preopen: {e:#}"),
        })?;
    }
    Ok(b.build())
}

/// A store's state under `limits`, its first call due within the load budget.
fn host_state(limits: &Limits, model_dir: Option<&Path>) -> Result<HostState, EngineError> {
    Ok(HostState {
        wasi: sandbox(model_dir)?,
        table: {
            // The WASI handles a guest holds live in host memory, outside
            // the linear memory cap: bounded on their own.
            let mut table = ResourceTable::new();
            table.set_max_capacity(limits.max_handles);
            table
        },
        limits: Box::new(SandboxLimiter::new(limits)),
        call_deadline: super::limits::deadline_after(limits.load_deadline),
        interrupt: None,
        cap: None,
    })
}

/// A store under `limits` and the load budget (fuel and deadline).
pub(super) fn new_store(engine: &wasmtime::Engine, limits: &Limits, model_dir: Option<&Path>) -> Result<Store<HostState>, EngineError> {
    let mut store = Store::new(engine, host_state(limits, model_dir)?);
    store.limiter(|s| &mut *s.limits);
    store.epoch_deadline_callback(on_epoch);
    // An engine without fuel metering (`EngineOptions::fuel`) has no fuel to set.
    if store.get_fuel().is_ok() {
        store.set_fuel(limits.load_fuel).map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
    }
    store.set_epoch_deadline(1);
    Ok(store)
}

/// A live plugin instance with its model loaded. After a trap it is
/// poisoned: every further call fails until the owner replaces it.
pub struct Instance {
    store: Store<HostState>,
    bindings: ContractBindings,
    info: PluginInfo,
    limits: Limits,
    poisoned: Option<TrapKind>,
    /// Fuel the last call consumed.
    pub last_fuel: u64,
}

impl Instance {
    /// An instance that loads its model from `model_dir`, or (`None`) one
    /// made from a snapshot whose memory already holds it: that one sees no
    /// directory at all and only answers `info`.
    pub(super) fn new(pre: &ContractPre, model_dir: Option<&Path>, limits: Limits) -> Result<Instance, EngineError> {
        let mut store = new_store(pre.engine(), &limits, model_dir)?;
        let bindings = pre.instantiate(&mut store).map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        let (call, outcome) = match model_dir {
            Some(_) => ("load", run_under_limits(&mut store, async |s| bindings.load(s, GUEST_MODEL_DIR).await)),
            None => ("info", run_under_limits(&mut store, async |s| bindings.info(s).await)),
        };
        let info = outcome.map_err(|e| trapped(call, &e))?.map_err(|error| EngineError::Plugin { call, error })?;
        Ok(Instance { store, bindings, info, limits, poisoned: None, last_fuel: 0 })
    }

    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The interface version this instance's component exports.
    pub fn contract(&self) -> Contract {
        self.bindings.contract()
    }

    pub fn poisoned(&self) -> Option<TrapKind> {
        self.poisoned
    }

    /// While `flag` is set, any call in flight stops at its next fuel yield (or epoch tick)
    /// (and poisons the instance, like any trap).
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.store.data_mut().interrupt = flag;
    }

    /// No call starts or runs past `cap` (each call's own budget still applies).
    pub fn set_deadline(&mut self, cap: Option<Instant>) {
        self.store.data_mut().cap = cap;
    }

    /// Runs one guest call under `deadline` and `fuel`; a trap poisons the instance.
    fn call<R>(
        &mut self,
        name: &'static str,
        deadline: Duration,
        fuel: u64,
        f: impl AsyncFnOnce(&ContractBindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        if let Some(kind) = self.poisoned {
            return Err(EngineError::Trapped { call: name, kind, detail: "instance was poisoned by an earlier trap".into() });
        }
        let now = Instant::now();
        let cap = self.store.data().cap;
        if cap.is_some_and(|c| now >= c) {
            return Err(EngineError::Trapped { call: name, kind: TrapKind::Deadline, detail: "the caller's deadline passed before the call".into() });
        }
        let metered = self.store.get_fuel().is_ok();
        if metered {
            self.store.set_fuel(fuel).map_err(|e| trapped(name, &e))?;
        }
        let own = super::limits::deadline_after(deadline);
        self.store.data_mut().call_deadline = cap.map_or(own, |c| c.min(own));
        self.store.set_epoch_deadline(1);
        let stop = Stop::of(self.store.data());
        let result = drive(f(&self.bindings, &mut self.store), &stop);
        self.last_fuel = if metered { fuel.saturating_sub(self.store.get_fuel().unwrap_or(0)) } else { 0 };
        result.map_err(|e| {
            let err = trapped(name, &e);
            self.poisoned = err.trap_kind();
            if let Some(kind) = self.poisoned {
                crate::metrics::record_trap(kind.as_str());
            }
            err
        })
    }

    pub fn extract(&mut self, ai_input_json: &str, options: Extraction) -> Result<Vec<UserMessage>, EngineError> {
        PluginOptions { extraction: options, labelling: Labelling::default() }.check(self.contract())?;
        // Extraction is linear in the input; budget it like one text.
        let (deadline, fuel) = (self.limits.classify_deadline(1), self.limits.classify_fuel(1, self.info.limits.max_tokens));
        self.call("extract", deadline, fuel, async |b, s| b.extract(s, ai_input_json, options).await)?
            .map_err(|error| EngineError::Plugin { call: "extract", error })
    }

    pub fn classify(&mut self, texts: &[String]) -> Result<Vec<MessageResult>, EngineError> {
        let deadline = self.limits.classify_deadline(texts.len());
        let fuel = self.limits.classify_fuel(texts.len(), self.info.limits.max_tokens);
        let started = Instant::now();
        let results = self
            .call("classify", deadline, fuel, async |b, s| b.classify(s, texts).await)?
            .map_err(|error| EngineError::Plugin { call: "classify", error })?;
        if results.len() != texts.len() {
            return Err(EngineError::Plugin {
                call: "classify",
                error: bindings::PluginError::Inference(format!("{} results for {} texts", results.len(), texts.len())),
            });
        }
        crate::metrics::record_inference(texts.len(), started.elapsed());
        Ok(results)
    }

    /// Labels and aggregates per-message results by `labelling` (the
    /// plugin's rules; a 1.0 plugin knows only the seed's).
    pub fn aggregate(&mut self, results: &[MessageResult], labelling: Labelling) -> Result<Option<OverallResult>, EngineError> {
        PluginOptions { extraction: Extraction::default(), labelling }.check(self.contract())?;
        let (deadline, fuel) = (self.limits.call_deadline_base, self.limits.fuel_base);
        self.call("aggregate", deadline, fuel, async |b, s| b.aggregate(s, results, labelling).await)?
            .map_err(|error| EngineError::Plugin { call: "aggregate", error })
    }

    /// Labels bare per-message scores and aggregates them (what `aggregate`,
    /// `trace` and `session` hand the plugin): interface 1.1 only.
    pub fn aggregate_scores(&mut self, scores: &[Scores], labelling: Labelling) -> Result<Option<OverallResult>, EngineError> {
        if self.contract() < Contract::V1_1 {
            return Err(EngineError::Unsupported(format!("aggregating bare scores needs interface 1.1; the plugin exports {}", self.contract())));
        }
        let (deadline, fuel) = (self.limits.call_deadline_base, self.limits.fuel_base);
        self.call("aggregate", deadline, fuel, async |b, s| b.aggregate_scores(s, scores, labelling).await)?
            .map_err(|error| EngineError::Plugin { call: "aggregate", error })
    }
}

pub(super) fn trapped(call: &'static str, e: &wasmtime::Error) -> EngineError {
    EngineError::Trapped { call, kind: trap_kind_of(e), detail: format!("{e:#}") }
}

/// Owns at most one instance of a plugin and replaces it when a trap poisoned
/// it, so a caller never sees "cannot enter component instance".
pub struct InstanceSlot {
    plugin: Arc<Plugin>,
    instance: Option<Instance>,
    interrupt: Option<Arc<AtomicBool>>,
    cap: Option<Instant>,
}

impl InstanceSlot {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        InstanceSlot { plugin, instance: None, interrupt: None, cap: None }
    }

    /// Calls made through this slot never run past `cap` (the caller's deadline).
    pub fn set_deadline(&mut self, cap: Option<Instant>) {
        self.cap = cap;
        if let Some(i) = self.instance.as_mut() {
            i.set_deadline(cap);
        }
    }

    /// The caller's deadline (`set_deadline`), for the waits around its calls.
    pub fn deadline(&self) -> Option<Instant> {
        self.cap
    }

    /// Calls made through this slot stop when `flag` is set.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    pub fn clear_interrupt(&mut self) {
        self.interrupt = None;
        self.cap = None;
        if let Some(i) = self.instance.as_mut() {
            i.set_interrupt(None);
            i.set_deadline(None);
        }
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The live instance, instantiating a fresh one if there is none or the
    /// last one trapped.
    pub fn get(&mut self) -> Result<&mut Instance, EngineError> {
        let instance = match self.instance.take() {
            Some(live) if live.poisoned().is_none() => live,
            Some(trapped) => {
                tracing::warn!(trap = ?trapped.poisoned(), "replacing a trapped plugin instance");
                drop(trapped);
                self.plugin.instantiate()?
            }
            None => self.plugin.instantiate()?,
        };
        let instance = self.instance.insert(instance);
        instance.set_interrupt(self.interrupt.clone());
        instance.set_deadline(self.cap);
        Ok(instance)
    }
}

/// Which [`TrapKind`] a wasmtime error is.
fn trap_kind_of(err: &wasmtime::Error) -> TrapKind {
    use wasmtime::Trap;
    if err.downcast_ref::<Interrupted>().is_some() {
        return TrapKind::Cancelled;
    }
    if err.downcast_ref::<CallerDeadline>().is_some() {
        return TrapKind::Deadline;
    }
    if let Some(cap) = err.downcast_ref::<CapExceeded>() {
        return match cap.capped {
            Capped::Memory => TrapKind::MemoryLimit,
            Capped::TableElements => TrapKind::TableLimit,
        };
    }
    if err.chain().any(|e| e.downcast_ref::<wasmtime::component::ResourceTableError>().is_some())
        || format!("{err:#}").contains("resource table has no free keys")
    {
        return TrapKind::HandleLimit;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => TrapKind::Deadline,
        Some(Trap::OutOfFuel) => TrapKind::OutOfFuel,
        Some(Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(Trap::UnreachableCodeReached) => TrapKind::Panic,
        Some(Trap::MemoryOutOfBounds) => TrapKind::MemoryFault,
        _ => TrapKind::Other,
    }
}
