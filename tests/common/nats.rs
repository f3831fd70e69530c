//! A real `nats-server` with JetStream for the cluster tests (issue 19): started on a free
//! loopback port with its own temporary store directory, stopped (and its store removed)
//! when dropped. No mock broker: the binary is the pinned one `scripts/lab deps` installs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `scripts/lab deps` installs the pinned nats-server (keep in step with
/// `NATS_SERVER_VERSION` there).
pub const PINNED: &str = "/opt/patchkeeper-nats-server-2.15.1/bin/nats-server";

/// How long the server may take to say it is ready (bounds a failure only).
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
    /// it says it is ready (its listeners are up then).
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

/// Starts nats-server in `dir` (store, log) on `port`, or a random one (`-1`); returns the
/// child and the client port once the server says it is ready. Its log goes to stderr, which
/// a thread copies to `dir/server.log` line by line and reads for the client port and
/// "Server is ready": the wait blocks on the server's own words, not a timer.
fn spawn(bin: &Path, dir: &Path, port: Option<u16>) -> (Child, u16) {
    use std::io::{BufRead, Write};
    let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    let mut child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
        .arg(dir.join("store"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stderr = child.stderr.take().expect("piped");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("server.log");
    let (ready, started) = std::sync::mpsc::channel::<u16>();
    // Drains the log for the server's whole life, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut client_port = None;
        let mut ready = Some(ready);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                client_port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
            if line.contains("Server is ready") {
                if let (Some(tx), Some(p)) = (ready.take(), client_port) {
                    let _ = tx.send(p);
                }
            }
        }
    });
    match started.recv_timeout(START) {
        Ok(port) => (child, port),
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("nats-server did not become ready ({e}; {status}):\n{log}");
        }
    }
}
