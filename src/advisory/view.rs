//! Findings as stable JSON (`vulns --json`, `schemas/vulns.schema.json`) and as the
//! per-host advisory list of compliance reports.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::matcher::{Excepted, Finding, FindingState, Offer};
use super::{Severity, Unfixed};

/// One open advisory on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisoryView {
    /// Advisory id.
    pub id: String,
    /// CVE ids it covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// The source package (advisories name sources; for some RPM records a binary).
    pub source: String,
    /// The installed source version compared with the advisory.
    pub installed: String,
    /// Installed packages built from it.
    pub packages: Vec<String>,
    /// The first version with the fix, when one is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// `fix-offered`, `fix-held`, `fix-not-offered` or `no-fix`.
    pub state: FindingState,
    /// For `no-fix`: why (`open`, `undetermined`, `postponed`, `no-dsa`, `will-not-fix`,
    /// `end-of-life`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfixed: Option<Unfixed>,
    /// The pending update that brings the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    /// The plan includes that update.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub planned: bool,
    /// The exception accepting it, while in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Excepted>,
    /// One line about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

impl AdvisoryView {
    /// The view of a finding; `planned` when the plan includes its fix.
    pub fn of(f: &Finding, planned: bool) -> AdvisoryView {
        AdvisoryView {
            id: f.id().to_owned(),
            cves: f.cves(),
            severity: f.severity,
            source: f.source.to_string(),
            installed: f.source_version.to_string(),
            packages: f.packages.iter().map(|p| p.name.to_string()).collect(),
            fixed: f.fixed.as_ref().map(|v| v.to_string()),
            state: f.state,
            unfixed: f.unfixed,
            offer: f.offer.as_deref().cloned(),
            planned,
            exception: f.exception.as_deref().cloned(),
            summary: f.advisory.summary.clone(),
        }
    }

    /// `fix offered (libpk 1.2-1), planned` and the like, for tables.
    pub fn state_text(&self) -> String {
        let mut s = match (self.state, &self.offer, self.unfixed) {
            (FindingState::FixOffered, Some(o), _) => {
                format!("fix offered ({} {})", o.package, o.version)
            }
            (FindingState::FixHeld, Some(o), _) => {
                format!("fix held ({} {})", o.package, o.version)
            }
            (FindingState::FixNotOffered, _, _) => "fix not in the host's repositories".to_owned(),
            (FindingState::NoFix, _, Some(u)) => format!("no fix ({})", u.as_str()),
            (state, _, _) => state.as_str().to_owned(),
        };
        if self.planned {
            s.push_str(", planned");
        }
        if let Some(e) = &self.exception {
            s.push_str(&format!(
                ", excepted by {} ({}) until {}",
                e.name, e.owner, e.expires
            ));
        }
        s
    }

    /// `DSA-5800-1 (CVE-2026-1001)`.
    pub fn label(&self) -> String {
        let others: Vec<&str> = self
            .cves
            .iter()
            .filter(|c| **c != self.id)
            .map(String::as_str)
            .collect();
        if others.is_empty() {
            self.id.clone()
        } else {
            format!("{} ({})", self.id, others.join(", "))
        }
    }
}

/// `patchkeeper vulns --json`: per host the open advisories, then a fleet summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VulnsReport {
    /// The advisory snapshot used (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The instant of the assessment (RFC 3339).
    pub at: String,
    /// The least severity shown.
    pub min_severity: Severity,
    /// Every host, sorted by name.
    pub hosts: Vec<HostVulns>,
    /// Counts over the hosts.
    pub summary: VulnsSummary,
}

/// One host's open advisories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostVulns {
    /// Host name.
    pub host: String,
    /// Its advisory ecosystem (`Debian:12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem: Option<String>,
    /// Why it was not assessed, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_assessed: Option<String>,
    /// Open advisories, most severe first.
    pub advisories: Vec<AdvisoryView>,
}

/// Fleet counts of `vulns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VulnsSummary {
    /// Hosts listed.
    pub hosts: usize,
    /// Hosts with at least one open advisory (exceptions aside).
    pub hosts_affected: usize,
    /// Hosts that could not be assessed.
    pub not_assessed: usize,
    /// Open advisories over all hosts (one per host, advisory and source), exceptions aside.
    pub open: usize,
    /// Open advisories per severity (every level present).
    pub by_severity: std::collections::BTreeMap<Severity, usize>,
    /// Of those: a fix is offered.
    pub fix_offered: usize,
    /// Of those offered: the plan includes the fix.
    pub planned: usize,
    /// A fix is offered but held back.
    pub fix_held: usize,
    /// A fix is released but not offered by the host's repositories.
    pub fix_not_offered: usize,
    /// No fix is released.
    pub no_fix: usize,
    /// Findings accepted by an exception in force (not counted above).
    pub excepted: usize,
}

impl VulnsReport {
    /// Builds the report: findings at least `min` severe, each marked planned when `plan`
    /// (a plan made with the same assessment) changes one of its packages to a fixing
    /// version on a host it will change.
    pub fn build(
        assessment: &super::Assessment,
        plan: Option<&crate::plan::Plan>,
        min: Severity,
        at: jiff::Timestamp,
    ) -> VulnsReport {
        let mut summary = VulnsSummary {
            by_severity: Severity::ALL.iter().map(|s| (*s, 0)).collect(),
            ..VulnsSummary::default()
        };
        let mut hosts = Vec::new();
        for (name, found) in &assessment.hosts {
            let host_plan = plan
                .and_then(|p| p.host(name))
                .filter(|h| h.status.has_changes());
            let planned = |f: &Finding| {
                host_plan.is_some_and(|h| {
                    h.changes
                        .iter()
                        .any(|c| c.fixes.iter().any(|x| x.id == f.id()))
                })
            };
            let advisories: Vec<AdvisoryView> = found
                .findings
                .iter()
                .filter(|f| f.severity >= min)
                .map(|f| AdvisoryView::of(f, planned(f)))
                .collect();
            summary.hosts += 1;
            if found.not_assessed.is_some() {
                summary.not_assessed += 1;
            }
            let mut affected = false;
            for a in &advisories {
                if a.exception.is_some() {
                    summary.excepted += 1;
                    continue;
                }
                affected = true;
                summary.open += 1;
                *summary.by_severity.entry(a.severity).or_default() += 1;
                match a.state {
                    FindingState::FixOffered => {
                        summary.fix_offered += 1;
                        if a.planned {
                            summary.planned += 1;
                        }
                    }
                    FindingState::FixHeld => summary.fix_held += 1,
                    FindingState::FixNotOffered => summary.fix_not_offered += 1,
                    FindingState::NoFix => summary.no_fix += 1,
                }
            }
            if affected {
                summary.hosts_affected += 1;
            }
            hosts.push(HostVulns {
                host: name.clone(),
                ecosystem: found.ecosystem.as_ref().map(|e| e.name.clone()),
                not_assessed: found.not_assessed.clone(),
                advisories,
            });
        }
        VulnsReport {
            snapshot: assessment.snapshot.clone(),
            at: at.to_string(),
            min_severity: min,
            hosts,
            summary,
        }
    }

    /// The JSON Schema of this format (`schemas/vulns.schema.json`).
    pub fn schema_text() -> String {
        crate::schema::schema_text_for::<VulnsReport>("patchkeeper vulns")
    }
}
