//! The command-line layer: flag parsing, output rendering and exit codes. Only this layer
//! (and `main`) turns typed errors into messages for people.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit-code line every command's `--help` shows for usage errors (clap's exit 2).
macro_rules! usage_exit {
    () => {
        "  2  usage error: an unknown command or flag, a missing argument or a bad flag value\n     (stderr says which)"
    };
}

/// The exit-code line of commands whose exit 2 means a finding (`vulns`, `advisories
/// status`): their usage errors exit 1.
macro_rules! usage_exit_1 {
    () => {
        "  1  also a usage error: an unknown flag, a missing argument or a bad flag value (stderr\n     says which; not 2, which means a finding here)"
    };
}

mod advisories;

mod apply;
mod audit;
mod cluster;
mod completions;
mod import;
mod observe;
mod plan;
pub mod report;
mod schema;
mod serve;
mod token;
mod validate;
mod version;
mod vulns;
pub mod windows;

/// Exit code: success, nothing to report.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error (invalid input, failed command, unreachable host...).
pub const EXIT_ERROR: u8 = 1;
/// Exit code (`plan --detailed-exitcode`): changes are pending.
pub const EXIT_CHANGES: u8 = 2;
/// Exit code (`observe`): some hosts could not be observed; the others were.
pub const EXIT_HOSTS_FAILED: u8 = 3;

/// patchkeeper keeps fleets of Linux hosts patched the GitOps way.
///
/// A Git repository (the fleet repo) holds the desired state: inventory, patch baselines,
/// maintenance windows and rollout rules. patchkeeper observes hosts over SSH, plans the
/// difference, applies it in batches inside the allowed windows, and commits compliance
/// reports back to Git.
#[derive(Debug, Parser)]
#[command(
    name = "patchkeeper",
    version,
    propagate_version = true,
    after_long_help = concat!(
        "Exit codes (each command's --help lists its own):\n  0  success\n  1  error\n",
        usage_exit!(),
        "\n\n`plan --detailed-exitcode` exits 2 for \"changes are planned\" and 1 for a usage error;\n`vulns` and `advisories status` do the same (2: open advisories, stale data);\n`observe` and `apply` add codes 3 to 5 for hosts that could not be observed or changed."
    )
)]
pub struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Let hosts with `transport: local` run commands on this machine (observation, package
    /// transactions, the rollout's pre/post/health commands). The fleet repo alone cannot.
    #[arg(long, global = true, env = crate::trust::ALLOW_LOCAL_ENV, action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_local_commands: bool,
    /// A directory outside the fleet repo in which the repo may name files (SSH identity
    /// files, known_hosts, the reports signing key, a local reports remote). Repeatable; the
    /// environment variable takes a `:`-separated list.
    #[arg(long, global = true, value_name = "DIR", env = crate::trust::ALLOW_PATHS_ENV, value_delimiter = ':')]
    pub allow_path: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the fleet repo is.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArg {
    /// The fleet repo (a directory; default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the fleet repo: YAML, schemas, references, conflicts, schedules, versions.
    ///
    /// Prints every problem as `path:line:column: error[code]: message`, all in one run.
    /// Exits 1 when there is an error (or, with --strict, a warning), 0 otherwise.
    Validate(validate::Args),
    /// Observe hosts over SSH: OS, installed packages, pending updates, reboot, locks.
    ///
    /// Prints a summary table (or JSON with --json) and writes the observed state with --out.
    /// Exits 0 when every host was observed, 3 when some could not be, 1 on other errors.
    Observe(observe::Args),
    /// Show what apply would change: per host the exact package transactions and why, the
    /// batches with their window state, and a summary.
    Plan(plan::Args),
    /// Apply the plan: batch by batch inside windows, verify, reboot, roll back failures.
    ///
    /// Without PLAN_FILE it observes, plans, shows the plan and asks for confirmation (on a
    /// terminal; otherwise --auto-approve is required). With PLAN_FILE it applies exactly that
    /// saved plan. One apply per fleet at a time (lock in `<repo>/.patchkeeper/`).
    Apply(apply::Args),
    /// Show the fleet's compliance from the reports branch (no checkout needed).
    ///
    /// Prints summary counts, then every host needing attention with its reasons and the
    /// policy rules it breaks (JSON with --json). Exits 1 when there are no reports yet.
    Report(report::Args),
    /// Run the reconcile loop: fetch the fleet repo, validate, observe, plan, apply what
    /// windows allow (only with Settings' `reconcile.autoApply`), report to Git; repeat.
    ///
    /// Runs until SIGTERM/SIGINT (finishing the in-flight reconcile), or once with --once.
    /// With --listen, also serves the HTTP API (JSON under /api/v1, live events, metrics,
    /// health) over what the loop publishes. Logs progress on stderr at info level
    /// (structured with --log-format json).
    Serve(Box<serve::Args>),
    /// Replicas of `serve --cluster`: who leads, their heartbeats, hosts in a transaction.
    #[command(
        subcommand,
        after_long_help = "Exit codes: see `patchkeeper cluster status --help`; a usage error exits 2."
    )]
    Cluster(cluster::Command),
    /// API tokens for `serve --listen`.
    #[command(
        subcommand,
        after_long_help = "Exit codes: see `patchkeeper token new --help`; a usage error exits 2."
    )]
    Token(token::Command),
    /// Write the JSON Schemas of every document kind (for editors and CI).
    Schema(schema::Args),
    /// Package version tools.
    #[command(
        subcommand,
        after_long_help = "Exit codes: see `patchkeeper version compare --help`; a usage error exits 2."
    )]
    Version(version::Command),
    /// Show every maintenance window's state at an instant (default: now).
    Windows(windows::Args),
    /// Import hosts from other tools (Ansible inventories).
    #[command(
        subcommand,
        after_long_help = "Exit codes: see `patchkeeper import ansible --help`; a usage error exits 2."
    )]
    Import(import::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Write a man page for every command into a directory (for packagers).
    #[command(hide = true)]
    Manpages(completions::ManArgs),
    /// Advisory data: import the Debian security tracker dump and OSV records, show what is
    /// loaded.
    #[command(
        subcommand,
        after_long_help = "Exit codes: see `patchkeeper advisories import --help` and `advisories status --help`;\na usage error exits 2 (1 for `advisories status`, whose 2 means stale data)."
    )]
    Advisories(advisories::Command),
    /// Show the open advisories of every host (the fix offered? planned?) and a fleet
    /// summary by severity.
    Vulns(vulns::Args),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `plan --detailed-exitcode` gives exit 2 the meaning "changes are planned"
            // (Terraform's), so a usage error there must not look like one.
            let detailed = std::env::args().any(|a| a == "--detailed-exitcode")
                && std::env::args().any(|a| a == "plan");
            // So do `vulns` (open advisories) and `advisories status` (stale data).
            let finding = std::env::args().any(|a| a == "vulns")
                || (std::env::args().any(|a| a == "advisories")
                    && std::env::args().any(|a| a == "status"));
            if (detailed || finding) && e.use_stderr() {
                let _ = e.print();
                return ExitCode::from(EXIT_ERROR);
            }
            e.exit()
        }
    };
    init_logging(&cli);
    crate::trust::ControllerTrust {
        local_commands: cli.allow_local_commands,
        allowed_paths: cli.allow_path.clone(),
    }
    .install();
    let code = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Report(args) => report::run(args),
        Command::Observe(args) => observe::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Token(cmd) => token::run(cmd),
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Schema(args) => schema::run(args),
        Command::Version(cmd) => version::run(cmd),
        Command::Windows(args) => windows::run(args),
        Command::Import(cmd) => import::run(cmd),
        Command::Completions(args) => completions::run(args),
        Command::Manpages(args) => completions::manpages(args),
        Command::Advisories(cmd) => advisories::run(cmd),
        Command::Vulns(args) => vulns::run(args),
    };
    ExitCode::from(code)
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            // A service's log is its output: serve reports progress by default.
            0 if matches!(cli.command, Command::Serve(_)) => "info",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter =
        EnvFilter::try_from_env("PATCHKEEPER_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(use_color_stderr()).init(),
    }
}

