//! Connection failures in the user's words, each caused for real: names that do not
//! resolve (the example fleet's reserved `.example` names, in a network namespace so no
//! query leaves the machine), no route (a namespace without one), refused, a TCP connect
//! nobody answers (a listener whose backlog is full), a server that never speaks SSH, and
//! one that hangs up. Never "ssh: Disconnected". Needs root (`unshare`), as CI has.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use assert_cmd::cargo::cargo_bin;

fn assert_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "these tests need root (unshare, mount): run them as root"
    );
}

/// The STATUS column of every host `observe` printed, run through `wrap` (a namespace).
fn statuses(wrap: &[&str], repo: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let bin = cargo_bin("patchkeeper");
    let mut cmd = Command::new(wrap[0]);
    cmd.args(&wrap[1..])
        .arg(&bin)
        .args(["observe", "--no-report", "--no-refresh", "--repo"])
        .arg(repo)
        .args(extra)
        .env("NO_COLOR", "1")
        .env("PATCHKEEPER_SSH_CONFIG", "none")
        .stdin(Stdio::null());
    let out = cmd.output().expect("patchkeeper runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "observe: every host unreachable is exit 3\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let name = l.split_whitespace().next().expect("name").to_owned();
            let at = l.find("unreachable: ").expect("a status");
            (name, l[at..].to_owned())
        })
        .collect()
}

fn repo_with(hosts: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("fleet.yaml"),
        format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {{name: s}}\nspec:\n  ssh:\n    connectTimeout: 2s\n    knownHosts: known_hosts\n---\napiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {{name: i}}\nspec:\n  hosts:\n{hosts}"
        ),
    )
    .expect("write fleet");
    std::fs::write(dir.path().join("known_hosts"), "").expect("known_hosts");
    dir
}

#[test]
fn the_example_fleet_contacts_nothing_and_says_name_not_resolved() {
    assert_root();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    // No network at all (a fresh namespace): the resolver cannot be asked.
    let hosts = statuses(&["unshare", "--net"], &example, &[]);
    assert_eq!(hosts.len(), 12);
    for (name, status) in &hosts {
        assert_eq!(
            status,
            &format!(
                "unreachable: name `{name}.prod.example` not resolved: Temporary failure in name resolution"
            )
        );
    }
    // A resolver that answers from /etc/hosts only: the name does not exist.
    let nsswitch = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(nsswitch.path(), "hosts: files\n").expect("nsswitch");
    let script = format!(
        "mount --bind {} /etc/nsswitch.conf && exec \"$@\"",
        nsswitch.path().display()
    );
    let hosts = statuses(
        &["unshare", "--net", "--mount", "sh", "-c", &script, "sh"],
        &example,
        &["--hosts", "web-1"],
    );
    assert_eq!(
        hosts,
        [(
            "web-1".to_owned(),
            "unreachable: name `web-1.prod.example` not resolved: Name or service not known"
                .to_owned()
        )]
    );
}

#[test]
fn no_route_refused_and_timeouts_in_words() {
    assert_root();
    // No route: a namespace with no network.
    let repo = repo_with("    - {name: far, address: 10.0.3.30}\n");
    assert_eq!(
        statuses(&["unshare", "--net"], repo.path(), &[]),
        [(
            "far".to_owned(),
            "unreachable: no route to 10.0.3.30:22: Network is unreachable".to_owned()
        )]
    );

    let backlog = Listener::start("backlog");
    let silent = Listener::start("silent");
    let hangup = Listener::start("close");
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let repo = repo_with(&format!(
        "    - {{name: backlog, address: 127.0.0.1, ssh: {{port: {}}}}}\n    - {{name: hangup, address: 127.0.0.1, ssh: {{port: {}}}}}\n    - {{name: refused, address: 127.0.0.1, ssh: {{port: {refused}}}}}\n    - {{name: silent, address: 127.0.0.1, ssh: {{port: {}}}}}\n",
        backlog.port, hangup.port, silent.port
    ));
    let got = statuses(&["env"], repo.path(), &[]);
    let expect = [
        ("backlog", format!("unreachable: connect timed out after 2s (127.0.0.1:{}: no answer to the TCP connect; the host is down or a firewall drops the packets)", backlog.port)),
        ("hangup", format!("unreachable: 127.0.0.1:{} closed the connection during the SSH handshake (not an SSH server, or one refusing connections: sshd's MaxStartups, a firewall or TCP wrapper)", hangup.port)),
        ("refused", format!("unreachable: connection refused by 127.0.0.1:{refused}")),
        ("silent", format!("unreachable: connect timed out after 2s (127.0.0.1:{}: connected, but the SSH handshake did not complete; the server sent nothing or stalled)", silent.port)),
    ];
    assert_eq!(
        got,
        expect
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<Vec<_>>()
    );
    for (_, status) in &got {
        assert!(!status.contains("Disconnected"), "{status}");
    }
}

/// A TCP listener with a real misbehaviour: `backlog` (listen queue full: SYNs dropped, the
/// TCP connect is never answered), `silent` (accepts, never speaks), `close` (accepts and
/// hangs up at once).
struct Listener {
    child: Child,
    port: u16,
}

impl Listener {
    fn start(mode: &str) -> Listener {
        const SCRIPT: &str = r#"
import select, socket, sys, time
mode = sys.argv[1]
s = socket.socket(); s.bind(("127.0.0.1", 0))
keep = []
if mode == "backlog":
    s.listen(0)
    # Fill the accept queue; further SYNs are dropped while nobody accepts.
    for _ in range(3):
        c = socket.socket(); c.setblocking(False)
        try: c.connect(s.getsockname())
        except BlockingIOError: pass
        keep.append(c)
    # The queue is full once one queued connection is established: wait for that state
    # (a connected socket becomes writable) instead of for a guessed time.
    _, ready, _ = select.select([], keep, [], 60)
    assert any(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for c in ready)
else:
    s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    if mode == "backlog":
        time.sleep(3600)
    c, _ = s.accept()
    if mode == "close":
        c.close()
    else:
        keep.append(c)
"#;
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT, mode])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        Listener {
            port: line.trim().parse().expect("a port"),
            child,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
