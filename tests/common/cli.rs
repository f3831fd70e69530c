//! The `patchkeeper` binary for end-to-end tests, and a readable dump of a finished command
//! for assertion messages.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;

/// `patchkeeper` run in `dir`, without colors and without standard input.
pub fn patchkeeper(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `patchkeeper ARGS` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    patchkeeper(dir)
        .args(args)
        .output()
        .expect("patchkeeper runs")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
