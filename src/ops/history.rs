//! What the status page draws: the last day of occupancy and passages, the last hour
//! of device link changes. Pure and bounded: every call takes its time, and old
//! samples are dropped as new ones arrive, so a bridge running for months holds at
//! most a day of figures.

use std::collections::{BTreeMap, VecDeque};

use crate::time::Timestamp;

/// How far back occupancy and passages are kept.
pub const DAY_MS: i64 = 24 * 3_600_000;
/// How far back link changes are kept.
pub const HOUR_MS: i64 = 3_600_000;
/// Passages kept per lane (a busy lane makes ~3 000 a day; memory stays ~ 80 KB).
pub const PASSAGES_KEPT: usize = 10_000;
/// Occupancy samples are coalesced per minute: at most 1 440 a day.
const OCCUPANCY_STEP_MS: i64 = 60_000;
/// Link changes kept per device (a flapping device must not grow memory).
const LINK_CHANGES_KEPT: usize = 512;

/// One device's link at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkChange {
    pub at: Timestamp,
    pub up: bool,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    /// (minute start, occupied at the end of that minute), oldest first.
    occupancy: VecDeque<(Timestamp, i64)>,
    passages: BTreeMap<String, VecDeque<Timestamp>>,
    links: BTreeMap<String, VecDeque<LinkChange>>,
}

impl History {
    /// The lot's occupancy at `at`. Repeats within a minute keep the last value.
    pub fn record_occupancy(&mut self, at: Timestamp, occupied: i64) {
        let minute = Timestamp(at.0 - at.0.rem_euclid(OCCUPANCY_STEP_MS));
        match self.occupancy.back_mut() {
            Some((m, v)) if *m == minute => *v = occupied,
            Some((_, v)) if *v == occupied => {}
            _ => self.occupancy.push_back((minute, occupied)),
        }
        // Keep one sample older than the window: it is the value at the window's start.
        while self.occupancy.len() > 2 && self.occupancy[1].0.0 <= at.0 - DAY_MS {
            self.occupancy.pop_front();
        }
    }

    /// A passage on `lane` at `at` (the same passage must be recorded once).
    pub fn record_passage(&mut self, lane: &str, at: Timestamp) {
        let list = self.passages.entry(lane.to_string()).or_default();
        // Passages arrive nearly in order; keep the list sorted anyway.
        let pos = list.iter().rposition(|t| *t <= at).map_or(0, |p| p + 1);
        list.insert(pos, at);
        let newest = list.back().copied().unwrap_or(at);
        while list.len() > PASSAGES_KEPT || list.front().is_some_and(|t| t.0 <= newest.0 - DAY_MS) {
            list.pop_front();
        }
    }

    /// A device's link state at `at` (repeats are ignored).
    pub fn record_link(&mut self, device: &str, up: bool, at: Timestamp) {
        let list = self.links.entry(device.to_string()).or_default();
        if list.back().is_some_and(|c| c.up == up) {
            return;
        }
        list.push_back(LinkChange { at, up });
        while list.len() > LINK_CHANGES_KEPT || (list.len() > 1 && list[1].at.0 <= at.0 - HOUR_MS) {
            list.pop_front();
        }
    }

    /// Occupancy samples covering `(now - 24 h, now]`, oldest first; the first may be
    /// older (the value at the start of the window).
    pub fn occupancy(&self) -> Vec<(Timestamp, i64)> {
        self.occupancy.iter().copied().collect()
    }

    /// Passage times per lane, oldest first.
    pub fn passages(&self) -> BTreeMap<String, Vec<Timestamp>> {
        self.passages
            .iter()
            .map(|(lane, list)| (lane.clone(), list.iter().copied().collect()))
            .collect()
    }

    /// Link changes per device, oldest first; the first may predate the last hour.
    pub fn links(&self) -> BTreeMap<String, Vec<LinkChange>> {
        self.links
            .iter()
            .map(|(d, list)| (d.clone(), list.iter().copied().collect()))
            .collect()
    }
}

