//! Loading a fleet repo: finding its YAML files, reading every document with positions,
//! checking each against its kind's JSON Schema, and collecting the typed documents.
//!
//! Loading never stops at the first problem: every file and document is read and every
//! problem becomes a [`Diagnostic`]. Documents that fail their schema are left out of the
//! [`Fleet`]; semantic checks ([`crate::validate`]) run on what is left.

mod external;
pub mod yaml;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::Digest;

use crate::diagnostic::{Code, Diagnostic, Location};
use crate::model::{self, Document, Kind};
use crate::schema::{self, ViolationKind};
use yaml::{Pos, Positions};

/// Directories never searched for fleet documents.
const SKIPPED_DIRS: &[&str] = &["reports", "schemas", "advisories", "target", "node_modules"];

/// Where a loaded document came from, so any of its values can be located.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// Path relative to the fleet repo root.
    pub file: PathBuf,
    /// 0-based index of the document in its file.
    pub index: usize,
    /// Positions of the document's values.
    pub positions: Positions,
}

impl Origin {
    /// Location of the value at a JSON pointer (e.g. `/spec/window`).
    pub fn at(&self, pointer: &str) -> Location {
        Location::new(&self.file, self.positions.value(pointer))
    }

    /// Location of the key holding the value at a JSON pointer.
    pub fn key_at(&self, pointer: &str) -> Location {
        Location::new(&self.file, self.positions.key(pointer))
    }
}

/// A typed document and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    /// The document.
    pub doc: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<S> Loaded<Document<S>> {
    /// The document's `metadata.name`.
    pub fn name(&self) -> &str {
        &self.doc.metadata.name
    }

    /// The document's spec.
    pub fn spec(&self) -> &S {
        &self.doc.spec
    }
}

/// Every document of a fleet repo that passed its schema, by kind, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    /// Absolute path of the fleet repo root.
    pub root: PathBuf,
    /// YAML files read (relative paths).
    pub files: Vec<PathBuf>,
    /// The Git commit checked out at the root (`None`: not a Git work tree).
    pub commit: Option<String>,
    /// SHA-256 over every file's path and bytes: identifies the exact desired state even
    /// with uncommitted edits.
    pub digest: String,
    /// Settings documents (a valid repo has at most one).
    pub settings: Vec<Loaded<model::Settings>>,
    /// Inventories.
    pub inventories: Vec<Loaded<model::Inventory>>,
    /// Baselines.
    pub baselines: Vec<Loaded<model::Baseline>>,
    /// Maintenance windows.
    pub windows: Vec<Loaded<model::MaintenanceWindow>>,
    /// Rollouts.
    pub rollouts: Vec<Loaded<model::Rollout>>,
    /// Patch requests.
    pub requests: Vec<Loaded<model::PatchRequest>>,
    /// Vulnerability exceptions.
    pub exceptions: Vec<Loaded<model::VulnerabilityException>>,
    /// Names declared by documents that failed their schema, so that references to them
    /// do not cascade into misleading "does not exist" errors.
    pub broken: BrokenNames,
}

/// Names (documents, groups, hosts) that broken files and documents may declare, so that
/// references to them are not reported as "does not exist" on top of the real error, while
/// references to names found nowhere still are.
///
/// A document that failed its schema declares what its `metadata.name` (and, for an
/// Inventory, its groups and hosts) say. A file that is not YAML (syntax error, not UTF-8)
/// or a document whose kind cannot be read is read again as plain text: every `name:`
/// value in it may be declared, by the kind its `kind:` line names or, without one, by any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokenNames {
    /// (kind, name) of each broken document, or name found in a broken file's text under
    /// a readable `kind:`.
    pub documents: Vec<(Kind, String)>,
    /// Names found where the kind is unknown: any kind may declare them.
    pub any_kind: Vec<String>,
    /// Whether some broken document's kind is unknown (it may be of any kind).
    pub unknown_kind: bool,
    /// Group names declared by broken inventories (or found where the kind is unknown).
    pub groups: Vec<String>,
    /// Host names declared by broken inventories (or found where the kind is unknown).
    pub hosts: Vec<String>,
    /// Some file could not be read at all (or is too large to read), so what it declares
    /// is unknown and "does not exist" checks would only report cascades of that first
    /// error.
    pub incomplete: bool,
}

