//! Reports committed to real Git repositories: trailers, first-seen ages across runs, SSH
//! signatures verified by the real `git`, and concurrent writers racing on a bare remote.

mod common;

use common::git::git;
use common::report_fleet::{load, observed, patched, read_host, ts, write_fleet, BRANCH};
use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use patchkeeper::compliance::{ComplianceState, HostRunOutcome};
use patchkeeper::report::{self, HostRun, RunKind, RunRecord};

#[test]
fn observation_is_committed_with_trailers_without_touching_the_worktree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    let rec = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:01:00Z"),
    )
    .expect("recorded");
    assert_eq!(rec.attempts, 1);
    assert!(!rec.pushed);
    assert_eq!(git(dir.path(), &["rev-parse", BRANCH]).trim(), rec.commit);
    // The checkout is untouched: same branch, clean tree, no report files.
    assert_eq!(
        git(dir.path(), &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );
    assert_eq!(git(dir.path(), &["status", "--porcelain"]), "");
    assert!(!dir.path().join("hosts").exists());

    let log = git(
        dir.path(),
        &[
            "log",
            "-1",
            "--format=%an <%ae>%n%s%n%(trailers:only,unfold)",
            BRANCH,
        ],
    );
    let expected = format!(
        "patchkeeper <patchkeeper@example.com>\nobserve run 2026-11-24T02:00Z: 4 hosts, 1 non-compliant, 1 unreachable\nDesired-Commit: {desired}\nRun-Id: {}\nHosts-Changed: db-1, lab-1, web-1, web-2\n\n",
        rec.run_id
    );
    assert_eq!(log, expected);
    let files = git(dir.path(), &["ls-tree", "-r", "--name-only", BRANCH]);
    assert_eq!(
        files,
        format!(
            "hosts/db-1.json\nhosts/lab-1.json\nhosts/web-1.json\nhosts/web-2.json\npackages/web-1.txt\npackages/web-2.txt\nruns/{}.json\nsummary.json\n",
            rec.run_id
        )
    );
    // Each reachable host's installed packages, sorted, one `name:arch version` a line
    // (db-1 was unreachable, lab-1 reported no packages: no list).
    assert_eq!(
        git(
            dir.path(),
            &["show", &format!("{BRANCH}:packages/web-1.txt")]
        ),
        "libc6:amd64 2.36-9+deb12u7\nopenssl:amd64 3.0.15-1~deb12u1\n"
    );
    let web1 = read_host(dir.path(), "web-1");
    assert_eq!(web1["state"], "non-compliant");
    assert_eq!(web1["desiredCommit"], desired.as_str());
    assert_eq!(web1["outstanding"][0]["package"], "libc6");
    assert_eq!(web1["outstanding"][0]["firstSeen"], "2026-11-24T02:01:00Z");
    assert_eq!(read_host(dir.path(), "web-2")["state"], "compliant");
    assert_eq!(read_host(dir.path(), "db-1")["state"], "unreachable");
    assert_eq!(read_host(dir.path(), "lab-1")["state"], "excluded");
    let summary: serde_json::Value = serde_json::from_str(&git(
        dir.path(),
        &["show", &format!("{BRANCH}:summary.json")],
    ))
    .expect("json");
    assert_eq!(summary["total"], 4);
    assert_eq!(summary["counts"]["non-compliant"], 1);
    assert_eq!(summary["counts"]["compliant"], 1);
    let run: serde_json::Value = serde_json::from_str(&git(
        dir.path(),
        &["show", &format!("{BRANCH}:runs/{}.json", rec.run_id)],
    ))
    .expect("json");
    assert_eq!(run["kind"], "observe");
    assert_eq!(run["hosts"][0]["host"], "db-1");
    assert_eq!(run["hosts"][0]["outcome"], "unreachable");
}

#[test]
fn outstanding_age_survives_runs_and_the_log_reads_as_an_audit_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-20T02:00:00Z"),
        &desired,
        ts("2026-11-20T02:00:00Z"),
    )
    .expect("second");
    assert!(read_host(dir.path(), "web-1")["brokenRules"]
        .as_array()
        .expect("array")
        .is_empty());
    let third = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("third");
    let web1 = read_host(dir.path(), "web-1");
    assert_eq!(web1["outstanding"][0]["firstSeen"], "2026-11-16T02:00:00Z");
    assert_eq!(web1["outstanding"][0]["ageSeconds"], 8 * 86400);
    assert_eq!(
        web1["brokenRules"],
        serde_json::json!(["security-within-7d"])
    );

    // An apply run: web-1 rolled back, web-2 unchanged.
    let run = RunRecord {
        run_id: RunRecord::new_id(RunKind::Apply, ts("2026-11-24T03:00:00Z")),
        kind: RunKind::Apply,
        started_at: ts("2026-11-24T03:00:00Z"),
        finished_at: ts("2026-11-24T03:10:00Z"),
        desired_commit: desired.clone(),
        plan: None,
        errors: Vec::new(),
        last_good_commit: None,
        applied_by: None,
        requested_by: Vec::new(),
        overrides: Vec::new(),
        events: Vec::new(),
        hosts: vec![
            HostRun {
                host: "web-1".into(),
                outcome: HostRunOutcome::RolledBack {
                    reason: "health check ssh-and-disk failed".into(),
                },
                started_at: Some(ts("2026-11-24T03:00:05Z")),
                finished_at: Some(ts("2026-11-24T03:04:00Z")),
                changes: vec![],
                attempted: vec![],
                reboots: vec![],
            },
            HostRun {
                host: "web-2".into(),
                outcome: HostRunOutcome::Unchanged,
                started_at: None,
                finished_at: None,
                changes: vec![],
                attempted: vec![],
                reboots: vec![],
            },
        ],
    };
    report::record_run(dir.path(), &fleet, None, &run, ts("2026-11-24T03:10:00Z"))
        .expect("apply run");
    let web1 = read_host(dir.path(), "web-1");
    assert_eq!(web1["state"], "rolled-back");
    assert_eq!(
        web1["reasons"][0],
        "last run rolled back: health check ssh-and-disk failed"
    );
    assert_eq!(
        web1["outstanding"][0]["firstSeen"], "2026-11-16T02:00:00Z",
        "carried without observation"
    );

    let log = git(dir.path(), &["log", "--format=%s|%(trailers:key=Run-Id,valueonly,separator=)|%(trailers:key=Hosts-Changed,valueonly,separator=)", BRANCH]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "apply run 2026-11-24T03:00Z: 0 hosts updated, 1 rolled back|{}|web-1",
                run.run_id
            )
            .as_str(),
            format!(
                "observe run 2026-11-24T02:00Z: 4 hosts, 1 non-compliant, 1 unreachable|{}|none",
                third.run_id
            )
            .as_str(),
            lines[2],
            lines[3],
        ]
    );
    assert_eq!(lines.len(), 4);
    // "What changed on host web-1, when, why": the host file's history.
    let history = git(
        dir.path(),
        &["log", "--format=%s", BRANCH, "--", "hosts/web-1.json"],
    );
    // Only the commits that changed web-1's facts: first seen, the rule broken on day 8,
    // the rollback; not the second observation, which only made its update older.
    assert_eq!(
        history.lines().collect::<Vec<_>>(),
        [lines[0], lines[1], lines[3]].map(|l| l.split('|').next().unwrap_or_default()),
        "{log}"
    );
}

