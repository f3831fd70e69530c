//! The fleet repo as a Git source: a bare "remote" fetched over `file://` and a local
//! repository, materialized at exact commits and loaded.

mod common;

use common::git::git;
use std::path::Path;
use std::process::Command;

use patchkeeper::report::GitAuth;
use patchkeeper::source::{Location, Source, SourceError};

const INVENTORY: &str = "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: prod}\nspec:\n  hosts:\n    - {name: web-1}\n";

fn commit_file(work: &Path, rel: &str, text: &str, msg: &str) -> String {
    let path = work.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn remote_source_fetches_and_checks_out_exact_commits() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    let first = commit_file(&work, "inventory/hosts.yaml", INVENTORY, "first");
    std::fs::write(work.join("hook.sh"), "#!/bin/sh\n").expect("write");
    Command::new("chmod")
        .arg("+x")
        .arg(work.join("hook.sh"))
        .status()
        .expect("chmod");
    let second = commit_file(
        &work,
        "inventory/more.yaml",
        &INVENTORY.replace("prod", "more").replace("web-1", "web-2"),
        "second",
    );
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

    let cache = root.path().join("cache");
    let url = format!("file://{}", bare.display());
    let source = Source::new(Location::parse(&url), None, &cache, GitAuth::default());
    assert_eq!(
        source.fetch().expect("fetch"),
        second,
        "default branch of the remote"
    );

    let co = source.checkout(&second).expect("checkout");
    assert_eq!(co.commit, second);
    assert_eq!(
        std::fs::read_to_string(co.dir.join("inventory/hosts.yaml")).expect("file"),
        INVENTORY
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(co.dir.join("hook.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit kept");
    assert!(!co.dir.join(".git").exists());
    let fleet = patchkeeper::validate::load_and_validate(&co.dir)
        .expect("loads")
        .fleet
        .expect("valid");
    assert_eq!(
        fleet.hosts().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["web-1", "web-2"]
    );

    // The older commit is still exactly reproducible.
    let old = source.checkout(&first).expect("checkout first");
    assert!(!old.dir.join("inventory/more.yaml").exists());
    assert!(!old.dir.join("hook.sh").exists());

    // A new commit on the remote is seen by the next fetch.
    let third = commit_file(&work, "README.md", "fleet\n", "third");
    git(&work, &["push", "-q", &bare.display().to_string(), "main"]);
    assert_eq!(source.fetch().expect("fetch again"), third);
    assert_ne!(source.checkout(&third).expect("checkout").dir, co.dir);

    // An explicit branch that does not exist is a clear error.
    let missing = Source::new(
        Location::parse(&url),
        Some("nope".into()),
        &cache,
        GitAuth::default(),
    );
    let err = missing.fetch().unwrap_err();
    assert!(matches!(err, SourceError::NoBranch { .. }), "{err}");
    assert!(
        err.to_string().ends_with("branch `nope` not found"),
        "{err}"
    );
}

#[test]
fn local_source_reads_commits_not_the_working_tree() {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    let head = commit_file(&work, "inventory/hosts.yaml", INVENTORY, "first");
    // Uncommitted edits are not the desired state.
    std::fs::write(work.join("inventory/hosts.yaml"), "garbage: [").expect("write");
    let source = Source::new(
        Location::Local(work.clone()),
        None,
        &root.path().join("cache"),
        GitAuth::default(),
    );
    assert_eq!(source.fetch().expect("head"), head);
    let co = source.checkout(&head).expect("checkout");
    assert_eq!(
        std::fs::read_to_string(co.dir.join("inventory/hosts.yaml")).expect("file"),
        INVENTORY
    );
    let branch = Source::new(
        Location::Local(work),
        Some("main".into()),
        &root.path().join("cache"),
        GitAuth::default(),
    );
    assert_eq!(branch.fetch().expect("branch"), head);
}

#[test]
fn unreachable_remote_is_an_error_naming_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/does-not-exist.git", root.path().display());
    let source = Source::new(
        Location::parse(&url),
        Some("main".into()),
        &root.path().join("cache"),
        GitAuth::default(),
    );
    let err = source.fetch().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("fleet repo {url}: fetch: ")),
        "{err}"
    );
}
