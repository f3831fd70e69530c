//! The SSH transport (russh): one connection per host, every command on its own channel of
//! that one session, host keys checked against known_hosts, key-file and agent login,
//! optional `sudo -n`.
//!
//! Channel discipline (from russh users' reports): each exec channel is read until the
//! server closes it, with stdout and stderr drained as they arrive, and closed explicitly on
//! timeout, so sshd's `MaxSessions` slots are never leaked and an undrained channel never
//! stalls the session. Liveness comes from keepalives, never from an inactivity timeout
//! (a long package transaction is silent for minutes). Output is capped per command
//! (`super::Capture`); a package transaction is never signalled.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{cipher, kex, ChannelMsg, Disconnect, Preferred};

use super::known_hosts::{self, Verdict};
use super::{BoxFuture, Capture, ExecOptions, Negotiated, Output, Transport, TransportError};

use crate::model::HostKeyPolicy;

/// Default key exchange preference. curve25519-sha256 first: it is the cheapest secure
/// exchange every OpenSSH since 7.4 offers (about 0.1 ms of client CPU here, against ~70 ms
/// for OpenSSH's default sntrup761x25519), and the handshake dominates observation time.
/// mlkem768x25519-sha256 (post-quantum hybrid, OpenSSH >= 9.9) costs ~0.2 ms more and
/// is the better choice against "harvest now, decrypt later": put it first in
/// `spec.ssh.kexAlgorithms` when your hosts support it. The finite-field groups are last
/// resorts for old servers (tens of ms each).
pub const DEFAULT_KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "mlkem768x25519-sha256",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// Default cipher preference: authenticated ciphers only. chacha20-poly1305 is constant-time
/// without AES hardware; aes-gcm is faster with AES-NI on bulk data. At observation volumes
/// (tens of KiB per host) the difference is below measurement noise.
pub const DEFAULT_CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
];

/// Resolved SSH options for one host (Settings' `ssh` overlaid with the host's own).
#[derive(Debug, Clone, PartialEq)]
pub struct SshOptions {
    /// Address to connect to.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key files to offer, in order.
    pub identity_files: Vec<PathBuf>,
    /// Whether to offer the keys of the agent at `SSH_AUTH_SOCK`.
    pub use_agent: bool,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
    /// Unknown host keys: refuse or record.
    pub host_key_policy: HostKeyPolicy,
    /// Wrap every command in `sudo -n`.
    pub sudo: bool,
    /// Deadline for TCP connect, handshake and login together.
    pub connect_timeout: Duration,
    /// Keepalive interval (the connection is dropped after 3 unanswered).
    pub keepalive_interval: Duration,
    /// Key exchange preference (empty: [`DEFAULT_KEX`]).
    pub kex: Vec<String>,
    /// Cipher preference (empty: [`DEFAULT_CIPHERS`]).
    pub ciphers: Vec<String>,
}

