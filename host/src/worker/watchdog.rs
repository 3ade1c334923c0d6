//! Notices a worker that holds its activity slots without doing anything
//! with them, or that cannot reach Temporal, and gets it restarted.
//!
//! The Rust SDK frees an activity slot only when the activity future ends.
//! A future stuck on something below it (a server that accepts connections
//! and never answers, a completion lost across a Temporal restart) keeps
//! the slot, and a worker whose slots are all held that way polls no more
//! work while it looks alive. The watchdog calls the worker stuck when
//!
//! * every slot is in use and no activity has made progress (started,
//!   heartbeated after a message, finished) for longer than the heartbeat
//!   timeout, or
//! * the Temporal frontend has failed its health check for longer than
//!   [`POLL_FAILURE_LIMIT`] (the SDK's polls go to the same frontend).
//!
//! Stuck: the state is logged, `/readyz` answers 503 naming it,
//! `llma_sentiment_worker_stuck` is 1, and with `worker.exit_when_stuck`
//! (the default) the process exits with [`EXIT_STUCK`] so that its
//! supervisor (systemd `Restart=on-failure`) starts a fresh one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Exit status of a worker the watchdog stopped (EX_SOFTWARE).
pub const EXIT_STUCK: i32 = 70;
/// Temporal unreachable for this long counts as stuck.
pub const POLL_FAILURE_LIMIT: Duration = Duration::from_secs(60);
/// How often the state is checked (and Temporal probed).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Between noticing and exiting: long enough for a probe or scrape to see it.
const EXIT_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    last_progress: Instant,
    temporal_failing_since: Option<Instant>,
    stuck: Option<String>,
}

#[derive(Debug)]
pub struct Watchdog {
    slots: usize,
    stall_limit: Duration,
    in_flight: AtomicUsize,
    state: Mutex<State>,
}

/// Held by a running activity; its drop is the activity's completion.
pub struct RunningActivity(Arc<Watchdog>);

impl Drop for RunningActivity {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::set_activities_in_flight(self.0.in_flight.load(Ordering::SeqCst));
        self.0.progress();
    }
}

