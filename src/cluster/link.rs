//! The MQTT shells (rumqttc, QoS 1, persistent sessions). They only move data: the
//! lane node's queue out and acknowledgements in; the lot node's passages in (to
//! [`LotIngest`]) and acknowledgements, health and the lot's state out.
//!
//! Delivery: the lane node keeps up to [`WINDOW`] passages in flight, in sequence
//! order; an acknowledgement (cumulative: "all up to n committed") frees them. After a
//! reconnect, or [`RESEND_AFTER`] without progress, it sends again from the oldest
//! unacknowledged one; the lot node answers duplicates with the same acknowledgement
//! and ignores passages that overtook a missing one, so the order is kept.

use super::ingest::{Ingested, LotIngest};
use super::queue::LaneQueue;
use super::view::ClusterView;
use super::wire::{
    AckMsg, LotState, NodeHealth, NodeLine, PassageMsg, Topics, VERSION, WireDevice,
};
use crate::health::Health;
use crate::time::Timestamp;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

/// Passages in flight at once from one lane node.
pub const WINDOW: i64 = 32;
/// Without an acknowledgement for this long, a lane node sends again from the oldest.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);
/// How often health and the lot's state are published (and held exits settled).
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Largest message: a passage with a camera's full-size snapshot.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn offline(node: &str) -> Vec<u8> {
    serde_json::to_vec(&NodeHealth {
        v: VERSION,
        node: node.to_string(),
        online: false,
        at: Timestamp(0),
        lanes: Vec::new(),
        queue_depth: 0,
        oldest_queued_at: None,
        last_passage_at: None,
        devices: Vec::new(),
    })
    .unwrap_or_default()
}

/// What both kinds of node bring to the lot's broker: how to connect, the topics, the
/// node's name, its view of the lot (status page, `/metrics`) and the pipeline's device
/// health.
pub struct NodeLink {
    pub options: MqttOptions,
    pub topics: Topics,
    pub node: String,
    pub view: ClusterView,
    pub health: Health,
}

impl NodeLink {
    /// The connection options: a persistent session, messages up to [`MAX_MESSAGE`],
    /// and `will` when the broker should speak for this node after a crash.
    fn mqtt_options(&self, will: Option<LastWill>) -> MqttOptions {
        let mut o = self.options.clone();
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(MAX_MESSAGE, MAX_MESSAGE);
        if let Some(w) = will {
            o.set_last_will(w);
        }
        o
    }

    /// Where this node's health is retained (and its will published).
    fn own_topic(&self) -> String {
        self.topics.node(&self.node)
    }

    /// The broker accepted the connection: shown, and this node's topics subscribed to.
    fn up(&self, client: &AsyncClient, topics: [&str; 2]) {
        self.view.set_link(true, Timestamp::now());
        for topic in topics {
            let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
        }
    }

    /// The connection failed or dropped: shown, then a second's pause before the next
    /// try. False when a stop was asked for meanwhile.
    async fn down(&self, stop: &mut watch::Receiver<bool>) -> bool {
        self.view.set_link(false, Timestamp::now());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
            _ = stop.changed() => false,
        }
    }
}

/// A lane node's link to the lot node.
pub struct LaneLink {
    pub link: NodeLink,
    pub lanes: Vec<String>,
    pub queue: Arc<LaneQueue>,
    pub wake: Arc<Notify>,
}

