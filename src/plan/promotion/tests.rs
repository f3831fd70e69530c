//! Staged promotion over synthetic report histories: soak boundaries to the second,
//! `minHosts`, incidents, versions offered later, package managers, dependencies, saved
//! plans; and properties (a promoted version is one the sources ran, never newer).

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::fleet::{add_file, Fleet};
use crate::observed::{
    HostStatus as ObsStatus, InstalledPackage, ObservedFleet, OfferedPackage, OfferedVersion,
    PendingUpdate,
};
use crate::plan::{
    plan, FirstSeen, HostPlan, HostStatus, Plan, PlanInput, SavedPlanCheck, Simulation,
    SimulationOutcome, Simulations,
};
use crate::validate::{validate_fleet, ValidFleet};

const DAY: i64 = 86_400;

/// The start of the synthetic history.
fn t0() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().expect("instant")
}

fn t(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs))
        .expect("in range")
}

/// staging-1..3 (apt), staging-rpm (dnf), prod-1 (apt), prod-2 (apt): production promotes
/// from staging, soak 7d, minHosts 2.
fn fleet_with(min_hosts: u32, prod_packages: &str) -> ValidFleet {
    let files = [
        (
            "inventory.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: staging}, {name: prod}]\n  hosts:\n    - {name: staging-1, packageManager: apt, groups: [staging]}\n    - {name: staging-2, packageManager: apt, groups: [staging]}\n    - {name: staging-3, packageManager: apt, groups: [staging]}\n    - {name: staging-rpm, packageManager: dnf, groups: [staging]}\n    - {name: prod-1, packageManager: apt, groups: [prod]}\n    - {name: prod-2, packageManager: apt, groups: [prod]}\n".to_owned(),
        ),
        (
            "staging.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: staging}\nspec:\n  selector: {groups: [staging]}\n  updates: {classes: security}\n  window: w\n  rollout: r\n".to_owned(),
        ),
        (
            "prod.yaml",
            format!("apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: prod}}\nspec:\n  selector: {{groups: [prod]}}\n  updates: {{classes: security}}\n{prod_packages}  promotion:\n    from: {{groups: [staging]}}\n    soak: 7d\n    minHosts: {min_hosts}\n  window: w\n  rollout: r\n"),
        ),
        (
            "request.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata: {name: urgent}\nspec:\n  selector: {hosts: [prod-2]}\n  packages: [{name: libssl3, minVersion: \"3.0.15-1\"}]\n  reason: CVE-2026-0001\n".to_owned(),
        ),
        (
            "rollout.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  stages: [{name: all, size: \"100%\"}]\n".to_owned(),
        ),
        (
            "window.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: w}\nspec:\n  alwaysOpen: true\n".to_owned(),
        ),
    ];
    let mut f = Fleet::default();
    let mut diags = Vec::new();
    for (path, text) in &files {
        add_file(&mut f, &mut diags, Path::new(path), text);
    }
    let out = validate_fleet(f, diags);
    let errors: Vec<String> = out
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    out.fleet
        .unwrap_or_else(|| panic!("invalid test fleet:\n{}", errors.join("\n")))
}

fn fleet() -> ValidFleet {
    fleet_with(2, "")
}

/// A production host with libpk 1.0-1 installed, offered `offered` (newest first; the
/// first is the candidate, a security update). `None`: an observation without offers.
fn prod(name: &str, offered: Option<&[&str]>, candidate: &str) -> ObservedHost {
    let mut h = ObservedHost::new(name, ObsStatus::Reachable);
    h.package_manager = Some(PackageManager::Apt);
    h.boot_id = Some("b".into());
    h.installed = vec![
        InstalledPackage {
            name: "libpk".into(),
            version: "1.0-1".into(),
            arch: "amd64".into(),
            status: "ii".into(),
        },
        InstalledPackage {
            name: "libssl3".into(),
            version: "3.0.14-1".into(),
            arch: "amd64".into(),
            status: "ii".into(),
        },
    ];
    h.updates = vec![
        PendingUpdate {
            name: "libpk".into(),
            arch: "amd64".into(),
            installed_version: Some("1.0-1".into()),
            candidate_version: candidate.into(),
            origin: "PatchkeeperLab-Security:bookworm-security".into(),
            security: true,
            advisories: vec![],
        },
        PendingUpdate {
            name: "libssl3".into(),
            arch: "amd64".into(),
            installed_version: Some("3.0.14-1".into()),
            candidate_version: "3.0.15-1".into(),
            origin: "Debian-Security".into(),
            security: true,
            advisories: vec![],
        },
    ];
    if let Some(offered) = offered {
        h.offered = vec![OfferedPackage {
            name: "libpk".into(),
            arch: String::new(),
            versions: offered
                .iter()
                .map(|v| OfferedVersion {
                    version: (*v).into(),
                    origin: if *v == "1.2-1" {
                        "bookworm-security/main".into()
                    } else {
                        "bookworm/main".into()
                    },
                    security: *v == "1.2-1",
                })
                .collect(),
        }];
    }
    h.normalize();
    h
}

