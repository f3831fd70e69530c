//! The audit trail of command-line runs: `observe` and `apply` commit their reports to the
//! reports branch as `serve` does, and `plan`/`apply` read the first-seen times kept there
//! (so `updates.delay` counts from when an update was first offered, not from now).
//!
//! Reports name the fleet commit they were made from, so nothing is reported for a fleet
//! repo that is not a Git repository or whose fleet files differ from the checked-out
//! commit; the command says so and goes on.

use std::path::Path;

use jiff::Timestamp;

use crate::apply::ApplyReport;
use crate::observed::ObservedFleet;
use crate::plan::{Evidence, FirstSeen, Plan};
use crate::report::{self, Recorded, ReportTarget, RunRecord};
use crate::validate::ValidFleet;

/// The fleet commit to report against, or `None` (with the reason printed) when this run
/// must not be reported.
pub(crate) fn report_commit(fleet: &ValidFleet, repo: &Path, no_report: bool) -> Option<String> {
    if no_report {
        return None;
    }
    let Some(commit) = fleet.fleet().commit.clone() else {
        eprintln!(
            "note: not reporting: `{}` is not a Git repository (reports name the fleet commit they were made from)",
            repo.display()
        );
        return None;
    };
    match report::uncommitted_fleet_files(repo) {
        Ok(changed) if changed.is_empty() => Some(commit),
        Ok(changed) => {
            let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
            let more = changed.len().saturating_sub(shown.len());
            eprintln!(
                "note: not reporting: the fleet repo has uncommitted changes ({}{}); reports name the commit they were made from, so commit first",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            );
            None
        }
        Err(e) => {
            eprintln!("warning: not reporting: {e}");
            None
        }
    }
}

/// Commits the reports of an observation.
pub(crate) fn record_observation(
    repo: &Path,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    commit: &str,
) {
    let now = Timestamp::now();
    let run = report::observation_run(observed, commit, now);
    record(repo, fleet, Some(observed), &run, now);
}

/// Commits the reports of an apply: each host's outcome, evaluated against `after` (the
/// hosts observed again after the apply; without it, each host's previous facts).
pub(crate) fn record_apply(
    repo: &Path,
    fleet: &ValidFleet,
    applied: (&Plan, &ApplyReport, &report::RunAudit),
    after: Option<&ObservedFleet>,
    commit: &str,
    started: Timestamp,
) {
    let now = Timestamp::now();
    let (plan, report, audit) = applied;
    let run = report::apply_run(plan, report, commit, started, now, audit);
    record(repo, fleet, after, &run, now);
}

fn record(
    repo: &Path,
    fleet: &ValidFleet,
    observed: Option<&ObservedFleet>,
    run: &RunRecord,
    now: Timestamp,
) {
    let target = ReportTarget::from_fleet(repo, fleet);
    // Host reports list open advisories when advisory data was imported.
    let advisories = observed.and_then(|o| super::advisories::assessment(repo, fleet, o, now));
    // Timed for benches/scale.sh (`PATCHKEEPER_LOG=patchkeeper::cli::audit=debug`): the
    // report commit's own wall time, apart from the run it records.
    let started = std::time::Instant::now();
    let recorded = report::record_with(&target, fleet, observed, advisories.as_ref(), run, now);
    tracing::debug!(
        hosts = fleet.hosts().count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "report commit"
    );
    match recorded {
        Ok(Recorded {
            commit,
            committed: false,
            ..
        }) => eprintln!(
            "Not reported: no host changed since the last report on `{}` (commit {}; reports.heartbeat {})",
            target.branch,
            crate::terminal::short(&commit, 12),
            crate::compliance::human(target.heartbeat.as_secs())
        ),
        Ok(Recorded { commit, pushed, .. }) => eprintln!(
            "Reported run {} on `{}` (commit {}{})",
            run.run_id,
            target.branch,
            crate::terminal::short(&commit, 12),
            if pushed {
                format!(
                    ", pushed to {}",
                    crate::redact::text(target.remote.as_deref().unwrap_or("the remote"))
                )
            } else {
                String::new()
            }
        ),
        // The run itself happened (and apply's journal holds it): say loudly that its
        // record is missing rather than fail a finished run.
        Err(e) => eprintln!("warning: the run was not reported: {e}"),
    }
}

/// What the reports branch proves about the versions the promotion sources ran
/// ([`crate::pipeline::promotion_evidence`]); when it cannot be read, a warning, and
/// nothing counts as promoted (promoting baselines' hosts wait).
pub(crate) fn promotion_evidence(repo: &Path, fleet: &ValidFleet) -> Evidence {
    match crate::pipeline::promotion_evidence(repo, fleet) {
        Ok(evidence) => evidence,
        Err(e) => {
            warn_promotion(&e);
            Evidence::default()
        }
    }
}

/// The warning `plan` and `apply` print when the promotion evidence cannot be read.
pub(crate) fn warn_promotion(e: &report::ReportError) {
    eprintln!("warning: cannot read promotion evidence from the reports ({e}); nothing counts as promoted");
}

/// When each pending update was first seen offered, from the last report on the fleet's
/// reports branch (none yet: every update counts as first seen now).
pub(crate) fn first_seen(repo: &Path, fleet: &ValidFleet) -> FirstSeen {
    match crate::pipeline::first_seen(repo, fleet) {
        Ok(first_seen) => first_seen,
        Err(e) => {
            eprintln!(
                "warning: cannot read first-seen times from the reports ({e}); updates count as first seen now"
            );
            FirstSeen::new()
        }
    }
}
