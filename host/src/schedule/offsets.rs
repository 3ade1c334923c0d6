//! Which offsets may be committed. Every offset read is recorded, in order,
//! as pending; it is done when its message was skipped or when Temporal
//! acknowledged the workflow start that holds it. The commit is the highest
//! offset below which everything read is done, plus one: at-least-once and in
//! order per partition, however the starts finish.
//!
//! A partition's state has an epoch: a revocation ends it, and whatever
//! reports on the old epoch later (a start that finished after the
//! partition moved) is ignored, so no stale commit overwrites the new
//! owner's.

use std::collections::{BTreeMap, HashMap};

/// One assigned partition.
#[derive(Debug, Default)]
struct Partition {
    epoch: u64,
    /// Offsets read and not yet committable: offset -> done.
    pending: BTreeMap<i64, bool>,
    /// The next offset to commit (all below it are done); `None` until an
    /// offset is done.
    committable: Option<i64>,
    /// What was last committed (or handed to a commit).
    committed: Option<i64>,
}

impl Partition {
    /// Moves `committable` past the done offsets at the front.
    fn advance(&mut self) {
        while let Some((&offset, &done)) = self.pending.first_key_value() {
            if !done {
                break;
            }
            self.pending.pop_first();
            self.committable = Some(offset + 1);
        }
    }
}

/// Offsets of every partition this consumer holds.
#[derive(Debug, Default)]
pub struct Tracker {
    partitions: HashMap<i32, Partition>,
    next_epoch: u64,
}

impl Tracker {
    /// The partition is (again) ours: a fresh state, a new epoch.
    pub fn assign(&mut self, partition: i32) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(partition, Partition { epoch, ..Default::default() });
        epoch
    }

    /// The partition is no longer ours: its committable offset (if not
    /// committed yet) for a last commit; the rest is abandoned.
    pub fn revoke(&mut self, partition: i32) -> Option<i64> {
        let p = self.partitions.remove(&partition)?;
        p.committable.filter(|c| Some(*c) != p.committed)
    }

    /// The epoch of a partition held now.
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|p| p.epoch)
    }

    /// An offset read; returns the epoch its work belongs to. A partition
    /// not assigned yet (a message before the assignment callback) is
    /// assigned here.
    pub fn read(&mut self, partition: i32, offset: i64) -> u64 {
        if !self.partitions.contains_key(&partition) {
            self.assign(partition);
        }
        let p = self.partitions.get_mut(&partition).expect("assigned above");
        p.pending.insert(offset, false);
        p.epoch
    }

    /// Offsets whose work is finished (skipped, or their start
    /// acknowledged); ignored for an epoch that has ended.
    pub fn done(&mut self, partition: i32, epoch: u64, offsets: &[i64]) {
        let Some(p) = self.partitions.get_mut(&partition).filter(|p| p.epoch == epoch) else { return };
        for offset in offsets {
            if let Some(done) = p.pending.get_mut(offset) {
                *done = true;
            }
        }
        p.advance();
    }

    /// (partition, offset to commit) for every partition with progress not
    /// committed yet; marks them committed.
    pub fn take_commits(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.partitions {
            if let Some(c) = p.committable.filter(|c| Some(*c) != p.committed) {
                p.committed = Some(c);
                out.push((partition, c));
            }
        }
        out.sort_unstable();
        out
    }

    /// (partition, offset to commit) for every partition with any progress,
    /// committed or not: the last commit before leaving, which must not
    /// depend on an earlier asynchronous commit having landed.
    pub fn all_commits(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.partitions {
            if let Some(c) = p.committable {
                p.committed = Some(c);
                out.push((partition, c));
            }
        }
        out.sort_unstable();
        out
    }

    /// Offsets read and not yet done, over every partition.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.values().filter(|d| !**d).count()).sum()
    }

    pub fn partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.partitions.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_below_the_first_offset_not_done() {
        let mut t = Tracker::default();
        let e = t.assign(0);
        for o in 10..16 {
            assert_eq!(t.read(0, o), e);
        }
        assert_eq!(t.take_commits(), vec![], "nothing done yet");
        t.done(0, e, &[12, 13]);
        assert_eq!(t.take_commits(), vec![], "10 and 11 still in flight");
        t.done(0, e, &[10]);
        assert_eq!(t.take_commits(), vec![(0, 11)]);
        t.done(0, e, &[11, 15]);
        assert_eq!(t.take_commits(), vec![(0, 14)], "14 holds back 15");
        assert_eq!(t.take_commits(), vec![], "committed once");
        t.done(0, e, &[14]);
        assert_eq!(t.take_commits(), vec![(0, 16)]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_revoked_epoch_reports_nothing() {
        let mut t = Tracker::default();
        let old = t.assign(1);
        t.read(1, 0);
        t.read(1, 1);
        t.done(1, old, &[0]);
        assert_eq!(t.revoke(1), Some(1), "the last commit of what was done");
        let new = t.assign(1);
        assert_ne!(old, new);
        t.read(1, 1);
        t.done(1, old, &[1]);
        assert_eq!(t.take_commits(), vec![], "a start of the old epoch moves nothing");
        t.done(1, new, &[1]);
        assert_eq!(t.take_commits(), vec![(1, 2)]);
        assert_eq!(t.revoke(1), None, "already committed");
        assert_eq!(t.revoke(7), None);
    }
}
