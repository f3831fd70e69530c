//! The fleet simulator: one process, many simulated Debian 12 and RPM/dnf (Rocky Linux 9)
//! hosts, each a real SSH server
//! (russh) on its own loopback address with its own host key, boot id, installed packages and
//! pending updates, answering the commands patchkeeper sends (observation script, dependency
//! dry run, package transaction, installed query, integrity check, free disk, boot id,
//! reboot) with output in the formats of the real tools, after configurable delays, and
//! changing its state when a transaction runs. See `docs/scale.md` for what it does not do.
//!
//! Shared by the `fleetsim` example (benches/fleetsim/fleetsim.rs) and `tests/scale_sim.rs`.

#![allow(dead_code)] // each includer uses a part

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use sha2::{Digest, Sha256};

/// The real captures every host is drawn from.
const DPKG_QUERY: &str = include_str!("../../tests/fixtures/observe/debian12-dpkg-query.txt");
const DIST_UPGRADE: &str =
    include_str!("../../tests/fixtures/observe/debian12-apt-get-s-dist-upgrade.txt");
const OS_RELEASE: &str = include_str!("../../tests/fixtures/observe/debian12-os-release.txt");
const POOL: &str = include_str!("debian12-packages.tsv");

/// A package of the catalog.
#[derive(Debug, Clone)]
pub struct Pkg {
    /// Package name.
    pub name: String,
    /// Version as installed.
    pub version: String,
    /// Architecture.
    pub arch: String,
}

/// A pending update of the captured `apt-get -s dist-upgrade`.
#[derive(Debug, Clone)]
pub struct Upd {
    /// Package name.
    pub name: String,
    /// Installed version before.
    pub old: String,
    /// Candidate version.
    pub new: String,
    /// The `Inst` line as apt printed it.
    pub inst: String,
    /// The `Conf` line.
    pub conf: String,
    /// From a security origin.
    pub security: bool,
    /// Index into the base packages.
    pub base: usize,
}

/// Everything hosts are drawn from (built once).
#[derive(Debug)]
pub struct Catalog {
    /// The captured Debian 12 host's packages.
    pub base: Vec<Pkg>,
    /// Its pending updates.
    pub updates: Vec<Upd>,
    /// Other real bookworm packages, for per-host variation.
    pub pool: Vec<Pkg>,
}

impl Catalog {
    /// Parses the embedded captures.
    pub fn load() -> Catalog {
        let base: Vec<Pkg> = DPKG_QUERY
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(Pkg {
                    name: f.next()?.to_string(),
                    version: f.next()?.to_string(),
                    arch: f.next()?.to_string(),
                })
            })
            .collect();
        let index: HashMap<&str, usize> = base
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let confs: HashMap<&str, &str> = DIST_UPGRADE
            .lines()
            .filter_map(|l| Some((l.strip_prefix("Conf ")?.split(' ').next()?, l)))
            .collect();
        let updates = DIST_UPGRADE
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("Inst ")?;
                let (name, rest) = rest.split_once(" [")?;
                let (old, rest) = rest.split_once("] (")?;
                let new = rest.split(' ').next()?;
                let base = *index.get(name)?;
                Some(Upd {
                    name: name.to_string(),
                    old: old.to_string(),
                    new: new.to_string(),
                    inst: l.to_string(),
                    conf: confs.get(name).map_or_else(String::new, |c| c.to_string()),
                    security: rest.to_ascii_lowercase().contains("security"),
                    base,
                })
            })
            .collect();
        let pool = POOL
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(Pkg {
                    name: f.next()?.to_string(),
                    version: f.next()?.to_string(),
                    arch: f.next()?.to_string(),
                })
            })
            .collect();
        Catalog {
            base,
            updates,
            pool,
        }
    }
}

/// splitmix64: the deterministic source of every per-host choice.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick(seed: u64, host: usize, salt: u64, item: usize) -> u64 {
    mix(seed ^ mix((host as u64) << 20 ^ salt << 52 ^ item as u64))
}

/// The ed25519 key of `index` (a host; `u64::MAX` is the controller's client key), derived
/// from the seed: generating 10,000 random keys is slow, deriving them is not.
pub fn derived_key(seed: u64, index: u64) -> PrivateKey {
    let mut h = Sha256::new();
    h.update(b"patchkeeper-fleetsim");
    h.update(seed.to_le_bytes());
    h.update(index.to_le_bytes());
    let bytes: [u8; 32] = h.finalize().into();
    PrivateKey::from(Ed25519Keypair::from_seed(&bytes))
}

/// The loopback address of host `i`: 127.X.Y.Z with Z in 1..=250, from 127.100.0.1 on.
pub fn address(base: u8, i: usize) -> Ipv4Addr {
    let z = (i % 250) as u8 + 1;
    let y = ((i / 250) % 256) as u8;
    let x = base.saturating_add((i / (250 * 256)) as u8);
    Ipv4Addr::new(127, x, y, z)
}

fn uuid(seed: u64, host: usize, generation: u64) -> String {
    let a = pick(seed, host, 7, generation as usize);
    let b = pick(seed, host, 8, generation as usize);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Delays of the simulated commands (what the real tools take on a small VM).
#[derive(Debug, Clone, Copy)]
pub struct Delays {
    /// The observation script (dpkg-query, apt-get -s dist-upgrade).
    pub observe: Duration,
    /// A dependency dry run (`apt-get -s install`).
    pub dry_run: Duration,
    /// A package transaction.
    pub transaction: Duration,
    /// Any other command (dpkg-query, dpkg --verify, df, cat).
    pub command: Duration,
    /// From `reboot` to the host answering again.
    pub reboot: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            observe: Duration::from_millis(300),
            dry_run: Duration::from_millis(300),
            transaction: Duration::from_secs(3),
            command: Duration::from_millis(5),
            reboot: Duration::from_secs(5),
        }
    }
}

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of hosts.
    pub hosts: usize,
    /// Seed of every choice and key.
    pub seed: u64,
    /// Second octet of the first address (127.BASE.0.1).
    pub base_octet: u8,
    /// Port every host listens on (0: an ephemeral port each).
    pub port: u16,
    /// Command delays.
    pub delays: Delays,
    /// Percent of hosts whose transaction leaves /run/reboot-required (as a kernel would).
    pub reboot_percent: u64,
    /// Percent of hosts that are RPM/dnf hosts (Rocky Linux 9); the rest are Debian 12.
    pub rpm_percent: u64,
}

