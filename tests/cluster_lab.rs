//! `serve --cluster` applying to real lab hosts (issue 19): the per-host transaction lease
//! is held, in the cluster's KV bucket, for as long as a real dpkg transaction is in flight
//! (held at the lab's hold point), and released after verification; a host whose lease
//! another replica holds is not touched (checked with dpkg on the host) and is reported
//! skipped naming the holder; once that lease is released, the next leader patches it.
//! A replica `kill -9`ed while its host's dpkg transaction is held in flight is recovered
//! by another replica with its own state directory, from the journal in JetStream, once the
//! dead replica's host lease expired: once, and never again by a later replica.
//! A real `nats-server` per test (tests/common/nats.rs).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::lab::{deb, write, Lab};
use common::nats::NatsServer;
use patchkeeper::cluster::lease::{Attempt, LeaseRecord};
use patchkeeper::cluster::{Cluster, JoinOptions};

const WAIT: Duration = Duration::from_secs(300);

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// libpk 1.2 on every Debian host, applied automatically inside the always-open window.
fn desire_libpk_1_2(lab: &Lab) {
    write(
        lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian]\n  updates:\n    classes: none\n  hold: [pk-held]\n  window: always\n  rollout: lab\n  packages:\n    - name: libpk\n      minVersion: \"1.2-1\"\n",
    );
    let path = lab.dir().join("patchkeeper.yaml");
    let settings = std::fs::read_to_string(&path).expect("lab settings");
    let settings = settings.replace("  reconcile:\n    autoApply: true\n", "");
    let settings = settings.replace("spec:\n", "spec:\n  reconcile:\n    autoApply: true\n");
    std::fs::write(&path, settings).expect("write settings");
    git(lab.dir(), &["add", "-A", "--", ":!.patchkeeper"]);
    git(
        lab.dir(),
        &["commit", "-q", "-m", "libpk 1.2, applied automatically"],
    );
}

/// A `serve --cluster` replica, killed if the test ends while it runs.
struct Replica(Option<common::cli::Running>);

impl Replica {
    fn start(lab: &Lab, nats: &str) -> Replica {
        Replica::start_in(lab.dir(), nats, &[])
    }

    /// A replica serving the fleet repo at `repo` (its state directory, journal file
    /// included, under it), with `extra` arguments.
    fn start_in(repo: &Path, nats: &str, extra: &[&str]) -> Replica {
        let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
        cmd.args(["serve", "--interval", "1h", "--cluster", nats])
            .args(extra)
            .arg("--repo")
            .arg(repo)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        Replica(Some(common::cli::Running::spawn(cmd)))
    }

    /// `kill -9`: no lease released, nothing journaled after.
    fn kill_9(mut self) {
        let mut r = self.0.take().expect("running");
        r.kill();
        let out = r.wait();
        assert_eq!(out.status.code(), None, "killed by a signal");
    }

    fn run(&mut self) -> &mut common::cli::Running {
        self.0.as_mut().expect("running")
    }

    /// SIGTERM, then the output (exit 0 expected).
    fn stop(mut self) -> String {
        let r = self.0.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &r.id().to_string()])
            .status();
        let out = r.wait();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
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

#[test]
fn a_host_lease_covers_the_real_transaction_and_a_held_one_keeps_the_host_untouched() {
    let lab = Lab::up(2, 0);
    let server = NatsServer::start();
    let before = deb(&lab, "deb-2", "libpk");
    assert_ne!(before, "1.2-1 ii", "the lab starts below the baseline");
    desire_libpk_1_2(&lab);
    // Another replica (this test) holds deb-2's transaction lease.
    let other = Arc::new(
        Cluster::connect(
            &server.url(),
            &JoinOptions {
                ttl: Some(Duration::from_secs(30)),
                read_only: false,
            },
        )
        .expect("join"),
    );
    let lease = other.host_lease("deb-2");
    let record = LeaseRecord {
        holder: "other-replica".into(),
        since: jiff::Timestamp::now(),
        purpose: Some("apply run-of-the-other".into()),
    };
    let Attempt::Held(held) = other.runtime().block_on(lease.take(&record)).expect("take") else {
        panic!("deb-2's lease is free");
    };
    // deb-1's transaction stops at the hold point: provably in flight.
    lab.hold_host("deb-1");
    let mut serve = Replica::start(&lab, &server.url());
    serve.run().wait_for_stderr("took the leader lease", WAIT);
    lab.wait_held("deb-1");
    let pid = serve.run().id();
    let view = other.view().expect("view");
    let in_flight: Vec<(String, bool)> = view
        .in_flight
        .iter()
        .map(|h| (h.host.clone(), h.replica.contains(&format!("-{pid}-"))))
        .collect();
    assert_eq!(
        in_flight,
        vec![("deb-1".to_owned(), true), ("deb-2".to_owned(), false)],
        "deb-1 leased by serve during its transaction, deb-2 by the other replica: {view:?}"
    );
    lab.release_host("deb-1");
    serve.run().wait_for_stderr("round done", WAIT);
    let stderr = serve.stop();
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii", "{stderr}");
    assert_eq!(
        deb(&lab, "deb-2", "libpk"),
        before,
        "deb-2 untouched while another replica holds its lease\n{stderr}"
    );
    assert!(
        stderr.contains("replica other-replica")
            && stderr.contains("holds this host's transaction lease"),
        "{stderr}"
    );
    // deb-1's lease was released after verification; deb-2's is still the other's.
    let view = other.view().expect("view");
    let hosts: Vec<&str> = view.in_flight.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["deb-2"], "{view:?}");

    // The other replica releases deb-2: the next leader patches it.
    other
        .runtime()
        .block_on(lease.release(held))
        .expect("release");
    let mut serve = Replica::start(&lab, &server.url());
    serve.run().wait_for_stderr("round done", WAIT);
    let stderr = serve.stop();
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.2-1 ii", "{stderr}");
    assert!(other.view().expect("view").in_flight.is_empty());
}

