//! The health rules: pure functions of a [`StatusView`], the site's thresholds
//! (`[http]`) and the time, passed in, that say why the bridge is degraded
//! ([`StatusView::problems`]) and how `/healthz` sums it up ([`StatusView::level`]:
//! ok, degraded or failing). Nothing here reads a clock or a lock, so every rule is
//! tested by building a view and moving `now`, without sleeping; the status page,
//! `/healthz`, the `parking_bridge_healthy` gauge and `doctor` all judge through these.

use super::clock::Suspicion;
use super::disk::FsSpace;
use super::status::{ClusterStatus, StatusView};
use crate::config::HttpConfig;
use crate::health::LinkState;
use crate::time::Timestamp;

/// How `/healthz` sums the bridge up: `ok` and `degraded` answer 200 (with the reasons),
/// `failing` answers 503 — only what takes the bridge out of service: the platform
/// unreachable past the threshold, the state database unusable, every lane blind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthLevel {
    Ok,
    Degraded,
    Failing,
}

impl HealthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthLevel::Ok => "ok",
            HealthLevel::Degraded => "degraded",
            HealthLevel::Failing => "failing",
        }
    }
}

/// A threshold of the config in seconds, in milliseconds (saturating: a huge value
/// means never).
fn limit_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000
}

impl StatusView {
    /// The level for `problems` (from [`problems`](Self::problems) at the same `now`).
    /// Pure.
    pub fn level(&self, now: Timestamp, http: &HttpConfig, problems: &[String]) -> HealthLevel {
        if self.platform_unreachable(now, http)
            || self.store_error.is_some()
            || self.every_lane_blind(now, http)
        {
            HealthLevel::Failing
        } else if problems.is_empty() {
            HealthLevel::Ok
        } else {
            HealthLevel::Degraded
        }
    }

    /// No successful answer (since the start, when none yet) for longer than the
    /// threshold.
    fn platform_unreachable(&self, now: Timestamp, http: &HttpConfig) -> bool {
        now.0 - self.platform.last_ok.unwrap_or(self.started).0 > limit_ms(http.platform_down_secs)
    }

    /// Every configured lane has devices, all down or faulty past the threshold.
    fn every_lane_blind(&self, now: Timestamp, http: &HttpConfig) -> bool {
        let limit_ms = limit_ms(http.device_down_secs);
        !self.lanes.is_empty()
            && self.lanes.iter().all(|lane| {
                let mut devices = self
                    .devices
                    .values()
                    .filter(|d| d.lane == lane.id)
                    .peekable();
                devices.peek().is_some()
                    && devices.all(|d| d.state() != LinkState::Up && now.0 - d.since.0 > limit_ms)
            })
    }

