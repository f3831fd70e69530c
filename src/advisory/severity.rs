//! One severity scale for every source: Debian urgencies, Ubuntu priorities, the RHEL
//! family's vendor ratings, and CVSS vectors (v2, v3, v4, scored with the `cvss` crate).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bad an advisory is, on one scale. Ordered: `Unknown < Negligible < Low < Medium <
/// High < Critical`, so "at least high" is `>= Severity::High`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not rated (Debian `not yet assigned`, Ubuntu `untriaged`, no data).
    #[default]
    Unknown,
    /// Rated as not worth a fix (Debian `unimportant`, Ubuntu `negligible`, CVSS 0.0).
    Negligible,
    /// Low.
    Low,
    /// Medium (RHEL family: Moderate).
    Medium,
    /// High (RHEL family: Important).
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every level, most severe first (report and summary order).
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Negligible,
        Severity::Unknown,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a rating word of any source, case-insensitively: the scale's own names, the
    /// RHEL family's (`Important`, `Moderate`), Debian's (`unimportant`, `not yet
    /// assigned`; an NVD-derived `high**` counts as `high`), Ubuntu's (`negligible`,
    /// `untriaged`). `None` for words that are not a rating.
    pub fn from_word(word: &str) -> Option<Severity> {
        let w = word
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase();
        Some(match w.as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "negligible" | "unimportant" | "none" => Severity::Negligible,
            "unknown" | "not yet assigned" | "untriaged" | "end-of-life" | "" => Severity::Unknown,
            _ => return None,
        })
    }

    /// The qualitative rating of a CVSS vector (`CVSS:3.1/AV:N/...`, `CVSS:4.0/...`, or a
    /// bare v2 vector), from its base score; `None` when the vector does not parse.
    pub fn from_cvss(vector: &str) -> Option<Severity> {
        let parsed: cvss::Cvss = vector.trim().parse().ok()?;
        Some(match parsed.severity() {
            cvss::Severity::None => Severity::Negligible,
            cvss::Severity::Low => Severity::Low,
            cvss::Severity::Medium => Severity::Medium,
            cvss::Severity::High => Severity::High,
            cvss::Severity::Critical => Severity::Critical,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_every_source() {
        assert_eq!(Severity::from_word("Important"), Some(Severity::High));
        assert_eq!(Severity::from_word("Moderate"), Some(Severity::Medium));
        assert_eq!(Severity::from_word("low**"), Some(Severity::Low));
        assert_eq!(
            Severity::from_word("not yet assigned"),
            Some(Severity::Unknown)
        );
        assert_eq!(
            Severity::from_word("unimportant"),
            Some(Severity::Negligible)
        );
        assert_eq!(Severity::from_word("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::from_word("whatever"), None);
    }

    #[test]
    fn cvss_vectors_are_scored() {
        // 9.8: the classic network RCE.
        assert_eq!(
            Severity::from_cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(Severity::Critical)
        );
        // 6.1: reflected XSS.
        assert_eq!(
            Severity::from_cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(Severity::Medium)
        );
        assert_eq!(
            Severity::from_cvss("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Some(Severity::Critical)
        );
        assert_eq!(Severity::from_cvss("not a vector"), None);
    }

    #[test]
    fn ordering_puts_critical_last() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Negligible > Severity::Unknown);
        let mut all = Severity::ALL.to_vec();
        all.sort();
        assert_eq!(all.first(), Some(&Severity::Unknown));
    }
}
