//! A small fleet repo and observed state for report tests (`tests/reports.rs`,
//! `tests/report_openpgp.rs`).
#![allow(dead_code)]

use std::path::Path;

use jiff::Timestamp;
use patchkeeper::model::PackageManager;
use patchkeeper::observed::{
    FailureReason, HostStatus, InstalledPackage, ObservedFleet, ObservedHost, PendingUpdate,
};
use patchkeeper::validate::{self, ValidFleet};

use super::git::git;

pub const BRANCH: &str = "patchkeeper/reports";

/// What an operator running reports against remotes in scratch directories allows: local
/// paths under the temporary directory (a fleet repo may name a local `reports.remote` only
/// inside itself otherwise). Installed once for the test process; every caller agrees.
pub fn allow_temp_paths() {
    patchkeeper::trust::ControllerTrust {
        local_commands: false,
        allowed_paths: vec![std::env::temp_dir()],
    }
    .install();
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// Writes a fleet repo (3 managed hosts, 1 unmanaged) with the given `reports:` settings
/// body, commits it, and returns the desired commit.
pub fn write_fleet(dir: &Path, reports: &str) -> String {
    let files: &[(&str, String)] = &[
        (
            "patchkeeper.yaml",
            format!(
                "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {{name: settings}}\nspec:\n  reports:\n    author: {{name: patchkeeper, email: patchkeeper@example.com}}\n{reports}"
            ),
        ),
        (
            "inventory/hosts.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}, {name: db}, {name: lab}]\n  hosts:\n    - {name: web-1, groups: [web], packageManager: apt}\n    - {name: web-2, groups: [web], packageManager: apt}\n    - {name: db-1, groups: [db], packageManager: apt}\n    - {name: lab-1, groups: [lab], packageManager: apt}\n".into(),
        ),
        (
            "baselines/web.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web-security}\nspec:\n  selector: {groups: [web, db]}\n  packages:\n    - {name: openssl, minVersion: 3.0.15-1~deb12u1}\n  updates: {classes: security}\n  window: always\n  rollout: one-by-one\n".into(),
        ),
        (
            "windows/always.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n".into(),
        ),
        (
            "rollouts/one.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: one-by-one}\nspec:\n  stages:\n    - {name: all, size: 100%}\n".into(),
        ),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

pub fn load(dir: &Path) -> ValidFleet {
    let outcome = validate::load_and_validate(dir).expect("loads");
    outcome
        .fleet
        .unwrap_or_else(|| panic!("fleet is valid: {:#?}", outcome.diagnostics))
}

pub fn pkg(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        status: "ii".into(),
    }
}

/// web-1: an outstanding security update; web-2: compliant; db-1: unreachable; lab-1: no
/// baseline.
pub fn observed(at: &str) -> ObservedFleet {
    let mut web1 = ObservedHost::new("web-1", HostStatus::Reachable);
    web1.package_manager = Some(PackageManager::Apt);
    web1.installed = vec![
        pkg("openssl", "3.0.15-1~deb12u1"),
        pkg("libc6", "2.36-9+deb12u7"),
    ];
    web1.updates = vec![PendingUpdate {
        name: "libc6".into(),
        arch: "amd64".into(),
        installed_version: Some("2.36-9+deb12u7".into()),
        candidate_version: "2.36-9+deb12u9".into(),
        origin: "Debian-Security:12/bookworm-security".into(),
        security: true,
        advisories: vec![],
    }];
    let mut web2 = ObservedHost::new("web-2", HostStatus::Reachable);
    web2.package_manager = Some(PackageManager::Apt);
    web2.installed = vec![pkg("openssl", "3.0.16-1~deb12u1")];
    let db1 = ObservedHost::new(
        "db-1",
        HostStatus::Unreachable {
            reason: FailureReason::Refused {
                address: "127.0.0.1:2299".into(),
            },
        },
    );
    let lab1 = ObservedHost::new("lab-1", HostStatus::Reachable);
    ObservedFleet::new(at.into(), vec![web1, web2, db1, lab1])
}

/// [`observed`] once web-1 installed its pending security update (it is compliant).
pub fn patched(at: &str) -> ObservedFleet {
    let mut fleet = observed(at);
    if let Some(web1) = fleet.hosts.iter_mut().find(|h| h.name == "web-1") {
        web1.updates.clear();
        web1.installed[1].version = "2.36-9+deb12u9".into();
    }
    fleet
}

pub fn read_host(dir: &Path, host: &str) -> serde_json::Value {
    let text = git(dir, &["show", &format!("{BRANCH}:hosts/{host}.json")]);
    serde_json::from_str(&text).expect("host report is JSON")
}
