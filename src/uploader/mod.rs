//! Outbox → platform: the delivery loop, and the heartbeat task ([`heartbeat`]).
//!
//! The loop hands out due reports, at most `max_in_flight` at a time and never two
//! of the same stay, so each stay goes strictly entry → entry snapshot → exit → exit
//! snapshot while a stay stuck on an error holds back no other. Every answer is
//! recorded in the store before the stay can be handed out again; a crash in between
//! means the report is sent once more after restart, which the platform answers as a
//! duplicate (counted as delivered). Scheduling decisions are pure ([`policy`]).
//!
//! Most slots take the oldest due reports (a backlog drains in order); every
//! `LIVE_EVERY`-th takes the newest, so live reports are not stuck behind hours of
//! backlog.
//!
//! **The platform's last view is the lot's truth.** The platform takes the
//! `total_spaces`/`free_spaces` of the latest report as the lot's count, whatever stay
//! it belongs to. So every entry and exit carries the lot's count *at send time* (read
//! once per dispatch round), not the count of its own moment; and an entry/exit is not
//! sent while another one carrying a different count is still in flight, so the last
//! report the platform accepts always carries the newest count — whatever the order of
//! delivery, outages, restarts or concurrency. A change without a report (an operator's
//! `occupancy set`) reaches the platform with the next report.
//!
//! A refusal (`success:false`) concerns one report: it is retried `refused_tries`
//! times with a doubling delay, then held for an operator; it never pauses the others.
//! The first answer after failures wakes the heartbeat ([`StatusHandle::platform_back`]).

pub mod heartbeat;
pub mod policy;

use crate::platform::{Answer, ClientError, PlatformClient, Uplink};
use crate::report::ReportKind;
use crate::snapshot;
use crate::store::{OutboxItem, Store, StoreError};
use crate::time::Timestamp;
use base64::Engine;
use chrono::FixedOffset;
use policy::{Backoff, Decision, Throttle};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Sends one request to the platform. The real one is [`PlatformClient`]; tests use
/// in-process fakes.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, uplink: &Uplink) -> impl Future<Output = Result<Answer, ClientError>> + Send;
}

impl Deliver for PlatformClient {
    fn deliver(&self, uplink: &Uplink) -> impl Future<Output = Result<Answer, ClientError>> + Send {
        self.send(uplink)
    }
}

crate::metrics::statics! {
    UPLOADS: IntCounterVec = ("parking_bridge_uploads_total", "Delivery attempts by report kind and result", ["kind", "result"]);
    HELD: IntGauge = ("parking_bridge_reports_held", "Reports the platform refused too often, held for an operator (outbox held)");
    UNEXPECTED_CODES: IntCounterVec = ("parking_bridge_unexpected_result_codes_total", "success:true answers with a result_code no rule knows (counted as delivered)", ["code"]);
}

/// Codes already logged as unexpected (one line per code per process).
static UNEXPECTED_SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

crate::metrics::statics! {
    ALARMS: IntCounter = ("parking_bridge_platform_alarms_total", "Answers that need an operator (unknown lot, invalid parameters, credentials)");
}

/// How the delivery loop runs.
#[derive(Debug, Clone)]
pub struct UploaderSettings {
    pub parking_lot_no: String,
    /// Lot-local offset for the wire's time fields.
    pub offset: FixedOffset,
    pub max_in_flight: usize,
    pub backoff: Backoff,
    /// How often the outbox is looked at when nothing wakes the loop (rows written by
    /// other processes, backoffs expiring).
    pub poll: Duration,
    pub prune_every: Duration,
}

impl UploaderSettings {
    pub fn new(parking_lot_no: &str, offset: FixedOffset) -> Self {
        UploaderSettings {
            parking_lot_no: parking_lot_no.to_string(),
            offset,
            max_in_flight: 4,
            backoff: Backoff::default(),
            poll: Duration::from_millis(500),
            prune_every: Duration::from_secs(3600),
        }
    }
}

