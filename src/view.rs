//! The fleet as the API shows it: inventory hosts joined with what was last observed, the
//! compliance on the reports branch and the current plan, built once per change of any of
//! them (by the reconcile loop, never per request), plus the state of every patch request.
//!
//! Pure: it reads values and builds values. Knows nothing of HTTP, Git or SSH. The JSON
//! shapes here are the API's (`/api/v1`); their schemas go into the OpenAPI document.
//!
//! Open advisories come from each host's last report, where the reconcile loop recorded them
//! with their deadlines (first-seen and fix-offered times need the report history; an
//! `--api-only` replica has nothing else), so the view and `patchkeeper report` agree.
//!
//! Extension point: per-host data from other sources joins in [`ViewInputs`] and appears as
//! a new optional field of [`HostSummary`] / [`HostDetail`].

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::advisory::{FindingState, Severity};
use crate::compliance::{ComplianceState, OpenAdvisory};
use crate::model::{PackageManager, PackageRequirement, PatchRequestSpec, Selector};
use crate::observed::{ObservedFleet, ObservedHost};
use crate::plan::{self, HostPlan, Plan};
use crate::report::{HostReport, Snapshot};
use crate::validate::ValidFleet;

/// A patch request on a review branch, not (yet) in the desired commit.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedRequest {
    /// `metadata.name`.
    pub name: String,
    /// The review branch.
    pub branch: String,
    /// The branch's tip.
    pub commit: String,
    /// The request as committed.
    pub spec: PatchRequestSpec,
    /// The token that filed it (`Requested-By:`), when the API did.
    pub requested_by: Option<String>,
}

/// What a view is built from.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewInputs<'a> {
    /// The desired state in force.
    pub fleet: Option<&'a ValidFleet>,
    /// Its commit.
    pub commit: Option<&'a str>,
    /// The last observation.
    pub observed: Option<&'a ObservedFleet>,
    /// The reports branch's tip.
    pub reports: Option<&'a Snapshot>,
    /// The current plan.
    pub plan: Option<&'a Plan>,
    /// Patch requests on review branches.
    pub submitted: &'a [SubmittedRequest],
}

/// One host in a list.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostSummary {
    /// Inventory name.
    pub name: String,
    /// Address connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Inventory groups.
    pub groups: Vec<String>,
    /// Inventory labels.
    pub labels: BTreeMap<String, String>,
    /// Package manager (observed, else declared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// Compliance from the reports branch (`null`: never reported).
    pub state: Option<ComplianceState>,
    /// Whether the last observation reached the host (`null`: not observed yet).
    pub reachable: Option<bool>,
    /// Pending updates (last observation, else the last report).
    pub pending_updates: usize,
    /// Of which from security origins.
    pub security_updates: usize,
    /// Whether the host needs a reboot.
    pub reboot_required: bool,
    /// What the current plan does with it (`null`: no plan yet).
    pub plan_status: Option<plan::HostStatus>,
    /// Package changes the current plan has for it.
    pub planned_changes: usize,
    /// Policy rules it breaks.
    pub broken_rules: Vec<String>,
    /// When it was last observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub observed_at: Option<Timestamp>,
    /// The run that last reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// Open advisories in its last report, exceptions in force aside.
    pub open_advisories: usize,
    /// The most severe of those (`null`: none open).
    pub advisory_severity: Option<Severity>,
}

