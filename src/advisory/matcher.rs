//! Matching advisories onto observed hosts. Pure: an [`Index`] (built from stored records)
//! and an observed fleet in, per-host findings out.
//!
//! Each installed package is looked up under its *source* package and source version
//! (Debian advisories are per source; the binNMU suffix is already stripped by observe), and
//! on RPM hosts also under its own name (AlmaLinux and Rocky records often name binary
//! RPMs). Versions compare with the host ecosystem's exact ordering ([`crate::version`]):
//! OSV `ECOSYSTEM` ranges are evaluated as the OSV spec's `IsVulnerable` pseudocode does
//! (`introduced`, `fixed`, `last_affected`, `limit`, plus listed `versions`); the tracker's
//! `resolved` + `fixed_version` is the range `[0, fixed)`; `open`/`undetermined` affect every
//! version. A finding says whether the fix is offered by the host's repositories (a pending
//! update whose version maps to at least the fixed source version), offered but held, not
//! offered, or not released at all.
//!
//! Fleets share most (package, version) pairs, so each distinct (ecosystem, package,
//! version) is evaluated once and the result reused for every host that has it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::ecosystem::{self, HostEcosystem};
use super::{Affected, Event, Origin, Record, Severity, Unfixed};
use crate::observed::{ObservedFleet, ObservedHost, PendingUpdate};
use crate::version::{self, Ecosystem, Version};

/// Fast hashing for the matcher's maps: the keys are package names and versions from the
/// fleet and the advisory data, not attacker-chosen at a scale that matters here.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// What every finding of one advisory record shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryInfo {
    /// Advisory id.
    pub id: String,
    /// CVE ids it covers.
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// One line.
    pub summary: String,
    /// Where it came from.
    pub origin: Origin,
    /// The id's position among the index's ids in string order (equal ids, equal ranks):
    /// hosts' findings sort by it without comparing the strings.
    rank: u32,
}

enum Test {
    Ranges {
        ranges: Vec<Vec<(EventKind, Option<Version>)>>,
        versions: Vec<Version>,
    },
    Unfixed(Unfixed),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

struct Entry {
    info: Arc<AdvisoryInfo>,
    test: Test,
}

/// The stored records, parsed and indexed by (ecosystem, package) for matching.
pub struct Index {
    entries: Vec<Entry>,
    by_name: HashMap<String, HashMap<String, Vec<u32>>>,
    /// The snapshot id of the data (`None`: built without a store).
    pub snapshot: Option<String>,
    /// Records left out because a version in them does not parse in their ecosystem.
    pub unparsable: usize,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("records", &self.entries.len())
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Parses and indexes `records` (records of unsupported ecosystems and with versions
    /// that do not parse are left out and counted).
    pub fn build(records: Vec<Record>, snapshot: Option<String>) -> Index {
        let mut index = Index {
            entries: Vec::with_capacity(records.len()),
            by_name: HashMap::default(),
            snapshot,
            unparsable: 0,
        };
        for r in records {
            let Some(ordering) = ecosystem::ordering(&r.ecosystem) else {
                continue;
            };
            let Some(test) = compile(ordering, &r.affected) else {
                index.unparsable += 1;
                continue;
            };
            let n = u32::try_from(index.entries.len()).unwrap_or(u32::MAX);
            index
                .by_name
                .entry(r.ecosystem.clone())
                .or_default()
                .entry(r.package.clone())
                .or_default()
                .push(n);
            index.entries.push(Entry {
                info: Arc::new(AdvisoryInfo {
                    id: r.id,
                    cves: r.cves,
                    severity: r.severity,
                    summary: r.summary,
                    origin: r.origin,
                    rank: 0,
                }),
                test,
            });
        }
        // Ranks by id; the `Arc`s are not shared yet, so `get_mut` always succeeds.
        let mut by_id: Vec<u32> = (0..index.entries.len())
            .filter_map(|n| u32::try_from(n).ok())
            .collect();
        by_id.sort_by(|a, b| {
            index.entries[*a as usize]
                .info
                .id
                .cmp(&index.entries[*b as usize].info.id)
        });
        let mut rank = 0u32;
        let mut previous: Option<usize> = None;
        for &n in &by_id {
            let n = n as usize;
            if previous.is_some_and(|p| index.entries[p].info.id != index.entries[n].info.id) {
                rank += 1;
            }
            if let Some(info) = Arc::get_mut(&mut index.entries[n].info) {
                info.rank = rank;
            }
            previous = Some(n);
        }
        index
    }

    /// Records indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries naming `package` in `ecosystem` or in its release-less form.
    fn lookup<'a>(&'a self, ecosystem: &str, package: &str) -> impl Iterator<Item = u32> + 'a {
        let base = ecosystem::base_name(ecosystem);
        let exact = self.by_name.get(ecosystem).and_then(|m| m.get(package));
        let general = (base != ecosystem)
            .then(|| self.by_name.get(base).and_then(|m| m.get(package)))
            .flatten();
        exact
            .into_iter()
            .chain(general)
            .flat_map(|v| v.iter().copied())
    }

    /// Every record naming `package` at `version` in `ecosystem` that affects it.
    fn evaluate(&self, eco: &HostEcosystem, package: &str, version: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut parsed: Option<Option<Version>> = None;
        for n in self.lookup(&eco.name, package) {
            let entry = &self.entries[n as usize];
            let outcome = match &entry.test {
                Test::Unfixed(state) => Some((None, Some(*state))),
                Test::Ranges { ranges, versions } => {
                    let v =
                        parsed.get_or_insert_with(|| version::parse(eco.ordering, version).ok());
                    let Some(v) = v.as_ref() else { continue };
                    affected_by(v, ranges, versions)
                }
            };
            if let Some((fixed, unfixed)) = outcome {
                hits.push(Hit {
                    entry: n,
                    fixed: fixed.map(|v: &Version| SmolStr::new(v.as_str())),
                    unfixed,
                });
            }
        }
        hits
    }
}

