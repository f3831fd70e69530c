//! `patchkeeper import ansible`: an Ansible inventory as an Inventory document.

use std::path::PathBuf;

/// What to import.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Convert an Ansible inventory (INI, YAML, or dynamic-inventory JSON such as
    /// `ansible-inventory --list` prints) into an Inventory document.
    ///
    /// Groups (children flattened into membership), hosts and the connection variables
    /// patchkeeper has equivalents for are imported, with Ansible's precedence (all, parent
    /// groups, child groups, host): ansible_host, ansible_port, ansible_user,
    /// ansible_ssh_private_key_file, ansible_become (as `ssh.sudo`), ansible_connection=local,
    /// and jump hosts in ansible_ssh_common_args/extra_args (-J, ProxyJump, a `ssh -W %h:%p`
    /// ProxyCommand). Everything else is listed, on stderr and at the top of the document, as
    /// not imported; passwords are never copied. To read a cloud inventory at every run
    /// instead of copying it, use an Inventory's `spec.ansible` source.
    #[command(
        after_long_help = concat!("Examples:\n  patchkeeper import ansible hosts.ini --out inventory/ansible.yaml\n  ansible-inventory -i aws_ec2.yml --list > aws.json && patchkeeper import ansible aws.json --labels env\n\nExit codes:\n  0  imported (what could not be is listed on stderr)\n  1  the inventory cannot be read or parsed, or the output cannot be written\n",
        usage_exit!()
    ))]
    Ansible(AnsibleArgs),
}

/// Flags of `patchkeeper import ansible`.
#[derive(Debug, clap::Args)]
pub struct AnsibleArgs {
    /// The Ansible inventory file (`-` for standard input).
    #[arg(value_name = "INVENTORY")]
    inventory: PathBuf,
    /// Write the Inventory document here (e.g. `inventory/ansible.yaml`, replaced if it
    /// exists) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The document's `metadata.name`.
    #[arg(long, value_name = "NAME", default_value = "ansible")]
    name: String,
    /// Variables to import as host labels (comma-separated), for baseline selectors.
    #[arg(long, value_name = "VAR,...", value_delimiter = ',')]
    labels: Vec<String>,
}

/// Runs `patchkeeper import`; returns the exit code.
pub fn run(command: Command) -> u8 {
    match command {
        Command::Ansible(args) => ansible(args),
    }
}

fn ansible(args: AnsibleArgs) -> u8 {
    let shown = args.inventory.display().to_string();
    let text = if shown == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => s,
            Err(e) => {
                eprintln!("error: cannot read standard input: {e}");
                return super::EXIT_ERROR;
            }
        }
    } else if args.inventory.is_dir() {
        eprintln!(
            "error: `{shown}` is a directory; name the inventory file in it\n\nhint: for an inventory of several files, run `ansible-inventory -i {shown} --list > inventory.json` and import that"
        );
        return super::EXIT_ERROR;
    } else {
        match std::fs::read_to_string(&args.inventory) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{shown}`: {e}");
                return super::EXIT_ERROR;
            }
        }
    };
    let format = crate::ansible::detect(&text);
    let inventory = match crate::ansible::parse(&text, format) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: `{shown}` ({format:?} inventory): {e}");
            return super::EXIT_ERROR;
        }
    };
    let imported = crate::ansible::convert(
        &inventory,
        &crate::ansible::Options {
            labels: args.labels.clone(),
        },
    );
    let document = crate::ansible::render(&imported, &args.name, &shown);
    let summary = format!(
        "{} host{} in {} group{}",
        imported.spec.hosts.len(),
        if imported.spec.hosts.len() == 1 {
            ""
        } else {
            "s"
        },
        imported.spec.groups.len(),
        if imported.spec.groups.len() == 1 {
            ""
        } else {
            "s"
        },
    );
    for l in &imported.lossy {
        eprintln!("warning: {}", crate::terminal::escape(l));
    }
    match &args.out {
        Some(out) => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    eprintln!("error: cannot create `{}`: {e}", parent.display());
                    return super::EXIT_ERROR;
                }
            }
            if let Err(e) = std::fs::write(out, &document) {
                eprintln!("error: cannot write `{}`: {e}", out.display());
                return super::EXIT_ERROR;
            }
            eprintln!(
                "Imported {summary} from `{shown}` into `{}`{}",
                out.display(),
                if imported.lossy.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} thing{} not imported (listed above and at the top of the file)",
                        imported.lossy.len(),
                        if imported.lossy.len() == 1 { "" } else { "s" }
                    )
                }
            );
        }
        None => {
            print!("{document}");
            eprintln!("Imported {summary} from `{shown}`");
        }
    }
    super::EXIT_OK
}
