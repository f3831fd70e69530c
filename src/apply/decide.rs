//! Pure decisions of the executor: the commands it sends, how it reads their results, when a
//! rollout halts, what a drifted host changed. No I/O here; `host.rs` and `run.rs` act on
//! these answers.

use std::collections::BTreeMap;

use crate::model::{HostCount, PackageManager, RebootPolicy};
use crate::observed::{InstalledPackage, ObservedHost};
use crate::package::{self, InvalidPackageArg};
use crate::plan::{Change, HostPlan};
use crate::transport::shell_quote;

/// Versions by package name (`None`: not installed).
pub type Versions = BTreeMap<String, Option<String>>;

/// The package-manager command that installs exactly the planned versions, non-interactively
/// and keeping existing configuration files. Only the requested changes are named
/// ([`crate::plan::requested`]); the dependencies the plan lists come with them, as the dry
/// run showed, and are verified afterwards like the rest. `lock_wait_secs` lets apt wait for
/// a lock taken between our readiness check and the transaction.
///
/// Every name and version is checked against the host's grammar ([`crate::package`]) and
/// the package arguments follow `--`, so none can be read as an option (apt reads `-o…`
/// among package arguments otherwise); each is shell-quoted.
pub fn install_command(
    pm: PackageManager,
    changes: &[Change],
    lock_wait_secs: u64,
) -> Result<String, InvalidPackageArg> {
    let requested = crate::plan::requested(changes);
    let pkgs = requested
        .iter()
        .map(|(package, to)| package::exact(pm, package, to).map(|a| shell_quote(&a)))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(match pm {
        PackageManager::Apt => format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout={lock_wait_secs} -- {}",
            pkgs.join(" ")
        ),
        PackageManager::Dnf => format!("dnf install -y -q -- {}", pkgs.join(" ")),
    })
}

/// What repairs a package database an interrupted transaction left unfinished: dpkg
/// configures what it unpacked; dnf removes the older of duplicated versions (reinstalling
/// the newer one).
pub fn repair_command(pm: PackageManager) -> &'static str {
    match pm {
        PackageManager::Apt => "DEBIAN_FRONTEND=noninteractive dpkg --force-confold --configure -a",
        PackageManager::Dnf => "dnf -y -q remove --duplicates",
    }
}

/// What a rollback has to do: packages to put back at their old version, packages the
/// transaction newly installed (to remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackSteps {
    /// (package, old version) to put back: still installed at another version (or broken).
    pub restore: Vec<(String, String)>,
    /// (package, old version) the transaction removed: to install again.
    pub reinstall: Vec<(String, String)>,
    /// Packages that were not installed before.
    pub remove: Vec<String>,
}

impl RollbackSteps {
    /// Nothing changed: nothing to undo.
    pub fn is_empty(&self) -> bool {
        self.restore.is_empty() && self.reinstall.is_empty() && self.remove.is_empty()
    }
}

/// Compares the versions recorded before the transaction with the state after it (which may
/// include packages the package manager pulled in beyond the plan).
pub fn rollback_steps(before: &Versions, after: &[InstalledPackage]) -> RollbackSteps {
    let mut steps = RollbackSteps::default();
    let after: BTreeMap<&str, &InstalledPackage> =
        after.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, old) in before {
        let now = after.get(name.as_str());
        match (old, now) {
            (Some(old), Some(now)) if now.version == *old && status_ok(&now.status) => {}
            (Some(old), Some(_)) => steps.restore.push((name.clone(), old.clone())),
            (Some(old), None) => steps.reinstall.push((name.clone(), old.clone())),
            (None, Some(_)) => steps.remove.push(name.clone()),
            (None, None) => {}
        }
    }
    steps
}

/// Packages installed after the transaction that were not there before (dependencies the
/// package manager pulled in): they are recorded too, so a rollback removes them.
pub fn new_packages(before: &[InstalledPackage], after: &[InstalledPackage]) -> Vec<String> {
    after
        .iter()
        .filter(|a| !before.iter().any(|b| b.name == a.name))
        .map(|a| a.name.to_string())
        .collect()
}

