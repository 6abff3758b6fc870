//! The `continuum` binary: see the [`continuum_cli`] crate.

fn main() -> std::process::ExitCode {
    continuum_cli::main()
}
