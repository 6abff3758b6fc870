//! Hostile scenario text never panics: mutated copies of the shipped scenarios
//! (byte flips, insertions and deletions, numbers and names replaced with
//! extreme values, deep nesting, truncation, duplicated sections) go through
//! `Scenario::from_ron` (parse and validate) and, if they validate,
//! `check_resources_in`. Every error with a position must point inside the
//! input.
//!
//! Input `n` is generated from seed `CONTINUUM_FUZZ_SEED + n` alone, so a
//! failing input can be generated again from its seed. The default run makes
//! 20 000 inputs; a long run:
//!
//! ```sh
//! CONTINUUM_FUZZ_INPUTS=10000000 cargo test --release -p continuum --test fuzz_scenarios -- --nocapture
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use continuum::config::ConfigError;
use continuum::scenario::Scenario;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

/// Memory the resource check is given: fixed, so that runs are reproducible.
const AVAILABLE: u64 = 8 << 30;

const INTERESTING: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "+inf",
    "-1",
    "-1.0",
    "0",
    "0.0",
    "-0.0",
    "1",
    "1e308",
    "-1e308",
    "1e-308",
    "3.4e38",
    "1e39",
    "1e25",
    "1e30",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "65535",
    "65536",
    "0x7fffffff",
    "0b1",
    "1_000",
    "\"\"",
    "\"explorr\"",
    "\"explorer\"",
    "\"analyzer\"",
    "explorr",
    "Some(1)",
    "None",
    "true",
    "()",
    "[]",
    "(,)",
    "[,]",
    "Fast",
    "Realtime",
    "Bytes(18446744073709551615)",
    "MachineFraction(NaN)",
    "Idle",
    "'c'",
    "b\"x\"",
    "r#\"x\"#",
    "\"\\u{0}\"",
    "\"é\"",
    "/*",
    "//",
    "#![enable(implicit_some)]",
    "#!",
];

