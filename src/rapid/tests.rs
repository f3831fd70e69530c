use super::*;
use crate::model::{PackageRequirement, Selector};
use crate::policy::Policy;

fn q(id: &str, hosts: &[&str]) -> Qualifying {
    Qualifying {
        advisory: id.into(),
        cves: vec!["CVE-2026-9001".into()],
        severity: Severity::Critical,
        summary: "remote code execution".into(),
        sources: ["openssl".to_owned()].into(),
        hosts: hosts
            .iter()
            .map(|h| {
                (
                    (*h).to_owned(),
                    [("libssl3".to_owned(), "3.0.15-1~deb12u1".to_owned())].into(),
                )
            })
            .collect(),
        ordering: Some(crate::version::Ecosystem::Deb),
        name: request_name(id),
    }
}

fn settings() -> RapidResponseSettings {
    RapidResponseSettings {
        window: Some("urgent".into()),
        ..Default::default()
    }
}

fn now() -> Timestamp {
    "2026-12-01T00:00:00Z".parse().expect("ts")
}

fn spec(hosts: &[&str], advisories: &[&str], by: Option<&str>) -> PatchRequestSpec {
    PatchRequestSpec {
        selector: Selector {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..Default::default()
        },
        packages: vec![PackageRequirement {
            name: "libssl3".into(),
            min_version: Some("3.0.15-1~deb12u1".into()),
        }],
        reason: "x".into(),
        requested_by: by.map(str::to_owned),
        advisories: advisories.iter().map(|a| (*a).to_owned()).collect(),
        deadline: Some("2026-12-08T00:00:00Z".into()),
        window: Some("urgent".into()),
        rollout: None,
    }
}

#[test]
fn names_are_branch_and_file_safe() {
    assert_eq!(request_name("CVE-2026-1234"), "cve-2026-1234");
    assert_eq!(request_name("ALSA-2026:1234"), "alsa-2026-1234");
    assert_eq!(request_name("DSA-5800-1"), "dsa-5800-1");
    assert!(crate::request::valid_name(&request_name(
        "Rocky Linux..x:1"
    )));
}

