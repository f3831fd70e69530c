//! Planner tests: focused cases and properties over generated fleets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::fleet::{add_file, Fleet};
use crate::observed::{HostStatus as ObsStatus, InstalledPackage, ObservedHost, PendingUpdate};
use crate::validate::validate_fleet;

/// Builds a valid fleet from YAML texts (panics with the diagnostics when invalid).
fn fleet(files: &[(&str, String)]) -> ValidFleet {
    let mut f = Fleet::default();
    let mut diags = Vec::new();
    for (path, text) in files {
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

#[derive(Debug, Clone)]
struct Spec {
    hosts: Vec<(String, Vec<&'static str>)>,
    stages: Vec<String>,
    order: bool,
    window: &'static str,
    classes: &'static str,
    hold: Vec<String>,
    min: Vec<(String, String)>,
}

fn yaml(spec: &Spec) -> Vec<(&'static str, String)> {
    let mut inv = String::from("apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: a}, {name: b}, {name: c}]\n  hosts:\n");
    for (i, (name, groups)) in spec.hosts.iter().enumerate() {
        inv.push_str(&format!(
            "    - {{name: {name}, address: 10.0.0.{i}, packageManager: apt, groups: [{}]}}\n",
            groups.join(", ")
        ));
    }
    let mut base = format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: base}}\nspec:\n  selector: {{}}\n  updates: {{classes: {}}}\n  window: w\n  rollout: r\n",
        spec.classes
    );
    if !spec.hold.is_empty() {
        base.push_str(&format!("  hold: [{}]\n", spec.hold.join(", ")));
    }
    if !spec.min.is_empty() {
        base.push_str("  packages:\n");
        for (n, v) in &spec.min {
            base.push_str(&format!("    - {{name: {n}, minVersion: \"{v}\"}}\n"));
        }
    }
    let mut rollout = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  stages:\n",
    );
    for (i, s) in spec.stages.iter().enumerate() {
        rollout.push_str(&format!("    - {{name: s{i}, size: {s}}}\n"));
    }
    if spec.order {
        rollout.push_str("  order:\n    - {group: c, after: [b]}\n    - {group: b, after: [a]}\n");
    }
    let window = format!(
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {{name: w}}\nspec:\n{}",
        spec.window
    );
    vec![
        ("inventory.yaml", inv),
        ("baseline.yaml", base),
        ("rollout.yaml", rollout),
        ("window.yaml", window),
    ]
}

fn observed_host(
    name: &str,
    pkgs: &[(&str, &str)],
    updates: &[(&str, &str, &str, bool)],
) -> ObservedHost {
    let mut h = ObservedHost::new(name, ObsStatus::Reachable);
    h.package_manager = Some(PackageManager::Apt);
    h.boot_id = Some("b".into());
    h.installed = pkgs
        .iter()
        .map(|(n, v)| InstalledPackage {
            name: (*n).into(),
            version: (*v).into(),
            arch: "amd64".into(),
            status: "ii".into(),
        })
        .collect();
    h.updates = updates
        .iter()
        .map(|(n, from, to, sec)| PendingUpdate {
            name: (*n).into(),
            arch: "amd64".into(),
            installed_version: Some((*from).into()),
            candidate_version: (*to).into(),
            origin: if *sec {
                "Debian-Security".into()
            } else {
                "Debian".into()
            },
            security: *sec,
            advisories: vec![],
        })
        .collect();
    h.normalize();
    h
}

const ALWAYS: &str = "  alwaysOpen: true\n";

fn at() -> jiff::Timestamp {
    "2026-11-29T02:30:00Z".parse().unwrap()
}

fn run(f: &ValidFleet, obs: &ObservedFleet) -> Plan {
    plan(PlanInput {
        fleet: f,
        fleet_commit: Some("abc"),
        observed: obs,
        at: at(),
        first_seen: &FirstSeen::new(),
        simulations: None,
        promotion: &Evidence::default(),
        advisories: None,
    })
}

fn simple(hosts: usize) -> Spec {
    Spec {
        hosts: (0..hosts)
            .map(|i| (format!("h{i:02}"), vec!["a"]))
            .collect(),
        stages: vec!["1".into(), "\"100%\"".into()],
        order: false,
        window: ALWAYS,
        classes: "security",
        hold: vec![],
        min: vec![],
    }
}

#[test]
fn security_class_takes_only_security_updates() {
    let f = fleet(&yaml(&simple(1)));
    let obs = ObservedFleet::new(
        "2026-11-29T02:00:00Z".into(),
        vec![observed_host(
            "h00",
            &[("libssl3", "3.0.11-1"), ("tzdata", "2024a-0")],
            &[
                ("libssl3", "3.0.11-1", "3.0.13-1", true),
                ("tzdata", "2024a-0", "2024b-0", false),
            ],
        )],
    );
    let p = run(&f, &obs);
    let h = p.host("h00").unwrap();
    assert_eq!(h.status, HostStatus::Update);
    assert_eq!(h.changes.len(), 1);
    assert_eq!(h.changes[0].package, "libssl3");
    assert_eq!(h.changes[0].from.as_deref(), Some("3.0.11-1"));
    assert_eq!(h.changes[0].to, "3.0.13-1");
    assert_eq!(
        h.changes[0].reasons,
        vec![Reason {
            source: "baseline/base".into(),
            rule: Rule::SecurityUpdate,
            due: None,
        }]
    );
}

#[test]
fn minimum_version_not_offered_blocks_the_host() {
    let mut s = simple(1);
    s.classes = "none";
    s.min = vec![("openssl".into(), "3.0.15-1".into())];
    let f = fleet(&yaml(&s));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![observed_host(
            "h00",
            &[("openssl", "3.0.11-1")],
            &[("openssl", "3.0.11-1", "3.0.13-1", true)],
        )],
    );
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert!(h.changes.is_empty());
    assert_eq!(h.reasons, vec!["baseline/base requires openssl >= 3.0.15-1; the host's repositories offer at most 3.0.13-1"]);
}

#[test]
fn minimum_version_is_met_with_the_offered_version() {
    let mut s = simple(1);
    s.classes = "none";
    s.min = vec![("openssl".into(), "3.0.12-1".into())];
    let f = fleet(&yaml(&s));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![observed_host(
            "h00",
            &[("openssl", "3.0.11-1")],
            &[("openssl", "3.0.11-1", "3.0.13-1", true)],
        )],
    );
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Update);
    assert_eq!(
        h.changes[0].to, "3.0.13-1",
        "the version the repository offers, never the minimum itself"
    );
    assert_eq!(h.changes[0].reasons[0].rule, Rule::MinVersion);
}

