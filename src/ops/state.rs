//! [`OpsState`]: what the operator sees, fed by the running pipeline.
//!
//! One `OpsState` is made in `run` from the site config and cloned (an `Arc`, cheap)
//! into every task that has something to tell. All calls are synchronous, short, never
//! block on I/O and never fail, so they are safe to make from any task:
//!
//! | who | call | when |
//! |---|---|---|
//! | lanes | [`OpsState::record_passage`]`(lane, plate, case, at, snapshot_jpeg)` | a passage was decided (entry, exit, no-plate…); returns `true` when the clock was suspect, so the report can be flagged |
//! | lanes / drivers | [`OpsState::health`]`().set(device, lane, up, at)` | a device link went up or down (the shared [`Health`]) |
//! | lanes / store | [`OpsState::set_occupancy`]`(occupied, total)` | occupancy changed |
//! | uploader | [`OpsState::record_platform_answer`]`(ok, code, at)` | any platform answer or transport failure (`ok` = reached and understood; `code` = `result_code`, `None` when unreachable) |
//! | uploader | [`OpsState::record_heartbeat`]`(ok, at)` | a heartbeat was (not) accepted |
//! | store / uploader | [`OpsState::set_outbox`]`(depth, oldest_age)` | after each delivery round |
//! | feeder | [`OpsState::set_outbox_kinds`]`(kinds)` | pending and held reports per kind (the page's table), every second |
//! | store | [`OpsState::set_disk`]`(used_bytes, budget_bytes)` | after writing/pruning stored data |
//! | anyone | [`OpsState::alarm`]`(text, at)` | something an operator must act on (also logged at WARN) |
//! | lanes | [`OpsState::set_lane_warning`]`(lane, key, text)` | a lane's devices and its passages disagree (reads without passages…), or no longer do |
//! | uploader, lane tasks | [`OpsState::liveness`]`(name, max_silence)` → [`Liveness::tick`] | on every loop turn; a task silent for longer than `max_silence` stops the systemd watchdog pings |
//! | `run` | [`OpsState::mark_ready`] | the pipeline is up (first poll done): sends `READY=1` |
//!
//! `clock_suspect()` tells whether times stamped now are trustworthy (see
//! [`super::clock`]). The HTTP endpoint reads [`OpsState::view`] (a
//! [`StatusView`](super::status::StatusView), judged by [`super::health_rules`]) and the
//! metrics registry [`OpsState::registry`] (kept up by [`super::metrics`]).

use super::clock::{Jump, Suspicion};
use super::health_rules::HealthLevel;
use super::history::History;
use super::logging::LogPlate;
use super::metrics::Metrics;
use super::status::{
    Alarm, ClockView, ClusterSource, LaneInfo, OutboxKind, Passage, PlatformLink, PushView,
    StatusView,
};
use crate::config::{HttpConfig, SiteConfig};
use crate::health::{Health, Liveness};
use crate::time::Timestamp;
use prometheus::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Passages kept per lane for the status page.
pub const PASSAGES_PER_LANE: usize = 5;
/// Of those, how many keep their snapshot image (memory: a camera JPEG is 0.1–7 MB).
pub const SNAPSHOTS_PER_LANE: usize = 2;
/// Larger snapshots are not kept for the status page.
pub const MAX_SNAPSHOT_BYTES: usize = 4 * 1024 * 1024;
/// Recent alarms kept.
pub const ALARMS_KEPT: usize = 20;

/// Shared, cheap to clone. See the module documentation for who calls what.
#[derive(Clone)]
pub struct OpsState {
    inner: Arc<Inner>,
}

struct Inner {
    lot_no: String,
    offset: chrono::FixedOffset,
    lanes: Vec<LaneInfo>,
    http: HttpConfig,
    storage_dir: PathBuf,
    started: Timestamp,
    mono_base: Instant,
    health: Health,
    data: Mutex<Data>,
    metrics: Metrics,
    liveness: Mutex<Vec<(String, Duration, Arc<AtomicU64>)>>,
    ready: tokio::sync::watch::Sender<bool>,
    /// A node of a multi-PC lot: what it knows of the lot (given by the cluster
    /// module, which sits above ops).
    cluster: Mutex<Option<ClusterSource>>,
    /// `[camera_push] listen` and the push cameras, when there are any.
    push: Option<(String, Vec<crate::driver::http_push::PushCameraInfo>)>,
}

