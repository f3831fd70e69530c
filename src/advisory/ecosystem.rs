//! Which advisory ecosystem a host belongs to: `/etc/os-release` (`ID`, `VERSION_ID`,
//! `VERSION_CODENAME`) to the OSV ecosystem names (`Debian:12`, `Ubuntu:22.04:LTS`,
//! `AlmaLinux:9`, `Rocky Linux:9`), and the Debian security tracker's release code names to
//! the same names, so records of both sources meet on one key.

use std::collections::BTreeMap;

use crate::observed::OsInfo;
use crate::version::Ecosystem;

/// The OSV ecosystems patchkeeper matches, with the version ordering of each.
pub const SUPPORTED: &[(&str, Ecosystem)] = &[
    ("Debian", Ecosystem::Deb),
    ("Ubuntu", Ecosystem::Deb),
    ("AlmaLinux", Ecosystem::Rpm),
    ("Rocky Linux", Ecosystem::Rpm),
];

/// os-release `ID`s with a built-in ecosystem (Settings `advisories.ecosystems` adds more,
/// e.g. `rhel: AlmaLinux`).
pub const BUILTIN_IDS: &[(&str, &str)] = &[
    ("debian", "Debian"),
    ("ubuntu", "Ubuntu"),
    ("almalinux", "AlmaLinux"),
    ("rocky", "Rocky Linux"),
];

/// Debian release code names and numbers (distro-info-data's `debian.csv`).
const DEBIAN_RELEASES: &[(&str, &str)] = &[
    ("buzz", "1.1"),
    ("rex", "1.2"),
    ("bo", "1.3"),
    ("hamm", "2.0"),
    ("slink", "2.1"),
    ("potato", "2.2"),
    ("woody", "3.0"),
    ("sarge", "3.1"),
    ("etch", "4"),
    ("lenny", "5"),
    ("squeeze", "6"),
    ("wheezy", "7"),
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

/// The version ordering of an OSV ecosystem string (`Debian:12` → dpkg); `None` for
/// ecosystems patchkeeper does not match.
pub fn ordering(ecosystem: &str) -> Option<Ecosystem> {
    let base = base_name(ecosystem);
    SUPPORTED
        .iter()
        .find(|(name, _)| *name == base)
        .map(|(_, e)| *e)
}

/// The ecosystem name without its release (`Rocky Linux:9` → `Rocky Linux`).
pub fn base_name(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem).trim()
}

/// The ecosystem of a tracker release code name: `bookworm` → `Debian:12`; an unknown name
/// (`sid`) is kept (`Debian:sid`, as OSV writes releases without a number).
pub fn debian_release(codename: &str) -> String {
    let code = codename.trim().to_ascii_lowercase();
    match DEBIAN_RELEASES.iter().find(|(c, _)| *c == code) {
        Some((_, number)) => format!("Debian:{number}"),
        None => format!("Debian:{code}"),
    }
}

/// A host's advisory ecosystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostEcosystem {
    /// The OSV ecosystem with its release (`Debian:12`).
    pub name: String,
    /// The version ordering.
    pub ordering: Ecosystem,
}

/// The ecosystem of a host's OS: by `ID` (built in, or mapped by `overrides`, os-release
/// `ID` → ecosystem name), with the major `VERSION_ID` as release (Ubuntu keeps `YY.MM` and
/// gets `:LTS` on even-year April releases, as OSV writes them). `None` when the OS maps
/// to no supported ecosystem or has no release number.
pub fn of_host(os: &OsInfo, overrides: &BTreeMap<String, String>) -> Option<HostEcosystem> {
    let base = overrides.get(&os.id).map(String::as_str).or_else(|| {
        BUILTIN_IDS
            .iter()
            .find(|(id, _)| *id == os.id)
            .map(|(_, e)| *e)
    })?;
    let ordering = ordering(base)?;
    let version = os.version_id.trim();
    let name = match base {
        "Ubuntu" => {
            let mut parts = version.split('.');
            let (yy, mm) = (parts.next()?, parts.next()?);
            let lts = mm == "04" && yy.parse::<u32>().is_ok_and(|y| y % 2 == 0);
            format!("Ubuntu:{yy}.{mm}{}", if lts { ":LTS" } else { "" })
        }
        "Debian" if version.is_empty() => {
            // Testing and unstable have no VERSION_ID; the code name names the release.
            debian_release(os.version_codename.as_deref()?)
        }
        _ => {
            let major = version.split('.').next().filter(|m| !m.is_empty())?;
            format!("{base}:{major}")
        }
    };
    Some(HostEcosystem { name, ordering })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, version: &str, codename: Option<&str>) -> OsInfo {
        OsInfo {
            id: id.into(),
            version_id: version.into(),
            family: vec![id.into()],
            pretty_name: None,
            version_codename: codename.map(str::to_owned),
        }
    }

    #[test]
    fn hosts_map_to_osv_ecosystems() {
        let none = BTreeMap::new();
        let name = |o: OsInfo| of_host(&o, &none).map(|e| e.name);
        assert_eq!(
            name(os("debian", "12", Some("bookworm"))).as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            name(os("debian", "", Some("trixie"))).as_deref(),
            Some("Debian:13")
        );
        assert_eq!(
            name(os("ubuntu", "22.04", Some("jammy"))).as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            name(os("ubuntu", "23.10", None)).as_deref(),
            Some("Ubuntu:23.10")
        );
        assert_eq!(
            name(os("almalinux", "9.4", None)).as_deref(),
            Some("AlmaLinux:9")
        );
        assert_eq!(
            name(os("rocky", "8.10", None)).as_deref(),
            Some("Rocky Linux:8")
        );
        assert_eq!(name(os("alpine", "3.20", None)), None);
        let mapped: BTreeMap<String, String> =
            [("rhel".to_string(), "AlmaLinux".to_string())].into();
        let e = of_host(&os("rhel", "9.4", None), &mapped).unwrap();
        assert_eq!(e.name, "AlmaLinux:9");
        assert_eq!(e.ordering, Ecosystem::Rpm);
    }

    #[test]
    fn tracker_code_names() {
        assert_eq!(debian_release("bookworm"), "Debian:12");
        assert_eq!(debian_release("sid"), "Debian:sid");
        assert_eq!(ordering("Ubuntu:Pro:18.04:LTS"), Some(Ecosystem::Deb));
        assert_eq!(ordering("Rocky Linux:9"), Some(Ecosystem::Rpm));
        assert_eq!(ordering("PyPI"), None);
    }
}
