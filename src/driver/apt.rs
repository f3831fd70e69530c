//! The apt/dpkg driver's parsers: `dpkg-query -W` rows, `apt-get -s dist-upgrade`
//! simulation lines, `apt-cache policy` version tables (every version offered),
//! `/run/reboot-required(.pkgs)`.
//!
//! Holds come from the dpkg selection state in the same `dpkg-query` rows (`h` in the first
//! status letter): it is what `apt-mark showhold` reads, without another process.

use std::collections::BTreeMap;

use super::{section, step_failed, Section};
use crate::observed::{
    BrokenPackage, FailureReason, InstalledPackage, ObservedHost, OfferedPackage, OfferedVersion,
    PendingUpdate, RebootRequired, SourcePackage, TransactionPreview,
};
use crate::package::InvalidPackageArg;
use crate::transport::shell_quote;

/// Rows of `dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${source:Package}\t${source:Version}\n'`
/// (the two source fields are absent in captures made before they were observed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DpkgState {
    /// Packages whose files are (at least partly) on disk.
    pub installed: Vec<InstalledPackage>,
    /// Source packages of installed packages, where they differ from the package's own
    /// name or version.
    pub sources: Vec<SourcePackage>,
    /// Packages selected for hold.
    pub held: Vec<String>,
    /// Packages in an unfinished state.
    pub broken: Vec<BrokenPackage>,
    /// Lines that could not be read.
    pub unreadable: Vec<String>,
}

/// Parses `dpkg-query -W` rows (see [`DpkgState`]). Config-files-only and not-installed rows
/// are skipped: nothing of them is installed.
pub fn parse_dpkg_query(text: &str) -> DpkgState {
    let mut state = DpkgState {
        // About 60 bytes a row: one allocation instead of a dozen doublings.
        installed: Vec::with_capacity(text.len() / 48),
        ..DpkgState::default()
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        // The fields without collecting a Vec per row (1,500 rows per host, thousands of
        // hosts): 7 means "more than 6".
        let mut fields = [""; 6];
        let mut count = 0;
        for field in line.split('\t') {
            if count == fields.len() {
                count += 1;
                break;
            }
            fields[count] = field;
            count += 1;
        }
        let (name, version, arch, abbrev, source) = match (count, fields) {
            (4, [name, version, arch, abbrev, _, _]) => (name, version, arch, abbrev, None),
            (6, [name, version, arch, abbrev, source, source_version]) => {
                (name, version, arch, abbrev, Some((source, source_version)))
            }
            _ => {
                state.unreadable.push(line.to_string());
                continue;
            }
        };
        let mut letters = abbrev.chars();
        let (want, status, error) = (letters.next(), letters.next(), letters.next());
        if want == Some('h') {
            state.held.push(name.to_string());
        }
        let Some(status) = status else {
            state.unreadable.push(line.to_string());
            continue;
        };
        if matches!(status, 'n' | 'c') || version.is_empty() {
            continue;
        }
        let broken_state = match status {
            'H' => Some("half-installed"),
            'U' => Some("unpacked"),
            'F' => Some("half-configured"),
            'W' => Some("triggers-awaited"),
            't' => Some("triggers-pending"),
            _ if error == Some('R') => Some("reinst-required"),
            _ => None,
        };
        if let Some(s) = broken_state {
            state.broken.push(BrokenPackage {
                name: name.to_string(),
                arch: arch.to_string(),
                version: version.to_string(),
                state: s.to_string(),
            });
        }
        if let Some((source, source_version)) = source {
            // `${source:Package}` is the bare name; older dpkg printed the `Source:` field's
            // `name (version)` form, so only the first word counts.
            let source = source.split_whitespace().next().unwrap_or("");
            let source = if source.is_empty() { name } else { source };
            let source_version = match source_version.trim() {
                "" => strip_binnmu(version),
                v => v,
            };
            if source != name || source_version != version {
                state.sources.push(SourcePackage {
                    package: name.into(),
                    arch: arch.into(),
                    source: source.into(),
                    version: source_version.into(),
                });
            }
        }
        state.installed.push(InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            status: abbrev.trim_end().into(),
        });
    }
    state
}

