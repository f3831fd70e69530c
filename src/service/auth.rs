//! Authentication and authorization of API routes, as a middleware on each route group
//! (`route_layer`, so unknown paths stay 404 instead of 401).
//!
//! A caller presents `Authorization: Bearer pk_…` (or, on GET requests only, a `pk_token`
//! cookie, for a browser's `EventSource` that cannot set headers). No token, or one that is
//! malformed, unknown or expired, is 401 with `WWW-Authenticate: Bearer`; a token without
//! the route's scope is 403; a token over its rate is 429 with `Retry-After`. Only then does
//! the handler run, with the [`Caller`] in the request's extensions. Logs name the token;
//! its value is never logged or echoed.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::App;
use crate::model::Scope;
use crate::token::{Caller, Refused};

/// Cookie a browser may carry the token in (GET requests only).
pub const COOKIE: &str = "pk_token";

/// A request rate per token: one more request every `every`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// A request is replenished this often (`None`: unlimited).
    pub every: Option<Duration>,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Rate {
    /// `per_second` requests per second (0: unlimited), `burst` at once.
    pub fn per_second(per_second: u32, burst: u32) -> Rate {
        Rate {
            every: (per_second > 0).then(|| Duration::from_secs(1) / per_second),
            burst,
        }
    }
}

/// Per-token rate limiter.
pub struct Limiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl Limiter {
    /// A limiter allowing `rate` per token.
    pub fn new(rate: Rate) -> Limiter {
        let limiter = rate.every.and_then(Quota::with_period).map(|quota| {
            let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(quota.allow_burst(burst))
        });
        Limiter { limiter }
    }

    /// `Err(wait)` when `token` is over its rate.
    pub fn check(&self, token: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&token.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The bearer token of a request: the `Authorization` header, else (GET only) the cookie.
fn presented(method: &Method, headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if method != Method::GET {
        return None;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_owned())
        })
}

fn unauthorized(code: &str, message: &str, invalid: bool) -> Response {
    let challenge = if invalid {
        "Bearer realm=\"patchkeeper\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"patchkeeper\""
    };
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
        .header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
        .into_response()
}

/// Why a presented token was not let through.
#[derive(Debug)]
pub(super) enum Denied {
    /// Malformed, unknown or expired (the message says which).
    Unauthenticated(String),
    /// Valid, without the scope.
    Forbidden(Caller),
    /// Over its rate: retry after this long.
    Limited(Caller, Duration),
}

/// Checks `token` against the keyring in force, the scope and the token's rate; logs why
/// not (naming the token, never its value).
pub(super) fn check(app: &App, token: &str, scope: Scope) -> Result<Caller, Denied> {
    let caller: Caller = match app
        .status()
        .keyring()
        .authenticate(token, jiff::Timestamp::now())
    {
        Ok(c) => c,
        Err(refused) => {
            match &refused {
                Refused::Expired { name, .. } => {
                    tracing::info!(token = %name, "refused: the token expired")
                }
                other => tracing::info!("refused: {other}"),
            }
            return Err(Denied::Unauthenticated(refused.to_string()));
        }
    };
    tracing::Span::current().record("token", caller.name.as_str());
    if !caller.may(scope) {
        tracing::info!(token = %caller.name, needed = scope.as_str(), "refused: missing scope");
        return Err(Denied::Forbidden(caller));
    }
    if let Err(wait) = app.limiter().check(&caller.name) {
        tracing::info!(token = %caller.name, "refused: over its rate");
        return Err(Denied::Limited(caller, wait));
    }
    Ok(caller)
}

/// Whole seconds to wait, at least 1 (for `Retry-After`).
pub(super) fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The session cookie's token (whatever the method; the dashboard checks CSRF itself).
pub(super) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_owned())
        })
}

async fn authorize(app: App, scope: Scope, mut req: Request, next: Next) -> Response {
    let Some(token) = presented(req.method(), req.headers()) else {
        tracing::info!("refused: no bearer token");
        return unauthorized(
            "unauthorized",
            "this route needs a bearer token: `Authorization: Bearer pk_…`",
            false,
        );
    };
    let caller = match check(&app, &token, scope) {
        Ok(c) => c,
        Err(Denied::Unauthenticated(why)) => return unauthorized("unauthorized", &why, true),
        Err(Denied::Forbidden(caller)) => {
            let challenge = format!(
                "Bearer realm=\"patchkeeper\", error=\"insufficient_scope\", scope=\"{}\"",
                scope.as_str()
            );
            let mut err = ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token `{}` lacks the `{}` scope this route needs",
                    caller.name,
                    scope.as_str()
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                err = err.header(header::WWW_AUTHENTICATE, v);
            }
            return err.into_response();
        }
        Err(Denied::Limited(caller, wait)) => {
            let secs = retry_secs(wait);
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!(
                    "token `{}` is over its rate; retry in {secs} s",
                    caller.name
                ),
            )
            .header(header::RETRY_AFTER, HeaderValue::from(secs))
            .into_response();
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Middleware: the `read` scope.
pub async fn read(State(app): State<App>, req: Request, next: Next) -> Response {
    authorize(app, Scope::Read, req, next).await
}

/// Middleware: the `request` scope.
pub async fn request(State(app): State<App>, req: Request, next: Next) -> Response {
    authorize(app, Scope::Request, req, next).await
}

/// Middleware: the `admin` scope.
pub async fn admin(State(app): State<App>, req: Request, next: Next) -> Response {
    authorize(app, Scope::Admin, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_a_cookie_on_gets() {
        let bearer = headers(&[("authorization", "Bearer pk_abc")]);
        assert_eq!(presented(&Method::POST, &bearer).as_deref(), Some("pk_abc"));
        let lower = headers(&[("authorization", "bearer pk_abc")]);
        assert_eq!(presented(&Method::GET, &lower).as_deref(), Some("pk_abc"));
        let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(presented(&Method::GET, &basic), None);
        let cookie = headers(&[("cookie", "a=b; pk_token=pk_xyz")]);
        assert_eq!(presented(&Method::GET, &cookie).as_deref(), Some("pk_xyz"));
        assert_eq!(
            presented(&Method::POST, &cookie),
            None,
            "no cookie auth for writes"
        );
    }

    #[test]
    fn the_limiter_allows_the_burst_then_refuses() {
        let limiter = Limiter::new(Rate {
            every: Some(Duration::from_secs(60)),
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("ci").is_ok());
        }
        let wait = limiter.check("ci").expect_err("over");
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(limiter.check("other").is_ok(), "per token");
        let off = Limiter::new(Rate::per_second(0, 0));
        assert!((0..1000).all(|_| off.check("ci").is_ok()));
    }
}
