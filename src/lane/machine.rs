//! The pure per-lane state machine: raw events in, [`Passage`]s out. No I/O; time is
//! passed in. One [`State`] enum, one commented `match (state, input)` in
//! [`LaneMachine::step`], every change through [`LaneMachine::set_state`], which traces.
//!
//! Loops: A is the arming loop in front of the barrier, B the safety loop behind it, in
//! the lane's direction of travel. A vehicle passes as A → A+B → B → (none): it has
//! *cleared the barrier* when it leaves B after having left A. The cases, and what each
//! detection layout can tell apart, are documented in `docs/lane-logic.md`.

use crate::config::lanes::{DetectionLayout, Direction, LaneConfig, TimeSource};
use crate::event::{EventKind, GatePosition, LoopId, PlateRead, RawEvent};
use crate::plate::PlateColor;
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What kind of passage it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassageCase {
    /// A vehicle with its plate read before it cleared.
    Normal,
    /// The second (or later) vehicle through one gate opening, with a plate read.
    Tailgate,
    /// The read arrived after the vehicle cleared, within the late-plate window.
    LatePlateAttached,
    /// No usable read: the camera said "no plate", or none came in time.
    Unrecognised,
}

/// The plate of a passage, as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassagePlate {
    pub text: String,
    /// The camera's colour (may be `pnc_01`; the planner fills it from the format).
    pub color: PlateColor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    pub read_at: Timestamp,
}

/// One vehicle through one lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    pub lane: String,
    pub direction: Direction,
    /// The reported time: clearing time or plate-read time, per the lane's `time_source`.
    pub at: Timestamp,
    /// When the vehicle cleared the barrier (or was read, on camera-only lanes).
    pub cleared_at: Timestamp,
    pub plate: Option<PassagePlate>,
    pub case: PassageCase,
    /// It followed another vehicle through the same gate opening.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tailgate: bool,
    /// Snapshot image bytes of the read used (never serialised).
    #[serde(skip)]
    pub snapshot: Option<Arc<Vec<u8>>>,
    /// Size of the snapshot; set when the read carried an image (also in journals, where
    /// the bytes are absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_len: Option<usize>,
    /// Made from a recognition the camera stored while it could not reach the bridge
    /// and pushed later (camera-only lanes): `at` is the camera's time of it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// A plate read as the lane keeps it. `text == None` is the camera's "no plate".
#[derive(Debug, Clone, PartialEq)]
struct Read {
    text: Option<String>,
    color: PlateColor,
    confidence: Option<u8>,
    quick: bool,
    at: Timestamp,
    image: Option<Arc<Vec<u8>>>,
    image_len: Option<usize>,
}

impl Read {
    fn from_event(p: &PlateRead, at: Timestamp) -> Read {
        let text = p.text.as_deref().and_then(super::plate_format::normalise);
        Read {
            text,
            color: p.color,
            confidence: p.confidence,
            quick: p.quick,
            at,
            image: p.image.clone(),
            image_len: p.image_len.or_else(|| p.image.as_ref().map(|i| i.len())),
        }
    }
}

/// A vehicle the lane is following.
#[derive(Debug, Clone, PartialEq)]
struct Vehicle {
    read: Option<Read>,
    /// It entered the lane behind another vehicle in the same gate opening.
    follower: bool,
}

impl Vehicle {
    /// Has a read with text (a "no plate" read still lets a real one replace it).
    fn has_plate(&self) -> bool {
        self.read.as_ref().is_some_and(|r| r.text.is_some())
    }
    fn plate_text(&self) -> Option<&str> {
        self.read.as_ref().and_then(|r| r.text.as_deref())
    }
    fn quick(&self) -> bool {
        self.read.as_ref().is_some_and(|r| r.quick)
    }
}

