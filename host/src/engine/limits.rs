//! Per-call budgets and per-instance caps.

use std::time::Duration;

/// What the compiled guest checks to stop a call: the deadline and
/// cancellation are checked at each epoch tick (every `epoch_tick`) or at
/// each fuel yield, and fuel also stops a call past its budget whatever the
/// clock. Part of the engine config: a compiled artifact or snapshot made
/// under one is never loaded under another.
///
/// Epoch is the default because it is the cheaper check: fuel adds to a
/// counter in every basic block of the guest and checks it at loop headers;
/// epochs only load and compare at loop headers and function entries. Fuel
/// is for a budget that stops a call deterministically, whatever the clock.
/// What each costs and catches: docs/sandbox.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metering {
    /// The deadline and cancellation on a `epoch_tick` ticker; a spinning
    /// guest runs until its deadline.
    #[default]
    Epoch,
    /// Fuel: a call past its budget traps `out_of_fuel`, deterministically;
    /// the deadline and cancellation are checked where the call yields on
    /// fuel (every few milliseconds).
    Fuel,
    /// Both checks.
    FuelAndEpoch,
    /// No checks: nothing stops a spinning guest. Only for measuring what
    /// the others cost (`llma-bench`); no config file can ask for it.
    #[serde(skip)]
    Unchecked,
}

impl Metering {
    /// Every variant, named as `llma-bench` prints them.
    pub const ALL: [(&'static str, Metering); 4] =
        [("fuel+epoch", Metering::FuelAndEpoch), ("epoch", Metering::Epoch), ("fuel", Metering::Fuel), ("none", Metering::Unchecked)];

    pub fn fuel(self) -> bool {
        matches!(self, Metering::Fuel | Metering::FuelAndEpoch)
    }

    pub fn epoch(self) -> bool {
        matches!(self, Metering::Epoch | Metering::FuelAndEpoch)
    }
}

/// Budgets derived from the production-shaped model (RoBERTa-base, fp32,
/// inside wasm with simd128 on this machine kind): ~2e8 fuel and ~7 ms per
/// token at 512 tokens, so a 512-token text costs ~1.2e11 fuel and ~4 s.
/// The defaults allow ~4x that per text, plus a fixed allowance per call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock allowance of every call, whatever its size.
    pub call_deadline_base: Duration,
    /// Extra wall-clock allowance per text in a `classify` batch.
    pub call_deadline_per_text: Duration,
    /// Wall-clock allowance of `load` (model parse + optimise).
    pub load_deadline: Duration,
    /// Fuel of every call, whatever its size (with fuel metering).
    pub fuel_base: u64,
    /// Extra fuel per token of the largest text the model accepts, per text.
    pub fuel_per_token: u64,
    /// Fuel of `load`.
    pub load_fuel: u64,
    /// Linear memory cap per instance, bytes: every memory of the instance
    /// together (see `limiter`).
    pub memory_bytes: usize,
    /// Table elements per instance, every table together.
    pub max_table_elements: usize,
    /// Caps on the core instances, tables and memories a component may create.
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_memories: usize,
    /// WASI handles (files, directories, streams, pollables) an instance
    /// may hold at once.
    pub max_handles: usize,
    /// Granularity of the epoch deadlines.
    pub epoch_tick: Duration,
    /// Epoch ticks, fuel or both.
    pub metering: Metering,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_deadline_base: Duration::from_secs(10),
            call_deadline_per_text: Duration::from_secs(15),
            load_deadline: Duration::from_secs(120),
            fuel_base: 10_000_000_000,
            fuel_per_token: 1_000_000_000,
            load_fuel: 20_000_000_000_000,
            memory_bytes: 4 << 30,
            max_table_elements: 1 << 16,
            max_instances: 16,
            max_tables: 8,
            max_memories: 2,
            max_handles: 4096,
            epoch_tick: Duration::from_millis(10),
            metering: Metering::default(),
        }
    }
}

impl Limits {
    pub(crate) fn classify_deadline(&self, texts: usize) -> Duration {
        let texts = u32::try_from(texts).unwrap_or(u32::MAX);
        self.call_deadline_base.saturating_add(self.call_deadline_per_text.saturating_mul(texts))
    }

    pub(crate) fn classify_fuel(&self, texts: usize, max_tokens: u32) -> u64 {
        let per_text = self.fuel_per_token.saturating_mul(max_tokens as u64);
        self.fuel_base.saturating_add(per_text.saturating_mul(texts as u64))
    }
}

/// `now + d`, held at a far point instead of overflowing (the config caps
/// durations at a year; this keeps a hand-built `Limits` from panicking).
pub(crate) fn deadline_after(d: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d).or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600))).unwrap_or(now)
}
