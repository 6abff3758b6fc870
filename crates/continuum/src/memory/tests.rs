use super::*;
use crate::agent::AgentId;

fn rules() -> MemoryRules {
    MemoryRules {
        capacity: TierCaps {
            working: 6,
            short_term: 6,
            intermediate: 3,
            long_term: 2,
        },
        promote_after: 2,
        long_term_after: 3,
        half_life: 10.0,
        forget_below: 0.25,
        contradiction: 0.5,
    }
}

fn memory() -> Memory {
    let r = rules();
    Memory::with_caps(r.capacity, r.capacity.bytes() as u32)
}

fn s(i: u32) -> SiteId {
    SiteId(i)
}

#[test]
fn repeated_sightings_promote_short_term_to_intermediate_to_long_term() {
    let r = rules();
    let mut m = memory();
    let value = |_| Some(7.0);
    m.consolidate(&[s(1)], 0, &r, value);
    assert_eq!(m.short_term().len(), 1);
    assert!(!m.knows(s(1)), "one sighting is only an observation");
    m.consolidate(&[s(1)], 100, &r, value);
    let (f, tier) = m.fact(s(1)).expect("two sightings make a fact");
    assert_eq!(
        (tier, f.hits, f.value, f.at),
        (Tier::Intermediate, 1, 7.0, 100)
    );
    m.consolidate(&[s(1)], 200, &r, value);
    assert_eq!(m.fact(s(1)).unwrap().0.hits, 2);
    m.consolidate(&[s(1)], 300, &r, value);
    let (f, tier) = m.fact(s(1)).unwrap();
    assert_eq!(
        (tier, f.hits),
        (Tier::LongTerm, 3),
        "the third confirmation makes it long-term"
    );
    assert!(m.intermediate().is_empty());
}

#[test]
fn confidence_halves_every_half_life_and_faded_facts_are_forgotten() {
    let r = rules();
    let mut m = memory();
    m.consolidate(&[s(1)], 0, &r, |_| None);
    m.consolidate(&[s(1)], 1_000, &r, |_| None);
    let f = *m.fact(s(1)).unwrap().0;
    assert!((f.confidence_at(11_000, r.half_life) - 0.5).abs() < 1e-4);
    assert!((f.confidence_at(21_000, r.half_life) - 0.25).abs() < 1e-4);
    // Two half-lives after its last sighting, the fact is at the threshold: kept.
    m.consolidate(&[], 21_000, &r, |_| None);
    assert!(m.knows(s(1)));
    // A moment later it falls below and is forgotten.
    m.consolidate(&[], 21_100, &r, |_| None);
    assert!(!m.knows(s(1)));
}

#[test]
fn contradictions_cut_confidence_and_demote_long_term_facts() {
    let r = rules();
    let mut m = memory();
    for t in 0..4 {
        m.consolidate(&[s(1)], t * 100, &r, |_| Some(9.0));
    }
    assert_eq!(m.fact(s(1)).unwrap().1, Tier::LongTerm);
    m.contradict(s(1), Some(0.0), 500, &r);
    let (f, tier) = m.fact(s(1)).unwrap();
    assert_eq!(
        tier,
        Tier::Intermediate,
        "a contradicted long-term fact falls back"
    );
    assert_eq!((f.value, f.hits), (0.0, 1));
    assert!((f.confidence() - 0.5).abs() < 1e-4);
    m.contradict(s(1), None, 500, &r);
    assert!(
        (m.fact(s(1)).unwrap().0.confidence() - 0.25).abs() < 1e-4,
        "at the threshold: kept"
    );
    m.contradict(s(1), None, 500, &r);
    assert!(!m.knows(s(1)), "0.125 is below the threshold: forgotten");
}

