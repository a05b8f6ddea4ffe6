//! The lane task: a thin shell around the lot's decision logic ([`LaneCore`], the same
//! core `replay` runs). It journals each [`RawEvent`] from the drivers (lot feeds
//! included) before the core sees it, wakes the core at its `poll_at` (journalling a
//! `timers` mark so replay runs the timers at the same point), and applies what the
//! core decides to the state database, one transaction per stay action
//! ([`Store::apply`], on the blocking pool: SQLite commits wait for the disk).
//! The store wakes the uploader itself after every commit that queues a report.
//! Device link events update [`Health`] for the heartbeat and status page.
//!
//! Time: an event is handled at its own `at`, after the timers due by then (so the
//! service and `replay` agree); timers run at the wall clock.
//!
//! Crashes and restarts: every event is in the journal before a machine sees it, and
//! every applied passage leaves an `applied` mark. At start the task rebuilds its
//! machines from the journal ([`crate::lane::resume`]), applies what the previous run left
//! unapplied, and follows each lane's devices until they have all reported again: a
//! passage those first reports complete (a vehicle that cleared in the blind
//! interval) is flagged `recovered`, and each lane's blind interval is recorded
//! ([`crate::lane::journal::Gap`]: journal, `gaps.jsonl`, `/metrics`, the status page's
//! alarms). A stop leaves held vehicles to the next start instead of settling them,
//! so a stop and a restart give the same reports as no stop.

use crate::config::SiteConfig;
use crate::event::{EventKind, RawEvent};
use crate::health::Health;
use crate::lane::core::{LaneCore, Step};
use crate::lane::fees::{FeeSource, OwnedFees};
use crate::lane::journal::{Gap, Journal, Mark};
use crate::lane::machine::Passage;
use crate::lane::resume::Applied;
use crate::lane::stays::{OpenStay, StayAction};
use crate::lane::watch::{Change, LaneWatch};
use crate::store::{LaneNote, LocalClose, Store, StoreError};
use crate::time::Timestamp;
use prometheus::{GaugeVec, IntCounter, IntCounterVec};
use std::collections::{BTreeMap, BTreeSet, HashSet};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Attempts at applying one passage before it is given up (logged as an error).
const STORE_ATTEMPTS: u32 = 5;
/// An `alive` mark is journalled when nothing else was for this long, so a crash's
/// blind interval is known to within it.
const ALIVE_EVERY_MS: i64 = 10_000;
/// After a restart, a lane whose devices have all reported something, but not all a
/// loop or gate state (a camera reports only plates), is seeing again after this long.
const RESYNC_SETTLE_MS: i64 = 5_000;
/// A device silent this long after a restart is left out of the lane's gap (listed as
/// silent); the lane's link-down logic deals with it.
const RESYNC_LIMIT_MS: i64 = 30_000;

crate::metrics::statics! {
    GAPS: IntCounterVec = ("parking_bridge_lane_restart_gaps_total", "Blind intervals across a restart (crash or stop), by lane", ["lane"]);
    LAST_GAP: GaugeVec = ("parking_bridge_lane_last_gap_seconds", "The last restart's blind interval, by lane: the previous run's last sign of life to the lane's devices reporting again", ["lane"]);
    RECOVERED: IntCounterVec = ("parking_bridge_lane_recovered_passages_total", "Passages reported from the journal after a restart, or completed in a restart's blind interval, by lane", ["lane"]);
    UNRESOLVED: IntCounterVec = ("parking_bridge_lane_unresolved_total", "Vehicles a restart could not account for (followed at the restart, gone without a passage), by lane", ["lane"]);
}

