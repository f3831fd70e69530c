//! `patchkeeper import ansible` and the Inventory's `spec.ansible` source: INI, YAML and
//! dynamic-inventory JSON, as detected and in each format, converted with Ansible's variable
//! precedence and rendered as an Inventory document. Never a panic, and the rendered
//! document is YAML the fleet loader reads (no syntax error).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchkeeper::ansible::{self, Format, Options};
use patchkeeper::diagnostic::Code;
use patchkeeper::fleet::{self, Fleet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let detected = ansible::detect(&text);
    for format in [Format::Ini, Format::Yaml, Format::Json] {
        let Ok(inventory) = ansible::parse(&text, format) else {
            continue;
        };
        let imported = ansible::convert(
            &inventory,
            &Options {
                labels: vec!["env".into(), "role".into()],
            },
        );
        if format != detected {
            continue;
        }
        let document = ansible::render(&imported, "imported", "inventory");
        let mut fleet = Fleet::default();
        let mut diags = Vec::new();
        fleet::add_file(
            &mut fleet,
            &mut diags,
            Path::new("inventory.yaml"),
            &document,
        );
        assert!(
            !diags.iter().any(|d| d.code == Code::YamlSyntax),
            "the imported inventory is not YAML: {diags:?}\n{document}"
        );
    }
    let _ = ansible::expand_range(text.lines().next().unwrap_or(""));
});
