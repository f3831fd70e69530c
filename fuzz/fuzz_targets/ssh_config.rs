//! ssh_config(5) files as `ssh -G` reads them (Host, Match, first value wins, ProxyJump,
//! `%` tokens): never a panic. Input: a first line naming the destination host, then the
//! file; what it resolves to is then used as the connection code uses it.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchkeeper::transport::ssh_config::{self, Context, Tokens};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (host, file) = text.split_once('\n').unwrap_or(("host", &text));
    let Ok(config) = ssh_config::parse_str(file, Path::new("/home/fuzz/.ssh/config")) else {
        return;
    };
    let context = Context {
        local_user: "fuzz".into(),
    };
    let Ok(resolved) = ssh_config::resolve(&[config], host, &context) else {
        return;
    };
    if let Some(jump) = &resolved.proxy_jump {
        if let Ok(hops) = ssh_config::parse_proxy_jump(&jump.value) {
            for hop in hops {
                let _ = hop.to_string();
            }
        }
    }
    let hostname = resolved
        .hostname
        .as_ref()
        .map_or(host, |h| h.value.as_str());
    let user = resolved.user.as_ref().map_or("fuzz", |u| u.value.as_str());
    let tokens = Tokens {
        home: Path::new("/home/fuzz"),
        local_user: "fuzz",
        hostname,
        original_host: host,
        remote_user: user,
        port: resolved.port.as_ref().map_or(22, |p| p.value),
    };
    for f in resolved
        .identity_files
        .iter()
        .chain(&resolved.certificate_files)
    {
        let _ = ssh_config::expand_path(&f.value, &tokens);
    }
    for files in [
        &resolved.user_known_hosts_files,
        &resolved.global_known_hosts_files,
    ]
    .into_iter()
    .flatten()
    {
        for f in &files.value {
            let _ = ssh_config::expand_path(f, &tokens);
        }
    }
});
