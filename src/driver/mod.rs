//! Package-manager drivers: what to run on a host to observe it, and how to read what
//! comes back.
//!
//! Observation is ONE round trip per host: a single POSIX shell script (fed to `sh -s` on
//! standard input, so the login shell does not matter) prints delimited sections: the
//! common facts (os-release, kernel, boot id), then the apt or dnf sections, chosen on the
//! host from `/etc/os-release` with the same ID table that [`family_of`] uses. Every parser
//! is a pure function of captured text, unit-tested on real outputs
//! (`tests/fixtures/observe/`); only [`observe_host`] does I/O, through a [`Transport`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::PackageManager;
use crate::observed::{FailureReason, HostStatus, LockHolder, ObservedHost, OsInfo};
use crate::transport::{Transport, TransportError};

pub mod apt;
pub mod dnf;

/// os-release `ID`/`ID_LIKE` words that mean apt/dpkg.
pub const APT_IDS: &[&str] = &["debian", "ubuntu", "raspbian", "linuxmint", "pop", "kali"];
/// os-release `ID`/`ID_LIKE` words that mean dnf/rpm.
pub const DNF_IDS: &[&str] = &[
    "rhel",
    "fedora",
    "centos",
    "rocky",
    "almalinux",
    "ol",
    "amzn",
];

/// Options of one host's observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveOptions {
    /// Refresh package indexes first (`apt-get update`, `dnf --refresh`).
    pub refresh: bool,
    /// Deadline for the observation script.
    pub command_timeout: Duration,
    /// The package manager the inventory declares, checked against what is found.
    pub expected: Option<PackageManager>,
}

/// Parses `/etc/os-release` (`KEY=value`, values optionally quoted with `"` or `'`).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        // Shell escapes inside double quotes: \" \\ \$ \`
        let mut unescaped = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    unescaped.push(n);
                }
            } else {
                unescaped.push(c);
            }
        }
        map.insert(key.trim().to_string(), unescaped);
    }
    map
}

