//! Temporal + ClickHouse + migrated table, for end-to-end tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use llma_sentiment::sink::{ClickHouseSink, SinkConfig};
use serde_json::{json, Value};
use uuid::Uuid;

use super::services::{run_bin, TemporalServer, WorkerProcess};
use super::ClickHouseServer;

pub struct Stack {
    pub ch: ClickHouseServer,
    pub temporal: TemporalServer,
    pub queue: String,
}

impl Stack {
    pub fn start() -> Stack {
        let ch = ClickHouseServer::start();
        let temporal = TemporalServer::start();
        let stack = Stack { ch, temporal, queue: format!("test-{}", Uuid::new_v4()) };
        let out = run_bin(&["migrate"], &stack.env(), None);
        assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
        stack
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("TEMPORAL_ADDRESS", self.temporal.address.as_str()),
            ("CLICKHOUSE_URL", self.ch.url.as_str()),
            ("LLMA_SENTIMENT_TASK_QUEUE", self.queue.as_str()),
        ]
    }

    pub fn worker(&self, extra_env: &[(&str, &str)]) -> WorkerProcess {
        let mut env = self.env();
        env.extend_from_slice(extra_env);
        WorkerProcess::start(&env, &[])
    }

    /// Stops background merges of the events table, so raw row counts stay
    /// what was inserted (a merge collapses duplicates at any moment).
    pub fn stop_merges(&self) {
        let sink = self.sink();
        block(sink.client().query(&format!("SYSTEM STOP MERGES {}", sink.table())).execute()).expect("SYSTEM STOP MERGES");
    }

    pub fn sink(&self) -> ClickHouseSink {
        let config = SinkConfig { url: self.ch.url.clone(), ..SinkConfig::default() };
        block(ClickHouseSink::connect(config)).expect("sink connects")
    }

    /// `llma-sentiment submit ARGS FILE` of `input` as it is (any bytes); its stdout lines.
    pub fn submit_raw(&self, input: &[u8], args: &[&str]) -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, input).unwrap();
        let mut all = vec!["submit", "--id-prefix", "t"];
        all.extend_from_slice(args);
        all.push(file.to_str().unwrap());
        let out = run_bin(&all, &self.env(), None);
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// `llma-sentiment submit` of `events` (one workflow each, or one batch).
    pub fn submit(&self, events: &[Value], batch: bool, wait: bool) -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let mut args = vec!["submit", "--id-prefix", "t"];
        if batch {
            args.push("--batch");
        }
        if wait {
            args.push("--wait");
        }
        args.push(file.to_str().unwrap());
        let out = run_bin(&args, &self.env(), None);
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub fn wait_status(&self, workflow_id: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.temporal.describe(workflow_id);
            let status = d["workflowExecutionInfo"]["status"].as_str().unwrap_or("").to_string();
            if status != "WORKFLOW_EXECUTION_STATUS_RUNNING" {
                return status;
            }
            assert!(Instant::now() < deadline, "{workflow_id} still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}


/// A realistic `$ai_generation` of team 42 whose last user message is `text`.
pub fn event(text: &str) -> Value {
    json!({
        "uuid": Uuid::new_v4().to_string(),
        "event": "$ai_generation",
        "team_id": 42,
        "distinct_id": "user-1",
        "timestamp": "2026-11-01T10:00:00Z",
        "properties": {
            "$ai_trace_id": "trace-1",
            "$ai_session_id": "session-1",
            "$ai_span_id": "span-1",
            "$ai_input": [
                {"role": "system", "content": "be helpful"},
                {"role": "user", "content": "what time is the meeting"},
                {"role": "assistant", "content": "at ten"},
                {"role": "user", "content": text}
            ]
        }
    })
}

pub fn sentiment_uuid(e: &Value) -> Uuid {
    llma_sentiment::sink::sentiment_uuid_for(Uuid::parse_str(e["uuid"].as_str().unwrap()).unwrap())
}

