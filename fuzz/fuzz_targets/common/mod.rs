//! Helpers shared by the fuzz targets: inputs of several fields, and the fixtures some
//! targets check parsed input against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The patchkeeper checkout the fuzz crate lives in.
pub fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

/// Splits `data` at NUL bytes into at most `n` fields, each read as UTF-8 lossily (hosts
/// and files send bytes; patchkeeper reads them lossily where they reach a parser).
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    data.splitn(n, |b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Field `i`, or empty.
pub fn field(fields: &[String], i: usize) -> &str {
    fields.get(i).map_or("", String::as_str)
}

/// The example fleet (examples/fleet), validated: the fleet saved plans and fuzzed
/// observations are checked against.
pub fn example_fleet() -> patchkeeper::validate::ValidFleet {
    let outcome = patchkeeper::validate::load_and_validate(&project().join("examples/fleet"))
        .expect("examples/fleet loads");
    outcome.fleet.expect("examples/fleet is valid")
}

/// The observed state that goes with the example fleet (tests/fixtures/plan).
pub fn example_observed() -> patchkeeper::observed::ObservedFleet {
    let text = std::fs::read_to_string(project().join("tests/fixtures/plan/example-observed.json"))
        .expect("example-observed.json");
    serde_json::from_str(&text).expect("example-observed.json parses")
}

/// A fixed instant, so runs are reproducible.
pub fn instant() -> jiff::Timestamp {
    "2026-11-29T02:00:00Z".parse().expect("a timestamp")
}

/// Matches advisory records as `vulns` and the planner do: indexed, then assessed against a
/// fleet of one host per supported distribution, each with every package the records name
/// installed at every version they mention (so the fuzzer's packages and versions meet).
pub fn match_records(records: Vec<patchkeeper::advisory::Record>) {
    use patchkeeper::advisory::{matcher, Affected, Event};
    use patchkeeper::model::PackageManager;
    use patchkeeper::observed::{HostStatus, InstalledPackage, ObservedHost, OsInfo};

    let mut packages: Vec<(String, String)> = Vec::new();
    for r in &records {
        let mut versions: Vec<&str> = vec!["0", "1.0-1"];
        if let Affected::Ranges {
            ranges,
            versions: listed,
        } = &r.affected
        {
            for e in ranges.iter().flatten() {
                let (Event::Introduced(v)
                | Event::Fixed(v)
                | Event::LastAffected(v)
                | Event::Limit(v)) = e;
                versions.push(v);
            }
            versions.extend(listed.iter().map(String::as_str));
        }
        for v in versions {
            if packages.len() < 256 {
                packages.push((r.package.clone(), v.to_owned()));
            }
        }
    }
    let distributions = [
        ("debian", "12", PackageManager::Apt, "all"),
        ("ubuntu", "22.04", PackageManager::Apt, "all"),
        ("almalinux", "9.4", PackageManager::Dnf, "noarch"),
        ("rocky", "9.4", PackageManager::Dnf, "noarch"),
    ];
    let hosts = distributions
        .iter()
        .map(|(id, version, pm, arch)| {
            let mut h = ObservedHost::new(format!("{id}-1"), HostStatus::Reachable);
            h.os = Some(OsInfo {
                id: (*id).into(),
                version_id: (*version).into(),
                family: vec![(*id).into()],
                pretty_name: None,
                version_codename: None,
            });
            h.package_manager = Some(*pm);
            h.installed = packages
                .iter()
                .map(|(name, v)| InstalledPackage {
                    name: name.as_str().into(),
                    version: v.as_str().into(),
                    arch: (*arch).into(),
                    status: if *pm == PackageManager::Apt {
                        "ii"
                    } else {
                        "installed"
                    }
                    .into(),
                })
                .collect();
            h.normalize();
            h
        })
        .collect();
    let observed = patchkeeper::observed::ObservedFleet::new("2026-11-29T02:00:00Z".into(), hosts);
    let index = matcher::Index::build(records, Some("fuzz".into()));
    let assessment = matcher::assess(&index, &observed, &Default::default());
    for h in &observed.hosts {
        let _ = assessment.host(&h.name);
    }
}
