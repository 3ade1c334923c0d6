//! The shared result cache tier on a real Redis: what it stores, that a
//! fresh process finds it, and that a Redis that is down, frozen or holding
//! garbage costs at most its timeout and is counted.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use llma_sentiment::cache::{CacheScope, MemoryTier, RedisSettings, RedisTier, ResultCache};
use llma_sentiment::engine::{Label, MessageResult, Scores};
use serde_json::Value;

fn settings(url: &str) -> RedisSettings {
    RedisSettings { url: url.into(), ttl: Duration::from_secs(3600), timeout: Duration::from_millis(50), tls: Default::default() }
}

/// A worker process's cache: its own L1, the shared L2.
fn process_cache(url: &str) -> ResultCache {
    ResultCache::from_tiers(MemoryTier::new(1 << 20), Some(RedisTier::new(&settings(url)).expect("tier")))
}

fn result(p: f32) -> MessageResult {
    let scores = Scores { negative: 0.1, neutral: 0.9 - p, positive: p };
    MessageResult { label: Label::Positive, score: p, scores }
}

fn scope() -> CacheScope {
    CacheScope::from_parts("0123abcd", "0.1.0", "test-model", "test-model-files")
}

/// Retries `f` until it holds or `timeout` passes (the tier connects in the background).
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bound, not a speed target: an unbounded wait would take seconds or forever.
const BOUND: Duration = Duration::from_millis(500);

#[test]
fn a_fresh_process_finds_what_another_one_stored() {
    let redis = RedisServer::start();
    let (s, texts) = (scope(), ["first text", "second text", "third text"]);
    let a = process_cache(&redis.url);
    let first = a.lookup(&s, &texts, None);
    assert!(first.results.iter().all(Option::is_none));
    let computed: Vec<(&str, MessageResult)> = texts.iter().enumerate().map(|(i, t)| (*t, result(0.3 + i as f32 / 10.0))).collect();
    a.store(&s, &computed, None);
    let again = a.lookup(&s, &texts, None);
    assert_eq!((again.counts.l1, again.counts.l2, again.counts.misses), (3, 0, 0), "the storing process answers from L1");

    let b = process_cache(&redis.url);
    let shared = b.lookup(&s, &["second text", "never seen", "first text", "first text"], None);
    assert_eq!((shared.counts.l1, shared.counts.l2, shared.counts.misses), (0, 3, 1), "{:?}", shared.counts);
    assert_eq!(format!("{:?}", shared.results[0]), format!("{:?}", Some(computed[1].1)));
    assert_eq!(format!("{:?}", shared.results[2]), format!("{:?}", Some(computed[0].1)));
    let promoted = b.lookup(&s, &["second text"], None);
    assert_eq!(promoted.counts.l1, 1, "an L2 answer is kept in L1");
    let other_scope = CacheScope::from_parts("ffff", "0.1.0", "test-model", "test-model-files");
    assert_eq!(b.lookup(&other_scope, &["first text"], None).counts.misses, 1, "another build never sees these results");

    // Only digests and 13-byte values, with the TTL.
    let keys = redis.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        assert!(!key.contains("text"), "{key}");
        let ttl: u64 = redis.cli(&["TTL", key]).unwrap().trim().parse().unwrap();
        assert!((3500..=3600).contains(&ttl), "ttl {ttl}");
        let len: u64 = redis.cli(&["STRLEN", key]).unwrap().trim().parse().unwrap();
        assert_eq!(len, 13);
    }
    assert_eq!(b.stats().l2_errors, 0);
}

#[test]
fn redis_down_at_start_costs_nothing_and_is_used_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let cache = process_cache(&redis.url);
    let s = scope();
    for i in 0..20 {
        let text = format!("text {i}");
        let t = Instant::now();
        let l = cache.lookup(&s, &[text.as_str()], None);
        cache.store(&s, &[(text.as_str(), result(0.5))], None);
        assert!(t.elapsed() < BOUND, "a lookup and a store with Redis down took {:?}", t.elapsed());
        assert_eq!(l.counts.misses, 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!cache.shared().unwrap().is_available());
    assert!(cache.shared().unwrap().stats().errors > 0, "failed connection attempts are counted");

    redis.restart();
    let fresh = process_cache(&redis.url);
    // The tier reconnects by itself within its reconnect interval. Checked
    // on one round: a store of an earlier round may be what the fresh
    // client reads while this round's store failed (a call that times out
    // while the connection comes back marks the tier down again).
    assert!(
        eventually(Duration::from_secs(10), || {
            cache.store(&s, &[("stored after the restart", result(0.7))], None);
            cache.shared().unwrap().is_available()
                && fresh.lookup(&s, &["stored after the restart"], None).counts.l2 == 1
        }),
        "the tier never used the Redis that came back"
    );
}

