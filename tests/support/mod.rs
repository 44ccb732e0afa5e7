//! Real `redis-server` processes for the tests, on free loopback ports.
//!
//! Each server runs under a small shell watchdog that holds the test
//! process's pipe: when the test process exits, however it exits, the pipe
//! closes and the watchdog kills the server, so no test leaves one behind.

#![allow(dead_code)]

pub mod cluster;
pub mod logs;
pub mod peer;
pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// One redis-server, killed when dropped.
pub struct RedisServer {
    port: u16,
    pid: u32,
    watchdog: Child,
    stdin: Option<ChildStdin>,
}

/// The redis-server binary: `$REDIS_SERVER`, or `redis-server` on `PATH`.
/// A missing binary fails the test with the way to install it.
pub fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server was not found on PATH. These tests run against a real Redis: \
             install it (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`), \
             set REDIS_SERVER=/path/to/redis-server, or run `bash .ci/test.sh`, which installs it."
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// Starts a server on `port` and returns once it accepts connections.
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// Starts a server on `port` with extra `redis-server` arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let binary = redis_server_binary();
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & echo "watchdog-pid:$!"; read _; kill -9 "$!" 2>/dev/null; wait"#)
            .arg(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // A replica writes the master's snapshot to disk even with
            // `--save ""`: somewhere of its own, not the crate's directory.
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--dbfilename", &snapshot_name(port)])
            .args(["--loglevel", "notice"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let stdout = watchdog.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        // The server writes to the same pipe as the watchdog, so its first
        // log lines may come before the pid: each is recognised by its text.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(pid) = line.strip_prefix("watchdog-pid:") {
                    let _ = ready_tx.send(Event::Pid(pid.trim().parse().ok()));
                } else if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(Event::Ready);
                }
            }
            let _ = ready_tx.send(Event::Exited);
        });
        let (mut pid, mut ready) = (None, false);
        while pid.is_none() || !ready {
            match ready_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Event::Pid(Some(started))) => pid = Some(started),
                Ok(Event::Ready) => ready = true,
                other => panic!("redis-server on port {port} did not become ready: {other:?}"),
            }
        }
        let pid = pid.expect("the loop ends with a pid");
        let stdin = watchdog.stdin.take();
        RedisServer {
            port,
            pid,
            watchdog,
            stdin,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The URL of a server started with TLS only.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, for looking at what the cache wrote.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test redis-server")
    }

    /// SIGSTOPs the server: connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.pid);
    }

    /// SIGKILLs the server, as a crash would, and waits until it is gone.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.watchdog.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(std::env::temp_dir().join(snapshot_name(self.port)));
    }
}

/// Where a replica on `port` keeps the snapshot it loaded, in the temporary
/// directory.
fn snapshot_name(port: u16) -> String {
    format!("cached-api-test-{port}.rdb")
}

#[derive(Debug)]
enum Event {
    Pid(Option<u32>),
    Ready,
    Exited,
}

/// Runs one test of the current test binary in a child process, with `env`
/// set, and fails unless it passes: how a test proves that a second process
/// shares the cache.
pub fn run_in_child(test: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--include-ignored"])
        .env("CACHED_API_CHILD", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| !line.starts_with("kill:")) {
        eprintln!("  child: {line}");
    }
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {test} failed:\n{stdout}"
    );
}

/// Whether this process is a child started by [`run_in_child`].
pub fn is_child() -> bool {
    std::env::var_os("CACHED_API_CHILD").is_some()
}

/// In the parent, runs the test `name` in a child process and returns
/// false; in that child, returns true: the test body then runs with a
/// process-wide cache of its own.
pub fn in_child(name: &str) -> bool {
    if !is_child() {
        run_in_child(name, &[]);
    }
    is_child()
}
