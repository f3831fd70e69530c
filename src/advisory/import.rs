//! Reading advisory data from paths as published: a tracker dump (`.json`), an OSV record
//! (`.json`), a directory of OSV records, or an OSV `all.zip` dump. The format of a `.json`
//! file is told from its first key (OSV records start with one of the OSV fields; the
//! tracker dump with a source package name) unless the caller names it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{osv, tracker, ReadStats, Record};

/// What a file holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The Debian security tracker's JSON dump.
    DebianTracker,
    /// OSV records (a file, a directory of files, or a zip dump).
    Osv,
}

impl Format {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::DebianTracker => "debian-tracker",
            Format::Osv => "osv",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "debian-tracker" => Some(Format::DebianTracker),
            "osv" => Some(Format::Osv),
            _ => None,
        }
    }
}

/// A path read: its records and what was skipped.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The path, absolute.
    pub source: PathBuf,
    /// Its format.
    pub format: Format,
    /// SHA-256 (hex) of the bytes read (for a directory: of every file's relative path and
    /// bytes, in name order).
    pub digest: String,
    /// The records.
    pub records: Vec<Record>,
    /// Counts and skip reasons.
    pub stats: ReadStats,
    /// How new the data is: the newest record date, else (the tracker dump carries no
    /// dates) the file's modification time, RFC 3339.
    pub data_date: Option<String>,
}

/// Why a path could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The path cannot be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The zip archive is broken.
    #[error("`{}` is not a readable zip archive: {source}", path.display())]
    Zip {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: zip::result::ZipError,
    },
    /// Not JSON of a known format.
    #[error("`{}`: {message}", path.display())]
    Format {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// What is stored for the source now.
    pub info: super::ImportInfo,
    /// The data was the same as stored (same digest): nothing was rewritten.
    pub unchanged: bool,
}

/// Reads `path` and stores it in `store`, replacing what an earlier import of the same
/// source stored. The source is keyed by its absolute path, or by `label` when given (serve
/// keys the fleet repo's sources `fleet-repo:PATH`, since each commit is checked out
/// elsewhere). Unchanged data (same digest) is not rewritten unless `force`.
pub fn import_path(
    store: &mut super::Store,
    path: &Path,
    label: Option<&str>,
    format: Option<Format>,
    now: jiff::Timestamp,
    force: bool,
) -> Result<Imported, ImportError> {
    let mut loaded = read_path(path, format)?;
    if let Some(l) = label {
        loaded.source = PathBuf::from(l);
    }
    import_loaded(store, &loaded, now, force)
}

/// Stores `loaded` (keyed by its `source`), unless the store holds the same data (same
/// digest) and not `force`: then only the check time moves.
pub fn import_loaded(
    store: &mut super::Store,
    loaded: &Loaded,
    now: jiff::Timestamp,
    force: bool,
) -> Result<Imported, ImportError> {
    let source = loaded.source.to_string_lossy().into_owned();
    if !force {
        if let Some(info) = store.import_of(&source)? {
            if info.digest == loaded.digest {
                store.touch(&source, now)?;
                let info = store.import_of(&source)?.unwrap_or(info);
                return Ok(Imported {
                    info,
                    unchanged: true,
                });
            }
        }
    }
    let info = store.replace(loaded, now)?;
    Ok(Imported {
        info,
        unchanged: false,
    })
}

/// Top-level fields of an OSV record (any of them may come first).
const OSV_FIELDS: &[&str] = &[
    "schema_version",
    "id",
    "modified",
    "published",
    "withdrawn",
    "aliases",
    "upstream",
    "related",
    "summary",
    "details",
    "severity",
    "affected",
    "references",
    "credits",
    "database_specific",
];

/// The format of a JSON document from its first key; `None` when it is not a JSON object.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let mut rest = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    rest = rest.trim_ascii_start();
    rest = rest.strip_prefix(b"{")?.trim_ascii_start();
    if rest.starts_with(b"}") {
        return Some(Format::DebianTracker);
    }
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    let key = std::str::from_utf8(&rest[..end]).ok()?;
    Some(if OSV_FIELDS.contains(&key) {
        Format::Osv
    } else {
        Format::DebianTracker
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `path` (file, directory or zip); `format` overrides the detection of `.json`
/// files.
pub fn read_path(path: &Path, format: Option<Format>) -> Result<Loaded, ImportError> {
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok())
        .map(|t| t.to_string());
    let mut stats = ReadStats::default();
    let mut records = Vec::new();
    let mut hasher = Sha256::new();
    let detected = if meta.is_dir() {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(path)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        {
            let entry = entry.map_err(|e| ImportError::Io {
                path: e.path().unwrap_or(path).to_owned(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("loop in directory tree")),
            })?;
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|x| x == "json")
            {
                files.push(entry.into_path());
            }
        }
        for file in files {
            let bytes = std::fs::read(&file).map_err(io(&file))?;
            let rel = file
                .strip_prefix(path)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            osv::read_record(&bytes, &rel, &mut records, &mut stats);
        }
        Format::Osv
    } else {
        let bytes = std::fs::read(path).map_err(io(path))?;
        hasher.update(&bytes);
        let zip = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("zip"));
        read_file(path, &bytes, zip, format, &mut records, &mut stats)?
    };
    drop_unparsable(&mut records, &mut stats);
    let data_date = stats.newest.clone().or(mtime);
    Ok(Loaded {
        source,
        format: detected,
        digest: hex(&hasher.finalize()),
        records,
        stats,
        data_date,
    })
}

