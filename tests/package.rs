//! The Debian package: `scripts/package` builds it with `cargo deb` (from the test build's
//! binary, `--binary PATH --fast`, so the suite pays no release build), then it is
//! installed with `dpkg -i` — maintainer scripts and all — into a throwaway copy-on-write
//! view of this machine (an overlayfs over `/` in a private mount namespace: the real root,
//! its dpkg database and its users stay untouched, and the view vanishes with the test).
//! Inside it: the installed `patchkeeper --version` runs, the system user exists, the man
//! pages and completions sit where man and the shells look, and `systemd-analyze verify`
//! accepts the unit.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package once (the test build's binary, dev profile).
fn build_deb() -> PathBuf {
    let out = run(Command::new(root().join("scripts/package"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_patchkeeper"))
        .arg("--fast"));
    let deb = PathBuf::from(
        out.lines()
            .last()
            .expect("scripts/package prints the .deb")
            .trim(),
    );
    assert!(deb.is_file(), "{}", deb.display());
    deb
}

/// What installing `deb` into a throwaway view of this machine shows: the script prints one
/// `== NAME` section per check.
const INSTALL: &str = r#"
set -euo pipefail
tmp=$1 deb=$2
mount --make-rprivate /
mount -t tmpfs tmpfs "$tmp/rw"
mkdir "$tmp/rw/upper" "$tmp/rw/work" "$tmp/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/rw/upper,workdir=$tmp/rw/work" "$tmp/root"
r=$tmp/root
# Nothing in the view reaches the machine's runtime state (a running systemd, sockets).
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
mount -t proc proc "$r/proc"
cp "$deb" "$r/tmp/patchkeeper.deb"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$r" "$@"; }
# man-db's trigger would rebuild the whole index of this machine's pages: not under test.
rm -f "$r/var/lib/man-db/auto-update"
echo "== dpkg"
in_root dpkg -i /tmp/patchkeeper.deb 2>&1
echo "== status"
in_root dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' patchkeeper
echo "== version"
in_root /usr/bin/patchkeeper --version
echo "== user"
in_root getent passwd patchkeeper
echo "== dirs"
in_root stat -c '%U:%G %a %n' /var/lib/patchkeeper /var/lib/patchkeeper/.ssh \
	/var/cache/patchkeeper /etc/patchkeeper /etc/patchkeeper/patchkeeper.env
echo "== files"
in_root dpkg -L patchkeeper | sort
echo "== man"
in_root man -w patchkeeper-report patchkeeper-import-ansible
in_root sh -c 'zcat /usr/share/man/man1/patchkeeper-report.1.gz | head -n 20'
echo "== verify"
in_root systemd-analyze verify --man=no /usr/lib/systemd/system/patchkeeper.service 2>&1 && echo "verify: ok"
echo "== security"
in_root systemd-analyze security --offline=true --no-pager /usr/lib/systemd/system/patchkeeper.service 2>&1 | tail -n 1
echo "== bash"
in_root bash -c 'source /usr/share/bash-completion/completions/patchkeeper && complete -p patchkeeper'
echo "== purge"
in_root dpkg --purge patchkeeper 2>&1
in_root sh -c 'test ! -e /usr/bin/patchkeeper && echo "binary removed"'
"#;

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out
        .find(&format!("== {name}\n"))
        .unwrap_or_else(|| panic!("no section {name} in:\n{out}"))
        + name.len()
        + 4;
    let rest = &out[start..];
    &rest[..rest.find("\n== ").map(|i| i + 1).unwrap_or(rest.len())]
}

#[test]
fn the_deb_installs_with_its_user_unit_man_pages_and_completions() {
    let deb = build_deb();

    // The control data cargo deb wrote.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains(" Package: patchkeeper\n"), "{info}");
    assert!(info.contains(" Section: admin\n"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.starts_with(" Depends:"))
        .unwrap_or_else(|| panic!("no Depends in {info}"));
    // $auto: the shared libraries the binary links (dpkg-shlibdeps), plus what postinst uses.
    for dep in ["libc6", "libssl3", "adduser"] {
        assert!(depends.contains(dep), "{depends}");
    }
    assert!(info.contains("postinst"), "{info}");
    assert!(info.contains("conffiles"), "{info}");

    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("rw")).expect("mkdir");
    let out = run(Command::new("unshare")
        .args(["--mount", "--", "bash", "-c", INSTALL, "install"])
        .arg(tmp.path())
        .arg(&deb));
    // Shown when an assertion below fails.
    eprintln!("{out}");

    assert!(
        section(&out, "status").starts_with("ii  patchkeeper 0.1.0-1"),
        "{out}"
    );
    assert_eq!(
        section(&out, "version").trim(),
        format!("patchkeeper {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let user = section(&out, "user");
    assert!(
        user.starts_with("patchkeeper:x:")
            && user.contains(":/var/lib/patchkeeper:/usr/sbin/nologin"),
        "{out}"
    );
    let dirs = section(&out, "dirs");
    for line in [
        "patchkeeper:patchkeeper 750 /var/lib/patchkeeper\n",
        "patchkeeper:patchkeeper 700 /var/lib/patchkeeper/.ssh\n",
        "patchkeeper:patchkeeper 750 /var/cache/patchkeeper\n",
        "root:patchkeeper 750 /etc/patchkeeper\n",
        "root:patchkeeper 640 /etc/patchkeeper/patchkeeper.env\n",
    ] {
        assert!(dirs.contains(line), "{line:?} not in:\n{dirs}");
    }

    // A man page for every command and subcommand, as the binary itself lists them.
    let files = section(&out, "files");
    let mut pages = vec!["patchkeeper".to_owned()];
    let commands = |args: &[&str]| -> Vec<String> {
        let help = run(Command::new(env!("CARGO_BIN_EXE_patchkeeper")).args(args));
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .filter(|c| c != "help")
            .collect()
    };
    for command in commands(&["--help"]) {
        pages.push(format!("patchkeeper-{command}"));
        for sub in commands(&[&command, "--help"]) {
            pages.push(format!("patchkeeper-{command}-{sub}"));
        }
    }
    for page in [
        "patchkeeper-report",
        "patchkeeper-import-ansible",
        "patchkeeper-version-compare",
    ] {
        assert!(
            pages.iter().any(|p| p == page),
            "{page} not found in --help: {pages:?}"
        );
    }
    for page in &pages {
        assert!(
            files.contains(&format!("/usr/share/man/man1/{page}.1.gz\n")),
            "{page} not installed:\n{files}"
        );
    }
    for path in [
        "/usr/bin/patchkeeper\n",
        "/usr/share/bash-completion/completions/patchkeeper\n",
        "/usr/share/zsh/vendor-completions/_patchkeeper\n",
        "/usr/share/fish/vendor_completions.d/patchkeeper.fish\n",
        "/usr/lib/systemd/system/patchkeeper.service\n",
        "/etc/patchkeeper/patchkeeper.env\n",
        "/usr/share/doc/patchkeeper/install.md\n",
    ] {
        assert!(files.contains(path), "{path} not installed:\n{files}");
    }
    let man = section(&out, "man");
    // `man` finds them where it looks.
    assert!(
        man.starts_with(
            "/usr/share/man/man1/patchkeeper-report.1.gz\n/usr/share/man/man1/patchkeeper-import-ansible.1.gz\n"
        ),
        "{man}"
    );
    assert!(man.contains("patchkeeper-report"), "{man}");
    assert!(man.contains(r"\-\-diff"), "{man}");

    assert!(section(&out, "verify").contains("verify: ok"), "{out}");
    // The hardening as systemd scores it (lower is safer; 10 is a unit without any).
    let score = section(&out, "security");
    let exposure: f64 = score
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in {score}"));
    assert!(exposure < 3.0, "exposure {exposure}: {score}");
    assert!(
        section(&out, "bash").contains("patchkeeper"),
        "bash completion did not register:\n{out}"
    );
    assert!(section(&out, "purge").contains("binary removed"), "{out}");
}