/// Where the lane is.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Nothing in the lane.
    Idle,
    /// A vehicle on loop A only, not yet at the barrier.
    Approaching(Vehicle),
    /// A vehicle on A and B: under the barrier.
    UnderBarrier(Vehicle),
    /// The leader is on B alone (past A: it has passed the barrier line); a follower may
    /// be on A.
    Leaving {
        leader: Vehicle,
        follower: Option<Vehicle>,
    },
    /// B became occupied with no vehicle coming from A (wrong-way traffic, a pedestrian,
    /// a stale loop after reset): ignored until both loops are free.
    WrongWay,
    /// Gate-only lanes: the gate is open for a vehicle.
    GateOpen(Vehicle),
    /// Camera-only lanes: a quick result waiting for its full result.
    QuickRead(Read),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Approaching(_) => "approaching",
            State::UnderBarrier(_) => "under_barrier",
            State::Leaving { .. } => "leaving",
            State::WrongWay => "wrong_way",
            State::GateOpen(_) => "gate_open",
            State::QuickRead(_) => "quick_read",
        }
    }
}

/// An input to the machine, after de-duplication of repeated loop states.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    LoopA(bool),
    LoopB(bool),
    Gate(GatePosition),
    Plate(Read),
    /// The quick-read deadline passed.
    QuickTimeout,
}

/// A cleared vehicle without a plate, waiting for a late read.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    vehicle: Vehicle,
    cleared_at: Timestamp,
    deadline: Timestamp,
}

/// The lane machine of one lane.
#[derive(Debug, Clone)]
pub struct LaneMachine {
    lane: String,
    direction: Direction,
    layout: DetectionLayout,
    time_source: TimeSource,
    plate_window_ms: i64,
    tailgate_window_ms: i64,
    double_read_window_ms: i64,
    late_plate_window_ms: i64,
    link_down_reset_ms: i64,

    state: State,
    loop_a: bool,
    loop_b: bool,
    /// A read that arrived with no vehicle to take it.
    pending: Option<Read>,
    /// The read of the last passage, for double-read suppression.
    last_passage_read: Option<Read>,
    /// When the last vehicle cleared, and whether the gate closed since.
    last_clear: Option<Timestamp>,
    gate_closed_since_clear: bool,
    held: Option<Held>,
    links_down: BTreeSet<String>,
    /// When the lane's first link went down, until the reset has been done.
    link_reset_due: Option<Timestamp>,
    stale_late_reads: u64,
}

impl LaneMachine {
    pub fn new(cfg: &LaneConfig) -> Self {
        LaneMachine {
            lane: cfg.id.clone(),
            direction: cfg.direction,
            layout: cfg.layout,
            time_source: cfg.time_source,
            plate_window_ms: cfg.plate_window_ms,
            tailgate_window_ms: cfg.tailgate_window_ms,
            double_read_window_ms: cfg.double_read_window_ms,
            late_plate_window_ms: cfg.late_plate_window_ms,
            link_down_reset_ms: cfg.link_down_reset_ms,
            state: State::Idle,
            loop_a: false,
            loop_b: false,
            pending: None,
            last_passage_read: None,
            last_clear: None,
            gate_closed_since_clear: true,
            held: None,
            links_down: BTreeSet::new(),
            link_reset_due: None,
            stale_late_reads: 0,
        }
    }

    pub fn lane(&self) -> &str {
        &self.lane
    }