/// The [`OsInfo`] of parsed os-release fields; `None` without an `ID`.
pub fn os_info(fields: &BTreeMap<String, String>) -> Option<OsInfo> {
    let id = fields.get("ID")?.trim().to_ascii_lowercase();
    if id.is_empty() {
        return None;
    }
    let mut family: Vec<String> = fields
        .get("ID_LIKE")
        .map(|s| {
            s.split_ascii_whitespace()
                .map(|w| w.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    if !family.contains(&id) {
        family.push(id.clone());
    }
    Some(OsInfo {
        id,
        version_id: fields.get("VERSION_ID").cloned().unwrap_or_default(),
        family,
        pretty_name: fields.get("PRETTY_NAME").cloned(),
        version_codename: fields
            .get("VERSION_CODENAME")
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty()),
    })
}

/// The driver for an OS: the first of `ID_LIKE` then `ID` words found in the tables.
pub fn family_of(os: &OsInfo) -> Option<PackageManager> {
    os.family.iter().find_map(|word| {
        if APT_IDS.contains(&word.as_str()) {
            Some(PackageManager::Apt)
        } else if DNF_IDS.contains(&word.as_str()) {
            Some(PackageManager::Dnf)
        } else {
            None
        }
    })
}

/// The observation script (fed to `sh -s`). Sections are framed on stdout by
/// `@@pk:begin NAME` and `@@pk:end NAME EXIT`, and on stderr by the same begin/end lines, so
/// each step's output, exit status and error text can be told apart.
pub fn observe_script(refresh: bool) -> String {
    let apt_refresh = if refresh {
        "pk_begin refresh; apt-get -qq update </dev/null; pk_end refresh\n"
    } else {
        ""
    };
    SCRIPT
        .replace("@APT_IDS@", &shell_case_pattern(APT_IDS))
        .replace("@DNF_IDS@", &shell_case_pattern(DNF_IDS))
        .replace("@APT_REFRESH@\n", apt_refresh)
        .replace("@DNF_REFRESH@", if refresh { " --refresh" } else { "" })
}

/// The script template. Lock holders are found with `fcntl(F_GETLK)`, the call apt itself
/// uses to name a holder: it never takes the lock (so it cannot disturb a starting
/// transaction) and needs no procfs `/proc/locks` (chroots and containers often lack it).
/// `flock(1)` would be wrong: dpkg, apt and rpm use fcntl locks, which flock(2) does not see.
/// perl-base is essential on Debian; RHEL always has python3 (dnf's own interpreter).
const SCRIPT: &str = r#"export LC_ALL=C LANG=C LANGUAGE=
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
pk_begin() { printf '@@pk:begin %s\n' "$1"; printf '@@pk:begin %s\n' "$1" >&2; }
pk_end() { pk_r=$?; printf '\n@@pk:end %s %s\n' "$1" "$pk_r"; printf '\n@@pk:end %s\n' "$1" >&2; }
pk_locks() {
  if command -v perl >/dev/null 2>&1; then
    perl -e 'use Fcntl; for my $f (@ARGV) { open(my $h, "<", $f) or next; my $fl = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0); fcntl($h, F_GETLK, $fl) or next; my ($t, $w, $s, $l, $p) = unpack("s s x4 q q i x4", $fl); next if $t == F_UNLCK; my $c = ""; if (open(my $ch, "<", "/proc/$p/comm")) { $c = <$ch> // ""; chomp $c } print "$f\t$p\t$c\tPOSIX\n" }' "$@"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import fcntl, struct, sys
for f in sys.argv[1:]:
    try:
        fd = open(f, "rb")
        r = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hh4xqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
    except OSError:
        continue
    t, w, s, l, p = struct.unpack("hh4xqqi4x", r)
    if t == fcntl.F_UNLCK:
        continue
    try:
        c = open("/proc/%d/comm" % p).read().strip()
    except OSError:
        c = ""
    print("%s\t%d\t%s\tPOSIX" % (f, p, c))' "$@"
  fi
}
pk_begin os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release; pk_end os-release
pk_begin kernel; uname -r; pk_end kernel
pk_begin boot-id; cat /proc/sys/kernel/random/boot_id; pk_end boot-id
pk_family=$( (. /etc/os-release 2>/dev/null || . /usr/lib/os-release; case " $ID $ID_LIKE " in @APT_IDS@) echo apt;; @DNF_IDS@) echo dnf;; *) echo none;; esac) 2>/dev/null)
case $pk_family in
apt)
@APT_REFRESH@
pk_begin installed; dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${source:Package}\t${source:Version}\n'; pk_end installed
pk_begin updates; pk_up=$(apt-get -s -q -o Debug::NoLocking=1 dist-upgrade </dev/null); pk_r=$?; printf '%s\n' "$pk_up"; (exit $pk_r); pk_end updates
pk_begin offered; pk_names=$(printf '%s\n' "$pk_up" | sed -n 's/^Inst \([^ ]*\) .*/\1/p'); if [ -n "$pk_names" ]; then apt-cache policy $pk_names </dev/null; fi; pk_end offered
pk_begin held-updates; if [ -n "$(apt-mark showhold 2>/dev/null)" ]; then apt-get -s -q -o Debug::NoLocking=1 -o APT::Ignore-Hold=true dist-upgrade </dev/null; fi; pk_end held-updates
pk_begin reboot; if [ -e /run/reboot-required ]; then echo required; cat /run/reboot-required.pkgs 2>/dev/null; fi; pk_end reboot
pk_begin locks; pk_locks /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock; pk_end locks
;;
dnf)
pk_begin installed; rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\t%{INSTALLTIME}\n'; pk_end installed
pk_begin updates; dnf -q -y@DNF_REFRESH@ check-update </dev/null; pk_end updates
pk_begin security; dnf -q -C updateinfo list --security </dev/null; pk_end security
pk_begin offered; dnf -q -C repoquery --upgrades --qf '%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}\t%{repoid}' </dev/null; pk_end offered
if grep -qsv '^[[:space:]]*\(#\|$\)' /etc/dnf/plugins/versionlock.list || grep -qsE '^[[:space:]]*(exclude|excludepkgs)[[:space:]]*=' /etc/dnf/dnf.conf; then pk_holds=1; else pk_holds=; fi
pk_begin held-updates; if [ -n "$pk_holds" ]; then dnf -q -C --disableplugin=versionlock --disableexcludes=all check-update </dev/null; fi; pk_end held-updates
pk_begin held-security; if [ -n "$pk_holds" ]; then dnf -q -C --disableplugin=versionlock --disableexcludes=all updateinfo list --security </dev/null; fi; pk_end held-security
pk_begin advisory-info; dnf -q -C --disableplugin=versionlock --disableexcludes=all updateinfo info --security </dev/null; pk_end advisory-info
pk_begin reboot; if command -v needs-restarting >/dev/null 2>&1; then needs-restarting -r 2>&1 </dev/null; echo "needs-restarting $?"; fi; rpm -q --qf 'kernel %{INSTALLTIME} %{VERSION}-%{RELEASE}.%{ARCH}\n' kernel-core kernel 2>/dev/null | grep '^kernel '; true; pk_end reboot
pk_begin check; dnf -q -C --disablerepo='*' check </dev/null; pk_end check
pk_begin held; cat /etc/dnf/plugins/versionlock.list 2>/dev/null; grep -E '^[[:space:]]*(exclude|excludepkgs)[[:space:]]*=' /etc/dnf/dnf.conf 2>/dev/null; true; pk_end held
pk_begin locks; pk_locks /var/lib/rpm/.rpm.lock; for pk_f in /var/lib/dnf/rpmdb_lock.pid /var/cache/dnf/metadata_lock.pid /var/cache/dnf/download_lock.pid /run/dnf.pid; do [ -f "$pk_f" ] && pk_p=$(cat "$pk_f" 2>/dev/null) && [ -n "$pk_p" ] && [ -d "/proc/$pk_p" ] && printf '%s\t%s\t%s\tPIDFILE\n' "$pk_f" "$pk_p" "$(cat /proc/$pk_p/comm 2>/dev/null)"; done; true; pk_end locks
;;
esac
"#;

