//! The Sentiment pages in a real browser: Debian's Chromium, headless,
//! driven over WebDriver by `tests/browser/sentiment_pages.py` (Selenium in
//! the project's venv; `scripts/chromium.sh install` runs first). It opens
//! the Sentiment page, drags the slider, changes the filter, opens a trace
//! and the trend; this test holds what it saw to the rows as stored. It
//! Another presses a trace's "Classify now" (`serve --classify`) and sees
//! the generations that had no sentiment appear, as stored. Each
//! takes a screenshot of each page into a temporary directory, or into
//! `$LLMA_SCREENSHOTS_DIR` (`make screenshots` renews the docs' in docs/img/).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::view::{
    ago, analyze_into, generation, insert_generations, migrate, ranking, stored, write_rows, ExpectedTrace, ServeProcess, MILD, NEGATIVE,
    NEUTRAL, POSITIVE, TEAM,
};
use common::ClickHouseServer;
use serde_json::Value;

/// The whole browser session: five pages, each wait inside bounded by 20 s.
const BROWSER: Duration = Duration::from_secs(180);

/// Runs the driver script; its JSON. On timeout its process group (the
/// script, chromedriver, Chromium) is killed.
fn drive(base: &str, shots: &std::path::Path, extra: &[&str]) -> Value {
    let install = common::script("chromium.sh", &["install".as_ref()]);
    let env = String::from_utf8_lossy(&install.stdout).into_owned();
    let var = |name: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_string).expect(name);
    std::fs::create_dir_all(shots).unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(common::python())
            .arg(common::repo_root().join("tests/browser/sentiment_pages.py"))
            .args(["--base", base, "--team", &TEAM.to_string(), "--shots", shots.to_str().unwrap()])
            .args(["--chromium", &var("CHROMIUM"), "--chromedriver", &var("CHROMEDRIVER")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .process_group(0)
            .spawn()
            .expect("run the browser driver")
    };
    let deadline = Instant::now() + BROWSER;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!("the browser session took longer than {BROWSER:?}: {}", std::fs::read_to_string(err.path()).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert!(status.success(), "browser driver failed: {status}\n{stderr}");
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("driver output: {e}: {stdout}\n{stderr}"))
}

/// The rows a person saw are the expected traces, in order, each with the
/// badge `label` gives it and a bar as wide as its intensity.
fn assert_rows(seen: &Value, want: &[ExpectedTrace], label: impl Fn(&ExpectedTrace) -> &'static str, what: &str) {
    let rows = seen["rows"].as_array().unwrap();
    let shown: Vec<&str> = rows.iter().map(|r| r["trace"].as_str().unwrap()).collect();
    let want_ids: Vec<&str> = want.iter().take(200).map(|t| t.trace.as_str()).collect();
    assert_eq!(shown, want_ids, "{what}");
    for (r, w) in rows.iter().zip(want) {
        assert_eq!(r["badge"], label(w), "{what}: {r}");
        assert_eq!(r["badge_visible"], true, "{what}: {r}");
        let (px, total) = (r["bar_px"].as_f64().unwrap(), r["bar_total_px"].as_f64().unwrap());
        // Rendered pixels: within a pixel and a half of the intensity's share.
        assert!((px - w.intensity * total).abs() <= 1.5, "{what}: bar {px} of {total} for {}: {r}", w.intensity);
    }
}

