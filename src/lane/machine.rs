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

crate::metrics::statics! {
    /// Device gaps with a vehicle in the lane, by outcome (what [`LaneMachine::blind_counts`]
    /// counts, for `/metrics`).
    BLIND_MOMENTS: prometheus::IntCounterVec = ("parking_bridge_lane_blind_moments_total", "Vehicles in a lane while one of its devices was silent, by outcome (inferred, undecided, reset)", ["lane", "outcome"]);
}

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
    /// Part of the passage happened while a device of the lane was silent: the lane
    /// inferred it from the inputs before and after the gap (see `docs/lane-logic.md`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
    /// A drawbar trailer (`…挂` plate) right behind its tractor in the same gate
    /// opening; the lot rule `trailers` decides whether it gets a stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trailer: bool,
    /// The plate of the tractor a trailer followed, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tractor: Option<String>,
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

impl Passage {
    /// A plain passage for tests: through lane `l` at `at`, with `plate` (colour
    /// unknown) read then, or unrecognised.
    #[cfg(test)]
    pub(crate) fn sample(direction: Direction, plate: Option<&str>, at: Timestamp) -> Passage {
        Passage {
            lane: "l".into(),
            direction,
            at,
            cleared_at: at,
            plate: plate.map(|t| PassagePlate {
                text: t.into(),
                color: PlateColor::Unknown,
                confidence: None,
                read_at: at,
            }),
            case: if plate.is_some() {
                PassageCase::Normal
            } else {
                PassageCase::Unrecognised
            },
            tailgate: false,
            inferred: false,
            trailer: false,
            tractor: None,
            snapshot: None,
            snapshot_len: None,
            late: false,
        }
    }
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
    /// Made while the bridge could not hear the camera ([`PlateRead::late`]).
    late: bool,
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
            late: p.late,
        }
    }
}

/// A vehicle the lane is following.
#[derive(Debug, Clone, PartialEq)]
struct Vehicle {
    read: Option<Read>,
    /// It entered the lane behind another vehicle in the same gate opening.
    follower: bool,
    /// It was in the lane while a device of the lane was silent.
    blind: bool,
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
    /// A vehicle left A without reaching B while the gate was open or opening (or with a
    /// read waiting): a vehicle shorter than the gap between the loops. It is expected on
    /// B until `since + short_vehicle_window`; a follower may arrive on A meanwhile.
    /// `blind`: armed by the inputs that came back after a device gap.
    Armed {
        leader: Vehicle,
        follower: Option<Vehicle>,
        since: Timestamp,
        blind: bool,
    },
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
            State::Armed { .. } => "armed",
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
    /// The short-vehicle window of an armed vehicle passed.
    ArmedTimeout,
}

/// A cleared vehicle without a plate, waiting for a late read.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    vehicle: Vehicle,
    cleared_at: Timestamp,
    deadline: Timestamp,
}

/// How long after a silent device came back its first facts may arrive and still be read
/// as what happened during the gap (the resync of a poll, after the profile's debounce).
/// Only the facts of that first moment are: later ones are seen live.
pub const RECONCILE_MS: i64 = 3_000;

/// What the lane knew when a device went silent, and what it learnt since.
#[derive(Debug, Clone, PartialEq)]
struct Blind {
    /// When every link was back (`None` while one is still down).
    back_at: Option<Timestamp>,
    /// The gate was seen reaching Closed during the gap or in the facts after it.
    gate_went_down: bool,
    /// The moment of the first loop or gate facts after the gap (the driver stamps one
    /// poll's facts with one time): the inputs as they were left by the gap.
    resync_at: Option<Timestamp>,
}

