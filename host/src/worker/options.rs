//! The workflow's activity options: the seed's timeouts and retry policy,
//! fixed once per process. The workflow schedules its activity with them and
//! the activity reads the same values (its heartbeat interval, its attempt's
//! deadline), so both import this module and not each other.

use std::sync::OnceLock;
use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::ActivityOptions;

/// Set by the starter (see `submit`), not by the workflow.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const START_TO_CLOSE: Duration = Duration::from_secs(2 * 60);
pub const SCHEDULE_TO_CLOSE: Duration = Duration::from_secs(5 * 60);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_ATTEMPTS: u32 = 2;
pub const RETRY_INITIAL_INTERVAL: Duration = Duration::from_secs(2);
pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(10);

/// The activity's timeouts and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityTimeouts {
    pub start_to_close: Duration,
    pub schedule_to_close: Duration,
    pub heartbeat: Duration,
    pub max_attempts: u32,
    pub retry_initial_interval: Duration,
    pub retry_max_interval: Duration,
}

impl Default for ActivityTimeouts {
    fn default() -> Self {
        ActivityTimeouts {
            start_to_close: START_TO_CLOSE,
            schedule_to_close: SCHEDULE_TO_CLOSE,
            heartbeat: HEARTBEAT_TIMEOUT,
            max_attempts: MAX_ATTEMPTS,
            retry_initial_interval: RETRY_INITIAL_INTERVAL,
            retry_max_interval: RETRY_MAX_INTERVAL,
        }
    }
}

/// Set once, before the worker polls: workflow code must be deterministic,
/// so it reads a value fixed for the life of the process, never the config.
static TIMEOUTS: OnceLock<ActivityTimeouts> = OnceLock::new();

/// Fixes the activity options of this process; false if they were already
/// fixed to other values.
pub fn set_activity_timeouts(timeouts: ActivityTimeouts) -> bool {
    *TIMEOUTS.get_or_init(|| timeouts) == timeouts
}

pub fn activity_timeouts() -> ActivityTimeouts {
    TIMEOUTS.get().copied().unwrap_or_default()
}

pub fn activity_options() -> ActivityOptions {
    let t = activity_timeouts();
    ActivityOptions::with_close_timeouts(temporalio_common::ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: t.schedule_to_close,
        start_to_close: t.start_to_close,
    })
    .heartbeat_timeout(t.heartbeat)
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(t.retry_initial_interval)
            .maximum_interval(t.retry_max_interval)
            .maximum_attempts(t.max_attempts)
            .build(),
    )
    .build()
}

