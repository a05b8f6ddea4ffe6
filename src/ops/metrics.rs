//! The operations metrics: what [`OpsState`](super::OpsState) is told, as Prometheus
//! gauges and counters in a registry of its own (so two states in one test process do
//! not share values; `/metrics` serves it beside the default registry of
//! [`crate::metrics`]). Each metric is declared once, one line each, and each update
//! method mirrors one call of the state's feeding API, so the state never names a
//! metric and the names the dashboards and alert rules in `packaging/monitoring/`
//! depend on live here only.

use crate::health::{DeviceState, LinkState};
use crate::metrics::Metric;
use crate::time::Timestamp;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use std::collections::BTreeMap;
use std::time::Duration;

/// Builds `M` and registers it in `registry`. The definitions are constants and each
/// is registered once in a fresh registry, so neither step can fail.
fn registered_in<M: Metric>(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> M {
    let metric = M::build(name, help, labels).expect("constant metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric in a fresh registry");
    metric
}

/// Declares the struct of the metrics below and `Metrics::register`, which builds
/// each in a fresh registry (the entries read as those of [`crate::metrics::statics!`]).
macro_rules! own_metrics {
    ($($field:ident: $ty:ty = ($metric:expr, $help:expr $(, [$($label:expr),*])?);)*) => {
        /// The metrics of one [`OpsState`](super::OpsState), in its own registry.
        pub(super) struct Metrics {
            pub(super) registry: Registry,
            $($field: $ty,)*
        }

        impl Metrics {
            fn register() -> Self {
                let registry = Registry::new();
                Metrics {
                    $($field: registered_in(&registry, $metric, $help, &[$($($label),*)?]),)*
                    registry,
                }
            }
        }
    };
}

own_metrics! {
    passages: IntCounterVec = ("parking_bridge_passages_total", "Passages decided, by lane and case", ["lane", "case"]);
    platform_answers: IntCounterVec = ("parking_bridge_platform_answers_total", "Platform answers by result code (unreachable: no answer)", ["result"]);
    platform_up: IntGauge = ("parking_bridge_platform_up", "1 when the last platform call got an answer");
    platform_last_success: Gauge = ("parking_bridge_platform_last_success_timestamp_seconds", "Unix time of the last successful platform answer");
    heartbeat_last_success: Gauge = ("parking_bridge_heartbeat_last_success_timestamp_seconds", "Unix time of the last accepted heartbeat");
    outbox_depth: IntGauge = ("parking_bridge_outbox_depth", "Reports waiting for delivery");
    outbox_oldest_age: Gauge = ("parking_bridge_outbox_oldest_age_seconds", "Age of the oldest undelivered report");
    occupied: IntGauge = ("parking_bridge_occupied_spaces", "Spaces occupied");
    total: IntGauge = ("parking_bridge_total_spaces", "Spaces in the lot");
    device_up: IntGaugeVec = ("parking_bridge_device_up", "1 when the device link is up", ["lane", "device"]);
    device_faulty: IntGaugeVec = ("parking_bridge_device_faulty", "1 when the device answers but with exceptions or impossible data", ["lane", "device"]);
    clock_synchronised: IntGauge = ("parking_bridge_clock_synchronized", "1 when the system clock is NTP-synchronised");
    clock_suspect: IntGauge = ("parking_bridge_clock_suspect", "1 while report times are not trustworthy");
    clock_jumps: IntCounter = ("parking_bridge_clock_jumps_total", "Wall-clock jumps detected");
    alarms: IntCounter = ("parking_bridge_alarms_total", "Alarms raised");
    healthy: IntGauge = ("parking_bridge_healthy", "1 when /healthz would answer 200");
    lane_mismatch: IntGaugeVec = ("parking_bridge_lane_mismatch", "1 while a lane's devices and passages disagree (reason: reads_without_passages, vehicles_without_reads, never_reports)", ["lane", "reason"]);
    disk_used: IntGauge = ("parking_bridge_storage_used_bytes", "Bytes used by stored data");
    disk_budget: IntGauge = ("parking_bridge_storage_budget_bytes", "Bytes stored data may use");
    passages_clock_suspect: IntCounter = ("parking_bridge_passages_clock_suspect_total", "Passages recorded while the clock was suspect (their reports are flagged)");
    build: IntGaugeVec = ("parking_bridge_build_info", "Version of the running binary", ["version"]);
}

/// Seconds since the Unix epoch, as the `_timestamp_seconds` gauges hold them.
fn unix_seconds(at: Timestamp) -> f64 {
    at.0 as f64 / 1000.0
}

/// A count for an `IntGauge` (saturating; no store holds 2⁶³ of anything).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric, with the lot's configured size and the build's version.
    pub(super) fn new(total_spaces: i64) -> Self {
        let m = Self::register();
        m.total.set(total_spaces);
        m.build
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    pub(super) fn passage(&self, lane: &str, case: &str, clock_suspect: bool) {
        self.passages.with_label_values(&[lane, case]).inc();
        if clock_suspect {
            self.passages_clock_suspect.inc();
        }
    }

    /// `label`: the result code, `ok` or `unreachable`.
    pub(super) fn platform_answer(&self, label: &str, ok: bool, at: Timestamp) {
        self.platform_answers.with_label_values(&[label]).inc();
        self.platform_up.set(i64::from(ok));
        if ok {
            self.platform_last_success.set(unix_seconds(at));
        }
    }

    pub(super) fn heartbeat_accepted(&self, at: Timestamp) {
        self.heartbeat_last_success.set(unix_seconds(at));
    }

    pub(super) fn alarm(&self) {
        self.alarms.inc();
    }

    pub(super) fn lane_warning(&self, lane: &str, key: &str, standing: bool) {
        self.lane_mismatch
            .with_label_values(&[lane, key])
            .set(i64::from(standing));
    }

    pub(super) fn outbox(&self, depth: u64, oldest_age: Option<Duration>) {
        self.outbox_depth.set(count(depth));
        self.outbox_oldest_age
            .set(oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0));
    }

    pub(super) fn occupancy(&self, occupied: i64, total: i64) {
        self.occupied.set(occupied);
        self.total.set(total);
    }

    pub(super) fn disk(&self, used_bytes: u64, budget_bytes: u64) {
        self.disk_used.set(count(used_bytes));
        self.disk_budget.set(count(budget_bytes));
    }

    /// `synchronised`: `None` (unknown) shows as synchronised, as nothing says otherwise.
    pub(super) fn clock(&self, synchronised: Option<bool>, suspect: bool, jumped: bool) {
        self.clock_synchronised
            .set(i64::from(synchronised.unwrap_or(true)));
        self.clock_suspect.set(i64::from(suspect));
        if jumped {
            self.clock_jumps.inc();
        }
    }

    /// Mirrors the shared device map (just before a scrape).
    pub(super) fn devices(&self, devices: &BTreeMap<String, DeviceState>) {
        for (device, state) in devices {
            let labels = [state.lane.as_str(), device.as_str()];
            self.device_up
                .with_label_values(&labels)
                .set(i64::from(state.up));
            self.device_faulty
                .with_label_values(&labels)
                .set(i64::from(state.state() == LinkState::Faulty));
        }
    }

    pub(super) fn healthy(&self, healthy: bool) {
        self.healthy.set(i64::from(healthy));
    }
}
