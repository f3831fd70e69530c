//! Advisory benchmark: importing a 200,000-record Debian security tracker dump into the
//! store, and matching 10,000 hosts x 1,500 packages against 200,000 advisory records.
//!
//! The synthetic data: 20,000 source packages with 10 records each (9 fixed long ago, one
//! either unfixed or fixed above some hosts' versions); hosts in 4 roles, 1,500 packages from
//! 500 sources each (3 binaries per source), versions spread over 7 values, so a host has
//! about 285 open findings (2.85 million over the fleet) — a Debian host's realistic load,
//! unimportant issues included.
//!
//! Run: `cargo bench --bench vulns` (criterion for matching; the import, the index build and
//! the memory figures are printed once). Hosts in one role share their package list, as
//! hosts made from one image do; `VULNS_BENCH_DISTINCT=1` gives every host a package in a
//! build of its own, so no two lists are equal (the matcher's worst case). Memory is counted by a global allocator: the peak
//! bytes allocated during matching beyond its inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use patchkeeper::advisory::matcher::{assess, Index};
use patchkeeper::advisory::{Affected, Event, Origin, Record, Severity, Unfixed};
use patchkeeper::observed::{ObservedFleet, OsInfo, SourcePackage};

mod synthetic;

/// Counts live and peak heap bytes (benchmark only).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout goes to System as given.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// CPU seconds (user + system) this process has used so far, over all its threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a zeroed rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

const SOURCES: usize = 20_000;
const PER_SOURCE: usize = 10;

fn source_name(s: usize) -> String {
    format!("src-{s:05}")
}

/// 200,000 records (tracker-shaped: one per source, CVE and release).
fn records() -> Vec<Record> {
    let mut out = Vec::with_capacity(SOURCES * PER_SOURCE);
    for s in 0..SOURCES {
        for k in 0..PER_SOURCE {
            let affected = if k + 1 < PER_SOURCE {
                fixed(&format!("0.{k}-1"))
            } else if s % 4 == 0 {
                Affected::Unfixed {
                    state: Unfixed::Open,
                    note: None,
                }
            } else {
                fixed("1.3-1")
            };
            out.push(Record {
                id: format!("CVE-2026-{:06}", s * PER_SOURCE + k),
                cves: vec![format!("CVE-2026-{:06}", s * PER_SOURCE + k)],
                ecosystem: "Debian:12".into(),
                package: source_name(s),
                affected,
                severity: [
                    Severity::Low,
                    Severity::Medium,
                    Severity::High,
                    Severity::Critical,
                ][k % 4],
                summary: format!("synthetic issue {k} of {}", source_name(s)),
                modified: None,
                origin: Origin::DebianTracker,
            });
        }
    }
    out
}

fn fixed(v: &str) -> Affected {
    Affected::Ranges {
        ranges: vec![vec![Event::Introduced("0".into()), Event::Fixed(v.into())]],
        versions: vec![],
    }
}

/// `hosts` Debian 12 hosts: the shared synthetic fleet, with each package built from a
/// source (3 binaries per source, a source set per role of 4). `distinct`: every host's
/// package list differs from every other's (one package in a host-specific build).
fn fleet(hosts: usize, distinct: bool) -> ObservedFleet {
    let mut o = synthetic::observed(hosts);
    for (i, h) in o.hosts.iter_mut().enumerate() {
        h.os = Some(OsInfo {
            id: "debian".into(),
            version_id: "12".into(),
            family: vec!["debian".into()],
            pretty_name: None,
            version_codename: Some("bookworm".into()),
        });
        let role = i % 4;
        h.sources = h
            .installed
            .iter()
            .enumerate()
            .map(|(p, pkg)| SourcePackage {
                package: pkg.name.clone(),
                arch: pkg.arch.clone(),
                source: source_name((p / 3 + 5_000 * role) % SOURCES).into(),
                version: format!("1.{}-1", (p / 3) % 7).into(),
            })
            .collect();
        if distinct {
            // A host-specific build of one package: no two hosts share a package list.
            h.installed[0].version = format!("1.0-1+pk{i}").into();
        }
        h.normalize();
    }
    o
}

