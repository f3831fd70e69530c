//! Secrets never leave their files (issue 12, `docs/security.md`): every command runs with
//! `-vvv` (trace logs, russh's included) against a real lab host, with a known SSH private
//! key, a Git token in the environment and a password in a remote URL, and then every byte
//! of output and every file the runs wrote (plans, observed state, the journal, the reports
//! branch with its commit messages, caches) is searched for them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use common::cli::text;
use common::lab::{write, Lab};

const TOKEN: &str = "pk-test-token-7f3a9c2e51d04b8a";
const URL_PASSWORD: &str = "url-pass-5e8d1c7a93b2";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of the private key that hold secret material: the base64 body after its
/// first lines (which carry the header and the public key, not secret).
fn private_key_lines(key: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(key).unwrap();
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(body.len() > 4, "{pem}");
    body[3..]
        .iter()
        .filter(|l| l.len() >= 16)
        .map(|l| l.to_string())
        .collect()
}

fn files_under(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.file_name() == *s))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn no_secret_reaches_output_logs_reports_or_the_journal() {
    let lab = Lab::up(1, 0);
    let dir = lab.dir().to_path_buf();
    let key_lines = private_key_lines(&lab.info().ssh.identity_file);
    let remote = format!("https://ci:{URL_PASSWORD}@127.0.0.1:1/reports.git");
    // Reports go to a remote whose URL holds a password (nothing listens there); the
    // baseline asks for one upgrade, so apply really installs.
    let settings = std::fs::read_to_string(dir.join("patchkeeper.yaml")).unwrap();
    write(
        &lab,
        "patchkeeper.yaml",
        &format!("{settings}  reports:\n    remote: {remote}\n"),
    );
    write(
        &lab,
        "baselines/lab.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: lab\nspec:\n  selector:\n    groups: [debian]\n  updates:\n    classes: none\n  window: always\n  rollout: lab\n  packages:\n    - name: libpk\n      minVersion: \"1.2-1\"\n",
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "secrets test"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let p = |s: &str| w.join(s).display().to_string();
    let source_url = format!("https://ci:{URL_PASSWORD}@127.0.0.1:1/fleet.git");
    let runs: Vec<Vec<String>> = vec![
        vec!["validate".into()],
        vec![
            "observe".into(),
            "--no-refresh".into(),
            "--out".into(),
            p("observed.json"),
        ],
        vec![
            "--log-format".into(),
            "json".into(),
            "observe".into(),
            "--no-refresh".into(),
            "--no-report".into(),
        ],
        vec![
            "plan".into(),
            "--observed".into(),
            p("observed.json"),
            "--json".into(),
        ],
        vec!["plan".into(), "--out".into(), p("plan.json")],
        vec!["apply".into(), p("plan.json")],
        vec!["apply".into(), "--auto-approve".into()],
        vec!["report".into()],
        vec!["report".into(), "--json".into()],
        vec!["windows".into()],
        vec!["schema".into(), "--out".into(), p("schemas")],
        vec![
            "version".into(),
            "compare".into(),
            "--ecosystem".into(),
            "deb".into(),
            "1.0".into(),
            "1.1".into(),
        ],
        vec![
            "serve".into(),
            "--once".into(),
            "--repo".into(),
            dir.display().to_string(),
            "--cache".into(),
            p("cache-local"),
        ],
        vec![
            "serve".into(),
            "--once".into(),
            "--repo".into(),
            source_url.clone(),
            "--cache".into(),
            p("cache-remote"),
        ],
    ];
    let mut outputs: Vec<(String, Output)> = Vec::new();
    for args in &runs {
        let out = Command::cargo_bin("patchkeeper")
            .unwrap()
            .arg("-vvv")
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env("PATCHKEEPER_GIT_TOKEN", TOKEN)
            .env("PATCHKEEPER_GIT_TOKEN_HOST", "127.0.0.1:1")
            .env("PATCHKEEPER_GIT_TIMEOUT", "5s")
            .stdin(Stdio::null())
            .output()
            .expect("patchkeeper runs");
        outputs.push((args.join(" "), out));
    }
    // The runs did what they claim (so the search below is not vacuous).
    let all_text: String = outputs
        .iter()
        .map(|(cmd, o)| format!("=== {cmd}\n{}\n", text(o)))
        .collect();
    let code = |i: usize| outputs[i].1.status.code();
    assert_eq!(code(1), Some(0), "observe: {all_text}");
    assert_eq!(code(5), Some(0), "apply PLAN: {all_text}");
    assert!(all_text.contains("TRACE"), "trace logs are on: {all_text}");
    assert!(
        all_text.contains("https://***@127.0.0.1:1/reports.git")
            && all_text.contains("https://***@127.0.0.1:1/fleet.git"),
        "the URLs were printed, redacted: {all_text}"
    );
    assert!(
        all_text.contains("warning: the run was not reported"),
        "the push was tried: {all_text}"
    );

    let mut secrets: Vec<(&str, String)> = vec![
        ("the Git token", TOKEN.to_string()),
        ("the URL password", URL_PASSWORD.to_string()),
        ("a private key header", "PRIVATE KEY".to_string()),
    ];
    secrets.extend(key_lines.iter().map(|l| ("a private key line", l.clone())));

    // Output of every command.
    for (cmd, out) in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            let s = String::from_utf8_lossy(stream);
            for (what, secret) in &secrets {
                assert!(
                    !s.contains(secret.as_str()),
                    "{what} in the output of `{cmd}`"
                );
            }
        }
    }
    // Every file written: the fleet repo's state (journal, lock, plans), the work dir
    // (observed state, plans, schemas, caches), and the reports branch with its messages.
    // `patchkeeper.yaml` is the input that holds the URL (and the serve caches check it
    // out verbatim): not something patchkeeper wrote.
    let mut files = files_under(&dir, &[".lab", ".git", "patchkeeper.yaml"]);
    files.extend(files_under(w, &["patchkeeper.yaml"]));
    let mut searched = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let s = String::from_utf8_lossy(&bytes);
        for (what, secret) in &secrets {
            assert!(!s.contains(secret.as_str()), "{what} in {}", f.display());
        }
        searched += 1;
    }
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(".patchkeeper/journal.jsonl")),
        "the journal was written: {files:?}"
    );
    assert!(searched > 10, "{files:?}");
    // What patchkeeper committed: the reports branch, files and messages.
    let history = git(
        &dir,
        &["log", "-p", "--format=%H%n%B", "patchkeeper/reports"],
    );
    assert!(
        history.contains("Desired-Commit:"),
        "reports were committed"
    );
    for (what, secret) in &secrets {
        assert!(
            !history.contains(secret.as_str()),
            "{what} in the Git history"
        );
    }
    // The serve caches hold Git objects too: their text.
    for cache in ["cache-local", "cache-remote"] {
        let cache = w.join(cache);
        if cache.exists() {
            for f in files_under(&cache, &["patchkeeper.yaml"]) {
                let s =
                    String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
                for (what, secret) in &secrets {
                    assert!(!s.contains(secret.as_str()), "{what} in {}", f.display());
                }
            }
        }
    }
}
