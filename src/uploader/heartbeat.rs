//! The heartbeat: its own task, every `heartbeat_secs`, never behind the backlog (it
//! does not go through the outbox). Says `lost` while some lane's devices have all been
//! unreachable for longer than the threshold, else `alive`.

use super::{Deliver, StatusHandle};
use crate::health::Health;
use crate::platform::Uplink;
use crate::platform::wire::HeartbeatRequest;
use crate::time::Timestamp;
use prometheus::IntCounterVec;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_heartbeats_total",
        "Heartbeats sent, by status and whether the platform took them",
        &["status", "result"],
    )
});

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
}

impl<D: Deliver> Heartbeat<D> {
    /// Beats until dropped. Each beat runs on its own with a timeout of one period, so
    /// a slow platform never delays the next one.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost_after_ms = i64::try_from(self.lost_after.as_millis()).unwrap_or(i64::MAX);
        // Warnings once per change: a lost lane and a failing heartbeat are logged when
        // they begin and end, not on every beat (the counts are in /metrics).
        let mut lost_before: Vec<String> = Vec::new();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            ticks.tick().await;
            let now = Timestamp::now();
            let state = status(&self.health, now, lost_after_ms);
            let lanes = if state == "lost" {
                self.health.lost_lanes(now, lost_after_ms)
            } else {
                Vec::new()
            };
            if lanes != lost_before {
                if lanes.is_empty() {
                    tracing::info!("heartbeat says normal again");
                } else {
                    tracing::warn!(lanes = ?lanes, "heartbeat says lost: every device of these lanes is unreachable");
                }
                lost_before = lanes;
            }
            let uplink = Uplink::Heartbeat(HeartbeatRequest {
                parking_lot_no: self.parking_lot_no.clone(),
                status: state.into(),
            });
            let deliver = self.deliver.clone();
            let status = self.status.clone();
            let limit = self.every;
            let failing = failing.clone();
            tokio::spawn(async move {
                let why = match tokio::time::timeout(limit, deliver.deliver(&uplink)).await {
                    Ok(Ok(answer)) if answer.verdict.is_delivered() => None,
                    Ok(Ok(answer)) => Some(format!("heartbeat refused: {:?}", answer.verdict)),
                    Ok(Err(e)) => Some(format!("heartbeat not delivered: {e}")),
                    Err(_) => Some(format!(
                        "heartbeat timed out after {} ms",
                        limit.as_millis()
                    )),
                };
                let ok = why.is_none();
                let was_failing = failing.swap(!ok, std::sync::atomic::Ordering::Relaxed);
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
            });
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
}
