//! RPM versions (`[epoch:]version[-release]`) with rpm's exact ordering.
//!
//! Ordering follows rpm's `rpmvercmp` for each part and rpm 4.18's EVR comparison
//! (`rpm.vercmp`) for the whole, checked against the real rpm (see
//! `tests/fixtures/versions/rpm.tsv`): a missing epoch is 0; when the versions are equal, a
//! string with a release sorts after one without (`1.0-0 > 1.0`).
//!
//! Syntax is stricter than `rpm.vercmp`, which orders almost any string: patchkeeper takes
//! the characters rpmbuild allows in `Version` and `Release` (letters, digits, `._+~^`), a
//! numeric epoch, and at most one `-`, so that a typo is reported instead of being ordered.

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not an RPM `[epoch:]version[-release]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RpmSyntaxError {
    /// The empty string.
    #[error("version string is empty")]
    Empty,
    /// `:` with nothing before it.
    #[error("epoch is empty")]
    EpochEmpty,
    /// Something other than digits before the first `:`.
    #[error("epoch is not a number")]
    EpochNotNumber,
    /// An epoch above 4294967295 (rpm stores it in 32 bits).
    #[error("epoch is too big")]
    EpochTooBig,
    /// Nothing between the epoch and the release.
    #[error("version is empty")]
    VersionEmpty,
    /// The string ends with `-`.
    #[error("release is empty")]
    ReleaseEmpty,
    /// `-` in the version or in the release (rpmbuild allows it in neither).
    #[error("more than one '-' (rpm allows none inside a version or a release)")]
    TooManyHyphens,
    /// A character rpmbuild does not allow in a version or release.
    #[error("invalid character {0:?} (allowed: letters, digits and . _ + ~ ^)")]
    InvalidChar(char),
}

/// A valid RPM EVR.
///
/// Equality is rpm's: `1.0`, `0:1.0` and `1.00` are equal, so `==` agrees with `cmp`;
/// [`RpmVersion::as_str`] still returns the text as written.
#[derive(Debug, Clone)]
pub struct RpmVersion {
    text: String,
    epoch: Option<u32>,
    version: std::ops::Range<usize>,
    release: Option<std::ops::Range<usize>>,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '^')
}

impl RpmVersion {
    /// Parses `[epoch:]version[-release]`.
    pub fn parse(s: &str) -> Result<RpmVersion, RpmSyntaxError> {
        if s.is_empty() {
            return Err(RpmSyntaxError::Empty);
        }
        let (epoch, vstart) = match s.find(':') {
            Some(colon) => {
                let e = &s[..colon];
                if e.is_empty() {
                    return Err(RpmSyntaxError::EpochEmpty);
                }
                if !e.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(RpmSyntaxError::EpochNotNumber);
                }
                let n = e.parse::<u32>().map_err(|_| RpmSyntaxError::EpochTooBig)?;
                (Some(n), colon + 1)
            }
            None => (None, 0),
        };
        let rest = &s[vstart..];
        let (version, release) = match rest.find('-') {
            Some(h) => {
                if rest[h + 1..].contains('-') {
                    return Err(RpmSyntaxError::TooManyHyphens);
                }
                (vstart..vstart + h, Some(vstart + h + 1..s.len()))
            }
            None => (vstart..s.len(), None),
        };
        if version.is_empty() {
            return Err(RpmSyntaxError::VersionEmpty);
        }
        if release.as_ref().is_some_and(|r| r.is_empty()) {
            return Err(RpmSyntaxError::ReleaseEmpty);
        }
        let parts = std::iter::once(version.clone()).chain(release.clone());
        for part in parts {
            if let Some(c) = s[part].chars().find(|&c| !allowed(c)) {
                return Err(RpmSyntaxError::InvalidChar(c));
            }
        }
        Ok(RpmVersion {
            text: s.to_owned(),
            epoch,
            version,
            release,
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch (0 when absent, as rpm reads it).
    pub fn epoch(&self) -> u32 {
        self.epoch.unwrap_or(0)
    }

    /// The version part.
    pub fn version(&self) -> &str {
        &self.text[self.version.clone()]
    }

    /// The release part, if written.
    pub fn release(&self) -> Option<&str> {
        self.release.clone().map(|r| &self.text[r])
    }
}

/// rpm's `rpmvercmp`: compares alphabetic and numeric segments, skipping other characters;
/// `~` sorts before anything (even the end), `^` after the end but before anything else;
/// numbers beat letters; digit runs compare numerically, of any length.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b {
        return Ordering::Equal;
    }
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let in_segment = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let ei = i + a[i..].iter().take_while(|c| in_segment(c)).count();
        let ej = j + b[j..].iter().take_while(|c| in_segment(c)).count();
        if ej == j {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[i..ei], &b[j..ej]);
        if numeric {
            while let [b'0', rest @ ..] = sa {
                sa = rest;
            }
            while let [b'0', rest @ ..] = sb {
                sb = rest;
            }
            if sa.len() != sb.len() {
                return sa.len().cmp(&sb.len());
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ei;
        j = ej;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

impl Ord for RpmVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch()
            .cmp(&other.epoch())
            .then_with(|| rpmvercmp(self.version(), other.version()))
            .then_with(|| match (self.release(), other.release()) {
                (Some(x), Some(y)) => rpmvercmp(x, y),
                // rpm 4.18: with equal versions, having a release sorts later.
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            })
    }
}

impl PartialOrd for RpmVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RpmVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RpmVersion {}

impl fmt::Display for RpmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RpmVersion {
        RpmVersion::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parts() {
        let x = v("3:1.2^git1-4.el9_3");
        assert_eq!(
            (x.epoch(), x.version(), x.release()),
            (3, "1.2^git1", Some("4.el9_3"))
        );
        let y = v("1.0");
        assert_eq!((y.epoch(), y.version(), y.release()), (0, "1.0", None));
    }

    #[test]
    fn rpmvercmp_rules() {
        use Ordering::*;
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.0a", "1.0.a", Equal),
            ("1.0", "1.0a", Less),
            ("a", "1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^", "1.0.1", Less),
            ("1.0~", "1.0^", Less),
            ("10", "9", Greater),
            ("00010", "9", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr_rules() {
        assert!(v("1:1.0") > v("9.9"));
        assert_eq!(v("0:1.0"), v("1.0"));
        assert!(v("1.0-0") > v("1.0"));
        assert!(v("1.0-~") > v("1.0"));
        assert!(v("1.0-1") < v("1.0-1.el9"));
    }

    #[test]
    fn rejects() {
        use RpmSyntaxError::*;
        let cases = [
            ("", Empty),
            (":1.0", EpochEmpty),
            ("a:1.0", EpochNotNumber),
            ("-1:1.0", EpochNotNumber),
            ("4294967296:1", EpochTooBig),
            ("1:", VersionEmpty),
            ("-1", VersionEmpty),
            ("1.0-", ReleaseEmpty),
            ("1.0-1-2", TooManyHyphens),
            ("1.0 1", InvalidChar(' ')),
            ("1:1:1", InvalidChar(':')),
            ("1.0-1%{dist}", InvalidChar('%')),
            ("1.0ä", InvalidChar('ä')),
        ];
        for (s, want) in cases {
            assert_eq!(RpmVersion::parse(s).err(), Some(want), "{s:?}");
        }
    }
}
