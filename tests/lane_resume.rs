//! Property: for random event sequences on every lane layout (the scenario site) and a
//! random cut point — the bridge dies between two events, possibly before it applied
//! the passages of the last event it saw, and restarts before the next event —
//! resuming from the journal and feeding the rest gives exactly the reports of the
//! uncut sequence (same passages, same stays, same order).
//!
//! Both runs follow the lane task's timing: events at their own time, timers at their
//! deadline (all lanes, earliest first); the journal the first run leaves is what the
//! lane task writes (a start mark, each event before it is handled, an `applied` mark
//! after each passage is applied).

mod process_common;
use parking_bridge::config::{LaneConfig, SiteConfig};
use parking_bridge::event::{EventKind, GatePosition, LoopId, PlateRead, RawEvent};
use parking_bridge::lane::journal::{Line, Mark, Window};
use parking_bridge::lane::machine::{LaneMachine, Passage};
use parking_bridge::lane::model::{MemoryLot, Outcome};
use parking_bridge::lane::resume::{self, applied_mark};
use parking_bridge::lane::stays::decide;
use parking_bridge::plate::PlateColor;
use parking_bridge::time::{Timestamp, china_standard_time};
use process_common::env_or;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const LANES: [&str; 8] = [
    "in-lg", "out-lg", "in-g", "out-g", "in-l", "out-l", "in-c", "out-c",
];
const PLATES: [&str; 4] = ["闽A12345", "闽A1234S", "粤A12345", "闽A88888"];

fn site() -> SiteConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/site.toml");
    SiteConfig::load(&path).unwrap()
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        5 => (prop_oneof![Just(LoopId::A), Just(LoopId::B)], any::<bool>())
            .prop_map(|(which, occupied)| EventKind::Loop { which, occupied }),
        2 => prop_oneof![
            Just(GatePosition::Open),
            Just(GatePosition::Closed),
            Just(GatePosition::Moving),
        ]
        .prop_map(|position| EventKind::Gate { position }),
        3 => (prop::option::weighted(0.85, 0..PLATES.len()), any::<bool>())
            .prop_map(|(i, quick)| {
                let mut read = PlateRead::text("", PlateColor::Blue);
                read.text = i.map(|i| PLATES[i].to_string());
                read.quick = quick;
                EventKind::Plate(read)
            }),
        1 => any::<bool>().prop_map(|up| EventKind::Link { up }),
    ]
}