/// Parses a record's versions in its ecosystem's ordering; `None` if one does not parse.
fn compile(ordering: Ecosystem, affected: &Affected) -> Option<Test> {
    Some(match affected {
        Affected::Unfixed { state, .. } => Test::Unfixed(*state),
        Affected::Ranges { ranges, versions } => {
            let mut out = Vec::with_capacity(ranges.len());
            for range in ranges {
                let mut events = Vec::with_capacity(range.len());
                for e in range {
                    let (kind, text) = match e {
                        Event::Introduced(v) => (EventKind::Introduced, v),
                        Event::Fixed(v) => (EventKind::Fixed, v),
                        Event::LastAffected(v) => (EventKind::LastAffected, v),
                        Event::Limit(v) => (EventKind::Limit, v),
                    };
                    // `introduced: "0"` sorts before every version; `limit: "*"` after.
                    let special = (kind == EventKind::Introduced && text == "0")
                        || (kind == EventKind::Limit && text.contains('*'));
                    let v = if special {
                        None
                    } else {
                        Some(version::parse(ordering, text).ok()?)
                    };
                    events.push((kind, v));
                }
                events.sort_by(event_order);
                out.push(events);
            }
            let versions = versions
                .iter()
                .map(|v| version::parse(ordering, v).ok())
                .collect::<Option<Vec<_>>>()?;
            Test::Ranges {
                ranges: out,
                versions,
            }
        }
    })
}

/// Events by version; `introduced: 0` first, `limit: *` last.
fn event_order(
    a: &(EventKind, Option<Version>),
    b: &(EventKind, Option<Version>),
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let rank = |e: &(EventKind, Option<Version>)| match (e.0, &e.1) {
        (EventKind::Introduced, None) => 0,
        (_, Some(_)) => 1,
        (_, None) => 2,
    };
    match (rank(a), rank(b)) {
        (1, 1) => match (&a.1, &b.1) {
            (Some(x), Some(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
        (x, y) => x.cmp(&y),
    }
}

/// OSV's evaluation: whether `v` is affected, and if so the fix (the first `fixed` event
/// above `v` in its range) and, when no fix is named, that it is unfixed.
fn affected_by<'a>(
    v: &Version,
    ranges: &'a [Vec<(EventKind, Option<Version>)>],
    versions: &[Version],
) -> Option<(Option<&'a Version>, Option<Unfixed>)> {
    let mut best: Option<Option<&'a Version>> = None;
    for events in ranges {
        let limits: Vec<&(EventKind, Option<Version>)> =
            events.iter().filter(|e| e.0 == EventKind::Limit).collect();
        let before_limits = limits.is_empty()
            || limits.iter().any(|e| match &e.1 {
                None => true,
                Some(l) => v < l,
            });
        if !before_limits {
            continue;
        }
        let mut vulnerable = false;
        for (kind, ev) in events {
            match (kind, ev) {
                (EventKind::Introduced, None) => vulnerable = true,
                (EventKind::Introduced, Some(x)) if v >= x => vulnerable = true,
                (EventKind::Fixed, Some(x)) if v >= x => vulnerable = false,
                (EventKind::LastAffected, Some(x)) if v > x => vulnerable = false,
                _ => {}
            }
        }
        if vulnerable {
            let fix = events.iter().find_map(|(kind, ev)| match (kind, ev) {
                (EventKind::Fixed, Some(x)) if x > v => Some(x),
                _ => None,
            });
            best = Some(match (best.flatten(), fix) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        }
    }
    if best.is_none() && versions.iter().any(|x| x == v) {
        best = Some(None);
    }
    best.map(|fix| (fix, fix.is_none().then_some(Unfixed::Open)))
}

/// One record that affects one (package, version).
#[derive(Clone)]
struct Hit {
    entry: u32,
    fixed: Option<SmolStr>,
    unfixed: Option<Unfixed>,
}

/// Whether and how a finding can be fixed on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FindingState {
    /// The host's repositories offer a version with the fix.
    FixOffered,
    /// A version with the fix is offered but held back (dpkg hold, versionlock, exclude).
    FixHeld,
    /// A fix is released, but the host's repositories do not offer it.
    FixNotOffered,
    /// No fix is released for the host's release (see `unfixed` for why).
    NoFix,
}

impl FindingState {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::FixOffered => "fix-offered",
            FindingState::FixHeld => "fix-held",
            FindingState::FixNotOffered => "fix-not-offered",
            FindingState::NoFix => "no-fix",
        }
    }
}

/// The pending update that brings a finding's fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// The package to update.
    pub package: String,
    /// The version offered.
    pub version: String,
    /// Held back by the host (dpkg hold, versionlock, exclude).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// An installed package a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffectedPackage {
    /// Package name.
    pub name: SmolStr,
    /// Installed (binary) version.
    pub version: SmolStr,
}

/// What a finding says about one source package version: the same on every host that has
/// it, so hosts share one copy (fleets hold millions of findings).
#[derive(Debug, Clone)]
pub struct FindingCore {
    /// The advisory.
    pub advisory: Arc<AdvisoryInfo>,
    /// CVEs of records merged into this one (a tracker CVE the OSV advisory covers).
    pub merged_cves: Vec<String>,
    /// Severity (the highest of merged records).
    pub severity: Severity,
    /// The source package (or, for an RPM record naming a binary, that binary).
    pub source: SmolStr,
    /// The installed source version.
    pub source_version: SmolStr,
    /// Installed packages built from it.
    pub packages: Vec<AffectedPackage>,
    /// The first fixed version, when a fix is released.
    pub fixed: Option<SmolStr>,
    /// Why there is no fix, when there is none.
    pub unfixed: Option<Unfixed>,
}

impl PartialEq for FindingCore {
    fn eq(&self, o: &Self) -> bool {
        // One `AdvisoryInfo` per indexed record: pointer equality is record equality.
        Arc::ptr_eq(&self.advisory, &o.advisory)
            && self.merged_cves == o.merged_cves
            && self.severity == o.severity
            && self.source == o.source
            && self.source_version == o.source_version
            && self.packages == o.packages
            && self.fixed == o.fixed
            && self.unfixed == o.unfixed
    }
}

