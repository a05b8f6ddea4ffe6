//! The task that owns one Modbus bus (a serial port, or one TCP endpoint) and polls
//! its slaves in turn: honours each device's period and the bus's inter-frame
//! silence, skips isolated slaves, reopens the transport with backoff.
//!
//! Isolation is for slaves that keep failing: a slave that was answering and goes
//! silent (a loose connector, a gateway hiccup) is probed again after 1 s, then 2 s,
//! 4 s… up to the profile's `isolate_ms`, so a one-second gap blinds the lane for about
//! two seconds, not the whole isolation, while a dead slave costs the bus one extra
//! timeout every few seconds at most (see [`probe_delay_ms`]).

use crate::driver::modbus::{
    DeviceLogic, FaultWatch, PollOutcome, Problem, ReadRequest, SlaveHealth, Value, decode,
    exception_is_no_answer, impossible, plan, points_in, reads_for,
};
use crate::driver::profile::{ModbusProfile, Point, PointKind};
use crate::driver::{LinkError, ModbusLink, emit, metrics};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One slave on a bus, with its read plan and fact logic.
pub struct PolledDevice {
    pub name: String,
    pub lane: String,
    pub slave: u8,
    points: Vec<Point>,
    requests: Vec<ReadRequest>,
    logic: DeviceLogic,
    /// Indexes of the points the roles bind: an exception reading one blinds the lane.
    bound: Vec<usize>,
    health: SlaveHealth,
    fault: FaultWatch,
    /// Last value of each monotonic counter point.
    counters: std::collections::BTreeMap<usize, f64>,
    period: Duration,
    timeout: Duration,
    next_due: Instant,
    /// An isolated slave is probed at this time, before its isolation ends.
    probe_at: Option<Timestamp>,
    /// Probes of this isolation that went unanswered (reset by any answer).
    failed_probes: u32,
}

impl PolledDevice {
    pub fn new(config: &crate::config::DeviceConfig, profile: &ModbusProfile) -> Self {
        let poll_ms = config.poll_ms.unwrap_or(profile.poll_ms);
        // The device's own setting wins over the profile's; reads over time within each.
        let reads = match (config.debounce_reads, config.debounce_ms) {
            (Some(n), _) => n,
            (None, Some(ms)) => reads_for(ms, poll_ms),
            (None, None) => profile
                .debounce_reads
                .unwrap_or_else(|| reads_for(profile.debounce_ms, poll_ms)),
        };
        let logic = DeviceLogic::new(profile, &config.roles, reads);
        PolledDevice {
            name: config.name.clone(),
            lane: config.lane.clone(),
            slave: config.slave.unwrap_or(profile.default_slave),
            points: profile.points.clone(),
            requests: plan(&profile.points),
            bound: logic.bound_points(),
            logic,
            health: SlaveHealth::new(profile.retries, profile.isolate_ms),
            fault: FaultWatch::default(),
            counters: Default::default(),
            period: Duration::from_millis(poll_ms),
            timeout: Duration::from_millis(profile.timeout_ms),
            next_due: Instant::now(),
            probe_at: None,
            failed_probes: 0,
        }
    }

    /// After a poll: a slave isolated by this poll gets an early probe, sooner the
    /// fewer probes it has failed since it last answered.
    fn schedule_probe(&mut self, outcome: PollOutcome, now: Timestamp) {
        if outcome != PollOutcome::NoAnswer {
            self.probe_at = None;
            self.failed_probes = 0;
            return;
        }
        if let Some(until) = self.health.isolated_until().filter(|u| *u > now) {
            let delay = probe_delay_ms(self.failed_probes, until.millis() - now.millis());
            self.probe_at = Some(now.plus_millis(delay));
            if self.probe_at.is_some_and(|p| p < until) {
                self.failed_probes = self.failed_probes.saturating_add(1);
            }
        }
    }

    /// When this device should next be polled, isolation included.
    fn due(&self, now_ts: Timestamp, now: Instant) -> Instant {
        let isolated = match (self.health.isolated_until(), self.probe_at) {
            (Some(until), Some(probe)) => Some(until.min(probe)),
            (until, _) => until,
        };
        match isolated {
            Some(until) if until > now_ts => {
                let wait = Duration::from_millis((until.millis() - now_ts.millis()).max(0) as u64);
                self.next_due.max(now + wait)
            }
            _ => self.next_due,
        }
    }
}

