//! Table layout, row types and server version handling.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::quote_identifier;
use super::error::SinkError;
use super::layout::{ColumnPersonId, ColumnTime, TableLayout};
use crate::event::{EventTime, SentimentEvent};

/// Oldest server on which the client's schema validation is turned on when
/// `SinkConfig::validation` is `None` (it needs `RowBinaryWithNamesAndTypes`
/// and `DESCRIBE ... describe_include_subcolumns`; 18.16 has neither).
pub const VALIDATION_MIN_VERSION: (u32, u32) = (24, 1);

/// Oldest server that knows `insert_deduplication_token` and the
/// `non_replicated_deduplication_window` table setting.
pub const DEDUPLICATION_TOKEN_MIN_VERSION: (u32, u32) = (22, 2);

/// Inserts remembered per table for deduplication (tokens of blocks): a
/// retried INSERT whose first attempt was written but not acknowledged is
/// dropped by the server instead of stored twice.
pub const DEDUPLICATION_WINDOW: u32 = 1000;

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
/// row; read with FINAL. Only types that exist on 18.16 are used. With
/// `deduplication_window` (servers from 22.2) the table also remembers the
/// last inserts' tokens, so that a retried INSERT adds no raw row either.
pub fn create_table_sql(database: &str, table: &str, deduplication_window: bool) -> Result<String, SinkError> {
    let settings = if deduplication_window {
        format!(" SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}")
    } else {
        String::new()
    };
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
         ) ENGINE = ReplacingMergeTree(created_at) ORDER BY (team_id, uuid){settings}",
        table_ref(database, table)?
    ))
}

/// The columns of a read, in the shape of [`ReadRow`] whatever the table's
/// layout: times as `DateTime('UTC')`, the person id as `Nullable(UUID)`.
pub const READ_COLUMNS: &str = "uuid, event, properties, toDateTime(timestamp, 'UTC') AS timestamp, team_id, distinct_id, \
     toNullable(person_id) AS person_id, toDateTime(created_at, 'UTC') AS created_at";

/// One row of the events table as sent over RowBinary, encoded for the
/// table's layout.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize)]
pub(crate) struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub uuid: Uuid,
    pub event: String,
    pub properties: String,
    pub timestamp: ColumnTime,
    pub team_id: i64,
    pub distinct_id: String,
    pub person_id: ColumnPersonId,
    pub created_at: ColumnTime,
}

impl EventRow {
    /// The event's typed fields as they are: its time was range-checked
    /// where it entered (see [`EventTime`]); only the properties are
    /// serialised, to the one JSON text stored. A `DateTime` column keeps
    /// whole seconds, a `DateTime64` one what its precision holds.
    pub(crate) fn from_event(
        event: &SentimentEvent,
        created_at: EventTime,
        layout: &TableLayout,
    ) -> Result<EventRow, SinkError> {
        let properties = serde_json::to_string(&event.properties).map_err(|e| SinkError::InvalidEvent {
            uuid: event.uuid,
            reason: format!("properties do not serialize: {e}"),
        })?;
        Ok(EventRow {
            uuid: event.uuid,
            event: event.event.to_string(),
            properties,
            timestamp: ColumnTime { at: event.timestamp.utc(), column: layout.timestamp },
            team_id: event.team_id,
            distinct_id: event.distinct_id.clone(),
            person_id: ColumnPersonId { id: event.person_id, nullable: layout.person_id_nullable },
            created_at: ColumnTime { at: created_at.utc(), column: layout.created_at },
        })
    }

    /// What identifies the row's content for the server's insert
    /// deduplication: everything but `created_at`, which a retry sets anew.
    pub(crate) fn content_digest(&self, hasher: &mut impl sha2::Digest) {
        for part in [
            self.uuid.as_bytes().as_slice(),
            self.event.as_bytes(),
            self.properties.as_bytes(),
            &self.timestamp.at.timestamp_nanos_opt().unwrap_or_default().to_le_bytes(),
            &self.team_id.to_le_bytes(),
            self.distinct_id.as_bytes(),
            self.person_id.id.unwrap_or_default().as_bytes().as_slice(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
}

/// One row of a read ([`READ_COLUMNS`]).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub(crate) struct ReadRow {
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
    pub(crate) fn from_row(row: ReadRow) -> Result<StoredEvent, String> {
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
            // A non-nullable column stores "no person" as the nil uuid.
            person_id: row.person_id.filter(|id| !id.is_nil()),
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
        let t = create_table_sql("db_1", "events", false).unwrap();
        assert!(t.starts_with("CREATE TABLE IF NOT EXISTS `db_1`.`events` (uuid UUID, "), "{t}");
        assert!(t.ends_with("ENGINE = ReplacingMergeTree(created_at) ORDER BY (team_id, uuid)"), "{t}");
        assert!(create_table_sql("db", "x`; DROP TABLE y", false).is_err());
        let t = create_table_sql("db", "events", true).unwrap();
        assert!(t.ends_with("ORDER BY (team_id, uuid) SETTINGS non_replicated_deduplication_window = 1000"), "{t}");
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
        let r = EventRow::from_event(&e, now, &TableLayout::CREATED).unwrap();
        // The column's encoding drops what it cannot hold (a DateTime: the fraction).
        assert_eq!(r.timestamp.at, crate::event::parse_timestamp("2026-11-01T10:00:00.123456Z").unwrap());
        assert_eq!(r.properties, serde_json::to_string(&e.properties).unwrap());
        assert!(r.properties.starts_with(r#"{"$ai_trace_id":null,"$ai_session_id":null,"$ai_parent_id":"#), "{}", r.properties);
        assert!(r.properties.contains(r#""$ai_sentiment_label":"positive","$ai_sentiment_score":0.5,"#), "{}", r.properties);
        assert_eq!(r.event, "$ai_sentiment");
        assert_eq!(r.uuid, e.uuid);
        assert_eq!(r.created_at.at, now.utc());
        assert_eq!(r.person_id, ColumnPersonId { id: e.person_id, nullable: true });
    }

    #[test]
    fn the_deduplication_digest_ignores_created_at_only() {
        use sha2::Digest;
        let e = event("2026-11-01T10:00:00.123456Z");
        let digest = |r: &EventRow| {
            let mut h = sha2::Sha256::new();
            r.content_digest(&mut h);
            h.finalize()
        };
        let a = EventRow::from_event(&e, EventTime::now(), &TableLayout::CREATED).unwrap();
        let mut b = a.clone();
        b.created_at.at += chrono::Duration::seconds(5);
        assert_eq!(digest(&a), digest(&b));
        b.properties.push(' ');
        assert_ne!(digest(&a), digest(&b));
        let mut c = a.clone();
        c.timestamp.at += chrono::Duration::microseconds(1);
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn sentiment_uuid_matches_event_module() {
        let raw = json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 2, "distinct_id": "u1",
                         "properties": {"$ai_input": "hi"}});
        let g = crate::event::GenerationEvent::parse(&raw).unwrap();
        assert_eq!(crate::event::sentiment_uuid_for(g.uuid), g.sentiment_uuid());
    }
}
