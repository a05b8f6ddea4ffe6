//! The outbox: reports waiting for the platform, their images, what the uploader
//! learnt, the image budget and pruning.
//!
//! A row is `pending` until the platform acknowledges it (`acked`), it can never be
//! sent (`dropped`: a snapshot whose image was lost, or an operator's `outbox drop`),
//! or the platform refused it `refused_tries` times (`held`: kept with the platform's
//! words, not sent again until an operator's `outbox retry`).
//!
//! Within one stay the rows go in order entry → entry snapshot → exit → exit snapshot:
//! only the first pending row of a stay (its *head*) is handed out, with two
//! exceptions so that a refusal never blocks what does not depend on it: a snapshot
//! being retried after a refusal (or held) does not hold back the rows after it, and a
//! held entry (exit) holds back the rest of its stay (its exit snapshot) — the platform
//! could not match them.

use super::{Store, StoreError};
use crate::report::{EntryReport, Report, ReportKind};
use crate::time::Timestamp;
use prometheus::{IntCounter, IntCounterVec};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::{BTreeMap, HashSet};

fn kind_code(kind: ReportKind) -> i64 {
    match kind {
        ReportKind::Entry => 0,
        ReportKind::EntrySnapshot => 1,
        ReportKind::Exit => 2,
        ReportKind::ExitSnapshot => 3,
    }
}

fn kind_of(code: i64) -> ReportKind {
    match code {
        0 => ReportKind::Entry,
        1 => ReportKind::EntrySnapshot,
        2 => ReportKind::Exit,
        _ => ReportKind::ExitSnapshot,
    }
}

crate::metrics::statics! {
    IMAGES_DROPPED: IntCounter = ("parking_bridge_images_dropped_total", "Pending snapshot images dropped because the disk budget was reached");
    pub(super) WITHOUT_INNER: IntCounter = ("parking_bridge_entries_without_inner_order_total", "Entries the platform acknowledged without an inner_oder_no");
    ROWS_FINISHED: IntCounterVec = ("parking_bridge_outbox_finished_total", "Outbox rows finished, by kind and outcome", ["kind", "outcome"]);
}

/// A passage queued this long after it happened is late (a camera's stored recognition,
/// a passage recovered after a crash, an operator's correction): its report waits for the
/// older late reports of its port, so the platform receives them in time order.
pub const LATE_REPORT_AFTER_MS: i64 = 60_000;

/// The port a late entry or exit is sent in order on; `None` for everything else.
fn in_order_on_port(report: &Report, now: Timestamp) -> Option<&str> {
    let (at, port) = match report {
        Report::Entry(e) => (e.parking_time, &e.port_no),
        Report::Exit(x) => (x.away_time, &x.port_no),
        Report::Snapshot { .. } => return None,
    };
    (now.0.saturating_sub(at.0) > LATE_REPORT_AFTER_MS).then_some(port.as_str())
}

/// Adds a passage's report (and its image) to the outbox; due at once.
pub(super) fn queue_report(
    tx: &Transaction<'_>,
    report: &Report,
    image: Option<&[u8]>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    insert_report(tx, report, image, now, in_order_on_port(report, now))
}

/// Adds a report queued again by the uploader (its stay's entry, which the platform
/// did not know): never held behind a port's late reports, so it cannot wait on a row
/// that waits on it.
pub(super) fn requeue_report(
    tx: &Transaction<'_>,
    report: &Report,
    now: Timestamp,
) -> Result<i64, StoreError> {
    insert_report(tx, report, None, now, None)
}

fn insert_report(
    tx: &Transaction<'_>,
    report: &Report,
    image: Option<&[u8]>,
    now: Timestamp,
    in_order_on_port: Option<&str>,
) -> Result<i64, StoreError> {
    let body =
        serde_json::to_string(report).map_err(|source| StoreError::BadReport { id: 0, source })?;
    super::fault::point();
    tx.prepare_cached(
        "INSERT INTO outbox (out_order_no, kind, body, created_at, due_at, in_order_on_port) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        report.out_order_no(),
        kind_code(report.kind()),
        body,
        now.0,
        in_order_on_port
    ])?;
    let id = tx.last_insert_rowid();
    if let Some(img) = image {
        super::fault::point();
        tx.prepare_cached(
            "INSERT INTO images (outbox_id, data, bytes, encoded) VALUES (?1, ?2, ?3, 0)",
        )?
        .execute(params![id, img, img.len() as i64])?;
    }
    Ok(id)
}

