//! `patchkeeper apply`: take the fleet lock, recover hosts an earlier run left in flight,
//! plan (or read a saved plan and check it still belongs to this fleet repo), confirm, then
//! execute batch by batch with live progress and a final table.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::apply::journal::{self, Event, Journal};
use crate::apply::lock::FleetLock;
use crate::apply::recover::recover_fleet;
use crate::apply::run::ShiftedClock;
use crate::apply::{self, ApplyOptions, ApplyReport, Clock, Progress, Stop, SystemClock};
use crate::plan::{self, Plan, RenderOptions};

/// Exit code: some hosts did not end compliant (failed, rolled back, stale, unreachable,
/// halted by the failure budget).
pub const EXIT_NOT_CONVERGED: u8 = 4;
/// Exit code: nothing failed, but some hosts wait for their window or were not started
/// because apply was interrupted.
pub const EXIT_WAITING: u8 = 5;

/// Flags of `patchkeeper apply`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXIT_HELP)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// A plan saved by `patchkeeper plan --out FILE`: apply exactly it (refused entirely when
    /// the fleet repo changed since; per host when the host changed since).
    #[arg(value_name = "PLAN_FILE")]
    plan_file: Option<PathBuf>,
    /// Apply without asking for confirmation (required without a terminal).
    #[arg(long)]
    auto_approve: bool,
    /// Change at most N hosts at once in any batch (caps the rollout's parallelism).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// Evaluate windows as if now were TIME (RFC 3339; the clock then runs on from there).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Do not commit the reports of this run to the reports branch (they are committed when
    /// the fleet repo is a clean Git checkout).
    #[arg(long)]
    no_report: bool,
    /// Accepted for compatibility and does nothing: the fleet lock is an OS file lock that
    /// the kernel releases when its holder exits (a killed apply included), so there is no
    /// stale lock to break; a running apply's lock is never broken.
    #[arg(long, hide_short_help = true)]
    break_lock: bool,
    /// Who is applying, for the audit trail (`Applied-By:` on the report commit). Default:
    /// `PATCHKEEPER_ACTOR`, else the CI's identity from its environment (GitHub Actions,
    /// GitLab CI, Jenkins, Buildkite), else the local user at this machine.
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

const EXIT_HELP: &str = concat!("Exit codes:\n  0  every host with planned changes ended compliant (nothing to do counts)\n  1  error before any host was changed: invalid fleet repo, fleet locked, saved plan from\n     another fleet commit, not confirmed (no terminal\n     and no --auto-approve: refused before any host is contacted)\n", usage_exit!(), "\n  4  some hosts did not end compliant: failed, rolled back, stale (changed since the plan),\n     unreachable, or not started because a rollout's failure budget halted it\n  5  nothing failed, but some hosts wait for their maintenance window or were not started\n     because apply was interrupted (SIGINT/SIGTERM); the next apply continues\n  130  interrupted before any host was changed, or a second SIGINT/SIGTERM while hosts\n       were running (their transactions stay in flight for the next run's recovery)\n\nState: the lock and the journal live in `<repo>/.patchkeeper/`.");

struct Lines {
    tty: bool,
}

impl Progress for Lines {
    fn host(&self, host: &str, message: &str) {
        // Messages carry what hosts printed: escaped for the terminal.
        let message = &crate::terminal::escape(message);
        if self.tty {
            eprintln!("  {host:<12} {message}");
        } else {
            eprintln!(
                "{} apply host={host} msg={}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                serde_json::to_string(message).unwrap_or_default()
            );
        }
    }

    fn batch(&self, index: usize, message: &str) {
        let message = &crate::terminal::escape(message);
        if self.tty {
            if index == usize::MAX {
                eprintln!("! {message}");
            } else {
                eprintln!("Batch {}: {message}", index + 1);
            }
        } else {
            eprintln!(
                "{} apply batch={} msg={}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                if index == usize::MAX {
                    "-".to_string()
                } else {
                    (index + 1).to_string()
                },
                serde_json::to_string(message).unwrap_or_default()
            );
        }
    }
}