#[test]
fn signed_report_commits_verify_with_real_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Inside the fleet repo (hidden, so not part of the desired state): a signing key the
    // repo names elsewhere needs the controller's `--allow-path`.
    std::fs::create_dir(dir.path().join(".keys")).unwrap();
    let key = dir.path().join(".keys/reports_ed25519");
    let keys = tempfile::tempdir().expect("tempdir");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "reports", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let desired = write_fleet(dir.path(), &format!("    signingKey: {}\n", key.display()));
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("recorded");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("patchkeeper@example.com {public}")).expect("write");
    let allowed_cfg = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let out = git(
        dir.path(),
        &[
            "-c",
            &allowed_cfg,
            "log",
            "-1",
            "--show-signature",
            "--format=%G?",
            BRANCH,
        ],
    );
    assert!(
        out.contains("Good \"git\" signature for patchkeeper@example.com with ED25519 key"),
        "{out}"
    );
    assert!(out.trim_end().ends_with('G'), "{out}");
    // A different allowed key does not verify it.
    let other = keys.path().join("other");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen runs");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("public key");
    std::fs::write(&allowed, format!("patchkeeper@example.com {other_pub}")).expect("write");
    let out = git(
        dir.path(),
        &["-c", &allowed_cfg, "log", "-1", "--format=%G?", BRANCH],
    );
    assert_ne!(out.trim(), "G");
}

fn clone_with_fleet(remote: &Path, into: &Path) -> (PathBuf, String) {
    git(
        into.parent().expect("parent"),
        &[
            "clone",
            "-q",
            &remote.display().to_string(),
            &into.display().to_string(),
        ],
    );
    let desired = git(into, &["rev-parse", "HEAD"]).trim().to_owned();
    (into.to_owned(), desired)
}

#[test]
fn two_writers_racing_on_a_bare_remote_both_land() {
    let root = tempfile::tempdir().expect("tempdir");
    let seed = root.path().join("seed");
    std::fs::create_dir(&seed).expect("mkdir");
    write_fleet(&seed, "    remote: origin\n    heartbeat: 0s\n");
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let (a, desired) = clone_with_fleet(&bare, &root.path().join("a"));
    let (b, _) = clone_with_fleet(&bare, &root.path().join("b"));

    const PER_WRITER: usize = 5;
    let writer = |dir: PathBuf, desired: String, offset: i64| {
        std::thread::spawn(move || {
            let fleet = load(&dir);
            let mut out = Vec::new();
            for i in 0..PER_WRITER {
                let now =
                    Timestamp::from_second(1_795_000_000 + (i as i64) * 60 + offset).expect("time");
                let rec = report::record_observation(
                    &dir,
                    &fleet,
                    &observed(&now.to_string()),
                    &desired,
                    now,
                )
                .expect("recorded despite the race");
                assert!(rec.pushed);
                out.push(rec);
            }
            out
        })
    };
    let ta = writer(a.clone(), desired.clone(), 0);
    let tb = writer(b.clone(), desired.clone(), 30);
    let mut recs = ta.join().expect("writer a");
    recs.extend(tb.join().expect("writer b"));

    let runs = git(
        &bare,
        &["ls-tree", "--name-only", &format!("{BRANCH}:runs")],
    );
    let mut expected: Vec<String> = recs.iter().map(|r| format!("{}.json", r.run_id)).collect();
    expected.sort();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        expected,
        "every run record landed"
    );
    assert_eq!(
        git(&bare, &["rev-list", "--count", BRANCH]).trim(),
        (2 * PER_WRITER).to_string()
    );
    // Linear history: each commit built on the previous one, none overwritten.
    assert_eq!(
        git(&bare, &["rev-list", "--merges", "--count", BRANCH]).trim(),
        "0"
    );
    // Every writer saw the same facts, so the host file is the one the first commit to
    // land wrote (writer a's or b's first evaluation), never rewritten since.
    let web1: serde_json::Value = serde_json::from_str(&git(
        &bare,
        &["show", &format!("{BRANCH}:hosts/web-1.json")],
    ))
    .expect("json");
    let firsts = [
        Timestamp::from_second(1_795_000_000)
            .expect("time")
            .to_string(),
        Timestamp::from_second(1_795_000_030)
            .expect("time")
            .to_string(),
    ];
    assert!(
        firsts.iter().any(|f| web1["evaluatedAt"] == f.as_str()),
        "{web1}"
    );
    assert_eq!(
        git(
            &bare,
            &["log", "--format=%H", BRANCH, "--", "hosts/web-1.json"]
        )
        .lines()
        .count(),
        1
    );
    let retried: u32 = recs.iter().map(|r| r.attempts - 1).sum();
    eprintln!("retries needed: {retried}");
}

