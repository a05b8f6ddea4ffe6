//! `LaneCore`: the whole lot's decision logic, pure. The service's lane task
//! ([`crate::lane_task`]) and `replay` ([`super::replay`]) are shells around the same
//! core, so a journal replays to what the service decided.
//!
//! It owns the lane machines (with their timers), the pay terminals' last charges, the
//! pay system's payments, the occupancy source and the stay-expiry timer. Input: raw
//! events and time, nothing else; output: [`Step`]s (a passage to plan, an occupied
//! count to set, an expiry check due) and [`LaneCore::poll_at`]. A passage becomes a
//! [`StayAction`] through [`LaneCore::plan`], against the open stays the shell holds
//! (the state database is shared with operator commands, so the shell reads it; the
//! core keeps no copy that could drift from it).
//!
//! Time: an event is handled at its own `at`, after every timer due by then (earliest
//! first, ties by lane id); time never goes backwards (`now = max(now, event.at)`).
//! Expiry is checked at the first moment and then every [`EXPIRY_EVERY_MS`].

use super::fees::{Fee, FeeSource, OwnedFees, Payments, TerminalCharge, TerminalThen};
use super::machine::{LaneMachine, Passage};
use super::stays::{OpenStay, StayAction, decide, expired};
use crate::config::{LaneConfig, SiteConfig};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How often open stays are checked for expiry.
pub const EXPIRY_EVERY_MS: i64 = 60_000;

/// What the core asks of its shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A vehicle passed: plan it ([`LaneCore::plan`]) and apply the action.
    /// `timer`: completed by a timer rather than by an event of its lane.
    Passage { passage: Passage, timer: bool },
    /// The occupancy source says this many spaces are taken (already within
    /// `0..=total`).
    Occupied(i64),
    /// Close the open stays [`LaneCore::expired`] names at this time.
    Expire(Timestamp),
    /// A pay terminal showed a charge (counted by the shell's metrics).
    Charge { lane: String, fee: Fee },
}

/// The lot's decision logic.
pub struct LaneCore {
    lot: crate::config::LotConfig,
    lanes: BTreeMap<String, (Arc<LaneConfig>, LaneMachine)>,
    /// The last charge each exit lane's pay terminal showed.
    charges: BTreeMap<String, TerminalCharge>,
    /// The pay system's latest payment per plate.
    payments: Payments,
    now: Timestamp,
    last_expiry: Option<Timestamp>,
}

impl LaneCore {
    pub fn new(site: &SiteConfig) -> Self {
        LaneCore {
            lot: site.lot.clone(),
            lanes: site
                .lanes
                .iter()
                .map(|l| (l.id.clone(), (Arc::new(l.clone()), LaneMachine::new(l))))
                .collect(),
            charges: BTreeMap::new(),
            payments: Payments::for_lot(&site.lot),
            now: Timestamp(i64::MIN),
            last_expiry: None,
        }
    }

    pub fn lot(&self) -> &crate::config::LotConfig {
        &self.lot
    }

    pub fn knows_lane(&self, lane: &str) -> bool {
        self.lanes.contains_key(lane)
    }

    pub fn lane_config(&self, lane: &str) -> Option<&Arc<LaneConfig>> {
        self.lanes.get(lane).map(|(c, _)| c)
    }

    pub fn machine(&self, lane: &str) -> Option<&LaneMachine> {
        self.lanes.get(lane).map(|(_, m)| m)
    }

    pub fn machines(&self) -> impl Iterator<Item = (&String, &LaneMachine)> {
        self.lanes.iter().map(|(id, (_, m))| (id, m))
    }

    /// The lane configs, in lane id order.
    pub fn lane_configs(&self) -> Vec<LaneConfig> {
        self.lanes.values().map(|(c, _)| (**c).clone()).collect()
    }

