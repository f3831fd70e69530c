//! The handlers of `/api/v1`: adapters from HTTP to what the loop published and to the
//! patch-request intake. Lists are paginated by an opaque cursor (`limit` up to 1,000,
//! default 100; `nextCursor` and a `Link: <…>; rel="next"` header when there is more).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::App;
use crate::compliance::ComplianceState;
use crate::events::EventData;
use crate::report::{RunKind, RunRecord};
use crate::request::{FieldDiagnostic, Submission};
use crate::status::ReconcileStatus;
use crate::token::Caller;
use crate::view::{
    FleetCounts, HostDetail, HostSummary, RequestState, RequestStatus, SubmittedRequest,
};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// A page of a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Items matching the filters, over all pages.
    pub total: usize,
    /// Pass as `cursor` for the next page (`null`: this is the last one).
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/fleet`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    /// The desired commit in force (`null`: none validated yet).
    pub desired_commit: Option<String>,
    /// Whether the server is ready (a desired commit is in force).
    pub ready: bool,
    /// Whether this server runs the reconcile loop (`false`: `serve --api-only`).
    pub reconciles: bool,
    /// Counts over the fleet.
    #[serde(flatten)]
    pub counts: FleetCounts,
    /// The reconcile in progress, or the last one (without per-host results; see
    /// `GET /api/v1/reconcile`).
    pub reconcile: ReconcileStatus,
    /// The advisory sources the loop refreshes (Settings `advisories.sources`, `serve
    /// --advisories`): last check, last success, last error, records in use.
    pub advisory_sources: Vec<crate::advisory::SourceCheck>,
}

/// One run in a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// `observe`, `apply` or `validate`.
    pub kind: RunKind,
    /// Start.
    #[schemars(with = "String")]
    pub started_at: jiff::Timestamp,
    /// End.
    #[schemars(with = "String")]
    pub finished_at: jiff::Timestamp,
    /// The fleet commit it worked from.
    pub desired_commit: String,
    /// Hosts in the run.
    pub hosts: usize,
    /// Hosts per outcome (`updated`, `unchanged`, `failed`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Errors (validate runs).
    pub errors: usize,
}

/// `POST /api/v1/patch-requests` answered.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestFiled {
    /// The request's name.
    pub name: String,
    /// `submitted` (on its review branch) or `merged` (committed to the desired branch).
    pub state: RequestState,
    /// The branch the commit is on.
    pub branch: String,
    /// The commit.
    pub commit: String,
    /// Whether it was pushed to the remote.
    pub pushed: bool,
    /// The token that filed it (the commit's `Requested-By:`).
    pub requested_by: String,
    /// The commit's `Request-Id:` (this request's id).
    pub request_id: String,
    /// Warnings validation found in the request.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub warnings: Vec<FieldDiagnostic>,
}

/// `POST /api/v1/reconcile` answered.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileAccepted {
    /// A reconcile is queued: it starts when the loop is free (follow `GET /api/v1/events`).
    pub queued: bool,
    /// One was already queued (requests coalesce).
    pub already_queued: bool,
    /// The loop's state now.
    pub reconcile: ReconcileStatus,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
}

/// Filters of `GET /api/v1/hosts`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// Only hosts in this group.
    pub group: Option<String>,
    /// Only hosts with these labels: `key=value`, several separated by commas.
    pub label: Option<String>,
    /// Only hosts in these compliance states (comma-separated; `unknown`: never reported).
    pub state: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

/// Filters of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only runs of this kind: `observe`, `apply` or `validate`.
    pub kind: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

/// Filters of `GET /api/v1/patch-requests`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Only requests in these states (comma-separated: `submitted`, `merged`, `applied`,
    /// `compliant`).
    pub state: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid-query", e.body_text()))
}

fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid-query",
            format!("limit {n} is out of range: 1 to {MAX_LIMIT}"),
        )
        .field("limit")),
    }
}

