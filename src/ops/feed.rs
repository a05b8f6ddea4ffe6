//! Wires operations into `run`: builds the [`OpsState`] from what the pipeline shares
//! (given by the service, which sits above `ops`: nothing here imports it), starts
//! the ops tasks ([`super::start`]) and a feeder that copies what the pipeline already
//! keeps (delivery status, outbox, occupancy, stays in the store) into it every
//! [`FEED_EVERY`].
//!
//! Watchdog liveness registered here: the feeder itself, and the heartbeat task (seen
//! through the beats it records). The uploader and lane tasks register their own with
//! [`OpsState::liveness`] when they are given the `OpsState`.
//!
//! Passages reach the status page two ways: lanes may call
//! [`OpsState::record_passage`] directly (with the snapshot image), and the feeder
//! picks up every stay written to the store since start (lanes and the `stay`
//! operator command alike). The same passage recorded both ways is kept once.

use super::{Liveness, OpsError, OpsState, OpsTasks};
use crate::config::SiteConfig;
use crate::health::Health;
use crate::store::Store;
use crate::time::Timestamp;
use crate::uploader::{DeliveryStatus, StatusHandle};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How often the feeder copies pipeline state.
pub const FEED_EVERY: Duration = Duration::from_secs(1);
/// Stays looked at per round (newest first).
const STAYS_PER_ROUND: usize = 50;

static CONFIG_PATH: OnceLock<PathBuf> = OnceLock::new();

/// The config file this process runs from, for SIGHUP re-reads. Set once by `main`.
pub fn remember_config_path(path: &std::path::Path) {
    let _ = CONFIG_PATH.set(path.to_path_buf());
}

/// Builds the [`OpsState`] for the pipeline's parts (its config, device health,
/// store and delivery status), starts the ops tasks and the feeder. Keep the returned
/// tasks alive for as long as the service runs.
pub async fn attach(
    config: &SiteConfig,
    health: Health,
    store: Arc<Store>,
    delivery: StatusHandle,
) -> Result<(OpsState, OpsTasks), OpsError> {
    let ops = OpsState::with_health(config, health);
    let config_path = CONFIG_PATH.get().cloned();
    let mut tasks = super::start(config_path.as_deref(), config, &ops).await?;
    let budget = config.storage.disk_budget_mb.saturating_mul(1024 * 1024);
    // The heartbeat task finishes a beat (accepted or not) every period: a silence of
    // three periods means it, or the runtime, is stuck.
    let beat_every = Duration::from_secs(config.platform.heartbeat_secs.max(1));
    let heartbeat_alive = ops.liveness("heartbeat", beat_every * 3 + Duration::from_secs(10));
    tasks.push(tokio::spawn(feed(
        ops.clone(),
        store,
        delivery,
        budget,
        heartbeat_alive,
    )));
    Ok((ops, tasks))
}

