//! Inline SVG charts for the status page, rendered on the server: the PC may be
//! offline, so nothing comes from a CDN and no script draws anything.
//!
//! Every chart carries its figures as `data-*` attributes (and `<title>` tooltips), so
//! a test, or a curious operator's browser console, reads the same numbers the
//! picture shows. Pure: the data and `now` come in, a string goes out.

use super::history::{self, HOUR_MS, LinkChange};
use super::i18n::Lang;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Drawing width in SVG units; the page scales it to the screen.
const W: f64 = 720.0;
/// Colours per lane, in order; they repeat after eight lanes.
const LANE_COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
];

fn esc(text: &str) -> String {
    super::http::esc(text)
}

fn hhmm(t: Timestamp, offset: chrono::FixedOffset) -> String {
    t.to_local(offset).format("%H:%M").to_string()
}

/// Occupancy over the 24 h ending at `now`, as a step line under the lot's capacity.
/// `samples` are (time, occupied), oldest first, the first possibly before the window.
pub fn occupancy(
    samples: &[(Timestamp, i64)],
    total: i64,
    now: Timestamp,
    offset: chrono::FixedOffset,
    lang: Lang,
) -> String {
    let h = 140.0;
    let (top, bottom, left) = (10.0, 120.0, 40.0);
    let start = now.0 - history::DAY_MS;
    let x =
        |t: i64| left + (W - left - 5.0) * ((t.max(start) - start) as f64 / history::DAY_MS as f64);
    let max = samples
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0)
        .max(total)
        .max(1);
    let y = |v: i64| bottom - (bottom - top) * (v.clamp(0, max) as f64 / max as f64);
    let last = samples.last().map(|s| s.1);
    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        r#"<svg id="chart-occupancy" class="chart" viewBox="0 0 {W} {h}" role="img" data-total="{total}" data-last="{last}" data-samples="{n}"><title>{title}</title>"#,
        last = last.map(|v| v.to_string()).unwrap_or_default(),
        n = samples.len(),
        title = esc(lang.tr("Occupancy, last 24 h")),
    );
    // Axes: capacity line, zero line, hour marks every 6 h.
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{W}" y1="{ty:.1}" y2="{ty:.1}" stroke="#b00020" stroke-dasharray="4 3"/><text x="2" y="{tyt:.1}" class="axis">{total}</text><line x1="{left}" x2="{W}" y1="{bottom}" y2="{bottom}" stroke="#999"/><text x="2" y="{bottom}" class="axis">0</text>"##,
        ty = y(total),
        tyt = y(total) + 4.0,
    );
    for i in 0..=4 {
        let t = start + i * 6 * HOUR_MS;
        let label = if i == 4 {
            lang.tr("now").to_string()
        } else {
            hhmm(Timestamp(t), offset)
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
            x(t).min(W - 15.0),
            h - 4.0,
            esc(&label)
        );
    }
    if samples.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="axis">{}</text></svg>"#,
            W / 2.0,
            h / 2.0,
            esc(lang.tr("no data yet"))
        );
        return s;
    }
    let mut points = String::new();
    let mut previous: Option<f64> = None;
    for &(t, v) in samples {
        let (px, py) = (x(t.0), y(v));
        if let Some(prev_y) = previous {
            let _ = write!(points, "{px:.1},{prev_y:.1} ");
        }
        let _ = write!(points, "{px:.1},{py:.1} ");
        previous = Some(py);
    }
    if let Some(py) = previous {
        let _ = write!(points, "{:.1},{py:.1}", x(now.0));
    }
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>"##
    );
    // Markers with tooltips for the last hour's samples (a day of them would make the
    // page, refreshed every 5 s, several hundred KB); the line carries the rest.
    for &(t, v) in samples.iter().filter(|(t, _)| t.0 > now.0 - HOUR_MS) {
        let _ = write!(
            s,
            r#"<circle class="sample" cx="{:.1}" cy="{:.1}" r="2" data-at="{}" data-occupied="{v}"><title>{} {v}</title></circle>"#,
            x(t.0),
            y(v),
            t.0,
            hhmm(t, offset)
        );
    }
    s.push_str("</svg>");
    s
}

