//! Chaos soak (issue 20): repeated full cycles — plan, apply, report to a bare Git reports
//! remote — on a lab of Debian and RPM hosts while a seeded random schedule injects faults,
//! each put in place with a lab control (a held transaction, a held lock), never a sleep.
//! After every cycle the invariants of `docs/reliability.md` are checked from ground truth
//! gathered with plain `ssh` (and the bare remote read with plain `git`), not patchkeeper.
//!
//! The suite runs a bounded soak (3 hosts: 2 Debian, 1 RPM; 3 cycles, a fixed seed that covers several fault
//! kinds). `scripts/soak [--runs N] [--hosts H] [--seed S]` runs longer ones through the
//! environment: `PATCHKEEPER_SOAK_RUNS`, `PATCHKEEPER_SOAK_HOSTS`, `PATCHKEEPER_SOAK_SEED`.
//! The seed is printed first; the same seed replays the same schedule. A watchdog ends a run
//! that has not finished in 5 minutes plus one per cycle and host (`PATCHKEEPER_SOAK_WATCHDOG`
//! seconds overrides it), printing the step it was at, the processes and apply's output.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::cli::{text, Running};
use common::lab::{write, Lab};

/// The seed of the bounded soak: its 3 cycles on 3 hosts inject a failing postinst, a host
/// stopped mid-transaction and kill -9 (cycle 0), a full disk and a moved fleet repo (1), a
/// report race and a held lock (2): every kind but the transaction past its timeout, which
/// costs `apply.transactionTimeout` (long runs draw it).
const DEFAULT_SEED: u64 = 1109;
const REPORTS: &str = "patchkeeper/reports";
/// Packages the soak moves back and forth and reads back as ground truth.
const PACKAGES: [&str; 3] = ["libpk", "pk-app", "pk-broken"];

/// splitmix64: a tiny seeded generator, so a schedule is a pure function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A kind of fault the schedule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// The host is stopped while its transaction is held in flight, then started again.
    StopMidTransaction,
    /// The package manager's lock is held (as unattended-upgrades does) through the apply.
    LockHeld,
    /// The host's transaction stays held past `apply.transactionTimeout`.
    SlowPastTimeout,
    /// A patch request makes the host install pk-broken 1.1-1, whose postinst (rpm: %pre) fails.
    FailingPostinst,
    /// `kill -9` of apply while the host's transaction is held, then a rerun.
    Kill9,
    /// Another writer pushes to the reports branch of the remote while apply runs.
    ReportRace,
    /// The fleet repo moves to a new commit while apply runs.
    FleetMoves,
    /// The host's /var is nearly full (`scripts/lab fill-disk`: 64 MiB of its own).
    DiskFull,
}

const KINDS: [Fault; 8] = [
    Fault::StopMidTransaction,
    Fault::LockHeld,
    Fault::SlowPastTimeout,
    Fault::FailingPostinst,
    Fault::Kill9,
    Fault::ReportRace,
    Fault::FleetMoves,
    Fault::DiskFull,
];

impl Fault {
    /// Whether the fault acts at the victim's held transaction.
    fn at_hold_point(self) -> bool {
        matches!(
            self,
            Fault::StopMidTransaction
                | Fault::SlowPastTimeout
                | Fault::Kill9
                | Fault::ReportRace
                | Fault::FleetMoves
        )
    }

    fn name(self) -> &'static str {
        match self {
            Fault::StopMidTransaction => "host stopped mid-transaction",
            Fault::LockHeld => "package manager lock held",
            Fault::SlowPastTimeout => "transaction past its timeout",
            Fault::FailingPostinst => "failing postinst",
            Fault::Kill9 => "kill -9 of apply, then a rerun",
            Fault::ReportRace => "report push racing another writer",
            Fault::FleetMoves => "fleet repo moved mid-run",
            Fault::DiskFull => "disk nearly full",
        }
    }
}

/// One fault of a cycle's schedule.
#[derive(Debug, Clone)]
struct Planned {
    kind: Fault,
    victim: String,
    /// Set once the fault was put in place (a hold-point fault only when the victim's
    /// transaction was reached).
    injected: bool,
}

/// The schedule of one cycle: 1 to 3 faults of distinct kinds on distinct hosts.
fn schedule(rng: &mut Rng, hosts: &[String]) -> Vec<Planned> {
    let count = 1 + rng.below(3.min(hosts.len()));
    let mut kinds: Vec<Fault> = KINDS.to_vec();
    let mut victims: Vec<String> = hosts.to_vec();
    let mut out = Vec::new();
    for _ in 0..count {
        let kind = kinds.remove(rng.below(kinds.len()));
        let victim = victims.remove(rng.below(victims.len()));
        out.push(Planned {
            kind,
            victim,
            injected: false,
        });
    }
    out
}

/// A host's packages as plain `ssh` sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Truth {
    /// Package → installed versions (two: an unfinished rpm transaction).
    versions: BTreeMap<String, Vec<String>>,
    /// Why the package database is unfinished (empty: consistent).
    unfinished: Vec<String>,
}

