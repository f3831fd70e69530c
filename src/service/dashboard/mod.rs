//! The dashboard: server-rendered pages at `/` over what the reconcile loop published (the
//! API's view types, never a second observation), with a small embedded script that
//! follows the event stream and re-renders the page's live region in place.
//!
//! Sessions: `POST /login` with a token that has the `read` scope sets the `pk_token`
//! cookie (`HttpOnly; SameSite=Strict; Path=/`, `Secure` when served over TLS) holding the
//! token itself, so revoking the token in Settings ends every session using it; `POST
//! /logout` clears it. The API's `GET` routes and the event stream accept the same cookie.
//!
//! Writes (sign-out, filing a patch request) are CSRF-safe twice over: the cookie is
//! `SameSite=Strict` (a browser never sends it on a cross-site request), and every form
//! carries a per-session CSRF token — an HMAC of the session's token under a key drawn at
//! start — compared in constant time; a request whose `Origin` (or `Sec-Fetch-Site`) says
//! it came from another site is refused before either check. Sign-in needs no session, so
//! it is checked by origin only. Every page is sent with a Content-Security-Policy that
//! allows only this origin's script and style (no inline script) and forbids framing.

mod assets;
pub mod page;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use maud::Markup;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::auth::{self, Denied};
use super::App;
use crate::model::Scope;
use crate::report::StatePoint;
use crate::token::Caller;
use page::{Chrome, Nav};

/// Hosts per page of the hosts table.
pub const HOSTS_PER_PAGE: usize = 200;
/// Runs on the runs page.
pub const RUNS_SHOWN: usize = 50;
/// Recent runs read for a host's page.
pub const HOST_RUNS_SCANNED: usize = 30;
/// Report commits the compliance-over-time chart shows.
pub const CHART_POINTS: usize = 120;

/// The chart's points for the reports tip they were read at (read again only when the
/// reports branch moves).
#[derive(Default)]
pub struct HistoryCache(std::sync::Mutex<Option<(String, Arc<Vec<StatePoint>>)>>);

/// The chart's points: the cached ones while the reports tip stays, else read from the
/// branch off the async threads (empty when it cannot be read: logged, the page still
/// renders).
async fn history(app: &App) -> Arc<Vec<StatePoint>> {
    let Some(tip) = app.status().reports().map(|r| r.commit.clone()) else {
        return Arc::default();
    };
    {
        let cached = app.0.history.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, points)) = cached.as_ref() {
            if *at == tip {
                return points.clone();
            }
        }
    }
    let repo = app.0.repo.clone();
    let branch = super::api::reports_branch(app);
    let read = tokio::task::spawn_blocking(move || {
        crate::report::state_history(&repo, &branch, CHART_POINTS)
    })
    .await;
    let points = match read {
        Ok(Ok(p)) => Arc::new(p.unwrap_or_default()),
        Ok(Err(e)) => {
            tracing::warn!("cannot read the reports history for the chart: {e}");
            return Arc::default();
        }
        Err(e) => {
            tracing::warn!("cannot read the reports history for the chart: {e}");
            return Arc::default();
        }
    };
    *app.0.history.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((tip, points.clone()));
    points
}

/// The dashboard's routes (merged into the service's router, under its layers).
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(overview))
        .route("/hosts", get(hosts))
        .route("/hosts/{name}", get(host))
        .route("/runs", get(runs))
        .route("/requests", get(requests).post(file))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/dashboard.js", get(assets::script))
        .route("/assets/dashboard.css", get(assets::style))
}

/// The CSRF key: drawn once per process (sessions survive restarts; their CSRF tokens are
/// re-derived on the next page).
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(…)")
    }
}

