//! The state database (SQLite in WAL mode, `synchronous=FULL`): stays, the outbox of
//! reports, snapshot images, occupancy and the `out_order_no` sequence.
//!
//! Every change a lane (or an operator) makes is one transaction: a stay, the reports
//! it causes and the occupancy change commit together or not at all, and a call
//! returns only once the commit is on disk. A lane's planned stay action, however many
//! stays it touches, goes through [`Store::apply`] (`apply.rs`): one action, one
//! transaction, proven by crash tests that abort between every pair of its statements. The store is synchronous (one connection
//! behind a mutex); async callers use `spawn_blocking`. Other processes (operator
//! commands) may write to the same file at the same time; SQLite's locking serialises
//! them and the uploader polls for their rows.
//!
//! A database that cannot be read is never recreated: the error names the file and
//! the service stops, so an operator can restore or inspect it with `sqlite3`.

mod apply;
mod cluster;
mod fault;
mod order_no;
mod outbox;
mod schema;
mod stays;

pub use apply::{Applied, LaneNote};
pub use cluster::{HeldRow, PassageOrigin, SeenNode};
pub use order_no::{SequenceState, allocate as allocate_order_no, format as format_order_no};
pub use outbox::{
    HeldReport, KindSummary, OutboxItem, OutboxSummary, Outcome, Refusal, StoredImage,
};
pub use stays::{
    ClosedStay, ExitDetails, LocalClose, NewStay, Occupancy, OpenedStay, Stay, StayState,
};

use crate::config::LotConfig;
use crate::config::storage::{SnapshotMode, StorageConfig};
use crate::time::{Timestamp, china_standard_time};
use chrono::FixedOffset;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// File name of the state database inside `[storage] dir`.
pub const DB_FILE: &str = "state.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create storage directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state database {path} is corrupt or not a database ({detail}); it was left untouched: \
         restore it from a backup, or move it aside to start with an empty one"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("state database {path}: {source}")]
    Schema {
        path: PathBuf,
        source: schema::MigrationError,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no stay {0}")]
    NoSuchStay(String),
    #[error("stay {0} is not open")]
    NotOpen(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored report {id} cannot be read: {source}")]
    BadReport { id: i64, source: serde_json::Error },
}

/// How the store shapes what it queues.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Offset of lot-local time, for the stamp in `out_order_no`.
    pub offset: FixedOffset,
    pub snapshot_mode: SnapshotMode,
    /// Bytes pending images may take before the oldest are dropped.
    pub image_budget_bytes: u64,
    /// Acknowledged reports and closed stays older than this are pruned.
    pub retention_ms: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            offset: china_standard_time(),
            snapshot_mode: SnapshotMode::Separate,
            image_budget_bytes: 1024 * 1024 * 1024,
            retention_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

impl StoreOptions {
    pub fn from_config(storage: &StorageConfig, offset: FixedOffset) -> Self {
        StoreOptions {
            offset,
            snapshot_mode: storage.snapshot_mode,
            image_budget_bytes: storage.disk_budget_mb.saturating_mul(1024 * 1024),
            retention_ms: i64::from(storage.retention_days) * 24 * 3600 * 1000,
        }
    }
}

/// The state database. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    lot_no: String,
    total_spaces: i64,
    options: StoreOptions,
    /// Woken after every commit that queues reports, so the uploader sends at once.
    notify: Arc<Notify>,
    /// `PRAGMA synchronous` as read inside the last committed write transaction
    /// (-1: none yet). Read back, not remembered from what was asked, so a test can
    /// prove which writes were durable ([`Store::durability`]).
    last_write_synchronous: AtomicI64,
}

/// The connection's durability settings as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `wal` when the database is in WAL mode.
    pub journal_mode: String,
    /// `PRAGMA synchronous` now: 2 = FULL, 1 = NORMAL.
    pub synchronous: i64,
    /// The level the last committed write ran under; `None` before the first.
    pub last_write_synchronous: Option<i64>,
}

impl Store {
    /// Opens (creating if absent) the state database in `dir` with default options.
    pub fn open(dir: &Path, lot: &LotConfig) -> Result<Store, StoreError> {
        Self::open_with(dir, lot, StoreOptions::default())
    }

    /// Opens the database of a site config with its storage options.
    pub fn open_site(site: &crate::config::SiteConfig) -> Result<Store, StoreError> {
        let offset = crate::time::parse_offset(&site.platform.utc_offset)
            .unwrap_or_else(china_standard_time);
        Self::open_with(
            &site.storage.dir,
            &site.lot,
            StoreOptions::from_config(&site.storage, offset),
        )
    }