impl Eq for FindingCore {}

impl Hash for FindingCore {
    fn hash<H: Hasher>(&self, h: &mut H) {
        Arc::as_ptr(&self.advisory).hash(h);
        self.source.hash(h);
        self.source_version.hash(h);
        self.packages.hash(h);
        self.fixed.hash(h);
    }
}

impl FindingCore {
    /// The advisory id.
    pub fn id(&self) -> &str {
        &self.advisory.id
    }

    /// Every CVE id of the finding (its own and merged ones), sorted.
    pub fn cves(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .advisory
            .cves
            .iter()
            .chain(&self.merged_cves)
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether changing one of the finding's packages, `package`, to `to` brings the fix.
    /// Without a released fix nothing does.
    pub fn fixed_by(&self, package: &str, to: &str, ordering: Ecosystem) -> bool {
        let Some(fixed) = &self.fixed else {
            return false;
        };
        let Some(p) = self.packages.iter().find(|p| p.name == package) else {
            return false;
        };
        at_least(
            ordering,
            &candidate_source_version(ordering, &p.version, &self.source_version, to),
            fixed,
        )
    }
}

/// One advisory affecting one host's source package: the shared [`FindingCore`] (fields
/// reachable through `Deref`) and what depends on the host.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What the advisory says about the installed source version.
    pub core: Arc<FindingCore>,
    /// Whether the fix is offered.
    pub state: FindingState,
    /// The update that brings the fix.
    pub offer: Option<Box<Offer>>,
    /// The vulnerability exception that accepts it, while in force.
    pub exception: Option<Arc<Excepted>>,
}

impl std::ops::Deref for Finding {
    type Target = FindingCore;

    fn deref(&self) -> &FindingCore {
        &self.core
    }
}

/// Hands out one shared copy of each distinct finding core (sharded, so the hosts matched
/// in parallel rarely wait for each other).
struct Interner {
    shards: Vec<Mutex<HashSet<Arc<FindingCore>>>>,
}

impl Interner {
    fn new() -> Interner {
        Interner {
            shards: (0..64).map(|_| Mutex::new(HashSet::default())).collect(),
        }
    }

    fn intern(&self, core: FindingCore) -> Arc<FindingCore> {
        use std::hash::BuildHasher;
        let hash = foldhash::fast::FixedState::default().hash_one(&core);
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        // A poisoned shard only means another thread panicked mid-insert; the set is intact.
        let mut set = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = set.get(&core) {
            return a.clone();
        }
        let a = Arc::new(core);
        set.insert(a.clone());
        a
    }
}

/// A vulnerability exception in force for a finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Excepted {
    /// The VulnerabilityException's name.
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    /// Why the risk is accepted.
    pub reason: String,
    /// When it stops applying.
    #[schemars(with = "String")]
    pub expires: jiff::Timestamp,
}

/// Whether `a >= b` in `ordering` (unparsable versions never are).
fn at_least(ordering: Ecosystem, a: &str, b: &str) -> bool {
    matches!(version::compare(ordering, a, b), Ok(o) if o.is_ge())
}

/// The source version a candidate binary version will have, from how the installed binary
/// version relates to the installed source version: the same (most packages), the source
/// plus a binNMU suffix `+bN`, or another epoch (`bsdutils 1:2.38.1-5` from `util-linux
/// 2.38.1-5`). When they relate otherwise (a binary versioned apart from its source), the
/// candidate's own version is used.
pub fn candidate_source_version(
    ordering: Ecosystem,
    installed: &str,
    installed_source: &str,
    candidate: &str,
) -> String {
    if ordering == Ecosystem::Rpm {
        return candidate.to_owned();
    }
    let strip = crate::driver::apt::strip_binnmu;
    let split = |v: &str| -> (Option<String>, String) {
        match v.split_once(':') {
            Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(e.to_owned()), rest.to_owned())
            }
            _ => (None, v.to_owned()),
        }
    };
    let (bin_epoch, bin_rest) = split(installed);
    let (src_epoch, src_rest) = split(installed_source);
    if strip(&bin_rest) != src_rest {
        return strip(candidate).to_owned();
    }
    let (cand_epoch, cand_rest) = split(candidate);
    if cand_epoch != bin_epoch {
        return strip(candidate).to_owned();
    }
    let rest = strip(&cand_rest);
    match src_epoch {
        Some(e) => format!("{e}:{rest}"),
        None => rest.to_owned(),
    }
}

/// One host's findings.
#[derive(Debug, Clone, Default)]
pub struct HostFindings {
    /// The advisory ecosystem (`None`: the host's OS maps to none patchkeeper matches, or it
    /// was not observed).
    pub ecosystem: Option<HostEcosystem>,
    /// Why the host was not assessed, when it was not.
    pub not_assessed: Option<String>,
    /// Open findings, sorted by severity (worst first), then id, then source.
    pub findings: Vec<Finding>,
}

impl HostFindings {
    /// Findings that a change of `package` to `to` fixes.
    pub fn fixed_by<'a>(
        &'a self,
        package: &'a str,
        to: &'a str,
    ) -> impl Iterator<Item = &'a Finding> + 'a {
        let ordering = self.ecosystem.as_ref().map(|e| e.ordering);
        self.findings
            .iter()
            .filter(move |f| ordering.is_some_and(|o| f.fixed_by(package, to, o)))
    }
}

/// The findings of a whole fleet against one advisory snapshot.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    /// The snapshot id used (`None`: built without a store).
    pub snapshot: Option<String>,
    /// Per host name.
    pub hosts: BTreeMap<String, HostFindings>,
}

impl Assessment {
    /// The findings of `host`.
    pub fn host(&self, host: &str) -> Option<&HostFindings> {
        self.hosts.get(host)
    }
}

