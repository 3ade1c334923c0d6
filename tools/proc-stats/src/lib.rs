//! What the benchmarks and reliability tests read about a process: its
//! memory from `/proc` and the calling thread's CPU time. One parser for
//! every tool, so their figures mean the same thing.
//!
//! Resident set (VmRSS) counts a page shared by N mappings once per mapping;
//! proportional set size (PSS, `smaps_rollup`) divides it among them, so it
//! is the measure for instances that share a copy-on-write image.

use std::path::PathBuf;

/// Which process: this one, or another by pid.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    This,
    Pid(u32),
}

impl Proc {
    fn file(self, name: &str) -> PathBuf {
        match self {
            Proc::This => PathBuf::from("/proc/self").join(name),
            Proc::Pid(pid) => PathBuf::from(format!("/proc/{pid}")).join(name),
        }
    }
}

/// `key:   123 kB` lines of a `/proc` file, in bytes (`None` if absent).
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resident set now and at its peak (`/proc/PID/status`), bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    pub rss: u64,
    pub hwm: u64,
}

impl Resident {
    /// Zeros when the process is gone (or not Linux).
    pub fn of(p: Proc) -> Resident {
        let text = std::fs::read_to_string(p.file("status")).unwrap_or_default();
        Resident { rss: kb_field(&text, "VmRSS").unwrap_or(0), hwm: kb_field(&text, "VmHWM").unwrap_or(0) }
    }
}

/// Proportional set size, split by backing (`/proc/PID/smaps_rollup`), bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Proportional {
    pub rss: u64,
    pub pss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
}

impl Proportional {
    pub fn of(p: Proc) -> Proportional {
        let text = std::fs::read_to_string(p.file("smaps_rollup")).unwrap_or_default();
        let f = |k| kb_field(&text, k).unwrap_or(0);
        Proportional { rss: f("Rss"), pss: f("Pss"), pss_anon: f("Pss_Anon"), pss_file: f("Pss_File") }
    }
}

/// CPU time of the calling thread so far, seconds (`CLOCK_THREAD_CPUTIME_ID`:
/// exact, unlike /proc's schedstat, which lags by up to a scheduler tick);
/// NaN where the clock is unavailable.
pub fn thread_cpu_seconds() -> f64 {
    cpu_time::ThreadTime::try_now().map(|t| t.as_duration().as_secs_f64()).unwrap_or(f64::NAN)
}

/// CPU time (user + system) of this process's children that have been
/// waited for, seconds (`/proc/self/stat` cutime + cstime, in USER_HZ ticks
/// of 1/100 s): the difference across a child's run and wait is that
/// child's whole CPU, its own threads and processes included.
pub fn children_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = text.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // cutime and cstime are fields 16 and 17 of stat: 13 and 14 from the
    // state, field 3, the first after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(13), ticks(14)) {
        (Some(u), Some(s)) => (u + s) as f64 / 100.0,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields_as_bytes() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n";
        assert_eq!(kb_field(text, "VmRSS"), Some(1 << 20));
        assert_eq!(kb_field(text, "VmHWM"), Some(2 << 20));
        assert_eq!(kb_field(text, "VmSwap"), None);
        // A key that is a prefix of another is not confused with it.
        assert_eq!(kb_field("Pss_Anon: 4 kB\nPss: 8 kB\n", "Pss"), Some(8 * 1024));
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let r = Resident::of(Proc::This);
        assert!(r.rss > 0 && r.hwm >= r.rss, "{r:?}");
        let p = Proportional::of(Proc::This);
        assert!(p.pss > 0 && p.pss <= p.rss, "{p:?}");
        let t0 = thread_cpu_seconds();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_seconds() > t0);
    }

    #[test]
    fn a_waited_childs_cpu_is_counted() {
        let before = children_cpu_seconds();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let spent = children_cpu_seconds() - before;
        assert!(spent >= 0.05, "the child's loop counted {spent} s");
    }
}
