//! Reports in Git: per-host compliance, one record per run and a fleet summary, committed
//! to the reports branch (default `patchkeeper/reports`) without a working tree, optionally
//! signed, and pushed with retry so concurrent writers never lose or overwrite a report.
//!
//! The branch holds (formats in `docs/reports.md`, schemas in `schemas/`):
//! - `hosts/<name>.json` — [`HostReport`]: the host's current compliance;
//! - `runs/<run-id>.json` — [`RunRecord`]: one per observe or apply run;
//! - `summary.json` — [`Summary`]: counts over every host file on the branch;
//! - `packages/<name>.txt` — the host's installed packages at its last observation
//!   ([`package_list`]), read back by [`run_packages`] for `report --diff RUN`;
//! - `installed/<name>.json` — [`InstalledRecord`]: the installed versions, with since when,
//!   of the hosts a baseline promotes from (`report/evidence.rs`).
//!
//! This is the only module (with [`crate::source`]) that links git2; evaluation itself is
//! [`crate::compliance`], which this module feeds and writes out.

mod events;
pub mod evidence;
mod git;
pub mod pack;
pub mod package_list;
mod sign;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::apply::{ApplyReport, Outcome};
use crate::compliance::{self, ComplianceState, HostCompliance, HostConfig, HostRunOutcome};
use crate::observed::ObservedFleet;
use crate::plan::Plan;
use crate::policy::Policy;
use crate::validate::ValidFleet;

pub use events::{advisory_events, AdvisoryEvent, AdvisoryEventKind};
pub use evidence::{EarlierVersion, InstalledHistory, InstalledRecord};
pub use git::{annotate, open_remote_callbacks, token_allowed, GitAuth};

/// The reports branch when Settings name none.
pub const DEFAULT_BRANCH: &str = "patchkeeper/reports";

/// How often a commit is rebuilt on a moved tip before giving up.
pub const MAX_ATTEMPTS: u32 = 20;

/// Author of report commits when Settings name none.
pub const DEFAULT_AUTHOR: (&str, &str) = ("patchkeeper", "patchkeeper@localhost");

/// Errors of writing or reading reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A git operation failed.
    #[error("reports: {what}: {}", source.message())]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// Neither the directory nor any above it is a Git repository.
    #[error("reports: `{}` is not in a Git repository (reports live on a branch of the fleet repo's Git repository): {message}", path.display())]
    NotARepository {
        /// The directory.
        path: PathBuf,
        /// libgit2's words.
        message: String,
    },
    /// A report file on the branch is not valid JSON of its format.
    #[error("reports branch {branch}: {path}: {source}")]
    Format {
        /// The branch.
        branch: String,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The lock that serializes report writers on this machine could not be taken.
    #[error("reports: cannot lock `{}`: {source}", path.display())]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tip kept moving: every attempt was overtaken by another writer.
    #[error("reports branch {branch}: gave up after {attempts} attempts, other writers kept moving the tip")]
    Contended {
        /// The branch.
        branch: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The remote refused the push for another reason than a moved tip.
    #[error("reports: push to {remote} rejected: {message}")]
    PushRejected {
        /// The remote.
        remote: String,
        /// The server's message.
        message: String,
    },
    /// The fleet repo names a file this machine does not allow.
    #[error("reports: {0}")]
    Trust(#[from] crate::trust::TrustError),
    /// Signing the commit failed.
    #[error("reports: signing with {key}: {message}")]
    Signing {
        /// The key.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// The compliance policy or a host's configuration is unusable.
    #[error("reports: {0}")]
    Config(String),
    /// The pack of a commit's new blobs could not be written.
    #[error("reports: write the pack of new report files: {0}")]
    Pack(#[from] pack::PackError),
}

/// What kind of run a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// Hosts were observed only.
    Observe,
    /// A plan was applied.
    Apply,
    /// A desired commit was validated and rejected (no host was touched).
    Validate,
}

impl RunKind {
    /// `observe` or `apply`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Observe => "observe",
            RunKind::Apply => "apply",
            RunKind::Validate => "validate",
        }
    }
}

/// A package change made by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageChange {
    /// Package name.
    pub package: String,
    /// Version before (`None`: newly installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version after.
    pub to: String,
    /// Why it was made: `RULE SOURCE`, e.g. `security baseline/web`, `min-version
    /// request/cve-2026-1234`, `dependency package-manager` (absent in records written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// One host's part of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostRun {
    /// Host name.
    pub host: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: HostRunOutcome,
    /// When work on the host started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<Timestamp>,
    /// Packages changed (and kept; rolled-back changes are not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PackageChange>,
    /// For a rolled-back host, or one that failed after its transaction started: the
    /// changes it tried (the versions that failed there; staged promotion never promotes
    /// them from this host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempted: Vec<PackageChange>,
    /// Reboots made on the host: boot id before and after each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reboots: Vec<crate::apply::Reboot>,
}

/// Who and what, beyond the plan, stands behind an apply run: recorded in its run record
/// and as commit trailers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAudit {
    /// Who ran apply (`--actor`, the CI's identity, or the local user).
    pub applied_by: Option<String>,
    /// Patch request name → its `requestedBy`.
    pub requesters: BTreeMap<String, String>,
    /// Flags that overrode a safeguard, in words (`--at …`, `--auto-approve …`).
    pub overrides: Vec<String>,
}

/// One run: the content of `runs/<run-id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Unique id (`20261124T020000Z-apply-1a2b3c`): sorts by start time.
    pub run_id: String,
    /// Observe or apply.
    pub kind: RunKind,
    /// Start.
    #[schemars(with = "String")]
    pub started_at: Timestamp,
    /// End.
    #[schemars(with = "String")]
    pub finished_at: Timestamp,
    /// The fleet-repo commit the run worked from.
    pub desired_commit: String,
    /// The plan's counts (apply runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::Summary>,
    /// Per-host outcomes, sorted by host.
    pub hosts: Vec<HostRun>,
    /// Why the run did not happen (validate runs: the validation errors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Validate runs: the last good fleet commit, still in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_commit: Option<String>,
    /// Who ran it (apply runs: `--actor`, the CI's identity from the environment, or the
    /// local user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    /// Who asked for the changes: `NAME (request/REQUEST)` for each patch request behind a
    /// change this run made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_by: Vec<String>,
    /// Safeguards overridden for this run, in words (`--at TIME`, `--break-lock`,
    /// `--auto-approve` without a terminal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// Advisory events of the run: critical advisories newly open or closed, advisories
    /// newly overdue (for the API, the dashboard and alerts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<AdvisoryEvent>,
}

impl RunRecord {
    /// A fresh run id for a run of `kind` starting at `started`: sortable by time, and
    /// unique across concurrent writers (a hash of time, process and a counter).
    pub fn new_id(kind: RunKind, started: Timestamp) -> String {
        use sha2::{Digest, Sha256};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update(Timestamp::now().as_nanosecond().to_le_bytes());
        h.update(started.as_nanosecond().to_le_bytes());
        let digest = h.finalize();
        let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{suffix}",
            started.strftime("%Y%m%dT%H%M%SZ"),
            kind.as_str()
        )
    }

    fn outcome_of(&self, host: &str) -> Option<&HostRunOutcome> {
        self.host(host).map(|h| &h.outcome)
    }

    fn host(&self, host: &str) -> Option<&HostRun> {
        self.hosts.iter().find(|h| h.host == host)
    }
}

/// A host's file on the reports branch: `hosts/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    /// The fleet-repo commit evaluated.
    pub desired_commit: String,
    /// The run that wrote this file.
    pub run_id: String,
    /// The compliance.
    #[serde(flatten)]
    pub compliance: HostCompliance,
    /// Package versions that failed on this host (rolled back, failed after being
    /// installed, non-compliant because of them), newest first: staged promotion never
    /// promotes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<crate::plan::promotion::Incident>,
    /// For a host some baseline promotes from: the digest of its installed packages when
    /// `installed/<name>.json` was last written (see `report/evidence.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_digest: Option<String>,
}

/// One line of the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryHost {
    /// Host name.
    pub host: String,
    /// Its state.
    pub state: ComplianceState,
    /// Rules it breaks.
    pub broken_rules: Vec<String>,
}

/// The fleet summary: `summary.json`, computed from every `hosts/*.json` on the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The run whose commit wrote this summary.
    pub run_id: String,
    /// The fleet-repo commit of that run.
    pub desired_commit: String,
    /// When it was written.
    #[schemars(with = "String")]
    pub generated_at: Timestamp,
    /// The policy the hosts were judged by (`built-in policy` or a file).
    pub policy: String,
    /// Number of hosts.
    pub total: usize,
    /// Hosts per state (every state present, zeros included).
    pub counts: BTreeMap<ComplianceState, usize>,
    /// Hosts per broken rule id.
    pub broken_rules: BTreeMap<String, usize>,
    /// Every host, sorted by name.
    pub hosts: Vec<SummaryHost>,
    /// Open advisories over the hosts (absent when no report carries advisory data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisories: Option<AdvisorySummary>,
}

