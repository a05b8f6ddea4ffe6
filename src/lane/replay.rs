//! `parking-bridge replay --config F --events FILE.jsonl`: runs the lane machines and
//! the stay planner offline over a journal (or a hand-written scenario) and prints the
//! outcome as JSON lines, so a disputed passage can be explained after the fact.
//!
//! Deterministic: events are taken in file order; before each event every lane's timers
//! due by its time run, earliest first (ties by lane id); after the last event every
//! remaining timer runs. Time never goes backwards (`now = max(now, event.at)`).
//! Blank lines and lines starting with `#` are skipped, so scenarios can carry comments;
//! so are a journal's marks (`{"mark":…}`).

use super::machine::LaneMachine;
use super::model::{MemoryLot, Outcome};
use super::stays::decide;
use crate::config::{LaneConfig, SiteConfig};
use crate::event::RawEvent;
use crate::time::{Timestamp, china_standard_time, parse_offset};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: not a raw event: {source}")]
    BadLine {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: no lane {lane:?} in the config")]
    UnknownLane { line: usize, lane: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// How often stay expiry is checked, in event time.
const EXPIRY_CHECK_MS: i64 = 60_000;

/// The lane logic of a whole site, driven by events and time only.
pub struct Replay {
    lanes: BTreeMap<String, (LaneConfig, LaneMachine)>,
    lot_config: crate::config::LotConfig,
    lot: MemoryLot,
    now: Timestamp,
    last_expiry_check: Option<Timestamp>,
    with_passages: bool,
}

impl Replay {
    pub fn new(config: &SiteConfig, with_passages: bool) -> Self {
        let offset = parse_offset(&config.platform.utc_offset).unwrap_or_else(china_standard_time);
        let lanes = config
            .lanes
            .iter()
            .map(|l| (l.id.clone(), (l.clone(), LaneMachine::new(l))))
            .collect();
        Replay {
            lanes,
            lot_config: config.lot.clone(),
            lot: MemoryLot::new(&config.lot, offset),
            now: Timestamp(i64::MIN),
            last_expiry_check: None,
            with_passages,
        }
    }

    pub fn lot(&self) -> &MemoryLot {
        &self.lot
    }

    pub fn knows_lane(&self, lane: &str) -> bool {
        self.lanes.contains_key(lane)
    }

    /// Feeds one event; outcomes are appended to `out`. Events for unknown lanes are
    /// ignored (callers check [`Replay::knows_lane`] to report them).
    pub fn feed(&mut self, event: &RawEvent, out: &mut Vec<Outcome>) {
        self.now = self.now.max(event.at);
        self.run_timers(self.now, out);
        self.maybe_expire(out);
        let now = self.now;
        let Some((_, machine)) = self.lanes.get_mut(&event.lane) else {
            return;
        };
        let passages = machine.handle(event, now);
        if !passages.is_empty() {
            self.plan(&event.lane, passages, out);
        }
    }

    /// Runs every timer left (end of input).
    pub fn finish(&mut self, out: &mut Vec<Outcome>) {
        self.run_timers(Timestamp(i64::MAX), out);
    }

    fn run_timers(&mut self, until: Timestamp, out: &mut Vec<Outcome>) {
        loop {
            let due = self
                .lanes
                .iter()
                .filter_map(|(id, (_, m))| m.poll_at().map(|t| (t, id)))
                .filter(|(t, _)| *t <= until)
                .min();
            let Some((t, lane)) = due.map(|(t, id)| (t, id.clone())) else {
                return;
            };
            let Some((_, machine)) = self.lanes.get_mut(&lane) else {
                return;
            };
            let passages = machine.on_timer(t);
            self.plan(&lane, passages, out);
        }
    }

    fn maybe_expire(&mut self, out: &mut Vec<Outcome>) {
        if self
            .last_expiry_check
            .is_none_or(|t| self.now.0 - t.0 >= EXPIRY_CHECK_MS)
        {
            self.last_expiry_check = Some(self.now);
            self.lot.expire(self.now, out);
        }
    }

    fn plan(&mut self, lane: &str, passages: Vec<super::machine::Passage>, out: &mut Vec<Outcome>) {
        let Some((cfg, _)) = self.lanes.get(lane) else {
            return;
        };
        for p in passages {
            let action = decide(&p, cfg, &self.lot_config, self.lot.open_stays(), None);
            if self.with_passages {
                out.push(Outcome::Passage(p));
            }
            self.lot.apply(action, out);
        }
    }
}

/// Replays `events` (JSON lines) and writes the outcome lines to `output`. Returns the
/// number of events read.
pub fn run(
    config: &SiteConfig,
    events: impl BufRead,
    mut output: impl Write,
    with_passages: bool,
) -> Result<usize, ReplayError> {
    let mut replay = Replay::new(config, with_passages);
    let mut out = Vec::new();
    let mut count = 0;
    for (i, line) in events.lines().enumerate() {
        let line = line?;
        let trimmed = line.trim();
        // Marks are the lane task's notes in a journal (applied, start, gap…), not events.
        if trimmed.is_empty() || trimmed.starts_with('#') || super::journal::is_mark(trimmed) {
            continue;
        }
        let event: RawEvent =
            serde_json::from_str(trimmed).map_err(|source| ReplayError::BadLine {
                line: i + 1,
                source,
            })?;
        if event.lane.is_empty() {
            // A lot-wide device's fact (space counter): no lane logic to replay.
            continue;
        }
        if !replay.knows_lane(&event.lane) {
            return Err(ReplayError::UnknownLane {
                line: i + 1,
                lane: event.lane,
            });
        }
        replay.feed(&event, &mut out);
        count += 1;
        for o in out.drain(..) {
            writeln!(output, "{}", o.to_json())?;
        }
    }
    replay.finish(&mut out);
    for o in out.drain(..) {
        writeln!(output, "{}", o.to_json())?;
    }
    output.flush()?;
    Ok(count)
}
