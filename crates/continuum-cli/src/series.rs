//! The metrics time series: one row per interval of virtual time, streamed to a
//! CSV or JSON-lines file as the run goes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use continuum::metrics::Snapshot;

/// One row of the time series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Names the run (scenario and seed).
    pub run: String,
    pub virtual_time: f64,
    pub wall_time: f64,
    pub steps: u64,
    pub agents_active: usize,
    pub agents_queued: usize,
    pub agents_retired: u64,
    pub agent_ticks: u64,
    pub agent_ticks_per_sec: f64,
    pub actions_submitted: u64,
    pub actions_applied: u64,
    pub actions_rejected: u64,
    pub actions_per_sec: f64,
    pub applied_per_sec: f64,
    pub rejected_per_sec: f64,
    pub conflicts: u64,
    pub conflicts_per_sec: f64,
    pub cache_hit_rate: f64,
    /// Facts the shared cache evicted since the start.
    pub cache_evictions: u64,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub step_ms_p50: f64,
    pub step_ms_p99: f64,
    pub realtime_ratio: f64,
    /// The realtime speed at the row (1 in fast mode).
    pub speed: f64,
}

impl MetricsRow {
    /// A row from a snapshot.
    pub fn new(run: &str, s: &Snapshot) -> Self {
        Self {
            run: run.to_owned(),
            virtual_time: s.virtual_seconds,
            wall_time: s.wall_seconds,
            steps: s.steps,
            agents_active: s.agents_active,
            agents_queued: s.agents_queued,
            agents_retired: s.agents_retired,
            agent_ticks: s.agent_ticks,
            agent_ticks_per_sec: s.agent_ticks_per_sec,
            actions_submitted: s.actions_submitted,
            actions_applied: s.actions_applied,
            actions_rejected: s.actions_rejected,
            actions_per_sec: s.actions_per_sec,
            applied_per_sec: s.applied_per_sec,
            rejected_per_sec: s.rejected_per_sec,
            conflicts: s.conflicts,
            conflicts_per_sec: s.conflicts_per_sec,
            cache_hit_rate: s.cache_hit_rate,
            cache_evictions: s.cache_evictions,
            cpu_percent: s.cpu_percent,
            rss_bytes: s.rss_bytes,
            step_ms_p50: s.step_ms_p50,
            step_ms_p99: s.step_ms_p99,
            realtime_ratio: s.realtime_ratio,
            speed: s.speed,
        }
    }
}

/// Records the time series of `app`: a [`MetricsRecorder`] takes a row every
/// `interval` virtual seconds, after the metrics of each step are in.
pub fn record(app: &mut bevy_app::App, run: impl Into<String>, interval: f64) {
    app.insert_resource(MetricsRecorder::new(run, interval))
        .add_systems(
            bevy_app::FixedUpdate,
            record_rows.after(continuum::metrics::MetricsSystems::Update),
        );
}

fn record_rows(metrics: Res<continuum::metrics::Metrics>, mut recorder: ResMut<MetricsRecorder>) {
    recorder.observe(metrics.snapshot());
}

/// Collects a row every `interval` virtual seconds, for a writer to take.
#[derive(Resource, Clone, Debug)]
pub struct MetricsRecorder {
    /// Names the run in every row.
    pub run: String,
    /// Virtual seconds between rows.
    pub interval: f64,
    next_at: f64,
    pending: Vec<MetricsRow>,
}

impl MetricsRecorder {
    /// A row every `interval` virtual seconds, labelled `run`.
    pub fn new(run: impl Into<String>, interval: f64) -> Self {
        Self {
            run: run.into(),
            interval,
            next_at: interval,
            pending: Vec::new(),
        }
    }

    /// Rows recorded since the last call.
    pub fn take(&mut self) -> Vec<MetricsRow> {
        std::mem::take(&mut self.pending)
    }

