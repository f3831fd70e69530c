//! The reconcile loop of `patchkeeper serve`: a pure decision core ([`decide`]: state and
//! event in, next action out, like kube-runtime's reconciler returning an `Action`) and a
//! thin shell ([`Reconciler`]) that performs the actions: fetch the fleet repo, validate a
//! new commit, observe and report, wait.
//!
//! Guarantees, written into the core and tested there: an invalid commit is reported once
//! and skipped, and the last good commit stays in force; a commit is never reconciled before
//! it validated; failures back off exponentially (capped) and never stop the loop; the
//! interval is measured from the end of the last reconcile.
//!
//! Seam for apply: [`Reconciler::reconcile`] observes and records an observe run; when
//! Settings enable `reconcile.autoApply`, the apply engineer plugs plan + apply in there
//! (marked `APPLY SEAM`) and records an apply run with [`crate::report::record_run`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::observed::ObservedFleet;
use crate::report::{self, ReportTarget};
use crate::source::{Location, Source};
use crate::validate::{self, ValidFleet};

/// Why a reconcile runs (carried into its log span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The desired commit changed (and validated).
    NewCommit,
    /// The interval passed.
    Interval,
    /// Someone asked (API, signal).
    Manual,
    /// The previous reconcile failed.
    Retry,
}

