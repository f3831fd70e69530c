//! The observed state of hosts: what `patchkeeper observe` learned, as plain serde data.
//!
//! This module knows nothing about SSH or shell output: the drivers fill these types in, the
//! planner reads them (possibly back from JSON, `observe --out`). Everything is deterministic
//! (sorted vectors, no maps with random order) because a plan records each host's
//! [`ObservedHost::fingerprint`] and `apply` refuses a host whose fingerprint moved.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;

pub use crate::model::PackageManager;

/// The observed state of a set of hosts at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservedFleet {
    /// When observation started (RFC 3339, UTC).
    pub observed_at: String,
    /// One entry per host, sorted by name.
    pub hosts: Vec<ObservedHost>,
}

impl ObservedFleet {
    /// Builds a fleet, sorting hosts by name so the JSON is stable.
    pub fn new(observed_at: String, mut hosts: Vec<ObservedHost>) -> ObservedFleet {
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        ObservedFleet { observed_at, hosts }
    }

    /// The host named `name`, if it was observed (or attempted).
    pub fn host(&self, name: &str) -> Option<&ObservedHost> {
        self.hosts
            .binary_search_by(|h| h.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.hosts[i])
    }

    /// This observation with the hosts of `newer` replacing theirs (hosts observed again
    /// after an apply changed them); `observed_at` stays this one's.
    pub fn merged(self, newer: ObservedFleet) -> ObservedFleet {
        let mut hosts: std::collections::BTreeMap<String, ObservedHost> = self
            .hosts
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect();
        for h in newer.hosts {
            hosts.insert(h.name.clone(), h);
        }
        ObservedFleet::new(self.observed_at, hosts.into_values().collect())
    }

    /// True when every host was reached and fully observed.
    pub fn all_observed(&self) -> bool {
        self.hosts.iter().all(|h| h.status.is_reachable())
    }
}

/// Everything learned about one host. When `status` is not `reachable`, the other fields
/// hold whatever was learned before the failure (often nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservedHost {
    /// Inventory name of the host.
    pub name: String,
    /// Whether the host was observed, and why not.
    pub status: HostStatus,
    /// `/etc/os-release` facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// Running kernel (`uname -r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The package manager the driver used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// Installed packages, sorted by name then architecture.
    #[serde(default)]
    pub installed: Vec<InstalledPackage>,
    /// Pending updates (what a full upgrade would install), sorted by name then architecture.
    #[serde(default)]
    pub updates: Vec<PendingUpdate>,
    /// Packages held back by the package manager (dpkg hold, dnf versionlock or exclude), sorted.
    #[serde(default)]
    pub held: Vec<String>,
    /// Upgradable packages the full upgrade keeps back (apt: a newer version exists, but
    /// installing it would move a held package or needs something unavailable), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_back: Vec<String>,
    /// Every version the repositories offer above the installed one, for the packages with
    /// a pending update (the candidate among them), sorted by name then architecture. A
    /// promoted baseline may install an older one than the candidate; empty in observations
    /// made before patchkeeper recorded it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<OfferedPackage>,
    /// When each installed package was installed, by the host's own clock, where the
    /// package database records it (rpm `%{INSTALLTIME}`; dpkg records no install time),
    /// sorted by name then architecture. Staged promotion reads it as evidence of when a
    /// version started running, within what observations prove (`report/evidence.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_times: Vec<InstallTime>,
    /// Updates the package manager holds back, with the version it would otherwise install:
    /// held packages (dpkg hold, dnf versionlock or `exclude=`) and what installing them
    /// would pull along (from a dry run that ignores holds), sorted by name then
    /// architecture. Never installed by patchkeeper; listed so nothing held is invisible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_updates: Vec<PendingUpdate>,
    /// Source packages of installed packages, where they differ from the package's own
    /// name or version (Debian `${source:Package}`/`${source:Version}`, binNMU suffixes
    /// stripped; rpm `%{SOURCERPM}`), sorted by package then architecture. Advisories name
    /// source packages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourcePackage>,
    /// Security advisories the package manager knows for pending and held updates (dnf
    /// updateinfo: id, severity, CVEs), sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<UpdateAdvisory>,
    /// Whether the host needs a reboot to run what is installed.
    #[serde(default)]
    pub reboot_required: RebootRequired,
    /// Who holds the package manager's lock, when someone does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager_locked: Option<LockHolder>,
    /// Packages left in a broken state by an interrupted transaction, sorted.
    #[serde(default)]
    pub db_health: Vec<BrokenPackage>,
    /// Problems that did not stop observation (e.g. index refresh failed), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The SSH algorithms negotiated (absent for the local transport or when never connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionInfo>,
}

