//! Package names, versions and architectures as they may reach a package manager's command
//! line: the Debian (dpkg) and RPM grammars, checked by [`check`] when a saved plan is read
//! and again whenever a command is built from them.
//!
//! Why both: a value that reaches `apt-get`/`dnf` as an argument is interpreted by the tool,
//! not only by the shell. Quoting ([`crate::transport::shell_quote`]) keeps it one argument;
//! the grammar keeps it a *package* (`-oDPkg::Pre-Invoke::=…` is a valid word but an apt
//! option; `@group`, `/usr/bin/x`, `lib*` are dnf selectors). Commands also put `--` before
//! package arguments, so even a value that slipped past would not be read as an option.
//!
//! Pure; knows nothing of hosts or plans.

use crate::model::PackageManager;
use crate::version::{self, Ecosystem};

/// The longest name, version or architecture accepted (far above any real one).
pub const MAX_LEN: usize = 256;

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A package name.
    Name,
    /// A version (`[epoch:]version[-revision]`).
    Version,
    /// An architecture (`amd64`, `x86_64`, `noarch` ...).
    Arch,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Name => "name",
            Field::Version => "version",
            Field::Arch => "architecture",
        })
    }
}

/// A value that is not a valid package name, version or architecture of its ecosystem.
/// The value is shown with control characters escaped (`{:?}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} package {field} {value:?}: {reason}", .ecosystem.display_name())]
pub struct InvalidPackageArg {
    /// Debian or RPM.
    pub ecosystem: Ecosystem,
    /// Which kind of value.
    pub field: Field,
    /// The value as given.
    pub value: String,
    /// What rule it breaks.
    pub reason: String,
}

/// Which bytes a position of a value may hold.
type ByteRule = fn(u8) -> bool;

