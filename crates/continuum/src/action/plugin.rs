use std::cmp::Ordering;
use std::time::Instant;

use bevy_app::prelude::*;
use bevy_ecs::component::Mutable;
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use bevy_tasks::ComputeTaskPool;

use super::*;
use crate::agent::{Agent, AgentLists};
use crate::clock::{SimClock, SimSeed, configure_phases};
use crate::memory::{Publication, SharedCache};
use crate::parallel::ThreadLoad;
use crate::phases::{ContinuumSystems, LearnSystems};
use crate::world::WorldMap;

/// Actions as messages, the conflict resolver, and delivery of outcomes.
///
/// The step's [`Action`] messages stay readable like any Bevy message (the
/// resolver reads them, it does not take them away): a game system after
/// [`ContinuumSystems::Resolve`], or in `Update`, sees every action of the
/// steps that ran, and the [`Outcome`] of each. Facts that applying an action
/// teaches everyone are written as [`Publication`] messages for the memory
/// plugin. Every agent gets a [`Feedback`] (a required component of `Agent`).
///
/// It needs the world plugin's [`WorldMap`] (its reach). A plugin whose
/// targets live in regions of its own (the sites model's sites) registers
/// them with [`RegionalTargetsAppExt::set_regional_targets`]: the resolver
/// then applies their winning actions, region by region in parallel, and the
/// memory plugin's shared cache is handed to it when there is one. Every
/// other target is the model's to apply.
///
/// To swap the resolver, set [`ConflictResolver::strategy`] to
/// [`ConflictStrategy::Custom`]; to replace resolution altogether, disable this
/// plugin in the group and add systems of your own to
/// [`ContinuumSystems::Resolve`].
pub struct ActionPlugin {
    schedule: Interned<dyn ScheduleLabel>,
}

impl ActionPlugin {
    /// Runs resolution and delivery in `schedule` (usually `FixedUpdate`).
    pub fn new(schedule: impl ScheduleLabel) -> Self {
        Self {
            schedule: schedule.intern(),
        }
    }
}

impl Plugin for ActionPlugin {
    fn build(&self, app: &mut App) {
        configure_phases(app, self.schedule);
        app.register_required_components::<Agent, Feedback>()
            .add_message::<Action>()
            .add_message::<Outcome>()
            .add_message::<Publication>()
            .init_resource::<ConflictResolver>()
            .init_resource::<ResolverDiagnostics>()
            .init_resource::<InformedAgents>()
            .init_resource::<ThreadLoad>()
            .add_systems(
                self.schedule,
                deliver_outcomes.in_set(LearnSystems::Deliver),
            );
    }

    fn finish(&self, app: &mut App) {
        // The resolver for the regional targets registered (by then every
        // plugin has been built), or for none.
        let add = app
            .world_mut()
            .remove_resource::<RegionalResolver>()
            .map_or(add_resolver::<NoRegions> as AddResolver, |r| r.0);
        add(app, self.schedule);
    }
}

/// Targets a plugin keeps in regions of its own, such as the sites model's
/// sites ([`Sites`](crate::world::Sites)): the resolver hands each region's
/// winning actions to [`apply`](Self::apply), the regions in parallel, each
/// region to one thread at a time. Register the resource's type with
/// [`RegionalTargetsAppExt::set_regional_targets`].
pub trait RegionalTargets: Resource<Mutability = Mutable> {
    /// One region: all that applying its targets' actions may change.
    type Region: Send;

    /// Where `target` belongs.
    fn place(&self, target: Target) -> Placement;

    /// The regions, in a fixed order: outcomes are written in it.
    fn regions_mut(&mut self) -> &mut [Self::Region];

    /// Applies a winning action to its region and returns its result; facts
    /// everyone learns from it go into `published` (for the shared cache).
    fn apply(
        region: &mut Self::Region,
        action: &Action,
        ctx: &ApplyContext,
        published: &mut Vec<Publication>,
    ) -> ActionResult;
}

/// Where a target belongs, for the resolver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the region of this index.
    Region(usize),
    /// Among the regional targets, but no such target exists: the action
    /// fails ([`FailReason::UnknownTarget`]).
    Unknown,
    /// Not a regional target: the model that aims at it applies it.
    Model,
}

/// What applying an action reads besides its region.
pub struct ApplyContext<'a> {
    /// How far an agent reaches ([`WorldMap::reach`]).
    pub reach: f32,
    /// The shared cache, if the memory plugin keeps one.
    pub cache: Option<&'a SharedCache>,
}

/// Registers the regional targets the resolver applies actions to.
pub trait RegionalTargetsAppExt {
    /// The resource `W`'s targets are applied by the resolver, region by
    /// region (one type per app: the latest registered).
    fn set_regional_targets<W: RegionalTargets>(&mut self) -> &mut Self;
}

impl RegionalTargetsAppExt for App {
    fn set_regional_targets<W: RegionalTargets>(&mut self) -> &mut Self {
        self.insert_resource(RegionalResolver(add_resolver::<W>))
    }
}