fn shell_case_pattern(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("*\" {id} \"*"))
        .collect::<Vec<_>>()
        .join("|")
}

/// One framed section of the script's output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Standard output of the step.
    pub stdout: String,
    /// Standard error of the step.
    pub stderr: String,
    /// Exit status of the step's last command (`None` if the end marker is missing).
    pub exit: Option<i32>,
}

/// Splits framed script output into sections by name.
pub fn split_sections(stdout: &str, stderr: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    // A section's body is copied once, as the slice between its markers (the installed
    // section is ~100 KB: line by line it was a thousand pushes and a dozen regrowths).
    // `body` is the byte range of the body lines seen so far.
    let mut body: Option<(usize, usize)> = None;
    let flush = |sections: &mut BTreeMap<String, Section>,
                 current: &Option<String>,
                 body: Option<(usize, usize)>| {
        if let (Some(name), Some((start, end))) = (current, body) {
            let text = &stdout[start..end];
            let s = sections.entry(name.clone()).or_default();
            if text.contains('\r') {
                // `lines()` drops a `\r` before each `\n`: keep that meaning.
                for line in text.lines() {
                    s.stdout.push_str(line);
                    s.stdout.push('\n');
                }
            } else {
                s.stdout.push_str(text);
                if !text.ends_with('\n') {
                    s.stdout.push('\n');
                }
            }
        }
    };
    let mut offset = 0;
    for raw in stdout.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        // As `lines()` reads: a `\r` goes only with the `\n` after it.
        let line = match raw.strip_suffix('\n') {
            Some(l) => l.strip_suffix('\r').unwrap_or(l),
            None => raw,
        };
        if let Some(name) = line.strip_prefix("@@pk:begin ") {
            flush(&mut sections, &current, body.take());
            current = Some(name.trim().to_string());
            sections.entry(name.trim().to_string()).or_default();
        } else if let Some(rest) = line.strip_prefix("@@pk:end ") {
            flush(&mut sections, &current, body.take());
            let mut parts = rest.split_ascii_whitespace();
            if let (Some(name), Some(code)) = (parts.next(), parts.next()) {
                sections.entry(name.to_string()).or_default().exit = code.parse().ok();
            }
            current = None;
        } else if current.is_some() {
            body = Some((body.map_or(start, |(s, _)| s), offset));
        }
    }
    flush(&mut sections, &current, body.take());
    current = None;
    for line in stderr.lines() {
        if let Some(name) = line.strip_prefix("@@pk:begin ") {
            current = Some(name.trim().to_string());
        } else if line.starts_with("@@pk:end ") {
            current = None;
        } else if let Some(name) = &current {
            if line.is_empty() {
                continue;
            }
            let s = sections.entry(name.clone()).or_default();
            s.stderr.push_str(line);
            s.stderr.push('\n');
        }
    }
    sections
}

