//! Work queues: the leader hands per-host work (observation first) to every replica through
//! a JetStream work-queue stream, and gathers what they return.
//!
//! - [`WORK_STREAM`] (`WorkQueue` retention, file storage): one message per host and round,
//!   `patchkeeper.work.observe.DESIRED.ROUND.HOST` ([`super::key_for`] keys; `DESIRED` is
//!   the desired state's digest), read by one durable pull consumer per desired state
//!   (`workers-…`, filtered on its `DESIRED`) that the [`Worker`] of every replica holding
//!   that state fetches from, so each item goes to one replica at a time, and never to a
//!   replica that has not validated its state yet (a refusal would count as a delivery). Explicit acks: an item is acknowledged only once
//!   its result is stored; while the work runs the worker sends progress acks every
//!   `ack_wait / 3`, so a long observation keeps its item and a dead replica's items go to
//!   another replica `ack_wait` after its last progress ack. `max_deliver` bounds the
//!   attempts; the server's `MAX_DELIVERIES` advisory for an item becomes that host's
//!   failure in the round (the dead-letter path), and the item is deleted.
//! - Apply items (`patchkeeper.work.apply.DESIRED.ROUND.HOST`, one host's part of a plan as
//!   the payload) have a consumer of their own per desired state (`appliers-…`) with
//!   `max_deliver` 1: a worker runs each on its own ([`WorkQueue::serve_apply`]) and the
//!   leader awaits each host's result ([`WorkQueue::apply`]). An apply is never run twice:
//!   a replica that dies with one leaves its host in flight in the journal, and the
//!   server's advisory fails the host for the leader.
//! - [`RESULTS_STREAM`] (limits retention, [`RESULTS_MAX_AGE`]): one [`Done`] per host,
//!   `patchkeeper.results.ROUND.HOST`. Stored rather than sent on a plain subject, so a
//!   result published before the leader listens is not lost.
//!
//! Knows nothing of SSH or fleets: what a replica does with a batch is its [`Handler`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{key_for, Cluster, ClusterError};

/// The stream of work items.
pub const WORK_STREAM: &str = "patchkeeper_work";
/// The prefix of the durable consumers the workers fetch from (one per desired state).
pub const WORK_CONSUMER: &str = "workers";
/// The prefix of the durable consumers of apply items (one per desired state).
pub const APPLY_CONSUMER: &str = "appliers";
/// Apply items one replica runs at once (the leader's batches bound them first).
pub const APPLY_AT_ONCE: usize = 64;
/// A consumer nobody fetched from for this long (its desired state is past) is removed by
/// the server.
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// The stream of results.
pub const RESULTS_STREAM: &str = "patchkeeper_results";
/// How long items and results are kept: an item of a round nobody gathers any more (its
/// leader died) is dropped after it.
pub const RESULTS_MAX_AGE: Duration = Duration::from_secs(3600);

/// How the queue's consumer is set up (by the first replica that opens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkConfig {
    /// How long an item stays with a replica without an ack or a progress ack.
    pub ack_wait: Duration,
    /// Deliveries of one item at most (then it is a failure of its host).
    pub max_deliver: i64,
    /// Items a worker takes at once (one batch of work).
    pub batch: usize,
    /// Batches a worker runs at once: one replica alone keeps `batch × batches` hosts in
    /// observation, while a batch per fetch leaves the rest to the other replicas.
    pub batches: usize,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            ack_wait: Duration::from_secs(60),
            max_deliver: 3,
            batch: 64,
            batches: 4,
        }
    }
}

