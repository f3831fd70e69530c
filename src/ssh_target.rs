//! How to reach a host over SSH: the fleet repo's Settings and inventory merged with the
//! OpenSSH client configuration into [`SshOptions`], jump hosts included.
//!
//! Precedence, for the host itself: the inventory host's `ssh`, then Settings' `ssh`, then
//! the ssh_config file looked up by the host's `address` (else its name, as `ssh ADDRESS`
//! and Ansible's `ansible_host` do), then patchkeeper's defaults. For a jump host (which
//! the inventory does not describe): the `ProxyJump` hop's own `user@` and `:port`, then
//! the ssh_config file looked up by the hop's name, then Settings, then the defaults.
//!
//! Which file: Settings' `ssh.configFile` (the fleet repo's: it and every file it includes or
//! names — identities, certificates, known_hosts — must lie inside the repo or a directory the
//! controller allows), else `PATCHKEEPER_SSH_CONFIG` (the operator's), else the operator's
//! `~/.ssh/config` and `/etc/ssh/ssh_config`, as `ssh` reads them. `none` reads nothing.
//! Knows nothing of packages or observation; reads files, contacts nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::model::{HostKeyPolicy, SshSettings};
use crate::transport::ssh::{default_identity_files, JumpHost, SshOptions};
use crate::transport::ssh_config::{
    self, ConfigFile, Context, LoadOptions, Resolved, SshConfigError, StrictHostKeyChecking, Tokens,
};
use crate::trust::{ControllerTrust, TrustError};

/// Environment variable naming the operator's ssh_config file (or `none`) when the fleet
/// repo names none.
pub const SSH_CONFIG_ENV: &str = "PATCHKEEPER_SSH_CONFIG";

/// Errors turning a host's settings into SSH options.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A duration setting does not parse.
    #[error("host {host}: {field}: {source}")]
    Duration {
        /// The host.
        host: String,
        /// The setting.
        field: &'static str,
        /// Why.
        #[source]
        source: crate::duration::DurationError,
    },
    /// The ssh_config file is wrong, or asks for what patchkeeper does not do.
    #[error("host {host}: {source}")]
    Config {
        /// The host.
        host: String,
        /// What.
        #[source]
        source: SshConfigError,
    },
    /// A value (a path token, a ProxyJump list) cannot be used.
    #[error("host {host}: {message}")]
    Value {
        /// The host.
        host: String,
        /// What.
        message: String,
    },
    /// The fleet repo asks for a file this machine does not allow.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// The ssh_config files for a run, and whether the fleet repo wrote them (then every file
/// they name is checked against the controller's trust).
#[derive(Debug, Clone)]
pub struct SshConfigs {
    files: Vec<ConfigFile>,
    from_repo: bool,
}

impl SshConfigs {
    /// No configuration.
    pub fn none() -> SshConfigs {
        SshConfigs {
            files: Vec::new(),
            from_repo: false,
        }
    }

    /// Reads the configuration `settings` name (see the module doc), checking the repo's
    /// files against `trust`.
    pub fn load(
        repo: &Path,
        settings: &SshSettings,
        host: &str,
        trust: &ControllerTrust,
    ) -> Result<SshConfigs, TargetError> {
        let home = home();
        let config_err = |source| TargetError::Config {
            host: host.to_owned(),
            source,
        };
        if let Some(named) = &settings.config_file {
            if named == "none" {
                return Ok(SshConfigs::none());
            }
            let path = resolve_repo_path(repo, named, &home);
            trust.check_path(
                repo,
                &format!("ssh.configFile of host {host}"),
                named,
                &path,
            )?;
            let check = |p: &Path| {
                trust
                    .check_path(
                        repo,
                        &format!("a file included by ssh.configFile `{named}`"),
                        &p.display().to_string(),
                        p,
                    )
                    .map_err(|e| e.to_string())
            };
            let file = ssh_config::load(
                &path,
                &LoadOptions {
                    home: &home,
                    user_config: true,
                    check: &check,
                },
            )
            .map_err(config_err)?;
            return Ok(SshConfigs {
                files: vec![file],
                from_repo: true,
            });
        }
        let allow = |_: &Path| Ok(());
        let operator = std::env::var_os(SSH_CONFIG_ENV).filter(|v| !v.is_empty());
        let mut files = Vec::new();
        match operator {
            Some(v) if v == "none" => {}
            Some(v) => files.push(
                ssh_config::load(
                    Path::new(&v),
                    &LoadOptions {
                        home: &home,
                        user_config: true,
                        check: &allow,
                    },
                )
                .map_err(config_err)?,
            ),
            None => {
                for (path, user_config) in [
                    (home.join(".ssh/config"), true),
                    (PathBuf::from("/etc/ssh/ssh_config"), false),
                ] {
                    if !path.is_file() {
                        continue;
                    }
                    files.push(
                        ssh_config::load(
                            &path,
                            &LoadOptions {
                                home: &home,
                                user_config,
                                check: &allow,
                            },
                        )
                        .map_err(config_err)?,
                    );
                }
            }
        }
        Ok(SshConfigs {
            files,
            from_repo: false,
        })
    }

