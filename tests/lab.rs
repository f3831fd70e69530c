//! The lab itself (issue 4): real sshd hosts with real dpkg/apt and rpm/dnf behind them. Every
//! scenario the other tests rely on is proved here with plain OpenSSH `ssh` commands, and
//! `scripts/lab down` is shown to leave no process of the lab running.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lab::{lab_script, Lab};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dpkg-query` version of one package on a Debian host.
fn deb_version(lab: &Lab, host: &str, pkg: &str) -> String {
    lab.run_ok(
        host,
        &format!("dpkg-query -W -f='${{Version}} ${{db:Status-Abbrev}}' {pkg}"),
    )
    .trim()
    .to_string()
}

/// `rpm -q` of one package on an RPM host.
fn rpm_version(lab: &Lab, host: &str, pkg: &str) -> String {
    lab.run_ok(
        host,
        &format!("rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' {pkg}"),
    )
    .trim()
    .to_string()
}

/// Pids of processes belonging to a lab instance: chrooted into one of its hosts, or naming
/// the instance directory on their command line.
fn instance_processes(instance: &Path) -> Vec<String> {
    let inst = instance.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let root = std::fs::read_link(entry.path().join("root"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if root.starts_with(&inst) || cmdline.contains(&inst) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// `roots` and all their descendants (sshd renames its per-connection processes, so they are
/// found through their parent, the host's listener).
fn process_tree(roots: &[u32]) -> Vec<u32> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut todo = roots.to_vec();
    let mut seen = Vec::new();
    while let Some(p) = todo.pop() {
        if !seen.contains(&p) {
            seen.push(p);
            todo.extend(children.get(&p).cloned().unwrap_or_default());
        }
    }
    seen
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

#[test]
fn lab_scenarios_over_plain_ssh() {
    let lab = Lab::up(3, 2);
    let names = lab.host_names();
    assert_eq!(names, ["deb-1", "deb-2", "deb-3", "rpm-1", "rpm-2"]);

    // --- The fleet repo: a committed Git repository that patchkeeper validates. -----------
    let git = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(lab.dir())
        .output()
        .unwrap();
    assert!(
        git.status.success() && stdout(&git).is_empty(),
        "fleet repo is committed and clean: {}",
        stdout(&git)
    );
    let validate = assert_cmd::Command::cargo_bin("patchkeeper")
        .unwrap()
        .args(["validate", "--repo"])
        .arg(lab.dir())
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "patchkeeper validate on the lab fleet repo:\n{}{}",
        stdout(&validate),
        stderr(&validate)
    );
    let known_hosts = std::fs::read_to_string(&lab.info().ssh.known_hosts).unwrap();
    let keys: std::collections::BTreeSet<&str> = known_hosts
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        keys.len(),
        5,
        "every host has its own host key:\n{known_hosts}"
    );
    for h in lab.hosts() {
        assert!(known_hosts.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", h.port)));
    }

    // Host-key checking is real: deb-2's key recorded for deb-1's port is refused.
    let wrong = lab.dir().join(".lab/wrong_known_hosts");
    let deb2_key = known_hosts
        .lines()
        .find(|l| l.starts_with(&format!("[127.0.0.1]:{} ", lab.host("deb-2").port)))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {deb2_key}\n", lab.host("deb-1").port),
    )
    .unwrap();
    let out = lab
        .ssh("deb-1")
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", wrong.display()))
        .arg("true")
        .output()
        .unwrap();
    // The first UserKnownHostsFile given wins in ssh, so pass the wrong one through a
    // fresh command instead when the helper's comes first.
    let refused = if out.status.success() {
        Command::new("ssh")
            .arg("-i")
            .arg(&lab.info().ssh.identity_file)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", wrong.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-p",
            ])
            .arg(lab.host("deb-1").port.to_string())
            .arg("root@127.0.0.1")
            .arg("true")
            .output()
            .unwrap()
    } else {
        out
    };
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&refused)
    );

    // --- Each host is its own machine. -----------------------------------------------------
    assert_eq!(lab.run_ok("deb-1", "cat /etc/hostname").trim(), "deb-1");
    let os = lab.run_ok(
        "rpm-1",
        ". /etc/os-release; echo $ID_LIKE; command -v apt-get dpkg || true",
    );
    assert!(os.starts_with("rhel"), "RPM hosts look RHEL-like: {os}");
    assert!(!os.contains("dpkg"), "RPM hosts have no dpkg: {os}");

    // --- Security and regular updates are told apart. -----------------------------------
    let upgradable = lab.run_ok("deb-1", "apt list --upgradable 2>/dev/null");
    for line in [
        "libpk/bookworm-security 1.2-1",
        "pk-kernel/bookworm-security 1.1-1",
        "pk-held/bookworm-security 1.1-1",
        "pk-app/bookworm 2.0-1",
        "pk-broken/bookworm 1.1-1",
    ] {
        assert!(
            upgradable.contains(line),
            "deb-1 lists `{line}`:\n{upgradable}"
        );
    }
    let policy = lab.run_ok("deb-1", "apt-cache policy");
    assert!(
        policy.contains("o=PatchkeeperLab-Security,a=bookworm-security"),
        "{policy}"
    );
    assert!(policy.contains("o=PatchkeeperLab,a=bookworm,"), "{policy}");
    let held = lab.run_ok("deb-1", "apt-mark showhold");
    assert_eq!(held.trim(), "pk-held");

    let security = lab.run_ok("rpm-1", "dnf -q updateinfo list --security");
    assert!(security.contains("libpk-1.2-1"), "{security}");
    assert!(security.contains("pk-kernel-1.1-1"), "{security}");
    assert!(
        !security.contains("pk-app"),
        "pk-app 2.0 is not a security update:\n{security}"
    );
    let all = lab.run("rpm-1", "dnf -q check-update");
    assert_eq!(
        all.status.code(),
        Some(100),
        "updates pending: {}",
        stderr(&all)
    );
    assert!(
        stdout(&all).contains("pk-app.noarch") && stdout(&all).contains("2.0-1"),
        "{}",
        stdout(&all)
    );
    assert!(
        !stdout(&all).contains("pk-held"),
        "pk-held is version-locked:\n{}",
        stdout(&all)
    );

    // --- Exact-version install, and an upgrade that pulls its dependency. ----------------
    lab.run_ok("deb-2", "apt-get install -y -q libpk=1.1-1");
    assert_eq!(deb_version(&lab, "deb-2", "libpk"), "1.1-1 ii");
    lab.run_ok("deb-2", "apt-get install -y -q pk-app=2.0-1");
    assert_eq!(deb_version(&lab, "deb-2", "pk-app"), "2.0-1 ii");
    assert_eq!(deb_version(&lab, "deb-2", "libpk"), "1.2-1 ii");
    assert_eq!(
        lab.run_ok("deb-2", "pk-app").trim(),
        "pk-app 2.0-1 with libpk 1.2-1"
    );

    lab.run_ok("rpm-2", "dnf -y -q install libpk-1.1-1");
    assert_eq!(rpm_version(&lab, "rpm-2", "libpk"), "1.1-1");
    lab.run_ok("rpm-2", "dnf -y -q install pk-app-2.0-1");
    assert_eq!(rpm_version(&lab, "rpm-2", "pk-app"), "2.0-1");
    assert_eq!(rpm_version(&lab, "rpm-2", "libpk"), "1.2-1");

    // --- A failing post-install script. --------------------------------------------------
    let broken = lab.run("deb-2", "apt-get install -y -q pk-broken=1.1-1");
    assert_eq!(broken.status.code(), Some(100));
    let output = stdout(&broken) + &stderr(&broken);
    assert!(
        output.contains("post-installation script subprocess returned error exit status 1"),
        "{output}"
    );
    assert_eq!(
        deb_version(&lab, "deb-2", "pk-broken"),
        "1.1-1 iF",
        "left half-configured"
    );

    let broken = lab.run("rpm-2", "dnf -y -q install pk-broken-1.1-1");
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains("Error in PREIN scriptlet"),
        "{}",
        stderr(&broken)
    );
    assert_eq!(
        rpm_version(&lab, "rpm-2", "pk-broken"),
        "1.0-1",
        "rpm refused the package"
    );

    // --- Downgrade back. -------------------------------------------------------------------
    lab.run_ok(
        "deb-2",
        "apt-get install -y -q --allow-downgrades pk-broken=1.0-1 pk-app=1.0-1 libpk=1.0-1",
    );
    assert_eq!(deb_version(&lab, "deb-2", "pk-broken"), "1.0-1 ii");
    assert_eq!(deb_version(&lab, "deb-2", "pk-app"), "1.0-1 ii");
    assert_eq!(deb_version(&lab, "deb-2", "libpk"), "1.0-1 ii");
    lab.run_ok("deb-2", "dpkg --verify libpk pk-app pk-broken");

    lab.run_ok("rpm-2", "dnf -y -q downgrade pk-app-1.0-1 libpk-1.0-1");
    assert_eq!(rpm_version(&lab, "rpm-2", "pk-app"), "1.0-1");
    assert_eq!(rpm_version(&lab, "rpm-2", "libpk"), "1.0-1");
    lab.run_ok("rpm-2", "rpm -V libpk pk-app");

    // --- Reboot required, then a simulated reboot with a new boot id. -------------------
    assert!(!lab
        .run("deb-3", "test -e /run/reboot-required")
        .status
        .success());
    lab.run_ok("deb-3", "apt-get install -y -q pk-kernel=1.1-1");
    assert_eq!(
        lab.run_ok("deb-3", "cat /run/reboot-required.pkgs").trim(),
        "pk-kernel"
    );
    lab.run_ok("rpm-1", "dnf -y -q upgrade pk-kernel");
    let needs = lab.run("rpm-1", "needs-restarting -r");
    assert_eq!(needs.status.code(), Some(1), "{}", stdout(&needs));
    assert!(stdout(&needs).contains("* pk-kernel"), "{}", stdout(&needs));

    for host in ["deb-3", "rpm-1"] {
        let before = lab.boot_id(host);
        let sshd_before = std::fs::read_to_string(&lab.host(host).sshd_pid_file).unwrap();
        lab.run_ok(host, "reboot");
        // The host goes away: some connection attempt fails before it is back.
        let start = Instant::now();
        let mut went_down = false;
        while start.elapsed() < Duration::from_secs(20) {
            if !lab.run(host, "true").status.success() {
                went_down = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(went_down, "host {host} never dropped SSH after reboot");
        let after = lab.wait_for_new_boot_id(host, &before, Duration::from_secs(30));
        assert_ne!(before, after);
        let sshd_after = std::fs::read_to_string(&lab.host(host).sshd_pid_file).unwrap();
        assert_ne!(sshd_before, sshd_after, "host {host}: sshd was restarted");
    }
    assert!(!lab
        .run("deb-3", "test -e /run/reboot-required")
        .status
        .success());
    let needs = lab.run("rpm-1", "needs-restarting -r");
    assert_eq!(needs.status.code(), Some(0), "{}", stdout(&needs));

    // --- A stopped host refuses connections; started again, it is the same host. --------
    lab.stop_host("deb-3");
    let refused = lab.run("deb-3", "true");
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("Connection refused"),
        "{}",
        stderr(&refused)
    );
    lab.start_host("deb-3");
    assert_eq!(lab.run_ok("deb-3", "cat /etc/hostname").trim(), "deb-3");

    // --- A locked host. ------------------------------------------------------------------
    lab.lock_host("deb-1");
    let locked = lab.run(
        "deb-1",
        "apt-get install -y -q -o DPkg::Lock::Timeout=0 libpk=1.1-1",
    );
    assert_eq!(locked.status.code(), Some(100));
    assert!(
        stderr(&locked).contains("Could not get lock /var/lib/dpkg/lock-frontend")
            && stderr(&locked).contains("(unattended-upgr)"),
        "{}",
        stderr(&locked)
    );
    lab.unlock_host("deb-1");
    lab.run_ok(
        "deb-1",
        "apt-get install -y -q -o DPkg::Lock::Timeout=0 libpk=1.1-1",
    );

    lab.lock_host("rpm-2");
    let locked = lab.run(
        "rpm-2",
        "dnf -y -q --setopt=exit_on_lock=True install libpk-1.1-1",
    );
    assert!(!locked.status.success());
    assert!(stderr(&locked).contains("locked"), "{}", stderr(&locked));
    assert_eq!(rpm_version(&lab, "rpm-2", "libpk"), "1.0-1");
    lab.unlock_host("rpm-2");
    lab.run_ok("rpm-2", "dnf -y -q install libpk-1.1-1");

    // --- A slow host. --------------------------------------------------------------------
    lab.slow_host("deb-1", 2);
    let start = Instant::now();
    assert_eq!(lab.run_ok("deb-1", "echo hi").trim(), "hi");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "slow host answered in {:?}",
        start.elapsed()
    );
    lab.slow_host("deb-1", 0);

    // --- down stops everything. -------------------------------------------------------------
    let instance = lab.info().instance.clone();
    let pids: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| std::fs::read_to_string(&h.sshd_pid_file).unwrap())
        .chain([
            lab.info().controller_pid.to_string(),
            std::fs::read_to_string(&lab.info().repo.pid_file).unwrap(),
        ])
        .collect();
    assert!(pids.iter().all(|p| pid_alive(p)));
    let ports: Vec<u16> = lab.hosts().iter().map(|h| h.port).collect();
    let dir = lab.dir().to_path_buf();
    lab.down();
    assert!(
        pids.iter().all(|p| !pid_alive(p)),
        "lab pids still alive: {pids:?}"
    );
    assert_eq!(instance_processes(&instance), Vec::<String>::new());
    assert!(!instance.exists() && !dir.exists());
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
}