    /// Puts a lane's machine back as a restart rebuilt it from the journal.
    pub fn restore_machine(&mut self, lane: &str, machine: LaneMachine) {
        if let Some((_, m)) = self.lanes.get_mut(lane) {
            *m = machine;
        }
    }

    /// The bridge restarted with the lanes resumed: see [`LaneMachine::restarted`].
    pub fn restarted(&mut self, now: Timestamp) {
        for (_, m) in self.lanes.values_mut() {
            m.restarted(now);
        }
    }

    /// Puts back the pay terminals' charges a restart found in the journal.
    pub fn restore_charges(&mut self, charges: impl IntoIterator<Item = (String, TerminalCharge)>) {
        self.charges.extend(charges);
    }

    /// Records a payment (also one a restart found in the journal) without moving
    /// time; payments too old to be used by now are forgotten.
    pub fn restore_payment(&mut self, event: &RawEvent) {
        self.payments.record_event(event, self.now);
    }

    /// The core's time: the latest event or timer it was given.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// When the core next needs [`on_time`](Self::on_time): the earliest lane timer or
    /// the next expiry check.
    pub fn poll_at(&self) -> Option<Timestamp> {
        let timers = self.lanes.values().filter_map(|(_, m)| m.poll_at()).min();
        let expiry = Some(
            self.last_expiry
                .map_or(self.now, |t| t.plus_millis(EXPIRY_EVERY_MS)),
        );
        timers.into_iter().chain(expiry).min()
    }

    /// The earliest lane timer only (what is still held when input ends).
    pub fn next_timer(&self) -> Option<Timestamp> {
        self.lanes.values().filter_map(|(_, m)| m.poll_at()).min()
    }

    /// Handles one event at its own time, after every timer due by then.
    pub fn handle(&mut self, event: &RawEvent) -> Vec<Step> {
        let mut out = Vec::new();
        self.handle_into(event, &mut out);
        out
    }

    /// [`handle`](Self::handle), appending to `out` (a buffer the caller reuses).
    pub fn handle_into(&mut self, event: &RawEvent, out: &mut Vec<Step>) {
        self.advance(event.at, out);
        let now = self.now;
        match &event.kind {
            EventKind::Spaces { counted, value } => {
                let occupied = counted
                    .occupied(*value, self.lot.total_spaces)
                    .clamp(0, self.lot.total_spaces.max(0));
                out.push(Step::Occupied(occupied));
                return;
            }
            EventKind::PayTerminal { price, paid } => {
                match TerminalCharge::new(event.at, *price, *paid) {
                    Some(c) => {
                        out.push(Step::Charge {
                            lane: event.lane.clone(),
                            fee: c.fee,
                        });
                        self.charges.insert(event.lane.clone(), c);
                    }
                    None => {
                        self.charges.remove(&event.lane);
                    }
                }
                return;
            }
            EventKind::Payment { .. } => {
                self.restore_payment(event);
                return;
            }
            _ => {}
        }
        if let Some((_, machine)) = self.lanes.get_mut(&event.lane) {
            for passage in machine.handle(event, now) {
                out.push(Step::Passage {
                    passage,
                    timer: false,
                });
            }
        }
    }

    /// Runs what is due by `now`: lane timers (each at its own deadline, earliest
    /// first) and the expiry check.
    pub fn on_time(&mut self, now: Timestamp) -> Vec<Step> {
        let mut out = Vec::new();
        self.advance(now, &mut out);
        out
    }

    /// Runs every lane timer left, however far ahead (end of input, or a stop without
    /// a journal to resume from); no expiry check.
    pub fn finish(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        self.run_timers(Timestamp(i64::MAX), &mut out);
        out
    }

    fn advance(&mut self, to: Timestamp, out: &mut Vec<Step>) {
        self.now = self.now.max(to);
        self.run_timers(self.now, out);
        if self
            .last_expiry
            .is_none_or(|t| self.now.0.saturating_sub(t.0) >= EXPIRY_EVERY_MS)
        {
            self.last_expiry = Some(self.now);
            out.push(Step::Expire(self.now));
        }
    }

