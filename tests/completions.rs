//! `patchkeeper completions SHELL` and the packagers' `manpages --out DIR`: the scripts are
//! what the shells accept, and every visible command gets a page.

mod common;

use common::cli::{run, text};

#[test]
fn the_bash_completion_script_parses_and_knows_the_commands() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(root, &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let script = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(script.path(), &out.stdout).expect("write");
    // `bash -n` reads the script without running it: a syntax error fails here.
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(script.path())
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", text(&check));
    let s = String::from_utf8_lossy(&out.stdout);
    for word in [
        "plan",
        "apply",
        "import",
        "ansible",
        "--allow-local-commands",
    ] {
        assert!(
            s.contains(word),
            "`{word}` missing from the bash completions"
        );
    }
    let bad = run(root, &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn every_visible_command_gets_a_man_page() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("man1");
    let out = run(root, &["manpages", "--out", d.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for page in [
        "patchkeeper.1",
        "patchkeeper-plan.1",
        "patchkeeper-import-ansible.1",
        "patchkeeper-completions.1",
    ] {
        let body = std::fs::read_to_string(d.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            body.starts_with(".ie") || body.contains(".TH"),
            "{page} is not roff"
        );
    }
    assert!(
        !d.join("patchkeeper-manpages.1").exists(),
        "the hidden command has no page"
    );
}
