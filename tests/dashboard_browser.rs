//! The dashboard in a real headless browser: Debian's `chromium` driven through
//! `chromedriver` over the WebDriver protocol (a few JSON calls with the blocking client the
//! other tests use), against the real `serve` on loopback. Sign-in through the form, the
//! hosts table against the API, a change arriving over the event stream shown in place
//! without a reload, and the request form filing a commit on the remote. Screenshots go to `$CARGO_TARGET_TMPDIR/dashboard-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (installed by `scripts/lab deps`).

mod common;

use common::api::{client, get, wait_reconciled, Fleet, FleetSpec, Server};
use common::browser::Browser;
use serde_json::{json, Value};

#[test]
fn a_browser_signs_in_lists_the_apis_hosts_and_sees_a_request_arrive_without_reload() {
    let fleet = Fleet::new(FleetSpec {
        tokens: &[("reader", &["read"], None), ("filer", &["request"], None)],
        requests: None,
        hosts: 6,
    });
    let url = fleet.url();
    let cache = fleet.root.path().join("cache").display().to_string();
    let server = Server::start_in(
        fleet.root.path(),
        &["--repo", &url, "--cache", &cache, "--interval", "1h"],
    );
    wait_reconciled(&server, fleet.token("reader"));
    let browser = Browser::start();

    // Sign in through the form.
    browser.go(&server.url("/"));
    browser.wait(
        "the sign-in page",
        "return !!document.querySelector('#token');",
    );
    browser.screenshot("login");
    browser.type_into("#token", fleet.token("reader"));
    browser.click("form button[type=submit]");
    browser.wait(
        "the overview",
        "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Fleet overview';",
    );
    // The cookie is HttpOnly: the page's scripts cannot read it.
    assert_eq!(browser.js("return document.cookie;"), json!(""));
    browser.screenshot("overview");

    // The hosts table lists what the API lists.
    browser.go(&server.url("/hosts"));
    browser.wait(
        "the hosts table",
        "return !!document.querySelector('#hosts');",
    );
    let shown = browser.js(
        "return Array.from(document.querySelectorAll('#hosts tbody tr')).map(r => r.dataset.host);",
    );
    let (_, api) = get(&server, fleet.token("reader"), "/api/v1/hosts");
    let names: Vec<Value> = api["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| h["name"].clone())
        .collect();
    assert_eq!(shown, Value::Array(names));
    browser.screenshot("hosts");

    // The requests page, live: a request filed through the API appears in place.
    browser.go(&server.url("/requests"));
    browser.wait(
        "the event stream",
        "return document.body.getAttribute('data-live') === 'connected';",
    );
    // A marker a reload would lose.
    browser.js("window.__noReload = 42; return true;");
    assert!(browser
        .js("return !document.querySelector('[data-request=\"live-1\"]');")
        .as_bool()
        .expect("bool"));
    let r = client()
        .post(server.url("/api/v1/patch-requests"))
        .bearer_auth(fleet.token("filer"))
        .header("content-type", "application/json")
        .body(
            json!({"metadata": {"name": "live-1"}, "spec": {
                "selector": {"groups": ["web"]},
                "packages": [{"name": "openssl", "minVersion": "3.0.15-1~deb12u1"}],
                "reason": "live update"}})
            .to_string(),
        )
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    browser.wait(
        "the new request on the page",
        "return !!document.querySelector('[data-request=\"live-1\"]');",
    );
    assert_eq!(
        browser.js("return window.__noReload;"),
        json!(42),
        "the page reloaded"
    );
    let status = browser.js("return document.getElementById('live-status').textContent;");
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.contains("request-submitted")),
        "{status}"
    );
    browser.screenshot("requests-live");

    // The form files a request: typed and submitted in the browser, a commit on the remote.
    browser.type_into("#r-name", "form-1");
    browser.type_into("#r-groups", "web");
    browser.type_into("#r-packages", "openssl 3.0.15-1~deb12u1");
    browser.type_into("#r-reason", "filed from the dashboard");
    // The session's token reads only: the form asks for one with the request scope.
    browser.type_into("#r-token", fleet.token("filer"));
    browser.click("#request-form button[type=submit]");
    browser.wait(
        "the filed banner",
        "return !!document.querySelector('.banner-ok') && document.querySelector('.banner-ok').textContent.includes('form-1');",
    );
    let commit = fleet.remote_git(&["rev-parse", "patchkeeper/requests/form-1"]);
    let shown = browser.js("return document.querySelector('.banner-ok code').textContent;");
    assert!(
        commit
            .trim()
            .starts_with(shown.as_str().expect("short commit")),
        "{commit} vs {shown}"
    );
    let message = fleet.remote_git(&["log", "-1", "--format=%B", commit.trim()]);
    assert!(message.contains("Requested-By: filer"), "{message}");
    browser.screenshot("request-filed");

    // A phone's width: the page reflows (only tables may scroll, inside their own box).
    browser.call(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    );
    browser.go(&server.url("/"));
    browser.wait(
        "the overview at a phone's width",
        "return !!document.querySelector('#state-chart') && window.innerWidth <= 420;",
    );
    assert_eq!(
        browser.js("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true),
        "the overview scrolls sideways on a phone"
    );
    browser.screenshot("overview-phone");
}
