//! `patchkeeper import ansible`: a realistic INI inventory (the example fleet as Ansible
//! knows it) imported, snapshot-tested on stdout and stderr, and the result validated in a
//! fleet repo next to the example's other documents.

mod common;

use common::cli::{run, text};

fn import(args: &[&str]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = vec!["import", "ansible", "tests/fixtures/ansible/prod.ini"];
    all.extend_from_slice(args);
    run(root, &all)
}

#[test]
fn the_imported_document_and_what_was_not_imported() {
    let out = import(&["--labels", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    insta::assert_snapshot!("stdout", String::from_utf8_lossy(&out.stdout));
    insta::assert_snapshot!("stderr", String::from_utf8_lossy(&out.stderr));
    // The password in the inventory reaches neither output.
    assert!(!text(&out).contains("do-not-copy-me"));
}

#[test]
fn the_import_validates_in_a_fleet_repo() {
    let repo = tempfile::tempdir().expect("tempdir");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    for entry in walkdir::WalkDir::new(&example) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(&example).expect("inside");
        let to = repo.path().join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).expect("mkdir");
        } else if !rel.starts_with("inventory") {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
    let dest = repo.path().join("inventory/ansible.yaml");
    let out = import(&["--out", dest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Imported 11 hosts in 6 groups"),
        "{}",
        text(&out)
    );
    // The example's baselines (selectors and a promotion source) and rollout select groups
    // `db-replicas` and `db-primaries`:
    // Ansible's `db_replicas` and `db_primaries` are other names, so validate reports exactly
    // those selectors as dangling, and the imported document itself has no error.
    let d = repo.path().to_str().expect("utf-8");
    let v = run(repo.path(), &["validate", "--repo", d]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let all = text(&v);
    let errors: Vec<&str> = all.lines().filter(|l| l.contains(": error[")).collect();
    assert_eq!(errors.len(), 5, "{all}");
    for e in &errors {
        assert!(e.contains("error[dangling-group-ref]"), "{all}");
        assert!(
            e.contains("`db-replicas`") || e.contains("`db-primaries`"),
            "{all}"
        );
        assert!(!e.contains("inventory/ansible.yaml"), "{all}");
    }
    // Directories and unreadable files are clear errors.
    let out = run(repo.path(), &["import", "ansible", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is a directory; name the inventory file in it"),
        "{}",
        text(&out)
    );
}

/// A fleet repo whose only hosts come from an Inventory's `spec.ansible` source, and a
/// baseline selecting the source's group `web`: the group is dangling unless the source was
/// read.
fn source_repo(ansible: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    let w = |rel: &str, body: &str| {
        let p = repo.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    };
    w(
        "inventory/cloud.yaml",
        &format!("apiVersion: patchkeeper.dev/v1\nkind: Inventory\nmetadata:\n  name: cloud\nspec:\n  ansible: {ansible}\n"),
    );
    w(
        "baselines/web.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    groups: [web]\n  updates:\n    classes: security\n  window: always\n  rollout: all\n",
    );
    w(
        "windows/always.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: MaintenanceWindow\nmetadata:\n  name: always\nspec:\n  schedule: \"0 2 * * SUN\"\n  timezone: UTC\n  duration: 4h\n",
    );
    w(
        "rollouts/all.yaml",
        "apiVersion: patchkeeper.dev/v1\nkind: Rollout\nmetadata:\n  name: all\nspec:\n  stages:\n    - name: all\n      size: 100%\n",
    );
    w(
        "hosts.ini",
        "[web]\nweb-1 ansible_host=web-1.prod.example\nweb-2 ansible_host=web-2.prod.example\n",
    );
    w(
        "list.sh",
        "#!/bin/sh\necho '{\"web\": {\"hosts\": [\"web-1\"]}, \"_meta\": {\"hostvars\": {\"web-1\": {\"ansible_host\": \"web-1.prod.example\"}}}}'\n",
    );
    w(
        "fail.sh",
        "#!/bin/sh\necho 'token expired for profile prod' >&2\nexit 3\n",
    );
    for s in ["list.sh", "fail.sh"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.path().join(s), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    repo
}

fn validate(repo: &tempfile::TempDir, extra: &[&str]) -> std::process::Output {
    let d = repo.path().to_str().expect("utf-8");
    let mut args = vec!["validate", "--repo", d];
    args.extend_from_slice(extra);
    run(repo.path(), &args)
}

#[test]
fn an_inventory_reads_its_hosts_from_an_ansible_file() {
    let repo = source_repo("{file: hosts.ini}");
    let v = validate(&repo, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(!text(&v).contains("dangling-group-ref"), "{}", text(&v));
    // Control: without the source the baseline's group is dangling.
    let bare = source_repo("{file: missing.ini}");
    let v = validate(&bare, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("error[inventory-source]"), "{}", text(&v));
    assert!(
        text(&v).contains("cannot read `missing.ini`"),
        "{}",
        text(&v)
    );
}

#[test]
fn an_inventory_command_runs_only_with_the_opt_in_and_its_failure_is_shown() {
    let repo = source_repo("{command: [./list.sh]}");
    let v = validate(&repo, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("inventory `cloud` runs `./list.sh` on this machine"),
        "{}",
        text(&v)
    );
    let v = validate(&repo, &["--allow-local-commands"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(!text(&v).contains("dangling-group-ref"), "{}", text(&v));

    let failing = source_repo("{command: [./fail.sh]}");
    let v = validate(&failing, &["--allow-local-commands"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("error[inventory-source]"), "{}", text(&v));
    assert!(
        text(&v).contains("token expired for profile prod"),
        "{}",
        text(&v)
    );
}

/// The lab's hosts as an Ansible INI inventory (what an SRE's existing inventory of them
/// would say), imported over the lab's native Inventory: `plan` plans the same.
#[test]
fn an_imported_inventory_of_the_lab_plans_like_the_native_one() {
    use common::lab::Lab;
    let lab = Lab::up(1, 1);
    let dir = lab.dir().to_owned();
    let plan = |what: &str| {
        let out = run(&dir, &["plan", "--json", "--at", "2026-11-29T02:30:00Z"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
        (
            v["hosts"].clone(),
            v["batches"].clone(),
            v["summary"].clone(),
        )
    };
    let native = plan("native");
    assert!(
        native.2["hostsToUpdate"].as_u64().unwrap_or(0) > 0,
        "the lab has updates to plan: {:?}",
        native.2
    );

    let mut ini = String::new();
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for h in lab.hosts() {
        for g in &h.groups {
            groups.entry(g.clone()).or_default().push(h.name.clone());
        }
    }
    for (g, hosts) in &groups {
        ini.push_str(&format!("[{g}]\n"));
        for name in hosts {
            let h = lab.host(name);
            let os = if h.package_manager == "apt" {
                "debian"
            } else {
                "el"
            };
            ini.push_str(&format!(
                "{name} ansible_host={} ansible_port={} os={os}\n",
                h.address, h.port
            ));
        }
    }
    ini.push_str("[all:vars]\nenv=lab\nansible_python_interpreter=/usr/bin/python3\n");
    std::fs::write(dir.join("hosts.ini"), &ini).expect("write hosts.ini");
    let out = run(
        &dir,
        &[
            "import",
            "ansible",
            "hosts.ini",
            "--name",
            "lab",
            "--labels",
            "env,os",
            "--out",
            "inventory/lab.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = run(&dir, &["validate"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let imported = plan("imported");
    assert_eq!(imported.0, native.0, "hosts differ\n{ini}");
    assert_eq!(imported.1, native.1, "batches differ\n{ini}");
    assert_eq!(imported.2, native.2, "summary differs\n{ini}");
}
