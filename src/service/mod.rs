//! The HTTP service of `patchkeeper serve --listen`: the only module that knows HTTP.
//!
//! [`router`] builds every route (tests drive it without a socket) and [`serve`] runs it on
//! a listener, with TLS when given an acceptor, until a shutdown future resolves. Handlers
//! are adapters: they read what the reconcile loop published ([`Status`]) or call the
//! library (the patch-request [`Intake`]); none of them ever observes a host.
//!
//! Limits, so a client cannot hurt the service: request bodies over 1 MiB are refused
//! (413) before they are read; a request must send its headers within 10 s and its body
//! within 30 s, and is answered within 30 s (event streams excepted); a connection whose
//! client stops reading for 60 s is closed; at most 1,024 connections are served at once;
//! each token has a request rate (429 beyond it). A panic in a handler becomes a 500 and
//! the server keeps serving.

mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
mod metrics;
pub mod openapi;
mod sse;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

pub use auth::Rate;

use crate::request::Intake;
use crate::status::Status;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// The request-id header (set when the client sends none, echoed in every response).
pub const REQUEST_ID: &str = "x-request-id";

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Per-token request rate.
    pub rate: Rate,
    /// Time to handle one request (event streams excepted).
    pub request_timeout: Duration,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Time a client has to send its request body.
    pub body_timeout: Duration,
    /// A connection whose client reads nothing for this long is closed.
    pub write_timeout: Duration,
    /// Comment lines on idle event streams this often.
    pub keep_alive: Duration,
    /// Event streams end after this long (clients reconnect and resume).
    pub sse_max_age: Duration,
    /// Whether this server runs the reconcile loop (`false`: `--api-only`, so
    /// `POST /api/v1/reconcile` is refused).
    pub reconciles: bool,
    /// How long shutdown waits for requests in flight.
    pub grace: Duration,
    /// Mark the dashboard's session cookie `Secure` (served over TLS).
    pub secure_cookies: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate: Rate::per_second(20, 100),
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(15),
            sse_max_age: Duration::from_secs(3600),
            reconciles: true,
            grace: Duration::from_secs(10),
            secure_cookies: false,
        }
    }
}

struct Inner {
    status: Arc<Status>,
    intake: Option<Arc<Intake>>,
    repo: PathBuf,
    limiter: auth::Limiter,
    metrics: Arc<metrics::Metrics>,
    writes: tokio::sync::Mutex<()>,
    config: Config,
    shutdown: watch::Sender<bool>,
    loop_alive: AtomicBool,
    openapi: String,
    runs: api::RunCache,
    csrf: dashboard::CsrfKey,
    /// The dashboard chart's points, for the reports tip they were read at.
    history: dashboard::HistoryCache,
}

/// The state every handler shares (cheap to clone).
#[derive(Clone)]
pub struct App(Arc<Inner>);

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// The service over `status` (published by the loop); `intake` files patch requests
    /// (none: `POST /api/v1/patch-requests` answers 503); `repo` is the Git repository
    /// holding the reports branch (run records are read from it).
    pub fn new(
        status: Arc<Status>,
        intake: Option<Arc<Intake>>,
        repo: PathBuf,
        config: Config,
    ) -> App {
        let metrics = Arc::new(metrics::Metrics::new(status.clone()));
        let (shutdown, _) = watch::channel(false);
        App(Arc::new(Inner {
            limiter: auth::Limiter::new(config.rate),
            status,
            intake,
            repo,
            metrics,
            writes: tokio::sync::Mutex::new(()),
            config,
            shutdown,
            loop_alive: AtomicBool::new(true),
            openapi: openapi::document_text(),
            runs: api::RunCache::default(),
            csrf: dashboard::CsrfKey::random(),
            history: dashboard::HistoryCache::default(),
        }))
    }

    /// The published status.
    pub fn status(&self) -> &Arc<Status> {
        &self.0.status
    }

    fn limiter(&self) -> &auth::Limiter {
        &self.0.limiter
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }

    fn config(&self) -> &Config {
        &self.0.config
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.0.shutdown.subscribe()
    }

    /// Ends event streams (and tells handlers the server is stopping).
    pub fn begin_shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// Marks the reconcile loop dead (its thread ended unexpectedly): `/healthz` fails.
    pub fn loop_died(&self) {
        self.0.loop_alive.store(false, Ordering::SeqCst);
    }

    /// Starts the background task that feeds reconcile durations into the metrics; call
    /// once inside the runtime.
    pub fn start_metrics(&self) -> tokio::task::JoinHandle<()> {
        self.0.metrics.follow(&self.0.status)
    }
}