/// A Debian binary version without its binNMU suffix (`1.2-3+b1` -> `1.2-3`): the version
/// of the source it was built from, as the security tracker names it. A binNMU (binary-only
/// rebuild) appends `+bN` to the revision; nothing else is removed.
pub fn strip_binnmu(version: &str) -> &str {
    if let Some(i) = version.rfind("+b") {
        let digits = &version[i + 2..];
        let has_revision = version[..i].contains('-');
        if has_revision && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return &version[..i];
        }
    }
    version
}

/// Parses the `Inst` lines of `apt-get -s dist-upgrade`:
/// `Inst NAME[:ARCH] [OLD] (NEW ORIGIN, ORIGIN... [ARCH]) [...]`. A line without `[OLD]` is
/// a new package the upgrade pulls in. Everything else (`Conf`, `Remv`, notes) is ignored.
pub fn parse_apt_simulation(text: &str) -> Vec<PendingUpdate> {
    let mut updates = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        if let Some(u) = parse_inst(rest) {
            updates.push(u);
        }
    }
    updates
}

fn parse_inst(rest: &str) -> Option<PendingUpdate> {
    let (name, rest) = rest.split_once(' ')?;
    let name = name.split(':').next()?.to_string();
    let mut rest = rest.trim_start();
    let mut installed_version = None;
    if let Some(after) = rest.strip_prefix('[') {
        let (old, after) = after.split_once(']')?;
        installed_version = Some(old.to_string());
        rest = after.trim_start();
    }
    let inner = rest.strip_prefix('(')?;
    // The parenthesised part ends at the first ')' after the "[arch]" bracket.
    let arch_open = inner.find(" [")?;
    let arch_close = inner[arch_open..].find(']')? + arch_open;
    let arch = inner[arch_open + 2..arch_close].to_string();
    let head = &inner[..arch_open];
    let (candidate, origins) = match head.split_once(' ') {
        Some((v, o)) => (v, o.trim()),
        None => (head, ""),
    };
    let security = origins
        .split(',')
        .any(|o| o.to_ascii_lowercase().contains("security"));
    Some(PendingUpdate {
        name,
        arch,
        installed_version,
        candidate_version: candidate.to_string(),
        origin: origins.to_string(),
        security,
        advisories: Vec::new(),
    })
}

/// Parses `apt-cache policy NAME...` (run on the packages with a pending update): for each
/// package, every version of its version table above the installed one, newest first, with
/// the archives offering it (`bookworm-security/main`; security when an archive's suite
/// says so, as for the candidate). The installed version and versions only in dpkg's status
/// file are not offers. A package named `NAME:ARCH` keeps that architecture.
pub fn parse_apt_policy(text: &str) -> Vec<OfferedPackage> {
    struct Current {
        name: String,
        arch: String,
        installed: Option<String>,
        versions: Vec<OfferedVersion>,
        in_table: bool,
    }
    fn finish(c: Option<Current>, out: &mut Vec<OfferedPackage>) {
        let Some(c) = c else { return };
        let newer = |v: &str| match &c.installed {
            None => true,
            Some(have) => crate::version::compare(crate::version::Ecosystem::Deb, v, have)
                .map_or(true, |o| o.is_gt()),
        };
        let mut versions: Vec<OfferedVersion> = c
            .versions
            .into_iter()
            .filter(|v| !v.origin.is_empty() && newer(&v.version))
            .collect();
        // apt lists the version table by priority; offers are ordered by version.
        versions.sort_by(|a, b| {
            crate::version::compare(crate::version::Ecosystem::Deb, &b.version, &a.version)
                .unwrap_or_else(|_| b.version.cmp(&a.version))
        });
        versions.dedup_by(|a, b| a.version == b.version);
        if !versions.is_empty() {
            out.push(OfferedPackage {
                name: c.name,
                arch: c.arch,
                versions,
            });
        }
    }
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            finish(current.take(), &mut out);
            let Some(head) = line.trim_end().strip_suffix(':') else {
                continue;
            };
            let (name, arch) = head.split_once(':').unwrap_or((head, ""));
            current = Some(Current {
                name: name.to_owned(),
                arch: arch.to_owned(),
                installed: None,
                versions: Vec::new(),
                in_table: false,
            });
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        let trimmed = line.trim();
        if let Some(v) = trimmed.strip_prefix("Installed:") {
            let v = v.trim();
            c.installed = (v != "(none)" && !v.is_empty()).then(|| v.to_owned());
            continue;
        }
        if trimmed == "Version table:" {
            c.in_table = true;
            continue;
        }
        if !c.in_table {
            continue;
        }
        // apt prints a version as ` *** VERSION PRIO` (installed) or `     VERSION PRIO`,
        // maybe followed by `(phased N%)`, and each archive offering it as `       %4i
        // DESCRIPTION`: seven spaces and a right-aligned priority, so never a non-blank
        // sixth character.
        let tokens: Vec<&str> = trimmed
            .trim_start_matches("***")
            .split_whitespace()
            .collect();
        let is_version = line.starts_with(" *** ")
            || (line.starts_with("     ") && line.as_bytes().get(5).is_some_and(|b| *b != b' '));
        if is_version {
            if let Some(v) = tokens.first() {
                c.versions.push(OfferedVersion {
                    version: (*v).to_owned(),
                    origin: String::new(),
                    security: false,
                });
            }
        } else if let (Some(last), [_prio, _url, archive, ..]) =
            (c.versions.last_mut(), &tokens[..])
        {
            // `PRIO URL SUITE/COMPONENT ARCH Packages`; dpkg's status file has no archive.
            let suite = archive.split('/').next().unwrap_or(archive);
            if suite.to_ascii_lowercase().contains("security") {
                last.security = true;
            }
            if !last.origin.split(", ").any(|o| o == *archive) {
                if !last.origin.is_empty() {
                    last.origin.push_str(", ");
                }
                last.origin.push_str(archive);
            }
        }
    }
    finish(current, &mut out);
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    out
}

