//! Version parsing and ordering (Debian and RPM): never a panic, and the ordering is total
//! and consistent — reflexive, antisymmetric, transitive on every triple, `==` exactly when
//! `cmp` says `Equal`, and a version reparsed from its text is the same version.
#![no_main]
use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use patchkeeper::version::{self, rpm::rpmvercmp, Ecosystem, Version};

fn check_pair(x: &Version, y: &Version) {
    let xy = x.cmp(y);
    assert_eq!(xy, y.cmp(x).reverse(), "antisymmetry: {x:?} vs {y:?}");
    assert_eq!(x == y, xy == Ordering::Equal, "== vs cmp: {x:?} vs {y:?}");
    assert_eq!(
        x.partial_cmp(y),
        Some(xy),
        "partial_cmp vs cmp: {x:?} vs {y:?}"
    );
}

fn check_triple(x: &Version, y: &Version, z: &Version) {
    let (xy, yz, xz) = (x.cmp(y), y.cmp(z), x.cmp(z));
    if xy != Ordering::Greater && yz != Ordering::Greater {
        assert_ne!(
            xz,
            Ordering::Greater,
            "transitivity: {x:?} <= {y:?} <= {z:?}"
        );
        if xy == Ordering::Equal && yz == Ordering::Equal {
            assert_eq!(
                xz,
                Ordering::Equal,
                "equality transitive: {x:?} {y:?} {z:?}"
            );
        }
        if xy == Ordering::Less || yz == Ordering::Less {
            assert_eq!(xz, Ordering::Less, "strict transitivity: {x:?} {y:?} {z:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let words: Vec<&str> = (0..3).map(|_| parts.next().unwrap_or("")).collect();
    for eco in [Ecosystem::Deb, Ecosystem::Rpm] {
        let parsed: Vec<Version> = words
            .iter()
            .filter_map(|w| version::parse(eco, w).ok())
            .collect();
        for v in &parsed {
            assert_eq!(v.cmp(v), Ordering::Equal, "reflexive: {v:?}");
            let again = version::parse(eco, v.as_str()).expect("its own text parses");
            assert_eq!(&again, v, "reparsed from {:?}", v.as_str());
            assert_eq!(again.as_str(), v.as_str());
        }
        for x in &parsed {
            for y in &parsed {
                check_pair(x, y);
                for z in &parsed {
                    check_triple(x, y, z);
                }
            }
        }
        if let (Ok(a), Ok(b)) = (version::parse(eco, words[0]), version::parse(eco, words[1])) {
            assert_eq!(version::compare(eco, words[0], words[1]), Ok(a.cmp(&b)));
        }
    }
    // The segment comparison alone, on any text.
    assert_eq!(rpmvercmp(words[0], words[0]), Ordering::Equal);
    assert_eq!(
        rpmvercmp(words[0], words[1]),
        rpmvercmp(words[1], words[0]).reverse()
    );
    let _ = patchkeeper::driver::apt::strip_binnmu(words[0]);
    let _ = patchkeeper::driver::dnf::parse_nevra(words[0]);
    let _ = patchkeeper::driver::dnf::parse_srpm(words[0]);
});
