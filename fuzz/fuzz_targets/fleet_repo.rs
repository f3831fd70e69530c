//! The fleet-repo loader and validator: up to four YAML files (NUL-separated) are loaded
//! as `fleet::load` loads them, validated, their windows compiled and evaluated, and, when
//! valid, planned against the example observed state. Never a panic; every diagnostic
//! points into its file (1-based line and column, within the file). The first file is also
//! read as a `policy.yaml` override.
#![no_main]
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use patchkeeper::fleet::{self, Fleet};
use patchkeeper::observed::ObservedFleet;
use patchkeeper::plan::{self, Evidence, FirstSeen, PlanInput};
use patchkeeper::policy::{Policy, PolicySource};
use patchkeeper::validate;
use patchkeeper::window::CompiledWindow;

mod common;

fuzz_target!(|data: &[u8]| {
    let files = common::fields(data, 4);
    let mut fleet = Fleet {
        root: PathBuf::from("/fleet"),
        ..Fleet::default()
    };
    let mut diags = Vec::new();
    let mut lines = std::collections::BTreeMap::new();
    for (i, text) in files.iter().enumerate() {
        let rel = PathBuf::from(format!("f{i}.yaml"));
        lines.insert(rel.clone(), text.lines().count().max(1) as u32 + 1);
        fleet::add_file(&mut fleet, &mut diags, &rel, text);
        fleet.files.push(rel);
    }
    let _ = Policy::parse(&files[0], PolicySource::File(PathBuf::from("policy.yaml")))
        .map(|p| p.rules.len());
    let outcome = validate::validate_fleet(fleet.clone(), diags);
    for d in outcome
        .diagnostics
        .iter()
        .chain(&validate::exception_expiry(&fleet, common::instant()))
    {
        let rendered = d.to_string();
        for loc in std::iter::once(&d.location).chain(d.notes.iter().map(|n| &n.location)) {
            assert!(loc.line >= 1 && loc.column >= 1, "position 0 in {rendered}");
            if let Some(max) = lines.get(&loc.file) {
                assert!(
                    loc.line <= *max,
                    "line past the end of the file: {rendered}"
                );
            }
        }
    }
    let at = common::instant();
    for w in &fleet.windows {
        if let Ok(c) = CompiledWindow::compile(&w.doc.spec) {
            let _ = c.state_at(at);
            if let Some(next) = c.next_open_at(at) {
                assert!(next >= at, "next opening {next} before {at}");
            }
            let _ = c.open_period_from(at);
        }
    }
    if let Some(valid) = outcome.fleet {
        let observed = OBSERVED.with(|o| o.clone());
        let first_seen = FirstSeen::new();
        let p = plan::plan(PlanInput {
            fleet: &valid,
            fleet_commit: None,
            observed: &observed,
            at,
            first_seen: &first_seen,
            simulations: None,
            promotion: &Evidence::default(),
            advisories: None,
        });
        let _ = plan::render_human(&p, plan::RenderOptions { color: false });
        let _ = serde_json::to_string(&p).expect("a plan serializes");
    }
});

thread_local! {
    static OBSERVED: ObservedFleet = common::example_observed();
}
