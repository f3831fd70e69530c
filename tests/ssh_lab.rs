//! SSH as real fleets use it, against the real lab: a host reachable only through a bastion
//! (`scripts/lab isolate-host`: its sshd in a network namespace, a direct connection
//! refused) is observed, planned and patched via `ProxyJump` from an ssh_config file in the
//! fleet repo, also through two jump hosts; host certificates against `@cert-authority`
//! and user certificates; and every connection failure a lab can cause really, in words.
//! Needs root, like every lab-backed test.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cli::{run, text};
use common::lab::{write, Lab};
use serde_json::Value;

/// The lab's Settings with `ssh.configFile` (and more `ssh:` lines).
fn settings(lab: &Lab, extra: &str) {
    write(
        lab,
        "patchkeeper.yaml",
        &format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: lab\nspec:\n  ssh:\n    user: root\n    identityFile: .lab/id_ed25519\n    knownHosts: .lab/known_hosts\n    configFile: ssh/config\n{extra}"
        ),
    );
}

/// An inventory of the lab's Debian hosts: `(name, direct, groups, extra ssh lines)`;
/// a host without `direct` has no address or port: the ssh_config file describes it.
fn inventory(lab: &Lab, hosts: &[(&str, bool, &str, &str)]) {
    let mut y = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata:\n  name: lab\nspec:\n  groups:\n    - name: debian\n    - name: rpm\n    - name: canary\n  hosts:\n",
    );
    for (name, direct, groups, ssh) in hosts {
        y.push_str(&format!(
            "    - name: {name}\n      packageManager: apt\n      groups: [{groups}]\n"
        ));
        if *direct {
            y.push_str(&format!(
                "      address: 127.0.0.1\n      ssh:\n        port: {}\n",
                lab.host(name).port
            ));
            for line in ssh.lines() {
                y.push_str(&format!("        {line}\n"));
            }
        } else if !ssh.is_empty() {
            y.push_str("      ssh:\n");
            for line in ssh.lines() {
                y.push_str(&format!("        {line}\n"));
            }
        }
    }
    write(lab, "inventory/lab.yaml", &y);
}

fn observe_json(dir: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["observe", "--json", "--no-refresh", "--no-report", "--repo"];
    let d = dir.to_str().expect("utf-8 path");
    args.push(d);
    args.extend_from_slice(extra);
    let out = run(dir, &args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("observe printed no JSON ({e}):\n{}", text(&out)));
    (out, json)
}

/// `observe` as people read it: the STATUS column of `host`.
fn status(dir: &Path, host: &str) -> String {
    let d = dir.to_str().expect("utf-8 path");
    let out = run(
        dir,
        &[
            "observe",
            "--no-refresh",
            "--no-report",
            "--repo",
            d,
            "--hosts",
            host,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no line for {host}:\n{}", text(&out)));
    let at = line
        .find("unreachable: ")
        .or_else(|| line.find("error: "))
        .or_else(|| line.rfind(" ok").map(|i| i + 1))
        .unwrap_or_else(|| panic!("no status in `{line}`"));
    line[at..].to_owned()
}

fn host<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("host {name} missing from {fleet:#}"))
}

fn installed(h: &Value, name: &str) -> String {
    h["installed"]
        .as_array()
        .expect("installed")
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["version"].as_str().expect("version").to_owned())
        .unwrap_or_default()
}

/// Runs a command on a host the way an operator could, whatever its isolation
/// (`scripts/lab ssh`, which enters the namespace of an isolated host).
fn on(lab: &Lab, host: &str, command: &str) -> String {
    lab.lab(&["ssh", host, command])
}

/// `SHA256:...` of a host's real host key.
fn host_fingerprint(lab: &Lab, name: &str) -> String {
    let key = lab
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
        .to_owned()
}

