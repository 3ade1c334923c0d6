//! Times as events carry them: parsed from RFC 3339 or ClickHouse's form,
//! written as RFC 3339 with microseconds, and held to the range the events
//! table can store.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// An instant the events table can hold: `DateTime('UTC')` is seconds since
/// the epoch in a UInt32 (1970-01-01..2106-02-07). Checked once, where a time
/// enters (an event's timestamp, the clock), so the sink writes it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(DateTime<Utc>);

impl EventTime {
    /// `None` outside the range of `DateTime('UTC')`.
    pub fn new(t: DateTime<Utc>) -> Option<EventTime> {
        (0..=u32::MAX as i64).contains(&t.timestamp()).then_some(EventTime(t))
    }

    /// The clock (held at the end of the range past 2106).
    pub fn now() -> EventTime {
        let now = Utc::now();
        EventTime::new(now).unwrap_or(EventTime(DateTime::from_timestamp(u32::MAX as i64, 0).unwrap_or(now)))
    }

    pub fn utc(self) -> DateTime<Utc> {
        self.0
    }

    /// Without its fraction of a second: what a `DateTime` column stores.
    pub fn whole_seconds(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.timestamp(), 0).unwrap_or(self.0)
    }
}

/// As [`format_timestamp`] writes it (RFC 3339, microseconds, `Z`).
impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_timestamp(&self.0))
    }
}

/// Accepts RFC 3339 and ClickHouse's `YYYY-MM-DD hh:mm:ss[.fff]` (read as UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Who produced a result: recorded on every sentiment event.

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_times_are_checked_once_against_the_datetime_range() {
        let t = |s: &str| parse_timestamp(s).unwrap();
        assert!(EventTime::new(t("1969-12-31T23:59:59Z")).is_none());
        assert!(EventTime::new(t("2106-02-07T06:28:16Z")).is_none());
        let last = EventTime::new(t("2106-02-07T06:28:15.999Z")).unwrap();
        assert_eq!(last.whole_seconds(), t("2106-02-07T06:28:15Z"));
        assert_eq!(serde_json::to_value(last).unwrap(), json!("2106-02-07T06:28:15.999000Z"));
        assert!(EventTime::new(t("1970-01-01T00:00:00Z")).is_some());
    }

    #[test]
    fn clickhouse_timestamps_are_accepted() {
        assert_eq!(parse_timestamp("2026-11-01 10:00:00"), parse_timestamp("2026-11-01T10:00:00Z"));
        assert!(parse_timestamp("2026-11-01T10:00:00.123+02:00").is_some());
    }
}
