//! JSON Schemas (draft 2020-12) of the fleet-repo kinds, generated from [`crate::model`],
//! and schema validation of loaded documents with `jsonschema`.
//!
//! The checked-in files under `schemas/` are what `patchkeeper schema` writes; a test keeps
//! them in sync with the types.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde_json::{json, Value};

use crate::model::{self, Kind};

/// File name of a kind's schema under `schemas/`.
pub fn file_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Settings => "settings.schema.json",
        Kind::Inventory => "inventory.schema.json",
        Kind::Baseline => "baseline.schema.json",
        Kind::MaintenanceWindow => "maintenance-window.schema.json",
        Kind::Rollout => "rollout.schema.json",
        Kind::PatchRequest => "patch-request.schema.json",
        Kind::VulnerabilityException => "vulnerability-exception.schema.json",
    }
}

/// The schema of one kind's document, with `apiVersion` and `kind` pinned.
pub fn kind_schema(kind: Kind) -> Value {
    let schema = match kind {
        Kind::Settings => schemars::schema_for!(model::Settings),
        Kind::Inventory => schemars::schema_for!(model::Inventory),
        Kind::Baseline => schemars::schema_for!(model::Baseline),
        Kind::MaintenanceWindow => schemars::schema_for!(model::MaintenanceWindow),
        Kind::Rollout => schemars::schema_for!(model::Rollout),
        Kind::PatchRequest => schemars::schema_for!(model::PatchRequest),
        Kind::VulnerabilityException => schemars::schema_for!(model::VulnerabilityException),
    };
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!(format!(
                "https://patchkeeper.dev/schemas/v1/{}",
                file_name(kind)
            )),
        );
        obj.insert("title".into(), json!(kind.as_str()));
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "apiVersion".into(),
                json!({"const": model::API_VERSION, "description": "Always `patchkeeper.dev/v1`."}),
            );
            props.insert(
                "kind".into(),
                json!({"const": kind.as_str(), "description": "The document kind."}),
            );
        }
    }
    value
}

/// Every schema file `patchkeeper schema` writes: file name and pretty JSON text.
pub fn all_schema_files() -> BTreeMap<&'static str, String> {
    let mut files = BTreeMap::new();
    for kind in Kind::ALL {
        files.insert(file_name(kind), pretty(&kind_schema(kind)));
    }
    files.insert("plan.schema.json", crate::plan::Plan::schema_text());
    files.insert(crate::observed::SCHEMA_FILE, crate::observed::schema_text());
    files.insert("policy.schema.json", crate::policy::schema_text());
    files.insert(
        crate::cli::windows::SCHEMA_FILE,
        crate::cli::windows::schema_text(),
    );
    files.insert(
        "vulns.schema.json",
        crate::advisory::view::VulnsReport::schema_text(),
    );
    files.extend(crate::report::schema_files());
    files
}

/// Schema of an arbitrary type, titled, as pretty JSON (for non-fleet formats).
pub fn schema_text_for<T: JsonSchema>(title: &str) -> String {
    let mut value = schemars::schema_for!(T).to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), json!(title));
    }
    pretty(&value)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

fn compiled(kind: Kind) -> Option<&'static Compiled> {
    static CACHE: OnceLock<Vec<Option<Compiled>>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let schema = kind_schema(k);
                jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .ok()
                    .map(|validator| Compiled { schema, validator })
            })
            .collect()
    });
    let idx = Kind::ALL.iter().position(|k| *k == kind)?;
    all.get(idx)?.as_ref()
}

/// What kind of schema violation a [`Violation`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A property the schema does not allow.
    UnknownField,
    /// A required property is missing.
    MissingField,
    /// Wrong JSON type.
    WrongType,
    /// Enum, pattern, range, length, or an alternative that does not match.
    InvalidValue,
}

/// One schema violation, located by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// JSON pointer of the offending value (for unknown/missing fields: of the field).
    pub pointer: String,
    /// Lowercase message quoting the user's value.
    pub message: String,
}

