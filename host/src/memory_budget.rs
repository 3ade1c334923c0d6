//! How many plugin instances fit in the worker's memory. Unless
//! `worker.instances` is set, the worker runs one per core, but never more
//! than fit in its budget: `worker.memory_budget_mb`, else the cgroup's
//! limit (`memory.max`, what systemd's `MemoryMax=` sets). What one more
//! instance costs is measured at start, on this plugin and model: the
//! process's proportional set size before and after an instance is made and
//! has classified the self-test's texts (an instance from a snapshot shares
//! its pages copy-on-write and costs little; one that loads the model costs
//! about the model).

use std::path::Path;
use std::sync::Arc;

use llma_proc_stats::{Proc, Proportional};

use crate::engine::{EngineError, InstanceSlot, Plugin};

/// The budget and where it came from, bytes.
pub fn budget(configured_mb: Option<u64>) -> Option<(u64, &'static str)> {
    if let Some(mb) = configured_mb {
        return Some((mb.saturating_mul(1 << 20), "worker.memory_budget_mb"));
    }
    cgroup_limit(Path::new("/sys/fs/cgroup")).map(|b| (b, "the cgroup's memory.max"))
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1's
/// `memory.limit_in_bytes`), under the cgroup filesystem at `root`.
fn cgroup_limit(root: &Path) -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // v2: "0::/path"; the limit sits in that directory (or an ancestor's).
    let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let mut dir = root.join(path.trim_start_matches('/'));
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("memory.max")) {
            if let Ok(bytes) = text.trim().parse::<u64>() {
                return Some(bytes);
            }
        }
        if dir == root || !dir.pop() {
            break;
        }
    }
    let v1 = std::fs::read_to_string(root.join("memory/memory.limit_in_bytes")).ok()?;
    // v1 reports "no limit" as a huge number.
    v1.trim().parse::<u64>().ok().filter(|&b| b < (1 << 60))
}

/// Bytes one more instance of `plugin` adds to the process, once it has
/// classified `texts`.
pub fn measure_instance(plugin: &Arc<Plugin>, texts: &[String]) -> Result<u64, EngineError> {
    let before = Proportional::of(Proc::This).pss;
    let mut slot = InstanceSlot::new(plugin.clone());
    slot.get()?.classify(texts)?;
    let after = Proportional::of(Proc::This).pss;
    drop(slot);
    Ok(after.saturating_sub(before).max(1 << 20))
}

/// Instances to run: `wanted`, but no more than fit in `budget` beside what
/// the process holds now (`resident`, one instance among it), at
/// `per_instance` each; at least one.
pub fn instances_that_fit(wanted: usize, budget: u64, resident: u64, per_instance: u64) -> usize {
    let more = budget.saturating_sub(resident) / per_instance.max(1);
    wanted.min(usize::try_from(more).unwrap_or(usize::MAX).saturating_add(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_instances_than_fit_and_never_none() {
        const MB: u64 = 1 << 20;
        assert_eq!(instances_that_fit(8, 4096 * MB, 1000 * MB, 600 * MB), 6, "1 held + 5 more in 3096 MB");
        assert_eq!(instances_that_fit(2, 4096 * MB, 1000 * MB, 600 * MB), 2, "never more than wanted");
        assert_eq!(instances_that_fit(8, 500 * MB, 1000 * MB, 600 * MB), 1, "over budget already: one");
        assert_eq!(instances_that_fit(8, 4096 * MB, 0, 0), 8);
    }

    #[test]
    fn the_configured_budget_wins_and_a_cgroup_limit_is_read() {
        assert_eq!(budget(Some(512)), Some((512 << 20, "worker.memory_budget_mb")));
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(root.path()), None, "`max` is no limit");
        std::fs::write(root.path().join("memory.max"), "2147483648\n").unwrap();
        assert_eq!(cgroup_limit(root.path()), Some(2 << 30));
    }
}
