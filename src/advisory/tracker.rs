//! The Debian security tracker's JSON dump (`https://security-tracker.debian.org/tracker/data/json`),
//! read as the tracker writes it (`bin/tracker_service.py`, `_get_json`):
//!
//! ```text
//! { SOURCE-PACKAGE: { ISSUE: { "description"?, "debianbug"?, "scope"?,
//!     "releases": { CODENAME: { "status": "resolved" | "open" | "undetermined",
//!                               "repositories": { "bookworm": "1.2-3", "bookworm-security": ... },
//!                               "fixed_version"?, "urgency", "nodsa"?, "nodsa_reason"? } } } } }
//! ```
//!
//! Issues are CVE ids (or `TEMP-` ids); package names are *source* packages. Per release:
//! `resolved` with `fixed_version` "0" means the release was never affected (not stored);
//! `resolved` with a version V means versions below V are affected; `open` and
//! `undetermined` mean every version is affected and no fix is released, with the no-DSA
//! sub-state (`nodsa_reason` `postponed` or `ignored`) and urgency `end-of-life` kept. The
//! dump is read one package at a time, so its size does not matter; a malformed issue is
//! skipped with its reason.

use std::collections::BTreeMap;
use std::io::Read;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{ecosystem, Affected, Event, Origin, ReadStats, Record, Severity, Unfixed};

/// One issue of one source package.
#[derive(Debug, Deserialize)]
struct Issue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, Release>,
}

/// One release's status of an issue.
#[derive(Debug, Deserialize)]
struct Release {
    status: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    nodsa: Option<String>,
    #[serde(default)]
    nodsa_reason: Option<String>,
}

/// Why a dump could not be read at all (a malformed issue only skips that issue).
#[derive(Debug, thiserror::Error)]
#[error("not a Debian security tracker dump: {0}")]
pub struct TrackerError(#[source] pub serde_json::Error);

/// Reads a tracker dump, handing each record to `sink`. Returns what was read and skipped.
pub fn read(reader: impl Read, sink: &mut dyn FnMut(Record)) -> Result<ReadStats, TrackerError> {
    let mut stats = ReadStats::default();
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    Dump {
        stats: &mut stats,
        sink,
    }
    .deserialize(&mut de)
    .map_err(TrackerError)?;
    de.end().map_err(TrackerError)?;
    Ok(stats)
}

/// Reads a tracker dump from text into a vector (tests, small files).
pub fn read_str(text: &str) -> Result<(Vec<Record>, ReadStats), TrackerError> {
    let mut records = Vec::new();
    let stats = read(text.as_bytes(), &mut |r| records.push(r))?;
    Ok((records, stats))
}

struct Dump<'a> {
    stats: &'a mut ReadStats,
    sink: &'a mut dyn FnMut(Record),
}

impl<'de> DeserializeSeed<'de> for Dump<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Dump<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of source packages")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(package) = map.next_key::<String>()? {
            // One package's issues at a time: memory stays bounded by the largest package.
            let issues: Value = map.next_value()?;
            let Value::Object(issues) = issues else {
                self.stats
                    .skip(|| format!("{package}: not an object of issues"));
                continue;
            };
            for (issue, value) in issues {
                self.stats.advisories += 1;
                match serde_json::from_value::<Issue>(value) {
                    Ok(parsed) => convert(&package, &issue, parsed, self.stats, self.sink),
                    Err(e) => self.stats.skip(|| format!("{package} {issue}: {e}")),
                }
            }
        }
        Ok(())
    }
}

fn convert(
    package: &str,
    issue: &str,
    parsed: Issue,
    stats: &mut ReadStats,
    sink: &mut dyn FnMut(Record),
) {
    let summary = parsed
        .description
        .as_deref()
        .map(first_line)
        .unwrap_or_default();
    for (codename, release) in parsed.releases {
        let urgency = release.urgency.as_deref().unwrap_or("");
        let severity = Severity::from_word(urgency).unwrap_or(Severity::Unknown);
        let affected = match release.status.as_str() {
            "resolved" => match release.fixed_version.as_deref().map(str::trim) {
                Some("0") => {
                    stats.not_affected += 1;
                    continue;
                }
                Some(v) if !v.is_empty() => Affected::Ranges {
                    ranges: vec![vec![
                        Event::Introduced("0".into()),
                        Event::Fixed(v.to_owned()),
                    ]],
                    versions: Vec::new(),
                },
                _ => {
                    stats.skip(|| {
                        format!("{package} {issue} {codename}: resolved without a fixed_version")
                    });
                    continue;
                }
            },
            "open" | "undetermined" => {
                let state = if urgency == "end-of-life" {
                    Unfixed::EndOfLife
                } else if release.status == "undetermined" {
                    Unfixed::Undetermined
                } else {
                    match (release.nodsa.as_deref(), release.nodsa_reason.as_deref()) {
                        (_, Some("ignored")) => Unfixed::WillNotFix,
                        (_, Some("postponed")) => Unfixed::Postponed,
                        (Some(_), _) => Unfixed::NoDsa,
                        (None, _) => Unfixed::Open,
                    }
                };
                Affected::Unfixed {
                    state,
                    note: release.nodsa.filter(|n| !n.trim().is_empty()),
                }
            }
            other => {
                let other = other.to_owned();
                stats.skip(|| format!("{package} {issue} {codename}: unknown status `{other}`"));
                continue;
            }
        };
        stats.records += 1;
        sink(Record {
            id: issue.to_owned(),
            cves: super::cves_of([issue]),
            ecosystem: ecosystem::debian_release(&codename),
            package: package.to_owned(),
            affected,
            severity,
            summary: summary.clone(),
            modified: None,
            origin: Origin::DebianTracker,
        });
    }
}

/// The first line of a description, at most 200 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_owned(),
    }
}
