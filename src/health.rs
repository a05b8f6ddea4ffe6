//! Device health shared between the lane layer (which learns of link changes) and
//! the heartbeat / status page (which report it). One small map behind a mutex. Also
//! the tasks' watchdog handle ([`Liveness`]), a leaf here so the tasks below `ops`
//! take it as a parameter.
//!
//! A device is `up` (answers with data), `faulty` (answers, but with Modbus
//! exceptions or impossible values for what the lane needs) or `down` (no answer).
//! Down wins over faulty: a device that stopped answering says nothing about its data.

use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A task's "I am still making progress" handle for the watchdog: the task ticks it
/// on every turn of its loop; whoever registered it (the status page's watchdog,
/// `ops::OpsState::liveness`) reads the last tick. Here, beside device health, so
/// that the tasks below `ops` (uploader, lane task) take it as a parameter.
#[derive(Clone)]
pub struct Liveness {
    base: Instant,
    /// Milliseconds since `base` of the last tick.
    last: Arc<AtomicU64>,
}

impl Liveness {
    /// A handle whose ticks are stored in `last`, in milliseconds since `base`.
    pub fn new(base: Instant, last: Arc<AtomicU64>) -> Self {
        Liveness { base, last }
    }

    pub fn tick(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub lane: String,
    /// The link: the device answers.
    pub up: bool,
    /// Why its answers are unusable (the read and the exception or value), while they are.
    pub fault: Option<String>,
    /// When [`state`](Self::state) last changed.
    pub since: Timestamp,
}

/// The three states an operator sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkState {
    Up,
    Faulty,
    Down,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Faulty => "faulty",
            LinkState::Down => "down",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeviceState {
    pub fn state(&self) -> LinkState {
        match (self.up, &self.fault) {
            (false, _) => LinkState::Down,
            (true, Some(_)) => LinkState::Faulty,
            (true, None) => LinkState::Up,
        }
    }
}

/// Link state of every configured device, by device name.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, DeviceState>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a device's link state; a repeat of the current state keeps `since`.
    pub fn set(&self, device: &str, lane: &str, up: bool, at: Timestamp) {
        self.update(device, lane, at, |s| s.up = up);
    }

    /// Records that a device's answers are unusable (`Some(why)`) or usable again.
    /// A device first heard of through a fault is taken to answer (it sent exceptions).
    pub fn set_fault(&self, device: &str, lane: &str, fault: Option<String>, at: Timestamp) {
        self.update(device, lane, at, |s| s.fault = fault);
    }

