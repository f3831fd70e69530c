//! The online pipeline, one path for every driver: `patchkeeper observe`, `plan` and
//! `apply` on the command line, and `serve`'s reconcile loop (which the HTTP API only
//! reads from). Stages: observe the hosts, read first-seen times and promotion evidence
//! from the reports, plan,
//! dry-run each host's transaction, plan again with what the package managers said, and
//! apply unattended (lock, crash recovery, journal).
//!
//! Progress goes to the caller through [`Progress`] (a terminal bar, log lines, the loop's
//! published status and events): this module prints nothing and knows nothing of
//! terminals or HTTP. Errors are typed; hosts that cannot be observed are not errors but
//! results, each with its reason.

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;

use crate::advisory::{self, Assessment, StoreError};
use crate::apply::lock::FleetLock;
use crate::apply::recover::recover_fleet_shared;
use crate::apply::{ApplyOptions, ApplyReport, Stop, SystemClock};
use crate::observe::{self, HostSelector, ObserveError, RunOptions};
use crate::observed::{ObservedFleet, ObservedHost};
use crate::plan::{self, Evidence, FirstSeen, Plan, PlanInput};
use crate::report::{self, ReportError, ReportTarget};
use crate::simulate::{self, SimulateError};
use crate::validate::ValidFleet;

/// Errors that stop a stage (per-host failures are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A host's connection settings are invalid.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The dry runs could not start.
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    /// The open-files limit cannot hold the run's connections.
    #[error(transparent)]
    OpenFiles(#[from] crate::open_files::OpenFilesError),
    /// The selection matches no host.
    #[error("no host to observe")]
    NoHosts,
    /// Another apply holds the fleet lock, or it cannot be taken.
    #[error("{0}")]
    Lock(String),
    /// The apply journal cannot be read or written.
    #[error("apply journal: {0}")]
    Journal(String),
    /// Hosts an earlier apply left in flight could not be recovered.
    #[error("recovering hosts an earlier apply left in flight: {0}")]
    Recover(String),
}

/// What the pipeline reports as it goes. Every method has a default that does nothing.
pub trait Progress: Send + Sync {
    /// Observation of `hosts` hosts starts.
    fn observing(&self, _hosts: usize) {}
    /// One host was observed (or could not be).
    fn observed(&self, _host: &ObservedHost) {}
    /// Dry runs of `hosts` transactions start.
    fn dry_runs(&self, _hosts: usize) {}
    /// One host's dry run ended.
    fn dry_run_done(&self, _host: &str) {}
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Adapts [`Progress`] to the dry-run engine's progress interface.
struct DryRuns(Arc<dyn Progress>);

impl simulate::Progress for DryRuns {
    fn started(&self, hosts: usize) {
        self.0.dry_runs(hosts);
    }

    fn done(&self, host: &str) {
        self.0.dry_run_done(host);
    }
}

/// Which hosts to observe and how.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only these hosts (default: every inventory host).
    pub selector: HostSelector,
    /// Refresh package indexes first (default: Settings' `observe.refresh`).
    pub refresh: Option<bool>,
    /// Hosts observed at once (default: Settings' `observe.parallel`).
    pub parallel: Option<usize>,
}