/// Passages per lot-local hour and lane, the 24 hours ending with the current one, as
/// grouped bars. Each bar carries `data-lane`, `data-hour` (start, ms) and
/// `data-count`; each lane's legend carries `data-last-hour` (passages in the last 60
/// minutes).
pub fn passages_per_hour(
    lanes: &[(String, Vec<Timestamp>)],
    now: Timestamp,
    offset: chrono::FixedOffset,
    lang: Lang,
) -> String {
    let h = 160.0;
    let (top, bottom, left) = (10.0, 120.0, 30.0);
    let per_lane: Vec<[(Timestamp, u32); 24]> = lanes
        .iter()
        .map(|(_, times)| history::per_hour(times, now, offset))
        .collect();
    let max = per_lane
        .iter()
        .flat_map(|b| b.iter().map(|x| x.1))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (W - left) / 24.0;
    let bar = (slot - 2.0) / lanes.len().max(1) as f64;
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r##"<svg id="chart-passages" class="chart" viewBox="0 0 {W} {h}" role="img" data-max="{max}"><title>{}</title><line x1="{left}" x2="{W}" y1="{bottom}" y2="{bottom}" stroke="#999"/><text x="2" y="{}" class="axis">{max}</text><text x="2" y="{bottom}" class="axis">0</text>"##,
        esc(lang.tr("Passages per hour, last 24 h")),
        top + 4.0,
    );
    for (li, ((lane, _), buckets)) in lanes.iter().zip(&per_lane).enumerate() {
        let colour = LANE_COLOURS[li % LANE_COLOURS.len()];
        for (i, (start, count)) in buckets.iter().enumerate() {
            let bh = (bottom - top) * f64::from(*count) / f64::from(max);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" data-lane="{}" data-hour="{}" data-count="{count}"><title>{} {}: {count}</title></rect>"#,
                left + i as f64 * slot + 1.0 + li as f64 * bar,
                bottom - bh,
                bar.max(0.5),
                bh,
                esc(lane),
                start.0,
                esc(lane),
                hhmm(*start, offset),
            );
        }
    }
    for i in (0..24).step_by(3) {
        if let Some(b) = per_lane.first().map(|b| b[i].0) {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" class="axis">{}</text>"#,
                left + i as f64 * slot,
                bottom + 14.0,
                hhmm(b, offset)
            );
        }
    }
    // Legend: lane colour, name and the last hour's passages.
    let mut lx = left;
    for (li, (lane, times)) in lanes.iter().enumerate() {
        let colour = LANE_COLOURS[li % LANE_COLOURS.len()];
        let n = history::last_hour(times, now);
        let label = format!("{lane}: {n} {}", lang.tr("passages in the last hour"));
        let _ = write!(
            s,
            r#"<g class="legend" data-lane="{}" data-last-hour="{n}"><rect x="{lx:.1}" y="{}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{}" class="axis">{}</text></g>"#,
            esc(lane),
            h - 14.0,
            lx + 14.0,
            h - 5.0,
            esc(&label),
        );
        // CJK characters are about twice as wide as Latin ones at this size.
        let width: f64 = label
            .chars()
            .map(|c| if c.is_ascii() { 6.5 } else { 11.5 })
            .sum();
        lx += 24.0 + width;
    }
    s.push_str("</svg>");
    s
}

/// One device's link over the hour ending at `now`, as a strip of up (green) and down
/// (red) stretches; grey where nothing was known yet. Each stretch carries `data-up`,
/// `data-from` and `data-to` (ms); the strip carries `data-down-secs`.
pub fn link_strip(
    device: &str,
    changes: &[LinkChange],
    now: Timestamp,
    offset: chrono::FixedOffset,
    lang: Lang,
) -> String {
    let (h, left) = (16.0, 0.0);
    let start = now.0 - HOUR_MS;
    let x = |t: i64| left + (W - left) * ((t.clamp(start, now.0) - start) as f64 / HOUR_MS as f64);
    let mut stretches: Vec<(i64, i64, Option<bool>)> = Vec::new();
    let mut cursor = start;
    let mut state: Option<bool> = None;
    for c in changes {
        if c.at.0 > cursor {
            stretches.push((cursor, c.at.0.min(now.0), state));
            cursor = c.at.0.min(now.0);
        }
        state = Some(c.up);
    }
    if cursor < now.0 {
        stretches.push((cursor, now.0, state));
    }
    let down_ms: i64 = stretches
        .iter()
        .filter(|s| s.2 == Some(false))
        .map(|s| s.1 - s.0)
        .sum();
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        r#"<svg class="strip" viewBox="0 0 {W} {h}" preserveAspectRatio="none" data-device="{}" data-down-secs="{}">"#,
        esc(device),
        down_ms / 1000
    );
    for (from, to, up) in stretches.iter().filter(|s| s.1 > s.0) {
        let (colour, word, attr) = match up {
            Some(true) => ("#2ca02c", lang.tr("up"), "true"),
            Some(false) => ("#d62728", lang.tr("down"), "false"),
            None => ("#cccccc", lang.tr("unknown"), ""),
        };
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="0" width="{:.1}" height="{h}" fill="{colour}" data-up="{attr}" data-from="{from}" data-to="{to}"><title>{} {}–{}</title></rect>"#,
            x(*from),
            (x(*to) - x(*from)).max(0.5),
            esc(word),
            hhmm(Timestamp(*from), offset),
            hhmm(Timestamp(*to), offset),
        );
    }
    s.push_str("</svg>");
    s
}

