//! `examples/ci/`: the `patchkeeper` commands the GitLab CI file and the GitHub Actions
//! workflow run, run in the same order against a lab fleet: validate, the markdown plan
//! saved for a comment, and after merge the saved plan applied until the fleet converges.
//! (Posting the comment needs GitLab or GitHub and is not run here.)

mod common;

use common::cli::text;
use common::lab::Lab;

/// The `patchkeeper` command lines of a CI file, in order.
fn commands(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let body = std::fs::read_to_string(&path).expect("CI file");
    body.lines()
        .map(|l| l.trim().trim_start_matches("- ").trim())
        .filter(|l| l.starts_with("patchkeeper "))
        .map(str::to_owned)
        .collect()
}

fn sh(lab: &Lab, line: &str) -> std::process::Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_patchkeeper"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("sh")
        .args(["-c", line])
        .current_dir(lab.dir())
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh")
}

#[test]
fn the_ci_files_commands_validate_plan_and_apply_the_lab() {
    let gitlab = commands("examples/ci/gitlab-ci.yml");
    let github = commands("examples/ci/github-actions.yml");
    for cmds in [&gitlab, &github] {
        assert!(
            cmds.iter()
                .any(|c| c.contains("plan") && c.contains("--format markdown")),
            "{cmds:?}"
        );
        assert!(cmds.iter().any(|c| c.contains("apply")), "{cmds:?}");
    }
    let lab = Lab::up(1, 1);
    for (file, cmds) in [("gitlab", &gitlab), ("github", &github)] {
        for line in cmds.iter() {
            let out = sh(&lab, line);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{file}: `{line}`: {}",
                text(&out)
            );
            if line.contains("> plan.md") {
                let md = std::fs::read_to_string(lab.dir().join("plan.md")).expect("plan.md");
                assert!(md.starts_with("<!-- patchkeeper-plan -->\n"), "{md}");
                if file == "gitlab" {
                    // The first run has the lab's security updates to plan.
                    assert!(md.contains("#### Batches"), "{md}");
                }
            }
        }
        // Converged: nothing left to apply.
        let out = sh(&lab, "patchkeeper plan --repo . --detailed-exitcode");
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out));
    }
}
