//! The rows on starting and memory: compile, artifact load, snapshot
//! creation and readiness, instantiation, resident memory per instance.

use serde_json::Value;

use super::cells::{fmt_ratio, fmt_s, mb, num};
use super::TableCtx;

/// Adds the start-up and memory rows; `cols` are ours, native, ORT 1 thread
/// and ORT all threads; `weights` the model file's bytes.
pub(super) fn rows(row: &mut dyn FnMut(String, [String; 4], String), all: &Value, cols: [&Value; 4], weights: f64, ctx: &TableCtx) {
    let wasm = cols[0];
    // Cold start.
    row(
        "component compile (Cranelift, cold cache)".into(),
        [ctx.cold_compile.map(fmt_s).unwrap_or_else(|| "cached (quick)".into()), "–".into(), "–".into(), "–".into()],
        "".into(),
    );
    row(
        "cached artifact load (fresh process)".into(),
        [
            format!("{}{}", fmt_s(num(&wasm["artifact_load_seconds"])), if wasm["from_cache"] == true { "" } else { " (NOT cached)" }),
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        "".into(),
    );
    let made = &all["snapshot_made"];
    let weights_mb = mb(weights);
    row(
        "snapshot creation (pre-initialise + compile + store; once per plugin, model, machine)".into(),
        [
            match made["fallback"].as_str() {
                Some(why) => format!("none: {why}"),
                None if made["created"] == true => format!("{}; file {} (weights {weights_mb})", fmt_s(num(&made["seconds"])), mb(num(&made["file_bytes"]))),
                None => format!("was cached (quick); file {} (weights {weights_mb})", mb(num(&made["file_bytes"]))),
            },
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        format!("file / weights {}", fmt_ratio(num(&made["file_bytes"]) / weights)),
    );
    let snap = &wasm["snapshot"];
    row(
        "instance ready from the cached snapshot, fresh process: digest check + map; first instance + info".into(),
        [
            match snap["fallback"].as_str() {
                Some(why) => format!("NO SNAPSHOT: {why}"),
                None => format!("{}; {}", fmt_s(num(&snap["seconds"])), fmt_s(num(&wasm["load_seconds"]))),
            },
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        "".into(),
    );
    for (key, what) in [("cold", "from disk: the file dropped from the page cache first"), ("warm", "from the page cache")] {
        let probe = &all["ready"][key];
        if probe.is_null() {
            continue;
        }
        row(
            format!("instance ready from the cached snapshot, fresh process, {what}: process start to ready; first call"),
            [
                match probe["snapshot"]["fallback"].as_str() {
                    Some(why) => format!("NO SNAPSHOT: {why}"),
                    None => format!(
                        "{} (digest check + map {}); first call {}",
                        fmt_s(num(&probe["ready_seconds"])),
                        fmt_s(num(&probe["snapshot"]["seconds"])),
                        fmt_s(num(&probe["first_call_seconds"]))
                    ),
                },
                "–".into(),
                "–".into(),
                "–".into(),
            ],
            "".into(),
        );
    }
    let mem = &wasm["instances_memory"];
    let pss_of = |n: &str| num(&mem["with"][n]["Pss"]) - num(&mem["before"]["Pss"]);
    let (p1, p2, p4) = (pss_of("1"), pss_of("2"), pss_of("4"));
    row(
        format!("PSS of 1 / 2 / 4 ready instances (one classify each), above the process; / weights ({weights_mb})"),
        [
            format!(
                "{} / {} / {}; {} / {} / {}; per further instance {}",
                mb(p1),
                mb(p2),
                mb(p4),
                fmt_ratio(p1 / weights),
                fmt_ratio(p2 / weights),
                fmt_ratio(p4 / weights),
                fmt_ratio((p4 - p1) / 3.0 / weights)
            ),
            "–".into(),
            "–".into(),
            "–".into(),
        ],
        "".into(),
    );
    let loads = cols.map(|r| (num(&r["load_seconds"]), num(&r["load_cpu"])));
    row(
        "instantiate + model ready (ours: from the snapshot; native: load + optimise; ORT: session): wall; CPU".into(),
        loads.map(|(w, c)| format!("{}; cpu {}", fmt_s(w), fmt_s(c))),
        format!("{} (wall {})", fmt_ratio(loads[0].1 / loads[2].1), fmt_ratio(loads[0].0 / loads[2].0)),
    );
    row(
        "warm start: process start to instance ready".into(),
        [fmt_s(num(&wasm["warm_start_seconds"])), "–".into(), "–".into(), "–".into()],
        "".into(),
    );
    // Memory.
    let base = |r: &Value| if r["rss_before_instance"].is_object() { num(&r["rss_before_instance"]["VmRSS"]) } else { num(&r["rss_start"]["VmRSS"]) };
    let loaded = cols.map(|r| num(&r["rss_loaded"]["VmRSS"]) - base(r));
    let end = cols.map(|r| num(&r["rss_end"]["VmRSS"]) - base(r));
    let peak = cols.map(|r| num(&r["rss_end"]["VmHWM"]) - base(r));
    row("RSS per instance after load (above process baseline)".into(), loaded.map(mb), fmt_ratio(loaded[0] / loaded[2]));
    row("RSS per instance at the end (after grid + stream; wasm memory never shrinks)".into(), end.map(mb), fmt_ratio(end[0] / end[2]));
    row("peak RSS per instance (load, grid up to 512 x 8, stream)".into(), peak.map(mb), fmt_ratio(peak[0] / peak[2]));
    row(
        format!("peak RSS per instance / weights ({})", mb(weights)),
        peak.map(|p| fmt_ratio(p / weights)),
        "".into(),
    );
}
