//! Debian package versions with dpkg's exact syntax rules and ordering.
//!
//! This is a port of the algorithm of dpkg's `lib/dpkg/parsehelp.c` (`parseversion`) and
//! `lib/dpkg/version.c` (`verrevcmp`), written from its documented behaviour and checked
//! against the real `dpkg --compare-versions` (see `tests/fixtures/versions/deb.tsv`).
//! Where dpkg merely *warns* about a version (an upstream part not starting with a digit,
//! an illegal character), patchkeeper refuses it: such a version would be ordered, but not
//! the way its author meant.

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not a valid Debian version; the wording is dpkg's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DebSyntaxError {
    /// Nothing but blanks.
    #[error("version string is empty")]
    Empty,
    /// A blank inside the version.
    #[error("version string has embedded spaces")]
    EmbeddedSpaces,
    /// `:` with no digits before it.
    #[error("epoch in version is empty")]
    EpochEmpty,
    /// Something other than digits before the first `:`.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    /// A negative epoch.
    #[error("epoch in version is negative")]
    EpochNegative,
    /// An epoch above 2147483647 (dpkg stores it in an `int`).
    #[error("epoch in version is too big")]
    EpochTooBig,
    /// The version ends at the epoch's `:`.
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    /// The version ends with `-`.
    #[error("revision number is empty")]
    RevisionEmpty,
    /// No upstream version between the epoch and the revision.
    #[error("version number is empty")]
    VersionEmpty,
    /// The upstream version starts with something other than a digit.
    #[error("version number does not start with digit")]
    NotStartingWithDigit,
    /// The upstream version holds a character other than letters, digits and `.+~-:`.
    #[error("invalid character in version number")]
    InvalidCharInVersion,
    /// The revision holds a character other than letters, digits and `.+~`.
    #[error("invalid character in revision number")]
    InvalidCharInRevision,
}

impl DebSyntaxError {
    /// Whether dpkg itself refuses the version (`error`) or only warns and orders it anyway.
    pub fn dpkg_refuses(self) -> bool {
        !matches!(
            self,
            DebSyntaxError::NotStartingWithDigit
                | DebSyntaxError::InvalidCharInVersion
                | DebSyntaxError::InvalidCharInRevision
        )
    }
}

/// A valid Debian version: `[epoch:]upstream[-revision]`.
///
/// Equality is dpkg's: `1.0`, `1.0-0`, `0:1.0` and `01.0` are all equal, so `==` agrees
/// with `cmp`; [`DebVersion::as_str`] still returns the text as written.
#[derive(Debug, Clone)]
pub struct DebVersion {
    text: String,
    epoch: u32,
    upstream: std::ops::Range<usize>,
    revision: std::ops::Range<usize>,
}

/// dpkg trims and splits on blanks (space and tab) only.
fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// What C's `isspace` skips: `strtol` skips it before the epoch.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl DebVersion {
    /// Parses a version with dpkg's rules, refusing what dpkg refuses or warns about.
    pub fn parse(s: &str) -> Result<DebVersion, DebSyntaxError> {
        let b = s.as_bytes();
        let len = b.len();
        let mut start = 0;
        while start < len && is_blank(b[start]) {
            start += 1;
        }
        if start == len {
            return Err(DebSyntaxError::Empty);
        }
        let mut end = start;
        while end < len && !is_blank(b[end]) {
            end += 1;
        }
        if b[end..].iter().any(|&c| !is_blank(c)) {
            return Err(DebSyntaxError::EmbeddedSpaces);
        }

        let mut epoch = 0u32;
        let mut vstart = start;
        if let Some(colon) = b[start..end]
            .iter()
            .position(|&c| c == b':')
            .map(|i| start + i)
        {
            epoch = parse_epoch(&b[start..colon])?;
            if colon + 1 == len {
                return Err(DebSyntaxError::NothingAfterColon);
            }
            vstart = colon + 1;
        }

        // Positions below are at ASCII bytes (`:`, `-`, blanks), hence char boundaries.
        let (upstream, revision) = match b[vstart..end].iter().rposition(|&c| c == b'-') {
            Some(i) => {
                let hyphen = vstart + i;
                if hyphen + 1 == end {
                    return Err(DebSyntaxError::RevisionEmpty);
                }
                (vstart..hyphen, hyphen + 1..end)
            }
            None => (vstart..end, end..end),
        };
        let up = &b[upstream.clone()];
        match up.first() {
            None => return Err(DebSyntaxError::VersionEmpty),
            Some(c) if !c.is_ascii_digit() => return Err(DebSyntaxError::NotStartingWithDigit),
            Some(_) => {}
        }
        if !up
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".-+~:".contains(&c))
        {
            return Err(DebSyntaxError::InvalidCharInVersion);
        }
        if !b[revision.clone()]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".+~".contains(&c))
        {
            return Err(DebSyntaxError::InvalidCharInRevision);
        }
        Ok(DebVersion {
            text: s[start..end].to_owned(),
            epoch,
            upstream: upstream.start - start..upstream.end - start,
            revision: revision.start - start..revision.end - start,
        })
    }

    /// The version as written, without surrounding blanks.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.clone()]
    }

    /// The Debian revision (empty when absent, which dpkg orders like `0`).
    pub fn revision(&self) -> &str {
        &self.text[self.revision.clone()]
    }
}

