//! What this node knows of the lot, for its status page and `/metrics`: its broker
//! link, its queue (lane node), the lot's retained state, and every node's health
//! (lot node). Fed by the link tasks; read by `ops`.

use super::queue::Depth;
use super::wire::{LotState, NodeHealth};
use crate::config::cluster::NodeRole;
use crate::time::Timestamp;
use prometheus::{IntGauge, IntGaugeVec};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

crate::metrics::statics! {
    LINK_UP: IntGauge = ("parking_bridge_cluster_link_up", "1 while this node is connected to the lot's broker");
    QUEUE_DEPTH: IntGauge = ("parking_bridge_cluster_queue_passages", "Lane node: passages in its queue not yet acknowledged by the lot node");
    LOT_FREE: IntGauge = ("parking_bridge_cluster_lot_free_spaces", "The lot's free spaces as the lot node last published them");
    HELD: IntGauge = ("parking_bridge_cluster_held_exits", "Lot node: exits waiting for an entry still on its way from another node");
    NODE_QUEUE: IntGaugeVec = ("parking_bridge_cluster_node_queue_passages", "Lot node: each lane node's queue depth as it last reported it", ["node"]);
    NODE_ONLINE: IntGaugeVec = ("parking_bridge_cluster_node_online", "Lot node: 1 while a lane node is connected to the broker (its retained health)", ["node"]);
}

#[derive(Debug, Clone)]
pub struct ViewState {
    pub node: String,
    pub role: NodeRole,
    pub link_up: bool,
    pub link_since: Option<Timestamp>,
    pub queue: Depth,
    pub last_passage_at: Option<Timestamp>,
    /// Lot node: exits waiting for their entries.
    pub held_exits: u64,
    /// The lot's state as last published by the lot node.
    pub lot: Option<LotState>,
    /// Lot node: each lane node's last health, and when it came.
    pub nodes: BTreeMap<String, (NodeHealth, Timestamp)>,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    inner: Arc<Mutex<ViewState>>,
}

impl ClusterView {
    pub fn new(node: &str, role: NodeRole) -> Self {
        ClusterView {
            inner: Arc::new(Mutex::new(ViewState {
                node: node.to_string(),
                role,
                link_up: false,
                link_since: None,
                queue: Depth::default(),
                last_passage_at: None,
                held_exits: 0,
                lot: None,
                nodes: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> ViewState {
        self.lock().clone()
    }

    pub fn set_link(&self, up: bool, now: Timestamp) {
        let mut v = self.lock();
        if v.link_up != up || v.link_since.is_none() {
            v.link_up = up;
            v.link_since = Some(now);
            LINK_UP.set(i64::from(up));
        }
    }

    pub fn set_queue(&self, depth: Depth) {
        QUEUE_DEPTH.set(i64::try_from(depth.passages).unwrap_or(i64::MAX));
        let mut v = self.lock();
        v.queue = depth;
        v.last_passage_at = depth.last_queued_at.or(v.last_passage_at);
    }

    pub fn set_lot(&self, lot: LotState) {
        LOT_FREE.set(lot.free);
        self.lock().lot = Some(lot);
    }

    pub fn set_held(&self, n: u64) {
        HELD.set(i64::try_from(n).unwrap_or(i64::MAX));
        self.lock().held_exits = n;
    }

    pub fn set_node(&self, h: NodeHealth, now: Timestamp) {
        NODE_QUEUE
            .with_label_values(&[h.node.as_str()])
            .set(i64::try_from(h.queue_depth).unwrap_or(i64::MAX));
        NODE_ONLINE
            .with_label_values(&[h.node.as_str()])
            .set(i64::from(h.online));
        self.lock().nodes.insert(h.node.clone(), (h, now));
    }

    pub fn note_passage(&self, at: Timestamp) {
        let mut v = self.lock();
        v.last_passage_at = Some(v.last_passage_at.map_or(at, |t| t.max(at)));
    }
}

impl ClusterView {
    /// What the status page shows (see [`crate::ops::status::ClusterStatus`]).
    pub fn status(&self) -> crate::ops::status::ClusterStatus {
        use crate::ops::status::{ClusterLot, ClusterNodeStatus, ClusterStatus};
        let v = self.get();
        let seq_of = |node: &str| {
            v.lot
                .as_ref()
                .and_then(|l| l.nodes.iter().find(|n| n.node == node))
                .map_or(0, |n| n.last_seq)
        };
        ClusterStatus {
            node: v.node.clone(),
            role: v.role.as_str().to_string(),
            link_up: v.link_up,
            link_since: v.link_since,
            lot: v.lot.as_ref().map(|l| ClusterLot {
                occupied: l.occupied,
                total: l.total,
                free: l.free,
                at: l.at,
            }),
            queue_depth: v.queue.passages,
            oldest_queued_at: v.queue.oldest_queued_at,
            last_passage_at: v.last_passage_at,
            held_exits: v.held_exits,
            nodes: v
                .nodes
                .values()
                .map(|(h, heard)| ClusterNodeStatus {
                    node: h.node.clone(),
                    online: h.online,
                    queue_depth: h.queue_depth,
                    last_passage_at: h.last_passage_at,
                    last_seq: seq_of(&h.node),
                    heard_at: Some(*heard),
                })
                .collect(),
        }
    }
}