/// Open advisories over every host file of the branch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisorySummary {
    /// Open advisories per severity, exceptions in force aside (every level present).
    pub open: BTreeMap<crate::advisory::Severity, usize>,
    /// Open advisories past their due date.
    pub overdue: usize,
    /// Findings accepted by an exception in force.
    pub excepted: usize,
    /// Hosts with an open critical advisory, sorted.
    pub hosts_with_critical: Vec<String>,
    /// The advisory snapshots the host files name.
    pub snapshots: Vec<String>,
}

impl Summary {
    fn compute(
        hosts: &[HostReport],
        run_id: &str,
        desired: &str,
        policy: &str,
        now: Timestamp,
    ) -> Summary {
        let mut counts: BTreeMap<ComplianceState, usize> =
            ComplianceState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut broken: BTreeMap<String, usize> = BTreeMap::new();
        for h in hosts {
            *counts.entry(h.compliance.state).or_default() += 1;
            for r in &h.compliance.broken_rules {
                *broken.entry(r.clone()).or_default() += 1;
            }
        }
        let mut advisories = AdvisorySummary {
            open: crate::advisory::Severity::ALL
                .iter()
                .map(|s| (*s, 0))
                .collect(),
            ..AdvisorySummary::default()
        };
        let mut any_advisory_data = false;
        for h in hosts {
            let c = &h.compliance;
            if let Some(s) = &c.advisory_snapshot {
                any_advisory_data = true;
                if !advisories.snapshots.contains(s) {
                    advisories.snapshots.push(s.clone());
                }
            }
            let mut critical = false;
            for a in &c.advisories {
                if a.advisory
                    .exception
                    .as_ref()
                    .is_some_and(|e| e.expires > now)
                {
                    advisories.excepted += 1;
                    continue;
                }
                *advisories.open.entry(a.advisory.severity).or_default() += 1;
                critical |= a.advisory.severity == crate::advisory::Severity::Critical;
                if a.overdue(now) {
                    advisories.overdue += 1;
                }
            }
            if critical {
                advisories.hosts_with_critical.push(c.host.clone());
            }
        }
        advisories.snapshots.sort();
        Summary {
            advisories: any_advisory_data.then_some(advisories),
            run_id: run_id.to_owned(),
            desired_commit: desired.to_owned(),
            generated_at: now,
            policy: policy.to_owned(),
            total: hosts.len(),
            counts,
            broken_rules: broken,
            hosts: hosts
                .iter()
                .map(|h| SummaryHost {
                    host: h.compliance.host.clone(),
                    state: h.compliance.state,
                    broken_rules: h.compliance.broken_rules.clone(),
                })
                .collect(),
        }
    }

    /// Hosts in `state`.
    pub fn count(&self, state: ComplianceState) -> usize {
        self.counts.get(&state).copied().unwrap_or(0)
    }
}

/// What was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The report commit's id (hex); when nothing was committed, the branch tip that
    /// already says it all.
    pub commit: String,
    /// False when nothing was committed: an observation that changed no host's facts,
    /// within `reports.heartbeat` of the last report commit.
    pub committed: bool,
    /// The run id.
    pub run_id: String,
    /// Attempts it took (more than 1 when other writers moved the tip).
    pub attempts: u32,
    /// Whether it was pushed to a remote.
    pub pushed: bool,
    /// Set when the writer's leader term ([`ReportTarget::fence`]) was older than this
    /// term on the branch: only the run record was committed, every host file was kept.
    pub deposed_by: Option<LeaderTerm>,
}

/// A cluster leader's term, the fencing token of its report commits: the leader bucket's
/// creation time (Unix seconds: the bucket of a rebuilt server is newer, though its
/// revisions start again at 1) and the revision of the write that took the lease (within
/// one bucket, every later take has a larger one). Ordered by both, in that order; written
/// `EPOCH.REVISION` in the `Leader-Term` trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderTerm {
    /// When the leader bucket was made (Unix seconds, the server's clock).
    pub epoch: u64,
    /// The lease revision of the take.
    pub revision: u64,
}

impl std::fmt::Display for LeaderTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.revision)
    }
}

impl std::str::FromStr for LeaderTerm {
    type Err = String;

    fn from_str(s: &str) -> Result<LeaderTerm, String> {
        let (epoch, revision) = s
            .split_once('.')
            .ok_or_else(|| format!("`{s}` is not EPOCH.REVISION"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("`{s}` is not EPOCH.REVISION: {e}"))
        };
        Ok(LeaderTerm {
            epoch: number(epoch)?,
            revision: number(revision)?,
        })
    }
}

/// Where and how reports are written; built from Settings by [`ReportTarget::from_fleet`].
#[derive(Debug, Clone)]
pub struct ReportTarget {
    /// The Git repository holding the reports branch (the fleet repo, bare or not).
    pub repo: PathBuf,
    /// Branch name (without `refs/heads/`).
    pub branch: String,
    /// Remote name or URL to push to.
    pub remote: Option<String>,
    /// Credentials for the remote.
    pub auth: GitAuth,
    /// Commit author and committer.
    pub author: (String, String),
    /// How commits are signed (`None`: unsigned).
    pub signing: Option<Signing>,
    /// Set when the fleet repo names a signing key or a local remote this machine does not
    /// allow ([`crate::trust`]): nothing is committed to this target.
    pub refused: Option<crate::trust::TrustError>,
    /// `reports.heartbeat`: an observation that changed nothing is committed only when the
    /// last report commit is older than this.
    pub heartbeat: std::time::Duration,
    /// The writer's leader term (`serve --cluster`): a commit by a leader whose term is
    /// older than the newest `Leader-Term` on the branch keeps every host file as it is
    /// and records only its run, marked `Deposed-Leader-Term` (`None`: no fencing).
    pub fence: Option<LeaderTerm>,
}

/// `reports.heartbeat` when unset.
pub const DEFAULT_HEARTBEAT: &str = "24h";

/// How report commits are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// With this SSH private key (or public key whose private half is in the agent).
    Ssh(PathBuf),
    /// With this GnuPG key id or fingerprint.
    OpenPgp(String),
}

impl Signing {
    /// The key, for messages.
    pub fn key(&self) -> String {
        match self {
            Signing::Ssh(path) => path.display().to_string(),
            Signing::OpenPgp(id) => id.clone(),
        }
    }
}

impl ReportTarget {
    /// Reads the report settings of `fleet` for the repository at `repo` (relative key
    /// paths are relative to the fleet root).
    ///
    /// The signing key and a local remote named by the repo must lie inside the fleet repo
    /// or a directory this machine allows ([`crate::trust::ControllerTrust::current`]);
    /// otherwise the target is `refused` and every commit to it fails with that reason.
    pub fn from_fleet(repo: &Path, fleet: &ValidFleet) -> ReportTarget {
        let settings = fleet.settings().reports;
        let root = &fleet.fleet().root;
        let trust = crate::trust::ControllerTrust::current();
        let key_refused = match (&settings.signing_key, settings.signing_format) {
            (Some(key), None | Some(crate::model::SigningFormat::Ssh)) => trust
                .check_path(root, "reports.signingKey", key, &root.join(key))
                .err(),
            _ => None,
        };
        let remote_refused = settings.remote.as_deref().and_then(|r| {
            // A bare name is a remote of the repository's own configuration (the
            // operator's); a path or `file://` URL is a directory on this machine.
            let path = git::local_remote_path(r).filter(|_| r.contains('/'))?;
            trust
                .check_path(root, "reports.remote", r, &root.join(path))
                .err()
        });
        ReportTarget {
            refused: key_refused.or(remote_refused),
            heartbeat: crate::apply::duration_setting(&settings.heartbeat, DEFAULT_HEARTBEAT),
            fence: None,
            repo: repo.to_owned(),
            branch: settings.branch.unwrap_or_else(|| DEFAULT_BRANCH.to_owned()),
            remote: settings.remote,
            auth: GitAuth::from_env(),
            author: settings
                .author
                .map(|a| (a.name, a.email))
                .unwrap_or_else(|| (DEFAULT_AUTHOR.0.into(), DEFAULT_AUTHOR.1.into())),
            signing: settings
                .signing_key
                .map(|key| match settings.signing_format {
                    Some(crate::model::SigningFormat::Openpgp) => Signing::OpenPgp(key),
                    Some(crate::model::SigningFormat::Ssh) | None => Signing::Ssh(root.join(key)),
                }),
        }
    }
}

