//! The golden lane scenarios again, through the SQLite-backed path the lane task takes
//! (`Store::apply` on a real `Store`, open stays read back from the
//! database for every decision), not the in-memory model `replay` uses. The reports
//! queued in the outbox must equal, in order, the reports of `NAME.expected.jsonl`.
//!
//! Events are driven as `replay` drives them (file order, every lane's timers due
//! before each event, all timers at the end, stay expiry checked every minute of
//! event time), so only the stay-keeping differs between the two runs. Event time
//! stands in for the wall clock the lane task would use, and an image of `image_len`
//! bytes for the camera's picture (scenarios, like the journal, keep only its size).

use parking_bridge::config::SiteConfig;
use parking_bridge::event::{EventKind, RawEvent};
use parking_bridge::lane::machine::LaneMachine;
use parking_bridge::lane::stays::{OpenStay, decide, expired};
use parking_bridge::store::{LocalClose, Store};
use parking_bridge::time::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const EXPIRY_CHECK_MS: i64 = 60_000;

type Lanes = BTreeMap<String, (parking_bridge::config::LaneConfig, LaneMachine)>;

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// The config a scenario uses, as `lane_scenarios.rs` chooses it, with its storage in
/// `dir`.
fn config_for(events: &Path, dir: &Path) -> SiteConfig {
    let text = std::fs::read_to_string(events).unwrap();
    let named = text
        .lines()
        .find_map(|l| l.strip_prefix("# config:"))
        .map(|n| scenario_dir().join(n.trim()));
    let own = events.with_extension("toml");
    let path = named.unwrap_or(if own.exists() {
        own
    } else {
        scenario_dir().join("site.toml")
    });
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "dir = \"/nonexistent\"",
        &format!("dir = {:?}", dir.display().to_string()),
    );
    SiteConfig::from_toml(&toml, &path).unwrap_or_else(|e| panic!("{e}"))
}

fn open_stays(store: &Store, placeholders: &[String]) -> Vec<OpenStay> {
    store
        .open_stays()
        .unwrap()
        .into_iter()
        .map(|s| OpenStay {
            placeholder: placeholders.contains(&s.plate_no),
            out_order_no: s.out_order_no,
            plate_no: s.plate_no,
            plate_color: s.plate_color,
            car_type: s.car_type,
            entered_at: s.entered_at,
        })
        .collect()
}

/// The reports the SQLite-backed path queues for `events`, as JSON values in order.
fn run_through_store(events: &Path) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(events, dir.path());
    let store = Store::open_site(&config).unwrap();
    let placeholders: Vec<String> = config
        .lanes
        .iter()
        .map(|l| l.placeholder_plate.clone())
        .collect();
    let mut lanes: Lanes = config
        .lanes
        .iter()
        .map(|l| (l.id.clone(), (l.clone(), LaneMachine::new(l))))
        .collect();
    let plan =
        |lanes: &Lanes, lane: &str, passages: Vec<parking_bridge::lane::machine::Passage>| {
            let (cfg, _) = &lanes[lane];
            for p in passages {
                let open = open_stays(&store, &placeholders);
                let action = decide(&p, cfg, &config.lot, &open, None);
                store.apply(&action, None, p.at).unwrap();
            }
        };
    let run_timers = |lanes: &mut Lanes, until: Timestamp| loop {
        let due = lanes
            .iter()
            .filter_map(|(id, (_, m))| m.poll_at().map(|t| (t, id.clone())))
            .filter(|(t, _)| *t <= until)
            .min();
        let Some((t, lane)) = due else { return };
        let passages = lanes.get_mut(&lane).unwrap().1.on_timer(t);
        plan(lanes, &lane, passages);
    };
    let mut now = Timestamp(i64::MIN);
    let mut last_expiry: Option<Timestamp> = None;
    let text = std::fs::read_to_string(events).unwrap();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut event: RawEvent = serde_json::from_str(line).unwrap();
        // Scenarios (like the journal) carry only `image_len`; the lane task gets the
        // bytes from the camera. A stand-in of that size lets the store keep an image.
        if let EventKind::Plate(read) = &mut event.kind
            && read.image.is_none()
        {
            read.image = read.image_len.map(|n| {
                let mut jpeg = vec![0u8; n.max(4)];
                jpeg[..2].copy_from_slice(&[0xFF, 0xD8]);
                let end = jpeg.len() - 2;
                jpeg[end..].copy_from_slice(&[0xFF, 0xD9]);
                std::sync::Arc::new(jpeg)
            });
        }
        if event.lane.is_empty() {
            continue;
        }
        now = now.max(event.at);
        run_timers(&mut lanes, now);
        if last_expiry.is_none_or(|t| now.0 - t.0 >= EXPIRY_CHECK_MS) {
            last_expiry = Some(now);
            for no in expired(&open_stays(&store, &placeholders), &config.lot, now) {
                store
                    .close_stay_locally(&no, LocalClose::Expired, now)
                    .unwrap();
            }
        }
        let passages = lanes.get_mut(&event.lane).unwrap().1.handle(&event, now);
        plan(&lanes, &event.lane, passages);
    }
    run_timers(&mut lanes, Timestamp(i64::MAX));
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let mut st = db.prepare("SELECT body FROM outbox ORDER BY id").unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

/// The reports (entry, exit, snapshot) of an expected file, in order.
fn expected_reports(events: &Path) -> Vec<Value> {
    std::fs::read_to_string(events.with_extension("expected.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| matches!(v["kind"].as_str(), Some("entry" | "exit" | "snapshot")))
        .collect()
}

#[test]
fn every_scenario_queues_its_expected_reports_through_the_state_database() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    let mut failures = Vec::new();
    for events in &files {
        let got = run_through_store(events);
        let want = expected_reports(events);
        if got != want {
            let show = |v: &[Value]| {
                v.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            failures.push(format!(
                "{}:\n--- expected\n{}\n--- through the store\n{}",
                events.display(),
                show(&want),
                show(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario(s) differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
