//! OSV records (the Open Source Vulnerability format, `https://ossf.github.io/osv-schema/`,
//! JSON Schema `validation/schema.json` of `github.com/ossf/osv-schema`): single files,
//! directories of them, and the per-ecosystem `all.zip` dumps osv.dev distributes.
//!
//! Only `affected` entries of the ecosystems patchkeeper matches (Debian, Ubuntu, AlmaLinux,
//! Rocky Linux; see [`super::ecosystem::SUPPORTED`]) become records; `ECOSYSTEM` (and
//! `SEMVER`) ranges are kept with their `introduced` / `fixed` / `last_affected` / `limit`
//! events, `GIT` ranges are ignored, `versions` lists are kept. Withdrawn records are not
//! stored. Unknown fields are ignored, as the spec asks of clients.
//!
//! Severity, in order of preference: an `Ubuntu` priority; a rating word in
//! `database_specific` / `ecosystem_specific` (`severity`, `urgency`); the RHEL family's
//! summary prefix (`Important: openssl security update`); the highest CVSS score.

use serde::Deserialize;
use serde_json::Value;

use super::{ecosystem, Affected, Event, Origin, ReadStats, Record, Severity};

#[derive(Debug, Deserialize)]
struct OsvRecord {
    id: String,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    related: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Vec<OsvSeverity>,
    #[serde(default)]
    affected: Option<Vec<OsvAffected>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OsvSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Deserialize)]
struct OsvAffected {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    severity: Vec<OsvSeverity>,
    #[serde(default)]
    ranges: Vec<OsvRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OsvPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, Value>>,
}

/// Reads one OSV record (the text of one `.json` file), appending its records; `name`
/// (the file or zip entry) is used in skip reasons.
pub fn read_record(text: &[u8], name: &str, out: &mut Vec<Record>, stats: &mut ReadStats) {
    stats.advisories += 1;
    let record: OsvRecord = match serde_json::from_slice(text) {
        Ok(r) => r,
        Err(e) => {
            stats.skip(|| format!("{name}: not an OSV record: {e}"));
            return;
        }
    };
    if record.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) {
        stats.withdrawn += 1;
        return;
    }
    let modified = record.modified.clone().or(record.published.clone());
    let before = stats.records;
    let cves = super::cves_of(
        record
            .aliases
            .iter()
            .flatten()
            .chain(&record.upstream)
            .chain(&record.related)
            .map(String::as_str)
            .chain([record.id.as_str()]),
    );
    let summary = record
        .summary
        .as_deref()
        .or(record.details.as_deref())
        .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    for affected in record.affected.iter().flatten() {
        let Some(package) = &affected.package else {
            stats.skip(|| {
                format!(
                    "{name} ({}): an affected entry without a package",
                    record.id
                )
            });
            continue;
        };
        let eco = package.ecosystem.trim();
        if ecosystem::ordering(eco).is_none() {
            stats.other_ecosystems += 1;
            continue;
        }
        let mut ranges = Vec::new();
        let mut bad = None;
        for range in &affected.ranges {
            if !matches!(range.kind.as_str(), "ECOSYSTEM" | "SEMVER") {
                continue;
            }
            match events(&range.events) {
                Ok(ev) => ranges.push(ev),
                Err(e) => bad = Some(e),
            }
        }
        if let Some(e) = bad {
            stats.skip(|| format!("{name} ({} {}): {e}", record.id, package.name));
            continue;
        }
        if ranges.is_empty() && affected.versions.is_empty() {
            stats.skip(|| {
                format!(
                    "{name} ({} {}): no ECOSYSTEM range and no versions",
                    record.id, package.name
                )
            });
            continue;
        }
        stats.records += 1;
        out.push(Record {
            id: record.id.clone(),
            cves: cves.clone(),
            ecosystem: eco.to_owned(),
            package: package.name.trim().to_owned(),
            affected: Affected::Ranges {
                ranges,
                versions: affected.versions.clone(),
            },
            severity: severity(&record, affected),
            summary: summary.clone(),
            modified: modified.clone(),
            origin: Origin::Osv,
        });
    }
    if stats.records > before {
        stats.saw_date(modified.as_deref());
    }
}

/// A range's events, each an object with exactly one of the four event keys.
fn events(raw: &[serde_json::Map<String, Value>]) -> Result<Vec<Event>, String> {
    let mut out = Vec::with_capacity(raw.len());
    for e in raw {
        let mut found = e.iter().filter_map(|(k, v)| {
            let v = v.as_str()?.to_owned();
            Some(match k.as_str() {
                "introduced" => Event::Introduced(v),
                "fixed" => Event::Fixed(v),
                "last_affected" => Event::LastAffected(v),
                "limit" => Event::Limit(v),
                _ => return None,
            })
        });
        match (found.next(), found.next()) {
            (Some(event), None) => out.push(event),
            (None, _) => {
                return Err(format!(
                    "an event without introduced/fixed/last_affected/limit: {}",
                    Value::Object(e.clone())
                ))
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "an event with more than one version: {}",
                    Value::Object(e.clone())
                ))
            }
        }
    }
    if !out.iter().any(|e| matches!(e, Event::Introduced(_))) {
        return Err("a range without an `introduced` event".into());
    }
    Ok(out)
}

fn severity(record: &OsvRecord, affected: &OsvAffected) -> Severity {
    let all = || affected.severity.iter().chain(&record.severity);
    if let Some(s) = all()
        .filter(|s| s.kind.eq_ignore_ascii_case("ubuntu"))
        .find_map(|s| Severity::from_word(&s.score))
    {
        return s;
    }
    let word_in = |v: &Option<Value>| -> Option<Severity> {
        let v = v.as_ref()?;
        ["severity", "urgency"]
            .iter()
            .find_map(|k| {
                v.get(k)
                    .and_then(Value::as_str)
                    .and_then(Severity::from_word)
            })
            .filter(|s| *s != Severity::Unknown)
    };
    if let Some(s) = word_in(&affected.ecosystem_specific)
        .or_else(|| word_in(&affected.database_specific))
        .or_else(|| word_in(&record.database_specific))
    {
        return s;
    }
    // AlmaLinux and Rocky records follow RHEL's titles: "Important: openssl security update".
    if let Some((word, _)) = record.summary.as_deref().and_then(|s| s.split_once(':')) {
        if let Some(s) = Severity::from_word(word).filter(|s| *s != Severity::Unknown) {
            return s;
        }
    }
    all()
        .filter(|s| s.kind.to_ascii_uppercase().starts_with("CVSS"))
        .filter_map(|s| Severity::from_cvss(&s.score))
        .max()
        .unwrap_or(Severity::Unknown)
}
