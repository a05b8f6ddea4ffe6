//! Checks a platform record (the mock platform's JSON-lines file) against the
//! simulated traffic: every vehicle that entered has exactly one accepted entry and
//! one accepted exit, in that order, nothing was invented, and the last free-space
//! count is right.

use super::traffic::{Case, Plan};
use crate::platform::mock::Record;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;

/// What the platform accepted, read back from its record.
#[derive(Debug, Default, Clone)]
pub struct PlatformView {
    /// Accepted entries: out_order_no → (plate, when accepted).
    pub entries: HashMap<String, (String, i64)>,
    /// Accepted entries: out_order_no → the entry time they report (`parking_time`,
    /// UTC+8, ms), when it parses.
    pub entry_times: HashMap<String, i64>,
    /// Accepted exits: out_order_no → when accepted.
    pub exits: HashMap<String, i64>,
    /// Exits refused because their entry was unknown (then re-sent after the entry).
    pub refused_exits: usize,
    /// Duplicate entries answered OUT_ORDER_NO_DUPLICATION (harmless re-sends).
    pub duplicate_entries: usize,
    /// Accepted snapshots.
    pub snapshots: usize,
    pub heartbeats: usize,
    /// `free_spaces` of the last accepted entry or exit.
    pub last_free_spaces: Option<i64>,
    /// Lines that did not parse.
    pub bad_lines: usize,
}

impl PlatformView {
    pub fn from_record(reader: impl BufRead) -> PlatformView {
        let mut view = PlatformView::default();
        let mut last_at = i64::MIN;
        for record in Record::read_all(reader) {
            let Some(rec) = record else {
                view.bad_lines += 1;
                continue;
            };
            let body = &rec.body;
            let text = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let kind = rec.path.rsplit('/').next().unwrap_or("");
            match (kind, rec.accepted) {
                ("parking", true) => {
                    let order = text("out_order_no");
                    let parked = crate::time::Timestamp::parse_local(
                        &text("parking_time"),
                        crate::time::china_standard_time(),
                    );
                    if let Some(t) = parked {
                        view.entry_times.insert(order.clone(), t.0);
                    }
                    view.entries.insert(order, (text("plate_no"), rec.at.0));
                }
                ("parking", false) if rec.result_code == "OUT_ORDER_NO_DUPLICATION" => {
                    view.duplicate_entries += 1
                }
                ("away", true) => {
                    view.exits.insert(text("out_order_no"), rec.at.0);
                }
                ("away", false) if rec.result_code == "ORDER_NOT_EXIST" => view.refused_exits += 1,
                ("uploadSnapshot", true) => view.snapshots += 1,
                ("heartbeat", true) => view.heartbeats += 1,
                _ => {}
            }
            if rec.accepted && matches!(kind, "parking" | "away") && rec.at.0 >= last_at {
                last_at = rec.at.0;
                view.last_free_spaces = body.get("free_spaces").and_then(|v| v.as_i64());
            }
        }
        view
    }
}

/// One row of the summary: a case, how many vehicles had it, and what the platform saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub case: Case,
    pub simulated: usize,
    pub expected_entries: usize,
    pub entries: usize,
    pub exits: usize,
    /// Vehicles that passed while the bridge could not see their lane (soak).
    pub set_aside: usize,
}

/// The verdict of a run.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub rows: Vec<CaseRow>,
    /// Everything that does not match, in plain words; empty = the record matches.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Compares what the platform accepted with the plan. `placeholder` is the plate
