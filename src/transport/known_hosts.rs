//! OpenSSH `known_hosts` lookups: plain, `[host]:port`, wildcard, negated and hashed
//! (`|1|salt|hash`) patterns, `@revoked` markers and `@cert-authority` lines (the
//! authorities whose host certificates are trusted for matching hosts). Parsing and
//! matching are pure; only [`append`] touches the file.
//!
//! Written here rather than using russh's helper because that one splits on single spaces
//! only and knows neither markers, wildcards nor negation.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};

/// What known_hosts says about an offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The exact key is recorded for this host.
    Known,
    /// No key of this type is recorded for this host.
    Unknown,
    /// Another key of the same type is recorded (1-based line): refuse.
    Changed {
        /// Line of the recorded key.
        line: usize,
    },
    /// The key is marked `@revoked` (1-based line): refuse.
    Revoked {
        /// Line of the marker.
        line: usize,
    },
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks an offered key (`key_type` such as `ssh-ed25519`, `key_base64` the blob as
/// known_hosts writes it) for `name` (from [`lookup_name`]) against a file's contents.
pub fn check(contents: &str, name: &str, key_type: &str, key_base64: &str) -> Verdict {
    check_lines(numbered(contents), name, key_type, key_base64)
}

/// [`check`] over some of a file's lines (1-based number, text), in file order.
pub fn check_lines<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    name: &str,
    key_type: &str,
    key_base64: &str,
) -> Verdict {
    let mut changed = None;
    let mut known = false;
    for (line, raw) in lines {
        let Some(entry) = parse_line(raw) else {
            continue;
        };
        if !host_matches(entry.hosts, name) {
            continue;
        }
        match entry.marker {
            Some("@revoked") => {
                if entry.key_base64 == key_base64 {
                    return Verdict::Revoked { line };
                }
            }
            Some(_) => {} // @cert-authority: host certificates are not used here
            None => {
                if entry.key_type == key_type {
                    if entry.key_base64 == key_base64 {
                        known = true;
                    } else if changed.is_none() {
                        changed = Some(line);
                    }
                }
            }
        }
    }
    // OpenSSH accepts a matching record even when another line for the host differs
    // (e.g. a stale duplicate): the key in hand is vouched for.
    if known {
        Verdict::Known
    } else if let Some(line) = changed {
        Verdict::Changed { line }
    } else {
        Verdict::Unknown
    }
}

/// Key types recorded for `name`, in file order (to prefer them during negotiation, as
/// OpenSSH does, so a host with an ed25519 record is not asked for its RSA key).
pub fn recorded_types(contents: &str, name: &str) -> Vec<String> {
    recorded_types_lines(numbered(contents), name)
}

/// [`recorded_types`] over some of a file's lines, in file order.
pub fn recorded_types_lines<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    name: &str,
) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for (_, raw) in lines {
        if let Some(entry) = parse_line(raw) {
            if entry.marker.is_none()
                && host_matches(entry.hosts, name)
                && !types.iter().any(|t| t == entry.key_type)
            {
                types.push(entry.key_type.to_string());
            }
        }
    }
    types
}

/// The public keys of the `@cert-authority` lines whose patterns match `name`.
pub fn authorities(contents: &str, name: &str) -> Vec<russh::keys::PublicKey> {
    authorities_lines(numbered(contents), name)
}

/// [`authorities`] over some of a file's lines.
pub fn authorities_lines<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    name: &str,
) -> Vec<russh::keys::PublicKey> {
    lines
        .into_iter()
        .filter_map(|(_, raw)| parse_line(raw))
        .filter(|e| e.marker == Some("@cert-authority") && host_matches(e.hosts, name))
        .filter_map(|e| {
            russh::keys::PublicKey::from_openssh(&format!("{} {}", e.key_type, e.key_base64)).ok()
        })
        .collect()
}

/// The `SHA256:…` fingerprint of the key recorded on 1-based `line`, as `ssh-keygen -l`
/// prints it (for "host key changed" messages that show both keys).
pub fn recorded_fingerprint(contents: &str, line: usize) -> Option<String> {
    let entry = parse_line(contents.lines().nth(line.checked_sub(1)?)?)?;
    let blob = data_encoding::BASE64
        .decode(entry.key_base64.as_bytes())
        .ok()?;
    use sha2::Digest;
    Some(format!(
        "SHA256:{}",
        data_encoding::BASE64_NOPAD.encode(&sha2::Sha256::digest(&blob))
    ))
}

/// Appends a record for `name` (used by the `accept-new` policy).
pub fn append(path: &Path, name: &str, key_type: &str, key_base64: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write of one line: O_APPEND keeps concurrent appends from interleaving.
    file.write_all(format!("{name} {key_type} {key_base64}\n").as_bytes())
}

