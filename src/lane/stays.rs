//! The stay planner: what a passage means for the lot's stays, decided purely from the
//! passage, the open stays and the config. The runtime applies the resulting
//! [`StayAction`] to the state database; replay applies it to an in-memory model.
//!
//! Rules (see `docs/lane-logic.md`):
//! - entry with a plate → open a stay; if that plate already has an open stay (its exit
//!   was missed), the old one is first closed with an `orphaned` exit report at the new
//!   entry's time minus one second, price 0 (`lot.reentry = "close_with_exit"`, default),
//!   or closed locally as superseded (`"leave_open"`: the platform keeps it open);
//! - a trailer (`…挂`) behind its tractor in one gate opening → folded into the
//!   tractor's stay (`lot.trailers = "with_tractor"`, default) or a vehicle of its own;
//! - entry without a plate → a placeholder stay (`无牌车`, `pnc_01`) or count-only, per
//!   the lane's `unreadable_plate`; placeholder stays never supersede each other;
//! - exit with a plate → close the matching stay (exact, else the single one-misread
//!   candidate); no match → recorded locally (or a synthetic zero-length stay when the
//!   lot says `unmatched_exit = "report_synthetic"`);
//! - exit without a plate → closes the oldest placeholder stay (placeholder policy),
//!   else unmatched; count-only on count-only lanes.

use super::fees::{Fee, FeeQuery, FeeSource, decide_fee};
use super::machine::Passage;
use super::matching::{MatchKind, match_exit};
use super::plate_format::{car_type_of, effective_color};
use crate::config::lanes::{Direction, LaneConfig, UnreadablePlate};
use crate::config::lot::{LotConfig, Reentry, Trailers, UnmatchedExit};
use crate::plate::{CarType, PlateColor};
use crate::time::Timestamp;
use serde::Serialize;
use std::sync::Arc;

/// What the planner needs to know about an open stay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenStay {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: PlateColor,
    pub car_type: CarType,
    pub entered_at: Timestamp,
    /// Opened for an unreadable plate under the lane's placeholder plate.
    pub placeholder: bool,
}

/// A vehicle that entered: its plate, the entry lane and its City Brain port, the
/// time, who let it in and the entry picture. `I` holds the picture: shared (`Arc`)
/// when a camera took it, owned when an operator gave a file (`store::NewStay`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryDetails<I> {
    pub plate_no: String,
    pub plate_color: PlateColor,
    pub car_type: CarType,
    /// Lane id from the site config.
    pub lane: String,
    /// City Brain id of the entrance.
    pub port_no: String,
    pub entered_at: Timestamp,
    pub operator: Option<String>,
    /// The raw camera image (JPEG or PNG, any size); re-encoded before sending.
    #[serde(skip)]
    pub snapshot: Option<I>,
    /// Pre-paid / booked cars only, fen (the lanes know of none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub should_pay: Option<i64>,
}

/// A stay to open, as the planner decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEntry {
    #[serde(flatten)]
    pub details: EntryDetails<Arc<Vec<u8>>>,
    /// Opened for an unreadable plate under the lane's placeholder plate.
    pub placeholder: bool,
    pub snapshot_len: Option<usize>,
}

/// How a stay ends: the exit lane and its City Brain port, the time, what the stay
/// cost, who let the vehicle out and the exit picture. `I` holds the picture: shared
/// (`Arc`) when a camera took it, owned when an operator gave a file
/// (`store::ExitDetails`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitDetails<I> {
    pub lane: String,
    pub port_no: String,
    /// Never before the stay's entry.
    pub away_time: Timestamp,
    /// What the stay cost, fen.
    pub fee: Fee,
    pub operator: Option<String>,
    /// The raw camera image (JPEG or PNG, any size); re-encoded before sending.
    #[serde(skip)]
    pub snapshot: Option<I>,
}