#[test]
fn held_package_needed_by_a_minimum_blocks_and_is_never_planned() {
    let mut s = simple(1);
    s.hold = vec!["\"openssl*\"".into()];
    s.min = vec![("openssl".into(), "3.0.12-1".into())];
    // Holding what a baseline requires is a validation conflict only across baselines;
    // within one baseline the planner must still refuse to move it.
    let f = fleet(&yaml(&s));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![observed_host(
            "h00",
            &[("openssl", "3.0.11-1")],
            &[("openssl", "3.0.11-1", "3.0.13-1", true)],
        )],
    );
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert!(h.changes.is_empty());
    assert!(
        h.reasons[0].contains("held by baseline/base (`openssl*`)"),
        "{:?}",
        h.reasons
    );
}

#[test]
fn closed_window_makes_hosts_wait_with_the_next_opening() {
    let mut s = simple(2);
    s.window = "  schedule: \"0 2 * * SAT\"\n  timezone: UTC\n  duration: 2h\n";
    let f = fleet(&yaml(&s));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![
            observed_host("h00", &[("a", "1")], &[("a", "1", "2", true)]),
            observed_host("h01", &[("a", "1")], &[("a", "1", "2", true)]),
        ],
    );
    let p = run(&f, &obs);
    assert!(p.batches.iter().all(|b| matches!(&b.window_state, BatchWindow::Waits { until: Some(t), .. } if t == "2026-12-05T02:00:00Z")));
    assert!(p.hosts.iter().all(|h| h.status == HostStatus::Waiting));
    assert_eq!(p.summary.hosts_to_update, 2);
    assert_eq!(p.summary.runs_now, 0);
}

#[test]
fn replicas_go_before_primaries() {
    let mut s = simple(0);
    s.hosts = vec![
        ("p1".into(), vec!["c"]),
        ("r1".into(), vec!["b"]),
        ("r2".into(), vec!["b"]),
        ("w1".into(), vec!["a"]),
    ];
    s.stages = vec!["\"100%\"".into()];
    s.order = true;
    let f = fleet(&yaml(&s));
    let hosts =
        ["p1", "r1", "r2", "w1"].map(|n| observed_host(n, &[("a", "1")], &[("a", "1", "2", true)]));
    let p = run(&f, &ObservedFleet::new("t".into(), hosts.to_vec()));
    let order: Vec<Vec<String>> = p.batches.iter().map(|b| b.hosts.clone()).collect();
    assert_eq!(
        order,
        vec![
            vec!["w1".to_string()],
            vec!["r1".into(), "r2".into()],
            vec!["p1".into()]
        ]
    );
}

#[test]
fn unreachable_and_missing_hosts_are_listed_with_a_reason() {
    let f = fleet(&yaml(&simple(2)));
    let down = ObservedHost::new(
        "h00",
        ObsStatus::Unreachable {
            reason: crate::observed::FailureReason::Refused {
                address: "10.0.0.0:22".into(),
            },
        },
    );
    let p = run(&f, &ObservedFleet::new("t".into(), vec![down]));
    assert_eq!(p.host("h00").unwrap().status, HostStatus::Unreachable);
    assert_eq!(p.host("h01").unwrap().status, HostStatus::Unreachable);
    assert_eq!(
        p.host("h01").unwrap().reasons,
        vec!["not in the observed state: observe it first"]
    );
}

#[test]
fn same_input_same_json() {
    let f = fleet(&yaml(&simple(5)));
    let hosts: Vec<ObservedHost> = (0..5)
        .map(|i| {
            observed_host(
                &format!("h{i:02}"),
                &[("a", "1"), ("b", "1")],
                &[("b", "1", "2", true), ("a", "1", "3", true)],
            )
        })
        .collect();
    let obs = ObservedFleet::new("t".into(), hosts);
    let a = serde_json::to_string(&run(&f, &obs)).unwrap();
    let b = serde_json::to_string(&run(&f, &obs)).unwrap();
    assert_eq!(a, b);
}

