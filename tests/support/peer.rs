//! Another instance of the service: this test binary again, in a child
//! process with a cache of its own, driven line by line over its stdin.
//!
//! The child runs the test named by [`Peer::start`] (ignored in a normal
//! run), which calls [`serve`]: each line `verb arg` is answered by one
//! line `peer: answer` on stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts the ignored test `test` of this binary as a peer, with `env`.
    pub fn start(test: &str, env: &[(&str, &str)]) -> Peer {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--include-ignored"])
            .env("CACHED_API_CHILD", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer process");
        let stdin = child.stdin.take().expect("the peer's stdin");
        let stdout = BufReader::new(child.stdout.take().expect("the peer's stdout"));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one request and returns the peer's answer.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(request);
        self.receive()
    }

    /// Sends one request without waiting for the answer.
    pub fn send(&mut self, request: &str) {
        writeln!(self.stdin, "{request}").expect("write to the peer");
        self.stdin.flush().expect("write to the peer");
    }

    /// The answer to the oldest request not answered yet.
    pub fn receive(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).expect("read the peer");
            assert!(read > 0, "the peer exited before answering");
            if let Some(answer) = line.trim_end().strip_prefix("peer: ") {
                return answer.to_owned();
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's side: answers each request line with `handle`, until its
/// stdin closes.
pub fn serve(mut handle: impl FnMut(&str, &str) -> String) {
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read a request");
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let answer = handle(verb, arg);
        println!("peer: {answer}");
    }
}
