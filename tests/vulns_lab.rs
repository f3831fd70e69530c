//! End to end on a real lab: the lab publishes a Debian security tracker dump and OSV records
//! for its own security updates; imported, they show on the hosts (`vulns`), the plan names
//! them (and the held pk-held update with who holds it), apply closes them, and `vulns`
//! then shows none. Reports list open advisories and carry the critical events.

mod common;

use common::cli::{run, text};
use common::git::git;
use common::lab::{write, Lab};
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `id state` of every advisory of `host` in a `vulns --json` report.
fn advisories(report: &Value, host: &str) -> Vec<String> {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} in {report}"))["advisories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {} {}{}",
                a["id"].as_str().unwrap(),
                a["severity"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
                if a["planned"] == true { " planned" } else { "" }
            )
        })
        .collect()
}

fn report_file(lab: &Lab, path: &str) -> Value {
    let text = git(lab.dir(), &["show", &format!("patchkeeper/reports:{path}")]);
    serde_json::from_str(&text).unwrap()
}

/// Every run record on the reports branch, oldest first.
fn runs(lab: &Lab) -> Vec<Value> {
    let names = git(
        lab.dir(),
        &["ls-tree", "--name-only", "patchkeeper/reports", "runs/"],
    );
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    names.iter().map(|n| report_file(lab, n)).collect()
}

fn events(run: &Value) -> Vec<String> {
    run["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["kind"].as_str().unwrap(),
                        e["host"].as_str().unwrap(),
                        e["advisory"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_advisories_are_shown_planned_closed_by_apply() {
    let lab = Lab::up(1, 1);
    let dir = lab.dir();

    let out = run(
        dir,
        &[
            "advisories",
            "import",
            "advisories/debian-tracker.json",
            "advisories/osv",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(debian-tracker): 3 records from 3 advisories"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(osv): 4 records from 4 advisories"),
        "{stdout}"
    );
    let out = run(dir, &["advisories", "status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let snapshot = json(&out)["id"].as_str().unwrap().to_owned();

    // Observe and report: host files list the open advisories, the run the critical event.
    let out = run(dir, &["observe"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let host = report_file(&lab, "hosts/rpm-1.json");
    assert_eq!(host["advisorySnapshot"], snapshot.as_str());
    let critical = host["advisories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "PKLAB-2026:0005")
        .unwrap_or_else(|| panic!("{host}"));
    assert_eq!(critical["severity"], "critical");
    assert!(critical["due"].is_string(), "{critical}");
    assert!(events(runs(&lab).last().unwrap())
        .contains(&"critical-open rpm-1 PKLAB-2026:0005".to_owned()));

    // vulns: each host's advisories; the held pk-held's fix is held.
    let out = run(dir, &["vulns", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "open advisories: {}",
        text(&out)
    );
    let report = json(&out);
    assert_eq!(report["snapshot"], snapshot.as_str());
    assert_eq!(
        advisories(&report, "deb-1"),
        [
            // The tracker's CVE-2026-9002 is folded into the DSA-style record on pk-libs,
            // the source package libpk is built from.
            "CVE-2026-9006 high fix-held",
            "PKDSA-0001-1 high fix-offered planned",
            "CVE-2026-9005 medium fix-offered planned",
        ]
    );
    assert_eq!(
        advisories(&report, "rpm-1"),
        [
            "PKLAB-2026:0005 critical fix-offered planned",
            "PKLAB-2026:0002 high fix-offered planned",
            "PKLAB-2026:0006 high fix-held",
        ]
    );
    let deb_libpk = &report["hosts"][0]["advisories"][1];
    assert_eq!(deb_libpk["source"], "pk-libs");
    assert_eq!(deb_libpk["packages"], serde_json::json!(["libpk"]));
    assert_eq!(deb_libpk["installed"], "1.0-1");
    assert_eq!(deb_libpk["fixed"], "1.2-1");
    assert_eq!(deb_libpk["cves"], serde_json::json!(["CVE-2026-9002"]));
    assert_eq!(report["summary"]["open"], 6);
    let out = run(dir, &["vulns", "--severity", "critical"]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("rpm-1  Rocky Linux:9  1 open (1 critical)"),
        "{human}"
    );
    assert!(
        human.contains("deb-1  Debian:12  no open advisory"),
        "{human}"
    );

    // The plan names what each change fixes, and the held update with who holds it.
    let out = run(dir, &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains(&format!("advisories {snapshot}")), "{plan}");
    assert!(
        plan.contains("~ libpk     1.0-1 -> 1.2-1  security  baseline/lab  fixes PKDSA-0001-1/CVE-2026-9002 (high)"),
        "{plan}"
    );
    assert!(
        plan.contains("~ pk-kernel 1.0-1 -> 1.1-1  security  baseline/lab  fixes PKLAB-2026:0005/CVE-2026-9005 (critical)"),
        "{plan}"
    );
    assert!(
        plan.contains("= pk-held 1.1-1 left alone: held on the host, held by baseline/lab (`pk-held`); would fix CVE-2026-9006 (high)"),
        "{plan}"
    );
    let out = run(dir, &["plan", "--json"]);
    let plan = json(&out);
    assert_eq!(plan["advisorySnapshot"], snapshot.as_str());
    for h in plan["hosts"].as_array().unwrap() {
        let held = &h["skipped"][0];
        assert_eq!(held["package"], "pk-held", "{h}");
        assert_eq!(held["version"], "1.1-1");
        assert_eq!(held["from"], "1.0-1");
        assert_eq!(held["heldBy"], serde_json::json!(["host", "baseline/lab"]));
        assert_eq!(held["fixes"][0]["severity"], "high");
    }

    // Lift the holds (baseline and hosts) so apply can close everything.
    write(
        &lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian, rpm]\n  updates:\n    classes: security\n  window: always\n  rollout: lab\n",
    );
    git(dir, &["commit", "-q", "-a", "-m", "lift the pk-held hold"]);
    lab.run_ok("deb-1", "apt-mark unhold pk-held");
    lab.run_ok("rpm-1", ": > /etc/dnf/plugins/versionlock.list");

    let out = run(dir, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = run(dir, &["vulns"]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing open after apply: {}",
        text(&out)
    );
    assert!(
        human.contains("deb-1  Debian:12  no open advisory"),
        "{human}"
    );
    assert!(
        human.contains("rpm-1  Rocky Linux:9  no open advisory"),
        "{human}"
    );
    assert!(
        human.contains("Fleet: 0 open advisories on 0 of 2 hosts"),
        "{human}"
    );

    // The apply's report: no advisory left, and the critical one closed.
    let host = report_file(&lab, "hosts/rpm-1.json");
    assert!(host.get("advisories").is_none(), "{host}");
    assert_eq!(host["advisorySnapshot"], snapshot.as_str());
    let last = runs(&lab)
        .into_iter()
        .find(|r| r["kind"] == "apply")
        .unwrap();
    assert!(
        events(&last).contains(&"critical-closed rpm-1 PKLAB-2026:0005".to_owned()),
        "{last}"
    );
    let summary = report_file(&lab, "summary.json");
    assert_eq!(summary["advisories"]["open"]["critical"], 0, "{summary}");
}