impl LaneLink {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let will = LastWill::new(
            self.link.own_topic(),
            offline(&self.link.node),
            QoS::AtLeastOnce,
            true,
        );
        let (client, mut events) = AsyncClient::new(self.link.mqtt_options(Some(will)), 256);
        let q = self.queue.clone();
        let depth = tokio::task::spawn_blocking(move || (q.depth(), q.last_seq()))
            .await
            .ok();
        let mut acked = match depth {
            Some((Ok(d), Ok(last))) => d.oldest_seq.map_or(last, |s| s - 1),
            _ => 0,
        };
        let mut sent = acked;
        let mut up = false;
        let mut last_progress = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut next_health = Instant::now();
        let ack_topic = self.link.topics.ack(&self.link.node);
        let state_topic = self.link.topics.state();
        loop {
            tokio::select! {
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up = true;
                        self.link.up(&client, [&ack_topic, &state_topic]);
                        tracing::info!(node = %self.link.node, "cluster link up");
                        sent = acked;
                        last_progress = Instant::now();
                        next_health = Instant::now();
                        self.pump(&client, acked, &mut sent).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == ack_topic {
                            match serde_json::from_slice::<AckMsg>(&p.payload) {
                                Ok(a) if a.epoch == self.queue.epoch() => {
                                    if a.upto > acked {
                                        let q = self.queue.clone();
                                        let upto = a.upto;
                                        match tokio::task::spawn_blocking(move || q.ack_upto(upto, Timestamp::now())).await {
                                            Ok(Ok(_)) => {
                                                acked = upto;
                                                sent = sent.max(acked);
                                                last_progress = Instant::now();
                                            }
                                            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the lot node's acknowledgement; it will come again"),
                                            Err(e) => tracing::error!(error = %e, "acknowledgement task failed"),
                                        }
                                    }
                                    self.pump(&client, acked, &mut sent).await;
                                }
                                Ok(_) => tracing::debug!("acknowledgement for another queue epoch; ignored"),
                                Err(e) => tracing::warn!(error = %e, "unreadable acknowledgement; ignored"),
                            }
                        } else if p.topic == state_topic {
                            match serde_json::from_slice::<LotState>(&p.payload) {
                                Ok(s) => self.link.view.set_lot(s),
                                Err(e) => tracing::debug!(error = %e, "unreadable lot state; ignored"),
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if up {
                            tracing::warn!(node = %self.link.node, error = %e, "cluster link down; passages wait in the queue");
                        }
                        up = false;
                        if !self.link.down(&mut stop).await {
                            break;
                        }
                    }
                },
                _ = self.wake.notified() => {
                    if up {
                        self.pump(&client, acked, &mut sent).await;
                    }
                }
                _ = tick.tick() => {
                    if up && sent > acked && last_progress.elapsed() >= RESEND_AFTER {
                        tracing::info!(node = %self.link.node, from = acked + 1, to = sent, "no acknowledgement in time; sending again from the oldest");
                        sent = acked;
                        last_progress = Instant::now();
                    }
                    if up {
                        self.pump(&client, acked, &mut sent).await;
                    }
                    if Instant::now() >= next_health {
                        next_health = Instant::now() + HEALTH_EVERY;
                        self.publish_health(&client, up).await;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        // A clean stop says so at once (a crash leaves it to the broker's will).
        let _ = client.try_publish(
            self.link.own_topic(),
            QoS::AtLeastOnce,
            true,
            offline(&self.link.node),
        );
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while events.poll().await.is_ok() {}
        })
        .await;
    }

    /// Sends the next passages of the window.
    async fn pump(&self, client: &AsyncClient, acked: i64, sent: &mut i64) {
        let room = WINDOW - (*sent - acked);
        if room <= 0 {
            return;
        }
        let (q, after) = (self.queue.clone(), *sent);
        let batch = tokio::task::spawn_blocking(move || {
            let oldest = q.depth()?.oldest_seq.unwrap_or(after + 1);
            Ok::<_, super::queue::QueueError>((oldest, q.window(after, room as usize)?))
        })
        .await;
        let (oldest, items) = match batch {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the passage queue");
                return;
            }
            Err(_) => return,
        };
        let topic = self.link.topics.passage(&self.link.node);
        for item in items {
            let payload = item
                .message(&self.link.node, self.queue.epoch(), oldest)
                .encode(item.image.as_deref());
            if client
                .try_publish(&topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                break;
            }
            *sent = item.seq;
        }
    }

    async fn publish_health(&self, client: &AsyncClient, up: bool) {
        let q = self.queue.clone();
        let depth = tokio::task::spawn_blocking(move || q.depth())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        self.link.view.set_queue(depth);
        if !up {
            return;
        }
        let lanes: BTreeSet<&str> = self.lanes.iter().map(String::as_str).collect();
        let devices = self
            .link
            .health
            .snapshot()
            .into_iter()
            .filter(|(_, s)| lanes.contains(s.lane.as_str()))
            .map(|(name, s)| WireDevice {
                name,
                lane: s.lane.clone(),
                up: s.up && s.fault.is_none(),
                since: s.since,
            })
            .collect();
        let h = NodeHealth {
            v: VERSION,
            node: self.link.node.clone(),
            online: true,
            at: Timestamp::now(),
            lanes: self.lanes.clone(),
            queue_depth: depth.passages,
            oldest_queued_at: depth.oldest_queued_at,
            last_passage_at: self.link.view.get().last_passage_at,
            devices,
        };
        let payload = serde_json::to_vec(&h).unwrap_or_default();
        let _ = client.try_publish(self.link.own_topic(), QoS::AtLeastOnce, true, payload);
    }
}

/// The lot node's link: passages in, acknowledgements, health and the lot's state out.
pub struct LotLink {
    pub link: NodeLink,
    pub lot_no: String,
    pub ingest: Arc<LotIngest>,
}

