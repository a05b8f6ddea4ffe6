//! The lot node's ingest: every passage of the lot — from a lane node's queue, or from
//! the lot node's own lanes — is planned and applied here, one at a time, through the
//! lane task's own [`plan_and_apply`] path; an exit that finds no stay waits for its
//! late entry ([`super::late`]).
//!
//! De-duplication: per lane node and queue epoch, the state database keeps the last
//! sequence applied (`cluster_seen`). A passage at or below it is a duplicate (its
//! acknowledgement was lost); one beyond the next is out of order and waits for the
//! lane node to send the missing one first — unless the lane node says everything
//! before it was acknowledged already (`oldest`: a restored lot database).
//! A crash between applying a passage and recording it is caught by finding the
//! passage in the stays ([`Store::passage_in_stays`]), as the lane task's restart does.

use super::late::{Resolution, Waiting, is_unmatched, resolve};
use super::wire::{PassageMsg, WirePassage};
use crate::config::{LaneConfig, LotConfig, SiteConfig};
use crate::lane::fees::{FeeSource, OwnedFees, Payments};
use crate::lane::machine::Passage;
use crate::lane::stays::{StayAction, decide};
use crate::lane_task::{PassageSink, apply_planned, open_stays};
use crate::store::PassageOrigin;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// What became of a passage offered to the lot node.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Planned and committed.
    Applied(Box<StayAction>),
    /// An exit without its stay yet: held (committed) for its late entry.
    Held,
    /// Applied before (its acknowledgement was lost).
    Duplicate,
    /// An earlier passage of the same queue has not arrived yet.
    OutOfOrder { expected: i64 },
    /// A lane the lot node does not know (config mismatch): not acknowledged.
    UnknownLane,
}

impl Ingested {
    pub fn label(&self) -> &'static str {
        match self {
            Ingested::Applied(_) => "applied",
            Ingested::Held => "held",
            Ingested::Duplicate => "duplicate",
            Ingested::OutOfOrder { .. } => "out_of_order",
            Ingested::UnknownLane => "unknown_lane",
        }
    }
}

pub struct LotIngest {
    store: Arc<Store>,
    lanes: BTreeMap<String, Arc<LaneConfig>>,
    lot: LotConfig,
    placeholders: HashSet<String>,
    node: String,
    window_ms: i64,
    /// A fee source given by a test; else `payments`.
    fees: Option<Arc<dyn FeeSource>>,
    /// The pay system's payments (`lot.fee_mqtt`), as the lot node's lane task passes
    /// them on: they price every node's exits, held ones too.
    payments: Mutex<Payments>,
    /// One passage at a time: a plan is made against the open stays it then changes.
    lock: Mutex<()>,
}

