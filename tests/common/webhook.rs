//! A webhook receiver for alert tests: a tiny HTTP/1.1 server on 127.0.0.1 that answers
//! every POST with the status the test sets, records it, and wakes waiters; and the
//! signature check a receiver does.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

/// How long a test waits for a delivery (bounds a failure only).
pub const WAIT: Duration = Duration::from_secs(180);

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Inbox {
    answer: u16,
    received: Vec<Received>,
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1: answers every POST with the status the test
/// sets, records it, and wakes waiters.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
}

impl Receiver {
    pub fn start(answer: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let inbox = Arc::new((
            Mutex::new(Inbox {
                answer,
                received: vec![],
            }),
            Condvar::new(),
        ));
        let shared = inbox.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        Receiver { url, inbox }
    }

    pub fn answer(&self, status: u16) {
        self.inbox.0.lock().expect("lock").answer = status;
    }

    /// Waits (on the receiver's condition variable, bounded by `WAIT`) until `f` holds
    /// for what was received.
    pub fn wait_until(&self, what: &str, f: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        let (lock, cond) = &*self.inbox;
        let mut inbox = lock.lock().expect("lock");
        loop {
            if f(&inbox.received) {
                return inbox.received.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; received:\n{:#?}",
                inbox
                    .received
                    .iter()
                    .map(|r| (r.answered, String::from_utf8_lossy(&r.body).into_owned()))
                    .collect::<Vec<_>>()
            );
            inbox = cond.wait_timeout(inbox, left).expect("wait").0;
        }
    }
}

fn handle(stream: std::net::TcpStream, shared: &(Mutex<Inbox>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (lock, cond) = shared;
    let answered = {
        let mut inbox = lock.lock().expect("lock");
        let answered = inbox.answer;
        inbox.received.push(Received {
            headers,
            body,
            answered,
        });
        answered
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.flush();
    cond.notify_all();
}

/// Checks `X-Patchkeeper-Signature` against the body under `secret`.
pub fn verify(r: &Received, secret: &str) {
    let sig = r
        .headers
        .get("x-patchkeeper-signature")
        .unwrap_or_else(|| panic!("unsigned delivery: {r:?}"));
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&r.body);
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).expect("hex");
    mac.verify_slice(&bytes).expect("the signature verifies");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
}