/// A host's mutable state.
#[derive(Debug)]
struct State {
    generation: u64,
    boot_id: String,
    /// Per captured update: 0 not installed, 1 at the old version, 2 at the new one.
    updates: Vec<u8>,
    /// Base packages this host lacks.
    dropped: Vec<bool>,
    /// Pool packages this host has.
    extras: Vec<u16>,
    reboot_required: Vec<String>,
    down_until: Option<Instant>,
    transactions: u64,
    changed: u64,
    /// Package transactions running now (0 or 1: the package manager's lock refuses more).
    running: u32,
    /// Transactions refused because another was running: a controller that sent one
    /// tried two transactions on one host at once.
    contended: u64,
    /// Transactions wait before they change anything until released (a test's control, like
    /// the lab's hold point).
    held: bool,
}

/// One simulated host.
pub struct Host {
    /// Index.
    pub index: usize,
    /// Inventory name.
    pub name: String,
    /// Where it listens (port filled in once bound).
    pub addr: Mutex<SocketAddr>,
    /// Its host key.
    pub key: PrivateKey,
    /// An RPM/dnf host (else Debian/apt).
    pub rpm: bool,
    reboots_after_transaction: bool,
    state: Mutex<State>,
    reboot_tx: tokio::sync::watch::Sender<u64>,
    released: tokio::sync::Notify,
}

/// Per-simulator counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
    /// Commands not recognised (answered 127).
    pub unknown: AtomicU64,
}

/// The running simulator.
pub struct Sim {
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The catalog in RPM form, for the RPM hosts.
    pub rpm: RpmCatalog,
    /// Options.
    pub options: Options,
    /// Hosts.
    pub hosts: Vec<Arc<Host>>,
    /// The controller's key (accepted by every host).
    pub client_key: PrivateKey,
    /// Counters.
    pub counters: Arc<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lock a running apt transaction holds, and dnf's.
const DPKG_LOCK: &str = "/var/lib/dpkg/lock-frontend";
const RPM_LOCK: &str = "/var/lib/rpm/.rpm.lock";
/// The process id the simulated package manager holds its lock with.
const LOCK_PID: u32 = 4242;

/// The lock probe's line (`path\tpid\tcomm\tkind`) while a transaction runs, else nothing.
fn lock_holder(s: &State, path: &str) -> &'static str {
    if s.running == 0 {
        return "";
    }
    if path == DPKG_LOCK {
        "/var/lib/dpkg/lock-frontend\t4242\tapt-get\tPOSIX"
    } else {
        "/var/lib/rpm/.rpm.lock\t4242\tdnf\tPOSIX"
    }
}

impl Host {
    /// Holds this host's package transactions before they change anything until
    /// [`Host::release`]: a controller killed meanwhile leaves one provably in flight.
    pub fn hold(&self) {
        lock(&self.state).held = true;
    }

    /// Lets held transactions finish (and later ones run through).
    pub fn release(&self) {
        lock(&self.state).held = false;
        self.released.notify_waiters();
    }

    /// Whether a transaction is running and held.
    pub fn held_in_transaction(&self) -> bool {
        let s = lock(&self.state);
        s.held && s.running > 0
    }

    /// Package transactions this host ran to the end.
    pub fn transactions(&self) -> u64 {
        lock(&self.state).transactions
    }

    /// Transactions refused because another one was running on this host.
    pub fn contended(&self) -> u64 {
        lock(&self.state).contended
    }

    async fn wait_released(&self) {
        loop {
            // Registered before the check: a release between the two still wakes it.
            let released = self.released.notified();
            if !lock(&self.state).held {
                return;
            }
            released.await;
        }
    }
}

impl Sim {
    /// Builds the hosts (no sockets yet).
    pub fn new(options: Options) -> Sim {
        let catalog = Arc::new(Catalog::load());
        let seed = options.seed;
        let hosts = (0..options.hosts)
            .map(|i| {
                let updates = (0..catalog.updates.len())
                    .map(|u| if pick(seed, i, 1, u) % 10 < 7 { 1 } else { 2 })
                    .collect();
                let dropped: Vec<bool> = (0..catalog.base.len())
                    .map(|b| {
                        pick(seed, i, 2, b).is_multiple_of(100)
                            && !catalog.updates.iter().any(|u| u.base == b)
                    })
                    .collect();
                // About 770 of the 2,400 pool packages: ~1,500 installed in all.
                let extras = (0..catalog.pool.len())
                    .filter(|p| pick(seed, i, 3, *p) % 1000 < 321)
                    .map(|p| p as u16)
                    .collect();
                let (tx, _) = tokio::sync::watch::channel(0);
                Arc::new(Host {
                    index: i,
                    name: format!("sim-{i:05}"),
                    addr: Mutex::new(SocketAddr::new(
                        address(options.base_octet, i).into(),
                        options.port,
                    )),
                    key: derived_key(seed, i as u64),
                    // Host 0 (the canary) stays Debian; the rest are drawn.
                    rpm: i > 0 && pick(seed, i, 5, 0) % 100 < options.rpm_percent,
                    reboots_after_transaction: pick(seed, i, 4, 0) % 100 < options.reboot_percent,
                    state: Mutex::new(State {
                        generation: 0,
                        boot_id: uuid(seed, i, 0),
                        updates,
                        dropped,
                        extras,
                        reboot_required: Vec::new(),
                        down_until: None,
                        transactions: 0,
                        changed: 0,
                        running: 0,
                        contended: 0,
                        held: false,
                    }),
                    reboot_tx: tx,
                    released: tokio::sync::Notify::new(),
                })
            })
            .collect();
        Sim {
            rpm: RpmCatalog::of(&catalog),
            catalog,
            client_key: derived_key(seed, u64::MAX),
            options,
            hosts,
            counters: Arc::default(),
        }
    }

