//! Resume at start: rebuilds each lane machine from the journal's recent window with
//! the same pure lane logic, so a vehicle followed when the bridge died (or stopped) is
//! followed on after the restart, and finds the passages the previous run produced but
//! never applied (it died between the two).
//!
//! Pure: a [`Window`] and the lane configs in, machines and passages out; the lane task
//! ([`super::runtime`]) does the I/O.
//!
//! Which passages are already applied: the journal's `applied` marks, counted by
//! (lane, clearing time). A replayed passage with a mark is skipped; one without is a
//! candidate. Replaying from the window's start, a lane may be cut in the middle of a
//! vehicle, so its first replayed passages are not trusted: a lane's candidates count
//! only once the replayed lane has been idle at least one warm-up (the longest of its
//! windows) into the window, or from a `start` mark of a run that started its lanes
//! empty (there the replay starts its lanes empty too, exactly as that run did).
//! A journal without marks (written before this version, whose stop settled held
//! vehicles) is not resumed at all: the lanes start empty.
//!
//! Time follows the live core's rule ([`super::core`]): it never goes backwards. After
//! the wall clock stepped back, the live lanes handled events at the latest time seen,
//! so the rebuild does too — otherwise its passages' clearing times would not match the
//! `applied` marks and it would apply them all again.

use super::journal::{Line, Mark, Window};
use super::machine::{LaneMachine, Passage};
use crate::config::LaneConfig;
use crate::event::EventKind;
use crate::lane::fees::TerminalCharge;
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap};

/// How far back the journal is read at start. A lane idle for this long has nothing
/// to resume.
pub const WINDOW_MS: i64 = 10 * 60 * 1000;

/// Applied passages, counted by (lane, clearing time).
pub type Applied = HashMap<(String, Timestamp), u32>;

/// One lane as rebuilt.
#[derive(Debug, Clone)]
pub struct LaneResume {
    pub machine: LaneMachine,
    /// The replayed lane reached a moment it can be trusted from (see the module doc).
    pub trusted: bool,
    /// Journal events replayed for this lane.
    pub events: usize,
}

/// The lanes rebuilt from a window.
#[derive(Debug)]
pub struct Resumed {
    pub lanes: BTreeMap<String, LaneResume>,
    /// Passages the previous run produced but did not apply, in the order produced.
    pub candidates: Vec<Passage>,
    /// Applied marks not matched by a replayed passage: a passage produced later by the
    /// rebuilt machines (a held vehicle's timer) with one of these keys was applied
    /// already and must be skipped ([`Resumed::take_applied`]).
    pub applied: Applied,
    /// The last charge shown by each exit lane's pay terminal, still unused.
    pub charges: BTreeMap<String, TerminalCharge>,
    /// The pay system's payments in the window, oldest first (for the exits to come).
    pub payments: Vec<crate::event::RawEvent>,
    /// The previous run's last sign of life and whether it stopped cleanly.
    pub last_life: Option<Timestamp>,
    pub clean_stop: bool,
    /// Journal lines that could not be read.
    pub bad_lines: usize,
    /// The lanes were rebuilt (false: no marks in the window, the lanes start empty).
    pub resumed: bool,
}

impl Resumed {
    /// True (and the mark used up) when `p` was applied before the restart.
    pub fn take_applied(&mut self, p: &Passage) -> bool {
        take_applied(&mut self.applied, p)
    }
}

/// True (and the mark used up) when `p` is among `applied`.
pub fn take_applied(applied: &mut Applied, p: &Passage) -> bool {
    let key = (p.lane.clone(), p.cleared_at);
    match applied.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            true
        }
        Some(_) => {
            applied.remove(&key);
            true
        }
        None => false,
    }
}

