//! `check` and `platform-test` as real processes against `mock-platform` over loopback.

mod platform_common;
mod process_common;

use platform_common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A site config for `base_url` in a fresh temp dir (kept alive by the returned guard).
fn site(base_url: &str, secret: &str, lot: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = site_config(dir.path(), base_url, secret, lot);
    (dir, cfg)
}

/// `platform-test --config CFG` within `deadline`: the process and its report (stdout).
fn platform_test(cfg: &Path, deadline: Duration) -> (Output, String) {
    let out = run_cli(
        &["platform-test", "--config", cfg.to_str().unwrap()],
        deadline,
    );
    let text = stdout(&out);
    (out, text)
}

/// `platform-test` that must exit with 1 (the platform refused or could not be
/// reached); returns its report.
fn platform_test_fails(cfg: &Path, deadline: Duration) -> String {
    let (out, text) = platform_test(cfg, deadline);
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

/// `check --config CFG`, which only reads files: 10 s is plenty.
fn check(cfg: &Path) -> Output {
    run_cli(
        &["check", "--config", cfg.to_str().unwrap()],
        Duration::from_secs(10),
    )
}

/// Replaces `from` with `to` in the config file; returns the new text.
fn edit_config(cfg: &Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(cfg).unwrap().replace(from, to);
    std::fs::write(cfg, &text).unwrap();
    text
}

/// `http://127.0.0.1:PORT` of a port nobody listens on: bound, noted, released.
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn platform_test_against_mock_is_accepted() {
    let mock = MockProcess::start(&["--parking-lot-no", "P001"]);
    let (_dir, cfg) = site(&mock.base_url(), SECRET, "P001");
    let (out, text) = platform_test(&cfg, Duration::from_secs(20));
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("OK: the platform accepted the heartbeat"),
        "{text}"
    );
    assert!(
        text.contains(r#"{"parking_lot_no":"P001","status":"alive"}"#),
        "prints what was sent: {text}"
    );
    assert!(text.contains("app_secret:    ****"), "{text}");
    assert!(
        !text.contains(SECRET),
        "the secret must never be printed: {text}"
    );
}

#[test]
fn platform_test_with_wrong_key_is_refused_with_key_hint() {
    let mock = MockProcess::start(&[]);
    let (_dir, cfg) = site(&mock.base_url(), "0000000000000000", "P001");
    let text = platform_test_fails(&cfg, Duration::from_secs(20));
    assert!(
        text.contains("DECRYPT_FAILED"),
        "shows the platform's error: {text}"
    );
    assert!(text.contains("FAILED: wrong key"), "{text}");
    assert!(!text.contains("0000000000000000"), "{text}");
}

#[test]
fn platform_test_for_unregistered_lot_says_so() {
    let mock = MockProcess::start(&["--parking-lot-no", "P001"]);
    let (_dir, cfg) = site(&mock.base_url(), SECRET, "P777");
    let text = platform_test_fails(&cfg, Duration::from_secs(20));
    assert!(
        text.contains("PARKING_LOT_NOT_EXIST") && text.contains("FAILED: lot not registered"),
        "{text}"
    );
}

#[test]
fn platform_test_with_platform_down_gives_refused_hint_quickly() {
    let (_dir, cfg) = site(&closed_port_url(), SECRET, "P001");
    let started = Instant::now();
    let text = platform_test_fails(&cfg, Duration::from_secs(10));
    assert!(text.contains("FAILED: refused"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn platform_test_with_silent_platform_gives_timeout_hint_quickly() {
    // Accepts connections but never answers: a hung platform or a black-holing firewall.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_dir, cfg) = site(&format!("http://127.0.0.1:{port}"), SECRET, "P001");
    let started = Instant::now();
    let text = platform_test_fails(&cfg, Duration::from_secs(10));
    assert!(text.contains("FAILED: timeout"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "request_timeout_secs = 2 bounds it: {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn check_reports_file_line_and_key() {
    let (_dir, cfg) = site("http://127.0.0.1:1", SECRET, "P001");
    let out = check(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));

    let text = edit_config(&cfg, "direction = \"entry\"", "direction = \"sideways\"");
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(1));
    let line = text.lines().position(|l| l.contains("sideways")).unwrap() + 1;
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:{line}: lanes[0].direction: ", cfg.display())),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn check_refuses_world_readable_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, cfg) = site("http://127.0.0.1:1", SECRET, "P001");
    let secret = dir.path().join("app_secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    edit_config(
        &cfg,
        &format!("app_secret = \"{SECRET}\""),
        &format!("app_secret_file = \"{}\"", secret.display()),
    );
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("platform.app_secret_file: ") && stderr(&out).contains("chmod 600"),
        "{}",
        stderr(&out)
    );

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn platform_test_with_https_to_a_plain_http_server_gives_tls_hint() {
    let mock = MockProcess::start(&[]);
    let (_dir, cfg) = site(&format!("https://127.0.0.1:{}", mock.port), SECRET, "P001");
    let text = platform_test_fails(&cfg, Duration::from_secs(10));
    assert!(text.contains("FAILED: TLS"), "{text}");
}

#[test]
fn platform_test_with_wrong_path_gives_url_hint() {
    let mock = MockProcess::start(&[]);
    let (_dir, cfg) = site(&format!("{}/api/v9", mock.base_url()), SECRET, "P001");
    let text = platform_test_fails(&cfg, Duration::from_secs(10));
    assert!(text.contains("FAILED: wrong URL"), "{text}");
}

#[test]
fn platform_test_with_wrong_app_id_says_so() {
    let mock = MockProcess::start(&[]);
    let (_dir, cfg) = site(&mock.base_url(), SECRET, "P001");
    edit_config(&cfg, APP_ID, "someone-else");
    let text = platform_test_fails(&cfg, Duration::from_secs(10));
    assert!(
        text.contains("INVALID_APP_ID") && text.contains("FAILED: wrong app_id"),
        "{text}"
    );
}

#[test]
fn platform_test_with_an_unresolvable_host_gives_the_dns_hint() {
    // `.invalid` never resolves (RFC 2606). Timeouts well above what the resolver may
    // take (bounded by RES_OPTIONS), so the answer is the DNS failure and only that —
    // never a timeout standing in for it.
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        platform_common::site_config(dir.path(), "http://bridge-test.invalid", SECRET, "P001");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("connect_timeout_secs = 1", "connect_timeout_secs = 20")
        .replace("request_timeout_secs = 2", "request_timeout_secs = 20");
    std::fs::write(&cfg, text).unwrap();
    let out = process_common::output_within(
        std::process::Command::new(platform_common::BIN)
            .args(["platform-test", "--config"])
            .arg(&cfg)
            .env_remove("PARKING_BRIDGE_APP_SECRET")
            .env("RES_OPTIONS", "timeout:2 attempts:1"),
        Duration::from_secs(30),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAILED: DNS"), "{text}");
    assert!(!text.contains("FAILED: timeout"), "{text}");
}

#[test]
fn platform_test_shows_the_raw_answer_and_an_unknown_code_taught_through_the_site_config() {
    let mock = MockProcess::start(&[
        "--refuse-code",
        "INVALID_SIGN",
        "--for",
        "/barrier/heartbeat",
    ]);
    let (_dir, cfg) = site(&mock.base_url(), SECRET, "P001");
    // Not in the table: decided by success:false, a refusal of this report.
    let text = platform_test_fails(&cfg, Duration::from_secs(20));
    assert!(text.contains("raw answer:"), "{text}");
    assert!(text.contains(r#""result_code":"INVALID_SIGN""#), "{text}");
    assert!(text.contains("verdict:       refused"), "{text}");
    assert!(text.contains(r#"is not in the table"#), "{text}");
    assert!(
        text.contains("[platform.result_codes]"),
        "how to teach it: {text}"
    );
    // Taught, case-insensitively: a configuration fault.
    edit_config(
        &cfg,
        "\n[lot]",
        "\n[platform.result_codes]\n\"invalid_sign\" = \"config_fault\"\n\n[lot]",
    );
    assert!(check(&cfg).status.success());
    let text = platform_test_fails(&cfg, Duration::from_secs(20));
    assert!(text.contains("verdict:       config_fault"), "{text}");
    assert!(
        text.contains(r#"result_code "INVALID_SIGN" maps to config_fault"#),
        "{text}"
    );
    // A verdict that does not exist is refused by `check` with file, line and key.
    edit_config(&cfg, "\"config_fault\"", "\"maybe\"");
    let out = check(&cfg);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("platform.result_codes") && err.contains("config_fault"),
        "{err}"
    );
}

#[test]
fn platform_test_with_an_enveloped_answer_prints_it_decrypted() {
    let mock = MockProcess::start(&["--envelope-answers"]);
    let (_dir, cfg) = site(&mock.base_url(), SECRET, "P001");
    let (out, text) = platform_test(&cfg, Duration::from_secs(20));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(r#"answer JSON:   {"result_code":"success""#),
        "decrypted: {text}"
    );
    assert!(text.contains("verdict:       delivered"), "{text}");
}
