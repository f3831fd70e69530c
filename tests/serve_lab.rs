//! `patchkeeper serve --once` end to end against the lab (issue 8): a baseline commit in the
//! lab's fleet repo is validated, observed, planned, applied inside its (always-open) window
//! and reported on `patchkeeper/reports` with a `Desired-Commit:` trailer naming that commit.
//! Package state is checked independently with `dpkg-query` / `rpm -q` over OpenSSH, and
//! the report branch with the real `git`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use common::lab::{deb, rpm, write, Lab};

const BRANCH: &str = "patchkeeper/reports";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn serve_once(lab: &Lab) -> Output {
    Command::cargo_bin("patchkeeper")
        .expect("the binary is built")
        .args(["--log-format", "json", "serve", "--once", "--repo"])
        .arg(lab.dir())
        .stdin(Stdio::null())
        .output()
        .expect("patchkeeper runs")
}

fn trailer(repo: &Path, key: &str) -> String {
    git(
        repo,
        &[
            "log",
            "-1",
            &format!("--format=%(trailers:key={key},valueonly,separator=)"),
            BRANCH,
        ],
    )
    .trim()
    .to_owned()
}

/// The lab baseline asking for exact package versions (no pending-update classes).
fn baseline(lab: &Lab, packages: &[(&str, &str)]) {
    let mut yaml = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian, rpm]\n  updates:\n    classes: none\n  hold: [pk-held]\n  window: always\n  rollout: lab\n  packages:\n",
    );
    for (name, min) in packages {
        yaml.push_str(&format!(
            "    - name: {name}\n      minVersion: \"{min}\"\n"
        ));
    }
    write(lab, "baselines/lab.yaml", &yaml);
}

fn enable_auto_apply(lab: &Lab, on: bool) {
    let path = lab.dir().join("patchkeeper.yaml");
    let settings = std::fs::read_to_string(&path).expect("lab settings");
    let settings = settings.replace("  reconcile:\n    autoApply: true\n", "");
    let settings = if on {
        settings.replace("spec:\n", "spec:\n  reconcile:\n    autoApply: true\n")
    } else {
        settings
    };
    std::fs::write(&path, settings).expect("write settings");
}

fn commit(lab: &Lab, message: &str) -> String {
    git(lab.dir(), &["add", "-A", "--", ":!.patchkeeper"]);
    git(lab.dir(), &["commit", "-q", "-m", message]);
    git(lab.dir(), &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn serve_once_applies_the_desired_commit_and_reports_it() {
    let lab = Lab::up(1, 1);
    // Without autoApply: plan and report only; no package changes.
    baseline(&lab, &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]);
    let observe_only = commit(&lab, "baseline: libpk 1.2, pk-app 2.0");
    let out = serve_once(&lab);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(trailer(lab.dir(), "Desired-Commit"), observe_only);
    let subject = git(lab.dir(), &["log", "-1", "--format=%s", BRANCH]);
    assert!(subject.starts_with("observe run "), "{subject}");
    let before = deb(&lab, "deb-1", "libpk");
    assert_ne!(before, "1.2-1 ii", "the lab starts below the baseline");

    // With autoApply: the same baseline is applied inside the always-open window.
    enable_auto_apply(&lab, true);
    let head = commit(&lab, "settings: apply automatically");
    let out = serve_once(&lab);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    // Structured logs: every stderr line is a JSON object.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}\n{all}"));
    }
    assert_eq!(trailer(lab.dir(), "Desired-Commit"), head, "{all}");
    let subject = git(lab.dir(), &["log", "-1", "--format=%s", BRANCH]);
    assert!(subject.starts_with("apply run "), "{subject}\n{all}");
    assert!(
        subject.trim_end().ends_with(": 2 hosts updated"),
        "{subject}\n{all}"
    );
    assert_eq!(trailer(lab.dir(), "Hosts-Changed"), "deb-1, rpm-1", "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "2.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-app"), "2.0-1");
    // The report branch never touched the desired branch.
    assert_eq!(git(lab.dir(), &["rev-parse", "HEAD"]).trim(), head);
    // The history reads as an audit trail: newest first, observe then apply.
    let log = git(lab.dir(), &["log", "--format=%s", BRANCH]);
    let kinds: Vec<&str> = log
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["apply", "observe"], "{log}");

    // Converged: another round has nothing to apply and observes the same facts, so it
    // commits nothing until `reports.heartbeat` (issue 21).
    let tip = git(lab.dir(), &["rev-parse", BRANCH]);
    let out = serve_once(&lab);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(git(lab.dir(), &["rev-parse", BRANCH]), tip);
}

#[test]
fn serve_once_rejects_an_invalid_commit_and_exits_1() {
    let lab = Lab::up(1, 0);
    write(
        &lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian]\n  window: no-such-window\n  rollout: lab\n",
    );
    let bad = commit(&lab, "baseline: a dangling window");
    let out = serve_once(&lab);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The diagnostics themselves are logged, not just a count (issue 21).
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "ERROR")
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("baselines/lab.yaml:8:11: error[")
                && m.contains("no-such-window")),
        "{errors:#?}\n{}",
        text(&out)
    );
    assert_eq!(trailer(lab.dir(), "Desired-Commit"), bad);
    let subject = git(lab.dir(), &["log", "-1", "--format=%s", BRANCH]);
    assert!(subject.starts_with("validate run "), "{subject}");
}

