//! The advisory view of a fleet: where the store is, and the assessment of an observed
//! fleet against it with the fleet repo's vulnerability exceptions applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use super::matcher::{self, Assessment, Excepted, Index};
use super::{ecosystem, Store, StoreError};
use crate::observed::ObservedFleet;
use crate::validate::ValidFleet;

/// Environment variable naming the store file (the operator's choice; `--store` wins).
pub const STORE_ENV: &str = "PATCHKEEPER_ADVISORY_STORE";

/// The store file: `flag`, else `$PATCHKEEPER_ADVISORY_STORE`, else
/// `<root>/.patchkeeper/advisories.db` (beside the apply lock and journal).
pub fn store_path(root: &Path, flag: Option<&Path>) -> PathBuf {
    if let Some(f) = flag {
        return f.to_owned();
    }
    match std::env::var_os(STORE_ENV).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => root.join(".patchkeeper").join("advisories.db"),
    }
}

/// Matches `observed` against what `store` holds (only the ecosystems the fleet's hosts
/// are in are loaded) and applies the fleet's exceptions in force at `now`.
pub fn assess(
    store: &Store,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    now: Timestamp,
) -> Result<Assessment, StoreError> {
    let overrides = fleet.settings().advisories.ecosystems;
    let ecosystems: BTreeSet<String> = observed
        .hosts
        .iter()
        .filter_map(|h| h.os.as_ref())
        .filter_map(|os| ecosystem::of_host(os, &overrides))
        .map(|e| e.name)
        .collect();
    let snapshot = store.snapshot()?;
    let records = store.records(Some(&ecosystems))?;
    let index = Index::build(records, Some(snapshot.id));
    let mut assessment = matcher::assess(&index, observed, &overrides);
    apply_exceptions(&mut assessment, fleet, now);
    Ok(assessment)
}

/// [`assess`] against the store at `path`; `None` when no store exists there (nothing was
/// ever imported).
pub fn assess_at(
    path: &Path,
    fleet: &ValidFleet,
    observed: &ObservedFleet,
    now: Timestamp,
) -> Result<Option<Assessment>, StoreError> {
    match Store::open_existing(path)? {
        Some(store) => assess(&store, fleet, observed, now).map(Some),
        None => Ok(None),
    }
}

/// Every record of the store at `path`, indexed (`None`: nothing was ever imported), for
/// matching hosts one at a time later (a saved plan's check at each host).
pub fn index_at(path: &Path) -> Result<Option<Index>, StoreError> {
    let Some(store) = Store::open_existing(path)? else {
        return Ok(None);
    };
    let snapshot = store.snapshot()?;
    let records = store.records(None)?;
    Ok(Some(Index::build(records, Some(snapshot.id))))
}

/// Marks each finding that an exception in force at `now` covers: the exception selects
/// the host (no selector: every host), names the advisory or one of its CVEs, and names
/// the package (source or installed name) or no package at all.
pub fn apply_exceptions(assessment: &mut Assessment, fleet: &ValidFleet, now: Timestamp) {
    for host in fleet.hosts() {
        let Some(found) = assessment.hosts.get_mut(&host.name) else {
            continue;
        };
        let in_force: Vec<(Arc<Excepted>, &crate::model::VulnerabilityExceptionSpec)> = fleet
            .exceptions_for(host)
            .into_iter()
            .filter_map(|e| {
                let expires = crate::model::exception_expiry(&e.doc.spec.expires)?;
                (expires > now).then(|| {
                    (
                        Arc::new(Excepted {
                            name: e.name().to_owned(),
                            owner: e.doc.spec.owner.clone(),
                            reason: e.doc.spec.reason.clone(),
                            expires,
                        }),
                        &e.doc.spec,
                    )
                })
            })
            .collect();
        if in_force.is_empty() {
            continue;
        }
        for f in &mut found.findings {
            let cves = f.cves();
            let hit = in_force.iter().find(|(_, spec)| {
                let names_advisory = spec.advisories.iter().any(|a| {
                    a.eq_ignore_ascii_case(f.id()) || cves.iter().any(|c| a.eq_ignore_ascii_case(c))
                });
                let names_package = spec.packages.is_empty()
                    || spec.packages.iter().any(|p| {
                        *p == f.source.as_str() || f.packages.iter().any(|x| x.name == p.as_str())
                    });
                names_advisory && names_package
            });
            f.exception = hit.map(|(e, _)| e.clone());
        }
    }
}
