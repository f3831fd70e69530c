//! git2 plumbing of the reports branch: trees built without a working tree, signed commits,
//! compare-and-swap ref updates, fetch and non-forced push with rejection detection.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{
    Cred, CredentialType, ErrorCode, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository,
    Tree,
};
use jiff::Timestamp;
use rayon::prelude::*;

use super::{
    HistoryEntry, HostPackages, HostReport, InstalledRecord, ReportError, ReportTarget, RunLookup,
    RunPackages, RunRecord, Snapshot, Summary,
};

const FILE_MODE: i32 = 0o100644;
const DIR_MODE: i32 = 0o040000;
/// Where the remote's tip is fetched to (private namespace: never a branch users see).
const REMOTE_TIP_REF: &str = "refs/patchkeeper/reports-remote-tip";
/// What is pushed (libgit2 pushes refs, not bare ids).
const OUTGOING_REF: &str = "refs/patchkeeper/reports-outgoing";

/// The trailer naming the leader term a clustered leader wrote a report commit in.
pub const LEADER_TERM: &str = "Leader-Term";

/// The trailer of a report commit by a leader deposed by a newer term (host files kept).
pub const DEPOSED_LEADER_TERM: &str = "Deposed-Leader-Term";

/// Commits walked back for the newest `Leader-Term`: every commit of a clustered leader
/// carries one, so only a long run of commits by unclustered writers (`patchkeeper apply`
/// by hand) gets near it; past it the branch counts as unfenced.
const TERM_WALK: usize = 1_000;

fn git_err(what: impl Into<String>) -> impl FnOnce(git2::Error) -> ReportError {
    let what = crate::redact::text(&what.into()).into_owned();
    move |source| ReportError::Git {
        what,
        source: annotate(source),
    }
}

/// Credentials for remotes, from the environment: `PATCHKEEPER_GIT_SSH_KEY` (private key
/// file for ssh:// URLs; else the ssh-agent) and `PATCHKEEPER_GIT_TOKEN` (https token;
/// user `PATCHKEEPER_GIT_USER`, default `x-access-token`).
///
/// The token goes to one host only, over https only: `PATCHKEEPER_GIT_TOKEN_HOST`
/// (`host` or `host:port`), or for `serve` the host of its `https://` fleet repo URL
/// ([`GitAuth::for_source`]). Any other URL (plain `http://`, a `reports.remote` on another
/// host) is refused the token.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// SSH private key file.
    pub ssh_key: Option<PathBuf>,
    /// HTTPS token.
    pub token: Option<String>,
    /// HTTPS user name for the token.
    pub user: Option<String>,
    /// The one `host[:port]` the token may be sent to (over https).
    pub token_host: Option<String>,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("ssh_key", &self.ssh_key)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .field("token_host", &self.token_host)
            .finish()
    }
}

impl GitAuth {
    /// Reads the environment variables named on [`GitAuth`].
    pub fn from_env() -> GitAuth {
        GitAuth {
            ssh_key: std::env::var_os("PATCHKEEPER_GIT_SSH_KEY").map(PathBuf::from),
            token: std::env::var("PATCHKEEPER_GIT_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            user: std::env::var("PATCHKEEPER_GIT_USER").ok(),
            token_host: std::env::var("PATCHKEEPER_GIT_TOKEN_HOST")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }

    /// Binds the token to the host of the fleet repo's URL when it is `https://` and no
    /// `PATCHKEEPER_GIT_TOKEN_HOST` was given.
    pub fn for_source(mut self, url: &str) -> GitAuth {
        if self.token_host.is_none() {
            self.token_host = url::Url::parse(url)
                .ok()
                .filter(|u| u.scheme() == "https")
                .and_then(|u| origin_of(&u));
        }
        self
    }
}

/// `host:port` of an URL (port defaulted by scheme).
fn origin_of(u: &url::Url) -> Option<String> {
    let host = u.host_str()?.to_ascii_lowercase();
    Some(format!("{host}:{}", u.port_or_known_default()?))
}

/// Whether the token may be sent to `url`: https, and the host (and port) the token is
/// bound to. `Err` says why not.
pub fn token_allowed(url: &str, token_host: Option<&str>) -> Result<(), String> {
    let shown = crate::redact::text(url);
    let Ok(u) = url::Url::parse(url) else {
        return Err(format!("`{shown}` is not a URL"));
    };
    if u.scheme() != "https" {
        return Err(format!(
            "the Git token is sent only over https, and `{shown}` is {}",
            u.scheme()
        ));
    }
    let Some(bound) = token_host else {
        return Err(format!(
            "the Git token is bound to no host (set PATCHKEEPER_GIT_TOKEN_HOST, or serve an https:// fleet repo), so it is not sent to `{shown}`"
        ));
    };
    let bound = bound.to_ascii_lowercase();
    let bound = if bound.contains(':') && !bound.ends_with(']') {
        bound
    } else {
        format!("{bound}:443")
    };
    match origin_of(&u) {
        Some(o) if o == bound => Ok(()),
        _ => Err(format!(
            "the Git token is bound to {bound}, so it is not sent to `{shown}`"
        )),
    }
}

/// How long a Git remote may stay silent (connect, or between two reads) before the
/// operation fails: `PATCHKEEPER_GIT_TIMEOUT` (a duration, default `60s`). A whole transfer
/// is given ten times as long.
pub fn network_timeout() -> std::time::Duration {
    std::env::var("PATCHKEEPER_GIT_TIMEOUT")
        .ok()
        .and_then(|v| crate::duration::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(std::time::Duration::from_secs(60))
}

/// Sets libgit2's socket timeouts (connect, and every read and write, which bounds an SSH
/// handshake too) once per process, before the first network operation.
fn set_network_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ms = i32::try_from(network_timeout().as_millis()).unwrap_or(i32::MAX);
        // SAFETY: libgit2 reads these two ints when it opens a socket. Every network
        // operation of patchkeeper builds its callbacks here first, so this write completes
        // (Once gives the happens-before edge) before any socket is opened, and it never
        // changes afterwards.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
        }
    });
}

thread_local! {
    /// Set by a progress callback that aborted a transfer past its deadline (libgit2 calls
    /// callbacks on the thread running the operation), read by [`annotate`].
    static DEADLINE_PASSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// libgit2's error said in terms of what stalled, with credentials in URLs redacted: every
/// Git error of the reports and of the fleet source passes through here when it is made.
pub fn annotate(e: git2::Error) -> git2::Error {
    let t = network_timeout();
    let message = if DEADLINE_PASSED.with(|d| d.replace(false)) {
        format!(
            "the transfer was still running after {}s (ten times PATCHKEEPER_GIT_TIMEOUT) and was aborted",
            (t * 10).as_secs()
        )
    } else {
        let m = crate::redact::text(e.message()).into_owned();
        // libgit2's own words, libssh2's, and OpenSSL's when the socket timeout ends a
        // handshake read (the non-blocking read returns EAGAIN).
        let stalled = [
            "timed out",
            "Timed out",
            "timeout",
            "Resource temporarily unavailable",
        ];
        if stalled.iter().any(|s| m.contains(s)) {
            format!(
                "{m} (the remote did not answer within {}s; PATCHKEEPER_GIT_TIMEOUT)",
                t.as_secs()
            )
        } else {
            m
        }
    };
    git2::Error::new(e.code(), e.class(), message)
}

/// Callbacks that answer credential requests from `auth`, giving up after a few attempts
/// (libgit2 would otherwise retry a rejected credential forever), and abort a transfer that
/// runs past ten times [`network_timeout`] (a remote trickling bytes never trips a socket
/// timeout). SSH host keys are checked by libgit2 against `~/.ssh/known_hosts`.
pub fn open_remote_callbacks(auth: &GitAuth) -> RemoteCallbacks<'_> {
    set_network_timeouts();
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0u32;
    cb.credentials(move |url, user_from_url, allowed| {
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str("credentials were rejected"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = user_from_url.unwrap_or("git");
            return match &auth.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = &auth.token {
                match token_allowed(url, auth.token_host.as_deref()) {
                    Ok(()) => {
                        let user = auth
                            .user
                            .as_deref()
                            .or(user_from_url)
                            .unwrap_or("x-access-token");
                        return Cred::userpass_plaintext(user, token);
                    }
                    Err(why) => {
                        tracing::warn!("{why}");
                        return Err(git2::Error::from_str(&why));
                    }
                }
            }
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "no credentials: set PATCHKEEPER_GIT_SSH_KEY or PATCHKEEPER_GIT_TOKEN",
        ))
    });
    let limit = network_timeout() * 10;
    let started = std::time::Instant::now();
    DEADLINE_PASSED.with(|d| d.set(false));
    let within = move || {
        let ok = started.elapsed() < limit;
        if !ok {
            DEADLINE_PASSED.with(|d| d.set(true));
        }
        ok
    };
    cb.transfer_progress(move |_| within());
    cb.sideband_progress(move |_| within());
    cb
}

