//! Compliance evaluation: one host's state (compliant, non-compliant, pending-reboot,
//! failed, rolled-back, unreachable, excluded) with reasons, the updates outstanding and for
//! how long, and the policy rules it breaks.
//!
//! Pure: it reads a [`HostConfig`] (what the fleet repo wants of the host), the host's
//! [`ObservedHost`], the host's previous report (which remembers when each pending update
//! was first seen, so ages survive runs), the last run's outcome and the [`Policy`], at an
//! instant given by the caller. It knows nothing of SSH, Git or files.

use std::collections::BTreeMap;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::advisory::view::AdvisoryView;
use crate::advisory::{FindingState, HostFindings};
use crate::model::{Host, PackageManager, UpdateClass};
use crate::observed::{HostStatus, ObservedHost, PendingUpdate};
use crate::policy::{Check, Policy, RuleUpdates};
use crate::validate::ValidFleet;
use crate::version::Ecosystem;

/// Errors of building a [`HostConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    /// A hold or exclude pattern is not a glob (validation should have caught it).
    #[error("baseline {baseline}: invalid package pattern `{pattern}`: {source}")]
    Pattern {
        /// The baseline.
        baseline: String,
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: globset::Error,
    },
    /// `updates.delay` does not parse (validation should have caught it).
    #[error("baseline {baseline}: invalid updates.delay: {source}")]
    Delay {
        /// The baseline.
        baseline: String,
        /// Why.
        #[source]
        source: crate::duration::DurationError,
    },
}

/// What one baseline says about pending updates on a host.
#[derive(Debug, Clone)]
pub struct BaselineRules {
    /// The baseline's name.
    pub name: String,
    /// Which pending updates it approves.
    pub classes: UpdateClass,
    /// Approve only updates first seen at least this long ago.
    pub delay: Duration,
    hold: GlobSet,
    exclude: GlobSet,
}

impl BaselineRules {
    /// Compiles a baseline's hold and exclude patterns.
    pub fn new(
        name: &str,
        classes: UpdateClass,
        delay: Duration,
        hold: &[String],
        exclude: &[String],
    ) -> Result<BaselineRules, ComplianceError> {
        let set = |patterns: &[String]| -> Result<GlobSet, ComplianceError> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(Glob::new(p).map_err(|source| ComplianceError::Pattern {
                    baseline: name.to_owned(),
                    pattern: p.clone(),
                    source,
                })?);
            }
            b.build().map_err(|source| ComplianceError::Pattern {
                baseline: name.to_owned(),
                pattern: patterns.join(", "),
                source,
            })
        };
        Ok(BaselineRules {
            name: name.to_owned(),
            classes,
            delay,
            hold: set(hold)?,
            exclude: set(exclude)?,
        })
    }

    fn approves(&self, update: &PendingUpdate) -> bool {
        match self.classes {
            UpdateClass::None => false,
            UpdateClass::Security => update.security,
            UpdateClass::All => true,
        }
    }
}

/// A package that must be installed, at least at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Package name.
    pub package: String,
    /// Minimum version (ecosystem syntax); `None`: any version.
    pub min_version: Option<String>,
    /// Who asks: `baseline NAME` or `request NAME`.
    pub source: String,
    /// A patch request's deadline.
    pub deadline: Option<Timestamp>,
}

/// What the fleet repo wants of one host, as compliance needs it.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Host name.
    pub host: String,
    /// The package manager the inventory declares (the observed one wins when known).
    pub package_manager: Option<PackageManager>,
    /// Baselines whose selector matches the host, by name.
    pub baselines: Vec<BaselineRules>,
    /// Minimum versions from those baselines and from patch requests.
    pub requirements: Vec<Requirement>,
}

impl HostConfig {
    /// Derives a host's configuration from a validated fleet.
    pub fn from_fleet(fleet: &ValidFleet, host: &Host) -> Result<HostConfig, ComplianceError> {
        let mut baselines = Vec::new();
        let mut requirements = Vec::new();
        let mut loaded = fleet.baselines_for(host);
        loaded.sort_by(|a, b| a.name().cmp(b.name()));
        for b in loaded {
            let spec = b.spec();
            let delay = match &spec.updates.delay {
                Some(d) => {
                    crate::duration::parse_duration(d).map_err(|source| ComplianceError::Delay {
                        baseline: b.name().to_owned(),
                        source,
                    })?
                }
                None => Duration::ZERO,
            };
            baselines.push(BaselineRules::new(
                b.name(),
                spec.updates.classes,
                delay,
                &spec.hold,
                &spec.exclude,
            )?);
            requirements.extend(spec.packages.iter().map(|p| Requirement {
                package: p.name.clone(),
                min_version: p.min_version.clone(),
                source: format!("baseline {}", b.name()),
                deadline: None,
            }));
        }
        for r in fleet.requests_for(host) {
            // Validation checked the deadline is RFC 3339.
            let deadline = r.spec().deadline.as_deref().and_then(|d| d.parse().ok());
            requirements.extend(r.spec().packages.iter().map(|p| Requirement {
                package: p.name.clone(),
                min_version: p.min_version.clone(),
                source: format!("request {}", r.name()),
                deadline,
            }));
        }
        Ok(HostConfig {
            host: host.name.clone(),
            package_manager: host.package_manager,
            baselines,
            requirements,
        })
    }
}

/// A host's compliance state. Precedence when several apply: excluded, then the last run's
/// failed / rolled-back / unreachable, then what observation says (unreachable, failed),
/// then non-compliant, pending-reboot, compliant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ComplianceState {
    /// Every baseline minimum is met and no approved update is outstanding.
    Compliant,
    /// A baseline minimum is not met or an approved update is outstanding.
    NonCompliant,
    /// Compliant, but the host needs a reboot to run what is installed.
    PendingReboot,
    /// The last run failed on the host (and left it as it was), or observing it failed.
    Failed,
    /// The last run failed on the host and was rolled back.
    RolledBack,
    /// The host could not be reached (or was never observed).
    Unreachable,
    /// No baseline applies to the host.
    Excluded,
}

impl ComplianceState {
    /// All states, in report order.
    pub const ALL: [ComplianceState; 7] = [
        ComplianceState::Compliant,
        ComplianceState::NonCompliant,
        ComplianceState::PendingReboot,
        ComplianceState::Failed,
        ComplianceState::RolledBack,
        ComplianceState::Unreachable,
        ComplianceState::Excluded,
    ];

    /// The name as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceState::Compliant => "compliant",
            ComplianceState::NonCompliant => "non-compliant",
            ComplianceState::PendingReboot => "pending-reboot",
            ComplianceState::Failed => "failed",
            ComplianceState::RolledBack => "rolled-back",
            ComplianceState::Unreachable => "unreachable",
            ComplianceState::Excluded => "excluded",
        }
    }

    /// True for states that need someone's attention (all but compliant and excluded).
    pub fn needs_attention(self) -> bool {
        !matches!(self, ComplianceState::Compliant | ComplianceState::Excluded)
    }
}

