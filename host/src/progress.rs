//! Progress of long command-line runs (`analyze`, `submit`) on stderr: an
//! `indicatif` bar with rate and ETA on a terminal, plain periodic lines
//! (`progress: 500/1300 events (38%), 120.0 events/s, ETA 6s`) otherwise, so
//! that logs of a backfill run under a supervisor stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    Bar,
    Plain,
    Off,
}

#[derive(Debug, Clone, Copy)]
pub struct ProgressConfig {
    pub mode: ProgressMode,
    /// Plain mode: a line every this many items (0: only by time).
    pub every: u64,
    /// Plain mode: a line at least this often while items complete.
    pub interval: Duration,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        ProgressConfig { mode: ProgressMode::Auto, every: 1000, interval: Duration::from_secs(10) }
    }
}

enum Output {
    Bar(ProgressBar),
    Plain(Box<dyn Write + Send>),
    Off,
}

/// Counts finished items and reports them; call [`Progress::finish`] at the end.
pub struct Progress {
    output: Output,
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    every: u64,
    interval: Duration,
    started: Instant,
    last_line: Instant,
    last_line_done: u64,
    finished: bool,
}

impl Progress {
    /// Progress on stderr; `total` is the number of items when known.
    pub fn stderr(config: &ProgressConfig, unit: &'static str, total: Option<u64>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let output = match config.mode {
            ProgressMode::Off => Output::Off,
            ProgressMode::Bar => Output::Bar(bar(total, unit)),
            ProgressMode::Auto if terminal => Output::Bar(bar(total, unit)),
            ProgressMode::Auto | ProgressMode::Plain => Output::Plain(Box::new(std::io::stderr())),
        };
        Progress::new(output, config, unit, total)
    }

    /// Plain lines to `out`, whatever the config's mode.
    pub fn plain(out: Box<dyn Write + Send>, config: &ProgressConfig, unit: &'static str, total: Option<u64>) -> Progress {
        Progress::new(Output::Plain(out), config, unit, total)
    }

    fn new(output: Output, config: &ProgressConfig, unit: &'static str, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            output,
            unit,
            total,
            done: 0,
            every: config.every,
            interval: config.interval,
            started: now,
            last_line: now,
            last_line_done: 0,
            finished: false,
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &mut self.output {
            Output::Bar(bar) => bar.inc(n),
            Output::Plain(_) => {
                let by_count = self.every > 0 && self.done - self.last_line_done >= self.every;
                let by_time = self.last_line.elapsed() >= self.interval;
                if by_count || by_time {
                    self.line(false);
                }
            }
            Output::Off => {}
        }
    }

    /// Runs `f` with the bar hidden, so that a message printed to stderr
    /// does not tear it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.output {
            Output::Bar(bar) => bar.suspend(f),
            _ => f(),
        }
    }

    /// Leaves the bar at its final position, or prints the final line.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match &self.output {
            Output::Bar(bar) => {
                // A cleared bar plus one plain line leaves a record in the
                // scrollback, and whatever is printed next starts on its own line.
                bar.finish_and_clear();
                eprintln!("{}", plain_line(self.done, self.total, self.started.elapsed(), self.unit, true));
            }
            Output::Plain(_) => self.line(true),
            Output::Off => {}
        }
    }

    fn line(&mut self, last: bool) {
        let text = plain_line(self.done, self.total, self.started.elapsed(), self.unit, last);
        if let Output::Plain(out) = &mut self.output {
            // Progress is best effort: a closed stderr must not stop the run.
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
        self.last_line = Instant::now();
        self.last_line_done = self.done;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Output::Bar(bar) = &self.output {
            if !self.finished {
                bar.abandon();
            }
        }
    }
}

fn bar(total: Option<u64>, unit: &'static str) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ({per_sec}, ETA {eta})",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} [{elapsed_precise}] {pos} {msg} ({per_sec})",
        ),
    };
    // The template is a constant: it parses.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(unit);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One plain progress line: done/total, percentage, rate, ETA (or the
/// elapsed time on the last line).
pub fn plain_line(done: u64, total: Option<u64>, elapsed: Duration, unit: &str, last: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut s = match total {
        Some(t) if t > 0 => format!("progress: {done}/{t} {unit} ({}%)", done.min(t) * 100 / t),
        Some(t) => format!("progress: {done}/{t} {unit}"),
        None => format!("progress: {done} {unit}"),
    };
    s.push_str(&format!(", {rate:.1} {unit}/s"));
    if last {
        s.push_str(&format!(", done in {}", human_duration(elapsed)));
    } else if let Some(t) = total {
        if rate > 0.0 && t >= done {
            let eta = Duration::from_secs_f64((t - done) as f64 / rate);
            s.push_str(&format!(", ETA {}", human_duration(eta)));
        }
    }
    s
}

/// `850ms`, `12s`, `3m05s`, `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lines_show_count_rate_and_eta() {
        let l = plain_line(50, Some(200), Duration::from_secs(10), "events", false);
        assert_eq!(l, "progress: 50/200 events (25%), 5.0 events/s, ETA 30s");
        let l = plain_line(200, Some(200), Duration::from_secs(40), "events", true);
        assert_eq!(l, "progress: 200/200 events (100%), 5.0 events/s, done in 40s");
        let l = plain_line(7, None, Duration::from_secs(2), "workflows", false);
        assert_eq!(l, "progress: 7 workflows, 3.5 workflows/s");
        // Nothing done yet: no rate, so no ETA rather than an infinite one.
        let l = plain_line(0, Some(10), Duration::ZERO, "events", false);
        assert_eq!(l, "progress: 0/10 events (0%), 0.0 events/s");
        assert_eq!(plain_line(0, Some(0), Duration::ZERO, "events", true), "progress: 0/0 events, 0.0 events/s, done in 0ms");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_mode_prints_every_n_items_and_a_final_line() {
        let out = Shared::default();
        // An interval no test run reaches: lines come from the count only.
        let config = ProgressConfig { mode: ProgressMode::Plain, every: 4, interval: Duration::from_secs(3600) };
        let mut p = Progress::plain(Box::new(out.clone()), &config, "events", Some(10));
        for _ in 0..10 {
            p.inc(1);
        }
        p.finish();
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("progress: 4/10 events (40%), "), "{text}");
        assert!(lines[1].starts_with("progress: 8/10 events (80%), "), "{text}");
        assert!(lines[2].starts_with("progress: 10/10 events (100%), ") && lines[2].contains("done in"), "{text}");
    }
}