/// The `The following packages have been kept back:` list of `apt-get -s -q dist-upgrade`.
pub fn parse_kept_back(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("The following packages have been kept back") {
            continue;
        }
        for item in lines.by_ref() {
            if !item.starts_with(' ') {
                break;
            }
            names.extend(item.split_whitespace().map(str::to_string));
        }
        break;
    }
    names.sort();
    names
}

/// The dry run of installing exactly `requested` (`(name, version)`): what apply's
/// `apt-get install NAME=VERSION...` would do, without the lock (it changes nothing).
/// Names and versions are checked against the Debian grammar and follow `--`.
pub fn simulation_command(requested: &[(&str, &str)]) -> Result<String, InvalidPackageArg> {
    let pkgs = requested
        .iter()
        .map(|(name, version)| {
            crate::package::exact(crate::model::PackageManager::Apt, name, version)
                .map(|a| shell_quote(&a))
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(format!(
        "apt-get -s -q -o Debug::NoLocking=1 install -- {} </dev/null",
        pkgs.join(" ")
    ))
}

/// Reads a dry run's `Inst` and `Remv` lines (see [`parse_apt_simulation`]).
pub fn parse_apt_transaction(text: &str) -> TransactionPreview {
    let mut removals = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Remv ") {
            if let Some(name) = rest.split([' ', ':']).next().filter(|n| !n.is_empty()) {
                removals.push(name.to_string());
            }
        }
    }
    removals.sort();
    removals.dedup();
    TransactionPreview {
        installs: parse_apt_simulation(text),
        removals,
    }
}