/// Lane ids in config order with their passage times (lanes without any included).
pub fn lanes_with_times(
    lane_ids: impl Iterator<Item = String>,
    mut times: BTreeMap<String, Vec<Timestamp>>,
) -> Vec<(String, Vec<Timestamp>)> {
    lane_ids
        .map(|id| {
            let t = times.remove(&id).unwrap_or_default();
            (id, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn attr_values<'a>(svg: &'a str, attr: &str) -> Vec<&'a str> {
        let key = format!("{attr}=\"");
        svg.match_indices(&key)
            .map(|(i, _)| {
                let rest = &svg[i + key.len()..];
                &rest[..rest.find('"').unwrap_or(0)]
            })
            .collect()
    }

    #[test]
    fn passage_bars_carry_the_counts_per_lane_and_hour() {
        let offset = crate::time::china_standard_time();
        let entry: Vec<_> = (1..=7).map(|m| NOW.plus_millis(-m * 60_000)).collect();
        let exit = vec![NOW.plus_millis(-2 * HOUR_MS)];
        let lanes = vec![("entry-1".to_string(), entry), ("exit-1".to_string(), exit)];
        let svg = passages_per_hour(&lanes, NOW, offset, Lang::En);
        let counts: Vec<u32> = attr_values(&svg, "data-count")
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 48);
        assert_eq!(counts[23], 7, "entry, current hour");
        assert_eq!(counts.iter().sum::<u32>(), 8);
        assert_eq!(counts[24 + 21], 1, "exit, two hours back");
        assert_eq!(attr_values(&svg, "data-last-hour"), vec!["7", "0"]);
        assert!(svg.contains("passages in the last hour"));
        let zh = passages_per_hour(&lanes, NOW, offset, Lang::Zh);
        assert!(zh.contains("近一小时通行"), "{zh}");
        assert_eq!(
            attr_values(&zh, "data-count"),
            attr_values(&svg, "data-count")
        );
    }

    #[test]
    fn occupancy_line_ends_at_the_last_value() {
        let offset = crate::time::china_standard_time();
        let samples = vec![
            (NOW.plus_millis(-30 * HOUR_MS), 3),
            (NOW.plus_millis(-HOUR_MS), 40),
            (NOW.plus_millis(-60_000), 41),
        ];
        let svg = occupancy(&samples, 100, NOW, offset, Lang::En);
        assert_eq!(attr_values(&svg, "data-last"), vec!["41"]);
        assert_eq!(
            attr_values(&svg, "data-occupied"),
            vec!["41"],
            "the last hour's"
        );
        assert!(svg.contains("<polyline"));
        let empty = occupancy(&[], 100, NOW, offset, Lang::Zh);
        assert!(empty.contains("暂无数据"), "{empty}");
    }

    #[test]
    fn link_strip_shows_down_time_within_the_hour() {
        let offset = crate::time::china_standard_time();
        let changes = [
            LinkChange {
                at: NOW.plus_millis(-2 * HOUR_MS),
                up: true,
            },
            LinkChange {
                at: NOW.plus_millis(-600_000),
                up: false,
            },
            LinkChange {
                at: NOW.plus_millis(-300_000),
                up: true,
            },
        ];
        let svg = link_strip("cam-1", &changes, NOW, offset, Lang::En);
        assert_eq!(attr_values(&svg, "data-down-secs"), vec!["300"]);
        assert_eq!(attr_values(&svg, "data-up"), vec!["true", "false", "true"]);
        let fresh = link_strip("io-1", &[], NOW, offset, Lang::En);
        assert_eq!(attr_values(&fresh, "data-up"), vec![""], "unknown all hour");
    }
}
