//! An in-memory model of the lot's stays and occupancy: what the state database does
//! with a [`StayAction`], without the database. Replay and the property tests run on
//! it; the runtime applies the same actions to the real store.
//!
//! Occupancy: an entry (or count-only entry) adds one, an exit (matched, unmatched or
//! count-only) and an expired stay remove one, a superseded or orphaned stay is replaced
//! by its new one (no change), a trailer folded into its tractor's stay changes nothing. `occupied` is kept within `0..=total` (as the state database keeps
//! it) and `free = total − occupied`, so free spaces always lie within `0..=total`.

use super::stays::{NewEntry, OpenStay, StayAction, expired};
use crate::config::LotConfig;
use crate::config::lanes::Direction;
use crate::report::{EntryReport, ExitReport, Report, SnapshotEvent};
use crate::time::Timestamp;
use chrono::FixedOffset;
use serde::Serialize;

/// The occupancy figures every report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occupancy {
    pub occupied: i64,
    pub total: i64,
    pub free: i64,
}

impl Occupancy {
    pub fn of(occupied: i64, total: i64) -> Self {
        let occupied = occupied.max(0);
        Occupancy {
            occupied,
            total,
            free: (total - occupied).clamp(0, total.max(0)),
        }
    }
}

/// Why a stay was closed without an exit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalClose {
    Superseded,
    Expired,
}

/// Something that happened locally and is not sent to the platform.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalEvent {
    ClosedLocally {
        out_order_no: String,
        plate_no: String,
        reason: LocalClose,
        at: Timestamp,
    },
    UnmatchedExit {
        lane: String,
        plate_no: Option<String>,
        at: Timestamp,
        free_spaces: i64,
    },
    CountOnly {
        lane: String,
        direction: Direction,
        at: Timestamp,
        free_spaces: i64,
    },
    /// The stay's exit was missed (its plate entered again): an exit was reported for
    /// it at `away_time`, price 0.
    Orphaned {
        out_order_no: String,
        plate_no: String,
        away_time: Timestamp,
    },
    /// A trailer behind its tractor, part of the tractor's stay.
    TrailerWithTractor {
        lane: String,
        direction: Direction,
        plate_no: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tractor: Option<String>,
        at: Timestamp,
    },
}

/// One line of replay output.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passage(super::machine::Passage),
    Report(Report),
    Local(LocalEvent),
}

impl Outcome {
    /// The JSON line replay prints (reports in their outbox form, tagged by `kind`).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct PassageLine<'a> {
            kind: &'static str,
            #[serde(flatten)]
            passage: &'a super::machine::Passage,
        }
        // These types serialise plain strings, numbers and enums only, so serde_json
        // cannot fail on them; an empty line would show up in any comparison anyway.
        let line = match self {
            Outcome::Passage(p) => serde_json::to_string(&PassageLine {
                kind: "passage",
                passage: p,
            }),
            Outcome::Report(r) => serde_json::to_string(r),
            Outcome::Local(l) => serde_json::to_string(l),
        };
        line.unwrap_or_default()
    }
}

/// The stays and occupancy of one lot, in memory.
#[derive(Debug, Clone)]
pub struct MemoryLot {
    lot: LotConfig,
    offset: FixedOffset,
    open: Vec<OpenStay>,
    occupied: i64,
    seq: u64,
}

impl MemoryLot {
    pub fn new(lot: &LotConfig, offset: FixedOffset) -> Self {
        MemoryLot {
            lot: lot.clone(),
            offset,
            open: Vec::new(),
            occupied: 0,
            seq: 0,
        }
    }

    pub fn open_stays(&self) -> &[OpenStay] {
        &self.open
    }

    pub fn occupancy(&self) -> Occupancy {
        Occupancy::of(self.occupied, self.lot.total_spaces)
    }

    /// The operator's correction (`occupancy set N`) or an external occupancy source.
    pub fn set_occupied(&mut self, n: i64) {
        self.occupied = n.clamp(0, self.lot.total_spaces.max(0));
    }

    /// `out_order_no` as the spec recommends: lot number + entry time + 6-digit sequence.
    fn next_order_no(&mut self, at: Timestamp) -> String {
        self.seq += 1;
        let time = at.to_local(self.offset).format("%Y%m%d%H%M%S");
        format!(
            "{}{}{:06}",
            self.lot.parking_lot_no,
            time,
            self.seq % 1_000_000
        )
    }

    /// Kept within 0..=total, as the state database does.
    fn add(&mut self, delta: i64) {
        self.occupied = (self.occupied + delta).clamp(0, self.lot.total_spaces.max(0));
    }

