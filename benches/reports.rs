//! Compliance and report benchmark: a synthetic fleet of N hosts, each with 1,500 installed
//! packages and 50 pending updates (a third security), two baselines with holds and excludes.
//! Measures pure evaluation of every host, and one full report commit (read the previous
//! host files, evaluate, write N host files + run + summary, commit, compare-and-swap) on a
//! real repository whose reports branch already holds the previous run.
//!
//! Run: `cargo bench --bench reports` (1,000 hosts).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::Timestamp;
use patchkeeper::compliance::{evaluate, HostConfig, Inputs};
use patchkeeper::fleet::{add_file, Fleet};
use patchkeeper::policy::Policy;
use patchkeeper::report::{self, GitAuth, ReportTarget};
use patchkeeper::validate::{validate_fleet, ValidFleet};

const HOSTS: usize = 1_000;
mod synthetic;

use synthetic::observed;

fn fleet(hosts: usize) -> ValidFleet {
    let mut inv = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: web}, {name: db}]\n  hosts:\n",
    );
    for i in 0..hosts {
        let group = if i % 3 == 0 { "db" } else { "web" };
        inv.push_str(&format!(
            "    - {{name: host-{i:05}, packageManager: apt, groups: [{group}]}}\n"
        ));
    }
    let baseline = |name: &str, group: &str, classes: &str| {
        format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: {name}}}\nspec:\n  selector: {{groups: [{group}]}}\n  packages:\n    - {{name: pkg-0007, minVersion: \"1.0-2\"}}\n  updates: {{classes: {classes}, delay: 2d}}\n  hold: [\"pkg-001*\"]\n  exclude: [\"linux-image-*\"]\n  window: always\n  rollout: all\n"
        )
    };
    let files = [
        ("inventory.yaml", inv),
        ("web.yaml", baseline("web", "web", "security")),
        ("db.yaml", baseline("db", "db", "all")),
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

fn bench(c: &mut Criterion) {
    let f = fleet(HOSTS);
    let o = observed(HOSTS);
    let policy = Policy::builtin();
    let now: Timestamp = "2026-11-29T02:00:00Z".parse().expect("instant");
    let configs: Vec<HostConfig> = f
        .hosts()
        .map(|h| HostConfig::from_fleet(&f, h).expect("config"))
        .collect();

    let mut g = c.benchmark_group("reports");
    g.sample_size(10);
    g.bench_function("evaluate 1000 hosts", |b| {
        b.iter(|| {
            configs
                .iter()
                .map(|config| {
                    evaluate(Inputs {
                        config,
                        observed: o.host(&config.host),
                        previous: None,
                        run: None,
                        policy: &policy,
                        now,
                        advisories: None,
                        snapshot: None,
                    })
                    .outstanding
                    .len()
                })
                .sum::<usize>()
        })
    });

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
        // Every iteration commits (the cost measured), even with unchanged facts.
        heartbeat: std::time::Duration::ZERO,
        fence: None,
    };
    let mut minute = 0;
    g.bench_function("record 1000 hosts", |b| {
        b.iter(|| {
            minute += 1;
            let at = now + jiff::SignedDuration::from_mins(minute);
            let run = report::observation_run(&o, "0123456789abcdef", at);
            black_box(report::record(&target, &f, Some(&o), &run, at).expect("recorded"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
