//! Fuzzing of `$ai_generation` event parsing: `GenerationEvent::parse`,
//! `ai_input_json` and the `$ai_sentiment` event built from the result.
//!
//! Events are generated field by field from valid and invalid variants, so
//! every case has a known expected outcome (the parsed fields, or the typed
//! `EventError` of the first bad field); arbitrary JSON values and broken JSON
//! text check that nothing else can happen (no panic, `Ok` or `EventError`).
//!
//! Every property runs `LLMA_FUZZ_CASES` cases (256 by default; `make
//! reliability` runs 100_000) and prints the figure; with
//! `LLMA_RELIABILITY_REPORT=FILE` it appends a row for the reliability table.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use llma_sentiment::engine::{Label, MessageResult, OverallResult, Scores};
use llma_sentiment::event::{format_timestamp, EventError, EventTime, GenerationEvent, Producer, SentimentEvent, SkipReason};
use llma_fuzz_harness::{any_json, fuzz, json_number, max_rss_mb};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use uuid::Uuid;

// ---------------------------------------------------------------- generic JSON

const PIECES: &[&str] = &[
    "a", " ", "\t", "\n", "é", "€", "😀", "\u{0301}", "\u{200d}", "\u{feff}", "\u{10ffff}", "\u{a0}", "[", "]", "{", "}",
    "\"", "\\", ",", ":", "\\ud800", "\0",
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z0-9 ,.!?'-]{0,30}",
        4 => any::<String>(),
        3 => prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat()),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "uuid", "event", "team_id", "distinct_id", "timestamp", "person_id", "properties", "$ai_input",
            "role", "content", "text", "type", "",
        ])
        .prop_map(String::from),
        2 => "[a-z_$]{1,8}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn not_a_string() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        Just(json!({})),
        Just(json!([])),
        Just(json!(["x"])),
        Just(json!({"a": 1})),
    ]
    .boxed()
}

// ---------------------------------------------------------------- event fields

/// What a field of a generated event should parse to.
#[derive(Debug, Clone, PartialEq)]
enum Want<T> {
    Ok(T),
    Err(EventError),
}

/// A field: its JSON value (`None` = key absent) and the expected outcome.
type Field<T> = (Option<Value>, Want<T>);

fn uuid_forms(u: Uuid) -> Vec<String> {
    vec![
        u.hyphenated().to_string(),
        u.simple().to_string(),
        u.braced().to_string(),
        u.urn().to_string(),
        u.hyphenated().to_string().to_uppercase(),
    ]
}

fn uuid_field() -> BoxedStrategy<Field<Uuid>> {
    prop_oneof![
        8 => (any::<u128>(), 0usize..5).prop_map(|(n, form)| {
            let u = Uuid::from_u128(n);
            (Some(Value::String(uuid_forms(u)[form].clone())), Want::Ok(u))
        }),
        1 => prop::sample::select(vec![None, Some(Value::Null), Some(json!(""))]).prop_map(|v| (v, Want::Err(EventError::MissingUuid))),
        1 => text()
            .prop_filter("not a uuid", |s| !s.is_empty() && Uuid::parse_str(s).is_err())
            .prop_map(|s| (Some(Value::String(s.clone())), Want::Err(EventError::InvalidUuid(s)))),
        1 => not_a_string().prop_map(|v| (Some(v.clone()), Want::Err(EventError::InvalidUuid(v.to_string())))),
    ]
    .boxed()
}

fn team_id_field() -> BoxedStrategy<Field<i64>> {
    let bad = Want::Err(EventError::InvalidTeamId);
    prop_oneof![
        6 => any::<i64>().prop_map(|n| (Some(json!(n)), Want::Ok(n))),
        2 => (any::<i64>(), prop::sample::select(vec!["", " ", "\t", " \n", "\u{a0}"]), any::<bool>()).prop_map(|(n, pad, plus)| {
            let sign = if plus && n >= 0 { "+" } else { "" };
            (Some(Value::String(format!("{pad}{sign}{n}{pad}"))), Want::Ok(n))
        }),
        2 => prop::sample::select(vec![
            None,
            Some(Value::Null),
            Some(json!(1.5)),
            Some(json!(42.0)),
            Some(json!(u64::MAX)),
            Some(json!(i64::MAX as u64 + 1)),
            Some(json!("")),
            Some(json!("x")),
            Some(json!("1.0")),
            Some(json!("1e3")),
            Some(json!("9223372036854775808")),
            Some(json!("0x10")),
            Some(json!(true)),
            Some(json!([42])),
            Some(json!({"id": 42})),
        ])
        .prop_map(move |v| (v, bad.clone())),
    ]
    .boxed()
}

