//! `patchkeeper plan`: compute and show what apply would do.

use std::path::PathBuf;

use crate::observed::ObservedFleet;
use crate::pipeline::Pipeline;
use crate::plan::{self, PlanInput, RenderOptions};

/// Flags of `patchkeeper plan`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Exit codes:\n  0  success (with --detailed-exitcode: no changes)\n  1  error (invalid fleet repo, unreadable observed state...); with --detailed-exitcode\n     also a usage error, so that 2 only means changes\n  2  with --detailed-exitcode: changes are planned; without it: a usage error (an unknown\n     flag, a missing argument or a bad flag value; stderr says which)"
)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Plan offline from an observed state written by `observe --out` (default: observe now,
    /// then dry-run each host's transaction to list the dependencies it pulls in; offline
    /// plans cannot, and say so).
    #[arg(long, value_name = "FILE")]
    observed: Option<PathBuf>,
    /// Evaluate windows and update delays at this RFC 3339 instant (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Save the plan (JSON) for `patchkeeper apply FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the plan as JSON (schema: schemas/plan.schema.json) instead of the human diff
    /// (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Output format: `text` (the human diff), `json`, or `markdown` (a merge-request
    /// comment: counts, blocked hosts first, the batches, each host's changes collapsed;
    /// its first line `<!-- patchkeeper-plan -->` lets CI find and replace its comment).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    format: Format,
    /// Exit 0 when nothing changes, 2 when changes are planned, 1 on error (like Terraform).
    #[arg(long)]
    detailed_exitcode: bool,
}

/// `plan --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The human diff.
    Text,
    /// JSON (schemas/plan.schema.json).
    Json,
    /// A merge-request comment.
    Markdown,
}

/// Runs `patchkeeper plan`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let fleet = match super::load_valid_fleet(&args.repo.repo) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let at = match super::parse_at(args.at.as_deref()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let plan = match &args.observed {
        // Offline means offline: no host is contacted, and the plan says dependencies were
        // not simulated.
        Some(path) => match read_observed(path) {
            Ok(observed) => {
                let first_seen = super::audit::first_seen(&args.repo.repo, &fleet);
                let promotion = super::audit::promotion_evidence(&args.repo.repo, &fleet);
                let advisories =
                    super::advisories::assessment(&args.repo.repo, &fleet, &observed, at);
                plan::plan(PlanInput {
                    fleet: &fleet,
                    fleet_commit: fleet.fleet().commit.as_deref(),
                    observed: &observed,
                    at,
                    first_seen: &first_seen,
                    simulations: None,
                    promotion: &promotion,
                    advisories: advisories.as_ref(),
                })
            }
            Err(msg) => {
                eprintln!("error: {msg}");
                return super::EXIT_ERROR;
            }
        },
        None => match plan_now(&args.repo.repo, &fleet, at) {
            Ok((plan, _)) => plan,
            Err(code) => return code,
        },
    };
    if let Some(out) = &args.out {
        let text = match serde_json::to_string_pretty(&plan) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return super::EXIT_ERROR;
            }
        };
        // Atomic and durable: a crash never leaves a truncated plan to apply.
        if let Err(e) = crate::durable::write(out, text.as_bytes()) {
            eprintln!("error: cannot write `{}`: {e}", out.display());
            return super::EXIT_ERROR;
        }
        // The command to copy names the fleet repo too: run from anywhere else, a bare
        // `patchkeeper apply FILE` would look for the fleet repo in the wrong place.
        let quote = |p: &std::path::Path| crate::transport::shell_quote(&p.display().to_string());
        eprintln!(
            "Saved the plan to `{}`; apply exactly it with `patchkeeper apply --repo {} {}`",
            out.display(),
            quote(&args.repo.repo),
            quote(out)
        );
    }
    let format = if args.json { Format::Json } else { args.format };
    if format == Format::Markdown {
        print!("{}", plan::render_markdown(&plan));
    } else if format == Format::Json {
        match serde_json::to_string_pretty(&plan) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return super::EXIT_ERROR;
            }
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
    if args.detailed_exitcode && plan.has_changes() {
        super::EXIT_CHANGES
    } else {
        super::EXIT_OK
    }
}

/// Reads an observed state written by `observe --out`.
pub(crate) fn read_observed(path: &std::path::Path) -> Result<ObservedFleet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read observed state `{}`: {e}", path.display()))?;
    let mut fleet: ObservedFleet = serde_json::from_str(&text).map_err(|e| {
        format!(
            "`{}` is not an observed state (written by `patchkeeper observe --out`): {e}",
            path.display()
        )
    })?;
    for h in &mut fleet.hosts {
        h.normalize();
    }
    fleet.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(fleet)
}

/// The online plan `plan` and `apply` make (the library's [`Pipeline::plan_now`]: first-seen
/// times and promotion evidence from the reports, dry runs; progress bars on a terminal).
/// Returns the plan and the observation it was made from; `Err` is an exit code after the
/// error was printed.
pub(crate) fn plan_now(
    repo: &std::path::Path,
    fleet: &crate::validate::ValidFleet,
    at: jiff::Timestamp,
) -> Result<(plan::Plan, ObservedFleet), u8> {
    let bars = super::observe::Bars::new();
    let online = Pipeline::new().and_then(|p| p.plan_now(repo, fleet, at, bars.clone()));
    bars.finish();
    match online {
        Ok(online) => {
            if let Some(e) = online.first_seen_warning {
                eprintln!("warning: cannot read first-seen times from the reports ({e}); updates count as first seen now");
            }
            if let Some(e) = &online.promotion_warning {
                super::audit::warn_promotion(e);
            }
            if let Some(e) = online.advisory_warning {
                eprintln!("warning: advisory data not used: {e}");
            }
            Ok((online.plan, online.observed))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(super::EXIT_ERROR)
        }
    }
}
