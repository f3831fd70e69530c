//! End-to-end: `serve` reads the fleet repo over `ssh://` from a real OpenSSH server (a lab
//! host serving a bare repository with git-upload-pack/git-receive-pack), pushes its report
//! back over the same URL, and refuses a server whose host key is not in `known_hosts`.

mod common;

use std::path::Path;
use std::process::Output;

use common::cli::text;
use common::git::{desired_commit_of_last_report, git};
use common::lab::Lab;

/// `serve --once` against `url` with `home` as HOME (libgit2 checks `~/.ssh/known_hosts`).
fn serve_once(lab: &Lab, url: &str, home: &Path) -> Output {
    common::cli::patchkeeper(home)
        .args(["serve", "--once", "--repo", url, "--cache"])
        .arg(home.join("cache"))
        .env("HOME", home)
        .env("PATCHKEEPER_GIT_SSH_KEY", &lab.info().ssh.identity_file)
        .output()
        .expect("patchkeeper runs")
}

#[test]
fn serve_fetches_and_reports_over_ssh_with_host_key_checking() {
    let lab = Lab::up(1, 0);
    let host = lab.host("deb-1").clone();
    // The lab's fleet repo, served by deb-1's sshd at /srv/fleet.git.
    let bare = host.root.join("srv/fleet.git");
    git(
        lab.dir(),
        &["clone", "-q", "--bare", ".", &bare.display().to_string()],
    );
    let head = git(lab.dir(), &["rev-parse", "HEAD"]).trim().to_owned();
    let url = format!("ssh://root@127.0.0.1:{}/srv/fleet.git", host.port);

    // A HOME whose known_hosts has the lab hosts' keys: fetched, reconciled, reported.
    let trusted = tempfile::tempdir().unwrap();
    std::fs::create_dir(trusted.path().join(".ssh")).unwrap();
    std::fs::copy(
        &lab.info().ssh.known_hosts,
        trusted.path().join(".ssh/known_hosts"),
    )
    .unwrap();
    let out = serve_once(&lab, &url, trusted.path());
    let all = text(&out);
    // 3: the round fetched, validated and reported, and its host was not observed (the lab's key is not in the fetched checkout);
    // a failed fetch would be 1.
    assert_eq!(out.status.code(), Some(3), "{all}");
    // The report went back over ssh:// and names the fetched commit.
    let trailer = desired_commit_of_last_report(&bare, "patchkeeper/reports");
    assert_eq!(trailer, head, "{all}");

    // An unknown host key: nothing is fetched, and the error says why.
    let stranger = tempfile::tempdir().unwrap();
    std::fs::create_dir(stranger.path().join(".ssh")).unwrap();
    std::fs::write(stranger.path().join(".ssh/known_hosts"), "").unwrap();
    let out = serve_once(&lab, &url, stranger.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.to_lowercase().contains("host key") || all.contains("hostkey"),
        "{all}"
    );
    lab.down();
}