/// How a stay ends at an exit lane, as the planner decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitPlan {
    #[serde(flatten)]
    pub details: ExitDetails<Arc<Vec<u8>>>,
    /// The plate the exit camera read (may differ from the stay's by one misread).
    pub exit_plate: Option<String>,
    pub matched: Option<MatchKind>,
    pub snapshot_len: Option<usize>,
}

/// What to do with a passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StayAction {
    Open {
        entry: NewEntry,
    },
    /// The plate already had an open stay: close it locally (not on the platform), then
    /// open the new one (`lot.reentry = "leave_open"`).
    SupersedeThenOpen {
        superseded: String,
        entry: NewEntry,
    },
    /// The plate already had an open stay (its exit was missed): report an exit for it,
    /// flagged orphaned, then open the new one (`lot.reentry = "close_with_exit"`).
    CloseOrphanThenOpen {
        orphaned: String,
        exit: ExitPlan,
        entry: NewEntry,
    },
    /// A trailer behind its tractor (`lot.trailers = "with_tractor"`): part of the
    /// tractor's stay; no report, no space.
    TrailerFolded {
        lane: String,
        direction: Direction,
        plate_no: String,
        tractor: Option<String>,
        at: Timestamp,
    },
    Close {
        out_order_no: String,
        exit: ExitPlan,
    },
    /// An exit that fits no open stay, kept locally.
    UnmatchedExit {
        lane: String,
        plate_no: Option<String>,
        at: Timestamp,
    },
    /// An exit that fits no open stay, reported as an entry and exit at the exit time.
    SyntheticStay {
        entry: NewEntry,
        exit: ExitPlan,
    },
    /// An unplated vehicle on a count-only lane: occupancy moves, nothing is reported.
    CountOnly {
        lane: String,
        direction: Direction,
        at: Timestamp,
    },
}

/// Decides what a passage does to the stays. Pure.
pub fn decide(
    passage: &Passage,
    lane: &LaneConfig,
    lot: &LotConfig,
    open: &[OpenStay],
    fees: Option<&dyn FeeSource>,
) -> StayAction {
    let plate = passage.plate.as_ref();
    if let Some(p) = plate.filter(|_| passage.trailer && lot.trailers == Trailers::WithTractor) {
        return StayAction::TrailerFolded {
            lane: lane.id.clone(),
            direction: lane.direction,
            plate_no: p.text.clone(),
            tractor: passage.tractor.clone(),
            at: passage.at,
        };
    }
    if plate.is_none() && lane.unreadable_plate == UnreadablePlate::CountOnly {
        return StayAction::CountOnly {
            lane: lane.id.clone(),
            direction: lane.direction,
            at: passage.at,
        };
    }
    match lane.direction {
        Direction::Entry => {
            let entry = new_entry(passage, lane, lot);
            let previous = (!entry.placeholder)
                .then(|| {
                    open.iter()
                        .find(|s| !s.placeholder && s.plate_no == entry.details.plate_no)
                })
                .flatten();
            match (previous, lot.reentry) {
                (Some(old), Reentry::LeaveOpen) => StayAction::SupersedeThenOpen {
                    superseded: old.out_order_no.clone(),
                    entry,
                },
                (Some(old), Reentry::CloseWithExit) => StayAction::CloseOrphanThenOpen {
                    orphaned: old.out_order_no.clone(),
                    exit: orphan_exit(old, &entry),
                    entry,
                },
                (None, _) => StayAction::Open { entry },
            }
        }
        Direction::Exit => {
            let found = match plate {
                Some(p) => match_exit(
                    &p.text,
                    open.iter()
                        .enumerate()
                        .filter(|(_, s)| !s.placeholder)
                        .map(|(i, s)| (i, s.plate_no.as_str())),
                ),
                // Unplated: the longest-waiting placeholder stay (stays are in entry order).
                None => open
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.placeholder)
                    .min_by_key(|(_, s)| s.entered_at)
                    .map(|(i, _)| (i, MatchKind::Exact)),
            };
            match found {
                Some((i, kind)) => {
                    let stay = &open[i];
                    StayAction::Close {
                        out_order_no: stay.out_order_no.clone(),
                        exit: exit_plan(
                            passage,
                            lane,
                            lot,
                            stay.entered_at,
                            stay.car_type,
                            &stay.plate_no,
                            Some(kind),
                            fees,
                        ),
                    }
                }
                None => match lot.unmatched_exit {
                    UnmatchedExit::RecordLocally => StayAction::UnmatchedExit {
                        lane: lane.id.clone(),
                        plate_no: plate.map(|p| p.text.clone()),
                        at: passage.at,
                    },
                    UnmatchedExit::ReportSynthetic => {
                        let mut entry = new_entry(passage, lane, lot);
                        entry.details.snapshot = None;
                        entry.snapshot_len = None;
                        let exit = exit_plan(
                            passage,
                            lane,
                            lot,
                            passage.at,
                            entry.details.car_type,
                            &entry.details.plate_no,
                            None,
                            fees,
                        );
                        StayAction::SyntheticStay { entry, exit }
                    }
                },
            }
        }
    }
}

