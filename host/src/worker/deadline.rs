//! The one deadline of an activity attempt, computed once when it starts and
//! handed down to every wait below it (pool checkout, Redis, plugin calls,
//! the sink's retries), so that an activity never outlives its attempt.
//!
//! Temporal gives up on an attempt at its start-to-close (or the
//! schedule-to-close, if sooner): `ctx.info().deadline`. Work stops early
//! enough to leave the insert of what was classified its share of the time,
//! and the insert stops early enough to report the result.

use std::time::{Duration, Instant, SystemTime};

/// Kept for reporting the result to Temporal after the insert.
pub const REPORT_MARGIN: Duration = Duration::from_secs(2);
/// Kept for the insert after classification: this, or a quarter of the attempt if less.
pub const WRITE_RESERVE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptDeadline {
    /// When Temporal times the attempt out.
    pub end: Instant,
    /// Classification (pool checkout, cache, plugin calls) stops here.
    pub work_until: Instant,
    /// The insert and its retries stop here.
    pub write_until: Instant,
}

impl AttemptDeadline {
    /// From the attempt's server-side deadline; `start_to_close` (from the
    /// config, counted from now) when the SDK gives none, and as a cap
    /// against a clock that runs behind the server's.
    pub fn new(deadline: Option<SystemTime>, start_to_close: Duration) -> AttemptDeadline {
        let now_wall = SystemTime::now();
        let left = deadline.map_or(start_to_close, |d| d.duration_since(now_wall).unwrap_or(Duration::ZERO)).min(start_to_close);
        AttemptDeadline::with_time_left(Instant::now(), left)
    }

    pub fn with_time_left(now: Instant, left: Duration) -> AttemptDeadline {
        let end = now + left;
        let write_until = end.checked_sub(REPORT_MARGIN).unwrap_or(now).max(now);
        let reserve = WRITE_RESERVE.min(left / 4);
        let work_until = write_until.checked_sub(reserve).unwrap_or(now).max(now);
        AttemptDeadline { end, work_until, write_until }
    }

    /// Time left for classification.
    pub fn work_left(&self) -> Duration {
        self.work_until.saturating_duration_since(Instant::now())
    }

    pub fn out_of_work_time(&self) -> bool {
        Instant::now() >= self.work_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_attempt_splits_into_work_write_and_report() {
        let now = Instant::now();
        let d = AttemptDeadline::with_time_left(now, Duration::from_secs(120));
        assert_eq!(d.end - now, Duration::from_secs(120));
        assert_eq!(d.write_until - now, Duration::from_secs(118));
        assert_eq!(d.work_until - now, Duration::from_secs(98));
    }

    #[test]
    fn a_short_attempt_keeps_its_order_and_never_goes_before_now() {
        let now = Instant::now();
        let d = AttemptDeadline::with_time_left(now, Duration::from_secs(8));
        assert!(d.work_until <= d.write_until && d.write_until <= d.end);
        assert_eq!(d.work_until - now, Duration::from_secs(4), "a quarter kept for the insert");
        let gone = AttemptDeadline::with_time_left(now, Duration::ZERO);
        assert_eq!((gone.work_until, gone.write_until, gone.end), (now, now, now));
    }

    #[test]
    fn the_servers_deadline_wins_and_the_config_caps_it() {
        let soon = AttemptDeadline::new(Some(SystemTime::now() + Duration::from_secs(30)), Duration::from_secs(120));
        assert!(soon.end <= Instant::now() + Duration::from_secs(30));
        let skewed = AttemptDeadline::new(Some(SystemTime::now() + Duration::from_secs(3600)), Duration::from_secs(120));
        assert!(skewed.end <= Instant::now() + Duration::from_secs(120));
        let past = AttemptDeadline::new(Some(SystemTime::now() - Duration::from_secs(5)), Duration::from_secs(120));
        assert!(past.out_of_work_time());
    }
}
