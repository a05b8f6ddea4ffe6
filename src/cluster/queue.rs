//! A lane node's durable passage queue: its own SQLite file (`cluster-queue.db` in
//! `[storage] dir`; WAL, `synchronous=FULL`, one `BEGIN IMMEDIATE` per change, like the
//! state database). A passage is written here before anything else happens to it,
//! numbered with a per-queue sequence that never goes back (SQLite `AUTOINCREMENT`),
//! and forgotten only once the lot node acknowledged it (its image at once; the row is
//! kept a day as a tombstone so that a passage offered twice — the lane task's
//! restart recovery — is queued once).
//!
//! Past `queue_budget_mb` the oldest queued snapshots are dropped, never a passage.

use super::wire::{PassageMsg, VERSION, WirePassage};
use crate::lane::machine::Passage;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub const QUEUE_FILE: &str = "cluster-queue.db";

/// Acknowledged rows are kept this long (to refuse a passage offered twice).
const TOMBSTONE_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("passage queue {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("passage queue: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("passage queue: cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl QueueError {
    /// A busy or I/O error may pass; others will not.
    pub fn is_retriable(&self) -> bool {
        matches!(self, QueueError::Sql(_))
    }
}

/// One queued passage, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub seq: i64,
    pub queued_at: Timestamp,
    pub passage: WirePassage,
    pub image: Option<Vec<u8>>,
}

impl Queued {
    pub fn message(&self, node: &str, epoch: &str, oldest: i64) -> PassageMsg {
        PassageMsg {
            v: VERSION,
            node: node.to_string(),
            epoch: epoch.to_string(),
            seq: self.seq,
            oldest,
            queued_at: self.queued_at,
            passage: self.passage.clone(),
        }
    }
}

/// How full the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    pub passages: u64,
    pub image_bytes: u64,
    pub oldest_seq: Option<i64>,
    pub oldest_queued_at: Option<Timestamp>,
    pub last_queued_at: Option<Timestamp>,
}

pub struct LaneQueue {
    conn: Mutex<Connection>,
    path: PathBuf,
    epoch: String,
    budget_bytes: u64,
}

