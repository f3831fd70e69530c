//! `patchkeeper apply` end to end against the lab (issue 7): real sshd hosts with real
//! dpkg/apt and rpm/dnf. Every test asserts the hosts' real package state afterwards with
//! `dpkg-query` / `rpm -q` over plain OpenSSH, independently of patchkeeper.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::cli::{text, Running};
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

/// Whether the fleet lock is free: util-linux `flock -n` takes the same flock(2) lock.
fn lock_is_free(lab: &Lab) -> bool {
    let path = lab.dir().join(".patchkeeper/apply.lock");
    let out = Command::new("flock")
        .args(["-n", "-E", "99"])
        .arg(&path)
        .arg("true")
        .output()
        .expect("flock runs");
    match out.status.code() {
        Some(0) => true,
        Some(99) => false,
        _ => panic!(
            "flock {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn journal(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join(".patchkeeper/journal.jsonl")).unwrap_or_default()
}

fn apply_command(lab: &Lab, extra: &[&str]) -> Command {
    let mut cmd = pk(lab);
    cmd.arg("apply").args(extra);
    cmd
}

fn spawn_apply(lab: &Lab, extra: &[&str]) -> Child {
    apply_command(lab, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patchkeeper runs")
}

const REPORTS: &str = "patchkeeper/reports";

/// A file of the reports branch, as JSON.
fn report_file(lab: &Lab, path: &str) -> serde_json::Value {
    let text = common::git::git(lab.dir(), &["show", &format!("{REPORTS}:{path}")]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The last report commit's message.
fn last_report_message(lab: &Lab) -> String {
    common::git::git(lab.dir(), &["log", "-1", "--format=%B", REPORTS])
}

/// The run record the last report commit names (its `Run-Id:` trailer).
fn last_run_record(lab: &Lab) -> serde_json::Value {
    let id = common::git::git(
        lab.dir(),
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Run-Id,valueonly,separator=)",
            REPORTS,
        ],
    );
    report_file(lab, &format!("runs/{}.json", id.trim()))
}

/// A host's entry in a run record.
fn run_host<'a>(run: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    run["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["host"] == host))
        .unwrap_or_else(|| panic!("no {host} in {run}"))
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
    assert!(lock_is_free(&lab));
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
    // The canary's transaction is held in flight while deb-2 is stopped: deb-2 goes down
    // while the rollout runs, before its batch starts.
    lab.hold_host("deb-1");
    let child = spawn_apply(&lab, &["--auto-approve"]);
    lab.wait_held("deb-1");
    lab.stop_host("deb-2");
    lab.release_host("deb-1");
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    lab.start_host("deb-2");
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
    // The record: deb-2 was never touched, so it is skipped with the reason, never failed
    // (issue 21): in the commit subject, the run record and its host file.
    let message = last_report_message(&lab);
    let subject = message.lines().next().unwrap_or_default();
    assert!(subject.contains("1 host updated, 1 skipped"), "{message}");
    assert!(!subject.contains("failed"), "{message}");
    let run = last_run_record(&lab);
    assert_eq!(run_host(&run, "deb-2")["outcome"], "skipped", "{run}");
    assert!(
        run_host(&run, "deb-2")["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("stale: refused: the host changed since the plan was made"),
        "{run}"
    );
    let deb2 = report_file(&lab, "hosts/deb-2.json");
    assert_ne!(deb2["state"], "failed", "{deb2}");
    assert_eq!(deb2["lastRun"]["outcome"], "skipped", "{deb2}");
    // deb-1's change is recorded with its reason and its times; the record carries the
    // journal's run id.
    let deb1 = run_host(&run, "deb-1");
    assert_eq!(deb1["outcome"], "updated", "{run}");
    assert_eq!(deb1["changes"][0]["package"], "libpk", "{run}");
    assert_eq!(deb1["changes"][0]["from"], "1.0-1", "{run}");
    assert_eq!(deb1["changes"][0]["to"], "1.2-1", "{run}");
    assert_eq!(
        deb1["changes"][0]["reasons"][0], "min-version baseline/lab",
        "{run}"
    );
    let (started, finished) = (
        deb1["startedAt"].as_str().expect("startedAt"),
        deb1["finishedAt"].as_str().expect("finishedAt"),
    );
    assert!(started <= finished, "{run}");
    assert!(
        journal(&lab).contains(&format!("\"run\":\"{}\"", run["runId"].as_str().unwrap())),
        "the run record's id is the journal's: {run}\n{}",
        journal(&lab)
    );
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
    // The first apply is provably running (its transaction held) while the second starts.
    lab.hold_host("deb-1");
    let first = spawn_apply(&lab, &["--auto-approve"]);
    let lock = lab.dir().join(".patchkeeper/apply.lock");
    lab.wait_held("deb-1");
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
    lab.release_host("deb-1");
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert!(lock_is_free(&lab));
    // What a killed holder leaves (its details, naming a dead process) blocks nobody: the
    // lock is the kernel's, released when the process died.
    std::fs::write(
        &lock,
        format!(
            "{{\"pid\":4194304,\"host\":\"{}\",\"startedAt\":\"2026-11-25T00:00:00Z\",\"run\":\"x\"}}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim()
        ),
    )
    .unwrap();
    let next = apply(&lab, &["--auto-approve"]);
    assert_eq!(next.status.code(), Some(0), "{}", text(&next));
    // --break-lock is still accepted, and says it is not needed.
    let broken = apply(&lab, &["--auto-approve", "--break-lock"]);
    assert_eq!(broken.status.code(), Some(0), "{}", text(&broken));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("--break-lock is no longer needed"),
        "{}",
        text(&broken)
    );
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
    // The orphaned transaction goes on without its client and finishes: its output goes to
    // files on the host, not to the closed session, so no SIGPIPE cuts dpkg short.
    lab.release_host("deb-1");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "2.0-1 ii");
    lab.run_ok("deb-1", "dpkg --audit | (! grep .)");
    // The kernel released the killed apply's lock: the next apply just runs.
    assert!(lock_is_free(&lab));
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host(s) were in flight"), "{all}");
    assert!(stderr.contains("host deb-1: was in flight in run"), "{all}");
    // Recovery says what it found against the versions recorded before the transaction.
    assert!(
        stderr.contains("found the transaction's changes: ")
            && stderr.contains("libpk 1.0-1 -> 1.2-1"),
        "{all}"
    );
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
    let logins = lab.ssh_logins("deb-1");
    let out = apply(&lab, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auto-approve"));
    // Refused before observing or dry-running anything (issue 21): no login on the host,
    // no plan printed.
    assert_eq!(lab.ssh_logins("deb-1"), logins, "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    // Refused before it took the fleet lock or started a journal.
    assert!(!Path::new(&lab.dir().join(".patchkeeper/journal.jsonl")).exists());
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
    // SIGTERM arrives while deb-1's transaction is provably in flight (held).
    lab.hold_host("deb-1");
    let mut child = Running::spawn(apply_command(&lab, &["--auto-approve"]));
    lab.wait_held("deb-1");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    child.wait_for_stderr("Interrupted: no new host starts", Duration::from_secs(60));
    lab.release_host("deb-1");
    let out = child.wait();
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
    assert!(lock_is_free(&lab));
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
    // plan shows the lock it found (issue 21).
    let planned = pk(&lab).arg("plan").output().unwrap();
    assert!(
        String::from_utf8_lossy(&planned.stdout)
            .contains("note: the package manager was locked when observed"),
        "{}",
        text(&planned)
    );
    let out = apply(
        &lab,
        &[
            "--auto-approve",
            "--actor",
            "alice",
            "--at",
            "2026-12-01T06:30:00Z",
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Never touched: skipped with the reason, no planned count in CHANGES, and the wait
    // said once rather than every poll.
    assert_eq!(outcome(&stdout, "deb-1"), "skipped", "{all}");
    assert!(row(&stdout, "deb-1").contains("still locked"), "{all}");
    assert!(row(&stdout, "deb-1").contains("nothing changed"), "{all}");
    assert_eq!(
        row(&stdout, "deb-1").split_whitespace().nth(2),
        Some("0"),
        "{all}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches("waiting for the package manager lock")
            .count(),
        1,
        "{all}"
    );
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    let message = last_report_message(&lab);
    assert!(
        message
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("0 hosts updated, 1 skipped"),
        "{message}"
    );
    // The overrides and who applied: in the run record and as trailers.
    assert!(message.contains("\nApplied-By: alice\n"), "{message}");
    assert!(
        message.contains(
            "\nOverride: --at 2026-12-01T06:30:00Z: windows evaluated as if it were then"
        ),
        "{message}"
    );
    assert!(
        message.contains("\nOverride: --auto-approve without a terminal"),
        "{message}"
    );
    let run = last_run_record(&lab);
    assert_eq!(run["appliedBy"], "alice", "{run}");
    assert_eq!(run["overrides"].as_array().map(Vec::len), Some(2), "{run}");
    assert_eq!(run_host(&run, "deb-1")["outcome"], "skipped", "{run}");
    assert_ne!(report_file(&lab, "hosts/deb-1.json")["state"], "failed");
    // The lock and journal under .patchkeeper/ never show as untracked (issue 21).
    assert!(lab.dir().join(".patchkeeper/journal.jsonl").exists());
    let status = common::git::git(
        lab.dir(),
        &["status", "--porcelain", "--untracked-files=all"],
    );
    assert!(!status.contains(".patchkeeper/"), "{status}");
    // Released while apply waits: it goes ahead.
    let settings = std::fs::read_to_string(lab.dir().join("patchkeeper.yaml")).unwrap();
    write(
        &lab,
        "patchkeeper.yaml",
        &settings.replace("lockWait: 4s", "lockWait: 60s"),
    );
    commit(&lab, "lockWait 60s");
    let mut child = Running::spawn(apply_command(&lab, &["--auto-approve"]));
    child.wait_for_stderr(
        "waiting for the package manager lock",
        Duration::from_secs(120),
    );
    lab.unlock_host("deb-1");
    let out = child.wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
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

/// Adds lines under `spec:` of the lab's Settings (e.g. `  apply:\n    lockWait: 1s\n`) and,
/// when given, an `ssh.commandTimeout`.
fn settings(lab: &Lab, command_timeout: Option<&str>, extra: &str) {
    let mut text = std::fs::read_to_string(lab.dir().join("patchkeeper.yaml")).unwrap();
    if let Some(t) = command_timeout {
        text = text.replace(
            "    knownHosts: .lab/known_hosts\n",
            &format!("    knownHosts: .lab/known_hosts\n    commandTimeout: {t}\n"),
        );
    }
    text.push_str(extra);
    write(lab, "patchkeeper.yaml", &text);
}

/// The longest "the package transaction is still running after Ns" apply said for `host`.
fn still_running_secs(stderr: &str, host: &str) -> Option<u64> {
    stderr
        .lines()
        .filter(|l| l.contains(&format!("host={host} ")))
        .filter_map(|l| {
            let rest = l
                .split("the package transaction is still running after ")
                .nth(1)?;
            rest.split('s').next()?.parse().ok()
        })
        .max()
}

#[test]
fn a_transaction_slower_than_the_command_deadline_is_waited_for_and_verified() {
    let lab = Lab::up(1, 1);
    baseline(&lab, &[("libpk", "1.2-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n",
    );
    // Commands get 16 s; a transaction used to get 16 s + lockWait (1 s) and then be killed.
    settings(&lab, Some("16s"), "  apply:\n    lockWait: 1s\n");
    commit(&lab, "16 s command deadline");
    lab.hold_host("deb-1");
    lab.hold_host("rpm-1");
    let mut child = Running::spawn(apply_command(&lab, &["--auto-approve"]));
    child.wait_until("both transactions held", Duration::from_secs(300), |_| {
        lab.is_held("deb-1") && lab.is_held("rpm-1")
    });
    // apply says, every 8 s, that it still waits: once it says so past 17 s, the old
    // deadline has passed for both hosts.
    child.wait_until(
        "'still running after' more than 17 s on both hosts",
        Duration::from_secs(300),
        |stderr| {
            ["deb-1", "rpm-1"]
                .iter()
                .all(|h| still_running_secs(stderr, h).is_some_and(|s| s > 17))
        },
    );
    // Not signalled: both package managers are still at their hold points.
    assert_eq!(lab.pm_processes("deb-1"), ["apt-get", "dpkg"]);
    assert_eq!(lab.pm_processes("rpm-1"), ["dnf"]);
    lab.release_host("deb-1");
    lab.release_host("rpm-1");
    let out = child.wait();
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
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(
        journal(&lab)
            .matches("\"type\":\"transaction-finished\"")
            .count(),
        2
    );
}

#[test]
fn a_transaction_past_its_timeout_is_left_running_and_recovered_once_its_lock_is_free() {
    let lab = Lab::up(1, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    settings(
        &lab,
        None,
        "  apply:\n    transactionTimeout: 3s\n    lockWait: 10m\n",
    );
    commit(&lab, "transactions get 3 s");
    lab.hold_host("deb-1");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "failed", "{all}");
    assert!(
        row(&stdout, "deb-1").contains(
            "the package transaction is still running after 3s (apply.transactionTimeout); it was not signalled and is left in flight"
        ),
        "{all}"
    );
    // Told the truth: apt and dpkg still run, mid-transaction; the journal has it in flight.
    assert_eq!(lab.pm_processes("deb-1"), ["apt-get", "dpkg"]);
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 iU");
    let j = journal(&lab);
    assert!(
        j.contains("\"host\":\"deb-1\",\"event\":{\"type\":\"transaction-started\"")
            && !j.contains("\"type\":\"transaction-finished\"")
            && !j.contains("\"type\":\"host-done\""),
        "{j}"
    );
    // The next apply's recovery waits for the lock the transaction still holds; released,
    // the transaction finishes on its own (no repair needed: nothing cut it short when apply
    // stopped reading), and recovery says so only once the host re-observes consistent.
    let mut rerun = Running::spawn(apply_command(&lab, &["--auto-approve"]));
    rerun.wait_for_stderr(
        "recovery: waiting for the package manager lock",
        Duration::from_secs(120),
    );
    lab.release_host("deb-1");
    let out = rerun.wait();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("host deb-1: was in flight in run")
            && stderr.contains("re-observed: the package database is consistent")
            && !stderr.contains("--configure -a"),
        "{all}"
    );
    assert!(journal(&lab).contains("\"type\":\"recovered\""));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    lab.run_ok("deb-1", "dpkg --audit | (! grep .) && dpkg --verify libpk");
}

#[test]
fn a_failed_recovery_is_journaled_as_failed_and_the_host_is_left_alone() {
    let lab = Lab::up(2, 0);
    baseline(&lab, &[("libpk", "1.2-1")]);
    rollout(
        &lab,
        "    - name: all\n      size: \"100%\"\n",
        "  failureBudget: 5\n",
    );
    settings(&lab, None, "  apply:\n    lockWait: 2s\n");
    commit(&lab, "lockWait 2s");
    // deb-1 was in flight in a run that died, and its package manager is still locked.
    std::fs::create_dir_all(lab.dir().join(".patchkeeper")).unwrap();
    std::fs::write(
        lab.dir().join(".patchkeeper/journal.jsonl"),
        "{\"at\":\"2026-11-25T10:00:00Z\",\"run\":\"killed-run\",\"plan\":\"p\",\"host\":\"deb-1\",\"event\":{\"type\":\"transaction-started\",\"command\":\"apt-get install -y -q libpk=1.2-1\"}}\n",
    )
    .unwrap();
    lab.lock_host("deb-1");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("host deb-1: was in flight in run killed-run")
            && stderr.contains("after waiting 2s (apply.lockWait); not repaired; not recovered: it stays in flight"),
        "{all}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "failed", "{all}");
    assert!(
        row(&stdout, "deb-1")
            .contains("not started: recovering its interrupted transaction failed"),
        "{all}"
    );
    // The others go on.
    assert_eq!(outcome(&stdout, "deb-2"), "compliant", "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    let j = journal(&lab);
    assert!(
        j.contains("\"host\":\"deb-1\",\"event\":{\"type\":\"recovery-failed\"")
            && !j.contains("\"type\":\"recovered\""),
        "{j}"
    );

    // Unlocked, but the repair itself fails: pk-broken 1.1-1 is unpacked and its postinst
    // fails when `dpkg --configure -a` runs it.
    lab.unlock_host("deb-1");
    lab.run_ok(
        "deb-1",
        "cd /tmp && apt-get download -q pk-broken=1.1-1 && dpkg --unpack pk-broken_1.1-1_all.deb",
    );
    assert_eq!(deb(&lab, "deb-1", "pk-broken"), "1.1-1 iU");
    let out = apply(&lab, &["--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("running `DEBIAN_FRONTEND=noninteractive dpkg --force-confold --configure -a`; `DEBIAN_FRONTEND=noninteractive dpkg --force-confold --configure -a` failed (exit 1)")
            && stderr.contains("not recovered: it stays in flight"),
        "{all}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(outcome(&stdout, "deb-1"), "failed", "{all}");
    let j = journal(&lab);
    assert_eq!(j.matches("\"type\":\"recovery-failed\"").count(), 2, "{j}");
    assert!(!j.contains("\"type\":\"recovered\""), "{j}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
}