#[derive(Default)]
struct Data {
    next_id: u64,
    passages: BTreeMap<String, VecDeque<Passage>>,
    platform: PlatformLink,
    alarms: VecDeque<Alarm>,
    outbox: Option<(u64, Option<Duration>)>,
    occupancy: Option<(i64, i64)>,
    disk: Option<(u64, u64)>,
    clock: ClockView,
    history: History,
    outbox_kinds: Vec<OutboxKind>,
    /// Per lane, per warning key: what the operator must fix (see `set_lane_warning`).
    lane_warnings: BTreeMap<String, BTreeMap<String, String>>,
    held: Option<u64>,
    store_error: Option<String>,
}
impl OpsState {
    pub fn new(config: &SiteConfig) -> Self {
        Self::with_health(config, Health::new())
    }

    /// With a [`Health`] map made elsewhere (the lanes and heartbeat share it).
    pub fn with_health(config: &SiteConfig, health: Health) -> Self {
        let mut lane_warnings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let lanes = config
            .lanes
            .iter()
            .map(|l| {
                let summary = crate::config::lanes::LaneSummary::of(l, &config.devices);
                for w in &summary.warnings {
                    tracing::warn!(lane = %l.id, warning = %w, "lane configuration");
                }
                if summary.never_reports() {
                    let text = summary.warnings.first().cloned().unwrap_or_default();
                    lane_warnings
                        .entry(l.id.clone())
                        .or_default()
                        .insert("never_reports".to_string(), text);
                }
                LaneInfo {
                    id: l.id.clone(),
                    direction: l.direction,
                    port_no: l.port_no.clone(),
                    layout: if summary.senses.is_manual() {
                        "manual".to_string()
                    } else if summary.never_reports() {
                        "none".to_string()
                    } else {
                        l.layout.as_str().to_string()
                    },
                }
            })
            .collect();
        let metrics = Metrics::new(config.lot.total_spaces);
        for (lane, warnings) in &lane_warnings {
            for key in warnings.keys() {
                metrics.lane_warning(lane, key, true);
            }
        }
        let (ready, _) = tokio::sync::watch::channel(false);
        // Profiles only name each push camera's vendor here; the drivers report a
        // missing one at start.
        let push = config.camera_push.as_ref().and_then(|p| {
            let profiles = crate::driver::load_profiles(config).unwrap_or_default();
            let cameras = crate::driver::http_push::push_cameras(config, &profiles);
            (!cameras.is_empty()).then(|| (p.listen.clone(), cameras))
        });
        OpsState {
            inner: Arc::new(Inner {
                lot_no: config.lot.parking_lot_no.clone(),
                offset: crate::time::parse_offset(&config.platform.utc_offset)
                    .unwrap_or_else(crate::time::china_standard_time),
                lanes,
                http: config.http.clone(),
                storage_dir: config.storage.dir.clone(),
                started: Timestamp::now(),
                mono_base: Instant::now(),
                health,
                data: Mutex::new(Data {
                    lane_warnings,
                    ..Data::default()
                }),
                metrics,
                liveness: Mutex::new(Vec::new()),
                ready,
                cluster: Mutex::new(None),
                push,
            }),
        }
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        lock(&self.inner.data)
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    pub fn http_config(&self) -> &HttpConfig {
        &self.inner.http
    }

    pub fn storage_dir(&self) -> &std::path::Path {
        &self.inner.storage_dir
    }

    /// This state's own metrics (the HTTP endpoint adds the default registry).
    pub fn registry(&self) -> &Registry {
        &self.inner.metrics.registry
    }

    /// A passage was decided. `plate` is the whole plate (`None` for a car without a
    /// readable plate); it is masked wherever it is shown unless configured otherwise.
    /// `case` is the lane's name for what happened (`entry`, `exit`, `no_plate`…).
    /// Returns `true` when the clock was suspect, so the caller can flag the report.
    pub fn record_passage(
        &self,
        lane: &str,
        plate: Option<&str>,
        case: &str,
        at: Timestamp,
        snapshot_jpeg: Option<Arc<Vec<u8>>>,
    ) -> bool {
        let snapshot_len = snapshot_jpeg.as_ref().map(|s| s.len());
        let snapshot = snapshot_jpeg.filter(|s| s.len() <= MAX_SNAPSHOT_BYTES);
        let clock_suspect;
        {
            let mut data = self.data();
            // Recorded already (by the lane, then seen again in the store): keep one,
            // adding the snapshot if this report has it.
            if let Some(existing) = data.passages.get_mut(lane).and_then(|list| {
                list.iter_mut()
                    // "entry · inferred" (the lane) and "entry" (the store) are one passage.
                    .find(|p| p.at == at && same_case(&p.case, case) && p.plate.as_deref() == plate)
            }) {
                if existing.snapshot.is_none() && snapshot.is_some() {
                    existing.snapshot = snapshot;
                    existing.snapshot_len = snapshot_len;
                }
                return existing.clock_suspect;
            }
            clock_suspect = data.clock.suspicion.is_some();
            data.next_id += 1;
            let passage = Passage {
                id: data.next_id,
                lane: lane.to_string(),
                plate: plate.map(str::to_string),
                case: case.to_string(),
                at,
                snapshot,
                snapshot_len,
                clock_suspect,
            };
            data.history.record_passage(lane, at);
            let list = data.passages.entry(lane.to_string()).or_default();
            list.push_front(passage);
            list.truncate(PASSAGES_PER_LANE);
            for old in list.iter_mut().skip(SNAPSHOTS_PER_LANE) {
                old.snapshot = None;
            }
        }
        // The suspect clock was logged once when it became suspect (set_clock); each
        // passage only counts, so a day of traffic does not repeat the warning.
        self.inner.metrics.passage(lane, case, clock_suspect);
        let plate_field = plate.unwrap_or("-");
        tracing::debug!(lane, plate = %LogPlate(plate_field), case, at = at.0, snapshot_len, clock_suspect, "passage");
        clock_suspect
    }

    /// The uploader got an answer (`ok`: reached and understood, whatever the verdict)
    /// or failed to reach the platform (`ok = false`, `code = None`).
    pub fn record_platform_answer(&self, ok: bool, code: Option<&str>, at: Timestamp) {
        let label = code.unwrap_or(if ok { "ok" } else { "unreachable" });
        let was_ok;
        let outage_began;
        {
            let mut data = self.data();
            let p = &mut data.platform;
            was_ok = p.last_answer_ok;
            outage_began = p.outage_since;
            p.outage_since = match (ok, p.outage_since) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(at),
            };
            p.last_answer_ok = Some(ok);
            p.last_code = Some(label.to_string());
            if ok {
                p.last_ok = Some(at);
                p.consecutive_failures = 0;
            } else {
                p.last_failure = Some(at);
                p.consecutive_failures += 1;
            }
        }
        self.inner.metrics.platform_answer(label, ok, at);
        match (was_ok, ok) {
            (Some(true) | None, false) => {
                tracing::warn!(code = label, "platform not reachable or refusing")
            }
            (Some(false), true) => {
                let down_secs = outage_began.map(|t| (at.0 - t.0).max(0) / 1000);
                tracing::info!(code = label, down_secs, "platform reachable again")
            }
            _ => {}
        }
    }

