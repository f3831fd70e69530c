use super::*;

const INI: &str = r#"
# A fleet as Ansible knows it.
bastion.example.com ansible_user=ops

[web]
web[01:03].example.com ansible_user=deploy
web-eu-1 ansible_host=10.0.1.21 ansible_port=2222

[db]
db-1.example.com:2200 ansible_become=true ansible_become_password=hunter2
db-2.example.com ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q -p 2022 jump@bastion.example.com"'

[Frontends:children]
web

[prod:children]
Frontends
db

[prod:vars]
ansible_ssh_private_key_file=~/.ssh/prod
env=production
ansible_python_interpreter=/usr/bin/python3

[web:vars]
ansible_port = 2201
"#;

fn host<'a>(i: &'a Imported, name: &str) -> &'a Host {
    i.spec
        .hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("{name} not imported: {:#?}", i.spec.hosts))
}

#[test]
fn ini_groups_children_ranges_and_precedence() {
    assert_eq!(detect(INI), Format::Ini);
    let inv = parse(INI, Format::Ini).unwrap();
    let i = convert(
        &inv,
        &Options {
            labels: vec!["env".into()],
        },
    );
    // Ranges, children flattened, the implicit groups dropped, names lowercased.
    let names: Vec<&str> = i.spec.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bastion.example.com",
            "db-1.example.com",
            "db-2.example.com",
            "web-eu-1",
            "web01.example.com",
            "web02.example.com",
            "web03.example.com"
        ]
    );
    let groups: Vec<&str> = i.spec.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["db", "frontends", "prod", "web"]);
    let w = host(&i, "web02.example.com");
    assert_eq!(w.groups, ["frontends", "prod", "web"]);
    let ssh = w.ssh.as_ref().unwrap();
    // Host var (deploy) over nothing; the child group's port (web) over nothing in prod;
    // the grandparent's key file.
    assert_eq!(ssh.user.as_deref(), Some("deploy"));
    assert_eq!(ssh.port, Some(2201));
    assert_eq!(ssh.identity_file.as_deref(), Some("~/.ssh/prod"));
    assert_eq!(w.labels.get("env").map(String::as_str), Some("production"));
    // The host's own port wins over its group's.
    let eu = host(&i, "web-eu-1");
    assert_eq!(eu.address.as_deref(), Some("10.0.1.21"));
    assert_eq!(eu.ssh.as_ref().unwrap().port, Some(2222));
    // host:port, become -> sudo (not root), and the classic bastion ProxyCommand.
    let db1 = host(&i, "db-1.example.com");
    assert_eq!(db1.ssh.as_ref().unwrap().port, Some(2200));
    assert_eq!(db1.ssh.as_ref().unwrap().sudo, Some(true));
    let db2 = host(&i, "db-2.example.com");
    assert_eq!(
        db2.ssh.as_ref().unwrap().proxy_jump.as_deref(),
        Some("jump@bastion.example.com:2022")
    );
    let b = host(&i, "bastion.example.com");
    assert!(b.groups.is_empty());
    // What did not make it is listed; the password itself appears nowhere.
    let lossy = i.lossy.join("\n");
    assert!(
        lossy.contains("`ansible_become_password` (a secret) is never imported"),
        "{lossy}"
    );
    assert!(!lossy.contains("hunter2") && !render(&i, "x", "y").contains("hunter2"));
    assert!(
        lossy.contains(
            "`ansible_python_interpreter` has no patchkeeper equivalent: not imported (group prod)"
        ),
        "{lossy}"
    );
    assert!(
        lossy.contains("group `Frontends` is imported as `frontends`"),
        "{lossy}"
    );
}

#[test]
fn yaml_and_dynamic_json_say_the_same_as_ini() {
    let yaml = r#"
all:
  hosts:
    bastion.example.com:
      ansible_user: ops
  children:
    prod:
      vars:
        ansible_ssh_private_key_file: ~/.ssh/prod
      children:
        Frontends:
          children:
            web:
              vars:
                ansible_port: 2201
              hosts:
                web[01:03].example.com:
                  ansible_user: deploy
"#;
    assert_eq!(detect(yaml), Format::Yaml);
    let from_yaml = convert(&parse(yaml, Format::Yaml).unwrap(), &Options::default());
    let json = r#"{
  "_meta": {"hostvars": {
    "web01.example.com": {"ansible_user": "deploy"},
    "web02.example.com": {"ansible_user": "deploy"},
    "web03.example.com": {"ansible_user": "deploy"},
    "bastion.example.com": {"ansible_user": "ops"}}},
  "all": {"children": ["ungrouped", "prod"]},
  "ungrouped": {"hosts": ["bastion.example.com"]},
  "prod": {"children": ["Frontends"], "vars": {"ansible_ssh_private_key_file": "~/.ssh/prod"}},
  "Frontends": {"children": ["web"]},
  "web": {"hosts": ["web01.example.com", "web02.example.com", "web03.example.com"], "vars": {"ansible_port": 2201}}
}"#;
    assert_eq!(detect(json), Format::Json);
    let from_json = convert(&parse(json, Format::Json).unwrap(), &Options::default());
    assert_eq!(from_yaml.spec, from_json.spec);
    let w = host(&from_json, "web03.example.com");
    assert_eq!(w.groups, ["frontends", "prod", "web"]);
    assert_eq!(w.ssh.as_ref().unwrap().port, Some(2201));
}