/// reported for unreadable vehicles; `total_spaces` the lot size. Every vehicle of
/// the plan is assumed to have left by the end. The vehicles in `set_aside` passed
/// while the bridge could not see their lane (a soak's fault): each may have one
/// entry or none, and its stay may lack its exit; the free-space count must then
/// match the stays the platform still holds open.
pub fn compare(
    plan: &Plan,
    view: &PlatformView,
    placeholder: &str,
    total_spaces: i64,
    set_aside: &HashSet<usize>,
) -> Verdict {
    let mut problems = Vec::new();
    // Accepted entries per plate, each with its out_order_no.
    let mut by_plate: HashMap<&str, Vec<&str>> = HashMap::new();
    for (order, (plate, _)) in &view.entries {
        by_plate
            .entry(plate.as_str())
            .or_default()
            .push(order.as_str());
    }
    let mut rows: BTreeMap<Case, CaseRow> = BTreeMap::new();
    // Per reported plate: the fewest and the most accepted entries it may have, and
    // how many of its vehicles were set aside.
    let mut expected_per_plate: HashMap<String, (usize, usize)> = HashMap::new();
    let mut lenient_per_plate: HashMap<String, usize> = HashMap::new();
    let mut turned_away: HashSet<String> = HashSet::new();
    for v in &plan.vehicles {
        let reported_plate = if v.case == Case::Unreadable {
            placeholder.to_string()
        } else {
            v.plate.clone()
        };
        let row = rows.entry(v.case).or_insert(CaseRow {
            case: v.case,
            simulated: 0,
            expected_entries: 0,
            entries: 0,
            exits: 0,
            set_aside: 0,
        });
        row.simulated += 1;
        let aside = set_aside.contains(&v.id);
        if aside {
            row.set_aside += 1;
            // Its one entry may be under its plate or, its read lost in the spell,
            // under the placeholder.
            for plate in [reported_plate.clone(), placeholder.to_string()] {
                expected_per_plate.entry(plate.clone()).or_insert((0, 0)).1 += 1;
                *lenient_per_plate.entry(plate).or_insert(0) += 1;
                if v.case == Case::Unreadable {
                    break;
                }
            }
        } else if v.case.enters() {
            row.expected_entries += 1;
            let bounds = expected_per_plate
                .entry(reported_plate.clone())
                .or_insert((0, 0));
            bounds.0 += 1;
            bounds.1 += 1;
        }
        // Credit each vehicle with what the platform holds under its plate, once.
        let orders = by_plate
            .get(reported_plate.as_str())
            .cloned()
            .unwrap_or_default();
        if aside {
            // Counted in the row, judged only by the per-plate bounds below.
        } else if v.case.enters() {
            let share = usize::from(!orders.is_empty());
            row.entries += share;
            row.exits += usize::from(orders.iter().any(|o| view.exits.contains_key(*o)));
        } else if !orders.is_empty() {
            turned_away.insert(reported_plate.clone());
            problems.push(format!(
                "vehicle {} turned away but has an entry on the platform",
                crate::plate::mask(&v.plate)
            ));
        }
    }
    for (plate, (least, most)) in &expected_per_plate {
        let got = by_plate.get(plate.as_str()).map_or(0, Vec::len);
        if got < *least || got > *most {
            let want = if least == most {
                format!("{least}")
            } else {
                format!("{least} to {most}")
            };
            problems.push(format!(
                "plate {}: {got} accepted entries, expected {want}",
                crate::plate::mask(plate)
            ));
        }
    }
    for (plate, orders) in &by_plate {
        // A turned-away vehicle with an entry is named above, not as a phantom.
        if !expected_per_plate.contains_key(*plate) && !turned_away.contains(*plate) {
            problems.push(format!(
                "phantom vehicle {}: {} entries on the platform that the simulation never drove",
                crate::plate::mask(plate),
                orders.len()
            ));
        }
    }
    let mut open_per_plate: HashMap<&str, usize> = HashMap::new();
    for (order, (plate, entered_at)) in &view.entries {
        match view.exits.get(order) {
            None => *open_per_plate.entry(plate.as_str()).or_insert(0) += 1,
            Some(exited_at) if exited_at < entered_at => problems.push(format!(
                "stay of {} was accepted as exited before it entered",
                crate::plate::mask(plate)
            )),
            Some(_) => {}
        }
    }
    let mut still_open = 0i64;
    let mut excused_open = 0i64;
    for (plate, open) in &open_per_plate {
        let excused = lenient_per_plate.get(*plate).copied().unwrap_or(0);
        if *open > excused {
            problems.push(format!(
                "stay of {} has no accepted exit",
                crate::plate::mask(plate)
            ));
        }
        still_open += i64::try_from(*open).unwrap_or(i64::MAX);
        excused_open += i64::try_from((*open).min(excused)).unwrap_or(i64::MAX);
    }
    for order in view.exits.keys() {
        if !view.entries.contains_key(order) {
            problems.push(format!("exit {order} has no accepted entry"));
        }
    }
    // Everyone has left: the lot must be reported empty, but for the stays whose
    // exit went unseen in a blind spell. A set-aside vehicle whose exit was seen
    // without its plate frees its space, though its stay stays open: up to that many
    // more free spaces.
    let free = total_spaces - still_open;
    let free_most = free + excused_open;
    if !plan.vehicles.is_empty()
        && !view
            .last_free_spaces
            .is_some_and(|f| (free..=free_most).contains(&f))
    {
        let want = if free_most > free {
            format!("{free} to {free_most}")
        } else {
            format!("{free}")
        };
        problems.push(format!(
            "last reported free_spaces is {:?}, expected {want} (everyone has left{})",
            view.last_free_spaces,
            if still_open > 0 {
                format!("; {still_open} stays left open by blind spells")
            } else {
                String::new()
            }
        ));
    }
    Verdict {
        rows: rows.into_values().collect(),
        problems,
    }
}

