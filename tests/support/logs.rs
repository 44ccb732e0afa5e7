//! What this process logs, kept for the tests that check it.

use std::io::Write;
use std::sync::{LazyLock, Mutex};

static LOGS: LazyLock<Mutex<Vec<u8>>> = LazyLock::new(Default::default);

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps every log line of this process from now on, down to `DEBUG`.
pub fn capture_logs() {
    capture_logs_down_to(tracing::Level::DEBUG);
}

/// Keeps every log line of this process from now on, down to `level`.
pub fn capture_logs_down_to(level: tracing::Level) {
    tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_max_level(level)
        .init();
}

/// What was logged so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}
