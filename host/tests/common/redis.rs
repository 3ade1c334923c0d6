//! Throwaway Redis servers (scripts/redis.sh) for the result cache tests.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn script(args: &[&std::ffi::OsStr]) -> std::process::Output {
    super::script("redis.sh", args)
}

/// `scripts/redis.sh install`, once per test binary.
pub fn install() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        script(&["install".as_ref()]);
    });
}

/// A Redis of its own for one test (loopback, free port, no persistence),
/// stopped on drop, also when the test panics.
pub struct RedisServer {
    dir: tempfile::TempDir,
    pub url: String,
    pub port: u16,
    /// The server process when `restart` started it (not the script).
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`RedisServer::start`] with extra environment for `redis.sh start`
    /// (e.g. `REDIS_EXTRA_ARGS`).
    pub fn start_with(env: &[(&str, &str)]) -> RedisServer {
        install();
        let dir = tempfile::Builder::new().prefix("llma-redis-").tempdir().expect("tempdir");
        let out = std::process::Command::new("bash")
            .arg(super::repo_root().join("scripts/redis.sh"))
            .arg("start")
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/redis.sh");
        assert!(out.status.success(), "redis.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in the output of redis.sh start: {stdout}"))
                .trim()
                .to_string()
        };
        let url = get("REDIS_URL=");
        let port = get("REDIS_PORT=").parse().expect("port");
        RedisServer { dir, url, port, child: None }
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("pid")).ok().map(|p| p.trim().to_string())
    }

    /// Stops the server; blocks until it is gone.
    pub fn stop(&mut self) {
        script(&["stop".as_ref(), self.dir.path().as_os_str()]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        assert!(self.pid().is_none(), "server is still running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let child = super::spawn_logged(&mut cmd, &self.dir.path().join("redis.log"));
        std::fs::write(self.dir.path().join("pid"), child.id().to_string()).unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(Instant::now() < deadline, "restarted Redis did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: connections are accepted by the kernel and never answered.
    pub fn freeze(&self) {
        let pid = self.pid().expect("running");
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    }

    pub fn thaw(&self) {
        let pid = self.pid().expect("running");
        assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    }

    pub fn ping(&self) -> bool {
        self.cli(&["ping"]).is_some_and(|o| o.trim() == "PONG")
    }

    /// `redis-cli` against this server; stdout when it succeeded.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every key (SCAN, so a large keyspace does not block the server).
    pub fn keys(&self) -> Vec<String> {
        self.cli(&["--scan"]).unwrap_or_default().lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A frozen server cannot act on SIGTERM.
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
        super::try_script("redis.sh", &["stop".as_ref(), self.dir.path().as_os_str()]);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
