//! A headless Chromium driven through `chromedriver` over the WebDriver protocol (a few
//! JSON calls with the blocking client the other tests use). Needs `chromium` and
//! `chromium-driver` (installed by `scripts/lab deps`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::client;

/// How long a condition in the page may take (generous: the machine may be loaded).
pub const PAGE_WAIT: Duration = Duration::from_secs(180);

/// A chromedriver process and one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    slow: reqwest::blocking::Client,
}

impl Browser {
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (Debian package `chromium-driver`, from `scripts/lab deps`)",
            );
        // chromedriver says on stdout when it listens: wait for that line (the deadline only
        // bounds a failure), then keep draining its output so it never blocks on the pipe.
        let stdout = driver.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = ready_tx.send(Ok(()));
                } else {
                    said.push(line);
                }
            }
            let _ = ready_tx.send(Err(said.join("\n")));
        });
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(said)) => panic!("chromedriver exited before it listened:\n{said}"),
            Err(_) => panic!("chromedriver did not say it listens within 60 s"),
        }
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
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
        let timeouts: Value = http
            .post(format!("{base}/session/{session}/timeouts"))
            .json(&json!({"script": PAGE_WAIT.as_millis()}))
            .send()
            .expect("set the script timeout")
            .json()
            .expect("JSON");
        assert!(timeouts["value"].is_null(), "script timeout: {timeouts}");
        // `wait` holds one call open until the page changes: longer than `client()` allows.
        let slow = reqwest::blocking::Client::builder()
            .timeout(PAGE_WAIT + Duration::from_secs(30))
            .build()
            .expect("client");
        Browser {
            driver,
            base,
            session,
            http,
            slow,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn element(&self, css: &str) -> String {
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

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Returns once `script` (a function body returning a boolean) is true in the page. The
    /// page says when: an async script checks the condition on every DOM change (a
    /// MutationObserver) and resolves on the first one that makes it true; the session's
    /// script timeout (`PAGE_WAIT`) only bounds a failure. A navigation unloads the page being
    /// watched, so the new page is watched in turn.
    pub fn wait(&self, what: &str, script: &str) {
        const WATCH: &str = r#"
            const done = arguments[arguments.length - 1];
            const cond = new Function(arguments[0]);
            const holds = () => { try { return cond() === true; } catch (e) { return false; } };
            if (holds()) { done(true); return; }
            const settle = () => { if (holds()) { obs.disconnect(); done(true); } };
            const obs = new MutationObserver(settle);
            obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
            window.addEventListener('resize', settle);
        "#;
        let url = format!("{}/session/{}/execute/async", self.base, self.session);
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let v: Value = self
                .slow
                .post(&url)
                .json(&json!({"script": WATCH, "args": [script]}))
                .send()
                .expect("WebDriver call")
                .json()
                .expect("JSON");
            if v["value"] == json!(true) {
                return;
            }
            let message = v["value"]["message"].as_str().unwrap_or_default();
            // A navigation (a form submitted just before) ends the script early: chromedriver
            // says "unloaded", or under load "script timeout" long before the script timeout
            // (seen: 12 s into a 180 s wait). Only the deadline ends the wait.
            let interrupted = message.contains("unloaded") || message.contains("script timeout");
            assert!(
                interrupted && Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
        }
    }

    pub fn screenshot(&self, name: &str) -> PathBuf {
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
