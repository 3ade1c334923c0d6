//! The report: one markdown table per bundle from the JSON every runtime
//! printed.

use std::path::Path;

use serde_json::Value;

mod cells;
mod startup;

use cells::*;
use crate::measure::{median, pct, read_json};
use llma_sentiment::engine::Metering;

pub struct TableCtx<'a> {
    pub cores: usize,
    pub quick: bool,
    pub cold_compile: Option<f64>,
    pub plugin_bytes: usize,
    pub load_start: &'a str,
    pub load_end: &'a str,
    pub cpu_features: &'a str,
    pub vectors: &'a str,
}

pub fn table(model: &Path, all: &Value, ctx: &TableCtx) -> anyhow::Result<String> {
    let (wasm, native, ort1, ort_all) = (&all["wasm"], &all["native"], &all["ort1"], &all["ort_all"]);
    let config = read_json(&model.join("config.json")).unwrap_or(Value::Null);
    let weights = std::fs::metadata(model.join("model.onnx")).map(|m| m.len() as f64).unwrap_or(f64::NAN);
    let stats = &ort1["stats"];
    let lengths: Vec<usize> = {
        let mut l: Vec<usize> = wasm["grid"].as_array().into_iter().flatten().filter_map(|c| c["tokens"].as_u64()).map(|t| t as usize).collect();
        l.sort();
        l.dedup();
        l
    };
    let cols = [wasm, native, ort1, ort_all];
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut row = |name: String, cells: [String; 4], ratio: String| {
        let [a, b, c, d] = cells;
        rows.push([name, a, b, c, d, ratio]);
    };

    // Latency per sequence.
    for &l in &lengths {
        for batch in [1usize, 8] {
            let v: Vec<(f64, f64, f64, usize)> = cols
                .iter()
                .map(|r| {
                    let (t, c) = (cell_times(r, l, batch), cell_cpu(r, l, batch));
                    let b = batch as f64;
                    (median(&t) / b, pct(&t, 0.99) / b, median(&c) / b, t.len())
                })
                .collect();
            if v[0].3 == 0 && v[2].3 == 0 {
                continue;
            }
            let cell = |(p50, p99, cpu, n): (f64, f64, f64, usize)| {
                if n == 0 {
                    "–".into()
                } else {
                    format!("{} / {}; cpu {} (n={n})", fmt_ms(p50), fmt_ms(p99), fmt_ms(cpu))
                }
            };
            row(
                format!("latency {l} tok, batch {batch}: ms/seq wall p50 / p99; CPU p50"),
                [cell(v[0]), cell(v[1]), cell(v[2]), cell(v[3])],
                format!("{} (wall {})", fmt_ratio(v[0].2 / v[2].2), fmt_ratio(v[0].0 / v[2].0)),
            );
        }
    }
    // Throughput of the arithmetic.
    if let Some(f) = flops(&config, 128, 8) {
        let g: Vec<f64> = cols.iter().map(|r| f / median(&cell_cpu(r, 128, 8)) / 1e9).collect();
        row(
            "GFLOP/s at 128 tok x 8 (matmul FLOPs / CPU p50; ORT all: per CPU-second)".into(),
            [fmt_rate(g[0]), fmt_rate(g[1]), fmt_rate(g[2]), fmt_rate(g[3])],
            fmt_ratio(g[0] / g[2]),
        );
    }
    let fuel: Vec<String> = wasm["overhead"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["fuel_per_call"].as_f64().is_some_and(|f| f > 0.0))
        .map(|c| format!("{:.2e} at {} tok x {}", num(&c["fuel_per_call"]) / (num(&c["tokens"]) * num(&c["batch"])), c["tokens"], c["batch"]))
        .collect();
    if !fuel.is_empty() {
        row("fuel per token (engine with fuel metering)".into(), [fuel.join("; "), "–".into(), "–".into(), "–".into()], "".into());
    }
    for c in wasm["overhead"].as_array().into_iter().flatten() {
        let series = |k: &str| c[k].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>()).unwrap_or_default();
        let variants = Metering::ALL;
        let runs: Vec<Vec<f64>> = variants.iter().map(|(name, _)| series(name)).collect();
        let none = &runs[variants.len() - 1];
        // The fastest call is the least disturbed by other load, but it hides
        // what a typical call pays; the median of each round's ratio to the
        // same round's call without limits shows that, and the interleaving
        // cancels drift between rounds.
        let best: Vec<f64> = runs.iter().map(|s| pct(s, 0.0)).collect();
        let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
        let over: Vec<String> = names
            .iter()
            .zip(runs.iter().zip(&best))
            .take(variants.len() - 1)
            .map(|(k, (s, t))| {
                let paired = median(&s.iter().zip(none).map(|(t, n)| t / n).collect::<Vec<_>>());
                format!("{k} {:+.1}% / {:+.1}%", (t / best[variants.len() - 1] - 1.0) * 100.0, (paired - 1.0) * 100.0)
            })
            .collect();
        row(
            format!("limits cost, {} tok x {}: {} (CPU ms/call, best of {} interleaved)", c["tokens"], c["batch"], names.join(" / "), none.len()),
            [best.iter().map(|t| fmt_ms(*t)).collect::<Vec<_>>().join(" / "), "–".into(), "–".into(), "–".into()],
            format!("over none, best / median of the rounds' ratios: {}", over.join(", ")),
        );
    }

    // The stream.
    let per_core = |r: &Value, threads: f64| num(&r["stream"]["messages"]) / num(&r["stream"]["wall"]) / threads;
    let rates = [per_core(wasm, 1.0), per_core(native, 1.0), per_core(ort1, 1.0), per_core(ort_all, ctx.cores as f64)];
    row(
        "stream sample: messages/s per core (wall; ORT all threads ÷ cores)".into(),
        rates.map(fmt_rate),
        fmt_ratio(rates[0] / rates[2]),
    );
    let per_cpu = |r: &Value| num(&r["stream"]["messages"]) / num(&r["stream"]["cpu"]);
    let cpu_rates = [per_cpu(wasm), per_cpu(native), per_cpu(ort1), per_cpu(ort_all)];
    row("stream sample: messages per CPU-second".into(), cpu_rates.map(fmt_rate), fmt_ratio(cpu_rates[0] / cpu_rates[2]));
    let how = ["analyze(), length-bucketed batches of 8, no result cache", "batches of 8 in order", "1 message at a time", "1 message at a time"];
    row(
        "stream sample: generations / messages classified".into(),
        std::array::from_fn(|i| format!("{} / {} ({})", cols[i]["stream"]["generations"], cols[i]["stream"]["messages"], how[i])),
        "".into(),
    );
    let ws = &stats["stream"];
    let whole = &wasm["whole_stream"];
    if whole.is_object() {
        // The seed's cost per message does not depend on repeats: its rate on
        // the sample (1 generation in K of this stream) is its rate here.
        let ours_wall = num(&whole["messages"]) / num(&whole["wall"]);
        let ours_cpu = num(&whole["messages"]) / num(&whole["cpu"]);
        let seed_wall = per_core(ort1, 1.0);
        let seed_cpu = per_cpu(ort1);
        row(
            "WHOLE stream, ours = result cache + length bucketing (as the worker runs; cache empty at start): messages/s per core (wall); per CPU-second".into(),
            [
                format!("{} ; {} ({} messages, {} generations)", fmt_rate(ours_wall), fmt_rate(ours_cpu), whole["messages"], whole["generations"]),
                "–".into(),
                format!("{} ; {} (sample rate, 1 at a time)", fmt_rate(seed_wall), fmt_rate(seed_cpu)),
                "–".into(),
            ],
            format!("{} (wall {})", fmt_ratio(ours_cpu / seed_cpu), fmt_ratio(ours_wall / seed_wall)),
        );
        let lookups = num(&whole["cache_hits"]) + num(&whole["cache_misses"]);
        row(
            "WHOLE stream: result cache hits / lookups (hit rate); evictions; bytes used / capacity".into(),
            [
                format!(
                    "{} / {} ({:.1}%); {}; {} / {}",
                    whole["cache_hits"],
                    lookups,
                    num(&whole["cache_hits"]) / lookups * 100.0,
                    whole["cache_evictions"],
                    mb(num(&whole["cache_bytes"])),
                    mb(num(&whole["cache_capacity"]))
                ),
                "–".into(),
                "no cache".into(),
                "–".into(),
            ],
            "".into(),
        );
    }
    let swap = &all["swap"];
    if swap.is_object() {
        let act = &swap["activation"];
        let made = match &act["snapshot"] {
            s if s["created"] == true => format!("snapshot made in {:.1} s", num(&s["seconds"])),
            s if s["fallback"].is_string() => format!("no snapshot: {}", s["fallback"]),
            _ => "snapshot found".into(),
        };
        row(
            "HOT SWAP during the whole stream, 2 task slots: tasks / FAILED / on the new version; activation (compile, snapshot, self-test)".into(),
            [
                format!(
                    "{} / {} / {}; {:.1} s ({made}){}",
                    swap["tasks"],
                    swap["failed"],
                    swap["on_new_version"],
                    num(&act["seconds"]),
                    act["error"].as_str().map(|e| format!(", FAILED: {e}")).unwrap_or_default()
                ),
                "–".into(),
                "–".into(),
                "–".into(),
            ],
            "".into(),
        );
        let ph = |k: &str| {
            let p = &swap[k];
            format!("{} tasks, {} / {}", p["tasks"], fmt_ms(num(&p["wall_p50"])), fmt_ms(num(&p["wall_max"])))
        };
        row(
            "hot swap: task wall p50 / max (ms) before / during / after the activation; first task on the new version".into(),
            [
                format!("{}; {}; {}; first {}", ph("before"), ph("during"), ph("after"), fmt_ms(num(&swap["first_on_new_version_wall"]))),
                "–".into(),
                "–".into(),
                "–".into(),
            ],
            "".into(),
        );
        row(
            "hot swap run: texts two tasks had in flight at once, classified once (single-flight); cache hit rate".into(),
            [format!("{}; {:.1}%", swap["deduplicated_in_flight"], num(&swap["cache_hit_rate"]) * 100.0), "–".into(), "–".into(), "–".into()],
            "".into(),
        );
    }
    let cache = &wasm["cache"];
    let hit = 1.0 - num(&cache["unique"]) / num(&cache["messages"]);
    row(
        "whole stream: generations / user messages / distinct texts".into(),
        [
            format!("{} / {} / {} (plugin extract)", cache["generations"], cache["messages"], cache["unique"]),
            "–".into(),
            format!("{} / {} / {} (Python extract)", ws["generations"], ws["messages"], ws["unique_messages"]),
            "–".into(),
        ],
        "".into(),
    );
    row(
        "whole stream: exact-text cache hit rate, messages / tokens".into(),
        [format!("{:.1}%", hit * 100.0), "–".into(), format!("{:.1}% / {:.1}%", num(&ws["hit_rate"]) * 100.0, num(&ws["token_hit_rate"]) * 100.0), "–".into()],
        "".into(),
    );
    row(
        "whole stream: tokens/message p50 / p90 / p99 / max; share < 40".into(),
        [
            "–".into(),
            "–".into(),
            format!(
                "{} / {} / {} / {}; {:.0}%",
                ws["tokens_p50"],
                ws["tokens_p90"],
                ws["tokens_p99"],
                ws["tokens_max"],
                num(&ws["under_40"]) * 100.0
            ),
            "–".into(),
        ],
        "".into(),
    );
    let padded = &ws["padded_tokens"];
    let real = num(&padded["seed"]);
    let waste = |k: &str, base: &str| (num(&padded[k]) / num(&padded[base]) - 1.0) * 100.0;
    row(
        "whole stream: padding waste, tokens run / real tokens run - 1 (no cache; with cache: of the misses)".into(),
        [
            format!(
                "no cache: in order {:.0}%, sorted by tokens in 8s {:.0}%, bucketed by chars (ours) {:.1}%, same rule on tokens {:.1}%; cache: in order {:.1}%, by chars (ours) {:.1}%, by tokens {:.1}%",
                waste("asis", "seed"),
                waste("bucket", "seed"),
                waste("char_bucket", "distinct"),
                waste("token_bucket", "distinct"),
                waste("cache", "cache_real"),
                waste("cache_char_bucket", "cache_real"),
                waste("cache_bucket", "cache_real"),
            ),
            "–".into(),
            "0% (1 at a time)".into(),
            "–".into(),
        ],
        "".into(),
    );
    row(
        "whole stream: tokens run / all real tokens".into(),
        [
            format!(
                "as is {:.2}; bucketed {:.2}; cache {:.3}; cache+bucketed (ours) {:.3}",
                num(&padded["asis"]) / real,
                num(&padded["char_bucket"]) / real,
                num(&padded["cache"]) / real,
                num(&padded["cache_char_bucket"]) / real
            ),
            "–".into(),
            "1.00 (no cache, no padding)".into(),
            "–".into(),
        ],
        "".into(),
    );
    // Estimates from the measured grids (calibrated on the measured sample).
    if let (Some(ours), Some(seed)) = (CostModel::of(wasm, &lengths), CostModel::of(ort1, &lengths)) {
        let sample_shapes = &stats["sample"]["shapes"];
        let k_ours = num(&wasm["stream"]["cpu"]) / ours.seconds(&sample_shapes["char_bucket"]);
        let k_seed = num(&ort1["stream"]["cpu"]) / seed.seconds(&sample_shapes["seed"]);
        let msgs = num(&ws["messages"]);
        let seed_rate = msgs / (k_seed * seed.seconds(&ws["shapes"]["seed"]));
        for (label, key) in [
            ("as it stands", "asis"),
            ("+ sorting by tokens, batches of 8", "bucket"),
            ("+ length bucketing (the pipeline, no cache)", "char_bucket"),
            ("+ exact-text cache", "cache"),
            ("+ cache + bucketing by tokens", "cache_bucket"),
            ("+ cache + bucketing by chars (the pipeline)", "cache_char_bucket"),
        ] {
            let rate = msgs / (k_ours * ours.seconds(&ws["shapes"][key]));
            row(
                format!("estimate, whole stream, ours {label}: messages per CPU-second"),
                [fmt_rate(rate), "–".into(), fmt_rate(seed_rate), "–".into()],
                fmt_ratio(rate / seed_rate),
            );
        }
        row(
            "estimate calibration (measured sample / cost model)".into(),
            [format!("{k_ours:.2}"), "–".into(), format!("{k_seed:.2}"), "–".into()],
            "".into(),
        );
    }

    startup::rows(&mut row, all, cols, weights, ctx);

    let mut s = String::new();
    use std::fmt::Write as _;
    writeln!(s, "### {} ({})", wasm["model_name"].as_str().unwrap_or("?"), model.display())?;
    writeln!(
        s,
        "cores: {}, {} ({}); plugin {} ({:.1} MB, {}); ONNX Runtime {}; {}; load average before {} / after {} (the machine is shared: other developers' builds and tests run meanwhile)",
        ctx.cores,
        ctx.vectors,
        ctx.cpu_features,
        wasm["plugin_version"].as_str().unwrap_or("?"),
        ctx.plugin_bytes as f64 / 1e6,
        "wasm32-wasip2 +simd128",
        ort1["version"].as_str().unwrap_or("?"),
        if ctx.quick { "QUICK run (few reps)" } else { "full run" },
        ctx.load_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        ctx.load_end.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )?;
    let meta = &all["meta"];
    writeln!(
        s,
        "stream: seed {}, {} traces, {} generations, {} user messages; timed sample: 1 generation in {} ({} generations)",
        meta["seed"], meta["traces"], meta["generations"], meta["user_messages"], meta["sample_stride"], meta["sample_generations"]
    )?;
    writeln!(s)?;
    writeln!(s, "| measure | ours: tract in wasm (the worker's limits: epoch ticks, the deadline checked on them) | native tract | seed: ORT 1 thread | ORT all threads | ours / seed |")?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    for r in &rows {
        writeln!(s, "| {} |", r.join(" | "))?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "ours / seed: tract in wasm over ORT 1 thread (times and memory: lower is better; rates: higher is better). \
         Latency includes tokenization; batch 8 is the call time / 8; p99 of n calls is close to their maximum; \
         the ratio is on CPU time (single-threaded runtimes: the calling thread's), which other load on a shared machine \
         disturbs far less than wall time. Estimates apply each runtime's measured CPU cost per sequence (grid, interpolated) \
         to the whole stream's batch shapes, scaled by the calibration factor measured on the sample (sample CPU time / model). \
         The machine is shared: compare ratios, not absolute times."
    )?;
    Ok(s)
}

