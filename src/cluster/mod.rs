//! A lot bigger than one PC: lane nodes and a lot node over the site's MQTT broker.
//!
//! - A *lane node* runs the drivers and lane machines of its lanes; each passage goes
//!   to its durable queue ([`queue`]) instead of a state database, and from there, in
//!   order, to the lot node ([`link::LaneLink`]); it is forgotten only on the lot
//!   node's acknowledgement, sent after the lot node's transaction committed.
//! - The *lot node* keeps the state database, stays, occupancy, order numbers, the
//!   uploader and the heartbeat. It applies every passage of the lot — its own lanes'
//!   and the lane nodes' — through one ingest ([`ingest::LotIngest`]), de-duplicated by
//!   node and sequence; exits whose entry is still on its way wait ([`late`]).
//! - The lot node publishes the lot's state and every node publishes its health,
//!   retained ([`wire`]); [`view::ClusterView`] holds what this node knows, for `ops`.
//!
//! The broker is the site's (mosquitto, or an EMQX cluster for redundancy); nothing
//! here commands a device: the safety rule (read-only to lane hardware) is untouched.

pub mod ingest;
pub mod late;
pub mod link;
pub mod queue;
pub mod view;
pub mod wire;

use crate::config::SiteConfig;
use crate::config::cluster::NodeRole;
use crate::health::Health;
use crate::lane_task::PassageSink;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("[cluster] needs a broker ([cluster.broker] or [mqtt])")]
    NoBroker,
    #[error("cluster broker: {0}")]
    Broker(String),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
}

/// A started cluster node: the lane task's sink, the view for `ops`, and the link task.
pub struct ClusterNode {
    pub role: NodeRole,
    pub sink: Arc<dyn PassageSink>,
    pub view: view::ClusterView,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl ClusterNode {
    /// Stops the link (a lane node says it is offline; its queue keeps what is unsent).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts this node's part when the site config has `[cluster]`. `health` is the
/// pipeline's device health (a lane node publishes its devices'; the lot node mirrors
/// every node's into it for the heartbeat); `fees` the lot's pay-system feed, which
/// the lot node applies to every node's exits.
pub fn start(
    site: &SiteConfig,
    store: Arc<Store>,
    health: Health,
    fees: Option<Arc<dyn crate::lane::fees::FeeSource>>,
) -> Result<Option<ClusterNode>, ClusterError> {
    let Some(c) = &site.cluster else {
        return Ok(None);
    };
    let broker = c.broker_for(site).ok_or(ClusterError::NoBroker)?;
    let options =
        crate::driver::mqtt::options(&broker).map_err(|e| ClusterError::Broker(e.to_string()))?;
    let topics = wire::Topics::new(&c.topic_prefix, &site.lot.parking_lot_no);
    let view = view::ClusterView::new(&c.node, c.role);
    let node_link = link::NodeLink {
        options,
        topics,
        node: c.node.clone(),
        view: view.clone(),
        health,
    };
    let (stop, stop_rx) = watch::channel(false);
    match c.role {
        NodeRole::Lane => {
            let queue = Arc::new(queue::LaneQueue::open(
                &site.storage.dir,
                c.queue_budget_mb.saturating_mul(1024 * 1024),
            )?);
            let wake = Arc::new(Notify::new());
            tracing::info!(node = %c.node, queue = %queue.path().display(), epoch = queue.epoch(), "lane node: passages go to the lot node");
            let link = link::LaneLink {
                link: node_link,
                lanes: site.lanes.iter().map(|l| l.id.clone()).collect(),
                queue: queue.clone(),
                wake: wake.clone(),
            };
            Ok(Some(ClusterNode {
                role: c.role,
                sink: Arc::new(ingest::QueueSink { queue, wake }),
                view,
                task: tokio::spawn(link.run(stop_rx)),
                stop,
            }))
        }
        NodeRole::Lot => {
            let ingest = Arc::new(ingest::LotIngest::new(site, store).with_fees(fees));
            tracing::info!(node = %c.node, nodes = c.nodes.len(), late_match_secs = c.late_match_secs, "lot node: applying the passages of every node");
            let link = link::LotLink {
                link: node_link,
                lot_no: site.lot.parking_lot_no.clone(),
                ingest: ingest.clone(),
            };
            Ok(Some(ClusterNode {
                role: c.role,
                sink: ingest,
                view,
                task: tokio::spawn(link.run(stop_rx)),
                stop,
            }))
        }
    }
}