/// What the status page shows about delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryStatus {
    /// The latest configuration fault and when it was seen.
    pub alarm: Option<(Timestamp, String)>,
    pub last_delivered_at: Option<Timestamp>,
    pub consecutive_failures: u32,
    /// Latest heartbeat: when, the status sent, and whether the platform took it.
    pub last_heartbeat: Option<(Timestamp, &'static str, bool)>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<DeliveryStatus>>, Arc<Notify>);

impl StatusHandle {
    /// The platform answered again after failures: wakes the heartbeat.
    pub fn platform_back(&self) {
        self.1.notify_one();
    }

    /// Resolves at the next [`platform_back`](Self::platform_back) (or at once if one
    /// came since the last wait).
    pub async fn wait_platform_back(&self) {
        self.1.notified().await;
    }

    pub fn get(&self) -> DeliveryStatus {
        self.lock().clone()
    }
    fn update(&self, f: impl FnOnce(&mut DeliveryStatus)) {
        f(&mut self.lock());
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, DeliveryStatus> {
        // The status is plain data; a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every this many dispatches, one slot goes to the newest due report.
const LIVE_EVERY: u64 = 4;
/// Free database pages kept for the next images (10 MB with SQLite's 4 KiB pages).
const KEEP_FREE_PAGES: u64 = 2560;
/// Free pages returned to the file system per call (every 15 s): 8 MB, ≈ 2 GB an hour,
/// each call short enough not to hold up the lanes' writes.
const RECLAIM_PAGES: u64 = 2048;
/// Reports fetched per look at the outbox.
const BATCH: usize = 32;

/// Whether `item` may go now, given the lot's count `now` and the counts carried by the
/// entries/exits in flight: an entry/exit waits while one with another count is in
/// flight, so that the platform cannot accept an older count after a newer one. Pure.
pub fn may_dispatch(
    kind: ReportKind,
    now: Option<(i64, i64)>,
    in_flight: &HashMap<tokio::task::Id, (i64, i64)>,
) -> bool {
    if !matches!(kind, ReportKind::Entry | ReportKind::Exit) {
        return true;
    }
    match now {
        Some(count) => in_flight.values().all(|c| *c == count),
        // Count unknown (store unreadable): keep the report's own count, one at a time.
        None => in_flight.is_empty(),
    }
}

/// Stamps the lot's count `(total, free)` on an entry or exit.
fn stamp_count(report: &mut crate::report::Report, (total, free): (i64, i64)) {
    match report {
        crate::report::Report::Entry(e) => {
            e.total_spaces = total;
            e.free_spaces = free;
        }
        crate::report::Report::Exit(x) => {
            x.total_spaces = total;
            x.free_spaces = free;
        }
        crate::report::Report::Snapshot { .. } => {}
    }
}

/// The count an entry or exit carries.
fn count_of(report: &crate::report::Report) -> Option<(i64, i64)> {
    match report {
        crate::report::Report::Entry(e) => Some((e.total_spaces, e.free_spaces)),
        crate::report::Report::Exit(x) => Some((x.total_spaces, x.free_spaces)),
        crate::report::Report::Snapshot { .. } => None,
    }
}

/// The result of one attempt, before it is classified.
enum Attempt {
    Answered(Result<Answer, ClientError>),
    /// The report can never be sent (its snapshot image is gone or undecodable).
    Dropped(String),
    /// The store failed while preparing; retried on the next round.
    Local(String),
}

/// Outcomes decided but not yet committed, and the stays they hold busy.
#[derive(Default)]
struct Unrecorded {
    outcomes: Vec<crate::store::Outcome>,
    stays: Vec<String>,
}

struct Finished {
    item: OutboxItem,
    attempt: Attempt,
}

pub struct Uploader<D: Deliver> {
    store: Arc<Store>,
    deliver: Arc<D>,
    settings: UploaderSettings,
    notify: Arc<Notify>,
    status: StatusHandle,
    /// Ticked on every turn of the loop, so a stuck uploader stops the watchdog.
    liveness: Option<crate::health::Liveness>,
}

impl<D: Deliver> Uploader<D> {
    pub fn new(
        store: Arc<Store>,
        deliver: Arc<D>,
        settings: UploaderSettings,
        status: StatusHandle,
    ) -> Self {
        let notify = store.notifier();
        Uploader {
            store,
            deliver,
            settings,
            notify,
            status,
            liveness: None,
        }
    }

    /// Reports progress to the systemd watchdog on every turn of the loop.
    pub fn with_liveness(mut self, liveness: crate::health::Liveness) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// Runs until the task is dropped or aborted (safe at any point: the store is the
    /// only state).
    pub async fn run(self) {
        let mut in_flight: JoinSet<Finished> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
        // The lot's count carried by each entry/exit in flight.
        let mut counts: HashMap<tokio::task::Id, (i64, i64)> = HashMap::new();
        let mut unrecorded = Unrecorded::default();
        let mut recording: Option<JoinHandle<Vec<String>>> = None;
        let mut queue: VecDeque<OutboxItem> = VecDeque::new();
        let mut throttle = Throttle::default();
        let mut dispatched: u64 = 0;
        let mut next_prune = tokio::time::Instant::now();
        let mut next_reclaim = tokio::time::Instant::now();
        let max = self.settings.max_in_flight.max(1);
        loop {
            if let Some(alive) = &self.liveness {
                alive.tick();
            }
            let now = Timestamp::now();
            if tokio::time::Instant::now() >= next_prune {
                next_prune += self.settings.prune_every;
                self.prune(now).await;
            }
            if tokio::time::Instant::now() >= next_reclaim {
                next_reclaim = tokio::time::Instant::now() + Duration::from_secs(15);
                self.reclaim().await;
            }
            if throttle.may_send(now) {
                // Read once per round: every entry/exit of the round carries this count.
                let mut lot_count: Option<Option<(i64, i64)>> = None;
                while in_flight.len() < throttle.in_flight_limit(&self.settings.backoff, max) {
                    let live = dispatched % LIVE_EVERY == LIVE_EVERY - 1;
                    let mut fetched = false;
                    let Some(mut item) = self
                        .next_item(&mut queue, &busy, now, live, &mut fetched)
                        .await
                    else {
                        break;
                    };
                    if fetched {
                        // Rows fetched after the count was read may be newer than it (an
                        // exit committed in between): read it again, or the last report
                        // could carry a count from before its own change.
                        lot_count = None;
                    }
                    if matches!(item.kind, ReportKind::Entry | ReportKind::Exit) {
                        let count = match lot_count {
                            Some(c) => c,
                            None => *lot_count.insert(self.lot_count().await),
                        };
                        if !may_dispatch(item.kind, count, &counts) {
                            // Sent once the reports with the older count are answered.
                            queue.push_front(item);
                            break;
                        }
                        if let Some(c) = count {
                            stamp_count(&mut item.report, c);
                        }
                    }
                    let carried = count_of(&item.report);
                    dispatched += 1;
                    busy.insert(item.out_order_no.clone());
                    let stay = item.out_order_no.clone();
                    let handle = in_flight.spawn(attempt(
                        self.store.clone(),
                        self.deliver.clone(),
                        item,
                        self.settings.parking_lot_no.clone(),
                        self.settings.offset,
                    ));
                    tasks.insert(handle.id(), stay);
                    if let Some(c) = carried {
                        counts.insert(handle.id(), c);
                    }
                }
            }
            let wait = match throttle.paused_until {
                Some(p) if p > now => {
                    Duration::from_millis((p.0 - now.0) as u64).min(self.settings.poll)
                }
                _ => self.settings.poll,
            };
            tokio::select! {
                Some(joined) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let mut done = vec![joined];
                    while let Some(more) = in_flight.try_join_next_with_id() {
                        done.push(more);
                    }
                    for joined in &done {
                        let id = match joined {
                            Ok((id, _)) => *id,
                            Err(e) => e.id(),
                        };
                        counts.remove(&id);
                    }
                    self.classify(done, &mut tasks, &mut throttle, &mut unrecorded);
                }
                released = async {
                    match recording.as_mut() {
                        Some(handle) => handle.await,
                        None => std::future::pending().await,
                    }
                }, if recording.is_some() => {
                    recording = None;
                    match released {
                        Ok(stays) => {
                            for stay in stays {
                                busy.remove(&stay);
                            }
                        }
                        // A recorder that died leaves its stays busy until restart, when
                        // their reports are sent again.
                        Err(e) => tracing::error!(error = %e, "recording task failed"),
                    }
                }
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            // One commit at a time; results arriving meanwhile wait for the next one, so
            // commits group themselves under load while sending goes on.
            if recording.is_none() && !unrecorded.stays.is_empty() {
                recording = Some(self.spawn_record(std::mem::take(&mut unrecorded)));
            }
        }
    }

    /// The lot's `(total, free)` now; `None` when the store cannot say.
    async fn lot_count(&self) -> Option<(i64, i64)> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.occupancy()).await {
            Ok(Ok(o)) => Some((o.total, o.free.clamp(0, o.total.max(0)))),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the lot's count; reports keep their own");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "count read task failed");
                None
            }
        }
    }

    /// The next report to send: from the fetched batch, or a fresh look at the outbox.
    async fn next_item(
        &self,
        queue: &mut VecDeque<OutboxItem>,
        busy: &HashSet<String>,
        now: Timestamp,
        live: bool,
        fetched: &mut bool,
    ) -> Option<OutboxItem> {
        if live {
            *fetched = true;
        }
        if live && let Some(item) = self.fetch(now, 1, true, busy).await.pop() {
            queue.retain(|q| q.out_order_no != item.out_order_no);
            return Some(item);
        }
        loop {
            while let Some(item) = queue.pop_front() {
                if !busy.contains(&item.out_order_no) {
                    return Some(item);
                }
            }
            *fetched = true;
            let fresh = self.fetch(now, BATCH, false, busy).await;
            if fresh.is_empty() {
                return None;
            }
            queue.extend(fresh);
        }
    }

    async fn fetch(
        &self,
        now: Timestamp,
        limit: usize,
        newest_first: bool,
        busy: &HashSet<String>,
    ) -> Vec<OutboxItem> {
        let store = self.store.clone();
        let busy = busy.clone();
        match tokio::task::spawn_blocking(move || {
            store.due_reports(now, limit, newest_first, &busy)
        })
        .await
        {
            Ok(Ok(items)) => items,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox read task failed");
                Vec::new()
            }
        }
    }

    /// Turns finished attempts into outcomes to record (and the stays they free once
    /// recorded). Decisions are taken at once; only the commit waits.
    fn classify(
        &self,
        done: Vec<Result<(tokio::task::Id, Finished), tokio::task::JoinError>>,
        tasks: &mut HashMap<tokio::task::Id, String>,
        throttle: &mut Throttle,
        unrecorded: &mut Unrecorded,
    ) {
        let now = Timestamp::now();
        let Unrecorded {
            outcomes,
            stays: finished_stays,
        } = unrecorded;
        for joined in done {
            let Finished { item, attempt } = match joined {
                Ok((task, f)) => {
                    tasks.remove(&task);
                    f
                }
                Err(e) => {
                    // The report stays pending and goes again on a later round.
                    tracing::error!(error = %e, "delivery task failed");
                    if let Some(stay) = tasks.remove(&e.id()) {
                        finished_stays.push(stay);
                    }
                    continue;
                }
            };
            finished_stays.push(item.out_order_no.clone());
            let unit: f64 = rand::random();
            let decision = match attempt {
                Attempt::Answered(result) => {
                    let d = policy::decide(
                        item.id,
                        item.kind,
                        item.attempts,
                        item.refusals,
                        &result,
                        &self.settings.backoff,
                        now,
                        unit,
                    );
                    self.log_result(&item, &result, &d);
                    d
                }
                Attempt::Dropped(reason) => {
                    tracing::error!(out_order_no = %item.out_order_no, kind = item.kind.as_str(), reason = %reason, "snapshot dropped");
                    UPLOADS
                        .with_label_values(&[item.kind.as_str(), "dropped"])
                        .inc();
                    Decision {
                        outcome: crate::store::Outcome::Dropped {
                            id: item.id,
                            reason,
                        },
                        platform_trouble: false,
                        alarm: None,
                        answered: false,
                    }
                }
                Attempt::Local(error) => {
                    tracing::error!(out_order_no = %item.out_order_no, error = %error, "could not prepare report");
                    let delay = self.settings.backoff.delay_ms(item.attempts + 1, unit);
                    Decision {
                        outcome: crate::store::Outcome::Retry {
                            id: item.id,
                            due_at: now.plus_millis(delay),
                            error,
                        },
                        platform_trouble: false,
                        alarm: None,
                        answered: false,
                    }
                }
            };
            if decision.answered && throttle.consecutive_failures > 0 {
                // The platform answers again: a heartbeat now, not at the next period.
                self.status.platform_back();
            }
            let mut outcome = decision.outcome.clone();
            if let Some(until) = throttle.note(&decision, &self.settings.backoff, now, unit)
                && let crate::store::Outcome::Retry { due_at, .. } = &mut outcome
            {
                // While the platform is down, failed reports wait for it to come back
                // and then go first, keeping the backlog in order.
                *due_at = until;
            }
            outcomes.push(outcome);
        }
        self.status.update(|s| {
            s.consecutive_failures = throttle.consecutive_failures;
        });
    }

    /// Commits outcomes in the background; yields the stays to release when done.
    fn spawn_record(&self, unrecorded: Unrecorded) -> JoinHandle<Vec<String>> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let Unrecorded { outcomes, stays } = unrecorded;
            let now = Timestamp::now();
            let held = outcomes
                .iter()
                .any(|o| matches!(o, crate::store::Outcome::Held { .. }));
            match tokio::task::spawn_blocking(move || {
                store.record_outcomes(&outcomes, now)?;
                if held {
                    store.held_count().map(Some)
                } else {
                    Ok(None)
                }
            })
            .await
            {
                Ok(Ok(Some(n))) => HELD.set(i64::try_from(n).unwrap_or(i64::MAX)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot record delivery results; those reports will be sent again")
                }
                Err(e) => tracing::error!(error = %e, "recording task failed"),
            }
            stays
        })
    }

    fn log_result(&self, item: &OutboxItem, result: &Result<Answer, ClientError>, d: &Decision) {
        let kind = item.kind.as_str();
        let code = result.as_ref().ok().and_then(|a| a.result_code.clone());
        match &d.outcome {
            crate::store::Outcome::Delivered { .. } => {
                let label = match result {
                    Ok(a) if a.verdict == crate::platform::Verdict::AlreadyDone => "duplicate",
                    _ => "delivered",
                };
                UPLOADS.with_label_values(&[kind, label]).inc();
                self.status
                    .update(|s| s.last_delivered_at = Some(Timestamp::now()));
                tracing::debug!(out_order_no = %item.out_order_no, kind, result = label, "report delivered");
            }
            crate::store::Outcome::NeedsEntryFirst { error, .. } => {
                UPLOADS.with_label_values(&[kind, "needs_entry"]).inc();
                tracing::warn!(out_order_no = %item.out_order_no, kind, code = %error, "platform does not know the stay; sending its entry again first");
            }
            crate::store::Outcome::Retry { error, due_at, .. } => {
                if let Some(alarm) = &d.alarm {
                    ALARMS.inc();
                    UPLOADS.with_label_values(&[kind, "alarm"]).inc();
                    self.status
                        .update(|s| s.alarm = Some((Timestamp::now(), alarm.clone())));
                    tracing::error!(out_order_no = %item.out_order_no, kind, error = %alarm, "ALARM: the platform refuses this report; fix the configuration (data is kept and retried slowly)");
                } else {
                    UPLOADS.with_label_values(&[kind, "retry"]).inc();
                    // During an outage every report fails the same way: the first
                    // failure warns (and the status page logs the outage's start and
                    // end); the rest are detail, counted in uploads_total.
                    if self.status.get().consecutive_failures == 0 {
                        tracing::warn!(out_order_no = %item.out_order_no, kind, attempts = item.attempts + 1, code = ?code, error = %error, retry_at = due_at.0, "delivery failed; will retry");
                    } else {
                        tracing::debug!(out_order_no = %item.out_order_no, kind, attempts = item.attempts + 1, code = ?code, error = %error, retry_at = due_at.0, "delivery failed; will retry");
                    }
                }
            }
            crate::store::Outcome::Refused {
                refusal, due_at, ..
            } => {
                UPLOADS.with_label_values(&[kind, "refused"]).inc();
                tracing::warn!(
                    out_order_no = %item.out_order_no, kind, refusals = item.refusals + 1,
                    code = refusal.code.as_deref().unwrap_or("-"), message = %refusal.message,
                    retry_at = due_at.0, "the platform refused this report; will try again later"
                );
            }
            crate::store::Outcome::Held { refusal, .. } => {
                UPLOADS.with_label_values(&[kind, "held"]).inc();
                let waits = match item.kind {
                    ReportKind::Entry => "its exit and snapshots wait for it",
                    ReportKind::Exit => "its exit snapshot waits for it",
                    _ => "nothing waits for it",
                };
                tracing::warn!(
                    out_order_no = %item.out_order_no, kind, refusals = item.refusals + 1,
                    code = refusal.code.as_deref().unwrap_or("-"), message = %refusal.message,
                    "report HELD after repeated refusals: not sent again until `parking-bridge outbox retry` or `outbox drop`; {waits}"
                );
            }
            crate::store::Outcome::Dropped { .. } => {}
        }
        if let Ok(a) = result
            && a.unexpected_code
        {
            let code = a.result_code.clone().unwrap_or_default();
            UNEXPECTED_CODES.with_label_values(&[code.as_str()]).inc();
            let first = UNEXPECTED_SEEN
                .lock()
                .map(|mut seen| seen.insert(code.clone()))
                .unwrap_or(false);
            if first {
                tracing::warn!(
                    code = %code, message = a.result_msg.as_deref().unwrap_or(""),
                    "success:true with an unknown result_code: counted as delivered (logged once per code; map it in [platform.result_codes] if it means something else)"
                );
            }
        }
    }

    async fn prune(&self, now: Timestamp) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.prune(now)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(rows = n, "pruned acknowledged reports past retention")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "pruning failed"),
            Err(e) => tracing::error!(error = %e, "pruning task failed"),
        }
    }

    /// Shrinks the database file after a backlog of images was delivered: up to
    /// `RECLAIM_PAGES` free pages per call beyond a reserve of `KEEP_FREE_PAGES`.
    async fn reclaim(&self) {
        let s = self.store.clone();
        // Operators retry and drop held reports from another process: refresh here.
        if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || s.held_count()).await {
            HELD.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || {
            store.reclaim_free_pages(KEEP_FREE_PAGES, RECLAIM_PAGES)
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(pages)) => {
                tracing::debug!(pages, "returned free database pages to the file system")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot shrink the state database"),
            Err(e) => tracing::error!(error = %e, "shrink task failed"),
        }
    }
}

