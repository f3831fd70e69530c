//! The README's "Try it on one machine" block, run exactly as written (issue 21): a new
//! user copies it, so it must work — the binary built and on PATH, the lab up, every
//! command succeeding — and tear its lab down.

use std::process::{Command, Stdio};

/// The first ```sh block after the "Try it on one machine" heading.
fn try_it_block(readme: &str) -> String {
    let section = readme
        .split("## Try it on one machine")
        .nth(1)
        .expect("README has the Try it section");
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("the block ends");
    section[start..start + len].to_owned()
}

#[test]
fn the_readme_try_it_block_runs_as_written() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let block = try_it_block(&readme);
    assert!(block.contains("patchkeeper plan"), "{block}");
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &block])
        .current_dir(root)
        // The lab goes away with this test process should the block stop half-way.
        .env("PATCHKEEPER_LAB_OWNER_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README block failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok: the fleet repo is valid"), "{stdout}");
    assert!(stdout.contains("Plan: "), "{stdout}");
    assert!(stdout.contains("libpk"), "{stdout}");
    assert!(!stderr.contains("command not found"), "{stderr}");
}