/// Runs `patchkeeper apply`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let repo = args.repo.repo.clone();
    let fleet = match super::load_valid_fleet(&repo) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let clock: Arc<dyn Clock> = match args.at.as_deref() {
        None => Arc::new(SystemClock),
        Some(_) => match super::parse_at(args.at.as_deref()) {
            Ok(t) => Arc::new(ShiftedClock::new(t)),
            Err(code) => return code,
        },
    };
    // Without a saved plan, apply asks before it changes anything; with no terminal to ask
    // on and no --auto-approve, it cannot, so it says so before it contacts any host.
    if args.plan_file.is_none() && !args.auto_approve && !std::io::stdin().is_terminal() {
        eprintln!("error: apply needs confirmation and there is no terminal to ask on; no host was contacted, nothing was applied\n\nhint: review the plan with `patchkeeper plan --repo {}`, then pass `--auto-approve`, or save it with `patchkeeper plan --repo {} --out FILE` and run `patchkeeper apply --repo {} FILE`", repo.display(), repo.display(), repo.display());
        return super::EXIT_ERROR;
    }
    // Said before anything runs: whether this run will be on the reports branch.
    let report_to = super::audit::report_commit(&fleet, &repo, args.no_report);
    let settings = fleet.settings();
    if args.break_lock {
        eprintln!("note: --break-lock is no longer needed and does nothing: the fleet lock is released by the kernel when its holder exits");
    }
    if settings.apply.stale_lock_after.is_some() {
        eprintln!("note: apply.staleLockAfter is ignored: the fleet lock is released by the kernel when its holder exits, so it is never stale");
    }
    // One id for the run: its journal lines and its report carry the same.
    let run =
        crate::report::RunRecord::new_id(crate::report::RunKind::Apply, jiff::Timestamp::now());
    // Safeguards this run overrides, recorded in its run record and as commit trailers.
    let mut overrides: Vec<String> = Vec::new();
    if let Some(at) = &args.at {
        overrides.push(format!(
            "--at {at}: windows evaluated as if it were then, not at the real time"
        ));
    }
    if args.break_lock {
        overrides.push("--break-lock (no effect: the fleet lock is an OS file lock)".into());
    }
    let state = apply::state_dir(&repo);
    let _lock = match FleetLock::acquire(&state, &run) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}\n\nhint: wait for it to finish; the lock is released the moment its process exits");
            return super::EXIT_ERROR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return super::EXIT_ERROR;
        }
    };
    // SIGINT/SIGTERM: before any host is touched, stop at once (exiting releases the lock); while
    // executing, stop starting hosts and let running transactions finish.
    let stop = Arc::new(Stop::default());
    let executing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stop, executing) = (stop.clone(), executing.clone());
        runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            if !executing.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("\nInterrupted before any host was changed");
                std::process::exit(130);
            }
            eprintln!("\nInterrupted: no new host starts; hosts in the middle of a package transaction finish it (a second signal exits at once)");
            stop.interrupt();
            // An operator insisting: exit now. Hosts in a transaction stay in flight in the
            // journal (never signalled) and the next apply or observe recovers them.
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            eprintln!("\nSecond signal: exiting now; hosts in a package transaction stay in flight and the next apply or observe recovers them");
            std::process::exit(130);
        });
    }
    let progress = Arc::new(Lines {
        tty: std::io::stderr().is_terminal(),
    });
    // Crash recovery first: hosts an earlier run left in flight. A host whose recovery
    // failed is left alone by this run.
    let blocked = match runtime.block_on(recover_fleet(&fleet, &repo, &run, progress.as_ref())) {
        Ok(recoveries) => {
            if !recoveries.is_empty() {
                eprintln!(
                    "An earlier apply did not finish; {} host(s) were in flight:",
                    recoveries.len()
                );
                for r in &recoveries {
                    eprintln!("  {}", crate::terminal::escape(&r.line()));
                }
            }
            recoveries
                .iter()
                .filter(|r| !r.recovered)
                .map(|r| (r.host.clone(), r.blocked_reason()))
                .collect()
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    // With the observation this run planned from (none with a saved plan).
    let (plan, observed_now): (Plan, Option<crate::observed::ObservedFleet>) = match &args.plan_file
    {
        Some(path) => match read_plan(path) {
            Ok(p) => (p, None),
            Err(msg) => {
                eprintln!("error: {msg}");
                return super::EXIT_ERROR;
            }
        },
        // Observation and the dry runs run their own runtimes (not nested in ours).
        None => match super::plan::plan_now(&repo, &fleet, clock.now()) {
            Ok((plan, observed)) => (plan, Some(observed)),
            Err(code) => return code,
        },
    };
    if args.plan_file.is_some() {
        let f = fleet.fleet();
        if plan.fleet_commit != f.commit || plan.fleet_digest != f.digest {
            eprintln!(
                "error: the saved plan was made from another state of the fleet repo (plan: commit {}, digest {}; repo now: commit {}, digest {}); nothing was applied\n\nhint: make a new plan with `patchkeeper plan --repo {} --out FILE`",
                plan.fleet_commit.as_deref().unwrap_or("none"),
                short(&plan.fleet_digest),
                f.commit.as_deref().unwrap_or("none"),
                short(&f.digest),
                repo.display()
            );
            return super::EXIT_ERROR;
        }
        // Only what this fleet commit assigns, in the batches its rollouts make.
        if let Err(e) = plan::saved::check_against_fleet(&plan, &fleet) {
            eprintln!(
                "error: {}: {e}; nothing was applied\n\nhint: make a new plan with `patchkeeper plan --repo {} --out FILE`",
                args.plan_file.as_deref().unwrap_or(std::path::Path::new("")).display(),
                repo.display()
            );
            return super::EXIT_ERROR;
        }
    } else {
        print!(
            "{}",
            plan::render_human(
                &plan,
                RenderOptions {
                    color: super::use_color_stdout()
                }
            )
        );
    }
    if !plan.has_changes() {
        println!("\nNothing to apply: every host is compliant or blocked.");
        let report = empty_report(&plan, &run, &blocked);
        print_table(&report);
        // Nothing changed, but the hosts were observed: that is what gets reported.
        if let (Some(commit), Some(observed)) = (&report_to, &observed_now) {
            super::audit::record_observation(&repo, &fleet, observed, commit);
        }
        return exit_code(&report);
    }
    if args.plan_file.is_none() && args.auto_approve && !std::io::stdin().is_terminal() {
        overrides.push("--auto-approve without a terminal: applied unreviewed".into());
    } else if args.plan_file.is_none() && args.auto_approve {
        overrides.push("--auto-approve: applied without confirmation".into());
    }
    // Before anything runs: a rollout wider than the open-files limit fails here, whole.
    let parallel = args.parallel.and_then(|p| usize::try_from(p).ok());
    if let Err(e) = crate::open_files::ensure(apply::connections_at_once(&plan, parallel)) {
        eprintln!("error: {e}");
        return super::EXIT_ERROR;
    }
    if args.plan_file.is_none() && !args.auto_approve {
        // A terminal: checked before anything ran.
        eprint!("\nApply these changes? Only `yes` is accepted: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            eprintln!("Not applied.");
            return super::EXIT_ERROR;
        }
    }
    let plan_id = apply::plan_id(&plan);
    let entries = match journal::read(&state) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let finished = journal::finished(&entries, &plan_id);
    let journal = match Journal::open(&state, &run, &plan_id) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if let Err(e) = journal.record(
        None,
        Event::RunStarted {
            pid: std::process::id(),
        },
    ) {
        eprintln!("error: {e}");
        return super::EXIT_ERROR;
    }
    executing.store(true, std::sync::atomic::Ordering::SeqCst);
    let options_clock = clock.clone();
    let options = ApplyOptions {
        parallel,
        clock,
        stop: stop.clone(),
        progress,
        blocked,
        // A saved plan: every host's changes are derived again at the host.
        saved_plan: args.plan_file.as_ref().map(|_| {
            let check = plan::SavedPlanCheck::new(
                fleet.clone(),
                super::audit::first_seen(&repo, &fleet),
                super::audit::promotion_evidence(&repo, &fleet),
                options_clock.now(),
            );
            Arc::new(saved_plan_advisories(check, &repo))
        }),
        // `patchkeeper apply` is a single controller: the fleet lock is its guard.
        gate: None,
        runner: None,
    };
    eprintln!(
        "\nApplying (run {run}, plan {plan_id}; journal `{}`)",
        journal::journal_path(&state).display()
    );
    let started = jiff::Timestamp::now();
    let report = runtime.block_on(apply::execute(
        &plan,
        &fleet,
        &run,
        journal.clone(),
        &finished,
        &options,
    ));
    print_table(&report);
    if let Some(commit) = &report_to {
        // Report what the hosts are now; after a stop, quickly, from what is known.
        // Hosts the apply did not touch keep the observation this run planned from.
        let after = match (&observed_now, report.interrupted) {
            (_, true) => None,
            (Some(before), false) => {
                super::observe::observe_touched_after_apply(&fleet, before, &report).ok()
            }
            (None, false) => super::observe::observe_after_apply(&fleet).ok(),
        };
        let audit = crate::report::RunAudit {
            applied_by: Some(crate::actor::current(args.actor.as_deref())),
            requesters: fleet
                .fleet()
                .requests
                .iter()
                .filter_map(|r| Some((r.name().to_owned(), r.doc.spec.requested_by.clone()?)))
                .collect(),
            overrides,
        };
        super::audit::record_apply(
            &repo,
            &fleet,
            (&plan, &report, &audit),
            after.as_ref(),
            commit,
            started,
        );
    }
    exit_code(&report)
}

fn short(s: &str) -> &str {
    crate::terminal::short(s, 12)
}

fn read_plan(path: &std::path::Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan `{}`: {e}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        format!(
            "`{}` is not a plan (written by `patchkeeper plan --out`): {e}",
            path.display()
        )
    })?;
    if plan.format != plan::PLAN_FORMAT {
        return Err(format!(
            "`{}` is a plan of format {}, this patchkeeper reads format {}",
            path.display(),
            plan.format,
            plan::PLAN_FORMAT
        ));
    }
    plan::saved::check_file(&plan).map_err(|e| {
        format!(
            "`{}`: {e}; nothing was applied\n\nhint: a saved plan is applied only as `patchkeeper plan --out` wrote it; make a new one",
            path.display()
        )
    })?;
    Ok(plan)
}