type AddResolver = fn(&mut App, Interned<dyn ScheduleLabel>);

/// Adds the resolver for the registered regional targets, when the action
/// plugin finishes.
#[derive(Resource)]
struct RegionalResolver(AddResolver);

fn add_resolver<W: RegionalTargets>(app: &mut App, schedule: Interned<dyn ScheduleLabel>) {
    app.add_systems(
        schedule,
        resolve_actions::<W>.in_set(ContinuumSystems::Resolve),
    );
}

/// No regional targets: every target is a model's.
#[derive(Resource)]
struct NoRegions;

impl RegionalTargets for NoRegions {
    type Region = ();

    fn place(&self, _: Target) -> Placement {
        Placement::Model
    }

    fn regions_mut(&mut self) -> &mut [()] {
        &mut []
    }

    fn apply(
        _: &mut (),
        action: &Action,
        _: &ApplyContext,
        _: &mut Vec<Publication>,
    ) -> ActionResult {
        apply_model(action)
    }
}

/// Per-region work buffers, kept between steps so that resolution allocates
/// nothing once warm.
#[derive(Default)]
struct ResolveScratch {
    buckets: Vec<Vec<Action>>,
    regions: Vec<RegionOut>,
    unresolvable: Vec<Outcome>,
}

/// What resolving one region produced.
#[derive(Default)]
struct RegionOut {
    outcomes: Vec<Outcome>,
    /// Facts to publish in the shared cache, in the region's resolution order.
    published: Vec<Publication>,
    tally: RegionTally,
}

#[derive(Default, Clone, Copy)]
struct RegionTally {
    applied: u64,
    rejected: u64,
    failed: u64,
    conflicts: u64,
}

/// Everything resolving a region reads besides the region itself.
struct Rules<'a> {
    resolver: &'a ConflictResolver,
    apply: ApplyContext<'a>,
    ctx: ConflictContext,
}

fn total_order(a: &Action, b: &Action) -> Ordering {
    a.target
        .cmp(&b.target)
        .then(a.agent.cmp(&b.agent))
        .then(a.timestamp.cmp(&b.timestamp))
        .then(a.kind.code().cmp(&b.kind.code()))
}

fn resolve_actions<W: RegionalTargets>(
    mut actions: MessageReader<Action>,
    mut outcomes: MessageWriter<Outcome>,
    mut publications: MessageWriter<Publication>,
    mut regional: Option<ResMut<W>>,
    cache: Option<Res<SharedCache>>,
    (resolver, map, clock, seed): (
        Res<ConflictResolver>,
        Res<WorldMap>,
        Res<SimClock>,
        Res<SimSeed>,
    ),
    mut diagnostics: ResMut<ResolverDiagnostics>,
    mut scratch: Local<ResolveScratch>,
    load: Res<ThreadLoad>,
) {
    let started = Instant::now();
    let scratch = &mut *scratch;
    let regions = regional
        .as_mut()
        .map_or(0, |w| w.bypass_change_detection().regions_mut().len());

    scratch
        .buckets
        .resize_with(regions + MODEL_BUCKETS, Vec::new);
    scratch
        .regions
        .resize_with(regions + MODEL_BUCKETS, RegionOut::default);

    let mut submitted = 0u64;
    for &action in actions.read() {
        submitted += 1;
        let place = regional
            .as_ref()
            .map_or(Placement::Model, |w| w.place(action.target));
        let bucket = match place {
            Placement::Region(region) if region < regions => Some(region),
            Placement::Region(_) | Placement::Unknown => None,
            Placement::Model => {
                Some(regions + (action.target.key() % MODEL_BUCKETS as u64) as usize)
            }
        };
        match bucket {
            Some(bucket) => scratch.buckets[bucket].push(action),
            None => scratch.unresolvable.push(outcome(
                &action,
                ActionResult::Failed {
                    reason: FailReason::UnknownTarget,
                },
            )),
        }
    }
    if submitted == 0 {
        return;
    }
    if !scratch.unresolvable.is_empty() {
        tracing::warn!(
            step = clock.step(),
            count = scratch.unresolvable.len(),
            "actions aimed at regional targets that do not exist failed"
        );
    }

    let rules = Rules {
        resolver: &resolver,
        apply: ApplyContext {
            reach: map.reach(),
            cache: cache.as_deref(),
        },
        ctx: ConflictContext {
            seed: seed.0,
            step: clock.step(),
        },
    };
    let rules = &rules;
    // The regions, then the buckets of model targets (which touch no region:
    // the model applies its winners).
    let work = regional
        .as_deref_mut()
        .into_iter()
        .flat_map(|w| w.regions_mut().iter_mut())
        .map(Some)
        .chain(std::iter::repeat_with(|| None).take(MODEL_BUCKETS))
        .zip(scratch.buckets.iter_mut())
        .zip(scratch.regions.iter_mut())
        .filter(|((_, bucket), _)| !bucket.is_empty());
    let threads = load.threads();
    if submitted as usize >= resolver.parallel_threshold && threads > 1 {
        // Regions in runs of about equal numbers of actions, a few runs per
        // thread: one task per region would cost more to hand out than many
        // small regions take to resolve.
        let per_task = (submitted as usize).div_ceil(threads * 4).max(1);
        let mut work = work.peekable();
        ComputeTaskPool::get_or_init(Default::default).scope(|scope| {
            while work.peek().is_some() {
                let mut run = Vec::new();
                let mut actions = 0;
                while actions < per_task
                    && let Some(item) = work.next()
                {
                    actions += item.0.1.len();
                    run.push(item);
                }
                scope.spawn(async move {
                    for ((region, bucket), out) in run {
                        resolve_region::<W>(region, bucket, out, rules);
                    }
                });
            }
        });
    } else {
        for ((region, bucket), out) in work {
            resolve_region::<W>(region, bucket, out, rules);
        }
    }

    // Merge in region order: the same on every run, whichever thread finished first.
    let mut total = RegionTally {
        failed: scratch.unresolvable.len() as u64,
        ..Default::default()
    };
    outcomes.write_batch(scratch.unresolvable.drain(..));
    for out in scratch.regions.iter_mut() {
        let t = std::mem::take(&mut out.tally);
        total.applied += t.applied;
        total.rejected += t.rejected;
        total.failed += t.failed;
        total.conflicts += t.conflicts;
        outcomes.write_batch(out.outcomes.drain(..));
        publications.write_batch(out.published.drain(..));
    }
    diagnostics.submitted += submitted;
    diagnostics.applied += total.applied;
    diagnostics.rejected += total.rejected;
    diagnostics.failed += total.failed;
    diagnostics.conflicts += total.conflicts;
    diagnostics.last_resolve_ns = started.elapsed().as_nanos() as u64;
}

