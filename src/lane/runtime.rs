//! The lane task: moves [`RawEvent`]s from the drivers into the lane machines, journals
//! them, runs the machines' timers, and applies each passage to the state database
//! through the stay planner (on the blocking pool: SQLite commits wait for the disk).
//! The store wakes the uploader itself after every commit that queues a report.
//! Device link events update [`Health`] for the heartbeat and status page.
//!
//! Time: an event is handled at its own `at` (so the service and `replay` agree);
//! timers run at the wall clock.

use super::fees::{FeeSource, TerminalCharge, TerminalThen};
use super::journal::Journal;
use super::machine::{LaneMachine, Passage};
use super::stays::{OpenStay, StayAction, decide, expired};
use super::watch::{Change, LaneWatch};
use crate::config::{LaneConfig, SiteConfig};
use crate::event::{EventKind, RawEvent};
use crate::health::Health;
use crate::store::{ExitDetails, LocalClose, NewStay, Store, StoreError};
use crate::time::Timestamp;
use prometheus::{IntCounter, IntCounterVec};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often open stays are checked for expiry.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);
/// Attempts at applying one passage before it is given up (logged as an error).
const STORE_ATTEMPTS: u32 = 5;

static PASSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_lane_passages_total",
        "Passages seen by the lane machines, by lane and case",
        &["lane", "case"],
    )
});

static STORE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "parking_bridge_lane_store_failures_total",
        "Passages that could not be written to the state database after every retry",
    )
});

static OCCUPANCY_UPDATES: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "parking_bridge_occupancy_source_updates_total",
        "Occupied counts set by the occupancy source (counter device or topic)",
    )
});

static TERMINAL_CHARGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::counter_vec(
        "parking_bridge_pay_terminal_charges_total",
        "Charges shown by exit pay terminals, by lane",
        &["lane"],
    )
});

/// The lane task. Build it, then `run` it on the runtime.
pub struct LaneRuntime {
    lot: crate::config::LotConfig,
    lanes: BTreeMap<String, (Arc<LaneConfig>, LaneMachine)>,
    /// Placeholder plates of every lane: stays under them are placeholder stays.
    placeholders: Arc<HashSet<String>>,
    store: Arc<Store>,
    health: Health,
    journal: Option<Journal>,
    fees: Option<Arc<dyn FeeSource>>,
    /// The last charge each exit lane's pay terminal showed.
    charges: BTreeMap<String, TerminalCharge>,
    /// Ticked on every turn of the loop (at least once a minute, the expiry check),
    /// so a stuck lane task stops the systemd watchdog.
    liveness: Option<crate::ops::Liveness>,
    /// The status page: passages are shown there with their snapshots.
    ops: Option<crate::ops::OpsState>,
    /// Per lane: reads without passages, vehicles without reads (see [`super::watch`]).
    watches: BTreeMap<String, LaneWatch>,
}

impl LaneRuntime {
    pub fn new(site: &SiteConfig, store: Arc<Store>, health: Health) -> Self {
        LaneRuntime {
            lot: site.lot.clone(),
            lanes: site
                .lanes
                .iter()
                .map(|l| (l.id.clone(), (Arc::new(l.clone()), LaneMachine::new(l))))
                .collect(),
            placeholders: Arc::new(
                site.lanes
                    .iter()
                    .map(|l| l.placeholder_plate.clone())
                    .collect(),
            ),
            store,
            health,
            journal: None,
            fees: None,
            charges: BTreeMap::new(),
            liveness: None,
            ops: None,
            watches: site
                .lanes
                .iter()
                .map(|l| {
                    let camera = crate::config::lanes::Senses::of(&l.id, &site.devices).camera;
                    (l.id.clone(), LaneWatch::new(l.mismatch_alarm_after, camera))
                })
                .collect(),
        }
    }