fn distinct_id_field() -> BoxedStrategy<Field<String>> {
    prop_oneof![
        6 => text().prop_map(|s| (Some(Value::String(s.clone())), Want::Ok(s))),
        2 => json_number().prop_map(|n| {
            let s = n.to_string();
            (Some(n), Want::Ok(s))
        }),
        1 => prop::sample::select(vec![None, Some(Value::Null), Some(json!(true)), Some(json!([])), Some(json!({"id": "u"}))])
            .prop_map(|v| (v, Want::Err(EventError::MissingDistinctId))),
    ]
    .boxed()
}

/// Any instant the events table can hold (DateTime('UTC'): 1970..2106),
/// with nanoseconds; times outside it are `TimestampOutOfRange` (unit tests).
fn instant() -> BoxedStrategy<DateTime<Utc>> {
    (0i64..=4_294_967_295i64, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).unwrap())
        .boxed()
}

fn timestamp_field() -> BoxedStrategy<Field<Option<DateTime<Utc>>>> {
    prop_oneof![
        1 => prop::sample::select(vec![None, Some(Value::Null)]).prop_map(|v| (v, Want::Ok(None))),
        // RFC 3339 with any offset.
        4 => (instant(), -86_399i32..86_400).prop_map(|(t, off)| {
            let off = FixedOffset::east_opt(off / 60 * 60).unwrap();
            let s = t.with_timezone(&off).to_rfc3339();
            (Some(Value::String(s)), Want::Ok(Some(t)))
        }),
        // ClickHouse's `YYYY-MM-DD hh:mm:ss[.fff]`, read as UTC.
        2 => (instant(), any::<bool>()).prop_map(|(t, frac)| {
            let (s, want) = if frac {
                (t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(), DateTime::from_timestamp(t.timestamp(), t.timestamp_subsec_millis() * 1_000_000).unwrap())
            } else {
                (t.format("%Y-%m-%d %H:%M:%S").to_string(), DateTime::from_timestamp(t.timestamp(), 0).unwrap())
            };
            (Some(Value::String(s)), Want::Ok(Some(want)))
        }),
        2 => prop_oneof![
            prop::sample::select(vec!["", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-01", "10:00:00", "2026-11-01T25:00:00Z", "now"])
                .prop_map(String::from),
            "[a-z ]{1,12}",
        ]
        .prop_map(|s| (Some(Value::String(s.clone())), Want::Err(EventError::InvalidTimestamp(s)))),
        1 => not_a_string().prop_map(|v| (Some(v.clone()), Want::Err(EventError::InvalidTimestamp(v.to_string())))),
    ]
    .boxed()
}

fn person_id_field() -> BoxedStrategy<Field<Option<Uuid>>> {
    prop_oneof![
        3 => prop::sample::select(vec![None, Some(Value::Null), Some(json!(""))]).prop_map(|v| (v, Want::Ok(None))),
        3 => (any::<u128>(), 0usize..5).prop_map(|(n, form)| {
            let u = Uuid::from_u128(n);
            (Some(Value::String(uuid_forms(u)[form].clone())), Want::Ok(Some(u)))
        }),
        1 => text()
            .prop_filter("not a uuid", |s| !s.is_empty() && Uuid::parse_str(s).is_err())
            .prop_map(|s| (Some(Value::String(s.clone())), Want::Err(EventError::InvalidPersonId(s)))),
        1 => not_a_string().prop_map(|v| (Some(v.clone()), Want::Err(EventError::InvalidPersonId(v.to_string())))),
    ]
    .boxed()
}

/// `$ai_input` values: absent, null, any shape.
fn ai_input() -> BoxedStrategy<Option<Value>> {
    let message = (
        prop::sample::select(vec!["user", "assistant", "system", "tool"]),
        prop_oneof![text().prop_map(Value::String), any_json(text(), key())],
    )
        .prop_map(|(r, c)| json!({"role": r, "content": c}));
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => prop::collection::vec(message.clone(), 0..10).prop_map(|m| Some(Value::Array(m))),
        2 => text().prop_map(|t| Some(Value::String(t))),
        1 => prop::collection::vec(message, 0..5).prop_map(|m| Some(Value::String(Value::Array(m).to_string()))),
        2 => any_json(text(), key()).prop_map(Some),
        // Large (up to ~400 KB; the 10 MB case is a test of its own).
        1 => (1_000usize..100_000).prop_map(|n| Some(Value::String("é😀 x".repeat(n / 2)))),
    ]
    .boxed()
}

fn properties_map() -> BoxedStrategy<Map<String, Value>> {
    let ids = prop_oneof![
        2 => text().prop_map(Value::String),
        1 => Just(json!("")),
        1 => not_a_string(),
        1 => Just(Value::Null),
    ];
    (
        ai_input(),
        prop::option::of(ids.clone()),
        prop::option::of(ids.clone()),
        prop::option::of(ids.clone()),
        prop::option::of(ids),
        prop::collection::vec((key(), not_a_string()), 0..3),
    )
        .prop_map(|(input, gen_id, span_id, trace, session, extra)| {
            let mut m = Map::new();
            for (k, v) in extra {
                m.insert(k, v);
            }
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                } else {
                    m.remove(k);
                }
            };
            put("$ai_input", input);
            put("$ai_generation_id", gen_id);
            put("$ai_span_id", span_id);
            put("$ai_trace_id", trace);
            put("$ai_session_id", session);
            m
        })
        .boxed()
}

