//! `make bench-ingest`: how fast `llma-sentiment schedule` turns events on
//! the topic into started workflows and rows, on the default bundle, one
//! scheduler and one worker (the tests' debug build, dependencies
//! optimised), a real broker, Temporal and ClickHouse on this machine.
//!
//! Texts are new in every mode but the last (no result cache hit: each
//! message is classified, as in PostHog's last-message mode); the last
//! repeats the tests' few texts (the seed's whole conversations repeat most
//! of theirs). Per mode (one workflow per event; batches): a backlog produced before the
//! scheduler starts gives the rate it consumes and starts (events/s) and the
//! rate rows appear; then a steady offered rate gives produce-to-row latency
//! (p50/p99/max: from the producer's send to the first poll, every 100 ms,
//! that sees the row). Where the time goes: the CPU seconds each process
//! (scheduler, worker, Temporal, ClickHouse, broker) used over the mode,
//! per 1,000 events, from /proc, and the worker's own inference and
//! activity time from its metrics. The tables go to stdout and
//! build/bench/ingest.md.
//! Sizes: LLMA_BENCH_INGEST_SCALE (default 1.0) multiplies every count.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::kafka::{scheduler_env, usable, usable_unique, KafkaBroker, Record, SchedulerProcess, TEAM};
use common::ops::Scrape;
use common::stack::{block, Stack};
use llma_sentiment::sink::ClickHouseSink;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

struct Mode {
    name: &'static str,
    batch_events: usize,
    batch_age_ms: u64,
    backlog: usize,
    rate: f64,
    secs: u64,
    /// Every text new (no result cache hit), else the tests' few texts repeated.
    unique: bool,
}

struct Figures {
    started_per_s: f64,
    rows_per_s: f64,
    offered: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    late: usize,
    workflows: f64,
    /// CPU seconds per process over the mode, in [`PROCESSES`] order.
    cpu: Vec<f64>,
    /// The worker's inference and activity seconds over the mode (metrics).
    inference: f64,
    activities: f64,
    events: usize,
}

const PROCESSES: [&str; 6] = ["scheduler", "worker", "Temporal", "ClickHouse", "broker", "this bench (producer, polls)"];

/// The worker's (inference, activity) seconds so far.
fn worker_time(addr: &str) -> (f64, f64) {
    let s = Scrape::take(addr);
    (s.histogram_sum("llma_sentiment_inference_seconds"), s.histogram_sum("llma_sentiment_activity_seconds"))
}

