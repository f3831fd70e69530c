//! `patchkeeper completions SHELL` (clap_complete) and the hidden `manpages --out DIR`
//! (clap_mangen: one page per command, as `patchkeeper-plan.1`), used by `scripts/package`.

use std::path::PathBuf;

use clap::CommandFactory;

/// Flags of `patchkeeper completions`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Install, for example:\n  patchkeeper completions bash > /etc/bash_completion.d/patchkeeper\n  patchkeeper completions zsh > \"${fpath[1]}/_patchkeeper\"\n  patchkeeper completions fish > ~/.config/fish/completions/patchkeeper.fish\n\nThe Debian package installs them for bash, zsh and fish.\n\nExit codes:\n  0  printed\n",
    usage_exit!()
))]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Flags of `patchkeeper manpages`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script; returns the exit code.
pub fn run(args: Args) -> u8 {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "patchkeeper", &mut std::io::stdout());
    super::EXIT_OK
}

/// Writes `patchkeeper.1` and a page per subcommand (`patchkeeper-plan.1`,
/// `patchkeeper-version-compare.1`, ...); returns the exit code.
pub fn manpages(args: ManArgs) -> u8 {
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: cannot create `{}`: {e}", args.out.display());
        return super::EXIT_ERROR;
    }
    let mut cmd = super::Cli::command();
    cmd.build();
    let mut written = 0;
    if let Err(e) = write_pages(&cmd, "patchkeeper", &args.out, &mut written) {
        eprintln!("error: {e}");
        return super::EXIT_ERROR;
    }
    eprintln!("wrote {written} man pages to `{}`", args.out.display());
    super::EXIT_OK
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    written: &mut usize,
) -> Result<(), String> {
    let page = cmd.clone().name(name.to_owned());
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| format!("rendering {name}: {e}"))?;
    std::fs::write(&path, out).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
