//! A lease in a JetStream KV bucket whose `max_age` is the TTL.
//!
//! - Take: `create` — succeeds only when the key has no live value (never written, deleted,
//!   or expired by the server after a TTL without renewal). Two contenders: one create
//!   wins, the other gets "already exists".
//! - Renew: `update` naming the revision the holder last wrote. If the lease expired and
//!   someone else took it (or it expired and nobody did), the revision no longer matches and
//!   the holder learns it lost the lease.
//! - Release: a delete that names the holder's revision (never deletes another's lease).
//!
//! The holder counts its lease valid until the instant *before* it sent the write that
//! took or renewed it plus the TTL (minus a margin): the server's expiry starts when it
//! stores the write, later than that, so the holder stops believing first.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ClusterError;

/// What a lease's value says (JSON), for people and `cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// The replica holding it.
    pub holder: String,
    /// When the holder took it (its clock).
    pub since: Timestamp,
    /// What it is held for (the apply run, for a host lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// A lease held: the revision the holder last wrote and until when it may count on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The revision of the holder's last write.
    pub revision: u64,
    /// The holder stops counting on the lease at this instant unless it renews it.
    pub valid_until: Instant,
}

/// Who holds a lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The record (a value that is not one is shown as its holder `?`).
    pub record: LeaseRecord,
    /// The revision.
    pub revision: u64,
    /// When the server stored the last write (take or renewal).
    pub written: Timestamp,
}

/// The outcome of a take or a renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease.
    Held(Held),
    /// Someone else holds it (or, for a renewal, the lease expired: it is lost).
    Taken,
}

/// One lease: a key in a bucket, with the bucket's TTL.
#[derive(Clone)]
pub struct Lease {
    store: kv::Store,
    bucket: &'static str,
    key: String,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// How long before the TTL's end a holder stops counting on its lease: a tenth of the
/// TTL, at least 100 ms (clock-rate differences, scheduling delays).
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(100)).min(ttl / 2)
}

/// How often a holder renews: a third of the TTL, so two renewals may fail (a slow
/// server, a reconnect) before the lease expires.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

impl Lease {
    /// The lease `key` of `store` (the bucket's `max_age` is `ttl`).
    pub fn new(store: kv::Store, bucket: &'static str, key: &str, ttl: Duration) -> Lease {
        Lease {
            store,
            bucket,
            key: key.to_owned(),
            ttl,
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn error(&self, op: &'static str, why: impl std::fmt::Display) -> ClusterError {
        ClusterError::Kv {
            op,
            bucket: self.bucket.into(),
            key: self.key.clone(),
            why: why.to_string(),
        }
    }

    fn held(&self, revision: u64, sent: Instant) -> Held {
        Held {
            revision,
            valid_until: sent + self.ttl.saturating_sub(margin(self.ttl)),
        }
    }

    /// Takes the lease if nobody holds it.
    pub async fn take(&self, record: &LeaseRecord) -> Result<Attempt, ClusterError> {
        let value = serde_json::to_vec(record).map_err(|e| self.error("take", e))?;
        let sent = Instant::now();
        match self.store.create(&self.key, value.into()).await {
            Ok(revision) => Ok(Attempt::Held(self.held(revision, sent))),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Attempt::Taken),
            Err(e) => Err(self.error("take", e)),
        }
    }

    /// Renews a lease this replica holds at `held.revision`; [`Attempt::Taken`]: lost.
    pub async fn renew(&self, held: Held, record: &LeaseRecord) -> Result<Attempt, ClusterError> {
        let value = serde_json::to_vec(record).map_err(|e| self.error("renew", e))?;
        let sent = Instant::now();
        match self
            .store
            .update(&self.key, value.into(), held.revision)
            .await
        {
            Ok(revision) => Ok(Attempt::Held(self.held(revision, sent))),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Attempt::Taken),
            Err(e) => Err(self.error("renew", e)),
        }
    }

    /// Releases a lease held at `held.revision`; a lease already lost is left to its new
    /// holder (the delete names the revision).
    pub async fn release(&self, held: Held) -> Result<(), ClusterError> {
        match self
            .store
            .delete_expect_revision(&self.key, Some(held.revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(self.error("release", e)),
        }
    }

    /// Who holds the lease now (`None`: nobody).
    pub async fn holder(&self) -> Result<Option<Holder>, ClusterError> {
        let entry = self
            .store
            .entry(&self.key)
            .await
            .map_err(|e| self.error("read", e))?;
        Ok(entry.and_then(holder_of))
    }
}

/// The holder an entry names; `None` for a delete or purge marker.
pub(crate) fn holder_of(entry: kv::Entry) -> Option<Holder> {
    if !matches!(entry.operation, kv::Operation::Put) {
        return None;
    }
    let record = serde_json::from_slice(&entry.value).unwrap_or_else(|_| LeaseRecord {
        holder: "?".into(),
        since: Timestamp::UNIX_EPOCH,
        purpose: Some(String::from_utf8_lossy(&entry.value).into_owned()),
    });
    Some(Holder {
        record,
        revision: entry.revision,
        written: server_time(&entry),
    })
}

/// When the server stored an entry.
pub(crate) fn server_time(entry: &kv::Entry) -> Timestamp {
    let nanos = entry.created.unix_timestamp_nanos();
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_stops_counting_on_its_lease_before_the_server_expires_it() {
        for ttl in [1, 3, 30, 300].map(Duration::from_secs) {
            let m = margin(ttl);
            assert!(m > Duration::ZERO && m <= ttl / 2, "{ttl:?}: {m:?}");
            // Two renewals may fail before the lease ends.
            assert!(renew_every(ttl) * 2 < ttl - m, "{ttl:?}");
        }
    }
}
