//! Abuse cases of the HTTP service, on a real socket on loopback with the library's own
//! `serve` (so limits can be set small): a handler that panics, a client that sends its
//! headers or its body too slowly, a token over its rate. The server must answer, refuse
//! or cut the offender off, and keep serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use patchkeeper::service::{self, App, Config, Rate};
use patchkeeper::status::Status;

struct Running {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tokens: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = &self.runtime;
    }
}

/// A service whose desired state holds two tokens with the `read` scope and one with
/// `request`.
fn start(config: Config) -> Running {
    let tokens: Vec<_> = (0..3)
        .map(|_| patchkeeper::token::generate().expect("random"))
        .collect();
    let mut yaml = String::from(
        "apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {name: s}\nspec:\n  api:\n    tokens:\n",
    );
    for (i, t) in tokens.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{name: t{i}, sha256: {}, scopes: [{}]}}\n",
            t.sha256,
            if i == 2 { "request" } else { "read" }
        ));
    }
    yaml.push_str("---\napiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: i}\nspec:\n  hosts:\n    - {name: h1}\n");
    let mut fleet = patchkeeper::fleet::Fleet::default();
    let mut diags = Vec::new();
    patchkeeper::fleet::add_file(&mut fleet, &mut diags, Path::new("fleet.yaml"), &yaml);
    let outcome = patchkeeper::validate::validate_fleet(fleet, diags);
    let valid = outcome
        .fleet
        .unwrap_or_else(|| panic!("{:?}", outcome.diagnostics));
    let status = Arc::new(Status::default());
    status.set_desired("0000000000000000000000000000000000000000", Arc::new(valid));
    let app = App::new(status, None, std::env::temp_dir(), config);
    let extra = axum::Router::new().route(
        "/boom",
        get(|| async {
            let v: Vec<u8> = Vec::new();
            // A bug in a handler.
            #[allow(clippy::indexing_slicing)]
            let _ = v[1];
            "unreachable"
        }),
    );
    let router = service::router_with(app.clone(), extra);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(service::serve_router(listener, None, app, router, async {
        let _ = stopped.await;
    }));
    Running {
        runtime,
        addr,
        stop: Some(stop),
        tokens: tokens.into_iter().map(|t| t.secret).collect(),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn healthz(addr: std::net::SocketAddr) -> u16 {
    client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .expect("GET /healthz")
        .status()
        .as_u16()
}

#[test]
fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let s = start(Config::default());
    for _ in 0..3 {
        let r = client()
            .get(format!("http://{}/boom", s.addr))
            .send()
            .expect("GET /boom");
        assert_eq!(r.status().as_u16(), 500);
        let request_id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
        let body: serde_json::Value = r.json().expect("JSON");
        assert_eq!(body["error"], "internal");
        assert_eq!(body["requestId"], request_id.as_str());
        assert!(
            !body["message"]
                .as_str()
                .unwrap_or("")
                .contains("index out of bounds"),
            "internals leaked: {body}"
        );
        assert_eq!(healthz(s.addr), 200);
    }
}

#[test]
fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let s = start(Config {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    // Headers that never end.
    let mut slow = TcpStream::connect(s.addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // Someone else is served at once.
    assert_eq!(healthz(s.addr), 200);
    let began = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = began.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the slow client held its connection for {waited:?}"
    );
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body that never comes: 408 from the body timeout, the connection closed.
    let mut slow = TcpStream::connect(s.addr).expect("connect");
    let token = &s.tokens[2];
    let began = Instant::now();
    slow.write_all(
        format!(
            "POST /api/v1/patch-requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"met"
        )
        .as_bytes(),
    )
    .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the connection stayed open after the answer"
    );
    assert_eq!(healthz(s.addr), 200);
}

#[test]
fn a_token_over_its_rate_gets_429_and_other_tokens_do_not() {
    let s = start(Config {
        // One request a minute after a burst of 3: the 4th is refused however slow
        // this machine is.
        rate: Rate {
            every: Some(Duration::from_secs(60)),
            burst: 3,
        },
        ..Config::default()
    });
    let get = |token: &str| {
        client()
            .get(format!("http://{}/api/v1/fleet", s.addr))
            .bearer_auth(token)
            .send()
            .expect("GET")
    };
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&s.tokens[0]).status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 200]);
    let limited = get(&s.tokens[0]);
    assert_eq!(limited.status().as_u16(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((50..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = limited.json().expect("JSON");
    assert_eq!(body["error"], "rate-limited");
    assert!(
        body["message"].as_str().unwrap_or("").contains("t0"),
        "{body}"
    );
    assert_eq!(get(&s.tokens[1]).status().as_u16(), 200, "another token");
}
