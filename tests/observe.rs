//! End-to-end: `patchkeeper observe` against a real lab (OpenSSH sshd hosts on loopback with
//! real dpkg/apt and rpm/dnf databases). Needs root, like every lab-backed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use common::lab::Lab;
use serde_json::Value;

fn port(lab: &Lab, name: &str) -> u16 {
    lab.host(name).port
}

/// The `SHA256:...` fingerprint of a host's real host key, as `ssh-keygen -l` prints it.
fn host_key_fingerprint(lab: &Lab, name: &str) -> String {
    let key: PathBuf = lab
        .host(name)
        .sshd_pid_file
        .with_file_name("ssh_host_ed25519_key.pub");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// Adds a line under a host's `ssh:` block in the lab inventory.
fn host_ssh_setting(lab: &Lab, name: &str, line: &str) {
    let path = lab.dir().join("inventory/lab.yaml");
    let text = std::fs::read_to_string(&path).expect("inventory");
    let anchor = format!("        port: {}\n", port(lab, name));
    assert!(text.contains(&anchor), "inventory has no `{anchor}`");
    std::fs::write(
        &path,
        text.replace(&anchor, &format!("{anchor}        {line}\n")),
    )
    .expect("write inventory");
}

/// Runs `patchkeeper observe --json` and returns (exit code, parsed JSON).
fn observe(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["observe", "--json", "--no-refresh", "--repo"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("patchkeeper runs");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "observe printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), json)
}

fn host<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("host {name} missing from {fleet:#}"))
}

fn installed<'a>(h: &'a Value, name: &str) -> &'a Value {
    h["installed"]
        .as_array()
        .expect("installed")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not installed on {}", h["name"]))
}

fn update<'a>(h: &'a Value, name: &str) -> Option<&'a Value> {
    h["updates"]
        .as_array()
        .expect("updates")
        .iter()
        .find(|u| u["name"] == name)
}

fn reason(h: &Value) -> &Value {
    &h["status"]["reason"]
}

/// The lab's synthetic packages (scripts/lab.md): every host starts with libpk, pk-app,
/// pk-broken, pk-kernel and pk-held at 1.0-1, pk-held on hold; the repository offers libpk
/// 1.2-1 and pk-kernel 1.1-1 as security updates, pk-app 2.0-1 and pk-broken 1.1-1 as
/// regular ones.
fn assert_lab_packages(h: &Value, native_arch: &str, all_arch: &str, status: &str) {
    assert_eq!(h["status"]["state"], "reachable", "{h:#}");
    for (name, arch) in [
        ("libpk", native_arch),
        ("pk-app", all_arch),
        ("pk-broken", all_arch),
        ("pk-kernel", all_arch),
        ("pk-held", all_arch),
    ] {
        let p = installed(h, name);
        assert_eq!(p["version"], "1.0-1", "{name}");
        assert_eq!(p["arch"], arch, "{name}");
        if name != "pk-held" {
            assert_eq!(p["status"], status, "{name}");
        }
    }
    assert_eq!(h["held"], serde_json::json!(["pk-held"]));
    let expected = [
        ("libpk", "1.2-1", true),
        ("pk-app", "2.0-1", false),
        ("pk-broken", "1.1-1", false),
        ("pk-kernel", "1.1-1", true),
    ];
    assert_eq!(
        h["updates"].as_array().expect("updates").len(),
        expected.len(),
        "{:#}",
        h["updates"]
    );
    for (name, candidate, security) in expected {
        let u = update(h, name).unwrap_or_else(|| panic!("no update for {name}"));
        assert_eq!(u["installedVersion"], "1.0-1", "{name}");
        assert_eq!(u["candidateVersion"], candidate, "{name}");
        assert_eq!(u["security"], security, "{name}");
    }
    assert!(
        update(h, "pk-held").is_none(),
        "a held package is not a pending update"
    );
    assert_eq!(h["rebootRequired"]["required"], false);
    assert!(h["bootId"].as_str().is_some_and(|b| b.len() == 36));
    assert_eq!(h["connection"]["kex"], "curve25519-sha256");
}