/// A uniform draw in `0..n` (`n` > 0).
fn below(rng: &mut Pcg32, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Byte ranges of the tokens of `text`: numbers, identifiers, strings.
fn tokens(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let start = i;
        if c == b'"' {
            i += 1;
            while i < text.len() && text[i] != b'"' {
                i += if text[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(text.len());
            out.push((start, i));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' {
            while i < text.len() && (text[i].is_ascii_alphanumeric() || b"_-.+".contains(&text[i]))
            {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// Applies one random mutation to `text`.
fn mutate(rng: &mut Pcg32, text: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = text.len();
    let at = |rng: &mut Pcg32| below(rng, len + 1);
    match below(rng, 16) {
        0 => {
            if len > 0 {
                let i = below(rng, len);
                text[i] ^= 1 << below(rng, 8);
            }
        }
        1 => {
            let i = at(rng);
            text.insert(i, (rng.next_u32() & 0xff) as u8);
        }
        2 => {
            let i = at(rng);
            let c = b"()[]{},:\"'/*#!\\ \n0.-eE"[below(rng, 22)];
            text.insert(i, c);
        }
        3 => {
            if len > 0 {
                let i = below(rng, len);
                let n = (1 + below(rng, 16)).min(len - i);
                text.drain(i..i + n);
            }
        }
        4..=8 => {
            let toks = tokens(text);
            if !toks.is_empty() {
                let (s, e) = toks[below(rng, toks.len())];
                let with = INTERESTING[below(rng, INTERESTING.len())].as_bytes();
                text.splice(s..e, with.iter().copied());
            }
        }
        9 => {
            // An unknown identifier as a field name or a value.
            let toks = tokens(text);
            if !toks.is_empty() {
                let (s, e) = toks[below(rng, toks.len())];
                let name = format!("unknown_{}", rng.next_u32() % 100);
                text.splice(s..e, name.bytes());
            }
        }
        10 => {
            let i = at(rng);
            text.truncate(i);
        }
        11 => {
            // A section duplicated somewhere else.
            if len > 0 {
                let s = below(rng, len);
                let e = (s + 1 + below(rng, 200)).min(len);
                let piece: Vec<u8> = text[s..e].to_vec();
                let i = at(rng);
                text.splice(i..i, piece);
            }
        }
        12 => {
            // Deep nesting.
            let depth = 1 + below(rng, 400);
            let open = [b"(".as_slice(), b"[", b"Some(", b"{"][below(rng, 4)];
            let i = at(rng);
            let mut nest: Vec<u8> = open.repeat(depth);
            if rng.next_u32() & 1 == 0 {
                nest.extend(std::iter::repeat_n(b')', depth));
            }
            text.splice(i..i, nest);
        }
        13 => {
            // A long string or name.
            let toks = tokens(text);
            if !toks.is_empty() {
                let (s, e) = toks[below(rng, toks.len())];
                let n = [300, 5_000, 70_000][below(rng, 3)];
                let body = "x".repeat(n);
                let with = if rng.next_u32() & 1 == 0 {
                    format!("\"{body}\"")
                } else {
                    body
                };
                text.splice(s..e, with.bytes());
            }
        }
        14 => {
            // A splice from another shipped scenario.
            let other = &seeds[below(rng, seeds.len())];
            if !other.is_empty() {
                let s = below(rng, other.len());
                let e = (s + 1 + below(rng, 300)).min(other.len());
                let i = at(rng);
                text.splice(i..i, other[s..e].iter().copied());
            }
        }
        _ => {
            // Another group, arrival or departure with extreme values.
            let pieces = [
                "arrivals: [(at: NaN, group: (kind: \"explorr\", count: 0))],",
                "departures: [(at: 0.5, count: 1000, kind: \"explorr\")],",
                "departures: [(at: -1.0, count: 0)],",
                "archetypes: [(kind: \"k\", tick_hz: 1e30, speed: inf, perception_radius: 1e-30, behaviour: Idle)],",
                "max_agents: 0,",
                "pacing: (mode: Realtime, speed: 1e25),",
                "world: (size: (204800.0, 204800.0), sites: 4294967295),",
                "memory: (budget: Bytes(0), shared_fraction: 1.0),",
            ];
            let piece = pieces[below(rng, pieces.len())].as_bytes();
            let i = text
                .iter()
                .position(|&c| c == b'(')
                .map_or_else(|| at(rng), |p| p + 1);
            text.splice(i..i, piece.iter().copied());
        }
    }
}

/// The error's position, if it has one, is inside `text`.
fn position_is_inside(e: &ConfigError, text: &str) -> bool {
    if e.line == 0 {
        return e.column == 0;
    }
    let Some(line) = text.split('\n').nth(e.line - 1) else {
        return false;
    };
    // A position may point just past the end of a line (or of the text).
    e.column >= 1 && e.column <= line.chars().count() + 1
}

enum Outcome {
    Ok,
    Invalid,
    TooLarge,
}

fn check_one(text: &str) -> Result<Outcome, String> {
    let file = Path::new("fuzz.ron");
    match Scenario::from_ron(text, file) {
        Err(e) => {
            if !position_is_inside(&e, text) {
                return Err(format!("position outside the input: {e}"));
            }
            Ok(Outcome::Invalid)
        }
        Ok(s) => match s.check_resources_in(text, file, AVAILABLE) {
            Ok(()) => Ok(Outcome::Ok),
            Err(e) if position_is_inside(&e, text) => Ok(Outcome::TooLarge),
            Err(e) => Err(format!("resource error outside the input: {e}")),
        },
    }
}

fn shipped_scenarios() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Input number `n`'s text, from its seed alone.
fn input(seed: u64, seeds: &[Vec<u8>]) -> String {
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut text = seeds[below(&mut rng, seeds.len())].clone();
    let mutations = 1 + below(&mut rng, 4);
    for _ in 0..mutations {
        mutate(&mut rng, &mut text, seeds);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_scenarios_never_panic_and_errors_point_inside_the_input() {
    let inputs = env_u64("CONTINUUM_FUZZ_INPUTS", 20_000);
    let base = env_u64("CONTINUUM_FUZZ_SEED", 0);
    let seeds = shipped_scenarios();
    for (i, s) in seeds.iter().enumerate() {
        let text = String::from_utf8_lossy(s);
        assert!(
            matches!(check_one(&text), Ok(Outcome::Ok)),
            "shipped scenario {i} is valid"
        );
    }
    // Panics are caught and reported with their seed; keep the default hook's
    // output short.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let started = Instant::now();
    let (mut ok, mut invalid, mut too_large) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for n in 0..inputs {
        let seed = base.wrapping_add(n);
        let text = input(seed, &seeds);
        match catch_unwind(AssertUnwindSafe(|| check_one(&text))) {
            Ok(Ok(Outcome::Ok)) => ok += 1,
            Ok(Ok(Outcome::Invalid)) => invalid += 1,
            Ok(Ok(Outcome::TooLarge)) => too_large += 1,
            Ok(Err(problem)) => failures.push((seed, problem, text)),
            Err(_) => failures.push((seed, "panicked".to_string(), text)),
        }
        if failures.len() >= 10 {
            break;
        }
    }
    let _ = std::panic::take_hook();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{inputs} inputs in {secs:.1} s ({:.0} inputs/s): {ok} ok, {invalid} invalid, \
         {too_large} refused for memory, {} failures",
        inputs as f64 / secs,
        failures.len()
    );
    for (seed, problem, text) in &failures {
        let shown: String = text.chars().take(2_000).collect();
        eprintln!("seed {seed}: {problem}\n--- input ---\n{shown}\n---");
    }
    assert!(failures.is_empty(), "{} failing inputs", failures.len());
}