#[test]
fn two_writers_racing_on_one_bare_repo_both_land() {
    let root = tempfile::tempdir().expect("tempdir");
    let seed = root.path().join("seed");
    std::fs::create_dir(&seed).expect("mkdir");
    // Every writer commits, even with the same facts: the race is the point.
    let desired = write_fleet(&seed, "    heartbeat: 0s\n");
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let fleet = load(&seed);
    let recs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let (fleet, bare, desired) = (&fleet, &bare, &desired);
                s.spawn(move || {
                    (0..4)
                        .map(|i| {
                            let now =
                                Timestamp::from_second(1_795_000_000 + i * 60 + w).expect("time");
                            report::record_observation(
                                bare,
                                fleet,
                                &observed(&now.to_string()),
                                desired,
                                now,
                            )
                            .expect("recorded")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let runs = git(
        &bare,
        &["ls-tree", "--name-only", &format!("{BRANCH}:runs")],
    );
    assert_eq!(runs.lines().count(), recs.len());
    assert_eq!(
        git(&bare, &["rev-list", "--count", BRANCH]).trim(),
        recs.len().to_string()
    );
    let snap = report::read(&bare, BRANCH)
        .expect("read")
        .expect("branch exists");
    let summary = snap.summary.expect("summary");
    assert_eq!(summary.total, 4);
    assert_eq!(summary.count(ComplianceState::Excluded), 1);
    assert_eq!(snap.runs.len(), recs.len());
}

#[test]
fn report_command_shows_the_numbers_of_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    let rec = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("second");

    // The numbers, straight from the files on the branch.
    let mut from_files: std::collections::BTreeMap<String, usize> = Default::default();
    for name in git(
        dir.path(),
        &["ls-tree", "--name-only", &format!("{BRANCH}:hosts")],
    )
    .lines()
    {
        let host = name.trim_end_matches(".json");
        *from_files
            .entry(
                read_host(dir.path(), host)["state"]
                    .as_str()
                    .expect("state")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    let summary: serde_json::Value = serde_json::from_str(&git(
        dir.path(),
        &["show", &format!("{BRANCH}:summary.json")],
    ))
    .expect("json");
    for (state, n) in &from_files {
        assert_eq!(
            summary["counts"][state], *n,
            "summary.json agrees with host files on {state}"
        );
    }
    let n = |s: &str| from_files.get(s).copied().unwrap_or(0);

    let out = assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["report", "--repo"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let counts = format!(
        "4 hosts: {} compliant, {} non-compliant, {} pending-reboot, {} failed, {} rolled-back, {} unreachable, {} excluded\n",
        n("compliant"),
        n("non-compliant"),
        n("pending-reboot"),
        n("failed"),
        n("rolled-back"),
        n("unreachable"),
        n("excluded")
    );
    assert!(stdout.contains(&counts), "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "reports branch `{BRANCH}` at {}\n",
            &rec.commit[..12]
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("last run {} ", rec.run_id)),
        "{stdout}"
    );
    assert!(
        stdout.contains("broken rules: security-within-7d (1)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  web-1 (non-compliant) breaks security-within-7d\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "    - security update libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9 outstanding since 2026-11-16T02:00Z\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  db-1 (unreachable)\n    - unreachable: connection refused by 127.0.0.1:2299\n"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("web-2 ("),
        "compliant hosts are not listed: {stdout}"
    );

    let out = assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["report", "--json", "--repo"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["commit"], rec.commit.as_str());
    assert_eq!(json["summary"]["counts"], summary["counts"]);
    let listed: Vec<&str> = json["hosts"]
        .as_array()
        .expect("array")
        .iter()
        .map(|h| h["host"].as_str().expect("host"))
        .collect();
    assert_eq!(listed, ["db-1", "web-1"]);

    assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["report", "--branch", "nope", "--repo"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "error: no reports yet: branch `nope` does not exist",
        ));
}

#[test]
fn report_files_match_their_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    let rec = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("recorded");
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let check = |schema: &str, path: String| {
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schemas.join(schema)).expect("schema"))
                .expect("json");
        let instance: serde_json::Value =
            serde_json::from_str(&git(dir.path(), &["show", &format!("{BRANCH}:{path}")]))
                .expect("json");
        let v = jsonschema::validator_for(&schema).expect("compiles");
        let errors: Vec<String> = v.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
    };
    for host in ["web-1", "web-2", "db-1", "lab-1"] {
        check("report-host.schema.json", format!("hosts/{host}.json"));
    }
    check(
        "report-run.schema.json",
        format!("runs/{}.json", rec.run_id),
    );
    check("report-summary.schema.json", "summary.json".into());
}

/// A real `git daemon` serving a bare repository with receive-pack enabled; killed on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            // `git daemon` forks `git-daemon` and killing the wrapper would orphan it: run
            // the real binary so Drop stops it.
            let exec_path = git(base, &["--exec-path"]).trim().to_owned();
            let child = Command::new(Path::new(&exec_path).join("git-daemon"))
                .args([
                    "--reuseaddr",
                    "--export-all",
                    "--enable=receive-pack",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(base)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("git daemon starts");
            let mut daemon = GitDaemon { child, port };
            for _ in 0..50 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return daemon;
                }
                if daemon.child.try_wait().expect("wait").is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = daemon.child.kill();
        }
        panic!("git daemon did not start");
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn racing_pushes_to_a_git_server_are_rejected_and_rebuilt() {
    let root = tempfile::tempdir().expect("tempdir");
    let srv = root.path().join("srv");
    std::fs::create_dir(&srv).expect("mkdir");
    let seed = root.path().join("seed");
    std::fs::create_dir(&seed).expect("mkdir");
    write_fleet(&seed, "    remote: origin\n    heartbeat: 0s\n");
    let bare = srv.join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let daemon = GitDaemon::start(&srv);
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let (a, desired) = clone_with_fleet(Path::new(&url), &root.path().join("a"));
    let (b, _) = clone_with_fleet(Path::new(&url), &root.path().join("b"));
    let writer = |dir: PathBuf, desired: String, offset: i64| {
        std::thread::spawn(move || {
            let fleet = load(&dir);
            (0..4)
                .map(|i| {
                    let now =
                        Timestamp::from_second(1_795_000_000 + i * 60 + offset).expect("time");
                    report::record_observation(
                        &dir,
                        &fleet,
                        &observed(&now.to_string()),
                        &desired,
                        now,
                    )
                    .expect("recorded despite the race")
                })
                .collect::<Vec<_>>()
        })
    };
    let (ta, tb) = (writer(a, desired.clone(), 0), writer(b, desired, 30));
    let mut recs = ta.join().expect("a");
    recs.extend(tb.join().expect("b"));
    assert!(recs.iter().all(|r| r.pushed));
    let runs = git(
        &bare,
        &["ls-tree", "--name-only", &format!("{BRANCH}:runs")],
    );
    let mut expected: Vec<String> = recs.iter().map(|r| format!("{}.json", r.run_id)).collect();
    expected.sort();
    assert_eq!(runs.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        git(&bare, &["rev-list", "--count", BRANCH]).trim(),
        recs.len().to_string()
    );
    eprintln!(
        "retries needed: {}",
        recs.iter().map(|r| r.attempts - 1).sum::<u32>()
    );
}

#[test]
fn a_report_that_cannot_be_pushed_is_kept_and_lands_with_the_next_push() {
    // The remote is a path beside the fleet repo, outside it: the controller allows it.
    common::report_fleet::allow_temp_paths();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("fleet");
    std::fs::create_dir(&dir).expect("mkdir");
    let bare = root.path().join("reports.git");
    let desired = write_fleet(
        &dir,
        &format!("    remote: {}\n    heartbeat: 0s\n", bare.display()),
    );
    let fleet = load(&dir);
    // The remote does not exist yet: the report is refused but kept on the local branch.
    let err = report::record_observation(
        &dir,
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect_err("remote is missing");
    assert!(err.to_string().starts_with("reports: fetch from "), "{err}");
    let kept = git(&dir, &["ls-tree", "--name-only", &format!("{BRANCH}:runs")]);
    assert_eq!(kept.lines().count(), 1);
    // A second failure stacks on the first locally.
    report::record_observation(
        &dir,
        &fleet,
        &observed("2026-11-24T03:00:00Z"),
        &desired,
        ts("2026-11-24T03:00:00Z"),
    )
    .expect_err("remote is still missing");
    let kept = git(&dir, &["ls-tree", "--name-only", &format!("{BRANCH}:runs")]);
    assert_eq!(kept.lines().count(), 2);

    // The remote appears, with a report of its own from another writer.
    git(
        root.path(),
        &["init", "-q", "--bare", &bare.display().to_string()],
    );
    let other = root.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    write_fleet(
        &other,
        &format!("    remote: {}\n    heartbeat: 0s\n", bare.display()),
    );
    let theirs = report::record_observation(
        &other,
        &load(&other),
        &observed("2026-11-24T03:30:00Z"),
        &desired,
        ts("2026-11-24T03:30:00Z"),
    )
    .expect("other writer");
    let ours = report::record_observation(
        &dir,
        &fleet,
        &observed("2026-11-24T04:00:00Z"),
        &desired,
        ts("2026-11-24T04:00:00Z"),
    )
    .expect("pushed now");
    assert!(ours.pushed);
    let runs = git(
        &bare,
        &["ls-tree", "--name-only", &format!("{BRANCH}:runs")],
    );
    let mut expected: Vec<String> = kept.lines().map(str::to_owned).collect();
    expected.push(format!("{}.json", theirs.run_id));
    expected.push(format!("{}.json", ours.run_id));
    expected.sort();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        expected,
        "nothing lost, nothing overwritten"
    );
}

#[test]
fn a_fresh_clone_reads_the_reports_from_its_remote_tracking_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = dir.path().join("origin");
    std::fs::create_dir(&origin).expect("mkdir");
    let desired = write_fleet(&origin, "");
    report::record_observation(
        &origin,
        &load(&origin),
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("recorded");
    // What a CI job has: a clone with `origin/patchkeeper/reports` but no local branch.
    let clone = dir.path().join("clone");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            &origin.display().to_string(),
            &clone.display().to_string(),
        ],
    );
    assert!(git(&clone, &["branch", "--list", BRANCH]).trim().is_empty());
    let snapshot = report::read(&clone, BRANCH)
        .expect("readable")
        .expect("found through origin/patchkeeper/reports");
    assert_eq!(snapshot.commit, git(&origin, &["rev-parse", BRANCH]).trim());
    // First-seen times come with it, for `updates.delay` in the clone's plans.
    let first_seen = snapshot.first_seen();
    assert_eq!(
        first_seen.get(&(
            "web-1".to_owned(),
            "libc6".to_owned(),
            "2.36-9+deb12u9".to_owned()
        )),
        Some(&ts("2026-11-16T02:00:00Z"))
    );
}

/// Anyone who can push to the reports branch writes what `patchkeeper report` reads: a
/// desired-commit id that is not ASCII (it panicked on byte slicing) and escape codes in a
/// host's reasons are shown as text.
#[test]
fn report_command_shows_hostile_branch_content_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-24T02:00:00Z"),
        &desired,
        ts("2026-11-24T02:00:00Z"),
    )
    .expect("recorded");
    // Edit the branch as another writer would: a clone, a commit, a push.
    let clone = tempfile::tempdir().expect("tempdir");
    git(
        clone.path(),
        &[
            "clone",
            "-q",
            "-b",
            BRANCH,
            &dir.path().display().to_string(),
            ".",
        ],
    );
    let summary_path = clone.path().join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    // Byte 12 falls inside the sixth `é`.
    summary["desiredCommit"] = "xéééééééééé\u{1b}]0;owned\u{7}".into();
    std::fs::write(&summary_path, summary.to_string()).unwrap();
    let host_path = clone.path().join("hosts/db-1.json");
    let mut host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&host_path).unwrap()).unwrap();
    host["reasons"][0] = "\u{1b}[2J\u{1b}[Hall good\u{202e}".into();
    std::fs::write(&host_path, host.to_string()).unwrap();
    git(clone.path(), &["commit", "-q", "-a", "-m", "edited"]);
    git(clone.path(), &["push", "-q", "origin", BRANCH]);

    let out = assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["report", "--repo"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // The first 12 characters, the escape code shown as text.
    assert!(
        stdout.contains(r"desired commit xéééééééééé\u{1b}, "),
        "{stdout}"
    );
    assert!(
        stdout.contains(r"    - \u{1b}[2J\u{1b}[Hall good\u{202e}"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'),
        "{stdout:?}"
    );
}

#[test]
fn an_observation_that_changes_nothing_is_committed_only_as_a_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "    heartbeat: 12h\n");
    let fleet = load(dir.path());
    let first = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    assert!(first.committed);
    // Ten minutes later, the same facts: nothing to commit, the tip stays.
    let again = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:10:00Z"),
        &desired,
        ts("2026-11-16T02:10:00Z"),
    )
    .expect("again");
    assert!(!again.committed, "{again:?}");
    assert_eq!(again.commit, first.commit);
    assert_eq!(git(dir.path(), &["rev-parse", BRANCH]).trim(), first.commit);
    // Past the heartbeat: committed, so the branch shows the controller alive, and still
    // no host file changed.
    let beat = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T14:30:00Z"),
        &desired,
        ts("2026-11-16T14:30:00Z"),
    )
    .expect("heartbeat");
    assert!(beat.committed);
    assert_eq!(
        git(
            dir.path(),
            &["diff", "--name-only", &first.commit, &beat.commit]
        ),
        format!("runs/{}.json\nsummary.json\n", beat.run_id)
    );
}