/// The pipeline with its async runtime (SSH fan-out); drive it from synchronous code.
pub struct Pipeline {
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline with its own multi-threaded runtime. Must not be called from async code.
    pub fn new() -> Result<Pipeline, PipelineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(PipelineError::Runtime)?;
        Ok(Pipeline { runtime })
    }

    /// The runtime the stages run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Observes the hosts `scope` selects, at most `parallel` at once, each within its
    /// deadline; one bad host never stops the others.
    pub fn observe(
        &self,
        fleet: &ValidFleet,
        scope: &Scope,
        progress: Arc<dyn Progress>,
    ) -> Result<ObservedFleet, PipelineError> {
        let settings = fleet.settings();
        let root = fleet.fleet().root.clone();
        let targets = fleet
            .hosts()
            .filter(|h| scope.selector.matches(h))
            .map(|h| observe::target_for(&root, &settings, h, scope.refresh))
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(PipelineError::NoHosts);
        }
        let options = RunOptions::from_settings(&settings, scope.parallel)?;
        crate::open_files::ensure(options.parallel.min(targets.len()))?;
        progress.observing(targets.len());
        Ok(self
            .runtime
            .block_on(observe::observe_all(targets, &options, move |host| {
                progress.observed(host)
            })))
    }

    /// Plans from `observed`: a first pass names each host's transaction, the hosts
    /// dry-run them with their own package manager, and a second pass folds in what they
    /// would pull in alongside (held, removed or refused: the host is blocked).
    pub fn plan(
        &self,
        input: PlanInput<'_>,
        progress: Arc<dyn Progress>,
    ) -> Result<Plan, PipelineError> {
        let first = plan::plan(PlanInput {
            simulations: None,
            ..input
        });
        let simulations = simulate::dry_run_plan(
            &self.runtime,
            input.fleet,
            input.observed,
            &first,
            Arc::new(DryRuns(progress)),
        )?;
        if simulations.is_empty() {
            return Ok(first);
        }
        Ok(plan::plan(PlanInput {
            simulations: Some(&simulations),
            ..input
        }))
    }

    /// The online plan of `plan` and `apply`: observe every host, read first-seen times
    /// and the promotion sources' evidence ([`promotion_evidence`]), assess the hosts
    /// against the advisory store (`advisory::fleet::store_path(repo)`:
    /// `$PATCHKEEPER_ADVISORY_STORE`, else `<repo>/.patchkeeper/advisories.db`), plan with
    /// dry runs. Returns the plan, the observation and the assessment it was made from, and
    /// the warnings when first-seen times, promotion evidence or advisory data could not be
    /// read (every update then counts as first seen now; nothing counts as promoted, so
    /// promoting baselines' hosts wait; the plan names no advisory).
    pub fn plan_now(
        &self,
        repo: &Path,
        fleet: &ValidFleet,
        at: Timestamp,
        progress: Arc<dyn Progress>,
    ) -> Result<Online, PipelineError> {
        let observed = self.observe(fleet, &Scope::default(), progress.clone())?;
        let (first_seen, warning) = match first_seen(repo, fleet) {
            Ok(f) => (f, None),
            Err(e) => (FirstSeen::new(), Some(e)),
        };
        let (promotion, promotion_warning) = match promotion_evidence(repo, fleet) {
            Ok(e) => (e, None),
            Err(e) => (Evidence::default(), Some(e)),
        };
        let (advisories, advisory_warning) = match assessment(repo, fleet, &observed, at) {
            Ok(a) => (a, None),
            Err(e) => (None, Some(e)),
        };
        let plan = self.plan(
            PlanInput {
                fleet,
                fleet_commit: fleet.fleet().commit.as_deref(),
                observed: &observed,
                at,
                first_seen: &first_seen,
                simulations: None,
                promotion: &promotion,
                advisories: advisories.as_ref(),
            },
            progress,
        )?;
        Ok(Online {
            plan,
            observed,
            advisories,
            first_seen_warning: warning,
            promotion_warning,
            advisory_warning,
        })
    }

    /// Takes the fleet lock under `repo` for a new apply run, without waiting: what an
    /// unattended apply needs first, so a run that cannot apply refuses before it observes
    /// any host. The lock is held until the returned [`Locked`] is dropped (or the process
    /// exits: it is an OS file lock).
    pub fn lock(&self, repo: &Path) -> Result<Locked, PipelineError> {
        // One id for the run: its journal lines and its run record (`report::apply_run`
        // takes it from the report) carry the same.
        let run = report::RunRecord::new_id(report::RunKind::Apply, Timestamp::now());
        let state = crate::apply::state_dir(repo);
        // An OS file lock: the kernel releases it when this process exits, so it is never
        // stale and never broken.
        let lock =
            FleetLock::acquire(&state, &run).map_err(|e| PipelineError::Lock(e.to_string()))?;
        Ok(Locked {
            run,
            _lock: lock,
            gate: None,
            shared: None,
            recovered: None,
            runner: None,
        })
    }

    /// Runs one host's steps for another replica's run (`serve --cluster`: an apply item
    /// of the work queue): under `gate` (the host's lease), journaled to `journal` (opened
    /// on that run's and plan's ids). No fleet lock: the run that started the host holds
    /// its own.
    pub fn apply_remote(
        &self,
        fleet: &ValidFleet,
        remote: &crate::apply::RemoteHost,
        journal: Arc<crate::apply::journal::Journal>,
        gate: Option<Arc<dyn crate::apply::HostGate>>,
        progress: Arc<dyn crate::apply::Progress>,
    ) -> crate::apply::HostResult {
        let options = ApplyOptions {
            parallel: None,
            clock: Arc::new(SystemClock),
            stop: Arc::new(Stop::default()),
            progress,
            blocked: std::collections::BTreeMap::new(),
            saved_plan: None,
            gate,
            runner: None,
        };
        self.runtime
            .block_on(crate::apply::execute_one(fleet, remote, journal, &options))
    }

    /// Recovers the hosts an earlier apply (with several replicas: any replica's) left in
    /// flight, under the fleet lock `locked` took for `repo`, and keeps the outcome in
    /// `locked` so the round's apply does not recover them again. A clustered `serve` calls
    /// it at the start of each round, before observing, so the round sees recovered hosts.
    pub fn recover(
        &self,
        locked: &mut Locked,
        repo: &Path,
        fleet: &ValidFleet,
        progress: &dyn crate::apply::Progress,
    ) -> Result<Vec<crate::apply::recover::Recovery>, PipelineError> {
        let done = self.recover_hosts(locked, repo, fleet, progress)?;
        locked.recovered = Some(done.clone());
        Ok(done)
    }

    fn recover_hosts(
        &self,
        locked: &Locked,
        repo: &Path,
        fleet: &ValidFleet,
        progress: &dyn crate::apply::Progress,
    ) -> Result<Vec<crate::apply::recover::Recovery>, PipelineError> {
        let recoveries = self
            .runtime
            .block_on(recover_fleet_shared(
                fleet,
                repo,
                &locked.run,
                progress,
                locked.gate.as_deref(),
                locked.shared.clone(),
            ))
            .map_err(PipelineError::Recover)?;
        for r in &recoveries {
            tracing::warn!("an earlier apply left a host in flight: {}", r.line());
        }
        Ok(recoveries)
    }

    /// Applies what `plan` allows now, unattended (`apply --auto-approve` without a
    /// terminal), under the fleet lock `locked` took for `repo`: recovers hosts an earlier
    /// apply left in flight, journals every step, and applies batch by batch. `stop` lets
    /// running package transactions finish and starts no new one.
    pub fn apply(
        &self,
        locked: &Locked,
        repo: &Path,
        fleet: &ValidFleet,
        plan: &Plan,
        stop: Arc<Stop>,
        progress: Arc<dyn crate::apply::Progress>,
    ) -> Result<ApplyReport, PipelineError> {
        use crate::apply::journal::{self, Journal};
        let run = locked.run.as_str();
        crate::open_files::ensure(crate::apply::connections_at_once(plan, None))?;
        let state = crate::apply::state_dir(repo);
        // Recovered at the start of the round already (a clustered serve): not again, so a
        // host is recovered, and reported, once.
        let recoveries = match &locked.recovered {
            Some(done) => done.clone(),
            None => self.recover_hosts(locked, repo, fleet, progress.as_ref())?,
        };
        // A host whose crash recovery failed is left alone by this run.
        let blocked = recoveries
            .iter()
            .filter(|r| !r.recovered)
            .map(|r| (r.host.clone(), r.blocked_reason()))
            .collect();
        let plan_id = crate::apply::plan_id(plan);
        let mut entries =
            journal::read(&state).map_err(|e| PipelineError::Journal(e.to_string()))?;
        // With several replicas, a host another replica finished for this plan is not
        // redone either.
        if let Some(shared) = &locked.shared {
            let theirs = shared.entries().map_err(|e| {
                PipelineError::Journal(format!("cannot read the shared journal: {e}"))
            })?;
            entries = journal::merge(entries, theirs);
        }
        let finished = journal::finished(&entries, &plan_id);
        let journal = Arc::new(
            Journal::open(&state, run, &plan_id)
                .map_err(|e| PipelineError::Journal(e.to_string()))?
                .with_shared(locked.shared.clone()),
        );
        journal
            .record(
                None,
                journal::Event::RunStarted {
                    pid: std::process::id(),
                },
            )
            .map_err(|e| PipelineError::Journal(e.to_string()))?;
        let options = ApplyOptions {
            parallel: None,
            clock: Arc::new(SystemClock),
            stop,
            progress,
            blocked,
            // The pipeline applies only plans it just made from the fleet commit.
            saved_plan: None,
            gate: locked.gate.clone(),
            runner: locked.runner.clone(),
        };
        tracing::info!(run = %run, plan = %plan_id, "applying");
        Ok(self.runtime.block_on(crate::apply::execute(
            plan, fleet, run, journal, &finished, &options,
        )))
    }
}

