//! The final report of a run: one JSON object.

use std::collections::BTreeMap;
use std::path::Path;

use bevy_ecs::prelude::*;
use serde::Serialize;

use continuum::action::ResolverDiagnostics;
use continuum::agent::{AgentPool, Priority, ScheduleStats};
use continuum::archetype::Archetypes;
use continuum::clock::{SimClock, SimSeed};
use continuum::digest::state_digest;
use continuum::memory::{Memory, MemoryPlan, Perception, SharedCache};
use continuum::metrics::{PaceLog, RunStats};
use continuum::metrics::{current_rss_bytes, peak_rss_bytes, realtime_ratio};
use continuum::monitor::{BudgetChange, BudgetLog, RebalanceDiagnostics, ResourceStats};
use continuum::parallel::ThreadLoad;
use continuum::scenario::ClockMode;
use continuum::think::{ThinkDiagnostics, ThinkSettings};
use continuum::world::Sites;

/// Step-time percentiles in milliseconds of wall time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Waiting times of the agents admitted at one priority, in virtual seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WaitStats {
    pub admitted: u64,
    pub mean: f64,
    pub p99: f64,
}

/// One value per priority.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ByPriority<T> {
    pub high: T,
    pub normal: T,
    pub background: T,
}

impl<T> ByPriority<T> {
    fn from_fn(f: impl Fn(Priority) -> T) -> Self {
        Self {
            high: f(Priority::High),
            normal: f(Priority::Normal),
            background: f(Priority::Background),
        }
    }
}

/// The agent pool at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolSummary {
    pub max_agents: usize,
    /// The effective limit at the end.
    pub limit: usize,
    pub requested: u64,
    pub active: usize,
    pub queued: ByPriority<usize>,
    pub retired: u64,
    pub wait_seconds: ByPriority<WaitStats>,
}

/// Mean records held per agent in each memory tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TierMeans {
    pub working: f64,
    pub short_term: f64,
    pub intermediate: f64,
    pub long_term: f64,
}

/// The shared cache's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CacheSummary {
    /// Its share of the budget.
    pub capacity_bytes: u64,
    /// Most facts it holds at once.
    pub capacity: usize,
    /// Facts held at the end: about sites, and about ground cells.
    pub len: usize,
    pub site_facts: usize,
    pub ground_facts: usize,
    /// Bytes the facts held take.
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// Hits over reads (0 without reads).
    pub hit_rate: f64,
    pub evictions: u64,
    pub publications: u64,
}

/// Memory: the budget, what agents hold, and what they cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemorySummary {
    pub budget_bytes: u64,
    /// Each agent's memory limit (its slab blocks).
    pub per_agent_limit_bytes: u64,
    /// What the engine keeps per agent beside its memory (components, index
    /// entries), which the budget holds too.
    pub engine_bytes_per_agent: u64,
    /// Resident memory added since the world was generated, per active agent
    /// (agents, their indices, and everything the run allocated since).
    pub bytes_per_agent: f64,
    /// Mean bytes of memory records an agent holds.
    pub held_bytes_mean: f64,
    /// Mean bytes of the memory slab's blocks an agent's records take (blocks
    /// hold 2, 4, 8 or 16 records, so this is at least what is held).
    pub block_bytes_mean: f64,
    pub facts_per_tier: TierMeans,
    pub shared_cache: CacheSummary,
}

/// One thread's busy share.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThreadBusy {
    pub name: String,
    /// Share of the run's wall time the thread spent in parallel loops.
    pub busy: f64,
}

/// A summary of the latest budget changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BudgetChanges {
    pub count: u64,
    pub last: Vec<BudgetChange>,
}

/// The machine and the resource monitor.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResourcesSummary {
    /// Process CPU in percent of one core, over the samples.
    pub cpu_percent_mean: f64,
    pub cpu_percent_max: f64,
    pub rss_bytes_mean: f64,
    pub rss_bytes_max: u64,
    pub samples: u64,
    pub machine_memory_bytes: u64,
    pub available_memory_bytes: u64,
    /// Wall time of one sampler refresh (off the step loop), in ms.
    pub sample_refresh_ms: f64,
    pub budget_changes: BudgetChanges,
    /// The overload policy's level at the end (0: nothing shed).
    pub overload_level: usize,
    /// Agent ticks by priority.
    pub ticks_by_priority: ByPriority<u64>,
    /// Of those, the ticks run while load shedding left their agents' rate
    /// whole.
    pub full_rate_ticks_by_priority: ByPriority<u64>,
    /// The share of all ticks run at full rate (1 when nothing was shed).
    pub full_rate_share: f64,
    pub threads: Vec<ThreadBusy>,
    /// How the rebalancer spread its work over the steps: rounds decided, the
    /// most agents one step read and one step updated, the most one decision
    /// weighed, and the wall time of its longest step, its longest decision
    /// and all its decisions.
    pub rebalance: RebalanceDiagnostics,
}