    fn run_timers(&mut self, until: Timestamp, out: &mut Vec<Step>) {
        loop {
            let due = self
                .lanes
                .iter()
                .filter_map(|(id, (_, m))| m.poll_at().map(|t| (t, id)))
                .filter(|(t, _)| *t <= until)
                .min()
                .map(|(t, id)| (t, id.clone()));
            let Some((t, lane)) = due else { return };
            let Some((_, machine)) = self.lanes.get_mut(&lane) else {
                return;
            };
            for passage in machine.on_timer(t) {
                out.push(Step::Passage {
                    passage,
                    timer: true,
                });
            }
        }
    }

    /// What `passage` does to the stays `open` (oldest first). The exit lane's
    /// terminal charge is used first, then the pay system's payment for the plate,
    /// then the tariff; a charge is forgotten once a vehicle left after it was shown
    /// (it cannot be a later vehicle's).
    pub fn plan(&mut self, passage: &Passage, open: &[OpenStay]) -> StayAction {
        let charge = self.take_charge(passage);
        let Some((cfg, _)) = self.lanes.get(&passage.lane) else {
            // A passage comes only from a lane's own machine.
            return StayAction::UnmatchedExit {
                lane: passage.lane.clone(),
                plate_no: None,
                at: passage.at,
            };
        };
        // No payment recorded (most lots): the tariff without a look-up per exit.
        let payments = (!self.payments.is_empty()).then_some(&self.payments as &dyn FeeSource);
        match charge {
            Some(charge) => {
                let fees = TerminalThen {
                    charge,
                    then: payments,
                };
                decide(passage, cfg, &self.lot, open, Some(&fees))
            }
            None => decide(passage, cfg, &self.lot, open, payments),
        }
    }

    /// The exit lane's terminal charge for `passage`, forgotten once a vehicle left
    /// after it was shown (it cannot be a later vehicle's).
    fn take_charge(&mut self, passage: &Passage) -> Option<TerminalCharge> {
        let charge = *self.charges.get(&passage.lane)?;
        if charge.at <= passage.at {
            self.charges.remove(&passage.lane);
        }
        Some(charge)
    }

    /// The fees [`plan`](Self::plan) would use for `passage`, to be planned elsewhere
    /// (a multi-PC lot's lot node); consumes the terminal charge as `plan` does.
    pub fn fees_for(&mut self, passage: &Passage) -> OwnedFees {
        OwnedFees {
            charge: self.take_charge(passage),
            payments: (!self.payments.is_empty()).then(|| self.payments.clone()),
        }
    }

