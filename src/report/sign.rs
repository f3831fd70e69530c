//! SSH signatures of report commits, made by `ssh-keygen -Y sign -n git` exactly as
//! `git commit -S` with `gpg.format=ssh` makes them, so `git log --show-signature` verifies
//! them with `gpg.ssh.allowedSignersFile`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::ReportError;

/// Signs `content` (a commit buffer) with the SSH private key at `key` (or with the agent's
/// key when `key` is a public key file) and returns the armored signature.
pub fn ssh_sign(key: &Path, content: &str) -> Result<String, ReportError> {
    let fail = |message: String| ReportError::Signing {
        key: key.display().to_string(),
        message,
    };
    if !key.exists() {
        return Err(fail(
            "key file does not exist (OpenPGP key ids are not supported yet)".into(),
        ));
    }
    // Without file arguments ssh-keygen signs standard input and writes to standard output;
    // stdin is the data, so a passphrase prompt cannot be answered: keys must be unencrypted
    // or in the agent.
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run ssh-keygen: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(content.as_bytes())
        .map_err(|e| fail(format!("cannot write to ssh-keygen: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("ssh-keygen did not finish: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "ssh-keygen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let sig = String::from_utf8(out.stdout).map_err(|_| fail("signature is not text".into()))?;
    if !sig.starts_with("-----BEGIN SSH SIGNATURE-----") {
        return Err(fail("ssh-keygen printed no signature".into()));
    }
    Ok(sig)
}
