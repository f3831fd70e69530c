//! Per-host transaction leases: the [`crate::apply::HostGate`] of a clustered `serve`.
//! Before apply starts a host it takes the host's lease (a create: exclusive across
//! replicas), renews it every TTL/3 while the host's steps run (transaction, verify,
//! reboot, health checks), and releases it after verification. A host whose lease another
//! replica holds is not started (`skipped`, naming the holder); nor is any host once this
//! replica stops leading.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::lease::{self, Attempt, Held, Lease, LeaseRecord};
use super::Cluster;
use crate::apply::{GateFuture, HostGate, HostPass};
use crate::reconcile::Leadership;

/// The host leases of one replica.
pub struct HostLeases {
    runtime: tokio::runtime::Handle,
    make: Arc<dyn Fn(&str) -> Lease + Send + Sync>,
    replica: String,
    ttl: Duration,
    leadership: Option<Arc<dyn Leadership + Send + Sync>>,
}

impl std::fmt::Debug for HostLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLeases")
            .field("replica", &self.replica)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl HostLeases {
    /// The host leases of `cluster`, taken in this replica's name.
    pub fn new(cluster: &Arc<Cluster>) -> HostLeases {
        let c = cluster.clone();
        HostLeases {
            runtime: cluster.runtime().handle().clone(),
            make: Arc::new(move |host| c.host_lease(host)),
            replica: cluster.replica().to_owned(),
            ttl: cluster.ttl(),
            leadership: None,
        }
    }

    /// Starts no host unless `leadership` says this replica leads.
    pub fn only_while(mut self, leadership: Arc<dyn Leadership + Send + Sync>) -> HostLeases {
        self.leadership = Some(leadership);
        self
    }
}

impl HostGate for HostLeases {
    fn expiry(&self) -> Duration {
        self.ttl
    }

    fn enter(&self, host: &str, run: &str) -> GateFuture<Result<Box<dyn HostPass>, String>> {
        if let Some(l) = &self.leadership {
            if !l.is_leader() {
                return Box::pin(async {
                    Err("not started: this replica no longer holds the leader lease".to_owned())
                });
            }
        }
        let lease = (self.make)(host);
        let record = LeaseRecord {
            holder: self.replica.clone(),
            since: Timestamp::now(),
            purpose: Some(format!("apply {run}")),
        };
        let host = host.to_owned();
        let runtime = self.runtime.clone();
        let ttl = self.ttl;
        // Run on the cluster's runtime (where the connection lives), awaited from the
        // apply's runtime through the join handle.
        let taking = self.runtime.spawn(async move {
            match lease.take(&record).await {
                Ok(Attempt::Held(held)) => {
                    let held = Arc::new(Mutex::new(held));
                    let done = Arc::new(tokio::sync::Notify::new());
                    let renewing = runtime.spawn(renew(
                        lease.clone(),
                        held.clone(),
                        record,
                        host,
                        done.clone(),
                    ));
                    Ok(Box::new(Pass {
                        lease,
                        held,
                        done,
                        renewing,
                        runtime,
                    }) as Box<dyn HostPass>)
                }
                Ok(Attempt::Taken) => {
                    let holder = match lease.holder().await {
                        Ok(Some(h)) => format!(
                            "replica {} (since {}{})",
                            h.record.holder,
                            h.record.since,
                            h.record
                                .purpose
                                .map(|p| format!(", for {p}"))
                                .unwrap_or_default()
                        ),
                        _ => "another replica".to_owned(),
                    };
                    Err(format!(
                        "not started: {holder} holds this host's transaction lease; it is left to that replica (ttl {}s)",
                        ttl.as_secs()
                    ))
                }
                Err(e) => Err(format!(
                    "not started: cannot take this host's transaction lease: {e}"
                )),
            }
        });
        Box::pin(async move {
            taking
                .await
                .unwrap_or_else(|e| Err(format!("not started: the lease task failed: {e}")))
        })
    }
}

/// Renews a host lease every TTL/3 until `done` (between renewals, so the revision it
/// leaves in `held` is the last one written).
async fn renew(
    lease: Lease,
    held: Arc<Mutex<Held>>,
    record: LeaseRecord,
    host: String,
    done: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease::renew_every(lease.ttl())) => {}
            _ = done.notified() => return,
        }
        let current = *held.lock().unwrap_or_else(|p| p.into_inner());
        match lease.renew(current, &record).await {
            Ok(Attempt::Held(h)) => *held.lock().unwrap_or_else(|p| p.into_inner()) = h,
            Ok(Attempt::Taken) => {
                // Only after this replica could not renew for a whole TTL (cut off from the
                // server): the transaction already running cannot be stopped half-way.
                tracing::error!(host = %host, "lost the host's transaction lease while its transaction runs (this replica was cut off from the cluster for longer than the TTL)");
                return;
            }
            Err(e) => {
                tracing::warn!(host = %host, "cannot renew the host's transaction lease: {e}")
            }
        }
    }
}

/// A held host lease.
struct Pass {
    lease: Lease,
    held: Arc<Mutex<Held>>,
    done: Arc<tokio::sync::Notify>,
    renewing: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

impl HostPass for Pass {
    fn leave(self: Box<Self>) -> GateFuture<()> {
        // notify_one stores a permit: the loop sees it even when it is mid-renewal.
        self.done.notify_one();
        let (lease, held, renewing) = (self.lease, self.held, self.renewing);
        let releasing = self.runtime.spawn(async move {
            let _ = renewing.await;
            let held = *held.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = lease.release(held).await {
                tracing::warn!(
                    "cannot release a host's transaction lease (it expires by itself): {e}"
                );
            }
        });
        Box::pin(async move {
            let _ = releasing.await;
        })
    }
}
