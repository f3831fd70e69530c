//! The reconcile loop against real repositories: a bare "remote" fetched over `file://`,
//! a valid commit reconciled and reported, an invalid commit reported and skipped while the
//! last good commit stays in force, and a fix taking over.
//!
//! Hosts are stood in for by a fixed observation: this tests the Git side of the loop (the
//! lab-backed loop arrives with the observe engine on main).

mod common;

use common::git::git;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use patchkeeper::observed::{HostStatus, ObservedFleet, ObservedHost};
use patchkeeper::plan::{Plan, Simulations};
use patchkeeper::reconcile::{Observer, Reconciler, Timing};
use patchkeeper::report::GitAuth;
use patchkeeper::source::{Location, Source};
use patchkeeper::validate::ValidFleet;

const BRANCH: &str = "patchkeeper/reports";

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn commit_and_push(work: &Path, bare: &Path, msg: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["push", "-q", &bare.display().to_string(), "main"]);
    git(work, &["rev-parse", "HEAD"]).trim().to_owned()
}

const BASELINE: &str = "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web}\nspec:\n  selector: {groups: [web]}\n  updates: {classes: security}\n  window: always\n  rollout: one-by-one\n";

fn seed(work: &Path) {
    write(work, "patchkeeper.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: settings}\nspec:\n  reports:\n    author: {name: patchkeeper, email: patchkeeper@example.com}\n");
    write(work, "inventory/hosts.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - {name: web-1, groups: [web]}\n    - {name: web-2, groups: [web]}\n");
    write(work, "baselines/web.yaml", BASELINE);
    write(work, "windows/always.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n");
    write(work, "rollouts/one.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: one-by-one}\nspec:\n  stages:\n    - {name: all, size: 100%}\n");
}

/// Every inventory host reachable with nothing pending.
struct AllCompliant;

impl Observer for AllCompliant {
    fn observe(
        &mut self,
        fleet: &ValidFleet,
        _progress: std::sync::Arc<dyn patchkeeper::pipeline::Progress>,
    ) -> Result<ObservedFleet, String> {
        let hosts = fleet
            .hosts()
            .map(|h| ObservedHost::new(h.name.clone(), HostStatus::Reachable))
            .collect();
        Ok(ObservedFleet::new("2026-11-24T02:00:00Z".into(), hosts))
    }

    fn dry_run(
        &mut self,
        _fleet: &ValidFleet,
        _observed: &ObservedFleet,
        first_pass: &Plan,
    ) -> Result<Simulations, String> {
        // Everything is compliant: there is no transaction to dry-run.
        assert!(!first_pass.has_changes());
        Ok(Simulations::new())
    }
}

fn trailer(bare: &Path, key: &str) -> String {
    git(
        bare,
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

#[test]
fn serve_reconciles_good_commits_and_skips_invalid_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    seed(&work);
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &["init", "-q", "--bare", &bare.display().to_string()],
    );
    let good = commit_and_push(&work, &bare, "fleet");

    let url = format!("file://{}", bare.display());
    let source = Source::new(
        Location::parse(&url),
        None,
        &root.path().join("cache"),
        GitAuth::default(),
    );
    let timing = Timing::with_interval(Duration::from_secs(300));
    let mut r = Reconciler::new(
        source,
        AllCompliant,
        timing,
        Arc::new(AtomicBool::new(false)),
    );
    let t0: Timestamp = "2026-11-24T02:00:00Z".parse().expect("time");
    let at = |min: i64| move || t0 + jiff::SignedDuration::from_mins(min);

    // 1. The first commit validates, is observed and reported on the remote.
    assert_eq!(r.step(at(0)), Duration::from_secs(300));
    assert_eq!(r.state.last_good.as_deref(), Some(good.as_str()));
    assert_eq!(trailer(&bare, "Desired-Commit"), good);
    let subject = git(&bare, &["log", "-1", "--format=%s", BRANCH]);
    assert_eq!(
        subject,
        "observe run 2026-11-24T02:00Z: 2 hosts, 0 non-compliant\n"
    );

    // 2. An invalid commit (a dangling window reference) is reported once and skipped.
    write(
        &work,
        "baselines/web.yaml",
        &BASELINE.replace("window: always", "window: nope"),
    );
    let bad = commit_and_push(&work, &bare, "break the baseline");
    assert_eq!(r.step(at(1)), Duration::ZERO);
    assert_eq!(r.state.rejected.as_deref(), Some(bad.as_str()));
    assert_eq!(r.state.last_good.as_deref(), Some(good.as_str()));
    let subject = git(&bare, &["log", "-1", "--format=%s", BRANCH]);
    assert!(
        subject.starts_with(&format!(
            "validate run 2026-11-24T02:01Z: desired commit {} rejected, 1 error",
            &bad[..12]
        )),
        "{subject}"
    );
    assert_eq!(trailer(&bare, "Desired-Commit"), bad);
    assert_eq!(trailer(&bare, "Last-Good-Commit"), good);
    let body = git(&bare, &["log", "-1", "--format=%b", BRANCH]);
    assert!(
        body.contains("baselines/web.yaml:7:11: error[") && body.contains("nope"),
        "{body}"
    );
    let reports_before = git(&bare, &["rev-list", "--count", BRANCH]);

    // 3. Same tip, before the interval: nothing happens.
    assert_eq!(r.step(at(2)), Duration::from_secs(180));
    assert_eq!(git(&bare, &["rev-list", "--count", BRANCH]), reports_before);

    // 4. The interval passes: the last good commit is reconciled again, not the bad one.
    assert_eq!(r.step(at(7)), Duration::from_secs(300));
    assert_eq!(trailer(&bare, "Desired-Commit"), good);

    // 5. A fix takes over.
    write(&work, "baselines/web.yaml", BASELINE);
    let fixed = commit_and_push(&work, &bare, "fix the baseline");
    assert_eq!(r.step(at(8)), Duration::from_secs(300));
    assert_eq!(r.state.last_good.as_deref(), Some(fixed.as_str()));
    assert_eq!(r.state.rejected, None);
    assert_eq!(trailer(&bare, "Desired-Commit"), fixed);

    // The reports branch reads as an audit trail, newest first.
    let log = git(&bare, &["log", "--format=%s", BRANCH]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("observe run 2026-11-24T02:00Z"));
    assert!(lines[1].starts_with("observe run 2026-11-24T02:00Z"));
    assert!(lines[2].starts_with("validate run 2026-11-24T02:01Z"));
    assert!(lines[3].starts_with("observe run 2026-11-24T02:00Z"));
    // The fleet repo's own branch never moved because of reports.
    assert_eq!(git(&bare, &["rev-parse", "main"]).trim(), fixed);
}

