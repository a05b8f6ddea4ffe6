//! Modbus logic without I/O: which reads to send for a device (contiguous points
//! merged into one request), how to decode the answers into point values, and how
//! raw values become facts (debounce + edge detection per input, gate position, link
//! state with retry/isolation). Time is always passed in.
//!
//! Only the four read functions exist in [`Function`], so nothing built from this
//! module can write to a device.

use crate::config::Role;
use crate::driver::LinkState;
use crate::driver::profile::{
    ByteOrder, ModbusProfile, Point, PointKind, WordOrder, parse_position,
};
use crate::event::{Counted, EventKind, GatePosition, LoopId};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// The Modbus read functions, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    ReadCoils = 1,
    ReadDiscreteInputs = 2,
    ReadHoldingRegisters = 3,
    ReadInputRegisters = 4,
}

impl Function {
    pub fn from_code(code: u8) -> Option<Function> {
        match code {
            1 => Some(Function::ReadCoils),
            2 => Some(Function::ReadDiscreteInputs),
            3 => Some(Function::ReadHoldingRegisters),
            4 => Some(Function::ReadInputRegisters),
            _ => None,
        }
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn reads_bits(self) -> bool {
        matches!(self, Function::ReadCoils | Function::ReadDiscreteInputs)
    }
    /// Largest quantity one request may ask for (Modbus application protocol §6).
    pub fn max_count(self) -> u16 {
        if self.reads_bits() { 2000 } else { 125 }
    }
}

/// One read request: function, first address, quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    pub function: Function,
    pub address: u16,
    pub count: u16,
}

impl ReadRequest {
    pub const fn new(function: Function, address: u16, count: u16) -> Self {
        ReadRequest {
            function,
            address,
            count,
        }
    }
    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.count)
    }
    /// Bytes of data in a normal response.
    pub fn response_data_len(&self) -> usize {
        if self.function.reads_bits() {
            usize::from(self.count).div_ceil(8)
        } else {
            usize::from(self.count) * 2
        }
    }
}

/// The answer to one [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

/// Merges the points into as few requests as possible: points of the same function
/// whose ranges touch or overlap share one request, up to the protocol's maximum.
pub fn plan(points: &[Point]) -> Vec<ReadRequest> {
    let mut ranges: Vec<(Function, u16, u16)> = points
        .iter()
        .filter_map(|p| Some((Function::from_code(p.function)?, p.address, p.kind.width())))
        .collect();
    ranges.sort();
    let mut out: Vec<ReadRequest> = Vec::new();
    for (function, address, width) in ranges {
        let end = u32::from(address) + u32::from(width);
        if let Some(last) = out.last_mut()
            && last.function == function
            && u32::from(address) <= last.end()
        {
            let new_end = end.max(last.end());
            if new_end - u32::from(last.address) <= u32::from(function.max_count()) {
                // Fits: new_end - address ≤ 2000, so it fits in u16.
                last.count = (new_end - u32::from(last.address)) as u16;
                continue;
            }
        }
        out.push(ReadRequest::new(function, address, width));
    }
    out
}

/// A decoded point value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Bool(bool),
    Position(GatePosition),
    /// A raw enum value with no meaning in the profile.
    Unmapped(u16),
    Number(f64),
}

/// Point values of one poll, by point index in the profile.
pub type Values = BTreeMap<usize, Value>;

/// Decodes every point from the answers to `plan(points)` (same order). Points whose
/// request failed are absent.
pub fn decode(points: &[Point], requests: &[ReadRequest], answers: &[Option<ReadData>]) -> Values {
    let mut out = Values::new();
    for (i, p) in points.iter().enumerate() {
        let Some(function) = Function::from_code(p.function) else {
            continue;
        };
        let found = requests.iter().zip(answers).find(|(r, _)| {
            r.function == function
                && r.address <= p.address
                && u32::from(p.address) + u32::from(p.kind.width()) <= r.end()
        });
        let Some((req, Some(data))) = found else {
            continue;
        };
        let offset = usize::from(p.address - req.address);
        if let Some(v) = decode_point(p, data, offset) {
            out.insert(i, v);
        }
    }
    out
}

