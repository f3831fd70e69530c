//! `patchkeeper observe`: observe the inventory's hosts over SSH and report their state.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::observe::{self, HostSelector};
use crate::observed::{pm_name, ObservedFleet, ObservedHost};
use crate::pipeline::{Pipeline, Progress, Scope};
use crate::validate::ValidFleet;

/// Flags of `patchkeeper observe`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXIT_HELP)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Only these hosts: comma-separated host names or globs (`web-*`), `group:NAME`,
    /// `label:KEY=VALUE` (names and groups add hosts; labels narrow them).
    #[arg(long, value_name = "SELECTOR", value_parser = selector)]
    hosts: Option<String>,
    /// Write the observed state as JSON to FILE (schema: `schemas/observed.schema.json`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the observed state as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Hosts observed at once (default: Settings' `observe.parallel`, else 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// Do not refresh package indexes first (overrides Settings' `observe.refresh`).
    #[arg(long)]
    no_refresh: bool,
    /// Do not commit the reports of this observation to the reports branch (they are
    /// committed when every host is observed and the fleet repo is a clean Git checkout).
    #[arg(long)]
    no_report: bool,
    /// Print the shell script each host runs (fed to `sh -s`; with index refresh unless
    /// --no-refresh) and exit without connecting.
    #[arg(long)]
    print_script: bool,
}

const EXIT_HELP: &str = concat!("Exit codes:\n  0  every selected host was observed\n  1  error: the fleet repo does not validate, no host matches, or the output cannot be written\n", usage_exit!(), "\n  3  some hosts could not be observed (unreachable, refused, bad host key, login failed,\n     a command failed); the others were observed and are in the output");

/// `--hosts`: checked when the flags are read, so that a malformed selector is a usage
/// error (exit 2) like any other bad flag value.
fn selector(s: &str) -> Result<String, String> {
    HostSelector::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| match e {
            observe::ObserveError::Selector { message, .. } => message,
            other => other.to_string(),
        })
}

/// Runs `patchkeeper observe`; returns the exit code.
pub fn run(args: Args) -> u8 {
    if args.print_script {
        print!("{}", crate::driver::observe_script(!args.no_refresh));
        return super::EXIT_OK;
    }
    let fleet = match super::load_valid_fleet(&args.repo.repo) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let selector = match args.hosts.as_deref().map(HostSelector::parse).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    recover_in_flight(&fleet, &args.repo.repo);
    let observed = match observe_fleet(
        &fleet,
        &selector,
        args.no_refresh.then_some(false),
        args.parallel.and_then(|p| usize::try_from(p).ok()),
    ) {
        Ok(o) => o,
        Err(code) => {
            if code == super::EXIT_ERROR && args.hosts.is_some() {
                eprintln!(
                    "hint: the selector was `{}`",
                    args.hosts.as_deref().unwrap_or_default()
                );
            }
            return code;
        }
    };
    if let Some(path) = &args.out {
        if let Err(e) = write_json(path, &observed) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return super::EXIT_ERROR;
        }
    }
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut stdout, &observed)
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(stdout))
    } else {
        write_table(&mut stdout, &observed)
    };
    if let Err(e) = written {
        eprintln!("error: cannot write output: {e}");
        return super::EXIT_ERROR;
    }
    if args.hosts.is_some() && !args.no_report {
        // A report evaluates every inventory host: the others would look unobserved.
        eprintln!("note: not reporting: only the hosts selected by --hosts were observed");
    } else if let Some(commit) =
        super::audit::report_commit(&fleet, &args.repo.repo, args.no_report)
    {
        super::audit::record_observation(&args.repo.repo, &fleet, &observed, &commit);
    }
    if observed.all_observed() {
        super::EXIT_OK
    } else {
        super::EXIT_HOSTS_FAILED
    }
}

/// Observes every host as a plan does (`vulns` without `--observed`): Settings' index
/// refresh and parallelism.
pub(crate) fn observe_for_plan(fleet: &ValidFleet) -> Result<ObservedFleet, u8> {
    observe_fleet(fleet, &HostSelector::default(), None, None)
}

/// Observes every host again after an apply, for its report: no index refresh (the plan's
/// observation just did one, and what is installed is what changed).
pub(crate) fn observe_after_apply(fleet: &ValidFleet) -> Result<ObservedFleet, u8> {
    observe_fleet(fleet, &HostSelector::default(), Some(false), None)
}

/// The fleet after an apply that planned from `before`: the hosts the apply worked on
/// observed again, every other host as `before` saw it (not contacted twice).
pub(crate) fn observe_touched_after_apply(
    fleet: &ValidFleet,
    before: &ObservedFleet,
    applied: &crate::apply::ApplyReport,
) -> Result<ObservedFleet, u8> {
    let touched = crate::pipeline::touched(applied);
    match HostSelector::exactly(touched.iter().map(String::as_str)) {
        Some(selector) => {
            Ok(before
                .clone()
                .merged(observe_fleet(fleet, &selector, Some(false), None)?))
        }
        None => Ok(before.clone()),
    }
}

/// Observes the selected hosts with a progress bar on a terminal; `Err` is an exit code
/// after the error was printed.
fn observe_fleet(
    fleet: &ValidFleet,
    selector: &HostSelector,
    refresh: Option<bool>,
    parallel: Option<usize>,
) -> Result<ObservedFleet, u8> {
    let pipeline = Pipeline::new().map_err(|e| {
        eprintln!("error: {e}");
        super::EXIT_ERROR
    })?;
    let scope = Scope {
        selector: selector.clone(),
        refresh,
        parallel,
    };
    let bars = Bars::new();
    let observed = pipeline.observe(fleet, &scope, bars.clone());
    bars.finish();
    observed.map_err(|e| {
        eprintln!("error: {e}");
        super::EXIT_ERROR
    })
}

