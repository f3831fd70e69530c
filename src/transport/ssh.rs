//! The SSH transport (russh): one connection per host, every command on its own channel of
//! that one session, host keys checked against known_hosts (plain keys, and host
//! certificates of `@cert-authority` authorities), key-file, certificate and agent login,
//! jump hosts (`ProxyJump`: one shared connection per bastion, the next hop over a
//! `direct-tcpip` channel, host keys checked at every hop), optional `sudo -n`. Connection
//! failures say what happened: name not resolved, refused, no route, timed out (and in
//! which stage), closed by the server, host key changed (both fingerprints), login refused
//! (what was tried, what the server accepts).
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
use russh::keys::{Algorithm, Certificate, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
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

/// Resolved SSH options for one hop (a host, or a jump host on the way to one): Settings'
/// `ssh` overlaid with the host's own and with the OpenSSH client configuration.
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
    /// The known_hosts file (the one `accept-new` writes to).
    pub known_hosts: PathBuf,
    /// Further known_hosts files, only read (the other `UserKnownHostsFile` entries and
    /// `GlobalKnownHostsFile`).
    pub extra_known_hosts: Vec<PathBuf>,
    /// The name host keys are looked up (and host certificates checked) under instead of
    /// the address (`HostKeyAlias`).
    pub host_key_alias: Option<String>,
    /// Certificates offered with the identity files whose keys they certify
    /// (`CertificateFile`); each identity's `IDENTITY-cert.pub` is tried as well.
    pub certificate_files: Vec<PathBuf>,
    /// Unknown host keys: refuse or record.
    pub host_key_policy: HostKeyPolicy,
    /// Wrap every command in `sudo -n`.
    pub sudo: bool,
    /// Deadline for TCP connect, handshake and login together (per hop).
    pub connect_timeout: Duration,
    /// Keepalive interval (the connection is dropped after 3 unanswered).
    pub keepalive_interval: Duration,
    /// Key exchange preference (empty: [`DEFAULT_KEX`]).
    pub kex: Vec<String>,
    /// Cipher preference (empty: [`DEFAULT_CIPHERS`]).
    pub ciphers: Vec<String>,
    /// Jump hosts to go through, first to last (`ProxyJump`).
    pub jumps: Vec<JumpHost>,
}

/// One jump host of a `ProxyJump` chain.
#[derive(Debug, Clone, PartialEq)]
pub struct JumpHost {
    /// The hop as written (`bastion`, `ops@bastion:2222`), for messages.
    pub name: String,
    /// How to reach and log in to it (its own `jumps` are empty: the chain is flat).
    pub options: SshOptions,
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

    /// What identifies a connection for sharing: everything but the jumps, which the pool
    /// key spells out hop by hop.
    fn pool_key(&self) -> String {
        format!(
            "{}@{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.user,
            self.endpoint(),
            self.identity_files,
            self.use_agent,
            self.known_hosts,
            self.extra_known_hosts,
            self.host_key_alias,
            self.host_key_policy,
            self.kex,
            self.ciphers
        )
    }

    /// The name looked up in known_hosts: the `HostKeyAlias` as is, else `host` or
    /// `[host]:port` as OpenSSH writes it.
    fn lookup_name(&self) -> String {
        match &self.host_key_alias {
            Some(alias) => alias.clone(),
            None => known_hosts::lookup_name(&self.address, self.port),
        }
    }
}

/// What the connections of one run share: private keys and certificates loaded once
/// (parsing a key file per host would cost more than the handshake it serves), and
/// connections to jump hosts, so that hosts behind one bastion share one connection to it
/// instead of opening one each (sshd's `MaxStartups` drops unauthenticated connections
/// beyond 10 at once by default).
#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
    certificates: Mutex<HashMap<PathBuf, Option<Arc<Certificate>>>>,
    jumps: Mutex<HashMap<String, Arc<tokio::sync::Mutex<JumpSlot>>>>,
    /// known_hosts files read and indexed once per run, by path, with the size and
    /// modification time they had (an `accept-new` append makes the next connection
    /// read the file again).
    known_hosts: Mutex<HashMap<PathBuf, KnownHostsFile>>,
}

/// An indexed known_hosts file and the metadata it was read with.
type KnownHostsFile = (u64, Option<std::time::SystemTime>, Arc<known_hosts::Index>);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