    /// The open stays older than the lot allows at `now`.
    pub fn expired(&self, open: &[OpenStay], now: Timestamp) -> Vec<String> {
        expired(open, &self.lot, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Counted;

    fn site() -> SiteConfig {
        let text = "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n\
            [lot]\nparking_lot_no = \"L\"\ntotal_spaces = 9\n\
            [lot.fee_mqtt]\ntopic = \"pay\"\nmax_age_secs = 600\n\
            [storage]\ndir = \"/tmp\"\n[mqtt]\nhost = \"h\"\n\
            [[lanes]]\nid = \"out\"\ndirection = \"exit\"\nport_no = \"P1\"\n\
            [[devices]]\nname = \"c\"\nprofile = \"vzenith-mqtt\"\nlane = \"out\"\ncamera_id = \"1\"\n";
        SiteConfig::from_toml(text, std::path::Path::new("s.toml")).unwrap()
    }

    use crate::lane::testkit::{exit_on, io_event as event, open_stay};

    fn exit_of(plate: &str, at: i64) -> Passage {
        exit_on("out", plate, at)
    }

    fn stay(plate: &str, entered: i64) -> OpenStay {
        open_stay(&format!("L{plate}"), plate, entered, false)
    }

    fn price(action: &StayAction) -> Option<(i64, i64)> {
        match action {
            StayAction::Close { exit, .. } => {
                Some((exit.details.fee.price, exit.details.fee.paid_fee))
            }
            _ => None,
        }
    }

    fn payment(plate: &str, at: i64, price: i64) -> RawEvent {
        event(
            "",
            at,
            EventKind::Payment {
                plate_no: plate.into(),
                price,
                should_pay: 0,
                paid_fee: price,
            },
        )
    }

    #[test]
    fn a_payment_counts_only_for_the_stay_it_was_made_in_and_not_too_long_before_the_exit() {
        let mut core = LaneCore::new(&site());
        core.handle(&payment("闽a12345", 1_000_000, 700));
        let open = [stay("闽A12345", 0)];
        assert_eq!(
            price(&core.plan(&exit_of("闽A12345", 1_060_000), &open)),
            Some((700, 700))
        );
        // The stay began after the payment: an earlier stay's; the tariff decides.
        let later = [stay("闽A12345", 1_000_001)];
        assert_ne!(
            price(&core.plan(&exit_of("闽A12345", 1_060_000), &later)),
            Some((700, 700))
        );
        // The exit is too long after the payment.
        assert_ne!(
            price(&core.plan(&exit_of("闽A12345", 1_000_000 + 600_001), &open)),
            Some((700, 700))
        );
    }

    #[test]
    fn the_terminal_charge_wins_over_a_payment_and_serves_one_vehicle() {
        let mut core = LaneCore::new(&site());
        core.handle(&payment("闽A12345", 1_000_000, 700));
        let steps = core.handle(&event(
            "out",
            1_010_000,
            EventKind::PayTerminal {
                price: 1500,
                paid: Some(1000),
            },
        ));
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::Charge { fee, .. } if fee.price == 1500))
        );
        let open = [stay("闽A12345", 0), stay("闽B00001", 0)];
        assert_eq!(
            price(&core.plan(&exit_of("闽A12345", 1_020_000), &open)),
            Some((1500, 1000))
        );
        // The next vehicle out does not pay the same charge again.
        assert_ne!(
            price(&core.plan(&exit_of("闽B00001", 1_030_000), &open)),
            Some((1500, 1000))
        );
    }

    #[test]
    fn space_counts_set_the_occupied_count_within_the_lot() {
        let mut core = LaneCore::new(&site());
        let count = |at, counted, value| event("", at, EventKind::Spaces { counted, value });
        let occupied = |steps: Vec<Step>| {
            steps.into_iter().find_map(|s| match s {
                Step::Occupied(n) => Some(n),
                _ => None,
            })
        };
        assert_eq!(
            occupied(core.handle(&count(1, Counted::Occupied, 4))),
            Some(4)
        );
        assert_eq!(occupied(core.handle(&count(2, Counted::Free, 2))), Some(7));
        assert_eq!(
            occupied(core.handle(&count(3, Counted::Occupied, 40))),
            Some(9)
        );
        assert_eq!(occupied(core.handle(&count(4, Counted::Free, 40))), Some(0));
    }

    #[test]
    fn expiry_is_checked_at_once_then_every_minute_of_core_time() {
        let mut core = LaneCore::new(&site());
        let expiries = |steps: &[Step]| {
            steps
                .iter()
                .filter(|s| matches!(s, Step::Expire(_)))
                .count()
        };
        assert_eq!(expiries(&core.on_time(Timestamp(1_000))), 1);
        assert_eq!(core.poll_at(), Some(Timestamp(61_000)));
        assert_eq!(expiries(&core.on_time(Timestamp(60_999))), 0);
        assert_eq!(expiries(&core.handle(&payment("A1", 61_000, 1))), 1);
        // Time never goes backwards.
        core.on_time(Timestamp(5));
        assert_eq!(core.now(), Timestamp(61_000));
        // The end of input runs lane timers only.
        assert_eq!(expiries(&core.finish()), 0);
    }
}
