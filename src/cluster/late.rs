//! Late matching across nodes (pure; time is a parameter). An exit can reach the lot
//! node before the entry that another node still holds (its link was down, its queue
//! is draining). Such an exit — one the stay planner would call unmatched — waits, up
//! to `window_ms` from when the lot node got it; each time an entry is applied the
//! waiting exits are planned again, and the first that now finds its stay closes it
//! (the entry's report was queued first, so the platform hears entry, then exit).
//! Once the window has passed, today's unmatched-exit rule applies.
//!
//! Only stays that entered no later than the exit are candidates: a vehicle that
//! entered after the exit is a later visit, not the one that left.

use crate::config::{LaneConfig, LotConfig};
use crate::lane::fees::FeeSource;
use crate::lane::machine::Passage;
use crate::lane::stays::{OpenStay, StayAction, decide};
use crate::time::Timestamp;

/// Whether the planner's action for an exit means "no stay for it (yet)".
pub fn is_unmatched(action: &StayAction) -> bool {
    matches!(
        action,
        StayAction::UnmatchedExit { .. } | StayAction::SyntheticStay { .. }
    )
}

/// What to do with a waiting exit now.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Still no stay, and still within the window.
    Wait,
    /// Its stay is open now: this closes it.
    Matched(StayAction),
    /// The window passed: today's unmatched-exit rule (`lot.unmatched_exit`).
    Expired(StayAction),
}

/// How long an exit may wait: from when the lot node got it, for `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub since: Timestamp,
    pub window_ms: i64,
}

/// Plans a (new or waiting) exit.
pub fn resolve(
    exit: &Passage,
    wait: Waiting,
    lane: &LaneConfig,
    lot: &LotConfig,
    open: &[OpenStay],
    fees: Option<&dyn FeeSource>,
    now: Timestamp,
) -> Resolution {
    let Waiting {
        since: held_at,
        window_ms,
    } = wait;
    let earlier: Vec<OpenStay> = open
        .iter()
        .filter(|s| s.entered_at <= exit.at)
        .cloned()
        .collect();
    let action = decide(exit, lane, lot, &earlier, fees);
    if !is_unmatched(&action) {
        Resolution::Matched(action)
    } else if now.0 >= held_at.0.saturating_add(window_ms) {
        Resolution::Expired(action)
    } else {
        Resolution::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane::testkit::{exit_on, open_stay};

    const MIN: i64 = 60_000;

    fn wait(since: i64, window_ms: i64) -> Waiting {
        Waiting {
            since: Timestamp(since),
            window_ms,
        }
    }

    /// Resolves exit `x`, held since `since` for a window of `window_ms`, at `now`, on
    /// lane `exit-2` of lot `P1` with no fee source.
    fn resolve_held(
        x: &Passage,
        (since, window_ms): (i64, i64),
        open: &[OpenStay],
        now: i64,
    ) -> Resolution {
        let waiting = wait(since, window_ms);
        resolve(x, waiting, &exit_lane(), &lot(), open, None, Timestamp(now))
    }

    fn lot() -> LotConfig {
        toml::from_str("parking_lot_no = \"P1\"\ntotal_spaces = 10\n").unwrap()
    }

    fn exit_lane() -> LaneConfig {
        toml::from_str("id = \"exit-2\"\ndirection = \"exit\"\nport_no = \"X2\"\n").unwrap()
    }

    fn exit(plate: &str, at: i64) -> Passage {
        exit_on("exit-2", plate, at)
    }

    fn stay(plate: &str, entered: i64) -> OpenStay {
        open_stay(&format!("P1-{plate}"), plate, entered, false)
    }

    #[test]
    fn an_exit_arriving_two_minutes_before_its_entry_waits_then_closes_that_stay() {
        let t0 = 1_700_000_000_000;
        // The car entered at gate 1 at t0, left at gate 4 at t0 + 30 min; gate 1's node
        // was cut off, so the exit reaches the lot node first, at t0 + 30 min.
        let x = exit("闽A12345", t0 + 30 * MIN);
        let held = (t0 + 30 * MIN, 10 * MIN);
        let other = [stay("闽B99999", t0 - MIN)];
        assert_eq!(
            resolve_held(&x, held, &other, t0 + 30 * MIN),
            Resolution::Wait
        );
        // Two minutes later the entry arrives and opens its stay.
        let open = [other[0].clone(), stay("闽A12345", t0)];
        match resolve_held(&x, held, &open, t0 + 32 * MIN) {
            Resolution::Matched(StayAction::Close { out_order_no, exit }) => {
                assert_eq!(out_order_no, "P1-闽A12345");
                assert_eq!(
                    exit.details.away_time, x.at,
                    "reported at the exit's own time"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_waiting_exit_falls_back_to_the_unmatched_rule_when_the_window_passes() {
        let t0 = 1_700_000_000_000;
        let x = exit("闽A12345", t0);
        let held_at = t0 + 5_000;
        let held = (held_at, 10 * MIN);
        assert_eq!(
            resolve_held(&x, held, &[], held_at + 10 * MIN - 1),
            Resolution::Wait
        );
        match resolve_held(&x, held, &[], held_at + 10 * MIN) {
            Resolution::Expired(StayAction::UnmatchedExit { lane, plate_no, at }) => {
                assert_eq!(lane, "exit-2");
                assert_eq!(plate_no.as_deref(), Some("闽A12345"));
                assert_eq!(at, x.at);
            }
            other => panic!("{other:?}"),
        }
        // A window of 0 is today's rule at once.
        assert!(matches!(
            resolve_held(&x, (held_at, 0), &[], held_at),
            Resolution::Expired(_)
        ));
    }

    #[test]
    fn a_stay_that_entered_after_the_exit_is_a_later_visit_and_not_closed() {
        let t0 = 1_700_000_000_000;
        let x = exit("闽A12345", t0);
        let later = [stay("闽A12345", t0 + MIN)];
        assert_eq!(
            resolve_held(&x, (t0, 10 * MIN), &later, t0 + MIN),
            Resolution::Wait
        );
    }
}
