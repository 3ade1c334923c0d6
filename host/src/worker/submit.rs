//! `llma-sentiment submit`: starts workflows from JSON lines of
//! `$ai_generation` events, with the 10-minute execution timeout the starter
//! owns. For demos, backfills and tests. The input is streamed: workflows
//! start while later lines are still being read, and memory holds one
//! batch and the workflows in flight, not the file.

use std::io::BufRead;

use futures::StreamExt;
use serde_json::{json, Value};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

use super::input::WorkflowInput;
use super::workflow::SentimentWorkflow;

/// Default bound of one `--batch` workflow's input: Temporal refuses a
/// payload above 2 MiB (its blob size limit), and its SDK and server warn
/// above 512 KiB, so batches stay at the warning threshold.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub task_queue: String,
    /// Workflows with `{"events": [...]}` instead of one per event.
    pub batch: bool,
    /// A batch workflow's input stays within this many bytes (an event
    /// larger than that goes alone, and Temporal may refuse it).
    pub batch_max_bytes: usize,
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

/// Non-empty lines as JSON, numbered from 1; a line that is not UTF-8 or
/// not JSON is its error.
fn read_events(input: impl BufRead) -> anyhow::Result<Vec<(usize, Result<Value, String>)>> {
    let mut events = Vec::new();
    for line in crate::jsonl::lines(input) {
        let (n, text) = line?;
        let event = match text {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => crate::jsonl::from_str::<Value>(&t).map_err(|e| format!("line {n}: not JSON: {e}")),
            Err(e) => Err(format!("line {n}: {e}")),
        };
        events.push((n, event));
    }
    Ok(events)
}

fn workflow_id(prefix: &str, event: &Value, line: usize) -> String {
    match event.get("uuid").and_then(Value::as_str) {
        Some(u) if !u.is_empty() && u.len() <= 100 => format!("{prefix}-{u}"),
        _ => format!("{prefix}-line{line}-{}", uuid::Uuid::new_v4()),
    }
}

/// What the reader hands the starters, in input order.
enum Job {
    /// A workflow to start: its id and its input as JSON text.
    Start { id: String, input: Vec<u8> },
    /// A line that cannot become a workflow.
    Unreadable { line: usize, error: String },
    /// An event the rollout leaves out.
    NotInRollout { uuid: Option<String> },
}

/// `{"events": [` ... `]}` with the events' text as read.
struct Batch {
    json: Vec<u8>,
    events: usize,
    max_bytes: usize,
}

impl Batch {
    const OPEN: &'static [u8] = b"{\"events\":[";
    const CLOSE: &'static [u8] = b"]}";

    fn new(max_bytes: usize) -> Batch {
        Batch { json: Self::OPEN.to_vec(), events: 0, max_bytes }
    }

    fn fits(&self, event: &str) -> bool {
        self.events == 0 || self.json.len() + 1 + event.len() + Self::CLOSE.len() <= self.max_bytes
    }

    fn push(&mut self, event: &str) {
        if self.events > 0 {
            self.json.push(b',');
        }
        self.json.extend_from_slice(event.as_bytes());
        self.events += 1;
    }

    fn finish(&mut self, prefix: &str) -> Option<Job> {
        if self.events == 0 {
            return None;
        }
        let mut json = std::mem::replace(&mut self.json, Self::OPEN.to_vec());
        json.extend_from_slice(Self::CLOSE);
        self.events = 0;
        Some(Job::Start { id: format!("{prefix}-batch-{}", uuid::Uuid::new_v4()), input: json })
    }
}

/// Reads `input` line by line and sends a job per event (or per batch) to
/// `jobs`; stops early when the receiver is gone.
fn read_jobs(input: impl BufRead, options: &SubmitOptions, jobs: &tokio::sync::mpsc::Sender<Job>) -> std::io::Result<()> {
    let mut batch = Batch::new(options.batch_max_bytes);
    let send = |job: Job| jobs.blocking_send(job).is_ok();
    for line in crate::jsonl::lines(input) {
        let (n, text) = line?;
        let text = match text {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => t,
            Err(e) => {
                if !send(Job::Unreadable { line: n, error: format!("line {n}: {e}") }) {
                    return Ok(());
                }
                continue;
            }
        };
        // Parsed to check it and find the uuid; the workflow gets the text as read.
        let event = match crate::jsonl::from_str::<Value>(&text) {
            Ok(event) => event,
            Err(e) => {
                if !send(Job::Unreadable { line: n, error: format!("line {n}: not JSON: {e}") }) {
                    return Ok(());
                }
                continue;
            }
        };
        if !starts(&event, options.rollout_percent) {
            if !send(Job::NotInRollout { uuid: super::rollout::event_uuid(&event).map(|u| u.to_string()) }) {
                return Ok(());
            }
            continue;
        }
        let event_json = text.trim();
        let job = if options.batch {
            let full = if batch.fits(event_json) { None } else { batch.finish(&options.id_prefix) };
            batch.push(event_json);
            full
        } else {
            let input = [b"{\"event_data\":".as_slice(), event_json.as_bytes(), b"}"].concat();
            Some(Job::Start { id: workflow_id(&options.id_prefix, &event, n), input })
        };
        if let Some(job) = job {
            if !send(job) {
                return Ok(());
            }
        }
    }
    if let Some(job) = batch.finish(&options.id_prefix) {
        send(job);
    }
    Ok(())
}

