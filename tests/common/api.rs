//! The HTTP API end to end: a fleet repo with API tokens behind a bare "remote", the real
//! `patchkeeper serve --listen 127.0.0.1:0` as a child process (its address read from its
//! JSON log), and a blocking HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cli::patchkeeper;
use super::git::git;

/// A token made by `patchkeeper token new`.
#[derive(Debug, Clone)]
pub struct Token {
    /// The secret.
    pub secret: String,
    /// The Settings entry (YAML mapping as JSON).
    pub entry: serde_json::Value,
}

/// Makes a token with the real command.
pub fn token_new(name: &str, scopes: &[&str], expires: Option<&str>) -> Token {
    let mut args = vec!["token", "new", "--json", "--name", name];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    let out = patchkeeper(Path::new("."))
        .args(&args)
        .output()
        .expect("patchkeeper runs");
    assert!(out.status.success(), "{}", super::cli::text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    Token {
        secret: v["token"].as_str().expect("token").to_owned(),
        entry: v["entry"].clone(),
    }
}

/// A fleet repo (work tree) pushed to a bare remote.
pub struct Fleet {
    /// Holds everything.
    pub root: tempfile::TempDir,
    /// The work tree.
    pub work: PathBuf,
    /// The bare remote serve fetches from and pushes to.
    pub bare: PathBuf,
    /// Tokens by name.
    pub tokens: BTreeMap<String, Token>,
}

/// How to make a fleet.
pub struct FleetSpec<'a> {
    /// Tokens: name, scopes, and the Settings `expires` written as is.
    pub tokens: &'a [(&'a str, &'a [&'a str], Option<&'a str>)],
    /// `api.requests` (`branch` or `direct`).
    pub requests: Option<&'a str>,
    /// Hosts named `web-001`...; all on 127.0.0.1 port 1 (refused: observed quickly).
    pub hosts: usize,
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

impl Fleet {
    /// A fleet of unreachable hosts (nothing to observe for real) with API settings.
    pub fn new(spec: FleetSpec<'_>) -> Fleet {
        let root = tempfile::tempdir().expect("tempdir");
        let work = root.path().join("work");
        std::fs::create_dir(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        let mut tokens = BTreeMap::new();
        let mut settings = String::from(
            "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: settings}\nspec:\n  reports:\n    author: {name: patchkeeper, email: patchkeeper@example.com}\n  api:\n",
        );
        if let Some(mode) = spec.requests {
            settings.push_str(&format!("    requests: {mode}\n"));
        }
        settings.push_str("    tokens:\n");
        for (name, scopes, expires) in spec.tokens {
            let t = token_new(name, scopes, None);
            settings.push_str(&format!(
                "      - name: {name}\n        sha256: {}\n        scopes: [{}]\n",
                t.entry["sha256"].as_str().expect("sha256"),
                scopes.join(", ")
            ));
            if let Some(e) = expires {
                settings.push_str(&format!("        expires: \"{e}\"\n"));
            }
            tokens.insert(name.to_string(), t);
        }
        write(&work, "patchkeeper.yaml", &settings);
        let mut inv = String::from("apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}, {name: db}]\n  hosts:\n");
        for i in 1..=spec.hosts {
            let (group, env) = if i % 5 == 0 {
                ("db", "staging")
            } else {
                ("web", "prod")
            };
            inv.push_str(&format!(
                "    - {{name: web-{i:03}, address: 127.0.0.{}, groups: [{group}], labels: {{env: {env}}}, ssh: {{port: 1}}}}\n",
                1 + i % 200
            ));
        }
        write(&work, "inventory/hosts.yaml", &inv);
        write(
            &work,
            "baselines/web.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web}\nspec:\n  selector: {groups: [web, db]}\n  updates: {classes: security}\n  window: always\n  rollout: all\n",
        );
        write(
            &work,
            "windows/always.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n",
        );
        write(
            &work,
            "rollouts/all.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: all}\nspec:\n  stages:\n    - {name: all, size: 100%}\n",
        );
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "fleet"]);
        let bare = root.path().join("fleet.git");
        git(
            root.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &work.display().to_string(),
                &bare.display().to_string(),
            ],
        );
        Fleet {
            root,
            work,
            bare,
            tokens,
        }
    }

    /// `file://` URL of the remote.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The secret of token `name`.
    pub fn token(&self, name: &str) -> &str {
        &self.tokens[name].secret
    }

    /// `git` in the bare remote.
    pub fn remote_git(&self, args: &[&str]) -> String {
        git(&self.bare, args)
    }
}

/// A running `patchkeeper serve --listen`.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// `https` or `http`.
    pub scheme: &'static str,
}

impl Server {
    /// Starts `patchkeeper --log-format json serve --listen 127.0.0.1:0 ARGS` and waits
    /// until it says where it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(Path::new("."), args)
    }

    /// [`Server::start`] in `dir`, with `HOME` there (caches stay in the test's dir).
    pub fn start_in(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(dir, &[], args)
    }

    /// [`Server::start_in`] with more environment variables.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut child = patchkeeper(dir)
            .env("HOME", dir)
            .envs(env.iter().copied())
            .env("PATCHKEEPER_LOG", "info,patchkeeper=debug,tower_http=warn")
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("patchkeeper serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if let Some(a) = v["fields"]["address"].as_str() {
                            if let Ok(a) = a.parse() {
                                let _ = tx.send(a);
                            }
                        }
                    }
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "serve did not say where it listens ({status:?}):\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
        };
        let scheme = if args.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        Server {
            child: Some(child),
            addr,
            log,
            scheme,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (up to `within`) for it to exit; returns the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        // Blocks on the exit itself (wait-timeout), the limit only bounds a failure.
        use wait_timeout::ChildExt;
        match child.wait_timeout(within) {
            Ok(Some(status)) => status.code(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not exit within {within:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking client with a generous timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Polls `f` until it is true (state-based waiting; the deadline only bounds a failure).
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET `path` with a bearer token; returns status and JSON (null when not JSON).
pub fn get(server: &Server, token: &str, path: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// Waits until the server's first reconcile finished (and reported).
pub fn wait_reconciled(server: &Server, token: &str) -> serde_json::Value {
    let mut fleet = serde_json::Value::Null;
    wait_for("the first reconcile", Duration::from_secs(120), || {
        let (status, v) = get(server, token, "/api/v1/fleet");
        fleet = v;
        status == 200 && fleet["reconcile"]["ok"] == true && fleet["reportsCommit"].is_string()
    });
    fleet
}

/// Checks a metrics exposition with the real `promtool check metrics` (Debian package
/// `prometheus`, installed by `scripts/lab deps`); `Err` holds what it said.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package `prometheus`, from `scripts/lab deps`)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