fn observed(hosts: Vec<ObservedHost>) -> ObservedFleet {
    ObservedFleet::new("2026-11-20T00:00:00Z".into(), hosts)
}

/// One source host's history of libpk: `(version, since, until)` in seconds after t0.
fn history(pm: PackageManager, runs: &[(&str, i64, Option<i64>)]) -> HostEvidence {
    HostEvidence {
        package_manager: Some(pm),
        versions: [(
            "libpk".to_owned(),
            runs.iter()
                .map(|(v, since, until)| Ran {
                    version: (*v).into(),
                    since: t(*since),
                    until: until.map(t),
                })
                .collect(),
        )]
        .into(),
        incidents: Vec::new(),
    }
}

fn evidence(hosts: &[(&str, HostEvidence)]) -> Evidence {
    Evidence {
        hosts: hosts
            .iter()
            .map(|(n, e)| ((*n).to_owned(), e.clone()))
            .collect(),
    }
}

fn incident(kind: IncidentKind, version: &str, at: i64) -> Incident {
    Incident {
        package: "libpk".into(),
        version: version.into(),
        kind,
        at: t(at),
        reason: "health check `app` failed: exit 1".into(),
    }
}

fn plan_at(f: &ValidFleet, obs: &ObservedFleet, e: &Evidence, at: Timestamp) -> Plan {
    plan(PlanInput {
        fleet: f,
        fleet_commit: Some("abc"),
        observed: obs,
        at,
        first_seen: &FirstSeen::new(),
        simulations: None,
        promotion: e,
        advisories: None,
    })
}

fn host<'p>(p: &'p Plan, name: &str) -> &'p HostPlan {
    p.host(name).expect("planned host")
}

fn libpk(h: &HostPlan) -> Option<&crate::plan::Change> {
    h.changes.iter().find(|c| c.package == "libpk")
}

fn waiting(h: &HostPlan) -> &crate::plan::Skipped {
    h.skipped
        .iter()
        .find(|s| s.package == "libpk")
        .unwrap_or_else(|| panic!("libpk is not left alone on {}: {h:?}", h.host))
}

/// Two staging hosts install 1.2-1 at t0 and t0 + 100 s; production is offered 1.3-1 and
/// older. The soak ends for the second host at t0 + 100 s + 7d exactly.
fn two_staging() -> Evidence {
    evidence(&[
        (
            "staging-1",
            history(PackageManager::Apt, &[("1.2-1", 0, None)]),
        ),
        (
            "staging-2",
            history(PackageManager::Apt, &[("1.2-1", 100, None)]),
        ),
    ])
}

