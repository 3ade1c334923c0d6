//! Events of one partition gathered into one workflow: `batch_events` of
//! them, or what came within `batch_age` of the first, within
//! `batch_max_bytes` of input. With `batch_events = 1` every event is its own
//! `{"event_data": ...}` workflow. Workflow ids are deterministic, so a
//! re-read after a crash maps onto the workflows already started: one event
//! from its uuid, a batch from its topic, partition and offset range.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A workflow to start, and the offsets it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub partition: i32,
    pub epoch: u64,
    /// Offsets of the events in it (the partition's offsets between them
    /// that were skipped are done already).
    pub offsets: Vec<i64>,
    pub workflow_id: String,
    /// The workflow input, JSON.
    pub input: Vec<u8>,
    pub events: usize,
}

#[derive(Debug, Clone)]
pub struct BatchRules {
    pub topic: String,
    pub id_prefix: String,
    pub batch_events: usize,
    pub batch_age: Duration,
    pub batch_max_bytes: usize,
}

const OPEN: &[u8] = b"{\"events\":[";
const CLOSE: &[u8] = b"]}";

#[derive(Debug)]
struct Open {
    epoch: u64,
    json: Vec<u8>,
    offsets: Vec<i64>,
    opened: Instant,
}

/// Open batches, one per partition.
#[derive(Debug)]
pub struct Batcher {
    rules: BatchRules,
    open: HashMap<i32, Open>,
}

impl Batcher {
    pub fn new(rules: BatchRules) -> Batcher {
        Batcher { rules, open: HashMap::new() }
    }

    /// The workflow id of one event.
    pub fn single_id(prefix: &str, uuid: &str) -> String {
        format!("{prefix}-{uuid}-ingestion")
    }

    /// The workflow id of a batch.
    pub fn batch_id(prefix: &str, topic: &str, partition: i32, first: i64, last: i64) -> String {
        format!("{prefix}-{topic}-{partition}-{first}-{last}-ingestion")
    }

    /// Adds an event (its JSON and uuid); returns the units that are ready:
    /// the event's own, a batch it filled, or a batch it did not fit in.
    pub fn push(&mut self, partition: i32, epoch: u64, offset: i64, uuid: &str, event_json: &[u8], now: Instant) -> Vec<Unit> {
        if self.rules.batch_events <= 1 {
            let input = [b"{\"event_data\":".as_slice(), event_json, b"}"].concat();
            let workflow_id = Self::single_id(&self.rules.id_prefix, uuid);
            return vec![Unit { partition, epoch, offsets: vec![offset], workflow_id, input, events: 1 }];
        }
        let mut ready = Vec::new();
        // A batch of an ended epoch (the partition moved and came back) is dropped: its offsets are re-read.
        if self.open.get(&partition).is_some_and(|o| o.epoch != epoch) {
            self.open.remove(&partition);
        }
        let fits = |o: &Open| o.json.len() + 1 + event_json.len() + CLOSE.len() <= self.rules.batch_max_bytes;
        if self.open.get(&partition).is_some_and(|o| !fits(o)) {
            ready.extend(self.close(partition));
        }
        let open = self.open.entry(partition).or_insert_with(|| Open { epoch, json: OPEN.to_vec(), offsets: Vec::new(), opened: now });
        if !open.offsets.is_empty() {
            open.json.push(b',');
        }
        open.json.extend_from_slice(event_json);
        open.offsets.push(offset);
        if open.offsets.len() >= self.rules.batch_events {
            ready.extend(self.close(partition));
        }
        ready
    }

    /// Batches whose first event waited `batch_age`.
    pub fn expired(&mut self, now: Instant) -> Vec<Unit> {
        let age = self.rules.batch_age;
        let mut old: Vec<i32> = self.open.iter().filter(|(_, o)| now.duration_since(o.opened) >= age).map(|(p, _)| *p).collect();
        old.sort_unstable();
        old.into_iter().filter_map(|p| self.close(p)).collect()
    }

