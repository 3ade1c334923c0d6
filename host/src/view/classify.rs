//! On-demand classification (`serve.classify`): `POST
//! /api/traces/{id}/classify?team=N` reads the trace's `$ai_generation`
//! events from the events table, classifies those without a stored
//! sentiment event through the same driver as `analyze` (the result cache,
//! the plugin's sandbox and deadlines), writes their events and answers the
//! trace as `GET /api/traces/{id}` does. `POST /api/classify?team=N`
//! with `{"trace_ids": [...]}` does the same for up to [`MAX_BATCH`] traces
//! and answers each trace's counts; the trace page's "Classify now" button
//! posts a form to `/traces/{id}/classify?team=N`. Off by default: it makes `serve` load
//! the plugin and write to ClickHouse.
//!
//! Rate-limited per client address (`governor`), with PostHog's limits as
//! defaults (60 a minute, 600 an hour), each trace of a batch counting as
//! one; a refusal is a 429 whose `Retry-After` says when the next one (or
//! the whole batch) is let through.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::api::{self, Params, ViewError};
use super::{pages, ViewState};
use crate::cache::ResultCache;
use crate::engine::{InstanceSlot, PluginEngine};
use crate::pipeline::{Attempt, Driver, Outcome, PipelineOptions};
use crate::query::{fetch_rows, Scope};

/// Generations one request classifies at most: a larger trace is done in
/// several requests (each finds the ones already stored).
pub const MAX_GENERATIONS: u64 = 500;
/// Trace ids one batch request may name.
pub const MAX_BATCH: usize = 20;

/// The plugin, the cache and the limits of on-demand classification.
pub struct Classifier {
    /// The engine outlives the instance it made.
    slot: Mutex<(PluginEngine, InstanceSlot)>,
    cache: ResultCache,
    options: PipelineOptions,
    per_minute: DefaultKeyedRateLimiter<IpAddr>,
    per_hour: DefaultKeyedRateLimiter<IpAddr>,
}

impl Classifier {
    pub fn new(engine: PluginEngine, slot: InstanceSlot, cache: ResultCache, options: PipelineOptions, per_minute: u32, per_hour: u32) -> Classifier {
        let quota = |n: u32, per: fn(NonZeroU32) -> Quota| per(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Classifier {
            slot: Mutex::new((engine, slot)),
            cache,
            options,
            per_minute: DefaultKeyedRateLimiter::keyed(quota(per_minute, Quota::per_minute)),
            per_hour: DefaultKeyedRateLimiter::keyed(quota(per_hour, Quota::per_hour)),
        }
    }

    /// `Err(wait)` when `n` more classifications would take `client` over
    /// either limit (none of them is counted then); a batch larger than a
    /// limit never fits: it waits for a whole period.
    fn admit(&self, client: IpAddr, n: usize) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let check = |limiter: &DefaultKeyedRateLimiter<IpAddr>, period: Duration| match limiter.check_key_n(&client, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(now)),
            Err(_) => Err(period),
        };
        let result = check(&self.per_minute, Duration::from_secs(60)).and_then(|_| check(&self.per_hour, Duration::from_secs(3600)));
        // Forget clients whose allowance is whole again: the maps stay small.
        self.per_minute.retain_recent();
        self.per_hour.retain_recent();
        result
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct GenerationRow {
    uuid: String,
    properties: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    timestamp: DateTime<Utc>,
    team_id: i64,
    distinct_id: String,
}

/// The trace's `$ai_generation` events, oldest first; binds: team, trace id, limit.
pub fn generations_sql(table: &str) -> String {
    format!(
        "SELECT toString(uuid) AS id, properties, toDateTime(timestamp, 'UTC') AS time, team_id, distinct_id
FROM {table} FINAL
WHERE event = '$ai_generation' AND team_id = ? AND visitParamExtractString(properties, '$ai_trace_id') = ?
ORDER BY time, id
LIMIT ?"
    )
}

/// What a run classified, for the answer.
#[derive(Debug, Default, serde::Serialize)]
struct Run {
    found: usize,
    already_stored: usize,
    classified: usize,
    skipped: usize,
    failed: usize,
}

async fn classify_trace(state: &ViewState, classifier: &Arc<Classifier>, trace_id: &str, team: i64) -> Result<Run, ViewError> {
    let sink = &state.sink;
    let query = sink.client().clone().with_validation(false).query(&generations_sql(sink.table())).bind(team).bind(trace_id).bind(MAX_GENERATIONS);
    let rows: Vec<GenerationRow> = fetch_rows(sink, query, "the trace's generations").await?;
    let stored: HashSet<String> =
        crate::query::fetch(sink, &Scope::Trace(trace_id.to_string()), Some(team)).await?.into_iter().map(|g| g.generation_uuid).collect();
    let mut run = Run { found: rows.len(), ..Run::default() };
    let lines: Vec<String> = rows
        .into_iter()
        .filter(|r| {
            let known = stored.contains(&r.uuid);
            run.already_stored += usize::from(known);
            !known
        })
        .map(|r| {
            // The event as a producer sends it (properties JSON-encoded as stored).
            json!({"uuid": r.uuid, "event": "$ai_generation", "team_id": r.team_id, "distinct_id": r.distinct_id,
                   "timestamp": r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "properties": r.properties})
            .to_string()
        })
        .collect();
    let worker = classifier.clone();
    // The plugin runs synchronously (its own deadlines bound every call): off the async threads.
    let (events, counts) = tokio::task::spawn_blocking(move || {
        let mut guard = worker.slot.lock();
        let mut driver = Driver::new(worker.options.clone(), Attempt::ONLY, false);
        let (mut events, mut counts) = (Vec::new(), (0, 0));
        for (i, line) in lines.iter().enumerate() {
            match driver.run_text(i, line, &mut guard.1, Some(&worker.cache)) {
                Ok((_, Outcome::Classified(event))) => events.push(*event),
                Ok((_, Outcome::Skipped(_))) => counts.0 += 1,
                Ok((_, Outcome::Failed(f))) => {
                    tracing::warn!(error = %f.message, "on-demand classification: a generation failed");
                    counts.1 += 1;
                }
                Err(_) => counts.1 += 1,
            }
        }
        (events, counts)
    })
    .await
    .map_err(|e| ViewError::Classify(e.to_string()))?;
    sink.insert(&events).await.map_err(|e| ViewError::Classify(format!("writing the sentiment events: {e}")))?;
    (run.classified, run.skipped, run.failed) = (events.len(), counts.0, counts.1);
    tracing::info!(trace = %trace_id, team, classified = run.classified, skipped = run.skipped, failed = run.failed, "on-demand classification");
    Ok(run)
}

/// Why a classification request was not let through.
enum Refusal {
    /// `serve.classify` is off.
    Off,
    /// Over the client's limits: the seconds until it is let through.
    TooMany(u64),
    NoTeam,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Off => StatusCode::NOT_FOUND,
            Refusal::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::NoTeam => StatusCode::BAD_REQUEST,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Off => "on-demand classification is off (serve.classify)".into(),
            Refusal::TooMany(secs) => format!("too many classifications: retry in {secs} s"),
            Refusal::NoTeam => "`team` (a number) is required: trace ids are per team".into(),
        }
    }

    /// The API's answer: JSON, and `Retry-After` on a 429.
    fn json(self) -> Response {
        match self {
            Refusal::TooMany(secs) => {
                let body = Json(json!({"error": "too many classifications: retry later", "retry_after_secs": secs}));
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
            }
            Refusal::NoTeam => ViewError::BadRequest(self.message()).into_response(),
            Refusal::Off => (self.status(), Json(json!({"error": self.message()}))).into_response(),
        }
    }
}

