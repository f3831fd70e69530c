//! What the reconcile loop (and the patch-request intake) tell the outside world, as a
//! journal of events with increasing ids in a bounded ring buffer, plus a broadcast to live
//! subscribers.
//!
//! Guarantees, for a subscriber that resumes after id `n` ([`EventLog::subscribe`]): it gets
//! every event with an id above `n` exactly once and in order, as long as those events are
//! still in the buffer; when they are not (or `n` is not an id of this journal), the
//! subscription says so (`gap`) and the subscriber resynchronizes from current state. The
//! snapshot and the live subscription are taken under one lock, which publishing also takes,
//! so no event falls between them.
//!
//! Ids start at the microsecond the journal was created and grow by one per event, so they
//! keep growing across restarts of `serve` and an id from an earlier process is recognized
//! as older than anything buffered. Knows nothing of HTTP: the service layer turns events
//! into server-sent events.
//!
//! New kinds of event (vulnerability findings, alerts) are added as new [`EventData`]
//! variants: subscribers must ignore types they do not know.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::broadcast;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increasing id (the SSE `id:`).
    pub id: u64,
    /// When it happened.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// What happened; `type` names it.
    #[serde(flatten)]
    pub data: EventData,
}

impl Event {
    /// The event's type name (`reconcile-started`, ...), the SSE `event:` field.
    pub fn kind(&self) -> &'static str {
        self.data.kind()
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum EventData {
    /// A reconcile started.
    ReconcileStarted {
        /// The desired commit.
        commit: String,
        /// Why: `new-commit`, `interval`, `manual` or `retry`.
        reason: String,
    },
    /// A host was observed (or could not be).
    HostObserved {
        /// Host name.
        host: String,
        /// Whether it was reached.
        reachable: bool,
        /// Pending updates.
        updates: usize,
        /// Pending security updates.
        security_updates: usize,
        /// Why it could not be observed: the failure's kind (`refused`, `timeout`, ...).
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// The plan of this reconcile is ready (`GET /api/v1/plan` serves it).
    PlanReady {
        /// The desired commit it was made from.
        commit: String,
        /// Hosts with changes.
        hosts_to_update: usize,
        /// Package changes in total.
        changes: usize,
        /// Hosts blocked.
        blocked: usize,
    },
    /// A batch of an apply started.
    BatchStarted {
        /// 0-based batch index in the plan.
        index: usize,
        /// The rollout.
        rollout: String,
        /// The stage.
        stage: String,
        /// Hosts started in it.
        hosts: usize,
    },
    /// A host's transaction succeeded and was verified.
    HostApplied {
        /// Host name.
        host: String,
        /// `compliant` or `pending-reboot`.
        outcome: String,
        /// Package changes.
        changes: usize,
    },
    /// A host failed (and was left as it was, or was unreachable, stale or skipped).
    HostFailed {
        /// Host name.
        host: String,
        /// `failed`, `stale`, `skipped` or `unreachable`.
        outcome: String,
        /// Why, step by step.
        detail: Vec<String>,
    },
    /// A host failed and was rolled back.
    HostRolledBack {
        /// Host name.
        host: String,
        /// Why, step by step.
        detail: Vec<String>,
    },
    /// A rollout's failure budget was exceeded: no new host of it starts.
    RolloutHalted {
        /// The rollout.
        rollout: String,
        /// Failures counted.
        failures: usize,
    },
    /// A report commit was written to the reports branch.
    ReportCommitted {
        /// The report commit.
        commit: String,
        /// The run id.
        run_id: String,
        /// `observe` or `apply`.
        kind: String,
    },
    /// A reconcile ended.
    ReconcileFinished {
        /// The desired commit.
        commit: String,
        /// Whether it succeeded.
        ok: bool,
        /// Why not.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long it took.
        duration_seconds: f64,
    },
    /// A new desired commit did not validate; the last good one stays in force.
    CommitRejected {
        /// The rejected commit.
        commit: String,
        /// Its validation errors (count).
        errors: usize,
    },
    /// A critical advisory is newly open on a host: announced once per (host, advisory)
    /// while it stays open (again if it closes and reopens; not while a
    /// VulnerabilityException in force accepts it), when the loop's assessment finds it.
    CriticalFinding {
        /// Host name.
        host: String,
        /// The advisory id (`DSA-5800-1`, `CVE-2026-1234`, an OSV id).
        advisory: String,
        /// CVE ids it covers.
        cves: Vec<String>,
        /// The source package (or, for an RPM record naming a binary, that binary).
        source: String,
        /// The installed package it affects (the first, when several are built from the
        /// source).
        package: String,
        /// That package's installed version.
        installed: String,
        /// The first version with the fix (`null`: no fix released).
        fixed: Option<String>,
        /// `fix-offered`, `fix-held`, `fix-not-offered` or `no-fix`.
        state: crate::advisory::FindingState,
        /// When the host's reports first saw it open.
        #[schemars(with = "String")]
        first_seen: Timestamp,
        /// The advisory snapshot it was matched against.
        #[serde(skip_serializing_if = "Option::is_none")]
        advisory_snapshot: Option<String>,
    },
    /// A patch request was committed through the API.
    RequestSubmitted {
        /// The request's name.
        name: String,
        /// The token that asked.
        requested_by: String,
        /// The commit.
        commit: String,
        /// Where it is: the review branch, or the desired branch.
        branch: String,
    },
}

impl EventData {
    /// The type name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::ReconcileStarted { .. } => "reconcile-started",
            EventData::HostObserved { .. } => "host-observed",
            EventData::PlanReady { .. } => "plan-ready",
            EventData::BatchStarted { .. } => "batch-started",
            EventData::HostApplied { .. } => "host-applied",
            EventData::HostFailed { .. } => "host-failed",
            EventData::HostRolledBack { .. } => "host-rolled-back",
            EventData::RolloutHalted { .. } => "rollout-halted",
            EventData::ReportCommitted { .. } => "report-committed",
            EventData::ReconcileFinished { .. } => "reconcile-finished",
            EventData::CommitRejected { .. } => "commit-rejected",
            EventData::CriticalFinding { .. } => "critical-finding",
            EventData::RequestSubmitted { .. } => "request-submitted",
        }
    }
}