#[test]
fn the_soak_ends_exactly_to_the_second() {
    let f = fleet();
    let obs = observed(vec![prod(
        "prod-1",
        Some(&["1.3-1", "1.2-1", "1.1-1"]),
        "1.3-1",
    )]);
    let e = two_staging();
    let boundary = 100 + 7 * DAY;

    // One second early: waiting, with the progress of the deciding (second) host.
    let p = plan_at(&f, &obs, &e, t(boundary - 1));
    let h = host(&p, "prod-1");
    assert!(libpk(h).is_none(), "{h:?}");
    let s = waiting(h);
    assert_eq!(s.version, "1.3-1");
    assert_eq!(
        s.why,
        "waiting for promotion of 1.2-1: 2 of 2 staging hosts, 6d 23h of 7d"
    );
    let w = s.promotion.as_ref().expect("structured wait");
    assert_eq!(w.version.as_deref(), Some("1.2-1"));
    assert_eq!(w.hosts, ["staging-1", "staging-2"]);
    assert_eq!(w.soaked_seconds, 7 * 86_400 - 1);
    assert_eq!(
        w.eligible_at.as_deref(),
        Some(t(boundary).to_string().as_str())
    );
    // libssl3 is not part of the libpk story but is promoted the same way: nothing ran it.
    assert!(h.changes.is_empty(), "{h:?}");

    // At the boundary: exactly 1.2-1, although 1.3-1 is offered.
    for at in [boundary, boundary + 1] {
        let p = plan_at(&f, &obs, &e, t(at));
        let h = host(&p, "prod-1");
        let c = libpk(h).unwrap_or_else(|| panic!("no libpk change at +{at}s: {h:?}"));
        assert_eq!((c.from.as_deref(), c.to.as_str()), (Some("1.0-1"), "1.2-1"));
        assert!(c.security, "1.2-1 comes from the security archive");
        assert_eq!(c.origin, "bookworm-security/main");
        let promoted = c.promotion.as_ref().expect("proof");
        assert_eq!(promoted.hosts, ["staging-1", "staging-2"]);
        assert_eq!(promoted.soaked_seconds, u64::try_from(at - 100).unwrap());
        assert_eq!(promoted.soak_seconds, 7 * 86_400);
        assert_eq!(promoted.instead_of.as_deref(), Some("1.3-1"));
        assert_eq!(h.status, HostStatus::Update);
        assert_eq!(h.requested(), [("libpk".to_owned(), "1.2-1".to_owned())]);
    }
}

#[test]
fn min_hosts_counts_source_hosts_that_ran_the_version() {
    let obs = observed(vec![prod("prod-1", Some(&["1.2-1"]), "1.2-1")]);
    let e = evidence(&[(
        "staging-1",
        history(PackageManager::Apt, &[("1.2-1", 0, None)]),
    )]);
    // One host for 30 days is not two hosts.
    let p = plan_at(&fleet(), &obs, &e, t(30 * DAY));
    let s = waiting(host(&p, "prod-1"));
    assert_eq!(
        s.why,
        "waiting for promotion: 1 of 2 staging hosts, 30d of 7d"
    );
    let w = s.promotion.as_ref().unwrap();
    assert_eq!(
        w.eligible_at, None,
        "no second host runs it: no date to promise"
    );
    // With minHosts 1 the same history promotes.
    let p = plan_at(&fleet_with(1, ""), &obs, &e, t(30 * DAY));
    let c = libpk(host(&p, "prod-1")).expect("promoted");
    assert_eq!(c.to, "1.2-1");
    assert_eq!(c.promotion.as_ref().unwrap().instead_of, None);
    // Three hosts of which two soaked: eligible, naming the two.
    let e = evidence(&[
        (
            "staging-1",
            history(PackageManager::Apt, &[("1.2-1", 0, None)]),
        ),
        (
            "staging-2",
            history(PackageManager::Apt, &[("1.2-1", DAY, None)]),
        ),
        (
            "staging-3",
            history(PackageManager::Apt, &[("1.2-1", 6 * DAY, None)]),
        ),
    ]);
    let p = plan_at(&fleet(), &obs, &e, t(8 * DAY));
    let c = libpk(host(&p, "prod-1")).expect("promoted");
    assert_eq!(
        c.promotion.as_ref().unwrap().hosts,
        ["staging-1", "staging-2"]
    );
    assert_eq!(c.promotion.as_ref().unwrap().soaked_seconds, 7 * 86_400);
    assert_eq!(
        crate::plan::promotion::promoted_label(c.promotion.as_ref().unwrap()),
        "promoted: 7d on staging-1, staging-2"
    );
    // The human plan says it on the change's line.
    let text = crate::plan::render_human(&p, crate::plan::RenderOptions::default());
    let line = text
        .lines()
        .find(|l| l.contains("libpk") && l.contains("->"))
        .expect("libpk change line");
    assert!(
        line.ends_with("(promoted: 7d on staging-1, staging-2)"),
        "{line}"
    );
}

