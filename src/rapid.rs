//! Rapid response (`docs/rapid-response.md`): which findings qualify for a proposed patch
//! request, and what to propose given the requests that already exist — pure. The shell
//! (`reconcile`) writes the proposals with [`crate::request::Intake::propose`].
//!
//! State lives in Git, not in memory, so a restart changes nothing: an advisory is
//! "proposed" while a review branch `patchkeeper/requests/<name>` carries a request for it,
//! "merged" once a request in the desired branch lists it in `advisories:`, and "fixed"
//! once no host has the finding open. A proposal closed without merging is proposed again
//! while the finding stands: declining a fix is recorded as a VulnerabilityException.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::advisory::{Assessment, FindingState, Severity};
use crate::model::{PatchRequestSpec, RapidResponseSettings, ResponseMode};
use crate::policy::{Check, Policy};
use crate::validate::ValidFleet;
use crate::version::Ecosystem;
use crate::view::SubmittedRequest;

/// Who proposals are requested by (`spec.requestedBy`).
pub const REQUESTED_BY: &str = "patchkeeper";

/// One advisory whose findings qualify, with the hosts and what fixes it on each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualifying {
    /// The advisory id.
    pub advisory: String,
    /// CVEs it covers.
    pub cves: Vec<String>,
    /// Its severity (the worst over the hosts' findings).
    pub severity: Severity,
    /// Its one-line summary.
    pub summary: String,
    /// The source package(s) named.
    pub sources: BTreeSet<String>,
    /// Host name → packages and their fixed versions (installed binaries of the source).
    pub hosts: BTreeMap<String, BTreeSet<(String, String)>>,
    /// The version ordering of its hosts' ecosystem (Debian or RPM family).
    pub ordering: Option<Ecosystem>,
    /// The request's name: [`request_name`] of the advisory, with the family appended
    /// (`-deb`, `-rpm`) when the advisory's hosts span both — one request per family, since
    /// a request's versions are one ordering's.
    pub name: String,
}

impl Qualifying {
    /// Whether the advisory's hosts span both families (this is one family's part).
    fn is_part(&self) -> bool {
        self.name != request_name(&self.advisory)
    }
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// A new request on a new branch.
    New {
        /// The request's name (and branch suffix).
        name: String,
        /// The advisory.
        advisory: String,
        /// The PatchRequest document.
        document: Value,
    },
    /// Hosts that gained the finding, added to an open proposal by a new commit.
    AddHosts {
        /// The request's name.
        name: String,
        /// The advisory.
        advisory: String,
        /// The branch tip the commit goes on.
        tip: String,
        /// The hosts added.
        added: Vec<String>,
        /// The updated document.
        document: Value,
    },
}

impl Proposal {
    /// The request's name.
    pub fn name(&self) -> &str {
        match self {
            Proposal::New { name, .. } | Proposal::AddHosts { name, .. } => name,
        }
    }

    /// The document to commit.
    pub fn document(&self) -> &Value {
        match self {
            Proposal::New { document, .. } | Proposal::AddHosts { document, .. } => document,
        }
    }
}

/// The request name of an advisory: its id lowercased, other characters than letters,
/// digits, `.`, `_` and `-` made `-` (`ALSA-2026:1234` → `alsa-2026-1234`).
pub fn request_name(advisory: &str) -> String {
    let mut s: String = advisory
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let s = s.strip_suffix(".lock").unwrap_or(s);
    s.chars().take(200).collect()
}

