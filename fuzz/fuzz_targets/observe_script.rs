//! A host's answer to the observation script (`driver::interpret`, apt and dnf hosts
//! alike): exit status, stdout and stderr as the host sent them. Never a panic, and what
//! `observe --out` would write from it reads back as the same host (`plan --observed`).
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use patchkeeper::driver::{self, ObserveOptions};
use patchkeeper::model::PackageManager;
use patchkeeper::observed::ObservedHost;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest, 2);
    // 0..=250: that exit status; above: the channel closed without one, or the
    // inventory expecting apt or dnf.
    let (exit, expected) = match first {
        251 => (None, None),
        252 => (Some(0), Some(PackageManager::Apt)),
        253 => (Some(0), Some(PackageManager::Dnf)),
        e => (Some(u32::from(e)), None),
    };
    let options = ObserveOptions {
        refresh: false,
        command_timeout: Duration::from_secs(60),
        expected,
    };
    let host = driver::interpret(
        "fuzz-host",
        common::field(&f, 0),
        common::field(&f, 1),
        exit,
        &options,
    );
    let json = serde_json::to_string(&host).expect("an observed host serializes");
    let mut back: ObservedHost = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("observe --out wrote what plan --observed refuses: {e}\n{json}")
    });
    back.normalize();
    assert_eq!(back, host, "observed host changed through its JSON");
});
