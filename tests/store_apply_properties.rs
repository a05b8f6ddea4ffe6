//! `Store::apply` and the in-memory lot (`lane::model::MemoryLot`, what `replay` runs
//! on) agree: the same random sequences of stay actions, given to both, leave the same
//! open stays and occupancy and queue the same reports in the same order.
//!
//! Actions name the stays they touch by position among the open stays (each side
//! resolves the position against its own open stays, which must therefore agree), and
//! stay numbers are compared by first appearance: the store stamps them with the wall
//! clock of the write, the model with the entry time, so only their identity matters.

use parking_bridge::config::{Direction, LotConfig};
use parking_bridge::lane::Fee;
use parking_bridge::lane::model::{MemoryLot, Outcome};
use parking_bridge::lane::stays::{EntryDetails, ExitDetails, ExitPlan, NewEntry, StayAction};
use parking_bridge::plate::{CarType, PlateColor};
use parking_bridge::store::{Store, StoreOptions};
use parking_bridge::time::{Timestamp, china_standard_time};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const PLATES: [&str; 5] = ["闽A12345", "闽A88888", "粤B00001", "京AD12345", "闽A0001挂"];
const TOTAL: i64 = 6;

/// An action with its stays named by position among the open stays.
#[derive(Debug, Clone)]
enum Op {
    Open { plate: usize, image: bool },
    Supersede { stay: usize, image: bool },
    Orphan { stay: usize },
    Close { stay: usize, image: bool, fee: i64 },
    Trailer,
    Unmatched { plate: usize },
    Synthetic { plate: usize, image: bool },
    CountOnly { entry: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PLATES.len(), any::<bool>()).prop_map(|(plate, image)| Op::Open { plate, image }),
        1 => (0..8usize, any::<bool>()).prop_map(|(stay, image)| Op::Supersede { stay, image }),
        1 => (0..8usize).prop_map(|stay| Op::Orphan { stay }),
        3 => (0..8usize, any::<bool>(), 0..2000i64).prop_map(|(stay, image, fee)| Op::Close { stay, image, fee }),
        1 => Just(Op::Trailer),
        1 => (0..PLATES.len()).prop_map(|plate| Op::Unmatched { plate }),
        1 => (0..PLATES.len(), any::<bool>()).prop_map(|(plate, image)| Op::Synthetic { plate, image }),
        1 => any::<bool>().prop_map(|entry| Op::CountOnly { entry }),
    ]
}

fn entry(plate: &str, at: Timestamp, image: bool) -> NewEntry {
    NewEntry {
        details: EntryDetails {
            plate_no: plate.into(),
            plate_color: PlateColor::Blue,
            car_type: CarType::Normal,
            lane: "in".into(),
            port_no: "E1".into(),
            entered_at: at,
            operator: None,
            snapshot: image.then(|| Arc::new(vec![0xFF, 0xD8, 1, 2, 3])),
            price: None,
            should_pay: None,
        },
        placeholder: false,
        snapshot_len: image.then_some(5),
    }
}

fn exit(at: Timestamp, image: bool, fee: i64) -> ExitPlan {
    ExitPlan {
        details: ExitDetails {
            lane: "out".into(),
            port_no: "X1".into(),
            away_time: at,
            fee: Fee {
                price: fee,
                should_pay: 0,
                paid_fee: fee,
            },
            operator: None,
            snapshot: image.then(|| Arc::new(vec![0xFF, 0xD8, 4, 5])),
        },
        exit_plate: None,
        matched: None,
        snapshot_len: image.then_some(4),
    }
}

