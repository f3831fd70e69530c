//! The leader lease and the replica's heartbeat: a task on the cluster runtime that, every
//! TTL/3, renews the lease it holds (or tries to take it) and writes the replica's
//! heartbeat. [`Leader::is_leader`] is true only while the last take or renewal is within
//! its TTL (minus a margin), so a replica cut off from the server stops leading by itself
//! before another can take over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::lease::{self, Attempt, Held, LeaseRecord};
use super::{key_for, Cluster};
use crate::report::LeaderTerm;

/// A replica's heartbeat (the value of its key in the replicas bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The replica id.
    pub replica: String,
    /// Its process id.
    pub pid: u32,
    /// patchkeeper's version.
    pub version: String,
    /// When it joined.
    pub started: Timestamp,
    /// Whether it held the leader lease when it wrote this.
    pub leader: bool,
}

#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    /// Changes of leadership this replica saw (taken or lost), for waiters.
    changes: u64,
    /// The revision of the write that last took the lease (kept after losing it).
    term: Option<LeaderTerm>,
    /// The cluster's epoch (its leader bucket's creation), the first half of a term.
    epoch: u64,
    /// Renewals that failed (the server did not answer; not a lost lease).
    renewal_failures: u64,
}

/// The leader election of one replica; dropping it (or [`Leader::stop`]) releases the
/// lease.
pub struct Leader {
    replica: String,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("leading", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl Leader {
    /// Starts contending for the leader lease of `cluster` (and heartbeating).
    pub fn start(cluster: &Cluster) -> Leader {
        let state = Arc::new(Mutex::new(State {
            epoch: cluster.epoch(),
            ..State::default()
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let lease = cluster.leader_lease();
        let replicas = cluster.replicas_store().clone();
        let replica = cluster.replica().to_owned();
        let ttl = cluster.ttl();
        let task = cluster.runtime().spawn(contend(
            lease,
            replicas,
            replica,
            ttl,
            state.clone(),
            stopping.clone(),
            wake.clone(),
        ));
        Leader {
            replica: cluster.replica().to_owned(),
            state,
            stopping,
            wake,
            task: Mutex::new(Some(task)),
            runtime: cluster.runtime().clone(),
        }
    }

    /// Whether this replica holds the leader lease now (and may count on it).
    pub fn is_leader(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.held.is_some_and(|h| Instant::now() < h.valid_until)
    }

    /// This replica's leader term: the lease revision of its last take, kept after the
    /// lease is lost. Revisions only grow within the bucket, so a later take by any
    /// replica has a larger term; the reports branch is fenced by it (a deposed leader's
    /// late commit does not overwrite what a newer leader wrote).
    pub fn term(&self) -> Option<LeaderTerm> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).term
    }

    /// How many times this replica took or lost the lease.
    pub fn changes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).changes
    }

    /// Stops contending and releases the lease if held (a clean shutdown hands over at
    /// once instead of after the TTL).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            // The task releases the lease on its way out (bounded by the request timeout);
            // waited for only from synchronous code, where blocking is allowed.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = self.runtime.block_on(task);
            }
        }
    }

    /// Stops renewing without releasing the lease, as a crashed replica does: the lease
    /// expires after its TTL (fault tests use it).
    pub fn abandon(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
        self.state.lock().unwrap_or_else(|p| p.into_inner()).held = None;
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.stop();
    }
}

impl crate::reconcile::Leadership for Leader {
    fn is_leader(&self) -> bool {
        Leader::is_leader(self)
    }

    fn term(&self) -> Option<LeaderTerm> {
        Leader::term(self)
    }

    fn brief(&self) -> Option<crate::reconcile::ReplicaBrief> {
        let leading = self.is_leader();
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Some(crate::reconcile::ReplicaBrief {
            replica: self.replica.clone(),
            leading,
            term: s.term,
            changes: s.changes,
            renewal_failures: s.renewal_failures,
        })
    }
}

async fn contend(
    lease: lease::Lease,
    replicas: async_nats::jetstream::kv::Store,
    replica: String,
    ttl: Duration,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
) {
    let record = LeaseRecord {
        holder: replica.clone(),
        since: Timestamp::now(),
        purpose: Some("leader".into()),
    };
    let started = Timestamp::now();
    let every = lease::renew_every(ttl);
    let mut record = record;
    loop {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let held = state.lock().unwrap_or_else(|p| p.into_inner()).held;
        let attempt = match held {
            Some(h) => lease.renew(h, &record).await,
            None => {
                record.since = Timestamp::now();
                lease.take(&record).await
            }
        };
        let leading = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            match (attempt, held) {
                (Ok(Attempt::Held(h)), was) => {
                    if was.is_none() {
                        s.changes += 1;
                        s.term = Some(LeaderTerm {
                            epoch: s.epoch,
                            revision: h.revision,
                        });
                        tracing::info!(replica = %replica, ttl_seconds = ttl.as_secs_f64(), "took the leader lease: this replica leads");
                    }
                    s.held = Some(h);
                }
                (Ok(Attempt::Taken), Some(_)) => {
                    s.changes += 1;
                    s.held = None;
                    tracing::warn!(replica = %replica, "lost the leader lease (it expired and was taken, or expired): this replica stops leading");
                }
                (Ok(Attempt::Taken), None) => {}
                (Err(e), Some(h)) => {
                    // Kept: the next renewal names the same revision and succeeds if
                    // nobody took the lease meanwhile; `is_leader` turns false by itself
                    // once `valid_until` passes.
                    tracing::warn!(replica = %replica, "cannot renew the leader lease: {e}");
                    s.renewal_failures += 1;
                    if Instant::now() >= h.valid_until {
                        s.changes += 1;
                    }
                }
                (Err(e), None) => tracing::debug!("cannot take the leader lease: {e}"),
            }
            s.held.is_some_and(|h| Instant::now() < h.valid_until)
        };
        let beat = Heartbeat {
            replica: replica.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            started,
            leader: leading,
        };
        if let Ok(value) = serde_json::to_vec(&beat) {
            if let Err(e) = replicas.put(key_for(&replica), value.into()).await {
                tracing::debug!("cannot write the heartbeat: {e}");
            }
        }
        let _ = tokio::time::timeout(every, wake.notified()).await;
    }
    let held = state.lock().unwrap_or_else(|p| p.into_inner()).held.take();
    if let Some(h) = held {
        match lease.release(h).await {
            Ok(()) => tracing::info!(replica = %replica, "released the leader lease"),
            Err(e) => tracing::warn!("cannot release the leader lease (it expires by itself): {e}"),
        }
    }
    let _ = replicas.delete(key_for(&replica)).await;
}