/// Opens a remote by name (configured in the repository) or by URL.
pub fn remote<'r>(
    repo: &'r Repository,
    name_or_url: &str,
) -> Result<git2::Remote<'r>, git2::Error> {
    match repo.find_remote(name_or_url) {
        Ok(r) => Ok(r),
        Err(_) => repo.remote_anonymous(name_or_url),
    }
}

/// The outcome of moving the branch.
pub enum Published {
    /// The branch (and the remote, when set) now points at the commit.
    Done {
        /// Whether a remote was updated.
        pushed: bool,
    },
    /// Another writer moved the tip first: rebuild and retry.
    TipMoved,
}

/// Writes report commits to one repository and branch.
pub struct Writer<'t> {
    repo: Repository,
    target: &'t ReportTarget,
    local_ref: String,
}

impl<'t> Writer<'t> {
    /// Opens the repository (bare or with a working tree, which is never touched).
    pub fn open(target: &'t ReportTarget) -> Result<Writer<'t>, ReportError> {
        if let Some(refused) = &target.refused {
            return Err(ReportError::Trust(refused.clone()));
        }
        let repo = discover(&target.repo)?;
        Ok(Writer {
            repo,
            target,
            local_ref: format!("refs/heads/{}", target.branch),
        })
    }

    /// Serializes report writers on this machine that share a repository (the local one, or
    /// a remote that is a path on this machine): the returned file holds an exclusive lock
    /// until dropped. libgit2's compare-and-swap alone lost a report under racing threads
    /// here; writers on other machines are still ordered by the server's fast-forward check.
    pub fn lock_writers(&self) -> Result<std::fs::File, ReportError> {
        let dir = self
            .target
            .remote
            .as_deref()
            .and_then(|name| self.repo.find_remote(name).ok())
            .and_then(|r| r.url().ok().and_then(local_remote_path))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| self.repo.path().to_path_buf());
        let path = dir.join("patchkeeper-reports.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ReportError::Lock {
                path: path.clone(),
                source: e,
            })?;
        file.lock()
            .map_err(|e| ReportError::Lock { path, source: e })?;
        Ok(file)
    }

    /// The commit to build on: the remote's tip (fetched now) when a remote is set and has
    /// the branch, else the local branch's tip; `None` for a branch not created yet.
    pub fn base(&self) -> Result<Option<Oid>, ReportError> {
        if let Some(name) = &self.target.remote {
            // A stale tracking value must not pass for the remote's tip.
            if let Ok(mut r) = self.repo.find_reference(REMOTE_TIP_REF) {
                r.delete()
                    .map_err(git_err("cannot reset the remote-tip ref"))?;
            }
            let mut remote = remote(&self.repo, name).map_err(git_err(format!("remote {name}")))?;
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(open_remote_callbacks(&self.target.auth));
            let spec = format!("+refs/heads/{}:{REMOTE_TIP_REF}", self.target.branch);
            // A racing writer deleting its private incoming ref while this fetch lists the
            // remote's refs makes the listing fail with NotFound: transient, so try again.
            let mut tries = 0;
            loop {
                match remote.fetch(&[spec.as_str()], Some(&mut fo), None) {
                    Ok(()) => break,
                    Err(e) if tries < 5 && is_vanished_incoming_ref(&e) => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10 * tries));
                    }
                    Err(e) => return Err(git_err(format!("fetch from {name}"))(e)),
                }
            }
            if let Ok(r) = self.repo.find_reference(REMOTE_TIP_REF) {
                return Ok(r.target());
            }
        }
        self.local_tip()
    }

    /// Like [`Writer::base`], but when fetching from the remote fails, the local branch's
    /// tip and the fetch error (so the caller can keep its commit locally).
    pub fn base_or_local(&self) -> Result<(Option<Oid>, Option<ReportError>), ReportError> {
        match self.base() {
            Ok(b) => Ok((b, None)),
            Err(e) if self.target.remote.is_some() => {
                tracing::warn!(branch = %self.target.branch, "cannot fetch reports: {e}");
                Ok((self.local_tip()?, Some(e)))
            }
            Err(e) => Err(e),
        }
    }

    fn local_tip(&self) -> Result<Option<Oid>, ReportError> {
        match self.repo.find_reference(&self.local_ref) {
            Ok(r) => Ok(r.target()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_err(format!("read {}", self.local_ref))(e)),
        }
    }

    /// With a remote: points the local branch at `commit`, which could not be pushed, so
    /// it is not lost (its run files are carried by the next push).
    pub fn keep_locally(&self, commit: Oid) -> Result<(), ReportError> {
        if self.target.remote.is_some() {
            self.repo
                .reference(
                    &self.local_ref,
                    commit,
                    true,
                    "patchkeeper: report kept locally, not pushed",
                )
                .map_err(git_err(format!("update {}", self.local_ref)))?;
        }
        Ok(())
    }

    fn tree_of(&self, commit: Option<&Oid>) -> Result<Option<Tree<'_>>, ReportError> {
        commit
            .map(|oid| {
                self.repo
                    .find_commit(*oid)
                    .and_then(|c| c.tree())
                    .map_err(git_err(format!("read commit {oid}")))
            })
            .transpose()
    }

    /// What the last report on `base` stood for: its summary's desired commit, and whether
    /// its newest run is a rejection (a `validate` run).
    pub fn last_report(&self, base: Option<&Oid>) -> Result<(Option<String>, bool), ReportError> {
        let Some(tree) = self.tree_of(base)? else {
            return Ok((None, false));
        };
        let desired = tree
            .get_name("summary.json")
            .and_then(|e| self.repo.find_blob(e.id()).ok())
            .and_then(|b| serde_json::from_slice::<Summary>(b.content()).ok())
            .map(|s| s.desired_commit);
        let newest_run = tree
            .get_name("runs")
            .and_then(|e| self.repo.find_tree(e.id()).ok())
            .and_then(|t| {
                t.iter()
                    .filter_map(|r| r.name().ok().map(str::to_owned))
                    .max()
            });
        Ok((
            desired,
            newest_run.is_some_and(|n| n.contains("-validate-")),
        ))
    }

    /// The newest leader term on the branch at `base`: the first `Leader-Term` trailer on
    /// its first-parent history, at most [`TERM_WALK`] commits back (`None`: none there).
    /// A leader never writes a term below the newest, so the first one found is the
    /// largest.
    pub fn leader_term(
        &self,
        base: Option<&Oid>,
    ) -> Result<Option<super::LeaderTerm>, ReportError> {
        let Some(oid) = base else {
            return Ok(None);
        };
        let mut commit = self
            .repo
            .find_commit(*oid)
            .map_err(git_err(format!("read commit {oid}")))?;
        for _ in 0..TERM_WALK {
            let term = std::str::from_utf8(commit.message_bytes())
                .ok()
                .and_then(|m| super::trailer(m, LEADER_TERM))
                .and_then(|v| v.parse::<super::LeaderTerm>().ok());
            if term.is_some() {
                return Ok(term);
            }
            match commit.parent(0) {
                Ok(parent) => commit = parent,
                Err(_) => break,
            }
        }
        Ok(None)
    }

    /// When `base` was committed (`None`: no base).
    pub fn commit_time(&self, base: Option<&Oid>) -> Result<Option<Timestamp>, ReportError> {
        base.map(|oid| {
            self.repo
                .find_commit(*oid)
                .map(|c| {
                    Timestamp::from_second(c.time().seconds()).unwrap_or(Timestamp::UNIX_EPOCH)
                })
                .map_err(git_err(format!("read commit {oid}")))
        })
        .transpose()
    }

    /// The host reports on `base`, by host name. Unreadable files are skipped with a
    /// warning (one corrupt file must not stop every later report).
    pub fn read_hosts(
        &self,
        base: Option<&Oid>,
    ) -> Result<BTreeMap<String, HostReport>, ReportError> {
        let Some(tree) = self.tree_of(base)? else {
            return Ok(BTreeMap::new());
        };
        let hosts = read_host_files(&self.repo, &tree, &self.target.branch, true)?;
        Ok(hosts
            .into_iter()
            .map(|h| (h.compliance.host.clone(), h))
            .collect())
    }

    /// The names of the host files on `base` (`hosts/NAME.json`), unparsed: what a commit
    /// that writes no host file keeps, readable or not.
    pub fn host_names(&self, base: Option<&Oid>) -> Result<Vec<String>, ReportError> {
        let Some(tree) = self.tree_of(base)? else {
            return Ok(Vec::new());
        };
        let Some(entry) = tree.get_name("hosts") else {
            return Ok(Vec::new());
        };
        let hosts = self
            .repo
            .find_tree(entry.id())
            .map_err(git_err("read hosts/"))?;
        Ok(hosts
            .iter()
            .filter_map(|e| e.name().ok()?.strip_suffix(".json").map(str::to_owned))
            .collect())
    }

    /// Whether `path` (`dir/name`) exists in `base`'s tree.
    pub fn has_file(&self, base: Option<&Oid>, path: &str) -> Result<bool, ReportError> {
        let Some(tree) = self.tree_of(base)? else {
            return Ok(false);
        };
        Ok(tree.get_path(Path::new(path)).is_ok())
    }

    /// The installed record of `host` on `base` (`None`: none yet, or unreadable, which is
    /// logged: a new record then starts from now, the conservative side).
    pub fn read_installed(
        &self,
        base: Option<&Oid>,
        host: &str,
    ) -> Result<Option<InstalledRecord>, ReportError> {
        let Some(tree) = self.tree_of(base)? else {
            return Ok(None);
        };
        read_json_file(
            &self.repo,
            &tree,
            &format!("installed/{host}.json"),
            &self.target.branch,
        )
    }

    /// The blob id of `packages/<host>.txt` on `base`, by host.
    pub fn package_blobs(&self, base: Option<&Oid>) -> Result<BTreeMap<String, Oid>, ReportError> {
        match self.tree_of(base)? {
            Some(tree) => package_files(&self.repo, &tree),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Builds and writes a commit on `base` with `files` (paths `hosts/x.json`,
    /// `packages/x.txt`, `installed/x.json`, `runs/y.json` or top-level names) replacing or
    /// adding entries; host and package files of hosts not in `keep_hosts` are removed, and
    /// so are installed records of hosts not in `keep_installed` (when given). Not yet
    /// referenced by any branch.
    pub fn commit(
        &self,
        base: Option<&Oid>,
        files: &[(String, Vec<u8>)],
        keep_hosts: &[String],
        keep_installed: Option<&[String]>,
        message: &str,
        now: Timestamp,
    ) -> Result<Oid, ReportError> {
        let repo = &self.repo;
        let base_tree = self.tree_of(base)?;
        // Every blob first (a tree entry must name an object that exists).
        let blobs = write_blobs(repo, files)?;
        let mut by_dir: BTreeMap<&str, Vec<(&str, Oid)>> = BTreeMap::new();
        for ((path, _), blob) in files.iter().zip(blobs) {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            by_dir.entry(dir).or_default().push((name, blob));
        }
        let mut root = repo
            .treebuilder(base_tree.as_ref())
            .map_err(git_err("start tree"))?;
        // Subdirectories named by the files, plus `hosts/`, `packages/` (when there is one)
        // and `installed/` (when pruning it) for pruning.
        let mut dirs: Vec<&str> = by_dir.keys().copied().filter(|d| !d.is_empty()).collect();
        if !dirs.contains(&"hosts") {
            dirs.push("hosts");
        }
        if keep_installed.is_some() && !dirs.contains(&"installed") {
            dirs.push("installed");
        }
        let has_packages = root
            .get("packages")
            .map_err(git_err("read tree"))?
            .is_some();
        if has_packages && !dirs.contains(&"packages") {
            dirs.push("packages");
        }
        for dir in dirs {
            let existing = match root.get(dir).map_err(git_err("read tree"))? {
                Some(e) => Some(
                    repo.find_tree(e.id())
                        .map_err(git_err(format!("read {dir}/")))?,
                ),
                None => None,
            };
            let mut sub = repo
                .treebuilder(existing.as_ref())
                .map_err(git_err("start tree"))?;
            // Per-host directories: which file suffix, and which hosts keep theirs.
            let prune = match dir {
                "hosts" => Some((".json", Some(keep_hosts))),
                "packages" => Some((".txt", Some(keep_hosts))),
                "installed" => Some((".json", keep_installed)),
                _ => None,
            };
            if let Some((suffix, Some(keep))) = prune {
                // A set: one lookup per existing file (10,000 hosts: no 10^8 scan).
                let keep: std::collections::HashSet<&str> =
                    keep.iter().map(String::as_str).collect();
                let mut stale = Vec::new();
                for e in existing.iter().flat_map(|t| t.iter()) {
                    let name = e.name().unwrap_or_default().to_owned();
                    let host = name.strip_suffix(suffix).unwrap_or(&name);
                    if !keep.contains(host) {
                        stale.push(name);
                    }
                }
                for name in stale {
                    sub.remove(&name)
                        .map_err(git_err(format!("prune {dir}/ file")))?;
                }
            }
            for (name, blob) in by_dir.get(dir).into_iter().flatten() {
                sub.insert(*name, *blob, FILE_MODE)
                    .map_err(git_err("insert file"))?;
            }
            if keep_installed.is_some() && dir == "installed" && sub.is_empty() {
                // No promotion source left (and none written now): no empty directory.
                root.remove(dir).ok();
                continue;
            }
            if dir == "runs" {
                self.carry_unpushed_runs(base, &mut sub)?;
            }
            // Git has no empty directories: a `packages/` pruned to nothing goes.
            if dir == "packages" && sub.is_empty() {
                root.remove(dir).map_err(git_err("prune packages/"))?;
                continue;
            }
            let oid = sub.write().map_err(git_err("write tree"))?;
            root.insert(dir, oid, DIR_MODE)
                .map_err(git_err("insert tree"))?;
        }
        for (name, blob) in by_dir.get("").into_iter().flatten() {
            root.insert(*name, *blob, FILE_MODE)
                .map_err(git_err("insert file"))?;
        }
        let tree_oid = root.write().map_err(git_err("write tree"))?;
        let tree = repo.find_tree(tree_oid).map_err(git_err("read tree"))?;
        let (name, email) = &self.target.author;
        let sig = git2::Signature::new(name, email, &git2::Time::new(now.as_second(), 0))
            .map_err(git_err("author"))?;
        let parent = base
            .map(|oid| repo.find_commit(*oid).map_err(git_err("read parent")))
            .transpose()?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        match &self.target.signing {
            None => repo
                .commit(None, &sig, &sig, message, &tree, &parents)
                .map_err(git_err("write commit")),
            Some(signing) => {
                let buf = repo
                    .commit_create_buffer(&sig, &sig, message, &tree, &parents)
                    .map_err(git_err("build commit"))?;
                let content = buf.as_str().ok().ok_or_else(|| ReportError::Signing {
                    key: signing.key(),
                    message: "commit buffer is not UTF-8".into(),
                })?;
                let signature = super::sign::sign(signing, content)?;
                repo.commit_signed(content, &signature, None)
                    .map_err(git_err("write signed commit"))
            }
        }
    }

    /// With a remote: run files of local commits the remote never got (an earlier push
    /// failed) are carried into the new commit, so no run record is lost.
    fn carry_unpushed_runs(
        &self,
        base: Option<&Oid>,
        sub: &mut git2::TreeBuilder<'_>,
    ) -> Result<(), ReportError> {
        if self.target.remote.is_none() {
            return Ok(());
        }
        let Ok(local) = self.repo.find_reference(&self.local_ref) else {
            return Ok(());
        };
        let Some(local) = local.target() else {
            return Ok(());
        };
        if let Some(b) = base {
            let contained = *b == local
                || self
                    .repo
                    .graph_descendant_of(*b, local)
                    .map_err(git_err("compare tips"))?;
            if contained {
                return Ok(());
            }
        }
        let Some(tree) = self.tree_of(Some(&local))? else {
            return Ok(());
        };
        let Some(runs) = tree.get_name("runs") else {
            return Ok(());
        };
        let runs = self
            .repo
            .find_tree(runs.id())
            .map_err(git_err("read local runs/"))?;
        for e in runs.iter() {
            let Ok(name) = e.name() else { continue };
            if sub.get(name).map_err(git_err("read tree"))?.is_none() {
                sub.insert(name, e.id(), FILE_MODE)
                    .map_err(git_err("carry run file"))?;
            }
        }
        Ok(())
    }

    /// Moves the branch from `base` to `commit`: a compare-and-swap on the local ref, or a
    /// non-forced push followed by updating the local branch.
    pub fn publish(&self, base: Option<&Oid>, commit: Oid) -> Result<Published, ReportError> {
        let log = "patchkeeper: report";
        let Some(name) = &self.target.remote else {
            let result = match base {
                Some(b) => self
                    .repo
                    .reference_matching(&self.local_ref, commit, true, *b, log),
                None => self.repo.reference(&self.local_ref, commit, false, log),
            };
            return match result {
                Ok(_) => Ok(Published::Done { pushed: false }),
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
                    ) =>
                {
                    Ok(Published::TipMoved)
                }
                Err(e) => Err(git_err(format!("update {}", self.local_ref))(e)),
            };
        };
        self.repo
            .reference(OUTGOING_REF, commit, true, log)
            .map_err(git_err("stage outgoing ref"))?;
        let mut remote = remote(&self.repo, name).map_err(git_err(format!("remote {name}")))?;
        if let Some(path) = remote.url().ok().and_then(local_remote_path) {
            return self.publish_local(&mut remote, name, &path, base, commit);
        }
        let rejection: RefCell<Option<String>> = RefCell::new(None);
        let mut cb = open_remote_callbacks(&self.target.auth);
        cb.push_update_reference(|_refname, status| {
            if let Some(msg) = status {
                *rejection.borrow_mut() = Some(msg.to_owned());
            }
            Ok(())
        });
        let mut po = PushOptions::new();
        po.remote_callbacks(cb);
        let spec = format!("{OUTGOING_REF}:refs/heads/{}", self.target.branch);
        let pushed = remote.push(&[spec.as_str()], Some(&mut po));
        drop(po);
        let rejection = rejection.into_inner();
        match pushed {
            Err(e) if e.code() == ErrorCode::NotFastForward => return Ok(Published::TipMoved),
            Err(e) => return Err(git_err(format!("push to {name}"))(e)),
            Ok(()) => {}
        }
        if let Some(message) = rejection {
            // Servers word it differently: "non-fast-forward", "fetch first", "stale info",
            // or a failed lock on the ref when two pushes land at once.
            let moved = [
                "non-fast-forward",
                "fetch first",
                "stale",
                "lock",
                "failed to update ref",
            ]
            .iter()
            .any(|m| message.contains(m));
            return if moved {
                Ok(Published::TipMoved)
            } else {
                Err(ReportError::PushRejected {
                    remote: crate::redact::text(name).into_owned(),
                    message: crate::redact::text(&message).into_owned(),
                })
            };
        }
        self.repo
            .reference(&self.local_ref, commit, true, log)
            .map_err(git_err(format!("update {}", self.local_ref)))?;
        Ok(Published::Done { pushed: true })
    }

    /// Push to a remote on this machine. libgit2's local transport checks fast-forward
    /// against the tip it saw when connecting and then writes the ref unconditionally, so two
    /// racing pushes can both "succeed" and one commit is lost. Instead the objects go to a
    /// private ref, and the branch moves by a compare-and-swap in the remote repository.
    fn publish_local(
        &self,
        remote: &mut git2::Remote<'_>,
        name: &str,
        path: &Path,
        base: Option<&Oid>,
        commit: Oid,
    ) -> Result<Published, ReportError> {
        let incoming = format!("refs/patchkeeper/incoming/{commit}");
        let mut po = PushOptions::new();
        po.remote_callbacks(open_remote_callbacks(&self.target.auth));
        if let Err(e) = remote.push(
            &[format!("+{OUTGOING_REF}:{incoming}").as_str()],
            Some(&mut po),
        ) {
            // libgit2's local transport lists the remote's refs and then reads each one; a
            // racing writer deleting its own private incoming ref in between makes that read
            // fail. Nothing was written: retry like any other lost race.
            if is_vanished_incoming_ref(&e) {
                return Ok(Published::TipMoved);
            }
            return Err(git_err(format!("push to {name}"))(e));
        }
        let theirs =
            Repository::open(path).map_err(git_err(format!("open remote {}", path.display())))?;
        let log = "patchkeeper: report";
        let result = match base {
            Some(b) => theirs.reference_matching(&self.local_ref, commit, true, *b, log),
            None => theirs.reference(&self.local_ref, commit, false, log),
        };
        if let Ok(mut r) = theirs.find_reference(&incoming) {
            // Only a leftover private ref if this fails; the objects stay either way.
            let _ = r.delete();
        }
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
                ) =>
            {
                return Ok(Published::TipMoved)
            }
            Err(e) => return Err(git_err(format!("update {} in {name}", self.local_ref))(e)),
        }
        self.repo
            .reference(&self.local_ref, commit, true, log)
            .map_err(git_err(format!("update {}", self.local_ref)))?;
        Ok(Published::Done { pushed: true })
    }
}

