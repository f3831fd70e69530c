//! The alert outbox: one SQLite file (`<repo>/.patchkeeper/alerts.sqlite`) holding the
//! standing conditions and every delivery not yet acknowledged. A transition and its
//! deliveries are written in one transaction, before anything is sent; a delivery is
//! marked done only after the target answered 2xx — so a crash or restart at any point
//! loses nothing (at-least-once: a delivery cut off after the target took it is sent again,
//! with the same alert id).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Alert, AlertStatus, Evaluation, Standing};
use crate::model::Webhook;

/// The outbox's errors.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite refused.
    #[error("alert outbox {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The directory could not be made.
    #[error("alert outbox {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One delivery waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its sequence number (the outbox's order).
    pub seq: i64,
    /// The webhook's name.
    pub target: String,
    /// Where to POST.
    pub url: String,
    /// The environment variable with the signing secret.
    pub secret_env: Option<String>,
    /// The alert id.
    pub alert_id: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The body, exactly as it is signed and sent.
    pub body: Vec<u8>,
    /// Attempts so far.
    pub attempts: u32,
}

/// The outbox.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let err = |source| OutboxError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS standing (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 target TEXT NOT NULL,
                 url TEXT NOT NULL,
                 secret_env TEXT,
                 alert_id TEXT NOT NULL,
                 status TEXT NOT NULL,
                 body BLOB NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER NOT NULL,
                 created_at INTEGER NOT NULL,
                 delivered_at INTEGER,
                 last_error TEXT
             );
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_at);",
        )
        .map_err(err)?;
        Ok(Outbox {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        OutboxError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The standing conditions.
    pub fn standing(&self) -> Result<BTreeMap<String, Standing>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM standing")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (key, value) = row.map_err(|e| self.err(e))?;
            match serde_json::from_str::<Standing>(&value) {
                Ok(s) => {
                    out.insert(key, s);
                }
                // A row another version wrote: dropped, so the condition (if it still
                // holds) opens again rather than standing unreadable forever.
                Err(e) => tracing::warn!(key, "unreadable standing alert dropped: {e}"),
            }
        }
        Ok(out)
    }

    /// Records an evaluation's transitions and queues one delivery per transition and
    /// target that wants it — in one transaction.
    pub fn record(
        &mut self,
        e: &Evaluation,
        hooks: &[Webhook],
        now: Timestamp,
    ) -> Result<usize, OutboxError> {
        let path = self.path.clone();
        let err = |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut queued = 0;
        {
            let mut enqueue = tx
                .prepare(
                    "INSERT INTO outbox (target, url, secret_env, alert_id, status, body, next_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )
                .map_err(err)?;
            let transitions = e
                .opened
                .iter()
                .map(|s| (s, AlertStatus::Firing))
                .chain(e.cleared.iter().map(|s| (s, AlertStatus::Resolved)));
            for (s, status) in transitions {
                let alert = Alert::of(s, status, now);
                for hook in hooks.iter().filter(|h| super::wants(h, &s.condition)) {
                    enqueue
                        .execute(params![
                            hook.name,
                            hook.url,
                            hook.secret_env,
                            alert.id,
                            status.as_str(),
                            alert.body(hook.format),
                            ms(now)
                        ])
                        .map_err(err)?;
                    queued += 1;
                }
            }
            for s in &e.cleared {
                tx.execute(
                    "DELETE FROM standing WHERE key = ?1",
                    params![s.condition.key],
                )
                .map_err(err)?;
            }
            for s in &e.opened {
                let value = serde_json::to_string(s).unwrap_or_default();
                tx.execute(
                    "INSERT OR REPLACE INTO standing (key, value) VALUES (?1, ?2)",
                    params![s.condition.key, value],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(queued)
    }

    /// Deliveries due at `now`, oldest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, target, url, secret_env, alert_id, status, body, attempts FROM outbox
                 WHERE delivered_at IS NULL AND next_at <= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![ms(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(Delivery {
                        seq: r.get(0)?,
                        target: r.get(1)?,
                        url: r.get(2)?,
                        secret_env: r.get(3)?,
                        alert_id: r.get(4)?,
                        status: r.get(5)?,
                        body: r.get(6)?,
                        attempts: r.get(7)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// When the next undelivered delivery is due (`None`: nothing waits).
    pub fn next_due(&self) -> Result<Option<Timestamp>, OutboxError> {
        let at: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(at.and_then(|ms| Timestamp::from_millisecond(ms).ok()))
    }

    /// Undelivered deliveries.
    pub fn pending(&self) -> Result<usize, OutboxError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The target took it.
    pub fn delivered(&self, seq: i64, now: Timestamp) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE seq = ?1",
                params![seq, ms(now)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// It failed: retry at `next`.
    pub fn failed(&self, seq: i64, next: Timestamp, error: &str) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE seq = ?1",
                params![seq, ms(next), error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets deliveries done before `before` (the outbox keeps a week for inspection).
    pub fn prune(&self, before: Timestamp) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?1",
                params![ms(before)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
