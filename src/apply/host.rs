//! One host's steps: readiness, stale check, pre commands, recorded versions, the exact
//! package transaction, verification, health checks, reboot, post commands — and rollback
//! when the transaction, verification or a health check fails.
//!
//! What a partial failure leaves behind: before the transaction, nothing changed; after it,
//! either the planned versions (verified), the recorded versions (rolled back, verified), or
//! a host marked failed with the reason and its package state in the detail. When the
//! connection is lost during the transaction, no `host-done` is journaled, so the next run
//! reports the host as in flight and repairs it before continuing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::decide::{self, RollbackSteps, Versions};
use super::journal::{Event, Journal};
use super::run::{Progress, Stop};
use super::{HostResult, Outcome, Reboot};
use crate::driver::{self, ObserveOptions};
use crate::model::{Command, PackageManager, RolloutSpec};
use crate::observe::Target;
use crate::observed::{HostStatus, InstalledPackage, ObservedHost};
use crate::plan::HostPlan;
use crate::transport::ssh::KeyCache;
use crate::transport::{ExecOptions, Output, Transport, TransportError};

/// Everything one host's work needs.
pub(crate) struct HostJob {
    pub plan: HostPlan,
    pub target: Target,
    pub rollout: RolloutSpec,
    pub lock_wait: Duration,
    /// How long a package transaction is waited for (`apply.transactionTimeout`).
    pub transaction_timeout: Duration,
    pub min_free_disk_mib: u64,
    /// For a saved plan: the re-derivation its changes must pass at the host.
    pub saved_check: Option<Arc<crate::plan::SavedPlanCheck>>,
}

/// Shared by every host of a run.
pub(crate) struct Ctx {
    pub journal: Arc<Journal>,
    pub keys: Arc<KeyCache>,
    pub stop: Arc<Stop>,
    pub progress: Arc<dyn Progress>,
}

/// A step's end for the host: how and why.
struct End(Outcome, Vec<String>);

/// Why the run stops touching the host.
enum Abort {
    /// Ends with this outcome.
    End(End),
    /// A package transaction's end is unknown (the connection was lost, or it outlived
    /// `apply.transactionTimeout`): no `host-done` is journaled, so the host stays in flight
    /// for the next run's recovery.
    InFlight(Outcome, String),
}

impl From<End> for Abort {
    fn from(e: End) -> Abort {
        Abort::End(e)
    }
}

pub(crate) use crate::observe::connect;

pub(crate) async fn apply_host(job: &HostJob, ctx: &Ctx) -> HostResult {
    let name = job.plan.host.as_str();
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let journal_ok = ctx.journal.record(Some(name), Event::HostStarted);
    let steps = Steps {
        job,
        ctx,
        name,
        made: AtomicUsize::new(0),
        reboots: Mutex::new(Vec::new()),
    };
    let (outcome, detail, journal_end) = match journal_ok {
        Err(e) => (
            Outcome::NotStarted,
            vec![format!("not started: cannot journal: {e}")],
            false,
        ),
        Ok(()) => match steps.run().await {
            Ok(End(o, d)) | Err(Abort::End(End(o, d))) => (o, d, true),
            Err(Abort::InFlight(outcome, msg)) => (outcome, vec![msg], false),
        },
    };
    if journal_end {
        if let Err(e) = ctx.journal.record(
            Some(name),
            Event::HostDone {
                outcome,
                detail: detail.clone(),
            },
        ) {
            tracing::error!(host = name, "cannot journal the host's end: {e}");
        }
    }
    ctx.progress.host(
        name,
        &format!("{}: {}", outcome.as_str(), detail.join("; ")),
    );
    let reboots = std::mem::take(&mut *steps.reboots.lock().unwrap_or_else(|p| p.into_inner()));
    HostResult {
        host: name.to_string(),
        outcome,
        detail,
        changes: steps.made.load(Ordering::SeqCst),
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        started_at: Some(started_at),
        finished_at: Some(jiff::Timestamp::now()),
        reboots,
    }
}