/// Passages per lot-local hour for the 24 hours ending with the hour of `now`
/// (index 23 is the current, partial hour), and the start of each hour.
pub fn per_hour(
    times: &[Timestamp],
    now: Timestamp,
    offset: chrono::FixedOffset,
) -> [(Timestamp, u32); 24] {
    let off = i64::from(offset.local_minus_utc()) * 1000;
    let this_hour = (now.0 + off).div_euclid(HOUR_MS) * HOUR_MS - off;
    let first = this_hour - 23 * HOUR_MS;
    let mut out = [(Timestamp(0), 0u32); 24];
    for (i, slot) in out.iter_mut().enumerate() {
        slot.0 = Timestamp(first + i as i64 * HOUR_MS);
    }
    for t in times {
        if t.0 < first || t.0 > now.0 {
            continue;
        }
        let i = usize::try_from((t.0 - first) / HOUR_MS)
            .unwrap_or(0)
            .min(23);
        out[i].1 += 1;
    }
    out
}

/// Passages in `(now - 1 h, now]`.
pub fn last_hour(times: &[Timestamp], now: Timestamp) -> usize {
    times
        .iter()
        .filter(|t| t.0 > now.0 - HOUR_MS && t.0 <= now.0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::T0;

    #[test]
    fn occupancy_keeps_a_day_one_sample_a_minute() {
        let mut h = History::default();
        for i in 0..(3 * 24 * 60) {
            // Three days, a change every 20 s.
            for s in 0..3 {
                h.record_occupancy(T0.plus_millis(i * 60_000 + s * 20_000), i % 50 + s);
            }
        }
        let samples = h.occupancy();
        assert!(samples.len() <= 24 * 60 + 1, "{}", samples.len());
        let last = *samples.last().unwrap();
        assert_eq!(
            last.1,
            (3 * 24 * 60 - 1) % 50 + 2,
            "last write of the minute"
        );
        let now = T0.plus_millis(3 * 24 * 60 * 60_000);
        assert!(samples[0].0.0 <= now.0 - DAY_MS, "covers the whole window");
        assert!(samples[1].0.0 > now.0 - DAY_MS - 60_000);
    }

    #[test]
    fn unchanged_occupancy_adds_no_sample() {
        let mut h = History::default();
        for i in 0..1000 {
            h.record_occupancy(T0.plus_millis(i * 60_000), 7);
        }
        assert_eq!(h.occupancy().len(), 1);
    }

    #[test]
    fn passages_are_bucketed_by_local_hour() {
        let mut h = History::default();
        let offset = crate::time::china_standard_time();
        // T0 = 2023-11-14 22:13:20 UTC = 06:13:20 local.
        let now = T0;
        for m in [1, 2, 3] {
            h.record_passage("entry-1", now.plus_millis(-m * 60_000));
        }
        h.record_passage("entry-1", now.plus_millis(-30 * 60_000));
        h.record_passage("entry-1", now.plus_millis(-25 * HOUR_MS));
        let times = &h.passages()["entry-1"];
        let buckets = per_hour(times, now, offset);
        assert_eq!(buckets[23].1, 3, "06:00-06:13");
        assert_eq!(buckets[22].1, 1, "05:43 falls in 05:00-06:00");
        assert_eq!(
            buckets.iter().map(|b| b.1).sum::<u32>(),
            4,
            "25 h ago is out"
        );
        let start = buckets[23].0.to_local(offset);
        assert_eq!(start.format("%H:%M").to_string(), "06:00");
        assert_eq!(last_hour(times, now), 4);
    }

    #[test]
    fn link_changes_keep_the_last_hour_and_the_state_before_it() {
        let mut h = History::default();
        h.record_link("cam-1", true, T0);
        h.record_link("cam-1", true, T0.plus_millis(10));
        h.record_link("cam-1", false, T0.plus_millis(60_000));
        h.record_link("cam-1", true, T0.plus_millis(2 * HOUR_MS));
        h.record_link("cam-1", false, T0.plus_millis(2 * HOUR_MS + 5_000));
        let links = &h.links()["cam-1"];
        assert_eq!(
            links.iter().map(|c| c.up).collect::<Vec<_>>(),
            vec![false, true, false],
            "the state before the hour, then the hour's changes: {links:?}"
        );
        for i in 0..2000 {
            h.record_link("flappy", i % 2 == 0, T0.plus_millis(i));
        }
        assert!(h.links()["flappy"].len() <= LINK_CHANGES_KEPT);
    }
}