/// One lane after a restart, until its devices have all reported again.
#[derive(Debug)]
struct Resync {
    /// The previous run's last sign of life.
    from: Timestamp,
    clean_stop: bool,
    /// The lane's state when resumed.
    resumed: &'static str,
    /// Devices of the lane not heard from yet; those not yet heard a loop/gate state from.
    unheard: BTreeSet<String>,
    no_state_yet: BTreeSet<String>,
    /// Loop/gate facts already reported since the start, by device: the first one of
    /// each is the device's view after the blind interval.
    reported: BTreeSet<(String, &'static str)>,
    /// When the last device was first heard from.
    seeing_since: Timestamp,
    recovered: u32,
    passages: u32,
    notes: Vec<String>,
}

crate::metrics::statics! {
    PASSAGES: IntCounterVec = ("parking_bridge_lane_passages_total", "Passages seen by the lane machines, by lane and case", ["lane", "case"]);
    STORE_FAILURES: IntCounter = ("parking_bridge_lane_store_failures_total", "Passages that could not be written to the state database after every retry");
    OCCUPANCY_UPDATES: IntCounter = ("parking_bridge_occupancy_source_updates_total", "Occupied counts set by the occupancy source (counter device or topic)");
    STALE_LATE_READS: IntCounterVec = ("parking_bridge_lane_late_reads_set_aside_total", "Late camera reads (stored by the camera, pushed later) older than the plate window on lanes with loops or a gate: journalled, not given to any vehicle", ["lane"]);
    TERMINAL_CHARGES: IntCounterVec = ("parking_bridge_pay_terminal_charges_total", "Charges shown by exit pay terminals, by lane", ["lane"]);
}

/// Where a lane's planned stay action is written, in one transaction: the state
/// database ([`Store::apply`]) unless the task is given another
/// ([`LaneRuntime::with_action_sink`]), e.g. one that also hands the passage to other
/// bridges of the same lot. Called on the blocking pool; a `StoreError::Sql` is retried.
pub trait ActionSink: Send + Sync + 'static {
    fn apply(
        &self,
        action: &StayAction,
        note: Option<&LaneNote>,
        now: Timestamp,
    ) -> Result<crate::store::Applied, StoreError>;
}

impl ActionSink for Store {
    fn apply(
        &self,
        action: &StayAction,
        note: Option<&LaneNote>,
        now: Timestamp,
    ) -> Result<crate::store::Applied, StoreError> {
        Store::apply(self, action, note, now)
    }
}

/// The lane task. Build it, then `run` it on the runtime.
pub struct LaneRuntime {
    /// The lot's decisions: lane machines, timers, charges, payments, counts, expiry.
    core: LaneCore,
    /// Placeholder plates of every lane: stays under them are placeholder stays.
    placeholders: Arc<HashSet<String>>,
    store: Arc<Store>,
    /// Where stay actions are written (the store unless told otherwise).
    sink: Arc<dyn ActionSink>,
    health: Health,
    journal: Option<Journal>,
    /// Ticked on every turn of the loop (at least once a minute, the expiry check),
    /// so a stuck lane task stops the systemd watchdog.
    liveness: Option<crate::health::Liveness>,
    /// The status page: passages are shown there with their snapshots.
    ops: Option<crate::ops::OpsState>,
    /// Devices of each lane (for knowing when a lane sees again after a restart).
    lane_devices: BTreeMap<String, BTreeSet<String>>,
    /// Passages applied before the restart that the rebuilt machines may produce again.
    already_applied: Applied,
    /// Lanes still catching up after a restart.
    resync: BTreeMap<String, Resync>,
    started: Timestamp,
    /// Per lane: reads without passages, vehicles without reads (see [`crate::lane::watch`]).
    watches: BTreeMap<String, LaneWatch>,
    /// Passages go here, unplanned, instead of the planner and the state database
    /// (a multi-PC lot's nodes: see [`PassageSink`]).
    passages: Option<Arc<dyn PassageSink>>,
}

impl LaneRuntime {
    pub fn new(site: &SiteConfig, store: Arc<Store>, health: Health) -> Self {
        LaneRuntime {
            core: LaneCore::new(site),
            placeholders: Arc::new(
                site.lanes
                    .iter()
                    .map(|l| l.placeholder_plate.clone())
                    .collect(),
            ),
            sink: store.clone(),
            store,
            health,
            journal: None,
            liveness: None,
            ops: None,
            lane_devices: site
                .lanes
                .iter()
                .map(|l| {
                    let devices = site
                        .devices
                        .iter()
                        .filter(|d| d.lane == l.id)
                        .map(|d| d.name.clone())
                        .collect();
                    (l.id.clone(), devices)
                })
                .collect(),
            already_applied: Applied::new(),
            resync: BTreeMap::new(),
            started: Timestamp::now(),
            watches: site
                .lanes
                .iter()
                .map(|l| {
                    let camera = crate::config::lanes::Senses::of(&l.id, &site.devices).camera;
                    (l.id.clone(), LaneWatch::new(l.mismatch_alarm_after, camera))
                })
                .collect(),
            passages: None,
        }
    }

    /// Hands passages to `sink` instead of planning and applying them here (a
    /// multi-PC lot: a lane node's queue, or the lot node's ingest).
    pub fn with_passage_sink(mut self, sink: Arc<dyn PassageSink>) -> Self {
        self.passages = Some(sink);
        self
    }

