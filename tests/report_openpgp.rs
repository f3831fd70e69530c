//! OpenPGP-signed report commits, verified by the real `git` and `gpg`. A test binary of its
//! own because GnuPG finds its keyring through `GNUPGHOME`, which patchkeeper's `gpg`
//! inherits: the one test here sets it before any other thread runs.

mod common;

use std::path::Path;
use std::process::Command;

use common::git::git;
use common::report_fleet::{load, observed, ts, write_fleet, BRANCH};
use patchkeeper::report;

fn gpg(home: &Path, args: &[&str]) -> String {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty"])
        .args(args)
        .output()
        .expect("gpg runs (apt package gnupg; scripts/lab deps installs it)");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Makes an unprotected signing key in `home` and returns its fingerprint.
fn new_key(home: &Path, uid: &str) -> String {
    gpg(
        home,
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ],
    );
    let listing = gpg(home, &["--with-colons", "--list-secret-keys", uid]);
    listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| f.len() == 40))
        .expect("a fingerprint")
        .to_owned()
}

#[test]
fn openpgp_signed_report_commits_verify_with_real_git_and_gpg() {
    let home = tempfile::tempdir().expect("tempdir");
    // Set before anything else runs in this process: the single test of this binary.
    std::env::set_var("GNUPGHOME", home.path());
    let key = new_key(home.path(), "patchkeeper <patchkeeper@example.com>");

    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(
        dir.path(),
        &format!("    signingKey: {key}\n    signingFormat: openpgp\n"),
    );
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("recorded");
    let out = git(
        dir.path(),
        &["log", "-1", "--show-signature", "--format=%G? %GF", BRANCH],
    );
    assert!(
        out.contains("Good signature from \"patchkeeper <patchkeeper@example.com>\""),
        "{out}"
    );
    assert!(out.trim_end().ends_with(&format!("G {key}")), "{out}");

    // Another keyring does not know the signer: the signature does not verify there.
    let stranger = tempfile::tempdir().expect("tempdir");
    new_key(stranger.path(), "someone <someone@example.com>");
    let out = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["log", "-1", "--format=%G?", BRANCH])
        .env("GNUPGHOME", stranger.path())
        .output()
        .expect("git runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "E");

    // A key id the keyring does not have: the report is refused with gpg's reason, and
    // nothing is committed.
    let before = git(dir.path(), &["rev-parse", BRANCH]);
    let desired = write_fleet(
        dir.path(),
        "    signingKey: \"0000000000000000000000000000000000000000\"\n    signingFormat: openpgp\n",
    );
    let err = report::record_observation(
        dir.path(),
        &load(dir.path()),
        &observed("2026-11-24T03:00:00Z"),
        &desired,
        ts("2026-11-24T03:00:00Z"),
    )
    .expect_err("cannot sign");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "reports: signing with 0000000000000000000000000000000000000000: gpg failed"
        ),
        "{message}"
    );
    assert_eq!(git(dir.path(), &["rev-parse", BRANCH]), before);
}
