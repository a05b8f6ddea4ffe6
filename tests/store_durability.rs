//! The state database's durability promise, read back from SQLite rather than taken
//! from the code that asks for it: WAL mode and `synchronous=FULL` after opening (in a
//! new and in an existing file, and as another process sees the file), and every kind
//! of write that records a stay, a report or the occupancy committed under FULL. Only
//! delivery results may commit relaxed (NORMAL), and the connection is FULL again
//! after them.

use parking_bridge::config::LotConfig;
use parking_bridge::lane::Fee;
use parking_bridge::plate::{CarType, PlateColor};
use parking_bridge::store::{ExitDetails, LocalClose, NewStay, Outcome, Store};
use parking_bridge::time::Timestamp;

/// `PRAGMA synchronous` values.
const FULL: i64 = 2;
const NORMAL: i64 = 1;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn lot() -> LotConfig {
    toml::from_str("parking_lot_no = \"LOT-D\"\ntotal_spaces = 10\n").unwrap()
}

fn stay(plate: &str) -> NewStay {
    NewStay {
        plate_no: plate.into(),
        plate_color: PlateColor::Blue,
        car_type: CarType::Normal,
        lane: "entry-1".into(),
        port_no: "E1".into(),
        entered_at: T0,
        operator: None,
        snapshot: Some(vec![0xFF, 0xD8, 0xFF, 0xD9]),
        price: None,
        should_pay: None,
    }
}

fn exit() -> ExitDetails {
    ExitDetails {
        lane: "exit-1".into(),
        port_no: "X1".into(),
        away_time: T0.plus_millis(3_600_000),
        fee: Fee::settled(500),
        operator: None,
        snapshot: None,
    }
}

/// Asserts the connection is WAL + FULL now and the last write ran under `last`.
#[track_caller]
fn assert_durability(store: &Store, what: &str, last: Option<i64>) {
    let d = store.durability().unwrap();
    assert_eq!(d.journal_mode.to_ascii_lowercase(), "wal", "{what}: {d:?}");
    assert_eq!(d.synchronous, FULL, "{what}: {d:?}");
    assert_eq!(d.last_write_synchronous, last, "{what}: {d:?}");
}

#[test]
fn wal_and_synchronous_full_hold_after_open_and_after_every_kind_of_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &lot()).unwrap();
    assert_durability(&store, "new database", None);

    let first = store.open_stay(stay("闽A11111"), T0).unwrap();
    assert_durability(&store, "open_stay", Some(FULL));
    store
        .open_stays_grouped(vec![stay("闽A22222"), stay("闽A33333")], T0)
        .unwrap();
    assert_durability(&store, "open_stays_grouped", Some(FULL));
    store
        .close_stay(&first.out_order_no, exit(), T0.plus_millis(3_600_000))
        .unwrap();
    assert_durability(&store, "close_stay", Some(FULL));
    let second = store.find_open_stay("闽A22222").unwrap().unwrap();
    store
        .close_stay_locally(&second.out_order_no, LocalClose::Expired, T0)
        .unwrap();
    assert_durability(&store, "close_stay_locally", Some(FULL));
    store.set_occupancy(4).unwrap();
    assert_durability(&store, "set_occupancy", Some(FULL));

    // Delivery results: the one relaxed write; durable again afterwards.
    let due = store
        .due_reports(T0.plus_millis(7_200_000), 10, false, &Default::default())
        .unwrap();
    assert!(!due.is_empty());
    let outcomes: Vec<Outcome> = due
        .iter()
        .map(|item| Outcome::Retry {
            id: item.id,
            due_at: T0.plus_millis(9_000_000),
            error: "test".into(),
        })
        .collect();
    store
        .record_outcomes(&outcomes, T0.plus_millis(7_200_000))
        .unwrap();
    assert_durability(&store, "record_outcomes (relaxed)", Some(NORMAL));
    // The next stay write is durable again: relaxed never leaks.
    store.open_stay(stay("闽A44444"), T0).unwrap();
    assert_durability(&store, "open_stay after a relaxed write", Some(FULL));
    store.prune(T0.plus_millis(7_200_000)).unwrap();
    assert_durability(&store, "prune", Some(FULL));
    if let Some(item) = due.iter().find(|i| i.image_bytes.is_some()) {
        store.discard_image(item.id).unwrap();
        assert_durability(&store, "discard_image", Some(FULL));
    }
    drop(store);

    // Re-opened (an existing file) and as a separate connection sees it: WAL is a
    // property of the file.
    let store = Store::open(dir.path(), &lot()).unwrap();
    assert_durability(&store, "re-opened database", None);
    let other = rusqlite::Connection::open(store.path()).unwrap();
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}