/// A bus: its devices and timing.
pub struct BusSpec {
    pub name: String,
    pub devices: Vec<PolledDevice>,
    /// Silence between the end of one exchange and the next request.
    pub inter_frame: Duration,
    /// The serial device path, checked after silent polls: when the name now points
    /// elsewhere (adapter re-enumerated, pty recreated) the port is reopened.
    pub port_path: Option<PathBuf>,
}

/// The first early probe of a slave that has just been isolated.
const FIRST_PROBE_MS: i64 = 1_000;

/// How long after its isolation a slave is probed, when `failed_probes` probes of this
/// isolation went unanswered: 1 s, doubling per failed probe, never past the
/// isolation itself (`isolation_ms`). Pure.
pub fn probe_delay_ms(failed_probes: u32, isolation_ms: i64) -> i64 {
    let delay = FIRST_PROBE_MS.saturating_mul(1_i64 << failed_probes.min(20));
    delay.min(isolation_ms.max(0))
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// Runs the bus until `shutdown` turns true. `open` (re)opens the transport.
pub async fn run_bus<L, F, Fut>(
    mut spec: BusSpec,
    mut open: F,
    tx: mpsc::Sender<RawEvent>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: ModbusLink,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<L, LinkError>>,
{
    let mut backoff = BACKOFF_MIN;
    let mut open_failures_logged = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let opened_target = spec
            .port_path
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok());
        let mut link = match open().await {
            Ok(link) => {
                metrics::REOPENS.with_label_values(&[&spec.name]).inc();
                tracing::info!(bus = %spec.name, "bus opened");
                open_failures_logged = false;
                backoff = BACKOFF_MIN;
                link
            }
            Err(e) => {
                if !open_failures_logged {
                    tracing::warn!(bus = %spec.name, error = %e, "cannot open bus; retrying with backoff");
                    open_failures_logged = true;
                }
                if !lose_transport(&mut spec, &tx).await
                    || wait_or_shutdown(backoff, &mut shutdown).await
                {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // Poll until the transport fails.
        loop {
            let now_ts = Timestamp::now();
            let now = Instant::now();
            let Some(index) =
                (0..spec.devices.len()).min_by_key(|i| spec.devices[*i].due(now_ts, now))
            else {
                // No devices: nothing to do but wait for shutdown.
                let _ = shutdown.changed().await;
                return;
            };
            let due = spec.devices[index].due(now_ts, now);
            if due > now {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            let device = &mut spec.devices[index];
            let result = poll_device(device, &mut link, spec.inter_frame, &spec.name).await;
            let (crc, garbage) = link.take_counts();
            if crc > 0 {
                metrics::CRC_ERRORS
                    .with_label_values(&[&spec.name])
                    .inc_by(crc);
            }
            if garbage > 0 {
                metrics::GARBAGE_BYTES
                    .with_label_values(&[&spec.name])
                    .inc_by(garbage);
            }
            let device = &mut spec.devices[index];
            device.next_due = (device.next_due + device.period).max(Instant::now());
            let mut port_gone = false;
            match result {
                Ok((outcome, facts, problem)) => {
                    let now_ts = Timestamp::now();
                    let mut events = facts;
                    if outcome != PollOutcome::NoAnswer
                        && let Some(fault_fact) = device.fault.record(problem.as_ref())
                    {
                        match &fault_fact {
                            EventKind::Fault { problem: Some(p) } => {
                                tracing::warn!(device = %device.name, bus = %spec.name, slave = device.slave, problem = %p, "device faulty: it answers, but the lane gets no usable data");
                            }
                            _ => {
                                tracing::warn!(device = %device.name, bus = %spec.name, slave = device.slave, "device answers usable data again");
                            }
                        }
                        events.insert(0, fault_fact);
                    }
                    let link_fact = device.health.record(outcome, now_ts);
                    device.schedule_probe(outcome, now_ts);
                    if let Some(link_fact) = link_fact {
                        if let EventKind::Link { up } = link_fact {
                            tracing::warn!(device = %device.name, bus = %spec.name, up, "device link changed");
                        }
                        events.insert(0, link_fact);
                    }
                    for kind in events {
                        if !emit(&tx, &device.lane, &device.name, now_ts, kind).await {
                            return;
                        }
                    }
                    if outcome == PollOutcome::NoAnswer
                        && let Some(path) = &spec.port_path
                    {
                        port_gone = std::fs::canonicalize(path).ok() != opened_target;
                    }
                }
                Err(e) => {
                    tracing::warn!(bus = %spec.name, error = %e, "bus transport lost; reopening");
                    port_gone = true;
                }
            }
            if port_gone {
                if !lose_transport(&mut spec, &tx).await
                    || wait_or_shutdown(BACKOFF_MIN, &mut shutdown).await
                {
                    return;
                }
                break;
            }
        }
    }
}

/// One poll's result: how it went, the facts, and why the lane got no usable data
/// (the first problem found), if so.
type Polled = (PollOutcome, Vec<EventKind>, Option<Problem>);

/// Polls one device: every planned request, with the bus silence between them.
/// `Err` only for a transport failure.
async fn poll_device<L: ModbusLink>(
    device: &mut PolledDevice,
    link: &mut L,
    inter_frame: Duration,
    bus: &str,
) -> Result<Polled, LinkError> {
    metrics::POLLS.with_label_values(&[&device.name]).inc();
    let mut answers = Vec::with_capacity(device.requests.len());
    let mut outcome = PollOutcome::Answered;
    let mut problem = None;
    for req in &device.requests {
        let result = link.read(device.slave, req, device.timeout).await;
        tokio::time::sleep(inter_frame).await;
        match result {
            Ok(data) => answers.push(Some(data)),
            Err(LinkError::Exception(code)) if exception_is_no_answer(code) => {
                // The gateway answered for a slave that did not.
                metrics::TIMEOUTS.with_label_values(&[&device.name]).inc();
                tracing::debug!(device = %device.name, bus, code, "gateway reports no answer from the slave");
                return Ok((PollOutcome::NoAnswer, Vec::new(), None));
            }
            Err(LinkError::Exception(code)) => {
                metrics::EXCEPTIONS.with_label_values(&[&device.name]).inc();
                tracing::debug!(device = %device.name, bus, code, function = req.function.code(), address = req.address, count = req.count, "modbus exception");
                outcome = PollOutcome::Exception;
                answers.push(None);
                let points = points_in(&device.points, &device.bound, req);
                if problem.is_none() && !points.is_empty() {
                    problem = Some(Problem::Exception {
                        code,
                        request: *req,
                        points,
                    });
                }
            }
            Err(LinkError::Timeout | LinkError::Corrupt) => {
                metrics::TIMEOUTS.with_label_values(&[&device.name]).inc();
                // The rest of this poll would only time out too.
                return Ok((PollOutcome::NoAnswer, Vec::new(), None));
            }
            Err(e @ LinkError::Transport(_)) => return Err(e),
        }
    }
    let values = decode(&device.points, &device.requests, &answers);
    for (i, v) in &values {
        if let (Value::Number(n), Some(p)) = (v, device.points.get(*i))
            && matches!(p.kind, PointKind::U16 | PointKind::I16 | PointKind::U32)
        {
            metrics::VALUES
                .with_label_values(&[&device.name, &p.name])
                .set(*n);
        }
    }
    if problem.is_none() {
        problem = impossible(&device.points, &values, &mut device.counters);
    }
    let facts = device.logic.on_values(&values);
    Ok((outcome, facts, problem))
}

/// Marks every device on the bus down. Returns false when the receiver is gone.
async fn lose_transport(spec: &mut BusSpec, tx: &mpsc::Sender<RawEvent>) -> bool {
    let now = Timestamp::now();
    for d in &mut spec.devices {
        if let Some(kind) = d.health.transport_lost() {
            tracing::warn!(device = %d.name, bus = %spec.name, up = false, "device link changed");
            if !emit(tx, &d.lane, &d.name, now, kind).await {
                return false;
            }
        }
        d.next_due = Instant::now();
    }
    true
}

/// Sleeps; true when shutdown was requested meanwhile.
async fn wait_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slave_that_just_went_silent_is_probed_soon_and_one_that_keeps_failing_backs_off_to_the_isolation()
     {
        let delays: Vec<i64> = (0..6).map(|n| probe_delay_ms(n, 5_000)).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
        assert_eq!(probe_delay_ms(u32::MAX, 5_000), 5_000);
        assert_eq!(probe_delay_ms(0, 100), 100, "never past the isolation");
    }
}
