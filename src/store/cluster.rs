//! The lot node's part of a multi-PC lot (`src/cluster/`): which passage of each lane
//! node's queue was applied last (so a passage delivered twice is applied once), and
//! exits held for an entry still on its way. Each public method is one transaction.

use super::{Store, StoreError};
use crate::time::Timestamp;
use rusqlite::{OptionalExtension, params};

/// An exit held for its late entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldRow {
    pub id: i64,
    pub node: String,
    pub lane: String,
    /// The passage in the cluster's wire JSON.
    pub body: String,
    pub image: Option<Vec<u8>>,
    pub held_at: Timestamp,
}

/// The last passage applied from one lane node's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNode {
    pub node: String,
    pub epoch: String,
    pub seq: i64,
    pub at: Timestamp,
}

/// Where a passage applied at the lot node came from: a lane node's queue (applied up
/// to this sequence), or an exit the lot node held for its late entry (released).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassageOrigin {
    Queue {
        node: String,
        epoch: String,
        seq: i64,
    },
    Held {
        id: i64,
    },
}

pub(super) fn record_origin(
    tx: &rusqlite::Transaction<'_>,
    origin: &PassageOrigin,
    now: Timestamp,
) -> Result<(), StoreError> {
    match origin {
        PassageOrigin::Queue { node, epoch, seq } => mark(tx, node, epoch, *seq, now),
        PassageOrigin::Held { id } => {
            tx.execute("DELETE FROM cluster_held WHERE id = ?1", [id])?;
            Ok(())
        }
    }
}

fn mark(
    tx: &rusqlite::Transaction<'_>,
    node: &str,
    epoch: &str,
    seq: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO cluster_seen (node, epoch, seq, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (node, epoch) DO UPDATE SET seq = MAX(seq, excluded.seq), at = excluded.at",
        params![node, epoch, seq, now.0],
    )?;
    Ok(())
}

impl Store {
    /// The sequence number of the last passage applied from `node`'s queue `epoch`
    /// (0: none yet).
    pub fn cluster_last_seq(&self, node: &str, epoch: &str) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT seq FROM cluster_seen WHERE node = ?1 AND epoch = ?2",
                params![node, epoch],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Records that `node`'s passage `seq` is applied (durable).
    pub fn cluster_mark_seen(
        &self,
        node: &str,
        epoch: &str,
        seq: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|tx| mark(tx, node, epoch, seq, now))
    }

    /// Every lane node's last applied passage, newest epoch of each first.
    pub fn cluster_seen(&self) -> Result<Vec<SeenNode>, StoreError> {
        self.read_all(
            "SELECT node, epoch, seq, at FROM cluster_seen ORDER BY node, at DESC",
            [],
            |r| {
                Ok(SeenNode {
                    node: r.get(0)?,
                    epoch: r.get(1)?,
                    seq: r.get(2)?,
                    at: Timestamp(r.get(3)?),
                })
            },
        )
    }

    /// Holds an exit for its late entry; with `origin` (node, epoch, seq) it is marked
    /// applied in the same transaction, so a crash can neither lose nor double it.
    pub fn cluster_hold(
        &self,
        origin: Option<(&str, &str, i64)>,
        node: &str,
        lane: &str,
        body: &str,
        image: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO cluster_held (node, lane, body, image, held_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![node, lane, body, image, now.0],
            )?;
            let id = tx.last_insert_rowid();
            if let Some((n, e, s)) = origin {
                mark(tx, n, e, s, now)?;
            }
            Ok(id)
        })
    }

    /// The exits held, oldest first.
    pub fn cluster_held(&self) -> Result<Vec<HeldRow>, StoreError> {
        self.read_all(
            "SELECT id, node, lane, body, image, held_at FROM cluster_held ORDER BY id",
            [],
            |r| {
                Ok(HeldRow {
                    id: r.get(0)?,
                    node: r.get(1)?,
                    lane: r.get(2)?,
                    body: r.get(3)?,
                    image: r.get(4)?,
                    held_at: Timestamp(r.get(5)?),
                })
            },
        )
    }

    /// Forgets a held exit (applied, matched or fallen back).
    pub fn cluster_release(&self, id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM cluster_held WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// Whether a passage at `lane` and `at` already opened or closed a stay (a
    /// crash between applying a passage and marking it applied leaves it so).
    pub fn passage_in_stays(&self, lane: &str, at: Timestamp) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM stays WHERE (entry_lane = ?1 AND entered_at = ?2)
                 OR (exit_lane = ?1 AND exited_at = ?2)",
            params![lane, at.0],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}