    /// Binds every host's listener and serves until the process ends. Returns once all are
    /// bound (their ports filled in).
    pub async fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let client = self.client_key.public_key().clone();
        for host in &self.hosts {
            let addr = *lock(&host.addr);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
            *lock(&host.addr) = listener.local_addr()?;
            let config = Arc::new(russh::server::Config {
                keys: vec![host.key.clone()],
                auth_rejection_time: Duration::from_millis(10),
                auth_rejection_time_initial: Some(Duration::ZERO),
                inactivity_timeout: Some(Duration::from_secs(3600)),
                nodelay: true,
                ..Default::default()
            });
            let sim = self.clone();
            let host = host.clone();
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // A rebooting host: the connection is dropped at once.
                    let down = lock(&host.state).down_until;
                    if down.is_some_and(|t| Instant::now() < t) {
                        drop(socket);
                        continue;
                    }
                    sim.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let handler = Conn {
                        sim: sim.clone(),
                        host: host.clone(),
                        client: client.clone(),
                        channels: HashMap::new(),
                    };
                    let config = config.clone();
                    let mut reboot = host.reboot_tx.subscribe();
                    tokio::spawn(async move {
                        if let Ok(running) =
                            russh::server::run_stream(config, socket, handler).await
                        {
                            tokio::select! {
                                _ = running => {}
                                // The host went down: its connections end without a word.
                                _ = reboot.changed() => {}
                            }
                        }
                    });
                }
            });
        }
        Ok(())
    }

    /// Writes a fleet repo for the hosts into `dir`: settings (key and known_hosts in
    /// `.sim/`), inventory, baseline (security updates), an always-open window and a rollout
    /// (one canary, then the rest at `parallelism`), plus `.sim/hosts.tsv`.
    pub fn write_fleet(&self, dir: &Path, parallelism: usize) -> std::io::Result<()> {
        let sim_dir = dir.join(".sim");
        for d in ["inventory", "baselines", "windows", "rollouts", ".sim"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let key = self
            .client_key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(std::io::Error::other)?;
        let key_path = sim_dir.join("id_ed25519");
        std::fs::write(&key_path, key.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        }
        let mut known = String::new();
        let mut tsv = String::new();
        let mut inventory = String::from(
            "# Simulated hosts (written by fleetsim): one russh server per loopback address.\n\
             apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata:\n  name: sim\nspec:\n  groups:\n    - name: sim\n    - name: canary\n  hosts:\n",
        );
        for host in &self.hosts {
            let addr = *lock(&host.addr);
            let public = openssh_public(host.key.public_key());
            let _ = writeln!(known, "[{}]:{} {public}", addr.ip(), addr.port());
            let _ = writeln!(
                tsv,
                "{}\t{}\t{}\t{public}",
                host.name,
                addr.ip(),
                addr.port()
            );
            let groups = if host.index == 0 {
                "sim, canary"
            } else {
                "sim"
            };
            let _ = writeln!(
                inventory,
                "    - {{name: {}, address: {}, packageManager: {}, groups: [{groups}], ssh: {{port: {}}}}}",
                host.name,
                addr.ip(),
                if host.rpm { "dnf" } else { "apt" },
                addr.port()
            );
        }
        std::fs::write(sim_dir.join("known_hosts"), known)?;
        std::fs::write(sim_dir.join("hosts.tsv"), tsv)?;
        std::fs::write(dir.join("inventory/sim.yaml"), inventory)?;
        std::fs::write(
            dir.join("patchkeeper.yaml"),
            "# Settings of the simulated fleet (written by fleetsim).\n\
             apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: sim\nspec:\n  ssh:\n    user: root\n    identityFile: .sim/id_ed25519\n    knownHosts: .sim/known_hosts\n    connectTimeout: 60s\n    commandTimeout: 5m\n  observe:\n    parallel: 1000\n    refresh: false\n  apply:\n    lockWait: 30s\n    minFreeDiskMib: 100\n",
        )?;
        std::fs::write(
            dir.join("baselines/sim.yaml"),
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: sim\nspec:\n  selector:\n    groups: [sim]\n  updates:\n    classes: security\n  window: always\n  rollout: sim\n",
        )?;
        std::fs::write(
            dir.join("windows/always.yaml"),
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: always\nspec:\n  alwaysOpen: true\n",
        )?;
        std::fs::write(
            dir.join("rollouts/sim.yaml"),
            format!(
                "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: sim\nspec:\n  stages:\n    - name: canary\n      size: 1\n      selector:\n        groups: [canary]\n    - name: rest\n      size: \"100%\"\n  parallelism: {parallelism}\n  failureBudget: 0\n  reboot: if-required\n  rebootTimeout: 5m\n"
            ),
        )?;
        std::fs::write(dir.join(".gitignore"), "/.sim/\n/.patchkeeper/\n")?;
        Ok(())
    }

    /// One line per host: name, boot id, transactions run, packages changed, pending
    /// updates, pending security updates, reboot required, package manager.
    pub fn state_report(&self) -> String {
        let mut out = String::from(
            "host\tboot_id\ttransactions\tchanged\tpending\tpending_security\treboot_required\tfamily\tcontended\n",
        );
        for host in &self.hosts {
            let s = lock(&host.state);
            let pending = s.updates.iter().filter(|u| **u == 1).count();
            let security = s
                .updates
                .iter()
                .zip(&self.catalog.updates)
                .filter(|(u, c)| **u == 1 && c.security)
                .count();
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{pending}\t{security}\t{}\t{}\t{}",
                host.name,
                s.boot_id,
                s.transactions,
                s.changed,
                !s.reboot_required.is_empty(),
                if host.rpm { "rpm" } else { "deb" },
                s.contended
            );
        }
        out
    }
}

/// `ssh-ed25519 AAAA…` without a comment.
pub fn openssh_public(key: &PublicKey) -> String {
    let text = key.to_openssh().unwrap_or_default();
    let mut words = text.split_whitespace();
    format!(
        "{} {}",
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default()
    )
}

/// The answer to one command.
struct Answer {
    stdout: String,
    stderr: String,
    exit: u32,
    delay: Duration,
    then: Option<Then>,
}

/// What happens on the host once the command's delay has passed.
enum Then {
    /// Set these captured updates to the given state (1 old, 2 new).
    Transaction(Vec<(usize, u8)>),
    Reboot,
}

impl Answer {
    fn ok(stdout: String, delay: Duration) -> Answer {
        Answer {
            stdout,
            stderr: String::new(),
            exit: 0,
            delay,
            then: None,
        }
    }
}

fn section(out: &mut String, err: &mut String, name: &str, body: &str, exit: i32) {
    let _ = write!(out, "@@pk:begin {name}\n{body}\n@@pk:end {name} {exit}\n");
    let _ = write!(err, "@@pk:begin {name}\n\n@@pk:end {name}\n");
}

