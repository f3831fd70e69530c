//! How commands reach a host: the [`Transport`] trait, with an SSH implementation
//! ([`ssh`], one russh connection per host reused for every command) and a local one
//! ([`local`], for the machine patchkeeper runs on).
//!
//! This layer knows nothing about package managers or observed state: it runs a shell
//! command with optional standard input within [`ExecOptions`] (a deadline, an output cap,
//! and whether the command may be signalled) and returns what came back.
//!
//! A host's output is untrusted: every command's stdout and stderr together are capped
//! ([`MAX_OUTPUT`] by default). A command over the cap is stopped and fails with
//! [`TransportError::OutputTooLarge`], so a host streaming gigabytes costs the controller at
//! most the cap, never its memory. A package transaction ([`ExecOptions::transaction`]) is
//! never signalled: past the cap its output is elided in the middle (head and tail kept),
//! and at its deadline patchkeeper stops waiting and leaves it running.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod known_hosts;
pub mod local;
pub mod ssh;
pub mod ssh_config;

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

/// The default cap on one command's output (stdout and stderr together): 64 MiB. An
/// observation of a host with 10,000 packages prints about 1 MiB; the cap leaves room for
/// fleets far beyond that and bounds what one hostile or broken host can make the
/// controller hold.
pub const MAX_OUTPUT: usize = 64 << 20;

/// How one command runs: its deadline, its output cap, and whether it may be signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    /// How long to wait for the command to finish (its channel closed); `None`: as long as
    /// the connection lives (keepalives detect a dead one).
    pub deadline: Option<Duration>,
    /// A package transaction: never signalled — at the deadline patchkeeper stops waiting
    /// and leaves it running ([`TransportError::Abandoned`]) — and output beyond the cap is
    /// elided in the middle instead of failing the command.
    pub transaction: bool,
    /// Most bytes of stdout and stderr together kept from the command.
    pub max_output: usize,
}

impl ExecOptions {
    /// An ordinary command: killed at `deadline`, failed when its output exceeds
    /// [`MAX_OUTPUT`].
    pub fn command(deadline: Duration) -> ExecOptions {
        ExecOptions {
            deadline: Some(deadline),
            transaction: false,
            max_output: MAX_OUTPUT,
        }
    }

    /// A package transaction (install, rollback, repair): never signalled, waited for up to
    /// `deadline` (`None`: without end), its output kept within [`MAX_OUTPUT`] by eliding the
    /// middle.
    pub fn transaction(deadline: Option<Duration>) -> ExecOptions {
        ExecOptions {
            deadline,
            transaction: true,
            max_output: MAX_OUTPUT,
        }
    }
}

/// The command as named in errors: its first line, at most 80 characters.
pub fn command_label(command: &str) -> String {
    let first = command.lines().next().unwrap_or_default();
    let mut label: String = first.chars().take(80).collect();
    if label.len() < command.len() {
        label.push('…');
    }
    label
}

/// A command printed more than its cap (ordinary commands only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Collects a command's stdout and stderr within [`ExecOptions::max_output`]: an ordinary
/// command over the cap is an [`Overflow`]; a transaction keeps the head and the tail of
/// each stream (a quarter of the cap each) and counts what it dropped between them.
#[derive(Debug)]
pub(crate) struct Capture {
    limit: usize,
    elide: bool,
    out: Stream,
    err: Stream,
}

#[derive(Debug, Default)]
struct Stream {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: u64,
}

impl Stream {
    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Keeps `half` bytes at each end.
    fn push_elided(&mut self, data: &[u8], half: usize) {
        let room = half.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..room]);
        let rest = &data[room..];
        if rest.is_empty() {
            return;
        }
        // Only the last `half` bytes of `rest` can survive; the rest of the old tail with them.
        let keep = &rest[rest.len().saturating_sub(half)..];
        self.omitted += (rest.len() - keep.len()) as u64;
        self.tail.extend(keep);
        let excess = self.tail.len().saturating_sub(half);
        self.tail.drain(..excess);
        self.omitted += excess as u64;
    }

    fn finish(self) -> Vec<u8> {
        let mut v = self.head;
        if self.omitted > 0 {
            v.extend_from_slice(
                format!(
                    "\n[patchkeeper: {} bytes of output omitted]\n",
                    self.omitted
                )
                .as_bytes(),
            );
        }
        v.extend(self.tail);
        v
    }
}

