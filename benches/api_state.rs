//! Makes the fleet state `benches/api.sh` serves: a fleet repo of N hosts (inventory files
//! of 5,000 hosts) whose Settings accept one API token, and a reports branch holding a real
//! report of every host (evaluated from the synthetic observed state the other benchmarks
//! use: 1,500 installed packages and 50 pending updates per host), then a bare clone of it
//! for `serve --repo file://…`.
//!
//! Run (what `benches/api.sh` does):
//! `cargo bench --bench api_state -- DIR HOSTS TOKEN_SHA256 [branch|direct]`

use std::path::Path;
use std::process::Command;

use patchkeeper::report;

mod synthetic;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn main() {
    // `cargo bench` adds `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // `cargo test --benches` (the suite) runs this with no arguments: build a small state
    // in a temporary directory, so the generator is exercised and cannot rot unnoticed.
    let smoke = tempfile::tempdir().expect("tempdir");
    let args = if args.is_empty() && !std::env::args().any(|a| a == "--bench") {
        vec![
            smoke.path().display().to_string(),
            "20".to_owned(),
            "ab".repeat(32),
        ]
    } else {
        args
    };
    let [dir, hosts, sha, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench api_state -- DIR HOSTS TOKEN_SHA256 [branch|direct]");
        std::process::exit(2);
    };
    let hosts: usize = hosts.parse().expect("HOSTS is a number");
    let mode = rest.first().map(String::as_str).unwrap_or("branch");
    let root = Path::new(dir);
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    write(
        &work,
        "patchkeeper.yaml",
        &format!("apiVersion: patchkeeper.dev/v1\nkind: Settings\nmetadata: {{name: bench}}\nspec:\n  api:\n    requests: {mode}\n    tokens:\n      - {{name: bench, sha256: {sha}, scopes: [admin]}}\n"),
    );
    for chunk in 0..hosts.div_ceil(5_000) {
        let mut inv = format!(
            "apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata: {{name: inv-{chunk}}}\nspec:\n"
        );
        if chunk == 0 {
            inv.push_str("  groups: [{name: web}, {name: db}]\n");
        }
        inv.push_str("  hosts:\n");
        for i in chunk * 5_000..((chunk + 1) * 5_000).min(hosts) {
            let (group, env) = if i % 3 == 0 {
                ("db", "prod")
            } else {
                ("web", "staging")
            };
            inv.push_str(&format!(
                // Loopback, port 1: a stray observation is refused at once, never leaves
                // the machine.
                "    - {{name: host-{i:05}, address: 127.{}.{}.{}, packageManager: apt, groups: [{group}], labels: {{env: {env}}}, ssh: {{port: 1}}}}\n",
                1 + i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        write(&work, &format!("inventory/inv-{chunk}.yaml"), &inv);
    }
    write(&work, "baselines/all.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata: {name: all}\nspec:\n  selector: {groups: [web, db]}\n  packages:\n    - {name: pkg-0007, minVersion: \"1.0-2\"}\n  updates: {classes: security}\n  window: always\n  rollout: all\n");
    write(&work, "windows/always.yaml", "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata: {name: always}\nspec:\n  alwaysOpen: true\n");
    write(&work, "rollouts/all.yaml", "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata: {name: all}\nspec:\n  stages:\n    - {name: all, size: \"100%\"}\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "bench fleet"]);
    let outcome = patchkeeper::validate::load_and_validate(&work).expect("loads");
    let fleet = outcome
        .fleet
        .unwrap_or_else(|| panic!("invalid: {:?}", outcome.diagnostics));
    let commit = fleet.fleet().commit.clone().expect("a Git repository");
    let observed = synthetic::observed(hosts);
    let began = std::time::Instant::now();
    let rec = report::record_observation(&work, &fleet, &observed, &commit, jiff::Timestamp::now())
        .expect("the report is recorded");
    eprintln!(
        "api_state: {hosts} hosts, report {} in {:.1}s",
        rec.commit,
        began.elapsed().as_secs_f64()
    );
    let bare = root.join("fleet.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", bare.display());
}