#[test]
fn a_rollback_on_a_source_blocks_the_version_until_a_newer_one_soaks() {
    let f = fleet();
    let obs = observed(vec![prod("prod-1", Some(&["1.3-1", "1.2-1"]), "1.3-1")]);
    let mut e = two_staging();
    let mut third = history(PackageManager::Apt, &[("1.0-1", 0, None)]);
    third
        .incidents
        .push(incident(IncidentKind::RolledBack, "1.2-1", 3 * DAY));
    e.hosts.insert("staging-3".into(), third);

    // The soak is complete, but the rollback (day 3) keeps 1.2-1 out; before the rollback
    // was reported, nothing had soaked yet.
    let p = plan_at(&f, &obs, &e, t(100 + 7 * DAY));
    assert!(libpk(host(&p, "prod-1")).is_none());
    let p = plan_at(&f, &obs, &e, t(30 * DAY));
    let h = host(&p, "prod-1");
    assert!(
        libpk(h).is_none(),
        "a rolled-back version is never promoted: {h:?}"
    );
    let s = waiting(h);
    assert!(
        s.why.starts_with("waiting for promotion: no staging host runs a version above 1.0-1 yet (needs 2 hosts for 7d); 1.2-1 rolled back on staging-3 at 2026-11-04T00:00:00Z, not promoted until a newer version soaks"),
        "{}",
        s.why
    );
    let w = s.promotion.as_ref().unwrap();
    assert_eq!(w.blocked.len(), 1);
    assert_eq!(w.blocked[0].kind, IncidentKind::RolledBack);
    assert_eq!(w.blocked[0].reason, "health check `app` failed: exit 1");
    // A failed health check without rollback, and non-compliance, block the same way.
    for kind in [IncidentKind::Failed, IncidentKind::NonCompliant] {
        let mut e = two_staging();
        let mut h = e.hosts["staging-2"].clone();
        h.incidents.push(incident(kind, "1.2-1", 8 * DAY));
        e.hosts.insert("staging-2".into(), h);
        let p = plan_at(&f, &obs, &e, t(30 * DAY));
        assert!(libpk(host(&p, "prod-1")).is_none(), "{kind:?}");
    }
    // A newer version soaks on two hosts: it goes, the blocked one never does.
    let mut e2 = e.clone();
    for (name, since) in [("staging-1", 10 * DAY), ("staging-2", 10 * DAY + 5)] {
        e2.hosts.insert(
            name.into(),
            history(
                PackageManager::Apt,
                &[("1.3-1", since, None), ("1.2-1", 0, Some(since))],
            ),
        );
    }
    e2.hosts.get_mut("staging-3").unwrap().incidents =
        vec![incident(IncidentKind::RolledBack, "1.2-1", 3 * DAY)];
    let p = plan_at(&f, &obs, &e2, t(17 * DAY + 5));
    let c = libpk(host(&p, "prod-1")).expect("the newer version soaked");
    assert_eq!(c.to, "1.3-1");
    // Only offered 1.2-1 (the newer one is gone from production's repositories): blocked.
    let obs_old = observed(vec![prod("prod-1", Some(&["1.2-1"]), "1.2-1")]);
    let p = plan_at(&f, &obs_old, &e2, t(17 * DAY + 5));
    let h = host(&p, "prod-1");
    assert_eq!(h.status, HostStatus::Blocked);
    assert!(
        h.reasons.iter().any(|r| r.contains("promotes libpk 1.3-1 (7d on staging-1, staging-2), but the host's repositories no longer offer it (they offer 1.2-1)")),
        "{:?}",
        h.reasons
    );
}

#[test]
fn versions_offered_later_do_not_move_production_past_what_soaked() {
    let f = fleet();
    let e = two_staging();
    let at = t(9 * DAY);
    // At first production is offered 1.2-1 only: it gets it, plainly.
    let p = plan_at(
        &f,
        &observed(vec![prod("prod-1", Some(&["1.2-1", "1.1-1"]), "1.2-1")]),
        &e,
        at,
    );
    let c = libpk(host(&p, "prod-1")).unwrap();
    assert_eq!(
        (
            c.to.as_str(),
            c.promotion.as_ref().unwrap().instead_of.as_deref()
        ),
        ("1.2-1", None)
    );
    // Then the repositories offer 1.3-1: production still gets exactly 1.2-1.
    let p = plan_at(
        &f,
        &observed(vec![prod(
            "prod-1",
            Some(&["1.3-1", "1.2-1", "1.1-1"]),
            "1.3-1",
        )]),
        &e,
        at,
    );
    let c = libpk(host(&p, "prod-1")).unwrap();
    assert_eq!(
        (
            c.to.as_str(),
            c.promotion.as_ref().unwrap().instead_of.as_deref()
        ),
        ("1.2-1", Some("1.3-1"))
    );
    // Staging moved on to 1.3-1 two days ago: 1.2-1 soaked before and still counts.
    let moved = evidence(&[
        (
            "staging-1",
            history(
                PackageManager::Apt,
                &[("1.3-1", 8 * DAY, None), ("1.2-1", 0, Some(8 * DAY))],
            ),
        ),
        (
            "staging-2",
            history(
                PackageManager::Apt,
                &[("1.3-1", 8 * DAY, None), ("1.2-1", 0, Some(8 * DAY))],
            ),
        ),
    ]);
    let p = plan_at(
        &f,
        &observed(vec![prod("prod-1", Some(&["1.3-1", "1.2-1"]), "1.3-1")]),
        &moved,
        t(10 * DAY),
    );
    let h = host(&p, "prod-1");
    let c = libpk(h).unwrap();
    assert_eq!(c.to, "1.2-1");
    assert_eq!(c.promotion.as_ref().unwrap().soaked_seconds, 8 * 86_400);
    // An observation from before offers were recorded cannot say 1.2-1 is still there.
    let p = plan_at(&f, &observed(vec![prod("prod-1", None, "1.3-1")]), &e, at);
    let h = host(&p, "prod-1");
    assert_eq!(h.status, HostStatus::Blocked);
    assert!(
        h.reasons[0].contains("observe the host again"),
        "{:?}",
        h.reasons
    );
}