/// SSH algorithms negotiated with a host (for audits and for benchmarking like with like).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Key exchange (e.g. `curve25519-sha256`).
    pub kex: String,
    /// Cipher.
    pub cipher: String,
    /// Host key algorithm.
    pub host_key: String,
}

impl ObservedHost {
    /// A host about which nothing is known yet.
    pub fn new(name: impl Into<String>, status: HostStatus) -> ObservedHost {
        ObservedHost {
            name: name.into(),
            status,
            os: None,
            kernel: None,
            boot_id: None,
            package_manager: None,
            installed: Vec::new(),
            updates: Vec::new(),
            held: Vec::new(),
            kept_back: Vec::new(),
            offered: Vec::new(),
            install_times: Vec::new(),
            held_updates: Vec::new(),
            sources: Vec::new(),
            advisories: Vec::new(),
            reboot_required: RebootRequired::default(),
            package_manager_locked: None,
            db_health: Vec::new(),
            warnings: Vec::new(),
            connection: None,
        }
    }

    /// Sorts every list so that equal states serialize identically.
    pub fn normalize(&mut self) {
        self.installed
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.updates
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        for u in &mut self.updates {
            u.advisories.sort();
            u.advisories.dedup();
        }
        self.held.sort();
        self.held.dedup();
        self.kept_back.sort();
        self.kept_back.dedup();
        self.offered
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.offered
            .dedup_by(|a, b| a.name == b.name && a.arch == b.arch);
        self.install_times
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.install_times
            .dedup_by(|a, b| a.name == b.name && a.arch == b.arch);
        self.held_updates
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.held_updates
            .dedup_by(|a, b| a.name == b.name && a.arch == b.arch);
        for u in &mut self.held_updates {
            u.advisories.sort();
            u.advisories.dedup();
        }
        self.sources
            .sort_by(|a, b| (&a.package, &a.arch).cmp(&(&b.package, &b.arch)));
        self.sources
            .dedup_by(|a, b| a.package == b.package && a.arch == b.arch);
        self.advisories.sort_by(|a, b| a.id.cmp(&b.id));
        self.advisories.dedup_by(|a, b| a.id == b.id);
        for a in &mut self.advisories {
            a.cves.sort();
            a.cves.dedup();
        }
        self.reboot_required.packages.sort();
        self.reboot_required.packages.dedup();
        self.db_health
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    }

    /// The installed package `name` (any architecture; the first by architecture order).
    pub fn installed_package(&self, name: &str) -> Option<&InstalledPackage> {
        self.installed.iter().find(|p| p.name == name)
    }

    /// The versions offered for `name` on `arch` (an entry recorded without an
    /// architecture matches any), when the observation recorded them.
    pub fn offered_versions(&self, name: &str, arch: &str) -> Option<&OfferedPackage> {
        let i = self.offered.partition_point(|p| p.name.as_str() < name);
        self.offered[i..]
            .iter()
            .take_while(|p| p.name == name)
            .find(|p| p.arch.is_empty() || p.arch == arch)
    }

