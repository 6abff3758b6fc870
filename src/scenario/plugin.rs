use bevy_app::prelude::*;
use bevy_ecs::prelude::*;

use super::Scenario;
use crate::action::ConflictResolver;
use crate::agent::{AgentPool, Body};
use crate::archetype::Archetypes;
use crate::clock::{SimClock, SimSeed};
use crate::digest::mix;

/// Seeds an `App` from a [`Scenario`]: the seed, clock, world, pool, conflict
/// strategy and kinds as resources, and the scenario's groups as spawn requests
/// at startup.
pub struct ScenarioPlugin {
    scenario: Scenario,
}

impl ScenarioPlugin {
    /// Seeds the app from `scenario` (which should have been validated).
    pub fn new(scenario: Scenario) -> Self {
        Self { scenario }
    }
}

/// The scenario an app was built from.
#[derive(Resource, Clone, Debug)]
pub struct ActiveScenario(pub Scenario);

impl Plugin for ScenarioPlugin {
    fn build(&self, app: &mut App) {
        let s = &self.scenario;
        app.insert_resource(SimSeed(s.seed))
            .insert_resource(s.clock_settings())
            .insert_resource(s.world_settings())
            .insert_resource(AgentPool::new(s.max_agents()))
            .insert_resource(ConflictResolver {
                strategy: s.conflicts.into(),
                ..Default::default()
            })
            .insert_resource(s.archetypes())
            .insert_resource(ActiveScenario(s.clone()))
            .add_systems(Startup, request_groups);
    }
}

const KIND_SALT: u64 = 0x6b69_6e64_0000_0000;

/// Requests every agent of the scenario's groups. Within a group, agents' first
/// ticks are spread evenly over one period, so every step carries the same load.
fn request_groups(
    scenario: Res<ActiveScenario>,
    archetypes: Res<Archetypes>,
    clock: Res<SimClock>,
    mut pool: ResMut<AgentPool>,
) {
    let s = &scenario.0;
    let mut n = 0u64;
    for group in &s.groups {
        let kinds: Vec<_> = group
            .kind
            .iter()
            .chain(&group.kinds)
            .filter_map(|k| archetypes.kind(k))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        for i in 0..group.count {
            let kind = kinds[(mix(s.seed ^ KIND_SALT, n) % kinds.len() as u64) as usize];
            n += 1;
            let mut bp = archetypes.blueprint(kind);
            bp.tick_hz = group.tick_hz.unwrap_or(bp.tick_hz);
            bp.priority = group.priority.unwrap_or(bp.priority);
            bp.body = Body {
                speed: group.speed.unwrap_or(bp.body.speed),
                perception_radius: group.perception_radius.unwrap_or(bp.body.perception_radius),
                ..bp.body
            };
            bp.memory_sites = group.memory_sites.unwrap_or(bp.memory_sites);
            bp.phase = Some(f64::from(i) / f64::from(group.count));
            pool.request(bp, clock.now());
        }
    }
}