/// Validates a document against its kind's schema, returning every violation.
pub fn check(kind: Kind, instance: &Value) -> Vec<Violation> {
    let Some(c) = compiled(kind) else {
        return vec![Violation {
            kind: ViolationKind::InvalidValue,
            pointer: String::new(),
            message: format!("internal error: the schema of {kind} does not compile"),
        }];
    };
    let mut out = Vec::new();
    for err in c.validator.iter_errors(instance) {
        convert(&c.schema, &err, &mut out);
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.message.cmp(&b.message)));
    out.dedup();
    out
}

fn convert(schema: &Value, err: &jsonschema::ValidationError<'_>, out: &mut Vec<Violation>) {
    let pointer = err.instance_path().as_str().to_owned();
    let found = describe(err.instance());
    use jsonschema::error::ValidationErrorKind as K;
    match err.kind() {
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let allowed = allowed_fields(schema, &pointer);
            for name in unexpected {
                let mut message = format!("unknown field `{name}`");
                if let Some(best) = closest(name, &allowed) {
                    message.push_str(&format!(", did you mean `{best}`?"));
                } else if !allowed.is_empty() {
                    message.push_str(&format!(
                        ", expected one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                out.push(Violation {
                    kind: ViolationKind::UnknownField,
                    pointer: format!("{pointer}/{}", escape(name)),
                    message,
                });
            }
        }
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let within = if pointer.is_empty() {
                "the document".to_owned()
            } else {
                format!("`{}`", pointer.trim_start_matches('/').replace('/', "."))
            };
            out.push(Violation {
                kind: ViolationKind::MissingField,
                pointer,
                message: format!("missing field `{name}` in {within}"),
            });
        }
        K::Type { kind } => out.push(Violation {
            kind: ViolationKind::WrongType,
            pointer,
            message: format!("expected {}, found {found}", type_name(kind)),
        }),
        K::Enum { options } => {
            let opts = options
                .as_array()
                .map(|a| quoted_list(a))
                .unwrap_or_default();
            out.push(Violation {
                kind: ViolationKind::InvalidValue,
                pointer,
                message: format!("invalid value {found}, expected one of {opts}"),
            });
        }
        K::AnyOf { context } | K::OneOfNotValid { context } => {
            // `Option<T>` is `anyOf [T, null]` and untagged enums are alternatives: when one
            // alternative fails deeper inside the value, that alternative is what the user
            // meant, so report its errors instead of "matches no alternative".
            let deeper = context.iter().find(|branch| {
                !branch.is_empty()
                    && branch
                        .iter()
                        .all(|e| e.instance_path().as_str().len() > pointer.len())
            });
            if let Some(branch) = deeper {
                for e in branch {
                    convert(schema, e, out);
                }
                return;
            }
            if let Some(consts) = schema_at(schema, &pointer).and_then(constants) {
                out.push(Violation {
                    kind: ViolationKind::InvalidValue,
                    pointer,
                    message: format!("invalid value {found}, expected one of {consts}"),
                });
                return;
            }
            let what = schema_at(schema, &pointer)
                .and_then(|s| s.get("description"))
                .and_then(Value::as_str)
                .map(|d| d.trim_end_matches('.').replace('\n', " "))
                .unwrap_or_else(|| "a value of another form".to_owned());
            out.push(Violation {
                kind: ViolationKind::InvalidValue,
                pointer,
                message: format!("invalid value {found}, expected {}", lower_first(&what)),
            });
        }
        K::Pattern { .. } => {
            // A list item's schema has no description of its own: the list's says it.
            let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
            let what = schema_at(schema, &pointer)
                .and_then(|s| s.get("description"))
                .or_else(|| schema_at(schema, parent).and_then(|s| s.get("description")))
                .and_then(Value::as_str)
                .map(|d| d.trim_end_matches('.').replace('\n', " "))
                .unwrap_or_else(|| "a value of another form".to_owned());
            out.push(Violation {
                kind: ViolationKind::InvalidValue,
                pointer,
                message: format!("invalid value {found}, expected {}", lower_first(&what)),
            });
        }
        _ => out.push(Violation {
            kind: ViolationKind::InvalidValue,
            pointer,
            message: format!(
                "invalid value {found}: {}",
                lower_first(&err.masked().to_string())
            ),
        }),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let one = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "string" => "a string".to_owned(),
        "integer" => "an integer".to_owned(),
        "number" => "a number".to_owned(),
        "boolean" => "true or false".to_owned(),
        "null" => "nothing".to_owned(),
        other => other.to_owned(),
    };
    match kind {
        TypeKind::Single(t) => one(t),
        TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts
                .iter()
                .filter(|t| t.to_string() != "null")
                .map(|t| one(&t))
                .collect();
            names.join(" or ")
        }
    }
}

