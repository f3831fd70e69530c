//! Which critical findings are new, so `serve`'s loop announces each (host, advisory) once
//! while it stays open (the `critical-finding` event of `GET /api/v1/events`), not on every
//! round. Pure: the loop keeps one [`Announced`] across rounds and hands it each round's
//! assessment.
//!
//! A finding counts as announced while it stays open; one that closes and opens again is
//! new again. A finding excused by a VulnerabilityException in force is not announced (the
//! risk is accepted); when the exception expires it is. Hosts not assessed in a round
//! (unreachable, no advisory ecosystem) keep what was announced for them, so a host that
//! drops out for a round does not announce its findings again when it comes back. On the
//! first round of a process, what the last report already listed open (and not excused) is
//! taken as announced: a restart announces nothing twice.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::matcher::{Assessment, FindingState};
use super::Severity;

/// A critical finding newly open on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCritical {
    /// The host.
    pub host: String,
    /// The advisory id.
    pub advisory: String,
    /// Its CVEs.
    pub cves: Vec<String>,
    /// The source package (or, for an RPM record naming a binary, that binary).
    pub source: String,
    /// The first installed package it affects.
    pub package: String,
    /// That package's installed version.
    pub installed: String,
    /// The first version with the fix (`None`: no fix released).
    pub fixed: Option<String>,
    /// Whether the fix is offered to the host.
    pub state: FindingState,
    /// When the host's reports first saw it open (now, unless the last report listed it).
    pub first_seen: Timestamp,
}

/// (advisory id, source) of an open finding.
type Key = (String, String);

/// The critical findings open at the last round, per host.
#[derive(Debug, Default)]
pub struct Announced {
    /// `None` until the first round.
    open: Option<BTreeMap<String, BTreeSet<Key>>>,
}

/// A critical advisory a report lists open on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The host.
    pub host: String,
    /// The advisory id.
    pub advisory: String,
    /// The source package.
    pub source: String,
    /// When the host's reports first saw it open.
    pub first_seen: Timestamp,
    /// A VulnerabilityException was in force for it when reported (so it was not
    /// announced then).
    pub excepted: bool,
}

impl Announced {
    /// A tracker that has announced nothing yet.
    pub fn new() -> Announced {
        Announced::default()
    }

