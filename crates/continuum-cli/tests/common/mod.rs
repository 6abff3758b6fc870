//! Helpers shared by the command's integration tests: the library's, and a way
//! to run the command.
#![allow(dead_code)]

#[path = "../../../continuum/tests/common/mod.rs"]
mod library;

use std::ffi::OsStr;
use std::process::{Command, Output};

pub use library::*;

/// Runs the `continuum` command with `args` in the repository's root and
/// waits for it.
pub fn continuum<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the continuum binary runs")
}