/// One open advisory on a host, as its last report recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostAdvisory {
    /// Advisory id (`DSA-5800-1`, `CVE-2026-1001`, an OSV id).
    pub id: String,
    /// CVE ids it covers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// The affected package as the advisory names it (a source package; for some RPM
    /// records a binary).
    pub package: String,
    /// Installed packages built from it.
    pub packages: Vec<String>,
    /// The installed version compared with the advisory.
    pub installed: String,
    /// The first version with the fix (`null`: no fix released).
    pub fixed: Option<String>,
    /// `fix-offered`, `fix-held`, `fix-not-offered` or `no-fix`.
    pub state: FindingState,
    /// When it must be fixed: the fix's first offer plus the policy's advisory deadline for
    /// its severity (`null`: no fix offered yet, or no deadline for the severity).
    #[schemars(with = "Option<String>")]
    pub deadline: Option<Timestamp>,
    /// When a report first saw it open on the host.
    #[schemars(with = "String")]
    pub first_seen: Timestamp,
    /// The `VulnerabilityException` accepting it (`null`: none in force when reported);
    /// excepted advisories are not counted as open.
    pub exception: Option<String>,
}

impl HostAdvisory {
    fn of(a: &OpenAdvisory) -> HostAdvisory {
        let v = &a.advisory;
        HostAdvisory {
            id: v.id.clone(),
            cves: v.cves.clone(),
            severity: v.severity,
            package: v.source.clone(),
            packages: v.packages.clone(),
            installed: v.installed.clone(),
            fixed: v.fixed.clone(),
            state: v.state,
            deadline: a.due,
            first_seen: a.first_seen,
            exception: v.exception.as_ref().map(|e| e.name.clone()),
        }
    }
}

/// One host in full: its summary, observed state, compliance report and pending changes.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostDetail {
    /// The list entry.
    #[serde(flatten)]
    pub summary: HostSummary,
    /// The last observation of the host (`null`: not observed by this server yet).
    pub observed: Option<ObservedHost>,
    /// Its report on the reports branch (`null`: never reported).
    pub compliance: Option<HostReport>,
    /// Its part of the current plan: the pending changes (`null`: no plan yet).
    pub plan: Option<HostPlan>,
    /// Its open advisories (most severe first) from its last report, with their deadlines.
    pub advisories: Vec<HostAdvisory>,
    /// The advisory snapshot they were matched against (`null`: no advisory data used).
    pub advisory_snapshot: Option<String>,
}

impl HostDetail {
    /// The host in full, from its list entry and the sources the view was built from.
    pub fn new(
        summary: HostSummary,
        observed: Option<ObservedHost>,
        compliance: Option<HostReport>,
        plan: Option<HostPlan>,
    ) -> HostDetail {
        let advisories = compliance
            .as_ref()
            .map(|r| {
                r.compliance
                    .advisories
                    .iter()
                    .map(HostAdvisory::of)
                    .collect()
            })
            .unwrap_or_default();
        let advisory_snapshot = compliance
            .as_ref()
            .and_then(|r| r.compliance.advisory_snapshot.clone());
        HostDetail {
            summary,
            observed,
            compliance,
            plan,
            advisories,
            advisory_snapshot,
        }
    }
}

/// Counts over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetCounts {
    /// Inventory hosts.
    pub hosts: usize,
    /// Hosts per compliance state (every state, zeros included; `unknown`: never reported).
    pub states: BTreeMap<String, usize>,
    /// Pending updates over all hosts.
    pub pending_updates: usize,
    /// Of which from security origins.
    pub security_updates: usize,
    /// Hosts needing a reboot.
    pub reboot_required: usize,
    /// Open advisories over all hosts (one per host, advisory and package), exceptions in
    /// force aside, from the hosts' last reports.
    pub open_advisories: usize,
    /// Hosts with at least one open critical advisory.
    pub hosts_with_critical_advisories: usize,
    /// Hosts with at least one open high advisory.
    pub hosts_with_high_advisories: usize,
    /// The current plan's counts (`null`: no plan yet).
    pub plan: Option<plan::Summary>,
    /// The reports branch's tip commit.
    pub reports_commit: Option<String>,
    /// When the last observation was taken.
    pub observed_at: Option<String>,
}

/// Where a patch request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestState {
    /// On its review branch, not in the desired commit yet.
    Submitted,
    /// In the desired commit; no matched host has the fix yet (or none was evaluated
    /// against this commit yet).
    Merged,
    /// Some of its hosts have the fix.
    Applied,
    /// Every host it matches has the fix.
    Compliant,
}

