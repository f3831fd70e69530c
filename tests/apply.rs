//! `patchkeeper apply` end to end against the lab (issue 7): real sshd hosts with real
//! dpkg/apt and rpm/dnf. Every test asserts the hosts' real package state afterwards with
//! `dpkg-query` / `rpm -q` over plain OpenSSH, independently of patchkeeper.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::cli::text;
use common::lab::{deb, rpm, write, Lab};

fn pk(lab: &Lab) -> Command {
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.current_dir(lab.dir()).stdin(Stdio::null());
    cmd
}

fn apply(lab: &Lab, extra: &[&str]) -> Output {
    pk(lab)
        .arg("apply")
        .args(extra)
        .output()
        .expect("patchkeeper runs")
}

fn commit(lab: &Lab, message: &str) {
    let out = Command::new("git")
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

/// Replaces the lab baseline: `packages` as (name, minVersion); no pending-update classes.
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

/// Replaces the lab rollout: `stages` as YAML list items, then extra spec lines.
fn rollout(lab: &Lab, stages: &str, extra: &str) {
    write(
        lab,
        "rollouts/lab.yaml",
        &format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: lab\nspec:\n  stages:\n{stages}{extra}"
        ),
    );
}

fn journal(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join(".patchkeeper/journal.jsonl")).unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_apply(lab: &Lab, extra: &[&str]) -> Child {
    pk(lab)
        .arg("apply")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patchkeeper runs")
}

fn row<'a>(stdout: &'a str, host: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no table row for {host} in:\n{stdout}"))
}

fn outcome<'a>(stdout: &'a str, host: &str) -> &'a str {
    row(stdout, host).split_whitespace().nth(1).unwrap()
}

#[test]
fn happy_path_on_debian_and_rpm_installs_exactly_the_plan_and_verifies() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]);
    commit(&lab, "baseline: libpk 1.2, pk-app 2.0");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for host in ["deb-1", "rpm-1"] {
        assert_eq!(outcome(&stdout, host), "compliant", "{all}");
        assert!(
            row(&stdout, host).contains("versions and integrity verified"),
            "{all}"
        );
    }
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "2.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-app"), "2.0-1");
    // Nothing beyond the plan: the security updates the baseline does not ask for stay.
    assert_eq!(deb(&lab, "deb-1", "pk-kernel"), "1.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "pk-kernel"), "1.0-1");
    lab.run_ok(
        "deb-1",
        "dpkg --verify libpk pk-app && dpkg --audit | (! grep .)",
    );
    lab.run_ok("rpm-1", "rpm -V libpk pk-app");
    // Converged: a new plan has nothing to do.
    let plan = pk(&lab)
        .args(["plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // The journal has every step of both hosts.
    let j = journal(&lab);
    for step in [
        "host-started",
        "versions-recorded",
        "transaction-started",
        "transaction-finished",
        "verified",
        "host-done",
        "run-finished",
    ] {
        assert_eq!(
            j.matches(&format!("\"type\":\"{step}\"")).count(),
            if step == "run-finished" { 1 } else { 2 },
            "{step} in {j}"
        );
    }
    // The lock is released.
    assert!(!lab.dir().join(".patchkeeper/apply.lock").exists());
}

#[test]
fn failing_postinst_rolls_back_to_the_recorded_version() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("pk-broken", "1.1-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n",
    );
    commit(&lab, "baseline: pk-broken 1.1");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "rolled-back", "{all}");
    assert!(
        row(&stdout, "deb-1").contains("rolled back to pk-broken 1.0-1 (verified)"),
        "{all}"
    );
    assert_eq!(outcome(&stdout, "rpm-1"), "rolled-back", "{all}");
    // dpkg left 1.1 half-configured; the rollback put 1.0 back, fully installed.
    assert_eq!(deb(&lab, "deb-1", "pk-broken"), "1.0-1 ii");
    lab.run_ok(
        "deb-1",
        "dpkg --verify pk-broken && dpkg --audit | (! grep .)",
    );
    assert_eq!(rpm(&lab, "rpm-1", "pk-broken"), "1.0-1");
    lab.run_ok("rpm-1", "rpm -V pk-broken");
    assert!(journal(&lab).contains("\"type\":\"rollback-started\""));
}

