//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use continuum::prelude::*;

/// Parses and validates a scenario written inline in a test.
pub fn scenario(ron: &str) -> Scenario {
    Scenario::from_ron(ron, Path::new("test.ron")).unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario file shipped in `scenarios/`.
pub fn shipped(name: &str) -> Scenario {
    let path = root().join("scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// An archetype of kind `name` that does nothing by itself (its agents are
/// driven by the test's own systems), at `tick_hz`.
pub fn idle_kind(name: &str, tick_hz: f32) -> String {
    format!(
        r#"Archetype(kind: "{name}", tick_hz: {tick_hz:?}, speed: 0.0, perception_radius: 10.0,
                     behaviour: Idle)"#
    )
}

/// The repository's root, where `scenarios/` is.
pub fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
