use super::*;

fn rules() -> OverloadRules {
    OverloadRules::default() // shed above 0.9, calm below 0.6, restore after 3
}

/// Runs the policy over a series of loads, with as many ticks of each
/// priority at full rate; returns the level after each.
fn levels(loads: &[f64]) -> Vec<usize> {
    let mut state = OverloadState::default();
    loads
        .iter()
        .map(|&load| {
            let ticks = LEVELS[state.level].rate.map(|r| (r * 1000.0) as u64);
            state = decide_overload(state, load, ticks, &rules()).0;
            state.level
        })
        .collect()
}

#[test]
fn a_heavy_overload_sheds_as_many_levels_as_it_needs_at_once() {
    // 5.5 times the real time allowed, the ticks split as in
    // `scenarios/million.ron` (5 % high, 15 % normal, 80 % background).
    let ticks = [800, 150, 50];
    let (state, decision) = decide_overload(OverloadState::default(), 5.5, ticks, &rules());
    assert_eq!(decision, Decision::Shed);
    // Level 6 would run 80 + 37.5 + 50 of the 1000 ticks (load 0.92), level 7
    // 40 + 37.5 + 50 (0.70).
    assert_eq!(state.level, 7);
    assert!(estimated_load(5.5, ticks, 0, 6) > 0.9);
    assert!((estimated_load(5.5, ticks, 0, 7) - 5.5 * 0.1275).abs() < 1e-6);
    // Even the deepest rates leave more than shed_above: all the way down.
    let (state, _) = decide_overload(OverloadState::default(), 20.0, ticks, &rules());
    assert_eq!(state.level, LEVELS.len() - 1);
    // Further down, the estimate starts from the level the ticks ran at: from
    // level 7, level 8 runs two fifths of the background and normal ticks.
    let at_7 = [40, 38, 10];
    let (state, _) = decide_overload(OverloadState { level: 7, calm: 2 }, 1.85, at_7, &rules());
    assert_eq!(state, OverloadState { level: 8, calm: 0 });
    assert!((estimated_load(1.85, at_7, 7, 8) - 1.85 * 41.2 / 88.0).abs() < 1e-6);
    // Under twice the line, one level at a time (level 3 only lowers CPU
    // shares, which the estimate does not see).
    let (state, _) = decide_overload(OverloadState { level: 2, calm: 0 }, 1.7, ticks, &rules());
    assert_eq!(state.level, 3);
    // The estimate is relative to the level the ticks ran at.
    let at_4 = LEVELS[4].rate.map(|r| (r * 1000.0) as u64);
    assert!((estimated_load(1.0, at_4, 4, 4) - 1.0).abs() < 1e-12);
    assert!((estimated_load(1.0, at_4, 4, 0) - 3000.0 / 2100.0).abs() < 1e-6);
    // No ticks counted: one level at a time, as the load says nothing of them.
    let (state, _) = decide_overload(OverloadState::default(), 5.5, [0; 3], &rules());
    assert_eq!(state.level, 1);
}

#[test]
fn overload_sheds_a_level_per_evaluation_and_restores_after_calm_only() {
    assert_eq!(levels(&[0.95, 0.97, 0.99]), [1, 2, 3]);
    // Between the thresholds: hold; a calm streak broken by a busy-ish evaluation
    // starts again (no flapping).
    assert_eq!(
        levels(&[0.95, 0.7, 0.5, 0.5, 0.7, 0.5, 0.5, 0.5]),
        [1, 1, 1, 1, 1, 1, 1, 0]
    );
    // It never goes past the deepest level, and comes back one level at a time.
    let mut loads = vec![1.0; 20];
    loads.extend(vec![0.1; 3 * (LEVELS.len() - 1)]);
    let got = levels(&loads);
    assert_eq!(got[19], LEVELS.len() - 1);
    assert_eq!(got[22], LEVELS.len() - 2);
    assert_eq!(*got.last().unwrap(), 0);
}

#[test]
fn levels_shed_background_first_and_never_touch_high_priority() {
    let (bg, normal, high) = (0, 1, 2);
    for pair in LEVELS.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        for p in [bg, normal, high] {
            assert!(
                b.rate[p] <= a.rate[p] && b.cpu[p] <= a.cpu[p],
                "levels only ever shed more"
            );
        }
    }
    for l in LEVELS {
        assert_eq!((l.rate[high], l.cpu[high]), (1.0, 1.0));
        // Normal agents lose nothing while background agents still run at full
        // rate and share.
        if l.rate[normal] < 1.0 || l.cpu[normal] < 1.0 {
            assert!(l.rate[bg] < 1.0 && l.cpu[bg] < 1.0);
        }
    }
    assert!(
        LEVELS[1].rate[bg] < 1.0 && LEVELS[1].rate[normal] == 1.0,
        "background goes first"
    );
    assert!(LEVELS.last().unwrap().hold_admission);
}