fn pk_report(dir: &Path, args: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .arg("report")
        .arg("--repo")
        .arg(dir)
        .args(args)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn report_host_shows_one_hosts_history_and_report_names_a_rejected_tip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("observe");
    let mut run = RunRecord {
        run_id: RunRecord::new_id(RunKind::Apply, ts("2026-11-24T03:00:00Z")),
        kind: RunKind::Apply,
        started_at: ts("2026-11-24T03:00:00Z"),
        finished_at: ts("2026-11-24T03:10:00Z"),
        desired_commit: desired.clone(),
        plan: None,
        errors: Vec::new(),
        last_good_commit: None,
        applied_by: Some("alice".into()),
        requested_by: vec!["bob (request/cve-1)".into()],
        overrides: vec!["--at 2026-11-24T03:00:00Z: windows evaluated as if it were then".into()],
        events: Vec::new(),
        hosts: vec![HostRun {
            host: "web-1".into(),
            outcome: HostRunOutcome::Updated,
            started_at: Some(ts("2026-11-24T03:00:05Z")),
            finished_at: Some(ts("2026-11-24T03:04:00Z")),
            changes: vec![report::PackageChange {
                package: "libc6".into(),
                from: Some("2.36-9+deb12u7".into()),
                to: "2.36-9+deb12u9".into(),
                reasons: vec!["min-version request/cve-1".into()],
            }],
            attempted: Vec::new(),
            reboots: vec![patchkeeper::apply::Reboot {
                from: "boot-a".into(),
                to: "boot-b".into(),
            }],
        }],
    };
    report::record_run(dir.path(), &fleet, None, &run, ts("2026-11-24T03:10:00Z")).expect("apply");
    // A second apply that left web-1 alone is not part of its history.
    run.run_id = RunRecord::new_id(RunKind::Apply, ts("2026-11-25T03:00:00Z"));
    run.hosts[0].outcome = HostRunOutcome::Unchanged;
    run.hosts[0].changes.clear();
    run.hosts[0].reboots.clear();
    report::record_run(dir.path(), &fleet, None, &run, ts("2026-11-25T03:10:00Z"))
        .expect("second apply");

    let text = pk_report(dir.path(), &["--host", "web-1"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "history of web-1", "{text}");
    assert!(
        lines[1].starts_with("2026-11-24T03:10:00Z  state "),
        "newest first: {text}"
    );
    let apply = text.find("apply run").expect("the apply is listed");
    assert!(text[apply..].contains(
        "    ~ libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9  min-version request/cve-1\n    rebooted: boot id boot-a -> boot-b\n    applied by: alice\n    requested by: bob (request/cve-1)\n    override: --at"
    ), "{text}");
    assert_eq!(text.matches(" run ").count(), 1, "{text}");
    assert!(text.trim_end().ends_with("    - security update libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9 outstanding since 2026-11-16T02:00Z"), "{text}");
    // --since keeps only what is newer; --json is the same history as data.
    let json: serde_json::Value = serde_json::from_str(&pk_report(
        dir.path(),
        &["--host", "web-1", "--since", "100000d", "--json"],
    ))
    .expect("json");
    assert_eq!(json["entries"].as_array().map(Vec::len), Some(3), "{json}");
    assert_eq!(json["entries"][1]["entry"], "run", "{json}");
    assert_eq!(json["entries"][1]["host"]["reboots"][0]["to"], "boot-b");
    let recent = pk_report(dir.path(), &["--host", "web-1", "--since", "1s"]);
    assert!(recent.contains("nothing recorded"), "{recent}");

    // A rejected desired tip: `report` says so and which commit is in force.
    let target = report::ReportTarget::from_fleet(dir.path(), &fleet);
    report::record_rejected(
        &target,
        "badbadbadbad0000",
        &[
            "baselines/web.yaml:7:11: error[dangling-window-ref]: window `nope` does not exist"
                .into(),
        ],
        Some(&desired),
        ts("2026-11-26T00:00:00Z"),
    )
    .expect("rejected");
    let text = pk_report(dir.path(), &[]);
    assert!(text.contains(&format!(
        "desired commit badbadbadbad was rejected at 2026-11-26T00:00:00Z (1 error(s), first: baselines/web.yaml:7:11: error[dangling-window-ref]: window `nope` does not exist); the last good commit {} is in force",
        &desired[..12]
    )), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&pk_report(dir.path(), &["--json"])).expect("json");
    assert_eq!(json["rejected"]["lastGoodCommit"], desired.as_str());
}

#[test]
fn a_fleet_repo_in_a_directory_of_a_larger_repository_is_found_upward() {
    let root = tempfile::tempdir().expect("tempdir");
    let sub = root.path().join("ops/fleet");
    write_fleet(&sub, "");
    std::fs::remove_dir_all(sub.join(".git")).expect("rm");
    git(root.path(), &["init", "-q"]);
    git(root.path(), &["add", "-A"]);
    git(root.path(), &["commit", "-q", "-m", "monorepo"]);
    let head = git(root.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    let fleet = load(&sub);
    assert_eq!(fleet.fleet().commit.as_deref(), Some(head.as_str()));
    // Only the fleet's own files count as uncommitted, named relative to it.
    std::fs::write(root.path().join("other.yaml"), "a: 1\n").expect("write");
    assert_eq!(
        report::uncommitted_fleet_files(&sub).expect("status"),
        Vec::<String>::new()
    );
    std::fs::write(sub.join("baselines/extra.yaml"), "# new\n").expect("write");
    assert_eq!(
        report::uncommitted_fleet_files(&sub).expect("status"),
        ["baselines/extra.yaml"]
    );
    std::fs::remove_file(sub.join("baselines/extra.yaml")).expect("rm");
    report::record_observation(
        &sub,
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &head,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("reported into the enclosing repository");
    assert!(git(root.path(), &["ls-tree", "--name-only", BRANCH]).contains("summary.json"));
    assert!(pk_report(&sub, &[]).contains("4 hosts"));
    // Outside any repository: said in words, no raw libgit2 codes.
    let nowhere = tempfile::tempdir().expect("tempdir");
    let out = assert_cmd::Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["report", "--repo"])
        .arg(nowhere.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not in a Git repository"), "{err}");
    assert!(!err.contains("class="), "{err}");
}

#[test]
fn a_promotion_sources_new_installed_record_is_committed_inside_the_heartbeat() {
    // Commit-only-on-change must count staged promotion's evidence as a change: a source
    // host's package moving to a new version changes no compliance fact, but its
    // `installed/` record (and the digest in its host file) must land, or the soak of the
    // new version would never start.
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path(), "    heartbeat: 12h\n");
    std::fs::write(
        dir.path().join("baselines/lab.yaml"),
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: lab}\nspec:\n  selector: {groups: [lab]}\n  updates: {classes: all}\n  promotion:\n    from: {hosts: [web-2]}\n    soak: 1d\n    minHosts: 1\n  window: always\n  rollout: one-by-one\n",
    )
    .expect("write baseline");
    git(dir.path(), &["add", "-A"]);
    git(
        dir.path(),
        &["commit", "-q", "-m", "lab promotes from web-2"],
    );
    let desired = git(dir.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    let fleet = load(dir.path());
    let installed = |dir: &Path| -> serde_json::Value {
        let text = git(dir, &["show", &format!("{BRANCH}:installed/web-2.json")]);
        serde_json::from_str(&text).expect("installed record is JSON")
    };
    let first = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    assert!(first.committed);
    assert_eq!(
        installed(dir.path())["packages"][0]["version"],
        "3.0.16-1~deb12u1"
    );
    // The same packages ten minutes later: nothing to commit.
    let again = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:10:00Z"),
        &desired,
        ts("2026-11-16T02:10:00Z"),
    )
    .expect("again");
    assert!(!again.committed, "{again:?}");
    // web-2 moved to a newer openssl (still compliant): well inside the heartbeat, the
    // record is committed with the new version since now and the old one as earlier.
    let mut moved = observed("2026-11-16T02:20:00Z");
    let web2 = moved
        .hosts
        .iter_mut()
        .find(|h| h.name == "web-2")
        .expect("web-2");
    web2.installed = vec![common::report_fleet::pkg("openssl", "3.0.17-1~deb12u1")];
    let news = report::record_observation(
        dir.path(),
        &fleet,
        &moved,
        &desired,
        ts("2026-11-16T02:20:00Z"),
    )
    .expect("news");
    assert!(news.committed, "{news:?}");
    assert_eq!(git(dir.path(), &["rev-parse", BRANCH]).trim(), news.commit);
    let record = installed(dir.path());
    assert_eq!(record["packages"][0]["version"], "3.0.17-1~deb12u1");
    assert_eq!(record["packages"][0]["since"], "2026-11-16T02:20:00Z");
    assert_eq!(
        record["packages"][0]["earlier"][0]["version"],
        "3.0.16-1~deb12u1"
    );
    let changed = git(
        dir.path(),
        &["diff", "--name-only", &first.commit, &news.commit],
    );
    assert!(changed.contains("installed/web-2.json\n"), "{changed}");
    assert!(changed.contains("hosts/web-2.json\n"), "{changed}");
    assert!(!changed.contains("hosts/web-1.json"), "{changed}");
}

#[test]
fn a_changed_package_list_is_committed_and_an_unreachable_host_keeps_its_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "    heartbeat: 12h\n");
    let fleet = load(dir.path());
    let first = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    // A package no baseline names changed on web-2 (its compliance is the same): within
    // the heartbeat, still committed, and only web-2's list changed.
    let mut changed = observed("2026-11-16T02:10:00Z");
    let web2 = changed
        .hosts
        .iter_mut()
        .find(|h| h.name == "web-2")
        .unwrap();
    web2.installed
        .push(patchkeeper::observed::InstalledPackage {
            name: "curl".into(),
            version: "7.88.1-10+deb12u8".into(),
            arch: "amd64".into(),
            status: "ii".into(),
        });
    let second = report::record_observation(
        dir.path(),
        &fleet,
        &changed,
        &desired,
        ts("2026-11-16T02:10:00Z"),
    )
    .expect("second");
    assert!(second.committed, "{second:?}");
    let files = git(
        dir.path(),
        &["diff", "--name-only", &first.commit, &second.commit],
    );
    assert!(files.contains("packages/web-2.txt\n"), "{files}");
    assert!(!files.contains("packages/web-1.txt"), "{files}");
    assert_eq!(
        git(
            dir.path(),
            &["show", &format!("{BRANCH}:packages/web-2.txt")]
        ),
        "curl:amd64 7.88.1-10+deb12u8\nopenssl:amd64 3.0.16-1~deb12u1\n"
    );
    // The library reads the run back with both lists of each host.
    let report::RunLookup::Found(found) =
        report::run_packages(dir.path(), BRANCH, &second.run_id).expect("read")
    else {
        panic!("run {} not found", second.run_id);
    };
    assert_eq!(found.commit, second.commit);
    assert_eq!(found.parent.as_deref(), Some(first.commit.as_str()));
    let web2 = found.hosts.iter().find(|h| h.host == "web-2").unwrap();
    let changes = report::package_list::compare(
        web2.before.as_deref().unwrap(),
        web2.after.as_deref().unwrap(),
    );
    assert_eq!(changes.added.len(), 1);
    assert_eq!(changes.added[0].package, "curl");
    assert!(changes.removed.is_empty() && changes.changed.is_empty());
    let web1 = found.hosts.iter().find(|h| h.host == "web-1").unwrap();
    assert_eq!(web1.before, web1.after);

    // web-1 unreachable: its list stays as last observed.
    let mut down = observed("2026-11-16T02:20:00Z");
    let web1 = down.hosts.iter_mut().find(|h| h.name == "web-1").unwrap();
    web1.status = patchkeeper::observed::HostStatus::Unreachable {
        reason: patchkeeper::observed::FailureReason::Refused {
            address: "127.0.0.1:2298".into(),
        },
    };
    web1.installed.clear();
    let third = report::record_observation(
        dir.path(),
        &fleet,
        &down,
        &desired,
        ts("2026-11-16T02:20:00Z"),
    )
    .expect("third");
    assert!(third.committed);
    assert_eq!(read_host(dir.path(), "web-1")["state"], "unreachable");
    assert_eq!(
        git(
            dir.path(),
            &["show", &format!("{BRANCH}:packages/web-1.txt")]
        ),
        "libc6:amd64 2.36-9+deb12u7\nopenssl:amd64 3.0.15-1~deb12u1\n"
    );
}

