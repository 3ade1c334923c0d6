//! The worker's metrics and health endpoint, as a scraper sees it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

/// GET `path` from `addr`; (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], "")
}

/// One HTTP/1.1 request with extra `headers` and `body`; (status code, body).
/// Waits at most two minutes for the answer.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut raw = String::new();
    // A server may answer and close before reading a body it refuses: keep what arrived.
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// The worker's log as JSON lines; every line must be JSON.
pub fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}

/// The address the worker's metrics endpoint bound (it was given port 0).
pub fn metrics_addr(log: &str) -> String {
    json_lines(log)
        .iter()
        .find(|l| l["message"] == "metrics endpoint listening")
        .and_then(|l| l["addr"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
}

/// Samples of one scrape, keyed by name and sorted labels.
pub struct Scrape(pub Vec<prometheus_parse::Sample>);

impl Scrape {
    pub fn take(addr: &str) -> Scrape {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        let lines = body.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("Prometheus text format").samples)
    }

    /// A histogram's sum of observations (its `_sum` series), summed over
    /// every label set; 0 when it has none yet.
    pub fn histogram_sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|s| s.metric == format!("{name}_sum") || s.metric == name)
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sample = self
            .0
            .iter()
            .find(|s| s.metric == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(v.as_str())))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map(|b| b.count).unwrap_or(0.0),
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
}

/// The metric names (`llma_sentiment_...`) a text mentions.
pub fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("llma_sentiment_")
        .map(|(at, _)| text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect()
}

/// Every metric name the Grafana dashboard's queries and the alert rules in
/// `deploy/` use.
pub fn deploy_metric_names() -> std::collections::BTreeSet<String> {
    let root = super::repo_root();
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/llma-sentiment.json")).unwrap())
        .expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("every target has an expression"))
        .collect();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let mut names = metric_names(&exprs.join("\n"));
    names.extend(metric_names(&rules));
    names
}

/// The names of the series `/metrics` at `addr` serves now.
pub fn served_metric_names(addr: &str) -> std::collections::BTreeSet<String> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines().filter(|l| !l.starts_with('#')).flat_map(|l| metric_names(l).into_iter().take(1)).collect()
}