/// A shared jump-host connection: not yet tried, up, or failed recently. Hosts that were
/// waiting for an attempt that failed get its failure at once instead of each waiting out
/// its own timeout; after the hop's connect timeout has passed, the next host tries again
/// (a bastion that was rebooting is back).
enum JumpSlot {
    Empty,
    Up(Arc<Handle<ClientHandler>>),
    Failed(Arc<TransportError>, tokio::time::Instant),
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

    /// The certificate in `path`; `None` when there is no such file or it is not a
    /// certificate (a certificate that cannot be used is skipped, as OpenSSH skips it).
    fn certificate(&self, path: &Path) -> Option<Arc<Certificate>> {
        let mut certs = self
            .certificates
            .lock()
            .expect("certificate cache lock is never poisoned: no panics inside");
        if let Some(c) = certs.get(path) {
            return c.clone();
        }
        let cert = match std::fs::read_to_string(path) {
            Ok(text) => match Certificate::from_openssh(text.trim()) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!("ignoring certificate {}: {e}", path.display());
                    None
                }
            },
            Err(_) => None,
        };
        certs.insert(path.to_path_buf(), cert.clone());
        cert
    }

    fn jump_slot(&self, key: &str) -> Arc<tokio::sync::Mutex<JumpSlot>> {
        self.jumps
            .lock()
            .expect("jump pool lock is never poisoned: no panics inside")
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(JumpSlot::Empty)))
            .clone()
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
    /// The jump-host connections this one runs through, kept open while it lives.
    _jumps: Vec<Arc<Handle<ClientHandler>>>,
}

impl SshTransport {
    /// Connects (through the jump hosts, if any: each one's host key checked and its own
    /// login done, the next hop reached over a `direct-tcpip` channel), checks the host
    /// key and logs in; each hop within its own `connect_timeout`.
    pub async fn connect(
        options: &SshOptions,
        keys: &KeyCache,
    ) -> Result<SshTransport, TransportError> {
        let mut via: Option<Arc<Handle<ClientHandler>>> = None;
        let mut held = Vec::with_capacity(options.jumps.len());
        let mut chain = String::new();
        for jump in &options.jumps {
            chain.push_str(&jump.options.pool_key());
            chain.push('\n');
            let handle = jump_connection(&chain, jump, via.as_deref(), keys).await?;
            held.push(handle.clone());
            via = Some(handle);
        }
        let (handle, negotiated) =
            connect_hop(options, via.as_deref(), keys)
                .await
                .map_err(|e| match (e, options.jumps.last()) {
                    // The last jump host could not reach this host: say so in its name.
                    (e @ TransportError::ChannelOpen { .. }, Some(jump)) => TransportError::Jump {
                        jump: jump_label(jump),
                        source: Arc::new(e),
                    },
                    (e, _) => e,
                })?;
        Ok(SshTransport {
            handle,
            sudo: options.sudo,
            negotiated,
            _jumps: held,
        })
    }
}

fn jump_label(jump: &JumpHost) -> String {
    format!("`{}` ({})", jump.name, jump.options.endpoint())
}

/// The shared connection to a jump host (`chain` names it and every hop before it),
/// made by the first host that needs it; a failure is kept for the run.
async fn jump_connection(
    chain: &str,
    jump: &JumpHost,
    via: Option<&Handle<ClientHandler>>,
    keys: &KeyCache,
) -> Result<Arc<Handle<ClientHandler>>, TransportError> {
    let slot = keys.jump_slot(chain);
    let mut slot = slot.lock().await;
    match &*slot {
        JumpSlot::Up(handle) if !handle.is_closed() => return Ok(handle.clone()),
        JumpSlot::Failed(e, at) if at.elapsed() < jump.options.connect_timeout => {
            return Err(TransportError::Jump {
                jump: jump_label(jump),
                source: e.clone(),
            })
        }
        _ => {}
    }
    match connect_hop(&jump.options, via, keys).await {
        Ok((handle, _)) => {
            let handle = Arc::new(handle);
            *slot = JumpSlot::Up(handle.clone());
            Ok(handle)
        }
        Err(e) => {
            let e = Arc::new(e);
            *slot = JumpSlot::Failed(e.clone(), tokio::time::Instant::now());
            Err(TransportError::Jump {
                jump: jump_label(jump),
                source: e,
            })
        }
    }
}