#[test]
fn the_rendered_document_passes_the_inventory_schema() {
    let i = convert(&parse(INI, Format::Ini).unwrap(), &Options::default());
    let text = render(&i, "ansible", "hosts.ini");
    assert!(text.starts_with("# yaml-language-server"), "{text}");
    let docs = crate::fleet::yaml::parse_documents(&text).unwrap();
    let value = &docs[0].value;
    let violations = crate::schema::check(crate::model::Kind::Inventory, value);
    assert!(violations.is_empty(), "{violations:?}\n{text}");
    let back: crate::model::Inventory = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back.spec, i.spec);
}

#[test]
fn ranges_and_bad_input() {
    assert_eq!(
        expand_range("web[08:10]-[a:b]").unwrap(),
        ["web08-a", "web08-b", "web09-a", "web09-b", "web10-a", "web10-b"]
    );
    assert_eq!(expand_range("n[1:7:3]").unwrap(), ["n1", "n4", "n7"]);
    assert!(expand_range("web[3:1]").is_err());
    assert!(expand_range("web[1:").is_err());
    // Each range is within the limit, their product (10^10 names) is not: refused at once
    // instead of exhausting the controller's memory.
    let e = expand_range("h[0:99999]-[0:99999]").unwrap_err();
    assert!(e.contains("more than 100000 hosts"), "{e}");
    assert_eq!(expand_range("h[1:1000]-[1:100]").unwrap().len(), 100_000);
    // Many patterns within the limit each: the inventory's total is bounded too.
    let many: String = (0..11).map(|g| format!("[g{g}]\nh[1:100000]\n")).collect();
    let e = parse(&many, Format::Ini).unwrap_err();
    assert!(
        e.to_string().contains("more than 1000000 host entries"),
        "{e}"
    );
    let e = parse("[web\nhost\n", Format::Ini).unwrap_err();
    assert_eq!(e.to_string(), "line 1: section header `[web` lacks `]`");
    let e = parse("[web]\nhost novalue\n", Format::Ini).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: `novalue`: expected key=value after the host"
    );
    assert!(parse("{\"web\": 3}", Format::Json).is_err());
    // Connections other than SSH are not imported, and say so.
    let i = convert(
        &parse(
            "[win]\nw1 ansible_connection=winrm\nlocal1 ansible_connection=local\n",
            Format::Ini,
        )
        .unwrap(),
        &Options::default(),
    );
    assert_eq!(i.spec.hosts.len(), 1);
    assert_eq!(i.spec.hosts[0].transport, Some(TransportKind::Local));
    assert!(
        i.lossy
            .iter()
            .any(|l| l == "host `w1` is not imported: `ansible_connection: winrm` is not SSH"),
        "{:?}",
        i.lossy
    );
}

/// Found by the `ansible_inventory` fuzz target (issue 20): a host name holding control
/// characters (here a backspace and a NUL, from a corrupted file) reached a `#` comment of
/// the rendered document raw, and YAML allows no control character anywhere, so `import
/// ansible` wrote a file that `validate` cannot read. DEL, C1 controls, CR and the Unicode
/// line separators were also written raw inside quoted names.
#[test]
fn names_with_control_characters_render_as_readable_yaml() {
    let ini = "[api]\napi-1 ansiele_host=api-1.prod.example\n\
               \x08\x00i-3 ansible_host=api-3.prod.example\n\n\
               [db]\ndb-1 ansible_become_password=do-not-copy-me\n";
    let mut i = convert(&parse(ini, Format::Ini).unwrap(), &Options::default());
    let reads_back = |i: &Imported, name: &str, source: &str| {
        let text = render(i, name, source);
        let docs = crate::fleet::yaml::parse_documents(&text)
            .unwrap_or_else(|e| panic!("not YAML: {e:?}\n{text:?}"));
        let back: crate::model::Inventory = serde_json::from_value(docs[0].value.clone())
            .unwrap_or_else(|e| panic!("{e}\n{text:?}"));
        assert_eq!(back.spec, i.spec, "{text:?}");
        assert_eq!(back.metadata.name, name, "{text:?}");
    };
    // The host is renamed; the line saying so names it as the file did.
    assert!(
        i.lossy.iter().any(|l| l.contains("\x08\x00i-3")),
        "{:?}",
        i.lossy
    );
    reads_back(&i, "imported", "inventory");
    for weird in [
        "\r", "\u{7f}", "\u{85}", "\u{9b}", "\u{2028}", "\u{2029}", "\u{feff}", "\t\n", "\"\\",
    ] {
        i.spec.hosts[0].name = format!("h{weird}x");
        i.spec.hosts[0]
            .labels
            .insert(format!("k{weird}"), format!("v{weird}"));
        i.lossy.push(format!("not imported: {weird}"));
        reads_back(&i, &format!("n{weird}"), &format!("hosts{weird}.ini"));
    }
}
