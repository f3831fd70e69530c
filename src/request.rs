//! Patch requests filed through the API become commits in the fleet repo: Git stays the
//! single source of truth, and a request is reviewed and merged like any other change.
//!
//! Flow of [`Intake::file`]: the posted document is checked for a usable name, written as
//! YAML (read back and compared, so what is committed is exactly what was posted), and
//! validated exactly as `patchkeeper validate` validates the repo with that file added to
//! the desired branch's tip; only diagnostics the new file causes reject it. It is then
//! committed as `requests/<name>.yaml` (author: the reports author of Settings; trailers
//! `Requested-By:` with the token's name and `Request-Id:`) and published:
//! - `api.requests: branch` (default): a new branch `patchkeeper/requests/<name>`, created
//!   only if it does not exist (an existing name is a conflict, never overwritten);
//! - `api.requests: direct`: onto the desired branch by compare-and-swap, rebuilt and
//!   validated again on a moved tip, so concurrent requests never lose a commit.
//!
//! With a remote source the commit is pushed to the remote, never forced. For a remote that
//! is a path on this machine, objects go to a private ref and the branch moves by a
//! compare-and-swap in the remote repository (libgit2's local transport would otherwise
//! write the ref unconditionally). One request is written at a time per [`Intake`].
//!
//! Partial failure: a commit whose publication fails stays an unreferenced object; nothing
//! half-written is visible on any branch. This module and `report`/`source` are the only
//! ones that link git2; it knows nothing of HTTP.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{ErrorCode, FetchOptions, Oid, PushOptions, Repository};
use serde_json::{Map, Value};

use crate::diagnostic::Diagnostic;
use crate::fleet::{self, yaml};
use crate::model::{self, RequestMode, API_VERSION};
use crate::report::{open_remote_callbacks, trailer, DEFAULT_AUTHOR};
use crate::source::{Location, Source, SourceError};
use crate::view::SubmittedRequest;

/// Prefix of review branches.
pub const BRANCH_PREFIX: &str = "patchkeeper/requests/";

/// Attempts on a moved tip before giving up (direct mode).
const MAX_ATTEMPTS: u32 = 20;

/// Where fetched remote tips are kept (private namespace).
const BASE_REF: &str = "refs/patchkeeper/requests-base";
const REMOTE_REQUESTS: &str = "refs/patchkeeper/requests/";
const OUTGOING_REF: &str = "refs/patchkeeper/requests-outgoing";

/// A diagnostic of the new file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldDiagnostic {
    /// The diagnostic as `validate --format json` prints it.
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
    /// JSON pointer into the posted document (`/spec/packages/0/minVersion`), when the
    /// diagnostic is located in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Why a request was not filed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The document is not something that can be written as a request at all.
    #[error("{message}")]
    Malformed {
        /// JSON pointer of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Validation of the repo with the request added found problems the request causes.
    #[error("the patch request does not validate ({} diagnostics)", diagnostics.len())]
    Invalid {
        /// Every diagnostic the new file causes.
        diagnostics: Vec<FieldDiagnostic>,
    },
    /// A request of that name exists.
    #[error("patch request `{name}` already exists {place}")]
    Exists {
        /// The name.
        name: String,
        /// Where (`in the desired branch`, `on branch ...`).
        place: String,
    },
    /// Direct mode on a local repository whose working tree has the desired branch
    /// checked out: moving the branch would make the working tree disagree with it.
    #[error("cannot commit to `{branch}`: it is checked out in `{}`; serve from a bare repository or a URL, or use `api.requests: branch`", repo.display())]
    CheckedOut {
        /// The branch.
        branch: String,
        /// The repository.
        repo: PathBuf,
    },
    /// Other writers kept moving the desired branch.
    #[error("the desired branch kept moving: gave up after {0} attempts")]
    Contended(u32),
    /// The fleet repo could not be read or fetched.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The fleet repo cannot be loaded at all.
    #[error("cannot load the fleet repo: {0}")]
    Load(String),
    /// A git operation failed.
    #[error("git: {what}: {}", crate::redact::text(&.source.to_string()))]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// The remote refused the push.
    #[error("push to {remote} rejected: {message}")]
    PushRejected {
        /// The remote.
        remote: String,
        /// Its message.
        message: String,
    },
    /// The document could not be written as YAML faithfully.
    #[error("cannot write the request as YAML: {0}")]
    Yaml(String),
}

