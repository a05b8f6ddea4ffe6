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
//! windows) into the window, or at a `start` mark of a run that began with every lane
//! idle (the whole window is trusted when it holds the whole journal and begins with
//! such a mark). A journal without marks (written before this version) never makes
//! candidates.

use super::journal::{Line, Mark, Window};
use super::machine::{LaneMachine, Passage};
use crate::config::LaneConfig;
use crate::event::{EventKind, RawEvent};
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
    /// The previous run's last sign of life and whether it stopped cleanly.
    pub last_life: Option<Timestamp>,
    pub clean_stop: bool,
    /// Journal lines that could not be read.
    pub bad_lines: usize,
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
    let whole = !window.cut
        && matches!(
            window.lines.first(),
            Some(Line::Mark(Mark::Start { idle: true, .. }))
        );
    let mut rebuilt: BTreeMap<String, (LaneResume, i64)> = lanes
        .iter()
        .map(|cfg| {
            (
                cfg.id.clone(),
                (
                    LaneResume {
                        machine: LaneMachine::new(cfg),
                        trusted: whole,
                        events: 0,
                    },
                    warmup_ms(cfg),
                ),
            )
        })
        .collect();
    let mut candidates = Vec::new();
    let mut charges = BTreeMap::new();
    let mut marks_seen = whole;
    for line in &window.lines {
        let event = match line {
            // A start with every lane idle: a replayed lane idle here too is in step.
            Line::Mark(Mark::Start { idle: true, .. }) => {
                marks_seen = true;
                for (lane, _) in rebuilt.values_mut() {
                    lane.trusted |= lane.machine.is_idle();
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
        run_timers(
            &mut rebuilt,
            event.at,
            &mut applied,
            &mut candidates,
            &mut charges,
        );
        let Some((lane, warmup)) = rebuilt.get_mut(&event.lane) else {
            continue;
        };
        lane.events += 1;
        let trusted = lane.trusted;
        let out = lane.machine.handle(event, event.at);
        keep(out, trusted, &mut applied, &mut candidates, &mut charges);
        if !lane.trusted
            && marks_seen
            && lane.machine.is_idle()
            && event.at.0 >= since.0.saturating_add(*warmup)
        {
            lane.trusted = true;
        }
    }
    // The previous run ran the timers due before it died.
    if let Some(until) = window.last_life {
        run_timers(
            &mut rebuilt,
            until,
            &mut applied,
            &mut candidates,
            &mut charges,
        );
    }
    Resumed {
        lanes: rebuilt.into_iter().map(|(id, (l, _))| (id, l)).collect(),
        candidates,
        applied,
        charges,
        last_life: window.last_life,
        clean_stop: window.clean_stop,
        bad_lines: window.bad_lines,
    }
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

/// A raw event as journalled by a lane task, for building windows in tests and
/// benchmarks.
pub fn event_line(e: &RawEvent) -> Line {
    Line::Event(e.clone())
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