impl Truth {
    fn version(&self, pkg: &str) -> Option<&str> {
        match self.versions.get(pkg).map(Vec::as_slice) {
            Some([one]) => Some(one),
            _ => None,
        }
    }
}

fn is_deb(host: &str) -> bool {
    host.starts_with("deb-")
}

/// Reads a host's package versions and database state with plain `ssh`.
fn ground_truth(lab: &Lab, host: &str) -> Truth {
    let list = PACKAGES.join(" ");
    let script = if is_deb(host) {
        format!(
            "dpkg-query -W -f='${{Package}} ${{Version}} ${{db:Status-Abbrev}}\\n' {list}; echo '--audit'; dpkg --audit"
        )
    } else {
        format!(
            "rpm -q --qf '%{{NAME}} %{{VERSION}}-%{{RELEASE}} ii\\n' {list}; echo '--audit'; rpm -qa --qf '%{{NAME}}.%{{ARCH}}\\n' | sort | uniq -d | sed 's/$/ installed twice/'"
        )
    };
    let out = lab.run(host, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (list, audit) = stdout.split_once("--audit\n").unwrap_or((&stdout, ""));
    let mut truth = Truth {
        versions: BTreeMap::new(),
        unfinished: Vec::new(),
    };
    for line in list.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(version), status) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        truth
            .versions
            .entry(name.to_string())
            .or_default()
            .push(version.to_string());
        if status.is_some_and(|s| s != "ii") {
            truth
                .unfinished
                .push(format!("{name} {version} {}", status.unwrap_or("")));
        }
    }
    for (name, versions) in &truth.versions {
        if versions.len() > 1 {
            truth
                .unfinished
                .push(format!("{name} recorded twice: {versions:?}"));
        }
    }
    if !audit.trim().is_empty() {
        truth.unfinished.push(audit.trim().to_string());
    }
    assert!(
        truth.versions.len() == PACKAGES.len() || !out.status.success(),
        "host {host}: cannot read the ground truth:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    truth
}

/// Puts every host back at 1.0-1 of every soak package (plain `ssh`, not patchkeeper), so the
/// next cycle has work. A database left unfinished (already counted as a violation) is
/// repaired first, else the package manager refuses.
fn reset(lab: &Lab, host: &str) {
    let script = if is_deb(host) {
        "dpkg --configure -a >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades libpk=1.0-1 pk-app=1.0-1 pk-broken=1.0-1 >/dev/null"
    } else {
        "dnf -y -q remove --duplicates >/dev/null 2>&1; dnf -y -q distro-sync libpk-1.0-1 pk-app-1.0-1 pk-broken-1.0-1 >/dev/null"
    };
    lab.run_ok(host, script);
}

fn pk(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn git(dir: &Path, args: &[&str]) -> String {
    common::git::git(dir, args)
}

/// `git --git-dir BARE ARGS`, `None` when it fails (a path not on the branch).
fn bare_git(bare: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .output()
        .expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A", "."]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// The soak's baseline for a cycle: even cycles libpk 1.2-1 with pk-app 2.0-1 (a dependency
/// pulled along), odd cycles libpk 1.1-1. `note` goes into a comment (a new commit that does
/// not change the desired state).
fn baseline_yaml(cycle: usize, note: &str) -> String {
    let packages: &[(&str, &str)] = if cycle.is_multiple_of(2) {
        &[("libpk", "1.2-1"), ("pk-app", "2.0-1")]
    } else {
        &[("libpk", "1.1-1")]
    };
    let mut yaml = format!(
        "# soak cycle {cycle}{note}\napiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian, rpm]\n  updates:\n    classes: none\n  hold: [pk-held]\n  window: always\n  rollout: lab\n  packages:\n"
    );
    for (name, min) in packages {
        yaml.push_str(&format!(
            "    - name: {name}\n      minVersion: \"{min}\"\n"
        ));
    }
    yaml
}

/// The patch request that makes `victims` install the failing pk-broken 1.1-1.
fn broken_request(victims: &[&str]) -> String {
    format!(
        "apiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata:\n  name: soak-broken\nspec:\n  selector:\n    hosts: [{}]\n  packages:\n    - name: pk-broken\n      minVersion: 1.1-1\n  reason: soak failing postinst\n",
        victims.join(", ")
    )
}

/// One journal line.
#[derive(Debug, Clone)]
struct Entry {
    run: String,
    host: Option<String>,
    kind: String,
    outcome: Option<String>,
}

fn journal_entries(dir: &Path, from: usize) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join(".patchkeeper/journal.jsonl")).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Entry {
            run: v["run"].as_str().unwrap_or_default().to_string(),
            host: v["host"].as_str().map(str::to_string),
            kind: v["event"]["type"].as_str().unwrap_or_default().to_string(),
            outcome: v["event"]["outcome"].as_str().map(str::to_string),
        })
        .collect()
}

fn journal_len(dir: &Path) -> usize {
    std::fs::metadata(dir.join(".patchkeeper/journal.jsonl")).map_or(0, |m| m.len() as usize)
}