    /// True when no vehicle is being followed and nothing waits for a timer.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && self.held.is_none()
    }

    /// Feeds one raw event. Due timers are run first, so callers may skip `on_timer`
    /// between events without changing the outcome.
    pub fn handle(&mut self, event: &RawEvent, now: Timestamp) -> Vec<Passage> {
        let mut out = self.on_timer(now);
        let input = match &event.kind {
            EventKind::Link { up } => {
                self.link(&event.device, *up, now);
                return out;
            }
            EventKind::Loop { which, occupied } => {
                let known = match which {
                    LoopId::A => &mut self.loop_a,
                    LoopId::B => &mut self.loop_b,
                };
                if *known == *occupied {
                    // A repeat of the known state (driver resync after reconnect).
                    return out;
                }
                *known = *occupied;
                match which {
                    LoopId::A => Input::LoopA(*occupied),
                    LoopId::B => Input::LoopB(*occupied),
                }
            }
            EventKind::Gate { position } => Input::Gate(*position),
            EventKind::Plate(p) if p.late => {
                self.late_read(p, now, &mut out);
                return out;
            }
            EventKind::Plate(p) => Input::Plate(Read::from_event(p, event.at)),
            // Counts and charges are the lane task's, not the passage logic's.
            EventKind::Spaces { .. } | EventKind::PayTerminal { .. } => return out,
        };
        self.step(input, now, &mut out);
        out
    }

    /// Late reads older than the plate window that loop and gate lanes set aside
    /// (journalled with the event, counted here), since start.
    pub fn stale_late_reads(&self) -> u64 {
        self.stale_late_reads
    }

    /// A recognition the camera stored while it could not reach the bridge, pushed
    /// now (`late`, made at its `device_time`). It never goes to the vehicle in the
    /// lane now. Camera-only lanes: it is a passage at its own time (the cameras push
    /// their backlog in order, so the passages are reported in order). Lanes with
    /// loops or a gate: inside the plate window it is an ordinary read; older, the
    /// vehicle it belonged to has been reported unrecognised already, and it is set
    /// aside: journalled (with the event) and counted.
    fn late_read(&mut self, p: &PlateRead, now: Timestamp, out: &mut Vec<Passage>) {
        let made = p.device_time.unwrap_or(now);
        if self.layout == DetectionLayout::CameraOnly {
            let r = Read::from_event(p, made);
            if self.is_repeat_of_last_passage(&r, true) || (r.quick && r.text.is_none()) {
                return;
            }
            let before = out.len();
            self.emit_read_passage(r, out);
            for passage in &mut out[before..] {
                passage.late = true;
            }
        } else if now.0 - made.0 <= self.plate_window_ms {
            self.step(Input::Plate(Read::from_event(p, now)), now, out);
        } else {
            self.stale_late_reads += 1;
            tracing::info!(
                lane = %self.lane,
                plate = %p.text.as_deref().map(crate::plate::mask).unwrap_or_default(),
                made = made.0,
                age_ms = now.0 - made.0,
                "late camera read older than the plate window set aside"
            );
        }
    }

    /// The next moment `on_timer` has something to do.
    pub fn poll_at(&self) -> Option<Timestamp> {
        let quick = match &self.state {
            State::QuickRead(r) => Some(r.at.plus_millis(self.double_read_window_ms)),
            _ => None,
        };
        [
            self.held.as_ref().map(|h| h.deadline),
            quick,
            self.link_reset_due
                .map(|t| t.plus_millis(self.link_down_reset_ms)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now`.
    pub fn on_timer(&mut self, now: Timestamp) -> Vec<Passage> {
        let mut out = Vec::new();
        if self.held.as_ref().is_some_and(|h| h.deadline <= now) {
            self.flush_held(&mut out);
        }
        if let State::QuickRead(r) = &self.state {
            if r.at.plus_millis(self.double_read_window_ms) <= now {
                self.step(Input::QuickTimeout, now, &mut out);
            }
        }
        if let Some(since) = self.link_reset_due {
            if since.plus_millis(self.link_down_reset_ms) <= now {
                self.link_reset_due = None;
                // Half-seen vehicles are dropped: their loops and reads can no longer be
                // trusted. A vehicle that already cleared (held) is complete and stays.
                self.pending = None;
                self.loop_a = false;
                self.loop_b = false;
                if self.state != State::Idle {
                    tracing::warn!(lane = %self.lane, state = self.state.name(), "link down: lane reset, half-seen vehicle dropped");
                }
                self.set_state(State::Idle, now, "link_down_reset");
            }
        }
        out
    }

    fn link(&mut self, device: &str, up: bool, now: Timestamp) {
        if up {
            self.links_down.remove(device);
            if self.links_down.is_empty() {
                // Back before the reset: a short glitch, the lane carries on.
                self.link_reset_due = None;
            }
        } else {
            if self.links_down.is_empty() {
                self.link_reset_due = Some(now);
            }
            self.links_down.insert(device.to_string());
        }
    }

    /// The one transition function.
    fn step(&mut self, input: Input, now: Timestamp, out: &mut Vec<Passage>) {
        // Inputs a layout does not have are ignored (a stray wire must not invent cars).
        let has_loops = matches!(
            self.layout,
            DetectionLayout::LoopsGate | DetectionLayout::LoopsOnly
        );
        let has_gate = self.layout != DetectionLayout::CameraOnly;
        match input {
            Input::LoopA(_) | Input::LoopB(_) if !has_loops => return,
            Input::Gate(_) if !has_gate => return,
            _ => {}
        }
        if let Input::Gate(GatePosition::Closed) = input {
            self.gate_closed_since_clear = true;
        }
        let state = std::mem::replace(&mut self.state, State::Idle);
        let next = match (state, input) {
            // --- plate reads: shared by every layout ---
            // A second read of the plate just reported (or the full result of a quick read
            // already reported): the same vehicle, dropped.
            (state, Input::Plate(r))
                if self.is_repeat_of_last_passage(&r, matches!(state, State::Idle)) =>
            {
                state
            }
            // Camera-only: a quick "no plate" carries nothing (its full result follows).
            (state, Input::Plate(r))
                if self.layout == DetectionLayout::CameraOnly && r.quick && r.text.is_none() =>
            {
                state
            }
            // Camera-only: a full read is a vehicle; a quick one waits for its full result.
            (State::Idle, Input::Plate(r)) if self.layout == DetectionLayout::CameraOnly => {
                if r.quick && r.text.is_some() {
                    State::QuickRead(r)
                } else {
                    self.emit_read_passage(r, out);
                    State::Idle
                }
            }
            (State::QuickRead(q), Input::Plate(r)) => {
                if r.quick {
                    // Another quick result: the first vehicle is done, this one waits.
                    self.emit_read_passage(q, out);
                    State::QuickRead(r)
                } else if r.text.is_none() {
                    // A full "no plate" after a quick plate: the quick plate is better.
                    self.emit_read_passage(q, out);
                    State::Idle
                } else {
                    // The full result replaces the quick one (even if its text differs).
                    self.emit_read_passage(r, out);
                    State::Idle
                }
            }
            (State::QuickRead(q), Input::QuickTimeout) => {
                self.emit_read_passage(q, out);
                State::Idle
            }
            // Vehicles in the lane take reads, rearmost first (the camera faces the approach).
            (State::Approaching(mut v), Input::Plate(r)) => {
                self.offer(r, &mut [&mut v], out);
                State::Approaching(v)
            }
            (State::UnderBarrier(mut v), Input::Plate(r)) => {
                self.offer(r, &mut [&mut v], out);
                State::UnderBarrier(v)
            }
            (State::GateOpen(mut v), Input::Plate(r)) => {
                self.offer(r, &mut [&mut v], out);
                State::GateOpen(v)
            }
            (
                State::Leaving {
                    mut leader,
                    follower: Some(mut f),
                },
                Input::Plate(r),
            ) => {
                self.offer(r, &mut [&mut leader, &mut f], out);
                State::Leaving {
                    leader,
                    follower: Some(f),
                }
            }
            (
                State::Leaving {
                    mut leader,
                    follower: None,
                },
                Input::Plate(r),
            ) => {
                self.offer(r, &mut [&mut leader], out);
                State::Leaving {
                    leader,
                    follower: None,
                }
            }
            (state, Input::Plate(r)) => {
                self.offer(r, &mut [], out);
                state
            }

            // --- loops (loops_gate, loops_only) ---
            // A vehicle arrives on the arming loop.
            (State::Idle, Input::LoopA(true)) => State::Approaching(self.arrive(now, false)),
            // It turned away before the barrier (A released without B): nothing to report.
            (State::Approaching(_), Input::LoopA(false)) => {
                tracing::debug!(lane = %self.lane, "turn-away: loop A released without B");
                State::Idle
            }
            // It reached the barrier.
            (State::Approaching(v), Input::LoopB(true)) => State::UnderBarrier(v),
            // It backed off B while still on A: reversing, no passage.
            (State::UnderBarrier(v), Input::LoopB(false)) => {
                tracing::debug!(lane = %self.lane, "reversed off loop B");
                State::Approaching(v)
            }
            // It left A: past the barrier line.
            (State::UnderBarrier(v), Input::LoopA(false)) => State::Leaving {
                leader: v,
                follower: None,
            },
            // Another vehicle arrives on A while the leader is still on B: a tailgater.
            (
                State::Leaving {
                    leader,
                    follower: None,
                },
                Input::LoopA(true),
            ) => State::Leaving {
                leader,
                follower: Some(self.arrive(now, true)),
            },
            // The follower left A while the leader is still on B: it turned away, or it
            // closed up onto B, where two vehicles look like one. Counted as one.
            (
                State::Leaving {
                    leader,
                    follower: Some(_),
                },
                Input::LoopA(false),
            ) => State::Leaving {
                leader,
                follower: None,
            },
            // The leader cleared the barrier: a passage. A follower moves up.
            (State::Leaving { leader, follower }, Input::LoopB(false)) => {
                self.clear(leader, now, out);
                match follower {
                    Some(f) => State::Approaching(f),
                    None => State::Idle,
                }
            }
            // B without a vehicle from A: not ours to count.
            (State::Idle, Input::LoopB(true)) => State::WrongWay,
            (State::WrongWay, Input::LoopA(_) | Input::LoopB(_))
                if !self.loop_a && !self.loop_b =>
            {
                State::Idle
            }

            // --- gate (gate_only) ---
            // The gate opened: one vehicle is going through.
            (State::Idle, Input::Gate(GatePosition::Open))
                if self.layout == DetectionLayout::GateOnly =>
            {
                State::GateOpen(self.arrive(now, false))
            }
            // The gate leaves Open: the vehicle has cleared.
            (State::GateOpen(v), Input::Gate(GatePosition::Closed | GatePosition::Moving)) => {
                self.clear(v, now, out);
                State::Idle
            }

            // Everything else changes nothing: repeated gate positions, gate moves on
            // loop lanes, loop changes that don't fit the state (after a reset).
            (state, _) => state,
        };
        self.set_state(next, now, "event");
    }

    fn set_state(&mut self, next: State, now: Timestamp, why: &'static str) {
        if std::mem::discriminant(&self.state) != std::mem::discriminant(&next) {
            tracing::trace!(lane = %self.lane, from = self.state.name(), to = next.name(), at = now.0, why, "lane state");
        }
        self.state = next;
    }

    /// A new vehicle enters the lane; it takes a fresh pending read.
    fn arrive(&mut self, now: Timestamp, in_lane_follower: bool) -> Vehicle {
        // One gate opening: the previous vehicle cleared moments ago and (where the gate is
        // known) the gate has not closed since. Gate-only lanes see one vehicle per cycle.
        let same_opening = match self.layout {
            DetectionLayout::GateOnly | DetectionLayout::CameraOnly => false,
            DetectionLayout::LoopsGate => {
                !self.gate_closed_since_clear && self.within_tailgate(now)
            }
            DetectionLayout::LoopsOnly => self.within_tailgate(now),
        };
        let read = self
            .pending
            .take()
            .filter(|r| now.0 - r.at.0 <= self.plate_window_ms);
        Vehicle {
            read,
            follower: in_lane_follower || same_opening,
        }
    }

    fn within_tailgate(&self, now: Timestamp) -> bool {
        self.last_clear
            .is_some_and(|t| now.0 - t.0 <= self.tailgate_window_ms)
    }

    /// A read that only repeats the last passage's: the same text within the
    /// double-read window, or — with the lane empty — the full result of the quick read
    /// that passage was reported with (it cannot be amended; it must not stick to the
    /// next vehicle either).
    fn is_repeat_of_last_passage(&self, r: &Read, lane_empty: bool) -> bool {
        let Some(last) = &self.last_passage_read else {
            return false;
        };
        if r.at.0 - last.at.0 > self.double_read_window_ms || r.text.is_none() {
            return false;
        }
        r.text == last.text || (lane_empty && last.quick && !r.quick)
    }

    /// Gives a read to the vehicle it belongs to, or keeps it pending.
    fn offer(&mut self, r: Read, vehicles: &mut [&mut Vehicle], out: &mut Vec<Passage>) {
        // The same text as a vehicle's read: a double read (a full result upgrades a quick one).
        if let Some(v) = vehicles
            .iter_mut()
            .find(|v| r.text.is_some() && v.plate_text() == r.text.as_deref())
        {
            if v.quick() && !r.quick {
                v.read = Some(r);
            }
            return;
        }
        // A full result with different text replaces a quick one.
        if !r.quick && r.text.is_some() {
            if let Some(v) = vehicles.iter_mut().rev().find(|v| v.quick()) {
                v.read = Some(r);
                return;
            }
        }
        // The rearmost vehicle without a plate takes it.
        if let Some(v) = vehicles.iter_mut().rev().find(|v| !v.has_plate()) {
            if r.text.is_some() || v.read.is_none() {
                v.read = Some(r);
            }
            return;
        }
        // No vehicle wants it: a late read for a vehicle that cleared without one…
        if r.text.is_some() {
            if let Some(held) = self.held.take() {
                let mut vehicle = held.vehicle;
                vehicle.read = Some(r);
                self.emit(
                    vehicle,
                    held.cleared_at,
                    PassageCase::LatePlateAttached,
                    out,
                );
                return;
            }
        }
        // …or the next vehicle's read, arrived early.
        self.pending = Some(r);
    }

    /// A vehicle cleared the barrier.
    fn clear(&mut self, v: Vehicle, now: Timestamp, out: &mut Vec<Passage>) {
        self.last_clear = Some(now);
        self.gate_closed_since_clear = false;
        match &v.read {
            Some(r) if r.text.is_some() => {
                let case = if v.follower {
                    PassageCase::Tailgate
                } else {
                    PassageCase::Normal
                };
                self.emit(v, now, case, out);
            }
            // The camera said "no plate": nothing better will come.
            Some(_) => self.emit(v, now, PassageCase::Unrecognised, out),
            None => {
                // One vehicle waits at a time; an older one is reported as it is.
                self.flush_held(out);
                self.held = Some(Held {
                    vehicle: v,
                    cleared_at: now,
                    deadline: now.plus_millis(self.late_plate_window_ms),
                });
            }
        }
    }

    fn flush_held(&mut self, out: &mut Vec<Passage>) {
        if let Some(h) = self.held.take() {
            self.emit(h.vehicle, h.cleared_at, PassageCase::Unrecognised, out);
        }
    }

    /// Camera-only lanes: the read is the vehicle.
    fn emit_read_passage(&mut self, r: Read, out: &mut Vec<Passage>) {
        let at = r.at;
        let case = if r.text.is_some() {
            PassageCase::Normal
        } else {
            PassageCase::Unrecognised
        };
        self.emit(
            Vehicle {
                read: Some(r),
                follower: false,
            },
            at,
            case,
            out,
        );
    }

    fn emit(
        &mut self,
        v: Vehicle,
        cleared_at: Timestamp,
        case: PassageCase,
        out: &mut Vec<Passage>,
    ) {
        let read = v
            .read
            .filter(|r| r.text.is_some() || case == PassageCase::Unrecognised);
        let plate = read.as_ref().and_then(|r| {
            r.text.as_ref().map(|t| PassagePlate {
                text: t.clone(),
                color: r.color,
                confidence: r.confidence,
                read_at: r.at,
            })
        });
        let at = match (self.time_source, &plate) {
            (TimeSource::PlateRead, Some(p)) => p.read_at,
            _ => cleared_at,
        };
        let passage = Passage {
            lane: self.lane.clone(),
            direction: self.direction,
            at,
            cleared_at,
            case: if plate.is_none() {
                PassageCase::Unrecognised
            } else {
                case
            },
            plate,
            tailgate: v.follower,
            snapshot: read.as_ref().and_then(|r| r.image.clone()),
            snapshot_len: read.as_ref().and_then(|r| r.image_len),
            late: false,
        };
        tracing::debug!(
            lane = %self.lane,
            case = ?passage.case,
            plate = %passage.plate.as_ref().map(|p| crate::plate::mask(&p.text)).unwrap_or_default(),
            at = passage.at.0,
            "passage"
        );
        if let Some(r) = read.filter(|r| r.text.is_some()) {
            self.last_passage_read = Some(r);
        }
        out.push(passage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(layout: DetectionLayout) -> LaneMachine {
        LaneMachine::new(&LaneConfig::new("l", Direction::Entry, "P", layout))
    }

    fn ev(at: i64, kind: EventKind) -> RawEvent {
        RawEvent {
            lane: "l".into(),
            device: "io".into(),
            at: Timestamp(at),
            kind,
        }
    }

    fn lp(which: LoopId, occupied: bool) -> EventKind {
        EventKind::Loop { which, occupied }
    }

    fn feed(m: &mut LaneMachine, events: &[(i64, EventKind)]) -> Vec<Passage> {
        events
            .iter()
            .flat_map(|(at, k)| m.handle(&ev(*at, k.clone()), Timestamp(*at)))
            .collect()
    }

    fn pass_without_read(t: i64) -> Vec<(i64, EventKind)> {
        vec![
            (t, lp(LoopId::A, true)),
            (t + 1000, lp(LoopId::B, true)),
            (t + 2000, lp(LoopId::A, false)),
            (t + 3000, lp(LoopId::B, false)),
        ]
    }

    fn late(text: &str, made: i64) -> EventKind {
        let mut r = PlateRead::text(text, PlateColor::Blue);
        r.late = true;
        r.device_time = Some(Timestamp(made));
        EventKind::Plate(r)
    }

    #[test]
    fn late_reads_on_a_camera_only_lane_are_passages_at_their_own_times_in_order() {
        let mut m = lane(DetectionLayout::CameraOnly);
        let now = 10_000_000;
        // A live quick read waits for its full result; the backlog does not disturb it.
        let mut quick = PlateRead::text("闽A00001", PlateColor::Blue);
        quick.quick = true;
        assert!(feed(&mut m, &[(now, EventKind::Plate(quick))]).is_empty());
        let backlog: Vec<_> = (0..5)
            .map(|i| {
                (
                    now + i,
                    late(&format!("闽B0000{i}"), now - 3_600_000 + i * 60_000),
                )
            })
            .collect();
        let out = feed(&mut m, &backlog);
        assert_eq!(out.len(), 5);
        for (i, p) in out.iter().enumerate() {
            assert!(p.late);
            assert_eq!(p.at, Timestamp(now - 3_600_000 + i as i64 * 60_000));
            assert_eq!(p.plate.as_ref().unwrap().text, format!("闽B0000{i}"));
        }
        let out = m.on_timer(Timestamp(now + 5_000));
        assert_eq!(out.len(), 1, "the live quick read is reported by its timer");
        assert!(!out[0].late);
        assert_eq!(m.stale_late_reads(), 0);
    }

    #[test]
    fn an_old_late_read_never_goes_to_the_vehicle_in_a_loop_lane() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let t = 1_000_000;
        feed(&mut m, &[(t, lp(LoopId::A, true))]);
        // A stored read from an hour ago arrives while a car stands on loop A.
        assert!(feed(&mut m, &[(t + 500, late("闽C12345", t - 3_600_000))]).is_empty());
        assert_eq!(m.stale_late_reads(), 1);
        let out = feed(
            &mut m,
            &[
                (t + 1000, lp(LoopId::B, true)),
                (t + 2000, lp(LoopId::A, false)),
                (t + 3000, lp(LoopId::B, false)),
            ],
        );
        let out: Vec<_> = out
            .into_iter()
            .chain(m.on_timer(Timestamp(t + 10_000)))
            .collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].case, PassageCase::Unrecognised);
        // A late read inside the plate window is an ordinary read.
        feed(&mut m, &[(t + 20_000, lp(LoopId::A, true))]);
        feed(&mut m, &[(t + 20_500, late("闽D12345", t + 15_000))]);
        let out = feed(&mut m, &pass_without_read(t + 21_000)[1..]);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽D12345");
        assert_eq!(m.stale_late_reads(), 1);
    }

    #[test]
    fn idle_lane_has_no_timer_and_an_unread_vehicle_waits_for_the_late_plate_window() {
        let mut m = lane(DetectionLayout::LoopsGate);
        assert_eq!(m.poll_at(), None);
        assert!(feed(&mut m, &pass_without_read(0)).is_empty());
        assert_eq!(m.poll_at(), Some(Timestamp(3000 + 3000)));
        assert!(m.on_timer(Timestamp(5999)).is_empty());
        let out = m.on_timer(Timestamp(6000));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].case, out[0].at),
            (PassageCase::Unrecognised, Timestamp(3000))
        );
        assert!(m.is_idle());
        assert_eq!(m.poll_at(), None);
    }

    #[test]
    fn an_event_after_a_deadline_first_runs_the_due_timer() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(&mut m, &pass_without_read(0));
        // A read 10 s later is too late: the held vehicle is reported unrecognised first.
        let out = m.handle(
            &ev(
                13_000,
                EventKind::Plate(PlateRead::text("闽A1", PlateColor::Blue)),
            ),
            Timestamp(13_000),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].case, PassageCase::Unrecognised);
    }

    #[test]
    fn link_back_before_the_timeout_cancels_the_reset() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(
            &mut m,
            &[
                (0, lp(LoopId::A, true)),
                (500, lp(LoopId::B, true)),
                (600, EventKind::Link { up: false }),
            ],
        );
        assert_eq!(m.poll_at(), Some(Timestamp(10_600)));
        feed(&mut m, &[(2000, EventKind::Link { up: true })]);
        assert_eq!(m.poll_at(), None);
        feed(
            &mut m,
            &[(3000, lp(LoopId::A, false)), (4000, lp(LoopId::B, false))],
        );
        assert_eq!(
            m.on_timer(Timestamp(7000)).len(),
            1,
            "the vehicle was still followed"
        );
    }

    #[test]
    fn link_down_past_the_timeout_drops_the_half_seen_vehicle_but_not_a_cleared_one() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(&mut m, &pass_without_read(0));
        feed(
            &mut m,
            &[
                (3500, lp(LoopId::A, true)),
                (3600, EventKind::Link { up: false }),
            ],
        );
        let out = m.on_timer(Timestamp(13_600));
        assert_eq!(out.len(), 1, "the cleared vehicle is complete and reported");
        assert!(m.is_idle());
        // Loops were assumed free: the stale release is ignored, nothing half-made appears.
        assert!(feed(&mut m, &[(20_000, lp(LoopId::A, false))]).is_empty());
    }

    #[test]
    fn repeated_loop_states_are_ignored() {
        let mut m = lane(DetectionLayout::LoopsOnly);
        let mut events = pass_without_read(0);
        events.insert(1, (100, lp(LoopId::A, true)));
        events.push((3100, lp(LoopId::B, false)));
        feed(&mut m, &events);
        assert_eq!(m.on_timer(Timestamp(10_000)).len(), 1);
    }

    #[test]
    fn camera_only_quick_read_waits_for_the_full_result() {
        let mut m = lane(DetectionLayout::CameraOnly);
        let mut quick = PlateRead::text("闽A1234S", PlateColor::Blue);
        quick.quick = true;
        assert!(feed(&mut m, &[(0, EventKind::Plate(quick))]).is_empty());
        assert_eq!(m.poll_at(), Some(Timestamp(5000)));
        let out = feed(
            &mut m,
            &[(
                400,
                EventKind::Plate(PlateRead::text("闽A12345", PlateColor::Blue)),
            )],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].plate.as_ref().map(|p| p.text.as_str()),
            Some("闽A12345")
        );
        assert_eq!(out[0].at, Timestamp(400));
    }
}
