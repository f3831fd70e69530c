//! Advisory events of a run: what changed in the hosts' open advisories since their previous
//! reports, as data the API, the dashboard and alerts consume (`runs/<id>.json` `events`).

use std::collections::BTreeSet;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::advisory::Severity;
use crate::compliance::HostCompliance;

/// One advisory event on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisoryEvent {
    /// What happened.
    pub kind: AdvisoryEventKind,
    /// The host.
    pub host: String,
    /// The advisory id.
    pub advisory: String,
    /// Its CVEs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// Its severity.
    pub severity: Severity,
    /// The source package.
    pub source: String,
    /// When it is (or was) due, when a deadline applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub due: Option<Timestamp>,
    /// For a closed advisory: when the host's reports first saw it open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub first_seen: Option<Timestamp>,
    /// For a closed advisory: when the report found it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub closed_at: Option<Timestamp>,
    /// For a closed advisory: seconds from first seen to closed (time to remediation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_seconds: Option<i64>,
}

/// Kinds of [`AdvisoryEvent`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AdvisoryEventKind {
    /// A critical advisory is newly open on the host.
    CriticalOpen,
    /// An advisory passed its due date (first report that finds it overdue).
    Overdue,
    /// A critical advisory open in the previous report is no longer open.
    CriticalClosed,
}

/// The events between a host's previous and new compliance at `now`.
pub fn advisory_events(
    previous: Option<&HostCompliance>,
    current: &HostCompliance,
    now: Timestamp,
) -> Vec<AdvisoryEvent> {
    let key = |id: &str, source: &str| (id.to_owned(), source.to_owned());
    let before: BTreeSet<(String, String)> = previous
        .into_iter()
        .flat_map(|p| &p.advisories)
        .map(|a| key(&a.advisory.id, &a.advisory.source))
        .collect();
    let overdue_before: BTreeSet<(String, String)> = previous
        .into_iter()
        .flat_map(|p| p.advisories.iter().filter(|a| a.overdue(p.evaluated_at)))
        .map(|a| key(&a.advisory.id, &a.advisory.source))
        .collect();
    let now_open: BTreeSet<(String, String)> = current
        .advisories
        .iter()
        .map(|a| key(&a.advisory.id, &a.advisory.source))
        .collect();
    let event = |kind, a: &crate::compliance::OpenAdvisory| AdvisoryEvent {
        kind,
        host: current.host.clone(),
        advisory: a.advisory.id.clone(),
        cves: a.advisory.cves.clone(),
        severity: a.advisory.severity,
        source: a.advisory.source.clone(),
        due: a.due,
        first_seen: None,
        closed_at: None,
        remediation_seconds: None,
    };
    let mut out = Vec::new();
    for a in &current.advisories {
        let k = key(&a.advisory.id, &a.advisory.source);
        if a.advisory.severity == Severity::Critical && !before.contains(&k) {
            out.push(event(AdvisoryEventKind::CriticalOpen, a));
        }
        if a.overdue(now) && !overdue_before.contains(&k) {
            out.push(event(AdvisoryEventKind::Overdue, a));
        }
    }
    for a in previous.into_iter().flat_map(|p| &p.advisories) {
        let k = key(&a.advisory.id, &a.advisory.source);
        if a.advisory.severity == Severity::Critical && !now_open.contains(&k) {
            out.push(AdvisoryEvent {
                first_seen: Some(a.first_seen),
                closed_at: Some(now),
                remediation_seconds: Some(now.duration_since(a.first_seen).as_secs().max(0)),
                ..event(AdvisoryEventKind::CriticalClosed, a)
            });
        }
    }
    out
}
