//! `parking-bridge backup`: a consistent copy of the state database while `run` runs.
//!
//! SQLite's online backup API copies the pages inside one read transaction, so the
//! copy is the database as it was at one instant (a file copy of a WAL database is
//! not: the `-wal` file holds the newest commits). The copy is written beside the
//! target under a temporary name, checked (`PRAGMA integrity_check`), synced and then
//! renamed over the target, so a failed or interrupted backup never leaves a broken
//! file where the last good one was.
//!
//! Restoring is a file copy with the service stopped (docs/operations.md, "Backups").
//! What was pending at backup time is sent again; what the platform acknowledged after
//! the backup comes back as a duplicate and counts as delivered. `out_order_no`s are
//! not reused: their stamp is the current time, later than any number given out
//! after the backup.

use crate::time::Timestamp;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no state database at {0} (has `run` ever started with this config?)")]
    NoDatabase(PathBuf),
    #[error("state database {path}: {source}")]
    Source {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("backup file {path}: {source}")]
    Target {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("backup file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the database stayed busy for {0:?}; try again")]
    Busy(Duration),
    #[error("the copy failed its integrity check: {0}")]
    Corrupt(String),
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub to: PathBuf,
    pub bytes: u64,
    pub pending_reports: u64,
    pub open_stays: u64,
}

/// How long a backup keeps retrying while `run` holds a write lock.
const BUSY_LIMIT: Duration = Duration::from_secs(60);

/// Copies the state database `db` to `to` (see the module documentation).
pub fn backup(db: &Path, to: &Path) -> Result<BackupSummary, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    let source_err = |source| BackupError::Source {
        path: db.to_path_buf(),
        source,
    };
    // Read-only: a backup can never change what the bridge keeps. Not immutable, so
    // SQLite reads the WAL and sees every commit up to the backup's instant.
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(source_err)?;
    src.busy_timeout(Duration::from_secs(10))
        .map_err(source_err)?;

    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| BackupError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state-backup.db".to_string());
    let tmp = dir.join(format!(".{file_name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = copy_into(&src, &tmp).and_then(|summary| {
        let file = std::fs::File::open(&tmp).map_err(|source| BackupError::Io {
            path: tmp.clone(),
            source,
        })?;
        file.sync_all().map_err(|source| BackupError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, to).map_err(|source| BackupError::Io {
            path: to.to_path_buf(),
            source,
        })?;
        // The rename itself must survive a power cut.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(BackupSummary {
            to: to.to_path_buf(),
            ..summary
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn copy_into(src: &Connection, tmp: &Path) -> Result<BackupSummary, BackupError> {
    let target_err = |source| BackupError::Target {
        path: tmp.to_path_buf(),
        source,
    };
    let mut dst = Connection::open(tmp).map_err(target_err)?;
    {
        let copy = Backup::new(src, &mut dst).map_err(target_err)?;
        let started = Instant::now();
        // All pages in one step: one read transaction, so one consistent instant.
        // Busy/Locked (a checkpoint or writer in the way) are retried.
        loop {
            match copy.step(-1).map_err(target_err)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if started.elapsed() > BUSY_LIMIT => {
                    return Err(BackupError::Busy(BUSY_LIMIT));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // A copy is a single file: no WAL beside it to lose when it is moved around.
    dst.query_row("PRAGMA journal_mode = DELETE", [], |r| {
        r.get::<_, String>(0)
    })
    .map_err(target_err)?;
    let check: String = dst
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(target_err)?;
    if check != "ok" {
        return Err(BackupError::Corrupt(check));
    }
    let count = |sql: &str| -> u64 {
        dst.query_row(sql, [], |r| r.get::<_, i64>(0))
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    };
    let pending_reports = count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'");
    let open_stays = count("SELECT COUNT(*) FROM stays WHERE state = 'open'");
    drop(dst);
    let bytes = std::fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
    Ok(BackupSummary {
        to: tmp.to_path_buf(),
        bytes,
        pending_reports,
        open_stays,
    })
}

/// The age of the backup file at `path` at `now`: `None` when there is none.
pub fn backup_age(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(now.duration_since(modified).unwrap_or(Duration::ZERO))
}

/// One line for the operator: where, how big, what it holds.
pub fn describe(summary: &BackupSummary, at: Timestamp) -> String {
    format!(
        "backup written: {} ({} KB, taken {} UTC; {} reports pending, {} vehicles inside at that moment)",
        summary.to.display(),
        summary.bytes.div_ceil(1024),
        chrono::DateTime::from_timestamp_millis(at.0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default(),
        summary.pending_reports,
        summary.open_stays,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(dir: &Path, rows: i64) -> PathBuf {
        let path = dir.join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, state TEXT);
             CREATE TABLE stays (id INTEGER PRIMARY KEY, state TEXT);",
        )
        .unwrap();
        for i in 0..rows {
            conn.execute(
                "INSERT INTO outbox (state) VALUES (?1)",
                [if i % 2 == 0 { "pending" } else { "acked" }],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO stays (state) VALUES ('open'), ('closed')", [])
            .unwrap();
        // Left open on purpose: the newest commits are still in the WAL, as under `run`.
        std::mem::forget(conn);
        path
    }

    #[test]
    fn backup_copies_committed_rows_still_in_the_wal_into_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with(dir.path(), 10);
        let to = dir.path().join("backups/state-copy.db");
        let summary = backup(&db, &to).unwrap();
        assert_eq!(summary.pending_reports, 5);
        assert_eq!(summary.open_stays, 1);
        assert!(summary.bytes > 0);
        let copy = Connection::open(&to).unwrap();
        let n: i64 = copy
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
        let mode: String = copy
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert!(backup_age(&to, SystemTime::now()).unwrap() < Duration::from_secs(60));
    }

    #[test]
    fn missing_database_is_a_clear_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("copy.db");
        let e = backup(&dir.path().join("state.db"), &to).unwrap_err();
        assert!(e.to_string().contains("no state database"), "{e}");
        assert!(!to.exists());
        assert_eq!(backup_age(&to, SystemTime::now()), None);
    }
}