/// Keeps error text from a host short enough for a table and a JSON report, with its
/// control characters escaped (line breaks kept): it is shown on terminals.
fn clip(s: &str) -> String {
    const MAX: usize = 2048;
    let s = s.trim();
    if s.len() <= MAX {
        return crate::terminal::escape_lines(s).into_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", crate::terminal::escape_lines(&s[..end]))
}

/// Reads the lock probe's lines (`path\tpid\tcomm\tkind`); the first holder wins.
pub fn parse_locks(text: &str) -> Option<LockHolder> {
    text.lines().find_map(|line| {
        let mut f = line.split('\t');
        let path = f.next()?.trim();
        if path.is_empty() {
            return None;
        }
        let pid = f.next().and_then(|p| p.trim().parse::<u32>().ok());
        let process = f
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Some(LockHolder {
            path: path.to_string(),
            pid,
            process,
        })
    })
}

/// Builds a host's observed state from the script's raw output. Pure: tested on captures.
pub fn interpret(
    name: &str,
    stdout: &str,
    stderr: &str,
    exit: Option<u32>,
    options: &ObserveOptions,
) -> ObservedHost {
    let sections = split_sections(stdout, stderr);
    let mut host = ObservedHost::new(name, HostStatus::Reachable);
    let fail = |mut host: ObservedHost, reason: FailureReason| {
        host.status = HostStatus::Error { reason };
        host.normalize();
        host
    };

    let Some(os_section) = sections.get("os-release") else {
        // The script never ran (e.g. sudo refused, or no POSIX sh).
        let text = clip(stderr);
        if text.starts_with("sudo:") || text.contains("\nsudo:") {
            return fail(host, FailureReason::SudoFailed { stderr: text });
        }
        return fail(
            host,
            FailureReason::CommandFailed {
                command: "sh -s (observation script)".into(),
                exit,
                stderr: text,
            },
        );
    };
    let os = os_info(&parse_os_release(&os_section.stdout));
    host.kernel = sections
        .get("kernel")
        .map(|s| s.stdout.trim().to_string())
        .filter(|s| !s.is_empty());
    host.boot_id = sections
        .get("boot-id")
        .map(|s| s.stdout.trim().to_string())
        .filter(|s| !s.is_empty());
    if host.boot_id.is_none() {
        host.warnings
            .push("boot id unknown: /proc/sys/kernel/random/boot_id is not readable".into());
    }
    let Some(os) = os else {
        return fail(
            host,
            FailureReason::UnsupportedOs {
                id: "unknown".into(),
                id_like: String::new(),
            },
        );
    };
    host.os = Some(os.clone());
    let Some(family) = family_of(&os) else {
        let id_like = os
            .family
            .iter()
            .filter(|w| **w != os.id)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        return fail(host, FailureReason::UnsupportedOs { id: os.id, id_like });
    };
    host.package_manager = Some(family);
    if let Some(expected) = options.expected {
        if expected != family {
            return fail(
                host,
                FailureReason::PackageManagerMismatch {
                    expected,
                    found: family,
                },
            );
        }
    }
    let result = match family {
        PackageManager::Apt => apt::interpret(&mut host, &sections),
        PackageManager::Dnf => dnf::interpret(&mut host, &sections),
    };
    if let Some(locks) = sections.get("locks") {
        host.package_manager_locked = parse_locks(&locks.stdout);
    }
    host.normalize();
    match result {
        Ok(()) => host,
        Err(reason) => fail(host, reason),
    }
}

/// A step's failure as a [`FailureReason`]: exit 127 means the tool is missing.
pub(crate) fn step_failed(section: &Section, command: &str, tool: &str) -> FailureReason {
    if section.exit == Some(127) {
        FailureReason::MissingTool { tool: tool.into() }
    } else {
        FailureReason::CommandFailed {
            command: command.into(),
            exit: section.exit.and_then(|c| u32::try_from(c).ok()),
            stderr: clip(&section.stderr),
        }
    }
}

/// A required section, or the failure to report when the script stopped before it.
pub(crate) fn section<'a>(
    sections: &'a BTreeMap<String, Section>,
    name: &str,
    command: &str,
) -> Result<&'a Section, FailureReason> {
    match sections.get(name) {
        Some(s) if s.exit.is_some() => Ok(s),
        _ => Err(FailureReason::CommandFailed {
            command: command.into(),
            exit: None,
            stderr: format!("the observation script stopped before `{name}`"),
        }),
    }
}