#[test]
fn promotion_evidence_is_read_from_the_remote_reports_branch_not_a_stale_local_copy() {
    // Two controllers share the fleet and its reports remote: one reports staging (web-2),
    // the other plans production. The planner's local branch knows nothing of the other's
    // reports, so evidence must come from the remote's tip, fetched now; and when the
    // remote cannot be read, an error (nothing promoted), never the stale local copy.
    let root = tempfile::tempdir().expect("tempdir");
    let seed = root.path().join("seed");
    std::fs::create_dir(&seed).expect("mkdir");
    write_fleet(&seed, "    remote: origin\n    heartbeat: 0s\n");
    std::fs::write(
        seed.join("baselines/lab.yaml"),
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: lab}\nspec:\n  selector: {groups: [lab]}\n  updates: {classes: all}\n  promotion:\n    from: {hosts: [web-2]}\n    soak: 1d\n    minHosts: 1\n  window: always\n  rollout: one-by-one\n",
    )
    .expect("write baseline");
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "lab promotes from web-2"]);
    let bare = root.path().join("fleet.git");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &seed.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let (planner, _) = clone_with_fleet(&bare, &root.path().join("planner"));
    let (staging, desired) = clone_with_fleet(&bare, &root.path().join("staging"));
    let planner_fleet = load(&planner);
    // Nothing reported anywhere yet: no evidence, and no error.
    let none = patchkeeper::pipeline::promotion_evidence(&planner, &planner_fleet).expect("read");
    assert!(
        none.hosts.values().all(|h| h.versions.is_empty()),
        "{none:?}"
    );

    let rec = report::record_observation(
        &staging,
        &load(&staging),
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("staging reports");
    assert!(rec.pushed, "{rec:?}");
    // The planner's repository has no reports branch of its own (nor a tracking copy).
    assert!(git(&planner, &["branch", "-a"])
        .lines()
        .all(|l| !l.contains(BRANCH)));

    let evidence =
        patchkeeper::pipeline::promotion_evidence(&planner, &planner_fleet).expect("read");
    let web2 = evidence.hosts.get("web-2").expect("web-2's evidence");
    let openssl = web2.versions.get("openssl").expect("openssl recorded");
    assert_eq!(openssl.len(), 1, "{openssl:?}");
    assert_eq!(openssl[0].version, "3.0.16-1~deb12u1");
    assert_eq!(openssl[0].since, ts("2026-11-16T02:00:00Z"));
    // Reading created no local reports branch in the planner's repository (libgit2 may
    // update the remote-tracking copy, as `git fetch` does).
    assert!(git(&planner, &["branch"])
        .lines()
        .all(|l| !l.contains(BRANCH)));

    // The remote goes away: an error, so the caller promotes nothing.
    std::fs::rename(&bare, root.path().join("gone.git")).expect("rename");
    let err = patchkeeper::pipeline::promotion_evidence(&planner, &planner_fleet)
        .expect_err("the remote cannot be read");
    assert!(err.to_string().contains("fetch from origin"), "{err}");
}

