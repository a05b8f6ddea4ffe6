//! Is a pushed recognition live, or one the camera stored while it could not reach
//! the bridge (bridge down, network cut) and pushes now? And can its clock be
//! believed? Pure: the camera's time, its own offline flag and the arrival time in,
//! a [`Timing`] out.
//!
//! The camera's time is believed only while its clock agrees with ours within the
//! tolerance. Evidence that it does not: a time in our future; a read the camera
//! itself flags live (`isoffline = 0`) that is older than the tolerance; or the same
//! delay twice, a minute or more apart (a wrong clock keeps a steady offset, while a
//! backlog drains in seconds with each read's delay different); or a time older
//! than `max_late_ms` (a camera whose clock reset). A read inside the tolerance
//! clears the evidence.

use crate::time::Timestamp;

/// How a read is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Made now (or the camera gave no time): timed by its arrival.
    Live,
    /// Made at the camera's time, which is older than the tolerance: a stored read.
    Late,
    /// The camera's clock cannot be believed: timed by arrival, flagged.
    Skewed,
}

/// Two over-tolerance reads at least this far apart with the same delay mean a
/// wrong clock, not a backlog.
const STEADY_OFFSET_GAP_MS: i64 = 60_000;

/// A brokered read whose camera time is more than this before we started listening was
/// held by the broker. Cameras send whole seconds: a read made just after we connected
/// can show a time up to 1 s before it, never more (a clock that agrees with ours).
/// More than that lets a read made a second before the reconnect pass as live, and go
/// to the next vehicle (found by the soak).
pub const HELD_SLACK_MS: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct ClockJudge {
    tolerance_ms: i64,
    max_late_ms: i64,
    skewed: bool,
    /// The last over-tolerance read: (arrival, delay).
    last_late: Option<(Timestamp, i64)>,
}

impl ClockJudge {
    pub fn new(tolerance_ms: i64, max_late_ms: i64) -> Self {
        ClockJudge {
            tolerance_ms,
            max_late_ms,
            skewed: false,
            last_late: None,
        }
    }

    /// True while the camera's clock is judged wrong.
    pub fn skewed(&self) -> bool {
        self.skewed
    }

    pub fn judge(
        &mut self,
        device_time: Option<Timestamp>,
        offline_flag: Option<bool>,
        arrival: Timestamp,
    ) -> Timing {
        let Some(made) = device_time else {
            return Timing::Live;
        };
        let delay = arrival.millis() - made.millis();
        if delay.abs() <= self.tolerance_ms {
            self.skewed = false;
            self.last_late = None;
            return Timing::Live;
        }
        if delay < 0 || delay > self.max_late_ms || offline_flag == Some(false) {
            self.skewed = true;
            return Timing::Skewed;
        }
        let steady = self.last_late.is_some_and(|(at, d)| {
            arrival.millis() - at.millis() >= STEADY_OFFSET_GAP_MS
                && (d - delay).abs() <= self.tolerance_ms
        });
        self.last_late = Some((arrival, delay));
        if steady {
            self.skewed = true;
        }
        if self.skewed && offline_flag != Some(true) {
            Timing::Skewed
        } else {
            Timing::Late
        }
    }

