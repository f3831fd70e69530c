//! `patchkeeper report`: the fleet's compliance as the reports branch records it.

use std::path::PathBuf;

use crate::compliance::ComplianceState;
use crate::report::{self, HostReport, Snapshot};
use crate::terminal::escape;

/// Flags of `patchkeeper report`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = concat!(
    "Examples:\n  patchkeeper report                      the fleet's compliance now\n  patchkeeper report --host web-1 --since 30d\n  patchkeeper report --runs               run ids, newest first\n  patchkeeper report --diff 20261124T0200 each host's packages before and after that run\n\n",
    "Exit codes:\n  0  the reports were read and shown\n  1  error: no reports yet (the branch does not exist), the reports branch cannot be read,\n     or no run has the id given to --diff (or more than one starts with it)\n",
    usage_exit!()
))]
pub struct Args {
    /// The fleet repo (a directory; default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Reports branch (default: Settings' `reports.branch`, else `patchkeeper/reports`).
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Print JSON (`{branch, commit, summary, hosts, rejected}` with every host needing
    /// attention; with `--host`, `{branch, host, since, entries}`).
    #[arg(long)]
    pub json: bool,
    /// One host's history instead: its runs (outcome, package changes with reasons,
    /// reboots, who ran it and who asked) and its state changes, newest first.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// With `--host`: only what happened in the last DURATION (`7d`, `12h`).
    #[arg(long, value_name = "DURATION", requires = "host", value_parser = since_arg)]
    pub since: Option<std::time::Duration>,
    /// What a run changed: each host's installed packages before the run and after it, as
    /// a unified diff (RUN: a run id, or a prefix of one; `--runs` lists them). With
    /// `--json`: `{branch, runId, kind, commit, parent, hosts}`, each host with `added`,
    /// `removed` and `changed` packages.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["host", "runs"])]
    pub diff: Option<String>,
    /// List the run ids on the branch, newest first (for `--diff`).
    #[arg(long, conflicts_with = "host")]
    pub runs: bool,
}

fn since_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `patchkeeper report`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let branch = args
        .branch
        .clone()
        .unwrap_or_else(|| branch_from_settings(&args.repo));
    if let Some(host) = &args.host {
        return history(&args, &branch, host);
    }
    if let Some(run) = &args.diff {
        return diff(&args, &branch, run);
    }
    let snapshot = match report::read(&args.repo, &branch) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: no reports yet: branch `{branch}` does not exist in `{}`\n\nhint: reports are committed there after each observe and apply run",
                args.repo.display()
            );
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if args.runs {
        let newest_first: Vec<&String> = snapshot.runs.iter().rev().collect();
        if args.json {
            println!(
                "{}",
                serde_json::json!({"branch": branch, "runs": newest_first})
            );
        } else {
            for id in newest_first {
                println!("{}", escape(id));
            }
        }
        return super::EXIT_OK;
    }
    if args.json {
        let attention: Vec<&HostReport> = snapshot
            .hosts
            .iter()
            .filter(|h| h.compliance.state.needs_attention())
            .collect();
        let out = serde_json::json!({
            "branch": branch,
            "commit": snapshot.commit,
            "summary": snapshot.summary,
            "hosts": attention,
            "rejected": snapshot.rejected,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("report types always serialize")
        );
    } else {
        print!("{}", render(&branch, &snapshot));
    }
    super::EXIT_OK
}

/// The branch named by the fleet's Settings, when the repo validates.
fn branch_from_settings(repo: &std::path::Path) -> String {
    crate::validate::load_and_validate(repo)
        .ok()
        .and_then(|o| o.fleet)
        .and_then(|f| f.settings().reports.branch)
        .unwrap_or_else(|| report::DEFAULT_BRANCH.to_owned())
}