#[test]
fn tiers_never_exceed_their_capacities() {
    let r = rules();
    let mut m = memory();
    let mut rng = 1u64;
    for t in 0..5_000u32 {
        let seen: Vec<SiteId> = (0..6)
            .map(|_| {
                rng = crate::hash::mix(rng, 7);
                s((rng % 12) as u32)
            })
            .collect();
        m.consolidate(&seen, t * 100, &r, |site| Some(site.0 as f32));
        if t % 7 == 0 {
            m.contradict(seen[0], None, t * 100, &r);
        }
        if t % 11 == 0 {
            m.learn(seen[1], 3.0, t * 100, ASSESSED_BY_ME, &r);
        }
        let (st, im, lt) = m.lens();
        assert!(st <= 6 && im <= 3 && lt <= 2, "{st} {im} {lt}");
        assert!(m.held_bytes() <= r.capacity.bytes());
        // The slab blocks follow what is held: never less, at most four times.
        assert!(m.held_bytes() <= m.block_bytes() && m.block_bytes() <= 4 * m.held_bytes());
        let mut sites: Vec<_> = m.facts().map(|f| f.site).collect();
        sites.sort();
        sites.dedup();
        assert_eq!(sites.len(), im + lt, "a site is held in one tier at most");
    }
}

/// The component is a small header; its records take slab blocks only while
/// there are records, and a copy holds its own.
#[test]
fn memory_takes_room_only_for_what_it_holds() {
    assert_eq!(size_of::<Memory>(), 24);
    let r = rules();
    let mut m = memory();
    assert_eq!(m.block_bytes(), 0);
    m.consolidate(&[s(1), s(2)], 0, &r, |_| Some(1.0));
    m.consolidate(&[s(1), s(3)], 100, &r, |_| Some(1.0));
    assert_eq!(m.lens(), (2, 1, 0));
    assert_eq!(
        m.block_bytes(),
        2 * size_of::<Observation>() + 2 * size_of::<Fact>()
    );
    let copy = m.clone();
    // Capacities cut to nothing: every record goes, and the blocks with them.
    m.set_caps(TierCaps::NONE, 100, &r);
    assert_eq!((m.lens(), m.block_bytes()), ((0, 0, 0), 0));
    assert_eq!(copy.lens(), (2, 1, 0), "the copy kept its records");
    assert_eq!(copy.fact(s(1)).map(|(f, _)| f.value), Some(1.0));
}

#[test]
fn a_full_long_term_keeps_the_most_valuable_facts() {
    let r = rules();
    let mut m = memory();
    for (site, value) in [(1, 5.0), (2, 9.0), (3, 1.0)] {
        for t in 0..4 {
            m.consolidate(&[s(site)], site * 1000 + t * 10, &r, |_| Some(value));
        }
    }
    let mut lt: Vec<u32> = m.long_term().iter().map(|f| f.site.0).collect();
    lt.sort();
    assert_eq!(lt, [1, 2], "the 1.0 site could not displace better ones");
    assert_eq!(m.fact(s(3)).unwrap().1, Tier::Intermediate);
}

#[test]
fn zero_capacities_hold_nothing() {
    let r = MemoryRules {
        capacity: TierCaps::NONE,
        ..rules()
    };
    let mut m = Memory::with_caps(TierCaps::NONE, 0);
    for t in 0..10 {
        m.consolidate(&[s(1), s(2)], t * 100, &r, |_| Some(1.0));
        m.learn(s(3), 2.0, t * 100, 0, &r);
    }
    assert_eq!(m.lens(), (0, 0, 0));
}

#[test]
fn capacities_follow_the_budget() {
    let caps = rules().capacity;
    // 5 facts in a block of 8, 6 observations in a block of 8.
    let full = caps.block_bytes();
    assert_eq!(full, 8 * size_of::<Fact>() + 8 * size_of::<Observation>());
    assert_eq!(caps.scaled_to(full), caps);
    let half = caps.scaled_to(full / 2);
    assert!(half.block_bytes() <= full / 2);
    assert_eq!(
        half,
        TierCaps {
            working: 3,
            short_term: 3,
            intermediate: 1,
            long_term: 1
        }
    );
    assert_eq!(caps.scaled_to(0), TierCaps::NONE);
    // Whatever the limit, the blocks of the capacities fit in it.
    for limit in 0..=2 * full {
        let scaled = caps.scaled_to(limit);
        assert!(scaled.block_bytes() <= limit, "{limit}: {scaled:?}");
    }
    let big = caps.scaled_to(full * 100);
    assert_eq!(
        big,
        caps.scaled_to(usize::MAX / 4),
        "growth stops at the tier maxima"
    );
    assert_eq!(big.long_term as usize, LONG_TERM_MAX);
}