fn agent(limit: u32, held: u32, work: f32) -> AgentLoad {
    AgentLoad {
        memory_limit: limit,
        memory_held: held,
        memory_floor: 50,
        memory_ceiling: 400,
        cpu_share: 0.25,
        work,
        ticks: 100,
        priority_boost: false,
    }
}

#[test]
fn memory_moves_from_idle_agents_to_full_ones_within_the_total() {
    let agents = [
        agent(200, 190, 10.0), // full
        agent(200, 20, 10.0),  // nearly empty: gives 50
        agent(200, 100, 10.0), // in between: untouched
        agent(200, 200, 10.0), // full
    ];
    let (updates, summary) = rebalance(&agents, 800, 0.25, &RebalanceRules::default());
    let limit = |i: usize| {
        updates
            .iter()
            .find(|u| u.index as usize == i)
            .map_or(agents[i].memory_limit, |u| u.memory_limit)
    };
    assert_eq!(limit(1), 150);
    assert_eq!(limit(2), 200);
    // 50 bytes freed: the fullest agent (3) gets its 50 first, agent 0 nothing left.
    assert_eq!((limit(3), limit(0)), (250, 200));
    assert_eq!(
        (
            summary.memory_donors,
            summary.memory_receivers,
            summary.memory_moved
        ),
        (1, 1, 50)
    );
    let total: u32 = (0..4).map(limit).sum();
    assert!(u64::from(total) <= 800);
}

#[test]
fn unused_budget_is_handed_out_and_floors_and_ceilings_hold() {
    let agents = [agent(390, 390, 1.0), agent(60, 0, 1.0), agent(100, 95, 1.0)];
    let (updates, _) = rebalance(&agents, 2_000, 1.0 / 3.0, &RebalanceRules::default());
    let limit = |i: usize| {
        updates
            .iter()
            .find(|u| u.index as usize == i)
            .map_or(agents[i].memory_limit, |u| u.memory_limit)
    };
    assert_eq!(limit(0), 400, "capped at the ceiling");
    assert_eq!(limit(1), 50, "never below the floor");
    assert_eq!(limit(2), 125);
    for seed in 0..50u64 {
        let agents: Vec<AgentLoad> = (0..40)
            .map(|i| {
                let h = crate::hash::mix(seed, i);
                let limit = 50 + (h % 300) as u32;
                agent(
                    limit,
                    (crate::hash::mix(h, 1) % u64::from(limit + 1)) as u32,
                    (h % 7) as f32,
                )
            })
            .collect();
        let total: u64 = agents
            .iter()
            .map(|a| u64::from(a.memory_limit))
            .sum::<u64>()
            + seed * 10;
        let (updates, summary) = rebalance(&agents, total, 1.0 / 40.0, &RebalanceRules::default());
        let sum: u64 = (0..40)
            .map(|i| {
                u64::from(
                    updates
                        .iter()
                        .find(|u| u.index as usize == i)
                        .map_or(agents[i].memory_limit, |u| u.memory_limit),
                )
            })
            .sum();
        assert!(sum <= total, "seed {seed}: {sum} > {total}");
        let shares: f32 = (0..40)
            .map(|i| {
                updates
                    .iter()
                    .find(|u| u.index as usize == i)
                    .map_or(agents[i].cpu_share, |u| u.cpu_share)
            })
            .sum();
        assert!(summary.share_scale > 0.0 && summary.share_scale <= 1.0);
        assert!(
            shares * summary.share_scale <= 1.0 + 1e-5,
            "seed {seed}: shares, scaled by {}, add up to {shares}",
            summary.share_scale
        );
    }
}

/// Shares are kept unscaled: once the busy agents' shares reach the cap and
/// the idle ones' the floor, rebalancing the same loads changes nothing more,
/// though the shares add up to more than one (scaled, they add up to one).
/// Scaled after their bounds, they were moved every round.
#[test]
fn shares_at_their_bounds_stay_put_round_after_round() {
    let rules = RebalanceRules::default();
    let fair = 0.1;
    let mut agents: Vec<AgentLoad> = (0..10)
        .map(|i| agent(100, 50, if i < 4 { 100.0 } else { 1.0 }))
        .collect();
    for a in &mut agents {
        a.cpu_share = fair;
    }
    let mut rounds = 0;
    let scale = loop {
        let (updates, summary) = rebalance(&agents, 1000, fair, &rules);
        rounds += 1;
        if updates.is_empty() {
            break summary.share_scale;
        }
        assert!(
            rounds < 20,
            "still moving after {rounds} rounds: {updates:?}"
        );
        for u in updates {
            let a = &mut agents[u.index as usize];
            (a.cpu_share, a.priority_boost) = (u.cpu_share, u.priority_boost);
        }
    };
    assert_eq!(rounds, 8, "seven rounds up to the cap, then none");
    for (i, a) in agents.iter().enumerate() {
        let bound = if i < 4 { rules.cpu_max } else { rules.cpu_min };
        assert!(
            (a.cpu_share - fair * bound).abs() < 1e-6,
            "{i}: {}",
            a.cpu_share
        );
        assert!(!a.priority_boost, "{i}: scaled, below the cap");
    }
    let sum: f32 = agents.iter().map(|a| a.cpu_share).sum();
    assert!(sum > 1.0);
    assert!((sum * scale - 1.0).abs() < 1e-5, "{sum} × {scale}");
}

