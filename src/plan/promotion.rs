//! Staged promotion: a baseline with `promotion` lets its hosts take only the versions its
//! `from` hosts have run healthy for `soak` (on at least `minHosts` of them, with the same
//! package manager). Pure: the evidence comes from the reports branch
//! (`report::promotion_evidence`), read once before planning, as first-seen times are.
//!
//! A version is *eligible* for a package at an instant when at least `minHosts` source
//! hosts have had exactly that version installed for `soak` without a break, and no source
//! host has an incident with it (rolled back, failed after installing it, or non-compliant
//! because of it) up to that instant. A version with an incident stays out for good: only a
//! newer version that soaks moves the baseline on. The host gets the newest eligible
//! version above its installed one, exactly, even when its repositories offer a newer one;
//! if they no longer offer it, the host is blocked saying so.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{PackageManager, Selector};
use crate::observed::ObservedHost;
use crate::version::{self, Ecosystem};

/// What the reports branch proves about the promotion sources' versions, by host name.
/// A source host missing from it has no recorded versions yet (nothing it runs counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Per source host.
    pub hosts: BTreeMap<String, HostEvidence>,
}

/// One source host's recorded versions and incidents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEvidence {
    /// The package manager the host was observed with (versions prove nothing across
    /// package managers).
    pub package_manager: Option<PackageManager>,
    /// Per package name: every version it has had while recorded, with when.
    pub versions: BTreeMap<String, Vec<Ran>>,
    /// Versions that failed on the host.
    pub incidents: Vec<Incident>,
}

/// A version a host had installed from `since` until `until` (`None`: still installed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exact version.
    pub version: String,
    /// When it started running: when apply finished installing it, else the package
    /// database's install time within what observations allow, else when first recorded.
    pub since: Timestamp,
    /// When another version (or none) replaced it, by the same evidence.
    pub until: Option<Timestamp>,
}

/// A package version that failed on a host: it is never promoted from there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Package name.
    pub package: String,
    /// The version that failed.
    pub version: String,
    /// What happened.
    pub kind: IncidentKind,
    /// When it was reported.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// Why, in the words of the run or the compliance evaluation.
    pub reason: String,
}

/// What went wrong with a version on a host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    /// Apply installed it and rolled it back (a failed transaction, verification or health
    /// check).
    RolledBack,
    /// Apply failed on the host after starting to install it, and did not roll back.
    Failed,
    /// With it installed, the host was non-compliant because of it (below a required
    /// minimum, or left broken in the package database).
    NonCompliant,
}

impl IncidentKind {
    /// The kebab-case name, as a verb phrase for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::RolledBack => "rolled back",
            IncidentKind::Failed => "failed",
            IncidentKind::NonCompliant => "non-compliant",
        }
    }
}

/// How a planned version was proven: on a change of a promoting baseline's host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Promoted {
    /// The promoting baseline (`baseline/NAME`).
    pub baseline: String,
    /// Source hosts that ran exactly this version for the whole soak, sorted.
    pub hosts: Vec<String>,
    /// The shortest of their runs, in seconds (at least the soak).
    pub soaked_seconds: u64,
    /// The soak the baseline requires, in seconds.
    pub soak_seconds: u64,
    /// The newer version the host's repositories would install instead (not proven yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instead_of: Option<String>,
}

/// Why an update waits for promotion: on a skipped update of a promoting baseline's host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromotionWait {
    /// The promoting baseline (`baseline/NAME`).
    pub baseline: String,
    /// The version closest to eligibility (`None`: no source host has run a version above
    /// the installed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Source hosts that run it, or ran it for the whole soak, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// How many source hosts must have run it.
    pub min_hosts: u32,
    /// How long it has run on the host that decides (the `minHosts`-th longest), in seconds.
    pub soaked_seconds: u64,
    /// The soak the baseline requires, in seconds.
    pub soak_seconds: u64,
    /// When it becomes eligible if those hosts keep running it healthy (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_at: Option<String>,
    /// Versions above the installed one that failed on a source host: never promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedVersion>,
}

