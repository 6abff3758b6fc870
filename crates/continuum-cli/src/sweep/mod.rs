//! `continuum sweep`: runs every run of a sweep file (see
//! [`continuum::sweep`]), several at once, each in a process of its own, and
//! keeps one row per finished run in `OUT/runs.csv`; `continuum sweep merge`
//! joins the tables of its parts, and `continuum sweep plot` draws a table.
//!
//! The results folder holds `sweep.json` (which sweep, which part, which
//! columns), `runs.csv`, `scenarios/point-NNNN.ron` (each point's scenario:
//! `continuum run` it with a run's seed to see that run again),
//! `reports/run-NNNNNN.json`, and with `series` in the sweep file
//! `series/run-NNNNNN.csv` and their join `series.csv`.

pub mod compare;
pub mod merge;
pub mod plot;
pub mod runner;
pub mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use continuum::agent::AgentKind;
use continuum::atomic_file::write_bytes_atomically;
use continuum::sweep::{RunPlan, Sweep};

use crate::args::{Shard, SweepAction, SweepArgs};
use crate::report::{RunReport, figures};
use runner::{Failure, Runner, point_name};
use table::{Manifest, SERIES_FILE, Table};

/// Exit code of a sweep stopped before all its runs finished.
const EXIT_INTERRUPTED: u8 = 130;

/// The columns every table starts with, before the parameters and figures.
pub const RUN_COLUMNS: [&str; 4] = ["run", "point", "replicate", "seed"];

/// What the name of a parameter's column starts with (`param.conflicts`,
/// `param.groups[0].count`): the report has figures of the same names as some
/// scenario fields (`conflicts`).
pub const PARAMETER_PREFIX: &str = "param.";