/// How far an entry's reported time may lie outside its vehicle's passage: the read
/// before the loop, and the whole second the wire time is cut to.
pub const ATTRIBUTION_BEFORE_MS: i64 = 3_000;
pub const ATTRIBUTION_AFTER_MS: i64 = 1_000;

/// Whether each plate went to its own vehicle: every readable vehicle that entered
/// (and is not in `set_aside`) must have an accepted entry under its plate whose
/// reported time falls in its own passage through its entry lane (`spans`: first and
/// last hardware step, wall-clock ms), give or take [`ATTRIBUTION_BEFORE_MS`] /
/// [`ATTRIBUTION_AFTER_MS`]. Passages that overlap one of `unclocked` (spans in which
/// a soak had moved the bridge's wall clock, so its times say nothing) are not
/// judged. Counting entries per plate cannot see a plate shifted onto the next
/// vehicle, whose own plate shifts onto the one after; this can.
pub fn misattributed(
    plan: &Plan,
    view: &PlatformView,
    spans: &HashMap<usize, (i64, i64)>,
    set_aside: &HashSet<usize>,
    unclocked: &[(i64, i64)],
) -> Vec<String> {
    let mut times: HashMap<&str, Vec<i64>> = HashMap::new();
    for (order, (plate, _)) in &view.entries {
        if let Some(t) = view.entry_times.get(order) {
            times.entry(plate.as_str()).or_default().push(*t);
        }
    }
    let mut problems = Vec::new();
    for v in &plan.vehicles {
        if set_aside.contains(&v.id) || !v.case.enters() || v.case == Case::Unreadable {
            continue;
        }
        let Some((first, last)) = spans.get(&v.id) else {
            continue;
        };
        if unclocked
            .iter()
            .any(|(from, to)| from <= last && to >= first)
        {
            continue;
        }
        let during =
            |t: i64| (first - ATTRIBUTION_BEFORE_MS..=last + ATTRIBUTION_AFTER_MS).contains(&t);
        let reported = times.get(v.plate.as_str()).map_or(&[][..], Vec::as_slice);
        if !reported.is_empty() && !reported.iter().any(|t| during(*t)) {
            problems.push(format!(
                "vehicle {} (entry lane {}) passed at {first}–{last} ms, but its plate's entries say {:?}: the plate went to another vehicle",
                crate::plate::mask(&v.plate),
                v.entry_lane,
                reported
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::traffic::{TrafficConfig, plan};

    fn record_line(
        path: &str,
        accepted: bool,
        code: &str,
        at: i64,
        body: serde_json::Value,
    ) -> String {
        serde_json::json!({"at": at, "path": path, "result_code": code, "accepted": accepted, "body": body}).to_string()
    }

    /// A record the platform would hold if the bridge reported `plan` perfectly.
    fn perfect_record(p: &Plan, total: i64) -> String {
        let mut lines = Vec::new();
        let mut t = 0;
        for v in p.vehicles.iter().filter(|v| v.case.enters()) {
            let plate = if v.case == Case::Unreadable {
                "无牌车".to_string()
            } else {
                v.plate.clone()
            };
            let order = format!("O{}", v.id);
            t += 1;
            lines.push(record_line("/barrier/parking", true, "success", t, serde_json::json!({"out_order_no": order, "plate_no": plate, "free_spaces": total - 1})));
            t += 1;
            lines.push(record_line(
                "/barrier/away",
                true,
                "success",
                t,
                serde_json::json!({"out_order_no": order, "plate_no": plate, "free_spaces": total}),
            ));
        }
        lines.join("\n")
    }

    #[test]
    fn a_perfect_record_matches() {
        let p = plan(&TrafficConfig {
            vehicles: 60,
            ..TrafficConfig::default()
        });
        let view = PlatformView::from_record(perfect_record(&p, 100).as_bytes());
        let v = compare(&p, &view, "无牌车", 100, &HashSet::new());
        assert!(v.ok(), "{:?}", v.problems);
        let total: usize = v.rows.iter().map(|r| r.simulated).sum();
        assert_eq!(total, 60);
    }

    #[test]
    fn a_plate_shifted_onto_the_next_vehicle_is_named_though_every_count_is_right() {
        let p = plan(&TrafficConfig {
            vehicles: 3,
            hard_share: 0.0,
            ..TrafficConfig::default()
        });
        let base = 1_764_000_000_000i64; // 2025-11-24 16:00:00 UTC+8, a whole second
        let wire =
            |ms: i64| crate::time::Timestamp(ms).format_local(crate::time::china_standard_time());
        // Vehicle i passes during [base + 10 s·i, base + 10 s·i + 4 s].
        let spans: HashMap<usize, (i64, i64)> = p
            .vehicles
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    v.id,
                    (base + 10_000 * i as i64, base + 10_000 * i as i64 + 4_000),
                )
            })
            .collect();
        let record = |time_of: &dyn Fn(usize) -> i64| {
            p.vehicles
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let body = serde_json::json!({"out_order_no": format!("O{i}"), "plate_no": v.plate, "parking_time": wire(time_of(i))});
                    record_line("/barrier/parking", true, "success", 1, body)
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let own = record(&|i| base + 10_000 * i as i64 + 2_000);
        let view = PlatformView::from_record(own.as_bytes());
        assert!(misattributed(&p, &view, &spans, &HashSet::new(), &[]).is_empty());
        // Each plate reported at the next vehicle's passage: the counts cannot see it.
        let shifted = record(&|i| base + 10_000 * (i as i64 + 1) + 2_000);
        let view = PlatformView::from_record(shifted.as_bytes());
        let problems = misattributed(&p, &view, &spans, &HashSet::new(), &[]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        // Set aside, or passing while the bridge's clock was moved, it is excused.
        let aside: HashSet<usize> = p.vehicles.iter().map(|v| v.id).collect();
        assert!(misattributed(&p, &view, &spans, &aside, &[]).is_empty());
        let jump = [(base + 1_000, base + 25_000)];
        assert!(misattributed(&p, &view, &spans, &HashSet::new(), &jump).is_empty());
        let elsewhere = [(base + 100_000, base + 200_000)];
        assert_eq!(
            misattributed(&p, &view, &spans, &HashSet::new(), &elsewhere).len(),
            3
        );
    }

    /// 20 easy vehicles and their perfect record without the last exit.
    fn record_without_the_last_exit() -> (Plan, String) {
        let p = plan(&TrafficConfig {
            vehicles: 20,
            hard_share: 0.0,
            ..TrafficConfig::default()
        });
        let mut rec = perfect_record(&p, 100);
        let cut = rec.rfind('\n').unwrap();
        rec.truncate(cut);
        (p, rec)
    }

    #[test]
    fn a_missing_exit_a_phantom_and_a_wrong_count_are_all_named() {
        let (p, mut rec) = record_without_the_last_exit();
        // And a phantom entry.
        rec.push('\n');
        rec.push_str(&record_line(
            "/barrier/parking",
            true,
            "success",
            999,
            serde_json::json!({"out_order_no": "X", "plate_no": "闽Z99999", "free_spaces": 99}),
        ));
        let view = PlatformView::from_record(rec.as_bytes());
        let v = compare(&p, &view, "无牌车", 100, &HashSet::new());
        let text = v.problems.join("\n");
        assert!(text.contains("has no accepted exit"), "{text}");
        assert!(text.contains("phantom vehicle 闽Z9***9"), "{text}");
        assert!(text.contains("free_spaces"), "{text}");
    }

    #[test]
    fn a_set_aside_vehicle_may_lack_its_exit_but_others_may_not() {
        // The last vehicle's exit went unseen in a blind spell.
        let (p, rec) = record_without_the_last_exit();
        let view = PlatformView::from_record(rec.as_bytes());
        let last = p.vehicles.iter().rfind(|v| v.case.enters()).unwrap().id;
        let v = compare(&p, &view, "无牌车", 100, &HashSet::from([last]));
        assert!(v.ok(), "{:?}", v.problems);
        let aside: usize = v.rows.iter().map(|r| r.set_aside).sum();
        assert_eq!(aside, 1);
        // Another vehicle set aside does not excuse it.
        let first = p.vehicles.iter().find(|v| v.case.enters()).unwrap().id;
        let v = compare(&p, &view, "无牌车", 100, &HashSet::from([first]));
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("has no accepted exit")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_set_aside_vehicle_may_free_its_space_without_closing_its_stay_or_enter_unplated() {
        // The last vehicle's exit was seen without its plate: the count says the lot
        // is empty though its stay is still open.
        let (p, rec) = record_without_the_last_exit();
        let cut = rec.rfind('\n').unwrap();
        let (head, last_line) = rec.split_at(cut);
        let rec = format!(
            "{head}{}",
            last_line.replace("\"free_spaces\":99", "\"free_spaces\":100")
        );
        let view = PlatformView::from_record(rec.as_bytes());
        let last = p.vehicles.iter().rfind(|v| v.case.enters()).unwrap();
        let v = compare(&p, &view, "无牌车", 100, &HashSet::from([last.id]));
        assert!(v.ok(), "{:?}", v.problems);
        let v = compare(&p, &view, "无牌车", 100, &HashSet::new());
        assert!(
            v.problems.iter().any(|p| p.contains("free_spaces")),
            "{:?}",
            v.problems
        );
        // Its entry reported under the placeholder (its read lost in the spell).
        let rec = rec.replace(
            &format!("\"plate_no\":\"{}\"", last.plate),
            "\"plate_no\":\"无牌车\"",
        );
        let view = PlatformView::from_record(rec.as_bytes());
        let v = compare(&p, &view, "无牌车", 100, &HashSet::from([last.id]));
        assert!(v.ok(), "{:?}", v.problems);
        let v = compare(&p, &view, "无牌车", 100, &HashSet::new());
        assert!(!v.ok());
    }

    #[test]
    fn a_turned_away_vehicle_with_an_entry_is_named_once() {
        let p = plan(&TrafficConfig {
            vehicles: 60,
            ..TrafficConfig::default()
        });
        let away = p
            .vehicles
            .iter()
            .find(|v| v.case == Case::TurnAway)
            .unwrap();
        let mut rec = perfect_record(&p, 100);
        rec.push('\n');
        rec.push_str(&record_line(
            "/barrier/parking",
            true,
            "success",
            0,
            serde_json::json!({"out_order_no": "T", "plate_no": away.plate, "free_spaces": 99}),
        ));
        let view = PlatformView::from_record(rec.as_bytes());
        let v = compare(&p, &view, "无牌车", 100, &HashSet::new());
        let text = v.problems.join("\n");
        assert!(text.contains("turned away but has an entry"), "{text}");
        assert!(!text.contains("phantom"), "{text}");
    }

    #[test]
    fn duplicates_and_refusals_are_counted_not_failures() {
        let rec = [
            record_line(
                "/barrier/parking",
                false,
                "OUT_ORDER_NO_DUPLICATION",
                1,
                serde_json::json!({}),
            ),
            record_line(
                "/barrier/away",
                false,
                "ORDER_NOT_EXIST",
                2,
                serde_json::json!({}),
            ),
            "not json".to_string(),
        ]
        .join("\n");
        let view = PlatformView::from_record(rec.as_bytes());
        assert_eq!(
            (view.duplicate_entries, view.refused_exits, view.bad_lines),
            (1, 1, 1)
        );
    }
}
