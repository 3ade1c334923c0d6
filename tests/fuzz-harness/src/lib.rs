//! The runner of the fuzz properties of `plugin/tests/fuzz_extract.rs` and
//! `host/tests/fuzz_events.rs`.
//!
//! Every property runs `LLMA_FUZZ_CASES` cases (256 by default, so `make
//! test` stays fast; `make reliability` runs 100_000) and prints how many
//! cases ran, how long they took and the process's peak memory. With
//! `LLMA_RELIABILITY_REPORT=FILE` set, each property also appends a row to
//! FILE for the reliability table. The generic JSON strategies live here
//! too; each suite keeps its own texts and keys.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

pub fn fuzz_cases() -> u32 {
    match std::env::var("LLMA_FUZZ_CASES") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("LLMA_FUZZ_CASES={v:?} is not a number")),
        Err(_) => 256,
    }
}

/// Peak resident set of this process (VmHWM), in MiB.
pub fn max_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Prints the figures of one property (and appends its reliability row).
pub fn report(name: &str, cases: u64, elapsed: Duration) {
    let rss = max_rss_mb();
    let rate = cases as f64 / elapsed.as_secs_f64().max(1e-9);
    println!("fuzz {name}: {cases} cases in {:.1} s ({rate:.0} cases/s), max RSS {rss:.0} MB", elapsed.as_secs_f64());
    if let Some(path) = std::env::var_os("LLMA_RELIABILITY_REPORT") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open report");
        let line = format!("fuzz {name} ({:.1} s)\t{cases}\t0\t-\t-\t{rss:.0}\n", elapsed.as_secs_f64());
        f.write_all(line.as_bytes()).expect("write report");
    }
}

/// Runs `test` on `LLMA_FUZZ_CASES` values of `strategy`; panics with the
/// shrunk failing input on the first failure. Nothing is persisted to disk.
pub fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases: fuzz_cases(), failure_persistence: None, max_shrink_iters: 2048, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    let elapsed = started.elapsed();
    if let Err(e) = result {
        panic!("fuzz {name} failed: {e}");
    }
    report(name, ran.load(Ordering::Relaxed), elapsed);
}

/// JSON numbers: the integer extremes, any finite float, and the zeros.
pub fn json_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        Just(json!(0)),
        Just(json!(-0.0)),
    ]
    .boxed()
}

/// Any JSON value nested up to 64 levels, with strings from `text` and
/// object keys from `key` (each suite draws its own, biased to what it parses).
pub fn any_json(text: BoxedStrategy<String>, key: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), json_number(), text.prop_map(Value::String)];
    leaf.prop_recursive(64, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}
