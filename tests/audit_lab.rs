//! End-to-end: command-line runs leave the audit trail on the reports branch, as `serve`
//! does. `observe` and `apply` commit reports naming the fleet commit; `plan` and `apply`
//! read the first-seen times kept there, so `updates.delay` counts from when an update was
//! first offered. A changed working tree is never reported as its commit.

mod common;

use std::process::{Command, Output};

use common::cli::text;
use common::git::{desired_commit_of_last_report, git};
use common::lab::{deb, write, Lab};
use serde_json::Value;

const BRANCH: &str = "patchkeeper/reports";

fn pk(lab: &Lab, args: &[&str]) -> Output {
    common::cli::run(lab.dir(), args)
}

fn report_subjects(lab: &Lab) -> Vec<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(lab.dir())
        .args(["log", "--format=%s", BRANCH, "--"])
        .output()
        .expect("git runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// deb-1's entry of `plan --json --at AT`.
fn planned(lab: &Lab, at: &str) -> Value {
    let out = pk(lab, &["plan", "--json", "--at", at]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["hosts"][0].clone()
}

#[test]
fn observe_and_apply_are_reported_and_delays_count_from_the_first_report() {
    let lab = Lab::up(1, 0);
    let baseline = std::fs::read_to_string(lab.dir().join("baselines/lab.yaml")).unwrap();
    write(
        &lab,
        "baselines/lab.yaml",
        &baseline.replace(
            "    classes: security\n",
            "    classes: security\n    delay: 1d\n",
        ),
    );
    git(
        lab.dir(),
        &["commit", "-q", "-a", "-m", "security updates wait a day"],
    );
    let head = git(lab.dir(), &["rev-parse", "HEAD"]).trim().to_owned();
    let in_two_days = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(48))
        .unwrap()
        .to_string();

    // No reports yet: every update counts as first seen at the plan's instant.
    let h = planned(&lab, &in_two_days);
    assert_eq!(h["status"], "compliant", "{h}");
    assert!(h["skipped"][0]["why"]
        .as_str()
        .unwrap()
        .contains("baseline/lab waits 1 day"));

    // observe reports, naming the fleet commit.
    let out = pk(&lab, &["observe"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(&format!("on `{BRANCH}` (commit ")), "{all}");
    let subjects = report_subjects(&lab);
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(subjects[0].starts_with("observe run "), "{subjects:?}");
    let trailer = desired_commit_of_last_report(lab.dir(), BRANCH);
    assert_eq!(trailer, head);

    // Two days after that report, the updates are old enough.
    let h = planned(&lab, &in_two_days);
    assert_eq!(h["status"], "update", "{h}");
    let changes: Vec<&str> = h["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["package"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["libpk", "pk-kernel"]);

    // apply reports the run and what the host is afterwards.
    let out = pk(&lab, &["apply", "--auto-approve", "--at", &in_two_days]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    let subjects = report_subjects(&lab);
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].starts_with("apply run "), "{subjects:?}");
    let out = pk(&lab, &["report", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["counts"]["compliant"], 1, "{report}");
    // An apply with nothing to do still observed every host, but nothing changed since
    // the apply's report: no commit until `reports.heartbeat` (issue 21).
    let out = pk(&lab, &["apply", "--auto-approve", "--at", &in_two_days]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Not reported: no host changed since the last report"),
        "{}",
        text(&out)
    );
    assert_eq!(report_subjects(&lab).len(), 2);
    // With a zero heartbeat every observation is committed.
    let settings = std::fs::read_to_string(lab.dir().join("patchkeeper.yaml")).unwrap();
    write(
        &lab,
        "patchkeeper.yaml",
        &if settings.contains("  reports:\n") {
            settings.replace("  reports:\n", "  reports:\n    heartbeat: 0s\n")
        } else {
            format!("{settings}  reports:\n    heartbeat: 0s\n")
        },
    );
    git(lab.dir(), &["commit", "-q", "-a", "-m", "heartbeat 0s"]);
    let out = pk(&lab, &["apply", "--auto-approve", "--at", &in_two_days]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let subjects = report_subjects(&lab);
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(subjects[0].starts_with("observe run "), "{subjects:?}");

    // A changed working tree is not reported as its commit.
    write(&lab, "baselines/lab.yaml", &format!("{baseline}# edited\n"));
    let out = pk(&lab, &["observe"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(
            "note: not reporting: the fleet repo has uncommitted changes (baselines/lab.yaml)"
        ),
        "{all}"
    );
    assert_eq!(report_subjects(&lab).len(), 3);
    git(lab.dir(), &["checkout", "-q", "--", "baselines/lab.yaml"]);
    // Opting out, and observing a subset, report nothing either.
    assert_eq!(pk(&lab, &["observe", "--no-report"]).status.code(), Some(0));
    let out = pk(&lab, &["observe", "--hosts", "deb-1"]);
    assert!(text(&out).contains("note: not reporting: only the hosts selected by --hosts"));
    assert_eq!(report_subjects(&lab).len(), 3);
    lab.down();
}
