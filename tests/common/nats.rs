//! A real `nats-server` with JetStream for the cluster tests (issue 19): started on a free
//! loopback port with its own temporary store directory, stopped (and its store removed)
//! when dropped. No mock broker: the binary is the pinned one `scripts/lab deps` installs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/lab deps` installs the pinned nats-server (keep in step with
/// `NATS_SERVER_VERSION` there).
pub const PINNED: &str = "/opt/patchkeeper-nats-server-2.15.1/bin/nats-server";

/// How long the server may take to write its ports file (bounds a failure only).
const START: Duration = Duration::from_secs(60);

/// A running nats-server; killed and its store removed on drop.
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// The nats-server binary: `PATCHKEEPER_NATS_SERVER`, else the pinned install.
pub fn binary() -> PathBuf {
    match std::env::var_os("PATCHKEEPER_NATS_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(PINNED),
    }
}

impl NatsServer {
    /// Starts a server with JetStream on 127.0.0.1 and a port the kernel picks; returns once
    /// it listens (it writes its ports file after its listeners are up).
    pub fn start() -> NatsServer {
        let bin = binary();
        assert!(
            bin.exists(),
            "{} is missing: run `scripts/lab deps` (it installs the pinned nats-server), or set PATCHKEEPER_NATS_SERVER",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("pk-nats-")
            .tempdir()
            .expect("temp dir");
        let (child, port) = spawn(&bin, dir.path(), None);
        NatsServer {
            child: Some(child),
            dir,
            port,
        }
    }

    /// The client URL (`nats://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and starts it again on the same port with the same store
    /// (JetStream data survives, as after a crash of the broker).
    pub fn restart(&mut self) {
        self.kill();
        let (child, port) = spawn(&binary(), self.dir.path(), Some(self.port));
        self.child = Some(child);
        self.port = port;
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's log file (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts nats-server in `dir` (store, log, ports file) on `port`, or a random one (`-1`);
/// waits for its ports file and returns the child and the client port.
fn spawn(bin: &Path, dir: &Path, port: Option<u16>) -> (Child, u16) {
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).expect("ports dir");
    let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    let mut child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
        .arg(dir.join("store"))
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .arg("-l")
        .arg(dir.join("server.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let file = ports_dir.join(format!(
        "{}_{}.ports",
        bin.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("nats-server"),
        child.id()
    ));
    let deadline = Instant::now() + START;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(port) = client_port(&text) {
                return (child, port);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("nats-server exited at start ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "nats-server wrote no ports file within {START:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client port from a ports file (`{"nats": ["nats://127.0.0.1:PORT"], ...}`).
fn client_port(text: &str) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = v.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}
