//! OSV records (`advisories import` of files, directories and `all.zip` entries): any
//! bytes. Never a panic; every record read is counted or skipped with a reason, and what
//! reads is indexed and matched against hosts with those packages installed at the
//! versions the records mention.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::advisory::{import, osv, ReadStats};

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = import::sniff(data);
    let mut records = Vec::new();
    let mut stats = ReadStats::default();
    osv::read_record(data, "fuzz.json", &mut records, &mut stats);
    assert_eq!(stats.advisories, 1);
    common::match_records(records);
});
