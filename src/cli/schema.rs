//! `patchkeeper schema`: write the JSON Schemas of every document kind, and the HTTP
//! API's OpenAPI document.

use std::path::PathBuf;

/// Flags of `patchkeeper schema`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = concat!(
    "Exit codes:\n  0  the schema files were written (or, without --out, listed)\n  1  error: the directory or a file cannot be written\n",
    usage_exit!()
))]
pub struct Args {
    /// Directory to write `*.schema.json` into (created if missing). Without it, the
    /// schema file names are listed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `patchkeeper schema`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let mut files = crate::schema::all_schema_files();
    files.insert(
        crate::service::openapi::FILE,
        crate::service::openapi::document_text(),
    );
    let Some(dir) = args.out else {
        for name in files.keys() {
            println!("{name}");
        }
        return super::EXIT_OK;
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create `{}`: {e}", dir.display());
        return super::EXIT_ERROR;
    }
    for (name, text) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return super::EXIT_ERROR;
        }
        println!("wrote {}", path.display());
    }
    super::EXIT_OK
}
