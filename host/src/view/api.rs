//! The JSON behind every page (`/api/...`): the query parameters, checked,
//! and the data each page shows, built once here for both.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::ViewState;
use crate::browse::{Polarity, TraceFilter, PAGE_SIZE};
use crate::query::{QueryError, Scope, StoredGeneration};

/// Longest window a request may ask for.
const MAX_DAYS: u32 = 3650;
const MAX_PAGE: u32 = 100_000;

/// Why a request is answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Read(#[from] QueryError),
    /// On-demand classification could not finish (its writes, its thread).
    #[error("classifying: {0}")]
    Classify(String),
}

impl ViewError {
    pub fn status(&self) -> StatusCode {
        match self {
            ViewError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // ClickHouse, not this server, failed: a gateway's error.
            ViewError::Read(QueryError::Timeout { .. } | QueryError::ReadTimeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ViewError::Read(_) | ViewError::Classify(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ViewError {
    fn into_response(self) -> Response {
        if !matches!(self, ViewError::BadRequest(_)) {
            tracing::warn!(error = %self, "sentiment pages: read failed");
        }
        (self.status(), Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// The raw query string: an empty field (a form's blank team box) is absent.
pub type Params = HashMap<String, String>;

fn param<T: std::str::FromStr>(params: &Params, name: &str) -> Result<Option<T>, ViewError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ViewError::BadRequest(format!("`{name}` is not valid: {v:?}"))),
    }
}

fn bounded<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, (lo, hi): (T, T)) -> Result<T, ViewError> {
    if v < lo || v > hi {
        return Err(ViewError::BadRequest(format!("`{name}` must be within {lo}..={hi}, not {v}")));
    }
    Ok(v)
}

/// `days` (default `serve.window_days`) back from `now`; `team`.
fn window(params: &Params, default_days: u32, now: DateTime<Utc>) -> Result<(u32, DateTime<Utc>, Option<i64>), ViewError> {
    let days = bounded("days", param(params, "days")?.unwrap_or(default_days), (1, MAX_DAYS))?;
    Ok((days, now - Duration::days(i64::from(days)), param(params, "team")?))
}

fn polarity(params: &Params) -> Result<Polarity, ViewError> {
    match params.get("filter").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(Polarity::default()),
        Some(v) => serde_json::from_value(Value::String(v.to_string()))
            .map_err(|_| ViewError::BadRequest(format!("`filter` is negative, positive, both or all, not {v:?}"))),
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The link to a trace's page (`team` keeps trace ids of two teams apart).
pub fn trace_link(prefix: &str, trace_id: &str, team: i64) -> String {
    let id: String = url::form_urlencoded::byte_serialize(trace_id.as_bytes()).collect();
    // A path segment: `+` is a plus there, not a space.
    format!("{prefix}/traces/{}?team={team}", id.replace('+', "%20"))
}

/// The Sentiment page's data.
pub async fn traces_data(state: &ViewState, params: &Params) -> Result<Value, ViewError> {
    let now = Utc::now();
    let (days, since, team_id) = window(params, state.window_days, now)?;
    let filter = TraceFilter {
        since,
        team_id,
        polarity: polarity(params)?,
        min_intensity: bounded("min", param(params, "min")?.unwrap_or(0.0), (0.0, 1.0))?,
        page: bounded("page", param(params, "page")?.unwrap_or(0), (0, MAX_PAGE))?,
    };
    let page = crate::browse::traces(&state.sink, &filter).await?;
    let traces: Vec<Value> = page
        .traces
        .iter()
        .map(|t| {
            json!({
                "team_id": t.team_id,
                "trace_id": t.trace_id,
                "generations": t.generations,
                "last_seen": time(&t.last_seen),
                "label": t.label(filter.polarity),
                "intensity": t.intensity,
                "max_negative": t.max_negative,
                "max_positive": t.max_positive,
                "negative_generations": t.negative_generations,
                "positive_generations": t.positive_generations,
                "url": trace_link("", &t.trace_id, t.team_id),
            })
        })
        .collect();
    Ok(json!({
        "days": days,
        "since": time(&since),
        "team_id": team_id,
        "filter": filter.polarity.as_str(),
        "min_intensity": filter.min_intensity,
        "page": filter.page,
        "page_size": PAGE_SIZE,
        "total": page.total,
        "pages": page.total.div_ceil(u64::from(PAGE_SIZE)),
        "traces": traces,
    }))
}

fn scores_json(s: &crate::engine::Scores) -> Value {
    json!({"negative": s.negative, "neutral": s.neutral, "positive": s.positive})
}

fn generation_json(g: &StoredGeneration) -> Value {
    let messages: Vec<Value> = g
        .messages
        .iter()
        .map(|m| {
            json!({
                "index": m.index,
                "label": m.label,
                "score": m.score,
                "scores": m.scores.as_ref().map(scores_json),
                "text": m.text,
            })
        })
        .collect();
    json!({
        "generation_uuid": g.generation_uuid,
        "event": g.event,
        "time": time(&g.generation_time),
        "label": g.label,
        "score": g.score,
        "scores": g.scores.as_ref().map(scores_json),
        "model": g.model,
        "plugin_version": g.plugin_version,
        "messages": messages,
    })
}

/// A trace's page: its generations in time order (every stored one, not
/// only those in the window: a trace is shown whole).
pub async fn trace_data(state: &ViewState, trace_id: &str, params: &Params) -> Result<Value, ViewError> {
    let team_id: Option<i64> = param(params, "team")?;
    let mut generations = crate::query::fetch(&state.sink, &Scope::Trace(trace_id.to_string()), team_id).await?;
    generations.sort_by(|a, b| (a.generation_time, &a.generation_uuid).cmp(&(b.generation_time, &b.generation_uuid)));
    let count = |label: &str| generations.iter().filter(|g| g.label == label).count();
    Ok(json!({
        "trace_id": trace_id,
        "team_id": team_id,
        "generation_count": generations.len(),
        "labels": {"negative": count("negative"), "neutral": count("neutral"), "positive": count("positive")},
        "generations": generations.iter().map(generation_json).collect::<Vec<_>>(),
    }))
}

/// The trend: one entry per UTC day of the window, today's included.
pub async fn trend_data(state: &ViewState, params: &Params) -> Result<Value, ViewError> {
    let now = Utc::now();
    let (days, since, team_id) = window(params, state.window_days, now)?;
    let per_day = crate::browse::trend(&state.sink, since, now, team_id).await?;
    Ok(json!({
        "days": days,
        "since": time(&since),
        "until": time(&now),
        "team_id": team_id,
        "per_day": per_day,
    }))
}

pub async fn traces(State(state): State<Arc<ViewState>>, Query(params): Query<Params>) -> Result<Json<Value>, ViewError> {
    traces_data(&state, &params).await.map(Json)
}

pub async fn trace(
    State(state): State<Arc<ViewState>>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ViewError> {
    trace_data(&state, &id, &params).await.map(Json)
}

pub async fn trend(State(state): State<Arc<ViewState>>, Query(params): Query<Params>) -> Result<Json<Value>, ViewError> {
    trend_data(&state, &params).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parameters_are_checked_and_blank_ones_are_absent() {
        let now = Utc::now();
        let (days, since, team) = window(&params(&[("team", " ")]), 30, now).unwrap();
        assert_eq!((days, team), (30, None));
        assert_eq!(now - since, Duration::days(30));
        assert!(matches!(window(&params(&[("days", "0")]), 30, now), Err(ViewError::BadRequest(_))));
        assert!(matches!(window(&params(&[("team", "x")]), 30, now), Err(ViewError::BadRequest(_))));
        assert_eq!(polarity(&params(&[("filter", "both")])).unwrap(), Polarity::Both);
        assert!(polarity(&params(&[("filter", "angry")])).is_err());
        assert_eq!(trace_link("", "a b/c", 7), "/traces/a%20b%2Fc?team=7");
    }
}
