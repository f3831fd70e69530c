//! Webhook alerts end to end: the real `patchkeeper serve` (its hosts unreachable on purpose:
//! connection refused, so each host is reported `unreachable` without a lab) and a real HTTP
//! receiver on loopback that the test controls — it answers 500 until told otherwise and
//! records every request. Signatures verified with HMAC-SHA256, retries after 500s, one
//! alert per standing condition (across reconciles and across a restart of `serve`), a
//! resolved notice with the same id when a condition clears.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::api::{client, wait_reconciled, Fleet, FleetSpec, Server};
use common::git::git;
use common::webhook::{Received, Receiver};
use serde_json::Value;

const SECRET: &str = "webhook-test-secret-0123456789";
const SECRET_ENV: &str = "PK_TEST_WEBHOOK_SECRET";

fn verify(r: &Received) {
    common::webhook::verify(r, SECRET);
}

fn fleet(receiver: &Receiver) -> Fleet {
    fleet_with(receiver, "")
}

/// A fleet whose `ops` webhook is `receiver`, with `more` webhooks (YAML list items).
fn fleet_with(receiver: &Receiver, more: &str) -> Fleet {
    let fleet = Fleet::new(FleetSpec {
        tokens: &[("reader", &["read"], None), ("admin", &["admin"], None)],
        requests: None,
        hosts: 2,
    });
    let settings = fleet.work.join("patchkeeper.yaml");
    let mut text = std::fs::read_to_string(&settings).expect("settings");
    text.push_str(&format!(
        "  notifications:\n    retryInitial: 1s\n    retryMax: 2s\n    webhooks:\n      - name: ops\n        url: {}\n        secretEnv: {SECRET_ENV}\n        events: [host-unreachable, commit-invalid]\n{more}",
        receiver.url
    ));
    std::fs::write(&settings, text).expect("write");
    commit_and_push(&fleet, "notifications");
    fleet
}

fn commit_and_push(fleet: &Fleet, message: &str) {
    git(&fleet.work, &["add", "-A"]);
    git(&fleet.work, &["commit", "-q", "-m", message]);
    git(
        &fleet.work,
        &["push", "-q", &fleet.bare.display().to_string(), "HEAD:main"],
    );
}

fn serve(fleet: &Fleet) -> Server {
    let url = fleet.url();
    let cache = fleet.root.path().join("cache").display().to_string();
    Server::start_with_env(
        fleet.root.path(),
        &[(SECRET_ENV, SECRET)],
        &["--repo", &url, "--cache", &cache, "--interval", "1h"],
    )
}

