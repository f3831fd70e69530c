//! Saved plans (`plan --out FILE`, `apply FILE`). A plan file is data that anyone able to
//! write it could have edited, so `apply` trusts nothing in it that the fleet commit it
//! names does not confirm. Three pure checks:
//!
//! - [`check_file`]: the file's own consistency: every package name, version and
//!   architecture in its ecosystem's grammar ([`crate::package`]), a fingerprint of the
//!   observed state on every host with changes, batches that point at those hosts;
//! - [`check_against_fleet`]: each host's baselines, requests, window and rollout are the
//!   ones the fleet assigns it, and the batches (rollout, stage, order, parallelism) are the
//!   ones the fleet's rollouts derive for those hosts;
//! - [`SavedPlanCheck::check_host`]: at the host, once its state is confirmed to be the one
//!   the plan was made from (fingerprint), the host's changes are derived again from the
//!   fleet commit and that state: the plan may ask for less, never for more.
//!
//! What is not re-derived: the dependency dry run (not repeated at apply; the packages it
//! listed are only verified afterwards, never named on a command line).

use std::sync::Arc;

use jiff::Timestamp;

use super::{Batch, FirstSeen, HostPlan, HostStatus, Plan, PlanInput, PLAN_FORMAT};
use crate::advisory::Index;
use crate::observed::{ObservedFleet, ObservedHost};
use crate::package::{self, Field};
use crate::validate::ValidFleet;
use crate::version::Ecosystem;

/// Why a saved plan (or one host of it) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// The file contradicts itself or holds values outside the grammars.
    #[error("the saved plan is not a consistent plan: {}", .0.join("; "))]
    Malformed(Vec<String>),
    /// The file asks for something the fleet commit does not.
    #[error("the saved plan asks for what the fleet repo does not: {}", .0.join("; "))]
    Widened(Vec<String>),
}