/// Capacities that shrink take the blocks down with them: a memory never
/// holds blocks larger than its capacities need.
#[test]
fn shrunk_capacities_free_their_large_blocks() {
    let r = rules();
    let big = TierCaps {
        working: 6,
        short_term: 8,
        intermediate: 6,
        long_term: 4,
    };
    let mut m = Memory::with_caps(big, big.block_bytes() as u32);
    for t in 0..40 {
        let sites: Vec<SiteId> = (0..6).map(|i| s(t * 6 + i)).collect();
        m.consolidate(&sites, t * 10, &r, |_| Some(1.0));
        m.consolidate(&sites, t * 10 + 5, &r, |_| Some(1.0));
    }
    // Sites seen once stay in short-term.
    for t in 0..2 {
        let sites: Vec<SiteId> = (0..4).map(|i| s(1000 + t * 4 + i)).collect();
        m.consolidate(&sites, 500 + t, &r, |_| Some(1.0));
    }
    let (short, inter, _) = m.lens();
    assert!(short >= 5 && inter >= 5, "{:?}", m.lens());
    assert!(
        m.block_bytes() > 8 * size_of::<Fact>(),
        "{}",
        m.block_bytes()
    );
    let small = TierCaps {
        working: 6,
        short_term: 3,
        intermediate: 2,
        long_term: 1,
    };
    m.set_caps(small, 1000, &r);
    assert_eq!(m.lens(), (3, 2, 0));
    assert_eq!(
        m.block_bytes(),
        2 * size_of::<Fact>() + 4 * size_of::<Observation>(),
        "a block of two for two facts, of four for three observations"
    );
    assert!(m.block_bytes() <= small.block_bytes());
}

/// A budget of `bytes`, a fifth of it the cache's.
fn bytes_budget(bytes: u64) -> MemorySettings {
    MemorySettings {
        budget: MemoryBudget::Bytes(bytes),
        shared_fraction: 0.2,
    }
}

/// More keys than any of these budgets has room for: the cache takes its
/// whole share.
const MANY_KEYS: usize = 1 << 30;

/// The cache never takes more room than a fact about every key needs: an
/// automatic budget counts only that room, a budget in bytes leaves the rest
/// of the cache's share unused and each agent's part as it was.
#[test]
fn the_cache_takes_no_more_room_than_its_keys_need() {
    let settings = bytes_budget(1_000_000);
    let wide = MemoryPlan::new(&settings, Some(1000), 200, 300, 0, MANY_KEYS);
    let narrow = MemoryPlan::new(&settings, Some(1000), 200, 300, 0, 101);
    assert_eq!(wide.shared_bytes, 200_000);
    assert_eq!(narrow.shared_bytes, SharedCache::room_for(101));
    assert_eq!(narrow.cache_capacity, 102, "whole sets of two");
    assert_eq!(
        (narrow.total_bytes, narrow.per_agent_bytes),
        (wide.total_bytes, wide.per_agent_bytes)
    );
    let auto = MemoryPlan::new(
        &MemorySettings::default(),
        Some(1000),
        200,
        300,
        0,
        MANY_KEYS,
    );
    let auto_narrow = MemoryPlan::new(&MemorySettings::default(), Some(1000), 200, 300, 0, 101);
    assert_eq!(auto.total_bytes, 625_000);
    assert_eq!(auto_narrow.shared_bytes, SharedCache::room_for(101));
    assert_eq!(
        auto_narrow.total_bytes,
        500_000 + SharedCache::room_for(101),
        "the agents' parts and the room the cache takes"
    );
    assert_eq!(auto_narrow.per_agent_bytes, 200);
    let no_pool = MemoryPlan::new(&settings, None, 200, 300, 0, 101);
    assert_eq!(no_pool.shared_bytes, SharedCache::room_for(101));
    assert_eq!(
        SharedCache::new(100, None, narrow.shared_bytes).capacity(),
        102
    );
}

