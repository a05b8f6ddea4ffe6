//! `out_order_no` = lot number + `YYYYMMDDHHMMSS` (lot-local) + 6-digit sequence.
//!
//! Unique forever on one lot, also across restarts and wall-clock jumps backwards:
//! the stamp never goes below the last one used, and when the 6-digit sequence wraps
//! the stamp is moved strictly past every stamp used before. So a (stamp, sequence)
//! pair can never repeat. Pure: the caller loads and saves the state.

use chrono::DateTime;

/// Largest 6-digit sequence number.
const SEQ_MAX: i64 = 999_999;

/// What the database keeps between allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceState {
    pub seq: i64,
    pub last_local_secs: i64,
}

/// One allocated number: its parts and the state to save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub local_secs: i64,
    pub seq: i64,
    pub next_state: SequenceState,
}

/// Allocates the next (stamp, sequence) pair at lot-local time `now_local_secs`.
pub fn allocate(state: SequenceState, now_local_secs: i64) -> Allocation {
    let mut stamp = now_local_secs.max(state.last_local_secs);
    let mut seq = state.seq + 1;
    if seq > SEQ_MAX {
        seq = 0;
        stamp = stamp.max(state.last_local_secs.saturating_add(1));
    }
    Allocation {
        local_secs: stamp,
        seq,
        next_state: SequenceState {
            seq,
            last_local_secs: stamp,
        },
    }
}

/// Formats the number; `local_secs` are seconds since the epoch shifted by the lot offset.
pub fn format(lot_no: &str, local_secs: i64, seq: i64) -> String {
    // A stamp outside chrono's range cannot come from a clock; clamp instead of panicking.
    let t = DateTime::from_timestamp(local_secs, 0).unwrap_or(DateTime::UNIX_EPOCH);
    format!("{lot_no}{}{seq:06}", t.format("%Y%m%d%H%M%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn formats_lot_stamp_and_six_digit_sequence() {
        // 2019-10-04 13:36:04 as lot-local seconds.
        let local = 1_570_167_364 + 8 * 3600;
        assert_eq!(format("P3501", local, 7), "P350120191004133604000007");
        let longest = format(&"L".repeat(32), local, SEQ_MAX);
        assert!(longest.chars().count() <= 64);
    }

    #[test]
    fn stamp_never_goes_back_when_the_clock_does() {
        let s = SequenceState {
            seq: 5,
            last_local_secs: 1_000,
        };
        let a = allocate(s, 400);
        assert_eq!(a.local_secs, 1_000);
        assert_eq!(a.seq, 6);
    }

    #[test]
    fn wrap_moves_the_stamp_past_every_stamp_used() {
        let s = SequenceState {
            seq: SEQ_MAX,
            last_local_secs: 1_000,
        };
        let a = allocate(s, 1_000);
        assert_eq!((a.local_secs, a.seq), (1_001, 0));
    }

    #[test]
    fn numbers_are_unique_through_wraps_and_clock_jumps() {
        let mut state = SequenceState {
            seq: SEQ_MAX - 50,
            last_local_secs: 0,
        };
        let mut seen = HashSet::new();
        // A frozen then backwards clock for three full sequence cycles.
        for i in 0..(3 * (SEQ_MAX + 1)) {
            let now = if i < 1_500_000 { 10 } else { 5 };
            let a = allocate(state, now);
            assert!(seen.insert((a.local_secs, a.seq)), "repeat at {i}");
            state = a.next_state;
        }
    }
}
