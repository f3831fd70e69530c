//! The apply journal as a crash (or anyone) may leave it: any bytes. Reading never panics;
//! the hosts in flight and the finished ones are derived from whatever parses; opening it
//! cuts exactly a torn last line (the bytes after the last newline) and nothing before
//! it, and a step recorded afterwards reads back as the last entry.
#![no_main]
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use patchkeeper::apply::journal::{self, Event, Journal};

fn state_dir() -> PathBuf {
    // tmpfs when there is one: the journal fsyncs every write.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("patchkeeper-fuzz-journal-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let entries = journal::parse(data);
    let open = journal::in_flight(&entries);
    for f in &open {
        assert!(entries
            .iter()
            .any(|e| e.run == f.run && e.host.as_deref() == Some(&f.host)));
    }
    let plan = entries.first().map(|e| e.plan.clone()).unwrap_or_default();
    let _ = journal::finished(&entries, &plan);

    let dir = state_dir();
    std::fs::create_dir_all(&dir).expect("state dir");
    let path = journal::journal_path(&dir);
    std::fs::write(&path, data).expect("write the journal");
    let j =
        Journal::open(&dir, "fuzz-run", "fuzz-plan").expect("a journal opens whatever it holds");
    let healed = std::fs::read(&path).expect("read the journal");
    let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(
        healed,
        &data[..whole],
        "opening cut more or less than the torn last line"
    );
    j.record(Some("fuzz-host"), Event::HostStarted)
        .expect("record");
    drop(j);
    let after = journal::read(&dir).expect("read");
    let last = after.last().expect("the recorded step reads back");
    assert_eq!(
        (last.run.as_str(), last.host.as_deref()),
        ("fuzz-run", Some("fuzz-host"))
    );
    assert_eq!(after.len(), journal::parse(&healed).len() + 1);
});
