//! known_hosts lookups (plain, `[host]:port`, wildcards, negation, hashed `|1|` names,
//! `@revoked`, `@cert-authority`) on any file: never a panic, and a file with the exact
//! record appended vouches for that key (known, or revoked by a marker).
//!
//! Input: a first line `NAME KEYTYPE KEY` (the host being checked and the key it offers),
//! then the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchkeeper::transport::known_hosts::{self, Verdict};

fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(|c: char| c.is_whitespace() || c == ',')
        && !s.starts_with(['!', '@', '#', '|'])
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (query, contents) = text.split_once('\n').unwrap_or((&text, ""));
    let mut q = query.split_ascii_whitespace();
    let name = q.next().unwrap_or("host");
    let key_type = q.next().unwrap_or("ssh-ed25519");
    let key = q.next().unwrap_or("AAAA");
    for name in [name.to_string(), known_hosts::lookup_name(name, 2222)] {
        let verdict = known_hosts::check(contents, &name, key_type, key);
        let types = known_hosts::recorded_types(contents, &name);
        if verdict == Verdict::Known {
            assert!(
                types.iter().any(|t| t == key_type),
                "known but type not recorded"
            );
        }
        if let Verdict::Changed { line } | Verdict::Revoked { line } = verdict {
            assert!(line >= 1 && line <= contents.lines().count());
            let _ = known_hosts::recorded_fingerprint(contents, line);
        }
        let _ = known_hosts::authorities(contents, &name);
        let _ = known_hosts::recorded_fingerprint(contents, 0);
        if plain(&name) && plain(key_type) && plain(key) {
            let with = format!("{contents}\n{name} {key_type} {key}\n");
            let verdict = known_hosts::check(&with, &name, key_type, key);
            assert!(
                matches!(verdict, Verdict::Known | Verdict::Revoked { .. }),
                "the exact record appended gives {verdict:?}"
            );
            assert!(known_hosts::recorded_types(&with, &name)
                .iter()
                .any(|t| t == key_type));
        }
    }
});
