//! The column types of an events table this sink can write.
//!
//! The table the sink creates uses only types 18.16 knows (`DateTime`,
//! `Nullable(UUID)`); a modern PostHog-shaped table stores times as
//! `DateTime64(6, 'UTC')` and `person_id` as a plain `UUID`. Both are
//! written correctly: RowBinary carries a `DateTime` as 4 bytes of seconds
//! and a `DateTime64(p)` as 8 bytes of 10^-p ticks, so the row must know
//! which one the column is.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// How a time column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeColumn {
    /// `DateTime`, with or without a time zone: whole seconds.
    DateTime,
    /// `DateTime64(p)` for the precisions the client can encode.
    Secs64,
    Millis64,
    Micros64,
    Nanos64,
}

/// What the rows of one table must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableLayout {
    pub timestamp: TimeColumn,
    pub created_at: TimeColumn,
    /// `Nullable(UUID)`; a plain `UUID` stores "no person" as the nil uuid.
    pub person_id_nullable: bool,
}

impl TableLayout {
    /// The table `migrate` creates.
    pub(crate) const CREATED: TableLayout =
        TableLayout { timestamp: TimeColumn::DateTime, created_at: TimeColumn::DateTime, person_id_nullable: true };

    /// The layout of a table with these `(name, type)` columns (extra
    /// columns are allowed), or one sentence per column that does not fit.
    pub(crate) fn from_columns(columns: &[(String, String)]) -> Result<TableLayout, Vec<String>> {
        let mut problems = Vec::new();
        let type_of = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
        let mut check = |name: &str, wanted: &str, fits: &dyn Fn(&str) -> bool| match type_of(name) {
            None => problems.push(format!("column {name} is missing")),
            Some(t) if !fits(t) => problems.push(format!("column {name} is {t} instead of {wanted}")),
            Some(_) => {}
        };
        let string = |t: &str| t == "String" || t == "LowCardinality(String)";
        check("uuid", "UUID", &|t| t == "UUID");
        check("event", "String", &string);
        check("properties", "String", &string);
        check("team_id", "Int64", &|t| t == "Int64");
        check("distinct_id", "String", &string);
        check("person_id", "Nullable(UUID) or UUID", &|t| t == "UUID" || t == "Nullable(UUID)");
        const TIME: &str = "DateTime or DateTime64 of precision 0, 3, 6 or 9";
        check("timestamp", TIME, &|t| time_column(t).is_some());
        check("created_at", TIME, &|t| time_column(t).is_some());
        if !problems.is_empty() {
            return Err(problems);
        }
        let time = |name| type_of(name).and_then(time_column).expect("checked above");
        Ok(TableLayout {
            timestamp: time("timestamp"),
            created_at: time("created_at"),
            person_id_nullable: type_of("person_id") == Some("Nullable(UUID)"),
        })
    }
}

/// `DateTime`, `DateTime('UTC')`, `DateTime64(6)`, `DateTime64(6, 'UTC')`...
/// The zone only changes how the server prints the value: the stored
/// number is the same instant in every zone.
fn time_column(t: &str) -> Option<TimeColumn> {
    if t == "DateTime" || (t.starts_with("DateTime('") && t.ends_with("')")) {
        return Some(TimeColumn::DateTime);
    }
    let args = t.strip_prefix("DateTime64(")?.strip_suffix(')')?;
    match args.split(',').next()?.trim() {
        "0" => Some(TimeColumn::Secs64),
        "3" => Some(TimeColumn::Millis64),
        "6" => Some(TimeColumn::Micros64),
        "9" => Some(TimeColumn::Nanos64),
        _ => None,
    }
}

/// A time as its column encodes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ColumnTime {
    pub at: DateTime<Utc>,
    pub column: TimeColumn,
}

impl Serialize for ColumnTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use clickhouse::serde::chrono::{datetime, datetime64};
        match self.column {
            TimeColumn::DateTime => datetime::serialize(&self.at, s),
            TimeColumn::Secs64 => datetime64::secs::serialize(&self.at, s),
            TimeColumn::Millis64 => datetime64::millis::serialize(&self.at, s),
            TimeColumn::Micros64 => datetime64::micros::serialize(&self.at, s),
            TimeColumn::Nanos64 => datetime64::nanos::serialize(&self.at, s),
        }
    }
}

/// A person id as its column encodes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ColumnPersonId {
    pub id: Option<Uuid>,
    pub nullable: bool,
}

impl Serialize for ColumnPersonId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.nullable {
            clickhouse::serde::uuid::option::serialize(&self.id, s)
        } else {
            clickhouse::serde::uuid::serialize(&self.id.unwrap_or(Uuid::nil()), s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(time: &str, person: &str) -> Vec<(String, String)> {
        [
            ("uuid", "UUID"),
            ("event", "String"),
            ("properties", "String"),
            ("timestamp", time),
            ("team_id", "Int64"),
            ("distinct_id", "LowCardinality(String)"),
            ("person_id", person),
            ("created_at", time),
            ("elements_chain", "String"),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
    }

    #[test]
    fn ours_and_posthogs_fit() {
        assert_eq!(TableLayout::from_columns(&columns("DateTime('UTC')", "Nullable(UUID)")), Ok(TableLayout::CREATED));
        let posthog = TableLayout::from_columns(&columns("DateTime64(6, 'UTC')", "UUID")).unwrap();
        assert_eq!(
            posthog,
            TableLayout { timestamp: TimeColumn::Micros64, created_at: TimeColumn::Micros64, person_id_nullable: false }
        );
        for (t, want) in [
            ("DateTime", TimeColumn::DateTime),
            ("DateTime('Europe/Paris')", TimeColumn::DateTime),
            ("DateTime64(3)", TimeColumn::Millis64),
            ("DateTime64(9, 'UTC')", TimeColumn::Nanos64),
            ("DateTime64(0, 'UTC')", TimeColumn::Secs64),
        ] {
            assert_eq!(time_column(t), Some(want), "{t}");
        }
    }

    #[test]
    fn each_incompatible_column_is_named() {
        let mut c = columns("DateTime64(4, 'UTC')", "String");
        c.retain(|(n, _)| n != "event");
        let problems = TableLayout::from_columns(&c).unwrap_err();
        assert_eq!(
            problems,
            [
                "column event is missing",
                "column person_id is String instead of Nullable(UUID) or UUID",
                "column timestamp is DateTime64(4, 'UTC') instead of DateTime or DateTime64 of precision 0, 3, 6 or 9",
                "column created_at is DateTime64(4, 'UTC') instead of DateTime or DateTime64 of precision 0, 3, 6 or 9",
            ]
        );
        for bad in ["Date", "DateTime64", "DateTime64()", "UInt32", "Nullable(DateTime)"] {
            assert_eq!(time_column(bad), None, "{bad}");
        }
    }
}
