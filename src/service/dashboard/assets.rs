//! The dashboard's script and style sheet, compiled into the binary (no CDN, no build
//! step): served with long-lived caching off, since they change with the binary.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The live-update script.
pub const SCRIPT: &str = include_str!("assets/dashboard.js");
/// The style sheet (light and dark, following the system).
pub const STYLE: &str = include_str!("assets/dashboard.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /assets/dashboard.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /assets/dashboard.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
