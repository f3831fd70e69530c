//! `patchkeeper windows`.

/// Flags of `patchkeeper windows`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `patchkeeper windows`; returns the exit code.
pub fn run(_args: Args) -> u8 {
    eprintln!("error: `patchkeeper windows` is not implemented yet");
    super::EXIT_ERROR
}
