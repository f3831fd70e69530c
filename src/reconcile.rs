//! The reconcile loop of `patchkeeper serve`: a pure decision core ([`decide`]: state and
//! event in, next action out, like kube-runtime's reconciler returning an `Action`) and a
//! thin shell ([`Reconciler`]) that performs the actions: fetch the fleet repo, validate a
//! new commit, observe and report, wait.
//!
//! Guarantees, written into the core and tested there: an invalid commit is reported once
//! and skipped, and the last good commit stays in force; a commit is never reconciled before
//! it validated; failures back off exponentially (capped) and never stop the loop; the
//! interval is measured from the end of the last reconcile.
//!
//! Every reconcile refreshes the advisory data when an [`AdvisoryFeed`] is set, observes and
//! plans (with first-seen times from the previous report, the hosts' advisory assessment and
//! dry runs on the hosts), so the published plan is always the current one. When Settings
//! enable `reconcile.autoApply` and the reconciler has an [`Executor`], it then applies what
//! windows allow now, observes again and records an apply run; otherwise it records an
//! observe run. Progress, results and events go to a shared [`Status`] that the HTTP API
//! reads (`Reconciler::with_status`); a manual reconcile is asked for through it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use std::path::PathBuf;

use crate::apply::{ApplyReport, Progress, Stop};
use crate::observed::ObservedFleet;
use crate::pipeline::{self, Pipeline};
use crate::plan::{Plan, PlanInput, Simulations};
use crate::report::{self, ReportTarget, RunRecord};
use crate::source::{Location, Source};
use crate::status::{Phase, Status};
use crate::validate::{self, ValidFleet};

/// Why a reconcile runs (carried into its log span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The desired commit changed (and validated).
    NewCommit,
    /// The interval passed.
    Interval,
    /// Someone asked (API, signal).
    Manual,
    /// The previous reconcile failed.
    Retry,
}

impl Reason {
    /// The kebab-case name (`new-commit`, `interval`, `manual`, `retry`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewCommit => "new-commit",
            Reason::Interval => "interval",
            Reason::Manual => "manual",
            Reason::Retry => "retry",
        }
    }
}

