//! The same scenario and seed give the same state digest on every run, in the
//! harness and in the binary, with 1, 2 or 4 compute threads.
//!
//! Bevy's task pools are process-wide and configured once, so thread counts are
//! compared across processes by running the `continuum` binary.

mod common;

use std::path::Path;

use continuum::parallel::ThreadLoad;
use continuum::prelude::*;

/// The digest of `scenarios/quickstart.ron` after 20 virtual seconds.
///
/// If a change to the simulation's behaviour is intended, this value changes:
/// run `cargo test --test determinism -- --nocapture`, check that the other
/// tests in this file still pass (runs and thread counts agree with each other),
/// and paste the digest it prints here. If the change was not meant to alter
/// behaviour, a different digest is a bug.
///
/// Last changed when the digest began adding up the agents' hashes, each keyed
/// by the agent's id, instead of chaining them in id order: the same state, a
/// different function of it, with no list of every agent sorted by id. Before
/// that, when the rebalancer began keeping CPU shares unscaled, its scale
/// applied where they are used (`LoadShedding::share_scale`): shares at their
/// bounds no longer move every round, and the work allowances that follow
/// from them differ. Before that, when the shared cache stopped taking more
/// room than a fact about every key needs: the digest counts the cache's
/// capacity (608 facts before, 346 after), and every other figure of the run's
/// report stayed the same.
const QUICKSTART_20S: &str = "ecc55cb49b3adf56";

fn harness_digest(seed: Option<u64>) -> String {
    let mut scenario = common::shipped("quickstart.ron");
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let mut sim = SimHarness::new(scenario);
    sim.run_for(20.0);
    sim.state_digest().to_string()
}

fn binary_digest(scenario: &str, seconds: u32, threads: u32, out: &Path) -> String {
    let report = out.join(format!("{scenario}-{threads}.json"));
    let status = common::continuum([
        "run",
        &format!("scenarios/{scenario}"),
        "--fast",
        "--quiet",
        "--duration",
        &seconds.to_string(),
        "--threads",
        &threads.to_string(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["threads"], threads);
    json["state_digest"].as_str().unwrap().to_owned()
}

#[test]
fn runs_agree_and_match_the_recorded_digest() {
    let first = harness_digest(None);
    let second = harness_digest(None);
    assert_eq!(
        first, second,
        "two runs of the same scenario and seed differ"
    );
    println!("quickstart digest after 20 s: {first}");
    assert_eq!(
        first, QUICKSTART_20S,
        "the simulation's results changed (digest {first}, recorded {QUICKSTART_20S}); \
         if the change was intended, update QUICKSTART_20S in tests/determinism.rs"
    );
}

#[test]
fn a_different_seed_gives_a_different_world() {
    assert_ne!(harness_digest(None), harness_digest(Some(8)));
}

fn digests_by_threads(scenario: &str, seconds: u32) -> Vec<(u32, String)> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("determinism");
    std::fs::create_dir_all(&out).unwrap();
    let digests: Vec<(u32, String)> = [1, 2, 4]
        .map(|t| (t, binary_digest(scenario, seconds, t, &out)))
        .into();
    for (threads, digest) in &digests {
        assert_eq!(
            digest, &digests[0].1,
            "{scenario}: {threads} threads gave {digest}, 1 thread gave {}",
            digests[0].1
        );
    }
    digests
}

#[test]
fn thread_counts_agree() {
    let digests = digests_by_threads("quickstart.ron", 20);
    assert_eq!(
        digests[0].1,
        harness_digest(None),
        "the binary and the harness disagree"
    );
}

/// Hundreds of agents contending for a dozen sites: thousands of conflicts.
#[test]
fn thread_counts_agree_in_a_conflict_storm() {
    digests_by_threads("conflict-storm.ron", 10);
}

/// Planners whose plans are tasks on the async compute pool, at most 8 at
/// once: the same world on every thread count.
#[test]
fn thread_counts_agree_with_thinks_under_way() {
    digests_by_threads("planners.ron", 10);
}

/// Every pass shared between threads in small chunks, however few agents are
/// due, gives the same world as one thread: the parallel paths, which a small
/// world would otherwise leave to the calling thread, change nothing.
#[test]
fn sharing_every_pass_changes_nothing() {
    let digest = |load: fn() -> ThreadLoad| {
        let mut sim = SimHarness::with(common::shipped("conflict-storm.ron"), |app| {
            app.insert_resource(load());
        });
        sim.run_for(5.0);
        sim.state_digest().to_string()
    };
    let one = digest(|| ThreadLoad::with_threads(1));
    let shared = digest(|| ThreadLoad::with_threads(2).sharing_every_pass());
    assert_eq!(shared, one, "sharing every pass changed the world");
}
