//! The device-related commands of the real binary.

mod process_common;

use process_common::output_within;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_parking-bridge");

/// `parking-bridge check --config PATH` run from `cwd`, with the app secret in the
/// environment so that only the config file itself can fail the check.
fn check(path: &Path, cwd: &Path) -> Output {
    output_within(
        Command::new(BIN)
            .arg("check")
            .arg("--config")
            .arg(path)
            .current_dir(cwd)
            .env("PARKING_BRIDGE_APP_SECRET", "0123456789abcdef"),
        Duration::from_secs(30),
    )
}

#[test]
fn ports_command_lists_ports_or_says_there_are_none() {
    let out = output_within(Command::new(BIN).arg("ports"), Duration::from_secs(30));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("no serial ports found") || text.contains("/dev/"),
        "{text}"
    );
}

#[test]
fn check_reports_device_profile_mismatch_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
         [storage]\ndir = \"/tmp\"\n[[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n\
         [[buses]]\nname = \"b\"\nport = \"/dev/parking/bus1\"\n\
         [[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\nbus = \"b\"\n\
         roles = { loop_a = \"di42\" }\n",
    )
    .unwrap();
    // Run from an empty directory: the built-in profiles must still be found.
    let out = check(&path, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{}:21: devices[0].roles.loop_a: profile \"waveshare-modbus-rtu-io-8ch\" has no point \"di42\"", path.display())),
        "{err}"
    );
    let fixed = std::fs::read_to_string(&path)
        .unwrap()
        .replace("di42", "di1");
    std::fs::write(&path, fixed).unwrap();
    let out = check(&path, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_device_example_is_a_valid_site_config() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Installing devices")
        .nth(1)
        .expect("README has the section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml example");
    let text = format!(
        "{block}\n[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
         [storage]\ndir = \"/tmp\"\n[[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"P1\"\n"
    );
    let config =
        parking_bridge::config::SiteConfig::from_toml(&text, std::path::Path::new("README.md"))
            .unwrap_or_else(|e| panic!("{e}"));
    parking_bridge::driver::load_profiles(&config).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn check_warns_when_a_profile_reads_past_the_models_documented_size() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    // A copy of the Waveshare profile that reads a ninth input the module does not have.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/device-profiles/waveshare-modbus-rtu-io-8ch.toml"
    ))
    .unwrap();
    std::fs::write(
        profiles.join("waveshare-modbus-rtu-io-8ch.toml"),
        format!("{shipped}\n[[modbus.points]]\nname = \"di9\"\nfunction = 2\naddress = 8\ntype = \"bit\"\n"),
    )
    .unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        format!(
            "profile_dirs = [{:?}]\n[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\napp_secret = \"0123456789abcdef\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n\
             [storage]\ndir = \"/tmp\"\n[[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n\
             [[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\ntcp = \"gw:502\"\nslave = 3\n\
             roles = {{ loop_a = \"di1\" }}\n",
            profiles.display().to_string()
        ),
    )
    .unwrap();
    let out = check(&path, dir.path());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert!(
        err.contains("warning: ")
            && err.contains("devices[0].profile")
            && err.contains("addresses 0–8, but the Modbus RTU IO 8CH has 8"),
        "{err}"
    );
}