/// `hold-host` stops the next package transaction in flight, lock held, on both package
/// managers; `release-host` lets it finish; only one transaction is held per arm.
#[test]
fn held_transactions_stay_in_flight_until_released() {
    let lab = Lab::up(1, 1);
    lab.hold_host("deb-1");
    lab.hold_host("rpm-1");
    let spawn = |host: &str, command: &str| {
        lab.ssh(host)
            .arg(command)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let deb = spawn("deb-1", "apt-get install -y -q libpk=1.2-1");
    let rpm = spawn("rpm-1", "dnf install -y -q libpk-1.2-1");
    lab.wait_held("deb-1");
    lab.wait_held("rpm-1");
    // Mid-transaction: dpkg unpacked 1.2-1 and has not configured it; rpm installed 1.2-1
    // and has not erased 1.0-1. Both package managers hold their locks.
    assert_eq!(deb_version(&lab, "deb-1", "libpk"), "1.2-1 iU");
    let locked = lab.run(
        "deb-1",
        "apt-get install -y -q -o DPkg::Lock::Timeout=0 pk-app=2.0-1",
    );
    assert_eq!(locked.status.code(), Some(100), "{}", stderr(&locked));
    assert!(stderr(&locked).contains("Could not get lock /var/lib/dpkg/lock-frontend"));
    assert_eq!(
        lab.run_ok("rpm-1", "rpm -q libpk").trim(),
        "libpk-1.0-1.x86_64\nlibpk-1.2-1.x86_64"
    );
    let locked = lab.run("rpm-1", "rpm -e --nodeps pk-held");
    assert!(
        stderr(&locked).contains("can't create transaction lock"),
        "{}",
        stderr(&locked)
    );
    lab.release_host("deb-1");
    lab.release_host("rpm-1");
    for child in [deb, rpm] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(deb_version(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(rpm_version(&lab, "rpm-1", "libpk"), "1.2-1");
    // The arm was taken: the next transaction runs through.
    lab.run_ok(
        "deb-1",
        "apt-get install -y -q --allow-downgrades libpk=1.0-1",
    );
    lab.run_ok("rpm-1", "dnf downgrade -y -q libpk-1.0-1");
    // Armed and released before any transaction got there: disarmed.
    lab.hold_host("deb-1");
    lab.release_host("deb-1");
    lab.run_ok("deb-1", "apt-get install -y -q libpk=1.1-1");
}

/// `fill-disk`: the host's /var nearly full (its own small file system), package databases
/// intact; `unfill-disk` brings the host's own /var back, and `down` unmounts a filled one.
#[test]
fn fill_disk_makes_var_nearly_full_until_unfilled() {
    let lab = Lab::up(1, 1);
    let instance = lab.info().instance.clone();
    let free_mib = |host: &str| -> u64 {
        let df = lab.run_ok(host, "df -Pk /var");
        let kib: u64 = df
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("df output: {df}"));
        kib / 1024
    };
    for host in ["deb-1", "rpm-1"] {
        lab.fill_disk(host, 64);
        let free = free_mib(host);
        assert!((16..64).contains(&free), "{host}: {free} MiB free");
        lab.run_ok(host, "touch /var/tmp/written-while-full");
    }
    assert_eq!(common::lab::deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    assert_eq!(common::lab::rpm(&lab, "rpm-1", "libpk"), "1.0-1");
    lab.unfill_disk("deb-1");
    assert!(free_mib("deb-1") > 500, "the machine's disk again");
    lab.run_ok("deb-1", "test ! -e /var/tmp/written-while-full");
    assert_eq!(common::lab::deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    // rpm-1 is still filled: down unmounts its /var before its overlay.
    lab.down();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&instance.display().to_string()),
        "mounts left: {mounts}"
    );
}

/// A lock holder that dies with its host (stop-host) leaves nothing behind that dnf takes
/// for a live owner of its lock: dnf on the host started again transacts at once (it used to
/// wait forever for the dead holder's pid, whose entry stayed in the host's /proc).
#[test]
fn a_lock_holder_stopped_with_its_host_leaves_no_lock_behind() {
    let lab = Lab::up(0, 1);
    lab.lock_host("rpm-1");
    lab.stop_host("rpm-1");
    lab.start_host("rpm-1");
    lab.unlock_host("rpm-1");
    // `timeout` bounds the regression (dnf waits for the pid it believes alive): exit 124.
    let out = lab.run(
        "rpm-1",
        "timeout 120 dnf -y -q upgrade libpk-1.1-1 >/dev/null; echo \"exit $?\"",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "exit 0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::lab::rpm(&lab, "rpm-1", "libpk"), "1.1-1");
}

/// `down` also ends sessions, lock holders and anything started inside the hosts.
#[test]
fn down_leaves_no_lab_process_running() {
    let lab = Lab::up(1, 1);
    let instance = lab.info().instance.clone();
    lab.lock_host("deb-1");
    lab.lock_host("rpm-1");
    // A detached process inside a host, as a package's daemon would be.
    lab.run_ok("deb-1", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &");
    let mut session = lab.ssh("rpm-1").arg("sleep 1000").spawn().unwrap();
    // Wait until the session's command runs inside the host (two `sleep 1000` then).
    let start = Instant::now();
    while instance_processes(&instance)
        .iter()
        .filter(|p| p.ends_with(": sleep 1000 "))
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            instance_processes(&instance)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        instance_processes(&instance).len() >= 6,
        "{:?}",
        instance_processes(&instance)
    );
    let listeners: Vec<u32> = lab
        .hosts()
        .iter()
        .map(|h| {
            std::fs::read_to_string(&h.sshd_pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    let sshd_tree = process_tree(&listeners);
    assert!(
        sshd_tree.len() > listeners.len(),
        "the session's sshd processes: {sshd_tree:?}"
    );
    lab.down();
    assert_eq!(instance_processes(&instance), Vec::<String>::new());
    let survivors: Vec<u32> = sshd_tree
        .into_iter()
        .filter(|p| pid_alive(&p.to_string()))
        .collect();
    assert!(
        survivors.is_empty(),
        "sshd processes survived down: {survivors:?}"
    );
    let status = session.wait().unwrap();
    assert!(!status.success(), "the session was cut by down");
}

/// A test process that dies without `down` leaves nothing behind: the controller notices its
/// owner is gone and tears the instance down.
#[test]
fn instance_of_a_dead_owner_is_torn_down() {
    let mut owner = Command::new("sleep").arg("1000").spawn().unwrap();
    let dir = std::env::temp_dir().join(format!("pk-lab-owner-{}", std::process::id()));
    let out = Command::new(lab_script())
        .args([
            "up",
            "--hosts",
            "1",
            "--rpm",
            "0",
            "--owner-pid",
            &owner.id().to_string(),
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let instance = std::fs::read_to_string(dir.join(".lab/instance")).unwrap();
    let instance = Path::new(instance.trim()).to_path_buf();
    assert!(!instance_processes(&instance).is_empty());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let start = Instant::now();
    while instance.exists() || dir.exists() || !instance_processes(&instance).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "instance not torn down after its owner died"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(instance_processes(&instance), Vec::<String>::new());
}
