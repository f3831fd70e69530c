//! Files read back from the reports branch (`hosts/<name>.json`, `summary.json`,
//! `runs/<id>.json`, `installed/<name>.json`): whatever a commit holds, read as each kind.
//! Never a panic; what reads back writes and reads again as the same value; `report`
//! renders it; a host file is what the next run's compliance evaluation starts from
//! (first-seen times, carried facts); an installed record becomes promotion evidence.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::cli::report::render;
use patchkeeper::compliance::{self, HostConfig, Inputs};
use patchkeeper::observed::ObservedFleet;
use patchkeeper::policy::Policy;
use patchkeeper::report::{evidence, HostReport, InstalledRecord, RunRecord, Snapshot, Summary};
use patchkeeper::validate::ValidFleet;

mod common;

fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(value).expect("serializes");
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!("a report file written from what was read does not read: {e}\n{json}")
    });
    assert_eq!(&back, value, "changed through its JSON: {json}");
}

struct Fixtures {
    fleet: ValidFleet,
    observed: ObservedFleet,
    policy: Policy,
}

thread_local! {
    static FIXTURES: Fixtures = Fixtures {
        fleet: common::example_fleet(),
        observed: common::example_observed(),
        policy: Policy::builtin(),
    };
}

fuzz_target!(|data: &[u8]| {
    let mut snapshot = Snapshot {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        summary: None,
        hosts: Vec::new(),
        runs: Vec::new(),
        rejected: None,
    };
    if let Ok(host) = serde_json::from_slice::<HostReport>(data) {
        round_trip(&host);
        FIXTURES.with(|f| {
            let inventory_host = f.fleet.host(&host.compliance.host).or_else(|| {
                let first = f.observed.hosts.first()?;
                f.fleet.host(&first.name)
            });
            if let Some(h) = inventory_host {
                let mut config = HostConfig::from_fleet(&f.fleet, h).expect("example fleet config");
                config.host = host.compliance.host.clone();
                for observed in [None, f.observed.host(&h.name)] {
                    let _ = compliance::evaluate(Inputs {
                        config: &config,
                        observed,
                        previous: Some(&host.compliance),
                        run: None,
                        policy: &f.policy,
                        now: common::instant(),
                        advisories: None,
                        snapshot: None,
                    });
                }
            }
        });
        snapshot.hosts.push(host);
    }
    if let Ok(summary) = serde_json::from_slice::<Summary>(data) {
        round_trip(&summary);
        snapshot.summary = Some(summary);
    }
    if let Ok(run) = serde_json::from_slice::<RunRecord>(data) {
        round_trip(&run);
        snapshot.runs.push(run.run_id.clone());
        snapshot.rejected = Some(run);
    }
    // `installed/<name>.json`: a promotion source's versions since when, the evidence staged
    // promotion plans from (with the host file's incidents).
    if let Ok(record) = serde_json::from_slice::<InstalledRecord>(data) {
        round_trip(&record);
        let incidents = snapshot
            .hosts
            .first()
            .map(|h| h.incidents.clone())
            .unwrap_or_default();
        let _ = evidence::evidence([(record.host.as_str(), Some(&record), incidents.as_slice())]);
    }
    let _ = snapshot.first_seen();
    let _ = render("patchkeeper/reports", &snapshot);
});