fn new_entry(passage: &Passage, lane: &LaneConfig, lot: &LotConfig) -> NewEntry {
    let (plate_no, plate_color, car_type, placeholder) = match &passage.plate {
        Some(p) => (
            p.text.clone(),
            effective_color(&p.text, p.color),
            car_type_of(&p.text, lot),
            false,
        ),
        None => (
            lane.placeholder_plate.clone(),
            PlateColor::Unknown,
            CarType::Normal,
            true,
        ),
    };
    NewEntry {
        details: EntryDetails {
            plate_no,
            plate_color,
            car_type,
            lane: lane.id.clone(),
            port_no: lane.port_no.clone(),
            entered_at: passage.at,
            operator: lane.operator.clone(),
            snapshot: passage.snapshot.clone(),
            price: None,
            should_pay: None,
        },
        placeholder,
        snapshot_len: passage.snapshot_len,
    }
}

/// The exit of a stay whose plate entered again: it left unseen, at the latest just
/// before the new entry (one second before it, never before its own entry). Nothing is
/// known of a fee: price 0. Reported through the lane that saw the plate again.
fn orphan_exit(old: &OpenStay, entry: &NewEntry) -> ExitPlan {
    ExitPlan {
        details: ExitDetails {
            lane: entry.details.lane.clone(),
            port_no: entry.details.port_no.clone(),
            away_time: Timestamp(entry.details.entered_at.0 - 1_000).max(old.entered_at),
            fee: Fee::default(),
            operator: entry.details.operator.clone(),
            snapshot: None,
        },
        exit_plate: None,
        matched: None,
        snapshot_len: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn exit_plan(
    passage: &Passage,
    lane: &LaneConfig,
    lot: &LotConfig,
    entered_at: Timestamp,
    car_type: CarType,
    plate_no: &str,
    matched: Option<MatchKind>,
    fees: Option<&dyn FeeSource>,
) -> ExitPlan {
    // Clocks of two lanes' devices may disagree by a little: an exit is never before its entry.
    let away_time = passage.at.max(entered_at);
    ExitPlan {
        details: ExitDetails {
            lane: lane.id.clone(),
            port_no: lane.port_no.clone(),
            away_time,
            fee: decide_fee(
                fees,
                lot.tariff.as_ref(),
                &FeeQuery {
                    plate_no,
                    car_type,
                    entered: entered_at,
                    exited: away_time,
                },
            ),
            operator: lane.operator.clone(),
            snapshot: passage.snapshot.clone(),
        },
        exit_plate: passage.plate.as_ref().map(|p| p.text.clone()),
        matched,
        snapshot_len: passage.snapshot_len,
    }
}

/// Open stays older than the lot's maximum age at `now` (out_order_no, in stay order).
pub fn expired(open: &[OpenStay], lot: &LotConfig, now: Timestamp) -> Vec<String> {
    if lot.stay_max_age_hours <= 0 {
        return Vec::new();
    }
    let max_ms = lot.stay_max_age_hours.saturating_mul(3_600_000);
    open.iter()
        .filter(|s| now.0 - s.entered_at.0 > max_ms)
        .map(|s| s.out_order_no.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(direction: Direction) -> LaneConfig {
        LaneConfig::new("l", direction, "P1", Default::default())
    }

    fn passage(direction: Direction, plate: Option<&str>, at: i64) -> Passage {
        Passage::sample(direction, plate, Timestamp(at))
    }

    /// What a passage of `plate` at `at` through a plain lane of `direction` does.
    fn decide_on(
        direction: Direction,
        plate: Option<&str>,
        at: i64,
        lot: &LotConfig,
        open: &[OpenStay],
    ) -> StayAction {
        decide(
            &passage(direction, plate, at),
            &lane(direction),
            lot,
            open,
            None,
        )
    }

    use crate::lane::testkit::open_stay as stay;

    #[test]
    fn entry_opens_stay_with_colour_from_format_and_type_from_lists() {
        let mut lot = LotConfig::new("L", 10);
        lot.monthly_cards = vec!["京AD12345".into()];
        let a = decide_on(Direction::Entry, Some("京AD12345"), 5, &lot, &[]);
        let StayAction::Open { entry } = a else {
            panic!("{a:?}")
        };
        assert_eq!(
            (
                entry.details.plate_color,
                entry.details.car_type,
                entry.details.entered_at
            ),
            (PlateColor::Green, CarType::Parkcard, Timestamp(5))
        );
    }

    #[test]
    fn same_plate_entering_again_closes_the_orphaned_stay_with_an_exit_by_default() {
        let lot = LotConfig::new("L", 10);
        let open = [stay("S1", "闽A12345", 0, false)];
        let a = decide_on(Direction::Entry, Some("闽A12345"), 3_600_000, &lot, &open);
        let StayAction::CloseOrphanThenOpen {
            orphaned,
            exit,
            entry,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(orphaned, "S1");
        assert_eq!(exit.details.away_time, Timestamp(3_599_000));
        assert_eq!(exit.details.fee, Fee::default());
        assert_eq!(entry.details.entered_at, Timestamp(3_600_000));
        // Re-entering within a second of the old entry: the exit is never before it.
        let a = decide_on(Direction::Entry, Some("闽A12345"), 500, &lot, &open);
        assert!(
            matches!(a, StayAction::CloseOrphanThenOpen { ref exit, .. } if exit.details.away_time == Timestamp(0)),
            "{a:?}"
        );
    }

    #[test]
    fn trailer_behind_its_tractor_is_folded_or_gets_its_own_stay_per_lot_rule() {
        let mut lot = LotConfig::new("L", 10);
        let mut p = passage(Direction::Entry, Some("闽A1234挂"), 5);
        p.trailer = true;
        p.tractor = Some("闽A12345".into());
        let a = decide(&p, &lane(Direction::Entry), &lot, &[], None);
        assert!(
            matches!(a, StayAction::TrailerFolded { ref plate_no, tractor: Some(ref t), .. } if plate_no == "闽A1234挂" && t == "闽A12345"),
            "{a:?}"
        );
        lot.trailers = Trailers::OwnStay;
        let a = decide(&p, &lane(Direction::Entry), &lot, &[], None);
        assert!(matches!(a, StayAction::Open { .. }), "{a:?}");
    }

    #[test]
    fn same_plate_entering_again_supersedes_the_open_stay_when_left_open() {
        let mut lot = LotConfig::new("L", 10);
        lot.reentry = Reentry::LeaveOpen;
        let open = [stay("S1", "闽A12345", 0, false)];
        let a = decide_on(Direction::Entry, Some("闽A12345"), 5, &lot, &open);
        assert!(
            matches!(a, StayAction::SupersedeThenOpen { ref superseded, .. } if superseded == "S1"),
            "{a:?}"
        );
    }

    #[test]
    fn placeholder_entries_never_supersede_each_other() {
        let lot = LotConfig::new("L", 10);
        let open = [stay("S1", "无牌车", 0, true)];
        let a = decide_on(Direction::Entry, None, 5, &lot, &open);
        let StayAction::Open { entry } = a else {
            panic!("{a:?}")
        };
        assert!(entry.placeholder);
        assert_eq!(
            (entry.details.plate_no.as_str(), entry.details.plate_color),
            ("无牌车", PlateColor::Unknown)
        );
    }

    #[test]
    fn count_only_lane_counts_unplated_vehicles() {
        let lot = LotConfig::new("L", 10);
        let mut l = lane(Direction::Exit);
        l.unreadable_plate = UnreadablePlate::CountOnly;
        let a = decide(&passage(Direction::Exit, None, 5), &l, &lot, &[], None);
        assert!(
            matches!(
                a,
                StayAction::CountOnly {
                    direction: Direction::Exit,
                    ..
                }
            ),
            "{a:?}"
        );
    }

    #[test]
    fn exit_closes_fuzzy_match_and_never_before_entry() {
        let mut lot = LotConfig::new("L", 10);
        lot.tariff = Some(crate::config::lot::Tariff {
            free_minutes: 0,
            hourly_rate: 100,
            daily_cap: 0,
            exempt: vec![],
        });
        let open = [stay("S1", "闽A1Z345", 10_000, false)];
        let a = decide_on(Direction::Exit, Some("闽A12345"), 9_000, &lot, &open);
        let StayAction::Close { out_order_no, exit } = a else {
            panic!("{a:?}")
        };
        assert_eq!(out_order_no, "S1");
        assert_eq!(exit.matched, Some(MatchKind::Fuzzy));
        assert_eq!(exit.details.away_time, Timestamp(10_000));
        assert_eq!(exit.details.fee, Fee::default());
    }

    #[test]
    fn unmatched_exit_is_local_by_default_and_synthetic_when_configured() {
        let mut lot = LotConfig::new("L", 10);
        let p = passage(Direction::Exit, Some("闽A12345"), 5);
        let a = decide(&p, &lane(Direction::Exit), &lot, &[], None);
        assert!(matches!(a, StayAction::UnmatchedExit { .. }), "{a:?}");
        lot.unmatched_exit = UnmatchedExit::ReportSynthetic;
        let a = decide(&p, &lane(Direction::Exit), &lot, &[], None);
        assert!(matches!(a, StayAction::SyntheticStay { .. }), "{a:?}");
    }

    #[test]
    fn unplated_exit_closes_oldest_placeholder_stay() {
        let lot = LotConfig::new("L", 10);
        let open = [
            stay("S2", "无牌车", 20, true),
            stay("S1", "无牌车", 10, true),
            stay("S3", "闽A12345", 0, false),
        ];
        let a = decide_on(Direction::Exit, None, 50, &lot, &open);
        assert!(
            matches!(a, StayAction::Close { ref out_order_no, .. } if out_order_no == "S1"),
            "{a:?}"
        );
    }

    #[test]
    fn stays_past_max_age_expire() {
        let mut lot = LotConfig::new("L", 10);
        lot.stay_max_age_hours = 1;
        let open = [
            stay("S1", "闽A1", 0, false),
            stay("S2", "闽A2", 3_000_000, false),
        ];
        assert_eq!(
            expired(&open, &lot, Timestamp(3_600_001)),
            vec!["S1".to_string()]
        );
        lot.stay_max_age_hours = 0;
        assert!(expired(&open, &lot, Timestamp(i64::MAX / 2)).is_empty());
    }
}
