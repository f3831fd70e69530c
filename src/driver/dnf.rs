//! The dnf/rpm driver's parsers: `rpm -qa --qf` rows, `dnf check-update` (exit 100 means
//! "updates available"), `dnf updateinfo list --security`, `dnf repoquery --upgrades` (every
//! version offered), `needs-restarting -r` or the
//! newest installed kernel, versionlock and `exclude=` holds.

use std::collections::BTreeMap;

use super::{section, step_failed, Section};
use crate::observed::{
    BrokenPackage, FailureReason, InstallTime, InstalledPackage, ObservedHost, OfferedPackage,
    OfferedVersion, PendingUpdate, RebootRequired, SourcePackage, TransactionPreview,
    UpdateAdvisory,
};
use crate::package::InvalidPackageArg;
use crate::transport::shell_quote;

/// Architectures rpm uses; a NEVRA's last dot-separated part must be one of them.
const ARCHES: &[&str] = &[
    "x86_64", "noarch", "aarch64", "i686", "i386", "ppc64le", "s390x", "armv7hl", "src", "riscv64",
];

/// Parses `rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\t%{INSTALLTIME}\n'`
/// (the source and install-time columns are absent in older captures). The version is written
/// `[EPOCH:]VERSION-RELEASE` (no epoch when rpm says `(none)`); `gpg-pubkey`
/// pseudo-packages are skipped. Returns the packages and the unreadable lines.
pub fn parse_rpm_qa(text: &str) -> (Vec<InstalledPackage>, Vec<String>) {
    let mut packages = Vec::new();
    let mut unreadable = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, epoch, version, release, arch) = match fields[..] {
            [name, epoch, version, release, arch]
            | [name, epoch, version, release, arch, _]
            | [name, epoch, version, release, arch, _, _] => (name, epoch, version, release, arch),
            _ => {
                unreadable.push(line.to_string());
                continue;
            }
        };
        if name == "gpg-pubkey" || arch == "(none)" {
            continue;
        }
        let version = if epoch == "(none)" || epoch.is_empty() {
            format!("{version}-{release}")
        } else {
            format!("{epoch}:{version}-{release}")
        };
        packages.push(InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            status: "installed".into(),
        });
    }
    (packages, unreadable)
}

/// The install times of `rpm -qa` rows with an `%{INSTALLTIME}` column (seconds since the
/// epoch, the host's clock); rows without one (older scripts) or with an unreadable one are
/// left out: their versions count from the observation that first saw them.
pub fn parse_rpm_install_times(text: &str) -> Vec<InstallTime> {
    let mut times = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch, _srpm, installed] = fields[..] else {
            continue;
        };
        if name == "gpg-pubkey" || arch == "(none)" {
            continue;
        }
        let Some(at) = installed
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
        else {
            continue;
        };
        let version = if epoch == "(none)" || epoch.is_empty() {
            format!("{version}-{release}")
        } else {
            format!("{epoch}:{version}-{release}")
        };
        times.push(InstallTime {
            name: name.into(),
            arch: arch.into(),
            version: version.into(),
            at,
        });
    }
    times
}

/// The source packages of `rpm -qa` rows with a `%{SOURCERPM}` column, where they differ
/// from the package's own name or version. The source version is the binary's epoch with
/// the source RPM's version and release (a source RPM's file name carries no epoch; its
/// binaries share it).
pub fn parse_rpm_sources(text: &str) -> Vec<SourcePackage> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch, srpm, ..] = fields[..] else {
            continue;
        };
        if name == "gpg-pubkey" || arch == "(none)" {
            continue;
        }
        let Some((source, sv, sr)) = parse_srpm(srpm.trim()) else {
            continue;
        };
        let epoch_prefix = if epoch == "(none)" || epoch.is_empty() {
            String::new()
        } else {
            format!("{epoch}:")
        };
        let source_version = format!("{epoch_prefix}{sv}-{sr}");
        let binary_version = format!("{epoch_prefix}{version}-{release}");
        if source != name || source_version != binary_version {
            sources.push(SourcePackage {
                package: name.into(),
                arch: arch.into(),
                source: source.into(),
                version: source_version.into(),
            });
        }
    }
    sources
}

