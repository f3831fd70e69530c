//! What `patchkeeper cluster status` shows: the replicas with their last heartbeat, the
//! leader, the hosts in a transaction (their leases), and the hosts the journal stream shows
//! left in flight. Read from the buckets and the stream; rendered by pure functions.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use super::leader::Heartbeat;
use super::lease::{holder_of, server_time};
use super::{name_for, ClusterError, LEADER_BUCKET, LEADER_KEY};

/// The cluster as its buckets say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The lease TTL in seconds (heartbeats and leases expire after it).
    pub ttl_seconds: u64,
    /// The leader (`None`: no replica holds the lease now).
    pub leader: Option<LeaseView>,
    /// Replicas whose heartbeat is younger than the TTL, by id.
    pub replicas: Vec<ReplicaView>,
    /// Hosts in a transaction: their leases, by host.
    pub in_flight: Vec<HostView>,
    /// Hosts some replica's run started and never finished, per the journal stream (a
    /// replica died mid-transaction, or one is running now): the leader recovers them.
    pub unfinished: Vec<UnfinishedView>,
    /// The work queue's depths (`None`: no replica opened it yet).
    pub queue: Option<QueueView>,
}

/// How many work items wait, are held, or came back (docs/scale-out.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// Items no replica has taken yet.
    pub waiting: u64,
    /// Items a replica holds: taken, not yet acknowledged.
    pub in_progress: u64,
    /// Items delivered more than once (their replica died, failed on them, or did not
    /// have the desired state yet) and not yet acknowledged.
    pub redelivered: u64,
}

/// A host the journal shows started and never finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnfinishedView {
    /// The inventory name.
    pub host: String,
    /// The run that left it.
    pub run: String,
    /// Its last journaled step.
    pub last_step: String,
    /// When (RFC 3339).
    pub at: String,
    /// A package transaction was sent and never returned.
    pub in_transaction: bool,
}

/// A lease's holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    /// The replica holding it.
    pub replica: String,
    /// When it took it.
    pub since: Timestamp,
    /// When it last renewed it (the server's clock).
    pub renewed: Timestamp,
}

/// A replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// Its id.
    pub replica: String,
    /// Its process id.
    pub pid: u32,
    /// Its patchkeeper version.
    pub version: String,
    /// When it joined.
    pub started: Timestamp,
    /// Its last heartbeat (the server's clock).
    pub heartbeat: Timestamp,
    /// Whether it leads (it holds the leader lease now).
    pub leader: bool,
}

/// A host in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    /// The inventory name.
    pub host: String,
    /// The replica running its transaction.
    pub replica: String,
    /// Since when.
    pub since: Timestamp,
    /// What for (the apply run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The last renewal (the server's clock).
    pub renewed: Timestamp,
}

fn kv_error(bucket: &str, op: &'static str, why: impl std::fmt::Display) -> ClusterError {
    ClusterError::Kv {
        op,
        bucket: bucket.into(),
        key: "*".into(),
        why: why.to_string(),
    }
}