/// Matches every observed host against `index`. `overrides` maps os-release ids to
/// ecosystem names (Settings `advisories.ecosystems`).
///
/// What a host's findings say about its packages ([`FindingCore`]) depends only on its
/// ecosystem and its installed (package, version, source, source version) list; only the
/// offers (its pending and held updates) are its own. Two levels of sharing follow:
///
/// - Hosts with an equal list (made from one image) form a group whose finding cores are
///   gathered once, from its first host; every member only adds its offers.
/// - Cores are per source package: those of one source depend only on the source and the
///   (binary, version, source version) list built from it on the host (a [`Unit`]). Each
///   distinct unit is matched once and its cores reused by every host that has it, so a
///   host that differs from others in a few packages re-matches only those sources.
///
/// [`assess_per_host`] is the straightforward definition this must equal (a property test
/// checks it, with forced hash collisions at both levels).
pub fn assess(
    index: &Index,
    observed: &ObservedFleet,
    overrides: &BTreeMap<String, String>,
) -> Assessment {
    assess_grouped(index, observed, overrides, signature, |h| h)
}

/// [`assess`] with hosts grouped by `signature` (a hash of what [`same_packages`]
/// compares) and units bucketed by `unit_hash` of their hash (tests pass colliding ones).
pub(super) fn assess_grouped(
    index: &Index,
    observed: &ObservedFleet,
    overrides: &BTreeMap<String, String>,
    signature: impl Fn(&ObservedHost) -> u64 + Sync,
    unit_hash: impl Fn(u64) -> u64 + Sync,
) -> Assessment {
    let (ecos, host_eco) = host_ecosystems(observed, overrides);
    // Each assessable host's (ecosystem, hash of its package list).
    let sigs: Vec<Option<(u16, u64)>> = observed
        .hosts
        .par_iter()
        .zip(host_eco.par_iter())
        .map(|(h, eco)| {
            let e = (*eco)?;
            h.status.is_reachable().then(|| (e, signature(h)))
        })
        .collect();
    // The first host of each signature leads its group.
    let mut first: HashMap<(u16, u64), usize> = HashMap::default();
    let mut group: Vec<Option<usize>> = sigs
        .iter()
        .enumerate()
        .map(|(i, s)| Some(*first.entry((*s)?).or_insert(i)))
        .collect();
    drop(first);
    // Equal hashes of unequal lists (a collision) must not share: such a host leads a
    // group of its own.
    let collided: Vec<usize> = group
        .par_iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let g = (*g)?;
            (g != i && !same_packages(&observed.hosts[i], &observed.hosts[g])).then_some(i)
        })
        .collect();
    for i in collided {
        group[i] = Some(i);
    }
    let mut members = vec![0u32; observed.hosts.len()];
    for g in group.iter().flatten() {
        members[*g] += 1;
    }
    let leaders: Vec<(usize, u16)> = group
        .iter()
        .zip(&host_eco)
        .enumerate()
        .filter_map(|(i, (g, e))| (*g == Some(i)).then_some((i, (*e)?)))
        .collect();
    let units = UnitCache::new();
    // A group of one (every host of a fleet whose package lists all differ) takes its
    // findings straight from its cores, moved rather than shared.
    let led: Vec<(usize, Result<Group, Vec<Finding>>)> = leaders
        .par_iter()
        .map_init(Scratch::default, |scratch, &(i, e)| {
            let h = &observed.hosts[i];
            let cores = units.host_cores(index, e, &ecos[e as usize], h, scratch, &unit_hash);
            let led = if members[i] > 1 {
                Ok(Group::new(cores, true))
            } else {
                Err(findings_from(cores, ecos[e as usize].ordering, h))
            };
            (i, led)
        })
        .collect();
    drop(units);
    let mut groups: HashMap<usize, Group> = HashMap::default();
    let mut alone: Vec<(usize, Vec<Finding>)> = Vec::new();
    for (i, led) in led {
        match led {
            Ok(g) => {
                groups.insert(i, g);
            }
            Err(findings) => alone.push((i, findings)),
        }
    }
    let mut hosts: Vec<(String, HostFindings)> = observed
        .hosts
        .par_iter()
        .zip(host_eco.par_iter())
        .zip(group.par_iter())
        .map(|((h, eco), g)| {
            let findings = match (eco, *g) {
                (Some(e), Some(g)) => HostFindings {
                    ecosystem: Some(ecos[*e as usize].clone()),
                    not_assessed: None,
                    // A group of one gets its findings below.
                    findings: groups
                        .get(&g)
                        .map(|group| group.findings(ecos[*e as usize].ordering, h))
                        .unwrap_or_default(),
                },
                _ => not_assessed(h, eco.is_some()),
            };
            (h.name.clone(), findings)
        })
        .collect();
    for (i, findings) in alone {
        hosts[i].1.findings = findings;
    }
    Assessment {
        snapshot: index.snapshot.clone(),
        hosts: hosts.into_iter().collect(),
    }
}

/// One installed binary as a unit keys it: name, version, source version.
type Binary<'o> = (&'o str, &'o str, &'o str);

/// The finding cores of one source package in one ecosystem for one list of installed
/// binaries built from it (in the host's order): the same on every host with that list.
/// A [`Chunk`] is the same for a run of units.
struct Unit {
    eco: u16,
    /// The source and its binaries (name, version, source version), as [`unit_key`] writes
    /// them: one buffer, so telling units apart is one comparison of contiguous bytes
    /// rather than a walk over a dozen separately allocated strings.
    key: Box<[u8]>,
    cores: Vec<Arc<FindingCore>>,
}

/// Sources fall into this many chunks by the top bits of their name's hash (a host with
/// 500 sources has about 16 per chunk).
const CHUNK_BITS: u32 = 5;

/// Chunk keys kept at most (bytes): beyond it new chunks are matched unit by unit but not
/// kept, so a fleet where no two hosts share a chunk costs time, not unbounded memory.
const CHUNK_KEY_BUDGET: usize = 256 << 20;

/// The finding cores of the units of one chunk: the sources of a host whose names hash
/// into one chunk number, in hash order, each with its binaries. Hosts of one image that
/// differ in a few packages share every chunk but those packages', so one lookup (one
/// hash, one comparison of contiguous bytes) stands for a dozen unit lookups, each a chain
/// of cache misses.
struct Chunk {
    eco: u16,
    /// Each unit as [`unit_key`] writes it, preceded by its binary count.
    key: Box<[u8]>,
    cores: Vec<Arc<FindingCore>>,
}