fn decode_point(p: &Point, data: &ReadData, offset: usize) -> Option<Value> {
    let word = |k: usize| -> Option<u16> {
        match data {
            ReadData::Words(w) => w.get(offset + k).map(|w| match p.byte_order {
                ByteOrder::Big => *w,
                ByteOrder::Swapped => w.swap_bytes(),
            }),
            ReadData::Bits(_) => None,
        }
    };
    Some(match p.kind {
        PointKind::Bit => match data {
            ReadData::Bits(b) => Value::Bool(*b.get(offset)? != p.invert),
            ReadData::Words(_) => return None,
        },
        PointKind::WordBit => Value::Bool(((word(0)? >> p.bit?) & 1 == 1) != p.invert),
        PointKind::Enum => {
            let raw = word(0)?;
            match p
                .values
                .get(&raw.to_string())
                .and_then(|m| parse_position(m))
            {
                Some(pos) => Value::Position(pos),
                None => Value::Unmapped(raw),
            }
        }
        PointKind::U16 => Value::Number(f64::from(word(0)?) * p.scale),
        PointKind::I16 => Value::Number(f64::from(word(0)? as i16) * p.scale),
        PointKind::U32 => {
            let (a, b) = (u32::from(word(0)?), u32::from(word(1)?));
            let v = match p.word_order {
                WordOrder::HighFirst => (a << 16) | b,
                WordOrder::LowFirst => (b << 16) | a,
            };
            Value::Number(f64::from(v) * p.scale)
        }
    })
}

/// Equal consecutive reads that confirm a change, for a debounce given as time: the
/// first read that sees the change, plus enough further polls to cover `debounce_ms`.
/// A change therefore comes out `ceil(debounce_ms / poll_ms)` polls after the first read
/// that saw it: at most one poll period more than `debounce_ms`, whatever the jitter of
/// the reads (counting reads, not comparing their timestamps, is what makes that hold).
pub fn reads_for(debounce_ms: u64, poll_ms: u64) -> u32 {
    let extra = debounce_ms.div_ceil(poll_ms.max(1));
    u32::try_from(extra)
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

/// Debounce and edge detection for one input: a new value becomes the stable value
/// once it has been read `reads` times in a row; only changes of the stable value come
/// out. The first stable value also comes out (the lane learns the state).
#[derive(Debug, Clone)]
pub struct Debounce<T> {
    reads: u32,
    stable: Option<T>,
    pending: Option<(T, u32)>,
}

impl<T: Copy + PartialEq> Debounce<T> {
    /// `reads`: equal consecutive reads that confirm a change (0 is taken as 1).
    pub fn new(reads: u32) -> Self {
        Debounce {
            reads: reads.max(1),
            stable: None,
            pending: None,
        }
    }

    pub fn stable(&self) -> Option<T> {
        self.stable
    }

    /// Feeds one read; returns the new stable value when it changes.
    pub fn update(&mut self, raw: T) -> Option<T> {
        if self.stable == Some(raw) {
            self.pending = None;
            return None;
        }
        let seen = match self.pending {
            Some((v, n)) if v == raw => n.saturating_add(1),
            _ => 1,
        };
        if seen >= self.reads {
            self.stable = Some(raw);
            self.pending = None;
            Some(raw)
        } else {
            self.pending = Some((raw, seen));
            None
        }
    }
}

/// How one poll of a device went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// Every request answered.
    Answered,
    /// No (valid) answer in time: timeout, CRC error, garbage.
    NoAnswer,
    /// The device answered with a Modbus exception: it is alive, the profile or
    /// wiring is wrong. Counts as alive for the link.
    Exception,
}

/// What a Modbus exception code means (application protocol §7), for logs and doctor.
pub fn exception_meaning(code: u8) -> &'static str {
    match code {
        1 => "illegal function: the device does not support this read function",
        2 => {
            "illegal data address: the device has no such input or register (the profile reads past what the model has?)"
        }
        3 => "illegal data value: the device refuses this quantity",
        4 => "slave device failure",
        5 => "acknowledge: the device is busy with a long operation",
        6 => "slave device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable: the gateway has no route to this unit id",
        11 => "gateway target failed to respond: nothing answers behind the gateway",
        _ => "unknown exception code",
    }
}

/// Gateway exceptions (10, 11) say the slave behind the gateway is absent: for the
/// link that is no answer, not a misconfigured but living device.
pub fn exception_is_no_answer(code: u8) -> bool {
    matches!(code, 10 | 11)
}

/// Why one answered poll gave the lane no usable data.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A read that carries bound points was answered with an exception.
    Exception {
        code: u8,
        request: ReadRequest,
        /// The bound points that read carries.
        points: Vec<String>,
    },
    /// A value that cannot be true (a counter that ran backwards).
    Impossible { point: String, detail: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Exception {
                code,
                request,
                points,
            } => write!(
                f,
                "exception {code:02} ({}) reading function {} address {} count {} (points {})",
                exception_meaning(*code),
                request.function.code(),
                request.address,
                request.count,
                points.join(", ")
            ),
            Problem::Impossible { point, detail } => write!(f, "point {point}: {detail}"),
        }
    }
}