/// Colors only on a terminal and only when `NO_COLOR` is unset.
pub fn use_color_stdout() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn use_color_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Loads and validates the fleet repo for a command that needs a valid one. On errors,
/// prints the diagnostics (as `validate` does) to stderr and returns the exit code.
pub(crate) fn load_valid_fleet(repo: &std::path::Path) -> Result<crate::validate::ValidFleet, u8> {
    let outcome = match crate::validate::load_and_validate(repo) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(EXIT_ERROR);
        }
    };
    match outcome.fleet {
        Some(f) => {
            for d in &outcome.diagnostics {
                tracing::warn!("{d}");
            }
            Ok(f)
        }
        None => {
            for d in &outcome.diagnostics {
                eprintln!("{}", d);
            }
            let errors = outcome.diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "error: the fleet repo `{}` has {errors} error{}; nothing is planned or applied from it\n\nhint: run `patchkeeper validate --repo {}` for details",
                repo.display(),
                if errors == 1 { "" } else { "s" },
                repo.display()
            );
            Err(EXIT_ERROR)
        }
    }
}

/// Parses `--at`: an RFC 3339 instant (default: now).
pub(crate) fn parse_at(at: Option<&str>) -> Result<jiff::Timestamp, u8> {
    match at {
        None => Ok(jiff::Timestamp::now()),
        Some(s) => s.parse().map_err(|e| {
            eprintln!("error: invalid --at `{s}`: {e}\n\nhint: use an RFC 3339 time such as `2026-11-29T02:30:00Z` or `2026-11-29T03:30:00+01:00`");
            EXIT_ERROR
        }),
    }
}
