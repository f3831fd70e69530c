//! The apply journal: an append-only JSON-lines file in the fleet's state directory
//! (`<repo>/.patchkeeper/journal.jsonl`), one line per host step, written in one `write`
//! and flushed to disk (fsync) before the step it announces is taken. After a crash or
//! `kill -9`, the next run reads it back: hosts started but never finished were in flight
//! ([`in_flight`]); hosts a plan already finished are not redone when the same plan is
//! applied again ([`finished`]).
//!
//! A crash in the middle of a `write` leaves a torn last line (no newline): its step was
//! never taken (the write had not returned). Opening the journal heals it, cutting the file
//! back to its last whole line, so the next line is not glued to the torn one; reading
//! skips lines that do not parse and reads bytes that are not UTF-8 lossily, so one damaged
//! line never hides the others.
//!
//! With several `serve` replicas, every line is also appended to a [`Shared`] copy (a
//! JetStream stream, `cluster::journal`) before the step it announces is taken, so another
//! replica can recover a host whose replica died mid-transaction; recovery then reads both
//! ([`merge`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Outcome;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file cannot be opened, written or synced.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The shared copy (the cluster's journal stream) did not take the line.
    #[error("shared journal: {0}")]
    Shared(String),
}

/// A copy of the journal every replica of a cluster reads: the steps of one replica are
/// there for another to recover. Appends are durable (acknowledged) when they return.
pub trait Shared: Send + Sync {
    /// Appends `entry`; `Err(why)` when it was not stored.
    fn append(&self, entry: &Entry) -> Result<(), String>;
    /// Every stored entry, oldest first.
    fn entries(&self) -> Result<Vec<Entry>, String>;
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When (RFC 3339).
    pub at: String,
    /// The run id (one per `apply` invocation).
    pub run: String,
    /// The plan id (SHA-256 of the plan's JSON).
    pub plan: String,
    /// The host, for host steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What happened.
    pub event: Event,
}

/// A step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// An apply run began.
    RunStarted {
        /// Its pid.
        pid: u32,
    },
    /// A host's work began.
    HostStarted,
    /// The versions of every package the transaction touches, before it.
    VersionsRecorded {
        /// Package → version (`None`: not installed).
        versions: BTreeMap<String, Option<String>>,
    },
    /// The package transaction was sent.
    TransactionStarted {
        /// The exact command.
        command: String,
    },
    /// The package transaction returned.
    TransactionFinished {
        /// Its exit status.
        exit: Option<u32>,
    },
    /// Versions and integrity checked.
    Verified,
    /// A rollback was sent.
    RollbackStarted {
        /// The exact command.
        command: String,
    },
    /// A reboot was issued.
    RebootStarted {
        /// The boot id before it.
        boot_id: String,
    },
    /// The host came back with a new boot id.
    Rebooted {
        /// The new boot id.
        boot_id: String,
    },
    /// A host's work ended.
    HostDone {
        /// How it ended.
        outcome: Outcome,
        /// Why, in words.
        detail: Vec<String>,
    },
    /// A host left in flight by an earlier run was re-observed (and repaired): it is
    /// consistent again. Written only when that was verified.
    Recovered {
        /// The run it was in flight in.
        of_run: String,
        /// What was found and done.
        detail: Vec<String>,
    },
    /// Recovering a host left in flight failed (unreachable, still locked, repair or
    /// re-observation failed): it stays in flight, and this run does not touch it.
    RecoveryFailed {
        /// The run it was in flight in.
        of_run: String,
        /// What was found and tried.
        detail: Vec<String>,
    },
    /// The run ended.
    RunFinished,
}

impl Event {
    /// Kebab-case name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run-started",
            Event::HostStarted => "host-started",
            Event::VersionsRecorded { .. } => "versions-recorded",
            Event::TransactionStarted { .. } => "transaction-started",
            Event::TransactionFinished { .. } => "transaction-finished",
            Event::Verified => "verified",
            Event::RollbackStarted { .. } => "rollback-started",
            Event::RebootStarted { .. } => "reboot-started",
            Event::Rebooted { .. } => "rebooted",
            Event::HostDone { .. } => "host-done",
            Event::Recovered { .. } => "recovered",
            Event::RecoveryFailed { .. } => "recovery-failed",
            Event::RunFinished => "run-finished",
        }
    }
}