impl SshOptions {
    /// `address:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// Private keys loaded once per run and shared by every connection (parsing a key file per
/// host would cost more than the handshake it serves).
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

impl KeyCache {
    /// An empty cache.
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    fn load(&self, path: &Path) -> Result<Arc<PrivateKey>, TransportError> {
        let mut keys = self
            .keys
            .lock()
            .expect("key cache lock is never poisoned: no panics inside");
        if let Some(key) = keys.get(path) {
            return Ok(key.clone());
        }
        let key =
            russh::keys::load_secret_key(path, None).map_err(|e| TransportError::KeyLoad {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let key = Arc::new(key);
        keys.insert(path.to_path_buf(), key.clone());
        Ok(key)
    }
}

/// The key files OpenSSH tries when none is configured (only those that exist).
pub fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

/// An open SSH connection to one host.
pub struct SshTransport {
    handle: Handle<ClientHandler>,
    sudo: bool,
    negotiated: Option<Negotiated>,
}

impl SshTransport {
    /// Connects, checks the host key and logs in, all within `options.connect_timeout`.
    pub async fn connect(
        options: &SshOptions,
        keys: &KeyCache,
    ) -> Result<SshTransport, TransportError> {
        let seconds = options.connect_timeout.as_secs();
        match tokio::time::timeout(options.connect_timeout, connect_inner(options, keys)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::ConnectTimeout {
                address: options.endpoint(),
                seconds,
            }),
        }
    }
}

async fn connect_inner(
    options: &SshOptions,
    keys: &KeyCache,
) -> Result<SshTransport, TransportError> {
    let lookup = known_hosts::lookup_name(&options.address, options.port);
    let known = match std::fs::read_to_string(&options.known_hosts) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(TransportError::KnownHosts {
                path: options.known_hosts.display().to_string(),
                source,
            })
        }
    };
    let config = client_config(options, &known_hosts::recorded_types(&known, &lookup))?;
    let negotiated = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        lookup,
        known_hosts_contents: known,
        known_hosts: options.known_hosts.clone(),
        policy: options.host_key_policy,
        negotiated: negotiated.clone(),
    };
    let endpoint = options.endpoint();
    let socket = tokio::net::TcpStream::connect((options.address.as_str(), options.port))
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::ConnectionRefused => TransportError::Refused {
                address: endpoint.clone(),
            },
            _ => TransportError::Connect {
                address: endpoint.clone(),
                source,
            },
        })?;
    // Small request/response messages: Nagle would add a delayed-ACK wait per round trip.
    let _ = socket.set_nodelay(true);
    let mut handle = client::connect_stream(Arc::new(config), socket, handler).await?;
    authenticate(&mut handle, options, keys).await?;
    let negotiated = negotiated
        .lock()
        .expect("negotiated lock is never poisoned: no panics inside")
        .clone();
    Ok(SshTransport {
        handle,
        sudo: options.sudo,
        negotiated,
    })
}

fn client_config(
    options: &SshOptions,
    recorded_types: &[String],
) -> Result<client::Config, TransportError> {
    let kex_names: Vec<String> = if options.kex.is_empty() {
        DEFAULT_KEX.iter().map(|s| s.to_string()).collect()
    } else {
        options.kex.clone()
    };
    let mut kex_list = Vec::new();
    for name in &kex_names {
        let parsed = kex::Name::try_from(name.as_str()).map_err(|()| {
            TransportError::UnsupportedAlgorithm {
                what: "kex",
                name: name.clone(),
            }
        })?;
        kex_list.push(parsed);
    }
    // Protocol extensions, not algorithms: ext-info for rsa-sha2 and strict kex (Terrapin).
    kex_list.push(kex::EXTENSION_SUPPORT_AS_CLIENT);
    kex_list.push(kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT);

    let cipher_names: Vec<String> = if options.ciphers.is_empty() {
        DEFAULT_CIPHERS.iter().map(|s| s.to_string()).collect()
    } else {
        options.ciphers.clone()
    };
    let mut cipher_list = Vec::new();
    for name in &cipher_names {
        let parsed = cipher::Name::try_from(name.as_str()).map_err(|()| {
            TransportError::UnsupportedAlgorithm {
                what: "cipher",
                name: name.clone(),
            }
        })?;
        cipher_list.push(parsed);
    }

    Ok(client::Config {
        preferred: Preferred {
            kex: Cow::Owned(kex_list),
            key: Cow::Owned(host_key_preference(recorded_types)),
            cipher: Cow::Owned(cipher_list),
            ..Preferred::default()
        },
        keepalive_interval: Some(options.keepalive_interval),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Host key algorithms, those already recorded in known_hosts first (as OpenSSH orders
/// them), so a recorded ed25519 key is checked rather than an unrecorded RSA one.
fn host_key_preference(recorded_types: &[String]) -> Vec<Algorithm> {
    let all = vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ];
    let recorded = |a: &Algorithm| {
        recorded_types
            .iter()
            .any(|t| *t == a.to_string() || (t == "ssh-rsa" && matches!(a, Algorithm::Rsa { .. })))
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|a| recorded(a));
    first.extend(rest);
    first
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    options: &SshOptions,
    keys: &KeyCache,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    for path in &options.identity_files {
        let key = keys.load(path)?;
        tried.push(format!("key {}", path.display()));
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(&options.user, PrivateKeyWithHashAlg::new(key, hash))
            .await?;
        if result.success() {
            return Ok(());
        }
    }
    if options.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match russh::keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = identity
                    else {
                        continue;
                    };
                    tried.push(if comment.is_empty() {
                        format!("agent key {}", key.fingerprint(HashAlg::Sha256))
                    } else {
                        format!("agent key {comment}")
                    });
                    let hash = if key.algorithm().is_rsa() {
                        handle.best_supported_rsa_hash().await?.flatten()
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(&options.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("agent signing failed: {e}"),
                    }
                }
            }
            Err(e) => tracing::debug!("cannot reach ssh-agent: {e}"),
        }
    }
    Err(TransportError::AuthFailed {
        user: options.user.clone(),
        tried,
    })
}

