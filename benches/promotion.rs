//! Staged promotion benchmark: eligibility computed from a reports branch of 1,000 source
//! hosts (staging, 1,500 installed packages each) and 50 report commits, 6 hours apart, in
//! which each staging host upgrades 30 of its packages once (a fiftieth of the hosts per
//! commit). 200 production hosts promote from staging (soak 3d, minHosts 2), each with 50
//! pending updates: early upgrades have soaked, late ones wait.
//!
//! Measures reading the evidence from the branch tip (`report::promotion_evidence`: one
//! tree, 1,000 installed records), planning the 200 promoting hosts with it (every pending
//! update's eligibility), and both together, as `plan` does.
//!
//! Run: `cargo bench --bench promotion` (building the branch takes a minute or two). Under
//! `cargo test --benches` (the suite) it runs once on a small history (40 source hosts, 5
//! promoting, 20 commits) that still both proves and does not yet prove versions.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{SignedDuration, Timestamp};
use patchkeeper::fleet::{add_file, Fleet};
use patchkeeper::observed::ObservedFleet;
use patchkeeper::plan::{plan, Evidence, FirstSeen, Plan, PlanInput};
use patchkeeper::report::{self, GitAuth, ReportTarget};
use patchkeeper::validate::{validate_fleet, ValidFleet};

mod synthetic;

/// How large a history to build.
#[derive(Clone, Copy)]
struct Scale {
    staging: usize,
    prod: usize,
    commits: usize,
}

impl Scale {
    /// The benchmark's size under `cargo bench`, a small one under `cargo test --benches`
    /// (a debug build, where the full history takes minutes to build).
    fn from_args() -> Self {
        if std::env::args().any(|a| a == "--bench") {
            Scale {
                staging: 1_000,
                prod: 200,
                commits: 50,
            }
        } else {
            // Soak 3d over commits 6 h apart: 20 commits leave some upgrades soaked and
            // some not; 40 hosts give each upgraded package the 2 hosts `minHosts` needs.
            Scale {
                staging: 40,
                prod: 5,
                commits: 20,
            }
        }
    }

    fn name(self, i: usize) -> String {
        if i < self.staging {
            format!("staging-{i:05}")
        } else {
            format!("prod-{:05}", i - self.staging)
        }
    }
}

fn fleet(s: Scale) -> ValidFleet {
    let mut inv = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: staging}, {name: prod}]\n  hosts:\n",
    );
    for i in 0..s.staging + s.prod {
        let group = if i < s.staging { "staging" } else { "prod" };
        inv.push_str(&format!(
            "    - {{name: {}, packageManager: apt, groups: [{group}]}}\n",
            s.name(i)
        ));
    }
    let files = [
        ("inventory.yaml", inv),
        ("staging.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: staging}\nspec:\n  selector: {groups: [staging]}\n  updates: {classes: all}\n  window: always\n  rollout: all\n".to_owned()),
        ("prod.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: prod}\nspec:\n  selector: {groups: [prod]}\n  updates: {classes: all}\n  promotion:\n    from: {groups: [staging]}\n    soak: 3d\n    minHosts: 2\n  window: always\n  rollout: all\n".to_owned()),
        ("window.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n".to_owned()),
        ("rollout.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: all}\nspec:\n  stages:\n    - {name: all, size: \"100%\"}\n".to_owned()),
    ];
    let mut f = Fleet::default();
    let mut diags = Vec::new();
    for (p, t) in &files {
        add_file(&mut f, &mut diags, Path::new(p), t);
    }
    validate_fleet(f, diags)
        .fleet
        .expect("the synthetic fleet is valid")
}

/// The fleet as observed at commit `k`: staging host `i` has upgraded the packages `p` with
/// `p % commits == i % commits` to their `-2` version from commit `i % commits` on.
fn observed_at(s: Scale, base: &ObservedFleet, k: usize) -> ObservedFleet {
    let hosts = base
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut h = h.clone();
            h.name = s.name(i);
            if i < s.staging {
                h.updates.clear();
                if k >= i % s.commits {
                    for (p, pkg) in h.installed.iter_mut().enumerate() {
                        if p % s.commits == i % s.commits {
                            pkg.version = format!("1.{}-2", p % 7).into();
                        }
                    }
                }
            }
            h
        })
        .collect();
    ObservedFleet::new(base.observed_at.clone(), hosts)
}

fn plan_with(f: &ValidFleet, o: &ObservedFleet, e: &Evidence, at: Timestamp) -> Plan {
    plan(PlanInput {
        fleet: f,
        fleet_commit: None,
        observed: o,
        at,
        first_seen: &FirstSeen::new(),
        simulations: None,
        promotion: e,
        advisories: None,
    })
}

fn bench(c: &mut Criterion) {
    let s = Scale::from_args();
    let f = fleet(s);
    let base = synthetic::observed(s.staging + s.prod);
    let start: Timestamp = "2026-11-01T00:00:00Z".parse().expect("instant");

    let dir = tempfile::tempdir().expect("tempdir");
    git2::Repository::init_bare(dir.path()).expect("init");
    let target = ReportTarget {
        repo: dir.path().to_owned(),
        branch: report::DEFAULT_BRANCH.into(),
        remote: None,
        auth: GitAuth::default(),
        author: ("bench".into(), "bench@example.com".into()),
        signing: None,
        refused: None,
        heartbeat: std::time::Duration::ZERO,
        fence: None,
    };
    let built = std::time::Instant::now();
    let mut at = start;
    let mut last = None;
    for k in 0..s.commits {
        at = start + SignedDuration::from_hours(6 * i64::try_from(k).expect("small"));
        let o = observed_at(s, &base, k);
        let run = report::observation_run(&o, "0123456789abcdef", at);
        report::record(&target, &f, Some(&o), &run, at).expect("recorded");
        last = Some(o);
    }
    let o = last.expect("commits");
    eprintln!(
        "built {} report commits of {} source hosts in {:.1?}",
        s.commits,
        s.staging,
        built.elapsed()
    );
    let sources: Vec<String> = (0..s.staging).map(|i| s.name(i)).collect();
    let now = at + SignedDuration::from_hours(1);
    let e = report::promotion_evidence(&target.repo, &target.branch, &sources).expect("evidence");
    let p = plan_with(&f, &o, &e, now);
    let (promoted, waiting) = p.hosts.iter().fold((0, 0), |(c, w), h| {
        (
            c + h.changes.iter().filter(|c| c.promotion.is_some()).count(),
            w + h.skipped.iter().filter(|s| s.promotion.is_some()).count(),
        )
    });
    eprintln!(
        "{promoted} updates promoted, {waiting} waiting, on {} production hosts",
        s.prod
    );
    assert!(
        promoted > 0 && waiting > 0,
        "the history must both prove and not yet prove versions"
    );

    let mut g = c.benchmark_group("promotion");
    g.sample_size(10);
    g.bench_function(
        format!("read evidence of {} source hosts", s.staging),
        |b| {
            b.iter(|| {
                black_box(
                    report::promotion_evidence(&target.repo, &target.branch, &sources)
                        .expect("evidence"),
                )
            })
        },
    );
    g.bench_function(format!("plan {} promoting hosts", s.prod), |b| {
        b.iter(|| black_box(plan_with(&f, &o, &e, now)))
    });
    g.bench_function("read evidence and plan", |b| {
        b.iter(|| {
            let e = report::promotion_evidence(&target.repo, &target.branch, &sources)
                .expect("evidence");
            black_box(plan_with(&f, &o, &e, now))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