    pub fn open_with(
        dir: &Path,
        lot: &LotConfig,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        // Several processes opening a new database at once (the service and operator
        // commands) race to switch it to WAL and migrate it; SQLite answers some of
        // those races with an immediate BUSY that its busy handler does not wait out.
        // Opening again is safe: every step is idempotent.
        let mut attempt = 0;
        loop {
            match Self::open_once(dir, lot, options.clone()) {
                Err(StoreError::Sql(e))
                    if attempt < OPEN_ATTEMPTS
                        && matches!(
                            e.sqlite_error_code(),
                            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                        ) =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50 * attempt as u64));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path, lot: &LotConfig, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let corrupt = |e: rusqlite::Error| classify(&path, e);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(corrupt)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(corrupt)?;
        // The first statements read the header: a file that is not a database fails here.
        // Space freed by delivered snapshots is handed back to the file system bit by
        // bit (`reclaim_free_pages`). This takes effect only in a new, empty database;
        // an older one keeps its mode (docs/operations.md says how to convert it).
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(corrupt)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path,
                detail: format!("cannot switch to WAL (journal_mode {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(corrupt)?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::MigrationError::Sql(e) => classify(&path, e),
            other => StoreError::Schema {
                path: path.clone(),
                source: other,
            },
        })?;
        let total = lot.total_spaces.max(0);
        // Only write when the configured total changed: operator commands open the store
        // often, and a write costs a disk sync.
        let (stored_total, occupied): (i64, i64) = conn
            .query_row(
                "SELECT total, occupied FROM occupancy WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(corrupt)?;
        if stored_total != total || occupied > total {
            conn.execute(
                "UPDATE occupancy SET total = ?1, occupied = MIN(occupied, ?1) WHERE id = 1",
                [total],
            )
            .map_err(corrupt)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            lot_no: lot.parking_lot_no.clone(),
            total_spaces: total,
            options,
            notify: Arc::new(Notify::new()),
            last_write_synchronous: AtomicI64::new(-1),
        })
    }

    /// Reads every page of the database (`PRAGMA quick_check`). The service runs this
    /// at start so that damage is found before new data is added to it.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        let result: Result<Vec<String>, rusqlite::Error> = conn
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect());
        match result {
            Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(()),
            Ok(lines) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: lines.join("; "),
            }),
            Err(e) => Err(classify(&self.path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL and `synchronous` read back from the connection, and the level the last
    /// write committed under (tests prove every stay write is durable with it).
    pub fn durability(&self) -> Result<Durability, StoreError> {
        let conn = self.lock();
        let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let last = self.last_write_synchronous.load(Ordering::Relaxed);
        Ok(Durability {
            journal_mode,
            synchronous,
            last_write_synchronous: (last >= 0).then_some(last),
        })
    }

    /// Notes the `synchronous` level the open transaction `tx` runs under.
    fn note_synchronous(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        let level: i64 = tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        self.last_write_synchronous.store(level, Ordering::Relaxed);
        Ok(())
    }

    pub fn lot_no(&self) -> &str {
        &self.lot_no
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Woken after each commit that queues a report (for the uploader).
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite itself consistent (an
        // unfinished transaction is rolled back when the next one begins).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every row `sql` selects with `params`, each read by `row` (a cached statement).
    fn read_all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(sql)?;
        let rows = st.query_map(params, row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The count a `SELECT COUNT(*)` statement returns.
    fn count(&self, sql: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n: i64 = conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits (durably) on `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        self.note_synchronous(&tx)?;
        fault::point();
        tx.commit()?;
        fault::point();
        Ok(value)
    }

    /// Like [`Store::write`] but without waiting for the disk (`synchronous=NORMAL`
    /// for this one transaction). Only for what may be lost on power failure without
    /// harm: delivery results, whose loss means a re-send that the platform answers
    /// as a duplicate. The database stays consistent either way (WAL), and the next
    /// durable commit syncs this one too.
    fn write_relaxed<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result: Result<T, StoreError> = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            self.note_synchronous(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        // Every other transaction must be durable again, whatever happened above.
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        let value = result?;
        restored?;
        Ok(value)
    }

    fn local_secs(&self, now: Timestamp) -> i64 {
        now.0.div_euclid(1000) + i64::from(self.options.offset.local_minus_utc())
    }
}

/// Errors that mean the file itself is damaged become [`StoreError::Corrupt`].
/// How often an open that lost a start-up race is tried again (about 5 s in all).
const OPEN_ATTEMPTS: u32 = 14;

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => StoreError::Sql(e),
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