/// Loop timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Reconcile at least this often.
    pub interval: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Timing {
    /// `interval` with a 10 s first backoff capped at the interval (at least 10 s).
    pub fn with_interval(interval: Duration) -> Timing {
        Timing {
            interval,
            backoff: Duration::from_secs(10),
            max_backoff: interval.max(Duration::from_secs(10)),
        }
    }

    fn backoff_for(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What the loop knows; observable by an HTTP API (cheap to clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The last commit that validated: the desired state in force.
    pub last_good: Option<String>,
    /// The tip commit that failed validation (reported; skipped until the tip moves).
    pub rejected: Option<String>,
    /// When the last reconcile ended.
    pub last_reconcile: Option<Timestamp>,
    /// Consecutive reconcile failures.
    pub failures: u32,
    /// Consecutive fetch failures.
    pub fetch_failures: u32,
}

/// What one reconcile round did: logged as one line at its end (`round done`), and what
/// `serve --once` exits on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// The fleet commit reconciled.
    pub commit: String,
    /// Hosts observed (or attempted).
    pub observed: usize,
    /// Hosts that could not be observed (unreachable, or the observation failed).
    pub unreachable: Vec<String>,
    /// Hosts whose packages the round's apply changed (and kept).
    pub changed: Vec<String>,
    /// Hosts the round's apply left failed: failed, rolled back, stale, skipped, lost.
    pub failed: Vec<String>,
    /// Hosts the plan in force after the round still has changes for (waiting for their
    /// window, frozen, or not applied: `autoApply` off).
    pub pending: usize,
    /// The run id (`Run-Id:` of the report commit, the run record's id).
    pub run_id: String,
    /// The report commit, `None` when nothing was committed (no host changed, within
    /// `reports.heartbeat`).
    pub report: Option<String>,
}

impl Round {
    /// Logs the round's one-line summary; `next` is the wait before the next round, when
    /// the loop goes on.
    fn log(&self, next: Option<Duration>) {
        let list = |hosts: &[String]| hosts.join(",");
        tracing::info!(
            commit = %self.commit,
            observed = self.observed,
            unreachable = self.unreachable.len(),
            changed = self.changed.len(),
            failed = self.failed.len(),
            pending = self.pending,
            run = %self.run_id,
            report = %self.report.as_deref().unwrap_or("none (no host changed)"),
            next_round_in = %next.map_or_else(|| "-".to_owned(), |d| format!("{}s", d.as_secs())),
            unreachable_hosts = %list(&self.unreachable),
            changed_hosts = %list(&self.changed),
            failed_hosts = %list(&self.failed),
            "round done"
        );
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The source's tip is `commit`.
    Fetched {
        /// The tip.
        commit: String,
        /// When.
        at: Timestamp,
    },
    /// Fetching failed.
    FetchFailed {
        /// When.
        at: Timestamp,
    },
    /// `commit` validated.
    Validated {
        /// The commit.
        commit: String,
    },
    /// `commit` did not validate.
    Rejected {
        /// The commit.
        commit: String,
    },
    /// A reconcile of `commit` finished.
    Reconciled {
        /// When.
        at: Timestamp,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A manual trigger.
    Triggered,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check out and validate `commit`.
    Validate {
        /// The commit.
        commit: String,
    },
    /// Record that `commit` was rejected (once), keeping `last_good` in force.
    ReportRejected {
        /// The commit.
        commit: String,
        /// The commit that stays in force.
        last_good: Option<String>,
    },
    /// Observe (and, later, apply) and report for `commit`.
    Reconcile {
        /// The commit.
        commit: String,
        /// Why.
        reason: Reason,
    },
    /// Sleep, then fetch again.
    Wait(Duration),
}

/// The pure core: updates `state` with `event` and returns the next action.
pub fn decide(state: &mut State, event: Event, timing: &Timing) -> Action {
    match event {
        Event::Fetched { commit, at } => {
            state.fetch_failures = 0;
            if state.rejected.as_deref() == Some(commit.as_str()) {
                // The tip is still the rejected commit: keep reconciling the last good one.
                return due_or_wait(state, at, timing);
            }
            if state.last_good.as_deref() != Some(commit.as_str()) {
                return Action::Validate { commit };
            }
            due_or_wait(state, at, timing)
        }
        Event::FetchFailed { at } => {
            state.fetch_failures += 1;
            // The source being down does not suspend the desired state in force.
            match due_or_wait(state, at, timing) {
                Action::Wait(d) => Action::Wait(d.min(timing.backoff_for(state.fetch_failures))),
                other => other,
            }
        }
        Event::Validated { commit } => {
            state.last_good = Some(commit.clone());
            state.rejected = None;
            Action::Reconcile {
                commit,
                reason: Reason::NewCommit,
            }
        }
        Event::Rejected { commit } => {
            state.rejected = Some(commit.clone());
            Action::ReportRejected {
                commit,
                last_good: state.last_good.clone(),
            }
        }
        Event::Reconciled { at, ok } => {
            state.last_reconcile = Some(at);
            if ok {
                state.failures = 0;
                Action::Wait(timing.interval)
            } else {
                state.failures += 1;
                Action::Wait(timing.backoff_for(state.failures))
            }
        }
        Event::Triggered => match &state.last_good {
            Some(c) => Action::Reconcile {
                commit: c.clone(),
                reason: Reason::Manual,
            },
            None => Action::Wait(Duration::ZERO),
        },
    }
}

fn due_or_wait(state: &State, at: Timestamp, timing: &Timing) -> Action {
    let Some(commit) = state.last_good.clone() else {
        return Action::Wait(timing.interval);
    };
    let (wait, reason) = if state.failures > 0 {
        (timing.backoff_for(state.failures), Reason::Retry)
    } else {
        (timing.interval, Reason::Interval)
    };
    match state.last_reconcile {
        None => Action::Reconcile { commit, reason },
        Some(last) => {
            let elapsed = Duration::try_from(at.duration_since(last)).unwrap_or(Duration::ZERO);
            if elapsed >= wait {
                Action::Reconcile { commit, reason }
            } else {
                Action::Wait(wait - elapsed)
            }
        }
    }
}

/// How the shell learns the observed state of a fleet (the observe engine in production).
pub trait Observer {
    /// Observes every host of `fleet`, telling `progress` about each as it is done.
    fn observe(
        &mut self,
        fleet: &ValidFleet,
        progress: Arc<dyn pipeline::Progress>,
    ) -> Result<ObservedFleet, String>;
    /// Observes only `hosts` (never empty): those an apply worked on, whose observation
    /// from before it may be out of date. Default: observes every host and keeps those.
    fn observe_hosts(
        &mut self,
        fleet: &ValidFleet,
        hosts: &BTreeSet<String>,
        progress: Arc<dyn pipeline::Progress>,
    ) -> Result<ObservedFleet, String> {
        let all = self.observe(fleet, progress)?;
        Ok(ObservedFleet::new(
            all.observed_at,
            all.hosts
                .into_iter()
                .filter(|h| hosts.contains(&h.name))
                .collect(),
        ))
    }
    /// Dry-runs the transactions of a first-pass plan on their hosts, so the plan lists
    /// what the package managers would pull in alongside.
    fn dry_run(
        &mut self,
        fleet: &ValidFleet,
        observed: &ObservedFleet,
        first_pass: &Plan,
    ) -> Result<Simulations, String>;
}

/// The production [`Observer`]: the library [`Pipeline`] over SSH, with every host and
/// Settings' defaults, exactly as `patchkeeper observe` and `plan` do.
pub struct EngineObserver {
    pipeline: Arc<Pipeline>,
    /// `serve --cluster`: a round's observation is work items every replica takes.
    queue: Option<crate::cluster::WorkQueue>,
}

/// How long a round waits for the replicas' observations through the work queue.
const QUEUE_ROUND_LIMIT: Duration = Duration::from_secs(30 * 60);

impl EngineObserver {
    /// An observer over `pipeline`.
    pub fn new(pipeline: Arc<Pipeline>) -> EngineObserver {
        EngineObserver {
            pipeline,
            queue: None,
        }
    }

    /// Observes every host of a round through `queue`: one work item per host, taken by
    /// whichever replica's worker ([`queue_handler`]) fetches it.
    pub fn with_queue(mut self, queue: crate::cluster::WorkQueue) -> EngineObserver {
        self.queue = Some(queue);
        self
    }
}

/// A round's observation through the cluster's work queue: each host's item is observed
/// by some replica; a host no replica returned is `not-observed`, with the reason.
fn observe_through(
    queue: &crate::cluster::WorkQueue,
    fleet: &ValidFleet,
    progress: Arc<dyn pipeline::Progress>,
) -> Result<ObservedFleet, String> {
    use crate::observed::{FailureReason, HostStatus, ObservedHost};
    let hosts: Vec<String> = fleet.hosts().map(|h| h.name.clone()).collect();
    if hosts.is_empty() {
        return Err(pipeline::PipelineError::NoHosts.to_string());
    }
    progress.observing(hosts.len());
    let round = RunRecord::new_id(report::RunKind::Observe, Timestamp::now());
    let done = queue
        .dispatch(&round, &fleet.fleet().digest, &hosts, QUEUE_ROUND_LIMIT)
        .map_err(|e| e.to_string())?;
    let not_observed = |name: &str, message: String| {
        ObservedHost::new(
            name,
            HostStatus::Unreachable {
                reason: FailureReason::NotObserved { message },
            },
        )
    };
    let observed = hosts
        .iter()
        .map(|name| {
            let host = match done.get(name) {
                Some(d) => match &d.output {
                    Ok(bytes) => serde_json::from_slice::<ObservedHost>(bytes)
                        .ok()
                        .filter(|h| h.name == *name)
                        .unwrap_or_else(|| {
                            not_observed(
                                name,
                                format!(
                                    "the observation replica {} returned does not read",
                                    d.replica
                                ),
                            )
                        }),
                    Err(why) => not_observed(name, why.clone()),
                },
                None => not_observed(
                    name,
                    format!(
                        "no replica observed it within {}s",
                        QUEUE_ROUND_LIMIT.as_secs()
                    ),
                ),
            };
            progress.observed(&host);
            host
        })
        .collect();
    Ok(ObservedFleet::new(Timestamp::now().to_string(), observed))
}

/// The desired state this replica serves work items of (`serve --cluster`): the digest of
/// the fleet it validated last.
pub fn queue_desired(status: Arc<Status>) -> crate::cluster::work::Desired {
    Arc::new(move || status.desired().map(|(_, f)| f.fleet().digest.clone()))
}

/// What a replica does with the work items it takes (`serve --cluster`): observes the
/// hosts with its own pipeline, from its validated fleet when that is the desired state
/// the items name (its digest: files and bytes; otherwise they go back to the queue, for a
/// replica that has it — the leader always does).
///
/// The batches a worker runs together share the fleet's `observe.parallel`: a replica
/// connects to no more hosts at once than `serve` alone would.
pub fn queue_handler(
    status: Arc<Status>,
    pipeline: Arc<Pipeline>,
) -> crate::cluster::work::Handler {
    let budget = crate::cluster::ConnectionBudget::new();
    Arc::new(move |desired: &str, hosts: &[String]| {
        let (_, fleet) = status.desired()?;
        if fleet.fleet().digest != desired {
            return None;
        }
        let outputs = match crate::observe::HostSelector::exactly(hosts.iter().map(String::as_str))
        {
            Some(selector) => {
                let limit = crate::observe::parallel_setting(&fleet.settings());
                let connections = budget.take(hosts.len(), limit);
                let scope = pipeline::Scope {
                    selector,
                    refresh: None,
                    parallel: Some(connections.count()),
                };
                pipeline
                    .observe(&fleet, &scope, Arc::new(pipeline::Quiet))
                    .map_err(|e| e.to_string())
            }
            None => Err("no host names".to_owned()),
        };
        Some(match outputs {
            Ok(observed) => observed
                .hosts
                .into_iter()
                .map(|h| {
                    let json = serde_json::to_vec(&h).map_err(|e| e.to_string());
                    (h.name, json)
                })
                .collect(),
            Err(why) => hosts
                .iter()
                .map(|h| (h.clone(), Err(why.clone())))
                .collect(),
        })
    })
}

/// How long a clustered leader waits for one host's apply item: a safety net only (a
/// replica that dies with it is noticed within the queue's ack wait).
const APPLY_WITHIN: Duration = Duration::from_secs(24 * 3600);

/// The [`crate::apply::HostRunner`] of a clustered leader: once a batch starts, each of its
/// hosts goes to the work queue as an apply item, and whichever replica takes it runs the
/// host's steps under the host's lease; the leader keeps the batch's windows, permits and
/// failure budget.
pub struct QueueRunner {
    queue: crate::cluster::WorkQueue,
    leadership: Arc<dyn Leadership + Send + Sync>,
}

impl QueueRunner {
    /// Hands hosts to `queue` while `leadership` says this replica leads (a deposed
    /// leader starts no host: each is `skipped`, untouched).
    pub fn new(
        queue: crate::cluster::WorkQueue,
        leadership: Arc<dyn Leadership + Send + Sync>,
    ) -> QueueRunner {
        QueueRunner { queue, leadership }
    }
}

impl crate::apply::HostRunner for QueueRunner {
    fn run(
        &self,
        remote: crate::apply::RemoteHost,
    ) -> crate::apply::GateFuture<crate::apply::HostResult> {
        use crate::apply::{HostResult, Outcome};
        let host = remote.host.host.clone();
        if !self.leadership.is_leader() {
            let result = HostResult::untouched(
                &host,
                Outcome::Skipped,
                vec!["not started: this replica no longer holds the leader lease".into()],
            );
            return Box::pin(async move { result });
        }
        let started = Timestamp::now();
        // The host may have been touched (a replica died with it): started, so the round
        // re-observes it.
        let failed = move |host: String, why: String| HostResult {
            host,
            outcome: Outcome::Failed,
            detail: vec![why],
            changes: 0,
            millis: 0,
            started_at: Some(started),
            finished_at: Some(Timestamp::now()),
            reboots: Vec::new(),
        };
        let payload = match serde_json::to_string(&remote) {
            Ok(p) => p,
            Err(e) => {
                let result = failed(host, format!("cannot write the apply item: {e}"));
                return Box::pin(async move { result });
            }
        };
        let done = self.queue.apply(
            &format!("{}+apply", remote.run),
            &remote.desired,
            &host,
            payload,
            APPLY_WITHIN,
        );
        Box::pin(async move {
            let done = done.await;
            match done.output {
                Ok(bytes) => serde_json::from_slice::<HostResult>(&bytes).unwrap_or_else(|e| {
                    failed(
                        host,
                        format!(
                            "replica {} answered what does not read as a host's result: {e}",
                            done.replica
                        ),
                    )
                }),
                Err(why) => failed(host, why),
            }
        })
    }
}

/// Progress of the hosts a worker applies for the leader: log lines only (the leader's
/// round publishes the results).
struct WorkerProgress;

impl Progress for WorkerProgress {
    fn host(&self, host: &str, message: &str) {
        tracing::info!(host, "{message}");
    }

    fn batch(&self, _index: usize, _message: &str) {}
}

/// What a replica does with the apply items it takes (`serve --cluster`): runs the host's
/// steps from its validated fleet when that is the state the item names, under `gate`
/// (the host's lease, taken whether or not this replica leads: the item is the leader's
/// word), journaled to `shared` and to a file of its own under `repo`'s state directory
/// (`worker/`: not the file this replica's own runs append to, which opening would heal
/// under them; the stream is what recovery reads).
pub fn apply_handler(
    status: Arc<Status>,
    pipeline: Arc<Pipeline>,
    repo: PathBuf,
    gate: Arc<dyn crate::apply::HostGate>,
    shared: Arc<dyn crate::apply::journal::Shared>,
) -> crate::cluster::work::ApplyHandler {
    use crate::apply::journal::Journal;
    type Open = Option<(String, String, Arc<Journal>)>;
    // One journal per run: the hosts of a run share it (its writes are serialized).
    let open: Arc<std::sync::Mutex<Open>> = Arc::new(std::sync::Mutex::new(None));
    let dir = crate::apply::state_dir(&repo).join("worker");
    Arc::new(move |desired: &str, payload: &str| {
        let (_, fleet) = status.desired()?;
        if fleet.fleet().digest != desired {
            return None;
        }
        let remote: crate::apply::RemoteHost = match serde_json::from_str(payload) {
            Ok(r) => r,
            Err(e) => return Some(Err(format!("the apply item does not read: {e}"))),
        };
        let journal = {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            match open.as_ref() {
                Some((run, plan, j)) if *run == remote.run && *plan == remote.plan => j.clone(),
                _ => match Journal::open(&dir, &remote.run, &remote.plan) {
                    Ok(j) => {
                        let j = Arc::new(j.with_shared(Some(shared.clone())));
                        *open = Some((remote.run.clone(), remote.plan.clone(), j.clone()));
                        j
                    }
                    Err(e) => return Some(Err(format!("cannot open the journal: {e}"))),
                },
            }
        };
        let result = pipeline.apply_remote(
            &fleet,
            &remote,
            journal,
            Some(gate.clone()),
            Arc::new(WorkerProgress),
        );
        Some(serde_json::to_vec(&result).map_err(|e| e.to_string()))
    })
}

impl Observer for EngineObserver {
    fn observe(
        &mut self,
        fleet: &ValidFleet,
        progress: Arc<dyn pipeline::Progress>,
    ) -> Result<ObservedFleet, String> {
        if let Some(queue) = &self.queue {
            return observe_through(queue, fleet, progress);
        }
        self.pipeline
            .observe(fleet, &pipeline::Scope::default(), progress)
            .map_err(|e| e.to_string())
    }

    fn observe_hosts(
        &mut self,
        fleet: &ValidFleet,
        hosts: &BTreeSet<String>,
        progress: Arc<dyn pipeline::Progress>,
    ) -> Result<ObservedFleet, String> {
        let Some(selector) =
            crate::observe::HostSelector::exactly(hosts.iter().map(String::as_str))
        else {
            return Ok(ObservedFleet::new(Timestamp::now().to_string(), Vec::new()));
        };
        let scope = pipeline::Scope {
            selector,
            // What the apply left, not what the mirrors offer now: no index refresh.
            refresh: Some(false),
            parallel: None,
        };
        self.pipeline
            .observe(fleet, &scope, progress)
            .map_err(|e| e.to_string())
    }

    fn dry_run(
        &mut self,
        fleet: &ValidFleet,
        observed: &ObservedFleet,
        first_pass: &Plan,
    ) -> Result<Simulations, String> {
        let progress = Arc::new(crate::simulate::Silent);
        crate::simulate::dry_run_plan(
            self.pipeline.runtime(),
            fleet,
            observed,
            first_pass,
            progress,
        )
        .map_err(|e| e.to_string())
    }
}

/// Whether this replica may reconcile: with several `serve` replicas (`serve --cluster`),
/// only the one holding the leader lease runs rounds; the others follow the desired commit
/// and the reports like `serve --api-only`, and take over when they win the lease.
pub trait Leadership: Send + Sync {
    /// Whether this replica leads now.
    fn is_leader(&self) -> bool;
    /// The fencing token of this replica's last term as leader (it only grows from one
    /// leader to the next); `None`: no terms (a single replica, nothing to fence).
    fn term(&self) -> Option<crate::report::LeaderTerm> {
        None
    }
    /// This replica's part, for metrics (`None`: not a cluster replica).
    fn brief(&self) -> Option<ReplicaBrief> {
        None
    }
}

/// A cluster replica's part, as its metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaBrief {
    /// The replica id (`HOST-PID-RANDOM`).
    pub replica: String,
    /// Whether it leads now.
    pub leading: bool,
    /// Its last term as leader ([`Leadership::term`]).
    pub term: Option<crate::report::LeaderTerm>,
    /// Times it took or lost the lead.
    pub changes: u64,
    /// Renewals of its lease that failed (a slow or unreachable server).
    pub renewal_failures: u64,
}

/// How the shell applies a plan (the apply executor in production).
pub trait Executor {
    /// Takes what applying needs (the fleet lock) before the round observes any host, so a
    /// round that could not apply says so first; held until [`Executor::release`].
    fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Applies what `plan` allows now (windows, rollouts) to the hosts of `fleet`.
    fn apply(
        &mut self,
        fleet: &ValidFleet,
        plan: &Plan,
        progress: Arc<dyn crate::apply::Progress>,
    ) -> Result<ApplyReport, String>;
    /// Releases what [`Executor::prepare`] took (the round is over).
    fn release(&mut self) {}
    /// Recovers hosts left in flight before the round observes (a clustered `serve`:
    /// another replica may have died mid-transaction); a no-op by default, where the
    /// round's apply recovers first.
    fn recover(&mut self, _fleet: &ValidFleet, _progress: Arc<dyn crate::apply::Progress>) {}
}

/// The production [`Executor`]: [`Pipeline::apply`] (`patchkeeper apply --auto-approve`
/// without the terminal): the fleet lock, crash recovery and the journal under
/// `<repo>/.patchkeeper/`.
pub struct EngineExecutor {
    pipeline: Arc<Pipeline>,
    repo: PathBuf,
    stop: Arc<Stop>,
    locked: Option<pipeline::Locked>,
    gate: Option<Arc<dyn crate::apply::HostGate>>,
    shared: Option<Arc<dyn crate::apply::journal::Shared>>,
    runner: Option<Arc<dyn crate::apply::HostRunner>>,
}

impl EngineExecutor {
    /// An executor keeping its lock and journal under `repo`; setting `stop` lets hosts in
    /// the middle of a package transaction finish and starts no new one.
    pub fn new(pipeline: Arc<Pipeline>, repo: PathBuf, stop: Arc<Stop>) -> EngineExecutor {
        EngineExecutor {
            pipeline,
            repo,
            stop,
            locked: None,
            gate: None,
            shared: None,
            runner: None,
        }
    }

    /// Hands each host's steps to `runner` once its batch starts (the cluster's work
    /// queue: any replica runs them).
    pub fn with_runner(mut self, runner: Arc<dyn crate::apply::HostRunner>) -> EngineExecutor {
        self.runner = Some(runner);
        self
    }

    /// Takes `gate`'s pass (the cluster's per-host lease) before each host starts.
    pub fn with_gate(mut self, gate: Arc<dyn crate::apply::HostGate>) -> EngineExecutor {
        self.gate = Some(gate);
        self
    }

    /// Also journals to `shared` (the cluster's journal stream), and recovers what any
    /// replica left in flight there at the start of each round.
    pub fn with_journal(
        mut self,
        shared: Arc<dyn crate::apply::journal::Shared>,
    ) -> EngineExecutor {
        self.shared = Some(shared);
        self
    }
}

impl Executor for EngineExecutor {
    fn prepare(&mut self) -> Result<(), String> {
        if self.locked.is_none() {
            let mut locked = self.pipeline.lock(&self.repo).map_err(|e| e.to_string())?;
            if let Some(gate) = &self.gate {
                locked = locked.gated(gate.clone());
            }
            if let Some(shared) = &self.shared {
                locked = locked.journaled(shared.clone());
            }
            if let Some(runner) = &self.runner {
                locked = locked.run_by(runner.clone());
            }
            self.locked = Some(locked);
        }
        Ok(())
    }

    fn apply(
        &mut self,
        fleet: &ValidFleet,
        plan: &Plan,
        progress: Arc<dyn crate::apply::Progress>,
    ) -> Result<ApplyReport, String> {
        self.prepare()?;
        let Some(locked) = &self.locked else {
            return Err("the fleet lock is not held".into());
        };
        self.pipeline
            .apply(locked, &self.repo, fleet, plan, self.stop.clone(), progress)
            .map_err(|e| e.to_string())
    }

    fn release(&mut self) {
        self.locked = None;
    }

    fn recover(&mut self, fleet: &ValidFleet, progress: Arc<dyn crate::apply::Progress>) {
        // Without a shared journal only this process's own apply left hosts in flight: its
        // apply recovers them first, as a single `apply` does.
        if self.shared.is_none() {
            return;
        }
        let Some(locked) = self.locked.as_mut() else {
            return;
        };
        if let Err(e) = self
            .pipeline
            .recover(locked, &self.repo, fleet, progress.as_ref())
        {
            tracing::error!("crash recovery failed (retried before the round applies): {e}");
        }
    }
}

/// Progress of a reconcile: log lines, and the published status and events.
struct Publish(Arc<Status>);

impl pipeline::Progress for Publish {
    fn observed(&self, host: &crate::observed::ObservedHost) {
        use crate::observed::HostStatus;
        // Reasons can carry what a host or resolver said: escaped for the terminal.
        match &host.status {
            HostStatus::Reachable => tracing::info!(host = %host.name, "observed"),
            HostStatus::Unreachable { reason } => tracing::warn!(
                host = %host.name,
                "unreachable: {}",
                crate::terminal::escape(&reason.to_string())
            ),
            HostStatus::Error { reason } => tracing::warn!(
                host = %host.name,
                "could not be observed: {}",
                crate::terminal::escape(&reason.to_string())
            ),
        }
        self.0.host_observed(host);
    }
}

impl Progress for Publish {
    fn host(&self, host: &str, message: &str) {
        tracing::info!(host, "{message}");
    }

    fn batch(&self, index: usize, message: &str) {
        if index == usize::MAX {
            tracing::warn!("{message}");
        } else {
            tracing::info!(batch = index + 1, "{message}");
        }
    }

    fn batch_started(&self, batch: &crate::plan::Batch, hosts: usize) {
        self.0
            .batch_started(batch.index, &batch.rollout, &batch.stage, hosts);
    }

    fn host_finished(&self, result: &crate::apply::HostResult) {
        self.0.host_applied(result);
    }

    fn rollout_halted(&self, rollout: &str, failures: usize) {
        self.0.rollout_halted(rollout, failures);
    }
}

/// The imperative shell around [`decide`].
///
/// Every step is published to a [`Status`] (phase, per-host results, the plan, the reports,
/// events), which readers such as the HTTP API share; they never run a stage themselves.
pub struct Reconciler<O: Observer> {
    source: Source,
    observer: O,
    timing: Timing,
    /// The loop's state (read it for status).
    pub state: State,
    rejected_errors: Vec<String>,
    last_good_fleet: Option<Arc<ValidFleet>>,
    shutdown: Arc<AtomicBool>,
    executor: Option<Box<dyn Executor + Send>>,
    settings_interval: bool,
    watch_only: bool,
    status: Arc<Status>,
    advisories: Option<AdvisoryFeed>,
    /// The critical findings announced (`critical-finding` events) and still open.
    critical: crate::advisory::critical::Announced,
    /// The last round that ran to its report (`None` before one, or after a round that
    /// failed).
    pub last_round: Option<Round>,
    leadership: Option<Arc<dyn Leadership>>,
}

/// Where `serve` keeps advisory data and what it imports besides the fleet repo's Settings
/// `advisories.sources`.
#[derive(Debug, Clone, Default)]
pub struct AdvisoryFeed {
    /// The store file.
    pub store: PathBuf,
    /// Paths or `https://` URLs the operator names (`serve --advisories`), outside the
    /// fleet repo's say.
    pub extra: Vec<PathBuf>,
    /// How `https://` sources are fetched (timeout, size cap, extra CAs).
    pub fetch: crate::advisory::remote::FetchOptions,
}

/// One source the feed refreshes.
enum FeedSource {
    /// A file or directory, stored under `key` (`fleet-repo:PATH` or the absolute path).
    Path { path: PathBuf, key: String },
    /// An `https://` URL, stored under itself.
    Url(String),
}

impl FeedSource {
    fn key(&self) -> &str {
        match self {
            FeedSource::Path { key, .. } => key,
            FeedSource::Url(url) => url,
        }
    }
}

impl AdvisoryFeed {
    /// Re-imports the sources whose last check is older than Settings' `advisories.refresh`
    /// (default 6h): the fleet repo's (paths keyed `fleet-repo:PATH`, URLs by themselves)
    /// and the operator's. Unchanged data is not rewritten (a URL is asked conditionally:
    /// a 304 or the same digest leaves the store alone). A source that cannot be read or
    /// fetched keeps its previous data; each check (time, error, failures in a row) is
    /// recorded in the store. Returns the checks of the configured sources.
    pub fn refresh(&self, fleet: &ValidFleet, now: Timestamp) -> Vec<crate::advisory::SourceCheck> {
        use crate::advisory::remote::{self, Fetched};
        use crate::advisory::{import, CheckOutcome};
        let settings = fleet.settings().advisories;
        let every = settings
            .refresh
            .as_deref()
            .and_then(|r| crate::duration::parse_duration(r).ok())
            .unwrap_or(Duration::from_secs(6 * 3600));
        let root = fleet.fleet().root.clone();
        let mut sources: Vec<FeedSource> = settings
            .sources
            .iter()
            .map(|s| {
                if remote::is_url(s) {
                    FeedSource::Url(s.clone())
                } else {
                    FeedSource::Path {
                        path: root.join(s),
                        key: format!("fleet-repo:{s}"),
                    }
                }
            })
            .collect();
        sources.extend(self.extra.iter().map(|p| {
            match p.to_str() {
                Some(s) if remote::is_url(s) => FeedSource::Url(s.to_owned()),
                _ => FeedSource::Path {
                    path: p.clone(),
                    key: std::path::absolute(p)
                        .unwrap_or_else(|_| p.clone())
                        .to_string_lossy()
                        .into_owned(),
                },
            }
        }));
        if sources.is_empty() {
            return Vec::new();
        }
        let mut store = match crate::advisory::Store::open(&self.store) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("advisory data not refreshed: {e}");
                return Vec::new();
            }
        };
        // Built when the first URL is due (it starts a thread).
        let mut fetcher: Option<Result<remote::Fetcher, String>> = None;
        for source in &sources {
            let key = source.key();
            let shown = crate::redact::text(key).into_owned();
            let previous = store.check_of(key).ok().flatten();
            let imported = store.import_of(key).ok().flatten();
            let last = previous
                .as_ref()
                .and_then(|c| c.checked_at.clone())
                .or_else(|| imported.as_ref().map(|i| i.checked_at.clone()));
            let due = last
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_none_or(|t| now.duration_since(t).as_secs() >= every.as_secs() as i64);
            if !due {
                continue;
            }
            let outcome: Result<(CheckOutcome, Option<import::Imported>), String> = match source {
                FeedSource::Path { path, key } => {
                    import::import_path(&mut store, path, Some(key), None, now, false)
                        .map(|done| {
                            (
                                CheckOutcome::Ok {
                                    etag: None,
                                    last_modified: None,
                                },
                                Some(done),
                            )
                        })
                        .map_err(|e| e.to_string())
                }
                FeedSource::Url(url) => {
                    let client = fetcher.get_or_insert_with(|| {
                        remote::Fetcher::new(&self.fetch).map_err(|e| e.to_string())
                    });
                    // Validators only while the data they describe is stored.
                    let (etag, modified) = match (&previous, &imported) {
                        (Some(c), Some(_)) => (c.etag.as_deref(), c.last_modified.as_deref()),
                        _ => (None, None),
                    };
                    match client {
                        Err(e) => Err(e.clone()),
                        Ok(client) => match client.fetch(url, etag, modified) {
                            Err(e) => Err(e.to_string()),
                            Ok(Fetched::NotModified) => store
                                .touch(url, now)
                                .map(|()| (CheckOutcome::NotModified, None))
                                .map_err(|e| e.to_string()),
                            Ok(Fetched::Body {
                                bytes,
                                etag,
                                last_modified,
                            }) => {
                                let date = last_modified.as_deref().and_then(remote::http_date);
                                import::read_bytes(url, &bytes, None, date)
                                    .and_then(|loaded| {
                                        drop(bytes);
                                        import::import_loaded(&mut store, &loaded, now, false)
                                    })
                                    .map(|done| {
                                        (
                                            CheckOutcome::Ok {
                                                etag,
                                                last_modified,
                                            },
                                            Some(done),
                                        )
                                    })
                                    .map_err(|e| e.to_string())
                            }
                        },
                    }
                }
            };
            let check = match outcome {
                Ok((check, done)) => {
                    match done {
                        Some(done) if !done.unchanged => tracing::info!(
                            source = %shown,
                            records = done.info.stats.records,
                            skipped = done.info.stats.skipped,
                            "advisory data imported"
                        ),
                        _ => tracing::debug!(source = %shown, "advisory data unchanged"),
                    }
                    check
                }
                Err(e) => {
                    let e = crate::redact::text(&e).into_owned();
                    tracing::warn!(source = %shown, "advisory data not refreshed (the last good data stays in use): {e}");
                    CheckOutcome::Failed(e)
                }
            };
            if let Err(e) = store.record_check(key, &check, now) {
                tracing::warn!(source = %shown, "advisory check not recorded: {e}");
            }
        }
        let checks = store.checks().unwrap_or_default();
        sources
            .iter()
            .filter_map(|s| checks.iter().find(|c| c.source == s.key()).cloned())
            .collect()
    }

    /// The assessment of `observed` against the store (`None`: no data, or unreadable,
    /// which is logged).
    pub fn assess(
        &self,
        fleet: &ValidFleet,
        observed: &ObservedFleet,
        now: Timestamp,
    ) -> Option<crate::advisory::Assessment> {
        match crate::advisory::fleet::assess_at(&self.store, fleet, observed, now) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("advisory data not used: {e}");
                None
            }
        }
    }
}

