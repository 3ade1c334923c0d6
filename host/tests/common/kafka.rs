//! A Kafka-compatible broker (nisshi, `scripts/kafka.sh`), a producer, and
//! the `llma-sentiment schedule` process, for the scheduler's tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, HashSet};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ops::Scrape;
use super::services::LoggedProcess;
use super::stack::{block, Stack};

/// A throwaway broker on a free loopback port (installed first if it is
/// not: the install is cached outside the clone); stopped on drop.
pub struct KafkaBroker {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub brokers: String,
}

/// What a TLS or login-only broker is started with.
pub struct Secured<'a> {
    /// Server certificate chain and PKCS#8 key (PEM): the listener speaks TLS only.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// SCRAM users (name, password): a SASL login is required.
    pub users: &'a [(&'a str, &'a str)],
    /// Topics made before it starts (name, partitions).
    pub topics: &'a [(&'a str, u32)],
}

impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        Self::start_with(&[])
    }

    /// A broker that speaks TLS and/or requires a SCRAM login.
    pub fn start_secured(secured: &Secured<'_>) -> KafkaBroker {
        let join = |items: Vec<String>| std::ffi::OsString::from(items.join(" "));
        let users = join(secured.users.iter().map(|(u, p)| format!("{u}:{p}")).collect());
        let topics = join(secured.topics.iter().map(|(t, n)| format!("{t}:{n}")).collect());
        let mut env: Vec<(&str, &OsStr)> = vec![("KAFKA_SCRAM_USERS", &users), ("KAFKA_TOPICS", &topics)];
        if let Some((cert, key)) = secured.tls {
            env.extend([("KAFKA_TLS_CERT", cert.as_os_str()), ("KAFKA_TLS_KEY", key.as_os_str())]);
        }
        Self::start_with(&env)
    }

    fn start_with(env: &[(&str, &OsStr)]) -> KafkaBroker {
        super::script("kafka.sh", &["install".as_ref()]);
        let dir = tempfile::Builder::new().prefix("llma-kafka-").tempdir().unwrap();
        let out = super::try_script_env("kafka.sh", &["start".as_ref(), dir.path().as_os_str()], env);
        assert!(out.status.success(), "kafka.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let brokers = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BROKERS="))
            .unwrap_or_else(|| panic!("kafka.sh start printed no KAFKA_BROKERS: {stdout}"))
            .trim()
            .to_string();
        KafkaBroker { dir, brokers }
    }

    /// The broker's process id.
    pub fn pid(&self) -> i32 {
        super::pid_file(&self.dir.path().join("pid"))
    }

    fn nisshi() -> PathBuf {
        let tools = std::env::var_os("LLMA_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/cache/llma-sentiment/tools".into());
        tools.join("bin/nisshi")
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(Self::nisshi())
            .args(["topic", "create", "--broker", &format!("tcp://{}", self.brokers), "--partitions", &partitions.to_string(), topic])
            .stdin(Stdio::null())
            .output()
            .expect("run nisshi topic create");
        assert!(out.status.success(), "nisshi topic create {topic}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    }

    pub fn producer(&self) -> FutureProducer {
        self.producer_with(&[])
    }

    /// A producer with librdkafka `settings` added (TLS, SASL).
    pub fn producer_with(&self, settings: &[(&str, &str)]) -> FutureProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("message.timeout.ms", "30000");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        config.create().expect("producer")
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        super::try_script("kafka.sh", &["stop".as_ref(), self.dir.path().as_os_str()]);
    }
}

/// One message: its key, payload and `productTrack` header (if any).
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
    pub product_track: Option<&'static str>,
}

/// Produces `records` to `topic` and waits for every acknowledgement.
pub fn produce(producer: &FutureProducer, topic: &str, records: &[Record]) {
    produce_spread(producer, topic, records, None)
}

/// [`produce`], record `i` to partition `i % partitions` when given (so
/// that every partition gets some, whatever the keys hash to), else where
/// its key hashes.
pub fn produce_spread(producer: &FutureProducer, topic: &str, records: &[Record], partitions: Option<i32>) {
    super::stack::block(async {
        let mut sends = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
            if let Some(partitions) = partitions {
                record = record.partition(i as i32 % partitions);
            }
            if let Some(track) = r.product_track {
                record = record.headers(OwnedHeaders::new().insert(Header { key: "productTrack", value: Some(track) }));
            }
            sends.push(producer.send(record, Duration::from_secs(30)));
        }
        for sent in futures::future::join_all(sends).await {
            if let Err((e, _)) = sent {
                panic!("produce: {e}");
            }
        }
    });
}

/// A `llma-sentiment schedule` process (JSON logs at info); SIGKILLed on
/// drop if still running.
pub struct SchedulerProcess(LoggedProcess);

impl SchedulerProcess {
    /// Started and consuming.
    pub fn start(env: &[(&str, &str)]) -> SchedulerProcess {
        let mut s = Self::spawn(env);
        s.wait_for_log("scheduler consuming", Duration::from_secs(120));
        s
    }

    /// Started, not waited for (one that must fail).
    pub fn spawn(env: &[(&str, &str)]) -> SchedulerProcess {
        let mut env = env.to_vec();
        env.extend([("LLMA_SENTIMENT_LOG", "info"), ("LLMA_SENTIMENT_LOG_FORMAT", "json")]);
        SchedulerProcess(LoggedProcess::spawn("scheduler", &["schedule"], &env))
    }

    pub fn terminate(self, timeout: Duration) -> std::process::ExitStatus {
        self.0.terminate(timeout)
    }

