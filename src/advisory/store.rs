//! The local advisory store: one SQLite file (`rusqlite` with SQLite bundled, so no system
//! library is needed) holding what each import read, keyed by the path it came from.
//!
//! Why SQLite: one file, transactional (an import replaces a source's records in one
//! transaction, so a crash leaves the previous data), readable by anyone with the `sqlite3`
//! tool, and a good fit for the alert outbox that later work needs. Records are stored as
//! normalized JSON (the [`Record`] type) with the columns the matcher selects on.
//!
//! Tables (schema version 1, in `PRAGMA user_version`):
//! - `imports(source PRIMARY KEY, format, digest, stats, data_date, imported_at, checked_at)`
//! - `records(source, id, ecosystem, package, data)`, indexed on `(ecosystem, package)`.
//! - `checks(source PRIMARY KEY, etag, last_modified, checked_at, succeeded_at, error,
//!   failed_at, failures)`: `serve`'s last check of each source it refreshes (the HTTP
//!   validators of a URL's last good response, the last error). Added without a schema
//!   version change (`CREATE TABLE IF NOT EXISTS`): older releases ignore it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::import::Loaded;
use super::{ReadStats, Record};

/// The schema version this release writes and reads.
const SCHEMA_VERSION: i64 = 1;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("advisory store `{}`: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory of the store cannot be created.
    #[error("advisory store `{}`: cannot create its directory: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored record does not read back (written by another version).
    #[error("advisory store `{}`: a stored record does not read back: {source}", path.display())]
    Record {
        /// The store file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer patchkeeper.
    #[error("advisory store `{}` has schema version {found}; this patchkeeper reads {SCHEMA_VERSION} (re-import into a new store)", path.display())]
    Version {
        /// The store file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
}

/// What one import read, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportInfo {
    /// The path imported (absolute).
    pub source: String,
    /// `debian-tracker` or `osv`.
    pub format: String,
    /// SHA-256 of what was read.
    pub digest: String,
    /// Counts and skip reasons.
    pub stats: ReadStats,
    /// How new the data is (newest record date, else the file's modification time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_date: Option<String>,
    /// When it was imported (RFC 3339).
    pub imported_at: String,
    /// When the source was last checked for changes (re-imports of unchanged data only
    /// move this).
    pub checked_at: String,
}

/// What is loaded: the imports and an id naming exactly this data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// `sha256:` and 16 hex digits over every import's source and digest: plans and
    /// reports name it, so a plan says exactly which advisory data it used.
    pub id: String,
    /// Records stored.
    pub records: usize,
    /// The newest data date over all imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_date: Option<String>,
    /// The imports, by source.
    pub imports: Vec<ImportInfo>,
}

/// `serve`'s record of checking one source for new data (a path or an `https://` URL),
/// joined with what its last good import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceCheck {
    /// The source as keyed in the store: an `https://` URL, `fleet-repo:PATH`, or an
    /// absolute path.
    pub source: String,
    /// When it was last checked, successfully or not (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// When a check last succeeded (new data imported, or found unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_at: Option<String>,
    /// Why the last check failed (`null`: it succeeded). The data of the last good import
    /// stays in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a check last failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// Checks failed in a row since the last success.
    pub failures: u64,
    /// When the data in use was imported (`null`: never imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
    /// Records stored from it.
    pub records: usize,
    /// Malformed entries skipped at its last import.
    pub skipped: usize,
    /// How new its data is (newest record date, else the file's or response's date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_date: Option<String>,
    /// HTTP validators of the last good response (URLs only), sent back as
    /// `If-None-Match` / `If-Modified-Since`.
    #[serde(skip)]
    pub etag: Option<String>,
    /// See `etag`.
    #[serde(skip)]
    pub last_modified: Option<String>,
    /// A check was recorded (`serve` refreshed it); `false`: only imported by hand.
    #[serde(skip)]
    pub recorded: bool,
}