impl Capture {
    /// An empty capture for a command run with `options`.
    pub(crate) fn new(options: &ExecOptions) -> Capture {
        Capture {
            limit: options.max_output,
            elide: options.transaction,
            out: Stream::default(),
            err: Stream::default(),
        }
    }

    /// Standard output arrived.
    pub(crate) fn stdout(&mut self, data: &[u8]) -> Result<(), Overflow> {
        self.push(false, data)
    }

    /// Standard error arrived.
    pub(crate) fn stderr(&mut self, data: &[u8]) -> Result<(), Overflow> {
        self.push(true, data)
    }

    fn push(&mut self, stderr: bool, data: &[u8]) -> Result<(), Overflow> {
        let total = self.out.len() + self.err.len();
        let (limit, elide) = (self.limit, self.elide);
        let stream = if stderr { &mut self.err } else { &mut self.out };
        if elide {
            stream.push_elided(data, limit / 4);
            return Ok(());
        }
        if total.saturating_add(data.len()) > limit {
            return Err(Overflow);
        }
        stream.head.extend_from_slice(data);
        Ok(())
    }

    /// The output, with the exit status.
    pub(crate) fn finish(self, exit: Option<u32>) -> Output {
        Output {
            exit,
            stdout: self.out.finish(),
            stderr: self.err.finish(),
        }
    }
}

/// Runs commands on one host. Implementations keep one connection open for all commands.
pub trait Transport: Send + Sync {
    /// Runs `command` with `sh -c` semantics (escalated with `sudo -n` when configured),
    /// feeding `stdin` if given, within `options`.
    fn exec_with<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        options: ExecOptions,
    ) -> BoxFuture<'a, Result<Output, TransportError>>;

    /// Runs an ordinary command ([`ExecOptions::command`]): killed after `timeout`, failed
    /// when it prints more than [`MAX_OUTPUT`].
    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<&'a [u8]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, TransportError>> {
        self.exec_with(command, stdin, ExecOptions::command(timeout))
    }

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

