//! The `parking-bridge` command line. Only argument handling lives here; each
//! command is implemented by the module that owns it.

use clap::{Parser, Subcommand};
use parking_bridge::config::SiteConfig;
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
}

#[derive(Subcommand)]
enum Command {
    /// Validate a site config; prints every error with file, line and key (exit 0 = valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the lane logic offline over a raw-event journal (JSON lines) and print the
    /// resulting reports as JSON lines, deterministically.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// JSON-lines file of raw events (a journal file or a hand-written scenario).
        #[arg(long)]
        events: PathBuf,
        /// Also print each passage the lane machines saw (why a report was made).
        #[arg(long)]
        passages: bool,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
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
        Command::Replay {
            config,
            events,
            passages,
        } => {
            let site = match SiteConfig::load(&config) {
                Ok(site) => site,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let file = std::fs::File::open(&events)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", events.display()))?;
            let stdout = std::io::stdout().lock();
            match parking_bridge::lane::replay::run(
                &site,
                std::io::BufReader::new(file),
                stdout,
                passages,
            ) {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("{}: {e}", events.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