/// Splits a source RPM file name `NAME-VERSION-RELEASE.src.rpm` (or `.nosrc.rpm`).
pub fn parse_srpm(file: &str) -> Option<(&str, &str, &str)> {
    let stem = file
        .strip_suffix(".src.rpm")
        .or_else(|| file.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = stem.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    (!name.is_empty() && !version.is_empty() && !release.is_empty())
        .then_some((name, version, release))
}

/// Parses `dnf updateinfo info` records (blocks under a `====` rule: `Update ID`, `Type`,
/// `Updated`/`Issued`, `CVEs` (one per line, continuation lines start with `:`),
/// `Severity`; other fields are skipped).
pub fn parse_updateinfo_info(text: &str) -> Vec<UpdateAdvisory> {
    let mut out: Vec<UpdateAdvisory> = Vec::new();
    let mut current: Option<UpdateAdvisory> = None;
    let mut last_key = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("=====") {
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let key = if key.is_empty() {
            last_key.clone()
        } else {
            last_key = key.to_owned();
            key.to_owned()
        };
        if key == "Update ID" {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(UpdateAdvisory {
                id: value.to_owned(),
                severity: None,
                cves: Vec::new(),
                updated: None,
            });
            continue;
        }
        let Some(a) = current.as_mut() else { continue };
        match key.as_str() {
            "CVEs" => a.cves.extend(
                value
                    .split_whitespace()
                    .filter(|c| c.starts_with("CVE-"))
                    .map(str::to_owned),
            ),
            "Severity" if !value.is_empty() && value != "None" => {
                a.severity = Some(value.to_owned())
            }
            "Updated" | "Issued" if a.updated.is_none() && !value.is_empty() => {
                a.updated = Some(value.to_owned())
            }
            _ => {}
        }
    }
    out.extend(current);
    out
}

/// Parses `dnf -q check-update` output: `NAME.ARCH  [EPOCH:]VERSION-RELEASE  REPO` rows,
/// which dnf wraps onto two lines when the name is long. Stops at `Obsoleting Packages`.
/// Installed versions are filled in from `installed` (same name and architecture, or a
/// `noarch` one).
pub fn parse_check_update(text: &str, installed: &[InstalledPackage]) -> Vec<PendingUpdate> {
    let mut updates = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Obsoleting Packages") {
            break;
        }
        if trimmed.is_empty()
            || trimmed.starts_with("Security:")
            || trimmed.starts_with("Last metadata")
        {
            pending.clear();
            continue;
        }
        pending.extend(trimmed.split_ascii_whitespace());
        if pending.len() < 3 {
            continue;
        }
        if let [name_arch, version, repo, ..] = pending[..] {
            if let Some((name, arch)) = name_arch.rsplit_once('.') {
                let installed_version = installed
                    .iter()
                    .find(|p| {
                        p.name == name && (p.arch == arch || p.arch == "noarch" || arch == "noarch")
                    })
                    .map(|p| p.version.to_string());
                updates.push(PendingUpdate {
                    name: name.to_string(),
                    arch: arch.to_string(),
                    installed_version,
                    candidate_version: version.to_string(),
                    origin: repo.to_string(),
                    security: false,
                    advisories: Vec::new(),
                });
            }
        }
        pending.clear();
    }
    updates
}

/// Parses `dnf repoquery --upgrades --qf '%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}\t%{repoid}'`:
/// every version offered above the installed one, per package and architecture, newest
/// first. `security` names the `(advisory, package)` pairs of `dnf updateinfo list
/// --security`: a version is a security update when an advisory names exactly it.
pub fn parse_repoquery(text: &str, security: &[(String, Nevra)]) -> Vec<OfferedPackage> {
    let mut by_package: BTreeMap<(String, String), Vec<OfferedVersion>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
        let [name, epoch, version, release, arch, repo] = fields[..] else {
            continue;
        };
        let version = if matches!(epoch, "" | "0" | "(none)") {
            format!("{version}-{release}")
        } else {
            format!("{epoch}:{version}-{release}")
        };
        let is_security = security.iter().any(|(_, (n, v, a))| {
            n == name && *v == version && (a == arch || a == "noarch" || arch == "noarch")
        });
        let list = by_package
            .entry((name.to_owned(), arch.to_owned()))
            .or_default();
        match list.iter_mut().find(|o| o.version == version) {
            Some(o) => {
                o.security |= is_security;
                if !o.origin.split(", ").any(|r| r == repo) {
                    o.origin.push_str(", ");
                    o.origin.push_str(repo);
                }
            }
            None => list.push(OfferedVersion {
                version,
                origin: repo.to_owned(),
                security: is_security,
            }),
        }
    }
    by_package
        .into_iter()
        .map(|((name, arch), mut versions)| {
            versions.sort_by(|a, b| {
                crate::version::compare(crate::version::Ecosystem::Rpm, &b.version, &a.version)
                    .unwrap_or_else(|_| b.version.cmp(&a.version))
            });
            OfferedPackage {
                name,
                arch,
                versions,
            }
        })
        .collect()
}

