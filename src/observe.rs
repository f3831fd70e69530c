//! Observing many hosts at once: resolving each host's connection settings from the fleet
//! repo, then connecting and running the driver with bounded concurrency.
//!
//! Guarantees: every selected host gets exactly one [`ObservedHost`] in the result, whatever
//! happens to it (refused, timed out, bad host key, broken package database); one host's
//! failure never stops or delays another beyond the shared concurrency limit; each host has
//! an overall deadline covering connect, observation and close; connections are closed
//! before the function returns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::driver::{self, ObserveOptions};
use crate::duration::parse_duration;
use crate::model::{Host, PackageManager, SettingsSpec, SshSettings, TransportKind};
use crate::observed::{ConnectionInfo, FailureReason, HostStatus, ObservedFleet, ObservedHost};
use crate::ssh_target::SshConfigs;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{KeyCache, SshOptions, SshTransport};
use crate::transport::Transport;
use crate::trust::ControllerTrust;

/// Hosts observed at once when neither `--parallel` nor Settings say.
pub const DEFAULT_PARALLEL: usize = 50;

/// Errors that stop an observation run before any host is contacted.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A duration setting does not parse.
    #[error("host {host}: {field}: {source}")]
    Duration {
        /// The host whose effective settings hold it.
        host: String,
        /// The setting (e.g. `ssh.connectTimeout`).
        field: &'static str,
        /// Why.
        #[source]
        source: crate::duration::DurationError,
    },
    /// The fleet repo asks for something this machine does not allow.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    /// The host's SSH settings or ssh_config file cannot be used.
    #[error(transparent)]
    Target(#[from] crate::ssh_target::TargetError),
    /// `--hosts` is malformed.
    #[error("invalid host selector `{selector}`: {message}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// Why.
        message: String,
    },
}

/// How to reach one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Connect {
    /// Over SSH.
    Ssh(Box<SshOptions>),
    /// On this machine.
    Local {
        /// Escalate with `sudo -n`.
        sudo: bool,
    },
}

/// One host to observe, with everything needed to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Inventory name.
    pub name: String,
    /// How to reach it.
    pub connect: Connect,
    /// Driver options (refresh, command deadline, expected package manager).
    pub options: ObserveOptions,
}

/// Fleet-wide options of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Hosts observed at once.
    pub parallel: usize,
    /// Deadline for one host: connect, observe and close.
    pub host_timeout: Duration,
}

impl RunOptions {
    /// From Settings' `observe` (duration already validated by `validate`).
    pub fn from_settings(
        settings: &SettingsSpec,
        parallel: Option<usize>,
    ) -> Result<RunOptions, ObserveError> {
        let host_timeout = duration_or(
            &settings.observe.host_timeout,
            "5m",
            "fleet",
            "observe.hostTimeout",
        )?;
        Ok(RunOptions {
            parallel: parallel.unwrap_or_else(|| parallel_setting(settings)),
            host_timeout,
        }
        .at_least_one())
    }

    fn at_least_one(mut self) -> RunOptions {
        self.parallel = self.parallel.max(1);
        self
    }
}

/// Hosts observed at once by Settings' `observe.parallel` (default [`DEFAULT_PARALLEL`]),
/// at least 1.
pub fn parallel_setting(settings: &SettingsSpec) -> usize {
    settings
        .observe
        .parallel
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(DEFAULT_PARALLEL)
        .max(1)
}

fn duration_or(
    value: &Option<String>,
    default: &str,
    host: &str,
    field: &'static str,
) -> Result<Duration, ObserveError> {
    parse_duration(value.as_deref().unwrap_or(default)).map_err(|source| ObserveError::Duration {
        host: host.to_string(),
        field,
        source,
    })
}

