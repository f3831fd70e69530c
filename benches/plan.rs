//! Planner benchmark: a synthetic fleet of N hosts, each with 1,500 installed packages and
//! 50 pending updates (a third of them security), three baselines, a windowed rollout with
//! group ordering. Measures `plan()` alone (the observed state is built beforehand), and its
//! second pass, which folds in a dependency dry run per host (one package pulled in each).
//!
//! Run: `cargo bench --bench plan` (10,000 hosts, criterion), or
//! `PLAN_BENCH_SCALING=1 cargo bench --bench plan` to also print single-run times for
//! 1,000 / 10,000 / 50,000 hosts (or `PLAN_BENCH_SCALING=1000,5000` for other sizes).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use patchkeeper::fleet::{add_file, Fleet};
use patchkeeper::observed::{ObservedFleet, PendingUpdate, TransactionPreview};
use patchkeeper::plan::{
    plan, Evidence, FirstSeen, Plan, PlanInput, Simulation, SimulationOutcome, Simulations,
};
use patchkeeper::validate::{validate_fleet, ValidFleet};

mod synthetic;

use synthetic::observed;

fn fleet(hosts: usize) -> ValidFleet {
    // One inventory file per 5,000 hosts: a fleet-repo file is capped at 4 MiB and 200,000
    // YAML nodes (see `fleet::yaml`), as large fleets split their inventories anyway.
    let mut inventories = Vec::new();
    for chunk in 0..hosts.div_ceil(5_000) {
        let groups = if chunk == 0 {
            "  groups: [{name: canary}, {name: web}, {name: db-replicas}, {name: db-primaries}]\n"
        } else {
            ""
        };
        let mut inv = format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {{name: inv-{chunk}}}\nspec:\n{groups}  hosts:\n"
        );
        for i in chunk * 5_000..((chunk + 1) * 5_000).min(hosts) {
            let group = match i % 10 {
                0 => "canary, web",
                1..=5 => "web",
                6..=8 => "db-replicas",
                _ => "db-primaries",
            };
            inv.push_str(&format!(
                "    - {{name: host-{i:05}, address: 10.{}.{}.{}, packageManager: apt, groups: [{group}]}}\n",
                i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        inventories.push((format!("inventory-{chunk}.yaml"), inv));
    }
    let baseline = |name: &str, groups: &str, classes: &str| {
        format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: {name}}}\nspec:\n  selector: {{groups: [{groups}]}}\n  packages:\n    - {{name: pkg-0007, minVersion: \"1.0-1\"}}\n  updates: {{classes: {classes}}}\n  hold: [\"pkg-001*\"]\n  exclude: [\"linux-image-*\"]\n  window: weekly\n  rollout: staged\n"
        )
    };
    let mut files = vec![
        ("web.yaml".to_owned(), baseline("web", "web", "security")),
        ("db.yaml".to_owned(), baseline("db", "db-replicas, db-primaries", "all")),
        (
            "window.yaml".to_owned(),
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: weekly}\nspec:\n  schedule: \"0 2 * * SUN\"\n  timezone: Europe/Berlin\n  duration: 4h\n  cutoff: 30m\n".to_owned(),
        ),
        (
            "rollout.yaml".to_owned(),
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: staged}\nspec:\n  stages:\n    - {name: canary, size: 10, selector: {groups: [canary]}}\n    - {name: quarter, size: \"25%\"}\n    - {name: rest, size: \"100%\"}\n  order:\n    - {group: db-primaries, after: [db-replicas]}\n  parallelism: 50\n".to_owned(),
        ),
    ];
    files.extend(inventories);
    let mut f = Fleet::default();
    let mut diags = Vec::new();
    for (p, t) in &files {
        add_file(&mut f, &mut diags, Path::new(p), t);
    }
    validate_fleet(f, diags)
        .fleet
        .expect("the synthetic fleet is valid")
}

fn run(f: &ValidFleet, o: &ObservedFleet, simulations: Option<&Simulations>) -> Plan {
    let at = "2026-11-29T02:30:00Z".parse().expect("valid instant");
    let first_seen = FirstSeen::new();
    plan(PlanInput {
        fleet: f,
        fleet_commit: None,
        observed: o,
        at,
        first_seen: &first_seen,
        simulations,
        promotion: &Evidence::default(),
        advisories: None,
    })
}

/// What the dry runs of a first pass would answer: every requested package at its planned
/// version, plus one new package pulled in.
fn dry_runs(first_pass: &Plan) -> Simulations {
    first_pass
        .hosts
        .iter()
        .filter(|h| !h.requested().is_empty())
        .map(|h| {
            let requested = h.requested();
            let mut installs: Vec<PendingUpdate> = h
                .changes
                .iter()
                .map(|c| PendingUpdate {
                    name: c.package.clone(),
                    arch: c.arch.clone(),
                    installed_version: c.from.clone(),
                    candidate_version: c.to.clone(),
                    origin: c.origin.clone(),
                    security: c.security,
                    advisories: vec![],
                })
                .collect();
            installs.push(PendingUpdate {
                name: "pulled-in-dependency".into(),
                arch: "amd64".into(),
                installed_version: None,
                candidate_version: "1.0-1".into(),
                origin: "Debian:12/stable".into(),
                security: false,
                advisories: vec![],
            });
            let outcome = SimulationOutcome::Resolved(TransactionPreview {
                installs,
                removals: vec![],
            });
            (h.host.clone(), Simulation { requested, outcome })
        })
        .collect()
}

/// Current resident set size (Linux), to tell the input's memory from the planner's.
fn rss_mib() -> u64 {
    proc_status_kib("VmRSS:") / 1024
}

/// Peak resident set size so far (Linux).
fn peak_rss_mib() -> u64 {
    proc_status_kib("VmHWM:") / 1024
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    if let Ok(sizes) = std::env::var("PLAN_BENCH_SCALING") {
        let sizes: Vec<usize> = sizes
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let sizes = if sizes.is_empty() {
            vec![1_000, 10_000, 50_000]
        } else {
            sizes
        };
        for n in sizes {
            let f = fleet(n);
            let o = observed(n);
            let before = rss_mib();
            let start = std::time::Instant::now();
            let packages = black_box(run(&f, &o, None)).summary.packages;
            eprintln!(
                "plan over {n} hosts: {:.3} s ({packages} package changes); RSS with the input {before} MiB, peak {} MiB",
                start.elapsed().as_secs_f64(),
                peak_rss_mib()
            );
            drop((f, o));
        }
    }
    // `cargo test --all-targets` runs benches once in test mode: keep that quick.
    let n = if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        200
    };
    let f = fleet(n);
    let o = observed(n);
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("10k hosts x 1500 packages x 50 updates", |b| {
        b.iter(|| black_box(run(&f, &o, None)))
    });
    let sims = dry_runs(&run(&f, &o, None));
    g.bench_function("second pass with a dry run per host", |b| {
        b.iter(|| black_box(run(&f, &o, Some(&sims))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