impl Sim {
    fn installed_rows(&self, s: &State, source_fields: bool) -> String {
        let c = &self.catalog;
        let mut version_of: Vec<Option<&str>> = c
            .base
            .iter()
            .zip(&s.dropped)
            .map(|(p, d)| (!d).then_some(p.version.as_str()))
            .collect();
        for (u, st) in c.updates.iter().zip(&s.updates) {
            version_of[u.base] = match st {
                1 => Some(u.old.as_str()),
                2 => Some(u.new.as_str()),
                _ => None,
            };
        }
        let mut rows: Vec<(&str, &str, &str)> = c
            .base
            .iter()
            .zip(version_of)
            .filter_map(|(p, v)| Some((p.name.as_str(), v?, p.arch.as_str())))
            .collect();
        rows.extend(s.extras.iter().map(|i| {
            let p = &c.pool[*i as usize];
            (p.name.as_str(), p.version.as_str(), p.arch.as_str())
        }));
        rows.sort_unstable();
        let mut out = String::with_capacity(rows.len() * 64);
        for (name, version, arch) in rows {
            if source_fields {
                let _ = writeln!(out, "{name}\t{version}\t{arch}\tii \t{name}\t{version}");
            } else {
                let _ = writeln!(out, "{name}\t{version}\t{arch}\tii ");
            }
        }
        out
    }

