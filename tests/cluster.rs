//! Scale-out of `serve` over NATS JetStream (issue 19), against a real `nats-server` that
//! each test starts on its own loopback port (tests/common/nats.rs; installed by
//! `scripts/lab deps`): the leader lease (one of two contenders wins; a lease nobody renews
//! passes to the other after its TTL, and its old holder learns it lost it; a renewed lease
//! is kept), the per-host transaction lease (exclusive, named holder, released), the
//! `cluster status` command, and two real `serve --cluster` replicas: one leads and runs
//! the rounds, and after a `kill -9` of it the other takes over; a replica reconnects to a
//! restarted server and renews there.
//!
//! States are put in place with controls (a lease taken, a renewal task abandoned, a
//! process killed); waits are bounded polls of an observable condition.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::git::git;
use common::nats::NatsServer;
use jiff::Timestamp;
use patchkeeper::apply::HostGate;
use patchkeeper::cluster::lease::{Attempt, LeaseRecord};
use patchkeeper::cluster::work::{Desired, Handler};
use patchkeeper::cluster::{Cluster, HostLeases, JoinOptions, Leader, WorkConfig, WorkQueue};
use patchkeeper::reconcile::Leadership;

/// Bounds a wait that should end much sooner (a failure only).
const DEADLINE: Duration = Duration::from_secs(60);

fn join(server: &NatsServer, ttl: Duration) -> Cluster {
    Cluster::connect(
        &server.url(),
        &JoinOptions {
            ttl: Some(ttl),
            read_only: false,
        },
    )
    .unwrap_or_else(|e| panic!("join: {e}\n{}", server.log()))
}

fn record(holder: &str) -> LeaseRecord {
    LeaseRecord {
        holder: holder.into(),
        since: Timestamp::now(),
        purpose: None,
    }
}

/// Polls `done` until it holds; panics naming `what` after [`DEADLINE`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn one_of_two_contenders_takes_the_leader_lease() {
    let server = NatsServer::start();
    let (a, b) = (
        join(&server, Duration::from_secs(30)),
        join(&server, Duration::from_secs(30)),
    );
    let (la, lb) = (a.leader_lease(), b.leader_lease());
    // Both creates race on the server.
    let (rec_a, rec_b) = (record("a"), record("b"));
    let (ra, rb) = a
        .runtime()
        .block_on(async { tokio::join!(la.take(&rec_a), lb.take(&rec_b)) });
    let (ra, rb) = (ra.expect("a's take"), rb.expect("b's take"));
    let won = [&ra, &rb]
        .into_iter()
        .filter(|r| matches!(r, Attempt::Held(_)))
        .count();
    assert_eq!(won, 1, "exactly one contender wins: {ra:?} {rb:?}");
    let winner = if matches!(ra, Attempt::Held(_)) {
        "a"
    } else {
        "b"
    };
    let holder = a
        .runtime()
        .block_on(la.holder())
        .expect("read")
        .expect("held");
    assert_eq!(holder.record.holder, winner);
    // The loser keeps losing while the lease lives.
    let again = b.runtime().block_on(lb.take(&record("b"))).expect("take");
    let again_a = a.runtime().block_on(la.take(&record("a"))).expect("take");
    assert!(
        matches!(again, Attempt::Taken) && matches!(again_a, Attempt::Taken),
        "a held lease cannot be taken again: {again:?} {again_a:?}"
    );
}

#[test]
fn a_lease_nobody_renews_passes_to_the_other_after_its_ttl_and_the_old_holder_learns_it() {
    let server = NatsServer::start();
    let ttl = Duration::from_secs(2);
    let (a, b) = (join(&server, ttl), join(&server, ttl));
    let (la, lb) = (a.leader_lease(), b.leader_lease());
    let sent = Instant::now();
    let Attempt::Held(held) = a.runtime().block_on(la.take(&record("a"))).expect("take") else {
        panic!("a takes a free lease");
    };
    assert!(
        held.valid_until <= sent + ttl,
        "a counts on it for less than the TTL"
    );
    // A stops renewing (as a crashed replica does); B tries until the server expires it.
    let mut b_held = None;
    wait_for("b takes the expired lease", || {
        match b.runtime().block_on(lb.take(&record("b"))).expect("take") {
            Attempt::Held(h) => {
                b_held = Some(h);
                true
            }
            Attempt::Taken => false,
        }
    });
    let took_after = sent.elapsed();
    // Never before the TTL: the server expires the lease TTL after it stored a's write,
    // which came after `sent`.
    assert!(
        took_after >= ttl,
        "b took the lease {took_after:?} after a's take, before the TTL {ttl:?}"
    );
    eprintln!("b took the unrenewed lease {took_after:?} after a's take (ttl {ttl:?})");
    // A's renewal names its old revision: it learns it lost the lease, b keeps it.
    let renewed = a
        .runtime()
        .block_on(la.renew(held, &record("a")))
        .expect("renew");
    assert_eq!(
        renewed,
        Attempt::Taken,
        "a's renewal after expiry must fail"
    );
    let holder = b
        .runtime()
        .block_on(lb.holder())
        .expect("read")
        .expect("held");
    assert_eq!(holder.record.holder, "b");
    // And a's release does not delete b's lease.
    a.runtime().block_on(la.release(held)).expect("release");
    let holder = b
        .runtime()
        .block_on(lb.holder())
        .expect("read")
        .expect("held");
    assert_eq!(
        holder.record.holder, "b",
        "a's stale release left b's lease alone"
    );
    // B's own release frees it at once.
    b.runtime()
        .block_on(lb.release(b_held.expect("held")))
        .expect("release");
    assert!(b.runtime().block_on(lb.holder()).expect("read").is_none());
}