/// Loop timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Reconcile at least this often.
    pub interval: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Timing {
    /// `interval` with a 10 s first backoff capped at the interval (at least 10 s).
    pub fn with_interval(interval: Duration) -> Timing {
        Timing {
            interval,
            backoff: Duration::from_secs(10),
            max_backoff: interval.max(Duration::from_secs(10)),
        }
    }

    fn backoff_for(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What the loop knows; observable by an HTTP API (cheap to clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The last commit that validated: the desired state in force.
    pub last_good: Option<String>,
    /// The tip commit that failed validation (reported; skipped until the tip moves).
    pub rejected: Option<String>,
    /// When the last reconcile ended.
    pub last_reconcile: Option<Timestamp>,
    /// Consecutive reconcile failures.
    pub failures: u32,
    /// Consecutive fetch failures.
    pub fetch_failures: u32,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The source's tip is `commit`.
    Fetched {
        /// The tip.
        commit: String,
        /// When.
        at: Timestamp,
    },
    /// Fetching failed.
    FetchFailed {
        /// When.
        at: Timestamp,
    },
    /// `commit` validated.
    Validated {
        /// The commit.
        commit: String,
    },
    /// `commit` did not validate.
    Rejected {
        /// The commit.
        commit: String,
    },
    /// A reconcile of `commit` finished.
    Reconciled {
        /// When.
        at: Timestamp,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A manual trigger.
    Triggered,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check out and validate `commit`.
    Validate {
        /// The commit.
        commit: String,
    },
    /// Record that `commit` was rejected (once), keeping `last_good` in force.
    ReportRejected {
        /// The commit.
        commit: String,
        /// The commit that stays in force.
        last_good: Option<String>,
    },
    /// Observe (and, later, apply) and report for `commit`.
    Reconcile {
        /// The commit.
        commit: String,
        /// Why.
        reason: Reason,
    },
    /// Sleep, then fetch again.
    Wait(Duration),
}

/// The pure core: updates `state` with `event` and returns the next action.
pub fn decide(state: &mut State, event: Event, timing: &Timing) -> Action {
    match event {
        Event::Fetched { commit, at } => {
            state.fetch_failures = 0;
            if state.rejected.as_deref() == Some(commit.as_str()) {
                // The tip is still the rejected commit: keep reconciling the last good one.
                return due_or_wait(state, at, timing);
            }
            if state.last_good.as_deref() != Some(commit.as_str()) {
                return Action::Validate { commit };
            }
            due_or_wait(state, at, timing)
        }
        Event::FetchFailed { at } => {
            state.fetch_failures += 1;
            // The source being down does not suspend the desired state in force.
            match due_or_wait(state, at, timing) {
                Action::Wait(d) => Action::Wait(d.min(timing.backoff_for(state.fetch_failures))),
                other => other,
            }
        }
        Event::Validated { commit } => {
            state.last_good = Some(commit.clone());
            state.rejected = None;
            Action::Reconcile {
                commit,
                reason: Reason::NewCommit,
            }
        }
        Event::Rejected { commit } => {
            state.rejected = Some(commit.clone());
            Action::ReportRejected {
                commit,
                last_good: state.last_good.clone(),
            }
        }
        Event::Reconciled { at, ok } => {
            state.last_reconcile = Some(at);
            if ok {
                state.failures = 0;
                Action::Wait(timing.interval)
            } else {
                state.failures += 1;
                Action::Wait(timing.backoff_for(state.failures))
            }
        }
        Event::Triggered => match &state.last_good {
            Some(c) => Action::Reconcile {
                commit: c.clone(),
                reason: Reason::Manual,
            },
            None => Action::Wait(Duration::ZERO),
        },
    }
}

fn due_or_wait(state: &State, at: Timestamp, timing: &Timing) -> Action {
    let Some(commit) = state.last_good.clone() else {
        return Action::Wait(timing.interval);
    };
    let (wait, reason) = if state.failures > 0 {
        (timing.backoff_for(state.failures), Reason::Retry)
    } else {
        (timing.interval, Reason::Interval)
    };
    match state.last_reconcile {
        None => Action::Reconcile { commit, reason },
        Some(last) => {
            let elapsed = Duration::try_from(at.duration_since(last)).unwrap_or(Duration::ZERO);
            if elapsed >= wait {
                Action::Reconcile { commit, reason }
            } else {
                Action::Wait(wait - elapsed)
            }
        }
    }
}

/// How the shell learns the observed state of a fleet (the observe engine in production).
pub trait Observer {
    /// Observes every host of `fleet`.
    fn observe(&mut self, fleet: &ValidFleet) -> Result<ObservedFleet, String>;
}

/// The production [`Observer`]: the observe engine over SSH, resolving targets exactly as
/// `patchkeeper observe` does (every host, Settings' defaults).
pub struct EngineObserver {
    runtime: tokio::runtime::Runtime,
    key_root: Option<std::path::PathBuf>,
}

impl EngineObserver {
    /// An observer with its own async runtime. Relative key and `known_hosts` paths in
    /// Settings resolve against `key_root` when given (the working tree of a local fleet
    /// repo, where untracked keys live), else against the checked-out commit.
    pub fn new(key_root: Option<std::path::PathBuf>) -> std::io::Result<EngineObserver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(EngineObserver { runtime, key_root })
    }
}

impl Observer for EngineObserver {
    fn observe(&mut self, fleet: &ValidFleet) -> Result<ObservedFleet, String> {
        let settings = fleet.settings();
        let root = self
            .key_root
            .clone()
            .unwrap_or_else(|| fleet.fleet().root.clone());
        let targets = fleet
            .hosts()
            .map(|h| crate::observe::target_for(&root, &settings, h, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        if targets.is_empty() {
            return Err("the inventory has no host to observe".into());
        }
        let options = crate::observe::RunOptions::from_settings(&settings, None)
            .map_err(|e| e.to_string())?;
        let observed =
            self.runtime
                .block_on(crate::observe::observe_all(targets, &options, |host| {
                    tracing::info!(host = %host.name, "observed");
                }));
        Ok(observed)
    }
}

/// The imperative shell around [`decide`].
pub struct Reconciler<O: Observer> {
    source: Source,
    observer: O,
    timing: Timing,
    /// The loop's state (read it for status).
    pub state: State,
    rejected_errors: Vec<String>,
    last_good_fleet: Option<ValidFleet>,
    shutdown: Arc<AtomicBool>,
}

impl<O: Observer> Reconciler<O> {
    /// A reconciler over `source`; `shutdown` stops [`Reconciler::run`] between steps.
    pub fn new(source: Source, observer: O, timing: Timing, shutdown: Arc<AtomicBool>) -> Self {
        Reconciler {
            source,
            observer,
            timing,
            state: State::default(),
            rejected_errors: Vec::new(),
            last_good_fleet: None,
            shutdown,
        }
    }

    /// One round: fetch, then follow the decisions until one says wait; returns the wait.
    pub fn step(&mut self, now: impl Fn() -> Timestamp) -> Duration {
        let mut event = match self.source.fetch() {
            Ok(commit) => Event::Fetched { commit, at: now() },
            Err(e) => {
                tracing::warn!(source = %self.source.location(), "fetch failed: {e}");
                Event::FetchFailed { at: now() }
            }
        };
        loop {
            let action = decide(&mut self.state, event, &self.timing);
            event = match action {
                Action::Wait(d) => return d,
                Action::Validate { commit } => self.validate(&commit),
                Action::ReportRejected { commit, last_good } => {
                    self.report_rejected(&commit, last_good.as_deref(), now());
                    return Duration::ZERO;
                }
                Action::Reconcile { commit, reason } => {
                    let span = tracing::info_span!("reconcile", commit = %commit, reason = ?reason);
                    let _enter = span.enter();
                    let ok = match self.reconcile(&commit, now()) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!("reconcile failed: {e}");
                            false
                        }
                    };
                    Event::Reconciled { at: now(), ok }
                }
            };
        }
    }

    /// Runs until `shutdown` is set, sleeping in short slices so shutdown is prompt.
    pub fn run(&mut self) {
        while !self.shutdown.load(Ordering::SeqCst) {
            let wait = self.step(Timestamp::now);
            let until = std::time::Instant::now() + wait;
            while !self.shutdown.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(
                    Duration::from_millis(200).min(until - std::time::Instant::now()),
                );
            }
        }
    }

    fn load(&self, commit: &str) -> Result<validate::Outcome, String> {
        let co = self.source.checkout(commit).map_err(|e| e.to_string())?;
        validate::load_and_validate(&co.dir).map_err(|e| e.to_string())
    }

    fn validate(&mut self, commit: &str) -> Event {
        match self.load(commit) {
            Ok(outcome) => match outcome.fleet {
                Some(fleet) => {
                    self.last_good_fleet = Some(fleet);
                    Event::Validated {
                        commit: commit.to_owned(),
                    }
                }
                None => {
                    self.rejected_errors = outcome
                        .diagnostics
                        .iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.to_string())
                        .collect();
                    Event::Rejected {
                        commit: commit.to_owned(),
                    }
                }
            },
            Err(e) => {
                self.rejected_errors = vec![e];
                Event::Rejected {
                    commit: commit.to_owned(),
                }
            }
        }
    }

    fn target(&self, fleet: Option<&ValidFleet>) -> ReportTarget {
        let repo = self.source.repo_path();
        let mut target = match fleet {
            Some(f) => ReportTarget::from_fleet(&repo, f),
            None => ReportTarget {
                repo: repo.clone(),
                branch: report::DEFAULT_BRANCH.to_owned(),
                remote: None,
                auth: report::GitAuth::from_env(),
                author: (
                    report::DEFAULT_AUTHOR.0.into(),
                    report::DEFAULT_AUTHOR.1.into(),
                ),
                signing_key: None,
            },
        };
        // Reports of a fetched repo go back to where it came from.
        if let (None, Location::Remote(url)) = (&target.remote, self.source.location()) {
            target.remote = Some(url.clone());
        }
        target
    }

    fn report_rejected(&self, commit: &str, last_good: Option<&str>, now: Timestamp) {
        tracing::error!(
            commit,
            errors = self.rejected_errors.len(),
            "desired commit rejected; the last good commit stays in force"
        );
        let target = self.target(self.last_good_fleet.as_ref());
        if let Err(e) =
            report::record_rejected(&target, commit, &self.rejected_errors, last_good, now)
        {
            tracing::error!("cannot record the rejected commit: {e}");
        }
    }

    fn reconcile(&mut self, commit: &str, now: Timestamp) -> Result<(), String> {
        let fleet = match &self.last_good_fleet {
            Some(_) if self.state.last_good.as_deref() == Some(commit) => {
                self.last_good_fleet.take().expect("checked just above")
            }
            _ => self
                .load(commit)?
                .fleet
                .ok_or("the commit no longer validates")?,
        };
        let result = (|| {
            let observed = self.observer.observe(&fleet)?;
            // APPLY SEAM: when `fleet.settings().reconcile.auto_apply`, plan with
            // `report::read(..)?.first_seen()` and apply what windows allow now, then
            // `report::record_run` the apply run instead of (or after) the observation.
            let target = self.target(Some(&fleet));
            let run = report::observation_run(&observed, commit, now);
            let rec = report::record(&target, &fleet, Some(&observed), &run, now)
                .map_err(|e| e.to_string())?;
            tracing::info!(report = %rec.commit, run = %rec.run_id, "reconciled");
            Ok(())
        })();
        self.last_good_fleet = Some(fleet);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Timestamp {
        Timestamp::from_second(1_795_000_000 + min * 60).expect("time")
    }

    fn timing() -> Timing {
        Timing {
            interval: Duration::from_secs(300),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }

    fn fetched(c: &str, min: i64) -> Event {
        Event::Fetched {
            commit: c.into(),
            at: at(min),
        }
    }

    fn reconcile(c: &str, reason: Reason) -> Action {
        Action::Reconcile {
            commit: c.into(),
            reason,
        }
    }

    #[test]
    fn a_new_commit_is_validated_before_it_is_reconciled() {
        let mut s = State::default();
        assert_eq!(
            decide(&mut s, fetched("a", 0), &timing()),
            Action::Validate { commit: "a".into() }
        );
        assert_eq!(s.last_good, None, "not in force before it validates");
        assert_eq!(
            decide(&mut s, Event::Validated { commit: "a".into() }, &timing()),
            reconcile("a", Reason::NewCommit)
        );
        assert_eq!(
            decide(
                &mut s,
                Event::Reconciled {
                    at: at(1),
                    ok: true
                },
                &timing()
            ),
            Action::Wait(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_interval_counts_from_the_end_of_the_last_reconcile() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("a", 2), &timing()),
            Action::Wait(Duration::from_secs(180))
        );
        assert_eq!(
            decide(&mut s, fetched("a", 5), &timing()),
            reconcile("a", Reason::Interval)
        );
    }

    #[test]
    fn an_invalid_commit_is_reported_once_and_the_last_good_stays() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("b", 1), &timing()),
            Action::Validate { commit: "b".into() }
        );
        assert_eq!(
            decide(&mut s, Event::Rejected { commit: "b".into() }, &timing()),
            Action::ReportRejected {
                commit: "b".into(),
                last_good: Some("a".into())
            }
        );
        assert_eq!(s.last_good.as_deref(), Some("a"));
        // The tip is still b: no second validation or report; a keeps being reconciled.
        assert_eq!(
            decide(&mut s, fetched("b", 2), &timing()),
            Action::Wait(Duration::from_secs(180))
        );
        assert_eq!(
            decide(&mut s, fetched("b", 6), &timing()),
            reconcile("a", Reason::Interval)
        );
        // A fix on top is validated and takes over.
        assert_eq!(
            decide(&mut s, fetched("c", 7), &timing()),
            Action::Validate { commit: "c".into() }
        );
        assert_eq!(
            decide(&mut s, Event::Validated { commit: "c".into() }, &timing()),
            reconcile("c", Reason::NewCommit)
        );
        assert_eq!(s.rejected, None);
    }

    #[test]
    fn nothing_is_reconciled_before_a_first_good_commit() {
        let mut s = State::default();
        decide(&mut s, fetched("bad", 0), &timing());
        decide(
            &mut s,
            Event::Rejected {
                commit: "bad".into(),
            },
            &timing(),
        );
        assert_eq!(
            decide(&mut s, fetched("bad", 10), &timing()),
            Action::Wait(Duration::from_secs(300))
        );
        assert_eq!(
            decide(&mut s, Event::Triggered, &timing()),
            Action::Wait(Duration::ZERO)
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let mut s = State {
            last_good: Some("a".into()),
            ..State::default()
        };
        let waits: Vec<Action> = (0..7)
            .map(|i| {
                decide(
                    &mut s,
                    Event::Reconciled {
                        at: at(i),
                        ok: false,
                    },
                    &timing(),
                )
            })
            .collect();
        let secs = |a: &Action| match a {
            Action::Wait(d) => d.as_secs(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            waits.iter().map(secs).collect::<Vec<_>>(),
            [10, 20, 40, 80, 160, 300, 300]
        );
        // Due again after the backoff, as a retry; success resets.
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            failures: 1,
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, fetched("a", 1), &timing()),
            reconcile("a", Reason::Retry)
        );
        decide(
            &mut s,
            Event::Reconciled {
                at: at(2),
                ok: true,
            },
            &timing(),
        );
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_down_source_keeps_the_last_good_commit_in_force() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(1) }, &timing()),
            Action::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(1) }, &timing()),
            Action::Wait(Duration::from_secs(20))
        );
        assert_eq!(
            decide(&mut s, Event::FetchFailed { at: at(5) }, &timing()),
            reconcile("a", Reason::Interval)
        );
        decide(&mut s, fetched("a", 6), &timing());
        assert_eq!(s.fetch_failures, 0);
    }

    #[test]
    fn a_manual_trigger_reconciles_now() {
        let mut s = State {
            last_good: Some("a".into()),
            last_reconcile: Some(at(0)),
            ..State::default()
        };
        assert_eq!(
            decide(&mut s, Event::Triggered, &timing()),
            reconcile("a", Reason::Manual)
        );
    }
}
