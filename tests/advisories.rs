//! `patchkeeper advisories import|status` and `patchkeeper vulns` on fixtures in the
//! published formats (no hosts needed: `vulns --observed`), and serve's re-import of a fleet
//! repo's advisory sources.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{run, text};
use serde_json::Value;

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn store_in(dir: &Path) -> String {
    dir.join("advisories.db").to_string_lossy().into_owned()
}

#[test]
fn import_reports_counts_skips_and_unchanged_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let tracker = fixture("advisories/debian-tracker.json");
    let osv = fixture("advisories/osv");
    let out = run(
        dir.path(),
        &["advisories", "import", &tracker, &osv, "--store", &store],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(debian-tracker): 13 records from 14 advisories; skipped 2 malformed, 1 not-affected statements"), "{stdout}");
    assert!(
        stdout.contains(
            "  skipped: broken-pkg CVE-2026-1091 bookworm: resolved without a fixed_version"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("(osv): 5 records from 8 advisories; skipped 2 malformed, 1 withdrawn, 1 for other ecosystems; data from 2026-03-06T00:00:00Z"), "{stdout}");
    let snapshot = stdout.lines().last().unwrap().to_owned();
    assert!(
        snapshot.starts_with("advisory snapshot sha256:") && snapshot.contains(": 18 records"),
        "{snapshot}"
    );
    // The same data again: nothing rewritten, same snapshot.
    let out = run(
        dir.path(),
        &["advisories", "import", &osv, "--store", &store],
    );
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(again.contains("unchanged "), "{again}");
    assert_eq!(again.lines().last().unwrap(), snapshot);
    // A missing path fails the command, the others are still imported.
    let other = dir.path().join("one.json");
    std::fs::copy(fixture("advisories/osv/USN-7000-1.json"), &other).unwrap();
    let out = run(
        dir.path(),
        &[
            "advisories",
            "import",
            "/nonexistent/all.zip",
            &other.to_string_lossy(),
            "--store",
            &store,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read `/nonexistent/all.zip`"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": 19 records"),
        "{}",
        text(&out)
    );
}

#[test]
fn status_says_what_is_loaded_and_whether_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let out = run(dir.path(), &["advisories", "status", "--store", &store]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("hint: import some with `patchkeeper advisories import PATH`"));
    // Data dated long ago is stale against the default maxAge of 7 days.
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        r#"{"id": "DSA-1-1", "modified": "2000-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.2.15-3"}]}]}]}"#,
    )
    .unwrap();
    let out = run(
        dir.path(),
        &[
            "advisories",
            "import",
            &old.to_string_lossy(),
            "--store",
            &store,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(dir.path(), &["advisories", "status", "--store", &store]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("data from 2000-01-01T00:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: the data is older than advisories.maxAge (7d)"),
        "{stdout}"
    );
    let out = run(
        dir.path(),
        &["advisories", "status", "--store", &store, "--json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stale"], true);
    assert_eq!(v["records"], 1);
    assert_eq!(v["imports"][0]["format"], "osv");
}

#[test]
fn vulns_offline_on_the_example_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let repo = fixture("../../examples/fleet");
    let observed = fixture("plan/example-observed.json");
    let out = run(
        dir.path(),
        &[
            "vulns",
            "--repo",
            &repo,
            "--observed",
            &observed,
            "--store",
            &store,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: no advisory data"));
    run(
        dir.path(),
        &[
            "advisories",
            "import",
            &fixture("advisories/debian-tracker.json"),
            &fixture("advisories/osv"),
            "--store",
            &store,
        ],
    );
    let args = [
        "vulns",
        "--repo",
        &repo,
        "--observed",
        &observed,
        "--store",
        &store,
        "--at",
        "2026-11-29T02:30:00Z",
    ];
    let out = run(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("db-replica-3  -  not assessed: not observed"),
        "{human}"
    );
    assert!(
        human.contains(
            "web-1  Debian:12  7 open (1 high, 1 medium, 3 low, 1 negligible, 1 unknown)"
        ),
        "{human}"
    );
    assert!(human.contains("  CVE-2026-1004  high        openssl  3.0.14-1~deb12u2  -                 no fix (open)"), "{human}");
    let mut json_args = args.to_vec();
    json_args.extend(["--json", "--severity", "medium"]);
    let out = run(dir.path(), &json_args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["minSeverity"], "medium");
    assert_eq!(report["summary"]["notAssessed"], 1);
    // Two per Debian host (high and medium) over eight observed Debian hosts.
    assert_eq!(report["summary"]["open"], 16, "{}", report["summary"]);
    // The output follows its published schema.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("../../schemas/vulns.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// serve's feed: re-imports the fleet repo's `advisories.sources` once `refresh` passed,
/// keyed by their repo path, and leaves unchanged data alone.
#[test]
fn serve_reimports_the_fleet_repos_sources_on_its_interval() {
    use patchkeeper::reconcile::AdvisoryFeed;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    for (rel, text) in [
        ("patchkeeper.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: s}\nspec:\n  advisories:\n    sources: [advisories/tracker.json]\n    refresh: 1h\n"),
        ("inventory.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  hosts:\n    - {name: h1, address: 10.0.0.1}\n"),
    ] {
        std::fs::create_dir_all(repo.join(rel).parent().unwrap()).unwrap();
        std::fs::write(repo.join(rel), text).unwrap();
    }
    std::fs::create_dir_all(repo.join("advisories")).unwrap();
    std::fs::copy(
        fixture("advisories/debian-tracker.json"),
        repo.join("advisories/tracker.json"),
    )
    .unwrap();
    let fleet = patchkeeper::validate::load_and_validate(&repo)
        .unwrap()
        .fleet
        .expect("valid");
    let store_path: PathBuf = dir.path().join("state/advisories.db");
    let feed = AdvisoryFeed {
        store: store_path.clone(),
        extra: vec![PathBuf::from(fixture("advisories/osv"))],
        ..AdvisoryFeed::default()
    };
    let t0: jiff::Timestamp = "2026-03-10T00:00:00Z".parse().unwrap();
    feed.refresh(&fleet, t0);
    let store = patchkeeper::advisory::Store::open(&store_path).unwrap();
    let imports = store.imports().unwrap();
    let sources: Vec<&str> = imports.iter().map(|i| i.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            fixture("advisories/osv").as_str(),
            "fleet-repo:advisories/tracker.json"
        ]
    );
    let first = store.snapshot().unwrap();
    // New data, but the interval has not passed: not read yet.
    let mut data: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("advisories/tracker.json")).unwrap(),
    )
    .unwrap();
    data.as_object_mut().unwrap().remove("openssl");
    std::fs::write(repo.join("advisories/tracker.json"), data.to_string()).unwrap();
    feed.refresh(
        &fleet,
        t0.checked_add(jiff::SignedDuration::from_mins(30)).unwrap(),
    );
    assert_eq!(store.snapshot().unwrap().id, first.id);
    // After the interval: re-imported (the osv directory, unchanged, only checked).
    let t2 = t0.checked_add(jiff::SignedDuration::from_hours(2)).unwrap();
    feed.refresh(&fleet, t2);
    let second = store.snapshot().unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(
        second.records,
        first.records - 7,
        "openssl's seven records are gone"
    );
    let osv = store
        .import_of(&fixture("advisories/osv"))
        .unwrap()
        .unwrap();
    assert_eq!(osv.checked_at, t2.to_string());
    assert_eq!(osv.imported_at, t0.to_string());
}

/// Advisory data is outside text: ids, CVEs and skip reasons reach the terminal escaped.
#[test]
fn hostile_advisory_text_is_escaped_for_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    let record = |id: &str, events: serde_json::Value| {
        serde_json::json!({
            "schema_version": "1.6.0",
            "id": id,
            "summary": "openssl \u{1b}]0;owned\u{7} update",
            "modified": "2026-03-02T10:00:00Z",
            "upstream": ["CVE-2026-4242\u{1b}[2J"],
            "affected": [{
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}]
            }]
        })
        .to_string()
    };
    let events = serde_json::json!([{"introduced": "0"}, {"fixed": "9.9.9-1"}]);
    std::fs::write(osv.join("a.json"), record("DSA-9999-1\u{1b}[31m", events)).unwrap();
    // Malformed (two events in one object): skipped, its reason printed.
    let events = serde_json::json!([{"introduced": "0", "fixed": "9.9.9-1"}]);
    std::fs::write(osv.join("b.json"), record("DSA-9998-1\u{1b}[2J", events)).unwrap();
    let out = run(
        dir.path(),
        &[
            "advisories",
            "import",
            &osv.to_string_lossy(),
            "--store",
            &store,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains(r"DSA-9998-1\u{1b}[2J"), "{}", text(&out));
    let out = run(
        dir.path(),
        &[
            "vulns",
            "--repo",
            &fixture("../../examples/fleet"),
            "--observed",
            &fixture("plan/example-observed.json"),
            "--store",
            &store,
            "--at",
            "2026-11-29T02:30:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains(r"DSA-9999-1\u{1b}[31m"), "{stdout}");
}