#[test]
fn the_plan_follows_the_formulae() {
    let settings = bytes_budget(1_000_000);
    let plan = MemoryPlan::new(&settings, Some(1000), 200, 0, 0, MANY_KEYS);
    assert_eq!(plan.shared_bytes, 200_000);
    assert_eq!(plan.per_agent_bytes, 800);
    assert_eq!(plan.cache_capacity, SharedCache::capacity_for(200_000));
    assert_eq!(
        plan.cache_capacity,
        200_000 / SharedCache::ENTRY_BYTES / 2 * 2
    );
    let auto = MemoryPlan::new(&MemorySettings::default(), Some(1000), 200, 0, 0, MANY_KEYS);
    assert_eq!(
        auto.per_agent_bytes, 200,
        "an automatic budget covers the defaults exactly"
    );
    let machine = MemorySettings {
        budget: MemoryBudget::MachineFraction(0.5),
        shared_fraction: 0.25,
    };
    let plan = MemoryPlan::new(&machine, Some(10), 0, 0, 8_000, MANY_KEYS);
    assert_eq!(
        (plan.total_bytes, plan.shared_bytes, plan.per_agent_bytes),
        (4_000, 1_000, 300)
    );
    let unlimited = MemoryPlan::new(&MemorySettings::default(), None, 200, 300, 0, 50);
    assert_eq!(
        (unlimited.per_agent_bytes, unlimited.cache_capacity),
        (200, 50)
    );
}

/// The budget holds the engine's own state per agent beside the memories and
/// the shared cache; an automatic budget counts it in its total.
#[test]
fn the_plan_holds_the_engine_state_within_the_budget() {
    let settings = bytes_budget(1_000_000);
    let plan = MemoryPlan::new(&settings, Some(1000), 200, 300, 0, MANY_KEYS);
    assert_eq!(
        (plan.per_agent_bytes, plan.engine_bytes_per_agent),
        (500, 300)
    );
    assert!(1000 * (plan.per_agent_bytes + 300) + plan.shared_bytes <= plan.total_bytes);
    let auto = MemoryPlan::new(
        &MemorySettings::default(),
        Some(1000),
        200,
        300,
        0,
        MANY_KEYS,
    );
    assert_eq!(auto.per_agent_bytes, 200);
    assert_eq!(auto.total_bytes, 625_000, "1000 × (200 + 300) over 0.8");
    assert_eq!(auto.shared_bytes, 125_000);
    assert_eq!(MemoryPlan::shortfall(&settings, Some(1000), 300, 0), None);
    assert_eq!(
        MemoryPlan::shortfall(&MemorySettings::default(), Some(10), 1 << 40, 0),
        None
    );
    assert_eq!(MemoryPlan::shortfall(&settings, None, 1 << 40, 0), None);
}

#[test]
fn a_budget_that_cannot_hold_the_agents_names_the_figures() {
    let settings = bytes_budget(100_000);
    let short = MemoryPlan::shortfall(&settings, Some(1000), 300, 0).expect("too small");
    assert_eq!(
        (short.share, short.engine, short.needed),
        (80, 300, 375_000)
    );
    let text = short.to_string();
    for figure in [
        "100000 bytes",
        "max_agents = 1000",
        "20000 bytes",
        "80 bytes per agent",
        "300 bytes",
        "375000",
    ] {
        assert!(text.contains(figure), "{figure:?} not in {text}");
    }
    let plan = MemoryPlan::new(&settings, Some(1000), 200, 300, 0, 0);
    assert_eq!(plan.per_agent_bytes, 0, "the agents get no memory");
    let machine = MemorySettings {
        budget: MemoryBudget::MachineFraction(0.001),
        shared_fraction: 0.2,
    };
    assert!(MemoryPlan::shortfall(&machine, Some(1000), 300, 1 << 20).is_some());
}

fn fact(v: f32) -> SharedFact {
    SharedFact {
        value: v,
        at: 0,
        by: AgentId(1),
    }
}

#[test]
fn the_cache_evicts_the_least_recently_used() {
    // Room for two facts: one set, which every site maps to.
    let mut cache = SharedCache::for_sites(10, 3);
    assert_eq!(cache.capacity(), 2);
    cache.publish(s(1), fact(1.0), 1);
    cache.publish(s(2), fact(2.0), 2);
    assert!(cache.read(s(1), 3).is_some()); // 1 is now the most recent
    cache.settle();
    cache.publish(s(3), fact(3.0), 4); // evicts 2
    assert_eq!(
        cache.lru_order().collect::<Vec<_>>(),
        [s(1), s(3)].map(SharedKey::from)
    );
    assert!(cache.peek(s(2)).is_none());
    assert!(cache.read(s(2), 5).is_none());
    cache.settle(); // counters are gathered at the end of each step
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.evictions, stats.len),
        (1, 1, 1, 2)
    );
}