/// Host settings override fleet settings field by field.
fn merge_ssh(fleet: &SshSettings, host: Option<&SshSettings>) -> SshSettings {
    let Some(h) = host else {
        return fleet.clone();
    };
    SshSettings {
        user: h.user.clone().or_else(|| fleet.user.clone()),
        port: h.port.or(fleet.port),
        identity_file: h
            .identity_file
            .clone()
            .or_else(|| fleet.identity_file.clone()),
        use_agent: h.use_agent.or(fleet.use_agent),
        known_hosts: h.known_hosts.clone().or_else(|| fleet.known_hosts.clone()),
        host_key_policy: h.host_key_policy.or(fleet.host_key_policy),
        sudo: h.sudo.or(fleet.sudo),
        connect_timeout: h
            .connect_timeout
            .clone()
            .or_else(|| fleet.connect_timeout.clone()),
        command_timeout: h
            .command_timeout
            .clone()
            .or_else(|| fleet.command_timeout.clone()),
        keepalive_interval: h
            .keepalive_interval
            .clone()
            .or_else(|| fleet.keepalive_interval.clone()),
        kex_algorithms: h
            .kex_algorithms
            .clone()
            .or_else(|| fleet.kex_algorithms.clone()),
        ciphers: h.ciphers.clone().or_else(|| fleet.ciphers.clone()),
        config_file: h.config_file.clone().or_else(|| fleet.config_file.clone()),
        proxy_jump: h.proxy_jump.clone().or_else(|| fleet.proxy_jump.clone()),
    }
}

/// Resolves a host's effective settings into a [`Target`].
///
/// The controller's trust ([`ControllerTrust::current`]) is enforced here: `transport:
/// local` and key or known_hosts files outside the fleet repo need the operator's opt-in.
pub fn target_for(
    repo: &Path,
    settings: &SettingsSpec,
    host: &Host,
    refresh: Option<bool>,
) -> Result<Target, ObserveError> {
    target_with_trust(repo, settings, host, refresh, &ControllerTrust::current())
}

/// [`target_for`] under an explicit trust.
pub fn target_with_trust(
    repo: &Path,
    settings: &SettingsSpec,
    host: &Host,
    refresh: Option<bool>,
    trust: &ControllerTrust,
) -> Result<Target, ObserveError> {
    let ssh = merge_ssh(&settings.ssh, host.ssh.as_ref());
    let name = host.name.as_str();
    let command_timeout = duration_or(&ssh.command_timeout, "10m", name, "ssh.commandTimeout")?;
    let options = ObserveOptions {
        refresh: refresh.or(settings.observe.refresh).unwrap_or(true),
        command_timeout,
        expected: host.package_manager,
    };
    let sudo = ssh.sudo.unwrap_or(false);
    let connect = match host.transport.unwrap_or_default() {
        TransportKind::Local => {
            trust.check_local(name)?;
            Connect::Local { sudo }
        }
        TransportKind::Ssh => {
            // Settings, inventory and the OpenSSH client configuration; files the repo names
            // (in Settings or in its ssh_config file) must lie inside it or where this
            // machine allows.
            let configs = SshConfigs::load(repo, &ssh, name, trust)?;
            let request = crate::ssh_target::Request {
                repo,
                host: name,
                destination: host.address.as_deref().unwrap_or(name),
                fleet: &settings.ssh,
                merged: &ssh,
                trust,
            };
            Connect::Ssh(Box::new(crate::ssh_target::ssh_options(
                &request, &configs,
            )?))
        }
    };
    Ok(Target {
        name: host.name.clone(),
        connect,
        options,
    })
}

/// A `--hosts` selector: comma-separated terms, each a host name or glob (`web-*`),
/// `group:NAME`, or `label:KEY=VALUE`. A host is picked when it matches any name or group
/// term (or there is none) and every label term.
#[derive(Debug, Clone, Default)]
pub struct HostSelector {
    names: Vec<globset::GlobMatcher>,
    groups: Vec<String>,
    labels: Vec<(String, String)>,
}

impl HostSelector {
    /// Parses a selector.
    pub fn parse(selector: &str) -> Result<HostSelector, ObserveError> {
        let err = |message: String| ObserveError::Selector {
            selector: selector.to_string(),
            message,
        };
        let mut s = HostSelector::default();
        for term in selector.split(',').map(str::trim) {
            if term.is_empty() {
                return Err(err("empty term".into()));
            }
            if let Some(group) = term.strip_prefix("group:") {
                if group.is_empty() {
                    return Err(err(format!("`{term}`: expected group:NAME")));
                }
                s.groups.push(group.to_string());
            } else if let Some(label) = term.strip_prefix("label:") {
                let (k, v) = label
                    .split_once('=')
                    .ok_or_else(|| err(format!("`{term}`: expected label:KEY=VALUE")))?;
                s.labels.push((k.to_string(), v.to_string()));
            } else if let Some((prefix, _)) = term.split_once(':') {
                // Host names never hold a `:`: this is a mistyped prefix, not a name.
                let guess = ["group", "label"]
                    .into_iter()
                    .map(|p| (strsim::levenshtein(p, &prefix.to_ascii_lowercase()), p))
                    .filter(|(d, _)| *d <= 2)
                    .min_by_key(|(d, _)| *d)
                    .map(|(_, p)| format!("did you mean `{p}:`? "))
                    .unwrap_or_default();
                return Err(err(format!(
                    "`{term}`: unknown prefix `{prefix}:` ({guess}terms are host names or globs, `group:NAME` or `label:KEY=VALUE`)"
                )));
            } else {
                let glob = globset::Glob::new(term).map_err(|e| err(format!("`{term}`: {e}")))?;
                s.names.push(glob.compile_matcher());
            }
        }
        Ok(s)
    }

