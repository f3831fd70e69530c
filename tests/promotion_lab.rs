//! End-to-end staged promotion on a real lab: staging hosts (deb-1, deb-2) apply libpk
//! 1.1-1 (apt pins 1.2 away there), the reports branch records since when; production
//! (deb-3, whose repositories offer the newer 1.2-1) waits until the soak ends to the
//! second, then plans and applies exactly 1.1-1 (blocked while 1.1-1 is not offered to
//! it); a rollback of 1.1-1 on a staging host blocks it. The same on dnf hosts, up to the
//! exact install. Needs root, like every lab test.

mod common;

use std::process::Output;

use common::cli::text;
use common::git::git;
use common::lab::{deb, rpm, write, Lab};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const BRANCH: &str = "patchkeeper/reports";

fn pk(lab: &Lab, args: &[&str]) -> Output {
    common::cli::run(lab.dir(), args)
}

fn baseline(name: &str, hosts: &str, promotion: &str) -> String {
    format!(
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {{name: {name}}}\nspec:\n  selector: {{hosts: [{hosts}]}}\n  updates: {{classes: all}}\n  exclude: [\"pk-*\"]\n{promotion}  window: always\n  rollout: lab\n"
    )
}

/// `host`'s entry of `plan --json --at AT`.
fn host_plan(lab: &Lab, host: &str, at: Timestamp) -> Value {
    let out = pk(lab, &["plan", "--json", "--at", &at.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or_else(|| panic!("{host} planned"))
}

/// deb-3's entry of `plan --json --at AT`.
fn prod_plan(lab: &Lab, at: Timestamp) -> Value {
    host_plan(lab, "deb-3", at)
}

fn libpk_change(h: &Value) -> Option<&Value> {
    h["changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["package"] == "libpk"))
}

fn libpk_skip(h: &Value) -> &Value {
    h["skipped"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["package"] == "libpk"))
        .unwrap_or_else(|| panic!("libpk skipped: {h}"))
}

/// A file of the reports branch's tip.
fn report_file(lab: &Lab, path: &str) -> Value {
    serde_json::from_str(&git(lab.dir(), &["show", &format!("{BRANCH}:{path}")])).unwrap()
}

/// When libpk's current version was first recorded on a staging host.
fn libpk_since(lab: &Lab, host: &str) -> (String, Timestamp) {
    let record = report_file(lab, &format!("installed/{host}.json"));
    let p = record["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libpk")
        .cloned()
        .unwrap_or_else(|| panic!("libpk in {record}"));
    (
        p["version"].as_str().unwrap().to_owned(),
        p["since"].as_str().unwrap().parse().unwrap(),
    )
}

/// When the (only) apply run so far finished on `host`, by its run record.
fn applied_at(lab: &Lab, host: &str) -> Timestamp {
    let list = git(lab.dir(), &["ls-tree", "--name-only", BRANCH, "runs/"]);
    let runs: Vec<Value> = list
        .lines()
        .map(|path| report_file(lab, path))
        .filter(|r| r["kind"] == "apply")
        .collect();
    assert_eq!(runs.len(), 1, "one apply run: {list}");
    let h = runs[0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} in {}", runs[0]));
    h["finishedAt"].as_str().unwrap().parse().unwrap()
}

/// Replaces the lab baseline: `prod` hosts promote from `staging` hosts (soak 1h,
/// minHosts 2); committed.
fn promoting_fleet(lab: &Lab, staging: &str, prod: &str) {
    std::fs::remove_file(lab.dir().join("baselines/lab.yaml")).unwrap();
    write(
        lab,
        "baselines/staging.yaml",
        &baseline("staging", staging, ""),
    );
    write(
        lab,
        "baselines/prod.yaml",
        &baseline(
            "prod",
            prod,
            &format!(
                "  promotion:\n    from: {{hosts: [{staging}]}}\n    soak: 1h\n    minHosts: 2\n"
            ),
        ),
    );
    git(lab.dir(), &["add", "-A"]);
    git(
        lab.dir(),
        &["commit", "-q", "-m", "prod promotes from staging"],
    );
}

#[test]
fn dnf_production_installs_exactly_the_promoted_version() {
    let lab = Lab::up(0, 3);
    promoting_fleet(&lab, "rpm-1, rpm-2", "rpm-3");
    // Staging's repositories offer 1.1-1 as the newest; production's offer 1.2-1.
    for h in ["rpm-1", "rpm-2"] {
        lab.run_ok(h, "echo 'excludepkgs=libpk-1.2*' >> /etc/dnf/dnf.conf");
    }
    let out = pk(&lab, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.1-1");
    assert_eq!(rpm(&lab, "rpm-2", "libpk"), "1.1-1");
    assert_eq!(rpm(&lab, "rpm-3", "libpk"), "1.0-1");
    let out = pk(&lab, &["observe"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, s1) = libpk_since(&lab, "rpm-1");
    let (_, s2) = libpk_since(&lab, "rpm-2");
    // The soak counts from when apply finished there, not from a later report.
    assert_eq!(s1, applied_at(&lab, "rpm-1"));
    let soaked = s1.max(s2) + SignedDuration::from_hours(1);

    let h = host_plan(&lab, "rpm-3", soaked - SignedDuration::from_secs(1));
    assert!(libpk_change(&h).is_none(), "{h}");
    assert_eq!(libpk_skip(&h)["promotion"]["version"], "1.1-1", "{h}");
    let h = host_plan(&lab, "rpm-3", soaked);
    let c = libpk_change(&h).unwrap_or_else(|| panic!("libpk promoted: {h}"));
    assert_eq!(c["to"], "1.1-1", "{c}");
    assert_eq!(c["promotion"]["insteadOf"], "1.2-1", "{c}");
    // dnf installs exactly that version (`libpk-1.1-1`), not the newer one.
    let out = pk(
        &lab,
        &["apply", "--auto-approve", "--at", &soaked.to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rpm(&lab, "rpm-3", "libpk"), "1.1-1");

    // A version changed by hand on a source after an observation counts from rpm's install
    // time, which falls between that observation and the next.
    lab.run_ok("rpm-2", "dnf -q -y downgrade libpk-1.0-1 >/dev/null");
    let installed: i64 = lab
        .run_ok("rpm-2", "rpm -q --qf '%{INSTALLTIME}' libpk")
        .trim()
        .parse()
        .unwrap();
    let out = pk(&lab, &["observe"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (v, since) = libpk_since(&lab, "rpm-2");
    assert_eq!(v, "1.0-1");
    assert_eq!(since, Timestamp::from_second(installed).unwrap());
    lab.down();
}

#[test]
fn production_takes_exactly_what_staging_ran_for_the_soak_and_a_rollback_blocks_it() {
    let lab = Lab::up(3, 0);
    std::fs::remove_file(lab.dir().join("baselines/lab.yaml")).unwrap();
    write(
        &lab,
        "baselines/staging.yaml",
        &baseline("staging", "deb-1, deb-2", ""),
    );
    write(
        &lab,
        "baselines/prod.yaml",
        &baseline(
            "prod",
            "deb-3",
            "  promotion:\n    from: {hosts: [deb-1, deb-2]}\n    soak: 1h\n    minHosts: 2\n",
        ),
    );
    let rollout = std::fs::read_to_string(lab.dir().join("rollouts/lab.yaml")).unwrap();
    write(
        &lab,
        "rollouts/lab.yaml",
        &format!("{rollout}  healthChecks:\n    - name: healthy\n      command: \"test ! -e /etc/pk-unhealthy\"\n      timeout: 10s\n"),
    );
    git(lab.dir(), &["add", "-A"]);
    git(
        lab.dir(),
        &["commit", "-q", "-m", "prod promotes from staging"],
    );
    // Staging's repositories offer 1.1-1 as the candidate; production's offer 1.2-1.
    for h in ["deb-1", "deb-2"] {
        lab.run_ok(
            h,
            "printf 'Package: libpk\\nPin: version 1.2*\\nPin-Priority: -1\\n' > /etc/apt/preferences.d/libpk",
        );
    }

    // Staging applies 1.1-1; production has no evidence yet and waits.
    let out = pk(&lab, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.1-1 ii");
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.1-1 ii");
    assert_eq!(deb(&lab, "deb-3", "libpk"), "1.0-1 ii");
    // An observation records what staging runs now, since when.
    let out = pk(&lab, &["observe"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (v1, s1) = libpk_since(&lab, "deb-1");
    let (v2, s2) = libpk_since(&lab, "deb-2");
    assert_eq!((v1.as_str(), v2.as_str()), ("1.1-1", "1.1-1"));
    // The soak counts from when apply finished there, not from the observation after.
    assert_eq!(s1, applied_at(&lab, "deb-1"));
    assert_eq!(s2, applied_at(&lab, "deb-2"));
    let soaked = s1.max(s2) + SignedDuration::from_hours(1);

    // One second before the soak ends on the second host: waiting, saying how far.
    let h = prod_plan(&lab, soaked - SignedDuration::from_secs(1));
    assert!(libpk_change(&h).is_none(), "{h}");
    let skip = libpk_skip(&h);
    let why = skip["why"].as_str().unwrap();
    assert!(why.starts_with("waiting for promotion"), "{why}");
    assert_eq!(skip["promotion"]["minHosts"], 2, "{skip}");
    assert_eq!(skip["promotion"]["version"], "1.1-1", "{skip}");
    assert_eq!(
        skip["promotion"]["eligibleAt"],
        soaked.to_string(),
        "{skip}"
    );

    let out = pk(
        &lab,
        &[
            "plan",
            "--at",
            &(soaked - SignedDuration::from_secs(1)).to_string(),
        ],
    );
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        human.contains("= libpk 1.2-1 on deb-3: waiting for promotion of 1.1-1: 2 of 2 source hosts, 59m of 1h"),
        "{human}"
    );

    // At the soak: exactly 1.1-1, though deb-3's repositories offer 1.2-1.
    let h = prod_plan(&lab, soaked);
    let c = libpk_change(&h).unwrap_or_else(|| panic!("libpk promoted: {h}"));
    assert_eq!(c["to"], "1.1-1", "{c}");
    assert_eq!(
        c["promotion"]["hosts"],
        serde_json::json!(["deb-1", "deb-2"])
    );
    assert_eq!(c["promotion"]["insteadOf"], "1.2-1", "{c}");
    assert_eq!(c["promotion"]["soakSeconds"], 3600, "{c}");
    let out = pk(&lab, &["plan", "--at", &soaked.to_string()]);
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        human.lines().any(|l| l.contains("libpk")
            && l.contains("-> 1.1-1")
            && l.contains("(promoted: 1h on deb-1, deb-2)")),
        "{human}"
    );

    // Were 1.1-1 no longer offered to production (only its security suite left, which has
    // 1.2-1), the host is blocked saying so, not given 1.2-1.
    let list = "/etc/apt/sources.list.d/patchkeeper-lab.list";
    lab.run_ok(
        "deb-3",
        &format!("cp {list} /root/lab.list && grep -- -security /root/lab.list > {list} && apt-get update -q >/dev/null"),
    );
    let h = prod_plan(&lab, soaked);
    assert_eq!(h["status"], "blocked", "{h}");
    assert!(libpk_change(&h).is_none(), "{h}");
    let reasons = h["reasons"].to_string();
    assert!(
        reasons.contains("promotes libpk 1.1-1")
            && reasons.contains("no longer offer it (they offer 1.2-1)"),
        "{reasons}"
    );
    lab.run_ok(
        "deb-3",
        &format!("cp /root/lab.list {list} && apt-get update -q >/dev/null"),
    );

    // apply at that instant installs exactly 1.1-1 on production (apt `libpk=1.1-1`).
    let out = pk(
        &lab,
        &["apply", "--auto-approve", "--at", &soaked.to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-3", "libpk"), "1.1-1 ii");

    // deb-2 goes back to 1.0-1 and takes 1.1-1 again, but its health check fails: rolled
    // back. Then it takes 1.1-1 healthy; the incident still keeps 1.1-1 from production.
    lab.run_ok(
        "deb-2",
        "apt-get install -y -q --allow-downgrades libpk=1.0-1 >/dev/null && touch /etc/pk-unhealthy",
    );
    let out = pk(&lab, &["apply", "--auto-approve"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.0-1 ii");
    let report = report_file(&lab, "hosts/deb-2.json");
    let incident = &report["incidents"][0];
    assert_eq!(incident["package"], "libpk", "{report}");
    assert_eq!(incident["version"], "1.1-1", "{report}");
    assert_eq!(incident["kind"], "rolled-back", "{report}");
    let out = pk(&lab, &["report"]);
    let all = text(&out);
    assert!(
        all.contains("versions kept from promotion")
            && all.contains("libpk 1.1-1 rolled back on deb-2 at "),
        "{all}"
    );
    lab.run_ok("deb-2", "rm /etc/pk-unhealthy");
    let out = pk(&lab, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-2", "libpk"), "1.1-1 ii");

    // Days later both staging hosts run 1.1-1, yet a production host still on 1.0-1 does
    // not take it.
    lab.run_ok(
        "deb-3",
        "apt-get install -y -q --allow-downgrades libpk=1.0-1 >/dev/null",
    );
    let h = prod_plan(&lab, soaked + SignedDuration::from_hours(240));
    assert!(libpk_change(&h).is_none(), "{h}");
    let skip = libpk_skip(&h);
    let blocked = &skip["promotion"]["blocked"][0];
    assert_eq!(blocked["version"], "1.1-1", "{skip}");
    assert_eq!(blocked["host"], "deb-2", "{skip}");
    assert_eq!(blocked["kind"], "rolled-back", "{skip}");
    assert!(
        skip["why"]
            .as_str()
            .unwrap()
            .contains("1.1-1 rolled back on deb-2"),
        "{skip}"
    );
    lab.down();
}
