//! What a plugin instance's store holds, the linker that gives it WASI, and
//! the snapshot of an instance's state.
//!
//! This lives apart from the host crate for one reason: wasmtime-wasi's
//! glue (every host function, and the copy of each byte a guest reads into
//! its memory) and wasmtime-wizer's snapshot (a scan of the whole heap) are
//! generic over the store's state, so they are compiled in the crate that
//! names that state. Compiled into the host crate at dev-build opt-level 0,
//! the copies dominated the load of a large model (docs/performance.md);
//! here the dev profile optimises them like any dependency. The sandbox's
//! policy (what the WASI context allows, the limits, how a call stops, when
//! a snapshot is made) stays in the host's engine.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Instance, Lift, Linker, ResourceTable, WasmList};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    /// What the instance may allocate (the host's totals over every memory
    /// and table).
    pub limits: Box<dyn ResourceLimiter + Send>,
    /// When the call in flight must stop.
    pub call_deadline: Instant,
    /// Set by the owner to stop the call in flight (activity cancelled).
    pub interrupt: Option<Arc<AtomicBool>>,
    /// The owner's own deadline (the activity attempt's): no call runs past it.
    pub cap: Option<Instant>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A linker with WASI (preview 2) for stores holding a [`HostState`].
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// The pre-initialised component of `instance` (its init export has run):
/// `wizer` and `cx` are those that instrumented it.
pub fn snapshot(wizer: &Wizer, cx: &ComponentContext<'_>, store: &mut Store<HostState>, instance: Instance) -> wasmtime::Result<Vec<u8>> {
    let mut state = Accessors { store, instance, failed: None };
    // After an accessor fails wasmtime-wizer goes on with what it got (the
    // trait's calls cannot fail) and may panic on it; the accessor's error
    // is the one to report, whatever followed it.
    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures::executor::block_on(wizer.snapshot_component(cx, &mut state))));
    match (state.failed, made) {
        (Some(e), _) => Err(e.context("read the instance's state")),
        (None, Ok(made)) => made,
        (None, Err(panic)) => std::panic::resume_unwind(panic),
    }
}

/// The instance's state as wasmtime-wizer reads it: through the accessor
/// functions its instrumentation exported. Implemented here rather than by
/// the crate's `wasmtime` feature, which also turns on wasmtime's compile
/// cache, GC, threads and WAVE parser, none of which the host uses. The
/// crate's own form unwraps every call; this one keeps the first error, and
/// no accessor runs after it.
struct Accessors<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    failed: Option<wasmtime::Error>,
}

impl Accessors<'_> {
    async fn call<R: Lift + Send + Sync + 'static, O: Default>(&mut self, instance: &str, func: &str, read: impl FnOnce(&Store<HostState>, R) -> O) -> O {
        if self.failed.is_some() {
            return O::default();
        }
        match self.try_call(instance, func).await {
            Ok(value) => read(self.store, value),
            Err(e) => {
                self.failed = Some(e.context(format!("{instance}#{func}")));
                O::default()
            }
        }
    }

    async fn try_call<R: Lift + Send + Sync + 'static>(&mut self, instance: &str, func: &str) -> wasmtime::Result<R> {
        let missing = || wasmtime::format_err!("no such export");
        let (_, outer) = self.instance.get_export(&mut *self.store, None, instance).ok_or_else(missing)?;
        let (_, inner) = self.instance.get_export(&mut *self.store, Some(&outer), func).ok_or_else(missing)?;
        let typed = self.instance.get_typed_func::<(), (R,)>(&mut *self.store, inner)?;
        Ok(typed.call_async(&mut *self.store, ()).await?.0)
    }
}

impl ComponentInstanceState for Accessors<'_> {
    async fn call_func_ret_list_u8(&mut self, instance: &str, func: &str, contents: impl FnOnce(&[u8]) + Send) {
        self.call(instance, func, |store, list: WasmList<u8>| contents(list.as_le_slice(store))).await
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v: i32| v).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v: i64| v).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits()).await
    }
}