    /// Exactly the hosts named (no glob syntax); `None` for no name (an empty selector
    /// would pick every host).
    pub fn exactly<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<HostSelector> {
        let names: Vec<globset::GlobMatcher> = names
            .into_iter()
            // An escaped name is a literal glob, which always compiles.
            .filter_map(|n| globset::Glob::new(&globset::escape(n)).ok())
            .map(|g| g.compile_matcher())
            .collect();
        if names.is_empty() {
            return None;
        }
        Some(HostSelector {
            names,
            groups: Vec::new(),
            labels: Vec::new(),
        })
    }

    /// Whether `host` is picked.
    pub fn matches(&self, host: &Host) -> bool {
        let by_name_or_group = (self.names.is_empty() && self.groups.is_empty())
            || self.names.iter().any(|g| g.is_match(&host.name))
            || self.groups.iter().any(|g| host.groups.contains(g));
        by_name_or_group
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
    }
}

/// Opens a connection to one host (SSH, or a local shell).
pub async fn connect(
    target: &Target,
    keys: &KeyCache,
) -> Result<Box<dyn Transport>, crate::transport::TransportError> {
    Ok(match &target.connect {
        Connect::Local { sudo } => Box::new(LocalTransport::new(*sudo)),
        Connect::Ssh(options) => Box::new(SshTransport::connect(options, keys).await?),
    })
}

/// Connects to one host and observes it; never fails: failures become the host's status.
pub async fn observe_one(target: &Target, keys: &KeyCache) -> ObservedHost {
    let transport = match connect(target, keys).await {
        Ok(t) => t,
        Err(err) => {
            tracing::info!(host = %target.name, "cannot connect: {err}");
            let mut host = ObservedHost::new(
                &target.name,
                HostStatus::Unreachable {
                    reason: driver::transport_failure(&err),
                },
            );
            host.normalize();
            return host;
        }
    };
    let mut host = driver::observe_host(&target.name, transport.as_ref(), &target.options).await;
    host.connection = transport.negotiated().map(|n| ConnectionInfo {
        kex: n.kex,
        cipher: n.cipher,
        host_key: n.host_key,
    });
    transport.close().await;
    host
}

/// Observes every target with at most `options.parallel` at once; `on_done` is called
/// as each host finishes (for a progress bar). Hosts come back sorted by name.
pub async fn observe_all(
    targets: Vec<Target>,
    options: &RunOptions,
    on_done: impl Fn(&ObservedHost) + Send + Sync + 'static,
) -> ObservedFleet {
    let observed_at = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let semaphore = Arc::new(Semaphore::new(options.parallel));
    let keys = Arc::new(KeyCache::new());
    let on_done = Arc::new(on_done);
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = Vec::with_capacity(targets.len());
    for target in targets {
        names.push(target.name.clone());
        let semaphore = semaphore.clone();
        let keys = keys.clone();
        let on_done = on_done.clone();
        let host_timeout = options.host_timeout;
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let host = match tokio::time::timeout(host_timeout, observe_one(&target, &keys)).await {
                Ok(host) => host,
                Err(_) => {
                    let mut host = ObservedHost::new(
                        &target.name,
                        HostStatus::Error {
                            reason: FailureReason::Timeout {
                                phase: "host".into(),
                                seconds: host_timeout.as_secs(),
                                detail: None,
                            },
                        },
                    );
                    host.normalize();
                    host
                }
            };
            on_done(&host);
            host
        });
    }
    let mut hosts = Vec::with_capacity(names.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(host) => hosts.push(host),
            // A panic in one host's task is a bug; it still must not lose the host.
            Err(e) => tracing::error!("observation task failed: {e}"),
        }
    }
    for name in names {
        if !hosts.iter().any(|h| h.name == name) {
            hosts.push(ObservedHost::new(
                &name,
                HostStatus::Error {
                    reason: FailureReason::Connection {
                        message: "internal error: the observation task panicked".into(),
                    },
                },
            ));
        }
    }
    ObservedFleet::new(observed_at, hosts)
}