    /// Every installed package with its source package and source version (as
    /// [`ObservedHost::source_of`], in one pass over both sorted lists).
    pub fn with_sources(&self) -> impl Iterator<Item = (&InstalledPackage, &str, &str)> {
        let mut sources = self.sources.iter().peekable();
        self.installed.iter().map(move |p| {
            let key = (p.name.as_str(), p.arch.as_str());
            while sources
                .peek()
                .is_some_and(|s| (s.package.as_str(), s.arch.as_str()) < key)
            {
                sources.next();
            }
            match sources.peek() {
                Some(s) if (s.package.as_str(), s.arch.as_str()) == key => {
                    (p, s.source.as_str(), s.version.as_str())
                }
                _ => (p, p.name.as_str(), p.version.as_str()),
            }
        })
    }

    /// The source package and source version `package` was built from: the recorded
    /// [`SourcePackage`] when there is one, else the package's own name and version.
    pub fn source_of<'a>(&'a self, package: &'a InstalledPackage) -> (&'a str, &'a str) {
        let i = self.sources.partition_point(|s| {
            (s.package.as_str(), s.arch.as_str()) < (package.name.as_str(), package.arch.as_str())
        });
        match self.sources.get(i) {
            Some(s) if s.package == package.name && s.arch == package.arch => {
                (s.source.as_str(), s.version.as_str())
            }
            _ => (package.name.as_str(), package.version.as_str()),
        }
    }

    /// SHA-256 (hex) of the state a plan depends on: installed packages, pending updates,
    /// holds and the boot id. A plan stores it; `apply` refuses a host whose value changed.
    pub fn fingerprint(&self) -> String {
        // Hashes the fields directly (length-prefixed, sorted) rather than a JSON rendering:
        // a plan over 10,000 hosts with 1,500 packages each computes 10,000 of these.
        fn put(h: &mut Sha256, s: &str) {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        let mut h = Sha256::new();
        put(&mut h, self.boot_id.as_deref().unwrap_or(""));
        let mut installed: Vec<_> = self.installed.iter().collect();
        installed.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        h.update((installed.len() as u64).to_le_bytes());
        for p in installed {
            for f in [&p.name, &p.version, &p.arch, &p.status] {
                put(&mut h, f);
            }
        }
        let mut updates: Vec<_> = self.updates.iter().collect();
        updates.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        h.update((updates.len() as u64).to_le_bytes());
        for u in updates {
            for f in [&u.name, &u.arch, &u.candidate_version, &u.origin] {
                put(&mut h, f);
            }
            put(&mut h, u.installed_version.as_deref().unwrap_or(""));
            h.update([u8::from(u.security)]);
            h.update((u.advisories.len() as u64).to_le_bytes());
            for a in &u.advisories {
                put(&mut h, a);
            }
        }
        let mut held: Vec<_> = self.held.iter().collect();
        held.sort();
        h.update((held.len() as u64).to_le_bytes());
        for p in held {
            put(&mut h, p);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether a host was observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum HostStatus {
    /// Connected and every observation step succeeded.
    Reachable,
    /// Could not connect or log in.
    Unreachable {
        /// Why.
        reason: FailureReason,
    },
    /// Connected, but observation failed.
    Error {
        /// Why.
        reason: FailureReason,
    },
}

impl HostStatus {
    /// True for [`HostStatus::Reachable`].
    pub fn is_reachable(&self) -> bool {
        matches!(self, HostStatus::Reachable)
    }

    /// The failure, when there is one.
    pub fn reason(&self) -> Option<&FailureReason> {
        match self {
            HostStatus::Reachable => None,
            HostStatus::Unreachable { reason } | HostStatus::Error { reason } => Some(reason),
        }
    }
}

/// Why a host could not be (fully) observed. `kind` is a stable kebab-case code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum FailureReason {
    /// The TCP connection was refused (nothing listening).
    Refused {
        /// Address and port tried.
        address: String,
    },
    /// The name does not resolve (DNS, `/etc/hosts`), or the resolver is unreachable.
    NameNotResolved {
        /// The name.
        name: String,
        /// The resolver's words.
        message: String,
    },
    /// No route to the address (network or host unreachable).
    NoRoute {
        /// Address and port tried.
        address: String,
        /// The system's words.
        message: String,
    },
    /// A deadline passed.
    Timeout {
        /// `connect`, `command` or `host` (the per-host overall deadline).
        phase: String,
        /// The deadline in seconds.
        seconds: u64,
        /// For `connect`: the address and the stage it stopped in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The server closed the connection before login completed.
    ConnectionClosed {
        /// The whole message (address, stage, likely causes).
        message: String,
    },
    /// Other network or protocol failure before login.
    Connection {
        /// The error.
        message: String,
    },
    /// The server rejected every credential offered.
    AuthFailed {
        /// Login user.
        user: String,
        /// What was offered (`key ~/.ssh/id_ed25519`, `agent`, ...).
        tried: Vec<String>,
        /// The methods the server accepts (`publickey`, `password`, ...).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accepted: Vec<String>,
    },
    /// The host key is not in known_hosts (policy `strict`).
    HostKeyUnknown {
        /// Key algorithm (e.g. `ssh-ed25519`).
        algorithm: String,
        /// `SHA256:...` fingerprint of the offered key, as OpenSSH prints it.
        fingerprint: String,
        /// The known_hosts file consulted.
        known_hosts: String,
    },
    /// The host key differs from the one recorded: possible man-in-the-middle.
    HostKeyMismatch {
        /// Key algorithm of the offered key.
        algorithm: String,
        /// `SHA256:...` fingerprint of the offered key.
        fingerprint: String,
        /// `SHA256:...` fingerprint of the recorded key.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        recorded_fingerprint: String,
        /// The known_hosts file consulted.
        known_hosts: String,
        /// 1-based line of the recorded key.
        line: usize,
    },
    /// The host's certificate is not vouched for by a trusted authority.
    HostCertificateInvalid {
        /// Why.
        reason: String,
    },
    /// A jump host could not open a connection to the next hop.
    ForwardFailed {
        /// `host:port` of the next hop.
        target: String,
        /// The jump host's reason.
        reason: String,
    },
    /// A jump host (`ProxyJump`) failed; `reason` says how.
    JumpHost {
        /// The hop as written and its address.
        jump: String,
        /// What happened there.
        reason: Box<FailureReason>,
    },
    /// A remote command exited non-zero.
    CommandFailed {
        /// What ran (a step name or command line).
        command: String,
        /// Exit status (`None` when killed by a signal).
        exit: Option<u32>,
        /// Its standard error (trimmed, at most a few KiB).
        stderr: String,
    },
    /// `sudo -n` needs a password or is not allowed.
    SudoFailed {
        /// sudo's message.
        stderr: String,
    },
    /// The OS has no driver.
    UnsupportedOs {
        /// `ID` from os-release (or `unknown`).
        id: String,
        /// `ID_LIKE` from os-release.
        id_like: String,
    },
    /// The OS family is supported but the expected tools are missing.
    MissingTool {
        /// The tool (e.g. `dpkg-query`).
        tool: String,
    },
    /// Output that could not be understood.
    Parse {
        /// What was being read.
        what: String,
        /// Why it did not parse.
        message: String,
    },
    /// The observed package manager is not the one the inventory declares.
    PackageManagerMismatch {
        /// From the inventory.
        expected: PackageManager,
        /// Observed.
        found: PackageManager,
    },
    /// A command printed more than patchkeeper keeps of one command's output; it was
    /// stopped (a broken or hostile host cannot exhaust the controller's memory).
    OutputTooLarge {
        /// What ran.
        command: String,
        /// The cap, in MiB.
        limit_mib: u64,
    },
    /// `serve --cluster`: no replica returned the host's observation (the replicas that
    /// took it died, or the round's time ran out).
    NotObserved {
        /// Why.
        message: String,
    },
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureReason::Refused { address } => write!(f, "connection refused by {address}"),
            FailureReason::NameNotResolved { name, message } => {
                write!(f, "name `{name}` not resolved: {message}")
            }
            FailureReason::NoRoute { address, message } => {
                write!(f, "no route to {address}: {message}")
            }
            FailureReason::Timeout {
                phase,
                seconds,
                detail,
            } => {
                write!(f, "{phase} timed out after {seconds}s")?;
                if let Some(d) = detail {
                    write!(f, " ({d})")?;
                }
                Ok(())
            }
            FailureReason::ConnectionClosed { message } => f.write_str(message),
            FailureReason::NotObserved { message } => f.write_str(message),
            FailureReason::HostCertificateInvalid { reason } => {
                write!(f, "host certificate is not valid: {reason}")
            }
            FailureReason::JumpHost { jump, reason } => write!(f, "jump host {jump}: {reason}"),
            FailureReason::ForwardFailed { target, reason } => {
                write!(f, "could not open a connection to {target}: {reason}")
            }
            FailureReason::Connection { message } => write!(f, "connection failed: {message}"),
            FailureReason::AuthFailed {
                user,
                tried,
                accepted,
            } => {
                write!(f, "authentication failed for user {user}")?;
                if tried.is_empty() {
                    write!(f, " (no credentials available")?;
                } else {
                    write!(f, " (tried {}", tried.join(", "))?;
                }
                if !accepted.is_empty() {
                    write!(f, "; the server accepts {}", accepted.join(", "))?;
                }
                f.write_str(")")
            }
            FailureReason::HostKeyUnknown {
                algorithm,
                fingerprint,
                known_hosts,
            } => write!(
                f,
                "host key is not known: {algorithm} key fingerprint is {fingerprint} (not in {known_hosts})"
            ),
            FailureReason::HostKeyMismatch {
                algorithm,
                fingerprint,
                recorded_fingerprint,
                known_hosts,
                line,
            } => {
                write!(f, "host key has changed: the host offers {algorithm} {fingerprint}, {known_hosts}:{line} records ")?;
                if recorded_fingerprint.is_empty() {
                    f.write_str("another")
                } else {
                    f.write_str(recorded_fingerprint)
                }
            }
            FailureReason::CommandFailed {
                command,
                exit,
                stderr,
            } => {
                match exit {
                    Some(code) => write!(f, "`{command}` exited with {code}")?,
                    None => write!(f, "`{command}` was killed")?,
                }
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            FailureReason::SudoFailed { stderr } => write!(f, "sudo -n failed: {stderr}"),
            FailureReason::UnsupportedOs { id, id_like } => {
                write!(f, "unsupported OS `{id}`")?;
                if !id_like.is_empty() {
                    write!(f, " (like `{id_like}`)")?;
                }
                Ok(())
            }
            FailureReason::MissingTool { tool } => write!(f, "`{tool}` is not installed"),
            FailureReason::Parse { what, message } => write!(f, "cannot read {what}: {message}"),
            FailureReason::OutputTooLarge { command, limit_mib } => write!(
                f,
                "`{command}` printed more than {limit_mib} MiB of output, the limit per command; it was stopped"
            ),
            FailureReason::PackageManagerMismatch { expected, found } => write!(
                f,
                "inventory says {} but the host uses {}",
                pm_name(*expected),
                pm_name(*found)
            ),
        }
    }
}

/// `apt` or `dnf`.
pub fn pm_name(pm: PackageManager) -> &'static str {
    match pm {
        PackageManager::Apt => "apt",
        PackageManager::Dnf => "dnf",
    }
}

/// OS facts from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OsInfo {
    /// `ID` (e.g. `debian`, `rocky`).
    pub id: String,
    /// `VERSION_ID` (e.g. `12`), empty on rolling releases.
    pub version_id: String,
    /// `ID_LIKE` words followed by `ID` (e.g. `rhel centos fedora rocky`).
    pub family: Vec<String>,
    /// `PRETTY_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// `VERSION_CODENAME` (e.g. `bookworm`), when the OS sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstalledPackage {
    /// Package name (without `:arch`).
    pub name: SmolStr,
    /// Exact version in the ecosystem's syntax, with the epoch when there is one
    /// (`1:2.38.1-5+deb12u3`, `1:3.0.7-27.el9`).
    pub version: SmolStr,
    /// Architecture (`amd64`, `all`, `x86_64`, `noarch`).
    pub arch: SmolStr,
    /// dpkg's status abbreviation (`ii`, `hi`, ...) or `installed` for rpm.
    pub status: SmolStr,
}