impl BrokenNames {
    /// Records what a file that does not parse may declare, from its text.
    fn recover_text(&mut self, text: &str) {
        let value_of = |line: &str, key: &str| -> Option<String> {
            let rest = line.split_once(&format!("{key}:"))?.1.trim_start();
            let v: String = rest
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .collect();
            (!v.is_empty()).then_some(v)
        };
        let mut chunks: Vec<Vec<&str>> = vec![Vec::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                chunks.push(Vec::new());
            } else if let Some(chunk) = chunks.last_mut() {
                chunk.push(line);
            }
        }
        for chunk in chunks {
            let kind = chunk
                .iter()
                .filter(|l| l.trim_start().starts_with("kind:"))
                .find_map(|l| value_of(l, "kind"))
                .and_then(|k| Kind::parse(&k));
            let names: Vec<String> = chunk
                .iter()
                .flat_map(|l| {
                    // `name:` as a key, not inside a longer key (`hostname:`).
                    l.match_indices("name:")
                        .filter(|(i, _)| {
                            l[..*i]
                                .chars()
                                .last()
                                .is_none_or(|c| !c.is_ascii_alphanumeric())
                        })
                        .filter_map(|(i, _)| value_of(&l[i..], "name"))
                        .collect::<Vec<_>>()
                })
                .collect();
            self.record_names(kind, names);
        }
    }

    /// Records `names` as possibly declared by a document of `kind` (`None`: unknown).
    fn record_names(&mut self, kind: Option<Kind>, names: Vec<String>) {
        match kind {
            Some(k) => {
                if k == Kind::Inventory {
                    self.groups.extend(names.iter().cloned());
                    self.hosts.extend(names.iter().cloned());
                }
                self.documents.extend(names.into_iter().map(|n| (k, n)));
            }
            None => {
                self.unknown_kind = true;
                self.groups.extend(names.iter().cloned());
                self.hosts.extend(names.iter().cloned());
                self.any_kind.extend(names);
            }
        }
    }

    /// Records a parsed document whose kind is unknown: every `name` value in it.
    fn record_unknown(&mut self, value: &Value) {
        fn names(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("name", Value::String(n)) => out.push(n.clone()),
                            _ => names(x, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| names(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        names(value, &mut out);
        self.record_names(None, out);
    }

    fn record(&mut self, kind: Kind, value: &Value) {
        if let Some(name) = value.pointer("/metadata/name").and_then(Value::as_str) {
            self.documents.push((kind, name.to_owned()));
        }
        if kind == Kind::Inventory {
            let names = |list: &str| -> Vec<String> {
                value
                    .pointer(&format!("/spec/{list}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            };
            self.groups.extend(names("groups"));
            self.hosts.extend(names("hosts"));
        }
    }

    /// Whether a broken document of `kind` may be named `name`.
    pub fn has_document(&self, kind: Kind, name: &str) -> bool {
        self.documents.iter().any(|(k, n)| *k == kind && n == name)
            || self.any_kind.iter().any(|n| n == name)
    }

    /// Whether some broken document may be of `kind`.
    pub fn may_have(&self, kind: Kind) -> bool {
        self.incomplete || self.unknown_kind || self.documents.iter().any(|(k, _)| *k == kind)
    }
}

/// A fleet repo that cannot be read at all, or holds nothing to read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No YAML file holds a document: most likely not the fleet repo.
    #[error(
        "no fleet documents in `{}`: {} (expected YAML files with `apiVersion: patchkeeper.dev/v1` and a `kind` such as Inventory)\n\nhint: is `--repo` the fleet repo? (it defaults to the current directory)",
        path.display(),
        if *files == 0 { "it has no YAML files".to_owned() } else { format!("its {files} YAML file(s) hold no document") }
    )]
    NoDocuments {
        /// The directory.
        path: PathBuf,
        /// How many YAML files it has (all empty).
        files: usize,
    },
    /// The root does not exist or is not a directory.
    #[error("fleet repo `{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The root cannot be listed.
    #[error("cannot read fleet repo `{}`", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Finds the YAML files of a fleet repo, sorted, relative to `root`.
///
/// Hidden entries (`.git`, `.patchkeeper`...), the top-level `reports`, `schemas`,
/// `advisories`, `target` and `node_modules` directories and the root-level policy override
/// (`policy.yaml`) are skipped.
pub fn find_yaml_files(root: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if !root.is_dir() {
        return Err(LoadError::NotADirectory(root.to_owned()));
    }
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            let name = e.file_name().to_string_lossy();
            if name.starts_with('.') {
                return false;
            }
            // The compliance policy override is not a fleet document (it has its own
            // format and loader, `crate::policy`).
            if e.depth() == 1 && e.file_type().is_file() && name == crate::policy::OVERRIDE_FILE {
                return false;
            }
            !(e.file_type().is_dir() && e.depth() == 1 && SKIPPED_DIRS.contains(&name.as_ref()))
        });
    for entry in walker {
        let entry = entry.map_err(|e| LoadError::Io {
            path: e.path().unwrap_or(root).to_owned(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("loop in directory tree")),
        })?;
        let is_yaml = entry
            .path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml");
        if entry.file_type().is_file() && is_yaml {
            if let Ok(rel) = entry.path().strip_prefix(root) {
                files.push(rel.to_owned());
            }
        }
    }
    Ok(files)
}

/// Whether the file at `rel` (relative to the repo root) is one [`find_yaml_files`] reads or
/// the root policy override: what changes the fleet's meaning (used to tell whether a
/// working tree differs from its commit in a way that matters).
pub fn is_fleet_file(rel: &Path) -> bool {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let Some(name) = parts.last() else {
        return false;
    };
    if parts.iter().any(|p| p.starts_with('.')) {
        return false;
    }
    if parts.len() == 1 && name == crate::policy::OVERRIDE_FILE {
        return true;
    }
    if parts.len() > 1 && SKIPPED_DIRS.contains(&parts[0].as_str()) {
        return false;
    }
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Loads a fleet repo from disk: every YAML file, every document.
pub fn load(root: &Path) -> Result<(Fleet, Vec<Diagnostic>), LoadError> {
    let files = find_yaml_files(root)?;
    let mut sources = Vec::with_capacity(files.len());
    for rel in files {
        let bytes = std::fs::read(root.join(&rel));
        sources.push((rel, bytes));
    }
    let mut fleet = Fleet {
        root: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()),
        ..Fleet::default()
    };
    let mut diags = Vec::new();
    let mut hasher = sha2::Sha256::new();
    for (rel, bytes) in &sources {
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        if let Ok(b) = bytes {
            hasher.update((b.len() as u64).to_le_bytes());
            hasher.update(b);
        }
    }
    fleet.commit = head_commit(root);
    let mut documents = 0;
    for (rel, bytes) in sources {
        let text = match bytes {
            Ok(b) if b.len() > yaml::MAX_FILE_BYTES => {
                // Not read any further, not even for names: refused quickly, whole.
                fleet.broken.incomplete = true;
                diags.push(Diagnostic::new(
                    Code::UnreadableFile,
                    Location::new(&rel, Pos { line: 1, column: 1 }),
                    format!(
                        "file is {} bytes, more than the {} a fleet-repo file may have; split it into several files (all Inventory documents are merged)",
                        b.len(),
                        yaml::MAX_FILE_BYTES
                    ),
                ));
                continue;
            }
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(e) => {
                    fleet
                        .broken
                        .recover_text(&String::from_utf8_lossy(e.as_bytes()));
                    let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                    let line = valid.iter().filter(|c| **c == b'\n').count() + 1;
                    let column = valid.iter().rev().take_while(|c| **c != b'\n').count() + 1;
                    diags.push(Diagnostic::new(
                        Code::UnreadableFile,
                        Location::new(
                            &rel,
                            Pos {
                                line: u32::try_from(line).unwrap_or(u32::MAX),
                                column: u32::try_from(column).unwrap_or(u32::MAX),
                            },
                        ),
                        "file is not UTF-8 text",
                    ));
                    continue;
                }
            },
            Err(e) => {
                fleet.broken.incomplete = true;
                diags.push(Diagnostic::new(
                    Code::UnreadableFile,
                    Location::new(&rel, Pos { line: 1, column: 1 }),
                    format!("cannot read file: {e}"),
                ));
                continue;
            }
        };
        documents += add_file(&mut fleet, &mut diags, &rel, &text);
        fleet.files.push(rel);
    }
    if documents == 0 && !diags.iter().any(Diagnostic::is_error) {
        return Err(LoadError::NoDocuments {
            path: root.to_owned(),
            files: fleet.files.len(),
        });
    }
    // Inventories read from Ansible sources count in the digest too.
    external::expand(&mut fleet, &mut diags, &mut hasher);
    fleet.digest = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((fleet, diags))
}