impl LotIngest {
    pub fn new(site: &SiteConfig, store: Arc<Store>) -> Self {
        let (node, window_ms) = site.cluster.as_ref().map_or((String::new(), 0), |c| {
            (
                c.node.clone(),
                i64::try_from(c.late_match_secs)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000),
            )
        });
        LotIngest {
            store,
            lanes: site
                .lanes
                .iter()
                .map(|l| (l.id.clone(), Arc::new(l.clone())))
                .collect(),
            lot: site.lot.clone(),
            placeholders: site
                .lanes
                .iter()
                .map(|l| l.placeholder_plate.clone())
                .collect(),
            node,
            window_ms,
            fees: None,
            payments: Mutex::new(Payments::for_lot(&site.lot)),
            lock: Mutex::new(()),
        }
    }

    /// Prices exits with the lot's pay-system feed where it answers.
    pub fn with_fees(mut self, fees: Option<Arc<dyn FeeSource>>) -> Self {
        self.fees = fees;
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A passage from a lane node. Returns what became of it and the queue's last
    /// applied sequence (what the acknowledgement says). Blocking.
    pub fn ingest(
        &self,
        msg: &PassageMsg,
        image: Option<Vec<u8>>,
        now: Timestamp,
    ) -> Result<(Ingested, i64), StoreError> {
        let _one = self.guard();
        let last = self.store.cluster_last_seq(&msg.node, &msg.epoch)?;
        if msg.seq <= last {
            return Ok((Ingested::Duplicate, last));
        }
        if msg.seq != last + 1 && msg.seq != msg.oldest {
            return Ok((Ingested::OutOfOrder { expected: last + 1 }, last));
        }
        if msg.seq != last + 1 {
            tracing::warn!(node = %msg.node, seq = msg.seq, last, "lane node's passages before this one were acknowledged by a state this lot node no longer has (restored database?)");
        }
        let origin = (msg.node.as_str(), msg.epoch.as_str(), msg.seq);
        let p = msg.passage.to_passage(image);
        if !self.lanes.contains_key(&p.lane) {
            tracing::error!(node = %msg.node, lane = %p.lane, "passage from a lane this lot node does not know: not acknowledged (run `parking-bridge check --node` over the lot's configs)");
            return Ok((Ingested::UnknownLane, last));
        }
        if self.store.passage_in_stays(&p.lane, p.at)? {
            tracing::info!(node = %msg.node, seq = msg.seq, "passage already in the stays; recorded as applied");
            self.store
                .cluster_mark_seen(origin.0, origin.1, origin.2, now)?;
            return Ok((Ingested::Duplicate, msg.seq));
        }
        let lot_fees = self.lot_fees();
        let out = self.place(
            Some(origin),
            &msg.node,
            &p,
            &msg.passage,
            Some(self.fees.as_deref().unwrap_or(&lot_fees)),
            now,
        )?;
        Ok((out.0, msg.seq))
    }

    /// Plans `p`: holds an exit without its stay, else applies it (and records
    /// `origin` as applied). Called with the lock held.
    fn place(
        &self,
        origin: Option<(&str, &str, i64)>,
        node: &str,
        p: &Passage,
        wire: &WirePassage,
        fees: Option<&dyn FeeSource>,
        now: Timestamp,
    ) -> Result<(Ingested, Option<String>), StoreError> {
        let Some(lane) = self.lanes.get(&p.lane) else {
            return Ok((Ingested::UnknownLane, None));
        };
        let open = open_stays(&self.store, &self.placeholders)?;
        let action = decide(p, lane, &self.lot, &open, fees);
        if self.window_ms > 0 && is_unmatched(&action) {
            let body = serde_json::to_string(wire).unwrap_or_default();
            let image = p.snapshot.as_deref().map(Vec::as_slice);
            self.store
                .cluster_hold(origin, node, &p.lane, &body, image, now)?;
            tracing::info!(node, lane = %p.lane, at = p.at.0, window_s = self.window_ms / 1000, "exit without its stay: held for a late entry");
            return Ok((Ingested::Held, None));
        }
        // Applied and recorded as applied in one transaction: a crash between the two
        // cannot make a redelivery count twice.
        let origin = origin.map(|(node, epoch, seq)| PassageOrigin::Queue {
            node: node.to_string(),
            epoch: epoch.to_string(),
            seq,
        });
        let (action, plate) = apply_planned(&self.store, &action, p, origin.as_ref())?;
        if opens_a_stay(&action) {
            self.settle_locked(now)?;
        }
        Ok((Ingested::Applied(Box::new(action)), plate))
    }

    /// Plans the waiting exits again: those whose stay is open now close it, those past
    /// the window fall back to the unmatched-exit rule. Returns how many were settled.
    /// Blocking.
    pub fn settle_held(&self, now: Timestamp) -> Result<usize, StoreError> {
        let _one = self.guard();
        self.settle_locked(now)
    }

    fn settle_locked(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut settled = 0;
        let lot_fees = self.lot_fees();
        for row in self.store.cluster_held()? {
            let wire: WirePassage = match serde_json::from_str(&row.body) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(id = row.id, error = %e, "held exit unreadable; released");
                    self.store.cluster_release(row.id)?;
                    continue;
                }
            };
            let p = wire.to_passage(row.image.clone());
            let Some(lane) = self.lanes.get(&p.lane) else {
                continue;
            };
            let open = open_stays(&self.store, &self.placeholders)?;
            let wait = Waiting {
                since: row.held_at,
                window_ms: self.window_ms,
            };
            let (action, how) = match resolve(
                &p,
                wait,
                lane,
                &self.lot,
                &open,
                Some(self.fees.as_deref().unwrap_or(&lot_fees)),
                now,
            ) {
                Resolution::Wait => continue,
                Resolution::Matched(a) => (a, "matched its late entry"),
                Resolution::Expired(a) => (a, "no entry within the window: unmatched-exit rule"),
            };
            // Applied and released in one transaction.
            apply_planned(
                &self.store,
                &action,
                &p,
                Some(&PassageOrigin::Held { id: row.id }),
            )?;
            tracing::info!(node = %row.node, lane = %p.lane, at = p.at.0, waited_ms = now.0 - row.held_at.0, "held exit {how}");
            settled += 1;
        }
        Ok(settled)
    }

    /// The pay system's payments as fees for an exit from another node.
    fn lot_fees(&self) -> OwnedFees {
        let payments = self
            .payments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        OwnedFees {
            charge: None,
            payments: (!payments.is_empty()).then_some(payments),
        }
    }

    pub fn held_count(&self) -> u64 {
        self.store.cluster_held().map_or(0, |v| v.len() as u64)
    }
}