fn put(buf: &mut Vec<u8>, s: &str) {
    // Package names and versions are far below 4 GiB; a longer one would only weaken the
    // prefix, and equal keys still require equal bytes.
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Writes source `src` and its `binaries` into `buf`, each string length-prefixed (so no
/// two different lists give the same bytes).
fn unit_key<'o>(buf: &mut Vec<u8>, src: &str, binaries: impl Iterator<Item = Binary<'o>>) {
    buf.clear();
    put(buf, src);
    for (n, v, s) in binaries {
        put(buf, n);
        put(buf, v);
        put(buf, s);
    }
}

/// A host's installed binaries by source, reused from host to host by one worker (no
/// allocation per host once warm).
#[derive(Default)]
struct Scratch<'o> {
    /// Source → (first, last) index into `binaries`.
    by_source: HashMap<&'o str, (u32, u32)>,
    /// A binary and the index of the next one of its source (`u32::MAX`: none).
    binaries: Vec<(Binary<'o>, u32)>,
    /// Per chunk number its sources: (hash of the name, name, first binary), in hash order.
    chunks: Vec<Vec<(u64, &'o str, u32)>>,
    /// A unit's key as [`unit_key`] writes it.
    key: Vec<u8>,
    /// A chunk's key.
    chunk_key: Vec<u8>,
}

impl<'o> Scratch<'o> {
    fn fill(&mut self, h: &'o ObservedHost) {
        use std::hash::BuildHasher;
        self.by_source.clear();
        self.binaries.clear();
        for (p, src, sver) in h.with_sources() {
            let n = u32::try_from(self.binaries.len()).unwrap_or(u32::MAX);
            self.binaries
                .push(((p.name.as_str(), p.version.as_str(), sver), u32::MAX));
            match self.by_source.entry(src) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let (_, last) = o.get_mut();
                    self.binaries[*last as usize].1 = n;
                    *last = n;
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((n, n));
                }
            }
        }
        self.chunks.resize_with(1 << CHUNK_BITS, Vec::new);
        for c in &mut self.chunks {
            c.clear();
        }
        let hasher = foldhash::fast::FixedState::default();
        for (&src, &(first, _)) in &self.by_source {
            let hash = hasher.hash_one(src);
            self.chunks[(hash >> (64 - CHUNK_BITS)) as usize].push((hash, src, first));
        }
        for c in &mut self.chunks {
            c.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        }
    }

    /// The binaries of the source whose first binary is at `first`, in the host's order.
    fn list(&self, first: u32) -> impl Iterator<Item = Binary<'o>> + '_ {
        let mut next = first;
        std::iter::from_fn(move || {
            let (b, n) = *self.binaries.get(next as usize)?;
            next = n;
            Some(b)
        })
    }
}

/// Every [`Chunk`] and [`Unit`] matched so far, by hash (sharded, so hosts matched in
/// parallel rarely wait for each other; a bucket holds the entries whose hashes are equal).
struct UnitCache {
    shards: Vec<Mutex<HashMap<u64, Vec<Unit>>>>,
    chunks: Vec<Mutex<HashMap<u64, Vec<Chunk>>>>,
    /// Bytes of chunk keys kept (see [`CHUNK_KEY_BUDGET`]).
    chunk_bytes: std::sync::atomic::AtomicUsize,
}

/// Locks a shard; a poisoned one only means another thread panicked mid-insert, the map is
/// intact.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UnitCache {
    fn new() -> UnitCache {
        UnitCache {
            shards: (0..64).map(|_| Mutex::new(HashMap::default())).collect(),
            chunks: (0..64).map(|_| Mutex::new(HashMap::default())).collect(),
            chunk_bytes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Host `h`'s finding cores in ecosystem `eco` (numbered `e`), sorted by severity
    /// (worst first), then id, then source: its chunks' cores, each chunk and each unit
    /// matched once.
    fn host_cores<'o>(
        &self,
        index: &Index,
        e: u16,
        eco: &HostEcosystem,
        h: &'o ObservedHost,
        scratch: &mut Scratch<'o>,
        unit_hash: &impl Fn(u64) -> u64,
    ) -> Vec<Arc<FindingCore>> {
        use std::hash::BuildHasher;
        scratch.fill(h);
        let mut key = std::mem::take(&mut scratch.chunk_key);
        let mut cores: Vec<Arc<FindingCore>> = Vec::new();
        for c in 0..scratch.chunks.len() {
            let units = &scratch.chunks[c];
            if units.is_empty() {
                continue;
            }
            key.clear();
            for &(_, src, first) in units {
                let count = scratch.list(first).count();
                key.extend_from_slice(&(count as u32).to_le_bytes());
                put(&mut key, src);
                for (n, v, s) in scratch.list(first) {
                    put(&mut key, n);
                    put(&mut key, v);
                    put(&mut key, s);
                }
            }
            let mut hasher = foldhash::fast::FixedState::default().build_hasher();
            e.hash(&mut hasher);
            hasher.write(&key);
            let hash = unit_hash(hasher.finish());
            let shard = &self.chunks[(hash % self.chunks.len() as u64) as usize];
            // The cores are copied out under the lock (a few `Arc`s), rather than the chunk
            // itself shared: no reference count every host of a role would contend on.
            let known = {
                let guard = locked(shard);
                match guard
                    .get(&hash)
                    .and_then(|bucket| bucket.iter().find(|u| u.eco == e && *u.key == *key))
                {
                    Some(u) => {
                        cores.extend(u.cores.iter().cloned());
                        true
                    }
                    None => false,
                }
            };
            if known {
                continue;
            }
            let from = cores.len();
            let firsts: Vec<(&'o str, u32)> = units.iter().map(|&(_, s, f)| (s, f)).collect();
            for (src, first) in firsts {
                self.unit_cores(index, e, eco, src, first, scratch, unit_hash, &mut cores);
            }
            let kept = self
                .chunk_bytes
                .fetch_add(key.len(), std::sync::atomic::Ordering::Relaxed);
            if kept + key.len() <= CHUNK_KEY_BUDGET {
                let mut guard = locked(shard);
                let bucket = guard.entry(hash).or_default();
                // Another worker may have added this chunk while this one matched it: its
                // cores are the same units' (shared through the unit cache), so keeping
                // one copy only saves memory.
                if !bucket.iter().any(|u| u.eco == e && *u.key == *key) {
                    bucket.push(Chunk {
                        eco: e,
                        key: key.as_slice().into(),
                        cores: cores[from..].to_vec(),
                    });
                }
            }
        }
        scratch.chunk_key = key;
        cores.sort_by(core_order);
        cores
    }

    /// Appends to `cores` those of source `src` whose first binary in `scratch` is at
    /// `first`: its unit's, matched once.
    #[allow(clippy::too_many_arguments)]
    fn unit_cores<'o>(
        &self,
        index: &Index,
        e: u16,
        eco: &HostEcosystem,
        src: &'o str,
        first: u32,
        scratch: &mut Scratch<'o>,
        unit_hash: &impl Fn(u64) -> u64,
        cores: &mut Vec<Arc<FindingCore>>,
    ) {
        use std::hash::BuildHasher;
        let mut key = std::mem::take(&mut scratch.key);
        unit_key(&mut key, src, scratch.list(first));
        let mut hasher = foldhash::fast::FixedState::default().build_hasher();
        e.hash(&mut hasher);
        hasher.write(&key);
        let hash = unit_hash(hasher.finish());
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        let known = {
            let guard = locked(shard);
            match guard
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|u| u.eco == e && *u.key == *key))
            {
                Some(u) => {
                    cores.extend(u.cores.iter().cloned());
                    true
                }
                None => false,
            }
        };
        if !known {
            // Matched outside the lock, so another worker may have added the same unit
            // meanwhile: its cores win, so that every host with this unit holds the very
            // same cores (what sharing promises, and what keeps memory to one copy).
            let binaries: Vec<Binary<'_>> = scratch.list(first).collect();
            let matched = unit_cores(index, eco, src, &binaries);
            let mut guard = locked(shard);
            let bucket = guard.entry(hash).or_default();
            match bucket.iter().find(|u| u.eco == e && *u.key == *key) {
                Some(u) => cores.extend(u.cores.iter().cloned()),
                None => {
                    cores.extend(matched.iter().cloned());
                    bucket.push(Unit {
                        eco: e,
                        key: key.as_slice().into(),
                        cores: matched,
                    });
                }
            }
        }
        scratch.key = key;
    }
}

