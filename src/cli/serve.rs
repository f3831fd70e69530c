//! `patchkeeper serve`: the reconcile loop (fetch, validate, observe, plan, apply when
//! Settings allow, report) until SIGTERM/SIGINT, or one round with `--once`; with
//! `--listen`, the HTTP API over the state the loop publishes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::apply::Stop;
use crate::pipeline::Pipeline;
use crate::reconcile::{AdvisoryFeed, EngineExecutor, EngineObserver, Reconciler, Round, Timing};
use crate::report::GitAuth;
use crate::service::{self, App, Rate};
use crate::source::{Location, Source};
use crate::status::Status;

/// Flags of `patchkeeper serve`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = concat!(
    "API: see docs/api.md; tokens are made with `patchkeeper token new`.\n\n",
    "Exit codes:\n  0  stopped by SIGTERM/SIGINT after the in-flight reconcile; with --once: the desired\n     commit validated and was reconciled and reported, every host observed, none failed\n  1  error: cannot start (an invalid --interval or --event-keep-alive, the listener or TLS\n     could not be set up, no async runtime or signal handlers); with --once: the round\n     failed (fetch, validation, another apply holding the fleet lock, or a step)\n",
    usage_exit!(),
    "\n  3  with --once: the round was reported, but some hosts could not be observed\n     (unreachable, or their observation failed; each is a WARN line)\n  4  with --once: the round's apply left some hosts failed (failed, rolled back, stale,\n     skipped, lost mid-way); takes precedence over 3\n  130  a second SIGTERM/SIGINT: exited at once (the next apply recovers hosts in flight)\n\nEach round ends with one `round done` log line: the commit, hosts observed, unreachable,\nchanged, failed and still pending, the run id, the report commit and the next round."
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
    /// commit validated and was reconciled and reported with every host observed and none
    /// failed; 3 when hosts could not be observed, 4 when the apply left hosts failed, 1
    /// when the round failed.
    #[arg(long, conflicts_with = "listen")]
    once: bool,
    /// Serve the HTTP API (`/api/v1`, `/metrics`, `/healthz`, `/readyz`) on this address,
    /// e.g. `127.0.0.1:8420`; plain HTTP unless --tls-cert and --tls-key are given.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for --listen.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "listen")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for --listen.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the API without reconciling: follow the desired commit and the reports
    /// branch, never contact a host or write a report (a read replica for dashboards).
    #[arg(long, requires = "listen")]
    api_only: bool,
    /// API requests per second allowed per token (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 20)]
    rate_limit: u32,
    /// API requests a token may make at once above --rate-limit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    rate_burst: u32,
    /// Send a keep-alive comment on idle event streams this often.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    event_keep_alive: String,
    /// Advisory data to re-import every Settings `advisories.refresh` (default 6h), besides
    /// the fleet repo's `advisories.sources`: a tracker dump, OSV files, directories or
    /// `all.zip` dumps, as paths or `https://` URLs (repeatable; the operator's choice,
    /// outside the fleet repo's say).
    #[arg(long = "advisories", value_name = "PATH|URL")]
    advisories: Vec<PathBuf>,
    /// A PEM file of certificate authorities to trust, besides the system's, when fetching
    /// `https://` advisory sources (a private mirror's CA; repeatable).
    #[arg(long = "advisory-ca", value_name = "FILE")]
    advisory_ca: Vec<PathBuf>,
    /// Give up on an advisory download after this long (`30s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    advisory_timeout: String,
    /// Refuse advisory downloads larger than this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    advisory_max_size: u64,
    /// The advisory store (default: `$PATCHKEEPER_ADVISORY_STORE`, else
    /// `<repo>/.patchkeeper/advisories.db` beside the apply journal).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
    /// Run as one replica of several sharing this fleet, coordinated by the NATS server
    /// (JetStream, 2.10 or later) at this URL, e.g. `nats://127.0.0.1:4222`: only the
    /// replica holding the leader lease reconciles, and a host's transaction is taken by
    /// one replica at a time (docs/scale-out.md). Without it, serve runs alone.
    #[arg(long, value_name = "URL", env = "PATCHKEEPER_CLUSTER", conflicts_with_all = ["once", "api_only"])]
    cluster: Option<String>,
    /// The lease TTL of a new cluster (`10s`, `30s`): how long a dead leader keeps the lead
    /// and a host lease outlives its replica; shorter than the reconcile interval.
    /// Default: the cluster's own (set by its first replica), else 30s.
    #[arg(long, value_name = "DURATION", requires = "cluster")]
    cluster_ttl: Option<String>,
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
    let keep_alive = match crate::duration::parse_duration(&args.event_keep_alive) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!(
                "error: invalid --event-keep-alive `{}`: must be a positive duration such as `15s`",
                args.event_keep_alive
            );
            return super::EXIT_ERROR;
        }
    };
    let fetch = match advisory_fetch(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    // The apply lock and journal live beside the repository serve reads from.
    let state_repo = source.repo_path();
    let stop = Arc::new(Stop::default());
    let pipeline = match Pipeline::new() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Status::default());
    let mut executor = EngineExecutor::new(pipeline.clone(), state_repo.clone(), stop.clone());
    // Stops this replica's work-queue worker when serve returns.
    let mut worker = None;
    let joined = match args
        .cluster
        .as_deref()
        .map(|url| join(url, &args, interval))
    {
        Some(Ok((cluster, leader))) => {
            let gate = crate::cluster::HostLeases::new(&cluster).only_while(leader.clone());
            executor = executor
                .with_gate(Arc::new(gate))
                .with_journal(Arc::new(cluster.journal()));
            let queue = match crate::cluster::WorkQueue::open(
                &cluster,
                crate::cluster::WorkConfig::default(),
            ) {
                Ok(q) => q,
                Err(e) => {
                    eprintln!("error: {e}");
                    return super::EXIT_ERROR;
                }
            };
            // Every replica observes hosts for the leader's rounds, and runs the hosts its
            // batches hand out: under the host's lease, whoever leads.
            worker = Some((
                queue.serve(
                    crate::reconcile::queue_desired(status.clone()),
                    crate::reconcile::queue_handler(status.clone(), pipeline.clone()),
                ),
                queue.serve_apply(
                    crate::reconcile::queue_desired(status.clone()),
                    crate::reconcile::apply_handler(
                        status.clone(),
                        pipeline.clone(),
                        state_repo.clone(),
                        Arc::new(crate::cluster::HostLeases::new(&cluster)),
                        Arc::new(cluster.journal()),
                    ),
                ),
            ));
            executor = executor.with_runner(Arc::new(crate::reconcile::QueueRunner::new(
                queue.clone(),
                leader.clone(),
            )));
            Some((cluster, leader, queue))
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
        None => None,
    };
    let mut observer = EngineObserver::new(pipeline.clone());
    if let Some((_, _, queue)) = &joined {
        observer = observer.with_queue(queue.clone());
    }
    let mut reconciler = Reconciler::new(
        source.clone(),
        observer,
        Timing::with_interval(interval),
        shutdown.clone(),
    )
    .with_executor(executor)
    .with_status(status.clone())
    .with_advisories(AdvisoryFeed {
        store: crate::advisory::fleet::store_path(&state_repo, args.store.as_deref()),
        extra: args.advisories.clone(),
        fetch,
    });
    if args.interval.is_none() {
        reconciler = reconciler.with_settings_interval();
    }
    if let Some((_, leader, _)) = &joined {
        reconciler = reconciler.with_leadership(leader.clone());
        status.set_leadership(leader.clone());
    }
    // Releases the leader lease on the way out (a clean stop hands over at once).
    let _leaving = Leaving(joined.map(|(cluster, leader, _)| (cluster, leader)));
    let _worker = worker;
    if args.api_only {
        reconciler = reconciler.watch_only();
    }
    if args.once {
        if let Err(e) = watch_signals(shutdown.clone(), stop, Box::new(|| {})) {
            eprintln!("error: cannot install signal handlers: {e}");
            return super::EXIT_ERROR;
        }
        reconciler.step(jiff::Timestamp::now);
        let s = &reconciler.state;
        let ok = s.fetch_failures == 0
            && s.failures == 0
            && s.rejected.is_none()
            && s.last_good.is_some();
        return match (ok, &reconciler.last_round) {
            (true, Some(round)) => once_exit(round),
            _ => super::EXIT_ERROR,
        };
    }
    // Alerts: evaluated and delivered on their own thread, from what the loop publishes.
    if let Err(e) = crate::alert::notifier::spawn(
        status.clone(),
        crate::alert::notifier::outbox_path(&state_repo),
        shutdown.clone(),
    ) {
        eprintln!("error: cannot start the alert notifier: {e}");
        return super::EXIT_ERROR;
    }
    let Some(listen) = args.listen else {
        if let Err(e) = watch_signals(shutdown.clone(), stop, Box::new(|| {})) {
            eprintln!("error: cannot install signal handlers: {e}");
            return super::EXIT_ERROR;
        }
        tracing::info!(repo = %crate::redact::text(&args.repo), "serving");
        reconciler.run();
        tracing::info!("shut down");
        return super::EXIT_OK;
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match service::tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("error: TLS: {e}");
                return super::EXIT_ERROR;
            }
        },
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return super::EXIT_ERROR;
        }
    };
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}\n\nhint: is another process using the port? `--listen 127.0.0.1:0` picks a free one");
            return super::EXIT_ERROR;
        }
    };
    let bound = service::local_addr(&listener).unwrap_or(listen);
    let config = service::Config {
        rate: Rate::per_second(args.rate_limit, args.rate_burst),
        keep_alive,
        reconciles: !args.api_only,
        secure_cookies: tls.is_some(),
        ..service::Config::default()
    };
    let intake = Arc::new(crate::request::Intake::new(source));
    let app = App::new(status.clone(), Some(intake), state_repo, config);
    let (http_stop, mut http_stopped) = tokio::sync::watch::channel(false);
    let on_signal = {
        let status = status.clone();
        Box::new(move || {
            http_stop.send_replace(true);
            status.wake();
        })
    };
    if let Err(e) = watch_signals(shutdown.clone(), stop, on_signal) {
        eprintln!("error: cannot install signal handlers: {e}");
        return super::EXIT_ERROR;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(repo = %crate::redact::text(&args.repo), address = %bound, "serving the API on {scheme}://{bound}");
    let looping = match std::thread::Builder::new()
        .name("reconcile".into())
        .spawn(move || reconciler.run())
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the reconcile loop: {e}");
            return super::EXIT_ERROR;
        }
    };
    let served = runtime.block_on(async {
        app.start_metrics();
        // A loop that dies (a bug) makes /healthz fail, so a supervisor restarts serve.
        let watcher = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || {
                if looping.join().is_err() {
                    tracing::error!("the reconcile loop panicked");
                    app.loop_died();
                }
            })
        };
        let stopped = async move {
            let _ = http_stopped.wait_for(|s| *s).await;
        };
        let served = service::serve(listener, tls, app, stopped).await;
        // The loop finishes its in-flight round (hosts in a transaction finish it).
        let _ = watcher.await;
        served
    });
    if let Err(e) = served {
        eprintln!("error: the API server failed: {e}");
        return super::EXIT_ERROR;
    }
    tracing::info!("shut down");
    super::EXIT_OK
}

