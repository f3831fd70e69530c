//! A private lab instance for one test: `Lab::up(debian, rpm)` runs `scripts/lab up` with a
//! unique fleet-repo directory and its own ports, reads `lab.json`, and `Drop` runs
//! `scripts/lab down`. If the test process dies without dropping the lab, the lab's
//! controller notices (`--owner-pid`) and tears the instance down by itself.
//!
//! Lab tests need root and the lab prerequisites (`scripts/lab deps`); they fail loudly,
//! never skip, when those are missing, because CI provides them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `lab.json`, as written by `scripts/lab up`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabInfo {
    /// The instance directory under /var/lib/patchkeeper-lab/instances.
    pub instance: PathBuf,
    /// The fleet repo (a Git repository).
    pub fleet_dir: PathBuf,
    /// The instance controller (simulated reboots, owner watch).
    pub controller_pid: u32,
    /// The package repository server.
    pub repo: RepoInfo,
    /// How to log in.
    pub ssh: SshInfo,
    /// Every host.
    pub hosts: Vec<LabHost>,
}

/// The lab's package repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoInfo {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Pid file of the HTTP server.
    pub pid_file: PathBuf,
}

/// SSH login material of the lab.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshInfo {
    /// Always `root`.
    pub user: String,
    /// An unprivileged login every host accepts, allowed `sudo -n` anything.
    pub sudo_user: String,
    /// Client private key.
    pub identity_file: PathBuf,
    /// known_hosts with every host's own key.
    pub known_hosts: PathBuf,
}

/// One lab host.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabHost {
    /// `deb-N` or `rpm-N`.
    pub name: String,
    /// Always 127.0.0.1.
    pub address: String,
    /// The host's sshd port.
    pub port: u16,
    /// The host's root directory (its chroot).
    pub root: PathBuf,
    /// The host's sshd pid file.
    pub sshd_pid_file: PathBuf,
    /// The host's sshd log.
    pub sshd_log: PathBuf,
    /// `apt` or `dnf`.
    pub package_manager: String,
    /// Inventory groups.
    pub groups: Vec<String>,
}

/// A running lab instance, taken down on drop.
pub struct Lab {
    info: LabInfo,
    down: bool,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of `scripts/lab` in this checkout.
pub fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab")
}

