//! End-to-end: observe a real lab (sshd hosts with dpkg/apt and rpm/dnf) and plan; the plan
//! names the exact versions the lab repository offers. Needs root, like every lab test.

mod common;

use assert_cmd::Command;
use common::lab::Lab;
use serde_json::Value;

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
    let skipped = host("deb-1")["skipped"].to_string();
    assert!(
        skipped.contains("pk-held"),
        "the held package is listed as left alone: {skipped}"
    );
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