/// The action `op` means against `open` (numbers and plates of the open stays,
/// oldest first); `None` when it names a stay and none is open.
fn resolve(op: &Op, open: &[(String, String)], at: Timestamp) -> Option<StayAction> {
    let pick = |i: usize| open.get(i % open.len().max(1)).cloned();
    Some(match op {
        Op::Open { plate, image } => StayAction::Open {
            entry: entry(PLATES[*plate], at, *image),
        },
        Op::Supersede { stay, image } => {
            let (no, plate) = pick(*stay)?;
            StayAction::SupersedeThenOpen {
                superseded: no,
                entry: entry(&plate, at, *image),
            }
        }
        Op::Orphan { stay } => {
            let (no, plate) = pick(*stay)?;
            StayAction::CloseOrphanThenOpen {
                orphaned: no,
                exit: exit(at.plus_millis(-1000), false, 0),
                entry: entry(&plate, at, false),
            }
        }
        Op::Close { stay, image, fee } => {
            let (no, _) = pick(*stay)?;
            StayAction::Close {
                out_order_no: no,
                exit: exit(at, *image, *fee),
            }
        }
        Op::Trailer => StayAction::TrailerFolded {
            lane: "in".into(),
            direction: Direction::Entry,
            plate_no: "闽A0002挂".into(),
            tractor: None,
            at,
        },
        Op::Unmatched { plate } => StayAction::UnmatchedExit {
            lane: "out".into(),
            plate_no: Some(PLATES[*plate].into()),
            at,
        },
        Op::Synthetic { plate, image } => StayAction::SyntheticStay {
            entry: entry(PLATES[*plate], at, *image),
            exit: exit(at, *image, 0),
        },
        Op::CountOnly { entry } => StayAction::CountOnly {
            lane: "in".into(),
            direction: if *entry {
                Direction::Entry
            } else {
                Direction::Exit
            },
            at,
        },
    })
}

/// Stay numbers replaced by the order in which they first appear.
fn normalise(reports: Vec<Value>) -> Vec<Value> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    reports
        .into_iter()
        .map(|mut r| {
            if let Some(no) = r.get("out_order_no").and_then(Value::as_str) {
                let n = ids.len();
                let id = *ids.entry(no.to_string()).or_insert(n);
                r["out_order_no"] = Value::from(id);
            }
            r
        })
        .collect()
}

fn store_reports(store: &Store) -> Vec<Value> {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mut st = conn.prepare("SELECT body FROM outbox ORDER BY id").unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let lot = LotConfig::new("P3501", TOTAL);
    let store = Store::open_with(dir.path(), &lot, StoreOptions::default()).unwrap();
    let mut memory = MemoryLot::new(&lot, china_standard_time());
    let mut outcomes = Vec::new();
    let mut at = Timestamp(1_700_000_000_000);
    for (step, op) in ops.iter().enumerate() {
        at = at.plus_millis(61_000);
        let stored: Vec<(String, String)> = store
            .open_stays()
            .unwrap()
            .into_iter()
            .map(|s| (s.out_order_no, s.plate_no))
            .collect();
        let kept: Vec<(String, String)> = memory
            .open_stays()
            .iter()
            .map(|s| (s.out_order_no.clone(), s.plate_no.clone()))
            .collect();
        let plates = |v: &[(String, String)]| v.iter().map(|s| s.1.clone()).collect::<Vec<_>>();
        prop_assert_eq!(
            plates(&stored),
            plates(&kept),
            "open stays before step {}",
            step
        );
        let (Some(a), Some(b)) = (resolve(op, &stored, at), resolve(op, &kept, at)) else {
            continue;
        };
        let applied = store.apply(&a, None, at).unwrap();
        memory.apply(b, &mut outcomes);
        let occ = memory.occupancy();
        prop_assert_eq!(
            (applied.occupancy.occupied, applied.occupancy.free),
            (occ.occupied, occ.free),
            "occupancy after step {} ({:?})",
            step,
            op
        );
    }
    let from_memory: Vec<Value> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Report(r) => Some(serde_json::to_value(r).unwrap()),
            _ => None,
        })
        .collect();
    if ops
        .iter()
        .any(|o| matches!(o, Op::Open { .. } | Op::Synthetic { .. }))
    {
        prop_assert!(!from_memory.is_empty(), "an entry was reported");
    }
    prop_assert_eq!(normalise(store_reports(&store)), normalise(from_memory));
    let occ = store.occupancy().unwrap();
    prop_assert_eq!(
        (occ.occupied, occ.free),
        (memory.occupancy().occupied, memory.occupancy().free)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_and_memory_lot_agree_on_stays_occupancy_and_reports(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