/// Every live entry of `store`.
async fn entries(store: &kv::Store, bucket: &str) -> Result<Vec<kv::Entry>, ClusterError> {
    let mut keys = store
        .keys()
        .await
        .map_err(|e| kv_error(bucket, "list", e))?;
    let mut names = Vec::new();
    while let Some(k) = keys.next().await {
        names.push(k.map_err(|e| kv_error(bucket, "list", e))?);
    }
    let mut out = Vec::new();
    for k in names {
        // Gone between the listing and the read (expired, released): not live.
        if let Some(e) = store
            .entry(k.as_str())
            .await
            .map_err(|e| kv_error(bucket, "read", e))?
        {
            if matches!(e.operation, kv::Operation::Put) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Reads the three buckets.
pub(crate) async fn read(
    leader: &kv::Store,
    replicas: &kv::Store,
    hosts: &kv::Store,
    ttl: Duration,
) -> Result<ClusterView, ClusterError> {
    let leader = leader
        .entry(LEADER_KEY)
        .await
        .map_err(|e| kv_error(LEADER_BUCKET, "read", e))?
        .and_then(holder_of)
        .map(|h| LeaseView {
            replica: h.record.holder,
            since: h.record.since,
            renewed: h.written,
        });
    let mut replica_views = Vec::new();
    for e in entries(replicas, super::REPLICAS_BUCKET).await? {
        let heartbeat = server_time(&e);
        if let Ok(b) = serde_json::from_slice::<Heartbeat>(&e.value) {
            replica_views.push(ReplicaView {
                leader: leader.as_ref().is_some_and(|l| l.replica == b.replica),
                replica: b.replica,
                pid: b.pid,
                version: b.version,
                started: b.started,
                heartbeat,
            });
        }
    }
    let mut in_flight = Vec::new();
    for e in entries(hosts, super::HOSTS_BUCKET).await? {
        let host = name_for(&e.key).unwrap_or_else(|| e.key.clone());
        if let Some(h) = holder_of(e) {
            in_flight.push(HostView {
                host,
                replica: h.record.holder,
                since: h.record.since,
                purpose: h.record.purpose,
                renewed: h.written,
            });
        }
    }
    replica_views.sort_by(|a, b| a.replica.cmp(&b.replica));
    in_flight.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(ClusterView {
        ttl_seconds: ttl.as_secs(),
        leader,
        replicas: replica_views,
        in_flight,
        unfinished: Vec::new(),
        queue: None,
    })
}

/// Seconds from `then` to `now`, never negative (clocks of replicas and server differ).
fn age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.duration_since(then).as_secs_f64().max(0.0);
    format!("{secs:.0}s ago")
}

impl ClusterView {
    /// The human rendering (`cluster status`), ages counted from `now`.
    pub fn render(&self, now: Timestamp) -> String {
        use std::fmt::Write;
        let esc = crate::terminal::escape;
        let mut out = String::new();
        let _ = writeln!(out, "lease TTL: {}s", self.ttl_seconds);
        match &self.leader {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "leader:    {} (since {}, renewed {})",
                    esc(&l.replica),
                    l.since,
                    age(now, l.renewed)
                );
            }
            None => {
                let _ = writeln!(out, "leader:    none (no replica holds the lease)");
            }
        }
        let _ = writeln!(out, "\nreplicas ({}):", self.replicas.len());
        if self.replicas.is_empty() {
            let _ = writeln!(out, "  none (no heartbeat within the TTL)");
        }
        for r in &self.replicas {
            let _ = writeln!(
                out,
                "  {}{}  pid {}  v{}  heartbeat {}",
                esc(&r.replica),
                if r.leader { " (leader)" } else { "" },
                r.pid,
                esc(&r.version),
                age(now, r.heartbeat)
            );
        }
        let _ = writeln!(out, "\nin-flight hosts ({}):", self.in_flight.len());
        if self.in_flight.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for h in &self.in_flight {
            let _ = writeln!(
                out,
                "  {}  by {}  since {}{}  renewed {}",
                esc(&h.host),
                esc(&h.replica),
                h.since,
                h.purpose
                    .as_deref()
                    .map(|p| format!(" ({})", esc(p)))
                    .unwrap_or_default(),
                age(now, h.renewed)
            );
        }
        let _ = writeln!(
            out,
            "\nunfinished in the journal ({}):",
            self.unfinished.len()
        );
        if self.unfinished.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for u in &self.unfinished {
            let _ = writeln!(
                out,
                "  {}  run {}  last step {} at {}{}",
                esc(&u.host),
                esc(&u.run),
                esc(&u.last_step),
                esc(&u.at),
                if u.in_transaction {
                    "  (in its package transaction)"
                } else {
                    ""
                }
            );
        }
        match &self.queue {
            Some(q) => {
                let _ = writeln!(
                    out,
                    "\nwork queue: {} waiting, {} in progress, {} redelivered",
                    q.waiting, q.in_progress, q.redelivered
                );
            }
            None => {
                let _ = writeln!(out, "\nwork queue: not opened yet (no replica serves)");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn the_rendering_names_the_leader_replicas_and_hosts_in_flight() {
        let view = ClusterView {
            ttl_seconds: 30,
            leader: Some(LeaseView {
                replica: "a-1-00".into(),
                since: at(0),
                renewed: at(50),
            }),
            replicas: vec![
                ReplicaView {
                    replica: "a-1-00".into(),
                    pid: 1,
                    version: "0.1.0".into(),
                    started: at(0),
                    heartbeat: at(55),
                    leader: true,
                },
                ReplicaView {
                    replica: "b-2-00".into(),
                    pid: 2,
                    version: "0.1.0".into(),
                    started: at(0),
                    heartbeat: at(58),
                    leader: false,
                },
            ],
            in_flight: vec![HostView {
                host: "web-1".into(),
                replica: "a-1-00".into(),
                since: at(40),
                purpose: Some("apply run-1".into()),
                renewed: at(52),
            }],
            unfinished: vec![UnfinishedView {
                host: "web-2".into(),
                run: "run-0".into(),
                last_step: "transaction-started".into(),
                at: "2027-01-15T08:00:00Z".into(),
                in_transaction: true,
            }],
            queue: Some(QueueView {
                waiting: 40,
                in_progress: 64,
                redelivered: 2,
            }),
        };
        let text = view.render(at(60));
        assert!(
            text.contains("work queue: 40 waiting, 64 in progress, 2 redelivered"),
            "{text}"
        );
        assert!(text.contains("leader:    a-1-00"), "{text}");
        assert!(text.contains("renewed 10s ago"), "{text}");
        assert!(text.contains("a-1-00 (leader)  pid 1"), "{text}");
        assert!(
            text.contains("b-2-00  pid 2  v0.1.0  heartbeat 2s ago"),
            "{text}"
        );
        assert!(text.contains("web-1  by a-1-00"), "{text}");
        assert!(
            text.contains("web-2  run run-0  last step transaction-started at 2027-01-15T08:00:00Z  (in its package transaction)"),
            "{text}"
        );
        let none = ClusterView {
            ttl_seconds: 30,
            leader: None,
            replicas: vec![],
            in_flight: vec![],
            unfinished: vec![],
            queue: None,
        };
        let text = none.render(at(0));
        assert!(text.contains("work queue: not opened yet"), "{text}");
        assert!(text.contains("leader:    none"), "{text}");
        assert!(text.contains("in-flight hosts (0):\n  none"), "{text}");
        assert!(
            text.contains("unfinished in the journal (0):\n  none"),
            "{text}"
        );
    }
}