    /// A heartbeat was accepted (`ok`) or not.
    pub fn record_heartbeat(&self, ok: bool, at: Timestamp) {
        if ok {
            self.data().platform.last_heartbeat_ok = Some(at);
            self.inner.metrics.heartbeat_accepted(at);
        }
    }

    /// Something an operator must act on. Logged at WARN and listed on the status page.
    pub fn alarm(&self, text: &str, at: Timestamp) {
        tracing::warn!(alarm = text, "alarm");
        self.inner.metrics.alarm();
        let mut data = self.data();
        data.alarms.push_front(Alarm {
            at,
            text: text.to_string(),
        });
        data.alarms.truncate(ALARMS_KEPT);
    }

    /// A lane's standing warning `key` (e.g. `reads_without_passages`) is `text`, or
    /// gone (`None`). Shown on the lane's card and as a `/healthz` reason while it
    /// stands; `parking_bridge_lane_mismatch{lane, reason}` is 1 meanwhile. Logged at
    /// WARN when raised and INFO when cleared.
    pub fn set_lane_warning(&self, lane: &str, key: &str, text: Option<&str>) {
        let changed = {
            let mut data = self.data();
            let lane_map = data.lane_warnings.entry(lane.to_string()).or_default();
            match text {
                Some(t) => lane_map.insert(key.to_string(), t.to_string()).is_none(),
                None => lane_map.remove(key).is_some(),
            }
        };
        self.inner.metrics.lane_warning(lane, key, text.is_some());
        match (changed, text) {
            (true, Some(t)) => tracing::warn!(lane, reason = key, warning = t, "lane warning"),
            (true, None) => tracing::info!(lane, reason = key, "lane warning cleared"),
            _ => {}
        }
    }

