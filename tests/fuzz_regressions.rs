//! Replays every fuzz target's seeds and every saved afl finding
//! (`tests/fixtures/fuzz/<target>/*`, written by `scripts/fuzz.sh`) through the same
//! decoder entry points the afl binaries call (`fuzz/src/harness.rs`), without afl: a
//! crash once found stays a failing test until it is fixed, and its fixture is kept.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::Path;

fn fixtures(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn replay(target: &str) {
    let seeds = harness::seeds(target);
    assert!(
        !seeds.is_empty(),
        "{target}: no seeds built from the fixtures"
    );
    for seed in &seeds {
        assert!(harness::run(target, seed));
    }
    for (name, data) in fixtures(target) {
        let caught = std::panic::catch_unwind(|| harness::run(target, &data));
        assert!(caught.is_ok(), "{name}: the decoder panicked again");
    }
}

#[test]
fn every_target_has_a_fixture_directory() {
    for target in harness::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz")
            .join(target);
        assert!(dir.is_dir(), "{}", dir.display());
    }
    assert!(!harness::run("no_such_target", b""));
}

#[test]
fn modbus_rtu_findings_stay_fixed() {
    replay("modbus_rtu");
}

#[test]
fn camera_payload_findings_stay_fixed() {
    replay("camera_payload");
}

#[test]
fn camera_push_findings_stay_fixed() {
    replay("camera_push");
}

#[test]
fn platform_answer_findings_stay_fixed() {
    replay("platform_answer");
}

#[test]
fn site_config_findings_stay_fixed() {
    replay("site_config");
}

#[test]
fn device_profile_findings_stay_fixed() {
    replay("device_profile");
}

#[test]
fn journal_replay_findings_stay_fixed() {
    replay("journal_replay");
}
