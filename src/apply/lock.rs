//! One apply at a time per fleet: an OS file lock (`flock(2)` through std's `File::try_lock`)
//! on `<repo>/.patchkeeper/apply.lock`. The kernel releases it when its holder exits, however
//! it exits (`kill -9` included), so there is no staleness to guess: a lock that is held has
//! a live holder, and a free one is free. The file also says who holds it (pid, host name,
//! start time, run), written after the lock is taken, for the message a refused apply
//! prints; the lock itself is the kernel's.
//!
//! The file is never removed (removing it would let a second apply lock a new file at the
//! same path while the first still holds the old one); the holder clears its details when
//! it releases. Like every file std opens, it is close-on-exec: commands patchkeeper starts
//! never inherit the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another apply (or a recovery) holds it.
    #[error("another apply holds the fleet lock: {} (`{path}`)", describe(holder.as_deref()))]
    Held {
        /// Who, as the holder wrote it (`None`: it has not yet, or the file is unreadable).
        holder: Option<Box<Holder>>,
        /// The lock file.
        path: String,
    },
    /// The lock file cannot be created, locked or written.
    #[error("fleet lock `{path}`: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn describe(holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!(
            "pid {} on {} since {} (run {})",
            h.pid, h.host, h.started_at, h.run
        ),
        None => "a process that has not said who it is yet".into(),
    }
}

/// What the lock file says about its holder.
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

/// A held lock; released (by the kernel) when dropped or when the process exits.
#[derive(Debug)]
pub struct FleetLock {
    file: File,
    path: PathBuf,
}

/// This machine's host name.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl FleetLock {
    /// Takes the fleet lock for run `run` without waiting, or says who holds it.
    pub fn acquire(state_dir: &Path, run: &str) -> Result<FleetLock, LockError> {
        let path = state_dir.join("apply.lock");
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        super::create_state_dir(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<Holder>(text.trim())
                    .ok()
                    .map(Box::new);
                return Err(LockError::Held {
                    holder,
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who we are, replacing whatever an earlier holder left behind.
        let me = Holder {
            pid: std::process::id(),
            host: this_host(),
            started_at: jiff::Timestamp::now().to_string(),
            run: run.to_string(),
        };
        let text = serde_json::to_string(&me).expect("holders always serialize");
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(FleetLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        // Still ours here: clear the details so nobody is named after we are gone. Closing
        // the file (right after) releases the lock.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let first = FleetLock::acquire(dir.path(), "r1").unwrap();
        let err = FleetLock::acquire(dir.path(), "r2").unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "another apply holds the fleet lock: pid {} on ",
                std::process::id()
            )) && err.to_string().contains("(run r1)"),
            "{err}"
        );
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("apply.lock")).unwrap(),
            ""
        );
        FleetLock::acquire(dir.path(), "r3").unwrap();
    }

    #[test]
    fn applies_racing_for_the_lock_get_it_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(8);
        let results: Vec<Result<FleetLock, LockError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (dir, start) = (dir.path(), &start);
                    s.spawn(move || {
                        start.wait();
                        FleetLock::acquire(dir, &format!("r{i}"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<&FleetLock> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, LockError::Held { .. }), "{e}");
            }
        }
    }

    #[test]
    fn a_killed_holder_releases_the_lock_and_its_leftovers_name_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apply.lock");
        // Another process holds it: util-linux flock(1) takes the same flock(2) lock
        // (`--close`: in flock itself, not inherited by the command it runs).
        let mut holder = std::process::Command::new("flock")
            .arg("--close")
            .arg(&path)
            .args(["sleep", "600"])
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let err = loop {
            match FleetLock::acquire(dir.path(), "r") {
                Err(e) => break e,
                // flock(1) may not have locked it yet: ours was free; try again.
                Ok(lock) => drop(lock),
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30));
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(
            err.to_string(),
            format!(
                "another apply holds the fleet lock: a process that has not said who it is yet (`{}`)",
                path.display()
            )
        );
        let sleeper = std::process::Command::new("pgrep")
            .args(["-P", &holder.id().to_string()])
            .output()
            .unwrap();
        holder.kill().unwrap(); // SIGKILL: no chance to clean up
        holder.wait().unwrap();
        // (Its `sleep` lives on without the lock; end it too.)
        for pid in String::from_utf8_lossy(&sleeper.stdout).split_whitespace() {
            let _ = std::process::Command::new("kill").arg(pid).status();
        }
        // What a killed apply leaves: its details, naming a dead process. They do not matter.
        std::fs::write(
            &path,
            r#"{"pid":4194304,"host":"gone","startedAt":"2026-11-25T00:00:00Z","run":"x"}"#,
        )
        .unwrap();
        let lock = FleetLock::acquire(dir.path(), "after").unwrap();
        assert!(std::fs::read_to_string(lock.path())
            .unwrap()
            .contains("\"run\":\"after\""));
    }
}
