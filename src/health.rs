//! Device health shared between the lane layer (which learns of link changes) and
//! the heartbeat / status page (which report it). One small map behind a mutex.

use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub lane: String,
    pub up: bool,
    /// When the link last changed.
    pub since: Timestamp,
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
        let mut map = self.lock();
        // Logged once per change, with how long the link was down when it comes back;
        // the per-poll detail is the drivers' debug log, the state is in /metrics.
        match map.get_mut(device) {
            Some(s) if s.up == up => {}
            Some(s) => {
                if up {
                    let down_secs = (at.0 - s.since.0).max(0) / 1000;
                    tracing::info!(device, lane, down_secs, "device link up again");
                } else {
                    tracing::warn!(device, lane, "device link down");
                }
                s.up = up;
                s.since = at;
            }
            None => {
                if !up {
                    tracing::warn!(device, lane, "device link down");
                }
                map.insert(
                    device.to_string(),
                    DeviceState {
                        lane: lane.to_string(),
                        up,
                        since: at,
                    },
                );
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceState> {
        self.lock().clone()
    }

    /// Lanes that have at least one device and all of whose devices have been down for
    /// longer than `threshold_ms` at `now`.
    pub fn lost_lanes(&self, now: Timestamp, threshold_ms: i64) -> Vec<String> {
        let map = self.lock();
        let mut lanes: BTreeMap<&str, bool> = BTreeMap::new();
        // A lot-wide device (space counter, no lane) going down loses no lane.
        for s in map.values().filter(|s| !s.lane.is_empty()) {
            let lost = !s.up && now.0 - s.since.0 > threshold_ms;
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
    fn a_device_down_is_logged_when_it_goes_down_and_when_it_comes_back() {
        use crate::ops::logging::{Style, build, tests::Captured};
        let out = Captured::default();
        let (sub, _) = build(Style::Json, "info", out.clone()).unwrap();
        let h = Health::new();
        tracing::subscriber::with_default(sub, || {
            h.set("cam-1", "entry-1", true, Timestamp(0));
            for i in 0..100 {
                // Every poll reports the same state.
                h.set("cam-1", "entry-1", false, Timestamp(1_000 + i * 100));
            }
            h.set("cam-1", "entry-1", true, Timestamp(91_000));
        });
        let log = out.text();
        assert_eq!(log.matches("device link down").count(), 1, "{log}");
        assert_eq!(log.matches("device link up again").count(), 1, "{log}");
        assert!(log.contains(r#""down_secs":90"#), "{log}");
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
}
