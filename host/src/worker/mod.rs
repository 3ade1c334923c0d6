//! The Temporal side: the worker that polls the task queue, and the starter.

mod activity;
mod connection;
pub mod deadline;
mod input;
mod options;
pub mod stop;
pub mod rollout;
mod submit;
pub mod watchdog;
mod workflow;

use std::sync::Arc;

use anyhow::Context;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

pub use connection::{connect, connect_as, default_identity, TemporalConfig, TemporalConnectError, CONNECT_TIMEOUT};
pub use activity::{ClassificationSummary, Faults, HeartbeatDetails, SentimentActivities};
pub use crate::pipeline::EventOutcome;
pub use input::{InputError, WorkflowInput};
pub use submit::{dry_run, submit, SubmitOptions, SubmitReport, DEFAULT_BATCH_MAX_BYTES};
pub use stop::Stop;
pub use watchdog::Watchdog;
pub use options::*;
pub use workflow::*;

pub struct WorkerSetup {
    pub activities: SentimentActivities,
    /// Activity slots (tasks run at once); may exceed the plugin instances.
    pub concurrency: usize,
    /// The stop the activities also see (its grace period is the SDK's).
    pub stop: Stop,
    pub identity: String,
}

/// Polls until SIGTERM/SIGINT, then stops polling, lets in-flight
/// activities finish (they are cancelled after the grace period; each
/// writes what it classified before returning, within the stop's write
/// budget), and returns; at the stop's write deadline at the latest.
pub async fn run(temporal: &TemporalConfig, setup: WorkerSetup) -> anyhow::Result<()> {
    let runtime = Runtime::from_current_tokio(Default::default()).context("Temporal runtime")?;
    let client = connect_as(temporal, &setup.identity).await?;
    let options = WorkerOptions::new(temporal.task_queue.clone())
        .register_workflow::<SentimentWorkflow>()?
        .register_activities(setup.activities)
        .tuner(tuner(setup.concurrency))
        .graceful_shutdown_period(setup.stop.grace())
        .build();
    let mut worker = Worker::new(&runtime, client, options).context("creating the Temporal worker")?;
    let shutdown = worker.shutdown_handle();
    let stop = setup.stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.request();
        tracing::info!(budget_secs = stop.budget().as_secs(), "shutdown requested: no new tasks, finishing in-flight work");
        shutdown();
    });
    tracing::info!(task_queue = %temporal.task_queue, namespace = %temporal.namespace, address = %temporal.address, identity = %setup.identity, "worker polling");
    tokio::select! {
        ran = worker.run() => ran.context("worker stopped with an error")?,
        _ = setup.stop.write_deadline_passed() => {
            tracing::warn!("the stop's budget is spent: exiting with work in flight (Temporal retries it elsewhere)");
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Activity slots as configured (several per plugin instance: activities
/// spend most of their time on Temporal and ClickHouse round trips, and wait
/// for an instance when all are busy); workflow tasks are cheap and keep the
/// SDK's default.
fn tuner(activities: usize) -> TunerHolder {
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(100))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(activities))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(activities))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(10))
        .build()
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn activities(
    registry: Arc<crate::registry::Registry>,
    pool: Arc<crate::pool::InstancePool>,
    sink: Arc<crate::sink::ClickHouseSink>,
    options: crate::pipeline::PipelineOptions,
    cache: Arc<crate::cache::ResultCache>,
    watchdog: Arc<Watchdog>,
    stop: Stop,
    faults: Faults,
) -> SentimentActivities {
    SentimentActivities { registry, pool, sink, options, cache, watchdog, stop, faults }
}