impl CsrfKey {
    /// A fresh random key (an all-zero key only if the OS has no randomness, which
    /// `getrandom` reports; the service still refuses cross-site writes by SameSite and
    /// origin).
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            tracing::error!("no randomness for the CSRF key: {e}");
        }
        CsrfKey(key)
    }

    /// The CSRF token of a session (its API token).
    pub fn token(&self, session: &str) -> String {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"patchkeeper-csrf\0");
        mac.update(session.as_bytes());
        data_encoding::BASE64URL_NOPAD.encode(&mac.finalize().into_bytes())
    }

    /// Whether `presented` is the CSRF token of `session` (constant time).
    pub fn verify(&self, session: &str, presented: &str) -> bool {
        self.token(session)
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// A signed-in browser.
struct Session {
    token: String,
    caller: Caller,
}

/// Security headers of every page.
fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn to_login(next: &str) -> Response {
    Redirect::to(&format!("/login?next={}", page::urlencode(next))).into_response()
}

/// The session of a page request, or the response to send instead (to sign-in when there
/// is no usable session).
fn session(app: &App, headers: &HeaderMap, here: &str) -> Result<Session, Box<Response>> {
    let Some(token) = auth::cookie(headers) else {
        return Err(Box::new(to_login(here)));
    };
    match auth::check(app, &token, Scope::Read) {
        Ok(caller) => Ok(Session { token, caller }),
        Err(Denied::Unauthenticated(_)) | Err(Denied::Forbidden(_)) => {
            // The token was revoked, expired or lost its scope: sign in again.
            let mut r = to_login(here);
            r.headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(app));
            Err(Box::new(r))
        }
        Err(Denied::Limited(caller, wait)) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "token `{}` is over its rate; retry in {} s",
                    caller.name,
                    auth::retry_secs(wait)
                ),
            )
                .into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(auth::retry_secs(wait)),
            );
            Err(Box::new(r))
        }
    }
}

fn chrome(app: &App, s: &Session) -> Chrome {
    let status = app.status();
    let view = status.view();
    Chrome {
        user: s.caller.name.clone(),
        csrf: app.0.csrf.token(&s.token),
        banners: page::banners(
            &view.counts,
            &status.reconcile_brief(),
            &status.events.recent(),
        ),
    }
}

fn cookie_flags(app: &App) -> &'static str {
    if app.config().secure_cookies {
        "; HttpOnly; SameSite=Strict; Path=/; Secure"
    } else {
        "; HttpOnly; SameSite=Strict; Path=/"
    }
}

fn clear_cookie(app: &App) -> HeaderValue {
    let v = format!("{}={}; Max-Age=0", auth::COOKIE, cookie_flags(app));
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("pk_token=; Max-Age=0"))
}

/// Whether a write came from this site: `Sec-Fetch-Site` (when sent) is `same-origin` or
/// `none`, and `Origin` (when sent) is this server's. Browsers send at least one of them on
/// every cross-site form post, so a missing pair is a non-browser client, which holds no
/// victim's cookie.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
}

fn forbidden(message: &str) -> Response {
    let body = maud::html! {
        (maud::DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { "Refused · patchkeeper" } link rel="stylesheet" href="/assets/dashboard.css"; }
        body.login { main { h1 { "Refused" } div.banner.banner-critical role="alert" { (message) } p { a href="/" { "Back to the dashboard" } } } } }
    };
    html_response(StatusCode::FORBIDDEN, body)
}

/// Checks a write: same origin, then the form's CSRF token against the session.
fn check_write(
    app: &App,
    headers: &HeaderMap,
    s: &Session,
    csrf: Option<&str>,
) -> Result<(), Box<Response>> {
    if !same_origin(headers) {
        tracing::info!(token = %s.caller.name, "refused: a cross-site dashboard write");
        return Err(Box::new(forbidden("This form was sent from another site.")));
    }
    if !csrf.is_some_and(|c| app.0.csrf.verify(&s.token, c)) {
        tracing::info!(token = %s.caller.name, "refused: a dashboard write without its CSRF token");
        return Err(Box::new(forbidden(
            "This form is stale or was not sent from the dashboard (CSRF token missing or wrong). Reload the page and try again.",
        )));
    }
    Ok(())
}

// ----- sign-in

/// Only local paths: never redirect off-site after sign-in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

async fn login_page(Query(q): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    html_response(StatusCode::OK, page::login(None, &next))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if !same_origin(&headers) {
        return forbidden("This sign-in form was sent from another site.");
    }
    let token = form.token.trim();
    let refused =
        |msg: &str| html_response(StatusCode::UNAUTHORIZED, page::login(Some(msg), &next));
    match auth::check(&app, token, Scope::Read) {
        Ok(caller) => {
            tracing::info!(token = %caller.name, "dashboard sign-in");
            let mut r = Redirect::to(&next).into_response();
            let cookie = format!("{}={token}{}", auth::COOKIE, cookie_flags(&app));
            match HeaderValue::from_str(&cookie) {
                Ok(v) => {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                    r
                }
                Err(_) => refused("That is not an API token."),
            }
        }
        Err(Denied::Unauthenticated(why)) => refused(&format!("Not signed in: {why}.")),
        Err(Denied::Forbidden(c)) => refused(&format!(
            "Token `{}` lacks the `read` scope the dashboard needs.",
            c.name
        )),
        Err(Denied::Limited(c, wait)) => refused(&format!(
            "Token `{}` is over its rate; retry in {} s.",
            c.name,
            auth::retry_secs(wait)
        )),
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match session(&app, &headers, "/") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = check_write(&app, &headers, &s, form.csrf.as_deref()) {
        return *r;
    }
    tracing::info!(token = %s.caller.name, "dashboard sign-out");
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&app));
    r
}

