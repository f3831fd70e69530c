//! Scale-out of `serve` (issue 19): several replicas share one fleet, coordinated by NATS
//! JetStream key-value buckets — never by a home-made protocol.
//!
//! - [`lease`]: a lease in a KV bucket whose `max_age` is the lease's TTL. Taking it is a
//!   create (only when the key is absent, deleted, or expired); renewing it is an update
//!   that names the revision the holder last wrote, so a holder whose lease expired and was
//!   taken learns it on its next renewal. Expiry is the server's clock, not the replicas'.
//! - [`leader`]: the leader lease (one key in `patchkeeper_leader`), held and renewed by a
//!   task every TTL/3, and the replica's heartbeat in `patchkeeper_replicas`. Only the
//!   leader runs the reconcile round (`reconcile::Leadership`).
//! - [`hosts`]: one lease per host in `patchkeeper_hosts`, taken before any package
//!   transaction on the host and released after its verification
//!   (`apply::HostGate`), so two replicas never patch one host at once.
//! - [`journal`]: the apply journal of every replica in one JetStream stream
//!   (`apply::journal::Shared`), so another replica recovers a host whose replica died
//!   mid-transaction.
//! - [`view`]: `patchkeeper cluster status` (replicas, leader, in-flight hosts), pure.
//! - [`work`]: per-host work items on a JetStream work-queue stream, taken by every
//!   replica's worker, their results gathered by the leader (the round's observation).
//! - [`connections`]: the hosts one replica's worker observes at once, across its batches
//!   (the fleet's `observe.parallel`).
//!
//! The connection runs on the cluster's own small runtime, so the synchronous reconcile
//! loop and the pipeline's runtime can both use it. Knows nothing of plans or SSH.

pub mod connections;
pub mod hosts;
pub mod journal;
pub mod leader;
pub mod lease;
pub mod view;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

pub use connections::ConnectionBudget;
pub use hosts::HostLeases;
pub use journal::ClusterJournal;
pub use leader::Leader;
pub use lease::{Lease, LeaseRecord};
pub use view::ClusterView;
pub use work::{WorkConfig, WorkQueue};

/// The bucket of the leader lease (one key, [`LEADER_KEY`]).
pub const LEADER_BUCKET: &str = "patchkeeper_leader";
/// The key of the leader lease.
pub const LEADER_KEY: &str = "leader";
/// The bucket of the replicas' heartbeats (one key per replica id).
pub const REPLICAS_BUCKET: &str = "patchkeeper_replicas";
/// The bucket of the per-host transaction leases (one key per host).
pub const HOSTS_BUCKET: &str = "patchkeeper_hosts";
/// The lease TTL when the buckets are made by this replica and `--cluster-ttl` is unset.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The shortest TTL accepted: renewals every TTL/3 must fit round trips to the server.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// Errors of the cluster connection.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster URL is not a NATS URL.
    #[error("invalid cluster URL `{url}`: {why}")]
    Url {
        /// The URL as given (credentials redacted).
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The cluster's runtime could not start.
    #[error("cannot start the cluster runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The server could not be reached.
    #[error("cannot connect to the NATS server at {url}: {source}")]
    Connect {
        /// The URL (credentials redacted).
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A bucket could not be opened or made.
    #[error("JetStream key-value bucket {bucket}: {why} (is JetStream enabled on the server (`-js`), version 2.10 or later?)")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// Why.
        why: String,
    },
    /// A bucket exists with a TTL that differs from the one asked for.
    #[error("bucket {bucket} has a TTL of {found:?}, not the {wanted:?} asked for: every replica uses the cluster's TTL (omit --cluster-ttl, or delete the buckets when no replica runs)")]
    TtlMismatch {
        /// The bucket.
        bucket: String,
        /// Its `max_age`.
        found: Duration,
        /// `--cluster-ttl`.
        wanted: Duration,
    },
    /// The journal stream could not be opened or made.
    #[error("JetStream stream {stream}: {why} (is JetStream enabled on the server (`-js`)?)")]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        why: String,
    },
    /// A key-value operation failed (the server is unreachable, timed out, ...).
    #[error("{op} {bucket}/{key}: {why}")]
    Kv {
        /// What was attempted.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
}

/// A replica's connection to the cluster: the NATS client, its three buckets and the
/// runtime it runs on.
pub struct Cluster {
    runtime: Arc<tokio::runtime::Runtime>,
    url: String,
    ttl: Duration,
    replica: String,
    /// When the leader bucket was made (Unix seconds, the server's clock).
    epoch: u64,
    leader: kv::Store,
    replicas: kv::Store,
    hosts: kv::Store,
    journal: jetstream::Context,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .field("ttl", &self.ttl)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// How to join a cluster.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The lease TTL for buckets this replica makes; `None`: the buckets' own (or
    /// [`DEFAULT_TTL`] when it makes them). Existing buckets with another TTL are an error.
    pub ttl: Option<Duration>,
    /// Only read: never make a bucket (`cluster status`).
    pub read_only: bool,
}

