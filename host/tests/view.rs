//! `llma-sentiment serve` on a real ClickHouse (the run's flavour: 18.16, or
//! 26.9 with LLMA_TEST_CLICKHOUSE=modern), over rows the embedded plugin
//! classified (`analyze --output clickhouse`, both schemas): the JSON API's
//! ranking, filters, paging, trace order and trend counts against what was
//! stored, the pages themselves, and the refusals.

mod common;

use std::collections::BTreeMap;

use chrono::Utc;
use common::ops::http;
use common::view::{
    insert_generations,
    ago, analyze_into, generation, migrate, ranking, write_rows, Expected, ServeProcess, MILD, NEGATIVE, NEUTRAL, OTHER_TEAM, POSITIVE, TEAM,
};
use common::ClickHouseServer;
use serde_json::Value;

fn ids(list: &Value) -> Vec<String> {
    list["traces"].as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap().to_string()).collect()
}

/// The listed traces, in order, are the expected ones with their figures.
fn assert_ranked(got: &Value, want: &[common::view::ExpectedTrace], what: &str) {
    let traces = got["traces"].as_array().unwrap();
    let want_ids: Vec<&str> = want.iter().map(|t| t.trace.as_str()).collect();
    assert_eq!(ids(got), want_ids, "{what}: order");
    for (t, w) in traces.iter().zip(want) {
        assert!((t["intensity"].as_f64().unwrap() - w.intensity).abs() < 1e-9, "{what}: {t} vs {w:?}");
        assert_eq!(t["generations"].as_u64(), Some(w.generations), "{what}: {t}");
        assert_eq!(t["team_id"].as_i64(), Some(w.team), "{what}: {t}");
        let last_seen = t["last_seen"].as_str().unwrap();
        assert_eq!(last_seen, w.last_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "{what}");
    }
}