/// Records an observation: evaluates every host of `fleet` against `observed` and commits
/// the reports (a run record of kind `observe`). See [`record`] for the guarantees.
pub fn record_observation(
    repo: &Path,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    desired_commit: &str,
    now: Timestamp,
) -> Result<Recorded, ReportError> {
    let run = observation_run(observed, desired_commit, now);
    record(
        &ReportTarget::from_fleet(repo, fleet),
        fleet,
        Some(observed),
        &run,
        now,
    )
}

/// The run record of an observation: each host unchanged, unreachable or failed.
pub fn observation_run(
    observed: &ObservedFleet,
    desired_commit: &str,
    now: Timestamp,
) -> RunRecord {
    let started = observed.observed_at.parse::<Timestamp>().unwrap_or(now);
    RunRecord {
        run_id: RunRecord::new_id(RunKind::Observe, started),
        kind: RunKind::Observe,
        started_at: started,
        finished_at: now,
        desired_commit: desired_commit.to_owned(),
        plan: None,
        hosts: observed
            .hosts
            .iter()
            .map(|h| HostRun {
                host: h.name.clone(),
                outcome: match &h.status {
                    crate::observed::HostStatus::Reachable => HostRunOutcome::Unchanged,
                    crate::observed::HostStatus::Unreachable { reason } => {
                        HostRunOutcome::Unreachable {
                            reason: reason.to_string(),
                        }
                    }
                    crate::observed::HostStatus::Error { reason } => HostRunOutcome::Failed {
                        reason: format!("observation failed: {reason}"),
                    },
                },
                started_at: None,
                finished_at: None,
                changes: Vec::new(),
                attempted: Vec::new(),
                reboots: Vec::new(),
            })
            .collect(),
        errors: Vec::new(),
        last_good_commit: None,
        applied_by: None,
        requested_by: Vec::new(),
        overrides: Vec::new(),
        events: Vec::new(),
    }
}