    /// Reports waiting for delivery and the age of the oldest.
    pub fn set_outbox(&self, depth: u64, oldest_age: Option<Duration>) {
        self.data().outbox = Some((depth, oldest_age));
        self.inner.metrics.outbox(depth, oldest_age);
    }

    /// The outbox per kind of report (the feeder's read of the store).
    pub fn set_outbox_kinds(&self, kinds: Vec<OutboxKind>) {
        self.data().outbox_kinds = kinds;
    }

    /// Reports held after refusals (an operator must look: `outbox held`).
    pub fn set_held(&self, held: u64) {
        self.data().held = Some(held);
    }

    /// The state database failed to answer (`Some`), or answers again (`None`).
    pub fn set_store_error(&self, error: Option<String>) {
        self.data().store_error = error;
    }

    pub fn set_occupancy(&self, occupied: i64, total: i64) {
        self.set_occupancy_at(occupied, total, Timestamp::now());
    }

    /// [`set_occupancy`](Self::set_occupancy) at a given time (the chart's x).
    pub fn set_occupancy_at(&self, occupied: i64, total: i64, at: Timestamp) {
        // The feeder calls this every second: also the moment to follow the links, so
        // the strips are right even when nobody looks at the page for an hour.
        let devices = self.inner.health.snapshot();
        {
            let mut data = self.data();
            data.occupancy = Some((occupied, total));
            data.history.record_occupancy(at, occupied);
            for (device, state) in &devices {
                data.history.record_link(device, state.up, state.since);
            }
        }
        self.inner.metrics.occupancy(occupied, total);
    }

    /// Bytes the store uses and the budget it may use.
    pub fn set_disk(&self, used_bytes: u64, budget_bytes: u64) {
        self.data().disk = Some((used_bytes, budget_bytes));
        self.inner.metrics.disk(used_bytes, budget_bytes);
    }

    /// The clock watch's latest assessment; `new_jump` when one was just detected.
    pub fn set_clock(
        &self,
        synchronised: Option<bool>,
        suspicion: Option<Suspicion>,
        new_jump: Option<Jump>,
    ) {
        self.set_clock_at(synchronised, suspicion, new_jump, Timestamp::now());
    }

    /// [`set_clock`](Self::set_clock) at a given time. Logs once when the clock
    /// becomes suspect and once when it is trusted again (with how long it was not).
    pub fn set_clock_at(
        &self,
        synchronised: Option<bool>,
        suspicion: Option<Suspicion>,
        new_jump: Option<Jump>,
        at: Timestamp,
    ) {
        self.inner
            .metrics
            .clock(synchronised, suspicion.is_some(), new_jump.is_some());
        let mut data = self.data();
        match (&data.clock.suspicion, &suspicion, data.clock.suspect_since) {
            (None, Some(why), _) => {
                tracing::warn!(reason = %why, "clock suspect: report times are flagged until it is trusted again");
                data.clock.suspect_since = Some(at);
            }
            (Some(before), Some(why), _)
                if std::mem::discriminant(before) != std::mem::discriminant(why) =>
            {
                tracing::warn!(reason = %why, "clock still suspect, for another reason");
            }
            (Some(_), None, since) => {
                let suspect_secs = since.map(|t| (at.0 - t.0).max(0) / 1000);
                tracing::info!(suspect_secs, "clock trusted again");
                data.clock.suspect_since = None;
            }
            _ => {}
        }
        data.clock.synchronised = synchronised;
        data.clock.suspicion = suspicion;
        if new_jump.is_some() {
            data.clock.last_jump = new_jump;
        }
    }

