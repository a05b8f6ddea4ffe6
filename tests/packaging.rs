//! What the Debian package installs must work: the example config passes `check`, and
//! the systemd unit passes `systemd-analyze verify` (pointed at the built binary, since
//! /usr/bin/parking-bridge does not exist on a build machine).

mod process_common;

use process_common::output_within;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn example_config_passes_check() {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_parking-bridge"))
            .args(["check", "--config"])
            .arg(repo("packaging/config.toml"))
            // The installer writes the secret file at commissioning; `check` wants a secret.
            .env("PARKING_BRIDGE_APP_SECRET", "0123456789abcdef"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "packaging/config.toml must stay valid:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo("packaging/parking-bridge.service")).unwrap();
    assert!(unit.contains(
        "ExecStart=/usr/bin/parking-bridge run --config /etc/parking-bridge/config.toml"
    ));
    for required in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "User=parking-bridge",
        "SupplementaryGroups=dialout",
        "StateDirectory=parking-bridge",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/parking-bridge",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(required)),
            "unit lacks {required}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("parking-bridge.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/bin/parking-bridge",
            env!("CARGO_BIN_EXE_parking-bridge"),
        ),
    )
    .unwrap();
    let out = output_within(
        Command::new("systemd-analyze").arg("verify").arg(&copy),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown keys are only warnings (exit 0) but mean a typo that silently weakens the unit.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

#[test]
fn maintainer_scripts_are_valid_shell_and_create_the_user_in_dialout() {
    for script in ["packaging/postinst", "packaging/postrm"] {
        let out = output_within(
            Command::new("sh").arg("-n").arg(repo(script)),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(repo(script)).unwrap();
        assert!(
            text.contains("#DEBHELPER#"),
            "{script} must leave room for the unit's snippets"
        );
    }
    let postinst = std::fs::read_to_string(repo("packaging/postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system"),
        "creates a system user"
    );
    assert!(
        postinst.contains("adduser parking-bridge dialout"),
        "adds it to dialout"
    );
}
