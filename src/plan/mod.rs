//! The plan: per host, the exact package transactions and why; the batches in order with
//! their window state. [`plan`] is a pure function of (valid fleet, observed state, instant,
//! update history); it does no I/O and cannot fail — problems become host statuses and
//! reasons in the plan.
//!
//! The JSON form of [`Plan`] is the stable machine format (`plan --json`, `plan --out`); its
//! schema is `schemas/plan.schema.json`.

mod batches;
mod emergency;
mod markdown;
pub mod promotion;
mod render;
pub mod saved;
mod simulation;
mod transactions;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::PackageManager;
use crate::observed::ObservedFleet;
use crate::validate::ValidFleet;

pub use markdown::{render_markdown, MARKER as MARKDOWN_MARKER};
pub use promotion::{Evidence, Promoted, PromotionWait};
pub use render::{render_human, RenderOptions};
pub use saved::{SavedPlanCheck, SavedPlanError};
pub use simulation::{
    is_requested, requested, DependencyCheck, Simulation, SimulationOutcome, Simulations,
    PACKAGE_MANAGER,
};

/// Version of the plan format; bumped on incompatible changes.
pub const PLAN_FORMAT: u32 = 1;

/// A complete plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plan {
    /// Plan format version (currently 1).
    pub format: u32,
    /// The fleet repo commit the plan was computed from (`None`: not a Git repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_commit: Option<String>,
    /// SHA-256 over the fleet repo's files: `apply` refuses the plan if it changed.
    pub fleet_digest: String,
    /// The instant the plan is evaluated at (RFC 3339).
    pub planned_at: String,
    /// When the observed state was taken (RFC 3339).
    pub observed_at: String,
    /// The advisory data the plan's `fixes` come from (`sha256:...`, see `patchkeeper
    /// advisories status`); absent when none was imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory_snapshot: Option<String>,
    /// One entry per inventory host, sorted by name.
    pub hosts: Vec<HostPlan>,
    /// Batches in the order apply runs them.
    pub batches: Vec<Batch>,
    /// Counts.
    pub summary: Summary,
}

/// What the plan does with one host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "PlanHostStatus")]
pub enum HostStatus {
    /// Changes are planned and its batch's window is open now.
    Update,
    /// Changes are planned; its window is closed now (outside schedule or in the cutoff).
    Waiting,
    /// Changes are planned; a freeze is in force.
    Frozen,
    /// Something prevents the change (held package, version not offered, ...).
    Blocked,
    /// The host could not be observed.
    Unreachable,
    /// Nothing to do.
    Compliant,
    /// No baseline applies: observed but never changed.
    Unmanaged,
}

impl HostStatus {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Update => "update",
            HostStatus::Waiting => "waiting",
            HostStatus::Frozen => "frozen",
            HostStatus::Blocked => "blocked",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Compliant => "compliant",
            HostStatus::Unmanaged => "unmanaged",
        }
    }

    /// Whether changes are planned for the host (now or later).
    pub fn has_changes(self) -> bool {
        matches!(
            self,
            HostStatus::Update | HostStatus::Waiting | HostStatus::Frozen
        )
    }
}

/// One host's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPlan {
    /// Inventory name.
    pub host: String,
    /// What happens to it.
    pub status: HostStatus,
    /// Package manager observed (or declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// Baselines that apply (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<String>,
    /// Patch requests that apply (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<String>,
    /// The window governing the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Why that window, when a patch request names an emergency window: taken (its
    /// deadline comes before the normal window opens) or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_reason: Option<String>,
    /// The rollout governing the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// Package changes, sorted by package name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why the host is blocked, unreachable, waiting or frozen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Updates deliberately left alone (held, excluded, not yet old enough), for the reader.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Fingerprint of the observed state the plan was computed from (`apply` re-checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Index into `batches` of the batch that changes this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// The host already needs a reboot, or a changed package asks for one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reboot_required: bool,
    /// Whether the transaction was dry-run on the host, so `changes` include what the
    /// package manager pulls in alongside (absent: the host has no transaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<DependencyCheck>,
    /// What apply will meet on the host that does not block it (e.g. the package manager
    /// was locked when observed: apply waits up to `apply.lockWait`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl HostPlan {
    /// The transaction apply asks the package manager for (see [`requested`]).
    pub fn requested(&self) -> Vec<(String, String)> {
        requested(&self.changes)
    }
}

