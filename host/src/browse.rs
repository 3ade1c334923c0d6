//! The Sentiment pages' reads (`serve`): traces ranked by intensity, and
//! counts per day. Like [`crate::query`], whose generation key and event
//! filter they share, they read stored events of either schema and keep the
//! latest event per generation (by `created_at`); a trace's generations are
//! read by [`crate::query::fetch`] itself.
//!
//! The SQL runs on ClickHouse 18.16 and modern servers: `visitParamExtract*`
//! (a generation's three scores are its `$ai_sentiment_scores` object, taken
//! raw first so that the messages' own `negative` keys never match), values
//! bound by the client (`?`), `LIMIT offset, n`, UTC days as
//! `intDiv(seconds, 86400)` (no time-zone arguments to depend on).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::query::{fetch_rows, QueryError, EVENTS, GENERATION};
use crate::sink::ClickHouseSink;

/// Traces per page, as PostHog pages its Sentiment tab.
pub const PAGE_SIZE: u32 = 200;

/// Which traces the Sentiment page lists, and by which score it ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    /// Traces with a negative generation, by their highest negative score.
    #[default]
    Negative,
    /// Traces with a positive generation, by their highest positive score.
    Positive,
    /// Traces with a negative or a positive generation, by the greater of the two.
    Both,
    /// Every trace, by the greater of its highest negative and positive scores.
    All,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Negative => "negative",
            Polarity::Positive => "positive",
            Polarity::Both => "both",
            Polarity::All => "all",
        }
    }

    /// PostHog's rule: the greatest of the selected scores.
    fn intensity(self) -> &'static str {
        match self {
            Polarity::Negative => "max(negative)",
            Polarity::Positive => "max(positive)",
            Polarity::Both | Polarity::All => "greatest(max(negative), max(positive))",
        }
    }

    fn having(self) -> &'static str {
        match self {
            Polarity::Negative => "negatives > 0 AND ",
            Polarity::Positive => "positives > 0 AND ",
            Polarity::Both => "(negatives > 0 OR positives > 0) AND ",
            Polarity::All => "",
        }
    }
}

/// What the Sentiment page asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFilter {
    /// Generations at or after this time (their event `timestamp`).
    pub since: DateTime<Utc>,
    pub team_id: Option<i64>,
    pub polarity: Polarity,
    /// The least intensity shown (the slider), 0..=1.
    pub min_intensity: f64,
    /// 0-based.
    pub page: u32,
}

/// One row of the Sentiment page.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct TraceSummary {
    pub team_id: i64,
    pub trace_id: String,
    pub generations: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub last_seen: DateTime<Utc>,
    pub max_negative: f64,
    pub max_positive: f64,
    /// Generations labelled negative / positive.
    pub negative_generations: u64,
    pub positive_generations: u64,
    pub intensity: f64,
}

impl TraceSummary {
    /// The badge: the side the intensity comes from (the filter's side, or
    /// for `both`/`all` the greater one), neutral when no generation of the
    /// trace carries that label.
    pub fn label(&self, polarity: Polarity) -> &'static str {
        let negative = match polarity {
            Polarity::Negative => true,
            Polarity::Positive => false,
            Polarity::Both | Polarity::All => self.max_negative >= self.max_positive,
        };
        match negative {
            true if self.negative_generations > 0 => "negative",
            false if self.positive_generations > 0 => "positive",
            _ => "neutral",
        }
    }
}

/// One page of ranked traces and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TracePage {
    pub total: u64,
    pub traces: Vec<TraceSummary>,
}

