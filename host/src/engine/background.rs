//! Preparing a new plugin version (Cranelift compile, snapshot creation,
//! self-test: about a minute of both cores on the production model) while
//! the current version serves. Run at the serving threads' priority, it
//! takes its share of the CPU from the tasks in flight and slows them (the
//! figures: docs/performance.md, "Measured and not shipped"); run below it,
//! tasks keep the cores they need and the activation gets every core they
//! leave idle.

/// The default nice increment of the preparing threads (`plugin.activation_nice`).
pub const DEFAULT_NICE_INCREMENT: u8 = 10;

/// Runs `work` on threads of its own, `increment` nice steps below the
/// caller (0: on the calling thread, at its priority). Cranelift's parallel
/// compile runs on the rayon pool `work` was entered from, so it runs on
/// these threads too.
pub fn below_serving<T: Send>(increment: u8, work: impl FnOnce() -> T + Send) -> T {
    if increment == 0 {
        return work();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("llma-prepare-{i}"))
        .start_handler(move |_| lower_this_thread(increment))
        .build();
    match pool {
        Ok(pool) => pool.install(work),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the preparing threads: preparing at the serving priority");
            work()
        }
    }
}

/// The calling thread's nice value.
fn nice_of_this_thread() -> i32 {
    // Linux keeps a nice value per thread: "process" 0 is the calling thread.
    rustix::process::getpriority_process(None).unwrap_or(0)
}

fn lower_this_thread(increment: u8) {
    let nice = nice_of_this_thread().saturating_add(increment.into()).min(19);
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(error = %e, "cannot lower a preparing thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn the_work_and_its_parallel_parts_run_below_the_caller() {
        let caller = nice_of_this_thread();
        let (inside, parts) = below_serving(DEFAULT_NICE_INCREMENT, || {
            let parts: Vec<i32> = (0..64).into_par_iter().map(|_| nice_of_this_thread()).collect();
            (nice_of_this_thread(), parts)
        });
        let lowered = (caller + i32::from(DEFAULT_NICE_INCREMENT)).min(19);
        assert_eq!(inside, lowered);
        assert!(parts.iter().all(|&n| n == lowered), "{parts:?}");
        assert_eq!(nice_of_this_thread(), caller, "the caller's own priority is untouched");
    }

    #[test]
    fn no_increment_runs_on_the_calling_thread() {
        let caller = std::thread::current().id();
        assert_eq!(below_serving(0, || std::thread::current().id()), caller);
    }
}