/// The fleet lock held for one apply run (released when dropped).
pub struct Locked {
    run: String,
    _lock: FleetLock,
    gate: Option<Arc<dyn crate::apply::HostGate>>,
    shared: Option<Arc<dyn crate::apply::journal::Shared>>,
    recovered: Option<Vec<crate::apply::recover::Recovery>>,
    runner: Option<Arc<dyn crate::apply::HostRunner>>,
}

impl std::fmt::Debug for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("run", &self.run)
            .field("gated", &self.gate.is_some())
            .field("shared_journal", &self.shared.is_some())
            .field("remote", &self.runner.is_some())
            .finish_non_exhaustive()
    }
}

impl Locked {
    /// Adds the guard of each host with several replicas (`serve --cluster`): `gate` is
    /// taken before each host starts and given back after its verification, so the fleet
    /// lock (this machine) and the host leases (the cluster) together make the run
    /// exclusive.
    pub fn gated(mut self, gate: Arc<dyn crate::apply::HostGate>) -> Locked {
        self.gate = Some(gate);
        self
    }

    /// Also journals to `shared` (`serve --cluster`: the cluster's journal stream), and
    /// recovers what any replica left in flight there.
    pub fn journaled(mut self, shared: Arc<dyn crate::apply::journal::Shared>) -> Locked {
        self.shared = Some(shared);
        self
    }