    fn upgrade_listing(&self, pending: &[&Upd], not_upgraded: usize, calc: bool) -> String {
        let mut out = String::from(
            "Reading package lists...\nBuilding dependency tree...\nReading state information...\n",
        );
        if calc {
            out.push_str("Calculating upgrade...\n");
        }
        if !pending.is_empty() {
            out.push_str("The following packages will be upgraded:\n");
            let mut line = String::from(" ");
            for u in pending {
                if line.len() + u.name.len() > 78 {
                    out.push_str(&line);
                    out.push('\n');
                    line = String::from(" ");
                }
                line.push(' ');
                line.push_str(&u.name);
            }
            out.push_str(&line);
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} upgraded, 0 newly installed, 0 to remove and {not_upgraded} not upgraded.",
            pending.len()
        );
        for u in pending {
            out.push_str(&u.inst);
            out.push('\n');
        }
        for u in pending {
            if !u.conf.is_empty() {
                out.push_str(&u.conf);
                out.push('\n');
            }
        }
        out
    }

    fn observe(&self, host: &Host, refresh: bool) -> Answer {
        let s = lock(&host.state);
        let (mut out, mut err) = (String::with_capacity(128 << 10), String::new());
        section(&mut out, &mut err, "os-release", OS_RELEASE.trim_end(), 0);
        section(&mut out, &mut err, "kernel", "6.1.0-28-amd64", 0);
        section(&mut out, &mut err, "boot-id", &s.boot_id, 0);
        if refresh {
            section(&mut out, &mut err, "refresh", "", 0);
        }
        section(
            &mut out,
            &mut err,
            "installed",
            self.installed_rows(&s, true).trim_end(),
            0,
        );
        let pending: Vec<&Upd> = self
            .catalog
            .updates
            .iter()
            .zip(&s.updates)
            .filter(|(_, st)| **st == 1)
            .map(|(u, _)| u)
            .collect();
        section(
            &mut out,
            &mut err,
            "updates",
            self.upgrade_listing(&pending, 0, true).trim_end(),
            0,
        );
        section(&mut out, &mut err, "held-updates", "", 0);
        let reboot = if s.reboot_required.is_empty() {
            String::new()
        } else {
            format!("required\n{}", s.reboot_required.join("\n"))
        };
        section(&mut out, &mut err, "reboot", &reboot, 0);
        section(&mut out, &mut err, "locks", lock_holder(&s, DPKG_LOCK), 0);
        let mut delay = self.options.delays.observe;
        if refresh {
            delay += self.options.delays.observe;
        }
        Answer {
            stdout: out,
            stderr: err,
            exit: 0,
            delay,
            then: None,
        }
    }

    /// `apt-get install … -- NAME=VERSION… [NAME-]`: the updates it moves, or apt's error.
    fn resolve(&self, s: &State, args: &str) -> Result<Vec<(usize, u8)>, String> {
        let mut moves = Vec::new();
        for arg in args.split_whitespace() {
            let arg = arg.trim_matches('\'');
            let Some((name, version)) = arg.split_once('=') else {
                return Err(format!("E: Unable to locate package {arg}\n"));
            };
            let Some((i, u)) = self
                .catalog
                .updates
                .iter()
                .enumerate()
                .find(|(_, u)| u.name == name)
            else {
                return Err(format!(
                    "E: Version '{version}' for '{name}' was not found\n"
                ));
            };
            let to = if version == u.new {
                2
            } else if version == u.old {
                1
            } else {
                return Err(format!(
                    "E: Version '{version}' for '{name}' was not found\n"
                ));
            };
            if s.updates[i] != to {
                moves.push((i, to));
            }
        }
        Ok(moves)
    }

    fn dry_run(&self, host: &Host, args: &str) -> Answer {
        let s = lock(&host.state);
        let delay = self.options.delays.dry_run;
        match self.resolve(&s, args) {
            Ok(moves) => {
                let pending: Vec<&Upd> =
                    moves.iter().map(|(i, _)| &self.catalog.updates[*i]).collect();
                let left = s
                    .updates
                    .iter()
                    .filter(|u| **u == 1)
                    .count()
                    .saturating_sub(pending.len());
                Answer::ok(self.upgrade_listing(&pending, left, false), delay)
            }
            Err(e) => Answer {
                stdout: "Reading package lists...\nBuilding dependency tree...\nReading state information...\n".into(),
                stderr: e,
                exit: 100,
                delay,
                then: None,
            },
        }
    }

    fn transaction(&self, host: &Host, args: &str) -> Answer {
        let mut s = lock(&host.state);
        let delay = self.options.delays.transaction;
        if s.running > 0 {
            s.contended += 1;
            return Answer {
                stdout: String::new(),
                stderr: format!("E: Could not get lock {DPKG_LOCK}. It is held by process {LOCK_PID} (apt-get)\nE: Unable to acquire the dpkg frontend lock ({DPKG_LOCK}), is another process using it?\n"),
                exit: 100,
                delay: self.options.delays.command,
                then: None,
            };
        }
        let moves = match self.resolve(&s, args) {
            Ok(m) => m,
            Err(e) => {
                return Answer {
                    stdout: "Reading package lists...\nBuilding dependency tree...\nReading state information...\n".into(),
                    stderr: e,
                    exit: 100,
                    delay: self.options.delays.dry_run,
                    then: None,
                }
            }
        };
        let mut out = String::from(
            "Reading package lists...\nBuilding dependency tree...\nReading state information...\n",
        );
        let _ = writeln!(
            out,
            "{} upgraded, 0 newly installed, 0 to remove and {} not upgraded.\nNeed to get 0 B/{} kB of archives.",
            moves.len(),
            s.updates.iter().filter(|u| **u == 1).count().saturating_sub(moves.len()),
            moves.len() * 731
        );
        out.push_str("(Reading database ... 171243 files and directories currently installed.)\n");
        for (i, to) in &moves {
            let u = &self.catalog.updates[*i];
            let (from, version) = if *to == 2 {
                (&u.old, &u.new)
            } else {
                (&u.new, &u.old)
            };
            let arch = &self.catalog.base[u.base].arch;
            let _ = writeln!(
                out,
                "Preparing to unpack .../{}_{}_{arch}.deb ...\nUnpacking {} ({version}) over ({from}) ...",
                u.name,
                version.replace(':', "%3a"),
                u.name
            );
        }
        for (i, to) in &moves {
            let u = &self.catalog.updates[*i];
            let version = if *to == 2 { &u.new } else { &u.old };
            let _ = writeln!(out, "Setting up {} ({version}) ...", u.name);
        }
        out.push_str("Processing triggers for man-db (2.11.2-2) ...\nProcessing triggers for libc-bin (2.36-9+deb12u9) ...\n");
        s.running += 1;
        Answer {
            stdout: out,
            stderr: String::new(),
            exit: 0,
            delay,
            then: Some(Then::Transaction(moves)),
        }
    }

    /// What the host says to `command` (with `stdin`).
    fn answer(&self, host: &Host, command: &str, stdin: &[u8]) -> Answer {
        let d = self.options.delays;
        let stdin = String::from_utf8_lossy(stdin);
        if command.trim() == "sh -s" && stdin.contains("pk_begin installed") {
            if host.rpm {
                return self.rpm_observe(host, stdin.contains("-y --refresh check-update"));
            }
            return self.observe(host, stdin.contains("apt-get -qq update"));
        }
        if host.rpm {
            if let Some(answer) = self.rpm_answer(host, command) {
                return answer;
            }
        }
        if command.contains("apt-get -s ") && command.contains(" install -- ") {
            let args = command.split(" install -- ").nth(1).unwrap_or_default();
            let args = args.split("</dev/null").next().unwrap_or_default();
            return self.dry_run(host, args);
        }
        if command.contains("apt-get install -y") {
            let args = command.split(" -- ").nth(1).unwrap_or_default();
            let args = args.lines().next().unwrap_or_default();
            return self.transaction(host, args);
        }
        if command.starts_with("dpkg-query -W") {
            let s = lock(&host.state);
            return Answer::ok(self.installed_rows(&s, false), d.command);
        }
        if command.starts_with("dpkg --verify")
            || command.contains("dpkg --force-confold --configure -a")
        {
            return Answer::ok(String::new(), d.command);
        }
        if command.starts_with("df -Pk") {
            return Answer::ok(
                "Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/vda1         20466256 6211372  13190028      33% /\n".into(),
                d.command,
            );
        }
        if command == "cat /proc/sys/kernel/random/boot_id" {
            let s = lock(&host.state);
            return Answer::ok(format!("{}\n", s.boot_id), d.command);
        }
        if command.starts_with("nohup reboot") {
            return Answer {
                then: Some(Then::Reboot),
                ..Answer::ok(String::new(), d.command)
            };
        }
        self.counters.unknown.fetch_add(1, Ordering::Relaxed);
        let word = command.split_whitespace().next().unwrap_or_default();
        Answer {
            stdout: String::new(),
            stderr: format!("sh: 1: {word}: not found (fleetsim does not simulate this command)\n"),
            exit: 127,
            delay: d.command,
            then: None,
        }
    }

    fn then(&self, host: &Host, then: Then) {
        match then {
            Then::Transaction(moves) => {
                let mut s = lock(&host.state);
                s.running = s.running.saturating_sub(1);
                s.transactions += 1;
                s.changed += moves.len() as u64;
                for (i, to) in &moves {
                    s.updates[*i] = *to;
                }
                if host.reboots_after_transaction && !moves.is_empty() {
                    s.reboot_required = vec![self.catalog.updates[moves[0].0].name.clone()];
                }
            }
            Then::Reboot => {
                let mut s = lock(&host.state);
                s.generation += 1;
                s.boot_id = uuid(self.options.seed, host.index, s.generation);
                s.reboot_required.clear();
                s.down_until = Some(Instant::now() + self.options.delays.reboot);
                drop(s);
                host.reboot_tx.send_modify(|g| *g += 1);
            }
        }
    }
}

/// A command waiting for its standard input to end.
#[derive(Default)]
struct Pending {
    command: Option<String>,
    stdin: Vec<u8>,
    channel: Option<Channel<Msg>>,
}