struct Steps<'a> {
    job: &'a HostJob,
    ctx: &'a Ctx,
    name: &'a str,
    /// Package changes made and kept so far (the plan's count once verified; 0 after a
    /// rollback).
    made: AtomicUsize,
    /// Reboots made, boot id before and after.
    reboots: Mutex<Vec<Reboot>>,
}

/// `exit N` plus the last lines of output, if any.
fn failure(out: &Output) -> String {
    let code = out.exit.map_or("none".into(), |c| c.to_string());
    match tail(out) {
        t if t.is_empty() => format!("exit {code}"),
        t => format!("exit {code}: {t}"),
    }
}

fn tail(out: &Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(4);
    // Host output, bound for terminals, the journal and reports: controls escaped.
    crate::terminal::escape(&lines[start..].join(" | ")).into_owned()
}

/// A transport failure outside a transaction: the host is unreachable, unless it answered
/// with more output than allowed (then it failed, saying which command).
fn unreachable(e: &TransportError) -> End {
    match e {
        TransportError::OutputTooLarge { .. } => End(Outcome::Failed, vec![format!("{e}")]),
        _ => End(Outcome::Unreachable, vec![format!("{e}")]),
    }
}

/// A transaction whose end is unknown: why, and with what outcome the host is reported.
fn in_flight(what: &str, done: &[String], e: &TransportError) -> Abort {
    let before = if done.is_empty() {
        String::new()
    } else {
        format!("{}; ", done.join("; "))
    };
    match e {
        TransportError::Abandoned { seconds } => Abort::InFlight(
            Outcome::Failed,
            format!(
                "{before}the {what} is still running after {seconds}s (apply.transactionTimeout); it was not signalled and is left in flight: the next apply or observe waits for it and recovers the host"
            ),
        ),
        TransportError::NotSent { .. } => Abort::InFlight(
            Outcome::Unreachable,
            format!(
                "{before}the connection was lost before the {what} was sent ({e}): it did not run; the next apply or observe re-observes the host to confirm"
            ),
        ),
        _ => Abort::InFlight(
            Outcome::Unreachable,
            format!(
                "{before}the {what} was sent, then the connection was lost before it ended ({e}); whether it ran is unknown until the next apply or observe re-observes the host"
            ),
        ),
    }
}