#[test]
fn a_frozen_redis_costs_at_most_the_timeout_and_is_counted() {
    let redis = RedisServer::start();
    let cache = process_cache(&redis.url);
    let s = scope();
    assert!(eventually(Duration::from_secs(5), || {
        cache.store(&s, &[("warm", result(0.5))], None);
        process_cache(&redis.url).lookup(&s, &["warm"], None).counts.l2 == 1
    }));
    let before = cache.shared().unwrap().stats().errors;
    redis.freeze();
    let t = Instant::now();
    let l = cache.lookup(&s, &["not in L1"], None);
    let frozen = t.elapsed();
    assert!(frozen < BOUND, "lookup against a frozen Redis took {frozen:?}");
    assert_eq!(l.counts.misses, 1);
    assert!(cache.shared().unwrap().stats().errors > before, "the timeout was counted");
    assert!(llma_sentiment::metrics::render().lines().any(|l| l.starts_with("llma_sentiment_redis_errors_total{kind=\"timeout\"}") && !l.ends_with(" 0")));
    // Paused after the error: later lookups do not even try.
    let t = Instant::now();
    for _ in 0..10 {
        cache.lookup(&s, &["not in L1"], None);
    }
    assert!(t.elapsed() < BOUND, "ten lookups while paused took {:?}", t.elapsed());
    // A deadline shorter than the timeout wins.
    std::thread::sleep(llma_sentiment::cache::redis::PAUSE_AFTER_ERROR);
    let t = Instant::now();
    cache.lookup(&s, &["not in L1"], Some(Instant::now() + Duration::from_millis(5)));
    assert!(t.elapsed() < Duration::from_millis(45), "the caller's deadline was not kept: {:?}", t.elapsed());
    redis.thaw();
    assert!(eventually(Duration::from_secs(5), || cache.lookup(&s, &["warm2"], None).counts.misses == 1 && cache.shared().unwrap().is_available()));
}

#[test]
fn garbage_in_redis_is_a_counted_miss_and_gets_rewritten() {
    let redis = RedisServer::start();
    let s = scope();
    let writer = process_cache(&redis.url);
    assert!(eventually(Duration::from_secs(5), || {
        writer.store(&s, &[("one", result(0.4)), ("two", result(0.6))], None);
        redis.keys().len() == 2
    }));
    let keys = redis.keys();
    redis.cli(&["SET", &keys[0], "not a result"]).unwrap();
    redis.cli(&["DEL", &keys[1]]).unwrap();
    redis.cli(&["HSET", &keys[1], "field", "value"]).unwrap();
    let reader = process_cache(&redis.url);
    assert!(eventually(Duration::from_secs(5), || reader.shared().unwrap().is_available() || {
        reader.lookup(&s, &["warm-up"], None);
        false
    }));
    let before = reader.shared().unwrap().stats().errors;
    let l = reader.lookup(&s, &["one", "two"], None);
    assert_eq!(l.counts.misses + l.counts.l2, 2);
    assert!(l.results.iter().all(|r| r.as_ref().is_none_or(|r| (0.0..=1.0).contains(&r.score))));
    assert!(reader.shared().unwrap().stats().errors > before, "garbage was counted");
    // Classified again and stored: the next process gets valid values.
    reader.store(&s, &[("one", result(0.4)), ("two", result(0.6))], None);
    let third = process_cache(&redis.url);
    assert!(eventually(Duration::from_secs(5), || third.lookup(&s, &["one", "two"], None).counts.l2 == 2));
}

fn analyze(redis_url: &str, file: &std::path::Path) -> (Vec<Value>, String) {
    let out = common::services::run_bin(
        &["analyze", "--redis-url", redis_url, file.to_str().unwrap()],
        &[("LLMA_SENTIMENT_PROGRESS", "off")],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "analyze: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, stderr)
}

/// Counts `l1 N l2 N, misses N` from analyze's summary line.
fn tiers(stderr: &str) -> (u64, u64, u64) {
    let line = stderr.lines().find(|l| l.starts_with("analyze:")).unwrap_or_else(|| panic!("no summary: {stderr}"));
    let num = |k: &str| -> u64 {
        let rest = &line[line.find(k).unwrap_or_else(|| panic!("no {k:?} in {line}")) + k.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (num("l1"), num("l2"), num("misses"))
}

#[test]
fn a_second_analyze_in_a_fresh_process_shows_the_l2_hits() {
    let redis = RedisServer::start();
    let file = common::repo().join("samples/events.jsonl");
    let (first, err1) = analyze(&redis.url, &file);
    let (l1, l2, misses) = tiers(&err1);
    assert_eq!(l2, 0, "{err1}");
    assert!(misses > 0, "{err1}");
    let (second, err2) = analyze(&redis.url, &file);
    let (l1b, l2b, missesb) = tiers(&err2);
    assert_eq!(missesb, 0, "everything was in Redis: {err2}");
    assert_eq!(l2b, misses, "each text the first run classified is an L2 hit: {err2}");
    assert_eq!(l1b, l1, "{err2}");
    let view = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| format!("{} {} {}", e["properties"]["$ai_sentiment_label"], e["properties"]["$ai_sentiment_score"], e["properties"]["$ai_sentiment_messages"]))
            .collect()
    };
    assert_eq!(view(&second), view(&first), "results from Redis equal the computed ones");
    // Nothing but digests and scores: no message text of the sample in Redis.
    let sample = std::fs::read_to_string(&file).unwrap();
    let texts: Vec<String> = sample
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|e| e["properties"]["$ai_input"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["content"].as_str().map(String::from))
        .filter(|t| t.len() >= 8)
        .collect();
    assert!(!texts.is_empty());
    let mut everything = String::new();
    for key in redis.keys() {
        everything.push_str(&key);
        everything.push_str(&redis.cli(&["GET", &key]).unwrap_or_default());
    }
    for t in &texts {
        assert!(!everything.contains(t.as_str()), "Redis holds a message text: {t}");
    }
}