impl Lab {
    /// Brings up `debian` Debian hosts and `rpm` RPM hosts; panics with the script's output
    /// when that fails (missing root or prerequisites included).
    pub fn up(debian: usize, rpm: usize) -> Lab {
        // SAFETY-free check: geteuid is not in std, but /proc/self/status has the uid.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("?");
        assert_eq!(
            euid, "0",
            "lab tests need root (chroots, sshd with ChrootDirectory): run them with scripts/test as root"
        );
        let dir = std::env::temp_dir().join(format!(
            "pk-lab-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let out = Command::new(lab_script())
            .args([
                "up",
                "--hosts",
                &debian.to_string(),
                "--rpm",
                &rpm.to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--owner-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("scripts/lab can be executed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/lab up failed ({}):\n{stderr}\nstdout: {stdout}\n(run `scripts/lab deps` as root first)",
            out.status
        );
        let printed = stdout.lines().last().unwrap_or_default();
        assert_eq!(
            Path::new(printed),
            dir,
            "scripts/lab up prints the fleet repo dir last"
        );
        let json = std::fs::read_to_string(dir.join("lab.json")).expect("lab.json written by up");
        let info: LabInfo = serde_json::from_str(&json).expect("lab.json parses");
        Lab { info, down: false }
    }

    /// The lab's fleet repo.
    pub fn dir(&self) -> &Path {
        &self.info.fleet_dir
    }

    /// Everything `lab.json` says.
    pub fn info(&self) -> &LabInfo {
        &self.info
    }

    /// All hosts.
    pub fn hosts(&self) -> &[LabHost] {
        &self.info.hosts
    }

    /// Host names, in inventory order.
    pub fn host_names(&self) -> Vec<String> {
        self.info.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> &LabHost {
        self.info
            .hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
    }

    /// A plain OpenSSH `ssh` command to `host` with strict host-key checking against the
    /// lab's known_hosts; append the remote command with `.arg(...)`.
    pub fn ssh(&self, host: &str) -> Command {
        let h = self.host(host);
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(&self.info.ssh.identity_file)
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.info.ssh.known_hosts.display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ])
            .arg(h.port.to_string())
            .arg(format!("{}@{}", self.info.ssh.user, h.address))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `script` on `host` over SSH.
    pub fn run(&self, host: &str, script: &str) -> Output {
        self.ssh(host)
            .arg(script)
            .output()
            .expect("ssh can be executed")
    }

    /// Runs `script` on `host` and returns its stdout; panics with its output on failure.
    pub fn run_ok(&self, host: &str, script: &str) -> String {
        let out = self.run(host, script);
        assert!(
            out.status.success(),
            "host {host}: `{script}` failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `scripts/lab ARGS --dir DIR`; panics when it fails.
    pub fn lab(&self, args: &[&str]) -> String {
        let out = Command::new(lab_script())
            .args(args)
            .arg("--dir")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output()
            .expect("scripts/lab can be executed");
        assert!(
            out.status.success(),
            "scripts/lab {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes `host` unreachable (its sshd and every session killed).
    pub fn stop_host(&self, host: &str) {
        self.lab(&["stop-host", host]);
    }

    /// Brings a stopped host back.
    pub fn start_host(&self, host: &str) {
        self.lab(&["start-host", host]);
    }

    /// Holds the host's package-manager lock (as unattended-upgrades does).
    pub fn lock_host(&self, host: &str) {
        self.lab(&["lock-host", host]);
    }

    /// Releases the lock of `lock_host`.
    pub fn unlock_host(&self, host: &str) {
        self.lab(&["unlock-host", host]);
    }

    /// Every SSH command on `host` waits `seconds` first (0 turns it off).
    pub fn slow_host(&self, host: &str, seconds: u32) {
        self.lab(&["slow-host", host, &seconds.to_string()]);
    }

    /// Every SSH command on `host` hangs until its session is cut (`slow-host NAME forever`):
    /// a host that logs in and never answers, whatever the machine's speed.
    pub fn hang_host(&self, host: &str) {
        self.lab(&["slow-host", host, "forever"]);
    }

    /// Disk nearly full: `host`'s /var becomes a file system of `mib` MiB of its own holding a
    /// copy of its /var (`df /var` on the host shows about `mib` - 10 MiB free), until
    /// [`Lab::unfill_disk`].
    pub fn fill_disk(&self, host: &str, mib: u32) {
        self.lab(&["fill-disk", host, &mib.to_string()]);
    }

    /// The host's own /var again (what was written under /var meanwhile is dropped).
    pub fn unfill_disk(&self, host: &str) {
        self.lab(&["unfill-disk", host]);
    }

    /// Arms `host`'s hold point: its next package transaction (apt/dpkg: before dpkg
    /// configures what it unpacked; dnf/rpm: in the new package's `%post`) stops there, lock
    /// held, until [`Lab::release_host`].
    pub fn hold_host(&self, host: &str) {
        self.lab(&["hold-host", host]);
    }

    /// Waits (up to 5 minutes) until a package transaction on `host` is held at its hold
    /// point: from then on it is provably in flight.
    pub fn wait_held(&self, host: &str) {
        self.lab(&["wait-held", host, "300"]);
    }

    /// Whether a transaction on `host` is held at its hold point now.
    pub fn is_held(&self, host: &str) -> bool {
        self.host(host)
            .root
            .join("run/patchkeeper-lab/held")
            .exists()
    }

    /// Lets the held transaction go on and returns once it has ended (or disarms the hold
    /// point when nothing reached it).
    pub fn release_host(&self, host: &str) {
        self.lab(&["release-host", host]);
    }

    /// Names (`comm`) of the package-manager processes (apt, apt-get, dpkg, dnf, rpm)
    /// running inside `host` now, sorted: read from this machine's /proc, since hosts have
    /// none of their own.
    pub fn pm_processes(&self, host: &str) -> Vec<String> {
        let root = self.host(host).root.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let path = entry.path();
            let Ok(r) = std::fs::read_link(path.join("root")) else {
                continue;
            };
            if r.to_string_lossy() != root {
                continue;
            }
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if ["apt", "apt-get", "dpkg", "dnf", "rpm"].contains(&comm) {
                found.push(comm.to_string());
            }
        }
        found.sort();
        found
    }

    /// The host's current boot id, read over SSH.
    pub fn boot_id(&self, host: &str) -> String {
        self.run_ok(host, "cat /proc/sys/kernel/random/boot_id")
            .trim()
            .to_string()
    }

    /// Waits until `host` answers over SSH with a boot id other than `old`.
    pub fn wait_for_new_boot_id(&self, host: &str, old: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let out = self.run(host, "cat /proc/sys/kernel/random/boot_id");
            if out.status.success() {
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if id != old {
                    return id;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "host {host} did not come back with a new boot id within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SSH logins `host`'s sshd has accepted so far (its log's `Accepted publickey` lines):
    /// every connection anything made to the host, patchkeeper's and the test's own.
    pub fn ssh_logins(&self, host: &str) -> usize {
        std::fs::read_to_string(&self.host(host).sshd_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .count()
    }

    /// Runs `scripts/lab down` now (instead of on drop) and panics if it fails.
    pub fn down(mut self) {
        self.down = true;
        let out = Command::new(lab_script())
            .arg("down")
            .arg("--dir")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output()
            .expect("scripts/lab can be executed");
        assert!(
            out.status.success(),
            "scripts/lab down failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        let result = Command::new(lab_script())
            .arg("down")
            .arg("--dir")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: scripts/lab down --dir {} failed: {}",
                self.dir().display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("warning: could not run scripts/lab down: {e}"),
        }
    }
}

/// `VERSION STATUS` of a package on a Debian host (e.g. `1.2-1 ii`).
pub fn deb(lab: &Lab, host: &str, pkg: &str) -> String {
    lab.run_ok(
        host,
        &format!("dpkg-query -W -f='${{Version}} ${{db:Status-Abbrev}}' {pkg}"),
    )
    .trim()
    .to_string()
}

/// `VERSION-RELEASE` of a package on an RPM host.
pub fn rpm(lab: &Lab, host: &str, pkg: &str) -> String {
    lab.run_ok(
        host,
        &format!("rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' {pkg}"),
    )
    .trim()
    .to_string()
}

/// Writes a file into the lab's fleet repo (creating its directory).
pub fn write(lab: &Lab, rel: &str, content: &str) {
    let path = lab.dir().join(rel);
    std::fs::create_dir_all(path.parent().expect("a file in the repo has a parent"))
        .expect("mkdir");
    std::fs::write(path, content).expect("write");
}