/// Events on random lanes at strictly increasing times (gaps up to 8 s, sometimes a
/// minute), so that a restart fits between any two.
fn events() -> impl Strategy<Value = Vec<RawEvent>> {
    prop::collection::vec(
        (
            0..LANES.len(),
            prop_oneof![9 => 2i64..8_000, 1 => 2i64..60_000],
            kind(),
        ),
        1..200,
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

/// The lane logic of the site with the lane task's timing, and the stays it makes.
struct Site {
    configs: BTreeMap<String, LaneConfig>,
    machines: BTreeMap<String, LaneMachine>,
    lot_config: parking_bridge::config::LotConfig,
    lot: MemoryLot,
    out: Vec<String>,
}

impl Site {
    fn new(config: &SiteConfig) -> Site {
        Site {
            configs: config
                .lanes
                .iter()
                .map(|l| (l.id.clone(), l.clone()))
                .collect(),
            machines: config
                .lanes
                .iter()
                .map(|l| (l.id.clone(), LaneMachine::new(l)))
                .collect(),
            lot_config: config.lot.clone(),
            lot: MemoryLot::new(&config.lot, china_standard_time()),
            out: Vec::new(),
        }
    }

    /// Runs every timer due by `until`, earliest first; returns the passages.
    fn timers(&mut self, until: Timestamp) -> Vec<(Timestamp, Passage)> {
        let mut passages = Vec::new();
        loop {
            let due = self
                .machines
                .iter()
                .filter_map(|(id, m)| m.poll_at().map(|t| (t, id.clone())))
                .filter(|(t, _)| *t <= until)
                .min();
            let Some((t, id)) = due else {
                return passages;
            };
            let m = self.machines.get_mut(&id).unwrap();
            passages.extend(m.on_timer(t).into_iter().map(|p| (t, p)));
        }
    }

    fn event(&mut self, e: &RawEvent) -> Vec<Passage> {
        self.machines.get_mut(&e.lane).unwrap().handle(e, e.at)
    }

    /// The stay planner and the lot: what the store would do with the passage.
    fn apply(&mut self, p: &Passage) {
        let action = decide(
            p,
            &self.configs[&p.lane],
            &self.lot_config,
            self.lot.open_stays(),
            None,
        );
        self.out.push(serde_json::to_string(p).unwrap());
        let mut outcomes: Vec<Outcome> = Vec::new();
        self.lot.apply(action, &mut outcomes);
        self.out.extend(outcomes.iter().map(|o| o.to_json()));
    }
}

fn uncut(config: &SiteConfig, events: &[RawEvent]) -> Vec<String> {
    let mut site = Site::new(config);
    for e in events {
        for (_, p) in site.timers(e.at) {
            site.apply(&p);
        }
        for p in site.event(e) {
            site.apply(&p);
        }
    }
    for (_, p) in site.timers(Timestamp(i64::MAX)) {
        site.apply(&p);
    }
    site.out
}

/// Dies after event `cut - 1` (having applied none of that event's passages when
/// `unapplied`) at `dies_at`, restarts at `restarts_at` (before event `cut`).
fn cut_and_resumed(
    config: &SiteConfig,
    events: &[RawEvent],
    cut: usize,
    unapplied: bool,
    dies_at: Timestamp,
    restarts_at: Timestamp,
) -> Vec<String> {
    let mut site = Site::new(config);
    let mut lines = vec![Line::Mark(Mark::Start {
        at: Timestamp(events[0].at.0 - 1),
        resumed: false,
    })];
    for (i, e) in events[..cut].iter().enumerate() {
        for (t, p) in site.timers(e.at) {
            site.apply(&p);
            lines.push(Line::Mark(applied_mark(&p, t, false)));
        }
        lines.push(Line::Event(e.clone()));
        for p in site.event(e) {
            if unapplied && i + 1 == cut {
                continue; // killed before the passage reached the database
            }
            site.apply(&p);
            lines.push(Line::Mark(applied_mark(&p, e.at, false)));
        }
    }
    // Killed mid-apply: the lane task applies passages one at a time, so it died
    // there, before any later timer.
    let dies_at = if unapplied {
        events[cut - 1].at
    } else {
        dies_at
    };
    for (t, p) in site.timers(dies_at) {
        site.apply(&p);
        lines.push(Line::Mark(applied_mark(&p, t, false)));
    }
    // SIGKILL. What the restart finds: the journal, and the stays in the database.
    let last_life = lines
        .iter()
        .map(|l| match l {
            Line::Event(e) => e.at,
            Line::Mark(m) => m.at(),
        })
        .max();
    let window = Window {
        lines,
        bad_lines: 0,
        last_life,
        clean_stop: false,
        cut: false,
    };
    let lanes: Vec<LaneConfig> = config.lanes.clone();
    let since = Timestamp(restarts_at.0 - resume::WINDOW_MS);
    let mut resumed = resume::rebuild(&lanes, &window, since);
    let mut restarted = Site {
        machines: std::mem::take(&mut resumed.lanes)
            .into_iter()
            .map(|(id, l)| (id, l.machine))
            .collect(),
        ..site
    };
    for p in std::mem::take(&mut resumed.candidates) {
        restarted.apply(&p);
    }
    let live = |site: &mut Site, resumed: &mut resume::Resumed, passages: Vec<Passage>| {
        for p in passages {
            if !resumed.take_applied(&p) {
                site.apply(&p);
            }
        }
    };
    let due: Vec<Passage> = restarted
        .timers(restarts_at)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    live(&mut restarted, &mut resumed, due);
    for e in &events[cut..] {
        let due = restarted.timers(e.at).into_iter().map(|(_, p)| p).collect();
        live(&mut restarted, &mut resumed, due);
        let passages = restarted.event(e);
        live(&mut restarted, &mut resumed, passages);
    }
    let due = restarted
        .timers(Timestamp(i64::MAX))
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    live(&mut restarted, &mut resumed, due);
    restarted.out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn resume_and_the_rest_give_the_reports_of_the_uncut_sequence(
        events in events(),
        cut in any::<prop::sample::Index>(),
        unapplied in any::<bool>(),
        dies in 0.0f64..1.0,
        dead in 0.0f64..1.0,
    ) {
        let config = site();
        let want = uncut(&config, &events);
        // Cut after event `cut` (1..len): it died somewhere before the next event and
        // restarted after that, still before the next event (no event in the dead window).
        let cut = 1 + cut.index(events.len());
        let last = events[cut - 1].at.0;
        let next = events.get(cut).map_or(last + 120_000, |e| e.at.0 - 1);
        let dies_at = last + ((next - last) as f64 * dies) as i64;
        let restarts_at = dies_at + ((next - dies_at) as f64 * dead) as i64;
        let got = cut_and_resumed(
            &config,
            &events,
            cut,
            unapplied,
            Timestamp(dies_at),
            Timestamp(restarts_at),
        );
        if got != want {
            let around: Vec<String> = events[cut.saturating_sub(4)..(cut + 3).min(events.len())]
                .iter()
                .map(|e| format!("{} {} {:?}", e.at.0, e.lane, e.kind))
                .collect();
            eprintln!("cut {cut} of {}, unapplied {unapplied}, dies {dies_at}, restarts {restarts_at}\n{}", events.len(), around.join("\n"));
        }
        prop_assert_eq!(got, want);
    }
}

/// BENCHMARKS.md "Resume at start": what resuming adds to a start — reading the
/// journal's window and rebuilding the lanes — with a full window (the scenario
/// site's 8 lanes at peak for the whole 10 minutes: a vehicle every 4 s on every lane,
/// read, through the loops or the gate, each passage with its `applied` mark), against
/// an empty journal, in the same run. Median of `RESUME_BENCH_RUNS` (default 15).
#[test]
#[ignore = "benchmark: cargo test --release --test lane_resume -- --ignored --nocapture"]
fn resume_start_up_with_a_full_window_against_an_empty_journal() {
    use parking_bridge::lane::journal::{Journal, read_window};
    use std::time::Instant;
    let runs: usize = env_or("RESUME_BENCH_RUNS", 15);
    let config = site();
    let full = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let t0 = now.0 - resume::WINDOW_MS + 1_000;
    let mut journal = Journal::open(full.path()).unwrap();
    journal
        .mark(&Mark::Start {
            at: Timestamp(t0 - 1),
            resumed: false,
        })
        .unwrap();
    let mut site_model = Site::new(&config);
    let (mut events, mut marks) = (0usize, 0usize);
    let mut vehicle = 0usize;
    let lanes: Vec<String> = config.lanes.iter().map(|l| l.id.clone()).collect();
    let mut t = t0;
    while t < now.0 - 5_000 {
        for (i, lane) in lanes.iter().enumerate() {
            let at = t + i as i64 * 400;
            let plate = format!("闽A{:05}", vehicle % 100_000);
            vehicle += 1;
            let ev = |dt: i64, kind: EventKind| RawEvent {
                lane: lane.clone(),
                device: format!("{lane}-dev"),
                at: Timestamp(at + dt),
                kind,
            };
            let lp = |which, occupied| EventKind::Loop { which, occupied };
            let gate = |position| EventKind::Gate { position };
            for e in [
                ev(
                    0,
                    EventKind::Plate(PlateRead::text(&plate, PlateColor::Blue)),
                ),
                ev(300, lp(LoopId::A, true)),
                ev(500, gate(GatePosition::Open)),
                ev(1_000, lp(LoopId::B, true)),
                ev(1_600, lp(LoopId::A, false)),
                ev(2_200, lp(LoopId::B, false)),
                ev(2_800, gate(GatePosition::Closed)),
            ] {
                journal.append(&e).unwrap();
                events += 1;
                for p in site_model.event(&e) {
                    journal.mark(&applied_mark(&p, e.at, false)).unwrap();
                    marks += 1;
                }
            }
        }
        t += 4_000;
    }
    drop(journal);
    let bytes = std::fs::metadata(full.path().join("events.jsonl"))
        .unwrap()
        .len();
    let since = Timestamp(now.0 - resume::WINDOW_MS);
    let time = |dir: &Path| {
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                let window = read_window(dir, since).unwrap();
                let resumed = resume::rebuild(&config.lanes, &window, since);
                let took = started.elapsed().as_secs_f64() * 1000.0;
                assert!(resumed.candidates.is_empty(), "every passage was applied");
                took
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    };
    let empty_ms = time(empty.path());
    let full_ms = time(full.path());
    println!(
        "resume at start, 8 lanes, 10-minute window: full journal ({events} events, {marks} applied marks, \
         {vehicle} vehicles, {:.1} MB) {full_ms:.2} ms, empty journal {empty_ms:.3} ms (median of {runs}); \
         added to the lanes' start: {:.2} ms",
        bytes as f64 / 1e6,
        full_ms - empty_ms
    );
}