#[test]
fn a_broken_run_restarts_the_soak() {
    let e = evidence(&[
        (
            "staging-1",
            history(
                PackageManager::Apt,
                &[
                    ("1.2-1", 8 * DAY, None),
                    ("1.0-1", 4 * DAY, Some(8 * DAY)),
                    ("1.2-1", 0, Some(4 * DAY)),
                ],
            ),
        ),
        (
            "staging-2",
            history(PackageManager::Apt, &[("1.2-1", 0, None)]),
        ),
    ]);
    let obs = observed(vec![prod("prod-1", Some(&["1.2-1"]), "1.2-1")]);
    let p = plan_at(&fleet(), &obs, &e, t(14 * DAY));
    assert_eq!(
        waiting(host(&p, "prod-1")).why,
        "waiting for promotion: 2 of 2 staging hosts, 6d of 7d"
    );
    let p = plan_at(&fleet(), &obs, &e, t(15 * DAY));
    assert!(libpk(host(&p, "prod-1")).is_some());
}

#[test]
fn versions_are_proven_per_package_manager_and_requests_are_not_gated() {
    // An RPM staging host's run of "1.2-1" proves nothing for a Debian host.
    let e = evidence(&[
        (
            "staging-1",
            history(PackageManager::Apt, &[("1.2-1", 0, None)]),
        ),
        (
            "staging-rpm",
            history(PackageManager::Dnf, &[("1.2-1", 0, None)]),
        ),
    ]);
    let obs = observed(vec![
        prod("prod-1", Some(&["1.2-1"]), "1.2-1"),
        prod("prod-2", Some(&["1.2-1"]), "1.2-1"),
    ]);
    let p = plan_at(&fleet(), &obs, &e, t(30 * DAY));
    assert!(libpk(host(&p, "prod-1")).is_none());
    // prod-2's patch request asks for libssl3 itself: the request's call, not promotion's.
    let h = host(&p, "prod-2");
    let ssl = h
        .changes
        .iter()
        .find(|c| c.package == "libssl3")
        .expect("requested");
    assert_eq!(ssl.to, "3.0.15-1");
    assert_eq!(ssl.promotion, None);
    assert!(libpk(h).is_none());
}

#[test]
fn a_minimum_is_met_only_with_a_promoted_version_that_meets_it() {
    let f = fleet_with(2, "  packages: [{name: libpk, minVersion: \"1.3\"}]\n");
    let obs = observed(vec![prod("prod-1", Some(&["1.3-1", "1.2-1"]), "1.3-1")]);
    let p = plan_at(&f, &obs, &two_staging(), t(30 * DAY));
    let h = host(&p, "prod-1");
    assert!(
        libpk(h).is_none(),
        "1.2-1 is proven but below the minimum: {h:?}"
    );
    assert!(waiting(h)
        .why
        .starts_with("waiting for promotion: no staging host runs a version above 1.0-1"));
}