/// Every route, with auth, limits, request ids, tracing, metrics and panic catching.
pub fn router(app: App) -> Router {
    router_with(app, Router::new())
}

/// [`router`] with `extra` routes under the same layers (tests add routes that misbehave).
pub fn router_with(app: App, extra: Router<App>) -> Router {
    let config = app.config().clone();
    let read = middleware::from_fn_with_state(app.clone(), auth::read);
    let request = middleware::from_fn_with_state(app.clone(), auth::request);
    let admin = middleware::from_fn_with_state(app.clone(), auth::admin);
    let api = Router::new()
        .route("/api/v1/fleet", get(api::fleet).route_layer(read.clone()))
        .route("/api/v1/hosts", get(api::hosts).route_layer(read.clone()))
        .route(
            "/api/v1/hosts/{name}",
            get(api::host).route_layer(read.clone()),
        )
        .route("/api/v1/plan", get(api::plan).route_layer(read.clone()))
        .route("/api/v1/runs", get(api::runs).route_layer(read.clone()))
        .route("/api/v1/runs/{id}", get(api::run).route_layer(read.clone()))
        .route(
            "/api/v1/windows",
            get(api::windows).route_layer(read.clone()),
        )
        .route(
            "/api/v1/patch-requests",
            get(api::requests)
                .route_layer(read.clone())
                .merge(post(api::file_request).route_layer(request)),
        )
        .route(
            "/api/v1/patch-requests/{name}",
            get(api::request).route_layer(read.clone()),
        )
        .route(
            "/api/v1/reconcile",
            get(api::reconcile_status)
                .route_layer(read.clone())
                .merge(post(api::reconcile).route_layer(admin)),
        )
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::handler))
        .merge(dashboard::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    // Event streams live as long as the client listens: no request timeout.
    let streams = Router::new().route("/api/v1/events", get(sse::events).route_layer(read));
    api.merge(streams)
        .merge(extra)
        .fallback(|| async { error::ApiError::not_found("route") })
        .route_layer(middleware::from_fn_with_state(app.clone(), metrics::track))
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(json_errors))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                // Errors worth a log line are logged where they happen (with the request
                // id); a 503 before readiness or a 4xx is not a server failure.
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                )
                .make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let level_debug = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
                if level_debug {
                    tracing::debug_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, token = tracing::field::Empty)
                } else {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, token = tracing::field::Empty)
                }
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(app)
}

fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = cause
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    error::ApiError::internal(format!("handler panicked: {what}")).into_response()
}

/// Every error response is JSON in one shape with the request id: errors raised by
/// layers (413, 408, 405) get a body, and handler errors get their `requestId`.
async fn json_errors(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let http1 = req.version() < axum::http::Version::HTTP_2;
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // The dashboard's pages answer errors as pages.
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut value = if is_json {
        match axum::body::to_bytes(body, 256 * 1024).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| error::body_for(status)),
            Err(_) => error::body_for(status),
        }
    } else {
        error::body_for(status)
    };
    if let (Some(obj), Some(id)) = (value.as_object_mut(), id) {
        obj.entry("requestId")
            .or_insert(serde_json::Value::String(id));
    }
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    // A body refused for its size or its slowness was never read to its end, so the rest of
    // it is still on the connection: say so, or a client that reuses the connection sends
    // its next request into a socket the server is closing (seen in CI as
    // `IncompleteMessage`). HTTP/2 forbids the header; its streams end on their own.
    if http1
        && matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        )
    {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Serves `app` on `listener` (TLS with `tls`) until `shutdown` resolves; then stops
/// accepting, ends event streams, and waits up to the grace period for requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router(app.clone());
    serve_router(listener, tls, app, router, shutdown).await
}

/// [`serve`] with a given router (from [`router_with`]).
pub async fn serve_router(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: App,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let config = app.config().clone();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: log, breathe, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut timed = tokio_io_timeout::TimeoutStream::new(stream);
            timed.set_write_timeout(Some(config.write_timeout));
            let timed = Box::pin(timed);
            let service = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            });
            let service = TowerToHyperService::new(service);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(config.header_timeout);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(config.header_timeout, acceptor.accept(timed)).await
                    {
                        Ok(Ok(tls)) => {
                            let conn = http.serve_connection(TokioIo::new(tls), service);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let conn = http.serve_connection(TokioIo::new(timed), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    app.begin_shutdown();
    if tokio::time::timeout(config.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after the grace period were cut");
    }
    Ok(())
}

/// The address a listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