/// Human output: where, summary counts, then every host needing attention with reasons.
pub fn render(branch: &str, s: &Snapshot) -> String {
    let mut out = String::new();
    let short = crate::terminal::escape(crate::terminal::short(&s.commit, 12));
    out.push_str(&format!("reports branch `{}` at {short}\n", escape(branch)));
    // Counts come from the host files; summary.json is written from the same files.
    let count = |state: ComplianceState| {
        s.hosts
            .iter()
            .filter(|h| h.compliance.state == state)
            .count()
    };
    if let Some(sum) = &s.summary {
        let desired = crate::terminal::escape(crate::terminal::short(&sum.desired_commit, 12));
        out.push_str(&format!(
            "last run {} at {}, desired commit {desired}, {}\n",
            escape(&sum.run_id),
            escape(&sum.generated_at.to_string()),
            escape(&sum.policy.to_string())
        ));
    }
    if let Some(r) = &s.rejected {
        out.push_str(&format!(
            "desired commit {} was rejected at {} ({} error(s), first: {}); the last good commit {} is in force\n",
            escape(crate::terminal::short(&r.desired_commit, 12)),
            r.finished_at,
            r.errors.len(),
            escape(r.errors.first().map(String::as_str).unwrap_or("none recorded")),
            escape(crate::terminal::short(
                r.last_good_commit.as_deref().unwrap_or("none"),
                12
            )),
        ));
    }
    out.push('\n');
    let counts: Vec<String> = ComplianceState::ALL
        .iter()
        .map(|st| format!("{} {st}", count(*st)))
        .collect();
    out.push_str(&format!("{} hosts: {}\n", s.hosts.len(), counts.join(", ")));
    let mut rules: std::collections::BTreeMap<std::borrow::Cow<'_, str>, usize> =
        Default::default();
    for h in &s.hosts {
        for r in &h.compliance.broken_rules {
            *rules.entry(escape(r)).or_default() += 1;
        }
    }
    if !rules.is_empty() {
        let list: Vec<String> = rules.iter().map(|(r, n)| format!("{r} ({n})")).collect();
        out.push_str(&format!("broken rules: {}\n", list.join(", ")));
    }
    // Versions that failed on a host: staged promotion never promotes them from there.
    let incidents: Vec<String> = s
        .hosts
        .iter()
        .flat_map(|h| h.incidents.iter().map(move |i| (h, i)))
        .map(|(h, i)| {
            format!(
                "  {} {} {} on {} at {}: {}\n",
                escape(&i.package),
                escape(&i.version),
                i.kind.as_str(),
                escape(&h.compliance.host),
                i.at,
                escape(&i.reason)
            )
        })
        .collect();
    if !incidents.is_empty() {
        out.push_str("\nversions kept from promotion (failed there; a newer version must soak):\n");
        incidents.iter().for_each(|l| out.push_str(l));
    }
    let attention: Vec<&HostReport> = s
        .hosts
        .iter()
        .filter(|h| h.compliance.state.needs_attention())
        .collect();
    if attention.is_empty() {
        out.push_str("\nevery managed host is compliant\n");
        return out;
    }
    out.push_str("\nhosts needing attention:\n");
    for h in attention {
        let c = &h.compliance;
        // Everything here was read from the reports branch: escaped for the terminal.
        out.push_str(&format!("  {} ({})", escape(&c.host), c.state));
        if !c.broken_rules.is_empty() {
            out.push_str(&format!(" breaks {}", escape(&c.broken_rules.join(", "))));
        }
        out.push('\n');
        for r in &c.reasons {
            out.push_str(&format!("    - {}\n", escape(r)));
        }
    }
    out
}

