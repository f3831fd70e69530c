//! End-to-end: `report --diff RUN` on the reports branch that real `observe` and `apply`
//! runs wrote for lab hosts (real dpkg and rpm). Each observed host's installed packages are
//! kept on the branch (`packages/<host>.txt`, exactly what its package database says), and
//! the diff of a run shows each host's list before and after it: the apply's updates and
//! nothing else, in agreement with the run record and with the hosts themselves.

mod common;

use std::process::Output;

use common::cli::text;
use common::git::git;
use common::lab::{deb, rpm, Lab};
use serde_json::Value;

const BRANCH: &str = "patchkeeper/reports";

fn pk(lab: &Lab, args: &[&str]) -> Output {
    common::cli::run(lab.dir(), args)
}

fn ok(lab: &Lab, args: &[&str]) -> String {
    let out = pk(lab, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The host's installed packages as its own package database lists them, in the list
/// file's format.
fn host_list(lab: &Lab, host: &str) -> String {
    let script = if host.starts_with("deb") {
        r"dpkg-query -W -f='${db:Status-Abbrev} ${Package}:${Architecture} ${Version}\n' | awk '$1 ~ /^[ih]i/ {print $2, $3}' | LC_ALL=C sort"
    } else {
        r"rpm -qa --qf '%{NAME}:%{ARCH} %|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\n' | grep -v '^gpg-pubkey:' | LC_ALL=C sort"
    };
    lab.run_ok(host, script)
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

#[test]
fn report_diff_shows_what_an_apply_changed_on_each_host() {
    let lab = Lab::up(1, 1);
    let before_deb = host_list(&lab, "deb-1");
    let before_rpm = host_list(&lab, "rpm-1");

    ok(&lab, &["observe"]);
    // The branch keeps each host's list exactly as the host has it.
    for (host, list) in [("deb-1", &before_deb), ("rpm-1", &before_rpm)] {
        let kept = git(
            lab.dir(),
            &["show", &format!("{BRANCH}:packages/{host}.txt")],
        );
        assert_eq!(sorted_lines(&kept), sorted_lines(list), "{host}");
    }

    let out = pk(&lab, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");

    // `--runs`: newest first, the apply on top.
    let runs = ok(&lab, &["report", "--runs"]);
    let ids: Vec<&str> = runs.lines().collect();
    assert_eq!(ids.len(), 2, "{runs}");
    assert!(ids[0].contains("-apply-"), "{runs}");
    assert!(ids[1].contains("-observe-"), "{runs}");
    let apply = ids[0];

    let diff = ok(&lab, &["report", "--diff", apply]);
    assert!(
        diff.starts_with(&format!("apply run {apply}, finished ")),
        "{diff}"
    );
    for line in [
        "--- a/deb-1\n",
        "+++ b/deb-1\n",
        "-libpk:amd64 1.0-1\n",
        "+libpk:amd64 1.2-1\n",
        "-pk-kernel:all 1.0-1\n",
        "+pk-kernel:all 1.1-1\n",
        "--- a/rpm-1\n",
        "-libpk:x86_64 1.0-1\n",
        "+libpk:x86_64 1.2-1\n",
        "-pk-kernel:noarch 1.0-1\n",
        "+pk-kernel:noarch 1.1-1\n",
        "\n2 host(s): 2 changed, 0 unchanged, 0 without both lists\n",
    ] {
        assert!(diff.contains(line), "{line:?} not in:\n{diff}");
    }
    // Nothing but the packages the apply changed differs: every -/+ line names one.
    for l in diff.lines().filter(|l| {
        (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++")
    }) {
        assert!(
            l[1..].starts_with("libpk:") || l[1..].starts_with("pk-kernel:"),
            "unexpected change {l:?} in:\n{diff}"
        );
    }
    // Stable: the same run gives the same bytes, and a prefix of the id finds it.
    assert_eq!(ok(&lab, &["report", "--diff", apply]), diff);
    assert_eq!(
        ok(&lab, &["report", "--diff", &apply[..apply.len() - 2]]),
        diff
    );

    // The lists after the run are the hosts' own, and the JSON agrees with the run record.
    let after_deb = host_list(&lab, "deb-1");
    let kept = git(
        lab.dir(),
        &["show", &format!("{BRANCH}:packages/deb-1.txt")],
    );
    assert_eq!(sorted_lines(&kept), sorted_lines(&after_deb));
    let json: Value =
        serde_json::from_str(&ok(&lab, &["report", "--diff", apply, "--json"])).expect("JSON");
    assert_eq!(json["runId"], apply);
    assert_eq!(json["kind"], "apply");
    let run: Value = serde_json::from_str(&git(
        lab.dir(),
        &["show", &format!("{BRANCH}:runs/{apply}.json")],
    ))
    .expect("run record");
    for host in ["deb-1", "rpm-1"] {
        let h = json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("{host} in {json}"));
        let mut changed: Vec<(String, String)> = h["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["package"].as_str().unwrap().to_owned(),
                    c["to"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        changed.sort();
        let r = run["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .unwrap();
        let mut recorded: Vec<(String, String)> = r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let to = c["to"].as_str().unwrap();
                // The plan names RPM versions with their epoch (`0:1.2-1`).
                let to = to.strip_prefix("0:").unwrap_or(to);
                (c["package"].as_str().unwrap().to_owned(), to.to_owned())
            })
            .collect();
        recorded.sort();
        assert_eq!(changed, recorded, "{host}: {json}");
        assert_eq!(h["added"], Value::Array(vec![]), "{host}");
        assert_eq!(h["removed"], Value::Array(vec![]), "{host}");
    }

    // The observe run: the branch's first commit, every host's list new.
    let first = ok(&lab, &["report", "--diff", ids[1]]);
    assert!(first.contains("(the branch's first)"), "{first}");
    assert!(
        first.contains("deb-1: no package list before this run"),
        "{first}"
    );

    // An unknown id: exit 1, the newest ids and how to list them.
    let out = pk(
        &lab,
        &["report", "--diff", "20990101T000000Z-apply-nothing"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: no run `20990101T000000Z-apply-nothing` on the reports branch `patchkeeper/reports`"
        ),
        "{err}"
    );
    assert!(err.contains(&format!("\n  {apply}\n")), "{err}");
    assert!(err.contains("`patchkeeper report --runs`"), "{err}");
    // A prefix of both ids is ambiguous, and says so.
    let common_prefix: String = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    let out = pk(&lab, &["report", "--diff", &common_prefix]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("starts more than one run id"),
        "{}",
        text(&out)
    );
    lab.down();
}