/// A patch request and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// `metadata.name`.
    pub name: String,
    /// Where it stands.
    pub state: RequestState,
    /// Its review branch (submitted requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit holding it: the review branch's tip, or the desired commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Why.
    pub reason: String,
    /// Which hosts.
    pub selector: Selector,
    /// Packages and minimum versions.
    pub packages: Vec<PackageRequirement>,
    /// Advisory ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
    /// When the fix must be in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Who asked (`spec.requestedBy`, else the API token that filed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Inventory hosts it matches (in the desired commit).
    pub hosts: usize,
    /// Of those, hosts whose report against the desired commit shows the fix in place.
    pub applied: usize,
    /// Matched hosts without the fix yet, by name (at most 100).
    pub remaining: Vec<String>,
}

/// The fleet as the API serves it.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// Every inventory host, sorted by name.
    pub hosts: Vec<HostSummary>,
    index: HashMap<String, usize>,
    /// Each host's summary as JSON, made on first use and then shared by every request
    /// until the view is replaced: serializing and cloning a page of summaries per request
    /// was most of the host list's CPU, the API's busiest route (`None`: it did not
    /// serialize).
    json: Vec<OnceLock<Option<Box<RawValue>>>>,
    /// Counts.
    pub counts: FleetCounts,
    /// Every patch request: submitted ones first, then the desired commit's, by name.
    pub requests: Vec<RequestStatus>,
}

