//! Property tests over random interleavings of loop, gate, plate and link events on
//! every lane layout (the scenario site config): whatever the devices say, free spaces
//! stay within 0..=total, no exit is before its entry (or without one), at most one
//! stay per plate is open, and replay is deterministic.

use parking_bridge::config::SiteConfig;
use parking_bridge::event::{EventKind, GatePosition, LoopId, PlateRead, RawEvent};
use parking_bridge::lane::model::{LocalEvent, Outcome};
use parking_bridge::lane::replay::Replay;
use parking_bridge::plate::PlateColor;
use parking_bridge::report::Report;
use parking_bridge::time::Timestamp;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

const LANES: [&str; 8] = [
    "in-lg", "out-lg", "in-g", "out-g", "in-l", "out-l", "in-c", "out-c",
];
const PLATES: [&str; 6] = [
    "闽A12345",
    "闽A1234S",
    "粤A12345",
    "闽A88888",
    "京AD12345",
    "闽A00001",
];

fn site() -> SiteConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/site.toml");
    SiteConfig::load(&path).unwrap()
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        4 => (prop_oneof![Just(LoopId::A), Just(LoopId::B)], any::<bool>())
            .prop_map(|(which, occupied)| EventKind::Loop { which, occupied }),
        2 => prop_oneof![
            Just(GatePosition::Open),
            Just(GatePosition::Closed),
            Just(GatePosition::Moving),
            Just(GatePosition::Fault)
        ]
        .prop_map(|position| EventKind::Gate { position }),
        3 => (prop::option::weighted(0.85, 0..PLATES.len()), any::<bool>(), prop::option::of(1usize..5000))
            .prop_map(|(i, quick, image_len)| {
                let mut read = PlateRead::text("", PlateColor::Unknown);
                read.text = i.map(|i| PLATES[i].to_string());
                read.quick = quick;
                read.image_len = image_len;
                EventKind::Plate(read)
            }),
        1 => any::<bool>().prop_map(|up| EventKind::Link { up }),
    ]
}

/// Events on random lanes at non-decreasing times (gaps up to 20 s, sometimes an hour).
fn events() -> impl Strategy<Value = Vec<RawEvent>> {
    prop::collection::vec(
        (
            0..LANES.len(),
            prop_oneof![9 => 0i64..20_000, 1 => 0i64..7_200_000],
            kind(),
        ),
        1..300,
    )
    .prop_map(|items| {
        let mut at = 1_764_000_000_000i64;
        items
            .into_iter()
            .map(|(lane, gap, kind)| {
                at += gap;
                RawEvent {
                    lane: LANES[lane].into(),
                    device: format!("{}-dev", LANES[lane]),
                    at: Timestamp(at),
                    kind,
                }
            })
            .collect()
    })
}

fn run(
    config: &SiteConfig,
    events: &[RawEvent],
    mut check: impl FnMut(&Replay, &[Outcome]),
) -> Vec<String> {
    let mut replay = Replay::new(config, true);
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for e in events {
        replay.feed(e, &mut out);
        check(&replay, &out);
        lines.extend(out.drain(..).map(|o| o.to_json()));
    }
    replay.finish(&mut out);
    check(&replay, &out);
    lines.extend(out.drain(..).map(|o| o.to_json()));
    lines
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn free_spaces_stay_within_zero_and_total(events in events()) {
        let config = site();
        let total = config.lot.total_spaces;
        run(&config, &events, |replay, out| {
            let occ = replay.lot().occupancy();
            assert!((0..=total).contains(&occ.free), "{occ:?}");
            for o in out {
                let free = match o {
                    Outcome::Report(Report::Entry(e)) => e.free_spaces,
                    Outcome::Report(Report::Exit(x)) => x.free_spaces,
                    Outcome::Local(LocalEvent::UnmatchedExit { free_spaces, .. })
                    | Outcome::Local(LocalEvent::CountOnly { free_spaces, .. }) => *free_spaces,
                    _ => continue,
                };
                assert!((0..=total).contains(&free), "free {free} outside 0..={total}");
            }
        });
    }

    #[test]
    fn no_exit_before_or_without_its_entry(events in events()) {
        let config = site();
        let mut entries: HashMap<String, Timestamp> = HashMap::new();
        let mut exited: HashSet<String> = HashSet::new();
        run(&config, &events, |_, out| {
            for o in out {
                match o {
                    Outcome::Report(Report::Entry(e)) => {
                        assert!(entries.insert(e.out_order_no.clone(), e.parking_time).is_none(), "entry reported twice");
                    }
                    Outcome::Report(Report::Exit(x)) => {
                        let entered = entries.get(&x.out_order_no).copied();
                        assert!(entered.is_some(), "exit {} without entry", x.out_order_no);
                        assert!(entered.is_some_and(|t| t <= x.away_time), "exit before entry");
                        assert!(exited.insert(x.out_order_no.clone()), "stay exited twice");
                    }
                    _ => {}
                }
            }
        });
    }

    #[test]
    fn at_most_one_open_stay_per_plate(events in events()) {
        let config = site();
        run(&config, &events, |replay, _| {
            let mut seen = HashSet::new();
            for s in replay.lot().open_stays().iter().filter(|s| !s.placeholder) {
                assert!(seen.insert(s.plate_no.clone()), "two open stays for {}", s.plate_no);
            }
        });
    }

    #[test]
    fn replay_is_deterministic(events in events()) {
        let config = site();
        let a = run(&config, &events, |_, _| {});
        let b = run(&config, &events, |_, _| {});
        prop_assert_eq!(a, b);
    }
}