/// One SSH connection to a simulated host.
struct Conn {
    sim: Arc<Sim>,
    host: Arc<Host>,
    client: PublicKey,
    channels: HashMap<ChannelId, Pending>,
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if offer.public_key.key_data() == self.client.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if key.public_key.key_data() == self.client.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            Pending {
                channel: Some(channel),
                ..Pending::default()
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.entry(channel).or_default().command =
            Some(String::from_utf8_lossy(data).into_owned());
        session.channel_success(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels
            .entry(channel)
            .or_default()
            .stdin
            .extend_from_slice(data);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(pending) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(command) = pending.command.take() else {
            return Ok(());
        };
        let stdin = std::mem::take(&mut pending.stdin);
        let sim = self.sim.clone();
        let host = self.host.clone();
        let handle = session.handle();
        tokio::spawn(async move {
            sim.counters.commands.fetch_add(1, Ordering::Relaxed);
            let answer = sim.answer(&host, &command, &stdin);
            tokio::time::sleep(answer.delay).await;
            if matches!(answer.then, Some(Then::Transaction(_))) {
                // Runs on when the controller is gone, as an orphaned dpkg does.
                host.wait_released().await;
            }
            if let Some(then) = answer.then {
                sim.then(&host, then);
            }
            if !answer.stdout.is_empty() {
                let _ = handle.data(channel, answer.stdout.into_bytes()).await;
            }
            if !answer.stderr.is_empty() {
                let _ = handle
                    .extended_data(channel, 1, answer.stderr.into_bytes())
                    .await;
            }
            let _ = handle.exit_status_request(channel, answer.exit).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// The handshake floor: `hosts` plain connections (TCP, key exchange, host key checked,
/// public-key login, disconnect) from a minimal russh client, `parallel` at a time, with
/// the key exchange and cipher patchkeeper negotiates. Returns the hosts that failed.
pub async fn handshake_floor(
    hosts: &[(SocketAddr, PublicKey)],
    client_key: PrivateKey,
    parallel: usize,
    kex: &str,
    cipher: &str,
) -> Result<usize, String> {
    use std::borrow::Cow;
    let kex = russh::kex::Name::try_from(kex).map_err(|()| format!("unknown kex {kex}"))?;
    let cipher =
        russh::cipher::Name::try_from(cipher).map_err(|()| format!("unknown cipher {cipher}"))?;
    let config = Arc::new(russh::client::Config {
        preferred: russh::Preferred {
            kex: Cow::Owned(vec![
                kex,
                russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
                russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ]),
            key: Cow::Owned(vec![russh::keys::Algorithm::Ed25519]),
            cipher: Cow::Owned(vec![cipher]),
            ..russh::Preferred::default()
        },
        nodelay: true,
        ..Default::default()
    });
    let key = Arc::new(client_key);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (addr, expected) in hosts.iter().cloned() {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let config = config.clone();
        let key = key.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let ok = async {
                let socket = tokio::net::TcpStream::connect(addr).await.ok()?;
                let _ = socket.set_nodelay(true);
                let mut handle =
                    russh::client::connect_stream(config, socket, FloorClient { expected })
                        .await
                        .ok()?;
                let auth = handle
                    .authenticate_publickey(
                        "root",
                        russh::keys::PrivateKeyWithHashAlg::new(key, None),
                    )
                    .await
                    .ok()?;
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
                auth.success().then_some(())
            }
            .await;
            ok.is_none()
        });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap_or(true) {
            failed += 1;
        }
    }
    Ok(failed)
}

struct FloorClient {
    expected: PublicKey,
}

impl russh::client::Handler for FloorClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

/// Reads `.sim/hosts.tsv` (name, address, port, public key).
pub fn read_hosts(path: &Path) -> Result<Vec<(SocketAddr, PublicKey)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            let bad = || format!("{}:{}: not `name addr port key`", path.display(), n + 1);
            if f.len() != 4 {
                return Err(bad());
            }
            let ip: Ipv4Addr = f[1].parse().map_err(|_| bad())?;
            let port: u16 = f[2].parse().map_err(|_| bad())?;
            let key = PublicKey::from_openssh(f[3]).map_err(|_| bad())?;
            Ok((SocketAddr::new(ip.into(), port), key))
        })
        .collect()
}

/// The fleet repo's client key path.
pub fn key_path(fleet: &Path) -> PathBuf {
    fleet.join(".sim/id_ed25519")
}

/// Raises the soft open-files limit to the hard one (10,000 listeners need it).
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur
    }
}

// ---- RPM/dnf hosts ----------------------------------------------------------------------

/// os-release of the simulated RPM hosts (Rocky Linux 9's fields).
const RPM_OS_RELEASE: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.5 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.5\"\nPLATFORM_ID=\"platform:el9\"\nPRETTY_NAME=\"Rocky Linux 9.5 (Blue Onyx)\"\nANSI_COLOR=\"0;32\"\nLOGO=\"fedora-logo-icon\"\nCPE_NAME=\"cpe:/o:rocky:rocky:9::baseos\"\nHOME_URL=\"https://rockylinux.org/\"\nREDHAT_SUPPORT_PRODUCT=\"Rocky Linux\"\nREDHAT_SUPPORT_PRODUCT_VERSION=\"9.5\"";

/// A package in RPM form.
#[derive(Debug, Clone)]
pub struct RpmPkg {
    /// Name.
    pub name: String,
    /// `EPOCH` as `rpm -qa` prints it (`(none)` without one).
    pub epoch: String,
    /// `VERSION`.
    pub version: String,
    /// `RELEASE`.
    pub release: String,
    /// `ARCH`.
    pub arch: String,
}

impl RpmPkg {
    /// `[EPOCH:]VERSION-RELEASE`, as dnf prints and patchkeeper writes versions.
    pub fn evr(&self) -> String {
        evr(&self.epoch, &self.version, &self.release)
    }
}

fn evr(epoch: &str, version: &str, release: &str) -> String {
    if epoch == "(none)" {
        format!("{version}-{release}")
    } else {
        format!("{epoch}:{version}-{release}")
    }
}

/// A Debian version in RPM form: the epoch kept, the upstream version as `VERSION` (`-`
/// made `_`), the Debian revision plus `.el9` as `RELEASE`. Orders as the Debian version
/// does for the captured pairs (rpmvercmp treats `+` and `.` as separators).
pub fn rpm_evr(deb: &str) -> (String, String, String) {
    let (epoch, rest) = match deb.split_once(':') {
        Some((e, r)) if e.bytes().all(|b| b.is_ascii_digit()) => (e.to_string(), r),
        _ => ("(none)".to_string(), deb),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, "1"));
    (epoch, upstream.replace('-', "_"), format!("{revision}.el9"))
}

fn rpm_arch(deb: &str) -> &'static str {
    match deb {
        "all" => "noarch",
        "i386" => "i686",
        "arm64" => "aarch64",
        _ => "x86_64",
    }
}

/// The catalog in RPM form (same indices as the Debian one).
#[derive(Debug)]
pub struct RpmCatalog {
    /// Base packages.
    pub base: Vec<RpmPkg>,
    /// Pool packages.
    pub pool: Vec<RpmPkg>,
    /// Per update: the old and the new package.
    pub updates: Vec<(RpmPkg, RpmPkg)>,
    /// `NAME-EVR` (as patchkeeper asks for it) → update index and state (1 old, 2 new).
    pub args: HashMap<String, (usize, u8)>,
}