/// The stage a connection attempt is in, for timeout messages.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Resolve,
    Tcp,
    Channel,
    Handshake,
    Login,
}

impl Stage {
    /// The stage, for "closed during ...".
    fn describe(self) -> &'static str {
        match self {
            Stage::Resolve => "name resolution",
            Stage::Tcp => "the TCP connect",
            Stage::Channel => "the channel through the jump host",
            Stage::Handshake => "the SSH handshake",
            Stage::Login => "login",
        }
    }

    /// What a timeout in this stage means.
    fn timed_out(self) -> &'static str {
        match self {
            Stage::Resolve => "the name did not resolve in time",
            Stage::Tcp => "no answer to the TCP connect; the host is down or a firewall drops the packets",
            Stage::Channel => "the jump host did not open the channel in time",
            Stage::Handshake => "connected, but the SSH handshake did not complete; the server sent nothing or stalled",
            Stage::Login => "login did not complete in time",
        }
    }
}

/// One hop: a TCP connection (or a `direct-tcpip` channel of the previous hop), the
/// handshake with the host-key check, and login, all before `connect_timeout`.
async fn connect_hop(
    options: &SshOptions,
    via: Option<&Handle<ClientHandler>>,
    keys: &KeyCache,
) -> Result<(Handle<ClientHandler>, Option<Negotiated>), TransportError> {
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    let endpoint = options.endpoint();
    let timed_out = |stage: Stage| TransportError::ConnectTimeout {
        address: endpoint.clone(),
        seconds: options.connect_timeout.as_secs(),
        stage: stage.timed_out(),
    };
    let known = Arc::new(KnownHosts::load(options, keys)?);
    let lookup = options.lookup_name();
    let authorities = !known.authorities(&lookup).is_empty();
    let config = client_config(options, &known.recorded_types(&lookup), authorities)?;
    let negotiated = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        lookup,
        principal: options
            .host_key_alias
            .clone()
            .unwrap_or_else(|| options.address.clone()),
        known,
        known_hosts: options.known_hosts.clone(),
        policy: options.host_key_policy,
        negotiated: negotiated.clone(),
        certified: false,
    };
    let config = Arc::new(config);
    let handshake = |result: Result<Handle<ClientHandler>, TransportError>| {
        result.map_err(|e| classify(e, &endpoint, Stage::Handshake))
    };
    let mut handle = match via {
        None => {
            let socket = tcp_connect(options, deadline, &timed_out).await?;
            // Small request/response messages: Nagle would add a delayed-ACK wait per round trip.
            let _ = socket.set_nodelay(true);
            let connecting = client::connect_stream(config, socket, handler);
            handshake(
                tokio::time::timeout_at(deadline, connecting)
                    .await
                    .map_err(|_| timed_out(Stage::Handshake))?,
            )?
        }
        Some(jump) => {
            let opening = jump.channel_open_direct_tcpip(
                options.address.clone(),
                u32::from(options.port),
                "127.0.0.1",
                0,
            );
            let channel = tokio::time::timeout_at(deadline, opening)
                .await
                .map_err(|_| timed_out(Stage::Channel))?
                .map_err(|e| match e {
                    russh::Error::ChannelOpenFailure(reason) => TransportError::ChannelOpen {
                        target: endpoint.clone(),
                        reason: channel_open_reason(&reason),
                    },
                    other => classify(TransportError::Ssh(other), &endpoint, Stage::Channel),
                })?;
            let connecting = client::connect_stream(config, channel.into_stream(), handler);
            handshake(
                tokio::time::timeout_at(deadline, connecting)
                    .await
                    .map_err(|_| timed_out(Stage::Handshake))?,
            )?
        }
    };
    tokio::time::timeout_at(deadline, authenticate(&mut handle, options, keys))
        .await
        .map_err(|_| timed_out(Stage::Login))?
        .map_err(|e| classify(e, &endpoint, Stage::Login))?;
    let negotiated = negotiated
        .lock()
        .expect("negotiated lock is never poisoned: no panics inside")
        .clone();
    Ok((handle, negotiated))
}