/// `continuum sweep ...`.
pub fn sweep_command(args: SweepArgs) -> ExitCode {
    match &args.action {
        Some(SweepAction::Merge { parts, out }) => return merge::merge_command(parts, out),
        Some(SweepAction::Compare { dir, y, baseline }) => {
            return compare::compare_command(dir, y, *baseline);
        }
        Some(SweepAction::Plot {
            dir,
            x,
            group,
            y,
            output,
        }) => {
            let axes = plot::Axes {
                x,
                group: group.as_deref(),
                figures: y,
            };
            return plot::plot_command(dir, axes, output);
        }
        None => {}
    }
    let file = args.sweep.clone().expect("clap requires the sweep file");
    let sweep = match Sweep::load_with(&file, &continuum_models::behaviours()) {
        Ok(sweep) => sweep,
        Err(e) => return crate::invalid(&e),
    };
    let columns = match columns(&sweep) {
        Ok(columns) => columns,
        Err(e) => return crate::invalid(&e),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sweep-{}", safe_name(&sweep.name))));
    let plan = Plan {
        sweep,
        columns,
        out,
        shard: args.shard,
    };
    #[cfg(feature = "mpi")]
    if launched_by_mpi()
        && let Some(cluster) = crate::cluster::Cluster::join()
    {
        return plan.run_on_cluster(&cluster, &args);
    }
    plan.run_here(&args)
}

/// A sweep ready to run: its runs, its table's columns, where its results go.
pub struct Plan {
    pub sweep: Sweep,
    pub columns: Vec<String>,
    pub out: PathBuf,
    pub shard: Option<Shard>,
}

/// The table's columns: the run's own, the parameters the points vary, then
/// the report figures collected (all, or those `collect` names: a figure, or
/// a group of them such as `world`).
fn columns(sweep: &Sweep) -> Result<Vec<String>, continuum::config::ConfigError> {
    let mut kinds: Vec<String> = Vec::new();
    for point in &sweep.points {
        let archetypes = point.scenario.archetypes();
        for k in 0..archetypes.len() {
            let name = archetypes.name(AgentKind(k as u16));
            if !kinds.iter().any(|n| n == name) {
                kinds.push(name.to_owned());
            }
        }
    }
    let figures = RunReport::figure_names(&kinds);
    let collected = match &sweep.collect {
        None => figures,
        Some(list) => {
            let mut chosen: Vec<String> = Vec::new();
            for (name, at) in list {
                let group = format!("{name}.");
                let matching: Vec<&String> = figures
                    .iter()
                    .filter(|f| *f == name || f.starts_with(&group))
                    .collect();
                if matching.is_empty() {
                    let tops: std::collections::BTreeSet<&str> = figures
                        .iter()
                        .map(|f| f.split('.').next().unwrap_or(f))
                        .collect();
                    return Err(sweep.error_at(
                        at,
                        format!(
                            "the report has no figure `{}`; figures are named like \
                             `world.harvested`, and a group (`world`) collects all of its \
                             own; the report's top level: {}",
                            continuum::config::clip(name, 64),
                            tops.into_iter().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                for f in matching {
                    if !chosen.contains(f) {
                        chosen.push(f.clone());
                    }
                }
            }
            chosen
        }
    };
    let mut columns: Vec<String> = RUN_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    columns.extend(
        sweep
            .parameter_names()
            .iter()
            .map(|name| format!("{PARAMETER_PREFIX}{name}")),
    );
    for figure in collected {
        // `seed` is a run column already.
        if !columns.contains(&figure) {
            columns.push(figure);
        }
    }
    Ok(columns)
}

/// A folder name from a sweep's name.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Plan {
    /// The manifest of this plan's results folder.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.sweep.name.clone(),
            fingerprint: format!("{:016x}", self.sweep.fingerprint),
            runs: self.sweep.run_count(),
            shard: self.shard.map(|s| s.to_string()),
            series: self.sweep.series.is_some(),
            columns: self.columns.clone(),
            engine: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The runs of this plan's part.
    pub fn runs(&self) -> Vec<RunPlan> {
        self.sweep
            .runs()
            .filter(|r| self.shard.is_none_or(|s| s.holds(r.id)))
            .collect()
    }

    /// Opens the table and writes the points' scenarios: everything a run
    /// needs from the folder.
    pub fn prepare(&self, resume: bool) -> Result<Table, String> {
        let table = Table::open(&self.out, &self.manifest(), resume)?;
        for kind in ["scenarios", "reports", "logs"] {
            let dir = self.out.join(kind);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if self.sweep.series.is_some() {
            let dir = self.out.join("series");
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        for point in &self.sweep.points {
            let path = self.out.join("scenarios").join(point_name(point.index));
            let settings: Vec<String> = point
                .settings
                .iter()
                .map(|s| format!("{} = {}", s.path, s.value))
                .collect();
            let text = format!(
                "// Point {} of sweep `{}` ({}), from {}: {}.\n// Its runs' seeds are in runs.csv: `continuum run THIS_FILE --seed SEED` repeats one.\n{}\n",
                point.index,
                self.sweep.name,
                self.sweep.file.display(),
                self.sweep.scenario_file.display(),
                if settings.is_empty() {
                    "the base scenario".to_owned()
                } else {
                    settings.join(", ")
                },
                point.scenario_text
            );
            write_bytes_atomically(&path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(table)
    }

    /// A run's row from its report (JSON text).
    pub fn row(&self, run: &RunPlan, report: &str) -> Result<Vec<String>, String> {
        let value: serde_json::Value =
            serde_json::from_str(report).map_err(|e| format!("run {}: {e}", run.id))?;
        let figures: std::collections::HashMap<String, String> =
            figures(&value).into_iter().collect();
        Ok(self
            .columns
            .iter()
            .map(|column| match column.as_str() {
                "run" => run.id.to_string(),
                "point" => run.point.to_string(),
                "replicate" => run.replicate.to_string(),
                "seed" => run.seed.to_string(),
                name => match name.strip_prefix(PARAMETER_PREFIX) {
                    Some(parameter) => self.sweep.parameter_value(run.point, parameter),
                    None => figures.get(name).cloned().unwrap_or_default(),
                },
            })
            .collect())
    }

    /// Runs the sweep (this part of it) on this machine, `--jobs` at once.
    fn run_here(&self, args: &SweepArgs) -> ExitCode {
        let table = match self.prepare(args.resume) {
            Ok(table) => table,
            Err(e) => return crate::invalid(&e),
        };
        let runs = self.runs();
        let todo: Vec<RunPlan> = runs.iter().filter(|r| !table.has(r.id)).copied().collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = usize::from(args.jobs.unwrap_or(cores as u16)).max(1);
        let threads = args.threads.unwrap_or_else(|| (cores / jobs).max(1) as u16);
        let stop = stop_on_signals();
        let runner = Runner {
            exe: current_exe(),
            dir: self.out.clone(),
            threads,
            series: self.sweep.series,
            stop: stop.clone(),
        };
        let how = format!("{} at once", jobs.min(todo.len().max(1)));
        self.announce(runs.len(), todo.len(), &how, threads, args.quiet);
        let mut collector = Collector::new(self, table, todo.len(), stop, args.quiet);
        run_in_parallel(&runner, &todo, jobs, |run, outcome| {
            collector.record(run, outcome);
        });
        collector.finish(runs.len(), args)
    }

    /// The line a sweep starts with: what it holds, what is left to run and
    /// how (`how`: "2 at once", "on 4 MPI ranks").
    fn announce(&self, runs: usize, todo: usize, how: &str, threads: u16, quiet: bool) {
        if quiet {
            return;
        }
        outln!(
            "sweep `{}`: {runs} runs{} ({} points × {} replicates), {todo} to run, {how}, {threads} thread{} each; results in {}",
            self.sweep.name,
            self.shard
                .map_or(String::new(), |s| format!(" in part {s}")),
            self.sweep.points.len(),
            self.sweep.replicates,
            if threads == 1 { "" } else { "s" },
            self.out.display()
        );
    }
}

/// What a sweep under way keeps as its runs end: the table, the progress
/// shown, the runs that failed and the first error writing the table (which
/// stops the sweep).
struct Collector<'a> {
    plan: &'a Plan,
    table: Table,
    progress: Progress,
    failures: Vec<u64>,
    write_error: Option<std::io::Error>,
    stop: Arc<AtomicBool>,
}

impl<'a> Collector<'a> {
    fn new(plan: &'a Plan, table: Table, todo: usize, stop: Arc<AtomicBool>, quiet: bool) -> Self {
        Self {
            plan,
            table,
            progress: Progress::new(todo, quiet),
            failures: Vec::new(),
            write_error: None,
            stop,
        }
    }

    /// A run ended: its row, an error line, or nothing for a run stopped
    /// early.
    fn record(&mut self, run: RunPlan, outcome: Result<String, Failure>) {
        match outcome.and_then(|report| self.plan.row(&run, &report).map_err(Failure::Failed)) {
            Ok(row) => {
                if let Err(e) = self.table.append(row) {
                    self.write_error.get_or_insert(e);
                    self.stop.store(true, Ordering::Relaxed);
                }
                self.progress.finished(&run);
            }
            Err(Failure::Interrupted) => {}
            Err(Failure::Failed(message)) => {
                self.progress.println(&format!("error: {message}"));
                self.failures.push(run.id);
            }
        }
    }

    /// Ends a sweep of `runs` runs: the table in run order, the joined time
    /// series, and a closing line; the exit code.
    fn finish(self, runs: usize, args: &SweepArgs) -> ExitCode {
        self.progress.end();
        let plan = self.plan;
        let done = self.table.len();
        let rows = self.table.rows().clone();
        let runs_file = plan.out.join(table::RUNS_FILE);
        if let Some(e) = self.table.finish().err().or(self.write_error) {
            errln!("error: cannot write {}: {e}", runs_file.display());
            return ExitCode::FAILURE;
        }
        if plan.sweep.series.is_some()
            && let Err(e) =
                table::join_series(&plan.out.join("series"), &rows, &plan.out.join(SERIES_FILE))
        {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let again = format!(
            "`continuum sweep {}{} --out {} --resume`",
            args.sweep
                .as_deref()
                .unwrap_or(Path::new("SWEEP.ron"))
                .display(),
            plan.shard
                .map_or(String::new(), |s| format!(" --shard {s}")),
            plan.out.display()
        );
        if !self.failures.is_empty() {
            errln!(
                "{} of {runs} runs failed (their logs are in {}); {again} runs them again",
                self.failures.len(),
                plan.out.join("logs").display()
            );
            return ExitCode::FAILURE;
        }
        if done < runs {
            if !args.quiet || self.stop.load(Ordering::Relaxed) {
                errln!("stopped: {done} of {runs} runs finished and kept; {again} runs the rest");
            }
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        if !args.quiet {
            outln!("{done} runs in {}", runs_file.display());
        }
        ExitCode::SUCCESS
    }
}

/// This program, to run each run with.
fn current_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("continuum"))
}

/// A flag that SIGINT, SIGTERM and SIGHUP set: no new runs start, the runs
/// under way are told to stop, and every finished run is kept.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        tracing::warn!("cannot catch Ctrl-C/SIGTERM/SIGHUP ({e})");
    }
    stop
}

/// Runs `todo` with `jobs` runs at once; `done` gets each result on this
/// thread, as runs finish.
pub fn run_in_parallel(
    runner: &Runner,
    todo: &[RunPlan],
    jobs: usize,
    mut done: impl FnMut(RunPlan, Result<String, Failure>),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(todo.len()) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                while !runner.stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = todo.get(i) else { break };
                    if tx.send((*run, runner.run(run))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (run, result) in rx {
            done(run, result);
        }
    });
}

/// Progress over a sweep's runs: a bar with the time left on a terminal, a
/// line per finished run otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs  {elapsed_precise} elapsed, about {eta} left  {msg}",
                )
                .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Self {
            lines: !quiet && bar.is_none(),
            bar,
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// One more run finished.
    pub fn finished(&mut self, run: &RunPlan) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("run {} done", run.id));
        } else if self.lines {
            let elapsed = self.started.elapsed().as_secs_f64();
            let left = elapsed / self.done as f64 * (self.total - self.done) as f64;
            outln!(
                "[{}/{}] run {} (point {}, seed {}) done; {:.1} s elapsed, about {:.0} s left",
                self.done,
                self.total,
                run.id,
                run.point,
                run.seed,
                elapsed,
                left
            );
        }
    }

    /// A line above the bar (or on its own).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => errln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn end(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Whether an MPI launcher (Open MPI's or MPICH's `mpirun`, Slurm's `srun`)
/// started this process: they name the job's size or the process's rank in
/// the environment. Started otherwise, MPI would make a job of one, which
/// takes a while to set up for nothing.
#[cfg(feature = "mpi")]
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// A run's outcome as it travels from an MPI rank to rank 0: a tag byte, then
/// the report (`R`) or the failure's message (`F`); `I` for a run stopped
/// early.
#[cfg(feature = "mpi")]
fn encode_outcome(outcome: Result<String, Failure>) -> Vec<u8> {
    match outcome {
        Ok(report) => [b"R".as_slice(), report.as_bytes()].concat(),
        Err(Failure::Interrupted) => b"I".to_vec(),
        Err(Failure::Failed(message)) => [b"F".as_slice(), message.as_bytes()].concat(),
    }
}

#[cfg(feature = "mpi")]
fn decode_outcome(bytes: &[u8]) -> Result<String, Failure> {
    let text = || String::from_utf8_lossy(&bytes[1..]).into_owned();
    match bytes.first() {
        Some(b'R') => Ok(text()),
        Some(b'I') => Err(Failure::Interrupted),
        Some(b'F') => Err(Failure::Failed(text())),
        _ => Err(Failure::Failed("a malformed message from a rank".into())),
    }
}

#[cfg(feature = "mpi")]
impl Plan {
    /// Runs the sweep on the ranks of an MPI job (`mpirun -n R continuum
    /// sweep ...`): rank 0 prepares the results folder and keeps the table,
    /// and hands the runs out to the ranks, itself included, as they free up;
    /// every rank runs one run at a time (`--threads` threads each, default
    /// 1: start one rank per core). The ranks must share the results folder
    /// (a cluster's shared file system).
    fn run_on_cluster(&self, cluster: &crate::cluster::Cluster, args: &SweepArgs) -> ExitCode {
        let stop = stop_on_signals();
        let runner = Runner {
            exe: current_exe(),
            dir: self.out.clone(),
            threads: args.threads.unwrap_or(1),
            series: self.sweep.series,
            stop: stop.clone(),
        };
        let work = |id: u64| encode_outcome(runner.run(&self.sweep.run(id)));
        if !cluster.is_leader() {
            cluster.share(&[], work, |_, _| {}, &stop);
            return ExitCode::SUCCESS;
        }
        let table = match self.prepare(args.resume) {
            Ok(table) => table,
            Err(e) => {
                // The other ranks wait for runs: none are coming.
                cluster.share(&[], work, |_, _| {}, &stop);
                return crate::invalid(&e);
            }
        };
        let runs = self.runs();
        let todo: Vec<u64> = runs
            .iter()
            .filter(|r| !table.has(r.id))
            .map(|r| r.id)
            .collect();
        let how = format!("on {} MPI ranks", cluster.size());
        self.announce(runs.len(), todo.len(), &how, runner.threads, args.quiet);
        let mut collector = Collector::new(self, table, todo.len(), stop.clone(), args.quiet);
        cluster.share(
            &todo,
            work,
            |id, bytes| collector.record(self.sweep.run(id), decode_outcome(&bytes)),
            &stop,
        );
        collector.finish(runs.len(), args)
    }
}