#[test]
fn the_api_ranks_filters_pages_and_counts_what_was_stored() {
    let ch = ClickHouseServer::start();
    let rows = write_rows(&ch);
    let serve = ServeProcess::start(&ch, &[], &[]);
    let since = |days: i64| Utc::now() - chrono::Duration::days(days);
    // The labels the model gave: the fixture must have both sides to rank.
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert!(labels.contains(&"negative") && labels.contains(&"positive") && labels.contains(&"neutral"), "{labels:?}");

    // Negative (the default filter): the whole first page, in order; the
    // 40-day-old trace and the other team's are not in team 7's 30 days.
    let page = serve.json(&format!("/api/traces?team={TEAM}"));
    let want = ranking(&rows, since(30), Some(TEAM), "negative", 0.0);
    assert_eq!(page["filter"], "negative");
    assert_eq!(page["total"].as_u64(), Some(want.len() as u64));
    assert_ranked(&page, &want[..want.len().min(200)], "negative");
    assert!(!ids(&page).iter().any(|t| t == "t-old" || t == "t-other"), "{page}");
    assert!(page["traces"].as_array().unwrap().iter().all(|t| t["label"] == "negative"), "{page}");
    assert_eq!(page["traces"][0]["url"], format!("/traces/{}?team={TEAM}", want[0].trace));

    // The slider: a minimum intensity, for each filter; a wider window
    // brings the old trace back; no team: team 8 too.
    for filter in ["positive", "both", "all"] {
        for min in ["0", "0.5", "0.9"] {
            let got = serve.json(&format!("/api/traces?team={TEAM}&filter={filter}&min={min}&page=0"));
            let want = ranking(&rows, since(30), Some(TEAM), filter, min.parse().unwrap());
            assert_eq!(got["total"].as_u64(), Some(want.len() as u64), "{filter} {min}");
            assert_ranked(&got, &want[..want.len().min(200)], &format!("{filter} min {min}"));
        }
    }
    let wide = serve.json(&format!("/api/traces?team={TEAM}&days=60&min=0.3"));
    assert_ranked(&wide, &ranking(&rows, since(60), Some(TEAM), "negative", 0.3), "60 days");
    assert!(ids(&wide).contains(&"t-old".to_string()));
    let everyone = serve.json("/api/traces?filter=negative&min=0.3");
    assert_ranked(&everyone, &ranking(&rows, since(30), None, "negative", 0.3), "every team");
    assert!(ids(&everyone).contains(&"t-other".to_string()));

    // Paging: 200 per page, the pages together are the ranking, once each.
    let want = ranking(&rows, since(30), Some(TEAM), "all", 0.0);
    assert!(want.len() > 200, "the fixture fills more than a page: {}", want.len());
    let first = serve.json(&format!("/api/traces?team={TEAM}&filter=all"));
    let second = serve.json(&format!("/api/traces?team={TEAM}&filter=all&page=1"));
    assert_eq!((first["pages"].as_u64(), first["page_size"].as_u64()), (Some(2), Some(200)));
    assert_ranked(&first, &want[..200], "page 1");
    assert_ranked(&second, &want[200..], "page 2");

    // A trace: its generations in time order, as stored (the re-classified
    // generation in its latest schema), with model, plugin version, texts.
    for trace in ["t-mixed", "t-angry", "t-eval", "t-calm"] {
        let got = serve.json(&format!("/api/traces/{trace}?team={TEAM}"));
        let mut want: Vec<&Expected> = rows.iter().filter(|r| r.trace == trace && r.team == TEAM).collect();
        want.sort_by(|a, b| (a.time, &a.generation).cmp(&(b.time, &b.generation)));
        let gens = got["generations"].as_array().unwrap();
        let got_ids: Vec<&str> = gens.iter().map(|g| g["generation_uuid"].as_str().unwrap()).collect();
        assert_eq!(got_ids, want.iter().map(|w| w.generation.as_str()).collect::<Vec<_>>(), "{trace}");
        for (g, w) in gens.iter().zip(&want) {
            let p = &w.event.properties;
            assert_eq!(g["event"], w.event.event.as_str(), "{trace}");
            assert_eq!(g["label"], w.label.as_str(), "{trace}");
            assert_eq!(g["model"], p["$ai_sentiment_model"], "{trace}");
            assert_eq!(g["plugin_version"], p["$ai_sentiment_plugin_version"], "{trace}");
            let stored_messages = match &p["$ai_sentiment_messages"] {
                Value::Array(list) => list.clone(),
                Value::Object(by_index) => by_index.values().cloned().collect(),
                other => panic!("{other}"),
            };
            let messages = g["messages"].as_array().unwrap();
            assert_eq!(messages.len(), stored_messages.len(), "{trace}: {g}");
            for (m, s) in messages.iter().zip(&stored_messages) {
                assert_eq!((&m["label"], &m["text"]), (&s["label"], s.get("text").unwrap_or(&Value::Null)), "{trace}");
                assert!((m["score"].as_f64().unwrap() - s["score"].as_f64().unwrap()).abs() < 1e-9, "{trace}: {m} {s}");
            }
        }
    }
    let eval = serve.json(&format!("/api/traces/t-eval?team={TEAM}"));
    assert_eq!(eval["generations"][0]["messages"][1]["text"], NEGATIVE, "store_text keeps the text: {eval}");
    assert!(eval["generations"][0]["messages"][1]["scores"]["negative"].is_f64(), "{eval}");
    let calm = serve.json(&format!("/api/traces/t-calm?team={TEAM}"));
    assert_eq!(calm["generations"][0]["event"], "$ai_evaluation", "the latest event of the generation: {calm}");

    // The trend: per UTC day, counts by label and mean scores.
    let trend = serve.json(&format!("/api/trend?team={TEAM}&days=30"));
    let days = trend["per_day"].as_array().unwrap();
    assert_eq!(days.len(), 31, "30 days back and today: {}", days.len());
    let mut want: BTreeMap<String, (u64, u64, u64, f64, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.team == TEAM && r.time >= since(30)) {
        let e = want.entry(r.time.date_naive().to_string()).or_default();
        match r.label.as_str() {
            "negative" => e.0 += 1,
            "neutral" => e.1 += 1,
            _ => e.2 += 1,
        }
        e.3 += r.scores[0];
        e.4 += 1;
    }
    for d in days {
        let day = d["day"].as_str().unwrap();
        let (neg, neu, pos, sum, n) = want.remove(day).unwrap_or_default();
        assert_eq!((d["negative"].as_u64(), d["neutral"].as_u64(), d["positive"].as_u64()), (Some(neg), Some(neu), Some(pos)), "{day}");
        match n {
            0 => assert!(d["mean_negative"].is_null(), "{d}"),
            n => assert!((d["mean_negative"].as_f64().unwrap() - sum / n as f64).abs() < 1e-9, "{d}"),
        }
    }
    assert!(want.is_empty(), "days stored but not shown: {want:?}");

    // The pages: the same rows as the API, the chart as SVG.
    let (status, html) = http(&serve.addr(), "GET", &format!("/?team={TEAM}&filter=both&min=0.5"), &[], "");
    assert_eq!(status, 200, "{html}");
    let want = ranking(&rows, since(30), Some(TEAM), "both", 0.5);
    assert_eq!(html.matches("<tr class=\"trace\"").count(), want.len().min(200), "{html}");
    let (status, html) = http(&serve.addr(), "GET", &format!("/trend?team={TEAM}"), &[], "");
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("Generations per day"), "{html}");
    let (status, html) = http(&serve.addr(), "GET", &format!("/traces/t-eval?team={TEAM}"), &[], "");
    assert_eq!(status, 200);
    assert!(html.contains(NEGATIVE) && html.contains("class=\"badge"), "{html}");
    // Bad parameters are the client's error, said as such.
    let (status, body) = http(&serve.addr(), "GET", "/api/traces?min=2", &[], "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(&serve.addr(), "GET", "/api/traces?filter=angry", &[], "");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_token_guards_every_page_and_off_loopback_needs_tls_and_a_token() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    let token = "view-token-0123456789";
    let serve = ServeProcess::start(&ch, &[("LLMA_SENTIMENT_SERVE_TOKEN", token)], &[]);
    let addr = serve.addr();
    let bearer = format!("Bearer {token}");
    let (status, body) = http(&addr, "GET", "/api/traces", &[], "");
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(&addr, "GET", "/api/traces", &[("Authorization", "Bearer wrong-token-0123456789")], "");
    assert_eq!(status, 401);
    let (status, body) = http(&addr, "GET", "/api/traces", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["total"], 0);
    // A browser without the cookie goes to the form; the form sets the cookie.
    let (status, _) = http(&addr, "GET", "/trend", &[], "");
    assert_eq!(status, 303);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _) = http(&addr, "POST", "/login", &form, "token=nope");
    assert_eq!(status, 401);
    let (status, _) = http(&addr, "GET", "/trend", &[("Cookie", &format!("llma_sentiment_token={token}"))], "");
    assert_eq!(status, 200);
    drop(serve);

    // Off loopback: refused unless allowed, then without TLS, then without a token.
    let refused = |env: &[(&str, &str)], args: &[&str]| match ServeProcess::try_start(&ch, env, args) {
        Ok(_) => panic!("serve started with {env:?} {args:?}"),
        Err(stderr) => stderr,
    };
    let any = ["--addr", "0.0.0.0:0"];
    assert!(refused(&[], &any).contains("serve.allow_remote"));
    let allow = [("LLMA_SENTIMENT_SERVE_ALLOW_REMOTE", "true")];
    assert!(refused(&allow, &any).contains("no TLS"));
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let tls = ["--addr", "0.0.0.0:0", "--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap()];
    let stderr = refused(&allow, &tls);
    assert!(stderr.contains("no token"), "{stderr}");
}

