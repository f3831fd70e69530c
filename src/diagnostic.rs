//! Diagnostics: what `validate` (and every command that loads the fleet repo) reports about
//! the fleet repo, each with a stable code and the `file:line:column` it is about.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::fleet::yaml::Pos;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The repo cannot be used: nothing is planned or applied from it.
    Error,
    /// Probably a mistake; `validate --strict` treats it as an error.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, $sev:ident; )*) => {
        /// The stable code of each kind of diagnostic (shown as `error[code]`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum Code {
            $( $(#[doc = $doc])* #[serde(rename = $code)] $variant, )*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The kebab-case code.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The severity diagnostics with this code have.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }

            /// One-line description (for the docs).
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

codes! {
    /// A file could not be read, or is not UTF-8 text.
    UnreadableFile = "unreadable-file", Error;
    /// The YAML is malformed (syntax, duplicate keys, resource limits such as alias bombs).
    YamlSyntax = "yaml-syntax", Error;
    /// A YAML document is not a mapping with `apiVersion` and `kind`.
    NotADocument = "not-a-document", Error;
    /// `apiVersion` is not `patchkeeper.dev/v1`.
    UnknownApiVersion = "unknown-api-version", Error;
    /// `kind` is not one of the known kinds.
    UnknownKind = "unknown-kind", Error;
    /// A field the schema does not know (often a typo).
    UnknownField = "unknown-field", Error;
    /// A required field is missing.
    MissingField = "missing-field", Error;
    /// A value has the wrong type (e.g. a list where a string is expected).
    WrongType = "wrong-type", Error;
    /// A value is outside what the schema allows (enum, pattern, range, length).
    InvalidValue = "invalid-value", Error;
    /// Two documents of the same kind, two hosts or two groups share a name.
    DuplicateName = "duplicate-name", Error;
    /// More than one Settings document.
    DuplicateSettings = "duplicate-settings", Error;
    /// A reference to a MaintenanceWindow that does not exist.
    DanglingWindowRef = "dangling-window-ref", Error;
    /// A reference to a Rollout that does not exist.
    DanglingRolloutRef = "dangling-rollout-ref", Error;
    /// A reference to a group no Inventory declares.
    DanglingGroupRef = "dangling-group-ref", Error;
    /// A reference to a host no Inventory declares.
    DanglingHostRef = "dangling-host-ref", Error;
    /// Two baselines matching one host disagree (window, rollout, update policy, or a package one holds and the other requires).
    BaselineConflict = "baseline-conflict", Error;
    /// A rollout's `order` (`after:`) has a cycle.
    RolloutOrderCycle = "rollout-order-cycle", Error;
    /// A baseline's `promotion.from` matches no host, or fewer hosts than `minHosts` (counted per package manager the baseline's hosts use): nothing could ever be promoted.
    PromotionSource = "promotion-source", Error;
    /// A baseline promotes from hosts it also covers.
    PromotionOverlap = "promotion-overlap", Error;
    /// Promoting baselines take their versions from each other's hosts in a cycle.
    PromotionCycle = "promotion-cycle", Error;
    /// A cron schedule does not parse.
    InvalidSchedule = "invalid-schedule", Error;
    /// An IANA time zone name that does not exist.
    InvalidTimezone = "invalid-timezone", Error;
    /// A duration that does not parse (use e.g. `30s`, `5m`, `4h`, `7d`).
    InvalidDuration = "invalid-duration", Error;
    /// A date-time that does not parse, or a freeze that ends before it starts.
    InvalidTime = "invalid-time", Error;
    /// A window that is neither always open nor has a schedule and duration, or has both.
    InvalidWindow = "invalid-window", Error;
    /// A package version that is not valid in the host's ecosystem (Debian or RPM).
    InvalidVersion = "invalid-version", Error;
    /// A baseline names an emergency window (those are for patch requests only), or rapid
    /// response names a window that is not one.
    EmergencyWindow = "emergency-window", Error;
    /// A glob pattern (hold, exclude) that does not parse.
    InvalidPattern = "invalid-pattern", Error;
    /// An Inventory's Ansible source (`spec.ansible`) cannot be read: the file, the command
    /// (refused without the controller's `--allow-local-commands`, failed, timed out), or
    /// its output.
    InventorySource = "inventory-source", Error;
    /// A selector that matches no host.
    SelectorMatchesNothing = "selector-matches-nothing", Warning;
    /// A host that no baseline applies to: it is observed and reported but never patched.
    UnmanagedHost = "unmanaged-host", Warning;
    /// A file named in Settings (key, known_hosts) does not exist.
    MissingFile = "missing-file", Warning;
    /// Two hosts share an address and port.
    DuplicateAddress = "duplicate-address", Warning;
    /// A YAML file holds no patchkeeper document.
    EmptyFile = "empty-file", Warning;
    /// A VulnerabilityException has expired: its advisories count against their deadlines again.
    ExceptionExpired = "exception-expired", Warning;
    /// A VulnerabilityException expires within 14 days.
    ExceptionExpiring = "exception-expiring", Warning;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in the fleet repo.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// Path relative to the fleet repo root.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Location {
    /// A location from a file and a position in it.
    pub fn new(file: impl Into<PathBuf>, pos: Pos) -> Location {
        Location {
            file: file.into(),
            line: pos.line,
            column: pos.column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A secondary location with what it shows (e.g. the other end of a conflict).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Note {
    /// Where.
    #[serde(flatten)]
    pub location: Location,
    /// What is there.
    pub message: String,
}

/// One finding about the fleet repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code.
    pub code: Code,
    /// Lowercase message that quotes the user's value.
    pub message: String,
    /// The offending node.
    #[serde(flatten)]
    pub location: Location,
    /// Other locations involved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity.
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: code.severity(),
            code,
            message: message.into(),
            location,
            notes: Vec::new(),
        }
    }

    /// Adds a secondary location.
    pub fn with_note(mut self, location: Location, message: impl Into<String>) -> Diagnostic {
        self.notes.push(Note {
            location,
            message: message.into(),
        });
        self
    }

    /// Is this an error?
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:column: error[code]: message`, then one `  note:` line per secondary location.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}]: {}",
            self.location, self.severity, self.code, self.message
        )?;
        for note in &self.notes {
            write!(f, "\n  {}: note: {}", note.location, note.message)?;
        }
        Ok(())
    }
}

/// Sorts diagnostics by file, line, column, then code, so output is deterministic.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| (&a.location, a.code, &a.message).cmp(&(&b.location, b.code, &b.message)));
}

/// The Markdown table of every code, as checked in at `docs/diagnostics.md`.
pub fn codes_markdown() -> String {
    let mut s = String::from(
        "# Diagnostic codes\n\n\
         `patchkeeper validate` prints each problem as `path:line:column: severity[code]: message`.\n\
         The codes are stable: CI tools and people can refer to them. Errors stop `plan` and\n\
         `apply`; warnings do not, unless `validate --strict`.\n\n\
         This file is generated from `src/diagnostic.rs` (a test keeps it in sync).\n\n\
         | code | severity | meaning |\n|---|---|---|\n",
    );
    for code in Code::ALL {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.severity(),
            code.description()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_list_every_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/diagnostics.md");
        let expected = codes_markdown();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &expected).expect("write docs/diagnostics.md");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == expected,
            "docs/diagnostics.md is out of date: UPDATE_EXPECT=1 cargo test --lib diagnostic"
        );
    }

    #[test]
    fn codes_are_kebab_case_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{c}"
            );
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
    }

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::new(
            Code::BaselineConflict,
            Location::new("baselines/a.yaml", Pos { line: 3, column: 9 }),
            "they disagree",
        )
        .with_note(
            Location::new("baselines/b.yaml", Pos { line: 4, column: 2 }),
            "other side",
        );
        assert_eq!(
            d.to_string(),
            "baselines/a.yaml:3:9: error[baseline-conflict]: they disagree\n  baselines/b.yaml:4:2: note: other side"
        );
    }
}
