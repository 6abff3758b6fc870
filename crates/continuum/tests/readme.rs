//! The README's game and harness examples are the compiled examples, verbatim.

use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example's code, after its `//!` header.
fn code(example: &str) -> String {
    read(example)
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_readme_shows_the_examples_as_they_are() {
    let readme = read("../../README.md");
    for example in ["examples/game.rs", "examples/harness.rs"] {
        let code = code(example);
        assert!(
            readme.contains(&format!("```rust\n{code}```")),
            "the README's copy of {example} differs from the file: copy the file's code (after its header) into the README"
        );
    }
}