/// One package transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Change {
    /// Package name.
    pub package: String,
    /// Architecture.
    pub arch: String,
    /// Installed version (`None`: newly installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Exact target version.
    pub to: String,
    /// From a security origin / advisory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub security: bool,
    /// Where the target version comes from (repository origin).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// Why, sorted (several rules may ask for the same change).
    pub reasons: Vec<Reason>,
    /// For a promoting baseline's host: the source hosts that proved this exact version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promoted>,
    /// Advisories the change closes on this host (most severe first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Fix>,
}

/// An advisory a change closes (or a left-alone update would close).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fix {
    /// Advisory id (`DSA-5800-1`, `RHSA-2026:1234`, `CVE-2026-1234`).
    pub id: String,
    /// CVE ids it covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// Its severity.
    pub severity: crate::advisory::Severity,
    /// The VulnerabilityException in force that accepts the advisory on this host (name,
    /// owner, reason, expiry): the risk is accepted until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<crate::advisory::matcher::Excepted>,
}

impl Fix {
    /// `DSA-5800-1/CVE-2026-1001 (high)`, or with an exception in force `CVE-2026-9006
    /// (high; accepted by exception/NAME, owner OWNER, until 2026-12-31T00:00:00Z)`.
    pub fn label(&self) -> String {
        let mut ids = vec![self.id.clone()];
        ids.extend(self.cves.iter().filter(|c| **c != self.id).cloned());
        match &self.exception {
            Some(e) => format!(
                "{} ({}; accepted by exception/{}, owner {}, until {})",
                ids.join("/"),
                self.severity,
                e.name,
                e.owner,
                e.expires
            ),
            None => format!("{} ({})", ids.join("/"), self.severity),
        }
    }
}

/// `exception/NAME` for each VulnerabilityException in force that accepts one of `fixes`
/// (sorted, once each): who answers for an update left alone that would close them.
pub fn exception_holders(fixes: &[Fix]) -> Vec<String> {
    let mut out: Vec<String> = fixes
        .iter()
        .filter_map(|f| f.exception.as_ref())
        .map(|e| format!("exception/{}", e.name))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `fixes A (high), B (low)`, at most three named.
pub fn fixes_label(fixes: &[Fix]) -> String {
    let shown: Vec<String> = fixes.iter().take(3).map(Fix::label).collect();
    let more = fixes.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Why a change is planned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reason {
    /// `baseline/NAME`, `request/NAME`, or `package-manager` (the host's package manager
    /// pulls it in for the other changes, found by the dependency dry run).
    pub source: String,
    /// The rule.
    pub rule: Rule,
    /// For a patch request with a deadline: when the change is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
}

/// The rule behind a change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A minimum version (or presence) named in a baseline or request.
    MinVersion,
    /// A pending security update approved by `updates.classes: security` or `all`.
    SecurityUpdate,
    /// A pending regular update approved by `updates.classes: all`.
    AllUpdates,
    /// The package manager needs it for another change.
    Dependency,
}

impl Rule {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MinVersion => "min-version",
            Rule::SecurityUpdate => "security",
            Rule::AllUpdates => "update",
            Rule::Dependency => "dependency",
        }
    }
}

/// An update the plan leaves alone on purpose.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Skipped {
    /// Package name.
    pub package: String,
    /// The version offered.
    pub version: String,
    /// Why it is left alone.
    pub why: String,
    /// For an update waiting for promotion: how far the closest version is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionWait>,
    /// The installed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A security update.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub security: bool,
    /// Who holds it back: `host` (dpkg hold, dnf versionlock or exclude), `baseline/NAME`
    /// (its `hold` or `exclude`), and `exception/NAME` for a VulnerabilityException in
    /// force that accepts an advisory it would close (owner and expiry in `fixes`); empty
    /// when it is left alone for another reason (not yet old enough, below `minSeverity`)
    /// and no exception covers what it would fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<String>,
    /// Advisories it would close.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Fix>,
}

/// A batch: hosts changed together, after every earlier batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Batch {
    /// 0-based position in the plan.
    pub index: usize,
    /// The rollout.
    pub rollout: String,
    /// The rollout stage this batch belongs to.
    pub stage: String,
    /// The window.
    pub window: String,
    /// Hosts, in order.
    pub hosts: Vec<String>,
    /// Hosts changed at once.
    pub parallelism: u32,
    /// The window's state at the plan's instant.
    pub window_state: BatchWindow,
}

