//! A host's output is untrusted (issue 12): lab hosts that stream 2 GiB, or whose command
//! exits while a child keeps its output open, fail themselves with a reason naming the
//! command, while the other hosts' observe and apply go on, and the controller's peak
//! memory stays bounded (measured with `wait4`'s `ru_maxrss`, the kernel's high-water mark).

mod common;

use std::time::Duration;

use common::cli::{patchkeeper, text, Running};
use common::lab::{deb, write, Lab};
use serde_json::Value;

/// The controller may hold one command's output (64 MiB) and what it makes of it; without
/// the cap, a 2 GiB stream would be held whole.
const PEAK_RSS_LIMIT_KIB: u64 = 256 * 1024;

/// Streams 2 GiB on stdout.
const FLOOD: &str = "yes pk-flood-pk-flood-pk-flood | head -c 2147483648";

fn git_commit(lab: &Lab, message: &str) {
    let out = std::process::Command::new("git")
        .args(["commit", "-q", "-a", "-m", message])
        .current_dir(lab.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_host_flooding_the_observation_fails_alone_and_memory_stays_bounded() {
    let lab = Lab::up(2, 0);
    // deb-2's dpkg-query (the observation's package list) streams 2 GiB.
    lab.run_ok(
        "deb-2",
        &format!(
            "mv /usr/bin/dpkg-query /usr/bin/dpkg-query.real && printf '#!/bin/sh\\n{FLOOD}\\n' > /usr/bin/dpkg-query && chmod 755 /usr/bin/dpkg-query"
        ),
    );
    let mut cmd = patchkeeper(lab.dir());
    cmd.args(["observe", "--json", "--no-refresh"]);
    let (out, peak_kib) = Running::spawn(cmd).wait_with_peak_rss();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    let fleet: Value = serde_json::from_slice(&out.stdout).expect("observe JSON");
    let host = |name: &str| {
        fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {fleet:#}"))
            .clone()
    };
    let flooded = host("deb-2");
    assert_eq!(flooded["status"]["state"], "error", "{flooded:#}");
    assert_eq!(
        flooded["status"]["reason"]["kind"], "output-too-large",
        "{flooded:#}"
    );
    assert_eq!(flooded["status"]["reason"]["limitMib"], 64, "{flooded:#}");
    assert_eq!(host("deb-1")["status"]["state"], "reachable");
    // The table names the host, the command and the limit.
    let mut cmd = patchkeeper(lab.dir());
    cmd.args(["observe", "--no-refresh"]);
    let table = Running::spawn(cmd).wait();
    let stdout = String::from_utf8_lossy(&table.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("deb-2"))
        .unwrap_or_else(|| panic!("{}", text(&table)));
    assert!(
        row.contains("`sh -s (the observation script)` printed more than 64 MiB of output, the limit per command; it was stopped"),
        "{}",
        text(&table)
    );
    eprintln!(
        "observe with a 2 GiB host: peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(
        peak_kib < PEAK_RSS_LIMIT_KIB,
        "observe's peak RSS was {peak_kib} KiB"
    );
}

#[test]
fn hosts_whose_health_check_floods_or_never_closes_fail_alone_during_apply() {
    let lab = Lab::up(3, 0);
    write(
        &lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian]\n  updates:\n    classes: none\n  hold: [pk-held]\n  window: always\n  rollout: lab\n  packages:\n    - name: libpk\n      minVersion: \"1.2-1\"\n",
    );
    // deb-2's health check streams 2 GiB; deb-3's exits at once but leaves a child holding
    // its output open, so its channel never closes; deb-1's passes.
    let check =
        format!("case $(cat /etc/hostname) in deb-2) {FLOOD} ;; deb-3) sleep 600 & ;; esac; true");
    write(
        &lab,
        "rollouts/lab.yaml",
        &format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: lab\nspec:\n  stages:\n    - name: all\n      size: \"100%\"\n  parallelism: 3\n  failureBudget: 5\n  healthChecks:\n    - name: answers\n      command: {}\n      timeout: 20s\n",
            serde_json::to_string(&check).unwrap()
        ),
    );
    git_commit(
        &lab,
        "a health check that floods on deb-2 and hangs on deb-3",
    );
    let mut cmd = patchkeeper(lab.dir());
    cmd.args(["apply", "--auto-approve"]);
    let mut run = Running::spawn(cmd);
    run.wait_until("every host done", Duration::from_secs(600), |stderr| {
        ["deb-1", "deb-2", "deb-3"].iter().all(|h| {
            stderr.lines().any(|l| {
                l.contains(&format!("host={h} "))
                    && ["msg=\"compliant", "msg=\"rolled-back", "msg=\"failed"]
                        .iter()
                        .any(|m| l.contains(m))
            })
        })
    });
    let (out, peak_kib) = run.wait_with_peak_rss();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |host: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .unwrap_or_else(|| panic!("no row for {host}:\n{all}"))
            .to_string()
    };
    assert!(row("deb-1").contains("compliant"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    for host in ["deb-2", "deb-3"] {
        assert!(row(host).contains("rolled-back"), "{all}");
        assert_eq!(deb(&lab, host, "libpk"), "1.0-1 ii");
    }
    assert!(
        row("deb-2")
            .contains("printed more than 64 MiB of output, the limit per command; it was stopped"),
        "{all}"
    );
    assert!(
        row("deb-3").contains("health check `answers` failed: command timed out after 20s"),
        "{all}"
    );
    eprintln!(
        "apply with a 2 GiB health check: peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(
        peak_kib < PEAK_RSS_LIMIT_KIB,
        "apply's peak RSS was {peak_kib} KiB"
    );
}