/// Against a reference set-associative LRU (two facts a set, sites two by
/// two to the sets in turn), over random reads and publications, one per
/// step: the same hits, the same facts held, the same recency.
#[test]
fn the_cache_matches_a_reference_lru() {
    for seed in 0..30u64 {
        let capacity = 2 * (1 + (seed % 4) as usize);
        let sets = capacity / 2;
        let mut cache = SharedCache::for_sites(16, capacity);
        assert_eq!(cache.capacity(), capacity);
        // Held sites with the step of their latest use.
        let mut reference: Vec<(SiteId, u64)> = Vec::new();
        let mut h = seed;
        for step in 1..400u64 {
            h = crate::hash::mix(h, step);
            let site = s((h % 16) as u32);
            let held = reference.iter().position(|&(x, _)| x == site);
            if h % 3 == 0 {
                cache.publish(site, fact(step as f32), step);
                match held {
                    Some(i) => reference[i].1 = step,
                    None => {
                        let set_of = |x: SiteId| x.0 as usize / 2 % sets;
                        let mates: Vec<usize> = (0..reference.len())
                            .filter(|&i| set_of(reference[i].0) == set_of(site))
                            .collect();
                        if mates.len() == 2 {
                            let lru = *mates
                                .iter()
                                .min_by_key(|&&i| (reference[i].1, reference[i].0))
                                .unwrap();
                            reference.remove(lru);
                        }
                        reference.push((site, step));
                    }
                }
            } else {
                let hit = cache.read(site, step).is_some();
                assert_eq!(hit, held.is_some(), "seed {seed} step {step}");
                if let Some(i) = held {
                    reference[i].1 = step;
                }
            }
            cache.settle();
            let mut order = reference.clone();
            order.sort_by_key(|&(x, at)| (at, x));
            assert_eq!(
                cache.lru_order().collect::<Vec<_>>(),
                order
                    .iter()
                    .map(|&(x, _)| SharedKey::from(x))
                    .collect::<Vec<_>>(),
                "seed {seed} step {step}"
            );
        }
    }
}

#[test]
fn reads_from_many_threads_in_one_step_settle_to_the_same_order() {
    let build = || {
        let mut cache = SharedCache::for_sites(64, 64);
        for i in 0..64 {
            cache.publish(s(i), fact(i as f32), 1);
        }
        cache
    };
    let mut serial = build();
    for i in (0..64).rev().step_by(3) {
        serial.read(s(i), 2);
    }
    serial.settle();
    let mut parallel = build();
    std::thread::scope(|scope| {
        let cache = &parallel;
        for t in 0..4 {
            scope.spawn(move || {
                // Half the threads read through a reader taken once.
                let reader = cache.reader();
                for i in (0..64).step_by(3).skip(t).step_by(4) {
                    if t % 2 == 0 {
                        reader.read(s(63 - i), 2);
                    } else {
                        cache.read(s(63 - i), 2);
                    }
                }
                // A key outside the cache: a miss on every thread.
                reader.read(s(64), 2);
            });
        }
    });
    parallel.settle();
    assert_eq!(
        serial.lru_order().collect::<Vec<_>>(),
        parallel.lru_order().collect::<Vec<_>>()
    );
    let (serial, parallel) = (serial.stats(), parallel.stats());
    assert_eq!((parallel.hits, parallel.misses), (serial.hits, 4));
}

