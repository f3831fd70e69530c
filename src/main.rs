//! The `patchkeeper` binary: parses the command line and maps outcomes to exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    patchkeeper::cli::main()
}
