//! The `parking-bridge` command line. Only argument handling lives here; each
//! command is implemented by the module that owns it.

use clap::{Parser, Subcommand};
use parking_bridge::config::SiteConfig;
use parking_bridge::ops::logging::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "parking-bridge",
    version,
    about = "Reports parking-lane entries and exits to the City Brain platform",
    long_about = "Reads loop detectors, barrier gates and plate cameras (Modbus RTU/TCP, MQTT), \
turns what they see into vehicle entries and exits, and reports them, SM4-encrypted, \
to the City Brain smart-parking platform.\n\n\
Installers: start with `parking-bridge check --config FILE`, then \
`parking-bridge platform-test --config FILE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format on stderr (text adapts to a terminal or journald).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a site config; prints every error with file, line and key (exit 0 = valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Installer's checklist: config, secret, storage, serial ports and devices, MQTT and
    /// cameras, platform, clock. One ✓/✗ line each with a hint (exit 0 = all ✓).
    Doctor {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    logging::init(cli.log_format, &logging::initial_filter("info"))?;
    match cli.command {
        Command::Check { config } => match SiteConfig::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Doctor { config } => Ok(parking_bridge::ops::doctor::main(&config)),
    }
}