/// What the soak found and did, for the summary.
#[derive(Default)]
struct Tally {
    cycles: usize,
    applies: usize,
    injected: BTreeMap<Fault, usize>,
    not_reached: BTreeMap<Fault, usize>,
    violations: Vec<String>,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: {} cycles, {} apply runs",
            self.cycles, self.applies
        )?;
        writeln!(f, "soak: faults injected by kind:")?;
        for kind in KINDS {
            writeln!(
                f,
                "soak:   {:<36} {:>4}{}",
                kind.name(),
                self.injected.get(&kind).copied().unwrap_or(0),
                match self.not_reached.get(&kind) {
                    Some(n) => format!("  (+{n} scheduled, victim's transaction never reached)"),
                    None => String::new(),
                }
            )?;
        }
        writeln!(f, "soak: invariant violations: {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "soak:   VIOLATION {v}")?;
        }
        Ok(())
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// The lab, its bare reports remote, and a second writer's clone.
struct Soak {
    lab: Lab,
    bare: PathBuf,
    racer: PathBuf,
    /// The cycle's saved plan (outside the fleet repo: its checkout stays clean).
    plan_file: PathBuf,
    hosts: Vec<String>,
    /// Every run id that reached the remote, and every racer commit: none may disappear.
    landed_runs: BTreeSet<String>,
    racer_commits: Vec<String>,
    /// Reports-branch tip after the previous cycle: the next must descend from it.
    last_tip: Option<String>,
    tally: Tally,
}

impl Soak {
    fn setup(hosts: usize) -> Soak {
        let debian = hosts.div_ceil(2);
        let lab = Lab::up(debian, hosts - debian);
        let dir = lab.dir().to_path_buf();
        let bare = dir.with_extension("reports.git");
        let racer = dir.with_extension("racer");
        let _ = std::fs::remove_dir_all(&bare);
        let _ = std::fs::remove_dir_all(&racer);
        let mut settings = std::fs::read_to_string(dir.join("patchkeeper.yaml")).unwrap();
        // A transaction held past 30 s is "slow past its timeout" (a real one takes a few
        // seconds under load); a lock held 2 s skips the host. Reports go to the bare remote
        // on every run (heartbeat 0s).
        settings.push_str(
            "  apply:\n    transactionTimeout: 30s\n    lockWait: 2s\n  reports:\n    remote: origin\n    heartbeat: 0s\n",
        );
        write(&lab, "patchkeeper.yaml", &settings);
        write(
            &lab,
            "rollouts/lab.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: lab\nspec:\n  stages:\n    - name: canary\n      size: 1\n      selector:\n        groups: [canary]\n    - name: rest\n      size: \"100%\"\n  failureBudget: \"100%\"\n",
        );
        write(&lab, "baselines/lab.yaml", &baseline_yaml(0, ""));
        commit_all(&dir, "soak: settings, rollout, reports remote");
        git(
            Path::new("/"),
            &["init", "-q", "--bare", &bare.display().to_string()],
        );
        git(
            &dir,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        git(&dir, &["push", "-q", "origin", "main"]);
        git(
            Path::new("/"),
            &[
                "clone",
                "-q",
                &bare.display().to_string(),
                &racer.display().to_string(),
            ],
        );
        let hosts = lab.host_names();
        Soak {
            lab,
            bare,
            racer,
            plan_file: dir.with_extension("plan.json"),
            hosts,
            landed_runs: BTreeSet::new(),
            racer_commits: Vec::new(),
            last_tip: None,
            tally: Tally::default(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.lab.dir().to_path_buf()
    }

    fn violation(&mut self, cycle: usize, what: String) {
        eprintln!("soak: cycle {cycle}: VIOLATION {what}");
        self.tally.violations.push(format!("cycle {cycle}: {what}"));
    }

    /// Another writer commits to the remote's reports branch (retrying when it loses).
    fn race_report_push(&mut self, cycle: usize) {
        let racer = self.racer.clone();
        for _ in 0..5 {
            git(&racer, &["fetch", "-q", "origin"]);
            let exists = Command::new("git")
                .arg("-C")
                .arg(&racer)
                .args(["rev-parse", "-q", "--verify", &format!("origin/{REPORTS}")])
                .output()
                .expect("git runs")
                .status
                .success();
            if exists {
                git(
                    &racer,
                    &[
                        "checkout",
                        "-q",
                        "-B",
                        "racer",
                        &format!("origin/{REPORTS}"),
                    ],
                );
            } else {
                git(&racer, &["checkout", "-q", "--orphan", "racer"]);
                git(&racer, &["rm", "-r", "-q", "-f", "--ignore-unmatch", "."]);
            }
            let n = self.racer_commits.len();
            std::fs::create_dir_all(racer.join("racer")).unwrap();
            std::fs::write(
                racer.join(format!("racer/{n}.txt")),
                format!("cycle {cycle}\n"),
            )
            .unwrap();
            commit_all(&racer, &format!("another writer, cycle {cycle}"));
            let pushed = Command::new("git")
                .arg("-C")
                .arg(&racer)
                .args(["push", "-q", "origin", &format!("racer:{REPORTS}")])
                .output()
                .expect("git runs");
            if pushed.status.success() {
                self.racer_commits.push(head(&racer));
                return;
            }
        }
        panic!("the racing writer could not push in 5 attempts");
    }

    /// Starts `patchkeeper apply` of the cycle's saved plan (a fresh plan once the fleet repo
    /// moved past it: the saved one is then refused as a whole), noting the fleet commit it
    /// starts from.
    fn start_apply(&mut self, plan_commit: &str, starts: &mut Vec<(String, usize)>) -> Running {
        self.tally.applies += 1;
        let commit = head(&self.dir());
        let mut cmd = pk(&self.dir());
        cmd.args(["apply", "--auto-approve"]);
        if commit == plan_commit {
            cmd.arg(&self.plan_file);
        }
        starts.push((commit, journal_len(&self.dir())));
        let running = Running::spawn(cmd);
        *APPLY_STDERR.lock().unwrap_or_else(|e| e.into_inner()) = Some(running.stderr_buffer());
        running
    }

    /// Every host's ground truth, read in parallel.
    fn ground_truth_all(&self) -> BTreeMap<String, Truth> {
        let lab = &self.lab;
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .hosts
                .iter()
                .map(|h| (h.clone(), s.spawn(move || ground_truth(lab, h))))
                .collect();
            handles
                .into_iter()
                .map(|(h, t)| (h, t.join().expect("ground truth")))
                .collect()
        })
    }

    /// Package transactions running in each host now, read from this machine's /proc (the
    /// hosts have none): package-manager processes whose parent is not one (a dpkg under
    /// apt-get, or a dnf forking a scriptlet, is the same transaction). More than one is a
    /// host in two transactions at once; the violation lists pid, parent and command line.
    fn check_one_transaction(&mut self, cycle: usize, when: &str) {
        for host in self.hosts.clone() {
            let root = self.lab.host(&host).root.clone();
            let mut procs: Vec<(u32, u32, String)> = Vec::new();
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if std::fs::read_link(entry.path().join("root"))
                    .ok()
                    .as_deref()
                    != Some(&root)
                {
                    continue;
                }
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                if !matches!(comm.trim(), "apt" | "apt-get" | "dpkg" | "dnf" | "rpm") {
                    continue;
                }
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // `pid (comm) state ppid ...`: the fields after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let cmdline = std::fs::read(entry.path().join("cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                procs.push((pid, ppid, cmdline.trim().to_string()));
            }
            let pids: BTreeSet<u32> = procs.iter().map(|p| p.0).collect();
            let roots = procs.iter().filter(|p| !pids.contains(&p.1)).count();
            if roots > 1 {
                self.violation(
                    cycle,
                    format!("{host}: {roots} package transactions at once ({when}): {procs:?}"),
                );
            }
        }
    }