/// Errors of the transport layer. Messages name the address and say what happened in the
/// words an operator uses (never a bare protocol error); the caller adds the host name.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The name does not resolve (DNS, `/etc/hosts`), or the resolver cannot be reached.
    #[error("name `{name}` not resolved: {message}")]
    NameNotResolved {
        /// The name.
        name: String,
        /// The resolver's words (`Name or service not known`).
        message: String,
    },
    /// Nothing listens on the port.
    #[error("connection refused by {address}")]
    Refused {
        /// `host:port`.
        address: String,
    },
    /// The network or host cannot be reached from here (no route).
    #[error("no route to {address}: {message}")]
    NoRoute {
        /// `host:port`.
        address: String,
        /// The system's words (`Network is unreachable`).
        message: String,
    },
    /// A hop did not get through connect, handshake and login in time.
    #[error("connecting to {address} timed out after {seconds}s: {stage}")]
    ConnectTimeout {
        /// `host:port`.
        address: String,
        /// The deadline.
        seconds: u64,
        /// Where it stopped, and what that means (`no answer to the TCP connect…`).
        stage: &'static str,
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
    /// The server closed the connection before login was complete.
    #[error("{address} closed the connection during {stage}{hint}")]
    Closed {
        /// `host:port`.
        address: String,
        /// Where.
        stage: &'static str,
        /// Likely causes (starts with ` (`), or empty.
        hint: &'static str,
    },
    /// The server did not speak SSH.
    #[error("{address} is not an SSH server (it did not answer with an SSH version line)")]
    NotSsh {
        /// `host:port`.
        address: String,
    },
    /// The SSH handshake failed for another reason (no common algorithm...).
    #[error("SSH handshake with {address} failed: {message}")]
    Handshake {
        /// `host:port`.
        address: String,
        /// What went wrong.
        message: String,
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
    #[error("{0}")]
    HostKeyMismatch(Box<HostKeyChanged>),
    /// The host presented a certificate that known_hosts' authorities do not vouch for.
    #[error("host certificate of {host} is not valid: {reason}")]
    HostCertificate {
        /// The name looked up.
        host: String,
        /// Why.
        reason: String,
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
    #[error("authentication failed for user {user} at {address} (tried {}{})", if tried.is_empty() { "nothing: no key file and no agent key".to_string() } else { tried.join(", ") }, if accepted.is_empty() { String::new() } else { format!("; the server accepts {}", accepted.join(", ")) })]
    AuthFailed {
        /// Login user.
        user: String,
        /// `host:port`.
        address: String,
        /// What was offered (`key PATH`, `certificate PATH`, `agent key COMMENT`).
        tried: Vec<String>,
        /// The methods the server said may continue (`publickey`, `password`...).
        accepted: Vec<String>,
    },
    /// A jump host could not open a channel to the next hop.
    #[error("could not open a connection to {target}: {reason}")]
    ChannelOpen {
        /// `host:port` of the next hop.
        target: String,
        /// The jump host's reason.
        reason: String,
    },
    /// A jump host (`ProxyJump`) failed: connecting to it, logging in, or reaching the next
    /// hop through it. Shared by every host behind it in one run.
    #[error("jump host {jump}: {source}")]
    Jump {
        /// The hop as written and its address.
        jump: String,
        /// What went wrong there.
        #[source]
        source: std::sync::Arc<TransportError>,
    },
    /// A configured algorithm name is not supported.
    #[error("unsupported {what} algorithm `{name}`")]
    UnsupportedAlgorithm {
        /// `kex` or `cipher`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A command did not finish in time (it was signalled and its channel closed).
    #[error("command timed out after {seconds}s")]
    CommandTimeout {
        /// The deadline.
        seconds: u64,
    },
    /// A package transaction outlived its deadline: patchkeeper stopped waiting for it and
    /// never signalled it (it may still be running on the host).
    #[error("still running after {seconds}s; patchkeeper stopped waiting and did not signal it")]
    Abandoned {
        /// The deadline.
        seconds: u64,
    },
    /// A command printed more than the cap (it was stopped and its channel closed).
    #[error("`{command}` printed more than {} MiB of output, the limit per command; it was stopped", limit >> 20)]
    OutputTooLarge {
        /// The command (first line, clipped).
        command: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The local command could not be started.
    #[error("cannot run local command: {0}")]
    Spawn(#[source] std::io::Error),
    /// The command never reached the host: opening its channel or sending it failed (the
    /// connection was lost before), so it did not run.
    #[error("the command could not be sent: {}", describe_ssh(.0))]
    NotSent(#[source] russh::Error),
    /// The SSH protocol failed after login (connection loss, keepalive timeouts).
    #[error("{}", describe_ssh(.0))]
    Ssh(#[from] russh::Error),
}

/// A host key that differs from the recorded one: both fingerprints and where the record is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host key for {host} has changed: the host offers {algorithm} {fingerprint}, {known_hosts}:{line} records {recorded_fingerprint} (someone may be intercepting the connection, or the host was reinstalled: check, then update that line)")]
pub struct HostKeyChanged {
    /// The name looked up.
    pub host: String,
    /// Key algorithm.
    pub algorithm: String,
    /// `SHA256:...` of the offered key.
    pub fingerprint: String,
    /// `SHA256:...` of the recorded key.
    pub recorded_fingerprint: String,
    /// The file consulted.
    pub known_hosts: String,
    /// 1-based line of the conflicting record.
    pub line: usize,
}

/// russh's protocol errors in words: what happened to the connection.
pub fn describe_ssh(e: &russh::Error) -> String {
    match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the connection was closed by the host (or the network dropped it)".into()
        }
        russh::Error::KeepaliveTimeout => {
            "the host stopped answering keepalives (it went down, or the network dropped it)".into()
        }
        russh::Error::ConnectionTimeout | russh::Error::InactivityTimeout => {
            "the connection timed out".into()
        }
        russh::Error::SendError | russh::Error::RecvError => {
            "the SSH session ended (the connection was lost)".into()
        }
        russh::Error::ChannelOpenFailure(reason) => {
            format!("the host refused to open a channel ({reason:?}; sshd's MaxSessions?)")
        }
        russh::Error::IO(io) => format!("connection error: {io}"),
        other => format!("SSH protocol error: {other}"),
    }
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

/// Wraps a package transaction so that it never depends on the session that started it: it
/// runs in a background subshell with SIGHUP ignored (and SIGINT/SIGQUIT, as every
/// asynchronous list of a non-interactive shell), its stdout and stderr going to files in a
/// fresh temporary directory on the host, which are printed once it has ended. When the
/// channel closes first (the transaction outlived `apply.transactionTimeout`, or the
/// controller died), the package manager writes to its files, not to the closed session,
/// so no SIGPIPE cuts it short mid-transaction; the shell waiting for it prints into the
/// void and still removes the files. Its exit status is the command's (128 + N when a
/// signal ended it).
pub fn detach_transaction(command: &str) -> String {
    // The newline before `}` ends the command whatever its last word is (a comment too).
    format!(
        "pk_d=$(mktemp -d) || exit 125\n\
         ( trap '' HUP; {{ {command}\n}} >\"$pk_d/out\" 2>\"$pk_d/err\" </dev/null ) &\n\
         wait $!; pk_rc=$?; trap '' PIPE\n\
         cat \"$pk_d/out\"; cat \"$pk_d/err\" >&2; rm -rf \"$pk_d\"; exit $pk_rc"
    )
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
    fn commands_over_the_cap_overflow_and_transactions_keep_head_and_tail() {
        let mut options = ExecOptions::command(Duration::from_secs(1));
        options.max_output = 8;
        let mut c = Capture::new(&options);
        c.stdout(b"12345").unwrap();
        c.stderr(b"678").unwrap();
        assert_eq!(c.stdout(b"9"), Err(Overflow));
        let out = c.finish(Some(0));
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"12345"[..], &b"678"[..])
        );

        let mut options = ExecOptions::transaction(None);
        options.max_output = 16; // 4 bytes of head and 4 of tail per stream
        let mut c = Capture::new(&options);
        for chunk in [&b"ab"[..], b"cdef", b"ghijklmn", b"o", b"pq"] {
            c.stdout(chunk).unwrap();
        }
        c.stderr(b"err").unwrap();
        let out = c.finish(None);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "abcd\n[patchkeeper: 9 bytes of output omitted]\nnopq"
        );
        assert_eq!(out.stderr, b"err");
    }

    #[test]
    fn labels_are_one_clipped_line() {
        assert_eq!(command_label("sh -s"), "sh -s");
        assert_eq!(command_label("a\nb"), "a…");
        assert_eq!(command_label(&"x".repeat(100)).chars().count(), 81);
    }

    #[test]
    fn a_detached_transaction_keeps_its_output_and_exit_status() {
        let tmp = tempfile::tempdir().unwrap();
        let run = |command: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(detach_transaction(command))
                .env("TMPDIR", tmp.path())
                .output()
                .unwrap();
            // Its output files are gone once it has ended, however it ended.
            assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
            out
        };
        let out = run("echo out; echo err >&2; echo more; exit 3 # a comment");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\nmore\n");
        assert_eq!(out.stderr, b"err\n");
        let out = run("DEBIAN_FRONTEND=noninteractive sh -c 'echo $DEBIAN_FRONTEND' && true");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(out.stdout, b"noninteractive\n");
        // A signal that ends it is its exit status.
        let out = run("sh -c 'kill -TERM $$'");
        assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
        // It reads nothing from the session.
        let out = run("cat");
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn sudo_wrap_keeps_the_command_whole() {
        assert_eq!(
            sudo_wrap("echo 'hi'"),
            r#"sudo -n -- sh -c 'echo '\''hi'\'''"#
        );
    }
}