impl Cluster {
    /// Connects to the NATS server at `url` and opens (or makes) the buckets. Must not be
    /// called from async code (it runs its own runtime).
    pub fn connect(url: &str, options: &JoinOptions) -> Result<Cluster, ClusterError> {
        check_url(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cluster")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let shown = crate::redact::text(url).into_owned();
        let replica = replica_id();
        let (ttl, epoch, leader, replicas, hosts, journal) = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .name(format!("patchkeeper {replica}"))
                .connection_timeout(Duration::from_secs(5))
                // Reconnects forever: a restarted server is rejoined (leases are renewed
                // again once it answers; the leader lease may have changed hands).
                .max_reconnects(None)
                .connect(url)
                .await
                .map_err(|source| ClusterError::Connect {
                    url: shown.clone(),
                    source,
                })?;
            let mut js = jetstream::new(client);
            let probe = open(&js, LEADER_BUCKET, options).await?;
            let ttl = match (&probe, options.ttl) {
                (Some(store), Some(wanted)) => {
                    let found = max_age(store).await?;
                    if found != wanted {
                        return Err(ClusterError::TtlMismatch {
                            bucket: LEADER_BUCKET.into(),
                            found,
                            wanted,
                        });
                    }
                    found
                }
                (Some(store), None) => max_age(store).await?,
                (None, wanted) => wanted.unwrap_or(DEFAULT_TTL),
            };
            // A request that outlives a third of the TTL cannot renew a lease in time.
            js.set_timeout((ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(5)));
            let leader = match probe {
                Some(s) => s,
                None => make(&js, LEADER_BUCKET, ttl, options).await?,
            };
            let epoch = created(&leader).await?;
            let replicas = open_or_make(&js, REPLICAS_BUCKET, ttl, options).await?;
            let hosts = open_or_make(&js, HOSTS_BUCKET, ttl, options).await?;
            // Journal lines are not leases: an append may wait out a server restart.
            let mut journal = js.clone();
            journal.set_timeout(journal::APPEND_TIMEOUT);
            if !options.read_only {
                journal::open_stream(&journal)
                    .await
                    .map_err(|why| ClusterError::Stream {
                        stream: journal::JOURNAL_STREAM.into(),
                        why,
                    })?;
            }
            Ok::<_, ClusterError>((ttl, epoch, leader, replicas, hosts, journal))
        })?;
        Ok(Cluster {
            runtime: Arc::new(runtime),
            url: shown,
            ttl,
            replica,
            epoch,
            leader,
            replicas,
            hosts,
            journal,
        })
    }

    /// The cluster's epoch: when its leader bucket was made (Unix seconds), so that the
    /// terms of a server rebuilt from nothing (revisions start again) still order after
    /// the old ones ([`crate::report::LeaderTerm`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The lease TTL (the buckets' `max_age`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// This replica's id (`HOSTNAME-PID-RANDOM`).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The server URL (credentials redacted).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The runtime the connection runs on.
    pub fn runtime(&self) -> &Arc<tokio::runtime::Runtime> {
        &self.runtime
    }

    /// The leader lease.
    pub fn leader_lease(&self) -> Lease {
        Lease::new(self.leader.clone(), LEADER_BUCKET, LEADER_KEY, self.ttl)
    }

    /// The transaction lease of `host`.
    pub fn host_lease(&self, host: &str) -> Lease {
        Lease::new(self.hosts.clone(), HOSTS_BUCKET, &key_for(host), self.ttl)
    }

    /// The apply journal every replica appends to and recovers from.
    pub fn journal(&self) -> ClusterJournal {
        ClusterJournal::new(self.runtime.handle().clone(), self.journal.clone())
    }

    /// A JetStream context on the cluster's connection (requests wait up to 10 s, through
    /// a reconnect).
    pub(crate) fn jetstream(&self) -> jetstream::Context {
        self.journal.clone()
    }

    /// The replicas bucket (heartbeats).
    pub(crate) fn replicas_store(&self) -> &kv::Store {
        &self.replicas
    }

    /// Reads what `cluster status` shows: replicas, the leader, hosts in a transaction, and
    /// hosts the journal shows left in flight.
    pub fn view(&self) -> Result<ClusterView, ClusterError> {
        self.runtime.block_on(async {
            let mut view = view::read(&self.leader, &self.replicas, &self.hosts, self.ttl).await?;
            view.unfinished = journal::unfinished(&self.journal)
                .await?
                .into_iter()
                .map(|f| view::UnfinishedView {
                    host: f.host,
                    run: f.run,
                    last_step: f.last_event,
                    at: f.at,
                    in_transaction: f.in_transaction,
                })
                .collect();
            view.queue = work::depths(&self.journal).await?;
            Ok(view)
        })
    }
}