/// Observes one host through an open transport: one script, one round trip.
pub async fn observe_host(
    name: &str,
    transport: &dyn Transport,
    options: &ObserveOptions,
) -> ObservedHost {
    let script = observe_script(options.refresh);
    match transport
        .exec("sh -s", Some(script.as_bytes()), options.command_timeout)
        .await
    {
        // Up to the output cap of text to read: off the async workers, so one large host
        // never stalls the connections of the others.
        Ok(out) => {
            let (owned_name, owned_options) = (name.to_string(), options.clone());
            let parsed = tokio::task::spawn_blocking(move || {
                interpret(
                    &owned_name,
                    &String::from_utf8_lossy(&out.stdout),
                    &String::from_utf8_lossy(&out.stderr),
                    out.exit,
                    &owned_options,
                )
            })
            .await;
            parsed.unwrap_or_else(|e| {
                let mut host = ObservedHost::new(
                    name,
                    HostStatus::Error {
                        reason: FailureReason::Parse {
                            what: "the observation".into(),
                            message: e.to_string(),
                        },
                    },
                );
                host.normalize();
                host
            })
        }
        Err(TransportError::OutputTooLarge { limit, .. }) => {
            let mut host = ObservedHost::new(
                name,
                HostStatus::Error {
                    reason: FailureReason::OutputTooLarge {
                        command: "sh -s (the observation script)".into(),
                        limit_mib: u64::try_from(limit >> 20).unwrap_or(u64::MAX),
                    },
                },
            );
            host.normalize();
            host
        }
        Err(err) => {
            let mut host = ObservedHost::new(
                name,
                HostStatus::Error {
                    reason: transport_failure(&err),
                },
            );
            host.normalize();
            host
        }
    }
}

/// The dry run of installing exactly `requested` (`(name, version)`), in the C locale because
/// its output is parsed ([`read_simulation`]). It changes nothing and takes no lock.
/// Names and versions are checked first ([`crate::package`]): a value outside the
/// ecosystem's grammar never reaches the host.
pub fn simulation_command(
    pm: PackageManager,
    requested: &[(&str, &str)],
) -> Result<String, crate::package::InvalidPackageArg> {
    let command = match pm {
        PackageManager::Apt => apt::simulation_command(requested)?,
        PackageManager::Dnf => dnf::simulation_command(requested)?,
    };
    Ok(format!("LC_ALL=C LANG=C LANGUAGE= PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH {command}"))
}

/// Reads a dry run's result: what the transaction would change, or (`Err`) why the package
/// manager refuses it. `installed` fills in installed versions that dnf's table omits.
pub fn read_simulation(
    pm: PackageManager,
    exit: Option<u32>,
    stdout: &str,
    stderr: &str,
    installed: &[crate::observed::InstalledPackage],
) -> Result<crate::observed::TransactionPreview, String> {
    let (resolved, why) = match pm {
        PackageManager::Apt => (exit == Some(0), apt::refusal(stdout, stderr)),
        PackageManager::Dnf => (
            dnf::dry_run_resolved(exit, stdout, stderr),
            dnf::refusal(stdout, stderr),
        ),
    };
    if resolved {
        return Ok(match pm {
            PackageManager::Apt => apt::parse_apt_transaction(stdout),
            PackageManager::Dnf => dnf::parse_transaction(stdout, installed),
        });
    }
    let exit = exit.map_or("none".to_string(), |c| c.to_string());
    Err(if why.is_empty() {
        format!("exit {exit} without a message")
    } else {
        format!("{why} (exit {exit})")
    })
}