/// The dry run of installing exactly `requested` (`(name, version)`): what apply's
/// `dnf install NAME-VERSION...` would do. `-C` keeps to the metadata the observation read;
/// `--assumeno` answers the confirmation with no, so nothing changes.
/// Names and versions are checked against the RPM grammar and follow `--`.
pub fn simulation_command(requested: &[(&str, &str)]) -> Result<String, InvalidPackageArg> {
    let pkgs = requested
        .iter()
        .map(|(name, version)| {
            crate::package::exact(crate::model::PackageManager::Dnf, name, version)
                .map(|a| shell_quote(&a))
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(format!(
        "dnf -C --assumeno install -- {} </dev/null",
        pkgs.join(" ")
    ))
}

/// Reads the transaction table of a dnf dry run (`Upgrading:`, `Installing dependencies:`,
/// `Removing:`... sections of `NAME ARCH VERSION REPO SIZE` rows, a long name wrapped onto
/// its own line). Installed versions are filled in from `installed`.
pub fn parse_transaction(text: &str, installed: &[InstalledPackage]) -> TransactionPreview {
    #[derive(PartialEq)]
    enum Part {
        Other,
        Installs,
        Removals,
    }
    let mut preview = TransactionPreview::default();
    let mut part = Part::Other;
    let mut pending: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Transaction Summary") {
            break;
        }
        if !line.starts_with(' ') {
            pending.clear();
            let header = line.trim_end();
            part = match header.strip_suffix(':') {
                Some(h) if h.starts_with("Installing") && !h.contains("module") => Part::Installs,
                Some("Upgrading" | "Downgrading" | "Reinstalling") => Part::Installs,
                Some(h) if h.starts_with("Removing") => Part::Removals,
                _ => Part::Other,
            };
            continue;
        }
        if part == Part::Other {
            continue;
        }
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        if tokens.first() == Some(&"replacing") {
            continue;
        }
        pending.extend(tokens);
        if pending.len() < 4 {
            continue;
        }
        let (name, arch, version, repo) = (pending[0], pending[1], pending[2], pending[3]);
        match part {
            Part::Installs => preview.installs.push(PendingUpdate {
                name: name.to_string(),
                arch: arch.to_string(),
                installed_version: installed
                    .iter()
                    .find(|p| {
                        p.name == name && (p.arch == arch || p.arch == "noarch" || arch == "noarch")
                    })
                    .map(|p| p.version.to_string()),
                candidate_version: version.to_string(),
                origin: repo.to_string(),
                security: false,
                advisories: Vec::new(),
            }),
            Part::Removals => preview.removals.push(name.to_string()),
            Part::Other => {}
        }
        pending.clear();
    }
    preview.installs.sort_by(|a, b| a.name.cmp(&b.name));
    preview.removals.sort();
    preview.removals.dedup();
    preview
}

/// Whether a dnf dry run resolved: it exits 0 with nothing to do, or 1 after printing the
/// transaction and answering no (`Operation aborted.`).
pub fn dry_run_resolved(exit: Option<u32>, stdout: &str, stderr: &str) -> bool {
    match exit {
        Some(0) => true,
        Some(1) => {
            stdout.contains("Transaction Summary")
                && stderr.contains("Operation aborted")
                && !stderr.lines().any(|l| l.starts_with("Error"))
        }
        _ => false,
    }
}

