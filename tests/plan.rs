//! `patchkeeper plan` on the example fleet with a recorded observed state: human and JSON
//! output are snapshot-tested (insta), and exit codes follow Terraform's meaning.

use assert_cmd::Command;

fn plan(args: &[&str]) -> (String, String, i32) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::cargo_bin("patchkeeper")
        .unwrap()
        .current_dir(root)
        .args([
            "plan",
            "--repo",
            "examples/fleet",
            "--observed",
            "tests/fixtures/plan/example-observed.json",
        ])
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