    pub fn kill(self) {
        self.0.kill()
    }
}

impl std::ops::Deref for SchedulerProcess {
    type Target = LoggedProcess;
    fn deref(&self) -> &LoggedProcess {
        &self.0
    }
}

impl std::ops::DerefMut for SchedulerProcess {
    fn deref_mut(&mut self) -> &mut LoggedProcess {
        &mut self.0
    }
}

// ---------------------------------------------------------------- events, rows, runs

pub const TEAM: i64 = 42;

/// A row of PostHog's events JSON topic: `properties` a JSON string,
/// ClickHouse-format timestamps, person columns.
pub fn posthog_row(uuid: &str, event: &str, team: i64, text: &str) -> Vec<u8> {
    let properties = json!({
        "$ai_trace_id": format!("trace-{}", &uuid[..8]),
        "$ai_input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    });
    json!({
        "uuid": uuid, "event": event, "team_id": team, "project_id": team, "distinct_id": "user-1",
        "timestamp": "2026-11-01 10:00:00.123000", "created_at": "2026-11-01 10:00:01.000000",
        "person_id": "0195a3b2-7c1e-7a10-8f00-0000000000aa", "elements_chain": "",
        "properties": properties.to_string(), "person_mode": "full",
    })
    .to_string()
    .into_bytes()
}

pub const TEXTS: [&str; 4] = ["I love this, thank you!", "this is terrible and broken", "what time is it", "great work, really helpful"];

/// `n` usable generations of team 42: (uuid, record); every other one
/// without the `productTrack` header (kept when absent).
pub fn usable(n: usize) -> Vec<(String, Record)> {
    usable_with(n, |i| TEXTS[i % TEXTS.len()].to_string())
}

/// [`usable`] with every text new (numbered): no result cache hit, each
/// message classified (PostHog's last-message mode, where texts rarely repeat).
pub fn usable_unique(n: usize) -> Vec<(String, Record)> {
    let run = Uuid::new_v4().simple().to_string();
    usable_with(n, |i| format!("{} (ticket {}-{i})", TEXTS[i % TEXTS.len()], &run[..8]))
}

fn usable_with(n: usize, text: impl Fn(usize) -> String) -> Vec<(String, Record)> {
    (0..n)
        .map(|i| {
            let uuid = Uuid::new_v4().to_string();
            let record = Record {
                key: uuid.clone(),
                payload: posthog_row(&uuid, "$ai_generation", TEAM, &text(i)),
                product_track: (i % 2 == 0).then_some("llma"),
            };
            (uuid, record)
        })
        .collect()
}

/// Per generation uuid of team 42: (raw rows, distinct sentiment uuids).
pub fn rows(stack: &Stack) -> BTreeMap<String, (u64, HashSet<String>)> {
    let sink = stack.sink();
    let sql = format!(
        "SELECT visitParamExtractString(properties, '$ai_generation_event_uuid'), toString(uuid) FROM {} \
         WHERE team_id = {TEAM} AND event = '$ai_sentiment'",
        sink.table()
    );
    let raw: Vec<(String, String)> = block(sink.client().query(&sql).fetch_all()).expect("raw rows");
    let mut out: BTreeMap<String, (u64, HashSet<String>)> = BTreeMap::new();
    for (generation, uuid) in raw {
        let e = out.entry(generation).or_default();
        e.0 += 1;
        e.1.insert(uuid);
    }
    out
}

pub fn wait_for_rows(stack: &Stack, uuids: &[String], timeout: Duration) -> BTreeMap<String, (u64, HashSet<String>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = rows(stack);
        if uuids.iter().all(|u| got.contains_key(u)) {
            return got;
        }
        let missing = uuids.iter().filter(|u| !got.contains_key(*u)).count();
        assert!(Instant::now() < deadline, "{missing} of {} generations have no row after {timeout:?}", uuids.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every workflow execution Temporal knows (this server is the test's own):
/// workflow id -> runs.
pub fn executions(stack: &Stack) -> BTreeMap<String, usize> {
    let out = stack.temporal.cli(&["workflow", "list", "--output", "json"]);
    let values: Vec<Value> = match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(list)) => list,
        _ => out.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("workflow list line")).collect(),
    };
    let mut runs = BTreeMap::new();
    for v in values {
        let id = v["execution"]["workflowId"].as_str().unwrap_or_else(|| panic!("no workflow id in {v}")).to_string();
        *runs.entry(id).or_insert(0) += 1;
    }
    runs
}

pub fn scheduler_env<'a>(stack: &'a Stack, broker: &'a KafkaBroker, topic: &'a str, group: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = stack.env();
    env.extend_from_slice(&[
        ("LLMA_SENTIMENT_SCHEDULE_BROKERS", broker.brokers.as_str()),
        ("LLMA_SENTIMENT_SCHEDULE_TOPIC", topic),
        ("LLMA_SENTIMENT_SCHEDULE_GROUP", group),
        ("LLMA_SENTIMENT_SCHEDULE_TEAMS", "42"),
        ("LLMA_SENTIMENT_SCHEDULE_METRICS_ADDR", "127.0.0.1:0"),
        // A killed scheduler's partitions move after 6 s, not librdkafka's 45.
        ("LLMA_SENTIMENT_SCHEDULE_SESSION_TIMEOUT_MS", "6000"),
    ]);
    env.extend_from_slice(extra);
    env
}

pub fn wait_metric(addr: &str, name: &str, labels: &[(&str, &str)], at_least: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Scrape::take(addr).value(name, labels) < at_least {
        assert!(Instant::now() < deadline, "{name}{labels:?} stayed below {at_least} for {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