/// The run record of an apply: per host what the executor did (with when), the plan's
/// package changes and their reasons for hosts this run updated, reboots, who ran it, who
/// asked, and the safeguards overridden. Its id is the apply's own (`applied.run`), the one
/// its journal lines carry.
pub fn apply_run(
    plan: &Plan,
    applied: &ApplyReport,
    desired_commit: &str,
    started: Timestamp,
    finished: Timestamp,
    audit: &RunAudit,
) -> RunRecord {
    let mut requested: std::collections::BTreeSet<String> = Default::default();
    let mut hosts: Vec<HostRun> = applied
        .hosts
        .iter()
        .map(|h| {
            let reason = || {
                if h.detail.is_empty() {
                    h.outcome.as_str().to_owned()
                } else {
                    h.detail.join("; ")
                }
            };
            let planned: Vec<&crate::plan::Change> = plan
                .hosts
                .iter()
                .filter(|p| p.host == h.host)
                .flat_map(|p| &p.changes)
                .collect();
            // Updated only when this run made the changes (not an earlier run of the plan).
            let made = h.changes > 0 && !planned.is_empty();
            let (outcome, made) = match h.outcome {
                Outcome::Compliant | Outcome::PendingReboot if made => {
                    (HostRunOutcome::Updated, true)
                }
                Outcome::Compliant
                | Outcome::PendingReboot
                | Outcome::Blocked
                | Outcome::Unmanaged => (HostRunOutcome::Unchanged, false),
                Outcome::RolledBack => (HostRunOutcome::RolledBack { reason: reason() }, false),
                // Packages kept at the planned versions (a post command failed after them).
                Outcome::Failed => (HostRunOutcome::Failed { reason: reason() }, made),
                Outcome::Stale => (
                    HostRunOutcome::Skipped {
                        reason: format!("stale: {}", reason()),
                    },
                    false,
                ),
                Outcome::Skipped => (HostRunOutcome::Skipped { reason: reason() }, false),
                Outcome::Unreachable => (HostRunOutcome::Unreachable { reason: reason() }, false),
                Outcome::NotStarted | Outcome::Waiting => {
                    (HostRunOutcome::NotStarted { reason: reason() }, false)
                }
            };
            let record = |c: &&crate::plan::Change| PackageChange {
                package: c.package.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                reasons: c
                    .reasons
                    .iter()
                    .map(|r| format!("{} {}", r.rule.as_str(), r.source))
                    .collect(),
            };
            let changes: Vec<PackageChange> = if made {
                planned.iter().map(record).collect()
            } else {
                Vec::new()
            };
            // The versions tried and failed there: a rollback, or a failure after the
            // package transaction started (one before it says "nothing changed"). Staged
            // promotion never promotes them from this host.
            let tried = h.outcome == Outcome::RolledBack
                || (h.outcome == Outcome::Failed
                    && !h.detail.iter().any(|d| d.contains("nothing changed")));
            let attempted: Vec<PackageChange> = if tried {
                planned.iter().map(record).collect()
            } else {
                Vec::new()
            };
            for c in planned.iter().filter(|_| made) {
                for r in &c.reasons {
                    if let Some(name) = r.source.strip_prefix("request/") {
                        if let Some(who) = audit.requesters.get(name) {
                            requested.insert(format!("{who} (request/{name})"));
                        }
                    }
                }
            }
            HostRun {
                host: h.host.clone(),
                outcome,
                started_at: h.started_at,
                finished_at: h.finished_at,
                changes,
                attempted,
                reboots: h.reboots.clone(),
            }
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    RunRecord {
        run_id: applied.run.clone(),
        kind: RunKind::Apply,
        started_at: started,
        finished_at: finished,
        desired_commit: desired_commit.to_owned(),
        plan: Some(plan.summary.clone()),
        hosts,
        errors: Vec::new(),
        last_good_commit: None,
        applied_by: audit.applied_by.clone(),
        requested_by: requested.into_iter().collect(),
        overrides: audit.overrides.clone(),
        events: Vec::new(),
    }
}

/// Records a run (usually an apply): evaluates every host with the run's outcomes and, when
/// given, a fresh observation (without one, each host's previous facts are carried).
pub fn record_run(
    repo: &Path,
    fleet: &ValidFleet,
    observed: Option<&ObservedFleet>,
    run: &RunRecord,
    now: Timestamp,
) -> Result<Recorded, ReportError> {
    record(
        &ReportTarget::from_fleet(repo, fleet),
        fleet,
        observed,
        run,
        now,
    )
}

/// Evaluates and commits reports for `run` to `target`.
///
/// Flow: take the tip (the remote's, fetched, when a remote is set; else the local
/// branch's), read the previous host reports there (first-seen times), evaluate, build a
/// tree on the tip's tree, commit (signed when a key is set), then move the branch with a
/// compare-and-swap (local) or a non-forced push (remote). When another writer moved the tip
/// in between, everything is redone on the new tip, up to [`MAX_ATTEMPTS`].
///
/// Guarantees: run files never collide (unique ids), so no run record is lost; a host file
/// is replaced only by a later evaluation (`evaluatedAt`), so the last writer by time wins;
/// `summary.json` always counts the host files of the same commit. Partial failure: when
/// the push fails for good, the commit is kept on the local branch (nothing is lost
/// locally) and the error is returned.
pub fn record(
    target: &ReportTarget,
    fleet: &ValidFleet,
    observed: Option<&ObservedFleet>,
    run: &RunRecord,
    now: Timestamp,
) -> Result<Recorded, ReportError> {
    record_with(target, fleet, observed, None, run, now)
}

/// [`record`] with the advisory findings of the observed hosts: host files list their open
/// advisories with due dates, the run record carries the advisory events, the summary the
/// open advisories. Without findings, each host's previous advisories are carried.
pub fn record_with(
    target: &ReportTarget,
    fleet: &ValidFleet,
    observed: Option<&ObservedFleet>,
    advisories: Option<&crate::advisory::Assessment>,
    run: &RunRecord,
    now: Timestamp,
) -> Result<Recorded, ReportError> {
    let policy =
        Policy::for_repo(&fleet.fleet().root).map_err(|e| ReportError::Config(e.to_string()))?;
    let configs = fleet
        .hosts()
        .map(|h| HostConfig::from_fleet(fleet, h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReportError::Config(e.to_string()))?;
    // The hosts some baseline promotes from: their installed versions are recorded.
    let tracked = crate::plan::promotion::sources(fleet);
    // Each observed host's package list (`packages/<host>.txt`), for `report --diff`; a
    // host not observed this time keeps the list of its last observation. Rendered once per
    // commit attempt: hashed only when the base has a list to compare with, kept only when
    // it changed (a list is ~60 KB for 1,500 packages).
    let lists: Vec<(&str, &[crate::observed::InstalledPackage])> = configs
        .iter()
        .filter_map(|config| {
            let h = observed?.host(&config.host)?;
            let reachable = matches!(h.status, crate::observed::HostStatus::Reachable);
            (reachable && !h.installed.is_empty())
                .then_some((config.host.as_str(), h.installed.as_slice()))
        })
        .collect();
    let writer = git::Writer::open(target)?;
    let mut deposed_by = None;
    let (commit, tip, attempts, pushed) = publish_with_retry(&writer, target, |base| {
        // Fencing: a leader whose term is older than the branch's newest was deposed while
        // it ran; what the newer leader wrote stands, only this run's record is added.
        let (fencing, deposed) = fence(&writer, target, base)?;
        deposed_by = deposed;
        let previous = writer.read_hosts(base)?;
        let previous_lists = writer.package_blobs(base)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let reports: Vec<HostReport> = configs
            .iter()
            .map(|config| {
                let prev = previous.get(&config.host).map(|r| &r.compliance);
                // An observe run's outcomes only restate the observation, and an apply
                // that left the host unchanged did nothing to it: the host keeps the last
                // outcome of a run that did (so its file changes only with its facts), and
                // the observation decides state.
                let run_outcome = match run.kind {
                    RunKind::Apply => run
                        .outcome_of(&config.host)
                        .filter(|o| **o != HostRunOutcome::Unchanged),
                    RunKind::Observe | RunKind::Validate => None,
                };
                let mut compliance = compliance::evaluate(compliance::Inputs {
                    config,
                    observed: observed.and_then(|o| o.host(&config.host)),
                    previous: prev,
                    run: run_outcome,
                    policy: &policy,
                    now,
                    advisories: advisories.and_then(|a| a.host(&config.host)),
                    snapshot: advisories.and_then(|a| a.snapshot.as_deref()),
                });
                if run_outcome.is_none() && compliance.state != ComplianceState::Excluded {
                    compliance.last_run = prev.and_then(|p| p.last_run.clone());
                }
                let previous_report = previous.get(&config.host);
                let observed_host = observed.and_then(|o| o.host(&config.host));
                let incidents = evidence::incidents(
                    previous_report.map_or(&[][..], |p| p.incidents.as_slice()),
                    run_outcome.and(run.host(&config.host)),
                    &compliance,
                    observed_host,
                    now,
                );
                HostReport {
                    desired_commit: run.desired_commit.clone(),
                    run_id: run.run_id.clone(),
                    compliance,
                    incidents,
                    installed_digest: tracked
                        .contains(&config.host)
                        .then(|| previous_report.and_then(|p| p.installed_digest.clone()))
                        .flatten(),
                }
            })
            .collect::<Vec<_>>();
        // Promotion sources: record what they run (rewritten only when it changed).
        let mut reports = reports;
        for r in reports.iter_mut().filter(|_| deposed.is_none()) {
            let host = &r.compliance.host;
            let Some(o) = observed
                .and_then(|o| o.host(host))
                .filter(|o| tracked.contains(host) && o.status.is_reachable())
            else {
                continue;
            };
            let now_digest = evidence::digest(&o.installed);
            let path = format!("installed/{host}.json");
            // Same packages as when the record was written: it stands as it is, unread.
            if r.installed_digest.as_deref() == Some(now_digest.as_str())
                && writer.has_file(base, &path)?
            {
                continue;
            }
            let prior = writer.read_installed(base, host)?;
            // When the versions started: this run's apply says when it finished on the
            // host; the previous report says when the host was last seen without them.
            let applied = match run.kind {
                RunKind::Apply => run
                    .host(host)
                    .and_then(|h| h.finished_at.map(|at| (h, at)))
                    .map(|(h, at)| {
                        h.changes
                            .iter()
                            .map(|c| (c.package.as_str(), c.to.as_str(), at))
                            .collect()
                    })
                    .unwrap_or_default(),
                RunKind::Observe | RunKind::Validate => Vec::new(),
            };
            let install = evidence::InstallEvidence {
                last_observed: previous.get(host).and_then(|p| p.compliance.observed_at),
                applied,
            };
            let record = evidence::advance(prior.as_ref(), o, &install, now);
            files.push((path, to_json(&record)));
            r.installed_digest = Some(now_digest);
        }
        // Last writer by time: a host file evaluated later than ours stays. A host whose
        // facts did not change keeps its file as it is, so `git log -- hosts/X.json`
        // lists only the commits that changed X. A new `installed/` record or incident is
        // a change: the host file carries the record's digest, and a record whose host
        // file is not written is pruned below (the evidence would be lost).
        let new_records: std::collections::BTreeSet<String> = files
            .iter()
            .filter_map(|(path, _)| {
                path.strip_prefix("installed/")
                    .and_then(|p| p.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect();
        let mut merged: BTreeMap<String, HostReport> = BTreeMap::new();
        let mut written = Vec::new();
        for r in reports {
            match previous.get(&r.compliance.host) {
                None if deposed.is_some() => {}
                Some(p)
                    if deposed.is_some()
                        || p.compliance.evaluated_at > r.compliance.evaluated_at
                        || (same_facts(p, &r) && !new_records.contains(&r.compliance.host)) =>
                {
                    merged.insert(p.compliance.host.clone(), p.clone());
                }
                _ => {
                    written.push(r.compliance.host.clone());
                    merged.insert(r.compliance.host.clone(), r);
                }
            }
        }
        let mut run_out = run.clone();
        for h in &written {
            if let Some(current) = merged.get(h) {
                run_out.events.extend(advisory_events(
                    previous.get(h).map(|p| &p.compliance),
                    &current.compliance,
                    now,
                ));
            }
        }
        let run = &run_out;
        // Last writer by time here too: a list from a later evaluation stays.
        // Rendered and hashed on every core (thousands of ~60 KB lists per commit).
        let lists_written: Vec<(&str, String)> = lists
            .par_iter()
            .filter(|_| deposed.is_none())
            .filter_map(|(host, installed)| {
                if previous
                    .get(*host)
                    .is_some_and(|p| p.compliance.evaluated_at > now)
                {
                    return None;
                }
                let text = package_list::render(installed);
                let unchanged = previous_lists
                    .get(*host)
                    .is_some_and(|before| pack::blob_id(text.as_bytes()) == *before);
                (!unchanged).then_some((*host, text))
            })
            .collect();
        let hosts: Vec<HostReport> = merged.into_values().collect();
        let summary = Summary::compute(
            &hosts,
            &run.run_id,
            &run.desired_commit,
            &policy.source.to_string(),
            now,
        );
        // Commit only on change: an observation that changed no host file is committed
        // only as a heartbeat, once `reports.heartbeat` has passed since the last commit.
        if run.kind == RunKind::Observe && written.is_empty() && lists_written.is_empty() {
            let (last_desired, last_rejected) = writer.last_report(base)?;
            // A new desired commit, or the first good run after a rejection, is news.
            let news =
                last_rejected || last_desired.as_deref() != Some(run.desired_commit.as_str());
            let last = if news {
                None
            } else {
                writer.commit_time(base)?
            };
            // `0s`: every observation is committed.
            let fresh = !target.heartbeat.is_zero()
                && last.is_some_and(|t| {
                    now < t || now.duration_since(t).unsigned_abs() < target.heartbeat
                });
            if fresh {
                return Ok(None);
            }
        }
        // Looked up once per host below: a set, not a scan (10,000 hosts would make it
        // 10^8 comparisons).
        let written_set: std::collections::HashSet<&str> =
            written.iter().map(String::as_str).collect();
        let changed = hosts_changed(&hosts, &previous, run, &written_set);
        let mut message = commit_message(run, &summary, &changed);
        message.push_str(&fencing);
        // Records of hosts no longer promoted from (or gone) are pruned with them.
        files.retain(|(path, _)| {
            path.strip_prefix("installed/")
                .and_then(|p| p.strip_suffix(".json"))
                .is_some_and(|h| written_set.contains(h))
        });
        for h in &hosts {
            if written_set.contains(h.compliance.host.as_str()) {
                files.push((format!("hosts/{}.json", h.compliance.host), to_json(h)));
            }
        }
        for (host, text) in lists_written {
            files.push((format!("packages/{host}.txt"), text.into_bytes()));
        }
        files.push((format!("runs/{}.json", run.run_id), to_json(run)));
        if deposed.is_some() {
            // The newer leader's fleet may differ from this one's: nothing is pruned and
            // its summary stands.
            let keep = writer.host_names(base)?;
            return writer
                .commit(base, &files, &keep, None, &message, now)
                .map(Some);
        }
        files.push(("summary.json".to_owned(), to_json(&summary)));
        let keep: Vec<String> = hosts.iter().map(|h| h.compliance.host.clone()).collect();
        let keep_installed: Vec<String> = tracked.iter().cloned().collect();
        writer
            .commit(base, &files, &keep, Some(&keep_installed), &message, now)
            .map(Some)
    })?;
    Ok(Recorded {
        committed: commit.is_some(),
        commit: commit.or(tip).map(|c| c.to_string()).unwrap_or_default(),
        run_id: run.run_id.clone(),
        attempts,
        pushed,
        deposed_by,
    })
}

/// Whether two reports of a host state the same facts: everything but the volatile fields
/// (which run and fleet commit wrote it, when it was evaluated and observed, and the ages
/// derived from `firstSeen`). Incidents and the installed-record digest are facts: staged
/// promotion reads them.
fn same_facts(a: &HostReport, b: &HostReport) -> bool {
    fn facts(r: &HostReport) -> HostCompliance {
        let mut c = r.compliance.clone();
        c.evaluated_at = Timestamp::UNIX_EPOCH;
        c.observed_at = None;
        for u in c.outstanding.iter_mut().chain(c.deferred.iter_mut()) {
            u.age_seconds = 0;
        }
        c
    }
    a.incidents == b.incidents && a.installed_digest == b.installed_digest && facts(a) == facts(b)
}

/// Builds a commit on the current tip with `build` and publishes it, rebuilding on a moved
/// tip up to [`MAX_ATTEMPTS`]. With a remote, a commit that cannot be pushed (remote down,
/// refused, or contended) is kept on the local branch and the error returned: its run file
/// is carried into the next commit that reaches the remote, so no report is lost. `build`
/// returning `None` means there is nothing to commit: the tip it saw is returned.
#[allow(clippy::type_complexity)]
fn publish_with_retry(
    writer: &git::Writer<'_>,
    target: &ReportTarget,
    mut build: impl FnMut(Option<&git2::Oid>) -> Result<Option<git2::Oid>, ReportError>,
) -> Result<(Option<git2::Oid>, Option<git2::Oid>, u32, bool), ReportError> {
    let _lock = writer.lock_writers()?;
    let mut last = None;
    for attempt in 1..=MAX_ATTEMPTS {
        let (base, fetch_error) = writer.base_or_local()?;
        let Some(commit) = build(base.as_ref())? else {
            return Ok((None, base, attempt, false));
        };
        last = Some(commit);
        if let Some(e) = fetch_error {
            writer.keep_locally(commit)?;
            return Err(e);
        }
        match writer.publish(base.as_ref(), commit) {
            Ok(git::Published::Done { pushed }) => {
                return Ok((Some(commit), base, attempt, pushed))
            }
            Ok(git::Published::TipMoved) => {
                tracing::debug!(attempt, branch = %target.branch, "reports tip moved, rebuilding");
                // Jittered backoff so two writers that keep colliding fall out of step.
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::from(d.subsec_nanos() % 20))
                    .unwrap_or(7);
                std::thread::sleep(std::time::Duration::from_millis(
                    u64::from(attempt.min(10)) * 5 + jitter,
                ));
            }
            Err(e) => {
                writer.keep_locally(commit)?;
                return Err(e);
            }
        }
    }
    if let Some(commit) = last {
        writer.keep_locally(commit)?;
    }
    Err(ReportError::Contended {
        branch: target.branch.clone(),
        attempts: MAX_ATTEMPTS,
    })
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("report types always serialize");
    out.push(b'\n');
    out
}

/// Hosts whose state changed since the previous report, or whose packages the run changed
/// or tried to change.
fn hosts_changed(
    hosts: &[HostReport],
    previous: &BTreeMap<String, HostReport>,
    run: &RunRecord,
    written: &std::collections::HashSet<&str>,
) -> Vec<String> {
    hosts
        .iter()
        .filter(|h| written.contains(h.compliance.host.as_str()))
        .filter(|h| {
            let state_changed = previous
                .get(&h.compliance.host)
                .is_none_or(|p| p.compliance.state != h.compliance.state);
            let touched = matches!(
                run.outcome_of(&h.compliance.host),
                Some(
                    HostRunOutcome::Updated
                        | HostRunOutcome::Failed { .. }
                        | HostRunOutcome::RolledBack { .. }
                )
            ) && run.kind == RunKind::Apply;
            state_changed || touched
        })
        .map(|h| h.compliance.host.clone())
        .collect()
}

/// The value of trailer `key` in a commit message (the last line `key: value`).
pub(crate) fn trailer(message: &str, key: &str) -> Option<String> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// The fencing trailer of a commit of `target` built on `base`, and the newer term that
/// deposed its writer (reads the branch's newest term only for a fenced writer).
fn fence(
    writer: &git::Writer<'_>,
    target: &ReportTarget,
    base: Option<&git2::Oid>,
) -> Result<(String, Option<LeaderTerm>), ReportError> {
    let newest = match target.fence {
        Some(_) => writer.leader_term(base)?,
        None => None,
    };
    Ok(term_trailer(target.fence, newest))
}

/// The fencing trailer of a commit by a writer with leader term `fence` on a branch whose
/// newest term is `newest` (empty for an unfenced writer), and whether it is deposed.
fn term_trailer(
    fence: Option<LeaderTerm>,
    newest: Option<LeaderTerm>,
) -> (String, Option<LeaderTerm>) {
    match fence {
        None => (String::new(), None),
        Some(t) => match newest.filter(|n| *n > t) {
            Some(n) => (format!("{}: {t}\n", git::DEPOSED_LEADER_TERM), Some(n)),
            None => (format!("{}: {t}\n", git::LEADER_TERM), None),
        },
    }
}

/// A trailer value on one line: control characters (a newline would start a forged
/// trailer) become spaces.
fn trailer_value(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The commit message: a subject that reads as an audit line, per-state counts, trailers.
pub fn commit_message(run: &RunRecord, summary: &Summary, changed: &[String]) -> String {
    let when = run.started_at.strftime("%Y-%m-%dT%H:%MZ");
    let subject = match run.kind {
        RunKind::Validate => format!(
            "validate run {when}: desired commit {} rejected, {}",
            crate::terminal::short(&run.desired_commit, 12),
            plural(run.errors.len(), "error", "errors")
        ),
        RunKind::Observe => {
            let mut s = format!(
                "observe run {when}: {}, {} non-compliant",
                plural(summary.total, "host", "hosts"),
                summary.count(ComplianceState::NonCompliant)
            );
            let unreachable = summary.count(ComplianceState::Unreachable);
            if unreachable > 0 {
                s.push_str(&format!(", {unreachable} unreachable"));
            }
            s
        }
        RunKind::Apply => {
            let count =
                |f: fn(&HostRunOutcome) -> bool| run.hosts.iter().filter(|h| f(&h.outcome)).count();
            let mut parts = vec![format!(
                "{} updated",
                plural(
                    count(|o| matches!(o, HostRunOutcome::Updated)),
                    "host",
                    "hosts"
                )
            )];
            for (n, label) in [
                (
                    count(|o| matches!(o, HostRunOutcome::RolledBack { .. })),
                    "rolled back",
                ),
                (
                    count(|o| matches!(o, HostRunOutcome::Failed { .. })),
                    "failed",
                ),
                (
                    count(|o| matches!(o, HostRunOutcome::Unreachable { .. })),
                    "unreachable",
                ),
                (
                    count(|o| matches!(o, HostRunOutcome::NotStarted { .. })),
                    "not started",
                ),
                (
                    count(|o| matches!(o, HostRunOutcome::Skipped { .. })),
                    "skipped",
                ),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {label}"));
                }
            }
            format!("apply run {when}: {}", parts.join(", "))
        }
    };
    let mut body = String::new();
    for (state, n) in &summary.counts {
        if *n == 0 {
            continue;
        }
        let names: Vec<&str> = summary
            .hosts
            .iter()
            .filter(|h| h.state == *state)
            .map(|h| h.host.as_str())
            .take(20)
            .collect();
        if state.needs_attention() {
            let more = if *n > names.len() { ", ..." } else { "" };
            body.push_str(&format!("{state}: {n} ({}{more})\n", names.join(", ")));
        } else {
            body.push_str(&format!("{state}: {n}\n"));
        }
    }
    for (rule, n) in &summary.broken_rules {
        body.push_str(&format!("breaks {rule}: {}\n", plural(*n, "host", "hosts")));
    }
    let changed = if changed.is_empty() {
        "none".to_owned()
    } else {
        changed.join(", ")
    };
    let mut trailers = format!(
        "Desired-Commit: {}\nRun-Id: {}\nHosts-Changed: {changed}\n",
        run.desired_commit, run.run_id
    );
    for who in &run.requested_by {
        trailers.push_str(&format!("Requested-By: {}\n", trailer_value(who)));
    }
    if let Some(who) = &run.applied_by {
        trailers.push_str(&format!("Applied-By: {}\n", trailer_value(who)));
    }
    for o in &run.overrides {
        trailers.push_str(&format!("Override: {}\n", trailer_value(o)));
    }
    format!("{subject}\n\n{body}\n{trailers}")
}

/// Records that `commit` of the fleet repo was rejected by validation: a `validate` run
/// record with the errors, committed like any report (host files and summary untouched, so
/// the last good commit's compliance stays visible). `target` comes from the last good
/// fleet's settings.
pub fn record_rejected(
    target: &ReportTarget,
    commit: &str,
    errors: &[String],
    last_good: Option<&str>,
    now: Timestamp,
) -> Result<Recorded, ReportError> {
    let run = RunRecord {
        run_id: RunRecord::new_id(RunKind::Validate, now),
        kind: RunKind::Validate,
        started_at: now,
        finished_at: now,
        desired_commit: commit.to_owned(),
        plan: None,
        hosts: Vec::new(),
        errors: errors.to_vec(),
        last_good_commit: last_good.map(str::to_owned),
        applied_by: None,
        requested_by: Vec::new(),
        overrides: Vec::new(),
        events: Vec::new(),
    };
    let writer = git::Writer::open(target)?;
    let mut deposed_by = None;
    let (oid, _, attempts, pushed) = publish_with_retry(&writer, target, |base| {
        let (fencing, deposed) = fence(&writer, target, base)?;
        deposed_by = deposed;
        let keep = writer.host_names(base)?;
        let mut body: String = errors.iter().take(50).map(|e| format!("{e}\n")).collect();
        if errors.len() > 50 {
            body.push_str(&format!("... and {} more\n", errors.len() - 50));
        }
        let when = now.strftime("%Y-%m-%dT%H:%MZ");
        let message = format!(
            "validate run {when}: desired commit {} rejected, {}\n\n{body}\nDesired-Commit: {commit}\nRun-Id: {}\nLast-Good-Commit: {}\n{fencing}",
            crate::terminal::short(commit, 12),
            plural(errors.len(), "error", "errors"),
            run.run_id,
            last_good.unwrap_or("none"),
        );
        let files = vec![(format!("runs/{}.json", run.run_id), to_json(&run))];
        writer
            .commit(base, &files, &keep, None, &message, now)
            .map(Some)
    })?;
    Ok(Recorded {
        committed: oid.is_some(),
        commit: oid.map(|o| o.to_string()).unwrap_or_default(),
        run_id: run.run_id,
        attempts,
        pushed,
        deposed_by,
    })
}

impl Snapshot {
    /// When each pending update was first seen, in the planner's form (host, package,
    /// candidate version), so `plan` judges `updates.delay` with the ages the reports keep.
    pub fn first_seen(&self) -> crate::plan::FirstSeen {
        self.hosts
            .iter()
            .flat_map(|h| {
                h.compliance
                    .outstanding
                    .iter()
                    .chain(&h.compliance.deferred)
                    .map(|u| {
                        (
                            (h.compliance.host.clone(), u.package.clone(), u.to.clone()),
                            u.first_seen,
                        )
                    })
            })
            .collect()
    }
}

/// The reports branch as read back: its tip, summary and host files.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The tip commit (hex).
    pub commit: String,
    /// `summary.json`, when present.
    pub summary: Option<Summary>,
    /// Every `hosts/*.json`, sorted by host.
    pub hosts: Vec<HostReport>,
    /// Run ids under `runs/`, sorted (oldest first).
    pub runs: Vec<String>,
    /// When the newest run rejected the desired commit: that validate run (its
    /// `lastGoodCommit` is what the hosts are still judged by).
    pub rejected: Option<RunRecord>,
}

/// One entry of a host's history ([`host_history`]).
// A history is a short list built once for display: boxing the run variant (larger since
// `HostRun` carries `attempted`) would only add an allocation per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "entry", rename_all = "kebab-case")]
pub enum HistoryEntry {
    /// A run that did something to (or found something about) the host.
    #[serde(rename_all = "camelCase")]
    Run {
        /// When the host's part ended.
        at: Timestamp,
        /// The run.
        run_id: String,
        /// Its kind.
        kind: RunKind,
        /// The host's part: outcome, reason, changes with their reasons, reboots.
        host: HostRun,
        /// Who ran it.
        #[serde(skip_serializing_if = "Option::is_none")]
        applied_by: Option<String>,
        /// Who asked.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        requested_by: Vec<String>,
        /// Safeguards it overrode.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        overrides: Vec<String>,
        /// The fleet commit it worked from.
        desired_commit: String,
    },
    /// A report commit that changed the host's file: its state from then on.
    #[serde(rename_all = "camelCase")]
    State {
        /// The commit's time.
        at: Timestamp,
        /// The report commit.
        commit: String,
        /// The state.
        state: ComplianceState,
        /// Why.
        reasons: Vec<String>,
        /// The run that wrote it.
        run_id: String,
    },
}

impl HistoryEntry {
    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match self {
            HistoryEntry::Run { at, .. } | HistoryEntry::State { at, .. } => *at,
        }
    }

    fn order(&self) -> u8 {
        match self {
            HistoryEntry::State { .. } => 0,
            HistoryEntry::Run { .. } => 1,
        }
    }
}

/// One host's history on `branch`, newest first (`since`: only from then on); `Ok(None)`
/// when the branch does not exist. See [`HistoryEntry`].
pub fn host_history(
    repo: &Path,
    branch: &str,
    host: &str,
    since: Option<Timestamp>,
) -> Result<Option<Vec<HistoryEntry>>, ReportError> {
    git::host_history(repo, branch, host, since)
}

/// One report commit's hosts per compliance state (the dashboard's chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatePoint {
    /// The report commit.
    pub commit: String,
    /// The run it recorded.
    pub run_id: String,
    /// When its summary was written.
    pub at: Timestamp,
    /// Hosts per state.
    pub counts: BTreeMap<ComplianceState, usize>,
}

/// The hosts per state of the newest `limit` report commits of `branch`, oldest first
/// (`Ok(None)`: no such branch).
pub fn state_history(
    repo: &Path,
    branch: &str,
    limit: usize,
) -> Result<Option<Vec<StatePoint>>, ReportError> {
    git::state_history(repo, branch, limit)
}

/// Reads the reports branch `branch` of the repository at `repo` (no working tree needed).
/// `Ok(None)` when the branch does not exist yet.
pub fn read(repo: &Path, branch: &str) -> Result<Option<Snapshot>, ReportError> {
    git::read_snapshot(repo, branch)
}

pub use git::uncommitted_fleet_files;

/// What the tip of `branch` proves about the versions the promotion sources `hosts` ran
/// (see [`evidence`]): their installed records and incidents. Reads one tree, never the
/// history, so its cost grows with the hosts asked for, not with the years of reports on
/// the branch. No branch yet: empty evidence (nothing is proven).
pub fn promotion_evidence(
    repo: &Path,
    branch: &str,
    hosts: &[String],
) -> Result<crate::plan::Evidence, ReportError> {
    git::read_evidence(repo, branch, hosts)
}

/// [`promotion_evidence`] from `target`: with a remote, its branch there, fetched now — a
/// source host's failure another controller reported must block promotion here, so when the
/// fetch fails this is an error (the caller then counts nothing as promoted), never the
/// local copy. A remote the controller's trust refused is not fetched: the local branch.
pub fn promotion_evidence_of(
    target: &ReportTarget,
    hosts: &[String],
) -> Result<crate::plan::Evidence, ReportError> {
    match &target.remote {
        Some(remote) if target.refused.is_none() => {
            git::fetch_evidence(&target.repo, remote, &target.auth, &target.branch, hosts)
        }
        _ => promotion_evidence(&target.repo, &target.branch, hosts),
    }
}

/// Reads the reports of `target`: with a remote, its branch there (fetched now; when the
/// fetch fails, the local branch, and the error is logged); else the local branch.
pub fn read_target(target: &ReportTarget) -> Result<Option<Snapshot>, ReportError> {
    if let Some(remote) = &target.remote {
        match git::fetch_snapshot(&target.repo, remote, &target.auth, &target.branch) {
            Ok(snapshot) => return Ok(snapshot),
            Err(e) => {
                tracing::warn!(branch = %target.branch, "cannot fetch the reports, reading the local copy: {e}")
            }
        }
    }
    read(&target.repo, &target.branch)
}

/// Reads the run records `ids` (`runs/<id>.json`) from the tip of `branch`; ids without a
/// file are left out.
pub fn read_runs(repo: &Path, branch: &str, ids: &[String]) -> Result<Vec<RunRecord>, ReportError> {
    git::read_runs(repo, branch, ids)
}

/// One host's package lists around a run ([`RunPackages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPackages {
    /// The host.
    pub host: String,
    /// `packages/<host>.txt` at the parent of the run's report commit, when there was one.
    pub before: Option<String>,
    /// `packages/<host>.txt` at the run's report commit, when there is one.
    pub after: Option<String>,
}

/// A run and the package lists of its hosts before and after it ([`run_packages`]).
#[derive(Debug, Clone)]
pub struct RunPackages {
    /// The run record.
    pub run: RunRecord,
    /// The report commit that added `runs/<id>.json` (hex).
    pub commit: String,
    /// Its first parent (hex); `None` for the branch's first commit.
    pub parent: Option<String>,
    /// The run's hosts and every host whose list the commit changed, sorted by name.
    pub hosts: Vec<HostPackages>,
}

/// What [`run_packages`] found.
#[derive(Debug, Clone)]
pub enum RunLookup {
    /// The branch does not exist.
    NoBranch,
    /// No run has that id (or id prefix) on the branch; the newest run ids, newest first.
    Unknown {
        /// Up to ten run ids at the branch's tip, newest first.
        recent: Vec<String>,
    },
    /// More than one run id at the tip starts with the prefix given.
    Ambiguous {
        /// The matching ids, newest first.
        matches: Vec<String>,
    },
    /// The run, with its hosts' package lists before and after.
    Found(Box<RunPackages>),
}

/// The run `id` (an exact run id, or a prefix of exactly one run id at the tip) on `branch`,
/// with each host's package list before the run (at the first parent of the commit that
/// recorded it) and after it (at that commit). Run records never change once written, so
/// the commit is the one where `runs/<id>.json` first appears on the first-parent history.
pub fn run_packages(repo: &Path, branch: &str, id: &str) -> Result<RunLookup, ReportError> {
    git::run_packages(repo, branch, id)
}

/// When each pending update was first seen offered, from the last report on `branch` (no
/// reports yet: empty, so every update counts as first seen now).
pub fn first_seen(repo: &Path, branch: &str) -> Result<crate::plan::FirstSeen, ReportError> {
    Ok(read(repo, branch)?
        .map(|snapshot| snapshot.first_seen())
        .unwrap_or_default())
}

/// The JSON Schemas of the report files, by file name under `schemas/`.
pub fn schema_files() -> BTreeMap<&'static str, String> {
    use crate::schema::schema_text_for;
    BTreeMap::from([
        (
            "report-host.schema.json",
            schema_text_for::<HostReport>("patchkeeper host report"),
        ),
        (
            "report-run.schema.json",
            schema_text_for::<RunRecord>("patchkeeper run record"),
        ),
        (
            "report-summary.schema.json",
            schema_text_for::<Summary>("patchkeeper fleet summary"),
        ),
        (
            "report-installed.schema.json",
            schema_text_for::<InstalledRecord>("patchkeeper installed versions"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_terms_order_by_epoch_then_revision_and_read_back() {
        let t = |epoch, revision| LeaderTerm { epoch, revision };
        assert!(t(1, 9) < t(1, 10));
        assert!(t(1, 900) < t(2, 1), "a rebuilt server's terms come after");
        assert_eq!(t(1_764_000_000, 42).to_string(), "1764000000.42");
        assert_eq!("1764000000.42".parse(), Ok(t(1_764_000_000, 42)));
        for bad in ["42", "1.x", ".4", "1.2.3", "-1.2", ""] {
            assert!(bad.parse::<LeaderTerm>().is_err(), "{bad}");
        }
        let (line, deposed) = term_trailer(Some(t(1, 5)), Some(t(1, 9)));
        assert_eq!(
            (line.as_str(), deposed),
            ("Deposed-Leader-Term: 1.5\n", Some(t(1, 9)))
        );
        let (line, deposed) = term_trailer(Some(t(1, 9)), Some(t(1, 9)));
        assert_eq!((line.as_str(), deposed), ("Leader-Term: 1.9\n", None));
        assert_eq!(term_trailer(None, Some(t(1, 9))), (String::new(), None));
    }

    fn host_plan(host: &str, changes: &[(&str, Option<&str>, &str)]) -> crate::plan::HostPlan {
        crate::plan::HostPlan {
            host: host.into(),
            status: if changes.is_empty() {
                crate::plan::HostStatus::Compliant
            } else {
                crate::plan::HostStatus::Update
            },
            package_manager: None,
            baselines: vec!["web".into()],
            requests: Vec::new(),
            window: None,
            window_reason: None,
            rollout: None,
            changes: changes
                .iter()
                .map(|(package, from, to)| crate::plan::Change {
                    package: (*package).into(),
                    arch: "amd64".into(),
                    from: from.map(Into::into),
                    to: (*to).into(),
                    security: false,
                    origin: String::new(),
                    reasons: Vec::new(),
                    promotion: None,
                    fixes: Vec::new(),
                })
                .collect(),
            reasons: Vec::new(),
            skipped: Vec::new(),
            fingerprint: None,
            batch: None,
            reboot_required: false,
            dependencies: None,
            notes: Vec::new(),
        }
    }

    fn result(host: &str, outcome: Outcome, detail: &[&str]) -> crate::apply::HostResult {
        crate::apply::HostResult {
            host: host.into(),
            outcome,
            detail: detail.iter().map(|d| (*d).to_string()).collect(),
            // What the executor reports for a host whose transaction ran.
            changes: 1,
            millis: 10,
            started_at: None,
            finished_at: None,
            reboots: Vec::new(),
        }
    }

    #[test]
    fn an_apply_report_becomes_a_run_record_with_the_kept_changes() {
        let at = |min: i64| Timestamp::from_second(1_795_000_000 + min * 60).expect("time");
        let plan = Plan {
            format: crate::plan::PLAN_FORMAT,
            fleet_commit: Some("abc".into()),
            fleet_digest: "d".into(),
            planned_at: "2026-11-24T02:00:00Z".into(),
            observed_at: "2026-11-24T02:00:00Z".into(),
            advisory_snapshot: None,
            hosts: vec![
                host_plan("a", &[("libpk", Some("1.0-1"), "1.2-1")]),
                host_plan("b", &[("libpk", Some("1.0-1"), "1.2-1")]),
                host_plan("c", &[("pk-new", None, "2.0-1")]),
                host_plan("d", &[]),
                host_plan("e", &[("libpk", Some("1.0-1"), "1.2-1")]),
                host_plan("f", &[("libpk", Some("1.0-1"), "1.2-1")]),
                host_plan("g", &[("libpk", Some("1.0-1"), "1.2-1")]),
                host_plan("h", &[("libpk", Some("1.0-1"), "1.2-1")]),
            ],
            batches: Vec::new(),
            summary: crate::plan::Summary {
                hosts_to_update: 4,
                ..Default::default()
            },
        };
        let applied = ApplyReport {
            run: "r".into(),
            plan: "p".into(),
            hosts: vec![
                result("e", Outcome::Waiting, &["window nightly is closed"]),
                result("a", Outcome::Compliant, &["verified"]),
                result(
                    "b",
                    Outcome::RolledBack,
                    &["postinst failed", "rolled back"],
                ),
                result("c", Outcome::PendingReboot, &[]),
                result("d", Outcome::Compliant, &[]),
                result(
                    "f",
                    Outcome::Stale,
                    &["refused: the host changed since the plan was made"],
                ),
                result(
                    "g",
                    Outcome::Skipped,
                    &["skipped: the package manager is still locked"],
                ),
                crate::apply::HostResult {
                    changes: 0,
                    ..result(
                        "h",
                        Outcome::Compliant,
                        &["already done by an earlier run of this plan"],
                    )
                },
            ],
            halted: Vec::new(),
            interrupted: false,
        };
        let run = apply_run(&plan, &applied, "abc", at(0), at(3), &RunAudit::default());
        // The run's own id: the one its journal carries.
        assert_eq!(run.run_id, "r");
        assert_eq!(run.kind, RunKind::Apply);
        assert_eq!(run.desired_commit, "abc");
        assert_eq!(run.plan.as_ref().map(|p| p.hosts_to_update), Some(4));
        assert_eq!((run.started_at, run.finished_at), (at(0), at(3)));
        let outcomes: Vec<(&str, &HostRunOutcome, usize)> = run
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), &h.outcome, h.changes.len()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("a", &HostRunOutcome::Updated, 1),
                (
                    "b",
                    &HostRunOutcome::RolledBack {
                        reason: "postinst failed; rolled back".into()
                    },
                    0
                ),
                ("c", &HostRunOutcome::Updated, 1),
                ("d", &HostRunOutcome::Unchanged, 0),
                (
                    "e",
                    &HostRunOutcome::NotStarted {
                        reason: "window nightly is closed".into()
                    },
                    0
                ),
                (
                    "f",
                    &HostRunOutcome::Skipped {
                        reason: "stale: refused: the host changed since the plan was made".into()
                    },
                    0
                ),
                (
                    "g",
                    &HostRunOutcome::Skipped {
                        reason: "skipped: the package manager is still locked".into()
                    },
                    0
                ),
                ("h", &HostRunOutcome::Unchanged, 0),
            ]
        );
        assert_eq!(
            run.hosts[2].changes,
            [PackageChange {
                package: "pk-new".into(),
                from: None,
                to: "2.0-1".into(),
                reasons: Vec::new(),
            }]
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn summary(states: &[(&str, ComplianceState)]) -> Summary {
        let hosts: Vec<HostReport> = states
            .iter()
            .map(|(h, s)| HostReport {
                desired_commit: "abc".into(),
                run_id: "r".into(),
                compliance: HostCompliance {
                    host: h.to_string(),
                    state: *s,
                    reasons: vec![],
                    baselines: vec![],
                    missing: vec![],
                    outstanding: vec![],
                    deferred: vec![],
                    reboot_required_since: None,
                    broken_rules: if *s == ComplianceState::NonCompliant {
                        vec!["security-within-7d".into()]
                    } else {
                        vec![]
                    },
                    last_run: None,
                    observed_at: None,
                    evaluated_at: ts("2026-11-24T02:00:00Z"),
                    advisories: vec![],
                    advisory_snapshot: None,
                },
                incidents: vec![],
                installed_digest: None,
            })
            .collect();
        Summary::compute(
            &hosts,
            "r",
            "abc",
            "built-in policy",
            ts("2026-11-24T02:05:00Z"),
        )
    }

    fn run(kind: RunKind, outcomes: &[(&str, HostRunOutcome)]) -> RunRecord {
        RunRecord {
            run_id: "20261124T020000Z-x-000000".into(),
            kind,
            started_at: ts("2026-11-24T02:00:30Z"),
            finished_at: ts("2026-11-24T02:05:00Z"),
            desired_commit: "0123abcd".into(),
            plan: None,
            errors: Vec::new(),
            last_good_commit: None,
            applied_by: None,
            requested_by: Vec::new(),
            overrides: Vec::new(),
            events: Vec::new(),
            hosts: outcomes
                .iter()
                .map(|(h, o)| HostRun {
                    host: h.to_string(),
                    outcome: o.clone(),
                    started_at: None,
                    finished_at: None,
                    changes: vec![],
                    attempted: vec![],
                    reboots: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn observe_message_reads_as_an_audit_line() {
        use ComplianceState::*;
        let s = summary(&[
            ("a", Compliant),
            ("b", NonCompliant),
            ("c", Unreachable),
            ("d", Compliant),
        ]);
        let msg = commit_message(&run(RunKind::Observe, &[]), &s, &["b".into(), "c".into()]);
        assert_eq!(
            msg,
            "observe run 2026-11-24T02:00Z: 4 hosts, 1 non-compliant, 1 unreachable\n\
             \n\
             compliant: 2\n\
             non-compliant: 1 (b)\n\
             unreachable: 1 (c)\n\
             breaks security-within-7d: 1 host\n\
             \n\
             Desired-Commit: 0123abcd\n\
             Run-Id: 20261124T020000Z-x-000000\n\
             Hosts-Changed: b, c\n"
        );
    }

    #[test]
    fn apply_message_counts_outcomes() {
        use ComplianceState::*;
        let s = summary(&[("a", Compliant), ("b", RolledBack), ("c", Compliant)]);
        let r = run(
            RunKind::Apply,
            &[
                ("a", HostRunOutcome::Updated),
                (
                    "b",
                    HostRunOutcome::RolledBack {
                        reason: "health".into(),
                    },
                ),
                ("c", HostRunOutcome::Updated),
            ],
        );
        let msg = commit_message(&r, &s, &[]);
        let mut lines = msg.lines();
        assert_eq!(
            lines.next(),
            Some("apply run 2026-11-24T02:00Z: 2 hosts updated, 1 rolled back")
        );
        assert!(msg.ends_with("Hosts-Changed: none\n"), "{msg}");
        let one = run(RunKind::Apply, &[("a", HostRunOutcome::Updated)]);
        assert!(commit_message(&one, &s, &[])
            .starts_with("apply run 2026-11-24T02:00Z: 1 host updated\n"));
    }

    #[test]
    fn skipped_hosts_who_and_overrides_reach_the_subject_and_trailers() {
        use ComplianceState::*;
        let s = summary(&[("a", Compliant), ("b", NonCompliant)]);
        let mut r = run(
            RunKind::Apply,
            &[
                ("a", HostRunOutcome::Updated),
                (
                    "b",
                    HostRunOutcome::Skipped {
                        reason: "stale".into(),
                    },
                ),
            ],
        );
        r.applied_by = Some("alice".into());
        r.requested_by = vec!["bob (request/cve-1)".into()];
        r.overrides = vec!["--at 2026-12-01T06:30:00Z: windows evaluated\nForged: x".into()];
        let msg = commit_message(&r, &s, &[]);
        assert!(
            msg.starts_with("apply run 2026-11-24T02:00Z: 1 host updated, 1 skipped\n"),
            "{msg}"
        );
        assert!(!msg.contains("failed"), "{msg}");
        assert!(msg.ends_with(
            "Requested-By: bob (request/cve-1)\nApplied-By: alice\nOverride: --at 2026-12-01T06:30:00Z: windows evaluated Forged: x\n"
        ), "{msg}");
    }

    #[test]
    fn records_without_the_audit_fields_still_read() {
        // A run record as written before per-host times, reasons, actors and overrides.
        let old = r#"{"runId":"20261124T020000Z-apply-1a2b3c","kind":"apply","startedAt":"2026-11-24T02:00:00Z","finishedAt":"2026-11-24T02:05:00Z","desiredCommit":"abc","hosts":[{"host":"a","outcome":"updated","changes":[{"package":"libpk","from":"1.0-1","to":"1.2-1"}]},{"host":"b","outcome":"failed","reason":"x"}]}"#;
        let r: RunRecord = serde_json::from_str(old).expect("old record reads");
        assert_eq!(r.hosts[0].changes[0].reasons, Vec::<String>::new());
        assert!(r.applied_by.is_none() && r.overrides.is_empty());
    }

    #[test]
    fn summary_counts_every_state() {
        use ComplianceState::*;
        let s = summary(&[("a", Compliant), ("b", NonCompliant), ("c", NonCompliant)]);
        assert_eq!(s.total, 3);
        assert_eq!(s.counts.len(), ComplianceState::ALL.len());
        assert_eq!(s.count(NonCompliant), 2);
        assert_eq!(s.count(Excluded), 0);
        assert_eq!(s.broken_rules.get("security-within-7d"), Some(&2));
    }

    #[test]
    fn run_ids_sort_by_time_and_are_unique() {
        let t = ts("2026-11-24T02:00:00Z");
        let a = RunRecord::new_id(RunKind::Apply, t);
        let b = RunRecord::new_id(RunKind::Apply, t);
        assert!(a.starts_with("20261124T020000Z-apply-"), "{a}");
        assert_ne!(a, b);
        assert!(RunRecord::new_id(RunKind::Observe, ts("2026-11-24T02:00:01Z")) > a);
    }

    #[test]
    fn run_record_json_is_flat_per_host() {
        let r = run(
            RunKind::Apply,
            &[(
                "b",
                HostRunOutcome::RolledBack {
                    reason: "health".into(),
                },
            )],
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["hosts"][0]["outcome"], "rolled-back");
        assert_eq!(v["hosts"][0]["reason"], "health");
        let back: RunRecord = serde_json::from_value(v).expect("parse");
        assert_eq!(back, r);
    }

    #[test]
    fn schema_files_are_in_sync() {
        for (name, text) in schema_files() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas")
                .join(name);
            if std::env::var_os("UPDATE_EXPECT").is_some() {
                std::fs::write(&path, &text).expect("write schema");
                continue;
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "schemas/{name} is stale: rerun with UPDATE_EXPECT=1"
            );
        }
    }
}
