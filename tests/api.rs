//! The HTTP API of `patchkeeper serve --listen` end to end: the real binary on loopback,
//! real HTTP (reqwest, curl), a real Git remote (a bare repository served over `file://`)
//! checked with the real `git`, metrics checked with the real `promtool`, TLS checked with
//! the real `curl --cacert`. The fleet's hosts are unreachable on purpose (connection
//! refused): these tests are about the service; `tests/api_lab.rs` drives real hosts.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::time::Duration;

use common::api::{client, get, wait_for, wait_reconciled, Fleet, FleetSpec, Server};
use common::git::git;
use serde_json::{json, Value};

const READ: &[&str] = &["read"];
const REQUEST: &[&str] = &["request"];
const ADMIN: &[&str] = &["admin"];

fn fleet(requests: Option<&str>, hosts: usize) -> Fleet {
    Fleet::new(FleetSpec {
        tokens: &[
            ("reader", READ, None),
            ("filer", REQUEST, None),
            ("admin", ADMIN, None),
            ("old", READ, Some("2020-01-01T00:00:00Z")),
        ],
        requests,
        hosts,
    })
}

fn serve(fleet: &Fleet, extra: &[&str]) -> Server {
    let url = fleet.url();
    let cache = fleet.root.path().join("cache").display().to_string();
    let mut args = vec![
        "--repo",
        url.as_str(),
        "--cache",
        cache.as_str(),
        "--interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    Server::start_in(fleet.root.path(), &args)
}

fn request_doc(name: &str) -> Value {
    json!({
        "apiVersion": "patchkeeper.dev/v1",
        "kind": "PatchRequest",
        "metadata": { "name": name },
        "spec": {
            "selector": { "groups": ["web"] },
            "packages": [{ "name": "openssl", "minVersion": "3.0.15-1~deb12u1" }],
            "reason": format!("{name}: openssl fix"),
            "advisories": ["CVE-2026-0001"]
        }
    })
}

fn post(server: &Server, token: Option<&str>, body: &Value) -> reqwest::blocking::Response {
    let mut req = client()
        .post(server.url("/api/v1/patch-requests"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().expect("POST")
}

fn remote_refs(fleet: &Fleet) -> String {
    fleet.remote_git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

/// Every path of the checked-in OpenAPI document that needs a token, with its methods.
fn protected_routes() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(include_str!("../schemas/openapi.json")).expect("doc");
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(out.len() >= 12, "{out:?}");
    out
}

#[test]
fn every_protected_route_refuses_without_a_valid_token_and_writes_nothing() {
    let fleet = fleet(None, 3);
    let server = serve(&fleet, &[]);
    wait_reconciled(&server, fleet.token("reader"));
    let before = remote_refs(&fleet);
    let unknown = common::api::token_new("stranger", READ, None).secret;
    let http = client();
    for (method, path) in protected_routes() {
        let path = path.replace("{name}", "web-001").replace("{id}", "x");
        for (what, token) in [
            ("no token", None),
            ("a malformed token", Some("pk_not-a-token")),
            ("an unknown token", Some(unknown.as_str())),
            ("an expired token", Some(fleet.token("old"))),
        ] {
            let mut req = http.request(method.parse().expect("method"), server.url(&path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if method == "POST" {
                req = req
                    .header("content-type", "application/json")
                    .body(request_doc("cve-x").to_string());
            }
            let r = req.send().expect("request");
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {what}");
            let challenge = r
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer "),
                "{method} {path}: {challenge}"
            );
            let body: Value = r.json().expect("JSON error body");
            assert_eq!(body["error"], "unauthorized", "{body}");
            assert!(body["requestId"].is_string(), "{body}");
        }
    }
    // A read token may not file, a request token may not reconcile: 403, nothing written.
    let r = post(&server, Some(fleet.token("reader")), &request_doc("cve-1"));
    assert_eq!(r.status().as_u16(), 403);
    assert!(r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("insufficient_scope")));
    let r = http
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(fleet.token("filer"))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        remote_refs(&fleet),
        before,
        "a refused request wrote something"
    );
    // Unknown paths are 404 whatever the token (auth is per route, not a catch-all).
    let r = http.get(server.url("/api/v1/nope")).send().expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    // The right scopes pass; admin implies read.
    assert_eq!(get(&server, fleet.token("reader"), "/api/v1/fleet").0, 200);
    assert_eq!(get(&server, fleet.token("admin"), "/api/v1/hosts").0, 200);
    // The log names tokens, never their values.
    let log = server.log();
    for (name, t) in &fleet.tokens {
        assert!(
            !log.contains(&t.secret),
            "the log holds token {name}'s value"
        );
    }
    assert!(!log.contains(&unknown));
    assert!(
        log.contains("\"token\":\"old\""),
        "expired token not named:\n{log}"
    );
}

#[test]
fn a_patch_request_becomes_a_reviewed_commit_on_the_remote() {
    let fleet = fleet(None, 3);
    let server = serve(&fleet, &[]);
    wait_reconciled(&server, fleet.token("reader"));
    let main_before = fleet.remote_git(&["rev-parse", "main"]).trim().to_owned();

    let r = post(
        &server,
        Some(fleet.token("filer")),
        &request_doc("cve-2026-0001"),
    );
    assert_eq!(r.status().as_u16(), 201);
    let request_id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    assert_eq!(
        r.headers()["location"].to_str().expect("location"),
        "/api/v1/patch-requests/cve-2026-0001"
    );
    let filed: Value = r.json().expect("JSON");
    assert_eq!(filed["state"], "submitted");
    assert_eq!(filed["branch"], "patchkeeper/requests/cve-2026-0001");
    assert_eq!(filed["pushed"], true);
    // On the remote: one commit on top of main, on the review branch; main untouched.
    let branch = "patchkeeper/requests/cve-2026-0001";
    let commit = fleet.remote_git(&["rev-parse", branch]).trim().to_owned();
    assert_eq!(filed["commit"], commit.as_str());
    assert_eq!(
        fleet
            .remote_git(&["rev-parse", &format!("{branch}~1")])
            .trim(),
        main_before
    );
    assert_eq!(fleet.remote_git(&["rev-parse", "main"]).trim(), main_before);
    let trailers = fleet.remote_git(&["log", "-1", "--format=%(trailers)", branch]);
    assert!(trailers.contains("Requested-By: filer\n"), "{trailers}");
    assert!(
        trailers.contains(&format!("Request-Id: {request_id}\n")),
        "{trailers}"
    );
    assert_eq!(
        fleet
            .remote_git(&["diff", "--name-only", "main", branch])
            .trim(),
        "requests/cve-2026-0001.yaml"
    );
    // The file names who filed it, so that survives a squash or rebase on merge.
    let file = fleet.remote_git(&["show", &format!("{branch}:requests/cve-2026-0001.yaml")]);
    assert!(file.contains("requestedBy: filer\n"), "{file}");
    // The branch validates with the real `validate`, like any merge request would.
    let review = fleet.root.path().join("review");
    git(
        fleet.root.path(),
        &[
            "clone",
            "-q",
            "-b",
            branch,
            &fleet.url(),
            &review.display().to_string(),
        ],
    );
    let out = common::cli::run(&review, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));
    // Listed as submitted right away.
    let (_, req) = get(
        &server,
        fleet.token("reader"),
        "/api/v1/patch-requests/cve-2026-0001",
    );
    assert_eq!(req["state"], "submitted", "{req}");
    assert_eq!(req["requestedBy"], "filer", "{req}");

    // The same name again: 409, nothing written.
    let refs = remote_refs(&fleet);
    let r = post(
        &server,
        Some(fleet.token("filer")),
        &request_doc("cve-2026-0001"),
    );
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(r.json::<Value>().expect("JSON")["field"], "/metadata/name");
    assert_eq!(remote_refs(&fleet), refs);

    // Reviewed and merged: after a reconcile it is merged (the hosts are unreachable, so
    // the fix is on none of them).
    git(&fleet.work, &["pull", "-q", &fleet.url(), branch]);
    git(&fleet.work, &["push", "-q", &fleet.url(), "main"]);
    let r = client()
        .post(server.url("/api/v1/reconcile"))
        .bearer_auth(fleet.token("admin"))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    wait_for("the request to be merged", Duration::from_secs(60), || {
        let (_, req) = get(
            &server,
            fleet.token("reader"),
            "/api/v1/patch-requests/cve-2026-0001",
        );
        req["state"] == "merged"
    });
    let (_, req) = get(
        &server,
        fleet.token("reader"),
        "/api/v1/patch-requests/cve-2026-0001",
    );
    assert_eq!(
        (req["hosts"].as_u64(), req["applied"].as_u64()),
        (Some(3), Some(0)),
        "{req}"
    );
    assert_eq!(req["requestedBy"], "filer", "{req}");
    // A name taken by the desired branch is a conflict too.
    let r = post(
        &server,
        Some(fleet.token("filer")),
        &request_doc("cve-2026-0001"),
    );
    assert_eq!(r.status().as_u16(), 409);
}

#[test]
fn bad_patch_requests_are_refused_with_the_field_and_nothing_is_written() {
    let fleet = fleet(None, 2);
    let server = serve(&fleet, &[]);
    wait_reconciled(&server, fleet.token("reader"));
    let refs = remote_refs(&fleet);
    let filer = fleet.token("filer");
    let http = client();
    let send = |body: String, content_type: &str| {
        http.post(server.url("/api/v1/patch-requests"))
            .bearer_auth(filer)
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("POST")
    };
    // Not JSON: 400.
    let r = send("{\"metadata\": ".into(), "application/json");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().expect("JSON");
    assert_eq!(body["error"], "malformed-json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("line 1 column"),
        "{body}"
    );
    // Not declared as JSON: 415.
    let r = send(request_doc("a").to_string(), "text/plain");
    assert_eq!(r.status().as_u16(), 415);
    // Over 1 MiB: 413, refused before it is read.
    let mut big = request_doc("big");
    big["spec"]["reason"] = Value::String("x".repeat(1024 * 1024 + 1));
    let r = send(big.to_string(), "application/json");
    assert_eq!(r.status().as_u16(), 413);
    // The unread rest of the body is still on the connection: the server must close it and
    // say so, or the next request on a reused connection fails (`IncompleteMessage`).
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_eq!(r.json::<Value>().expect("JSON")["error"], "too-large");

    // Validated exactly as `validate` would validate the file: 422, diagnostics, field.
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "unknown field",
            {
                let mut d = request_doc("typo");
                d["spec"]["packages"][0] = json!({"name": "openssl", "minVersoin": "1"});
                d
            },
            "unknown-field",
            "/spec/packages/0/minVersoin",
        ),
        (
            "wrong type",
            {
                let mut d = request_doc("wrong-type");
                d["spec"]["packages"] = json!("openssl");
                d
            },
            "wrong-type",
            "/spec/packages",
        ),
        (
            "dangling window",
            {
                let mut d = request_doc("dangling");
                d["spec"]["window"] = json!("weekends");
                d
            },
            "dangling-window-ref",
            "/spec/window",
        ),
        (
            "missing field",
            {
                let mut d = request_doc("no-reason");
                d["spec"].as_object_mut().expect("spec").remove("reason");
                d
            },
            "missing-field",
            "/spec",
        ),
    ];
    for (what, doc, code, field) in cases {
        let r = send(doc.to_string(), "application/json");
        assert_eq!(r.status().as_u16(), 422, "{what}");
        let body: Value = r.json().expect("JSON");
        let diags = body["diagnostics"].as_array().expect("diagnostics");
        assert!(
            diags
                .iter()
                .any(|d| d["code"] == code && d["field"] == field),
            "{what}: {body:#}"
        );
        assert!(
            diags.iter().all(|d| d["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("requests/"))),
            "{what}: {body:#}"
        );
    }
    // Not something that can be a request file at all: 422 with the field.
    for (doc, field) in [
        (
            json!({"kind": "Settings", "metadata": {"name": "x"}}),
            "/kind",
        ),
        (
            json!({"metadata": {"name": "../../etc/passwd"}, "spec": {}}),
            "/metadata/name",
        ),
        (json!({"spec": {}}), "/metadata/name"),
        (json!(["not", "an", "object"]), ""),
    ] {
        let r = send(doc.to_string(), "application/json");
        assert_eq!(r.status().as_u16(), 422, "{doc}");
        assert_eq!(r.json::<Value>().expect("JSON")["field"], field, "{doc}");
    }
    assert_eq!(
        remote_refs(&fleet),
        refs,
        "a refused request wrote something"
    );
}

#[test]
fn a_hundred_concurrent_requests_from_ten_tokens_make_a_hundred_commits_on_the_remote() {
    let names: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
    let specs: Vec<(&str, &[&str], Option<&str>)> =
        names.iter().map(|n| (n.as_str(), REQUEST, None)).collect();
    let fleet = Fleet::new(FleetSpec {
        tokens: &specs,
        requests: Some("direct"),
        hosts: 2,
    });
    let server = serve(&fleet, &[]);
    wait_reconciled(&server, fleet.token("team-0"));
    let base = fleet.remote_git(&["rev-parse", "main"]).trim().to_owned();
    let start = std::sync::Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let token = fleet.token(&names[i % 10]).to_owned();
            let url = server.url("/api/v1/patch-requests");
            let start = start.clone();
            std::thread::spawn(move || {
                let body = request_doc(&format!("req-{i:03}")).to_string();
                let http = client();
                start.wait();
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .expect("POST");
                (r.status().as_u16(), r.text().unwrap_or_default())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (status, body) = t.join().expect("thread");
        assert_eq!(status, 201, "request {i}: {body}");
    }
    // Exactly 100 new commits, in one line on top of the base (never a force push).
    let count = fleet
        .remote_git(&["rev-list", "--count", &format!("{base}..main")])
        .trim()
        .to_owned();
    assert_eq!(count, "100");
    fleet.remote_git(&["merge-base", "--is-ancestor", &base, "main"]);
    let merges = fleet.remote_git(&["rev-list", "--merges", &format!("{base}..main")]);
    assert!(merges.trim().is_empty(), "{merges}");
    let files: BTreeSet<String> = fleet
        .remote_git(&["ls-tree", "--name-only", "main", "requests/"])
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = (0..100)
        .map(|i| format!("requests/req-{i:03}.yaml"))
        .collect();
    assert_eq!(files, expected);
    let by: Vec<String> = fleet
        .remote_git(&[
            "log",
            "--format=%(trailers:key=Requested-By,valueonly)",
            &format!("{base}..main"),
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for n in &names {
        assert_eq!(by.iter().filter(|b| *b == n).count(), 10, "{n}: {by:?}");
    }
    // The desired branch still validates with all of them.
    git(&fleet.work, &["pull", "-q", &fleet.url(), "main"]);
    let out = common::cli::run(&fleet.work, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::cli::text(&out));
}

#[test]
fn lists_are_paginated_and_filtered() {
    let fleet = fleet(None, 25);
    let server = serve(&fleet, &[]);
    let reader = fleet.token("reader");
    wait_reconciled(&server, reader);
    // Follow `Link: rel="next"` through every page.
    let mut seen = Vec::new();
    let mut next = Some(server.url("/api/v1/hosts?limit=10&group=web"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let r = client().get(&url).bearer_auth(reader).send().expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        next = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once('>'))
            .map(|(path, _)| server.url(path));
        let page: Value = r.json().expect("JSON");
        assert_eq!(page["total"], 20, "{page}");
        for h in page["items"].as_array().expect("items") {
            assert!(h["groups"]
                .as_array()
                .expect("groups")
                .contains(&json!("web")));
            seen.push(h["name"].as_str().expect("name").to_owned());
        }
        pages += 1;
    }
    assert_eq!(pages, 2);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (20, seen.clone()));
    let (_, page) = get(
        &server,
        reader,
        "/api/v1/hosts?label=env%3Dstaging&state=unreachable",
    );
    assert_eq!(page["total"], 5, "{page}");
    let (_, page) = get(&server, reader, "/api/v1/hosts?state=compliant");
    assert_eq!(page["total"], 0, "{page}");
    // One host in full.
    let (status, host) = get(&server, reader, "/api/v1/hosts/web-005");
    assert_eq!(status, 200);
    assert_eq!(host["observed"]["status"]["state"], "unreachable", "{host}");
    assert_eq!(host["compliance"]["state"], "unreachable", "{host}");
    assert_eq!(host["plan"]["status"], "unreachable", "{host}");
    assert_eq!(get(&server, reader, "/api/v1/hosts/nope").0, 404);
    // Runs, newest first, each readable.
    let (_, runs) = get(&server, reader, "/api/v1/runs?kind=observe&limit=1");
    let run_id = runs["items"][0]["runId"].as_str().expect("run").to_owned();
    let (status, run) = get(&server, reader, &format!("/api/v1/runs/{run_id}"));
    assert_eq!(
        (status, run["hosts"].as_array().map(Vec::len)),
        (200, Some(25))
    );
    // Bad queries name what is wrong.
    for (path, field) in [
        ("/api/v1/hosts?limit=0", Some("limit")),
        ("/api/v1/hosts?limit=abc", None),
        ("/api/v1/hosts?state=green", Some("state")),
        ("/api/v1/hosts?colour=red", None),
        ("/api/v1/runs?kind=deploy", Some("kind")),
    ] {
        let (status, body) = get(&server, reader, path);
        assert_eq!(status, 400, "{path}: {body}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{path}: {body}");
        }
        assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{path}");
    }
    let (_, body) = get(&server, reader, "/api/v1/hosts?colour=red");
    assert!(
        body["message"].as_str().unwrap_or("").contains("colour"),
        "{body}"
    );
}

#[test]
fn metrics_pass_promtool_and_carry_no_host_names() {
    let fleet = fleet(None, 4);
    let server = serve(&fleet, &[]);
    let reader = fleet.token("reader");
    wait_reconciled(&server, reader);
    for path in [
        "/api/v1/hosts/web-001",
        "/api/v1/hosts/web-002",
        "/api/v1/fleet",
    ] {
        assert_eq!(get(&server, reader, path).0, 200);
    }
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .expect("GET")
        .text()
        .expect("text");
    if let Err(e) = common::api::promtool_check(&text) {
        panic!("promtool: {e}\n{text}");
    }
    for line in [
        "patchkeeper_hosts{state=\"unreachable\"} 4",
        "patchkeeper_reconciles_total{result=\"success\"} 1",
        "patchkeeper_observe_failures_total{reason=\"refused\"} 4",
        "patchkeeper_http_requests_total{route=\"/api/v1/hosts/{name}\",method=\"GET\",status=\"200\"} 2",
        "patchkeeper_reconcile_duration_seconds_count 1",
        "patchkeeper_ready 1",
    ] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    assert!(
        !text.contains("web-00"),
        "a host name became a label:\n{text}"
    );
    // OpenMetrics for scrapers that ask for it.
    let om = client()
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .expect("GET");
    assert!(om.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("application/openmetrics-text"));
    assert!(om.text().expect("text").ends_with("# EOF\n"));
}

/// Reads server-sent events from a streaming response.
struct Events {
    lines: BufReader<reqwest::blocking::Response>,
}

/// One server-sent event (or a comment, with `event` `:`).
#[derive(Debug, Default)]
struct Sse {
    id: Option<String>,
    event: String,
    data: String,
}

impl Events {
    fn open(server: &Server, token: &str, last: Option<&str>) -> Events {
        let mut req = reqwest::blocking::Client::builder()
            .build()
            .expect("client")
            .get(server.url("/api/v1/events"))
            .bearer_auth(token);
        if let Some(id) = last {
            req = req.header("last-event-id", id);
        }
        let r = req.send().expect("GET events");
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream"));
        Events {
            lines: BufReader::new(r),
        }
    }

    /// The next event or comment block (`event` is `:` for a comment); `None` at the end
    /// of the stream.
    fn next(&mut self) -> Option<Sse> {
        let mut e = Sse::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if any {
                    return Some(e);
                }
                continue;
            }
            any = true;
            if let Some(c) = line.strip_prefix(':') {
                if e.event.is_empty() {
                    e.event = ":".into();
                }
                e.data = c.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                e.id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("event:") {
                e.event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                e.data.push_str(v.trim_start());
            }
        }
    }

    /// The next real event (comments and `retry` lines skipped).
    fn next_event(&mut self) -> Option<Sse> {
        loop {
            let e = self.next()?;
            if e.event != ":" && !e.event.is_empty() {
                return Some(e);
            }
        }
    }
}

#[test]
fn events_resume_from_last_event_id_keep_alive_and_end_on_shutdown() {
    let fleet = fleet(None, 2);
    let mut server = serve(&fleet, &["--event-keep-alive", "1s"]);
    let reader = fleet.token("reader");
    let filer = fleet.token("filer");
    wait_reconciled(&server, reader);

    let mut events = Events::open(&server, reader, None);
    assert_eq!(
        post(&server, Some(filer), &request_doc("first"))
            .status()
            .as_u16(),
        201
    );
    let first = events.next_event().expect("an event");
    assert_eq!(first.event, "request-submitted");
    let data: Value = serde_json::from_str(&first.data).expect("JSON data");
    assert_eq!(
        (data["name"].as_str(), data["requestedBy"].as_str()),
        (Some("first"), Some("filer"))
    );
    let first_id = first.id.clone().expect("an id");
    assert_eq!(data["id"].to_string(), first_id);
    // Idle: keep-alive comments arrive.
    let comment = events.next().expect("a comment");
    assert_eq!(
        (comment.event.as_str(), comment.data.as_str()),
        (":", "keep-alive")
    );
    drop(events);

    // Missed while disconnected, replayed on reconnection after the last id seen.
    assert_eq!(
        post(&server, Some(filer), &request_doc("second"))
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        post(&server, Some(filer), &request_doc("third"))
            .status()
            .as_u16(),
        201
    );
    let mut resumed = Events::open(&server, reader, Some(&first_id));
    let names: Vec<String> = (0..2)
        .map(|_| {
            let e = resumed.next_event().expect("replayed");
            assert_eq!(e.event, "request-submitted");
            let d: Value = serde_json::from_str(&e.data).expect("JSON");
            assert!(
                e.id.expect("id").parse::<u64>().expect("numeric")
                    > first_id.parse::<u64>().expect("numeric")
            );
            d["name"].as_str().expect("name").to_owned()
        })
        .collect();
    assert_eq!(names, ["second", "third"]);
    // A resume point this server never gave out: resync first.
    let mut stale = Events::open(&server, reader, Some("1"));
    assert_eq!(stale.next_event().expect("resync").event, "resync");

    // SIGTERM: open streams end, and serve exits 0.
    let reading = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = resumed.lines.read_to_string(&mut rest);
        rest
    });
    assert_eq!(
        server.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log()
    );
    reading.join().expect("the stream ended");
    drop(stale);
}

