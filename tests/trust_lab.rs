//! Trust boundaries end to end against real lab hosts (issue 12, `docs/security.md`): a
//! hand-edited saved plan, hostile values in every fleet-repo field that could reach a
//! command, a hostile host's package list, and the controller-side opt-ins. Every test
//! checks on the host itself (its root directory, its package database, its sshd log) that
//! nothing ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use common::cli::text;
use common::lab::{deb, rpm, write, Lab};
use serde_json::Value;

fn pk(lab: &Lab) -> Command {
    let mut cmd = Command::cargo_bin("patchkeeper").expect("the binary is built");
    cmd.current_dir(lab.dir())
        .env("NO_COLOR", "1")
        .env_remove(patchkeeper::trust::ALLOW_LOCAL_ENV)
        .env_remove(patchkeeper::trust::ALLOW_PATHS_ENV)
        .stdin(Stdio::null());
    cmd
}

fn run(lab: &Lab, args: &[&str]) -> Output {
    pk(lab).args(args).output().expect("patchkeeper runs")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

fn commit(lab: &Lab, message: &str) {
    git(lab.dir(), &["add", "-A"]);
    git(lab.dir(), &["commit", "-q", "-m", message]);
}

/// The lab baseline asks for libpk >= 1.2-1 only (no update classes: no reboots), and one
/// stage takes every host with a budget that lets each host fail on its own.
fn libpk_baseline(lab: &Lab) {
    write(
        lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian, rpm]\n  updates:\n    classes: none\n  hold: [pk-held]\n  window: always\n  rollout: lab\n  packages:\n    - name: libpk\n      minVersion: \"1.2-1\"\n",
    );
    write(
        lab,
        "rollouts/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: lab\nspec:\n  stages:\n    - name: all\n      size: \"100%\"\n  failureBudget: 5\n",
    );
    commit(lab, "baseline: libpk 1.2");
}

/// The marker a hostile value would create, on the host and on the controller.
fn pwned(lab: &Lab, host: &str) -> Vec<PathBuf> {
    let root = &lab.host(host).root;
    ["tmp/pwned", "tmp/pwned2", "root/pwned"]
        .iter()
        .map(|p| root.join(p))
        .chain([PathBuf::from("/tmp/pwned")])
        .filter(|p| p.exists())
        .collect()
}

/// SSH logins the host's sshd accepted so far.
fn logins(lab: &Lab, host: &str) -> usize {
    std::fs::read_to_string(&lab.host(host).sshd_log)
        .unwrap_or_default()
        .matches("Accepted publickey")
        .count()
}

fn journal(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join(".patchkeeper/journal.jsonl")).unwrap_or_default()
}

/// The host's entry of a plan, by name.
fn host_mut<'a>(plan: &'a mut Value, name: &str) -> &'a mut Value {
    plan["hosts"]
        .as_array_mut()
        .expect("hosts")
        .iter_mut()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no host {name} in the plan"))
}

fn row<'a>(stdout: &'a str, host: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no table row for {host} in:\n{stdout}"))
}