/// Describes a JSON value the way the user wrote it: `` `text` ``, a list, a mapping.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => {
            // The repo's text, shown with its control characters escaped and any URL
            // credentials redacted (diagnostics reach logs and the reports branch).
            let short: String = s.chars().take(60).collect();
            let shown = |t: &str| crate::terminal::escape(&crate::redact::text(t)).into_owned();
            if short.len() < s.len() {
                format!("`{}…`", shown(&short))
            } else {
                format!("`{}`", shown(s))
            }
        }
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// The sub-schema that describes the value at `pointer`, following `$ref`s and taking
/// the first `anyOf` branch that fits (options are `anyOf [T, null]`).
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut cur = resolve(root, root)?;
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let next = if let Some(p) = cur.get("properties").and_then(|p| p.get(&seg)) {
            Some(p)
        } else if let Some(items) = cur.get("items") {
            Some(items)
        } else {
            cur.get("additionalProperties").filter(|v| v.is_object())
        };
        cur = resolve(root, next?)?;
    }
    Some(cur)
}

fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let path = r.strip_prefix('#')?;
            s = root.pointer(path)?;
            continue;
        }
        if s.get("properties").is_none() && s.get("items").is_none() {
            if let Some(branches) = s.get("anyOf").and_then(Value::as_array) {
                if let Some(b) = branches
                    .iter()
                    .find(|b| b.get("type") != Some(&json!("null")))
                {
                    if b.get("$ref").is_some() || b.get("properties").is_some() {
                        s = b;
                        continue;
                    }
                }
            }
        }
        return Some(s);
    }
    None
}

/// `` `a`, `b`, `c` `` from JSON values (strings without their quotes).
fn quoted_list(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| {
            format!(
                "`{}`",
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// For a `oneOf`/`anyOf` of constants (documented enums), the allowed values.
fn constants(s: &Value) -> Option<String> {
    let branches = s.get("oneOf").or_else(|| s.get("anyOf"))?.as_array()?;
    let mut values = Vec::new();
    for b in branches {
        if let Some(c) = b.get("const") {
            values.push(c.clone());
        } else if let Some(e) = b.get("enum").and_then(Value::as_array) {
            values.extend(e.iter().cloned());
        } else {
            return None;
        }
    }
    Some(quoted_list(&values))
}

fn allowed_fields(root: &Value, pointer: &str) -> Vec<String> {
    schema_at(root, pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The allowed name closest to a misspelling, if it is close enough to be a typo.
fn closest<'a>(name: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| {
            (
                strsim::damerau_levenshtein(&name.to_lowercase(), &a.to_lowercase()),
                a,
            )
        })
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schemas_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        // `PATCHKEEPER_WRITE_SCHEMAS=1` rewrites them (what `patchkeeper schema --out
        // schemas` does, without building the binary).
        let write = std::env::var_os("PATCHKEEPER_WRITE_SCHEMAS").is_some_and(|v| v == "1");
        for (name, text) in all_schema_files() {
            if write {
                std::fs::write(dir.join(name), &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            assert!(
                on_disk == text,
                "schemas/{name} is out of date: run `cargo run -- schema --out schemas`"
            );
        }
    }

    #[test]
    fn every_schema_compiles() {
        for kind in Kind::ALL {
            assert!(compiled(kind).is_some(), "{kind}");
        }
    }

    #[test]
    fn unknown_field_suggests_the_closest() {
        let doc = json!({"apiVersion": "patchkeeper.dev/v1", "kind": "Baseline",
            "metadata": {"name": "b"},
            "spec": {"selector": {}, "window": "w", "rollout": "r", "updates": {"clases": "all"}}});
        let v = check(Kind::Baseline, &doc);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, "/spec/updates/clases");
        assert_eq!(
            v[0].message,
            "unknown field `clases`, did you mean `classes`?"
        );
    }
}