/// Reads events, starts workflows, prints one JSON line per workflow (and per
/// unreadable line) to `out`, and counts each started (with `wait`:
/// finished) workflow on `progress`.
pub async fn submit(
    client: &Client,
    input: impl BufRead + Send + 'static,
    options: &SubmitOptions,
    mut out: impl std::io::Write,
    progress: &crate::progress::ProgressConfig,
) -> anyhow::Result<SubmitReport> {
    let mut report = SubmitReport::default();
    let parallelism = options.parallelism.max(1);
    // Bounded: the reader stays at most a few jobs ahead of the starters.
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(parallelism * 2);
    let reader_options = options.clone();
    let reader = tokio::task::spawn_blocking(move || read_jobs(input, &reader_options, &tx));
    let jobs = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|job| (job, rx)) });

    let mut bar = crate::progress::Progress::stderr(progress, "workflows", None);
    let results = jobs
        .map(|job| async move {
            let (id, input) = match job {
                Job::Unreadable { line, error } => return json!({"line": line, "status": "not_started", "error": error}),
                Job::NotInRollout { uuid } => return json!({"uuid": uuid, "status": "not_in_rollout"}),
                Job::Start { id, input } => (id, input),
            };
            let start = WorkflowStartOptions::new(options.task_queue.clone(), id.clone())
                .execution_timeout(options.execution_timeout)
                .build();
            let handle = match client.start_workflow(SentimentWorkflow::run, WorkflowInput::payload(input), start).await {
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
        .buffer_unordered(parallelism);
    futures::pin_mut!(results);
    while let Some(line) = results.next().await {
        match line["status"].as_str() {
            Some("not_started") => report.start_errors += 1,
            Some("not_in_rollout") => report.not_in_rollout += 1,
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
        if line.get("workflow_id").is_some() {
            bar.inc(1);
        }
    }
    bar.finish();
    reader.await??;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(batch: bool, batch_max_bytes: usize) -> SubmitOptions {
        SubmitOptions {
            task_queue: "q".into(),
            batch,
            batch_max_bytes,
            wait: false,
            id_prefix: "p".into(),
            parallelism: 1,
            execution_timeout: std::time::Duration::from_secs(1),
            rollout_percent: 100.0,
        }
    }

    fn jobs(input: &'static [u8], options: &SubmitOptions) -> Vec<Job> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
        read_jobs(input, options, &tx).unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Ok(job) = rx.try_recv() {
            out.push(job);
        }
        out
    }

    fn inputs(jobs: &[Job]) -> Vec<Value> {
        jobs.iter()
            .filter_map(|j| match j {
                Job::Start { input, .. } => Some(crate::jsonl::from_slice(input).unwrap()),
                Job::Unreadable { .. } | Job::NotInRollout { .. } => None,
            })
            .collect()
    }

    #[test]
    fn bad_lines_are_reported_by_number_and_the_rest_still_starts() {
        let input: &[u8] = b"{\"uuid\":\"a\"}\n\xff\xfe\n{nope\n\n{\"uuid\":\"b\",\"x\":\"\\ud800\"}\n";
        let got = jobs(input, &options(false, DEFAULT_BATCH_MAX_BYTES));
        let errors: Vec<(usize, String)> = got
            .iter()
            .filter_map(|j| match j {
                Job::Unreadable { line, error } => Some((*line, error.clone())),
                Job::Start { .. } | Job::NotInRollout { .. } => None,
            })
            .collect();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, 2);
        assert!(errors[0].1.starts_with("line 2: not UTF-8"), "{}", errors[0].1);
        assert_eq!(errors[1].0, 3);
        assert!(errors[1].1.starts_with("line 3: not JSON"), "{}", errors[1].1);
        let ids: Vec<&str> = got
            .iter()
            .filter_map(|j| match j {
                Job::Start { id, .. } => Some(id.as_str()),
                Job::Unreadable { .. } | Job::NotInRollout { .. } => None,
            })
            .collect();
        assert_eq!(ids, ["p-a", "p-b"]);
        let started = inputs(&got);
        assert_eq!(started[1]["event_data"]["x"], "\u{FFFD}", "forwarded as read, decodable");
    }

    #[test]
    fn batches_split_under_the_byte_bound_and_keep_every_event_once() {
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("{{\"uuid\":\"{i}\",\"pad\":\"{}\"}}\n", "x".repeat(i % 7 * 10)));
        }
        let input: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        let max = 600;
        let got = jobs(input, &options(true, max));
        assert!(got.len() > 5, "{} batches", got.len());
        let mut seen = Vec::new();
        for job in &got {
            let Job::Start { input, .. } = job else { panic!("no bad lines here") };
            assert!(input.len() <= max, "batch of {} bytes", input.len());
            let v: Value = crate::jsonl::from_slice(input).unwrap();
            for e in v["events"].as_array().unwrap() {
                seen.push(e["uuid"].as_str().unwrap().parse::<u32>().unwrap());
            }
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // An event larger than the bound goes alone.
        let big: &'static [u8] = Box::leak(format!("{{\"a\":1}}\n{{\"big\":\"{}\"}}\n{{\"b\":2}}\n", "y".repeat(2000)).into_bytes().into_boxed_slice());
        let got = inputs(&jobs(big, &options(true, max)));
        let sizes: Vec<usize> = got.iter().map(|v| v["events"].as_array().unwrap().len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