/// Resolves the address and connects to the first answer that accepts, with errors in
/// the words of what happened: name not resolved, refused, no route.
async fn tcp_connect(
    options: &SshOptions,
    deadline: tokio::time::Instant,
    timed_out: &(dyn Fn(Stage) -> TransportError + Sync),
) -> Result<tokio::net::TcpStream, TransportError> {
    let lookup = tokio::net::lookup_host((options.address.as_str(), options.port));
    let addresses: Vec<std::net::SocketAddr> = tokio::time::timeout_at(deadline, lookup)
        .await
        .map_err(|_| timed_out(Stage::Resolve))?
        .map_err(|e| TransportError::NameNotResolved {
            name: options.address.clone(),
            message: resolver_message(&e),
        })?
        .collect();
    let mut last = None;
    // Refused everywhere: the host may be between a reboot and its sshd, or its listen
    // queue overflowed by a fleet-wide start; try again a few times, backing off (with
    // jitter, so a thousand connections do not come back in step), within the deadline.
    let mut attempt = 0;
    loop {
        for address in &addresses {
            let connecting = tokio::net::TcpStream::connect(address);
            match tokio::time::timeout_at(deadline, connecting)
                .await
                .map_err(|_| timed_out(Stage::Tcp))?
            {
                Ok(socket) => return Ok(socket),
                Err(e) => last = Some((address, e)),
            }
        }
        let refused = last
            .as_ref()
            .is_some_and(|(_, e)| e.kind() == std::io::ErrorKind::ConnectionRefused);
        let Some(wait) = refused_backoff(attempt, jitter()) else {
            break;
        };
        if !refused || tokio::time::Instant::now() + wait >= deadline {
            break;
        }
        tracing::debug!(address = %options.endpoint(), attempt, ?wait, "connection refused, trying again");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
    let Some((address, source)) = last else {
        return Err(TransportError::NameNotResolved {
            name: options.address.clone(),
            message: "it has no address".into(),
        });
    };
    // Name the address tried when it differs from what was written (a resolved name).
    let shown = if address.ip().to_string() == options.address {
        options.endpoint()
    } else {
        format!("{} ({address})", options.endpoint())
    };
    Err(match source.kind() {
        std::io::ErrorKind::ConnectionRefused => TransportError::Refused { address: shown },
        std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable => {
            TransportError::NoRoute {
                address: shown,
                message: os_message(&source),
            }
        }
        _ => TransportError::Connect {
            address: shown,
            source,
        },
    })
}

/// Tries after a refused connection before it is reported (each a [`refused_backoff`] later).
pub const REFUSED_RETRIES: u32 = 3;

/// The wait before retry `attempt` (0-based) of a refused connection: 200 ms doubling,
/// plus `jitter` (0..1) of it again; `None` once [`REFUSED_RETRIES`] are spent. A host
/// that stays refused is reported after about 1.4 to 2.8 s.
pub fn refused_backoff(attempt: u32, jitter: f64) -> Option<Duration> {
    if attempt >= REFUSED_RETRIES {
        return None;
    }
    let base = Duration::from_millis(200) * 2u32.pow(attempt);
    Some(base + base.mul_f64(jitter.clamp(0.0, 1.0)))
}

/// A jitter in 0..1 from the clock's nanoseconds (no cryptographic quality needed: it
/// only keeps retries out of step).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// The resolver's own words (`Name or service not known`, `Temporary failure in name
/// resolution`), without Rust's prefix.
fn resolver_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_owned()
}