/// The JSON log lines of `out` whose message is `message`.
fn log_lines(out: &Output, message: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"].as_str() == Some(message))
        .collect()
}

/// The one `round done` line of a `serve --once` run.
fn round_done(out: &Output) -> serde_json::Value {
    let lines = log_lines(out, "round done");
    assert_eq!(lines.len(), 1, "one summary per round\n{}", text(out));
    lines[0]["fields"].clone()
}

/// Issue 21: each round observes every host once (a host the apply did not touch is not
/// observed again, and its dry run is not repeated), ends with a one-line summary, and an
/// unreachable host is a WARN line naming it and why, with `--once` exiting 3.
#[test]
fn serve_once_observes_each_host_once_and_summarises_the_round() {
    let lab = Lab::up(2, 0);
    // deb-1 is brought to libpk 1.2; deb-2 is in no baseline: observed, never changed.
    write(
        &lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    hosts: [deb-1]\n  updates:\n    classes: none\n  window: always\n  rollout: lab\n  packages:\n    - name: libpk\n      minVersion: \"1.2-1\"\n",
    );
    enable_auto_apply(&lab, true);
    let head = commit(&lab, "libpk 1.2 on deb-1, applied automatically");
    let logins = |lab: &Lab| (lab.ssh_logins("deb-1"), lab.ssh_logins("deb-2"));

    let before = logins(&lab);
    let out = serve_once(&lab);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let after = logins(&lab);
    // deb-2: the round's one observation. deb-1: that observation, its dry run, the apply
    // (which checks the host right before its transaction) and the observation after it.
    assert_eq!(after.1 - before.1, 1, "deb-2 logins in one round\n{all}");
    assert_eq!(after.0 - before.0, 4, "deb-1 logins in one round\n{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    let round = round_done(&out);
    assert_eq!(round["commit"], head.as_str(), "{all}");
    assert_eq!(round["observed"], 2, "{all}");
    assert_eq!(round["unreachable"], 0, "{all}");
    assert_eq!(round["changed"], 1, "{all}");
    assert_eq!(round["changed_hosts"], "deb-1", "{all}");
    assert_eq!(round["failed"], 0, "{all}");
    assert_eq!(round["pending"], 0, "{all}");
    assert_eq!(round["run"], trailer(lab.dir(), "Run-Id").as_str(), "{all}");
    assert_eq!(
        round["report"],
        git(lab.dir(), &["rev-parse", BRANCH]).trim(),
        "{all}"
    );

    // Converged: one observation per host, nothing dry-run, nothing committed.
    let before = logins(&lab);
    let out = serve_once(&lab);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let after = logins(&lab);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1), "{all}");
    let round = round_done(&out);
    assert_eq!(round["changed"], 0, "{all}");
    assert_eq!(round["report"], "none (no host changed)", "{all}");

    // deb-2 goes away: a WARN line names it and the reason, the round is still reported,
    // and --once exits 3 (as `observe` does for hosts it could not observe).
    lab.stop_host("deb-2");
    let out = serve_once(&lab);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    let warned: Vec<_> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN" && v["fields"]["host"] == "deb-2")
        .collect();
    assert_eq!(warned.len(), 1, "{all}");
    let message = warned[0]["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("unreachable: ") && message.contains("refused"),
        "{message}\n{all}"
    );
    let round = round_done(&out);
    assert_eq!(round["observed"], 2, "{all}");
    assert_eq!(round["unreachable"], 1, "{all}");
    assert_eq!(round["unreachable_hosts"], "deb-2", "{all}");
    assert!(
        round["run"]
            .as_str()
            .is_some_and(|r| r.contains("-observe-")),
        "{all}"
    );
}

/// Issue 21: a round that would apply while another apply holds the fleet lock refuses
/// before it contacts any host (it used to observe and dry-run everything first); so does
/// `apply --auto-approve`.
#[test]
fn a_round_refuses_on_the_fleet_lock_before_contacting_any_host() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    enable_auto_apply(&lab, true);
    commit(&lab, "libpk 1.2, applied automatically");
    // The test holds the fleet lock, as a running apply would.
    let state = lab.dir().join(".patchkeeper");
    std::fs::create_dir_all(&state).expect("state dir");
    let lock = patchkeeper::apply::lock::FleetLock::acquire(&state, "test-holds-the-lock")
        .expect("the test takes the fleet lock");
    let before = lab.ssh_logins("deb-1");
    let out = serve_once(&lab);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("another apply holds the fleet lock"), "{all}");
    assert!(all.contains("test-holds-the-lock"), "{all}");
    assert_eq!(lab.ssh_logins("deb-1"), before, "no host contacted\n{all}");
    let apply = Command::cargo_bin("patchkeeper")
        .expect("the binary is built")
        .args(["apply", "--auto-approve", "--repo"])
        .arg(lab.dir())
        .stdin(Stdio::null())
        .output()
        .expect("patchkeeper runs");
    let all = text(&apply);
    assert_eq!(apply.status.code(), Some(1), "{all}");
    assert!(all.contains("another apply holds the fleet lock"), "{all}");
    assert_eq!(lab.ssh_logins("deb-1"), before, "no host contacted\n{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");

    // Released: the next round applies.
    drop(lock);
    let out = serve_once(&lab);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
}
