//! The log subscriber: `tracing` events go to stderr, or, while the dashboard
//! owns the terminal, into the dashboard's log panel.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use crate::dashboard::LOG_LINES;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Default)]
struct SinkState {
    capture: bool,
    lines: VecDeque<String>,
}

/// Where log lines go: stderr, or a short buffer the dashboard shows.
#[derive(Clone, Default)]
pub struct LogSink(Arc<Mutex<SinkState>>);

impl LogSink {
    fn state(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Captures lines for the dashboard (`true`) or writes them to stderr.
    pub fn capture(&self, on: bool) {
        let mut state = self.state();
        state.capture = on;
        if !on {
            // Lines logged while the dashboard was up are not lost.
            for line in state.lines.drain(..) {
                errln!("{line}");
            }
        }
    }

    /// The latest captured lines.
    pub fn recent(&self) -> VecDeque<String> {
        self.state().lines.clone()
    }
}

/// Buffers one event's text; hands it over when dropped.
pub struct SinkWriter {
    sink: LogSink,
    buf: Vec<u8>,
}

impl Write for SinkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let mut state = self.sink.state();
        if state.capture {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if state.lines.len() == LOG_LINES {
                    state.lines.pop_front();
                }
                state.lines.push_back(strip_ansi(line));
            }
        } else {
            let _ = io::stderr().write_all(text.as_bytes());
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter {
            sink: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// Removes terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Installs the subscriber: warnings by default, more with each `-v`;
/// `RUST_LOG` overrides both.
pub fn install(verbosity: u8) -> LogSink {
    let sink = LogSink::default();
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    sink
}