impl RpmCatalog {
    fn of(c: &Catalog) -> RpmCatalog {
        let conv = |name: &str, version: &str, arch: &str| {
            let (epoch, version, release) = rpm_evr(version);
            RpmPkg {
                name: name.to_string(),
                epoch,
                version,
                release,
                arch: rpm_arch(arch).to_string(),
            }
        };
        let base: Vec<RpmPkg> = c
            .base
            .iter()
            .map(|p| conv(&p.name, &p.version, &p.arch))
            .collect();
        let pool = c
            .pool
            .iter()
            .map(|p| conv(&p.name, &p.version, &p.arch))
            .collect();
        let updates: Vec<(RpmPkg, RpmPkg)> = c
            .updates
            .iter()
            .map(|u| {
                let arch = &c.base[u.base].arch;
                (conv(&u.name, &u.old, arch), conv(&u.name, &u.new, arch))
            })
            .collect();
        let mut args = HashMap::new();
        for (i, (old, new)) in updates.iter().enumerate() {
            args.insert(format!("{}-{}", old.name, old.evr()), (i, 1));
            args.insert(format!("{}-{}", new.name, new.evr()), (i, 2));
        }
        RpmCatalog {
            base,
            pool,
            updates,
            args,
        }
    }
}

/// The advisory of captured update `i` (security updates only), as Rocky names them.
fn advisory_id(i: usize) -> String {
    format!("RLSA-2026:{:04}", 1000 + i)
}

fn severity(i: usize) -> &'static str {
    ["Important", "Moderate", "Critical", "Low"][i % 4]
}

fn repo_of(p: &RpmPkg) -> &'static str {
    if p.name.starts_with("lib") || p.arch == "noarch" {
        "appstream"
    } else {
        "baseos"
    }
}