/// Credentials in a remote URL never reach the message (`what` names the URL).
fn git_err(what: impl Into<String>) -> impl FnOnce(git2::Error) -> RequestError {
    let what = crate::redact::text(&what.into()).into_owned();
    move |source| RequestError::Git { what, source }
}

/// One request to file.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The posted document (a PatchRequest; `apiVersion` and `kind` may be left out).
    pub document: Value,
    /// The token's name (`Requested-By:`).
    pub requested_by: String,
    /// The HTTP request id (`Request-Id:`).
    pub request_id: String,
    /// Branch or direct.
    pub mode: RequestMode,
}

/// A filed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// The request's name.
    pub name: String,
    /// The commit.
    pub commit: String,
    /// The branch it is on.
    pub branch: String,
    /// Whether it was pushed to a remote.
    pub pushed: bool,
    /// Tries it took (more than 1 when the desired branch moved meanwhile).
    pub attempts: u32,
    /// Warnings validation found in the new file.
    pub warnings: Vec<FieldDiagnostic>,
}

/// The patch-request writer of one fleet repo.
pub struct Intake {
    source: Source,
    /// One writer at a time (requests from one server never race each other).
    writing: Mutex<()>,
    /// The last base validated: (commit, fleet, its diagnostics, their rendered errors).
    cache: Mutex<Option<Base>>,
}

/// A validated base commit: its documents, the diagnostics loading produced, and every
/// diagnostic validation reports (rendered), to tell what a request adds.
#[derive(Clone)]
struct Base {
    commit: Oid,
    fleet: fleet::Fleet,
    diagnostics: Vec<Diagnostic>,
    reported: BTreeSet<String>,
}

/// A request validated on a base.
struct Checked {
    fleet: fleet::Fleet,
    diagnostics: Vec<Diagnostic>,
    reported: BTreeSet<String>,
    warnings: Vec<FieldDiagnostic>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("source", &self.source.location())
            .finish_non_exhaustive()
    }
}

/// A checked request: its name, file path, YAML text and positions.
struct Prepared {
    name: String,
    path: String,
    text: String,
    positions: yaml::Positions,
}

impl Intake {
    /// A writer for the fleet repo of `source`.
    pub fn new(source: Source) -> Intake {
        Intake {
            source,
            writing: Mutex::new(()),
            cache: Mutex::new(None),
        }
    }

