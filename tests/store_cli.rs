//! Operator commands and start-up refusals as real processes.

mod process_common;
mod store_common;

use std::time::{Duration, Instant};
use store_common::*;

#[test]
fn stay_enter_and_exit_print_the_same_out_order_no() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_site(dir.path(), "http://127.0.0.1:9", &Site::default());
    let o = enter(&cfg, "闽A12345");
    assert!(o.starts_with(LOT) && o.len() == LOT.len() + 20, "{o}");
    assert_eq!(exit(&cfg, "闽A12345"), o);
    let out = cli(&["outbox", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("pending total 2"), "{text}");
    let out = cli(&["occupancy", "--config", cfg.to_str().unwrap(), "set", "12"]);
    assert_eq!(stdout(&out).trim(), "occupied 12 of 1000, free 988");
}

#[test]
fn operator_mistakes_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_site(dir.path(), "http://127.0.0.1:9", &Site::default());
    let c = cfg.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (
            stay_enter_args(c, "闽A 12345", "pnc_02", "entry-1"),
            "without spaces",
        ),
        (
            stay_enter_args(c, "闽A12345", "pnc_99", "entry-1"),
            "pnc_02",
        ),
        (
            stay_enter_args(c, "闽A12345", "pnc_02", "exit-1"),
            "exit lane",
        ),
        (stay_exit_args(c, "闽A12345", "exit-1"), "no open stay"),
        (stay_exit_args(c, "闽A12345", "entry-9"), "not a lane"),
    ];
    for (args, expected) in cases {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn corrupt_database_stops_run_with_a_clear_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_site(dir.path(), "http://127.0.0.1:9", &Site::default());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let garbage = b"definitely not SQLite; a damaged disk block ".repeat(200);
    std::fs::write(data.join("state.db"), &garbage).unwrap();
    let started = Instant::now();
    let out = cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = stderr(&out);
    assert!(err.contains("state.db") && err.contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read(data.join("state.db")).unwrap(),
        garbage,
        "never recreated"
    );
}

#[test]
fn a_second_run_on_the_same_storage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&dir.path().join("rec.jsonl"), &[]);
    let cfg = write_site(dir.path(), &mock.base_url(), &Site::default());
    let mut first = Bridge::start(&cfg, &dir.path().join("run.log"));
    wait_until(20, "first heartbeat", || {
        mock.records().iter().any(|r| r.kind() == "heartbeat")
    });
    let out = cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    assert!(first.try_exit_code().is_none(), "the first keeps running");
}
