//! Every parser of apt/dpkg output, each on the same text (stdout, NUL, stderr): the
//! observation's sections (dpkg-query, `apt-get -s dist-upgrade`, kept back, reboot
//! required, os-release, lock holders), the dry run (`apt-get -s install`, refusals), the
//! verification (`dpkg-query` after the transaction, `dpkg --verify`), rollback's
//! unobtainable versions and `df`. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::apply::decide;
use patchkeeper::driver::{self, apt};
use patchkeeper::model::PackageManager;
use patchkeeper::plan::Change;

mod common;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 2);
    let (stdout, stderr) = (common::field(&f, 0), common::field(&f, 1));
    let state = apt::parse_dpkg_query(stdout);
    let updates = apt::parse_apt_simulation(stdout);
    let _ = apt::parse_kept_back(stdout);
    let _ = apt::parse_reboot(stdout);
    let fields = driver::parse_os_release(stdout);
    if let Some(os) = driver::os_info(&fields) {
        let _ = driver::family_of(&os);
    }
    let _ = driver::parse_locks(stdout);
    let _ = driver::split_sections(stdout, stderr);
    let _ = apt::refusal(stdout, stderr);
    let preview = match driver::read_simulation(
        PackageManager::Apt,
        Some(0),
        stdout,
        stderr,
        &state.installed,
    ) {
        Ok(p) => p,
        Err(_) => apt::parse_apt_transaction(stdout),
    };
    let _ = driver::read_simulation(
        PackageManager::Apt,
        Some(100),
        stdout,
        stderr,
        &state.installed,
    );
    // Verification: the changes the dry run names, against what dpkg-query says now.
    let changes: Vec<Change> = preview
        .installs
        .iter()
        .chain(&updates)
        .map(|u| Change {
            package: u.name.clone(),
            arch: u.arch.clone(),
            from: u.installed_version.clone(),
            to: u.candidate_version.clone(),
            security: false,
            origin: String::new(),
            reasons: Vec::new(),
            promotion: None,
            fixes: Vec::new(),
        })
        .collect();
    let _ = decide::version_mismatches(&changes, &state.installed);
    let _ = decide::integrity_problems(stdout);
    let _ = decide::has_config_lines(stdout);
    let wanted: Vec<String> = state.installed.iter().map(|p| p.name.to_string()).collect();
    let _ = decide::unobtainable(PackageManager::Apt, stdout, &wanted);
    let _ = decide::parse_df_free_mib(stdout);
    for p in &state.installed {
        let _ = apt::strip_binnmu(&p.version);
        let _ = decide::status_ok(&p.status);
    }
});
