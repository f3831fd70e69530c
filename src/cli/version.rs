//! `patchkeeper version ...`: package version tools for baseline authors.

use std::cmp::Ordering;

use crate::version::{self, Ecosystem};

/// Subcommands of `patchkeeper version`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare two versions; prints `<`, `=` or `>`.
    ///
    /// Uses dpkg's ordering for `deb` and rpm's for `rpm`, exactly. Exits 0 after printing
    /// the answer, 1 when a version is invalid in that ecosystem.
    Compare(CompareArgs),
}

/// Flags of `patchkeeper version compare`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = concat!(
    "Exit codes:\n  0  the answer was printed\n  1  a version is invalid in that ecosystem\n",
    usage_exit!()
))]
pub struct CompareArgs {
    /// Which ecosystem's syntax and ordering to use.
    #[arg(long, value_enum)]
    pub ecosystem: Ecosystem,
    /// The first version.
    #[arg(allow_hyphen_values = true)]
    pub a: String,
    /// The second version.
    #[arg(allow_hyphen_values = true)]
    pub b: String,
}

/// Runs `patchkeeper version ...`; returns the exit code.
pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Compare(args) => match version::compare(args.ecosystem, &args.a, &args.b) {
            Ok(o) => {
                println!("{}", symbol(o));
                super::EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                super::EXIT_ERROR
            }
        },
    }
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}