#[test]
fn failure_budget_of_one_halts_after_the_second_failure() {
    let lab = Lab::up(4, 0);
    baseline(&lab, &[("pk-broken", "1.1-1")]);
    rollout(
        &lab,
        "    - name: first\n      size: 1\n      selector:\n        hosts: [deb-1]\n    - name: second\n      size: 1\n      selector:\n        hosts: [deb-2]\n    - name: rest\n      size: \"100%\"\n",
        "  parallelism: 1\n  failureBudget: 1\n",
    );
    commit(&lab, "three stages, budget 1");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "rolled-back", "{all}");
    assert_eq!(outcome(&stdout, "deb-2"), "rolled-back", "{all}");
    for host in ["deb-3", "deb-4"] {
        assert_eq!(outcome(&stdout, host), "not-started", "{all}");
        assert!(row(&stdout, host).contains("halted"), "{all}");
        // Untouched: still the old version, and apt never ran there.
        assert_eq!(deb(&lab, host, "pk-broken"), "1.0-1 ii");
        lab.run_ok(host, "! grep -q 'upgrade pk-broken' /var/log/dpkg.log");
    }
    // The same check does see the attempts on the hosts that were tried.
    lab.run_ok("deb-2", "grep -q 'upgrade pk-broken' /var/log/dpkg.log");
    assert!(stdout.contains("Rollout lab was halted"), "{all}");
    for host in ["deb-1", "deb-2"] {
        assert_eq!(deb(&lab, host, "pk-broken"), "1.0-1 ii");
    }
}

#[test]
fn host_stopped_mid_rollout_is_unreachable_and_counts_against_the_budget() {
    let lab = Lab::up(3, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    rollout(
        &lab,
        "    - name: canary\n      size: 1\n      selector:\n        hosts: [deb-1]\n    - name: rest\n      size: \"100%\"\n",
        "  parallelism: 1\n  failureBudget: 0\n",
    );
    commit(&lab, "canary then the rest, budget 0");
    // The canary is slow, so deb-2 can be stopped while the rollout runs.
    lab.slow_host("deb-1", 2);
    let child = spawn_apply(&lab, &["--auto-approve"]);
    wait_for("the canary to start", Duration::from_secs(60), || {
        journal(&lab).contains("\"host\":\"deb-1\",\"event\":{\"type\":\"host-started\"")
    });
    lab.stop_host("deb-2");
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    lab.start_host("deb-2");
    lab.slow_host("deb-1", 0);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "compliant", "{all}");
    assert_eq!(outcome(&stdout, "deb-2"), "unreachable", "{all}");
    assert_eq!(outcome(&stdout, "deb-3"), "not-started", "{all}");
    assert!(stdout.contains("Rollout lab was halted"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.0-1 ii");
    assert_eq!(deb(&lab, "deb-3", "libpk"), "1.0-1 ii");
}

#[test]
fn kernel_package_triggers_a_reboot_and_apply_waits_for_the_new_boot_id() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("pk-kernel", "1.1-1")]);
    commit(&lab, "baseline: pk-kernel 1.1");
    let before = [lab.boot_id("deb-1"), lab.boot_id("rpm-1")];
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (i, host) in ["deb-1", "rpm-1"].into_iter().enumerate() {
        assert_eq!(outcome(&stdout, host), "compliant", "{all}");
        assert!(
            row(&stdout, host).contains("rebooted (new boot id)"),
            "{all}"
        );
        let now = lab.boot_id(host);
        assert_ne!(now, before[i], "{host} has a new boot id");
        // The journal recorded the old and the new boot id it waited for.
        let j = journal(&lab);
        assert!(
            j.contains(&format!(
                "\"host\":\"{host}\",\"event\":{{\"type\":\"reboot-started\",\"bootId\":\"{}\"",
                before[i]
            )),
            "{j}"
        );
        assert!(
            j.contains(&format!(
                "\"host\":\"{host}\",\"event\":{{\"type\":\"rebooted\",\"bootId\":\"{now}\""
            )),
            "{j}"
        );
    }
    assert_eq!(deb(&lab, "deb-1", "pk-kernel"), "1.1-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "pk-kernel"), "1.1-1");
    // The reboot cleared the marker.
    assert!(!lab
        .run("deb-1", "test -e /run/reboot-required")
        .status
        .success());
}

