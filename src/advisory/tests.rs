//! The readers and the matcher on fixtures written in the published formats
//! (`tests/fixtures/advisories/`: a Debian security tracker dump laid out as
//! `bin/tracker_service.py` writes it, OSV records per the OSV schema 1.7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::import::{read_path, sniff, Format};
use super::matcher::{assess, candidate_source_version, FindingState, Index};
use super::*;
use crate::model::PackageManager;
use crate::observed::{
    HostStatus, InstalledPackage, ObservedFleet, ObservedHost, OsInfo, PendingUpdate, SourcePackage,
};
use crate::version::Ecosystem;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/advisories")
        .join(rel)
}

fn os(id: &str, version: &str, codename: Option<&str>) -> OsInfo {
    OsInfo {
        id: id.into(),
        version_id: version.into(),
        family: vec![id.into()],
        pretty_name: None,
        version_codename: codename.map(str::to_owned),
    }
}

/// An installed package: (name, version, Some((source, source version))).
type Pkg<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

/// A host with `installed` packages, pending `updates` and `held` ones (name, from, to).
fn host(
    name: &str,
    os: OsInfo,
    pm: PackageManager,
    installed: &[Pkg<'_>],
    updates: &[(&str, &str, &str)],
    held: &[(&str, &str, &str)],
) -> ObservedHost {
    let mut h = ObservedHost::new(name, HostStatus::Reachable);
    h.os = Some(os);
    h.package_manager = Some(pm);
    let arch = if pm == PackageManager::Apt {
        "amd64"
    } else {
        "x86_64"
    };
    for (n, v, src) in installed {
        h.installed.push(InstalledPackage {
            name: (*n).into(),
            version: (*v).into(),
            arch: arch.into(),
            status: "ii".into(),
        });
        if let Some((s, sv)) = src {
            h.sources.push(SourcePackage {
                package: (*n).into(),
                arch: arch.into(),
                source: (*s).into(),
                version: (*sv).into(),
            });
        }
    }
    let pending = |list: &[(&str, &str, &str)]| {
        list.iter()
            .map(|(n, from, to)| PendingUpdate {
                name: n.to_string(),
                arch: arch.into(),
                installed_version: Some(from.to_string()),
                candidate_version: to.to_string(),
                origin: "Debian-Security:12/bookworm-security".into(),
                security: true,
                advisories: vec![],
            })
            .collect()
    };
    h.updates = pending(updates);
    h.held_updates = pending(held);
    h.normalize();
    h
}

fn all_records() -> Vec<Record> {
    let mut records = read_path(&fixture("debian-tracker.json"), None)
        .unwrap()
        .records;
    records.extend(read_path(&fixture("osv"), None).unwrap().records);
    records
}

#[test]
fn tracker_dump_statuses_become_records() {
    let loaded = read_path(&fixture("debian-tracker.json"), None).unwrap();
    assert_eq!(loaded.format, Format::DebianTracker);
    let s = &loaded.stats;
    assert_eq!(s.advisories, 14);
    assert_eq!(s.not_affected, 1, "util-linux trixie is fixed_version 0");
    assert_eq!(s.skipped, 2, "{:?}", s.reasons);
    assert!(
        s.reasons[0].starts_with("broken-pkg CVE-2026-1090: "),
        "{:?}",
        s.reasons
    );
    assert_eq!(
        s.reasons[1],
        "broken-pkg CVE-2026-1091 bookworm: resolved without a fixed_version"
    );
    assert_eq!(s.records, loaded.records.len());
    let find = |id: &str, eco: &str| {
        loaded
            .records
            .iter()
            .find(|r| r.id == id && r.ecosystem == eco)
            .unwrap_or_else(|| panic!("{id} {eco}"))
    };
    let util = find("CVE-2026-1001", "Debian:12");
    assert_eq!(util.package, "util-linux");
    assert_eq!(util.severity, Severity::High);
    assert_eq!(
        util.summary,
        "util-linux: mount follows a symlink it should not"
    );
    assert_eq!(util.cves, ["CVE-2026-1001"]);
    assert_eq!(
        util.affected,
        Affected::Ranges {
            ranges: vec![vec![
                Event::Introduced("0".into()),
                Event::Fixed("2.38.1-5+deb12u4".into())
            ]],
            versions: vec![]
        }
    );
    let state = |id: &str| match &find(id, "Debian:12").affected {
        Affected::Unfixed { state, .. } => *state,
        other => panic!("{other:?}"),
    };
    assert_eq!(state("CVE-2026-1004"), Unfixed::Open);
    assert_eq!(state("CVE-2026-1005"), Unfixed::Postponed);
    assert_eq!(state("CVE-2026-1006"), Unfixed::WillNotFix);
    assert_eq!(state("CVE-2026-1007"), Unfixed::Undetermined);
    assert_eq!(state("CVE-2026-1008"), Unfixed::NoDsa);
    assert_eq!(state("CVE-2026-1011"), Unfixed::EndOfLife);
    assert_eq!(find("CVE-2026-1008", "Debian:12").severity, Severity::Low);
    assert_eq!(
        find("CVE-2026-1009", "Debian:12").severity,
        Severity::Negligible
    );
    assert_eq!(
        find("TEMP-0000000-AB12CD", "Debian:11").cves,
        Vec::<String>::new()
    );
}

#[test]
fn osv_directory_with_skips_and_severities() {
    let loaded = read_path(&fixture("osv"), None).unwrap();
    assert_eq!(loaded.format, Format::Osv);
    let s = &loaded.stats;
    assert_eq!(s.advisories, 8);
    assert_eq!(s.records, 5);
    assert_eq!(
        (s.withdrawn, s.other_ecosystems, s.skipped),
        (1, 1, 2),
        "{:?}",
        s.reasons
    );
    assert!(
        s.reasons.iter().any(|r| r.starts_with(
            "MALFORMED-1.json (DSA-5802-1 zlib): an event with more than one version"
        )),
        "{:?}",
        s.reasons
    );
    assert!(
        s.reasons
            .iter()
            .any(|r| r.starts_with("NOT-JSON.json: not an OSV record")),
        "{:?}",
        s.reasons
    );
    assert_eq!(s.newest.as_deref(), Some("2026-03-06T00:00:00Z"));
    let find = |id: &str| loaded.records.iter().find(|r| r.id == id).unwrap();
    // An Ubuntu priority wins over the CVSS score (9.8, critical).
    assert_eq!(find("USN-7000-1").severity, Severity::Medium);
    assert_eq!(find("USN-7000-1").cves, ["CVE-2026-2001", "CVE-2026-2002"]);
    // RHEL-family titles carry the rating; AlmaLinux keeps CVEs in `related`.
    assert_eq!(find("ALSA-2026:1234").severity, Severity::High);
    assert_eq!(find("ALSA-2026:1234").cves, ["CVE-2026-3001"]);
    assert_eq!(find("RLSA-2026:0100").severity, Severity::Medium);
    assert_eq!(find("DSA-5800-1").cves, ["CVE-2026-1001"]);
    assert_eq!(loaded.data_date.as_deref(), Some("2026-03-06T00:00:00Z"));
}

#[test]
fn osv_zip_dump_reads_like_the_directory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<_> = std::fs::read_dir(fixture("osv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in &names {
        zip.start_file(p.file_name().unwrap().to_string_lossy(), options)
            .unwrap();
        zip.write_all(&std::fs::read(p).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    let from_zip = read_path(&path, None).unwrap();
    let from_dir = read_path(&fixture("osv"), None).unwrap();
    assert_eq!(from_zip.format, Format::Osv);
    assert_eq!(from_zip.records, from_dir.records);
    assert_eq!(from_zip.stats.skipped, 2);
    std::fs::write(dir.path().join("broken.zip"), b"PK not really").unwrap();
    let err = read_path(&dir.path().join("broken.zip"), None).unwrap_err();
    assert!(
        err.to_string().contains("is not a readable zip archive"),
        "{err}"
    );
}

#[test]
fn formats_are_sniffed_from_the_first_key() {
    assert_eq!(sniff(b"{\"id\": \"DSA-1\"}"), Some(Format::Osv));
    assert_eq!(
        sniff(b"\xEF\xBB\xBF  {\n \"schema_version\": \"1.6.0\"}"),
        Some(Format::Osv)
    );
    assert_eq!(sniff(b"{\"0ad\": {}}"), Some(Format::DebianTracker));
    assert_eq!(sniff(b"[1, 2]"), None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.json"), "[]").unwrap();
    let err = read_path(&dir.path().join("x.json"), None).unwrap_err();
    assert!(err.to_string().contains("not a JSON object"), "{err}");
    std::fs::write(dir.path().join("t.json"), "{\"bash\": 7}").unwrap();
    let l = read_path(&dir.path().join("t.json"), None).unwrap();
    assert_eq!(l.stats.skipped, 1);
    assert_eq!(l.stats.reasons, ["bash: not an object of issues"]);
    std::fs::write(dir.path().join("cut.json"), "{\"bash\": {\"CVE-1\": ").unwrap();
    let err = read_path(&dir.path().join("cut.json"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a Debian security tracker dump"),
        "{err}"
    );
}

/// A Debian 12 host whose packages show every matching rule of the tracker fixture.
fn debian_host() -> ObservedHost {
    host(
        "deb-1",
        os("debian", "12", Some("bookworm")),
        PackageManager::Apt,
        &[
            // A binNMU: binary 5.2.15-2+b8, source 5.2.15-2.
            ("bash", "5.2.15-2+b8", Some(("bash", "5.2.15-2"))),
            // Another epoch than its source: compared as binaries, 1:2.38... would look
            // newer than every fix of util-linux.
            (
                "bsdutils",
                "1:2.38.1-5+deb12u3",
                Some(("util-linux", "2.38.1-5+deb12u3")),
            ),
            (
                "mount",
                "2.38.1-5+deb12u3",
                Some(("util-linux", "2.38.1-5+deb12u3")),
            ),
            // Several binaries of one source.
            (
                "libssl3",
                "3.0.15-1~deb12u1",
                Some(("openssl", "3.0.15-1~deb12u1")),
            ),
            ("openssl", "3.0.15-1~deb12u1", None),
            // A binary versioned apart from its source.
            ("cpp", "4:12.2.0-3", Some(("gcc-defaults", "1.203"))),
            ("firefox-esr", "115.0-1", None),
        ],
        &[
            ("bash", "5.2.15-2+b8", "5.2.15-2+deb12u1"),
            ("bsdutils", "1:2.38.1-5+deb12u3", "1:2.38.1-5+deb12u4"),
        ],
        &[],
    )
}

fn findings_of(records: Vec<Record>, hosts: Vec<ObservedHost>) -> super::Assessment {
    let overrides = BTreeMap::new();
    let index = Index::build(records, Some("sha256:test".into()));
    assess(
        &index,
        &ObservedFleet::new("2026-03-10T00:00:00Z".into(), hosts),
        &overrides,
    )
}

#[test]
fn debian_host_against_tracker_and_osv() {
    let a = findings_of(all_records(), vec![debian_host()]);
    assert_eq!(a.snapshot.as_deref(), Some("sha256:test"));
    let h = a.host("deb-1").unwrap();
    assert_eq!(h.ecosystem.as_ref().unwrap().name, "Debian:12");
    let rows: Vec<(String, String, String, Option<String>, &str)> = h
        .findings
        .iter()
        .map(|f| {
            (
                f.id().to_owned(),
                f.severity.as_str().to_owned(),
                format!(
                    "{} {} [{}]",
                    f.source,
                    f.source_version,
                    f.packages
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                f.fixed.as_ref().map(|v| v.to_string()),
                match (f.state, f.unfixed) {
                    (FindingState::NoFix, Some(u)) => u.as_str(),
                    (s, _) => s.as_str(),
                },
            )
        })
        .collect();
    let expect = |id: &str, sev: &str, pkg: &str, fixed: Option<&str>, state: &'static str| {
        (
            id.to_owned(),
            sev.to_owned(),
            pkg.to_owned(),
            fixed.map(str::to_owned),
            state,
        )
    };
    assert_eq!(
        rows,
        vec![
            // The tracker's CVE folds into the DSA that lists it; the tracker's urgency wins.
            expect(
                "CVE-2026-1004",
                "high",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "open"
            ),
            expect(
                "DSA-5800-1",
                "high",
                "util-linux 2.38.1-5+deb12u3 [bsdutils,mount]",
                Some("2.38.1-5+deb12u4"),
                "fix-offered"
            ),
            expect(
                "CVE-2026-1002",
                "medium",
                "bash 5.2.15-2 [bash]",
                Some("5.2.15-2+deb12u1"),
                "fix-offered"
            ),
            expect(
                "CVE-2026-1010",
                "medium",
                "gcc-defaults 1.203 [cpp]",
                Some("1.204"),
                "fix-not-offered"
            ),
            expect(
                "CVE-2026-1005",
                "low",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "postponed"
            ),
            expect(
                "CVE-2026-1006",
                "low",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "will-not-fix"
            ),
            expect(
                "CVE-2026-1008",
                "low",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "no-dsa"
            ),
            expect(
                "CVE-2026-1009",
                "negligible",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "open"
            ),
            expect(
                "CVE-2026-1007",
                "unknown",
                "openssl 3.0.15-1~deb12u1 [libssl3,openssl]",
                None,
                "undetermined"
            ),
            expect(
                "CVE-2026-1011",
                "unknown",
                "firefox-esr 115.0-1 [firefox-esr]",
                None,
                "end-of-life"
            ),
        ]
    );
    let dsa = &h.findings[1];
    assert_eq!(dsa.cves(), ["CVE-2026-1001"]);
    assert_eq!(dsa.offer.as_ref().unwrap().package, "bsdutils");
    // CVE-2026-1003 was fixed in 5.2.15-2: the binNMU 5.2.15-2+b8 of that source has it.
    assert!(!h.findings.iter().any(|f| f.id() == "CVE-2026-1003"));
    // Which pending changes close what.
    let closes = |pkg: &str, to: &str| -> Vec<String> {
        h.fixed_by(pkg, to).map(|f| f.id().to_owned()).collect()
    };
    assert_eq!(closes("bsdutils", "1:2.38.1-5+deb12u4"), ["DSA-5800-1"]);
    assert_eq!(
        closes("bsdutils", "1:2.38.1-5+deb12u3+b1"),
        Vec::<String>::new()
    );
    assert_eq!(closes("bash", "5.2.15-2+deb12u1"), ["CVE-2026-1002"]);
    // A binNMU of the old source is no fix.
    assert_eq!(closes("bash", "5.2.15-2+b9"), Vec::<String>::new());
    assert_eq!(closes("libssl3", "3.0.16-1~deb12u1"), Vec::<String>::new());
}

#[test]
fn held_fixes_and_missing_sources() {
    let mut h = debian_host();
    h.name = "deb-2".into();
    // The util-linux fix is only offered behind a hold.
    h.held_updates = h
        .updates
        .iter()
        .filter(|u| u.name == "bsdutils")
        .cloned()
        .collect();
    h.updates.retain(|u| u.name != "bsdutils");
    // Observed before sources were recorded: the binary name and version stand in.
    let mut old = debian_host();
    old.name = "deb-3".into();
    old.sources.clear();
    let a = findings_of(all_records(), vec![h, old]);
    let dsa = a
        .host("deb-2")
        .unwrap()
        .findings
        .iter()
        .find(|f| f.id() == "DSA-5800-1")
        .unwrap();
    assert_eq!(dsa.state, FindingState::FixHeld);
    assert!(dsa.offer.as_ref().unwrap().held);
    // Without source data: bash 5.2.15-2+b8 still compares below the fix; util-linux's
    // binaries are not found under their own names.
    let old = a.host("deb-3").unwrap();
    assert!(old.findings.iter().any(|f| f.id() == "CVE-2026-1002"));
    assert!(!old.findings.iter().any(|f| f.id() == "DSA-5800-1"));
}

#[test]
fn ubuntu_alma_and_rocky_hosts() {
    let ubuntu = host(
        "ubu-1",
        os("ubuntu", "22.04", Some("jammy")),
        PackageManager::Apt,
        &[(
            "libssl3",
            "3.0.2-0ubuntu1.17",
            Some(("openssl", "3.0.2-0ubuntu1.17")),
        )],
        &[("libssl3", "3.0.2-0ubuntu1.17", "3.0.2-0ubuntu1.18")],
        &[],
    );
    let alma_old = host(
        "alma-1",
        os("almalinux", "9.4", None),
        PackageManager::Dnf,
        // Epoch 0 (none written) is below the fix's epoch 1 whatever the version says.
        &[(
            "openssl-libs",
            "3.0.7-30.el9",
            Some(("openssl", "3.0.7-30.el9")),
        )],
        &[],
        &[],
    );
    let alma_new = host(
        "alma-2",
        os("almalinux", "9.4", None),
        PackageManager::Dnf,
        &[(
            "openssl-libs",
            "1:3.0.7-28.el9",
            Some(("openssl", "1:3.0.7-28.el9")),
        )],
        &[],
        &[],
    );
    let rocky = host(
        "rocky-1",
        os("rocky", "9.3", None),
        PackageManager::Dnf,
        &[
            (
                "libcurl-minimal",
                "7.76.1-26.el9",
                Some(("curl", "7.76.1-26.el9")),
            ),
            ("curl", "7.76.1-26.el9", None),
        ],
        &[("libcurl-minimal", "7.76.1-26.el9", "7.76.1-29.el9_4")],
        &[],
    );
    let a = findings_of(all_records(), vec![ubuntu, alma_old, alma_new, rocky]);
    let ids = |h: &str| -> Vec<(String, String, String)> {
        a.host(h)
            .unwrap()
            .findings
            .iter()
            .map(|f| {
                (
                    f.id().to_owned(),
                    f.severity.to_string(),
                    f.state.as_str().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        a.host("ubu-1").unwrap().ecosystem.as_ref().unwrap().name,
        "Ubuntu:22.04:LTS"
    );
    assert_eq!(
        ids("ubu-1"),
        [(
            "USN-7000-1".to_owned(),
            "medium".to_owned(),
            "fix-offered".to_owned()
        )]
    );
    assert_eq!(
        ids("alma-1"),
        [(
            "ALSA-2026:1234".to_owned(),
            "high".to_owned(),
            "fix-not-offered".to_owned()
        )]
    );
    assert!(ids("alma-2").is_empty());
    // The record naming the binary `libcurl-minimal` and the one naming `curl` (last
    // affected 7.76.1-26.el9, inclusive) are one advisory about source `curl`.
    assert_eq!(
        ids("rocky-1"),
        [(
            "RLSA-2026:0100".to_owned(),
            "medium".to_owned(),
            "fix-offered".to_owned()
        )]
    );
    let f = &a.host("rocky-1").unwrap().findings[0];
    let pkgs: Vec<&str> = f.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pkgs, ["curl", "libcurl-minimal"]);
    assert_eq!(f.fixed.as_deref(), Some("0:7.76.1-29.el9_4"));
}

fn ranges_record(ranges: Vec<Vec<Event>>, versions: Vec<&str>) -> Record {
    Record {
        id: "OSV-1".into(),
        cves: vec![],
        ecosystem: "Debian:12".into(),
        package: "pkg".into(),
        affected: Affected::Ranges {
            ranges,
            versions: versions.into_iter().map(str::to_owned).collect(),
        },
        severity: Severity::Low,
        summary: String::new(),
        modified: None,
        origin: Origin::Osv,
    }
}

/// Which of `versions` the record affects, and the fix each is told.
fn evaluate(record: Record, versions: &[&str]) -> Vec<(String, Option<String>)> {
    let hosts: Vec<ObservedHost> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            host(
                &format!("h{i}"),
                os("debian", "12", None),
                PackageManager::Apt,
                &[("pkg", v, None)],
                &[],
                &[],
            )
        })
        .collect();
    let a = findings_of(vec![record], hosts);
    versions
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let f = a.host(&format!("h{i}"))?.findings.first()?;
            Some((v.to_string(), f.fixed.as_ref().map(|x| x.to_string())))
        })
        .collect()
}

#[test]
fn osv_range_semantics_follow_the_spec() {
    use Event::*;
    let two = ranges_record(
        vec![vec![
            Introduced("1.0-1".into()),
            Fixed("1.0-3".into()),
            Introduced("2.0-1".into()),
            Fixed("2.0-5".into()),
        ]],
        vec![],
    );
    assert_eq!(
        evaluate(
            two,
            &["0.9-1", "1.0-1", "1.0-2", "1.0-3", "1.5-1", "2.0-4", "2.0-5"]
        ),
        [
            ("1.0-1".into(), Some("1.0-3".into())),
            ("1.0-2".into(), Some("1.0-3".into())),
            ("2.0-4".into(), Some("2.0-5".into())),
        ]
    );
    // last_affected is inclusive, and names no fix.
    let last = ranges_record(
        vec![vec![Introduced("0".into()), LastAffected("1.0-2".into())]],
        vec![],
    );
    assert_eq!(
        evaluate(last, &["1.0-2", "1.0-3"]),
        [("1.0-2".into(), None)]
    );
    // limit bounds the range; `*` is no bound.
    let limited = ranges_record(
        vec![vec![Introduced("0".into()), Limit("1.5".into())]],
        vec![],
    );
    assert_eq!(evaluate(limited, &["1.4", "1.5"]), [("1.4".into(), None)]);
    // Listed versions are affected too; events out of order are sorted.
    let listed = ranges_record(
        vec![vec![Fixed("3.0".into()), Introduced("2.0".into())]],
        vec!["1.1"],
    );
    assert_eq!(
        evaluate(listed, &["1.1", "1.2", "2.5", "3.0"]),
        [("1.1".into(), None), ("2.5".into(), Some("3.0".into()))]
    );
    // An epoch outranks everything; `~` sorts before the release.
    let epoch = ranges_record(
        vec![vec![Introduced("0".into()), Fixed("1:1.0-1".into())]],
        vec![],
    );
    assert_eq!(
        evaluate(epoch, &["9.9-9", "1:1.0-1~rc1", "1:1.0-1"]),
        [
            ("9.9-9".into(), Some("1:1.0-1".into())),
            ("1:1.0-1~rc1".into(), Some("1:1.0-1".into()))
        ]
    );
}

#[test]
fn unparsable_versions_leave_the_record_out() {
    let bad = ranges_record(
        vec![vec![
            Event::Introduced("0".into()),
            Event::Fixed("not a version".into()),
        ]],
        vec![],
    );
    let index = Index::build(vec![bad], None);
    assert_eq!((index.len(), index.unparsable), (0, 1));
}

#[test]
fn unparsable_versions_are_skipped_at_import_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("DSA-1.json");
    let record = serde_json::json!({
        "id": "DSA-1",
        "modified": "2026-03-01T00:00:00Z",
        "affected": [
            {"package": {"ecosystem": "Debian:12", "name": "zlib"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version"}]}]},
            {"package": {"ecosystem": "Debian:12", "name": "bash"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.2.15-2"}]}]}
        ]
    });
    std::fs::write(&file, record.to_string()).unwrap();
    let loaded = super::import::read_path(&file, None).unwrap();
    let names: Vec<&str> = loaded.records.iter().map(|r| r.package.as_str()).collect();
    assert_eq!(names, ["bash"]);
    assert_eq!((loaded.stats.records, loaded.stats.skipped), (1, 1));
    assert!(
        loaded.stats.reasons[0].starts_with("DSA-1 Debian:12 zlib: version \"not a version\""),
        "{:?}",
        loaded.stats.reasons
    );
}

#[test]
fn candidate_versions_map_to_source_versions() {
    let c = |i, s, cand| candidate_source_version(Ecosystem::Deb, i, s, cand);
    assert_eq!(
        c("5.2.15-2+b8", "5.2.15-2", "5.2.15-2+deb12u1"),
        "5.2.15-2+deb12u1"
    );
    assert_eq!(c("5.2.15-2+b8", "5.2.15-2", "5.2.15-2+b9"), "5.2.15-2");
    assert_eq!(
        c(
            "1:2.38.1-5+deb12u3",
            "2.38.1-5+deb12u3",
            "1:2.38.1-5+deb12u4"
        ),
        "2.38.1-5+deb12u4"
    );
    assert_eq!(c("4:12.2.0-3", "1.203", "4:12.2.0-4"), "4:12.2.0-4");
    assert_eq!(
        candidate_source_version(Ecosystem::Rpm, "1:1.0-1", "1:1.0-1", "1:1.0-2"),
        "1:1.0-2"
    );
}

#[test]
fn hosts_outside_the_supported_ecosystems_say_why() {
    let alpine = host(
        "a",
        os("alpine", "3.20.0", None),
        PackageManager::Apt,
        &[("musl", "1.2.5-r0", None)],
        &[],
        &[],
    );
    let a = findings_of(all_records(), vec![alpine]);
    let h = a.host("a").unwrap();
    assert!(h.ecosystem.is_none());
    assert!(h
        .not_assessed
        .as_deref()
        .unwrap()
        .contains("os-release ID `alpine`"));
}

#[test]
fn store_imports_replace_and_name_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/advisories.db");
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().unwrap().records, 0);
    let t = "2026-03-10T00:00:00Z".parse().unwrap();
    let tracker = read_path(&fixture("debian-tracker.json"), None).unwrap();
    let osv = read_path(&fixture("osv"), None).unwrap();
    let info = store.replace(&tracker, t).unwrap();
    assert_eq!(info.format, "debian-tracker");
    store.replace(&osv, t).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.records, tracker.records.len() + osv.records.len());
    assert_eq!(snap.imports.len(), 2);
    assert!(
        snap.id.starts_with("sha256:") && snap.id.len() == 23,
        "{}",
        snap.id
    );
    // Re-importing the same data replaces, never duplicates, and keeps the id.
    store.replace(&osv, t).unwrap();
    let again = store.snapshot().unwrap();
    assert_eq!((again.records, &again.id), (snap.records, &snap.id));
    // Reading back gives the same records; a filter by ecosystem keeps release-less ones.
    let mut back = store.records(None).unwrap();
    let mut want = all_records();
    back.sort_by(|a, b| (&a.id, &a.ecosystem, &a.package).cmp(&(&b.id, &b.ecosystem, &b.package)));
    want.sort_by(|a, b| (&a.id, &a.ecosystem, &a.package).cmp(&(&b.id, &b.ecosystem, &b.package)));
    assert_eq!(back, want);
    let only: std::collections::BTreeSet<String> = ["Ubuntu:22.04:LTS".to_string()].into();
    let ubuntu = store.records(Some(&only)).unwrap();
    assert_eq!(ubuntu.len(), 1);
    // Another process sees the same snapshot.
    drop(store);
    let reopened = Store::open_existing(&path).unwrap().unwrap();
    assert_eq!(reopened.snapshot().unwrap().id, snap.id);
    assert!(Store::open_existing(&dir.path().join("missing.db"))
        .unwrap()
        .is_none());
    let mut reopened = reopened;
    assert!(reopened.forget(&osv.source.to_string_lossy()).unwrap());
    assert_ne!(reopened.snapshot().unwrap().id, snap.id);
}

fn valid_fleet(files: &[(&str, &str)]) -> crate::validate::ValidFleet {
    let mut f = crate::fleet::Fleet::default();
    let mut diags = Vec::new();
    for (path, text) in files {
        crate::fleet::add_file(&mut f, &mut diags, Path::new(path), text);
    }
    let out = crate::validate::validate_fleet(f, diags);
    out.fleet.unwrap_or_else(|| panic!("{:?}", out.diagnostics))
}

#[test]
fn exceptions_apply_by_host_advisory_package_and_expiry() {
    let fleet = valid_fleet(&[
        (
            "inventory.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {name: inv}\nspec:\n  groups: [{name: web}, {name: db}]\n  hosts:\n    - {name: deb-1, address: 10.0.0.1, groups: [web]}\n",
        ),
        (
            "exceptions.yaml",
            "apiVersion: patchkeeper.dev/v1\nkind: VulnerabilityException\nmetadata: {name: bash-accepted}\nspec:\n  advisories: [cve-2026-1002]\n  packages: [bash]\n  owner: alice\n  reason: no untrusted prompts\n  expires: 2026-03-20\n---\napiVersion: patchkeeper.dev/v1\nkind: VulnerabilityException\nmetadata: {name: db-only}\nspec:\n  advisories: [CVE-2026-1001]\n  selector: {groups: [db]}\n  owner: bob\n  reason: only on databases\n  expires: 2099-01-01T00:00:00Z\n",
        ),
    ]);
    let observed = ObservedFleet::new("2026-03-10T00:00:00Z".into(), vec![debian_host()]);
    let index = Index::build(all_records(), None);
    let excepted = |now: &str| -> Vec<(String, Option<String>)> {
        let mut a = assess(&index, &observed, &BTreeMap::new());
        super::fleet::apply_exceptions(&mut a, &fleet, now.parse().unwrap());
        a.host("deb-1")
            .unwrap()
            .findings
            .iter()
            .filter(|f| matches!(f.id(), "CVE-2026-1002" | "DSA-5800-1"))
            .map(|f| {
                (
                    f.id().to_owned(),
                    f.exception
                        .as_ref()
                        .map(|e| format!("{} {}", e.name, e.expires)),
                )
            })
            .collect()
    };
    // Matched case-insensitively, through the CVE; the DSA's exception selects other hosts.
    assert_eq!(
        excepted("2026-03-10T00:00:00Z"),
        [
            ("DSA-5800-1".to_owned(), None),
            (
                "CVE-2026-1002".to_owned(),
                Some("bash-accepted 2026-03-21T00:00:00Z".to_owned())
            ),
        ]
    );
    // A date expires at the end of that day.
    assert_eq!(excepted("2026-03-21T00:00:00Z")[1].1, None);
    let warn = |now: &str| -> Vec<String> {
        crate::validate::exception_expiry(fleet.fleet(), now.parse().unwrap())
            .iter()
            .map(|d| format!("{} {}", d.code.as_str(), d.message))
            .collect()
    };
    assert_eq!(
        warn("2026-03-10T00:00:00Z"),
        ["exception-expiring exception `bash-accepted` (owner alice) expires at 2026-03-21T00:00:00Z, in 11d: renew it or fix the advisories"]
    );
    assert!(warn("2026-03-01T00:00:00Z").is_empty());
    assert_eq!(
        warn("2026-03-22T00:00:00Z"),
        ["exception-expired exception `bash-accepted` (owner alice) expired at 2026-03-21T00:00:00Z: its advisories count against their deadlines again"]
    );
}

/// Property: the shared fast path ([`assess`]: hosts grouped by package list, each source
/// unit matched once across hosts) finds exactly what matching every host on its own
/// ([`assess_per_host`]) finds, on fleets with repeated and near-repeated hosts, both
/// orderings, binNMU and epoch versions, merged ids and unreachable or unknown hosts.
mod fast_path {
    use super::*;
    use crate::advisory::matcher::{assess_grouped, assess_per_host};
    use proptest::prelude::*;

    const NAMES: &[&str] = &["a", "b", "c", "d"];
    const VERSIONS: &[&str] = &["1.0-1", "1.1-1", "1.2-1", "2.0-1", "1:0.9-1", "1.0-1+b1"];
    const IDS: &[&str] = &["CVE-2026-1", "CVE-2026-2", "DSA-1-1", "DEBIAN-CVE-2026-1"];

    fn record() -> impl Strategy<Value = Record> {
        let event = prop_oneof![
            (0..VERSIONS.len()).prop_map(|v| Event::Introduced(VERSIONS[v].into())),
            Just(Event::Introduced("0".into())),
            (0..VERSIONS.len()).prop_map(|v| Event::Fixed(VERSIONS[v].into())),
            (0..VERSIONS.len()).prop_map(|v| Event::LastAffected(VERSIONS[v].into())),
        ];
        let affected = prop_oneof![
            (
                proptest::collection::vec(proptest::collection::vec(event, 1..4), 0..3),
                proptest::collection::vec(0..VERSIONS.len(), 0..2),
            )
                .prop_map(|(ranges, versions)| Affected::Ranges {
                    ranges,
                    versions: versions.into_iter().map(|v| VERSIONS[v].into()).collect(),
                }),
            Just(Affected::Unfixed {
                state: Unfixed::NoDsa,
                note: None,
            }),
        ];
        (
            0..IDS.len(),
            any::<bool>(),
            0..NAMES.len(),
            affected,
            0..4usize,
        )
            .prop_map(|(id, rpm, name, affected, sev)| Record {
                id: IDS[id].into(),
                cves: if IDS[id].starts_with("CVE-") {
                    vec![IDS[id].into()]
                } else {
                    vec!["CVE-2026-1".into(), "CVE-2026-2".into()]
                },
                ecosystem: if rpm { "AlmaLinux:9" } else { "Debian:12" }.into(),
                package: NAMES[name].into(),
                affected,
                severity: [
                    Severity::Low,
                    Severity::Medium,
                    Severity::High,
                    Severity::Critical,
                ][sev],
                summary: String::new(),
                modified: None,
                origin: Origin::Osv,
            })
    }

    /// A package list: per name, absent or (version, maybe a source of another name and
    /// version).
    type Image = Vec<Option<(usize, Option<(usize, usize)>)>>;

    fn image() -> impl Strategy<Value = Image> {
        proptest::collection::vec(
            proptest::option::of((
                0..VERSIONS.len(),
                proptest::option::of((0..NAMES.len(), 0..VERSIONS.len())),
            )),
            NAMES.len(),
        )
    }

    /// A host: an image (shared by index, so hosts repeat), maybe one package changed (to
    /// a version, maybe built from another package's source: near-repeated hosts then
    /// share some source units and differ in others), its OS (Debian, AlmaLinux,
    /// unknown), reachability, pending and held updates.
    type HostSpec = (
        usize,
        Option<(usize, usize, Option<(usize, usize)>)>,
        u8,
        bool,
        Vec<(usize, usize, bool)>,
    );

    fn host_spec() -> impl Strategy<Value = HostSpec> {
        (
            0..3usize,
            proptest::option::of((
                0..NAMES.len(),
                0..VERSIONS.len(),
                proptest::option::of((0..NAMES.len(), 0..VERSIONS.len())),
            )),
            0..3u8,
            proptest::bool::weighted(0.9),
            proptest::collection::vec((0..NAMES.len(), 0..VERSIONS.len(), any::<bool>()), 0..3),
        )
    }

    /// An installed package as [`Pkg`], owning its strings.
    type OwnedPkg = (String, String, Option<(String, String)>);

    fn build(i: usize, images: &[Image], spec: &HostSpec) -> ObservedHost {
        let (img, change, os_kind, reachable, updates) = spec;
        let mut packages = images[*img].clone();
        if let Some((n, v, src)) = change {
            packages[*n] = Some((*v, *src));
        }
        let owned: Vec<OwnedPkg> = packages
            .iter()
            .enumerate()
            .filter_map(|(n, p)| {
                let (v, src) = (*p)?;
                Some((
                    NAMES[n].to_owned(),
                    VERSIONS[v].to_owned(),
                    src.map(|(s, sv)| (NAMES[s].to_owned(), VERSIONS[sv].to_owned())),
                ))
            })
            .collect();
        let installed: Vec<Pkg<'_>> = owned
            .iter()
            .map(|(n, v, s)| {
                (
                    n.as_str(),
                    v.as_str(),
                    s.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                )
            })
            .collect();
        let pending = |held: bool| -> Vec<(&str, &str, &str)> {
            updates
                .iter()
                .filter(|u| u.2 == held)
                .map(|(n, v, _)| (NAMES[*n], "1.0-1", VERSIONS[*v]))
                .collect()
        };
        let (osinfo, pm) = match os_kind {
            0 => (os("debian", "12", Some("bookworm")), PackageManager::Apt),
            1 => (os("almalinux", "9.4", None), PackageManager::Dnf),
            _ => (os("plan9", "4", None), PackageManager::Apt),
        };
        let mut h = host(
            &format!("h{i:02}"),
            osinfo,
            pm,
            &installed,
            &pending(false),
            &pending(true),
        );
        if !reachable {
            h.status = HostStatus::Unreachable {
                reason: crate::observed::FailureReason::Refused {
                    address: "192.0.2.1:22".into(),
                },
            };
        }
        h
    }

    /// Two hosts whose lists differ only in one source's version (100 sources, so chunks
    /// hold several): every other source's findings are the very same shared cores, the
    /// differing source's are matched apart with each host's version, and everything equals
    /// matching each host on its own.
    #[test]
    fn hosts_differing_in_one_source_share_the_others() {
        let names: Vec<String> = (0..100).map(|s| format!("src{s:03}")).collect();
        let records: Vec<Record> = names
            .iter()
            .map(|n| Record {
                id: format!("CVE-2026-{n}"),
                cves: vec![format!("CVE-2026-{n}")],
                ecosystem: "Debian:12".into(),
                package: n.clone(),
                affected: Affected::Ranges {
                    ranges: vec![vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("3.0-1".into()),
                    ]],
                    versions: vec![],
                },
                severity: Severity::High,
                summary: String::new(),
                modified: None,
                origin: Origin::DebianTracker,
            })
            .collect();
        let bins: Vec<(String, String)> = names
            .iter()
            .flat_map(|n| {
                [
                    (format!("{n}-bin"), n.clone()),
                    (format!("lib{n}"), n.clone()),
                ]
            })
            .collect();
        let make = |name: &str, odd: &str| {
            let pkgs: Vec<Pkg<'_>> = bins
                .iter()
                .map(|(b, s)| {
                    let v = if s == "src042" { odd } else { "1.0-1" };
                    (b.as_str(), v, Some((s.as_str(), v)))
                })
                .collect();
            host(
                name,
                os("debian", "12", Some("bookworm")),
                PackageManager::Apt,
                &pkgs,
                &[],
                &[],
            )
        };
        let fleet = ObservedFleet::new(
            "2026-03-10T00:00:00Z".into(),
            vec![make("one", "1.0-1"), make("two", "2.0-1")],
        );
        let index = Index::build(records, None);
        let overrides = BTreeMap::new();
        let fast = assess(&index, &fleet, &overrides);
        assert_eq!(
            said(&fast),
            said(&assess_per_host(&index, &fleet, &overrides))
        );
        let (one, two) = (&fast.hosts["one"].findings, &fast.hosts["two"].findings);
        assert_eq!(one.len(), 100);
        assert_eq!(two.len(), 100);
        for (a, b) in one.iter().zip(two) {
            assert_eq!(a.source, b.source);
            if a.source == "src042" {
                assert!(!std::sync::Arc::ptr_eq(&a.core, &b.core));
                assert_eq!(
                    (a.source_version.as_str(), b.source_version.as_str()),
                    ("1.0-1", "2.0-1")
                );
            } else {
                assert!(
                    std::sync::Arc::ptr_eq(&a.core, &b.core),
                    "{} not shared",
                    a.source
                );
            }
        }
    }

    /// What a finding says, comparable across assessments.
    fn said(a: &super::super::Assessment) -> Vec<String> {
        a.hosts
            .iter()
            .map(|(name, h)| {
                let findings: Vec<String> = h
                    .findings
                    .iter()
                    .map(|f| format!("{:?} {:?} {:?} {:?}", f.core, f.state, f.offer, f.exception))
                    .collect();
                format!(
                    "{name} {:?} {:?} {findings:?}",
                    h.ecosystem.as_ref().map(|e| &e.name),
                    h.not_assessed
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn shared_findings_equal_per_host_findings(
            records in proptest::collection::vec(record(), 0..12),
            images in proptest::collection::vec(image(), 3),
            specs in proptest::collection::vec(host_spec(), 1..12),
        ) {
            let hosts: Vec<ObservedHost> =
                specs.iter().enumerate().map(|(i, s)| build(i, &images, s)).collect();
            let fleet = ObservedFleet::new("2026-03-10T00:00:00Z".into(), hosts);
            let index = Index::build(records, None);
            let overrides = BTreeMap::new();
            let fast = assess(&index, &fleet, &overrides);
            let plain = assess_per_host(&index, &fleet, &overrides);
            prop_assert_eq!(said(&fast), said(&plain));
            // Every host's hash colliding: unequal package lists must still not share.
            let collided = assess_grouped(&index, &fleet, &overrides, |_| 0, |h| h);
            prop_assert_eq!(said(&collided), said(&plain));
            // Every source unit's hash colliding: units of unequal binary lists must not
            // share their cores either (alone, and with the hosts' collisions).
            let units = assess_grouped(&index, &fleet, &overrides, |_| 0, |_| 7);
            prop_assert_eq!(said(&units), said(&plain));
        }
    }
}
