//! Promotion evidence on the reports branch: what staged promotion (`plan::promotion`)
//! reads to decide which versions a promoting baseline's hosts may take.
//!
//! Two things are recorded, each folded forward by every report writer so that reading
//! never walks the branch's history (bounded however many years of reports it holds):
//! - `installed/<name>.json` ([`InstalledRecord`]), for the hosts some baseline promotes
//!   from: every installed package with the version it has and since when, plus up to
//!   [`EARLIER_VERSIONS`] earlier versions with when they ran. A version counts from the
//!   best evidence of when it was installed ([`InstallEvidence`]): when patchkeeper's own
//!   apply finished on the host, else the package database's install time (rpm) when it
//!   falls between the last observation without the version and this one, else this
//!   observation (the conservative end: it may have been installed earlier, never later).
//!   The file changes only when the host's
//!   packages change, so unchanged hosts cost nothing (Git stores the same blob), and the
//!   host report's `installedDigest` lets writers skip reading it.
//! - `incidents` in every host report: package versions that rolled back, failed after
//!   being installed, or left the host non-compliant (below a required minimum, broken in
//!   the package database), newest first, at most [`MAX_INCIDENTS`].
//!
//! Pure: the git plumbing is in `report/git.rs`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compliance::{HostCompliance, HostRunOutcome};
use crate::model::PackageManager;
use crate::observed::{InstalledPackage, ObservedHost};
use crate::plan::promotion::{Evidence, HostEvidence, Incident, IncidentKind, Ran};

use super::HostRun;

/// Earlier versions kept per package in an [`InstalledRecord`].
pub const EARLIER_VERSIONS: usize = 10;

/// Incidents kept per host report.
pub const MAX_INCIDENTS: usize = 50;

/// A promotion source's installed packages with since when: `installed/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledRecord {
    /// Host name.
    pub host: String,
    /// The package manager it was observed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// When the host was first recorded: versions it had then count from here.
    #[schemars(with = "String")]
    pub recorded_since: Timestamp,
    /// Every installed package, sorted by name then architecture.
    pub packages: Vec<InstalledHistory>,
}

/// One installed package: its version since when, and what it had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledHistory {
    /// Package name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// The installed version.
    pub version: String,
    /// When it started running: when apply finished installing it, else the package
    /// database's install time within what observations allow, else when first recorded.
    #[schemars(with = "String")]
    pub since: Timestamp,
    /// Earlier versions while recorded, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<EarlierVersion>,
}

/// A version a package had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EarlierVersion {
    /// The version.
    pub version: String,
    /// When it started running: when apply finished installing it, else the package
    /// database's install time within what observations allow, else when first recorded.
    #[schemars(with = "String")]
    pub since: Timestamp,
    /// When another version replaced it (that version's `since`).
    #[schemars(with = "String")]
    pub until: Timestamp,
}