/// Why dnf refused a dry run: its `Error:` and problem lines, on one line.
pub fn refusal(stdout: &str, stderr: &str) -> String {
    let keep = |l: &&str| {
        !l.is_empty()
            && !l.starts_with("Last metadata expiration")
            && !l.starts_with("(try to add")
            && *l != "Error:"
    };
    let mut parts: Vec<String> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("No match for argument"))
        .map(str::to_string)
        .collect();
    parts.extend(stderr.lines().map(str::trim).filter(keep).map(|l| {
        l.trim_start_matches("Error: ")
            .trim_start_matches("- ")
            .to_string()
    }));
    parts.join("; ")
}

/// Reads `dnf check`: `A is a duplicate with B` (two versions of one package recorded, what
/// an interrupted rpm transaction leaves; `dnf remove --duplicates` repairs it) becomes a
/// broken package, the older one; any other problem (missing requires, conflicts,
/// obsoleted) is returned as text for the host's warnings.
pub fn parse_check(text: &str) -> (Vec<BrokenPackage>, Vec<String>) {
    let mut broken = Vec::new();
    let mut other = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("Error: Check discovered") {
            continue;
        }
        let duplicate = line
            .split_once(" is a duplicate with ")
            .and_then(|(older, _)| parse_nevra(older));
        match duplicate {
            Some((name, version, arch)) => broken.push(BrokenPackage {
                name,
                arch,
                version,
                state: "duplicate".into(),
            }),
            None => other.push(line.to_string()),
        }
    }
    (broken, other)
}

/// A package named in an advisory: `(name, [epoch:]version-release, arch)`.
pub type Nevra = (String, String, String);

/// Splits `name-[epoch:]version-release.arch`.
pub fn parse_nevra(s: &str) -> Option<Nevra> {
    let (rest, arch) = s.rsplit_once('.')?;
    if !ARCHES.contains(&arch) {
        return None;
    }
    let (rest, release) = rest.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    Some((
        name.to_string(),
        format!("{version}-{release}"),
        arch.to_string(),
    ))
}

/// Parses `dnf updateinfo list --security` rows (`ADVISORY  TYPE/SEVERITY  NEVRA`, and the
/// dnf5 layout with a header and an issued date) into `(advisory, package)` pairs.
pub fn parse_updateinfo(text: &str) -> Vec<(String, Nevra)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        if tokens.len() < 3 || tokens[0] == "Name" {
            continue;
        }
        if let Some(nevra) = tokens[1..].iter().find_map(|t| parse_nevra(t)) {
            out.push((tokens[0].to_string(), nevra));
        }
    }
    out
}

/// Marks updates that a security advisory covers (same name and arch).
pub fn apply_advisories(updates: &mut [PendingUpdate], advisories: &[(String, Nevra)]) {
    for update in updates.iter_mut() {
        for (id, (name, _version, arch)) in advisories {
            if *name == update.name && (*arch == update.arch || arch == "noarch") {
                update.security = true;
                if !update.advisories.contains(id) {
                    update.advisories.push(id.clone());
                }
            }
        }
        update.advisories.sort();
    }
}