/// Severity (worst first), then id, then source.
fn core_order(a: &Arc<FindingCore>, b: &Arc<FindingCore>) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then_with(|| a.advisory.rank.cmp(&b.advisory.rank))
        .then_with(|| a.source.cmp(&b.source))
}

/// The finding cores of source `src` with `binaries` installed from it (as [`host_cores`]
/// makes them for one source).
fn unit_cores(
    index: &Index,
    eco: &HostEcosystem,
    src: &str,
    binaries: &[Binary<'_>],
) -> Vec<Arc<FindingCore>> {
    let mut by_entry: BTreeMap<u32, FindingCore> = BTreeMap::new();
    for &(name, version, sver) in binaries {
        let own = (eco.ordering == Ecosystem::Rpm && src != name).then_some((name, version));
        for (n, v) in std::iter::once((src, sver)).chain(own) {
            for hit in index.evaluate(eco, n, v) {
                let entry = &index.entries[hit.entry as usize];
                let f = by_entry.entry(hit.entry).or_insert_with(|| FindingCore {
                    advisory: entry.info.clone(),
                    merged_cves: Vec::new(),
                    severity: entry.info.severity,
                    source: SmolStr::new(src),
                    source_version: SmolStr::new(sver),
                    packages: Vec::new(),
                    fixed: hit.fixed.clone(),
                    unfixed: hit.unfixed,
                });
                if !f.packages.iter().any(|x| x.name == name) {
                    f.packages.push(AffectedPackage {
                        name: SmolStr::new(name),
                        version: SmolStr::new(version),
                    });
                }
            }
        }
    }
    let mut run: Vec<FindingCore> = by_entry.into_values().collect();
    merge_run(&mut run);
    run.into_iter()
        .map(|mut c| {
            c.packages.sort_by(|a, b| a.name.cmp(&b.name));
            Arc::new(c)
        })
        .collect()
}

/// [`assess`] without its sharing: every host on its own, every (package, version) of it
/// evaluated against the index directly. The definition the fast path is tested against.
pub fn assess_per_host(
    index: &Index,
    observed: &ObservedFleet,
    overrides: &BTreeMap<String, String>,
) -> Assessment {
    let (ecos, host_eco) = host_ecosystems(observed, overrides);
    let interner = Interner::new();
    let hosts = observed
        .hosts
        .iter()
        .zip(&host_eco)
        .map(|(h, eco)| {
            let findings = match eco {
                Some(e) if h.status.is_reachable() => {
                    let eco = &ecos[*e as usize];
                    let hits = |name: &str, version: &str| {
                        let hits = index.evaluate(eco, name, version);
                        (!hits.is_empty()).then_some(Cow::Owned(hits))
                    };
                    let cores = host_cores(index, hits, &interner, eco, h);
                    HostFindings {
                        ecosystem: Some(eco.clone()),
                        not_assessed: None,
                        findings: findings_for(&cores, eco.ordering, h),
                    }
                }
                _ => not_assessed(h, eco.is_some()),
            };
            (h.name.clone(), findings)
        })
        .collect();
    Assessment {
        snapshot: index.snapshot.clone(),
        hosts,
    }
}

/// The ecosystems present (numbered in order of appearance) and each host's number.
fn host_ecosystems(
    observed: &ObservedFleet,
    overrides: &BTreeMap<String, String>,
) -> (Vec<HostEcosystem>, Vec<Option<u16>>) {
    let mut ecos: Vec<HostEcosystem> = Vec::new();
    let host_eco = observed
        .hosts
        .iter()
        .map(|h| {
            let e =
                h.os.as_ref()
                    .and_then(|os| ecosystem::of_host(os, overrides))?;
            let i = match ecos.iter().position(|x| *x == e) {
                Some(i) => i,
                None => {
                    ecos.push(e);
                    ecos.len() - 1
                }
            };
            u16::try_from(i).ok()
        })
        .collect();
    (ecos, host_eco)
}

/// Why a host is not assessed: not observed, or (`has_ecosystem` false) its OS maps to no
/// advisory ecosystem.
fn not_assessed(h: &ObservedHost, has_ecosystem: bool) -> HostFindings {
    let why = if !h.status.is_reachable() {
        "not observed".to_owned()
    } else if has_ecosystem {
        // Unreachable otherwise: an assessable host always has its group's cores.
        "not assessed".to_owned()
    } else {
        match &h.os {
            Some(os) => format!(
                "no advisory ecosystem for os-release ID `{}` (map it with Settings advisories.ecosystems)",
                os.id
            ),
            None => "the OS is unknown".into(),
        }
    };
    HostFindings {
        ecosystem: None,
        not_assessed: Some(why),
        findings: Vec::new(),
    }
}

/// Everything of a host the finding cores depend on, hashed: its installed packages (name,
/// version, architecture) and the sources recorded for them, as observed (equal inputs give
/// equal [`ObservedHost::with_sources`] pairings without running them).
fn signature(h: &ObservedHost) -> u64 {
    use std::hash::BuildHasher;
    let mut s = foldhash::fast::FixedState::default().build_hasher();
    h.installed.len().hash(&mut s);
    for p in &h.installed {
        (p.name.as_str(), p.version.as_str(), p.arch.as_str()).hash(&mut s);
    }
    h.sources.len().hash(&mut s);
    for x in &h.sources {
        (
            x.package.as_str(),
            x.arch.as_str(),
            x.source.as_str(),
            x.version.as_str(),
        )
            .hash(&mut s);
    }
    s.finish()
}

/// Whether `a` and `b` agree on everything [`signature`] hashes.
fn same_packages(a: &ObservedHost, b: &ObservedHost) -> bool {
    a.installed.len() == b.installed.len()
        && a.sources.len() == b.sources.len()
        && a.installed
            .iter()
            .zip(&b.installed)
            .all(|(x, y)| x.name == y.name && x.version == y.version && x.arch == y.arch)
        && a.sources.iter().zip(&b.sources).all(|(x, y)| {
            x.package == y.package
                && x.arch == y.arch
                && x.source == y.source
                && x.version == y.version
        })
}

/// The finding cores of host `h` in ecosystem `eco`, sorted by severity (worst first), then
/// id, then source; `hits` tells the records affecting a (package, version).
fn host_cores<'h, 'm>(
    index: &Index,
    hits: impl Fn(&'h str, &'h str) -> Option<Cow<'m, [Hit]>>,
    interner: &Interner,
    eco: &HostEcosystem,
    h: &'h ObservedHost,
) -> Vec<Arc<FindingCore>> {
    // (entry, source) → finding under construction.
    let mut by_entry: BTreeMap<(u32, &str), FindingCore> = BTreeMap::new();
    for (p, src, sver) in h.with_sources() {
        let own = (eco.ordering == Ecosystem::Rpm && src != p.name.as_str())
            .then_some((p.name.as_str(), p.version.as_str()));
        for (name, version) in std::iter::once((src, sver)).chain(own) {
            let Some(hits) = hits(name, version) else {
                continue;
            };
            for hit in hits.iter() {
                let entry = &index.entries[hit.entry as usize];
                let f = by_entry
                    .entry((hit.entry, src))
                    .or_insert_with(|| FindingCore {
                        advisory: entry.info.clone(),
                        merged_cves: Vec::new(),
                        severity: entry.info.severity,
                        source: SmolStr::new(src),
                        source_version: SmolStr::new(sver),
                        packages: Vec::new(),
                        fixed: hit.fixed.clone(),
                        unfixed: hit.unfixed,
                    });
                if !f.packages.iter().any(|x| x.name == p.name) {
                    f.packages.push(AffectedPackage {
                        name: p.name.clone(),
                        version: p.version.clone(),
                    });
                }
            }
        }
    }
    let mut cores: Vec<Arc<FindingCore>> = merge_duplicates(by_entry.into_values().collect())
        .into_iter()
        .map(|mut c| {
            c.packages.sort_by(|a, b| a.name.cmp(&b.name));
            interner.intern(c)
        })
        .collect();
    cores.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.advisory.id.cmp(&b.advisory.id))
            .then_with(|| a.source.cmp(&b.source))
    });
    cores
}