impl<O: Observer> Reconciler<O> {
    /// A reconciler over `source`; `shutdown` stops [`Reconciler::run`] between steps.
    pub fn new(source: Source, observer: O, timing: Timing, shutdown: Arc<AtomicBool>) -> Self {
        Reconciler {
            source,
            observer,
            timing,
            state: State::default(),
            rejected_errors: Vec::new(),
            last_good_fleet: None,
            shutdown,
            executor: None,
            settings_interval: false,
            watch_only: false,
            status: Arc::new(Status::default()),
            advisories: None,
            critical: crate::advisory::critical::Announced::new(),
            last_round: None,
            leadership: None,
        }
    }

    /// Reconciles only while `leadership` says this replica leads (`serve --cluster`);
    /// otherwise follows like [`Reconciler::watch_only`], and reconciles at once when it
    /// takes the lead.
    pub fn with_leadership(mut self, leadership: Arc<dyn Leadership>) -> Self {
        self.leadership = Some(leadership);
        self
    }

    fn leading(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_leader())
    }

    /// Keeps advisory data fresh in `feed` and uses it in plans and reports.
    pub fn with_advisories(mut self, feed: AdvisoryFeed) -> Self {
        self.advisories = Some(feed);
        self
    }

    /// Takes the interval from each validated commit's Settings (`reconcile.interval`)
    /// when it names one, so the fleet repo decides how often it is reconciled.
    pub fn with_settings_interval(mut self) -> Self {
        self.settings_interval = true;
        self
    }

    /// Applies with `executor` when Settings enable `reconcile.autoApply` (without one,
    /// every reconcile only observes, plans and reports).
    pub fn with_executor(mut self, executor: impl Executor + Send + 'static) -> Self {
        self.executor = Some(Box::new(executor));
        self
    }

    /// Publishes to `status` (shared with the HTTP API) instead of a private one.
    pub fn with_status(mut self, status: Arc<Status>) -> Self {
        self.status = status;
        self
    }

    /// Follows the desired commit and the reports branch only: validates new commits and
    /// re-reads the reports each round, never contacting a host or writing a report
    /// (`serve --api-only`: a read replica for dashboards).
    pub fn watch_only(mut self) -> Self {
        self.watch_only = true;
        self
    }

    /// The published status.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// One round: fetch, then follow the decisions until one says wait; returns the wait.
    pub fn step(&mut self, now: impl Fn() -> Timestamp) -> Duration {
        self.step_with(now, false, false)
    }

    /// One round; with `triggered`, reconciles the commit in force even when it is not
    /// due (once: a new commit's reconcile counts). `looping`: a next round follows, and
    /// the round's summary says when.
    fn step_with(
        &mut self,
        now: impl Fn() -> Timestamp,
        mut triggered: bool,
        looping: bool,
    ) -> Duration {
        // A round's summary waits for the decision of when the next one starts.
        let mut done: Option<Round> = None;
        self.status.set_phase(Phase::Fetching);
        let began = std::time::Instant::now();
        let fetched = self.source.fetch();
        tracing::debug!(
            seconds = began.elapsed().as_secs_f64(),
            "fetched the fleet repo"
        );
        let mut event = match fetched {
            Ok(commit) => Event::Fetched { commit, at: now() },
            Err(e) => {
                tracing::warn!(source = %self.source.location(), "fetch failed: {e}");
                Event::FetchFailed { at: now() }
            }
        };
        self.refresh_submitted();
        loop {
            let action = decide(&mut self.state, event, &self.timing);
            event = match action {
                Action::Wait(_) if triggered => {
                    triggered = false;
                    Event::Triggered
                }
                Action::Wait(d) => {
                    if let Some(round) = done.take() {
                        round.log(looping.then_some(d));
                    }
                    self.status.set_phase(Phase::Idle);
                    return d;
                }
                Action::Validate { commit } => {
                    self.status.set_phase(Phase::Validating);
                    self.validate(&commit)
                }
                Action::ReportRejected { commit, last_good } => {
                    self.report_rejected(&commit, last_good.as_deref(), now());
                    if triggered {
                        triggered = false;
                        Event::Triggered
                    } else {
                        self.status.set_phase(Phase::Idle);
                        return Duration::ZERO;
                    }
                }
                Action::Reconcile { commit, reason } => {
                    triggered = false;
                    if let Some(round) = done.take() {
                        round.log(None);
                    }
                    let span = tracing::info_span!("reconcile", commit = %commit, reason = ?reason);
                    let _enter = span.enter();
                    let ok = if self.watch_only || !self.leading() {
                        if !self.watch_only {
                            tracing::info!(
                                "following: another replica holds the leader lease and reconciles"
                            );
                        }
                        self.refresh_reports();
                        true
                    } else {
                        self.status.reconcile_started(&commit, reason.as_str());
                        let result = self.reconcile(&commit, now());
                        let ok = result.is_ok();
                        self.last_round = None;
                        let error = match result {
                            Ok(round) => {
                                self.last_round = Some(round.clone());
                                done = Some(round);
                                None
                            }
                            Err(e) => {
                                tracing::error!("reconcile failed: {e}");
                                Some(e)
                            }
                        };
                        self.status.reconcile_finished(ok, error);
                        ok
                    };
                    Event::Reconciled { at: now(), ok }
                }
            };
        }
    }

    /// Runs until `shutdown` is set: a round, then a wait that ends early on shutdown or
    /// on a reconcile request ([`Status::request_reconcile`]).
    pub fn run(&mut self) {
        let mut triggered = false;
        let mut leading = self.leading();
        while !self.shutdown.load(Ordering::SeqCst) {
            let wait = self.step_with(Timestamp::now, std::mem::take(&mut triggered), true);
            if !wait.is_zero() {
                // Says the loop is idle and alive (operators and tests read it).
                tracing::info!("waiting {}s until the next reconcile", wait.as_secs());
            }
            let until = std::time::Instant::now() + wait;
            while !self.shutdown.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                let slice = Duration::from_millis(200).min(until - std::time::Instant::now());
                if self.status.wait_for_trigger(slice) {
                    triggered = true;
                    break;
                }
                // A replica that takes the lead reconciles now, not after its interval.
                let now_leading = self.leading();
                if now_leading != leading {
                    leading = now_leading;
                    if leading {
                        tracing::info!("this replica leads now: reconciling");
                        triggered = true;
                        break;
                    }
                }
            }
        }
        self.status.set_phase(Phase::Stopping);
    }

    fn load(&self, commit: &str) -> Result<validate::Outcome, String> {
        let co = self.source.checkout(commit).map_err(|e| e.to_string())?;
        let mut outcome = validate::load_and_validate(&co.dir).map_err(|e| e.to_string())?;
        if let (Some(fleet), Location::Local(dir)) = (&mut outcome.fleet, self.source.location()) {
            fleet.set_root(dir.clone());
        }
        Ok(outcome)
    }

    fn validate(&mut self, commit: &str) -> Event {
        let began = std::time::Instant::now();
        match self.load(commit) {
            Ok(outcome) => match outcome.fleet {
                Some(fleet) => {
                    tracing::info!(
                        commit,
                        hosts = fleet.hosts().count(),
                        seconds = began.elapsed().as_secs_f64(),
                        "desired commit validated"
                    );
                    if self.settings_interval {
                        let interval = fleet.settings().reconcile.interval;
                        match interval.as_deref().map(crate::duration::parse_duration) {
                            Some(Ok(d)) if !d.is_zero() => self.timing = Timing::with_interval(d),
                            Some(_) => tracing::warn!(
                                "ignoring Settings reconcile.interval {interval:?}: not a positive duration"
                            ),
                            None => {}
                        }
                    }
                    let fleet = Arc::new(fleet);
                    self.status.set_desired(commit, fleet.clone());
                    self.last_good_fleet = Some(fleet);
                    if !self.status.has_reports() {
                        // Compliance from before this process started, until it reports.
                        self.refresh_reports();
                    }
                    Event::Validated {
                        commit: commit.to_owned(),
                    }
                }
                None => {
                    self.rejected_errors = outcome
                        .diagnostics
                        .iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.to_string())
                        .collect();
                    Event::Rejected {
                        commit: commit.to_owned(),
                    }
                }
            },
            Err(e) => {
                self.rejected_errors = vec![e];
                Event::Rejected {
                    commit: commit.to_owned(),
                }
            }
        }
    }

    fn target(&self, fleet: Option<&ValidFleet>) -> ReportTarget {
        let repo = self.source.repo_path();
        let mut target = match fleet {
            Some(f) => ReportTarget::from_fleet(&repo, f),
            None => ReportTarget {
                repo: repo.clone(),
                branch: report::DEFAULT_BRANCH.to_owned(),
                remote: None,
                auth: report::GitAuth::from_env(),
                author: (
                    report::DEFAULT_AUTHOR.0.into(),
                    report::DEFAULT_AUTHOR.1.into(),
                ),
                signing: None,
                refused: None,
                heartbeat: std::time::Duration::from_secs(24 * 3600),
                fence: None,
            },
        };
        // A clustered leader fences its commits with its term (see `ReportTarget::fence`).
        target.fence = self.leadership.as_ref().and_then(|l| l.term());
        // The token stays bound to the fleet repo's host, whatever `reports.remote` says.
        target.auth = self.source.auth().clone();
        // Reports of a fetched repo go back to where it came from.
        if let (None, Location::Remote(url)) = (&target.remote, self.source.location()) {
            target.remote = Some(url.clone());
        }
        target
    }

    /// Re-reads the reports branch and publishes it.
    fn refresh_reports(&self) {
        let target = self.target(self.last_good_fleet.as_deref());
        let began = std::time::Instant::now();
        match report::read_target(&target) {
            Ok(Some(snapshot)) => {
                tracing::debug!(
                    branch = %target.branch,
                    hosts = snapshot.hosts.len(),
                    seconds = began.elapsed().as_secs_f64(),
                    "read the reports"
                );
                self.status.set_reports(Arc::new(snapshot));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(branch = %target.branch, "cannot read the reports: {e}"),
        }
    }

    /// Re-reads the review branches of patch requests and publishes them.
    fn refresh_submitted(&self) {
        let began = std::time::Instant::now();
        let submitted = crate::request::submitted(&self.source);
        tracing::debug!(
            seconds = began.elapsed().as_secs_f64(),
            "listed patch-request branches"
        );
        match submitted {
            Ok(list) => self.status.set_submitted(list),
            Err(e) => tracing::debug!("cannot list patch-request branches: {e}"),
        }
    }

    fn report_rejected(&self, commit: &str, last_good: Option<&str>, now: Timestamp) {
        // What is wrong, as `validate` says it (file:line:column), then the verdict; the
        // full list is in the validate run on the reports branch.
        const LOGGED: usize = 20;
        for d in self.rejected_errors.iter().take(LOGGED) {
            tracing::error!(commit, "{}", crate::terminal::escape(d));
        }
        if self.rejected_errors.len() > LOGGED {
            tracing::error!(
                commit,
                "... and {} more errors (all of them are in the validate run on the reports branch)",
                self.rejected_errors.len() - LOGGED
            );
        }
        let in_force = match last_good {
            Some(good) => format!("the last good commit {good} stays in force"),
            None => "no commit has validated yet: nothing is reconciled until one does".into(),
        };
        tracing::error!(
            commit,
            errors = self.rejected_errors.len(),
            "desired commit rejected; {in_force}"
        );
        self.status.set_rejected(commit, self.rejected_errors.len());
        let target = self.target(self.last_good_fleet.as_deref());
        if let Err(e) =
            report::record_rejected(&target, commit, &self.rejected_errors, last_good, now)
        {
            tracing::error!("cannot record the rejected commit: {e}");
        }
    }

    fn reconcile(&mut self, commit: &str, now: Timestamp) -> Result<Round, String> {
        let fleet = match &self.last_good_fleet {
            Some(f) if self.state.last_good.as_deref() == Some(commit) => f.clone(),
            _ => Arc::new(
                self.load(commit)?
                    .fleet
                    .ok_or("the commit no longer validates")?,
            ),
        };
        // A round that applies takes the fleet lock before it observes anything: when
        // another apply holds it, the round says so at once instead of after observing
        // and dry-running every host. It is held until the round is reported.
        let applies = fleet.settings().reconcile.auto_apply;
        if let (true, Some(executor)) = (applies, self.executor.as_mut()) {
            executor.prepare().map_err(|e| {
                format!("{e}; the round applies (Settings reconcile.autoApply), so no host was observed")
            })?;
        }
        let round = self.reconcile_fleet(&fleet, commit, now);
        if let Some(executor) = self.executor.as_mut() {
            executor.release();
        }
        round
    }

    fn reconcile_fleet(
        &mut self,
        fleet: &Arc<ValidFleet>,
        commit: &str,
        now: Timestamp,
    ) -> Result<Round, String> {
        let publish = Arc::new(Publish(self.status.clone()));
        if fleet.settings().reconcile.auto_apply {
            if let Some(executor) = self.executor.as_mut() {
                executor.recover(fleet, publish.clone());
            }
        }
        self.status.set_phase(Phase::Observing);
        if let Some(feed) = &self.advisories {
            self.status.set_advisory_sources(feed.refresh(fleet, now));
        }
        let observed = Arc::new(self.observer.observe(fleet, publish.clone())?);
        self.status.set_observed(observed.clone());
        let mut round = Round {
            commit: commit.to_owned(),
            observed: observed.hosts.len(),
            unreachable: observed
                .hosts
                .iter()
                .filter(|h| !h.status.is_reachable())
                .map(|h| h.name.clone())
                .collect(),
            ..Round::default()
        };
        let target = self.target(Some(fleet));
        self.status.set_phase(Phase::Planning);
        let assessment = self.assess(fleet, &observed, now);
        let (plan, simulations) = self.plan(
            fleet,
            &target,
            &observed,
            assessment.as_ref(),
            commit,
            now,
            None,
        )?;
        if let Some(a) = &assessment {
            self.announce_critical(a, now);
            self.respond(fleet, &observed, a, &target, now);
        }
        let plan = Arc::new(plan);
        self.status.set_plan(plan.clone());
        let mut in_force = plan.clone();
        let (run, after, assessment) = match self.apply(fleet, &plan, commit, now, publish)? {
            Some(applied) => {
                round.changed = applied
                    .report
                    .hosts
                    .iter()
                    .filter(|h| h.changes > 0)
                    .map(|h| h.host.clone())
                    .collect();
                round.failed = applied
                    .report
                    .hosts
                    .iter()
                    .filter(|h| failed(h.outcome))
                    .map(|h| h.host.clone())
                    .collect();
                // Hosts the apply worked on are observed again; the others keep the
                // round's one observation, and their dry runs stand.
                let touched = pipeline::touched(&applied.report);
                if touched.is_empty() {
                    (applied.run, observed, assessment)
                } else {
                    self.status.set_phase(Phase::Observing);
                    let again =
                        self.observer
                            .observe_hosts(fleet, &touched, applied.publish.clone())?;
                    let after = Arc::new((*observed).clone().merged(again));
                    self.status.set_observed(after.clone());
                    // The plan in force is what apply would do now, after this one; the
                    // report lists the advisories still open after it.
                    self.status.set_phase(Phase::Planning);
                    let after_assessment = self.assess(fleet, &after, now);
                    let kept: Simulations = simulations
                        .into_iter()
                        .filter(|(host, _)| !touched.contains(host))
                        .collect();
                    let (replanned, _) = self.plan(
                        fleet,
                        &target,
                        &after,
                        after_assessment.as_ref(),
                        commit,
                        Timestamp::now(),
                        Some(kept),
                    )?;
                    in_force = Arc::new(replanned);
                    self.status.set_plan(in_force.clone());
                    (applied.run, after, after_assessment)
                }
            }
            None => (
                report::observation_run(&observed, commit, now),
                observed,
                assessment,
            ),
        };
        round.pending = in_force
            .hosts
            .iter()
            .filter(|h| h.status.has_changes())
            .count();
        self.status.set_phase(Phase::Reporting);
        let rec = report::record_with(&target, fleet, Some(&after), assessment.as_ref(), &run, now)
            .map_err(|e| e.to_string())?;
        round.run_id = rec.run_id.clone();
        if let Some(newer) = rec.deposed_by {
            tracing::warn!(
                run = %rec.run_id,
                term = %target.fence.map(|t| t.to_string()).unwrap_or_default(),
                newer_term = %newer,
                "a newer leader wrote the reports branch while this round ran: only its run record was committed, the host files stay as the newer leader wrote them"
            );
        }
        if rec.committed {
            tracing::info!(report = %rec.commit, run = %rec.run_id, kind = run.kind.as_str(), "reconciled");
            self.status
                .report_committed(&rec.commit, &rec.run_id, run.kind.as_str());
            round.report = Some(rec.commit.clone());
        } else {
            // `reports.heartbeat`: an observation that changed no host is not committed, so
            // there is no report commit to announce.
            tracing::info!(report = %rec.commit, run = %rec.run_id, kind = run.kind.as_str(), "reconciled; no host changed, nothing reported (reports.heartbeat)");
        }
        self.refresh_reports();
        Ok(round)
    }

    /// Rapid response (`docs/rapid-response.md`): proposes a patch request on a review
    /// branch for each qualifying advisory, or adds the hosts that gained it to its open
    /// proposal. What exists is read from Git each time (the desired commit's requests,
    /// the review branches), so a restart proposes nothing twice. A failure is logged and
    /// retried next round; it never fails the round.
    fn respond(
        &self,
        fleet: &ValidFleet,
        observed: &ObservedFleet,
        assessment: &crate::advisory::Assessment,
        target: &ReportTarget,
        now: Timestamp,
    ) {
        let settings = fleet.settings().rapid_response;
        let qualifying = crate::rapid::qualifying(fleet, assessment, &settings);
        if qualifying.is_empty() {
            return;
        }
        let open = match crate::request::submitted(&self.source) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("rapid response skipped: cannot list patch-request branches: {e}");
                return;
            }
        };
        let merged: Vec<(String, crate::model::PatchRequestSpec)> = fleet
            .fleet()
            .requests
            .iter()
            .map(|r| (r.name().to_owned(), r.doc.spec.clone()))
            .collect();
        let policy = match crate::policy::Policy::for_repo(&fleet.fleet().root) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("rapid response skipped: {e}");
                return;
            }
        };
        let existing = crate::rapid::Existing {
            merged: &merged,
            open: &open,
        };
        let proposals = crate::rapid::decide(&qualifying, existing, &settings, &policy, now);
        if proposals.is_empty() {
            return;
        }
        let first_seen = report::first_seen(&target.repo, &target.branch).unwrap_or_default();
        let intake = crate::request::Intake::new(self.source.clone());
        let render =
            |f: &ValidFleet| crate::rapid::plan_text(f, observed, assessment, &first_seen, now);
        for p in &proposals {
            let tip = match p {
                crate::rapid::Proposal::New { .. } => None,
                crate::rapid::Proposal::AddHosts { tip, .. } => Some(tip.as_str()),
            };
            match intake.propose(p.document(), tip, &render) {
                Ok(filed) => match p {
                    crate::rapid::Proposal::New { advisory, .. } => tracing::info!(
                        advisory = %advisory,
                        branch = %filed.branch,
                        commit = %filed.commit,
                        "rapid response: proposed a patch request"
                    ),
                    crate::rapid::Proposal::AddHosts {
                        advisory, added, ..
                    } => tracing::info!(
                        advisory = %advisory,
                        branch = %filed.branch,
                        commit = %filed.commit,
                        hosts = %added.join(","),
                        "rapid response: added hosts to the proposed patch request"
                    ),
                },
                Err(e) => {
                    tracing::warn!(request = %p.name(), "rapid response: cannot propose the patch request: {e}")
                }
            }
        }
        // The proposals are on the branches now: readers (API, alerts) see them at once.
        self.refresh_submitted();
    }

    /// Publishes a `critical-finding` event for each critical finding of `assessment` not
    /// announced before ([`crate::advisory::critical`]; on a process's first round, the
    /// last report's open advisories count as announced).
    fn announce_critical(&mut self, assessment: &crate::advisory::Assessment, now: Timestamp) {
        use crate::advisory::critical::Reported;
        let reported: Vec<Reported> = self
            .status
            .reports()
            .map(|snapshot| {
                snapshot
                    .hosts
                    .iter()
                    .flat_map(|h| {
                        h.compliance
                            .advisories
                            .iter()
                            .filter(|a| a.advisory.severity == crate::advisory::Severity::Critical)
                            .map(|a| Reported {
                                host: h.compliance.host.clone(),
                                advisory: a.advisory.id.clone(),
                                source: a.advisory.source.clone(),
                                first_seen: a.first_seen,
                                excepted: a.advisory.exception.is_some(),
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        for found in self.critical.round(assessment, &reported, now) {
            tracing::info!(host = %found.host, advisory = %found.advisory, "new critical finding");
            self.status
                .critical_finding(found, assessment.snapshot.clone());
        }
    }

    /// The assessment of `observed` against the advisory feed (`None`: no feed, no data,
    /// or unreadable data, which the feed logs).
    fn assess(
        &self,
        fleet: &ValidFleet,
        observed: &ObservedFleet,
        now: Timestamp,
    ) -> Option<crate::advisory::Assessment> {
        self.advisories
            .as_ref()
            .and_then(|f| f.assess(fleet, observed, now))
    }

    /// The plan of this reconcile (with first-seen times from the previous report, the
    /// advisory assessment, and dry runs on the hosts), made every round so readers always
    /// see the current one. `kept`: dry runs still valid (hosts not changed since), not
    /// run again. Returns the plan and the dry runs it used.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        fleet: &ValidFleet,
        target: &ReportTarget,
        observed: &ObservedFleet,
        advisories: Option<&crate::advisory::Assessment>,
        commit: &str,
        now: Timestamp,
        kept: Option<Simulations>,
    ) -> Result<(Plan, Simulations), String> {
        // Outstanding time counts from the first report that saw an update offered.
        let first_seen = match report::first_seen(&target.repo, &target.branch) {
            Ok(first_seen) => first_seen,
            Err(e) => {
                tracing::warn!("cannot read the previous report: {e}");
                Default::default()
            }
        };
        // What the promotion sources ran, from the reports target (its remote fetched now).
        let promotion = match pipeline::promotion_evidence_at(target, fleet) {
            Ok(evidence) => evidence,
            Err(e) => {
                tracing::warn!("cannot read promotion evidence: {e}; nothing counts as promoted");
                Default::default()
            }
        };
        let input = PlanInput {
            fleet,
            fleet_commit: Some(commit),
            observed,
            at: now,
            first_seen: &first_seen,
            simulations: None,
            promotion: &promotion,
            advisories,
        };
        let first = crate::plan::plan(input);
        if !first.has_changes() {
            return Ok((first, Simulations::new()));
        }
        let mut simulations = kept.unwrap_or_default();
        let mut to_run = first.clone();
        to_run.hosts.retain(|h| !simulations.contains_key(&h.host));
        if to_run.hosts.iter().any(|h| h.status.has_changes()) {
            simulations.extend(self.observer.dry_run(fleet, observed, &to_run)?);
        }
        let plan = crate::plan::plan(PlanInput {
            simulations: Some(&simulations),
            ..input
        });
        Ok((plan, simulations))
    }

    /// Applies when Settings enable it and the plan changes something; returns the apply
    /// run and what the apply did.
    fn apply(
        &mut self,
        fleet: &ValidFleet,
        plan: &Plan,
        commit: &str,
        now: Timestamp,
        publish: Arc<Publish>,
    ) -> Result<Option<Applied>, String> {
        if !fleet.settings().reconcile.auto_apply {
            return Ok(None);
        }
        let Some(executor) = self.executor.as_mut() else {
            return Ok(None);
        };
        if !plan.has_changes() {
            tracing::info!("nothing to apply");
            return Ok(None);
        }
        self.status.set_phase(Phase::Applying);
        let began = std::time::Instant::now();
        let report = executor.apply(fleet, plan, publish.clone())?;
        let elapsed =
            jiff::SignedDuration::try_from(began.elapsed()).unwrap_or(jiff::SignedDuration::ZERO);
        let run = report::apply_run(
            plan,
            &report,
            commit,
            now,
            now.saturating_add(elapsed).unwrap_or(now),
            &report::RunAudit {
                applied_by: Some(format!("serve ({})", crate::actor::current(None))),
                ..Default::default()
            },
        );
        Ok(Some(Applied {
            run,
            report,
            publish,
        }))
    }
}

/// What a round's apply did.
struct Applied {
    run: RunRecord,
    report: ApplyReport,
    publish: Arc<Publish>,
}

/// Whether the apply left the host failed: what makes `apply` exit 4 (not converged),
/// except a reboot the rollout's policy leaves pending.
fn failed(outcome: crate::apply::Outcome) -> bool {
    use crate::apply::Outcome;
    matches!(
        outcome,
        Outcome::Failed
            | Outcome::RolledBack
            | Outcome::Stale
            | Outcome::Skipped
            | Outcome::Unreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Timestamp {
        Timestamp::from_second(1_795_000_000 + min * 60).expect("time")
    }

    fn timing() -> Timing {
        Timing {
            interval: Duration::from_secs(300),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }

    fn fetched(c: &str, min: i64) -> Event {
        Event::Fetched {
            commit: c.into(),
            at: at(min),
        }
    }

    fn reconcile(c: &str, reason: Reason) -> Action {
        Action::Reconcile {
            commit: c.into(),
            reason,
        }
    }

    #[test]
    fn a_new_commit_is_validated_before_it_is_reconciled() {
        let mut s = State::default();
        assert_eq!(
            decide(&mut s, fetched("a", 0), &timing()),
            Action::Validate { commit: "a".into() }
        );
        assert_eq!(s.last_good, None, "not in force before it validates");
        assert_eq!(
            decide(&mut s, Event::Validated { commit: "a".into() }, &timing()),
            reconcile("a", Reason::NewCommit)
        );
        assert_eq!(
            decide(
                &mut s,
                Event::Reconciled {
                    at: at(1),
                    ok: true
                },
                &timing()
            ),
            Action::Wait(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_interval_counts_from_the_end_of_the_last_reconcile() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("a", 2), &timing()),
            Action::Wait(Duration::from_secs(180))
        );
        assert_eq!(
            decide(&mut s, fetched("a", 5), &timing()),
            reconcile("a", Reason::Interval)
        );
    }

    #[test]
    fn an_invalid_commit_is_reported_once_and_the_last_good_stays() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("b", 1), &timing()),
            Action::Validate { commit: "b".into() }
        );
        assert_eq!(
            decide(&mut s, Event::Rejected { commit: "b".into() }, &timing()),
            Action::ReportRejected {
                commit: "b".into(),
                last_good: Some("a".into())
            }
        );
        assert_eq!(s.last_good.as_deref(), Some("a"));
        // The tip is still b: no second validation or report; a keeps being reconciled.
        assert_eq!(
            decide(&mut s, fetched("b", 2), &timing()),
            Action::Wait(Duration::from_secs(180))
        );
        assert_eq!(
            decide(&mut s, fetched("b", 6), &timing()),
            reconcile("a", Reason::Interval)
        );
        // A fix on top is validated and takes over.
        assert_eq!(
            decide(&mut s, fetched("c", 7), &timing()),
            Action::Validate { commit: "c".into() }
        );
        assert_eq!(
            decide(&mut s, Event::Validated { commit: "c".into() }, &timing()),
            reconcile("c", Reason::NewCommit)
        );
        assert_eq!(s.rejected, None);
    }

    #[test]
    fn nothing_is_reconciled_before_a_first_good_commit() {
        let mut s = State::default();
        decide(&mut s, fetched("bad", 0), &timing());
        decide(
            &mut s,
            Event::Rejected {
                commit: "bad".into(),
            },
            &timing(),
        );
        assert_eq!(
            decide(&mut s, fetched("bad", 10), &timing()),
            Action::Wait(Duration::from_secs(300))
        );
        assert_eq!(
            decide(&mut s, Event::Triggered, &timing()),
            Action::Wait(Duration::ZERO)
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let mut s = State {
            last_good: Some("a".into()),
            ..State::default()
        };
        let waits: Vec<Action> = (0..7)
            .map(|i| {
                decide(
                    &mut s,
                    Event::Reconciled {
                        at: at(i),
                        ok: false,
                    },
                    &timing(),
                )
            })
            .collect();
        let secs = |a: &Action| match a {
            Action::Wait(d) => d.as_secs(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            waits.iter().map(secs).collect::<Vec<_>>(),
            [10, 20, 40, 80, 160, 300, 300]
        );
        // Due again after the backoff, as a retry; success resets.
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            failures: 1,
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("a", 1), &timing()),
            reconcile("a", Reason::Retry)
        );
        decide(
            &mut s,
            Event::Reconciled {
                at: at(2),
                ok: true,
            },
            &timing(),
        );
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_down_source_keeps_the_last_good_commit_in_force() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(1) }, &timing()),
            Action::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(1) }, &timing()),
            Action::Wait(Duration::from_secs(20))
        );
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(5) }, &timing()),
            reconcile("a", Reason::Interval)
        );
        decide(&mut s, fetched("a", 6), &timing());
        assert_eq!(s.fetch_failures, 0);
    }

    #[test]
    fn a_manual_trigger_reconciles_now() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, Event::Triggered, &timing()),
            reconcile("a", Reason::Manual)
        );
    }
}
