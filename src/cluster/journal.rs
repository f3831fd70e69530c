//! The apply journal in JetStream: the [`crate::apply::journal::Shared`] copy of every
//! replica's journal, so a replica recovers a host whose replica died mid-transaction as a
//! restarted single process does from its own file.
//!
//! One file-backed stream, [`JOURNAL_STREAM`], limits retention, with one subject per run
//! and host (`patchkeeper.journal.RUN.HOST`, both as [`super::key_for`] keys; run-wide steps
//! under the host `=00`). A line is appended, and the server's acknowledgement awaited,
//! before the step it announces is taken — the same line as the file journal's. Lines are
//! kept [`JOURNAL_MAX_AGE`], the window in which a host left in flight is still recovered.

use std::sync::mpsc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use crate::apply::journal::{Entry, Shared};

/// The stream of every replica's journal lines.
pub const JOURNAL_STREAM: &str = "patchkeeper_journal";
/// The subjects' common prefix.
pub const JOURNAL_SUBJECTS: &str = "patchkeeper.journal";
/// How long a journal line is kept: a host in flight longer than this is forgotten.
pub const JOURNAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an append may wait for the server's acknowledgement (also through a reconnect).
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the whole stream may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The cluster's journal stream, used from synchronous code (the apply journal's `record`
/// is called from apply's own runtime, and waits for the acknowledgement). Never called
/// from the cluster's own runtime: it would wait for work queued behind itself.
#[derive(Clone)]
pub struct ClusterJournal {
    runtime: tokio::runtime::Handle,
    js: jetstream::Context,
}

impl std::fmt::Debug for ClusterJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterJournal").finish_non_exhaustive()
    }
}

/// Makes (or opens) the journal stream.
pub(crate) async fn open_stream(js: &jetstream::Context) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: JOURNAL_STREAM.into(),
        description: Some("patchkeeper apply journal of every replica (docs/scale-out.md)".into()),
        subjects: vec![format!("{JOURNAL_SUBJECTS}.>")],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: JOURNAL_MAX_AGE,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

impl ClusterJournal {
    /// The journal of the cluster whose connection runs on `runtime`.
    pub(crate) fn new(runtime: tokio::runtime::Handle, js: jetstream::Context) -> ClusterJournal {
        ClusterJournal { runtime, js }
    }

    /// The subject of `entry`.
    pub fn subject(entry: &Entry) -> String {
        format!(
            "{JOURNAL_SUBJECTS}.{}.{}",
            super::key_for(&entry.run),
            super::key_for(entry.host.as_deref().unwrap_or("\0"))
        )
    }

    /// Runs `work` on the cluster's runtime and waits for it from any thread (also a worker
    /// of another runtime, which `block_on` would refuse).
    fn wait<T: Send + 'static>(
        &self,
        what: &str,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{what}: no answer from the NATS server within {}s",
                timeout.as_secs()
            )),
        }
    }

    /// Every line, oldest first (on the cluster's runtime).
    async fn read_all(js: &jetstream::Context) -> Result<Vec<Entry>, String> {
        // No replica made it yet (`cluster status` only reads): nothing journaled.
        let Some(stream) = super::existing_stream(js, JOURNAL_STREAM).await? else {
            return Ok(Vec::new());
        };
        let info = stream.get_info().await.map_err(|e| e.to_string())?;
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let last = info.state.last_sequence;
        // An ordered consumer: every message once, in stream order, gone when dropped.
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let (seq, pending) = {
                let info = m.info().map_err(|e| e.to_string())?;
                (info.stream_sequence, info.pending)
            };
            // A line that does not parse is skipped, as in the file journal.
            if let Ok(e) = serde_json::from_slice::<Entry>(&m.payload) {
                out.push(e);
            }
            if pending == 0 || seq >= last {
                break;
            }
        }
        Ok(out)
    }
}

impl Shared for ClusterJournal {
    fn append(&self, entry: &Entry) -> Result<(), String> {
        let subject = Self::subject(entry);
        let payload = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
        let js = self.js.clone();
        self.wait("journal append", APPEND_TIMEOUT, async move {
            let ack = js
                .publish(subject, payload.into())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    fn entries(&self) -> Result<Vec<Entry>, String> {
        let js = self.js.clone();
        self.wait("journal read", READ_TIMEOUT, async move {
            ClusterJournal::read_all(&js).await
        })
    }
}

/// The hosts the journal stream shows started by some replica's run and never finished (nor
/// recovered): what the leader's next round recovers (`cluster status`).
pub(crate) async fn unfinished(
    js: &jetstream::Context,
) -> Result<Vec<crate::apply::journal::InFlight>, super::ClusterError> {
    let entries =
        ClusterJournal::read_all(js)
            .await
            .map_err(|why| super::ClusterError::Stream {
                stream: JOURNAL_STREAM.into(),
                why,
            })?;
    Ok(crate::apply::journal::in_flight(&entries))
}