/// A batch's window state at the plan's instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum BatchWindow {
    /// The batch may start now.
    RunsNow {
        /// When the window closes (`None`: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// When no new batch may start any more.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cutoff_at: Option<String>,
    },
    /// The window is closed; the batch waits.
    Waits {
        /// Next opening (`None`: none found).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// `outside-schedule` or `cutoff`.
        why: String,
    },
    /// A freeze is in force.
    Frozen {
        /// Freeze name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        freeze: Option<String>,
        /// When the freeze ends.
        until: String,
        /// Next opening after the freeze.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_open: Option<String>,
    },
}

impl BatchWindow {
    /// Whether the batch may start at the plan's instant.
    pub fn runs_now(&self) -> bool {
        matches!(self, BatchWindow::RunsNow { .. })
    }
}

/// Plan counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Summary {
    /// Hosts with changes planned (now or later).
    pub hosts_to_update: usize,
    /// Package changes over those hosts.
    pub packages: usize,
    /// Hosts whose changes can start now.
    pub runs_now: usize,
    /// Hosts waiting for their window or frozen.
    pub waiting: usize,
    /// Blocked hosts.
    pub blocked: usize,
    /// Unreachable hosts.
    pub unreachable: usize,
    /// Compliant hosts.
    pub compliant: usize,
    /// Hosts no baseline applies to.
    pub unmanaged: usize,
}

impl Plan {
    /// Whether the plan changes anything (now or later) — `--detailed-exitcode`'s 2.
    pub fn has_changes(&self) -> bool {
        self.summary.hosts_to_update > 0
    }

    /// The host's part of the plan.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts
            .binary_search_by(|h| h.host.as_str().cmp(name))
            .ok()
            .map(|i| &self.hosts[i])
    }

    /// The JSON Schema of the plan format.
    pub fn schema_text() -> String {
        crate::schema::schema_text_for::<Plan>("Plan")
    }
}

/// When each pending update was first seen offered, by (host, package, version); kept in
/// the reports. Updates missing from it count as first seen at the plan's instant.
pub type FirstSeen = BTreeMap<(String, String, String), Timestamp>;

/// Everything the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The desired state.
    pub fleet: &'a ValidFleet,
    /// The fleet repo commit, if known.
    pub fleet_commit: Option<&'a str>,
    /// The observed state.
    pub observed: &'a ObservedFleet,
    /// The instant to evaluate windows and delays at.
    pub at: Timestamp,
    /// When updates were first seen.
    pub first_seen: &'a FirstSeen,
    /// Dry runs of the hosts' transactions (`None`: planning offline, nothing simulated).
    pub simulations: Option<&'a Simulations>,
    /// What the reports prove about promotion sources' versions (empty: nothing proven,
    /// so promoting baselines' hosts wait).
    pub promotion: &'a Evidence,
    /// The hosts' advisory findings (`None`: no advisory data): changes say which
    /// advisories they close, and `updates.minSeverity` can select by them.
    pub advisories: Option<&'a crate::advisory::Assessment>,
}

/// Computes the plan. Pure and deterministic: same input, byte-identical JSON.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut hosts = transactions::plan_hosts(&input);
    let batches = batches::plan_batches(&input, &mut hosts);
    let mut summary = Summary::default();
    for h in &hosts {
        match h.status {
            HostStatus::Update => summary.runs_now += 1,
            HostStatus::Waiting | HostStatus::Frozen => summary.waiting += 1,
            HostStatus::Blocked => summary.blocked += 1,
            HostStatus::Unreachable => summary.unreachable += 1,
            HostStatus::Compliant => summary.compliant += 1,
            HostStatus::Unmanaged => summary.unmanaged += 1,
        }
        if h.status.has_changes() {
            summary.hosts_to_update += 1;
            summary.packages += h.changes.len();
        }
    }
    Plan {
        format: PLAN_FORMAT,
        fleet_commit: input.fleet_commit.map(str::to_owned),
        fleet_digest: input.fleet.fleet().digest.clone(),
        planned_at: input.at.to_string(),
        observed_at: input.observed.observed_at.clone(),
        advisory_snapshot: input.advisories.and_then(|a| a.snapshot.clone()),
        hosts,
        batches,
        summary,
    }
}