/// The bound points a request carries, by name.
pub fn points_in(points: &[Point], bound: &[usize], req: &ReadRequest) -> Vec<String> {
    bound
        .iter()
        .filter_map(|i| points.get(*i))
        .filter(|p| {
            Function::from_code(p.function) == Some(req.function)
                && req.address <= p.address
                && u32::from(p.address) + u32::from(p.kind.width()) <= req.end()
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Values of `monotonic` points lower than the last value seen: impossible data (a
/// wrong word or byte order shows up this way). Updates `last`.
pub fn impossible(
    points: &[Point],
    values: &Values,
    last: &mut BTreeMap<usize, f64>,
) -> Option<Problem> {
    let mut found = None;
    for (i, v) in values {
        let (Some(p), Value::Number(n)) = (points.get(*i), v) else {
            continue;
        };
        if !p.monotonic {
            continue;
        }
        if let Some(before) = last.insert(*i, *n)
            && *n < before
            && found.is_none()
        {
            found = Some(Problem::Impossible {
                point: p.name.clone(),
                detail: format!("counter ran backwards from {before} to {n} (word or byte order?)"),
            });
        }
    }
    found
}

/// Polls in a row with a problem before a device is `faulty`: one excepted read can be
/// a busy slave, two in a row is the profile or wiring.
pub const FAULTY_AFTER_POLLS: u32 = 2;

/// Whether a device's answers are usable. Faulty after [`FAULTY_AFTER_POLLS`] polls in
/// a row with an exception for a bound read, at once on an impossible value; usable
/// again after the first clean poll. Returns a fact only on a change.
#[derive(Debug, Clone, Default)]
pub struct FaultWatch {
    in_a_row: u32,
    faulty: Option<String>,
}

impl FaultWatch {
    pub fn record(&mut self, problem: Option<&Problem>) -> Option<EventKind> {
        let Some(problem) = problem else {
            self.in_a_row = 0;
            return self
                .faulty
                .take()
                .map(|_| EventKind::Fault { problem: None });
        };
        self.in_a_row = self.in_a_row.saturating_add(1);
        let conclusive = matches!(problem, Problem::Impossible { .. });
        if self.in_a_row < FAULTY_AFTER_POLLS && !conclusive {
            return None;
        }
        let text = problem.to_string();
        if self.faulty.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.faulty = Some(text.clone());
        Some(EventKind::Fault {
            problem: Some(text),
        })
    }

    pub fn faulty(&self) -> Option<&str> {
        self.faulty.as_deref()
    }
}

/// Link state with retries and isolation for one slave.
#[derive(Debug, Clone)]
pub struct SlaveHealth {
    retries: u32,
    isolate_ms: i64,
    failures: u32,
    isolated_until: Option<Timestamp>,
    link: LinkState,
}

impl SlaveHealth {
    pub fn new(retries: u32, isolate_ms: u64) -> Self {
        SlaveHealth {
            retries,
            isolate_ms: isolate_ms.min(i64::MAX as u64) as i64,
            failures: 0,
            isolated_until: None,
            link: LinkState::default(),
        }
    }

    /// Whether the slave should be polled now (not isolated).
    pub fn is_pollable(&self, now: Timestamp) -> bool {
        self.isolated_until.is_none_or(|t| now >= t)
    }

    pub fn isolated_until(&self) -> Option<Timestamp> {
        self.isolated_until
    }

    pub fn link_up(&self) -> Option<bool> {
        self.link.get()
    }

    /// Records a poll; returns a link fact when the link state changes.
    pub fn record(&mut self, outcome: PollOutcome, now: Timestamp) -> Option<EventKind> {
        match outcome {
            PollOutcome::Answered | PollOutcome::Exception => {
                self.failures = 0;
                self.isolated_until = None;
                self.set_link(true)
            }
            PollOutcome::NoAnswer => {
                let released = self.isolated_until.take().is_some();
                self.failures += 1;
                // A slave just released from isolation gets one probe, not a new round
                // of retries: otherwise a dead slave would keep stalling the bus.
                if released || self.failures > self.retries {
                    self.failures = 0;
                    self.isolated_until = Some(now.plus_millis(self.isolate_ms));
                    self.set_link(false)
                } else {
                    None
                }
            }
        }
    }

    /// The transport under the slave is gone (serial port vanished, TCP closed).
    pub fn transport_lost(&mut self) -> Option<EventKind> {
        self.failures = 0;
        self.isolated_until = None;
        self.set_link(false)
    }

    fn set_link(&mut self, up: bool) -> Option<EventKind> {
        self.link.set(up).map(|up| EventKind::Link { up })
    }
}

/// Turns a device's point values into lane facts according to its role bindings.
#[derive(Debug, Clone)]
pub struct DeviceLogic {
    /// (role, point index) for the bound points.
    bindings: Vec<(Role, usize)>,
    inputs: BTreeMap<Role, Debounce<bool>>,
    status: Debounce<GatePosition>,
    gate_reported: Option<GatePosition>,
    /// Number roles, debounced like the inputs so a half-updated register pair or a
    /// counter passing through a value does not come out.
    numbers: BTreeMap<Role, Debounce<i64>>,
    charge_reported: Option<(i64, Option<i64>)>,
}

impl DeviceLogic {
    /// `roles` maps roles to point names; unknown names are skipped (validation
    /// rejects them before a driver is built).
    /// `reads`: equal consecutive reads that confirm a change ([`Debounce`]).
    pub fn new(profile: &ModbusProfile, roles: &BTreeMap<Role, String>, reads: u32) -> Self {
        let bindings: Vec<(Role, usize)> = roles
            .iter()
            .filter_map(|(role, name)| {
                Some((*role, profile.points.iter().position(|p| &p.name == name)?))
            })
            .collect();
        let inputs = bindings
            .iter()
            .filter(|(r, _)| *r != Role::GateStatus && !r.is_numeric())
            .map(|(r, _)| (*r, Debounce::new(reads)))
            .collect();
        let numbers = bindings
            .iter()
            .filter(|(r, _)| r.is_numeric())
            .map(|(r, _)| (*r, Debounce::new(reads)))
            .collect();
        DeviceLogic {
            bindings,
            inputs,
            status: Debounce::new(reads),
            gate_reported: None,
            numbers,
            charge_reported: None,
        }
    }

    /// Indexes (in the profile) of the points the roles bind.
    pub fn bound_points(&self) -> Vec<usize> {
        self.bindings.iter().map(|(_, i)| *i).collect()
    }

    /// Feeds one poll's values; returns the facts that changed.
    pub fn on_values(&mut self, values: &Values) -> Vec<EventKind> {
        let mut out = Vec::new();
        let mut gate_inputs_changed = false;
        let mut charge_changed = false;
        for (role, index) in &self.bindings {
            match (role, values.get(index)) {
                (Role::GateStatus, Some(Value::Position(pos))) => {
                    gate_inputs_changed |= self.status.update(*pos).is_some();
                }
                (Role::GateStatus, Some(Value::Unmapped(_))) => {
                    // A status the profile does not name: treat as fault, debounced.
                    gate_inputs_changed |= self.status.update(GatePosition::Fault).is_some();
                }
                (_, Some(Value::Number(n))) => {
                    let Some(deb) = self.numbers.get_mut(role) else {
                        continue;
                    };
                    // Counts and fen are whole; a scaled reading is rounded.
                    let Some(v) = deb.update(n.round() as i64) else {
                        continue;
                    };
                    let counted = match role {
                        Role::OccupiedCount => Counted::Occupied,
                        Role::FreeCount => Counted::Free,
                        _ => {
                            charge_changed = true;
                            continue;
                        }
                    };
                    out.push(EventKind::Spaces { counted, value: v });
                }
                (_, Some(Value::Bool(b))) => {
                    let Some(deb) = self.inputs.get_mut(role) else {
                        continue;
                    };
                    if let Some(v) = deb.update(*b) {
                        match role {
                            Role::LoopA => out.push(EventKind::Loop {
                                which: LoopId::A,
                                occupied: v,
                            }),
                            Role::LoopB => out.push(EventKind::Loop {
                                which: LoopId::B,
                                occupied: v,
                            }),
                            _ => gate_inputs_changed = true,
                        }
                    }
                }
                _ => {}
            }
        }
        if gate_inputs_changed
            && let Some(pos) = self.gate_position()
            && self.gate_reported != Some(pos)
        {
            self.gate_reported = Some(pos);
            out.push(EventKind::Gate { position: pos });
        }
        if charge_changed {
            out.extend(self.charge());
        }
        out
    }

    /// The pay terminal's charge once its stable values changed (the price is needed;
    /// the paid amount when the terminal shows one).
    fn charge(&mut self) -> Option<EventKind> {
        let price = self.numbers.get(&Role::FeePrice)?.stable()?;
        let paid = match self.numbers.get(&Role::FeePaid) {
            Some(d) => Some(d.stable()?),
            None => None,
        };
        if self.charge_reported == Some((price, paid)) {
            return None;
        }
        self.charge_reported = Some((price, paid));
        Some(EventKind::PayTerminal { price, paid })
    }

    /// The barrier position from the stable inputs, once enough is known.
    fn gate_position(&self) -> Option<GatePosition> {
        let stable = |r: Role| self.inputs.get(&r).map(|d| d.stable());
        if stable(Role::GateFault) == Some(Some(true)) {
            return Some(GatePosition::Fault);
        }
        if let Some(pos) = self.status.stable() {
            return Some(pos);
        }
        match (stable(Role::GateOpen), stable(Role::GateClosed)) {
            (Some(Some(open)), Some(Some(closed))) => Some(match (open, closed) {
                (true, false) => GatePosition::Open,
                (false, true) => GatePosition::Closed,
                (false, false) => GatePosition::Moving,
                (true, true) => GatePosition::Fault,
            }),
            // One limit switch only: active = at that end; inactive = left it.
            (Some(Some(open)), None) => Some(if open {
                GatePosition::Open
            } else {
                GatePosition::Moving
            }),
            (None, Some(Some(closed))) => Some(if closed {
                GatePosition::Closed
            } else {
                GatePosition::Moving
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::profile::{BUILTIN, parse_profile};
    use std::path::Path;

    fn profile(name: &str) -> ModbusProfile {
        let text = BUILTIN.iter().find(|(n, _)| *n == name).unwrap().1;
        parse_profile(text, name, Path::new(name))
            .unwrap()
            .modbus
            .unwrap()
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// What a slave's health reports when its link goes up or down.
    fn link(up: bool) -> Option<EventKind> {
        Some(EventKind::Link { up })
    }

    #[test]
    fn contiguous_points_are_read_in_one_request() {
        for (name, function, count) in [
            (
                "waveshare-modbus-rtu-io-8ch",
                Function::ReadDiscreteInputs,
                8,
            ),
            // status, fault word and the 2-register counter.
            (
                "generic-barrier-holding-status",
                Function::ReadHoldingRegisters,
                4,
            ),
        ] {
            assert_eq!(
                plan(&profile(name).points),
                vec![ReadRequest::new(function, 0, count)],
                "{name}"
            );
        }
    }

    #[test]
    fn gaps_and_functions_split_requests() {
        // Contiguous in the profile (one request, above); a gap and a second function
        // code make three.
        let mut points = profile("generic-barrier-holding-status").points;
        points[2].address = 10;
        points[1].function = 4;
        let reqs = plan(&points);
        assert_eq!(reqs.len(), 3, "{reqs:?}");
    }

    #[test]
    fn requests_never_exceed_protocol_maximum() {
        let mut p = profile("waveshare-modbus-rtu-io-8ch");
        let template = p.points[0].clone();
        p.points = (0..300u16)
            .map(|a| Point {
                address: a,
                name: format!("r{a}"),
                function: 3,
                kind: PointKind::U16,
                ..template.clone()
            })
            .collect();
        let reqs = plan(&p.points);
        assert_eq!(
            reqs.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![125, 125, 50]
        );
    }

    #[test]
    fn decodes_bits_words_enums_and_counters() {
        let p = profile("generic-barrier-holding-status");
        let reqs = plan(&p.points);
        let v = decode(
            &p.points,
            &reqs,
            &[Some(ReadData::Words(vec![1, 0x0001, 0x0001, 0x0002]))],
        );
        assert_eq!(v[&0], Value::Position(GatePosition::Open));
        assert_eq!(v[&1], Value::Bool(true));
        assert_eq!(v[&2], Value::Number(65538.0));
        let w = profile("waveshare-modbus-rtu-io-8ch");
        let reqs = plan(&w.points);
        let bits = vec![true, false, false, true, false, false, false, false];
        let v = decode(&w.points, &reqs, &[Some(ReadData::Bits(bits))]);
        assert_eq!(v[&0], Value::Bool(true));
        assert_eq!(v[&3], Value::Bool(true));
        assert_eq!(v[&1], Value::Bool(false));
    }

    #[test]
    fn failed_request_leaves_points_absent() {
        let w = profile("waveshare-modbus-rtu-io-8ch");
        let reqs = plan(&w.points);
        assert!(decode(&w.points, &reqs, &[None]).is_empty());
    }

    #[test]
    fn short_pulse_is_debounced_away() {
        let mut d = Debounce::new(2);
        assert_eq!(d.update(false), None);
        assert_eq!(d.update(false), Some(false));
        assert_eq!(d.update(true), None);
        assert_eq!(d.update(false), None, "a 50 ms blip is not an edge");
        assert_eq!(d.update(false), None);
        assert_eq!(d.update(true), None);
        assert_eq!(d.update(true), Some(true));
        assert_eq!(d.update(true), None, "no repeated edges");
    }

    #[test]
    fn a_time_debounce_costs_at_most_one_poll_more_than_it_says() {
        // debounce = poll: the first read that sees the change and one more.
        assert_eq!(reads_for(100, 100), 2);
        assert_eq!(reads_for(0, 100), 1);
        assert_eq!(reads_for(150, 100), 3, "150 ms needs two more polls");
        assert_eq!(reads_for(100, 30), 5);
        for (debounce, poll) in [(100u64, 100u64), (150, 100), (100, 30), (40, 50), (0, 10)] {
            let extra_ms = u64::from(reads_for(debounce, poll) - 1) * poll;
            assert!(
                extra_ms >= debounce && extra_ms < debounce + poll,
                "{debounce}/{poll}: {extra_ms}"
            );
        }
        // Jitter in the reads' timing does not matter: two equal reads confirm.
        let mut d = Debounce::new(reads_for(100, 100));
        assert_eq!(d.update(false), None);
        assert_eq!(d.update(false), Some(false));
        assert_eq!(d.update(true), None);
        assert_eq!(d.update(true), Some(true));
    }

    #[test]
    fn zero_debounce_reports_at_once() {
        let mut d = Debounce::new(1);
        assert_eq!(d.update(true), Some(true));
        assert_eq!(d.update(false), Some(false));
    }

    fn roles(pairs: &[(Role, &str)]) -> BTreeMap<Role, String> {
        pairs.iter().map(|(r, n)| (*r, n.to_string())).collect()
    }

    #[test]
    fn loop_edges_become_loop_facts() {
        let p = profile("waveshare-modbus-rtu-io-8ch");
        let mut logic =
            DeviceLogic::new(&p, &roles(&[(Role::LoopA, "di1"), (Role::LoopB, "di2")]), 2);
        let vals = |a: bool, b: bool| Values::from([(0, Value::Bool(a)), (1, Value::Bool(b))]);
        assert!(logic.on_values(&vals(false, false)).is_empty());
        let first = logic.on_values(&vals(false, false));
        assert_eq!(
            first,
            vec![
                EventKind::Loop {
                    which: LoopId::A,
                    occupied: false
                },
                EventKind::Loop {
                    which: LoopId::B,
                    occupied: false
                }
            ]
        );
        assert!(logic.on_values(&vals(true, false)).is_empty());
        assert_eq!(
            logic.on_values(&vals(true, false)),
            vec![EventKind::Loop {
                which: LoopId::A,
                occupied: true
            }]
        );
    }

    #[test]
    fn limit_switches_give_gate_positions() {
        let p = profile("waveshare-modbus-rtu-io-8ch");
        let mut logic = DeviceLogic::new(
            &p,
            &roles(&[(Role::GateOpen, "di3"), (Role::GateClosed, "di4")]),
            1,
        );
        let vals = |o: bool, c: bool| Values::from([(2, Value::Bool(o)), (3, Value::Bool(c))]);
        for (open, closed, position) in [
            (false, true, GatePosition::Closed),
            (false, false, GatePosition::Moving),
            (true, false, GatePosition::Open),
            (true, true, GatePosition::Fault),
        ] {
            assert_eq!(
                logic.on_values(&vals(open, closed)),
                vec![EventKind::Gate { position }],
                "open {open}, closed {closed}"
            );
        }
    }

    #[test]
    fn space_counter_reports_stable_counts_only() {
        let p = profile("generic-guidance-counter");
        let mut logic = DeviceLogic::new(&p, &roles(&[(Role::FreeCount, "free")]), 2);
        // Point 1 is "free"; point 0 ("occupied") is not bound and never comes out.
        let v = |occupied: f64, free: f64| {
            Values::from([(0, Value::Number(occupied)), (1, Value::Number(free))])
        };
        assert!(logic.on_values(&v(1.0, 12.0)).is_empty());
        let free = |value| EventKind::Spaces {
            counted: Counted::Free,
            value,
        };
        assert_eq!(logic.on_values(&v(2.0, 12.0)), vec![free(12)]);
        // A value held for less than the debounce does not come out.
        assert!(logic.on_values(&v(3.0, 11.0)).is_empty());
        assert!(logic.on_values(&v(3.0, 12.0)).is_empty());
        assert!(logic.on_values(&v(3.0, 12.0)).is_empty());
        assert!(logic.on_values(&v(3.0, 10.0)).is_empty());
        assert_eq!(logic.on_values(&v(3.0, 10.0)), vec![free(10)]);
    }

    #[test]
    fn pay_terminal_reports_each_new_charge_once() {
        let p = profile("generic-pay-terminal");
        let bound = roles(&[(Role::FeePrice, "charge"), (Role::FeePaid, "paid")]);
        let mut logic = DeviceLogic::new(&p, &bound, 1);
        let v = |charge: f64, paid: f64| {
            Values::from([(0, Value::Number(charge)), (1, Value::Number(paid))])
        };
        let charge = |price, paid| EventKind::PayTerminal {
            price,
            paid: Some(paid),
        };
        assert_eq!(logic.on_values(&v(0.0, 0.0)), vec![charge(0, 0)]);
        assert_eq!(logic.on_values(&v(1200.0, 0.0)), vec![charge(1200, 0)]);
        assert!(logic.on_values(&v(1200.0, 0.0)).is_empty());
        assert_eq!(
            logic.on_values(&v(1200.0, 1000.0)),
            vec![charge(1200, 1000)]
        );
        // A failed read of the paid register: nothing is made up.
        assert!(
            logic
                .on_values(&Values::from([(0, Value::Number(1200.0))]))
                .is_empty()
        );
        // Without a paid point the charge alone comes out.
        let mut alone = DeviceLogic::new(&p, &roles(&[(Role::FeePrice, "charge")]), 1);
        assert_eq!(
            alone.on_values(&v(800.4, 0.0)),
            vec![EventKind::PayTerminal {
                price: 800,
                paid: None
            }]
        );
    }

    #[test]
    fn status_word_gives_gate_positions_and_unknown_values_are_faults() {
        let p = profile("generic-barrier-holding-status");
        let mut logic = DeviceLogic::new(&p, &roles(&[(Role::GateStatus, "status")]), 1);
        let v = |x: Value| Values::from([(0, x)]);
        assert_eq!(
            logic.on_values(&v(Value::Position(GatePosition::Closed))),
            vec![EventKind::Gate {
                position: GatePosition::Closed
            }]
        );
        assert!(
            logic
                .on_values(&v(Value::Position(GatePosition::Closed)))
                .is_empty()
        );
        assert_eq!(
            logic.on_values(&v(Value::Unmapped(99))),
            vec![EventKind::Gate {
                position: GatePosition::Fault
            }]
        );
    }

    #[test]
    fn unanswering_slave_is_retried_then_isolated_then_probed_once() {
        let mut h = SlaveHealth::new(2, 5000);
        assert_eq!(h.record(PollOutcome::Answered, t(0)), link(true));
        assert_eq!(h.record(PollOutcome::NoAnswer, t(100)), None);
        assert_eq!(h.record(PollOutcome::NoAnswer, t(200)), None);
        assert_eq!(h.record(PollOutcome::NoAnswer, t(300)), link(false));
        assert!(!h.is_pollable(t(301)));
        assert!(h.is_pollable(t(5300)));
        assert_eq!(h.record(PollOutcome::NoAnswer, t(5300)), None);
        assert!(!h.is_pollable(t(5301)), "one failed probe re-isolates");
        assert!(h.is_pollable(t(10_300)));
        assert_eq!(h.record(PollOutcome::Answered, t(10_300)), link(true));
    }

    #[test]
    fn exception_answers_keep_the_link_up() {
        let mut h = SlaveHealth::new(0, 1000);
        assert_eq!(h.record(PollOutcome::Exception, t(0)), link(true));
        assert_eq!(h.record(PollOutcome::Exception, t(1)), None);
    }

    /// Raw RTU answer frames, as a bus sniffer shows them (CRC appended here), through
    /// framing and decoding.
    fn decode_frame(profile_name: &str, slave: u8, frame: &[u8]) -> (ModbusProfile, Values) {
        let frame = &crate::driver::rtu::with_crc(frame);
        let p = profile(profile_name);
        let reqs = plan(&p.points);
        assert_eq!(reqs.len(), 1);
        let data = match crate::driver::rtu::scan_response(slave, &reqs[0], frame) {
            crate::driver::rtu::Scan::Answer { data, .. } => data,
            other => panic!("{other:?}"),
        };
        let values = decode(&p.points, &reqs, &[Some(data)]);
        (p, values)
    }

    /// The names of the points that read `true`.
    fn points_on<'a>(p: &'a ModbusProfile, v: &Values) -> Vec<&'a str> {
        v.iter()
            .filter(|(_, x)| **x == Value::Bool(true))
            .map(|(i, _)| p.points[*i].name.as_str())
            .collect()
    }

    #[test]
    fn waveshare_dump_di1_and_di4_on() {
        // 01 02 01 09 + CRC: FC02 answer, one data byte, inputs 1 and 4 active.
        let (p, v) = decode_frame("waveshare-modbus-rtu-io-8ch", 1, &[0x01, 0x02, 0x01, 0x09]);
        assert_eq!(points_on(&p, &v), vec!["di1", "di4"]);
    }

    #[test]
    fn adam_4051_dump_reads_sixteen_inputs_from_two_bytes() {
        // 01 01 02 01 80 + CRC: FC01 answer, DI0 (bit 0 of byte 1) and DI15 (bit 7 of byte 2).
        let (p, v) = decode_frame("advantech-adam-4051", 1, &[0x01, 0x01, 0x02, 0x01, 0x80]);
        assert_eq!(v.len(), 16);
        assert_eq!(points_on(&p, &v), vec!["di0", "di15"]);
    }

    #[test]
    fn barrier_template_dump_open_with_counter() {
        // 02 03 08 | 0001 0000 0001 86A0 + CRC: open, no fault, 100000 cycles.
        let frame = [
            0x02, 0x03, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x86, 0xA0,
        ];
        let (_, v) = decode_frame("generic-barrier-holding-status", 2, &frame);
        assert_eq!(v[&0], Value::Position(GatePosition::Open));
        assert_eq!(v[&1], Value::Bool(false));
        assert_eq!(v[&2], Value::Number(100_000.0));
    }

    #[test]
    fn tcp_gateway_reads_sixteen_discrete_inputs_in_one_request() {
        let p = profile("generic-modbus-tcp-di-gateway");
        let reqs = plan(&p.points);
        assert_eq!(
            reqs,
            vec![ReadRequest::new(Function::ReadDiscreteInputs, 0, 16)]
        );
        let mut bits = vec![false; 16];
        bits[1] = true;
        let v = decode(&p.points, &reqs, &[Some(ReadData::Bits(bits))]);
        assert_eq!(v[&1], Value::Bool(true));
        assert_eq!(p.points[1].name, "di2");
    }

    #[test]
    fn exceptions_on_bound_reads_make_the_device_faulty_on_the_second_poll() {
        let p = profile("generic-modbus-tcp-di-gateway");
        let reqs = plan(&p.points);
        let points = points_in(&p.points, &[0, 1], &reqs[0]);
        assert_eq!(points, vec!["di1", "di2"]);
        let problem = Problem::Exception {
            code: 2,
            request: reqs[0],
            points,
        };
        let text = problem.to_string();
        assert!(
            text.contains("exception 02 (illegal data address")
                && text.contains("function 2 address 0 count 16")
                && text.contains("points di1, di2"),
            "{text}"
        );
        let mut w = FaultWatch::default();
        assert_eq!(
            w.record(Some(&problem)),
            None,
            "one exception may be a busy slave"
        );
        assert_eq!(
            w.record(Some(&problem)),
            Some(EventKind::Fault {
                problem: Some(text.clone())
            })
        );
        assert_eq!(w.record(Some(&problem)), None, "once per change");
        assert_eq!(w.faulty(), Some(text.as_str()));
        assert_eq!(w.record(None), Some(EventKind::Fault { problem: None }));
        assert_eq!(w.record(None), None);
        assert_eq!(w.record(Some(&problem)), None, "the count starts again");
    }

    #[test]
    fn a_counter_running_backwards_is_impossible_data_at_once() {
        let mut p = profile("generic-barrier-holding-status");
        let counter = p
            .points
            .iter()
            .position(|x| x.kind == PointKind::U32)
            .unwrap();
        p.points[counter].monotonic = true;
        let mut last = BTreeMap::new();
        let v = |n: f64| Values::from([(counter, Value::Number(n))]);
        assert_eq!(impossible(&p.points, &v(100.0), &mut last), None);
        assert_eq!(impossible(&p.points, &v(101.0), &mut last), None);
        let problem = impossible(&p.points, &v(7.0), &mut last).expect("backwards");
        assert!(
            problem.to_string().contains("ran backwards from 101 to 7"),
            "{problem}"
        );
        let mut w = FaultWatch::default();
        assert!(matches!(
            w.record(Some(&problem)),
            Some(EventKind::Fault { problem: Some(_) })
        ));
        assert_eq!(
            impossible(&p.points, &v(8.0), &mut last),
            None,
            "counting on from the new value"
        );
    }

    #[test]
    fn gateway_exceptions_mean_no_answer_and_every_code_has_a_meaning() {
        assert!(exception_is_no_answer(11) && exception_is_no_answer(10));
        assert!(!exception_is_no_answer(2));
        assert!(exception_meaning(2).contains("illegal data address"));
        assert!(exception_meaning(99).contains("unknown"));
    }
}