/// Checks `value` against the grammar of `field` in `ecosystem`:
///
/// - Debian names: dpkg's rule (a letter or digit, then letters, digits, `+ - . _`);
///   RPM names: rpm's rule after macro expansion (a letter, digit or `_`, then letters,
///   digits, `. _ + -`).
/// - versions: the ecosystem's version syntax ([`crate::version::parse`]), with no blanks
///   and only the characters that syntax allows (`[A-Za-z0-9.+~:-]` for Debian,
///   `[A-Za-z0-9._+~^:-]` for RPM);
/// - architectures: `[a-z0-9][a-z0-9-]*` (Debian), `[A-Za-z0-9_]+` (RPM).
///
/// Every value is at most [`MAX_LEN`] bytes.
pub fn check(ecosystem: Ecosystem, field: Field, value: &str) -> Result<(), InvalidPackageArg> {
    let fail = |reason: String| InvalidPackageArg {
        ecosystem,
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("it is empty".into()));
    }
    if value.len() > MAX_LEN {
        return Err(fail(format!("it is longer than {MAX_LEN} bytes")));
    }
    let (first_ok, rest_ok, allowed): (ByteRule, ByteRule, &str) = match (ecosystem, field) {
        (Ecosystem::Deb, Field::Name) => (
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || b"+-._".contains(&c),
            "a letter or digit, then letters, digits and `+ - . _`",
        ),
        (Ecosystem::Rpm, Field::Name) => (
            |c| c.is_ascii_alphanumeric() || c == b'_',
            |c| c.is_ascii_alphanumeric() || b"._+-".contains(&c),
            "a letter, digit or `_`, then letters, digits and `. _ + -`",
        ),
        (Ecosystem::Deb, Field::Version) => (
            |c| c.is_ascii_digit(),
            |c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c),
            "a digit, then letters, digits and `. + ~ : -`",
        ),
        (Ecosystem::Rpm, Field::Version) => (
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || b"._+~^:-".contains(&c),
            "a letter or digit, then letters, digits and `. _ + ~ ^ : -`",
        ),
        (Ecosystem::Deb, Field::Arch) => (
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-',
            "lowercase letters, digits and `-`",
        ),
        (Ecosystem::Rpm, Field::Arch) => (
            |c| c.is_ascii_alphanumeric() || c == b'_',
            |c| c.is_ascii_alphanumeric() || c == b'_',
            "letters, digits and `_`",
        ),
    };
    let bytes = value.as_bytes();
    // `bytes` is not empty (checked above).
    if !first_ok(bytes[0]) || !bytes[1..].iter().all(|&c| rest_ok(c)) {
        return Err(fail(format!("expected {allowed}")));
    }
    if field == Field::Version {
        version::parse(ecosystem, value).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Checks a package name.
pub fn check_name(ecosystem: Ecosystem, name: &str) -> Result<(), InvalidPackageArg> {
    check(ecosystem, Field::Name, name)
}

/// The argument that asks `pm` for exactly `name` at `version` (`name=version` for apt,
/// `name-version` for dnf), after checking both against the grammar.
pub fn exact(pm: PackageManager, name: &str, version: &str) -> Result<String, InvalidPackageArg> {
    let eco = Ecosystem::from(pm);
    check(eco, Field::Name, name)?;
    check(eco, Field::Version, version)?;
    Ok(match pm {
        PackageManager::Apt => format!("{name}={version}"),
        PackageManager::Dnf => format!("{name}-{version}"),
    })
}

/// A package name checked against `pm`'s grammar, as a command argument.
pub fn name(pm: PackageManager, name: &str) -> Result<String, InvalidPackageArg> {
    check_name(Ecosystem::from(pm), name)?;
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "-oDPkg::Pre-Invoke::=touch /tmp/pwned",
        "--setopt=tsflags=noscripts",
        "; touch /tmp/pwned",
        "$(id)",
        "`id`",
        "a\nb",
        "a b",
        "@core",
        "/usr/bin/sh",
        "lib*",
        "x'y",
        "",
        "é",
    ];

    #[test]
    fn real_names_pass() {
        for n in [
            "libc6",
            "libstdc++6",
            "g++",
            "pk-app",
            "python3.11",
            "x",
            "0ad",
        ] {
            check(Ecosystem::Deb, Field::Name, n).unwrap();
        }
        for n in [
            "glibc",
            "kernel-core",
            "perl-Data-Dumper",
            "_nginx",
            "libstdc++",
            "python3.11",
        ] {
            check(Ecosystem::Rpm, Field::Name, n).unwrap();
        }
        for v in [
            "1.2-1",
            "1:1.1-1",
            "2.36-9+deb12u4",
            "1.0~rc1",
            "7.88.1-10+deb12u5",
        ] {
            check(Ecosystem::Deb, Field::Version, v).unwrap();
        }
        for v in [
            "1.2-1",
            "1:1.1-1",
            "2.34-100.el9_4.2",
            "1.0^git1~pre",
            "5.14.0-427.el9",
        ] {
            check(Ecosystem::Rpm, Field::Version, v).unwrap();
        }
        for a in ["amd64", "all", "arm64", "i386", "x32"] {
            check(Ecosystem::Deb, Field::Arch, a).unwrap();
        }
        for a in ["x86_64", "noarch", "aarch64", "i686"] {
            check(Ecosystem::Rpm, Field::Arch, a).unwrap();
        }
    }

    #[test]
    fn hostile_values_fail_in_every_field_and_ecosystem() {
        for eco in [Ecosystem::Deb, Ecosystem::Rpm] {
            for field in [Field::Name, Field::Version, Field::Arch] {
                for v in HOSTILE {
                    assert!(check(eco, field, v).is_err(), "{eco} {field} {v:?}");
                }
            }
        }
        // Option-looking and version-syntax mistakes.
        assert!(check(Ecosystem::Deb, Field::Version, "-1").is_err());
        assert!(check(Ecosystem::Deb, Field::Version, " 1.0").is_err());
        assert!(check(Ecosystem::Deb, Field::Version, "v2.36").is_err());
        assert!(check(Ecosystem::Rpm, Field::Version, "1-2-3").is_err());
        assert!(check(Ecosystem::Deb, Field::Name, &"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn errors_name_the_value_escaped() {
        let e = check(Ecosystem::Deb, Field::Name, "-o\x1b[31m").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid Debian package name "-o\u{1b}[31m": expected a letter or digit, then letters, digits and `+ - . _`"#
        );
        let e = exact(PackageManager::Dnf, "libpk", "1.0;id").unwrap_err();
        assert_eq!(e.field, Field::Version);
        assert!(e
            .to_string()
            .starts_with("invalid RPM package version \"1.0;id\""));
    }

    #[test]
    fn exact_arguments() {
        assert_eq!(
            exact(PackageManager::Apt, "libpk", "1:1.2-1").unwrap(),
            "libpk=1:1.2-1"
        );
        assert_eq!(
            exact(PackageManager::Dnf, "libpk", "1.2-1").unwrap(),
            "libpk-1.2-1"
        );
    }
}