fn history(args: &Args, branch: &str, host: &str) -> u8 {
    let since = match args.since {
        None => None,
        Some(d) => match jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| jiff::Timestamp::now().checked_sub(d).ok())
        {
            Some(t) => Some(t),
            None => {
                eprintln!("error: --since reaches before the earliest representable time");
                return super::EXIT_ERROR;
            }
        },
    };
    let entries = match report::host_history(&args.repo, branch, host, since) {
        Ok(Some(e)) => e,
        Ok(None) => {
            eprintln!(
                "error: no reports yet: branch `{branch}` does not exist in `{}`\n\nhint: reports are committed there after each observe and apply run",
                args.repo.display()
            );
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if args.json {
        let out = serde_json::json!({
            "branch": branch,
            "host": host,
            "since": since,
            "entries": entries,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("report types always serialize")
        );
    } else {
        print!("{}", render_history(host, since, &entries));
    }
    super::EXIT_OK
}

/// One host's history, newest first, as text.
pub fn render_history(
    host: &str,
    since: Option<jiff::Timestamp>,
    entries: &[report::HistoryEntry],
) -> String {
    use crate::compliance::HostRunOutcome;
    let mut out = format!(
        "history of {}{}\n",
        escape(host),
        since.map(|s| format!(" since {s}")).unwrap_or_default()
    );
    if entries.is_empty() {
        out.push_str("  nothing recorded\n");
        return out;
    }
    for e in entries {
        match e {
            report::HistoryEntry::State {
                at, state, reasons, ..
            } => {
                out.push_str(&format!("{at}  state {state}\n"));
                for r in reasons {
                    out.push_str(&format!("    - {}\n", escape(r)));
                }
            }
            report::HistoryEntry::Run {
                at,
                run_id,
                kind,
                host,
                applied_by,
                requested_by,
                overrides,
                desired_commit,
            } => {
                let (outcome, reason) = match &host.outcome {
                    HostRunOutcome::Updated => ("updated", None),
                    HostRunOutcome::Unchanged => ("unchanged", None),
                    HostRunOutcome::Failed { reason } => ("failed", Some(reason)),
                    HostRunOutcome::RolledBack { reason } => ("rolled back", Some(reason)),
                    HostRunOutcome::NotStarted { reason } => ("not started", Some(reason)),
                    HostRunOutcome::Skipped { reason } => ("skipped", Some(reason)),
                    HostRunOutcome::Unreachable { reason } => ("unreachable", Some(reason)),
                };
                out.push_str(&format!(
                    "{at}  {} run {}: {outcome} (desired commit {})\n",
                    kind.as_str(),
                    escape(run_id),
                    escape(crate::terminal::short(desired_commit, 12))
                ));
                if let Some(r) = reason {
                    out.push_str(&format!("    why: {}\n", escape(r)));
                }
                for c in &host.changes {
                    out.push_str(&format!(
                        "    ~ {} {} -> {}{}\n",
                        escape(&c.package),
                        escape(c.from.as_deref().unwrap_or("(new)")),
                        escape(&c.to),
                        if c.reasons.is_empty() {
                            String::new()
                        } else {
                            format!("  {}", escape(&c.reasons.join(", ")))
                        }
                    ));
                }
                for b in &host.reboots {
                    out.push_str(&format!(
                        "    rebooted: boot id {} -> {}\n",
                        escape(&b.from),
                        escape(&b.to)
                    ));
                }
                if let Some(who) = applied_by {
                    out.push_str(&format!("    applied by: {}\n", escape(who)));
                }
                for who in requested_by {
                    out.push_str(&format!("    requested by: {}\n", escape(who)));
                }
                for o in overrides {
                    out.push_str(&format!("    override: {}\n", escape(o)));
                }
            }
        }
    }
    out
}

fn no_branch(args: &Args, branch: &str) -> u8 {
    eprintln!(
        "error: no reports yet: branch `{branch}` does not exist in `{}`\n\nhint: reports are committed there after each observe and apply run",
        args.repo.display()
    );
    super::EXIT_ERROR
}

fn diff(args: &Args, branch: &str, run: &str) -> u8 {
    let found = match report::run_packages(&args.repo, branch, run) {
        Ok(report::RunLookup::Found(f)) => f,
        Ok(report::RunLookup::NoBranch) => return no_branch(args, branch),
        Ok(report::RunLookup::Unknown { recent }) => {
            let mut msg = format!(
                "error: no run `{}` on the reports branch `{}`\n",
                escape(run),
                escape(branch)
            );
            if recent.is_empty() {
                msg.push_str("\nthe branch records no run yet\n");
            } else {
                msg.push_str("\nthe newest runs:\n");
                for id in &recent {
                    msg.push_str(&format!("  {}\n", escape(id)));
                }
            }
            msg.push_str(
                "\nhint: `patchkeeper report --runs` lists every run id; `patchkeeper report --host NAME` shows a host's runs",
            );
            eprintln!("{msg}");
            return super::EXIT_ERROR;
        }
        Ok(report::RunLookup::Ambiguous { matches }) => {
            let list: Vec<String> = matches.iter().map(|m| format!("  {}", escape(m))).collect();
            eprintln!(
                "error: `{}` starts more than one run id on `{}`:\n{}\n\nhint: give more of the id",
                escape(run),
                escape(branch),
                list.join("\n")
            );
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&diff_json(branch, &found))
                .expect("report types always serialize")
        );
    } else {
        print!("{}", render_diff(&found));
    }
    super::EXIT_OK
}

/// `report --diff --json`: per host whether each list exists and what changed.
pub fn diff_json(branch: &str, f: &report::RunPackages) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = f
        .hosts
        .iter()
        .map(|h| {
            let changes = report::package_list::compare(
                h.before.as_deref().unwrap_or_default(),
                h.after.as_deref().unwrap_or_default(),
            );
            let mut v = serde_json::json!({
                "host": h.host,
                "before": h.before.is_some(),
                "after": h.after.is_some(),
            });
            if h.before.is_some() && h.after.is_some() {
                v["added"] = serde_json::json!(changes.added);
                v["removed"] = serde_json::json!(changes.removed);
                v["changed"] = serde_json::json!(changes.changed);
            }
            v
        })
        .collect();
    serde_json::json!({
        "branch": branch,
        "runId": f.run.run_id,
        "kind": f.run.kind,
        "commit": f.commit,
        "parent": f.parent,
        "hosts": hosts,
    })
}