impl Watchdog {
    /// `slots` activity slots; stuck after `stall_limit` without progress
    /// while all are in use (the heartbeat timeout).
    pub fn new(slots: usize, stall_limit: Duration) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            slots: slots.max(1),
            stall_limit,
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(State { last_progress: Instant::now(), temporal_failing_since: None, stuck: None }),
        })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// An activity started; it counts as in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> RunningActivity {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        crate::metrics::set_activities_in_flight(self.in_flight.load(Ordering::SeqCst));
        self.progress();
        RunningActivity(self.clone())
    }

    /// An activity moved on (a message classified and heartbeated).
    pub fn progress(&self) {
        self.lock().last_progress = Instant::now();
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Why the worker is stuck, if it is.
    pub fn stuck_reason(&self) -> Option<String> {
        self.lock().stuck.clone()
    }

    /// Records the outcome of one Temporal health probe.
    pub fn temporal_probe(&self, ok: bool) {
        let mut s = self.lock();
        match (ok, s.temporal_failing_since) {
            (true, _) => s.temporal_failing_since = None,
            (false, None) => s.temporal_failing_since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// Re-evaluates the state at `now`; returns the reason when it just became stuck.
    pub fn check(&self, now: Instant) -> Option<String> {
        let in_flight = self.in_flight();
        let mut s = self.lock();
        let idle_for = now.saturating_duration_since(s.last_progress);
        let reason = if in_flight >= self.slots && idle_for > self.stall_limit {
            Some(format!(
                "all {} activity slots in use and no activity progressed for {} s (heartbeat timeout {} s)",
                self.slots,
                idle_for.as_secs(),
                self.stall_limit.as_secs()
            ))
        } else {
            s.temporal_failing_since.map(|t| now.saturating_duration_since(t)).filter(|d| *d > POLL_FAILURE_LIMIT).map(|d| {
                format!("the Temporal frontend failed its health check for {} s (limit {} s)", d.as_secs(), POLL_FAILURE_LIMIT.as_secs())
            })
        };
        let was_stuck = s.stuck.is_some();
        s.stuck = reason.clone();
        drop(s);
        crate::metrics::set_worker_stuck(reason.is_some());
        match (&reason, was_stuck) {
            (Some(r), false) => {
                tracing::error!(reason = %r, in_flight, slots = self.slots, "watchdog: the worker is stuck");
                reason
            }
            (None, true) => {
                tracing::warn!(in_flight, "watchdog: the worker is making progress again");
                None
            }
            _ => None,
        }
    }

    /// Checks every second and probes Temporal every few; exits the process
    /// when stuck and `exit_when_stuck`.
    pub fn spawn(self: &Arc<Self>, temporal: super::TemporalConfig, exit_when_stuck: bool) {
        let dog = self.clone();
        tokio::spawn(async move {
            let mut client = None;
            let mut last_probe: Option<Instant> = None;
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            loop {
                tick.tick().await;
                if last_probe.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL) {
                    last_probe = Some(Instant::now());
                    let ok = probe(&temporal, &mut client).await;
                    dog.temporal_probe(ok);
                }
                if let Some(reason) = dog.check(Instant::now()) {
                    if exit_when_stuck {
                        tracing::error!(reason = %reason, exit_status = EXIT_STUCK, "watchdog: exiting so that the supervisor restarts the worker");
                        tokio::time::sleep(EXIT_DELAY).await;
                        std::process::exit(EXIT_STUCK);
                    }
                }
            }
        });
    }
}

/// One health check of the Temporal frontend, connecting first if needed.
async fn probe(temporal: &super::TemporalConfig, client: &mut Option<temporalio_client::Client>) -> bool {
    use temporalio_common::protos::grpc::health::v1::{health_check_response::ServingStatus, HealthCheckRequest};
    if client.is_none() {
        match tokio::time::timeout(PROBE_TIMEOUT, super::connect(temporal)).await {
            Ok(Ok(c)) => *client = Some(c),
            _ => return false,
        }
    }
    let Some(c) = client.as_ref() else { return false };
    let request = temporalio_client::tonic::Request::new(HealthCheckRequest {
        service: "temporal.api.workflowservice.v1.WorkflowService".into(),
    });
    let mut health = c.connection().health_service();
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, health.check(request)).await,
        Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_when_every_slot_is_held_without_progress() {
        let dog = Watchdog::new(2, Duration::from_secs(30));
        let t0 = Instant::now();
        let a = dog.enter();
        assert!(dog.check(t0 + Duration::from_secs(60)).is_none(), "a free slot is not stuck");
        let b = dog.enter();
        assert!(dog.check(Instant::now() + Duration::from_secs(10)).is_none(), "within the heartbeat timeout");
        let reason = dog.check(Instant::now() + Duration::from_secs(31)).expect("stuck");
        assert!(reason.contains("all 2 activity slots"), "{reason}");
        assert!(dog.stuck_reason().is_some());
        dog.progress();
        assert!(dog.check(Instant::now()).is_none());
        assert!(dog.stuck_reason().is_none(), "progress clears it");
        drop((a, b));
        assert_eq!(dog.in_flight(), 0);
        assert!(dog.check(Instant::now() + Duration::from_secs(3600)).is_none(), "idle is not stuck");
    }

    #[test]
    fn temporal_failing_past_the_limit_is_stuck() {
        let dog = Watchdog::new(4, Duration::from_secs(30));
        dog.temporal_probe(false);
        assert!(dog.check(Instant::now() + Duration::from_secs(10)).is_none());
        assert!(dog.check(Instant::now() + POLL_FAILURE_LIMIT + Duration::from_secs(1)).is_some_and(|r| r.contains("Temporal")));
        dog.temporal_probe(true);
        assert!(dog.check(Instant::now() + POLL_FAILURE_LIMIT * 2).is_none());
    }
}