/// Packages whose version changed between two snapshots (the transaction's real footprint).
pub fn changed_packages(before: &[InstalledPackage], after: &[InstalledPackage]) -> Vec<String> {
    let mut names: Vec<String> = after
        .iter()
        .filter(|a| {
            before
                .iter()
                .find(|b| b.name == a.name)
                .is_none_or(|b| b.version != a.version)
        })
        .map(|a| a.name.to_string())
        .collect();
    names.extend(
        before
            .iter()
            .filter(|b| !after.iter().any(|a| a.name == b.name))
            .map(|b| b.name.to_string()),
    );
    names.sort();
    names.dedup();
    names
}

/// The command that undoes a transaction (names and versions checked, after `--`, quoted:
/// see [`install_command`]).
pub fn rollback_command(
    pm: PackageManager,
    steps: &RollbackSteps,
    lock_wait_secs: u64,
) -> Result<String, InvalidPackageArg> {
    let exact = |list: &[(String, String)]| -> Result<Vec<String>, InvalidPackageArg> {
        list.iter()
            .map(|(p, v)| package::exact(pm, p, v).map(|a| shell_quote(&a)))
            .collect()
    };
    let names = |list: &[String], suffix: &str| -> Result<Vec<String>, InvalidPackageArg> {
        list.iter()
            .map(|p| package::name(pm, p).map(|n| shell_quote(&format!("{n}{suffix}"))))
            .collect()
    };
    Ok(match pm {
        PackageManager::Apt => {
            let mut args = exact(&steps.restore)?;
            args.extend(exact(&steps.reinstall)?);
            // apt-get removes a package named with a trailing `-` in the same transaction.
            args.extend(names(&steps.remove, "-")?);
            format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout={lock_wait_secs} -- {}",
                args.join(" ")
            )
        }
        PackageManager::Dnf => {
            let mut parts = Vec::new();
            // Plans only upgrade, so a package still installed goes back with `downgrade`; one
            // the transaction removed comes back with `install`.
            if !steps.restore.is_empty() {
                parts.push(format!(
                    "dnf downgrade -y -q -- {}",
                    exact(&steps.restore)?.join(" ")
                ));
            }
            if !steps.reinstall.is_empty() {
                parts.push(format!(
                    "dnf install -y -q -- {}",
                    exact(&steps.reinstall)?.join(" ")
                ));
            }
            if !steps.remove.is_empty() {
                parts.push(format!(
                    "dnf remove -y -q -- {}",
                    names(&steps.remove, "")?.join(" ")
                ));
            }
            parts.join(" && ")
        }
    })
}

/// The integrity check of the named packages (`dpkg --verify` / `rpm -V`, names checked,
/// after `--`, quoted); exit 0 means every file matches the package database.
pub fn verify_command(
    pm: PackageManager,
    packages: &[String],
) -> Result<String, InvalidPackageArg> {
    let pkgs = packages
        .iter()
        .map(|p| package::name(pm, p).map(|n| shell_quote(&n)))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(match pm {
        PackageManager::Apt => format!("dpkg --verify -- {}", pkgs.join(" ")),
        PackageManager::Dnf => format!("rpm -V -- {}", pkgs.join(" ")),
    })
}

/// The query that lists installed packages in the driver's formats (parsed by
/// `driver::apt::parse_dpkg_query` / `driver::dnf::parse_rpm_qa`).
pub fn installed_query(pm: PackageManager) -> &'static str {
    match pm {
        PackageManager::Apt => {
            r"dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n'"
        }
        PackageManager::Dnf => {
            r"rpm -qa --qf '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n'"
        }
    }
}

/// dpkg's `ii`, rpm's `installed`: fully installed and configured.
pub fn status_ok(status: &str) -> bool {
    let s = status.trim();
    s == "installed" || s.get(1..2) == Some("i") && s.len() == 2
}

/// Checks installed versions against the plan: one message per planned package that is not
/// installed at exactly the planned version in a healthy state.
pub fn version_mismatches(changes: &[Change], installed: &[InstalledPackage]) -> Vec<String> {
    let mut out = Vec::new();
    for c in changes {
        match installed.iter().find(|p| p.name == c.package) {
            None => out.push(format!("{} is not installed (planned {})", c.package, c.to)),
            Some(p) if p.version != c.to => out.push(format!(
                "{} is at {} (planned {})",
                c.package, p.version, c.to
            )),
            Some(p) if !status_ok(&p.status) => out.push(format!(
                "{} {} is in state `{}`, not fully installed",
                c.package, p.version, p.status
            )),
            Some(_) => {}
        }
    }
    out
}

