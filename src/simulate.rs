//! Dependency dry runs on the hosts, between the planner's two passes: the first pass names
//! each host's transaction, each host dry-runs it with its own package manager
//! (`apt-get -s install`, `dnf --assumeno install`: nothing changes, no lock is taken), and
//! the second pass folds the answers in (`plan::Simulations`), so the plan lists what the
//! package manager would pull in alongside.
//!
//! Like observation: one connection and one command per host, bounded concurrency, a
//! deadline per host, and every host gets a result whatever happens to it.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::driver;
use crate::model::PackageManager;
use crate::observe::{self, ObserveError, RunOptions, Target};
use crate::observed::{InstalledPackage, ObservedFleet};
use crate::plan::{HostStatus, Plan, Simulation, SimulationOutcome, Simulations};
use crate::transport::ssh::KeyCache;
use crate::validate::ValidFleet;

/// One host's dry run to do.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// How to reach the host.
    pub target: Target,
    /// Its package manager.
    pub package_manager: PackageManager,
    /// The transaction: `(package, version)`, sorted.
    pub requested: Vec<(String, String)>,
    /// What is installed, for dnf (its table omits installed versions); empty for apt.
    pub installed: Vec<InstalledPackage>,
}

/// The dry runs a first-pass plan calls for: every host with a transaction.
pub fn dry_runs_for(
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    first_pass: &Plan,
) -> Result<Vec<DryRun>, ObserveError> {
    let settings = fleet.settings();
    let root = fleet.fleet().root.clone();
    let mut runs = Vec::new();
    for hp in &first_pass.hosts {
        let requested = hp.requested();
        let (Some(pm), Some(host), Some(seen)) = (
            hp.package_manager,
            fleet.host(&hp.host),
            observed.host(&hp.host),
        ) else {
            continue;
        };
        // A blocked host is not applied, whatever its dry run would say.
        if requested.is_empty() || hp.status == HostStatus::Blocked || !seen.status.is_reachable() {
            continue;
        }
        runs.push(DryRun {
            target: observe::target_for(&root, &settings, host, Some(false))?,
            package_manager: pm,
            requested,
            installed: match pm {
                PackageManager::Dnf => seen.installed.clone(),
                // apt's dry run names installed versions itself.
                PackageManager::Apt => Vec::new(),
            },
        });
    }
    Ok(runs)
}

/// Runs one dry run; never fails: a failure is the outcome.
pub async fn dry_run(run: &DryRun, keys: &KeyCache) -> Simulation {
    let requested: Vec<(&str, &str)> = run
        .requested
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let command = match driver::simulation_command(run.package_manager, &requested) {
        Ok(c) => c,
        // A name or version outside the grammar never reaches the host.
        Err(e) => {
            return Simulation {
                requested: run.requested.clone(),
                outcome: SimulationOutcome::Failed(format!("not dry-run: {e}")),
            }
        }
    };
    let outcome = match observe::connect(&run.target, keys).await {
        Err(e) => SimulationOutcome::Failed(format!("cannot connect: {e}")),
        Ok(t) => {
            let result = t
                .exec(&command, None, run.target.options.command_timeout)
                .await;
            t.close().await;
            match result {
                Err(e) => SimulationOutcome::Failed(format!("{e} (running `{command}`)")),
                // Parsed off the async workers: a large output must not stall other hosts.
                Ok(out) => {
                    let (pm, installed) = (run.package_manager, run.installed.clone());
                    let read = tokio::task::spawn_blocking(move || {
                        driver::read_simulation(
                            pm,
                            out.exit,
                            &String::from_utf8_lossy(&out.stdout),
                            &String::from_utf8_lossy(&out.stderr),
                            &installed,
                        )
                    })
                    .await;
                    match read {
                        Ok(Ok(preview)) => SimulationOutcome::Resolved(preview),
                        Ok(Err(message)) => SimulationOutcome::Refused { command, message },
                        Err(e) => SimulationOutcome::Failed(format!(
                            "reading the dry run of `{command}` failed: {e}"
                        )),
                    }
                }
            }
        }
    };
    Simulation {
        requested: run.requested.clone(),
        outcome,
    }
}

/// Hears how the dry runs go (a terminal progress bar; [`Silent`] otherwise).
pub trait Progress: Send + Sync {
    /// The dry runs start: `hosts` of them.
    fn started(&self, hosts: usize);
    /// One host's dry run is done.
    fn done(&self, host: &str);
}

/// A [`Progress`] that says nothing.
pub struct Silent;

impl Progress for Silent {
    fn started(&self, _hosts: usize) {}
    fn done(&self, _host: &str) {}
}

/// Runs every dry run with at most `options.parallel` at once.
pub async fn dry_run_all(
    runs: Vec<DryRun>,
    options: &RunOptions,
    progress: Arc<dyn Progress>,
) -> Simulations {
    progress.started(runs.len());
    let semaphore = Arc::new(Semaphore::new(options.parallel));
    let keys = Arc::new(KeyCache::new());
    let mut tasks = tokio::task::JoinSet::new();
    let mut simulations = Simulations::new();
    for run in runs {
        let semaphore = semaphore.clone();
        let keys = keys.clone();
        let host_timeout = options.host_timeout;
        let progress = progress.clone();
        tasks.spawn(async move {
            // The semaphore lives as long as the tasks and is never closed.
            let _permit = semaphore.acquire_owned().await;
            let sim = match tokio::time::timeout(host_timeout, dry_run(&run, &keys)).await {
                Ok(sim) => sim,
                Err(_) => Simulation {
                    requested: run.requested.clone(),
                    outcome: SimulationOutcome::Failed(format!(
                        "no answer within {}s (observe.hostTimeout)",
                        host_timeout.as_secs()
                    )),
                },
            };
            progress.done(&run.target.name);
            (run.target.name, sim)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, sim)) => {
                simulations.insert(name, sim);
            }
            // A host without a result is planned as not simulated, never lost.
            Err(e) => tracing::error!("dry-run task failed: {e}"),
        }
    }
    simulations
}

/// Dry-runs the transactions of a first-pass plan on their hosts.
pub fn dry_run_plan(
    runtime: &tokio::runtime::Runtime,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    first_pass: &Plan,
    progress: Arc<dyn Progress>,
) -> Result<Simulations, SimulateError> {
    let runs = dry_runs_for(fleet, observed, first_pass)?;
    if runs.is_empty() {
        return Ok(Simulations::new());
    }
    let options = RunOptions::from_settings(&fleet.settings(), None)?;
    crate::open_files::ensure(options.parallel.min(runs.len()))?;
    Ok(runtime.block_on(dry_run_all(runs, &options, progress)))
}

/// Errors that stop the dry runs before any host is contacted.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A host's connection settings are invalid.
    #[error(transparent)]
    Settings(#[from] ObserveError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The open-files limit cannot hold the dry runs' connections.
    #[error(transparent)]
    OpenFiles(#[from] crate::open_files::OpenFilesError),
}
