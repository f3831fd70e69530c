//! The alerts' shell: on its own thread, evaluates the conditions against what the loop
//! published (twice a second, and only when something they depend on changed), records
//! transitions in the outbox, and POSTs due deliveries in order per target, retrying with
//! backoff. The standing conditions are read from the outbox once, then kept in memory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::outbox::{Delivery, Outbox};
use super::Inputs;
use crate::events::EventData;
use crate::model::NotificationSettings;
use crate::status::Status;

/// Default first retry wait.
pub const RETRY_INITIAL: Duration = Duration::from_secs(10);
/// Default longest retry wait.
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// How long one POST may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often conditions are evaluated and due deliveries looked for.
const TICK: Duration = Duration::from_millis(500);

/// The outbox file of a fleet's state directory.
pub fn outbox_path(state_repo: &std::path::Path) -> PathBuf {
    state_repo.join(".patchkeeper").join("alerts.sqlite")
}

/// Starts the notifier thread; it ends when `shutdown` is set.
pub fn spawn(
    status: Arc<Status>,
    path: PathBuf,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("alerts: cannot start a runtime, no alert will be sent: {e}");
                    return;
                }
            };
            runtime.block_on(run(status, path, shutdown));
        })
}

async fn run(status: Arc<Status>, path: PathBuf, shutdown: Arc<AtomicBool>) {
    let client = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("patchkeeper/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("alerts: cannot make an HTTP client, no alert will be sent: {e}");
            return;
        }
    };
    let mut outbox: Option<Outbox> = None;
    let mut judge = Judge::default();
    let mut pruned: Option<Timestamp> = None;
    while !shutdown.load(Ordering::SeqCst) {
        let settings = status
            .desired()
            .map(|(_, fleet)| fleet.settings().notifications.clone());
        if let Some(settings) = settings {
            // No outbox until a webhook is configured (or one was: deliveries may wait).
            if outbox.is_none() && (!settings.webhooks.is_empty() || path.exists()) {
                match Outbox::open(&path).and_then(|o| Ok((o.standing()?, o))) {
                    Ok((standing, o)) => {
                        judge.standing = standing;
                        outbox = Some(o);
                    }
                    Err(e) => tracing::error!("alerts: {e}"),
                }
            }
            if let Some(o) = outbox.as_mut() {
                if let Err(e) = judge.evaluate(&status, o, &settings) {
                    tracing::error!("alerts: {e}");
                }
                deliver(&client, o, &settings).await;
                let now = Timestamp::now();
                if pruned.is_none_or(|p| now.duration_since(p).as_secs() > 3600) {
                    let week = jiff::SignedDuration::from_hours(24 * 7);
                    if let Err(e) = o.prune(now - week) {
                        tracing::warn!("alerts: {e}");
                    }
                    pruned = Some(now);
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The standing conditions (as the outbox has them) and what the last evaluation saw, so
/// an unchanged state is not judged again every tick.
#[derive(Default)]
struct Judge {
    standing: std::collections::BTreeMap<String, super::Standing>,
    seen: Option<Seen>,
}

/// What the conditions depend on: the published values (by identity: the loop replaces
/// them whole), the last event, and the minute (deadlines pass with time).
#[derive(PartialEq, Eq)]
struct Seen {
    view: usize,
    reports: usize,
    desired: bool,
    rejected: Option<String>,
    finished: Option<Timestamp>,
    last_event: Option<u64>,
    minute: i64,
}

impl Judge {
    /// Judges what the loop published now and records the transitions.
    fn evaluate(
        &mut self,
        status: &Status,
        outbox: &mut Outbox,
        settings: &NotificationSettings,
    ) -> Result<(), super::outbox::OutboxError> {
        let view = status.view();
        let reports = status.reports();
        let reconcile = status.reconcile_brief();
        let events = status.events.recent();
        let now = Timestamp::now();
        let seen = Seen {
            view: Arc::as_ptr(&view) as usize,
            reports: reports.as_ref().map_or(0, |r| Arc::as_ptr(r) as usize),
            desired: status.desired().is_some(),
            rejected: reconcile.rejected_commit.clone(),
            finished: reconcile.finished_at,
            last_event: events.last().map(|e| e.id),
            minute: now.as_second() / 60,
        };
        if self.seen.as_ref() == Some(&seen) {
            return Ok(());
        }
        let e = judge(
            &self.standing,
            &view,
            reports.as_deref(),
            &reconcile,
            &events,
            seen.desired,
            now,
        );
        if e.opened.is_empty() && e.cleared.is_empty() {
            self.seen = Some(seen);
            return Ok(());
        }
        // Judged again next tick if this write fails: nothing is lost.
        let queued = outbox.record(&e, &settings.webhooks, now)?;
        self.seen = Some(seen);
        for s in &e.opened {
            tracing::info!(alert = %s.id, key = %s.condition.key, "alert firing: {}", s.condition.summary);
        }
        for s in &e.cleared {
            tracing::info!(alert = %s.id, key = %s.condition.key, "alert resolved: {}", s.condition.summary);
        }
        tracing::debug!(queued, "alert deliveries queued");
        self.standing = e.standing;
        Ok(())
    }
}

/// The evaluation of the published state against the standing conditions.
fn judge(
    standing: &std::collections::BTreeMap<String, super::Standing>,
    view: &crate::view::FleetView,
    reports: Option<&crate::report::Snapshot>,
    reconcile: &crate::status::ReconcileStatus,
    events: &[Arc<crate::events::Event>],
    desired: bool,
    now: Timestamp,
) -> super::Evaluation {
    let started = events
        .iter()
        .rposition(|e| matches!(e.data, EventData::ReconcileStarted { .. }));
    let halted = started.map(|i| {
        events[i + 1..]
            .iter()
            .filter_map(|e| match &e.data {
                EventData::RolloutHalted { rollout, failures } => {
                    Some((rollout.clone(), *failures))
                }
                _ => None,
            })
            .collect()
    });
    let inputs = Inputs {
        hosts: reports.map(|_| view.hosts.as_slice()),
        reports,
        commit_known: desired || reconcile.rejected_commit.is_some(),
        rejected_commit: reconcile.rejected_commit.as_deref(),
        reconcile: reconcile
            .finished_at
            .and(reconcile.ok)
            .map(|ok| (ok, reconcile.error.as_deref())),
        halted,
        requests: &view.requests,
    };
    super::evaluate(standing, &inputs, now)
}

fn retry_bounds(settings: &NotificationSettings) -> (Duration, Duration) {
    let parse = |v: &Option<String>, default| {
        v.as_deref()
            .and_then(|v| crate::duration::parse_duration(v).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    (
        parse(&settings.retry_initial, RETRY_INITIAL),
        parse(&settings.retry_max, RETRY_MAX),
    )
}

/// Sends what is due, in order per target: a target's later deliveries wait while an
/// earlier one fails, so a receiver never sees a "resolved" before its "firing".
async fn deliver(client: &reqwest::Client, outbox: &Outbox, settings: &NotificationSettings) {
    let (initial, max) = retry_bounds(settings);
    let due = match outbox.due(Timestamp::now(), 100) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("alerts: {e}");
            return;
        }
    };
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for d in due {
        if blocked.contains(&d.target) {
            continue;
        }
        let result = send(client, &d).await;
        let now = Timestamp::now();
        let written = match result {
            Ok(()) => {
                tracing::info!(target = %d.target, alert = %d.alert_id, status = %d.status, attempts = d.attempts + 1, "alert delivered");
                outbox.delivered(d.seq, now)
            }
            Err(why) => {
                let wait = super::backoff(d.attempts + 1, initial, max);
                tracing::warn!(target = %d.target, alert = %d.alert_id, attempts = d.attempts + 1, retry_in_s = wait.as_secs_f64(), "alert delivery failed: {why}");
                blocked.insert(d.target.clone());
                let next = now
                    .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                    .unwrap_or(now);
                outbox.failed(d.seq, next, &why)
            }
        };
        if let Err(e) = written {
            tracing::error!("alerts: {e}");
        }
    }
}

/// One POST; `Err`: why it did not count as delivered.
async fn send(client: &reqwest::Client, d: &Delivery) -> Result<(), String> {
    let mut req = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Patchkeeper-Alert", &d.alert_id)
        .header("X-Patchkeeper-Alert-Status", &d.status)
        .header("X-Patchkeeper-Delivery", d.seq.to_string());
    if let Some(var) = &d.secret_env {
        // Never sent unsigned when a secret is configured: the receiver would reject it
        // (or worse, accept unsigned alerts).
        let secret = std::env::var(var)
            .map_err(|_| format!("the signing secret's environment variable `{var}` is not set"))?;
        req = req.header(
            "X-Patchkeeper-Signature",
            super::signature(secret.as_bytes(), &d.body),
        );
    }
    let resp = req
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the target answered {}", resp.status()))
    }
}