/// An OS error's text without ` (os error N)`.
fn os_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn channel_open_reason(reason: &russh::ChannelOpenFailure) -> String {
    match reason {
        russh::ChannelOpenFailure::ConnectFailed => {
            "connect failed (refused, no route or name not resolved, as seen from the jump host)"
                .into()
        }
        russh::ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited (the jump host's sshd does not allow forwarding there: AllowTcpForwarding, PermitOpen)".into()
        }
        russh::ChannelOpenFailure::ResourceShortage => "resource shortage on the jump host".into(),
        russh::ChannelOpenFailure::UnknownChannelType => {
            "the jump host does not support direct-tcpip channels".into()
        }
        russh::ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}

/// Turns russh's protocol errors during connect into what happened, in the user's words.
fn classify(e: TransportError, endpoint: &str, stage: Stage) -> TransportError {
    let TransportError::Ssh(inner) = e else {
        return e;
    };
    let closed = |hint: &'static str| TransportError::Closed {
        address: endpoint.to_owned(),
        stage: stage.describe(),
        hint,
    };
    let stage_hint = match stage {
        Stage::Login => " (sshd ended the login: see its log; AllowUsers/DenyUsers, MaxAuthTries)",
        _ => " (not an SSH server, or one refusing connections: sshd's MaxStartups, a firewall or TCP wrapper)",
    };
    match inner {
        russh::Error::Disconnect | russh::Error::HUP | russh::Error::RecvError => {
            closed(stage_hint)
        }
        russh::Error::IO(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            closed(stage_hint)
        }
        russh::Error::Version => TransportError::NotSsh {
            address: endpoint.to_owned(),
        },
        russh::Error::NoCommonAlgo { kind, ours, theirs } => TransportError::Handshake {
            address: endpoint.to_owned(),
            message: format!(
                "no {kind:?} algorithm in common (patchkeeper offers {}; the server offers {})",
                ours.join(", "),
                theirs.join(", ")
            )
            .to_lowercase(),
        },
        other => TransportError::Handshake {
            address: endpoint.to_owned(),
            message: format!(
                "{} during {}",
                super::describe_ssh(&other),
                stage.describe()
            ),
        },
    }
}

fn client_config(
    options: &SshOptions,
    recorded_types: &[String],
    host_certificates: bool,
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
    let keys = host_key_preference(recorded_types);
    // Host certificates only where known_hosts trusts an authority for the host: a
    // certificate nobody vouches for would only be checked as a plain key anyway.
    let certificates = if host_certificates {
        keys.clone()
    } else {
        Vec::new()
    };

    Ok(client::Config {
        preferred: Preferred {
            kex: Cow::Owned(kex_list),
            key: Cow::Owned(keys),
            host_key_certificates: Cow::Owned(certificates),
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

/// The certificates that go with `key`: the configured `CertificateFile`s and the
/// identity's own `-cert.pub`, those certifying this very key.
fn certificates_for(
    options: &SshOptions,
    identity: &Path,
    key: &PrivateKey,
    keys: &KeyCache,
) -> Vec<(PathBuf, Arc<Certificate>)> {
    let mut own = identity.as_os_str().to_owned();
    own.push("-cert.pub");
    options
        .certificate_files
        .iter()
        .cloned()
        .chain(std::iter::once(PathBuf::from(own)))
        .filter_map(|path| keys.certificate(&path).map(|c| (path, c)))
        .filter(|(_, c)| c.public_key() == key.public_key().key_data())
        .collect()
}

fn method_names(methods: &russh::MethodSet) -> Vec<String> {
    methods.iter().map(String::from).collect()
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    options: &SshOptions,
    keys: &KeyCache,
) -> Result<(), TransportError> {
    let mut tried = Vec::new();
    let mut accepted: Vec<String> = Vec::new();
    let mut note = |result: &client::AuthResult| {
        if let client::AuthResult::Failure {
            remaining_methods, ..
        } = result
        {
            accepted = method_names(remaining_methods);
        }
    };
    for path in &options.identity_files {
        let key = keys.load(path)?;
        // A certificate first, as OpenSSH offers it.
        for (cert_path, cert) in certificates_for(options, path, &key, keys) {
            tried.push(format!("certificate {}", cert_path.display()));
            let result = handle
                .authenticate_openssh_cert(&options.user, key.clone(), (*cert).clone())
                .await?;
            if result.success() {
                return Ok(());
            }
            note(&result);
        }
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
        note(&result);
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
                        Ok(result) => note(&result),
                        Err(e) => tracing::debug!("agent signing failed: {e}"),
                    }
                }
            }
            Err(e) => tracing::debug!("cannot reach ssh-agent: {e}"),
        }
    }
    if tried.is_empty() {
        // Ask the server what it would take, so the message can say.
        if let Ok(result) = handle.authenticate_none(&options.user).await {
            if result.success() {
                return Ok(());
            }
            note(&result);
        }
    }
    Err(TransportError::AuthFailed {
        user: options.user.clone(),
        address: options.endpoint(),
        tried,
        accepted,
    })
}