    fn update(
        &self,
        device: &str,
        lane: &str,
        at: Timestamp,
        change: impl FnOnce(&mut DeviceState),
    ) {
        let mut map = self.lock();
        let entry = map
            .entry(device.to_string())
            .or_insert_with(|| DeviceState {
                lane: lane.to_string(),
                up: true,
                fault: None,
                since: at,
            });
        let before = entry.state();
        let before_since = entry.since;
        change(entry);
        let after = entry.state();
        if after != before {
            // Once per change: the driver warns when a device goes down or faulty (with
            // the bus, the read, the exception); here its return, with how long it was
            // out. The state is in /metrics.
            match after {
                LinkState::Up => {
                    let out_secs = (at.0 - before_since.0).max(0) / 1000;
                    tracing::info!(
                        device,
                        lane,
                        was = before.as_str(),
                        out_secs,
                        "device usable again"
                    );
                }
                LinkState::Down => tracing::debug!(device, lane, "device link down"),
                LinkState::Faulty => tracing::debug!(
                    device,
                    lane,
                    fault = entry.fault.as_deref().unwrap_or(""),
                    "device faulty"
                ),
            }
            entry.since = at;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceState> {
        self.lock().clone()
    }

    /// Lanes that have at least one device and all of whose devices have been down or
    /// faulty for longer than `threshold_ms` at `now`.
    pub fn lost_lanes(&self, now: Timestamp, threshold_ms: i64) -> Vec<String> {
        let map = self.lock();
        let mut lanes: BTreeMap<&str, bool> = BTreeMap::new();
        // A lot-wide device (space counter, no lane) going down loses no lane.
        for s in map.values().filter(|s| !s.lane.is_empty()) {
            let lost = s.state() != LinkState::Up && now.0 - s.since.0 > threshold_ms;
            let entry = lanes.entry(s.lane.as_str()).or_insert(true);
            *entry &= lost;
        }
        lanes
            .into_iter()
            .filter(|(_, lost)| *lost)
            .map(|(l, _)| l.to_string())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeviceState>> {
        // A panic while holding this lock leaves a plain map behind, still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_back_is_logged_once_with_how_long_it_was_out() {
        use crate::ops::logging::tests::json_log;
        let h = Health::new();
        let (_, log) = json_log("info", || {
            h.set("cam-1", "entry-1", true, Timestamp(0));
            for i in 0..100 {
                // Every poll reports the same state.
                h.set("cam-1", "entry-1", false, Timestamp(1_000 + i * 100));
            }
            h.set("cam-1", "entry-1", true, Timestamp(91_000));
        });
        assert!(!log.contains("WARN"), "the driver warned already: {log}");
        assert_eq!(log.matches("device usable again").count(), 1, "{log}");
        assert!(log.contains(r#""out_secs":90"#), "{log}");
    }

    #[test]
    fn lane_is_lost_only_when_all_its_devices_are_down_past_threshold() {
        let h = Health::new();
        h.set("io-1", "entry-1", true, Timestamp(0));
        h.set("cam-1", "entry-1", true, Timestamp(0));
        h.set("io-1", "entry-1", false, Timestamp(1_000));
        assert!(
            h.lost_lanes(Timestamp(100_000), 10_000).is_empty(),
            "camera still up"
        );
        h.set("cam-1", "entry-1", false, Timestamp(2_000));
        assert!(
            h.lost_lanes(Timestamp(5_000), 10_000).is_empty(),
            "not yet past threshold"
        );
        assert_eq!(
            h.lost_lanes(Timestamp(13_000), 10_000),
            vec!["entry-1".to_string()]
        );
        h.set("cam-1", "entry-1", false, Timestamp(12_500));
        assert_eq!(
            h.lost_lanes(Timestamp(13_000), 10_000),
            vec!["entry-1".to_string()],
            "repeat keeps since"
        );
        // A lot-wide space counter (no lane) down for long loses no lane.
        h.set("pgs", "", false, Timestamp(0));
        assert_eq!(
            h.lost_lanes(Timestamp(13_000), 10_000),
            vec!["entry-1".to_string()]
        );
    }

    #[test]
    fn a_faulty_device_blinds_its_lane_like_a_down_one() {
        let h = Health::new();
        h.set("io-1", "entry-1", true, Timestamp(0));
        h.set("cam-1", "entry-1", false, Timestamp(0));
        h.set_fault(
            "io-1",
            "entry-1",
            Some("exception 2".into()),
            Timestamp(1_000),
        );
        let s = &h.snapshot()["io-1"];
        assert_eq!((s.state(), s.since), (LinkState::Faulty, Timestamp(1_000)));
        assert!(h.lost_lanes(Timestamp(5_000), 10_000).is_empty());
        assert_eq!(h.lost_lanes(Timestamp(11_001), 10_000), vec!["entry-1"]);
        // Down wins over faulty, and the change restarts `since`.
        h.set("io-1", "entry-1", false, Timestamp(12_000));
        let s = &h.snapshot()["io-1"];
        assert_eq!((s.state(), s.since), (LinkState::Down, Timestamp(12_000)));
        // Back up, still faulty until the fault clears.
        h.set("io-1", "entry-1", true, Timestamp(13_000));
        assert_eq!(h.snapshot()["io-1"].state(), LinkState::Faulty);
        h.set_fault("io-1", "entry-1", None, Timestamp(14_000));
        assert_eq!(h.snapshot()["io-1"].state(), LinkState::Up);
        assert!(h.lost_lanes(Timestamp(30_000), 10_000).is_empty());
    }
}
