//! The dashboard served by `patchkeeper serve --listen` at `/`, end to end over real HTTP:
//! the real binary on loopback, a real Git remote (a bare repository over `file://`)
//! checked with the real `git`. Sign-in and sign-out with the cookie's flags, CSRF and
//! cross-site refusals (nothing written), the request form filing a real commit through
//! the API's path, and each view's content for the state the loop published (compared
//! with what the API serves). The hosts are unreachable on purpose (connection refused):
//! the state is known without a lab.

mod common;

use common::api::{client, get, wait_reconciled, Fleet, FleetSpec, Server};
use reqwest::blocking::{Client, Response};
use serde_json::Value;

const READ: &[&str] = &["read"];
const REQUEST: &[&str] = &["request"];

fn fleet(hosts: usize) -> Fleet {
    Fleet::new(FleetSpec {
        tokens: &[
            ("reader", READ, None),
            ("filer", REQUEST, None),
            ("old", READ, Some("2020-01-01T00:00:00Z")),
        ],
        requests: None,
        hosts,
    })
}

fn serve(fleet: &Fleet) -> Server {
    let url = fleet.url();
    let cache = fleet.root.path().join("cache").display().to_string();
    Server::start_in(
        fleet.root.path(),
        &["--repo", &url, "--cache", &cache, "--interval", "1h"],
    )
}

/// A browser-like client that does not follow redirects (the tests look at them).
fn browser() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs in with `token`; returns the session cookie (`pk_token=…`).
fn sign_in(server: &Server, token: &str) -> String {
    let r = browser()
        .post(server.url("/login"))
        .form(&[("token", token), ("next", "/")])
        .send()
        .expect("POST /login");
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().unwrap_or_default());
    let cookie = header(&r, "set-cookie");
    cookie
        .split(';')
        .next()
        .expect("a cookie")
        .trim()
        .to_owned()
}

fn page(server: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = browser()
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.text().expect("body"))
}

