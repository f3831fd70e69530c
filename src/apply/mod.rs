//! `apply`: executes a plan against real hosts, safely. An imperative shell ([`run`] for
//! batches, windows, the failure budget and interruption; `host` for one host's steps) over
//! pure decisions ([`decide`]) and two pieces of safety machinery: the fleet [`lock`] and
//! the step [`journal`].
//!
//! Guarantees: nothing outside the plan is installed (exact versions only); a host whose
//! state drifted since the plan is refused; every failed transaction, verification or health
//! check is rolled back to the recorded versions, or the host is marked failed saying why
//! not; a package transaction is never abandoned half-way by us (interrupts and the failure
//! budget stop hosts *between* steps); every step is on disk before the next one begins.
//!
//! This module knows nothing about terminals or exit codes (the CLI does) and nothing about
//! how plans are computed.

pub mod decide;
mod host;
pub mod journal;
pub mod lock;
pub mod recover;
pub mod run;

use serde::{Deserialize, Serialize};

pub use run::{
    connections_at_once, execute, execute_one, ApplyOptions, Clock, GateFuture, HostGate, HostPass,
    HostRunner, Progress, RemoteHost, Stop, SystemClock,
};

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every planned version installed and verified (or nothing to do).
    Compliant,
    /// Compliant, but the host needs a reboot the rollout's policy does not allow.
    PendingReboot,
    /// Something failed and the host was put back at its recorded versions.
    RolledBack,
    /// Something failed and the host could not be (or was not to be) rolled back.
    Failed,
    /// The host's state moved since the plan: refused, untouched.
    Stale,
    /// Not started on the host, nothing changed: its package manager stayed locked past
    /// `apply.lockWait`, or it lacked free disk.
    Skipped,
    /// The host could not be reached (or was lost mid-way).
    Unreachable,
    /// Never started: the failure budget halted the rollout, or apply was interrupted.
    NotStarted,
    /// Never started: its window was closed (or in its cutoff) when the batch was due.
    Waiting,
    /// The plan blocks it (held package, version not offered ...): not touched.
    Blocked,
    /// No baseline applies: never touched.
    Unmanaged,
}

impl Outcome {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Compliant => "compliant",
            Outcome::PendingReboot => "pending-reboot",
            Outcome::RolledBack => "rolled-back",
            Outcome::Failed => "failed",
            Outcome::Stale => "stale",
            Outcome::Skipped => "skipped",
            Outcome::Unreachable => "unreachable",
            Outcome::NotStarted => "not-started",
            Outcome::Waiting => "waiting",
            Outcome::Blocked => "blocked",
            Outcome::Unmanaged => "unmanaged",
        }
    }

    /// Counts against the rollout's failure budget.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::RolledBack | Outcome::Failed | Outcome::Unreachable
        )
    }
}

/// One host's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostResult {
    /// Inventory name.
    pub host: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, step by step, in words.
    pub detail: Vec<String>,
    /// Package changes this run made on the host (the plan's count once its transaction
    /// succeeded; 0 when it never ran or was rolled back).
    pub changes: usize,
    /// Wall time spent on the host, in milliseconds.
    pub millis: u64,
    /// When work on the host started (`None`: never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
    /// Reboots made on the host: boot id before and after each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reboots: Vec<Reboot>,
}

impl HostResult {
    /// The result of a host a run did not start: it changed nothing.
    pub fn untouched(host: &str, outcome: Outcome, detail: Vec<String>) -> HostResult {
        HostResult {
            host: host.to_string(),
            outcome,
            detail,
            changes: 0,
            millis: 0,
            started_at: None,
            finished_at: None,
            reboots: Vec::new(),
        }
    }
}

/// A reboot apply made: the boot id before and the new one after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reboot {
    /// Boot id before the reboot.
    pub from: String,
    /// Boot id the host came back with.
    pub to: String,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// The run id.
    pub run: String,
    /// The plan id.
    pub plan: String,
    /// Every host of the plan, in plan order (sorted by name).
    pub hosts: Vec<HostResult>,
    /// Rollouts halted by their failure budget.
    pub halted: Vec<String>,
    /// Apply was interrupted (SIGINT/SIGTERM).
    pub interrupted: bool,
}

impl ApplyReport {
    /// Every host with planned changes ended compliant and none was unreachable.
    pub fn converged(&self) -> bool {
        self.hosts.iter().all(|h| {
            matches!(
                h.outcome,
                Outcome::Compliant | Outcome::Blocked | Outcome::Unmanaged
            )
        })
    }

    /// Nothing failed; some hosts wait for a window or were interrupted before starting.
    pub fn only_waiting(&self) -> bool {
        !self.converged()
            && self.hosts.iter().all(|h| {
                matches!(
                    h.outcome,
                    Outcome::Compliant
                        | Outcome::Blocked
                        | Outcome::Unmanaged
                        | Outcome::Waiting
                        | Outcome::NotStarted
                )
            })
            && self.halted.is_empty()
    }
}

/// The id of a plan: SHA-256 of its JSON.
pub fn plan_id(plan: &crate::plan::Plan) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(plan).expect("plans always serialize");
    sha2::Sha256::digest(&json)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `apply.lockWait` when unset.
pub const DEFAULT_LOCK_WAIT: &str = "5m";
/// `apply.transactionTimeout` when unset: long enough for any sane package transaction,
/// short enough that a hung maintainer script does not stall `serve` forever.
pub const DEFAULT_TRANSACTION_TIMEOUT: &str = "2h";

/// A duration setting, or its default (validation has rejected unparsable values already).
pub(crate) fn duration_setting(value: &Option<String>, default: &str) -> std::time::Duration {
    crate::duration::parse_duration(value.as_deref().unwrap_or(default))
        .or_else(|_| crate::duration::parse_duration(default))
        .unwrap_or(std::time::Duration::from_secs(300))
}

/// The fleet's local state directory (lock, journal): `<repo>/.patchkeeper` (the loader skips
/// hidden directories, so it never becomes part of the desired state).
pub fn state_dir(repo: &std::path::Path) -> std::path::PathBuf {
    repo.join(".patchkeeper")
}

/// Creates the state directory with a `.gitignore` of `*` in it, so the lock, the journal
/// and checkouts never show as untracked in the fleet repo (`git add -A` cannot commit
/// them); an existing `.gitignore` is left as the operator wrote it.
pub fn create_state_dir(state_dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let ignore = state_dir.join(".gitignore");
    if !ignore.exists() {
        crate::durable::write(
            &ignore,
            b"# patchkeeper's local state (lock, journal): never committed\n*\n",
        )?;
    }
    Ok(())
}
