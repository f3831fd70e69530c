//! A host's installed packages as the reports branch keeps them (`packages/<host>.txt`: one
//! `name:arch version` line per package, sorted), and the difference between two such lists
//! as people read it (`report --diff RUN`: a unified diff, rendered with `similar`) and as
//! programs read it (added, removed and changed packages).
//!
//! Pure: text in, text or data out.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::observed::InstalledPackage;

/// Lines of context around each change in the unified diff.
pub const CONTEXT: usize = 3;

/// The list file of `installed`: `name:arch version` per line, sorted by name then
/// architecture (the order of the observation, restated so the file never depends on it).
pub fn render(installed: &[InstalledPackage]) -> String {
    // One buffer with the lines as ranges, not a String per line: every observed host's
    // list (1,500 lines) is rendered for each report commit, for thousands of hosts.
    let mut buf = String::with_capacity(
        installed
            .iter()
            .map(|p| p.name.len() + p.arch.len() + p.version.len() + 3)
            .sum(),
    );
    let mut lines = Vec::with_capacity(installed.len());
    for p in installed {
        let start = buf.len();
        for part in [p.name.as_str(), ":", &p.arch, " ", &p.version, "\n"] {
            buf.push_str(part);
        }
        lines.push(start..buf.len());
    }
    let line = |r: &std::ops::Range<usize>| &buf[r.clone()];
    // Observations come sorted by name then architecture, which is almost always the
    // lines' byte order already: then the buffer is the file.
    if lines.windows(2).all(|w| line(&w[0]) < line(&w[1])) {
        return buf;
    }
    lines.sort_unstable_by(|a, b| line(a).cmp(line(b)));
    lines.dedup_by(|a, b| line(a) == line(b));
    let mut out = String::with_capacity(buf.len());
    for r in &lines {
        out.push_str(line(r));
    }
    out
}

/// One package of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Entry {
    /// Package name.
    pub package: String,
    /// Architecture.
    pub arch: String,
    /// Installed version.
    pub version: String,
}

/// A package whose version differs between the two lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Changed {
    /// Package name.
    pub package: String,
    /// Architecture.
    pub arch: String,
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
}

/// What differs between two lists, each part sorted by package then architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Changes {
    /// Installed after, not before.
    pub added: Vec<Entry>,
    /// Installed before, not after.
    pub removed: Vec<Entry>,
    /// Installed in both at different versions.
    pub changed: Vec<Changed>,
}