/// A subscription: what to replay, then the live receiver.
pub struct Subscription {
    /// Buffered events after the resume point, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Events the subscriber asked for that are no longer buffered (or an unknown resume
    /// id): it must resynchronize from current state.
    pub gap: bool,
    /// The id of the last replayed event (or the resume id): live events up to it are
    /// duplicates to skip.
    pub last_id: Option<u64>,
    /// Live events from the moment of subscription.
    pub live: broadcast::Receiver<Arc<Event>>,
}

struct Ring {
    buffer: VecDeque<Arc<Event>>,
    next_id: u64,
}

/// The event journal: a bounded buffer and a broadcast.
pub struct EventLog {
    ring: Mutex<Ring>,
    capacity: usize,
    sender: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// A journal keeping the last `capacity` events; the first id is the current time in
    /// microseconds since the epoch.
    pub fn new(capacity: usize) -> EventLog {
        let first = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(1);
        EventLog::starting_at(capacity, first)
    }

    /// A journal whose first event gets id `first` (tests).
    pub fn starting_at(capacity: usize, first: u64) -> EventLog {
        let capacity = capacity.max(1);
        let (sender, _) = broadcast::channel(capacity);
        EventLog {
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity),
                next_id: first.max(1),
            }),
            capacity,
            sender,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every update is one
        // push or pop), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event now; returns its id.
    pub fn publish(&self, data: EventData) -> u64 {
        let mut ring = self.ring();
        let id = ring.next_id;
        ring.next_id += 1;
        let event = Arc::new(Event {
            id,
            at: Timestamp::now(),
            data,
        });
        if ring.buffer.len() == self.capacity {
            ring.buffer.pop_front();
        }
        ring.buffer.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.sender.send(event);
        id
    }

    /// Subscribes, resuming after `last_seen` (an id a subscriber got before) when given.
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let ring = self.ring();
        let live = self.sender.subscribe();
        let Some(seen) = last_seen else {
            return Subscription {
                replay: Vec::new(),
                gap: false,
                last_id: ring.next_id.checked_sub(1),
                live,
            };
        };
        let oldest = ring.buffer.front().map(|e| e.id).unwrap_or(ring.next_id);
        // `seen + 1 < oldest`: events in between were dropped from the buffer;
        // `seen >= next_id`: not an id this journal gave out.
        let gap = seen.saturating_add(1) < oldest || seen >= ring.next_id;
        let replay: Vec<Arc<Event>> = if gap {
            Vec::new()
        } else {
            ring.buffer
                .iter()
                .filter(|e| e.id > seen)
                .cloned()
                .collect()
        };
        let last_id = if gap {
            ring.next_id.checked_sub(1)
        } else {
            Some(replay.last().map(|e| e.id).unwrap_or(seen))
        };
        Subscription {
            replay,
            gap,
            last_id,
            live,
        }
    }

    /// The buffered events, oldest first (the dashboard reads the current reconcile's
    /// batches and halts from them).
    pub fn recent(&self) -> Vec<Arc<Event>> {
        self.ring().buffer.iter().cloned().collect()
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.ring().next_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(n: usize) -> EventData {
        EventData::CommitRejected {
            commit: format!("c{n}"),
            errors: n,
        }
    }

    fn ids(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn resuming_replays_exactly_what_was_missed() {
        let log = EventLog::starting_at(4, 100);
        for n in 0..3 {
            log.publish(rejected(n));
        }
        let s = log.subscribe(Some(100));
        assert!(!s.gap);
        assert_eq!(ids(&s.replay), [101, 102]);
        assert_eq!(s.last_id, Some(102));
        // Caught up: nothing to replay, no gap.
        let s = log.subscribe(Some(102));
        assert!(!s.gap && s.replay.is_empty());
        assert_eq!(s.last_id, Some(102));
    }

    #[test]
    fn a_resume_point_out_of_the_buffer_is_a_gap() {
        let log = EventLog::starting_at(2, 10);
        for n in 0..5 {
            log.publish(rejected(n));
        }
        // Buffered: 13, 14. After 12 nothing is missing; after 11, 12 is gone.
        assert!(!log.subscribe(Some(12)).gap);
        let s = log.subscribe(Some(11));
        assert!(s.gap && s.replay.is_empty());
        assert_eq!(s.last_id, Some(14));
        // An id this journal never gave out (another process's, or made up).
        assert!(log.subscribe(Some(15)).gap);
        assert!(log.subscribe(Some(u64::MAX)).gap);
    }

    #[test]
    fn live_events_follow_the_snapshot_without_loss_or_duplicates() {
        let log = EventLog::starting_at(8, 1);
        log.publish(rejected(0));
        let mut s = log.subscribe(Some(0));
        assert_eq!(ids(&s.replay), [1]);
        log.publish(rejected(1));
        let live = s.live.try_recv().expect("live event");
        assert_eq!(live.id, 2);
        assert!(s.live.try_recv().is_err());
    }

    #[test]
    fn events_serialize_with_their_type() {
        let log = EventLog::starting_at(1, 7);
        log.publish(EventData::HostObserved {
            host: "web-1".into(),
            reachable: false,
            updates: 0,
            security_updates: 0,
            failure: Some("refused".into()),
        });
        let s = log.subscribe(Some(6));
        let json = serde_json::to_value(&*s.replay[0]).expect("json");
        assert_eq!(json["type"], "host-observed");
        assert_eq!(json["id"], 7);
        assert_eq!(json["securityUpdates"], 0);
        assert_eq!(json["failure"], "refused");
        assert_eq!(s.replay[0].kind(), "host-observed");
    }
}