fn reconcile(server: &Server, fleet: &Fleet) {
    let r = client()
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(fleet.token("admin"))
        .send()
        .expect("POST /api/v1/reconcile");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Deliveries the receiver accepted, as (status, event, key, id).
fn accepted(received: &[Received]) -> Vec<(String, String, String, String)> {
    received
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| {
            let v = r.json();
            (
                v["status"].as_str().unwrap_or_default().to_owned(),
                v["event"].as_str().unwrap_or_default().to_owned(),
                v["key"].as_str().unwrap_or_default().to_owned(),
                v["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn firing_ids(received: &[Received], key: &str) -> BTreeSet<String> {
    received
        .iter()
        .map(Received::json)
        .filter(|v| v["status"] == "firing" && v["key"] == key)
        .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Pushes a commit that does not validate, asks for a reconcile, and waits for its alert:
/// a marker that the notifier judged every state published before it.
fn invalid_commit_marker(server: &Server, fleet: &Fleet, receiver: &Receiver) -> String {
    std::fs::write(
        fleet.work.join("windows/bad.yaml"),
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: bad}\nspec:\n  alwaysOpen: maybe\n",
    )
    .expect("write");
    commit_and_push(fleet, "a window that does not validate");
    let bad = git(&fleet.work, &["rev-parse", "HEAD"]).trim().to_owned();
    reconcile(server, fleet);
    let key = format!("commit-invalid/{bad}");
    receiver.wait_until("the commit-invalid alert", |r| {
        accepted(r)
            .iter()
            .any(|(s, _, k, _)| s == "firing" && *k == key)
    });
    key
}

#[test]
fn alerts_are_signed_retried_sent_once_per_condition_and_resolved() {
    let receiver = Receiver::start(500);
    let chat = Receiver::start(200);
    let fleet = fleet_with(
        &receiver,
        &format!(
            "      - name: chat\n        url: {}\n        format: slack\n        events: [commit-invalid]\n",
            chat.url
        ),
    );
    let server = serve(&fleet);
    wait_reconciled(&server, fleet.token("reader"));

    // The receiver fails: the same alert is retried (same id), nothing is lost.
    let r = receiver.wait_until("a retried delivery", |r| {
        let ids: Vec<_> = r.iter().map(|r| r.json()["id"].clone()).collect();
        ids.iter()
            .any(|id| ids.iter().filter(|i| *i == id).count() >= 2)
    });
    assert!(r.iter().all(|r| r.answered == 500));
    receiver.answer(200);
    let r = receiver.wait_until("both hosts' alerts delivered", |r| {
        let a = accepted(r);
        ["host-unreachable/web-001", "host-unreachable/web-002"]
            .iter()
            .all(|k| a.iter().any(|(s, _, key, _)| s == "firing" && key == k))
    });
    for x in &r {
        verify(x);
    }
    let first = r
        .iter()
        .map(Received::json)
        .find(|v| v["key"] == "host-unreachable/web-001")
        .expect("web-001's alert");
    assert_eq!(first["event"], "host-unreachable");
    assert_eq!(first["host"], "web-001");
    assert_eq!(first["summary"], "host web-001 could not be reached");
    assert!(first["openedAt"].is_string());

    // Another reconcile: the hosts are still unreachable, no new alert.
    reconcile(&server, &fleet);
    let marker = invalid_commit_marker(&server, &fleet, &receiver);
    // The Slack-compatible target got only what it asked for, as `text`, unsigned.
    let c = chat.wait_until("the chat alert", |r| !r.is_empty());
    assert_eq!(c.len(), 1, "{c:?}");
    let text = c[0].json()["text"].as_str().expect("text").to_owned();
    assert!(
        text.starts_with(
            ":rotating_light: *patchkeeper FIRING* `commit-invalid`: the desired commit "
        ),
        "{text}"
    );
    assert!(!c[0].headers.contains_key("x-patchkeeper-signature"));
    let r = receiver.wait_until("nothing", |_| true);
    for host in ["web-001", "web-002"] {
        let ids = firing_ids(&r, &format!("host-unreachable/{host}"));
        assert_eq!(ids.len(), 1, "{host} alerted more than once: {ids:?}");
    }

    // The commit is fixed and web-002 leaves the inventory: both conditions resolve, with
    // the ids they fired with.
    std::fs::remove_file(fleet.work.join("windows/bad.yaml")).expect("rm");
    let inv = fleet.work.join("inventory/hosts.yaml");
    let text = std::fs::read_to_string(&inv).expect("inventory");
    let kept: String = text
        .lines()
        .filter(|l| !l.contains("web-002"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&inv, kept).expect("write");
    commit_and_push(&fleet, "fixed; web-002 retired");
    reconcile(&server, &fleet);
    let r = receiver.wait_until("the resolved notices", |r| {
        let a = accepted(r);
        [marker.as_str(), "host-unreachable/web-002"]
            .iter()
            .all(|k| a.iter().any(|(s, _, key, _)| s == "resolved" && key == k))
    });
    for key in [marker.as_str(), "host-unreachable/web-002"] {
        let fired = firing_ids(&r, key);
        let resolved: Vec<Value> = r
            .iter()
            .map(Received::json)
            .filter(|v| v["status"] == "resolved" && v["key"] == key)
            .collect();
        assert_eq!(fired.len(), 1, "{key}");
        assert!(resolved
            .iter()
            .all(|v| fired.contains(v["id"].as_str().unwrap_or_default())));
        assert!(resolved.iter().all(|v| v["resolvedAt"].is_string()));
    }
    assert!(
        !accepted(&r)
            .iter()
            .any(|(s, _, k, _)| s == "resolved" && k == "host-unreachable/web-001"),
        "web-001 is still unreachable"
    );
    for x in &r {
        verify(x);
    }
}

#[test]
fn an_undelivered_alert_survives_a_restart_and_is_not_repeated() {
    let receiver = Receiver::start(500);
    let fleet = fleet(&receiver);
    let mut server = serve(&fleet);
    wait_reconciled(&server, fleet.token("reader"));
    // Deliveries to one target go in order: web-002's waits behind web-001's.
    let before = receiver.wait_until("web-001's alert attempted twice", |r| {
        r.iter()
            .filter(|r| r.json()["key"] == "host-unreachable/web-001")
            .count()
            >= 2
    });
    assert!(before.iter().all(|r| r.answered == 500));
    assert_eq!(server.terminate(Duration::from_secs(120)), Some(0));

    // The receiver recovers while serve is down; serve starts again on the same state.
    receiver.answer(200);
    let server = serve(&fleet);
    wait_reconciled(&server, fleet.token("reader"));
    let marker = invalid_commit_marker(&server, &fleet, &receiver);
    let r = receiver.wait_until("both hosts' alerts delivered", |r| {
        let a = accepted(r);
        ["host-unreachable/web-001", "host-unreachable/web-002"]
            .iter()
            .all(|k| a.iter().any(|(s, _, key, _)| s == "firing" && key == k))
    });
    let key = "host-unreachable/web-001";
    let ids = firing_ids(&before, key);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        firing_ids(&r, key),
        ids,
        "the alert delivered after the restart is the one queued before it, and no other"
    );
    assert_eq!(firing_ids(&r, "host-unreachable/web-002").len(), 1);
    assert!(accepted(&r).iter().any(|(_, _, k, _)| *k == marker));
    for x in &r {
        verify(x);
    }
}