    /// [`Self::judge`] for a read that came through a broker (MQTT, QoS 1 with a kept
    /// session), which holds what the camera sent while the bridge or its connection
    /// was down and delivers it at reconnect. Such a read was sent live, so the
    /// camera's "live" flag is no evidence against its clock here; and a read whose
    /// (believed) time is before `listening_since`, when the current connection began,
    /// was held: it is late even when younger than the tolerance, so that it never
    /// waits for the next vehicle. A camera with no time, or a wrong clock, cannot be
    /// told apart: its held reads are timed by arrival.
    pub fn judge_brokered(
        &mut self,
        device_time: Option<Timestamp>,
        offline_flag: Option<bool>,
        arrival: Timestamp,
        listening_since: Timestamp,
    ) -> Timing {
        let timing = self.judge(device_time, offline_flag.filter(|stored| *stored), arrival);
        match (timing, device_time) {
            (Timing::Live, Some(made))
                if made.millis() < listening_since.millis() - HELD_SLACK_MS =>
            {
                Timing::Late
            }
            _ => timing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn judge() -> ClockJudge {
        ClockJudge::new(10_000, 7 * 24 * 60 * MIN)
    }

    /// Judges a read made `age` ms before it arrives at `arrival` (negative: in our
    /// future), with the camera's own offline flag.
    fn read(j: &mut ClockJudge, age: i64, offline: Option<bool>, arrival: Timestamp) -> Timing {
        j.judge(Some(arrival.plus_millis(-age)), offline, arrival)
    }

    #[test]
    fn reads_within_the_tolerance_or_without_time_are_live() {
        let mut j = judge();
        assert_eq!(j.judge(None, None, Timestamp(5 * MIN)), Timing::Live);
        assert_eq!(read(&mut j, 9_000, None, Timestamp(5 * MIN)), Timing::Live);
    }

    #[test]
    fn a_backlog_after_an_outage_is_late_at_the_cameras_times() {
        let mut j = judge();
        let now = 1_000 * MIN;
        for i in 0..50 {
            let made = Timestamp(now - 300 * MIN + i * MIN);
            assert_eq!(
                j.judge(Some(made), None, Timestamp(now + i * 100)),
                Timing::Late,
                "read {i}"
            );
        }
    }

    #[test]
    fn a_future_time_or_a_live_flagged_old_time_means_a_wrong_clock() {
        let mut j = judge();
        let now = Timestamp(1_000 * MIN);
        assert_eq!(read(&mut j, -MIN, None, now), Timing::Skewed);
        assert!(j.skewed());
        // A later read inside the tolerance clears it.
        assert_eq!(read(&mut j, 0, None, now), Timing::Live);
        assert_eq!(read(&mut j, 5 * MIN, Some(false), now), Timing::Skewed);
    }

    #[test]
    fn a_steady_offset_minutes_apart_is_a_wrong_clock_not_a_backlog() {
        let mut j = judge();
        let lag = 20 * MIN;
        let t1 = Timestamp(1_000 * MIN);
        assert_eq!(read(&mut j, lag, None, t1), Timing::Late);
        let t2 = t1.plus_millis(3 * MIN);
        assert_eq!(read(&mut j, lag, None, t2), Timing::Skewed);
        // The camera's own offline flag still marks a stored read as late.
        assert_eq!(read(&mut j, 90 * MIN, Some(true), t2), Timing::Late);
    }

    #[test]
    fn a_brokered_read_made_before_the_connection_is_late_even_when_young() {
        let mut j = judge();
        let connected = Timestamp(1_000 * MIN + 700);
        let now = connected.plus_millis(500);
        // Made 5 s before we connected, sent live by the camera, held by the broker.
        let held = Some(connected.plus_millis(-5_000));
        assert_eq!(
            j.judge_brokered(held, Some(false), now, connected),
            Timing::Late
        );
        assert!(!j.skewed());
        // Made just after we connected (0.7 s into a second), its time cut to the
        // whole second: live.
        let fresh = Some(Timestamp(connected.millis() / 1000 * 1000));
        assert_eq!(
            j.judge_brokered(fresh, Some(false), now, connected),
            Timing::Live
        );
        // Made 1.2 s before we connected: held, though its vehicle may be young.
        let second_before = Some(Timestamp(connected.millis() / 1000 * 1000 - 1_000));
        assert_eq!(
            j.judge_brokered(second_before, Some(false), now, connected),
            Timing::Late
        );
        // Without a time, or long after the connection: by arrival, as before.
        assert_eq!(j.judge_brokered(None, None, now, connected), Timing::Live);
        let later = connected.plus_millis(60_000);
        assert_eq!(
            j.judge_brokered(Some(later), None, later, connected),
            Timing::Live
        );
        // An old held read is late as by `judge`; the live flag is no evidence of a
        // wrong clock through a broker (over HTTP it is).
        let old = Some(connected.plus_millis(-5 * MIN));
        assert_eq!(
            j.judge_brokered(old, Some(false), now, connected),
            Timing::Late
        );
        assert_eq!(judge().judge(old, Some(false), now), Timing::Skewed);
    }

    #[test]
    fn a_time_older_than_the_limit_is_a_reset_clock() {
        let mut j = judge();
        assert_eq!(
            j.judge(Some(Timestamp(0)), None, Timestamp(1_000_000 * MIN)),
            Timing::Skewed
        );
    }
}
