//! One stay action, one transaction: [`Store::apply`] writes everything a planned
//! [`StayAction`] means (stays opened and closed, their reports and images, the
//! occupancy change, the lane notes) in a single durable `BEGIN IMMEDIATE`
//! transaction, and returns what the lane task needs to show it, so nothing is read
//! before or after. A crash at any point leaves the action wholly applied or not at
//! all (`crash_tests` below kill the process between every pair of its statements).

use super::cluster::PassageOrigin;
use super::stays::{
    Occupancy, check_entry, check_exit, count_only_in, journal, load_stay, read_occupancy,
};
use super::{LocalClose, StayState, Store, StoreError};
use crate::config::Direction;
use crate::lane::stays::StayAction;
use crate::time::Timestamp;
use rusqlite::Transaction;

/// A note for the lane journal, written in the action's transaction (an inferred
/// passage, for the operator to find).
#[derive(Debug, Clone, PartialEq)]
pub struct LaneNote {
    pub at: Timestamp,
    pub lane: String,
    pub what: &'static str,
    pub plate: Option<String>,
}

/// What applying an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The stay it opened (a synthetic stay is opened and closed at once).
    pub opened: Option<String>,
    /// The stay it closed with an exit report, with the stay's own plate (an exit is
    /// listed under it, not under the exit camera's possibly misread one).
    pub closed: Option<(String, String)>,
    /// The lot's spaces once the action is applied.
    pub occupancy: Occupancy,
}

/// The stay is (still) open: a stay the plan replaces may have been closed since
/// (by an operator), which leaves nothing to replace.
fn still_open(tx: &Transaction<'_>, out_order_no: &str) -> Result<bool, StoreError> {
    Ok(load_stay(tx, out_order_no)?.state == StayState::Open)
}

impl Store {
    /// Applies a planned action in ONE durable transaction, with `note` (if any) in
    /// the lane journal. Values the platform would refuse are refused before the
    /// transaction begins ([`StoreError::Invalid`]); a database error rolls the whole
    /// action back, so the caller may simply try it again.
    pub fn apply(
        &self,
        action: &StayAction,
        note: Option<&LaneNote>,
        now: Timestamp,
    ) -> Result<Applied, StoreError> {
        self.apply_recording(action, note, None, now)
    }

    /// [`apply`](Self::apply), recording in the same transaction where the passage
    /// came from (a multi-PC lot's lot node): a crash leaves the passage both applied
    /// and recorded, or neither, so a redelivery is never applied twice.
    pub fn apply_recording(
        &self,
        action: &StayAction,
        note: Option<&LaneNote>,
        origin: Option<&PassageOrigin>,
        now: Timestamp,
    ) -> Result<Applied, StoreError> {
        let (entry, exit) = match action {
            StayAction::Open { entry } | StayAction::SupersedeThenOpen { entry, .. } => {
                (Some(entry), None)
            }
            StayAction::CloseOrphanThenOpen { exit, entry, .. }
            | StayAction::SyntheticStay { entry, exit } => (Some(entry), Some(exit)),
            StayAction::Close { exit, .. } => (None, Some(exit)),
            StayAction::TrailerFolded { .. }
            | StayAction::UnmatchedExit { .. }
            | StayAction::CountOnly { .. } => (None, None),
        };
        let (entry, exit) = (entry.map(|e| &e.details), exit.map(|x| &x.details));
        if let Some(e) = entry {
            check_entry(e)?;
        }
        if let Some(x) = exit {
            check_exit(x)?;
        }
        let local_secs = self.local_secs(now);
        self.write_reports(now, |tx| {
            let mut opened = None;
            let mut closed = None;
            match action {
                StayAction::Open { .. } => {}
                StayAction::SupersedeThenOpen { superseded, .. } => {
                    if still_open(tx, superseded)? {
                        self.close_locally_in(tx, superseded, LocalClose::Superseded, now)?;
                    }
                }
                StayAction::CloseOrphanThenOpen {
                    orphaned,
                    exit: plan,
                    entry: new,
                } => {
                    if let Some(x) = &exit
                        && still_open(tx, orphaned)?
                    {
                        self.close_in(tx, orphaned, x, now)?;
                        journal(
                            tx,
                            plan.details.away_time,
                            Some(&plan.details.lane),
                            "orphaned_exit",
                            Some(&new.details.plate_no),
                            Some(orphaned),
                        )?;
                    }
                }
                StayAction::TrailerFolded {
                    lane, plate_no, at, ..
                } => journal(
                    tx,
                    *at,
                    Some(lane),
                    "trailer_with_tractor",
                    Some(plate_no),
                    None,
                )?,
                StayAction::Close { out_order_no, .. } => {
                    if let Some(x) = &exit {
                        let c = self.close_in(tx, out_order_no, x, now)?;
                        closed = Some((c.out_order_no, c.stay.plate_no));
                    }
                }
                StayAction::UnmatchedExit { lane, plate_no, at } => {
                    journal(
                        tx,
                        *at,
                        Some(lane),
                        "unmatched_exit",
                        plate_no.as_deref(),
                        None,
                    )?;
                    // A real vehicle left: its space is free, whatever stay it had.
                    count_only_in(tx, Direction::Exit, lane, *at)?;
                }
                StayAction::SyntheticStay { .. } => {}
                StayAction::CountOnly {
                    lane,
                    direction,
                    at,
                } => {
                    count_only_in(tx, *direction, lane, *at)?;
                }
            }
            // The entry is opened after whatever it replaces is closed.
            if let Some(e) = &entry {
                let o = self.open_in(tx, e, now, local_secs)?;
                if let (StayAction::SyntheticStay { .. }, Some(x)) = (action, &exit) {
                    let c = self.close_in(tx, &o.out_order_no, x, now)?;
                    closed = Some((c.out_order_no, c.stay.plate_no));
                }
                opened = Some(o.out_order_no);
            }
            if let Some(n) = note {
                journal(tx, n.at, Some(&n.lane), n.what, n.plate.as_deref(), None)?;
            }
            if let Some(o) = origin {
                super::cluster::record_origin(tx, o, now)?;
            }
            Ok(Applied {
                opened,
                closed,
                occupancy: read_occupancy(tx)?,
            })
        })
    }
}