/// Counts of blind moments (device gaps with a vehicle in the lane), per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlindCounts {
    /// A passage was inferred from the evidence around the gap.
    pub inferred: u64,
    /// The evidence could not tell: the vehicle was taken as turned away (today's rule).
    pub undecided: u64,
    /// The gap outlasted `link_down_reset_ms`: the lane was reset.
    pub reset: u64,
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
    short_vehicle_window_ms: i64,

    state: State,
    /// The gate's last known position (loops + gate lanes; `None` until reported).
    gate: Option<GatePosition>,
    /// The last device gap and its evidence, kept until the next gap.
    blind: Option<Blind>,
    blind_counts: BlindCounts,
    /// The plate of the vehicle that cleared last (`None`: it had none), for trailers.
    last_cleared_plate: Option<String>,
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
    /// Devices that reported loops or the gate: only their silence blinds the lane.
    io_devices: BTreeSet<String>,
    /// When the lane's first link went down, until the reset has been done.
    link_reset_due: Option<Timestamp>,
    /// Since when an I/O device of the lane has been down (`None`: none is).
    io_gap_since: Option<Timestamp>,
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
            short_vehicle_window_ms: cfg.short_vehicle_window(),
            state: State::Idle,
            gate: None,
            blind: None,
            blind_counts: BlindCounts::default(),
            last_cleared_plate: None,
            loop_a: false,
            loop_b: false,
            pending: None,
            last_passage_read: None,
            last_clear: None,
            gate_closed_since_clear: true,
            held: None,
            links_down: BTreeSet::new(),
            io_devices: BTreeSet::new(),
            link_reset_due: None,
            io_gap_since: None,
            stale_late_reads: 0,
        }
    }

    pub fn lane(&self) -> &str {
        &self.lane
    }

    /// The state's name (`idle`, `under_barrier`, …), for logs and restart gaps.
    pub fn state_name(&self) -> &'static str {
        if self.state == State::Idle && self.held.is_some() {
            "held"
        } else {
            self.state.name()
        }
    }

    /// Device gaps with a vehicle in the lane, by outcome (for metrics and the status page).
    pub fn blind_counts(&self) -> BlindCounts {
        self.blind_counts
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
            // A faulty device gives the lane no data, like one that is down; it is
            // tracked under its own key so a link change does not clear the fault.
            // Only Modbus (I/O) devices report faults: it hides loop and gate changes.
            EventKind::Fault { problem } => {
                let key = format!("{} (faulty)", event.device);
                self.note_io_device(&event.device);
                self.note_io_device(&key);
                self.link(&key, problem.is_none(), now);
                return out;
            }
            EventKind::Loop { which, occupied } => {
                self.note_io_device(&event.device);
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
            EventKind::Gate { position } => {
                self.note_io_device(&event.device);
                Input::Gate(*position)
            }
            EventKind::Plate(p) if p.late => {
                self.late_read(p, now, &mut out);
                return out;
            }
            EventKind::Plate(p) => Input::Plate(Read::from_event(p, event.at)),
            // Counts, charges and payments are the lot's ([`super::core`]), not the
            // passage logic's.
            EventKind::Spaces { .. }
            | EventKind::PayTerminal { .. }
            | EventKind::Payment { .. } => {
                return out;
            }
        };
        self.step(input, now, &mut out);
        out
    }

    /// Late reads that loop and gate lanes set aside (journalled with the event,
    /// counted here), since start: older than the plate window, with no vehicle in
    /// the lane to take them, or replaced by a vehicle's live read.
    pub fn stale_late_reads(&self) -> u64 {
        self.stale_late_reads
    }

    /// A recognition the camera stored while it could not reach the bridge, pushed
    /// now (`late`, made at its `device_time`). It never goes to the vehicle in the
    /// lane now. Camera-only lanes: it is a passage at its own time (the cameras push
    /// their backlog in order, so the passages are reported in order). Lanes with
    /// loops or a gate: inside the plate window a vehicle in the lane may take it (a
    /// live read replaces it), but it never waits for the next vehicle; older, the
    /// vehicle it belonged to has been reported unrecognised already. What no vehicle
    /// takes is set aside: journalled (with the event) and counted.
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
        let state_due = match &self.state {
            State::QuickRead(r) => Some(r.at.plus_millis(self.double_read_window_ms)),
            State::Armed { since, .. } => Some(since.plus_millis(self.short_vehicle_window_ms)),
            _ => None,
        };
        [
            self.held.as_ref().map(|h| h.deadline),
            state_due,
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
        if let State::Armed { since, .. } = &self.state {
            if since.plus_millis(self.short_vehicle_window_ms) <= now {
                self.step(Input::ArmedTimeout, now, &mut out);
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
                    self.count_blind("reset");
                    tracing::warn!(lane = %self.lane, state = self.state.name(), "link down: lane reset, half-seen vehicle dropped");
                }
                self.blind = None;
                self.set_state(State::Idle, now, "link_down_reset");
            }
        }
        out
    }

    /// The bridge restarted with this lane resumed from the journal: its I/O devices
    /// went unseen from the previous run's last sign of life until they report again,
    /// as in a device gap. A vehicle followed across the restart is marked partly
    /// unseen, and the devices' first facts are reconciled against what the lane knew
    /// (see `Blind`). Called by the lane task at a resumed start and by the journal
    /// rebuild and `replay` at its `start` mark, so all three agree.
    ///
    /// Only a lane holding a vehicle with a read: an unread vehicle kept by mistake
    /// takes the next vehicle's read and is reported as that one, at its passage; a
    /// read one kept by mistake passes its read on to the next vehicle, and so on.
    pub fn restarted(&mut self, now: Timestamp) {
        // A read waiting for its vehicle at the stop: that vehicle went by in the blind
        // interval (or comes now, unread). A stop also leaves the pushed reads of its
        // last seconds, after the loops were no longer polled. Kept, such a read goes
        // to the next vehicle, and that one's read to the one after (found by the soak).
        if self.pending.take().is_some() {
            tracing::info!(lane = %self.lane, "a read waiting at the restart dropped: its vehicle passed unseen");
        }
        if !self.vehicles_mut().iter().any(|v| v.has_plate()) {
            return;
        }
        let io: Vec<String> = self.io_devices.iter().cloned().collect();
        for device in io {
            self.link(&device, false, now);
        }
    }

    /// A camera going silent hides no loop or gate change; an I/O device (or one not
    /// yet known either way) does.
    fn hides_inputs(&self, device: &str) -> bool {
        self.io_devices.is_empty() || self.io_devices.contains(device)
    }

    fn link(&mut self, device: &str, up: bool, now: Timestamp) {
        if up {
            let was_down = self.links_down.remove(device);
            if was_down && !self.links_down.iter().any(|d| self.hides_inputs(d)) {
                // A read waiting since the gap began was for a vehicle the loops did not
                // see: it passed in the gap. Kept, it would go to the vehicle now on
                // the loops, whose own read would go to the next, and so on (found by
                // the soak: an RS-485 adapter unplugged past the reset).
                if let Some(since) = self.io_gap_since.take() {
                    if self.pending.as_ref().is_some_and(|r| r.at >= since) {
                        self.pending = None;
                        tracing::info!(lane = %self.lane, "a read that came while the lane's I/O was down dropped: its vehicle passed unseen");
                    }
                }
                // Back before the reset: the lane reconciles. The facts that follow are
                // the inputs after the gap; `RECONCILE_MS` reads them against what the
                // lane knew before it (see `Blind`).
                self.link_reset_due = None;
                if let Some(b) = self.blind.as_mut().filter(|b| b.back_at.is_none()) {
                    b.back_at = Some(now);
                }
            }
        } else {
            let hides_inputs = self.hides_inputs(device);
            // Only a device that hides inputs resets the lane: with the camera alone
            // gone, the loops and gate still see every vehicle, which is reported
            // unrecognised, not dropped (found by the soak: a vehicle dropped by a
            // broker cut left its read to the next vehicle).
            if hides_inputs && self.link_reset_due.is_none() {
                self.link_reset_due = Some(now);
            }
            if hides_inputs && self.io_gap_since.is_none() {
                self.io_gap_since = Some(now);
            }
            if hides_inputs && self.blind.as_ref().is_none_or(|b| b.back_at.is_some()) {
                self.blind = Some(Blind {
                    back_at: None,
                    gate_went_down: false,
                    resync_at: None,
                });
                // Every vehicle in the lane now has a stretch nobody saw.
                for v in self.vehicles_mut() {
                    v.blind = true;
                }
            }
            self.links_down.insert(device.to_string());
        }
    }

    fn count_blind(&mut self, outcome: &'static str) {
        match outcome {
            "inferred" => self.blind_counts.inferred += 1,
            "undecided" => self.blind_counts.undecided += 1,
            _ => self.blind_counts.reset += 1,
        }
        BLIND_MOMENTS
            .with_label_values(&[self.lane.as_str(), outcome])
            .inc();
    }

    /// The gate is known open or moving on a loops + gate lane.
    fn gate_is_open(&self) -> bool {
        self.layout == DetectionLayout::LoopsGate
            && matches!(self.gate, Some(GatePosition::Open | GatePosition::Moving))
    }

    /// An armed vehicle that will not reach B (window over, gate down, or the next
    /// vehicle on A). After a device gap the evidence decides: the gate going down or a
    /// read vehicle gone means it passed unseen (inferred); without either, today's rule
    /// (turned away), counted as undecided.
    fn resolve_armed(
        &mut self,
        leader: Vehicle,
        since: Timestamp,
        blind: bool,
        gate_down: bool,
        out: &mut Vec<Passage>,
    ) {
        let gate_down = gate_down || self.blind.as_ref().is_some_and(|b| b.gate_went_down);
        if blind && (gate_down || leader.read.is_some()) {
            self.count_blind("inferred");
            tracing::info!(lane = %self.lane, gate_down, read = leader.read.is_some(), "blind moment: passage inferred");
            self.clear_at(leader, since, true, out);
        } else {
            if blind {
                self.count_blind("undecided");
                tracing::warn!(lane = %self.lane, "blind moment: cannot tell whether the vehicle passed; taken as turned away");
            }
            tracing::debug!(lane = %self.lane, "turn-away: loop A released, B not reached");
        }
    }

    fn note_io_device(&mut self, device: &str) {
        if !self.io_devices.contains(device) {
            self.io_devices.insert(device.to_string());
        }
    }

    /// The vehicles the lane is following.
    fn vehicles_mut(&mut self) -> Vec<&mut Vehicle> {
        match &mut self.state {
            State::Approaching(v) | State::UnderBarrier(v) | State::GateOpen(v) => vec![v],
            State::Leaving { leader, follower }
            | State::Armed {
                leader, follower, ..
            } => {
                let mut all = vec![leader];
                all.extend(follower.as_mut());
                all
            }
            State::Idle | State::WrongWay | State::QuickRead(_) => Vec::new(),
        }
    }

    /// A device was silent and its facts since it came back are still being read as
    /// what happened during the gap.
    fn reconciling(&self, now: Timestamp) -> bool {
        self.blind.as_ref().is_some_and(|b| match b.back_at {
            Some(_) => b.resync_at == Some(now),
            None => true,
        })
    }

    /// Whether a vehicle that left A without reaching B may still be on its way to B
    /// (short vehicle): the gate is open or opening (or unknown), a read waits, lanes
    /// without gate inputs always, and after a device gap whatever the gate said.
    fn may_be_between_loops(&self, v: &Vehicle, now: Timestamp) -> bool {
        match self.layout {
            DetectionLayout::LoopsOnly => true,
            DetectionLayout::LoopsGate => {
                !matches!(self.gate, Some(GatePosition::Closed | GatePosition::Fault))
                    || v.read.is_some()
                    || self.pending.is_some()
                    || (v.blind && self.reconciling(now))
            }
            DetectionLayout::GateOnly | DetectionLayout::CameraOnly => false,
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
        if matches!(input, Input::LoopA(_) | Input::LoopB(_) | Input::Gate(_)) {
            // The first input facts after a gap are its resync.
            if let Some(b) = self.blind.as_mut() {
                if let (Some(back), None) = (b.back_at, b.resync_at) {
                    if now.0 - back.0 <= RECONCILE_MS {
                        b.resync_at = Some(now);
                    }
                }
            }
        }
        if let Input::Gate(position) = input {
            self.gate = Some(position);
            if position == GatePosition::Closed {
                self.gate_closed_since_clear = true;
                let reconciling = self.reconciling(now);
                if let Some(b) = self.blind.as_mut().filter(|_| reconciling) {
                    b.gate_went_down = true;
                }
            }
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
            (
                State::Armed {
                    mut leader,
                    mut follower,
                    since,
                    blind,
                },
                Input::Plate(r),
            ) => {
                match follower.as_mut() {
                    Some(f) => self.offer(r, &mut [&mut leader, f], out),
                    None => self.offer(r, &mut [&mut leader], out),
                }
                State::Armed {
                    leader,
                    follower,
                    since,
                    blind,
                }
            }
            (state, Input::Plate(r)) => {
                self.offer(r, &mut [], out);
                state
            }

            // --- loops (loops_gate, loops_only) ---
            // A vehicle arrives on the arming loop.
            (State::Idle, Input::LoopA(true)) => State::Approaching(self.arrive(now, false)),
            // A released without B while the vehicle may still be between the loops (a
            // car shorter than the loop gap, the gate open for it): armed, expecting B.
            (State::Approaching(v), Input::LoopA(false))
                if self.short_vehicle_window_ms > 0 && self.may_be_between_loops(&v, now) =>
            {
                let blind = v.blind && self.reconciling(now);
                State::Armed {
                    leader: v,
                    follower: None,
                    since: now,
                    blind,
                }
            }
            // It turned away before the barrier (A released without B): nothing to report.
            (State::Approaching(_), Input::LoopA(false)) => {
                tracing::debug!(lane = %self.lane, "turn-away: loop A released without B");
                State::Idle
            }
            // The armed vehicle reached B: it is past the barrier line (A is free).
            (
                State::Armed {
                    leader, follower, ..
                },
                Input::LoopB(true),
            ) => State::Leaving { leader, follower },
            // A occupied again while armed.
            (
                State::Armed {
                    leader,
                    follower: None,
                    since,
                    blind,
                },
                Input::LoopA(true),
            ) => {
                if self.gate_is_open() {
                    // The gate open: the next vehicle through this opening (or the armed
                    // one backing up; it then leaves A again like a follower turning away).
                    State::Armed {
                        leader,
                        follower: Some(self.arrive(now, true)),
                        since,
                        blind,
                    }
                } else {
                    // The gate not open (or not known): the armed vehicle backed off and
                    // this is the next one, as in a queue behind a turn-away. (A short car
                    // waiting at a closed barrier with another right behind it is lost
                    // here: documented.)
                    self.resolve_armed(leader, since, blind, false, out);
                    State::Approaching(self.arrive(now, false))
                }
            }
            (
                State::Armed {
                    leader,
                    follower: Some(_),
                    since,
                    blind,
                },
                Input::LoopA(false),
            ) => State::Armed {
                leader,
                follower: None,
                since,
                blind,
            },
            // The gate came down, or the window passed, with B never reached. After a
            // device gap this is the evidence: the gate going down or a read vehicle gone
            // means it passed unseen (inferred); without either, today's rule (turned
            // away), counted as undecided.
            (
                State::Armed {
                    leader,
                    follower,
                    since,
                    blind,
                },
                input @ (Input::Gate(GatePosition::Closed) | Input::ArmedTimeout),
            ) => {
                let gate_down = input == Input::Gate(GatePosition::Closed);
                self.resolve_armed(leader, since, blind, gate_down, out);
                match follower {
                    Some(f) => State::Approaching(f),
                    None => State::Idle,
                }
            }
            // After a gap: the gate came down while a vehicle followed across it stood on
            // A, and A is still occupied. The gate closes behind a vehicle, so that one
            // passed unseen; the one on A now is the next.
            (State::Approaching(v), Input::Gate(GatePosition::Closed))
                if v.blind && self.reconciling(now) && self.loop_a && !self.loop_b =>
            {
                self.count_blind("inferred");
                tracing::info!(lane = %self.lane, "blind moment: the gate came down in the gap with loop A still occupied; the vehicle passed (inferred), the next one is on A");
                self.clear_at(v, now, true, out);
                State::Approaching(self.arrive(now, false))
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
                // A read waiting now was not for the next vehicle: B first is also what
                // the loops show after a gap with a vehicle under the barrier (whose read
                // came before or during it), and a vehicle that follows it onto A is
                // ignored with it. Kept, its read would go to the next vehicle, and that
                // one's on (found by the soak).
                if self.pending.take().is_some() {
                    tracing::info!(lane = %self.lane, "a read waiting while the lane ignored its loops dropped");
                }
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
            blind: false,
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
        if !r.late && r.text.is_some() {
            // A live read beats a late one: the late read may be the plate of a vehicle
            // that passed while the bridge could not hear the camera. Kept, it would
            // push this read on to the next vehicle, and that one's on to the next.
            if let Some(v) = vehicles
                .iter_mut()
                .rev()
                .find(|v| v.read.as_ref().is_some_and(|held| held.late))
            {
                if let Some(old) = v.read.replace(r) {
                    self.set_aside_late(&old, "late camera read replaced by a live one");
                }
                return;
            }
            // A different live read while the rearmost vehicle is one followed across a
            // device gap or restart, with its read from before it: that vehicle passed
            // in the gap (the camera reads every vehicle), and the one on the loops now
            // is the read's. Kept instead, its read would pass to the next vehicle, and
            // so on.
            if let Some(v) = vehicles.last_mut().filter(|v| {
                v.blind && v.has_plate() && !v.quick() && v.plate_text() != r.text.as_deref()
            }) {
                let gap_open = self.blind.as_ref().is_some_and(|b| b.back_at.is_none());
                let at = self
                    .blind
                    .as_ref()
                    .and_then(|b| b.back_at)
                    .unwrap_or(r.at)
                    .min(r.at);
                let gone = std::mem::replace(
                    &mut **v,
                    Vehicle {
                        read: Some(r),
                        follower: false,
                        blind: gap_open,
                    },
                );
                self.count_blind("inferred");
                tracing::info!(lane = %self.lane, "blind moment: a new read for the lane's unseen vehicle; it passed in the gap (inferred)");
                self.clear_at(gone, at, true, out);
                return;
            }
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
        // A trailer's plate while its (plated) tractor is in the lane or has just left:
        // a trailer that did not re-trigger the loops is part of its tractor's passage.
        // Never the next vehicle's read.
        if r.text.as_deref().is_some_and(is_trailer_plate)
            && (vehicles.iter().any(|v| v.has_plate())
                || self
                    .last_clear
                    .is_some_and(|t| r.at.0 - t.0 <= self.tailgate_window_ms))
        {
            tracing::debug!(lane = %self.lane, plate = %r.text.as_deref().map(crate::plate::mask).unwrap_or_default(), "trailer read taken as part of its tractor's passage");
            return;
        }
        // …or the next vehicle's read, arrived early. Never a late read: its vehicle
        // passed while the bridge could not hear the camera.
        if r.late {
            self.set_aside_late(&r, "late camera read with no vehicle in the lane set aside");
            return;
        }
        self.pending = Some(r);
    }

    /// A late read no vehicle takes: journalled with its event, counted, said.
    fn set_aside_late(&mut self, r: &Read, why: &'static str) {
        self.stale_late_reads += 1;
        tracing::info!(
            lane = %self.lane,
            plate = %r.text.as_deref().map(crate::plate::mask).unwrap_or_default(),
            "{why}"
        );
    }

    /// A vehicle cleared the barrier. It is inferred when it was in the lane during a
    /// device gap and cleared on the facts that came back after it.
    fn clear(&mut self, v: Vehicle, now: Timestamp, out: &mut Vec<Passage>) {
        let inferred = v.blind
            && self.blind.as_ref().is_some_and(|b| b.back_at.is_some())
            && self.reconciling(now);
        if inferred {
            self.count_blind("inferred");
            tracing::info!(lane = %self.lane, "blind moment: passage completed by the inputs after the gap (inferred)");
        }
        self.clear_at(v, now, inferred, out);
    }

    fn clear_at(&mut self, mut v: Vehicle, now: Timestamp, inferred: bool, out: &mut Vec<Passage>) {
        self.last_clear = Some(now);
        self.gate_closed_since_clear = false;
        // Inferred is a property of the passage: the flag travels with the vehicle.
        v.blind = inferred;
        let plate = v.plate_text().map(str::to_string);
        let tractor = std::mem::replace(&mut self.last_cleared_plate, plate);
        match &v.read {
            Some(r) if r.text.is_some() => {
                let case = if v.follower {
                    PassageCase::Tailgate
                } else {
                    PassageCase::Normal
                };
                let trailer = v.follower
                    && v.plate_text().is_some_and(is_trailer_plate)
                    && !tractor.as_deref().is_some_and(is_trailer_plate);
                self.emit_with(v, now, case, trailer.then_some(tractor), out);
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
                blind: false,
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
        self.emit_with(v, cleared_at, case, None, out);
    }

    /// `trailer`: `Some(tractor plate)` for a trailer behind its tractor.
    fn emit_with(
        &mut self,
        v: Vehicle,
        cleared_at: Timestamp,
        case: PassageCase,
        trailer: Option<Option<String>>,
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
            inferred: v.blind,
            trailer: trailer.is_some(),
            tractor: trailer.flatten(),
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

/// A drawbar trailer's plate (GA 36: `…挂`).
fn is_trailer_plate(text: &str) -> bool {
    text.ends_with('挂')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(layout: DetectionLayout) -> LaneMachine {
        LaneMachine::new(&LaneConfig::new("l", Direction::Entry, "P", layout))
    }

    use crate::lane::testkit::{io_event, lp};

    fn ev(at: i64, kind: EventKind) -> RawEvent {
        io_event("l", at, kind)
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

    /// After a restart the broker delivers what the camera sent meanwhile. A held read
    /// of a vehicle that passed unseen must not wait for the next vehicle, nor keep a
    /// vehicle's own live read from it: else each vehicle takes its predecessor's plate.
    #[test]
    fn a_late_read_never_waits_for_the_next_vehicle_and_a_live_read_beats_it() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let t = 1_000_000;
        // Held read of a vehicle that passed while the bridge was down; the lane is empty.
        assert!(feed(&mut m, &[(t, late("闽A00001", t - 4_000))]).is_empty());
        assert_eq!(m.stale_late_reads(), 1);
        // The next vehicle comes with its own live read, and gets it, not the held one.
        feed(&mut m, &[(t + 1_000, read("闽A00002"))]);
        let out = feed(&mut m, &pass_without_read(t + 2_000));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
        // A vehicle on the loops takes a held read (it may be its own)…
        feed(&mut m, &[(t + 10_000, lp(LoopId::A, true))]);
        feed(&mut m, &[(t + 10_100, late("闽A00003", t + 6_000))]);
        // …but its live read replaces it, and the held one is not kept for anyone.
        feed(&mut m, &[(t + 10_500, read("闽A00004"))]);
        let out = feed(&mut m, &pass_without_read(t + 10_000)[1..]);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00004");
        assert_eq!(m.stale_late_reads(), 2);
        let out: Vec<_> = feed(&mut m, &pass_without_read(t + 20_000))
            .into_iter()
            .chain(m.on_timer(Timestamp(t + 30_000)))
            .collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].case, PassageCase::Unrecognised);
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

    /// A vehicle on A with its read when the bridge stopped; at the restart the gate is
    /// down and A occupied: that vehicle passed unseen, the one on A is the next. Else
    /// the next vehicle would take its read, and every later one its predecessor's.
    #[test]
    fn after_a_restart_the_gate_down_with_a_still_occupied_means_the_next_vehicle() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(
            &mut m,
            &[
                (0, gate(GatePosition::Closed)),
                (1_000, lp(LoopId::A, true)),
                (1_150, read("闽A00001")),
                (1_500, gate(GatePosition::Open)),
            ],
        );
        m.restarted(Timestamp(3_000));
        let out = feed(
            &mut m,
            &[
                (3_500, EventKind::Link { up: true }),
                (3_550, lp(LoopId::A, true)),
                (3_550, lp(LoopId::B, false)),
                (3_550, gate(GatePosition::Closed)),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00001");
        assert!(out[0].inferred);
        let out = feed(
            &mut m,
            &[
                (3_700, read("闽A00002")),
                (4_000, gate(GatePosition::Open)),
                (4_200, lp(LoopId::B, true)),
                (4_400, lp(LoopId::A, false)),
                (4_600, lp(LoopId::B, false)),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
        assert!(!out[0].inferred);
    }

    /// A read waiting for its vehicle when the bridge stopped (or pushed in the last
    /// seconds of a stop, the loops no longer polled) is not the next vehicle's.
    #[test]
    fn a_read_waiting_at_a_restart_is_not_the_next_vehicles() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(&mut m, &[(1_000, read("闽A00001"))]);
        m.restarted(Timestamp(3_000));
        feed(
            &mut m,
            &[(3_500, lp(LoopId::A, true)), (3_650, read("闽A00002"))],
        );
        let out = feed(&mut m, &pass_without_read(3_500)[1..]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
    }

    /// The same with the gate open again at the restart (no gate evidence): the next
    /// vehicle's live read, different from the unseen vehicle's, says it passed.
    #[test]
    fn after_a_restart_a_different_live_read_means_the_unseen_vehicle_passed() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(
            &mut m,
            &[
                (1_000, lp(LoopId::A, true)),
                (1_150, read("闽A00001")),
                (1_500, gate(GatePosition::Open)),
            ],
        );
        m.restarted(Timestamp(3_000));
        assert!(
            feed(
                &mut m,
                &[
                    (3_500, EventKind::Link { up: true }),
                    (3_550, lp(LoopId::A, true))
                ]
            )
            .is_empty()
        );
        let out = feed(&mut m, &[(3_700, read("闽A00002"))]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (
                out[0].plate.as_ref().unwrap().text.as_str(),
                out[0].inferred
            ),
            ("闽A00001", true)
        );
        // A repeat of the unseen vehicle's own read changes nothing.
        let mut n = lane(DetectionLayout::LoopsGate);
        feed(
            &mut n,
            &[(1_000, lp(LoopId::A, true)), (1_150, read("闽A00001"))],
        );
        n.restarted(Timestamp(3_000));
        assert!(
            feed(
                &mut n,
                &[
                    (3_500, EventKind::Link { up: true }),
                    (3_700, read("闽A00001"))
                ]
            )
            .is_empty()
        );
        let out = feed(
            &mut m,
            &[
                (4_200, lp(LoopId::B, true)),
                (4_400, lp(LoopId::A, false)),
                (4_600, lp(LoopId::B, false)),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
        // Without a restart (no gap), the same read waits for the next vehicle.
        let mut live = lane(DetectionLayout::LoopsGate);
        feed(
            &mut live,
            &[(1_000, lp(LoopId::A, true)), (1_150, read("闽A00001"))],
        );
        assert!(feed(&mut live, &[(3_700, read("闽A00002"))]).is_empty());
    }

    /// The I/O module gone past the reset: reads keep coming for vehicles nobody sees.
    /// When it is back, a read that came meanwhile is not given to the vehicle on the
    /// loops (it passed in the gap); that one gets its own read.
    #[test]
    fn a_read_that_came_while_the_io_was_down_is_dropped_when_it_is_back() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(&mut m, &pass_without_read(0));
        m.on_timer(Timestamp(6_000));
        feed(&mut m, &[(10_000, EventKind::Link { up: false })]);
        m.on_timer(Timestamp(20_000)); // reset
        feed(&mut m, &[(22_000, read("闽A00001"))]); // its vehicle passes unseen
        feed(
            &mut m,
            &[
                (24_000, EventKind::Link { up: true }),
                (24_050, lp(LoopId::A, false)),
                (25_000, lp(LoopId::A, true)),
            ],
        );
        feed(&mut m, &[(25_150, read("闽A00002"))]);
        let out = feed(&mut m, &pass_without_read(25_000)[1..]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
        // A read waiting from before the gap is still the next vehicle's.
        let mut n = lane(DetectionLayout::LoopsGate);
        feed(
            &mut n,
            &[
                (1_000, read("闽A00003")),
                (1_500, EventKind::Link { up: false }),
            ],
        );
        feed(
            &mut n,
            &[
                (3_000, EventKind::Link { up: true }),
                (3_100, lp(LoopId::A, true)),
            ],
        );
        let out = feed(&mut n, &pass_without_read(3_100)[1..]);
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00003");
    }

    /// After a reset the loops show a vehicle under the barrier (B first): the lane
    /// ignores the loops until both are free, and a vehicle following onto A then goes
    /// unseen. Its read must not wait for the next vehicle.
    #[test]
    fn a_read_that_came_while_the_lane_ignored_its_loops_is_not_the_next_vehicles() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let out = feed(
            &mut m,
            &[
                (900, read("闽A00009")), // the read of the vehicle first seen on B
                (1_000, lp(LoopId::B, true)),
                (1_300, lp(LoopId::A, true)),
                (1_400, lp(LoopId::B, false)),
                (1_500, read("闽A00001")),
                (2_000, lp(LoopId::B, true)),
                (2_200, lp(LoopId::A, false)),
                (2_400, lp(LoopId::B, false)),
                (3_000, lp(LoopId::A, true)),
                (3_150, read("闽A00002")),
            ],
        );
        assert!(out.is_empty());
        let out = feed(&mut m, &pass_without_read(3_000)[1..]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].plate.as_ref().unwrap().text, "闽A00002");
    }

    #[test]
    fn a_camera_down_past_the_timeout_resets_nothing_and_the_loops_still_count() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(&mut m, &pass_without_read(0));
        m.on_timer(Timestamp(6_000));
        let cam = |at: i64, up: bool| RawEvent {
            lane: "l".into(),
            device: "cam".into(),
            at: Timestamp(at),
            kind: EventKind::Link { up },
        };
        assert!(m.handle(&cam(7_000, false), Timestamp(7_000)).is_empty());
        // A vehicle on the loops when the camera has been silent past the timeout.
        feed(&mut m, &[(16_500, lp(LoopId::A, true))]);
        assert!(m.on_timer(Timestamp(17_500)).is_empty(), "nothing reset");
        let out: Vec<_> = feed(&mut m, &pass_without_read(16_500)[1..])
            .into_iter()
            .chain(m.on_timer(Timestamp(30_000)))
            .collect();
        assert_eq!(out.len(), 1, "the loops saw it: reported unrecognised");
        assert_eq!(out[0].case, PassageCase::Unrecognised);
        // The I/O module going down does reset the lane, even with the camera down.
        feed(
            &mut m,
            &[
                (31_000, lp(LoopId::A, true)),
                (31_100, EventKind::Link { up: false }),
            ],
        );
        assert_eq!(m.poll_at(), Some(Timestamp(41_100)));
        m.handle(&cam(35_000, true), Timestamp(35_000));
        assert_eq!(
            m.poll_at(),
            Some(Timestamp(41_100)),
            "the camera back cancels nothing"
        );
    }

    fn gate(position: GatePosition) -> EventKind {
        EventKind::Gate { position }
    }

    fn read(text: &str) -> EventKind {
        EventKind::Plate(PlateRead::text(text, PlateColor::Blue))
    }

    #[test]
    fn a_vehicle_shorter_than_the_loop_gap_is_armed_until_b_or_the_window_ends() {
        let mut m = lane(DetectionLayout::LoopsGate);
        feed(
            &mut m,
            &[
                (0, gate(GatePosition::Closed)),
                (100, read("闽A1234D")),
                (200, lp(LoopId::A, true)),
                (300, gate(GatePosition::Open)),
                (500, lp(LoopId::A, false)),
            ],
        );
        assert_eq!(m.poll_at(), Some(Timestamp(2_500)), "armed for 2 s");
        let out = feed(
            &mut m,
            &[(2_400, lp(LoopId::B, true)), (2_900, lp(LoopId::B, false))],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].case, out[0].at, out[0].inferred),
            (PassageCase::Normal, Timestamp(2_900), false)
        );
        // Gate closed and no read: A released without B is a turn-away at once.
        feed(
            &mut m,
            &[
                (3_000, gate(GatePosition::Closed)),
                (20_000, lp(LoopId::A, true)),
                (20_500, lp(LoopId::A, false)),
            ],
        );
        assert!(m.is_idle());
        // Gate open, B never reached: nothing after the window, and B later is not ours.
        feed(
            &mut m,
            &[
                (30_000, lp(LoopId::A, true)),
                (30_100, gate(GatePosition::Open)),
                (30_500, lp(LoopId::A, false)),
            ],
        );
        assert!(m.on_timer(Timestamp(32_500)).is_empty());
        assert!(m.is_idle());
        let out = feed(
            &mut m,
            &[
                (33_000, lp(LoopId::B, true)),
                (33_500, lp(LoopId::B, false)),
            ],
        );
        assert!(out.is_empty() && m.on_timer(Timestamp(40_000)).is_empty());
    }

    #[test]
    fn the_short_vehicle_window_follows_the_lane_config() {
        let mut cfg = LaneConfig::new("l", Direction::Entry, "P", DetectionLayout::LoopsOnly);
        cfg.loop_gap_m = Some(2.0);
        let mut m = LaneMachine::new(&cfg);
        feed(
            &mut m,
            &[(0, lp(LoopId::A, true)), (100, lp(LoopId::A, false))],
        );
        // 2 m at 2 km/h = 3.6 s; loops-only lanes arm whatever the gate.
        assert_eq!(m.poll_at(), Some(Timestamp(3_700)));
        cfg.short_vehicle_window_ms = Some(0);
        let mut m = LaneMachine::new(&cfg);
        feed(
            &mut m,
            &[(0, lp(LoopId::A, true)), (100, lp(LoopId::A, false))],
        );
        assert!(
            m.is_idle(),
            "a zero window turns away at once (the old rule)"
        );
    }

    #[test]
    fn a_vehicle_behind_a_device_gap_is_inferred_from_the_evidence_or_counted_undecided() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let exported = |outcome: &str| BLIND_MOMENTS.with_label_values(&["l", outcome]).get();
        let (inferred_before, undecided_before) = (exported("inferred"), exported("undecided"));
        // Read car on A, gate open; 1 s gap; after it A is free and the gate closed.
        let out = feed(
            &mut m,
            &[
                (0, read("闽A12345")),
                (100, gate(GatePosition::Closed)),
                (200, lp(LoopId::A, true)),
                (300, gate(GatePosition::Open)),
                (1_000, EventKind::Link { up: false }),
                (2_000, EventKind::Link { up: true }),
                (2_000, lp(LoopId::A, false)),
                (2_000, gate(GatePosition::Closed)),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].inferred);
        assert_eq!(m.blind_counts().inferred, 1);
        // Unread car on A, gate closed; after the gap A is free, nothing else: undecided.
        let out = feed(
            &mut m,
            &[
                (10_000, lp(LoopId::A, true)),
                (11_000, EventKind::Link { up: false }),
                (12_000, EventKind::Link { up: true }),
                (12_000, lp(LoopId::A, false)),
            ],
        );
        assert!(out.is_empty());
        assert!(m.on_timer(Timestamp(20_000)).is_empty());
        assert_eq!(
            m.blind_counts(),
            BlindCounts {
                inferred: 1,
                undecided: 1,
                reset: 0
            }
        );
        // /metrics has them too (≥: other tests of this binary use lane "l" as threads).
        assert!(exported("inferred") > inferred_before);
        assert!(exported("undecided") > undecided_before);
        // A vehicle seen live long after the gap is not flagged.
        let out = feed(&mut m, &pass_without_read(30_000));
        assert!(out.is_empty());
        let out = m.on_timer(Timestamp(40_000));
        assert_eq!(out.len(), 1);
        assert!(!out[0].inferred);
    }

    #[test]
    fn a_silent_camera_does_not_blind_the_loops() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let cam = |at: i64, up: bool| RawEvent {
            lane: "l".into(),
            device: "cam".into(),
            at: Timestamp(at),
            kind: EventKind::Link { up },
        };
        feed(
            &mut m,
            &[(0, gate(GatePosition::Closed)), (100, lp(LoopId::A, true))],
        );
        m.handle(&cam(200, false), Timestamp(200));
        m.handle(&cam(1_200, true), Timestamp(1_200));
        let mut out = feed(
            &mut m,
            &[
                (1_300, lp(LoopId::B, true)),
                (1_400, lp(LoopId::A, false)),
                (1_500, lp(LoopId::B, false)),
            ],
        );
        out.extend(m.on_timer(Timestamp(10_000)));
        assert_eq!(out.len(), 1);
        assert!(!out[0].inferred, "the loops saw it all");
        assert_eq!(m.blind_counts(), BlindCounts::default());
    }

    #[test]
    fn a_trailer_read_behind_its_tractor_is_marked_and_never_pending_for_the_next_car() {
        let mut m = lane(DetectionLayout::LoopsGate);
        let out = feed(
            &mut m,
            &[
                (0, read("闽A12345")),
                (100, lp(LoopId::A, true)),
                (200, gate(GatePosition::Open)),
                (1_000, lp(LoopId::B, true)),
                (2_000, lp(LoopId::A, false)),
                (2_300, lp(LoopId::A, true)),
                (2_400, read("闽A6789挂")),
                (3_000, lp(LoopId::B, false)),
                (3_200, lp(LoopId::B, true)),
                (4_000, lp(LoopId::A, false)),
                (5_000, lp(LoopId::B, false)),
            ],
        );
        assert_eq!(out.len(), 2);
        assert!(!out[0].trailer);
        assert!(out[1].trailer && out[1].tailgate);
        assert_eq!(out[1].tractor.as_deref(), Some("闽A12345"));
        // A trailer that does not re-trigger the loops: its read arrives with the
        // tractor in the lane and must not stick to the next car.
        let out = feed(
            &mut m,
            &[
                (5_100, gate(GatePosition::Closed)),
                (20_000, read("闽B11111")),
                (20_100, lp(LoopId::A, true)),
                (20_200, gate(GatePosition::Open)),
                (21_000, lp(LoopId::B, true)),
                (21_500, read("闽B2222挂")),
                (22_000, lp(LoopId::A, false)),
                (23_000, lp(LoopId::B, false)),
                (23_100, gate(GatePosition::Closed)),
                (25_000, lp(LoopId::A, true)),
                (25_100, gate(GatePosition::Open)),
                (26_000, lp(LoopId::B, true)),
                (26_500, lp(LoopId::A, false)),
                (27_000, lp(LoopId::B, false)),
            ],
        );
        let mut all = out;
        all.extend(m.on_timer(Timestamp(40_000)));
        let plates: Vec<Option<&str>> = all
            .iter()
            .map(|p| p.plate.as_ref().map(|p| p.text.as_str()))
            .collect();
        assert_eq!(plates, [Some("闽B11111"), None]);
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
