//! Vulnerability advisories, offline: readers of the data as published (the Debian
//! security tracker's JSON dump, OSV records, directories and `all.zip` dumps), a local store
//! of what was imported (SQLite, one file), and the matcher that maps advisories onto the
//! observed hosts with the project's own dpkg and rpm orderings.
//!
//! The readers ([`tracker`], [`osv`]) and the matcher ([`matcher`]) are pure: text in,
//! records out; records and observed hosts in, findings out. Only [`store`] and
//! [`import`] touch files. This module knows nothing of SSH, Git or the planner; the plan and
//! the compliance reports read its findings. Formats and sources: `docs/vulnerabilities.md`.

pub mod critical;
pub mod ecosystem;
pub mod fleet;
pub mod import;
pub mod matcher;
pub mod osv;
pub mod remote;
pub mod severity;
pub mod store;
pub mod tracker;
pub mod view;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use ecosystem::HostEcosystem;
pub use matcher::{Assessment, Finding, FindingCore, FindingState, HostFindings, Index, Offer};
pub use severity::Severity;
pub use store::{CheckOutcome, ImportInfo, Snapshot, SourceCheck, Store, StoreError};

/// One advisory statement about one package in one ecosystem release, normalized from
/// either source. A tracker issue yields one record per release; an OSV record one per
/// `affected` entry of a supported ecosystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Record {
    /// The advisory id (`CVE-2026-1234` from the tracker; `DSA-5800-1`, `USN-7000-1`,
    /// `ALSA-2026:1234`, `RLSA-2026:1234`, `DEBIAN-CVE-...` from OSV).
    pub id: String,
    /// CVE ids the advisory covers (OSV `aliases`, `upstream` and `related` CVEs), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// `Debian:12`, `Ubuntu:22.04:LTS`, `AlmaLinux:9`, `Rocky Linux:9`.
    pub ecosystem: String,
    /// The package named: a source package (Debian, Ubuntu, and by the OSV spec the RHEL
    /// family), or a binary RPM (what AlmaLinux and Rocky records often name).
    pub package: String,
    /// Which versions are affected.
    pub affected: Affected,
    /// How bad.
    pub severity: Severity,
    /// One line about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// When the record last changed (RFC 3339), when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Where it came from.
    pub origin: Origin,
}

/// Which versions a record says are affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Affected {
    /// Versions inside any range, or listed (OSV's evaluation; the tracker's
    /// `resolved` + `fixed_version` is the range `introduced 0, fixed V`).
    Ranges {
        /// Ranges of events (ECOSYSTEM ordering of the ecosystem).
        ranges: Vec<Vec<Event>>,
        /// Versions listed as affected.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions: Vec<String>,
    },
    /// Every version is affected and no fix is released for this release (tracker
    /// `open`/`undetermined`, with its no-DSA sub-state).
    Unfixed {
        /// Why there is no fix.
        state: Unfixed,
        /// The tracker's note (`nodsa`), when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// One OSV range event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version on (`0`: from the first version).
    Introduced(String),
    /// Fixed in this version.
    Fixed(String),
    /// Affected up to and including this version.
    LastAffected(String),
    /// The range ends before this version (`*`: no end).
    Limit(String),
}

/// Why an affected package has no fix (the tracker's states; Vuls and Trivy read them the
/// same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Unfixed {
    /// `open`: vulnerable, a fix is expected.
    Open,
    /// `undetermined`: not yet known whether the release is affected; counted as affected.
    Undetermined,
    /// `no-dsa` with reason `postponed`: fixed later (a point release or the next DSA).
    Postponed,
    /// `no-dsa` without a reason: minor, fixed through a point release if at all.
    NoDsa,
    /// `no-dsa` with reason `ignored`: the security team will not fix it in this release.
    WillNotFix,
    /// urgency `end-of-life`: the package is no longer supported in this release.
    EndOfLife,
}

impl Unfixed {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unfixed::Open => "open",
            Unfixed::Undetermined => "undetermined",
            Unfixed::Postponed => "postponed",
            Unfixed::NoDsa => "no-dsa",
            Unfixed::WillNotFix => "will-not-fix",
            Unfixed::EndOfLife => "end-of-life",
        }
    }
}

/// Which reader a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The Debian security tracker's JSON dump.
    DebianTracker,
    /// An OSV record.
    Osv,
}

impl Origin {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::DebianTracker => "debian-tracker",
            Origin::Osv => "osv",
        }
    }
}

/// What a reader did with its input: records made, and what it skipped and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadStats {
    /// Advisories read (tracker issues, OSV records).
    pub advisories: usize,
    /// Records made (one per package and release).
    pub records: usize,
    /// Statements that say a release is not affected (tracker `fixed_version` "0"), not
    /// stored.
    pub not_affected: usize,
    /// Entries for ecosystems patchkeeper does not match (e.g. PyPI), not stored.
    pub other_ecosystems: usize,
    /// Withdrawn OSV records, not stored.
    pub withdrawn: usize,
    /// Malformed entries skipped.
    pub skipped: usize,
    /// The first reasons entries were skipped (at most [`MAX_REASONS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The newest `modified` date among the records read (RFC 3339), when any says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
}

/// How many skip reasons an import keeps.
pub const MAX_REASONS: usize = 10;

impl ReadStats {
    /// Counts a malformed entry, keeping its reason if fewer than [`MAX_REASONS`] are kept.
    pub fn skip(&mut self, reason: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason());
        }
    }

    /// Notes a record's `modified` date for [`ReadStats::newest`].
    pub fn saw_date(&mut self, date: Option<&str>) {
        let Some(d) = date.filter(|d| !d.is_empty()) else {
            return;
        };
        let newer = match &self.newest {
            None => true,
            Some(n) => match (d.parse::<jiff::Timestamp>(), n.parse::<jiff::Timestamp>()) {
                (Ok(a), Ok(b)) => a > b,
                _ => d > n.as_str(),
            },
        };
        if newer {
            self.newest = Some(d.to_owned());
        }
    }

    /// Adds another reader's counts (directories and zip dumps read many files).
    pub fn merge(&mut self, other: ReadStats) {
        self.advisories += other.advisories;
        self.records += other.records;
        self.not_affected += other.not_affected;
        self.other_ecosystems += other.other_ecosystems;
        self.withdrawn += other.withdrawn;
        self.skipped += other.skipped;
        for r in other.reasons {
            if self.reasons.len() < MAX_REASONS {
                self.reasons.push(r);
            }
        }
        self.saw_date(other.newest.as_deref());
    }
}

/// CVE ids among `ids` (upper-cased, sorted, deduplicated).
pub fn cves_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = ids
        .into_iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| s.starts_with("CVE-"))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
