//! serve's re-import of advisory data from `https://` URLs, against a real HTTPS server on
//! loopback (hyper + rustls inside the test, a certificate signed by a CA the test makes
//! with the real `openssl`): the first fetch imports, an unchanged feed is not re-imported
//! (304, or the same digest from a server that ignores validators), a changed file is, a
//! failing server or an oversized answer keeps the last good data and shows the error in
//! the store's checks, the API, the metrics and `advisories status`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use patchkeeper::advisory::remote::FetchOptions;
use patchkeeper::advisory::{SourceCheck, Store};
use patchkeeper::reconcile::AdvisoryFeed;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A CA and a `localhost` / `127.0.0.1` certificate it signed, made with `openssl`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(dir: &Path) -> Pki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=patchkeeper test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}

/// What the test server serves and what it saw; the test changes it between checks.
#[derive(Default)]
struct Served {
    files: BTreeMap<String, Vec<u8>>,
    /// Answer every request with this status instead.
    fail: Option<u16>,
    /// Send `ETag`s and answer `If-None-Match` with 304 (a plain file server when false).
    conditional: bool,
    /// (path, If-None-Match sent, status answered), in order.
    seen: Vec<(String, Option<String>, u16)>,
}

fn etag(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    format!(
        "\"{}\"",
        d.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn answer(
    served: &Mutex<Served>,
    req: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let mut s = served.lock().unwrap();
    let path = req.uri().path().to_owned();
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body, tag) = match (s.fail, s.files.get(&path)) {
        (Some(code), _) => (code, b"server trouble".to_vec(), None),
        (None, None) => (404, b"not found".to_vec(), None),
        (None, Some(bytes)) => {
            let tag = etag(bytes);
            if s.conditional && inm.as_deref() == Some(tag.as_str()) {
                (304, Vec::new(), Some(tag))
            } else {
                (200, bytes.clone(), Some(tag))
            }
        }
    };
    s.seen.push((path, inm, status));
    let mut resp = hyper::Response::builder().status(status);
    if let (true, Some(tag)) = (s.conditional, tag) {
        resp = resp.header("etag", tag);
    }
    resp.header("last-modified", "Tue, 10 Mar 2026 00:00:00 GMT")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// An HTTPS server on 127.0.0.1 (a runtime on its own thread, alive for the test).
struct Https {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    _runtime: tokio::runtime::Runtime,
}

impl Https {
    fn start(pki: &Pki) -> Https {
        let acceptor = patchkeeper::service::tls::acceptor(&pki.cert, &pki.key).expect("TLS");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served {
            conditional: true,
            ..Served::default()
        }));
        let state = served.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let r = answer(&state, &req);
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Https {
            addr,
            served,
            _runtime: runtime,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    fn set(&self, f: impl FnOnce(&mut Served)) {
        f(&mut self.served.lock().unwrap());
    }

    /// What it saw since the last call.
    fn take_seen(&self) -> Vec<(String, Option<String>, u16)> {
        std::mem::take(&mut self.served.lock().unwrap().seen)
    }
}

/// The OSV fixture directory as an `all.zip` dump.
fn osv_zip() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut files: Vec<_> = std::fs::read_dir(fixture("advisories/osv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        zip.start_file(
            f.file_name().unwrap().to_string_lossy(),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&std::fs::read(&f).unwrap()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn tracker() -> Vec<u8> {
    std::fs::read(fixture("advisories/debian-tracker.json")).unwrap()
}

/// The tracker fixture without `openssl` (its seven records).
fn tracker_without_openssl() -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&tracker()).unwrap();
    v.as_object_mut().unwrap().remove("openssl");
    v.to_string().into_bytes()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn fleet_with_sources(dir: &Path, sources: &[String]) -> patchkeeper::validate::ValidFleet {
    let list = sources
        .iter()
        .map(|s| format!("      - {s}\n"))
        .collect::<String>();
    write(
        dir,
        "patchkeeper.yaml",
        &format!("apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {{name: s}}\nspec:\n  advisories:\n    refresh: 1h\n    sources:\n{list}"),
    );
    write(
        dir,
        "inventory.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  hosts:\n    - {name: h1, address: 10.0.0.1}\n",
    );
    patchkeeper::validate::load_and_validate(dir)
        .unwrap()
        .fleet
        .expect("valid fleet")
}

fn at(hours: i64) -> jiff::Timestamp {
    let t0: jiff::Timestamp = "2026-03-10T00:00:00Z".parse().unwrap();
    t0.checked_add(jiff::SignedDuration::from_hours(hours))
        .unwrap()
}

fn check<'a>(checks: &'a [SourceCheck], source: &str) -> &'a SourceCheck {
    checks
        .iter()
        .find(|c| c.source == source)
        .unwrap_or_else(|| panic!("no check of {source} in {checks:?}"))
}

#[test]
fn https_sources_are_fetched_conditionally_and_failures_keep_the_last_good_data() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = Https::start(&pki);
    server.set(|s| {
        s.files.insert("/tracker/data/json".into(), tracker());
        s.files.insert("/Debian/all.zip".into(), osv_zip());
    });
    // One by name (certificate's DNS name), one by address (its IP name).
    let tracker_url = server.url("localhost", "/tracker/data/json");
    let osv_url = server.url("127.0.0.1", "/Debian/all.zip");
    let repo = dir.path().join("repo");
    let fleet = fleet_with_sources(&repo, &[tracker_url.clone(), osv_url.clone()]);
    let store_path = dir.path().join("state/advisories.db");
    let feed = AdvisoryFeed {
        store: store_path.clone(),
        fetch: FetchOptions {
            ca: vec![pki.ca.clone()],
            ..FetchOptions::default()
        },
        ..AdvisoryFeed::default()
    };
    let store = Store::open(&store_path).unwrap();

    // First fetch: both imported, unconditionally.
    let checks = feed.refresh(&fleet, at(0));
    let first_checks = checks.clone();
    let seen = server.take_seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|(_, inm, st)| inm.is_none() && *st == 200),
        "{seen:?}"
    );
    let (t, o) = (check(&checks, &tracker_url), check(&checks, &osv_url));
    assert_eq!(t.error, None);
    assert_eq!(
        (t.records, t.failures),
        (
            store
                .import_of(&tracker_url)
                .unwrap()
                .unwrap()
                .stats
                .records,
            0
        )
    );
    assert!(t.records > 7 && o.records > 0, "{checks:?}");
    assert_eq!(t.imported_at.as_deref(), Some(at(0).to_string().as_str()));
    let first = store.snapshot().unwrap();
    assert_eq!(first.records, t.records + o.records);

    // Before `refresh` (1h) passed: not asked at all.
    feed.refresh(
        &fleet,
        at(0)
            .checked_add(jiff::SignedDuration::from_mins(30))
            .unwrap(),
    );
    assert!(server.take_seen().is_empty());

    // Unchanged: asked with the ETag, answered 304, nothing re-imported.
    let checks = feed.refresh(&fleet, at(2));
    let seen = server.take_seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (path, inm, status) in &seen {
        let served = server.served.lock().unwrap().files[path].clone();
        assert_eq!(inm.as_deref(), Some(etag(&served).as_str()), "{path}");
        assert_eq!(*status, 304);
    }
    let t = check(&checks, &tracker_url);
    assert_eq!(t.checked_at.as_deref(), Some(at(2).to_string().as_str()));
    assert_eq!(t.succeeded_at, t.checked_at);
    assert_eq!(t.imported_at.as_deref(), Some(at(0).to_string().as_str()));
    assert_eq!(store.snapshot().unwrap().id, first.id);

    // A server that ignores validators sends the same bytes: same digest, not re-imported.
    server.set(|s| s.conditional = false);
    let checks = feed.refresh(&fleet, at(4));
    assert!(server.take_seen().iter().all(|(_, _, st)| *st == 200));
    assert_eq!(
        check(&checks, &tracker_url).imported_at.as_deref(),
        Some(at(0).to_string().as_str())
    );
    assert_eq!(store.snapshot().unwrap().id, first.id);

    // Changed: imported (openssl's seven records gone).
    server.set(|s| {
        s.conditional = true;
        s.files
            .insert("/tracker/data/json".into(), tracker_without_openssl());
    });
    let checks = feed.refresh(&fleet, at(6));
    let second = store.snapshot().unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(second.records, first.records - 7);
    let t = check(&checks, &tracker_url);
    assert_eq!(t.imported_at.as_deref(), Some(at(6).to_string().as_str()));
    assert_eq!(t.records, check(&first_checks, &tracker_url).records - 7);

    // The server fails: the error is recorded, the last good data stays.
    server.set(|s| s.fail = Some(503));
    let checks = feed.refresh(&fleet, at(8));
    let t = check(&checks, &tracker_url);
    let e = t.error.as_deref().expect("an error");
    assert!(e.contains("HTTP 503") && e.contains(&tracker_url), "{e}");
    assert_eq!(t.failures, 1);
    assert_eq!(t.failed_at.as_deref(), Some(at(8).to_string().as_str()));
    assert_eq!(t.succeeded_at.as_deref(), Some(at(6).to_string().as_str()));
    assert_eq!(store.snapshot().unwrap().id, second.id);
    assert_eq!(store.snapshot().unwrap().records, second.records);
    let checks = feed.refresh(&fleet, at(10));
    assert_eq!(check(&checks, &tracker_url).failures, 2);

    // Recovered: the count resets, the validators of the last good answer are still sent.
    server.set(|s| s.fail = None);
    let failed = server.take_seen();
    assert!(
        failed.iter().all(|(_, _, st)| [200, 503].contains(st)),
        "{failed:?}"
    );
    let checks = feed.refresh(&fleet, at(12));
    let seen = server.take_seen();
    assert!(
        seen.len() == 2 && seen.iter().all(|(_, inm, st)| inm.is_some() && *st == 304),
        "{seen:?}"
    );
    let t = check(&checks, &tracker_url);
    assert_eq!((t.error.as_deref(), t.failures), (None, 0));

    // An answer over the size cap is refused; the data stays.
    let small = AdvisoryFeed {
        fetch: FetchOptions {
            max_bytes: 100,
            ca: vec![pki.ca.clone()],
            ..FetchOptions::default()
        },
        ..feed.clone()
    };
    server.set(|s| s.conditional = false);
    let checks = small.refresh(&fleet, at(14));
    let e = check(&checks, &osv_url).error.clone().expect("too large");
    assert!(e.contains("larger than 100 bytes"), "{e}");
    assert_eq!(store.snapshot().unwrap().id, second.id);

    // Without the CA the server is not trusted: nothing is read.
    let untrusted = AdvisoryFeed {
        store: dir.path().join("other.db"),
        ..AdvisoryFeed::default()
    };
    let checks = untrusted.refresh(&fleet, at(0));
    let e = check(&checks, &tracker_url)
        .error
        .clone()
        .expect("TLS error");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert_eq!(check(&checks, &tracker_url).records, 0);
}

