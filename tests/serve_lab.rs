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
    assert_eq!(trailer(lab.dir(), "Desired-Commit"), bad);
    let subject = git(lab.dir(), &["log", "-1", "--format=%s", BRANCH]);
    assert!(subject.starts_with("validate run "), "{subject}");
}