/// A crash between any two statements of [`Store::apply`] leaves every action wholly
/// applied or not at all. Each crash is a real one: the test binary runs itself again
/// as a child that applies the action and aborts at the n-th fault point (see
/// `super::fault`), for every n the action passes; the parent then reopens the
/// database and compares every table with the state before and after a clean apply.
#[cfg(test)]
mod crash_tests {
    use super::*;
    use crate::config::LotConfig;
    use crate::config::storage::SnapshotMode;
    use crate::lane::Fee;
    use crate::lane::stays::{EntryDetails, ExitDetails, ExitPlan, NewEntry};
    use crate::plate::{CarType, PlateColor};
    use crate::store::StoreOptions;
    use std::path::Path;
    use std::sync::Arc;

    const T0: Timestamp = Timestamp(1_570_167_364_000);
    const NOW: Timestamp = Timestamp(1_570_170_000_000);

    fn options(mode: SnapshotMode) -> StoreOptions {
        StoreOptions {
            snapshot_mode: mode,
            // Two images fit, a third drops the oldest: the budget's statements run.
            image_budget_bytes: 250,
            ..StoreOptions::default()
        }
    }

    fn open(dir: &Path, mode: SnapshotMode) -> Store {
        Store::open_with(dir, &LotConfig::new("P3501", 10), options(mode)).unwrap()
    }

    fn entry(plate: &str, image: bool) -> NewEntry {
        NewEntry {
            details: EntryDetails {
                plate_no: plate.into(),
                plate_color: PlateColor::Blue,
                car_type: CarType::Normal,
                lane: "entry-1".into(),
                port_no: "E1".into(),
                entered_at: NOW,
                operator: None,
                snapshot: image.then(|| Arc::new(vec![7u8; 100])),
                price: None,
                should_pay: None,
            },
            placeholder: false,
            snapshot_len: image.then_some(100),
        }
    }

    fn exit(image: bool) -> ExitPlan {
        ExitPlan {
            details: ExitDetails {
                lane: "exit-1".into(),
                port_no: "X1".into(),
                away_time: NOW,
                fee: Fee {
                    price: 500,
                    should_pay: 0,
                    paid_fee: 500,
                },
                operator: None,
                snapshot: image.then(|| Arc::new(vec![9u8; 100])),
            },
            exit_plate: Some("闽A00001".into()),
            matched: None,
            snapshot_len: image.then_some(100),
        }
    }

    /// The state every action starts from: two open stays with images; returns the
    /// first one's number.
    fn setup(dir: &Path, mode: SnapshotMode) -> String {
        let store = open(dir, mode);
        let first = super::super::fixtures::new_stay("闽A00001", Some(vec![1u8; 100]), T0);
        let o = store.open_stay(first, T0).unwrap().out_order_no;
        let second = super::super::fixtures::new_stay("闽A00002", Some(vec![1u8; 100]), T0);
        store.open_stay(second, T0.plus_millis(1000)).unwrap();
        o
    }

