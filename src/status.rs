//! What the reconcile loop publishes for readers (the HTTP API, metrics): the desired
//! commit in force and its fleet, the phase of the reconcile in progress with per-host
//! results as they arrive, the last observation, plan and reports, the accepted API tokens,
//! and the event journal. Readers only ever read: nothing here observes a host, so no API
//! request can cause a second observation.
//!
//! Values are published as `Arc`s and replaced whole, and the [`FleetView`] the API lists
//! hosts from is rebuilt when one of its inputs changes (by the loop's thread), so a request
//! never waits for, or computes over, more than it returns. Knows nothing of HTTP.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::apply::{HostResult, Outcome};
use crate::events::{EventData, EventLog};
use crate::model::RequestMode;
use crate::observed::{ObservedFleet, ObservedHost};
use crate::plan::Plan;
use crate::report::Snapshot;
use crate::token::Keyring;
use crate::validate::ValidFleet;
use crate::view::{FleetView, SubmittedRequest, ViewInputs};

/// Events kept for `Last-Event-ID` resumption.
pub const EVENT_BUFFER: usize = 4096;

/// What the loop is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Nothing validated yet.
    #[default]
    Starting,
    /// Waiting for the next round.
    Idle,
    /// Fetching the fleet repo.
    Fetching,
    /// Validating a new desired commit.
    Validating,
    /// Observing hosts.
    Observing,
    /// Planning (with dry runs on the hosts).
    Planning,
    /// Applying.
    Applying,
    /// Committing reports.
    Reporting,
    /// Shutting down.
    Stopping,
}

/// One host's part of the reconcile in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostProgress {
    /// Whether it was reached (`null`: not observed yet in this reconcile).
    pub reachable: Option<bool>,
    /// Why not: the failure's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The apply outcome (`compliant`, `rolled-back`, ...; `null`: not applied in this
    /// reconcile).
    pub applied: Option<String>,
}

/// The reconcile in progress, or the last one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileStatus {
    /// What the loop is doing now.
    pub phase: Phase,
    /// The desired commit of the current (or last) reconcile.
    pub commit: Option<String>,
    /// Why it ran: `new-commit`, `interval`, `manual` or `retry`.
    pub reason: Option<String>,
    /// When it started.
    #[schemars(with = "Option<String>")]
    pub started_at: Option<Timestamp>,
    /// When it ended (`null` while running).
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<Timestamp>,
    /// Whether it succeeded (`null` while running).
    pub ok: Option<bool>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a reconcile last succeeded.
    #[schemars(with = "Option<String>")]
    pub last_success: Option<Timestamp>,
    /// A reconcile was asked for (`POST /api/v1/reconcile`) and has not started yet.
    pub queued: bool,
    /// The desired commit that failed validation (skipped; the last good one is in force).
    pub rejected_commit: Option<String>,
    /// Per-host results as they arrive.
    pub hosts: BTreeMap<String, HostProgress>,
}

#[derive(Default)]
struct Shared {
    fleet: Option<Arc<ValidFleet>>,
    commit: Option<String>,
    observed: Option<Arc<ObservedFleet>>,
    plan: Option<Arc<Plan>>,
    reports: Option<Arc<Snapshot>>,
    submitted: Arc<Vec<SubmittedRequest>>,
    view: Arc<FleetView>,
    keyring: Arc<Keyring>,
    request_mode: RequestMode,
    reconcile: ReconcileStatus,
    /// Totals since start (for metrics): apply outcomes, observation failures by kind.
    counters: Counters,
    /// The last check of each advisory source the loop refreshes.
    advisory_sources: Arc<Vec<crate::advisory::SourceCheck>>,
    /// This replica's leader election (`serve --cluster`).
    leadership: Option<Arc<dyn crate::reconcile::Leadership>>,
}

/// Running totals since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Reconciles finished, by success.
    pub reconciles: BTreeMap<bool, u64>,
    /// Host apply outcomes.
    pub applied: BTreeMap<Outcome, u64>,
    /// Hosts that could not be observed, by failure kind.
    pub observe_failures: BTreeMap<String, u64>,
}

/// The published state; shared by the loop (writer) and readers.
pub struct Status {
    shared: RwLock<Shared>,
    /// The event journal.
    pub events: EventLog,
    trigger: Mutex<bool>,
    wake: Condvar,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status").finish_non_exhaustive()
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::new(EventLog::new(EVENT_BUFFER))
    }
}

/// The kebab-case kind of an observation failure (`refused`, `timeout`, ...).
pub fn failure_kind(host: &ObservedHost) -> Option<String> {
    let reason = host.status.reason()?;
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
}