/// Thinks that took longer than a tick (asynchronous thinks): what the
/// queue did over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThinkSummary {
    /// Most tasks in flight at once allowed (`think.max_in_flight`).
    pub max_in_flight: usize,
    pub started: u64,
    /// Results collected.
    pub finished: u64,
    /// Results not in by their deadline (real time only).
    pub late: u64,
    /// Plans handed to their agents.
    pub delivered: u64,
    /// Waiting for a slot and in flight at the end.
    pub waiting: usize,
    pub in_flight: usize,
    pub peak_in_flight: usize,
    /// Mean virtual seconds a request waited for its slot.
    pub mean_queue_seconds: f64,
    /// Fast mode: deadline steps that waited for a task still running.
    pub waits: u64,
}

/// What the world looks like at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorldSummary {
    pub sites: usize,
    pub sites_discovered: usize,
    pub sites_assessed: usize,
    /// Value harvested from all sites.
    pub harvested: f64,
}

/// The final report of a run. Field names are a contract other tools rely on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    /// The checkpoint this run was resumed from, if any.
    pub resumed_from: Option<Resumed>,
    /// Threads working on the simulation (the main thread included).
    pub threads: usize,
    pub mode: &'static str,
    /// Virtual seconds per real second asked for at the start (realtime mode).
    pub speed: f64,
    /// The speed at the end: the dashboard's keys, or a game through
    /// `Time<Virtual>`, may have changed it on the way.
    pub speed_at_end: f64,
    pub steps: u64,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
    /// Wall seconds the run stood paused.
    pub paused_seconds: f64,
    /// Virtual seconds per paced second: real seconds weighted by the speed of
    /// each moment, time paused left out (`PaceLog`); `virtual_seconds /
    /// (wall_seconds × speed)` when the run never changed speed or paused. Of a
    /// resumed run: the virtual seconds since its checkpoint.
    pub realtime_ratio: f64,
    pub agents_active: usize,
    pub agents_queued: usize,
    pub agent_ticks: u64,
    /// Agent ticks per wall second.
    pub agent_ticks_per_sec: f64,
    pub ticks_by_kind: BTreeMap<String, u64>,
    pub actions_submitted: u64,
    pub actions_applied: u64,
    pub actions_rejected: u64,
    pub actions_failed: u64,
    /// Targets that had more than one contender in a step.
    pub conflicts: u64,
    pub pool: PoolSummary,
    pub memory: Option<MemorySummary>,
    pub resources: ResourcesSummary,
    pub step_ms: StepMs,
    pub peak_rss_bytes: u64,
    pub world: WorldSummary,
    pub think: ThinkSummary,
    /// Hex digest of the final simulation state.
    pub state_digest: String,
    /// The run was stopped (Ctrl-C, SIGTERM) before its duration.
    pub interrupted: bool,
}

/// How the run was executed (what the world does not know).
#[derive(Clone, Debug)]
pub struct RunContext {
    pub scenario: String,
    pub threads: usize,
    pub mode: ClockMode,
    pub speed: f64,
    pub wall_seconds: f64,
    pub interrupted: bool,
    /// Where a resumed run took up (its checkpoint): the rates and the
    /// real-time ratio are of this process's part of the run, the counters
    /// of the whole run.
    pub resumed: Option<Resumed>,
}

/// The checkpoint a resumed run started from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Resumed {
    pub virtual_seconds: f64,
    pub agent_ticks: u64,
}

