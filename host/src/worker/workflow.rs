//! The workflow `llma-run-sentiment-classification`: one activity with the
//! seed's options. Whoever starts it sets the execution timeout (10 min).

use std::time::Duration;

use serde_json::Value;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use super::activity::{ClassificationSummary, SentimentActivities};

pub const WORKFLOW_TYPE: &str = "llma-run-sentiment-classification";
pub const ACTIVITY_TYPE: &str = "classify_sentiment_activity";
/// Set by the starter (see `submit`), not by the workflow.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const START_TO_CLOSE: Duration = Duration::from_secs(2 * 60);
pub const SCHEDULE_TO_CLOSE: Duration = Duration::from_secs(5 * 60);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_ATTEMPTS: u32 = 2;
pub const RETRY_INITIAL_INTERVAL: Duration = Duration::from_secs(2);
pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(10);

pub fn activity_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(temporalio_common::ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: SCHEDULE_TO_CLOSE,
        start_to_close: START_TO_CLOSE,
    })
    .heartbeat_timeout(HEARTBEAT_TIMEOUT)
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(RETRY_INITIAL_INTERVAL)
            .maximum_interval(RETRY_MAX_INTERVAL)
            .maximum_attempts(MAX_ATTEMPTS)
            .build(),
    )
    .build()
}

#[workflow]
#[derive(Default)]
pub struct SentimentWorkflow;

#[workflow_methods]
impl SentimentWorkflow {
    #[run(name = "llma-run-sentiment-classification")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: Value) -> WorkflowResult<ClassificationSummary> {
        let summary = ctx.execute_activity(SentimentActivities::classify, input, activity_options()).await?;
        Ok(summary)
    }
}