/// A racing writer's private incoming ref vanished while libgit2 listed the remote's refs
/// (libgit2 reports it as a generic error whose message names the ref).
fn is_vanished_incoming_ref(e: &git2::Error) -> bool {
    e.message().contains("refs/patchkeeper/incoming/") && e.message().contains("not found")
}

/// The directory of a remote URL that names a repository on this machine (`file://` URLs
/// and plain paths), `None` for network URLs.
pub(super) fn local_remote_path(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if url.contains("://") || (url.contains(':') && !url.starts_with('/') && !url.starts_with('.'))
    {
        return None; // scheme or scp-like `host:path`
    }
    Some(PathBuf::from(url))
}

/// From how many files a commit's blobs go into one pack instead of loose objects: a
/// commit of a few files (serve's observations of a handful of changed hosts) stays loose,
/// so packs do not pile up; a fleet-wide commit writes two files instead of thousands.
const PACK_FROM: usize = 64;

/// Writes the blobs of `files`, returning their ids in the same order.
fn write_blobs(repo: &Repository, files: &[(String, Vec<u8>)]) -> Result<Vec<Oid>, ReportError> {
    if files.len() < PACK_FROM {
        return files
            .iter()
            .map(|(_, bytes)| repo.blob(bytes).map_err(git_err("write blob")))
            .collect();
    }
    let mut pack = super::pack::PackBuilder::new();
    let ids = files
        .iter()
        .map(|(_, bytes)| pack.add_blob(bytes))
        .collect::<Result<Vec<_>, _>>()?;
    pack.write(repo)?;
    Ok(ids)
}