/// Why apt refused a dry run: the unmet dependencies it lists on standard output and its
/// `E:` lines, on one line.
pub fn refusal(stdout: &str, stderr: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut in_unmet = false;
    for line in stdout.lines() {
        if line.starts_with("The following packages have unmet dependencies") {
            in_unmet = true;
            continue;
        }
        if in_unmet {
            if line.starts_with(' ') && !line.trim().is_empty() {
                parts.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
                continue;
            }
            in_unmet = false;
        }
    }
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(e) = line.strip_prefix("E: ") {
            parts.push(e.to_string());
        }
    }
    if parts.is_empty() {
        parts.extend(
            stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    parts.join("; ")
}

/// Reads the reboot section: `required` then the lines of `/run/reboot-required.pkgs`.
pub fn parse_reboot(text: &str) -> RebootRequired {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("required") {
        return RebootRequired::default();
    }
    let mut packages: Vec<String> = lines.map(str::to_string).collect();
    packages.sort();
    packages.dedup();
    RebootRequired {
        required: true,
        packages,
    }
}

/// Fills in the apt parts of `host` from the script's sections.
pub(crate) fn interpret(
    host: &mut ObservedHost,
    sections: &BTreeMap<String, Section>,
) -> Result<(), FailureReason> {
    if let Some(refresh) = sections.get("refresh") {
        if refresh.exit != Some(0) {
            let why = refresh.stderr.lines().next().unwrap_or("").trim();
            host.warnings.push(format!(
                "apt-get update failed (exit {}): {why}; pending updates come from the previous indexes",
                refresh.exit.map_or("?".to_string(), |c| c.to_string())
            ));
        }
    }
    let installed = section(sections, "installed", "dpkg-query -W")?;
    if installed.exit != Some(0) {
        return Err(step_failed(installed, "dpkg-query -W", "dpkg-query"));
    }
    let state = parse_dpkg_query(&installed.stdout);
    for line in &state.unreadable {
        host.warnings.push(format!(
            "unreadable dpkg-query line: {}",
            crate::terminal::escape(line)
        ));
    }
    host.installed = state.installed;
    host.sources = state.sources;
    host.held = state.held;
    host.db_health = state.broken;
    if let Some(reboot) = sections.get("reboot") {
        host.reboot_required = parse_reboot(&reboot.stdout);
    }
    let updates = section(sections, "updates", "apt-get -s dist-upgrade")?;
    if updates.exit != Some(0) {
        return Err(step_failed(updates, "apt-get -s dist-upgrade", "apt-get"));
    }
    host.updates = parse_apt_simulation(&updates.stdout);
    host.kept_back = parse_kept_back(&updates.stdout);
    // Older scripts (or a failing apt-cache) leave the offers unknown: only the candidate.
    if let Some(offered) = sections.get("offered").filter(|o| o.exit == Some(0)) {
        host.offered = parse_apt_policy(&offered.stdout);
    }
    // The dry run that ignores holds: what held packages (and what they would pull along)
    // would be updated to. Optional: a failure costs only this detail.
    match sections.get("held-updates") {
        Some(held) if held.exit == Some(0) => {
            host.held_updates = held_only(&host.updates, parse_apt_simulation(&held.stdout));
        }
        Some(held) => host.warnings.push(format!(
            "cannot list held updates (`apt-get -s -o APT::Ignore-Hold=true dist-upgrade` exited {}): {}",
            held.exit.map_or("?".to_string(), |c| c.to_string()),
            held.stderr.lines().next().unwrap_or("").trim()
        )),
        None => {}
    }
    Ok(())
}

/// The updates of a dry run that ignores holds which the regular dry run does not make
/// (held packages and what they pull along).
pub(crate) fn held_only(
    regular: &[PendingUpdate],
    ignoring: Vec<PendingUpdate>,
) -> Vec<PendingUpdate> {
    ignoring
        .into_iter()
        .filter(|u| {
            !regular.iter().any(|r| {
                r.name == u.name && r.arch == u.arch && r.candidate_version == u.candidate_version
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-cache policy` as apt 2.6 prints it (cmdline/apt-cache.cc): one repository
    /// (`bookworm/main`) offering several versions of libpk, a security suite offering a
    /// newer one, a version pinned above 1000, a phased version (Ubuntu), one only in dpkg's
    /// status file, and a foreign-architecture package.
    const POLICY: &str = "libpk:
  Installed: 1.0-1
  Candidate: 1.3-1
  Version table:
     1.3-1 500
        500 http://deb.example/debian bookworm-security/main amd64 Packages
     1.2-1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
     1.1-1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
        100 http://deb.example/debian bookworm-backports/main amd64 Packages
 *** 1.0-1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
pk-app:
  Installed: 1.0
  Candidate: 2.0
  Version table:
     2.1 1001 (phased 10%)
       1001 file:/srv/repo ./ Packages
     2.0 -1
         -1 http://deb.example/debian bookworm/main amd64 Packages
     1.5 100
        100 /var/lib/dpkg/status
 *** 1.0 100
        100 /var/lib/dpkg/status
libfoo:i386:
  Installed: (none)
  Candidate: 2.0-1
  Version table:
     2.0-1 500
        500 http://deb.example/debian bookworm/main i386 Packages
";

    #[test]
    fn apt_policy_lists_every_version_offered_above_the_installed_one() {
        let offered = parse_apt_policy(POLICY);
        // (name, arch, [(version, origin, security)]).
        type Row = (String, String, Vec<(String, String, bool)>);
        let summary: Vec<Row> = offered
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.arch.clone(),
                    p.versions
                        .iter()
                        .map(|v| (v.version.clone(), v.origin.clone(), v.security))
                        .collect(),
                )
            })
            .collect();
        let v = |version: &str, origin: &str, security: bool| {
            (version.to_owned(), origin.to_owned(), security)
        };
        assert_eq!(
            summary,
            [
                (
                    "libfoo".to_owned(),
                    "i386".to_owned(),
                    vec![v("2.0-1", "bookworm/main", false)]
                ),
                (
                    "libpk".to_owned(),
                    String::new(),
                    vec![
                        v("1.3-1", "bookworm-security/main", true),
                        v("1.2-1", "bookworm/main", false),
                        v("1.1-1", "bookworm/main, bookworm-backports/main", false),
                    ]
                ),
                (
                    // The phased version keeps its own archive; a version pinned away
                    // (-1) is listed (pins choose the candidate, `pkg=ver` names a version
                    // explicitly); one only in dpkg's status file is not.
                    "pk-app".to_owned(),
                    String::new(),
                    vec![v("2.1", "./", false), v("2.0", "bookworm/main", false)]
                ),
            ]
        );
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/observe/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn dpkg_query_of_a_real_debian_12() {
        let state = parse_dpkg_query(&fixture("debian12-dpkg-query.txt"));
        assert!(state.unreadable.is_empty());
        assert_eq!(state.installed.len(), 732);
        let bsdutils = state
            .installed
            .iter()
            .find(|p| p.name == "bsdutils")
            .unwrap();
        // Epochs are kept.
        assert_eq!(bsdutils.version, "1:2.38.1-5+deb12u3");
        assert_eq!(bsdutils.arch, "amd64");
        assert_eq!(bsdutils.status, "ii");
        assert!(state.installed.iter().any(|p| p.arch == "all"));
        assert!(state.broken.is_empty() && state.held.is_empty());
    }

    #[test]
    fn dpkg_query_with_source_columns() {
        // Captured on this Debian 12 machine with the source columns: a binNMU (bash), a
        // binary with another epoch than its source (bsdutils), a binary versioned apart from
        // its source (cpp), several binaries of one source, and one of its own.
        let text = "bash\t5.2.15-2+b8\tamd64\tii \tbash\t5.2.15-2\n\
            bsdutils\t1:2.38.1-5+deb12u3\tamd64\tii \tutil-linux\t2.38.1-5+deb12u3\n\
            cpp\t4:12.2.0-3\tamd64\tii \tgcc-defaults\t1.203\n\
            dbus-bin\t1.14.10-1~deb12u1\tamd64\tii \tdbus\t1.14.10-1~deb12u1\n\
            apt\t2.6.1\tamd64\tii \tapt\t2.6.1\n\
            old\t1.0-1+b2\tamd64\tii \t\t\n";
        let state = parse_dpkg_query(text);
        assert!(state.unreadable.is_empty());
        assert_eq!(state.installed.len(), 6);
        let rows: Vec<String> = state
            .sources
            .iter()
            .map(|s| format!("{} {} {}", s.package, s.source, s.version))
            .collect();
        assert_eq!(
            rows,
            [
                "bash bash 5.2.15-2",
                "bsdutils util-linux 2.38.1-5+deb12u3",
                "cpp gcc-defaults 1.203",
                "dbus-bin dbus 1.14.10-1~deb12u1",
                // Empty source fields (an old dpkg): the binNMU suffix is stripped here.
                "old old 1.0-1",
            ]
        );
    }

    #[test]
    fn binnmu_suffixes() {
        assert_eq!(strip_binnmu("5.2.15-2+b8"), "5.2.15-2");
        assert_eq!(strip_binnmu("1:1.2-3+deb12u1+b1"), "1:1.2-3+deb12u1");
        assert_eq!(strip_binnmu("1.2-3+deb12u1"), "1.2-3+deb12u1");
        // Not a revision suffix: a native version, or `+b` not followed by digits only.
        assert_eq!(strip_binnmu("1.0+b1"), "1.0+b1");
        assert_eq!(strip_binnmu("1.0-1+beta"), "1.0-1+beta");
    }

    #[test]
    fn held_updates_are_what_only_the_hold_ignoring_run_makes() {
        // Captured from a lab host: the regular dry run keeps pk-held back; the one with
        // APT::Ignore-Hold=true installs it.
        let regular = "The following packages have been kept back:\n  pk-held\n\
            Inst libpk [1.0-1] (1.2-1 PatchkeeperLab-Security:bookworm-security [amd64])\n";
        let ignoring = "The following held packages will be changed:\n  pk-held\n\
            Inst libpk [1.0-1] (1.2-1 PatchkeeperLab-Security:bookworm-security [amd64])\n\
            Inst pk-held [1.0-1] (1.1-1 PatchkeeperLab-Security:bookworm-security [all])\n";
        let held = held_only(
            &parse_apt_simulation(regular),
            parse_apt_simulation(ignoring),
        );
        assert_eq!(held.len(), 1);
        assert_eq!(
            (
                held[0].name.as_str(),
                held[0].candidate_version.as_str(),
                held[0].security
            ),
            ("pk-held", "1.1-1", true)
        );
    }

    #[test]
    fn dpkg_query_odd_states() {
        // Captured from a lab chroot: a held package, a half-configured one, an unpacked
        // one, a removed one with config files left, and a foreign-architecture one.
        let state = parse_dpkg_query(&fixture("dpkg-query-odd-states.txt"));
        assert_eq!(state.held, ["hello"]);
        let names: Vec<_> = state
            .broken
            .iter()
            .map(|b| (b.name.as_str(), b.state.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("pk-halfconf", "half-configured"),
                ("pk-unpacked", "unpacked")
            ]
        );
        assert!(!state.installed.iter().any(|p| p.name == "pk-removed"));
        assert!(state
            .installed
            .iter()
            .any(|p| p.name == "libc6" && p.arch == "i386"));
        assert_eq!(state.unreadable, ["garbage line"]);
    }

    #[test]
    fn simulation_of_a_real_debian_12() {
        let updates = parse_apt_simulation(&fixture("debian12-apt-get-s-dist-upgrade.txt"));
        assert_eq!(updates.len(), 128);
        let perl = updates.iter().find(|u| u.name == "perl-base").unwrap();
        assert_eq!(perl.installed_version.as_deref(), Some("5.36.0-7+deb12u2"));
        assert_eq!(perl.candidate_version, "5.36.0-7+deb12u4");
        assert_eq!(perl.origin, "Debian-Security:12/oldstable-security");
        assert!(perl.security);
        let bash = updates.iter().find(|u| u.name == "bash").unwrap();
        assert!(!bash.security);
        assert_eq!(bash.origin, "Debian:12.15/oldstable");
        let login = updates.iter().find(|u| u.name == "login").unwrap();
        assert_eq!(login.candidate_version, "1:4.13+dfsg1-1+deb12u2");
        // Two origins, one of them security.
        let gcrypt = updates.iter().find(|u| u.name == "libgcrypt20").unwrap();
        assert!(gcrypt.security);
        assert_eq!(
            gcrypt.origin,
            "Debian:12.15/oldstable, Debian-Security:12/oldstable-security"
        );
        let tz = updates.iter().find(|u| u.name == "tzdata").unwrap();
        assert_eq!(tz.arch, "all");
    }

    #[test]
    fn simulation_odd_lines() {
        let text = "NOTE: This is only a simulation!\n\
            Inst libc6:i386 [2.36-9] (2.36-9+deb12u4 Debian:12.5/stable [i386])\n\
            Inst newdep (1.0-1 local [amd64])\n\
            Inst noorigin [1.0] (1.1 [all]) []\n\
            Remv oldthing [0.9]\n\
            Conf newdep (1.0-1 local [amd64])\n";
        let u = parse_apt_simulation(text);
        assert_eq!(u.len(), 3);
        assert_eq!((u[0].name.as_str(), u[0].arch.as_str()), ("libc6", "i386"));
        assert_eq!(u[1].installed_version, None);
        assert_eq!(u[1].origin, "local");
        assert_eq!(u[2].origin, "");
        assert_eq!(u[2].candidate_version, "1.1");
    }

    #[test]
    fn reboot_section() {
        assert_eq!(parse_reboot(""), RebootRequired::default());
        let r = parse_reboot("required\nlinux-image-6.1.0-28-amd64\nlibc6\nlibc6\n");
        assert!(r.required);
        assert_eq!(r.packages, ["libc6", "linux-image-6.1.0-28-amd64"]);
    }

    #[test]
    fn dry_run_of_an_install() {
        assert_eq!(
            simulation_command(&[("pk-app", "2.0-1"), ("libstdc++6", "1:1.0~rc1")]).unwrap(),
            "apt-get -s -q -o Debug::NoLocking=1 install -- pk-app=2.0-1 'libstdc++6=1:1.0~rc1' </dev/null"
        );
        assert!(simulation_command(&[("odd name", "1")]).is_err());
        assert!(simulation_command(&[("-oAPT::Get::Simulate=false", "1")]).is_err());
        // Captured from a lab host: pk-app 2.0-1 needs libpk >= 1.2.
        let text = "Reading package lists...\nBuilding dependency tree...\n\
            Inst libpk [1.0-1] (1.2-1 PatchkeeperLab-Security:bookworm-security [amd64])\n\
            Inst pk-app [1.0-1] (2.0-1 PatchkeeperLab:bookworm [all])\n\
            Remv pk-old:amd64 [0.9-1]\n\
            Conf libpk (1.2-1 PatchkeeperLab-Security:bookworm-security [amd64])\n\
            Conf pk-app (2.0-1 PatchkeeperLab:bookworm [all])\n";
        let preview = parse_apt_transaction(text);
        let names: Vec<_> = preview
            .installs
            .iter()
            .map(|u| (u.name.as_str(), u.candidate_version.as_str(), u.security))
            .collect();
        assert_eq!(
            names,
            [("libpk", "1.2-1", true), ("pk-app", "2.0-1", false)]
        );
        assert_eq!(preview.removals, ["pk-old"]);
    }

    #[test]
    fn kept_back_packages() {
        // Captured from a lab host with libpk on hold.
        let text =
            "Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n\
            The following packages have been kept back:\n\
            \x20 libpk pk-app pk-held\n\
            The following packages will be upgraded:\n\
            \x20 pk-broken pk-kernel\n\
            2 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n\
            Inst pk-broken [1.0-1] (1.1-1 PatchkeeperLab:bookworm [all])\n";
        assert_eq!(parse_kept_back(text), ["libpk", "pk-app", "pk-held"]);
        assert_eq!(parse_apt_simulation(text).len(), 1);
        assert!(parse_kept_back("Inst a [1] (2 x [all])\n").is_empty());
    }

    #[test]
    fn refusal_names_the_unmet_dependency() {
        // Captured from a lab host with libpk on hold.
        let stdout = "Reading package lists...\nBuilding dependency tree...\n\
            Some packages could not be installed. This may mean that you have\n\
            requested an impossible situation or if you are using the unstable\n\
            The following information may help to resolve the situation:\n\n\
            The following packages have unmet dependencies:\n\
            \x20pk-app : Depends: libpk (>= 1.2) but 1.0-1 is to be installed\n";
        let stderr = "E: Unable to correct problems, you have held broken packages.\n";
        assert_eq!(
            refusal(stdout, stderr),
            "pk-app : Depends: libpk (>= 1.2) but 1.0-1 is to be installed; Unable to correct problems, you have held broken packages."
        );
        assert_eq!(refusal("", "W: something odd\n"), "W: something odd");
    }
}
