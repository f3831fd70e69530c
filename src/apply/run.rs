//! The executor's outer loop: batches in plan order, each started only while its window lets a
//! batch start (re-evaluated with the clock at batch start), hosts in parallel up to the
//! batch's parallelism, the failure budget per rollout, interruption, and resumption of a
//! plan an earlier run already partly applied.
//!
//! With several `serve` replicas a [`HostRunner`] runs each host's steps on whichever
//! replica takes them ([`execute_one`] there); the batches, windows, permits and the
//! failure budget stay here, with the one batch starter.
//!
//! Guarantees: once a rollout's budget is spent, or apply is interrupted, no new host of it
//! starts (hosts already running finish); once a rollout's window is closed at a batch start,
//! that batch and every later batch of the rollout are reported waiting; every plan host gets
//! exactly one [`HostResult`]; a host whose crash recovery failed is never started.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::Semaphore;

use super::host::{apply_host, Ctx, HostJob};
use super::journal::{Event, Journal};
use super::{ApplyReport, HostResult, Outcome};
use crate::model::{RolloutSpec, SettingsSpec};
use crate::observe;
use crate::plan::{HostPlan, HostStatus, Plan};
use crate::transport::ssh::KeyCache;
use crate::validate::ValidFleet;
use crate::window::CompiledWindow;

/// Where "now" comes from (injected in tests).
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that starts at a given instant and runs at real speed (`apply --at`).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    start: Timestamp,
    began: Instant,
}

impl ShiftedClock {
    /// Starts now at `start`.
    pub fn new(start: Timestamp) -> ShiftedClock {
        ShiftedClock {
            start,
            began: Instant::now(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.began.elapsed())
            .unwrap_or(jiff::SignedDuration::ZERO);
        self.start.checked_add(elapsed).unwrap_or(self.start)
    }
}

/// Live progress: one call per step of a host, and per batch.
pub trait Progress: Send + Sync {
    /// A host reached a step (or ended: the message then starts with its outcome).
    fn host(&self, host: &str, message: &str);
    /// A batch starts, waits or is skipped.
    fn batch(&self, index: usize, message: &str);
    /// A batch starts `hosts` hosts (structured, for the published status and events).
    fn batch_started(&self, _batch: &crate::plan::Batch, _hosts: usize) {}
    /// A host ended with `result` (structured, as results arrive).
    fn host_finished(&self, _result: &HostResult) {}
    /// A rollout's failure budget was exceeded after `failures` failures.
    fn rollout_halted(&self, _rollout: &str, _failures: usize) {}
}

/// The stop signal (SIGINT/SIGTERM): no new host starts once it is set.
#[derive(Debug, Default)]
pub struct Stop {
    interrupted: AtomicBool,
}

impl Stop {
    /// Sets it.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    /// Whether it is set.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// A boxed future of a [`HostGate`] (awaited on apply's runtime).
pub type GateFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Who may start a host's transaction: with several `serve` replicas, the per-host lease
/// in the cluster (`cluster::HostLeases`), so two replicas never patch one host at once.
pub trait HostGate: Send + Sync {
    /// Takes the right to run `host`'s steps for run `run`, held until [`HostPass::leave`];
    /// `Err(why)`: the host must not start (it is reported `skipped`, untouched).
    fn enter(&self, host: &str, run: &str) -> GateFuture<Result<Box<dyn HostPass>, String>>;

