//! The end-to-end proof of scale-out (issue 19) on the fleet simulator: three real
//! `serve --cluster` replicas share a fleet of 30 simulated hosts (real SSH servers on
//! loopback, Debian and RPM, benches/fleetsim) through a real nats-server, and patch it
//! with `reconcile.autoApply` while faults strike in the middle of a transaction:
//!
//! - the leader is `kill -9`ed while a host's transaction runs, and the nats-server is
//!   killed and restarted while the new leader recovers that host;
//! - the leader is cut off from the server (its connection dropped, reconnections refused)
//!   while a host's transaction runs, and keeps running the whole time.
//!
//! Each time every host ends compliant in the report, and the hosts themselves (the
//! simulator's own state, not patchkeeper's word) say each was patched exactly once and
//! no controller ever sent a host a transaction while another ran there (the simulated
//! package manager's lock counts every such attempt, as apt and dnf would refuse it).
//!
//! States are put in place with controls: a host's transaction is held by the simulator
//! until the test releases it (like the lab's hold point), so a replica is provably in the
//! middle of it when the fault strikes; waits poll what the replicas print or what the
//! hosts say.

mod common;
#[path = "../benches/fleetsim/sim.rs"]
mod sim;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::git::git;
use common::nats::NatsServer;

const HOSTS: usize = 30;
/// The host whose transaction is held when the fault strikes (not the canary, host 0).
const HELD: usize = 9;
/// Bounds a wait that should end much sooner (a failure only).
const WAIT: Duration = Duration::from_secs(300);

/// The simulator on its own loopback addresses, with short delays (the figures come from
/// the benchmarks) and no reboots.
fn simulate(base_octet: u8) -> (tokio::runtime::Runtime, Arc<sim::Sim>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = Arc::new(sim::Sim::new(sim::Options {
        hosts: HOSTS,
        seed: 19,
        base_octet,
        port: 0,
        delays: sim::Delays {
            observe: Duration::from_millis(20),
            dry_run: Duration::from_millis(20),
            transaction: Duration::from_millis(100),
            command: Duration::from_millis(1),
            reboot: Duration::from_millis(100),
        },
        reboot_percent: 0,
        rpm_percent: 30,
    }));
    runtime
        .block_on(sim.start())
        .expect("the simulator listens");
    (runtime, sim)
}

/// Per host, whether it has security updates pending (what the baseline asks for).
fn pending_security(sim: &sim::Sim) -> Vec<bool> {
    sim.state_report()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(5) != Some("0"))
        .collect()
}

/// The simulated fleet pushed to a bare repo the replicas fetch over `file://`: security
/// updates everywhere, a canary then the rest five at a time, applied automatically.
fn fleet(root: &Path, sim: &sim::Sim) -> String {
    let work = root.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    sim.write_fleet(&work, 5)
        .expect("the simulator writes its fleet");
    // The client key stays out of Git (.gitignore): absolute paths, so every replica's
    // checkout finds it.
    let keys = work.join(".sim");
    std::fs::write(
        work.join("patchkeeper.yaml"),
        format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: sim\nspec:\n  ssh:\n    user: root\n    identityFile: {}\n    knownHosts: {}\n    connectTimeout: 60s\n    commandTimeout: 5m\n  observe:\n    parallel: 1000\n    refresh: false\n  apply:\n    lockWait: 5m\n    minFreeDiskMib: 100\n  reconcile:\n    autoApply: true\n  reports:\n    author: {{name: patchkeeper, email: patchkeeper@example.com}}\n",
            keys.join("id_ed25519").display(),
            keys.join("known_hosts").display()
        ),
    )
    .expect("settings");
    git(root, &["init", "-q", "--bare", "-b", "main", "fleet.git"]);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "the simulated fleet"]);
    let bare = root.join("fleet.git");
    git(&work, &["push", "-q", &bare.display().to_string(), "main"]);
    format!("file://{}", bare.display())
}

/// A `serve --cluster` replica, killed if the test ends (or fails) while it runs.
struct Replica(Option<common::cli::Running>);

