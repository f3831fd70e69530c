//! Signatures of report commits, made exactly as `git commit -S` makes them so that
//! `git log --show-signature` verifies them: SSH (`gpg.format=ssh`, `ssh-keygen -Y sign -n
//! git`, verified with `gpg.ssh.allowedSignersFile`) or OpenPGP (`gpg -bsau KEY`, verified
//! with the signer's public key in the verifier's keyring).
//!
//! Both tools read the commit buffer on standard input, so a passphrase prompt cannot be
//! answered there: keys must be unencrypted or unlocked in their agent (ssh-agent,
//! gpg-agent). GnuPG runs with `--batch` so a locked key fails at once instead of waiting
//! for a pinentry nobody sees.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use super::{ReportError, Signing};

/// Signs `content` (a commit buffer) and returns the armored signature.
pub fn sign(signing: &Signing, content: &str) -> Result<String, ReportError> {
    match signing {
        Signing::Ssh(key) => {
            if !key.exists() {
                return Err(failure(
                    signing,
                    "key file does not exist (for an OpenPGP key id set `reports.signingFormat: openpgp`)",
                ));
            }
            let mut cmd = Command::new("ssh-keygen");
            cmd.args(["-Y", "sign", "-n", "git", "-f"]).arg(key);
            let out = run(signing, cmd, "ssh-keygen", content)?;
            armored(signing, out, "ssh-keygen", "-----BEGIN SSH SIGNATURE-----")
        }
        Signing::OpenPgp(key) => {
            let mut cmd = Command::new("gpg");
            // What git runs (`gpg --status-fd=2 -bsau KEY`), plus --batch (see above).
            cmd.args(["--batch", "--status-fd=2", "-bsau", key]);
            let out = run(signing, cmd, "gpg", content)?;
            // gpg can exit 0 without signing (e.g. an expired key on some versions); git
            // trusts only the status line, and so do we.
            if !String::from_utf8_lossy(&out.stderr).contains("[GNUPG:] SIG_CREATED ") {
                return Err(failure(
                    signing,
                    &format!(
                        "gpg made no signature: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            armored(signing, out, "gpg", "-----BEGIN PGP SIGNATURE-----")
        }
    }
}

fn failure(signing: &Signing, message: &str) -> ReportError {
    ReportError::Signing {
        key: signing.key(),
        message: message.to_owned(),
    }
}

/// How long a signing tool may run: `PATCHKEEPER_SIGN_TIMEOUT` (a duration, default `60s`).
/// A key whose agent waits for a pinentry nobody answers would otherwise hang `serve`.
pub fn timeout() -> Duration {
    std::env::var("PATCHKEEPER_SIGN_TIMEOUT")
        .ok()
        .and_then(|v| crate::duration::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
}

/// Runs the signing tool with `content` on standard input; a non-zero exit is an error
/// carrying the tool's own explanation, and a tool still running after [`timeout`] is
/// killed and reported as stalled.
fn run(
    signing: &Signing,
    mut cmd: Command,
    tool: &str,
    content: &str,
) -> Result<Output, ReportError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failure(signing, &format!("cannot run {tool}: {e}")))?;
    // Fed and drained on their own threads, so neither a tool that prints before reading
    // nor one that never reads can block us past the deadline.
    let feed = child.stdin.take().map(|mut stdin| {
        let content = content.to_owned();
        std::thread::spawn(move || stdin.write_all(content.as_bytes()))
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                buf
            })
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let limit = timeout();
    let status = match child.wait_timeout(limit) {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Killed, and the reader threads left behind: a process the tool started may
            // still hold the pipes open.
            let _ = child.kill();
            let _ = child.wait();
            return Err(failure(
                signing,
                &format!(
                    "{tool} did not finish within {}s and was killed (a passphrase or pinentry prompt nobody can answer? PATCHKEEPER_SIGN_TIMEOUT)",
                    limit.as_secs()
                ),
            ));
        }
        Err(e) => return Err(failure(signing, &format!("{tool} did not finish: {e}"))),
    };
    // A tool that fails early (gpg with an unknown key) may exit before reading its
    // input: then its own failure is the reason, not the broken pipe it left behind.
    let fed = feed.map(|f| f.join());
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let out = Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    };
    if !out.status.success() {
        return Err(failure(
            signing,
            &format!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    if let Some(Ok(Err(e))) = fed {
        return Err(failure(signing, &format!("cannot write to {tool}: {e}")));
    }
    Ok(out)
}

fn armored(signing: &Signing, out: Output, tool: &str, begin: &str) -> Result<String, ReportError> {
    let sig = String::from_utf8(out.stdout)
        .map_err(|_| failure(signing, &format!("{tool}'s signature is not text")))?;
    if !sig.starts_with(begin) {
        return Err(failure(signing, &format!("{tool} printed no signature")));
    }
    Ok(sig)
}
