//! The compliance policy: rules every host report is judged against (how long approved
//! updates and a pending reboot may stay outstanding, patch requests' deadlines), kept as
//! data.
//!
//! The built-in policy is `policies/default.yaml`, compiled into the binary; a fleet repo
//! replaces it as a whole with a `policy.yaml` file at its root (same format, documented in
//! `docs/policy.md`, schema `schemas/policy.schema.json`). This module knows nothing of hosts
//! or Git: [`crate::compliance`] applies the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The text of the built-in policy.
pub const BUILTIN_TEXT: &str = include_str!("../policies/default.yaml");

/// File name of a fleet repo's override, relative to the repo root.
pub const OVERRIDE_FILE: &str = "policy.yaml";

/// A policy file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    /// The rules, each judged on every host that a baseline applies to.
    pub rules: Vec<RuleSpec>,
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    /// Stable kebab-case id quoted in reports (e.g. `security-within-7d`).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub id: String,
    /// What the rule demands, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What is checked.
    pub check: CheckKind,
    /// For `update-age`: which outstanding updates count (`security` or `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<RuleUpdates>,
    /// For `advisory-deadline`: the advisory severity the deadline is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<crate::advisory::Severity>,
    /// How long the condition may last (duration, e.g. `7d`, `24h`); required for
    /// `update-age` and `reboot-pending`, the grace after the deadline for
    /// `request-deadline` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// What a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// Approved updates outstanding (offered but not installed) for longer than `maxAge`,
    /// counted from when patchkeeper first saw them offered.
    UpdateAge,
    /// A reboot required for longer than `maxAge`, counted from when it was first observed.
    RebootPending,
    /// A package a patch request asks for still missing after the request's `deadline`
    /// (plus `maxAge` of grace, default none).
    RequestDeadline,
    /// An open advisory of `severity` not fixed within `maxAge` of its fix being first
    /// offered to the host (held fixes count as offered; exceptions in force excuse).
    AdvisoryDeadline,
}

impl CheckKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::UpdateAge => "update-age",
            CheckKind::RebootPending => "reboot-pending",
            CheckKind::RequestDeadline => "request-deadline",
            CheckKind::AdvisoryDeadline => "advisory-deadline",
        }
    }
}

/// Which outstanding updates an `update-age` rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RuleUpdates {
    /// Only updates from security origins.
    Security,
    /// Every update.
    All,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// Its description, when given.
    pub description: Option<String>,
    /// What it checks.
    pub check: Check,
}

/// A checked rule's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Outstanding updates of `updates` older than `max_age` break it.
    UpdateAge {
        /// Which updates count.
        updates: RuleUpdates,
        /// The limit.
        max_age: Duration,
    },
    /// A reboot pending for longer than `max_age` breaks it.
    RebootPending {
        /// The limit.
        max_age: Duration,
    },
    /// A patch request's package still missing `grace` after the request's deadline breaks
    /// it.
    RequestDeadline {
        /// Time allowed past the deadline.
        grace: Duration,
    },
    /// An open advisory of `severity` whose fix was first offered more than `max_age` ago
    /// breaks it.
    AdvisoryDeadline {
        /// The severity the deadline is for.
        severity: crate::advisory::Severity,
        /// The deadline after the fix is first offered.
        max_age: Duration,
    },
}