/// Drops the oldest pending images while they take more than `budget` bytes. Entry and
/// exit reports themselves are never dropped: an inline image is simply detached, a
/// separate snapshot report is dropped with its image.
pub(super) fn enforce_image_budget(
    tx: &Transaction<'_>,
    budget: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let budget = i64::try_from(budget).unwrap_or(i64::MAX);
    super::fault::point();
    let mut total: i64 = tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM images", [], |r| {
        r.get(0)
    })?;
    while total > budget {
        let oldest: Option<(i64, i64, i64, String)> = tx
            .query_row(
                "SELECT i.outbox_id, i.bytes, o.kind, o.out_order_no FROM images i JOIN outbox o ON o.id = i.outbox_id \
                 ORDER BY i.outbox_id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((id, bytes, kind, out_order_no)) = oldest else {
            break;
        };
        super::fault::point();
        tx.execute("DELETE FROM images WHERE outbox_id = ?1", [id])?;
        let kind = kind_of(kind);
        if matches!(kind, ReportKind::EntrySnapshot | ReportKind::ExitSnapshot) {
            tx.execute(
                "UPDATE outbox SET state = 'dropped', finished_at = ?2, last_error = 'image dropped: disk budget reached' \
                 WHERE id = ?1 AND state IN ('pending', 'held')",
                params![id, now.0],
            )?;
        }
        IMAGES_DROPPED.inc();
        tracing::error!(
            outbox_id = id,
            out_order_no = %out_order_no,
            kind = kind.as_str(),
            bytes,
            budget,
            "storage budget reached: dropped the oldest pending snapshot image"
        );
        total -= bytes;
    }
    Ok(())
}

/// A report handed to the uploader.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub out_order_no: String,
    pub kind: ReportKind,
    pub report: Report,
    /// Attempts so far (0 = never sent).
    pub attempts: u32,
    /// Refusals so far.
    pub refusals: u32,
    /// Size of the attached image, if there is one.
    pub image_bytes: Option<i64>,
    /// Whether that image is already re-encoded for the platform.
    pub image_encoded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub data: Vec<u8>,
    pub encoded: bool,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The platform has it (now, or from an earlier attempt).
    Delivered {
        id: i64,
        result_code: Option<String>,
        inner_oder_no: Option<String>,
        sign_level: Option<String>,
        sign_time: Option<String>,
    },
    /// Try again at `due_at`.
    Retry {
        id: i64,
        due_at: Timestamp,
        error: String,
    },
    /// The platform does not know the stay: its entry goes again first, then this row
    /// (not before `due_at`).
    NeedsEntryFirst {
        id: i64,
        due_at: Timestamp,
        error: String,
    },
    /// Can never be sent (a snapshot whose image cannot be decoded).
    Dropped { id: i64, reason: String },
    /// The platform refused this report; try again at `due_at`.
    Refused {
        id: i64,
        due_at: Timestamp,
        refusal: Refusal,
    },
    /// Refused too often: kept, not sent again until an operator says so.
    Held { id: i64, refusal: Refusal },
}

/// The platform's words when it refused a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => write!(f, "(no code): {}", self.message),
        }
    }
}

/// A held report, as `outbox held` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReport {
    pub id: i64,
    pub out_order_no: String,
    pub kind: ReportKind,
    /// The stay's plate, unmasked (callers mask it for display).
    pub plate_no: Option<String>,
    pub refusals: u32,
    pub first_refused_at: Option<Timestamp>,
    pub last_refused_at: Option<Timestamp>,
    pub refusal_code: Option<String>,
    pub refusal_message: Option<String>,
    /// Reports of the same stay that wait for this one (a held entry's exit…).
    pub waiting: u64,
}