/// A page as a response, with `Link: rel="next"` when there is one.
fn page_response<T: Serialize>(uri: &Uri, page: Page<T>) -> Response {
    let mut response = Json(&page).into_response();
    if let Some(cursor) = &page.next_cursor {
        let mut pairs: Vec<(String, String)> = uri
            .query()
            .map(|q| {
                serde_urlencoded_pairs(q)
                    .into_iter()
                    .filter(|(k, _)| k != "cursor")
                    .collect()
            })
            .unwrap_or_default();
        pairs.push(("cursor".into(), cursor.clone()));
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

/// Decodes `a=b&c=d` (percent and `+` decoding) without another dependency: axum's Query
/// already accepted it, so it is well formed.
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Pages `items` (sorted by `key`, ascending) after `cursor`.
fn paginate<T>(
    items: impl Iterator<Item = T>,
    key: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    limit: usize,
) -> Page<T> {
    let mut total = 0;
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    for item in items {
        total += 1;
        if cursor.is_some_and(|c| key(&item) <= c) {
            continue;
        }
        if out.len() < limit {
            out.push(item);
        } else {
            more = true;
        }
    }
    let next_cursor = if more {
        out.last().map(|i| key(i).to_owned())
    } else {
        None
    };
    Page {
        items: out,
        total,
        next_cursor,
    }
}

pub(super) fn parse_states(s: &str) -> Result<Vec<Option<ComplianceState>>, ApiError> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            if name == "unknown" {
                return Ok(None);
            }
            ComplianceState::ALL
                .iter()
                .find(|st| st.as_str() == name)
                .map(|st| Some(*st))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-query",
                        format!(
                            "unknown state `{name}` (states: {}, unknown)",
                            ComplianceState::ALL.map(|s| s.as_str()).join(", ")
                        ),
                    )
                    .field("state")
                })
        })
        .collect()
}

pub(super) fn parse_labels(s: &str) -> Result<Vec<(String, String)>, ApiError> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-query",
                        format!("label filter `{pair}` is not `key=value`"),
                    )
                    .field("label")
                })
        })
        .collect()
}

// ----- handlers

/// `GET /api/v1/fleet`.
pub async fn fleet(State(app): State<App>) -> Json<FleetSummary> {
    let status = app.status();
    let view = status.view();
    Json(FleetSummary {
        desired_commit: status.desired().map(|(c, _)| c),
        ready: status.ready(),
        reconciles: app.config().reconciles,
        counts: view.counts.clone(),
        reconcile: status.reconcile_brief(),
        advisory_sources: status.advisory_sources().as_ref().clone(),
    })
}