// ----- pages

async fn overview(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match session(&app, &headers, "/") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let history = history(&app).await;
    let status = app.status();
    let view = status.view();
    let reconcile = status.reconcile();
    let events = status.events.recent();
    let desired = status.desired();
    let windows = desired.as_ref().map(|(_, fleet)| {
        let ws: Vec<(String, crate::model::MaintenanceWindowSpec)> = fleet
            .fleet()
            .windows
            .iter()
            .map(|w| (w.name().to_owned(), w.doc.spec.clone()))
            .collect();
        crate::window::report::report(&ws, jiff::Timestamp::now())
    });
    let batches = status
        .plan()
        .map(|p| page::progress(&p, &reconcile, &events))
        .unwrap_or_default();
    let exposed = page::select(
        &view.hosts,
        &page::HostFilter {
            sort: page::SortKey::Severity,
            desc: true,
            ..Default::default()
        },
    )
    .into_iter()
    .filter(|h| {
        h.advisory_severity
            .is_some_and(|s| s >= crate::advisory::Severity::High)
    })
    .take(50)
    .collect();
    let o = page::Overview {
        history: &history,
        counts: &view.counts,
        desired_commit: desired.as_ref().map(|(c, _)| c.as_str()),
        reconcile: &reconcile,
        batches,
        windows: windows.as_ref(),
        exposed,
    };
    let chrome = chrome(&app, &s);
    html_response(
        StatusCode::OK,
        page::layout(
            "Overview",
            Nav::Overview,
            &chrome,
            page::overview(&o),
            maud::html! {},
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsQuery {
    group: Option<String>,
    label: Option<String>,
    state: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The hosts table's filter from its query (`Err`: what is wrong, for the page).
fn host_filter(q: HostsQuery) -> Result<(page::HostFilter, String, usize), String> {
    let label = nonempty(q.label).unwrap_or_default();
    let labels = if label.is_empty() {
        Vec::new()
    } else {
        super::api::parse_labels(&label).map_err(|e| e.body().message.clone())?
    };
    let states = nonempty(q.state)
        .map(|s| super::api::parse_states(&s).map_err(|e| e.body().message.clone()))
        .transpose()?;
    let sort = match nonempty(q.sort) {
        None => page::SortKey::Name,
        Some(s) => page::SortKey::parse(&s).ok_or_else(|| {
            format!(
                "unknown sort `{s}` (sorts: {})",
                page::SortKey::ALL.map(|(_, v, _)| v).join(", ")
            )
        })?,
    };
    let desc = match nonempty(q.dir).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(format!("unknown order `{other}` (asc or desc)")),
    };
    let page_no = match nonempty(q.page) {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| format!("page `{p}` is not a page number"))?,
    };
    Ok((
        page::HostFilter {
            group: nonempty(q.group),
            labels,
            states,
            search: nonempty(q.q),
            sort,
            desc,
        },
        label,
        page_no,
    ))
}

async fn hosts(
    State(app): State<App>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    q: Result<Query<HostsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let here = uri.path_and_query().map_or("/hosts", |p| p.as_str());
    let s = match session(&app, &headers, here) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let chrome = chrome(&app, &s);
    let parsed = q
        .map_err(|e| e.body_text())
        .and_then(|Query(q)| host_filter(q));
    let (filter, label, page_no) = match parsed {
        Ok(p) => p,
        Err(msg) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                page::error(&chrome, Nav::Hosts, "Bad filter", &msg),
            )
        }
    };
    let view = app.status().view();
    let selected = page::select(&view.hosts, &filter);
    let pages = selected.len().div_ceil(HOSTS_PER_PAGE).max(1);
    let page_no = page_no.min(pages);
    let body = page::hosts(
        &view.hosts,
        &selected,
        &filter,
        &label,
        page_no,
        HOSTS_PER_PAGE,
    );
    html_response(
        StatusCode::OK,
        page::layout("Hosts", Nav::Hosts, &chrome, body, maud::html! {}),
    )
}