/// The same records as a Debian security tracker dump (JSON text).
fn tracker_dump(records: &[Record]) -> String {
    let mut dump = serde_json::Map::new();
    for r in records {
        let release = match &r.affected {
            Affected::Ranges { ranges, .. } => {
                let fixed = ranges[0]
                    .iter()
                    .find_map(|e| match e {
                        Event::Fixed(v) => Some(v.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                serde_json::json!({"status": "resolved", "fixed_version": fixed, "urgency": r.severity.as_str(), "repositories": {"bookworm": "1.0-1"}})
            }
            Affected::Unfixed { .. } => {
                serde_json::json!({"status": "open", "urgency": "low", "repositories": {"bookworm": "1.0-1"}})
            }
        };
        let issues = dump
            .entry(r.package.clone())
            .or_insert_with(|| serde_json::json!({}));
        issues[&r.id] =
            serde_json::json!({"description": r.summary, "releases": {"bookworm": release}});
    }
    serde_json::to_string(&serde_json::Value::Object(dump)).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    // `cargo test --all-targets` runs benches once in test mode: keep that quick.
    let hosts = if full { 10_000 } else { 50 };
    let recs = records();
    // `VULNS_BENCH_MATCH_ONLY=1` skips the import (when profiling the matcher).
    let import = full && std::env::var_os("VULNS_BENCH_MATCH_ONLY").is_none_or(|v| v != "1");
    if import {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tracker.json");
        std::fs::write(&path, tracker_dump(&recs)).expect("write dump");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let start = Instant::now();
        let mut store =
            patchkeeper::advisory::Store::open(&dir.path().join("a.db")).expect("store");
        let done = patchkeeper::advisory::import::import_path(
            &mut store,
            &path,
            None,
            None,
            jiff::Timestamp::now(),
            false,
        )
        .expect("import");
        eprintln!(
            "import of a {:.0} MiB tracker dump: {} records in {:.2} s",
            mib(size as usize),
            done.info.stats.records,
            start.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let loaded = store.records(None).expect("records");
        eprintln!(
            "loading {} records from the store: {:.2} s",
            loaded.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let index = Index::build(recs.clone(), Some("sha256:bench".into()));
    eprintln!(
        "index of {} records: {:.2} s, {:.0} MiB",
        index.len(),
        start.elapsed().as_secs_f64(),
        mib(LIVE.load(Ordering::Relaxed).saturating_sub(before))
    );
    let before_fleet = LIVE.load(Ordering::Relaxed);
    let distinct = std::env::var_os("VULNS_BENCH_DISTINCT").is_some_and(|v| v == "1");
    let observed = fleet(hosts, distinct);
    let fleet_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before_fleet);
    let overrides = Default::default();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let cpu = cpu_seconds();
    let a = assess(&index, &observed, &overrides);
    let took = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let findings: usize = a.hosts.values().map(|h| h.findings.len()).sum();
    eprintln!(
        "assess {hosts} hosts x 1500 packages{}: {took:.2} s ({cpu:.2} s of CPU), {findings} findings; the observed fleet holds {:.0} MiB, matching allocates at most {:.0} MiB more, its result {:.0} MiB",
        if distinct { " (every package list distinct)" } else { "" },
        mib(fleet_bytes),
        mib(PEAK.load(Ordering::Relaxed).saturating_sub(base)),
        mib(LIVE.load(Ordering::Relaxed).saturating_sub(base)),
    );
    drop(a);
    let mut g = c.benchmark_group("vulns");
    g.sample_size(10);
    g.bench_function("assess 10k hosts x 1500 packages vs 200k records", |b| {
        b.iter(|| black_box(assess(&index, &observed, &overrides)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