    /// Validates and commits `submission`. See the module documentation for the flow and
    /// guarantees. Blocking (Git): call it off async worker threads.
    pub fn file(&self, submission: &Submission) -> Result<Filed, RequestError> {
        let prepared = prepare(&submission.document, &submission.requested_by)?;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let repo = self.source.open()?;
        let branch = self.source.branch_name()?;
        let desired_ref = format!("refs/heads/{branch}");
        if submission.mode == RequestMode::Direct {
            if let Location::Local(dir) = self.source.location() {
                let checked_out = !repo.is_bare()
                    && repo
                        .head()
                        .ok()
                        .and_then(|h| h.name().ok().map(str::to_owned))
                        .as_deref()
                        == Some(desired_ref.as_str());
                if checked_out {
                    return Err(RequestError::CheckedOut {
                        branch,
                        repo: dir.clone(),
                    });
                }
            }
        }
        let review = format!("{BRANCH_PREFIX}{}", prepared.name);
        for attempt in 1..=MAX_ATTEMPTS {
            let base = self.base(&repo, &branch)?;
            if submission.mode == RequestMode::Branch && self.branch_exists(&repo, &review)? {
                return Err(RequestError::Exists {
                    name: prepared.name.clone(),
                    place: format!("on branch `{review}`"),
                });
            }
            let checked = self.validate(base, &prepared)?;
            let message = commit_message(&prepared, submission);
            let commit = self.commit(&repo, base, &checked.fleet, &prepared, &message)?;
            let target = match submission.mode {
                RequestMode::Branch => review.clone(),
                RequestMode::Direct => branch.clone(),
            };
            let expect = match submission.mode {
                RequestMode::Branch => None,
                RequestMode::Direct => Some(base),
            };
            match self.publish(&repo, &target, expect, commit)? {
                Published::Done { pushed } => {
                    if submission.mode == RequestMode::Direct {
                        // The next request builds on this commit: its validation is known.
                        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Base {
                            commit,
                            fleet: checked.fleet,
                            diagnostics: checked.diagnostics,
                            reported: checked.reported,
                        });
                    }
                    return Ok(Filed {
                        name: prepared.name,
                        commit: commit.to_string(),
                        branch: target,
                        pushed,
                        attempts: attempt,
                        warnings: checked.warnings,
                    });
                }
                Published::Exists => {
                    return Err(RequestError::Exists {
                        name: prepared.name.clone(),
                        place: format!("on branch `{review}`"),
                    })
                }
                Published::TipMoved => {
                    tracing::info!(branch = %target, attempt, "the branch moved; filing again on its new tip");
                }
            }
        }
        Err(RequestError::Contended(MAX_ATTEMPTS))
    }

    /// Commits a rapid-response proposal (`crate::rapid`) on its review branch
    /// `patchkeeper/requests/<name>`: a new branch (`tip: None`, never overwriting one), or
    /// a new commit on the branch from `tip` (compare-and-swap, never forced). The request
    /// is validated against the desired branch's tip exactly as an API request is;
    /// `message` gets the fleet with the request added and returns the commit message's
    /// body (the plan). Blocking (Git).
    pub fn propose(
        &self,
        document: &Value,
        tip: Option<&str>,
        message: &dyn Fn(&crate::validate::ValidFleet) -> String,
    ) -> Result<Filed, RequestError> {
        let mut prepared = prepare(document, "")?;
        // Same line count, so the positions read back stay right.
        prepared.text = prepared.text.replacen(
            "# Filed through the patchkeeper API.",
            "# Proposed by patchkeeper rapid response (docs/rapid-response.md).",
            1,
        );
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let repo = self.source.open()?;
        let branch = self.source.branch_name()?;
        let review = format!("{BRANCH_PREFIX}{}", prepared.name);
        let desired = self.base(&repo, &branch)?;
        let (parent, expect) = match tip {
            None => {
                if self.branch_exists(&repo, &review)? {
                    return Err(RequestError::Exists {
                        name: prepared.name.clone(),
                        place: format!("on branch `{review}`"),
                    });
                }
                (desired, None)
            }
            Some(t) => {
                let t = Oid::from_str(t).map_err(git_err(format!("read {review}")))?;
                (t, Some(t))
            }
        };
        let checked = self.validate(desired, &prepared)?;
        let outcome = crate::validate::validate_fleet(checked.fleet.clone(), checked.diagnostics);
        let body = match &outcome.fleet {
            Some(f) => message(f),
            None => String::new(),
        };
        let verb = if tip.is_some() {
            "add hosts to"
        } else {
            "propose"
        };
        let reason = document
            .pointer("/spec/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut subject = format!("{verb} patch request {}: {reason}", prepared.name);
        if subject.chars().count() > 72 {
            subject = subject.chars().take(71).collect::<String>() + "…";
        }
        let text = format!(
            "{subject}\n\nProposed by patchkeeper rapid response as `{}`; review and merge it to apply.\n\n{body}\n\nRequested-By: {}\n",
            prepared.path,
            crate::rapid::REQUESTED_BY
        );
        let commit = self.commit(&repo, parent, &checked.fleet, &prepared, &text)?;
        match self.publish(&repo, &review, expect, commit)? {
            Published::Done { pushed } => Ok(Filed {
                name: prepared.name,
                commit: commit.to_string(),
                branch: review,
                pushed,
                attempts: 1,
                warnings: checked.warnings,
            }),
            Published::Exists => Err(RequestError::Exists {
                name: prepared.name.clone(),
                place: format!("on branch `{review}`"),
            }),
            Published::TipMoved => Err(RequestError::Contended(1)),
        }
    }

    /// The desired branch's tip: fetched from the remote, or read locally.
    fn base(&self, repo: &Repository, branch: &str) -> Result<Oid, RequestError> {
        match self.source.location() {
            Location::Local(_) => repo
                .refname_to_id(&format!("refs/heads/{branch}"))
                .map_err(git_err(format!("read branch {branch}"))),
            Location::Remote(url) => {
                let mut remote = repo.remote_anonymous(url).map_err(git_err("remote"))?;
                let mut fo = FetchOptions::new();
                fo.remote_callbacks(open_remote_callbacks(self.source.auth()));
                let specs = [
                    format!("+refs/heads/{branch}:{BASE_REF}"),
                    format!("+refs/heads/{BRANCH_PREFIX}*:{REMOTE_REQUESTS}*"),
                ];
                fo.prune(git2::FetchPrune::On);
                // The loop fetches into this repository too: leave FETCH_HEAD alone.
                fo.update_fetchhead(false);
                remote
                    .fetch(&specs, Some(&mut fo), None)
                    .map_err(git_err(format!("fetch from {url}")))?;
                repo.refname_to_id(BASE_REF)
                    .map_err(git_err(format!("read fetched branch {branch}")))
            }
        }
    }

    fn branch_exists(&self, repo: &Repository, branch: &str) -> Result<bool, RequestError> {
        let name = match self.source.location() {
            Location::Local(_) => format!("refs/heads/{branch}"),
            Location::Remote(_) => format!(
                "{REMOTE_REQUESTS}{}",
                branch.trim_start_matches(BRANCH_PREFIX)
            ),
        };
        match repo.find_reference(&name) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(git_err(format!("read {name}"))(e)),
        }
    }

    /// Validates the repo at `base` with the request added: the problems it causes, or
    /// the new fleet and the warnings it causes.
    fn validate(&self, base: Oid, prepared: &Prepared) -> Result<Checked, RequestError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|b| b.commit == base);
        let base = match cached {
            Some(b) => b,
            None => {
                let checkout = self.source.checkout(&base.to_string())?;
                let (fleet, diagnostics) =
                    fleet::load(&checkout.dir).map_err(|e| RequestError::Load(e.to_string()))?;
                let outcome = crate::validate::validate_fleet(fleet.clone(), diagnostics.clone());
                let b = Base {
                    commit: base,
                    fleet,
                    diagnostics,
                    reported: rendered(&outcome.diagnostics),
                };
                *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
                b
            }
        };
        let rel = Path::new(&prepared.path);
        if base.fleet.files.iter().any(|f| f == rel)
            || base
                .fleet
                .requests
                .iter()
                .any(|r| r.name() == prepared.name)
        {
            return Err(RequestError::Exists {
                name: prepared.name.clone(),
                place: "in the desired branch".into(),
            });
        }
        let mut fleet = base.fleet.clone();
        let mut diagnostics = base.diagnostics.clone();
        fleet::add_file(&mut fleet, &mut diagnostics, rel, &prepared.text);
        fleet.files.push(rel.to_owned());
        let outcome = crate::validate::validate_fleet(fleet.clone(), diagnostics.clone());
        // What the request causes: diagnostics in its file, and diagnostics elsewhere that
        // the base did not have (a conflict it creates is reported at both places).
        let caused: Vec<FieldDiagnostic> = outcome
            .diagnostics
            .iter()
            .filter(|d| {
                d.location.file == rel
                    || d.notes.iter().any(|n| n.location.file == rel)
                    || !base.reported.contains(&d.to_string())
            })
            .map(|d| FieldDiagnostic {
                field: (d.location.file == rel)
                    .then(|| {
                        prepared
                            .positions
                            .pointer_at(yaml::Pos {
                                line: d.location.line,
                                column: d.location.column,
                            })
                            .map(str::to_owned)
                    })
                    .flatten(),
                diagnostic: d.clone(),
            })
            .collect();
        if caused.iter().any(|d| d.diagnostic.is_error()) {
            return Err(RequestError::Invalid {
                diagnostics: caused,
            });
        }
        Ok(Checked {
            fleet,
            diagnostics,
            reported: rendered(&outcome.diagnostics),
            warnings: caused,
        })
    }

    fn commit(
        &self,
        repo: &Repository,
        base: Oid,
        fleet: &fleet::Fleet,
        prepared: &Prepared,
        message: &str,
    ) -> Result<Oid, RequestError> {
        let parent = repo
            .find_commit(base)
            .map_err(git_err("read the base commit"))?;
        let base_tree = parent.tree().map_err(git_err("read the base tree"))?;
        let (dir, file) = prepared
            .path
            .split_once('/')
            .unwrap_or(("requests", prepared.path.as_str()));
        let existing = match base_tree.get_name(dir) {
            Some(e) => Some(
                repo.find_tree(e.id())
                    .map_err(git_err(format!("read {dir}/")))?,
            ),
            None => None,
        };
        let mut sub = repo
            .treebuilder(existing.as_ref())
            .map_err(git_err("start tree"))?;
        let blob = repo
            .blob(prepared.text.as_bytes())
            .map_err(git_err("write blob"))?;
        sub.insert(file, blob, 0o100644)
            .map_err(git_err("insert file"))?;
        let sub = sub.write().map_err(git_err("write tree"))?;
        let mut root = repo
            .treebuilder(Some(&base_tree))
            .map_err(git_err("start tree"))?;
        root.insert(dir, sub, 0o040000)
            .map_err(git_err("insert tree"))?;
        let tree = repo
            .find_tree(root.write().map_err(git_err("write tree"))?)
            .map_err(git_err("read tree"))?;
        // The server's identity: the reports author Settings name, as for report commits.
        let (name, email) = fleet
            .settings
            .first()
            .and_then(|s| s.doc.spec.reports.author.clone())
            .map(|a| (a.name, a.email))
            .unwrap_or_else(|| (DEFAULT_AUTHOR.0.to_owned(), DEFAULT_AUTHOR.1.to_owned()));
        let sig = git2::Signature::now(&name, &email).map_err(git_err("author"))?;
        repo.commit(None, &sig, &sig, message, &tree, &[&parent])
            .map_err(git_err("write commit"))
    }

    /// Moves `branch` to `commit`: created only if absent (`expect: None`), or moved from
    /// `expect` (compare-and-swap), locally or on the remote without forcing.
    fn publish(
        &self,
        repo: &Repository,
        branch: &str,
        expect: Option<Oid>,
        commit: Oid,
    ) -> Result<Published, RequestError> {
        let refname = format!("refs/heads/{branch}");
        let Location::Remote(url) = self.source.location() else {
            return cas(repo, &refname, expect, commit);
        };
        repo.reference(OUTGOING_REF, commit, true, "patchkeeper: request")
            .map_err(git_err("stage outgoing ref"))?;
        let mut remote = repo.remote_anonymous(url).map_err(git_err("remote"))?;
        if let Some(path) = local_remote_path(url) {
            // Objects to a private ref, then a compare-and-swap in the remote itself.
            let incoming = format!("refs/patchkeeper/incoming/{commit}");
            let mut po = PushOptions::new();
            po.remote_callbacks(open_remote_callbacks(self.source.auth()));
            remote
                .push(
                    &[format!("+{OUTGOING_REF}:{incoming}").as_str()],
                    Some(&mut po),
                )
                .map_err(git_err(format!("push to {url}")))?;
            let theirs = Repository::open(&path)
                .map_err(git_err(format!("open remote {}", path.display())))?;
            let result = cas(&theirs, &refname, expect, commit);
            if let Ok(mut r) = theirs.find_reference(&incoming) {
                // Only a leftover private ref if this fails; the objects stay either way.
                let _ = r.delete();
            }
            return match result? {
                Published::Done { .. } => Ok(Published::Done { pushed: true }),
                other => Ok(other),
            };
        }
        let rejection: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        let mut cb = open_remote_callbacks(self.source.auth());
        cb.push_update_reference(|_refname, status| {
            if let Some(msg) = status {
                *rejection.borrow_mut() = Some(msg.to_owned());
            }
            Ok(())
        });
        let mut po = PushOptions::new();
        po.remote_callbacks(cb);
        let spec = format!("{OUTGOING_REF}:{refname}");
        let pushed = remote.push(&[spec.as_str()], Some(&mut po));
        drop(po);
        match pushed {
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                return Ok(if expect.is_none() {
                    Published::Exists
                } else {
                    Published::TipMoved
                })
            }
            Err(e) => return Err(git_err(format!("push to {url}"))(e)),
            Ok(()) => {}
        }
        if let Some(message) = rejection.into_inner() {
            let moved = [
                "non-fast-forward",
                "fetch first",
                "stale",
                "lock",
                "failed to update ref",
            ]
            .iter()
            .any(|m| message.contains(m));
            return match (moved, expect) {
                (true, None) => Ok(Published::Exists),
                (true, Some(_)) => Ok(Published::TipMoved),
                (false, _) => Err(RequestError::PushRejected {
                    remote: url.clone(),
                    message,
                }),
            };
        }
        Ok(Published::Done { pushed: true })
    }
}