fn scale() -> f64 {
    std::env::var("LLMA_BENCH_INGEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sends without waiting for each acknowledgement (the offered rate must
/// not depend on the broker's round trip); all acknowledged at the end.
fn send(producer: &FutureProducer, topic: &str, r: &Record) -> rdkafka::producer::DeliveryFuture {
    let mut record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
    if let Some(track) = r.product_track {
        record = record.headers(OwnedHeaders::new().insert(Header { key: "productTrack", value: Some(track) }));
    }
    loop {
        match producer.send_result(record) {
            Ok(f) => return f,
            Err((e, back)) => {
                // The local queue is full: wait for deliveries to drain it.
                assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Generation uuids of the rows written in the last few seconds
/// (`created_at` is the worker's clock at the insert, whole seconds): a poll
/// reads what is new, not the whole table, at 1,000 events/s.
fn recent_rows(sink: &ClickHouseSink) -> Vec<String> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3;
    let sql = format!(
        "SELECT visitParamExtractString(properties, '$ai_generation_event_uuid') FROM {} \
         WHERE team_id = {TEAM} AND event = '$ai_sentiment' AND created_at >= toDateTime({since})",
        sink.table()
    );
    block(sink.client().query(&sql).fetch_all()).expect("recent rows")
}

fn run(stack: &Stack, broker: &KafkaBroker, worker: (i32, &str), mode: &Mode) -> Figures {
    let topic = format!("bench-{}-{}-{}", mode.batch_events, mode.rate as u64, if mode.unique { "new" } else { "repeated" });
    broker.create_topic(&topic, 3);
    let producer = broker.producer();
    let texts = if mode.unique { usable_unique } else { usable };
    let backlog = texts(mode.backlog);
    let mut acks: Vec<_> = backlog.iter().map(|(_, r)| send(&producer, &topic, r)).collect();
    block(async { futures::future::join_all(acks.drain(..)).await });
    let backlog_uuids: Vec<String> = backlog.iter().map(|(u, _)| u.clone()).collect();

    let (events, age) = (mode.batch_events.to_string(), mode.batch_age_ms.to_string());
    let extra = [("LLMA_SENTIMENT_SCHEDULE_BATCH_EVENTS", events.as_str()), ("LLMA_SENTIMENT_SCHEDULE_BATCH_AGE_MS", age.as_str())];
    let scheduler = SchedulerProcess::start(&scheduler_env(stack, broker, &topic, &topic, &extra));
    let addr = scheduler.metrics_addr();
    let pids = [scheduler.pid(), worker.0, stack.temporal.pid(), stack.ch.pid(), broker.pid(), std::process::id() as i32];
    let cpu_before: Vec<f64> = pids.iter().map(|p| common::cpu_seconds(*p)).collect();
    let worker_before = worker_time(worker.1);
    let t0 = Instant::now();
    let timeout = Duration::from_secs(120 + mode.backlog as u64 / 10);
    let started = |a: &str| Scrape::take(a).value("llma_sentiment_schedule_events_started_total", &[]);
    while started(&addr) < mode.backlog as f64 {
        assert!(t0.elapsed() < timeout, "backlog not started within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started_per_s = mode.backlog as f64 / t0.elapsed().as_secs_f64();
    common::kafka::wait_for_rows(stack, &backlog_uuids, timeout);
    let rows_per_s = mode.backlog as f64 / t0.elapsed().as_secs_f64();

    // Steady rate: a producer thread offers `rate` events/s; this thread
    // polls the table and notes when each row is first seen.
    let n = (mode.rate * mode.secs as f64) as usize;
    let steady = texts(n);
    let sent_at: std::sync::Arc<parking_lot::Mutex<HashMap<String, Instant>>> = Default::default();
    let producing = {
        let (producer, topic, sent_at) = (producer.clone(), topic.clone(), sent_at.clone());
        let interval = Duration::from_secs_f64(1.0 / mode.rate);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut acks = Vec::with_capacity(steady.len());
            for (i, (uuid, record)) in steady.into_iter().enumerate() {
                let due = start + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                sent_at.lock().insert(uuid, Instant::now());
                acks.push(send(&producer, &topic, &record));
            }
            block(async { futures::future::join_all(acks).await });
        })
    };
    let sink = stack.sink();
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(mode.secs + 60);
    loop {
        let now = Instant::now();
        for uuid in recent_rows(&sink) {
            seen.entry(uuid).or_insert(now);
        }
        let done = producing.is_finished() && sent_at.lock().keys().all(|u| seen.contains_key(u));
        if done || now > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    producing.join().unwrap();
    let sent_at = sent_at.lock();
    let mut latencies: Vec<Duration> = sent_at.iter().filter_map(|(u, t)| seen.get(u).map(|s| s.saturating_duration_since(*t))).collect();
    let late = sent_at.len() - latencies.len();
    latencies.sort();
    let workflows = Scrape::take(&addr).value("llma_sentiment_schedule_workflows_total", &[("result", "started")]);
    let cpu: Vec<f64> = pids.iter().zip(&cpu_before).map(|(p, before)| common::cpu_seconds(*p) - before).collect();
    let worker_after = worker_time(worker.1);
    let status = scheduler.terminate(Duration::from_secs(40));
    assert!(status.success(), "{status}");
    assert!(!latencies.is_empty(), "no row of the steady phase within 60 s after it");
    Figures {
        started_per_s,
        rows_per_s,
        offered: n,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().unwrap(),
        late,
        workflows,
        cpu,
        inference: worker_after.0 - worker_before.0,
        activities: worker_after.1 - worker_before.1,
        events: mode.backlog + n,
    }
}

#[test]
#[ignore]
fn bench_ingest() {
    let s = scale();
    let count = |n: f64| ((n * s) as usize).max(10);
    let modes = [
        Mode { name: "one workflow per event", batch_events: 1, batch_age_ms: 30_000, backlog: count(600.0), rate: 20.0 * s.min(1.0), secs: 20, unique: true },
        Mode { name: "batches of 100 (age 500 ms)", batch_events: 100, batch_age_ms: 500, backlog: count(5000.0), rate: 200.0 * s.min(1.0), secs: 20, unique: true },
        // The goal: 1,000 events/s offered, batched, p99 under 2 s.
        Mode { name: "batches of 100 (age 500 ms)", batch_events: 100, batch_age_ms: 500, backlog: count(2000.0), rate: 1000.0 * s.min(1.0), secs: 20, unique: true },
        Mode { name: "batches of 100 (age 500 ms), texts repeated", batch_events: 100, batch_age_ms: 500, backlog: count(2000.0), rate: 1000.0 * s.min(1.0), secs: 20, unique: false },
    ];
    let stack = Stack::start();
    let worker = stack.worker(&[("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0")]);
    let worker_metrics = common::ops::metrics_addr(&worker.log_text());
    let broker = KafkaBroker::start();
    let mut table = String::from(
        "| mode | backlog | started, events/s | rows, events/s | offered, events/s | p50 produce-to-row | p99 | max | no row within 60 s | workflows |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut profile = format!(
        "| mode | events | {} | all | worker: inference | worker: activities (wall) |\n|---|---|{}---|---|---|\n",
        PROCESSES.map(|p| format!("{p} CPU")).join(" | "),
        "---|".repeat(PROCESSES.len())
    );
    for mode in &modes {
        let f = run(&stack, &broker, (worker.pid(), &worker_metrics), mode);
        let per_k = |seconds: f64| format!("{:.2} s", seconds * 1000.0 / f.events as f64);
        profile.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            mode.name,
            f.events,
            f.cpu.iter().map(|c| per_k(*c)).collect::<Vec<_>>().join(" | "),
            per_k(f.cpu.iter().sum()),
            per_k(f.inference),
            per_k(f.activities)
        ));
        let line = format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} ({} events) | {} ms | {} ms | {} ms | {} | {:.0} |\n",
            mode.name,
            mode.backlog,
            f.started_per_s,
            f.rows_per_s,
            mode.rate,
            f.offered,
            f.p50.as_millis(),
            f.p99.as_millis(),
            f.max.as_millis(),
            f.late,
            f.workflows
        );
        print!("{line}");
        table.push_str(&line);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| cpu.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_once(':')).map_or("", |(_, v)| v.trim()).to_string();
    let simd = if field("flags").split(' ').any(|f| f == "avx512f") { "AVX-512" } else { "no AVX-512" };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let header = format!(
        "`make bench-ingest`, {} cores, {} ({simd}), load average {}\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        field("model name"),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let profile = format!("\nWhere the time goes, per 1,000 events (backlog and steady phase together):\n\n{profile}");
    println!("\n{header}{table}{profile}");
    let dir = common::repo().join("build/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ingest.md"), format!("{header}{table}{profile}")).unwrap();
}
