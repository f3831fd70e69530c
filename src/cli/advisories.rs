//! `patchkeeper advisories import|status`: load advisory data into the local store and
//! show what is loaded.

use std::path::PathBuf;

use crate::advisory::import::{self, Format};
use crate::advisory::{fleet, Store};
use crate::terminal::escape;

/// `patchkeeper advisories` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import advisory data as published: the Debian security tracker's JSON dump, OSV
    /// records (`.json`), directories of them, and OSV `all.zip` dumps.
    ///
    /// Each path replaces what an earlier import of the same path stored. Malformed entries
    /// are skipped with a count and the first reasons.
    #[command(after_long_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Show what advisory data is loaded, where from, and how old it is.
    #[command(after_long_help = STATUS_HELP)]
    Status(StatusArgs),
}

const IMPORT_HELP: &str = concat!("Sources: https://security-tracker.debian.org/tracker/data/json, OSV files and\nhttps://osv-vulnerabilities.storage.googleapis.com/<ECOSYSTEM>/all.zip (Debian, Ubuntu,\nAlmaLinux, Rocky Linux). `advisories import` reads files you downloaded; `serve` can fetch\nhttps:// URLs itself (Settings advisories.sources, serve --advisories URL).\n\nExit codes:\n  0  every path was imported (malformed entries in it may have been skipped)\n  1  a path could not be read or the store could not be written (the others were imported)\n", usage_exit!());

const STATUS_HELP: &str = concat!("Exit codes:\n  0  advisory data is loaded and not older than Settings' advisories.maxAge (default 7d)\n  1  no advisory data is loaded, or the store cannot be read\n", usage_exit_1!(), "\n  2  the data is older than advisories.maxAge");

/// Where the store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    repo: super::RepoArg,
    /// The advisory store (default: `$PATCHKEEPER_ADVISORY_STORE`, else
    /// `<repo>/.patchkeeper/advisories.db`).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
}

impl StoreArgs {
    fn path(&self) -> PathBuf {
        fleet::store_path(&self.repo.repo, self.store.as_deref())
    }
}

/// Flags of `advisories import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Files, directories or `.zip` dumps to import.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The format of `.json` files (default: told from the content).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Rewrite even when the data did not change since the last import.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `advisories status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `advisories` subcommand; returns the exit code.
pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Import(args) => run_import(args),
        Command::Status(args) => run_status(args),
    }
}

fn run_import(args: ImportArgs) -> u8 {
    let path = args.store.path();
    let mut store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let now = jiff::Timestamp::now();
    let mut failed = false;
    let mut imported = Vec::new();
    for p in &args.paths {
        match import::import_path(&mut store, p, None, args.format, now, args.force) {
            Ok(done) => {
                if !args.json {
                    print_import(&done);
                }
                imported.push(done.info);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    let snapshot = match store.snapshot() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if args.json {
        let out = serde_json::json!({"imported": imported, "snapshot": snapshot.id, "records": snapshot.records, "store": path});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "advisory snapshot {}: {} records in `{}`",
            snapshot.id,
            snapshot.records,
            path.display()
        );
    }
    if failed {
        super::EXIT_ERROR
    } else {
        super::EXIT_OK
    }
}

fn print_import(done: &import::Imported) {
    let i = &done.info;
    let s = &i.stats;
    if done.unchanged {
        println!(
            "unchanged {} ({}): {} records",
            i.source, i.format, s.records
        );
        return;
    }
    let mut notes = Vec::new();
    if s.skipped > 0 {
        notes.push(format!("skipped {} malformed", s.skipped));
    }
    if s.not_affected > 0 {
        notes.push(format!("{} not-affected statements", s.not_affected));
    }
    if s.withdrawn > 0 {
        notes.push(format!("{} withdrawn", s.withdrawn));
    }
    if s.other_ecosystems > 0 {
        notes.push(format!("{} for other ecosystems", s.other_ecosystems));
    }
    println!(
        "imported {} ({}): {} records from {} advisories{}{}",
        escape(&i.source),
        i.format,
        s.records,
        s.advisories,
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join(", "))
        },
        i.data_date
            .as_deref()
            .map(|d| format!("; data from {}", escape(d)))
            .unwrap_or_default()
    );
    for r in &s.reasons {
        println!("  skipped: {}", escape(r));
    }
    if s.skipped > s.reasons.len() {
        println!("  ... and {} more", s.skipped - s.reasons.len());
    }
}

/// Settings' `advisories.maxAge` (default 7 days) when the repo loads; the default otherwise.
pub(crate) fn max_age(repo: &std::path::Path) -> std::time::Duration {
    let default = std::time::Duration::from_secs(7 * 86400);
    crate::validate::load_and_validate(repo)
        .ok()
        .and_then(|o| o.fleet)
        .and_then(|f| f.settings().advisories.max_age)
        .and_then(|m| crate::duration::parse_duration(&m).ok())
        .unwrap_or(default)
}

