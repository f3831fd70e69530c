//! Every parser of rpm/dnf output, each on the same text (stdout, NUL, stderr): the
//! observation's sections (`rpm -qa`, source rpms, `dnf check-update`, updateinfo, `dnf
//! check`, needs-restarting, versionlock holds), the dry run (`dnf --assumeno install`,
//! refusals), the verification (`rpm -qa` after the transaction, `rpm -V`) and rollback's
//! unobtainable versions. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::apply::decide;
use patchkeeper::driver::{self, dnf};
use patchkeeper::model::PackageManager;
use patchkeeper::plan::Change;

mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 2);
    let (stdout, stderr) = (common::field(&f, 0), common::field(&f, 1));
    let (installed, _) = dnf::parse_rpm_qa(stdout);
    let _ = dnf::parse_rpm_sources(stdout);
    let _ = dnf::parse_updateinfo_info(stdout);
    let mut updates = dnf::parse_check_update(stdout, &installed);
    let advisories = dnf::parse_updateinfo(stdout);
    dnf::apply_advisories(&mut updates, &advisories);
    let _ = dnf::parse_check(stdout);
    let kernel = installed.first().map(|p| p.version.to_string());
    let _ = dnf::parse_reboot(stdout, kernel.as_deref());
    let _ = dnf::parse_reboot(stdout, None);
    let _ = dnf::parse_holds(stdout);
    for line in stdout.lines() {
        let _ = dnf::parse_nevra(line.trim());
    }
    let _ = driver::split_sections(stdout, stderr);
    let _ = dnf::refusal(stdout, stderr);
    for exit in [Some(0), Some(1), None] {
        let _ = dnf::dry_run_resolved(exit, stdout, stderr);
    }
    let preview =
        match driver::read_simulation(PackageManager::Dnf, Some(1), stdout, stderr, &installed) {
            Ok(p) => p,
            Err(_) => dnf::parse_transaction(stdout, &installed),
        };
    let changes: Vec<Change> = preview
        .installs
        .iter()
        .chain(&updates)
        .map(|u| Change {
            package: u.name.clone(),
            arch: u.arch.clone(),
            from: u.installed_version.clone(),
            to: u.candidate_version.clone(),
            security: u.security,
            origin: u.origin.clone(),
            reasons: Vec::new(),
            promotion: None,
            fixes: Vec::new(),
        })
        .collect();
    let _ = decide::version_mismatches(&changes, &installed);
    let _ = decide::integrity_problems(stdout);
    let _ = decide::has_config_lines(stdout);
    let wanted: Vec<String> = installed.iter().map(|p| p.name.to_string()).collect();
    let _ = decide::unobtainable(PackageManager::Dnf, stdout, &wanted);
});
