//! Alerts: which conditions hold now, from what the reconcile loop published (pure); what
//! opened or cleared since the last evaluation (pure); the bodies and signatures webhooks
//! get (pure) — then `outbox` persists transitions and deliveries in SQLite, and
//! `notifier` (the shell) evaluates, enqueues and delivers at least once with backoff.
//!
//! Alerts are level-triggered: a condition (a host unreachable, a critical advisory open on
//! a host, ...) alerts once when it starts holding and once more ("resolved") when it
//! stops, never every round while it stands. The set of standing conditions is persisted
//! with the outbox, so a restart neither repeats nor loses one.

pub mod notifier;
pub mod outbox;

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::advisory::Severity;
use crate::compliance::ComplianceState;
use crate::model::{AlertEvent, AlertSeverity, Webhook, WebhookFormat};
use crate::report::Snapshot;
use crate::view::HostSummary;

/// A condition that holds, as persisted while it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Unique per condition: `host-unreachable/web-1`, `vulnerability-opened/web-1/CVE-…`.
    pub key: String,
    /// What kind of condition.
    pub event: AlertEvent,
    /// The vulnerability's severity (vulnerability conditions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The host concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// One line for people.
    pub summary: String,
}

/// A standing condition: when it opened and its alert id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// The condition.
    pub condition: Condition,
    /// When it was first seen holding.
    pub opened_at: Timestamp,
    /// The alert id: the same in the firing and the resolved notice, so receivers pair
    /// them and drop a redelivery.
    pub id: String,
}

impl Standing {
    /// A condition that opens at `at`.
    pub fn open(condition: Condition, at: Timestamp) -> Standing {
        let mut h = Sha256::new();
        h.update(condition.key.as_bytes());
        h.update([0]);
        h.update(at.to_string().as_bytes());
        let id = data_encoding::HEXLOWER.encode(&h.finalize()[..12]);
        Standing {
            condition,
            opened_at: at,
            id,
        }
    }
}

/// What the loop published, as the alert rules read it. `None` for a part not known yet
/// (at start, before the loop's first round): the standing conditions of that part are
/// kept as they are, so a restart never "resolves" what still holds.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// Inventory hosts joined with the reports (`None`: the reports branch not read yet).
    pub hosts: Option<&'a [HostSummary]>,
    /// The reports (each host's open advisories).
    pub reports: Option<&'a Snapshot>,
    /// Whether a desired commit was validated or rejected yet.
    pub commit_known: bool,
    /// The desired commit that failed validation (if the newest one did).
    pub rejected_commit: Option<&'a str>,
    /// The last finished reconcile in this process: ok, and the error (`None`: none yet).
    pub reconcile: Option<(bool, Option<&'a str>)>,
    /// Rollouts halted in the current or last reconcile (`None`: none started yet).
    pub halted: Option<Vec<(String, usize)>>,
    /// Every patch request and where it stands (its review branch's are read before a
    /// desired commit is known, so they count once `commit_known`).
    pub requests: &'a [crate::view::RequestStatus],
}

/// The families of conditions, each judged from one part of [`Inputs`].
fn family(event: AlertEvent) -> u8 {
    match event {
        AlertEvent::VulnerabilityOpened
        | AlertEvent::VulnerabilityOverdue
        | AlertEvent::HostFailed
        | AlertEvent::HostUnreachable
        | AlertEvent::HostNonCompliant => 0,
        AlertEvent::CommitInvalid => 1,
        AlertEvent::ReconcileFailing => 2,
        AlertEvent::RolloutHalted => 3,
        AlertEvent::RequestProposed => 4,
    }
}

