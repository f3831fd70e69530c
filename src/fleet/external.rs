//! Inventories from outside the fleet repo's YAML: each Inventory's `ansible` source is read
//! (a file, or a command run on the controller with its operator's opt-in), converted by
//! [`crate::ansible`], and its hosts and groups added to the document. Problems become
//! `inventory-source` diagnostics at the source's place; what does not convert is logged
//! (`patchkeeper import ansible FILE` lists it).
//!
//! Guarantees: a command runs only with `--allow-local-commands`, never through a shell,
//! in the fleet repo, with its output bounded and a deadline after which it is killed and
//! reaped; a file must lie inside the repo or an allowed directory. The source's bytes are
//! part of the fleet digest, so a saved plan is refused when the inventory changed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;
use wait_timeout::ChildExt;

use super::Fleet;
use crate::diagnostic::{Code, Diagnostic};
use crate::model::AnsibleSource;
use crate::trust::ControllerTrust;

/// The most an inventory source may produce (a large cloud inventory is a few MiB).
pub const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads every Inventory's `ansible` source into its document.
pub(super) fn expand(fleet: &mut Fleet, diags: &mut Vec<Diagnostic>, hasher: &mut sha2::Sha256) {
    let trust = ControllerTrust::current();
    let root = fleet.root.clone();
    for inventory in &mut fleet.inventories {
        let Some(source) = inventory.doc.spec.ansible.clone() else {
            continue;
        };
        let name = inventory.doc.metadata.name.clone();
        let origin = inventory.origin.clone();
        let fail = |pointer: &str, message: String| {
            Diagnostic::new(Code::InventorySource, origin.at(pointer), message)
        };
        let read = match (&source.file, &source.command) {
            (Some(file), None) => {
                read_file(&root, &name, file, &trust).map_err(|m| fail("/spec/ansible/file", m))
            }
            (None, Some(command)) => run_command(&root, &name, command, &source, &trust)
                .map_err(|m| fail("/spec/ansible/command", m)),
            _ => Err(fail(
                "/spec/ansible",
                "give exactly one of `file` and `command`".into(),
            )),
        };
        let text = match read {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                fleet.broken.incomplete = true;
                continue;
            }
        };
        hasher.update(b"ansible-source\0");
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        let parsed = crate::ansible::parse(&text, crate::ansible::detect(&text));
        let inv = match parsed {
            Ok(inv) => inv,
            Err(e) => {
                diags.push(fail(
                    "/spec/ansible",
                    format!("the Ansible inventory does not parse: {e}"),
                ));
                fleet.broken.incomplete = true;
                continue;
            }
        };
        let imported = crate::ansible::convert(
            &inv,
            &crate::ansible::Options {
                labels: source.labels.clone(),
            },
        );
        for l in &imported.lossy {
            tracing::debug!(inventory = %name, "ansible source: {l}");
        }
        let spec = &mut inventory.doc.spec;
        for g in imported.spec.groups {
            if !spec.groups.iter().any(|have| have.name == g.name) {
                spec.groups.push(g);
            }
        }
        spec.hosts.extend(imported.spec.hosts);
    }
}

fn read_file(
    root: &Path,
    inventory: &str,
    file: &str,
    trust: &ControllerTrust,
) -> Result<String, String> {
    let path = root.join(file);
    trust
        .check_path(
            root,
            &format!("ansible.file of inventory {inventory}"),
            file,
            &path,
        )
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    std::fs::File::open(&path)
        .map_err(|e| format!("cannot read `{file}`: {e}"))?
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read `{file}`: {e}"))?;
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!("`{file}` is larger than {MAX_SOURCE_BYTES} bytes"));
    }
    Ok(text)
}

fn run_command(
    root: &Path,
    inventory: &str,
    command: &[String],
    source: &AnsibleSource,
    trust: &ControllerTrust,
) -> Result<String, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("the command is empty".into());
    };
    trust
        .check_inventory_command(inventory, program)
        .map_err(|e| e.to_string())?;
    let limit = match &source.timeout {
        Some(t) => crate::duration::parse_duration(t).map_err(|e| format!("timeout: {e}"))?,
        None => Duration::from_secs(60),
    };
    // A program named with a path is the repo's (`inventory/ec2.py`); a bare name is looked
    // up in PATH as usual.
    let resolved = if program.contains('/') {
        root.join(program)
    } else {
        PathBuf::from(program)
    };
    let shown = command.join(" ");
    let mut child = std::process::Command::new(&resolved)
        .args(args)
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let stdout = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let read = out.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut buf);
            read.map(|_| buf)
        })
    });
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.take(64 * 1024).read_to_end(&mut buf);
            buf
        })
    });
    let status = match child.wait_timeout(limit) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{shown}` did not finish within {}s (ansible.timeout); it was killed",
                limit.as_secs()
            ));
        }
        Err(e) => return Err(format!("waiting for `{shown}`: {e}")),
    };
    let out = stdout
        .and_then(|h| h.join().ok())
        .transpose()
        .map_err(|e| format!("reading the output of `{shown}`: {e}"))?
        .unwrap_or_default();
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let tail: String = err
            .trim()
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "`{shown}` failed ({status}){}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::terminal::escape(&tail))
            }
        ));
    }
    if out.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!(
            "`{shown}` printed more than {MAX_SOURCE_BYTES} bytes"
        ));
    }
    String::from_utf8(out).map_err(|_| format!("the output of `{shown}` is not UTF-8 text"))
}