impl std::fmt::Display for ComplianceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run did to one host; produced by `apply` (and `observe`), read by compliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum HostRunOutcome {
    /// Packages were changed and verified.
    Updated,
    /// Nothing needed changing (or the run only observed).
    Unchanged,
    /// The run failed on the host and the host was left as it was.
    Failed {
        /// Why.
        reason: String,
    },
    /// The run failed on the host and its packages were rolled back.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// The host was planned but not started (window closed, budget exhausted, stopped).
    NotStarted {
        /// Why.
        reason: String,
    },
    /// apply reached the host but did not start on it, and nothing changed: the host
    /// changed since a saved plan (stale), its package manager stayed locked, or it lacked
    /// free disk.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The host could not be reached.
    Unreachable {
        /// Why.
        reason: String,
    },
}

/// A package below what a baseline or request requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingPackage {
    /// Package name.
    pub package: String,
    /// Installed version (`None`: not installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    /// Required minimum (`None`: any version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
    /// `baseline NAME` or `request NAME`.
    pub source: String,
    /// The patch request's deadline, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub deadline: Option<Timestamp>,
}

/// Why a pending update does not count against compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeferReason {
    /// No baseline's update classes approve it.
    NotApproved,
    /// A baseline holds the package.
    Held,
    /// A baseline excludes the package.
    Excluded,
    /// Approved, but first seen less than the baseline's `updates.delay` ago.
    Delayed,
    /// The host's package manager holds it back (dpkg hold, dnf versionlock or exclude, or
    /// it would move a held package).
    HostHeld,
}

/// A pending update and how long it has been offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackedUpdate {
    /// Package name.
    pub package: String,
    /// Architecture.
    pub arch: String,
    /// Installed version (`None`: a new package the upgrade pulls in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Candidate version.
    pub to: String,
    /// From a security origin.
    pub security: bool,
    /// When patchkeeper first saw an update of this package (from this installed version)
    /// offered.
    #[schemars(with = "String")]
    pub first_seen: Timestamp,
    /// Seconds since `firstSeen` at evaluation time.
    pub age_seconds: u64,
    /// Set on deferred updates: why the update does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<DeferReason>,
    /// For `delayed` updates: when the delay ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub approves_at: Option<Timestamp>,
}

impl TrackedUpdate {
    fn key(&self) -> (String, String, Option<String>) {
        (self.package.clone(), self.arch.clone(), self.from.clone())
    }
}

/// One host's compliance at an instant: the content of `hosts/<name>.json` in reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCompliance {
    /// Host name.
    pub host: String,
    /// The state.
    pub state: ComplianceState,
    /// Why, most important first.
    pub reasons: Vec<String>,
    /// Baselines that apply, by name.
    pub baselines: Vec<String>,
    /// Packages below a required minimum.
    pub missing: Vec<MissingPackage>,
    /// Approved updates not installed yet, with their age.
    pub outstanding: Vec<TrackedUpdate>,
    /// Pending updates that do not count (held, excluded, not approved, delayed).
    pub deferred: Vec<TrackedUpdate>,
    /// Since when the host has needed a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reboot_required_since: Option<Timestamp>,
    /// Ids of the policy rules the host breaks.
    pub broken_rules: Vec<String>,
    /// The last run's outcome on this host, when a run touched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<HostRunOutcome>,
    /// When the facts were last observed (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub observed_at: Option<Timestamp>,
    /// When this evaluation was made.
    #[schemars(with = "String")]
    pub evaluated_at: Timestamp,
    /// Open advisories (most severe first), with when each was first seen, since when its
    /// fix is offered and when it is due under the policy's advisory deadlines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<OpenAdvisory>,
    /// The advisory snapshot `advisories` come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory_snapshot: Option<String>,
}

/// An open advisory on a host, tracked across reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenAdvisory {
    /// The advisory.
    #[serde(flatten)]
    pub advisory: AdvisoryView,
    /// When a report first saw it open on this host.
    #[schemars(with = "String")]
    pub first_seen: Timestamp,
    /// Since when a fix is offered to the host (held fixes count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub fix_offered_since: Option<Timestamp>,
    /// When it must be fixed: the fix's first offer plus the policy's advisory deadline for
    /// its severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub due: Option<Timestamp>,
}

impl OpenAdvisory {
    /// Past its due date at `now` and not excused by an exception in force.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.advisory
            .exception
            .as_ref()
            .is_none_or(|e| e.expires <= now)
            && self.due.is_some_and(|d| d < now)
    }

    fn key(&self) -> (String, String) {
        (self.advisory.id.clone(), self.advisory.source.clone())
    }
}

/// Everything one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// What the fleet repo wants of the host.
    pub config: &'a HostConfig,
    /// What was observed now (`None`: not observed in this run).
    pub observed: Option<&'a ObservedHost>,
    /// The host's previous report (first-seen times, facts to carry when not observed).
    pub previous: Option<&'a HostCompliance>,
    /// The outcome of the run being reported, when it touched the host.
    pub run: Option<&'a HostRunOutcome>,
    /// The rules.
    pub policy: &'a Policy,
    /// Now.
    pub now: Timestamp,
    /// The host's advisory findings in this run (`None`: no advisory data used; the
    /// previous report's advisories are carried, ages growing).
    pub advisories: Option<&'a HostFindings>,
    /// The advisory snapshot of `advisories`.
    pub snapshot: Option<&'a str>,
}