#[test]
fn a_new_advisory_is_proposed_for_exactly_its_hosts_and_fixed_versions() {
    let out = decide(
        &[q("DSA-6000-1", &["web-2", "web-1"])],
        Existing {
            merged: &[],
            open: &[],
        },
        &settings(),
        &Policy::builtin(),
        now(),
    );
    let [Proposal::New { name, document, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(name, "dsa-6000-1");
    assert_eq!(
        document,
        &json!({
            "apiVersion": "patchkeeper.dev/v1",
            "kind": "PatchRequest",
            "metadata": {"name": "dsa-6000-1"},
            "spec": {
                "selector": {"hosts": ["web-1", "web-2"]},
                "packages": [{"name": "libssl3", "minVersion": "3.0.15-1~deb12u1"}],
                "reason": "critical DSA-6000-1 in openssl: remote code execution (rapid response)",
                "requestedBy": "patchkeeper",
                "advisories": ["DSA-6000-1", "CVE-2026-9001"],
                // The built-in policy: critical advisories within 7 days.
                "deadline": "2026-12-08T00:00:00Z",
                "window": "urgent",
            }
        })
    );
}

#[test]
fn an_open_or_merged_advisory_is_not_proposed_again() {
    let open = [SubmittedRequest {
        name: "dsa-6000-1".into(),
        branch: "patchkeeper/requests/dsa-6000-1".into(),
        commit: "abc".into(),
        spec: spec(&["web-1", "web-2"], &["DSA-6000-1"], Some("patchkeeper")),
        requested_by: None,
    }];
    let qs = [q("DSA-6000-1", &["web-1", "web-2"])];
    let none = Existing {
        merged: &[],
        open: &open,
    };
    assert!(decide(&qs, none, &settings(), &Policy::builtin(), now()).is_empty());
    let merged = [(
        "anything".to_owned(),
        spec(&["web-1"], &["dsa-6000-1"], Some("alice")),
    )];
    let m = Existing {
        merged: &merged,
        open: &[],
    };
    // Listed by a merged request (any name, any case): the loop applies it as usual.
    assert!(decide(&qs, m, &settings(), &Policy::builtin(), now()).is_empty());
}

#[test]
fn hosts_that_gain_the_finding_are_added_to_the_open_proposal() {
    let open = [SubmittedRequest {
        name: "dsa-6000-1".into(),
        branch: "patchkeeper/requests/dsa-6000-1".into(),
        commit: "abc".into(),
        spec: spec(&["web-1"], &["DSA-6000-1"], Some("patchkeeper")),
        requested_by: None,
    }];
    let out = decide(
        &[q("DSA-6000-1", &["web-1", "web-3"])],
        Existing {
            merged: &[],
            open: &open,
        },
        &settings(),
        &Policy::builtin(),
        "2026-12-03T00:00:00Z".parse().expect("ts"),
    );
    let [Proposal::AddHosts {
        tip,
        added,
        document,
        ..
    }] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(tip, "abc");
    assert_eq!(added, &["web-3"]);
    assert_eq!(
        document["spec"]["selector"]["hosts"],
        json!(["web-1", "web-3"])
    );
    // The deadline is the first proposal's, not moved by the amendment.
    assert_eq!(document["spec"]["deadline"], json!("2026-12-08T00:00:00Z"));
}

#[test]
fn a_persons_request_for_the_advisory_is_left_to_them() {
    let open = [SubmittedRequest {
        name: "openssl-fix".into(),
        branch: "patchkeeper/requests/openssl-fix".into(),
        commit: "abc".into(),
        spec: spec(&["web-1"], &["DSA-6000-1"], Some("alice")),
        requested_by: Some("alice".into()),
    }];
    let out = decide(
        &[q("DSA-6000-1", &["web-1", "web-3"])],
        Existing {
            merged: &[],
            open: &open,
        },
        &settings(),
        &Policy::builtin(),
        now(),
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_deadline_follows_the_severity_rule() {
    let p = Policy::builtin();
    assert_eq!(
        deadline(&p, Severity::High, now()).map(|t| t.to_string()),
        Some("2026-12-31T00:00:00Z".into())
    );
    assert_eq!(deadline(&p, Severity::Low, now()), None);
}

/// One family's part of an advisory spanning Debian and RPM hosts (`CVE-…-deb`).
fn part(id: &str, family: crate::version::Ecosystem, hosts: &[&str]) -> Qualifying {
    let mut p = q(id, hosts);
    p.ordering = Some(family);
    p.name = format!("{}-{}", request_name(id), family.as_str());
    p
}

#[test]
fn each_family_part_of_an_advisory_is_its_own_request() {
    use crate::version::Ecosystem::{Deb, Rpm};
    let qs = [
        part("CVE-2026-7777", Deb, &["web-1"]),
        part("CVE-2026-7777", Rpm, &["db-1"]),
    ];
    let none = Existing {
        merged: &[],
        open: &[],
    };
    let out = decide(&qs, none, &settings(), &Policy::builtin(), now());
    let names: Vec<(&str, &Value)> = out
        .iter()
        .map(|p| (p.name(), &p.document()["spec"]["selector"]["hosts"]))
        .collect();
    assert_eq!(
        names,
        [
            ("cve-2026-7777-deb", &json!(["web-1"])),
            ("cve-2026-7777-rpm", &json!(["db-1"]))
        ]
    );
    assert!(out.iter().all(|p| crate::request::valid_name(p.name())));

    // A merged request listing the advisory covers the part whose hosts it names (the
    // Debian one here); the RPM part is still proposed.
    let merged = [(
        "by-hand".to_owned(),
        spec(&["web-1"], &["CVE-2026-7777"], Some("alice")),
    )];
    let m = Existing {
        merged: &merged,
        open: &[],
    };
    let out = decide(&qs, m, &settings(), &Policy::builtin(), now());
    let names: Vec<&str> = out.iter().map(Proposal::name).collect();
    assert_eq!(names, ["cve-2026-7777-rpm"]);

    // The open proposal of one part is that part's, not the other's.
    let open = [SubmittedRequest {
        name: "cve-2026-7777-rpm".into(),
        branch: "patchkeeper/requests/cve-2026-7777-rpm".into(),
        commit: "abc".into(),
        spec: spec(&["db-1"], &["CVE-2026-7777"], Some("patchkeeper")),
        requested_by: None,
    }];
    let o = Existing {
        merged: &[],
        open: &open,
    };
    let out = decide(&qs, o, &settings(), &Policy::builtin(), now());
    let names: Vec<&str> = out.iter().map(Proposal::name).collect();
    assert_eq!(names, ["cve-2026-7777-deb"]);
}
