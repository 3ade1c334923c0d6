//! Table layout, row types and server version handling.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::quote_identifier;
use super::error::SinkError;
use crate::event::{EventTime, SentimentEvent};

/// Oldest server on which the client's schema validation is turned on when
/// `SinkConfig::validation` is `None` (it needs `RowBinaryWithNamesAndTypes`
/// and `DESCRIBE ... describe_include_subcolumns`; 18.16 has neither).
pub const VALIDATION_MIN_VERSION: (u32, u32) = (24, 1);

/// Oldest server that knows `wait_for_async_insert` (sent so that an ack means
/// the rows are written even when the server has `async_insert` on).
pub const WAIT_FOR_ASYNC_INSERT_MIN_VERSION: (u32, u32) = (21, 11);

/// `SELECT version()` as text plus its leading numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub raw: String,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `18.16.1`, `24.8.4.13`, `25.3.1.2703-testing`...; `None` if the
    /// first two components are not numbers.
    pub fn parse(raw: &str) -> Option<ServerVersion> {
        let raw = raw.trim();
        let mut parts = raw.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(ServerVersion { raw: raw.to_string(), major, minor, patch })
    }

    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Whether the client's schema validation works against this server.
    pub fn supports_validation(&self) -> bool {
        self.at_least(VALIDATION_MIN_VERSION)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `` `db`.`table` `` after validating both names.
pub fn table_ref(database: &str, table: &str) -> Result<String, SinkError> {
    Ok(format!("{}.{}", quote_identifier(database)?, quote_identifier(table)?))
}

pub fn create_database_sql(database: &str) -> Result<String, SinkError> {
    Ok(format!("CREATE DATABASE IF NOT EXISTS {}", quote_identifier(database)?))
}

/// The events table. ORDER BY (team_id, uuid) + ReplacingMergeTree(created_at):
/// a retried write of the same sentiment event (same UUIDv5) collapses into one
/// row; read with FINAL. Only types that exist on 18.16 are used.
pub fn create_table_sql(database: &str, table: &str) -> Result<String, SinkError> {
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         uuid UUID, \
         event String, \
         properties String, \
         timestamp DateTime('UTC'), \
         team_id Int64, \
         distinct_id String, \
         person_id Nullable(UUID), \
         created_at DateTime('UTC')\
         ) ENGINE = ReplacingMergeTree(created_at) ORDER BY (team_id, uuid)",
        table_ref(database, table)?
    ))
}

/// Column list shared by inserts and reads, in table order.
pub const COLUMNS: &str = "uuid, event, properties, timestamp, team_id, distinct_id, person_id, created_at";

/// One row of the events table as sent and read over RowBinary.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub uuid: Uuid,
    pub event: String,
    pub properties: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub timestamp: DateTime<Utc>,
    pub team_id: i64,
    pub distinct_id: String,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub person_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub created_at: DateTime<Utc>,
}

impl EventRow {
    /// The event's typed fields as they are: its time was range-checked
    /// where it entered (see [`EventTime`]); only the properties are
    /// serialised, to the one JSON text stored.
    pub(crate) fn from_event(event: &SentimentEvent, created_at: EventTime) -> Result<EventRow, SinkError> {
        let properties = serde_json::to_string(&event.properties).map_err(|e| SinkError::InvalidEvent {
            uuid: event.uuid,
            reason: format!("properties do not serialize: {e}"),
        })?;
        Ok(EventRow {
            uuid: event.uuid,
            event: event.event.to_string(),
            properties,
            timestamp: event.timestamp.whole_seconds(),
            team_id: event.team_id,
            distinct_id: event.distinct_id.clone(),
            person_id: event.person_id,
            created_at: created_at.whole_seconds(),
        })
    }
}