/// Refuses what is not a NATS URL before connecting, with the accepted forms.
fn check_url(url: &str) -> Result<(), ClusterError> {
    let bad = |why: &str| ClusterError::Url {
        url: crate::redact::text(url).into_owned(),
        why: why.into(),
    };
    for one in url.split(',') {
        let parsed = url::Url::parse(one.trim())
            .map_err(|e| bad(&format!("{e} (expected nats://HOST:PORT)")))?;
        if !matches!(parsed.scheme(), "nats" | "tls") {
            return Err(bad(&format!(
                "scheme `{}` is not `nats` or `tls` (expected nats://HOST:PORT)",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host (expected nats://HOST:PORT)"));
        }
    }
    Ok(())
}

async fn open(
    js: &jetstream::Context,
    bucket: &str,
    options: &JoinOptions,
) -> Result<Option<kv::Store>, ClusterError> {
    match js.get_key_value(bucket).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), jetstream::context::KeyValueErrorKind::GetBucket) => {
            if options.read_only {
                Err(ClusterError::Bucket {
                    bucket: bucket.into(),
                    why: format!("not found ({e}): has no replica joined this cluster yet?"),
                })
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(ClusterError::Bucket {
            bucket: bucket.into(),
            why: e.to_string(),
        }),
    }
}

async fn make(
    js: &jetstream::Context,
    bucket: &str,
    ttl: Duration,
    options: &JoinOptions,
) -> Result<kv::Store, ClusterError> {
    let made = js
        .create_key_value(kv::Config {
            bucket: bucket.into(),
            description: "patchkeeper serve --cluster (docs/scale-out.md)".into(),
            history: 1,
            max_age: ttl,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await;
    match made {
        Ok(s) => Ok(s),
        // Another replica made it meanwhile: use theirs (its TTL is checked by the caller
        // for the leader bucket; the others are made with the same).
        Err(_) => match open(js, bucket, options).await? {
            Some(s) => Ok(s),
            None => Err(ClusterError::Bucket {
                bucket: bucket.into(),
                why: "cannot be made".into(),
            }),
        },
    }
}

async fn open_or_make(
    js: &jetstream::Context,
    bucket: &str,
    ttl: Duration,
    options: &JoinOptions,
) -> Result<kv::Store, ClusterError> {
    match open(js, bucket, options).await? {
        Some(s) => Ok(s),
        None => make(js, bucket, ttl, options).await,
    }
}

async fn max_age(store: &kv::Store) -> Result<Duration, ClusterError> {
    let status = store.status().await.map_err(|e| ClusterError::Bucket {
        bucket: LEADER_BUCKET.into(),
        why: e.to_string(),
    })?;
    Ok(status.max_age())
}

/// The stream `name`, `None` when no replica made it yet (a reader does not make it).
pub(crate) async fn existing_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, String> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn created(store: &kv::Store) -> Result<u64, ClusterError> {
    let status = store.status().await.map_err(|e| ClusterError::Bucket {
        bucket: LEADER_BUCKET.into(),
        why: e.to_string(),
    })?;
    // A creation before 1970 is not a time a server reports; 0 keeps it first.
    Ok(u64::try_from(status.info.created.unix_timestamp()).unwrap_or(0))
}

/// This replica's id: host name, pid and 4 random bytes (a restarted replica is a new one).
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut bytes = [0u8; 4];
    // Without randomness the pid still tells replicas on one machine apart.
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let host = if host.is_empty() {
        "replica".into()
    } else {
        host
    };
    format!("{}-{}-{suffix}", key_for(&host), std::process::id())
}

/// A KV key for any name: letters, digits, `-` and `_` as they are, every other byte as
/// `=XX` (KV keys allow only `[-/_=.a-zA-Z0-9]`, and `.` splits subjects). Reversible.
pub fn key_for(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("={b:02X}"));
        }
    }
    if key.is_empty() {
        key.push_str("=00");
    }
    key
}

/// The name a [`key_for`] key stands for (`None` if it is not one).
pub fn name_for(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    let mut it = key.bytes();
    while let Some(b) = it.next() {
        if b == b'=' {
            let hex = [it.next()?, it.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    if bytes == [0] {
        return Some(String::new());
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_any_host_name() {
        for name in [
            "web-1",
            "db_2",
            "web.example.com",
            "ünïcode",
            "a=b",
            "",
            "x y/z",
        ] {
            let key = key_for(name);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=')),
                "{key}"
            );
            assert_eq!(name_for(&key).as_deref(), Some(name), "{key}");
        }
        assert_eq!(key_for("web-1"), "web-1");
        assert_eq!(key_for("a.b"), "a=2Eb");
    }

    #[test]
    fn urls_that_are_not_nats_are_refused_before_connecting() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("nats://a:4222,nats://b:4222").is_ok());
        for bad in ["http://x:4222", "127.0.0.1:4222", "nats://", "nats://:4222"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