enum Published {
    Done { pushed: bool },
    TipMoved,
    Exists,
}

/// Creates `refname` at `commit` if absent (`expect: None`) or moves it from `expect`.
fn cas(
    repo: &Repository,
    refname: &str,
    expect: Option<Oid>,
    commit: Oid,
) -> Result<Published, RequestError> {
    let log = "patchkeeper: patch request";
    let result = match expect {
        Some(old) => repo.reference_matching(refname, commit, true, old, log),
        None => repo.reference(refname, commit, false, log),
    };
    match result {
        Ok(_) => Ok(Published::Done { pushed: false }),
        Err(e) if expect.is_none() && e.code() == ErrorCode::Exists => Ok(Published::Exists),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
            ) =>
        {
            Ok(Published::TipMoved)
        }
        Err(e) => Err(git_err(format!("update {refname}"))(e)),
    }
}

/// The directory of a remote URL that names a repository on this machine.
fn local_remote_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("file://").map(PathBuf::from)
}

fn rendered(diagnostics: &[Diagnostic]) -> BTreeSet<String> {
    diagnostics.iter().map(|d| d.to_string()).collect()
}

fn commit_message(prepared: &Prepared, submission: &Submission) -> String {
    let reason = submission
        .document
        .pointer("/spec/reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    let mut subject = format!("patch request {}", prepared.name);
    if !reason.is_empty() {
        subject.push_str(": ");
        subject.push_str(reason);
    }
    if subject.chars().count() > 72 {
        subject = subject.chars().take(71).collect::<String>() + "…";
    }
    // Trailer values are one line each: a token name and an id never hold newlines, but
    // the message must not let a value smuggle in another trailer.
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "{subject}\n\nFiled through the patchkeeper API as `{}`.\n\nRequested-By: {}\nRequest-Id: {}\n",
        prepared.path,
        clean(&submission.requested_by),
        clean(&submission.request_id)
    )
}