#[test]
fn the_openapi_document_is_served_and_every_documented_route_answers() {
    let fleet = fleet(None, 2);
    let server = serve(&fleet, &[]);
    let admin = fleet.token("admin");
    wait_reconciled(&server, admin);
    let served = client()
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .expect("GET")
        .text()
        .expect("text");
    assert_eq!(served, include_str!("../schemas/openapi.json"));
    let (_, runs) = get(&server, admin, "/api/v1/runs");
    let run = runs["items"][0]["runId"]
        .as_str()
        .expect("a run")
        .to_owned();
    let doc: Value = serde_json::from_str(&served).expect("JSON");
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            if method != "get" || path == "/api/v1/events" {
                continue;
            }
            let concrete = path.replace("{name}", "web-001").replace("{id}", &run);
            let (status, body) = get(&server, admin, &concrete);
            let expect = if path == "/api/v1/patch-requests/{name}" {
                404
            } else {
                200
            };
            assert_eq!(status, expect, "GET {concrete}: {body}");
        }
    }
    // The plan is the same document `plan --json` prints: it validates against its schema.
    let (_, plan) = get(&server, admin, "/api/v1/plan");
    let schema: Value =
        serde_json::from_str(include_str!("../schemas/plan.schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    assert!(validator.is_valid(&plan), "{plan}");
    assert_eq!(plan["hosts"].as_array().map(Vec::len), Some(2));
}

#[test]
fn tls_serves_with_a_self_signed_certificate_that_curl_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fleet = fleet(None, 1);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let server = serve(&fleet, &["--tls-cert", &c, "--tls-key", &k]);
    let curl = |extra: &[&str], url: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl runs")
    };
    let url = format!("https://127.0.0.1:{}/healthz", server.addr.port());
    wait_for("readiness over TLS", Duration::from_secs(60), || {
        let r = curl(
            &["--cacert", &c, "-o", "/dev/null", "-w", "%{http_code}"],
            &format!("https://localhost:{}/readyz", server.addr.port()),
        );
        String::from_utf8_lossy(&r.stdout) == "200"
    });
    let ok = curl(&["--cacert", &c], &url);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "{\"status\":\"ok\"}");
    let api = curl(
        &[
            "--cacert",
            &c,
            "-H",
            &format!("Authorization: Bearer {}", fleet.token("reader")),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ],
        &format!("https://localhost:{}/api/v1/fleet", server.addr.port()),
    );
    assert_eq!(String::from_utf8_lossy(&api.stdout), "200");
    // Without the CA the certificate is not trusted (curl exit 60); plain HTTP gets nothing.
    let untrusted = curl(&[], &url);
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let plain = curl(
        &[],
        &format!("http://127.0.0.1:{}/healthz", server.addr.port()),
    );
    assert!(!plain.status.success());

    // A key that is not a key: serve refuses to start, saying which file.
    let out = common::cli::run(
        fleet.root.path(),
        &[
            "serve",
            "--repo",
            &fleet.url(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &c,
            "--tls-key",
            &c,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::cli::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cert.pem"),
        "{}",
        common::cli::text(&out)
    );
}
