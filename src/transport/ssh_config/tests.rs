//! The reader against OpenSSH itself: every case is evaluated by [`resolve`] and by the real
//! `ssh -G -F FILE HOST`, and the options patchkeeper uses must agree.

use std::collections::BTreeMap;

use super::*;

/// `ssh -G` output as keyword → values (a keyword may repeat: identityfile).
fn ssh_g(config: &Path, host: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let out = std::process::Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg(host)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh (openssh-client) is installed: scripts/lab deps");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            map.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    Ok(map)
}

/// The passwd home `ssh` expands `~` to in the file options it prints expanded.
fn ssh_home() -> String {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let g = ssh_g(empty.path(), "x").unwrap();
    let kh = &g["userknownhostsfile"][0];
    kh.split(' ')
        .next()
        .unwrap()
        .trim_end_matches("/.ssh/known_hosts")
        .to_owned()
}

/// Our answer in `ssh -G`'s words, for the options patchkeeper acts on.
fn ours(
    files: &[ConfigFile],
    host: &str,
    home: &str,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let context = Context {
        local_user: "root".into(),
    };
    let r = resolve(files, host, &context).map_err(|e| e.to_string())?;
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut put = |k: &str, v: String| m.entry(k.to_owned()).or_default().push(v);
    put(
        "user",
        r.user.map(|u| u.value).unwrap_or_else(|| "root".into()),
    );
    put(
        "hostname",
        r.hostname
            .map(|h| h.value)
            .unwrap_or_else(|| host.to_ascii_lowercase()),
    );
    put("port", r.port.map(|p| p.value).unwrap_or(22).to_string());
    if r.identity_files.is_empty() {
        for d in [
            "id_rsa",
            "id_ecdsa",
            "id_ecdsa_sk",
            "id_ed25519",
            "id_ed25519_sk",
            "id_xmss",
            "id_dsa",
        ] {
            put("identityfile", format!("~/.ssh/{d}"));
        }
    }
    for f in r.identity_files {
        put("identityfile", f.value);
    }
    for f in r.certificate_files {
        put("certificatefile", f.value);
    }
    if let Some(j) = r.proxy_jump {
        if !j.value.eq_ignore_ascii_case("none") {
            put("proxyjump", normalized_jump(&j.value));
        }
    }
    if let Some(c) = r.proxy_command {
        put("proxycommand", c.value);
    }
    put(
        "connecttimeout",
        match r.connect_timeout.map(|c| c.value) {
            None | Some(None) => "none".into(),
            Some(Some(s)) => s.to_string(),
        },
    );
    put(
        "serveraliveinterval",
        r.server_alive_interval
            .map(|s| s.value)
            .unwrap_or(0)
            .to_string(),
    );
    let expand = |f: &str| match f.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => f.to_owned(),
    };
    put(
        "userknownhostsfile",
        match r.user_known_hosts_files {
            Some(v) => v
                .value
                .iter()
                .map(|f| expand(f))
                .collect::<Vec<_>>()
                .join(" "),
            None => format!("{home}/.ssh/known_hosts {home}/.ssh/known_hosts2"),
        },
    );
    put(
        "stricthostkeychecking",
        match r.strict_host_key_checking.map(|s| s.value) {
            Some(StrictHostKeyChecking::Yes) => "true",
            Some(StrictHostKeyChecking::No) => "false",
            Some(StrictHostKeyChecking::AcceptNew) => "accept-new",
            Some(StrictHostKeyChecking::Ask) | None => "ask",
        }
        .into(),
    );
    put(
        "identitiesonly",
        if r.identities_only.is_some_and(|v| v.value) {
            "yes"
        } else {
            "no"
        }
        .into(),
    );
    if let Some(a) = r.host_key_alias {
        put("hostkeyalias", a.value);
    }
    Ok(m)
}

/// A ProxyJump list as `ssh -G` prints it (parsed and written again).
fn normalized_jump(v: &str) -> String {
    match parse_proxy_jump(v) {
        Ok(hops) => hops
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => e,
    }
}

const COMPARED: &[&str] = &[
    "user",
    "hostname",
    "port",
    "identityfile",
    "certificatefile",
    "proxyjump",
    "proxycommand",
    "connecttimeout",
    "serveraliveinterval",
    "userknownhostsfile",
    "stricthostkeychecking",
    "identitiesonly",
    "hostkeyalias",
];

