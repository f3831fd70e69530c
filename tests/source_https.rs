//! End-to-end: `serve` reads the fleet repo over `https://` with a token, from a real Git
//! smart-HTTP server (`git http-backend` behind TLS, `tests/fixtures/git/https-server.py`),
//! pushes its report back over the same URL, and refuses a wrong token and an untrusted
//! certificate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::text;
use common::git::{desired_commit_of_last_report, git};

const TOKEN: &str = "glpat-test-token";

/// A fleet repo whose one host refuses connections (observation is not the point here).
fn write_fleet(work: &Path) {
    let files = [
        ("patchkeeper.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: settings}\nspec:\n  ssh:\n    connectTimeout: 2s\n  reports:\n    author: {name: patchkeeper, email: patchkeeper@example.com}\n"),
        ("inventory/hosts.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - {name: web-1, address: 127.0.0.1, groups: [web], ssh: {port: 1}}\n"),
        ("baselines/web.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: web}\nspec:\n  selector: {groups: [web]}\n  updates: {classes: security}\n  window: always\n  rollout: all\n"),
        ("windows/always.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n"),
        ("rollouts/all.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: all}\nspec:\n  stages:\n    - {name: all, size: 100%}\n"),
    ];
    for (rel, text) in files {
        let path = work.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(work, &["init", "-q"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "fleet"]);
}

struct Server {
    child: Child,
    port: u16,
    cert: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path) -> Server {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let portfile = dir.join("port");
    let child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/git/https-server.py"))
        .arg(dir.join("srv"))
        .args([&cert, &key])
        .args(["ci", TOKEN])
        .arg(&portfile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&portfile) {
            break p.trim().parse().expect("a port");
        }
        assert!(Instant::now() < deadline, "the https server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Server { child, port, cert }
}

fn serve_once(url: &str, cache: &Path, token: &str, ca: Option<&Path>) -> Output {
    let mut cmd = common::cli::patchkeeper(cache.parent().expect("a cache inside the test dir"));
    cmd.args(["serve", "--once", "--repo", url, "--cache"])
        .arg(cache)
        .env("PATCHKEEPER_GIT_TOKEN", token)
        .env("PATCHKEEPER_GIT_USER", "ci")
        .env_remove("SSL_CERT_DIR");
    match ca {
        Some(ca) => cmd.env("SSL_CERT_FILE", ca),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
    cmd.output().expect("patchkeeper runs")
}

#[test]
fn serve_fetches_and_reports_over_https_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    write_fleet(&work);
    let head = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let bare = dir.path().join("srv/fleet.git");
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let server = start_server(dir.path());
    let url = format!("https://localhost:{}/fleet.git", server.port);

    let out = serve_once(&url, &dir.path().join("cache"), TOKEN, Some(&server.cert));
    let all = text(&out);
    // 3: the round fetched, validated and reported, and its host was not observed (its one host is a closed port);
    // a failed fetch would be 1.
    assert_eq!(out.status.code(), Some(3), "{all}");
    let trailer = desired_commit_of_last_report(&bare, "patchkeeper/reports");
    assert_eq!(trailer, head, "{all}");

    // A wrong token: refused by the server, nothing fetched.
    let out = serve_once(
        &url,
        &dir.path().join("cache2"),
        "wrong",
        Some(&server.cert),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("credentials were rejected"), "{all}");

    // A certificate nobody vouches for: refused before any credential is sent.
    let out = serve_once(&url, &dir.path().join("cache3"), TOKEN, None);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.to_lowercase().contains("certificate"), "{all}");
}

/// `auth-capture.py`: answers 401 to everything and logs each request's Authorization.
struct Capture {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_capture(dir: &Path, name: &str, tls: Option<(&Path, &Path)>) -> Capture {
    let portfile = dir.join(format!("{name}.port"));
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/git/auth-capture.py"))
        .arg(&portfile)
        .arg(&log);
    if let Some((cert, key)) = tls {
        cmd.args([cert, key]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&portfile) {
            break p.trim().parse().expect("a port");
        }
        assert!(
            Instant::now() < deadline,
            "the capture server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Capture { child, port, log }
}

/// Publishes a fleet whose `reports.remote` is `remote` as `srv/NAME.git`.
fn publish_fleet(dir: &Path, name: &str, remote: &str) {
    let work = dir.join(format!("work-{name}"));
    std::fs::create_dir(&work).unwrap();
    write_fleet(&work);
    let settings = work.join("patchkeeper.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        text.replace(
            "  reports:\n",
            &format!("  reports:\n    remote: {remote}\n"),
        ),
    )
    .unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "reports elsewhere"]);
    let bare = dir.join(format!("srv/{name}.git"));
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
    );
}

#[test]
fn the_token_goes_only_to_the_fleet_repos_host_and_only_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let key = dir.path().join("key.pem");
    let other_host = start_capture(dir.path(), "tls", Some((&server.cert, &key)));
    let plain = start_capture(dir.path(), "plain", None);
    // The fleet repo names report remotes on another host (127.0.0.1 is not localhost)
    // and over plain http.
    publish_fleet(
        dir.path(),
        "other",
        &format!("https://127.0.0.1:{}/reports.git", other_host.port),
    );
    publish_fleet(
        dir.path(),
        "plain",
        &format!("http://localhost:{}/reports.git", plain.port),
    );
    for (name, capture, why) in [
        (
            "other",
            &other_host,
            format!(
                "the Git token is bound to localhost:{}, so it is not sent to `https://127.0.0.1:{}/reports.git`",
                server.port, other_host.port
            ),
        ),
        (
            "plain",
            &plain,
            format!(
                "the Git token is sent only over https, and `http://localhost:{}/reports.git` is http",
                plain.port
            ),
        ),
    ] {
        let url = format!("https://localhost:{}/{name}.git", server.port);
        let out = serve_once(
            &url,
            &dir.path().join(format!("cache-{name}")),
            TOKEN,
            Some(&server.cert),
        );
        let all = text(&out);
        // Fetched with the token from its own host; the report was not pushed elsewhere.
        assert_eq!(out.status.code(), Some(1), "{name}: {all}");
        assert!(all.contains(&why), "{name}: {all}");
        assert!(!all.contains(TOKEN), "{name}: {all}");
        let log = std::fs::read_to_string(&capture.log).unwrap_or_default();
        assert!(!log.is_empty(), "{name}: the remote was asked: {all}");
        assert!(
            log.lines().all(|l| l.ends_with(" -")),
            "{name}: credentials reached the other remote:\n{log}"
        );
    }
}