/// The `serve` command itself: an invalid desired commit is reported while the loop keeps
/// running, and SIGTERM ends it promptly with exit 0 (no host is involved).
#[test]
fn serve_reports_a_rejected_commit_and_stops_on_sigterm() {
    use assert_cmd::cargo::CommandCargoExt;
    use std::process::Stdio;
    use std::time::Instant;

    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    seed(&work);
    write(
        &work,
        "baselines/web.yaml",
        &BASELINE.replace("window: always", "window: nope"),
    );
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "dangling window"]);
    let bad = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();

    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.args(["serve", "--interval", "1h", "--repo"])
        .arg(&work)
        .stdin(Stdio::null());
    let mut child = common::cli::Running::spawn(cmd);
    // Reported, then back to waiting for the next interval: still serving.
    child.wait_for_stderr("rejected", Duration::from_secs(60));
    child.wait_for_stderr("until the next reconcile", Duration::from_secs(60));
    assert_eq!(trailer(&work, "Desired-Commit"), bad);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let start = Instant::now();
    let out = child.wait();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "serve took {:?} to stop on SIGTERM",
        start.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("rejected"), "{stderr}");
    // What is wrong is logged as `validate` says it, not just a count (issue 21).
    let diagnostic = stderr
        .lines()
        .find(|l| l.contains("baselines/web.yaml:7:11: error["))
        .unwrap_or_else(|| panic!("no diagnostic logged:\n{stderr}"));
    assert!(
        diagnostic.contains("ERROR") && diagnostic.contains("nope"),
        "{diagnostic}"
    );
}

#[test]
fn the_interval_can_come_from_the_fleet_settings() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    seed(&work);
    let settings = std::fs::read_to_string(work.join("patchkeeper.yaml")).expect("settings");
    write(
        &work,
        "patchkeeper.yaml",
        &format!("{settings}  reconcile:\n    interval: 2m\n"),
    );
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "fleet"]);
    let source = || {
        Source::new(
            Location::Local(work.clone()),
            None,
            &root.path().join("cache"),
            GitAuth::default(),
        )
    };
    let timing = Timing::with_interval(Duration::from_secs(300));
    let stop = || Arc::new(AtomicBool::new(false));
    let t0: Timestamp = "2026-11-24T02:00:00Z".parse().expect("time");
    let mut follows =
        Reconciler::new(source(), AllCompliant, timing, stop()).with_settings_interval();
    assert_eq!(follows.step(|| t0), Duration::from_secs(120));
    let mut fixed = Reconciler::new(source(), AllCompliant, timing, stop());
    assert_eq!(fixed.step(|| t0), Duration::from_secs(300));
}

/// Staging (`web-1`) runs libpk 1.2-1; production (`db-1`) has 1.0-1 and is offered 1.2-1
/// and a newer 1.3-1. Dry runs resolve to exactly what was asked.
struct StagedFleet;

