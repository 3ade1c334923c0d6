//! `llma-sentiment submit`: starts workflows from JSON lines of
//! `$ai_generation` events, with the 10-minute execution timeout the starter
//! owns. For demos, backfills and tests.

use std::io::BufRead;

use futures::StreamExt;
use serde_json::{json, Value};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

use super::workflow::SentimentWorkflow;

#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub task_queue: String,
    /// One workflow with `{"events": [...]}` instead of one per event.
    pub batch: bool,
    /// Wait for every workflow and print its result.
    pub wait: bool,
    /// Workflow ids are `{prefix}-{generation uuid}`.
    pub id_prefix: String,
    /// Workflows started at once.
    pub parallelism: usize,
    /// The workflow execution timeout (the seed's 10 minutes by default).
    pub execution_timeout: std::time::Duration,
    /// Start workflows only for generations in this rollout (see
    /// `rollout`); 100 starts every event as before.
    pub rollout_percent: f64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SubmitReport {
    pub started: usize,
    pub start_errors: usize,
    pub completed: usize,
    pub failed: usize,
    /// Events left out by the rollout percentage.
    pub not_in_rollout: usize,
}

/// Whether an event starts a workflow under `percent`: a full rollout
/// starts everything (an event without a uuid then fails in the workflow,
/// as before); a partial one only generations whose uuid passes the rule.
pub fn starts(event: &Value, percent: f64) -> bool {
    percent >= 100.0 || super::rollout::event_uuid(event).is_some_and(|u| super::rollout::in_rollout(u, percent))
}

/// `submit --dry-run`: one `{"uuid": ..., "start": true|false}` line per
/// event (and an error line per unreadable one); contacts nothing.
pub fn dry_run(input: impl BufRead, options: &SubmitOptions, mut out: impl std::io::Write) -> anyhow::Result<SubmitReport> {
    let mut report = SubmitReport::default();
    for (n, event) in read_events(input)? {
        match event {
            Ok(event) => {
                let start = starts(&event, options.rollout_percent);
                if start {
                    report.started += 1;
                } else {
                    report.not_in_rollout += 1;
                }
                writeln!(out, "{}", json!({"uuid": super::rollout::event_uuid(&event), "start": start}))?;
            }
            Err(e) => {
                report.start_errors += 1;
                writeln!(out, "{}", json!({"line": n, "error": e}))?;
            }
        }
    }
    Ok(report)
}

/// Non-empty lines as JSON, numbered from 1; a line that is not JSON is its error.
fn read_events(input: impl BufRead) -> anyhow::Result<Vec<(usize, Result<Value, String>)>> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        events.push((n, serde_json::from_str::<Value>(&line).map_err(|e| format!("line {n}: not JSON: {e}"))));
    }
    Ok(events)
}

fn workflow_id(prefix: &str, event: &Value, line: usize) -> String {
    match event.get("uuid").and_then(Value::as_str) {
        Some(u) if !u.is_empty() && u.len() <= 100 => format!("{prefix}-{u}"),
        _ => format!("{prefix}-line{line}-{}", uuid::Uuid::new_v4()),
    }
}

/// Reads events, starts workflows, prints one JSON line per workflow (and per
/// unreadable line) to `out`, and counts each started (with `wait`:
/// finished) workflow on `progress`.
pub async fn submit(
    client: &Client,
    input: impl BufRead,
    options: &SubmitOptions,
    mut out: impl std::io::Write,
    progress: &crate::progress::ProgressConfig,
) -> anyhow::Result<SubmitReport> {
    let mut report = SubmitReport::default();
    let mut jobs: Vec<(String, Value)> = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    for (n, event) in read_events(input)? {
        match event {
            Ok(event) if !starts(&event, options.rollout_percent) => {
                report.not_in_rollout += 1;
                writeln!(out, "{}", json!({"uuid": super::rollout::event_uuid(&event), "status": "not_in_rollout"}))?;
            }
            Ok(event) if options.batch => batch.push(event),
            Ok(event) => jobs.push((workflow_id(&options.id_prefix, &event, n), json!({ "event_data": event }))),
            Err(e) => {
                report.start_errors += 1;
                writeln!(out, "{}", json!({"line": n, "error": e}))?;
            }
        }
    }
    if options.batch && !batch.is_empty() {
        jobs.push((format!("{}-batch-{}", options.id_prefix, uuid::Uuid::new_v4()), json!({ "events": batch })));
    }

    let mut bar = crate::progress::Progress::stderr(progress, "workflows", Some(jobs.len() as u64));
    let results = futures::stream::iter(jobs)
        .map(|(id, input)| async move {
            let start = WorkflowStartOptions::new(options.task_queue.clone(), id.clone())
                .execution_timeout(options.execution_timeout)
                .build();
            let handle = match client.start_workflow(SentimentWorkflow::run, input, start).await {
                Ok(h) => h,
                Err(e) => return json!({"workflow_id": id, "status": "not_started", "error": e.to_string()}),
            };
            let run_id = handle.run_id().unwrap_or_default().to_string();
            if !options.wait {
                return json!({"workflow_id": id, "run_id": run_id, "status": "started"});
            }
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Ok(summary) => json!({"workflow_id": id, "run_id": run_id, "status": "completed", "result": summary}),
                Err(e) => json!({"workflow_id": id, "run_id": run_id, "status": "failed", "error": format!("{e:#}")}),
            }
        })
        .buffer_unordered(options.parallelism.max(1));
    futures::pin_mut!(results);
    while let Some(line) = results.next().await {
        match line["status"].as_str() {
            Some("not_started") => report.start_errors += 1,
            Some("started") => report.started += 1,
            Some("completed") => {
                report.started += 1;
                report.completed += 1;
            }
            _ => {
                report.started += 1;
                report.failed += 1;
            }
        }
        writeln!(out, "{line}")?;
        out.flush()?;
        bar.inc(1);
    }
    bar.finish();
    Ok(report)
}