#[test]
fn a_renewing_leader_keeps_the_lead_and_a_crashed_one_is_replaced() {
    let server = NatsServer::start();
    let ttl = Duration::from_secs(3);
    let (a, b) = (join(&server, ttl), join(&server, ttl));
    let leader_a = Leader::start(&a);
    wait_for("a leads", || leader_a.is_leader());
    let leader_b = Leader::start(&b);
    // Over two TTLs a renews (every TTL/3); b never takes the lead meanwhile.
    let start = Instant::now();
    while start.elapsed() < ttl * 2 {
        assert!(!leader_b.is_leader(), "b leads while a renews");
        std::thread::sleep(Duration::from_millis(50));
    }
    let view = a.view().expect("view");
    assert_eq!(
        view.leader.as_ref().map(|l| l.replica.as_str()),
        Some(a.replica()),
        "{view:?}"
    );
    assert_eq!(view.replicas.len(), 2, "both heartbeat: {view:?}");
    // A crashes (stops renewing, releases nothing): b leads once the lease expires.
    let crashed = Instant::now();
    leader_a.abandon();
    let took = wait_for("b leads after a crashed", || leader_b.is_leader());
    eprintln!("b led {took:?} after a stopped renewing (ttl {ttl:?})");
    // Terms fence the reports branch: the crashed leader keeps its term, the new one's is
    // larger.
    let (term_a, term_b) = (leader_a.term(), leader_b.term());
    assert!(term_a.is_some(), "a took the lease, so it has a term");
    assert!(
        term_b > term_a,
        "b's term {term_b:?} follows a's {term_a:?}"
    );
    assert!(
        crashed.elapsed() >= ttl / 3,
        "b cannot lead before a's last renewal expired"
    );
    let view = b.view().expect("view");
    assert_eq!(
        view.leader.as_ref().map(|l| l.replica.as_str()),
        Some(b.replica())
    );
    // A clean stop releases the lease: a new contender takes it without waiting a TTL.
    leader_b.stop();
    assert!(!leader_b.is_leader());
    let c = join(&server, ttl);
    let lc = c.leader_lease();
    let took = c.runtime().block_on(lc.take(&record("c"))).expect("take");
    assert!(
        matches!(took, Attempt::Held(_)),
        "a released lease is free at once: {took:?}"
    );
}

#[test]
fn a_replica_reconnects_after_the_server_restarts_and_keeps_renewing() {
    let mut server = NatsServer::start();
    let ttl = Duration::from_secs(3);
    let a = join(&server, ttl);
    let leader = Leader::start(&a);
    wait_for("a leads", || leader.is_leader());
    // The broker crashes and comes back on the same port with the same store.
    server.restart();
    let restarted = Timestamp::now();
    // The client reconnects by itself and the lease is renewed again on the new server
    // process: a renewal the server stored after the restart names a.
    wait_for("a renews on the restarted server", || {
        a.view().ok().is_some_and(|v| {
            v.leader
                .is_some_and(|l| l.replica == a.replica() && l.renewed > restarted)
        })
    });
    wait_for("a leads", || leader.is_leader());
    // Two server processes wrote the log: it was restarted.
    assert_eq!(
        server.log().matches("Server is ready").count(),
        2,
        "{}",
        server.log()
    );
}

/// A [`Leadership`] the test sets.
struct Fixed(bool);

impl Leadership for Fixed {
    fn is_leader(&self) -> bool {
        self.0
    }
}

#[test]
fn a_host_lease_is_exclusive_names_its_holder_and_is_released() {
    let server = NatsServer::start();
    let ttl = Duration::from_secs(30);
    let (a, b) = (Arc::new(join(&server, ttl)), Arc::new(join(&server, ttl)));
    let gate_a = HostLeases::new(&a).only_while(Arc::new(Fixed(true)));
    let gate_b = HostLeases::new(&b).only_while(Arc::new(Fixed(true)));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pass = rt
        .block_on(gate_a.enter("web-1", "run-a"))
        .expect("a takes web-1");
    // B may take another host, never web-1 while a holds it.
    let other = rt
        .block_on(gate_b.enter("web.2", "run-b"))
        .expect("b takes web.2");
    let refused = match rt.block_on(gate_b.enter("web-1", "run-b")) {
        Ok(_) => panic!("b took web-1 while a holds it"),
        Err(why) => why,
    };
    assert!(
        refused.contains(a.replica()) && refused.contains("run-a"),
        "the refusal names the holder and its run: {refused}"
    );
    let view = a.view().expect("view");
    let in_flight: Vec<(&str, &str)> = view
        .in_flight
        .iter()
        .map(|h| (h.host.as_str(), h.replica.as_str()))
        .collect();
    assert_eq!(
        in_flight,
        vec![("web-1", a.replica()), ("web.2", b.replica())],
        "host names decoded from their keys"
    );
    // Released after verification: b takes it next.
    rt.block_on(pass.leave());
    let taken = rt
        .block_on(gate_b.enter("web-1", "run-b"))
        .expect("b takes web-1 once a released it");
    rt.block_on(taken.leave());
    rt.block_on(other.leave());
    assert!(a.view().expect("view").in_flight.is_empty());
    // A replica that does not lead starts no host.
    let follower = HostLeases::new(&b).only_while(Arc::new(Fixed(false)));
    let why = match rt.block_on(follower.enter("web-3", "run-b")) {
        Ok(_) => panic!("a follower took a host lease"),
        Err(why) => why,
    };
    assert!(why.contains("leader lease"), "{why}");
    assert!(a.view().expect("view").in_flight.is_empty());
}