#[test]
fn busy_agents_get_larger_cpu_shares_and_idle_ones_smaller() {
    let mut agents = [
        agent(100, 50, 40.0),
        agent(100, 50, 10.0),
        agent(100, 50, 2.0),
        agent(100, 50, 8.0),
    ];
    for a in &mut agents {
        a.cpu_share = 0.2;
    }
    let (updates, summary) = rebalance(&agents, 400, 0.25, &RebalanceRules::default());
    let share = |i: usize| {
        updates
            .iter()
            .find(|u| u.index as usize == i)
            .map_or(agents[i].cpu_share, |u| u.cpu_share)
    };
    assert_eq!((summary.boosted, summary.trimmed), (1, 1));
    assert!((share(0) - 0.25).abs() < 1e-6 && share(2) == 0.15 && share(1) == 0.2);
    let first = updates.iter().find(|u| u.index == 0).unwrap();
    assert!(!first.priority_boost, "0.25 is the fair share, not above");
}

/// Only an agent whose share reached `boost_at` fair shares (by default the
/// cap, `cpu_max`) is boosted, not every agent above the fair share (shares
/// add up to one, so about half of them are whenever work is uneven).
#[test]
fn only_agents_at_boost_at_fair_shares_are_boosted() {
    let mut agents = [
        agent(100, 50, 50.0),
        agent(100, 50, 50.0),
        agent(100, 50, 1.0),
        agent(100, 50, 1.0),
        agent(100, 50, 1.0),
        agent(100, 50, 1.0),
    ];
    let fair = 0.1;
    for (a, share) in agents.iter_mut().zip([0.15, 0.35, 0.1, 0.1, 0.1, 0.1]) {
        a.cpu_share = share;
    }
    let rules = RebalanceRules::default();
    assert_eq!(rules.boost_at, rules.cpu_max);
    let (updates, _) = rebalance(&agents, 600, fair, &rules);
    let update = |i: u32| *updates.iter().find(|u| u.index == i).unwrap();
    // Both busy agents' shares grow by a quarter, the second's up to the cap
    // (the shares add up to 0.8875, so none is scaled down).
    assert!((update(0).cpu_share - 0.1875).abs() < 1e-6);
    assert!((update(1).cpu_share - 0.4).abs() < 1e-6);
    assert!(
        !update(0).priority_boost,
        "1.9 fair shares: above fair, not boosted"
    );
    assert!(
        update(1).priority_boost,
        "at the cap of 4 fair shares: boosted"
    );
    let lenient = RebalanceRules {
        boost_at: 1.5,
        ..rules
    };
    let (updates, _) = rebalance(&agents, 600, fair, &lenient);
    assert!(
        updates
            .iter()
            .find(|u| u.index == 0)
            .unwrap()
            .priority_boost
    );
}

#[test]
fn a_quantile_measures_the_slow_steps_the_mean_averages_away() {
    // 98 steps of 4 ms and two of 30: a mean of 4.5 ms.
    let mut steps: Vec<u64> = (0..100)
        .map(|i| if i % 50 == 7 { 30_000_000 } else { 4_000_000 })
        .collect();
    assert_eq!(LoadMeasure::Mean.of(&mut steps), Some(4_520_000.0));
    // All but the slowest in a hundred: the second slowest step.
    assert_eq!(
        LoadMeasure::Quantile(0.99).of(&mut steps),
        Some(30_000_000.0)
    );
    assert_eq!(
        LoadMeasure::Quantile(0.98).of(&mut steps),
        Some(4_000_000.0)
    );
    assert_eq!(
        LoadMeasure::Quantile(1.0).of(&mut steps),
        Some(30_000_000.0)
    );
    // The slowest step of a few, and nothing of none.
    assert_eq!(LoadMeasure::Quantile(0.99).of(&mut [1, 9, 3]), Some(9.0));
    assert_eq!(LoadMeasure::Quantile(0.5).of(&mut [1, 9, 3, 7]), Some(3.0));
    assert_eq!(LoadMeasure::Quantile(0.99).of(&mut []), None);
    assert_eq!(LoadMeasure::Mean.of(&mut []), None);
}