/// The lines of the cluster's journal stream, read as another replica does.
fn stream_entries(cluster: &Cluster) -> Vec<patchkeeper::apply::journal::Entry> {
    use patchkeeper::apply::journal::Shared;
    cluster
        .journal()
        .entries()
        .expect("the journal stream reads")
}

#[test]
fn a_replica_killed_mid_transaction_has_its_host_recovered_by_another_once() {
    use patchkeeper::apply::journal::{in_flight, Event};
    let lab = Lab::up(1, 0);
    let server = NatsServer::start();
    assert_ne!(
        deb(&lab, "deb-1", "libpk"),
        "1.2-1 ii",
        "below the baseline"
    );
    desire_libpk_1_2(&lab);
    // Replica b serves its own working copy: its state directory (fleet lock, journal file)
    // is not a's, so what it knows of a's run comes from the cluster alone.
    let root = tempfile::tempdir().expect("tempdir");
    let repo_b = root.path().join("fleet-b");
    git(
        root.path(),
        &["clone", "-q", &lab.dir().display().to_string(), "fleet-b"],
    );
    let copied = Command::new("cp")
        .arg("-a")
        .arg(lab.dir().join(".lab"))
        .arg(&repo_b)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "the lab's key goes with the copy");
    let ttl = ["--cluster-ttl", "2s"];
    // a's transaction on deb-1 stops at the hold point: provably in flight when a dies.
    lab.hold_host("deb-1");
    let mut a = Replica::start_in(lab.dir(), &server.url(), &ttl);
    a.run().wait_for_stderr("took the leader lease", WAIT);
    lab.wait_held("deb-1");
    let a_pid = a.run().id();
    let mut b = Replica::start_in(&repo_b, &server.url(), &ttl);
    b.run()
        .wait_for_stderr("following: another replica holds the leader lease", WAIT);
    let watcher = Cluster::connect(
        &server.url(),
        &JoinOptions {
            ttl: None,
            read_only: true,
        },
    )
    .expect("join");
    // The transaction was journaled in the stream before it was sent.
    let open = in_flight(&stream_entries(&watcher));
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].host == "deb-1" && open[0].in_transaction,
        "{open:?}"
    );
    let a_run = open[0].run.clone();
    let unfinished = watcher.view().expect("view").unfinished;
    assert_eq!(
        unfinished.len(),
        1,
        "cluster status shows it: {unfinished:?}"
    );
    let killed = std::time::Instant::now();
    a.kill_9();
    // b leads once a's leader lease expired, and recovers deb-1 once a's host lease did:
    // the orphaned dpkg still holds the lock, so b's recovery waits for it, under b's lease.
    b.run().wait_for_stderr("took the leader lease", WAIT);
    b.run()
        .wait_for_stderr("recovery: waiting for the package manager lock", WAIT);
    eprintln!(
        "b recovering deb-1 under its own lease {:?} after a's kill -9 (ttl 2s)",
        killed.elapsed()
    );
    let view = watcher.view().expect("view");
    assert_eq!(view.in_flight.len(), 1, "{view:?}");
    assert!(
        view.in_flight[0].host == "deb-1"
            && view.in_flight[0]
                .replica
                .contains(&format!("-{}-", b.run().id()))
            && !view.in_flight[0].replica.contains(&format!("-{a_pid}-")),
        "deb-1 leased by b during its recovery: {view:?}"
    );
    assert_eq!(
        deb(&lab, "deb-1", "libpk"),
        "1.2-1 iU",
        "still mid-transaction"
    );
    lab.release_host("deb-1");
    b.run().wait_for_stderr("round done", WAIT);
    let stderr = b.stop();
    let line = format!("host deb-1: was in flight in run {a_run}");
    assert_eq!(
        stderr.matches(&line).count(),
        1,
        "recovered once:\n{stderr}"
    );
    assert!(
        stderr.contains("re-observed: the package database is consistent")
            && stderr.contains("libpk 1.0-1 -> 1.2-1"),
        "{stderr}"
    );
    // Consistent, at the planned version, verified by dpkg.
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii", "{stderr}");
    lab.run_ok("deb-1", "dpkg --audit | (! grep .) && dpkg --verify libpk");
    let entries = stream_entries(&watcher);
    assert!(in_flight(&entries).is_empty(), "{entries:?}");
    let recovered: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Recovered { of_run, .. } if e.host.as_deref() == Some("deb-1") => {
                Some(of_run.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(recovered, [a_run.as_str()], "one recovery journaled");
    let view = watcher.view().expect("view");
    assert!(
        view.in_flight.is_empty() && view.unfinished.is_empty(),
        "{view:?}"
    );

    // a comes back on its own state directory, whose journal file still has deb-1 in
    // flight: the stream says b recovered it, so a neither recovers nor reports it again.
    let file = std::fs::read_to_string(lab.dir().join(".patchkeeper/journal.jsonl"))
        .expect("a's journal file");
    assert!(!file.contains("\"type\":\"recovered\""), "{file}");
    let mut again = Replica::start_in(lab.dir(), &server.url(), &ttl);
    again.run().wait_for_stderr("round done", WAIT);
    let stderr = again.stop();
    assert!(!stderr.contains("in flight"), "{stderr}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii", "{stderr}");
}