/// An update the package manager would install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PendingUpdate {
    /// Package name.
    pub name: String,
    /// Architecture of the candidate.
    pub arch: String,
    /// Installed version; absent when the upgrade pulls in a new package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    /// The version that would be installed.
    pub candidate_version: String,
    /// Where it comes from: apt origins (`Debian-Security:12/bookworm-security`) or the dnf repo id.
    pub origin: String,
    /// True when it comes from a security origin (apt) or has a security advisory (dnf).
    pub security: bool,
    /// Advisory ids (dnf updateinfo), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}

/// When a package version was installed, as the host's package database records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallTime {
    /// Package name.
    pub name: SmolStr,
    /// Architecture.
    pub arch: SmolStr,
    /// The installed version.
    pub version: SmolStr,
    /// When it was installed (the host's clock).
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
}

/// The versions the repositories offer for one package, above the installed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OfferedPackage {
    /// Package name.
    pub name: String,
    /// Architecture (empty: the host's own, as apt names it without one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arch: String,
    /// Every version offered above the installed one, newest first.
    pub versions: Vec<OfferedVersion>,
}

/// One version a repository offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OfferedVersion {
    /// Exact version (with the epoch when there is one).
    pub version: String,
    /// Where it comes from: apt archives (`bookworm-security/main`), or the dnf repo id.
    pub origin: String,
    /// From a security origin (apt) or named by a security advisory (dnf).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub security: bool,
}

