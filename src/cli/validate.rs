//! `patchkeeper validate`.

/// Flags of `patchkeeper validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `patchkeeper validate`; returns the exit code.
pub fn run(_args: Args) -> u8 {
    eprintln!("error: `patchkeeper validate` is not implemented yet");
    super::EXIT_ERROR
}