/// The longest of a lane's windows: replayed history shorter than this may be missing
/// what a decision looks back at (a double read, a tailgate, a pending read).
fn warmup_ms(cfg: &LaneConfig) -> i64 {
    [
        cfg.plate_window_ms,
        cfg.tailgate_window_ms,
        cfg.double_read_window_ms,
        cfg.late_plate_window_ms,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
    .max(0)
}

/// Rebuilds every configured lane from `window` (read from `since` on). Events are
/// handled at their own time, as the lane task does; after the last line, the timers
/// the previous run had already run (due by its last sign of life) are run too.
pub fn rebuild(lanes: &[LaneConfig], window: &Window, since: Timestamp) -> Resumed {
    let mut applied = window.applied();
    let fresh = |cfg: &LaneConfig| {
        (
            LaneResume {
                machine: LaneMachine::new(cfg),
                trusted: false,
                events: 0,
            },
            warmup_ms(cfg),
        )
    };
    let mut rebuilt: BTreeMap<String, (LaneResume, i64)> = lanes
        .iter()
        .map(|cfg| (cfg.id.clone(), fresh(cfg)))
        .collect();
    let mut candidates = Vec::new();
    let mut charges = BTreeMap::new();
    let payments: Vec<crate::event::RawEvent> = window
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Event(e) if matches!(e.kind, EventKind::Payment { .. }) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let marked = window.lines.iter().any(|l| matches!(l, Line::Mark(_)));
    let finish =
        |rebuilt: BTreeMap<String, (LaneResume, i64)>, candidates, applied, charges, resumed| {
            Resumed {
                lanes: rebuilt.into_iter().map(|(id, (l, _))| (id, l)).collect(),
                candidates,
                applied,
                charges,
                payments,
                last_life: window.last_life,
                clean_stop: window.clean_stop,
                bad_lines: window.bad_lines,
                resumed,
            }
        };
    if !marked {
        return finish(rebuilt, candidates, applied, charges, false);
    }
    let mut marks_seen = false;
    // The core's clock: the latest time seen, never earlier.
    let mut now = Timestamp(i64::MIN);
    for line in &window.lines {
        let event = match line {
            // A run that started its lanes empty: so does the replay, in step with it.
            Line::Mark(Mark::Start { resumed: false, .. }) => {
                marks_seen = true;
                for cfg in lanes {
                    let mut lane = fresh(cfg);
                    lane.0.trusted = true;
                    lane.0.events = rebuilt.get(&cfg.id).map_or(0, |(l, _)| l.events);
                    rebuilt.insert(cfg.id.clone(), lane);
                }
                continue;
            }
            // Where the live task ran its timers, so does the rebuild (as replay does).
            Line::Mark(Mark::Timers { at }) => {
                marks_seen = true;
                now = now.max(*at);
                run_timers(
                    &mut rebuilt,
                    now,
                    &mut applied,
                    &mut candidates,
                    &mut charges,
                );
                continue;
            }
            // A start that resumed the lanes: as the live task did then.
            Line::Mark(Mark::Start { resumed: true, at }) => {
                marks_seen = true;
                // At the mark's own time, as the live task (whose new core had seen
                // nothing yet) did.
                for (lane, _) in rebuilt.values_mut() {
                    lane.machine.restarted(*at);
                }
                continue;
            }
            Line::Mark(_) => {
                marks_seen = true;
                continue;
            }
            Line::Event(e) => e,
        };
        if let EventKind::PayTerminal { price, paid } = &event.kind {
            match TerminalCharge::new(event.at, *price, *paid) {
                Some(c) => charges.insert(event.lane.clone(), c),
                None => charges.remove(&event.lane),
            };
        }
        // The lane task runs timers at their deadline, before a later event.
        now = now.max(event.at);
        run_timers(
            &mut rebuilt,
            now,
            &mut applied,
            &mut candidates,
            &mut charges,
        );
        let Some((lane, warmup)) = rebuilt.get_mut(&event.lane) else {
            continue;
        };
        lane.events += 1;
        let trusted = lane.trusted;
        let out = lane.machine.handle(event, now);
        keep(out, trusted, &mut applied, &mut candidates, &mut charges);
        if !lane.trusted
            && marks_seen
            && lane.machine.is_idle()
            && now.0 >= since.0.saturating_add(*warmup)
        {
            lane.trusted = true;
        }
    }
    // The previous run ran the timers due before it died.
    if let Some(until) = window.last_life {
        run_timers(
            &mut rebuilt,
            until.max(now),
            &mut applied,
            &mut candidates,
            &mut charges,
        );
    }
    finish(rebuilt, candidates, applied, charges, true)
}

/// Runs every lane's timers due by `until`, earliest first, each at its deadline.
fn run_timers(
    lanes: &mut BTreeMap<String, (LaneResume, i64)>,
    until: Timestamp,
    applied: &mut Applied,
    candidates: &mut Vec<Passage>,
    charges: &mut BTreeMap<String, TerminalCharge>,
) {
    loop {
        let due = lanes
            .iter()
            .filter_map(|(id, (l, _))| l.machine.poll_at().map(|t| (t, id)))
            .filter(|(t, _)| *t <= until)
            .min()
            .map(|(t, id)| (t, id.clone()));
        let Some((t, id)) = due else { return };
        let Some((lane, _)) = lanes.get_mut(&id) else {
            return;
        };
        let trusted = lane.trusted;
        let out = lane.machine.on_timer(t);
        keep(out, trusted, applied, candidates, charges);
    }
}

fn keep(
    out: Vec<Passage>,
    trusted: bool,
    applied: &mut Applied,
    candidates: &mut Vec<Passage>,
    charges: &mut BTreeMap<String, TerminalCharge>,
) {
    for p in out {
        // The previous run spent the charge on this vehicle, applied or not.
        if charges.get(&p.lane).is_some_and(|c| c.at <= p.at) {
            charges.remove(&p.lane);
        }
        if !take_applied(applied, &p) && trusted {
            candidates.push(p);
        }
    }
}

/// An `applied` mark for `p`, as the lane task writes it.
pub fn applied_mark(p: &Passage, at: Timestamp, recovered: bool) -> Mark {
    Mark::Applied {
        lane: p.lane.clone(),
        cleared_at: p.cleared_at,
        at,
        recovered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lanes::{DetectionLayout, Direction};
    use crate::event::{LoopId, PlateRead};
    use crate::lane::testkit::{io_event, lp};
    use crate::plate::PlateColor;

    use crate::config::SiteConfig as SiteConfigForTest;

    fn lanes() -> Vec<LaneConfig> {
        vec![LaneConfig::new(
            "in",
            Direction::Entry,
            "E1",
            DetectionLayout::LoopsGate,
        )]
    }

    fn ev(at: i64, kind: EventKind) -> Line {
        Line::Event(io_event("in", at, kind))
    }

    /// A read vehicle from `t`: read, A, A+B, B, clear.
    fn vehicle(t: i64) -> Vec<Line> {
        vec![
            ev(
                t,
                EventKind::Plate(PlateRead::text("闽A12345", PlateColor::Blue)),
            ),
            ev(t + 300, lp(LoopId::A, true)),
            ev(t + 900, lp(LoopId::B, true)),
            ev(t + 1500, lp(LoopId::A, false)),
            ev(t + 2100, lp(LoopId::B, false)),
        ]
    }

    fn window(lines: Vec<Line>) -> Window {
        let last_life = lines
            .iter()
            .map(|l| match l {
                Line::Event(e) => e.at,
                Line::Mark(m) => m.at(),
            })
            .max();
        Window {
            lines,
            last_life,
            ..Window::default()
        }
    }

    #[test]
    fn a_journal_without_marks_is_not_resumed() {
        // Written by an older bridge: its stop may have settled this vehicle already.
        let mut lines = vehicle(0);
        lines.truncate(3);
        let r = rebuild(&lanes(), &window(lines), Timestamp(0));
        assert!(!r.resumed);
        assert!(r.lanes["in"].machine.is_idle());
        assert!(r.candidates.is_empty());
    }

    #[test]
    fn a_vehicle_under_the_barrier_is_resumed_and_an_unapplied_passage_is_a_candidate() {
        let mut lines = vec![Line::Mark(Mark::Start {
            at: Timestamp(-1),
            resumed: false,
        })];
        lines.extend(vehicle(0));
        let applied = Mark::Applied {
            lane: "in".into(),
            cleared_at: Timestamp(2100),
            at: Timestamp(2101),
            recovered: false,
        };
        lines.push(Line::Mark(applied));
        lines.extend(vehicle(10_000)); // cleared, not applied: the run died
        lines.extend(vehicle(20_000).into_iter().take(3)); // under the barrier
        let r = rebuild(&lanes(), &window(lines), Timestamp(-60_000));
        assert!(r.resumed);
        assert_eq!(r.lanes["in"].machine.state_name(), "under_barrier");
        let cleared: Vec<i64> = r.candidates.iter().map(|p| p.cleared_at.0).collect();
        assert_eq!(cleared, vec![12_100]);
        assert!(r.applied.is_empty(), "the applied mark was matched");
    }

    /// A resumed start is a device gap for a lane holding a read vehicle, in the
    /// rebuild as in the live task: the gate down at the resync with A still occupied
    /// means that vehicle passed, inferred, so the next start does not resume it.
    #[test]
    fn a_resumed_start_is_a_gap_in_the_rebuild_too() {
        let mut lines = vec![Line::Mark(Mark::Start {
            at: Timestamp(-1),
            resumed: false,
        })];
        lines.extend(vehicle(0).into_iter().take(2)); // read, on A
        lines.push(Line::Mark(Mark::Start {
            at: Timestamp(5_000),
            resumed: true,
        }));
        let before = rebuild(&lanes(), &window(lines.clone()), Timestamp(-60_000));
        assert_eq!(before.lanes["in"].machine.state_name(), "approaching");
        lines.extend([
            ev(5_500, EventKind::Link { up: true }),
            ev(5_550, lp(LoopId::A, true)),
            ev(
                5_550,
                EventKind::Gate {
                    position: crate::event::GatePosition::Closed,
                },
            ),
        ]);
        let r = rebuild(&lanes(), &window(lines), Timestamp(-60_000));
        let inferred: Vec<_> = r.candidates.iter().filter(|p| p.inferred).collect();
        assert_eq!(inferred.len(), 1, "{:?}", r.candidates);
        assert_eq!(
            inferred[0].plate.as_ref().map(|p| p.text.as_str()),
            Some("闽A12345")
        );
        // The vehicle on A now is the next one, without a read.
        assert_eq!(r.lanes["in"].machine.state_name(), "approaching");
    }

    #[test]
    fn passages_after_the_wall_clock_stepped_back_match_their_applied_marks() {
        // The live core handles events at the latest time seen, so after the clock
        // stepped back five minutes every passage is cleared at that time; its marks say
        // so. The rebuild must follow the same clock and find them all applied.
        let head = crate::config::test_site_head("");
        let mut site = SiteConfigForTest::from_toml(&head, std::path::Path::new("s.toml")).unwrap();
        site.lanes = lanes();
        let mut core = crate::lane::core::LaneCore::new(&site);
        let mut lines = vec![Line::Mark(Mark::Start {
            at: Timestamp(-1),
            resumed: false,
        })];
        let mut events = vehicle(400_000);
        for t in [100_000, 103_000, 106_000] {
            events.extend(vehicle(t)); // stamped after the step back
        }
        for line in events {
            lines.push(line.clone());
            let Line::Event(e) = line else { continue };
            for step in core.handle(&e) {
                if let crate::lane::core::Step::Passage { passage, .. } = step {
                    lines.push(Line::Mark(applied_mark(&passage, core.now(), false)));
                }
            }
        }
        let applied = lines
            .iter()
            .filter(|l| matches!(l, Line::Mark(Mark::Applied { .. })))
            .count();
        // Four vehicles passed; the last may still be held by its timer.
        assert!(applied >= 3, "{applied} applied");
        let r = rebuild(&lanes(), &window(lines), Timestamp(-60_000));
        assert!(r.candidates.is_empty(), "applied again: {:?}", r.candidates);
    }

    #[test]
    fn a_window_cut_in_the_middle_of_a_vehicle_makes_no_candidate_before_an_idle_moment() {
        // The window starts after the vehicle's A and B: the replay sees only it leave,
        // and a later passage before the lane's warm-up is over.
        let mut lines = vec![Line::Mark(Mark::Alive { at: Timestamp(0) })];
        lines.extend(vehicle(0).into_iter().skip(3));
        lines.extend(vehicle(3_000));
        let mut w = window(lines);
        w.cut = true;
        let r = rebuild(&lanes(), &w, Timestamp(0));
        assert!(r.candidates.is_empty(), "{:?}", r.candidates);
        // Past the warm-up, an idle lane is trusted: unmarked passages from there on are
        // candidates.
        let mut lines = vec![Line::Mark(Mark::Alive { at: Timestamp(0) })];
        lines.extend(vehicle(0).into_iter().skip(3));
        lines.extend(vehicle(20_000));
        lines.extend(vehicle(40_000));
        let r = rebuild(&lanes(), &window(lines), Timestamp(0));
        let cleared: Vec<i64> = r.candidates.iter().map(|p| p.cleared_at.0).collect();
        assert_eq!(cleared, vec![22_100, 42_100]);
    }
}
