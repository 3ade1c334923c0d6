//! The HTML pages: the data of `api.rs` rendered on the server by
//! `minijinja` templates (embedded in the binary, auto-escaped as HTML). The
//! pages load nothing from elsewhere: styles are inline, charts are SVG in
//! the page, the one script is the slider's `onchange`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use minijinja::{context, Environment};

use super::api::{self, Params, ViewError};
use super::{chart, ViewState, TOKEN_COOKIE};

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("sentiment.html", include_str!("templates/sentiment.html")),
        ("trace.html", include_str!("templates/trace.html")),
        ("trend.html", include_str!("templates/trend.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        // The templates are part of the binary: one that does not parse is a bug.
        env.add_template(name, source).expect("embedded template parses");
    }
    env
}

fn render(state: &ViewState, name: &str, ctx: minijinja::Value) -> Response {
    match state.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "sentiment pages: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// An error as a page, with the status the API would answer.
fn error_page(state: &ViewState, page: &str, e: ViewError) -> Response {
    let status = e.status();
    if !matches!(e, ViewError::BadRequest(_)) {
        tracing::warn!(error = %e, "sentiment pages: read failed");
    }
    let mut response = render(state, "error.html", context! { page, message => e.to_string() });
    *response.status_mut() = status;
    response
}

/// A message as a page, with `status` (the on-demand form's refusals).
pub fn message_page(state: &ViewState, status: StatusCode, message: &str) -> Response {
    let mut response = render(state, "error.html", context! { page => "trace", message });
    *response.status_mut() = status;
    response
}

/// The current query with `page` replaced.
fn page_link(params: &Params, page: u64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut keys: Vec<&String> = params.keys().filter(|k| k.as_str() != "page").collect();
    keys.sort();
    for k in keys {
        query.append_pair(k, &params[k]);
    }
    query.append_pair("page", &page.to_string());
    format!("/?{}", query.finish())
}

pub async fn sentiment(State(state): State<Arc<ViewState>>, Query(params): Query<Params>) -> Response {
    match api::traces_data(&state, &params).await {
        Ok(data) => {
            let page = data["page"].as_u64().unwrap_or(0);
            let ctx = context! {
                page => "sentiment",
                prev => page_link(&params, page.saturating_sub(1)),
                next => page_link(&params, page + 1),
                data => minijinja::Value::from_serialize(&data),
            };
            render(&state, "sentiment.html", ctx)
        }
        Err(e) => error_page(&state, "sentiment", e),
    }
}

pub async fn trace(State(state): State<Arc<ViewState>>, Path(id): Path<String>, Query(params): Query<Params>) -> Response {
    match api::trace_data(&state, &id, &params).await {
        Ok(data) => {
            // After "Classify now": what the run did (the redirect's query).
            let count = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
            let run = count("classified").map(|classified| {
                context! { classified, found => count("found"), skipped => count("skipped"), failed => count("failed") }
            });
            // "Classify now" needs serve.classify and the trace's team.
            let classify_action = params.get("team").and_then(|t| t.trim().parse::<i64>().ok()).filter(|_| state.classifier.is_some()).map(|team| {
                let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
                format!("/traces/{id}/classify?team={team}")
            });
            let ctx = context! { page => "trace", data => minijinja::Value::from_serialize(&data), classify_action, run };
            render(&state, "trace.html", ctx)
        }
        Err(e) => error_page(&state, "trace", e),
    }
}

pub async fn trend(State(state): State<Arc<ViewState>>, Query(params): Query<Params>) -> Response {
    let data = match api::trend_data(&state, &params).await {
        Ok(data) => data,
        Err(e) => return error_page(&state, "trend", e),
    };
    let days: Vec<crate::browse::TrendDay> = match serde_json::from_value(data["per_day"].clone()) {
        Ok(days) => days,
        Err(e) => return error_page(&state, "trend", ViewError::BadRequest(e.to_string())),
    };
    let (counts, means) = match (chart::counts_svg(&days), chart::means_svg(&days)) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "sentiment pages: chart failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let total = |k: &str| days.iter().map(|d| match k { "negative" => d.negative, "neutral" => d.neutral, _ => d.positive }).sum::<u64>();
    let ctx = context! {
        page => "trend",
        data => minijinja::Value::from_serialize(&data),
        totals => context! { negative => total("negative"), neutral => total("neutral"), positive => total("positive") },
        counts_svg => counts,
        means_svg => means,
    };
    render(&state, "trend.html", ctx)
}

pub async fn login_form(State(state): State<Arc<ViewState>>) -> Response {
    render(&state, "login.html", context! { page => "login", failed => false })
}

/// `token=...` from the form: the right one sets the cookie and goes to the
/// Sentiment page; a wrong one shows the form again (401).
pub async fn login(State(state): State<Arc<ViewState>>, body: Bytes) -> Response {
    let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "token").map(|(_, v)| v.trim().to_string());
    let right = match (state.token_digest, &token) {
        (Some(want), Some(t)) => super::same_digest(&super::digest(t), &want),
        // No token configured: nothing to sign in to.
        (None, _) => true,
        (Some(_), None) => false,
    };
    if !right {
        tracing::warn!("sentiment pages: sign-in with a wrong token");
        let mut response = render(&state, "login.html", context! { page => "login", failed => true });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let mut cookie = format!("{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.unwrap_or_default());
    if state.secure_cookie {
        cookie.push_str("; Secure");
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_with_its_data() {
        let env = templates();
        let data = serde_json::json!({
            "days": 30, "team_id": null, "filter": "negative", "min_intensity": 0.25, "page": 0, "pages": 2, "total": 201,
            "traces": [{"team_id": 1, "trace_id": "<t1>", "generations": 2, "last_seen": "2026-12-01T00:00:00Z", "label": "negative",
                        "intensity": 0.9, "max_negative": 0.9, "max_positive": 0.1, "url": "/traces/t1?team=1"}],
        });
        let html = env
            .get_template("sentiment.html")
            .unwrap()
            .render(context! { page => "sentiment", prev => "/?page=0", next => "/?page=1", data => minijinja::Value::from_serialize(&data) })
            .unwrap();
        assert!(html.contains("&lt;t1&gt;") && !html.contains("<t1>"), "trace ids are escaped");
        assert!(html.contains("width: 90.0%") && html.contains("badge negative") && html.contains("id=\"next\""), "{html}");
        let data = serde_json::json!({"trace_id": "t", "team_id": 1, "generation_count": 1, "labels": {"negative": 1, "neutral": 0, "positive": 0},
            "generations": [{"generation_uuid": "g", "time": "2026-12-01T00:00:00Z", "label": "negative", "score": 0.8, "model": "m", "plugin_version": "1",
                "messages": [{"label": "negative", "score": 0.8, "scores": {"negative": 0.8, "neutral": 0.1, "positive": 0.1}, "text": "it broke"},
                             {"label": "positive", "score": 0.6, "scores": null, "text": null}]}]});
        let html = env.get_template("trace.html").unwrap().render(context! { page => "trace", data => minijinja::Value::from_serialize(&data) }).unwrap();
        assert!(html.contains("negative 0.800 · neutral 0.100 · positive 0.100") && html.contains("positive 0.600"), "{html}");
        assert!(!html.contains("<form id=\"classify-form\"") && !html.contains("id=\"classified\""), "no button without serve.classify: {html}");
        let run = context! { classified => 2, found => 3, skipped => 0, failed => 1 };
        let ctx = context! { page => "trace", data => minijinja::Value::from_serialize(&data), classify_action => "/traces/a%26b/classify?team=1", run };
        let html = env.get_template("trace.html").unwrap().render(ctx).unwrap();
        // minijinja escapes the slashes as entities; the browser reads them back.
        assert!(html.contains("<form id=\"classify-form\" method=\"post\"") && html.contains("a%26b&#x2f;classify?team=1\""), "{html}");
        assert!(html.contains("Classified 2 generation(s) now of the 3 found, <strong>1 failed</strong>."), "{html}");
        assert!(html.contains("it broke") && html.contains("width: 60.0%"), "{html}");
        assert_eq!(page_link(&[("filter".to_string(), "both".to_string()), ("page".into(), "3".into())].into(), 4), "/?filter=both&page=4");
    }
}
