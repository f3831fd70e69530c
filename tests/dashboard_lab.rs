//! The dashboard and alerts against a real lab fleet (one Debian, one RPM host over real
//! sshd, the lab's own advisory data): the critical advisory of `rpm-1` raises the banner
//! in a real browser and a signed `vulnerability-opened` webhook; an apply asked through
//! the API changes the hosts' states in the open page without a reload, and the closed
//! advisory sends the resolved notice. Screenshots in
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/lab-*.png`.

mod common;

use common::api::{client, get, wait_reconciled, Server};
use common::browser::Browser;
use common::git::git;
use common::lab::Lab;
use common::webhook::{verify, Receiver};
use serde_json::{json, Value};

const SECRET: &str = "lab-webhook-secret";
const CRITICAL: &str = "vulnerability-opened/rpm-1/PKLAB-2026:0005";

#[test]
fn a_critical_advisory_raises_the_banner_and_an_alert_and_an_apply_shows_live() {
    let lab = Lab::up(1, 1);
    let receiver = Receiver::start(200);
    let admin = common::api::token_new("ops", &["admin"], None);
    let settings = format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata:\n  name: lab\nspec:\n  ssh:\n    user: root\n    identityFile: {}\n    knownHosts: {}\n  advisories:\n    sources: [advisories/debian-tracker.json, advisories/osv]\n    ecosystems: {{pklab-el: Rocky Linux}}\n  api:\n    tokens:\n      - name: ops\n        sha256: {}\n        scopes: [admin]\n  notifications:\n    webhooks:\n      - name: oncall\n        url: {}\n        secretEnv: PK_LAB_WEBHOOK_SECRET\n        minSeverity: critical\n        events: [vulnerability-opened]\n",
        lab.info().ssh.identity_file.display(),
        lab.info().ssh.known_hosts.display(),
        admin.entry["sha256"].as_str().expect("sha256"),
        receiver.url,
    );
    std::fs::write(lab.dir().join("patchkeeper.yaml"), &settings).expect("settings");
    git(
        lab.dir(),
        &["commit", "-q", "-am", "settings: token, webhook"],
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
    let key_dirs: Vec<String> = [&lab.info().ssh.identity_file, &lab.info().ssh.known_hosts]
        .iter()
        .filter_map(|p| p.parent())
        .map(|d| d.display().to_string())
        .collect();
    let store = root.path().join("advisories.db").display().to_string();
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
    let server = Server::start_with_env(root.path(), &[("PK_LAB_WEBHOOK_SECRET", SECRET)], &args);
    let token = admin.secret.as_str();
    wait_reconciled(&server, token);

    // The on-call webhook is told, once, signed.
    let got = receiver.wait_until("the critical alert", |r| {
        r.iter().any(|r| r.json()["key"] == CRITICAL)
    });
    let alert = got
        .iter()
        .find(|r| r.json()["key"] == CRITICAL)
        .expect("the alert");
    verify(alert, SECRET);
    let body = alert.json();
    assert_eq!(
        (&body["status"], &body["severity"], &body["host"]),
        (&json!("firing"), &json!("critical"), &json!("rpm-1")),
        "{body:#}"
    );
    assert!(
        got.iter().all(|r| r.json()["severity"] == "critical"),
        "minSeverity: critical"
    );

    // The browser: sign in, the critical banner.
    let browser = Browser::start();
    browser.go(&server.url("/login"));
    browser.wait(
        "the sign-in page",
        "return !!document.querySelector('#token');",
    );
    browser.type_into("#token", token);
    browser.click("form button[type=submit]");
    browser.wait(
        "the critical banner",
        "return Array.from(document.querySelectorAll('.banner-critical')).some(b => b.textContent.includes('A critical vulnerability is open on 1 host'));",
    );
    browser.wait(
        "the chart",
        "return document.querySelectorAll('#state-chart g[data-commit]').length >= 1;",
    );
    browser.screenshot("lab-overview-critical");

    // The hosts table is the API's, rpm-1 marked critical.
    browser.go(&server.url("/hosts"));
    browser.wait(
        "the hosts table",
        "return !!document.querySelector('#hosts');",
    );
    let (_, api) = get(&server, token, "/api/v1/hosts");
    let names: Vec<Value> = api["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| h["name"].clone())
        .collect();
    assert_eq!(
        browser.js(
            "return Array.from(document.querySelectorAll('#hosts tbody tr')).map(r => r.dataset.host);"
        ),
        Value::Array(names)
    );
    assert_eq!(
        browser.js("return !!document.querySelector('[data-host=\"rpm-1\"] .sev-critical');"),
        json!(true)
    );
    browser.wait(
        "the event stream",
        "return document.body.getAttribute('data-live') === 'connected';",
    );
    browser.js("window.__noReload = 7; return true;");
    browser.screenshot("lab-hosts-before-apply");

    // Apply: autoApply on, pushed, a reconcile asked through the API.
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
    let r = client()
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(token)
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);

    // The open page follows: both hosts compliant, the critical mark gone, no reload.
    browser.wait(
        "both hosts compliant on the page",
        "return ['deb-1', 'rpm-1'].every(h => !!document.querySelector('[data-host=\"' + h + '\"] .state-compliant')) && !document.querySelector('[data-host=\"rpm-1\"] .sev-critical');",
    );
    assert_eq!(
        browser.js("return window.__noReload;"),
        json!(7),
        "the page reloaded"
    );
    browser.screenshot("lab-hosts-after-apply");

    // The apply closed the advisory: the resolved notice, with the alert's id.
    let got = receiver.wait_until("the resolved notice", |r| {
        r.iter()
            .any(|r| r.json()["key"] == CRITICAL && r.json()["status"] == "resolved")
    });
    let resolved = got
        .iter()
        .find(|r| r.json()["key"] == CRITICAL && r.json()["status"] == "resolved")
        .expect("resolved");
    verify(resolved, SECRET);
    assert_eq!(resolved.json()["id"], body["id"]);
    assert_eq!(
        got.iter()
            .filter(|r| r.json()["key"] == CRITICAL && r.json()["status"] == "firing")
            .count(),
        1,
        "one alert for the condition"
    );
    browser.go(&server.url("/"));
    browser.wait(
        "the overview",
        "return !!document.querySelector('#state-chart');",
    );
    assert_eq!(
        browser.js("return Array.from(document.querySelectorAll('.banner-critical')).some(b => b.textContent.includes('critical vulnerability'));"),
        json!(false)
    );
    browser.screenshot("lab-overview-after-apply");
}
