//! A pack of the new blobs of one report commit: written as one `.pack` and its `.idx`
//! under `objects/pack/` instead of one loose object file each.
//!
//! Why: a report commit for thousands of hosts writes a host file and a package list per
//! changed host. As loose objects that is a temporary file, a write, a rename (and a
//! fan-out directory) per blob — measured at 1,000 hosts, the file system calls cost about
//! as much CPU as the rest of the commit. A pack is two files. Objects are stored whole
//! (no deltas, deflated at the fast level); `git gc` may repack them later like any pack.
//!
//! The format is Git's pack v2 and index v2 (`Documentation/gitformat-pack.txt`): readers
//! are libgit2 and git itself, and the tests read every pack back with both.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use sha1::{Digest, Sha1};

/// Git's object type number of a blob in a pack entry header.
const OBJ_BLOB: u8 = 3;
/// Offsets at or above this go to the index's 64-bit table.
const LARGE_OFFSET: u64 = 0x8000_0000;

/// Why a pack could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Compressing an object failed (only an allocation failure can do that).
    #[error("compress an object: {0}")]
    Compress(#[source] std::io::Error),
    /// Writing the pack or index file failed.
    #[error("write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// libgit2 could not look up or reload the object database.
    #[error("object database: {}", .0.message())]
    Odb(#[source] git2::Error),
}

/// Blobs collected for one pack, in the order added.
pub struct PackBuilder {
    /// The pack's bytes after its 12-byte header.
    body: Vec<u8>,
    /// Each object: id, CRC-32 of its packed bytes, offset in the pack.
    entries: Vec<(Oid, u32, u64)>,
    seen: HashSet<Oid>,
}

/// The Git object id of a blob with `content`.
pub fn blob_id(content: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    oid(&h.finalize())
}

fn oid(digest: &[u8]) -> Oid {
    // A SHA-1 digest is 20 bytes, which is exactly what an Oid is made from: the fallback
    // is never taken.
    Oid::from_bytes(digest).unwrap_or(Oid::ZERO_SHA1)
}

impl Default for PackBuilder {
    fn default() -> PackBuilder {
        PackBuilder::new()
    }
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> PackBuilder {
        PackBuilder {
            body: Vec::new(),
            entries: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// How many objects the pack holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pack holds no object.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a blob (once per content) and returns its id.
    pub fn add_blob(&mut self, content: &[u8]) -> Result<Oid, PackError> {
        let id = blob_id(content);
        if !self.seen.insert(id) {
            return Ok(id);
        }
        let offset = 12 + self.body.len() as u64;
        let start = self.body.len();
        // Entry header: type and size, 4 bits of size in the first byte, then 7 per byte.
        let mut size = content.len() as u64;
        let mut byte = (OBJ_BLOB << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            self.body.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        self.body.push(byte);
        let mut z = flate2::write::ZlibEncoder::new(&mut self.body, flate2::Compression::fast());
        z.write_all(content).map_err(PackError::Compress)?;
        z.finish().map_err(PackError::Compress)?;
        let mut crc = flate2::Crc::new();
        crc.update(&self.body[start..]);
        self.entries.push((id, crc.sum(), offset));
        Ok(id)
    }

    /// Writes the pack and its index into `repo`'s object directory and makes libgit2 see
    /// them. Nothing is written for an empty pack. The index is written last and renamed
    /// into place, so a reader never finds an index without its pack.
    pub fn write(self, repo: &Repository) -> Result<(), PackError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let dir = repo.path().join("objects").join("pack");
        std::fs::create_dir_all(&dir).map_err(|source| PackError::Write {
            path: dir.clone(),
            source,
        })?;
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&count.to_be_bytes());
        let mut h = Sha1::new();
        h.update(&header);
        h.update(&self.body);
        let pack_sum = h.finalize();
        let name = oid(&pack_sum).to_string();
        let index = index_bytes(self.entries, &pack_sum);

        let pack_path = dir.join(format!("pack-{name}.pack"));
        let idx_path = dir.join(format!("pack-{name}.idx"));
        write_file(&dir, &pack_path, &[&header, &self.body, &pack_sum])?;
        write_file(&dir, &idx_path, &[&index])?;
        repo.odb()
            .and_then(|odb| odb.refresh())
            .map_err(PackError::Odb)
    }
}

/// The index v2 of a pack with `entries` and trailer `pack_sum`.
fn index_bytes(mut entries: Vec<(Oid, u32, u64)>, pack_sum: &[u8]) -> Vec<u8> {
    entries.sort_by_key(|a| a.0);
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    out.extend_from_slice(&[0xff, b't', b'O', b'c']);
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in &entries {
        fanout[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in &entries {
        out.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in &entries {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, _, offset) in &entries {
        let small = if *offset < LARGE_OFFSET {
            *offset as u32
        } else {
            let i = large.len() as u32;
            large.push(*offset);
            0x8000_0000 | i
        };
        out.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(pack_sum);
    let idx_sum = Sha1::digest(&out);
    out.extend_from_slice(&idx_sum);
    out
}

/// Writes `parts` to a temporary file in `dir`, then renames it to `path`.
fn write_file(dir: &Path, path: &Path, parts: &[&[u8]]) -> Result<(), PackError> {
    let err = |source| PackError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    for part in parts {
        tmp.write_all(part).map_err(err)?;
    }
    // Read-only, as git writes its packs (a pack is never modified, only replaced).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pack_reads_back_with_libgit2_and_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("init");
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let contents: [&[u8]; 4] = [b"", b"hello\n", &big, b"hello\n"];
        let mut pack = PackBuilder::new();
        let ids: Vec<Oid> = contents
            .iter()
            .map(|c| pack.add_blob(c).expect("add"))
            .collect();
        assert_eq!(pack.len(), 3, "the same content is packed once");
        pack.write(&repo).expect("write");
        for (content, id) in contents.iter().zip(&ids) {
            assert_eq!(
                *id,
                Oid::hash_object(git2::ObjectType::Blob, content).expect("hash")
            );
            let blob = repo.find_blob(*id).expect("libgit2 finds the blob");
            assert_eq!(blob.content(), *content);
        }
        // git itself: the pack verifies and every object is found.
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        git(&["fsck", "--strict"]);
        let packs = std::fs::read_dir(dir.path().join(".git/objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "idx"))
            .count();
        assert_eq!(packs, 1);
        assert_eq!(
            git(&["cat-file", "-s", &ids[2].to_string()]).trim(),
            big.len().to_string()
        );
        let idx = std::fs::read_dir(dir.path().join(".git/objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "idx"))
            .expect("idx")
            .path();
        git(&["verify-pack", idx.to_str().expect("utf-8 path")]);
    }

    #[test]
    fn offsets_past_two_gib_go_to_the_large_offset_table() {
        let id = |b: u8| Oid::from_bytes(&[b; 20]).expect("oid");
        let idx = index_bytes(vec![(id(2), 7, 0x1_0000_0000), (id(1), 9, 12)], &[0; 20]);
        let n = 2;
        let offsets = 8 + 1024 + n * 20 + n * 4;
        // Sorted by id: id(1) at offset 12, id(2) in the 64-bit table, entry 0.
        assert_eq!(&idx[offsets..offsets + 4], &12u32.to_be_bytes());
        assert_eq!(
            &idx[offsets + 4..offsets + 8],
            &0x8000_0000u32.to_be_bytes()
        );
        assert_eq!(
            &idx[offsets + 8..offsets + 16],
            &0x1_0000_0000u64.to_be_bytes()
        );
        assert_eq!(idx.len(), offsets + 8 + 8 + 20 + 20);
    }
}