/// Reads one file's documents into the fleet (used by [`load`] and by tests); returns how
/// many YAML documents the file holds (`0` also when it does not parse).
pub fn add_file(fleet: &mut Fleet, diags: &mut Vec<Diagnostic>, rel: &Path, text: &str) -> usize {
    let docs = match yaml::parse_documents(text) {
        Ok(d) => d,
        Err(e) => {
            fleet.broken.recover_text(text);
            diags.push(Diagnostic::new(
                Code::YamlSyntax,
                Location::new(rel, e.pos),
                e.message,
            ));
            return 0;
        }
    };
    let count = docs.len();
    if docs.is_empty() {
        diags.push(Diagnostic::new(
            Code::EmptyFile,
            Location::new(rel, Pos { line: 1, column: 1 }),
            "file holds no document",
        ));
    }
    for d in docs {
        let origin = Origin {
            file: rel.to_owned(),
            index: d.index,
            positions: d.positions,
        };
        add_document(fleet, diags, origin, d.value);
    }
    count
}

fn add_document(fleet: &mut Fleet, diags: &mut Vec<Diagnostic>, origin: Origin, value: Value) {
    let Some(obj) = value.as_object() else {
        fleet.broken.record_unknown(&value);
        diags.push(Diagnostic::new(
            Code::NotADocument,
            origin.at(""),
            "expected a mapping with `apiVersion`, `kind`, `metadata` and `spec`",
        ));
        return;
    };
    let mut ok = true;
    match obj.get("apiVersion") {
        Some(Value::String(v)) if v == model::API_VERSION => {}
        Some(v) => {
            ok = false;
            diags.push(Diagnostic::new(
                Code::UnknownApiVersion,
                origin.at("/apiVersion"),
                format!(
                    "unknown apiVersion {}, expected `{}`",
                    quote(v),
                    model::API_VERSION
                ),
            ));
        }
        None => {
            ok = false;
            diags.push(Diagnostic::new(
                Code::NotADocument,
                origin.at(""),
                format!(
                    "missing field `apiVersion` (expected `{}`)",
                    model::API_VERSION
                ),
            ));
        }
    }
    let kind = match obj.get("kind") {
        Some(Value::String(k)) => match Kind::parse(k) {
            Some(kind) => Some(kind),
            None => {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = known
                    .iter()
                    .find(|c| {
                        strsim::damerau_levenshtein(&c.to_lowercase(), &k.to_lowercase()) <= 2
                    })
                    .map(|c| format!(", did you mean `{c}`?"))
                    .unwrap_or_else(|| format!(", expected one of {}", known.join(", ")));
                diags.push(Diagnostic::new(
                    Code::UnknownKind,
                    origin.at("/kind"),
                    format!("unknown kind `{k}`{hint}"),
                ));
                None
            }
        },
        Some(v) => {
            diags.push(Diagnostic::new(
                Code::UnknownKind,
                origin.at("/kind"),
                format!("unknown kind {}", quote(v)),
            ));
            None
        }
        None => {
            diags.push(Diagnostic::new(
                Code::NotADocument,
                origin.at(""),
                "missing field `kind`",
            ));
            None
        }
    };
    let Some(kind) = kind else {
        fleet.broken.record_unknown(&value);
        return;
    };
    if !ok {
        fleet.broken.record(kind, &value);
        return;
    }
    let violations = schema::check(kind, &value);
    if !violations.is_empty() {
        for v in violations {
            let (code, loc) = match v.kind {
                ViolationKind::UnknownField => (Code::UnknownField, origin.key_at(&v.pointer)),
                ViolationKind::MissingField => (Code::MissingField, origin.key_at(&v.pointer)),
                ViolationKind::WrongType => (Code::WrongType, origin.at(&v.pointer)),
                ViolationKind::InvalidValue => (Code::InvalidValue, origin.at(&v.pointer)),
            };
            diags.push(Diagnostic::new(code, loc, v.message));
        }
        fleet.broken.record(kind, &value);
        return;
    }
    match kind {
        Kind::Settings => push(&mut fleet.settings, diags, origin, value),
        Kind::Inventory => push(&mut fleet.inventories, diags, origin, value),
        Kind::Baseline => push(&mut fleet.baselines, diags, origin, value),
        Kind::MaintenanceWindow => push(&mut fleet.windows, diags, origin, value),
        Kind::Rollout => push(&mut fleet.rollouts, diags, origin, value),
        Kind::PatchRequest => push(&mut fleet.requests, diags, origin, value),
        Kind::VulnerabilityException => push(&mut fleet.exceptions, diags, origin, value),
    }
}