/// Every condition that holds in `inputs` at `now`, by key; with the families `inputs`
/// does not know yet.
pub fn conditions(inputs: &Inputs<'_>, now: Timestamp) -> (BTreeMap<String, Condition>, Vec<u8>) {
    let mut out = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut add = |event: AlertEvent,
                   key: String,
                   host: Option<&str>,
                   severity: Option<Severity>,
                   summary: String| {
        let key = format!("{}/{key}", event.as_str());
        out.insert(
            key.clone(),
            Condition {
                key,
                event,
                severity,
                host: host.map(str::to_owned),
                summary,
            },
        );
    };
    match inputs.hosts {
        None => unknown.push(0),
        Some(hosts) => {
            let reports: BTreeMap<&str, _> = inputs
                .reports
                .map(|r| {
                    r.hosts
                        .iter()
                        .map(|h| (h.compliance.host.as_str(), &h.compliance))
                        .collect()
                })
                .unwrap_or_default();
            for h in hosts {
                let name = h.name.as_str();
                match h.state {
                    Some(ComplianceState::Failed) => add(
                        AlertEvent::HostFailed,
                        name.into(),
                        Some(name),
                        None,
                        format!("host {name} failed its last apply"),
                    ),
                    Some(ComplianceState::RolledBack) => add(
                        AlertEvent::HostFailed,
                        name.into(),
                        Some(name),
                        None,
                        format!("host {name} failed its last apply and was rolled back"),
                    ),
                    Some(ComplianceState::Unreachable) => add(
                        AlertEvent::HostUnreachable,
                        name.into(),
                        Some(name),
                        None,
                        format!("host {name} could not be reached"),
                    ),
                    Some(ComplianceState::NonCompliant) => add(
                        AlertEvent::HostNonCompliant,
                        name.into(),
                        Some(name),
                        None,
                        format!("host {name} is non-compliant by the policy"),
                    ),
                    _ => {}
                }
                let Some(c) = reports.get(name) else { continue };
                for a in &c.advisories {
                    let v = &a.advisory;
                    let excepted = v.exception.as_ref().is_some_and(|e| e.expires > now);
                    if v.severity < Severity::High || excepted {
                        continue;
                    }
                    let fix = v
                        .fixed
                        .as_deref()
                        .map_or("no fix yet".to_owned(), |f| format!("fixed in {f}"));
                    add(
                        AlertEvent::VulnerabilityOpened,
                        format!("{name}/{}", v.id),
                        Some(name),
                        Some(v.severity),
                        format!(
                            "{} vulnerability {} open on {name}: {} {} ({fix})",
                            v.severity.as_str(),
                            v.id,
                            v.source,
                            v.installed
                        ),
                    );
                    if a.overdue(now) {
                        let due = a.due.map(|d| d.to_string()).unwrap_or_default();
                        add(
                            AlertEvent::VulnerabilityOverdue,
                            format!("{name}/{}", v.id),
                            Some(name),
                            Some(v.severity),
                            format!(
                                "{} vulnerability {} on {name} is past its deadline ({due})",
                                v.severity.as_str(),
                                v.id
                            ),
                        );
                    }
                }
            }
        }
    }
    if !inputs.commit_known {
        unknown.push(1);
    } else if let Some(c) = inputs.rejected_commit {
        add(
            AlertEvent::CommitInvalid,
            c.into(),
            None,
            None,
            format!(
                "the desired commit {} does not validate; the last valid commit stays in force",
                c.get(..12).unwrap_or(c)
            ),
        );
    }
    if !inputs.commit_known {
        unknown.push(4);
    } else {
        for r in inputs.requests {
            let proposed = r.state == crate::view::RequestState::Submitted
                && r.requested_by.as_deref() == Some(crate::rapid::REQUESTED_BY);
            let Some(branch) = r.branch.as_deref().filter(|_| proposed) else {
                continue;
            };
            add(
                AlertEvent::RequestProposed,
                r.name.clone(),
                None,
                None,
                format!(
                    "patchkeeper proposed patch request {} for {} on branch {branch} (hosts: {}): review and merge it to apply",
                    r.name,
                    r.advisories.join(", "),
                    r.selector.hosts.join(", ")
                ),
            );
        }
    }
    match inputs.reconcile {
        None => unknown.push(2),
        Some((true, _)) => {}
        Some((false, error)) => add(
            AlertEvent::ReconcileFailing,
            "loop".into(),
            None,
            None,
            format!(
                "the reconcile failed: {}",
                error.unwrap_or("see the server's log")
            ),
        ),
    }
    match &inputs.halted {
        None => unknown.push(3),
        Some(halted) => {
            for (rollout, failures) in halted {
                add(
                    AlertEvent::RolloutHalted,
                    rollout.clone(),
                    None,
                    None,
                    format!(
                        "rollout {rollout} halted: {failures} failures exceeded its failure budget"
                    ),
                );
            }
        }
    }
    (out, unknown)
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// What stands now.
    pub standing: BTreeMap<String, Standing>,
    /// Conditions that started holding (alert "firing").
    pub opened: Vec<Standing>,
    /// Conditions that stopped holding (alert "resolved").
    pub cleared: Vec<Standing>,
}

