//! The synthetic observed fleet the benchmarks share: N Debian hosts, each with 1,500
//! installed packages and 50 pending updates (a third of them security).

use patchkeeper::model::PackageManager;
use patchkeeper::observed::{
    HostStatus, InstalledPackage, ObservedFleet, ObservedHost, PendingUpdate,
};

/// Installed packages per host.
pub const PACKAGES: usize = 1_500;
/// Pending updates per host.
pub const UPDATES: usize = 50;

/// `hosts` hosts named `host-00000`…, observed at 2026-11-29T01:00:00Z.
pub fn observed(hosts: usize) -> ObservedFleet {
    let hosts = (0..hosts)
        .map(|i| {
            let mut h = ObservedHost::new(format!("host-{i:05}"), HostStatus::Reachable);
            h.package_manager = Some(PackageManager::Apt);
            h.boot_id = Some(format!("boot-{i}"));
            h.installed = (0..PACKAGES)
                .map(|p| InstalledPackage {
                    name: format!("pkg-{p:04}").into(),
                    version: format!("1.{}-1", p % 7).into(),
                    arch: "amd64".into(),
                    status: "ii".into(),
                })
                .collect();
            h.updates = (0..UPDATES)
                .map(|u| {
                    let p = (u * 29 + i) % PACKAGES;
                    PendingUpdate {
                        name: format!("pkg-{p:04}"),
                        arch: "amd64".into(),
                        installed_version: Some(format!("1.{}-1", p % 7)),
                        candidate_version: format!("1.{}-2", p % 7),
                        origin: if u % 3 == 0 {
                            "Debian-Security:12/bookworm-security".into()
                        } else {
                            "Debian:12/stable".into()
                        },
                        security: u % 3 == 0,
                        advisories: vec![],
                    }
                })
                .collect();
            h.normalize();
            h
        })
        .collect();
    ObservedFleet::new("2026-11-29T01:00:00Z".into(), hosts)
}