impl Sim {
    /// The installed packages in RPM form, sorted by name.
    fn rpm_installed<'a>(&'a self, s: &State) -> Vec<&'a RpmPkg> {
        let r = &self.rpm;
        let mut of: Vec<Option<&RpmPkg>> = r
            .base
            .iter()
            .zip(&s.dropped)
            .map(|(p, d)| (!d).then_some(p))
            .collect();
        for ((u, (old, new)), st) in self.catalog.updates.iter().zip(&r.updates).zip(&s.updates) {
            of[u.base] = match st {
                1 => Some(old),
                2 => Some(new),
                _ => None,
            };
        }
        let mut rows: Vec<&RpmPkg> = of.into_iter().flatten().collect();
        rows.extend(s.extras.iter().map(|i| &r.pool[*i as usize]));
        rows.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// `rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}[\t%{SOURCERPM}\t%{INSTALLTIME}]\n'`.
    fn rpm_qa(&self, s: &State, observe: bool) -> String {
        let mut out = String::with_capacity(1600 * 96);
        for (n, p) in self.rpm_installed(s).into_iter().enumerate() {
            let _ = write!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                p.name, p.epoch, p.version, p.release, p.arch
            );
            if observe {
                let _ = write!(
                    out,
                    "\t{}-{}-{}.src.rpm\t{}",
                    p.name,
                    p.version,
                    p.release,
                    1_730_000_000 + n as u64 * 7
                );
            }
            out.push('\n');
        }
        out
    }

    fn rpm_pending(&self, s: &State) -> Vec<usize> {
        (0..self.rpm.updates.len())
            .filter(|i| s.updates[*i] == 1)
            .collect()
    }

    fn rpm_observe(&self, host: &Host, refresh: bool) -> Answer {
        let s = lock(&host.state);
        let (mut out, mut err) = (String::with_capacity(160 << 10), String::new());
        section(&mut out, &mut err, "os-release", RPM_OS_RELEASE, 0);
        section(
            &mut out,
            &mut err,
            "kernel",
            "5.14.0-503.14.1.el9_5.x86_64",
            0,
        );
        section(&mut out, &mut err, "boot-id", &s.boot_id, 0);
        section(
            &mut out,
            &mut err,
            "installed",
            self.rpm_qa(&s, true).trim_end(),
            0,
        );
        let pending = self.rpm_pending(&s);
        // `dnf check-update`: a blank line, then NAME.ARCH EVR REPO; exit 100 with updates.
        let mut check = String::from("\n");
        let mut security = String::new();
        let mut offered = String::new();
        let mut info = String::new();
        for &i in &pending {
            let (_, new) = &self.rpm.updates[i];
            let _ = writeln!(
                check,
                "{:<42} {:<31} {}",
                format!("{}.{}", new.name, new.arch),
                new.evr(),
                repo_of(new)
            );
            let epoch = if new.epoch == "(none)" {
                "0"
            } else {
                new.epoch.as_str()
            };
            let _ = writeln!(
                offered,
                "{}\t{epoch}\t{}\t{}\t{}\t{}",
                new.name,
                new.version,
                new.release,
                new.arch,
                repo_of(new)
            );
            if self.catalog.updates[i].security {
                let _ = writeln!(
                    security,
                    "{} {}/Sec. {}-{}.{}",
                    advisory_id(i),
                    severity(i),
                    new.name,
                    new.evr(),
                    new.arch
                );
                let _ = write!(
                    info,
                    "===============================================================================\n  {sev}: {name} security update\n===============================================================================\n  Update ID: {id}\n       Type: security\n    Updated: 2026-11-{day:02} 00:00:00\n       CVEs: CVE-2026-{cve}\nDescription: {name} {ver}: security fixes.\n   Severity: {sev}\n\n",
                    sev = severity(i),
                    name = new.name,
                    id = advisory_id(i),
                    day = 1 + i % 28,
                    cve = 20000 + i,
                    ver = new.evr(),
                );
            }
        }
        let exit = if pending.is_empty() { 0 } else { 100 };
        section(&mut out, &mut err, "updates", check.trim_end(), exit);
        section(&mut out, &mut err, "security", security.trim_end(), 0);
        section(&mut out, &mut err, "offered", offered.trim_end(), 0);
        section(&mut out, &mut err, "held-updates", "", 0);
        section(&mut out, &mut err, "held-security", "", 0);
        section(&mut out, &mut err, "advisory-info", info.trim_end(), 0);
        let reboot = if s.reboot_required.is_empty() {
            "No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\nneeds-restarting 0".to_string()
        } else {
            let mut r =
                String::from("Core libraries or services have been updated since boot-up:\n");
            for p in &s.reboot_required {
                let _ = writeln!(r, "  * {p}");
            }
            r.push_str("\nReboot is required to fully utilize these updates.\nMore information: https://access.redhat.com/solutions/27943\nneeds-restarting 1");
            r
        };
        section(&mut out, &mut err, "reboot", &reboot, 0);
        section(&mut out, &mut err, "check", "", 0);
        section(&mut out, &mut err, "held", "", 0);
        section(&mut out, &mut err, "locks", lock_holder(&s, RPM_LOCK), 0);
        let mut delay = self.options.delays.observe;
        if refresh {
            delay += self.options.delays.observe;
        }
        Answer {
            stdout: out,
            stderr: err,
            exit: 0,
            delay,
            then: None,
        }
    }

    /// `dnf … -- NAME-EVR…`: the updates it moves, or dnf's error.
    fn rpm_resolve(&self, s: &State, args: &str) -> Result<Vec<(usize, u8)>, String> {
        let mut moves = Vec::new();
        for arg in args.split_whitespace() {
            let arg = arg.trim_matches('\'');
            let Some(&(i, to)) = self.rpm.args.get(arg) else {
                return Err(format!(
                    "No match for argument: {arg}\nError: Unable to find a match: {arg}\n"
                ));
            };
            if s.updates[i] != to {
                moves.push((i, to));
            }
        }
        Ok(moves)
    }

    /// `dnf -C --assumeno install -- NAME-EVR…`: the transaction table, then "Operation
    /// aborted." (exit 1), as the lab's dnf prints it.
    fn rpm_dry_run(&self, host: &Host, args: &str) -> Answer {
        let s = lock(&host.state);
        let delay = self.options.delays.dry_run;
        let moves =
            match self.rpm_resolve(&s, args) {
                Ok(m) => m,
                Err(e) => return Answer {
                    stdout:
                        "Last metadata expiration check: 0:03:11 ago on Tue Dec  1 04:50:55 2026.\n"
                            .into(),
                    stderr: e,
                    exit: 1,
                    delay,
                    then: None,
                },
            };
        if moves.is_empty() {
            return Answer::ok(
                "Dependencies resolved.\nNothing to do.\nComplete!\n".into(),
                delay,
            );
        }
        let mut out = String::from(
            "Last metadata expiration check: 0:03:11 ago on Tue Dec  1 04:50:55 2026.\nDependencies resolved.\n================================================================================\n Package              Architecture      Version          Repository        Size\n================================================================================\n",
        );
        let (up, down): (Vec<_>, Vec<_>) = moves.iter().partition(|(_, to)| *to == 2);
        for (title, list) in [("Upgrading:", &up), ("Downgrading:", &down)] {
            if list.is_empty() {
                continue;
            }
            out.push_str(title);
            out.push('\n');
            for (i, to) in list.iter() {
                let (old, new) = &self.rpm.updates[*i];
                let p = if *to == 2 { new } else { old };
                if p.name.len() > 20 {
                    let _ = writeln!(out, " {}", p.name);
                    let _ = writeln!(
                        out,
                        " {:<20} {:<17} {:<16} {:<12} {:>5} k",
                        "",
                        p.arch,
                        p.evr(),
                        repo_of(p),
                        100 + i % 900
                    );
                } else {
                    let _ = writeln!(
                        out,
                        " {:<20} {:<17} {:<16} {:<12} {:>5} k",
                        p.name,
                        p.arch,
                        p.evr(),
                        repo_of(p),
                        100 + i % 900
                    );
                }
            }
        }
        let _ = write!(
            out,
            "\nTransaction Summary\n================================================================================\nUpgrade  {} Packages\n\nTotal download size: {} k\n",
            up.len(),
            moves.len() * 731
        );
        Answer {
            stdout: out,
            stderr: "Operation aborted.\n".into(),
            exit: 1,
            delay,
            then: None,
        }
    }

    /// The answers only an RPM host gives (`None`: as any host answers).
    fn rpm_answer(&self, host: &Host, command: &str) -> Option<Answer> {
        if command.contains("dnf -C --assumeno install -- ") {
            let args = command.split(" install -- ").nth(1).unwrap_or_default();
            let args = args.split("</dev/null").next().unwrap_or_default();
            return Some(self.rpm_dry_run(host, args));
        }
        if command.contains("dnf install -y -q -- ") || command.contains("dnf downgrade -y -q -- ")
        {
            let args = command.split(" -- ").nth(1).unwrap_or_default();
            let args = args.lines().next().unwrap_or_default();
            // A rollback chains `downgrade && install`: both halves' packages.
            let args = args.replace("&& dnf install -y -q --", " ");
            return Some(self.rpm_transaction(host, &args));
        }
        if command.starts_with("rpm -qa --qf") {
            let s = lock(&host.state);
            return Some(Answer::ok(
                self.rpm_qa(&s, false),
                self.options.delays.command,
            ));
        }
        if command.starts_with("rpm -V") {
            return Some(Answer::ok(String::new(), self.options.delays.command));
        }
        None
    }

    /// `dnf install|downgrade -y -q -- NAME-EVR…` (quiet: no output on success).
    fn rpm_transaction(&self, host: &Host, args: &str) -> Answer {
        let mut s = lock(&host.state);
        if s.running > 0 {
            s.contended += 1;
            return Answer {
                stdout: String::new(),
                stderr: format!("Error: Failed to obtain the transaction lock (logged in as: root, pid {LOCK_PID} holds {RPM_LOCK}).\n"),
                exit: 1,
                delay: self.options.delays.command,
                then: None,
            };
        }
        match self.rpm_resolve(&s, args) {
            Ok(moves) => {
                s.running += 1;
                Answer {
                    stdout: String::new(),
                    stderr: String::new(),
                    exit: 0,
                    delay: self.options.delays.transaction,
                    then: Some(Then::Transaction(moves)),
                }
            }
            Err(e) => Answer {
                stdout: String::new(),
                stderr: e,
                exit: 1,
                delay: self.options.delays.dry_run,
                then: None,
            },
        }
    }
}
