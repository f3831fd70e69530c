//! `patchkeeper validate`: print every diagnostic of the fleet repo.

use std::io::Write;

use crate::diagnostic::{Diagnostic, Severity};
use crate::validate;

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:column: error[code]: message` lines and a summary.
    Text,
    /// A JSON array of diagnostics.
    Json,
}

/// Flags of `patchkeeper validate`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = CODES_HELP)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    strict: bool,
}

const CODES_HELP: &str = concat!(
    "Diagnostic codes are listed in docs/diagnostics.md.\n\nExit codes:\n  0  no errors (and, with --strict, no warnings)\n  1  errors found, no fleet documents found, or the repo could not be read\n",
    usage_exit!()
);

/// Runs `patchkeeper validate`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let outcome = match validate::load_and_validate(&args.repo.repo) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let mut all = outcome.diagnostics;
    if let Some(fleet) = &outcome.fleet {
        // Exceptions near or past their expiry: time-dependent, so only here.
        all.extend(validate::exception_expiry(
            fleet.fleet(),
            jiff::Timestamp::now(),
        ));
        crate::diagnostic::sort(&mut all);
    }
    let diags: Vec<Diagnostic> = all
        .into_iter()
        .map(|mut d| {
            d.location.file = display_path(&args.repo.repo, &d.location.file);
            for n in &mut d.notes {
                n.location.file = display_path(&args.repo.repo, &n.location.file);
            }
            d
        })
        .collect();
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &diags)
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out)),
        Format::Text => write_text(&mut out, &diags, errors, warnings),
    };
    if let Err(e) = written {
        eprintln!("error: cannot write output: {e}");
        return super::EXIT_ERROR;
    }
    if errors > 0 || (args.strict && warnings > 0) {
        super::EXIT_ERROR
    } else {
        super::EXIT_OK
    }
}

fn write_text(
    out: &mut impl Write,
    diags: &[Diagnostic],
    errors: usize,
    warnings: usize,
) -> std::io::Result<()> {
    for d in diags {
        writeln!(out, "{d}")?;
    }
    if diags.is_empty() {
        writeln!(out, "ok: the fleet repo is valid")
    } else {
        writeln!(
            out,
            "{} error{}, {} warning{}",
            errors,
            plural(errors),
            warnings,
            plural(warnings)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Paths are shown relative to the current directory (clickable in terminals and CI logs).
fn display_path(repo: &std::path::Path, rel: &std::path::Path) -> std::path::PathBuf {
    if repo == std::path::Path::new(".") {
        rel.to_owned()
    } else {
        repo.join(rel)
    }
}