#[test]
fn a_dependency_the_package_manager_pulls_in_must_be_proven_too() {
    let f = fleet();
    let obs = observed(vec![prod("prod-1", Some(&["1.2-1"]), "1.2-1")]);
    let e = two_staging();
    let at = t(9 * DAY);
    let first = plan_at(&f, &obs, &e, at);
    assert_eq!(
        host(&first, "prod-1").requested(),
        [("libpk".to_owned(), "1.2-1".to_owned())]
    );
    let with_dep = |version: &str| -> Simulations {
        let mut preview = crate::observed::TransactionPreview::default();
        for (name, to) in [("libpk", "1.2-1"), ("libpk-data", version)] {
            preview.installs.push(PendingUpdate {
                name: name.into(),
                arch: "amd64".into(),
                installed_version: None,
                candidate_version: to.into(),
                origin: "bookworm".into(),
                security: false,
                advisories: vec![],
            });
        }
        [(
            "prod-1".to_owned(),
            Simulation {
                requested: vec![("libpk".into(), "1.2-1".into())],
                outcome: SimulationOutcome::Resolved(preview),
            },
        )]
        .into()
    };
    let sims = with_dep("2.0-1");
    let p = plan(PlanInput {
        simulations: Some(&sims),
        fleet: &f,
        fleet_commit: Some("abc"),
        observed: &obs,
        at,
        first_seen: &FirstSeen::new(),
        promotion: &e,
        advisories: None,
    });
    let h = host(&p, "prod-1");
    assert_eq!(h.status, HostStatus::Blocked);
    assert!(
        h.reasons[0].contains(
            "would pull in libpk-data 2.0-1 alongside, a version baseline/prod has not promoted"
        ),
        "{:?}",
        h.reasons
    );
    // Once the sources ran that dependency for the soak, the host goes.
    let mut e2 = e.clone();
    for n in ["staging-1", "staging-2"] {
        e2.hosts.get_mut(n).unwrap().versions.insert(
            "libpk-data".into(),
            vec![Ran {
                version: "2.0-1".into(),
                since: t(0),
                until: None,
            }],
        );
    }
    let p = plan(PlanInput {
        simulations: Some(&sims),
        fleet: &f,
        fleet_commit: Some("abc"),
        observed: &obs,
        at,
        first_seen: &FirstSeen::new(),
        promotion: &e2,
        advisories: None,
    });
    assert_eq!(host(&p, "prod-1").status, HostStatus::Update);
}

#[test]
fn a_saved_plan_applies_only_while_its_promotion_holds() {
    let f = fleet();
    let obs = observed(vec![prod("prod-1", Some(&["1.3-1", "1.2-1"]), "1.3-1")]);
    let e = two_staging();
    let at = t(9 * DAY);
    let p = plan_at(&f, &obs, &e, at);
    let h = host(&p, "prod-1");
    let o = obs.host("prod-1").unwrap();
    SavedPlanCheck::new(f.clone(), FirstSeen::new(), e.clone(), at)
        .check_host(h, o)
        .expect("the promoted version passes");
    // A hand edit to the newer candidate is refused.
    let mut edited = h.clone();
    edited
        .changes
        .iter_mut()
        .for_each(|c| c.to = "1.3-1".into());
    let err = SavedPlanCheck::new(f.clone(), FirstSeen::new(), e.clone(), at)
        .check_host(&edited, o)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("libpk 1.3-1 is not asked for by the fleet repo (it asks for libpk 1.2-1)"),
        "{err}"
    );
    // A rollback on a source between plan and apply refuses the plan.
    let mut later = e.clone();
    later
        .hosts
        .get_mut("staging-1")
        .unwrap()
        .incidents
        .push(incident(IncidentKind::RolledBack, "1.2-1", 9 * DAY));
    assert!(
        SavedPlanCheck::new(f, FirstSeen::new(), later, t(9 * DAY + 60))
            .check_host(h, o)
            .is_err()
    );
}

#[test]
fn the_wait_names_the_closest_version() {
    // 1.3-1 runs on both hosts but only since yesterday; 1.2-1 ran on one host for the
    // soak. The closest to eligibility is 1.3-1 (a date is known).
    let e = evidence(&[
        (
            "staging-1",
            history(
                PackageManager::Apt,
                &[("1.3-1", 9 * DAY, None), ("1.2-1", 0, Some(9 * DAY))],
            ),
        ),
        (
            "staging-2",
            history(PackageManager::Apt, &[("1.3-1", 9 * DAY, None)]),
        ),
    ]);
    let obs = observed(vec![prod("prod-1", Some(&["1.3-1", "1.2-1"]), "1.3-1")]);
    let p = plan_at(&fleet(), &obs, &e, t(10 * DAY));
    let s = waiting(host(&p, "prod-1"));
    assert_eq!(
        s.why,
        "waiting for promotion: 2 of 2 staging hosts, 1d of 7d"
    );
    assert_eq!(
        s.promotion.as_ref().unwrap().eligible_at.as_deref(),
        Some(t(16 * DAY).to_string().as_str())
    );
    // No evidence at all.
    let p = plan_at(&fleet(), &obs, &Evidence::default(), t(10 * DAY));
    assert_eq!(
        waiting(host(&p, "prod-1")).why,
        "waiting for promotion: no staging host runs a version above 1.0-1 yet (needs 2 hosts for 7d)"
    );
}

