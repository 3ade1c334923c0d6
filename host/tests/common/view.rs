//! The Sentiment pages' tests: real `$ai_generation` events classified by
//! `analyze --output clickhouse` (both schemas), the `serve` process, and
//! what the pages should show, computed from the rows as stored.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::services::run_bin;
use super::stack::block;
use super::ClickHouseServer;
use llma_sentiment::sink::{ClickHouseSink, SinkConfig, StoredEvent};

/// How long `serve` may take to print its address.
const START: Duration = Duration::from_secs(60);

pub const NEGATIVE: &str = "this is broken and I hate it, terrible";
pub const POSITIVE: &str = "thanks, that is perfect, I love it";
pub const NEUTRAL: &str = "what time is the meeting";
pub const MILD: &str = "the answer was not great";

/// A `$ai_generation` of `team` in `trace` at `at`, whose user messages are `texts`.
pub fn generation(team: i64, trace: &str, at: DateTime<Utc>, texts: &[&str]) -> Value {
    let mut input = vec![json!({"role": "system", "content": "be helpful"})];
    for t in texts {
        input.push(json!({"role": "user", "content": t}));
        input.push(json!({"role": "assistant", "content": "noted"}));
    }
    json!({
        "uuid": Uuid::new_v4().to_string(),
        "event": "$ai_generation",
        "team_id": team,
        "distinct_id": "user-1",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "properties": {"$ai_trace_id": trace, "$ai_session_id": format!("s-{trace}"), "$ai_input": input},
    })
}

pub fn env(ch: &ClickHouseServer) -> Vec<(&'static str, String)> {
    vec![("CLICKHOUSE_URL", ch.url.clone())]
}

fn with_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub fn migrate(ch: &ClickHouseServer) {
    let out = run_bin(&["migrate"], &with_env(&env(ch)), None);
    assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
}

/// `analyze --output clickhouse ARGS` of `events`; every event written.
pub fn analyze_into(ch: &ClickHouseServer, events: &[Value], args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let mut all = vec!["analyze", file.to_str().unwrap(), "--output", "clickhouse", "--progress", "off"];
    all.extend_from_slice(args);
    let out = run_bin(&all, &with_env(&env(ch)), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "analyze: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary: {e}: {stderr}"));
    assert_eq!(summary["written"], events.len(), "{summary}");
}

pub fn sink(ch: &ClickHouseServer) -> ClickHouseSink {
    block(ClickHouseSink::connect(SinkConfig { url: ch.url.clone(), ..SinkConfig::default() })).expect("sink connects")
}

pub const TEAM: i64 = 7;
pub const OTHER_TEAM: i64 = 8;
/// More traces than one page holds.
pub const BULK: usize = 206;

pub fn ago(days: i64, hours: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days) - chrono::Duration::hours(hours)
}

/// The fixture: hand-made traces of team 7 (one of them 40 days old), bulk
/// traces for paging, one trace of team 8, one trace in the evaluation
/// schema with its texts stored, and one generation re-classified later in
/// the other schema (the latest event wins).
pub fn write_rows(ch: &ClickHouseServer) -> Vec<Expected> {
    migrate(ch);
    let mut seed = vec![
        generation(TEAM, "t-angry", ago(2, 3), &[NEUTRAL, NEGATIVE]),
        generation(TEAM, "t-angry", ago(1, 2), &[NEGATIVE]),
        generation(TEAM, "t-happy", ago(3, 0), &[POSITIVE]),
        generation(TEAM, "t-mixed", ago(5, 1), &[POSITIVE]),
        generation(TEAM, "t-mixed", ago(5, 0), &[MILD]),
        generation(TEAM, "t-mixed", ago(4, 0), &[NEGATIVE, POSITIVE]),
        generation(TEAM, "t-calm", ago(6, 0), &[NEUTRAL]),
        generation(TEAM, "t-old", ago(40, 0), &[NEGATIVE]),
        generation(OTHER_TEAM, "t-other", ago(1, 0), &[NEGATIVE]),
    ];
    let texts = [NEGATIVE, POSITIVE, NEUTRAL, MILD];
    for i in 0..BULK {
        seed.push(generation(TEAM, &format!("bulk-{i:03}"), ago((i % 20) as i64, (i % 7) as i64), &[texts[i % 4]]));
    }
    analyze_into(ch, &seed, &[]);
    let eval = vec![
        generation(TEAM, "t-eval", ago(0, 3), &[NEUTRAL, NEGATIVE]),
        generation(TEAM, "t-eval", ago(0, 2), &[POSITIVE, MILD]),
    ];
    analyze_into(ch, &eval, &["--event-schema", "evaluation", "--store-text"]);
    // created_at has whole seconds: the re-classification must be in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    analyze_into(ch, &seed[6..7], &["--event-schema", "evaluation", "--store-text"]);
    stored(ch, &[TEAM, OTHER_TEAM])
}

/// One generation as the pages should see it: its latest stored event.
#[derive(Debug, Clone)]
pub struct Expected {
    pub team: i64,
    pub trace: String,
    pub generation: String,
    pub time: DateTime<Utc>,
    pub label: String,
    pub scores: [f64; 3],
    pub event: StoredEvent,
}