/// A version kept out of promotion by an incident on a source host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlockedVersion {
    /// The version.
    pub version: String,
    /// The source host it failed on.
    pub host: String,
    /// What happened.
    pub kind: IncidentKind,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    pub reason: String,
}

/// A promoting baseline's rule, resolved against the fleet.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `baseline/NAME`.
    pub baseline: String,
    /// What the source hosts are called in messages (`staging` for `groups: [staging]`).
    pub noun: String,
    /// The soak, in seconds.
    pub soak: i64,
    /// Source hosts required.
    pub min_hosts: u32,
    /// The source hosts, sorted.
    pub sources: Vec<String>,
}

impl Rules {
    /// Resolves `promotion` of the baseline `name` against the fleet's hosts.
    pub fn new<'h>(
        name: &str,
        promotion: &crate::model::Promotion,
        hosts: impl Iterator<Item = &'h crate::model::Host>,
    ) -> Rules {
        let soak = crate::duration::parse_duration(&promotion.soak)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            // Validation refused an unreadable soak; should one get here, nothing soaks.
            .unwrap_or(i64::MAX);
        let mut sources: Vec<String> = hosts
            .filter(|h| promotion.from.matches(h))
            .map(|h| h.name.clone())
            .collect();
        sources.sort();
        Rules {
            baseline: format!("baseline/{name}"),
            noun: noun(&promotion.from),
            soak,
            min_hosts: promotion.min_hosts.max(1),
            sources,
        }
    }

    fn soak_secs(&self) -> u64 {
        u64::try_from(self.soak).unwrap_or(u64::MAX)
    }
}

/// What the source hosts are called in messages: their groups, else their labels.
fn noun(sel: &Selector) -> String {
    if !sel.groups.is_empty() {
        sel.groups.join("/")
    } else if !sel.labels.is_empty() {
        sel.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "source".to_owned()
    }
}

/// What promotion allows for one package on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Install exactly this version.
    Promote {
        /// The version.
        version: String,
        /// Its proof.
        promoted: Promoted,
    },
    /// The newest eligible version is not offered to the host: blocked, with this reason.
    NotOffered(String),
    /// Nothing above the installed version is eligible yet.
    Wait(PromotionWait),
}

/// One source host's record of one version, as of the plan's instant.
struct Record<'a> {
    host: &'a str,
    /// The longest unbroken run, in seconds (up to the instant).
    longest: i64,
    /// The current run's length, when the host still has it installed.
    running: Option<i64>,
}

/// The evidence about one package, gathered over the source hosts that share the host's
/// package manager.
struct Gathered<'a> {
    /// Per version: each source host's record.
    versions: BTreeMap<&'a str, Vec<Record<'a>>>,
    /// Per version: its incidents (host, incident), up to the instant.
    incidents: BTreeMap<&'a str, Vec<(&'a str, &'a Incident)>>,
}

fn gather<'a>(
    rules: &'a Rules,
    evidence: &'a Evidence,
    pm: PackageManager,
    package: &str,
    at: Timestamp,
) -> Gathered<'a> {
    let mut versions: BTreeMap<&str, Vec<Record<'_>>> = BTreeMap::new();
    let mut incidents: BTreeMap<&str, Vec<(&str, &Incident)>> = BTreeMap::new();
    for name in &rules.sources {
        let Some(h) = evidence.hosts.get(name) else {
            continue;
        };
        if h.package_manager != Some(pm) {
            continue;
        }
        for i in &h.incidents {
            if i.package == package && i.at <= at {
                incidents.entry(&i.version).or_default().push((name, i));
            }
        }
        let mut per_version: BTreeMap<&str, Record<'_>> = BTreeMap::new();
        for ran in h.versions.get(package).into_iter().flatten() {
            if ran.since > at {
                continue;
            }
            let still = ran.until.is_none_or(|u| u > at);
            let end = if still { at } else { ran.until.unwrap_or(at) };
            let length = end.as_second() - ran.since.as_second();
            let r = per_version.entry(&ran.version).or_insert(Record {
                host: name,
                longest: 0,
                running: None,
            });
            r.longest = r.longest.max(length);
            if still {
                r.running = Some(length);
            }
        }
        for (v, r) in per_version {
            versions.entry(v).or_default().push(r);
        }
    }
    Gathered {
        versions,
        incidents,
    }
}