fn read_host_files(
    repo: &Repository,
    tree: &Tree<'_>,
    branch: &str,
    lenient: bool,
) -> Result<Vec<HostReport>, ReportError> {
    let Some(entry) = tree.get_name("hosts") else {
        return Ok(Vec::new());
    };
    let hosts = repo.find_tree(entry.id()).map_err(git_err("read hosts/"))?;
    let files: Vec<(String, Oid)> = hosts
        .iter()
        .map(|e| (e.name().unwrap_or_default().to_owned(), e.id()))
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    let mut out = Vec::with_capacity(files.len());
    // Parsed on every core, a chunk at a time (libgit2 reads the blobs on this thread):
    // every report commit reads all host files, ~30 KB of JSON each for thousands of hosts.
    for chunk in files.chunks(256) {
        let texts = chunk
            .iter()
            .map(|(name, id)| {
                repo.find_blob(*id)
                    .map(|b| (name.as_str(), b.content().to_vec()))
                    .map_err(git_err(format!("read hosts/{name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parsed: Vec<_> = texts
            .par_iter()
            .map(|(name, text)| (*name, serde_json::from_slice::<HostReport>(text)))
            .collect();
        for (name, report) in parsed {
            match report {
                Ok(h) => out.push(h),
                Err(source) if lenient => {
                    tracing::warn!(file = %format!("hosts/{name}"), %branch, "ignoring unreadable host report: {source}");
                }
                Err(source) => {
                    return Err(ReportError::Format {
                        branch: branch.to_owned(),
                        path: format!("hosts/{name}"),
                        source,
                    })
                }
            }
        }
    }
    out.sort_by(|a, b| a.compliance.host.cmp(&b.compliance.host));
    Ok(out)
}

/// The Git repository holding `path`: `path` itself or the nearest directory above it (a
/// fleet repo may be a directory of a larger repository).
fn discover(path: &Path) -> Result<Repository, ReportError> {
    Repository::discover(path).map_err(|e| ReportError::NotARepository {
        path: path.to_path_buf(),
        message: e.message().to_owned(),
    })
}

/// Fleet files (see [`crate::fleet::is_fleet_file`]) that differ from the commit checked out
/// at `root`: modified, new or deleted. Reports name the commit they were made from, so a
/// run on a changed working tree must not be reported as that commit.
pub fn uncommitted_fleet_files(root: &Path) -> Result<Vec<String>, ReportError> {
    let repo = discover(root)?;
    // The fleet repo may be a directory of a larger repository: only its own files count,
    // named relative to it.
    let prefix = match (repo.workdir(), root.canonicalize()) {
        (Some(w), Ok(r)) => w
            .canonicalize()
            .ok()
            .and_then(|w| r.strip_prefix(&w).ok().map(Path::to_path_buf))
            .unwrap_or_default(),
        _ => PathBuf::new(),
    };
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(git_err("read the fleet repo's status"))?;
    let mut changed: Vec<String> = statuses
        .iter()
        .filter(|e| e.status() != git2::Status::CURRENT)
        .filter_map(|e| {
            e.path().ok().and_then(|p| {
                Path::new(p)
                    .strip_prefix(&prefix)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
        })
        .filter(|p| crate::fleet::is_fleet_file(Path::new(p)))
        .collect();
    changed.sort();
    Ok(changed)
}

/// The local branch, else its remote-tracking copy (`origin` first): a CI job's fresh clone
/// has `refs/remotes/origin/patchkeeper/reports` but no local reports branch.
fn branch_or_tracking<'r>(
    repo: &'r Repository,
    branch: &str,
) -> Result<Option<git2::Reference<'r>>, ReportError> {
    match repo.find_reference(&format!("refs/heads/{branch}")) {
        Ok(r) => return Ok(Some(r)),
        Err(e) if e.code() == ErrorCode::NotFound => {}
        Err(e) => return Err(git_err(format!("read branch {branch}"))(e)),
    }
    let mut tracking: Vec<String> = repo
        .references_glob(&format!("refs/remotes/*/{branch}"))
        .map_err(git_err(format!("list remote-tracking copies of {branch}")))?
        .filter_map(|r| r.ok().and_then(|r| r.name().ok().map(str::to_owned)))
        .collect();
    // `origin` first, then by name: deterministic when several remotes have it.
    tracking.sort_by_key(|name| (!name.starts_with("refs/remotes/origin/"), name.clone()));
    match tracking.first() {
        Some(name) => repo
            .find_reference(name)
            .map(Some)
            .map_err(git_err(format!("read {name}"))),
        None => Ok(None),
    }
}

/// `path` of `tree` read as JSON of `T` (`None`: no such file, or unreadable, which is
/// logged).
fn read_json_file<T: serde::de::DeserializeOwned>(
    repo: &Repository,
    tree: &Tree<'_>,
    path: &str,
    branch: &str,
) -> Result<Option<T>, ReportError> {
    let Ok(entry) = tree.get_path(Path::new(path)) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(git_err(format!("read {path}")))?;
    match serde_json::from_slice::<T>(blob.content()) {
        Ok(v) => Ok(Some(v)),
        Err(source) => {
            tracing::warn!(file = %path, %branch, "ignoring unreadable report file: {source}");
            Ok(None)
        }
    }
}

/// The promotion evidence of `hosts` at the branch's tip: each host's installed record and
/// the incidents of its host report. Only the tip's tree is read (two files per host).
pub fn read_evidence(
    repo_path: &Path,
    branch: &str,
    hosts: &[String],
) -> Result<crate::plan::Evidence, ReportError> {
    if hosts.is_empty() {
        return Ok(crate::plan::Evidence::default());
    }
    let repo = Repository::open(repo_path).map_err(git_err(format!(
        "cannot open repository {}",
        repo_path.display()
    )))?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(crate::plan::Evidence::default());
    };
    evidence_at(&repo, &reference, branch, hosts)
}

/// Where a remote's reports branch is fetched to for reading promotion evidence (its own
/// ref: the API's snapshot reads and the writers' fetches never disturb it).
const EVIDENCE_TIP_REF: &str = "refs/patchkeeper/reports-evidence-tip";

/// Fetches `branch` from the remote `name_or_url` and reads the promotion evidence of
/// `hosts` at its tip (the remote has no such branch yet: empty evidence).
pub fn fetch_evidence(
    repo_path: &Path,
    name_or_url: &str,
    auth: &GitAuth,
    branch: &str,
    hosts: &[String],
) -> Result<crate::plan::Evidence, ReportError> {
    if hosts.is_empty() {
        return Ok(crate::plan::Evidence::default());
    }
    let repo = discover(repo_path)?;
    let Some(reference) = fetch_tip(&repo, name_or_url, auth, branch, EVIDENCE_TIP_REF)? else {
        return Ok(crate::plan::Evidence::default());
    };
    evidence_at(&repo, &reference, branch, hosts)
}

fn evidence_at(
    repo: &Repository,
    reference: &git2::Reference<'_>,
    branch: &str,
    hosts: &[String],
) -> Result<crate::plan::Evidence, ReportError> {
    let commit = reference
        .peel_to_commit()
        .map_err(git_err(format!("read branch {branch}")))?;
    let tree = commit.tree().map_err(git_err("read tree"))?;
    let mut read = Vec::new();
    for host in hosts {
        let record: Option<InstalledRecord> =
            read_json_file(repo, &tree, &format!("installed/{host}.json"), branch)?;
        let report: Option<HostReport> =
            read_json_file(repo, &tree, &format!("hosts/{host}.json"), branch)?;
        read.push((
            host.as_str(),
            record,
            report.map(|r| r.incidents).unwrap_or_default(),
        ));
    }
    Ok(super::evidence::evidence(
        read.iter().map(|(h, r, i)| (*h, r.as_ref(), i.as_slice())),
    ))
}

/// Where a remote's reports branch is fetched to for reading (private namespace, apart from
/// the writers' ref so a reader never disturbs a write in progress).
const READ_TIP_REF: &str = "refs/patchkeeper/reports-read-tip";

/// Fetches `branch` from the remote `name_or_url` into the private ref `into` (removed
/// first, so a stale value never passes for the remote's tip); `None`: the remote has no
/// such branch.
fn fetch_tip<'r>(
    repo: &'r Repository,
    name_or_url: &str,
    auth: &GitAuth,
    branch: &str,
    into: &str,
) -> Result<Option<git2::Reference<'r>>, ReportError> {
    if let Ok(mut r) = repo.find_reference(into) {
        r.delete()
            .map_err(git_err("cannot reset the read-tip ref"))?;
    }
    let mut remote = remote(repo, name_or_url).map_err(git_err(format!("remote {name_or_url}")))?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(open_remote_callbacks(auth));
    // Other fetches into this repository may run at once: leave FETCH_HEAD alone.
    fo.update_fetchhead(false);
    let spec = format!("+refs/heads/{branch}:{into}");
    remote
        .fetch(&[spec.as_str()], Some(&mut fo), None)
        .map_err(git_err(format!("fetch from {name_or_url}")))?;
    Ok(repo.find_reference(into).ok())
}

/// Fetches `branch` from the remote `name_or_url` and reads its tip (`Ok(None)`: the remote
/// has no such branch yet).
pub fn fetch_snapshot(
    repo_path: &Path,
    name_or_url: &str,
    auth: &GitAuth,
    branch: &str,
) -> Result<Option<Snapshot>, ReportError> {
    let repo = Repository::open(repo_path).map_err(git_err(format!(
        "cannot open repository {}",
        repo_path.display()
    )))?;
    let Some(reference) = fetch_tip(&repo, name_or_url, auth, branch, READ_TIP_REF)? else {
        return Ok(None);
    };
    snapshot_at(&repo, &reference, branch).map(Some)
}

/// Reads the branch's tip: summary, host files and run ids.
pub fn read_snapshot(repo_path: &Path, branch: &str) -> Result<Option<Snapshot>, ReportError> {
    let repo = discover(repo_path)?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(None);
    };
    snapshot_at(&repo, &reference, branch).map(Some)
}

fn snapshot_at(
    repo: &Repository,
    reference: &git2::Reference<'_>,
    branch: &str,
) -> Result<Snapshot, ReportError> {
    let commit = reference
        .peel_to_commit()
        .map_err(git_err(format!("read branch {branch}")))?;
    let tree = commit.tree().map_err(git_err("read tree"))?;
    let summary = match tree.get_name("summary.json") {
        Some(e) => {
            let blob = repo
                .find_blob(e.id())
                .map_err(git_err("read summary.json"))?;
            Some(
                serde_json::from_slice::<Summary>(blob.content()).map_err(|source| {
                    ReportError::Format {
                        branch: branch.to_owned(),
                        path: "summary.json".into(),
                        source,
                    }
                })?,
            )
        }
        None => None,
    };
    let hosts = read_host_files(repo, &tree, branch, false)?;
    let mut runs = Vec::new();
    if let Some(e) = tree.get_name("runs") {
        let t = repo.find_tree(e.id()).map_err(git_err("read runs/"))?;
        for r in t.iter() {
            if let Some(id) = r.name().ok().and_then(|n| n.strip_suffix(".json")) {
                runs.push(id.to_owned());
            }
        }
    }
    runs.sort();
    // The desired tip was rejected when the newest run is a validate run: the hosts are
    // still judged by the last good commit.
    let rejected = match runs.iter().rposition(|id| id.contains("-validate-")) {
        Some(i) => match read_run(repo, &tree, branch, &runs[i])? {
            // Still in force while every later run worked from the last good commit (a
            // new good commit taking over ends the rejection).
            Some(v) => {
                let mut superseded = false;
                for id in &runs[i + 1..] {
                    if let Some(r) = read_run(repo, &tree, branch, id)? {
                        superseded |=
                            Some(r.desired_commit.as_str()) != v.last_good_commit.as_deref();
                    }
                }
                (!superseded).then_some(v)
            }
            None => None,
        },
        None => None,
    };
    Ok(Snapshot {
        commit: commit.id().to_string(),
        summary,
        hosts,
        runs,
        rejected,
    })
}

/// Reads the run records `ids` from the branch's tip; ids without a file are left out.
pub fn read_runs(
    repo_path: &Path,
    branch: &str,
    ids: &[String],
) -> Result<Vec<super::RunRecord>, ReportError> {
    let repo = Repository::open(repo_path).map_err(git_err(format!(
        "cannot open repository {}",
        repo_path.display()
    )))?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(Vec::new());
    };
    let tree = reference
        .peel_to_commit()
        .and_then(|c| c.tree())
        .map_err(git_err(format!("read branch {branch}")))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(run) = read_run(&repo, &tree, branch, id)? {
            out.push(run);
        }
    }
    Ok(out)
}