/// The epoch the way dpkg reads it with `strtol(.., 10)`: leading white space and a sign
/// are allowed, then digits up to the colon.
fn parse_epoch(b: &[u8]) -> Result<u32, DebSyntaxError> {
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    let mut value: u64 = 0;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        value = value.saturating_mul(10).saturating_add(u64::from(c - b'0'));
        i += 1;
    }
    if i == digits_start {
        return Err(DebSyntaxError::EpochEmpty);
    }
    if i != b.len() {
        return Err(DebSyntaxError::EpochNotNumber);
    }
    if negative && value != 0 {
        return Err(DebSyntaxError::EpochNegative);
    }
    u32::try_from(value)
        .ok()
        .filter(|&e| e <= i32::MAX as u32)
        .ok_or(DebSyntaxError::EpochTooBig)
}

/// dpkg's weight of a non-digit character: `~` before the end, the end before letters,
/// letters before everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit runs (compared by [`order`]) and digit runs
/// (compared numerically, of any length).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let digit_at = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit_at(a, i) && digit_at(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit_at(a, i) {
            return Ordering::Greater;
        }
        if digit_at(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| verrevcmp(self.revision().as_bytes(), other.revision().as_bytes()))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        DebVersion::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn check(a: &str, b: &str, want: Ordering) {
        assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
        assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
    }

    #[test]
    fn parts() {
        let x = v("2:1.0-3-4");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (2, "1.0-3", "4"));
        let y = v(" 1:2:3 ");
        assert_eq!(
            (y.epoch(), y.upstream(), y.revision(), y.as_str()),
            (1, "2:3", "", "1:2:3")
        );
        assert_eq!(v("+0:1").epoch(), 0);
        assert_eq!(v("2147483647:1").epoch(), 2147483647);
    }

    #[test]
    fn ordering_rules() {
        check("1.0~rc1", "1.0", Ordering::Less);
        check("1.0", "1.0a", Ordering::Less);
        check("1.0a", "1.0+", Ordering::Less);
        check("1.0", "1.0-0", Ordering::Equal);
        check("1.10", "1.9", Ordering::Greater);
        check("1:0.1", "9.9", Ordering::Greater);
        check("1.0-1", "1.0-1+b1", Ordering::Less);
        check("1.0.", "1.0.00", Ordering::Equal);
        check(
            "99999999999999999999999",
            "99999999999999999999998",
            Ordering::Greater,
        );
    }

    #[test]
    fn equality_agrees_with_ordering() {
        assert_eq!(v("1.0"), v("01.0-0"));
        assert_ne!(v("1.0"), v("1.0.0"));
    }

    #[test]
    fn rejects_with_dpkg_reason() {
        let cases = [
            ("", DebSyntaxError::Empty),
            ("a1", DebSyntaxError::NotStartingWithDigit),
            ("1:", DebSyntaxError::NothingAfterColon),
            ("1: ", DebSyntaxError::VersionEmpty),
            ("x:1", DebSyntaxError::EpochEmpty),
            ("1x:1", DebSyntaxError::EpochNotNumber),
            ("-1:1", DebSyntaxError::EpochNegative),
            ("2147483648:1", DebSyntaxError::EpochTooBig),
            ("1-", DebSyntaxError::RevisionEmpty),
            ("1 2", DebSyntaxError::EmbeddedSpaces),
            ("1_2", DebSyntaxError::InvalidCharInVersion),
            ("1-2_3", DebSyntaxError::InvalidCharInRevision),
            ("1.0ü", DebSyntaxError::InvalidCharInVersion),
        ];
        for (s, want) in cases {
            assert_eq!(DebVersion::parse(s).err(), Some(want), "{s:?}");
        }
    }
}