/// Reads the reboot section: `needs-restarting -r` output and status when available, else
/// the newest installed kernel (`kernel INSTALLTIME VERSION-RELEASE.ARCH` lines) against
/// the running one.
pub fn parse_reboot(text: &str, running_kernel: Option<&str>) -> RebootRequired {
    let mut packages = Vec::new();
    let mut needs_restarting = None;
    let mut newest: Option<(u64, &str)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(code) = t.strip_prefix("needs-restarting ") {
            needs_restarting = code.trim().parse::<i32>().ok();
        } else if let Some(pkg) = t.strip_prefix("* ") {
            packages.push(pkg.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("kernel ") {
            let mut f = rest.split_ascii_whitespace();
            if let (Some(time), Some(version)) =
                (f.next().and_then(|x| x.parse::<u64>().ok()), f.next())
            {
                if newest.is_none_or(|(t0, _)| time >= t0) {
                    newest = Some((time, version));
                }
            }
        }
    }
    match needs_restarting {
        // 1: reboot required; 0: not. Anything else means the tool itself failed: fall back.
        Some(1) => {
            packages.sort();
            packages.dedup();
            return RebootRequired {
                required: true,
                packages,
            };
        }
        Some(0) => return RebootRequired::default(),
        _ => {}
    }
    match (newest, running_kernel) {
        (Some((_, version)), Some(running)) if version != running => RebootRequired {
            required: true,
            packages: vec!["kernel".to_string()],
        },
        _ => RebootRequired::default(),
    }
}

/// Package names held by versionlock (`NAME-EPOCH:VERSION-RELEASE.*`, `!` for excluded
/// versions) and by `exclude=`/`excludepkgs=` in dnf.conf (globs kept as written).
pub fn parse_holds(text: &str) -> Vec<String> {
    let mut held = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = t.split_once('=') {
            if matches!(key.trim(), "exclude" | "excludepkgs") {
                held.extend(
                    value
                        .split(|c: char| c == ',' || c.is_ascii_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                continue;
            }
        }
        let spec = t.trim_start_matches('!');
        let name = spec
            .rsplit_once('-')
            .and_then(|(rest, _release)| rest.rsplit_once('-'))
            .map(|(name, evr)| {
                if evr.contains(':') || evr.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    name
                } else {
                    spec
                }
            })
            .unwrap_or(spec);
        held.push(name.to_string());
    }
    held.sort();
    held.dedup();
    held
}

/// Fills in the dnf parts of `host` from the script's sections.
pub(crate) fn interpret(
    host: &mut ObservedHost,
    sections: &BTreeMap<String, Section>,
) -> Result<(), FailureReason> {
    let installed = section(sections, "installed", "rpm -qa")?;
    if installed.exit != Some(0) {
        return Err(step_failed(installed, "rpm -qa", "rpm"));
    }
    let (packages, unreadable) = parse_rpm_qa(&installed.stdout);
    for line in unreadable {
        host.warnings.push(format!(
            "unreadable rpm -qa line: {}",
            crate::terminal::escape(&line)
        ));
    }
    host.installed = packages;
    host.sources = parse_rpm_sources(&installed.stdout);
    host.install_times = parse_rpm_install_times(&installed.stdout);
    if let Some(held) = sections.get("held") {
        host.held = parse_holds(&held.stdout);
    }
    if let Some(reboot) = sections.get("reboot") {
        host.reboot_required = parse_reboot(&reboot.stdout, host.kernel.as_deref());
    }
    let updates = section(sections, "updates", "dnf check-update")?;
    // check-update: 0 no updates, 100 updates available, anything else an error.
    if !matches!(updates.exit, Some(0) | Some(100)) {
        return Err(step_failed(updates, "dnf check-update", "dnf"));
    }
    host.updates = parse_check_update(&updates.stdout, &host.installed);
    let security = section(sections, "security", "dnf updateinfo list --security")?;
    if security.exit != Some(0) {
        return Err(step_failed(
            security,
            "dnf updateinfo list --security",
            "dnf",
        ));
    }
    let mut advisories = parse_updateinfo(&security.stdout);
    // Held updates: what a check-update ignoring versionlock and excludes offers beyond the
    // regular one, with the advisories dnf knows for them. Optional sections: a failure
    // costs only this detail.
    if let Some(held) = sections.get("held-updates") {
        if matches!(held.exit, Some(0) | Some(100)) {
            let ignoring = parse_check_update(&held.stdout, &host.installed);
            host.held_updates = super::apt::held_only(&host.updates, ignoring);
        } else {
            host.warnings.push(format!(
                "cannot list held updates (`dnf --disableplugin=versionlock --disableexcludes=all check-update` exited {})",
                held.exit.map_or("?".to_string(), |c| c.to_string())
            ));
        }
    }
    if let Some(held) = sections.get("held-security").filter(|s| s.exit == Some(0)) {
        advisories.extend(parse_updateinfo(&held.stdout));
    }
    apply_advisories(&mut host.updates, &advisories);
    apply_advisories(&mut host.held_updates, &advisories);
    // Older scripts (or a failing repoquery) leave the offers unknown: only the candidate.
    if let Some(offered) = sections.get("offered").filter(|o| o.exit == Some(0)) {
        host.offered = parse_repoquery(&offered.stdout, &advisories);
    }
    if let Some(info) = sections.get("advisory-info").filter(|s| s.exit == Some(0)) {
        host.advisories = parse_updateinfo_info(&info.stdout);
    }
    // `dnf check` exits 1 when it finds problems; without the section (an older script or
    // a failing dnf) the database is simply not judged.
    if let Some(check) = sections
        .get("check")
        .filter(|c| matches!(c.exit, Some(0 | 1)))
    {
        let (broken, other) = parse_check(&format!("{}\n{}", check.stdout, check.stderr));
        host.db_health = broken;
        host.warnings.extend(
            other
                .into_iter()
                .map(|p| format!("dnf check: {}", crate::terminal::escape(&p))),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_rows_with_and_without_epoch() {
        let (p, bad) = parse_rpm_qa(
            "openssl\t1\t3.0.7\t27.el9\tx86_64\nbash\t(none)\t5.1.8\t9.el9\tx86_64\ngpg-pubkey\t(none)\t8483c65d\t5ccc5b19\t(none)\nbroken line\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].version, "1:3.0.7-27.el9");
        assert_eq!(p[1].version, "5.1.8-9.el9");
        assert_eq!(p[1].status, "installed");
        assert_eq!(bad, ["broken line"]);
    }

    #[test]
    fn install_times_come_from_the_seventh_column_when_there_is_one() {
        let text =
            "openssl-libs\t1\t3.0.7\t27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm\t1790000000\n\
            bash\t(none)\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n\
            zlib\t(none)\t1.2.11\t40.el9\tx86_64\tzlib-1.2.11-40.el9.src.rpm\t(none)\n\
            gpg-pubkey\t(none)\t8483c65d\t5ccc5b19\t(none)\t(none)\t1790000000\n";
        let (p, bad) = parse_rpm_qa(text);
        assert_eq!((p.len(), bad.len()), (3, 0));
        assert_eq!(parse_rpm_sources(text).len(), 1);
        let times = parse_rpm_install_times(text);
        assert_eq!(
            times,
            [InstallTime {
                name: "openssl-libs".into(),
                arch: "x86_64".into(),
                version: "1:3.0.7-27.el9".into(),
                at: jiff::Timestamp::from_second(1_790_000_000).unwrap(),
            }]
        );
    }

    #[test]
    fn source_rpms_name_the_source() {
        let text = "openssl-libs\t1\t3.0.7\t27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm\n\
            bash\t(none)\t5.1.8\t9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n\
            libcurl-minimal\t(none)\t7.76.1\t26.el9\tx86_64\tcurl-7.76.1-26.el9.src.rpm\n\
            gpg-pubkey\t(none)\t8483c65d\t5ccc5b19\t(none)\t(none)\n";
        let (p, bad) = parse_rpm_qa(text);
        assert_eq!((p.len(), bad.len()), (3, 0));
        let rows: Vec<String> = parse_rpm_sources(text)
            .iter()
            .map(|s| format!("{} {} {}", s.package, s.source, s.version))
            .collect();
        // The source RPM's file name has no epoch: the binary's is kept.
        assert_eq!(
            rows,
            [
                "openssl-libs openssl 1:3.0.7-27.el9",
                "libcurl-minimal curl 7.76.1-26.el9"
            ]
        );
        assert_eq!(
            parse_srpm("pk-app-2.0-1.src.rpm"),
            Some(("pk-app", "2.0", "1"))
        );
        assert_eq!(parse_srpm("(none)"), None);
    }

    #[test]
    fn updateinfo_info_records() {
        // Captured from a lab host (dnf 4.14), plus a second CVE on a continuation line.
        let text =
            "===============================================================================\n\
            \x20 Important: libpk security update\n\
            ===============================================================================\n\
            \x20 Update ID: PKLAB-2026:0002\n\
            \x20      Type: security\n\
            \x20   Updated: 2026-01-02 00:00:00\n\
            \x20      CVEs: CVE-2026-9002\n\
            \x20          : CVE-2026-9102\n\
            Description: patchkeeper lab: libpk 1.2 (security).\n\
            \x20  Severity: Important\n\
            \n\
            ===============================================================================\n\
            \x20 pk-held security update\n\
            ===============================================================================\n\
            \x20 Update ID: PKLAB-2026:0006\n\
            \x20      Type: security\n\
            \x20   Severity: None\n";
        let a = parse_updateinfo_info(text);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].id, "PKLAB-2026:0002");
        assert_eq!(a[0].severity.as_deref(), Some("Important"));
        assert_eq!(a[0].cves, ["CVE-2026-9002", "CVE-2026-9102"]);
        assert_eq!(a[0].updated.as_deref(), Some("2026-01-02 00:00:00"));
        assert_eq!(a[1].severity, None);
    }

    #[test]
    fn check_update_rows_wrapped_and_obsoletes() {
        let installed =
            parse_rpm_qa("bash\t(none)\t5.1.8\t6.el9\tx86_64\nopenssl\t1\t3.0.7\t24.el9\tx86_64\n")
                .0;
        let text = "\nbash.x86_64                5.1.8-9.el9            baseos\n\
            a-very-long-package-name-that-wraps.noarch\n                      1.0-2.el9        appstream\n\
            openssl.x86_64             1:3.0.7-27.el9         baseos\n\
            Obsoleting Packages\nfoo.x86_64 1-1 baseos\n    bar.x86_64 0-1 @System\n";
        let u = parse_check_update(text, &installed);
        assert_eq!(u.len(), 3);
        assert_eq!(u[0].installed_version.as_deref(), Some("5.1.8-6.el9"));
        assert_eq!(u[1].name, "a-very-long-package-name-that-wraps");
        assert_eq!(u[1].installed_version, None);
        assert_eq!(u[1].origin, "appstream");
        assert_eq!(u[2].candidate_version, "1:3.0.7-27.el9");
    }

    #[test]
    fn updateinfo_dnf4_and_dnf5_layouts() {
        let dnf4 = "RHSA-2024:1234 Important/Sec. openssl-1:3.0.7-27.el9.x86_64\nFEDORA-2024-1 security     bash-5.2-1.fc40.x86_64\n";
        let a = parse_updateinfo(dnf4);
        assert_eq!(a[0].0, "RHSA-2024:1234");
        assert_eq!(
            a[0].1,
            ("openssl".into(), "1:3.0.7-27.el9".into(), "x86_64".into())
        );
        assert_eq!(a[1].1 .0, "bash");
        let dnf5 = "Name           Type     Severity Package                  Issued\nFEDORA-2024-2 security Moderate curl-8.6.0-8.fc40.x86_64 2024-06-01 00:00:00\n";
        let b = parse_updateinfo(dnf5);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1 .0, "curl");
        let mut updates = parse_check_update(
            "curl.x86_64 8.6.0-8.fc40 updates\nzsh.x86_64 5.9-1 updates\n",
            &[],
        );
        apply_advisories(&mut updates, &b);
        assert!(updates[0].security);
        assert_eq!(updates[0].advisories, ["FEDORA-2024-2"]);
        assert!(!updates[1].security);
    }

    #[test]
    fn reboot_from_needs_restarting_or_kernels() {
        let r = parse_reboot(
            "Core libraries or services have been updated since boot-up:\n  * pk-kernel\n\nReboot is required to fully utilize these updates.\nneeds-restarting 1\n",
            None,
        );
        assert_eq!(r.packages, ["pk-kernel"]);
        assert!(r.required);
        assert!(!parse_reboot("No core libraries or services have been updated since boot-up.\nneeds-restarting 0\n", None).required);
        let k = "kernel 100 5.14.0-1.el9.x86_64\nkernel 200 5.14.0-2.el9.x86_64\n";
        assert!(parse_reboot(k, Some("5.14.0-1.el9.x86_64")).required);
        assert!(!parse_reboot(k, Some("5.14.0-2.el9.x86_64")).required);
        assert!(!parse_reboot("", Some("6.1.0-28-amd64")).required);
    }

    #[test]
    fn holds_from_versionlock_and_excludes() {
        let h = parse_holds("# comment\npk-held-0:1.0-1.el9.*\n!bad-pkg-0:2.0-1.el9.*\nexclude=kernel* foo,bar\nexcludepkgs = baz\n");
        assert_eq!(h, ["bad-pkg", "bar", "baz", "foo", "kernel*", "pk-held"]);
    }

    #[test]
    fn dry_run_of_an_install() {
        assert_eq!(
            simulation_command(&[("pk-app", "2.0-1"), ("pk-kernel", "1:1.1-1")]).unwrap(),
            "dnf -C --assumeno install -- pk-app-2.0-1 pk-kernel-1:1.1-1 </dev/null"
        );
        assert!(simulation_command(&[("@core", "1")]).is_err());
        assert!(simulation_command(&[("libpk", "1;id")]).is_err());
        // Captured from a lab host (dnf 4.14), plus a wrapped long name, a new dependency
        // and a removal.
        let stdout = "Last metadata expiration check: 0:00:11 ago on Wed Nov 25 15:20:55 2026.\n\
            Dependencies resolved.\n\
            ================================================================================\n\
            \x20Package              Architecture      Version          Repository        Size\n\
            ================================================================================\n\
            Upgrading:\n\
            \x20libpk                x86_64            1.2-1            pklab            6.1 k\n\
            \x20pk-app               noarch            2.0-1            pklab            6.3 k\n\
            Installing dependencies:\n\
            \x20a-very-long-package-name-that-dnf-wraps-onto-its-own-line\n\
            \x20                     x86_64            1:3.0-2.el9      appstream         12 M\n\
            Removing dependent packages:\n\
            \x20pk-old               noarch            0.9-1            @System          1.0 k\n\
            \n\
            Transaction Summary\n\
            ================================================================================\n\
            Upgrade  2 Packages\n\n\
            Total download size: 12 k\n";
        let installed = [
            InstalledPackage {
                name: "libpk".into(),
                version: "1.0-1".into(),
                arch: "x86_64".into(),
                status: "installed".into(),
            },
            InstalledPackage {
                name: "pk-app".into(),
                version: "1.0-1".into(),
                arch: "noarch".into(),
                status: "installed".into(),
            },
        ];
        let preview = parse_transaction(stdout, &installed);
        let rows: Vec<_> = preview
            .installs
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.installed_version.as_deref(),
                    u.candidate_version.as_str(),
                    u.origin.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "a-very-long-package-name-that-dnf-wraps-onto-its-own-line",
                    None,
                    "1:3.0-2.el9",
                    "appstream"
                ),
                ("libpk", Some("1.0-1"), "1.2-1", "pklab"),
                ("pk-app", Some("1.0-1"), "2.0-1", "pklab"),
            ]
        );
        assert_eq!(preview.removals, ["pk-old"]);
        assert!(dry_run_resolved(Some(1), stdout, "Operation aborted.\n"));
        assert!(dry_run_resolved(
            Some(0),
            "Dependencies resolved.\nNothing to do.\n",
            ""
        ));
    }

    #[test]
    fn refusal_names_the_problem() {
        // Captured from a lab host with libpk version-locked.
        let stderr = "Error: \n \
            Problem: package pk-app-2.0-1.noarch requires libpk >= 1.2, but none of the providers can be installed\n  \
            - conflicting requests\n  \
            - package libpk-1.2-1.x86_64 is filtered out by exclude filtering\n";
        let stdout = "Last metadata expiration check: 0:00:11 ago on Wed Nov 25 15:20:55 2026.\n\
            (try to add '--skip-broken' to skip uninstallable packages)\n";
        assert!(!dry_run_resolved(Some(1), stdout, stderr));
        assert_eq!(
            refusal(stdout, stderr),
            "Problem: package pk-app-2.0-1.noarch requires libpk >= 1.2, but none of the providers can be installed; conflicting requests; package libpk-1.2-1.x86_64 is filtered out by exclude filtering"
        );
        let stdout = "No match for argument: nonexist-1.0\n";
        let stderr = "Error: Unable to find a match: nonexist-1.0\n";
        assert_eq!(
            refusal(stdout, stderr),
            "No match for argument: nonexist-1.0; Unable to find a match: nonexist-1.0"
        );
    }

    #[test]
    fn dnf_check_duplicates_are_broken_and_the_rest_are_warnings() {
        // Captured from lab hosts: a duplicate left by `rpm -i --justdb`, a removed
        // dependency.
        let text = "pk-kernel-1.0-1.noarch is a duplicate with pk-kernel-1.1-1.noarch\n\
            pk-app-1.0-1.noarch has missing requires of libpk >= 1.0\n\
            Error: Check discovered 2 problem(s)\n";
        let (broken, other) = parse_check(text);
        assert_eq!(
            broken,
            [BrokenPackage {
                name: "pk-kernel".into(),
                arch: "noarch".into(),
                version: "1.0-1".into(),
                state: "duplicate".into(),
            }]
        );
        assert_eq!(
            other,
            ["pk-app-1.0-1.noarch has missing requires of libpk >= 1.0"]
        );
        assert_eq!(parse_check(""), (vec![], vec![]));
    }
}