#[test]
fn a_report_commit_rewrites_only_the_files_of_hosts_that_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "    heartbeat: 12h\n");
    let fleet = load(dir.path());
    let first = report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("first");
    // web-1 installed its pending security update; every other host is as it was.
    let changed = patched("2026-11-16T02:10:00Z");
    let second = report::record_observation(
        dir.path(),
        &fleet,
        &changed,
        &desired,
        ts("2026-11-16T02:10:00Z"),
    )
    .expect("second");
    assert!(second.committed, "{second:?}");
    assert_eq!(
        git(
            dir.path(),
            &["diff", "--name-only", &first.commit, &second.commit]
        ),
        format!(
            "hosts/web-1.json\npackages/web-1.txt\nruns/{}.json\nsummary.json\n",
            second.run_id
        )
    );
    // The unchanged hosts' entries point at the very blobs of the first commit.
    for path in [
        "hosts/web-2.json",
        "hosts/db-1.json",
        "hosts/lab-1.json",
        "packages/web-2.txt",
    ] {
        let blob = |commit: &str| git(dir.path(), &["rev-parse", &format!("{commit}:{path}")]);
        assert_eq!(blob(&first.commit), blob(&second.commit), "{path}");
    }
    assert_eq!(read_host(dir.path(), "web-1")["state"], "compliant");
}

