//! Several workers on one task queue, as a cluster: one Temporal dev server,
//! one ClickHouse, one Redis and N worker processes (distinct identities).
//! A stream of multi-turn conversations (every generation re-sends the
//! history) goes through them in waves, one turn of every conversation per
//! wave; mid-stream one worker is SIGKILLed while it holds activities and a
//! replacement starts. Afterwards:
//!
//! * every storable generation has exactly one row: counted under `FINAL`,
//!   and as distinct generation uuids among the raw rows;
//! * no generation has rows with two different sentiment uuids;
//! * no workflow failed;
//! * the result cache hit rate of the whole stream, summed over the
//!   workers' `/metrics` (the killed worker's from its last scrape).
//!
//! `make test` runs the short form (3 workers, 40 conversations x 5 turns =
//! 200 generations, one kill); `make reliability` the full one (60 x 10 =
//! 600) plus the same stream through 1 worker and through 3 workers without
//! Redis, for the hit-rate table; `make cluster-demo` prints the same for
//! LLMA_CLUSTER_WORKERS workers.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ops::{metrics_addr, Scrape};
use common::redis::RedisServer;
use common::services::{run_bin, TemporalServer, WorkerProcess};
use common::ClickHouseServer;
use serde_json::{json, Value};
use uuid::Uuid;

const HEARTBEAT_TIMEOUT_SECS: &str = "10";

struct Cluster {
    ch: ClickHouseServer,
    temporal: TemporalServer,
    redis: RedisServer,
}

impl Cluster {
    fn start() -> Cluster {
        let (ch, temporal, redis) = std::thread::scope(|s| {
            let ch = s.spawn(ClickHouseServer::start);
            let redis = s.spawn(RedisServer::start);
            let temporal = TemporalServer::start();
            (ch.join().unwrap(), temporal, redis.join().unwrap())
        });
        let c = Cluster { ch, temporal, redis };
        let out = run_bin(&["migrate"], &[("CLICKHOUSE_URL", c.ch.url.as_str())], None);
        assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
        c
    }

    /// ClickHouse over HTTP (curl), one scalar per line.
    fn query(&self, sql: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--data-binary", sql, &self.ch.url])
            .stdin(Stdio::null())
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{sql}: {body}{}", String::from_utf8_lossy(&out.stderr));
        body
    }

