//! The dashboard in a real headless browser: Debian's `chromium` driven through
//! `chromedriver` over the WebDriver protocol (a few JSON calls with the blocking client the
//! other tests use), against the real `serve` on loopback. Sign-in through the form, the
//! hosts table against the API, and a change arriving over the event stream shown in place
//! without a reload. Screenshots go to `$CARGO_TARGET_TMPDIR/dashboard-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (installed by `scripts/lab deps`).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::{client, get, wait_reconciled, Fleet, FleetSpec, Server};
use serde_json::{json, Value};

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (Debian package `chromium-driver`, from `scripts/lab deps`)",
            );
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"
            ]}
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .expect("new session")
            .json()
            .expect("JSON");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req.send().expect("WebDriver call").json().expect("JSON");
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {v}");
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None);
        let png = data_encoding::BASE64
            .decode(b64.as_str().expect("base64").as_bytes())
            .expect("PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

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
}