impl LotLink {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (client, mut events) = AsyncClient::new(self.link.mqtt_options(None), 1024);
        let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>(1024);
        let worker = tokio::spawn(work(
            rx,
            client.clone(),
            self.link.topics.clone(),
            self.ingest.clone(),
            self.link.view.clone(),
        ));
        let mut up = false;
        let mut tick = tokio::time::interval(HEALTH_EVERY);
        loop {
            tokio::select! {
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up = true;
                        self.link.up(&client, [&self.link.topics.passages(), &self.link.topics.nodes()]);
                        tracing::info!(node = %self.link.node, "cluster link up (lot node)");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some(node) = self.link.topics.node_of(&p.topic).map(str::to_string) else { continue };
                        if p.topic == self.link.topics.passage(&node) {
                            // Waits when the ingest is behind: the broker keeps the rest.
                            if tx.send((node, p.payload.to_vec())).await.is_err() {
                                break;
                            }
                        } else if p.topic == self.link.topics.node(&node) && node != self.link.node {
                            self.on_node(&p.payload);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if up {
                            tracing::warn!(error = %e, "cluster link down (lot node); lane nodes keep their passages");
                        }
                        up = false;
                        if !self.link.down(&mut stop).await {
                            break;
                        }
                    }
                },
                _ = tick.tick() => {
                    self.housekeeping(&client, up).await;
                }
                _ = stop.changed() => break,
            }
        }
        worker.abort();
    }

    /// A lane node's health: shown, and its devices mirrored into this node's device
    /// health so the heartbeat's `lost` covers every node's lanes. A node gone offline
    /// takes its devices down with it.
    fn on_node(&self, payload: &[u8]) {
        let h: NodeHealth = match serde_json::from_slice(payload) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable node health; ignored");
                return;
            }
        };
        let now = Timestamp::now();
        let prev = self
            .link
            .view
            .get()
            .nodes
            .get(&h.node)
            .map(|(p, _)| p.clone());
        if h.online {
            for d in &h.devices {
                self.link
                    .health
                    .set(&format!("{}/{}", h.node, d.name), &d.lane, d.up, d.since);
            }
        } else if let Some(p) = &prev {
            tracing::warn!(node = %h.node, "lane node offline");
            for d in &p.devices {
                self.link
                    .health
                    .set(&format!("{}/{}", h.node, d.name), &d.lane, false, now);
            }
        }
        let mut h = h;
        if !h.online {
            // The will carries no figures: keep the last known ones.
            if let Some(p) = prev {
                h.lanes = p.lanes;
                h.queue_depth = p.queue_depth;
                h.last_passage_at = p.last_passage_at;
                h.devices = p.devices;
            }
        }
        self.link.view.set_node(h, now);
    }

    async fn housekeeping(&self, client: &AsyncClient, up: bool) {
        let ingest = self.ingest.clone();
        let r = tokio::task::spawn_blocking(move || {
            let now = Timestamp::now();
            let settled = ingest.settle_held(now)?;
            let held = ingest.held_count();
            let occ = ingest.store().occupancy()?;
            let seen = ingest.store().cluster_seen()?;
            Ok::<_, crate::store::StoreError>((settled, held, occ, seen))
        })
        .await;
        let (held, occ, seen) = match r {
            Ok(Ok((_, held, occ, seen))) => (held, occ, seen),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster housekeeping failed");
                return;
            }
            Err(_) => return,
        };
        self.link.view.set_held(held);
        let view = self.link.view.get();
        let nodes = view
            .nodes
            .values()
            .map(|(h, _)| NodeLine {
                node: h.node.clone(),
                online: h.online,
                queue_depth: h.queue_depth,
                last_passage_at: h.last_passage_at,
                last_seq: seen.iter().find(|s| s.node == h.node).map_or(0, |s| s.seq),
                seen_at: seen.iter().find(|s| s.node == h.node).map(|s| s.at),
            })
            .collect();
        let state = LotState {
            v: VERSION,
            lot: self.lot_no.clone(),
            at: Timestamp::now(),
            occupied: occ.occupied,
            total: occ.total,
            free: occ.free,
            held_exits: held,
            nodes,
        };
        self.link.view.set_lot(state.clone());
        if up {
            let payload = serde_json::to_vec(&state).unwrap_or_default();
            let _ = client.try_publish(self.link.topics.state(), QoS::AtLeastOnce, true, payload);
        }
    }
}