fn opens_a_stay(a: &StayAction) -> bool {
    matches!(
        a,
        StayAction::Open { .. }
            | StayAction::SupersedeThenOpen { .. }
            | StayAction::CloseOrphanThenOpen { .. }
    )
}

/// The lot node's own lanes go through the ingest too, so that their exits also wait
/// for entries still on their way from a lane node.
impl PassageSink for LotIngest {
    fn payment(&self, event: &crate::event::RawEvent) {
        self.payments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_event(event, Timestamp::now());
    }

    fn take(
        &self,
        passage: &Passage,
        fees: Option<&dyn FeeSource>,
    ) -> Result<Option<(StayAction, Option<String>)>, StoreError> {
        let _one = self.guard();
        let wire = WirePassage::from(passage);
        let (out, plate) = self.place(None, &self.node, passage, &wire, fees, Timestamp::now())?;
        Ok(match out {
            Ingested::Applied(action) => Some((*action, plate)),
            _ => None,
        })
    }
}

/// A lane node's sink: passages go to its durable queue (and the link is woken).
pub struct QueueSink {
    pub queue: Arc<super::queue::LaneQueue>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl PassageSink for QueueSink {
    fn take(
        &self,
        passage: &Passage,
        _fees: Option<&dyn FeeSource>,
    ) -> Result<Option<(StayAction, Option<String>)>, StoreError> {
        match self.queue.enqueue(passage, Timestamp::now()) {
            Ok(Some(seq)) => {
                tracing::debug!(lane = %passage.lane, seq, "passage queued for the lot node");
                self.wake.notify_one();
            }
            Ok(None) => {
                tracing::info!(lane = %passage.lane, at = passage.at.0, "passage queued before; not again")
            }
            Err(super::queue::QueueError::Sql(e)) => return Err(StoreError::Sql(e)),
            Err(e) => return Err(StoreError::Invalid(e.to_string())),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::VERSION;
    use crate::config::Direction;
    use std::path::Path;

    fn site(dir: &Path, late_secs: u64) -> SiteConfig {
        let text = format!(
            "[platform]\nbase_url = \"https://host\"\napp_id = \"ae145d83e56cb332\"\napp_secret = \"bb0873ce314c42f7\"\n\n\
             [lot]\nparking_lot_no = \"P1\"\ntotal_spaces = 10\n\n[storage]\ndir = {:?}\n\n\
             [[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\n\
             [[lanes]]\nid = \"exit-2\"\ndirection = \"exit\"\nport_no = \"X2\"\n\n\
             [cluster]\nnode = \"lot\"\nrole = \"lot\"\nbroker = {{ host = \"127.0.0.1\" }}\nlate_match_secs = {late_secs}\n\n\
             [[cluster.nodes]]\nname = \"north\"\nlanes = [\"entry-1\"]\n\n\
             [[cluster.nodes]]\nname = \"south\"\nlanes = [\"exit-2\"]\n",
            dir.display().to_string()
        );
        SiteConfig::from_toml(&text, Path::new("lot.toml")).unwrap()
    }

    fn passage(lane: &str, direction: Direction, plate: &str, at: i64) -> Passage {
        Passage {
            lane: lane.into(),
            ..Passage::sample(direction, Some(plate), Timestamp(at))
        }
    }

    fn msg(node: &str, seq: i64, oldest: i64, p: &Passage) -> PassageMsg {
        PassageMsg {
            v: VERSION,
            node: node.into(),
            epoch: format!("{node}-epoch"),
            seq,
            oldest,
            queued_at: p.at,
            passage: WirePassage::from(p),
        }
    }

    /// Exits wait this long for their entries.
    const LATE_SECS: u64 = 600;

    fn ingest(dir: &Path) -> LotIngest {
        let site = site(dir, LATE_SECS);
        let store = Arc::new(Store::open(dir, &site.lot).unwrap());
        LotIngest::new(&site, store)
    }

    /// A lot node with its state database in a new directory.
    fn lot_node() -> (tempfile::TempDir, LotIngest) {
        let dir = tempfile::tempdir().unwrap();
        let ing = ingest(dir.path());
        (dir, ing)
    }

    const T0: i64 = 1_700_000_000_000;

    /// `plate` in at `entry-1` (north) at `T0`, out at `exit-2` (south) half an hour later.
    fn half_hour_visit(plate: &str) -> (Passage, Passage) {
        (
            passage("entry-1", Direction::Entry, plate, T0),
            passage("exit-2", Direction::Exit, plate, T0 + 30 * 60_000),
        )
    }

    #[test]
    fn a_passage_delivered_twice_or_out_of_order_is_applied_once_in_order() {
        let (dir, ing) = lot_node();
        let a = passage("entry-1", Direction::Entry, "闽A00001", T0);
        let b = passage("entry-1", Direction::Entry, "闽A00002", T0 + 1000);
        let now = Timestamp(T0 + 2000);
        // The second arrives first: it waits for the first.
        let (out, upto) = ing.ingest(&msg("north", 2, 1, &b), None, now).unwrap();
        assert_eq!((out, upto), (Ingested::OutOfOrder { expected: 1 }, 0));
        let (out, upto) = ing.ingest(&msg("north", 1, 1, &a), None, now).unwrap();
        assert!(
            matches!(&out, Ingested::Applied(a) if matches!(**a, StayAction::Open { .. })),
            "{out:?}"
        );
        assert_eq!(upto, 1);
        // Its acknowledgement was lost: it comes again.
        let (out, upto) = ing.ingest(&msg("north", 1, 1, &a), None, now).unwrap();
        assert_eq!((out, upto), (Ingested::Duplicate, 1));
        let (out, upto) = ing.ingest(&msg("north", 2, 1, &b), None, now).unwrap();
        assert!(matches!(out, Ingested::Applied(_)));
        assert_eq!(upto, 2);
        assert_eq!(ing.store().occupancy().unwrap().occupied, 2);
        // A restarted lot node (same database) knows where each queue stands.
        drop(ing);
        let ing = ingest(dir.path());
        let (out, _) = ing.ingest(&msg("north", 2, 1, &b), None, now).unwrap();
        assert_eq!(out, Ingested::Duplicate);
        assert_eq!(ing.store().occupancy().unwrap().occupied, 2);
        // A passage applied but not recorded (crash in between) is not applied again.
        let c = passage("entry-1", Direction::Entry, "闽A00003", T0 + 3000);
        ing.ingest(&msg("north", 3, 3, &c), None, now).unwrap();
        let (out, _) = ing.ingest(&msg("north", 1, 1, &c), None, now).unwrap();
        assert_eq!(out, Ingested::Duplicate);
        let mut m = msg("north", 1, 1, &c);
        m.epoch = "north-new-pc".into();
        let (out, upto) = ing.ingest(&m, None, now).unwrap();
        assert_eq!((out, upto), (Ingested::Duplicate, 1), "found in the stays");
        assert_eq!(ing.store().occupancy().unwrap().occupied, 3);
    }

    #[test]
    fn an_exit_before_its_entry_waits_and_closes_the_stay_when_the_entry_arrives() {
        let (_dir, ing) = lot_node();
        let (entry, exit) = half_hour_visit("闽A12345");
        let arrived = Timestamp(T0 + 30 * 60_000 + 100);
        let (out, _) = ing
            .ingest(&msg("south", 1, 1, &exit), None, arrived)
            .unwrap();
        assert_eq!(out, Ingested::Held);
        assert_eq!(ing.held_count(), 1);
        assert_eq!(ing.settle_held(Timestamp(arrived.0 + 60_000)).unwrap(), 0);
        // Two minutes later the entry comes from the north node.
        let later = Timestamp(arrived.0 + 120_000);
        let (out, _) = ing
            .ingest(&msg("north", 1, 1, &entry), None, later)
            .unwrap();
        assert!(matches!(&out, Ingested::Applied(a) if matches!(**a, StayAction::Open { .. })));
        assert_eq!(ing.held_count(), 0, "matched at once");
        let stays = ing.store().list_stays(false, 10).unwrap();
        assert_eq!(stays.len(), 1);
        assert_eq!(stays[0].exited_at, Some(exit.at));
        assert_eq!(ing.store().occupancy().unwrap().occupied, 0);
    }

    #[test]
    fn the_pay_systems_payment_prices_an_exit_from_another_node() {
        let (_dir, ing) = lot_node();
        let (entry, exit) = half_hour_visit("闽A12345");
        ing.ingest(&msg("north", 1, 1, &entry), None, Timestamp(T0 + 100))
            .unwrap();
        // The lot node's lane task passes the pay system's payment on.
        ing.payment(&crate::event::RawEvent {
            lane: String::new(),
            device: "lot-fees".into(),
            at: Timestamp(T0 + 20 * 60_000),
            kind: crate::event::EventKind::Payment {
                plate_no: "闽A12345".into(),
                price: 1200,
                should_pay: 200,
                paid_fee: 1000,
            },
        });
        let (out, _) = ing
            .ingest(
                &msg("south", 1, 1, &exit),
                None,
                Timestamp(T0 + 30 * 60_000 + 100),
            )
            .unwrap();
        assert!(
            matches!(&out, Ingested::Applied(a) if matches!(**a, StayAction::Close { .. })),
            "{out:?}"
        );
        let stay = &ing.store().list_stays(false, 10).unwrap()[0];
        assert_eq!(
            (stay.price, stay.should_pay, stay.paid_fee),
            (Some(1200), Some(200), Some(1000))
        );
    }

    #[test]
    fn a_held_exit_falls_back_to_the_unmatched_rule_after_the_window() {
        let (_dir, ing) = lot_node();
        let exit = passage("exit-2", Direction::Exit, "闽A54321", T0);
        let (out, _) = ing
            .ingest(&msg("south", 1, 1, &exit), None, Timestamp(T0))
            .unwrap();
        assert_eq!(out, Ingested::Held);
        assert_eq!(ing.settle_held(Timestamp(T0 + 599_999)).unwrap(), 0);
        assert_eq!(ing.settle_held(Timestamp(T0 + 600_000)).unwrap(), 1);
        assert_eq!(ing.held_count(), 0);
        assert!(ing.store().list_stays(false, 10).unwrap().is_empty());
    }
}