/// The journal file, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    run: String,
    plan: String,
    shared: Option<std::sync::Arc<dyn Shared>>,
}

impl std::fmt::Debug for dyn Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// Where the journal of a fleet lives.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.jsonl")
}

impl Journal {
    /// Opens (creating) the journal for run `run` of plan `plan`.
    pub fn open(state_dir: &Path, run: &str, plan: &str) -> Result<Journal, JournalError> {
        let path = journal_path(state_dir);
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        super::create_state_dir(state_dir).map_err(io)?;
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        heal(&file).map_err(io)?;
        if created {
            // The new file's name is durable only once its directory is.
            File::open(state_dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(Journal {
            path,
            file: Mutex::new(file),
            run: run.to_string(),
            plan: plan.to_string(),
            shared: None,
        })
    }

    /// Also appends every line to `shared` (with several replicas, the cluster's stream).
    pub fn with_shared(mut self, shared: Option<std::sync::Arc<dyn Shared>>) -> Journal {
        self.shared = shared;
        self
    }

    /// Appends one step and syncs it to disk before returning.
    pub fn record(&self, host: Option<&str>, event: Event) -> Result<(), JournalError> {
        let entry = Entry {
            at: jiff::Timestamp::now().to_string(),
            run: self.run.clone(),
            plan: self.plan.clone(),
            host: host.map(str::to_owned),
            event,
        };
        let mut line = serde_json::to_string(&entry).expect("journal entries always serialize");
        line.push('\n');
        let io = |source| JournalError::Io {
            path: self.path.display().to_string(),
            source,
        };
        // One write per line under the lock, so concurrent hosts never interleave bytes.
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(line.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        // A step another replica could not see must not be taken: it could not recover it.
        match &self.shared {
            Some(shared) => shared.append(&entry).map_err(JournalError::Shared),
            None => Ok(()),
        }
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }
}

/// Cuts a torn last line (bytes after the last newline) off the journal.
fn heal(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Only the tail can be torn: look back from the end for the last newline.
    let mut reader = file;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole < len {
                tracing::warn!(
                    "journal: cutting a torn last line ({} bytes) left by a crash",
                    len - whole
                );
                file.set_len(whole)?;
                file.sync_data()?;
            }
            return Ok(());
        }
        if start == 0 {
            // Not one whole line: all of it is torn.
            tracing::warn!("journal: cutting a torn line ({len} bytes) left by a crash");
            file.set_len(0)?;
            return file.sync_data();
        }
        end = start;
    }
}

/// Reads every readable entry: a torn last line (a crash mid-write) and lines that do not
/// parse are skipped; bytes that are not UTF-8 are read lossily.
pub fn read(state_dir: &Path) -> Result<Vec<Entry>, JournalError> {
    let path = journal_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(JournalError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The entries of a journal's bytes (what [`read`] reads): lines that do not parse are
/// skipped, bytes that are not UTF-8 read lossily. Pure.
pub fn parse(bytes: &[u8]) -> Vec<Entry> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The entries recovery reads with several replicas: the local file's lines the shared
/// copy lacks (written before this replica joined a cluster, or not acknowledged by it),
/// then the shared copy's, which hold every replica's steps in the order they were stored.
/// A line in both (this replica's own) counts once. Pure.
pub fn merge(local: Vec<Entry>, shared: Vec<Entry>) -> Vec<Entry> {
    let seen: std::collections::HashSet<&Entry> = shared.iter().collect();
    let mut out: Vec<Entry> = local.into_iter().filter(|e| !seen.contains(e)).collect();
    out.extend(shared);
    out
}

/// A host an earlier run started and never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The host.
    pub host: String,
    /// The run.
    pub run: String,
    /// The plan.
    pub plan: String,
    /// The last step recorded for it.
    pub last_event: String,
    /// When.
    pub at: String,
    /// Whether a package transaction was sent and never returned.
    pub in_transaction: bool,
    /// The versions recorded before its transaction (package → version; `None`: not
    /// installed), so recovery can say whether the transaction changed anything.
    pub recorded: BTreeMap<String, Option<String>>,
}

/// Hosts started by some run with neither a `host-done` in that run nor a later `recovered`.
///
/// A run's host is closed for good by its `host-done` or a `recovered` naming it: a later
/// line of that run about that host reopens nothing. In the cluster such a line is a late
/// delivery: a replica cut off from the server gives up waiting for an append's
/// acknowledgement (and ends the host failed), but its client still sends the line once it
/// reconnects, after another replica recovered the host.
pub fn in_flight(entries: &[Entry]) -> Vec<InFlight> {
    let mut open: BTreeMap<(String, String), InFlight> = BTreeMap::new();
    let mut closed: BTreeSet<(String, String)> = BTreeSet::new();
    for e in entries {
        let Some(host) = &e.host else { continue };
        match &e.event {
            Event::HostDone { .. } => {
                let key = (e.run.clone(), host.clone());
                open.remove(&key);
                closed.insert(key);
            }
            Event::Recovered { of_run, .. } => {
                let key = (of_run.clone(), host.clone());
                open.remove(&key);
                closed.insert(key);
            }
            // The host stays in flight in the run that left it; the attempt opens nothing.
            Event::RecoveryFailed { .. } => {}
            _ if closed.contains(&(e.run.clone(), host.clone())) => {}
            ev => {
                let slot = open
                    .entry((e.run.clone(), host.clone()))
                    .or_insert_with(|| InFlight {
                        host: host.clone(),
                        run: e.run.clone(),
                        plan: e.plan.clone(),
                        last_event: String::new(),
                        at: String::new(),
                        in_transaction: false,
                        recorded: BTreeMap::new(),
                    });
                slot.last_event = ev.name().to_string();
                slot.at = e.at.clone();
                match ev {
                    Event::TransactionStarted { .. } | Event::RollbackStarted { .. } => {
                        slot.in_transaction = true
                    }
                    Event::TransactionFinished { .. } => slot.in_transaction = false,
                    Event::VersionsRecorded { versions } => slot.recorded = versions.clone(),
                    _ => {}
                }
            }
        }
    }
    open.into_values().collect()
}

/// Hosts that plan `plan` already brought to an end that must not be redone (compliant or
/// pending a reboot), with the outcome.
pub fn finished(entries: &[Entry], plan: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.plan == plan) {
        if let (Some(host), Event::HostDone { outcome, .. }) = (&e.host, &e.event) {
            if matches!(outcome, Outcome::Compliant | Outcome::PendingReboot) {
                out.insert(host.clone(), *outcome);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(run: &str, host: &str, event: Event) -> Entry {
        Entry {
            at: "2026-11-25T13:00:00Z".into(),
            run: run.into(),
            plan: "p1".into(),
            host: Some(host.into()),
            event,
        }
    }

    #[test]
    fn hosts_without_an_end_are_in_flight_until_recovered() {
        let mut entries = vec![
            entry("r1", "a", Event::HostStarted),
            entry("r1", "b", Event::HostStarted),
            entry(
                "r1",
                "a",
                Event::TransactionStarted {
                    command: "apt-get install".into(),
                },
            ),
            entry(
                "r1",
                "b",
                Event::HostDone {
                    outcome: Outcome::Compliant,
                    detail: vec![],
                },
            ),
        ];
        let open = in_flight(&entries);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].host, "a");
        assert_eq!(open[0].last_event, "transaction-started");
        assert!(open[0].in_transaction);
        // A failed recovery leaves it in flight (and opens nothing for its own run).
        entries.push(entry(
            "r2",
            "a",
            Event::RecoveryFailed {
                of_run: "r1".into(),
                detail: vec!["still locked".into()],
            },
        ));
        let open = in_flight(&entries);
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].run.as_str(), open[0].host.as_str()), ("r1", "a"));
        entries.push(entry(
            "r2",
            "a",
            Event::Recovered {
                of_run: "r1".into(),
                detail: vec![],
            },
        ));
        assert!(in_flight(&entries).is_empty());
        assert_eq!(
            finished(&entries, "p1"),
            BTreeMap::from([("b".to_string(), Outcome::Compliant)])
        );
        assert!(finished(&entries, "other").is_empty());
    }

    #[test]
    fn a_late_line_of_a_run_whose_host_was_recovered_or_done_reopens_nothing() {
        let mut entries = vec![
            entry("r1", "a", Event::HostStarted),
            entry(
                "r1",
                "a",
                Event::TransactionStarted {
                    command: "apt-get install".into(),
                },
            ),
            entry(
                "r2",
                "a",
                Event::Recovered {
                    of_run: "r1".into(),
                    detail: vec![],
                },
            ),
            entry("r1", "b", Event::HostStarted),
            entry(
                "r1",
                "b",
                Event::HostDone {
                    outcome: Outcome::Failed,
                    detail: vec![],
                },
            ),
        ];
        assert!(in_flight(&entries).is_empty());
        // The cut-off replica's lines, delivered after it reconnected.
        entries.push(entry(
            "r1",
            "a",
            Event::TransactionFinished { exit: Some(0) },
        ));
        entries.push(entry("r1", "b", Event::Verified));
        assert!(in_flight(&entries).is_empty(), "{:?}", in_flight(&entries));
        // Another run's start of the same host is a new transaction: in flight again.
        entries.push(entry("r3", "a", Event::HostStarted));
        let open = in_flight(&entries);
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].run.as_str(), open[0].host.as_str()), ("r3", "a"));
    }

    #[test]
    fn a_merge_counts_a_line_in_both_once_and_keeps_lines_only_the_file_has_first() {
        let ours = entry("r1", "a", Event::HostStarted);
        let before_the_cluster = entry("r0", "b", Event::HostStarted);
        let recovered = entry(
            "r2",
            "a",
            Event::Recovered {
                of_run: "r1".into(),
                detail: vec![],
            },
        );
        let merged = merge(
            vec![before_the_cluster.clone(), ours.clone()],
            vec![ours.clone(), recovered.clone()],
        );
        assert_eq!(merged, [before_the_cluster, ours, recovered]);
        // Another replica's recovery closes this replica's own host; b stays in flight.
        let open = in_flight(&merged);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].host, "b");
    }

    #[test]
    fn a_torn_last_line_is_cut_so_the_next_step_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "r1", "p1").unwrap();
        j.record(Some("a"), Event::HostStarted).unwrap();
        drop(j);
        // A crash in the middle of writing the next line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(dir.path()))
            .unwrap();
        f.write_all(b"{\"at\":\"2026-11-25T13:00:00Z\",\"run\":\"r1\",\"pla")
            .unwrap();
        drop(f);
        // The next run appends: its step must read back, not be glued to the torn line.
        let j = Journal::open(dir.path(), "r2", "p1").unwrap();
        j.record(Some("a"), Event::RunFinished).unwrap();
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[1].run, "r2");
        let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_journal_of_one_torn_line_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(journal_path(dir.path()), b"{\"at\":\"20").unwrap();
        let j = Journal::open(dir.path(), "r", "p").unwrap();
        j.record(None, Event::RunFinished).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn bytes_that_are_not_utf8_do_not_hide_the_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "r1", "p1").unwrap();
        j.record(Some("a"), Event::HostStarted).unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(dir.path()))
            .unwrap();
        f.write_all(b"garbage \xff\xfe from a broken disk\n")
            .unwrap();
        drop(f);
        let j = Journal::open(dir.path(), "r1", "p1").unwrap();
        j.record(
            Some("a"),
            Event::TransactionStarted {
                command: "apt-get install -y libpk=1.2-1".into(),
            },
        )
        .unwrap();
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(in_flight(&entries)[0].in_transaction);
    }

    #[test]
    fn written_lines_read_back_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), "r1", "p1").unwrap();
        j.record(Some("a"), Event::HostStarted).unwrap();
        j.record(
            Some("a"),
            Event::VersionsRecorded {
                versions: BTreeMap::from([("libpk".into(), Some("1.0-1".into()))]),
            },
        )
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(dir.path()))
            .unwrap();
        f.write_all(b"{\"at\":\"2026").unwrap();
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].event.name(), "versions-recorded");
        assert_eq!(in_flight(&entries)[0].last_event, "versions-recorded");
    }
}