fn arb_spec() -> impl Strategy<Value = (Spec, Vec<(usize, bool, bool)>)> {
    let groups = prop::sample::select(vec![
        vec!["a"],
        vec!["b"],
        vec!["c"],
        vec!["a", "b"],
        vec!["b", "c"],
    ]);
    (
        prop::collection::vec(groups, 1..25),
        prop::collection::vec(prop_oneof![(1u32..4).prop_map(|n| n.to_string()), (1u32..=100).prop_map(|p| format!("\"{p}%\""))], 1..4),
        any::<bool>(),
        prop::sample::select(vec![ALWAYS, "  schedule: \"0 2 * * SUN\"\n  timezone: Europe/Berlin\n  duration: 1h\n", "  schedule: \"0 1 * * *\"\n  timezone: UTC\n  duration: 4h\n  cutoff: 30m\n  freezes:\n    - {start: \"2026-11-29T00:00:00Z\", end: \"2026-11-29T03:00:00Z\"}\n"]),
        prop::sample::select(vec!["security", "all", "none"]),
        any::<bool>(),
        prop::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 25),
    )
        .prop_map(|(hosts, stages, order, window, classes, hold, per_host)| {
            let spec = Spec {
                hosts: hosts.into_iter().enumerate().map(|(i, g)| (format!("h{i:02}"), g)).collect(),
                stages,
                order,
                window,
                classes,
                hold: if hold { vec!["pkg1".into()] } else { vec![] },
                min: vec![],
            };
            (spec, per_host)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plan_properties((spec, per_host) in arb_spec()) {
        let f = fleet(&yaml(&spec));
        let mut hosts = Vec::new();
        for (i, (name, _)) in spec.hosts.iter().enumerate() {
            let (n_updates, security, reachable) = per_host[i];
            if !reachable && i % 3 == 0 {
                hosts.push(ObservedHost::new(name, ObsStatus::Unreachable { reason: crate::observed::FailureReason::Refused { address: "x".into() } }));
                continue;
            }
            let pkgs: Vec<(String, String)> = (0..4).map(|p| (format!("pkg{p}"), "1.0-1".to_string())).collect();
            let ups: Vec<(String, String, String, bool)> = (0..n_updates).map(|p| (format!("pkg{p}"), "1.0-1".to_string(), "1.1-1".to_string(), security || p % 2 == 0)).collect();
            let pkg_refs: Vec<(&str, &str)> = pkgs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let up_refs: Vec<(&str, &str, &str, bool)> = ups.iter().map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), *d)).collect();
            hosts.push(observed_host(name, &pkg_refs, &up_refs));
        }
        let obs = ObservedFleet::new("t".into(), hosts);
        let p = run(&f, &obs);

        // Every inventory host appears exactly once, sorted.
        let names: Vec<&str> = p.hosts.iter().map(|h| h.host.as_str()).collect();
        let expected: Vec<&str> = spec.hosts.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(names, expected);

        // Held packages are never planned.
        if !spec.hold.is_empty() {
            prop_assert!(p.hosts.iter().all(|h| h.changes.iter().all(|c| c.package != "pkg1")));
        }

        // Hosts with changes are in exactly one batch; stage sizes add up.
        let mut in_batches: BTreeMap<&str, usize> = BTreeMap::new();
        for b in &p.batches {
            for h in &b.hosts {
                *in_batches.entry(h.as_str()).or_default() += 1;
            }
        }
        prop_assert!(in_batches.values().all(|n| *n == 1));
        let with_changes: BTreeSet<&str> = p.hosts.iter().filter(|h| h.status.has_changes()).map(|h| h.host.as_str()).collect();
        let batched: BTreeSet<&str> = in_batches.keys().copied().collect();
        prop_assert_eq!(&with_changes, &batched);
        prop_assert_eq!(p.batches.iter().map(|b| b.hosts.len()).sum::<usize>(), p.summary.hosts_to_update);

        // Nothing is scheduled to run now in a closed window or freeze.
        let w = crate::window::CompiledWindow::compile(&f.window("w").unwrap().doc.spec).unwrap();
        for b in &p.batches {
            prop_assert_eq!(b.window_state.runs_now(), w.can_start_batch(at()));
        }
        for h in &p.hosts {
            if h.status == HostStatus::Update {
                prop_assert!(p.batches[h.batch.unwrap()].window_state.runs_now());
            }
        }

        // Group ordering: a host never goes before or with a host of a group it waits for.
        if spec.order {
            let batch_of = |n: &str| p.host(n).and_then(|h| h.batch);
            let level = |gs: &[&str]| gs.iter().map(|g| match *g { "a" => 0, "b" => 1, _ => 2 }).max().unwrap_or(0);
            for (n1, g1) in &spec.hosts {
                for (n2, g2) in &spec.hosts {
                    if let (Some(b1), Some(b2)) = (batch_of(n1), batch_of(n2)) {
                        if level(g1) < level(g2) {
                            prop_assert!(b1 < b2, "{n1} ({g1:?}) in batch {b1} but {n2} ({g2:?}) in {b2}");
                        }
                    }
                }
            }
        }
    }
}

fn run_simulated(f: &ValidFleet, obs: &ObservedFleet, sims: &Simulations) -> Plan {
    plan(PlanInput {
        fleet: f,
        fleet_commit: Some("abc"),
        observed: obs,
        at: at(),
        first_seen: &FirstSeen::new(),
        simulations: Some(sims),
        promotion: &Evidence::default(),
        advisories: None,
    })
}

/// The lab's dependency case: pk-app 2.0-1 needs libpk >= 1.2; the baseline asks only for
/// pk-app (`classes: none`), so libpk's pending security update is not requested.
fn dependency_spec() -> Spec {
    let mut s = simple(1);
    s.classes = "none";
    s.min = vec![("pk-app".into(), "2.0-1".into())];
    s
}

fn dependency_case() -> (ValidFleet, ObservedFleet) {
    let f = fleet(&yaml(&dependency_spec()));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![observed_host(
            "h00",
            &[("libpk", "1.0-1"), ("pk-app", "1.0-1")],
            &[
                ("libpk", "1.0-1", "1.2-1", true),
                ("pk-app", "1.0-1", "2.0-1", false),
            ],
        )],
    );
    (f, obs)
}

/// The dry run of the dependency case: installing pk-app 2.0-1 upgrades libpk too.
fn pk_app_dry_run() -> Simulations {
    Simulations::from([(
        "h00".to_owned(),
        resolved(
            &[("pk-app", "2.0-1")],
            &[
                ("libpk", Some("1.0-1"), "1.2-1"),
                ("pk-app", Some("1.0-1"), "2.0-1"),
            ],
        ),
    )])
}

fn resolved(requested: &[(&str, &str)], installs: &[(&str, Option<&str>, &str)]) -> Simulation {
    Simulation {
        requested: requested
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        outcome: SimulationOutcome::Resolved(crate::observed::TransactionPreview {
            installs: installs
                .iter()
                .map(|(n, from, to)| PendingUpdate {
                    name: (*n).into(),
                    arch: "amd64".into(),
                    installed_version: from.map(str::to_owned),
                    candidate_version: (*to).into(),
                    origin: "lab".into(),
                    security: false,
                    advisories: vec![],
                })
                .collect(),
            removals: vec![],
        }),
    }
}

#[test]
fn offline_plans_say_dependencies_were_not_simulated() {
    let (f, obs) = dependency_case();
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.dependencies, Some(DependencyCheck::NotSimulated));
    assert_eq!(h.requested(), [("pk-app".to_owned(), "2.0-1".to_owned())]);
    let text = render_human(&run(&f, &obs), RenderOptions { color: false });
    assert!(
        text.contains("Note: dependencies not simulated for 1 host"),
        "{text}"
    );
}

#[test]
fn a_dependency_the_dry_run_pulls_in_is_planned() {
    let (f, obs) = dependency_case();
    let p = run_simulated(&f, &obs, &pk_app_dry_run());
    let h = p.host("h00").unwrap();
    assert_eq!(h.status, HostStatus::Update);
    assert_eq!(h.dependencies, Some(DependencyCheck::Simulated));
    let libpk = &h.changes[0];
    assert_eq!(
        (
            libpk.package.as_str(),
            libpk.from.as_deref(),
            libpk.to.as_str()
        ),
        ("libpk", Some("1.0-1"), "1.2-1")
    );
    assert_eq!(libpk.reasons[0].rule, Rule::Dependency);
    assert_eq!(libpk.reasons[0].source, PACKAGE_MANAGER);
    // Security status comes from what observation saw offered.
    assert!(libpk.security);
    assert_eq!(p.summary.packages, 2);
    // Apply still asks only for pk-app.
    assert_eq!(h.requested(), [("pk-app".to_owned(), "2.0-1".to_owned())]);
    assert!(!render_human(&p, RenderOptions { color: false }).contains("not simulated"));
}