fn push<T: DeserializeOwned>(
    into: &mut Vec<Loaded<T>>,
    diags: &mut Vec<Diagnostic>,
    origin: Origin,
    value: Value,
) {
    match serde_json::from_value::<T>(value) {
        Ok(doc) => into.push(Loaded { doc, origin }),
        // The schema is generated from the same types, so this is a schema/serde mismatch;
        // still report it rather than drop the document silently.
        Err(e) => diags.push(Diagnostic::new(
            Code::InvalidValue,
            origin.at(""),
            format!("document does not match its kind: {e}"),
        )),
    }
}

fn quote(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// The commit checked out in `root`, read from `.git/HEAD` without a Git library (the
/// loader stays free of git2; the reports and source modules own Git).
fn head_commit(root: &Path) -> Option<String> {
    // The fleet repo may be a directory of a larger repository: the nearest `.git` above.
    // A `.git` file (a linked worktree) names its Git directory; refs then live in the
    // common directory it names.
    let dot_git = root
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    let git = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let dir = PathBuf::from(text.trim().strip_prefix("gitdir: ")?);
        dot_git.parent()?.join(dir)
    } else {
        dot_git
    };
    let common = std::fs::read_to_string(git.join("commondir"))
        .ok()
        .map(|c| git.join(c.trim()))
        .unwrap_or_else(|| git.clone());
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let sha = match head.strip_prefix("ref: ") {
        Some(r) => match std::fs::read_to_string(git.join(r))
            .or_else(|_| std::fs::read_to_string(common.join(r)))
        {
            Ok(s) => s.trim().to_owned(),
            Err(_) => {
                let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
                packed
                    .lines()
                    .find_map(|l| l.strip_suffix(r).map(|s| s.trim().to_owned()))?
            }
        },
        None => head.to_owned(),
    };
    (sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit())).then_some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_files_are_what_the_loader_reads_plus_the_policy() {
        for (path, yes) in [
            ("inventory/hosts.yaml", true),
            ("baselines/web.yml", true),
            ("policy.yaml", true),
            ("baselines/policy.yaml", true),
            ("README.md", false),
            (".patchkeeper/journal.jsonl", false),
            (".lab/x.yaml", false),
            ("reports/a.yaml", false),
            ("schemas/plan.schema.json", false),
            ("deep/.hidden/a.yaml", false),
        ] {
            assert_eq!(is_fleet_file(Path::new(path)), yes, "{path}");
        }
    }

    #[test]
    fn the_root_policy_override_is_not_a_fleet_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, "x: 1\n").expect("write");
        };
        write("policy.yaml");
        write("patchkeeper.yaml");
        write("baselines/policy.yaml");
        write(".patchkeeper/state.yaml");
        write("reports/a.yaml");
        let files = find_yaml_files(dir.path()).expect("walk");
        assert_eq!(
            files,
            [
                PathBuf::from("baselines/policy.yaml"),
                PathBuf::from("patchkeeper.yaml")
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_read_for_the_names_it_may_declare() {
        let mut b = BrokenNames::default();
        b.recover_text(
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: default\nspec:\n  stages:\n    - name: canary\n     - name: rest\n---\nkind: Inventory\nmetadata: {name: 'lab'}\nspec:\n  groups: [{name: web}]\n  hosts:\n    - name: \"web-1\"\n      hostname: not-a-name\n---\nmetadata:\n  name: mystery\n",
        );
        assert!(b.has_document(Kind::Rollout, "default"));
        assert!(b.has_document(Kind::Rollout, "canary"));
        assert!(!b.has_document(Kind::MaintenanceWindow, "default"));
        assert!(b.has_document(Kind::Inventory, "lab"));
        assert!(b.groups.contains(&"web".to_owned()) && b.hosts.contains(&"web-1".to_owned()));
        assert!(!b.hosts.contains(&"not-a-name".to_owned()));
        // No readable kind: any kind may declare it.
        assert!(b.has_document(Kind::MaintenanceWindow, "mystery"));
        assert!(b.unknown_kind && b.may_have(Kind::Baseline));
        assert!(!b.incomplete);
    }
}
