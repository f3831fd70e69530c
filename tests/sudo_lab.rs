//! End-to-end: an unprivileged SSH login escalating with `sudo -n` (`ssh.sudo: true`), on
//! real lab hosts (Debian and RPM) where the lab's `sudoUser` may run anything as root
//! without a password. Observe, plan, dry runs and apply all go through sudo; a host where
//! sudo wants a password fails fast with sudo's own words instead of hanging on a prompt.

mod common;

use std::process::Output;

use common::cli::text;
use common::git::git;
use common::lab::{deb, rpm, Lab};

fn pk(lab: &Lab, args: &[&str]) -> Output {
    common::cli::run(lab.dir(), args)
}

#[test]
fn an_unprivileged_login_with_sudo_observes_plans_and_applies() {
    let lab = Lab::up(1, 1);
    let user = lab.info().ssh.sudo_user.clone();
    let settings = lab.dir().join("patchkeeper.yaml");
    let text_before = std::fs::read_to_string(&settings).unwrap();
    assert!(text_before.contains("    user: root\n"), "{text_before}");
    std::fs::write(
        &settings,
        text_before.replace(
            "    user: root\n",
            &format!("    user: {user}\n    sudo: true\n"),
        ),
    )
    .unwrap();
    git(
        lab.dir(),
        &[
            "commit",
            "-q",
            "-a",
            "-m",
            "log in unprivileged, escalate with sudo",
        ],
    );

    let out = pk(&lab, &["observe"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = pk(&lab, &["apply", "--auto-approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The security updates are installed, verified as root over plain OpenSSH.
    assert_eq!(deb(&lab, "deb-1", "libpk"), "1.2-1 ii");
    assert_eq!(deb(&lab, "deb-1", "pk-kernel"), "1.1-1 ii");
    assert_eq!(rpm(&lab, "rpm-1", "libpk"), "1.2-1");
    assert_eq!(rpm(&lab, "rpm-1", "pk-kernel"), "1.1-1");
    // patchkeeper logged in as the unprivileged user, never as root.
    for host in lab.hosts() {
        let log = std::fs::read_to_string(&host.sshd_log).unwrap();
        assert!(
            log.contains(&format!("Accepted publickey for {user} ")),
            "{}: {log}",
            host.name
        );
    }

    // sudo that wants a password: refused at once, with sudo's reason, the other host fine.
    lab.run_ok("deb-1", &format!("rm /etc/sudoers.d/{user}"));
    let out = pk(&lab, &["observe"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb_row = stdout.lines().find(|l| l.starts_with("deb-1 ")).unwrap();
    assert!(
        deb_row.ends_with("error: sudo -n failed: sudo: a password is required"),
        "{all}"
    );
    let rpm_row = stdout.lines().find(|l| l.starts_with("rpm-1 ")).unwrap();
    assert!(rpm_row.ends_with(" ok"), "{all}");
    lab.down();
}
