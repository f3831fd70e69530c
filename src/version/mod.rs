//! Package versions: parsing and exact ordering for Debian (dpkg) and RPM (rpm) ecosystems.
//!
//! Pure and synchronous. Both orderings are hand-written ports of the real tools'
//! algorithms, because the crates evaluated were not exact (`debversion` 0.5.5 orders
//! `1.0-10.` before `1.0-10.00`, which dpkg calls equal, and accepts versions dpkg rejects;
//! `rpm-version` 0.5.1 orders `1.0-~` before `1.0`, which rpm orders after). The corpora in
//! `tests/fixtures/versions/` hold the real tools' answers and are checked in `cargo test`.

use std::cmp::Ordering;
use std::fmt;

pub mod deb;
pub mod rpm;

pub use deb::{DebSyntaxError, DebVersion};
pub use rpm::{RpmSyntaxError, RpmVersion};

/// A package-version ecosystem.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian family (dpkg ordering).
    Deb,
    /// RPM family (rpm ordering).
    Rpm,
}

impl Ecosystem {
    /// The name used on the command line and in files (`deb`, `rpm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Rpm => "rpm",
        }
    }

    /// The name people use for versions of this ecosystem (`Debian`, `RPM`).
    pub fn display_name(self) -> &'static str {
        match self {
            Ecosystem::Deb => "Debian",
            Ecosystem::Rpm => "RPM",
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<crate::model::PackageManager> for Ecosystem {
    fn from(pm: crate::model::PackageManager) -> Ecosystem {
        match pm {
            crate::model::PackageManager::Apt => Ecosystem::Deb,
            crate::model::PackageManager::Dnf => Ecosystem::Rpm,
        }
    }
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not a valid Debian version.
    #[error("invalid Debian version {value:?}: {reason}")]
    InvalidDeb {
        /// The string as given.
        value: String,
        /// What is wrong, in dpkg's words.
        reason: DebSyntaxError,
    },
    /// Not a valid RPM version.
    #[error("invalid RPM version {value:?}: {reason}")]
    InvalidRpm {
        /// The string as given.
        value: String,
        /// What is wrong.
        reason: RpmSyntaxError,
    },
}

impl VersionError {
    /// The offending string.
    pub fn value(&self) -> &str {
        match self {
            VersionError::InvalidDeb { value, .. } | VersionError::InvalidRpm { value, .. } => {
                value
            }
        }
    }
}

/// A parsed version of either ecosystem.
///
/// Versions of one ecosystem are ordered by that ecosystem's rules. Across ecosystems (which
/// callers should not need) every Debian version sorts before every RPM version, so `Ord`
/// stays total.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// A Debian version.
    Deb(DebVersion),
    /// An RPM version.
    Rpm(RpmVersion),
}

impl Version {
    /// The ecosystem this version belongs to.
    pub fn ecosystem(&self) -> Ecosystem {
        match self {
            Version::Deb(_) => Ecosystem::Deb,
            Version::Rpm(_) => Ecosystem::Rpm,
        }
    }

    /// The version as written (Debian versions without surrounding blanks).
    pub fn as_str(&self) -> &str {
        match self {
            Version::Deb(v) => v.as_str(),
            Version::Rpm(v) => v.as_str(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `s` as a version of `ecosystem`.
pub fn parse(ecosystem: Ecosystem, s: &str) -> Result<Version, VersionError> {
    match ecosystem {
        Ecosystem::Deb => {
            DebVersion::parse(s)
                .map(Version::Deb)
                .map_err(|reason| VersionError::InvalidDeb {
                    value: s.to_owned(),
                    reason,
                })
        }
        Ecosystem::Rpm => {
            RpmVersion::parse(s)
                .map(Version::Rpm)
                .map_err(|reason| VersionError::InvalidRpm {
                    value: s.to_owned(),
                    reason,
                })
        }
    }
}

/// Compares two versions of `ecosystem`; fails on the first one that does not parse.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse(ecosystem, a)?.cmp(&parse(ecosystem, b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_the_value_and_the_reason() {
        let e = parse(Ecosystem::Deb, "a1.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid Debian version "a1.0": version number does not start with digit"#
        );
        assert_eq!(e.value(), "a1.0");
        let e = compare(Ecosystem::Rpm, "1.0", "1.0-").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid RPM version "1.0-": release is empty"#
        );
    }

    #[test]
    fn compare_uses_the_ecosystem() {
        // `1.0-0` equals `1.0` for dpkg (empty revision is 0) but not for rpm.
        assert_eq!(compare(Ecosystem::Deb, "1.0-0", "1.0"), Ok(Ordering::Equal));
        assert_eq!(
            compare(Ecosystem::Rpm, "1.0-0", "1.0"),
            Ok(Ordering::Greater)
        );
    }

    #[test]
    fn ecosystem_names() {
        assert_eq!(
            serde_json::to_string(&Ecosystem::Rpm).expect("serializes"),
            r#""rpm""#
        );
        let e: Ecosystem = serde_json::from_str(r#""deb""#).expect("parses");
        assert_eq!(e, Ecosystem::Deb);
        assert_eq!(
            Ecosystem::from(crate::model::PackageManager::Dnf),
            Ecosystem::Rpm
        );
    }
}