/// A checked policy, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rules in file order.
    pub rules: Vec<Rule>,
    /// `builtin` or the override file's path.
    pub source: PolicySource,
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `policies/default.yaml`, compiled in.
    Builtin,
    /// A fleet repo's `policy.yaml`.
    File(PathBuf),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin => f.write_str("built-in policy"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Errors of loading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("policy {path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the format.
    #[error("policy {source_name}: {message}")]
    Syntax {
        /// `built-in policy` or the file.
        source_name: String,
        /// serde-saphyr's message (with line and column).
        message: String,
    },
    /// A rule is inconsistent.
    #[error("policy {source_name}: rule `{rule}`: {message}")]
    Rule {
        /// `built-in policy` or the file.
        source_name: String,
        /// The rule id.
        rule: String,
        /// What is wrong.
        message: String,
    },
}

impl Policy {
    /// The built-in policy (`policies/default.yaml`).
    pub fn builtin() -> Policy {
        Policy::parse(BUILTIN_TEXT, PolicySource::Builtin)
            .expect("the built-in policy is checked by a unit test")
    }

    /// The policy in force for the fleet repo at `root`: its `policy.yaml` when present,
    /// otherwise the built-in one.
    pub fn for_repo(root: &Path) -> Result<Policy, PolicyError> {
        let path = root.join(OVERRIDE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Policy::parse(&text, PolicySource::File(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::builtin()),
            Err(source) => Err(PolicyError::Io { path, source }),
        }
    }

    /// Parses and checks a policy file's text.
    pub fn parse(text: &str, source: PolicySource) -> Result<Policy, PolicyError> {
        let source_name = source.to_string();
        let file: PolicyFile = serde_saphyr::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        let mut seen = BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for spec in file.rules {
            let rule_error = |message: String| PolicyError::Rule {
                source_name: source_name.clone(),
                rule: spec.id.clone(),
                message,
            };
            if !seen.insert(spec.id.clone()) {
                return Err(rule_error("the id is used by an earlier rule".into()));
            }
            let max_age = spec
                .max_age
                .as_deref()
                .map(crate::duration::parse_duration)
                .transpose()
                .map_err(|e| rule_error(format!("maxAge: {e}")))?;
            let needs_max_age = || {
                max_age.ok_or_else(|| {
                    rule_error(format!(
                        "check `{}` needs `maxAge` (a duration such as `7d`)",
                        spec.check.as_str()
                    ))
                })
            };
            if spec.severity.is_some() && spec.check != CheckKind::AdvisoryDeadline {
                return Err(rule_error(format!(
                    "check `{}` takes no `severity` field",
                    spec.check.as_str()
                )));
            }
            let check = match (spec.check, spec.updates) {
                (CheckKind::AdvisoryDeadline, None) => Check::AdvisoryDeadline {
                    severity: spec.severity.ok_or_else(|| {
                        rule_error(
                            "check `advisory-deadline` needs `severity` (critical, high, medium, low, negligible or unknown)"
                                .into(),
                        )
                    })?,
                    max_age: needs_max_age()?,
                },
                (CheckKind::UpdateAge, Some(updates)) => Check::UpdateAge {
                    updates,
                    max_age: needs_max_age()?,
                },
                (CheckKind::UpdateAge, None) => {
                    return Err(rule_error(
                        "check `update-age` needs `updates: security` or `updates: all`".into(),
                    ))
                }
                (CheckKind::RebootPending, None) => Check::RebootPending {
                    max_age: needs_max_age()?,
                },
                (CheckKind::RequestDeadline, None) => Check::RequestDeadline {
                    grace: max_age.unwrap_or(Duration::ZERO),
                },
                (
                    kind @ (CheckKind::RebootPending
                    | CheckKind::RequestDeadline
                    | CheckKind::AdvisoryDeadline),
                    Some(_),
                ) => {
                    return Err(rule_error(format!(
                        "check `{}` takes no `updates` field",
                        kind.as_str()
                    )))
                }
            };
            rules.push(Rule {
                id: spec.id,
                description: spec.description,
                check,
            });
        }
        Ok(Policy { rules, source })
    }
}

/// The JSON Schema of a policy file (`schemas/policy.schema.json`).
pub fn schema_text() -> String {
    crate::schema::schema_text_for::<PolicyFile>("patchkeeper compliance policy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, PolicySource::Builtin)
    }

    #[test]
    fn builtin_policy_has_the_documented_rules() {
        let p = Policy::builtin();
        let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "security-within-7d",
                "all-within-30d",
                "reboot-within-24h",
                "requests-by-deadline",
                "critical-advisories-within-7d",
                "high-advisories-within-30d",
            ]
        );
        assert_eq!(
            p.rules[4].check,
            Check::AdvisoryDeadline {
                severity: crate::advisory::Severity::Critical,
                max_age: Duration::from_secs(7 * 86400)
            }
        );
        assert_eq!(
            p.rules[3].check,
            Check::RequestDeadline {
                grace: Duration::ZERO
            }
        );
        assert_eq!(
            p.rules[0].check,
            Check::UpdateAge {
                updates: RuleUpdates::Security,
                max_age: Duration::from_secs(7 * 86400)
            }
        );
        assert_eq!(
            p.rules[2].check,
            Check::RebootPending {
                max_age: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn rejects_inconsistent_rules() {
        let err = parse("rules:\n  - {id: a, check: update-age, maxAge: 1d}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy built-in policy: rule `a`: check `update-age` needs `updates: security` or `updates: all`"
        );
        let err = parse("rules:\n  - {id: a, check: reboot-pending, updates: all, maxAge: 1d}\n")
            .unwrap_err();
        assert!(err.to_string().contains("takes no `updates`"), "{err}");
        let err = parse("rules:\n  - {id: a, check: reboot-pending, maxAge: soon}\n").unwrap_err();
        assert!(
            err.to_string().contains("maxAge: invalid duration"),
            "{err}"
        );
        let err = parse(
            "rules:\n  - {id: a, check: reboot-pending, maxAge: 1d}\n  - {id: a, check: reboot-pending, maxAge: 2d}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("used by an earlier rule"), "{err}");
        let err = parse("rules:\n  - {id: a, check: reboot-pending}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy built-in policy: rule `a`: check `reboot-pending` needs `maxAge` (a duration such as `7d`)"
        );
        let err =
            parse("rules:\n  - {id: a, check: request-deadline, updates: all}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("`request-deadline` takes no `updates`"),
            "{err}"
        );
    }

    #[test]
    fn advisory_deadlines_need_a_severity() {
        let err = parse("rules:\n  - {id: a, check: advisory-deadline, maxAge: 7d}\n").unwrap_err();
        assert!(err.to_string().contains("needs `severity`"), "{err}");
        let err = parse("rules:\n  - {id: a, check: reboot-pending, severity: high, maxAge: 7d}\n")
            .unwrap_err();
        assert!(err.to_string().contains("takes no `severity`"), "{err}");
        let err =
            parse("rules:\n  - {id: a, check: advisory-deadline, severity: high}\n").unwrap_err();
        assert!(err.to_string().contains("needs `maxAge`"), "{err}");
        let p =
            parse("rules:\n  - {id: a, check: advisory-deadline, severity: medium, maxAge: 90d}\n")
                .unwrap();
        assert_eq!(
            p.rules[0].check,
            Check::AdvisoryDeadline {
                severity: crate::advisory::Severity::Medium,
                max_age: Duration::from_secs(90 * 86400)
            }
        );
    }

    #[test]
    fn request_deadline_takes_an_optional_grace() {
        let p = parse("rules:\n  - {id: a, check: request-deadline, maxAge: 2d}\n").unwrap();
        assert_eq!(
            p.rules[0].check,
            Check::RequestDeadline {
                grace: Duration::from_secs(2 * 86400)
            }
        );
    }

    #[test]
    fn rejects_unknown_fields_and_checks() {
        let err = parse("rules:\n  - {id: a, check: reboot-pending, maxAge: 1d, extra: 1}\n")
            .unwrap_err();
        assert!(matches!(err, PolicyError::Syntax { .. }), "{err}");
        let err = parse("rules:\n  - {id: a, check: disk-full, maxAge: 1d}\n").unwrap_err();
        assert!(matches!(err, PolicyError::Syntax { .. }), "{err}");
    }

    #[test]
    fn repo_override_replaces_the_builtin() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            Policy::for_repo(dir.path()).expect("builtin").source,
            PolicySource::Builtin
        );
        std::fs::write(
            dir.path().join(OVERRIDE_FILE),
            "rules:\n  - id: security-within-2d\n    check: update-age\n    updates: security\n    maxAge: 2d\n",
        )
        .expect("write");
        let p = Policy::for_repo(dir.path()).expect("override");
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].id, "security-within-2d");
        assert_eq!(p.source, PolicySource::File(dir.path().join(OVERRIDE_FILE)));
    }

    #[test]
    fn schema_file_is_in_sync() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/policy.schema.json");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(path, schema_text()).expect("write schema");
            return;
        }
        assert_eq!(
            on_disk,
            schema_text(),
            "schemas/policy.schema.json is stale: rerun with UPDATE_EXPECT=1"
        );
    }

    #[test]
    fn builtin_policy_validates_against_its_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(&schema_text()).expect("schema is JSON");
        let instance: serde_json::Value =
            serde_json::to_value(serde_saphyr::from_str::<PolicyFile>(BUILTIN_TEXT).expect("yaml"))
                .expect("json");
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        assert!(validator.is_valid(&instance));
        let bad =
            serde_json::json!({"rules": [{"id": "Bad Id", "check": "update-age", "maxAge": "1d"}]});
        assert!(!validator.is_valid(&bad));
    }
}