/// The connection was lost reading the installed versions right after a transaction: what
/// is known is whether the transaction reported an exit status.
fn lost_after(what: &str, done: &[String], exit: Option<u32>, e: &TransportError) -> Abort {
    let before = if done.is_empty() {
        String::new()
    } else {
        format!("{}; ", done.join("; "))
    };
    let known = match exit {
        Some(code) => format!("the {what} was sent and exited {code}"),
        // The channel closed without an exit status: the connection dropped (or the
        // command was killed) while it ran, possibly before it started.
        None => format!(
            "the {what} was sent, but the connection closed without an exit status, so whether it ran is unknown"
        ),
    };
    Abort::InFlight(
        Outcome::Unreachable,
        format!(
            "{before}{known}; then reading the installed versions failed ({e}); the next apply or observe re-observes the host and says what it finds"
        ),
    )
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

impl Steps<'_> {
    fn say(&self, msg: &str) {
        self.ctx.progress.host(self.name, msg);
    }

    fn journal(&self, event: Event) -> Result<(), End> {
        self.ctx
            .journal
            .record(Some(self.name), event)
            .map_err(|e| End(Outcome::Failed, vec![format!("cannot journal: {e}")]))
    }

    fn pm(&self, observed: &ObservedHost) -> Result<PackageManager, End> {
        self.job
            .plan
            .package_manager
            .or(observed.package_manager)
            .ok_or_else(|| {
                End(
                    Outcome::Failed,
                    vec!["no package manager known for the host".into()],
                )
            })
    }

    async fn observe(&self, t: &dyn Transport, refresh: bool) -> Result<ObservedHost, End> {
        let options = ObserveOptions {
            refresh,
            ..self.job.target.options.clone()
        };
        let observed = driver::observe_host(self.name, t, &options).await;
        match &observed.status {
            HostStatus::Reachable => Ok(observed),
            HostStatus::Unreachable { reason } => {
                Err(End(Outcome::Unreachable, vec![reason.to_string()]))
            }
            HostStatus::Error { reason } => Err(End(
                Outcome::Failed,
                vec![format!("observation failed: {reason}")],
            )),
        }
    }

    async fn exec(&self, t: &dyn Transport, cmd: &str, timeout: Duration) -> Result<Output, End> {
        t.exec(cmd, None, timeout)
            .await
            .map_err(|e| unreachable(&e))
    }

    async fn installed(
        &self,
        t: &dyn Transport,
        pm: PackageManager,
    ) -> Result<Vec<InstalledPackage>, TransportError> {
        let out = t
            .exec(
                decide::installed_query(pm),
                None,
                self.job.target.options.command_timeout,
            )
            .await?;
        // Parsed off the async workers (up to the output cap of text).
        tokio::task::spawn_blocking(move || {
            let text = String::from_utf8_lossy(&out.stdout);
            match pm {
                PackageManager::Apt => driver::apt::parse_dpkg_query(&text).installed,
                PackageManager::Dnf => driver::dnf::parse_rpm_qa(&text).0,
            }
        })
        .await
        .map_err(|e| TransportError::Spawn(std::io::Error::other(e)))
    }

    async fn run(&self) -> Result<End, Abort> {
        let job = self.job;
        self.say("connecting");
        let t = connect(&job.target, &self.ctx.keys)
            .await
            .map_err(|e| unreachable(&e))?;
        self.on_connection(t).await
    }

    async fn on_connection(&self, t: Box<dyn Transport>) -> Result<End, Abort> {
        let job = self.job;
        let cmd_timeout = job.target.options.command_timeout;
        // Readiness: reachable (we are), the package manager free (waiting up to lockWait).
        self.say("observing");
        let wait_until = Instant::now() + job.lock_wait;
        let mut observed = self.observe(t.as_ref(), false).await?;
        let waiting_since = Instant::now();
        let mut said: Option<(String, Instant)> = None;
        while let Some(lock) = &observed.package_manager_locked {
            let lock = lock.to_string();
            if Instant::now() >= wait_until {
                t.close().await;
                return Err(End(
                    Outcome::Skipped,
                    vec![format!(
                        "the package manager is still locked ({lock}) after waiting {}s (apply.lockWait); not started, nothing changed",
                        job.lock_wait.as_secs()
                    )],
                )
                .into());
            }
            // Said once, again when the holder changes, and once a minute while it lasts:
            // not every poll.
            match &said {
                Some((text, at)) if *text == lock && at.elapsed() < Duration::from_secs(60) => {}
                Some((text, _)) if *text == lock => {
                    self.say(&format!(
                        "still waiting for the package manager lock ({lock}) after {}s",
                        waiting_since.elapsed().as_secs()
                    ));
                    said = Some((lock.clone(), Instant::now()));
                }
                _ => {
                    self.say(&format!(
                        "waiting for the package manager lock ({lock}), up to {}s (apply.lockWait)",
                        job.lock_wait.as_secs()
                    ));
                    said = Some((lock.clone(), Instant::now()));
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            observed = self.observe(t.as_ref(), false).await?;
        }
        if job.target.options.refresh {
            observed = self.observe(t.as_ref(), true).await?;
        }
        // Stale plan: the host moved since the plan was computed. A plan without the
        // fingerprint cannot say what it was computed from: refused.
        let Some(planned) = &job.plan.fingerprint else {
            t.close().await;
            return Err(End(
                Outcome::Failed,
                vec!["refused: the plan records no fingerprint of the state it was made from; nothing changed".into()],
            )
            .into());
        };
        if *planned != observed.fingerprint() {
            t.close().await;
            let mut detail = vec!["refused: the host changed since the plan was made".to_string()];
            detail.extend(decide::describe_drift(&job.plan, &observed));
            detail.push("nothing changed; make a new plan".into());
            return Err(End(Outcome::Stale, detail).into());
        }
        // A saved plan asks only for what the fleet commit derives from this very state.
        if let Some(check) = &job.saved_check {
            if let Err(e) = check.check_host(&job.plan, &observed) {
                t.close().await;
                return Err(End(
                    Outcome::Failed,
                    vec![format!("refused: {e}; nothing changed")],
                )
                .into());
            }
        }
        let pm = self.pm(&observed)?;
        // Built (and its names and versions checked) before anything runs on the host.
        let install = match decide::install_command(pm, &job.plan.changes, job.lock_wait.as_secs())
        {
            Ok(c) => c,
            Err(e) => {
                t.close().await;
                return Err(End(
                    Outcome::Failed,
                    vec![format!("refused: {e}; nothing changed")],
                )
                .into());
            }
        };
        // Free disk.
        let df = self.exec(t.as_ref(), "df -Pk /var", cmd_timeout).await?;
        if let Some(free) = decide::parse_df_free_mib(&String::from_utf8_lossy(&df.stdout)) {
            if free < job.min_free_disk_mib {
                t.close().await;
                return Err(End(
                    Outcome::Skipped,
                    vec![format!(
                        "only {free} MiB free on /var, {} MiB required (apply.minFreeDiskMib); not started, nothing changed",
                        job.min_free_disk_mib
                    )],
                )
                .into());
            }
        }
        if self.ctx.stop.interrupted() {
            t.close().await;
            return Err(End(
                Outcome::NotStarted,
                vec!["interrupted before its transaction; nothing changed".into()],
            )
            .into());
        }
        // Pre commands.
        for c in &job.rollout.pre {
            self.say(&format!("pre: {}", c.name));
            if let Err(why) = self.command(t.as_ref(), c).await {
                t.close().await;
                return Err(End(
                    Outcome::Failed,
                    vec![format!(
                        "pre command `{}` failed: {why}; nothing changed",
                        c.name
                    )],
                )
                .into());
            }
        }
        // Record the versions the transaction touches.
        let before = observed.installed.clone();
        let recorded: Versions = job
            .plan
            .changes
            .iter()
            .map(|c| {
                (
                    c.package.clone(),
                    observed
                        .installed_package(&c.package)
                        .map(|p| p.version.to_string()),
                )
            })
            .collect();
        self.journal(Event::VersionsRecorded {
            versions: recorded.clone(),
        })?;
        // The transaction.
        self.journal(Event::TransactionStarted {
            command: install.clone(),
        })?;
        self.say(&format!("installing {} package(s)", job.plan.changes.len()));
        let out = self
            .transaction(t.as_ref(), &install)
            .await
            .map_err(|e| in_flight("package transaction", &[], &e))?;
        self.journal(Event::TransactionFinished { exit: out.exit })?;
        let after = self
            .installed(t.as_ref(), pm)
            .await
            .map_err(|e| lost_after("package transaction", &[], out.exit, &e))?;
        // Everything the transaction really touched, pulled-in packages included.
        let footprint = decide::changed_packages(&before, &after);
        let before_versions: Versions = footprint
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    before
                        .iter()
                        .find(|p| p.name == *n)
                        .map(|p| p.version.to_string()),
                )
            })
            .chain(recorded.clone())
            .collect();
        let mut problems = Vec::new();
        if !out.success() {
            problems.push(format!(
                "the package transaction failed (exit {}): {}",
                out.exit.map_or("none".into(), |c| c.to_string()),
                tail(&out)
            ));
        }
        problems.extend(decide::version_mismatches(&job.plan.changes, &after));
        if problems.is_empty() {
            let names: Vec<String> = job.plan.changes.iter().map(|c| c.package.clone()).collect();
            problems.extend(self.integrity(t.as_ref(), pm, &names).await?);
        }
        if !problems.is_empty() {
            return self
                .rollback(t, pm, &before_versions, &after, problems)
                .await;
        }
        self.journal(Event::Verified)?;
        self.made.store(job.plan.changes.len(), Ordering::SeqCst);
        let mut detail = vec![format!(
            "installed {}",
            job.plan
                .changes
                .iter()
                .map(|c| format!("{} {}", c.package, c.to))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        detail.push("versions and integrity verified".into());
        // Health checks.
        for c in &job.rollout.health_checks {
            self.say(&format!("health check: {}", c.name));
            if let Err(why) = self.command(t.as_ref(), c).await {
                let problem = vec![format!("health check `{}` failed: {why}", c.name)];
                return self
                    .rollback(t, pm, &before_versions, &after, problem)
                    .await;
            }
        }
        if !job.rollout.health_checks.is_empty() {
            detail.push(format!(
                "{} health check(s) passed",
                job.rollout.health_checks.len()
            ));
        }
        // Reboot.
        let after_obs = self.observe(t.as_ref(), false).await?;
        let required = after_obs.reboot_required.required;
        let mut t = t;
        let mut outcome = Outcome::Compliant;
        if decide::should_reboot(job.rollout.reboot, required) {
            let old = after_obs.boot_id.clone().unwrap_or_default();
            t = self.reboot(t, &old, "installed and verified, but").await?;
            detail.push("rebooted (new boot id)".into());
            // What fails only at boot (a service that does not start on the new kernel or
            // library) shows only now: the health checks run again.
            for c in &job.rollout.health_checks {
                self.say(&format!("health check after the reboot: {}", c.name));
                if let Err(why) = self.command(t.as_ref(), c).await {
                    let problem = vec![format!(
                        "health check `{}` failed after the reboot: {why}",
                        c.name
                    )];
                    return self
                        .rollback_after_reboot(t, pm, &before_versions, &after, problem)
                        .await;
                }
            }
            if !job.rollout.health_checks.is_empty() {
                detail.push("health checks passed again after the reboot".into());
            }
        } else if required {
            outcome = Outcome::PendingReboot;
            detail.push("needs a reboot; the rollout's reboot policy is `never`".into());
        }
        // Post commands.
        for c in &job.rollout.post {
            self.say(&format!("post: {}", c.name));
            if let Err(why) = self.command(t.as_ref(), c).await {
                t.close().await;
                detail.push(format!(
                    "post command `{}` failed: {why} (the packages stay at the planned versions)",
                    c.name
                ));
                return Ok(End(Outcome::Failed, detail));
            }
        }
        t.close().await;
        Ok(End(outcome, detail))
    }

    /// Runs a package transaction (install or rollback): never signalled, waited for up to
    /// `apply.transactionTimeout`, with a progress line every minute (every half
    /// `ssh.commandTimeout`, when shorter) saying it is still running.
    async fn transaction(
        &self,
        t: &dyn Transport,
        command: &str,
    ) -> Result<Output, TransportError> {
        let deadline = self.job.transaction_timeout;
        let run = t.exec_with(command, None, ExecOptions::transaction(Some(deadline)));
        tokio::pin!(run);
        let every = self
            .job
            .target
            .options
            .command_timeout
            .checked_div(2)
            .unwrap_or_default()
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let started = Instant::now();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut run => return out,
                _ = tick.tick() => self.say(&format!(
                    "the package transaction is still running after {}s; waiting for it (never signalled; apply.transactionTimeout {}s)",
                    started.elapsed().as_secs(),
                    deadline.as_secs()
                )),
            }
        }
    }

    /// Runs a rollout command with its timeout and retries.
    async fn command(&self, t: &dyn Transport, c: &Command) -> Result<(), String> {
        let timeout = c
            .timeout
            .as_deref()
            .and_then(|s| crate::duration::parse_duration(s).ok())
            .unwrap_or(Duration::from_secs(60));
        let attempts = c.retries.unwrap_or(1).max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match t.exec(&c.command, None, timeout).await {
                Ok(o) if o.success() => return Ok(()),
                Ok(o) => last = failure(&o),
                Err(e) => last = e.to_string(),
            }
            if attempt < attempts {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Err(if attempts > 1 {
            format!("{last} (after {attempts} attempts)")
        } else {
            last
        })
    }

    /// `dpkg --verify` / `rpm -V` of the packages; config-file differences are the admin's.
    async fn integrity(
        &self,
        t: &dyn Transport,
        pm: PackageManager,
        names: &[String],
    ) -> Result<Vec<String>, End> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let command = match decide::verify_command(pm, names) {
            Ok(c) => c,
            Err(e) => return Ok(vec![format!("integrity: not checked: {e}")]),
        };
        let out = self
            .exec(t, &command, self.job.target.options.command_timeout)
            .await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut problems = decide::integrity_problems(&text);
        if problems.is_empty() && !out.success() && !decide::has_config_lines(&text) {
            problems.push(format!(
                "integrity check failed (exit {})",
                out.exit.map_or("none".into(), |c| c.to_string())
            ));
        }
        Ok(problems
            .into_iter()
            .map(|p| format!("integrity: {p}"))
            .collect())
    }

    async fn rollback(
        &self,
        t: Box<dyn Transport>,
        pm: PackageManager,
        before: &Versions,
        after: &[InstalledPackage],
        problems: Vec<String>,
    ) -> Result<End, Abort> {
        let mut detail = problems;
        let steps: RollbackSteps = decide::rollback_steps(before, after);
        if self.job.rollout.rollback == crate::model::RollbackPolicy::Never {
            t.close().await;
            detail.push("not rolled back: the rollout's rollback policy is `never`".into());
            return Ok(End(Outcome::Failed, detail));
        }
        if steps.is_empty() {
            t.close().await;
            detail.push(
                "rolled back: nothing had changed (the package manager refused the transaction)"
                    .into(),
            );
            return Ok(End(Outcome::RolledBack, detail));
        }
        let cmd = match decide::rollback_command(pm, &steps, self.job.lock_wait.as_secs()) {
            Ok(c) => c,
            Err(e) => {
                t.close().await;
                detail.push(format!("not rolled back: {e}"));
                return Ok(End(Outcome::Failed, detail));
            }
        };
        self.say("rolling back");
        self.journal(Event::RollbackStarted {
            command: cmd.clone(),
        })?;
        let out = self
            .transaction(t.as_ref(), &cmd)
            .await
            .map_err(|e| in_flight("rollback", &detail, &e))?;
        self.journal(Event::TransactionFinished { exit: out.exit })?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let now = self
            .installed(t.as_ref(), pm)
            .await
            .map_err(|e| lost_after("rollback", &detail, out.exit, &e))?;
        let state: Vec<String> = steps
            .restore
            .iter()
            .chain(&steps.reinstall)
            .map(|(n, _)| n)
            .chain(steps.remove.iter())
            .map(|n| match now.iter().find(|p| p.name == n) {
                Some(p) => format!("{n} {} ({})", p.version, p.status),
                None => format!("{n} not installed"),
            })
            .collect();
        if !out.success() {
            let wanted: Vec<String> = steps
                .restore
                .iter()
                .chain(&steps.reinstall)
                .map(|(n, v)| match pm {
                    PackageManager::Apt => format!("{n}={v}"),
                    PackageManager::Dnf => format!("{n}-{v}"),
                })
                .collect();
            let gone = decide::unobtainable(pm, &text, &wanted);
            t.close().await;
            if !gone.is_empty() {
                detail.push(format!(
                    "cannot roll back: the previous versions can no longer be obtained from the host's repositories: {}",
                    gone.join(", ")
                ));
            } else {
                detail.push(format!("the rollback failed: {}", tail(&out)));
            }
            detail.push(format!("left at: {}", state.join(", ")));
            return Ok(End(Outcome::Failed, detail));
        }
        let mut wrong = decide::rollback_mismatches(&steps, &now);
        if wrong.is_empty() {
            let names: Vec<String> = steps
                .restore
                .iter()
                .chain(&steps.reinstall)
                .map(|(n, _)| n.clone())
                .collect();
            wrong.extend(self.integrity(t.as_ref(), pm, &names).await?);
        }
        t.close().await;
        if !wrong.is_empty() {
            detail.push(format!("the rollback did not verify: {}", wrong.join("; ")));
            detail.push(format!("left at: {}", state.join(", ")));
            return Ok(End(Outcome::Failed, detail));
        }
        self.made.store(0, Ordering::SeqCst);
        detail.push(format!(
            "rolled back to {} (verified)",
            steps
                .restore
                .iter()
                .chain(&steps.reinstall)
                .map(|(n, v)| format!("{n} {v}"))
                .chain(steps.remove.iter().map(|n| format!("{n} removed")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(End(Outcome::RolledBack, detail))
    }

    /// Rolls back a host that booted into the new versions, then (reboot policy permitting)
    /// boots it again so the restored versions are what runs.
    async fn rollback_after_reboot(
        &self,
        t: Box<dyn Transport>,
        pm: PackageManager,
        before: &Versions,
        after: &[InstalledPackage],
        problems: Vec<String>,
    ) -> Result<End, Abort> {
        let End(outcome, mut detail) = self.rollback(t, pm, before, after, problems).await?;
        if outcome != Outcome::RolledBack || !decide::should_reboot(self.job.rollout.reboot, true) {
            if outcome == Outcome::RolledBack {
                detail.push(
                    "the host still runs the versions it booted with; reboot it to run the restored ones"
                        .into(),
                );
            }
            return Ok(End(outcome, detail));
        }
        let t = match connect(&self.job.target, &self.ctx.keys).await {
            Ok(t) => t,
            Err(e) => {
                detail.push(format!(
                    "could not reconnect to reboot it ({e}); reboot it to run the restored versions"
                ));
                return Ok(End(outcome, detail));
            }
        };
        let old = match self
            .exec(
                t.as_ref(),
                "cat /proc/sys/kernel/random/boot_id",
                self.job.target.options.command_timeout,
            )
            .await
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Err(End(_, why)) => {
                t.close().await;
                detail.extend(why);
                detail.push("not rebooted again; reboot it to run the restored versions".into());
                return Ok(End(outcome, detail));
            }
        };
        match self.reboot(t, &old, "rolled back, but").await {
            Ok(t) => {
                t.close().await;
                detail.push("rebooted again to run the restored versions".into());
                Ok(End(outcome, detail))
            }
            Err(End(failed, why)) => {
                detail.extend(why);
                Ok(End(failed, detail))
            }
        }
    }

    /// Issues `reboot`, then reconnects until the host answers with a new boot id. `done`
    /// says what was achieved before, for the message when the host does not come back.
    async fn reboot(
        &self,
        t: Box<dyn Transport>,
        old: &str,
        done: &str,
    ) -> Result<Box<dyn Transport>, End> {
        let timeout = self
            .job
            .rollout
            .reboot_timeout
            .as_deref()
            .and_then(|s| crate::duration::parse_duration(s).ok())
            .unwrap_or(Duration::from_secs(600));
        self.journal(Event::RebootStarted {
            boot_id: old.to_string(),
        })?;
        self.say("rebooting");
        // The connection may drop before `reboot` answers: that is expected.
        let _ = t
            .exec(
                "nohup reboot >/dev/null 2>&1 </dev/null &",
                None,
                Duration::from_secs(30),
            )
            .await;
        t.close().await;
        let deadline = Instant::now() + timeout;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(t) = connect(&self.job.target, &self.ctx.keys).await {
                if let Ok(out) = t
                    .exec(
                        "cat /proc/sys/kernel/random/boot_id",
                        None,
                        Duration::from_secs(30),
                    )
                    .await
                {
                    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if out.success() && !id.is_empty() && id != old {
                        self.journal(Event::Rebooted {
                            boot_id: id.clone(),
                        })?;
                        self.reboots
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Reboot {
                                from: old.to_string(),
                                to: id,
                            });
                        return Ok(t);
                    }
                }
                t.close().await;
            }
            if Instant::now() >= deadline {
                return Err(End(
                    Outcome::Failed,
                    vec![format!(
                        "{done} the host did not come back with a new boot id within {}s after `reboot`",
                        secs(timeout)
                    )],
                ));
            }
        }
    }
}