/// What one check of a source found, to record with [`Store::record_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Read (imported or unchanged); the validators of the response, for a URL.
    Ok {
        /// `ETag` of the response.
        etag: Option<String>,
        /// `Last-Modified` of the response.
        last_modified: Option<String>,
    },
    /// A URL answered 304 Not Modified: the validators stay.
    NotModified,
    /// The check failed; the previous data and validators stay.
    Failed(String),
}

/// The store file, open.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(sql(path))?;
        let store = Store {
            conn,
            path: path.to_owned(),
        };
        store.init()?;
        Ok(store)
    }

    /// Opens the store at `path` only if it exists (readers never create one).
    pub fn open_existing(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        Store::open(path).map(Some)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<(), StoreError> {
        let s = sql(&self.path);
        // Several patchkeeper processes may read while one imports: WAL lets readers go on;
        // a writer waits up to 30 s for another writer instead of failing at once.
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(&s)?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&s)?;
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&s)?;
        match version {
            0 => {
                self.conn
                    .execute_batch(
                        "BEGIN;
                         CREATE TABLE IF NOT EXISTS imports (
                             source TEXT PRIMARY KEY,
                             format TEXT NOT NULL,
                             digest TEXT NOT NULL,
                             stats TEXT NOT NULL,
                             data_date TEXT,
                             imported_at TEXT NOT NULL,
                             checked_at TEXT NOT NULL);
                         CREATE TABLE IF NOT EXISTS records (
                             source TEXT NOT NULL,
                             id TEXT NOT NULL,
                             ecosystem TEXT NOT NULL,
                             package TEXT NOT NULL,
                             data TEXT NOT NULL);
                         CREATE INDEX IF NOT EXISTS records_by_package ON records(ecosystem, package);
                         CREATE INDEX IF NOT EXISTS records_by_source ON records(source);
                         PRAGMA user_version = 1;
                         COMMIT;",
                    )
                    .map_err(&s)?;
                Ok(())
            }
            SCHEMA_VERSION => Ok(()),
            found => Err(StoreError::Version {
                path: self.path.clone(),
                found,
            }),
        }?;
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS checks (
                     source TEXT PRIMARY KEY,
                     etag TEXT,
                     last_modified TEXT,
                     checked_at TEXT,
                     succeeded_at TEXT,
                     error TEXT,
                     failed_at TEXT,
                     failures INTEGER NOT NULL DEFAULT 0);",
            )
            .map_err(&s)
    }

    /// Records a check of `source` at `now`.
    pub fn record_check(
        &mut self,
        source: &str,
        outcome: &CheckOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = whole_seconds(now).to_string();
        let s = sql(&self.path);
        self.conn
            .execute(
                "INSERT OR IGNORE INTO checks (source) VALUES (?1)",
                params![source],
            )
            .map_err(&s)?;
        match outcome {
            CheckOutcome::Ok {
                etag,
                last_modified,
            } => self.conn.execute(
                "UPDATE checks SET etag = ?2, last_modified = ?3, checked_at = ?4,
                     succeeded_at = ?4, error = NULL, failures = 0 WHERE source = ?1",
                params![source, etag, last_modified, now],
            ),
            CheckOutcome::NotModified => self.conn.execute(
                "UPDATE checks SET checked_at = ?2, succeeded_at = ?2, error = NULL,
                     failures = 0 WHERE source = ?1",
                params![source, now],
            ),
            CheckOutcome::Failed(error) => self.conn.execute(
                "UPDATE checks SET checked_at = ?2, failed_at = ?2, error = ?3,
                     failures = failures + 1 WHERE source = ?1",
                params![source, now, error],
            ),
        }
        .map_err(&s)?;
        Ok(())
    }

    /// Every source checked or imported, by source: its last check joined with its import.
    pub fn checks(&self) -> Result<Vec<SourceCheck>, StoreError> {
        let s = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT source, etag, last_modified, checked_at, succeeded_at, error, failed_at,
                        failures FROM checks",
            )
            .map_err(&s)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SourceCheck {
                    source: r.get(0)?,
                    etag: r.get(1)?,
                    last_modified: r.get(2)?,
                    checked_at: r.get(3)?,
                    succeeded_at: r.get(4)?,
                    error: r.get(5)?,
                    failed_at: r.get(6)?,
                    failures: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                    recorded: true,
                    ..SourceCheck::default()
                })
            })
            .map_err(&s)?;
        let mut by_source = std::collections::BTreeMap::new();
        for row in rows {
            let c = row.map_err(&s)?;
            by_source.insert(c.source.clone(), c);
        }
        for i in self.imports()? {
            let c = by_source
                .entry(i.source.clone())
                .or_insert_with(|| SourceCheck {
                    source: i.source.clone(),
                    // Imported by `advisories import`: that was its last (good) check.
                    checked_at: Some(i.checked_at.clone()),
                    succeeded_at: Some(i.checked_at.clone()),
                    ..SourceCheck::default()
                });
            c.imported_at = Some(i.imported_at);
            c.records = i.stats.records;
            c.skipped = i.stats.skipped;
            c.data_date = i.data_date;
        }
        Ok(by_source.into_values().collect())
    }

    /// The check of `source`, if there was one.
    pub fn check_of(&self, source: &str) -> Result<Option<SourceCheck>, StoreError> {
        Ok(self.checks()?.into_iter().find(|c| c.source == source))
    }

    /// Replaces everything imported from `loaded.source` with `loaded`, in one transaction.
    pub fn replace(&mut self, loaded: &Loaded, now: Timestamp) -> Result<ImportInfo, StoreError> {
        let path = self.path.clone();
        let s = sql(&path);
        let source = loaded.source.to_string_lossy().into_owned();
        let now = whole_seconds(now);
        let info = ImportInfo {
            source: source.clone(),
            format: loaded.format.as_str().to_owned(),
            digest: loaded.digest.clone(),
            stats: loaded.stats.clone(),
            data_date: loaded.data_date.clone(),
            imported_at: now.to_string(),
            checked_at: now.to_string(),
        };
        let stats = serde_json::to_string(&info.stats).map_err(|source| StoreError::Record {
            path: path.clone(),
            source,
        })?;
        let tx = self.conn.transaction().map_err(&s)?;
        tx.execute("DELETE FROM records WHERE source = ?1", params![source])
            .map_err(&s)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO records (source, id, ecosystem, package, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&s)?;
            for r in &loaded.records {
                let data = serde_json::to_string(r).map_err(|source| StoreError::Record {
                    path: path.clone(),
                    source,
                })?;
                insert
                    .execute(params![source, r.id, r.ecosystem, r.package, data])
                    .map_err(&s)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO imports (source, format, digest, stats, data_date, imported_at, checked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                info.source,
                info.format,
                info.digest,
                stats,
                info.data_date,
                info.imported_at,
                info.checked_at
            ],
        )
        .map_err(&s)?;
        tx.commit().map_err(&s)?;
        Ok(info)
    }

    /// Records that `source` was checked at `now` and found unchanged.
    pub fn touch(&mut self, source: &str, now: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE imports SET checked_at = ?2 WHERE source = ?1",
                params![source, whole_seconds(now).to_string()],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// The import of `source`, if any.
    pub fn import_of(&self, source: &str) -> Result<Option<ImportInfo>, StoreError> {
        Ok(self.imports()?.into_iter().find(|i| i.source == source))
    }

    /// Every import, by source.
    pub fn imports(&self) -> Result<Vec<ImportInfo>, StoreError> {
        let s = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT source, format, digest, stats, data_date, imported_at, checked_at
                 FROM imports ORDER BY source",
            )
            .map_err(&s)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(&s)?;
        let mut out = Vec::new();
        for row in rows {
            let (source, format, digest, stats, data_date, imported_at, checked_at) =
                row.map_err(&s)?;
            out.push(ImportInfo {
                source,
                format,
                digest,
                stats: serde_json::from_str(&stats).unwrap_or_default(),
                data_date,
                imported_at,
                checked_at,
            });
        }
        Ok(out)
    }

    /// The snapshot: the imports and the id naming them.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let imports = self.imports()?;
        let records: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
            .map_err(sql(&self.path))?;
        Ok(snapshot_of(imports, usize::try_from(records).unwrap_or(0)))
    }

    /// Every stored record, or only those of `ecosystems` (each with or without its
    /// release: `AlmaLinux:9` also selects records written for `AlmaLinux`).
    pub fn records(
        &self,
        ecosystems: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Record>, StoreError> {
        let s = sql(&self.path);
        let mut out = Vec::new();
        let mut read =
            |stmt: &mut rusqlite::Statement<'_>, arg: Option<&str>| -> Result<(), StoreError> {
                let mut rows = match arg {
                    Some(a) => stmt.query(params![a]),
                    None => stmt.query([]),
                }
                .map_err(&s)?;
                while let Some(row) = rows.next().map_err(&s)? {
                    let data: String = row.get(0).map_err(&s)?;
                    let record: Record =
                        serde_json::from_str(&data).map_err(|source| StoreError::Record {
                            path: self.path.clone(),
                            source,
                        })?;
                    out.push(record);
                }
                Ok(())
            };
        match ecosystems {
            None => {
                let mut stmt = self.conn.prepare("SELECT data FROM records").map_err(&s)?;
                read(&mut stmt, None)?;
            }
            Some(set) => {
                let mut wanted: BTreeSet<&str> = BTreeSet::new();
                for e in set {
                    wanted.insert(e.as_str());
                    wanted.insert(super::ecosystem::base_name(e));
                }
                let mut stmt = self
                    .conn
                    .prepare("SELECT data FROM records WHERE ecosystem = ?1")
                    .map_err(&s)?;
                for e in wanted {
                    read(&mut stmt, Some(e))?;
                }
            }
        }
        Ok(out)
    }

    /// Removes the import of `source` and its records; whether there was one.
    pub fn forget(&mut self, source: &str) -> Result<bool, StoreError> {
        let s = sql(&self.path);
        let tx = self.conn.transaction().map_err(&s)?;
        tx.execute("DELETE FROM records WHERE source = ?1", params![source])
            .map_err(&s)?;
        tx.execute("DELETE FROM checks WHERE source = ?1", params![source])
            .map_err(&s)?;
        let n = tx
            .execute("DELETE FROM imports WHERE source = ?1", params![source])
            .map_err(&s)?;
        tx.commit().map_err(&s)?;
        Ok(n > 0)
    }

    /// The digest stored for `source`, if it was imported.
    pub fn digest_of(&self, source: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT digest FROM imports WHERE source = ?1",
                params![source],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path))
    }
}

/// The snapshot of a set of imports (pure: the id depends only on sources and digests).
pub fn snapshot_of(mut imports: Vec<ImportInfo>, records: usize) -> Snapshot {
    imports.sort_by(|a, b| a.source.cmp(&b.source));
    let mut h = Sha256::new();
    for i in &imports {
        h.update(i.source.as_bytes());
        h.update([0]);
        h.update(i.digest.as_bytes());
        h.update([b'\n']);
    }
    let digest: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let data_date = imports
        .iter()
        .filter_map(|i| i.data_date.as_deref())
        .max_by(
            |a, b| match (a.parse::<Timestamp>(), b.parse::<Timestamp>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            },
        )
        .map(str::to_owned);
    Snapshot {
        id: format!("sha256:{digest}"),
        records,
        data_date,
        imports,
    }
}

/// Times are stored to the second: readable, and precise enough for data ages.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}