fn properties_field() -> BoxedStrategy<Field<Map<String, Value>>> {
    let bad = || Want::Err(EventError::InvalidProperties);
    prop_oneof![
        1 => prop::sample::select(vec![None, Some(Value::Null)]).prop_map(|v| (v, Want::Ok(Map::new()))),
        6 => properties_map().prop_map(|m| (Some(Value::Object(m.clone())), Want::Ok(m))),
        3 => (properties_map(), prop::sample::select(vec!["", " ", "\n\t"])).prop_map(|(m, pad)| {
            (Some(Value::String(format!("{pad}{}{pad}", Value::Object(m.clone())))), Want::Ok(m))
        }),
        // A lone surrogate escape (a JavaScript producer cut a string inside
        // an emoji) reads as U+FFFD, not as invalid JSON.
        1 => Just((
            Some(Value::String("{\"$ai_input\": \"\\ud800 cut\"}".to_string())),
            Want::Ok(Map::from_iter([("$ai_input".to_string(), Value::String("\u{FFFD} cut".to_string()))])),
        )),
        2 => prop_oneof![
            prop::sample::select(vec![
                "", "not json", "[1]", "1", "\"{}\"", "null", "{", "{\"a\":1}x", "\u{a0}{}",
            ])
            .prop_map(|s| Value::String(s.to_string())),
            Just(Value::String(format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)))),
            any_json(text(), key()).prop_filter("not an object", |v| !v.is_object() && !v.is_null() && !v.is_string()),
            any_json(text(), key()).prop_filter("not an object", |v| !v.is_object()).prop_map(|v| Value::String(v.to_string())),
        ]
        .prop_map(move |v| (Some(v), bad())),
    ]
    .boxed()
}

