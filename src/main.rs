//! The `parking-bridge` command line. Only argument handling lives here; each
//! command is implemented by the module that owns it.

use clap::{Parser, Subcommand};
use parking_bridge::config::SiteConfig;
use std::path::{Path, PathBuf};
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
}

#[derive(Subcommand)]
enum Command {
    /// Validate a site config; prints every error with file, line and key (exit 0 = valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List serial ports with their /dev/serial/by-id and by-path names, and print the
    /// udev rule line that pins each USB-RS485 adapter to /dev/parking/<name>.
    Ports,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ports => {
            let ports =
                parking_bridge::driver::ports::list_ports(Path::new("/sys"), Path::new("/dev"));
            print!("{}", parking_bridge::driver::ports::report(&ports));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match SiteConfig::load(&config) {
            Ok(site) => match parking_bridge::driver::load_profiles(&site) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(parking_bridge::driver::ProfileError::Devices(problems)) => {
                    // Device-vs-profile problems are keys of the site config: locate them.
                    let text = std::fs::read_to_string(&config).unwrap_or_default();
                    for p in problems {
                        let located = parking_bridge::config::Located {
                            file: config.clone(),
                            line: parking_bridge::config::locate_key(&text, &p.key),
                            key: p.key,
                            message: p.message,
                        };
                        eprintln!("{located}");
                    }
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            },
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
