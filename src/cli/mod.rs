//! The command-line layer: flag parsing, output rendering and exit codes. Only this layer
//! (and `main`) turns typed errors into messages for people.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod observe;
mod schema;
mod validate;
mod version;
mod windows;

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
#[command(name = "patchkeeper", version, propagate_version = true)]
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
    /// Write the JSON Schemas of every document kind (for editors and CI).
    Schema(schema::Args),
    /// Package version tools.
    #[command(subcommand)]
    Version(version::Command),
    /// Show every maintenance window's state at an instant (default: now).
    Windows(windows::Args),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let code = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Observe(args) => observe::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Version(cmd) => version::run(cmd),
        Command::Windows(args) => windows::run(args),
    };
    ExitCode::from(code)
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
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