    /// The lane task of an assembled pipeline, journalling into
    /// `<storage.dir>/journal/` (a journal that cannot be opened is logged and skipped:
    /// it is a diagnostic aid, not a reason to stop counting cars). Spawn its `run`.
    pub fn for_pipeline(pipeline: &crate::service::Pipeline) -> Self {
        let runtime = LaneRuntime::new(
            &pipeline.config,
            pipeline.store.clone(),
            pipeline.health.clone(),
        );
        match Journal::open_in_storage(&pipeline.config.storage) {
            Ok(journal) => runtime.with_journal(journal),
            Err(e) => {
                tracing::warn!(error = %e, "event journal unavailable; running without it");
                runtime
            }
        }
    }

    /// Shows each passage, with its snapshot, on the status page.
    pub fn with_ops(mut self, ops: crate::ops::OpsState) -> Self {
        self.ops = Some(ops);
        self
    }

    /// Reports progress to the systemd watchdog on every turn of the loop.
    pub fn with_liveness(mut self, liveness: crate::ops::Liveness) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// Journal every event (see [`super::journal`]).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Take fees from the lot's pay system where it answers.
    pub fn with_fee_source(mut self, fees: Arc<dyn FeeSource>) -> Self {
        self.fees = Some(fees);
        self
    }