fn outcome(action: &Action, result: ActionResult) -> Outcome {
    Outcome {
        agent: action.agent,
        entity: action.entity,
        timestamp: action.timestamp,
        target: action.target,
        kind: action.kind,
        result,
    }
}

/// How many buckets model targets (all but the regional ones) are spread over by their
/// [`Target::key`], to be resolved in parallel like regions. Fixed, so that the
/// order outcomes are written in does not depend on the number of threads.
const MODEL_BUCKETS: usize = 64;

/// Resolves one bucket's actions: sorts them into the total order, picks one
/// winner per target and applies it. A region (the bucket of its targets'
/// actions) is this call's alone; a bucket of model targets has none.
fn resolve_region<W: RegionalTargets>(
    mut region: Option<&mut W::Region>,
    bucket: &mut Vec<Action>,
    out: &mut RegionOut,
    rules: &Rules,
) {
    bucket.sort_unstable_by(total_order);
    for group in bucket.chunk_by(|a, b| a.target == b.target) {
        let winner = if group.len() == 1 {
            0
        } else {
            out.tally.conflicts += 1;
            rules.resolver.strategy.winner(group, &rules.ctx)
        };
        for (i, action) in group.iter().enumerate() {
            let result = if i == winner {
                match region.as_deref_mut() {
                    Some(region) => W::apply(region, action, &rules.apply, &mut out.published),
                    None => apply_model(action),
                }
            } else {
                ActionResult::Rejected {
                    winner: group[winner].agent,
                }
            };
            match result {
                ActionResult::Applied { .. } => out.tally.applied += 1,
                ActionResult::Rejected { .. } => out.tally.rejected += 1,
                ActionResult::Failed { .. } => out.tally.failed += 1,
            }
            out.outcomes.push(outcome(action, result));
        }
    }
    bucket.clear();
}

/// A winning action on a model's target: the model applies its own actions
/// (it reads the outcome); the sites model's kinds of action need a site.
pub fn apply_model(action: &Action) -> ActionResult {
    match action.kind {
        ActionKind::Custom { value, .. } => ActionResult::Applied { value },
        ActionKind::Report | ActionKind::Assess { .. } | ActionKind::Harvest { .. } => {
            ActionResult::Failed {
                reason: FailReason::UnknownTarget,
            }
        }
    }
}

/// The agents that received an outcome in this step (learn systems need look at
/// no others).
#[derive(Resource, Default)]
pub struct InformedAgents(AgentLists);

impl std::ops::Deref for InformedAgents {
    type Target = AgentLists;
    fn deref(&self) -> &AgentLists {
        &self.0
    }
}

/// Delivers this step's outcomes to the acting agents' `Feedback`,
/// and lists those agents in [`InformedAgents`].
fn deliver_outcomes(
    clock: Res<SimClock>,
    mut outcomes: MessageReader<Outcome>,
    mut informed: ResMut<InformedAgents>,
    mut agents: Query<(&Agent, &mut Feedback)>,
) {
    let step = clock.step();
    informed.0.clear(step);
    for o in outcomes.read() {
        let Ok((agent, mut feedback)) = agents.get_mut(o.entity) else {
            continue;
        };
        if !feedback.is_fresh(step) {
            // Its first outcome of the step: listed once.
            informed.0.push(o.entity, agent.kind);
        }
        feedback.deliver(step, o.target, o.kind, o.result);
    }
}