/// Per-kind state of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSummary {
    pub pending: u64,
    /// Age of the oldest pending report, ms.
    pub oldest_pending_age_ms: Option<i64>,
    /// The most recent error of a pending report.
    pub last_error: Option<String>,
    pub acknowledged: u64,
    pub dropped: u64,
    /// Refused too often and waiting for an operator.
    pub held: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub kinds: BTreeMap<ReportKind, KindSummary>,
    /// Bytes of pending images.
    pub image_bytes: i64,
}

impl OutboxSummary {
    pub fn pending(&self) -> u64 {
        self.kinds.values().map(|k| k.pending).sum()
    }

    pub fn held(&self) -> u64 {
        self.kinds.values().map(|k| k.held).sum()
    }
}

const ALL_KINDS: [ReportKind; 4] = [
    ReportKind::Entry,
    ReportKind::EntrySnapshot,
    ReportKind::Exit,
    ReportKind::ExitSnapshot,
];

impl Store {
    /// Up to `limit` reports that may be sent at `now`: each the head of its stay, due,
    /// not of a stay in `busy` (already in flight) and, for a late passage, the oldest
    /// late report of its port still pending (in flight counts: it stays pending until
    /// its answer is recorded; a refused one no longer holds the others back). No retry is ever scheduled more
    /// than an hour ahead, so a later `due_at` means the clock went back: due now. Oldest first, or newest first so
    /// that live reports are not starved by a backlog.
    pub fn due_reports(
        &self,
        now: Timestamp,
        limit: usize,
        newest_first: bool,
        busy: &HashSet<String>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.lock();
        let order = if newest_first { "DESC" } else { "ASC" };
        let mut st = conn.prepare_cached(&format!(
            "SELECT o.id, o.out_order_no, o.kind, o.body, o.attempts, i.bytes, i.encoded, o.refusals \
             FROM outbox o LEFT JOIN images i ON i.outbox_id = o.id \
             WHERE o.state = 'pending' AND (o.due_at <= ?1 OR o.due_at > ?1 + 3600000) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' AND p.out_order_no = o.out_order_no \
                               AND (p.kind < o.kind OR (p.kind = o.kind AND p.id < o.id)) \
                               AND NOT (p.kind IN (1, 3) AND p.refusals > 0)) \
               AND NOT EXISTS (SELECT 1 FROM outbox h WHERE h.state = 'held' AND h.out_order_no = o.out_order_no \
                               AND h.kind IN (0, 2) AND h.kind < o.kind) \
               AND (o.in_order_on_port IS NULL OR NOT EXISTS (SELECT 1 FROM outbox q \
                               WHERE q.state = 'pending' AND q.in_order_on_port = o.in_order_on_port \
                               AND q.id < o.id AND q.refusals = 0)) \
             ORDER BY o.id {order} LIMIT ?2"
        ))?;
        let want = i64::try_from(limit + busy.len()).unwrap_or(i64::MAX);
        let rows = st.query_map(params![now.0, want], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, out_order_no, kind, body, attempts, image_bytes, encoded, refusals) = row?;
            if busy.contains(&out_order_no) {
                continue;
            }
            let report: Report = serde_json::from_str(&body)
                .map_err(|source| StoreError::BadReport { id, source })?;
            out.push(OutboxItem {
                id,
                out_order_no,
                kind: kind_of(kind),
                report,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                refusals: u32::try_from(refusals).unwrap_or(u32::MAX),
                image_bytes,
                image_encoded: encoded == Some(1),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The image attached to an outbox row, if it still has one.
    pub fn image(&self, outbox_id: i64) -> Result<Option<StoredImage>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .prepare_cached("SELECT data, encoded FROM images WHERE outbox_id = ?1")?
            .query_row([outbox_id], |r| {
                Ok(StoredImage {
                    data: r.get(0)?,
                    encoded: r.get::<_, i64>(1)? == 1,
                })
            })
            .optional()?)
    }

    /// Replaces a row's image by its re-encoded form (smaller; done once).
    pub fn replace_image(&self, outbox_id: i64, encoded: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE images SET data = ?2, bytes = ?3, encoded = 1 WHERE outbox_id = ?1",
                params![outbox_id, encoded, encoded.len() as i64],
            )?;
            Ok(())
        })
    }

    /// Detaches an image that cannot be used; the report goes without it.
    pub fn discard_image(&self, outbox_id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM images WHERE outbox_id = ?1", [outbox_id])?;
            Ok(())
        })
    }

    /// Records the outcomes of finished attempts in one transaction.
    pub fn record_outcomes(&self, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write_relaxed(|tx| {
            for o in outcomes {
                record_one(tx, o, now)?;
            }
            Ok(())
        })
    }

    /// Deletes acknowledged/dropped reports, finished stays and journal lines older than
    /// the retention. Returns the number of outbox rows removed.
    pub fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        let cutoff = now.0.saturating_sub(self.options.retention_ms);
        self.write(|tx| {
            // Held rows have no finished_at: they stay until an operator decides.
            let rows = tx.execute(
                "DELETE FROM outbox WHERE state NOT IN ('pending', 'held') AND finished_at < ?1",
                [cutoff],
            )?;
            tx.execute("DELETE FROM images WHERE outbox_id NOT IN (SELECT id FROM outbox)", [])?;
            tx.execute(
                "DELETE FROM stays WHERE state <> 'open' AND closed_at < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM outbox p WHERE p.state IN ('pending', 'held') AND p.out_order_no = stays.out_order_no)",
                [cutoff],
            )?;
            tx.execute("DELETE FROM lane_journal WHERE at < ?1", [cutoff])?;
            Ok(rows)
        })
    }

    /// Gives free pages back to the file system, at most `max_pages` per call and
    /// only beyond a reserve of `keep_pages` (which later images reuse without growing
    /// the file again). Returns the pages released. After a long outage the images of
    /// the backlog leave the file gigabytes larger than it needs to be; called every
    /// few seconds, this shrinks it without holding the database for long. A database
    /// created without incremental auto-vacuum releases nothing.
    pub fn reclaim_free_pages(&self, keep_pages: u64, max_pages: u64) -> Result<u64, StoreError> {
        let conn = self.lock();
        let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        // 2 = INCREMENTAL.
        if mode != 2 {
            return Ok(0);
        }
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let surplus = u64::try_from(free).unwrap_or(0).saturating_sub(keep_pages);
        let pages = surplus.min(max_pages);
        if pages == 0 {
            return Ok(0);
        }
        // The pragma does its work as the statement is stepped: step it to the end.
        let mut st = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
        let mut rows = st.query([])?;
        while rows.next()?.is_some() {}
        Ok(pages)
    }

    /// Size of the database in pages and of one page in bytes.
    pub fn page_usage(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let count: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            u64::try_from(size).unwrap_or(0),
        ))
    }

    /// Reports not yet acknowledged (cheap: reads the pending index only).
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
    }

    /// Pending counts, oldest age, last error and finished counts, per kind.
    pub fn outbox_summary(&self, now: Timestamp) -> Result<OutboxSummary, StoreError> {
        let conn = self.lock();
        let mut summary = OutboxSummary::default();
        for kind in ALL_KINDS {
            summary.kinds.insert(kind, KindSummary::default());
        }
        let mut st = conn.prepare_cached(
            "SELECT kind, state, COUNT(*), MIN(created_at) FROM outbox GROUP BY kind, state",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (kind, state, count, oldest) = row?;
            let k = summary.kinds.entry(kind_of(kind)).or_default();
            let count = u64::try_from(count).unwrap_or(0);
            match state.as_str() {
                "pending" => {
                    k.pending = count;
                    k.oldest_pending_age_ms = Some((now.0 - oldest).max(0));
                }
                "acked" => k.acknowledged = count,
                "held" => k.held = count,
                _ => k.dropped = count,
            }
        }
        let mut st = conn.prepare_cached(
            "SELECT last_error FROM outbox WHERE state = 'pending' AND kind = ?1 AND last_error IS NOT NULL \
             ORDER BY last_attempt_at DESC LIMIT 1",
        )?;
        for kind in ALL_KINDS {
            let last: Option<String> = st.query_row([kind_code(kind)], |r| r.get(0)).optional()?;
            if let Some(k) = summary.kinds.get_mut(&kind) {
                k.last_error = last;
            }
        }
        summary.image_bytes =
            conn.query_row("SELECT COALESCE(SUM(bytes), 0) FROM images", [], |r| {
                r.get(0)
            })?;
        Ok(summary)
    }
}

