//! Crash recovery: hosts an earlier run left in flight (started, never finished — a crash,
//! `kill -9`, a lost connection, a transaction past `apply.transactionTimeout`) are
//! re-observed, waited for while their package manager is still locked (`apply.lockWait`:
//! the interrupted transaction may still be running), repaired where the package database
//! shows an unfinished transaction (`dpkg --configure -a`, `dnf remove --duplicates`; a
//! repair is a package transaction, never signalled), and re-observed again.
//!
//! Guarantees: `recovered` is journaled only when the host was re-observed consistent
//! afterwards; anything else (unreachable, still locked, the repair or the re-observation
//! failed) is journaled `recovery-failed`, keeps the host in flight for the next run, and
//! is returned as a failure so this run leaves the host alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::journal::{Event, InFlight, Journal, Shared};
use super::run::Progress;
use crate::driver::{self, ObserveOptions};
use crate::model::PackageManager;
use crate::observe::{self, Target};
use crate::observed::ObservedHost;
use crate::transport::ssh::KeyCache;
use crate::transport::{ExecOptions, Transport};
use crate::validate::ValidFleet;

/// What recovering one host found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The host.
    pub host: String,
    /// Consistent again (journaled `recovered`); otherwise it stays in flight.
    pub recovered: bool,
    /// What was found and done, step by step.
    pub detail: Vec<String>,
}

impl Recovery {
    /// `host NAME: step; step`, for people.
    pub fn line(&self) -> String {
        let end = if self.recovered {
            ""
        } else {
            "; not recovered: it stays in flight"
        };
        format!("host {}: {}{end}", self.host, self.detail.join("; "))
    }