#[test]
fn a_held_dependency_blocks_the_host() {
    let (_, obs) = dependency_case();
    let mut s = dependency_spec();
    s.hold = vec!["libpk".into()];
    let p = run_simulated(&fleet(&yaml(&s)), &obs, &pk_app_dry_run());
    let h = p.host("h00").unwrap();
    assert_eq!(h.status, HostStatus::Blocked);
    assert_eq!(
        h.reasons,
        ["the transaction would also move libpk 1.0-1 -> 1.2-1, but the package is held by baseline/base (`libpk`)"]
    );
    assert!(h.batch.is_none());
    assert_eq!(p.summary.blocked, 1);
}

#[test]
fn a_refused_transaction_blocks_and_a_failed_dry_run_is_unreachable() {
    let (f, obs) = dependency_case();
    let requested = vec![("pk-app".to_owned(), "2.0-1".to_owned())];
    let refused = Simulations::from([(
        "h00".to_owned(),
        Simulation {
            requested: requested.clone(),
            outcome: SimulationOutcome::Refused {
                command: "apt-get -s install pk-app=2.0-1".into(),
                message: "you have held broken packages (exit 100)".into(),
            },
        },
    )]);
    let h = run_simulated(&f, &obs, &refused)
        .host("h00")
        .unwrap()
        .clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert_eq!(h.reasons, ["the package manager refuses the transaction: you have held broken packages (exit 100) (dry run: `apt-get -s install pk-app=2.0-1`)"]);
    let failed = Simulations::from([(
        "h00".to_owned(),
        Simulation {
            requested,
            outcome: SimulationOutcome::Failed("connection reset".into()),
        },
    )]);
    let p = run_simulated(&f, &obs, &failed);
    let h = p.host("h00").unwrap();
    assert_eq!(h.status, HostStatus::Unreachable);
    assert!(h.changes.is_empty());
    assert_eq!(p.summary.unreachable, 1);
    assert!(p.batches.is_empty());
}

#[test]
fn removals_and_version_disagreements_block() {
    let (f, obs) = dependency_case();
    let mut sim = resolved(
        &[("pk-app", "2.0-1")],
        &[("pk-app", Some("1.0-1"), "2.1-1")],
    );
    if let SimulationOutcome::Resolved(p) = &mut sim.outcome {
        p.removals = vec!["pk-old".into()];
    }
    let sims = Simulations::from([("h00".to_owned(), sim)]);
    let h = run_simulated(&f, &obs, &sims).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert_eq!(
        h.reasons,
        [
            "the package manager would install pk-app 2.1-1, not the planned 2.0-1",
            "the transaction would remove pk-old; patchkeeper never removes packages"
        ]
    );
}

#[test]
fn a_dry_run_of_another_transaction_is_not_used() {
    let (f, obs) = dependency_case();
    let sims = Simulations::from([(
        "h00".to_owned(),
        resolved(&[("pk-app", "1.9-1")], &[("libpk", Some("1.0-1"), "1.2-1")]),
    )]);
    let h = run_simulated(&f, &obs, &sims).host("h00").unwrap().clone();
    assert_eq!(h.dependencies, Some(DependencyCheck::NotSimulated));
    assert_eq!(h.changes.len(), 1);
}

#[test]
fn the_dry_run_replaces_guessed_dependencies() {
    // `classes: all`: the observed dist-upgrade listed a new package (a guessed dependency);
    // the dry run of the real transaction does not pull it in.
    let mut s = simple(1);
    s.classes = "all";
    let f = fleet(&yaml(&s));
    let mut host = observed_host("h00", &[("a", "1")], &[("a", "1", "2", false)]);
    host.updates.push(PendingUpdate {
        name: "newdep".into(),
        arch: "amd64".into(),
        installed_version: None,
        candidate_version: "1".into(),
        origin: "Debian".into(),
        security: false,
        advisories: vec![],
    });
    host.normalize();
    let obs = ObservedFleet::new("t".into(), vec![host]);
    assert_eq!(run(&f, &obs).host("h00").unwrap().changes.len(), 2);
    let sims = Simulations::from([(
        "h00".to_owned(),
        resolved(&[("a", "2")], &[("a", Some("1"), "2")]),
    )]);
    let h = run_simulated(&f, &obs, &sims).host("h00").unwrap().clone();
    let names: Vec<&str> = h.changes.iter().map(|c| c.package.as_str()).collect();
    assert_eq!(names, ["a"]);
}

#[test]
fn a_minimum_apt_keeps_back_says_so() {
    let (f, mut obs) = dependency_case();
    // libpk held on the host: the full upgrade keeps pk-app back and does not list it.
    obs.hosts[0].updates.clear();
    obs.hosts[0].held = vec!["libpk".into()];
    obs.hosts[0].kept_back = vec!["libpk".into(), "pk-app".into()];
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert_eq!(
        h.reasons,
        ["baseline/base requires pk-app >= 2.0-1; 1.0-1 is installed and the package manager keeps the newer version back (installing it would move a held package, or a dependency is unavailable)"]
    );
}

#[test]
fn an_unfinished_package_database_blocks_the_transaction() {
    let (f, mut obs) = dependency_case();
    obs.hosts[0].db_health = vec![crate::observed::BrokenPackage {
        name: "pk-broken".into(),
        arch: "all".into(),
        version: "1.1-1".into(),
        state: "half-configured".into(),
    }];
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    assert_eq!(
        h.reasons,
        ["the package database needs repair first (pk-broken 1.1-1 half-configured): run `dpkg --configure -a` on the host"]
    );
    // Nothing to do: nothing to block.
    obs.hosts[0].updates.clear();
    let mut s = dependency_spec();
    s.min.clear();
    let h = run(&fleet(&yaml(&s)), &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Compliant);
}

