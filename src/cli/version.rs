//! `patchkeeper version ...`.

/// Subcommands of `patchkeeper version`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare two versions; prints `<`, `=` or `>`.
    Compare {},
}

/// Runs `patchkeeper version ...`; returns the exit code.
pub fn run(_cmd: Command) -> u8 {
    eprintln!("error: `patchkeeper version compare` is not implemented yet");
    super::EXIT_ERROR
}