    fn cycle(&mut self, cycle: usize, rng: &mut Rng) {
        let dir = self.dir();
        let started = Instant::now();
        if cycle > 0 {
            let lab = &self.lab;
            std::thread::scope(|s| {
                step(format!("cycle {cycle}: resetting every host over ssh"));
                for host in &self.hosts {
                    s.spawn(move || reset(lab, host));
                }
            });
        }
        let mut faults = schedule(rng, &self.hosts);
        eprintln!(
            "soak: cycle {cycle}: {}",
            faults
                .iter()
                .map(|f| format!("{} on {}", f.kind.name(), f.victim))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // The desired state of this cycle, with the failing request for its victims.
        write(&self.lab, "baselines/lab.yaml", &baseline_yaml(cycle, ""));
        let broken: Vec<&str> = faults
            .iter()
            .filter(|f| f.kind == Fault::FailingPostinst)
            .map(|f| f.victim.as_str())
            .collect();
        let request = dir.join("requests/soak-broken.yaml");
        if broken.is_empty() {
            let _ = std::fs::remove_file(&request);
        } else {
            write(
                &self.lab,
                "requests/soak-broken.yaml",
                &broken_request(&broken),
            );
        }
        commit_all(&dir, &format!("soak: cycle {cycle}"));
        for f in &mut faults {
            match f.kind {
                Fault::FailingPostinst => f.injected = true,
                Fault::LockHeld => {
                    self.lab.lock_host(&f.victim);
                    f.injected = true;
                }
                Fault::DiskFull => {
                    self.lab.fill_disk(&f.victim, 64);
                    f.injected = true;
                }
                k if k.at_hold_point() => self.lab.hold_host(&f.victim),
                _ => {}
            }
        }
        // Ground truth before the run, and the plan.
        step(format!("cycle {cycle}: ground truth before the run"));
        let before = self.ground_truth_all();
        step(format!("cycle {cycle}: plan --out"));
        let plan = pk(&dir)
            .args(["plan", "--out"])
            .arg(&self.plan_file)
            .output()
            .unwrap();
        let plan_json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&self.plan_file).unwrap_or_default())
                .unwrap_or_else(|e| panic!("plan --out: {e}\n{}", text(&plan)));
        let plan_commit = head(&dir);
        let mut planned: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for h in plan_json["hosts"].as_array().into_iter().flatten() {
            let host = h["host"].as_str().unwrap_or_default().to_string();
            let changes = h["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["package"].as_str().unwrap_or_default().to_string(),
                        c["to"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            planned.insert(host, changes);
        }
        let journal_start = journal_len(&dir);
        eprintln!(
            "soak: cycle {cycle}: reset, ground truth and plan took {:.0?}",
            started.elapsed()
        );

        // The apply, with the hold-point faults acted on as their victims' transactions are
        // reached.
        let mut starts: Vec<(String, usize)> = Vec::new();
        let mut outputs: Vec<Output> = Vec::new();
        let mut running = self.start_apply(&plan_commit, &mut starts);
        let mut rerun = false;
        let mut slow_victims: Vec<String> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let pending: Vec<usize> = (0..faults.len())
                .filter(|&i| faults[i].kind.at_hold_point() && !faults[i].injected)
                .filter(|&i| self.lab.is_held(&faults[i].victim))
                .collect();
            for i in pending {
                let victim = faults[i].victim.clone();
                faults[i].injected = true;
                step(format!(
                    "cycle {cycle}: acting on {} at {victim}'s held transaction (apply pid {})",
                    faults[i].kind.name(),
                    running.pid()
                ));
                self.check_one_transaction(cycle, "at a held transaction");
                match faults[i].kind {
                    Fault::StopMidTransaction => {
                        self.lab.stop_host(&victim);
                        self.lab.start_host(&victim);
                        // Disarms what the stop left (its transaction died with the host).
                        self.lab.release_host(&victim);
                        rerun = true;
                    }
                    Fault::SlowPastTimeout => {
                        // Held until apply gives up on it; released after apply ends.
                        slow_victims.push(victim);
                        rerun = true;
                    }
                    Fault::Kill9 => {
                        running.kill();
                        outputs.push(running.wait());
                        self.lab.release_host(&victim);
                        rerun = true;
                        running = self.start_apply(&plan_commit, &mut starts);
                    }
                    Fault::ReportRace => {
                        self.race_report_push(cycle);
                        self.lab.release_host(&victim);
                    }
                    Fault::FleetMoves => {
                        write(
                            &self.lab,
                            "baselines/lab.yaml",
                            &baseline_yaml(cycle, " (moved mid-run)"),
                        );
                        commit_all(&dir, &format!("soak: cycle {cycle}, moved mid-run"));
                        self.lab.release_host(&victim);
                    }
                    Fault::LockHeld | Fault::FailingPostinst | Fault::DiskFull => {}
                }
            }
            if running.has_exited() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apply still runs after 10 minutes:\n{}",
                running.stderr()
            );
            step(format!(
                "cycle {cycle}: waiting for apply (pid {}) to end or reach a hold point",
                running.pid()
            ));
            // Wakes when apply exits or a victim's hook says its transaction is held.
            let armed: Vec<PathBuf> = faults
                .iter()
                .filter(|f| f.kind.at_hold_point() && !f.injected)
                .map(|f| self.lab.host(&f.victim).root.join("run/patchkeeper-lab"))
                .collect();
            wait_for_hold_or_exit(running.pid(), &armed, Duration::from_secs(5));
        }
        outputs.push(running.wait());
        step(format!(
            "cycle {cycle}: disarming hold points and locks after the apply"
        ));
        for f in &mut faults {
            if f.kind.at_hold_point() && !f.injected {
                // Never reached (its host failed or was skipped first): disarmed.
                self.lab.release_host(&f.victim);
                *self.tally.not_reached.entry(f.kind).or_default() += 1;
            }
            if f.kind == Fault::LockHeld {
                self.lab.unlock_host(&f.victim);
            }
        }
        for victim in &slow_victims {
            self.lab.release_host(victim);
        }
        self.check_one_transaction(cycle, "after the first apply");
        eprintln!(
            "soak: cycle {cycle}: apply ended at {:.0?}",
            started.elapsed()
        );
        if rerun {
            let mut running = self.start_apply(&plan_commit, &mut starts);
            step(format!(
                "cycle {cycle}: waiting for the rerun of apply (pid {})",
                running.pid()
            ));
            let deadline = Instant::now() + Duration::from_secs(600);
            while !running.has_exited() {
                assert!(
                    Instant::now() < deadline,
                    "the rerun of apply still runs after 10 minutes:\n{}",
                    running.stderr()
                );
                wait_for_hold_or_exit(running.pid(), &[], Duration::from_secs(5));
            }
            outputs.push(running.wait());
        }
        step(format!(
            "cycle {cycle}: unfilling disks, then the invariants"
        ));
        // The full disk stays full through the rerun; the ground truth is read with it back.
        for f in faults.iter().filter(|f| f.kind == Fault::DiskFull) {
            self.lab.unfill_disk(&f.victim);
        }
        for f in &faults {
            if f.injected {
                *self.tally.injected.entry(f.kind).or_default() += 1;
            }
        }

