//! The workflow `llma-run-sentiment-classification`: one activity with the
//! seed's options (configurable, `options.rs`). Whoever starts it sets the
//! execution timeout (10 min).

use temporalio_common::data_converters::RawValue;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::activity::{ClassificationSummary, SentimentActivities};
use super::input::WorkflowInput;
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
    /// A batch that does not fit one activity goes on in further rounds,
    /// each a new activity with its own attempts, from the first event the
    /// round before did not reach. A round that reaches no event marks the
    /// rest missed instead of asking for another, so every round moves on.
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: RawValue) -> WorkflowResult<ClassificationSummary> {
        let mut summary = ctx.execute_activity(SentimentActivities::classify, input.clone(), activity_options()).await?;
        let mut from = 0;
        while let Some(next) = summary.resume_at.take() {
            let Ok(batch) = WorkflowInput::decode(&input) else { break };
            if next <= from || next >= batch.events().len() {
                break;
            }
            from = next;
            let round = ctx.execute_activity(SentimentActivities::classify, batch.resumed_at(next), activity_options()).await?;
            summary.merge(round);
        }
        Ok(summary)
    }
}