impl Store {
    /// Held reports, oldest first.
    pub fn held_reports(&self) -> Result<Vec<HeldReport>, StoreError> {
        self.read_all(
            "SELECT o.id, o.out_order_no, o.kind, s.plate_no, o.refusals, o.first_refused_at, o.last_refused_at, \
             o.refusal_code, o.refusal_message, \
             (SELECT COUNT(*) FROM outbox w WHERE w.state = 'pending' AND w.out_order_no = o.out_order_no \
              AND o.kind IN (0, 2) AND w.kind > o.kind) \
             FROM outbox o LEFT JOIN stays s ON s.out_order_no = o.out_order_no \
             WHERE o.state = 'held' ORDER BY o.id",
            [],
            |r| {
            Ok(HeldReport {
                id: r.get(0)?,
                out_order_no: r.get(1)?,
                kind: kind_of(r.get(2)?),
                plate_no: r.get(3)?,
                refusals: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                first_refused_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
                last_refused_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
                refusal_code: r.get(7)?,
                refusal_message: r.get(8)?,
                waiting: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
                })
            },
        )
    }

    /// Reports held now (cheap: the held index only).
    pub fn held_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM outbox WHERE state = 'held'")
    }

    /// Makes held reports pending again, due at `now`, with a fresh refusal budget:
    /// those of one stay, or all (`None`). Returns how many.
    pub fn retry_held(
        &self,
        out_order_no: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE outbox SET state = 'pending', due_at = ?2, refusals = 0, \
                 last_error = 'retry requested by an operator' \
                 WHERE state = 'held' AND (?1 IS NULL OR out_order_no = ?1)",
                params![out_order_no, now.0],
            )?;
            Ok(n)
        })
    }

    /// Drops the held reports of a stay, keeping them in the database as `dropped`
    /// with the operator's reason. When the entry is among them, the rest of the stay
    /// (which the platform could never match) is dropped too. Returns the kinds dropped.
    pub fn drop_held(
        &self,
        out_order_no: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<ReportKind>, StoreError> {
        self.write(|tx| {
            let mut dropped: Vec<(i64, i64)> = tx
                .prepare(
                    "UPDATE outbox SET state = 'dropped', finished_at = ?2, drop_reason = ?3, \
                     last_error = 'dropped by an operator: ' || ?3 \
                     WHERE state = 'held' AND out_order_no = ?1 RETURNING id, kind",
                )?
                .query_map(params![out_order_no, now.0, reason], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if dropped.iter().any(|(_, kind)| *kind == 0) {
                let rest: Vec<(i64, i64)> = tx
                    .prepare(
                        "UPDATE outbox SET state = 'dropped', finished_at = ?2, drop_reason = ?3, \
                         last_error = 'its entry was dropped by an operator: ' || ?3 \
                         WHERE state IN ('pending', 'held') AND out_order_no = ?1 RETURNING id, kind",
                    )?
                    .query_map(params![out_order_no, now.0, reason], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                dropped.extend(rest);
            }
            for (id, kind) in &dropped {
                tx.prepare_cached("DELETE FROM images WHERE outbox_id = ?1")?
                    .execute([id])?;
                ROWS_FINISHED
                    .with_label_values(&[kind_of(*kind).as_str(), "dropped"])
                    .inc();
            }
            dropped.sort_by_key(|(id, kind)| (*kind, *id));
            Ok(dropped.into_iter().map(|(_, kind)| kind_of(kind)).collect())
        })
    }

    /// Unfinished (pending or held) reports of a stay, by state.
    pub fn unfinished_of(&self, out_order_no: &str) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let (pending, held): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'held'), 0) \
             FROM outbox WHERE out_order_no = ?1",
            [out_order_no],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(pending).unwrap_or(0),
            u64::try_from(held).unwrap_or(0),
        ))
    }

    /// Stays whose entry the platform acknowledged without an `inner_oder_no`.
    pub fn acked_without_inner_order(&self) -> Result<Vec<String>, StoreError> {
        self.read_all(
            "SELECT out_order_no FROM stays WHERE entry_acked_at IS NOT NULL AND inner_oder_no IS NULL \
             ORDER BY entered_at",
            [],
            |r| r.get(0),
        )
    }
}

