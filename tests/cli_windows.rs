//! End-to-end: `patchkeeper windows` on a real fleet repo directory.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn window(name: &str, spec: &str) -> String {
    format!("apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "windows/nightly.yaml",
        &window(
            "nightly",
            "  schedule: \"30 2 * * *\"\n  timezone: Europe/Berlin\n  duration: 2h\n  cutoff: 15m\n  freezes:\n    - name: year-end\n      start: 2026-12-20T00:00\n      end: 2027-01-04T00:00\n",
        ),
    );
    // Two documents in one file.
    write(
        dir.path(),
        "windows/more.yaml",
        &format!(
            "{}---\n{}",
            window("always", "  alwaysOpen: true\n"),
            window(
                "weekend",
                "  schedule: \"0 22 * * SAT\"\n  timezone: America/New_York\n  duration: 6h\n"
            )
        ),
    );
    dir
}

fn windows(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("patchkeeper")
        .expect("binary")
        .arg("windows")
        .arg("--repo")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .assert()
}

#[test]
fn spring_forward_day_in_text() {
    let dir = repo();
    // 2026-03-29 in Berlin: 02:30 does not exist; the window opens at 03:00 CEST (01:00Z).
    let out = windows(dir.path(), &["--at", "2026-03-29T00:59:00Z"])
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.starts_with("Maintenance windows at 2026-03-29T00:59:00Z\n"),
        "{out}"
    );
    let nightly = out
        .split("\n\n")
        .find(|b| b.starts_with("nightly:"))
        .expect("nightly block");
    assert_eq!(
        nightly,
        "nightly: closed (outside schedule)\n  schedule   `30 2 * * *` for 2h, cutoff 15m, in Europe/Berlin\n  \
         next open  2026-03-29 03:00:00 CEST (in 1m)\n  cutoff at  2026-03-29 04:45:00 CEST (in 1h 46m)\n  \
         closes     2026-03-29 05:00:00 CEST (in 2h 1m)"
    );
    assert!(out.contains("always: open\n"), "{out}");
}

#[test]
fn json_during_a_freeze() {
    let dir = repo();
    let out = windows(dir.path(), &["--at", "2026-12-24T12:00:00+01:00", "--json"])
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["at"], "2026-12-24T11:00:00Z");
    let names: Vec<&str> = v["windows"]
        .as_array()
        .expect("list")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["always", "nightly", "weekend"]);
    let nightly = &v["windows"][1];
    assert_eq!(nightly["state"], "closed");
    assert_eq!(nightly["reason"], "frozen");
    assert_eq!(nightly["freeze"]["name"], "year-end");
    assert_eq!(nightly["freeze"]["until"], "2027-01-03T23:00:00Z");
    assert_eq!(nightly["nextOpen"], "2027-01-04T01:30:00Z");
    assert_eq!(v["windows"][0]["state"], "open");
    assert_eq!(v["windows"][0]["closes"], serde_json::Value::Null);
}

#[test]
fn invalid_window_is_shown_and_exits_1() {
    let dir = repo();
    write(
        dir.path(),
        "windows/bad.yaml",
        &window("bad", "  schedule: \"0 2 * *\"\n  duration: 4h\n"),
    );
    windows(dir.path(), &["--at", "2026-12-01T00:00:00Z"])
        .code(1)
        .stdout(predicate::str::contains(
            "bad: invalid\n  schedule   `0 2 * *` for 4h, in UTC\n  error      spec.schedule: invalid schedule \"0 2 * *\": expected 5 fields",
        ))
        .stdout(predicate::str::contains("nightly: open").not().and(predicate::str::contains("nightly: closed")));
}

#[test]
fn bad_at_is_a_usage_error() {
    let dir = repo();
    windows(dir.path(), &["--at", "2026-12-01 00:00"])
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value '2026-12-01 00:00' for '--at <TIME>'",
        ))
        .stderr(predicate::str::contains("expected RFC 3339"));
}

#[test]
fn repo_without_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "inventory/hosts.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata:\n  name: hosts\nspec:\n  hosts:\n    - name: web-1\n",
    );
    windows(dir.path(), &["--at", "2026-12-01T00:00:00Z"])
        .success()
        .stdout("Maintenance windows at 2026-12-01T00:00:00Z\n\nno MaintenanceWindow documents in the fleet repo\n");
}

#[test]
fn a_directory_without_fleet_documents_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    windows(dir.path(), &["--at", "2026-12-01T00:00:00Z"])
        .code(1)
        .stderr(predicate::str::contains("error: no fleet documents in"));
}

