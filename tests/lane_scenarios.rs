//! The hand-written lane scenarios in `tests/scenarios/`: each `NAME.jsonl` (raw events,
//! `#` comments) is replayed with the config its `# config: FILE` comment names, else
//! `NAME.toml`, else `site.toml`, passages included, and must print exactly
//! `NAME.expected.jsonl` — never nothing: every scenario ends with something the lane
//! must report, so a lane that got stuck cannot pass. Set `BLESS=1` to rewrite the
//! expected files after a deliberate change (then read the diff!); a run that rewrote
//! a file fails, so BLESS can never make a difference pass.

mod process_common;

use parking_bridge::config::SiteConfig;
use parking_bridge::lane::replay;
use process_common::output_within;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl")
        })
        .collect();
    files.sort();
    files
}

/// The config a scenario names in a `# config: FILE` comment line.
fn named_config(events: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(events).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# config:"))
        .map(|name| scenario_dir().join(name.trim()))
}

fn replay_file(events: &Path) -> String {
    let toml = events.with_extension("toml");
    let config_path = if let Some(named) = named_config(events) {
        named
    } else if toml.exists() {
        toml
    } else {
        scenario_dir().join("site.toml")
    };
    let config = SiteConfig::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let input = std::io::BufReader::new(std::fs::File::open(events).unwrap());
    let mut out = Vec::new();
    replay::run(&config, input, &mut out, true)
        .unwrap_or_else(|e| panic!("{}: {e}", events.display()));
    String::from_utf8(out).unwrap()
}

#[test]
fn every_scenario_prints_its_expected_reports() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for events in scenarios() {
        let got = replay_file(&events);
        let expected_path = events.with_extension("expected.jsonl");
        if bless {
            // Rewrites what changed, and fails for it: BLESS left set (in CI, say)
            // can never turn a difference into a pass.
            if std::fs::read_to_string(&expected_path).ok().as_deref() != Some(got.as_str()) {
                std::fs::write(&expected_path, &got).unwrap();
                failures.push(format!(
                    "{}: rewritten by BLESS (review the diff)",
                    expected_path.display()
                ));
            }
            continue;
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {} (run with BLESS=1)", expected_path.display()));
        if want.trim().is_empty() {
            failures.push(format!(
                "{}: expects nothing; end it with a passage that must be reported",
                events.display()
            ));
        }
        if got != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                events.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn suite_has_at_least_thirty_scenarios_covering_every_layout() {
    let names: Vec<String> = scenarios()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(names.len() >= 30, "only {} scenarios", names.len());
    for prefix in ["lg_", "g_", "l_", "c_"] {
        assert!(
            names.iter().filter(|n| n.starts_with(prefix)).count() >= 3,
            "layout {prefix} under-covered"
        );
    }
}

#[test]
fn replay_is_deterministic() {
    for events in scenarios() {
        assert_eq!(
            replay_file(&events),
            replay_file(&events),
            "{}",
            events.display()
        );
    }
}

#[test]
fn replay_command_prints_reports_as_json_lines() {
    let dir = scenario_dir();
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_parking-bridge"))
            .args(["replay", "--config"])
            .arg(dir.join("site.toml"))
            .arg("--events")
            .arg(dir.join("lg_entry_then_exit_with_fee.jsonl")),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["entry", "exit"]);
    assert!(text.contains("\"price\":1000"), "{text}");
}

#[test]
fn replay_command_names_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("bad.jsonl");
    std::fs::write(&events, "# comment\n{\"lane\":\"in-lg\"}\n").unwrap();
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_parking-bridge"))
            .args(["replay", "--config"])
            .arg(scenario_dir().join("site.toml"))
            .arg("--events")
            .arg(&events),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
}
