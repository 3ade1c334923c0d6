//! How a guest call in flight is ended: its own deadline, its owner's
//! deadline (what is left of an activity attempt) or an interrupt (the owner
//! dropped or cancelled it). Checked on every epoch tick, or between two fuel
//! slices when fuel metering drives the call.

use std::future::Future;
use std::ops::AsyncFnOnce;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use llma_wasi_host::HostState;
use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline};

/// The error a call ends with when its owner interrupted it (not the
/// plugin's fault: not a trap to skip or retry on).
#[derive(Debug, thiserror::Error)]
#[error("plugin call interrupted: {0}")]
pub struct Interrupted(pub(super) &'static str);

/// The error a call ends with when its owner's deadline (what is left of an
/// activity attempt) passed: out of time like its own deadline, so a retry
/// gets a fresh attempt and the last attempt skips the message.
#[derive(Debug, thiserror::Error)]
#[error("plugin call stopped: the caller's deadline passed")]
pub struct CallerDeadline;

/// Sets an interrupt flag when dropped: whoever holds it (an activity
/// future) stops the plugin call running for it on a blocking thread as soon
/// as it is dropped or cancelled, at the call's next fuel yield.
#[derive(Debug)]
pub struct InterruptOnDrop(Arc<AtomicBool>);

impl InterruptOnDrop {
    pub fn new() -> InterruptOnDrop {
        InterruptOnDrop(Arc::new(AtomicBool::new(false)))
    }

    /// The flag to hand to [`InstanceSlot::set_interrupt`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Interrupts now, without waiting for the drop.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for InterruptOnDrop {
    fn default() -> Self {
        InterruptOnDrop::new()
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// Fuel between two points where a call in flight yields to `drive`, which
/// then checks its deadlines and interrupt. Calls burn ~3e10 fuel a second
/// in the model's kernels and ~1e9 in a tight guest loop, so this is a check
/// every few milliseconds, and well within a second even for a spinning guest.
const YIELD_FUEL: u64 = 50_000_000;

/// What ends a call in flight, read before it starts: while it runs the
/// store is the call's.
pub(super) struct Stop {
    interrupt: Option<Arc<AtomicBool>>,
    cap: Option<Instant>,
    deadline: Instant,
}

impl Stop {
    pub(super) fn of(state: &HostState) -> Stop {
        Stop { interrupt: state.interrupt.clone(), cap: state.cap, deadline: state.call_deadline }
    }

    /// The error the call ends with if it must end now: an interrupt, the
    /// owner's deadline, or its own deadline (wall time).
    fn check(&self) -> wasmtime::Result<()> {
        if self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
            return Err(wasmtime::Error::new(Interrupted("by its caller")));
        }
        let now = Instant::now();
        if self.cap.is_some_and(|cap| now >= cap) {
            return Err(wasmtime::Error::new(CallerDeadline));
        }
        if now >= self.deadline {
            return Err(Trap::Interrupt.into());
        }
        Ok(())
    }
}

/// Runs on every epoch tick of a call in flight (engines with epoch
/// interruption on).
pub(super) fn on_epoch(ctx: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    Stop::of(ctx.data()).check()?;
    Ok(UpdateDeadline::Continue(1))
}

/// Runs a guest call to its end on this thread. With fuel metering the call
/// yields every `YIELD_FUEL` (the store's async yield interval), and between
/// two slices `stop` is checked: a call that must end is dropped, which
/// unwinds the guest (the caller then poisons the instance, as for a trap).
/// That is how the deadline and cancellation work without epoch checks;
/// with them (`Metering::Epoch`, the default) `on_epoch` checks `stop` on
/// every tick and the call never yields. Nothing else in a call waits (the
/// sandbox's only I/O is the model directory, read on this thread), so a
/// pending poll is a yield.
pub(super) fn drive<T>(call: impl Future<Output = wasmtime::Result<T>>, stop: &Stop) -> wasmtime::Result<T> {
    let mut call = std::pin::pin!(call);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => stop.check()?,
        }
    }
}

/// Runs `f` on a store made by `new_store` (no `Instance` around it:
/// the snapshot step), yielding on fuel and stopping at the store's deadline
/// like any call.
pub(super) fn run_under_limits<R>(
    store: &mut Store<HostState>,
    f: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    if store.get_fuel().is_ok() {
        store.fuel_async_yield_interval(Some(YIELD_FUEL))?;
    }
    let stop = Stop::of(store.data());
    drive(f(store), &stop)
}