    fn number(&self, sql: &str) -> u64 {
        self.query(sql).trim().parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// One worker process of a run, and what its `/metrics` said last.
struct Member {
    identity: String,
    process: Option<WorkerProcess>,
    addr: String,
    last: Option<Counts>,
    killed: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    classified: f64,
    l1_hit: f64,
    l1_miss: f64,
    l2_hit: f64,
    l2_miss: f64,
    redis_errors: f64,
    in_flight: f64,
}

impl Counts {
    fn take(addr: &str) -> Option<Counts> {
        // A worker that just died (or is being killed) has no endpoint.
        let scrape = std::panic::catch_unwind(|| Scrape::take(addr)).ok()?;
        let v = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
        let lookups = "llma_sentiment_cache_lookups_total";
        let errors = ["timeout", "unavailable", "garbage", "server"]
            .iter()
            .map(|k| v("llma_sentiment_redis_errors_total", &[("kind", k)]))
            .sum();
        Some(Counts {
            classified: v("llma_sentiment_events_total", &[("outcome", "classified")]),
            l1_hit: v(lookups, &[("tier", "l1"), ("result", "hit")]),
            l1_miss: v(lookups, &[("tier", "l1"), ("result", "miss")]),
            l2_hit: v(lookups, &[("tier", "l2"), ("result", "hit")]),
            l2_miss: v(lookups, &[("tier", "l2"), ("result", "miss")]),
            redis_errors: errors,
            in_flight: v("llma_sentiment_activities_in_flight", &[]),
        })
    }

    fn add(&mut self, o: &Counts) {
        self.classified += o.classified;
        self.l1_hit += o.l1_hit;
        self.l1_miss += o.l1_miss;
        self.l2_hit += o.l2_hit;
        self.l2_miss += o.l2_miss;
        self.redis_errors += o.redis_errors;
    }

    /// Messages answered by either tier over all messages looked up.
    fn hit_rate(&self) -> f64 {
        let lookups = self.l1_hit + self.l1_miss;
        if lookups == 0.0 {
            0.0
        } else {
            (self.l1_hit + self.l2_hit) / lookups
        }
    }
}

impl Member {
    fn start(cluster: &Cluster, queue: &str, identity: &str, redis: bool) -> Member {
        let mut env = vec![
            ("TEMPORAL_ADDRESS", cluster.temporal.address.as_str()),
            ("CLICKHOUSE_URL", cluster.ch.url.as_str()),
            ("LLMA_SENTIMENT_TASK_QUEUE", queue),
            ("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0"),
            ("LLMA_SENTIMENT_LOG_FORMAT", "json"),
            ("LLMA_SENTIMENT_WORKER_IDENTITY", identity),
            ("LLMA_SENTIMENT_INSTANCES", "1"),
            ("LLMA_SENTIMENT_MAX_CONCURRENT_ACTIVITIES", "2"),
            // A killed worker's activities are retried after this.
            ("LLMA_SENTIMENT_WORKFLOW_HEARTBEAT_TIMEOUT_SECS", HEARTBEAT_TIMEOUT_SECS),
        ];
        if redis {
            env.push(("REDIS_URL", cluster.redis.url.as_str()));
        }
        let process = WorkerProcess::start(&env, &[]);
        let addr = metrics_addr(&process.log_text());
        Member { identity: identity.to_string(), process: Some(process), addr, last: None, killed: false }
    }

    fn scrape(&mut self) -> Option<Counts> {
        if self.killed {
            return self.last;
        }
        if let Some(c) = Counts::take(&self.addr) {
            self.last = Some(c);
        }
        self.last
    }
}

const PHRASES: [&str; 8] = [
    "I love this, thank you so much",
    "this is broken and I hate it",
    "what time is the meeting tomorrow",
    "the answer was wrong and I am annoyed",
    "great, that fixed it",
    "can you explain the second step again",
    "terrible, nothing works",
    "ok, sounds good",
];

/// Turn `t` (1-based) of conversation `c`: the whole history, ending in a new user message.
fn generation(run: &str, team: i64, c: usize, t: usize) -> Value {
    let mut input = vec![json!({"role": "system", "content": "be helpful"})];
    for k in 1..=t {
        let text = format!("{} (conversation {c}, message {k})", PHRASES[(c * 3 + k) % PHRASES.len()]);
        input.push(json!({"role": "user", "content": text}));
        if k < t {
            input.push(json!({"role": "assistant", "content": format!("answer {k}")}));
        }
    }
    json!({
        "uuid": Uuid::new_v4().to_string(),
        "event": "$ai_generation",
        "team_id": team,
        "distinct_id": format!("user-{c}"),
        "timestamp": "2026-11-01T10:00:00Z",
        "properties": {
            "$ai_trace_id": format!("trace-{run}-{c}"),
            "$ai_session_id": format!("session-{run}-{c}"),
            "$ai_input": input,
        }
    })
}

/// Hit rate of a stream whose every earlier message is found: per
/// conversation, turn t looks up t messages of which t-1 were seen.
fn ideal_hit_rate(turns: usize) -> f64 {
    let lookups: usize = (1..=turns).sum();
    (lookups - turns) as f64 / lookups as f64
}

struct Plan {
    label: &'static str,
    workers: usize,
    redis: bool,
    kill: bool,
    conversations: usize,
    turns: usize,
}

struct Report {
    label: &'static str,
    workers: usize,
    generations: u64,
    failed: u64,
    lost: u64,
    final_rows: u64,
    raw_rows: u64,
    raw_distinct: u64,
    two_uuids: u64,
    unexpected: u64,
    total: Counts,
    per_worker: Vec<(String, Counts, bool)>,
    killed_in_flight: f64,
    elapsed: Duration,
    ideal: f64,
}

fn run(cluster: &Cluster, plan: &Plan, team: i64) -> Report {
    let started = Instant::now();
    let queue = format!("cluster-{}", Uuid::new_v4());
    let run_id = format!("{team}");
    let mut members: Vec<Member> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=plan.workers)
            .map(|i| {
                let queue = queue.as_str();
                s.spawn(move || Member::start(cluster, queue, &format!("cluster-{team}-w{i}"), plan.redis))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let env = [("TEMPORAL_ADDRESS", cluster.temporal.address.as_str()), ("LLMA_SENTIMENT_TASK_QUEUE", queue.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<String> = Vec::new();
    let mut failed = 0u64;
    let mut killed_in_flight = 0.0;
    let kill_turn = plan.turns.div_ceil(2);
    for t in 1..=plan.turns {
        let wave: Vec<Value> = (0..plan.conversations).map(|c| generation(&run_id, team, c, t)).collect();
        expected.extend(wave.iter().map(|e| e["uuid"].as_str().unwrap().to_string()));
        let file = dir.path().join(format!("turn-{t}.jsonl"));
        std::fs::write(&file, wave.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
        let submit = Command::new(common::services::bin())
            .args(["submit", "--wait", "--parallelism", "32", "--id-prefix", &format!("c{team}-t{t}"), file.to_str().unwrap()])
            .envs(env.iter().copied())
            .env("LLMA_SENTIMENT_PROGRESS", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("submit");
        if plan.kill && t == kill_turn {
            // SIGKILL the first worker seen holding an activity, then replace it.
            let deadline = Instant::now() + Duration::from_secs(60);
            let victim = loop {
                let busy = members.iter_mut().enumerate().find_map(|(i, m)| {
                    let c = m.scrape()?;
                    (c.in_flight >= 1.0).then_some(i)
                });
                if let Some(i) = busy {
                    break i;
                }
                assert!(Instant::now() < deadline, "no worker ever held an activity in wave {t}");
                std::thread::sleep(Duration::from_millis(20));
            };
            let m = &mut members[victim];
            killed_in_flight = m.last.map_or(0.0, |c| c.in_flight);
            let process = m.process.take().unwrap();
            let status = Command::new("kill").arg("-KILL").arg(process.pid().to_string()).status().unwrap();
            assert!(status.success());
            drop(process);
            m.killed = true;
            let replacement = format!("cluster-{team}-w{}", plan.workers + 1);
            members.push(Member::start(cluster, &queue, &replacement, plan.redis));
        }
        let out = submit.wait_with_output().unwrap();
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines.len(), plan.conversations, "one result line per workflow: {}", String::from_utf8_lossy(&out.stderr));
        failed += lines.iter().filter(|l| l["status"] != "completed").count() as u64;
        for m in members.iter_mut() {
            m.scrape();
        }
    }
    let elapsed = started.elapsed();

    let gen = "visitParamExtractString(properties, '$ai_generation_event_uuid')";
    let final_rows = cluster.number(&format!("SELECT count() FROM events FINAL WHERE team_id = {team} AND event = '$ai_sentiment'"));
    let raw_rows = cluster.number(&format!("SELECT count() FROM events WHERE team_id = {team} AND event = '$ai_sentiment'"));
    let raw_distinct =
        cluster.number(&format!("SELECT uniqExact({gen}) FROM events WHERE team_id = {team} AND event = '$ai_sentiment'"));
    let two_uuids = cluster.number(&format!(
        "SELECT count() FROM (SELECT {gen} AS g, uniqExact(uuid) AS n FROM events WHERE team_id = {team} AND event = '$ai_sentiment' GROUP BY g HAVING n > 1)"
    ));
    let found: HashSet<String> = cluster
        .query(&format!("SELECT DISTINCT {gen} FROM events WHERE team_id = {team} AND event = '$ai_sentiment'"))
        .lines()
        .map(str::to_string)
        .collect();
    let want: HashSet<String> = expected.iter().cloned().collect();
    let lost = want.difference(&found).count() as u64;
    let unexpected = found.difference(&want).count() as u64;

    let mut total = Counts::default();
    let mut per_worker = Vec::new();
    for m in members.iter_mut() {
        let c = m.scrape().unwrap_or_default();
        total.add(&c);
        per_worker.push((m.identity.clone(), c, m.killed));
    }
    // Stop the live workers before the next run (SIGTERM: graceful).
    for m in members.iter_mut() {
        if let Some(p) = m.process.take() {
            let _ = p.terminate(Duration::from_secs(60));
        }
    }
    Report {
        label: plan.label,
        workers: plan.workers,
        generations: expected.len() as u64,
        failed,
        lost,
        final_rows,
        raw_rows,
        raw_distinct,
        two_uuids,
        unexpected,
        total,
        per_worker,
        killed_in_flight,
        elapsed,
        ideal: ideal_hit_rate(plan.turns),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

impl Report {
    fn print(&self) {
        println!(
            "\n== {}: {} generations through {} workers in {:.0} s (load {})",
            self.label,
            self.generations,
            self.workers,
            self.elapsed.as_secs_f64(),
            load()
        );
        println!("| worker | events classified | l1 hits | l2 hits | misses | hit rate | redis errors |");
        println!("|---|---|---|---|---|---|---|");
        for (id, c, killed) in &self.per_worker {
            let name = if *killed { format!("{id} (SIGKILLed, last scrape)") } else { id.clone() };
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}% | {:.0} |",
                c.classified,
                c.l1_hit,
                c.l2_hit,
                c.l1_miss - c.l2_hit,
                c.hit_rate() * 100.0,
                c.redis_errors
            );
        }
        println!(
            "rows: FINAL {}, raw {}, distinct generations among raw rows {}; lost {}, unexpected {}, generations with two sentiment uuids {}; failed workflows {}; in flight on the killed worker {:.0}",
            self.final_rows, self.raw_rows, self.raw_distinct, self.lost, self.unexpected, self.two_uuids, self.failed, self.killed_in_flight
        );
        println!("hit rate of the stream {:.1}% (every earlier message found: {:.1}%)", self.total.hit_rate() * 100.0, self.ideal * 100.0);
    }

    /// Appends a row to `make reliability`'s table (LLMA_RELIABILITY_REPORT).
    fn record(&self) {
        let Some(path) = std::env::var_os("LLMA_RELIABILITY_REPORT") else { return };
        let line = format!(
            "cluster: {}\t{}\t{}\t{}\t{}\t-\thit rate {:.1}% (ideal {:.1}%); raw rows {}, distinct generations {}, two sentiment uuids {}; {:.0} s, load {}\n",
            self.label,
            self.generations,
            self.failed,
            self.lost,
            self.final_rows.saturating_sub(self.generations - self.lost),
            self.total.hit_rate() * 100.0,
            self.ideal * 100.0,
            self.raw_rows,
            self.raw_distinct,
            self.two_uuids,
            self.elapsed.as_secs_f64(),
            load()
        );
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open report");
        f.write_all(line.as_bytes()).expect("write report");
    }

    fn assert_exactly_once(&self) {
        assert_eq!(self.failed, 0, "failed workflows");
        assert_eq!(self.lost, 0, "generations without a row");
        assert_eq!(self.unexpected, 0, "rows of generations nobody sent");
        assert_eq!(self.final_rows, self.generations, "rows under FINAL");
        assert_eq!(self.raw_distinct, self.generations, "distinct generation uuids among the raw rows");
        assert_eq!(self.two_uuids, 0, "generations with two different sentiment uuids");
    }
}

fn with_redis_kill(workers: usize, conversations: usize, turns: usize) -> Plan {
    Plan { label: "workers with Redis, one SIGKILLed and replaced", workers, redis: true, kill: true, conversations, turns }
}

/// The short form, in `make test`.
#[test]
fn three_workers_with_redis_write_every_generation_once_through_a_sigkill() {
    let cluster = Cluster::start();
    let report = run(&cluster, &with_redis_kill(3, 40, 5), 7101);
    report.print();
    report.assert_exactly_once();
    assert!(report.per_worker.iter().filter(|(_, c, _)| c.classified > 0.0).count() >= 3, "the work was spread");
    // Without Redis most repeats would miss on 3 workers; with it the stream
    // gets close to every earlier message found (bound loose for busy CI
    // machines, where a Redis call may pass its 50 ms timeout).
    assert!(report.total.hit_rate() > report.ideal - 0.10, "hit rate {:.3} (ideal {:.3})", report.total.hit_rate(), report.ideal);
    assert!(report.total.l2_hit > 0.0);
}

/// The full form and the hit-rate table, in `make reliability`.
#[test]
#[ignore = "~600 generations three times: run by `make reliability`"]
fn cluster_full_stream_and_hit_rate_table() {
    let cluster = Cluster::start();
    let (c, t) = (60, 10);
    let plans = [
        Plan { label: "1 worker", workers: 1, redis: false, kill: false, conversations: c, turns: t },
        Plan { label: "3 workers, no Redis", workers: 3, redis: false, kill: false, conversations: c, turns: t },
        with_redis_kill(3, c, t),
    ];
    let reports: Vec<Report> = plans.iter().enumerate().map(|(i, p)| run(&cluster, p, 7200 + i as i64)).collect();
    for r in &reports {
        r.print();
        r.record();
    }
    println!("\n| stream ({c} conversations x {t} turns = {} generations) | hit rate | l1 hits | l2 hits | misses |", c * t);
    println!("|---|---|---|---|---|");
    for r in &reports {
        let x = &r.total;
        println!("| {} | {:.1}% | {:.0} | {:.0} | {:.0} |", r.label, x.hit_rate() * 100.0, x.l1_hit, x.l2_hit, x.l1_miss - x.l2_hit);
    }
    for r in &reports {
        r.assert_exactly_once();
    }
    let (one, redis) = (reports[0].total.hit_rate(), reports[2].total.hit_rate());
    println!("3 workers with Redis vs 1 worker: {:+.1} points (goal: within 2)", (redis - one) * 100.0);
}

/// `make cluster-demo`.
#[test]
#[ignore = "a demo: run by `make cluster-demo`"]
fn cluster_demo() {
    let workers: usize = std::env::var("LLMA_CLUSTER_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(3).max(1);
    let cluster = Cluster::start();
    println!(
        "Temporal {}, ClickHouse {}, Redis {}; {workers} workers on one task queue",
        cluster.temporal.address, cluster.ch.url, cluster.redis.url
    );
    let report = run(&cluster, &with_redis_kill(workers, 30, 6), 7300);
    report.print();
    let by_label: BTreeMap<String, u64> = cluster
        .query("SELECT visitParamExtractString(properties, '$ai_sentiment_label') AS l, count() FROM events FINAL WHERE team_id = 7300 GROUP BY l ORDER BY l FORMAT TSV")
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(a, b)| (a.to_string(), b.trim().parse().unwrap_or(0))))
        .collect();
    println!("$ai_sentiment rows by label: {by_label:?}");
    report.assert_exactly_once();
}
