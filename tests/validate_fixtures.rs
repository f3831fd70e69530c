//! Every broken fleet repo under `tests/fixtures/validate/` gives exactly the diagnostics in
//! its `expected.txt`. A fixture directory holds only the files that differ from `_base/`.
//!
//! Regenerate the expectations after an intended change with
//! `UPDATE_EXPECT=1 cargo test --test validate_fixtures`, then review the diff.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validate")
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        if rel.as_os_str() == "expected.txt" {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Runs `patchkeeper validate` in a copy of `_base` overlaid with the fixture.
fn run(fixture: &Path, extra: &[&str]) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("_base"), dir.path());
    copy_tree(fixture, dir.path());
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .current_dir(dir.path())
        .arg("validate")
        .args(extra)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn the_base_repo_is_valid() {
    let empty = tempfile::tempdir().unwrap();
    let (out, code) = run(empty.path(), &[]);
    assert_eq!(out, "ok: the fleet repo is valid\n");
    assert_eq!(code, 0);
}

#[test]
fn every_fixture_gives_its_expected_diagnostics() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("_base"))
        .collect();
    names.sort();
    assert!(names.len() >= 30, "only {} fixtures", names.len());
    let mut failures = Vec::new();
    for dir in &names {
        let (out, code) = run(dir, &[]);
        let has_error = out.lines().any(|l| l.contains(": error["));
        assert_eq!(
            code,
            i32::from(has_error),
            "{}: exit code {code}\n{out}",
            dir.display()
        );
        if !out.lines().next().is_some_and(|l| l.contains(".yaml:")) {
            failures.push(format!(
                "{}: no diagnostic with a location:\n{out}",
                dir.display()
            ));
        }
        let expected_path = dir.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &out).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != out {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{out}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ (UPDATE_EXPECT=1 regenerates):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn strict_turns_warnings_into_failure() {
    let dir = fixtures().join("selector-matches-nothing");
    let (out, code) = run(&dir, &[]);
    assert!(out.contains("warning[selector-matches-nothing]"), "{out}");
    assert_eq!(code, 0);
    let (_, code) = run(&dir, &["--strict"]);
    assert_eq!(code, 1);
}

#[test]
fn json_format_lists_the_same_diagnostics() {
    let dir = fixtures().join("several-mistakes-at-once");
    let (text, _) = run(&dir, &[]);
    let (json, code) = run(&dir, &["--format", "json"]);
    assert_eq!(code, 1);
    let diags: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let text_lines: Vec<&str> = text.lines().filter(|l| l.contains("error[")).collect();
    assert_eq!(diags.len(), text_lines.len());
    for (d, line) in diags.iter().zip(&text_lines) {
        let rendered = format!(
            "{}:{}:{}: {}[{}]: {}",
            d["file"].as_str().unwrap(),
            d["line"],
            d["column"],
            d["severity"].as_str().unwrap(),
            d["code"].as_str().unwrap(),
            d["message"].as_str().unwrap()
        );
        assert_eq!(&rendered, line);
    }
}

#[test]
fn a_directory_without_fleet_documents_is_an_error() {
    let validate = |dir: &Path| {
        let out = Command::cargo_bin("patchkeeper")
            .unwrap()
            .current_dir(dir)
            .arg("validate")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
            out.status.code(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let (out, err, code) = validate(dir.path());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(!out.contains("ok: the fleet repo is valid"), "{out}");
    assert!(
        err.starts_with("error: no fleet documents in `") && err.contains("it has no YAML files"),
        "{err}"
    );
    assert!(err.contains("hint: is `--repo` the fleet repo?"), "{err}");
    // Only empty YAML files, and files that are not YAML: the same.
    std::fs::write(dir.path().join("empty.yaml"), "# nothing yet\n").unwrap();
    std::fs::write(dir.path().join("README.md"), "# notes\n").unwrap();
    let (out, err, code) = validate(dir.path());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("its 1 YAML file(s) hold no document"), "{err}");
}

#[test]
fn huge_file_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: big}\nspec:\n  hosts:\n",
    );
    while text.len() < 50 * 1024 * 1024 {
        text.push_str("    - {name: h, address: 10.0.0.1, groups: [web], labels: {a: b}}\n");
    }
    std::fs::create_dir_all(dir.path().join("inventory")).unwrap();
    std::fs::write(dir.path().join("inventory/big.yaml"), text).unwrap();
    let (out, code) = run(dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("inventory/big.yaml:1:1: error[unreadable-file]: file is "),
        "{out}"
    );
}

#[test]
fn missing_repo_is_a_clear_error() {
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .args(["validate", "--repo", "/nonexistent/fleet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: fleet repo `/nonexistent/fleet` is not a directory\n"
    );
}
