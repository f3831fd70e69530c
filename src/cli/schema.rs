//! `patchkeeper schema`.

/// Flags of `patchkeeper schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `patchkeeper schema`; returns the exit code.
pub fn run(_args: Args) -> u8 {
    eprintln!("error: `patchkeeper schema` is not implemented yet");
    super::EXIT_ERROR
}
