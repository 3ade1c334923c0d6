//! One classification per distinct text at a time.
//!
//! Two tasks that miss the result cache on the same text at the same moment
//! (two generations of one trace arriving together, a batch workflow and a
//! single one) would both classify it. The first to ask leads; a later one
//! follows: it gets the leader's result when the leader publishes it. A
//! follower waits in ticks, so its owner can heartbeat and notice a cancel
//! between them. A leader that fails, traps or is cancelled abandons the
//! text, and its followers classify it themselves: waiting never turns one
//! task's failure into another's.
//!
//! This sits in front of the cache tiers: a leader publishes after storing
//! its result in the cache, and `claim` re-checks the cache under its lock,
//! so a text that finished just before is a hit, not a second classification.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use parking_lot::{Condvar, Mutex};
use std::time::Duration;

/// The texts in flight in one process, keyed by what determines a result.
pub struct InFlight<K, V> {
    flights: Mutex<HashMap<K, Arc<Flight<V>>>>,
    deduplicated: AtomicU64,
}

struct Flight<V> {
    /// `None` while the leader works; then its result, or `None` inside if
    /// it gave up.
    outcome: Mutex<Option<Option<V>>>,
    settled: Condvar,
}

/// What `claim` found.
pub enum Claim<'a, K: Hash + Eq + Clone, V: Clone> {
    /// The re-check (the cache) answered.
    Ready(V),
    /// Nobody else is on it: classify it and `publish`.
    Lead(Leader<'a, K, V>),
    /// Another task is on it: `wait` for its result.
    Follow(Follower<'a, K, V>),
}

/// The task that classifies a text; dropping it unpublished abandons the text.
pub struct Leader<'a, K: Hash + Eq + Clone, V: Clone> {
    owner: &'a InFlight<K, V>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
}

pub struct Follower<'a, K, V> {
    owner: &'a InFlight<K, V>,
    flight: Arc<Flight<V>>,
}

/// What one tick of waiting gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<V> {
    Ready(V),
    /// The leader gave up: classify it yourself.
    Abandoned,
    /// Still running: heartbeat, check for a cancel, wait again.
    Pending,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for InFlight<K, V> {
    fn default() -> Self {
        InFlight { flights: Mutex::new(HashMap::new()), deduplicated: AtomicU64::new(0) }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> InFlight<K, V> {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<K, Arc<Flight<V>>>> {
        self.flights.lock()
    }

    /// Joins the flight of `key`, or re-checks with `recheck` (the cache
    /// lookup, run under the lock) and leads a new one.
    pub fn claim(&self, key: K, recheck: impl FnOnce() -> Option<V>) -> Claim<'_, K, V> {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(&key) {
            return Claim::Follow(Follower { owner: self, flight: flight.clone() });
        }
        if let Some(v) = recheck() {
            return Claim::Ready(v);
        }
        let flight = Arc::new(Flight { outcome: Mutex::new(None), settled: Condvar::new() });
        flights.insert(key.clone(), flight.clone());
        Claim::Lead(Leader { owner: self, key: Some(key), flight })
    }

    /// Texts a follower got from a leader instead of classifying them.
    pub fn deduplicated(&self) -> u64 {
        self.deduplicated.load(Ordering::Relaxed)
    }

    /// Texts being classified now.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<'_, K, V> {
    /// Hands `result` to every follower (call after storing it in the cache).
    pub fn publish(mut self, result: V) {
        self.settle(Some(result));
    }

    fn settle(&mut self, result: Option<V>) {
        let Some(key) = self.key.take() else { return };
        // Out of the map first: a task arriving now re-checks the cache.
        self.owner.lock().remove(&key);
        *self.flight.outcome.lock() = Some(result);
        self.flight.settled.notify_all();
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        self.settle(None);
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Follower<'_, K, V> {
    /// Waits up to `tick` for the leader.
    pub fn wait(&self, tick: Duration) -> Waited<V> {
        let mut outcome = self.flight.outcome.lock();
        self.flight.settled.wait_while_for(&mut outcome, |o| o.is_none(), tick);
        match &*outcome {
            None => Waited::Pending,
            Some(None) => Waited::Abandoned,
            Some(Some(v)) => {
                self.owner.deduplicated.fetch_add(1, Ordering::Relaxed);
                crate::metrics::record_deduplicated_in_flight();
                Waited::Ready(v.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Instant;

    #[test]
    fn the_second_asker_gets_the_first_ones_result() {
        let f: InFlight<&str, u32> = InFlight::default();
        let Claim::Lead(leader) = f.claim("t", || None) else { panic!("first asker leads") };
        let Claim::Follow(follower) = f.claim("t", || None) else { panic!("second asker follows") };
        assert_eq!(follower.wait(Duration::from_millis(1)), Waited::Pending);
        leader.publish(7);
        assert_eq!(follower.wait(Duration::from_secs(5)), Waited::Ready(7));
        assert_eq!(f.deduplicated(), 1);
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn a_finished_text_is_rechecked_not_led_again() {
        let f: InFlight<&str, u32> = InFlight::default();
        let Claim::Lead(leader) = f.claim("t", || None) else { panic!() };
        leader.publish(1);
        assert!(matches!(f.claim("t", || Some(1)), Claim::Ready(1)));
    }

    #[test]
    fn an_abandoned_text_is_left_to_the_followers() {
        let f: InFlight<&str, u32> = InFlight::default();
        let Claim::Lead(leader) = f.claim("t", || None) else { panic!() };
        let Claim::Follow(follower) = f.claim("t", || None) else { panic!() };
        drop(leader);
        assert_eq!(follower.wait(Duration::from_secs(5)), Waited::Abandoned);
        assert_eq!(f.deduplicated(), 0);
        // The text is free again: the next asker leads.
        assert!(matches!(f.claim("t", || None), Claim::Lead(_)));
    }

    #[test]
    fn threads_racing_on_one_text_compute_it_once() {
        let f: InFlight<u32, u32> = InFlight::default();
        let (computed, from_cache) = (AtomicU64::new(0), AtomicU64::new(0));
        // The "cache": set by the leader before it publishes, as the pipeline does.
        let cached = std::sync::atomic::AtomicBool::new(false);
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    match f.claim(42, || cached.load(Ordering::SeqCst).then_some(99)) {
                        Claim::Lead(l) => {
                            computed.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                            cached.store(true, Ordering::SeqCst);
                            l.publish(99);
                        }
                        Claim::Follow(w) => {
                            let deadline = Instant::now() + Duration::from_secs(30);
                            loop {
                                match w.wait(Duration::from_millis(20)) {
                                    Waited::Ready(v) => break assert_eq!(v, 99),
                                    Waited::Pending if Instant::now() < deadline => continue,
                                    other => panic!("{other:?}"),
                                }
                            }
                        }
                        // A thread scheduled late finds it done.
                        Claim::Ready(v) => {
                            assert_eq!(v, 99);
                            from_cache.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(computed.load(Ordering::Relaxed), 1);
        assert_eq!(f.deduplicated() + from_cache.load(Ordering::Relaxed), 7);
    }
}