/// The advisories whose findings qualify under `settings`: at or above the least
/// severity, fix offered by the host's repositories (not held, not merely released), no
/// exception in force. Sorted by advisory id.
pub fn qualifying(
    fleet: &ValidFleet,
    assessment: &Assessment,
    settings: &RapidResponseSettings,
) -> Vec<Qualifying> {
    if settings.mode == ResponseMode::Off {
        return Vec::new();
    }
    let min = Severity::from_word(settings.min_severity().as_str()).unwrap_or(Severity::Critical);
    let mut by_key: BTreeMap<(String, Option<Ecosystem>), Qualifying> = BTreeMap::new();
    for (host, findings) in &assessment.hosts {
        if fleet.host(host).is_none() {
            continue;
        }
        let ordering = findings.ecosystem.as_ref().map(|e| e.ordering);
        for f in &findings.findings {
            if f.severity < min || f.state != FindingState::FixOffered || f.exception.is_some() {
                continue;
            }
            let Some(fixed) = f.fixed.as_deref() else {
                continue;
            };
            let q = by_key
                .entry((f.advisory.id.clone(), ordering))
                .or_insert_with(|| Qualifying {
                    advisory: f.advisory.id.clone(),
                    cves: Vec::new(),
                    severity: f.severity,
                    summary: f.advisory.summary.clone(),
                    sources: BTreeSet::new(),
                    hosts: BTreeMap::new(),
                    ordering,
                    name: request_name(&f.advisory.id),
                });
            q.severity = q.severity.max(f.severity);
            for c in f.advisory.cves.iter().chain(&f.merged_cves) {
                if !q.cves.contains(c) && *c != q.advisory {
                    q.cves.push(c.clone());
                }
            }
            q.sources.insert(f.source.to_string());
            let packages = q.hosts.entry(host.clone()).or_default();
            for p in &f.packages {
                packages.insert((p.name.to_string(), fixed.to_owned()));
            }
        }
    }
    let mut parts: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in by_key.keys() {
        *parts.entry(id.clone()).or_default() += 1;
    }
    let mut out: Vec<Qualifying> = by_key.into_values().collect();
    for q in &mut out {
        q.cves.sort();
        if parts.get(&q.advisory).copied().unwrap_or(0) > 1 && !q.name.is_empty() {
            let suffix = q.ordering.map_or("other", Ecosystem::as_str);
            // Room for the suffix within request_name's 200 characters.
            let base: String = q.name.chars().take(200 - suffix.len() - 1).collect();
            q.name = format!("{base}-{suffix}");
        }
    }
    out
}

/// The deadline a proposal gets: `now` plus the `advisory-deadline` rule's `maxAge` for
/// the severity (none when the policy has no such rule).
pub fn deadline(policy: &Policy, severity: Severity, now: Timestamp) -> Option<Timestamp> {
    policy.rules.iter().find_map(|r| match r.check {
        Check::AdvisoryDeadline {
            severity: s,
            max_age,
        } if s == severity => jiff::SignedDuration::try_from(max_age)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            // Whole seconds: the request is read by people.
            .and_then(|t| t.round(jiff::Unit::Second).ok()),
        _ => None,
    })
}

/// Requests that already exist: the desired branch's and the review branches'.
#[derive(Debug, Clone, Copy)]
pub struct Existing<'a> {
    /// Requests in the desired branch: (name, spec).
    pub merged: &'a [(String, PatchRequestSpec)],
    /// Requests on review branches.
    pub open: &'a [SubmittedRequest],
}

/// What to propose for `qualifying` advisories, given the requests that exist: one new
/// request per advisory no request covers; hosts that gained the finding added to the
/// advisory's open proposal; nothing for an advisory a merged request lists.
pub fn decide(
    qualifying: &[Qualifying],
    existing: Existing<'_>,
    settings: &RapidResponseSettings,
    policy: &Policy,
    now: Timestamp,
) -> Vec<Proposal> {
    let mut out = Vec::new();
    for q in qualifying {
        // A request listing the advisory covers it — for one family's part, only
        // when it is that part's request or selects some of its hosts by name.
        let covers = |name: &str, s: &PatchRequestSpec| {
            s.advisories
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&q.advisory))
                && (!q.is_part()
                    || name == q.name
                    || s.selector.hosts.iter().any(|h| q.hosts.contains_key(h)))
        };
        if existing.merged.iter().any(|(n, s)| covers(n, s)) {
            continue;
        }
        let name = q.name.clone();
        if name.is_empty() {
            continue;
        }
        let open = existing
            .open
            .iter()
            .find(|r| r.name == name || covers(&r.name, &r.spec));
        match open {
            None => out.push(Proposal::New {
                name: name.clone(),
                advisory: q.advisory.clone(),
                document: document(&name, q, &q.hosts, settings, policy, now, None),
            }),
            Some(r) => {
                let had: BTreeSet<&str> =
                    r.spec.selector.hosts.iter().map(String::as_str).collect();
                let added: Vec<String> = q
                    .hosts
                    .keys()
                    .filter(|h| !had.contains(h.as_str()))
                    .cloned()
                    .collect();
                // Only our own proposals are amended; a person's request is theirs.
                let ours = r.spec.requested_by.as_deref() == Some(REQUESTED_BY);
                if added.is_empty() || !ours || r.name != name {
                    continue;
                }
                let mut hosts = q.hosts.clone();
                for h in had {
                    hosts.entry(h.to_owned()).or_default();
                }
                let mut packages: BTreeSet<(String, String)> = r
                    .spec
                    .packages
                    .iter()
                    .filter_map(|p| Some((p.name.clone(), p.min_version.clone()?)))
                    .collect();
                packages.extend(q.hosts.values().flatten().cloned());
                let keep = Kept {
                    deadline: r.spec.deadline.clone(),
                    window: r.spec.window.clone(),
                    packages,
                };
                out.push(Proposal::AddHosts {
                    name: name.clone(),
                    advisory: q.advisory.clone(),
                    tip: r.commit.clone(),
                    added,
                    document: document(&name, q, &hosts, settings, policy, now, Some(keep)),
                });
            }
        }
    }
    out
}