    /// Applies one action; returns what it produced, in order.
    pub fn apply(&mut self, action: StayAction, out: &mut Vec<Outcome>) {
        match action {
            StayAction::Open { entry } => {
                self.open_stay(entry, out);
            }
            StayAction::SupersedeThenOpen { superseded, entry } => {
                // The car left unseen and came back: its old space is free again.
                if self.close_locally(
                    &superseded,
                    LocalClose::Superseded,
                    entry.details.entered_at,
                    out,
                ) {
                    self.add(-1);
                }
                self.open_stay(entry, out);
            }
            StayAction::CloseOrphanThenOpen {
                orphaned,
                exit,
                entry,
            } => {
                if let Some(i) = self.open.iter().position(|s| s.out_order_no == orphaned) {
                    let stay = self.open.remove(i);
                    self.add(-1);
                    self.exit_reports(&stay, &exit, out);
                    out.push(Outcome::Local(LocalEvent::Orphaned {
                        out_order_no: stay.out_order_no,
                        plate_no: stay.plate_no,
                        away_time: exit.details.away_time,
                    }));
                }
                self.open_stay(entry, out);
            }
            StayAction::TrailerFolded {
                lane,
                direction,
                plate_no,
                tractor,
                at,
            } => out.push(Outcome::Local(LocalEvent::TrailerWithTractor {
                lane,
                direction,
                plate_no,
                tractor,
                at,
            })),
            StayAction::Close { out_order_no, exit } => {
                let Some(i) = self
                    .open
                    .iter()
                    .position(|s| s.out_order_no == out_order_no)
                else {
                    return;
                };
                let stay = self.open.remove(i);
                self.add(-1);
                self.exit_reports(&stay, &exit, out);
            }
            StayAction::UnmatchedExit { lane, plate_no, at } => {
                self.add(-1);
                out.push(Outcome::Local(LocalEvent::UnmatchedExit {
                    lane,
                    plate_no,
                    at,
                    free_spaces: self.occupancy().free,
                }));
            }
            StayAction::SyntheticStay { entry, exit } => {
                let stay = self.open_stay(entry, out);
                self.open.retain(|s| s.out_order_no != stay.out_order_no);
                self.add(-1);
                self.exit_reports(&stay, &exit, out);
            }
            StayAction::CountOnly {
                lane,
                direction,
                at,
            } => {
                self.add(if direction == Direction::Entry { 1 } else { -1 });
                out.push(Outcome::Local(LocalEvent::CountOnly {
                    lane,
                    direction,
                    at,
                    free_spaces: self.occupancy().free,
                }));
            }
        }
    }

    /// Closes stays older than the lot's maximum age.
    pub fn expire(&mut self, now: Timestamp, out: &mut Vec<Outcome>) {
        for no in expired(&self.open, &self.lot, now) {
            if self.close_locally(&no, LocalClose::Expired, now, out) {
                self.add(-1);
            }
        }
    }

    fn close_locally(
        &mut self,
        no: &str,
        reason: LocalClose,
        at: Timestamp,
        out: &mut Vec<Outcome>,
    ) -> bool {
        let found = self.open.iter().position(|s| s.out_order_no == no);
        if let Some(i) = found {
            let stay = self.open.remove(i);
            out.push(Outcome::Local(LocalEvent::ClosedLocally {
                out_order_no: stay.out_order_no,
                plate_no: stay.plate_no,
                reason,
                at,
            }));
        }
        found.is_some()
    }

    fn open_stay(&mut self, e: NewEntry, out: &mut Vec<Outcome>) -> OpenStay {
        let out_order_no = self.next_order_no(e.details.entered_at);
        self.add(1);
        let occ = self.occupancy();
        let stay = OpenStay {
            out_order_no: out_order_no.clone(),
            plate_no: e.details.plate_no.clone(),
            plate_color: e.details.plate_color,
            car_type: e.details.car_type,
            entered_at: e.details.entered_at,
            placeholder: e.placeholder,
        };
        self.open.push(stay.clone());
        out.push(Outcome::Report(Report::Entry(EntryReport {
            out_order_no: out_order_no.clone(),
            plate_no: e.details.plate_no,
            plate_color: e.details.plate_color,
            car_type: e.details.car_type,
            parking_time: e.details.entered_at,
            port_no: e.details.port_no,
            operator: e.details.operator,
            price: e.details.price,
            should_pay: e.details.should_pay,
            total_spaces: occ.total,
            free_spaces: occ.free,
        })));
        if e.snapshot_len.is_some() {
            out.push(Outcome::Report(Report::Snapshot {
                out_order_no,
                event: SnapshotEvent::Parking,
            }));
        }
        stay
    }

    fn exit_reports(&self, stay: &OpenStay, exit: &super::stays::ExitPlan, out: &mut Vec<Outcome>) {
        let occ = self.occupancy();
        out.push(Outcome::Report(Report::Exit(ExitReport {
            out_order_no: stay.out_order_no.clone(),
            plate_no: stay.plate_no.clone(),
            plate_color: stay.plate_color,
            car_type: stay.car_type,
            away_time: exit.details.away_time,
            price: exit.details.fee.price,
            should_pay: exit.details.fee.should_pay,
            paid_fee: exit.details.fee.paid_fee,
            port_no: exit.details.port_no.clone(),
            operator: exit.details.operator.clone(),
            total_spaces: occ.total,
            free_spaces: occ.free,
        })));
        if exit.snapshot_len.is_some() {
            out.push(Outcome::Report(Report::Snapshot {
                out_order_no: stay.out_order_no.clone(),
                event: SnapshotEvent::Away,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_spaces_stay_within_zero_and_total() {
        assert_eq!(
            Occupancy::of(-3, 10),
            Occupancy {
                occupied: 0,
                total: 10,
                free: 10
            }
        );
        assert_eq!(
            Occupancy::of(12, 10),
            Occupancy {
                occupied: 12,
                total: 10,
                free: 0
            }
        );
        assert_eq!(Occupancy::of(4, 10).free, 6);
    }
}