        eprintln!(
            "soak: cycle {cycle}: applies ended at {:.0?}",
            started.elapsed()
        );
        if std::env::var_os("PATCHKEEPER_SOAK_VERBOSE").is_some() {
            for out in &outputs {
                eprintln!("soak: apply output\n{}", text(out));
            }
        }
        self.check_invariants(cycle, &before, &planned, &starts, journal_start, &outputs);
        self.check_fault_effects(cycle, &faults, &starts);
        self.tally.cycles += 1;
        eprintln!(
            "soak: cycle {cycle} done in {:.0?}, {} violation(s) so far",
            started.elapsed(),
            self.tally.violations.len()
        );
    }

    /// What each fault must have done, in the record of the first apply of the cycle (when
    /// it finished): a full disk or a held lock skips the host, saying why once.
    fn check_fault_effects(
        &mut self,
        cycle: usize,
        faults: &[Planned],
        starts: &[(String, usize)],
    ) {
        let dir = self.dir();
        let Some((_, offset)) = starts.first() else {
            return;
        };
        let entries = journal_entries(&dir, *offset);
        let Some(run) = entries
            .iter()
            .find(|e| e.kind == "run-started")
            .map(|e| e.run.clone())
        else {
            return;
        };
        let Some(record) = bare_git(&self.bare, &["show", &format!("{REPORTS}:runs/{run}.json")])
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return; // killed before it could report
        };
        for f in faults {
            let expected = match f.kind {
                Fault::DiskFull => "MiB free on /var, 500 MiB required (apply.minFreeDiskMib)",
                Fault::LockHeld => "the package manager is still locked",
                _ => continue,
            };
            let host = record["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["host"] == f.victim.as_str());
            let outcome = host
                .and_then(|h| h["outcome"].as_str())
                .unwrap_or("(missing)");
            let reason = host.and_then(|h| h["reason"].as_str()).unwrap_or("");
            // The reason says it once: the outcome is not repeated in front of it.
            if outcome != "skipped" || !reason.contains(expected) || reason.starts_with("skipped") {
                self.violation(
                    cycle,
                    format!(
                        "{}: {} should skip it saying `{expected}`; run {run} says {outcome}: {reason}",
                        f.victim,
                        f.kind.name()
                    ),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_invariants(
        &mut self,
        cycle: usize,
        before: &BTreeMap<String, Truth>,
        planned: &BTreeMap<String, BTreeMap<String, String>>,
        starts: &[(String, usize)],
        journal_start: usize,
        outputs: &[Output],
    ) {
        let dir = self.dir();
        let outputs_text = || {
            outputs
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join("\n=== next apply\n")
        };
        let entries = journal_entries(&dir, journal_start);
        // No process of any package manager is left running once the cycle's applies ended.
        for host in self.hosts.clone() {
            let procs = self.lab.pm_processes(&host);
            if !procs.is_empty() {
                self.violation(
                    cycle,
                    format!("{host}: package manager still running after the cycle: {procs:?}"),
                );
            }
        }
        // The latest host files on the remote.
        let host_file = |bare: &Path, host: &str| -> serde_json::Value {
            bare_git(bare, &["show", &format!("{REPORTS}:hosts/{host}.json")])
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        step(format!("cycle {cycle}: ground truth after the applies"));
        let truth = self.ground_truth_all();
        for host in self.hosts.clone() {
            let now = truth[&host].clone();
            let pre = &before[&host];
            let plan = planned.get(&host).cloned().unwrap_or_default();
            let at_plan = !plan.is_empty()
                && plan.iter().all(|(p, v)| now.version(p) == Some(v.as_str()))
                && now.unfinished.is_empty();
            let at_pre = now.versions == pre.versions && now.unfinished.is_empty();
            let mine = |kind: &str| {
                entries
                    .iter()
                    .any(|e| e.host.as_deref() == Some(&host) && e.kind == kind)
            };
            let report = host_file(&self.bare, &host);
            let state = report["state"]
                .as_str()
                .unwrap_or("(no report)")
                .to_string();
            let reasons: Vec<String> = report["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            if at_plan {
                if !(mine("verified") || mine("recovered")) {
                    self.violation(
                        cycle,
                        format!("{host}: at the planned versions {plan:?} but the journal has no verification or recovery for it"),
                    );
                }
                if state != "compliant" {
                    self.violation(
                        cycle,
                        format!("{host}: at the planned versions, reported {state} {reasons:?}"),
                    );
                }
            } else if at_pre {
                if !plan.is_empty() && state == "compliant" {
                    self.violation(
                        cycle,
                        format!("{host}: still at its pre-run versions {:?} (plan {plan:?}) yet reported compliant", pre.versions),
                    );
                }
            } else if reasons.is_empty() || state == "compliant" {
                self.violation(
                    cycle,
                    format!(
                        "{host}: neither at the plan {plan:?} nor at its pre-run versions {:?}: {:?} (unfinished: {:?}), reported {state} without a reason\n{}",
                        pre.versions,
                        now.versions,
                        now.unfinished,
                        outputs_text()
                    ),
                );
            }
            if !now.unfinished.is_empty() {
                let failed_recovery = entries.iter().rev().find(|e| {
                    e.host.as_deref() == Some(&host)
                        && matches!(e.kind.as_str(), "recovered" | "recovery-failed")
                });
                if failed_recovery.is_none_or(|e| e.kind != "recovery-failed") {
                    self.violation(
                        cycle,
                        format!(
                            "{host}: package database left unfinished without a recovery: {:?}\n{}",
                            now.unfinished,
                            outputs_text()
                        ),
                    );
                }
            }
        }
        // One transaction per host at a time, by the journal: a transaction (or a rollback)
        // starts only once the previous one finished or was recovered.
        let mut open: BTreeMap<String, String> = BTreeMap::new();
        let all = journal_entries(&dir, 0);
        let earlier = all.len().saturating_sub(entries.len());
        for (i, e) in all.into_iter().enumerate() {
            let Some(host) = e.host.clone() else { continue };
            match e.kind.as_str() {
                "transaction-started" | "rollback-started" => {
                    if let Some(run) = open.get(&host) {
                        if i >= earlier && (*run != e.run || e.kind == "transaction-started") {
                            self.violation(
                                cycle,
                                format!("{host}: run {} started a transaction while run {run}'s was in flight", e.run),
                            );
                        }
                    }
                    open.insert(host, e.run.clone());
                }
                "transaction-finished" | "host-done" | "recovered" => {
                    open.remove(&host);
                }
                _ => {}
            }
        }
        // The journal and the reports branch agree; every finished run reached the remote
        // and named the fleet commit it started from.
        for (commit, offset) in starts {
            let run_entries = journal_entries(&dir, *offset);
            let Some(run) = run_entries
                .iter()
                .find(|e| e.kind == "run-started")
                .map(|e| e.run.clone())
            else {
                continue;
            };
            let mine: Vec<&Entry> = run_entries.iter().filter(|e| e.run == run).collect();
            if !mine.iter().any(|e| e.kind == "run-finished") {
                continue; // killed: it could not report.
            }
            let Some(record) =
                bare_git(&self.bare, &["show", &format!("{REPORTS}:runs/{run}.json")])
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            else {
                self.violation(
                    cycle,
                    format!("run {run} finished but runs/{run}.json is not on the remote"),
                );
                continue;
            };
            self.landed_runs.insert(run.clone());
            if record["desiredCommit"].as_str() != Some(commit.as_str()) {
                self.violation(
                    cycle,
                    format!(
                        "run {run} started from fleet commit {commit} but its record names {}",
                        record["desiredCommit"]
                    ),
                );
            }
            for e in mine.iter().filter(|e| e.kind == "host-done") {
                let host = e.host.clone().unwrap_or_default();
                let journal = e.outcome.clone().unwrap_or_default();
                let reported = record["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|h| h["host"] == host.as_str())
                    .and_then(|h| h["outcome"].as_str())
                    .unwrap_or("(missing)")
                    .to_string();
                let agree = match journal.as_str() {
                    "compliant" | "pending-reboot" => {
                        matches!(reported.as_str(), "updated" | "unchanged")
                    }
                    "blocked" | "unmanaged" => reported == "unchanged",
                    "stale" | "skipped" => reported == "skipped",
                    "waiting" | "not-started" => reported == "not-started",
                    other => reported == other,
                };
                if !agree {
                    self.violation(
                        cycle,
                        format!("run {run}: the journal says {host} {journal}, the report says {reported}"),
                    );
                }
            }
        }
        // No report lost: every run record and every other writer's commit seen so far is
        // still on the branch, and the branch only moved forward.
        let tip = bare_git(&self.bare, &["rev-parse", REPORTS]).map(|t| t.trim().to_string());
        if let (Some(old), Some(new)) = (&self.last_tip, &tip) {
            if bare_git(&self.bare, &["merge-base", "--is-ancestor", old, new]).is_none() {
                self.violation(
                    cycle,
                    format!("reports branch rewritten: {old} is not an ancestor of {new}"),
                );
            }
        }
        for run in self.landed_runs.clone() {
            if bare_git(
                &self.bare,
                &["cat-file", "-e", &format!("{REPORTS}:runs/{run}.json")],
            )
            .is_none()
            {
                self.violation(cycle, format!("run record {run} lost from the remote"));
            }
        }
        if let Some(new) = &tip {
            for c in self.racer_commits.clone() {
                if bare_git(&self.bare, &["merge-base", "--is-ancestor", &c, new]).is_none() {
                    self.violation(
                        cycle,
                        format!("the other writer's commit {c} was lost from the reports branch"),
                    );
                }
            }
        }
        self.last_tip = tip;
    }
}

#[test]
fn chaos_soak_keeps_every_invariant_under_seeded_faults() {
    let seed = env_number("PATCHKEEPER_SOAK_SEED", DEFAULT_SEED);
    let runs = env_number("PATCHKEEPER_SOAK_RUNS", 3) as usize;
    let hosts = env_number("PATCHKEEPER_SOAK_HOSTS", 3) as usize;
    assert!(
        hosts >= 2,
        "the soak needs at least 2 hosts (one Debian, one RPM)"
    );
    eprintln!(
        "soak: seed {seed}, {runs} cycles, {hosts} hosts (reproduce: scripts/soak --seed {seed} --runs {runs} --hosts {hosts})"
    );
    let started = Instant::now();
    // A hang anywhere (a remote command, a lab control, apply) ends the test with what it was
    // doing and the processes it waits on, well before CI's own limit: 5 minutes plus one per
    // cycle and host (the bounded run, 9 of them, takes 1.5 minutes idle, 4 at load 7).
    // (`PATCHKEEPER_SOAK_WATCHDOG` seconds overrides it.)
    let limit = env_number(
        "PATCHKEEPER_SOAK_WATCHDOG",
        300 + 60 * (runs * hosts) as u64,
    );
    let _watchdog = Watchdog::start(Duration::from_secs(limit));
    let mut rng = Rng(seed);
    step("setting up the lab".to_string());
    let mut soak = Soak::setup(hosts);
    for cycle in 0..runs {
        soak.cycle(cycle, &mut rng);
    }
    step("tearing down".to_string());
    let summary = soak.tally.to_string();
    eprint!("{summary}");
    eprintln!("soak: seed {seed}, {:.0?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&soak.bare);
    let _ = std::fs::remove_dir_all(&soak.racer);
    let _ = std::fs::remove_file(&soak.plan_file);
    assert!(
        soak.tally.violations.is_empty(),
        "seed {seed}: invariant violations (reproduce: scripts/soak --seed {seed} --runs {runs} --hosts {hosts}):\n{summary}"
    );
    if std::env::var_os("PATCHKEEPER_SOAK_SEED").is_none() {
        // The bounded soak's fixed seed must keep covering several fault kinds.
        assert!(
            soak.tally.injected.len() >= 6,
            "seed {seed} injected too few kinds:\n{summary}"
        );
    }
}

/// Blocks until the process `pid` exits or a transaction is held in one of `dirs` (the
/// armed hosts' hold-point directories, where the lab's hook writes `held`), at most
/// `limit`: the apply loop wakes on the event it acts on (a pidfd and inotify), not on a
/// timer.
fn wait_for_hold_or_exit(pid: u32, dirs: &[PathBuf], limit: Duration) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: pidfd_open(pid, flags) only returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(raw) = i32::try_from(raw) else { return };
    if raw < 0 {
        return; // Already reaped: nothing to wait for.
    }
    // SAFETY: `raw` is a descriptor just returned to us and owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: inotify_init1 only returns a new descriptor or -1.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(
        raw >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: as above, a fresh descriptor we own.
    let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
    for dir in dirs {
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: a valid descriptor and a NUL-terminated path; a missing dir returns -1,
        // which is fine (its host is checked again on the next turn).
        unsafe {
            libc::inotify_add_watch(
                inotify.as_raw_fd(),
                path.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO,
            )
        };
    }
    // A `held` written before the watches existed has no event: look once more.
    if dirs.iter().any(|d| d.join("held").exists()) {
        return;
    }
    let mut fds = [
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
}

/// What the soak is doing now, and since when: the watchdog's report names it.
static STEP: Mutex<Option<(Instant, String)>> = Mutex::new(None);
/// Standard error of the latest apply, for the watchdog's report.
static APPLY_STDERR: Mutex<Option<Arc<Mutex<Vec<u8>>>>> = Mutex::new(None);

fn step(what: String) {
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), what));
}

/// Ends the test process when the soak has not finished within its limit, printing what it
/// was doing, every process of this machine with what it waits in (`wchan`), and the
/// remote sessions: a hang becomes a failure that says where, not a CI timeout.
struct Watchdog {
    /// Dropped when the test ends (passed or panicked): the watchdog then stands down.
    _done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn start(limit: Duration) -> Watchdog {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(limit) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            let ps = Command::new("ps")
                .args(["-eo", "pid,ppid,etimes,stat,wchan:24,args", "--forest"])
                .output()
                // One line per process, cut to a readable width (compiler command lines).
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(|l| l.chars().take(220).collect::<String>() + "\n")
                        .collect::<String>()
                })
                .unwrap_or_else(|e| format!("ps: {e}"));
            report(&format!("soak: WATCHDOG: processes now:\n{ps}\n"));
            let apply = APPLY_STDERR
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned()
                })
                .unwrap_or_default();
            report(&format!(
                "soak: WATCHDOG: the latest apply's standard error:\n{apply}\n"
            ));
            let (since, what) = STEP
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or((Instant::now(), "starting".to_string()));
            report(&format!(
                "soak: WATCHDOG: not finished within {limit:?}; stuck for {:.0?} at: {what}\n",
                since.elapsed()
            ));
            std::process::exit(101);
        });
        Watchdog { _done: done }
    }
}

/// Writes to the process's standard error directly: the test harness captures `eprintln!`
/// and would drop it when the watchdog ends the process.
fn report(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}
