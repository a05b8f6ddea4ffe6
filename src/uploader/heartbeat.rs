//! The heartbeat: its own task, every `heartbeat_secs`, never behind the backlog (it
//! does not go through the outbox). Says `lost` while some lane's devices have all been
//! unreachable for longer than the threshold, else `alive`.
//!
//! After a failed beat the next one goes `retry_after_failure` later (not a whole
//! period), and the uploader's first answer after failures triggers one at once, so the
//! platform sees the lot alive again right after it comes back; then the period
//! resumes.

use super::{Deliver, StatusHandle};
use crate::health::Health;
use crate::platform::Uplink;
use crate::time::Timestamp;
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Duration;

crate::metrics::statics! {
    HEARTBEATS: IntCounterVec = ("parking_bridge_heartbeats_total", "Heartbeats sent, by status and whether the platform took them", ["status", "result"]);
}

/// `lost` when any lane is lost at `now`, else `alive`. Pure.
pub fn status(health: &Health, now: Timestamp, lost_after_ms: i64) -> &'static str {
    if health.lost_lanes(now, lost_after_ms).is_empty() {
        "alive"
    } else {
        "lost"
    }
}

pub struct Heartbeat<D: Deliver> {
    pub deliver: Arc<D>,
    pub parking_lot_no: String,
    pub every: Duration,
    pub health: Health,
    pub lost_after: Duration,
    pub status: StatusHandle,
    /// Delay before the next beat after a failed one (capped at `every`).
    pub retry_after_failure: Duration,
}

/// How a beat ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    Taken,
    /// The platform answered and did not take it.
    Refused,
    /// No usable answer: the platform or the network is down.
    Unanswered,
}

/// Default [`Heartbeat::retry_after_failure`].
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// When the next beat goes, measured from any fixed origin: on the period after a
/// beat the platform took, at most `retry` after one it did not. Pure.
pub fn next_after(ok: bool, scheduled: Duration, now: Duration, retry: Duration) -> Duration {
    if ok {
        scheduled
    } else {
        scheduled.min(now + retry)
    }
}

/// What the last beats said, so that a lost lane and a failing heartbeat are logged
/// when they begin and end.
#[derive(Default)]
struct Episodes {
    lost: std::sync::Mutex<Vec<String>>,
    failing: std::sync::atomic::AtomicBool,
}

impl<D: Deliver> Heartbeat<D> {
    /// Beats until dropped. Each beat runs on its own with a timeout of one period, so
    /// a slow platform never delays the next one (at most two are in flight).
    pub async fn run(self) {
        let lost_after_ms = i64::try_from(self.lost_after.as_millis()).unwrap_or(i64::MAX);
        let retry = self.retry_after_failure.min(self.every);
        let origin = tokio::time::Instant::now();
        let mut beats: tokio::task::JoinSet<Beat> = tokio::task::JoinSet::new();
        let mut next = origin;
        // Warnings once per change: a lost lane and a failing heartbeat are logged when
        // they begin and end, not on every beat (the counts are in /metrics).
        let episodes = Arc::new(Episodes::default());
        loop {
            let start_beat = tokio::select! {
                _ = tokio::time::sleep_until(next) => true,
                _ = self.status.wait_platform_back() => {
                    tracing::info!("platform answers again: heartbeat now");
                    true
                }
                Some(done) = beats.join_next(), if !beats.is_empty() => {
                    // Only a platform that did not answer is asked again soon; one that
                    // answered "no" hears from us on the period.
                    let ok = done.map(|b| b != Beat::Unanswered).unwrap_or(false);
                    let now = tokio::time::Instant::now();
                    next = origin + next_after(ok, next - origin, now - origin, retry);
                    false
                }
            };
            if start_beat && beats.len() < 2 {
                beats.spawn(self.beat(lost_after_ms, episodes.clone()));
                next = tokio::time::Instant::now() + self.every;
            } else if start_beat {
                next = tokio::time::Instant::now() + retry;
            }
        }
    }