impl Observer for StagedFleet {
    fn observe(
        &mut self,
        _fleet: &ValidFleet,
        _progress: std::sync::Arc<dyn patchkeeper::pipeline::Progress>,
    ) -> Result<ObservedFleet, String> {
        use patchkeeper::model::PackageManager;
        use patchkeeper::observed::{InstalledPackage, OfferedPackage, OfferedVersion};
        let pkg = |v: &str| InstalledPackage {
            name: "libpk".into(),
            version: v.into(),
            arch: "amd64".into(),
            status: "ii".into(),
        };
        let mut web1 = ObservedHost::new("web-1", HostStatus::Reachable);
        web1.package_manager = Some(PackageManager::Apt);
        web1.installed = vec![pkg("1.2-1")];
        let mut db1 = ObservedHost::new("db-1", HostStatus::Reachable);
        db1.package_manager = Some(PackageManager::Apt);
        db1.boot_id = Some("b".into());
        db1.installed = vec![pkg("1.0-1")];
        db1.updates = vec![update("1.3-1")];
        db1.offered = vec![OfferedPackage {
            name: "libpk".into(),
            arch: String::new(),
            versions: ["1.3-1", "1.2-1"]
                .iter()
                .map(|v| OfferedVersion {
                    version: (*v).into(),
                    origin: "bookworm-security/main".into(),
                    security: true,
                })
                .collect(),
        }];
        db1.normalize();
        Ok(ObservedFleet::new(
            "2026-11-24T02:00:00Z".into(),
            vec![web1, db1],
        ))
    }

    fn dry_run(
        &mut self,
        _fleet: &ValidFleet,
        _observed: &ObservedFleet,
        first_pass: &Plan,
    ) -> Result<Simulations, String> {
        use patchkeeper::observed::TransactionPreview;
        use patchkeeper::plan::{Simulation, SimulationOutcome};
        Ok(first_pass
            .hosts
            .iter()
            .filter(|h| !h.changes.is_empty())
            .map(|h| {
                let requested: Vec<(String, String)> = h
                    .changes
                    .iter()
                    .map(|c| (c.package.clone(), c.to.clone()))
                    .collect();
                let installs = requested.iter().map(|(_, v)| update(v)).collect();
                (
                    h.host.clone(),
                    Simulation {
                        requested,
                        outcome: SimulationOutcome::Resolved(TransactionPreview {
                            installs,
                            removals: vec![],
                        }),
                    },
                )
            })
            .collect())
    }
}

fn update(to: &str) -> patchkeeper::observed::PendingUpdate {
    patchkeeper::observed::PendingUpdate {
        name: "libpk".into(),
        arch: "amd64".into(),
        installed_version: Some("1.0-1".into()),
        candidate_version: to.into(),
        origin: "PatchkeeperLab-Security:bookworm-security".into(),
        security: true,
        advisories: vec![],
    }
}

#[test]
fn the_loop_plans_promotion_from_the_evidence_it_reported() {
    // serve's own reports are its evidence: the first round records what staging runs
    // (production waits), and a round after the soak plans exactly the promoted version
    // although a newer one is offered.
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    seed(&work);
    write(&work, "inventory/hosts.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}, {name: db}]\n  hosts:\n    - {name: web-1, groups: [web], packageManager: apt}\n    - {name: db-1, groups: [db], packageManager: apt}\n");
    write(&work, "baselines/db.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: db}\nspec:\n  selector: {groups: [db]}\n  updates: {classes: security}\n  promotion:\n    from: {groups: [web]}\n    soak: 1h\n    minHosts: 1\n  window: always\n  rollout: one-by-one\n");
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &["init", "-q", "--bare", &bare.display().to_string()],
    );
    commit_and_push(&work, &bare, "fleet");
    let source = Source::new(
        Location::parse(&format!("file://{}", bare.display())),
        None,
        &root.path().join("cache"),
        GitAuth::default(),
    );
    let mut r = Reconciler::new(
        source,
        StagedFleet,
        Timing::with_interval(Duration::from_secs(300)),
        Arc::new(AtomicBool::new(false)),
    );
    let t0: Timestamp = "2026-11-24T02:00:00Z".parse().expect("time");
    let at = |min: i64| move || t0 + jiff::SignedDuration::from_mins(min);

    r.step(at(0));
    let installed = git(&bare, &["show", &format!("{BRANCH}:installed/web-1.json")]);
    assert!(installed.contains("1.2-1"), "{installed}");
    let plan = r.status().plan().expect("a plan");
    let db1 = plan.hosts.iter().find(|h| h.host == "db-1").expect("db-1");
    assert!(db1.changes.is_empty(), "{:?}", db1.changes);
    let wait = db1
        .skipped
        .iter()
        .find_map(|s| s.promotion.as_ref().map(|_| s.why.clone()))
        .expect("waiting for promotion");
    assert!(wait.contains("waiting for promotion"), "{wait}");

    // One soak and a second later (and past the interval): 1.2-1 is promoted, not 1.3-1.
    r.step(|| t0 + jiff::SignedDuration::from_secs(3601));
    let plan = r.status().plan().expect("a plan");
    let db1 = plan.hosts.iter().find(|h| h.host == "db-1").expect("db-1");
    assert_eq!(db1.changes.len(), 1, "{db1:?}");
    assert_eq!(db1.changes[0].to, "1.2-1");
    let promoted = db1.changes[0].promotion.as_ref().expect("promotion facts");
    assert_eq!(promoted.hosts, ["web-1"]);
}