fn numbered(contents: &str) -> impl Iterator<Item = (usize, &str)> {
    contents.lines().enumerate().map(|(i, l)| (i + 1, l))
}

/// A known_hosts file read once and indexed by exact host name, so that a lookup reads
/// only the lines that can match it: those naming it exactly, plus every hashed, wildcard
/// or negated line (which must be evaluated). One connection of a run over 10,000 hosts
/// would otherwise parse and match all 10,000 lines, three times (types, authorities,
/// the key check): quadratic in the fleet.
#[derive(Debug)]
pub struct Index {
    text: String,
    /// Byte range of each line (index = line number - 1).
    lines: Vec<(usize, usize)>,
    /// Lowercased exact pattern -> line indexes, ascending.
    exact: std::collections::HashMap<String, Vec<usize>>,
    /// Lines with hashed, wildcard or negated patterns, ascending.
    generic: Vec<usize>,
}

impl Index {
    /// Indexes a file's contents.
    pub fn new(text: String) -> Index {
        let mut lines = Vec::new();
        let mut exact: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        let mut generic = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // `raw` is a slice of `text`: its offset is the distance between them.
            let offset = raw.as_ptr() as usize - text.as_ptr() as usize;
            lines.push((offset, offset + raw.len()));
            let Some(entry) = parse_line(raw) else {
                continue;
            };
            if entry.hosts.starts_with("|1|") || entry.hosts.contains(['*', '?', '!']) {
                generic.push(i);
                continue;
            }
            for pattern in entry.hosts.split(',') {
                let list = exact.entry(pattern.to_ascii_lowercase()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Index {
            text,
            lines,
            exact,
            generic,
        }
    }

    /// The whole file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The lines (1-based number, text) that may match `name`, in file order.
    pub fn candidates(&self, name: &str) -> Vec<(usize, &str)> {
        let exact = self
            .exact
            .get(&name.to_ascii_lowercase())
            .map_or(&[][..], Vec::as_slice);
        let mut all: Vec<usize> = exact.iter().chain(&self.generic).copied().collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
            .map(|i| {
                let (a, b) = self.lines[i];
                (i + 1, &self.text[a..b])
            })
            .collect()
    }
}

struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    key_type: &'a str,
    key_base64: &'a str,
}

fn parse_line(raw: &str) -> Option<Entry<'_>> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_ascii_whitespace();
    let first = fields.next()?;
    let (marker, hosts) = if first.starts_with('@') {
        (Some(first), fields.next()?)
    } else {
        (None, first)
    };
    Some(Entry {
        marker,
        hosts,
        key_type: fields.next()?,
        key_base64: fields.next()?,
    })
}

fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, name) {
                return false;
            }
        } else if wildcard_match(pattern, name) {
            matched = true;
        }
    }
    matched
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        data_encoding::BASE64.decode(salt.as_bytes()),
        data_encoding::BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` globbing, case-insensitive like OpenSSH host patterns.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    // Host names in known_hosts match case-insensitively; the globbing is ssh_config's.
    super::ssh_config::wildcard_match(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBm2lPyc5bVm9Ihs6eNdKlTpTYZMUY5SXsnmr3K9hhUS";

    #[test]
    fn plain_and_bracketed_names() {
        let file = format!(
            "# comment\nweb1,10.0.0.1 ssh-ed25519 {ED1}\n[127.0.0.1]:2201 ssh-ed25519 {ED2} lab\n"
        );
        assert_eq!(check(&file, "web1", "ssh-ed25519", ED1), Verdict::Known);
        assert_eq!(check(&file, "10.0.0.1", "ssh-ed25519", ED1), Verdict::Known);
        assert_eq!(
            check(&file, "web1", "ssh-ed25519", ED2),
            Verdict::Changed { line: 2 }
        );
        assert_eq!(check(&file, "web2", "ssh-ed25519", ED1), Verdict::Unknown);
        assert_eq!(
            check(&file, &lookup_name("127.0.0.1", 2201), "ssh-ed25519", ED2),
            Verdict::Known
        );
        // The port matters: the same address on 22 is another host.
        assert_eq!(
            check(&file, &lookup_name("127.0.0.1", 22), "ssh-ed25519", ED2),
            Verdict::Unknown
        );
        // Another key type is not a change (OpenSSH treats it as new).
        assert_eq!(
            check(&file, "web1", "ecdsa-sha2-nistp256", ED2),
            Verdict::Unknown
        );
    }

    #[test]
    fn wildcards_negation_tabs_and_revocation() {
        let file = format!(
            "*.example.com,!bad.example.com\tssh-ed25519\t{ED1}\n@revoked * ssh-ed25519 {ED2}\n"
        );
        assert_eq!(
            check(&file, "a.example.com", "ssh-ed25519", ED1),
            Verdict::Known
        );
        assert_eq!(
            check(&file, "bad.example.com", "ssh-ed25519", ED1),
            Verdict::Unknown
        );
        assert_eq!(
            check(&file, "a.example.com", "ssh-ed25519", ED2),
            Verdict::Revoked { line: 2 }
        );
        assert!(wildcard_match("web-?", "WEB-1"));
        assert!(!wildcard_match("web-?", "web-10"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        // Produced by `ssh-keygen -H` for the name `[127.0.0.1]:2201`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        std::fs::write(&path, format!("[127.0.0.1]:2201 ssh-ed25519 {ED1}\n")).unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-H", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(status.status.success());
        let hashed = std::fs::read_to_string(&path).unwrap();
        assert!(hashed.starts_with("|1|"), "{hashed}");
        assert_eq!(
            check(&hashed, "[127.0.0.1]:2201", "ssh-ed25519", ED1),
            Verdict::Known
        );
        assert_eq!(
            check(&hashed, "[127.0.0.1]:2202", "ssh-ed25519", ED1),
            Verdict::Unknown
        );
    }

    #[test]
    fn authorities_and_recorded_fingerprints() {
        let file = format!(
            "@cert-authority *.example.com,[127.0.0.1]:* ssh-ed25519 {ED1} ca\nweb1 ssh-ed25519 {ED2}\n"
        );
        assert_eq!(authorities(&file, "a.example.com").len(), 1);
        assert_eq!(authorities(&file, "[127.0.0.1]:2201").len(), 1);
        assert!(authorities(&file, "web1").is_empty());
        // The same fingerprint ssh-keygen prints for the key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        std::fs::write(&path, format!("ssh-ed25519 {ED2}\n")).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        let fingerprint = recorded_fingerprint(&file, 2).unwrap();
        assert!(printed.contains(&fingerprint), "{printed} vs {fingerprint}");
        assert_eq!(recorded_fingerprint(&file, 9), None);
    }

    /// The index answers exactly what a scan of the whole file answers.
    #[test]
    fn the_index_agrees_with_a_full_scan() {
        let salt = "c2FsdHNhbHRzYWx0c2FsdHNhbHQ=";
        let mac = Hmac::<sha1::Sha1>::new_from_slice(
            &data_encoding::BASE64.decode(salt.as_bytes()).unwrap(),
        )
        .unwrap()
        .chain_update(b"hashed.example")
        .finalize()
        .into_bytes();
        let hashed = format!("|1|{salt}|{}", data_encoding::BASE64.encode(&mac));
        let file = format!(
            "# c\r\nweb1,WEB2 ssh-ed25519 {ED1}\n*.example ssh-ed25519 {ED2}\n!bad.example,*.example ecdsa-sha2-nistp256 {ED1}\n@revoked web1 ssh-ed25519 {ED2}\n@cert-authority [10.0.0.1]:2222 ssh-ed25519 {ED1}\n{hashed} ssh-ed25519 {ED1}\nweb1 ssh-ed25519 {ED2}\n\n[10.0.0.1]:2222 ssh-ed25519 {ED2}\n"
        );
        let index = Index::new(file.clone());
        for name in [
            "web1",
            "web2",
            "Web1",
            "a.example",
            "bad.example",
            "hashed.example",
            "[10.0.0.1]:2222",
            "nobody",
        ] {
            let lines = index.candidates(name);
            assert_eq!(
                recorded_types_lines(lines.clone(), name),
                recorded_types(&file, name),
                "{name}"
            );
            assert_eq!(
                authorities_lines(lines.clone(), name),
                authorities(&file, name),
                "{name}"
            );
            for key in [ED1, ED2] {
                for ty in ["ssh-ed25519", "ecdsa-sha2-nistp256"] {
                    assert_eq!(
                        check_lines(lines.clone(), name, ty, key),
                        check(&file, name, ty, key),
                        "{name} {ty}"
                    );
                }
            }
            for (n, text) in &lines {
                assert_eq!(Some(*text), file.lines().nth(n - 1));
            }
        }
        assert_eq!(index.candidates("web1").len(), 6);
    }

    #[test]
    fn recorded_types_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        append(&path, "[h]:2", "ssh-ed25519", ED1).unwrap();
        append(&path, "[h]:2", "ecdsa-sha2-nistp256", ED2).unwrap();
        let contents = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            recorded_types(&contents, "[h]:2"),
            ["ssh-ed25519", "ecdsa-sha2-nistp256"]
        );
        assert_eq!(
            check(&contents, "[h]:2", "ssh-ed25519", ED1),
            Verdict::Known
        );
    }
}