/// Progress bars for observation and dry runs, on a terminal only.
pub(crate) struct Bars {
    tty: bool,
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Bars {
    pub(crate) fn new() -> std::sync::Arc<Bars> {
        std::sync::Arc::new(Bars {
            tty: std::io::stderr().is_terminal(),
            bar: std::sync::Mutex::new(None),
        })
    }

    fn start(&self, what: &str, len: usize) {
        let bar = if self.tty {
            let bar = indicatif::ProgressBar::new(len as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{wide_msg}}"
                ))
                // A fixed template: it parses (a bad one falls back to the default style).
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Some(old) = self.lock().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<indicatif::ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn step(&self, message: &str) {
        if let Some(bar) = self.lock().as_ref() {
            bar.set_message(message.to_owned());
            bar.inc(1);
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = self.lock().take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn observing(&self, hosts: usize) {
        self.start("observing", hosts);
    }

    fn observed(&self, host: &ObservedHost) {
        self.step(&host.name);
    }

    fn dry_runs(&self, hosts: usize) {
        self.start("dry-running transactions", hosts);
    }

    fn dry_run_done(&self, host: &str) {
        self.step(host);
    }
}

fn write_json(path: &std::path::Path, observed: &ObservedFleet) -> std::io::Result<()> {
    // Compact, not pretty: a machine artifact (`plan --observed` reads it) of ~1,500
    // packages per host; indentation made it 1.8x larger (242 MB instead of 135 MB for
    // 1,000 hosts) and its writing a fifth of observe's CPU. `jq .` pretty-prints it.
    let mut text = serde_json::to_vec(observed).map_err(std::io::Error::other)?;
    text.push(b'\n');
    // Atomic and durable: a reader never sees half a file, a crash never leaves one.
    crate::durable::write(path, &text)
}

fn row(host: &ObservedHost) -> [String; 7] {
    let reachable = host.status.is_reachable();
    let os = host
        .os
        .as_ref()
        .map(|o| format!("{} {}", o.id, o.version_id).trim().to_string())
        .unwrap_or_else(|| "-".into());
    let pm = host.package_manager.map(pm_name).unwrap_or("-").to_string();
    let count = |n: usize| if reachable { n.to_string() } else { "-".into() };
    let security = host.updates.iter().filter(|u| u.security).count();
    let reboot = if !reachable {
        "-".into()
    } else if host.reboot_required.required {
        "yes".into()
    } else {
        "no".into()
    };
    [
        host.name.clone(),
        format!("{os} ({pm})"),
        count(host.installed.len()),
        count(host.updates.len()),
        count(security),
        reboot,
        observe::status_text(host),
    ]
}

fn write_table(out: &mut impl Write, observed: &ObservedFleet) -> std::io::Result<()> {
    let header = [
        "HOST", "OS", "PACKAGES", "UPDATES", "SECURITY", "REBOOT", "STATUS",
    ]
    .map(String::from);
    // Cells hold what hosts said (OS names, error text): escaped for the terminal.
    let rows: Vec<[String; 7]> = observed
        .hosts
        .iter()
        .map(|h| row(h).map(|cell| crate::terminal::escape(&cell).into_owned()))
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else if (2..=4).contains(&i) {
                line.push_str(&format!("{cell:>width$}  ", width = widths[i]));
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    let failed = observed
        .hosts
        .iter()
        .filter(|h| !h.status.is_reachable())
        .count();
    let total = observed.hosts.len();
    writeln!(out)?;
    if failed == 0 {
        writeln!(
            out,
            "observed {total} host{}",
            if total == 1 { "" } else { "s" }
        )
    } else {
        writeln!(
            out,
            "observed {} of {total} hosts; {failed} could not be observed",
            total - failed
        )
    }
}

/// Recovery's live steps (waiting for a lock, running a repair) on stderr.
struct RecoveryLines;

impl crate::apply::Progress for RecoveryLines {
    fn host(&self, host: &str, message: &str) {
        // Messages carry what hosts printed: escaped for the terminal.
        eprintln!("  {host}: {}", crate::terminal::escape(message));
    }

    fn batch(&self, _index: usize, _message: &str) {}
}

/// Reports (and repairs) hosts an interrupted apply left in flight, as `apply` does — but only
/// when no apply is running now (its hosts are in flight legitimately).
fn recover_in_flight(fleet: &ValidFleet, repo: &std::path::Path) {
    let state = crate::apply::state_dir(repo);
    let open = crate::apply::journal::read(&state)
        .map(|e| crate::apply::journal::in_flight(&e))
        .unwrap_or_default();
    if open.is_empty() {
        return;
    }
    let run = format!("observe-{}", std::process::id());
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    match crate::apply::lock::FleetLock::acquire(&state, &run) {
        Ok(_lock) => match runtime.block_on(crate::apply::recover::recover_fleet(
            fleet,
            repo,
            &run,
            &RecoveryLines,
        )) {
            Ok(recoveries) if !recoveries.is_empty() => {
                eprintln!(
                    "An earlier apply did not finish; {} host(s) were in flight:",
                    recoveries.len()
                );
                for r in recoveries {
                    eprintln!("  {}", crate::terminal::escape(&r.line()));
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e}"),
        },
        Err(e) => eprintln!(
            "warning: {} host(s) are in flight in the apply journal and the fleet lock is taken ({e}); not recovering them now",
            open.len()
        ),
    }
}