/// Sites and ground cells share one room in bytes: a key's set holds two
/// facts, whatever their kind, and the least recently used of a full set goes;
/// keys outside the world are ignored; a world with no more keys than the
/// room has slots never evicts.
#[test]
fn sites_and_ground_share_the_room_in_bytes() {
    let ground = crate::spatial::GridGeometry::new(bevy_math::Vec2::splat(1000.0), 10.0);
    let room = 4 * SharedCache::ENTRY_BYTES as u64 + 10;
    let mut cache = SharedCache::new(5, Some(ground), room);
    assert_eq!((cache.capacity(), cache.stats().capacity_bytes), (4, room));
    let g = SharedKey::Ground;
    // Two sets: keys numbered sites first (0 to 4), then cells (5 on), go
    // two by two to the sets in turn: 0 and 1 to set 0, 2 and 3 to set 1, ...
    cache.publish(s(0), fact(1.0), 1); // set 0
    cache.publish(s(2), fact(2.0), 2); // set 1
    cache.publish(g(1), fact(3.0), 3); // key 6, set 1
    cache.publish(g(3), fact(4.0), 4); // key 8, set 0
    assert!(cache.read(s(0), 5).is_some());
    cache.publish(g(4), fact(5.0), 6); // key 9, set 0: evicts cell 3
    assert!(cache.peek(g(3)).is_none());
    assert_eq!(
        cache.lru_order().collect::<Vec<_>>(),
        [s(2).into(), g(1), s(0).into(), g(4)]
    );
    // Outside the world: no site 5, no cell 10 000.
    cache.publish(s(5), fact(5.0), 7);
    cache.publish(g(10_000), fact(5.0), 7);
    assert!(cache.read(g(10_000), 7).is_none());
    cache.settle();
    let stats = cache.stats();
    assert_eq!(
        (
            stats.len,
            stats.site_facts,
            stats.evictions,
            stats.publications
        ),
        (4, 2, 1, 5)
    );
    assert_eq!(stats.bytes, 4 * SharedCache::ENTRY_BYTES as u64);
    // A hundred thousand publications over ten thousand cells: four held.
    for cell in 0..100_000u32 {
        cache.publish(g(cell % 10_000), fact(cell as f32), 10 + u64::from(cell));
    }
    assert_eq!((cache.len(), cache.stats().site_facts), (4, 0));
    assert_eq!(
        cache.iter().map(|(k, ..)| k).collect::<Vec<_>>(),
        [g(9_996), g(9_997), g(9_998), g(9_999)]
    );

    // As much room as keys: nothing is ever evicted.
    let keys = 5 + ground.cells();
    let mut roomy = SharedCache::new(5, Some(ground), SharedCache::room_for(keys));
    for step in 0..3 {
        for site in 0..5 {
            roomy.publish(s(site), fact(1.0), step);
        }
        for cell in 0..ground.cells() as u32 {
            roomy.publish(g(cell), fact(1.0), step);
        }
    }
    assert_eq!((roomy.len(), roomy.stats().evictions), (keys, 0));
}

/// A restored cache holds the same facts with the same recency and goes on
/// exactly as the one it was taken from.
#[test]
fn a_restored_cache_goes_on_as_the_original() {
    let ground = crate::spatial::GridGeometry::new(bevy_math::Vec2::splat(100.0), 10.0);
    let mut a = SharedCache::new(20, Some(ground), 8 * SharedCache::ENTRY_BYTES as u64);
    let mut h = 7u64;
    let key = |h: u64| {
        if h.is_multiple_of(2) {
            SharedKey::Site(s((h / 2 % 20) as u32))
        } else {
            SharedKey::Ground((h / 2 % 100) as u32)
        }
    };
    let mut step = 0;
    let run = |cache: &mut SharedCache, steps: u64, h: &mut u64, step: &mut u64| {
        for _ in 0..steps {
            *step += 1;
            *h = crate::hash::mix(*h, *step);
            if (*h).is_multiple_of(3) {
                cache.publish(key(*h >> 8), fact(*step as f32), *step);
            } else {
                cache.read(key(*h >> 8), *step);
            }
            cache.settle();
        }
    };
    run(&mut a, 300, &mut h, &mut step);
    let mut b = SharedCache::new(20, Some(ground), 0)
        .restored(a.image())
        .expect("the same world");
    let (mut hb, mut step_b) = (h, step);
    run(&mut a, 300, &mut h, &mut step);
    run(&mut b, 300, &mut hb, &mut step_b);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(
        a.lru_order().collect::<Vec<_>>(),
        b.lru_order().collect::<Vec<_>>()
    );
    assert!(a.iter().eq(b.iter()));
    // A world with fewer keys refuses the image.
    assert!(SharedCache::new(3, None, 0).restored(a.image()).is_none());
}