fn newer(eco: Ecosystem, a: &str, b: &str) -> bool {
    version::compare(eco, a, b).is_ok_and(|o| o.is_gt())
}

fn secs(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Whether `version` of `package` is eligible for the host at `at` (any eligible version,
/// not only the newest): for a dependency the package manager pulls in.
pub fn is_eligible(
    rules: &Rules,
    evidence: &Evidence,
    pm: PackageManager,
    package: &str,
    version: &str,
    at: Timestamp,
) -> bool {
    let g = gather(rules, evidence, pm, package, at);
    eligible_hosts(rules, &g, version).is_some()
}

/// The hosts proving `version` (and the shortest of their runs), when it is eligible.
fn eligible_hosts<'a>(
    rules: &Rules,
    g: &Gathered<'a>,
    version: &str,
) -> Option<(Vec<&'a str>, i64)> {
    if g.incidents.contains_key(version) {
        return None;
    }
    let soaked: Vec<&Record<'_>> = g
        .versions
        .get(version)
        .into_iter()
        .flatten()
        .filter(|r| r.longest >= rules.soak)
        .collect();
    if soaked.len() < usize::try_from(rules.min_hosts).unwrap_or(usize::MAX) {
        return None;
    }
    let mut hosts: Vec<&str> = soaked.iter().map(|r| r.host).collect();
    hosts.sort_unstable();
    let shortest = soaked.iter().map(|r| r.longest).min().unwrap_or(0);
    Some((hosts, shortest))
}

/// What the host may get of `package`: `installed` is its version now (`None`: not
/// installed), `candidate` what its repositories would install, `min` a minimum the
/// baselines require (the promoted version must meet it).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    rules: &Rules,
    evidence: &Evidence,
    observed: &ObservedHost,
    pm: PackageManager,
    package: &str,
    arch: &str,
    installed: Option<&str>,
    candidate: &str,
    min: Option<&str>,
    at: Timestamp,
) -> Decision {
    let eco = match pm {
        PackageManager::Apt => Ecosystem::Deb,
        PackageManager::Dnf => Ecosystem::Rpm,
    };
    let g = gather(rules, evidence, pm, package, at);
    let above = |v: &str| {
        installed.is_none_or(|have| newer(eco, v, have))
            && min.is_none_or(|m| version::compare(eco, v, m).is_ok_and(|o| o.is_ge()))
    };
    // Newest first.
    let mut seen: Vec<&str> = g.versions.keys().copied().filter(|v| above(v)).collect();
    seen.sort_by(|a, b| version::compare(eco, b, a).unwrap_or_else(|_| b.cmp(a)));
    for v in &seen {
        let Some((hosts, shortest)) = eligible_hosts(rules, &g, v) else {
            continue;
        };
        let promoted = Promoted {
            baseline: rules.baseline.clone(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            soaked_seconds: secs(shortest),
            soak_seconds: rules.soak_secs(),
            instead_of: (*v != candidate).then(|| candidate.to_owned()),
        };
        let offered = observed.offered_versions(package, arch);
        let is_offered =
            *v == candidate || offered.is_some_and(|o| o.versions.iter().any(|x| x.version == *v));
        if is_offered {
            return Decision::Promote {
                version: (*v).to_owned(),
                promoted,
            };
        }
        let proof = format!(
            "{} on {}",
            crate::compliance::human(secs(shortest)),
            hosts.join(", ")
        );
        return Decision::NotOffered(match offered {
            None if newer(eco, candidate, v) => format!(
                "{} promotes {package} {v} ({proof}), but the observation lists only the candidate {candidate}, not whether {v} is still offered: observe the host again with this patchkeeper",
                rules.baseline
            ),
            _ => {
                let list: Vec<String> = offered
                    .map(|o| o.versions.iter().map(|x| x.version.clone()).collect())
                    .unwrap_or_else(|| vec![candidate.to_owned()]);
                format!(
                    "{} promotes {package} {v} ({proof}), but the host's repositories no longer offer it (they offer {})",
                    rules.baseline,
                    list.join(", ")
                )
            }
        });
    }
    // Versions the host could move to that failed on a source host, newest first.
    let mut failed: Vec<&str> = g.incidents.keys().copied().filter(|v| above(v)).collect();
    failed.sort_by(|a, b| version::compare(eco, b, a).unwrap_or_else(|_| b.cmp(a)));
    let blocked = failed
        .into_iter()
        .filter_map(|v| {
            let (host, i) = g.incidents.get(v)?.iter().max_by_key(|(_, i)| i.at)?;
            Some(BlockedVersion {
                version: v.to_owned(),
                host: (*host).to_owned(),
                kind: i.kind,
                at: i.at.to_string(),
                reason: i.reason.clone(),
            })
        })
        .collect();
    Decision::Wait(wait(rules, &g, &seen, blocked, at))
}

/// A version's progress towards eligibility: (eligible at, hosts counted, version, hosts,
/// the deciding host's run in seconds).
type Candidate<'a> = (Option<Timestamp>, usize, &'a str, Vec<&'a str>, i64);

/// The progress of the version closest to eligibility (`seen`: the versions above the
/// installed one the source hosts have had, newest first).
fn wait(
    rules: &Rules,
    g: &Gathered<'_>,
    seen: &[&str],
    blocked: Vec<BlockedVersion>,
    at: Timestamp,
) -> PromotionWait {
    let min = usize::try_from(rules.min_hosts)
        .unwrap_or(usize::MAX)
        .max(1);
    // The best candidate: (eligible at, hosts counted, version, hosts, deciding run).
    let mut best: Option<Candidate<'_>> = None;
    for v in seen {
        if g.incidents.contains_key(v) {
            continue;
        }
        // Hosts that count: those still running it, and those that ran it for the soak;
        // each with its progress and the time it still needs.
        let mut counted: Vec<(&str, i64, i64)> = g
            .versions
            .get(v)
            .into_iter()
            .flatten()
            .filter(|r| r.running.is_some() || r.longest >= rules.soak)
            .map(|r| {
                let progress = if r.longest >= rules.soak {
                    r.longest
                } else {
                    r.running.unwrap_or(0)
                };
                (r.host, progress, (rules.soak - progress).max(0))
            })
            .collect();
        if counted.is_empty() {
            continue;
        }
        counted.sort_by_key(|(_, _, left)| *left);
        let k = counted.len();
        let deciding = counted[k.min(min) - 1];
        let eligible_at = (k >= min)
            .then(|| {
                at.checked_add(jiff::SignedDuration::from_secs(deciding.2))
                    .ok()
            })
            .flatten();
        let mut hosts: Vec<&str> = counted.iter().map(|(h, _, _)| *h).collect();
        hosts.sort_unstable();
        let better = match &best {
            None => true,
            Some((b_at, b_k, _, _, _)) => match (eligible_at, b_at) {
                (Some(a), Some(b)) => a < *b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                // `seen` is newest first: a newer version wins a tie.
                (None, None) => k > *b_k,
            },
        };
        if better {
            best = Some((eligible_at, k, v, hosts, deciding.1));
        }
    }
    match best {
        Some((eligible_at, _, v, hosts, progress)) => PromotionWait {
            baseline: rules.baseline.clone(),
            version: Some(v.to_owned()),
            hosts: hosts.into_iter().map(str::to_owned).collect(),
            min_hosts: rules.min_hosts,
            soaked_seconds: secs(progress),
            soak_seconds: rules.soak_secs(),
            eligible_at: eligible_at.map(|t| t.to_string()),
            blocked,
        },
        None => PromotionWait {
            baseline: rules.baseline.clone(),
            version: None,
            hosts: Vec::new(),
            min_hosts: rules.min_hosts,
            soaked_seconds: 0,
            soak_seconds: rules.soak_secs(),
            eligible_at: None,
            blocked,
        },
    }
}

/// `promoted: 9d on staging-1, staging-2`.
pub fn promoted_label(p: &Promoted) -> String {
    format!(
        "promoted: {} on {}",
        crate::compliance::human(p.soaked_seconds),
        p.hosts.join(", ")
    )
}

/// `waiting for promotion: 1 of 2 staging hosts, 3d of 7d`, with the version when it is not
/// the offered one, and the versions kept out by incidents.
pub fn wait_label(
    w: &PromotionWait,
    rules_noun: &str,
    offered: &str,
    installed: Option<&str>,
) -> String {
    let human = crate::compliance::human;
    let mut out = match &w.version {
        Some(v) => {
            let shown = w
                .hosts
                .len()
                .min(usize::try_from(w.min_hosts).unwrap_or(usize::MAX));
            let of = if v == offered {
                String::new()
            } else {
                format!(" of {v}")
            };
            format!(
                "waiting for promotion{of}: {shown} of {} {rules_noun} host{}, {} of {}",
                w.min_hosts,
                if w.min_hosts == 1 { "" } else { "s" },
                human(w.soaked_seconds),
                human(w.soak_seconds)
            )
        }
        None => format!(
            "waiting for promotion: no {rules_noun} host runs {} yet (needs {} host{} for {})",
            installed.map_or_else(|| "it".to_owned(), |v| format!("a version above {v}")),
            w.min_hosts,
            if w.min_hosts == 1 { "" } else { "s" },
            human(w.soak_seconds)
        ),
    };
    for b in &w.blocked {
        out.push_str(&format!(
            "; {} {} on {} at {}, not promoted until a newer version soaks",
            b.version,
            b.kind.as_str(),
            b.host,
            b.at
        ));
    }
    out
}

/// Updates waiting for promotion across a plan's hosts, one per package, version, reason
/// and advisories closed, with the hosts that wait for it: how the human and markdown plans
/// list them once, however many hosts share them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting<'p> {
    /// Package name.
    pub package: &'p str,
    /// The version offered.
    pub version: &'p str,
    /// Why it waits (`waiting for promotion: 1 of 2 staging hosts, 3d of 7d`).
    pub why: &'p str,
    /// The advisories it would close, as a label (empty: none known).
    pub fixes: String,
    /// The hosts waiting for it, in plan order (sorted by name).
    pub hosts: Vec<&'p str>,
}

