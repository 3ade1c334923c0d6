//! The runner of the fuzz properties of `plugin/tests/fuzz_extract.rs` and
//! `host/tests/fuzz_events.rs`.
//!
//! Every property runs `LLMA_FUZZ_CASES` cases (256 by default, so `make
//! test` stays fast; `make reliability` runs 100_000) and prints how many
//! cases ran, how many failed, how long they took and the process's peak
//! memory. With
//! `LLMA_RELIABILITY_REPORT=FILE` set, each property also appends a row to
//! FILE for the reliability table. The generic JSON strategies live here
//! too; each suite keeps its own texts and keys.

pub mod ort;

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
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

/// Prints the figures of one property and appends its reliability row:
/// the cases run, how many failed, and the first failure (shrunk) if any.
pub fn report(name: &str, cases: u64, failures: u64, first_failure: Option<&str>, elapsed: Duration) {
    let rss = max_rss_mb();
    let rate = cases as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "fuzz {name}: {cases} cases, {failures} failed, in {:.1} s ({rate:.0} cases/s), max RSS {rss:.0} MB",
        elapsed.as_secs_f64()
    );
    if let Some(path) = std::env::var_os("LLMA_RELIABILITY_REPORT") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open report");
        // One line per row: the note keeps only the first line of the input, bounded.
        let note: String = first_failure
            .map(|f| format!("first failure: {}", f.replace(['\t', '\n'], " ")))
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let line = format!("fuzz {name} ({:.1} s)\t{cases}\t{failures}\t-\t-\t{rss:.0}\t{note}\n", elapsed.as_secs_f64());
        f.write_all(line.as_bytes()).expect("write report");
    }
}

thread_local! {
    /// Set while this thread runs a fuzz case: its panics are counted, not printed.
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wraps the panic hook once so that a panicking case does not print (the
/// first failure is reported shrunk); other panics print as before.
fn quiet_panics_in_cases() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                previous(info)
            }
        }));
    });
}

/// Why one case failed (an error it returned or a panic), if it did.
fn run_case<V>(test: &impl Fn(V) -> Result<(), TestCaseError>, value: V) -> Option<String> {
    IN_CASE.with(|c| c.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| test(value)));
    IN_CASE.with(|c| c.set(false));
    match outcome {
        Ok(Ok(())) | Ok(Err(TestCaseError::Reject(_))) => None,
        Ok(Err(TestCaseError::Fail(reason))) => Some(reason.to_string()),
        Err(panic) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        ),
    }
}

/// What running a property found.
#[derive(Debug)]
pub struct Outcome {
    pub cases: u64,
    pub failures: u64,
    /// The first failing case, shrunk: its reason and input.
    pub first_failure: Option<String>,
    pub elapsed: Duration,
}

/// Runs `test` on `cases` values of `strategy`, counting every failing case
/// (a returned failure or a panic) instead of stopping at the first; the
/// first is shrunk to a minimal input. Nothing is persisted to disk.
pub fn run<S: Strategy>(strategy: &S, cases: u32, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> Outcome
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let started = Instant::now();
    let (mut ran, mut failures) = (0u64, 0u64);
    let mut first: Option<String> = None;
    quiet_panics_in_cases();
    for _ in 0..cases {
        let mut tree = strategy.new_tree(&mut runner).unwrap_or_else(|e| panic!("cannot generate a case: {e}"));
        ran += 1;
        let Some(mut reason) = run_case(&test, tree.current()) else { continue };
        failures += 1;
        if first.is_none() {
            // proptest's own shrinking: simplify while the case fails,
            // complicate (and test again) when a simplification passed.
            let mut minimal = tree.current();
            if tree.simplify() {
                for _ in 0..MAX_SHRINK_STEPS {
                    match run_case(&test, tree.current()) {
                        Some(r) => {
                            reason = r;
                            minimal = tree.current();
                            if !tree.simplify() {
                                break;
                            }
                        }
                        None if !tree.complicate() => break,
                        None => {}
                    }
                }
            }
            first = Some(format!("{reason}; input: {minimal:?}"));
        }
    }
    Outcome { cases: ran, failures, first_failure: first, elapsed: started.elapsed() }
}

/// Runs the property `name` on `LLMA_FUZZ_CASES` cases ([`run`]), reports
/// its figures (the failures too), then panics if any case failed.
pub fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let o = run(&strategy, fuzz_cases(), test);
    report(name, o.cases, o.failures, o.first_failure.as_deref(), o.elapsed);
    if let Some(first) = o.first_failure {
        panic!("fuzz {name}: {} of {} cases failed; first (shrunk): {first}", o.failures, o.cases);
    }
}

/// Bound of the shrinking of the first failure.
const MAX_SHRINK_STEPS: u32 = 2048;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_case_is_counted_and_the_first_is_shrunk() {
        // Fails from 1000 up, odd values by panicking.
        let o = run(&any::<u32>(), 400, |v| match v {
            0..1000 => Ok(()),
            v if v % 2 == 1 => panic!("panics on {v}"),
            v => Err(TestCaseError::fail(format!("fails on {v}"))),
        });
        assert_eq!(o.cases, 400);
        assert!((200..=400).contains(&o.failures), "{o:?}");
        let first = o.first_failure.unwrap();
        assert!(first.ends_with("input: 1000") && first.starts_with("fails on 1000"), "shrunk to the boundary: {first}");
        let passing = run(&any::<u32>(), 100, |_| Ok(()));
        assert_eq!((passing.cases, passing.failures, passing.first_failure), (100, 0, None));
    }
}