impl Replica {
    fn start(root: &Path, name: &str, url: &str, nats: &str) -> Replica {
        use assert_cmd::cargo::CommandCargoExt;
        let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
        cmd.args([
            "serve",
            "--interval",
            "5s",
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
        .env("PATCHKEEPER_ACTOR", format!("replica-{name}"))
        // The client key lives outside the fleet repo (beside the work tree).
        .env("PATCHKEEPER_ALLOW_PATHS", root.join("work/.sim"))
        .stdin(std::process::Stdio::null());
        Replica(Some(common::cli::Running::spawn(cmd)))
    }

    fn run(&mut self) -> &mut common::cli::Running {
        self.0.as_mut().expect("running")
    }

    fn stderr(&self) -> String {
        self.0.as_ref().map(|r| r.stderr()).unwrap_or_default()
    }

    /// `kill -9`: no lease released, nothing journaled after.
    fn kill_9(&mut self) {
        let mut r = self.0.take().expect("running");
        r.kill();
        let out = r.wait();
        assert_eq!(out.status.code(), None, "killed by a signal");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            if !r.has_exited() {
                r.kill();
            }
            let _ = r.wait();
        }
    }
}

/// Polls `done` until it holds; panics naming `what` after [`WAIT`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `replica` prints a line naming `host` that says `what`.
fn wait_for_host_line(replica: &mut Replica, host: &str, what: &str) {
    replica.run().wait_until(what, WAIT, |stderr| {
        stderr.lines().any(|l| l.contains(host) && l.contains(what))
    });
}

/// Waits until a replica is in the middle of `host`'s transaction (held by the simulator);
/// panics with the replicas' logs after [`WAIT`].
fn wait_held(host: &sim::Host, replicas: &[&Replica]) {
    let start = Instant::now();
    while !host.held_in_transaction() {
        if start.elapsed() > WAIT {
            let logs: Vec<String> = replicas.iter().map(|r| r.stderr()).collect();
            panic!(
                "no transaction on {} within {WAIT:?}; replicas:\n{}",
                host.name,
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which of `replicas` took the leader lease (waits for one to).
fn new_leader(replicas: &[&Replica]) -> usize {
    let mut leader = None;
    wait_for("another replica takes the leader lease", || {
        leader = replicas
            .iter()
            .position(|r| r.stderr().contains("took the leader lease"));
        leader.is_some()
    });
    leader.expect("found")
}

/// `git show patchkeeper/reports:PATH` in the bare repo, if it is there yet.
fn report_file(root: &Path, path: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root.join("fleet.git"))
        .args(["show", &format!("patchkeeper/reports:{path}")])
        .output()
        .expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the hosts say every security update is in and the newest report says every
/// host is compliant.
fn wait_compliant(root: &Path, sim: &sim::Sim, replicas: &[&Replica]) {
    let start = Instant::now();
    loop {
        let patched = pending_security(sim).iter().all(|p| !p);
        let summary = report_file(root, "summary.json")
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
        let compliant = summary
            .as_ref()
            .is_some_and(|s| s["total"] == HOSTS && s["counts"]["compliant"] == HOSTS);
        if patched && compliant {
            return;
        }
        if start.elapsed() > WAIT {
            let logs: Vec<String> = replicas.iter().map(|r| r.stderr()).collect();
            panic!(
                "not compliant within {WAIT:?} (hosts patched: {patched}; summary: {summary:?})\nhosts:\n{}\nreplicas:\n{}",
                sim.state_report(),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the hosts say: each host that had work ran exactly one transaction (the one held
/// included: its orphan finished, and recovery did not run it again), the others none; no
/// host was ever sent a transaction while another ran there.
fn assert_patched_once_each(sim: &sim::Sim, had_work: &[bool]) {
    for (host, work) in sim.hosts.iter().zip(had_work) {
        assert_eq!(
            host.contended(),
            0,
            "{}: a second transaction was sent while one ran\n{}",
            host.name,
            sim.state_report()
        );
        assert_eq!(
            host.transactions(),
            u64::from(*work),
            "{}: patched once if it had work\n{}",
            host.name,
            sim.state_report()
        );
    }
    assert_eq!(
        sim.counters
            .unknown
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every command the replicas sent is simulated"
    );
}

/// The cluster's own account at the end: no host leased, none left in flight in the
/// journal stream.
fn assert_nothing_in_flight(root: &Path, nats: &str) {
    let out = common::cli::run(root, &["cluster", "status", "--cluster", nats, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", common::cli::text(&out)));
    assert_eq!(v["inFlight"], serde_json::json!([]), "{v}");
    assert_eq!(v["unfinished"], serde_json::json!([]), "{v}");
}

/// The replica (of `replicas`) whose host lease covers `host`'s transaction, by the
/// cluster's own account (`cluster status`: lease holders are `MACHINE-PID-RANDOM`).
fn holder_of(root: &Path, nats: &str, host: &str, replicas: &mut [&mut Replica]) -> usize {
    let mut found = None;
    wait_for("the held host's lease in `cluster status`", || {
        let out = common::cli::run(root, &["cluster", "status", "--cluster", nats, "--json"]);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        let holder = v["inFlight"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["host"] == host)
            .and_then(|h| h["replica"].as_str().map(str::to_owned));
        found = holder.and_then(|holder| {
            replicas
                .iter_mut()
                .position(|r| holder.contains(&format!("-{}-", r.run().id())))
        });
        found.is_some()
    });
    found.expect("found")
}

/// Whether `replica` took the leader lease (and is still running).
fn leads(replica: &Replica) -> bool {
    replica.0.is_some() && replica.stderr().contains("took the leader lease")
}

#[test]
fn three_replicas_patch_each_host_once_through_replicas_killed_mid_transaction_and_a_broker_restart(
) {
    let (runtime, sim) = simulate(102);
    let had_work = pending_security(&sim);
    assert!(had_work[HELD], "the held host has updates to apply");
    assert!(
        had_work.iter().filter(|w| **w).count() > HOSTS / 2,
        "most hosts have work"
    );
    let mut server = NatsServer::start();
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let url = fleet(root, &sim);
    let held = &sim.hosts[HELD];
    held.hold();
    let mut a = Replica::start(root, "a", &url, &server.url());
    a.run().wait_for_stderr("took the leader lease", WAIT);
    let mut b = Replica::start(root, "b", &url, &server.url());
    let mut c = Replica::start(root, "c", &url, &server.url());
    for r in [&mut b, &mut c] {
        r.run()
            .wait_for_stderr("following: another replica holds the leader lease", WAIT);
    }
    wait_held(held, &[&a, &b, &c]);
    let mut replicas = [a, b, c];
    // Whichever replica runs the held host's transaction dies in the middle of it (the
    // host finishes it on its own, its lock held meanwhile); then the leader too, if that
    // was another replica.
    let runner = {
        let mut all: Vec<&mut Replica> = replicas.iter_mut().collect();
        holder_of(root, &server.url(), &held.name, &mut all)
    };
    eprintln!(
        "replica {} runs the held transaction ({})",
        ["a", "b", "c"][runner],
        if leads(&replicas[runner]) {
            "the leader"
        } else {
            "a follower"
        }
    );
    let killed = Instant::now();
    replicas[runner].kill_9();
    if let Some(leader) = replicas.iter().position(leads) {
        replicas[leader].kill_9();
    }
    // One replica is left, or two when the runner was the leader: whichever leads now.
    let alive: Vec<usize> = (0..3).filter(|i| replicas[*i].0.is_some()).collect();
    let survivor = {
        let candidates: Vec<&Replica> = alive.iter().map(|i| &replicas[*i]).collect();
        alive[new_leader(&candidates)]
    };
    let last = &mut replicas[survivor];
    eprintln!(
        "the last replica leads {:?} after the kill -9s (ttl 2s)",
        killed.elapsed()
    );
    wait_for_host_line(
        last,
        &held.name,
        "recovery: waiting for the package manager lock",
    );
    // The broker dies and comes back while the last replica holds the host's lease and waits.
    server.restart();
    held.release();
    wait_compliant(root, &sim, &[&*last]);
    assert_patched_once_each(&sim, &had_work);
    assert_nothing_in_flight(root, &server.url());
    let log = last.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains(&held.name) && l.contains("was in flight in run")),
        "the last replica recovered the held host:\n{log}"
    );
    runtime.shutdown_background();
}

/// A TCP relay between one replica and the nats-server that the test can cut: the
/// replica's connections are dropped and every reconnection refused until it heals, as a
/// network partition of that replica would.
struct Relay {
    port: u16,
    state: Arc<Mutex<RelayState>>,
}

struct RelayState {
    cut: bool,
    open: Vec<TcpStream>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(RelayState {
            cut: false,
            open: Vec::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                // Under the lock: a connection is either refused or cut later, never missed.
                let mut st = shared.lock().expect("relay state");
                if st.cut {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        st.open.push(s);
                    }
                }
                drop(st);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Relay { port, state }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        let mut st = self.state.lock().expect("relay state");
        st.cut = true;
        for s in st.open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.state.lock().expect("relay state").cut = false;
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[test]
fn a_replica_cut_off_mid_transaction_never_shares_a_host_with_another() {
    let (runtime, sim) = simulate(103);
    let had_work = pending_security(&sim);
    assert!(had_work[HELD], "the held host has updates to apply");
    let server = NatsServer::start();
    let relays: Vec<Relay> = (0..3).map(|_| Relay::start(server.port())).collect();
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let url = fleet(root, &sim);
    let held = &sim.hosts[HELD];
    held.hold();
    let mut a = Replica::start(root, "a", &url, &relays[0].url());
    a.run().wait_for_stderr("took the leader lease", WAIT);
    let mut b = Replica::start(root, "b", &url, &relays[1].url());
    let mut c = Replica::start(root, "c", &url, &relays[2].url());
    for r in [&mut b, &mut c] {
        r.run()
            .wait_for_stderr("following: another replica holds the leader lease", WAIT);
    }
    wait_held(held, &[&a, &b, &c]);
    let mut replicas = [a, b, c];
    let cut = {
        let mut all: Vec<&mut Replica> = replicas.iter_mut().collect();
        holder_of(root, &server.url(), &held.name, &mut all)
    };
    let cut_leader = leads(&replicas[cut]);
    eprintln!(
        "replica {} runs the held transaction ({}): cut off",
        ["a", "b", "c"][cut],
        if cut_leader {
            "the leader"
        } else {
            "a follower"
        }
    );
    // The partition: the replica keeps running, its transaction on the held host too, but
    // it can no longer renew its leases or journal.
    relays[cut].cut();
    // The host lease it cannot renew expires and passes to whoever leads now (another
    // replica, after the lease TTL, if it was the leader), whose recovery waits for the
    // lock the cut-off replica's transaction still holds on the host: never a second one.
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    let leader = {
        let candidates: Vec<&Replica> = others.iter().map(|i| &replicas[*i]).collect();
        others[new_leader(&candidates)]
    };
    wait_for_host_line(
        &mut replicas[leader],
        &held.name,
        "recovery: waiting for the package manager lock",
    );
    assert!(
        !replicas[cut].run().has_exited(),
        "the cut-off replica still runs:\n{}",
        replicas[cut].stderr()
    );
    assert!(held.held_in_transaction(), "its transaction still runs");
    held.release();
    {
        let all: Vec<&Replica> = replicas.iter().collect();
        wait_compliant(root, &sim, &all);
    }
    relays[cut].heal();
    if cut_leader {
        // Back on the server, it learns it lost the lead, and follows.
        replicas[cut]
            .run()
            .wait_for_stderr("lost the leader lease", WAIT);
    }
    assert_patched_once_each(&sim, &had_work);
    assert_nothing_in_flight(root, &server.url());
    runtime.shutdown_background();
}