/// `INSERT ... FORMAT JSONEachRow` of `$ai_generation` events as a producer's
/// table holds them (properties as JSON text).

#[test]
fn classify_on_demand_writes_the_missing_generations_and_is_rate_limited() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    let events = vec![
        generation(TEAM, "t-new", ago(1, 3), &[NEUTRAL, NEGATIVE]),
        generation(TEAM, "t-new", ago(1, 2), &[POSITIVE]),
        generation(TEAM, "t-new", ago(1, 1), &[MILD]),
        generation(OTHER_TEAM, "t-new", ago(1, 1), &[NEGATIVE]),
    ];
    insert_generations(&ch, &events);
    // One generation is classified already (a worker did it): it is not redone.
    analyze_into(&ch, &events[..1], &[]);
    // What the same pipeline says of each, offline.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = common::services::run_bin(&["analyze", file.to_str().unwrap(), "--progress", "off"], &[], None);
    assert!(out.status.success());
    let offline: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| (e["properties"]["$ai_generation_event_uuid"].as_str().unwrap().to_string(), e["properties"]["$ai_sentiment_label"].as_str().unwrap().to_string()))
        .collect();

    let off = ServeProcess::start(&ch, &[], &[]);
    let (status, _) = http(&off.addr(), "POST", &format!("/api/traces/t-new/classify?team={TEAM}"), &[], "");
    assert_eq!(status, 404, "classification is off unless serve.classify");
    drop(off);

    let serve = ServeProcess::start(&ch, &[("LLMA_SENTIMENT_SERVE_CLASSIFY_PER_MINUTE", "2")], &["--classify"]);
    assert_eq!(serve.json(&format!("/api/traces/t-new?team={TEAM}"))["generation_count"], 1);
    let post = |path: &str| {
        let (status, body) = http(&serve.addr(), "POST", path, &[], "");
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let path = format!("/api/traces/t-new/classify?team={TEAM}");
    let (status, trace) = post(&path);
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["classification"], serde_json::json!({"found": 3, "already_stored": 1, "classified": 2, "skipped": 0, "failed": 0}));
    let gens = trace["generations"].as_array().unwrap();
    let want: Vec<&str> = events[..3].iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    assert_eq!(gens.iter().map(|g| g["generation_uuid"].as_str().unwrap()).collect::<Vec<_>>(), want, "in time order");
    for g in gens {
        assert_eq!(g["label"].as_str(), offline.get(g["generation_uuid"].as_str().unwrap()).map(String::as_str), "{g}");
    }
    // Stored, not only answered; the other team's generation untouched.
    assert_eq!(serve.json(&format!("/api/traces/t-new?team={TEAM}"))["generation_count"], 3);
    assert_eq!(serve.json(&format!("/api/traces/t-new?team={OTHER_TEAM}"))["generation_count"], 0);
    let (status, again) = post(&path);
    assert_eq!((status, &again["classification"]["classified"], &again["classification"]["already_stored"]), (200, &serde_json::json!(0), &serde_json::json!(3)));
    // The third in a minute is over the limit: 429, and when to come back.
    let (status, body) = http(&serve.addr(), "POST", &path, &[], "");
    assert_eq!(status, 429, "{body}");
    let retry: Value = serde_json::from_str(&body).unwrap();
    assert!(retry["retry_after_secs"].as_u64().is_some_and(|s| (1..=60).contains(&s)), "{retry}");
    let (status, body) = http(&serve.addr(), "POST", "/api/traces/t-new/classify", &[], "");
    assert!(status == 400 || status == 429, "{status} {body}");
}