/// A row read back from the table (with FINAL).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub uuid: Uuid,
    pub event: String,
    /// `properties_json` parsed. (Without serde_json's `float_roundtrip`
    /// feature a float may come back one ulp off; the stored text is exact.)
    pub properties: Map<String, Value>,
    /// The `properties` column as stored.
    pub properties_json: String,
    pub timestamp: DateTime<Utc>,
    pub team_id: i64,
    pub distinct_id: String,
    pub person_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl StoredEvent {
    pub(crate) fn from_row(row: EventRow) -> Result<StoredEvent, String> {
        let properties = match serde_json::from_str::<Value>(&row.properties) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("row {} has properties that are not a JSON object", row.uuid)),
        };
        Ok(StoredEvent {
            uuid: row.uuid,
            event: row.event,
            properties,
            properties_json: row.properties,
            timestamp: row.timestamp,
            team_id: row.team_id,
            distinct_id: row.distinct_id,
            person_id: row.person_id,
            created_at: row.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        let v = ServerVersion::parse("18.16.1").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (18, 16, 1));
        assert!(!v.supports_validation());
        assert!(!v.at_least(WAIT_FOR_ASYNC_INSERT_MIN_VERSION));
        let v = ServerVersion::parse("24.8.4.13\n").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.raw.as_str()), (24, 8, 4, "24.8.4.13"));
        assert!(v.supports_validation());
        assert!(ServerVersion::parse("23.12.1.1").is_some_and(|v| !v.supports_validation() && v.at_least((21, 11))));
        assert!(ServerVersion::parse("25.3.1.2703-testing").unwrap().supports_validation());
        assert!(ServerVersion::parse("24.1").unwrap().supports_validation());
        for bad in ["", "x.y", "24", "v24.1"] {
            assert_eq!(ServerVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ddl_is_quoted_and_validated() {
        assert_eq!(create_database_sql("llma").unwrap(), "CREATE DATABASE IF NOT EXISTS `llma`");
        let t = create_table_sql("db_1", "events").unwrap();
        assert!(t.starts_with("CREATE TABLE IF NOT EXISTS `db_1`.`events` (uuid UUID, "), "{t}");
        assert!(t.ends_with("ENGINE = ReplacingMergeTree(created_at) ORDER BY (team_id, uuid)"), "{t}");
        assert!(create_table_sql("db", "x`; DROP TABLE y").is_err());
        assert!(create_database_sql("a.b").is_err());
        assert!(table_ref("", "t").is_err());
    }

    fn event(ts: &str) -> SentimentEvent {
        let raw = json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 3, "distinct_id": "d",
                         "timestamp": ts, "properties": {"$ai_input": "hi"}});
        let g = crate::event::GenerationEvent::parse(&raw).unwrap();
        let overall = crate::engine::OverallResult {
            label: crate::engine::Label::Positive,
            score: 0.5,
            scores: crate::engine::Scores { negative: 0.25, neutral: 0.25, positive: 0.5 },
            messages: Vec::new(),
        };
        let producer = crate::event::Producer { model: "m".into(), plugin_version: "v".into() };
        SentimentEvent::build(&g, &overall, &[], &producer, EventTime::now(), chrono::Utc::now(), &Default::default())
    }

    #[test]
    fn rows_from_events() {
        let now = EventTime::new(Utc::now()).unwrap();
        let e = event("2026-11-01T10:00:00.123456Z");
        let r = EventRow::from_event(&e, now).unwrap();
        assert_eq!(r.timestamp, crate::event::parse_timestamp("2026-11-01T10:00:00Z").unwrap());
        assert_eq!(r.properties, serde_json::to_string(&e.properties).unwrap());
        assert!(r.properties.starts_with(r#"{"$ai_trace_id":null,"$ai_session_id":null,"$ai_parent_id":"#), "{}", r.properties);
        assert!(r.properties.contains(r#""$ai_sentiment_label":"positive","$ai_sentiment_score":0.5,"#), "{}", r.properties);
        assert_eq!(r.event, "$ai_sentiment");
        assert_eq!(r.uuid, e.uuid);
        assert_eq!(r.created_at.timestamp(), now.utc().timestamp());
        assert_eq!(r.created_at.timestamp_subsec_nanos(), 0);
    }

    #[test]
    fn sentiment_uuid_matches_event_module() {
        let raw = json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 2, "distinct_id": "u1",
                         "properties": {"$ai_input": "hi"}});
        let g = crate::event::GenerationEvent::parse(&raw).unwrap();
        assert_eq!(crate::event::sentiment_uuid_for(g.uuid), g.sentiment_uuid());
    }
}
