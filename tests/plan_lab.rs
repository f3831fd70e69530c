//! End-to-end: observe a real lab (sshd hosts with dpkg/apt and rpm/dnf) and plan; the plan
//! names the exact versions the lab repository offers. Needs root, like every lab test.

mod common;

use assert_cmd::Command;
use common::git::git;
use common::lab::{deb, rpm, write, Lab};
use serde_json::Value;

/// Runs `patchkeeper ARGS` in the lab's fleet repo; returns (exit code, stdout, stderr).
fn pk(lab: &Lab, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .current_dir(lab.dir())
        .args(args)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `plan --json` (extra args appended): the plan's host entries by name.
fn plan_hosts(lab: &Lab, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = pk(lab, &args);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    plan["hosts"].as_array().unwrap().clone()
}

fn host<'a>(hosts: &'a [Value], name: &str) -> &'a Value {
    hosts
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("{name} in {hosts:?}"))
}

/// The first reason of a host that must be blocked.
fn blocked_because<'a>(hosts: &'a [Value], name: &str) -> &'a str {
    let h = host(hosts, name);
    assert_eq!(h["status"], "blocked", "{h}");
    h["reasons"][0].as_str().unwrap()
}

/// `package from -> to rule source` per change.
fn changes(h: &Value) -> Vec<String> {
    h["changes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{} {} -> {} {} {}",
                        c["package"].as_str().unwrap(),
                        c["from"].as_str().unwrap_or("(new)"),
                        c["to"].as_str().unwrap(),
                        c["reasons"][0]["rule"].as_str().unwrap(),
                        c["reasons"][0]["source"].as_str().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The lab baseline asking only for pk-app >= 2.0-1 (which needs libpk >= 1.2), with
/// `extra_hold` held besides pk-held.
fn pk_app_baseline(lab: &Lab, extra_hold: &str) {
    write(
        lab,
        "baselines/lab.yaml",
        &format!("apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian, rpm]\n  updates:\n    classes: none\n  hold: [pk-held{extra_hold}]\n  window: always\n  rollout: lab\n  packages:\n    - name: pk-app\n      minVersion: \"2.0-1\"\n"),
    );
    git(
        lab.dir(),
        &["commit", "-q", "-a", "-m", "baseline: pk-app 2.0"],
    );
}

#[test]
fn plan_against_the_lab_names_the_offered_versions() {
    let lab = Lab::up(2, 1);
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .args(["plan", "--repo"])
        .arg(lab.dir())
        .args(["--json", "--detailed-exitcode"])
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "changes are pending: {stderr}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = |name: &str| {
        plan["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("{name} in plan"))
            .clone()
    };
    // The lab baseline approves security updates and holds pk-held.
    for name in ["deb-1", "deb-2"] {
        let h = host(name);
        assert_eq!(h["status"], "update", "{h}");
        let changes: Vec<(String, String, String)> = h["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["package"].as_str().unwrap().to_owned(),
                    c["from"].as_str().unwrap_or("").to_owned(),
                    c["to"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                ("libpk".into(), "1.0-1".into(), "1.2-1".into()),
                ("pk-kernel".into(), "1.0-1".into(), "1.1-1".into()),
            ],
            "{name}: exactly the security updates, never the held pk-held nor regular updates"
        );
        assert!(h["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["security"] == true));
        assert_eq!(h["fingerprint"].as_str().unwrap().len(), 64);
    }
    // pk-held is held on every host (apt-mark hold / dnf versionlock): never planned.
    for h in plan["hosts"].as_array().unwrap() {
        assert!(
            h["changes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["package"] != "pk-held"),
            "{h}"
        );
    }
    let rpm = host("rpm-1");
    assert_eq!(rpm["status"], "update", "{rpm}");
    let rpm_changes: Vec<String> = rpm["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["package"].as_str().unwrap(),
                c["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rpm_changes, vec!["libpk 1.2-1", "pk-kernel 1.1-1"], "{rpm}");
    // The canary goes first, alone.
    let batches = plan["batches"].as_array().unwrap();
    assert_eq!(batches[0]["stage"], "canary");
    assert_eq!(batches[0]["hosts"], serde_json::json!(["deb-1"]));
    assert_eq!(batches[0]["windowState"]["state"], "runs-now");
    assert_eq!(plan["summary"]["hostsToUpdate"], 3);
    lab.down();
}

#[test]
fn dependencies_the_package_manager_pulls_in_are_planned_then_applied() {
    let lab = Lab::up(1, 1);
    pk_app_baseline(&lab, "");
    let want = [
        "libpk 1.0-1 -> 1.2-1 dependency package-manager",
        "pk-app 1.0-1 -> 2.0-1 min-version baseline/lab",
    ];

    // Online: each host dry-runs its transaction; libpk comes along with pk-app.
    let hosts = plan_hosts(&lab, &[]);
    for name in ["deb-1", "rpm-1"] {
        let h = host(&hosts, name);
        assert_eq!(h["status"], "update", "{h}");
        assert_eq!(h["dependencies"], "simulated", "{h}");
        assert_eq!(changes(h), want, "{name}");
    }
    // The dry run changed nothing.
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.0-1");

    // Offline: no host is contacted, and the plan says so.
    let scratch = tempfile::tempdir().unwrap();
    let observed = scratch.path().join("observed.json");
    let (code, _, stderr) = pk(&lab, &["observe", "--out", observed.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let offline = plan_hosts(&lab, &["--observed", observed.to_str().unwrap()]);
    let h = host(&offline, "deb-1");
    assert_eq!(h["dependencies"], "not-simulated", "{h}");
    assert_eq!(changes(h), want[1..]);
    let (_, text, _) = pk(&lab, &["plan", "--observed", observed.to_str().unwrap()]);
    assert!(
        text.contains("Note: dependencies not simulated for 2 hosts"),
        "{text}"
    );

    // A package held on the host: apt keeps pk-app back in its full upgrade, dnf refuses
    // the dry run; either way the host is blocked with the reason instead of failing in
    // apply.
    lab.run_ok("deb-1", "apt-mark hold libpk >/dev/null");
    lab.run_ok(
        "rpm-1",
        "cp /etc/dnf/plugins/versionlock.list /tmp/versionlock.list && echo 'libpk-0:1.0-1.*' >> /etc/dnf/plugins/versionlock.list",
    );
    let hosts = plan_hosts(&lab, &[]);
    assert_eq!(
        blocked_because(&hosts, "deb-1"),
        "baseline/lab requires pk-app >= 2.0-1; 1.0-1 is installed and the package manager keeps the newer version back (installing it would move a held package, or a dependency is unavailable)"
    );
    let why = blocked_because(&hosts, "rpm-1");
    assert!(
        why.starts_with("the package manager refuses the transaction: Problem: package pk-app-2.0-1.noarch requires libpk >= 1.2"),
        "{why}"
    );
    lab.run_ok("deb-1", "apt-mark unhold libpk >/dev/null");
    lab.run_ok(
        "rpm-1",
        "cp /tmp/versionlock.list /etc/dnf/plugins/versionlock.list",
    );

    // Held by the baseline: the host's package manager would move it, the plan refuses.
    pk_app_baseline(&lab, ", libpk");
    let hosts = plan_hosts(&lab, &[]);
    for name in ["deb-1", "rpm-1"] {
        assert_eq!(
            blocked_because(&hosts, name),
            "the transaction would also move libpk 1.0-1 -> 1.2-1, but the package is held by baseline/lab (`libpk`)",
        );
    }

    // Apply the simulated plan: both packages move, verified, asking apt/dnf for pk-app only.
    pk_app_baseline(&lab, "");
    let plan_file = scratch.path().join("pk-app.plan.json");
    let (code, _, stderr) = pk(&lab, &["plan", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = pk(
        &lab,
        &["apply", "--auto-approve", plan_file.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "2.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-app"), "2.0-1");
    // libpk stays automatically installed: only pk-app was named.
    let journal =
        std::fs::read_to_string(lab.dir().join(".patchkeeper/journal.jsonl")).unwrap_or_default();
    assert!(journal.contains("pk-app=2.0-1"), "{journal}");
    assert!(!journal.contains("libpk=1.2-1"), "{journal}");
    lab.down();
}