    fn resolve(&self, host: &str, destination: &str) -> Result<Resolved, TargetError> {
        ssh_config::resolve(&self.files, destination, &Context::current()).map_err(|source| {
            TargetError::Config {
                host: host.to_owned(),
                source,
            }
        })
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `~/` expanded, relative paths relative to the fleet repo.
pub fn resolve_repo_path(repo: &Path, path: &str, home: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        return home.join(rest);
    }
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        repo.join(p)
    }
}

/// Everything needed to resolve one host.
pub struct Request<'a> {
    /// The fleet repo root.
    pub repo: &'a Path,
    /// The inventory name.
    pub host: &'a str,
    /// What `ssh` would be given: the inventory address, else the name.
    pub destination: &'a str,
    /// Settings' `ssh` (fleet-wide), for jump hosts' fallbacks.
    pub fleet: &'a SshSettings,
    /// Settings' `ssh` overlaid with the host's own.
    pub merged: &'a SshSettings,
    /// The controller's opt-ins.
    pub trust: &'a ControllerTrust,
}

/// Jump chains longer than this are refused (a `ProxyJump` loop in the configuration).
const MAX_JUMPS: usize = 8;

/// The host's SSH options, jump hosts resolved.
pub fn ssh_options(req: &Request<'_>, configs: &SshConfigs) -> Result<SshOptions, TargetError> {
    let cfg = configs.resolve(req.host, req.destination)?;
    let home = home();
    let s = req.merged;
    let address = cfg
        .hostname
        .as_ref()
        .map(|h| h.value.clone())
        .unwrap_or_else(|| req.destination.to_owned());
    let port = s.port.or(cfg.port.as_ref().map(|p| p.value)).unwrap_or(22);
    let user = s
        .user
        .clone()
        .or(cfg.user.as_ref().map(|u| u.value.clone()))
        .unwrap_or_else(|| "root".into());
    let mut options = hop_options(
        req,
        configs,
        &cfg,
        Hop {
            address,
            port,
            user,
            settings: s,
            settings_first: true,
        },
        &home,
    )?;
    options.sudo = s.sudo.unwrap_or(false);
    // Jumps: explicit proxyJump, else the file's ProxyJump; a ProxyCommand cannot be run.
    let jump_value = match &s.proxy_jump {
        Some(j) => Some(j.clone()),
        None => {
            if let Some(cmd) = &cfg.proxy_command {
                return Err(TargetError::Config {
                    host: req.host.to_owned(),
                    source: SshConfigError::Unsupported {
                        origin: cmd.origin.clone(),
                        what: "ProxyCommand".into(),
                        hint: "; use ProxyJump (ssh.proxyJump or the ssh_config file)".into(),
                    },
                });
            }
            cfg.proxy_jump.as_ref().map(|j| j.value.clone())
        }
    };
    if let Some(value) = jump_value {
        options.jumps = jump_chain(req, configs, &value, &home, 0)?;
    }
    Ok(options)
}

struct Hop<'a> {
    address: String,
    port: u16,
    user: String,
    /// Settings that apply to this hop.
    settings: &'a SshSettings,
    /// Settings win over the file (the host itself) or only fill in (a jump host).
    settings_first: bool,
}