/// Checks the plan file on its own (see the module documentation).
pub fn check_file(plan: &Plan) -> Result<(), SavedPlanError> {
    let mut problems = Vec::new();
    if plan.format != PLAN_FORMAT {
        problems.push(format!(
            "format {} (this patchkeeper reads format {PLAN_FORMAT})",
            plan.format
        ));
    }
    if plan.planned_at.parse::<Timestamp>().is_err() {
        problems.push(format!(
            "`plannedAt` {:?} is not an RFC 3339 time",
            plan.planned_at
        ));
    }
    // Hosts are looked up by binary search: they must be sorted and unique.
    if plan.hosts.windows(2).any(|w| w[0].host >= w[1].host) {
        problems.push("hosts are not sorted by name, or a host is listed twice".into());
    }
    for h in &plan.hosts {
        check_host_entry(plan, h, &mut problems);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, b) in plan.batches.iter().enumerate() {
        if b.index != i {
            problems.push(format!("batch {i} says it is batch {}", b.index));
        }
        for name in &b.hosts {
            if !seen.insert(name.as_str()) {
                problems.push(format!("host {name:?} is in more than one batch"));
            }
            match plan.host(name) {
                Some(h) if h.status.has_changes() && h.batch == Some(i) => {}
                _ => problems.push(format!(
                    "batch {i} lists host {name:?}, which has no changes in that batch"
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SavedPlanError::Malformed(problems))
    }
}

fn check_host_entry(plan: &Plan, h: &HostPlan, problems: &mut Vec<String>) {
    let name = &h.host;
    if h.status.has_changes() {
        match &h.fingerprint {
            Some(f) if f.len() == 64 && f.bytes().all(|c| c.is_ascii_hexdigit()) => {}
            Some(_) => problems.push(format!("host {name:?}: the fingerprint is not a SHA-256")),
            None => problems.push(format!(
                "host {name:?} has changes but no fingerprint of the state they were planned from"
            )),
        }
        if h.package_manager.is_none() {
            problems.push(format!("host {name:?} has changes but no package manager"));
        }
        if h.requested().is_empty() {
            problems.push(format!(
                "host {name:?} has changes but none that a baseline or request asks for"
            ));
        }
        match h.batch {
            Some(i) if plan.batches.get(i).is_some_and(|b| b.hosts.contains(name)) => {}
            Some(i) => problems.push(format!(
                "host {name:?} names batch {i}, which does not list it"
            )),
            None => problems.push(format!("host {name:?} has changes but no batch")),
        }
    }
    let Some(pm) = h.package_manager else {
        if !h.changes.is_empty() {
            problems.push(format!("host {name:?} has changes but no package manager"));
        }
        return;
    };
    let eco = Ecosystem::from(pm);
    for c in &h.changes {
        let values = [
            (Field::Name, Some(c.package.as_str())),
            (Field::Version, Some(c.to.as_str())),
            (Field::Version, c.from.as_deref()),
            (Field::Arch, Some(c.arch.as_str())),
        ];
        for (field, value) in values {
            if let Some(value) = value {
                if let Err(e) = package::check(eco, field, value) {
                    problems.push(format!("host {name:?}: {e}"));
                }
            }
        }
    }
}

/// Checks that the plan's hosts, assignments and batches are what the fleet derives (see
/// the module documentation). Assumes [`check_file`] passed.
pub fn check_against_fleet(plan: &Plan, fleet: &ValidFleet) -> Result<(), SavedPlanError> {
    let mut problems = Vec::new();
    // The window an emergency request may use depends on when the plan was made.
    let planned_at = plan
        .planned_at
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|_| jiff::Timestamp::now());
    for h in &plan.hosts {
        let Some(host) = fleet.host(&h.host) else {
            problems.push(format!("host {:?} is not in the inventory", h.host));
            continue;
        };
        if !h.status.has_changes() {
            continue;
        }
        let assigned = super::transactions::assignment(fleet, host, planned_at);
        let ours = [
            (
                "baselines",
                format!("{:?}", h.baselines),
                format!("{:?}", assigned.baselines),
            ),
            (
                "requests",
                format!("{:?}", h.requests),
                format!("{:?}", assigned.requests),
            ),
            (
                "window",
                format!("{:?}", h.window),
                // A host whose requests are satisfied leaves the emergency window.
                if assigned.emergency && h.window == assigned.normal {
                    format!("{:?}", assigned.normal)
                } else {
                    format!("{:?}", assigned.window)
                },
            ),
            (
                "rollout",
                format!("{:?}", h.rollout),
                format!("{:?}", assigned.rollout),
            ),
        ];
        for (what, plan_has, fleet_has) in ours {
            if plan_has != fleet_has {
                problems.push(format!(
                    "host {}: {what} {plan_has}, the fleet repo assigns {fleet_has}",
                    h.host
                ));
            }
        }
        if let (Some(declared), Some(planned)) = (host.package_manager, h.package_manager) {
            if declared != planned {
                problems.push(format!(
                    "host {}: package manager {planned:?}, the inventory declares {declared:?}",
                    h.host
                ));
            }
        }
    }
    if problems.is_empty() {
        problems.extend(batch_problems(plan, fleet));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SavedPlanError::Widened(problems))
    }
}

/// The batches the fleet's rollouts derive for the plan's hosts with changes, compared with
/// the plan's (window states aside: apply evaluates windows again at each batch).
fn batch_problems(plan: &Plan, fleet: &ValidFleet) -> Vec<String> {
    let Ok(at) = plan.planned_at.parse::<Timestamp>() else {
        return vec!["`plannedAt` is not an RFC 3339 time".into()];
    };
    let mut hosts: Vec<HostPlan> = plan.hosts.clone();
    for h in &mut hosts {
        h.batch = None;
        if h.status.has_changes() {
            h.status = HostStatus::Update;
        }
    }
    let observed = ObservedFleet::new(String::new(), Vec::new());
    let first_seen = FirstSeen::new();
    let evidence = super::Evidence::default();
    let input = PlanInput {
        fleet,
        fleet_commit: None,
        observed: &observed,
        at,
        first_seen: &first_seen,
        simulations: None,
        promotion: &evidence,
        // Batches do not depend on advisories.
        advisories: None,
    };
    let derived = super::batches::plan_batches(&input, &mut hosts);
    let shape = |b: &Batch| {
        format!(
            "batch {} (rollout {}, stage {}, window {}, parallelism {}, hosts {})",
            b.index,
            b.rollout,
            b.stage,
            b.window,
            b.parallelism,
            b.hosts.join(", ")
        )
    };
    let ours: Vec<String> = plan.batches.iter().map(shape).collect();
    let theirs: Vec<String> = derived.iter().map(shape).collect();
    if ours == theirs {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..ours.len().max(theirs.len()) {
        match (ours.get(i), theirs.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!("{a}; the fleet's rollouts make {b}")),
            (Some(a), None) => out.push(format!("{a}; the fleet's rollouts make no such batch")),
            (None, Some(b)) => out.push(format!("the plan lacks {b}")),
            (None, None) => {}
        }
    }
    out
}

/// Re-derives, at each host, what the fleet commit allows (see the module documentation).
#[derive(Debug, Clone)]
pub struct SavedPlanCheck {
    fleet: ValidFleet,
    first_seen: FirstSeen,
    promotion: super::Evidence,
    at: Timestamp,
    advisories: Option<Arc<Index>>,
}

impl SavedPlanCheck {
    /// A check against `fleet` (at the commit the plan names), with the update first-seen
    /// times and promotion evidence of the reports, evaluated at `at` (update delays and
    /// soaks only ever allow more as time passes, so checking at apply time never refuses
    /// what the plan's instant allowed — except a version that failed on a promotion
    /// source since, which is refused, as it should be).
    pub fn new(
        fleet: ValidFleet,
        first_seen: FirstSeen,
        promotion: super::Evidence,
        at: Timestamp,
    ) -> SavedPlanCheck {
        SavedPlanCheck {
            fleet,
            first_seen,
            promotion,
            at,
            advisories: None,
        }
    }

    /// Whether the fleet's baselines select updates by advisory severity
    /// (`updates.minSeverity`): only then do the derived changes depend on advisory data.
    pub fn needs_advisories(&self) -> bool {
        self.fleet
            .fleet()
            .baselines
            .iter()
            .any(|b| b.doc.spec.updates.min_severity.is_some())
    }

    /// Derives changes with the advisory data in `index` (matched against each host's state
    /// at the check, the fleet's exceptions applied), as the plan was made with it: without
    /// it, a `minSeverity` baseline would select nothing on Debian hosts and refuse the plan.
    pub fn with_advisories(mut self, index: Arc<Index>) -> SavedPlanCheck {
        self.advisories = Some(index);
        self
    }

    /// Checks the saved host plan against the changes the fleet derives from `observed`
    /// (the host's state now, already confirmed to carry the plan's fingerprint): every
    /// change a baseline or request asks for must be one the fleet asks for, at exactly
    /// that version, on a host the fleet would change.
    pub fn check_host(
        &self,
        saved: &HostPlan,
        observed: &ObservedHost,
    ) -> Result<(), SavedPlanError> {
        let Some(host) = self.fleet.host(&saved.host) else {
            return Err(SavedPlanError::Widened(vec![format!(
                "host {} is not in the inventory",
                saved.host
            )]));
        };
        let fleet = ObservedFleet::new(String::new(), vec![observed.clone()]);
        let assessment = self.advisories.as_deref().map(|index| {
            let mut a = crate::advisory::matcher::assess(
                index,
                &fleet,
                &self.fleet.settings().advisories.ecosystems,
            );
            crate::advisory::fleet::apply_exceptions(&mut a, &self.fleet, self.at);
            a
        });
        let input = PlanInput {
            fleet: &self.fleet,
            fleet_commit: None,
            observed: &fleet,
            at: self.at,
            first_seen: &self.first_seen,
            simulations: None,
            promotion: &self.promotion,
            advisories: assessment.as_ref(),
        };
        let derived = super::transactions::plan_one(&input, host);
        let mut problems = Vec::new();
        if derived.status != HostStatus::Update {
            let why = if derived.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", derived.reasons.join("; "))
            };
            problems.push(format!(
                "the fleet repo plans no change on {} in its current state ({}{why})",
                saved.host,
                derived.status.as_str()
            ));
        } else {
            if saved.package_manager != derived.package_manager {
                problems.push(format!(
                    "{}: package manager {:?}, the host has {:?}",
                    saved.host, saved.package_manager, derived.package_manager
                ));
            }
            let allowed = derived.requested();
            for (package, version) in saved.requested() {
                if allowed.iter().any(|(p, v)| *p == package && *v == version) {
                    continue;
                }
                let instead = allowed
                    .iter()
                    .find(|(p, _)| *p == package)
                    .map(|(_, v)| format!(" (it asks for {package} {v})"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{}: {package} {version} is not asked for by the fleet repo{instead}",
                    saved.host
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SavedPlanError::Widened(problems))
        }
    }
}
