//! Emergency windows in `patchkeeper plan` (issue 23), on the example fleet with its
//! recorded observed state: a request due before the hosts' next normal window takes the
//! emergency window it names (only its own changes; the baselines' wait), a request due
//! later keeps the normal window, and the plan says which window and why in every format
//! (human and markdown snapshot-tested with insta, JSON asserted).

use assert_cmd::Command;

/// The example fleet plus an emergency window and two requests naming it, outside any Git
/// repository (see tests/plan.rs).
fn fleet() -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let dir = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.path().strip_prefix(&root).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let write = |rel: &str, text: &str| std::fs::write(dir.path().join(rel), text).unwrap();
    write(
        "windows/urgent.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: urgent\nspec:\n  alwaysOpen: true\n  emergency: true\n",
    );
    // Due before Sunday's window (2026-11-29 02:00 Berlin): the emergency window.
    write(
        "requests/glibc-now.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata:\n  name: glibc-now\nspec:\n  selector:\n    hosts: [web-1]\n  packages:\n    - name: libc6\n      minVersion: 2.36-9+deb12u10\n  reason: critical DSA-9999-1 in glibc (rapid response)\n  requestedBy: patchkeeper\n  advisories: [DSA-9999-1]\n  deadline: 2026-11-27T00:00:00Z\n  window: urgent\n",
    );
    // Due after it: the normal window is soon enough.
    write(
        "requests/glibc-later.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata:\n  name: glibc-later\nspec:\n  selector:\n    hosts: [web-2]\n  packages:\n    - name: libc6\n      minVersion: 2.36-9+deb12u10\n  reason: high DSA-9998-1 in glibc\n  deadline: 2026-12-05T00:00:00Z\n  window: urgent\n",
    );
    dir
}

fn plan(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .args(["plan", "--repo"])
        .arg(dir)
        .arg("--observed")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/plan/example-observed.json"
        ))
        .args(["--at", "2026-11-25T12:00:00Z"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_request_due_before_the_normal_window_takes_the_emergency_window() {
    let dir = fleet();
    let json: serde_json::Value = serde_json::from_str(&plan(dir.path(), &["--json"])).unwrap();
    let host = |name: &str| {
        json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap()
            .clone()
    };
    let web1 = host("web-1");
    assert_eq!(web1["window"], "urgent", "{web1:#}");
    assert_eq!(web1["status"], "update", "{web1:#}");
    assert_eq!(
        web1["windowReason"],
        "emergency window `urgent`: request `glibc-now` is due 2026-11-27T00:00:00Z, before window `weekly-sunday` next opens at 2026-11-29T01:00:00Z"
    );
    // Only requests' changes go now (this one's, and the example's libssl3 request); the
    // baseline's own updates wait for its window.
    let changed: Vec<&str> = web1["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["package"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["libc6", "libssl3"], "{web1:#}");
    assert!(
        web1["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["package"] == "nginx"),
        "{web1:#}"
    );
    let web2 = host("web-2");
    assert_eq!(web2["window"], "weekly-sunday", "{web2:#}");
    assert_eq!(web2["status"], "waiting", "{web2:#}");
    assert!(
        web2["windowReason"]
            .as_str()
            .unwrap()
            .contains("not before `weekly-sunday` next opens"),
        "{web2:#}"
    );
    // Hosts without such a request are planned as before.
    assert!(host("web-3").get("windowReason").is_none());
    let urgent: Vec<&serde_json::Value> = json["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["window"] == "urgent")
        .collect();
    assert_eq!(urgent.len(), 1, "{json:#}");
    assert_eq!(urgent[0]["hosts"], serde_json::json!(["web-1"]));
    assert_eq!(urgent[0]["windowState"]["state"], "runs-now");
}

#[test]
fn human_plan_says_which_window_and_why() {
    let dir = fleet();
    insta::assert_snapshot!(plan(dir.path(), &[]));
}

#[test]
fn markdown_plan_says_which_window_and_why() {
    let dir = fleet();
    insta::assert_snapshot!(plan(dir.path(), &["--format", "markdown"]));
}