fn empty_report(
    plan: &Plan,
    run: &str,
    blocked: &std::collections::BTreeMap<String, String>,
) -> ApplyReport {
    ApplyReport {
        run: run.to_string(),
        plan: apply::plan_id(plan),
        hosts: plan
            .hosts
            .iter()
            .map(|h| {
                let (outcome, detail) = match (blocked.get(&h.host), h.status) {
                    // Its crash recovery failed: not converged, whatever the plan says.
                    (Some(why), _) => (apply::Outcome::Failed, vec![why.clone()]),
                    (None, plan::HostStatus::Unreachable) => {
                        (apply::Outcome::Unreachable, h.reasons.clone())
                    }
                    (None, plan::HostStatus::Blocked) => {
                        (apply::Outcome::Blocked, h.reasons.clone())
                    }
                    (None, plan::HostStatus::Unmanaged) => {
                        (apply::Outcome::Unmanaged, h.reasons.clone())
                    }
                    (None, _) => (apply::Outcome::Compliant, h.reasons.clone()),
                };
                apply::HostResult::untouched(&h.host, outcome, detail)
            })
            .collect(),
        halted: Vec::new(),
        interrupted: false,
    }
}

fn print_table(report: &ApplyReport) {
    let mut out = std::io::stdout().lock();
    let width = report
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<14}  {:>7}  {:>6}  DETAIL",
        "HOST", "RESULT", "CHANGES", "TIME"
    );
    for h in &report.hosts {
        let _ = writeln!(
            out,
            "{:<width$}  {:<14}  {:>7}  {:>5.1}s  {}",
            crate::terminal::escape(&h.host),
            h.outcome.as_str(),
            h.changes,
            h.millis as f64 / 1000.0,
            crate::terminal::escape(&h.detail.join("; "))
        );
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for h in &report.hosts {
        *counts.entry(h.outcome.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(out, "\nApply: {}.", summary.join(", "));
    for r in &report.halted {
        let _ = writeln!(
            out,
            "Rollout {r} was halted: its failure budget was exceeded."
        );
    }
    if report.interrupted {
        let _ = writeln!(out, "Apply was interrupted; run it again to continue.");
    }
}

fn exit_code(report: &ApplyReport) -> u8 {
    if report.converged() {
        super::EXIT_OK
    } else if report.only_waiting() {
        EXIT_WAITING
    } else {
        EXIT_NOT_CONVERGED
    }
}

/// A saved plan's check with the advisory store's data when the fleet selects updates by
/// severity (else the changes do not depend on it and the store is not read). A store that
/// cannot be read is a warning: the check then refuses what only advisories would select.
fn saved_plan_advisories(check: plan::SavedPlanCheck, repo: &Path) -> plan::SavedPlanCheck {
    if !check.needs_advisories() {
        return check;
    }
    let path = crate::advisory::fleet::store_path(repo, None);
    match crate::advisory::fleet::index_at(&path) {
        Ok(Some(index)) => check.with_advisories(Arc::new(index)),
        Ok(None) => check,
        Err(e) => {
            eprintln!("warning: advisory data not used to check the saved plan: {e}");
            check
        }
    }
}