fn record_one(tx: &Transaction<'_>, outcome: &Outcome, now: Timestamp) -> Result<(), StoreError> {
    match outcome {
        Outcome::Delivered {
            id,
            result_code,
            inner_oder_no,
            sign_level,
            sign_time,
        } => {
            let row: Option<(String, i64)> = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'acked', finished_at = ?2, result_code = ?3, attempts = attempts + 1, \
                     last_attempt_at = ?2, last_error = NULL WHERE id = ?1 AND state = 'pending' \
                     RETURNING out_order_no, kind",
                )?
                .query_row(params![id, now.0, result_code], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            tx.prepare_cached("DELETE FROM images WHERE outbox_id = ?1")?
                .execute([id])?;
            let Some((out_order_no, kind)) = row else {
                return Ok(());
            };
            ROWS_FINISHED
                .with_label_values(&[kind_of(kind).as_str(), "acked"])
                .inc();
            if kind_of(kind) == ReportKind::Entry {
                let known: Option<Option<String>> = tx
                    .prepare_cached(
                        "UPDATE stays SET entry_acked_at = COALESCE(entry_acked_at, ?2) WHERE out_order_no = ?1 \
                         RETURNING inner_oder_no",
                    )?
                    .query_row(params![out_order_no, now.0], |r| r.get(0))
                    .optional()?;
                if inner_oder_no.is_none() && matches!(known, Some(None)) {
                    WITHOUT_INNER.inc();
                    tracing::warn!(
                        out_order_no = %out_order_no,
                        "entry acknowledged without inner_oder_no (the platform's order number); `stay list` shows it as missing"
                    );
                }
            }
            if inner_oder_no.is_some() || sign_level.is_some() || sign_time.is_some() {
                // The entry's answer is authoritative; an exit's only fills gaps.
                let sql = if kind_of(kind) == ReportKind::Entry {
                    "UPDATE stays SET inner_oder_no = COALESCE(?2, inner_oder_no), sign_level = COALESCE(?3, sign_level), \
                     sign_time = COALESCE(?4, sign_time) WHERE out_order_no = ?1"
                } else {
                    "UPDATE stays SET inner_oder_no = COALESCE(inner_oder_no, ?2), sign_level = COALESCE(sign_level, ?3), \
                     sign_time = COALESCE(sign_time, ?4) WHERE out_order_no = ?1"
                };
                tx.prepare_cached(sql)?.execute(params![
                    out_order_no,
                    inner_oder_no,
                    sign_level,
                    sign_time
                ])?;
            }
        }
        Outcome::Retry { id, due_at, error } => {
            tx.prepare_cached(
                "UPDATE outbox SET due_at = ?2, last_error = ?3, attempts = attempts + 1, last_attempt_at = ?4 \
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, due_at.0, error, now.0])?;
        }
        Outcome::NeedsEntryFirst { id, due_at, error } => {
            let out_order_no: Option<String> = tx
                .prepare_cached(
                    "UPDATE outbox SET due_at = ?2, last_error = ?3, attempts = attempts + 1, last_attempt_at = ?4 \
                     WHERE id = ?1 AND state = 'pending' RETURNING out_order_no",
                )?
                .query_row(params![id, due_at.0, error, now.0], |r| r.get(0))
                .optional()?;
            if let Some(out_order_no) = out_order_no {
                requeue_entry(tx, &out_order_no, now)?;
            }
        }
        Outcome::Refused {
            id,
            due_at,
            refusal,
        } => {
            tx.prepare_cached(
                "UPDATE outbox SET due_at = ?2, last_error = ?3, attempts = attempts + 1, last_attempt_at = ?4, \
                 refusals = refusals + 1, first_refused_at = COALESCE(first_refused_at, ?4), last_refused_at = ?4, \
                 refusal_code = ?5, refusal_message = ?6 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![
                id,
                due_at.0,
                format!("refused: {refusal}"),
                now.0,
                refusal.code,
                refusal.message
            ])?;
        }
        Outcome::Held { id, refusal } => {
            let kind: Option<i64> = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'held', last_error = ?2, attempts = attempts + 1, last_attempt_at = ?3, \
                     refusals = refusals + 1, first_refused_at = COALESCE(first_refused_at, ?3), last_refused_at = ?3, \
                     refusal_code = ?4, refusal_message = ?5 WHERE id = ?1 AND state = 'pending' RETURNING kind",
                )?
                .query_row(
                    params![
                        id,
                        format!("held after refusals: {refusal}"),
                        now.0,
                        refusal.code,
                        refusal.message
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(kind) = kind {
                ROWS_FINISHED
                    .with_label_values(&[kind_of(kind).as_str(), "held"])
                    .inc();
            }
        }
        Outcome::Dropped { id, reason } => {
            let kind: Option<i64> = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'dropped', finished_at = ?2, last_error = ?3, last_attempt_at = ?2 \
                     WHERE id = ?1 AND state = 'pending' RETURNING kind",
                )?
                .query_row(params![id, now.0, reason], |r| r.get(0))
                .optional()?;
            tx.prepare_cached("DELETE FROM images WHERE outbox_id = ?1")?
                .execute([id])?;
            if let Some(kind) = kind {
                ROWS_FINISHED
                    .with_label_values(&[kind_of(kind).as_str(), "dropped"])
                    .inc();
            }
        }
    }
    Ok(())
}