/// Checks the posted document can be written as `requests/<name>.yaml` at all (an object,
/// kind `PatchRequest`, a usable name), fills in `apiVersion` and `kind` when left out, and
/// `spec.requestedBy` with the filing token's name when the document names nobody (so who
/// asked survives the merge: review tools squash and rebase away the commit's trailers),
/// and renders the YAML, read back to prove it says exactly that.
fn prepare(document: &Value, requested_by: &str) -> Result<Prepared, RequestError> {
    let Value::Object(fields) = document else {
        return Err(RequestError::Malformed {
            field: String::new(),
            message: "the body must be a JSON object: a PatchRequest document".into(),
        });
    };
    match fields.get("kind") {
        None => {}
        Some(Value::String(k)) if k == "PatchRequest" => {}
        Some(other) => {
            return Err(RequestError::Malformed {
                field: "/kind".into(),
                message: format!("`kind` must be `PatchRequest` (got {other})"),
            })
        }
    }
    let name = match document.pointer("/metadata/name") {
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            return Err(RequestError::Malformed {
                field: "/metadata/name".into(),
                message: format!("`metadata.name` must be a string (got {other})"),
            })
        }
        None => {
            return Err(RequestError::Malformed {
                field: "/metadata/name".into(),
                message: "`metadata.name` is required: it names the request and its file".into(),
            })
        }
    };
    if !valid_name(&name) {
        return Err(RequestError::Malformed {
            field: "/metadata/name".into(),
            message: format!("invalid name `{name}`: use lowercase letters, digits, `-`, `.` and `_`, starting and ending with a letter or digit (at most 253 characters)"),
        });
    }
    let mut ordered = Map::new();
    ordered.insert(
        "apiVersion".into(),
        fields
            .get("apiVersion")
            .cloned()
            .unwrap_or_else(|| Value::String(API_VERSION.into())),
    );
    ordered.insert("kind".into(), Value::String("PatchRequest".into()));
    for (k, v) in fields {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let mut v = v.clone();
        // A spec of the wrong type is left as posted, for validation to name.
        if let (true, Value::Object(spec)) = (k == "spec" && !requested_by.is_empty(), &mut v) {
            spec.entry("requestedBy")
                .or_insert_with(|| Value::String(requested_by.to_owned()));
        }
        ordered.insert(k.clone(), v);
    }
    let ordered = Value::Object(ordered);
    let body = serde_saphyr::to_string(&ordered).map_err(|e| RequestError::Yaml(e.to_string()))?;
    let text = format!("# Filed through the patchkeeper API.\n{body}");
    let docs = yaml::parse_documents(&text).map_err(|e| RequestError::Yaml(e.to_string()))?;
    let [doc] = docs.as_slice() else {
        return Err(RequestError::Yaml(format!(
            "expected one document, read back {}",
            docs.len()
        )));
    };
    if doc.value != ordered {
        return Err(RequestError::Yaml(
            "the YAML does not read back as the posted document".into(),
        ));
    }
    Ok(Prepared {
        path: format!("requests/{name}.yaml"),
        name,
        text,
        positions: doc.positions.clone(),
    })
}