/// The options of one hop from its ssh_config answer and Settings, files checked.
fn hop_options(
    req: &Request<'_>,
    configs: &SshConfigs,
    cfg: &Resolved,
    hop: Hop<'_>,
    home: &Path,
) -> Result<SshOptions, TargetError> {
    let s = hop.settings;
    let name = req.host;
    let local_user = Context::current().local_user;
    let tokens = Tokens {
        home,
        local_user: &local_user,
        hostname: &hop.address,
        original_host: req.destination,
        remote_user: &hop.user,
        port: hop.port,
    };
    // A path the file names, expanded; checked when the repo wrote the file.
    let file_path = |value: &ssh_config::Valued<String>, what: &str| {
        let path = ssh_config::expand_path(&value.value, &tokens).map_err(|message| {
            TargetError::Value {
                host: name.to_owned(),
                message: format!("{}: {message}", value.origin),
            }
        })?;
        if configs.from_repo {
            req.trust.check_path(
                req.repo,
                &format!("{what} of host {name} ({})", value.origin),
                &value.value,
                &path,
            )?;
        }
        Ok::<PathBuf, TargetError>(path)
    };
    // A path Settings name: relative to the repo, inside it unless allowed.
    let settings_path = |field: &str, named: &str| {
        let path = resolve_repo_path(req.repo, named, home);
        req.trust
            .check_path(req.repo, &format!("{field} of host {name}"), named, &path)?;
        Ok::<PathBuf, TargetError>(path)
    };

    let cfg_identities = cfg
        .identity_files
        .iter()
        .map(|v| file_path(v, "IdentityFile"))
        .collect::<Result<Vec<_>, _>>()?;
    let settings_identity = s
        .identity_file
        .as_deref()
        .map(|f| settings_path("ssh.identityFile", f))
        .transpose()?;
    let cfg_identities = (!cfg_identities.is_empty()).then_some(cfg_identities);
    let settings_identities = settings_identity.map(|f| vec![f]);
    let from_settings = match hop.settings_first {
        true => settings_identities.is_some(),
        false => cfg_identities.is_none() && settings_identities.is_some(),
    };
    let identity_files = pick(settings_identities, cfg_identities, hop.settings_first)
        .unwrap_or_else(default_identity_files);
    // As before the ssh_config file: a key named in Settings is offered alone; otherwise the
    // agent too, unless the file says IdentitiesOnly or IdentityAgent none.
    let agent_off = cfg.identities_only.as_ref().is_some_and(|v| v.value)
        || cfg
            .identity_agent
            .as_ref()
            .is_some_and(|v| v.value.eq_ignore_ascii_case("none"));
    let use_agent = s.use_agent.unwrap_or(!from_settings && !agent_off);

    let certificate_files = cfg
        .certificate_files
        .iter()
        .map(|v| file_path(v, "CertificateFile"))
        .collect::<Result<Vec<_>, _>>()?;

    let settings_known = s
        .known_hosts
        .as_deref()
        .map(|f| settings_path("ssh.knownHosts", f))
        .transpose()?;
    let cfg_known = match &cfg.user_known_hosts_files {
        Some(v) => v
            .value
            .iter()
            .map(|f| {
                file_path(
                    &ssh_config::Valued {
                        value: f.clone(),
                        origin: v.origin.clone(),
                    },
                    "UserKnownHostsFile",
                )
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let cfg_known = (!cfg_known.is_empty()).then_some(cfg_known);
    let known_from_settings = match hop.settings_first {
        true => settings_known.is_some(),
        false => cfg_known.is_none() && settings_known.is_some(),
    };
    let known = pick(
        settings_known.map(|k| vec![k]),
        cfg_known,
        hop.settings_first,
    )
    .unwrap_or_else(|| vec![home.join(".ssh/known_hosts")]);
    let mut known = known.into_iter();
    let known_hosts = known
        .next()
        .unwrap_or_else(|| home.join(".ssh/known_hosts"));
    let mut extra_known_hosts: Vec<PathBuf> = known.collect();
    match &cfg.global_known_hosts_files {
        Some(v) => {
            for f in &v.value {
                extra_known_hosts.push(file_path(
                    &ssh_config::Valued {
                        value: f.clone(),
                        origin: v.origin.clone(),
                    },
                    "GlobalKnownHostsFile",
                )?);
            }
        }
        // OpenSSH's system-wide files (the operator's, only read), unless Settings name
        // the one file to trust.
        None if !known_from_settings => extra_known_hosts.extend([
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]),
        None => {}
    }

    let cfg_policy = cfg
        .strict_host_key_checking
        .as_ref()
        .map(|v| match v.value {
            StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask => HostKeyPolicy::Strict,
            // "no": patchkeeper records unknown keys and never connects to a changed one.
            StrictHostKeyChecking::No | StrictHostKeyChecking::AcceptNew => {
                HostKeyPolicy::AcceptNew
            }
        });
    let host_key_policy =
        pick(s.host_key_policy, cfg_policy, hop.settings_first).unwrap_or(HostKeyPolicy::Strict);

    let duration = |value: &Option<String>, field: &'static str| {
        value
            .as_deref()
            .map(|v| {
                parse_duration(v).map_err(|source| TargetError::Duration {
                    host: name.to_owned(),
                    field,
                    source,
                })
            })
            .transpose()
    };
    // ConnectTimeout 0/none: no timeout in OpenSSH; patchkeeper keeps its default (a host
    // has an overall deadline anyway).
    let cfg_connect = cfg
        .connect_timeout
        .as_ref()
        .and_then(|v| v.value)
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let connect_timeout = pick(
        duration(&s.connect_timeout, "ssh.connectTimeout")?,
        cfg_connect,
        hop.settings_first,
    )
    .unwrap_or(Duration::from_secs(10));
    let cfg_alive = cfg
        .server_alive_interval
        .as_ref()
        .map(|v| v.value)
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let keepalive_interval = pick(
        duration(&s.keepalive_interval, "ssh.keepaliveInterval")?,
        cfg_alive,
        hop.settings_first,
    )
    .unwrap_or(Duration::from_secs(15));

    Ok(SshOptions {
        address: hop.address,
        port: hop.port,
        user: hop.user,
        identity_files,
        use_agent,
        known_hosts,
        extra_known_hosts,
        host_key_alias: cfg.host_key_alias.as_ref().map(|a| a.value.clone()),
        certificate_files,
        host_key_policy,
        sudo: false,
        connect_timeout,
        keepalive_interval,
        kex: s.kex_algorithms.clone().unwrap_or_default(),
        ciphers: s.ciphers.clone().unwrap_or_default(),
        jumps: Vec::new(),
    })
}

fn pick<T>(settings: Option<T>, file: Option<T>, settings_first: bool) -> Option<T> {
    if settings_first {
        settings.or(file)
    } else {
        file.or(settings)
    }
}

/// The jump hosts of a `ProxyJump` value, first to last; the first hop's own `ProxyJump`
/// (from the file) goes before it, as `ssh -J` does.
fn jump_chain(
    req: &Request<'_>,
    configs: &SshConfigs,
    value: &str,
    home: &Path,
    depth: usize,
) -> Result<Vec<JumpHost>, TargetError> {
    let hops = ssh_config::parse_proxy_jump(value).map_err(|message| TargetError::Value {
        host: req.host.to_owned(),
        message,
    })?;
    let mut chain = Vec::new();
    for (i, spec) in hops.iter().enumerate() {
        let cfg = configs.resolve(req.host, &spec.host)?;
        if i == 0 {
            if let Some(inner) = cfg
                .proxy_jump
                .as_ref()
                .filter(|j| !j.value.eq_ignore_ascii_case("none"))
            {
                if depth >= MAX_JUMPS {
                    return Err(TargetError::Value {
                        host: req.host.to_owned(),
                        message: format!(
                            "ProxyJump chain through `{}` is longer than {MAX_JUMPS} hops (a loop? {})",
                            spec.host, inner.origin
                        ),
                    });
                }
                chain.extend(jump_chain(req, configs, &inner.value, home, depth + 1)?);
            } else if cfg.proxy_command.is_some() {
                return Err(TargetError::Value {
                    host: req.host.to_owned(),
                    message: format!(
                        "jump host `{}` uses ProxyCommand, which is not supported (use ProxyJump)",
                        spec.host
                    ),
                });
            }
        }
        let address = cfg
            .hostname
            .as_ref()
            .map(|h| h.value.clone())
            .unwrap_or_else(|| spec.host.clone());
        let port = spec
            .port
            .or(cfg.port.as_ref().map(|p| p.value))
            .unwrap_or(22);
        let user = spec
            .user
            .clone()
            .or(cfg.user.as_ref().map(|u| u.value.clone()))
            .or(req.fleet.user.clone())
            .unwrap_or_else(|| "root".into());
        let hop_req = Request {
            destination: &spec.host,
            ..*req
        };
        let options = hop_options(
            &hop_req,
            configs,
            &cfg,
            Hop {
                address,
                port,
                user,
                settings: req.fleet,
                settings_first: false,
            },
            home,
        )?;
        chain.push(JumpHost {
            name: spec.to_string(),
            options,
        });
        if chain.len() > MAX_JUMPS {
            return Err(TargetError::Value {
                host: req.host.to_owned(),
                message: format!("ProxyJump chain is longer than {MAX_JUMPS} hops"),
            });
        }
    }
    Ok(chain)
}

#[cfg(test)]
mod tests;