/// `event`: what it is read as (absent, null or not a string: a generation).
fn event_field() -> BoxedStrategy<(Option<Value>, String)> {
    prop_oneof![
        3 => Just((None, "$ai_generation".to_string())),
        6 => Just((Some(json!("$ai_generation")), "$ai_generation".to_string())),
        1 => Just((Some(Value::Null), "$ai_generation".to_string())),
        // Not a name: some other row, skipped as not_ai_generation.
        1 => not_a_string().prop_map(|v| {
            let shown = v.to_string();
            (Some(v), shown)
        }),
        2 => prop_oneof![
            prop::sample::select(vec!["$pageview", "$ai_generation ", "$AI_GENERATION", "", "$ai_sentiment", "$ai_span"])
                .prop_map(String::from),
            text(),
        ]
        .prop_map(|s| (Some(Value::String(s.clone())), s)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Generated {
    value: Value,
    uuid: Want<Uuid>,
    team_id: Want<i64>,
    distinct_id: Want<String>,
    timestamp: Want<Option<DateTime<Utc>>>,
    person_id: Want<Option<Uuid>>,
    properties: Want<Map<String, Value>>,
    event: String,
}

fn generated_event() -> BoxedStrategy<Generated> {
    (
        uuid_field(),
        team_id_field(),
        distinct_id_field(),
        timestamp_field(),
        person_id_field(),
        properties_field(),
        event_field(),
        prop::collection::vec((key(), not_a_string()), 0..2),
        any::<u64>(),
    )
        .prop_map(|(uuid, team_id, distinct_id, timestamp, person_id, properties, event, extra, order)| {
            let mut fields: Vec<(&str, Option<Value>)> = vec![
                ("uuid", uuid.0),
                ("team_id", team_id.0),
                ("distinct_id", distinct_id.0),
                ("timestamp", timestamp.0),
                ("person_id", person_id.0),
                ("properties", properties.0),
                ("event", event.0),
            ];
            // Key order must not matter.
            fields.rotate_left((order % 7) as usize);
            let mut m = Map::new();
            for (k, v) in extra {
                m.insert(k, v);
            }
            for (k, v) in fields {
                match v {
                    Some(v) => m.insert(k.to_string(), v),
                    None => m.remove(k),
                };
            }
            Generated {
                value: Value::Object(m),
                uuid: uuid.1,
                team_id: team_id.1,
                distinct_id: distinct_id.1,
                timestamp: timestamp.1,
                person_id: person_id.1,
                properties: properties.1,
                event: event.1,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------- checks

/// JSON equality where floats may differ in the last bits after a text
/// round trip (serde_json parses floats fast, not exactly, by default).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(p), Some(q), _, _) => p == q,
            (_, _, Some(p), Some(q)) => p == q,
            _ => {
                // serde_json's default float reading is not exact: a number
                // written and read again may move by an ulp, which for a
                // subnormal is more than any relative bound.
                let (p, q) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                let ulps = (p.to_bits() as i64).wrapping_sub(q.to_bits() as i64).unsigned_abs();
                p == q || (p - q).abs() <= p.abs().max(q.abs()) * 1e-15 || (p.signum() == q.signum() && ulps <= 2)
            }
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| k1 == k2 && json_eq(v1, v2))
        }
        _ => a == b,
    }
}

fn overall() -> OverallResult {
    let scores = Scores { negative: 0.7, neutral: 0.2, positive: 0.1 };
    let m = MessageResult { label: Label::Negative, score: 0.7, scores };
    OverallResult { label: Label::Negative, score: 0.7, scores, messages: vec![m, m] }
}

/// What must hold of any event `parse` accepted.
fn check_accepted(g: &GenerationEvent) -> Result<(), TestCaseError> {
    // $ai_input: a skip reason, or JSON text the plugin will parse back.
    prop_assert!(!g.properties.contains_key("$ai_input"), "$ai_input is held once, apart from the other properties");
    let input = match &g.ai_input {
        None => None,
        Some(a) => Some(serde_json::from_str::<Value>(&a.json()).map_err(|e| TestCaseError::fail(format!("$ai_input is not JSON: {e}")))?),
    };
    let input = input.as_ref();
    match g.ai_input_json() {
        Err(SkipReason::NotAiGeneration) => prop_assert_ne!(g.event.as_str(), "$ai_generation"),
        Err(SkipReason::NoAiInput) => {
            prop_assert_eq!(g.event.as_str(), "$ai_generation");
            prop_assert!(input.is_none() || input == Some(&Value::Null));
        }
        Err(SkipReason::NoUserMessages) => prop_assert!(false, "ai_input_json never decides no_user_messages"),
        Err(SkipReason::PluginTrapped) => prop_assert!(false, "ai_input_json never decides plugin_trapped"),
        Ok(text) => {
            prop_assert_eq!(g.event.as_str(), "$ai_generation");
            let back: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("ai_input_json is not JSON serde_json parses: {e}")))?;
            prop_assert!(json_eq(&back, input.unwrap()), "ai_input_json does not round-trip");
        }
    }
    // The sentiment event: same uuid every time, keyed to the generation.
    let su = g.sentiment_uuid();
    prop_assert_eq!(su, g.sentiment_uuid());
    prop_assert_eq!(su, llma_sentiment::sink::sentiment_uuid_for(g.uuid));
    prop_assert_eq!(su.get_version_num(), 5);
    prop_assert_ne!(su, g.uuid);
    let producer = Producer { model: "m".into(), plugin_version: "0.1.0".into() };
    let started = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
    let now = EventTime::new(started).unwrap();
    let s = SentimentEvent::build(g, &overall(), &[], &producer, now, started, &llma_sentiment::event::EventOptions::default());
    prop_assert_eq!(s.uuid, su);
    prop_assert_eq!(s.team_id, g.team_id);
    prop_assert_eq!(&s.distinct_id, &g.distinct_id);
    prop_assert_eq!(s.timestamp, g.timestamp.unwrap_or(now));
    let p = &serde_json::to_value(&s.properties).unwrap();
    prop_assert_eq!(&p["$ai_generation_event_uuid"], &json!(g.uuid.to_string()));
    let nonempty = |k: &str| g.properties.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let parent = nonempty("$ai_generation_id").or_else(|| nonempty("$ai_span_id")).unwrap_or_else(|| g.uuid.to_string());
    prop_assert_eq!(&p["$ai_parent_id"], &json!(parent));
    prop_assert_eq!(&p["$ai_trace_id"], g.properties.get("$ai_trace_id").unwrap_or(&Value::Null));
    let text = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(format!("sentiment event serialises: {e}")))?;
    let back: Value = serde_json::from_str(&text).unwrap();
    prop_assert_eq!(back["event"].as_str(), Some("$ai_sentiment"));
    let shown = format_timestamp(&s.timestamp.utc());
    prop_assert_eq!(back["timestamp"].as_str(), Some(shown.as_str()));
    prop_assert_eq!(back["person_id"].as_str().map(String::from), g.person_id.map(|u| u.to_string()));
    Ok(())
}