/// Evaluates one host. See [`ComplianceState`] for the precedence of states.
pub fn evaluate(inputs: Inputs<'_>) -> HostCompliance {
    let Inputs {
        config,
        observed,
        previous,
        run,
        policy,
        now,
        advisories,
        snapshot,
    } = inputs;
    let mut hc = HostCompliance {
        host: config.host.clone(),
        state: ComplianceState::Compliant,
        reasons: Vec::new(),
        baselines: config.baselines.iter().map(|b| b.name.clone()).collect(),
        missing: Vec::new(),
        outstanding: Vec::new(),
        deferred: Vec::new(),
        reboot_required_since: None,
        broken_rules: Vec::new(),
        last_run: run.cloned(),
        observed_at: None,
        evaluated_at: now,
        advisories: Vec::new(),
        advisory_snapshot: None,
    };
    if config.baselines.is_empty() {
        hc.state = ComplianceState::Excluded;
        hc.reasons.push("no baseline applies to this host".into());
        return hc;
    }

    // The observation decides the facts; without a usable one the previous report's facts
    // are carried forward (ages still grow), so an unreachable host keeps its history.
    let mut status_reason: Option<(ComplianceState, String)> = None;
    match observed {
        Some(o) if o.status.is_reachable() => {
            observe_facts(&mut hc, config, o, previous, now);
            hc.observed_at = Some(now);
        }
        other => {
            carry_facts(&mut hc, previous, now);
            status_reason = Some(match other.map(|o| &o.status) {
                Some(HostStatus::Unreachable { reason }) => (
                    ComplianceState::Unreachable,
                    format!("unreachable: {reason}"),
                ),
                Some(HostStatus::Error { reason }) => (
                    ComplianceState::Failed,
                    format!("observation failed: {reason}"),
                ),
                // Not observed by this run (e.g. an apply without re-observation): the
                // carried facts are judged as they are.
                _ if previous.is_some_and(|p| p.observed_at.is_some()) => {
                    (ComplianceState::Compliant, String::new())
                }
                _ => unreachable_never_observed(),
            });
        }
    }

    let reachable = observed.is_some_and(|o| o.status.is_reachable());
    match (advisories, reachable) {
        (Some(found), true) => {
            track_advisories(&mut hc, found, previous, policy, now);
            hc.advisory_snapshot = snapshot.map(str::to_owned);
        }
        _ => {
            // No fresh advisory data for the host: the previous findings stand, their due
            // dates keep approaching.
            if let Some(p) = previous {
                hc.advisories = p.advisories.clone();
                hc.advisory_snapshot = p.advisory_snapshot.clone();
            }
        }
    }
    let overdue = hc.advisories.iter().any(|a| a.overdue(now));
    let fact_state = if !hc.missing.is_empty() || !hc.outstanding.is_empty() || overdue {
        ComplianceState::NonCompliant
    } else if hc.reboot_required_since.is_some() {
        ComplianceState::PendingReboot
    } else {
        ComplianceState::Compliant
    };
    let mut head: Vec<String> = Vec::new();
    hc.state = fact_state;
    if let Some((state, reason)) = status_reason {
        if state != ComplianceState::Compliant {
            hc.state = state;
            head.push(reason);
        }
    }
    match run {
        Some(HostRunOutcome::Failed { reason }) => {
            hc.state = ComplianceState::Failed;
            head.insert(0, format!("last run failed: {reason}"));
        }
        Some(HostRunOutcome::RolledBack { reason }) => {
            hc.state = ComplianceState::RolledBack;
            head.insert(0, format!("last run rolled back: {reason}"));
        }
        Some(HostRunOutcome::Unreachable { reason }) => {
            hc.state = ComplianceState::Unreachable;
            head.insert(0, format!("unreachable in last run: {reason}"));
        }
        Some(HostRunOutcome::NotStarted { reason }) => {
            head.push(format!("not started in last run: {reason}"));
        }
        Some(HostRunOutcome::Skipped { reason }) => {
            head.push(format!("skipped in last run: {reason}"));
        }
        Some(HostRunOutcome::Updated | HostRunOutcome::Unchanged) | None => {}
    }
    hc.reasons = head;
    hc.reasons.extend(fact_reasons(&hc, now));
    let (broken, rule_reasons) = broken_rules(&hc, policy, now);
    hc.broken_rules = broken;
    hc.reasons.extend(rule_reasons);
    hc
}

/// The host's open advisories, with first-seen and fix-offered times carried from the
/// previous report and due dates from the policy's advisory deadlines.
fn track_advisories(
    hc: &mut HostCompliance,
    found: &HostFindings,
    previous: Option<&HostCompliance>,
    policy: &Policy,
    now: Timestamp,
) {
    let before: BTreeMap<(String, String), &OpenAdvisory> = previous
        .into_iter()
        .flat_map(|p| &p.advisories)
        .map(|a| (a.key(), a))
        .collect();
    for f in &found.findings {
        let view = AdvisoryView::of(f, false);
        let prev = before.get(&(view.id.clone(), view.source.clone()));
        let first_seen = prev.map(|p| p.first_seen).unwrap_or(now).min(now);
        let offered = matches!(f.state, FindingState::FixOffered | FindingState::FixHeld);
        let fix_offered_since = offered.then(|| {
            prev.and_then(|p| p.fix_offered_since)
                .unwrap_or(now)
                .min(now)
        });
        let deadline = policy
            .rules
            .iter()
            .filter_map(|r| match r.check {
                Check::AdvisoryDeadline { severity, max_age } if severity == f.severity => {
                    Some(max_age)
                }
                _ => None,
            })
            .min();
        hc.advisories.push(OpenAdvisory {
            advisory: view,
            first_seen,
            fix_offered_since,
            due: fix_offered_since.zip(deadline).map(|(t, d)| add(t, d)),
        });
    }
}

fn unreachable_never_observed() -> (ComplianceState, String) {
    (
        ComplianceState::Unreachable,
        "not observed yet: no observation of this host has succeeded".into(),
    )
}

fn ecosystem(pm: PackageManager) -> Ecosystem {
    match pm {
        PackageManager::Apt => Ecosystem::Deb,
        PackageManager::Dnf => Ecosystem::Rpm,
    }
}

/// Whether `installed` is at least `min` in the host's ecosystem. Without a known
/// ecosystem, or when a version does not parse, only an exact match counts: the host is
/// then reported missing the package rather than silently passed.
fn version_at_least(eco: Option<Ecosystem>, installed: &str, min: &str) -> bool {
    match eco.map(|e| crate::version::compare(e, installed, min)) {
        Some(Ok(order)) => order != std::cmp::Ordering::Less,
        Some(Err(_)) | None => installed == min,
    }
}

fn observe_facts(
    hc: &mut HostCompliance,
    config: &HostConfig,
    o: &ObservedHost,
    previous: Option<&HostCompliance>,
    now: Timestamp,
) {
    let eco = o.package_manager.or(config.package_manager).map(ecosystem);
    for req in &config.requirements {
        let installed = o.installed_package(&req.package);
        let ok = match (installed, &req.min_version) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(p), Some(min)) => version_at_least(eco, &p.version, min),
        };
        if !ok {
            hc.missing.push(MissingPackage {
                package: req.package.clone(),
                installed: installed.map(|p| p.version.to_string()),
                required: req.min_version.clone(),
                source: req.source.clone(),
                deadline: req.deadline,
            });
        }
    }

    let first_seen: BTreeMap<_, Timestamp> = previous
        .into_iter()
        .flat_map(|p| p.outstanding.iter().chain(&p.deferred))
        .map(|u| (u.key(), u.first_seen))
        .collect();
    for u in &o.updates {
        let key = (u.name.clone(), u.arch.clone(), u.installed_version.clone());
        let seen = first_seen.get(&key).copied().unwrap_or(now).min(now);
        let mut t = TrackedUpdate {
            package: u.name.clone(),
            arch: u.arch.clone(),
            from: u.installed_version.clone(),
            to: u.candidate_version.clone(),
            security: u.security,
            first_seen: seen,
            age_seconds: age(seen, now),
            deferred: None,
            approves_at: None,
        };
        let bs = &config.baselines;
        if bs.iter().any(|b| b.exclude.is_match(&u.name)) {
            t.deferred = Some(DeferReason::Excluded);
        } else if bs.iter().any(|b| b.hold.is_match(&u.name)) {
            t.deferred = Some(DeferReason::Held);
        } else {
            let delay = bs.iter().filter(|b| b.approves(u)).map(|b| b.delay).min();
            match delay {
                None => t.deferred = Some(DeferReason::NotApproved),
                Some(d) if Duration::from_secs(t.age_seconds) < d => {
                    t.deferred = Some(DeferReason::Delayed);
                    t.approves_at = Some(add(seen, d));
                }
                Some(_) => {}
            }
        }
        if t.deferred.is_some() {
            hc.deferred.push(t);
        } else {
            hc.outstanding.push(t);
        }
    }

    for u in &o.held_updates {
        let key = (u.name.clone(), u.arch.clone(), u.installed_version.clone());
        let seen = first_seen.get(&key).copied().unwrap_or(now).min(now);
        hc.deferred.push(TrackedUpdate {
            package: u.name.clone(),
            arch: u.arch.clone(),
            from: u.installed_version.clone(),
            to: u.candidate_version.clone(),
            security: u.security,
            first_seen: seen,
            age_seconds: age(seen, now),
            deferred: Some(DeferReason::HostHeld),
            approves_at: None,
        });
    }

    hc.reboot_required_since = o.reboot_required.required.then(|| {
        previous
            .and_then(|p| p.reboot_required_since)
            .unwrap_or(now)
            .min(now)
    });
}