impl RunReport {
    /// Gathers the report from a world after (or during) a run.
    pub fn gather(world: &mut World, ctx: &RunContext) -> Self {
        let digest = state_digest(world);
        let memory = memory_summary(world);
        let resources = resources_summary(world);
        let stats = world.resource::<RunStats>();
        let diag = world.resource::<ResolverDiagnostics>();
        let pool = world.resource::<AgentPool>();
        let clock = world.resource::<SimClock>();
        let archetypes = world.resource::<Archetypes>();
        let virtual_seconds = clock.elapsed_secs();
        let pace = world.get_resource::<PaceLog>().cloned().unwrap_or_default();
        let virtual_here = virtual_seconds - ctx.resumed.map_or(0.0, |r| r.virtual_seconds);
        let ticks_by_kind = stats
            .ticks_by_kind
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < archetypes.len())
            .map(|(k, n)| {
                (
                    archetypes
                        .name(continuum::agent::AgentKind(k as u16))
                        .to_owned(),
                    *n,
                )
            })
            .collect();
        let think = think_summary(world);
        let world_summary = world.get_resource::<Sites>().map_or(
            WorldSummary {
                sites: 0,
                sites_discovered: 0,
                sites_assessed: 0,
                harvested: 0.0,
            },
            |sites| WorldSummary {
                sites: sites.len(),
                sites_discovered: sites.iter().filter(|s| s.discovered_by.is_some()).count(),
                sites_assessed: sites.iter().filter(|s| s.assessments > 0).count(),
                // `+ 0.0`: a sum of nothing is -0.0, printed "-0.0".
                harvested: sites.iter().map(|s| f64::from(s.harvested)).sum::<f64>() + 0.0,
            },
        );
        Self {
            scenario: ctx.scenario.clone(),
            seed: world.resource::<SimSeed>().0,
            resumed_from: ctx.resumed,
            threads: ctx.threads,
            mode: ctx.mode.as_str(),
            speed: ctx.speed,
            speed_at_end: if pace.wall_seconds > 0.0 {
                pace.speed
            } else {
                ctx.speed
            },
            steps: clock.step(),
            virtual_seconds,
            wall_seconds: ctx.wall_seconds,
            paused_seconds: pace.paused_seconds,
            realtime_ratio: if pace.paced_seconds > 0.0 {
                pace.realtime_ratio(virtual_here)
            } else {
                realtime_ratio(virtual_here, ctx.wall_seconds, ctx.speed)
            },
            agents_active: pool.active(),
            agents_queued: pool.queued(),
            agent_ticks: stats.agent_ticks,
            agent_ticks_per_sec: if ctx.wall_seconds > 0.0 {
                stats
                    .agent_ticks
                    .saturating_sub(ctx.resumed.map_or(0, |r| r.agent_ticks)) as f64
                    / ctx.wall_seconds
            } else {
                0.0
            },
            ticks_by_kind,
            actions_submitted: diag.submitted,
            actions_applied: diag.applied,
            actions_rejected: diag.rejected,
            actions_failed: diag.failed,
            conflicts: diag.conflicts,
            pool: PoolSummary {
                max_agents: pool.max_agents(),
                limit: pool.limit(),
                requested: pool.requested(),
                active: pool.active(),
                queued: ByPriority::from_fn(|p| pool.queued_at(p)),
                retired: pool.retired(),
                wait_seconds: ByPriority::from_fn(|p| {
                    let (admitted, mean, p99) = pool.wait_stats(p);
                    WaitStats {
                        admitted,
                        mean,
                        p99,
                    }
                }),
            },
            memory,
            resources,
            step_ms: StepMs {
                p50: stats.step_ms_quantile(0.5),
                p99: stats.step_ms_quantile(0.99),
                max: stats.step_ms_max(),
                mean: if stats.step_times.is_empty() {
                    0.0
                } else {
                    stats.step_times.mean() / 1e6
                },
            },
            peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
            world: world_summary,
            think,
            state_digest: digest.to_string(),
            interrupted: ctx.interrupted,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The names of the figures of a run that starts from a scenario (not a
    /// checkpoint), as [`figures`] gives them, in alphabetical order, for
    /// runs whose kinds are `kinds`: every figure such a run can report,
    /// whether or not this run has it (a run without memory has no
    /// `memory.*`).
    pub fn figure_names(kinds: &[String]) -> Vec<String> {
        let template = RunReport {
            memory: Some(MemorySummary::default()),
            ticks_by_kind: kinds.iter().map(|k| (k.clone(), 0)).collect(),
            ..RunReport::default()
        };
        let value = serde_json::to_value(&template).expect("a report always serialises");
        figures(&value)
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name != "resumed_from")
            .collect()
    }
}

/// The scalar figures of a report (as JSON), flattened: nested objects give
/// dotted names (`world.harvested`, `ticks_by_kind.explorer`), lists (per
/// thread, the last budget changes) are left out, and `null` is an empty
/// value.
pub fn figures(report: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        use serde_json::Value;
        let cell = match value {
            Value::Object(fields) => {
                for (name, v) in fields {
                    let name = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&name, v, out);
                }
                return;
            }
            Value::Array(_) => return,
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
        };
        out.push((prefix.to_owned(), cell));
    }
    let mut out = Vec::new();
    walk("", report, &mut out);
    out
}