#[test]
fn a_person_filters_the_traces_opens_one_and_sees_the_trend() {
    let ch = ClickHouseServer::start();
    let rows = write_rows(&ch);
    let serve = ServeProcess::start(&ch, &[], &[]);
    let scratch = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("LLMA_SCREENSHOTS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| scratch.path().to_path_buf());
    let seen = drive(&serve.base, &shots, &[]);
    let since = Utc::now() - chrono::Duration::days(30);
    let team_rows: Vec<_> = rows.iter().filter(|r| r.team == TEAM).cloned().collect();
    // The badge of a negative-only or both listing, from the stored generations.
    let side = |t: &ExpectedTrace, filter: &str| -> &'static str {
        let gens: Vec<_> = team_rows.iter().filter(|r| r.trace == t.trace && r.time >= since).collect();
        let max = |i: usize| gens.iter().map(|g| g.scores[i]).fold(f64::MIN, f64::max);
        let negative = filter == "negative" || max(0) >= max(2);
        let has = |l: &str| gens.iter().any(|g| g.label == l);
        match negative {
            true if has("negative") => "negative",
            false if has("positive") => "positive",
            _ => "neutral",
        }
    };

    // As it opens: negative traces by negative intensity.
    let want = ranking(&rows, since, Some(TEAM), "negative", 0.0);
    assert_rows(&seen["initial"], &want, |t| side(t, "negative"), "initial");
    assert!(seen["initial"]["summary"].as_str().unwrap().starts_with(&format!("{} trace(s)", want.len())), "{}", seen["initial"]);

    // After the drag: the slider's value (the page shows it) filters the rows.
    let slider = &seen["slider"];
    let min: f64 = slider["value"].as_str().unwrap().parse().unwrap();
    assert!(min > 0.2 && min < 0.8, "the drag moved the thumb to the middle: {slider}");
    assert_eq!(slider["shown"].as_str().unwrap(), format!("{min:.2}"));
    let want = ranking(&rows, since, Some(TEAM), "negative", min);
    assert_rows(slider, &want, |t| side(t, "negative"), "slider");

    // Both sides, the slider kept.
    let both = &seen["both"];
    assert!(both["url"].as_str().unwrap().contains(&format!("min={}", slider["value"].as_str().unwrap())), "{both}");
    let want = ranking(&rows, since, Some(TEAM), "both", min);
    assert_rows(both, &want, |t| side(t, "both"), "both");

    // The first trace: its generations in time order, a badge each, a bar
    // per message whose hover names its scores.
    let trace = &seen["trace"];
    let id = trace["trace_id"].as_str().unwrap();
    assert_eq!(id, want[0].trace);
    let mut gens: Vec<_> = team_rows.iter().filter(|r| r.trace == id).collect();
    gens.sort_by(|a, b| (a.time, &a.generation).cmp(&(b.time, &b.generation)));
    let shown = trace["generations"].as_array().unwrap();
    assert_eq!(shown.iter().map(|g| g["uuid"].as_str().unwrap()).collect::<Vec<_>>(), gens.iter().map(|g| g.generation.as_str()).collect::<Vec<_>>());
    for (g, w) in shown.iter().zip(&gens) {
        assert_eq!(g["badge"], w.label.as_str(), "{g}");
        let messages = g["messages"].as_array().unwrap();
        assert!(!messages.is_empty(), "{g}");
        for m in messages {
            let hover = m["hover"].as_str().unwrap();
            assert!(hover.contains(m["badge"].as_str().unwrap()), "the hover names the label: {m}");
            assert!(m["bar_px"].as_f64().unwrap() > 0.0 && m["bar_px"].as_f64() <= m["bar_total_px"].as_f64(), "{m}");
        }
    }

    // The trend: the chart is there, drawn, with its legend.
    let trend = &seen["trend"];
    assert!(trend["svg_size"]["width"].as_f64().unwrap() > 400.0, "{trend}");
    assert!(trend["lines"].as_u64().unwrap() >= 3, "a line per label: {trend}");
    let texts: Vec<&str> = trend["texts"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for name in ["negative", "neutral", "positive", "Generations per day"] {
        assert!(texts.contains(&name), "{name} not on the chart: {texts:?}");
    }
    assert_eq!(trend["means_chart"], 1);
    let generations = team_rows.iter().filter(|r| r.time >= since).count();
    let summary = trend["summary"].as_str().unwrap();
    let counted: usize = summary.split(", ").filter_map(|part| part.split(' ').next()?.parse::<usize>().ok()).sum();
    assert_eq!(counted, generations, "{summary}");
    for shot in ["sentiment-page.png", "sentiment-page-both.png", "trace-page.png", "trend-page.png"] {
        let path = shots.join(shot);
        assert!(std::fs::metadata(&path).map(|m| m.len() > 1000).unwrap_or(false), "{} missing", path.display());
    }
}

/// A trace whose generations are in the events table, one of them
/// classified: the page shows one, a person presses "Classify now", and the
/// page comes back with all three, each as stored, and says how many it did.
#[test]
fn a_person_classifies_a_trace_on_demand_and_sees_it_change() {
    let ch = ClickHouseServer::start();
    migrate(&ch);
    let trace = "t-browser-on-demand";
    let events = vec![
        generation(TEAM, trace, ago(0, 3), &[NEUTRAL, NEGATIVE]),
        generation(TEAM, trace, ago(0, 2), &[POSITIVE]),
        generation(TEAM, trace, ago(0, 1), &[MILD]),
    ];
    insert_generations(&ch, &events);
    analyze_into(&ch, &events[..1], &[]);
    let serve = ServeProcess::start(&ch, &[], &["--classify"]);
    let scratch = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("LLMA_SCREENSHOTS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| scratch.path().to_path_buf());
    let seen = drive(&serve.base, &shots, &["--classify-trace", trace]);

    let uuids = |page: &Value| -> Vec<String> {
        page["generations"].as_array().unwrap().iter().map(|g| g["uuid"].as_str().unwrap().to_string()).collect()
    };
    let before = &seen["before"];
    assert_eq!(uuids(before), [events[0]["uuid"].as_str().unwrap()], "before: only the one classified: {before}");
    assert_eq!(before["buttons"], 1, "the button is there with serve.classify: {before}");

    let after = &seen["after"];
    let want: Vec<&str> = events.iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    assert_eq!(uuids(after), want, "after: every generation, in time order: {after}");
    assert_eq!(after["notice"], "Classified 2 generation(s) now of the 3 found.", "{after}");
    assert!(after["summary"].as_str().unwrap().starts_with("3 generation(s)"), "{after}");
    // What the page shows is what is stored: each generation's label.
    let rows = stored(&ch, &[TEAM]);
    for g in after["generations"].as_array().unwrap() {
        let uuid = g["uuid"].as_str().unwrap();
        let row = rows.iter().find(|r| r.generation == uuid).unwrap_or_else(|| panic!("{uuid} shown but not stored"));
        assert_eq!(g["badge"], row.label.as_str(), "{g}");
        assert!(!g["messages"].as_array().unwrap().is_empty(), "{g}");
    }
}
