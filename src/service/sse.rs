//! `GET /api/v1/events`: the event journal as server-sent events.
//!
//! Each event has `id:` (the journal id), `event:` (its type) and `data:` (its JSON). A
//! client reconnecting with `Last-Event-ID` gets every event after that id that is still
//! buffered, then the live ones, without loss or duplicates (the journal subscribes and
//! snapshots under one lock); when the events it missed are gone, it gets a `resync` event
//! first and should re-read current state. A receiver that falls behind the live broadcast
//! also gets `resync`. Comments keep idle connections alive through proxies; the stream
//! ends on shutdown (so graceful shutdown never waits on it) and after a maximum age (the
//! client reconnects and resumes), which also bounds what a stalled client holds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::App;
use crate::events::Event;

struct Feed {
    pending: VecDeque<SseEvent>,
    live: tokio::sync::broadcast::Receiver<Arc<Event>>,
    last_id: Option<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
}

fn sse(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind())
        .data(data)
}

fn resync(last_id: Option<u64>, why: &str) -> SseEvent {
    let mut e = SseEvent::default()
        .event("resync")
        .data(serde_json::json!({ "reason": why }).to_string());
    if let Some(id) = last_id {
        e = e.id(id.to_string());
    }
    e
}

/// The `Last-Event-ID` a client resumes after; an unparsable one resumes nowhere known
/// (a resync).
fn resume_point(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(()),
    }
}

/// `GET /api/v1/events`.
pub async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    let status = app.status();
    let resume = resume_point(&headers);
    let sub = status.events.subscribe(resume.ok().flatten());
    let mut pending = VecDeque::new();
    // A first event tells EventSource how soon to reconnect.
    pending.push_back(
        SseEvent::default()
            .retry(std::time::Duration::from_secs(3))
            .comment("patchkeeper events"),
    );
    if resume.is_err() {
        pending.push_back(resync(sub.last_id, "Last-Event-ID is not an event id"));
    } else if sub.gap {
        pending.push_back(resync(
            sub.last_id,
            "the events after Last-Event-ID are no longer buffered",
        ));
    }
    pending.extend(sub.replay.iter().map(|e| sse(e)));
    let feed = Feed {
        pending,
        live: sub.live,
        last_id: sub.last_id,
        shutdown: app.shutdown_signal(),
        deadline: Instant::now() + app.config().sse_max_age,
    };
    let stream = stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(e) = feed.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), feed));
            }
            if *feed.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                received = feed.live.recv() => match received {
                    Ok(event) => {
                        if feed.last_id.is_some_and(|last| event.id <= last) {
                            continue;
                        }
                        feed.last_id = Some(event.id);
                        return Some((Ok(sse(&event)), feed));
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an event stream fell behind");
                        let e = resync(None, "this stream fell behind and missed events");
                        return Some((Ok(e), feed));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = feed.shutdown.changed() => return None,
                _ = tokio::time::sleep_until(feed.deadline) => return None,
            }
        }
    });
    let keep_alive = KeepAlive::new()
        .interval(app.config().keep_alive)
        .text("keep-alive");
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    let h = response.headers_mut();
    // Proxies (nginx) must pass events through as they come.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h), Ok(None));
        h.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_point(&h), Ok(Some(42)));
        h.insert("last-event-id", HeaderValue::from_static("forty-two"));
        assert_eq!(resume_point(&h), Err(()));
    }
}