/// Reads data fetched from `url` (a tracker dump, an OSV record, or an OSV `.zip` dump, told
/// from the bytes: a zip starts with `PK`); `fallback_date` (the response's
/// `Last-Modified`, RFC 3339) stands for the data date when no record carries one.
pub fn read_bytes(
    url: &str,
    bytes: &[u8],
    format: Option<Format>,
    fallback_date: Option<String>,
) -> Result<Loaded, ImportError> {
    let mut stats = ReadStats::default();
    let mut records = Vec::new();
    let name = Path::new(url);
    let zip = bytes.starts_with(b"PK\x03\x04");
    let detected = read_file(name, bytes, zip, format, &mut records, &mut stats)?;
    drop_unparsable(&mut records, &mut stats);
    let data_date = stats.newest.clone().or(fallback_date);
    Ok(Loaded {
        source: PathBuf::from(url),
        format: detected,
        digest: hex(&Sha256::digest(bytes)),
        records,
        stats,
        data_date,
    })
}

/// Reads one file's bytes: a zip dump of OSV records, or one JSON document.
fn read_file(
    path: &Path,
    bytes: &[u8],
    zip: bool,
    format: Option<Format>,
    records: &mut Vec<Record>,
    stats: &mut ReadStats,
) -> Result<Format, ImportError> {
    if zip {
        let zip_err = |source| ImportError::Zip {
            path: path.to_owned(),
            source,
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_err)?;
        let mut buf = Vec::new();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(zip_err)?;
            let name = match entry.name() {
                Ok(n) => n.into_owned(),
                Err(_) => format!("zip entry {i}"),
            };
            if !entry.is_file() || !name.ends_with(".json") {
                continue;
            }
            buf.clear();
            if let Err(e) = entry.read_to_end(&mut buf) {
                stats.advisories += 1;
                stats.skip(|| format!("{name}: cannot unpack: {e}"));
                continue;
            }
            osv::read_record(&buf, &name, records, stats);
        }
        return Ok(Format::Osv);
    }
    let format =
        match format.or_else(|| sniff(bytes)) {
            Some(f) => f,
            None => return Err(ImportError::Format {
                path: path.to_owned(),
                message:
                    "not a JSON object (expected a Debian security tracker dump or an OSV record)"
                        .into(),
            }),
        };
    match format {
        Format::Osv => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            osv::read_record(bytes, &name, records, stats);
        }
        Format::DebianTracker => {
            *stats = tracker::read(bytes, &mut |r| records.push(r)).map_err(|e| {
                ImportError::Format {
                    path: path.to_owned(),
                    message: e.to_string(),
                }
            })?;
        }
    }
    Ok(format)
}

/// Leaves out records with a version their ecosystem's ordering cannot read (a malformed
/// entry, skipped with its reason at import rather than silently at matching).
fn drop_unparsable(records: &mut Vec<Record>, stats: &mut ReadStats) {
    records.retain(|r| {
        let Some(ordering) = super::ecosystem::ordering(&r.ecosystem) else {
            return true;
        };
        let bad = match &r.affected {
            super::Affected::Unfixed { .. } => None,
            super::Affected::Ranges { ranges, versions } => ranges
                .iter()
                .flatten()
                .filter_map(|e| match e {
                    // The two spellings that are not versions (OSV's "0" and "*").
                    super::Event::Introduced(v) if v == "0" => None,
                    super::Event::Limit(v) if v.contains('*') => None,
                    super::Event::Introduced(v)
                    | super::Event::Fixed(v)
                    | super::Event::LastAffected(v)
                    | super::Event::Limit(v) => Some(v),
                })
                .chain(versions)
                .find_map(|v| crate::version::parse(ordering, v).err().map(|e| (v, e))),
        };
        match bad {
            None => true,
            Some((v, e)) => {
                stats.records = stats.records.saturating_sub(1);
                stats
                    .skip(|| format!("{} {} {}: version {v:?}: {e}", r.id, r.ecosystem, r.package));
                false
            }
        }
    });
}