/// One unit of work: observe `host` of the desired state `desired`, for `round` — or apply
/// its part of a plan (`payload`: what the apply handler reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The round (the leader's run id): results are gathered by it.
    pub round: String,
    /// The desired state the leader works from (its digest: the same on every replica
    /// that validated the same commit).
    pub desired: String,
    /// The host.
    pub host: String,
    /// An apply item's host plan (JSON); `None` for an observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// What an item asks for: its subjects and its consumer differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Observe the host (batched; redelivered up to `max_deliver` times).
    Observe,
    /// Apply the host's plan (one at a time; never redelivered: a replica that died in the
    /// middle left the host in flight in the journal, for the next round's recovery).
    Apply,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Observe => "observe",
            Kind::Apply => "apply",
        }
    }

    fn of(item: &Item) -> Kind {
        if item.payload.is_some() {
            Kind::Apply
        } else {
            Kind::Observe
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The round.
    pub round: String,
    /// The host.
    pub host: String,
    /// The replica that did it (empty: nobody; the server gave up on it).
    pub replica: String,
    /// The work's output (an observed host's JSON), or why there is none.
    pub output: Result<Vec<u8>, String>,
}

/// What a stored result says besides its output (the first line of its payload).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    round: String,
    host: String,
    replica: String,
    ok: bool,
}

/// What a replica does with a batch of items of one desired state: each host's output, or
/// `None` when it cannot work on that state now (it has not validated it yet), which hands
/// the items back to the queue. Runs on a blocking thread.
pub type Handler =
    Arc<dyn Fn(&str, &[String]) -> Option<Vec<(String, Result<Vec<u8>, String>)>> + Send + Sync>;

/// The desired state this replica has validated now (its digest; `None`: none yet).
pub type Desired = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// What a replica does with one apply item of a desired state (its payload): the result
/// (a host result's JSON) or why there is none; `None` when it cannot work on that state.
/// Runs on a blocking thread.
pub type ApplyHandler = Arc<dyn Fn(&str, &str) -> Option<Result<Vec<u8>, String>> + Send + Sync>;

/// The work queue of a cluster.
#[derive(Clone)]
pub struct WorkQueue {
    runtime: Arc<tokio::runtime::Runtime>,
    js: jetstream::Context,
    replica: String,
    config: WorkConfig,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("replica", &self.replica)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn stream_error(stream: &str) -> impl Fn(String) -> ClusterError + '_ {
    move |why| ClusterError::Stream {
        stream: stream.into(),
        why,
    }
}

