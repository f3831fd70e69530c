//! End-to-end: `patchkeeper version compare`.

use assert_cmd::Command;
use predicates::prelude::*;

fn compare(eco: &str, a: &str, b: &str) -> assert_cmd::assert::Assert {
    Command::cargo_bin("patchkeeper")
        .expect("binary")
        .args(["version", "compare", "--ecosystem", eco, a, b])
        .assert()
}

#[test]
fn prints_the_order() {
    compare("deb", "1.0~rc1", "1.0")
        .success()
        .stdout("<\n")
        .stderr("");
    compare("deb", "1:0.1", "9.9").success().stdout(">\n");
    compare("deb", "1.0", "1.0-0").success().stdout("=\n");
    compare("rpm", "1.0-0", "1.0").success().stdout(">\n");
    compare("rpm", "1.0^git1", "1.0.1").success().stdout("<\n");
    compare("rpm", "0:2.0", "2.0").success().stdout("=\n");
}

#[test]
fn invalid_version_exits_1_naming_it() {
    compare("deb", "1.0", "a1.0").code(1).stdout("").stderr(
        "error: invalid Debian version \"a1.0\": version number does not start with digit\n",
    );
    compare("deb", "-1:1.0", "1.0")
        .code(1)
        .stderr(predicate::str::contains(
            "\"-1:1.0\": epoch in version is negative",
        ));
    compare("rpm", "1.0-", "1.0")
        .code(1)
        .stderr("error: invalid RPM version \"1.0-\": release is empty\n");
}

#[test]
fn unknown_ecosystem_is_a_usage_error() {
    compare("apk", "1", "2")
        .code(2)
        .stderr(predicate::str::contains("invalid value 'apk'"));
}