#[test]
fn health_check_failing_only_after_the_reboot_rolls_back_and_boots_the_old_versions() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("pk-kernel", "1.1-1")]);
    // Passes until the host boots again: what a service that does not start on the new
    // kernel looks like.
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n  healthChecks:\n    - name: same-boot\n      command: \"test \\\"$(cat /proc/sys/kernel/random/boot_id)\\\" = \\\"$(cat /root/boot-before)\\\"\"\n      timeout: 10s\n",
    );
    commit(&lab, "a health check that fails after a reboot");
    let mut before = Vec::new();
    for host in ["deb-1", "rpm-1"] {
        lab.run_ok(
            host,
            "cat /proc/sys/kernel/random/boot_id > /root/boot-before",
        );
        before.push(lab.boot_id(host));
    }
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let j = journal(&lab);
    for (i, host) in ["deb-1", "rpm-1"].into_iter().enumerate() {
        assert_eq!(outcome(&stdout, host), "rolled-back", "{all}");
        let row = row(&stdout, host);
        assert!(
            row.contains("health check `same-boot` failed after the reboot"),
            "{all}"
        );
        assert!(
            row.contains("rebooted again to run the restored versions"),
            "{all}"
        );
        // Booted twice: into the new version, then into the restored one.
        let reboots = j
            .lines()
            .filter(|l| {
                l.contains(&format!(
                    "\"host\":\"{host}\",\"event\":{{\"type\":\"rebooted\""
                ))
            })
            .count();
        assert_eq!(reboots, 2, "{j}");
        assert_ne!(lab.boot_id(host), before[i]);
    }
    assert_eq!(deb(&lab, "deb-1", "pk-kernel"), "1.0-1 ii");
    lab.run_ok(
        "deb-1",
        "dpkg --verify pk-kernel && dpkg --audit | (! grep .)",
    );
    assert_eq!(rpm(&lab, "rpm-1", "pk-kernel"), "1.0-1");
    lab.run_ok("rpm-1", "rpm -V pk-kernel");
}

