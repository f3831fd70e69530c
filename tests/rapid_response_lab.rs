//! Rapid response end to end (issue 23) on a real lab host, a bare Git remote and a real
//! loopback webhook receiver: `serve` runs with autoApply on, the baseline's window frozen
//! and an emergency window `urgent`. A critical advisory appears (a new OSV file imported
//! into the store serve reads) → one reconcile later a proposal branch
//! `patchkeeper/requests/pkdsa-9000-1` is on the remote with the request for exactly the
//! affected host and fixed version, and one `request-proposed` alert names it. The test
//! merges it with `git`; the next reconcile applies it in the emergency window while the
//! normal one stays frozen (the baseline's own security updates wait); the report shows the
//! advisory closed with its time to remediation; another reconcile proposes nothing new.
//! The event stream announces the critical finding once (`critical-finding`), not on every
//! round.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::api::{client, get, wait_for, wait_reconciled, Server};
use common::git::git;
use common::lab::{deb, Lab};
use common::webhook::Receiver;
use serde_json::Value;

const BRANCH: &str = "patchkeeper/requests/pkdsa-9000-1";

/// Server-sent events (type, data) until (and with) the `rounds`-th `reconcile-finished`.
fn events_of_rounds(
    mut lines: BufReader<reqwest::blocking::Response>,
    rounds: usize,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let (mut event, mut data, mut finished) = (String::new(), String::new(), 0);
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("the event stream ended early: {out:#?}");
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            if !event.is_empty() && !data.is_empty() {
                let value: Value = serde_json::from_str(&data).expect("event data is JSON");
                if event == "reconcile-finished" {
                    finished += 1;
                }
                out.push((std::mem::take(&mut event), value));
                if finished == rounds {
                    return out;
                }
            }
            event.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

/// Asks for a reconcile and waits until one finished after it (state the server reports).
fn reconcile(server: &Server, token: &str) -> Value {
    let (_, before) = get(server, token, "/api/v1/fleet");
    let previous = before["reconcile"]["finishedAt"].clone();
    let r = client()
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(token)
        .send()
        .expect("POST /api/v1/reconcile");
    assert!(r.status().is_success(), "{}", r.status());
    let mut fleet = Value::Null;
    wait_for(
        "a reconcile after the request",
        Duration::from_secs(300),
        || {
            fleet = get(server, token, "/api/v1/fleet").1;
            let r = &fleet["reconcile"];
            r["finishedAt"].is_string() && r["finishedAt"] != previous && r["queued"] == false
        },
    );
    assert_eq!(
        fleet["reconcile"]["ok"],
        true,
        "{fleet:#}\n{}",
        server.log()
    );
    fleet
}

fn remote_branches(bare: &std::path::Path) -> Vec<String> {
    git(
        bare,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/patchkeeper/requests/",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn report_file(bare: &std::path::Path, path: &str) -> Value {
    let text = git(bare, &["show", &format!("patchkeeper/reports:{path}")]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_critical_advisory_is_proposed_merged_and_applied_in_the_emergency_window() {
    let lab = Lab::up(1, 0);
    let dir = lab.dir();
    let receiver = Receiver::start(200);
    let admin = common::api::token_new("ops", &["admin"], None);
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let freeze_start = now
        .checked_sub(day)
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ");
    let freeze_end = now
        .checked_add(day * 60)
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ");
    // The normal window is frozen for 60 days; `urgent` is open, for requests only.
    common::lab::write(
        &lab,
        "windows/always.yaml",
        &format!("apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: always\nspec:\n  alwaysOpen: true\n  freezes:\n    - name: year-end\n      start: \"{freeze_start}\"\n      end: \"{freeze_end}\"\n"),
    );
    common::lab::write(
        &lab,
        "windows/urgent.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: urgent\nspec:\n  alwaysOpen: true\n  emergency: true\n",
    );
    let settings = format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: lab\nspec:\n  reconcile:\n    autoApply: true\n  ssh:\n    user: root\n    identityFile: {}\n    knownHosts: {}\n  advisories:\n    sources: [advisories/debian-tracker.json, advisories/osv]\n  rapidResponse:\n    minSeverity: critical\n    window: urgent\n  api:\n    tokens:\n      - name: ops\n        sha256: {}\n        scopes: [admin]\n  notifications:\n    webhooks:\n      - name: ops\n        url: {}\n        events: [request-proposed]\n",
        lab.info().ssh.identity_file.display(),
        lab.info().ssh.known_hosts.display(),
        admin.entry["sha256"].as_str().expect("sha256"),
        receiver.url,
    );
    std::fs::write(dir.join("patchkeeper.yaml"), &settings).expect("settings");
    git(dir, &["add", "-A", "--", ":!.patchkeeper"]);
    git(
        dir,
        &[
            "commit",
            "-q",
            "-m",
            "frozen normal window, emergency window, rapid response",
        ],
    );
    let out = common::cli::run(dir, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));

    let root = tempfile::tempdir().expect("tempdir");
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &dir.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let cache = root.path().join("cache").display().to_string();
    let store = dir.join(".patchkeeper/advisories.db").display().to_string();
    let key_dirs: Vec<String> = [&lab.info().ssh.identity_file, &lab.info().ssh.known_hosts]
        .iter()
        .filter_map(|p| p.parent())
        .map(|d| d.display().to_string())
        .collect();
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
    let mut server = Server::start_in(root.path(), &args);
    let token = admin.secret.as_str();

    // Before: the lab's own advisories are high at most: nothing is proposed, and the
    // frozen window keeps every change waiting.
    wait_reconciled(&server, token);
    assert!(
        remote_branches(&bare).is_empty(),
        "{:?}",
        remote_branches(&bare)
    );
    let installed = deb(&lab, "deb-1", "pk-kernel");
    assert_eq!(installed, "1.0-1 ii");

    // A critical advisory appears: a new OSV record for pk-kernel, imported into the store.
    let fixed = "1.1-1";
    let osv = serde_json::json!({
        "schema_version": "1.7.0",
        "id": "PKDSA-9000-1",
        "summary": "pk-kernel - critical security update",
        "modified": "2026-11-30T00:00:00Z",
        "upstream": ["CVE-2026-9900"],
        "database_specific": {"severity": "critical"},
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "pk-kernel"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }]
    });
    let new = dir.join(".patchkeeper/PKDSA-9000-1.json");
    std::fs::write(&new, osv.to_string()).expect("osv");
    let out = common::cli::run(dir, &["advisories", "import", &new.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));

    // Listen to the event stream across the next two reconciles.
    let stream = reqwest::blocking::Client::builder()
        .build()
        .expect("client")
        .get(server.url("/api/v1/events"))
        .bearer_auth(token)
        .send()
        .expect("events");
    assert_eq!(stream.status().as_u16(), 200);
    let listener = std::thread::spawn(move || events_of_rounds(BufReader::new(stream), 2));

    // One reconcile: the proposal is on the remote, for exactly deb-1 and the fixed version.
    reconcile(&server, token);
    assert_eq!(remote_branches(&bare), [BRANCH], "{}", server.log());
    let yaml = git(
        &bare,
        &["show", &format!("{BRANCH}:requests/pkdsa-9000-1.yaml")],
    );
    let doc: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    let spec = &doc["spec"];
    assert_eq!(doc["kind"], "PatchRequest");
    assert_eq!(
        spec["selector"],
        serde_json::json!({"hosts": ["deb-1"]}),
        "{yaml}"
    );
    assert_eq!(
        spec["packages"],
        serde_json::json!([{"name": "pk-kernel", "minVersion": fixed}]),
        "{yaml}"
    );
    assert_eq!(
        spec["advisories"],
        serde_json::json!(["PKDSA-9000-1", "CVE-2026-9900"])
    );
    assert_eq!(spec["requestedBy"], "patchkeeper");
    assert_eq!(spec["window"], "urgent");
    // Critical: the built-in policy's 7 days.
    let deadline: jiff::Timestamp = spec["deadline"]
        .as_str()
        .expect("deadline")
        .parse()
        .expect("RFC 3339");
    assert!(
        deadline > now.checked_add(day * 6).expect("time")
            && deadline <= jiff::Timestamp::now().checked_add(day * 7).expect("time"),
        "{deadline}"
    );
    let message = git(&bare, &["log", "-1", "--format=%B", BRANCH]);
    assert!(
        message.starts_with("propose patch request pkdsa-9000-1: critical PKDSA-9000-1"),
        "{message}"
    );
    // The plan for it, as `plan --format markdown` renders it, names the emergency window.
    assert!(
        message
            .contains("Window: emergency window \\`urgent\\`: request \\`pkdsa-9000-1\\` is due"),
        "{message}"
    );
    assert!(
        message.contains("| pk-kernel | 1.0-1 | 1.1-1 |"),
        "{message}"
    );

    // One alert names the branch.
    let received = receiver.wait_until("the proposal alert", |r| {
        r.iter().any(|r| r.json()["event"] == "request-proposed")
    });
    let proposed: Vec<Value> = received
        .iter()
        .map(|r| r.json())
        .filter(|b| b["event"] == "request-proposed")
        .collect();
    assert_eq!(proposed.len(), 1, "{proposed:?}");
    assert_eq!(proposed[0]["status"], "firing");
    assert!(
        proposed[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(BRANCH)),
        "{}",
        proposed[0]
    );

    // The critical finding was announced on the event stream once, with what it is about;
    // another round with it still open announces nothing.
    reconcile(&server, token);
    let events = listener.join().expect("the event reader");
    let critical: Vec<&Value> = events
        .iter()
        .filter(|(kind, _)| kind == "critical-finding")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(critical.len(), 1, "{events:#?}");
    let c = critical[0];
    assert_eq!(c["type"], "critical-finding");
    assert_eq!(c["host"], "deb-1");
    assert_eq!(c["advisory"], "PKDSA-9000-1");
    assert_eq!(c["cves"], serde_json::json!(["CVE-2026-9900"]));
    assert_eq!(c["source"], "pk-kernel");
    assert_eq!(c["package"], "pk-kernel");
    assert_eq!(c["installed"], "1.0-1");
    assert_eq!(c["fixed"], fixed);
    assert_eq!(c["state"], "fix-offered");
    assert!(c["advisorySnapshot"].is_string(), "{c:#}");
    let first_seen: jiff::Timestamp = c["firstSeen"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no firstSeen: {c:#}"));
    assert!(first_seen >= now, "{c:#}");
    // Announced in the first of the two rounds, before its report.
    let finished = events
        .iter()
        .position(|(kind, _)| kind == "reconcile-finished")
        .expect("a finished round");
    let at = events
        .iter()
        .position(|(kind, _)| kind == "critical-finding")
        .expect("the event");
    assert!(at < finished, "{events:#?}");

    // A restart remembers nothing in memory: the branch on the remote says it is proposed,
    // so the first round of the new process writes nothing and alerts nothing new.
    let tip = git(&bare, &["rev-parse", BRANCH]);
    assert_eq!(
        server.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        server.log()
    );
    let server = Server::start_in(root.path(), &args);
    wait_reconciled(&server, token);
    assert_eq!(remote_branches(&bare), [BRANCH]);
    assert_eq!(git(&bare, &["rev-parse", BRANCH]), tip, "{}", server.log());

    // A person reviews and merges it with git; the next reconcile applies it in `urgent`.
    git(dir, &["fetch", "-q", &url, BRANCH]);
    git(dir, &["merge", "-q", "--ff-only", "FETCH_HEAD"]);
    git(dir, &["push", "-q", &url, "HEAD:main"]);
    reconcile(&server, token);
    assert_eq!(deb(&lab, "deb-1", "pk-kernel"), "1.1-1 ii");
    // The baseline's own security update (libpk) waits for the frozen normal window.
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    // With the request satisfied, the normal (frozen) window governs deb-1 again.
    let (_, plan) = get(&server, token, "/api/v1/plan");
    let host = &plan["hosts"][0];
    assert_eq!(host["window"], "always", "{plan:#}");
    assert_eq!(host["status"], "frozen", "{plan:#}");

    // The report: the advisory closed on deb-1, with its time to remediation.
    let names = git(
        &bare,
        &["ls-tree", "--name-only", "patchkeeper/reports", "runs/"],
    );
    let closed: Vec<Value> = names
        .lines()
        .map(|n| report_file(&bare, n))
        .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["kind"] == "critical-closed" && e["advisory"] == "PKDSA-9000-1")
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["host"], "deb-1");
    assert!(
        closed[0]["remediationSeconds"]
            .as_i64()
            .is_some_and(|s| s >= 0),
        "{closed:?}"
    );
    assert!(closed[0]["firstSeen"].is_string() && closed[0]["closedAt"].is_string());
    let host_report = report_file(&bare, "hosts/deb-1.json");
    assert!(
        !host_report.to_string().contains("PKDSA-9000-1"),
        "{host_report}"
    );

    // Another reconcile proposes nothing new: still one branch, one proposal alert.
    reconcile(&server, token);
    assert_eq!(remote_branches(&bare), [BRANCH]);
    assert_eq!(git(&bare, &["rev-parse", BRANCH]), tip);
    // Merged: the proposal's alert resolved (once), and none fired again.
    let received = receiver.wait_until("the proposal alert resolved", |r| {
        r.iter().any(|r| {
            let b = r.json();
            b["event"] == "request-proposed" && b["status"] == "resolved"
        })
    });
    let firing = received
        .iter()
        .map(|r| r.json())
        .filter(|b| b["event"] == "request-proposed" && b["status"] == "firing")
        .count();
    assert_eq!(firing, 1);
}