fn carry_facts(hc: &mut HostCompliance, previous: Option<&HostCompliance>, now: Timestamp) {
    let Some(p) = previous else { return };
    hc.missing = p.missing.clone();
    hc.reboot_required_since = p.reboot_required_since;
    hc.observed_at = p.observed_at;
    for u in p.outstanding.iter().chain(&p.deferred) {
        let mut t = u.clone();
        t.age_seconds = age(t.first_seen, now);
        if t.deferred == Some(DeferReason::Delayed) && t.approves_at.is_some_and(|at| at <= now) {
            t.deferred = None;
            t.approves_at = None;
        }
        if t.deferred.is_some() {
            hc.deferred.push(t);
        } else {
            hc.outstanding.push(t);
        }
    }
}

fn fact_reasons(hc: &HostCompliance, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for m in &hc.missing {
        out.push(match (&m.installed, &m.required) {
            (None, Some(min)) => format!(
                "{} is not installed ({} requires {min} or later)",
                m.package, m.source
            ),
            (None, None) => format!("{} is not installed ({} requires it)", m.package, m.source),
            (Some(v), Some(min)) => format!(
                "{} {v} is older than {min} ({} requires it)",
                m.package, m.source
            ),
            (Some(v), None) => format!("{} {v} does not meet {}", m.package, m.source),
        });
    }
    for u in &hc.outstanding {
        let kind = if u.security {
            "security update"
        } else {
            "update"
        };
        let change = match &u.from {
            Some(from) => format!("{from} -> {}", u.to),
            None => format!("new {}", u.to),
        };
        // Since an instant, not for an age: the reason stays the same while nothing
        // changes, so the host's report file does too.
        out.push(format!(
            "{kind} {} {change} outstanding since {}",
            u.package,
            since(u.first_seen)
        ));
    }
    if let Some(at) = hc.reboot_required_since {
        out.push(format!("reboot required since {}", since(at)));
    }
    for a in hc.advisories.iter().filter(|a| a.overdue(now)) {
        if let (Some(offered), Some(due)) = (a.fix_offered_since, a.due) {
            out.push(format!(
                "{} advisory {} on {}: fix offered since {}, due {due}",
                a.advisory.severity,
                a.advisory.label(),
                a.advisory.source,
                since(offered)
            ));
        }
    }
    out
}

