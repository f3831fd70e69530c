//! Usage errors and the exit codes every `--help` documents.

mod common;

use common::cli::{run, text};

/// Every command and subcommand.
const COMMANDS: [&[&str]; 20] = [
    &[],
    &["validate"],
    &["observe"],
    &["plan"],
    &["apply"],
    &["report"],
    &["serve"],
    &["token"],
    &["token", "new"],
    &["schema"],
    &["version"],
    &["version", "compare"],
    &["windows"],
    &["import"],
    &["import", "ansible"],
    &["completions"],
    &["advisories"],
    &["advisories", "import"],
    &["advisories", "status"],
    &["vulns"],
];

/// Commands whose exit 2 means a finding: their usage errors exit 1.
const USAGE_EXIT_1: [&[&str]; 2] = [&["advisories", "status"], &["vulns"]];

#[test]
fn every_help_lists_its_exit_codes_including_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cmd in COMMANDS {
        let args: Vec<&str> = cmd.iter().copied().chain(["--help"]).collect();
        let out = run(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        let codes = help
            .split_once("Exit codes")
            .unwrap_or_else(|| panic!("{cmd:?}: no exit-code section:\n{help}"))
            .1;
        assert!(
            codes.contains("usage error"),
            "{cmd:?}: exit 2 for usage errors is not listed:\n{codes}"
        );
        if cmd != ["version"] && cmd != ["token"] && cmd != ["import"] && cmd != ["advisories"] {
            assert!(codes.contains("\n  0  "), "{cmd:?}: no exit 0:\n{codes}");
            assert!(codes.contains("\n  2  "), "{cmd:?}: no exit 2:\n{codes}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cmd in COMMANDS {
        let args: Vec<&str> = cmd.iter().copied().chain(["--no-such-flag"]).collect();
        let out = run(dir.path(), &args);
        let code = if USAGE_EXIT_1.contains(&cmd) { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(code), "{cmd:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{cmd:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_usage_error_of_plan_detailed_exitcode_is_not_changes_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        dir.path(),
        &["plan", "--detailed-exitcode", "--no-such-flag"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn a_mistyped_host_selector_prefix_gets_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["observe", "--hosts", "groups:rpm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'groups:rpm' for '--hosts <SELECTOR>'")
            && stderr.contains("unknown prefix `groups:` (did you mean `group:`?"),
        "{}",
        text(&out)
    );
}