    /// Why the bridge is degraded at `now`, empty when healthy. `fs` is the file system
    /// holding the storage dir, when it could be read. Pure.
    pub fn problems(&self, now: Timestamp, http: &HttpConfig, fs: Option<FsSpace>) -> Vec<String> {
        let mut out = Vec::new();
        if self.platform_unreachable(now, http) {
            let since = match self.platform.last_ok {
                Some(t) => format!("no successful answer for {} s", (now.0 - t.0) / 1000),
                None => format!(
                    "no successful answer since start ({} s)",
                    (now.0 - self.started.0) / 1000
                ),
            };
            let code = self.platform.last_code.as_deref().unwrap_or("no attempt");
            if self
                .cluster
                .as_ref()
                .is_some_and(ClusterStatus::is_lane_node)
            {
                out.push(format!("lot node unreachable: {since}, {code}"));
            } else {
                out.push(format!("platform unreachable: {since}, last result {code}"));
            }
        }
        let device_limit_ms = limit_ms(http.device_down_secs);
        for (device, state) in &self.devices {
            let place = if state.lane.is_empty() {
                "lot".to_string()
            } else {
                format!("lane {}", state.lane)
            };
            // Faulty is a confirmed misconfiguration (several polls), not a blip a
            // grace period should hide: degraded at once.
            if let (LinkState::Faulty, Some(why)) = (state.state(), &state.fault) {
                out.push(format!("{place}: device {device} faulty: {why}"));
            }
            if !state.up && now.0 - state.since.0 > device_limit_ms {
                out.push(format!(
                    "{place}: device {} down for {} s",
                    device,
                    (now.0 - state.since.0) / 1000
                ));
            }
        }
        let limit = u64::from(http.disk_full_percent);
        if let Some((used, budget)) = self.disk
            && budget > 0
            && used.saturating_mul(100) / budget >= limit
        {
            out.push(format!(
                "storage budget {}% used ({used} of {budget} bytes)",
                used.saturating_mul(100) / budget
            ));
        }
        if let Some(fs) = fs
            && u64::from(fs.used_percent()) >= limit
        {
            out.push(format!(
                "disk holding the storage dir {}% full",
                fs.used_percent()
            ));
        }
        if http.require_clock_sync && self.clock.synchronised == Some(false) {
            out.push("system clock not synchronised (NTP)".to_string());
        }
        if let Some(Suspicion::Jumped(j)) = &self.clock.suspicion {
            out.push(format!("wall clock jumped by {:+} ms recently", j.delta_ms));
        }
        for (lane, warnings) in &self.lane_warnings {
            for w in warnings {
                out.push(format!("lane {lane}: {w}"));
            }
        }
        if let Some(n) = self.held
            && n > 0
        {
            out.push(format!(
                "{n} report(s) held after repeated refusals by the platform (parking-bridge outbox held)"
            ));
        }
        if let Some(e) = &self.store_error {
            out.push(format!("state database unusable: {e}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::DeviceState;
    use crate::ops::OpsState;
    use crate::ops::state::tests::config;

    use crate::ops::T0;

    /// The view of a fresh bridge started at `T0`, with lanes `entry-1` and `exit-1`.
    fn view() -> StatusView {
        let mut view = OpsState::new(&config()).view();
        view.started = T0;
        view
    }

    fn device(lane: &str, up: bool, fault: Option<&str>, since: Timestamp) -> DeviceState {
        DeviceState {
            lane: lane.to_string(),
            up,
            fault: fault.map(str::to_string),
            since,
        }
    }

    /// A bridge fed through its state, the platform answering at its start (`now`).
    fn running() -> (OpsState, HttpConfig, Timestamp) {
        let config = config();
        let ops = OpsState::new(&config);
        let now = ops.view().started;
        ops.record_platform_answer(true, Some("SUCCESS"), now);
        (ops, config.http, now)
    }

    fn judge(view: &StatusView, now: Timestamp, http: &HttpConfig) -> (HealthLevel, Vec<String>) {
        let problems = view.problems(now, http, None);
        (view.level(now, http, &problems), problems)
    }

    #[test]
    fn platform_silence_fails_only_past_the_threshold_counted_from_the_start() {
        let http = HttpConfig::default();
        let limit = limit_ms(http.platform_down_secs);
        let mut view = view();
        assert_eq!(
            judge(&view, T0.plus_millis(limit), &http).0,
            HealthLevel::Ok
        );
        let (level, problems) = judge(&view, T0.plus_millis(limit + 1_000), &http);
        assert_eq!(level, HealthLevel::Failing);
        assert_eq!(
            problems,
            [format!(
                "platform unreachable: no successful answer since start ({} s), last result no attempt",
                limit / 1000 + 1
            )]
        );
        view.platform.last_ok = Some(T0.plus_millis(10_000));
        view.platform.last_code = Some("unreachable".into());
        assert_eq!(
            judge(&view, T0.plus_millis(limit + 1_000), &http).0,
            HealthLevel::Ok
        );
        let (level, problems) = judge(&view, T0.plus_millis(limit + 12_000), &http);
        assert_eq!(level, HealthLevel::Failing);
        assert!(
            problems[0].ends_with(&format!(
                "for {} s, last result unreachable",
                limit / 1000 + 2
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn a_lane_node_names_the_lot_node_not_the_platform() {
        let http = HttpConfig::default();
        let mut view = view();
        view.cluster = Some(ClusterStatus {
            role: "lane".into(),
            ..ClusterStatus::default()
        });
        view.platform.last_code = Some("broker unreachable".into());
        let (_, problems) = judge(
            &view,
            T0.plus_millis(limit_ms(http.platform_down_secs) + 1),
            &http,
        );
        assert!(
            problems[0].starts_with("lot node unreachable: ")
                && problems[0].ends_with(", broker unreachable"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_faulty_device_degrades_at_once_a_down_one_after_the_grace_period() {
        let http = HttpConfig::default();
        let grace = limit_ms(http.device_down_secs);
        let mut view = view();
        view.platform.last_ok = Some(T0);
        view.devices.insert(
            "pay".into(),
            device("", true, Some("register 7: exception 2"), T0),
        );
        view.devices
            .insert("cam-1".into(), device("entry-1", false, None, T0));
        let (level, problems) = judge(&view, T0.plus_millis(grace), &http);
        assert_eq!(level, HealthLevel::Degraded);
        assert_eq!(
            problems,
            ["lot: device pay faulty: register 7: exception 2"]
        );
        let (_, problems) = judge(&view, T0.plus_millis(grace + 1_000), &http);
        assert_eq!(
            problems[0],
            format!("lane entry-1: device cam-1 down for {} s", grace / 1000 + 1)
        );
    }

    #[test]
    fn every_lane_blind_fails_but_a_lane_without_devices_is_not_blind() {
        let http = HttpConfig::default();
        let later = T0.plus_millis(limit_ms(http.device_down_secs) + 1);
        let mut view = view();
        view.platform.last_ok = Some(later);
        view.devices
            .insert("cam-1".into(), device("entry-1", false, None, T0));
        assert_eq!(
            judge(&view, later, &http).0,
            HealthLevel::Degraded,
            "exit-1 has no devices"
        );
        view.devices.insert(
            "cam-2".into(),
            device("exit-1", true, Some("impossible plate"), T0),
        );
        assert_eq!(judge(&view, later, &http).0, HealthLevel::Failing);
        view.devices
            .insert("cam-2".into(), device("exit-1", true, None, T0));
        assert_eq!(judge(&view, later, &http).0, HealthLevel::Degraded);
    }

    #[test]
    fn healthy_until_platform_silent_past_threshold_then_healthy_again() {
        let (ops, mut http, start) = running();
        http.require_clock_sync = true;
        assert!(
            ops.view()
                .problems(start.plus_millis(60_000), &http, None)
                .is_empty()
        );
        ops.record_platform_answer(false, None, start.plus_millis(61_000));
        let problems = ops.view().problems(start.plus_millis(301_000), &http, None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("platform unreachable"), "{problems:?}");
        assert!(problems[0].contains("unreachable"), "{problems:?}");
        ops.record_platform_answer(true, Some("SUCCESS"), start.plus_millis(302_000));
        assert!(
            ops.view()
                .problems(start.plus_millis(303_000), &http, None)
                .is_empty()
        );
    }

    #[test]
    fn clock_held_reports_and_one_device_down_degrade_but_only_outages_fail() {
        let (ops, http, now) = running();
        let level = |ops: &OpsState, now| judge(&ops.view(), now, &http).0;
        assert_eq!(level(&ops, now), HealthLevel::Ok);
        ops.set_clock(Some(false), Some(Suspicion::Unsynchronised), None);
        assert_eq!(level(&ops, now), HealthLevel::Degraded);
        ops.set_held(2);
        assert!(
            ops.view()
                .problems(now, &http, None)
                .iter()
                .any(|p| p.contains("2 report(s) held"))
        );
        ops.health()
            .set("cam-1", "entry-1", false, now.plus_millis(-120_000));
        assert_eq!(level(&ops, now), HealthLevel::Degraded, "one lane blind");
        ops.health()
            .set("cam-2", "exit-1", false, now.plus_millis(-120_000));
        assert_eq!(level(&ops, now), HealthLevel::Failing, "every lane blind");
        ops.health().set("cam-2", "exit-1", true, now);
        assert_eq!(level(&ops, now), HealthLevel::Degraded);
        ops.set_store_error(Some("disk I/O error".into()));
        assert_eq!(level(&ops, now), HealthLevel::Failing);
        ops.set_store_error(None);
        let later = now.plus_millis(limit_ms(http.platform_down_secs) + 1_000);
        assert_eq!(
            level(&ops, later),
            HealthLevel::Failing,
            "platform unreachable"
        );
    }

    #[test]
    fn device_down_disk_full_and_clock_are_reasons() {
        let (ops, http, now) = running();
        ops.health()
            .set("cam-1", "entry-1", false, now.plus_millis(-120_000));
        ops.set_disk(95, 100);
        ops.set_clock(Some(false), Some(Suspicion::Unsynchronised), None);
        let fs = FsSpace {
            total: 100,
            available: 5,
        };
        let problems = ops.view().problems(now, &http, Some(fs));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].contains("lane entry-1: device cam-1 down"),
            "{problems:?}"
        );
        assert!(problems[1].contains("storage budget 95%"), "{problems:?}");
        assert!(problems[2].contains("95% full"), "{problems:?}");
        assert!(
            problems[3].contains("clock not synchronised"),
            "{problems:?}"
        );
        let relaxed = HttpConfig {
            require_clock_sync: false,
            ..http
        };
        assert_eq!(ops.view().problems(now, &relaxed, Some(fs)).len(), 3);
    }
}