/// Every team's stored rows, the latest per generation (by `created_at`).
pub fn stored(ch: &ClickHouseServer, teams: &[i64]) -> Vec<Expected> {
    let sink = sink(ch);
    let mut latest: HashMap<String, Expected> = HashMap::new();
    for &team in teams {
        for e in block(sink.fetch_team(team, 100_000)).unwrap() {
            // The events table also holds the generations themselves.
            if e.event != "$ai_sentiment" && e.event != "$ai_evaluation" {
                continue;
            }
            let p = &e.properties;
            let key = if e.event == "$ai_evaluation" { "$ai_target_event_id" } else { "$ai_generation_event_uuid" };
            let generation = p[key].as_str().unwrap().to_string();
            let s = &p["$ai_sentiment_scores"];
            let row = Expected {
                team,
                trace: p["$ai_trace_id"].as_str().unwrap_or("").to_string(),
                generation: generation.clone(),
                time: e.timestamp,
                label: p["$ai_sentiment_label"].as_str().unwrap().to_string(),
                scores: ["negative", "neutral", "positive"].map(|k| s[k].as_f64().unwrap()),
                event: e,
            };
            match latest.get(&generation) {
                Some(old) if old.event.created_at >= row.event.created_at => {}
                _ => {
                    latest.insert(generation, row);
                }
            }
        }
    }
    latest.into_values().collect()
}

/// A trace as the Sentiment page should list it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTrace {
    pub team: i64,
    pub trace: String,
    pub generations: u64,
    pub last_seen: DateTime<Utc>,
    pub intensity: f64,
}

/// The ranking by PostHog's rule, computed here from the stored rows:
/// `filter`'s traces since `since` (of `team`), intensity at least `min`,
/// highest first, then the most recent, then team and trace id.
pub fn ranking(rows: &[Expected], since: DateTime<Utc>, team: Option<i64>, filter: &str, min: f64) -> Vec<ExpectedTrace> {
    let mut traces: BTreeMap<(i64, String), Vec<&Expected>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.time >= since && team.is_none_or(|t| t == r.team) && !r.trace.is_empty()) {
        traces.entry((r.team, r.trace.clone())).or_default().push(r);
    }
    let mut out: Vec<ExpectedTrace> = traces
        .into_iter()
        .filter_map(|((team, trace), gens)| {
            let max = |i: usize| gens.iter().map(|g| g.scores[i]).fold(f64::MIN, f64::max);
            let has = |label: &str| gens.iter().any(|g| g.label == label);
            let (keep, intensity) = match filter {
                "negative" => (has("negative"), max(0)),
                "positive" => (has("positive"), max(2)),
                "both" => (has("negative") || has("positive"), max(0).max(max(2))),
                _ => (true, max(0).max(max(2))),
            };
            let last_seen = gens.iter().map(|g| g.time).max().unwrap();
            (keep && intensity >= min).then_some(ExpectedTrace { team, trace, generations: gens.len() as u64, last_seen, intensity })
        })
        .collect();
    out.sort_by(|a, b| {
        b.intensity.total_cmp(&a.intensity).then(b.last_seen.cmp(&a.last_seen)).then(a.team.cmp(&b.team)).then(a.trace.cmp(&b.trace))
    });
    out
}

/// A running `llma-sentiment serve`; killed on drop.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
}

impl ServeProcess {
    pub fn start(ch: &ClickHouseServer, extra_env: &[(&str, &str)], args: &[&str]) -> ServeProcess {
        match ServeProcess::try_start(ch, extra_env, args) {
            Ok(p) => p,
            Err(stderr) => panic!("serve did not start: {stderr}"),
        }
    }

    /// The process, or its stderr when it exits (or stays silent) instead.
    pub fn try_start(ch: &ClickHouseServer, extra_env: &[(&str, &str)], args: &[&str]) -> Result<ServeProcess, String> {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new(super::services::bin());
        cmd.arg("serve");
        if !args.contains(&"--addr") {
            cmd.args(["--addr", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env("CLICKHOUSE_URL", &ch.url)
            .env("LLMA_SENTIMENT_LOG_FORMAT", "json")
            .env_remove("LLMA_SENTIMENT_CONFIG")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap());
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("Sentiment pages: ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(log.path()).unwrap_or_default());
        };
        Ok(ServeProcess { child, base: url.trim_end_matches('/').to_string() })
    }

    /// host:port.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// GET `path` as JSON, asserting 200.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = super::ops::http_get(&self.addr(), path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // SIGTERM first, so that the shutdown path runs; SIGKILL if it lingers.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$ai_generation` events into the events table, as PostHog stores them.
pub fn insert_generations(ch: &ClickHouseServer, events: &[Value]) {
    let body: String = events
        .iter()
        .map(|e| {
            let at = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap().with_timezone(&Utc);
            let row = serde_json::json!({
                "uuid": e["uuid"], "event": "$ai_generation", "properties": e["properties"].to_string(),
                "timestamp": at.format("%Y-%m-%d %H:%M:%S").to_string(), "team_id": e["team_id"],
                "distinct_id": e["distinct_id"], "person_id": null, "created_at": Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            });
            format!("{row}\n")
        })
        .collect();
    let (status, answer) = super::ops::http(&format!("127.0.0.1:{}", ch.http_port), "POST", "/?query=INSERT%20INTO%20default.events%20FORMAT%20JSONEachRow", &[], &body);
    assert_eq!(status, 200, "{answer}");
}