/// The age of a data date at `now`, when it parses.
pub(crate) fn age_of(date: Option<&str>, now: jiff::Timestamp) -> Option<u64> {
    let t: jiff::Timestamp = date?.parse().ok()?;
    u64::try_from(now.duration_since(t).as_secs()).ok()
}

fn run_status(args: StatusArgs) -> u8 {
    let path = args.store.path();
    let store = match Store::open_existing(&path) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: no advisory data: `{}` does not exist\n\nhint: import some with `patchkeeper advisories import PATH`",
                path.display()
            );
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let snapshot = match store.snapshot() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if snapshot.imports.is_empty() {
        // serve may have tried and failed: say why.
        let checks: Vec<_> = store
            .checks()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.recorded)
            .collect();
        print_checks(&checks, jiff::Timestamp::now());
        eprintln!(
            "error: no advisory data in `{}`\n\nhint: import some with `patchkeeper advisories import PATH`",
            path.display()
        );
        return super::EXIT_ERROR;
    }
    // What serve's refresh recorded (empty when only `advisories import` wrote the store).
    let checks: Vec<_> = store
        .checks()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.recorded)
        .collect();
    let now = jiff::Timestamp::now();
    let max_age = max_age(&args.store.repo.repo);
    let age = age_of(snapshot.data_date.as_deref(), now);
    let stale = age.is_some_and(|a| a > max_age.as_secs());
    if args.json {
        let mut value = serde_json::to_value(&snapshot).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            obj.insert("store".into(), serde_json::json!(path));
            obj.insert("ageSeconds".into(), serde_json::json!(age));
            obj.insert("stale".into(), serde_json::json!(stale));
            obj.insert("checks".into(), serde_json::json!(checks));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("advisory store `{}`", path.display());
        println!(
            "snapshot {}: {} records{}",
            snapshot.id,
            snapshot.records,
            match (&snapshot.data_date, age) {
                (Some(d), Some(a)) => format!(
                    ", data from {} ({} old)",
                    escape(d),
                    crate::compliance::human(a)
                ),
                (Some(d), None) => format!(", data from {}", escape(d)),
                _ => String::new(),
            }
        );
        let rows: Vec<[String; 6]> = snapshot
            .imports
            .iter()
            .map(|i| {
                [
                    i.source.clone(),
                    i.format.clone(),
                    i.stats.records.to_string(),
                    i.stats.skipped.to_string(),
                    i.data_date.clone().unwrap_or_else(|| "-".into()),
                    i.imported_at.clone(),
                ]
            })
            .collect();
        let header = [
            "SOURCE",
            "FORMAT",
            "RECORDS",
            "SKIPPED",
            "DATA DATE",
            "IMPORTED",
        ]
        .map(String::from);
        print_table(&header, &rows);
        print_checks(&checks, now);
        if stale {
            println!(
                "\nwarning: the data is older than advisories.maxAge ({}): import fresh data",
                crate::compliance::human(max_age.as_secs())
            );
        }
    }
    if stale {
        super::EXIT_CHANGES
    } else {
        super::EXIT_OK
    }
}

/// serve's last check of each source it refreshes, and the errors of failing ones.
fn print_checks(checks: &[crate::advisory::SourceCheck], now: jiff::Timestamp) {
    if checks.is_empty() {
        return;
    }
    let ago = |t: Option<&str>| match age_of(t, now) {
        Some(a) => format!("{} ago", crate::compliance::human(a)),
        None => t.unwrap_or("never").to_owned(),
    };
    println!("\nchecks by `serve`:");
    let rows: Vec<[String; 4]> = checks
        .iter()
        .map(|c| {
            [
                crate::redact::text(&c.source).into_owned(),
                ago(c.checked_at.as_deref()),
                ago(c.succeeded_at.as_deref()),
                if c.error.is_some() {
                    format!("failing ({} in a row)", c.failures)
                } else {
                    "ok".to_owned()
                },
            ]
        })
        .collect();
    let header = ["SOURCE", "CHECKED", "LAST SUCCESS", "STATE"].map(String::from);
    print_table(&header, &rows);
    for c in checks {
        if let Some(e) = &c.error {
            println!(
                "error: {}: {} (the last good data stays in use)",
                escape(&crate::redact::text(&c.source)),
                escape(e)
            );
        }
    }
}

/// Prints a left-aligned table with two spaces between columns.
pub(crate) fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    // Cells hold advisory data and host facts: outside text, escaped for the terminal
    // (widths are counted on what is printed).
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.clone().map(|c| escape(&c).into_owned()))
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// The assessment of `observed` against the fleet's advisory store, for commands that use
/// advisory data when there is some (plan, apply, observe reports): `None` when nothing
/// was imported; a store that cannot be read is a warning, never a failure of the command.
pub(crate) fn assessment(
    repo: &std::path::Path,
    fleet_: &crate::validate::ValidFleet,
    observed: &crate::observed::ObservedFleet,
    at: jiff::Timestamp,
) -> Option<crate::advisory::Assessment> {
    match crate::pipeline::assessment(repo, fleet_, observed, at) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warning: advisory data not used: {e}");
            None
        }
    }
}
