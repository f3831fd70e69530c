//! Every error the API returns, in one shape and one place: a JSON object with a stable
//! kebab-case `error` code, a `message` for people and the `requestId` (added on the way
//! out by [`super::request_ids`]), plus details such as the offending `field` or the
//! validation `diagnostics`. Internals never reach a response body: a 500 says only that
//! something failed and which request id to look for in the logs.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};

use crate::request::{FieldDiagnostic, RequestError};

/// The error body of every non-2xx response.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable code (`unauthorized`, `forbidden`, `not-found`, `invalid-request`, ...).
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request's id (also in the `X-Request-Id` header and the server's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// JSON pointer of the offending field of the request body, when one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Validation diagnostics (422 of a patch request), as `validate --format json`
    /// prints them, each with the `field` it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub diagnostics: Option<Vec<FieldDiagnostic>>,
}

/// An API error: a status and a body (boxed: errors are rare, results stay small).
#[derive(Debug)]
pub struct ApiError(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    body: ErrorBody,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(Parts {
            status,
            body: ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                request_id: None,
                field: None,
                diagnostics: None,
            },
            headers: Vec::new(),
        }))
    }

    /// Names the offending field.
    pub fn field(mut self, pointer: impl Into<String>) -> ApiError {
        self.0.body.field = Some(pointer.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.0.headers.push((name, value));
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// 404 for a named thing.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    /// 400 with a message.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 503: the server has nothing to answer with yet.
    pub fn not_ready(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", message)
            .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// The body it answers with (the dashboard shows its message and diagnostics).
    pub fn body(&self) -> &ErrorBody {
        &self.0.body
    }

    /// 500 that hides the cause from the client (it is logged with the request id).
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {cause}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; the request id is in its log",
        )
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        match e {
            RequestError::Malformed { field, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", message)
                    .field(field)
            }
            RequestError::Invalid { diagnostics } => {
                let first = diagnostics
                    .iter()
                    .find(|d| d.diagnostic.is_error())
                    .or(diagnostics.first());
                let message = match first {
                    Some(d) => format!(
                        "the patch request does not validate: {}",
                        d.diagnostic.message
                    ),
                    None => "the patch request does not validate".into(),
                };
                let field = first.and_then(|d| d.field.clone());
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", message);
                err.0.body.field = field;
                err.0.body.diagnostics = Some(diagnostics);
                err
            }
            RequestError::Exists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()).field("/metadata/name")
            }
            RequestError::CheckedOut { .. } => {
                ApiError::new(StatusCode::CONFLICT, "branch-checked-out", e.to_string())
            }
            RequestError::Contended(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contended", e.to_string())
                    .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            body,
            headers,
        } = *self.0;
        let mut response = (status, axum::Json(body)).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The JSON of an error body for a status raised outside handlers (limits, timeouts).
pub fn body_for(status: StatusCode) -> Value {
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too-large",
            "the request body is larger than the server accepts (1 MiB)",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::NOT_FOUND => ("not-found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "method not allowed here"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "send `Content-Type: application/json`",
        ),
        _ => ("error", "the request failed"),
    };
    json!({"error": code, "message": message})
}
