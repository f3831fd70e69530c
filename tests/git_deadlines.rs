//! No Git remote or signing tool can hang patchkeeper (issue 12): a real TCP listener on
//! 127.0.0.1 that accepts connections and never answers stands in for a stalled remote
//! (over `https://`, `http://`, `git://` and `ssh://`, as the fleet source and as the
//! reports remote), and a signing program that never finishes stands in for `ssh-keygen`
//! or `gpg` waiting on a pinentry. Each must fail within its deadline, saying what stalled.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{patchkeeper, text};
use common::git::git;
use wait_timeout::ChildExt;

/// A remote that accepts every connection and never says a word (the connections are kept
/// open, unread, until the test process ends).
fn stalled_remote() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// Runs `cmd`, failing the test if it is still running after `limit` (a hang is the bug).
fn finishes_within(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("patchkeeper runs");
    // Drained on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out_pipe, &mut b).ok();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err_pipe, &mut b).ok();
        b
    });
    let status = match child.wait_timeout(limit).expect("wait") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: it hangs on the stalled peer");
        }
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, started.elapsed())
}

/// A fleet repo whose one host refuses connections, with `reports` settings lines.
fn write_fleet(dir: &Path, reports: &str) {
    let files = [
        ("patchkeeper.yaml", format!("apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {{name: settings}}\nspec:\n  ssh:\n    connectTimeout: 2s\n  reports:\n    author: {{name: patchkeeper, email: patchkeeper@example.com}}\n{reports}")),
        ("inventory/hosts.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - {name: web-1, address: 127.0.0.1, groups: [web], ssh: {port: 1}}\n".into()),
        ("baselines/web.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web}\nspec:\n  selector: {groups: [web]}\n  updates: {classes: security}\n  window: always\n  rollout: all\n".into()),
        ("windows/always.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n".into()),
        ("rollouts/all.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: all}\nspec:\n  stages:\n    - {name: all, size: 100%}\n".into()),
        (".gitignore", "keys/\n".into()),
    ];
    for (rel, body) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
}

#[test]
fn a_stalled_fleet_remote_fails_the_round_within_its_deadline() {
    let port = stalled_remote();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    for url in [
        format!("https://127.0.0.1:{port}/fleet.git"),
        format!("http://127.0.0.1:{port}/fleet.git"),
        format!("git://127.0.0.1:{port}/fleet.git"),
        format!("ssh://git@127.0.0.1:{port}/fleet.git"),
    ] {
        let cache = home.path().join("cache");
        let mut cmd = patchkeeper(home.path());
        cmd.args(["serve", "--once", "--repo", &url, "--cache"])
            .arg(&cache)
            .env("HOME", home.path())
            .env("PATCHKEEPER_GIT_TIMEOUT", "2s");
        let (out, took) = finishes_within(cmd, Duration::from_secs(120));
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {all}");
        assert!(
            all.contains("fetch failed") && all.contains(&format!("127.0.0.1:{port}")),
            "{url}: {all}"
        );
        assert!(
            all.contains("the remote did not answer within 2s; PATCHKEEPER_GIT_TIMEOUT"),
            "{url}: the error says what stalled:\n{all}"
        );
        // Bounded by the timeout (plus start-up), not by the remote.
        assert!(
            took < Duration::from_secs(60),
            "{url}: took {took:?}\n{all}"
        );
    }
}

#[test]
fn a_stalled_reports_remote_does_not_hang_a_run() {
    let port = stalled_remote();
    let dir = tempfile::tempdir().unwrap();
    write_fleet(
        dir.path(),
        &format!("    remote: http://127.0.0.1:{port}/reports.git\n"),
    );
    let mut cmd = patchkeeper(dir.path());
    cmd.args(["observe", "--no-refresh"])
        .env("PATCHKEEPER_GIT_TIMEOUT", "2s");
    let (out, _) = finishes_within(cmd, Duration::from_secs(120));
    let all = text(&out);
    // The host refuses (exit 3); the report could not be pushed and says why.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("warning: the run was not reported")
            && all.contains("the remote did not answer within 2s"),
        "{all}"
    );
    // Nothing is lost: the report commit is kept on the local branch.
    git(
        dir.path(),
        &["rev-parse", "--verify", "patchkeeper/reports"],
    );
}

/// A fake `TOOL` first in PATH that records its pid and never finishes.
fn hanging_tool(bin: &Path, tool: &str, pidfile: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let path = bin.join(tool);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let ok = Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_signing_program_that_hangs_is_killed_after_its_deadline() {
    for (tool, reports) in [
        ("ssh-keygen", "    signingKey: keys/reports_ed25519\n"),
        (
            "gpg",
            "    signingKey: \"0000000000000000000000000000000000000000\"\n    signingFormat: openpgp\n",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("keys/reports_ed25519"))
            .status()
            .unwrap();
        assert!(made.success());
        write_fleet(dir.path(), reports);
        let bin = dir.path().join(".fakebin");
        let pidfile = dir.path().join(".fake.pid");
        hanging_tool(&bin, tool, &pidfile);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = patchkeeper(dir.path());
        cmd.args(["observe", "--no-refresh"])
            .env("PATH", path)
            .env("PATCHKEEPER_SIGN_TIMEOUT", "2s");
        let (out, _) = finishes_within(cmd, Duration::from_secs(120));
        let all = text(&out);
        assert_eq!(out.status.code(), Some(3), "{tool}: {all}");
        assert!(
            all.contains(&format!(
                "{tool} did not finish within 2s and was killed"
            )) && all.contains("warning: the run was not reported"),
            "{tool}: {all}"
        );
        // The tool really ran, and is gone (killed and reaped, not left behind).
        let pid = std::fs::read_to_string(&pidfile).expect("the fake tool ran");
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "{tool} (pid {pid}) is still running"
        );
    }
}
