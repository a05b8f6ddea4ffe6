//! `run` and `mock-platform` as real processes over loopback: outages, unknown orders,
//! injected 5xx, heartbeats behind a backlog.

mod process_common;
mod store_common;

use parking_bridge::config::SiteConfig;
use parking_bridge::store::Store;
use parking_bridge::time::Timestamp;
use std::path::Path;
use store_common::*;

fn open_store(config: &Path) -> Store {
    Store::open_site(&SiteConfig::load(config).unwrap()).unwrap()
}

fn all_delivered(mock: &Mock, stays: &[String], exits: usize) -> bool {
    let counts = accepted_counts(&mock.records());
    let entries = stays
        .iter()
        .filter(|o| counts.contains_key(&("parking".into(), (*o).clone())))
        .count();
    let exited = stays
        .iter()
        .filter(|o| counts.contains_key(&("away".into(), (*o).clone())))
        .count();
    entries == stays.len() && exited == exits
}

fn assert_each_once(mock: &Mock, stays: &[String], with_exit: bool) {
    let counts = accepted_counts(&mock.records());
    for o in stays {
        assert_eq!(
            counts.get(&("parking".into(), o.clone())),
            Some(&1),
            "entry of {o}"
        );
        if with_exit {
            assert_eq!(
                counts.get(&("away".into(), o.clone())),
                Some(&1),
                "exit of {o}"
            );
        }
    }
}

#[test]
fn platform_outage_then_everything_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &["--outage-secs", "4"]);
    let cfg = write_site(dir.path(), &mock.base_url(), &Site::default());
    let _bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    let mut stays = Vec::new();
    for i in 0..10 {
        stays.push(enter(&cfg, &format!("闽A0{i}001")));
    }
    for i in 0..10 {
        exit(&cfg, &format!("闽A0{i}001"));
    }
    wait_until(60, "all reports after the outage", || {
        all_delivered(&mock, &stays, 10)
    });
    let recs = mock.records();
    assert!(
        recs.iter().any(|r| r.result_code == "HTTP_503"),
        "the outage was felt"
    );
    assert_each_once(&mock, &stays, true);
    assert_eq!(assert_exits_after_entries(&recs), 10);
}

#[test]
fn unknown_order_is_recovered_by_sending_the_entry_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = Mock::start(&dir.path().join("first.jsonl"), &[]);
    let cfg = write_site(dir.path(), &first.base_url(), &Site::default());
    let bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    let o = enter(&cfg, "粤B12345");
    wait_until(20, "entry at the first platform", || {
        accepted_counts(&first.records()).contains_key(&("parking".into(), o.clone()))
    });
    // And recorded as delivered by the bridge (not only received by the platform):
    // killed before that, the bridge would rightly send the entry again first.
    wait_until(20, "the bridge recorded the delivery", || {
        stdout(&cli(&["outbox", "--config", cfg.to_str().unwrap()])).contains("pending total 0,")
    });
    bridge.kill();
    drop(first);
    // A platform that lost the stay: a fresh mock without the first one's record.
    let second = Mock::start(&dir.path().join("second.jsonl"), &[]);
    let cfg = write_site(dir.path(), &second.base_url(), &Site::default());
    assert_eq!(exit(&cfg, "粤B12345"), o);
    let _bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    wait_until(30, "exit accepted after re-sent entry", || {
        accepted_counts(&second.records()).contains_key(&("away".into(), o.clone()))
    });
    let seq: Vec<(String, String)> = second
        .records()
        .iter()
        .filter(|r| r.out_order_no() == Some(o.as_str()))
        .map(|r| (r.kind().to_string(), r.result_code.clone()))
        .collect();
    assert_eq!(
        seq,
        [
            ("away".to_string(), "ORDER_NOT_EXIST".to_string()),
            ("parking".to_string(), "success".to_string()),
            ("away".to_string(), "success".to_string())
        ]
    );
}

#[test]
fn thirty_percent_server_errors_all_delivered_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(
        &dir.path().join("rec.jsonl"),
        &["--fail-rate", "0.3", "--seed", "7"],
    );
    let cfg = write_site(dir.path(), &mock.base_url(), &Site::default());
    let store = open_store(&cfg);
    let mut stays = Vec::new();
    for i in 0..40 {
        stays.push(
            store
                .open_stay(new_stay(format!("F{i}"), None), Timestamp::now())
                .unwrap()
                .out_order_no,
        );
    }
    for o in &stays {
        store
            .close_stay(o, exit_details(), Timestamp::now())
            .unwrap();
    }
    let _bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    wait_until(90, "all 80 reports through 30 % failures", || {
        all_delivered(&mock, &stays, 40)
    });
    let recs = mock.records();
    assert!(
        recs.iter().filter(|r| r.result_code == "HTTP_500").count() >= 10,
        "faults were injected"
    );
    for r in recs.iter().filter(|r| !r.accepted) {
        assert!(
            r.result_code == "HTTP_500" || r.result_code == "OUT_ORDER_NO_DUPLICATION",
            "unexpected refusal {r:?}"
        );
    }
    assert_each_once(&mock, &stays, true);
    assert_exits_after_entries(&recs);
}

#[test]
fn heartbeats_keep_pace_behind_a_ten_thousand_report_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &["--latency-ms", "20"]);
    let site = Site {
        heartbeat_secs: 1,
        total_spaces: 20_000,
        ..Site::default()
    };
    let cfg = write_site(dir.path(), &mock.base_url(), &site);
    let store = open_store(&cfg);
    for chunk in 0..10 {
        let batch = (0..1000)
            .map(|i| new_stay(format!("K{chunk}X{i}"), None))
            .collect();
        store.open_stays_grouped(batch, Timestamp::now()).unwrap();
    }
    drop(store);
    let bridge = Bridge::start(&cfg, &dir.path().join("run.log"));
    // Until six heartbeats arrived (a condition, not a fixed sleep).
    wait_until(30, "six heartbeats behind the backlog", || {
        mock.records()
            .iter()
            .filter(|r| r.kind() == "heartbeat")
            .count()
            >= 6
    });
    bridge.kill();
    let recs = mock.records();
    let beats: Vec<i64> = recs
        .iter()
        .filter(|r| r.kind() == "heartbeat")
        .map(|r| r.at)
        .collect();
    let entries = recs.iter().filter(|r| r.kind() == "parking").count();
    // Some delivered, not all: how many depends on the machine's load.
    assert!(
        entries > 10 && entries < 10_000,
        "backlog was draining, not done: {entries}"
    );
    assert!(beats.len() >= 5, "{} heartbeats", beats.len());
    for pair in beats.windows(2) {
        // One second apart. Starved by the backlog they would be many seconds apart
        // (it takes minutes to drain); up to two intervals is scheduling noise on a
        // loaded 2-core machine, not starvation.
        assert!(
            pair[1] - pair[0] <= 2_000,
            "heartbeats {} ms apart",
            pair[1] - pair[0]
        );
    }
}