    /// Records a row if the step that just ended reached the next interval: one
    /// row per step at most, so an interval shorter than a step gives a row
    /// every step.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        // A step ends exactly on a boundary when the interval is a whole number
        // of steps; allow for the rounding of seconds.
        let now = snapshot.virtual_seconds + 1e-9;
        if now >= self.next_at {
            self.pending.push(MetricsRow::new(&self.run, snapshot));
            // The first boundary after this step, computed rather than counted up
            // to: an interval of 1e-300 would take forever to count (and would
            // not even move `next_at`, being lost in its rounding).
            let next = ((now / self.interval).floor() + 1.0) * self.interval;
            self.next_at = if next > self.next_at {
                next
            } else {
                self.next_at + self.interval
            };
        }
    }
}

/// A file format for the time series, chosen by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesFormat {
    Csv,
    JsonLines,
}

impl SeriesFormat {
    /// `.csv` is CSV; `.jsonl`, `.ndjson` and `.json` are JSON lines.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(SeriesFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(SeriesFormat::JsonLines),
            _ => None,
        }
    }
}

/// Streams rows to a file, flushing each one. The rows go to the file's
/// [temporary name](continuum::atomic_file::temporary_name), which
/// [`finish`](Self::finish) renames to the file: until then a previous file of
/// that name is left as it was, and a killed run leaves the temporary file with
/// every row written so far.
pub struct SeriesWriter {
    out: Rows,
    path: PathBuf,
    temporary: PathBuf,
}

enum Rows {
    Csv(Box<csv::Writer<File>>),
    JsonLines(BufWriter<File>),
}

impl SeriesWriter {
    /// Creates (truncates) the temporary file for `path`; the format follows
    /// the extension of `path`. Missing parent directories are created.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let format = SeriesFormat::of(path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected a .csv, .jsonl, .ndjson or .json file",
            )
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = continuum::atomic_file::temporary_name(path);
        let file = File::create(&temporary)?;
        Ok(Self {
            out: match format {
                SeriesFormat::Csv => Rows::Csv(Box::new(csv::Writer::from_writer(file))),
                SeriesFormat::JsonLines => Rows::JsonLines(BufWriter::new(file)),
            },
            path: path.to_owned(),
            temporary,
        })
    }

    /// The temporary file the rows go to until [`finish`](Self::finish).
    pub fn temporary(&self) -> &Path {
        &self.temporary
    }

    /// Writes one row and flushes it.
    pub fn write(&mut self, row: &MetricsRow) -> std::io::Result<()> {
        match &mut self.out {
            Rows::Csv(w) => {
                w.serialize(row).map_err(std::io::Error::other)?;
                w.flush()
            }
            Rows::JsonLines(w) => {
                serde_json::to_writer(&mut *w, row).map_err(std::io::Error::other)?;
                w.write_all(b"\n")?;
                w.flush()
            }
        }
    }

    /// Flushes the rows to disk and renames the temporary file to the file.
    pub fn finish(self) -> std::io::Result<()> {
        let file = match self.out {
            Rows::Csv(w) => w.into_inner().map_err(|e| e.into_error())?,
            Rows::JsonLines(w) => w.into_inner().map_err(|e| e.into_error())?,
        };
        continuum::atomic_file::put_in_place(&file, &self.temporary, &self.path)
    }
}

/// Reads a time series back (CSV or JSON lines, by extension). Errors name the
/// file and the line at fault.
pub fn read_series(path: &Path) -> Result<Vec<MetricsRow>, String> {
    let at = |line: Option<u64>, e: &dyn std::fmt::Display| match line {
        Some(line) => format!("{}:{line}: {e}", path.display()),
        None => format!("{}: {e}", path.display()),
    };
    match SeriesFormat::of(path) {
        Some(SeriesFormat::Csv) => {
            let mut reader = csv::Reader::from_path(path).map_err(|e| at(None, &e))?;
            reader
                .deserialize()
                .map(|r: Result<MetricsRow, csv::Error>| {
                    r.map_err(|e| at(e.position().map(|p| p.line()), &e))
                })
                .collect()
        }
        Some(SeriesFormat::JsonLines) => {
            let text = std::fs::read_to_string(path).map_err(|e| at(None, &e))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| serde_json::from_str(l).map_err(|e| at(Some(i as u64 + 1), &e)))
                .collect()
        }
        None => Err(format!(
            "{}: expected a .csv, .jsonl, .ndjson or .json file",
            path.display()
        )),
    }
}