/// Random histories of libpk on the three apt staging hosts (and the rpm one), with
/// random incidents; random offers on production.
fn arb_case() -> impl Strategy<Value = (Evidence, Vec<&'static str>, i64, u32)> {
    const VERSIONS: [&str; 5] = ["1.0-1", "1.1-1", "1.2-1", "1.3-1", "2.0-1"];
    let runs = prop::collection::vec(
        (0usize..5, 0i64..20 * DAY, prop::option::of(0i64..10 * DAY)),
        0..4,
    );
    let host = (
        runs,
        prop::collection::vec((0usize..5, 0i64..25 * DAY, 0usize..3), 0..2),
        any::<bool>(),
    );
    (
        prop::collection::vec(host, 4),
        prop::collection::vec(0usize..5, 1..4),
        0i64..30 * DAY,
        1u32..4,
    )
        .prop_map(|(hosts, offered, at, min)| {
            let names = ["staging-1", "staging-2", "staging-3", "staging-rpm"];
            let mut e = Evidence::default();
            for (i, (runs, incidents, rpm)) in hosts.into_iter().enumerate() {
                let pm = if i == 3 || rpm && i == 2 {
                    PackageManager::Dnf
                } else {
                    PackageManager::Apt
                };
                let mut h = HostEvidence {
                    package_manager: Some(pm),
                    ..Default::default()
                };
                h.versions.insert(
                    "libpk".into(),
                    runs.into_iter()
                        .map(|(v, since, len)| Ran {
                            version: VERSIONS[v].into(),
                            since: t(since),
                            until: len.map(|l| t(since + l)),
                        })
                        .collect(),
                );
                h.incidents = incidents
                    .into_iter()
                    .map(|(v, when, k)| {
                        incident(
                            [
                                IncidentKind::RolledBack,
                                IncidentKind::Failed,
                                IncidentKind::NonCompliant,
                            ][k],
                            VERSIONS[v],
                            when,
                        )
                    })
                    .collect();
                e.hosts.insert(names[i].into(), h);
            }
            let mut offered: Vec<&str> = offered.into_iter().map(|i| VERSIONS[i]).collect();
            offered.sort_by(|a, b| b.cmp(a));
            offered.dedup();
            (e, offered, at, min)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PATCHKEEPER_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
    ))]

    /// Whatever the history, a planned version of a promoting host is one at least
    /// `minHosts` apt sources ran unbroken for the soak before the plan's instant, with no
    /// incident up to then, above the installed version — so never newer than what the
    /// sources ran; and it stays so at every later instant without new incidents.
    #[test]
    fn a_promoted_version_is_one_the_sources_ran((e, offered, at, min) in arb_case()) {
        let f = fleet_with(min, "");
        let candidate = offered.first().copied().unwrap_or("1.1-1");
        if candidate == "1.0-1" {
            return Ok(());
        }
        let obs = observed(vec![prod("prod-1", Some(&offered), candidate)]);
        let p = plan_at(&f, &obs, &e, t(at));
        let h = host(&p, "prod-1");
        let ran_max = e
            .hosts
            .values()
            .filter(|h| h.package_manager == Some(PackageManager::Apt))
            .flat_map(|h| h.versions.get("libpk").into_iter().flatten())
            .filter(|r| r.since <= t(at))
            .map(|r| r.version.clone())
            .max_by(|a, b| version::compare(Ecosystem::Deb, a, b).unwrap());
        match libpk(h) {
            Some(c) => {
                let v = c.to.as_str();
                prop_assert!(version::compare(Ecosystem::Deb, v, "1.0-1").unwrap().is_gt());
                let max = ran_max.clone().expect("a promoted version was run");
                prop_assert!(version::compare(Ecosystem::Deb, v, &max).unwrap().is_le(), "{v} newer than {max}");
                let soaked = e
                    .hosts
                    .iter()
                    .filter(|(_, h)| h.package_manager == Some(PackageManager::Apt))
                    .filter(|(_, h)| {
                        h.versions["libpk"].iter().any(|r| {
                            let end = r.until.unwrap_or(t(at)).min(t(at));
                            r.version == v && r.since <= t(at) && end.as_second() - r.since.as_second() >= 7 * DAY
                        })
                    })
                    .count();
                prop_assert!(soaked >= min as usize, "{v}: {soaked} hosts soaked, {min} needed");
                let failed = e.hosts.values().filter(|h| h.package_manager == Some(PackageManager::Apt)).flat_map(|h| &h.incidents).any(|i| i.version == v && i.at <= t(at));
                prop_assert!(!failed, "{v} failed on a source");
                prop_assert!(offered.contains(&v));
                let promoted = c.promotion.as_ref().expect("proof");
                prop_assert!(promoted.hosts.len() >= min as usize);
                // Without new incidents, later instants promote it or something newer.
                let mut quiet = e.clone();
                for h in quiet.hosts.values_mut() {
                    h.incidents.retain(|i| i.at <= t(at));
                }
                let later = plan_at(&f, &obs, &quiet, t(at + 3 * DAY));
                let lh = host(&later, "prod-1");
                let lc = libpk(lh).map(|c| c.to.clone());
                // (A newer version may have soaked meanwhile that production is not
                // offered: then the host is blocked saying so.)
                prop_assert!(
                    lc.as_deref().is_some_and(|l| version::compare(Ecosystem::Deb, l, v).unwrap().is_ge())
                        || lh.reasons.iter().any(|r| r.contains("no longer offer")),
                    "{v} then {lc:?}: {lh:?}"
                );
            }
            None => {
                let h = host(&p, "prod-1");
                prop_assert!(h.status == HostStatus::Blocked || h.skipped.iter().any(|s| s.package == "libpk"), "{h:?}");
            }
        }
    }
}