    /// Runs until the event channel closes (every driver gone: shutdown), then runs the
    /// timers still pending so that a held passage is not lost.
    ///
    /// `occupancy` is the optional occupancy-source hook (`lot.occupancy_source =
    /// "external"`): each value received sets the occupied count.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<RawEvent>,
        mut occupancy: Option<mpsc::Receiver<i64>>,
    ) {
        let mut next_expiry = tokio::time::Instant::now();
        loop {
            if let Some(alive) = &self.liveness {
                alive.tick();
            }
            let timer = self.next_timer();
            let sleep_for = timer.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(u64::try_from(t.0 - Timestamp::now().0).unwrap_or(0))
            });
            let expiry_due = tokio::time::sleep_until(next_expiry);
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        self.on_event(&event).await;
                        if events.is_empty() {
                            self.flush_journal();
                        }
                    }
                    None => break,
                },
                Some(n) = async { match occupancy.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    self.set_occupancy(n).await;
                }
                _ = tokio::time::sleep(sleep_for), if timer.is_some() => {
                    self.run_timers(Timestamp::now()).await;
                }
                _ = expiry_due => {
                    next_expiry = tokio::time::Instant::now() + EXPIRY_EVERY;
                    self.expire(Timestamp::now()).await;
                }
            }
        }
        self.flush_journal();
        // Shutdown: held vehicles are complete passages; report them now rather than lose them.
        self.run_timers(Timestamp(i64::MAX)).await;
    }

    fn next_timer(&self) -> Option<Timestamp> {
        self.lanes.values().filter_map(|(_, m)| m.poll_at()).min()
    }

    async fn on_event(&mut self, event: &RawEvent) {
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.append(event) {
                tracing::warn!(error = %e, "event journal append failed");
            }
        }
        match &event.kind {
            EventKind::Link { up } => {
                self.health.set(&event.device, &event.lane, *up, event.at);
                tracing::info!(lane = %event.lane, device = %event.device, up, "device link");
            }
            EventKind::Fault { problem } => {
                self.health
                    .set_fault(&event.device, &event.lane, problem.clone(), event.at);
            }
            EventKind::Spaces { counted, value } => {
                let occupied = counted.occupied(*value, self.lot.total_spaces);
                tracing::debug!(device = %event.device, value, occupied, "space counter");
                self.set_occupancy(occupied).await;
                return;
            }
            EventKind::PayTerminal { price, paid } => {
                tracing::info!(lane = %event.lane, device = %event.device, price, paid, "pay terminal charge");
                match TerminalCharge::new(event.at, *price, *paid) {
                    Some(c) => {
                        TERMINAL_CHARGES
                            .with_label_values(&[event.lane.as_str()])
                            .inc();
                        self.charges.insert(event.lane.clone(), c);
                    }
                    None => {
                        self.charges.remove(&event.lane);
                    }
                }
                return;
            }
            _ => {}
        }
        if event.lane.is_empty() {
            // A lot-wide device (space counter): only its link matters here.
            return;
        }
        let Some((cfg, machine)) = self.lanes.get_mut(&event.lane) else {
            tracing::warn!(lane = %event.lane, device = %event.device, "event for a lane not in the config");
            return;
        };
        let cfg = cfg.clone();
        let passages = machine.handle(event, event.at);
        if let Some(watch) = self.watches.get_mut(&event.lane) {
            let changes = watch.on_event(&event.kind);
            self.show_watch(&event.lane, changes);
        }
        for p in passages {
            self.apply(&cfg, p).await;
        }
    }

    async fn run_timers(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        for (cfg, machine) in self.lanes.values_mut() {
            if machine.poll_at().is_some_and(|t| t <= now) {
                for p in machine.on_timer(now) {
                    due.push((cfg.clone(), p));
                }
            }
        }
        for (cfg, p) in due {
            self.apply(&cfg, p).await;
        }
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

    fn flush_journal(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.flush() {
                tracing::warn!(error = %e, "event journal flush failed");
            }
        }
    }

    /// Plans and applies one passage, retrying the database a few times (each attempt
    /// is one transaction, so a retry never half-applies).
    async fn apply(&mut self, lane: &Arc<LaneConfig>, passage: Passage) {
        PASSAGES
            .with_label_values(&[lane.id.as_str(), case_label(&passage)])
            .inc();
        if let Some(watch) = self.watches.get_mut(&lane.id) {
            let changes = watch.on_passage(&passage);
            self.show_watch(&lane.id, changes);
        }
        // The exit lane's terminal charge first (it is forgotten once a vehicle left
        // after it was shown: it cannot be a later vehicle's), then the lot's source.
        let fees: Option<Arc<dyn FeeSource>> = match self.charges.get(&lane.id) {
            Some(&charge) => {
                if charge.at <= passage.at {
                    self.charges.remove(&lane.id);
                }
                Some(Arc::new(TerminalThen {
                    charge,
                    then: self.fees.clone(),
                }))
            }
            None => self.fees.clone(),
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=STORE_ATTEMPTS {
            let (store, lane, lot, fees, placeholders, p) = (
                self.store.clone(),
                lane.clone(),
                self.lot.clone(),
                fees.clone(),
                self.placeholders.clone(),
                passage.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                let open = open_stays(&store, &placeholders)?;
                let action = decide(&p, &lane, &lot, &open, fees.as_deref());
                apply_action(&store, &action, Timestamp::now())?;
                if p.inferred {
                    // A passage partly unseen (device gap): findable by the operator.
                    let plate = p.plate.as_ref().map(|x| x.text.as_str());
                    store.record_lane_note(p.at, Some(&p.lane), "inferred_passage", plate, None)?;
                }
                // The status page lists an exit under the stay's plate.
                let stay_plate = match &action {
                    StayAction::Close { out_order_no, .. } => {
                        store.stay(out_order_no)?.map(|s| s.plate_no)
                    }
                    _ => None,
                };
                Ok::<_, StoreError>((action, stay_plate))
            })
            .await;
            match result {
                Ok(Ok((action, stay_plate))) => {
                    tracing::info!(lane = %passage.lane, action = action_label(&action), at = passage.at.0, "passage applied");
                    self.show(&action, stay_plate.as_deref(), passage.inferred);
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
                    &entry.lane,
                    Some(&entry.plate_no),
                    entry_case,
                    entry.entered_at,
                    entry.snapshot.clone(),
                );
            }
            StayAction::Close { exit, .. } => {
                let plate = stay_plate.or(exit.exit_plate.as_deref());
                ops.record_passage(
                    &exit.lane,
                    plate,
                    exit_case,
                    exit.away_time,
                    exit.snapshot.clone(),
                );
            }
            _ => {}
        }
    }

    async fn expire(&self, now: Timestamp) {
        let (store, lot, placeholders) = (
            self.store.clone(),
            self.lot.clone(),
            self.placeholders.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let open = open_stays(&store, &placeholders)?;
            let old = expired(&open, &lot, now);
            for no in &old {
                store.close_stay_locally(no, LocalClose::Expired, now)?;
            }
            Ok::<_, StoreError>(old.len())
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(count = n, "stays expired"),
            Ok(Err(e)) => tracing::warn!(error = %e, "stay expiry failed"),
            Err(e) => tracing::error!(error = %e, "stay expiry task failed"),
        }
    }

    async fn set_occupancy(&self, n: i64) {
        let store = self.store.clone();
        let clamped = n.clamp(0, self.lot.total_spaces.max(0));
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

fn open_stays(store: &Store, placeholders: &HashSet<String>) -> Result<Vec<OpenStay>, StoreError> {
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

fn new_stay(e: &super::stays::NewEntry) -> NewStay {
    NewStay {
        plate_no: e.plate_no.clone(),
        plate_color: e.plate_color,
        car_type: e.car_type,
        lane: e.lane.clone(),
        port_no: e.port_no.clone(),
        entered_at: e.entered_at,
        operator: e.operator.clone(),
        snapshot: e.snapshot.as_ref().map(|s| s.as_ref().clone()),
        price: None,
        should_pay: None,
    }
}

fn exit_details(x: &super::stays::ExitPlan) -> ExitDetails {
    ExitDetails {
        lane: x.lane.clone(),
        port_no: x.port_no.clone(),
        away_time: x.away_time,
        price: x.fee.price,
        should_pay: x.fee.should_pay,
        paid_fee: x.fee.paid_fee,
        operator: x.operator.clone(),
        snapshot: x.snapshot.as_ref().map(|s| s.as_ref().clone()),
    }
}

/// Applies a planned action to the state database. Blocking.
pub fn apply_action(store: &Store, action: &StayAction, now: Timestamp) -> Result<(), StoreError> {
    match action {
        StayAction::Open { entry } => {
            store.open_stay(new_stay(entry), now)?;
        }
        StayAction::SupersedeThenOpen { superseded, entry } => {
            match store.close_stay_locally(superseded, LocalClose::Superseded, now) {
                // Already closed by an earlier attempt of this same action: carry on.
                Ok(()) | Err(StoreError::NotOpen(_)) => {}
                Err(e) => return Err(e),
            }
            store.open_stay(new_stay(entry), now)?;
        }
        StayAction::CloseOrphanThenOpen {
            orphaned,
            exit,
            entry,
        } => {
            match store.close_stay(orphaned, exit_details(exit), now) {
                Ok(_) => store.record_lane_note(
                    exit.away_time,
                    Some(&exit.lane),
                    "orphaned_exit",
                    Some(&entry.plate_no),
                    Some(orphaned),
                )?,
                // Already closed by an earlier attempt of this same action: carry on.
                Err(StoreError::NotOpen(_)) => {}
                Err(e) => return Err(e),
            }
            store.open_stay(new_stay(entry), now)?;
        }
        StayAction::TrailerFolded {
            lane,
            plate_no,
            tractor,
            at,
            ..
        } => {
            tracing::info!(lane = %lane, plate = %crate::plate::mask(plate_no), tractor = %tractor.as_deref().map(crate::plate::mask).unwrap_or_default(), "trailer folded into its tractor's stay");
            store.record_lane_note(
                *at,
                Some(lane),
                "trailer_with_tractor",
                Some(plate_no),
                None,
            )?;
        }
        StayAction::Close { out_order_no, exit } => {
            store.close_stay(out_order_no, exit_details(exit), now)?;
        }
        StayAction::UnmatchedExit { lane, plate_no, at } => {
            store.record_unmatched_exit(plate_no.as_deref(), lane, *at)?;
            // A real vehicle left: its space is free, whatever stay it had.
            store.record_count_only(crate::config::Direction::Exit, lane, *at)?;
        }
        StayAction::SyntheticStay { entry, exit } => {
            let opened = store.open_stay(new_stay(entry), now)?;
            store.close_stay(&opened.out_order_no, exit_details(exit), now)?;
        }
        StayAction::CountOnly {
            lane,
            direction,
            at,
        } => {
            store.record_count_only(*direction, lane, *at)?;
        }
    }
    Ok(())
}

fn case_label(p: &Passage) -> &'static str {
    match p.case {
        super::machine::PassageCase::Normal => "normal",
        super::machine::PassageCase::Tailgate => "tailgate",
        super::machine::PassageCase::LatePlateAttached => "late_plate",
        super::machine::PassageCase::Unrecognised => "unrecognised",
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