/// What an amended proposal keeps from its first commit.
struct Kept {
    deadline: Option<String>,
    window: Option<String>,
    packages: BTreeSet<(String, String)>,
}

fn document(
    name: &str,
    q: &Qualifying,
    hosts: &BTreeMap<String, BTreeSet<(String, String)>>,
    settings: &RapidResponseSettings,
    policy: &Policy,
    now: Timestamp,
    kept: Option<Kept>,
) -> Value {
    let mut packages: BTreeSet<(String, String)> = hosts.values().flatten().cloned().collect();
    let (deadline, window) = match kept {
        Some(k) => {
            packages.extend(k.packages);
            (k.deadline, k.window)
        }
        None => (
            deadline(policy, q.severity, now).map(|d| d.to_string()),
            settings.window.clone(),
        ),
    };
    // One minimum per package: the highest wins (a package may be listed with the fixed
    // version of its first commit and again now; they agree, a fix does not move back).
    let mut per_package: BTreeMap<String, String> = BTreeMap::new();
    for (p, v) in packages {
        per_package.insert(p, v);
    }
    let mut ids = vec![q.advisory.clone()];
    ids.extend(q.cves.iter().cloned());
    let sources: Vec<&str> = q.sources.iter().map(String::as_str).collect();
    let mut reason = format!(
        "{} {} in {}",
        q.severity.as_str(),
        q.advisory,
        sources.join(", ")
    );
    if !q.summary.is_empty() {
        reason.push_str(": ");
        reason.push_str(q.summary.lines().next().unwrap_or(""));
    }
    reason.push_str(" (rapid response)");
    let mut spec = json!({
        "selector": {"hosts": hosts.keys().collect::<Vec<_>>()},
        "packages": per_package
            .iter()
            .map(|(n, v)| json!({"name": n, "minVersion": v}))
            .collect::<Vec<_>>(),
        "reason": reason,
        "requestedBy": REQUESTED_BY,
        "advisories": ids,
    });
    if let Some(d) = deadline {
        spec["deadline"] = Value::String(d);
    }
    if let Some(w) = window {
        spec["window"] = Value::String(w);
    }
    json!({
        "apiVersion": crate::model::API_VERSION,
        "kind": "PatchRequest",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests;

/// The plan of the fleet with a proposal added, as `plan --format markdown` renders it
/// (offline: without dry runs on the hosts, which the loop makes once it is merged).
pub fn plan_text(
    fleet: &ValidFleet,
    observed: &crate::observed::ObservedFleet,
    assessment: &Assessment,
    first_seen: &crate::plan::FirstSeen,
    now: Timestamp,
) -> String {
    let evidence = Default::default();
    let plan = crate::plan::plan(crate::plan::PlanInput {
        fleet,
        fleet_commit: None,
        observed,
        at: now,
        first_seen,
        simulations: None,
        promotion: &evidence,
        advisories: Some(assessment),
    });
    crate::plan::render_markdown(&plan)
}
