//! A Temporal dev server and the worker binary, for end-to-end tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};


fn parse_env(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `temporal server start-dev` on free loopback ports, in-memory; stopped on drop.
pub struct TemporalServer {
    dir: tempfile::TempDir,
    pub address: String,
    pub bin: PathBuf,
}

impl TemporalServer {
    pub fn start() -> TemporalServer {
        let dir = tempfile::Builder::new().prefix("llma-temporal-").tempdir().unwrap();
        let out = super::script("temporal.sh", &["start".as_ref(), dir.path().as_os_str()]);
        let env = parse_env(&String::from_utf8_lossy(&out.stdout));
        TemporalServer {
            address: env.get("TEMPORAL_ADDRESS").expect("TEMPORAL_ADDRESS").clone(),
            bin: PathBuf::from(env.get("TEMPORAL_BIN").expect("TEMPORAL_BIN")),
            dir,
        }
    }

    /// The server's process id (its pid file).
    pub fn pid(&self) -> i32 {
        super::pid_file(&self.dir.path().join("pid"))
    }

    /// Runs the official `temporal` CLI against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--address", &self.address, "--namespace", "default"])
            .stdin(Stdio::null())
            .output()
            .expect("run temporal CLI");
        assert!(
            out.status.success(),
            "temporal {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: it keeps its
    /// in-memory state and answers nothing while frozen.
    pub fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("pid")).expect("temporal pid file");
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.trim()).status().expect("kill").success();
        assert!(ok, "kill -{signal} temporal");
    }

    /// The workflow's history as JSON events.
    pub fn history(&self, workflow_id: &str) -> Vec<serde_json::Value> {
        let out = self.cli(&["workflow", "show", "--workflow-id", workflow_id, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("history JSON");
        v["events"].as_array().cloned().unwrap_or_default()
    }

    pub fn describe(&self, workflow_id: &str) -> serde_json::Value {
        let out = self.cli(&["workflow", "describe", "--workflow-id", workflow_id, "--output", "json"]);
        serde_json::from_str(&out).expect("describe JSON")
    }
}

impl Drop for TemporalServer {
    fn drop(&mut self) {
        super::try_script("temporal.sh", &["stop".as_ref(), self.dir.path().as_os_str()]);
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_llma-sentiment"))
}

/// Runs the `llma-sentiment` binary to completion with `env`.
pub fn run_bin(args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).envs(env.iter().copied()).env("LLMA_SENTIMENT_CACHE_DIR", super::cache_dir());
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    cmd.output().expect("run llma-sentiment")
}

/// A `llma-sentiment` command whose stdout and stderr go to a log file of
/// its own; SIGKILLed on drop if still running.
pub struct LoggedProcess {
    child: Child,
    pub log: PathBuf,
    /// What the assertions call it (`worker`, `scheduler`).
    what: &'static str,
    _dir: tempfile::TempDir,
}

impl LoggedProcess {
    /// `llma-sentiment ARGS` with `env` added, started, not waited for.
    pub fn spawn(what: &'static str, args: &[&str], env: &[(&str, &str)]) -> LoggedProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{what}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        LoggedProcess { child, log, what, _dir: dir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails at once if the process exits first (it cannot say it later).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log_text();
                assert!(log.contains(needle), "{} exited ({status}) before its log said {needle:?}:\n{log}", self.what);
                return;
            }
            assert!(Instant::now() < deadline, "{} log never said {needle:?}:\n{}", self.what, self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The address its metrics endpoint bound (it was given port 0).
    pub fn metrics_addr(&self) -> String {
        super::ops::metrics_addr(&self.log_text())
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let status = self.wait_exit(timeout);
        status.unwrap_or_else(|| panic!("{} did not exit within {timeout:?}:\n{}", self.what, self.log_text()))
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `llma-sentiment worker` process, started and polling.
pub struct WorkerProcess(LoggedProcess);

impl WorkerProcess {
    pub fn start(env: &[(&str, &str)], extra_args: &[&str]) -> WorkerProcess {
        let cache = super::cache_dir();
        let mut env = env.to_vec();
        env.extend([("LLMA_SENTIMENT_CACHE_DIR", cache.to_str().unwrap()), ("LLMA_SENTIMENT_LOG", "info")]);
        let args: Vec<&str> = std::iter::once("worker").chain(extra_args.iter().copied()).collect();
        let mut w = LoggedProcess::spawn("worker", &args, &env);
        // A plugin build not in the compile cache compiles cold first, and a
        // plugin + model without a snapshot gets one made before the worker
        // polls (measured up to ~3 min each on 2 loaded cores; two workers
        // starting at once make theirs in parallel): generous on purpose.
        w.wait_for_log("worker polling", Duration::from_secs(900));
        WorkerProcess(w)
    }

    pub fn terminate(self, timeout: Duration) -> std::process::ExitStatus {
        self.0.terminate(timeout)
    }
}

impl std::ops::Deref for WorkerProcess {
    type Target = LoggedProcess;
    fn deref(&self) -> &LoggedProcess {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut LoggedProcess {
        &mut self.0
    }
}
