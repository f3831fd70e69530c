//! `patchkeeper plan` on the example fleet with a recorded observed state: human and JSON
//! output are snapshot-tested (insta), and exit codes follow Terraform's meaning.

use assert_cmd::Command;

/// A copy of `src` at `dst` (files and directories).
fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// The example fleet outside any Git repository: inside this project's checkout it would
/// be found in the project's own repository (fleet repos are discovered upward), and the
/// snapshots would change with every commit.
fn example_fleet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet"),
        dir.path(),
    );
    dir
}

fn plan(args: &[&str]) -> (String, String, i32) {
    let root = env!("CARGO_MANIFEST_DIR");
    let fleet = example_fleet();
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .current_dir(root)
        .args(["plan", "--repo"])
        .arg(fleet.path())
        .args(["--observed", "tests/fixtures/plan/example-observed.json"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn human_plan_inside_the_window() {
    let (out, _, code) = plan(&["--at", "2026-11-29T02:30:00+01:00"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn human_plan_outside_the_window() {
    let (out, _, _) = plan(&["--at", "2026-11-25T12:00:00Z"]);
    insta::assert_snapshot!(out);
}

#[test]
fn human_plan_during_the_freeze() {
    let (out, _, _) = plan(&["--at", "2026-12-27T02:30:00+01:00"]);
    insta::assert_snapshot!(out);
}

#[test]
fn json_plan() {
    let (out, _, code) = plan(&["--at", "2026-11-29T02:30:00+01:00", "--json"]);
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    insta::assert_json_snapshot!(value);
}

#[test]
fn json_plan_matches_its_schema() {
    let (out, _, _) = plan(&["--at", "2026-11-29T02:30:00+01:00", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/plan.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn detailed_exitcode_is_2_when_changes_are_planned() {
    let (_, _, code) = plan(&["--at", "2026-11-29T02:30:00+01:00", "--detailed-exitcode"]);
    assert_eq!(code, 2);
}

#[test]
fn output_is_byte_identical_across_runs() {
    let a = plan(&["--at", "2026-11-29T02:30:00+01:00", "--json"]).0;
    let b = plan(&["--at", "2026-11-29T02:30:00+01:00", "--json"]).0;
    assert_eq!(a, b);
}

#[test]
fn saved_plan_holds_commit_instant_and_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let (_, err, code) = plan(&[
        "--at",
        "2026-11-29T02:30:00+01:00",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // The hint to copy names the fleet repo (issue 21).
    assert!(
        err.contains("apply exactly it with `patchkeeper apply --repo /")
            && err.contains(&format!(" {}`", out.display())),
        "{err}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(saved["plannedAt"], "2026-11-29T01:30:00Z");
    assert!(saved["fleetDigest"].as_str().is_some_and(|d| d.len() == 64));
    let web1 = saved["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "web-1")
        .unwrap();
    assert_eq!(web1["fingerprint"].as_str().unwrap().len(), 64);
}

#[test]
fn bad_at_is_a_clear_error() {
    let (_, err, code) = plan(&["--at", "tomorrow"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: invalid --at `tomorrow`"), "{err}");
}

#[test]
fn invalid_fleet_repo_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec: {}\n",
    )
    .unwrap();
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .args([
            "plan",
            "--repo",
            dir.path().to_str().unwrap(),
            "--observed",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/plan/example-observed.json"
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:4:1: error[missing-field]: missing field `stages` in `spec`"),
        "{err}"
    );
    assert!(
        err.contains("nothing is planned or applied from it"),
        "{err}"
    );
}

/// The example fleet with its window replaced by `window_spec`, in a temporary directory.
fn fleet_with_window(window_spec: &str) -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let dir = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.path().strip_prefix(&root).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("windows/weekly-sunday.yaml"),
        format!(
            "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: weekly-sunday\nspec:\n{window_spec}"
        ),
    )
    .unwrap();
    dir
}

fn plan_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .args(["plan", "--repo"])
        .arg(dir)
        .arg("--observed")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/plan/example-observed.json"
        ))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn batches_show_the_exact_end_of_a_chained_window() {
    // Every minute of the weekend for 30m: one window, Saturday 00:00 to Monday 00:29 in
    // Berlin; batches may start until 00:14.
    let dir = fleet_with_window(
        "  schedule: \"* * * * SAT,SUN\"\n  timezone: Europe/Berlin\n  duration: 30m\n  cutoff: 15m\n",
    );
    let plan: serde_json::Value = serde_json::from_str(&plan_in(
        dir.path(),
        &["--at", "2026-01-31T12:00:00Z", "--json"],
    ))
    .unwrap();
    let batches = plan["batches"].as_array().unwrap();
    assert!(!batches.is_empty());
    for b in batches {
        assert_eq!(
            b["windowState"],
            serde_json::json!({
                "state": "runs-now",
                "until": "2026-02-01T23:29:00Z",
                "cutoffAt": "2026-02-01T23:14:00Z"
            }),
            "{b}"
        );
    }
    let human = plan_in(dir.path(), &["--at", "2026-02-01T22:50:00Z"]);
    assert!(
        human.contains("runs now (window open until 2026-02-01T23:29:00Z)"),
        "{human}"
    );
    // Closed on Tuesday: the batches wait for Saturday 00:00.
    let plan: serde_json::Value = serde_json::from_str(&plan_in(
        dir.path(),
        &["--at", "2026-02-03T12:00:00Z", "--json"],
    ))
    .unwrap();
    assert_eq!(
        plan["batches"][0]["windowState"],
        serde_json::json!({"state": "waits", "until": "2026-02-06T23:00:00Z", "why": "outside-schedule"})
    );
}

#[test]
fn markdown_plan_for_a_merge_request() {
    let (out, _, code) = plan(&["--at", "2026-11-29T02:30:00+01:00", "--format", "markdown"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("<!-- patchkeeper-plan -->\n"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn markdown_plan_during_the_freeze() {
    let (out, _, _) = plan(&["--at", "2026-12-27T02:30:00+01:00", "--format", "markdown"]);
    insta::assert_snapshot!(out);
    // Stable: the same inputs give the same comment, byte for byte.
    let (again, _, _) = plan(&["--at", "2026-12-27T02:30:00+01:00", "--format", "markdown"]);
    assert_eq!(out, again);
}

#[test]
fn json_and_format_json_are_one_thing_and_cannot_be_combined_with_markdown() {
    let at = "2026-11-29T02:30:00+01:00";
    let (a, _, _) = plan(&["--at", at, "--json"]);
    let (b, _, _) = plan(&["--at", at, "--format", "json"]);
    assert_eq!(a, b);
    let (_, err, code) = plan(&["--at", at, "--json", "--format", "markdown"]);
    assert_eq!(code, 2, "{err}");
}