async fn feed(
    ops: OpsState,
    store: Arc<Store>,
    delivery: StatusHandle,
    budget_bytes: u64,
    heartbeat_alive: Liveness,
) {
    let started = Timestamp::now();
    let alive = ops.liveness("ops feeder", FEED_EVERY * 30);
    let mut seen = Seen::default();
    let mut previous = DeliveryStatus::default();
    let mut ticker = tokio::time::interval(FEED_EVERY);
    loop {
        ticker.tick().await;
        alive.tick();
        let now = Timestamp::now();
        let status = delivery.get();
        if status.last_heartbeat != previous.last_heartbeat {
            heartbeat_alive.tick();
        }
        copy_delivery(&ops, &previous, &status, now);
        previous = status;

        let store = store.clone();
        let read = tokio::task::spawn_blocking(move || {
            let summary = store.outbox_summary(now)?;
            let occupancy = store.occupancy()?;
            let stays = store.list_stays(false, STAYS_PER_ROUND)?;
            Ok::<_, crate::store::StoreError>((summary, occupancy, stays))
        })
        .await;
        match read {
            Ok(Ok((summary, occupancy, stays))) => {
                let oldest = summary
                    .kinds
                    .values()
                    .filter_map(|k| k.oldest_pending_age_ms)
                    .max()
                    .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                ops.set_outbox(summary.pending(), oldest);
                ops.set_outbox_kinds(outbox_kinds(&summary));
                ops.set_held(summary.held());
                ops.set_store_error(None);
                ops.set_occupancy(occupancy.occupied, occupancy.total);
                ops.set_disk(
                    u64::try_from(summary.image_bytes).unwrap_or(0),
                    budget_bytes,
                );
                // Oldest first, so the page lists them newest first.
                for stay in stays.iter().rev() {
                    if stay.entered_at >= started && seen.first_time(&stay.out_order_no, "entry") {
                        ops.record_passage(
                            &stay.entry_lane,
                            Some(&stay.plate_no),
                            "entry",
                            stay.entered_at,
                            None,
                        );
                    }
                    if let (Some(lane), Some(at)) = (&stay.exit_lane, stay.exited_at)
                        && at >= started
                        && seen.first_time(&stay.out_order_no, "exit")
                    {
                        ops.record_passage(lane, Some(&stay.plate_no), "exit", at, None);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "status feeder cannot read the store");
                ops.set_store_error(Some(e.to_string()));
            }
            Err(e) => tracing::warn!(error = %e, "status feeder task failed"),
        }
    }
}

/// The outbox per kind of report, in the words of the status page.
fn outbox_kinds(summary: &crate::store::OutboxSummary) -> Vec<super::status::OutboxKind> {
    use crate::report::ReportKind;
    summary
        .kinds
        .iter()
        .map(|(kind, k)| super::status::OutboxKind {
            kind: match kind {
                ReportKind::Entry => "entry report",
                ReportKind::EntrySnapshot => "entry snapshot",
                ReportKind::Exit => "exit report",
                ReportKind::ExitSnapshot => "exit snapshot",
            },
            pending: k.pending,
            held: k.held,
            oldest_age: k
                .oldest_pending_age_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            last_error: k.last_error.clone(),
        })
        .collect()
}

/// Translates changes of the uploader's status into platform answers and alarms.
fn copy_delivery(
    ops: &OpsState,
    before: &DeliveryStatus,
    now_status: &DeliveryStatus,
    now: Timestamp,
) {
    if now_status.last_delivered_at != before.last_delivered_at
        && let Some(at) = now_status.last_delivered_at
    {
        ops.record_platform_answer(true, None, at);
    }
    if now_status.consecutive_failures > before.consecutive_failures {
        ops.record_platform_answer(false, None, now);
    }
    if now_status.last_heartbeat != before.last_heartbeat
        && let Some((at, _, accepted)) = now_status.last_heartbeat
    {
        ops.record_heartbeat(accepted, at);
        ops.record_platform_answer(accepted, None, at);
    }
    if now_status.alarm != before.alarm
        && let Some((at, text)) = &now_status.alarm
    {
        ops.alarm(text, *at);
    }
}

/// Passages already recorded; the oldest keys are forgotten first.
#[derive(Default)]
struct Seen {
    keys: HashSet<(String, &'static str)>,
    order: std::collections::VecDeque<(String, &'static str)>,
}

impl Seen {
    /// Twice the keys one round can show: an evicted key belongs to a stay that has
    /// left the newest-first window.
    const CAPACITY: usize = 4 * STAYS_PER_ROUND;

    fn first_time(&mut self, out_order_no: &str, case: &'static str) -> bool {
        let key = (out_order_no.to_string(), case);
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_reports_each_key_once_and_stays_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first_time("A", "entry"));
        assert!(!seen.first_time("A", "entry"));
        assert!(seen.first_time("A", "exit"));
        for i in 0..1000 {
            seen.first_time(&format!("S{i}"), "entry");
        }
        assert!(seen.keys.len() <= Seen::CAPACITY && seen.order.len() <= Seen::CAPACITY);
        assert!(!seen.first_time("S999", "entry"), "recent keys are kept");
    }
}
