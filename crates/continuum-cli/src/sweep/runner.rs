//! One run of a sweep in a process of its own: `continuum run` on the run's
//! point scenario with the run's seed, in fast mode, writing its report (and
//! its time series) into the results folder.
//!
//! A process per run rather than an `App` per thread: the engine's compute
//! threads are one pool per process, so runs in one process would share (and
//! fight over) it and could not each have their thread count; a process also
//! gives each run its own memory, returned when it ends, and keeps a run that
//! fails from taking the sweep down. Starting one costs about a millisecond
//! besides loading the scenario (see docs/sweeps.md).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use continuum::sweep::RunPlan;

use super::table::series_name;

/// How often a run's process is checked on (and a stop request passed on).
const POLL: Duration = Duration::from_millis(5);

/// Why a run gave no row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The sweep was asked to stop before the run finished.
    Interrupted,
    /// The run failed; the message says how, and where its log is.
    Failed(String),
}

/// Runs runs: where the command is, where the results go, and how.
#[derive(Clone)]
pub struct Runner {
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub threads: u16,
    pub series: Option<f64>,
    pub stop: Arc<AtomicBool>,
}

/// The file name of a point's scenario.
pub fn point_name(point: usize) -> String {
    format!("point-{point:04}.ron")
}

/// The file name of run `id`'s report.
pub fn report_name(id: u64) -> String {
    format!("run-{id:06}.json")
}

impl Runner {
    /// Runs `run` and gives its report (JSON text). When the sweep is asked
    /// to stop, the run's process is told to stop too (SIGTERM); a run that
    /// stopped early gives no report.
    pub fn run(&self, run: &RunPlan) -> Result<String, Failure> {
        let scenario = self.dir.join("scenarios").join(point_name(run.point));
        let report = self.dir.join("reports").join(report_name(run.id));
        let log = self.dir.join("logs").join(format!("run-{:06}.log", run.id));
        let failed = |what: String| Failure::Failed(format!("run {}: {what}", run.id));
        // A report left by an earlier, unfinished attempt must not count.
        let _ = std::fs::remove_file(&report);
        let log_file = File::create(&log)
            .map_err(|e| failed(format!("cannot write {}: {e}", log.display())))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("run")
            .arg(&scenario)
            .args(["--fast", "--quiet", "--no-dashboard"])
            .arg("--seed")
            .arg(run.seed.to_string())
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--report")
            .arg(&report);
        if let Some(interval) = self.series {
            command
                .arg("--metrics")
                .arg(self.dir.join("series").join(series_name(run.id)))
                .arg("--metrics-interval")
                .arg(interval.to_string());
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", self.exe.display())))?;
        let mut told_to_stop = false;
        // Polled rather than waited for, so that a stop request reaches the
        // child before it is reaped (its process id cannot be reused yet).
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(failed(format!("cannot wait for it: {e}"))),
            }
            if !told_to_stop && self.stop.load(Ordering::Relaxed) {
                terminate(&child);
                told_to_stop = true;
            }
            std::thread::sleep(POLL);
        };
        let stopped = || {
            let _ = std::fs::remove_file(&log);
            Failure::Interrupted
        };
        if !status.success() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(stopped());
            }
            return Err(failed(format!("{status}; its log: {}", log.display())));
        }
        let text = std::fs::read_to_string(&report)
            .map_err(|e| failed(format!("no report ({e}); its log: {}", log.display())))?;
        let interrupted = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| failed(format!("an unreadable report ({e})")))?
            .get("interrupted")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| failed("a report without `interrupted`".into()))?;
        if interrupted {
            return Err(stopped());
        }
        let _ = std::fs::remove_file(&log);
        Ok(text)
    }
}

/// Asks a child process to stop after its step under way.
fn terminate(child: &std::process::Child) {
    #[cfg(unix)]
    // SAFETY: `kill` only sends a signal; the child has not been reaped, so
    // its id is still its own.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = child;
}