#[test]
fn observes_exact_packages_and_reports_each_fault_without_stopping_the_others() {
    let lab = Lab::up(4, 2);

    // Everything healthy: exact packages on both ecosystems, exit 0.
    let (code, fleet) = observe(lab.dir(), &[]);
    assert_eq!(code, 0, "{fleet:#}");
    assert_eq!(fleet["hosts"].as_array().expect("hosts").len(), 6);
    for name in ["deb-1", "deb-2", "deb-3", "deb-4"] {
        let h = host(&fleet, name);
        assert_lab_packages(h, "amd64", "all", "ii");
        assert_eq!(h["packageManager"], "apt");
        assert_eq!(h["os"]["id"], "debian");
        assert!(update(h, "libpk").expect("libpk")["origin"]
            .as_str()
            .expect("origin")
            .contains("Security"));
    }
    for name in ["rpm-1", "rpm-2"] {
        let h = host(&fleet, name);
        assert_lab_packages(h, "x86_64", "noarch", "installed");
        assert_eq!(h["packageManager"], "dnf");
        assert!(update(h, "libpk").expect("libpk")["advisories"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
    }

    // One fault per host; deb-1 stays healthy.
    lab.stop_host("deb-2");
    lab.lock_host("deb-3");
    lab.lock_host("rpm-1");
    let known_hosts = lab.dir().join(".lab/known_hosts");
    let original_known_hosts = std::fs::read_to_string(&known_hosts).expect("known_hosts");
    // Inside the fleet repo: a key file the repo names elsewhere needs `--allow-path`.
    let other_key = lab.dir().join(".lab/other_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).expect("pub key");
    let other_blob: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let deb4 = format!("[127.0.0.1]:{}", port(&lab, "deb-4"));
    let tampered: String = original_known_hosts
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{deb4} ")) {
                format!("{deb4} {} {}\n", other_blob[0], other_blob[1])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&known_hosts, tampered).expect("write known_hosts");
    // rpm-2 logs in with a key the hosts do not authorize.
    host_ssh_setting(
        &lab,
        "rpm-2",
        &format!("identityFile: {}", other_key.display()),
    );
    host_ssh_setting(&lab, "rpm-2", "useAgent: false");

    let (code, fleet) = observe(lab.dir(), &[]);
    assert_eq!(code, 3, "{fleet:#}");
    assert_lab_packages(host(&fleet, "deb-1"), "amd64", "all", "ii");

    let deb2 = host(&fleet, "deb-2");
    assert_eq!(deb2["status"]["state"], "unreachable");
    assert_eq!(reason(deb2)["kind"], "refused");
    assert_eq!(
        reason(deb2)["address"],
        format!("127.0.0.1:{}", port(&lab, "deb-2"))
    );

    let deb3 = host(&fleet, "deb-3");
    assert_lab_packages(deb3, "amd64", "all", "ii");
    assert_eq!(
        deb3["packageManagerLocked"]["path"],
        "/var/lib/dpkg/lock-frontend"
    );
    assert_eq!(deb3["packageManagerLocked"]["process"], "unattended-upgr");
    assert!(deb3["packageManagerLocked"]["pid"].as_u64().is_some());
    let rpm1 = host(&fleet, "rpm-1");
    assert_eq!(
        rpm1["packageManagerLocked"]["path"],
        "/var/lib/rpm/.rpm.lock"
    );
    assert_eq!(rpm1["packageManagerLocked"]["process"], "dnf");

    let deb4h = host(&fleet, "deb-4");
    assert_eq!(deb4h["status"]["state"], "unreachable");
    assert_eq!(reason(deb4h)["kind"], "host-key-mismatch");
    assert_eq!(
        reason(deb4h)["fingerprint"],
        host_key_fingerprint(&lab, "deb-4")
    );
    assert_eq!(reason(deb4h)["algorithm"], "ssh-ed25519");
    assert!(deb4h["installed"].as_array().expect("installed").is_empty());

    let rpm2 = host(&fleet, "rpm-2");
    assert_eq!(rpm2["status"]["state"], "unreachable");
    assert_eq!(reason(rpm2)["kind"], "auth-failed");
    assert_eq!(reason(rpm2)["user"], "root");

    // The table names each reason too.
    let out = Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["observe", "--no-refresh", "--repo"])
        .arg(lab.dir())
        .output()
        .expect("patchkeeper runs");
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    for needle in [
        "connection refused by 127.0.0.1:",
        "dpkg locked by pid",
        "rpm locked by pid",
        "host key has changed",
        "authentication failed for user root",
        "observed 3 of 6 hosts; 3 could not be observed",
    ] {
        assert!(table.contains(needle), "`{needle}` missing from:\n{table}");
    }
}

/// Login through a real ssh-agent (`SSH_AUTH_SOCK`) when no key file is configured.
#[test]
fn logs_in_with_the_ssh_agent() {
    let lab = Lab::up(1, 0);
    let settings = lab.dir().join("patchkeeper.yaml");
    let text = std::fs::read_to_string(&settings).expect("settings");
    assert!(text.contains("    identityFile: .lab/id_ed25519\n"));
    std::fs::write(
        &settings,
        text.replace("    identityFile: .lab/id_ed25519\n", ""),
    )
    .expect("write settings");
    let home = tempfile::tempdir().expect("temp dir"); // no ~/.ssh/id_* to fall back on
    let sock = home.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    // ssh-agent -D creates its socket once it listens: wait for that (not a fixed time).
    let start = std::time::Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "ssh-agent did not create {}",
            sock.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = |with_key: bool| {
        if with_key {
            let added = Command::new("ssh-add")
                .arg(lab.dir().join(".lab/id_ed25519"))
                .env("SSH_AUTH_SOCK", &sock)
                .output()
                .expect("ssh-add");
            assert!(
                added.status.success(),
                "{}",
                String::from_utf8_lossy(&added.stderr)
            );
        }
        let out = Command::cargo_bin("patchkeeper")
            .expect("binary")
            .args(["observe", "--json", "--no-refresh", "--repo"])
            .arg(lab.dir())
            .env("SSH_AUTH_SOCK", &sock)
            .env("HOME", home.path())
            .output()
            .expect("patchkeeper runs");
        let json: Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), json)
    };
    // An empty agent: nothing to offer.
    let (code, fleet) = run(false);
    assert_eq!(code, Some(3));
    assert_eq!(reason(host(&fleet, "deb-1"))["kind"], "auth-failed");
    let (code, fleet) = run(true);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(code, Some(0), "{fleet:#}");
    assert_lab_packages(host(&fleet, "deb-1"), "amd64", "all", "ii");
}