    /// When the oldest open batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|o| o.opened + self.rules.batch_age).min()
    }

    /// Every open batch (shutdown).
    pub fn drain(&mut self) -> Vec<Unit> {
        let mut all: Vec<i32> = self.open.keys().copied().collect();
        all.sort_unstable();
        all.into_iter().filter_map(|p| self.close(p)).collect()
    }

    /// Drops a revoked partition's open batch: its offsets were not
    /// committed, the next owner reads them again.
    pub fn abandon(&mut self, partition: i32) -> usize {
        self.open.remove(&partition).map_or(0, |o| o.offsets.len())
    }

    fn close(&mut self, partition: i32) -> Option<Unit> {
        let mut open = self.open.remove(&partition)?;
        open.json.extend_from_slice(CLOSE);
        let (first, last) = (*open.offsets.first()?, *open.offsets.last()?);
        let workflow_id = Self::batch_id(&self.rules.id_prefix, &self.rules.topic, partition, first, last);
        let events = open.offsets.len();
        Some(Unit { partition, epoch: open.epoch, offsets: open.offsets, workflow_id, input: open.json, events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rules(n: usize, max_bytes: usize) -> BatchRules {
        BatchRules { topic: "t".into(), id_prefix: "p".into(), batch_events: n, batch_age: Duration::from_secs(30), batch_max_bytes: max_bytes }
    }

    #[test]
    fn one_event_one_workflow_named_by_its_uuid() {
        let mut b = Batcher::new(rules(1, 1 << 20));
        let units = b.push(0, 1, 5, "u-1", br#"{"uuid":"u-1"}"#, Instant::now());
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].workflow_id, "p-u-1-ingestion");
        let v: Value = serde_json::from_slice(&units[0].input).unwrap();
        assert_eq!(v["event_data"]["uuid"], "u-1");
        assert!(b.drain().is_empty());
    }

    #[test]
    fn batches_close_on_count_bytes_age_and_drain() {
        let now = Instant::now();
        let mut b = Batcher::new(rules(3, 60));
        let e = br#"{"uuid":"x"}"#; // 12 bytes
        assert!(b.push(0, 1, 10, "x", e, now).is_empty());
        assert!(b.push(0, 1, 11, "x", e, now).is_empty());
        let full = b.push(0, 1, 13, "x", e, now);
        assert_eq!(full.len(), 1);
        assert_eq!((full[0].workflow_id.as_str(), full[0].offsets.clone()), ("p-t-0-10-13-ingestion", vec![10, 11, 13]));
        let v: Value = serde_json::from_slice(&full[0].input).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 3);
        // Bytes: 11 + 12 + 1 + 12 + 1 + 12 + 2 = 51; a fourth would pass 60.
        let mut b = Batcher::new(rules(10, 60));
        for o in 0..3 {
            assert!(b.push(1, 1, o, "x", e, now).is_empty());
        }
        let split = b.push(1, 1, 3, "x", e, now);
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].offsets, vec![0, 1, 2]);
        assert!(split[0].input.len() <= 60);
        // Age.
        assert!(b.expired(now + Duration::from_secs(29)).is_empty());
        assert_eq!(b.next_deadline(), Some(now + Duration::from_secs(30)));
        let old = b.expired(now + Duration::from_secs(30));
        assert_eq!(old[0].offsets, vec![3]);
        // Drain and abandon.
        b.push(2, 1, 7, "x", e, now);
        b.push(3, 1, 8, "x", e, now);
        assert_eq!(b.abandon(3), 1);
        let rest = b.drain();
        assert_eq!(rest.iter().map(|u| u.partition).collect::<Vec<_>>(), vec![2]);
        // A new epoch drops the old one's open batch.
        b.push(4, 1, 1, "x", e, now);
        let u = b.push(4, 2, 1, "x", e, now);
        assert!(u.is_empty());
        assert_eq!(b.drain()[0].epoch, 2);
    }
}
