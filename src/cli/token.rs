//! `patchkeeper token new`: make an API token, show it once, and print the Settings entry
//! (its SHA-256, name, scopes and expiry) to commit to the fleet repo.

use std::io::Write;

use crate::model::{ApiToken, Scope};

/// `patchkeeper token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a new API token for `serve --listen`.
    ///
    /// The token is printed once and never stored: the fleet repo's Settings hold only its
    /// SHA-256, so granting (and revoking: delete the entry) access is a reviewed commit.
    #[command(after_long_help = HELP)]
    New(NewArgs),
}

const HELP: &str = concat!(
    "Scopes: `read` (every GET, the event stream), `request` (file patch requests; implies read),\n`admin` (POST /api/v1/reconcile; implies both).\n\nExit codes:\n  0  the token was made and printed\n  1  invalid flags, or no random source\n",
    usage_exit!()
);

/// A scope as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    /// Read fleet state, plans, runs, windows, requests and events.
    Read,
    /// File patch requests (and read).
    Request,
    /// Trigger reconciles (and everything else).
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Request => Scope::Request,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

/// Flags of `patchkeeper token new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Who holds the token: logged with its requests and written as `Requested-By:` on
    /// the patch requests it files (lowercase letters, digits, `-`, `.`, `_`).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// What the token may do (repeat for several).
    #[arg(long, value_enum, value_name = "SCOPE", required = true)]
    scope: Vec<ScopeArg>,
    /// Stop accepting the token after this long (`90d`, `12h`; default: never).
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Print `{"token": ..., "entry": {...}}` instead of text.
    #[arg(long)]
    json: bool,
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter()
            .all(|c| edge(*c) || matches!(c, b'-' | b'.' | b'_'))
}

/// Runs `patchkeeper token`; returns the exit code.
pub fn run(cmd: Command) -> u8 {
    let Command::New(args) = cmd;
    if !valid_name(&args.name) {
        eprintln!("error: invalid token name `{}`: use lowercase letters, digits, `-`, `.` and `_`, starting and ending with a letter or digit (at most 63 characters)", args.name);
        return super::EXIT_ERROR;
    }
    let expires = match &args.expires {
        None => None,
        Some(d) => match crate::duration::parse_duration(d) {
            Ok(d) if !d.is_zero() => {
                let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
                match jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .ok()
                    .and_then(|t| t.checked_add(span).ok())
                {
                    Some(t) => Some(t.to_string()),
                    None => {
                        eprintln!("error: --expires `{d:?}` is too far in the future");
                        return super::EXIT_ERROR;
                    }
                }
            }
            Ok(_) | Err(_) => {
                eprintln!(
                    "error: invalid --expires `{d}`\n\nhint: use a duration such as `90d` or `12h`"
                );
                return super::EXIT_ERROR;
            }
        },
    };
    let made = match crate::token::generate() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let mut scopes: Vec<Scope> = args.scope.iter().map(|s| Scope::from(*s)).collect();
    scopes.sort();
    scopes.dedup();
    let entry = ApiToken {
        name: args.name.clone(),
        sha256: made.sha256.clone(),
        scopes,
        expires,
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let value = serde_json::json!({ "token": made.secret, "entry": entry });
        serde_json::to_writer_pretty(&mut out, &value)
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out))
    } else {
        let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.as_str()).collect();
        let expiry = entry
            .expires
            .as_ref()
            .map(|e| format!("        expires: \"{e}\"\n"))
            .unwrap_or_default();
        write!(
            out,
            "Token for `{name}` (shown once; patchkeeper keeps only its hash, so store it now):\n\n  {token}\n\n\
             Add it to the fleet repo's Settings (patchkeeper.yaml) and commit; serve accepts the\n\
             token once that commit is the desired one:\n\n\
             spec:\n  api:\n    tokens:\n      - name: {name}\n        sha256: {sha}\n        scopes: [{scopes}]\n{expiry}",
            name = entry.name,
            token = made.secret,
            sha = entry.sha256,
            scopes = scopes.join(", "),
        )
    };
    if let Err(e) = written {
        eprintln!("error: cannot write output: {e}");
        return super::EXIT_ERROR;
    }
    super::EXIT_OK
}