/// `runs/<id>.json` of `tree`, when present.
fn read_run(
    repo: &Repository,
    tree: &Tree<'_>,
    branch: &str,
    id: &str,
) -> Result<Option<RunRecord>, ReportError> {
    let path = format!("runs/{id}.json");
    let Ok(entry) = tree.get_path(Path::new(&path)) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(git_err(format!("read {path}")))?;
    serde_json::from_slice(blob.content())
        .map(Some)
        .map_err(|source| ReportError::Format {
            branch: branch.to_owned(),
            path,
            source,
        })
}

/// The blob of `path` in `tree`, as text (lossy: the lists are ours and UTF-8).
fn text_at(repo: &Repository, tree: &Tree<'_>, path: &str) -> Result<Option<String>, ReportError> {
    let Ok(entry) = tree.get_path(Path::new(path)) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(git_err(format!("read {path}")))?;
    Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
}

/// Names of the `packages/*.txt` files of `tree`, by host.
fn package_files(repo: &Repository, tree: &Tree<'_>) -> Result<BTreeMap<String, Oid>, ReportError> {
    let Some(e) = tree.get_name("packages") else {
        return Ok(BTreeMap::new());
    };
    let t = repo.find_tree(e.id()).map_err(git_err("read packages/"))?;
    Ok(t.iter()
        .filter_map(|e| {
            let host = e.name().ok()?.strip_suffix(".txt")?.to_owned();
            Some((host, e.id()))
        })
        .collect())
}