/// The known_hosts files of one hop (indexed, shared by the run's connections).
#[derive(Debug)]
struct KnownHosts {
    files: Vec<(PathBuf, Arc<known_hosts::Index>)>,
}

impl KnownHosts {
    fn load(options: &SshOptions, cache: &KeyCache) -> Result<KnownHosts, TransportError> {
        let mut files = Vec::new();
        for path in std::iter::once(&options.known_hosts).chain(&options.extra_known_hosts) {
            let error = |source| TransportError::KnownHosts {
                path: path.display().to_string(),
                source,
            };
            let meta = match std::fs::metadata(path) {
                Ok(m) => Some((m.len(), m.modified().ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(error(e)),
            };
            let mut cached = cache
                .known_hosts
                .lock()
                .expect("known_hosts cache lock is never poisoned: no panics inside");
            let hit = match (cached.get(path), meta) {
                (Some((len, modified, index)), Some((l, m))) if *len == l && *modified == m => {
                    Some(index.clone())
                }
                _ => None,
            };
            let index = match hit {
                Some(index) => index,
                None => {
                    let text = match std::fs::read_to_string(path) {
                        Ok(s) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                        Err(e) => return Err(error(e)),
                    };
                    let index = Arc::new(known_hosts::Index::new(text));
                    if let Some((len, modified)) = meta {
                        cached.insert(path.clone(), (len, modified, index.clone()));
                    }
                    index
                }
            };
            files.push((path.clone(), index));
        }
        Ok(KnownHosts { files })
    }

    fn recorded_types(&self, lookup: &str) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for (_, index) in &self.files {
            for t in known_hosts::recorded_types_lines(index.candidates(lookup), lookup) {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        types
    }

    fn authorities(&self, lookup: &str) -> Vec<russh::keys::PublicKey> {
        self.files
            .iter()
            .flat_map(|(_, index)| known_hosts::authorities_lines(index.candidates(lookup), lookup))
            .collect()
    }

    /// The verdict over every file: a record of the key anywhere vouches for it; a revoked
    /// key is refused wherever the revocation is; else the first conflicting record.
    fn check(&self, lookup: &str, key_type: &str, blob: &str) -> (Verdict, String) {
        let mut changed = None;
        for (path, index) in &self.files {
            match known_hosts::check_lines(index.candidates(lookup), lookup, key_type, blob) {
                Verdict::Known => return (Verdict::Known, String::new()),
                v @ Verdict::Revoked { .. } => return (v, path.display().to_string()),
                v @ Verdict::Changed { .. } if changed.is_none() => {
                    changed = Some((v, path.display().to_string()));
                }
                _ => {}
            }
        }
        match changed {
            Some((v, path)) => (v, path),
            None => (Verdict::Unknown, String::new()),
        }
    }

    fn file_text(&self, path: &str) -> &str {
        self.files
            .iter()
            .find(|(p, _)| p.display().to_string() == path)
            .map(|(_, index)| index.text())
            .unwrap_or("")
    }
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
            // Until the exec request is out, the command cannot have run: said as such, so a
            // lost package transaction is known not to have started.
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(TransportError::NotSent)?;
            channel
                .exec(true, wrapped.into_bytes())
                .await
                .map_err(TransportError::NotSent)?;
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
    /// The name a host certificate must be issued for (`HostKeyAlias`, else the address).
    principal: String,
    known: Arc<KnownHosts>,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
    /// The host proved itself with a certificate (named so in [`Negotiated`]).
    certified: bool,
}

impl ClientHandler {
    /// A plain host key against the known_hosts records.
    fn check_key(&self, key: &russh::keys::PublicKey) -> Result<bool, TransportError> {
        let openssh = key.to_openssh().map_err(|e| TransportError::KeyLoad {
            path: "(server host key)".into(),
            message: e.to_string(),
        })?;
        let mut fields = openssh.split_ascii_whitespace();
        let (Some(key_type), Some(blob)) = (fields.next(), fields.next()) else {
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let primary = self.known_hosts.display().to_string();
        match self.known.check(&self.lookup, key_type, blob) {
            (Verdict::Known, _) => Ok(true),
            (Verdict::Changed { line }, file) => Err(TransportError::HostKeyMismatch(Box::new(
                super::HostKeyChanged {
                    host: self.lookup.clone(),
                    algorithm: key_type.to_string(),
                    fingerprint,
                    recorded_fingerprint: known_hosts::recorded_fingerprint(
                        self.known.file_text(&file),
                        line,
                    )
                    .unwrap_or_else(|| "(unreadable)".into()),
                    known_hosts: file,
                    line,
                },
            ))),
            (Verdict::Revoked { line }, file) => Err(TransportError::HostKeyMismatch(Box::new(
                super::HostKeyChanged {
                    host: self.lookup.clone(),
                    algorithm: key_type.to_string(),
                    fingerprint: fingerprint.clone(),
                    recorded_fingerprint: format!("{fingerprint} as @revoked"),
                    known_hosts: file,
                    line,
                },
            ))),
            (Verdict::Unknown, _) => match self.policy {
                HostKeyPolicy::Strict => Err(TransportError::HostKeyUnknown {
                    host: self.lookup.clone(),
                    algorithm: key_type.to_string(),
                    fingerprint,
                    known_hosts: primary,
                }),
                HostKeyPolicy::AcceptNew => {
                    known_hosts::append(&self.known_hosts, &self.lookup, key_type, blob).map_err(
                        |source| TransportError::KnownHosts {
                            path: primary,
                            source,
                        },
                    )?;
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

    /// A host certificate: signed by an authority known_hosts trusts for this host
    /// (`@cert-authority`), valid now, a host certificate, issued for this host's name, and
    /// neither it nor its authority revoked.
    fn check_certificate(&self, cert: &Certificate) -> Result<bool, TransportError> {
        let authorities = self.known.authorities(&self.lookup);
        let invalid = |reason: String| TransportError::HostCertificate {
            host: self.lookup.clone(),
            reason,
        };
        for (_, index) in &self.known.files {
            for revoked in [cert.public_key(), cert.signature_key()] {
                let key = russh::keys::PublicKey::new(revoked.clone(), "");
                if let Ok(openssh) = key.to_openssh() {
                    let mut f = openssh.split_ascii_whitespace();
                    if let (Some(t), Some(b)) = (f.next(), f.next()) {
                        if let Verdict::Revoked { line } =
                            known_hosts::check(index.text(), &self.lookup, t, b)
                        {
                            return Err(invalid(format!(
                                "its key or authority is marked @revoked (line {line})"
                            )));
                        }
                    }
                }
            }
        }
        if authorities.is_empty() {
            // Offered only when an authority is known; without one, the certified key is
            // checked as a plain key (as OpenSSH falls back).
            return self.check_key(&russh::keys::PublicKey::new(cert.public_key().clone(), ""));
        }
        let fingerprints: Vec<_> = authorities
            .iter()
            .map(|k| k.fingerprint(HashAlg::Sha256))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        cert.validate_at(now, fingerprints.iter()).map_err(|e| {
            invalid(format!(
                "{e} (signed by {}; trusted authorities: {})",
                cert.signature_key().fingerprint(HashAlg::Sha256),
                fingerprints
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::Host {
            return Err(invalid(
                "it is a user certificate, not a host certificate".into(),
            ));
        }
        if !cert.valid_principals().contains(&self.principal) {
            return Err(invalid(format!(
                "it is issued for {}, not for `{}`",
                if cert.valid_principals().is_empty() {
                    "no name".to_owned()
                } else {
                    cert.valid_principals()
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                self.principal
            )));
        }
        Ok(true)
    }
}

impl client::Handler for ClientHandler {
    type Error = TransportError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.check_key(key),
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
                self.certified = true;
                self.check_certificate(cert)
            }
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
            host_key: if self.certified {
                names.key.to_certificate_type()
            } else {
                names.key.as_str().to_string()
            },
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
            extra_known_hosts: vec![],
            host_key_alias: None,
            certificate_files: vec![],
            jumps: vec![],
        }
    }

    #[test]
    fn defaults_are_all_supported_by_russh() {
        let config = client_config(&options(), &[], false).unwrap();
        assert_eq!(config.preferred.kex[0].as_ref(), "curve25519-sha256");
        assert_eq!(config.preferred.cipher.len(), DEFAULT_CIPHERS.len());
        assert!(config.inactivity_timeout.is_none());
    }

    #[test]
    fn unknown_algorithms_are_rejected_by_name() {
        let mut o = options();
        o.kex = vec!["sntrup761x25519-sha512@openssh.com".into()];
        let err = client_config(&o, &[], false).unwrap_err();
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
    fn refused_connections_back_off_doubling_with_jitter_then_give_up() {
        let ms = |a, j| refused_backoff(a, j).map(|d| d.as_millis());
        assert_eq!(ms(0, 0.0), Some(200));
        assert_eq!(ms(1, 0.0), Some(400));
        assert_eq!(ms(2, 0.0), Some(800));
        assert_eq!(ms(2, 1.0), Some(1600));
        assert_eq!(ms(0, 0.5), Some(300));
        assert_eq!(ms(0, 7.0), Some(400), "jitter is clamped");
        assert_eq!(ms(REFUSED_RETRIES, 0.0), None);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    /// Counts the "trying again" debug events of refused connections and wakes a waiter on
    /// each: the control that says the first attempt was refused and the backoff started.
    struct Retries {
        seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        notify: std::sync::Arc<tokio::sync::Notify>,
    }

    impl std::io::Write for Retries {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if String::from_utf8_lossy(b).contains("connection refused, trying again") {
                self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.notify.notify_one();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `body` on a current-thread runtime with the retry events counted.
    fn with_retries<T>(
        body: impl FnOnce(
            std::sync::Arc<std::sync::atomic::AtomicUsize>,
            std::sync::Arc<tokio::sync::Notify>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>,
    ) -> T {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let (s, n) = (seen.clone(), notify.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Retries {
                seen: s.clone(),
                notify: n.clone(),
            })
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || runtime.block_on(body(seen, notify)))
    }

    fn timed_out(_: Stage) -> TransportError {
        TransportError::ConnectTimeout {
            address: "test".into(),
            seconds: 0,
            stage: "test",
        }
    }

    /// A loopback socket bound but not listening (connections to it are refused until
    /// `listen`), and options that point at it.
    fn refusing() -> (tokio::net::TcpSocket, SshOptions) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut o = options();
        o.port = socket.local_addr().unwrap().port();
        (socket, o)
    }

    #[test]
    fn a_refused_connection_is_tried_again_and_connects_once_the_host_listens() {
        with_retries(|seen, notify| {
            Box::pin(async move {
                // Bound but not listening: connections are refused until `listen`.
                let (socket, o) = refusing();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                let connecting = tcp_connect(&o, deadline, &timed_out);
                tokio::pin!(connecting);
                tokio::select! {
                    r = &mut connecting => panic!("ended before any retry: {r:?}"),
                    _ = notify.notified() => {}
                }
                let listener = socket.listen(16).unwrap();
                let (stream, accepted) = tokio::join!(connecting, listener.accept());
                stream.expect("connected on a retry");
                accepted.unwrap();
                assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 1);
            })
        });
    }

    #[test]
    fn a_host_that_stays_refused_is_reported_after_the_retries_and_never_past_the_deadline() {
        let (retries, error) = with_retries(|seen, _| {
            Box::pin(async move {
                let (_socket, o) = refusing();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                let e = tcp_connect(&o, deadline, &timed_out).await.unwrap_err();
                (seen.load(std::sync::atomic::Ordering::SeqCst), e)
            })
        });
        assert_eq!(retries, REFUSED_RETRIES as usize);
        assert!(matches!(error, TransportError::Refused { .. }), "{error:?}");
        // A deadline shorter than the first wait: refused at once, no retry.
        let (retries, error) = with_retries(|seen, _| {
            Box::pin(async move {
                let (_socket, o) = refusing();
                let deadline = tokio::time::Instant::now() + Duration::from_millis(150);
                let e = tcp_connect(&o, deadline, &timed_out).await;
                (seen.load(std::sync::atomic::Ordering::SeqCst), e)
            })
        });
        assert_eq!(retries, 0);
        assert!(
            matches!(error, Err(TransportError::Refused { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn endpoint_brackets_ipv6() {
        let mut o = options();
        assert_eq!(o.endpoint(), "127.0.0.1:22");
        o.address = "::1".into();
        assert_eq!(o.endpoint(), "[::1]:22");
    }
}
