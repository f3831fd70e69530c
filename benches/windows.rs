//! Window evaluation benchmark: `CompiledWindow::compile` and `state_at` for windows whose
//! runs are a single occurrence, a weekend of chained minutes, broken by DST once a year,
//! or chained for ever (the worst case: every future DST transition is checked, up to one
//! 400-year cycle of the zone's rule).
//!
//! Run: `cargo bench --bench windows`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::Timestamp;
use patchkeeper::model::MaintenanceWindowSpec;
use patchkeeper::window::CompiledWindow;

fn spec(schedule: &str, tz: &str, duration: &str) -> MaintenanceWindowSpec {
    MaintenanceWindowSpec {
        emergency: false,
        always_open: false,
        schedule: Some(schedule.to_owned()),
        timezone: Some(tz.to_owned()),
        duration: Some(duration.to_owned()),
        cutoff: Some("1m".to_owned()),
        freezes: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let at: Timestamp = "2026-06-06T12:00:00Z".parse().expect("instant");
    let cases = [
        ("nightly", spec("30 2 * * *", "Europe/Berlin", "2h")),
        (
            "weekend-of-minutes",
            spec("* * * * SAT,SUN", "Europe/Berlin", "30m"),
        ),
        ("broken-by-dst", spec("0 */2 * * *", "Europe/Berlin", "2h")),
        ("for-ever-utc", spec("*/5 * * * *", "UTC", "10m")),
        ("for-ever-berlin", spec("0 * * * *", "Europe/Berlin", "2h")),
    ];
    for (name, s) in &cases {
        c.bench_function(&format!("compile/{name}"), |b| {
            b.iter(|| CompiledWindow::compile(black_box(s)).expect("valid"))
        });
        let w = CompiledWindow::compile(s).expect("valid");
        c.bench_function(&format!("state_at/{name}"), |b| {
            b.iter(|| w.state_at(black_box(at)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
