//! The status view: a consistent copy of what the status page, its JSON and `/healthz`
//! show — lanes, device links, recent passages, the platform link, the outbox, the
//! clock, the day's history, alarms and a multi-PC lot's nodes. [`OpsState::view`]
//! makes one; it is plain data, so rendering ([`super::http`]) and judging
//! ([`super::health_rules`]) never lock anything and are tested on hand-made views.
//!
//! [`OpsState::view`]: super::OpsState::view

use super::clock::{Jump, Suspicion};
use super::history::LinkChange;
use crate::config::Direction;
use crate::health::DeviceState;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Reads a cluster node's view of its lot.
pub type ClusterSource = Arc<dyn Fn() -> ClusterStatus + Send + Sync>;

/// A node of a multi-PC lot (`[cluster]`), as the status page shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterStatus {
    pub node: String,
    /// `lot` or `lane`.
    pub role: String,
    /// Connected to the lot's broker.
    pub link_up: bool,
    pub link_since: Option<Timestamp>,
    /// The lot as the lot node last published it.
    pub lot: Option<ClusterLot>,
    /// Lane node: passages not yet acknowledged by the lot node.
    pub queue_depth: u64,
    pub oldest_queued_at: Option<Timestamp>,
    pub last_passage_at: Option<Timestamp>,
    /// Lot node: exits waiting for an entry still on its way.
    pub held_exits: u64,
    /// Lot node: every lane node.
    pub nodes: Vec<ClusterNodeStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterLot {
    pub occupied: i64,
    pub total: i64,
    pub free: i64,
    /// When the lot node published it.
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterNodeStatus {
    pub node: String,
    pub online: bool,
    pub queue_depth: u64,
    pub last_passage_at: Option<Timestamp>,
    /// The last sequence number of its queue applied here.
    pub last_seq: i64,
    /// When its health was last heard.
    pub heard_at: Option<Timestamp>,
}

impl ClusterStatus {
    pub fn is_lane_node(&self) -> bool {
        self.role == "lane"
    }
}

/// A configured lane, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneInfo {
    pub id: String,
    pub direction: Direction,
    pub port_no: String,
    /// The layout in use (`camera_only`…), `manual` for a lane without devices, `none`
    /// for one whose devices sense no vehicle.
    pub layout: String,
}

/// One passage as recorded for the operator.
#[derive(Debug, Clone)]
pub struct Passage {
    /// Unique in this process; names the snapshot URL.
    pub id: u64,
    pub lane: String,
    /// Whole plate; masked when shown unless configured otherwise. `None`: no plate.
    pub plate: Option<String>,
    pub case: String,
    pub at: Timestamp,
    pub snapshot: Option<Arc<Vec<u8>>>,
    pub snapshot_len: Option<usize>,
    /// The clock was suspect when the passage was recorded.
    pub clock_suspect: bool,
}

#[derive(Debug, Clone)]
pub struct Alarm {
    pub at: Timestamp,
    pub text: String,
}

/// What is known about the platform link.
#[derive(Debug, Clone, Default)]
pub struct PlatformLink {
    pub last_ok: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    /// `result_code` of the last answer, or `unreachable`.
    pub last_code: Option<String>,
    pub last_answer_ok: Option<bool>,
    pub consecutive_failures: u64,
    pub last_heartbeat_ok: Option<Timestamp>,
    /// When the current outage began (first failure after a success or the start).
    pub outage_since: Option<Timestamp>,
}

/// The clock as last assessed by the clock watch.
#[derive(Debug, Clone, Default)]
pub struct ClockView {
    pub synchronised: Option<bool>,
    pub suspicion: Option<Suspicion>,
    pub last_jump: Option<Jump>,
    /// When the current suspicion began.
    pub suspect_since: Option<Timestamp>,
}

/// One kind of report in the outbox, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxKind {
    /// `entry report`, `entry snapshot`, `exit report`, `exit snapshot`.
    pub kind: &'static str,
    pub pending: u64,
    /// Held after repeated refusals, waiting for an operator (`outbox held`).
    pub held: u64,
    pub oldest_age: Option<Duration>,
    pub last_error: Option<String>,
}

/// A consistent copy of everything the status page and `/healthz` show.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub lot_no: String,
    /// The lot's local offset, for showing times.
    pub offset: chrono::FixedOffset,
    pub started: Timestamp,
    pub lanes: Vec<LaneInfo>,
    pub devices: BTreeMap<String, DeviceState>,
    /// Newest first, per lane id.
    pub passages: BTreeMap<String, Vec<Passage>>,
    pub platform: PlatformLink,
    /// Newest first.
    pub alarms: Vec<Alarm>,
    pub outbox_depth: Option<u64>,
    pub outbox_oldest_age: Option<Duration>,
    pub occupancy: Option<(i64, i64)>,
    pub disk: Option<(u64, u64)>,
    pub clock: ClockView,
    /// Occupancy over the last day (see [`super::history::History::occupancy`]).
    pub occupancy_history: Vec<(Timestamp, i64)>,
    /// Passage times per lane over the last day, oldest first.
    pub passage_times: BTreeMap<String, Vec<Timestamp>>,
    /// Link changes per device over the last hour (and the state before it).
    pub link_history: BTreeMap<String, Vec<LinkChange>>,
    /// Per kind, when the feeder has read them.
    pub outbox_kinds: Vec<OutboxKind>,
    /// Per lane id: the lane's standing warnings (it cannot report, or its devices and
    /// passages disagree). Each is also a reason for `/healthz` to be degraded.
    pub lane_warnings: BTreeMap<String, Vec<String>>,
    /// Reports held after refusals, as last read from the store.
    pub held: Option<u64>,
    /// Why the state database could not be read, while it cannot.
    pub store_error: Option<String>,
    /// This node's multi-PC lot (`[cluster]`).
    pub cluster: Option<ClusterStatus>,
    /// The push receiver's address and its cameras with what each delivered.
    pub push: Option<PushView>,
}

/// The camera push card: where the receiver listens, each camera with what it
/// delivered, and the refusals (which cannot be told apart by camera).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushView {
    pub listen: String,
    pub cameras: Vec<(
        crate::driver::http_push::PushCameraInfo,
        crate::driver::http_push::PushCounts,
    )>,
    pub refusals: Vec<(&'static str, u64)>,
}

impl StatusView {
    /// A lane node reports nothing itself: its occupancy is the lot's as the lot node
    /// published it, and its way to the platform is the lot node (its last word).
    pub(super) fn with_cluster_lot(mut self) -> Self {
        if let Some(c) = self.cluster.as_ref().filter(|c| c.is_lane_node()) {
            if let Some(lot) = &c.lot {
                self.occupancy = Some((lot.occupied, lot.total));
                self.platform.last_ok = Some(lot.at);
            }
            self.platform.last_code = Some(if c.link_up {
                "lot node silent".to_string()
            } else {
                "broker unreachable".to_string()
            });
        }
        self
    }
}