fn time_literal(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The latest stored event per generation since `?` (of team `?` when
/// `team`), one row each: team, trace, time, label, its three scores.
fn latest_generations(table: &str, team: bool) -> String {
    let team = if team { "\n      AND team_id = ?" } else { "" };
    format!(
        "SELECT team, trace, generation_time, label,
         visitParamExtractFloat(scores, 'negative') AS negative,
         visitParamExtractFloat(scores, 'neutral') AS neutral,
         visitParamExtractFloat(scores, 'positive') AS positive
  FROM (
    SELECT generation,
           argMax(team_id, created_at) AS team,
           argMax(visitParamExtractString(properties, '$ai_trace_id'), created_at) AS trace,
           toDateTime(argMax(event_time, created_at), 'UTC') AS generation_time,
           argMax(visitParamExtractString(properties, '$ai_sentiment_label'), created_at) AS label,
           argMax(visitParamExtractRaw(properties, '$ai_sentiment_scores'), created_at) AS scores
    FROM (
      SELECT team_id, properties, created_at, toDateTime(timestamp, 'UTC') AS event_time,
             {GENERATION}
      FROM {table} FINAL
      WHERE {EVENTS}
        AND toDateTime(timestamp, 'UTC') >= toDateTime(?, 'UTC'){team}
    )
    GROUP BY generation
  )"
    )
}

/// The ranked traces; binds: since, [team], min intensity (then, in the
/// paged form, offset and count).
pub fn traces_sql(table: &str, polarity: Polarity, team: bool) -> String {
    format!(
        "SELECT team AS team_id, trace AS trace_id, count() AS generations, max(generation_time) AS last_seen,
       max(negative) AS max_negative, max(positive) AS max_positive,
       countIf(label = 'negative') AS negatives, countIf(label = 'positive') AS positives,
       {intensity} AS intensity
FROM (
  {latest}
)
WHERE trace != ''
GROUP BY team, trace
HAVING {having}intensity >= ?",
        intensity = polarity.intensity(),
        latest = latest_generations(table, team),
        having = polarity.having(),
    )
}

/// The Sentiment page's traces: ranked by intensity (then the most recent
/// first), [`PAGE_SIZE`] per page.
pub async fn traces(sink: &ClickHouseSink, filter: &TraceFilter) -> Result<TracePage, QueryError> {
    let base = traces_sql(sink.table(), filter.polarity, filter.team_id.is_some());
    let bind = |sql: &str| {
        let mut q = sink.client().clone().with_validation(false).query(sql).bind(time_literal(&filter.since));
        if let Some(team) = filter.team_id {
            q = q.bind(team);
        }
        q.bind(filter.min_intensity)
    };
    let count_sql = format!("SELECT count() FROM ({base})");
    let total: Vec<u64> = fetch_rows(sink, bind(&count_sql), "the number of traces").await?;
    let paged = format!("{base}\nORDER BY intensity DESC, last_seen DESC, team_id, trace_id\nLIMIT ?, ?");
    let offset = u64::from(filter.page) * u64::from(PAGE_SIZE);
    let traces = fetch_rows(sink, bind(&paged).bind(offset).bind(PAGE_SIZE), "the ranked traces").await?;
    Ok(TracePage { total: total.first().copied().unwrap_or(0), traces })
}

/// One UTC day of the trend: generations by label, and their mean scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendDay {
    pub day: NaiveDate,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// `None` on a day without generations.
    pub mean_negative: Option<f64>,
    pub mean_neutral: Option<f64>,
    pub mean_positive: Option<f64>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TrendRow {
    day: u32,
    negative: u64,
    neutral: u64,
    positive: u64,
    mean_negative: f64,
    mean_neutral: f64,
    mean_positive: f64,
}

/// Counts per day; binds: since, [team].
pub fn trend_sql(table: &str, team: bool) -> String {
    format!(
        "SELECT toUInt32(intDiv(toUInt32(generation_time), 86400)) AS day,
       countIf(label = 'negative') AS negative_count, countIf(label = 'neutral') AS neutral_count,
       countIf(label = 'positive') AS positive_count,
       avg(negative) AS mean_negative, avg(neutral) AS mean_neutral, avg(positive) AS mean_positive
FROM (
  {}
)
GROUP BY day
ORDER BY day",
        latest_generations(table, team)
    )
}

/// Every UTC day from `since`'s to `until`'s, days without generations as zeros.
pub async fn trend(
    sink: &ClickHouseSink,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    team_id: Option<i64>,
) -> Result<Vec<TrendDay>, QueryError> {
    let sql = trend_sql(sink.table(), team_id.is_some());
    let mut q = sink.client().clone().with_validation(false).query(&sql).bind(time_literal(&since));
    if let Some(team) = team_id {
        q = q.bind(team);
    }
    let rows: Vec<TrendRow> = fetch_rows(sink, q, "the trend").await?;
    Ok(fill_days(since, until, rows))
}

fn day_number(t: &DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

fn fill_days(since: DateTime<Utc>, until: DateTime<Utc>, rows: Vec<TrendRow>) -> Vec<TrendDay> {
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    for n in day_number(&since)..=day_number(&until).max(day_number(&since)) {
        let day = Utc.timestamp_opt(n * 86_400, 0).single().map(|t| t.date_naive()).unwrap_or_default();
        // Rows come ordered by day; one outside the window (a clock skew) is dropped.
        while rows.peek().is_some_and(|r| i64::from(r.day) < n) {
            rows.next();
        }
        let row = rows.next_if(|r| i64::from(r.day) == n);
        out.push(match row {
            Some(r) => TrendDay {
                day,
                negative: r.negative,
                neutral: r.neutral,
                positive: r.positive,
                mean_negative: Some(r.mean_negative),
                mean_neutral: Some(r.mean_neutral),
                mean_positive: Some(r.mean_positive),
            },
            None => TrendDay { day, negative: 0, neutral: 0, positive: 0, mean_negative: None, mean_neutral: None, mean_positive: None },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_bound_and_both_schemas_are_read() {
        for polarity in [Polarity::Negative, Polarity::Positive, Polarity::Both, Polarity::All] {
            let q = traces_sql("`db`.`events`", polarity, true);
            assert_eq!(q.matches('?').count(), 3, "{q}");
            assert!(q.contains("event IN ('$ai_sentiment', '$ai_evaluation')"), "{q}");
        }
        assert_eq!(trend_sql("`db`.`events`", false).matches('?').count(), 1);
    }

    #[test]
    fn days_without_rows_are_zeros_and_the_window_is_whole_days() {
        let since = Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap();
        let until = Utc.with_ymd_and_hms(2026, 12, 4, 1, 0, 0).unwrap();
        let day = |m: u32, d: u32| (Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap().timestamp() / 86_400) as u32;
        let row = |m, d, n| TrendRow { day: day(m, d), negative: n, neutral: 0, positive: 1, mean_negative: 0.5, mean_neutral: 0.2, mean_positive: 0.3 };
        // Ordered by day, as the query returns them; the first and last lie outside the window.
        let days = fill_days(since, until, vec![row(11, 30, 9), row(12, 2, 3), row(12, 30, 9)]);
        assert_eq!(days.iter().map(|d| d.day.to_string()).collect::<Vec<_>>(), ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]);
        assert_eq!(days.iter().map(|d| d.negative).collect::<Vec<_>>(), [0, 3, 0, 0]);
        assert_eq!(days[1].mean_negative, Some(0.5));
        assert_eq!(days[0].mean_negative, None);
    }

    #[test]
    fn the_badge_follows_the_side_of_the_intensity() {
        let t = TraceSummary {
            team_id: 1,
            trace_id: "t".into(),
            generations: 2,
            last_seen: Utc::now(),
            max_negative: 0.7,
            max_positive: 0.9,
            negative_generations: 1,
            positive_generations: 0,
            intensity: 0.9,
        };
        assert_eq!(t.label(Polarity::Negative), "negative");
        assert_eq!(t.label(Polarity::All), "neutral");
        assert_eq!(TraceSummary { positive_generations: 1, ..t.clone() }.label(Polarity::Both), "positive");
    }
}
