use super::*;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn resolve_in(
    repo: &Path,
    fleet: &SshSettings,
    host_ssh: Option<&SshSettings>,
    host: &str,
    address: Option<&str>,
    trust: &ControllerTrust,
) -> Result<SshOptions, TargetError> {
    let merged = match host_ssh {
        Some(h) => SshSettings {
            user: h.user.clone().or(fleet.user.clone()),
            port: h.port.or(fleet.port),
            identity_file: h.identity_file.clone().or(fleet.identity_file.clone()),
            known_hosts: h.known_hosts.clone().or(fleet.known_hosts.clone()),
            proxy_jump: h.proxy_jump.clone().or(fleet.proxy_jump.clone()),
            config_file: h.config_file.clone().or(fleet.config_file.clone()),
            ..fleet.clone()
        },
        None => fleet.clone(),
    };
    let configs = SshConfigs::load(repo, &merged, host, trust)?;
    ssh_options(
        &Request {
            repo,
            host,
            destination: address.unwrap_or(host),
            fleet,
            merged: &merged,
            trust,
        },
        &configs,
    )
}

const CONFIG: &str = "\
Host bastion
  HostName 10.9.0.1
  Port 2222
  User jump
  IdentityFile keys/jump
  UserKnownHostsFile known/bastion
Host inner-bastion
  HostName 10.9.0.2
  ProxyJump bastion
Host web-*
  User deploy
  Port 2200
  ProxyJump bastion
  IdentityFile keys/web
  CertificateFile keys/web-cert.pub
  StrictHostKeyChecking accept-new
  ConnectTimeout 3
  ServerAliveInterval 7
  HostKeyAlias web-alias
Host db-1
  HostName db-1.internal
  ProxyJump inner-bastion,ops@second:2022
Host legacy
  ProxyCommand nc %h %p
Host *
  IdentitiesOnly yes
";

#[test]
fn the_repo_config_gives_address_user_port_keys_and_jumps() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    // Relative paths in an ssh_config file are relative to the working directory in
    // OpenSSH; in a repo config, write them anchored: here absolute inside the repo.
    let text = CONFIG
        .replace("keys/", &format!("{}/keys/", r.display()))
        .replace("known/", &format!("{}/known/", r.display()));
    write(r, "ssh/config", &text);
    let fleet = SshSettings {
        config_file: Some("ssh/config".into()),
        known_hosts: Some("known/fleet".into()),
        ..SshSettings::default()
    };
    let trust = ControllerTrust::default();
    let o = resolve_in(r, &fleet, None, "web-1", None, &trust).unwrap();
    assert_eq!(
        (o.address.as_str(), o.port, o.user.as_str()),
        ("web-1", 2200, "deploy")
    );
    assert_eq!(o.identity_files, [r.join("keys/web")]);
    assert_eq!(o.certificate_files, [r.join("keys/web-cert.pub")]);
    // IdentitiesOnly: no agent.
    assert!(!o.use_agent);
    // Settings' knownHosts is explicit and wins for the host itself.
    assert_eq!(o.known_hosts, r.join("known/fleet"));
    assert!(o.extra_known_hosts.is_empty());
    assert_eq!(o.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(o.connect_timeout, Duration::from_secs(3));
    assert_eq!(o.keepalive_interval, Duration::from_secs(7));
    assert_eq!(o.host_key_alias.as_deref(), Some("web-alias"));
    // The bastion: everything from its own Host block (the file first for jump hosts).
    assert_eq!(o.jumps.len(), 1);
    let b = &o.jumps[0];
    assert_eq!(b.name, "bastion");
    assert_eq!(
        (
            b.options.address.as_str(),
            b.options.port,
            b.options.user.as_str()
        ),
        ("10.9.0.1", 2222, "jump")
    );
    assert_eq!(b.options.identity_files, [r.join("keys/jump")]);
    assert_eq!(b.options.known_hosts, r.join("known/bastion"));
    assert!(b.options.jumps.is_empty());

    // Explicit Settings and inventory win over the file for the host.
    let host = SshSettings {
        user: Some("root".into()),
        port: Some(22),
        proxy_jump: Some("none".into()),
        ..SshSettings::default()
    };
    let o = resolve_in(r, &fleet, Some(&host), "web-1", Some("10.0.0.7"), &trust).unwrap();
    // Looked up by the address (as `ssh 10.0.0.7`): no Host block but `*` matches.
    assert_eq!(
        (o.address.as_str(), o.port, o.user.as_str()),
        ("10.0.0.7", 22, "root")
    );
    assert!(o.jumps.is_empty());

    // Multi-hop: the first hop's own ProxyJump goes first, as `ssh -J` does.
    let o = resolve_in(r, &fleet, None, "db-1", None, &trust).unwrap();
    assert_eq!(o.address, "db-1.internal");
    let names: Vec<&str> = o.jumps.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["bastion", "inner-bastion", "ops@second:2022"]);
    let second = &o.jumps[2].options;
    assert_eq!(
        (second.address.as_str(), second.port, second.user.as_str()),
        ("second", 2022, "ops")
    );
    // A jump host without a Host block takes Settings' known_hosts.
    assert_eq!(second.known_hosts, r.join("known/fleet"));

    // ProxyCommand is refused with its place, never ignored.
    let e = resolve_in(r, &fleet, None, "legacy", None, &trust).unwrap_err();
    assert!(
        e.to_string().ends_with(":24: ProxyCommand is not supported by patchkeeper; use ProxyJump (ssh.proxyJump or the ssh_config file)"),
        "{e}"
    );
}

