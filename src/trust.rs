//! The controller's trust boundary: what a fleet repo may make the machine patchkeeper runs
//! on (the controller) do beyond reaching hosts over SSH. Writers of the fleet repo decide
//! what hosts get; they do not decide what the controller runs or reads. Two things need the
//! controller operator's opt-in, given by a flag or the environment, never by the repo:
//!
//! - running commands on the controller itself (hosts with `transport: local`, whose
//!   observation, package transactions and the rollout's pre/post/health commands run here):
//!   `--allow-local-commands` or `PATCHKEEPER_ALLOW_LOCAL_COMMANDS=1`;
//! - files the repo names (SSH identity files, known_hosts, the reports signing key, a local
//!   reports remote) outside the fleet repo itself: `--allow-path DIR` (repeatable) or
//!   `PATCHKEEPER_ALLOW_PATHS=DIR:DIR`. Paths are compared after resolving symlinks, so a
//!   link inside the repo does not lead out of it.
//!
//! The checks are pure functions of a [`ControllerTrust`]; the CLI installs the process's
//! value once ([`ControllerTrust::install`]), and the library reads it with
//! [`ControllerTrust::current`] (the environment when nothing was installed).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable that allows `transport: local` (`1`, `true` or `yes`).
pub const ALLOW_LOCAL_ENV: &str = "PATCHKEEPER_ALLOW_LOCAL_COMMANDS";
/// Environment variable listing extra directories the repo may name files in (`:`-separated).
pub const ALLOW_PATHS_ENV: &str = "PATCHKEEPER_ALLOW_PATHS";

/// The controller operator's opt-ins (default: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerTrust {
    /// Hosts with `transport: local` may run commands on this machine.
    pub local_commands: bool,
    /// Directories, besides the fleet repo, in which the repo may name files.
    pub allowed_paths: Vec<PathBuf>,
}

static INSTALLED: OnceLock<ControllerTrust> = OnceLock::new();

/// A boundary the fleet repo tried to cross without the controller's opt-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// `transport: local` without the opt-in.
    #[error("host {host} has `transport: local`, which runs the fleet repo's commands on this machine; refused unless this machine allows it (`--allow-local-commands` or {ALLOW_LOCAL_ENV}=1)")]
    LocalCommands {
        /// The inventory host.
        host: String,
    },
    /// An inventory command (an Inventory's `ansible.command`) without the opt-in.
    #[error("inventory `{document}` runs `{program}` on this machine to list its hosts; refused unless this machine allows it (`--allow-local-commands` or {ALLOW_LOCAL_ENV}=1)")]
    InventoryCommand {
        /// The Inventory document.
        document: String,
        /// The program.
        program: String,
    },
    /// A file outside the fleet repo and the allowed directories.
    #[error("{what} `{named}` is outside the fleet repo ({}); refused unless this machine allows its directory (`--allow-path DIR` or {ALLOW_PATHS_ENV})", resolved.display())]
    PathOutsideRoots {
        /// What the file is for (e.g. `ssh.identityFile of host web-1`).
        what: String,
        /// The path as the repo wrote it.
        named: String,
        /// Where it leads.
        resolved: PathBuf,
    },
}

fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
}

impl ControllerTrust {
    /// The opt-ins given in the environment.
    pub fn from_env() -> ControllerTrust {
        ControllerTrust {
            local_commands: std::env::var(ALLOW_LOCAL_ENV).is_ok_and(|v| truthy(&v)),
            allowed_paths: std::env::var_os(ALLOW_PATHS_ENV)
                .map(|v| {
                    std::env::split_paths(&v)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Makes `self` the process's trust (the CLI does this once, from its flags and the
    /// environment); later calls keep the first value.
    pub fn install(self) {
        let _ = INSTALLED.set(self);
    }

    /// The process's trust: what was installed, else the environment's.
    pub fn current() -> ControllerTrust {
        INSTALLED
            .get()
            .cloned()
            .unwrap_or_else(ControllerTrust::from_env)
    }

    /// Refuses `transport: local` for `host` unless allowed.
    pub fn check_local(&self, host: &str) -> Result<(), TrustError> {
        if self.local_commands {
            Ok(())
        } else {
            Err(TrustError::LocalCommands {
                host: host.to_owned(),
            })
        }
    }

    /// Refuses an Inventory's command source unless local commands are allowed.
    pub fn check_inventory_command(&self, document: &str, program: &str) -> Result<(), TrustError> {
        if self.local_commands {
            Ok(())
        } else {
            Err(TrustError::InventoryCommand {
                document: document.to_owned(),
                program: program.to_owned(),
            })
        }
    }

    /// Refuses `resolved` (the file the repo named as `named`) unless it lies inside
    /// `fleet_root` or an allowed directory, symlinks resolved.
    pub fn check_path(
        &self,
        fleet_root: &Path,
        what: &str,
        named: &str,
        resolved: &Path,
    ) -> Result<(), TrustError> {
        let real = real_path(resolved);
        let inside = std::iter::once(fleet_root)
            .chain(self.allowed_paths.iter().map(PathBuf::as_path))
            .map(real_path)
            .any(|root| real.starts_with(&root));
        if inside {
            Ok(())
        } else {
            Err(TrustError::PathOutsideRoots {
                what: what.to_owned(),
                named: named.to_owned(),
                resolved: real,
            })
        }
    }
}

/// `path` with symlinks resolved; for a file that does not exist yet (a known_hosts to be
/// created), its directory resolved and its name appended; else `path` made absolute
/// lexically (so `..` cannot climb out unseen).
fn real_path(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(dir) = std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        }) {
            return dir.join(name);
        }
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_commands_need_the_opt_in() {
        let none = ControllerTrust::default();
        let e = none.check_local("ctl").unwrap_err();
        assert!(e.to_string().contains("--allow-local-commands"), "{e}");
        let yes = ControllerTrust {
            local_commands: true,
            ..Default::default()
        };
        yes.check_local("ctl").unwrap();
    }

    #[test]
    fn paths_stay_inside_the_repo_or_allowed_dirs() {
        let repo = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join(".lab")).unwrap();
        std::fs::write(repo.path().join(".lab/key"), "k").unwrap();
        std::fs::write(other.path().join("key"), "k").unwrap();
        std::os::unix::fs::symlink(other.path().join("key"), repo.path().join("link")).unwrap();
        let none = ControllerTrust::default();
        let r = repo.path();
        none.check_path(r, "key", ".lab/key", &r.join(".lab/key"))
            .unwrap();
        // Not yet existing, inside: fine (known_hosts written by accept-new).
        none.check_path(r, "kh", "new", &r.join(".lab/new"))
            .unwrap();
        for (named, path) in [
            ("/etc/shadow", PathBuf::from("/etc/shadow")),
            ("../x/key", other.path().join("key")),
            ("link", r.join("link")),
            (".lab/../../key", r.join(".lab/../../key")),
        ] {
            let e = none
                .check_path(r, "ssh.identityFile", named, &path)
                .unwrap_err();
            assert!(matches!(e, TrustError::PathOutsideRoots { .. }), "{named}");
        }
        let allowed = ControllerTrust {
            allowed_paths: vec![other.path().to_path_buf()],
            ..Default::default()
        };
        allowed
            .check_path(r, "key", "link", &r.join("link"))
            .unwrap();
        allowed
            .check_path(r, "key", "x", &other.path().join("key"))
            .unwrap();
        assert!(allowed
            .check_path(r, "key", "/etc/shadow", Path::new("/etc/shadow"))
            .is_err());
    }
}