// ---------------------------------------------------------------- properties

#[test]
fn fuzz_generated_events_parse_to_their_fields_or_the_first_typed_error() {
    fuzz("GenerationEvent::parse(model)", generated_event(), |gen| {
        let got = GenerationEvent::parse(&gen.value);
        // The first bad field, in parse order, decides the error.
        let first_err = [
            match &gen.uuid { Want::Err(e) => Some(e.clone()), _ => None },
            match &gen.team_id { Want::Err(e) => Some(e.clone()), _ => None },
            match &gen.distinct_id { Want::Err(e) => Some(e.clone()), _ => None },
            match &gen.timestamp { Want::Err(e) => Some(e.clone()), _ => None },
            match &gen.person_id { Want::Err(e) => Some(e.clone()), _ => None },
            match &gen.properties { Want::Err(e) => Some(e.clone()), _ => None },
        ]
        .into_iter()
        .flatten()
        .next();
        match (got, first_err) {
            (Err(e), Some(want)) => {
                prop_assert_eq!(&e, &want);
                prop_assert!(!e.to_string().is_empty());
            }
            (Err(e), None) => prop_assert!(false, "valid event rejected: {e}"),
            (Ok(g), Some(want)) => prop_assert!(false, "invalid event accepted (wanted {want}): {g:?}"),
            (Ok(g), None) => {
                if let Want::Ok(u) = gen.uuid { prop_assert_eq!(g.uuid, u); }
                if let Want::Ok(t) = gen.team_id { prop_assert_eq!(g.team_id, t); }
                if let Want::Ok(d) = &gen.distinct_id { prop_assert_eq!(&g.distinct_id, d); }
                if let Want::Ok(t) = gen.timestamp { prop_assert_eq!(g.timestamp.map(EventTime::utc), t); }
                if let Want::Ok(p) = gen.person_id { prop_assert_eq!(g.person_id, p); }
                if let Want::Ok(p) = &gen.properties {
                    let mut rest = p.clone();
                    // A null `$ai_input` is read as none.
                    let want_input = rest.shift_remove("$ai_input").filter(|v| !v.is_null());
                    prop_assert!(json_eq(&Value::Object(g.properties.clone()), &Value::Object(rest)));
                    let got_input = g.ai_input.as_ref().map(|a| serde_json::from_str::<Value>(&a.json()).unwrap());
                    prop_assert_eq!(got_input.is_some(), want_input.is_some());
                    if let (Some(got), Some(want)) = (&got_input, &want_input) {
                        prop_assert!(json_eq(got, want), "$ai_input {got} instead of {want}");
                    }
                }
                prop_assert_eq!(&g.event, &gen.event);
                check_accepted(&g)?;
            }
        }
        Ok(())
    });
}

