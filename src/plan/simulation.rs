//! Dependency simulation: what the host's package manager says the planned transaction would
//! change beyond the planned packages (dependencies pulled in or upgraded alongside), and
//! how that enters the host's plan.
//!
//! The planner stays pure: the dry runs happen in `crate::simulate` (over SSH) between a
//! first planning pass, which names each host's transaction, and a second pass that reads
//! the results from [`PlanInput::simulations`](super::PlanInput). A result is used only for
//! the exact transaction it was run for.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Change, Reason, Rule};
use crate::observed::{ObservedHost, TransactionPreview};

/// The `source` of a change the package manager pulls in for the planned ones.
pub const PACKAGE_MANAGER: &str = "package-manager";

/// One host's dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    /// The transaction simulated: `(package, version)` requested, sorted by package.
    pub requested: Vec<(String, String)>,
    /// What the package manager answered.
    pub outcome: SimulationOutcome,
}

/// What a dry run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulationOutcome {
    /// The transaction resolves; this is everything it would change.
    Resolved(TransactionPreview),
    /// The package manager refuses the transaction (unmet dependency, held package...).
    Refused {
        /// The dry-run command.
        command: String,
        /// Its explanation.
        message: String,
    },
    /// The dry run could not be run (connection lost, timeout).
    Failed(String),
}

/// Dry runs by host name.
pub type Simulations = BTreeMap<String, Simulation>;

/// Whether a host's transaction was checked with the package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DependencyCheck {
    /// Dry-run on the host: the changes include everything the package manager would change.
    Simulated,
    /// Planned offline (`plan --observed`): packages pulled in alongside are not listed.
    NotSimulated,
}

/// The transaction to ask the package manager for: the changes some rule other than
/// `dependency` wants, as `(package, version)` sorted by package. Dependencies are left to
/// the package manager (naming them would mark them manually installed).
pub fn requested<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = changes
        .into_iter()
        .filter(|c| is_requested(c))
        .map(|c| (c.package.clone(), c.to.clone()))
        .collect();
    out.sort();
    out
}

/// Whether a rule other than `dependency` wants the change.
pub fn is_requested(change: &Change) -> bool {
    change.reasons.iter().any(|r| r.rule != Rule::Dependency)
}

/// How a simulation changed a host's plan.
pub(super) struct Merged {
    /// `None`: the host has no transaction.
    pub check: Option<DependencyCheck>,
    /// The dry run could not be run: the host counts as unreachable.
    pub unreachable: Option<String>,
}

/// Folds a host's dry run into its planned `changes`; problems become `reasons` (which block
/// the host). `protected` says why a package must not be touched (held, excluded).
pub(super) fn merge(
    changes: &mut BTreeMap<String, Change>,
    reasons: &mut Vec<String>,
    observed: &ObservedHost,
    simulation: Option<&Simulation>,
    protected: &dyn Fn(&str) -> Option<String>,
) -> Merged {
    let requested = requested(changes.values());
    if requested.is_empty() {
        // Dependency-only changes are consequences of requested ones: with none requested,
        // apply would have nothing to install that pulls them in.
        changes.clear();
        return Merged {
            check: None,
            unreachable: None,
        };
    }
    let Some(sim) = simulation.filter(|s| s.requested == requested) else {
        return Merged {
            check: Some(DependencyCheck::NotSimulated),
            unreachable: None,
        };
    };
    let preview = match &sim.outcome {
        SimulationOutcome::Failed(why) => {
            return Merged {
                check: Some(DependencyCheck::NotSimulated),
                unreachable: Some(format!("the dependency dry run failed: {why}")),
            }
        }
        SimulationOutcome::Refused { command, message } => {
            reasons.push(format!(
                "the package manager refuses the transaction: {message} (dry run: `{command}`)"
            ));
            return Merged {
                check: Some(DependencyCheck::Simulated),
                unreachable: None,
            };
        }
        SimulationOutcome::Resolved(preview) => preview,
    };
    // The dry run replaces what the observed full upgrade guessed would be pulled in.
    changes.retain(|_, c| is_requested(c));
    for u in &preview.installs {
        if let Some(planned) = changes.get(&u.name) {
            if planned.to != u.candidate_version {
                reasons.push(format!(
                    "the package manager would install {} {}, not the planned {}",
                    u.name, u.candidate_version, planned.to
                ));
            }
            continue;
        }
        let from = u.installed_version.clone().or_else(|| {
            observed
                .installed_package(&u.name)
                .map(|p| p.version.to_string())
        });
        if from.as_deref() == Some(u.candidate_version.as_str()) {
            continue;
        }
        if let Some(why) = protected(&u.name) {
            reasons.push(format!(
                "the transaction would also move {} {} -> {}, but the package is {why}",
                u.name,
                from.as_deref().unwrap_or("(new)"),
                u.candidate_version
            ));
            continue;
        }
        let offered = observed
            .updates
            .iter()
            .find(|o| o.name == u.name && o.candidate_version == u.candidate_version);
        changes.insert(
            u.name.clone(),
            Change {
                package: u.name.clone(),
                arch: u.arch.clone(),
                from,
                to: u.candidate_version.clone(),
                security: u.security || offered.is_some_and(|o| o.security),
                origin: if u.origin.is_empty() {
                    offered.map(|o| o.origin.clone()).unwrap_or_default()
                } else {
                    u.origin.clone()
                },
                reasons: vec![Reason {
                    source: PACKAGE_MANAGER.to_owned(),
                    rule: Rule::Dependency,
                    due: None,
                }],
                promotion: None,
                fixes: Vec::new(),
            },
        );
    }
    if !preview.removals.is_empty() {
        reasons.push(format!(
            "the transaction would remove {}; patchkeeper never removes packages",
            preview.removals.join(", ")
        ));
    }
    Merged {
        check: Some(DependencyCheck::Simulated),
        unreachable: None,
    }
}