impl LaneQueue {
    pub fn open(dir: &Path, budget_bytes: u64) -> Result<LaneQueue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(QUEUE_FILE);
        let open_err = |source| QueueError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(open_err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS queue (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 lane TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 cleared_at INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 -- size of the snapshot kept in `images` (0: none, or dropped)
                 bytes INTEGER NOT NULL DEFAULT 0,
                 queued_at INTEGER NOT NULL,
                 acked_at INTEGER,
                 UNIQUE (lane, at, cleared_at)
             );
             CREATE INDEX IF NOT EXISTS queue_unacked ON queue (seq) WHERE acked_at IS NULL;
             -- Snapshots apart from the rows, so that scanning the queue (budget, depth)
             -- never reads image pages.
             CREATE TABLE IF NOT EXISTS images (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);",
        )
        .map_err(open_err)?;
        let epoch: Option<String> = tx
            .query_row("SELECT v FROM meta WHERE k = 'epoch'", [], |r| r.get(0))
            .optional()
            .map_err(open_err)?;
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let e = uuid::Uuid::new_v4().simple().to_string();
                tx.execute("INSERT INTO meta (k, v) VALUES ('epoch', ?1)", [&e])
                    .map_err(open_err)?;
                e
            }
        };
        tx.commit().map_err(open_err)?;
        Ok(LaneQueue {
            conn: Mutex::new(conn),
            path,
            epoch,
            budget_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This queue's identity (see [`PassageMsg::epoch`]).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back an unfinished transaction at the next BEGIN.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// Queues a passage durably; `None` when the same passage (lane, times) is queued
    /// or was delivered already. Then drops the oldest snapshots past the budget.
    pub fn enqueue(&self, p: &Passage, now: Timestamp) -> Result<Option<i64>, QueueError> {
        let body = serde_json::to_string(&WirePassage::from(p)).unwrap_or_default();
        let image = p.snapshot.as_deref().map(Vec::as_slice);
        let bytes = image.map_or(0, <[u8]>::len) as i64;
        let budget = i64::try_from(self.budget_bytes).unwrap_or(i64::MAX);
        self.write(|tx| {
            // Checked first: a refused INSERT would still use up a sequence number,
            // and the lot node expects them without gaps.
            let known: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM queue WHERE lane = ?1 AND at = ?2 AND cleared_at = ?3",
                    params![p.lane, p.at.0, p.cleared_at.0],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO queue (lane, at, cleared_at, body, bytes, queued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.lane, p.at.0, p.cleared_at.0, body, bytes, now.0],
            )?;
            let seq = tx.last_insert_rowid();
            if let Some(img) = image {
                tx.execute(
                    "INSERT INTO images (seq, data) VALUES (?1, ?2)",
                    params![seq, img],
                )?;
            }
            // Images first, oldest first, until the queue fits its budget again.
            let mut used: i64 = tx.query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM queue WHERE acked_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            while used > budget {
                let oldest: Option<(i64, i64)> = tx
                    .query_row(
                        "SELECT seq, bytes FROM queue WHERE acked_at IS NULL AND bytes > 0
                         ORDER BY seq LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((s, b)) = oldest else { break };
                tx.execute("UPDATE queue SET bytes = 0 WHERE seq = ?1", [s])?;
                tx.execute("DELETE FROM images WHERE seq = ?1", [s])?;
                tracing::warn!(
                    seq = s,
                    bytes = b,
                    "passage queue over its disk budget: oldest snapshot dropped"
                );
                used -= b;
            }
            Ok(Some(seq))
        })
    }

    /// Up to `limit` unacknowledged passages after `after`, in order.
    pub fn window(&self, after: i64, limit: usize) -> Result<Vec<Queued>, QueueError> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT q.seq, q.queued_at, q.body, i.data FROM queue q
             LEFT JOIN images i ON i.seq = q.seq
             WHERE q.acked_at IS NULL AND q.seq > ?1 ORDER BY q.seq LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, queued_at, body, image) in rows {
            match serde_json::from_str::<WirePassage>(&body) {
                Ok(passage) => out.push(Queued {
                    seq,
                    queued_at: Timestamp(queued_at),
                    passage,
                    image,
                }),
                // Written by this program; unreadable only if the file was damaged.
                Err(e) => tracing::error!(seq, error = %e, "queued passage unreadable; skipped"),
            }
        }
        Ok(out)
    }

    /// The lot node committed everything up to `upto`: forget those passages (their
    /// images now, the rows after a day). Returns how many were acknowledged.
    pub fn ack_upto(&self, upto: i64, now: Timestamp) -> Result<usize, QueueError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE queue SET acked_at = ?2, bytes = 0
                 WHERE acked_at IS NULL AND seq <= ?1",
                params![upto, now.0],
            )?;
            tx.execute("DELETE FROM images WHERE seq <= ?1", [upto])?;
            tx.execute(
                "DELETE FROM queue WHERE acked_at IS NOT NULL AND acked_at < ?1",
                [now.0 - TOMBSTONE_MS],
            )?;
            Ok(n)
        })
    }

    pub fn depth(&self) -> Result<Depth, QueueError> {
        let conn = self.lock();
        let (passages, image_bytes, oldest_seq, oldest_at): (i64, i64, Option<i64>, Option<i64>) =
            conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(seq), MIN(queued_at)
                 FROM queue WHERE acked_at IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        let last: Option<i64> =
            conn.query_row("SELECT MAX(queued_at) FROM queue", [], |r| r.get(0))?;
        Ok(Depth {
            passages: passages.max(0) as u64,
            image_bytes: image_bytes.max(0) as u64,
            oldest_seq,
            oldest_queued_at: oldest_at.map(Timestamp),
            last_queued_at: last.map(Timestamp),
        })
    }

    /// The highest sequence number handed out (0: none).
    pub fn last_seq(&self) -> Result<i64, QueueError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'queue'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Direction;
    use crate::lane::machine::PassageCase;
    use std::sync::Arc;

    fn passage(lane: &str, at: i64, image: Option<usize>) -> Passage {
        Passage {
            lane: lane.into(),
            direction: Direction::Entry,
            at: Timestamp(at),
            cleared_at: Timestamp(at),
            plate: None,
            case: PassageCase::Unrecognised,
            tailgate: false,
            inferred: false,
            trailer: false,
            tractor: None,
            snapshot: image.map(|n| Arc::new(vec![7u8; n])),
            snapshot_len: image,
            late: false,
        }
    }

    #[test]
    fn passages_wait_in_order_until_acknowledged_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = LaneQueue::open(dir.path(), 1 << 20).unwrap();
        let epoch = q.epoch().to_string();
        assert_eq!(
            q.enqueue(&passage("e1", 1, Some(10)), Timestamp(5))
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            q.enqueue(&passage("e1", 2, None), Timestamp(6)).unwrap(),
            Some(2)
        );
        // Offered again (restart recovery): queued once.
        assert_eq!(
            q.enqueue(&passage("e1", 1, Some(10)), Timestamp(7))
                .unwrap(),
            None
        );
        drop(q);
        let q = LaneQueue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.epoch(), epoch, "the epoch is the queue file's");
        let w = q.window(0, 10).unwrap();
        assert_eq!(w.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(w[0].image.as_deref().map(<[u8]>::len), Some(10));
        assert_eq!(q.ack_upto(1, Timestamp(10)).unwrap(), 1);
        assert_eq!(q.window(0, 10).unwrap()[0].seq, 2);
        assert_eq!(q.depth().unwrap().passages, 1);
        // Delivered already: still refused as a duplicate.
        assert_eq!(
            q.enqueue(&passage("e1", 1, Some(10)), Timestamp(11))
                .unwrap(),
            None
        );
        q.ack_upto(2, Timestamp(12)).unwrap();
        // Sequence numbers never go back, even with an empty queue.
        assert_eq!(
            q.enqueue(&passage("e1", 3, None), Timestamp(13)).unwrap(),
            Some(3)
        );
        assert_eq!(q.last_seq().unwrap(), 3);
    }

    #[test]
    fn over_the_budget_the_oldest_images_go_first_never_a_passage() {
        let dir = tempfile::tempdir().unwrap();
        let q = LaneQueue::open(dir.path(), 250).unwrap();
        for i in 0..5 {
            q.enqueue(&passage("e1", i, Some(100)), Timestamp(i))
                .unwrap();
        }
        let w = q.window(0, 10).unwrap();
        assert_eq!(w.len(), 5, "every passage kept");
        let with_image: Vec<i64> = w
            .iter()
            .filter(|x| x.image.is_some())
            .map(|x| x.seq)
            .collect();
        assert_eq!(with_image, vec![4, 5], "the newest images kept");
        assert!(q.depth().unwrap().image_bytes <= 250);
    }
}