/// The value of the first `name="NAME" value="…"` input of a page.
fn input(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no input {name}:\n{html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}

/// Every `data-host="…"` of a page, in order.
fn hosts_listed(html: &str) -> Vec<String> {
    html.split("data-host=\"")
        .skip(1)
        .map(|s| s[..s.find('"').expect("quote")].to_owned())
        .collect()
}

fn remote_refs(fleet: &Fleet) -> String {
    fleet.remote_git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

#[test]
fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it() {
    let fleet = fleet(2);
    let server = serve(&fleet);
    wait_reconciled(&server, fleet.token("reader"));
    let http = browser();

    // Not signed in: every page sends the browser to sign-in, remembering where it was.
    for (path, next) in [
        ("/", "%2F"),
        ("/hosts?state=failed", "%2Fhosts%3Fstate%3Dfailed"),
        ("/runs", "%2Fruns"),
    ] {
        let r = http.get(server.url(path)).send().expect("GET");
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(
            header(&r, "location"),
            format!("/login?next={next}"),
            "{path}"
        );
    }
    let r = http.get(server.url("/login")).send().expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(r.text().expect("body").contains("name=\"token\""));

    // Refused tokens: a page saying why, no cookie.
    for (token, why) in [
        ("pk_not-a-token", "Not signed in"),
        (fleet.token("old"), "expired"),
    ] {
        let r = http
            .post(server.url("/login"))
            .form(&[("token", token)])
            .send()
            .expect("POST");
        assert_eq!(r.status().as_u16(), 401);
        assert!(header(&r, "set-cookie").is_empty());
        let body = r.text().expect("body");
        assert!(body.contains(why), "{why}: {body}");
    }
    // A sign-in form posted from another site is refused.
    let r = http
        .post(server.url("/login"))
        .header("origin", "http://evil.example")
        .form(&[("token", fleet.token("reader"))])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
    assert!(header(&r, "set-cookie").is_empty());

    // Signed in: HttpOnly, SameSite=Strict, the whole site; not Secure over plain HTTP.
    let r = http
        .post(server.url("/login"))
        .form(&[("token", fleet.token("reader")), ("next", "/hosts")])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(header(&r, "location"), "/hosts");
    let set = header(&r, "set-cookie");
    let flags: Vec<&str> = set.split(';').map(str::trim).collect();
    assert_eq!(
        flags[0],
        format!("pk_token={}", fleet.token("reader")),
        "{set}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(flags.contains(&flag), "{flag} missing: {set}");
    }
    assert!(!flags.contains(&"Secure"), "{set}");
    let cookie = flags[0].to_owned();
    // An off-site `next` never redirects off-site.
    let r = http
        .post(server.url("/login"))
        .form(&[
            ("token", fleet.token("reader")),
            ("next", "//evil.example/"),
        ])
        .send()
        .expect("POST");
    assert_eq!(header(&r, "location"), "/");

    let r = http
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let csp = header(&r, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = r.text().expect("body");
    assert!(
        html.contains("Signed in as <strong>reader</strong>"),
        "{html}"
    );
    let csrf = input(&html, "csrf");
    // The CSRF token is not the session's token.
    assert!(!csrf.contains(fleet.token("reader")));

    // Sign-out is a write: without the CSRF token, with another one, or from another
    // site, it is refused and the session stays.
    for (what, form, origin) in [
        ("no CSRF token", vec![], None),
        ("a wrong CSRF token", vec![("csrf", "AAAA")], None),
        (
            "another site",
            vec![("csrf", csrf.as_str())],
            Some("http://evil.example"),
        ),
    ] {
        let mut req = http
            .post(server.url("/logout"))
            .header("cookie", &cookie)
            .form(&form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().expect("POST");
        assert_eq!(r.status().as_u16(), 403, "{what}");
        assert!(header(&r, "set-cookie").is_empty(), "{what}");
    }
    assert_eq!(page(&server, &cookie, "/").0, 200);
    let r = http
        .post(server.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", server.url(""))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(header(&r, "location"), "/login");
    let cleared = header(&r, "set-cookie");
    assert!(
        cleared.starts_with("pk_token=;")
            && cleared.contains("Max-Age=0")
            && cleared.contains("HttpOnly"),
        "{cleared}"
    );
    // The browser drops the cookie: pages send it back to sign-in.
    let r = http.get(server.url("/")).send().expect("GET");
    assert_eq!(r.status().as_u16(), 303);
    // The log names the token, never its value.
    let log = server.log();
    assert!(
        !log.contains(fleet.token("reader")),
        "the log holds a token"
    );
    assert!(log.contains("dashboard sign-in"), "{log}");
}

#[test]
fn the_request_form_files_a_commit_only_with_csrf_and_the_request_scope() {
    let fleet = fleet(3);
    let server = serve(&fleet);
    wait_reconciled(&server, fleet.token("reader"));
    let http = browser();
    let cookie = sign_in(&server, fleet.token("reader"));
    let (status, html) = page(&server, &cookie, "/requests");
    assert_eq!(status, 200);
    // A read session must type a request token into the form.
    assert!(html.contains("name=\"token\""), "{html}");
    let csrf = input(&html, "csrf");
    let refs = remote_refs(&fleet);
    let fields = |name: &'static str| {
        vec![
            ("name", name),
            ("groups", "web"),
            ("packages", "openssl 3.0.15-1~deb12u1"),
            ("reason", "CVE-2026-0001: openssl fix"),
            ("advisories", "CVE-2026-0001"),
        ]
    };
    let post = |form: Vec<(&str, &str)>, origin: Option<&str>| {
        let mut req = http
            .post(server.url("/requests"))
            .header("cookie", &cookie)
            .form(&form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().expect("POST");
        (r.status().as_u16(), r.text().expect("body"))
    };
    // Forged: no CSRF token, a wrong one, or posted from another site (even with the
    // right token, as a cross-site form could never know it anyway).
    let mut no_csrf = fields("forged");
    no_csrf.push(("token", fleet.token("filer")));
    assert_eq!(post(no_csrf.clone(), None).0, 403);
    let mut wrong = no_csrf.clone();
    wrong.push(("csrf", "bm90LWl0"));
    assert_eq!(post(wrong, None).0, 403);
    let mut cross = no_csrf.clone();
    cross.push(("csrf", csrf.as_str()));
    assert_eq!(post(cross, Some("http://evil.example")).0, 403);
    // The read token alone may not file.
    let mut read_only = fields("read-only");
    read_only.push(("csrf", csrf.as_str()));
    let (status, body) = post(read_only, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("request"), "{body}");
    assert_eq!(remote_refs(&fleet), refs, "a refused form wrote something");

    // Invalid: refused with the validation's message and field, the form kept filled.
    let mut bad = fields("typo");
    bad.extend([
        ("deadline", "tomorrow"),
        ("csrf", csrf.as_str()),
        ("token", fleet.token("filer")),
    ]);
    let (status, body) = post(bad, None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not validate"), "{body}");
    assert!(
        body.contains("value=\"typo\""),
        "the form was not kept: {body}"
    );
    assert_eq!(remote_refs(&fleet), refs, "an invalid form wrote something");

    // With the CSRF token and a request token: a commit on a review branch, as the API
    // makes it, attributed to the token that filed it.
    let mut good = fields("cve-2026-0001");
    good.extend([("csrf", csrf.as_str()), ("token", fleet.token("filer"))]);
    let (status, body) = post(good, Some(&server.url("")));
    assert_eq!(status, 201, "{body}");
    let branch = "patchkeeper/requests/cve-2026-0001";
    let commit = fleet.remote_git(&["rev-parse", branch]).trim().to_owned();
    assert!(body.contains(&commit[..12]), "{body}");
    let trailers = fleet.remote_git(&["log", "-1", "--format=%(trailers)", branch]);
    assert!(trailers.contains("Requested-By: filer\n"), "{trailers}");
    let file = fleet.remote_git(&["show", &format!("{branch}:requests/cve-2026-0001.yaml")]);
    assert!(file.contains("minVersion: 3.0.15-1~deb12u1"), "{file}");
    // The API and the page agree on it.
    let (_, req) = get(
        &server,
        fleet.token("reader"),
        "/api/v1/patch-requests/cve-2026-0001",
    );
    assert_eq!(
        (req["state"].as_str(), req["requestedBy"].as_str()),
        (Some("submitted"), Some("filer")),
        "{req}"
    );
    let (_, html) = page(&server, &cookie, "/requests");
    assert!(html.contains("data-request=\"cve-2026-0001\""), "{html}");
    assert!(html.contains("req-submitted"), "{html}");

    // A session with the request scope files without typing a token.
    let filer = sign_in(&server, fleet.token("filer"));
    let (_, html) = page(&server, &filer, "/requests");
    assert!(!html.contains("name=\"token\""), "{html}");
    let csrf2 = input(&html, "csrf");
    assert_ne!(csrf, csrf2, "CSRF tokens are per session");
    let r = http
        .post(server.url("/requests"))
        .header("cookie", &filer)
        .form(&[
            ("name", "second"),
            ("hosts", "web-001"),
            ("packages", "curl"),
            ("reason", "curl"),
            ("csrf", csrf2.as_str()),
        ])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    fleet.remote_git(&["rev-parse", "patchkeeper/requests/second"]);
    // Another session's CSRF token does not work.
    let r = http
        .post(server.url("/requests"))
        .header("cookie", &filer)
        .form(&[
            ("name", "third"),
            ("packages", "curl"),
            ("reason", "x"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn the_views_show_what_the_api_serves() {
    let fleet = fleet(10);
    let server = serve(&fleet);
    let reader = fleet.token("reader");
    let summary = wait_reconciled(&server, reader);
    let cookie = sign_in(&server, reader);

    // Overview: counts by state, advisory counts, commits, windows, the plan's batches.
    let (status, html) = page(&server, &cookie, "/");
    assert_eq!(status, 200);
    assert!(
        html.contains("<span class=\"n\" data-count=\"unreachable\">10</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"n\" data-count=\"compliant\">0</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"n\" id=\"critical-hosts\">0</span>"),
        "{html}"
    );
    let desired = summary["desiredCommit"].as_str().expect("desired");
    let reports = summary["reportsCommit"].as_str().expect("reports");
    assert!(
        html.contains(&format!(
            "<code title=\"{desired}\">{}</code>",
            &desired[..12]
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<code title=\"{reports}\">{}</code>",
            &reports[..12]
        )),
        "{html}"
    );
    assert!(
        html.contains("<td>always</td>") && html.contains(">open<"),
        "{html}"
    );
    // The compliance-over-time chart: a bar for the report commit, 10 hosts unreachable.
    assert!(html.contains("<svg id=\"state-chart\""), "{html}");
    let bar = html
        .split(&format!("<g data-commit=\"{reports}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no bar for the report commit {reports}: {html}"));
    assert!(
        bar[..bar.find("</g>").expect("end of bar")]
            .contains("class=\"s-unreachable\" data-n=\"10\""),
        "{bar}"
    );
    let overview = html.clone();
    assert!(
        !html.contains("role=\"alert\""),
        "no banner expected: {html}"
    );
    // The page is live: it loads the embedded script, which follows the event stream.
    assert!(
        html.contains("<script src=\"/assets/dashboard.js\" defer>"),
        "{html}"
    );
    let js = client()
        .get(server.url("/assets/dashboard.js"))
        .send()
        .expect("GET");
    assert!(header(&js, "content-type").starts_with("text/javascript"));
    let js = js.text().expect("js");
    assert!(js.contains("new EventSource(\"/api/v1/events\")"), "{js}");
    let css = client()
        .get(server.url("/assets/dashboard.css"))
        .send()
        .expect("GET");
    assert!(header(&css, "content-type").starts_with("text/css"));
    assert!(css
        .text()
        .expect("css")
        .contains("prefers-color-scheme: dark"));
    // ... and the event stream accepts the session's cookie (what EventSource sends).
    let events = browser()
        .get(server.url("/api/v1/events"))
        .header("cookie", &cookie)
        .send()
        .expect("GET events");
    assert_eq!(events.status().as_u16(), 200);
    assert!(header(&events, "content-type").starts_with("text/event-stream"));
    drop(events);

    // Hosts: the same hosts as the API, in name order, filtered and sorted server-side.
    let (_, api_hosts) = get(&server, reader, "/api/v1/hosts");
    let api_names: Vec<String> = api_hosts["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|h| h["name"].as_str().expect("name").to_owned())
        .collect();
    let (status, html) = page(&server, &cookie, "/hosts");
    assert_eq!(status, 200);
    assert_eq!(hosts_listed(&html), api_names);
    assert!(html.contains("10 of 10 hosts"), "{html}");
    let (_, html) = page(&server, &cookie, "/hosts?group=db");
    assert_eq!(hosts_listed(&html), ["web-005", "web-010"]);
    let (_, html) = page(
        &server,
        &cookie,
        "/hosts?label=env%3Dprod&q=WEB-00&sort=name&dir=desc",
    );
    assert_eq!(
        hosts_listed(&html),
        ["web-009", "web-008", "web-007", "web-006", "web-004", "web-003", "web-002", "web-001"]
    );
    let (_, html) = page(&server, &cookie, "/hosts?state=compliant");
    assert!(
        hosts_listed(&html).is_empty() && html.contains("0 of 10 hosts"),
        "{html}"
    );
    let (_, html) = page(&server, &cookie, "/hosts?state=unreachable&group=&q=");
    assert_eq!(
        hosts_listed(&html).len(),
        10,
        "empty form fields mean no filter"
    );
    for (path, says) in [
        ("/hosts?sort=colour", "unknown sort `colour`"),
        ("/hosts?state=green", "unknown state `green`"),
        ("/hosts?label=env", "not `key=value`"),
        ("/hosts?colour=red", "colour"),
    ] {
        let (status, html) = page(&server, &cookie, path);
        assert_eq!(status, 400, "{path}");
        assert!(html.contains(says), "{path}: {html}");
    }

    // One host: its state and why, the plan's view of it, its runs from the reports branch.
    let (_, api_host) = get(&server, reader, "/api/v1/hosts/web-002");
    let (status, html) = page(&server, &cookie, "/hosts/web-002");
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Host web-002</h1>"), "{html}");
    assert!(html.contains("badge state-unreachable"), "{html}");
    let run_id = api_host["lastRunId"].as_str().expect("last run");
    assert!(html.contains(&format!("/api/v1/runs/{run_id}")), "{html}");
    // ... each with the report commit that recorded it (a commit of the chart's history).
    let cell = html
        .split("<td class=\"report-commit\"><code title=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no report commit for the run: {html}"));
    let commit = &cell[..40];
    assert!(
        overview.contains(&format!("data-commit=\"{commit}\"")),
        "{commit}: {overview}"
    );
    assert!(
        html.contains("Plan: <strong>unreachable</strong>"),
        "{html}"
    );
    assert_eq!(page(&server, &cookie, "/hosts/nope").0, 404);

    // Runs: what the API lists, newest first.
    let (_, api_runs) = get(&server, reader, "/api/v1/runs");
    let (status, html) = page(&server, &cookie, "/runs");
    assert_eq!(status, 200);
    for run in api_runs["items"].as_array().expect("items") {
        let id = run["runId"].as_str().expect("id");
        assert!(html.contains(&format!(">{id}</a>")), "{id}: {html}");
    }
    // Unknown paths stay the API's JSON 404.
    let r = browser().get(server.url("/nope")).send().expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().expect("JSON");
    assert_eq!(body["error"], "not-found");
}

#[test]
fn over_tls_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
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
    let fleet = fleet(1);
    let url = fleet.url();
    let cache = fleet.root.path().join("cache").display().to_string();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start_in(
        fleet.root.path(),
        &[
            "--repo",
            &url,
            "--cache",
            &cache,
            "--interval",
            "1h",
            "--tls-cert",
            &c,
            "--tls-key",
            &k,
        ],
    );
    let login = format!("https://localhost:{}/login", server.addr.port());
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                &c,
                "-o",
                "/dev/null",
                "-D",
                "-",
            ])
            .args(extra)
            .arg(&login)
            .output()
            .expect("curl runs")
    };
    common::api::wait_for(
        "sign-in over TLS",
        std::time::Duration::from_secs(60),
        || {
            let out = curl(&[]);
            String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200")
        },
    );
    common::api::wait_for(
        "the token to be accepted",
        std::time::Duration::from_secs(60),
        || {
            let out = curl(&[
                "--data-urlencode",
                &format!("token={}", fleet.token("reader")),
            ]);
            let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
            if !headers.starts_with("http/1.1 303") {
                return false;
            }
            let cookie = headers
                .lines()
                .find(|l| l.starts_with("set-cookie:"))
                .unwrap_or_default()
                .to_owned();
            assert!(
                cookie.contains("; secure")
                    && cookie.contains("; httponly")
                    && cookie.contains("samesite=strict"),
                "{cookie}"
            );
            true
        },
    );
}