/// Makes the stay's entry pending again (it becomes the stay's head). The stored entry
/// row is reused when it still exists; after pruning it is rebuilt from the stay.
fn requeue_entry(
    tx: &Transaction<'_>,
    out_order_no: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let entry: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, state FROM outbox WHERE out_order_no = ?1 AND kind = 0 ORDER BY id DESC LIMIT 1",
            [out_order_no],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match entry {
        Some((_, state)) if state == "pending" => {}
        // A held entry waits for an operator; a dropped one was dropped by an operator
        // (with the rest of its stay). Neither is revived behind their back.
        Some((_, state)) if state == "held" || state == "dropped" => {
            tracing::warn!(
                out_order_no,
                entry_state = %state,
                "platform did not know the stay, and its entry is {state}: nothing is re-sent automatically"
            );
            return Ok(());
        }
        Some((id, _)) => {
            tx.execute(
                "UPDATE outbox SET state = 'pending', due_at = ?2, finished_at = NULL, result_code = NULL, \
                 last_error = 'platform did not know this stay: entry sent again' WHERE id = ?1",
                params![id, now.0],
            )?;
        }
        None => {
            let stay = entry_report_from_stay(tx, out_order_no)?;
            requeue_report(tx, &Report::Entry(stay), now)?;
        }
    }
    tracing::warn!(
        out_order_no,
        "platform did not know the stay; its entry is queued again first"
    );
    Ok(())
}

/// Rebuilds a stay's entry report from the stays table: the stay as
/// [`load_stay`](super::stays::load_stay) reads it, and the figures its entry report
/// carried (a closed stay's own price is the exit's).
fn entry_report_from_stay(
    tx: &Transaction<'_>,
    out_order_no: &str,
) -> Result<EntryReport, StoreError> {
    let stay = super::stays::load_stay(tx, out_order_no)?;
    let (price, should_pay, total_spaces, free_spaces) = tx.query_row(
        "SELECT entry_price, entry_should_pay, entry_total_spaces, entry_free_spaces \
         FROM stays WHERE out_order_no = ?1",
        [out_order_no],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    Ok(EntryReport {
        out_order_no: stay.out_order_no,
        plate_no: stay.plate_no,
        plate_color: stay.plate_color,
        car_type: stay.car_type,
        parking_time: stay.entered_at,
        port_no: stay.entry_port,
        operator: stay.entry_operator,
        price,
        should_pay,
        total_spaces,
        free_spaces,
    })
}
