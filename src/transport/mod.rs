//! How commands reach a host: the [`Transport`] trait, with an SSH implementation
//! ([`ssh`], one russh connection per host reused for every command) and a local one
//! ([`local`], for the machine patchkeeper runs on).
//!
//! This layer knows nothing about package managers or observed state: it runs a shell
//! command with optional standard input and a deadline, and returns what came back.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod known_hosts;
pub mod local;
pub mod ssh;

/// A boxed future, so transports can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a remote command returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Exit status; `None` when the command was killed by a signal or the server sent none.
    pub exit: Option<u32>,
    /// Everything written to standard output.
    pub stdout: Vec<u8>,
    /// Everything written to standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.exit == Some(0)
    }

    /// Standard error as lossy UTF-8, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs commands on one host. Implementations keep one connection open for all commands.
pub trait Transport: Send + Sync {
    /// Runs `command` with `sh -c` semantics (escalated with `sudo -n` when configured),
    /// feeding `stdin` if given, and waits at most `timeout` for it to finish.
    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, TransportError>>;

    /// Closes the connection politely (disconnect message, socket closed).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// Key exchange and cipher negotiated (`None` for the local transport).
    fn negotiated(&self) -> Option<Negotiated> {
        None
    }
}

/// Algorithms negotiated on an SSH connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Key exchange (e.g. `curve25519-sha256`).
    pub kex: String,
    /// Cipher (e.g. `chacha20-poly1305@openssh.com`).
    pub cipher: String,
    /// Host key algorithm.
    pub host_key: String,
}

/// Errors of the transport layer. Messages name the address; the caller adds the host name.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing listens on the port.
    #[error("connection refused by {address}")]
    Refused {
        /// `host:port`.
        address: String,
    },
    /// TCP connect plus SSH handshake and login took too long.
    #[error("connecting to {address} timed out after {seconds}s")]
    ConnectTimeout {
        /// `host:port`.
        address: String,
        /// The deadline.
        seconds: u64,
    },
    /// Network failure while connecting.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The host key is not in known_hosts and the policy is strict.
    #[error("host key for {host} is not known: {algorithm} key fingerprint is {fingerprint} (not in {known_hosts})")]
    HostKeyUnknown {
        /// The name looked up (`host` or `[host]:port`).
        host: String,
        /// Key algorithm.
        algorithm: String,
        /// `SHA256:...`.
        fingerprint: String,
        /// The file consulted.
        known_hosts: String,
    },
    /// The host key differs from the recorded one (or is revoked).
    #[error("host key for {host} has changed: offered {algorithm} key fingerprint is {fingerprint}, {known_hosts}:{line} records another")]
    HostKeyMismatch {
        /// The name looked up.
        host: String,
        /// Key algorithm.
        algorithm: String,
        /// `SHA256:...` of the offered key.
        fingerprint: String,
        /// The file consulted.
        known_hosts: String,
        /// 1-based line of the conflicting record.
        line: usize,
    },
    /// known_hosts could not be read or written.
    #[error("known_hosts file {path}: {source}")]
    KnownHosts {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file could not be loaded.
    #[error("cannot load private key {path}: {message}")]
    KeyLoad {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Every credential was rejected.
    #[error("authentication failed for user {user} (tried {})", if tried.is_empty() { "nothing: no key file and no agent".to_string() } else { tried.join(", ") })]
    AuthFailed {
        /// Login user.
        user: String,
        /// What was offered.
        tried: Vec<String>,
    },
    /// A configured algorithm name is not supported.
    #[error("unsupported {what} algorithm `{name}`")]
    UnsupportedAlgorithm {
        /// `kex` or `cipher`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A command did not finish in time (it was abandoned and its channel closed).
    #[error("command timed out after {seconds}s")]
    CommandTimeout {
        /// The deadline.
        seconds: u64,
    },
    /// The local command could not be started.
    #[error("cannot run local command: {0}")]
    Spawn(#[source] std::io::Error),
    /// The SSH protocol failed (includes connection loss and keepalive timeouts).
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
}

/// Quotes `s` for a POSIX shell (single quotes, `'` as `'\''`): the one function through
/// which every value put into a remote command passes. Words of only `[A-Za-z0-9-_./=:,+@%]`
/// stay bare (nothing in them is special to `sh`); anything else is single-quoted, inside
/// which `sh` interprets nothing.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Wraps a command for `sudo -n` (never prompts: a password requirement fails fast).
pub fn sudo_wrap(command: &str) -> String {
    format!("sudo -n -- sh -c {}", shell_quote(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_sh() {
        for s in [
            "plain",
            "",
            "it's",
            "a b",
            "$(rm -rf /)",
            "x\"y",
            "new\nline",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    fn through_sh(s: &str) -> Vec<u8> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(s)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{s:?}");
        out.stdout
    }

    #[test]
    fn hostile_words_stay_one_literal_argument() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let m = marker.display();
        for s in [
            format!("; touch {m}"),
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("x\ntouch {m}"),
            format!("x' ; touch {m} ; '"),
            format!("\\'$(touch {m})"),
            format!("a&&touch {m}||b|c>{m}"),
            "-oDPkg::Pre-Invoke::=id".to_string(),
            "~root *.rs ?[a] {a,b} !x #c".to_string(),
            "\u{1b}[2J\t\r é \u{202e}".to_string(),
        ] {
            assert_eq!(through_sh(&s), s.as_bytes());
            // Also through `sudo_wrap`'s second level of quoting, as a root host runs it.
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "sh -c {}",
                    shell_quote(&format!("printf %s {}", shell_quote(&s)))
                ))
                .output()
                .unwrap();
            assert_eq!(out.stdout, s.as_bytes());
        }
        assert!(!marker.exists());
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_through_sh(s in "[^\\x00]{0,40}") {
            proptest::prop_assert_eq!(through_sh(&s), s.as_bytes());
        }
    }

    #[test]
    fn sudo_wrap_keeps_the_command_whole() {
        assert_eq!(
            sudo_wrap("echo 'hi'"),
            r#"sudo -n -- sh -c 'echo '\''hi'\'''"#
        );
    }
}