/// `GET /api/v1/hosts`.
pub async fn hosts(
    State(app): State<App>,
    uri: Uri,
    q: Result<Query<HostQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let states = q.state.as_deref().map(parse_states).transpose()?;
    let labels = q.label.as_deref().map(parse_labels).transpose()?;
    let view = app.status().view();
    let matches = |h: &&HostSummary| {
        q.group.as_ref().is_none_or(|g| h.groups.contains(g))
            && labels
                .as_ref()
                .is_none_or(|ls| ls.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
            && states.as_ref().is_none_or(|ss| ss.contains(&h.state))
    };
    let page = paginate(
        view.hosts.iter().enumerate().filter(|(_, h)| matches(h)),
        |(_, h)| h.name.as_str(),
        q.cursor.as_deref(),
        limit,
    );
    // The page is assembled from each host's JSON, made once per view (FleetView::host_json).
    let items = page
        .items
        .iter()
        .map(|(i, h)| {
            view.host_json(*i)
                .ok_or_else(|| ApiError::internal(format!("host `{}` did not serialize", h.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let page = Page {
        items,
        total: page.total,
        next_cursor: page.next_cursor,
    };
    Ok(page_response(&uri, page))
}

/// `GET /api/v1/hosts/{name}`.
pub async fn host(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<HostDetail>, ApiError> {
    host_detail(&app, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&format!("host `{name}`")))
}

/// One host in full from what the loop published (the API's host view and the dashboard's
/// host page share it); `None`: no such inventory host.
pub(super) fn host_detail(app: &App, name: &str) -> Option<HostDetail> {
    let status = app.status();
    let view = status.view();
    let summary = view.host(name)?.clone();
    let observed = status.observed().and_then(|o| o.host(name).cloned());
    let compliance = status
        .reports()
        .and_then(|r| r.hosts.iter().find(|h| h.compliance.host == name).cloned());
    let plan = status.plan().and_then(|p| p.host(name).cloned());
    Some(HostDetail::new(summary, observed, compliance, plan))
}

/// `GET /api/v1/plan`: the same JSON as `patchkeeper plan --json`.
pub async fn plan(State(app): State<App>) -> Result<Response, ApiError> {
    let plan = app
        .status()
        .plan()
        .ok_or_else(|| ApiError::not_ready("no plan yet: the first reconcile has not planned"))?;
    let body = serde_json::to_vec(&*plan).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Immutable run records read from the reports branch, kept once read.
#[derive(Default)]
pub struct RunCache {
    runs: Mutex<HashMap<String, Arc<RunRecord>>>,
}

/// Entries kept before the cache starts over.
const RUN_CACHE: usize = 4096;

impl RunCache {
    fn get(&self, id: &str) -> Option<Arc<RunRecord>> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn put(&self, run: RunRecord) -> Arc<RunRecord> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if runs.len() >= RUN_CACHE {
            runs.clear();
        }
        let run = Arc::new(run);
        runs.insert(run.run_id.clone(), run.clone());
        run
    }
}

/// The reports branch of the desired commit's Settings.
pub(super) fn reports_branch(app: &App) -> String {
    app.status()
        .desired()
        .and_then(|(_, f)| f.settings().reports.branch)
        .unwrap_or_else(|| crate::report::DEFAULT_BRANCH.to_owned())
}

/// Reads the records of `ids` (cache first, then one pass over the branch).
pub(super) async fn load_runs(
    app: &App,
    ids: Vec<String>,
) -> Result<Vec<Arc<RunRecord>>, ApiError> {
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| app.0.runs.get(id).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        let repo = app.0.repo.clone();
        let branch = reports_branch(app);
        let read =
            tokio::task::spawn_blocking(move || crate::report::read_runs(&repo, &branch, &missing))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
        for run in read {
            app.0.runs.put(run);
        }
    }
    Ok(ids.iter().filter_map(|id| app.0.runs.get(id)).collect())
}

pub(super) fn run_summary(run: &RunRecord) -> RunSummary {
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for h in &run.hosts {
        let outcome = serde_json::to_value(&h.outcome)
            .ok()
            .and_then(|v| v.get("outcome").and_then(|o| o.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        *outcomes.entry(outcome).or_default() += 1;
    }
    RunSummary {
        run_id: run.run_id.clone(),
        kind: run.kind,
        started_at: run.started_at,
        finished_at: run.finished_at,
        desired_commit: run.desired_commit.clone(),
        hosts: run.hosts.len(),
        outcomes,
        errors: run.errors.len(),
    }
}

/// `GET /api/v1/runs`: newest first.
pub async fn runs(
    State(app): State<App>,
    uri: Uri,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k @ ("observe" | "apply" | "validate")) => Some(format!("-{k}-")),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid-query",
                format!("unknown run kind `{other}` (kinds: observe, apply, validate)"),
            )
            .field("kind"))
        }
    };
    let ids: Vec<String> = app
        .status()
        .reports()
        .map(|r| r.runs.clone())
        .unwrap_or_default();
    // Ids sort by start time: newest first, paged by the id the last page ended at.
    let selected: Vec<&String> = ids
        .iter()
        .rev()
        .filter(|id| kind.as_ref().is_none_or(|k| id.contains(k.as_str())))
        .collect();
    let total = selected.len();
    let after: Vec<&String> = selected
        .into_iter()
        .filter(|id| q.cursor.as_deref().is_none_or(|c| id.as_str() < c))
        .collect();
    let page_ids: Vec<String> = after.iter().take(limit).map(|s| (*s).clone()).collect();
    let more = after.len() > page_ids.len();
    let records = load_runs(&app, page_ids.clone()).await?;
    let page = Page {
        items: records.iter().map(|r| run_summary(r)).collect(),
        total,
        next_cursor: if more { page_ids.last().cloned() } else { None },
    };
    Ok(page_response(&uri, page))
}

/// `GET /api/v1/runs/{id}`.
pub async fn run(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let known = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && app
            .status()
            .reports()
            .is_some_and(|r| r.runs.binary_search(&id).is_ok());
    if !known {
        return Err(ApiError::not_found(&format!("run `{id}`")));
    }
    let run = load_runs(&app, vec![id.clone()])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(&format!("run `{id}`")))?;
    let body = serde_json::to_vec(&*run).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `GET /api/v1/windows`: every window's state now (as `patchkeeper windows --json`).
pub async fn windows(
    State(app): State<App>,
) -> Result<Json<crate::window::report::Report>, ApiError> {
    let (_, fleet) = app
        .status()
        .desired()
        .ok_or_else(|| ApiError::not_ready("no desired commit validated yet"))?;
    let windows: Vec<(String, crate::model::MaintenanceWindowSpec)> = fleet
        .fleet()
        .windows
        .iter()
        .map(|w| (w.name().to_owned(), w.doc.spec.clone()))
        .collect();
    Ok(Json(crate::window::report::report(
        &windows,
        jiff::Timestamp::now(),
    )))
}

/// `GET /api/v1/patch-requests`.
pub async fn requests(
    State(app): State<App>,
    uri: Uri,
    q: Result<Query<RequestQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let states: Option<Vec<String>> = q
        .state
        .as_deref()
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect());
    if let Some(bad) = states
        .iter()
        .flatten()
        .find(|s| !["submitted", "merged", "applied", "compliant"].contains(&s.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("unknown state `{bad}` (states: submitted, merged, applied, compliant)"),
        )
        .field("state"));
    }
    let view = app.status().view();
    let mut sorted: Vec<&RequestStatus> = view
        .requests
        .iter()
        .filter(|r| {
            states.as_ref().is_none_or(|ss| {
                let name = serde_json::to_value(r.state).unwrap_or_default();
                ss.iter().any(|s| name == s.as_str())
            })
        })
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let page = paginate(
        sorted.into_iter(),
        |r| r.name.as_str(),
        q.cursor.as_deref(),
        limit,
    );
    Ok(page_response(&uri, page))
}