/// Maps a transport error to the observed-state reason.
pub fn transport_failure(err: &TransportError) -> FailureReason {
    match err {
        TransportError::Refused { address } => FailureReason::Refused {
            address: address.clone(),
        },
        TransportError::NameNotResolved { name, message } => FailureReason::NameNotResolved {
            name: name.clone(),
            message: message.clone(),
        },
        TransportError::NoRoute { address, message } => FailureReason::NoRoute {
            address: address.clone(),
            message: message.clone(),
        },
        TransportError::ConnectTimeout {
            address,
            seconds,
            stage,
        } => FailureReason::Timeout {
            phase: "connect".into(),
            seconds: *seconds,
            detail: Some(format!("{address}: {stage}")),
        },
        TransportError::CommandTimeout { seconds } => FailureReason::Timeout {
            phase: "command".into(),
            seconds: *seconds,
            detail: None,
        },
        TransportError::Closed { .. } => FailureReason::ConnectionClosed {
            message: err.to_string(),
        },
        TransportError::HostKeyUnknown {
            algorithm,
            fingerprint,
            known_hosts,
            ..
        } => FailureReason::HostKeyUnknown {
            algorithm: algorithm.clone(),
            fingerprint: fingerprint.clone(),
            known_hosts: known_hosts.clone(),
        },
        TransportError::HostKeyMismatch(c) => FailureReason::HostKeyMismatch {
            algorithm: c.algorithm.clone(),
            fingerprint: c.fingerprint.clone(),
            recorded_fingerprint: c.recorded_fingerprint.clone(),
            known_hosts: c.known_hosts.clone(),
            line: c.line,
        },
        TransportError::HostCertificate { reason, .. } => FailureReason::HostCertificateInvalid {
            reason: reason.clone(),
        },
        TransportError::AuthFailed {
            user,
            tried,
            accepted,
            ..
        } => FailureReason::AuthFailed {
            user: user.clone(),
            tried: tried.clone(),
            accepted: accepted.clone(),
        },
        TransportError::ChannelOpen { target, reason } => FailureReason::ForwardFailed {
            target: target.clone(),
            reason: reason.clone(),
        },
        TransportError::Jump { jump, source } => FailureReason::JumpHost {
            jump: jump.clone(),
            reason: Box::new(transport_failure(source)),
        },
        TransportError::OutputTooLarge { command, limit } => FailureReason::OutputTooLarge {
            command: command.clone(),
            limit_mib: u64::try_from(*limit >> 20).unwrap_or(u64::MAX),
        },
        other => FailureReason::Connection {
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/observe/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn options() -> ObserveOptions {
        ObserveOptions {
            refresh: false,
            command_timeout: Duration::from_secs(60),
            expected: None,
        }
    }

    #[test]
    fn os_release_of_debian_and_rocky() {
        let debian = os_info(&parse_os_release(&fixture("debian12-os-release.txt"))).unwrap();
        assert_eq!(debian.id, "debian");
        assert_eq!(debian.version_id, "12");
        assert_eq!(family_of(&debian), Some(PackageManager::Apt));
        let rocky = os_info(&parse_os_release(
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        ))
        .unwrap();
        assert_eq!(rocky.family, ["rhel", "centos", "fedora", "rocky"]);
        assert_eq!(family_of(&rocky), Some(PackageManager::Dnf));
        let alpine = os_info(&parse_os_release("ID=alpine\nVERSION_ID=3.20.0\n")).unwrap();
        assert_eq!(family_of(&alpine), None);
        assert_eq!(
            parse_os_release("PRETTY_NAME='A \\\"b\\\"'\n#x=y\n")["PRETTY_NAME"],
            "A \"b\""
        );
    }

    #[test]
    fn sections_split_both_streams() {
        let s = split_sections(
            "@@pk:begin a\nx\n\n@@pk:end a 0\n@@pk:begin b\n\n@@pk:end b 100\n@@pk:begin c\n",
            "@@pk:begin a\n\n@@pk:end a\n@@pk:begin b\nE: bad\n\n@@pk:end b\n",
        );
        assert_eq!(s["a"].stdout, "x\n\n");
        assert_eq!(s["a"].exit, Some(0));
        assert_eq!(s["b"].stderr, "E: bad\n");
        assert_eq!(s["b"].exit, Some(100));
        assert_eq!(s["c"].exit, None);
    }

    use proptest::strategy::Strategy as _;

    /// The line-by-line reading `split_sections` replaced (stdout part), as the reference.
    fn split_stdout_by_lines(stdout: &str) -> BTreeMap<String, (String, Option<i32>)> {
        let mut sections: BTreeMap<String, (String, Option<i32>)> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix("@@pk:begin ") {
                current = Some(name.trim().to_string());
                sections.entry(name.trim().to_string()).or_default();
            } else if let Some(rest) = line.strip_prefix("@@pk:end ") {
                let mut parts = rest.split_ascii_whitespace();
                if let (Some(name), Some(code)) = (parts.next(), parts.next()) {
                    sections.entry(name.to_string()).or_default().1 = code.parse().ok();
                }
                current = None;
            } else if let Some(name) = &current {
                let s = sections.entry(name.clone()).or_default();
                s.0.push_str(line);
                s.0.push('\n');
            }
        }
        sections
    }

    proptest::proptest! {
        #[test]
        fn sections_are_what_reading_line_by_line_gives(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "@@pk:begin a", "@@pk:begin b", "@@pk:end a 0", "@@pk:end b 100",
                        "@@pk:end a", "", "x", "ii\tdpkg", "a\r", "\r",
                    ]).prop_map(str::to_string),
                    "[a-z \t\r@:]{0,12}",
                ],
                0..24,
            ),
            newline_at_end in proptest::bool::ANY,
        ) {
            let mut text = lines.join("\n");
            if newline_at_end {
                text.push('\n');
            }
            let ours: BTreeMap<String, (String, Option<i32>)> = split_sections(&text, "")
                .into_iter()
                .map(|(k, v)| (k, (v.stdout, v.exit)))
                .collect();
            proptest::prop_assert_eq!(ours, split_stdout_by_lines(&text));
        }
    }

    #[test]
    fn lock_lines() {
        assert_eq!(parse_locks(""), None);
        let l = parse_locks("/var/lib/dpkg/lock-frontend\t812\tapt-get\tPOSIX\n").unwrap();
        assert_eq!(l.pid, Some(812));
        assert_eq!(
            l.to_string(),
            "/var/lib/dpkg/lock-frontend is locked by pid 812 (apt-get)"
        );
    }

    /// The whole script as run on this Debian 12 machine (captured with `sh -s`).
    #[test]
    fn whole_debian_capture() {
        let host = interpret(
            "ctl",
            &fixture("debian12-script.stdout"),
            &fixture("debian12-script.stderr"),
            Some(0),
            &options(),
        );
        assert_eq!(host.status, HostStatus::Reachable, "{host:?}");
        assert_eq!(host.package_manager, Some(PackageManager::Apt));
        assert_eq!(host.os.as_ref().unwrap().id, "debian");
        let bash = host.installed_package("bash").unwrap();
        assert_eq!(bash.version, "5.2.15-2+b8");
        assert_eq!(host.installed.len(), 732);
        assert_eq!(host.updates.len(), 128);
        assert!(host
            .updates
            .iter()
            .any(|u| u.name == "perl-base" && u.security));
        assert!(host.boot_id.as_deref().is_some_and(|b| b.len() == 36));
    }

    fn capture(name: &str) -> ObservedHost {
        interpret(
            name,
            &fixture(&format!("{name}-script.stdout")),
            &fixture(&format!("{name}-script.stderr")),
            Some(0),
            &options(),
        )
    }

    /// Captured over OpenSSH from a lab RPM host (dnf 4 from Debian, versionlock, updateinfo).
    #[test]
    fn whole_lab_rpm_capture() {
        let host = capture("lab-rpm");
        assert_eq!(host.status, HostStatus::Reachable, "{host:?}");
        assert_eq!(host.package_manager, Some(PackageManager::Dnf));
        let libpk = host.installed_package("libpk").unwrap();
        assert_eq!(
            (libpk.version.as_str(), libpk.arch.as_str()),
            ("1.0-1", "x86_64")
        );
        assert_eq!(host.installed.len(), 6);
        let names: Vec<_> = host.updates.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["libpk", "pk-app", "pk-broken", "pk-kernel"]);
        let libpk = &host.updates[0];
        assert_eq!(libpk.installed_version.as_deref(), Some("1.0-1"));
        assert_eq!(libpk.candidate_version, "1.2-1");
        assert_eq!(libpk.origin, "pklab");
        assert!(libpk.security);
        assert_eq!(libpk.advisories, ["PKLAB-2026:0002"]);
        assert!(!host.updates[1].security);
        assert_eq!(host.held, ["pk-held"]);
        assert!(!host.reboot_required.required);
        assert_eq!(host.package_manager_locked, None);
    }

    #[test]
    fn whole_lab_deb_capture() {
        let host = capture("lab-deb");
        assert_eq!(host.status, HostStatus::Reachable, "{host:?}");
        assert_eq!(host.held, ["pk-held"]);
        let held = host.installed_package("pk-held").unwrap();
        assert_eq!(held.status, "hi");
        let libpk = host.updates.iter().find(|u| u.name == "libpk").unwrap();
        assert_eq!(libpk.origin, "PatchkeeperLab-Security:bookworm-security");
        assert!(libpk.security);
        let app = host.updates.iter().find(|u| u.name == "pk-app").unwrap();
        assert_eq!(app.origin, "PatchkeeperLab:bookworm");
        assert!(!app.security);
    }

    /// Captured with the observation script that records sources, held candidates and dnf
    /// advisory details (lab hosts with pk-held on hold; libpk built from source pk-libs).
    #[test]
    fn lab_captures_with_sources_held_updates_and_advisories() {
        let deb = capture("lab-deb-v2");
        assert_eq!(deb.status, HostStatus::Reachable, "{deb:?}");
        assert_eq!(
            deb.os.as_ref().and_then(|o| o.version_codename.as_deref()),
            Some("bookworm")
        );
        let libpk = deb.installed_package("libpk").unwrap();
        assert_eq!(deb.source_of(libpk), ("pk-libs", "1.0-1"));
        let app = deb.installed_package("pk-app").unwrap();
        assert_eq!(deb.source_of(app), ("pk-app", "1.0-1"));
        let held: Vec<_> = deb
            .held_updates
            .iter()
            .map(|u| (u.name.as_str(), u.candidate_version.as_str(), u.security))
            .collect();
        assert_eq!(held, [("pk-held", "1.1-1", true)]);
        assert!(!deb.updates.iter().any(|u| u.name == "pk-held"));

        let rpm = capture("lab-rpm-v2");
        assert_eq!(rpm.status, HostStatus::Reachable, "{rpm:?}");
        let held: Vec<_> = rpm
            .held_updates
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.candidate_version.as_str(),
                    u.advisories.clone(),
                )
            })
            .collect();
        assert_eq!(
            held,
            [("pk-held", "1.1-1", vec!["PKLAB-2026:0006".to_string()])]
        );
        let ids: Vec<_> = rpm
            .advisories
            .iter()
            .map(|a| (a.id.as_str(), a.severity.as_deref(), a.cves.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                (
                    "PKLAB-2026:0002",
                    Some("Important"),
                    vec!["CVE-2026-9002".to_string()]
                ),
                (
                    "PKLAB-2026:0005",
                    Some("Important"),
                    vec!["CVE-2026-9005".to_string()]
                ),
                (
                    "PKLAB-2026:0006",
                    Some("Important"),
                    vec!["CVE-2026-9006".to_string()]
                ),
            ]
        );
        // Sources equal to the packages themselves are not recorded.
        assert!(rpm.sources.is_empty(), "{:?}", rpm.sources);
        assert!(rpm.warnings.is_empty(), "{:?}", rpm.warnings);
    }

    /// Lab hosts whose package manager lock is held (`scripts/lab lock-host`).
    #[test]
    fn locked_lab_captures_name_the_holder() {
        let deb = capture("lab-deb-locked");
        assert_eq!(deb.status, HostStatus::Reachable);
        let lock = deb.package_manager_locked.unwrap();
        assert_eq!(lock.path, "/var/lib/dpkg/lock-frontend");
        assert_eq!(lock.process.as_deref(), Some("unattended-upgr"));
        assert!(lock.pid.is_some());
        let rpm = capture("lab-rpm-locked");
        let lock = rpm.package_manager_locked.unwrap();
        assert_eq!(lock.path, "/var/lib/rpm/.rpm.lock");
        assert_eq!(lock.process.as_deref(), Some("dnf"));
    }

    #[test]
    fn unsupported_and_sudo_failures() {
        let out = "@@pk:begin os-release\nID=alpine\n\n@@pk:end os-release 0\n";
        let host = interpret("a", out, "", Some(0), &options());
        assert!(
            matches!(host.status, HostStatus::Error { reason: FailureReason::UnsupportedOs { ref id, .. } } if id == "alpine")
        );
        let host = interpret(
            "a",
            "",
            "sudo: a password is required\n",
            Some(1),
            &options(),
        );
        assert!(matches!(
            host.status,
            HostStatus::Error {
                reason: FailureReason::SudoFailed { .. }
            }
        ));
    }

    #[test]
    fn inventory_mismatch_is_reported() {
        let mut o = options();
        o.expected = Some(PackageManager::Dnf);
        let host = interpret(
            "ctl",
            &fixture("debian12-script.stdout"),
            &fixture("debian12-script.stderr"),
            Some(0),
            &o,
        );
        assert!(matches!(
            host.status,
            HostStatus::Error {
                reason: FailureReason::PackageManagerMismatch { .. }
            }
        ));
    }
}