#[test]
fn unknown_host_keys_are_refused_or_recorded_and_slow_hosts_time_out() {
    let lab = Lab::up(2, 0);
    let known_hosts = lab.dir().join(".lab/known_hosts");
    let original = std::fs::read_to_string(&known_hosts).expect("known_hosts");
    let deb1 = format!("[127.0.0.1]:{} ", port(&lab, "deb-1"));
    let without: String = original
        .lines()
        .filter(|l| !l.starts_with(&deb1))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&known_hosts, &without).expect("write known_hosts");

    // Strict (default): refused, with the offered fingerprint; the other host is observed.
    let (code, fleet) = observe(lab.dir(), &[]);
    assert_eq!(code, 3);
    let h = host(&fleet, "deb-1");
    assert_eq!(reason(h)["kind"], "host-key-unknown");
    assert_eq!(
        reason(h)["fingerprint"],
        host_key_fingerprint(&lab, "deb-1")
    );
    assert_eq!(host(&fleet, "deb-2")["status"]["state"], "reachable");
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("known_hosts"),
        without
    );

    // accept-new: recorded, observed; the recorded line is the host's real key.
    host_ssh_setting(&lab, "deb-1", "hostKeyPolicy: accept-new");
    let (code, fleet) = observe(lab.dir(), &["--hosts", "deb-1"]);
    assert_eq!(code, 0, "{fleet:#}");
    assert_eq!(fleet["hosts"].as_array().expect("hosts").len(), 1);
    let recorded = std::fs::read_to_string(&known_hosts).expect("known_hosts");
    let original_line = original
        .lines()
        .find(|l| l.starts_with(&deb1))
        .expect("deb-1 line");
    let new_line = recorded
        .lines()
        .find(|l| l.starts_with(&deb1))
        .expect("deb-1 recorded");
    assert_eq!(
        new_line.split_whitespace().take(3).collect::<Vec<_>>(),
        original_line.split_whitespace().take(3).collect::<Vec<_>>()
    );

    // A host whose commands never answer: a timeout, not a stuck run (the hang has no end,
    // so only the command deadline can end the observation).
    lab.hang_host("deb-2");
    host_ssh_setting(&lab, "deb-2", "commandTimeout: 2s");
    let (code, fleet) = observe(lab.dir(), &[]);
    assert_eq!(code, 3);
    let h = host(&fleet, "deb-2");
    assert_eq!(h["status"]["state"], "error");
    assert_eq!(reason(h)["kind"], "timeout");
    assert_eq!(reason(h)["phase"], "command");
    assert_eq!(host(&fleet, "deb-1")["status"]["state"], "reachable");
}
