//! The OpenAPI 3.1 document of `/api/v1`, generated from the Rust types the handlers
//! serialize: every schema comes from the same `schemars` derive that generates the JSON
//! Schemas under `schemas/` (OpenAPI 3.1's schema dialect is JSON Schema 2020-12, which is
//! what `schemars` 1 emits), so the document cannot drift from the types. The route table
//! below is the one place each operation is described; a test checks it against the router
//! (every documented path answers, every route is documented) and the checked-in
//! `schemas/openapi.json` against this generator.

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::api::{
    FleetSummary, Health, HostQuery, Page, ReconcileAccepted, RequestFiled, RequestQuery, RunQuery,
    RunSummary,
};
use super::error::ErrorBody;
use crate::events::Event;
use crate::model::{Document, PatchRequestSpec, Scope};
use crate::plan::Plan;
use crate::report::RunRecord;
use crate::status::ReconcileStatus;
use crate::view::{HostDetail, HostSummary, RequestStatus};
use crate::window::report::Report as WindowsReport;

/// File name under `schemas/`.
pub const FILE: &str = "openapi.json";

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    description: &'static str,
    scope: Option<Scope>,
    params: Vec<Value>,
    body: Option<Value>,
    ok: (u16, &'static str, Value),
    errors: &'static [u16],
}

fn generator(contract: Contract, inline: bool) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.contract = contract;
            s.inline_subschemas = inline;
        })
        .into_generator()
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// Query parameters from a query struct's schema: one per property, with its description.
fn query_params<T: JsonSchema>() -> Vec<Value> {
    let schema = generator(Contract::Deserialize, true)
        .into_root_schema_for::<T>()
        .to_value();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    props
        .into_iter()
        .map(|(name, mut prop)| {
            let description = prop
                .as_object_mut()
                .and_then(|o| o.remove("description"))
                .unwrap_or(Value::Null);
            json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": prop,
            })
        })
        .collect()
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": { "type": "string" },
    })
}

/// The request body of `POST /api/v1/patch-requests`: a PatchRequest document, whose
/// `apiVersion` and `kind` may be left out.
fn patch_request_body() -> Value {
    let mut schema = generator(Contract::Deserialize, true)
        .into_root_schema_for::<Document<PatchRequestSpec>>()
        .to_value();
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "apiVersion" && r != "kind");
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "description".into(),
            json!("A PatchRequest document, as in `requests/<name>.yaml` (`apiVersion` and `kind` may be left out)."),
        );
    }
    json!({
        "required": true,
        "content": json_content(schema),
    })
}