    /// The actions, by name, against the set-up state (`o`: the first open stay).
    fn action(name: &str, o: &str) -> (StayAction, Option<LaneNote>) {
        let action = match name {
            "open" | "open_inferred" => StayAction::Open {
                entry: entry("闽B00001", true),
            },
            "supersede" => StayAction::SupersedeThenOpen {
                superseded: o.into(),
                entry: entry("闽A00001", true),
            },
            "orphan" => StayAction::CloseOrphanThenOpen {
                orphaned: o.into(),
                exit: exit(false),
                entry: entry("闽A00001", true),
            },
            "trailer" => StayAction::TrailerFolded {
                lane: "entry-1".into(),
                direction: Direction::Entry,
                plate_no: "闽A0001挂".into(),
                tractor: Some("闽A00001".into()),
                at: NOW,
            },
            "close" => StayAction::Close {
                out_order_no: o.into(),
                exit: exit(true),
            },
            "unmatched" => StayAction::UnmatchedExit {
                lane: "exit-1".into(),
                plate_no: Some("闽C00001".into()),
                at: NOW,
            },
            "synthetic" => StayAction::SyntheticStay {
                entry: entry("闽C00001", true),
                exit: exit(true),
            },
            "count_only" => StayAction::CountOnly {
                lane: "entry-1".into(),
                direction: Direction::Entry,
                at: NOW,
            },
            other => panic!("no action {other}"),
        };
        let note = (name == "open_inferred").then(|| LaneNote {
            at: NOW,
            lane: "entry-1".into(),
            what: "inferred_passage",
            plate: Some("闽B00001".into()),
        });
        (action, note)
    }

    const ACTIONS: [&str; 9] = [
        "open",
        "open_inferred",
        "supersede",
        "orphan",
        "trailer",
        "close",
        "unmatched",
        "synthetic",
        "count_only",
    ];

    fn mode_named(name: &str) -> SnapshotMode {
        if name == "inline" {
            SnapshotMode::Inline
        } else {
            SnapshotMode::Separate
        }
    }

    /// Every row of every table, as text, sorted: the whole state.
    fn fingerprint(dir: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(dir.join(super::super::DB_FILE)).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut rows = Vec::new();
        for t in tables {
            let mut st = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = st.column_count();
            let mut q = st.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect();
                rows.push(format!("{t}: {}", cells.join(", ")));
            }
        }
        rows.sort();
        rows
    }

    /// The child: applies one action, armed to abort at the n-th fault point. Runs
    /// only when the parent test starts it (the variables say what to do).
    #[test]
    fn crash_child() {
        let (Ok(dir), Ok(name), Ok(at), Ok(mode)) = (
            std::env::var("PB_CRASH_DIR"),
            std::env::var("PB_CRASH_ACTION"),
            std::env::var("PB_CRASH_AT"),
            std::env::var("PB_CRASH_MODE"),
        ) else {
            return;
        };
        let dir = Path::new(&dir);
        let store = open(dir, mode_named(&mode));
        let o = std::fs::read_to_string(dir.join("first")).unwrap();
        let (action, note) = action(&name, &o);
        super::super::fault::abort_at(at.parse().unwrap());
        let _ = store.apply_recording(&action, note.as_ref(), Some(&origin()), NOW);
        // Not aborted: the parent sees a clean exit and fails.
    }

    /// Each action is applied as a lot node applies a lane node's passage: with where
    /// it came from, recorded in the same transaction (so `cluster_seen` is compared
    /// too).
    fn origin() -> PassageOrigin {
        PassageOrigin::Queue {
            node: "north".into(),
            epoch: "e1".into(),
            seq: 7,
        }
    }

    fn crash_at(name: &str, mode: &str, at: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let o = setup(dir.path(), mode_named(mode));
        std::fs::write(dir.path().join("first"), &o).unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::apply::crash_tests::crash_child",
                "--test-threads=1",
            ])
            .env("PB_CRASH_DIR", dir.path())
            .env("PB_CRASH_ACTION", name)
            .env("PB_CRASH_AT", at.to_string())
            .env("PB_CRASH_MODE", mode)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            !status.success(),
            "{name}: the child was to abort at point {at} but finished"
        );
        fingerprint(dir.path())
    }

    #[test]
    fn a_crash_between_any_two_statements_of_apply_leaves_no_half_applied_action() {
        let mut crashes = 0;
        for mode in ["separate", "inline"] {
            for name in ACTIONS {
                let dir = tempfile::tempdir().unwrap();
                let o = setup(dir.path(), mode_named(mode));
                let before = fingerprint(dir.path());
                let store = open(dir.path(), mode_named(mode));
                let (action, note) = action(name, &o);
                super::super::fault::reset();
                store
                    .apply_recording(&action, note.as_ref(), Some(&origin()), NOW)
                    .unwrap();
                let points = super::super::fault::passed();
                drop(store);
                let after = fingerprint(dir.path());
                assert_ne!(before, after, "{name} changes something");
                assert!(points >= 3, "{name}: {points} fault points");
                for at in 0..points {
                    let seen = crash_at(name, mode, at);
                    crashes += 1;
                    // Before the commit: nothing; after it (the last point): all.
                    if at + 1 < points {
                        assert_eq!(
                            seen, before,
                            "{mode} {name}: crash at point {at} of {points} left part of the action"
                        );
                    } else {
                        assert_eq!(
                            seen, after,
                            "{mode} {name}: crash after the commit lost the action"
                        );
                    }
                }
            }
        }
        assert!(crashes >= 100, "only {crashes} crashes");
    }
}