/// Writes `files` (name → text, `$DIR` replaced by the temp dir) and compares every host.
fn check(files: &[(&str, &str)], hosts: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text.replace("$DIR", &d)).unwrap();
    }
    let main = dir.path().join(files[0].0);
    let home = ssh_home();
    let allow = |_: &Path| Ok(());
    let loaded = load(
        &main,
        &LoadOptions {
            home: Path::new(&home),
            user_config: true,
            check: &allow,
        },
    );
    for host in hosts {
        let theirs = ssh_g(&main, host);
        let mine = loaded
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|f| ours(std::slice::from_ref(f), host, &home));
        match (theirs, mine) {
            (Ok(mut t), Ok(m)) => {
                if let Some(j) = t.get_mut("proxyjump") {
                    j[0] = normalized_jump(&j[0]);
                }
                for k in COMPARED {
                    assert_eq!(
                        t.get(*k),
                        m.get(*k),
                        "`{k}` for host `{host}` differs from ssh -G\nconfig:\n{}",
                        files[0].1
                    );
                }
            }
            (Err(_), Err(_)) => {}
            (t, m) => panic!(
                "host `{host}`: ssh -G says {t:?}\npatchkeeper says {m:?}\nconfig:\n{}",
                files[0].1
            ),
        }
    }
}

#[test]
fn host_patterns_negation_and_first_value_wins() {
    check(
        &[(
            "config",
            "# fleet\nHost web-* !web-9\n  User deploy\n  Port 2200\nHost web-1\n  User override\n  IdentityFile ~/.ssh/web1\nHost db?\n  HostName %h.internal\nHost *\n  IdentityFile ~/.ssh/all\n  ConnectTimeout=7\n  \"User\" fallback\n",
        )],
        &["web-1", "web-2", "web-9", "db1", "db10", "other", "WEB-1"],
    );
}

#[test]
fn separators_quotes_comments_and_case() {
    check(
        &[(
            "config",
            "Host WEB a b\n  User upper\nHost web\n  user = lower\n  Port=2201\n  HostName \"web.example\" # comment\nHost *\n  ConnectTimeout 5m\n  ServerAliveInterval 1m30s\nHost c\n  Port http\n",
        )],
        &["web", "WEB", "a", "b", "c"],
    );
}

#[test]
fn match_host_sees_hostname_set_so_far() {
    check(
        &[(
            "config",
            "Host db\n  HostName 10.1.2.3\nMatch host 10.1.2.*\n  User matched\nMatch host *.internal user deploy\n  Port 2222\nHost app\n  HostName app.internal\nMatch originalhost app\n  User app-orig\nMatch !host 10.*,*.internal\n  Port 2300\nHost *\n  User fallback\n",
        )],
        &["db", "app", "other", "10.1.2.9"],
    );
}

#[test]
fn match_user_and_localuser() {
    check(
        &[(
            "config",
            "Host a\n  User deploy\nMatch user deploy\n  Port 2001\nMatch localuser root\n  IdentityFile ~/.ssh/local_root\nMatch user root\n  Port 2002\nMatch all\n  ConnectTimeout 9\n",
        )],
        &["a", "b"],
    );
}

#[test]
fn includes_are_conditional_and_keep_the_includers_state() {
    check(
        &[
            (
                "config",
                "Include $DIR/top.conf\nHost inc\n  Include $DIR/conf.d/*.conf\nHost after\n  User after-user\nHost *\n  User fallback\n",
            ),
            (
                "top.conf",
                "Host top\n  HostName top.example\n  ProxyJump jumper@bastion:2222,second\n",
            ),
            ("conf.d/10-a.conf", "User from-a\nHost never\n  Port 1111\n"),
            ("conf.d/20-b.conf", "User from-b\nPort 2020\n"),
            ("conf.d/.hidden.conf", "Port 9999\n"),
        ],
        &["top", "inc", "after", "never", "x"],
    );
}

#[test]
fn proxy_jump_and_proxy_command_compete() {
    check(
        &[(
            "config",
            "Host a\n  ProxyJump none\nHost b\n  ProxyCommand ssh -W %h:%p gw\nHost a b c\n  ProxyJump j1,ssh://u@j2:2022\nHost d\n  ProxyJump [::1]:2022\n",
        )],
        &["a", "b", "c", "d"],
    );
}

#[test]
fn identity_files_certificates_and_host_keys() {
    check(
        &[(
            "config",
            "Host a\n  IdentityFile ~/.ssh/a\n  IdentityFile ~/.ssh/%h_%r\n  IdentityFile ~/.ssh/a\n  CertificateFile ~/.ssh/a-cert.pub\n  IdentitiesOnly yes\n  UserKnownHostsFile ~/kh1 \"/x y/kh2\"\n  StrictHostKeyChecking accept-new\n  HostKeyAlias a-alias\nHost b\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\nHost c\n  StrictHostKeyChecking yes\n  ConnectTimeout 0\nHost *\n  IdentityFile ~/.ssh/common\n",
        )],
        &["a", "b", "c", "d"],
    );
}