/// Fencing (`serve --cluster`): a leader deposed by a newer term adds its run record but
/// leaves every host file, package list and the summary as the newer leader wrote them;
/// the newest term is found past commits of writers without one, and a rebuilt server's
/// terms (a newer epoch, revisions from 1 again) are newer than the old server's.
#[test]
fn a_deposed_leaders_late_report_keeps_what_the_newer_leader_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "    heartbeat: 0s\n");
    let fleet = load(dir.path());
    const EPOCH: u64 = 1_764_000_000;
    let term = |revision| report::LeaderTerm {
        epoch: EPOCH,
        revision,
    };
    let commit = |fence: Option<report::LeaderTerm>, obs: &patchkeeper::observed::ObservedFleet| {
        let now = ts(&obs.observed_at);
        let target = report::ReportTarget {
            fence,
            ..report::ReportTarget::from_fleet(dir.path(), &fleet)
        };
        let run = report::observation_run(obs, &desired, now);
        report::record(&target, &fleet, Some(obs), &run, now).expect("records")
    };
    let message = |c: &str| git(dir.path(), &["log", "-1", "--format=%B", c]);
    let first = commit(Some(term(9)), &observed("2026-11-16T02:00:00Z"));
    assert_eq!(first.deposed_by, None);
    assert!(message(&first.commit).contains(&format!("\nLeader-Term: {EPOCH}.9\n")));
    let pending = read_host(dir.path(), "web-1")["state"].clone();
    assert_ne!(pending, "compliant");
    // The leader of term 5, deposed while it ran, reports a later observation that
    // differs: its run record lands, nothing else changes.
    let late = commit(Some(term(5)), &patched("2026-11-16T02:10:00Z"));
    assert!(late.committed, "{late:?}");
    assert_eq!(late.deposed_by, Some(term(9)));
    assert_eq!(
        git(
            dir.path(),
            &["diff", "--name-only", &first.commit, &late.commit]
        ),
        format!("runs/{}.json\n", late.run_id)
    );
    let said = message(&late.commit);
    assert!(
        said.contains(&format!("\nDeposed-Leader-Term: {EPOCH}.5\n")),
        "{said}"
    );
    assert!(said.contains("Hosts-Changed: none\n"), "{said}");
    assert!(!said.contains("\nLeader-Term:"), "{said}");
    assert_eq!(read_host(dir.path(), "web-1")["state"], pending);
    // A writer without a term (`patchkeeper apply` by hand) is not fenced.
    let manual = commit(None, &patched("2026-11-16T02:20:00Z"));
    assert_eq!(manual.deposed_by, None);
    assert!(!message(&manual.commit).contains("Leader-Term"));
    assert_eq!(read_host(dir.path(), "web-1")["state"], "compliant");
    // Term 5 is still deposed: the newest term is found behind the unfenced commit.
    let again = commit(Some(term(5)), &observed("2026-11-16T02:30:00Z"));
    assert_eq!(again.deposed_by, Some(term(9)));
    assert_eq!(read_host(dir.path(), "web-1")["state"], "compliant");
    // A newer leader writes as usual.
    let next = commit(Some(term(10)), &observed("2026-11-16T02:40:00Z"));
    assert_eq!(next.deposed_by, None);
    assert!(message(&next.commit).contains(&format!("\nLeader-Term: {EPOCH}.10\n")));
    assert_eq!(read_host(dir.path(), "web-1")["state"], pending);
    // The server was rebuilt from nothing: its first leader's revision is small, its
    // epoch newer; it writes, and the old server's leader is deposed by it.
    let rebuilt = report::LeaderTerm {
        epoch: EPOCH + 86_400,
        revision: 2,
    };
    let fresh = commit(Some(rebuilt), &patched("2026-11-16T02:50:00Z"));
    assert_eq!(fresh.deposed_by, None);
    assert_eq!(read_host(dir.path(), "web-1")["state"], "compliant");
    let old = commit(Some(term(10)), &observed("2026-11-16T03:00:00Z"));
    assert_eq!(old.deposed_by, Some(rebuilt));
    assert_eq!(read_host(dir.path(), "web-1")["state"], "compliant");
}