    /// One beat: sends it, records the result.
    fn beat(
        &self,
        lost_after_ms: i64,
        episodes: Arc<Episodes>,
    ) -> impl std::future::Future<Output = Beat> + Send + 'static {
        let now = Timestamp::now();
        let state = status(&self.health, now, lost_after_ms);
        let lanes = if state == "lost" {
            self.health.lost_lanes(now, lost_after_ms)
        } else {
            Vec::new()
        };
        {
            let mut before = episodes.lost.lock().unwrap_or_else(|e| e.into_inner());
            if *before != lanes {
                if lanes.is_empty() {
                    tracing::info!("heartbeat says normal again");
                } else {
                    tracing::warn!(lanes = ?lanes, "heartbeat says lost: every device of these lanes is unreachable");
                }
                *before = lanes;
            }
        }
        let uplink = Uplink::heartbeat(&self.parking_lot_no, state == "alive");
        let deliver = self.deliver.clone();
        let status = self.status.clone();
        let limit = self.every;
        async move {
            let sent = match &uplink {
                Ok(uplink) => tokio::time::timeout(limit, deliver.deliver(uplink)).await,
                // A lot number the spec refuses (the config checks it): not sendable.
                Err(e) => Ok(Err(crate::platform::ClientError::Invalid(e.clone()))),
            };
            let (beat, why) = match sent {
                Ok(Ok(answer)) if answer.verdict.is_delivered() => (Beat::Taken, None),
                Ok(Ok(answer)) if answer.verdict.platform_answered() => (
                    Beat::Refused,
                    Some(format!("heartbeat refused: {:?}", answer.verdict)),
                ),
                Ok(Ok(answer)) => (
                    Beat::Unanswered,
                    Some(format!("heartbeat not taken: {:?}", answer.verdict)),
                ),
                Ok(Err(e)) => (
                    Beat::Unanswered,
                    Some(format!("heartbeat not delivered: {e}")),
                ),
                Err(_) => (
                    Beat::Unanswered,
                    Some(format!(
                        "heartbeat timed out after {} ms",
                        limit.as_millis()
                    )),
                ),
            };
            let ok = beat == Beat::Taken;
            // Warnings once per change: the start and the end of a failing spell.
            let was_failing = episodes
                .failing
                .swap(!ok, std::sync::atomic::Ordering::Relaxed);
            match (&why, was_failing) {
                (Some(why), false) => tracing::warn!(error = %why, "heartbeat failing"),
                (Some(why), true) => tracing::debug!(error = %why, "heartbeat still failing"),
                (None, true) => tracing::info!("heartbeat accepted again"),
                (None, false) => {}
            }
            HEARTBEATS
                .with_label_values(&[state, if ok { "ok" } else { "failed" }])
                .inc();
            status.update(|s| s.last_heartbeat = Some((now, state, ok)));
            beat
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_until_a_lane_is_lost_past_threshold() {
        let h = Health::new();
        assert_eq!(status(&h, Timestamp(0), 120_000), "alive");
        h.set("cam-1", "entry-1", false, Timestamp(0));
        assert_eq!(status(&h, Timestamp(60_000), 120_000), "alive");
        assert_eq!(status(&h, Timestamp(121_000), 120_000), "lost");
        h.set("cam-1", "entry-1", true, Timestamp(122_000));
        assert_eq!(status(&h, Timestamp(123_000), 120_000), "alive");
    }

    #[test]
    fn a_failed_beat_is_repeated_soon_a_good_one_keeps_the_period() {
        let s = |secs| Duration::from_secs(secs);
        assert_eq!(next_after(true, s(30), s(1), s(1)), s(30));
        assert_eq!(next_after(false, s(30), s(1), s(1)), s(2));
        assert_eq!(
            next_after(false, s(30), s(29) + Duration::from_millis(500), s(1)),
            s(30)
        );
    }
}