/// prod-1 has nothing else to do (compliant); prod-2 takes a patch request's libssl3
/// (not gated). Both wait for libpk 1.2-1, a security update, which one staging host ran.
fn one_staging_two_prod() -> (ValidFleet, ObservedFleet, Evidence) {
    let obs = observed(vec![
        prod("prod-1", Some(&["1.2-1"]), "1.2-1"),
        prod("prod-2", Some(&["1.2-1"]), "1.2-1"),
    ]);
    let e = evidence(&[(
        "staging-1",
        history(PackageManager::Apt, &[("1.2-1", 0, None)]),
    )]);
    (fleet(), obs, e)
}

#[test]
fn the_human_plan_lists_each_waiting_update_once() {
    let (f, obs, e) = one_staging_two_prod();
    let p = plan_at(&f, &obs, &e, t(3 * DAY));
    assert_eq!(host(&p, "prod-1").status, HostStatus::Compliant);
    assert_eq!(host(&p, "prod-2").status, HostStatus::Update);
    assert!(waiting(host(&p, "prod-1")).security);
    let text = crate::plan::render_human(&p, crate::plan::RenderOptions::default());
    // One line for the update, whichever hosts wait for it (compliant or with other
    // changes), under one heading; not again among the security updates left alone.
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("libpk 1.2-1")).collect();
    assert_eq!(
        lines,
        ["    = libpk 1.2-1 on prod-1, prod-2: waiting for promotion: 1 of 2 staging hosts, 3d of 7d"],
        "{text}"
    );
    let section = text
        .split("\nWaiting for promotion:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no section: {text}"));
    assert!(section.starts_with(lines[0]), "{text}");
    assert!(
        !text.contains("Security updates left alone on compliant hosts"),
        "{text}"
    );
    // prod-2's block keeps its own change.
    assert!(
        text.lines()
            .any(|l| l.contains("~ libssl3 3.0.14-1 -> 3.0.15-1") && l.contains("request/urgent")),
        "{text}"
    );
}

#[test]
fn the_markdown_plan_has_a_section_for_updates_waiting_for_promotion() {
    let (f, obs, e) = one_staging_two_prod();
    let p = plan_at(&f, &obs, &e, t(3 * DAY));
    let md = crate::plan::render_markdown(&p);
    assert_eq!(
        md.matches("libpk").count(),
        1,
        "listed once, in its section: {md}"
    );
    insta::assert_snapshot!(md);
}
