//! `patchkeeper serve`: the reconcile loop (fetch, validate, observe, plan, apply when
//! Settings allow, report) until SIGTERM/SIGINT, or one round with `--once`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::apply::Stop;
use crate::reconcile::{AdvisoryFeed, EngineExecutor, EngineObserver, Reconciler, Timing};
use crate::report::GitAuth;
use crate::source::{Location, Source};

/// Flags of `patchkeeper serve`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = concat!(
    "Exit codes:\n  0  stopped by SIGTERM/SIGINT after the in-flight reconcile; with --once: the desired\n     commit validated and was reconciled and reported\n  1  error: cannot start (an invalid --interval, no async runtime or signal handlers);\n     with --once: the round failed (fetch, validation or a step)\n",
    usage_exit!()
))]
pub struct Args {
    /// The fleet repo: a local directory or a URL (`file://`, `ssh://`, `https://`,
    /// `user@host:path`). Remote credentials come from `PATCHKEEPER_GIT_SSH_KEY` or
    /// `PATCHKEEPER_GIT_TOKEN`.
    #[arg(long, value_name = "DIR|URL", default_value = ".")]
    repo: String,
    /// The branch holding the desired state (default: the repository's HEAD / default
    /// branch).
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// Reconcile (and check for a new commit) this often (`30s`, `5m`, `1h`; default:
    /// Settings' `reconcile.interval`, else `5m`).
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Where fetched commits are cached (default: `<repo>/.patchkeeper/cache` for a local
    /// repo, `~/.cache/patchkeeper` for a URL).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Run a single reconcile and exit (for tests and cron): exit 0 when the desired
    /// commit validated and was reconciled and reported, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Advisory data to re-import every Settings `advisories.refresh` (default 6h), besides
    /// the fleet repo's `advisories.sources`: a tracker dump, OSV files, directories or
    /// `all.zip` dumps (repeatable; the operator's choice, outside the fleet repo's say).
    #[arg(long = "advisories", value_name = "PATH")]
    advisories: Vec<PathBuf>,
    /// The advisory store (default: `$PATCHKEEPER_ADVISORY_STORE`, else
    /// `<repo>/.patchkeeper/advisories.db` beside the apply journal).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
}

/// Runs `patchkeeper serve`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let flag = args.interval.as_deref().unwrap_or("5m");
    let interval = match crate::duration::parse_duration(flag) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            eprintln!("error: invalid --interval `{flag}`: must be positive");
            return super::EXIT_ERROR;
        }
        Err(e) => {
            eprintln!(
                "error: invalid --interval `{flag}`: {e}\n\nhint: use a duration such as `30s`, `5m` or `1h`"
            );
            return super::EXIT_ERROR;
        }
    };
    let location = Location::parse(&args.repo);
    let cache = match &location {
        Location::Local(dir) => args
            .cache
            .clone()
            .unwrap_or_else(|| dir.join(".patchkeeper").join("cache")),
        Location::Remote(_) => args.cache.clone().unwrap_or_else(default_cache),
    };
    // The token (if any) goes only to the fleet repo's own https host.
    let auth = match &location {
        Location::Remote(url) => GitAuth::from_env().for_source(url),
        Location::Local(_) => GitAuth::from_env(),
    };
    let source = Source::new(location, args.branch.clone(), &cache, auth);
    // The apply lock and journal live beside the repository serve reads from.
    let state_repo = source.repo_path();
    let source_repo = state_repo.clone();
    let stop = Arc::new(Stop::default());
    let engines =
        EngineObserver::new().and_then(|o| Ok((o, EngineExecutor::new(state_repo, stop.clone())?)));
    let (observer, executor) = match engines {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return super::EXIT_ERROR;
        }
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut reconciler = Reconciler::new(
        source,
        observer,
        Timing::with_interval(interval),
        shutdown.clone(),
    )
    .with_executor(executor)
    .with_advisories(AdvisoryFeed {
        store: crate::advisory::fleet::store_path(&source_repo, args.store.as_deref()),
        extra: args.advisories.clone(),
    });
    if args.interval.is_none() {
        reconciler = reconciler.with_settings_interval();
    }
    if let Err(e) = watch_signals(shutdown.clone(), stop) {
        eprintln!("error: cannot install signal handlers: {e}");
        return super::EXIT_ERROR;
    }
    if args.once {
        reconciler.step(jiff::Timestamp::now);
        let s = &reconciler.state;
        let ok = s.fetch_failures == 0
            && s.failures == 0
            && s.rejected.is_none()
            && s.last_good.is_some();
        return if ok {
            super::EXIT_OK
        } else {
            super::EXIT_ERROR
        };
    }
    tracing::info!(repo = %crate::redact::text(&args.repo), "serving");
    reconciler.run();
    tracing::info!("shut down");
    super::EXIT_OK
}

fn default_cache() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("patchkeeper"),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache").join("patchkeeper"))
            .unwrap_or_else(|| PathBuf::from(".patchkeeper-cache")),
    }
}

/// Sets `shutdown` and `stop` on the first SIGTERM or SIGINT: an apply in progress starts no
/// new host (hosts in a package transaction finish it), then the loop ends its in-flight
/// step and exits. A second signal exits at once (an operator insisting).
fn watch_signals(shutdown: Arc<AtomicBool>, stop: Arc<Stop>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered here, before the loop starts, so no early signal is missed.
    let (mut term, mut int) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    stop.interrupt();
                    if shutdown.swap(true, Ordering::SeqCst) {
                        tracing::warn!(signal = name, "second signal: exiting now");
                        std::process::exit(130);
                    }
                    tracing::info!(signal = name, "shutting down after the in-flight reconcile");
                }
            });
        })?;
    Ok(())
}