#[test]
fn a_host_reporting_a_hostile_package_is_blocked_not_planned() {
    let f = fleet(&yaml(&simple(1)));
    let obs = ObservedFleet::new(
        "t".into(),
        vec![observed_host(
            "h00",
            &[("libssl3", "3.0.11-1")],
            &[
                ("libssl3", "3.0.11-1", "3.0.13-1", true),
                ("-oDPkg::Pre-Invoke::=touch /tmp/pwned", "1", "2", true),
                ("\u{1b}[2Jevil", "1", "2", true),
            ],
        )],
    );
    let h = run(&f, &obs).host("h00").unwrap().clone();
    assert_eq!(h.status, HostStatus::Blocked);
    let names: Vec<&str> = h.changes.iter().map(|c| c.package.as_str()).collect();
    assert_eq!(names, ["libssl3"]);
    assert_eq!(h.reasons.len(), 2, "{:?}", h.reasons);
    assert!(h
        .reasons
        .iter()
        .any(|r| r
            .contains(r#"invalid Debian package name "-oDPkg::Pre-Invoke::=touch /tmp/pwned""#)));
    // Rendered for a terminal, the escape sequence is text.
    let rendered = render_human(&run(&f, &obs), RenderOptions { color: false });
    assert!(!rendered.contains('\u{1b}'), "{rendered}");
    assert!(rendered.contains(r"\u{1b}[2Jevil"), "{rendered}");
}

/// A saved plan of one host with one security update, its fleet and the host's state.
fn saved_case() -> (ValidFleet, ObservedFleet, Plan) {
    let mut s = simple(2);
    s.stages = vec!["\"100%\"".into()];
    let f = fleet(&yaml(&s));
    let obs = ObservedFleet::new(
        "t".into(),
        ["h00", "h01"]
            .iter()
            .map(|n| {
                observed_host(
                    n,
                    &[("libssl3", "3.0.11-1"), ("tzdata", "2024a-0")],
                    &[
                        ("libssl3", "3.0.11-1", "3.0.13-1", true),
                        ("tzdata", "2024a-0", "2024b-0", false),
                    ],
                )
            })
            .collect(),
    );
    let p = run(&f, &obs);
    (f, obs, p)
}

#[test]
fn a_saved_plan_as_written_passes_every_check() {
    let (f, obs, p) = saved_case();
    saved::check_file(&p).unwrap();
    saved::check_against_fleet(&p, &f).unwrap();
    let check = SavedPlanCheck::new(f, FirstSeen::new(), Evidence::default(), at());
    for h in &p.hosts {
        check.check_host(h, obs.host(&h.host).unwrap()).unwrap();
    }
}

#[test]
fn a_hand_edited_plan_cannot_widen_itself() {
    let (f, obs, p) = saved_case();
    let check = SavedPlanCheck::new(f.clone(), FirstSeen::new(), Evidence::default(), at());
    // A change the baseline does not approve (tzdata is not a security update).
    let mut widened = p.clone();
    let mut extra = widened.hosts[0].changes[0].clone();
    extra.package = "tzdata".into();
    extra.from = Some("2024a-0".into());
    extra.to = "2024b-0".into();
    widened.hosts[0].changes.push(extra);
    saved::check_file(&widened).unwrap();
    saved::check_against_fleet(&widened, &f).unwrap();
    let e = check
        .check_host(&widened.hosts[0], obs.host("h00").unwrap())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the saved plan asks for what the fleet repo does not: h00: tzdata 2024b-0 is not asked for by the fleet repo"
    );
    // Another version of an approved package.
    let mut other = p.clone();
    other.hosts[0].changes[0].to = "3.0.12-1".into();
    let e = check
        .check_host(&other.hosts[0], obs.host("h00").unwrap())
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "libssl3 3.0.12-1 is not asked for by the fleet repo (it asks for libssl3 3.0.13-1)"
        ),
        "{e}"
    );
    // An option posing as a package, and a version carrying a shell word.
    let mut evil = p.clone();
    evil.hosts[0].changes[0].package = "-oDPkg::Pre-Invoke::=touch /tmp/pwned".into();
    evil.hosts[1].changes[0].to = "3.0.13-1 $(id)".into();
    let e = saved::check_file(&evil).unwrap_err().to_string();
    assert!(
        e.contains(r#"invalid Debian package name "-oDPkg::Pre-Invoke::=touch /tmp/pwned""#),
        "{e}"
    );
    assert!(
        e.contains(r#"invalid Debian package version "3.0.13-1 $(id)""#),
        "{e}"
    );
    // A missing fingerprint.
    let mut blind = p.clone();
    blind.hosts[1].fingerprint = None;
    let e = saved::check_file(&blind).unwrap_err().to_string();
    assert!(
        e.contains(r#"host "h01" has changes but no fingerprint"#),
        "{e}"
    );
    // A raised parallelism, another rollout, a host moved out of its batch.
    let mut fast = p.clone();
    fast.batches[0].parallelism = 1000;
    let e = saved::check_against_fleet(&fast, &f)
        .unwrap_err()
        .to_string();
    assert!(e.contains("parallelism 1000"), "{e}");
    assert!(
        e.contains("the fleet's rollouts make batch 0 (rollout r, stage"),
        "{e}"
    );
    let mut elsewhere = p.clone();
    elsewhere.hosts[0].rollout = Some("other".into());
    let e = saved::check_against_fleet(&elsewhere, &f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"host h00: rollout Some("other"), the fleet repo assigns Some("r")"#),
        "{e}"
    );
    // A host the fleet would not change now (its update is no longer offered).
    let mut moved = obs.host("h00").unwrap().clone();
    moved.updates.retain(|u| u.name != "libssl3");
    let e = check
        .check_host(&p.hosts[0], &moved)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the fleet repo plans no change on h00 in its current state (compliant)"),
        "{e}"
    );
}

fn advisory_fleet(updates: &str, hold: &str) -> ValidFleet {
    fleet(&[
        (
            "inventory.yaml",
            ONE_APT_HOST.into(),
        ),
        (
            "baseline.yaml",
            format!("apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: base}}\nspec:\n  selector: {{}}\n  updates: {updates}\n  hold: [{hold}]\n  window: w\n  rollout: r\n"),
        ),
        (
            "rollout.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  stages:\n    - {name: all, size: \"100%\"}\n".into(),
        ),
        (
            "window.yaml",
            format!("apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {{name: w}}\nspec:\n{ALWAYS}"),
        ),
    ])
}

fn debian_host(pkgs: &[(&str, &str)], updates: &[(&str, &str, &str, bool)]) -> ObservedHost {
    let mut h = observed_host("h1", pkgs, updates);
    h.os = Some(crate::observed::OsInfo {
        id: "debian".into(),
        version_id: "12".into(),
        family: vec!["debian".into()],
        pretty_name: None,
        version_codename: Some("bookworm".into()),
    });
    h
}

fn fixed_record(
    id: &str,
    package: &str,
    fixed: &str,
    severity: crate::advisory::Severity,
) -> crate::advisory::Record {
    use crate::advisory::{Affected, Event, Origin, Record};
    Record {
        id: id.into(),
        cves: vec![format!("CVE-2026-{}", 1000 + id.len())],
        ecosystem: "Debian:12".into(),
        package: package.into(),
        affected: Affected::Ranges {
            ranges: vec![vec![
                Event::Introduced("0".into()),
                Event::Fixed(fixed.into()),
            ]],
            versions: vec![],
        },
        severity,
        summary: String::new(),
        modified: None,
        origin: Origin::Osv,
    }
}

/// The inventory of one apt host, `h1`.
const ONE_APT_HOST: &str = "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  hosts:\n    - {name: h1, address: 10.0.0.1, packageManager: apt}\n";

/// `h1` observed, and its assessment against `records` with `f`'s exceptions applied.
fn assessed(
    f: &ValidFleet,
    mut h: ObservedHost,
    records: Vec<crate::advisory::Record>,
) -> (ObservedFleet, crate::advisory::Assessment) {
    h.normalize();
    let obs = ObservedFleet::new("2026-11-29T01:00:00Z".into(), vec![h]);
    let index = crate::advisory::matcher::Index::build(records, None);
    let mut assessment = crate::advisory::matcher::assess(&index, &obs, &BTreeMap::new());
    crate::advisory::fleet::apply_exceptions(&mut assessment, f, at());
    (obs, assessment)
}

#[test]
fn held_updates_are_listed_with_who_holds_them() {
    let f = advisory_fleet("{classes: security}", "pk-held");
    let mut h = debian_host(
        &[
            ("pk-held", "1.0-1"),
            ("pk-app", "1.0-1"),
            ("libpk", "1.0-1"),
        ],
        &[("libpk", "1.0-1", "1.2-1", true)],
    );
    h.held = vec!["pk-held".into()];
    let held = |name: &str, to: &str| PendingUpdate {
        name: name.into(),
        arch: "all".into(),
        installed_version: Some("1.0-1".into()),
        candidate_version: to.into(),
        origin: "PatchkeeperLab-Security:bookworm-security".into(),
        security: true,
        advisories: vec![],
    };
    h.held_updates = vec![held("pk-held", "1.1-1"), held("pk-app", "2.0-1")];
    h.normalize();
    let obs = ObservedFleet::new("2026-11-29T01:00:00Z".into(), vec![h]);
    let p = run(&f, &obs);
    let host = p.host("h1").unwrap();
    assert_eq!(host.changes.len(), 1, "held updates are never planned");
    let skipped: Vec<(&str, &str, &str, Vec<String>)> = host
        .skipped
        .iter()
        .map(|s| {
            (
                s.package.as_str(),
                s.version.as_str(),
                s.why.as_str(),
                s.held_by.clone(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "pk-app",
                "2.0-1",
                "kept back on the host (installing it would move a held package)",
                vec!["host".to_owned()]
            ),
            (
                "pk-held",
                "1.1-1",
                "held on the host, held by baseline/base (`pk-held`)",
                vec!["host".to_owned(), "baseline/base".to_owned()]
            ),
        ]
    );
    assert!(host
        .skipped
        .iter()
        .all(|s| s.security && s.from.as_deref() == Some("1.0-1")));
    let text = render_human(&p, RenderOptions::default());
    assert!(
        text.contains(
            "= pk-held 1.1-1 left alone: held on the host, held by baseline/base (`pk-held`)"
        ),
        "{text}"
    );
}

/// Rapid response (`rapid::qualifying`, tested here for this module's fleet and assessment
/// fixtures): a finding qualifies at or above the least severity, with its fix offered, and
/// not under a VulnerabilityException in force; `mode: off` qualifies nothing.
#[test]
fn rapid_response_qualifies_offered_fixes_at_the_severity_without_an_exception() {
    use crate::advisory::Severity;
    use crate::model::{MinSeverity, RapidResponseSettings, ResponseMode};
    let files = vec![
        (
            "inventory.yaml",
            ONE_APT_HOST.to_owned(),
        ),
        (
            "exceptions.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: VulnerabilityException\nmetadata: {name: app-accepted}\nspec:\n  advisories: [DSA-2]\n  owner: sec-team@example.com\n  reason: not exposed\n  expires: 2099-12-31T00:00:00Z\n".to_owned(),
        ),
    ];
    let f = fleet(&files);
    let h = debian_host(
        &[("libpk", "1.0-1"), ("pk-app", "1.0-1")],
        &[
            ("libpk", "1.0-1", "1.2-1", true),
            ("pk-app", "1.0-1", "2.0-1", true),
        ],
    );
    let (_, assessment) = assessed(
        &f,
        h,
        vec![
            fixed_record("DSA-1", "libpk", "1.2-1", Severity::Critical),
            // Critical and offered, but accepted by an exception in force.
            fixed_record("DSA-2", "pk-app", "2.0-1", Severity::Critical),
            // Offered, below `high`.
            fixed_record("DSA-3", "libpk", "1.1-1", Severity::Medium),
        ],
    );
    let settings = |mode, min| RapidResponseSettings {
        mode,
        min_severity: Some(min),
        window: None,
    };
    // Advisory → (host → (package, fixed version)) of what qualifies at `min`.
    type Hosts = Vec<(String, BTreeSet<(String, String)>)>;
    let ids = |min| -> Vec<(String, Hosts)> {
        crate::rapid::qualifying(&f, &assessment, &settings(ResponseMode::Propose, min))
            .into_iter()
            .map(|q| (q.advisory, q.hosts.into_iter().collect()))
            .collect()
    };
    let libpk = |v: &str| ("libpk".to_owned(), v.to_owned());
    assert_eq!(
        ids(MinSeverity::High),
        [(
            "DSA-1".to_owned(),
            vec![("h1".to_owned(), [libpk("1.2-1")].into())]
        )]
    );
    assert_eq!(
        ids(MinSeverity::Medium),
        [
            (
                "DSA-1".to_owned(),
                vec![("h1".to_owned(), [libpk("1.2-1")].into())]
            ),
            (
                "DSA-3".to_owned(),
                vec![("h1".to_owned(), [libpk("1.1-1")].into())]
            ),
        ]
    );
    assert!(crate::rapid::qualifying(
        &f,
        &assessment,
        &settings(ResponseMode::Off, MinSeverity::Low)
    )
    .is_empty());
}

#[test]
fn an_exception_accepting_what_a_held_update_would_fix_is_named() {
    use crate::advisory::Severity;
    let mut files = vec![];
    files.push(("inventory.yaml", ONE_APT_HOST.to_owned()));
    files.push((
        "baseline.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: base}\nspec:\n  selector: {}\n  updates: {classes: security}\n  hold: [pk-held]\n  window: w\n  rollout: r\n".to_owned(),
    ));
    files.push((
        "rollout.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  stages:\n    - {name: all, size: \"100%\"}\n".to_owned(),
    ));
    files.push((
        "window.yaml",
        format!("apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {{name: w}}\nspec:\n{ALWAYS}"),
    ));
    files.push((
        "exceptions.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: VulnerabilityException\nmetadata: {name: pk-held-accepted}\nspec:\n  advisories: [DSA-9]\n  owner: sec-team@example.com\n  reason: the daemon is not exposed\n  expires: 2099-12-31T00:00:00Z\n---\napiVersion: patchkeeper.dev/v1\nkind: VulnerabilityException\nmetadata: {name: long-gone}\nspec:\n  advisories: [DSA-8]\n  owner: nobody@example.com\n  reason: expired, no longer applies\n  expires: 2000-01-31\n".to_owned(),
    ));
    let f = fleet(&files);
    let mut h = debian_host(
        &[("pk-held", "1.0-1"), ("libpk", "1.0-1")],
        &[("libpk", "1.0-1", "1.2-1", true)],
    );
    h.held = vec!["pk-held".into()];
    h.held_updates = vec![PendingUpdate {
        name: "pk-held".into(),
        arch: "all".into(),
        installed_version: Some("1.0-1".into()),
        candidate_version: "1.1-1".into(),
        origin: "PatchkeeperLab-Security:bookworm-security".into(),
        security: true,
        advisories: vec![],
    }];
    let (obs, assessment) = assessed(
        &f,
        h,
        vec![
            fixed_record("DSA-9", "pk-held", "1.1-1", Severity::High),
            // Its exception expired: it stays unexcused.
            fixed_record("DSA-8", "pk-held", "1.1-1", Severity::Low),
            fixed_record("DSA-1", "libpk", "1.2-1", Severity::High),
        ],
    );
    let p = plan(PlanInput {
        fleet: &f,
        fleet_commit: Some("abc"),
        observed: &obs,
        at: at(),
        first_seen: &FirstSeen::new(),
        simulations: None,
        promotion: &Evidence::default(),
        advisories: Some(&assessment),
    });
    let host = p.host("h1").unwrap();
    assert_eq!(host.changes.len(), 1, "{host:#?}");
    assert!(host.changes[0].fixes.iter().all(|f| f.exception.is_none()));
    let s = &host.skipped[0];
    assert_eq!(s.package, "pk-held");
    assert_eq!(
        s.held_by,
        ["host", "baseline/base", "exception/pk-held-accepted"]
    );
    let excepted: Vec<String> = s
        .fixes
        .iter()
        .map(|f| match &f.exception {
            Some(e) => format!("{} {} {} {}", f.id, e.name, e.owner, e.expires),
            None => f.id.clone(),
        })
        .collect();
    assert_eq!(
        excepted,
        [
            "DSA-9 pk-held-accepted sec-team@example.com 2099-12-31T00:00:00Z",
            "DSA-8",
        ]
    );
    let json = serde_json::to_value(&p).unwrap();
    let skipped = &json["hosts"][0]["skipped"][0];
    assert_eq!(
        skipped["heldBy"],
        serde_json::json!(["host", "baseline/base", "exception/pk-held-accepted"])
    );
    assert_eq!(
        skipped["fixes"][0]["exception"],
        serde_json::json!({
            "name": "pk-held-accepted",
            "owner": "sec-team@example.com",
            "reason": "the daemon is not exposed",
            "expires": "2099-12-31T00:00:00Z"
        })
    );
    assert!(
        skipped["fixes"][1].get("exception").is_none(),
        "{skipped:#}"
    );
    let text = render_human(&p, RenderOptions::default());
    assert!(
        text.contains("= pk-held 1.1-1 left alone: held on the host, held by baseline/base (`pk-held`); would fix DSA-9/CVE-2026-1005 (high; accepted by exception/pk-held-accepted, owner sec-team@example.com, until 2099-12-31T00:00:00Z), DSA-8/CVE-2026-1005 (low)"),
        "{text}"
    );
    // A saved plan reads back with the exception.
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn changes_name_their_advisories_and_min_severity_selects_by_them() {
    use crate::advisory::{matcher, Severity};
    let h = debian_host(
        &[("libpk", "1.0-1"), ("libq", "1.0-1"), ("libr", "1.0-1")],
        &[
            ("libpk", "1.0-1", "1.2-1", true),
            ("libq", "1.0-1", "2.0-1", true),
            ("libr", "1.0-1", "1.1-1", true),
        ],
    );
    let obs = ObservedFleet::new("2026-11-29T01:00:00Z".into(), vec![h]);
    let index = matcher::Index::build(
        vec![
            fixed_record("DSA-1", "libpk", "1.2-1", Severity::High),
            // A fix newer than what is offered is not claimed.
            fixed_record("DSA-2", "libpk", "1.3-1", Severity::Critical),
            fixed_record("DSA-3", "libq", "2.0-1", Severity::Low),
        ],
        Some("sha256:0123456789abcdef".into()),
    );
    let assessment = matcher::assess(&index, &obs, &BTreeMap::new());
    let plan_with = |f: &ValidFleet| {
        plan(PlanInput {
            fleet: f,
            fleet_commit: Some("abc"),
            observed: &obs,
            at: at(),
            first_seen: &FirstSeen::new(),
            simulations: None,
            promotion: &Evidence::default(),
            advisories: Some(&assessment),
        })
    };
    let all = plan_with(&advisory_fleet("{classes: security}", "nothing"));
    assert_eq!(
        all.advisory_snapshot.as_deref(),
        Some("sha256:0123456789abcdef")
    );
    let host = all.host("h1").unwrap();
    let fixes: Vec<(&str, Vec<String>)> = host
        .changes
        .iter()
        .map(|c| (c.package.as_str(), c.fixes.iter().map(Fix::label).collect()))
        .collect();
    assert_eq!(
        fixes,
        [
            ("libpk", vec!["DSA-1/CVE-2026-1005 (high)".to_owned()]),
            ("libq", vec!["DSA-3/CVE-2026-1005 (low)".to_owned()]),
            ("libr", vec![]),
        ]
    );
    let text = render_human(&all, RenderOptions::default());
    assert!(text.contains("fixes DSA-1/CVE-2026-1005 (high)"), "{text}");
    assert!(
        text.contains(", advisories sha256:0123456789abcdef"),
        "{text}"
    );
    // minSeverity: high keeps libpk; libq fixes only a low one; libr is unrated.
    let high = plan_with(&advisory_fleet(
        "{classes: security, minSeverity: high}",
        "nothing",
    ));
    let host = high.host("h1").unwrap();
    assert_eq!(
        host.changes
            .iter()
            .map(|c| c.package.as_str())
            .collect::<Vec<_>>(),
        ["libpk"]
    );
    let why: Vec<(&str, &str)> = host
        .skipped
        .iter()
        .map(|s| (s.package.as_str(), s.why.as_str()))
        .collect();
    assert_eq!(
        why,
        [
            (
                "libq",
                "it fixes at most low advisories, baseline/base asks for updates.minSeverity high"
            ),
            (
                "libr",
                "no advisory data rates it, baseline/base asks for updates.minSeverity high"
            ),
        ]
    );
    // The JSON names them too.
    let json = serde_json::to_value(&high).unwrap();
    assert_eq!(json["hosts"][0]["changes"][0]["fixes"][0]["id"], "DSA-1");
    assert_eq!(
        json["hosts"][0]["skipped"][0]["fixes"][0]["severity"],
        "low"
    );
}

#[test]
fn a_saved_min_severity_plan_is_checked_with_the_advisories_it_was_made_with() {
    use crate::advisory::{matcher, Severity};
    use std::sync::Arc;
    let obs = ObservedFleet::new(
        "2026-11-29T01:00:00Z".into(),
        vec![debian_host(
            &[("libpk", "1.0-1")],
            &[("libpk", "1.0-1", "1.2-1", true)],
        )],
    );
    let records = || vec![fixed_record("DSA-1", "libpk", "1.2-1", Severity::High)];
    let index = matcher::Index::build(records(), Some("sha256:0123456789abcdef".into()));
    let assessment = matcher::assess(&index, &obs, &BTreeMap::new());
    let f = advisory_fleet("{classes: security, minSeverity: high}", "nothing");
    let p = plan(PlanInput {
        fleet: &f,
        fleet_commit: Some("abc"),
        observed: &obs,
        at: at(),
        first_seen: &FirstSeen::new(),
        simulations: None,
        promotion: &Evidence::default(),
        advisories: Some(&assessment),
    });
    let host = p.host("h1").unwrap();
    assert_eq!(host.changes.len(), 1, "{host:?}");
    let check = SavedPlanCheck::new(f.clone(), FirstSeen::new(), Evidence::default(), at());
    assert!(check.needs_advisories());
    // Without the data the baseline selects nothing, so the plan looks widened.
    let e = check.check_host(host, obs.host("h1").unwrap()).unwrap_err();
    assert!(e.to_string().contains("plans no change on h1"), "{e}");
    let check = check.with_advisories(Arc::new(matcher::Index::build(records(), None)));
    check.check_host(host, obs.host("h1").unwrap()).unwrap();
    // A fleet without minSeverity never needs them.
    let plain = advisory_fleet("{classes: security}", "nothing");
    assert!(
        !SavedPlanCheck::new(plain, FirstSeen::new(), Evidence::default(), at()).needs_advisories()
    );
}

/// An advisory id whose records name packages of both families (a CVE id, as the tracker
/// and OSV's per-CVE records do) qualifies as two parts, one per family, so each proposed
/// request carries versions of one ordering only — one request would fail validation.
#[test]
fn rapid_response_splits_an_advisory_spanning_debian_and_rpm_hosts() {
    use crate::advisory::Severity;
    use crate::model::{MinSeverity, RapidResponseSettings, ResponseMode};
    let f = fleet(&[(
        "inventory.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  hosts:\n    - {name: h1, address: 10.0.0.1, packageManager: apt}\n    - {name: h2, address: 10.0.0.2, packageManager: dnf}\n    - {name: h3, address: 10.0.0.3, packageManager: apt}\n".to_owned(),
    )]);
    let mut deb = vec![];
    for name in ["h1", "h3"] {
        let mut h = debian_host(&[("libpk", "1.0-1")], &[("libpk", "1.0-1", "1.2-1", true)]);
        h.name = name.into();
        h.normalize();
        deb.push(h);
    }
    let mut rpm = observed_host(
        "h2",
        &[("libpk", "1.0-1.el9")],
        &[("libpk", "1.0-1.el9", "1.2-1.el9", true)],
    );
    rpm.package_manager = Some(PackageManager::Dnf);
    rpm.os = Some(crate::observed::OsInfo {
        id: "almalinux".into(),
        version_id: "9.4".into(),
        family: vec!["rhel".into(), "centos".into(), "fedora".into()],
        pretty_name: None,
        version_codename: None,
    });
    rpm.normalize();
    let mut alma = fixed_record("CVE-2026-7777", "libpk", "1.2-1.el9", Severity::Critical);
    alma.ecosystem = "AlmaLinux:9".into();
    let records = vec![
        fixed_record("CVE-2026-7777", "libpk", "1.2-1", Severity::Critical),
        alma,
        // Debian only: stays one request under its plain name.
        fixed_record("DSA-9", "libpk", "1.2-1", Severity::Critical),
    ];
    deb.push(rpm);
    let obs = ObservedFleet::new("2026-11-29T01:00:00Z".into(), deb);
    let index = crate::advisory::matcher::Index::build(records, None);
    let assessment = crate::advisory::matcher::assess(&index, &obs, &BTreeMap::new());
    let settings = RapidResponseSettings {
        mode: ResponseMode::Propose,
        min_severity: Some(MinSeverity::Critical),
        window: None,
    };
    // (advisory, request name, host → (package, fixed version)) per part.
    type Part = (String, String, Vec<(String, Vec<(String, String)>)>);
    let parts: Vec<Part> = crate::rapid::qualifying(&f, &assessment, &settings)
        .into_iter()
        .map(|q| {
            let hosts = q
                .hosts
                .into_iter()
                .map(|(h, p)| (h, p.into_iter().collect()))
                .collect();
            (q.advisory, q.name, hosts)
        })
        .collect();
    let libpk = |v: &str| vec![("libpk".to_owned(), v.to_owned())];
    assert_eq!(
        parts,
        [
            (
                "CVE-2026-7777".to_owned(),
                "cve-2026-7777-deb".to_owned(),
                vec![
                    ("h1".to_owned(), libpk("1.2-1")),
                    ("h3".to_owned(), libpk("1.2-1"))
                ]
            ),
            (
                "CVE-2026-7777".to_owned(),
                "cve-2026-7777-rpm".to_owned(),
                vec![("h2".to_owned(), libpk("1.2-1.el9"))]
            ),
            (
                "DSA-9".to_owned(),
                "dsa-9".to_owned(),
                vec![
                    ("h1".to_owned(), libpk("1.2-1")),
                    ("h3".to_owned(), libpk("1.2-1"))
                ]
            ),
        ]
    );
}