fn keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_host_behind_a_bastion_is_observed_planned_and_patched_via_proxy_jump() {
    let lab = Lab::up(3, 0);
    lab.lab(&["isolate-host", "deb-3", "--via", "deb-2"]);
    let (p1, p2, p3) = (
        lab.host("deb-1").port,
        lab.host("deb-2").port,
        lab.host("deb-3").port,
    );
    // Really isolated: a direct connection to deb-3's port is refused here.
    let direct = std::net::TcpStream::connect(("127.0.0.1", p3)).map(|_| ());
    assert_eq!(
        direct.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // The bastion is patched first (its own stage), the host behind it after.
    inventory(
        &lab,
        &[
            ("deb-1", true, "debian", ""),
            ("deb-2", true, "debian, canary", ""),
            ("deb-3", false, "debian", ""),
        ],
    );
    write(
        &lab,
        "ssh/config",
        &format!(
            "# How an operator's ssh_config describes the lab: deb-3 only through the bastion.\nHost lab-bastion\n  HostName 127.0.0.1\n  Port {p2}\nHost deb-3\n  HostName 127.0.0.1\n  Port {p3}\n  ProxyJump lab-bastion\n"
        ),
    );
    settings(&lab, "");
    let dir = lab.dir();
    let d = dir.to_str().expect("utf-8");
    let valid = run(dir, &["validate", "--repo", d]);
    assert!(valid.status.success(), "{}", text(&valid));

    let (out, fleet) = observe_json(dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deb3 = host(&fleet, "deb-3");
    assert_eq!(deb3["status"]["state"], "reachable", "{deb3:#}");
    assert_eq!(installed(deb3, "libpk"), "1.0-1");

    // plan: the dependency dry run went through the bastion too.
    let planned = run(dir, &["plan", "--json", "--repo", d]);
    assert!(planned.status.success(), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).expect("plan json");
    let planned3 = plan["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == "deb-3")
        .expect("deb-3 planned");
    assert_eq!(planned3["status"], "update", "{planned3:#}");
    assert_eq!(planned3["dependencies"], "simulated", "{planned3:#}");
    assert!(
        planned3["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["package"] == "libpk" && c["to"] == "1.2-1"),
        "{planned3:#}"
    );

    // apply: installed, verified and rebooted (a new boot id) through the bastion.
    let boot_before = on(&lab, "deb-3", "cat /proc/sys/kernel/random/boot_id");
    let applied = run(
        dir,
        &["apply", "--auto-approve", "--no-report", "--repo", d],
    );
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    let stdout = String::from_utf8_lossy(&applied.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("deb-3 "))
        .unwrap_or_else(|| panic!("{}", text(&applied)));
    assert!(
        line.contains("compliant") && line.contains("rebooted"),
        "{line}"
    );
    assert_eq!(
        on(
            &lab,
            "deb-3",
            "dpkg-query -W -f='${Version}' libpk pk-kernel"
        ),
        "1.2-11.1-1"
    );
    assert_ne!(
        on(&lab, "deb-3", "cat /proc/sys/kernel/random/boot_id"),
        boot_before
    );

    // Two jump hosts: deb-1 (here) forwards to the bastion's port, the bastion to deb-3.
    lab.lab(&["sshd-config", "deb-1", "AllowTcpForwarding yes"]);
    write(
        &lab,
        "ssh/config",
        &format!(
            "Host lab-hop\n  HostName 127.0.0.1\n  Port {p1}\nHost lab-bastion\n  HostName 127.0.0.1\n  Port {p2}\nHost deb-3\n  HostName 127.0.0.1\n  Port {p3}\n  ProxyJump lab-hop,lab-bastion\n"
        ),
    );
    let log1 = lab.host("deb-1").sshd_log.clone();
    let accepted = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    };
    let before = accepted(&log1);
    let (out, fleet) = observe_json(dir, &["--hosts", "deb-3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(host(&fleet, "deb-3")["status"]["state"], "reachable");
    assert_eq!(installed(host(&fleet, "deb-3"), "libpk"), "1.2-1");
    // deb-1 took the first hop's login (deb-3 alone was observed).
    assert_eq!(accepted(&log1), before + 1);
}

#[test]
fn every_connection_failure_is_said_in_words() {
    let lab = Lab::up(2, 0);
    let (p1, p2) = (lab.host("deb-1").port, lab.host("deb-2").port);
    let dir = lab.dir();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    inventory(
        &lab,
        &[
            ("deb-1", true, "debian, canary", ""),
            ("deb-2", false, "debian", ""),
        ],
    );
    settings(&lab, "");
    let config = |deb2: &str| {
        write(
            &lab,
            "ssh/config",
            &format!("Host jump\n  HostName 127.0.0.1\n  Port {p1}\nHost deb-2\n{deb2}"),
        );
    };

    // The jump host's sshd does not allow forwarding (the lab's default).
    config(&format!(
        "  HostName 127.0.0.1\n  Port {p2}\n  ProxyJump jump\n"
    ));
    assert_eq!(
        status(dir, "deb-2"),
        format!("unreachable: jump host `jump` (127.0.0.1:{p1}): could not open a connection to 127.0.0.1:{p2}: administratively prohibited (the jump host's sshd does not allow forwarding there: AllowTcpForwarding, PermitOpen)")
    );
    // Forwarding allowed, but nothing listens where the jump host should connect.
    lab.lab(&["sshd-config", "deb-1", "AllowTcpForwarding yes"]);
    config(&format!(
        "  HostName 127.0.0.1\n  Port {closed}\n  ProxyJump jump\n"
    ));
    assert_eq!(
        status(dir, "deb-2"),
        format!("unreachable: jump host `jump` (127.0.0.1:{p1}): could not open a connection to 127.0.0.1:{closed}: connect failed (refused, no route or name not resolved, as seen from the jump host)")
    );
    // Through the jump host for real.
    config(&format!(
        "  HostName 127.0.0.1\n  Port {p2}\n  ProxyJump jump\n"
    ));
    assert_eq!(status(dir, "deb-2"), "ok");

    // Host keys are checked at every hop: the jump host's record names another key.
    let known = dir.join(".lab/known_hosts");
    let original = std::fs::read_to_string(&known).expect("known_hosts");
    let line_of = |port: u16| {
        original
            .lines()
            .position(|l| l.starts_with(&format!("[127.0.0.1]:{port} ")))
            .expect("recorded")
    };
    let (l1, l2) = (line_of(p1), line_of(p2));
    let lines: Vec<&str> = original.lines().collect();
    let key_of = |i: usize| lines[i].split_once(' ').expect("record").1.to_owned();
    let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    swapped[l1] = format!("[127.0.0.1]:{p1} {}", key_of(l2));
    std::fs::write(&known, swapped.join("\n") + "\n").expect("write known_hosts");
    let (f1, f2) = (
        host_fingerprint(&lab, "deb-1"),
        host_fingerprint(&lab, "deb-2"),
    );
    assert_eq!(
        status(dir, "deb-2"),
        format!(
            "unreachable: jump host `jump` (127.0.0.1:{p1}): host key has changed: the host offers ssh-ed25519 {f1}, {}:{} records {f2}",
            known.display(),
            l1 + 1
        )
    );
    // The same for the host itself, connected directly, in the observed state too.
    let (_, fleet) = observe_json(dir, &["--hosts", "deb-1"]);
    let reason = &host(&fleet, "deb-1")["status"]["reason"];
    assert_eq!(reason["kind"], "host-key-mismatch", "{reason:#}");
    assert_eq!(reason["fingerprint"], f1.as_str());
    assert_eq!(reason["recordedFingerprint"], f2.as_str());
    assert_eq!(
        status(dir, "deb-1"),
        format!(
            "unreachable: host key has changed: the host offers ssh-ed25519 {f1}, {}:{} records {f2}",
            known.display(),
            l1 + 1
        )
    );
    std::fs::write(&known, &original).expect("restore known_hosts");

    // A key the hosts do not accept: what was tried, and what the server takes.
    let other = dir.join(".lab/other_ed25519");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        other.to_str().expect("utf-8"),
    ]);
    inventory(
        &lab,
        &[
            (
                "deb-1",
                true,
                "debian, canary",
                "identityFile: .lab/other_ed25519",
            ),
            ("deb-2", false, "debian", ""),
        ],
    );
    assert_eq!(
        status(dir, "deb-1"),
        format!(
            "unreachable: authentication failed for user root (tried key {}; the server accepts publickey)",
            other.display()
        )
    );
    // At the jump host (from its own Host block): said as the jump host's failure.
    config(&format!(
        "  HostName 127.0.0.1\n  Port {p2}\n  ProxyJump jump\nHost jump\n  IdentityFile {}\n",
        other.display()
    ));
    assert_eq!(
        status(dir, "deb-2"),
        format!(
            "unreachable: jump host `jump` (127.0.0.1:{p1}): authentication failed for user root (tried key {}; the server accepts publickey)",
            other.display()
        )
    );
    // The jump host is down: refused, in its name.
    config(&format!(
        "  HostName 127.0.0.1\n  Port {p2}\n  ProxyJump jump\n"
    ));
    lab.stop_host("deb-1");
    assert_eq!(
        status(dir, "deb-2"),
        format!(
            "unreachable: jump host `jump` (127.0.0.1:{p1}): connection refused by 127.0.0.1:{p1}"
        )
    );
    // ProxyCommand would run a command here: refused before anything is contacted.
    config("  ProxyCommand nc %h %p\n");
    let d = dir.to_str().expect("utf-8");
    let out = run(dir, &["observe", "--no-report", "--repo", d]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "error: host deb-2: {}:5: ProxyCommand is not supported by patchkeeper; use ProxyJump",
            dir.join("ssh/config").display()
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn host_and_user_certificates() {
    let lab = Lab::up(2, 0);
    let dir = lab.dir();
    let state = |name: &str| {
        lab.host(name)
            .sshd_pid_file
            .parent()
            .expect("state dir")
            .to_path_buf()
    };
    let ca = dir.join(".lab/host_ca");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        ca.to_str().expect("utf-8"),
    ]);
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).expect("ca.pub");
    // A known_hosts that trusts only the authority: no plain key of deb-1 in it.
    write(
        &lab,
        ".lab/ca_known_hosts",
        &format!("@cert-authority [127.0.0.1]:* {ca_pub}"),
    );
    let host_key = state("deb-1").join("ssh_host_ed25519_key.pub");
    let sign_host = |principal: &str, validity: &str| {
        keygen(&[
            "-q",
            "-s",
            ca.to_str().expect("utf-8"),
            "-I",
            "deb-1",
            "-h",
            "-n",
            principal,
            "-V",
            validity,
            host_key.to_str().expect("utf-8"),
        ]);
    };
    let cert = state("deb-1").join("ssh_host_ed25519_key-cert.pub");
    sign_host("127.0.0.1", "-5m:+1h");
    lab.lab(&[
        "sshd-config",
        "deb-1",
        &format!("HostCertificate {}", cert.display()),
    ]);
    inventory(
        &lab,
        &[
            (
                "deb-1",
                true,
                "debian, canary",
                "knownHosts: .lab/ca_known_hosts",
            ),
            ("deb-2", true, "debian", ""),
        ],
    );
    settings(&lab, "");
    write(&lab, "ssh/config", "");
    let (out, fleet) = observe_json(dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deb1 = host(&fleet, "deb-1");
    assert_eq!(
        deb1["connection"]["hostKey"], "ssh-ed25519-cert-v01@openssh.com",
        "{deb1:#}"
    );
    // A plain host (no authority for it) is checked as before, without certificates.
    assert_eq!(
        host(&fleet, "deb-2")["connection"]["hostKey"],
        "ssh-ed25519"
    );

    // Issued for another name: refused, saying for whom it is.
    sign_host("other.example", "-5m:+1h");
    lab.lab(&[
        "sshd-config",
        "deb-1",
        &format!("HostCertificate {}", cert.display()),
    ]);
    let p1 = lab.host("deb-1").port;
    assert_eq!(
        status(dir, "deb-1"),
        "unreachable: host certificate is not valid: it is issued for `other.example`, not for `127.0.0.1`"
    );
    // Expired.
    sign_host("127.0.0.1", "20200101:20200102");
    lab.lab(&[
        "sshd-config",
        "deb-1",
        &format!("HostCertificate {}", cert.display()),
    ]);
    let s = status(dir, "deb-1");
    assert!(
        s.starts_with("unreachable: host certificate is not valid: ") && s.contains("signed by"),
        "{s}"
    );
    // Signed by an authority known_hosts does not trust for this host.
    write(
        &lab,
        ".lab/ca_known_hosts",
        &format!("@cert-authority other.example {ca_pub}"),
    );
    sign_host("127.0.0.1", "-5m:+1h");
    lab.lab(&[
        "sshd-config",
        "deb-1",
        &format!("HostCertificate {}", cert.display()),
    ]);
    // No authority for the host: its certified key is checked as a plain key, unknown.
    let s = status(dir, "deb-1");
    assert!(
        s.starts_with(&format!(
            "unreachable: host key is not known: ssh-ed25519 key fingerprint is {}",
            host_fingerprint(&lab, "deb-1")
        )),
        "{s} (port {p1})"
    );

    // User certificates: a key the hosts do not list, certified by an authority deb-2 trusts.
    let user_ca = dir.join(".lab/user_ca");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        user_ca.to_str().expect("utf-8"),
    ]);
    let key = dir.join(".lab/certified_ed25519");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        key.to_str().expect("utf-8"),
    ]);
    keygen(&[
        "-q",
        "-s",
        user_ca.to_str().expect("utf-8"),
        "-I",
        "patchkeeper",
        "-n",
        "root",
        "-V",
        "-5m:+1h",
        key.with_extension("pub").to_str().expect("utf-8"),
    ]);
    lab.lab(&[
        "sshd-config",
        "deb-2",
        &format!(
            "TrustedUserCAKeys {}",
            user_ca.with_extension("pub").display()
        ),
    ]);
    inventory(
        &lab,
        &[
            ("deb-1", true, "debian, canary", ""),
            (
                "deb-2",
                true,
                "debian",
                "identityFile: .lab/certified_ed25519",
            ),
        ],
    );
    let (out, fleet) = observe_json(dir, &["--hosts", "deb-2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(host(&fleet, "deb-2")["status"]["state"], "reachable");
    // Without its certificate the key alone is refused: the certificate did the work.
    std::fs::remove_file(dir.join(".lab/certified_ed25519-cert.pub")).expect("rm cert");
    assert_eq!(
        status(dir, "deb-2"),
        format!(
            "unreachable: authentication failed for user root (tried key {}; the server accepts publickey)",
            key.display()
        )
    );
}
