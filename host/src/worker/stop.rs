//! The worker's stop, bounded. On SIGTERM or SIGINT it stops polling and
//! lets the activities in flight run for the grace period
//! (`worker.grace_period_secs`); the SDK then cancels them. Each writes what
//! it classified, but no insert runs past the grace period plus
//! [`WRITE_BUDGET`] from the signal, and the worker stops waiting for its
//! tasks there. The process then ends within [`EXIT_MARGIN`] (the endpoints'
//! last answers, the runtime's shutdown), whatever still runs: a plugin call
//! (interrupted), an activation in progress (abandoned). Work not written is
//! retried by Temporal on another worker; rows written are not written
//! twice (a retry inserts only what is not stored).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// After the grace period: the longest the cancelled activities may spend
/// writing what they classified.
pub const WRITE_BUDGET: Duration = Duration::from_secs(10);
/// After the write budget: the endpoints' answers to requests in flight.
pub const ENDPOINTS_SHUTDOWN: Duration = Duration::from_secs(3);
/// Then the runtime's own shutdown: blocking threads (a plugin call, an
/// activation) are not waited for past it.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);
/// Both: the most the process runs after the write budget.
pub const EXIT_MARGIN: Duration = Duration::from_secs(ENDPOINTS_SHUTDOWN.as_secs() + RUNTIME_SHUTDOWN.as_secs());

/// Whether and when a stop was asked for, shared by the signal handler, the
/// activities and the worker's run loop.
#[derive(Debug, Clone)]
pub struct Stop {
    asked: Arc<watch::Sender<Option<Instant>>>,
    grace: Duration,
}

impl Stop {
    pub fn new(grace: Duration) -> Stop {
        Stop { asked: Arc::new(watch::Sender::new(None)), grace }
    }

    /// The grace period: how long activities in flight may run on.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Asks for the stop (the first call counts).
    pub fn request(&self) {
        self.request_at(Instant::now());
    }

    fn request_at(&self, when: Instant) {
        self.asked.send_if_modified(|at| at.is_none() && at.replace(when).is_none());
    }

    /// When the stop was asked for.
    pub fn requested(&self) -> Option<Instant> {
        *self.asked.borrow()
    }

    /// The latest any write may run to: the grace period plus the write
    /// budget after the stop; `None` while no stop was asked for.
    pub fn write_deadline(&self) -> Option<Instant> {
        self.requested().map(|at| at + self.grace + WRITE_BUDGET)
    }

    /// `until`, or the stop's write deadline if that comes first.
    pub fn cap(&self, until: Instant) -> Instant {
        self.write_deadline().map_or(until, |stop| stop.min(until))
    }

    /// The longest the process runs after a stop is asked for.
    pub fn budget(&self) -> Duration {
        self.grace + WRITE_BUDGET + EXIT_MARGIN
    }

    /// Resolves at the write deadline of a stop (never without one).
    pub async fn write_deadline_passed(&self) {
        let mut rx = self.asked.subscribe();
        let asked = rx.wait_for(Option::is_some).await.ok().and_then(|at| *at);
        let Some(at) = asked else { return std::future::pending().await };
        tokio::time::sleep((at + self.grace + WRITE_BUDGET).saturating_duration_since(Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_capped_from_the_stop_on() {
        let stop = Stop::new(Duration::from_secs(30));
        let far = Instant::now() + Duration::from_secs(600);
        assert_eq!((stop.requested(), stop.cap(far)), (None, far), "no stop, no cap");
        stop.request();
        let at = stop.requested().unwrap();
        stop.request();
        assert_eq!(stop.requested(), Some(at), "a second signal does not move the stop");
        assert_eq!(stop.cap(far), at + Duration::from_secs(40));
        let soon = Instant::now() + Duration::from_secs(1);
        assert_eq!(stop.cap(soon), soon);
        assert_eq!(stop.budget(), Duration::from_secs(45));
    }

    #[tokio::test]
    async fn the_write_deadline_resolves_only_after_a_stop_and_its_budget() {
        let grace = Duration::from_secs(1);
        let stop = Stop::new(grace);
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.write_deadline_passed().await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "no stop was asked for");
        // A stop asked for almost a whole budget ago: 300 ms are left.
        stop.request_at(Instant::now() - grace - WRITE_BUDGET + Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the budget is not spent yet");
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("resolved at the deadline").unwrap();
    }
}