    /// How long a pass whose holder died may still be held (its lease's TTL): crash
    /// recovery keeps trying that long before it leaves a host to the holder.
    fn expiry(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// The right to run one host's steps, from [`HostGate::enter`].
pub trait HostPass: Send {
    /// Gives it back: called once the host's steps (verification included) are over.
    fn leave(self: Box<Self>) -> GateFuture<()>;
}

/// One host's part of a run, as another replica runs it ([`HostRunner`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteHost {
    /// The run it belongs to (its journal lines name it).
    pub run: String,
    /// The plan's id.
    pub plan: String,
    /// The desired state the plan was made from (its digest): only a replica that
    /// validated the same state runs it.
    pub desired: String,
    /// The rollout of its batch (by name: each replica reads it from its validated fleet).
    pub rollout: String,
    /// The host's part of the plan.
    pub host: HostPlan,
}

/// Who runs a host's steps once its batch started: with several `serve` replicas, any
/// replica, through the cluster's work queue. The batch starter keeps the windows, the
/// permits and the failure budget; the runner takes the host's lease and journals.
pub trait HostRunner: Send + Sync {
    /// Runs `host`'s steps somewhere and returns how they ended.
    fn run(&self, host: RemoteHost) -> GateFuture<HostResult>;
}

/// Run-wide options.
pub struct ApplyOptions {
    /// `--parallel`: caps every batch's parallelism.
    pub parallel: Option<usize>,
    /// The clock windows are evaluated with.
    pub clock: Arc<dyn Clock>,
    /// The stop signal.
    pub stop: Arc<Stop>,
    /// Live progress.
    pub progress: Arc<dyn Progress>,
    /// Hosts this run must not start, with the reason (their crash recovery failed:
    /// [`super::recover::Recovery::blocked_reason`]).
    pub blocked: BTreeMap<String, String>,
    /// Applying a saved plan: each host's changes are re-derived from the fleet commit.
    pub saved_plan: Option<Arc<crate::plan::SavedPlanCheck>>,
    /// Taken before each host starts and given back after its verification (`None`: a
    /// single controller, whose fleet lock is enough).
    pub gate: Option<Arc<dyn HostGate>>,
    /// Runs each host's steps elsewhere (`None`: here, through `gate`).
    pub runner: Option<Arc<dyn HostRunner>>,
}

/// The result of a host this run did not start: it changed nothing.
fn not_run(host: &str, outcome: Outcome, detail: Vec<String>) -> HostResult {
    HostResult::untouched(host, outcome, detail)
}

/// Everything one host's steps need, from `fleet` (its inventory entry and settings).
fn job_for(
    fleet: &ValidFleet,
    plan: HostPlan,
    rollout: RolloutSpec,
    saved_check: Option<Arc<crate::plan::SavedPlanCheck>>,
) -> Result<HostJob, String> {
    let settings: SettingsSpec = fleet.settings();
    let root = fleet.fleet().root.clone();
    let target = match fleet.host(&plan.host) {
        Some(h) => observe::target_for(&root, &settings, h, None).map_err(|e| e.to_string())?,
        None => {
            return Err(format!(
                "host {} is not in the inventory any more",
                plan.host
            ))
        }
    };
    Ok(HostJob {
        plan,
        target,
        rollout,
        lock_wait: super::duration_setting(&settings.apply.lock_wait, super::DEFAULT_LOCK_WAIT),
        transaction_timeout: super::duration_setting(
            &settings.apply.transaction_timeout,
            super::DEFAULT_TRANSACTION_TIMEOUT,
        ),
        min_free_disk_mib: settings.apply.min_free_disk_mib.unwrap_or(500),
        saved_check,
    })
}

/// Runs one host's steps here, inside `gate`'s pass when there is a gate (a host it
/// refuses is `skipped`, untouched).
async fn run_here(
    job: &HostJob,
    ctx: &Ctx,
    gate: Option<&Arc<dyn HostGate>>,
    run: &str,
) -> HostResult {
    let pass = match gate {
        Some(g) => match g.enter(&job.plan.host, run).await {
            Ok(p) => Some(p),
            Err(why) => {
                ctx.progress.host(&job.plan.host, &why);
                return not_run(&job.plan.host, Outcome::Skipped, vec![why]);
            }
        },
        None => None,
    };
    let result = apply_host(job, ctx).await;
    // After the host's verification (apply_host ends with it).
    if let Some(p) = pass {
        p.leave().await;
    }
    result
}

/// Runs the steps of one host another replica's run started ([`HostRunner`]): under
/// `options.gate`, journaled to `journal` (opened on that run and plan).
pub async fn execute_one(
    fleet: &ValidFleet,
    remote: &RemoteHost,
    journal: Arc<Journal>,
    options: &ApplyOptions,
) -> HostResult {
    let name = remote.host.host.as_str();
    let Some(rollout) = fleet.rollout(&remote.rollout).map(|r| r.doc.spec.clone()) else {
        return not_run(
            name,
            Outcome::Blocked,
            vec![format!("rollout {} does not exist", remote.rollout)],
        );
    };
    let job = match job_for(fleet, remote.host.clone(), rollout, None) {
        Ok(job) => job,
        Err(e) => return not_run(name, Outcome::Failed, vec![e]),
    };
    let ctx = Ctx {
        journal,
        keys: Arc::new(KeyCache::new()),
        stop: options.stop.clone(),
        progress: options.progress.clone(),
    };
    run_here(&job, &ctx, options.gate.as_ref(), &remote.run).await
}

/// Per-rollout bookkeeping.
#[derive(Default)]
struct RolloutState {
    failures: usize,
    halted: bool,
    waiting: Option<String>,
}

/// The most hosts `plan` changes at once: over its batches, the batch's parallelism (capped
/// by `--parallel`) or its size, whichever is smaller. Each is one SSH connection, so this
/// is what the open-files limit must hold ([`crate::open_files::ensure`]).
pub fn connections_at_once(plan: &Plan, parallel: Option<usize>) -> usize {
    plan.batches
        .iter()
        .map(|b| {
            usize::try_from(b.parallelism)
                .unwrap_or(usize::MAX)
                .min(parallel.unwrap_or(usize::MAX))
                .min(b.hosts.len())
        })
        .max()
        .unwrap_or(0)
}

/// Applies `plan` to the hosts of `fleet`. `finished` lists hosts an earlier run of the same
/// plan already finished (they are not redone).
pub async fn execute(
    plan: &Plan,
    fleet: &ValidFleet,
    run: &str,
    journal: Arc<Journal>,
    finished: &BTreeMap<String, Outcome>,
    options: &ApplyOptions,
) -> ApplyReport {
    let plan_id = super::plan_id(plan);
    let ctx = Arc::new(Ctx {
        journal: journal.clone(),
        keys: Arc::new(KeyCache::new()),
        stop: options.stop.clone(),
        progress: options.progress.clone(),
    });
    let mut results: BTreeMap<String, HostResult> = BTreeMap::new();
    let ended = not_run;
    // Rollouts whose halt kept a host from starting (a halt after the last host stopped
    // nothing and is not reported as one).
    let mut stopped_by_halt: BTreeSet<String> = BTreeSet::new();
    // Hosts outside every batch: reported as the plan left them (or failed, when their
    // crash recovery failed: that is not converged, whatever the plan says).
    for h in &plan.hosts {
        if h.batch.is_none() {
            if let Some(why) = options.blocked.get(&h.host) {
                results.insert(
                    h.host.clone(),
                    ended(&h.host, Outcome::Failed, vec![why.clone()]),
                );
                continue;
            }
        }
        let outcome = match h.status {
            HostStatus::Compliant => Some(Outcome::Compliant),
            HostStatus::Blocked => Some(Outcome::Blocked),
            HostStatus::Unreachable => Some(Outcome::Unreachable),
            HostStatus::Unmanaged => Some(Outcome::Unmanaged),
            _ if h.batch.is_none() => Some(Outcome::Blocked),
            _ => None,
        };
        if let Some(o) = outcome {
            let mut detail = h.reasons.clone();
            if o == Outcome::Compliant && detail.is_empty() {
                detail.push("nothing to change".into());
            }
            results.insert(h.host.clone(), ended(&h.host, o, detail));
        }
    }
    let mut rollouts: BTreeMap<String, RolloutState> = BTreeMap::new();
    let rollout_sizes: BTreeMap<&str, usize> = plan
        .hosts
        .iter()
        .filter(|h| h.status.has_changes())
        .fold(BTreeMap::new(), |mut m, h| {
            if let Some(r) = &h.rollout {
                *m.entry(r.as_str()).or_default() += 1;
            }
            m
        });
    for batch in &plan.batches {
        let state = rollouts.entry(batch.rollout.clone()).or_default();
        let todo: Vec<&String> = batch
            .hosts
            .iter()
            .filter(|h| {
                if let Some(why) = options.blocked.get(*h) {
                    results.insert((*h).clone(), ended(h, Outcome::Failed, vec![why.clone()]));
                    false
                } else if let Some(o) = finished.get(*h) {
                    results.insert(
                        (*h).clone(),
                        ended(
                            h,
                            *o,
                            vec!["already done by an earlier run of this plan".into()],
                        ),
                    );
                    false
                } else {
                    true
                }
            })
            .collect();
        if todo.is_empty() {
            continue;
        }
        let skip = if options.stop.interrupted() {
            Some((
                Outcome::NotStarted,
                "not started: apply was interrupted".to_string(),
            ))
        } else if state.halted {
            stopped_by_halt.insert(batch.rollout.clone());
            Some((
                Outcome::NotStarted,
                format!(
                    "not started: rollout {} halted (failure budget exceeded)",
                    batch.rollout
                ),
            ))
        } else if let Some(why) = &state.waiting {
            Some((Outcome::Waiting, why.clone()))
        } else {
            match window_gate(fleet, &batch.window, options.clock.now()) {
                Ok(()) => None,
                Err(why) => {
                    state.waiting = Some(why.clone());
                    Some((Outcome::Waiting, why))
                }
            }
        };
        if let Some((outcome, why)) = skip {
            options.progress.batch(
                batch.index,
                &format!("{}/{}: {why}", batch.rollout, batch.stage),
            );
            for h in todo {
                results.insert(h.clone(), ended(h, outcome, vec![why.clone()]));
            }
            continue;
        }
        options.progress.batch(
            batch.index,
            &format!(
                "{}/{}: starting {} host(s), {} at once",
                batch.rollout,
                batch.stage,
                todo.len(),
                batch.parallelism
            ),
        );
        options.progress.batch_started(batch, todo.len());
        let Some(rollout) = fleet.rollout(&batch.rollout).map(|r| r.doc.spec.clone()) else {
            for h in todo {
                results.insert(
                    h.clone(),
                    ended(
                        h,
                        Outcome::Blocked,
                        vec![format!("rollout {} does not exist", batch.rollout)],
                    ),
                );
            }
            continue;
        };
        let parallel = options
            .parallel
            .unwrap_or(usize::MAX)
            .min(usize::try_from(batch.parallelism).unwrap_or(1))
            .max(1);
        let semaphore = Arc::new(Semaphore::new(parallel));
        let shared = Arc::new(Mutex::new(std::mem::take(state)));
        let size = rollout_sizes
            .get(batch.rollout.as_str())
            .copied()
            .unwrap_or(0);
        let mut tasks = tokio::task::JoinSet::new();
        for name in todo {
            let Some(host_plan) = plan.host(name).cloned() else {
                continue;
            };
            let job = match job_for(
                fleet,
                host_plan,
                rollout.clone(),
                options.saved_plan.clone(),
            ) {
                Ok(job) => job,
                Err(e) => {
                    results.insert(name.clone(), ended(name, Outcome::Failed, vec![e]));
                    continue;
                }
            };
            let (semaphore, shared, ctx, stop) = (
                semaphore.clone(),
                shared.clone(),
                ctx.clone(),
                options.stop.clone(),
            );
            let budget = rollout.failure_budget.clone();
            let rollout_name = batch.rollout.clone();
            let (gate, run_id) = (options.gate.clone(), run.to_owned());
            let remote = options.runner.clone().map(|runner| {
                (
                    runner,
                    RemoteHost {
                        run: run.to_owned(),
                        plan: plan_id.clone(),
                        desired: fleet.fleet().digest.clone(),
                        rollout: batch.rollout.clone(),
                        host: job.plan.clone(),
                    },
                )
            });
            // Permits are taken here, in plan order, so hosts start in the order the plan
            // lists them; the halt and stop checks happen right before each start.
            let permit = semaphore.acquire_owned().await.expect("never closed");
            let halted = shared.lock().unwrap_or_else(|p| p.into_inner()).halted;
            if stop.interrupted() || halted {
                if halted {
                    stopped_by_halt.insert(rollout_name.clone());
                }
                let why = if halted {
                    format!("not started: rollout {rollout_name} halted (failure budget exceeded)")
                } else {
                    "not started: apply was interrupted".to_string()
                };
                results.insert(name.clone(), ended(name, Outcome::NotStarted, vec![why]));
                continue;
            }
            tasks.spawn(async move {
                let _permit = permit;
                let result = match remote {
                    Some((runner, remote)) => {
                        ctx.progress.host(&job.plan.host, "handed to the cluster's work queue");
                        runner.run(remote).await
                    }
                    None => run_here(&job, &ctx, gate.as_ref(), &run_id).await,
                };
                // Counted here, whoever ran it: the budget is the batch starter's.
                if result.outcome.is_failure() {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.failures += 1;
                    if !s.halted && super::decide::budget_exceeded(budget.as_ref(), size, s.failures) {
                        s.halted = true;
                        ctx.progress.batch(
                            usize::MAX,
                            &format!(
                                "rollout {rollout_name} halted: {} failure(s) exceed its failure budget; running hosts finish, no new host starts",
                                s.failures
                            ),
                        );
                        ctx.progress.rollout_halted(&rollout_name, s.failures);
                    }
                }
                result
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => {
                    options.progress.host_finished(&r);
                    results.insert(r.host.clone(), r);
                }
                Err(e) => tracing::error!("host task failed: {e}"),
            }
        }
        let back = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
        *rollouts.entry(batch.rollout.clone()).or_default() = back;
    }
    let _ = journal.record(None, Event::RunFinished);
    let mut hosts = Vec::new();
    for h in &plan.hosts {
        hosts.push(results.remove(&h.host).unwrap_or_else(|| {
            ended(
                &h.host,
                Outcome::Failed,
                vec!["internal error: the host's task ended without a result".into()],
            )
        }));
    }
    let halted: BTreeSet<String> = rollouts
        .iter()
        .filter(|(n, s)| s.halted && stopped_by_halt.contains(*n))
        .map(|(n, _)| n.clone())
        .collect();
    ApplyReport {
        run: run.to_string(),
        plan: super::plan_id(plan),
        hosts,
        halted: halted.into_iter().collect(),
        interrupted: options.stop.interrupted(),
    }
}

/// Whether a batch of `window` may start at `now`; the reason when not.
pub fn window_gate(fleet: &ValidFleet, window: &str, now: Timestamp) -> Result<(), String> {
    let Some(w) = fleet.window(window) else {
        return Err(format!("waiting: window {window} does not exist"));
    };
    let compiled = CompiledWindow::compile(&w.doc.spec)
        .map_err(|_| format!("waiting: window {window} does not compile"))?;
    if compiled.can_start_batch(now) {
        return Ok(());
    }
    let next = compiled
        .next_open_at(now)
        .map(|t| format!("; it next opens at {t}"))
        .unwrap_or_default();
    Err(format!(
        "waiting: window {window} is closed (or in its cutoff) at {now}{next}"
    ))
}