async fn host(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let s = match session(
        &app,
        &headers,
        &format!("/hosts/{}", page::urlencode(&name)),
    ) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let chrome = chrome(&app, &s);
    let Some(detail) = super::api::host_detail(&app, &name) else {
        return html_response(
            StatusCode::NOT_FOUND,
            page::error(
                &chrome,
                Nav::Hosts,
                "No such host",
                &format!("No inventory host is named `{name}`."),
            ),
        );
    };
    let ids: Vec<String> = app
        .status()
        .reports()
        .map(|r| {
            r.runs
                .iter()
                .rev()
                .take(HOST_RUNS_SCANNED)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let history = history(&app).await;
    let runs = match super::api::load_runs(&app, ids).await {
        Ok(runs) => runs
            .iter()
            .filter_map(|r| {
                let h = r.hosts.iter().find(|h| h.host == name)?;
                let outcome = serde_json::to_value(&h.outcome)
                    .ok()
                    .and_then(|v| v.get("outcome").and_then(|o| o.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                Some(page::HostRunLine {
                    run: super::api::run_summary(r),
                    outcome,
                    report_commit: history
                        .iter()
                        .rev()
                        .find(|p| p.run_id == r.run_id)
                        .map(|p| p.commit.clone()),
                })
            })
            .collect(),
        Err(e) => {
            tracing::warn!("cannot read runs for the host page: {}", e.body().message);
            Vec::new()
        }
    };
    html_response(
        StatusCode::OK,
        page::layout(
            &format!("Host {name}"),
            Nav::Hosts,
            &chrome,
            page::host(&detail, &runs),
            maud::html! {},
        ),
    )
}

async fn runs(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match session(&app, &headers, "/runs") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let chrome = chrome(&app, &s);
    let all: Vec<String> = app
        .status()
        .reports()
        .map(|r| r.runs.clone())
        .unwrap_or_default();
    let ids: Vec<String> = all.iter().rev().take(RUNS_SHOWN).cloned().collect();
    let body = match super::api::load_runs(&app, ids).await {
        Ok(runs) => {
            let list: Vec<_> = runs.iter().map(|r| super::api::run_summary(r)).collect();
            page::runs(&list, all.len())
        }
        Err(e) => {
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page::error(&chrome, Nav::Runs, "Cannot read runs", &e.body().message),
            )
        }
    };
    html_response(
        StatusCode::OK,
        page::layout("Runs", Nav::Runs, &chrome, body, maud::html! {}),
    )
}

fn requests_page(
    app: &App,
    s: &Session,
    status: StatusCode,
    form: &page::RequestForm,
    filed: Option<&page::Filed>,
) -> Response {
    let chrome = chrome(app, s);
    let view = app.status().view();
    let may = s.caller.may(Scope::Request);
    html_response(
        status,
        page::layout(
            "Patch requests",
            Nav::Requests,
            &chrome,
            page::requests(&view.requests),
            page::request_form(&chrome.csrf, may, form, filed),
        ),
    )
}

async fn requests(State(app): State<App>, headers: HeaderMap) -> Response {
    let s = match session(&app, &headers, "/requests") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    requests_page(
        &app,
        &s,
        StatusCode::OK,
        &page::RequestForm::default(),
        None,
    )
}

#[derive(Debug, Default, Deserialize)]
struct RequestFormBody {
    csrf: Option<String>,
    token: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    packages: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    advisories: String,
    #[serde(default)]
    deadline: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The PatchRequest document the form describes (what `POST /api/v1/patch-requests`
/// takes), so the form files through the API's own path.
pub fn request_document(f: &page::RequestForm) -> serde_json::Value {
    let packages: Vec<serde_json::Value> = f
        .packages
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap_or_default();
            match parts.next() {
                Some(v) => serde_json::json!({ "name": name, "minVersion": v }),
                None => serde_json::json!({ "name": name }),
            }
        })
        .collect();
    let mut selector = serde_json::Map::new();
    if !list(&f.groups).is_empty() {
        selector.insert("groups".into(), list(&f.groups).into());
    }
    if !list(&f.hosts).is_empty() {
        selector.insert("hosts".into(), list(&f.hosts).into());
    }
    let mut spec = serde_json::json!({
        "selector": selector,
        "packages": packages,
        "reason": f.reason.trim(),
    });
    if !list(&f.advisories).is_empty() {
        spec["advisories"] = list(&f.advisories).into();
    }
    if !f.deadline.trim().is_empty() {
        spec["deadline"] = f.deadline.trim().into();
    }
    serde_json::json!({
        "apiVersion": "patchkeeper.dev/v1",
        "kind": "PatchRequest",
        "metadata": { "name": f.name.trim() },
        "spec": spec,
    })
}

async fn file(
    State(app): State<App>,
    headers: HeaderMap,
    Form(body): Form<RequestFormBody>,
) -> Response {
    let s = match session(&app, &headers, "/requests") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = check_write(&app, &headers, &s, body.csrf.as_deref()) {
        return *r;
    }
    let form = page::RequestForm {
        name: body.name,
        groups: body.groups,
        hosts: body.hosts,
        packages: body.packages,
        reason: body.reason,
        advisories: body.advisories,
        deadline: body.deadline,
    };
    let refused = |status: StatusCode, message: String, details: Vec<String>| {
        requests_page(
            &app,
            &s,
            status,
            &form,
            Some(&page::Filed::Refused { message, details }),
        )
    };
    // The request scope: the session's token, or one typed into the form.
    let caller = if s.caller.may(Scope::Request) {
        s.caller.clone()
    } else {
        let typed = body.token.as_deref().map(str::trim).unwrap_or("");
        match auth::check(&app, typed, Scope::Request) {
            Ok(c) => c,
            Err(Denied::Forbidden(c)) => {
                return refused(
                    StatusCode::FORBIDDEN,
                    format!("Token `{}` lacks the `request` scope filing needs.", c.name),
                    vec![],
                )
            }
            Err(Denied::Unauthenticated(why)) => {
                return refused(
                    StatusCode::FORBIDDEN,
                    format!("Filing needs a token with the `request` scope: {why}."),
                    vec![],
                )
            }
            Err(Denied::Limited(c, wait)) => {
                return refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Token `{}` is over its rate; retry in {} s.",
                        c.name,
                        auth::retry_secs(wait)
                    ),
                    vec![],
                )
            }
        }
    };
    let request_id = headers
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    match super::api::file(&app, &caller, request_document(&form), request_id).await {
        Ok(filed) => {
            let done = page::Filed::Ok {
                name: filed.name,
                branch: filed.branch,
                commit: filed.commit,
            };
            requests_page(
                &app,
                &s,
                StatusCode::CREATED,
                &page::RequestForm::default(),
                Some(&done),
            )
        }
        Err(e) => {
            let b = e.body();
            let details = b
                .diagnostics
                .iter()
                .flatten()
                .map(|d| match &d.field {
                    Some(f) => format!("{f}: {}", d.diagnostic.message),
                    None => d.diagnostic.message.clone(),
                })
                .collect();
            refused(e.status(), b.message.clone(), details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_per_session_and_per_key() {
        let key = CsrfKey([7; 32]);
        let a = key.token("pk_a");
        assert_eq!(a, key.token("pk_a"), "stable for a session");
        assert!(key.verify("pk_a", &a));
        assert!(!key.verify("pk_b", &a), "another session's token");
        assert!(!key.verify("pk_a", ""));
        assert!(!CsrfKey([8; 32]).verify("pk_a", &a), "another server's key");
        assert!(!a.contains("pk_a"));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn writes_from_other_sites_are_recognized() {
        let host = ("host", "127.0.0.1:8420");
        assert!(same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8420")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8420"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
    }

    #[test]
    fn sign_in_redirects_only_to_local_paths() {
        assert_eq!(
            safe_next(Some("/hosts?state=failed")),
            "/hosts?state=failed"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "hosts",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_form_becomes_the_apis_patch_request_document() {
        let doc = request_document(&page::RequestForm {
            name: " cve-1 ".into(),
            groups: "web, db".into(),
            hosts: "".into(),
            packages: "openssl 3.0.15-1~deb12u1\n\n curl \n".into(),
            reason: "CVE-1".into(),
            advisories: "CVE-2026-1".into(),
            deadline: "".into(),
        });
        assert_eq!(
            doc,
            serde_json::json!({
                "apiVersion": "patchkeeper.dev/v1", "kind": "PatchRequest",
                "metadata": {"name": "cve-1"},
                "spec": {
                    "selector": {"groups": ["web", "db"]},
                    "packages": [{"name": "openssl", "minVersion": "3.0.15-1~deb12u1"}, {"name": "curl"}],
                    "reason": "CVE-1",
                    "advisories": ["CVE-2026-1"]
                }
            })
        );
    }
}
