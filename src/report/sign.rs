//! Signatures of report commits, made exactly as `git commit -S` makes them so that
//! `git log --show-signature` verifies them: SSH (`gpg.format=ssh`, `ssh-keygen -Y sign -n
//! git`, verified with `gpg.ssh.allowedSignersFile`) or OpenPGP (`gpg -bsau KEY`, verified
//! with the signer's public key in the verifier's keyring).
//!
//! Both tools read the commit buffer on standard input, so a passphrase prompt cannot be
//! answered there: keys must be unencrypted or unlocked in their agent (ssh-agent,
//! gpg-agent). GnuPG runs with `--batch` so a locked key fails at once instead of waiting
//! for a pinentry nobody sees.

use std::io::Write;
use std::process::{Command, Output, Stdio};

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

/// Runs the signing tool with `content` on standard input; a non-zero exit is an error
/// carrying the tool's own explanation.
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
    // The handle exists: stdin was configured as piped just above.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(content.as_bytes())
            .map_err(|e| failure(signing, &format!("cannot write to {tool}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failure(signing, &format!("{tool} did not finish: {e}")))?;
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