/// Checks a rollback: every restored package at its old version, every removed one gone.
pub fn rollback_mismatches(steps: &RollbackSteps, installed: &[InstalledPackage]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, old) in steps.restore.iter().chain(&steps.reinstall) {
        match installed.iter().find(|p| p.name == name) {
            Some(p) if p.version == old && status_ok(&p.status) => {}
            Some(p) => out.push(format!(
                "{name} is at {} in state `{}` (expected {old})",
                p.version, p.status
            )),
            None => out.push(format!("{name} is not installed (expected {old})")),
        }
    }
    for name in &steps.remove {
        if installed.iter().any(|p| p.name == name) {
            out.push(format!("{name} is still installed"));
        }
    }
    out
}

/// When the package manager says the versions to go back to cannot be had, the packages it
/// names (empty: the failure is something else).
pub fn unobtainable(pm: PackageManager, output: &str, wanted: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    // No repository at all: nothing can be downloaded.
    if pm == PackageManager::Dnf && output.contains("There are no enabled repositories") {
        return wanted.to_vec();
    }
    for line in output.lines() {
        let line = line.trim();
        match pm {
            // E: Version '1.0-1' for 'libpk' was not found
            PackageManager::Apt => {
                if let Some(rest) = line.strip_prefix("E: Version '") {
                    if line.ends_with("was not found") {
                        let mut q = rest.split('\'');
                        let version = q.next().unwrap_or_default();
                        let name = q.nth(1).unwrap_or_default();
                        out.push(format!("{name}={version}"));
                    }
                }
            }
            // No match for argument: libpk-1.0-1 / No package libpk-1.0-1 available.
            PackageManager::Dnf => {
                if let Some(rest) = line.strip_prefix("No match for argument: ") {
                    out.push(rest.trim().to_string());
                } else if let Some(rest) = line.strip_prefix("No package ") {
                    if let Some(name) = rest.strip_suffix(" available.") {
                        out.push(name.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Whether to reboot after a successful transaction.
pub fn should_reboot(policy: RebootPolicy, host_requires: bool) -> bool {
    match policy {
        RebootPolicy::Never => false,
        RebootPolicy::IfRequired => host_requires,
        RebootPolicy::Always => true,
    }
}

/// The failure budget is spent when failures exceed it: a budget of 1 tolerates one failure
/// and halts the rollout at the second.
pub fn budget_exceeded(budget: Option<&HostCount>, rollout_hosts: usize, failures: usize) -> bool {
    let allowed = budget.map_or(0, |b| b.of(rollout_hosts));
    failures > allowed
}

/// What changed on a host since the plan was computed, for a refusal message. The plan keeps
/// only the fingerprint and each change's `from`, so versions are named exactly and anything
/// else is summarised.
pub fn describe_drift(plan: &HostPlan, now: &ObservedHost) -> Vec<String> {
    let mut out = Vec::new();
    for c in &plan.changes {
        let current = now
            .installed_package(&c.package)
            .map(|p| p.version.to_string());
        if current != c.from {
            out.push(format!(
                "{} is now {} (planned from {})",
                c.package,
                current.as_deref().unwrap_or("not installed"),
                c.from.as_deref().unwrap_or("not installed")
            ));
        }
        if !now
            .updates
            .iter()
            .any(|u| u.name == c.package && u.candidate_version == c.to)
            && current.as_deref() != Some(c.to.as_str())
        {
            out.push(format!("{} {} is no longer offered", c.package, c.to));
        }
    }
    if out.is_empty() {
        out.push(
            "the installed packages, pending updates, holds or boot id differ from what the plan was computed from"
                .to_string(),
        );
    }
    out
}

/// Lines of `dpkg --verify` / `rpm -V` output that are real problems: every line except those
/// about configuration files (marked `c`), which admins may change.
pub fn integrity_problems(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_config_line(l))
        .map(str::to_owned)
        .collect()
}

/// Whether the output mentions configuration files.
pub fn has_config_lines(output: &str) -> bool {
    output.lines().any(is_config_line)
}

fn is_config_line(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    fields.next();
    fields.next() == Some("c")
}

/// Free space in MiB from `df -Pk DIR` output (the last line's fourth field, in KiB).
pub fn parse_df_free_mib(output: &str) -> Option<u64> {
    let line = output.lines().rfind(|l| !l.trim().is_empty())?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{HostStatus, Reason, Rule};

    fn change(p: &str, from: Option<&str>, to: &str) -> Change {
        Change {
            package: p.into(),
            arch: "amd64".into(),
            from: from.map(str::to_owned),
            to: to.into(),
            security: false,
            origin: String::new(),
            reasons: vec![Reason {
                source: "baseline/lab".into(),
                rule: Rule::MinVersion,
                due: None,
            }],
            promotion: None,
            fixes: Vec::new(),
        }
    }

    fn pkg(name: &str, version: &str, status: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            status: status.into(),
        }
    }

    #[test]
    fn install_commands_name_exact_versions_and_keep_config() {
        let changes = [
            change("libpk", Some("1.0-1"), "1.2-1"),
            change("pk-kernel", Some("1.0-1"), "1:1.1-1"),
        ];
        assert_eq!(
            install_command(PackageManager::Apt, &changes, 300).unwrap(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 -- libpk=1.2-1 pk-kernel=1:1.1-1"
        );
        assert_eq!(
            install_command(PackageManager::Dnf, &changes, 300).unwrap(),
            "dnf install -y -q -- libpk-1.2-1 pk-kernel-1:1.1-1"
        );
        // A value outside the grammar never becomes a command: an apt option posing as a
        // package, a shell word, a hostile version.
        for (name, to) in [
            ("-oDPkg::Pre-Invoke::=touch /tmp/pwned", "1"),
            ("x;rm -rf /", "1"),
            ("libpk", "1.2-1 $(id)"),
        ] {
            let evil = [change(name, None, to)];
            for pm in [PackageManager::Apt, PackageManager::Dnf] {
                let e = install_command(pm, &evil, 0).unwrap_err();
                assert!(e.value == name || e.value == to, "{e}");
            }
        }
    }

    #[test]
    fn dependencies_the_dry_run_found_are_not_named() {
        // Naming them would mark them manually installed; they come with pk-app.
        let mut dep = change("libpk", Some("1.0-1"), "1.2-1");
        dep.reasons = vec![Reason {
            source: crate::plan::PACKAGE_MANAGER.into(),
            rule: Rule::Dependency,
            due: None,
        }];
        let changes = [dep, change("pk-app", Some("1.0-1"), "2.0-1")];
        assert_eq!(
            install_command(PackageManager::Apt, &changes, 300).unwrap(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 -- pk-app=2.0-1"
        );
        assert_eq!(
            install_command(PackageManager::Dnf, &changes, 300).unwrap(),
            "dnf install -y -q -- pk-app-2.0-1"
        );
    }

    #[test]
    fn rollback_restores_changed_and_removes_new_packages() {
        let before: Versions = [
            ("libpk".to_string(), Some("1.0-1".to_string())),
            ("pk-broken".to_string(), Some("1.0-1".to_string())),
            ("pk-dep".to_string(), None),
            ("untouched".to_string(), Some("3".to_string())),
        ]
        .into();
        let after = [
            pkg("libpk", "1.2-1", "ii"),
            pkg("pk-broken", "1.1-1", "iF"),
            pkg("pk-dep", "1", "ii"),
            pkg("untouched", "3", "ii"),
        ];
        let steps = rollback_steps(&before, &after);
        assert_eq!(
            steps.restore,
            vec![
                ("libpk".to_string(), "1.0-1".to_string()),
                ("pk-broken".to_string(), "1.0-1".to_string())
            ]
        );
        assert_eq!(steps.remove, vec!["pk-dep".to_string()]);
        assert_eq!(
            rollback_command(PackageManager::Apt, &steps, 10).unwrap(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=10 -- libpk=1.0-1 pk-broken=1.0-1 pk-dep-"
        );
        assert_eq!(
            rollback_command(PackageManager::Dnf, &steps, 10).unwrap(),
            "dnf downgrade -y -q -- libpk-1.0-1 pk-broken-1.0-1 && dnf remove -y -q -- pk-dep"
        );
        // Names and versions of the rollback come from the host: checked like the plan's.
        let hostile = RollbackSteps {
            remove: vec!["-oAPT::Get::Simulate=false".into()],
            ..Default::default()
        };
        assert!(rollback_command(PackageManager::Apt, &hostile, 0).is_err());
        let hostile = RollbackSteps {
            restore: vec![("libpk".into(), "1.0`id`".into())],
            ..Default::default()
        };
        assert!(rollback_command(PackageManager::Dnf, &hostile, 0).is_err());
        // A half-configured package at the old version still needs restoring.
        let same_but_broken = [pkg("libpk", "1.0-1", "iF")];
        let only: Versions = [("libpk".to_string(), Some("1.0-1".to_string()))].into();
        assert_eq!(rollback_steps(&only, &same_but_broken).restore.len(), 1);
        assert!(rollback_steps(&only, &[pkg("libpk", "1.0-1", "ii")]).is_empty());
        // A package the transaction removed is installed again.
        let gone = rollback_steps(&only, &[]);
        assert_eq!(
            gone.reinstall,
            vec![("libpk".to_string(), "1.0-1".to_string())]
        );
        assert_eq!(
            rollback_command(PackageManager::Dnf, &gone, 0).unwrap(),
            "dnf install -y -q -- libpk-1.0-1"
        );
        assert!(rollback_command(PackageManager::Apt, &gone, 0)
            .unwrap()
            .ends_with(" -- libpk=1.0-1"));
    }

    #[test]
    fn footprint_of_a_transaction() {
        let before = [
            pkg("a", "1", "ii"),
            pkg("b", "1", "ii"),
            pkg("gone", "1", "ii"),
        ];
        let after = [
            pkg("a", "2", "ii"),
            pkg("b", "1", "ii"),
            pkg("new", "1", "ii"),
        ];
        assert_eq!(changed_packages(&before, &after), vec!["a", "gone", "new"]);
        assert_eq!(new_packages(&before, &after), vec!["new"]);
    }

    #[test]
    fn versions_are_checked_exactly_and_half_configured_is_a_mismatch() {
        let changes = [
            change("libpk", Some("1.0-1"), "1.2-1"),
            change("pk-broken", Some("1.0-1"), "1.1-1"),
            change("pk-new", None, "1"),
        ];
        let installed = [pkg("libpk", "1.2-1", "ii"), pkg("pk-broken", "1.1-1", "iF")];
        assert_eq!(
            version_mismatches(&changes, &installed),
            vec![
                "pk-broken 1.1-1 is in state `iF`, not fully installed",
                "pk-new is not installed (planned 1)"
            ]
        );
        assert!(version_mismatches(&changes[..1], &installed).is_empty());
        assert!(
            version_mismatches(&changes[..1], &[pkg("libpk", "1.2-1", "installed")]).is_empty()
        );
        assert_eq!(
            version_mismatches(&changes[..1], &[pkg("libpk", "1.1-1", "ii")]),
            vec!["libpk is at 1.1-1 (planned 1.2-1)"]
        );
    }

    #[test]
    fn rollback_is_verified() {
        let steps = RollbackSteps {
            restore: vec![("libpk".into(), "1.0-1".into())],
            reinstall: vec![],
            remove: vec!["pk-dep".into()],
        };
        assert!(rollback_mismatches(&steps, &[pkg("libpk", "1.0-1", "ii")]).is_empty());
        assert_eq!(
            rollback_mismatches(
                &steps,
                &[pkg("libpk", "1.2-1", "ii"), pkg("pk-dep", "1", "ii")]
            ),
            vec![
                "libpk is at 1.2-1 in state `ii` (expected 1.0-1)",
                "pk-dep is still installed"
            ]
        );
    }

    #[test]
    fn unobtainable_old_versions_are_named() {
        let apt = "Reading package lists...\nE: Version '1.0-1' for 'libpk' was not found\nE: Version '0.9' for 'pk-app' was not found\n";
        assert_eq!(
            unobtainable(PackageManager::Apt, apt, &[]),
            vec!["libpk=1.0-1", "pk-app=0.9"]
        );
        let dnf =
            "No match for argument: libpk-1.0-1\nError: Unable to find a match: libpk-1.0-1\n";
        assert_eq!(
            unobtainable(PackageManager::Dnf, dnf, &[]),
            vec!["libpk-1.0-1"]
        );
        let none = "Error: There are no enabled repositories in \"/etc/yum.repos.d\".";
        assert_eq!(
            unobtainable(PackageManager::Dnf, none, &["libpk-1.0-1".to_string()]),
            vec!["libpk-1.0-1"]
        );
        assert!(unobtainable(
            PackageManager::Apt,
            "E: Sub-process /usr/bin/dpkg returned an error code (1)",
            &[]
        )
        .is_empty());
    }

    #[test]
    fn budget_halts_after_it_is_exceeded() {
        let one = HostCount::Absolute(1);
        assert!(!budget_exceeded(Some(&one), 10, 0));
        assert!(!budget_exceeded(Some(&one), 10, 1));
        assert!(budget_exceeded(Some(&one), 10, 2));
        // Default budget 0: the first failure halts.
        assert!(budget_exceeded(None, 10, 1));
        // 20% of 10 hosts is 2.
        let pct = HostCount::Percent("20%".into());
        assert!(!budget_exceeded(Some(&pct), 10, 2));
        assert!(budget_exceeded(Some(&pct), 10, 3));
    }

    #[test]
    fn reboot_policy() {
        assert!(!should_reboot(RebootPolicy::Never, true));
        assert!(should_reboot(RebootPolicy::IfRequired, true));
        assert!(!should_reboot(RebootPolicy::IfRequired, false));
        assert!(should_reboot(RebootPolicy::Always, false));
    }

    #[test]
    fn drift_names_the_changed_package() {
        let plan = HostPlan {
            host: "deb-1".into(),
            status: HostStatus::Update,
            package_manager: Some(PackageManager::Apt),
            baselines: vec![],
            requests: vec![],
            window: None,
            window_reason: None,
            rollout: None,
            changes: vec![change("libpk", Some("1.0-1"), "1.2-1")],
            reasons: vec![],
            skipped: vec![],
            fingerprint: Some("x".into()),
            batch: Some(0),
            reboot_required: false,
            dependencies: None,
            notes: vec![],
        };
        let mut now = ObservedHost::new("deb-1", crate::observed::HostStatus::Reachable);
        now.installed.push(pkg("libpk", "1.1-1", "ii"));
        let drift = describe_drift(&plan, &now);
        assert_eq!(
            drift,
            vec![
                "libpk is now 1.1-1 (planned from 1.0-1)",
                "libpk 1.2-1 is no longer offered"
            ]
        );
        now.installed[0].version = "1.0-1".into();
        now.updates.push(crate::observed::PendingUpdate {
            name: "libpk".into(),
            arch: "amd64".into(),
            installed_version: Some("1.0-1".into()),
            candidate_version: "1.2-1".into(),
            origin: String::new(),
            security: true,
            advisories: vec![],
        });
        assert_eq!(describe_drift(&plan, &now).len(), 1);
        assert!(describe_drift(&plan, &now)[0].contains("boot id"));
    }

    #[test]
    fn verify_commands_check_names_and_end_options() {
        let names = vec!["libpk".to_string(), "libstdc++6".to_string()];
        assert_eq!(
            verify_command(PackageManager::Apt, &names).unwrap(),
            "dpkg --verify -- libpk libstdc++6"
        );
        assert_eq!(
            verify_command(PackageManager::Dnf, &names).unwrap(),
            "rpm -V -- libpk libstdc++6"
        );
        assert!(verify_command(PackageManager::Apt, &["-x".to_string()]).is_err());
    }

    #[test]
    fn integrity_output_ignores_config_files() {
        let out = "??5??????   /usr/share/pk/libpk/version\n??5?????? c /etc/pk.conf\nS.5....T.  c /etc/x\nmissing     /usr/bin/pk-app\n";
        assert_eq!(
            integrity_problems(out),
            vec![
                "??5??????   /usr/share/pk/libpk/version",
                "missing     /usr/bin/pk-app"
            ]
        );
        assert!(has_config_lines(out));
        assert!(integrity_problems("").is_empty());
        assert_eq!(
            integrity_problems("package libpk is not installed\n").len(),
            1
        );
    }

    #[test]
    fn df_output() {
        let df = "Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/sda1         10000000 5000000   2097152      50% /\n";
        assert_eq!(parse_df_free_mib(df), Some(2048));
        assert_eq!(parse_df_free_mib(""), None);
    }
}