/// A commit that writes no host file (a rejected desired commit) keeps every host file,
/// also one that does not parse: it is not its business to prune.
#[test]
fn a_rejection_keeps_every_host_file_even_an_unreadable_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_fleet(dir.path(), "");
    let fleet = load(dir.path());
    report::record_observation(
        dir.path(),
        &fleet,
        &observed("2026-11-16T02:00:00Z"),
        &desired,
        ts("2026-11-16T02:00:00Z"),
    )
    .expect("observation");
    // Someone committed a host file that does not parse.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let wt = elsewhere.path().join("wt");
    git(
        dir.path(),
        &["worktree", "add", "-q", &wt.display().to_string(), BRANCH],
    );
    std::fs::write(wt.join("hosts/ghost.json"), "{not json").expect("write");
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "a hand-made host file"]);
    let rejected = report::record_rejected(
        &report::ReportTarget::from_fleet(dir.path(), &fleet),
        "0123456789abcdef0123456789abcdef01234567",
        &["inventory/hosts.yaml:3:5: error".to_owned()],
        Some(&desired),
        ts("2026-11-16T02:10:00Z"),
    )
    .expect("rejection");
    let files = git(
        dir.path(),
        &["ls-tree", "--name-only", &rejected.commit, "hosts/"],
    );
    assert_eq!(
        files,
        "hosts/db-1.json\nhosts/ghost.json\nhosts/lab-1.json\nhosts/web-1.json\nhosts/web-2.json\n"
    );
}