/// Compares what holds now with what stood: opened and cleared conditions. Conditions of a
/// family `inputs` does not know yet keep standing.
pub fn evaluate(
    standing: &BTreeMap<String, Standing>,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> Evaluation {
    let (current, unknown) = conditions(inputs, now);
    let mut out = Evaluation::default();
    for (key, s) in standing {
        if current.contains_key(key) || unknown.contains(&family(s.condition.event)) {
            out.standing.insert(key.clone(), s.clone());
        } else {
            out.cleared.push(s.clone());
        }
    }
    for (key, c) in current {
        if !out.standing.contains_key(&key) {
            let s = Standing::open(c, now);
            out.opened.push(s.clone());
            out.standing.insert(key, s);
        }
    }
    out
}

/// Whether `hook` wants alerts about `c`.
pub fn wants(hook: &Webhook, c: &Condition) -> bool {
    let event = hook.events.is_empty() || hook.events.contains(&c.event);
    let floor = match hook.min_severity.unwrap_or(AlertSeverity::High) {
        AlertSeverity::High => Severity::High,
        AlertSeverity::Critical => Severity::Critical,
    };
    event && c.severity.is_none_or(|s| s >= floor)
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition started holding.
    Firing,
    /// It stopped.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The generic JSON alert (`docs/alerts.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The alert id (the same for the firing and the resolved notice).
    pub id: String,
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// The condition's kind.
    pub event: AlertEvent,
    /// The condition's key.
    pub key: String,
    /// The vulnerability's severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// One line for people.
    pub summary: String,
    /// When the condition started holding.
    pub opened_at: Timestamp,
    /// When it stopped (resolved notices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
}

impl Alert {
    /// The alert of a transition.
    pub fn of(s: &Standing, status: AlertStatus, at: Timestamp) -> Alert {
        Alert {
            id: s.id.clone(),
            status,
            event: s.condition.event,
            key: s.condition.key.clone(),
            severity: s.condition.severity,
            host: s.condition.host.clone(),
            summary: s.condition.summary.clone(),
            opened_at: s.opened_at,
            resolved_at: (status == AlertStatus::Resolved).then_some(at),
        }
    }

    /// The body a webhook of `format` gets.
    pub fn body(&self, format: WebhookFormat) -> Vec<u8> {
        let value = match format {
            WebhookFormat::Json => serde_json::to_value(self).unwrap_or_default(),
            WebhookFormat::Slack => {
                let (icon, word) = match self.status {
                    AlertStatus::Firing => (":rotating_light:", "FIRING"),
                    AlertStatus::Resolved => (":white_check_mark:", "RESOLVED"),
                };
                serde_json::json!({
                    "text": format!("{icon} *patchkeeper {word}* `{}`: {}", self.event.as_str(), self.summary),
                })
            }
        };
        // Serializing a JSON value to bytes cannot fail.
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`: the `X-Patchkeeper-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!(
        "sha256={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

/// The wait before retry number `attempts` (1 = the first retry): `initial` doubled each
/// time, never more than `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests;