/// `GET /api/v1/patch-requests/{name}`.
pub async fn request(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<RequestStatus>, ApiError> {
    app.status()
        .view()
        .request(&name)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&format!("patch request `{name}`")))
}

/// Reads a request body: 413 over the limit, 408 when the client sends it too slowly.
async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, super::BODY_LIMIT)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<tower_http::timeout::TimeoutError>() {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        "the request body did not arrive in time",
                    );
                }
                if err.is::<http_body_util::LengthLimitError>() {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        "the request body is larger than the server accepts (1 MiB)",
                    );
                }
                source = err.source();
            }
            ApiError::bad_request(
                "unreadable-body",
                format!("cannot read the request body: {e}"),
            )
        })
}

/// `POST /api/v1/patch-requests`: validate, commit, publish.
pub async fn file_request(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the PatchRequest as `Content-Type: application/json`",
        ));
    }
    let body = read_body(body).await?;
    let document: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("malformed-json", format!("the body is not JSON: {e}"))
    })?;
    let request_id = headers
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let filed = file(&app, &caller, document, request_id).await?;
    let location = format!("/api/v1/patch-requests/{}", filed.name);
    let mut response = (StatusCode::CREATED, Json(filed)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Files a patch request `document` for `caller`: validated, committed and published, the
/// view and the event stream told. The one path of the API and of the dashboard's form.
pub(super) async fn file(
    app: &App,
    caller: &Caller,
    document: serde_json::Value,
    request_id: String,
) -> Result<RequestFiled, ApiError> {
    let Some(intake) = app.0.intake.clone() else {
        return Err(ApiError::not_ready(
            "this server does not accept patch requests",
        ));
    };
    let status = app.status().clone();
    if status.desired().is_none() {
        return Err(ApiError::not_ready("no desired commit validated yet"));
    }
    let submission = Submission {
        document: document.clone(),
        requested_by: caller.name.clone(),
        request_id: request_id.clone(),
        mode: status.request_mode(),
    };
    // One write at a time: the intake serializes too, but waiting here keeps blocking
    // threads free.
    let _writing = app.0.writes.lock().await;
    let filed = tokio::task::spawn_blocking(move || intake.file(&submission))
        .await
        .map_err(ApiError::internal)??;
    drop(_writing);
    tracing::info!(token = %caller.name, request = %filed.name, commit = %filed.commit, branch = %filed.branch, "patch request filed");
    let state = if filed.branch.starts_with(crate::request::BRANCH_PREFIX) {
        if let Some(spec) = document
            .get("spec")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
        {
            status.add_submitted(SubmittedRequest {
                name: filed.name.clone(),
                branch: filed.branch.clone(),
                commit: filed.commit.clone(),
                spec,
                requested_by: Some(caller.name.clone()),
            });
        }
        RequestState::Submitted
    } else {
        RequestState::Merged
    };
    status.events.publish(EventData::RequestSubmitted {
        name: filed.name.clone(),
        requested_by: caller.name.clone(),
        commit: filed.commit.clone(),
        branch: filed.branch.clone(),
    });
    Ok(RequestFiled {
        name: filed.name,
        state,
        branch: filed.branch,
        commit: filed.commit,
        pushed: filed.pushed,
        requested_by: caller.name.clone(),
        request_id,
        warnings: filed.warnings,
    })
}

/// `GET /api/v1/reconcile`: the reconcile in progress (or the last) with per-host results.
pub async fn reconcile_status(State(app): State<App>) -> Json<ReconcileStatus> {
    Json(app.status().reconcile())
}

/// `POST /api/v1/reconcile`: run a cycle now.
pub async fn reconcile(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !app.config().reconciles {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api-only",
            "this server does not reconcile (`serve --api-only`)",
        ));
    }
    let already = app.status().request_reconcile();
    tracing::info!(token = %caller.name, already_queued = already, "reconcile requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReconcileAccepted {
            queued: true,
            already_queued: already,
            reconcile: app.status().reconcile_brief(),
        }),
    )
        .into_response())
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        app.0.openapi.clone(),
    )
        .into_response()
}