#[test]
fn a_batch_of_traces_is_classified_in_one_request_and_counts_against_the_limits() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    let events = vec![
        generation(TEAM, "t-a", ago(1, 3), &[NEGATIVE]),
        generation(TEAM, "t-a", ago(1, 2), &[POSITIVE]),
        generation(TEAM, "t-b", ago(1, 1), &[MILD]),
    ];
    insert_generations(&ch, &events);
    let serve = ServeProcess::start(&ch, &[("LLMA_SENTIMENT_SERVE_CLASSIFY_PER_MINUTE", "5")], &["--classify"]);
    let post = |body: &str| {
        let (status, answer) = http(&serve.addr(), "POST", &format!("/api/classify?team={TEAM}"), &[("Content-Type", "application/json")], body);
        (status, serde_json::from_str::<Value>(&answer).unwrap_or(Value::Null))
    };
    let (status, answer) = post(r#"{"trace_ids": ["t-a", "t-b", "t-unknown"]}"#);
    assert_eq!(status, 200, "{answer}");
    let counts: Vec<(&str, u64, u64)> = answer["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["trace_id"].as_str().unwrap(), t["classification"]["found"].as_u64().unwrap(), t["classification"]["classified"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [("t-a", 2, 2), ("t-b", 1, 1), ("t-unknown", 0, 0)]);
    assert_eq!(serve.json(&format!("/api/traces/t-a?team={TEAM}"))["generation_count"], 2, "stored, not only answered");
    // 3 of 5 used: a batch of 3 is over the limit as a whole and nothing of it is counted ...
    let (status, answer) = post(r#"{"trace_ids": ["t-a", "t-b", "t-a"]}"#);
    assert_eq!(status, 429, "{answer}");
    // ... so a batch of 2 still fits, and finds everything stored.
    let (status, answer) = post(r#"{"trace_ids": ["t-a", "t-b"]}"#);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["traces"].as_array().unwrap().iter().all(|t| t["classification"]["classified"] == 0), "{answer}");
    let too_many: Vec<String> = (0..21).map(|i| format!("t-{i}")).collect();
    assert_eq!(post(&serde_json::json!({"trace_ids": too_many}).to_string()).0, 400);
    assert_eq!(post(r#"{"trace_ids": []}"#).0, 400);
}

/// The trace page's form: from the page itself it classifies and sends the
/// browser back (303) with the counts; from another site it is refused
/// (403) and classifies nothing; without serve.classify there is no button.
#[test]
fn the_classify_button_posts_from_the_page_only() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    let events = vec![generation(TEAM, "t-form", ago(0, 2), &[NEGATIVE]), generation(TEAM, "t-form", ago(0, 1), &[POSITIVE])];
    insert_generations(&ch, &events);
    let off = ServeProcess::start(&ch, &[], &[]);
    let (status, page) = http(&off.addr(), "GET", &format!("/traces/t-form?team={TEAM}"), &[], "");
    assert_eq!(status, 200);
    assert!(!page.contains("<form id=\"classify-form\""), "no button without serve.classify");
    drop(off);

    let serve = ServeProcess::start(&ch, &[], &["--classify"]);
    let (status, page) = http(&serve.addr(), "GET", &format!("/traces/t-form?team={TEAM}"), &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("<form id=\"classify-form\" method=\"post\""), "{page}");
    let path = format!("/traces/t-form/classify?team={TEAM}");
    let (status, page) = http(&serve.addr(), "POST", &path, &[("Origin", "http://evil.example")], "");
    assert_eq!(status, 403, "{page}");
    assert_eq!(serve.json(&format!("/api/traces/t-form?team={TEAM}"))["generation_count"], 0, "a refused form classifies nothing");
    let origin = format!("http://{}", serve.addr());
    let (status, _) = http(&serve.addr(), "POST", &path, &[("Origin", origin.as_str())], "");
    assert_eq!(status, 303, "sent back to the trace");
    assert_eq!(serve.json(&format!("/api/traces/t-form?team={TEAM}"))["generation_count"], 2);
    let (status, page) = http(&serve.addr(), "GET", &format!("/traces/t-form?team={TEAM}&found=2&classified=2&skipped=0&failed=0"), &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("Classified 2 generation(s) now of the 2 found."), "{page}");
}
