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

use wasmtime::component::{Instance, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wizer::{ComponentContext, WasmtimeWizerComponent, Wizer};
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
    futures::executor::block_on(wizer.snapshot_component(cx, &mut WasmtimeWizerComponent { store, instance }))
}