/// Settings refuse plain `http://` advisory URLs at file:line:col; `https://` passes.
#[test]
fn plain_http_sources_are_refused_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "patchkeeper.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: s}\nspec:\n  advisories:\n    sources:\n      - https://security-tracker.debian.org/tracker/data/json\n      - http://mirror.example/osv/all.zip\n",
    );
    let out = common::cli::run(dir.path(), &["validate", "--repo", "."]);
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("patchkeeper.yaml:8:9: error[invalid-value]: advisory source `http://mirror.example/osv/all.zip` uses plain http"),
        "{text}"
    );
    assert!(!text.contains("security-tracker"), "{text}");
}

/// The real `serve --listen`: a source that starts failing shows its error in
/// `/api/v1/fleet`, the metrics and `advisories status`, and its data stays in use.
#[test]
fn serve_shows_each_sources_last_check_and_error() {
    use common::api::{client, get, wait_for, Fleet, FleetSpec, Server};
    let fleet = Fleet::new(FleetSpec {
        tokens: &[("reader", &["read"], None)],
        requests: None,
        hosts: 1,
    });
    let pki = pki(fleet.root.path());
    let server = Https::start(&pki);
    server.set(|s| {
        s.files.insert("/tracker/data/json".into(), tracker());
    });
    let url = server.url("localhost", "/tracker/data/json");
    let settings = fleet.work.join("patchkeeper.yaml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        "  advisories:\n    refresh: 1s\n    sources: [\"{url}\"]\n"
    ));
    std::fs::write(&settings, text).unwrap();
    common::git::git(&fleet.work, &["commit", "-qam", "advisories from a URL"]);
    common::git::git(
        &fleet.work,
        &["push", "-q", &fleet.bare.display().to_string(), "main"],
    );
    let store = fleet
        .root
        .path()
        .join("advisories.db")
        .display()
        .to_string();
    let cache = fleet.root.path().join("cache").display().to_string();
    let ca = pki.ca.display().to_string();
    let repo = fleet.url();
    let serve = Server::start_in(
        fleet.root.path(),
        &[
            "--repo",
            &repo,
            "--cache",
            &cache,
            "--interval",
            "1s",
            "--store",
            &store,
            "--advisory-ca",
            &ca,
        ],
    );
    let reader = fleet.token("reader");
    let source = |v: &Value| v["advisorySources"][0].clone();
    let mut summary = Value::Null;
    wait_for("the first import", Duration::from_secs(120), || {
        summary = get(&serve, reader, "/api/v1/fleet").1;
        source(&summary)["records"].as_u64().unwrap_or(0) > 0
    });
    let records = source(&summary)["records"].clone();
    assert_eq!(source(&summary)["source"], url.as_str());
    assert!(source(&summary)["error"].is_null(), "{summary}");

    server.set(|s| s.fail = Some(500));
    wait_for("the failure to show", Duration::from_secs(120), || {
        summary = get(&serve, reader, "/api/v1/fleet").1;
        source(&summary)["error"].is_string()
    });
    let s = source(&summary);
    assert!(
        s["error"].as_str().unwrap().contains("HTTP 500"),
        "{summary}"
    );
    assert!(s["failures"].as_u64() >= Some(1));
    assert_eq!(s["records"], records, "the last good data stays");
    assert!(s["succeededAt"].is_string());

    let metrics = client()
        .get(serve.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("patchkeeper_advisory_source_failures{"))
        .unwrap_or_else(|| panic!("no failures metric in\n{metrics}"));
    assert!(
        failures.contains(&url) && !failures.ends_with(" 0"),
        "{failures}"
    );
    assert!(metrics.contains("patchkeeper_advisory_source_last_success_timestamp_seconds{"));
    common::api::promtool_check(&metrics).unwrap();

    let out = common::cli::run(
        fleet.root.path(),
        &[
            "advisories",
            "status",
            "--repo",
            &fleet.work.display().to_string(),
            "--store",
            &store,
        ],
    );
    let text = common::cli::text(&out);
    assert!(text.contains("failing ("), "{text}");
    assert!(
        text.contains(&format!("error: {url}: GET {url}: HTTP 500")),
        "{text}"
    );
    let out = common::cli::run(
        fleet.root.path(),
        &[
            "advisories",
            "status",
            "--json",
            "--repo",
            &fleet.work.display().to_string(),
            "--store",
            &store,
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        v["checks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{v}"
    );
}