/// Joins the cluster at `url`: connects, opens the buckets and starts contending for the
/// leader lease.
fn join(
    url: &str,
    args: &Args,
    interval: std::time::Duration,
) -> Result<(Arc<crate::cluster::Cluster>, Arc<crate::cluster::Leader>), String> {
    use crate::cluster::{Cluster, JoinOptions, Leader, MIN_TTL};
    let ttl = match args.cluster_ttl.as_deref() {
        None => None,
        Some(flag) => match crate::duration::parse_duration(flag) {
            Ok(d) if d >= MIN_TTL => Some(d),
            _ => {
                return Err(format!(
                "invalid --cluster-ttl `{flag}`: must be a duration of at least {}s, such as `30s`",
                MIN_TTL.as_secs()
            ))
            }
        },
    };
    let cluster = Cluster::connect(
        url,
        &JoinOptions {
            ttl,
            read_only: false,
        },
    )
    .map_err(|e| e.to_string())?;
    // A leader that dies must be replaced before its next round was due.
    if cluster.ttl() >= interval {
        return Err(format!(
            "the cluster's lease TTL ({}s) must be shorter than the reconcile interval ({}s): a dead leader would otherwise skip rounds\n\nhint: a longer --interval, or a new cluster with a shorter --cluster-ttl",
            cluster.ttl().as_secs(),
            interval.as_secs()
        ));
    }
    let cluster = Arc::new(cluster);
    let leader = Arc::new(Leader::start(&cluster));
    tracing::info!(
        cluster = %cluster.url(),
        replica = %cluster.replica(),
        ttl_seconds = cluster.ttl().as_secs(),
        "joined the cluster"
    );
    Ok((cluster, leader))
}