    /// The critical findings of `assessment` to announce at `now`: those not open (and not
    /// excused) at the previous call; on the first call, those `reported` (the last
    /// report's critical advisories) does not list open and unexcused.
    pub fn round(
        &mut self,
        assessment: &Assessment,
        reported: &[Reported],
        now: Timestamp,
    ) -> Vec<NewCritical> {
        let open = self.open.get_or_insert_with(|| {
            let mut seeded: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
            for r in reported.iter().filter(|r| !r.excepted) {
                seeded
                    .entry(r.host.clone())
                    .or_default()
                    .insert((r.advisory.clone(), r.source.clone()));
            }
            seeded
        });
        let first_seen: BTreeMap<(&str, &str, &str), Timestamp> = reported
            .iter()
            .map(|r| {
                (
                    (r.host.as_str(), r.advisory.as_str(), r.source.as_str()),
                    r.first_seen,
                )
            })
            .collect();
        let mut out = Vec::new();
        for (host, found) in &assessment.hosts {
            if found.not_assessed.is_some() {
                continue;
            }
            let before = open.remove(host).unwrap_or_default();
            let mut now_open = BTreeSet::new();
            for f in &found.findings {
                let excused = f.exception.as_ref().is_some_and(|e| e.expires > now);
                if f.severity != Severity::Critical || excused {
                    continue;
                }
                let key = (f.id().to_owned(), f.source.to_string());
                if !before.contains(&key) && !now_open.contains(&key) {
                    let first = f.packages.first();
                    out.push(NewCritical {
                        host: host.clone(),
                        advisory: key.0.clone(),
                        cves: f.cves(),
                        source: key.1.clone(),
                        package: first.map(|p| p.name.to_string()).unwrap_or_default(),
                        installed: first.map(|p| p.version.to_string()).unwrap_or_default(),
                        fixed: f.fixed.as_ref().map(|v| v.to_string()),
                        state: f.state,
                        first_seen: first_seen
                            .get(&(host.as_str(), key.0.as_str(), key.1.as_str()))
                            .copied()
                            .unwrap_or(now)
                            .min(now),
                    });
                }
                now_open.insert(key);
            }
            if !now_open.is_empty() {
                open.insert(host.clone(), now_open);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::advisory::matcher::{self, Excepted, Index};
    use crate::advisory::{Affected, Event, Origin, Record};
    use crate::observed::{
        FailureReason, HostStatus, InstalledPackage, ObservedFleet, ObservedHost, OsInfo,
    };

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(id: &str, package: &str, severity: Severity) -> Record {
        Record {
            id: id.into(),
            cves: vec![format!("CVE-{id}")],
            ecosystem: "Debian:12".into(),
            package: package.into(),
            affected: Affected::Ranges {
                ranges: vec![vec![
                    Event::Introduced("0".into()),
                    Event::Fixed("1.1-1".into()),
                ]],
                versions: vec![],
            },
            severity,
            summary: String::new(),
            modified: None,
            origin: Origin::Osv,
        }
    }

    fn host(name: &str, packages: &[&str], reachable: bool) -> ObservedHost {
        let status = if reachable {
            HostStatus::Reachable
        } else {
            HostStatus::Unreachable {
                reason: FailureReason::Refused {
                    address: "10.0.0.1:22".into(),
                },
            }
        };
        let mut h = ObservedHost::new(name, status);
        h.package_manager = Some(crate::model::PackageManager::Apt);
        h.installed = packages
            .iter()
            .map(|p| InstalledPackage {
                name: (*p).into(),
                version: "1.0-1".into(),
                arch: "amd64".into(),
                status: "ii".into(),
            })
            .collect();
        h.os = Some(OsInfo {
            id: "debian".into(),
            version_id: "12".into(),
            family: vec!["debian".into()],
            pretty_name: None,
            version_codename: Some("bookworm".into()),
        });
        h.normalize();
        h
    }

    fn assess(hosts: Vec<ObservedHost>) -> Assessment {
        let index = Index::build(
            vec![
                record("PK-1", "pk-kernel", Severity::Critical),
                record("PK-2", "libpk", Severity::High),
                record("PK-3", "pk-net", Severity::Critical),
            ],
            None,
        );
        let fleet = ObservedFleet::new("2026-11-29T01:00:00Z".into(), hosts);
        matcher::assess(&index, &fleet, &BTreeMap::new())
    }

    fn names(found: &[NewCritical]) -> Vec<(String, String)> {
        found
            .iter()
            .map(|f| (f.host.clone(), f.advisory.clone()))
            .collect()
    }

    #[test]
    fn each_critical_finding_is_announced_once_while_it_stays_open() {
        let mut a = Announced::new();
        let now = t("2026-11-30T00:00:00Z");
        let round1 = a.round(
            &assess(vec![host("h1", &["pk-kernel", "libpk"], true)]),
            &[],
            now,
        );
        assert_eq!(names(&round1), [("h1".to_owned(), "PK-1".to_owned())]);
        let f = &round1[0];
        assert_eq!(
            (
                f.source.as_str(),
                f.package.as_str(),
                f.installed.as_str(),
                f.fixed.as_deref(),
                f.state,
                f.first_seen,
            ),
            (
                "pk-kernel",
                "pk-kernel",
                "1.0-1",
                Some("1.1-1"),
                FindingState::FixNotOffered,
                now
            )
        );
        assert_eq!(f.cves, ["CVE-PK-1"]);
        // The next round: still open, nothing new; a second critical package appears.
        let round2 = a.round(
            &assess(vec![host("h1", &["pk-kernel", "libpk", "pk-net"], true)]),
            &[],
            now,
        );
        assert_eq!(names(&round2), [("h1".to_owned(), "PK-3".to_owned())]);
        // Unreachable for a round: nothing announced, nothing forgotten.
        let down = a.round(&assess(vec![host("h1", &[], false)]), &[], now);
        assert!(down.is_empty(), "{down:?}");
        let back = a.round(
            &assess(vec![host("h1", &["pk-kernel", "libpk", "pk-net"], true)]),
            &[],
            now,
        );
        assert!(back.is_empty(), "{back:?}");
        // Closed, then open again: announced again.
        assert!(a
            .round(&assess(vec![host("h1", &["libpk"], true)]), &[], now)
            .is_empty());
        let again = a.round(&assess(vec![host("h1", &["pk-kernel"], true)]), &[], now);
        assert_eq!(names(&again), [("h1".to_owned(), "PK-1".to_owned())]);
    }

    #[test]
    fn a_restart_takes_the_last_report_as_announced_and_exceptions_defer() {
        let now = t("2026-11-30T00:00:00Z");
        let reported = |advisory: &str, excepted: bool| Reported {
            host: "h1".into(),
            advisory: advisory.into(),
            source: if advisory == "PK-1" {
                "pk-kernel"
            } else {
                "pk-net"
            }
            .into(),
            first_seen: t("2026-11-20T00:00:00Z"),
            excepted,
        };
        let mut a = Announced::new();
        // PK-1 was reported open: not announced again. PK-3 was reported but excused then
        // (so never announced), and no exception covers it now: announced, with the
        // report's first-seen.
        let found = a.round(
            &assess(vec![host("h1", &["pk-kernel", "pk-net"], true)]),
            &[reported("PK-1", false), reported("PK-3", true)],
            now,
        );
        assert_eq!(names(&found), [("h1".to_owned(), "PK-3".to_owned())]);
        assert_eq!(found[0].first_seen, t("2026-11-20T00:00:00Z"));
        // An exception in force keeps a new critical finding quiet; when it expires, it is
        // announced.
        let mut a = Announced::new();
        let mut excused = assess(vec![host("h1", &["pk-kernel"], true)]);
        let until = t("2026-12-01T00:00:00Z");
        for f in &mut excused.hosts.get_mut("h1").unwrap().findings {
            f.exception = Some(Arc::new(Excepted {
                name: "accepted".into(),
                owner: "sec".into(),
                reason: "not exposed".into(),
                expires: until,
            }));
        }
        assert!(a.round(&excused, &[], now).is_empty());
        let later = a.round(&excused, &[], until);
        assert_eq!(names(&later), [("h1".to_owned(), "PK-1".to_owned())]);
    }
}
