//! Paths the Makefile hands to the tests. A missing one is a setup error,
//! not a reason to skip: run the tests through `make test`.
#![allow(dead_code)]

pub mod kafka;
pub mod ops;
pub mod pki;
pub mod redis;
pub mod services;
pub mod stack;
pub mod view;

use std::path::PathBuf;
use std::sync::Arc;

use llma_sentiment::engine::{EngineOptions, Limits, Plugin, PluginEngine, SnapshotPolicy};

fn env_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set: run the tests with `make test`"));
    let p = PathBuf::from(v);
    assert!(p.exists(), "{var}={} does not exist: run `make build` first", p.display());
    p
}

pub fn models_dir() -> PathBuf {
    env_path("LLMA_TEST_MODELS")
}

pub fn model(name: &str) -> PathBuf {
    models_dir().join(name)
}

pub fn plugin_wasm() -> PathBuf {
    env_path("LLMA_TEST_PLUGIN")
}

pub fn hostile_wasm() -> PathBuf {
    env_path("LLMA_TEST_HOSTILE_PLUGIN")
}

/// `wasm` with a custom section appended: the same code, another build
/// (another SHA-256, so another version label and another compile).
pub fn rebuilt(wasm: &[u8], tag: &str) -> Vec<u8> {
    use wasm_encoder::ComponentSection as _;
    let mut bytes = wasm.to_vec();
    wasm_encoder::CustomSection { name: "llma-test-build".into(), data: tag.as_bytes().into() }.append_to_component(&mut bytes);
    bytes
}

/// The tests' signing key pair (`make signed-plugins` makes it once into build/keys).
pub fn signing_key() -> PathBuf {
    env_path("LLMA_TEST_SIGNING_KEY")
}

pub fn public_key() -> PathBuf {
    env_path("LLMA_TEST_PUBLIC_KEY")
}

/// The plugins signed with [`signing_key`].
pub fn signed_plugin_wasm() -> PathBuf {
    env_path("LLMA_TEST_SIGNED_PLUGIN")
}

pub fn signed_hostile_wasm() -> PathBuf {
    env_path("LLMA_TEST_SIGNED_HOSTILE_PLUGIN")
}

pub fn python() -> PathBuf {
    env_path("LLMA_TEST_PYTHON")
}

pub fn repo() -> PathBuf {
    env_path("LLMA_TEST_REPO")
}

/// A shared compile cache, so each test binary compiles a component once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llma-test-cache")
}

/// An engine that makes snapshots, so that tests run on snapshot instances.
pub fn engine(limits: Limits) -> PluginEngine {
    let options = EngineOptions { snapshots: SnapshotPolicy::Create, ..EngineOptions::default() };
    PluginEngine::with_options(limits, Some(cache_dir().join("compiled")), options).expect("engine")
}

pub fn load(engine: &PluginEngine, wasm: &PathBuf, model: &PathBuf) -> Arc<Plugin> {
    Arc::new(engine.load_plugin_file(wasm, model).expect("plugin loads"))
}

/// Runs the `llma-sentiment` binary of this build from an empty directory
/// (embedded plugin and model unless `args` name others), `stdin` piped in:
/// (success, stdout, stderr).
pub fn cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    cli_env(args, &[], stdin.as_bytes())
}