    /// Why this run leaves the host alone (for failed recoveries).
    pub fn blocked_reason(&self) -> String {
        format!(
            "not started: recovering its interrupted transaction failed ({}); it stays in flight for the next run",
            self.detail
                .iter()
                .skip(1)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// Settings recovery needs.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryOptions {
    /// How long to wait for a held package-manager lock (`apply.lockWait`).
    pub lock_wait: Duration,
    /// How long a repair transaction is waited for (`apply.transactionTimeout`).
    pub transaction_timeout: Duration,
    /// Pause between observations while the lock is held.
    pub poll: Duration,
}

/// Recovers every host of `in_flight`, one after the other, journaling each outcome.
pub async fn recover(
    fleet: &ValidFleet,
    journal: &Journal,
    in_flight: &[InFlight],
    options: RecoveryOptions,
    progress: &dyn Progress,
    gate: Option<&dyn super::HostGate>,
) -> Vec<Recovery> {
    let settings = fleet.settings();
    let root = fleet.fleet().root.clone();
    let keys = KeyCache::new();
    let mut out = Vec::new();
    // A replica killed mid-transaction still holds the host's lease until it expires: one
    // TTL from now, every lease of a dead holder is gone (a live holder keeps its own); half
    // a TTL more for the server, which expires keys a little after their age.
    let patience = Instant::now() + gate.map_or(Duration::ZERO, |g| g.expiry() * 3 / 2);
    for f in in_flight {
        let mut detail = vec![format!(
            "was in flight in run {} (last step {} at {})",
            f.run, f.last_event, f.at
        )];
        let recovered = match fleet.host(&f.host) {
            None => {
                // Nothing left to recover: it is not ours any more.
                detail.push("no longer in the inventory".into());
                true
            }
            Some(host) => match observe::target_for(&root, &settings, host, Some(false)) {
                Err(e) => {
                    detail.push(e.to_string());
                    false
                }
                // With several replicas, recovery is a transaction on the host like any
                // other: never while another replica holds the host's lease.
                Ok(target) => match gate {
                    Some(g) => match enter(g, &f.host, journal.run(), patience).await {
                        Ok(pass) => {
                            let ok = recover_host(
                                &target,
                                &keys,
                                options,
                                progress,
                                &f.recorded,
                                &mut detail,
                            )
                            .await;
                            pass.leave().await;
                            ok
                        }
                        Err(why) => {
                            detail.push(why);
                            false
                        }
                    },
                    None => {
                        recover_host(&target, &keys, options, progress, &f.recorded, &mut detail)
                            .await
                    }
                },
            },
        };
        let event = if recovered {
            Event::Recovered {
                of_run: f.run.clone(),
                detail: detail.clone(),
            }
        } else {
            Event::RecoveryFailed {
                of_run: f.run.clone(),
                detail: detail.clone(),
            }
        };
        if let Err(e) = journal.record(Some(&f.host), event) {
            detail.push(format!("cannot journal the recovery: {e}"));
        }
        out.push(Recovery {
            host: f.host.clone(),
            recovered,
            detail,
        });
    }
    out
}

/// `gate`'s pass for `host`, tried again until `until` while it is refused.
async fn enter(
    gate: &dyn super::HostGate,
    host: &str,
    run: &str,
    until: Instant,
) -> Result<Box<dyn super::HostPass>, String> {
    let every = (gate.expiry() / 10).max(Duration::from_millis(100));
    loop {
        match gate.enter(host, run).await {
            Ok(pass) => return Ok(pass),
            Err(why) if Instant::now() >= until => return Err(why),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

async fn recover_host(
    target: &Target,
    keys: &KeyCache,
    options: RecoveryOptions,
    progress: &dyn Progress,
    recorded: &BTreeMap<String, Option<String>>,
    detail: &mut Vec<String>,
) -> bool {
    let t = match observe::connect(target, keys).await {
        Ok(t) => t,
        Err(e) => {
            detail.push(format!("still unreachable ({e})"));
            return false;
        }
    };
    let ok = repair(t.as_ref(), target, options, progress, recorded, detail).await;
    t.close().await;
    ok
}

/// Waits for the lock, repairs if needed, and says whether the host is consistent now.
async fn repair(
    t: &dyn Transport,
    target: &Target,
    options: RecoveryOptions,
    progress: &dyn Progress,
    recorded: &BTreeMap<String, Option<String>>,
    detail: &mut Vec<String>,
) -> bool {
    let name = target.name.as_str();
    let observe_options = ObserveOptions {
        refresh: false,
        ..target.options.clone()
    };
    let until = Instant::now() + options.lock_wait;
    let mut observed = driver::observe_host(name, t, &observe_options).await;
    while let Some(lock) = observed
        .package_manager_locked
        .clone()
        .filter(|_| observed.status.is_reachable())
    {
        // The interrupted transaction may still be running: never repair under it.
        if Instant::now() >= until {
            detail.push(format!(
                "the package manager is still locked ({lock}) after waiting {}s (apply.lockWait); not repaired",
                options.lock_wait.as_secs()
            ));
            return false;
        }
        progress.host(
            name,
            &format!("recovery: waiting for the package manager lock ({lock})"),
        );
        tokio::time::sleep(options.poll).await;
        observed = driver::observe_host(name, t, &observe_options).await;
    }
    if !observed.status.is_reachable() {
        detail.push(format!(
            "observation failed: {}",
            observe::status_text(&observed)
        ));
        return false;
    }
    if observed.db_health.is_empty() {
        detail.push("re-observed: the package database is consistent".into());
        detail.extend(found(recorded, &observed));
        return true;
    }
    let Some(pm) = observed.package_manager else {
        detail.push(format!(
            "the package database reports unfinished packages ({}) and no package manager is known",
            unfinished(&observed)
        ));
        return false;
    };
    let command = super::decide::repair_command(pm);
    detail.push(format!(
        "the package transaction was interrupted ({}); running `{command}`",
        unfinished(&observed)
    ));
    progress.host(name, &format!("recovery: running `{command}`"));
    let options_tx = ExecOptions::transaction(Some(options.transaction_timeout));
    match t.exec_with(command, None, options_tx).await {
        Ok(o) if o.success() => detail.push("repaired".into()),
        Ok(o) => {
            detail.push(format!(
                "`{command}` failed (exit {}): {}",
                o.exit.map_or("none".into(), |c| c.to_string()),
                last_lines(&o.stderr)
            ));
            return false;
        }
        Err(e) => {
            detail.push(format!("`{command}` failed: {e}"));
            return false;
        }
    }
    // Success is what the host says afterwards, not what the repair's exit status said.
    let after = driver::observe_host(name, t, &observe_options).await;
    if !after.status.is_reachable() {
        detail.push(format!(
            "re-observation after the repair failed: {}",
            observe::status_text(&after)
        ));
        return false;
    }
    if !after.db_health.is_empty() {
        detail.push(format!(
            "still unfinished after the repair: {}",
            unfinished(&after)
        ));
        return false;
    }
    detail.push(format!(
        "re-observed: the package database is consistent{}",
        match pm {
            PackageManager::Apt => "",
            PackageManager::Dnf => " (no duplicates left)",
        }
    ));
    detail.extend(found(recorded, &after));
    true
}

/// What the host has of the packages the interrupted transaction was to change, against
/// the versions recorded before it: whether it changed nothing, or what.
fn found(recorded: &BTreeMap<String, Option<String>>, observed: &ObservedHost) -> Option<String> {
    if recorded.is_empty() {
        return None;
    }
    let now: BTreeMap<&str, Option<String>> = recorded
        .keys()
        .map(|n| {
            (
                n.as_str(),
                observed.installed_package(n).map(|p| p.version.to_string()),
            )
        })
        .collect();
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "not installed".into());
    let moved: Vec<String> = recorded
        .iter()
        .filter(|(n, v)| now.get(n.as_str()) != Some(*v))
        .map(|(n, v)| {
            format!(
                "{n} {} -> {}",
                shown(v),
                shown(now.get(n.as_str()).unwrap_or(&None))
            )
        })
        .collect();
    Some(if moved.is_empty() {
        format!(
            "found the versions recorded before the transaction ({}): it changed nothing",
            recorded
                .iter()
                .map(|(n, v)| format!("{n} {}", shown(v)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("found the transaction's changes: {}", moved.join(", "))
    })
}

fn unfinished(observed: &ObservedHost) -> String {
    observed
        .db_health
        .iter()
        .map(|b| format!("{} {} {}", b.name, b.version, b.state))
        .collect::<Vec<_>>()
        .join(", ")
}

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Reads the journal of the fleet at `repo` and recovers the hosts left in flight (used by
/// `apply`, `serve` and `observe` before they do anything else, under the fleet lock).
pub async fn recover_fleet(
    fleet: &ValidFleet,
    repo: &Path,
    run: &str,
    progress: &dyn Progress,
) -> Result<Vec<Recovery>, String> {
    recover_fleet_gated(fleet, repo, run, progress, None).await
}

/// [`recover_fleet`], each host recovered only under `gate`'s pass (with several `serve`
/// replicas, the host's transaction lease); a host whose pass is refused is not recovered
/// by this run and stays in flight.
pub async fn recover_fleet_gated(
    fleet: &ValidFleet,
    repo: &Path,
    run: &str,
    progress: &dyn Progress,
    gate: Option<&dyn super::HostGate>,
) -> Result<Vec<Recovery>, String> {
    recover_fleet_shared(fleet, repo, run, progress, gate, None).await
}

/// [`recover_fleet_gated`] over the local journal and `shared` (the cluster's journal
/// stream): hosts any replica left in flight are recovered, and the outcome is appended to
/// `shared` too, so no other replica recovers (or reports) the host again.
pub async fn recover_fleet_shared(
    fleet: &ValidFleet,
    repo: &Path,
    run: &str,
    progress: &dyn Progress,
    gate: Option<&dyn super::HostGate>,
    shared: Option<std::sync::Arc<dyn Shared>>,
) -> Result<Vec<Recovery>, String> {
    let dir = super::state_dir(repo);
    let mut entries = super::journal::read(&dir).map_err(|e| e.to_string())?;
    if let Some(s) = &shared {
        let theirs = s
            .entries()
            .map_err(|e| format!("cannot read the shared journal: {e}"))?;
        entries = super::journal::merge(entries, theirs);
    }
    let open = super::journal::in_flight(&entries);
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let settings = fleet.settings();
    let options = RecoveryOptions {
        lock_wait: super::duration_setting(&settings.apply.lock_wait, super::DEFAULT_LOCK_WAIT),
        transaction_timeout: super::duration_setting(
            &settings.apply.transaction_timeout,
            super::DEFAULT_TRANSACTION_TIMEOUT,
        ),
        poll: Duration::from_secs(2),
    };
    let journal = Journal::open(&dir, run, "recovery")
        .map_err(|e| e.to_string())?
        .with_shared(shared);
    Ok(recover(fleet, &journal, &open, options, progress, gate).await)
}