/// `metadata.name` as the schema allows it (and so a safe file and branch name).
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 253
        && edge(bytes[0])
        && edge(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|b| edge(*b) || matches!(b, b'-' | b'.' | b'_'))
        && !name.contains("..")
        && !name.ends_with(".lock")
}

/// Patch requests on review branches (`patchkeeper/requests/*`) of the source: read
/// locally, or fetched from the remote (branches deleted there disappear here).
pub fn submitted(source: &Source) -> Result<Vec<SubmittedRequest>, RequestError> {
    let repo = source.open()?;
    let prefix = match source.location() {
        Location::Local(_) => format!("refs/heads/{BRANCH_PREFIX}"),
        Location::Remote(url) => {
            let mut remote = repo.remote_anonymous(url).map_err(git_err("remote"))?;
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(open_remote_callbacks(source.auth()));
            fo.prune(git2::FetchPrune::On);
            fo.update_fetchhead(false);
            remote
                .fetch(
                    &[format!("+refs/heads/{BRANCH_PREFIX}*:{REMOTE_REQUESTS}*")],
                    Some(&mut fo),
                    None,
                )
                .map_err(git_err(format!("fetch from {url}")))?;
            REMOTE_REQUESTS.to_owned()
        }
    };
    let mut out = Vec::new();
    let refs = repo
        .references_glob(&format!("{prefix}*"))
        .map_err(git_err("list request branches"))?;
    for r in refs.flatten() {
        let Some(refname) = r.name().ok().map(str::to_owned) else {
            continue;
        };
        let name = refname.trim_start_matches(&prefix).to_owned();
        let Ok(commit) = r.peel_to_commit() else {
            continue;
        };
        match read_request(&repo, &commit, &name) {
            Some(spec) => out.push(SubmittedRequest {
                branch: format!("{BRANCH_PREFIX}{name}"),
                commit: commit.id().to_string(),
                requested_by: trailer(commit.message().unwrap_or(""), "Requested-By"),
                name,
                spec,
            }),
            None => tracing::debug!(branch = %refname, "no readable request file on the branch"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_request(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    name: &str,
) -> Option<model::PatchRequestSpec> {
    let tree = commit.tree().ok()?;
    let entry = tree
        .get_path(Path::new(&format!("requests/{name}.yaml")))
        .ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    let text = std::str::from_utf8(blob.content()).ok()?;
    let doc = yaml::parse_documents(text).ok()?.into_iter().next()?;
    let doc: model::PatchRequest = serde_json::from_value(doc.value).ok()?;
    Some(doc.spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Value {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn a_git_error_never_shows_the_password_of_a_remote_url() {
        let e = git_err("fetch from https://ci:pw-5e8d@127.0.0.1:1/fleet.git")(
            git2::Error::from_str("failed at https://ci:pw-5e8d@127.0.0.1:1/fleet.git"),
        );
        let shown = e.to_string();
        assert!(!shown.contains("pw-5e8d"), "{shown}");
        assert!(
            shown.contains("https://***@127.0.0.1:1/fleet.git"),
            "{shown}"
        );
    }

    #[test]
    fn names_must_be_safe_file_and_branch_names() {
        for ok in ["cve-2026-1", "a", "openssl.3_0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a/b",
            "../x",
            "a..b",
            "x.lock",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_yaml_reads_back_as_the_posted_document() {
        let p = prepare(&doc(
            r#"{"metadata":{"name":"cve-1"},"spec":{"selector":{"groups":["web"]},"packages":[{"name":"openssl","minVersion":"3.0.15-1~deb12u1"}],"reason":"yes: no\n# not a comment","advisories":["1.0","true","null"]}}"#,
        ), "ci")
        .expect("prepared");
        assert_eq!(p.path, "requests/cve-1.yaml");
        assert!(p.text.starts_with("# Filed through the patchkeeper API.\n"));
        let back = yaml::parse_documents(&p.text).expect("yaml");
        assert_eq!(back[0].value["apiVersion"], API_VERSION);
        assert_eq!(back[0].value["kind"], "PatchRequest");
        assert_eq!(back[0].value["spec"]["advisories"][1], "true");
        // Who filed it is kept in the file, unless the document names someone.
        assert_eq!(back[0].value["spec"]["requestedBy"], "ci");
        let named = prepare(
            &doc(r#"{"metadata":{"name":"cve-2"},"spec":{"requestedBy":"sec-team"}}"#),
            "ci",
        )
        .expect("prepared");
        let named = yaml::parse_documents(&named.text).expect("yaml");
        assert_eq!(named[0].value["spec"]["requestedBy"], "sec-team");
        assert_eq!(
            p.positions
                .pointer_at(back[0].positions.value("/spec/packages/0/minVersion")),
            Some("/spec/packages/0/minVersion")
        );
    }

    #[test]
    fn unusable_documents_name_the_field() {
        let field = |json: &str| match prepare(&doc(json), "ci") {
            Err(RequestError::Malformed { field, .. }) => field,
            other => panic!("{:?}", other.map(|p| p.text)),
        };
        assert_eq!(field("[]"), "");
        assert_eq!(
            field(r#"{"kind":"Settings","metadata":{"name":"x"}}"#),
            "/kind"
        );
        assert_eq!(field(r#"{"spec":{}}"#), "/metadata/name");
        assert_eq!(field(r#"{"metadata":{"name":7}}"#), "/metadata/name");
        assert_eq!(
            field(r#"{"metadata":{"name":"../../etc"}}"#),
            "/metadata/name"
        );
    }

    #[test]
    fn trailers_are_read_from_the_message() {
        let m = "patch request x\n\nbody\n\nRequested-By: ci\nRequest-Id: 42\n";
        assert_eq!(trailer(m, "Requested-By").as_deref(), Some("ci"));
        assert_eq!(trailer(m, "Request-Id").as_deref(), Some("42"));
        assert_eq!(trailer(m, "Other"), None);
    }
}
