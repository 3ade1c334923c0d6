//! The watchdog on a worker whose host is stuck for real: ClickHouse is
//! frozen (SIGSTOP: the kernel still accepts connections, nothing answers),
//! so every activity hangs in its insert holding its slot. One worker with
//! `worker.exit_when_stuck = false` reports it in `/readyz` and `/metrics`;
//! one with the default exits non-zero for its supervisor to restart it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ops::{http_get, metrics_addr, Scrape};
use common::stack::{event, Stack};
use serde_json::Value;

fn signal(sig: &str, pid: &str) {
    assert!(Command::new("kill").arg(sig).arg(pid).status().unwrap().success());
}

#[test]
fn a_worker_whose_slots_hang_on_a_frozen_clickhouse_is_reported_stuck_and_exits() {
    let stack = Stack::start();
    let common_env = [
        ("LLMA_SENTIMENT_METRICS_ADDR", "127.0.0.1:0"),
        ("LLMA_SENTIMENT_LOG_FORMAT", "json"),
        ("LLMA_SENTIMENT_MAX_CONCURRENT_ACTIVITIES", "1"),
        ("LLMA_SENTIMENT_INSTANCES", "1"),
        // The stall limit is the heartbeat timeout.
        ("LLMA_SENTIMENT_WORKFLOW_HEARTBEAT_TIMEOUT_SECS", "5"),
    ];
    let mut env_a = common_env.to_vec();
    env_a.push(("LLMA_SENTIMENT_WORKER_EXIT_WHEN_STUCK", "false"));
    env_a.push(("LLMA_SENTIMENT_WORKER_IDENTITY", "watchdog-report-only"));
    let mut env_b = common_env.to_vec();
    env_b.push(("LLMA_SENTIMENT_WORKER_IDENTITY", "watchdog-exits"));
    let reporter = stack.worker(&env_a);
    let mut exiter = stack.worker(&env_b);
    let addr = metrics_addr(&reporter.log_text());
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(Scrape::take(&addr).value("llma_sentiment_worker_stuck", &[]), 0.0);

    let ch_pid = std::fs::read_to_string(stack.ch.dir().join("pid")).unwrap().trim().to_string();
    signal("-STOP", &ch_pid);
    let frozen_at = Instant::now();
    // Two workflows, one slot per worker: each worker ends up holding one.
    stack.submit(&[event("I love this"), event("this is broken")], false, false);

    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        let (status, body) = http_get(&addr, "/readyz");
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 503 && v["checks"]["watchdog"]["ok"] == false {
            break v;
        }
        assert!(Instant::now() < deadline, "never reported stuck; last /readyz {status} {body}\n{}", reporter.log_text());
        std::thread::sleep(Duration::from_millis(250));
    };
    let reason = body["checks"]["watchdog"]["error"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("activity slots in use") && reason.contains("no activity progressed"), "{body}");
    assert!(body["failed"].as_array().unwrap().iter().any(|f| f == "watchdog"), "{body}");
    let scrape = Scrape::take(&addr);
    assert_eq!(scrape.value("llma_sentiment_worker_stuck", &[]), 1.0);
    assert_eq!(scrape.value("llma_sentiment_activities_in_flight", &[]), 1.0);
    assert!(reporter.log_text().contains("watchdog: the worker is stuck"), "the state is logged");
    println!("reported stuck {:.1} s after ClickHouse froze", frozen_at.elapsed().as_secs_f64());

    let status = exiter.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("the worker with exit_when_stuck never exited:\n{}", exiter.log_text()));
    assert_eq!(status.code(), Some(70), "{status:?}\n{}", exiter.log_text());
    assert!(exiter.log_text().contains("exiting so that the supervisor restarts the worker"));
    // The report-only worker is still up.
    assert_eq!(http_get(&addr, "/healthz").0, 200);

    signal("-CONT", &ch_pid);
}