impl Changes {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Reads a list file. A line that is not `name:arch version` is skipped: the file is ours,
/// and one damaged line must not hide the rest.
fn parse(text: &str) -> BTreeMap<(String, String), String> {
    text.lines()
        .filter_map(|line| {
            let (id, version) = line.split_once(' ')?;
            let (name, arch) = id.rsplit_once(':')?;
            Some(((name.to_owned(), arch.to_owned()), version.to_owned()))
        })
        .collect()
}

/// The packages added, removed and changed from `before` to `after`.
pub fn compare(before: &str, after: &str) -> Changes {
    let (old, new) = (parse(before), parse(after));
    let mut out = Changes::default();
    for ((package, arch), version) in &old {
        match new.get(&(package.clone(), arch.clone())) {
            None => out.removed.push(Entry {
                package: package.clone(),
                arch: arch.clone(),
                version: version.clone(),
            }),
            Some(to) if to != version => out.changed.push(Changed {
                package: package.clone(),
                arch: arch.clone(),
                from: version.clone(),
                to: to.clone(),
            }),
            Some(_) => {}
        }
    }
    for ((package, arch), version) in &new {
        if !old.contains_key(&(package.clone(), arch.clone())) {
            out.added.push(Entry {
                package: package.clone(),
                arch: arch.clone(),
                version: version.clone(),
            });
        }
    }
    out
}

/// The unified diff from `before` to `after` (`--- a/HOST`, `+++ b/HOST`, hunks with
/// [`CONTEXT`] lines of context); empty when they are the same. Stable: the same lists give
/// the same bytes.
pub fn unified(before: &str, after: &str, old_label: &str, new_label: &str) -> String {
    if before == after {
        return String::new();
    }
    let diff = similar::TextDiff::from_lines(before, after);
    diff.unified_diff()
        .context_radius(CONTEXT)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, arch: &str, version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            status: "ii".into(),
        }
    }

    fn list(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn render_sorts_and_names_the_architecture() {
        let text = render(&[
            pkg("zlib1g", "amd64", "1:1.2.13.dfsg-1"),
            pkg("libc6", "i386", "2.36-9+deb12u4"),
            pkg("libc6", "amd64", "2.36-9+deb12u4"),
        ]);
        assert_eq!(
            text,
            "libc6:amd64 2.36-9+deb12u4\nlibc6:i386 2.36-9+deb12u4\nzlib1g:amd64 1:1.2.13.dfsg-1\n"
        );
        // The epoch's colon stays in the version: the name is split at the last colon
        // before the space.
        let c = compare("", &text);
        assert_eq!(c.added[2].package, "zlib1g");
        assert_eq!(c.added[2].version, "1:1.2.13.dfsg-1");
    }

    #[test]
    fn render_orders_by_the_line_bytes_and_drops_repeated_lines() {
        // In observation order (`a` before `a-b`: name, then architecture) the lines are
        // not in byte order (`-` sorts before `:`); the file is in byte order, each line once.
        let text = render(&[
            pkg("a", "amd64", "1"),
            pkg("a-b", "amd64", "2"),
            pkg("a-b", "amd64", "2"),
            pkg("a+c", "all", "3"),
        ]);
        assert_eq!(text, "a+c:all 3\na-b:amd64 2\na:amd64 1\n");
        // Already in byte order: the same bytes.
        assert_eq!(
            render(&[pkg("a+c", "all", "3"), pkg("a-b", "amd64", "2")]),
            "a+c:all 3\na-b:amd64 2\n"
        );
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn compare_finds_added_removed_and_changed() {
        let before = list(&[
            "base-files:amd64 12.4",
            "libpk:amd64 1.0-1",
            "old-tool:all 0.9",
            "pk-app:amd64 1.0-1",
        ]);
        let after = list(&[
            "base-files:amd64 12.4",
            "libpk:amd64 1.1-1",
            "new-dep:amd64 2.0",
            "pk-app:amd64 1.1-1",
        ]);
        let c = compare(&before, &after);
        assert_eq!(
            c.changed
                .iter()
                .map(|c| format!("{}:{} {} -> {}", c.package, c.arch, c.from, c.to))
                .collect::<Vec<_>>(),
            ["libpk:amd64 1.0-1 -> 1.1-1", "pk-app:amd64 1.0-1 -> 1.1-1"]
        );
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.added[0].package, "new-dep");
        assert_eq!(c.removed.len(), 1);
        assert_eq!(c.removed[0].package, "old-tool");
        assert!(compare(&before, &before).is_empty());
    }

    #[test]
    fn damaged_lines_are_skipped_not_fatal() {
        let c = compare(
            "garbage\nlibpk:amd64 1.0\n",
            "libpk:amd64 1.1\nno-space-here\n",
        );
        assert_eq!(c.changed.len(), 1);
        assert!(c.added.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn unified_diff_of_an_update() {
        let before = list(&[
            "a:amd64 1",
            "b:amd64 1",
            "c:amd64 1",
            "d:amd64 1",
            "libpk:amd64 1.0-1",
            "e:amd64 1",
            "f:amd64 1",
            "g:amd64 1",
            "h:amd64 1",
            "pk-app:amd64 1.0-1",
        ]);
        let after = before
            .replace("libpk:amd64 1.0-1", "libpk:amd64 1.1-1")
            .replace("pk-app:amd64 1.0-1", "pk-app:amd64 1.1-1");
        insta::assert_snapshot!(unified(&before, &after, "a/deb-1", "b/deb-1"), @r"
        --- a/deb-1
        +++ b/deb-1
        @@ -2,9 +2,9 @@
         b:amd64 1
         c:amd64 1
         d:amd64 1
        -libpk:amd64 1.0-1
        +libpk:amd64 1.1-1
         e:amd64 1
         f:amd64 1
         g:amd64 1
         h:amd64 1
        -pk-app:amd64 1.0-1
        +pk-app:amd64 1.1-1
        ");
        // Stable: the same input gives the same bytes, and no change gives nothing.
        assert_eq!(
            unified(&before, &after, "a/deb-1", "b/deb-1"),
            unified(&before, &after, "a/deb-1", "b/deb-1")
        );
        assert_eq!(unified(&before, &before, "a", "b"), "");
    }

    #[test]
    fn unified_diff_from_nothing_lists_every_package() {
        insta::assert_snapshot!(unified("", &list(&["a:amd64 1", "b:all 2"]), "a/x", "b/x"), @r"
        --- a/x
        +++ b/x
        @@ -0,0 +1,2 @@
        +a:amd64 1
        +b:all 2
        ");
    }
}