/// [`cli`] with extra environment variables and any bytes on stdin.
pub fn cli_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llma-sentiment"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd.path())
        .env("LLMA_SENTIMENT_CACHE_DIR", cache_dir())
        .env_remove("LLMA_SENTIMENT_PLUGIN")
        .env_remove("LLMA_SENTIMENT_MODEL_DIR")
        .env_remove("LLMA_SENTIMENT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

// ---- Throwaway ClickHouse servers (scripts/clickhouse.sh) for sink tests ----

/// The repository root (the host crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `scripts/NAME` (a server helper: install, start DIR, stop DIR); its output if it succeeded.
pub fn try_script(name: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    try_script_env(name, args, &[])
}

/// [`try_script`] with environment variables set.
pub fn try_script_env(name: &str, args: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(repo_root().join("scripts").join(name))
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"))
}

/// The process id a server script wrote to `path`.
pub fn pid_file(path: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// /proc/PID/stat; 0 once it is gone.
pub fn cpu_seconds(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The fields after the command name, which may hold spaces, in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15 of stat(5), are 11 and 12 here (state, field 3, is 0); USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// [`try_script`], asserting it succeeded.
pub fn script(name: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = try_script(name, args);
    assert!(out.status.success(), "scripts/{name} {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// Starts `cmd` in its own process group with stdin closed and its output
/// appended to `log` (a server restarted on the ports and data it had).
pub fn spawn_logged(cmd: &mut std::process::Command, log: &std::path::Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new().append(true).create(true).open(log).expect("log file");
    cmd.stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// Which ClickHouse a test server is (`scripts/clickhouse.sh`'s flavours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Debian's package, ClickHouse 18.16.
    Debian,
    /// ClickHouse 26.9 (PyPI chdb-core).
    Modern,
}

impl Flavor {
    /// `LLMA_TEST_CLICKHOUSE` (`debian`, the default, or `modern`): the
    /// flavour every test server of this run is, unless a test asks for one.
    pub fn of_run() -> Flavor {
        match std::env::var("LLMA_TEST_CLICKHOUSE").as_deref() {
            Ok("modern") => Flavor::Modern,
            Ok("debian") | Ok("") | Err(_) => Flavor::Debian,
            Ok(other) => panic!("LLMA_TEST_CLICKHOUSE must be debian or modern, not {other:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flavor::Debian => "debian",
            Flavor::Modern => "modern",
        }
    }
}

fn run_clickhouse_script(flavor: Flavor, env: &[(&str, &str)], args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = std::process::Command::new(repo_root().join("scripts/clickhouse.sh"))
        .args(args)
        .env("CLICKHOUSE_FLAVOR", flavor.name())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/clickhouse.sh");
    assert!(
        out.status.success(),
        "clickhouse.sh {args:?} ({flavor:?}) failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `scripts/clickhouse.sh install` of each flavour, once per test binary.
pub fn install_clickhouse(flavor: Flavor) {
    static DEBIAN: std::sync::Once = std::sync::Once::new();
    static MODERN: std::sync::Once = std::sync::Once::new();
    let once = if flavor == Flavor::Modern { &MODERN } else { &DEBIAN };
    once.call_once(|| {
        run_clickhouse_script(flavor, &[], &["install".as_ref()]);
    });
}

/// A ClickHouse server of its own for one test, in a temporary directory.
/// Stopped (SIGTERM, then SIGKILL after 10 s) and deleted on drop, also when
/// the test panics.
pub struct ClickHouseServer {
    dir: tempfile::TempDir,
    pub url: String,
    pub http_port: u16,
    pub flavor: Flavor,
    /// `https://127.0.0.1:PORT` when started with TLS ([`ClickHouseServer::start_tls`]).
    pub https_url: Option<String>,
    /// The server process when `restart` started it (not the script).
    child: Option<std::process::Child>,
}

impl ClickHouseServer {
    /// A server of the run's flavour (see [`Flavor::of_run`]).
    pub fn start() -> ClickHouseServer {
        ClickHouseServer::start_flavor(Flavor::of_run())
    }

    pub fn start_flavor(flavor: Flavor) -> ClickHouseServer {
        ClickHouseServer::start_with(flavor, &[])
    }

    /// A server (Debian's: the TLS mode is served there) that also serves HTTPS with
    /// `cert` and `key` (and asks HTTPS clients for a certificate signed by `client_ca`,
    /// when given).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, client_ca: Option<&std::path::Path>) -> ClickHouseServer {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let mut env = vec![("CLICKHOUSE_TLS_CERT", cert), ("CLICKHOUSE_TLS_KEY", key)];
        if let Some(ca) = client_ca {
            env.push(("CLICKHOUSE_TLS_CA", ca.to_str().unwrap()));
        }
        ClickHouseServer::start_with(Flavor::Debian, &env)
    }

    fn start_with(flavor: Flavor, env: &[(&str, &str)]) -> ClickHouseServer {
        install_clickhouse(flavor);
        let dir = tempfile::Builder::new().prefix("llma-ch-").tempdir().expect("tempdir");
        let out = run_clickhouse_script(flavor, env, &["start".as_ref(), dir.path().as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let https_url = stdout.lines().find_map(|l| l.strip_prefix("CLICKHOUSE_HTTPS_URL=")).map(|u| u.trim().to_string());
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("CLICKHOUSE_URL="))
            .unwrap_or_else(|| panic!("no CLICKHOUSE_URL= in the output of clickhouse.sh start: {stdout}"))
            .trim()
            .to_string();
        let http_port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in CLICKHOUSE_URL");
        ClickHouseServer { dir, url, http_port, flavor, https_url, child: None }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The server's process id (its pid file).
    pub fn pid(&self) -> i32 {
        pid_file(&self.dir().join("pid"))
    }

    /// Stops the server (no-op when stopped); blocks until it is gone.
    pub fn stop(&mut self) {
        run_clickhouse_script(self.flavor, &[], &["stop".as_ref(), self.dir.path().as_os_str()]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same config, ports and data (the
    /// script's `start` would pick new ports), and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none() && !self.dir().join("pid").exists(), "server is still running");
        let dir = self.dir.path();
        // DIR/run, written by the script's `start`, execs the same server.
        let child = spawn_logged(&mut std::process::Command::new(dir.join("run")), &dir.join("log/stdout.log"));
        // So that `stop` (and drop) find it.
        std::fs::write(dir.join("pid"), child.id().to_string()).expect("pid file");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.answers_ping() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("restarted ClickHouse exited with {status}; see {}", dir.join("log").display());
            }
            assert!(std::time::Instant::now() < deadline, "restarted server did not answer /ping within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// GET /ping answers `Ok.`.
    pub fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if s.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.starts_with("HTTP/1.") && body.contains(" 200 ") && body.trim_end().ends_with("Ok.")
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        try_script("clickhouse.sh", &["stop".as_ref(), self.dir.path().as_os_str()]);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
