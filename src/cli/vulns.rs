//! `patchkeeper vulns`: per host the open advisories (id, CVEs, severity, package,
//! installed and fixed version, whether the fix is offered and planned), then a fleet
//! summary by severity.

use std::path::PathBuf;

use crate::advisory::view::VulnsReport;
use crate::advisory::{fleet, Severity, Store};
use crate::plan::{self, PlanInput};
use crate::terminal::escape;

/// Flags of `patchkeeper vulns`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXIT_HELP)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Assess an observed state written by `observe --out` (default: observe every host now).
    #[arg(long, value_name = "FILE")]
    observed: Option<PathBuf>,
    /// Only advisories at least this severe.
    #[arg(long, value_enum, value_name = "LEVEL")]
    severity: Option<Severity>,
    /// Print JSON (schema: schemas/vulns.schema.json) instead of tables.
    #[arg(long)]
    json: bool,
    /// Evaluate exceptions and update delays at this RFC 3339 instant (default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// The advisory store (default: `$PATCHKEEPER_ADVISORY_STORE`, else
    /// `<repo>/.patchkeeper/advisories.db`).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
}

const EXIT_HELP: &str = concat!("States: `fix offered` (the host's repositories have it; `planned` when the plan\ninstalls it), `fix held` (held back by a hold), `fix not in the host's repositories`,\n`no fix` (open, undetermined, postponed, no-dsa, will-not-fix, end-of-life).\n\nExit codes:\n  0  no open advisory (at --severity or above; exceptions in force aside)\n  1  error: invalid fleet repo, no advisory data imported, unreadable observed state\n", usage_exit_1!(), "\n  2  open advisories were found\n  3  none found, but some hosts could not be assessed (unreachable, unknown OS)");

/// Runs `patchkeeper vulns`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let repo = &args.repo.repo;
    let fleet_ = match super::load_valid_fleet(repo) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let at = match super::parse_at(args.at.as_deref()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let store_path = fleet::store_path(repo, args.store.as_deref());
    let store = match Store::open_existing(&store_path) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: no advisory data: `{}` does not exist\n\nhint: import the Debian security tracker dump or OSV data with `patchkeeper advisories import PATH`",
                store_path.display()
            );
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let observed = match &args.observed {
        Some(path) => match super::plan::read_observed(path) {
            Ok(o) => o,
            Err(msg) => {
                eprintln!("error: {msg}");
                return super::EXIT_ERROR;
            }
        },
        None => match super::observe::observe_for_plan(&fleet_) {
            Ok(o) => o,
            Err(code) => return code,
        },
    };
    let assessment = match fleet::assess(&store, &fleet_, &observed, at) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    // What would be planned now (first pass: no dry runs), to tell planned fixes apart.
    let first_seen = super::audit::first_seen(repo, &fleet_);
    let promotion = super::audit::promotion_evidence(repo, &fleet_);
    let plan = plan::plan(PlanInput {
        fleet: &fleet_,
        fleet_commit: fleet_.fleet().commit.as_deref(),
        observed: &observed,
        at,
        first_seen: &first_seen,
        simulations: None,
        promotion: &promotion,
        advisories: Some(&assessment),
    });
    let min = args.severity.unwrap_or(Severity::Unknown);
    let report = VulnsReport::build(&assessment, Some(&plan), min, at);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("error: cannot serialize: {e}");
                return super::EXIT_ERROR;
            }
        }
    } else {
        print_human(&report);
        let data_date = store.snapshot().ok().and_then(|s| s.data_date);
        let age = super::advisories::age_of(data_date.as_deref(), at);
        let max_age = fleet_
            .settings()
            .advisories
            .max_age
            .and_then(|m| crate::duration::parse_duration(&m).ok())
            .unwrap_or(std::time::Duration::from_secs(7 * 86400));
        println!(
            "advisory snapshot {}{}",
            report.snapshot.as_deref().unwrap_or("-"),
            match (&data_date, age) {
                (Some(d), Some(a)) => format!(
                    ", data from {} ({} old)",
                    escape(d),
                    crate::compliance::human(a)
                ),
                _ => String::new(),
            }
        );
        if age.is_some_and(|a| a > max_age.as_secs()) {
            eprintln!(
                "warning: the advisory data is older than advisories.maxAge ({}): import fresh data",
                crate::compliance::human(max_age.as_secs())
            );
        }
    }
    if report.summary.open > 0 {
        super::EXIT_CHANGES
    } else if report.summary.not_assessed > 0 {
        super::EXIT_HOSTS_FAILED
    } else {
        super::EXIT_OK
    }
}

fn print_human(report: &VulnsReport) {
    for h in &report.hosts {
        let open: Vec<_> = h
            .advisories
            .iter()
            .filter(|a| a.exception.is_none())
            .collect();
        // The ecosystem and why a host is not assessed come from the host's os-release.
        let eco = escape(h.ecosystem.as_deref().unwrap_or("-"));
        if let Some(why) = &h.not_assessed {
            println!("{}  {eco}  not assessed: {}\n", h.host, escape(why));
            continue;
        }
        if h.advisories.is_empty() {
            println!("{}  {eco}  no open advisory\n", h.host);
            continue;
        }
        let mut counts: Vec<String> = Vec::new();
        for s in Severity::ALL {
            let n = open.iter().filter(|a| a.severity == s).count();
            if n > 0 {
                counts.push(format!("{n} {s}"));
            }
        }
        let planned = open.iter().filter(|a| a.planned).count();
        println!(
            "{}  {eco}  {} open ({}){}{}",
            h.host,
            open.len(),
            counts.join(", "),
            if planned > 0 {
                format!(", {planned} fixed by the plan")
            } else {
                String::new()
            },
            match h.advisories.len() - open.len() {
                0 => String::new(),
                n => format!(", {n} excepted"),
            }
        );
        let header = [
            "  ADVISORY",
            "SEVERITY",
            "PACKAGE",
            "INSTALLED",
            "FIXED",
            "STATE",
        ]
        .map(String::from);
        let rows: Vec<[String; 6]> = h
            .advisories
            .iter()
            .map(|a| {
                let package = if a.packages.len() == 1 && a.packages[0] == a.source {
                    a.source.clone()
                } else {
                    format!("{} ({})", a.source, a.packages.join(", "))
                };
                [
                    format!("  {}", a.label()),
                    a.severity.to_string(),
                    package,
                    a.installed.clone(),
                    a.fixed.clone().unwrap_or_else(|| "-".into()),
                    a.state_text(),
                ]
            })
            .collect();
        super::advisories::print_table(&header, &rows);
        println!();
    }
    let s = &report.summary;
    let by: Vec<String> = Severity::ALL
        .iter()
        .map(|sev| format!("{sev} {}", s.by_severity.get(sev).copied().unwrap_or(0)))
        .collect();
    println!(
        "Fleet: {} open advisories on {} of {} hosts: {}",
        s.open,
        s.hosts_affected,
        s.hosts,
        by.join(", ")
    );
    println!(
        "  fix offered {} ({} planned), fix held {}, fix not in repositories {}, no fix {}{}{}",
        s.fix_offered,
        s.planned,
        s.fix_held,
        s.fix_not_offered,
        s.no_fix,
        if s.excepted > 0 {
            format!(", {} excepted", s.excepted)
        } else {
            String::new()
        },
        if s.not_assessed > 0 {
            format!("; {} hosts not assessed", s.not_assessed)
        } else {
            String::new()
        }
    );
}
