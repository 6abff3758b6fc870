//! Helpers shared by the command's integration tests: the library's, and a way
//! to run the command.
#![allow(dead_code)]

#[path = "../../../continuum/tests/common/mod.rs"]
mod library;

use std::ffi::OsStr;
use std::process::{Command, Output};

pub use library::*;

/// Runs the `continuum` command with `args` in the repository's root and
/// waits for it.
pub fn continuum<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the continuum binary runs")
}

/// Starts the `continuum` command with `args` (a run with status lines) in the
/// repository's root and waits for its first status line: the run is under
/// way. Its stderr is drained from then on, so the run never waits on a full
/// pipe.
pub fn start_running<S: AsRef<OsStr>>(args: &[S]) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the continuum binary runs");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("real-time ratio"))));
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Sends signal `name` (`TERM`, `INT`, `HUP`) to `child`.
pub fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// Waits for `child` at most `limit` and gives its exit code; kills it and
/// fails if it takes longer.
pub fn wait_at_most(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