fn think_summary(world: &World) -> ThinkSummary {
    let d = world
        .get_resource::<ThinkDiagnostics>()
        .cloned()
        .unwrap_or_default();
    ThinkSummary {
        max_in_flight: world
            .get_resource::<ThinkSettings>()
            .map_or(0, |s| s.max_in_flight),
        started: d.started,
        finished: d.finished,
        late: d.late,
        delivered: d.delivered,
        waiting: d.waiting,
        in_flight: d.in_flight,
        peak_in_flight: d.peak_in_flight,
        mean_queue_seconds: d.mean_queue_seconds(),
        waits: d.waits,
    }
}

fn resources_summary(world: &mut World) -> ResourcesSummary {
    let threads = match world.get_resource_mut::<ThreadLoad>() {
        Some(mut load) => {
            load.gather();
            load.busy_fractions()
                .into_iter()
                .map(|(name, busy)| ThreadBusy { name, busy })
                .collect()
        }
        None => Vec::new(),
    };
    let stats = world
        .get_resource::<ResourceStats>()
        .cloned()
        .unwrap_or_default();
    let log = world
        .get_resource::<BudgetLog>()
        .cloned()
        .unwrap_or_default();
    let (ticks, full_rate) = world
        .get_resource::<ScheduleStats>()
        .map_or(([0; 3], [0; 3]), |s| {
            (s.ticks_by_priority, s.full_rate_ticks_by_priority)
        });
    let all_ticks: u64 = ticks.iter().sum();
    let mean = |sum: f64| {
        if stats.samples == 0 {
            0.0
        } else {
            sum / stats.samples as f64
        }
    };
    ResourcesSummary {
        cpu_percent_mean: mean(stats.cpu_sum),
        cpu_percent_max: stats.cpu_max,
        rss_bytes_mean: mean(stats.rss_sum),
        rss_bytes_max: stats.rss_max,
        samples: stats.samples,
        machine_memory_bytes: stats.total_memory,
        available_memory_bytes: stats.available_memory,
        sample_refresh_ms: stats.refresh_ms,
        budget_changes: BudgetChanges {
            count: log.count,
            last: log.recent.iter().rev().take(5).rev().cloned().collect(),
        },
        overload_level: stats.overload.level,
        ticks_by_priority: ByPriority::from_fn(|p| ticks[p as usize]),
        full_rate_ticks_by_priority: ByPriority::from_fn(|p| full_rate[p as usize]),
        full_rate_share: if all_ticks == 0 {
            1.0
        } else {
            full_rate.iter().sum::<u64>() as f64 / all_ticks as f64
        },
        threads,
        rebalance: world
            .get_resource::<RebalanceDiagnostics>()
            .copied()
            .unwrap_or_default(),
    }
}

fn memory_summary(world: &mut World) -> Option<MemorySummary> {
    let plan = world.get_resource::<MemoryPlan>()?.clone();
    let mut query = world.query::<(&Perception, &Memory)>();
    let (mut n, mut held, mut blocks, mut tiers) = (0usize, 0usize, 0usize, [0usize; 4]);
    for (perception, memory) in query.iter(world) {
        let (st, im, lt) = memory.lens();
        n += 1;
        held += memory.held_bytes() + perception.sites().len() * continuum::memory::RECORD_BYTES[0];
        blocks += memory.block_bytes();
        for (total, len) in tiers.iter_mut().zip([perception.sites().len(), st, im, lt]) {
            *total += len;
        }
    }
    let mean = |x: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let added = plan
        .baseline_rss
        .zip(current_rss_bytes())
        .map_or(0, |(before, now)| now.saturating_sub(before));
    let stats = world
        .get_resource::<SharedCache>()
        .map(SharedCache::stats)
        .unwrap_or_default();
    Some(MemorySummary {
        budget_bytes: plan.total_bytes,
        per_agent_limit_bytes: plan.per_agent_bytes,
        engine_bytes_per_agent: plan.engine_bytes_per_agent,
        bytes_per_agent: mean(added as usize),
        held_bytes_mean: mean(held),
        block_bytes_mean: mean(blocks),
        facts_per_tier: TierMeans {
            working: mean(tiers[0]),
            short_term: mean(tiers[1]),
            intermediate: mean(tiers[2]),
            long_term: mean(tiers[3]),
        },
        shared_cache: CacheSummary {
            capacity_bytes: stats.capacity_bytes,
            capacity: stats.capacity,
            len: stats.len,
            site_facts: stats.site_facts,
            ground_facts: stats.len - stats.site_facts,
            bytes: stats.bytes,
            hits: stats.hits,
            misses: stats.misses,
            hit_rate: stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64,
            evictions: stats.evictions,
            publications: stats.publications,
        },
    })
}

/// Writes the report as pretty JSON, atomically: a failed write keeps the previous report.
pub fn write_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    continuum::atomic_file::write_bytes_atomically(path, (report.to_json() + "\n").as_bytes())
}