/// The finding cores of a group of hosts, and (for a group of several) which of them each
/// package name is in.
struct Group {
    cores: Vec<Arc<FindingCore>>,
    by_package: Option<HashMap<SmolStr, Vec<u32>>>,
}

impl Group {
    /// A group over `cores`; `shared`: it has several members (worth a package map).
    fn new(cores: Vec<Arc<FindingCore>>, shared: bool) -> Group {
        let by_package = shared.then(|| {
            let mut by_package: HashMap<SmolStr, Vec<u32>> = HashMap::default();
            for (i, c) in cores.iter().enumerate() {
                for p in &c.packages {
                    by_package
                        .entry(p.name.clone())
                        .or_default()
                        .push(u32::try_from(i).unwrap_or(u32::MAX));
                }
            }
            by_package
        });
        Group { cores, by_package }
    }

    /// Which cores one of `h`'s pending or held updates names a package of.
    fn touched(&self, h: &ObservedHost) -> Vec<bool> {
        let mut touched = vec![false; self.cores.len()];
        if h.updates.is_empty() && h.held_updates.is_empty() {
            return touched;
        }
        match &self.by_package {
            Some(by_package) => {
                for u in h.updates.iter().chain(&h.held_updates) {
                    for &i in by_package.get(u.name.as_str()).into_iter().flatten() {
                        if let Some(t) = touched.get_mut(i as usize) {
                            *t = true;
                        }
                    }
                }
            }
            None => {
                // Updates are sorted by name (as `offer_for` relies on).
                let named = |list: &[PendingUpdate], name: &str| {
                    list.binary_search_by(|u| u.name.as_str().cmp(name)).is_ok()
                };
                for (t, c) in touched.iter_mut().zip(&self.cores) {
                    *t = c
                        .packages
                        .iter()
                        .any(|p| named(&h.updates, &p.name) || named(&h.held_updates, &p.name));
                }
            }
        }
        touched
    }