/// See [`super::run_packages`].
pub fn run_packages(repo_path: &Path, branch: &str, id: &str) -> Result<RunLookup, ReportError> {
    let repo = discover(repo_path)?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(RunLookup::NoBranch);
    };
    let tip = reference
        .peel_to_commit()
        .map_err(git_err(format!("read branch {branch}")))?;
    let tip_tree = tip.tree().map_err(git_err("read tree"))?;
    let mut ids: Vec<String> = Vec::new();
    if let Some(e) = tip_tree.get_name("runs") {
        let t = repo.find_tree(e.id()).map_err(git_err("read runs/"))?;
        ids = t
            .iter()
            .filter_map(|r| r.name().ok()?.strip_suffix(".json").map(str::to_owned))
            .collect();
    }
    // Run ids start with their time, so sorting by id sorts by time.
    ids.sort_by(|a, b| b.cmp(a));
    let id = if ids.iter().any(|i| i == id) || id.is_empty() {
        id.to_owned()
    } else {
        let matches: Vec<String> = ids.iter().filter(|i| i.starts_with(id)).cloned().collect();
        match matches.len() {
            1 => matches[0].clone(),
            0 => id.to_owned(),
            _ => return Ok(RunLookup::Ambiguous { matches }),
        }
    };
    let path = format!("runs/{id}.json");
    // The commit that recorded the run: the newest on the first-parent history whose tree
    // has the run file while its parent's does not.
    let mut walk = repo.revwalk().map_err(git_err("walk the branch"))?;
    walk.push(tip.id()).map_err(git_err("walk the branch"))?;
    walk.simplify_first_parent()
        .map_err(git_err("walk the branch"))?;
    let has = |c: &git2::Commit<'_>| {
        c.tree()
            .ok()
            .is_some_and(|t| !id.is_empty() && t.get_path(Path::new(&path)).is_ok())
    };
    let mut found = None;
    for oid in walk {
        let oid = oid.map_err(git_err("walk the branch"))?;
        let c = repo.find_commit(oid).map_err(git_err("read commit"))?;
        if has(&c) && !c.parent(0).ok().is_some_and(|p| has(&p)) {
            found = Some(c);
            break;
        }
    }
    let Some(commit) = found else {
        ids.truncate(10);
        return Ok(RunLookup::Unknown { recent: ids });
    };
    let tree = commit.tree().map_err(git_err("read tree"))?;
    let Some(run) = read_run(&repo, &tree, branch, &id)? else {
        ids.truncate(10);
        return Ok(RunLookup::Unknown { recent: ids });
    };
    let parent = commit.parent(0).ok();
    let parent_tree = parent
        .as_ref()
        .map(|p| p.tree().map_err(git_err("read tree")))
        .transpose()?;
    let after_files = package_files(&repo, &tree)?;
    let before_files = match &parent_tree {
        Some(t) => package_files(&repo, t)?,
        None => BTreeMap::new(),
    };
    let mut names: std::collections::BTreeSet<String> =
        run.hosts.iter().map(|h| h.host.clone()).collect();
    for (host, oid) in &after_files {
        if before_files.get(host) != Some(oid) {
            names.insert(host.clone());
        }
    }
    for host in before_files.keys() {
        if !after_files.contains_key(host) {
            names.insert(host.clone());
        }
    }
    let mut hosts = Vec::new();
    for host in names {
        let file = format!("packages/{host}.txt");
        hosts.push(HostPackages {
            before: match &parent_tree {
                Some(t) => text_at(&repo, t, &file)?,
                None => None,
            },
            after: text_at(&repo, &tree, &file)?,
            host,
        });
    }
    Ok(RunLookup::Found(Box::new(RunPackages {
        run,
        commit: commit.id().to_string(),
        parent: parent.map(|p| p.id().to_string()),
        hosts,
    })))
}

