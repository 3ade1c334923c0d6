//! ClickHouse sink against real servers: each test starts its own server
//! (scripts/clickhouse.sh) and stops it on drop, so tests run in parallel.
//! `make test` runs this file against both flavours (`LLMA_TEST_CLICKHOUSE`):
//! Debian's 18.16 and a modern 26.9.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use common::{ClickHouseServer, Flavor};
use llma_sentiment::engine::Label;
use llma_sentiment::event::{
    EventTime, GenerationEvent, MessageSentiment, Messages, SentimentTarget, Target, SentimentEvent, SentimentProperties, SentimentScores, SENTIMENT_EVENT,
};
use llma_sentiment::sink::{sentiment_uuid_for, ClickHouseSink, ErrorKind, SinkConfig, SinkError, StoredEvent};

fn config(server: &ClickHouseServer, database: &str) -> SinkConfig {
    SinkConfig { url: server.url.clone(), database: database.into(), table: "events".into(), ..Default::default() }
}

/// Small backoffs and timeouts: failures surface quickly.
fn fast(mut c: SinkConfig, attempts: u32) -> SinkConfig {
    c.attempts = attempts;
    c.initial_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(100);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(10);
    c
}

/// A sentiment event for generation `seed`/`i`, shaped like `SentimentEvent::build`
/// output, with awkward text in it.
fn sentiment_event(team_id: i64, seed: u64, i: u64) -> SentimentEvent {
    let generation = Uuid::from_u64_pair(seed, i);
    let mut raw = json!({"uuid": generation.to_string(), "team_id": team_id, "distinct_id": format!("user-{i} 'q' \"dq\" \\ é"),
                         "timestamp": format!("2026-11-01T10:{:02}:{:02}.123456Z", (i / 60) % 60, i % 60),
                         "properties": {"$ai_input": "hi", "$ai_trace_id": format!("trace-{i}")}});
    if i % 2 == 0 {
        raw["person_id"] = json!(Uuid::from_u64_pair(seed ^ 0xffff, i).to_string());
    }
    let g = GenerationEvent::parse(&raw).expect("generation parses");
    let properties = SentimentProperties {
        target: Target::Sentiment(SentimentTarget {
            trace_id: json!(format!("trace-{i}")),
            session_id: Value::Null,
            parent_id: g.uuid.to_string(),
            generation_uuid: g.uuid,
        }),
        label: [Label::Negative, Label::Neutral, Label::Positive][(i % 3) as usize],
        score: 0.5 + (i % 50) as f32 / 100.0,
        scores: SentimentScores { negative: 0.1, neutral: 0.2, positive: 0.7 },
        model: "tiny 🌍 \"model\"\n\ttab \\ back ' quote".into(),
        plugin_version: "0.1.0".into(),
        messages: Messages::List(vec![
            MessageSentiment { label: Label::Positive, score: 0.9, scores: None, text: None },
            MessageSentiment { label: Label::Neutral, score: 0.4, scores: None, text: None },
        ]),
        message_count: None,
        skipped_messages: None,
    };
    SentimentEvent {
        event: SENTIMENT_EVENT,
        uuid: g.sentiment_uuid(),
        distinct_id: g.distinct_id.clone(),
        team_id: g.team_id,
        timestamp: g.timestamp.unwrap(),
        person_id: g.person_id,
        properties,
    }
}

fn sentiment_events(team_id: i64, seed: u64, n: u64) -> Vec<SentimentEvent> {
    (0..n).map(|i| sentiment_event(team_id, seed, i)).collect()
}

fn seconds(t: &EventTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.utc().timestamp(), 0).unwrap()
}

fn assert_stored(stored: &StoredEvent, e: &SentimentEvent, created_window: (DateTime<Utc>, DateTime<Utc>)) {
    assert_eq!(stored.uuid, e.uuid);
    assert_eq!(stored.event, "$ai_sentiment");
    assert_eq!(stored.team_id, e.team_id);
    assert_eq!(stored.distinct_id, e.distinct_id);
    assert_eq!(stored.person_id, e.person_id);
    // The exact JSON text written, and the same value when parsed.
    let json_text = serde_json::to_string(&e.properties).unwrap();
    assert_eq!(stored.properties_json, json_text, "properties of {}", e.uuid);
    let reparsed: Map<String, Value> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(stored.properties, reparsed, "properties of {}", e.uuid);
    assert_eq!(stored.timestamp, seconds(&e.timestamp), "timestamp of {}", e.uuid);
    let (from, to) = created_window;
    assert!(
        stored.created_at >= from - chrono::Duration::seconds(1)
            && stored.created_at <= to + chrono::Duration::seconds(1),
        "created_at {} not within {from}..{to}",
        stored.created_at
    );
}