fn operations(g: &mut SchemaGenerator) -> Vec<Op> {
    let page_params = |mut v: Vec<Value>| {
        v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        v
    };
    vec![
        Op {
            method: "get",
            path: "/api/v1/fleet",
            id: "getFleet",
            summary: "Fleet summary",
            description: "The desired commit in force, host counts by compliance state, pending and security updates, the current plan's counts, and the reconcile in progress.",
            scope: Some(Scope::Read),
            params: vec![],
            body: None,
            ok: (200, "The summary", g.subschema_for::<FleetSummary>().to_value()),
            errors: &[401, 403, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/hosts",
            id: "listHosts",
            summary: "Hosts",
            description: "Every inventory host with its compliance, last observation and planned changes; filter by group, labels and state; paginated by host name.",
            scope: Some(Scope::Read),
            params: page_params(query_params::<HostQuery>()),
            body: None,
            ok: (200, "A page of hosts", g.subschema_for::<Page<HostSummary>>().to_value()),
            errors: &[400, 401, 403, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/hosts/{name}",
            id: "getHost",
            summary: "One host",
            description: "The host's summary, its last observed state, its compliance report and its part of the current plan (pending changes).",
            scope: Some(Scope::Read),
            params: vec![path_param("name", "Inventory host name")],
            body: None,
            ok: (200, "The host", g.subschema_for::<HostDetail>().to_value()),
            errors: &[401, 403, 404, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/plan",
            id: "getPlan",
            summary: "The current plan",
            description: "The plan of the last reconcile: the same JSON as `patchkeeper plan --json` (schemas/plan.schema.json).",
            scope: Some(Scope::Read),
            params: vec![],
            body: None,
            ok: (200, "The plan", g.subschema_for::<Plan>().to_value()),
            errors: &[401, 403, 429, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/runs",
            id: "listRuns",
            summary: "Runs",
            description: "Observe, apply and validate runs recorded on the reports branch, newest first.",
            scope: Some(Scope::Read),
            params: page_params(query_params::<RunQuery>()),
            body: None,
            ok: (200, "A page of runs", g.subschema_for::<Page<RunSummary>>().to_value()),
            errors: &[400, 401, 403, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/runs/{id}",
            id: "getRun",
            summary: "One run",
            description: "A run record (`runs/<id>.json` on the reports branch).",
            scope: Some(Scope::Read),
            params: vec![path_param("id", "Run id")],
            body: None,
            ok: (200, "The run", g.subschema_for::<RunRecord>().to_value()),
            errors: &[401, 403, 404, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/windows",
            id: "listWindows",
            summary: "Maintenance windows",
            description: "Every window's state now: the same JSON as `patchkeeper windows --json`.",
            scope: Some(Scope::Read),
            params: vec![],
            body: None,
            ok: (200, "The windows", g.subschema_for::<WindowsReport>().to_value()),
            errors: &[401, 403, 429, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/patch-requests",
            id: "listPatchRequests",
            summary: "Patch requests",
            description: "Requests on review branches (submitted) and in the desired commit (merged, applied on n of m hosts, compliant).",
            scope: Some(Scope::Read),
            params: page_params(query_params::<RequestQuery>()),
            body: None,
            ok: (200, "A page of requests", g.subschema_for::<Page<RequestStatus>>().to_value()),
            errors: &[400, 401, 403, 429],
        },
        Op {
            method: "post",
            path: "/api/v1/patch-requests",
            id: "filePatchRequest",
            summary: "File a patch request",
            description: "Validated exactly as `patchkeeper validate` validates the repo with the file added (422 with the diagnostics otherwise), then committed as `requests/<name>.yaml` with `Requested-By:` and `Request-Id:` trailers: on a new branch `patchkeeper/requests/<name>` (Settings `api.requests: branch`, the default) or onto the desired branch (`direct`), pushed to the remote, never forced. An existing name is 409.",
            scope: Some(Scope::Request),
            params: vec![],
            body: Some(patch_request_body()),
            ok: (201, "Filed", g.subschema_for::<RequestFiled>().to_value()),
            errors: &[400, 401, 403, 409, 413, 415, 422, 429, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/patch-requests/{name}",
            id: "getPatchRequest",
            summary: "One patch request",
            description: "Where the request stands and on how many of its hosts the fix is in place.",
            scope: Some(Scope::Read),
            params: vec![path_param("name", "The request's `metadata.name`")],
            body: None,
            ok: (200, "The request", g.subschema_for::<RequestStatus>().to_value()),
            errors: &[401, 403, 404, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/reconcile",
            id: "getReconcile",
            summary: "The reconcile in progress",
            description: "The loop's phase and the current (or last) reconcile with per-host results as they arrive.",
            scope: Some(Scope::Read),
            params: vec![],
            body: None,
            ok: (200, "The reconcile", g.subschema_for::<ReconcileStatus>().to_value()),
            errors: &[401, 403, 429],
        },
        Op {
            method: "post",
            path: "/api/v1/reconcile",
            id: "reconcileNow",
            summary: "Reconcile now",
            description: "Queues a reconcile of the desired commit (after a fetch); requests made while one is queued coalesce. Follow it on `GET /api/v1/events`.",
            scope: Some(Scope::Admin),
            params: vec![],
            body: None,
            ok: (202, "Queued", g.subschema_for::<ReconcileAccepted>().to_value()),
            errors: &[401, 403, 409, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/events",
            id: "streamEvents",
            summary: "Live events",
            description: "Server-sent events of the reconcile loop and the API: `id:` is the event id, `event:` its type, `data:` the JSON below. Reconnect with `Last-Event-ID` to resume; a `resync` event means events were missed (re-read current state). Comment lines keep the connection alive. A browser `EventSource` may send the token as the `pk_token` cookie.",
            scope: Some(Scope::Read),
            params: vec![json!({
                "name": "Last-Event-ID",
                "in": "header",
                "required": false,
                "description": "Resume after this event id.",
                "schema": { "type": "string" },
            })],
            body: None,
            ok: (200, "An event stream", json!({
                "text/event-stream": { "schema": g.subschema_for::<Event>().to_value() }
            })),
            errors: &[401, 403, 429],
        },
        Op {
            method: "get",
            path: "/api/v1/openapi.json",
            id: "getOpenApi",
            summary: "This document",
            description: "The OpenAPI 3.1 document of the API.",
            scope: None,
            params: vec![],
            body: None,
            ok: (200, "The document", json!({ "type": "object" })),
            errors: &[],
        },
        Op {
            method: "get",
            path: "/healthz",
            id: "healthz",
            summary: "Liveness",
            description: "200 while the process serves and its reconcile loop runs.",
            scope: None,
            params: vec![],
            body: None,
            ok: (200, "Alive", g.subschema_for::<Health>().to_value()),
            errors: &[503],
        },
        Op {
            method: "get",
            path: "/readyz",
            id: "readyz",
            summary: "Readiness",
            description: "200 once a desired commit validated and is in force.",
            scope: None,
            params: vec![],
            body: None,
            ok: (200, "Ready", g.subschema_for::<Health>().to_value()),
            errors: &[503],
        },
        Op {
            method: "get",
            path: "/metrics",
            id: "metrics",
            summary: "Prometheus metrics",
            description: "OpenMetrics text: hosts by compliance state, pending and security updates, reconcile durations and results, apply outcomes, observation failures by reason, API requests by route and status. No per-host labels.",
            scope: None,
            params: vec![],
            body: None,
            ok: (200, "The metrics", json!({
                "application/openmetrics-text": { "schema": { "type": "string" } }
            })),
            errors: &[],
        },
    ]
}

fn status_text(code: u16) -> &'static str {
    match code {
        400 => "Bad request: a malformed body or query (the field is named)",
        401 => "No token, or a malformed, unknown or expired one",
        403 => "The token lacks the scope this operation needs",
        404 => "Not found",
        409 => "Conflict",
        413 => "The body is larger than 1 MiB",
        415 => "The body is not `application/json`",
        422 => "The patch request does not validate (diagnostics as `validate --format json`)",
        429 => "The token is over its rate (see `Retry-After`)",
        503 => "Not ready yet, or busy (see `Retry-After`)",
        _ => "Error",
    }
}

/// The document.
pub fn document() -> Value {
    let mut g = generator(Contract::Serialize, false);
    let ops = operations(&mut g);
    let error = g.subschema_for::<ErrorBody>().to_value();
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let content = if op.ok.2.get("$ref").is_some() || op.ok.2.get("type").is_some() {
            json_content(op.ok.2.clone())
        } else {
            op.ok.2.clone()
        };
        let mut responses = Map::new();
        responses.insert(
            op.ok.0.to_string(),
            json!({ "description": op.ok.1, "content": content }),
        );
        for code in op.errors {
            responses.insert(
                code.to_string(),
                json!({ "description": status_text(*code), "content": json_content(error.clone()) }),
            );
        }
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "description": op.description,
            "responses": responses,
        });
        let obj = operation
            .as_object_mut()
            .expect("a json! object literal is an object");
        if !op.params.is_empty() {
            obj.insert("parameters".into(), Value::Array(op.params));
        }
        if let Some(body) = op.body {
            obj.insert("requestBody".into(), body);
        }
        match op.scope {
            Some(scope) => {
                obj.insert("security".into(), json!([{ "bearer": [] }]));
                obj.insert("x-patchkeeper-scope".into(), json!(scope.as_str()));
            }
            None => {
                obj.insert("security".into(), json!([]));
            }
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(e) = entry.as_object_mut() {
            e.insert(op.method.to_owned(), operation);
        }
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "patchkeeper API",
            "version": "1",
            "description": "The HTTP API of `patchkeeper serve --listen`. Reads need a token with the `read` scope, patch requests `request`, reconciles `admin` (admin implies request, which implies read). Tokens are made by `patchkeeper token new`; the fleet repo's Settings (`api.tokens`) hold their SHA-256. See docs/api.md.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "pk_ followed by 43 base64url characters",
                },
            },
        },
    })
}

/// The document as pretty JSON, as checked in at `schemas/openapi.json`.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

/// Every documented (method, path), for tests.
pub fn documented() -> Vec<(String, String)> {
    let mut g = generator(Contract::Serialize, false);
    operations(&mut g)
        .into_iter()
        .map(|o| (o.method.to_uppercase(), o.path.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_document_matches_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(FILE);
        // `PATCHKEEPER_WRITE_SCHEMAS=1` rewrites it (as `patchkeeper schema --out schemas`).
        if std::env::var_os("PATCHKEEPER_WRITE_SCHEMAS").is_some_and(|v| v == "1") {
            std::fs::write(&path, document_text()).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == document_text(),
            "schemas/{FILE} is out of date: run `cargo run -- schema --out schemas`"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .clone();
        fn walk(v: &Value, refs: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        refs.push(r.clone());
                    }
                    o.values().for_each(|v| walk(v, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
        // Each component compiles as JSON Schema 2020-12 (what OpenAPI 3.1 uses), its
        // references resolved.
        let defs: Value = serde_json::from_str(
            &serde_json::to_string(&schemas)
                .expect("json")
                .replace("#/components/schemas/", "#/$defs/"),
        )
        .expect("json");
        for (name, schema) in defs.as_object().expect("defs") {
            let mut standalone = schema.clone();
            let Some(o) = standalone.as_object_mut() else {
                continue;
            };
            o.insert("$defs".into(), defs.clone());
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&standalone)
                .unwrap_or_else(|e| panic!("components/schemas/{name}: {e}"));
        }
    }
}
