//! The real `git` CLI for end-to-end tests: runs a command in a repository with a fixed
//! identity and default branch, and fails the test with git's stderr when it fails.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir ARGS…` and returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The `Desired-Commit:` trailer of the newest report commit on `branch` in `dir`.
pub fn desired_commit_of_last_report(dir: &Path, branch: &str) -> String {
    git(
        dir,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Desired-Commit,valueonly)",
            branch,
        ],
    )
    .trim()
    .to_owned()
}
