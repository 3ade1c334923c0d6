//! A Kafka-compatible broker (nisshi, `scripts/kafka.sh`), a producer, and
//! the `llma-sentiment schedule` process, for the scheduler's tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A throwaway broker on a free loopback port (installed first if it is
/// not: the install is cached outside the clone); stopped on drop.
pub struct KafkaBroker {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub brokers: String,
}

impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        super::script("kafka.sh", &["install".as_ref()]);
        let dir = tempfile::Builder::new().prefix("llma-kafka-").tempdir().unwrap();
        let out = super::script("kafka.sh", &["start".as_ref(), dir.path().as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let brokers = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BROKERS="))
            .unwrap_or_else(|| panic!("kafka.sh start printed no KAFKA_BROKERS: {stdout}"))
            .trim()
            .to_string();
        KafkaBroker { dir, brokers }
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
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer")
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
    super::stack::block(async {
        let mut sends = Vec::new();
        for r in records {
            let mut record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
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

/// A `llma-sentiment schedule` process; SIGKILLed on drop if still running.
pub struct SchedulerProcess {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SchedulerProcess {
    pub fn start(env: &[(&str, &str)]) -> SchedulerProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("schedule.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(super::services::bin())
            .arg("schedule")
            .envs(env.iter().copied())
            .env("LLMA_SENTIMENT_LOG", "info")
            .env("LLMA_SENTIMENT_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn scheduler");
        let mut s = SchedulerProcess { child, log, _dir: dir };
        s.wait_for_log("scheduler consuming", Duration::from_secs(120));
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("scheduler exited ({status}) before its log said {needle:?}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "scheduler log never said {needle:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The address its metrics endpoint bound (it was given port 0).
    pub fn metrics_addr(&self) -> String {
        super::ops::metrics_addr(&self.log_text())
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit status, within `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "scheduler did not exit within {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
