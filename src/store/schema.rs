//! Versioned schema migrations. `PRAGMA user_version` holds the number of migrations
//! applied; each migration runs in its own transaction, so a crash mid-upgrade leaves
//! the previous version intact. A database from a newer program is refused, never
//! downgraded.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: never
/// edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: stays, outbox, images, occupancy, the out_order_no sequence, the lane journal.
    r#"
    CREATE TABLE sequence (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        -- last sequence number handed out, 0..=999999
        seq INTEGER NOT NULL,
        -- lot-local seconds (epoch seconds + offset) of the last stamp used; stamps never go back
        last_local_secs INTEGER NOT NULL
    );
    INSERT INTO sequence (id, seq, last_local_secs) VALUES (1, 0, 0);

    CREATE TABLE occupancy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        occupied INTEGER NOT NULL,
        total INTEGER NOT NULL
    );
    INSERT INTO occupancy (id, occupied, total) VALUES (1, 0, 0);

    CREATE TABLE stays (
        out_order_no TEXT PRIMARY KEY,
        plate_no TEXT NOT NULL,
        plate_color TEXT NOT NULL,
        car_type TEXT NOT NULL,
        -- open | closed | superseded | expired
        state TEXT NOT NULL,
        entry_lane TEXT NOT NULL,
        entry_port TEXT NOT NULL,
        entered_at INTEGER NOT NULL,
        entry_operator TEXT,
        entry_price INTEGER,
        entry_should_pay INTEGER,
        entry_total_spaces INTEGER NOT NULL,
        entry_free_spaces INTEGER NOT NULL,
        exit_lane TEXT,
        exit_port TEXT,
        exited_at INTEGER,
        exit_operator TEXT,
        price INTEGER,
        should_pay INTEGER,
        paid_fee INTEGER,
        closed_at INTEGER,
        inner_oder_no TEXT,
        sign_level TEXT,
        sign_time TEXT
    ) WITHOUT ROWID;
    CREATE INDEX stays_open_by_plate ON stays (plate_no) WHERE state = 'open';
    CREATE INDEX stays_by_closed_at ON stays (closed_at) WHERE closed_at IS NOT NULL;

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        out_order_no TEXT NOT NULL,
        -- 0 entry, 1 entry snapshot, 2 exit, 3 exit snapshot: the delivery order in a stay
        kind INTEGER NOT NULL,
        -- the report::Report as JSON (business terms, never wire format)
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        -- not sent before this time (backoff)
        due_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_attempt_at INTEGER,
        -- pending | acked | dropped
        state TEXT NOT NULL DEFAULT 'pending',
        finished_at INTEGER,
        -- the platform's answer code when finished
        result_code TEXT
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
    CREATE INDEX outbox_pending_by_stay ON outbox (out_order_no, kind, id) WHERE state = 'pending';
    CREATE INDEX outbox_finished ON outbox (finished_at) WHERE state <> 'pending';

    -- Snapshot images of pending reports, apart from the outbox so that scanning the
    -- queue never reads image pages.
    CREATE TABLE images (
        outbox_id INTEGER PRIMARY KEY,
        data BLOB NOT NULL,
        bytes INTEGER NOT NULL,
        -- 1 once re-encoded to a platform-sized JPEG
        encoded INTEGER NOT NULL DEFAULT 0
    );

    -- What the lanes saw that is not a report: unmatched exits, count-only passages,
    -- local closes, occupancy corrections. For the operator.
    CREATE TABLE lane_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        lane TEXT,
        what TEXT NOT NULL,
        plate_no TEXT,
        out_order_no TEXT
    );
    CREATE INDEX lane_journal_by_at ON lane_journal (at);
    "#,
    // 2: refused reports (bounded retries, then `held` for an operator), operator
    // drops with their reason, and whether a stay's entry was acknowledged.
    r#"
    -- refusals of this row by the platform (success:false), and when
    ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN first_refused_at INTEGER;
    ALTER TABLE outbox ADD COLUMN last_refused_at INTEGER;
    -- the platform's words at the last refusal
    ALTER TABLE outbox ADD COLUMN refusal_code TEXT;
    ALTER TABLE outbox ADD COLUMN refusal_message TEXT;
    -- why an operator dropped the row (`outbox drop --reason`)
    ALTER TABLE outbox ADD COLUMN drop_reason TEXT;
    CREATE INDEX outbox_held_by_stay ON outbox (out_order_no, kind) WHERE state = 'held';
    -- when the platform acknowledged the stay's entry (with or without inner_oder_no)
    ALTER TABLE stays ADD COLUMN entry_acked_at INTEGER;
    "#,
    // 3: reports queued long after their passage (a camera's stored recognitions pushed
    // when the bridge is back) go one at a time per port, oldest first.
    r#"
    ALTER TABLE outbox ADD COLUMN in_order_on_port TEXT;
    CREATE INDEX outbox_pending_in_order ON outbox (in_order_on_port, id)
        WHERE state = 'pending' AND in_order_on_port IS NOT NULL;
    "#,
    // 4: a lot bigger than one PC (src/cluster/): the last passage applied from each
    // lane node's queue (de-duplication by node and sequence), and exits held for an
    // entry still on its way from another node.
    r#"
    CREATE TABLE cluster_seen (
        node TEXT NOT NULL,
        -- the lane node's queue (a new queue file starts a new epoch at sequence 1)
        epoch TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (node, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE cluster_held (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        lane TEXT NOT NULL,
        -- the passage as the cluster's wire JSON
        body TEXT NOT NULL,
        image BLOB,
        held_at INTEGER NOT NULL
    );
    -- Finding a passage applied but not yet recorded as such (a crash in between).
    CREATE INDEX stays_by_entered_at ON stays (entered_at);
    CREATE INDEX stays_by_exited_at ON stays (exited_at) WHERE exited_at IS NOT NULL;
    "#,
];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "database schema version {found} is newer than this program knows ({known}); upgrade parking-bridge"
    )]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// Applies every migration the database has not seen yet.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(MigrationError::TooNew {
            found,
            known: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the write lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
