//! The workflow `llma-run-sentiment-classification`: one activity with the
//! seed's options (configurable, `options.rs`). Whoever starts it sets the
//! execution timeout (10 min).

use temporalio_common::data_converters::RawValue;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::activity::{ClassificationSummary, SentimentActivities};
use super::options::activity_options;

pub const WORKFLOW_TYPE: &str = "llma-run-sentiment-classification";
pub const ACTIVITY_TYPE: &str = "classify_sentiment_activity";

#[workflow]
#[derive(Default)]
pub struct SentimentWorkflow;

#[workflow_methods]
impl SentimentWorkflow {
    #[run(name = "llma-run-sentiment-classification")]
    /// The input goes to the activity undecoded (see `WorkflowInput::decode`).
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: RawValue) -> WorkflowResult<ClassificationSummary> {
        let summary = ctx.execute_activity(SentimentActivities::classify, input, activity_options()).await?;
        Ok(summary)
    }
}
