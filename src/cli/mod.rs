//! Pieces of the `continuum` command that only a terminal program needs.

pub mod dashboard_ui;
pub mod logging;
