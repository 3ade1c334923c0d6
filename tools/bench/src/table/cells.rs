//! Reading the runtimes' JSON and formatting the table's cells: times,
//! ratios, rates, sizes, FLOPs, and the per-sequence cost model the
//! estimates use.

use serde_json::Value;

use crate::measure::median;

/// Wall times of the calls of a grid cell, or empty.
pub(super) fn cell_times(run: &Value, tokens: usize, batch: usize) -> Vec<f64> {
    cell_series(run, tokens, batch, "times")
}

/// CPU times of the calls of a grid cell, or empty.
pub(super) fn cell_cpu(run: &Value, tokens: usize, batch: usize) -> Vec<f64> {
    cell_series(run, tokens, batch, "cpu")
}

pub(super) fn cell_series(run: &Value, tokens: usize, batch: usize, key: &str) -> Vec<f64> {
    run["grid"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["tokens"].as_u64() == Some(tokens as u64) && c["batch"].as_u64() == Some(batch as u64))
        .and_then(|c| c[key].as_array())
        .map(|t| t.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

pub(super) fn fmt_ms(s: f64) -> String {
    if !s.is_finite() {
        return "–".into();
    }
    let ms = s * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

pub(super) fn fmt_s(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "–".into()
    }
}

pub(super) fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

pub(super) fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

pub(super) fn mb(bytes: f64) -> String {
    if bytes.is_finite() {
        format!("{:.0} MB", bytes / 1e6)
    } else {
        "–".into()
    }
}

pub(super) fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Forward-pass FLOPs of a RoBERTa/BERT-shaped bundle for `batch` sequences
/// of `tokens` (matmuls only: projections, FFN, attention scores and mix).
pub(super) fn flops(config: &Value, tokens: usize, batch: usize) -> Option<f64> {
    let layers = config["num_hidden_layers"].as_f64()?;
    let h = config["hidden_size"].as_f64()?;
    let inter = config["intermediate_size"].as_f64()?;
    let l = tokens as f64;
    let per_layer = 2.0 * (4.0 * h * h + 2.0 * h * inter) * l + 2.0 * 2.0 * l * l * h;
    Some(batch as f64 * layers * per_layer)
}

/// Per-sequence cost model of one runtime, from its grid: seconds per
/// sequence at `tokens` (clamped to the grid, linear in between) in a call
/// of `n` sequences (interpolated between the batch-1 and batch-8 cells).
pub(super) struct CostModel {
    points: Vec<(f64, f64, f64)>, // tokens, s/seq at batch 1, s/seq at batch 8
}

impl CostModel {
    pub(super) fn of(run: &Value, lengths: &[usize]) -> Option<CostModel> {
        let mut points = Vec::new();
        for &l in lengths {
            let b1 = median(&cell_cpu(run, l, 1));
            let b8 = median(&cell_cpu(run, l, 8)) / 8.0;
            if !b1.is_finite() || !b8.is_finite() {
                return None;
            }
            points.push((l as f64, b1, b8));
        }
        (!points.is_empty()).then_some(CostModel { points })
    }

    pub(super) fn per_seq(&self, tokens: f64, n: f64) -> f64 {
        let p = &self.points;
        let t = tokens.clamp(p[0].0, p[p.len() - 1].0);
        let i = p.iter().position(|q| q.0 >= t).unwrap_or(p.len() - 1);
        let (lo, hi) = if i == 0 { (p[0], p[0]) } else { (p[i - 1], p[i]) };
        let f = if hi.0 > lo.0 { (t - lo.0) / (hi.0 - lo.0) } else { 0.0 };
        let b1 = lo.1 + (hi.1 - lo.1) * f;
        let b8 = lo.2 + (hi.2 - lo.2) * f;
        let w = ((n - 1.0) / 7.0).clamp(0.0, 1.0);
        b1 + (b8 - b1) * w
    }

    /// Seconds to run the calls of a shape histogram {"n,len": count}.
    pub(super) fn seconds(&self, shapes: &Value) -> f64 {
        shapes
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, count)| {
                let (n, l) = k.split_once(',').unwrap_or(("1", "1"));
                let (n, l): (f64, f64) = (n.parse().unwrap_or(1.0), l.parse().unwrap_or(1.0));
                n * self.per_seq(l, n) * count.as_f64().unwrap_or(0.0)
            })
            .sum()
    }
}
