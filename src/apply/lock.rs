//! One apply at a time per fleet: a lock file in the fleet's state directory
//! (`<repo>/.patchkeeper/apply.lock`), created exclusively, holding the holder's pid, host
//! name and start time. A lock whose holder is gone (same machine, pid no longer running) or
//! that is older than `apply.staleLockAfter` is reported as stale with the command that
//! breaks it; a live holder's lock is never broken.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another apply runs.
    #[error("another apply holds the fleet lock: pid {} on {} since {} (`{path}`)", holder.pid, holder.host, holder.started_at)]
    Held {
        /// Who.
        holder: Box<Holder>,
        /// The lock file.
        path: String,
    },
    /// The holder is gone or the lock is too old.
    #[error("the fleet lock `{path}` is stale: {why} (pid {} on {} since {})\n\nhint: make sure no apply runs against this fleet, then break it with `patchkeeper apply --repo {repo} --break-lock`", holder.pid, holder.host, holder.started_at)]
    Stale {
        /// Who held it.
        holder: Box<Holder>,
        /// Why it is stale.
        why: String,
        /// The lock file.
        path: String,
        /// The fleet repo (for the hint).
        repo: String,
    },
    /// The lock file cannot be created or read.
    #[error("fleet lock `{path}`: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What the lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name of the machine.
    pub host: String,
    /// When it took the lock (RFC 3339).
    pub started_at: String,
    /// Its run id.
    pub run: String,
}

/// A held lock; removed on drop.
#[derive(Debug)]
pub struct FleetLock {
    path: PathBuf,
}

/// This machine's host name.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a lock is stale, and why (pure but for the caller's view of the machine).
pub fn staleness(
    holder: &Holder,
    here: &str,
    alive: impl Fn(u32) -> bool,
    now: jiff::Timestamp,
    stale_after: Duration,
) -> Option<String> {
    if holder.host == here && !alive(holder.pid) {
        return Some(format!("process {} is not running", holder.pid));
    }
    let started: jiff::Timestamp = match holder.started_at.parse() {
        Ok(t) => t,
        Err(_) => return Some("its start time is unreadable".into()),
    };
    let age = now.duration_since(started);
    let limit = jiff::SignedDuration::try_from(stale_after).unwrap_or(jiff::SignedDuration::MAX);
    (age > limit).then(|| {
        format!(
            "it is older than apply.staleLockAfter ({}s)",
            stale_after.as_secs()
        )
    })
}

impl FleetLock {
    /// Takes the lock for run `run`, or says who holds it. With `break_stale`, a stale lock is
    /// removed first (a live one never is).
    pub fn acquire(
        state_dir: &Path,
        repo: &Path,
        run: &str,
        stale_after: Duration,
        break_stale: bool,
    ) -> Result<FleetLock, LockError> {
        let path = state_dir.join("apply.lock");
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let me = Holder {
            pid: std::process::id(),
            host: this_host(),
            started_at: jiff::Timestamp::now().to_string(),
            run: run.to_string(),
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let text = serde_json::to_string(&me).expect("holders always serialize");
                    f.write_all(text.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(FleetLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).map_err(io)?;
                    // A holder that died between create and write leaves an empty file.
                    let holder: Holder = serde_json::from_str(&text).unwrap_or(Holder {
                        pid: 0,
                        host: me.host.clone(),
                        started_at: String::new(),
                        run: String::new(),
                    });
                    match staleness(
                        &holder,
                        &me.host,
                        pid_alive,
                        jiff::Timestamp::now(),
                        stale_after,
                    ) {
                        None => {
                            return Err(LockError::Held {
                                holder: Box::new(holder),
                                path: path.display().to_string(),
                            })
                        }
                        Some(why) if !break_stale => {
                            return Err(LockError::Stale {
                                holder: Box::new(holder),
                                why,
                                path: path.display().to_string(),
                                repo: repo.display().to_string(),
                            })
                        }
                        Some(why) => {
                            tracing::warn!("breaking the stale fleet lock: {why}");
                            eprintln!(
                                "Breaking the stale fleet lock of pid {} on {} ({why})",
                                holder.pid, holder.host
                            );
                            std::fs::remove_file(&path).map_err(io)?;
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(std::io::Error::other(
            "another process took the lock while a stale one was broken",
        )))
    }
}

impl FleetLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32, host: &str, at: &str) -> Holder {
        Holder {
            pid,
            host: host.into(),
            started_at: at.into(),
            run: "r".into(),
        }
    }

    #[test]
    fn stale_when_dead_here_or_too_old() {
        let now: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let six_h = Duration::from_secs(6 * 3600);
        let fresh = holder(10, "ci-1", "2026-11-25T11:00:00Z");
        assert_eq!(staleness(&fresh, "ci-1", |_| true, now, six_h), None);
        assert!(staleness(&fresh, "ci-1", |_| false, now, six_h)
            .unwrap()
            .contains("not running"));
        // Another machine's pid cannot be checked from here: only age counts.
        assert_eq!(staleness(&fresh, "ci-2", |_| false, now, six_h), None);
        let old = holder(10, "ci-2", "2026-11-25T05:00:00Z");
        assert!(staleness(&old, "ci-1", |_| true, now, six_h)
            .unwrap()
            .contains("older"));
    }

    #[test]
    fn second_acquire_is_refused_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86400);
        let first = FleetLock::acquire(dir.path(), dir.path(), "r1", day, false).unwrap();
        let err = FleetLock::acquire(dir.path(), dir.path(), "r2", day, false).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err
            .to_string()
            .contains(&format!("pid {}", std::process::id())));
        drop(first);
        FleetLock::acquire(dir.path(), dir.path(), "r3", day, false).unwrap();
    }

    #[test]
    fn dead_holder_is_stale_and_can_be_broken() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86400);
        // pid 0 is never a process of ours: /proc/0 does not exist.
        let dead = holder(0, &this_host(), &jiff::Timestamp::now().to_string());
        std::fs::write(
            dir.path().join("apply.lock"),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let err = FleetLock::acquire(dir.path(), Path::new("/fleet"), "r", day, false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("stale") && msg.contains("patchkeeper apply --repo /fleet --break-lock"),
            "{msg}"
        );
        FleetLock::acquire(dir.path(), Path::new("/fleet"), "r", day, true).unwrap();
    }
}