#[test]
fn a_repo_config_cannot_name_files_outside_the_repo() {
    let repo = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let r = repo.path();
    let outside = other.path().join("id_ed25519");
    write(
        r,
        "ssh/config",
        &format!("Host web-1\n  IdentityFile {}\n", outside.display()),
    );
    let fleet = SshSettings {
        config_file: Some("ssh/config".into()),
        ..SshSettings::default()
    };
    let none = ControllerTrust::default();
    let e = resolve_in(r, &fleet, None, "web-1", None, &none).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "IdentityFile of host web-1 ({}:2) `{}` is outside the fleet repo",
            r.join("ssh/config").display(),
            outside.display()
        )),
        "{e}"
    );
    // Includes are checked before they are read.
    write(r, "ssh/config", "Include /etc/passwd\n");
    let e = resolve_in(r, &fleet, None, "web-1", None, &none).unwrap_err();
    assert!(
        e.to_string()
            .contains("`/etc/passwd` is outside the fleet repo"),
        "{e}"
    );
    // The config file itself.
    let fleet_out = SshSettings {
        config_file: Some(other.path().join("config").display().to_string()),
        ..SshSettings::default()
    };
    let e = resolve_in(r, &fleet_out, None, "web-1", None, &none).unwrap_err();
    assert!(
        e.to_string().starts_with("ssh.configFile of host web-1"),
        "{e}"
    );
    // With the controller's opt-in, all of it is allowed.
    write(
        r,
        "ssh/config",
        &format!("Host web-1\n  IdentityFile {}\n", outside.display()),
    );
    let allowed = ControllerTrust {
        allowed_paths: vec![other.path().to_path_buf()],
        ..Default::default()
    };
    let o = resolve_in(r, &fleet, None, "web-1", None, &allowed).unwrap();
    assert_eq!(o.identity_files, [outside]);
}

#[test]
fn jump_loops_and_bad_values_are_errors() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "c",
        "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\nHost t\n  ProxyJump a\nHost u\n  ProxyJump x,,y\n",
    );
    let fleet = SshSettings {
        config_file: Some("c".into()),
        ..SshSettings::default()
    };
    let trust = ControllerTrust::default();
    let e = resolve_in(r, &fleet, None, "t", None, &trust).unwrap_err();
    assert!(e.to_string().contains("longer than 8 hops"), "{e}");
    let e = resolve_in(r, &fleet, None, "u", None, &trust).unwrap_err();
    assert!(e.to_string().contains("empty hop"), "{e}");
    // `none` reads no file at all.
    let fleet = SshSettings {
        config_file: Some("none".into()),
        ..SshSettings::default()
    };
    let o = resolve_in(r, &fleet, None, "t", None, &trust).unwrap();
    assert!(o.jumps.is_empty());
}
