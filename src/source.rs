//! The fleet repo as a Git source for `serve`: a local repository or a remote URL
//! (`file://`, `ssh://` with a key and `~/.ssh/known_hosts`, `https://` with a token from
//! the environment), fetched with git2 into a cache and materialized at an exact commit
//! into a plain directory that [`crate::validate::load_and_validate`] reads.
//!
//! Every plan, run and report names the commit returned here, never "whatever is checked
//! out": the directory holds exactly that commit's tree.

use std::path::{Path, PathBuf};

use git2::{Direction, ErrorCode, FetchOptions, ObjectType, Oid, Repository};

use crate::report::{open_remote_callbacks, GitAuth};

/// Errors of the Git source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A git operation failed.
    #[error("fleet repo {location}: {what}: {}", source.message())]
    Git {
        /// The source location.
        location: String,
        /// What was being done.
        what: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// Writing the checkout failed.
    #[error("fleet repo {location}: cannot write {path}: {source}")]
    Io {
        /// The source location.
        location: String,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The branch does not exist.
    #[error("fleet repo {location}: branch `{branch}` not found")]
    NoBranch {
        /// The source location.
        location: String,
        /// The branch.
        branch: String,
    },
}

/// Where the fleet repo comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine (with or without a working tree).
    Local(PathBuf),
    /// A URL fetched into the cache.
    Remote(String),
}

impl Location {
    /// `file://`, `ssh://`, `https://`, `git://` and scp-like `user@host:path` are remote;
    /// anything else is a local path.
    pub fn parse(s: &str) -> Location {
        let scp_like = !s.contains("://")
            && s.split_once(':')
                .is_some_and(|(host, _)| !host.contains('/') && host.contains('@'));
        if s.contains("://") || scp_like {
            Location::Remote(s.to_owned())
        } else {
            Location::Local(PathBuf::from(s))
        }
    }
}

/// Shown with any credentials in the URL redacted ([`crate::redact`]).
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote(u) => f.write_str(&crate::redact::text(u)),
        }
    }
}

/// A fleet repo source with its cache.
#[derive(Debug, Clone)]
pub struct Source {
    location: Location,
    branch: Option<String>,
    cache: PathBuf,
    auth: GitAuth,
}

/// Where a commit was materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit (hex).
    pub commit: String,
    /// A directory holding exactly that commit's files.
    pub dir: PathBuf,
}