/// One host's history on the branch: its run entries (from every run record at the tip)
/// and its state changes (from the commits that changed `hosts/<host>.json`), newest first,
/// since `since` when given. `Ok(None)` when the branch does not exist.
pub fn host_history(
    repo_path: &Path,
    branch: &str,
    host: &str,
    since: Option<Timestamp>,
) -> Result<Option<Vec<HistoryEntry>>, ReportError> {
    let repo = discover(repo_path)?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(None);
    };
    let tip = reference
        .peel_to_commit()
        .map_err(git_err(format!("read branch {branch}")))?;
    let tree = tip.tree().map_err(git_err("read tree"))?;
    let mut out = Vec::new();
    if let Some(e) = tree.get_name("runs") {
        let runs = repo.find_tree(e.id()).map_err(git_err("read runs/"))?;
        for r in runs.iter() {
            let Some(id) = r.name().ok().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Some(run) = read_run(&repo, &tree, branch, id)? else {
                continue;
            };
            if since.is_some_and(|s| run.finished_at < s) {
                continue;
            }
            let Some(h) = run.hosts.iter().find(|h| h.host == host) else {
                continue;
            };
            // An observation that found the host as before says nothing about it.
            if h.outcome == crate::compliance::HostRunOutcome::Unchanged && h.changes.is_empty() {
                continue;
            }
            out.push(HistoryEntry::Run {
                at: h.finished_at.unwrap_or(run.finished_at),
                run_id: run.run_id.clone(),
                kind: run.kind,
                host: h.clone(),
                applied_by: run.applied_by.clone(),
                requested_by: run.requested_by.clone(),
                overrides: run.overrides.clone(),
                desired_commit: run.desired_commit.clone(),
            });
        }
    }
    // State changes: each commit whose hosts/<host>.json differs from its first parent's.
    let path = format!("hosts/{host}.json");
    let mut walk = repo.revwalk().map_err(git_err("walk the branch"))?;
    walk.push(tip.id()).map_err(git_err("walk the branch"))?;
    walk.simplify_first_parent()
        .map_err(git_err("walk the branch"))?;
    let blob_at = |c: &git2::Commit<'_>| {
        c.tree()
            .ok()
            .and_then(|t| t.get_path(Path::new(&path)).ok().map(|e| e.id()))
    };
    for oid in walk {
        let oid = oid.map_err(git_err("walk the branch"))?;
        let c = repo.find_commit(oid).map_err(git_err("read commit"))?;
        let at = Timestamp::from_second(c.time().seconds()).unwrap_or(Timestamp::UNIX_EPOCH);
        if since.is_some_and(|s| at < s) {
            break;
        }
        let now = blob_at(&c);
        let before = c.parent(0).ok().and_then(|p| blob_at(&p));
        let (Some(id), true) = (now, now != before) else {
            continue;
        };
        let blob = repo
            .find_blob(id)
            .map_err(git_err(format!("read {path}")))?;
        match serde_json::from_slice::<HostReport>(blob.content()) {
            Ok(r) => out.push(HistoryEntry::State {
                at,
                commit: oid.to_string(),
                state: r.compliance.state,
                reasons: r.compliance.reasons,
                run_id: r.run_id,
            }),
            Err(e) => tracing::warn!(commit = %oid, "ignoring unreadable {path}: {e}"),
        }
    }
    // Newest first; at one instant, the state after the run that made it.
    out.sort_by(|a, b| b.at().cmp(&a.at()).then(a.order().cmp(&b.order())));
    Ok(Some(out))
}

