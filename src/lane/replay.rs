//! `parking-bridge replay --config F --events FILE.jsonl`: runs the lane machines and
//! the stay planner offline over a journal (or a hand-written scenario) and prints the
//! outcome as JSON lines, so a disputed passage can be explained after the fact.
//!
//! The same [`LaneCore`] as the service's lane task decides, over the in-memory lot
//! ([`MemoryLot`]) instead of the state database: space counts, pay-terminal charges,
//! the pay system's payments and stay expiry included, so a journal replays to what
//! the service reported.
//!
//! Deterministic: events are taken in file order; before each event every lane's timers
//! due by its time run, earliest first (ties by lane id); after the last event every
//! remaining timer runs. Time never goes backwards (`now = max(now, event.at)`). A
//! journal's `timers` marks run the timers where the service ran them; its other marks
//! (`{"mark":…}`) are skipped, as are blank lines and lines starting with `#`, so
//! scenarios can carry comments.

use super::core::{LaneCore, Step};
use super::journal::{Line, Mark};
use super::model::{MemoryLot, Outcome};
use crate::config::SiteConfig;
use crate::event::RawEvent;
use crate::time::{Timestamp, china_standard_time, parse_offset};
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

/// The lot's decision logic ([`LaneCore`]) over the in-memory lot, driven by events
/// and time only.
pub struct Replay {
    core: LaneCore,
    lot: MemoryLot,
    with_passages: bool,
    /// The core's steps for one event (reused: one allocation for the whole replay).
    steps: Vec<Step>,
}

impl Replay {
    pub fn new(config: &SiteConfig, with_passages: bool) -> Self {
        let offset = parse_offset(&config.platform.utc_offset).unwrap_or_else(china_standard_time);
        Replay {
            core: LaneCore::new(config),
            lot: MemoryLot::new(&config.lot, offset),
            with_passages,
            steps: Vec::new(),
        }
    }

    pub fn lot(&self) -> &MemoryLot {
        &self.lot
    }

    pub fn knows_lane(&self, lane: &str) -> bool {
        self.core.knows_lane(lane)
    }

    /// Feeds one event; outcomes are appended to `out`.
    pub fn feed(&mut self, event: &RawEvent, out: &mut Vec<Outcome>) {
        let mut steps = std::mem::take(&mut self.steps);
        self.core.handle_into(event, &mut steps);
        self.apply(steps.drain(..), out);
        self.steps = steps;
    }

    /// Runs what was due by `at` where the service ran it (a journal's `timers` mark).
    pub fn timers(&mut self, at: Timestamp, out: &mut Vec<Outcome>) {
        let steps = self.core.on_time(at);
        self.apply(steps.into_iter(), out);
    }

    /// Runs every timer left (end of input).
    pub fn finish(&mut self, out: &mut Vec<Outcome>) {
        let steps = self.core.finish();
        self.apply(steps.into_iter(), out);
    }

    fn apply(&mut self, steps: impl Iterator<Item = Step>, out: &mut Vec<Outcome>) {
        for step in steps {
            match step {
                Step::Passage { passage, .. } => {
                    let action = self.core.plan(&passage, self.lot.open_stays());
                    if self.with_passages {
                        out.push(Outcome::Passage(passage));
                    }
                    self.lot.apply(action, out);
                }
                Step::Occupied(n) => self.lot.set_occupied(n),
                Step::Expire(now) => self.lot.expire(now, out),
                Step::Charge { .. } => {}
            }
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
        // Marks are the lane task's notes in a journal (applied, start, gap…), not
        // events; only its timer runs matter to the decisions.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let event = match Line::parse(trimmed) {
            Ok(Line::Event(event)) => event,
            Ok(Line::Mark(Mark::Timers { at })) => {
                replay.timers(at, &mut out);
                for o in out.drain(..) {
                    writeln!(output, "{}", o.to_json())?;
                }
                continue;
            }
            // A start that resumed the lanes: their devices were unseen meanwhile.
            Ok(Line::Mark(Mark::Start { resumed: true, at })) => {
                replay.core.restarted(at);
                continue;
            }
            Ok(Line::Mark(_)) => continue,
            Err(source) => {
                return Err(ReplayError::BadLine {
                    line: i + 1,
                    source,
                });
            }
        };
        // Lot-wide facts (space counts, payments) have no lane.
        if !event.lane.is_empty() && !replay.knows_lane(&event.lane) {
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