/// Short status text for tables: `ok`, `ok (dpkg locked by pid 812 unattended-upgr)`,
/// `unreachable: connection refused by 127.0.0.1:2201`...
pub fn status_text(host: &ObservedHost) -> String {
    match &host.status {
        HostStatus::Reachable => match &host.package_manager_locked {
            Some(lock) => {
                let tool = match host.package_manager {
                    Some(PackageManager::Dnf) => "rpm",
                    _ => "dpkg",
                };
                let by = match (&lock.pid, &lock.process) {
                    (Some(pid), Some(p)) => format!(" by pid {pid} ({p})"),
                    (Some(pid), None) => format!(" by pid {pid}"),
                    _ => String::new(),
                };
                format!("ok, {tool} locked{by}")
            }
            // An interrupted transaction blocks every plan for the host: say it here.
            None if !host.db_health.is_empty() => {
                let broken: Vec<String> = host
                    .db_health
                    .iter()
                    .take(3)
                    .map(|b| format!("{} {}", b.name, b.state))
                    .collect();
                let more = host.db_health.len().saturating_sub(broken.len());
                format!(
                    "ok, package database unfinished: {}{}",
                    broken.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
            None if !host.warnings.is_empty() => format!("ok, {} warning(s)", host.warnings.len()),
            None => "ok".into(),
        },
        HostStatus::Unreachable { reason } => format!("unreachable: {reason}"),
        HostStatus::Error { reason } => format!("error: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn host(name: &str, groups: &[&str], labels: &[(&str, &str)]) -> Host {
        Host {
            name: name.into(),
            address: None,
            transport: None,
            package_manager: None,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ssh: None,
        }
    }

    #[test]
    fn exactly_picks_the_named_hosts_literally_and_never_everyone() {
        let sel = HostSelector::exactly(["web-[1]", "db-1"]).expect("two names");
        assert!(sel.matches(&host("db-1", &[], &[])));
        assert!(sel.matches(&host("web-[1]", &[], &[])));
        assert!(!sel.matches(&host("web-1", &[], &[])), "no glob syntax");
        assert!(!sel.matches(&host("db-2", &[], &[])));
        assert!(HostSelector::exactly([]).is_none());
    }

    #[test]
    fn status_names_an_unfinished_package_database() {
        let mut h = ObservedHost::new("rpm-1", HostStatus::Reachable);
        assert_eq!(status_text(&h), "ok");
        h.warnings.push("dnf check: something".into());
        assert_eq!(status_text(&h), "ok, 1 warning(s)");
        h.db_health.push(crate::observed::BrokenPackage {
            name: "pk-kernel".into(),
            arch: "noarch".into(),
            version: "1.0-1".into(),
            state: "duplicate".into(),
        });
        assert_eq!(
            status_text(&h),
            "ok, package database unfinished: pk-kernel duplicate"
        );
    }

    #[test]
    fn selectors() {
        let web1 = host("web-1", &["frontend"], &[("env", "prod")]);
        let db1 = host("db-1", &["databases"], &[("env", "staging")]);
        let s = HostSelector::parse("web-*").unwrap();
        assert!(s.matches(&web1) && !s.matches(&db1));
        let s = HostSelector::parse("group:databases").unwrap();
        assert!(!s.matches(&web1) && s.matches(&db1));
        let s = HostSelector::parse("web-1,db-1,label:env=prod").unwrap();
        assert!(s.matches(&web1) && !s.matches(&db1));
        assert!(HostSelector::parse("label:env").is_err());
        assert!(HostSelector::parse("a,,b").is_err());
        let message = |s: &str| HostSelector::parse(s).expect_err(s).to_string();
        assert_eq!(
            message("groups:rpm"),
            "invalid host selector `groups:rpm`: `groups:rpm`: unknown prefix `groups:` (did you mean `group:`? terms are host names or globs, `group:NAME` or `label:KEY=VALUE`)"
        );
        assert_eq!(
            message("web-1,Labels:env=prod"),
            "invalid host selector `web-1,Labels:env=prod`: `Labels:env=prod`: unknown prefix `Labels:` (did you mean `label:`? terms are host names or globs, `group:NAME` or `label:KEY=VALUE`)"
        );
        assert_eq!(
            message("role:db"),
            "invalid host selector `role:db`: `role:db`: unknown prefix `role:` (terms are host names or globs, `group:NAME` or `label:KEY=VALUE`)"
        );
        assert!(HostSelector::parse("group:").is_err());
    }

    #[test]
    fn host_settings_override_fleet_settings() {
        let mut settings = SettingsSpec::default();
        settings.ssh.user = Some("ops".into());
        settings.ssh.port = Some(2222);
        settings.ssh.identity_file = Some("keys/id".into());
        settings.ssh.known_hosts = Some("known_hosts".into());
        settings.observe.refresh = Some(false);
        let mut h = host("web-1", &[], &[]);
        h.address = Some("10.0.0.5".into());
        h.package_manager = Some(PackageManager::Apt);
        h.ssh = Some(SshSettings {
            port: Some(2200),
            sudo: Some(true),
            connect_timeout: Some("3s".into()),
            ..SshSettings::default()
        });
        let t = target_for(Path::new("/repo"), &settings, &h, None).unwrap();
        let Connect::Ssh(o) = &t.connect else {
            panic!("ssh expected")
        };
        assert_eq!(
            (o.address.as_str(), o.port, o.user.as_str()),
            ("10.0.0.5", 2200, "ops")
        );
        assert_eq!(o.identity_files, [PathBuf::from("/repo/keys/id")]);
        assert!(!o.use_agent);
        assert_eq!(o.known_hosts, PathBuf::from("/repo/known_hosts"));
        assert!(o.sudo);
        assert_eq!(o.connect_timeout, Duration::from_secs(3));
        assert!(!t.options.refresh);
        assert_eq!(t.options.expected, Some(PackageManager::Apt));
        let t = target_for(Path::new("/repo"), &settings, &h, Some(true)).unwrap();
        assert!(t.options.refresh);
    }

    #[test]
    fn the_repo_cannot_name_files_outside_it_or_run_local_commands() {
        let none = ControllerTrust::default();
        let mut settings = SettingsSpec::default();
        settings.ssh.identity_file = Some("/root/.ssh/id_ed25519".into());
        let h = host("web-1", &[], &[]);
        let e = target_with_trust(Path::new("/repo"), &settings, &h, None, &none).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "ssh.identityFile of host web-1 `/root/.ssh/id_ed25519` is outside the fleet repo"
            ),
            "{e}"
        );
        settings.ssh.identity_file = None;
        settings.ssh.known_hosts = Some("../elsewhere/known_hosts".into());
        assert!(target_with_trust(Path::new("/repo"), &settings, &h, None, &none).is_err());
        // The defaults (nothing named) are the controller's own choice: allowed.
        settings.ssh.known_hosts = None;
        target_with_trust(Path::new("/repo"), &settings, &h, None, &none).unwrap();
        let mut local = host("ctl", &[], &[]);
        local.transport = Some(TransportKind::Local);
        let e = target_with_trust(Path::new("/repo"), &settings, &local, None, &none).unwrap_err();
        assert!(e.to_string().contains("transport: local"), "{e}");
    }

    #[tokio::test]
    async fn refused_and_local_hosts_in_one_run() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = SettingsSpec::default();
        let mut down = host("down", &[], &[]);
        down.address = Some("127.0.0.1".into());
        down.ssh = Some(SshSettings {
            port: Some(port),
            ..SshSettings::default()
        });
        let mut local = host("local", &[], &[]);
        local.transport = Some(TransportKind::Local);
        let targets = vec![
            target_for(Path::new("/"), &settings, &down, Some(false)).unwrap(),
            target_with_trust(
                Path::new("/"),
                &settings,
                &local,
                Some(false),
                &ControllerTrust {
                    local_commands: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        ];
        let options = RunOptions {
            parallel: 2,
            host_timeout: Duration::from_secs(120),
        };
        let fleet = observe_all(targets, &options, |_| {}).await;
        assert_eq!(fleet.hosts.len(), 2);
        let down = fleet.host("down").unwrap();
        assert!(
            matches!(&down.status, HostStatus::Unreachable { reason: FailureReason::Refused { address } } if *address == format!("127.0.0.1:{port}")),
            "{:?}",
            down.status
        );
        // This machine is Debian: the local transport observes it for real.
        let local = fleet.host("local").unwrap();
        assert_eq!(local.status, HostStatus::Reachable, "{:?}", local.status);
        assert!(local.installed_package("dpkg").is_some());
        assert!(local.connection.is_none());
    }
}