impl Status {
    /// Empty state with this journal.
    pub fn new(events: EventLog) -> Status {
        Status {
            shared: RwLock::new(Shared::default()),
            events,
            trigger: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Shared> {
        // Writers replace whole values, so a panic mid-write cannot leave a torn value.
        self.shared.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Shared> {
        self.shared.write().unwrap_or_else(|p| p.into_inner())
    }

    fn rebuild(shared: &mut Shared) {
        shared.view = Arc::new(FleetView::build(ViewInputs {
            fleet: shared.fleet.as_deref(),
            commit: shared.commit.as_deref(),
            observed: shared.observed.as_deref(),
            reports: shared.reports.as_deref(),
            plan: shared.plan.as_deref(),
            submitted: &shared.submitted,
        }));
    }

    // ----- readers

    /// This replica's part in its cluster, now (`None`: not clustered).
    pub fn replica(&self) -> Option<crate::reconcile::ReplicaBrief> {
        let leadership = self.read().leadership.clone()?;
        leadership.brief()
    }

    /// The hosts, counts and requests as the API serves them.
    pub fn view(&self) -> Arc<FleetView> {
        self.read().view.clone()
    }

    /// The desired state in force and its commit.
    pub fn desired(&self) -> Option<(String, Arc<ValidFleet>)> {
        let s = self.read();
        Some((s.commit.clone()?, s.fleet.clone()?))
    }

    /// The last observation.
    pub fn observed(&self) -> Option<Arc<ObservedFleet>> {
        self.read().observed.clone()
    }

    /// The current plan.
    pub fn plan(&self) -> Option<Arc<Plan>> {
        self.read().plan.clone()
    }

    /// The reports branch as last read.
    pub fn reports(&self) -> Option<Arc<Snapshot>> {
        self.read().reports.clone()
    }

    /// The accepted API tokens (none before a desired commit validated).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.read().keyring.clone()
    }

    /// Where API patch requests go (Settings' `api.requests`).
    pub fn request_mode(&self) -> RequestMode {
        self.read().request_mode
    }

    /// The reconcile in progress or the last one.
    pub fn reconcile(&self) -> ReconcileStatus {
        self.read().reconcile.clone()
    }

    /// The reconcile status without per-host results (cheap).
    pub fn reconcile_brief(&self) -> ReconcileStatus {
        let s = self.read();
        ReconcileStatus {
            hosts: BTreeMap::new(),
            ..s.reconcile.clone()
        }
    }

    /// The last check of each advisory source the loop refreshes (empty: none configured,
    /// or no reconcile yet).
    pub fn advisory_sources(&self) -> Arc<Vec<crate::advisory::SourceCheck>> {
        self.read().advisory_sources.clone()
    }

    /// Running totals.
    pub fn counters(&self) -> Counters {
        self.read().counters.clone()
    }

    /// Ready to serve: a desired commit validated.
    pub fn ready(&self) -> bool {
        let s = self.read();
        s.fleet.is_some() && s.reconcile.phase != Phase::Stopping
    }

    // ----- the loop's side

    /// This replica joined a cluster: its metrics show its part from now on.
    pub fn set_leadership(&self, leadership: Arc<dyn crate::reconcile::Leadership>) {
        self.write().leadership = Some(leadership);
    }

    /// The advisory sources were checked (`AdvisoryFeed::refresh`).
    pub fn set_advisory_sources(&self, checks: Vec<crate::advisory::SourceCheck>) {
        self.write().advisory_sources = Arc::new(checks);
    }

    /// A new desired commit validated and is in force.
    pub fn set_desired(&self, commit: &str, fleet: Arc<ValidFleet>) {
        let mut s = self.write();
        let settings = fleet.settings();
        s.keyring = Arc::new(Keyring::from_settings(&settings.api));
        s.request_mode = settings.api.requests;
        s.commit = Some(commit.to_owned());
        s.fleet = Some(fleet);
        s.reconcile.rejected_commit = None;
        if s.reconcile.phase == Phase::Starting {
            s.reconcile.phase = Phase::Idle;
        }
        Status::rebuild(&mut s);
    }

    /// A desired commit failed validation.
    pub fn set_rejected(&self, commit: &str, errors: usize) {
        self.write().reconcile.rejected_commit = Some(commit.to_owned());
        self.events.publish(EventData::CommitRejected {
            commit: commit.to_owned(),
            errors,
        });
    }

    /// The loop moved to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        let mut s = self.write();
        // Before the first good commit the loop is still starting, whatever it does.
        if s.fleet.is_none() && phase == Phase::Idle {
            return;
        }
        s.reconcile.phase = phase;
    }

    /// A reconcile of `commit` started.
    pub fn reconcile_started(&self, commit: &str, reason: &str) {
        {
            let mut s = self.write();
            let last_success = s.reconcile.last_success;
            let rejected = s.reconcile.rejected_commit.clone();
            s.reconcile = ReconcileStatus {
                phase: Phase::Observing,
                commit: Some(commit.to_owned()),
                reason: Some(reason.to_owned()),
                started_at: Some(Timestamp::now()),
                last_success,
                rejected_commit: rejected,
                ..ReconcileStatus::default()
            };
        }
        self.events.publish(EventData::ReconcileStarted {
            commit: commit.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// One host was observed.
    pub fn host_observed(&self, host: &ObservedHost) {
        let failure = failure_kind(host);
        {
            let mut s = self.write();
            if let Some(kind) = &failure {
                *s.counters.observe_failures.entry(kind.clone()).or_default() += 1;
            }
            let p = s.reconcile.hosts.entry(host.name.clone()).or_default();
            p.reachable = Some(host.status.is_reachable());
            p.failure = failure.clone();
        }
        self.events.publish(EventData::HostObserved {
            host: host.name.clone(),
            reachable: host.status.is_reachable(),
            updates: host.updates.len(),
            security_updates: host.updates.iter().filter(|u| u.security).count(),
            failure,
        });
    }

    /// The observation of this reconcile is complete.
    pub fn set_observed(&self, observed: Arc<ObservedFleet>) {
        let mut s = self.write();
        s.observed = Some(observed);
        Status::rebuild(&mut s);
    }

    /// The plan of this reconcile is ready.
    pub fn set_plan(&self, plan: Arc<Plan>) {
        let event = EventData::PlanReady {
            commit: plan.fleet_commit.clone().unwrap_or_default(),
            hosts_to_update: plan.summary.hosts_to_update,
            changes: plan.summary.packages,
            blocked: plan.summary.blocked,
        };
        {
            let mut s = self.write();
            s.plan = Some(plan);
            Status::rebuild(&mut s);
        }
        self.events.publish(event);
    }

    /// A batch started.
    pub fn batch_started(&self, index: usize, rollout: &str, stage: &str, hosts: usize) {
        self.events.publish(EventData::BatchStarted {
            index,
            rollout: rollout.to_owned(),
            stage: stage.to_owned(),
            hosts,
        });
    }

    /// A host's apply ended.
    pub fn host_applied(&self, result: &HostResult) {
        {
            let mut s = self.write();
            *s.counters.applied.entry(result.outcome).or_default() += 1;
            s.reconcile
                .hosts
                .entry(result.host.clone())
                .or_default()
                .applied = Some(result.outcome.as_str().to_owned());
        }
        let host = result.host.clone();
        let event = match result.outcome {
            Outcome::Compliant | Outcome::PendingReboot => EventData::HostApplied {
                host,
                outcome: result.outcome.as_str().to_owned(),
                changes: result.changes,
            },
            Outcome::RolledBack => EventData::HostRolledBack {
                host,
                detail: result.detail.clone(),
            },
            // Skipped (package manager locked past lockWait, no disk): untouched like a
            // stale host, but not compliant either, so watchers hear of it.
            Outcome::Failed | Outcome::Stale | Outcome::Skipped | Outcome::Unreachable => {
                EventData::HostFailed {
                    host,
                    outcome: result.outcome.as_str().to_owned(),
                    detail: result.detail.clone(),
                }
            }
            // Not started, waiting, blocked, unmanaged: nothing happened to the host.
            _ => return,
        };
        self.events.publish(event);
    }

    /// A rollout's failure budget was exceeded.
    pub fn rollout_halted(&self, rollout: &str, failures: usize) {
        self.events.publish(EventData::RolloutHalted {
            rollout: rollout.to_owned(),
            failures,
        });
    }

    /// A report commit was written; `reports` is the branch read back after it.
    pub fn report_committed(&self, commit: &str, run_id: &str, kind: &str) {
        self.events.publish(EventData::ReportCommitted {
            commit: commit.to_owned(),
            run_id: run_id.to_owned(),
            kind: kind.to_owned(),
        });
    }

    /// A critical finding newly open on a host (matched against advisory snapshot
    /// `snapshot`).
    pub fn critical_finding(
        &self,
        found: crate::advisory::critical::NewCritical,
        snapshot: Option<String>,
    ) {
        self.events.publish(EventData::CriticalFinding {
            host: found.host,
            advisory: found.advisory,
            cves: found.cves,
            source: found.source,
            package: found.package,
            installed: found.installed,
            fixed: found.fixed,
            state: found.state,
            first_seen: found.first_seen,
            advisory_snapshot: snapshot,
        });
    }

    /// The reports branch as read now.
    pub fn set_reports(&self, reports: Arc<Snapshot>) {
        let mut s = self.write();
        s.reports = Some(reports);
        Status::rebuild(&mut s);
    }

    /// Whether the reports branch was read at all yet.
    pub fn has_reports(&self) -> bool {
        self.read().reports.is_some()
    }

    /// Patch requests on review branches.
    pub fn set_submitted(&self, submitted: Vec<SubmittedRequest>) {
        let mut s = self.write();
        if *s.submitted == submitted {
            return;
        }
        s.submitted = Arc::new(submitted);
        Status::rebuild(&mut s);
    }

    /// Adds one submitted request (the API just committed it).
    pub fn add_submitted(&self, request: SubmittedRequest) {
        let mut s = self.write();
        let mut list: Vec<SubmittedRequest> = (*s.submitted).clone();
        list.retain(|r| r.name != request.name);
        list.push(request);
        s.submitted = Arc::new(list);
        Status::rebuild(&mut s);
    }

    /// The reconcile ended.
    pub fn reconcile_finished(&self, ok: bool, error: Option<String>) {
        let (commit, seconds) = {
            let mut s = self.write();
            let now = Timestamp::now();
            let started = s.reconcile.started_at.unwrap_or(now);
            s.reconcile.finished_at = Some(now);
            s.reconcile.ok = Some(ok);
            s.reconcile.error = error.clone();
            s.reconcile.phase = Phase::Idle;
            if ok {
                s.reconcile.last_success = Some(now);
            }
            *s.counters.reconciles.entry(ok).or_default() += 1;
            let seconds = now.duration_since(started).as_secs_f64().max(0.0);
            (s.reconcile.commit.clone().unwrap_or_default(), seconds)
        };
        self.events.publish(EventData::ReconcileFinished {
            commit,
            ok,
            error,
            duration_seconds: seconds,
        });
    }

    // ----- triggers

    /// Asks the loop for a reconcile now; returns whether one was already queued.
    pub fn request_reconcile(&self) -> bool {
        let mut t = self.trigger.lock().unwrap_or_else(|p| p.into_inner());
        let already = *t;
        *t = true;
        self.write().reconcile.queued = true;
        self.wake.notify_all();
        already
    }

    /// Wakes a waiting loop without asking for a reconcile (shutdown).
    pub fn wake(&self) {
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for a reconcile request; takes it (returns true) if there is one.
    pub fn wait_for_trigger(&self, timeout: Duration) -> bool {
        let t = self.trigger.lock().unwrap_or_else(|p| p.into_inner());
        let (mut t, _) = self
            .wake
            .wait_timeout_while(t, timeout, |pending| !*pending)
            .unwrap_or_else(|p| p.into_inner());
        let took = std::mem::take(&mut *t);
        drop(t);
        if took {
            self.write().reconcile.queued = false;
        }
        took
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_wakes_the_waiter_once() {
        let status = Arc::new(Status::default());
        assert!(!status.wait_for_trigger(Duration::from_millis(1)));
        assert!(!status.request_reconcile());
        assert!(
            status.request_reconcile(),
            "the second request finds one queued"
        );
        assert!(status.reconcile_brief().queued);
        assert!(status.wait_for_trigger(Duration::from_secs(5)));
        assert!(!status.reconcile_brief().queued);
        assert!(!status.wait_for_trigger(Duration::from_millis(1)));
        // From another thread, while waiting.
        let waiter = {
            let status = status.clone();
            std::thread::spawn(move || status.wait_for_trigger(Duration::from_secs(60)))
        };
        status.request_reconcile();
        assert!(waiter.join().expect("joined"));
    }

    #[test]
    fn a_reconcile_publishes_its_events_in_order() {
        let status = Status::new(EventLog::starting_at(64, 1));
        status.reconcile_started("c1", "manual");
        status.host_observed(&ObservedHost::new(
            "web-1",
            crate::observed::HostStatus::Reachable,
        ));
        status.host_applied(&HostResult {
            host: "web-1".into(),
            outcome: Outcome::RolledBack,
            detail: vec!["health check failed".into()],
            changes: 1,
            millis: 5,
            started_at: None,
            finished_at: None,
            reboots: Vec::new(),
        });
        status.reconcile_finished(true, None);
        let sub = status.events.subscribe(Some(0));
        let kinds: Vec<&str> = sub.replay.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            [
                "reconcile-started",
                "host-observed",
                "host-rolled-back",
                "reconcile-finished"
            ]
        );
        let r = status.reconcile();
        assert_eq!(r.ok, Some(true));
        assert_eq!(r.hosts["web-1"].applied.as_deref(), Some("rolled-back"));
        assert!(r.last_success.is_some());
        assert_eq!(status.counters().applied[&Outcome::RolledBack], 1);
    }
}