/// The hosts per compliance state of every report commit on the branch's first-parent
/// history (its `summary.json`), oldest first, at most the newest `limit`. `Ok(None)` when
/// the branch does not exist. Commits without a readable summary are skipped.
pub fn state_history(
    repo_path: &Path,
    branch: &str,
    limit: usize,
) -> Result<Option<Vec<super::StatePoint>>, ReportError> {
    /// Only what the chart needs: the host list of a large fleet is skipped, not built.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counts {
        run_id: String,
        generated_at: Timestamp,
        counts: BTreeMap<crate::compliance::ComplianceState, usize>,
    }
    let repo = discover(repo_path)?;
    let Some(reference) = branch_or_tracking(&repo, branch)? else {
        return Ok(None);
    };
    let tip = reference
        .peel_to_commit()
        .map_err(git_err(format!("read branch {branch}")))?;
    let mut walk = repo.revwalk().map_err(git_err("walk the branch"))?;
    walk.push(tip.id()).map_err(git_err("walk the branch"))?;
    walk.simplify_first_parent()
        .map_err(git_err("walk the branch"))?;
    let mut out = Vec::new();
    for oid in walk {
        if out.len() >= limit {
            break;
        }
        let oid = oid.map_err(git_err("walk the branch"))?;
        let c = repo.find_commit(oid).map_err(git_err("read commit"))?;
        let tree = c.tree().map_err(git_err("read tree"))?;
        let Some(e) = tree.get_name("summary.json") else {
            continue;
        };
        let blob = repo
            .find_blob(e.id())
            .map_err(git_err("read summary.json"))?;
        if let Ok(s) = serde_json::from_slice::<Counts>(blob.content()) {
            out.push(super::StatePoint {
                commit: oid.to_string(),
                run_id: s.run_id,
                at: s.generated_at,
                counts: s.counts,
            });
        }
    }
    out.reverse();
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repo: &Path, remote: Option<&str>) -> ReportTarget {
        ReportTarget {
            heartbeat: std::time::Duration::from_secs(24 * 3600),
            fence: None,
            repo: repo.to_owned(),
            branch: "reports".into(),
            remote: remote.map(str::to_owned),
            auth: GitAuth::default(),
            author: ("t".into(), "t@example.com".into()),
            signing: None,
            refused: None,
        }
    }

    fn file(name: &str) -> Vec<(String, Vec<u8>)> {
        vec![(format!("runs/{name}.json"), b"{}\n".to_vec())]
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_795_000_000).expect("time")
    }

    /// Both writers read the same tip; the second to publish must be told, not win.
    fn race(ta: &ReportTarget, tb: &ReportTarget) -> (Oid, Oid) {
        let (wa, wb) = (Writer::open(ta).expect("a"), Writer::open(tb).expect("b"));
        let (base_a, base_b) = (wa.base().expect("base a"), wb.base().expect("base b"));
        assert_eq!(base_a, base_b);
        let ca = wa
            .commit(base_a.as_ref(), &file("a"), &[], None, "a", now())
            .expect("commit a");
        let cb = wb
            .commit(base_b.as_ref(), &file("b"), &[], None, "b", now())
            .expect("commit b");
        assert!(matches!(
            wa.publish(base_a.as_ref(), ca).expect("publish a"),
            Published::Done { .. }
        ));
        assert!(matches!(
            wb.publish(base_b.as_ref(), cb).expect("publish b"),
            Published::TipMoved
        ));
        // On the new tip, b succeeds and keeps a's file.
        let base = wb.base().expect("new base");
        assert_eq!(base, Some(ca));
        let cb2 = wb
            .commit(base.as_ref(), &file("b"), &[], None, "b", now())
            .expect("commit b again");
        assert!(matches!(
            wb.publish(base.as_ref(), cb2).expect("publish b again"),
            Published::Done { .. }
        ));
        (ca, cb2)
    }

    fn tip(repo: &Path) -> Oid {
        Repository::open(repo)
            .and_then(|r| r.refname_to_id("refs/heads/reports"))
            .expect("branch exists")
    }

    fn names(repo: &Path) -> Vec<String> {
        let r = Repository::open(repo).expect("open");
        let tree = r
            .find_commit(tip(repo))
            .and_then(|c| c.tree())
            .expect("tree");
        let runs = r
            .find_tree(tree.get_name("runs").expect("runs").id())
            .expect("runs tree");
        runs.iter()
            .map(|e| e.name().expect("utf-8").to_owned())
            .collect()
    }

    #[test]
    fn a_moved_local_tip_is_detected_by_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        Repository::init_bare(dir.path()).expect("init");
        let t = target(dir.path(), None);
        let (_, last) = race(&t, &t);
        assert_eq!(tip(dir.path()), last);
        assert_eq!(names(dir.path()), ["a.json", "b.json"]);
    }

    #[test]
    fn a_moved_remote_tip_is_detected_on_push() {
        let root = tempfile::tempdir().expect("tempdir");
        let bare = root.path().join("remote.git");
        Repository::init_bare(&bare).expect("init");
        for (name, url) in [
            ("a", bare.display().to_string()),
            ("b", format!("file://{}", bare.display())),
        ] {
            let r = Repository::init(root.path().join(name)).expect("init");
            r.remote("origin", &url).expect("remote");
        }
        let (ta, tb) = (
            target(&root.path().join("a"), Some("origin")),
            target(&root.path().join("b"), Some("origin")),
        );
        let (_, last) = race(&ta, &tb);
        assert_eq!(tip(&bare), last);
        assert_eq!(tip(&root.path().join("b")), last);
        assert_eq!(names(&bare), ["a.json", "b.json"]);
    }

    #[test]
    fn installed_records_are_written_kept_and_pruned_with_their_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        Repository::init_bare(dir.path()).expect("init");
        let t = target(dir.path(), None);
        let w = Writer::open(&t).expect("writer");
        let record = |host: &str| (format!("installed/{host}.json"), b"{}\n".to_vec());
        let step = |files: &[(String, Vec<u8>)], keep: &[String]| {
            let base = w.base().expect("base");
            let c = w
                .commit(base.as_ref(), files, &[], Some(keep), "r", now())
                .expect("commit");
            w.publish(base.as_ref(), c).expect("publish");
            w.base().expect("base")
        };
        let keep = |hs: &[&str]| hs.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        // The first record of a source is written (there was no installed/ yet).
        let tip = step(&[record("s1"), record("s2")], &keep(&["s1", "s2"]));
        assert!(w.has_file(tip.as_ref(), "installed/s1.json").unwrap());
        assert!(w.has_file(tip.as_ref(), "installed/s2.json").unwrap());
        // Unchanged records stay without being rewritten; a host no longer a source goes.
        let tip = step(&file("x"), &keep(&["s1"]));
        assert!(w.has_file(tip.as_ref(), "installed/s1.json").unwrap());
        assert!(!w.has_file(tip.as_ref(), "installed/s2.json").unwrap());
        // No source left: no installed/ directory either.
        let tip = step(&file("y"), &keep(&[]));
        assert!(!w.has_file(tip.as_ref(), "installed/s1.json").unwrap());
    }

    #[test]
    fn local_remote_paths() {
        assert_eq!(
            local_remote_path("file:///srv/fleet.git"),
            Some(PathBuf::from("/srv/fleet.git"))
        );
        assert_eq!(
            local_remote_path("/srv/fleet.git"),
            Some(PathBuf::from("/srv/fleet.git"))
        );
        assert_eq!(
            local_remote_path("../fleet.git"),
            Some(PathBuf::from("../fleet.git"))
        );
        assert_eq!(local_remote_path("ssh://git@host/fleet.git"), None);
        assert_eq!(local_remote_path("git@host:fleet.git"), None);
        assert_eq!(local_remote_path("https://host/fleet.git"), None);
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let auth = GitAuth {
            ssh_key: None,
            token: Some("s3cr3t".into()),
            user: None,
            token_host: None,
        };
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_token_goes_only_to_its_host_over_https() {
        let bound = GitAuth::default().for_source("https://git.example/fleet.git");
        let host = bound.token_host.as_deref();
        assert_eq!(host, Some("git.example:443"));
        token_allowed("https://git.example/fleet.git", host).unwrap();
        token_allowed("https://GIT.example:443/other.git", host).unwrap();
        for (url, why) in [
            ("http://git.example/fleet.git", "only over https"),
            ("https://evil.example/fleet.git", "bound to git.example:443"),
            (
                "https://git.example:8443/fleet.git",
                "bound to git.example:443",
            ),
            ("https://git.example.evil.example/x", "bound to"),
            ("ssh://git@git.example/fleet.git", "only over https"),
        ] {
            let e = token_allowed(url, host).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        // Not bound (CLI without PATCHKEEPER_GIT_TOKEN_HOST): sent nowhere.
        assert!(token_allowed("https://git.example/fleet.git", None).is_err());
        // An http:// source binds nothing.
        assert_eq!(
            GitAuth::default()
                .for_source("http://git.example/x")
                .token_host,
            None
        );
        // An explicit host:port binding; a URL's credentials are not echoed.
        token_allowed("https://h:8443/x", Some("h:8443")).unwrap();
        let e = token_allowed("http://u:pw@h/x", Some("h")).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