#[test]
fn cluster_status_shows_the_leader_replicas_and_hosts_in_flight() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // No replica joined yet: no buckets, a clear error.
    let out = common::cli::run(
        dir.path(),
        &["cluster", "status", "--cluster", &server.url()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::cli::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no replica joined"),
        "{}",
        common::cli::text(&out)
    );
    let a = Arc::new(join(&server, Duration::from_secs(30)));
    let leader = Leader::start(&a);
    wait_for("a leads", || leader.is_leader());
    let gate = HostLeases::new(&a).only_while(Arc::new(Fixed(true)));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pass = rt.block_on(gate.enter("db-1", "run-7")).expect("lease");
    {
        use patchkeeper::apply::journal::{Event, Journal};
        let journal = Journal::open(&dir.path().join("state"), "run-7", "plan-x")
            .expect("journal")
            .with_shared(Some(Arc::new(a.journal())));
        journal
            .record(
                Some("db-1"),
                Event::TransactionStarted {
                    command: "apt-get install -y libpk=1.2-1".into(),
                },
            )
            .expect("journaled");
    }
    // The heartbeat says leader once the loop wrote it after taking the lease.
    wait_for("a's heartbeat says it leads", || {
        a.view()
            .expect("view")
            .replicas
            .iter()
            .any(|r| r.replica == a.replica())
    });
    let out = common::cli::run(
        dir.path(),
        &["cluster", "status", "--cluster", &server.url(), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ttlSeconds"], 30);
    assert_eq!(v["leader"]["replica"], a.replica());
    assert_eq!(v["replicas"][0]["replica"], a.replica());
    assert_eq!(v["replicas"][0]["leader"], true);
    assert_eq!(v["replicas"][0]["pid"], std::process::id());
    assert_eq!(v["inFlight"][0]["host"], "db-1");
    assert_eq!(v["inFlight"][0]["replica"], a.replica());
    assert_eq!(v["inFlight"][0]["purpose"], "apply run-7");
    // The journal stream shows db-1 started in its transaction, never finished.
    assert_eq!(v["unfinished"][0]["host"], "db-1", "{v}");
    assert_eq!(v["unfinished"][0]["run"], "run-7");
    assert_eq!(v["unfinished"][0]["lastStep"], "transaction-started");
    assert_eq!(v["unfinished"][0]["inTransaction"], true);
    let out = common::cli::run(
        dir.path(),
        &["cluster", "status", "--cluster", &server.url()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("leader:    {}", a.replica())),
        "{text}"
    );
    assert!(text.contains("(leader)"), "{text}");
    assert!(text.contains("db-1  by "), "{text}");
    assert!(
        text.contains(
            "unfinished in the journal (1):\n  db-1  run run-7  last step transaction-started"
        ),
        "{text}"
    );
    rt.block_on(pass.leave());
    // A server nobody listens on: exit 1 naming it.
    let port = server.port();
    drop(leader);
    drop(server);
    let url = format!("nats://127.0.0.1:{port}");
    let out = common::cli::run(dir.path(), &["cluster", "status", "--cluster", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", common::cli::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to the NATS server"),
        "{}",
        common::cli::text(&out)
    );
    let out = common::cli::run(dir.path(), &["cluster", "status", "--cluster", "http://x"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::cli::text(&out));
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A fleet of two hosts on a closed loopback port (unreachable at once), pushed to a bare
/// remote both replicas fetch over `file://`, each with its own cache.
fn fleet(root: &Path) -> String {
    let work = root.join("work");
    let bare = root.join("fleet.git");
    std::fs::create_dir(&work).expect("mkdir");
    git(root, &["init", "-q", "--bare", "-b", "main", "fleet.git"]);
    git(&work, &["init", "-q", "-b", "main"]);
    write(&work, "patchkeeper.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: settings}\nspec:\n  reports:\n    author: {name: patchkeeper, email: patchkeeper@example.com}\n    heartbeat: 0s\n");
    write(&work, "inventory/hosts.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - {name: web-1, groups: [web], address: 127.0.0.1, ssh: {port: 1}}\n    - {name: web-2, groups: [web], address: 127.0.0.1, ssh: {port: 1}}\n");
    write(&work, "baselines/web.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web}\nspec:\n  selector: {groups: [web]}\n  updates: {classes: security}\n  window: always\n  rollout: one-by-one\n");
    write(&work, "windows/always.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n");
    write(&work, "rollouts/one.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: one-by-one}\nspec:\n  stages:\n    - {name: all, size: 100%}\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "fleet"]);
    git(&work, &["push", "-q", &bare.display().to_string(), "main"]);
    format!("file://{}", bare.display())
}

/// A `serve` replica, killed if the test ends (or fails) while it runs.
struct Replica(Option<common::cli::Running>);

impl Replica {
    fn run(&mut self) -> &mut common::cli::Running {
        self.0.as_mut().expect("running")
    }

    fn wait(mut self) -> std::process::Output {
        self.0.take().expect("running").wait()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            if !r.has_exited() {
                let _ = Command::new("kill")
                    .args(["-KILL", &r.id().to_string()])
                    .status();
            }
            let _ = r.wait();
        }
    }
}

fn replica(root: &Path, name: &str, url: &str, nats: &str) -> Replica {
    use assert_cmd::cargo::CommandCargoExt;
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.args([
        "serve",
        "--interval",
        "1h",
        "--cluster",
        nats,
        "--cluster-ttl",
        "2s",
    ])
    .arg("--repo")
    .arg(url)
    .arg("--cache")
    .arg(root.join(format!("cache-{name}")))
    .env("HOME", root.join(format!("home-{name}")))
    .env("NO_COLOR", "1")
    .stdin(std::process::Stdio::null());
    Replica(Some(common::cli::Running::spawn(cmd)))
}

/// The `Leader-Term` trailers (`EPOCH.REVISION`) on the reports branch of the bare fleet
/// repo, newest first.
fn leader_terms(root: &Path) -> Vec<(u64, u64)> {
    git(
        &root.join("fleet.git"),
        &["log", "--format=%B", "patchkeeper/reports"],
    )
    .lines()
    .filter_map(|l| l.strip_prefix("Leader-Term:"))
    .filter_map(|v| {
        let (epoch, revision) = v.trim().split_once('.')?;
        Some((epoch.parse().ok()?, revision.parse().ok()?))
    })
    .collect()
}

fn rounds(stderr: &str) -> usize {
    stderr.matches("round done").count()
}

#[test]
fn two_serve_replicas_one_leads_and_the_other_takes_over_after_a_kill_9() {
    let server = NatsServer::start();
    let root = tempfile::tempdir().expect("tempdir");
    let url = fleet(root.path());
    let mut a = replica(root.path(), "a", &url, &server.url());
    a.run().wait_for_stderr("took the leader lease", DEADLINE);
    a.run().wait_for_stderr("round done", DEADLINE);
    // A leader's report commits carry its term.
    let terms_a = leader_terms(root.path());
    assert!(!terms_a.is_empty(), "a's report names its term");
    let mut b = replica(root.path(), "b", &url, &server.url());
    // B validates the commit and follows: it runs no round while a leads.
    b.run().wait_for_stderr(
        "following: another replica holds the leader lease",
        DEADLINE,
    );
    assert_eq!(
        rounds(&b.run().stderr()),
        0,
        "b reconciled while a leads:\n{}",
        b.run().stderr()
    );
    assert!(
        !b.run().stderr().contains("took the leader lease"),
        "{}",
        b.run().stderr()
    );
    let status = common::cli::run(
        root.path(),
        &["cluster", "status", "--cluster", &server.url(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|_| panic!("{}", common::cli::text(&status)));
    // Replica ids are HOST-PID-RANDOM.
    let leader = v["leader"]["replica"].as_str().unwrap_or_default();
    assert!(
        leader.contains(&format!("-{}-", a.run().id())),
        "a leads: {v}"
    );
    assert_eq!(v["replicas"].as_array().map(Vec::len), Some(2), "{v}");
    // kill -9 the leader: no release, its lease must expire.
    let killed = Instant::now();
    let status = Command::new("kill")
        .args(["-KILL", &a.run().id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = a.wait();
    b.run().wait_for_stderr("took the leader lease", DEADLINE);
    let took = killed.elapsed();
    b.run().wait_for_stderr("round done", DEADLINE);
    eprintln!("b took the lead {took:?} after a's kill -9 (ttl 2s)");
    // The follower's first round names both hosts (unreachable: port 1 is closed).
    let stderr = b.run().stderr();
    let done = stderr
        .lines()
        .find(|l| l.contains("round done"))
        .expect("a round line");
    assert!(done.contains("observed=2"), "{done}");
    // Observed through the work queue: b's own worker took both hosts (the only replica
    // left), each refused by port 1 — a real SSH attempt, not a result made up.
    assert!(stderr.contains("work queue: batch done"), "{stderr}");
    let web1 = git(
        &root.path().join("fleet.git"),
        &["show", "patchkeeper/reports:hosts/web-1.json"],
    );
    assert!(web1.contains("refused"), "{web1}");
    // B's report (reports.heartbeat 0s: every round commits) carries a newer term.
    let terms = leader_terms(root.path());
    assert!(
        terms.len() > terms_a.len() && terms[0] > terms_a[0],
        "b's term is newer than a's: {terms:?} after {terms_a:?}"
    );
    // SIGTERM: b releases the lease on its way out.
    let status = Command::new("kill")
        .args(["-TERM", &b.run().id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = b.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("released the leader lease"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Progress nobody reads.
struct Quiet;

impl patchkeeper::apply::Progress for Quiet {
    fn host(&self, _host: &str, _message: &str) {}
    fn batch(&self, _index: usize, _message: &str) {}
}

/// The two-host fleet of [`fleet`], loaded from its working copy.
fn loaded(root: &Path) -> (std::path::PathBuf, patchkeeper::validate::ValidFleet) {
    fleet(root);
    let work = root.join("work");
    let fleet = patchkeeper::validate::load_and_validate(&work)
        .expect("loads")
        .fleet
        .expect("valid");
    (work, fleet)
}

#[test]
fn crash_recovery_of_a_host_needs_its_transaction_lease() {
    use patchkeeper::apply::journal::{Event, Journal};
    use patchkeeper::apply::recover::recover_fleet_gated;
    let server = NatsServer::start();
    let ttl = Duration::from_secs(2);
    let (a, b) = (Arc::new(join(&server, ttl)), Arc::new(join(&server, ttl)));
    let root = tempfile::tempdir().expect("tempdir");
    let (work, fleet) = loaded(root.path());
    // An earlier apply of this replica died with web-1 in flight.
    let state = patchkeeper::apply::state_dir(&work);
    patchkeeper::apply::create_state_dir(&state).expect("state dir");
    Journal::open(&state, "run-old", "plan-x")
        .expect("journal")
        .record(Some("web-1"), Event::HostStarted)
        .expect("record");
    // Another replica, alive, holds web-1's lease and renews it (it is patching it now).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gate_b = HostLeases::new(&b).only_while(Arc::new(Fixed(true)));
    let pass = rt
        .block_on(gate_b.enter("web-1", "run-b"))
        .expect("b takes web-1");
    let gate = HostLeases::new(&a).only_while(Arc::new(Fixed(true)));
    let started = Instant::now();
    let recoveries = rt
        .block_on(recover_fleet_gated(
            &fleet,
            &work,
            "run-new",
            &Quiet,
            Some(&gate),
        ))
        .expect("recovery runs");
    // A dead holder's lease would have expired meanwhile: recovery waited one TTL for it.
    assert!(started.elapsed() >= ttl, "{:?}", started.elapsed());
    assert_eq!(recoveries.len(), 1, "{recoveries:?}");
    let r = &recoveries[0];
    assert!(!r.recovered, "{r:?}");
    assert!(
        r.line().contains(&format!("replica {}", b.replica()))
            && r.line().contains("holds this host's transaction lease"),
        "left to the live lease holder, not touched: {}",
        r.line()
    );
    // Once released, this replica recovers it under its own lease (here the host is
    // unreachable, so the recovery fails at the connection) and gives the lease back.
    rt.block_on(pass.leave());
    let recoveries = rt
        .block_on(recover_fleet_gated(
            &fleet,
            &work,
            "run-new",
            &Quiet,
            Some(&gate),
        ))
        .expect("recovery runs");
    let r = &recoveries[0];
    assert!(!r.recovered, "port 1 is closed: {r:?}");
    assert!(!r.line().contains("lease"), "{}", r.line());
    assert!(a.view().expect("view").in_flight.is_empty(), "released");
}

#[test]
fn a_journal_line_of_one_replica_is_read_by_another_which_recovers_only_hosts_left_in_flight() {
    use patchkeeper::apply::journal::{self, Event, Journal, Shared};
    use patchkeeper::apply::recover::recover_fleet_shared;
    use patchkeeper::apply::Outcome;
    let server = NatsServer::start();
    let ttl = Duration::from_secs(2);
    let (a, b) = (Arc::new(join(&server, ttl)), Arc::new(join(&server, ttl)));
    let root = tempfile::tempdir().expect("tempdir");
    let (work, fleet) = loaded(root.path());
    // Replica a's apply: web-2 finished; web-1 mid-transaction and gone-1 (since removed
    // from the inventory) started when a died, web-1's lease still a's, never renewed.
    let repo_a = root.path().join("a-repo");
    let state_a = patchkeeper::apply::state_dir(&repo_a);
    let shared_a: Arc<dyn Shared> = Arc::new(a.journal());
    let ja = Journal::open(&state_a, "run-a", "plan-x")
        .expect("journal")
        .with_shared(Some(shared_a.clone()));
    for (host, event) in [
        ("web-2", Event::HostStarted),
        ("web-1", Event::HostStarted),
        ("gone-1", Event::HostStarted),
        (
            "web-1",
            Event::TransactionStarted {
                command: "apt-get install -y libpk=1.2-1".into(),
            },
        ),
        (
            "web-2",
            Event::HostDone {
                outcome: Outcome::Compliant,
                detail: vec![],
            },
        ),
    ] {
        ja.record(Some(host), event).expect("journaled");
    }
    let dead = a.host_lease("web-1");
    let Attempt::Held(_) = a
        .runtime()
        .block_on(dead.take(&record(a.replica())))
        .expect("take")
    else {
        panic!("free");
    };
    drop(ja);
    // Replica b reads a's lines as a wrote them, in order.
    let written = journal::read(&state_a).expect("a's file");
    let read = b.journal().entries().expect("b reads the stream");
    assert_eq!(read, written, "the stream holds the file journal's lines");
    let open: Vec<(String, String, bool)> = journal::in_flight(&read)
        .into_iter()
        .map(|f| (f.host, f.run, f.in_transaction))
        .collect();
    assert_eq!(
        open,
        [
            ("gone-1".to_owned(), "run-a".to_owned(), false),
            ("web-1".to_owned(), "run-a".to_owned(), true)
        ],
        "the finished web-2 is not in flight"
    );
    assert_eq!(
        journal::finished(&read, "plan-x")
            .into_keys()
            .collect::<Vec<_>>(),
        ["web-2"]
    );
    // b's recovery, from its own (empty) state directory: only the hosts a left in flight,
    // web-1 once a's lease expired (port 1 is closed: it fails at the connection and stays
    // in flight), gone-1 recovered without a connection.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gate_b = HostLeases::new(&b).only_while(Arc::new(Fixed(true)));
    let shared_b: Arc<dyn Shared> = Arc::new(b.journal());
    let recoveries = rt
        .block_on(recover_fleet_shared(
            &fleet,
            &work,
            "run-b",
            &Quiet,
            Some(&gate_b),
            Some(shared_b.clone()),
        ))
        .expect("recovery runs");
    let got: Vec<(&str, bool)> = recoveries
        .iter()
        .map(|r| (r.host.as_str(), r.recovered))
        .collect();
    assert_eq!(got, [("gone-1", true), ("web-1", false)], "{recoveries:?}");
    assert!(
        recoveries[1].line().contains("was in flight in run run-a")
            && !recoveries[1].line().contains("lease"),
        "tried under b's own lease once a's expired: {}",
        recoveries[1].line()
    );
    // The outcomes are in the stream: a (restarted, its own file still saying gone-1 is in
    // flight) is offered web-1 alone; gone-1 is not recovered, or reported, twice.
    let recoveries = rt
        .block_on(recover_fleet_shared(
            &fleet,
            &repo_a,
            "run-a2",
            &Quiet,
            Some(&HostLeases::new(&a).only_while(Arc::new(Fixed(true)))),
            Some(shared_a),
        ))
        .expect("recovery runs");
    let hosts: Vec<&str> = recoveries.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["web-1"], "{recoveries:?}");
    let all = b.journal().entries().expect("read");
    let recovered: Vec<(&str, &str)> = all
        .iter()
        .filter_map(|e| match &e.event {
            Event::Recovered { of_run, .. } => Some((e.host.as_deref()?, of_run.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(recovered, [("gone-1", "run-a")]);
    assert!(
        a.view().expect("view").in_flight.is_empty(),
        "leases released"
    );
}

/// Each replica's `/metrics` shows its part: the leader flag, its term and lease counters,
/// labelled with its replica id (and valid for `promtool`).
#[test]
fn a_replica_serves_its_part_in_the_cluster_as_metrics() {
    use common::api::{client, promtool_check, wait_for, Server};
    let server = NatsServer::start();
    let root = tempfile::tempdir().expect("tempdir");
    let url = fleet(root.path());
    let cache = root.path().join("cache");
    let serve = Server::start_in(
        root.path(),
        &[
            "--interval",
            "1h",
            "--cluster",
            &server.url(),
            "--cluster-ttl",
            "2s",
            "--repo",
            &url,
            "--cache",
            &cache.display().to_string(),
        ],
    );
    let mut metrics = String::new();
    wait_for("the replica to lead", DEADLINE, || {
        metrics = client()
            .get(serve.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        metrics
            .lines()
            .any(|l| l.starts_with("patchkeeper_cluster_leader{") && l.ends_with(" 1"))
    });
    let pid = format!("-{}-", serve.pid());
    let leader = metrics
        .lines()
        .find(|l| l.starts_with("patchkeeper_cluster_leader{"))
        .expect("leader gauge");
    assert!(
        leader.contains(&pid),
        "labelled with the replica id: {leader}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("patchkeeper_cluster_leader_term{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("patchkeeper_cluster_leadership_changes_total{") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("patchkeeper_cluster_lease_renewal_failures_total{"),
        "{metrics}"
    );
    promtool_check(&metrics).expect("promtool accepts the metrics");
}

/// One batch at a time per worker: a worker held in its batch takes nothing more.
fn work_config(ack_wait: Duration, max_deliver: i64, batch: usize) -> WorkConfig {
    WorkConfig {
        ack_wait,
        max_deliver,
        batch,
        batches: 1,
    }
}

/// Two replicas of `server`, each with the work queue opened with `config`.
fn two_queues(server: &NatsServer, config: WorkConfig) -> (Cluster, Cluster, WorkQueue, WorkQueue) {
    let ttl = Duration::from_secs(5);
    let (a, b) = (join(server, ttl), join(server, ttl));
    let qa = WorkQueue::open(&a, config).expect("a opens the queue");
    let qb = WorkQueue::open(&b, config).expect("b opens the queue");
    (a, b, qa, qb)
}

/// A replica that validated the desired state `digest`.
fn state(digest: &'static str) -> Desired {
    Arc::new(move || Some(digest.to_owned()))
}

/// A handler that observes nothing: each host's output names the host and the replica.
fn echo(name: &'static str) -> Handler {
    Arc::new(move |_commit: &str, hosts: &[String]| {
        Some(
            hosts
                .iter()
                .map(|h| {
                    (
                        h.clone(),
                        Ok(serde_json::json!({"host": h, "by": name})
                            .to_string()
                            .into_bytes()),
                    )
                })
                .collect(),
        )
    })
}

#[test]
fn work_items_are_shared_by_the_replicas_and_each_is_done_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Barrier, Mutex};
    let server = NatsServer::start();
    let (a, b, qa, qb) = two_queues(&server, work_config(Duration::from_secs(5), 3, 8));
    // Each replica's first batch waits for the other's: both take part, whatever the
    // timing (a batch holds at most 8 of the 40 items).
    let both = Arc::new(Barrier::new(2));
    let calls = Arc::new(Mutex::new(Vec::<(&'static str, String)>::new()));
    let handler = |name: &'static str| -> Handler {
        let (both, calls, first) = (both.clone(), calls.clone(), AtomicBool::new(true));
        Arc::new(move |commit: &str, hosts: &[String]| {
            assert_eq!(commit, "c0ffee");
            if first.swap(false, Ordering::SeqCst) {
                both.wait();
            }
            let mut calls = calls.lock().expect("calls");
            calls.extend(hosts.iter().map(|h| (name, h.clone())));
            echo(name)(commit, hosts)
        })
    };
    let _wa = qa.serve(state("c0ffee"), handler("a"));
    let _wb = qb.serve(state("c0ffee"), handler("b"));
    let hosts: Vec<String> = (0..40).map(|i| format!("web-{i:02}")).collect();
    let done = qa
        .dispatch("run-1", "c0ffee", &hosts, DEADLINE)
        .expect("dispatch");
    assert_eq!(done.len(), 40, "{done:?}");
    for h in &hosts {
        let d = &done[h];
        let output: serde_json::Value =
            serde_json::from_slice(d.output.as_ref().expect("observed")).expect("JSON");
        assert_eq!(output["host"], h.as_str());
        let by = if output["by"] == "a" { &a } else { &b };
        assert_eq!(d.replica, by.replica(), "the result names its replica");
    }
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 40, "each host worked on once: {calls:?}");
    let by_a = calls.iter().filter(|(r, _)| *r == "a").count();
    assert!(
        by_a > 0 && by_a < 40,
        "both replicas worked: a did {by_a} of 40"
    );
    // `cluster status`: nothing waits or is held once the round is gathered (each item's
    // ack follows its stored result, so the last one may still be on its way).
    wait_for("the queue to empty", || {
        let queue = a.view().expect("view").queue.expect("the queue is open");
        (queue.waiting, queue.in_progress) == (0, 0)
    });
}

#[test]
fn a_dead_replicas_items_go_to_another_and_an_item_that_always_fails_fails_its_host() {
    use std::sync::mpsc;
    use std::sync::Mutex;
    let server = NatsServer::start();
    let (_a, b, qa, qb) = two_queues(&server, work_config(Duration::from_secs(2), 2, 64));
    // A takes a batch and hangs in it; then it dies (no ack, no progress ack).
    let (took, taken) = mpsc::channel::<usize>();
    let (release, released) = mpsc::channel::<()>();
    let (took, released) = (Mutex::new(took), Mutex::new(released));
    let mut wa = qa.serve(
        state("c0ffee"),
        Arc::new(move |_commit: &str, hosts: &[String]| {
            let _ = took.lock().expect("took").send(hosts.len());
            let _ = released.lock().expect("released").recv();
            None
        }),
    );
    let hosts: Vec<String> = (0..10).map(|i| format!("db-{i}")).collect();
    let dispatcher = {
        let (qb, hosts) = (qb.clone(), hosts.clone());
        std::thread::spawn(move || qb.dispatch("run-1", "c0ffee", &hosts, DEADLINE))
    };
    let held = taken.recv_timeout(DEADLINE).expect("a takes a batch");
    assert!(held > 0);
    // `cluster status` counts what a holds and what nobody took yet, once every item is
    // published (the dispatcher may still be at it; a fetch that ended may also have been
    // sent items after it, held unacknowledged too).
    wait_for("every item to be waiting or held", || {
        let queue = b.view().expect("view").queue.expect("the queue is open");
        queue.waiting + queue.in_progress == 10 && queue.in_progress >= held as u64
    });
    wa.abandon();
    let died = Instant::now();
    let mut wb = qb.serve(state("c0ffee"), echo("b"));
    let done = dispatcher.join().expect("dispatcher").expect("dispatch");
    eprintln!(
        "b finished a's {held} items {:?} after a died (ack_wait 2s)",
        died.elapsed()
    );
    assert_eq!(done.len(), 10, "{done:?}");
    for d in done.values() {
        assert_eq!(d.replica, b.replica(), "{d:?}");
        assert!(d.output.is_ok(), "{d:?}");
    }
    let _ = release.send(());
    // (An item the stopped worker's last fetch may still receive counts as a delivery
    // that was never acknowledged: the same failure.)
    wb.abandon();
    // An item whose work fails on every delivery is a failure of its host once the
    // server gives up on it (max_deliver 2), not a round that waits forever.
    let _failing = qb.serve(
        state("c0ffee"),
        Arc::new(|commit: &str, hosts: &[String]| {
            if hosts.iter().any(|h| h == "poison") {
                panic!("the work fails on this host");
            }
            echo("b")(commit, hosts)
        }),
    );
    let done = qb
        .dispatch("run-2", "c0ffee", &["poison".to_owned()], DEADLINE)
        .expect("dispatch");
    let d = &done["poison"];
    assert_eq!(d.replica, "", "{d:?}");
    let why = d.output.as_ref().expect_err("failed");
    assert!(why.contains("delivered 2 times"), "{why}");
}

/// A round that gives up drops the items no replica took: nobody would gather them.
#[test]
fn a_round_that_gives_up_drops_its_items_nobody_took() {
    let server = NatsServer::start();
    let a = join(&server, Duration::from_secs(5));
    let qa = WorkQueue::open(&a, work_config(Duration::from_secs(5), 3, 64)).expect("opens");
    // No worker: nobody takes the items, and the round gives up at once.
    let hosts: Vec<String> = (0..5).map(|i| format!("web-{i}")).collect();
    let done = qa
        .dispatch("run-1", "c0ffee", &hosts, Duration::ZERO)
        .expect("dispatch");
    assert!(done.is_empty(), "{done:?}");
    let queue = a.view().expect("view").queue.expect("open");
    assert_eq!((queue.waiting, queue.in_progress), (0, 0), "{queue:?}");
}

/// A replica still on another desired state (it has not fetched the new commit yet) takes
/// none of the round's items: refusing them would count as deliveries and could turn
/// them into host failures.
#[test]
fn a_replica_on_another_desired_state_takes_none_of_the_rounds_items() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = NatsServer::start();
    let (a, _b, qa, qb) = two_queues(&server, work_config(Duration::from_secs(5), 1, 4));
    let called = Arc::new(AtomicUsize::new(0));
    // B serves first and is idle (its long poll waits): it would take items first.
    let _wb = qb.serve(state("old"), {
        let called = called.clone();
        Arc::new(move |desired: &str, hosts: &[String]| {
            called.fetch_add(1, Ordering::SeqCst);
            echo("b")(desired, hosts)
        })
    });
    let _wa = qa.serve(state("c0ffee"), echo("a"));
    let hosts: Vec<String> = (0..20).map(|i| format!("web-{i:02}")).collect();
    let done = qa
        .dispatch("run-1", "c0ffee", &hosts, DEADLINE)
        .expect("dispatch");
    assert_eq!(done.len(), 20, "{done:?}");
    assert!(
        done.values()
            .all(|d| d.replica == a.replica() && d.output.is_ok()),
        "{done:?}"
    );
    assert_eq!(
        called.load(Ordering::SeqCst),
        0,
        "b took items of a state it lacks"
    );
}

/// Apply items (a batch's hosts handed out by the leader): each runs once on whichever
/// replica takes it, its result back to the one waiting; an item whose replica dies with it
/// is never run again — its host fails ("stopped answering") once the server gives the item
/// up, and crash recovery takes it from there.
#[test]
fn apply_items_run_once_each_and_a_dead_replicas_item_fails_its_host_without_a_rerun() {
    use patchkeeper::cluster::work::ApplyHandler;
    use std::sync::mpsc;
    use std::sync::Mutex;
    let server = NatsServer::start();
    let (a, b, qa, qb) = two_queues(&server, work_config(Duration::from_secs(2), 3, 64));
    let runs = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let handler = |name: &'static str| -> ApplyHandler {
        let runs = runs.clone();
        Arc::new(move |_desired: &str, payload: &str| {
            runs.lock()
                .expect("runs")
                .push((name.to_owned(), payload.to_owned()));
            Some(Ok(format!("{name}:{payload}").into_bytes()))
        })
    };
    let mut wa = qa.serve_apply(state("c0ffee"), handler("a"));
    let mut wb = qb.serve_apply(state("c0ffee"), handler("b"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let waits: Vec<_> = (0..12)
        .map(|i| {
            qa.apply(
                "run-1+apply",
                "c0ffee",
                &format!("web-{i:02}"),
                format!("plan-{i}"),
                DEADLINE,
            )
        })
        .collect();
    let done = runtime.block_on(futures_util::future::join_all(waits));
    for (i, d) in done.iter().enumerate() {
        assert_eq!(d.host, format!("web-{i:02}"));
        let output = String::from_utf8(d.output.clone().expect("applied")).expect("utf-8");
        let by = if output.starts_with("a:") { &a } else { &b };
        assert_eq!(
            output.split_once(':').map(|(_, p)| p),
            Some(format!("plan-{i}").as_str())
        );
        assert_eq!(d.replica, by.replica(), "the result names its replica");
    }
    assert_eq!(runs.lock().expect("runs").len(), 12, "each item ran once");
    wa.stop();
    wb.stop();
    // B takes an item of another desired state (a consumer of its own, which the stopped
    // workers never fetched from) and dies in the middle of it: no progress ack any more.
    let (took, taken) = mpsc::channel::<String>();
    let (release, released) = mpsc::channel::<()>();
    let (took, released) = (Mutex::new(took), Mutex::new(released));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut dying = qb.serve_apply(state("d2"), {
        let calls = calls.clone();
        Arc::new(move |_desired: &str, payload: &str| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = took.lock().expect("took").send(payload.to_owned());
            let _ = released.lock().expect("released").recv();
            None
        })
    });
    let waiting = qa.apply("run-2+apply", "d2", "db-1", "plan-db".into(), DEADLINE);
    let waiter = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(waiting)
    });
    assert_eq!(taken.recv_timeout(DEADLINE).expect("b takes it"), "plan-db");
    dying.abandon();
    let died = Instant::now();
    // A live replica is there to take a redelivery: there must be none.
    let _live = qa.serve_apply(state("d2"), handler("a"));
    let d = waiter.join().expect("waiter");
    eprintln!(
        "the dead replica's item failed {:?} after it died (ack_wait 2s)",
        died.elapsed()
    );
    let why = d.output.expect_err("failed");
    assert!(why.contains("stopped answering"), "{why}");
    assert_eq!(d.replica, "");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        !runs
            .lock()
            .expect("runs")
            .iter()
            .any(|(_, p)| p == "plan-db"),
        "never run again"
    );
    let _ = release.send(());
}