#[test]
fn hand_edited_saved_plans_are_refused_and_nothing_runs() {
    let lab = Lab::up(1, 1);
    libpk_baseline(&lab);
    let good = lab.dir().join(".patchkeeper-plan.json");
    let out = pk(&lab)
        .args(["plan", "--out"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    assert_eq!(
        host_mut(&mut plan.clone(), "deb-1")["changes"][0]["package"],
        "libpk"
    );

    let crafted = |name: &str, edit: &dyn Fn(&mut Value)| -> PathBuf {
        let mut p = plan.clone();
        edit(&mut p);
        let path = lab.dir().join(format!(".crafted-{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&p).unwrap()).unwrap();
        path
    };
    let refused_entirely = |path: &Path, expect: &str| {
        let before = (logins(&lab, "deb-1"), logins(&lab, "rpm-1"));
        let out = run(&lab, &["apply", path.to_str().unwrap()]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "expected `{expect}` in:\n{all}");
        assert!(stderr.contains("nothing was applied"), "{all}");
        // Nothing ran: no marker, no login, no journal entry, the packages as they were.
        assert_eq!(pwned(&lab, "deb-1"), Vec::<PathBuf>::new());
        assert_eq!(pwned(&lab, "rpm-1"), Vec::<PathBuf>::new());
        assert_eq!(
            (logins(&lab, "deb-1"), logins(&lab, "rpm-1")),
            before,
            "{all}"
        );
        assert!(
            !journal(&lab).contains("transaction-started"),
            "{}",
            journal(&lab)
        );
        assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
        assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.0-1");
    };

    // An apt option posing as a package: it would set a root hook without the checks.
    let path = crafted("apt-option", &|p| {
        host_mut(p, "deb-1")["changes"][0]["package"] =
            "-oDPkg::Pre-Invoke::=touch /tmp/pwned".into();
    });
    refused_entirely(
        &path,
        r#"invalid Debian package name "-oDPkg::Pre-Invoke::=touch /tmp/pwned""#,
    );
    // A dnf option, and a shell word in a version.
    let path = crafted("dnf-option", &|p| {
        host_mut(p, "rpm-1")["changes"][0]["package"] = "--setopt=tsflags=noscripts".into();
        host_mut(p, "deb-1")["changes"][0]["to"] = "1.2-1 $(touch /tmp/pwned)".into();
    });
    refused_entirely(
        &path,
        r#"invalid RPM package name "--setopt=tsflags=noscripts""#,
    );
    refused_entirely(
        &path,
        r#"invalid Debian package version "1.2-1 $(touch /tmp/pwned)""#,
    );
    // A removed fingerprint would skip the stale check.
    let path = crafted("no-fingerprint", &|p| {
        host_mut(p, "deb-1")
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
    });
    refused_entirely(
        &path,
        r#"host "deb-1" has changes but no fingerprint of the state they were planned from"#,
    );
    // Faster than the rollout allows.
    let path = crafted("parallelism", &|p| {
        p["batches"][0]["parallelism"] = 500.into()
    });
    refused_entirely(&path, "parallelism 500");

    // A widened plan: pk-app 2.0-1, which the baseline does not ask for, on deb-1. The file
    // is consistent and the host assignments are the fleet's, so only the host can tell:
    // deb-1 is refused untouched, rpm-1 (whose part is as planned) is applied.
    let path = crafted("widened", &|p| {
        let deb1 = host_mut(p, "deb-1");
        let mut extra = deb1["changes"][0].clone();
        extra["package"] = "pk-app".into();
        extra["from"] = "1.0-1".into();
        extra["to"] = "2.0-1".into();
        extra["arch"] = "all".into();
        deb1["changes"].as_array_mut().unwrap().push(extra);
    });
    let out = run(&lab, &["apply", path.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb1 = row(&stdout, "deb-1");
    assert!(deb1.contains("failed"), "{all}");
    assert!(
        deb1.contains("deb-1: pk-app 2.0-1 is not asked for by the fleet repo; nothing changed"),
        "{all}"
    );
    assert!(row(&stdout, "rpm-1").contains("compliant"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-app"), "1.0-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(pwned(&lab, "deb-1"), Vec::<PathBuf>::new());
}

#[test]
fn hostile_values_in_fleet_fields_are_refused_before_any_host_is_contacted() {
    let lab = Lab::up(1, 0);
    let baseline = std::fs::read_to_string(lab.dir().join("baselines/lab.yaml")).unwrap();
    let inventory = std::fs::read_to_string(lab.dir().join("inventory/lab.yaml")).unwrap();
    let payloads = [
        "; touch /tmp/pwned",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "x\ntouch /tmp/pwned",
    ];
    // (file, original text, field, how the payload goes in)
    type Edit = fn(&str, &str) -> String;
    let fields: [(&str, &str, &str, Edit); 6] = [
        (
            "baselines/lab.yaml",
            &baseline,
            "packages/0/name",
            |t, p| {
                format!(
                    "{t}  packages:\n    - name: {}\n",
                    json(&format!("libpk{p}"))
                )
            },
        ),
        (
            "baselines/lab.yaml",
            &baseline,
            "packages/0/minVersion",
            |t, p| {
                format!(
                    "{t}  packages:\n    - name: libpk\n      minVersion: {}\n",
                    json(&format!("1.2-1{p}"))
                )
            },
        ),
        ("baselines/lab.yaml", &baseline, "exclude/0", |t, p| {
            format!("{t}  exclude: [{}]\n", json(&format!("pk{p}")))
        }),
        ("requests/urgent.yaml", "", "packages/0/name", |_, p| {
            format!(
                "apiVersion: patchkeeper.dev/v1\nkind: PatchRequest\nmetadata:\n  name: urgent\nspec:\n  selector: {{}}\n  reason: CVE-2026-0001\n  packages:\n    - name: {}\n",
                json(&format!("libpk{p}"))
            )
        }),
        ("inventory/lab.yaml", &inventory, "address", |t, p| {
            t.replacen(
                "address: 127.0.0.1",
                &format!("address: {}", json(&format!("127.0.0.1{p}"))),
                1,
            )
        }),
        ("inventory/lab.yaml", &inventory, "ssh/user", |t, p| {
            t.replacen(
                "ssh:",
                &format!("ssh:\n        user: {}", json(&format!("root{p}"))),
                1,
            )
        }),
    ];
    let before = logins(&lab, "deb-1");
    for (file, original, field, edit) in fields {
        for payload in payloads {
            write(&lab, file, &edit(original, payload));
            let out = run(&lab, &["validate"]);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(1), "{field} {payload:?}: {all}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("{file}:")) && stdout.contains("error[invalid-value]"),
                "{field} {payload:?}: {all}"
            );
            // The value is shown, with its newline escaped.
            assert!(!stdout.contains("x\ntouch"), "{all}");
            let out = run(&lab, &["apply", "--auto-approve"]);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(1), "{field} {payload:?}: {all}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("nothing is planned or applied"),
                "{all}"
            );
            // Restore the file (a request file is removed).
            if original.is_empty() {
                std::fs::remove_file(lab.dir().join(file)).unwrap();
            } else {
                write(&lab, file, original);
            }
        }
    }
    assert_eq!(logins(&lab, "deb-1"), before, "a host was contacted");
    assert_eq!(pwned(&lab, "deb-1"), Vec::<PathBuf>::new());
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
}

/// A YAML double-quoted scalar (JSON's escapes are YAML's).
fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn a_hostile_host_cannot_inject_through_its_package_list_or_escape_codes() {
    let lab = Lab::up(1, 0);
    // The host's apt-get lies in its dry runs: packages named like options and shell words,
    // and terminal escape codes (a clear screen and a window title) in a name.
    let wrapper = lab.host("deb-1").root.join("usr/local/bin/apt-get");
    std::fs::write(
        &wrapper,
        r#"#!/bin/sh
/usr/bin/apt-get "$@"
rc=$?
case " $* " in *" dist-upgrade "*)
  printf 'Inst -oDPkg::Pre-Invoke::=touch${IFS}/tmp/pwned [1.0-1] (2.0-1 PatchkeeperLab-Security:bookworm-security [amd64])\n'
  printf 'Inst $(touch${IFS}/tmp/pwned2) [1.0-1] (2.0-1 PatchkeeperLab-Security:bookworm-security [amd64])\n'
  printf 'Inst pk-\033[2J\033]0;owned\007evil [1.0-1] (2.0-1 PatchkeeperLab-Security:bookworm-security [amd64])\n'
;; esac
exit $rc
"#,
    )
    .unwrap();
    let status = Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    assert!(status.success());
    // The lab baseline approves security updates: the lies are "security updates".
    let out = run(&lab, &["plan"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("! deb-1"), "the host is blocked:\n{all}");
    assert!(
        // (apt's parser reads `NAME:ARCH`, so the name ends at the first colon.)
        stdout.contains(r#"invalid Debian package name "-oDPkg""#)
            && stdout.contains(r#"invalid Debian package name "$(touch${IFS}/tmp/pwned2)""#),
        "{all}"
    );
    assert!(
        !all.contains('\u{1b}') && !all.contains('\u{7}'),
        "raw escape codes reached the terminal:\n{all:?}"
    );
    assert!(
        stdout.contains(r"\u{1b}[2J\u{1b}]0;owned\u{7}evil"),
        "{all}"
    );
    let out = run(&lab, &["apply", "--auto-approve"]);
    let all = text(&out);
    assert!(!all.contains('\u{1b}'), "{all:?}");
    assert_eq!(pwned(&lab, "deb-1"), Vec::<PathBuf>::new(), "{all}");
    assert!(!journal(&lab).contains("transaction-started"), "{all}");
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.0-1 ii");
}

#[test]
fn the_shell_quoting_holds_on_a_real_host_with_and_without_sudo() {
    use patchkeeper::transport::ssh::{KeyCache, SshOptions, SshTransport};
    use patchkeeper::transport::{shell_quote, Transport};
    let lab = Lab::up(1, 0);
    let h = lab.host("deb-1").clone();
    let payloads = [
        "; touch /tmp/pwned",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "a\ntouch /tmp/pwned",
        "it's \"quoted\" \\ $HOME * ~ ^ | & > /tmp/pwned",
        "-oDPkg::Pre-Invoke::=touch /tmp/pwned",
        "1:1.0~rc1+b2^git",
        "",
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (user, sudo) in [
        (lab.info().ssh.user.clone(), false),
        (lab.info().ssh.sudo_user.clone(), true),
    ] {
        let options = SshOptions {
            address: h.address.clone(),
            port: h.port,
            user,
            identity_files: vec![lab.info().ssh.identity_file.clone()],
            use_agent: false,
            known_hosts: lab.info().ssh.known_hosts.clone(),
            host_key_policy: patchkeeper::model::HostKeyPolicy::Strict,
            sudo,
            connect_timeout: std::time::Duration::from_secs(30),
            keepalive_interval: std::time::Duration::from_secs(15),
            kex: vec![],
            ciphers: vec![],
            extra_known_hosts: vec![],
            host_key_alias: None,
            certificate_files: vec![],
            jumps: vec![],
        };
        runtime.block_on(async {
            let t = SshTransport::connect(&options, &KeyCache::new())
                .await
                .expect("connects");
            for p in payloads {
                let out = t
                    .exec(
                        &format!("printf '%s' {}", shell_quote(p)),
                        None,
                        std::time::Duration::from_secs(30),
                    )
                    .await
                    .expect("runs");
                assert!(out.success(), "{p:?} (sudo {sudo}): {}", out.stderr_text());
                assert_eq!(String::from_utf8_lossy(&out.stdout), p, "sudo {sudo}");
            }
            Box::new(t).close().await;
        });
    }
    assert_eq!(pwned(&lab, "deb-1"), Vec::<PathBuf>::new());
}

#[test]
fn local_commands_and_files_outside_the_repo_need_the_controllers_opt_in() {
    let lab = Lab::up(1, 0);
    // A key outside the fleet repo: refused until this machine allows its directory.
    let outside = tempfile::tempdir().unwrap();
    let key = outside.path().join("id_ed25519");
    std::fs::copy(&lab.info().ssh.identity_file, &key).unwrap();
    let settings_path = lab.dir().join("patchkeeper.yaml");
    let settings = std::fs::read_to_string(&settings_path).unwrap();
    assert!(
        settings.contains("identityFile: .lab/id_ed25519"),
        "{settings}"
    );
    std::fs::write(
        &settings_path,
        settings.replace(
            "identityFile: .lab/id_ed25519",
            &format!("identityFile: {}", key.display()),
        ),
    )
    .unwrap();
    let before = logins(&lab, "deb-1");
    let out = run(&lab, &["observe", "--no-refresh", "--no-report"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "ssh.identityFile of host deb-1 `{}` is outside the fleet repo",
            key.display()
        )) && all.contains("--allow-path DIR"),
        "{all}"
    );
    assert_eq!(logins(&lab, "deb-1"), before, "{all}");
    let out = pk(&lab)
        .args(["observe", "--no-refresh", "--no-report", "--allow-path"])
        .arg(outside.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = pk(&lab)
        .args(["observe", "--no-refresh", "--no-report"])
        .env(patchkeeper::trust::ALLOW_PATHS_ENV, outside.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A symlink inside the repo leading out of it is outside too.
    std::os::unix::fs::symlink(&key, lab.dir().join(".lab/link")).unwrap();
    std::fs::write(
        &settings_path,
        settings.replace("identityFile: .lab/id_ed25519", "identityFile: .lab/link"),
    )
    .unwrap();
    let out = run(&lab, &["observe", "--no-refresh", "--no-report"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is outside the fleet repo"),
        "{}",
        text(&out)
    );
    std::fs::write(&settings_path, &settings).unwrap();

    // `transport: local` runs commands on this machine: refused without the opt-in.
    let inventory_path = lab.dir().join("inventory/lab.yaml");
    let inventory = std::fs::read_to_string(&inventory_path).unwrap();
    std::fs::write(
        &inventory_path,
        format!("{inventory}    - name: ctl\n      transport: local\n      packageManager: apt\n      groups: [debian]\n"),
    )
    .unwrap();
    let marker = lab.dir().join(".local-ran");
    write(
        &lab,
        "rollouts/lab.yaml",
        &format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: lab\nspec:\n  stages:\n    - name: all\n      size: \"100%\"\n  pre:\n    - name: mark\n      command: touch {}\n",
            marker.display()
        ),
    );
    for args in [
        &["observe", "--no-refresh", "--no-report"][..],
        &["plan"][..],
        &["apply", "--auto-approve", "--no-report"][..],
    ] {
        let out = run(&lab, args);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(
            all.contains("host ctl has `transport: local`, which runs the fleet repo's commands on this machine")
                && all.contains("--allow-local-commands"),
            "{args:?}: {all}"
        );
        assert!(!marker.exists(), "a command ran on the controller: {all}");
    }
    // With the opt-in, the controller is observed (read-only, no index refresh).
    let out = pk(&lab)
        .args(["observe", "--no-refresh", "--no-report", "--hosts", "ctl"])
        .env(patchkeeper::trust::ALLOW_LOCAL_ENV, "1")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ctl"),
        "{all}"
    );
    assert!(!marker.exists());
}