/// The classifier and the team of a request, once `n` classifications are
/// admitted for its client.
fn admitted(state: &ViewState, peer: SocketAddr, params: &Params, n: usize) -> Result<(Arc<Classifier>, i64), Refusal> {
    let Some(classifier) = state.classifier.clone() else {
        return Err(Refusal::Off);
    };
    if let Err(wait) = classifier.admit(peer.ip(), n) {
        return Err(Refusal::TooMany(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)));
    }
    match params.get("team").map(|t| t.trim().parse::<i64>()) {
        Some(Ok(team)) => Ok((classifier, team)),
        _ => Err(Refusal::NoTeam),
    }
}

/// The trace page's "Classify now" button (`POST /traces/{id}/classify`,
/// a plain form): classifies as the API does, then sends the browser back
/// to the trace page (303), which says how many it classified. A form sent
/// from another site (its `Origin` is not this server's) is refused: the
/// cookie is SameSite=Strict, but a server with no token has no cookie.
pub async fn classify_page(
    State(state): State<Arc<ViewState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let same = origin.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == host);
        if !same {
            return pages::message_page(&state, StatusCode::FORBIDDEN, "a classification sent from another site is refused");
        }
    }
    let (classifier, team) = match admitted(&state, peer, &params, 1) {
        Ok(admitted) => admitted,
        Err(refusal) => return pages::message_page(&state, refusal.status(), &refusal.message()),
    };
    let run = match classify_trace(&state, &classifier, &id, team).await {
        Ok(run) => run,
        Err(e) => return pages::message_page(&state, e.status(), &e.to_string()),
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("team", &team.to_string());
    for (k, v) in [("found", run.found), ("classified", run.classified), ("skipped", run.skipped), ("failed", run.failed)] {
        query.append_pair(k, &v.to_string());
    }
    let path: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    axum::response::Redirect::to(&format!("/traces/{path}?{}", query.finish())).into_response()
}

pub async fn classify(
    State(state): State<Arc<ViewState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let (classifier, team) = match admitted(&state, peer, &params, 1) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.json(),
    };
    let run = match classify_trace(&state, &classifier, &id, team).await {
        Ok(run) => run,
        Err(e) => return e.into_response(),
    };
    match api::trace_data(&state, &id, &params).await {
        Ok(mut trace) => {
            trace["classification"] = json!(run);
            Json(trace).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The body of a batch: the traces of one team to classify.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    trace_ids: Vec<String>,
}

pub async fn classify_batch(
    State(state): State<Arc<ViewState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<Params>,
    Json(batch): Json<Batch>,
) -> Response {
    let ids = batch.trace_ids;
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return ViewError::BadRequest(format!("`trace_ids` holds 1 to {MAX_BATCH} trace ids, not {}", ids.len())).into_response();
    }
    let (classifier, team) = match admitted(&state, peer, &params, ids.len()) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.json(),
    };
    let mut traces = Vec::with_capacity(ids.len());
    for id in ids {
        match classify_trace(&state, &classifier, &id, team).await {
            Ok(run) => traces.push(json!({"trace_id": id, "classification": run})),
            Err(e) => return e.into_response(),
        }
    }
    Json(json!({"team_id": team, "traces": traces})).into_response()
}