/// The source package an installed package was built from (kept only where it differs from
/// the package's own name or version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourcePackage {
    /// The installed (binary) package.
    pub package: SmolStr,
    /// Its architecture.
    pub arch: SmolStr,
    /// The source package name (`util-linux` for `bsdutils`, `openssl` for `openssl-libs`).
    pub source: SmolStr,
    /// The source version: without a binNMU suffix (`+bN`) on Debian, where the binary may
    /// also carry another epoch (`bsdutils 1:2.38.1-5` from `util-linux 2.38.1-5`).
    pub version: SmolStr,
}

/// A security advisory the host's package manager knows (dnf updateinfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateAdvisory {
    /// Advisory id (`RHSA-2024:1234`, `ALSA-2024:1234`).
    pub id: String,
    /// The vendor's severity as written (`Critical`, `Important`, `Moderate`, `Low`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// CVE ids it fixes, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// When it was issued or last updated, as the package manager prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// What the package manager says a transaction would do, from a dry run on the host
/// (`apt-get -s install`, `dnf --assumeno install`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionPreview {
    /// Packages installed, upgraded or downgraded, with the version they would get.
    pub installs: Vec<PendingUpdate>,
    /// Packages the transaction would remove.
    pub removals: Vec<String>,
}

/// Whether a reboot is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RebootRequired {
    /// True when the host says it needs a reboot.
    pub required: bool,
    /// Packages that asked for it (`/run/reboot-required.pkgs`, or the newer kernel), sorted.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A process holding the package manager's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LockHolder {
    /// The lock file.
    pub path: String,
    /// The holder's pid, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The holder's command name (`/proc/PID/comm`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is locked", self.path)?;
        match (&self.pid, &self.process) {
            (Some(pid), Some(p)) => write!(f, " by pid {pid} ({p})"),
            (Some(pid), None) => write!(f, " by pid {pid}"),
            _ => Ok(()),
        }
    }
}