async fn connect(c: SinkConfig) -> ClickHouseSink {
    ClickHouseSink::connect(c).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_detects_the_server() {
    let server = ClickHouseServer::start();
    let sink = connect(config(&server, "llma_migrate")).await;
    let version = (sink.server_version().major, sink.server_version().minor);
    match server.flavor {
        // Debian's server: detected as old, validation off.
        Flavor::Debian => {
            assert_eq!(version, (18, 16), "{:?}", sink.server_version());
            assert!(!sink.validation());
        }
        Flavor::Modern => {
            assert!(version >= (26, 1), "{:?}", sink.server_version());
            assert!(sink.validation());
        }
    }
    sink.ping().await.expect("ping");
    // Creates the database, then no-ops; also concurrently.
    sink.migrate().await.expect("first migrate");
    sink.migrate().await.expect("second migrate");
    let other = connect(config(&server, "llma_migrate")).await;
    let (a, b) = tokio::join!(sink.migrate(), other.migrate());
    a.expect("concurrent migrate");
    b.expect("concurrent migrate");
    sink.check_schema().await.expect("schema");
    assert_eq!(sink.count_final(None).await.unwrap(), 0);
    // The engine and key that make retries idempotent.
    let ddl: String = sink
        .client()
        .clone()
        .with_validation(false)
        .query_raw("SELECT engine_full FROM system.tables WHERE database = 'llma_migrate' AND name = 'events'")
        .fetch_one()
        .await
        .unwrap();
    assert!(ddl.starts_with("ReplacingMergeTree(created_at)") && ddl.contains("ORDER BY (team_id, uuid)"), "{ddl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_override_on_old_server() {
    let server = ClickHouseServer::start_flavor(Flavor::Debian);
    let off = connect(SinkConfig { validation: Some(false), ..config(&server, "llma_override") }).await;
    assert!(!off.validation());
    off.migrate().await.unwrap();
    off.insert(&sentiment_events(1, 1, 3)).await.expect("insert without validation");
    // Forcing validation on a server that cannot do it: reads fail with a
    // final error, not retried; inserts are checked by the sink itself.
    let on = connect(SinkConfig { validation: Some(true), ..fast(config(&server, "llma_override"), 5) }).await;
    assert!(on.validation());
    on.insert(&sentiment_events(1, 2, 3)).await.expect("insert, checked by the sink");
    let started = Instant::now();
    let err = on.fetch_team(1, 10).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.kind(), Some(ErrorKind::BadRequest), "{err}");
    assert_eq!(err.attempt(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(off.count_final(None).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_and_read_back_every_column() {
    let server = ClickHouseServer::start();
    let sink = connect(config(&server, "llma_roundtrip")).await;
    sink.migrate().await.unwrap();
    let mut events = sentiment_events(7, 10, 25);
    events.extend(sentiment_events(8, 11, 5));
    let before = Utc::now();
    sink.insert(&events).await.expect("insert");
    let after = Utc::now();
    assert_eq!(sink.stats().rows_written, 30);

    let uuids: Vec<Uuid> = events.iter().map(|e| e.uuid).collect();
    let stored = sink.fetch_final(&uuids).await.unwrap();
    assert_eq!(stored.len(), events.len());
    for e in &events {
        let s = stored.iter().find(|s| s.uuid == e.uuid).unwrap_or_else(|| panic!("{} not stored", e.uuid));
        assert_stored(s, e, (before, after));
    }
    // Both person_id cases are covered.
    assert!(stored.iter().any(|s| s.person_id.is_none()) && stored.iter().any(|s| s.person_id.is_some()));
    assert_eq!(sink.count_final(Some(7)).await.unwrap(), 25);
    assert_eq!(sink.count_final(Some(8)).await.unwrap(), 5);
    assert_eq!(sink.count_final(Some(9)).await.unwrap(), 0);
    assert_eq!(sink.count_final(None).await.unwrap(), 30);

    // Lookup by generation uuid (the sentiment uuid is its UUIDv5).
    let generation = Uuid::from_u64_pair(10, 3);
    let found = sink.fetch_by_generation(generation).await.unwrap().expect("found by generation");
    assert_eq!(found.uuid, sentiment_uuid_for(generation));
    assert_eq!(found.properties["$ai_generation_event_uuid"], json!(generation.to_string()));
    assert!(sink.fetch_by_generation(Uuid::from_u64_pair(99, 99)).await.unwrap().is_none());
    let team = sink.fetch_team(8, 3).await.unwrap();
    assert_eq!(team.len(), 3);
    assert!(team.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));

    // Empty input is a no-op.
    sink.insert(&[]).await.unwrap();
    assert_eq!(sink.count_final(None).await.unwrap(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_inserts_leave_one_row_per_uuid() {
    let server = ClickHouseServer::start();
    // Small chunks: a batch is several INSERTs.
    let sink = connect(SinkConfig { max_buffer_rows: 7, ..config(&server, "llma_dedup") }).await;
    sink.migrate().await.unwrap();
    let events = sentiment_events(3, 20, 50);
    sink.insert(&events).await.unwrap();
    assert_eq!(sink.stats().chunks_written, 8);
    // The same INSERTs again (an ack lost, a retried activity): a modern
    // server recognises their deduplication tokens and stores nothing;
    // 18.16 stores them and the engine collapses them later.
    sink.insert(&events).await.unwrap();
    let raw = sink.count_raw(None).await.unwrap();
    match server.flavor {
        Flavor::Modern => assert_eq!(raw, 50, "a repeated INSERT added raw rows"),
        // Until a background merge (which may come at once) collapses them.
        Flavor::Debian => assert!((50..=100).contains(&raw), "raw rows {raw}"),
    }
    // Split differently: other INSERTs, other tokens; collapsed by the engine.
    sink.insert(&events[10..30]).await.unwrap();
    assert_eq!(sink.count_final(None).await.unwrap(), 50);
    assert_eq!(sink.count_final(Some(3)).await.unwrap(), 50);
    let raw_after = sink.count_raw(None).await.unwrap();
    assert!(raw_after <= raw + 20, "raw rows {raw_after}");
    let stored = sink.fetch_final(&events.iter().map(|e| e.uuid).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(stored.len(), 50);
    // Merging removes the duplicates physically too.
    sink.client().query_raw("OPTIMIZE TABLE llma_dedup.events FINAL").execute().await.unwrap();
    assert_eq!(sink.count_raw(None).await.unwrap(), 50);
}

/// PostHog's events table on a modern server: microsecond `DateTime64`
/// times and a non-nullable `person_id`, plus columns the sink never writes.
const POSTHOG_TABLE: &str = "CREATE TABLE llma_posthog.events (uuid UUID, event String, \
     properties String CODEC(ZSTD(3)), timestamp DateTime64(6, 'UTC'), team_id Int64, distinct_id String, \
     elements_chain String, created_at DateTime64(6, 'UTC'), person_id UUID, \
     person_properties String DEFAULT '') ENGINE = ReplacingMergeTree(created_at) ORDER BY (team_id, uuid)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posthog_shaped_table_on_a_modern_server_is_written_and_read() {
    let server = ClickHouseServer::start_flavor(Flavor::Modern);
    let sink = connect(config(&server, "llma_posthog")).await;
    let client = sink.client().clone().with_validation(false);
    client.query_raw("CREATE DATABASE llma_posthog").execute().await.unwrap();
    client.query_raw(POSTHOG_TABLE).execute().await.unwrap();
    sink.migrate().await.expect("a compatible table passes the check");

    let mut events = sentiment_events(4, 70, 6);
    let person = Uuid::from_u64_pair(7, 7);
    events[1].person_id = Some(person);
    events[2].person_id = None;
    sink.insert(&events).await.expect("insert into DateTime64 columns");
    let stored = sink.fetch_final(&events.iter().map(|e| e.uuid).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(stored.len(), 6);
    for s in &stored {
        let e = events.iter().find(|e| e.uuid == s.uuid).unwrap();
        assert_eq!(s.person_id, e.person_id, "{}", s.uuid);
        assert_eq!(s.timestamp, e.timestamp.whole_seconds());
        assert_eq!(s.properties_json, serde_json::to_string(&e.properties).unwrap());
    }
    // The column keeps the microseconds the event had.
    let text: String = client
        .query_raw(&format!("SELECT toString(timestamp) FROM llma_posthog.events WHERE uuid = toUUID('{}')", events[1].uuid))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(text, events[1].timestamp.utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    // No person: the nil uuid in the column, None when read.
    let nil: u64 = client
        .query_raw(&format!("SELECT count() FROM llma_posthog.events WHERE person_id = toUUID('{}')", Uuid::nil()))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(nil, events.iter().filter(|e| e.person_id.is_none()).count() as u64);

    // A column no row can be written to is named, the rest not.
    let other = connect(config(&server, "llma_posthog_bad")).await;
    client.query_raw("CREATE DATABASE llma_posthog_bad").execute().await.unwrap();
    client
        .query_raw(&POSTHOG_TABLE.replace("llma_posthog.", "llma_posthog_bad.").replace("timestamp DateTime64(6", "timestamp DateTime64(4"))
        .execute()
        .await
        .unwrap();
    let err = other.migrate().await.unwrap_err();
    assert_eq!((err.kind(), err.is_retryable()), (Some(ErrorKind::Schema), false), "{err}");
    let message = err.to_string();
    assert!(message.contains("column timestamp is DateTime64(4, 'UTC') instead of DateTime or DateTime64"), "{message}");
    assert!(!message.contains("created_at") && !message.contains("person_id"), "{message}");
    let err = other.insert(&sentiment_events(4, 71, 1)).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Schema), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_gives_retryable_error_in_bounded_time() {
    let mut server = ClickHouseServer::start();
    let c = fast(config(&server, "llma_down"), 3);
    let sink = connect(c.clone()).await;
    sink.migrate().await.unwrap();
    sink.insert(&sentiment_events(1, 30, 2)).await.unwrap();
    server.stop();

    let started = Instant::now();
    let err = sink.insert(&sentiment_events(1, 31, 5)).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), Some(ErrorKind::Unavailable), "{err}");
    assert_eq!(err.attempt(), Some(3), "{err}");
    assert!(err.to_string().contains("attempt 3 of 3"), "{err}");
    assert!(elapsed <= c.max_request_duration(), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // Two backoffs of at least 25 ms (half of 50 ms) each were waited.
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert_eq!(sink.stats().failed_attempts, 3);
    assert_eq!(sink.stats().retries, 2);

    let err = sink.ping().await.unwrap_err();
    assert!(err.is_retryable() && err.attempt() == Some(1), "{err}");
    let err = ClickHouseSink::connect(c).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_times_out() {
    // Accepts connections (kernel backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let c = SinkConfig {
        url,
        attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let started = Instant::now();
    let err = ClickHouseSink::connect(c.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), Some(ErrorKind::Timeout), "{err}");
    assert_eq!(err.attempt(), Some(2), "{err}");
    assert!(started.elapsed() <= c.max_request_duration() + Duration::from_secs(1), "{:?}", started.elapsed());
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_survives_server_restart() {
    let mut server = ClickHouseServer::start();
    // Budget: 200 attempts, >= 125 ms apart after the first few: > 25 s of
    // retrying, far more than a restart takes (about 1 s).
    let c = SinkConfig {
        attempts: 200,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(250),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..config(&server, "llma_restart")
    };
    let sink = connect(c).await;
    sink.migrate().await.unwrap();
    let first = sentiment_events(5, 40, 10);
    sink.insert(&first).await.unwrap();
    tokio::task::block_in_place(|| server.stop());

    let events = sentiment_events(5, 41, 300);
    let before = Utc::now();
    let task = {
        let sink = sink.clone();
        let events = events.clone();
        tokio::spawn(async move { sink.insert(&events).await })
    };
    // Wait until the insert has failed against the stopped server at least twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.stats().failed_attempts < 2 {
        assert!(!task.is_finished(), "insert finished while the server was down");
        assert!(Instant::now() < deadline, "insert did not retry: {:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| server.restart());
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("insert finishes after the restart")
        .unwrap()
        .expect("insert succeeds after the restart");

    let stats = sink.stats();
    assert!(stats.failed_attempts >= 2 && stats.retries >= 2, "{stats:?}");
    // No loss, no duplicate (the failed attempts never reached the server).
    assert_eq!(sink.count_final(Some(5)).await.unwrap(), 310);
    assert_eq!(sink.count_raw(Some(5)).await.unwrap(), 310);
    let stored = sink.fetch_final(&events.iter().map(|e| e.uuid).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(stored.len(), 300);
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| (e.team_id, e.uuid));
    for (s, e) in stored.iter().zip(&sorted) {
        assert_stored(s, e, (before, Utc::now()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_errors_are_not_retried() {
    let mut server = ClickHouseServer::start();
    let c = fast(config(&server, "llma_final"), 5);

    // Missing table: no migrate.
    let sink = connect(c.clone()).await;
    let started = Instant::now();
    let err = sink.insert(&sentiment_events(1, 50, 2)).await.unwrap_err();
    assert_eq!((err.kind(), err.attempt(), err.is_retryable()), (Some(ErrorKind::Schema), Some(1), false), "{err}");
    assert!(matches!(err.code(), Some(60) | Some(81)), "{err}");
    assert!(err.message().unwrap().contains("llma_final"), "{err}");
    assert!(sink.check_schema().await.is_err());

    // A table whose columns do not fit the rows (created_at is UInt64, 8
    // bytes, where a DateTime is 4): refused by the check, and by an insert
    // before it sends a row.
    sink.client().query_raw("CREATE DATABASE llma_final").execute().await.unwrap();
    sink.client()
        .query_raw(
            "CREATE TABLE llma_final.events (uuid UUID, event String, properties String, timestamp DateTime('UTC'), \
             team_id Int64, distinct_id String, person_id Nullable(UUID), created_at UInt64) ENGINE = MergeTree ORDER BY uuid",
        )
        .execute()
        .await
        .unwrap();
    let err = sink.migrate().await.unwrap_err();
    assert_eq!((err.kind(), err.is_retryable()), (Some(ErrorKind::Schema), false), "{err}");
    assert!(err.to_string().contains("column created_at is UInt64"), "{err}");
    // The column types are checked before a row is sent.
    let err = sink.insert(&sentiment_events(1, 51, 1)).await.unwrap_err();
    assert_eq!((err.kind(), err.attempt(), err.is_retryable()), (Some(ErrorKind::Schema), Some(1), false), "{err}");
    assert!(err.to_string().contains("column created_at is UInt64"), "{err}");
    assert_eq!(sink.count_raw(None).await.unwrap(), 0);

    // An event the table cannot hold cannot be built: its time is an
    // `EventTime`, checked against the range of `DateTime` where it is made.
    let before_1970 = DateTime::parse_from_rfc3339("1900-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    assert_eq!(EventTime::new(before_1970), None);
    assert!(started.elapsed() < Duration::from_secs(20));

    // Bad credentials.
    let err = ClickHouseSink::connect(SinkConfig { password: Some("not-the-password".into()), ..c.clone() })
        .await
        .unwrap_err();
    assert_eq!((err.kind(), err.attempt(), err.is_retryable()), (Some(ErrorKind::Auth), Some(1), false), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    let err = ClickHouseSink::connect(SinkConfig { user: "nobody".into(), ..c.clone() }).await.unwrap_err();
    assert_eq!((err.kind(), err.is_retryable()), (Some(ErrorKind::Auth), false), "{err}");

    // Invalid configuration never reaches the server.
    let err = ClickHouseSink::connect(SinkConfig { table: "events; DROP TABLE x".into(), ..c }).await.unwrap_err();
    assert!(matches!(err, SinkError::Config(_)), "{err}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_config_are_used() {
    let mut server = ClickHouseServer::start();
    // Add a user with a password, then restart on the same ports and data.
    server.stop();
    let users = server.dir().join("users.xml");
    let xml = std::fs::read_to_string(&users).unwrap();
    let writer = "<writer><password>s3cr3t-pw</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
                  <profile>default</profile><quota>default</quota></writer>";
    std::fs::write(&users, xml.replacen("<users>", &format!("<users>{writer}"), 1)).unwrap();
    server.restart();

    let c = SinkConfig { user: "writer".into(), password: Some("s3cr3t-pw".into()), ..config(&server, "llma_creds") };
    let sink = connect(c.clone()).await;
    assert!(!format!("{sink:?}").contains("s3cr3t-pw"));
    sink.migrate().await.unwrap();
    sink.insert(&sentiment_events(2, 60, 4)).await.unwrap();
    assert_eq!(sink.count_final(Some(2)).await.unwrap(), 4);
    let err = ClickHouseSink::connect(SinkConfig { password: None, ..c.clone() }).await.unwrap_err();
    assert_eq!((err.kind(), err.is_retryable()), (Some(ErrorKind::Auth), false), "{err}");
    let err = ClickHouseSink::connect(SinkConfig { password: Some("wrong".into()), ..c }).await.unwrap_err();
    assert_eq!((err.kind(), err.is_retryable()), (Some(ErrorKind::Auth), false), "{err}");
}

/// Manual measurement, not a check: `cargo test --test sink -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_insert_latency_and_throughput() {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client as HyperClient;
    use hyper_util::rt::TokioExecutor;

    #[derive(clickhouse::Row, serde::Serialize)]
    struct Row {
        #[serde(with = "clickhouse::serde::uuid")]
        uuid: Uuid,
        event: String,
        properties: String,
        #[serde(with = "clickhouse::serde::chrono::datetime")]
        timestamp: DateTime<Utc>,
        team_id: i64,
        distinct_id: String,
        #[serde(with = "clickhouse::serde::uuid::option")]
        person_id: Option<Uuid>,
        #[serde(with = "clickhouse::serde::chrono::datetime")]
        created_at: DateTime<Utc>,
    }
    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
    async fn single_row(client: &clickhouse::Client, seed: u64, i: u64) -> Duration {
        let e = sentiment_event(1, seed, i);
        let started = Instant::now();
        let mut insert = client.insert::<Row>("events").await.unwrap();
        insert
            .write(&Row {
                uuid: e.uuid,
                event: e.event.into(),
                properties: serde_json::to_string(&e.properties).unwrap(),
                timestamp: seconds(&e.timestamp),
                team_id: e.team_id,
                distinct_id: e.distinct_id,
                person_id: e.person_id,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        insert.end().await.unwrap();
        started.elapsed()
    }
    async fn select_one(client: &clickhouse::Client) -> Duration {
        let started = Instant::now();
        client.query("SELECT 1").fetch_one::<u8>().await.unwrap();
        started.elapsed()
    }

    let server = ClickHouseServer::start();
    let sink = connect(config(&server, "default")).await;
    sink.migrate().await.unwrap();
    let n = 50;
    let default_client = clickhouse::Client::default().with_url(&server.url).with_validation(false);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let nodelay_client =
        clickhouse::Client::with_http_client(HyperClient::builder(TokioExecutor::new()).build(connector))
            .with_url(&server.url)
            .with_validation(false);
    // Blocks of `n` inserts per client (interleaving the clients blurs the
    // difference), two rounds; medians. Server-side part writing dominates
    // when the machine is busy.
    for round in 0..2 {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(single_row(&default_client, 10 + round, i).await);
        }
        let default = median(v);
        let mut v = Vec::new();
        for i in 0..n {
            v.push(single_row(&nodelay_client, 20 + round, i).await);
        }
        let nodelay = median(v);
        let mut v = Vec::new();
        for i in 0..n {
            let started = Instant::now();
            sink.insert(&[sentiment_event(1, 30 + round, i)]).await.unwrap();
            v.push(started.elapsed());
        }
        let sink_single = median(v);
        println!(
            "single-row insert, median of {n}: crate default connector {default:?}, nodelay connector {nodelay:?}, ClickHouseSink {sink_single:?}"
        );
    }
    let (mut sel_default, mut sel_nodelay) = (Vec::new(), Vec::new());
    for _ in 0..n {
        sel_default.push(select_one(&default_client).await);
        sel_nodelay.push(select_one(&nodelay_client).await);
    }
    println!(
        "SELECT 1, median of {n}: crate default connector {:?}, nodelay connector {:?}",
        median(sel_default),
        median(sel_nodelay)
    );

    for round in 0..3 {
        let events = sentiment_events(2, 100 + round, 10_000);
        let bytes: usize = events.iter().map(|e| serde_json::to_string(&e.properties).unwrap().len()).sum();
        let started = Instant::now();
        sink.insert(&events).await.unwrap();
        let t = started.elapsed();
        println!("10k batch: {t:?} = {:.0} rows/s ({} KiB of properties)", 10_000.0 / t.as_secs_f64(), bytes / 1024);
    }
    assert_eq!(sink.count_final(Some(2)).await.unwrap(), 30_000);
}