#[test]
fn defaults_to_now() {
    let dir = repo();
    windows(dir.path(), &[])
        .success()
        .stdout(predicate::str::starts_with("Maintenance windows at 20"));
}

#[test]
fn unreadable_window_file_exits_1_and_points_at_validate() {
    let dir = repo();
    write(
        dir.path(),
        "windows/broken.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: [\n",
    );
    windows(dir.path(), &["--at", "2026-12-01T00:00:00Z"])
        .code(1)
        .stdout(predicate::str::contains("nightly: closed"))
        .stderr(
            predicate::str::contains("unreadable document")
                .and(predicate::str::contains("patchkeeper validate")),
        );
}

/// A repo with one window.
fn repo_with(name: &str, spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!("windows/{name}.yaml"),
        &window(name, spec),
    );
    dir
}

fn json(dir: &Path, at: &str) -> serde_json::Value {
    let out = windows(dir, &["--at", at, "--json"])
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("json")
}

#[test]
fn a_weekend_of_minutes_has_exact_bounds() {
    // Every minute of Saturday and Sunday for 30m: one window, Saturday 00:00 to Monday
    // 00:29 in Berlin.
    let dir = repo_with(
        "weekend",
        "  schedule: \"* * * * SAT,SUN\"\n  duration: 30m\n  cutoff: 15m\n  timezone: Europe/Berlin\n",
    );
    for at in ["2026-01-31T12:00:00Z", "2026-02-01T22:50:00Z"] {
        let w = &json(dir.path(), at)["windows"][0];
        assert_eq!(w["state"], "open", "{at}: {w}");
        assert_eq!(w["since"], "2026-01-30T23:00:00Z", "{at}: {w}");
        assert_eq!(w["closes"], "2026-02-01T23:29:00Z", "{at}: {w}");
        assert_eq!(w["cutoffAt"], "2026-02-01T23:14:00Z", "{at}: {w}");
    }
    // Closed: the next opening and when it closes.
    let w = &json(dir.path(), "2026-02-03T12:00:00Z")["windows"][0];
    assert_eq!(w["state"], "closed", "{w}");
    assert_eq!(w["nextOpen"], "2026-02-06T23:00:00Z", "{w}");
    assert_eq!(w["closes"], "2026-02-08T23:29:00Z", "{w}");
    assert_eq!(w["cutoffAt"], "2026-02-08T23:14:00Z", "{w}");
    // Text: no "since always", no "closes never".
    windows(dir.path(), &["--at", "2026-02-01T22:50:00Z"])
        .success()
        .stdout(predicate::str::contains(
            "weekend: open\n  schedule   `* * * * SAT,SUN` for 30m, cutoff 15m, in Europe/Berlin\n  \
             since      2026-01-31 00:00:00 CET (1d 23h 50m ago)\n  \
             cutoff at  2026-02-02 00:14:00 CET (in 24m)\n  \
             closes     2026-02-02 00:29:00 CET (in 39m)\n",
        ));
}

#[test]
fn a_gap_ending_at_midnight_opens_for_the_scheduled_day() {
    // America/Nuuk on 2026-03-28: Saturday 23:00 -02 jumps to Sunday 00:00 -01 (01:00Z).
    let dir = repo_with(
        "saturday",
        "  schedule: \"30 23 * * 6\"\n  duration: 1h\n  timezone: America/Nuuk\n",
    );
    let w = &json(dir.path(), "2026-03-28T20:00:00Z")["windows"][0];
    assert_eq!(w["nextOpen"], "2026-03-29T01:00:00Z", "{w}");
    assert_eq!(w["closes"], "2026-03-29T02:00:00Z", "{w}");
    let w = &json(dir.path(), "2026-03-29T01:15:00Z")["windows"][0];
    assert_eq!(w["state"], "open", "{w}");
    assert_eq!(w["since"], "2026-03-29T01:00:00Z", "{w}");
}

#[test]
fn json_is_camel_case_and_matches_its_schema() {
    let dir = repo();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/windows.schema.json"
        ))
        .expect("schema file"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for at in [
        "2026-03-29T00:59:00Z",
        "2026-12-24T11:00:00Z",
        "2026-11-28T04:45:00Z",
    ] {
        let v = json(dir.path(), at);
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{at}: {errors:?}");
        for w in v["windows"].as_array().expect("list") {
            let keys: Vec<&String> = w.as_object().expect("object").keys().collect();
            assert!(
                keys.iter().all(|k| !k.contains('_')),
                "{at}: snake_case key in {keys:?}"
            );
            assert!(
                w.get("nextOpen").is_some() && w.get("cutoffAt").is_some(),
                "{w}"
            );
        }
    }
}