/// One delivery attempt: prepare the image if any, build the request, send.
async fn attempt<D: Deliver>(
    store: Arc<Store>,
    deliver: Arc<D>,
    item: OutboxItem,
    lot_no: String,
    offset: FixedOffset,
) -> Finished {
    let image = match prepare_image(&store, &item).await {
        Ok(image) => image,
        Err(attempt) => return Finished { item, attempt },
    };
    let is_snapshot = matches!(
        item.kind,
        ReportKind::EntrySnapshot | ReportKind::ExitSnapshot
    );
    if is_snapshot && image.is_none() {
        return Finished {
            item,
            attempt: Attempt::Dropped("the snapshot image is no longer stored".into()),
        };
    }
    let b64 = image.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
    // A report the spec does not allow is refused like an invalid request always was:
    // not retriable, alarmed, tried again at the alarm period.
    let result = match Uplink::from_report(&item.report, &lot_no, b64, offset) {
        Ok(uplink) => deliver.deliver(&uplink).await,
        Err(e) => Err(ClientError::Invalid(e)),
    };
    Finished {
        item,
        attempt: Attempt::Answered(result),
    }
}

/// The platform-ready image of a row: re-encoded once (off the async threads) and
/// stored back. An undecodable image is logged; a snapshot report is then dropped, an
/// entry/exit goes without it.
async fn prepare_image(store: &Arc<Store>, item: &OutboxItem) -> Result<Option<Vec<u8>>, Attempt> {
    if item.image_bytes.is_none() {
        return Ok(None);
    }
    let id = item.id;
    let s = store.clone();
    let stored = blocking(move || s.image(id)).await?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    if stored.encoded {
        return Ok(Some(stored.data));
    }
    let raw_len = stored.data.len();
    let encoded = tokio::task::spawn_blocking(move || {
        snapshot::reencode(&stored.data, snapshot::MAX_JPEG_BYTES)
    })
    .await
    .map_err(|e| Attempt::Local(e.to_string()))?;
    match encoded {
        Ok(enc) => {
            tracing::info!(
                out_order_no = %item.out_order_no,
                kind = item.kind.as_str(),
                raw_bytes = raw_len,
                jpeg_bytes = enc.jpeg.len(),
                width = enc.width,
                quality = ?enc.quality,
                "snapshot re-encoded"
            );
            let s = store.clone();
            let jpeg = enc.jpeg.clone();
            blocking(move || s.replace_image(id, &jpeg)).await?;
            Ok(Some(enc.jpeg))
        }
        Err(e) => {
            tracing::error!(out_order_no = %item.out_order_no, kind = item.kind.as_str(), error = %e, "snapshot image unusable; the report goes without it");
            if matches!(
                item.kind,
                ReportKind::EntrySnapshot | ReportKind::ExitSnapshot
            ) {
                Err(Attempt::Dropped(format!("snapshot image unusable: {e}")))
            } else {
                let s = store.clone();
                blocking(move || s.discard_image(id)).await?;
                Ok(None)
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Attempt> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Attempt::Local(e.to_string())),
        Err(e) => Err(Attempt::Local(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
