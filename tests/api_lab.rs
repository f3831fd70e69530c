//! The API over a real reconcile of the lab fleet: `serve --listen` on a bare remote of the
//! lab's fleet repo, real sshd hosts with real dpkg/apt and rpm/dnf. A reconcile asked for
//! through the API applies the baseline, and its events reach a server-sent-events client
//! in order; reads never observe a host again (the hosts' sshd logs count the logins); the
//! plan the API serves is the plan `patchkeeper plan --json` makes; a patch request filed
//! through the API goes from submitted to compliant; metrics pass promtool. The lab's own
//! advisory data (Settings' `advisories.sources`), re-imported by serve, shows on the hosts
//! with deadlines and in the fleet counts, and the apply closes the critical one.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::api::{client, get, wait_for, wait_reconciled, Server};
use common::git::git;
use common::lab::{deb, rpm, Lab};
use serde_json::Value;

/// A host of a plan: name, status, and (package, to-version) changes.
type HostChanges = (String, String, Vec<(String, String)>);

fn logins(lab: &Lab) -> usize {
    lab.hosts()
        .iter()
        .map(|h| {
            std::fs::read_to_string(&h.sshd_log)
                .unwrap_or_default()
                .matches("Accepted publickey")
                .count()
        })
        .sum()
}

/// `id severity package fixed state` of each advisory of a host as the API shows it.
fn advisories(host: &Value) -> Vec<String> {
    host["advisories"]
        .as_array()
        .unwrap_or_else(|| panic!("no advisories: {host:#}"))
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {} {}",
                a["id"].as_str().unwrap_or("?"),
                a["severity"].as_str().unwrap_or("?"),
                a["package"].as_str().unwrap_or("?"),
                a["fixed"].as_str().unwrap_or("-"),
                a["state"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

/// The fleet's open advisories and hosts with open critical and high ones (the counts are
/// top-level fields of `/api/v1/fleet`).
fn advisory_counts(c: &Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        c["openAdvisories"].as_u64(),
        c["hostsWithCriticalAdvisories"].as_u64(),
        c["hostsWithHighAdvisories"].as_u64(),
    )
}

/// Server-sent events until (and with) `reconcile-finished`.
fn events_until_finished(
    mut lines: BufReader<reqwest::blocking::Response>,
) -> Vec<(u64, String, Value)> {
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("the event stream ended early: {out:#?}");
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            if let (Some(i), false) = (id.take(), event.is_empty()) {
                let value: Value = serde_json::from_str(&data).expect("event data is JSON");
                let done = event == "reconcile-finished";
                out.push((i, std::mem::take(&mut event), value));
                if done {
                    return out;
                }
            }
            event.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

#[test]
fn a_reconcile_asked_through_the_api_streams_its_events_in_order() {
    let lab = Lab::up(1, 1);
    let admin = common::api::token_new("ops", &["admin"], None);
    // Settings for a fetched repo: key paths absolute, one admin token, the lab's advisory
    // data as sources.
    let settings = format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: lab\nspec:\n  ssh:\n    user: root\n    identityFile: {}\n    knownHosts: {}\n  advisories:\n    sources: [advisories/debian-tracker.json, advisories/osv]\n    ecosystems: {{pklab-el: Rocky Linux}}\n  api:\n    tokens:\n      - name: ops\n        sha256: {}\n        scopes: [admin]\n",
        lab.info().ssh.identity_file.display(),
        lab.info().ssh.known_hosts.display(),
        admin.entry["sha256"].as_str().expect("sha256"),
    );
    std::fs::write(lab.dir().join("patchkeeper.yaml"), &settings).expect("settings");
    git(
        lab.dir(),
        &[
            "commit",
            "-q",
            "-am",
            "settings: absolute key paths, an API token",
        ],
    );
    let root = tempfile::tempdir().expect("tempdir");
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &lab.dir().display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let cache = root.path().join("cache").display().to_string();
    // serve reads a checkout in its cache: the lab's key files are outside it, so the
    // controller allows their directories (the fleet repo alone cannot).
    let key_dirs: Vec<String> = [&lab.info().ssh.identity_file, &lab.info().ssh.known_hosts]
        .iter()
        .filter_map(|p| p.parent())
        .map(|d| d.display().to_string())
        .collect();
    // The store `patchkeeper plan` reads in the lab's directory, so both plan alike.
    let store = lab
        .dir()
        .join(".patchkeeper/advisories.db")
        .display()
        .to_string();
    let mut args = vec![
        "--repo",
        &url,
        "--cache",
        &cache,
        "--interval",
        "1h",
        "--store",
        &store,
    ];
    for d in &key_dirs {
        args.extend(["--allow-path", d.as_str()]);
    }
    let server = Server::start_in(root.path(), &args);
    let token = admin.secret.as_str();

    // The first reconcile observes and plans (no autoApply yet): both hosts have changes.
    wait_reconciled(&server, token);
    let (status, plan) = get(&server, token, "/api/v1/plan");
    assert_eq!(status, 200);
    assert_eq!(plan["summary"]["hostsToUpdate"], 2, "{plan:#}");
    // The same plan `patchkeeper plan --json` makes from the same commit.
    let cli = common::cli::run(lab.dir(), &["plan", "--json"]);
    assert_eq!(cli.status.code(), Some(0), "{}", common::cli::text(&cli));
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("plan JSON");
    let changes = |p: &Value| -> Vec<HostChanges> {
        p["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap_or("").to_owned(),
                    h["status"].as_str().unwrap_or("").to_owned(),
                    h["changes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            (
                                c["package"].as_str().unwrap_or("").to_owned(),
                                c["to"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(changes(&plan), changes(&cli));
    assert_eq!(plan["fleetCommit"], cli["fleetCommit"]);
    // Both plans were made with the advisory data serve imported, and name the same fixes.
    assert!(plan["advisorySnapshot"].is_string(), "{plan:#}");
    assert_eq!(plan["advisorySnapshot"], cli["advisorySnapshot"]);
    let fixes = |p: &Value| -> Vec<String> {
        p["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|h| h["changes"].as_array().into_iter().flatten())
            .flat_map(|c| c["fixes"].as_array().into_iter().flatten())
            .map(|f| f["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert!(
        fixes(&plan).contains(&"PKLAB-2026:0005".to_owned()),
        "{plan:#}"
    );
    assert_eq!(fixes(&plan), fixes(&cli));

    // Each host shows its open advisories from the report, the critical one with a deadline.
    let (status, rpm1) = get(&server, token, "/api/v1/hosts/rpm-1");
    assert_eq!(status, 200);
    assert_eq!(
        advisories(&rpm1),
        [
            "PKLAB-2026:0005 critical pk-kernel 1.1-1 fix-offered",
            "PKLAB-2026:0002 high libpk 1.2-1 fix-offered",
            "PKLAB-2026:0006 high pk-held 1.1-1 fix-held",
        ],
        "{rpm1:#}"
    );
    let critical = &rpm1["advisories"][0];
    assert_eq!(critical["cves"], serde_json::json!(["CVE-2026-9005"]));
    assert_eq!(critical["installed"], "1.0-1");
    let deadline: jiff::Timestamp = critical["deadline"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no deadline: {critical:#}"));
    let first_seen: jiff::Timestamp = critical["firstSeen"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no firstSeen: {critical:#}"));
    assert!(deadline > first_seen, "{critical:#}");
    assert_eq!(rpm1["advisorySnapshot"], plan["advisorySnapshot"]);
    assert_eq!(
        (
            rpm1["openAdvisories"].as_u64(),
            rpm1["advisorySeverity"].as_str()
        ),
        (Some(3), Some("critical"))
    );
    let (_, deb1) = get(&server, token, "/api/v1/hosts/deb-1");
    assert_eq!(
        advisories(&deb1),
        [
            "CVE-2026-9006 high pk-held 1.1-1 fix-held",
            "PKDSA-0001-1 high pk-libs 1.2-1 fix-offered",
            "CVE-2026-9005 medium pk-kernel 1.1-1 fix-offered",
        ],
        "{deb1:#}"
    );
    let (_, fleet) = get(&server, token, "/api/v1/fleet");
    assert_eq!(
        advisory_counts(&fleet),
        (Some(6), Some(1), Some(2)),
        "{fleet:#}"
    );

    // Reads never observe a host: the hosts' logins do not move however much is read.
    let before = logins(&lab);
    for _ in 0..10 {
        for path in [
            "/api/v1/fleet",
            "/api/v1/hosts",
            "/api/v1/hosts/deb-1",
            "/api/v1/plan",
            "/api/v1/windows",
            "/api/v1/reconcile",
            "/api/v1/patch-requests",
        ] {
            assert_eq!(get(&server, token, path).0, 200, "{path}");
        }
    }
    assert_eq!(logins(&lab), before, "an API read logged in to a host");

    // A patch request through the API for the version the plan offers deb-1: it waits on
    // its review branch until a reviewer merges it (below, with the autoApply change).
    let offered = plan["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["host"] == "deb-1")
        .flat_map(|h| h["changes"].as_array().into_iter().flatten())
        .find(|c| c["package"] == "libpk")
        .and_then(|c| c["to"].as_str())
        .unwrap_or_else(|| panic!("no libpk change for deb-1: {plan:#}"))
        .to_owned();
    let request = serde_json::json!({
        "apiVersion": "patchkeeper.dev/v1",
        "kind": "PatchRequest",
        "metadata": { "name": "libpk-fix" },
        "spec": {
            "selector": { "groups": ["debian"] },
            "packages": [{ "name": "libpk", "minVersion": offered }],
            "reason": "libpk: the fixed build"
        }
    });
    let r = client()
        .post(server.url("/api/v1/patch-requests"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    let (_, filed) = get(&server, token, "/api/v1/patch-requests/libpk-fix");
    assert_eq!(filed["state"], "submitted", "{filed:#}");
    git(
        lab.dir(),
        &["fetch", "-q", &url, "patchkeeper/requests/libpk-fix"],
    );
    git(lab.dir(), &["merge", "-q", "--ff-only", "FETCH_HEAD"]);

    // Listen, turn autoApply on in the fleet repo, and ask for a reconcile now.
    let stream = reqwest::blocking::Client::builder()
        .build()
        .expect("client")
        .get(server.url("/api/v1/events"))
        .bearer_auth(token)
        .send()
        .expect("events");
    assert_eq!(stream.status().as_u16(), 200);
    let listener = std::thread::spawn(move || events_until_finished(BufReader::new(stream)));
    std::fs::write(
        lab.dir().join("patchkeeper.yaml"),
        settings.replace("spec:\n", "spec:\n  reconcile:\n    autoApply: true\n"),
    )
    .expect("settings");
    git(
        lab.dir(),
        &["commit", "-q", "-am", "settings: apply automatically"],
    );
    git(lab.dir(), &["push", "-q", &url, "main"]);
    let head = git(lab.dir(), &["rev-parse", "HEAD"]).trim().to_owned();
    let r = client()
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(token)
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    let events = listener.join().expect("the event reader");

    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind);
    let last = |kind: &str| kinds.iter().rposition(|k| *k == kind);
    let started = at("reconcile-started").unwrap_or_else(|| panic!("{kinds:?}"));
    assert_eq!(events[started].2["commit"], head.as_str());
    assert_eq!(events[started].2["reason"], "new-commit");
    let plan_ready = at("plan-ready").unwrap_or_else(|| panic!("{kinds:?}"));
    assert_eq!(events[plan_ready].2["hostsToUpdate"], 2);
    let observed_first: Vec<usize> = kinds[..plan_ready]
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == "host-observed")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(observed_first.len(), 2, "{kinds:?}");
    assert!(observed_first.iter().all(|i| *i > started));
    // Batches start in plan order, each before its hosts are applied.
    let batches: Vec<usize> = (0..kinds.len())
        .filter(|i| kinds[*i] == "batch-started")
        .collect();
    assert_eq!(batches.len(), 2, "canary, then the rest: {kinds:?}");
    assert_eq!(events[batches[0]].2["stage"], "canary");
    assert!(batches[0] > plan_ready);
    let applied: Vec<usize> = (0..kinds.len())
        .filter(|i| kinds[*i] == "host-applied")
        .collect();
    assert_eq!(applied.len(), 2, "{events:#?}");
    assert!(
        batches[0] < applied[0] && applied[0] < batches[1] && batches[1] < applied[1],
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"host-failed") && !kinds.contains(&"host-rolled-back"),
        "{events:#?}"
    );
    // Observed again after the apply, then reported, then finished.
    let report = last("report-committed").unwrap_or_else(|| panic!("{kinds:?}"));
    assert!(
        last("host-observed").is_some_and(|i| i > applied[1] && i < report),
        "{kinds:?}"
    );
    assert_eq!(events[report].2["kind"], "apply");
    let finished = events.len() - 1;
    assert!(report < finished);
    assert_eq!(events[finished].2["ok"], true, "{:#}", events[finished].2);
    // The report the event names is on the remote's reports branch.
    let on_remote = git(&bare, &["rev-parse", "patchkeeper/reports"])
        .trim()
        .to_owned();
    assert_eq!(events[report].2["commit"], on_remote.as_str());

    // The packages really changed, and the API says so.
    assert!(deb(&lab, "deb-1", "libpk").ends_with(" ii"));
    assert_ne!(rpm(&lab, "rpm-1", "libpk"), "");
    wait_for(
        "the hosts to be reported compliant",
        Duration::from_secs(30),
        || {
            let (_, hosts) = get(&server, token, "/api/v1/hosts?state=compliant");
            hosts["total"] == 2
        },
    );
    // The request's host has the fix, by the report of the desired commit.
    wait_for(
        "the patch request to be compliant",
        Duration::from_secs(30),
        || get(&server, token, "/api/v1/patch-requests/libpk-fix").1["state"] == "compliant",
    );
    let (_, done) = get(&server, token, "/api/v1/patch-requests/libpk-fix");
    assert_eq!(
        (done["hosts"].as_u64(), done["applied"].as_u64()),
        (Some(1), Some(1)),
        "{done:#}"
    );
    assert_eq!(done["requestedBy"], "ops", "{done:#}");
    assert_eq!(done["commit"], head.as_str(), "{done:#}");
    let (_, reconcile) = get(&server, token, "/api/v1/reconcile");
    for h in ["deb-1", "rpm-1"] {
        assert_eq!(
            reconcile["hosts"][h]["applied"], "compliant",
            "{reconcile:#}"
        );
    }
    let (_, plan) = get(&server, token, "/api/v1/plan");
    assert_eq!(plan["summary"]["hostsToUpdate"], 0, "converged: {plan:#}");
    // The apply closed the critical advisory; the held pk-held's stay open.
    let (_, rpm1) = get(&server, token, "/api/v1/hosts/rpm-1");
    assert_eq!(
        advisories(&rpm1),
        ["PKLAB-2026:0006 high pk-held 1.1-1 fix-held"],
        "{rpm1:#}"
    );
    let (_, fleet) = get(&server, token, "/api/v1/fleet");
    assert_eq!(
        advisory_counts(&fleet),
        (Some(2), Some(0), Some(2)),
        "{fleet:#}"
    );

    let text = client()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    if let Err(e) = common::api::promtool_check(&text) {
        panic!("promtool: {e}\n{text}");
    }
    for line in [
        "patchkeeper_apply_hosts_total{outcome=\"compliant\"} 2",
        "patchkeeper_hosts{state=\"compliant\"} 2",
        "patchkeeper_reconcile_duration_seconds_count 2",
        "patchkeeper_hosts_with_open_advisories{severity=\"critical\"} 0",
        "patchkeeper_hosts_with_open_advisories{severity=\"high\"} 2",
        "patchkeeper_open_advisories 2",
    ] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
}