/// `report --diff`: the run, then per host a unified diff of its package list (or why there
/// is none), then the counts. Everything read from the branch is escaped for the terminal.
pub fn render_diff(f: &report::RunPackages) -> String {
    use report::package_list;
    let mut out = format!(
        "{} run {}, finished {}\nrecorded in report commit {}",
        f.run.kind.as_str(),
        escape(&f.run.run_id),
        f.run.finished_at,
        escape(crate::terminal::short(&f.commit, 12)),
    );
    match &f.parent {
        Some(p) => out.push_str(&format!(
            "; before = its parent {}\n",
            escape(crate::terminal::short(p, 12))
        )),
        None => out.push_str(" (the branch's first)\n"),
    }
    let (mut changed, mut unchanged, mut missing) = (0, 0, 0);
    let mut notes = Vec::new();
    for h in &f.hosts {
        let host = escape(&h.host);
        match (&h.before, &h.after) {
            (Some(before), Some(after)) => {
                let c = package_list::compare(before, after);
                if before == after {
                    unchanged += 1;
                    continue;
                }
                changed += 1;
                out.push_str(&format!(
                    "\n{host}: {} changed, {} added, {} removed\n",
                    c.changed.len(),
                    c.added.len(),
                    c.removed.len()
                ));
                let text = package_list::unified(
                    before,
                    after,
                    &format!("a/{}", h.host),
                    &format!("b/{}", h.host),
                );
                out.push_str(&crate::terminal::escape_lines(&text));
            }
            (before, after) => {
                missing += 1;
                let why = match (before, after) {
                    (None, Some(_)) => "no package list before this run (its first observation on this branch, or reports written before package lists were kept)",
                    (Some(_), None) => "package list removed (the host left the inventory)",
                    _ => "no package list (not observed reachable)",
                };
                notes.push(format!("{host}: {why}"));
                // Without lists, the run record still says what an apply changed.
                if let Some(run) = f.run.hosts.iter().find(|r| r.host == h.host) {
                    for c in &run.changes {
                        notes.push(format!(
                            "    ~ {} {} -> {} (from the run record)",
                            escape(&c.package),
                            escape(c.from.as_deref().unwrap_or("(new)")),
                            escape(&c.to)
                        ));
                    }
                }
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n{} host(s): {changed} changed, {unchanged} unchanged, {missing} without both lists\n",
        f.hosts.len()
    ));
    out
}
