//! Starting one unit's workflow, until Temporal answers. The start is the
//! raw `StartWorkflowExecution` call, because its answer says whether this
//! call started the workflow or found it running (`started`), which the
//! SDK's handle does not tell.
//!
//! Id policies: conflict use-existing (a running workflow of the same id is
//! the one we meant: a re-read after a crash starts nothing) and reuse
//! allow-duplicate-failed-only (a finished one answers AlreadyExists; only a
//! failed one may run again, as PostHog's scheduler does). Temporal
//! unavailable: retried with backoff for as long as the unit's partition is
//! ours; nothing is dropped.

use std::time::Duration;

use backon::BackoffBuilder;
use temporalio_client::tonic::{self, Code};
use temporalio_client::Client;
use temporalio_common::protos::temporal::api::common::v1::{Payloads, WorkflowType};
use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, WorkflowIdConflictPolicy, WorkflowIdReusePolicy};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;

use super::batcher::Unit;

/// One start call waits at most this long (then it is retried).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This call started it.
    Started,
    /// The id was running or finished: nothing started twice.
    AlreadyStarted,
    /// Temporal refused the input itself (e.g. over its payload limit):
    /// retrying cannot help; counted, logged and committed past.
    Rejected(String),
    /// The partition is no longer ours: stopped retrying; the next owner re-reads it.
    Abandoned,
}

#[derive(Debug, Clone)]
pub struct StartSettings {
    pub namespace: String,
    pub task_queue: String,
    pub identity: String,
    pub execution_timeout: Duration,
}

/// A failed attempt: retried or final.
enum Attempt {
    Retry(String),
    Final(Outcome),
}

async fn attempt(client: &Client, settings: &StartSettings, unit: &Unit, request_id: &str) -> Attempt {
    let payload = crate::worker::WorkflowInput::payload(unit.input.clone());
    let request = StartWorkflowExecutionRequest {
        namespace: settings.namespace.clone(),
        workflow_id: unit.workflow_id.clone(),
        workflow_type: Some(WorkflowType { name: crate::worker::WORKFLOW_TYPE.to_string() }),
        task_queue: Some(TaskQueue { name: settings.task_queue.clone(), kind: TaskQueueKind::Normal as i32, normal_name: String::new() }),
        input: Some(Payloads { payloads: payload.payloads }),
        workflow_execution_timeout: settings.execution_timeout.try_into().ok(),
        identity: settings.identity.clone(),
        // The same request id on every attempt of this start: a retry whose
        // first answer was lost is recognised by the server as the same
        // request (and answers `started` again, truly). Not derived from
        // the workflow id: Temporal would answer a re-read after a crash
        // `started` too, and the count of workflows started twice would lie.
        request_id: request_id.to_string(),
        workflow_id_reuse_policy: WorkflowIdReusePolicy::AllowDuplicateFailedOnly as i32,
        workflow_id_conflict_policy: WorkflowIdConflictPolicy::UseExisting as i32,
        ..Default::default()
    };
    let mut service = client.connection().workflow_service();
    match tokio::time::timeout(CALL_TIMEOUT, service.start_workflow_execution(tonic::Request::new(request))).await {
        Err(_) => Attempt::Retry(format!("no answer within {CALL_TIMEOUT:?}")),
        Ok(Ok(response)) => Attempt::Final(if response.into_inner().started { Outcome::Started } else { Outcome::AlreadyStarted }),
        Ok(Err(status)) => match status.code() {
            Code::AlreadyExists => Attempt::Final(Outcome::AlreadyStarted),
            Code::InvalidArgument => Attempt::Final(Outcome::Rejected(status.message().to_string())),
            _ => Attempt::Retry(format!("{:?}: {}", status.code(), status.message())),
        },
    }
}

/// Starts `unit`'s workflow, retrying with backoff while `still_ours()`.
pub async fn start(client: &Client, settings: &StartSettings, unit: &Unit, still_ours: impl Fn() -> bool) -> Outcome {
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN)
        .with_max_delay(BACKOFF_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    let request_id = uuid::Uuid::new_v4().to_string();
    loop {
        if !still_ours() {
            return Outcome::Abandoned;
        }
        match attempt(client, settings, unit, &request_id).await {
            Attempt::Final(outcome) => return outcome,
            Attempt::Retry(error) => {
                crate::metrics::record_schedule_start_error();
                let wait = backoff.next().unwrap_or(BACKOFF_MAX);
                tracing::warn!(
                    workflow_id = %unit.workflow_id,
                    partition = unit.partition,
                    first_offset = unit.offsets.first().copied(),
                    error = %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "workflow start failed: retrying (the partition's offsets stay uncommitted)"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}