/// Event JSON text: generated events, broken, spliced, or random.
fn event_text() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => generated_event().prop_map(|g| g.value.to_string().into_bytes()),
        2 => (generated_event(), any::<prop::sample::Index>()).prop_map(|(g, at)| {
            let s = g.value.to_string().into_bytes();
            let cut = at.index(s.len() + 1);
            s[..cut].to_vec()
        }),
        2 => (generated_event(), any::<prop::sample::Index>(), prop::sample::select(PIECES)).prop_map(|(g, at, piece)| {
            let mut s = g.value.to_string().into_bytes();
            let i = at.index(s.len() + 1);
            s.splice(i..i, piece.bytes());
            s
        }),
        // Invalid UTF-8 bytes anywhere.
        1 => (generated_event(), any::<prop::sample::Index>(), prop::sample::select(vec![vec![0xffu8], vec![0xc3], vec![0xed, 0xa0, 0x80], vec![0xf4, 0x90, 0x80, 0x80]]))
            .prop_map(|(g, at, bad)| {
                let mut s = g.value.to_string().into_bytes();
                let i = at.index(s.len() + 1);
                s.splice(i..i, bad);
                s
            }),
        1 => any_json(text(), key()).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
    .boxed()
}

#[test]
fn fuzz_any_event_text_gives_an_event_or_a_typed_error() {
    fuzz("event text -> parse", event_text(), |bytes| {
        // What the worker does with a payload: parse JSON, then the event;
        // what `analyze` does with a line: read the event from the text. Any
        // outcome but a panic is a typed one, and both read the same event.
        let value = serde_json::from_slice::<Value>(&bytes);
        let parsed = value.as_ref().ok().map(GenerationEvent::parse);
        match &parsed {
            Some(Ok(g)) => check_accepted(g)?,
            Some(Err(e)) => prop_assert!(!e.to_string().is_empty()),
            None => {}
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let from_text = GenerationEvent::parse_text(text);
            if let Ok(g) = &from_text {
                check_accepted(g)?;
            }
            match parsed {
                Some(parsed) => prop_assert_eq!(from_text, parsed.map_err(Some)),
                // Text serde_json cannot read as a value (a lone surrogate
                // escape, nesting past its limit) may still hold the event's
                // fields, read raw: then a typed error or an event whose
                // `$ai_input` the plugin parses (`check_accepted`), never a panic.
                None => {
                    if let Err(Some(e)) = &from_text {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_arbitrary_values_give_an_event_or_a_typed_error() {
    let shaped = prop_oneof![
        2 => any_json(text(), key()),
        // Objects with the event's keys holding anything.
        3 => prop::collection::vec((key(), any_json(text(), key())), 0..10).prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ];
    fuzz("GenerationEvent::parse(any)", shaped, |value| {
        match GenerationEvent::parse(&value) {
            Ok(g) => check_accepted(&g)?,
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                if !value.is_object() {
                    prop_assert_eq!(e, EventError::NotAnObject);
                }
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------- edge cases

fn base_event() -> Value {
    json!({"uuid": "0190b6a5-0000-7000-8000-000000000001", "team_id": 2, "distinct_id": "u1",
           "timestamp": "2026-11-01T10:00:00Z", "properties": {}})
}

#[test]
fn deep_nesting_is_a_typed_error_and_accepted_depth_round_trips() {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            // 10_000 levels: the JSON parser stops at its limit (no overflow),
            // in a line and in properties sent as a string.
            let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
            let err = serde_json::from_str::<Value>(&format!(r#"{{"properties": {{"$ai_input": {deep}}}}}"#)).unwrap_err();
            assert!(err.to_string().contains("recursion limit"), "{err}");
            let mut v = base_event();
            v["properties"] = Value::String(format!(r#"{{"$ai_input": {deep}}}"#));
            assert_eq!(GenerationEvent::parse(&v), Err(EventError::InvalidProperties));

            // The deepest `$ai_input` a properties string may hold still gives
            // JSON the plugin's parser (serde_json, same limit) accepts.
            let mut deepest = None;
            for d in (1..200).rev() {
                let props = format!(r#"{{"$ai_input": {}"x"{}}}"#, "[".repeat(d), "]".repeat(d));
                let mut v = base_event();
                v["properties"] = Value::String(props);
                if let Ok(g) = GenerationEvent::parse(&v) {
                    deepest = Some((d, g));
                    break;
                }
            }
            let (d, g) = deepest.expect("some depth parses");
            let text = g.ai_input_json().unwrap();
            assert!(serde_json::from_str::<Value>(&text).is_ok(), "$ai_input of depth {d} does not parse back");
            println!("deepest $ai_input accepted in a properties string: {d} levels");
        })
        .unwrap()
        .join()
        .expect("no panic, no stack overflow");
}

#[test]
fn ten_megabyte_ai_input_parses_within_bounded_time() {
    let started = Instant::now();
    let mb10 = 10 * 1024 * 1024;
    let msg = "this is broken and I hate it. ".repeat(70);
    let n = mb10 / msg.len() + 1;
    let list: Vec<Value> = (0..n).map(|_| json!({"role": "user", "content": msg})).collect();
    let input = Value::Array(list);

    // Properties as an object.
    let mut v = base_event();
    v["properties"] = json!({"$ai_input": input});
    let line = v.to_string();
    assert!(line.len() >= mb10);
    let parsed: Value = serde_json::from_str(&line).unwrap();
    let g = GenerationEvent::parse(&parsed).unwrap();
    let text = g.ai_input_json().unwrap();
    assert!(text.len() >= mb10);

    // Properties as a JSON string (the input is decoded from it).
    let mut v = base_event();
    v["properties"] = Value::String(json!({"$ai_input": input}).to_string());
    let g = GenerationEvent::parse(&serde_json::from_str(&v.to_string()).unwrap()).unwrap();
    assert_eq!(g.ai_input_json().unwrap().len(), text.len());

    // One 10 MB string.
    let mut v = base_event();
    v["properties"] = json!({"$ai_input": "😀".repeat(mb10 / 4 + 1)});
    let g = GenerationEvent::parse(&v).unwrap();
    assert!(g.ai_input_json().unwrap().len() > mb10);

    let elapsed = started.elapsed();
    println!("10 MB $ai_input events: {:.2} s, max RSS {:.0} MB", elapsed.as_secs_f64(), max_rss_mb());
    // Generous on purpose (speed belongs in `make bench`): parsing is linear
    // and takes about a second here even in a debug build on a loaded
    // machine; the bound only catches work that grows faster than the input
    // (quadratic on 10 MB would take hours).
    assert!(elapsed < Duration::from_secs(120), "30 MB of $ai_input took {elapsed:?}");
}