impl Source {
    /// A source tracking `branch` (default: the remote's default branch, or the local
    /// repository's `HEAD`), caching under `cache`.
    pub fn new(location: Location, branch: Option<String>, cache: &Path, auth: GitAuth) -> Source {
        Source {
            location,
            branch,
            cache: cache.to_owned(),
            auth,
        }
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(git2::Error) -> SourceError {
        let location = self.location.to_string();
        let what = what.into();
        move |source| SourceError::Git {
            location,
            what,
            source: crate::report::annotate(source),
        }
    }

    /// The credentials the source fetches with (the token bound to its own host).
    pub fn auth(&self) -> &GitAuth {
        &self.auth
    }

    /// Where the source is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The tracked branch's name: the one given, else the local repository's `HEAD` branch
    /// or the remote's default branch.
    pub fn branch_name(&self) -> Result<String, SourceError> {
        if let Some(b) = &self.branch {
            return Ok(b.clone());
        }
        let repo = self.repo()?;
        match &self.location {
            Location::Local(_) => {
                let head = repo.head().map_err(self.err("read HEAD"))?;
                head.shorthand()
                    .ok()
                    .map(str::to_owned)
                    .ok_or_else(|| SourceError::NoBranch {
                        location: self.location.to_string(),
                        branch: "HEAD".into(),
                    })
            }
            Location::Remote(url) => {
                let mut remote = repo.remote_anonymous(url).map_err(self.err("remote"))?;
                remote
                    .connect_auth(
                        Direction::Fetch,
                        Some(open_remote_callbacks(&self.auth)),
                        None,
                    )
                    .map_err(self.err("connect"))?;
                let head = remote
                    .default_branch()
                    .map_err(self.err("read default branch"))?;
                let head = head.as_str().unwrap_or("refs/heads/main").to_owned();
                remote.disconnect().map_err(self.err("disconnect"))?;
                Ok(head.trim_start_matches("refs/heads/").to_owned())
            }
        }
    }

    /// Opens the repository commits are read from and written to: the local one, or the
    /// cache's bare mirror of a remote (created when missing).
    pub fn open(&self) -> Result<Repository, SourceError> {
        self.repo()
    }

    /// The Git repository holding the fetched objects (the local repository, or the
    /// cache's bare mirror of a remote): where `serve` commits reports before pushing.
    pub fn repo_path(&self) -> PathBuf {
        match &self.location {
            Location::Local(p) => p.clone(),
            Location::Remote(url) => self.cache.join("mirror").join(cache_key(url)),
        }
    }

    /// The repository objects are read from: the local one, or the cache's bare mirror.
    fn repo(&self) -> Result<Repository, SourceError> {
        match &self.location {
            Location::Local(p) => Repository::open(p).map_err(self.err("open")),
            Location::Remote(_) => {
                let dir = self.repo_path();
                match Repository::open_bare(&dir) {
                    Ok(r) => Ok(r),
                    Err(_) => {
                        std::fs::create_dir_all(&dir).map_err(|source| SourceError::Io {
                            location: self.location.to_string(),
                            path: dir.clone(),
                            source,
                        })?;
                        Repository::init_bare(&dir).map_err(self.err("create cache"))
                    }
                }
            }
        }
    }

    /// Fetches (remote sources) and returns the tracked branch's tip commit.
    pub fn fetch(&self) -> Result<String, SourceError> {
        let repo = self.repo()?;
        let oid = match &self.location {
            Location::Local(_) => match &self.branch {
                Some(b) => repo
                    .find_reference(&format!("refs/heads/{b}"))
                    .and_then(|r| r.peel_to_commit())
                    .map(|c| c.id())
                    .map_err(|e| self.missing_branch(b, e))?,
                None => repo
                    .head()
                    .and_then(|h| h.peel_to_commit())
                    .map(|c| c.id())
                    .map_err(self.err("read HEAD"))?,
            },
            Location::Remote(url) => {
                let mut remote = repo.remote_anonymous(url).map_err(self.err("remote"))?;
                let branch = match &self.branch {
                    Some(b) => b.clone(),
                    None => {
                        remote
                            .connect_auth(
                                Direction::Fetch,
                                Some(open_remote_callbacks(&self.auth)),
                                None,
                            )
                            .map_err(self.err("connect"))?;
                        let head = remote
                            .default_branch()
                            .map_err(self.err("read default branch"))?;
                        let head = head.as_str().unwrap_or("refs/heads/main").to_owned();
                        remote.disconnect().map_err(self.err("disconnect"))?;
                        head.trim_start_matches("refs/heads/").to_owned()
                    }
                };
                let tracking = format!("refs/patchkeeper/source/{branch}");
                let mut fo = FetchOptions::new();
                fo.remote_callbacks(open_remote_callbacks(&self.auth));
                let spec = format!("+refs/heads/{branch}:{tracking}");
                remote
                    .fetch(&[spec.as_str()], Some(&mut fo), None)
                    .map_err(self.err("fetch"))?;
                repo.refname_to_id(&tracking)
                    .map_err(|e| self.missing_branch(&branch, e))?
            }
        };
        Ok(oid.to_string())
    }

    fn missing_branch(&self, branch: &str, e: git2::Error) -> SourceError {
        if e.code() == ErrorCode::NotFound {
            SourceError::NoBranch {
                location: self.location.to_string(),
                branch: branch.to_owned(),
            }
        } else {
            self.err(format!("read branch {branch}"))(e)
        }
    }

    /// Materializes `commit` (as returned by [`Source::fetch`]) under the cache
    /// (`checkouts/<sha>`), reusing a complete earlier checkout. The directory is written
    /// under a temporary name and renamed, so a crash never leaves a half checkout behind.
    pub fn checkout(&self, commit: &str) -> Result<Checkout, SourceError> {
        let repo = self.repo()?;
        let oid = Oid::from_str(commit).map_err(self.err(format!("commit id {commit}")))?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(self.err(format!("read commit {commit}")))?;
        let root = self.cache.join("checkouts");
        let dir = root.join(oid.to_string());
        if dir.is_dir() {
            return Ok(Checkout {
                commit: oid.to_string(),
                dir,
            });
        }
        let io = |path: &Path| {
            let location = self.location.to_string();
            let path = path.to_owned();
            move |source| SourceError::Io {
                location,
                path,
                source,
            }
        };
        let tmp = root.join(format!(".{oid}.{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        self.write_tree(&repo, &tree, &tmp)?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            // Another process finished the same checkout first: theirs is as good.
            Err(_) if dir.is_dir() => {
                std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        Ok(Checkout {
            commit: oid.to_string(),
            dir,
        })
    }

    fn write_tree(
        &self,
        repo: &Repository,
        tree: &git2::Tree<'_>,
        dir: &Path,
    ) -> Result<(), SourceError> {
        use std::os::unix::fs::PermissionsExt;
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            // Names come from the repository: refuse anything that would leave `dir`.
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                continue;
            }
            let path = dir.join(name);
            let io = |source| SourceError::Io {
                location: self.location.to_string(),
                path: path.clone(),
                source,
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    std::fs::create_dir(&path).map_err(io)?;
                    let sub = repo.find_tree(entry.id()).map_err(self.err("read tree"))?;
                    self.write_tree(repo, &sub, &path)?;
                }
                Some(ObjectType::Blob) => {
                    let blob = repo.find_blob(entry.id()).map_err(self.err("read blob"))?;
                    match entry.filemode() {
                        // Symlinks are not followed into or out of the fleet repo: skipped.
                        0o120000 => {}
                        mode => {
                            std::fs::write(&path, blob.content()).map_err(io)?;
                            if mode == 0o100755 {
                                std::fs::set_permissions(
                                    &path,
                                    std::fs::Permissions::from_mode(0o755),
                                )
                                .map_err(|source| {
                                    SourceError::Io {
                                        location: self.location.to_string(),
                                        path: path.clone(),
                                        source,
                                    }
                                })?;
                            }
                        }
                    }
                }
                // Submodules are not part of the desired state.
                _ => {}
            }
        }
        Ok(())
    }
}

/// A file-system-safe cache directory name for a URL (credentials never appear in it).
fn cache_key(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(url.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("/srv/fleet"),
            Location::Local("/srv/fleet".into())
        );
        assert_eq!(Location::parse("fleet"), Location::Local("fleet".into()));
        assert_eq!(
            Location::parse("file:///srv/fleet.git"),
            Location::Remote("file:///srv/fleet.git".into())
        );
        assert_eq!(
            Location::parse("ssh://git@host/fleet.git"),
            Location::Remote("ssh://git@host/fleet.git".into())
        );
        assert_eq!(
            Location::parse("git@host:fleet.git"),
            Location::Remote("git@host:fleet.git".into())
        );
        assert_eq!(
            Location::parse("https://host/fleet.git"),
            Location::Remote("https://host/fleet.git".into())
        );
    }

    #[test]
    fn cache_keys_are_stable_and_distinct() {
        assert_eq!(cache_key("file:///a"), cache_key("file:///a"));
        assert_ne!(cache_key("file:///a"), cache_key("file:///b"));
        assert_eq!(cache_key("https://user:token@host/x").len(), 24);
    }
}