    /// Member `h`'s findings: [`findings_for`]'s, with offers looked for only on the cores
    /// one of `h`'s pending or held updates names a package of (for the others
    /// [`offer_for`] finds nothing: fix not offered, or no fix).
    fn findings(&self, ordering: Ecosystem, h: &ObservedHost) -> Vec<Finding> {
        self.cores
            .iter()
            .zip(self.touched(h))
            .map(|(core, touched)| {
                let (state, offer) = if touched {
                    offer_for(core, ordering, h)
                } else if core.fixed.is_some() {
                    (FindingState::FixNotOffered, None)
                } else {
                    (FindingState::NoFix, None)
                };
                Finding {
                    core: core.clone(),
                    state,
                    offer: offer.map(Box::new),
                    exception: None,
                }
            })
            .collect()
    }
}

/// [`findings_for`] taking the cores (no reference count moves).
fn findings_from(
    cores: Vec<Arc<FindingCore>>,
    ordering: Ecosystem,
    h: &ObservedHost,
) -> Vec<Finding> {
    cores
        .into_iter()
        .map(|core| {
            let (state, offer) = offer_for(&core, ordering, h);
            Finding {
                core,
                state,
                offer: offer.map(Box::new),
                exception: None,
            }
        })
        .collect()
}

/// A host's findings from its cores: each with the host's own offer.
fn findings_for(cores: &[Arc<FindingCore>], ordering: Ecosystem, h: &ObservedHost) -> Vec<Finding> {
    cores
        .iter()
        .map(|core| {
            let (state, offer) = offer_for(core, ordering, h);
            Finding {
                core: core.clone(),
                state,
                offer: offer.map(Box::new),
                exception: None,
            }
        })
        .collect()
}

/// Folds findings that say the same thing into one per (advisory, source): the same id
/// twice (two sources imported), and a plain CVE finding (the tracker's) covered by an
/// advisory on the same source that lists that CVE (a DSA, USN, ALSA...). A wrapper id that
/// only restates the CVE (`DEBIAN-CVE-...`, `UBUNTU-CVE-...`) gives way to the plain one.
fn merge_duplicates(mut findings: Vec<FindingCore>) -> Vec<FindingCore> {
    // Only findings on one source can say the same thing: merge within each source's run
    // (a stable sort keeps the record order inside a run).
    findings.sort_by(|a, b| a.source.cmp(&b.source));
    let mut out = Vec::with_capacity(findings.len());
    let mut run: Vec<FindingCore> = Vec::new();
    for f in findings {
        if run.last().is_some_and(|r| r.source != f.source) {
            merge_run(&mut run);
            out.append(&mut run);
        }
        run.push(f);
    }
    merge_run(&mut run);
    out.append(&mut run);
    out
}

/// [`merge_duplicates`] within findings on one source.
fn merge_run(findings: &mut Vec<FindingCore>) {
    let mut i = 0;
    while i < findings.len() {
        let mut absorbed_into = None;
        for j in 0..findings.len() {
            if i == j {
                continue;
            }
            let (a, b) = (&findings[i], &findings[j]);
            let same_id = a.advisory.id == b.advisory.id && i > j;
            let a_is_cve = a.advisory.id.starts_with("CVE-");
            let covered = a_is_cve
                && !b.advisory.id.starts_with("CVE-")
                && b.advisory.cves.contains(&a.advisory.id)
                && !b.advisory.id.ends_with(&a.advisory.id);
            let wrapper = !a.advisory.id.starts_with("CVE-")
                && b.advisory.id.starts_with("CVE-")
                && a.advisory.id.ends_with(&b.advisory.id);
            if same_id || covered || wrapper {
                absorbed_into = Some(j);
                break;
            }
        }
        match absorbed_into {
            Some(j) => {
                let gone = findings.remove(i);
                let j = if j > i { j - 1 } else { j };
                let keep = &mut findings[j];
                keep.severity = keep.severity.max(gone.severity);
                keep.merged_cves.extend(gone.cves());
                keep.merged_cves.sort();
                keep.merged_cves.dedup();
                if keep.fixed.is_none() && gone.fixed.is_some() {
                    keep.fixed = gone.fixed;
                    keep.unfixed = None;
                }
                for p in gone.packages {
                    if !keep.packages.iter().any(|x| x.name == p.name) {
                        keep.packages.push(p);
                    }
                }
            }
            None => i += 1,
        }
    }
}

/// A finding's state and the update offering its fix, from the host's pending and held
/// updates.
fn offer_for(
    f: &FindingCore,
    ordering: Ecosystem,
    h: &ObservedHost,
) -> (FindingState, Option<Offer>) {
    let Some(fixed) = f.fixed.clone() else {
        return (FindingState::NoFix, None);
    };
    let find = |list: &[PendingUpdate], held: bool| {
        f.packages.iter().find_map(|p| {
            let i = list.partition_point(|u| u.name.as_str() < p.name.as_str());
            list[i..]
                .iter()
                .take_while(|u| u.name == p.name)
                .find(|u| {
                    at_least(
                        ordering,
                        &candidate_source_version(
                            ordering,
                            &p.version,
                            &f.source_version,
                            &u.candidate_version,
                        ),
                        &fixed,
                    )
                })
                .map(|u| Offer {
                    package: u.name.clone(),
                    version: u.candidate_version.clone(),
                    held,
                })
        })
    };
    match find(&h.updates, false).or_else(|| find(&h.held_updates, true)) {
        Some(o) if o.held => (FindingState::FixHeld, Some(o)),
        Some(o) => (FindingState::FixOffered, Some(o)),
        None => (FindingState::FixNotOffered, None),
    }
}