#[test]
fn stale_saved_plan_is_refused_for_the_changed_host_only() {
    let lab = Lab::up(2, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n",
    );
    commit(&lab, "baseline: libpk 1.2");
    let plan_file = lab.dir().join(".patchkeeper-plan.json");
    let plan = pk(&lab)
        .args(["plan", "--out"])
        .arg(&plan_file)
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    // deb-2 moves after the plan was made.
    lab.run_ok(
        "deb-2",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpk=1.1-1",
    );
    let out = apply(&lab, &[plan_file.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "compliant", "{all}");
    assert_eq!(outcome(&stdout, "deb-2"), "stale", "{all}");
    assert!(
        row(&stdout, "deb-2").contains("libpk is now 1.1-1 (planned from 1.0-1)"),
        "{all}"
    );
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.1-1 ii");
    // A saved plan from another commit of the fleet repo is refused entirely.
    let plan2 = pk(&lab)
        .args(["plan", "--out"])
        .arg(&plan_file)
        .output()
        .unwrap();
    assert!(plan2.status.success(), "{}", text(&plan2));
    baseline(&lab, &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]);
    commit(&lab, "baseline: pk-app too");
    let out = apply(&lab, &[plan_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another state of the fleet repo"),
        "{}",
        text(&out)
    );
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.1-1 ii");
}

#[test]
fn second_concurrent_apply_is_refused_by_the_lock() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    commit(&lab, "baseline: libpk 1.2");
    lab.slow_host("deb-1", 2);
    let first = spawn_apply(&lab, &["--auto-approve"]);
    let lock = lab.dir().join(".patchkeeper/apply.lock");
    wait_for(
        "the first apply to take the lock",
        Duration::from_secs(30),
        || std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")),
    );
    let second = apply(&lab, &["--auto-approve"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        stderr.contains(&format!(
            "another apply holds the fleet lock: pid {}",
            first.id()
        )),
        "{}",
        text(&second)
    );
    let first = first.wait_with_output().unwrap();
    lab.slow_host("deb-1", 0);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    // A dead holder's lock is stale: reported with the command that breaks it.
    std::fs::write(
        &lock,
        format!(
            "{{\"pid\":4194304,\"host\":\"{}\",\"startedAt\":\"2026-11-25T00:00:00Z\",\"run\":\"x\"}}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim()
        ),
    )
    .unwrap();
    let refused = apply(&lab, &["--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is stale: process 4194304 is not running"),
        "{}",
        text(&refused)
    );
    assert!(stderr.contains("--break-lock"), "{}", text(&refused));
    let broken = apply(&lab, &["--auto-approve", "--break-lock"]);
    assert_eq!(broken.status.code(), Some(0), "{}", text(&broken));
}

#[test]
fn kill_9_mid_run_then_rerun_honours_the_journal_and_converges() {
    let lab = Lab::up(2, 1);
    baseline(&lab, &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]);
    rollout(
        &lab,
        "    - name: canary\n      size: 1\n      selector:\n        hosts: [deb-1]\n    - name: rest\n      size: \"100%\"\n",
        "  failureBudget: 1\n",
    );
    commit(&lab, "baseline: libpk 1.2, pk-app 2.0");
    // The canary's transaction stops at the lab's hold point: dpkg has unpacked the new
    // versions and not configured them. Killed there, apply is provably mid-transaction.
    lab.hold_host("deb-1");
    let mut child = spawn_apply(&lab, &["--auto-approve"]);
    lab.wait_held("deb-1");
    let j = journal(&lab);
    assert!(
        j.contains("\"host\":\"deb-1\",\"event\":{\"type\":\"transaction-started\"")
            && !j.contains("\"host\":\"deb-1\",\"event\":{\"type\":\"transaction-finished\""),
        "{j}"
    );
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 iU");
    child.kill().unwrap(); // SIGKILL
    let killed = child.wait_with_output().unwrap();
    assert_eq!(killed.status.code(), None, "killed by a signal");
    // The orphaned transaction goes on without its client (and ends, finished or cut short
    // when it writes to the closed session): the host is at rest before the rerun.
    lab.release_host("deb-1");
    // The dead holder's lock is reported, not silently blocking.
    let refused = apply(&lab, &["--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--break-lock"));
    let out = apply(&lab, &["--auto-approve", "--break-lock"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host(s) were in flight"), "{all}");
    assert!(stderr.contains("host deb-1: was in flight in run"), "{all}");
    assert!(journal(&lab).contains("\"type\":\"recovered\""));
    // Converged, nothing half-configured anywhere.
    for host in ["deb-1", "deb-2"] {
        assert_eq!(deb(&lab, host, "libpk"), "1.2-1 ii");
        assert_eq!(deb(&lab, host, "pk-app"), "2.0-1 ii");
        lab.run_ok(
            host,
            "dpkg --audit | (! grep .) && dpkg --verify libpk pk-app",
        );
    }
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-app"), "2.0-1");
    let plan = pk(&lab)
        .args(["plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // A later observe has nothing left in flight to report.
    assert!(
        !String::from_utf8_lossy(&pk(&lab).args(["observe"]).output().unwrap().stderr)
            .contains("in flight")
    );
}

#[test]
fn an_interrupted_rpm_transaction_blocks_the_plan_and_recovery_repairs_it() {
    let lab = Lab::up(0, 1);
    // What a dnf killed mid-transaction leaves: the new pk-kernel recorded next to the old.
    let url = format!("{}/rpm/pk-kernel-1.1-1.noarch.rpm", lab.info().repo.url);
    lab.run_ok(
        "rpm-1",
        &format!("python3 -c \"import urllib.request as u; u.urlretrieve('{url}', '/tmp/k.rpm')\" && rpm -i --justdb --nodeps --replacefiles /tmp/k.rpm 2>/dev/null"),
    );
    assert_eq!(
        lab.run_ok("rpm-1", "rpm -q pk-kernel").trim(),
        "pk-kernel-1.0-1.noarch\npk-kernel-1.1-1.noarch"
    );
    let plan = pk(&lab).args(["plan", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let host = &json["hosts"][0];
    assert_eq!(host["status"], "blocked", "{host}");
    assert_eq!(
        host["reasons"][0],
        "the package database needs repair first (pk-kernel 1.0-1 duplicate): run `dnf remove --duplicates` on the host"
    );
    let out = pk(&lab).arg("observe").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok, package database unfinished: pk-kernel duplicate"),
        "{}",
        text(&out)
    );
    // An apply killed in that transaction: its journal shows the host in flight, and the
    // next observe (or apply) recovers it.
    std::fs::create_dir_all(lab.dir().join(".patchkeeper")).unwrap();
    std::fs::write(
        lab.dir().join(".patchkeeper/journal.jsonl"),
        "{\"at\":\"2026-11-25T10:00:00Z\",\"run\":\"killed-run\",\"plan\":\"p\",\"host\":\"rpm-1\",\"event\":{\"type\":\"transaction-started\",\"command\":\"dnf install -y -q pk-kernel-1.1-1\"}}\n",
    )
    .unwrap();
    let out = pk(&lab).arg("observe").output().unwrap();
    let all = text(&out);
    assert!(
        all.contains("host rpm-1: was in flight in run killed-run")
            && all.contains("the package transaction was interrupted (pk-kernel 1.0-1 duplicate); running `dnf -y -q remove --duplicates`; repaired"),
        "{all}"
    );
    assert_eq!(rpm(&lab, "rpm-1", "pk-kernel"), "1.1-1");
    lab.run_ok(
        "rpm-1",
        "dnf -q -C --disablerepo='*' check && rpm -V pk-kernel",
    );
    assert!(journal(&lab).contains("\"type\":\"recovered\""));
}

#[test]
fn closed_window_leaves_hosts_waiting_and_the_next_apply_in_the_window_continues() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    write(
        &lab,
        "windows/always.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: always\nspec:\n  schedule: \"0 2 * * *\"\n  timezone: UTC\n  duration: 2h\n",
    );
    commit(&lab, "nightly window");
    let out = apply(&lab, &["--auto-approve", "--at", "2026-11-25T12:00:00Z"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "waiting", "{all}");
    assert!(
        row(&stdout, "deb-1").contains("2026-11-26T02:00:00Z"),
        "{all}"
    );
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    let out = apply(&lab, &["--auto-approve", "--at", "2026-11-26T02:30:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
}

#[test]
fn without_a_terminal_apply_refuses_unless_auto_approved() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    commit(&lab, "baseline: libpk 1.2");
    let out = apply(&lab, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auto-approve"));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    assert!(Path::new(&lab.dir().join(".patchkeeper")).exists());
    assert!(!lab.dir().join(".patchkeeper/apply.lock").exists());
}

#[test]
fn failing_health_check_rolls_back_real_upgrades_on_debian_and_rpm() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n  healthChecks:\n    - name: app-answers\n      command: \"pk-app | grep -q 'with libpk 9'\"\n      timeout: 10s\n      retries: 2\n",
    );
    commit(&lab, "a health check that fails");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for host in ["deb-1", "rpm-1"] {
        assert_eq!(outcome(&stdout, host), "rolled-back", "{all}");
        assert!(
            row(&stdout, host).contains("health check `app-answers` failed"),
            "{all}"
        );
        assert!(row(&stdout, host).contains("after 2 attempts"), "{all}");
    }
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "1.0-1 ii");
    lab.run_ok(
        "deb-1",
        "dpkg --verify libpk pk-app && dpkg --audit | (! grep .)",
    );
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.0-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-app"), "1.0-1");
    lab.run_ok("rpm-1", "rpm -V libpk pk-app");
}

#[test]
fn sigterm_lets_the_running_transaction_finish_and_starts_no_new_host() {
    let lab = Lab::up(3, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  parallelism: 1\n",
    );
    commit(&lab, "one host at a time");
    lab.slow_host("deb-1", 2);
    let child = spawn_apply(&lab, &["--auto-approve"]);
    wait_for("deb-1's transaction", Duration::from_secs(60), || {
        journal(&lab).contains("\"host\":\"deb-1\",\"event\":{\"type\":\"transaction-started\"")
    });
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    lab.slow_host("deb-1", 0);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "compliant", "{all}");
    for host in ["deb-2", "deb-3"] {
        assert_eq!(outcome(&stdout, host), "not-started", "{all}");
        assert!(row(&stdout, host).contains("interrupted"), "{all}");
        assert_eq!(deb(&lab, host, "libpk"), "1.0-1 ii");
    }
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert!(stdout.contains("Apply was interrupted"), "{all}");
    assert!(!lab.dir().join(".patchkeeper/apply.lock").exists());
}

#[test]
fn held_package_manager_lock_is_waited_for_up_to_lock_wait() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    let settings = std::fs::read_to_string(lab.dir().join("patchkeeper.yaml")).unwrap();
    write(
        &lab,
        "patchkeeper.yaml",
        &format!("{settings}  apply:\n    lockWait: 4s\n"),
    );
    commit(&lab, "lockWait 4s");
    lab.lock_host("deb-1");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "failed", "{all}");
    assert!(row(&stdout, "deb-1").contains("still locked"), "{all}");
    assert!(row(&stdout, "deb-1").contains("nothing changed"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    // Released while apply waits: it goes ahead.
    let settings = std::fs::read_to_string(lab.dir().join("patchkeeper.yaml")).unwrap();
    write(
        &lab,
        "patchkeeper.yaml",
        &settings.replace("lockWait: 4s", "lockWait: 60s"),
    );
    commit(&lab, "lockWait 60s");
    let child = spawn_apply(&lab, &["--auto-approve"]);
    wait_for(
        "apply to wait for the lock",
        Duration::from_secs(60),
        || journal(&lab).matches("\"type\":\"host-started\"").count() == 2,
    );
    std::thread::sleep(Duration::from_secs(3));
    lab.unlock_host("deb-1");
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for the package manager lock"),
        "{all}"
    );
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
}

#[test]
fn rollback_says_plainly_when_the_old_versions_cannot_be_obtained() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("libpk", "1.2-1")]);
    // The health check fails after taking the package repositories away, so the recorded
    // version 1.0-1 can no longer be downloaded when the rollback needs it.
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n  healthChecks:\n    - name: repo-gone\n      command: \"rm -f /etc/apt/sources.list.d/patchkeeper-lab.list /etc/yum.repos.d/patchkeeper-lab.repo; if command -v apt-get >/dev/null; then apt-get update -q >/dev/null 2>&1; else dnf clean all >/dev/null 2>&1; fi; false\"\n",
    );
    commit(&lab, "a health check that removes the repositories");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for host in ["deb-1", "rpm-1"] {
        assert_eq!(outcome(&stdout, host), "failed", "{all}");
        assert!(
            row(&stdout, host)
                .contains("cannot roll back: the previous versions can no longer be obtained"),
            "{all}"
        );
        assert!(row(&stdout, host).contains("left at: libpk 1.2-1"), "{all}");
    }
    assert!(row(&stdout, "deb-1").contains("libpk=1.0-1"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
}