/// An instant in reasons: to the minute, UTC (`2026-11-24T02:00Z`).
pub fn since(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

fn broken_rules(
    hc: &HostCompliance,
    policy: &Policy,
    now: Timestamp,
) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut reasons = Vec::new();
    for rule in &policy.rules {
        match rule.check {
            Check::UpdateAge { updates, max_age } => {
                let late: Vec<String> = hc
                    .outstanding
                    .iter()
                    .filter(|u| updates == RuleUpdates::All || u.security)
                    .filter(|u| Duration::from_secs(u.age_seconds) > max_age)
                    .map(|u| format!("{} (since {})", u.package, since(u.first_seen)))
                    .collect();
                if !late.is_empty() {
                    ids.push(rule.id.clone());
                    reasons.push(format!(
                        "breaks {}: outstanding longer than {}: {}",
                        rule.id,
                        human(max_age.as_secs()),
                        late.join(", ")
                    ));
                }
            }
            Check::RequestDeadline { grace } => {
                let late: Vec<String> = hc
                    .missing
                    .iter()
                    .filter_map(|m| {
                        let deadline = m.deadline?;
                        (add(deadline, grace) < now)
                            .then(|| format!("{} ({}, due {deadline})", m.package, m.source))
                    })
                    .collect();
                if !late.is_empty() {
                    ids.push(rule.id.clone());
                    reasons.push(format!(
                        "breaks {}: still missing after the request's deadline: {}",
                        rule.id,
                        late.join(", ")
                    ));
                }
            }
            Check::AdvisoryDeadline { severity, max_age } => {
                let late: Vec<String> = hc
                    .advisories
                    .iter()
                    .filter(|a| a.advisory.severity == severity && a.overdue(now))
                    .map(|a| {
                        format!(
                            "{} on {} ({})",
                            a.advisory.id,
                            a.advisory.source,
                            a.fix_offered_since
                                .map(|t| format!("fix offered since {}", since(t)))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                if !late.is_empty() {
                    ids.push(rule.id.clone());
                    reasons.push(format!(
                        "breaks {}: {severity} advisories not fixed within {} of the fix being offered: {}",
                        rule.id,
                        human(max_age.as_secs()),
                        late.join(", ")
                    ));
                }
            }
            Check::RebootPending { max_age } => {
                if let Some(at) = hc.reboot_required_since {
                    let a = age(at, now);
                    if Duration::from_secs(a) > max_age {
                        ids.push(rule.id.clone());
                        reasons.push(format!(
                            "breaks {}: reboot pending since {} (limit {})",
                            rule.id,
                            since(at),
                            human(max_age.as_secs())
                        ));
                    }
                }
            }
        }
    }
    (ids, reasons)
}

fn age(since: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(now.as_second() - since.as_second()).unwrap_or(0)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_second(t.as_second().saturating_add(secs)).unwrap_or(Timestamp::MAX)
}

/// `9d 2h`, `3h 5m`, `42s`: the two largest units, for reasons.
pub fn human(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{FailureReason, InstalledPackage};
    use crate::policy::PolicySource;

    const DAY: i64 = 86400;

    fn t(day: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + day * DAY).expect("in range")
    }

    fn baseline(
        classes: UpdateClass,
        delay_days: u64,
        hold: &[&str],
        exclude: &[&str],
    ) -> BaselineRules {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        BaselineRules::new(
            "base",
            classes,
            Duration::from_secs(delay_days * 86400),
            &v(hold),
            &v(exclude),
        )
        .expect("valid patterns")
    }

    fn config(baselines: Vec<BaselineRules>, reqs: &[(&str, Option<&str>)]) -> HostConfig {
        HostConfig {
            host: "web-1".into(),
            package_manager: Some(PackageManager::Apt),
            baselines,
            requirements: reqs
                .iter()
                .map(|(p, v)| Requirement {
                    package: p.to_string(),
                    min_version: v.map(str::to_string),
                    source: "baseline base".into(),
                    deadline: None,
                })
                .collect(),
        }
    }

    fn host(installed: &[(&str, &str)], updates: &[(&str, &str, &str, bool)]) -> ObservedHost {
        let mut h = ObservedHost::new("web-1", HostStatus::Reachable);
        h.package_manager = Some(PackageManager::Apt);
        h.installed = installed
            .iter()
            .map(|(n, v)| InstalledPackage {
                name: (*n).into(),
                version: (*v).into(),
                arch: "amd64".into(),
                status: "ii".into(),
            })
            .collect();
        h.updates = updates
            .iter()
            .map(|(n, from, to, security)| PendingUpdate {
                name: n.to_string(),
                arch: "amd64".into(),
                installed_version: Some(from.to_string()),
                candidate_version: to.to_string(),
                origin: if *security {
                    "Debian-Security"
                } else {
                    "Debian"
                }
                .into(),
                security: *security,
                advisories: vec![],
            })
            .collect();
        h
    }

    fn policy() -> Policy {
        Policy::builtin()
    }

    struct Case<'a> {
        config: &'a HostConfig,
        observed: Option<&'a ObservedHost>,
        previous: Option<&'a HostCompliance>,
        run: Option<&'a HostRunOutcome>,
        now: Timestamp,
    }

    fn eval(c: Case<'_>) -> HostCompliance {
        let p = policy();
        evaluate(Inputs {
            config: c.config,
            observed: c.observed,
            previous: c.previous,
            run: c.run,
            policy: &p,
            now: c.now,
            advisories: None,
            snapshot: None,
        })
    }

    fn simple(config: &HostConfig, observed: &ObservedHost, now: Timestamp) -> HostCompliance {
        eval(Case {
            config,
            observed: Some(observed),
            previous: None,
            run: None,
            now,
        })
    }

    #[test]
    fn no_baseline_means_excluded() {
        let cfg = config(vec![], &[("openssl", Some("3.0.13"))]);
        let hc = simple(&cfg, &host(&[], &[("a", "1", "2", true)]), t(0));
        assert_eq!(hc.state, ComplianceState::Excluded);
        assert_eq!(hc.reasons, ["no baseline applies to this host"]);
        assert!(hc.outstanding.is_empty() && hc.missing.is_empty());
    }

    #[test]
    fn everything_met_is_compliant() {
        let cfg = config(
            vec![baseline(UpdateClass::Security, 0, &[], &[])],
            &[("openssl", Some("3.0.13")), ("curl", None)],
        );
        let o = host(
            &[("openssl", "3.0.13"), ("curl", "7.88")],
            &[("vim", "9.0", "9.1", false)],
        );
        let hc = simple(&cfg, &o, t(0));
        assert_eq!(hc.state, ComplianceState::Compliant);
        assert!(hc.reasons.is_empty(), "{:?}", hc.reasons);
        assert_eq!(hc.deferred.len(), 1);
        assert_eq!(hc.deferred[0].deferred, Some(DeferReason::NotApproved));
        assert_eq!(hc.observed_at, Some(t(0)));
    }

    #[test]
    fn missing_minimums_make_it_non_compliant() {
        let cfg = config(
            vec![baseline(UpdateClass::None, 0, &[], &[])],
            &[
                ("openssl", Some("3.0.13")),
                ("curl", None),
                ("jq", Some("1.7")),
            ],
        );
        let o = host(&[("openssl", "3.0.11")], &[]);
        let hc = simple(&cfg, &o, t(0));
        assert_eq!(hc.state, ComplianceState::NonCompliant);
        assert_eq!(
            hc.missing
                .iter()
                .map(|m| m.package.as_str())
                .collect::<Vec<_>>(),
            ["openssl", "curl", "jq"]
        );
        assert_eq!(
            hc.reasons,
            [
                "openssl 3.0.11 is older than 3.0.13 (baseline base requires it)",
                "curl is not installed (baseline base requires it)",
                "jq is not installed (baseline base requires 1.7 or later)",
            ]
        );
        assert!(hc.broken_rules.is_empty());
    }

    #[test]
    fn minimums_compare_in_the_hosts_ecosystem() {
        let cfg = config(
            vec![baseline(UpdateClass::None, 0, &[], &[])],
            &[
                ("openssl", Some("3.0.11-1")),
                ("bash", Some("5.2-1")),
                ("zlib", Some("1:1.2")),
            ],
        );
        // Debian: `~` sorts before the empty string; an epoch outranks everything.
        let o = host(
            &[
                ("openssl", "3.0.11-1~deb12u1"),
                ("bash", "5.2.15-2"),
                ("zlib", "1.3"),
            ],
            &[],
        );
        let hc = simple(&cfg, &o, t(0));
        let missing: Vec<_> = hc.missing.iter().map(|m| m.package.as_str()).collect();
        assert_eq!(missing, ["openssl", "zlib"]);
        // RPM ordering for a dnf host: `1.0~rc1` is older than `1.0`, `1.10` newer than `1.9`.
        let cfg = HostConfig {
            package_manager: Some(PackageManager::Dnf),
            ..config(
                vec![baseline(UpdateClass::None, 0, &[], &[])],
                &[("a", Some("1.0")), ("b", Some("1.9"))],
            )
        };
        let mut o = host(&[("a", "1.0~rc1"), ("b", "1.10")], &[]);
        o.package_manager = Some(PackageManager::Dnf);
        let missing: Vec<_> = simple(&cfg, &o, t(0))
            .missing
            .into_iter()
            .map(|m| m.package)
            .collect();
        assert_eq!(missing, ["a"]);
    }

    #[test]
    fn unparsable_versions_need_an_exact_match() {
        let cfg = config(
            vec![baseline(UpdateClass::None, 0, &[], &[])],
            &[("a", Some("not a version"))],
        );
        let o = host(&[("a", "1.0")], &[]);
        assert_eq!(simple(&cfg, &o, t(0)).state, ComplianceState::NonCompliant);
        let o = host(&[("a", "not a version")], &[]);
        assert_eq!(simple(&cfg, &o, t(0)).state, ComplianceState::Compliant);
    }

    #[test]
    fn approved_updates_are_outstanding_by_class() {
        let o = host(
            &[],
            &[("openssl", "1", "2", true), ("vim", "9.0", "9.1", false)],
        );
        let sec = simple(
            &config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]),
            &o,
            t(0),
        );
        assert_eq!(sec.state, ComplianceState::NonCompliant);
        assert_eq!(sec.outstanding.len(), 1);
        assert_eq!(sec.outstanding[0].package, "openssl");
        assert_eq!(
            sec.reasons,
            ["security update openssl 1 -> 2 outstanding since 2026-09-21T14:13Z"]
        );
        let all = simple(
            &config(vec![baseline(UpdateClass::All, 0, &[], &[])], &[]),
            &o,
            t(0),
        );
        assert_eq!(all.outstanding.len(), 2);
        assert!(all.deferred.is_empty());
        let none = simple(
            &config(vec![baseline(UpdateClass::None, 0, &[], &[])], &[]),
            &o,
            t(0),
        );
        assert_eq!(none.state, ComplianceState::Compliant);
        assert_eq!(none.deferred.len(), 2);
    }

    #[test]
    fn holds_and_excludes_are_respected_with_globs() {
        let cfg = config(
            vec![baseline(UpdateClass::All, 0, &["linux-image-*"], &["vim*"])],
            &[],
        );
        let o = host(
            &[],
            &[
                ("linux-image-amd64", "6.1", "6.2", true),
                ("vim-tiny", "9.0", "9.1", false),
                ("curl", "7", "8", false),
            ],
        );
        let hc = simple(&cfg, &o, t(0));
        let why: Vec<_> = hc
            .deferred
            .iter()
            .map(|u| (u.package.as_str(), u.deferred))
            .collect();
        assert_eq!(
            why,
            [
                ("linux-image-amd64", Some(DeferReason::Held)),
                ("vim-tiny", Some(DeferReason::Excluded))
            ]
        );
        assert_eq!(hc.outstanding.len(), 1);
        assert_eq!(hc.outstanding[0].package, "curl");
    }

    #[test]
    fn delay_defers_until_old_enough_counting_from_first_seen() {
        let cfg = config(vec![baseline(UpdateClass::Security, 3, &[], &[])], &[]);
        let o = host(&[], &[("openssl", "1", "2", true)]);
        let day0 = simple(&cfg, &o, t(0));
        assert_eq!(day0.state, ComplianceState::Compliant);
        assert_eq!(day0.deferred[0].deferred, Some(DeferReason::Delayed));
        assert_eq!(day0.deferred[0].approves_at, Some(t(3)));
        let day2 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&day0),
            run: None,
            now: t(2),
        });
        assert_eq!(day2.state, ComplianceState::Compliant);
        assert_eq!(day2.deferred[0].first_seen, t(0));
        let day3 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&day2),
            run: None,
            now: t(3),
        });
        assert_eq!(day3.state, ComplianceState::NonCompliant);
        assert_eq!(day3.outstanding[0].first_seen, t(0));
        assert_eq!(day3.outstanding[0].age_seconds, 3 * 86400);
        assert!(day3.broken_rules.is_empty());
    }

    #[test]
    fn first_seen_survives_runs_and_rules_break_on_age() {
        let cfg = config(vec![baseline(UpdateClass::All, 0, &[], &[])], &[]);
        let o = host(
            &[],
            &[("openssl", "1", "2", true), ("vim", "9.0", "9.1", false)],
        );
        let d0 = simple(&cfg, &o, t(0));
        let d7 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d0),
            run: None,
            now: t(7),
        });
        assert!(d7.broken_rules.is_empty(), "exactly 7d is within 7d");
        let d8 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d7),
            run: None,
            now: t(8),
        });
        assert_eq!(d8.broken_rules, ["security-within-7d"]);
        assert!(d8.reasons.contains(
            &"breaks security-within-7d: outstanding longer than 7d: openssl (since 2026-09-21T14:13Z)".to_string()
        ));
        let d31 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d8),
            run: None,
            now: t(31),
        });
        assert_eq!(d31.broken_rules, ["security-within-7d", "all-within-30d"]);
        assert!(d31.reasons.iter().any(|r| r.contains("all-within-30d")
            && r.contains("openssl (since 2026-09-21T14:13Z), vim (since 2026-09-21T14:13Z)")));
    }

    #[test]
    fn a_new_installed_version_restarts_the_clock() {
        let cfg = config(vec![baseline(UpdateClass::All, 0, &[], &[])], &[]);
        let d0 = simple(&cfg, &host(&[], &[("openssl", "1", "2", true)]), t(0));
        let o = host(&[], &[("openssl", "2", "3", true)]);
        let d10 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d0),
            run: None,
            now: t(10),
        });
        assert_eq!(d10.outstanding[0].first_seen, t(10));
        assert!(d10.broken_rules.is_empty());
    }

    #[test]
    fn a_patch_request_missing_after_its_deadline_breaks_its_rule() {
        let mut cfg = config(vec![baseline(UpdateClass::None, 0, &[], &[])], &[]);
        cfg.requirements.push(Requirement {
            package: "openssl".into(),
            min_version: Some("3.0.15-1".into()),
            source: "request cve-2026-0001".into(),
            deadline: Some(t(3)),
        });
        let o = host(&[("openssl", "3.0.11-1")], &[]);
        // Missing before the deadline: non-compliant, but no rule broken yet.
        let before = simple(&cfg, &o, t(3));
        assert_eq!(before.state, ComplianceState::NonCompliant);
        assert_eq!(before.missing[0].deadline, Some(t(3)));
        assert!(before.broken_rules.is_empty(), "{:?}", before.broken_rules);
        // Past it: the rule is broken, and the reason names the request and the deadline.
        let after = simple(&cfg, &o, t(4));
        assert_eq!(after.broken_rules, ["requests-by-deadline"]);
        assert!(after.reasons.iter().any(|r| r
            == &format!(
                "breaks requests-by-deadline: still missing after the request's deadline: openssl (request cve-2026-0001, due {})",
                t(3)
            )), "{:?}", after.reasons);
        // Installed in time (or late): nothing missing, nothing broken.
        let fixed = simple(&cfg, &host(&[("openssl", "3.0.15-1")], &[]), t(4));
        assert!(fixed.missing.is_empty() && fixed.broken_rules.is_empty());
    }

    #[test]
    fn reboot_pending_and_its_rule() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let mut o = host(&[], &[]);
        o.reboot_required.required = true;
        let d0 = simple(&cfg, &o, t(0));
        assert_eq!(d0.state, ComplianceState::PendingReboot);
        assert_eq!(d0.reasons, ["reboot required since 2026-09-21T14:13Z"]);
        let d2 = eval(Case {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d0),
            run: None,
            now: t(2),
        });
        assert_eq!(d2.reboot_required_since, Some(t(0)));
        assert_eq!(d2.broken_rules, ["reboot-within-24h"]);
        let mut rebooted = o.clone();
        rebooted.reboot_required.required = false;
        let d3 = eval(Case {
            config: &cfg,
            observed: Some(&rebooted),
            previous: Some(&d2),
            run: None,
            now: t(3),
        });
        assert_eq!(d3.state, ComplianceState::Compliant);
        assert_eq!(d3.reboot_required_since, None);
    }

    #[test]
    fn non_compliance_outranks_pending_reboot() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let mut o = host(&[], &[("openssl", "1", "2", true)]);
        o.reboot_required.required = true;
        assert_eq!(simple(&cfg, &o, t(0)).state, ComplianceState::NonCompliant);
    }

    #[test]
    fn unreachable_host_carries_previous_facts_and_ages_them() {
        let cfg = config(
            vec![baseline(UpdateClass::Security, 0, &[], &[])],
            &[("jq", None)],
        );
        let d0 = simple(&cfg, &host(&[], &[("openssl", "1", "2", true)]), t(0));
        let down = ObservedHost::new(
            "web-1",
            HostStatus::Unreachable {
                reason: FailureReason::Refused {
                    address: "10.0.0.1:22".into(),
                },
            },
        );
        let d9 = eval(Case {
            config: &cfg,
            observed: Some(&down),
            previous: Some(&d0),
            run: None,
            now: t(9),
        });
        assert_eq!(d9.state, ComplianceState::Unreachable);
        assert_eq!(
            d9.reasons[0],
            "unreachable: connection refused by 10.0.0.1:22"
        );
        assert_eq!(d9.outstanding[0].age_seconds, 9 * 86400);
        assert_eq!(d9.missing.len(), 1);
        assert_eq!(d9.observed_at, Some(t(0)));
        assert_eq!(d9.broken_rules, ["security-within-7d"]);
    }

    #[test]
    fn carried_delayed_updates_become_outstanding_when_due() {
        let cfg = config(vec![baseline(UpdateClass::Security, 3, &[], &[])], &[]);
        let d0 = simple(&cfg, &host(&[], &[("openssl", "1", "2", true)]), t(0));
        let d4 = eval(Case {
            config: &cfg,
            observed: None,
            previous: Some(&d0),
            run: None,
            now: t(4),
        });
        assert_eq!(d4.state, ComplianceState::NonCompliant);
        assert_eq!(d4.outstanding.len(), 1);
        assert!(d4.deferred.is_empty());
    }

    #[test]
    fn observation_error_is_failed_and_never_observed_is_unreachable() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let err = ObservedHost::new(
            "web-1",
            HostStatus::Error {
                reason: FailureReason::MissingTool {
                    tool: "dpkg-query".into(),
                },
            },
        );
        let hc = simple(&cfg, &err, t(0));
        assert_eq!(hc.state, ComplianceState::Failed);
        assert_eq!(
            hc.reasons,
            ["observation failed: `dpkg-query` is not installed"]
        );
        let never = eval(Case {
            config: &cfg,
            observed: None,
            previous: None,
            run: None,
            now: t(0),
        });
        assert_eq!(never.state, ComplianceState::Unreachable);
        assert_eq!(never.observed_at, None);
    }

    #[test]
    fn not_observed_by_this_run_judges_the_carried_facts() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let d0 = simple(&cfg, &host(&[], &[]), t(0));
        let run = HostRunOutcome::Unchanged;
        let d1 = eval(Case {
            config: &cfg,
            observed: None,
            previous: Some(&d0),
            run: Some(&run),
            now: t(1),
        });
        assert_eq!(d1.state, ComplianceState::Compliant);
        assert_eq!(d1.last_run, Some(HostRunOutcome::Unchanged));
    }

    #[test]
    fn run_outcomes_take_precedence_over_facts() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let o = host(&[], &[("openssl", "1", "2", true)]);
        let check = |run: HostRunOutcome, state: ComplianceState, first: &str| {
            let hc = eval(Case {
                config: &cfg,
                observed: Some(&o),
                previous: None,
                run: Some(&run),
                now: t(0),
            });
            assert_eq!(hc.state, state, "{run:?}");
            assert_eq!(hc.reasons[0], first);
            assert_eq!(hc.last_run.as_ref(), Some(&run));
        };
        check(
            HostRunOutcome::Failed {
                reason: "apt-get exited 100".into(),
            },
            ComplianceState::Failed,
            "last run failed: apt-get exited 100",
        );
        check(
            HostRunOutcome::RolledBack {
                reason: "health check nginx failed".into(),
            },
            ComplianceState::RolledBack,
            "last run rolled back: health check nginx failed",
        );
        check(
            HostRunOutcome::Unreachable {
                reason: "timeout".into(),
            },
            ComplianceState::Unreachable,
            "unreachable in last run: timeout",
        );
        check(
            HostRunOutcome::NotStarted {
                reason: "window closed".into(),
            },
            ComplianceState::NonCompliant,
            "not started in last run: window closed",
        );
        check(
            HostRunOutcome::Updated,
            ComplianceState::NonCompliant,
            "security update openssl 1 -> 2 outstanding since 2026-09-21T14:13Z",
        );
    }

    #[test]
    fn excluded_ignores_run_outcomes() {
        let cfg = config(vec![], &[]);
        let run = HostRunOutcome::Failed { reason: "x".into() };
        let hc = eval(Case {
            config: &cfg,
            observed: None,
            previous: None,
            run: Some(&run),
            now: t(0),
        });
        assert_eq!(hc.state, ComplianceState::Excluded);
    }

    #[test]
    fn custom_policy_rules_apply() {
        let p = Policy::parse(
            "rules:\n  - {id: all-within-1d, check: update-age, updates: all, maxAge: 1d}\n",
            PolicySource::Builtin,
        )
        .expect("policy");
        let cfg = config(vec![baseline(UpdateClass::All, 0, &[], &[])], &[]);
        let o = host(&[], &[("vim", "9.0", "9.1", false)]);
        let d0 = simple(&cfg, &o, t(0));
        let d2 = evaluate(Inputs {
            config: &cfg,
            observed: Some(&o),
            previous: Some(&d0),
            run: None,
            policy: &p,
            now: t(2),
            advisories: None,
            snapshot: None,
        });
        assert_eq!(d2.broken_rules, ["all-within-1d"]);
    }

    #[test]
    fn report_json_round_trips() {
        let cfg = config(
            vec![baseline(UpdateClass::Security, 2, &[], &[])],
            &[("jq", Some("1.7"))],
        );
        let mut o = host(&[], &[("openssl", "1", "2", true)]);
        o.reboot_required.required = true;
        let hc = simple(&cfg, &o, t(0));
        let json = serde_json::to_string(&hc).expect("json");
        assert!(
            json.contains("\"firstSeen\":\"") && json.contains("\"deferred\":\"delayed\""),
            "{json}"
        );
        let back: HostCompliance = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, hc);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(3600 * 3 + 300), "3h 5m");
        assert_eq!(human(7200), "2h");
        assert_eq!(human(86400 * 9 + 7200 + 5), "9d 2h");
        assert_eq!(human(86400 * 7 + 59), "7d");
    }

    /// A Debian 12 host with libpk 1.0-1, a critical advisory fixed in 1.2-1, and 1.2-1
    /// offered (held by the baseline, so not an outstanding approved update).
    fn advisory_case(now: Timestamp) -> (HostConfig, ObservedHost, crate::advisory::Assessment) {
        use crate::advisory::{matcher, Affected, Event, Origin, Record, Severity};
        let cfg = config(
            vec![baseline(UpdateClass::Security, 0, &["libpk"], &[])],
            &[],
        );
        let mut o = host(&[("libpk", "1.0-1")], &[("libpk", "1.0-1", "1.2-1", true)]);
        o.os = Some(crate::observed::OsInfo {
            id: "debian".into(),
            version_id: "12".into(),
            family: vec!["debian".into()],
            pretty_name: None,
            version_codename: None,
        });
        let index = matcher::Index::build(
            vec![Record {
                id: "DSA-9000-1".into(),
                cves: vec!["CVE-2026-9000".into()],
                ecosystem: "Debian:12".into(),
                package: "libpk".into(),
                affected: Affected::Ranges {
                    ranges: vec![vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("1.2-1".into()),
                    ]],
                    versions: vec![],
                },
                severity: Severity::Critical,
                summary: "libpk: remote code execution".into(),
                modified: None,
                origin: Origin::Osv,
            }],
            Some("sha256:feedfacefeedface".into()),
        );
        let fleet = crate::observed::ObservedFleet::new(now.to_string(), vec![o.clone()]);
        let a = matcher::assess(&index, &fleet, &BTreeMap::new());
        (cfg, o, a)
    }

    fn eval_with(
        cfg: &HostConfig,
        o: Option<&ObservedHost>,
        a: Option<&crate::advisory::Assessment>,
        previous: Option<&HostCompliance>,
        now: Timestamp,
    ) -> HostCompliance {
        let p = policy();
        evaluate(Inputs {
            config: cfg,
            observed: o,
            previous,
            run: None,
            policy: &p,
            now,
            advisories: a.and_then(|a| a.host("web-1")),
            snapshot: a.and_then(|a| a.snapshot.as_deref()),
        })
    }

    #[test]
    fn advisory_deadlines_count_from_the_first_offer() {
        let (cfg, o, a) = advisory_case(t(0));
        let d0 = eval_with(&cfg, Some(&o), Some(&a), None, t(0));
        assert_eq!(d0.state, ComplianceState::Compliant, "{:?}", d0.reasons);
        assert_eq!(
            d0.advisory_snapshot.as_deref(),
            Some("sha256:feedfacefeedface")
        );
        let adv = &d0.advisories[0];
        assert_eq!(adv.advisory.id, "DSA-9000-1");
        assert_eq!(adv.fix_offered_since, Some(t(0)));
        assert_eq!(adv.due, Some(t(7)));
        assert!(d0.broken_rules.is_empty());
        // Held by the baseline, the fix still counts as offered; the deadline passes.
        let d8 = eval_with(&cfg, Some(&o), Some(&a), Some(&d0), t(8));
        assert_eq!(d8.advisories[0].first_seen, t(0));
        assert_eq!(d8.state, ComplianceState::NonCompliant);
        assert_eq!(d8.broken_rules, ["critical-advisories-within-7d"]);
        assert!(
            d8.reasons.iter().any(|r| r.starts_with(
                "critical advisory DSA-9000-1 (CVE-2026-9000) on libpk: fix offered since 2026-09-21T14:13Z, due "
            )),
            "{:?}",
            d8.reasons
        );
        // Without advisory data in a run, the previous findings stand and stay overdue.
        let carried = eval_with(&cfg, Some(&o), None, Some(&d8), t(9));
        assert_eq!(carried.advisories.len(), 1);
        assert_eq!(carried.broken_rules, ["critical-advisories-within-7d"]);
        // An exception in force excuses it; once expired, it no longer does.
        let (_, _, mut excepted) = advisory_case(t(0));
        let exception = std::sync::Arc::new(crate::advisory::matcher::Excepted {
            name: "libpk-accepted".into(),
            owner: "sec-team".into(),
            reason: "not reachable from the network".into(),
            expires: t(10),
        });
        for f in &mut excepted.hosts.get_mut("web-1").unwrap().findings {
            f.exception = Some(exception.clone());
        }
        let ok = eval_with(&cfg, Some(&o), Some(&excepted), Some(&d0), t(8));
        assert!(ok.broken_rules.is_empty(), "{:?}", ok.reasons);
        assert_eq!(ok.state, ComplianceState::Compliant);
        let late = eval_with(&cfg, Some(&o), Some(&excepted), Some(&d0), t(11));
        assert_eq!(late.broken_rules, ["critical-advisories-within-7d"]);
        // Events: opened, overdue once, closed.
        use crate::report::{advisory_events, AdvisoryEventKind};
        let kinds = |prev: Option<&HostCompliance>, cur: &HostCompliance, now| {
            advisory_events(prev, cur, now)
                .into_iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(None, &d0, t(0)), [AdvisoryEventKind::CriticalOpen]);
        assert_eq!(kinds(Some(&d0), &d8, t(8)), [AdvisoryEventKind::Overdue]);
        assert!(kinds(Some(&d8), &carried, t(9)).is_empty());
        let mut fixed = o.clone();
        fixed.installed[0].version = "1.2-1".into();
        fixed.updates.clear();
        let (_, _, none) = {
            let (c, _, _) = advisory_case(t(12));
            let fleet = crate::observed::ObservedFleet::new(t(12).to_string(), vec![fixed.clone()]);
            let index = crate::advisory::matcher::Index::build(vec![], None);
            (
                c,
                (),
                crate::advisory::matcher::assess(&index, &fleet, &BTreeMap::new()),
            )
        };
        let closed = eval_with(&cfg, Some(&fixed), Some(&none), Some(&d8), t(12));
        assert!(closed.advisories.is_empty());
        assert_eq!(
            kinds(Some(&d8), &closed, t(12)),
            [AdvisoryEventKind::CriticalClosed]
        );
        // The closed event says how long remediation took: first seen (d0) to closed.
        let e = &advisory_events(Some(&d8), &closed, t(12))[0];
        assert_eq!(e.first_seen, Some(d8.advisories[0].first_seen));
        assert_eq!(e.closed_at, Some(t(12)));
        assert_eq!(
            e.remediation_seconds,
            Some(t(12).duration_since(d8.advisories[0].first_seen).as_secs())
        );
        assert!(e.remediation_seconds > Some(0));
    }

    #[test]
    fn host_held_updates_are_deferred_not_invisible() {
        let cfg = config(vec![baseline(UpdateClass::Security, 0, &[], &[])], &[]);
        let mut o = host(&[("pk-held", "1.0-1")], &[]);
        o.held_updates = vec![PendingUpdate {
            name: "pk-held".into(),
            arch: "all".into(),
            installed_version: Some("1.0-1".into()),
            candidate_version: "1.1-1".into(),
            origin: "PatchkeeperLab-Security:bookworm-security".into(),
            security: true,
            advisories: vec![],
        }];
        let hc = simple(&cfg, &o, t(0));
        assert_eq!(hc.state, ComplianceState::Compliant);
        assert_eq!(hc.deferred.len(), 1);
        assert_eq!(hc.deferred[0].to, "1.1-1");
        assert_eq!(hc.deferred[0].deferred, Some(DeferReason::HostHeld));
        let json = serde_json::to_value(&hc).unwrap();
        assert_eq!(json["deferred"][0]["deferred"], "host-held");
    }
}