/// Stops contending for the leader lease (releasing it) when serve returns.
struct Leaving(Option<(Arc<crate::cluster::Cluster>, Arc<crate::cluster::Leader>)>);

impl Drop for Leaving {
    fn drop(&mut self) {
        if let Some((_, leader)) = &self.0 {
            leader.stop();
        }
    }
}

/// How advisory URLs are fetched, from the flags; every `--advisories` URL and
/// `--advisory-ca` file is checked here, so a mistake stops serve at start, not hours later.
fn advisory_fetch(args: &Args) -> Result<crate::advisory::remote::FetchOptions, String> {
    use crate::advisory::remote;
    let timeout = match crate::duration::parse_duration(&args.advisory_timeout) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return Err(format!(
                "invalid --advisory-timeout `{}`: must be a positive duration such as `5m`",
                args.advisory_timeout
            ))
        }
    };
    if args.advisory_max_size == 0 {
        return Err("invalid --advisory-max-size 0: must be at least 1 (MiB)".into());
    }
    for source in &args.advisories {
        if let Some(s) = source.to_str().filter(|s| remote::is_url(s)) {
            remote::check_url(s).map_err(|e| format!("--advisories: {e}"))?;
        }
    }
    let options = remote::FetchOptions {
        timeout,
        max_bytes: args.advisory_max_size.saturating_mul(1 << 20),
        ca: args.advisory_ca.clone(),
    };
    if !options.ca.is_empty() {
        remote::Fetcher::new(&options).map_err(|e| format!("--advisory-ca: {e}"))?;
    }
    Ok(options)
}

/// `serve --once`'s exit code for a round that ran to its report: hosts the apply left
/// failed come first (as `apply`'s 4), then hosts that could not be observed (as
/// `observe`'s 3).
fn once_exit(round: &Round) -> u8 {
    if !round.failed.is_empty() {
        super::apply::EXIT_NOT_CONVERGED
    } else if !round.unreachable.is_empty() {
        super::EXIT_HOSTS_FAILED
    } else {
        super::EXIT_OK
    }
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
fn watch_signals(
    shutdown: Arc<AtomicBool>,
    stop: Arc<Stop>,
    on_signal: Box<dyn Fn() + Send>,
) -> std::io::Result<()> {
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
                    on_signal();
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