/// A package an interrupted transaction left half-done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BrokenPackage {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version recorded.
    pub version: String,
    /// dpkg: `half-installed`, `half-configured`, `unpacked`, `triggers-awaited`,
    /// `triggers-pending` or `reinst-required`; rpm: `duplicate` (an older version still
    /// recorded next to a newer one).
    pub state: String,
}

/// File name of the observed-state schema in `schemas/`.
pub const SCHEMA_FILE: &str = "observed.schema.json";

/// The JSON Schema of [`ObservedFleet`] (`schemas/observed.schema.json`), titled.
pub fn json_schema() -> serde_json::Value {
    let mut value = schemars::schema_for!(ObservedFleet).to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), serde_json::json!("ObservedFleet"));
    }
    value
}

/// [`json_schema`] as the pretty JSON text of the checked-in file.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("schemas always serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            status: "ii".into(),
        }
    }

    fn host() -> ObservedHost {
        let mut h = ObservedHost::new("web-1", HostStatus::Reachable);
        h.boot_id = Some("b1".into());
        h.installed = vec![pkg("bash", "5.2.15-2+b8"), pkg("apt", "2.6.1")];
        h
    }

    #[test]
    fn merged_replaces_only_the_hosts_observed_again() {
        let mut a = host();
        a.name = "a".into();
        let mut b = host();
        b.name = "b".into();
        let before = ObservedFleet::new("2026-11-30T20:00:00Z".into(), vec![a.clone(), b]);
        let b_later = ObservedHost::new(
            "b",
            HostStatus::Error {
                reason: FailureReason::Refused {
                    address: "127.0.0.1:22".into(),
                },
            },
        );
        let again = ObservedFleet::new("2026-11-30T20:05:00Z".into(), vec![b_later.clone()]);
        let merged = before.merged(again);
        assert_eq!(merged.observed_at, "2026-11-30T20:00:00Z");
        assert_eq!(merged.hosts, vec![a, b_later]);
    }

    #[test]
    fn fingerprint_ignores_order_and_unrelated_fields() {
        let a = host();
        let mut b = host();
        b.installed.reverse();
        b.kernel = Some("6.1.0".into());
        b.warnings.push("something".into());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn fingerprint_changes_with_versions_holds_and_boot() {
        let a = host();
        let mut b = host();
        b.installed[0].version = "5.2.15-2+b13".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = host();
        c.held.push("bash".into());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = host();
        d.boot_id = Some("b2".into());
        assert_ne!(a.fingerprint(), d.fingerprint());
    }

    #[test]
    fn json_round_trips_with_tagged_reasons() {
        let mut h = ObservedHost::new(
            "db-1",
            HostStatus::Unreachable {
                reason: FailureReason::HostKeyMismatch {
                    algorithm: "ssh-ed25519".into(),
                    fingerprint: "SHA256:abc".into(),
                    recorded_fingerprint: "SHA256:def".into(),
                    known_hosts: "/k".into(),
                    line: 3,
                },
            },
        );
        h.normalize();
        let fleet = ObservedFleet::new("2026-11-25T12:00:00Z".into(), vec![host(), h]);
        let json = serde_json::to_value(&fleet).unwrap();
        assert_eq!(json["hosts"][0]["name"], "db-1");
        assert_eq!(json["hosts"][0]["status"]["state"], "unreachable");
        assert_eq!(
            json["hosts"][0]["status"]["reason"]["kind"],
            "host-key-mismatch"
        );
        assert_eq!(json["hosts"][0]["status"]["reason"]["knownHosts"], "/k");
        let back: ObservedFleet = serde_json::from_value(json).unwrap();
        assert_eq!(back, fleet);
        assert!(back.host("web-1").is_some());
        assert!(!back.all_observed());
    }

    #[test]
    fn checked_in_schema_matches_the_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/observed.schema.json");
        let generated = schema_text();
        if std::env::var_os("PATCHKEEPER_UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")).unwrap();
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "schemas/observed.schema.json is stale: run with PATCHKEEPER_UPDATE_SCHEMAS=1"
        );
    }
}