/// `GET /healthz`: the process serves and its reconcile loop runs.
pub async fn healthz(State(app): State<App>) -> Response {
    if app.0.loop_alive.load(std::sync::atomic::Ordering::SeqCst) {
        Json(Health {
            status: "ok".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "the reconcile loop stopped".into(),
            }),
        )
            .into_response()
    }
}

/// `GET /readyz`: a desired commit is in force.
pub async fn readyz(State(app): State<App>) -> Response {
    if app.status().ready() {
        Json(Health {
            status: "ok".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "no desired commit validated yet".into(),
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_cursor_and_count_every_match() {
        let items: Vec<String> = (0..5).map(|i| format!("h{i}")).collect();
        let p = paginate(items.iter(), |s| s.as_str(), None, 2);
        assert_eq!(p.items, ["h0", "h1"]);
        assert_eq!(p.total, 5);
        assert_eq!(p.next_cursor.as_deref(), Some("h1"));
        let p = paginate(items.iter(), |s| s.as_str(), Some("h3"), 2);
        assert_eq!(p.items, ["h4"]);
        assert_eq!(p.next_cursor, None);
        let p = paginate(items.iter(), |s| s.as_str(), Some("h1"), 3);
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.next_cursor, None, "exactly the rest: no next page");
    }

    #[test]
    fn query_strings_round_trip() {
        assert_eq!(
            serde_urlencoded_pairs("label=env%3Dprod&group=web+x&cursor=h1"),
            vec![
                ("label".to_string(), "env=prod".to_string()),
                ("group".to_string(), "web x".to_string()),
                ("cursor".to_string(), "h1".to_string())
            ]
        );
        assert_eq!(encode("env=prod,a b"), "env%3Dprod%2Ca%20b");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn filters_parse_or_name_the_field() {
        assert_eq!(
            parse_states("compliant, unknown").expect("states"),
            vec![Some(ComplianceState::Compliant), None]
        );
        assert!(parse_states("green").is_err());
        assert_eq!(
            parse_labels("env=prod,tier=web").expect("labels"),
            vec![("env".into(), "prod".into()), ("tier".into(), "web".into())]
        );
        assert!(parse_labels("env").is_err());
        assert!(limit(Some(0)).is_err() && limit(Some(1001)).is_err());
        assert_eq!(limit(None).expect("default"), DEFAULT_LIMIT);
    }
}