#[test]
fn bad_lines_are_errors_as_in_openssh() {
    for bad in [
        "Host a\n  User x y\n",
        "Host a\n  Bogus 1\n",
        "Host a\n  Port 0\n",
        "Host a\n  Port nosuchservice\n",
        "Host a\n  IdentitiesOnly maybe\n",
        "Host a\n  StrictHostKeyChecking perhaps\n",
        "Match\n",
    ] {
        check(&[("config", bad)], &["a"]);
        let e = parse_str(bad, Path::new("cfg")).unwrap_err();
        assert!(e.to_string().starts_with("cfg:"), "{e}");
    }
    // IgnoreUnknown lets a keyword through, as in OpenSSH.
    check(
        &[(
            "config",
            "IgnoreUnknown Bogus*\nHost a\n  BogusOption 1\n  User u\n",
        )],
        &["a"],
    );
}

#[test]
fn what_patchkeeper_cannot_honour_fails_the_host_with_its_place() {
    let ctx = Context {
        local_user: "root".into(),
    };
    let f = parse_str(
        "Host a\n  ProxyCommand nc %h %p\nMatch exec \"true\"\n  User x\nHost c\n  CanonicalizeHostname yes\n",
        Path::new("cfg"),
    )
    .unwrap();
    // ProxyCommand is reported to the caller (which refuses the host).
    let r = resolve(std::slice::from_ref(&f), "a", &ctx);
    let e = r.unwrap_err().to_string();
    assert_eq!(
        e,
        "cfg:3: Match exec is not supported by patchkeeper; use Host or Match host"
    );
    let f = parse_str(
        "Host a\n  ProxyCommand nc %h %p\nHost c\n  CanonicalizeHostname yes\n",
        Path::new("cfg"),
    )
    .unwrap();
    let r = resolve(std::slice::from_ref(&f), "a", &ctx).unwrap();
    assert_eq!(r.proxy_command.unwrap().value, "nc %h %p");
    let e = resolve(std::slice::from_ref(&f), "c", &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cfg:4: CanonicalizeHostname is not supported by patchkeeper; write the full names in HostName"
    );
}

#[test]
fn includes_ask_the_check_first_and_stop_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("config");
    std::fs::write(&main, "Include /etc/shadow\n").unwrap();
    let refuse = |p: &Path| {
        if p.starts_with(dir.path()) {
            Ok(())
        } else {
            Err(format!("`{}` is outside", p.display()))
        }
    };
    let home = dir.path().to_path_buf();
    let options = LoadOptions {
        home: &home,
        user_config: true,
        check: &refuse,
    };
    let e = load(&main, &options).unwrap_err();
    assert_eq!(e.to_string(), "`/etc/shadow` is outside");
    std::fs::write(&main, format!("Include {}\n", main.display())).unwrap();
    assert!(matches!(
        load(&main, &options).unwrap_err(),
        SshConfigError::TooDeep { .. }
    ));
    // Relative includes of a user configuration live in ~/.ssh.
    std::fs::create_dir(dir.path().join(".ssh")).unwrap();
    std::fs::write(dir.path().join(".ssh/extra"), "Port 2345\n").unwrap();
    std::fs::write(&main, "Include extra\n").unwrap();
    let f = load(&main, &options).unwrap();
    let r = resolve(
        &[f],
        "h",
        &Context {
            local_user: "root".into(),
        },
    )
    .unwrap();
    assert_eq!(r.port.unwrap().value, 2345);
}

#[test]
fn path_tokens_and_tilde() {
    let tokens = Tokens {
        home: Path::new("/home/op"),
        local_user: "op",
        hostname: "web.example",
        original_host: "web",
        remote_user: "deploy",
        port: 2200,
    };
    assert_eq!(
        expand_path("~/.ssh/%h_%r_%p_%n_%u_%d%%", &tokens).unwrap(),
        PathBuf::from("/home/op/.ssh/web.example_deploy_2200_web_op_/home/op%")
    );
    assert!(expand_path("~other/key", &tokens).is_err());
    assert!(expand_path("/k/%C", &tokens).is_err());
}

#[test]
fn proxy_jump_lists() {
    assert_eq!(parse_proxy_jump("none").unwrap(), vec![]);
    let hops = parse_proxy_jump("a,u@b:2022,ssh://v@[::1]:23,[fe80::1]").unwrap();
    assert_eq!(
        hops.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        ["a", "u@b:2022", "v@[::1]:23", "[fe80::1]"]
    );
    assert!(parse_proxy_jump("a,,b").is_err());
    assert!(parse_proxy_jump("a:99999").is_err());
}