    /// Journals into `<storage.dir>/journal/` (a journal that cannot be opened is
    /// logged and skipped: it is a diagnostic aid, not a reason to stop counting cars).
    pub fn with_storage_journal(self, storage: &crate::config::StorageConfig) -> Self {
        match Journal::open_in_storage(storage) {
            Ok(journal) => self.with_journal(journal),
            Err(e) => {
                tracing::warn!(error = %e, "event journal unavailable; running without it");
                self
            }
        }
    }

    /// Writes stay actions through `sink` instead of straight to the store.
    pub fn with_action_sink(mut self, sink: Arc<dyn ActionSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Shows each passage, with its snapshot, on the status page.
    pub fn with_ops(mut self, ops: crate::ops::OpsState) -> Self {
        self.ops = Some(ops);
        self
    }

    /// Reports progress to the systemd watchdog on every turn of the loop.
    pub fn with_liveness(mut self, liveness: crate::health::Liveness) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// Journal every event (see [`super::journal`]).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Resumes the lanes from the journal, then runs until the event channel closes
    /// (every driver and feed gone: shutdown). Held passages are left to the next
    /// start's resume (a `stop` mark says the stop was clean); without a journal they
    /// are settled now so that none is lost.
    pub async fn run(mut self, mut events: mpsc::Receiver<RawEvent>) {
        self.resume(Timestamp::now()).await;
        // Gaps are closed within a second; otherwise only `alive` marks are due.
        let mut next_housekeeping = tokio::time::Instant::now();
        loop {
            if let Some(alive) = &self.liveness {
                alive.tick();
            }
            // The core's next timer or expiry check (the first one at once).
            let timer = self.core.poll_at();
            let sleep_for = timer.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(
                    u64::try_from(t.0.saturating_sub(Timestamp::now().0)).unwrap_or(0),
                )
            });
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(&event).await,
                    None => break,
                },
                _ = tokio::time::sleep(sleep_for), if timer.is_some() => {
                    // Events already queued happened before this moment: theirs first.
                    while let Ok(event) = events.try_recv() {
                        self.on_event(&event).await;
                    }
                    self.on_time(Timestamp::now()).await;
                }
                _ = tokio::time::sleep_until(next_housekeeping) => {
                    let every = if self.resync.is_empty() { ALIVE_EVERY_MS } else { 1_000 };
                    next_housekeeping = tokio::time::Instant::now() + Duration::from_millis(every as u64);
                    let now = Timestamp::now();
                    self.close_gaps(now);
                    if self.journal.as_ref().is_some_and(|j| j.alive_due(now, ALIVE_EVERY_MS)) {
                        self.mark(&Mark::Alive { at: now });
                    }
                }
            }
        }
        // Lanes still catching up after the start: their blind interval ends here.
        self.close_gaps(Timestamp(i64::MAX / 2));
        if self.journal.is_some() {
            // Held vehicles stay held: the next start resumes them from the journal and
            // reports them as if there had been no stop (a late read still attaches).
            self.mark(&Mark::Stop {
                at: Timestamp::now(),
            });
        } else {
            // No journal to resume from: report held vehicles now rather than lose them.
            let steps = self.core.finish();
            self.run_steps(steps, false).await;
        }
    }

    /// Runs what the core has due by `now` (wall clock), journalled as a `timers` mark
    /// so that replay runs it at the same point between the events.
    async fn on_time(&mut self, now: Timestamp) {
        let now = now.max(self.core.now());
        // Woken a little early (millisecond rounding): nothing to run, nothing to mark.
        if self.core.poll_at().is_some_and(|due| due > now) {
            return;
        }
        self.mark(&Mark::Timers { at: now });
        let steps = self.core.on_time(now);
        self.run_steps(steps, false).await;
    }

    /// Carries out the core's steps in order. `event_recovered`: passages the event
    /// completed on its own lane were (partly) in a restart's blind interval.
    async fn run_steps(&mut self, steps: Vec<Step>, event_recovered: bool) {
        for step in steps {
            match step {
                Step::Passage { passage, timer } => {
                    let recovered = if timer {
                        // Its deadline passed while the bridge was down: decided without
                        // what the blind interval may have brought (a late read).
                        self.resync.contains_key(&passage.lane) && passage.cleared_at < self.started
                    } else {
                        event_recovered
                    };
                    self.apply(passage, recovered).await;
                }
                Step::Occupied(n) => self.set_occupancy(n).await,
                Step::Expire(now) => self.expire(now).await,
                Step::Charge { lane, fee } => {
                    tracing::info!(lane = %lane, price = fee.price, paid = fee.paid_fee, "pay terminal charge");
                    TERMINAL_CHARGES.with_label_values(&[lane.as_str()]).inc();
                }
            }
        }
    }

    /// Rebuilds the lanes from the journal, applies what the previous run left
    /// unapplied, and starts following each lane's devices until they report again.
    async fn resume(&mut self, now: Timestamp) {
        self.started = now;
        let Some(journal) = &self.journal else { return };
        let dir = journal.dir().to_path_buf();
        let since = now.plus_millis(-crate::lane::resume::WINDOW_MS);
        let window = match tokio::task::spawn_blocking(move || {
            crate::lane::journal::read_window(&dir, since)
        })
        .await
        {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the event journal; the lanes start empty");
                self.mark(&Mark::Start {
                    at: now,
                    resumed: false,
                });
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "journal read task failed; the lanes start empty");
                return;
            }
        };
        let configs = self.core.lane_configs();
        let resumed = crate::lane::resume::rebuild(&configs, &window, since);
        drop(window);
        for (id, lane) in resumed.lanes {
            if self.core.knows_lane(&id) {
                if !lane.machine.is_idle() {
                    tracing::info!(lane = %id, state = lane.machine.state_name(), events = lane.events, "lane resumed from the journal");
                }
                self.core.restore_machine(&id, lane.machine);
            }
        }
        self.core.restore_charges(resumed.charges);
        for payment in &resumed.payments {
            self.core.restore_payment(payment);
        }
        self.already_applied = resumed.applied;
        if let Some(from) = resumed.last_life {
            for (id, machine) in self.core.machines() {
                let devices = self.lane_devices.get(id).cloned().unwrap_or_default();
                let mut notes = Vec::new();
                if resumed.bad_lines > 0 {
                    notes.push(format!("{} journal lines unreadable", resumed.bad_lines));
                }
                self.resync.insert(
                    id.clone(),
                    Resync {
                        from,
                        clean_stop: resumed.clean_stop,
                        resumed: machine.state_name(),
                        no_state_yet: devices.clone(),
                        unheard: devices,
                        reported: BTreeSet::new(),
                        seeing_since: now,
                        recovered: 0,
                        passages: 0,
                        notes,
                    },
                );
            }
            tracing::info!(
                blind_from = from.0,
                clean_stop = resumed.clean_stop,
                unapplied = resumed.candidates.len(),
                "lanes resumed from the journal"
            );
        }
        self.mark(&Mark::Start {
            at: now,
            resumed: resumed.resumed,
        });
        if resumed.resumed {
            // The lanes' devices were unseen since the last sign of life (as the
            // rebuild and `replay` do at this mark).
            self.core.restarted(now);
        }
        // A SIGKILL between a passage's commit and its `applied` mark (one write later)
        // leaves a stay that the journal does not know of: the database has the word.
        let candidates = if resumed.candidates.is_empty() {
            resumed.candidates
        } else {
            let store = self.store.clone();
            let recent = tokio::task::spawn_blocking(move || store.list_stays(false, 500))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            resumed
                .candidates
                .into_iter()
                .filter(|p| {
                    let stored = recent.iter().any(|s| {
                        (s.entry_lane == p.lane && s.entered_at == p.at)
                            || (s.exit_lane.as_deref() == Some(p.lane.as_str())
                                && s.exited_at == Some(p.at))
                    });
                    if stored {
                        tracing::info!(lane = %p.lane, at = p.at.0, "passage unmarked in the journal but already in the database; not applied again");
                    }
                    !stored
                })
                .collect()
        };
        for p in candidates {
            if self.core.knows_lane(&p.lane) {
                tracing::warn!(lane = %p.lane, at = p.at.0, "passage recovered from the journal: the previous run did not apply it");
                self.apply(p, true).await;
            }
        }
    }

    /// Closes the blind interval of every lane whose devices have all reported again
    /// (or that waited long enough), recording it.
    fn close_gaps(&mut self, now: Timestamp) {
        let since_start = now.0 - self.started.0;
        let done: Vec<String> = self
            .resync
            .iter()
            .filter(|(_, r)| {
                (r.unheard.is_empty()
                    && (r.no_state_yet.is_empty() || since_start >= RESYNC_SETTLE_MS))
                    || since_start >= RESYNC_LIMIT_MS
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(mut r) = self.resync.remove(&id) else {
                continue;
            };
            let idle_now = self.core.machine(&id).is_some_and(|m| m.is_idle());
            let mut unresolved = 0;
            if r.resumed != "idle" && r.passages == 0 && idle_now {
                unresolved += 1;
                r.notes.push(format!(
                    "the vehicle followed at the restart ({}) left without a passage: it turned away, or passed in the blind interval",
                    r.resumed
                ));
            }
            let to = if r.unheard.is_empty() {
                r.seeing_since
            } else {
                now
            };
            let gap = Gap {
                lane: id.clone(),
                from: r.from,
                to,
                clean_stop: r.clean_stop,
                resumed: r.resumed.to_string(),
                recovered: r.recovered,
                unresolved: r.notes,
                silent_devices: r.unheard.into_iter().collect(),
            };
            let seconds = (gap.to.0 - gap.from.0).max(0) as f64 / 1000.0;
            GAPS.with_label_values(&[id.as_str()]).inc();
            LAST_GAP.with_label_values(&[id.as_str()]).set(seconds);
            UNRESOLVED
                .with_label_values(&[id.as_str()])
                .inc_by(unresolved);
            tracing::warn!(
                lane = %id,
                blind_from = gap.from.0,
                blind_to = gap.to.0,
                blind_secs = seconds,
                clean_stop = gap.clean_stop,
                resumed = %gap.resumed,
                recovered = gap.recovered,
                unresolved = gap.unresolved.len(),
                silent = gap.silent_devices.len(),
                "restart gap"
            );
            if let Some(ops) = &self.ops {
                let mut text = format!(
                    "lane {id}: blind {seconds:.1} s across a {} (resumed {}, {} recovered)",
                    if gap.clean_stop { "restart" } else { "crash" },
                    gap.resumed,
                    gap.recovered
                );
                for note in &gap.unresolved {
                    text.push_str("; ");
                    text.push_str(note);
                }
                if !gap.silent_devices.is_empty() {
                    text.push_str(&format!("; silent: {}", gap.silent_devices.join(", ")));
                }
                ops.alarm(&text, now);
            }
            self.mark(&Mark::Gap(gap));
        }
    }

    /// Journals a mark (a failure is logged: the journal must not stop the lanes).
    fn mark(&mut self, mark: &Mark) {
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.mark(mark) {
                tracing::warn!(error = %e, "event journal mark failed");
            }
        }
    }

    async fn on_event(&mut self, event: &RawEvent) {
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.append(event) {
                tracing::warn!(error = %e, "event journal append failed");
            }
        }
        if let Some(r) = self.resync.get_mut(&event.lane) {
            if r.unheard.remove(&event.device) {
                r.seeing_since = r.seeing_since.max(event.at);
            }
        }
        match &event.kind {
            EventKind::Link { up } => {
                self.health.set(&event.device, &event.lane, *up, event.at);
                // The driver warned at the change; Health logs the return with its duration.
                tracing::debug!(lane = %event.lane, device = %event.device, up, "device link");
            }
            EventKind::Fault { problem } => {
                self.health
                    .set_fault(&event.device, &event.lane, problem.clone(), event.at);
            }
            EventKind::Spaces { counted, value } => {
                tracing::debug!(device = %event.device, value, counted = ?counted, "space count");
            }
            EventKind::Payment {
                plate_no,
                price,
                paid_fee,
                ..
            } => {
                tracing::info!(device = %event.device, plate = %crate::plate::mask(plate_no), price, paid_fee, "payment from the pay system");
                // A multi-PC lot's ingest prices other nodes' exits with it too.
                if let Some(sink) = &self.passages {
                    sink.payment(event);
                }
            }
            _ => {}
        }
        if !event.lane.is_empty() && !self.core.knows_lane(&event.lane) {
            tracing::warn!(lane = %event.lane, device = %event.device, "event for a lane not in the config");
            return;
        }
        let stale_before = self
            .core
            .machine(&event.lane)
            .map_or(0, |m| m.stale_late_reads());
        // After a restart, the first loop/gate state of each device is its view after
        // the blind interval: a passage it completes happened (partly) unseen.
        let recovered = match self.resync.get_mut(&event.lane) {
            Some(r) => {
                let fact = match &event.kind {
                    EventKind::Loop { which, .. } => Some(match which {
                        crate::event::LoopId::A => "loop_a",
                        crate::event::LoopId::B => "loop_b",
                    }),
                    EventKind::Gate { .. } => Some("gate"),
                    EventKind::Plate(_) => Some("plate"),
                    _ => None,
                };
                match fact {
                    Some(f) => {
                        r.no_state_yet.remove(&event.device);
                        r.reported.insert((event.device.clone(), f)) && f != "plate"
                    }
                    None => false,
                }
            }
            None => false,
        };
        let steps = self.core.handle(event);
        let stale = self
            .core
            .machine(&event.lane)
            .map_or(0, |m| m.stale_late_reads())
            .saturating_sub(stale_before);
        if stale > 0 {
            STALE_LATE_READS
                .with_label_values(&[event.lane.as_str()])
                .inc_by(stale);
        }
        if let Some(watch) = self.watches.get_mut(&event.lane) {
            let changes = watch.on_event(&event.kind);
            self.show_watch(&event.lane, changes);
        }
        self.run_steps(steps, recovered).await;
        self.close_gaps(Timestamp::now());
    }

    /// A lane warning raised or cleared: on the status page, `/healthz` and `/metrics`
    /// through the ops state (which logs it), or only logged without one.
    fn show_watch(&self, lane: &str, changes: Vec<Change>) {
        // A standing warning's count keeps growing: keep its text current (silently).
        if let (Some(ops), Some(watch)) = (&self.ops, self.watches.get(lane)) {
            for (m, n) in watch.warnings() {
                ops.set_lane_warning(lane, m.label(), Some(&m.text(n)));
            }
        }
        for c in changes {
            let text = c.raised.map(|n| c.mismatch.text(n));
            match &self.ops {
                Some(ops) => ops.set_lane_warning(lane, c.mismatch.label(), text.as_deref()),
                None => match &text {
                    Some(t) => {
                        tracing::warn!(lane, reason = c.mismatch.label(), warning = %t, "lane warning")
                    }
                    None => {
                        tracing::info!(lane, reason = c.mismatch.label(), "lane warning cleared")
                    }
                },
            }
        }
    }

    /// Plans and applies one passage, retrying the database a few times (each attempt
    /// is one transaction, so a retry never half-applies). The one place a lane's
    /// passage becomes a written stay action: the seam for anything else that must see
    /// each applied passage.
    ///
    /// A passage the previous run applied already (the rebuilt machines produce it
    /// again) is skipped; every other one leaves an `applied` mark in the journal once
    /// done with, so that the next start does not apply it again. `recovered`: it was
    /// recovered across a restart (logged, counted, shown on the gap).
    async fn apply(&mut self, passage: Passage, recovered: bool) {
        if !self.already_applied.is_empty()
            && crate::lane::resume::take_applied(&mut self.already_applied, &passage)
        {
            tracing::debug!(lane = %passage.lane, at = passage.at.0, "passage applied before the restart; not again");
            return;
        }
        if let Some(r) = self.resync.get_mut(&passage.lane) {
            r.passages += 1;
            r.recovered += u32::from(recovered);
        }
        if recovered {
            RECOVERED.with_label_values(&[passage.lane.as_str()]).inc();
        }
        self.apply_once(&passage, recovered).await;
        self.mark(&Mark::Applied {
            lane: passage.lane.clone(),
            cleared_at: passage.cleared_at,
            at: Timestamp::now(),
            recovered,
        });
    }

    /// Plans `passage` against the open stays as the database has them now.
    async fn plan(&mut self, passage: &Passage) -> StayAction {
        let (store, placeholders) = (self.store.clone(), self.placeholders.clone());
        let lane = &passage.lane;
        let open = match tokio::task::spawn_blocking(move || open_stays(&store, &placeholders))
            .await
        {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                tracing::warn!(lane = %lane, error = %e, "cannot read the open stays; planning against none");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(lane = %lane, error = %e, "open stays task failed; planning against none");
                Vec::new()
            }
        };
        self.core.plan(passage, &open)
    }

    /// Plans the passage once (the core consumes a terminal charge as it plans), then
    /// applies the action, retrying database errors only: each attempt is one
    /// transaction, so a failed one leaves nothing behind.
    async fn apply_once(&mut self, passage: &Passage, recovered: bool) {
        let lane = passage.lane.clone();
        PASSAGES
            .with_label_values(&[lane.as_str(), case_label(passage)])
            .inc();
        if let Some(watch) = self.watches.get_mut(&lane) {
            let changes = watch.on_passage(passage);
            self.show_watch(&lane, changes);
        }
        let route = match self.passages.clone() {
            // A multi-PC lot's node: the passage goes on unplanned, with the fees this
            // lane knows of (the lot node plans it against the lot's stays).
            Some(sink) => Route::Hand(sink, self.core.fees_for(passage)),
            None => Route::Plan(Arc::new(self.plan(passage).await)),
        };
        // A passage partly unseen (device gap): findable by the operator.
        let note = passage.inferred.then(|| LaneNote {
            at: passage.at,
            lane: lane.clone(),
            what: "inferred_passage",
            plate: passage.plate.as_ref().map(|x| x.text.clone()),
        });
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=STORE_ATTEMPTS {
            let (sink, route, note) = (self.sink.clone(), route.clone(), note.clone());
            let p = passage.clone();
            let result = tokio::task::spawn_blocking(move || match route {
                Route::Hand(to, fees) => Ok(to
                    .take(&p, Some(&fees))?
                    .map(|(a, plate)| (Arc::new(a), plate))),
                Route::Plan(action) => {
                    let applied = sink.apply(&action, note.as_ref(), Timestamp::now())?;
                    // The status page lists an exit under the stay's plate.
                    Ok::<_, StoreError>(Some((action, applied.closed.map(|(_, plate)| plate))))
                }
            })
            .await;
            match result {
                Ok(Ok(Some((action, stay_plate)))) => {
                    if let StayAction::TrailerFolded {
                        plate_no, tractor, ..
                    } = &*action
                    {
                        tracing::info!(lane = %passage.lane, plate = %crate::plate::mask(plate_no), tractor = %tractor.as_deref().map(crate::plate::mask).unwrap_or_default(), "trailer folded into its tractor's stay");
                    }
                    tracing::info!(lane = %passage.lane, action = action_label(&action), at = passage.at.0, recovered, late = passage.late, "passage applied");
                    self.show(&action, stay_plate.as_deref(), passage.inferred);
                    return;
                }
                Ok(Ok(None)) => {
                    tracing::info!(lane = %passage.lane, at = passage.at.0, recovered, late = passage.late, "passage queued for the lot node");
                    return;
                }
                // Only a database error may pass (busy, I/O); a refused value will be
                // refused again, and retrying would hold up the lane.
                Ok(Err(e)) if !matches!(e, StoreError::Sql(_)) => {
                    tracing::error!(lane = %passage.lane, error = %e, "passage refused by the state database");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lane = %passage.lane, attempt, error = %e, "cannot apply passage to the state database")
                }
                Err(e) => {
                    tracing::error!(lane = %passage.lane, attempt, error = %e, "passage task failed")
                }
            }
            if attempt < STORE_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 4).min(Duration::from_secs(3));
            }
        }
        STORE_FAILURES.inc();
        tracing::error!(
            lane = %passage.lane,
            at = passage.at.0,
            plate = %passage.plate.as_ref().map(|p| crate::plate::mask(&p.text)).unwrap_or_default(),
            "passage lost: not written to the state database"
        );
    }

    /// Puts the passage, with its snapshot, on the status page. The status feeder lists
    /// every stay from the store too (without images); the page keeps one of each.
    /// An inferred passage (device gap) is shown as such.
    fn show(&self, action: &StayAction, stay_plate: Option<&str>, inferred: bool) {
        let Some(ops) = &self.ops else { return };
        let (entry_case, exit_case) = if inferred {
            ("entry · inferred", "exit · inferred")
        } else {
            ("entry", "exit")
        };
        match action {
            StayAction::Open { entry }
            | StayAction::SupersedeThenOpen { entry, .. }
            | StayAction::CloseOrphanThenOpen { entry, .. } => {
                ops.record_passage(
                    &entry.details.lane,
                    Some(&entry.details.plate_no),
                    entry_case,
                    entry.details.entered_at,
                    entry.details.snapshot.clone(),
                );
            }
            StayAction::Close { exit, .. } => {
                let plate = stay_plate.or(exit.exit_plate.as_deref());
                ops.record_passage(
                    &exit.details.lane,
                    plate,
                    exit_case,
                    exit.details.away_time,
                    exit.details.snapshot.clone(),
                );
            }
            _ => {}
        }
    }

    /// Closes the stays open for longer than the lot allows (the core's expiry check).
    async fn expire(&self, now: Timestamp) {
        let (store, placeholders) = (self.store.clone(), self.placeholders.clone());
        let open =
            match tokio::task::spawn_blocking(move || open_stays(&store, &placeholders)).await {
                Ok(Ok(open)) => open,
                Ok(Err(e)) => return tracing::warn!(error = %e, "stay expiry failed"),
                Err(e) => return tracing::error!(error = %e, "stay expiry task failed"),
            };
        let old = self.core.expired(&open, now);
        if old.is_empty() {
            return;
        }
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            for no in &old {
                match store.close_stay_locally(no, LocalClose::Expired, now) {
                    // Closed meanwhile (an operator): nothing to expire.
                    Ok(()) | Err(StoreError::NotOpen(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, StoreError>(old.len())
        })
        .await;
        match result {
            Ok(Ok(n)) => tracing::info!(count = n, "stays expired"),
            Ok(Err(e)) => tracing::warn!(error = %e, "stay expiry failed"),
            Err(e) => tracing::error!(error = %e, "stay expiry task failed"),
        }
    }

    async fn set_occupancy(&self, n: i64) {
        let store = self.store.clone();
        let clamped = n.clamp(0, self.core.lot().total_spaces.max(0));
        match tokio::task::spawn_blocking(move || store.set_occupancy(clamped)).await {
            Ok(Ok(())) => {
                OCCUPANCY_UPDATES.inc();
                tracing::info!(occupied = clamped, "occupancy set by the occupancy source")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot set occupancy"),
            Err(e) => tracing::error!(error = %e, "occupancy task failed"),
        }
    }
}

/// Where the lane task's passages go instead of the local state database (a lane
/// node's cluster queue; the lot node's ingest, which holds unmatched exits for their
/// late entries). Blocking; called on the blocking pool. `Ok(Some(..))`: the action
/// decided and applied here (shown on the status page); `Ok(None)`: taken durably
/// for elsewhere.
pub trait PassageSink: Send + Sync {
    #[allow(clippy::type_complexity)]
    fn take(
        &self,
        passage: &Passage,
        fees: Option<&dyn FeeSource>,
    ) -> Result<Option<(StayAction, Option<String>)>, StoreError>;

    /// The pay system's payment for a plate (a `payment` event), for exits this sink
    /// plans that come from elsewhere. Most sinks plan nothing: ignored.
    fn payment(&self, _event: &RawEvent) {}
}

/// The route of one passage through [`LaneRuntime::apply_once`]: planned here and
/// written through the action sink, or handed on unplanned with its fees.
#[derive(Clone)]
enum Route {
    Plan(Arc<StayAction>),
    Hand(Arc<dyn PassageSink>, OwnedFees),
}

/// Applies an action planned for `p` elsewhere (the lot node's cluster ingest), in one
/// transaction with its inferred-passage note and where it came from; returns the
/// action and, for an exit, the stay's plate. Blocking.
pub fn apply_planned(
    store: &Store,
    action: &StayAction,
    p: &Passage,
    origin: Option<&crate::store::PassageOrigin>,
) -> Result<(StayAction, Option<String>), StoreError> {
    let note = p.inferred.then(|| LaneNote {
        at: p.at,
        lane: p.lane.clone(),
        what: "inferred_passage",
        plate: p.plate.as_ref().map(|x| x.text.clone()),
    });
    let applied = store.apply_recording(action, note.as_ref(), origin, Timestamp::now())?;
    Ok((action.clone(), applied.closed.map(|(_, plate)| plate)))
}

pub fn open_stays(
    store: &Store,
    placeholders: &HashSet<String>,
) -> Result<Vec<OpenStay>, StoreError> {
    Ok(store
        .open_stays()?
        .into_iter()
        .map(|s| OpenStay {
            placeholder: placeholders.contains(&s.plate_no),
            out_order_no: s.out_order_no,
            plate_no: s.plate_no,
            plate_color: s.plate_color,
            car_type: s.car_type,
            entered_at: s.entered_at,
        })
        .collect())
}

fn case_label(p: &Passage) -> &'static str {
    match p.case {
        crate::lane::machine::PassageCase::Normal => "normal",
        crate::lane::machine::PassageCase::Tailgate => "tailgate",
        crate::lane::machine::PassageCase::LatePlateAttached => "late_plate",
        crate::lane::machine::PassageCase::Unrecognised => "unrecognised",
    }
}

fn action_label(a: &StayAction) -> &'static str {
    match a {
        StayAction::Open { .. } => "open",
        StayAction::SupersedeThenOpen { .. } => "supersede_then_open",
        StayAction::CloseOrphanThenOpen { .. } => "close_orphan_then_open",
        StayAction::TrailerFolded { .. } => "trailer_with_tractor",
        StayAction::Close { .. } => "close",
        StayAction::UnmatchedExit { .. } => "unmatched_exit",
        StayAction::SyntheticStay { .. } => "synthetic_stay",
        StayAction::CountOnly { .. } => "count_only",
    }
}