/// SHA-256 (hex) of the installed packages (name, architecture, version), whatever their
/// order: equal digests mean the record needs no rewrite.
pub fn digest(installed: &[InstalledPackage]) -> String {
    let mut rows: Vec<(&str, &str, &str)> = installed
        .iter()
        .map(|p| (p.name.as_str(), p.arch.as_str(), p.version.as_str()))
        .collect();
    rows.sort_unstable();
    let mut h = Sha256::new();
    for (name, arch, version) in rows {
        for f in [name, arch, version] {
            h.update((f.len() as u64).to_le_bytes());
            h.update(f.as_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What is known about when the versions an observation finds were installed, beyond the
/// observation itself.
#[derive(Debug, Clone, Default)]
pub struct InstallEvidence<'a> {
    /// When the host was last observed before this report: a version the previous record
    /// lacks was installed after it.
    pub last_observed: Option<Timestamp>,
    /// Versions this run's apply installed on the host and when it finished there, verified
    /// (the controller's clock): `(name, version, finished at)`.
    pub applied: Vec<(&'a str, &'a str, Timestamp)>,
}

/// When a version new since the previous record started running: the earliest time the
/// evidence supports, never after `now`. Apply's finish time is patchkeeper's own record;
/// the package database's install time is the host's clock, so it counts only between the
/// last observation without the version and `now` (a wrong clock cannot stretch a soak
/// beyond what the observations allow). Without either, `now`.
fn started(
    p: &InstalledPackage,
    observed: &ObservedHost,
    evidence: &InstallEvidence<'_>,
    after: Option<Timestamp>,
    now: Timestamp,
) -> Timestamp {
    let applied = evidence
        .applied
        .iter()
        .filter(|(n, v, at)| *n == p.name.as_str() && *v == p.version.as_str() && *at <= now)
        .map(|(_, _, at)| *at);
    let recorded = after.into_iter().flat_map(|after| {
        observed
            .install_times
            .iter()
            .filter(move |t| {
                t.name == p.name
                    && t.arch == p.arch
                    && t.version == p.version
                    && after < t.at
                    && t.at <= now
            })
            .map(|t| t.at)
    });
    applied.chain(recorded).min().unwrap_or(now)
}

/// The record after observing `observed` at `now`: unchanged versions keep their `since`,
/// changed ones start when the evidence says they were installed ([`started`]; at the
/// latest `now`) with the old one moved to `earlier` until then, new packages start the
/// same way, removed ones are dropped. Without a previous record, what the host had
/// before counts from `now`, except what this run's apply installed.
pub fn advance(
    previous: Option<&InstalledRecord>,
    observed: &ObservedHost,
    evidence: &InstallEvidence<'_>,
    now: Timestamp,
) -> InstalledRecord {
    // Without a previous record there is no observation to bound the host's clock by.
    let after = previous.and(evidence.last_observed);
    let before: BTreeMap<(&str, &str), &InstalledHistory> = previous
        .iter()
        .flat_map(|r| &r.packages)
        .map(|p| ((p.name.as_str(), p.arch.as_str()), p))
        .collect();
    let mut packages: Vec<InstalledHistory> = observed
        .installed
        .iter()
        .map(|p| match before.get(&(p.name.as_str(), p.arch.as_str())) {
            Some(old) if old.version == p.version.as_str() => (*old).clone(),
            Some(old) => {
                // Never before the old version's own start.
                let since = started(p, observed, evidence, after, now).max(old.since);
                let mut earlier = vec![EarlierVersion {
                    version: old.version.clone(),
                    since: old.since,
                    until: since,
                }];
                earlier.extend(old.earlier.iter().cloned());
                earlier.truncate(EARLIER_VERSIONS);
                InstalledHistory {
                    name: p.name.to_string(),
                    arch: p.arch.to_string(),
                    version: p.version.to_string(),
                    since,
                    earlier,
                }
            }
            None => InstalledHistory {
                name: p.name.to_string(),
                arch: p.arch.to_string(),
                version: p.version.to_string(),
                since: started(p, observed, evidence, after, now),
                earlier: Vec::new(),
            },
        })
        .collect();
    packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    packages.dedup_by(|a, b| a.name == b.name && a.arch == b.arch);
    InstalledRecord {
        host: observed.name.clone(),
        package_manager: observed
            .package_manager
            .or(previous.and_then(|r| r.package_manager)),
        recorded_since: previous.map_or(now, |r| r.recorded_since),
        packages,
    }
}

/// The versions a run tried on a host and that failed there: an apply's rolled-back or
/// failed host with the changes it attempted.
fn run_incidents(run: &HostRun, now: Timestamp) -> Vec<Incident> {
    let (kind, reason) = match &run.outcome {
        HostRunOutcome::RolledBack { reason } => (IncidentKind::RolledBack, reason),
        HostRunOutcome::Failed { reason } => (IncidentKind::Failed, reason),
        _ => return Vec::new(),
    };
    run.attempted
        .iter()
        .map(|c| Incident {
            package: c.package.clone(),
            version: c.to.clone(),
            kind,
            at: now,
            reason: reason.clone(),
        })
        .collect()
}

/// The host's incidents after this evaluation: the previous ones, the versions this run
/// tried and that failed, and installed versions the host is non-compliant because of
/// (below a required minimum, or left broken in the package database). One incident per
/// package, version and kind (the first kept); newest first, at most [`MAX_INCIDENTS`].
pub fn incidents(
    previous: &[Incident],
    run: Option<&HostRun>,
    compliance: &HostCompliance,
    observed: Option<&ObservedHost>,
    now: Timestamp,
) -> Vec<Incident> {
    let mut new: Vec<Incident> = run.map(|r| run_incidents(r, now)).unwrap_or_default();
    for m in &compliance.missing {
        if let (Some(have), Some(required)) = (&m.installed, &m.required) {
            new.push(Incident {
                package: m.package.clone(),
                version: have.clone(),
                kind: IncidentKind::NonCompliant,
                at: now,
                reason: format!("below {required}, which {} requires", m.source),
            });
        }
    }
    for b in observed
        .filter(|o| o.status.is_reachable())
        .map(|o| o.db_health.as_slice())
        .unwrap_or_default()
    {
        new.push(Incident {
            package: b.name.clone(),
            version: b.version.clone(),
            kind: IncidentKind::NonCompliant,
            at: now,
            reason: format!("left {} in the package database", b.state),
        });
    }
    let mut out: Vec<Incident> = previous.to_vec();
    for i in new {
        let known = out
            .iter()
            .any(|o| o.package == i.package && o.version == i.version && o.kind == i.kind);
        if !known {
            out.push(i);
        }
    }
    out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.cmp(b)));
    out.truncate(MAX_INCIDENTS);
    out
}

/// The planner's evidence for one host, from its record and incidents.
pub fn host_evidence(record: Option<&InstalledRecord>, incidents: &[Incident]) -> HostEvidence {
    let mut versions: BTreeMap<String, Vec<Ran>> = BTreeMap::new();
    for p in record.iter().flat_map(|r| &r.packages) {
        let runs = versions.entry(p.name.clone()).or_default();
        runs.push(Ran {
            version: p.version.clone(),
            since: p.since,
            until: None,
        });
        runs.extend(p.earlier.iter().map(|e| Ran {
            version: e.version.clone(),
            since: e.since,
            until: Some(e.until),
        }));
    }
    HostEvidence {
        package_manager: record.and_then(|r| r.package_manager),
        versions,
        incidents: incidents.to_vec(),
    }
}

/// Evidence of several hosts.
pub fn evidence<'a>(
    hosts: impl IntoIterator<Item = (&'a str, Option<&'a InstalledRecord>, &'a [Incident])>,
) -> Evidence {
    Evidence {
        hosts: hosts
            .into_iter()
            .map(|(name, record, incidents)| (name.to_owned(), host_evidence(record, incidents)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::HostStatus;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).expect("in range")
    }

    fn host(pkgs: &[(&str, &str)]) -> ObservedHost {
        let mut h = ObservedHost::new("staging-1", HostStatus::Reachable);
        h.package_manager = Some(PackageManager::Apt);
        h.installed = pkgs
            .iter()
            .map(|(n, v)| InstalledPackage {
                name: (*n).into(),
                version: (*v).into(),
                arch: "amd64".into(),
                status: "ii".into(),
            })
            .collect();
        h
    }

    #[test]
    fn versions_keep_their_since_and_changes_move_to_earlier() {
        let first = advance(
            None,
            &host(&[("libpk", "1.0-1"), ("bash", "5.2")]),
            &InstallEvidence::default(),
            t(0),
        );
        assert_eq!(first.recorded_since, t(0));
        assert!(first.packages.iter().all(|p| p.since == t(0)));
        let same = advance(
            Some(&first),
            &host(&[("bash", "5.2"), ("libpk", "1.0-1")]),
            &InstallEvidence::default(),
            t(10),
        );
        assert_eq!(
            same, first,
            "an unchanged host keeps its record byte for byte"
        );
        let moved = advance(
            Some(&same),
            &host(&[("libpk", "1.2-1"), ("bash", "5.2")]),
            &InstallEvidence::default(),
            t(20),
        );
        let libpk = moved.packages.iter().find(|p| p.name == "libpk").unwrap();
        assert_eq!((libpk.version.as_str(), libpk.since), ("1.2-1", t(20)));
        assert_eq!(
            libpk.earlier,
            [EarlierVersion {
                version: "1.0-1".into(),
                since: t(0),
                until: t(20)
            }]
        );
        // Earlier versions are bounded.
        let mut r = moved;
        for i in 0..(EARLIER_VERSIONS as i64 + 5) {
            r = advance(
                Some(&r),
                &host(&[("libpk", &format!("2.{i}-1"))]),
                &InstallEvidence::default(),
                t(100 + i),
            );
        }
        assert_eq!(r.packages[0].earlier.len(), EARLIER_VERSIONS);
        assert_eq!(r.recorded_since, t(0));
        // The digest ignores order and sees versions.
        assert_eq!(
            digest(&host(&[("a", "1"), ("b", "2")]).installed),
            digest(&host(&[("b", "2"), ("a", "1")]).installed)
        );
        assert_ne!(
            digest(&host(&[("a", "1")]).installed),
            digest(&host(&[("a", "2")]).installed)
        );
    }

    #[test]
    fn a_version_counts_from_the_best_evidence_of_its_install() {
        let none = InstallEvidence::default();
        let first = advance(
            None,
            &host(&[("libpk", "1.0-1"), ("bash", "5.2")]),
            &none,
            t(0),
        );
        let libpk = |r: &InstalledRecord| {
            r.packages
                .iter()
                .find(|p| p.name == "libpk")
                .cloned()
                .unwrap()
        };
        let with_rpm_time = |at: i64| {
            let mut h = host(&[("libpk", "1.2-1"), ("bash", "5.2")]);
            h.install_times = vec![crate::observed::InstallTime {
                name: "libpk".into(),
                arch: "amd64".into(),
                version: "1.2-1".into(),
                at: t(at),
            }];
            h
        };
        let seen = |last: i64| InstallEvidence {
            last_observed: Some(t(last)),
            applied: Vec::new(),
        };
        // The package database's time, between the last observation (t+100) and now (t+500).
        let r = advance(Some(&first), &with_rpm_time(300), &seen(100), t(500));
        assert_eq!(libpk(&r).since, t(300));
        assert_eq!(
            libpk(&r).earlier[0].until,
            t(300),
            "the old version ran until then"
        );
        // A host clock that puts it before the last observation that saw 1.0-1, or after
        // now, is not believed: the observation counts.
        for at in [100, 50, 600] {
            let r = advance(Some(&first), &with_rpm_time(at), &seen(100), t(500));
            assert_eq!(libpk(&r).since, t(500), "install time t+{at}");
        }
        // Nothing bounds the host's clock on the first record: the observation counts.
        let r = advance(None, &with_rpm_time(300), &seen(100), t(500));
        assert_eq!(libpk(&r).since, t(500));
        // Apply's own finish time wins when earlier (the controller's clock), also on a
        // first record; a finish time after now or for another version does not count.
        let applied = |at: i64, version: &'static str| InstallEvidence {
            last_observed: Some(t(100)),
            applied: vec![("libpk", version, t(at))],
        };
        let r = advance(
            Some(&first),
            &with_rpm_time(300),
            &applied(200, "1.2-1"),
            t(500),
        );
        assert_eq!(libpk(&r).since, t(200));
        let r = advance(
            None,
            &host(&[("libpk", "1.2-1")]),
            &applied(200, "1.2-1"),
            t(500),
        );
        assert_eq!(libpk(&r).since, t(200));
        for bad in [applied(600, "1.2-1"), applied(200, "1.1-1")] {
            let r = advance(None, &host(&[("libpk", "1.2-1")]), &bad, t(500));
            assert_eq!(libpk(&r).since, t(500));
        }
        // An unchanged version keeps its since, whatever the evidence says.
        let r = advance(
            Some(&first),
            &host(&[("libpk", "1.0-1"), ("bash", "5.2")]),
            &applied(200, "1.0-1"),
            t(500),
        );
        assert_eq!(r, first);
    }

    #[test]
    fn evidence_lists_current_and_earlier_runs() {
        let a = advance(
            None,
            &host(&[("libpk", "1.0-1")]),
            &InstallEvidence::default(),
            t(0),
        );
        let b = advance(
            Some(&a),
            &host(&[("libpk", "1.2-1")]),
            &InstallEvidence::default(),
            t(50),
        );
        let e = host_evidence(Some(&b), &[]);
        assert_eq!(e.package_manager, Some(PackageManager::Apt));
        assert_eq!(
            e.versions["libpk"],
            [
                Ran {
                    version: "1.2-1".into(),
                    since: t(50),
                    until: None
                },
                Ran {
                    version: "1.0-1".into(),
                    since: t(0),
                    until: Some(t(50))
                }
            ]
        );
    }
}
