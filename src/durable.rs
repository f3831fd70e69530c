//! Durable whole-file writes (saved plans, `observe --out`): the new contents go to a
//! temporary file in the same directory, which is synced, renamed over the target and made
//! durable by syncing the directory. A crash at any point leaves either the old file or the
//! new one, never a mix or a truncated file (a crash before the rename may leave a
//! `.NAME.*.tmp` file behind, never a damaged target).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents`, atomically and durably. A new file gets mode 0644; an
/// existing one keeps its permissions.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with(path, contents, |_| Ok(()))
}

/// [`write`], with `before_rename` run once the temporary file is complete and synced and
/// before it replaces `path` (tests stop there to play a crash).
fn write_with(
    path: &Path,
    contents: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    before_rename(tmp.path())?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable only once the directory is.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_keeps_its_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("observed.json");
        std::fs::write(&path, b"the old observation").unwrap();
        let mut seen = None;
        let err = write_with(&path, b"the new, longer observation", |tmp| {
            // The new contents are complete on disk, under another name...
            seen = Some(std::fs::read(tmp).unwrap());
            // ...when the process dies.
            Err(std::io::Error::other("crash"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "crash");
        assert_eq!(seen.unwrap(), b"the new, longer observation");
        assert_eq!(std::fs::read(&path).unwrap(), b"the old observation");
    }
}
