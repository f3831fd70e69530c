//! `patchkeeper cluster status`: the replicas of a clustered `serve` (their last
//! heartbeat), the leader, and the hosts in a transaction, read from the NATS server.

use crate::cluster::{Cluster, JoinOptions};

/// `patchkeeper cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the replicas (last heartbeat), the leader and the hosts in a transaction.
    ///
    /// Reads the cluster's JetStream key-value buckets; changes nothing and contacts no
    /// host. Replicas whose heartbeat is older than the lease TTL have expired from the
    /// list.
    #[command(after_long_help = STATUS_HELP)]
    Status(StatusArgs),
}

const STATUS_HELP: &str = concat!(
    "Exit codes:\n  0  the status was read and printed\n  1  the NATS server cannot be reached, or no replica ever joined it (no buckets)\n",
    usage_exit!()
);

/// Flags of `patchkeeper cluster status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The NATS server the replicas use (`serve --cluster`), e.g. `nats://127.0.0.1:4222`.
    #[arg(long, value_name = "URL", env = "PATCHKEEPER_CLUSTER")]
    cluster: String,
    /// Print JSON (`ttlSeconds`, `leader`, `replicas`, `inFlight`) instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `cluster` subcommand; returns the exit code.
pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Status(args) => status(args),
    }
}

fn status(args: StatusArgs) -> u8 {
    let options = JoinOptions {
        ttl: None,
        read_only: true,
    };
    let view = match Cluster::connect(&args.cluster, &options).and_then(|c| c.view()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&view) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return super::EXIT_ERROR;
            }
        }
    } else {
        print!("{}", view.render(jiff::Timestamp::now()));
    }
    super::EXIT_OK
}
