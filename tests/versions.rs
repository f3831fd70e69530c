//! The version corpora (answers from the real dpkg and rpm) and ordering properties.

use std::cmp::Ordering;
use std::path::Path;

use patchkeeper::version::{self, DebVersion, Ecosystem, RpmVersion};
use proptest::prelude::*;

/// Undoes the generator's escapes (`\\`, `\t`, `\n`, `\xNN`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let n =
                    u8::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad escape \\x{hex}"));
                out.push(char::from(n));
            }
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
    }
    out
}

/// The data rows of a corpus file: tab-separated, unescaped cells.
fn rows(name: &str) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/versions")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').map(unescape).collect())
        .collect()
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

fn check_corpus(name: &str, ecosystem: Ecosystem, min_rows: usize) {
    let rows = rows(name);
    assert!(rows.len() >= min_rows, "{name}: only {} pairs", rows.len());
    let mut wrong = Vec::new();
    for row in &rows {
        let [a, b, want] = row.as_slice() else {
            panic!("{name}: bad row {row:?}")
        };
        match version::compare(ecosystem, a, b) {
            Ok(got) if symbol(got) == want => {}
            Ok(got) => wrong.push(format!(
                "{a:?} {b:?}: tool says {want}, we say {}",
                symbol(got)
            )),
            Err(e) => wrong.push(format!("{a:?} {b:?}: tool says {want}, we refuse: {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} pairs wrong:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}

#[test]
fn deb_corpus_matches_dpkg() {
    check_corpus("deb.tsv", Ecosystem::Deb, 500);
}

#[test]
fn rpm_corpus_matches_rpm() {
    check_corpus("rpm.tsv", Ecosystem::Rpm, 500);
}

#[test]
fn versions_dpkg_rejects_are_rejected_with_dpkg_reason() {
    let rows = rows("deb-invalid.tsv");
    assert!(rows.len() >= 40, "only {} invalid versions", rows.len());
    for row in rows {
        let [value, level, reason] = row.as_slice() else {
            panic!("bad row {row:?}")
        };
        let err = DebVersion::parse(value).expect_err(&format!("{value:?} is accepted"));
        assert_eq!(&err.to_string(), reason, "{value:?}");
        assert_eq!(
            err.dpkg_refuses(),
            level == "error",
            "{value:?}: dpkg level {level}"
        );
        let msg = version::parse(Ecosystem::Deb, value)
            .expect_err("rejected")
            .to_string();
        assert!(
            msg.contains(&format!("{value:?}")),
            "{msg} does not quote {value:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Properties. Small alphabets make equal and nearly equal versions common, which is where
// orderings break.

fn deb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-2]:)?[0-9][0-2a~.+]{0,6}(-[0-2a~.+]{1,4})?",
        "([0-9]{1,3}:)?[0-9][0-9a-zA-Z.+~:-]{0,10}(-[0-9a-zA-Z.+~]{1,6})?",
    ]
    .prop_filter("dpkg-valid", |s| DebVersion::parse(s).is_ok())
}

fn rpm_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-2]:)?[0-2a~^._]{1,6}(-[0-2a~^.]{1,4})?",
        "([0-9]{1,3}:)?[0-9a-zA-Z._+~^]{1,10}(-[0-9a-zA-Z._+~^]{1,6})?",
    ]
    .prop_filter("rpm-valid", |s| RpmVersion::parse(s).is_ok())
}

fn deb(s: &str) -> DebVersion {
    DebVersion::parse(s).expect("strategy yields valid versions")
}

fn rpm(s: &str) -> RpmVersion {
    RpmVersion::parse(s).expect("strategy yields valid versions")
}

/// Sorting then checking every pair in order catches intransitive orderings.
fn assert_total_order<T: Ord + std::fmt::Debug>(mut v: Vec<T>) -> Result<(), TestCaseError> {
    v.sort();
    for i in 0..v.len() {
        prop_assert_eq!(v[i].cmp(&v[i]), Ordering::Equal);
        for j in i + 1..v.len() {
            prop_assert_ne!(
                v[i].cmp(&v[j]),
                Ordering::Greater,
                "{:?} > {:?} after sorting",
                v[i],
                v[j]
            );
            prop_assert_eq!(v[i].cmp(&v[j]), v[j].cmp(&v[i]).reverse());
            prop_assert_eq!(v[i] == v[j], v[i].cmp(&v[j]) == Ordering::Equal);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn deb_antisymmetric(a in deb_string(), b in deb_string()) {
        prop_assert_eq!(deb(&a).cmp(&deb(&b)), deb(&b).cmp(&deb(&a)).reverse());
    }

    #[test]
    fn rpm_antisymmetric(a in rpm_string(), b in rpm_string()) {
        prop_assert_eq!(rpm(&a).cmp(&rpm(&b)), rpm(&b).cmp(&rpm(&a)).reverse());
    }

    #[test]
    fn deb_reflexive(a in deb_string()) {
        prop_assert_eq!(deb(&a).cmp(&deb(&a.clone())), Ordering::Equal);
    }

    #[test]
    fn rpm_reflexive(a in rpm_string()) {
        prop_assert_eq!(rpm(&a).cmp(&rpm(&a.clone())), Ordering::Equal);
    }

    #[test]
    fn deb_transitive(a in deb_string(), b in deb_string(), c in deb_string()) {
        let (a, b, c) = (deb(&a), deb(&b), deb(&c));
        if a <= b && b <= c {
            prop_assert!(a <= c, "{:?} <= {:?} <= {:?}", a, b, c);
        }
        if a == b && b == c {
            prop_assert!(a == c);
        }
    }

    #[test]
    fn rpm_transitive(a in rpm_string(), b in rpm_string(), c in rpm_string()) {
        let (a, b, c) = (rpm(&a), rpm(&b), rpm(&c));
        if a <= b && b <= c {
            prop_assert!(a <= c, "{:?} <= {:?} <= {:?}", a, b, c);
        }
        if a == b && b == c {
            prop_assert!(a == c);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn deb_sorts_consistently(v in prop::collection::vec(deb_string(), 2..24)) {
        assert_total_order(v.iter().map(|s| deb(s)).collect())?;
    }

    #[test]
    fn rpm_sorts_consistently(v in prop::collection::vec(rpm_string(), 2..24)) {
        assert_total_order(v.iter().map(|s| rpm(s)).collect())?;
    }
}