impl WorkQueue {
    /// Opens (or makes) the streams and the consumer of `cluster`. Synchronous code only
    /// (it waits on the cluster's runtime).
    pub fn open(cluster: &Cluster, config: WorkConfig) -> Result<WorkQueue, ClusterError> {
        let js = cluster.jetstream();
        cluster.runtime().block_on(async {
            js.get_or_create_stream(stream::Config {
                name: WORK_STREAM.into(),
                description: Some("patchkeeper per-host work items (docs/scale-out.md)".into()),
                subjects: vec!["patchkeeper.work.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                max_age: RESULTS_MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| stream_error(WORK_STREAM)(e.to_string()))?;
            js.get_or_create_stream(stream::Config {
                name: RESULTS_STREAM.into(),
                description: Some("patchkeeper per-host work results (docs/scale-out.md)".into()),
                subjects: vec!["patchkeeper.results.>".into()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: RESULTS_MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| stream_error(RESULTS_STREAM)(e.to_string()))?;
            Ok::<_, ClusterError>(())
        })?;
        Ok(WorkQueue {
            runtime: cluster.runtime().clone(),
            js,
            replica: cluster.replica().to_owned(),
            config,
        })
    }

    /// Hands one item per host of `hosts` to the replicas and gathers their results until
    /// every host has one or `within` has passed (hosts missing from the map: nobody
    /// finished them in time). Synchronous code only.
    pub fn dispatch(
        &self,
        round: &str,
        desired: &str,
        hosts: &[String],
        within: Duration,
    ) -> Result<BTreeMap<String, Done>, ClusterError> {
        let js = self.js.clone();
        let items: Vec<Item> = hosts
            .iter()
            .map(|h| Item {
                round: round.to_owned(),
                desired: desired.to_owned(),
                host: h.clone(),
                payload: None,
            })
            .collect();
        self.runtime
            .block_on(dispatch(js, items, within))
            .map_err(stream_error(WORK_STREAM))
    }

    /// Hands `host`'s apply item (its plan, `payload`) to some replica and waits for its
    /// result, up to `within` (a replica that took it and stopped answering: the host's
    /// failure, once the server gives the item up). Awaitable from any runtime.
    pub fn apply(
        &self,
        round: &str,
        desired: &str,
        host: &str,
        payload: String,
        within: Duration,
    ) -> impl std::future::Future<Output = Done> + Send + 'static {
        let item = Item {
            round: round.to_owned(),
            desired: desired.to_owned(),
            host: host.to_owned(),
            payload: Some(payload),
        };
        let (round, host) = (item.round.clone(), item.host.clone());
        let running = self
            .runtime
            .spawn(dispatch_one(self.js.clone(), item, within));
        async move {
            let failed = |why: String| Done {
                round: round.clone(),
                host: host.clone(),
                replica: String::new(),
                output: Err(why),
            };
            match running.await {
                Ok(Ok(done)) => done,
                Ok(Err(why)) => failed(format!("the work queue failed: {why}")),
                Err(e) => failed(format!("the work queue's task ended: {e}")),
            }
        }
    }

    /// Starts this replica's apply worker: it takes the apply items of the state `desired`
    /// says, one at a time, and runs `handler` on each (up to [`APPLY_AT_ONCE`] at once)
    /// until stopped.
    pub fn serve_apply(&self, desired: Desired, handler: ApplyHandler) -> Worker {
        self.start(|stopping| {
            work_apply(
                self.js.clone(),
                self.replica.clone(),
                self.config,
                (desired, handler),
                stopping,
            )
        })
    }

    /// Runs the worker loop `make` builds (given its stop flag) on the cluster's runtime.
    fn start<F>(&self, make: impl FnOnce(Arc<AtomicBool>) -> F) -> Worker
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stopping = Arc::new(AtomicBool::new(false));
        let task = self.runtime.spawn(make(stopping.clone()));
        Worker {
            stopping,
            task: Some(task),
        }
    }

    /// Starts this replica's worker: it takes batches of the items of the state `desired`
    /// says (asked before each batch) and runs `handler` on them until stopped.
    pub fn serve(&self, desired: Desired, handler: Handler) -> Worker {
        self.start(|stopping| {
            work(
                self.js.clone(),
                self.replica.clone(),
                self.config,
                (desired, handler),
                stopping,
            )
        })
    }
}

/// A replica's worker; stopped when dropped.
pub struct Worker {
    stopping: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Stops taking items once the batch at hand is done.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Stops at once without acknowledging what it holds, as a crashed replica does: its
    /// items go to another worker after `ack_wait` (fault tests use it).
    pub fn abandon(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The queue's depths for `cluster status` (`None`: no replica made the queue yet).
pub(crate) async fn depths(
    js: &jetstream::Context,
) -> Result<Option<super::view::QueueView>, ClusterError> {
    let Some(stream) = super::existing_stream(js, WORK_STREAM)
        .await
        .map_err(stream_error(WORK_STREAM))?
    else {
        return Ok(None);
    };
    let mut stream = stream;
    let items = stream
        .info()
        .await
        .map_err(|e| stream_error(WORK_STREAM)(e.to_string()))?
        .state
        .messages;
    // Items leave the stream when acknowledged: what is not held by some consumer waits.
    let (mut held, mut redelivered) = (0u64, 0u64);
    let mut consumers = stream.consumers();
    while let Some(info) = consumers.next().await {
        let info = info.map_err(|e| stream_error(WORK_STREAM)(e.to_string()))?;
        held += info.num_ack_pending as u64;
        redelivered += info.num_redelivered as u64;
    }
    Ok(Some(super::view::QueueView {
        waiting: items.saturating_sub(held),
        in_progress: held,
        redelivered,
    }))
}

/// A result as stored: a line of JSON saying whose result it is, then the output as it is
/// (an observed host's JSON, or the error), all deflated. An observed host is ~100–250 KB
/// of JSON (1,500 packages) and compresses about tenfold, which keeps it far below the
/// server's 1 MiB message limit and a round's results small on the server's disk; the
/// output is never parsed on the way (the leader parses it once).
fn encode(done: &Done) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let envelope = Envelope {
        round: done.round.clone(),
        host: done.host.clone(),
        replica: done.replica.clone(),
        ok: done.output.is_ok(),
    };
    let body = match &done.output {
        Ok(bytes) => bytes.as_slice(),
        Err(why) => why.as_bytes(),
    };
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    // Compact JSON has no raw newline: the first one ends the envelope.
    serde_json::to_writer(&mut z, &envelope).map_err(|e| e.to_string())?;
    z.write_all(b"\n").map_err(|e| e.to_string())?;
    z.write_all(body).map_err(|e| e.to_string())?;
    z.finish().map_err(|e| e.to_string())
}

/// A stored result read back (`None`: not one; results are never more than 64 MiB).
fn decode(payload: &[u8]) -> Option<Done> {
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::ZlibDecoder::new(payload)
        .take(64 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let envelope: Envelope = serde_json::from_slice(&bytes[..split]).ok()?;
    let body = bytes.split_off(split + 1);
    Some(Done {
        round: envelope.round,
        host: envelope.host,
        replica: envelope.replica,
        output: if envelope.ok {
            Ok(body)
        } else {
            Err(String::from_utf8_lossy(&body).into_owned())
        },
    })
}

fn item_subject(item: &Item) -> String {
    format!(
        "patchkeeper.work.{}.{}.{}.{}",
        Kind::of(item).word(),
        key_for(&item.desired),
        key_for(&item.round),
        key_for(&item.host)
    )
}

/// The consumer of the items of desired state `desired` (made by the first worker that
/// has the state; removed by the server once idle for [`CONSUMER_IDLE`]).
async fn consumer_for(
    js: &jetstream::Context,
    desired: &str,
    config: WorkConfig,
) -> Result<consumer::PullConsumer, String> {
    consumer_of(js, Kind::Observe, desired, config).await
}

/// The consumer of the `kind` items of desired state `desired`.
async fn consumer_of(
    js: &jetstream::Context,
    kind: Kind,
    desired: &str,
    config: WorkConfig,
) -> Result<consumer::PullConsumer, String> {
    use sha2::Digest;
    // A consumer name allows no `.`, `*`, `>` or whitespace: a hash of the state names it.
    let hash = sha2::Sha256::digest(desired.as_bytes());
    let prefix = match kind {
        Kind::Observe => WORK_CONSUMER,
        Kind::Apply => APPLY_CONSUMER,
    };
    let max_deliver = match kind {
        Kind::Observe => config.max_deliver,
        Kind::Apply => 1,
    };
    let name = format!(
        "{prefix}-{}",
        hash.iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    js.get_stream(WORK_STREAM)
        .await
        .map_err(|e| e.to_string())?
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("patchkeeper.work.{}.{}.>", kind.word(), key_for(desired)),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_deliver,
                inactive_threshold: CONSUMER_IDLE,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

fn result_subject(round: &str, host: &str) -> String {
    format!("patchkeeper.results.{}.{}", key_for(round), key_for(host))
}

/// The server's advisory of an item delivered `max_deliver` times without an ack.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

async fn dispatch(
    js: jetstream::Context,
    items: Vec<Item>,
    within: Duration,
) -> Result<BTreeMap<String, Done>, String> {
    let deadline = tokio::time::Instant::now() + within;
    let Some((round, desired)) = items.first().map(|i| (i.round.clone(), i.desired.clone())) else {
        return Ok(BTreeMap::new());
    };
    // Listening before publishing: no result and no advisory can be missed.
    let (mut results, mut dead, work) =
        listen(&js, format!("patchkeeper.results.{}.>", key_for(&round))).await?;
    let mut by_sequence: HashMap<u64, String> = HashMap::new();
    for item in &items {
        let payload = serde_json::to_vec(item).map_err(|e| e.to_string())?;
        let ack = js
            .publish(item_subject(item), payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        by_sequence.insert(ack.sequence, item.host.clone());
    }
    let wanted: std::collections::BTreeSet<&str> = items.iter().map(|i| i.host.as_str()).collect();
    let mut done: BTreeMap<String, Done> = BTreeMap::new();
    while done.len() < wanted.len() {
        tokio::select! {
            m = results.next() => {
                let Some(m) = m else { break };
                let m = m.map_err(|e| e.to_string())?;
                // A result another round's leader wrote, or garbage: not this round's.
                if let Some(d) = decode(&m.payload) {
                    if d.round == round && wanted.contains(d.host.as_str()) {
                        done.entry(d.host.clone()).or_insert(d);
                    }
                }
            }
            a = dead.next() => {
                let Some(a) = a else { break };
                let Ok(a) = serde_json::from_slice::<MaxDeliveries>(&a.payload) else {
                    continue;
                };
                if let Some(host) = by_sequence.get(&a.stream_seq) {
                    // Left in a work-queue stream, it would sit there until it expires.
                    let _ = work.delete_message(a.stream_seq).await;
                    done.entry(host.clone()).or_insert_with(|| Done {
                        round: round.clone(),
                        host: host.clone(),
                        replica: String::new(),
                        output: Err(format!(
                            "no replica finished it: delivered {} times (the replicas died or failed on it)",
                            a.deliveries
                        )),
                    });
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    // Given up on (the time ran out): what no replica took yet is observed for nobody.
    if done.len() < wanted.len() {
        let _ = work
            .purge()
            .filter(format!(
                "patchkeeper.work.observe.{}.{}.>",
                key_for(&desired),
                key_for(&round)
            ))
            .await;
    }
    // Gathered: the round's results are of no use to anyone any more.
    if let Ok(results) = js.get_stream(RESULTS_STREAM).await {
        let _ = results
            .purge()
            .filter(format!("patchkeeper.results.{}.>", key_for(&round)))
            .await;
    }
    Ok(done)
}

async fn work(
    js: jetstream::Context,
    replica: String,
    config: WorkConfig,
    (desired, handler): (Desired, Handler),
    stopping: Arc<AtomicBool>,
) {
    // The consumer of the state this replica has, switched when it validates another.
    let mut current: Option<(String, consumer::PullConsumer)> = None;
    let slots = Arc::new(tokio::sync::Semaphore::new(config.batches.max(1)));
    // Owned by this task: aborting it (a crash, `Worker::abandon`) aborts the batches too.
    let mut running = tokio::task::JoinSet::new();
    while !stopping.load(Ordering::SeqCst) {
        while running.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(state) = desired() else {
            // Nothing validated yet: nothing this replica could work on.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if current.as_ref().is_none_or(|(s, _)| *s != state) {
            match consumer_for(&js, &state, config).await {
                Ok(c) => current = Some((state, c)),
                Err(e) => {
                    tracing::warn!("work queue: cannot open the consumer: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some((_, consumer)) = &current else {
            continue;
        };
        let taken = match take(consumer, config.batch).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!("work queue: cannot fetch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut by_desired: BTreeMap<String, Vec<(Item, jetstream::Message)>> = BTreeMap::new();
        for m in taken {
            match serde_json::from_slice::<Item>(&m.payload) {
                Ok(item) => by_desired
                    .entry(item.desired.clone())
                    .or_default()
                    .push((item, m)),
                Err(e) => {
                    // Never redelivered: no replica could read it either.
                    tracing::warn!(subject = %m.subject, "work queue: dropping an item that does not parse: {e}");
                    let _ = m.ack_with(AckKind::Term).await;
                }
            }
        }
        if by_desired.is_empty() {
            continue;
        }
        let (js, replica, handler) = (js.clone(), replica.clone(), handler.clone());
        running.spawn(async move {
            for (desired, group) in by_desired {
                run_batch(&js, &replica, config, &handler, desired, group).await;
            }
            drop(slot);
        });
    }
    // Stopping: the batches at hand finish and are acknowledged.
    while running.join_next().await.is_some() {}
}

/// Up to `n` items: those there now, without waiting; when there are none, waits (a long
/// poll, not a busy loop) for the first to come and takes what came with it.
async fn take(
    consumer: &consumer::PullConsumer,
    n: usize,
) -> Result<Vec<jetstream::Message>, String> {
    async fn drain(
        batch: Result<consumer::pull::Batch, consumer::pull::BatchError>,
    ) -> Result<Vec<jetstream::Message>, String> {
        let mut batch = batch.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => out.push(m),
                // The end of a batch (no more messages, or the request expired).
                Err(e) => {
                    tracing::trace!("work queue: fetch ended: {e}");
                    break;
                }
            }
        }
        Ok(out)
    }
    let now = drain(consumer.fetch().max_messages(n).messages().await).await?;
    if !now.is_empty() {
        return Ok(now);
    }
    let mut first = drain(
        consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await,
    )
    .await?;
    if !first.is_empty() && n > 1 {
        first.extend(drain(consumer.fetch().max_messages(n - 1).messages().await).await?);
    }
    Ok(first)
}

/// Runs one batch of one desired state on a blocking thread, keeping its items with progress
/// acks, then stores each result and acknowledges its item.
async fn run_batch(
    js: &jetstream::Context,
    replica: &str,
    config: WorkConfig,
    handler: &Handler,
    desired: String,
    group: Vec<(Item, jetstream::Message)>,
) {
    let hosts: Vec<String> = group.iter().map(|(i, _)| i.host.clone()).collect();
    let started = Instant::now();
    let mut job = tokio::task::spawn_blocking({
        let handler = handler.clone();
        let desired = desired.clone();
        move || handler(&desired, &hosts)
    });
    let outputs = loop {
        tokio::select! {
            r = &mut job => break r,
            () = tokio::time::sleep(config.ack_wait / 3) => {
                for (_, m) in &group {
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    let mut outputs: HashMap<String, Result<Vec<u8>, String>> = match outputs {
        Ok(Some(outputs)) => outputs.into_iter().collect(),
        Ok(None) => {
            // Not this replica's desired state yet: back to the queue, for whoever has it.
            for (_, m) in &group {
                let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
            return;
        }
        Err(e) => {
            tracing::warn!(%desired, items = group.len(), "work queue: the work failed ({e}); its items go back to the queue");
            for (_, m) in &group {
                let _ = m.ack_with(AckKind::Nak(None)).await;
            }
            return;
        }
    };
    tracing::info!(
        items = group.len(),
        %desired,
        seconds = started.elapsed().as_secs_f64(),
        "work queue: batch done"
    );
    for (item, m) in group {
        let output = outputs
            .remove(&item.host)
            .unwrap_or_else(|| Err(format!("replica {replica} returned nothing for it")));
        store(js, replica, &item, output, m).await;
    }
}

/// Stores `item`'s result, then acknowledges the item: it is done only once its result is
/// stored (else it goes back to the queue).
async fn store(
    js: &jetstream::Context,
    replica: &str,
    item: &Item,
    output: Result<Vec<u8>, String>,
    m: jetstream::Message,
) {
    let done = Done {
        round: item.round.clone(),
        host: item.host.clone(),
        replica: replica.to_owned(),
        output,
    };
    let stored = async {
        let payload = encode(&done)?;
        js.publish(result_subject(&item.round, &item.host), payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match stored.await {
        Ok(_) => {
            let _ = m.double_ack().await;
        }
        Err(e) => {
            tracing::warn!(host = %item.host, "work queue: cannot store the result ({e}); the item goes back to the queue");
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
    }
}

/// What whoever hands out items listens to, before it publishes them: the stored results
/// under `filter` (all of them, in order), the server's `MAX_DELIVERIES` advisories of the
/// work stream, and the work stream itself (to delete what it gives up on).
async fn listen(
    js: &jetstream::Context,
    filter: String,
) -> Result<
    (
        consumer::pull::Ordered,
        async_nats::Subscriber,
        stream::Stream,
    ),
    String,
> {
    let results = js
        .get_stream(RESULTS_STREAM)
        .await
        .map_err(|e| e.to_string())?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let dead = js
        .client()
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.*"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let work = js
        .get_stream(WORK_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    Ok((results, dead, work))
}

/// Publishes one apply item and waits for its result, or for the server to give the item
/// up (its replica stopped acknowledging it), or for `within` to pass.
async fn dispatch_one(
    js: jetstream::Context,
    item: Item,
    within: Duration,
) -> Result<Done, String> {
    let deadline = tokio::time::Instant::now() + within;
    let subject = result_subject(&item.round, &item.host);
    // Listening before publishing: neither the result nor the advisory can be missed.
    let (mut results, mut dead, work) = listen(&js, subject.clone()).await?;
    let payload = serde_json::to_vec(&item).map_err(|e| e.to_string())?;
    let sequence = js
        .publish(item_subject(&item), payload.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?
        .sequence;
    let failed = |why: String| Done {
        round: item.round.clone(),
        host: item.host.clone(),
        replica: String::new(),
        output: Err(why),
    };
    let done = loop {
        tokio::select! {
            m = results.next() => {
                let Some(m) = m else {
                    break failed("the results stream ended".into());
                };
                let m = m.map_err(|e| e.to_string())?;
                if let Some(d) = decode(&m.payload) {
                    if d.round == item.round && d.host == item.host {
                        break d;
                    }
                }
            }
            a = dead.next() => {
                let Some(a) = a else {
                    break failed("the advisories ended".into());
                };
                let Ok(a) = serde_json::from_slice::<MaxDeliveries>(&a.payload) else {
                    continue;
                };
                if a.stream_seq == sequence {
                    let _ = work.delete_message(sequence).await;
                    break failed(
                        "the replica that took it stopped answering (no acknowledgement within the work queue's ack wait): the host is left to crash recovery".into(),
                    );
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                // Nobody took it, or nobody finished it: it must not run later for nobody.
                let _ = work.delete_message(sequence).await;
                break failed(format!("no replica finished it within {}s", within.as_secs()));
            }
        }
    };
    let _ = js
        .get_stream(RESULTS_STREAM)
        .await
        .map_err(|e| e.to_string())?
        .purge()
        .filter(subject)
        .await;
    Ok(done)
}

/// A replica's apply worker: takes one apply item at a time (up to [`APPLY_AT_ONCE`]
/// running), each on its own.
async fn work_apply(
    js: jetstream::Context,
    replica: String,
    config: WorkConfig,
    (desired, handler): (Desired, ApplyHandler),
    stopping: Arc<AtomicBool>,
) {
    let mut current: Option<(String, consumer::PullConsumer)> = None;
    let slots = Arc::new(tokio::sync::Semaphore::new(APPLY_AT_ONCE));
    // Owned by this task: aborting it (a crash, `Worker::abandon`) aborts the items too.
    let mut running = tokio::task::JoinSet::new();
    while !stopping.load(Ordering::SeqCst) {
        while running.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(state) = desired() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if current.as_ref().is_none_or(|(s, _)| *s != state) {
            match consumer_of(&js, Kind::Apply, &state, config).await {
                Ok(c) => current = Some((state, c)),
                Err(e) => {
                    tracing::warn!("work queue: cannot open the apply consumer: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some((_, consumer)) = &current else {
            continue;
        };
        let m = match take(consumer, 1).await {
            Ok(taken) => taken.into_iter().next(),
            Err(e) => {
                tracing::debug!("work queue: cannot fetch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(m) = m else {
            continue;
        };
        let item = match serde_json::from_slice::<Item>(&m.payload) {
            Ok(item) if item.payload.is_some() => item,
            Ok(_) | Err(_) => {
                tracing::warn!(subject = %m.subject, "work queue: dropping an apply item that does not parse");
                let _ = m.ack_with(AckKind::Term).await;
                continue;
            }
        };
        let (js, replica, handler) = (js.clone(), replica.clone(), handler.clone());
        running.spawn(async move {
            run_one(&js, &replica, config, &handler, item, m).await;
            drop(slot);
        });
    }
    // Stopping: the hosts at hand finish (a transaction is never abandoned half-way).
    while running.join_next().await.is_some() {}
}

/// Runs one apply item on a blocking thread, keeping it with progress acks however long
/// the host's steps take, then stores its result.
async fn run_one(
    js: &jetstream::Context,
    replica: &str,
    config: WorkConfig,
    handler: &ApplyHandler,
    item: Item,
    m: jetstream::Message,
) {
    let payload = item.payload.clone().unwrap_or_default();
    let mut job = tokio::task::spawn_blocking({
        let handler = handler.clone();
        let desired = item.desired.clone();
        move || handler(&desired, &payload)
    });
    tracing::info!(host = %item.host, run = %item.round, "work queue: applying");
    let output = loop {
        tokio::select! {
            r = &mut job => break r,
            () = tokio::time::sleep(config.ack_wait / 3) => {
                let _ = m.ack_with(AckKind::Progress).await;
            }
        }
    };
    let output = match output {
        Ok(Some(output)) => output,
        // Never redelivered: said, rather than handed back to be given up silently.
        Ok(None) => Err(format!(
            "replica {replica} has not validated the desired state the item names"
        )),
        Err(e) => Err(format!("the apply on replica {replica} failed: {e}")),
    };
    store(js, replica, &item, output, m).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_items_have_subjects_and_consumers_apart_from_observations() {
        let observe = Item {
            round: "r1".into(),
            desired: "c0ffee".into(),
            host: "web-1".into(),
            payload: None,
        };
        let apply = Item {
            payload: Some("{}".into()),
            ..observe.clone()
        };
        assert!(item_subject(&observe).starts_with("patchkeeper.work.observe."));
        assert!(item_subject(&apply).starts_with("patchkeeper.work.apply."));
        assert_eq!(
            item_subject(&observe).strip_prefix("patchkeeper.work.observe."),
            item_subject(&apply).strip_prefix("patchkeeper.work.apply."),
        );
        // An observation item reads as before (no payload field written).
        let json = serde_json::to_string(&observe).expect("serializes");
        assert!(!json.contains("payload"), "{json}");
        let back: Item = serde_json::from_str(&json).expect("reads");
        assert_eq!(Kind::of(&back), Kind::Observe);
        let back: Item = serde_json::from_str(&serde_json::to_string(&apply).expect("serializes"))
            .expect("reads");
        assert_eq!(Kind::of(&back), Kind::Apply);
    }

    #[test]
    fn results_are_stored_deflated_and_read_back() {
        let packages: Vec<String> = (0..1500).map(|i| format!("libpackage{i}")).collect();
        let json = serde_json::to_vec(&serde_json::json!({ "installed": packages })).unwrap();
        let done = Done {
            round: "r".into(),
            host: "web-1".into(),
            replica: "a-1-00".into(),
            output: Ok(json.clone()),
        };
        let stored = encode(&done).expect("encodes");
        assert!(
            stored.len() * 4 < json.len(),
            "{} of {}",
            stored.len(),
            json.len()
        );
        assert_eq!(decode(&stored), Some(done.clone()));
        let failed = Done {
            output: Err("cannot connect:\nrefused".into()),
            ..done
        };
        assert_eq!(decode(&encode(&failed).unwrap()), Some(failed));
        assert_eq!(decode(b"not deflated"), None);
    }
}
