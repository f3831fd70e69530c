//! Debian security tracker dumps (`advisories import`), streamed one source package at a
//! time: any bytes. Never a panic; what reads is indexed and matched against hosts with
//! those packages installed at the versions the records mention.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::advisory::{import, tracker};

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = import::sniff(data);
    let mut records = Vec::new();
    if tracker::read(data, &mut |r| records.push(r)).is_ok() {
        common::match_records(records);
    }
});