    /// Why times stamped now are not trustworthy, if they are not.
    pub fn clock_suspect(&self) -> Option<Suspicion> {
        self.data().clock.suspicion.clone()
    }

    /// The snapshot of a recorded passage, while it is still kept.
    pub fn snapshot(&self, passage_id: u64) -> Option<Arc<Vec<u8>>> {
        let data = self.data();
        data.passages
            .values()
            .flatten()
            .find(|p| p.id == passage_id)
            .and_then(|p| p.snapshot.clone())
    }

    /// Registers a task for the watchdog. The task calls [`Liveness::tick`] on every
    /// turn of its loop (and at least every `max_silence`, with a timer if it idles).
    pub fn liveness(&self, name: &str, max_silence: Duration) -> Liveness {
        let last = Arc::new(AtomicU64::new(self.mono_ms(Instant::now())));
        lock(&self.inner.liveness).push((name.to_string(), max_silence, last.clone()));
        Liveness::new(self.inner.mono_base, last)
    }

    /// Names of registered tasks silent for longer than their `max_silence` at `now`.
    pub fn stale_tasks(&self, now: Instant) -> Vec<String> {
        let now_ms = self.mono_ms(now);
        let list = lock(&self.inner.liveness);
        list.iter()
            .filter(|(_, max, last)| {
                let silent = now_ms.saturating_sub(last.load(Ordering::Relaxed));
                u128::from(silent) > max.as_millis()
            })
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    fn mono_ms(&self, at: Instant) -> u64 {
        u64::try_from(
            at.saturating_duration_since(self.inner.mono_base)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    /// The pipeline is running (first poll done). Sends `READY=1` under systemd.
    pub fn mark_ready(&self) {
        self.inner.ready.send_replace(true);
    }

    /// Resolves once [`mark_ready`](Self::mark_ready) was called.
    pub async fn wait_ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: wait_for cannot fail
        // with a closed channel here, and an error would only end the wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Shows this node's multi-PC lot (`[cluster]`) on the page. A lane node's
    /// occupancy is the lot's, and its way to the platform is the lot node.
    pub fn set_cluster(&self, source: ClusterSource) {
        *lock(&self.inner.cluster) = Some(source);
    }

    /// A consistent copy for rendering.
    pub fn view(&self) -> StatusView {
        let cluster = lock(&self.inner.cluster).clone().map(|f| f());
        let devices = self.inner.health.snapshot();
        let mut data = self.data();
        // The link history follows the shared device map; `since` is the exact time of
        // each change (a blip shorter than two looks is missed, the counters are not).
        for (device, state) in &devices {
            data.history.record_link(device, state.up, state.since);
        }
        StatusView {
            lot_no: self.inner.lot_no.clone(),
            offset: self.inner.offset,
            started: self.inner.started,
            lanes: self.inner.lanes.clone(),
            devices,
            passages: data
                .passages
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
            platform: data.platform.clone(),
            alarms: data.alarms.iter().cloned().collect(),
            outbox_depth: data.outbox.map(|o| o.0),
            outbox_oldest_age: data.outbox.and_then(|o| o.1),
            occupancy: data.occupancy,
            disk: data.disk,
            clock: data.clock.clone(),
            occupancy_history: data.history.occupancy(),
            passage_times: data.history.passages(),
            link_history: data.history.links(),
            outbox_kinds: data.outbox_kinds.clone(),
            lane_warnings: data
                .lane_warnings
                .iter()
                .filter(|(_, w)| !w.is_empty())
                .map(|(lane, w)| (lane.clone(), w.values().cloned().collect()))
                .collect(),
            held: data.held,
            store_error: data.store_error.clone(),
            cluster,
            push: self.inner.push.as_ref().map(|(listen, cameras)| PushView {
                listen: listen.clone(),
                cameras: cameras
                    .iter()
                    .map(|c| (c.clone(), crate::driver::http_push::counts(&c.name)))
                    .collect(),
                refusals: crate::driver::http_push::refusals(),
            }),
        }
        .with_cluster_lot()
    }

    /// Refreshes the gauges that mirror shared state (device links, and `level`, the
    /// health the scrape judged) just before a scrape.
    pub fn refresh_gauges(&self, level: HealthLevel) {
        self.inner.metrics.devices(&self.inner.health.snapshot());
        self.inner.metrics.healthy(level != HealthLevel::Failing);
    }
}

/// Every critical section here leaves its data consistent (each is a few field
/// writes), so a lock poisoned by a panicking holder is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Two labels of one passage: the same first word (`entry`, `exit`), whatever the lane
/// added after it (`entry · inferred`).
fn same_case(a: &str, b: &str) -> bool {
    a.split_whitespace().next() == b.split_whitespace().next()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::logging::tests::json_log;

    /// The platform, lot and storage of every test site here; lanes and devices follow.
    const SITE: &str = r#"
[platform]
base_url = "https://citybrain.example"
app_id = "app-1"
app_secret = "0123456789abcdef"
[lot]
parking_lot_no = "LOT-1"
total_spaces = 100
[storage]
dir = "/tmp"
"#;

    const EXIT_LANE: &str = r#"
[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "P2"
"#;

    /// A site with lanes `entry-1` and `exit-1`, without devices.
    pub(crate) fn config() -> SiteConfig {
        let entry_lane = r#"
[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "P1"
"#;
        let text = format!("{SITE}{entry_lane}{EXIT_LANE}");
        SiteConfig::from_toml(&text, std::path::Path::new("test.toml")).unwrap()
    }

    use crate::ops::T0;

    /// Each of `lines` stands in the state's own registry as `/metrics` shows it.
    fn assert_metrics(ops: &OpsState, lines: &[&str]) {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&ops.registry().gather())
            .unwrap();
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn a_lane_whose_devices_sense_no_vehicle_is_degraded_from_the_start() {
        let pay_terminal = r#"
[[devices]]
name = "pay"
profile = "generic-pay-terminal"
lane = "exit-1"
tcp = "127.0.0.1:502"
roles = { fee_price = "charge" }
"#;
        let text = format!("{SITE}{EXIT_LANE}{pay_terminal}");
        let config = SiteConfig::from_toml(&text, std::path::Path::new("t.toml")).unwrap();
        let ops = OpsState::new(&config);
        let view = ops.view();
        assert_eq!(view.lanes[0].layout, "none");
        let problems = view.problems(view.started, &HttpConfig::default(), None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "lane exit-1: will never report a vehicle: its devices (no lane role) sense none"
            ),
            "{problems:?}"
        );
        let text = crate::ops::http::render(&view, &problems, view.started, false, "");
        assert!(text.contains("⚠ will never report a vehicle"), "{text}");
    }

    #[test]
    fn a_lane_warning_degrades_health_and_sets_its_gauge_until_cleared() {
        let ops = OpsState::new(&config());
        let http = HttpConfig::default();
        assert_eq!(ops.view().lanes[0].layout, "manual");
        ops.set_lane_warning(
            "entry-1",
            "reads_without_passages",
            Some("5 plate reads without a passage"),
        );
        let view = ops.view();
        assert_eq!(
            view.lane_warnings["entry-1"],
            ["5 plate reads without a passage"]
        );
        let problems = view.problems(view.started, &http, None);
        assert_eq!(problems, ["lane entry-1: 5 plate reads without a passage"]);
        let gauge = |ops: &OpsState| {
            ops.registry()
                .gather()
                .iter()
                .find(|f| f.name() == "parking_bridge_lane_mismatch")
                .map(|f| f.get_metric()[0].get_gauge().get_value())
        };
        assert_eq!(gauge(&ops), Some(1.0));
        ops.set_lane_warning("entry-1", "reads_without_passages", None);
        let view = ops.view();
        assert!(view.lane_warnings.is_empty());
        assert!(view.problems(view.started, &http, None).is_empty());
        assert_eq!(gauge(&ops), Some(0.0));
    }

    #[test]
    fn passages_keep_newest_first_with_bounded_snapshots() {
        let ops = OpsState::new(&config());
        for i in 0..8 {
            let img = Arc::new(vec![i as u8; 10]);
            ops.record_passage(
                "entry-1",
                Some("闽A12345"),
                "entry",
                T0.plus_millis(i),
                Some(img),
            );
        }
        let view = ops.view();
        let list = &view.passages["entry-1"];
        assert_eq!(list.len(), PASSAGES_PER_LANE);
        assert_eq!(list[0].at, T0.plus_millis(7));
        assert_eq!(
            list.iter().filter(|p| p.snapshot.is_some()).count(),
            SNAPSHOTS_PER_LANE
        );
        assert_eq!(ops.snapshot(list[0].id).unwrap()[0], 7);
        assert!(ops.snapshot(list[4].id).is_none());
    }

    #[test]
    fn same_passage_recorded_twice_is_kept_once_with_its_snapshot() {
        let ops = OpsState::new(&config());
        ops.record_passage("entry-1", Some("闽A12345"), "entry", T0, None);
        ops.record_passage(
            "entry-1",
            Some("闽A12345"),
            "entry",
            T0,
            Some(Arc::new(vec![1, 2])),
        );
        let view = ops.view();
        assert_eq!(view.passages["entry-1"].len(), 1);
        assert!(view.passages["entry-1"][0].snapshot.is_some());
        assert_metrics(
            &ops,
            &[r#"parking_bridge_passages_total{case="entry",lane="entry-1"} 1"#],
        );
    }

    #[test]
    fn an_inferred_passage_and_its_stay_from_the_store_are_kept_once() {
        let ops = OpsState::new(&config());
        ops.record_passage("entry-1", Some("闽A12345"), "entry · inferred", T0, None);
        ops.record_passage("entry-1", Some("闽A12345"), "entry", T0, None);
        ops.record_passage("entry-1", Some("闽A12345"), "exit", T0, None);
        let view = ops.view();
        let cases: Vec<&str> = view.passages["entry-1"]
            .iter()
            .map(|p| p.case.as_str())
            .collect();
        assert_eq!(cases, ["exit", "entry · inferred"]);
    }

    #[test]
    fn passage_while_clock_suspect_is_flagged_and_logged() {
        let ops = OpsState::new(&config());
        assert!(!ops.record_passage("entry-1", Some("闽A12345"), "entry", T0, None));
        let jump = Jump {
            at: T0,
            delta_ms: 3_600_000,
        };
        let (flagged, log) = json_log("debug", || {
            ops.set_clock(Some(true), Some(Suspicion::Jumped(jump)), Some(jump));
            ops.record_passage(
                "entry-1",
                Some("闽A12345"),
                "entry",
                T0.plus_millis(5),
                None,
            )
        });
        assert!(flagged);
        assert!(ops.view().passages["entry-1"][0].clock_suspect);
        assert!(log.contains("clock suspect"), "{log}");
        assert!(log.contains(r#""clock_suspect":true"#), "{log}");
        assert!(
            log.contains("闽A1***5") && !log.contains("闽A12345"),
            "plate masked: {log}"
        );
    }

    #[test]
    fn unsynchronised_clock_warns_once_for_a_hundred_passages_and_once_when_it_ends() {
        let ops = OpsState::new(&config());
        let (_, log) = json_log("info", || {
            for i in 0..100 {
                // The clock watch samples between passages, as in `run`.
                ops.set_clock_at(
                    Some(false),
                    Some(Suspicion::Unsynchronised),
                    None,
                    T0.plus_millis(i * 5_000),
                );
                let lane = if i % 2 == 0 { "entry-1" } else { "exit-1" };
                let plate = format!("闽A{:05}", i / 2);
                assert!(ops.record_passage(
                    lane,
                    Some(&plate),
                    if i % 2 == 0 { "entry" } else { "exit" },
                    T0.plus_millis(i * 5_000 + 1),
                    None
                ));
            }
            ops.set_clock_at(Some(true), None, None, T0.plus_millis(600_000));
            ops.set_clock_at(Some(true), None, None, T0.plus_millis(605_000));
        });
        let warnings = log
            .lines()
            .filter(|l| l.contains(r#""level":"WARN""#))
            .count();
        assert_eq!(warnings, 1, "{log}");
        assert_eq!(log.matches("clock suspect").count(), 1, "{log}");
        assert_eq!(log.matches("clock trusted again").count(), 1, "{log}");
        assert!(log.contains(r#""suspect_secs":600"#), "{log}");
        // The count stays in /metrics.
        assert_metrics(&ops, &["parking_bridge_passages_clock_suspect_total 100"]);
    }

    #[test]
    fn platform_outage_logs_its_start_and_its_end_with_duration() {
        let ops = OpsState::new(&config());
        let (_, log) = json_log("info", || {
            ops.record_platform_answer(true, Some("SUCCESS"), T0);
            for i in 1..=50 {
                ops.record_platform_answer(false, None, T0.plus_millis(i * 1_000));
            }
            ops.record_platform_answer(true, Some("SUCCESS"), T0.plus_millis(91_000));
        });
        assert_eq!(log.matches("platform not reachable").count(), 1, "{log}");
        assert_eq!(log.matches("platform reachable again").count(), 1, "{log}");
        assert!(log.contains(r#""down_secs":90"#), "{log}");
    }

    #[test]
    fn view_carries_the_day_for_the_charts() {
        let ops = OpsState::new(&config());
        let now = Timestamp::now();
        for i in 0..3 {
            ops.record_passage(
                "entry-1",
                Some("闽A12345"),
                "entry",
                now.plus_millis(i),
                None,
            );
        }
        ops.set_occupancy_at(3, 100, now);
        ops.health()
            .set("cam-1", "entry-1", true, now.plus_millis(-1000));
        let view = ops.view();
        assert_eq!(view.passage_times["entry-1"].len(), 3);
        assert_eq!(view.occupancy_history.last().map(|s| s.1), Some(3));
        assert_eq!(view.link_history["cam-1"].len(), 1);
    }

    #[test]
    fn logs_never_carry_secret_image_bytes_or_whole_plates() {
        let config = config();
        let secret = config.platform.app_secret.clone().unwrap();
        // A recognisable byte pattern, as the snapshot's bytes would be printed in a
        // Debug dump ("[255, 216, 255, 224, 171, 205…").
        let image = Arc::new(vec![0xFF, 0xD8, 0xFF, 0xE0, 0xAB, 0xCD, 0xEF, 0x01]);
        let (_, log) = json_log("trace", || {
            let ops = OpsState::new(&config);
            ops.record_passage(
                "entry-1",
                Some("闽A12345"),
                "entry",
                T0,
                Some(image.clone()),
            );
            ops.record_platform_answer(false, Some("PARAM_ERROR"), T0);
            ops.record_platform_answer(true, Some("SUCCESS"), T0);
            ops.alarm("platform rejected lot id", T0);
            crate::ops::log_startup(&config);
        });
        assert!(log.contains("闽A1***5"), "passage logged masked: {log}");
        assert!(!log.contains("闽A12345"), "{log}");
        assert!(!log.contains(&secret), "{log}");
        assert!(
            !log.contains("255, 216") && !log.contains("ffd8") && !log.contains("/9j/"),
            "{log}"
        );
    }

    #[test]
    fn metrics_move_with_state() {
        let ops = OpsState::new(&config());
        ops.set_outbox(3, Some(Duration::from_secs(42)));
        ops.set_occupancy(17, 100);
        ops.record_passage("exit-1", None, "no_plate", T0, None);
        assert_metrics(
            &ops,
            &[
                "parking_bridge_outbox_depth 3",
                "parking_bridge_outbox_oldest_age_seconds 42",
                "parking_bridge_occupied_spaces 17",
                r#"parking_bridge_passages_total{case="no_plate",lane="exit-1"} 1"#,
            ],
        );
    }

    #[test]
    fn stale_task_is_named_fresh_one_is_not() {
        let ops = OpsState::new(&config());
        let uploader = ops.liveness("uploader", Duration::from_secs(30));
        let _lane = ops.liveness("lane entry-1", Duration::from_secs(30));
        let later = Instant::now() + Duration::from_secs(31);
        assert_eq!(ops.stale_tasks(later).len(), 2);
        uploader.tick();
        assert!(ops.stale_tasks(Instant::now()).is_empty());
    }
}