/// Applies passages one at a time, in arrival order, and acknowledges each committed
/// one (an acknowledgement lost is sent again when the passage comes again).
async fn work(
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    client: AsyncClient,
    topics: Topics,
    ingest: Arc<LotIngest>,
    view: ClusterView,
) {
    while let Some((node, payload)) = rx.recv().await {
        let (msg, image) = match PassageMsg::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(node = %node, error = %e, "unreadable passage from a lane node; not acknowledged");
                continue;
            }
        };
        if msg.node != node {
            tracing::warn!(topic_node = %node, node = %msg.node, "passage names another node than its topic; ignored");
            continue;
        }
        let ing = ingest.clone();
        let m = msg.clone();
        let r = tokio::task::spawn_blocking(move || ing.ingest(&m, image, Timestamp::now())).await;
        let upto = match r {
            Ok(Ok((outcome, upto))) => {
                match &outcome {
                    Ingested::Applied(_) | Ingested::Held => {
                        view.note_passage(msg.passage.at);
                        tracing::info!(node = %msg.node, seq = msg.seq, lane = %msg.passage.lane, outcome = outcome.label(), "passage from lane node committed");
                    }
                    Ingested::Duplicate => {
                        tracing::debug!(node = %msg.node, seq = msg.seq, "duplicate passage; acknowledged again")
                    }
                    Ingested::OutOfOrder { expected } => {
                        tracing::debug!(node = %msg.node, seq = msg.seq, expected, "passage ahead of a missing one; waits")
                    }
                    Ingested::UnknownLane => continue,
                }
                upto
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %msg.node, seq = msg.seq, error = %e, "cannot commit passage; the lane node sends it again");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "ingest task failed");
                continue;
            }
        };
        if upto > 0 {
            let ack = AckMsg {
                v: VERSION,
                epoch: msg.epoch.clone(),
                upto,
            };
            let payload = serde_json::to_vec(&ack).unwrap_or_default();
            if client
                .try_publish(topics.ack(&node), QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                tracing::debug!(node = %node, "acknowledgement not queued (link busy); the lane node sends again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SiteConfig;
    use crate::config::cluster::NodeRole;
    use crate::uploader::heartbeat::status;

    fn lot_link(dir: &std::path::Path) -> LotLink {
        let text = format!(
            "[platform]\nbase_url = \"https://host\"\napp_id = \"ae145d83e56cb332\"\napp_secret = \"bb0873ce314c42f7\"\n\n\
             [lot]\nparking_lot_no = \"P1\"\ntotal_spaces = 10\n\n[storage]\ndir = {:?}\n\n\
             [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\n\
             [cluster]\nnode = \"lot\"\nrole = \"lot\"\nbroker = {{ host = \"127.0.0.1\" }}\n\n\
             [[cluster.nodes]]\nname = \"north\"\nlanes = [\"entry-1\"]\n",
            dir.display().to_string()
        );
        let site = SiteConfig::from_toml(&text, std::path::Path::new("lot.toml")).unwrap();
        let store = Arc::new(crate::store::Store::open(dir, &site.lot).unwrap());
        LotLink {
            link: NodeLink {
                options: MqttOptions::new("t", "127.0.0.1", 1),
                topics: Topics::new("parking-bridge", "P1"),
                node: "lot".into(),
                view: ClusterView::new("lot", NodeRole::Lot),
                health: Health::new(),
            },
            lot_no: "P1".into(),
            ingest: Arc::new(LotIngest::new(&site, store)),
        }
    }

    fn health(online: bool, up: bool, since: Timestamp) -> Vec<u8> {
        serde_json::to_vec(&NodeHealth {
            v: VERSION,
            node: "north".into(),
            online,
            at: since,
            lanes: vec!["entry-1".into()],
            queue_depth: 3,
            oldest_queued_at: None,
            last_passage_at: None,
            devices: if online {
                vec![WireDevice {
                    name: "entry-1-io".into(),
                    lane: "entry-1".into(),
                    up,
                    since,
                }]
            } else {
                Vec::new()
            },
        })
        .unwrap()
    }

    #[test]
    fn the_heartbeat_says_lost_for_a_lane_nodes_lane_by_the_usual_rule() {
        let dir = tempfile::tempdir().unwrap();
        let lot = lot_link(dir.path());
        let now = Timestamp::now();
        // North's only device of entry-1 answers: alive.
        lot.on_node(&health(true, true, Timestamp(now.0 - 600_000)));
        assert_eq!(status(&lot.link.health, now, 120_000), "alive");
        assert_eq!(lot.link.view.get().nodes["north"].0.queue_depth, 3);
        // It has been down for 5 minutes (past lane_lost_after_secs = 120): lost.
        lot.on_node(&health(true, false, Timestamp(now.0 - 300_000)));
        assert_eq!(status(&lot.link.health, now, 120_000), "lost");
        // Back up, then the whole node goes offline (the broker's will): its devices
        // are down from now, so lost only once the usual threshold has passed.
        lot.on_node(&health(true, true, Timestamp(now.0 - 1_000)));
        assert_eq!(status(&lot.link.health, now, 120_000), "alive");
        lot.on_node(&health(false, false, Timestamp(0)));
        assert!(!lot.link.view.get().nodes["north"].0.online);
        assert_eq!(
            lot.link.view.get().nodes["north"].0.queue_depth,
            3,
            "the will keeps the last figures"
        );
        let later = Timestamp::now();
        assert_eq!(status(&lot.link.health, later, 120_000), "alive");
        assert_eq!(
            status(&lot.link.health, Timestamp(later.0 + 121_000), 120_000),
            "lost"
        );
    }
}