    /// Hands each host's steps to `runner` once its batch starts (`serve --cluster`: any
    /// replica runs them, through the work queue); this run keeps the batches, windows and
    /// failure budget.
    pub fn run_by(mut self, runner: Arc<dyn crate::apply::HostRunner>) -> Locked {
        self.runner = Some(runner);
        self
    }

    /// The run id the lock was taken for (its journal lines and run record carry it).
    pub fn run(&self) -> &str {
        &self.run
    }
}

/// The hosts an apply worked on (it connected to them: changed, failed, rolled back,
/// stale, skipped, lost): the only ones whose observation from before it may be out of
/// date. Hosts it never started (waiting for a window, blocked, compliant, halted) are not.
pub fn touched(applied: &ApplyReport) -> std::collections::BTreeSet<String> {
    applied
        .hosts
        .iter()
        .filter(|h| h.started_at.is_some())
        .map(|h| h.host.clone())
        .collect()
}

/// An online plan and what it was made from.
#[derive(Debug)]
pub struct Online {
    /// The plan.
    pub plan: Plan,
    /// The observation.
    pub observed: ObservedFleet,
    /// The advisory assessment of the observation (`None`: nothing imported, or the store
    /// could not be read).
    pub advisories: Option<Assessment>,
    /// Why first-seen times could not be read, when they could not.
    pub first_seen_warning: Option<ReportError>,
    /// Why the promotion evidence could not be read, when it could not (the plan then
    /// counts nothing as promoted).
    pub promotion_warning: Option<ReportError>,
    /// Why the advisory store could not be read, when it could not.
    pub advisory_warning: Option<StoreError>,
}

/// The assessment of `observed` against the fleet's advisory store
/// (`advisory::fleet::store_path(repo, None)`) with the fleet's exceptions in force at `at`:
/// `None` when nothing was ever imported. What `plan`, `apply` and the reports use.
pub fn assessment(
    repo: &Path,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    at: Timestamp,
) -> Result<Option<Assessment>, StoreError> {
    advisory::fleet::assess_at(
        &advisory::fleet::store_path(repo, None),
        fleet,
        observed,
        at,
    )
}

/// When each pending update was first seen offered, from the last report on the fleet's
/// reports branch (not a Git repository, or no report yet: none, so every update counts as
/// first seen now).
pub fn first_seen(repo: &Path, fleet: &ValidFleet) -> Result<FirstSeen, ReportError> {
    if fleet.fleet().commit.is_none() && !repo.join(".git").exists() && !is_bare(repo) {
        return Ok(FirstSeen::new());
    }
    let target = ReportTarget::from_fleet(repo, fleet);
    report::first_seen(&target.repo, &target.branch)
}

/// What the fleet's reports branch proves about the versions the promotion sources ran
/// (`report/evidence.rs`): read from the tip of the reports target, its remote fetched
/// first when Settings name one ([`report::promotion_evidence_of`]). No promoting baseline,
/// not a Git repository, or no reports yet: empty evidence, so promoting baselines' hosts
/// wait.
pub fn promotion_evidence(repo: &Path, fleet: &ValidFleet) -> Result<Evidence, ReportError> {
    if fleet.fleet().commit.is_none() && !repo.join(".git").exists() && !is_bare(repo) {
        return Ok(Evidence::default());
    }
    promotion_evidence_at(&ReportTarget::from_fleet(repo, fleet), fleet)
}

/// [`promotion_evidence`] from a given reports target (`serve`'s loop has its own).
pub fn promotion_evidence_at(
    target: &ReportTarget,
    fleet: &ValidFleet,
) -> Result<Evidence, ReportError> {
    let sources: Vec<String> = plan::promotion::sources(fleet).into_iter().collect();
    if sources.is_empty() {
        return Ok(Evidence::default());
    }
    report::promotion_evidence_of(target, &sources)
}

fn is_bare(repo: &Path) -> bool {
    repo.join("HEAD").is_file() && repo.join("objects").is_dir()
}