/// How reading a command's channel ended.
enum Ended {
    /// The server closed the channel: the command's output is complete.
    Closed,
    /// The command printed more than its cap.
    Overflow,
    /// The deadline passed first.
    Deadline,
}

impl Transport for SshTransport {
    fn exec_with<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        options: ExecOptions,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(async move {
            // A transaction must outlive its session (never cut short by a closed channel).
            let inner = if options.transaction && stdin.is_none() {
                super::detach_transaction(command)
            } else {
                command.to_string()
            };
            let wrapped = if self.sudo {
                super::sudo_wrap(&inner)
            } else {
                inner
            };
            let mut channel = self.handle.channel_open_session().await?;
            channel.exec(true, wrapped.into_bytes()).await?;
            let mut capture = Capture::new(&options);
            let mut exit = None;
            let collect = async {
                if let Some(data) = stdin {
                    // Input is small (a script): no need to interleave with reading output.
                    channel.data(data).await?;
                }
                channel.eof().await?;
                // Read until the server closes the channel, draining both streams as they
                // come; a command that exits while a child keeps its output open never
                // closes, and only the deadline ends that wait.
                while let Some(msg) = channel.wait().await {
                    let kept = match msg {
                        ChannelMsg::Data { data } => capture.stdout(&data),
                        ChannelMsg::ExtendedData { data, ext: 1 } => capture.stderr(&data),
                        ChannelMsg::ExitStatus { exit_status } => {
                            exit = Some(exit_status);
                            Ok(())
                        }
                        ChannelMsg::ExitSignal { .. } => {
                            exit = None;
                            Ok(())
                        }
                        ChannelMsg::Close => break,
                        _ => Ok(()),
                    };
                    if kept.is_err() {
                        return Ok(Ended::Overflow);
                    }
                }
                Ok::<_, TransportError>(Ended::Closed)
            };
            let ended = match options.deadline {
                Some(d) => tokio::time::timeout(d, collect)
                    .await
                    .unwrap_or(Ok(Ended::Deadline)),
                None => collect.await,
            }?;
            let seconds = options.deadline.map_or(0, |d| d.as_secs());
            match ended {
                Ended::Closed => Ok(capture.finish(exit)),
                Ended::Overflow => {
                    // A flood is stopped at once: signalled, and its channel closed so the
                    // server discards what is still in flight.
                    let _ = channel.signal(russh::Sig::KILL).await;
                    let _ = channel.close().await;
                    Err(TransportError::OutputTooLarge {
                        command: super::command_label(command),
                        limit: options.max_output,
                    })
                }
                Ended::Deadline if options.transaction => {
                    // Never signalled: a package manager killed mid-transaction is what
                    // this deadline must not cause. The channel is closed (its slot freed);
                    // the transaction, detached from it (`super::detach_transaction`), runs
                    // on to its end, and the next run's recovery waits for it.
                    let _ = channel.close().await;
                    Err(TransportError::Abandoned { seconds })
                }
                Ended::Deadline => {
                    let _ = channel.signal(russh::Sig::KILL).await;
                    let _ = channel.close().await;
                    Err(TransportError::CommandTimeout { seconds })
                }
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
        })
    }

    fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated.clone()
    }
}

/// russh callbacks: the host-key decision and the negotiated algorithms.
pub struct ClientHandler {
    lookup: String,
    known_hosts_contents: String,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl client::Handler for ClientHandler {
    type Error = TransportError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            // No certificate algorithms are offered, so a server cannot send one.
            return Ok(false);
        };
        let openssh = key.to_openssh().map_err(|e| TransportError::KeyLoad {
            path: "(server host key)".into(),
            message: e.to_string(),
        })?;
        let mut fields = openssh.split_ascii_whitespace();
        let (Some(key_type), Some(blob)) = (fields.next(), fields.next()) else {
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let file = self.known_hosts.display().to_string();
        match known_hosts::check(&self.known_hosts_contents, &self.lookup, key_type, blob) {
            Verdict::Known => Ok(true),
            Verdict::Changed { line } | Verdict::Revoked { line } => {
                Err(TransportError::HostKeyMismatch {
                    host: self.lookup.clone(),
                    algorithm: key_type.to_string(),
                    fingerprint,
                    known_hosts: file,
                    line,
                })
            }
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(TransportError::HostKeyUnknown {
                    host: self.lookup.clone(),
                    algorithm: key_type.to_string(),
                    fingerprint,
                    known_hosts: file,
                }),
                HostKeyPolicy::AcceptNew => {
                    known_hosts::append(&self.known_hosts, &self.lookup, key_type, blob)
                        .map_err(|source| TransportError::KnownHosts { path: file, source })?;
                    tracing::warn!(
                        "permanently added {} ({key_type} {fingerprint}) to {}",
                        self.lookup,
                        self.known_hosts.display()
                    );
                    Ok(true)
                }
            },
        }
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        *self
            .negotiated
            .lock()
            .expect("negotiated lock is never poisoned: no panics inside") = Some(Negotiated {
            kex: names.kex.as_ref().to_string(),
            cipher: names.cipher.as_ref().to_string(),
            host_key: names.key.as_str().to_string(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SshOptions {
        SshOptions {
            address: "127.0.0.1".into(),
            port: 22,
            user: "root".into(),
            identity_files: vec![],
            use_agent: false,
            known_hosts: "/dev/null".into(),
            host_key_policy: HostKeyPolicy::Strict,
            sudo: false,
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(15),
            kex: vec![],
            ciphers: vec![],
        }
    }

    #[test]
    fn defaults_are_all_supported_by_russh() {
        let config = client_config(&options(), &[]).unwrap();
        assert_eq!(config.preferred.kex[0].as_ref(), "curve25519-sha256");
        assert_eq!(config.preferred.cipher.len(), DEFAULT_CIPHERS.len());
        assert!(config.inactivity_timeout.is_none());
    }

    #[test]
    fn unknown_algorithms_are_rejected_by_name() {
        let mut o = options();
        o.kex = vec!["sntrup761x25519-sha512@openssh.com".into()];
        let err = client_config(&o, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported kex algorithm `sntrup761x25519-sha512@openssh.com`"
        );
    }

    #[test]
    fn recorded_key_types_go_first() {
        let prefs = host_key_preference(&["ssh-rsa".into()]);
        assert!(
            matches!(prefs[0], Algorithm::Rsa { .. }) && matches!(prefs[1], Algorithm::Rsa { .. })
        );
        assert_eq!(prefs[2], Algorithm::Ed25519);
    }

    #[test]
    fn endpoint_brackets_ipv6() {
        let mut o = options();
        assert_eq!(o.endpoint(), "127.0.0.1:22");
        o.address = "::1".into();
        assert_eq!(o.endpoint(), "[::1]:22");
    }
}
