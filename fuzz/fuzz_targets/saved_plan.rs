//! Saved plan files (`plan --out`, read by `apply PLAN_FILE`): any bytes, read as `apply`
//! reads them, then checked on their own, against the example fleet, and host by host
//! against the fleet's derivation from the example observed state; rendered as `plan`
//! renders. Never a panic. A plan `check_file` accepts keeps its hosts sorted and unique,
//! and a saved plan the fleet accepts with no host refused asks for nothing the fleet
//! would not plan.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::observed::ObservedFleet;
use patchkeeper::plan::{self, saved, Evidence, FirstSeen, Plan, SavedPlanCheck};
use patchkeeper::validate::ValidFleet;

mod common;

struct Fixtures {
    check: SavedPlanCheck,
    fleet: ValidFleet,
    observed: ObservedFleet,
}

thread_local! {
    static FIXTURES: Fixtures = {
        let fleet = common::example_fleet();
        Fixtures {
            check: SavedPlanCheck::new(
                fleet.clone(),
                FirstSeen::new(),
                Evidence::default(),
                common::instant(),
            ),
            fleet,
            observed: common::example_observed(),
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(plan) = serde_json::from_str::<Plan>(text) else {
        return;
    };
    let _ = plan::render_human(&plan, plan::RenderOptions { color: false });
    let _ = plan::render_markdown(&plan);
    if saved::check_file(&plan).is_err() {
        return;
    }
    assert!(plan.hosts.windows(2).all(|w| w[0].host < w[1].host));
    FIXTURES.with(|f| {
        if saved::check_against_fleet(&plan, &f.fleet).is_err() {
            return;
        }
        for h in &plan.hosts {
            let observed = f.observed.host(&h.host).or(f.observed.hosts.first());
            if let Some(o) = observed {
                let _ = f.check.check_host(h, o);
            }
        }
    });
});