/// The plan's updates waiting for promotion, sorted by package, version and reason.
pub fn waiting(plan: &super::Plan) -> Vec<Waiting<'_>> {
    let mut by: BTreeMap<(&str, &str, &str, String), Vec<&str>> = BTreeMap::new();
    for h in &plan.hosts {
        for s in h.skipped.iter().filter(|s| s.promotion.is_some()) {
            by.entry((
                s.package.as_str(),
                s.version.as_str(),
                s.why.as_str(),
                super::fixes_label(&s.fixes),
            ))
            .or_default()
            .push(h.host.as_str());
        }
    }
    by.into_iter()
        .map(|((package, version, why, fixes), hosts)| Waiting {
            package,
            version,
            why,
            fixes,
            hosts,
        })
        .collect()
}

/// Every host some baseline promotes from, sorted: the hosts whose installed versions the
/// reports record, and whose evidence the planner reads.
pub fn sources(fleet: &crate::validate::ValidFleet) -> std::collections::BTreeSet<String> {
    fleet
        .fleet()
        .baselines
        .iter()
        .filter_map(|b| b.doc.spec.promotion.as_ref())
        .flat_map(|p| {
            fleet
                .hosts()
                .filter(|h| p.from.matches(h))
                .map(|h| h.name.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests;