/// What one scripted vehicle does.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Pass,
    TurnAway,
    ReverseOut,
    ReverseThenPass,
}

/// Realistic vehicles, one after another on each loop lane (at least 10 s apart), the
/// lanes interleaved in time. Returns the events and how many vehicles really passed.
fn vehicles() -> impl Strategy<Value = (Vec<RawEvent>, usize)> {
    let behaviour = prop_oneof![
        6 => Just(Behaviour::Pass),
        1 => Just(Behaviour::TurnAway),
        1 => Just(Behaviour::ReverseOut),
        1 => Just(Behaviour::ReverseThenPass),
    ];
    let lanes = ["in-lg", "out-lg", "in-l", "out-l"];
    prop::collection::vec(
        (
            0..lanes.len(),
            prop::option::weighted(0.9, 0..PLATES.len()),
            behaviour,
            10_000i64..120_000,
        ),
        1..80,
    )
    .prop_map(move |vs| {
        let mut next_free: HashMap<usize, i64> = HashMap::new();
        let mut events = Vec::new();
        let mut passed = 0;
        for (lane, plate, b, gap) in vs {
            let start = next_free.get(&lane).copied().unwrap_or(1_764_000_000_000) + gap;
            let mut t = start;
            let mut push = |dt: i64, kind: EventKind| {
                t += dt;
                events.push(RawEvent {
                    lane: lanes[lane].into(),
                    device: "dev".into(),
                    at: Timestamp(t),
                    kind,
                });
            };
            let mut read = PlateRead::text("", PlateColor::Blue);
            read.text = plate.map(|i| PLATES[i].to_string());
            let lp = |which, occupied| EventKind::Loop { which, occupied };
            push(0, EventKind::Plate(read));
            push(300, lp(LoopId::A, true));
            match b {
                Behaviour::Pass => {
                    push(1000, lp(LoopId::B, true));
                    push(1000, lp(LoopId::A, false));
                    push(1000, lp(LoopId::B, false));
                    passed += 1;
                }
                Behaviour::TurnAway => push(2000, lp(LoopId::A, false)),
                Behaviour::ReverseOut => {
                    push(1000, lp(LoopId::B, true));
                    push(1000, lp(LoopId::B, false));
                    push(1000, lp(LoopId::A, false));
                }
                Behaviour::ReverseThenPass => {
                    push(1000, lp(LoopId::B, true));
                    push(1000, lp(LoopId::B, false));
                    push(1000, lp(LoopId::B, true));
                    push(1000, lp(LoopId::A, false));
                    push(1000, lp(LoopId::B, false));
                    passed += 1;
                }
            }
            next_free.insert(lane, t);
        }
        events.sort_by_key(|e| e.at);
        (events, passed)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_passing_vehicle_is_counted_once_and_no_other(input in vehicles()) {
        let (events, passed) = input;
        let config = site();
        let mut passages = 0;
        run(&config, &events, |replay, out| {
            passages += out.iter().filter(|o| matches!(o, Outcome::Passage(_))).count();
            let mut seen = HashSet::new();
            for s in replay.lot().open_stays().iter().filter(|s| !s.placeholder) {
                assert!(seen.insert(s.plate_no.clone()));
            }
        });
        prop_assert_eq!(passages, passed);
    }
}
