//! Clock integrity: is the wall clock trustworthy enough to stamp reports with?
//!
//! Two signals: the kernel's NTP state (`adjtimex`, the same flag `timedatectl`
//! shows as `NTPSynchronized`), and wall-clock *jumps*, found by comparing how far the
//! wall clock moved with how far the monotonic clock moved between two samples.
//! [`ClockWatch`] is pure (both times are passed in); [`ntp_synchronised`] is the one
//! system call. Reports made while the clock is suspect are flagged (status page,
//! logs) so that the times sent to the platform can be judged honestly afterwards.

use crate::time::Timestamp;
use std::time::{Duration, Instant};

/// A wall-clock step that the monotonic clock did not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jump {
    /// Wall time after the jump.
    pub at: Timestamp,
    /// How far the wall clock moved beyond the elapsed monotonic time, ms
    /// (positive: forward).
    pub delta_ms: i64,
}

/// Why the clock is not trusted right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspicion {
    /// The kernel says the clock is not synchronised to a time source.
    Unsynchronised,
    /// The wall clock jumped recently.
    Jumped(Jump),
}

impl std::fmt::Display for Suspicion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Suspicion::Unsynchronised => f.write_str("system clock not synchronised (NTP)"),
            Suspicion::Jumped(j) => write!(f, "wall clock jumped by {:+} ms", j.delta_ms),
        }
    }
}

/// Detects wall-clock jumps from successive (monotonic, wall) samples.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    /// Differences below this are scheduling noise or slewing, not a jump.
    tolerance_ms: i64,
    /// How long after a jump the clock stays suspect.
    suspect_for: Duration,
    last: Option<(Instant, Timestamp)>,
    last_jump: Option<(Instant, Jump)>,
    jumps: u64,
}

impl ClockWatch {
    pub fn new(tolerance: Duration, suspect_for: Duration) -> Self {
        ClockWatch {
            tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
            suspect_for,
            last: None,
            last_jump: None,
            jumps: 0,
        }
    }

    /// Feeds one sample; returns the jump if the wall clock moved differently from the
    /// monotonic clock by more than the tolerance since the previous sample.
    pub fn observe(&mut self, mono: Instant, wall: Timestamp) -> Option<Jump> {
        let previous = self.last.replace((mono, wall));
        let (last_mono, last_wall) = previous?;
        let mono_ms = i64::try_from(mono.saturating_duration_since(last_mono).as_millis())
            .unwrap_or(i64::MAX);
        let delta_ms = (wall.0 - last_wall.0).saturating_sub(mono_ms);
        if delta_ms.abs() > self.tolerance_ms {
            let jump = Jump { at: wall, delta_ms };
            self.last_jump = Some((mono, jump));
            self.jumps += 1;
            Some(jump)
        } else {
            None
        }
    }

    /// Why the clock is suspect at `mono`, given the kernel's sync state (`None` when
    /// it cannot be read, which is not held against the clock), or `None` if trusted.
    pub fn suspicion(&self, mono: Instant, synchronised: Option<bool>) -> Option<Suspicion> {
        if let Some((when, jump)) = self.last_jump
            && mono.saturating_duration_since(when) < self.suspect_for
        {
            return Some(Suspicion::Jumped(jump));
        }
        if synchronised == Some(false) {
            return Some(Suspicion::Unsynchronised);
        }
        None
    }

    /// Jumps seen since start.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }
}

impl Default for ClockWatch {
    /// 2 s tolerance, suspect for 10 min after a jump.
    fn default() -> Self {
        ClockWatch::new(Duration::from_secs(2), Duration::from_secs(600))
    }
}

/// The kernel's view: `Some(true)` when the clock is synchronised to a time source,
/// `Some(false)` when not, `None` when it cannot be asked.
pub fn ntp_synchronised() -> Option<bool> {
    // SAFETY: `timex` is plain old data, all-zero is a valid value, and `modes = 0`
    // makes adjtimex a pure read that needs no privilege.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::T0;

    #[test]
    fn steady_clocks_show_no_jump() {
        let mut w = ClockWatch::default();
        let m0 = Instant::now();
        assert_eq!(
            w.observe(m0, T0),
            None,
            "first sample only sets the reference"
        );
        assert_eq!(
            w.observe(m0 + Duration::from_secs(10), T0.plus_millis(10_300)),
            None,
            "300 ms drift is noise"
        );
        assert_eq!(w.suspicion(m0 + Duration::from_secs(10), Some(true)), None);
    }

    #[test]
    fn wall_clock_step_forward_and_back_is_a_jump() {
        let mut w = ClockWatch::default();
        let m0 = Instant::now();
        w.observe(m0, T0);
        let jump = w
            .observe(m0 + Duration::from_secs(10), T0.plus_millis(3_610_000))
            .expect("an hour forward");
        assert_eq!(jump.delta_ms, 3_600_000);
        let back = w
            .observe(m0 + Duration::from_secs(20), T0.plus_millis(20_000))
            .expect("and back");
        assert_eq!(back.delta_ms, -3_600_000);
        assert_eq!(w.jumps(), 2);
    }

    #[test]
    fn clock_is_suspect_for_a_while_after_a_jump_then_trusted_again() {
        let mut w = ClockWatch::new(Duration::from_secs(2), Duration::from_secs(60));
        let m0 = Instant::now();
        w.observe(m0, T0);
        w.observe(m0 + Duration::from_secs(1), T0.plus_millis(-50_000));
        assert!(matches!(
            w.suspicion(m0 + Duration::from_secs(30), Some(true)),
            Some(Suspicion::Jumped(_))
        ));
        assert_eq!(w.suspicion(m0 + Duration::from_secs(62), Some(true)), None);
    }

    #[test]
    fn unsynchronised_clock_is_suspect_unknown_is_not() {
        let w = ClockWatch::default();
        let m0 = Instant::now();
        assert_eq!(
            w.suspicion(m0, Some(false)),
            Some(Suspicion::Unsynchronised)
        );
        assert_eq!(w.suspicion(m0, None), None);
    }

    #[test]
    fn ntp_state_can_be_read_here() {
        // Whatever this machine's state, the read itself must work on Linux.
        assert!(ntp_synchronised().is_some());
    }
}
