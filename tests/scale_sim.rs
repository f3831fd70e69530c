//! The fleet simulator of `benches/scale.sh` kept honest: 50 simulated hosts (real SSH,
//! russh servers on loopback), about 40 % of them RPM/dnf hosts and the rest Debian,
//! observed, planned with their dependency dry runs and applied
//! by the real patchkeeper binary, checked against the simulator's own state. Bounded (short
//! delays, 50 hosts) so it stays a few seconds; the figures come from the bench.

#[path = "../benches/fleetsim/sim.rs"]
mod sim;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const HOSTS: usize = 50;

fn patchkeeper(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
        .args(args)
        .env("PATCHKEEPER_ACTOR", "scale-test")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn fifty_simulated_hosts_observe_plan_and_apply() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = Arc::new(sim::Sim::new(sim::Options {
        hosts: HOSTS,
        seed: 7,
        base_octet: 100,
        // An ephemeral port each: tests of other worktrees may run the same addresses.
        port: 0,
        delays: sim::Delays {
            observe: Duration::from_millis(20),
            dry_run: Duration::from_millis(20),
            transaction: Duration::from_millis(50),
            command: Duration::from_millis(1),
            reboot: Duration::from_millis(200),
        },
        // Every host needs a reboot after its transaction: apply's reboot path runs too.
        reboot_percent: 100,
        rpm_percent: 40,
    }));
    runtime.block_on(sim.start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path();
    sim.write_fleet(fleet, 25).unwrap();
    let repo = fleet.to_str().unwrap();
    let observed_path = fleet.join("observed.json");

    // Observe: every host reachable, with its own boot id and the simulator's package set.
    let out = patchkeeper(&[
        "observe",
        "--repo",
        repo,
        "--no-report",
        "--json",
        "--out",
        observed_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let observed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&observed_path).unwrap()).unwrap();
    let hosts = observed["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), HOSTS);
    let before = sim.state_report();
    let rows: Vec<Vec<&str>> = before
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let mut boot_ids = std::collections::BTreeSet::new();
    let rpm_hosts = rows.iter().filter(|r| r[7] == "rpm").count();
    assert!(
        (5..=35).contains(&rpm_hosts),
        "a share of RPM hosts: {rpm_hosts}"
    );
    for (h, row) in hosts.iter().zip(&rows) {
        assert_eq!(h["status"]["state"], "reachable", "{h}");
        let manager = if row[7] == "rpm" { "dnf" } else { "apt" };
        assert_eq!(h["packageManager"], manager, "{}", row[0]);
        assert_eq!(h["name"], row[0]);
        assert_eq!(h["bootId"], row[1]);
        boot_ids.insert(row[1].to_string());
        let installed = h["installed"].as_array().unwrap().len();
        assert!((1300..1700).contains(&installed), "{installed} packages");
        let updates = h["updates"].as_array().unwrap();
        assert_eq!(updates.len().to_string(), row[4], "{}", row[0]);
        let security = updates.iter().filter(|u| u["security"] == true).count();
        assert_eq!(security.to_string(), row[5], "{}", row[0]);
    }
    assert_eq!(boot_ids.len(), HOSTS, "every host has its own boot id");

    // Plan with the dependency dry runs: each host upgrades exactly its pending security
    // updates, to the candidate versions the simulator offers.
    let plan_path = fleet.join("plan.json");
    let plan = json(&patchkeeper(&[
        "plan",
        "--repo",
        repo,
        "--json",
        "--out",
        plan_path.to_str().unwrap(),
    ]));
    let planned = plan["hosts"].as_array().unwrap();
    assert_eq!(planned.len(), HOSTS);
    for (p, row) in planned.iter().zip(&rows) {
        assert_eq!(p["host"], row[0]);
        assert_eq!(p["changes"].as_array().unwrap().len().to_string(), row[5]);
    }
    let commands_after_plan = sim
        .counters
        .commands
        .load(std::sync::atomic::Ordering::Relaxed);
    // One observation each for observe and plan, one dry run each.
    assert_eq!(commands_after_plan, 3 * HOSTS as u64);

    // Apply the saved plan: one transaction per host, then a reboot (a new boot id).
    let out = patchkeeper(&[
        "apply",
        "--repo",
        repo,
        "--auto-approve",
        "--no-report",
        plan_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = sim.state_report();
    for ((line, row), p) in after.lines().skip(1).zip(&rows).zip(planned) {
        let f: Vec<&str> = line.split('\t').collect();
        let changes = p["changes"].as_array().unwrap().len();
        assert_eq!(f[2], "1", "{line}: one transaction");
        assert_eq!(
            f[3],
            changes.to_string(),
            "{line}: the planned packages changed"
        );
        assert_eq!(f[5], "0", "{line}: no security update pending");
        assert_eq!(f[6], "false", "{line}: rebooted");
        assert_ne!(f[1], row[1], "{line}: a new boot id");
    }
    assert_eq!(
        sim.counters
            .unknown
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every command patchkeeper sent is simulated"
    );
    runtime.shutdown_background();
}