impl FleetView {
    /// Builds the view. Hosts come from the fleet's inventory; without a fleet (nothing
    /// validated yet) there are none.
    pub fn build(inputs: ViewInputs<'_>) -> FleetView {
        let reports: HashMap<&str, &HostReport> = inputs
            .reports
            .map(|s| {
                s.hosts
                    .iter()
                    .map(|h| (h.compliance.host.as_str(), h))
                    .collect()
            })
            .unwrap_or_default();
        let mut hosts = Vec::new();
        if let Some(fleet) = inputs.fleet {
            for h in fleet.hosts() {
                let observed = inputs.observed.and_then(|o| o.host(&h.name));
                let report = reports.get(h.name.as_str()).copied();
                let planned = inputs.plan.and_then(|p| p.host(&h.name));
                hosts.push(summary(h, observed, report, planned));
            }
        }
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        let mut states: BTreeMap<String, usize> = ComplianceState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        states.insert("unknown".into(), 0);
        for h in &hosts {
            let key = h.state.map_or("unknown", ComplianceState::as_str);
            *states.entry(key.to_owned()).or_default() += 1;
        }
        let counts = FleetCounts {
            hosts: hosts.len(),
            states,
            pending_updates: hosts.iter().map(|h| h.pending_updates).sum(),
            security_updates: hosts.iter().map(|h| h.security_updates).sum(),
            reboot_required: hosts.iter().filter(|h| h.reboot_required).count(),
            open_advisories: hosts.iter().map(|h| h.open_advisories).sum(),
            hosts_with_critical_advisories: count_with(&reports, &hosts, Severity::Critical),
            hosts_with_high_advisories: count_with(&reports, &hosts, Severity::High),
            plan: inputs.plan.map(|p| p.summary.clone()),
            reports_commit: inputs.reports.map(|s| s.commit.clone()),
            observed_at: inputs.observed.map(|o| o.observed_at.clone()),
        };
        let requests = requests(&inputs, &reports);
        FleetView {
            json: std::iter::repeat_with(OnceLock::new)
                .take(hosts.len())
                .collect(),
            hosts,
            index,
            counts,
            requests,
        }
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostSummary> {
        self.index.get(name).map(|i| &self.hosts[*i])
    }

    /// The summary of `hosts[i]` as JSON (`None`: no such host, or it did not serialize).
    pub fn host_json(&self, i: usize) -> Option<&RawValue> {
        let host = self.hosts.get(i)?;
        self.json
            .get(i)?
            .get_or_init(|| serde_json::value::to_raw_value(host).ok())
            .as_deref()
    }

    /// The patch request named `name`.
    pub fn request(&self, name: &str) -> Option<&RequestStatus> {
        self.requests.iter().find(|r| r.name == name)
    }
}

/// Open advisories of a report: those no exception in force accepted when it was made.
fn open(report: &HostReport) -> impl Iterator<Item = &OpenAdvisory> {
    report
        .compliance
        .advisories
        .iter()
        .filter(|a| a.advisory.exception.is_none())
}

/// Inventory hosts whose last report has an open advisory of `severity`.
fn count_with(
    reports: &HashMap<&str, &HostReport>,
    hosts: &[HostSummary],
    severity: Severity,
) -> usize {
    hosts
        .iter()
        .filter_map(|h| reports.get(h.name.as_str()))
        .filter(|r| open(r).any(|a| a.advisory.severity == severity))
        .count()
}

fn summary(
    h: &crate::model::Host,
    observed: Option<&ObservedHost>,
    report: Option<&HostReport>,
    planned: Option<&HostPlan>,
) -> HostSummary {
    let (pending, security, reboot) = match (observed, report) {
        (Some(o), _) if o.status.is_reachable() => (
            o.updates.len(),
            o.updates.iter().filter(|u| u.security).count(),
            o.reboot_required.required,
        ),
        (_, Some(r)) => {
            let c = &r.compliance;
            let all = || c.outstanding.iter().chain(&c.deferred);
            (
                all().count(),
                all().filter(|u| u.security).count(),
                c.reboot_required_since.is_some(),
            )
        }
        _ => (0, 0, false),
    };
    HostSummary {
        name: h.name.clone(),
        address: h.address.clone(),
        groups: h.groups.clone(),
        labels: h.labels.clone(),
        package_manager: observed
            .and_then(|o| o.package_manager)
            .or(h.package_manager),
        state: report.map(|r| r.compliance.state),
        reachable: observed.map(|o| o.status.is_reachable()),
        pending_updates: pending,
        security_updates: security,
        reboot_required: reboot,
        plan_status: planned.map(|p| p.status),
        planned_changes: planned.map_or(0, |p| p.changes.len()),
        broken_rules: report
            .map(|r| r.compliance.broken_rules.clone())
            .unwrap_or_default(),
        observed_at: report.and_then(|r| r.compliance.observed_at),
        last_run_id: report.map(|r| r.run_id.clone()),
        open_advisories: report.map_or(0, |r| open(r).count()),
        advisory_severity: report.and_then(|r| open(r).map(|a| a.advisory.severity).max()),
    }
}

fn requests(inputs: &ViewInputs<'_>, reports: &HashMap<&str, &HostReport>) -> Vec<RequestStatus> {
    let mut out = Vec::new();
    let merged: Vec<&str> = inputs
        .fleet
        .map(|f| f.fleet().requests.iter().map(|r| r.name()).collect())
        .unwrap_or_default();
    let mut submitted: Vec<&SubmittedRequest> = inputs
        .submitted
        .iter()
        .filter(|s| !merged.contains(&s.name.as_str()))
        .collect();
    submitted.sort_by(|a, b| a.name.cmp(&b.name));
    for s in submitted {
        let hosts = inputs.fleet.map_or(0, |f| {
            f.hosts().filter(|h| s.spec.selector.matches(h)).count()
        });
        out.push(RequestStatus {
            name: s.name.clone(),
            state: RequestState::Submitted,
            branch: Some(s.branch.clone()),
            commit: Some(s.commit.clone()),
            reason: s.spec.reason.clone(),
            selector: s.spec.selector.clone(),
            packages: s.spec.packages.clone(),
            advisories: s.spec.advisories.clone(),
            deadline: s.spec.deadline.clone(),
            requested_by: s.spec.requested_by.clone().or(s.requested_by.clone()),
            hosts,
            applied: 0,
            remaining: Vec::new(),
        });
    }
    let Some(fleet) = inputs.fleet else {
        return out;
    };
    let mut merged: Vec<_> = fleet.fleet().requests.iter().collect();
    merged.sort_by(|a, b| a.name().cmp(b.name()));
    for r in merged {
        let source = format!("request {}", r.name());
        let spec = r.spec();
        let mut matched = 0;
        let mut applied = 0;
        let mut remaining = Vec::new();
        for h in fleet.hosts().filter(|h| spec.selector.matches(h)) {
            matched += 1;
            // Only an evaluation against this very commit knows about this request.
            let fixed = reports.get(h.name.as_str()).is_some_and(|rep| {
                Some(rep.desired_commit.as_str()) == inputs.commit
                    && rep.compliance.observed_at.is_some()
                    && rep.compliance.state != ComplianceState::Unreachable
                    && !rep.compliance.missing.iter().any(|m| m.source == source)
            });
            if fixed {
                applied += 1;
            } else if remaining.len() < 100 {
                remaining.push(h.name.clone());
            }
        }
        let state = if matched > 0 && applied == matched {
            RequestState::Compliant
        } else if applied > 0 {
            RequestState::Applied
        } else {
            RequestState::Merged
        };
        out.push(RequestStatus {
            name: r.name().to_owned(),
            state,
            branch: None,
            commit: inputs.commit.map(str::to_owned),
            reason: spec.reason.clone(),
            selector: spec.selector.clone(),
            packages: spec.packages.clone(),
            advisories: spec.advisories.clone(),
            deadline: spec.deadline.clone(),
            requested_by: spec.requested_by.clone(),
            hosts: matched,
            applied,
            remaining,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{HostCompliance, MissingPackage};
    use crate::observed::{HostStatus, PendingUpdate};

    const FLEET: &str = "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - {name: web-2, groups: [web], labels: {env: prod}}\n    - {name: web-1, groups: [web]}\n    - {name: db-1}\n---\napiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata: {name: cve-1}\nspec:\n  selector: {groups: [web]}\n  packages: [{name: openssl, minVersion: '3.0.15'}]\n  reason: CVE-1\n";

    fn fleet() -> ValidFleet {
        let mut f = crate::fleet::Fleet::default();
        let mut diags = Vec::new();
        crate::fleet::add_file(
            &mut f,
            &mut diags,
            std::path::Path::new("fleet.yaml"),
            FLEET,
        );
        let outcome = crate::validate::validate_fleet(f, diags);
        outcome
            .fleet
            .unwrap_or_else(|| panic!("{:?}", outcome.diagnostics))
    }

    fn report(host: &str, commit: &str, missing_request: bool) -> HostReport {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
        HostReport {
            desired_commit: commit.into(),
            run_id: "run-1".into(),
            compliance: HostCompliance {
                host: host.into(),
                state: if missing_request {
                    ComplianceState::NonCompliant
                } else {
                    ComplianceState::Compliant
                },
                reasons: vec![],
                baselines: vec![],
                missing: if missing_request {
                    vec![MissingPackage {
                        package: "openssl".into(),
                        installed: Some("3.0.14".into()),
                        required: Some("3.0.15".into()),
                        source: "request cve-1".into(),
                        deadline: None,
                    }]
                } else {
                    vec![]
                },
                outstanding: vec![],
                deferred: vec![],
                reboot_required_since: None,
                broken_rules: vec![],
                last_run: None,
                observed_at: Some(now),
                evaluated_at: now,
                advisories: vec![],
                advisory_snapshot: None,
            },
            incidents: vec![],
            installed_digest: None,
        }
    }

    fn snapshot(hosts: Vec<HostReport>) -> Snapshot {
        Snapshot {
            commit: "r1".into(),
            summary: None,
            hosts,
            runs: vec![],
            rejected: None,
        }
    }

    #[test]
    fn hosts_join_inventory_observation_and_reports() {
        let fleet = fleet();
        let mut web1 = ObservedHost::new("web-1", HostStatus::Reachable);
        let update = |name: &str, security: bool| PendingUpdate {
            name: name.into(),
            arch: "amd64".into(),
            installed_version: None,
            candidate_version: "2".into(),
            origin: "o".into(),
            security,
            advisories: vec![],
        };
        web1.updates = vec![update("openssl", true), update("curl", false)];
        let observed = ObservedFleet::new("2026-12-01T00:00:00Z".into(), vec![web1]);
        let reports = snapshot(vec![report("web-1", "c1", true)]);
        let view = FleetView::build(ViewInputs {
            fleet: Some(&fleet),
            commit: Some("c1"),
            observed: Some(&observed),
            reports: Some(&reports),
            ..ViewInputs::default()
        });
        let names: Vec<&str> = view.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["db-1", "web-1", "web-2"]);
        let web1 = view.host("web-1").expect("web-1");
        assert_eq!(web1.state, Some(ComplianceState::NonCompliant));
        assert_eq!((web1.pending_updates, web1.security_updates), (2, 1));
        assert_eq!(web1.reachable, Some(true));
        let db1 = view.host("db-1").expect("db-1");
        assert_eq!((db1.state, db1.reachable), (None, None));
        assert_eq!(view.counts.states["unknown"], 2);
        assert_eq!(view.counts.states["non-compliant"], 1);
        assert_eq!(view.counts.security_updates, 1);
        // The JSON each host is listed with is its summary's, for every host, and stays
        // the same bytes on a second read (made once per view).
        for (i, h) in view.hosts.iter().enumerate() {
            let json = view.host_json(i).expect("serializes").get();
            let parsed: serde_json::Value = serde_json::from_str(json).expect("json");
            assert_eq!(parsed, serde_json::to_value(h).expect("summary"));
            assert!(std::ptr::eq(json, view.host_json(i).expect("again").get()));
        }
        assert!(view.host_json(view.hosts.len()).is_none());
    }

    #[test]
    fn request_progress_counts_only_reports_of_the_desired_commit() {
        let fleet = fleet();
        let submitted = [SubmittedRequest {
            name: "cve-2".into(),
            branch: "patchkeeper/requests/cve-2".into(),
            commit: "b1".into(),
            spec: serde_json::from_str(
                r#"{"selector":{"hosts":["db-1"]},"packages":[{"name":"x"}],"reason":"r"}"#,
            )
            .expect("spec"),
            requested_by: Some("ci".into()),
        }];
        let state = |reports: Vec<HostReport>| {
            let reports = snapshot(reports);
            let view = FleetView::build(ViewInputs {
                fleet: Some(&fleet),
                commit: Some("c2"),
                reports: Some(&reports),
                submitted: &submitted,
                ..ViewInputs::default()
            });
            let r = view.request("cve-1").expect("merged request").clone();
            let s = view.request("cve-2").expect("submitted request").clone();
            assert_eq!(s.state, RequestState::Submitted);
            assert_eq!((s.hosts, s.requested_by.as_deref()), (1, Some("ci")));
            (r.state, r.applied, r.hosts, r.remaining)
        };
        // Reports of an older commit do not know the request yet.
        assert_eq!(
            state(vec![
                report("web-1", "c1", false),
                report("web-2", "c1", false)
            ]),
            (
                RequestState::Merged,
                0,
                2,
                vec!["web-1".to_string(), "web-2".to_string()]
            )
        );
        assert_eq!(
            state(vec![
                report("web-1", "c2", false),
                report("web-2", "c2", true)
            ]),
            (RequestState::Applied, 1, 2, vec!["web-2".to_string()])
        );
        assert_eq!(
            state(vec![
                report("web-1", "c2", false),
                report("web-2", "c2", false)
            ]),
            (RequestState::Compliant, 2, 2, vec![])
        );
    }
}
