//! The `parking-bridge` command line. Only argument handling lives here; each
//! command is implemented by the module that owns it.

use clap::{Parser, Subcommand};
use parking_bridge::config::SiteConfig;
use parking_bridge::store::operator::{self, EnterArgs, ExitArgs, OperatorError};
use parking_bridge::time::Timestamp;
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
    /// Run the bridge: deliver queued reports, send heartbeats, until SIGTERM/SIGINT.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Record a vehicle by hand (a camera missed it, or a lane has no devices).
    Stay {
        #[command(subcommand)]
        action: StayCommand,
    },
    /// Reports waiting for the platform: pending count, oldest age, last error per kind.
    Outbox {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the occupied/free spaces, or correct them after a recount (`occupancy set N`).
    Occupancy {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<OccupancyCommand>,
    },
}

#[derive(Subcommand)]
enum StayCommand {
    /// A vehicle entered; prints the new out_order_no.
    Enter {
        #[arg(long, short)]
        config: PathBuf,
        /// Plate without spaces, e.g. 闽A12345.
        #[arg(long)]
        plate: String,
        /// Plate colour code: pnc_01 unknown, pnc_02 blue, pnc_03 yellow, pnc_04 white,
        /// pnc_05 black, pnc_06 green, pnc_07 yellow-green, pnc_08 special.
        #[arg(long)]
        color: String,
        /// An entry lane id from the config.
        #[arg(long)]
        lane: String,
        /// normal, special, white or parkcard.
        #[arg(long)]
        car_type: Option<String>,
        /// Lot-local entry time "YYYY-MM-DD HH:MM:SS" (default: now).
        #[arg(long)]
        time: Option<String>,
        /// JPEG or PNG of the car.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        #[arg(long)]
        operator: Option<String>,
    },
    /// A vehicle left: closes the open stay of the plate; prints its out_order_no.
    /// Without --price/--should-pay/--paid the charge is reported as 0; the lot's
    /// tariff applies instead once one is configured.
    Exit {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        plate: String,
        /// An exit lane id from the config.
        #[arg(long)]
        lane: String,
        /// Lot-local exit time "YYYY-MM-DD HH:MM:SS" (default: now).
        #[arg(long)]
        time: Option<String>,
        /// Total charge of the stay, fen.
        #[arg(long)]
        price: Option<i64>,
        /// Still due, fen.
        #[arg(long)]
        should_pay: Option<i64>,
        /// Actually paid, fen.
        #[arg(long)]
        paid: Option<i64>,
        #[arg(long)]
        snapshot: Option<PathBuf>,
        #[arg(long)]
        operator: Option<String>,
    },
    /// Stays, newest first.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only vehicles still parked.
        #[arg(long)]
        open: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum OccupancyCommand {
    /// Set the number of occupied spaces.
    Set { occupied: i64 },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Stay { action } => stay(action),
        Command::Outbox { config } => {
            let site = load(&config)?;
            operator_output(operator::outbox(&site, Timestamp::now()))
        }
        Command::Occupancy { config, action } => {
            let site = load(&config)?;
            let set = action.map(|OccupancyCommand::Set { occupied }| occupied);
            operator_output(operator::occupancy(&site, set))
        }
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
    }
}

fn load(config: &Path) -> anyhow::Result<SiteConfig> {
    SiteConfig::load(config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Prints an operator command's result; a refusal is a plain message and exit 2.
fn operator_output(result: Result<String, OperatorError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(text) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(OperatorError::Refused(msg)) => {
            eprintln!("refused: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

fn stay(action: StayCommand) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    match action {
        StayCommand::Enter {
            config,
            plate,
            color,
            lane,
            car_type,
            time,
            snapshot,
            operator,
        } => {
            let site = load(&config)?;
            let args = EnterArgs {
                plate,
                color,
                lane,
                car_type,
                time,
                snapshot,
                operator,
            };
            operator_output(operator::stay_enter(&site, args, now))
        }
        StayCommand::Exit {
            config,
            plate,
            lane,
            time,
            price,
            should_pay,
            paid,
            snapshot,
            operator,
        } => {
            let site = load(&config)?;
            let args = ExitArgs {
                plate,
                lane,
                time,
                price,
                should_pay,
                paid,
                snapshot,
                operator,
            };
            operator_output(operator::stay_exit(&site, args, now))
        }
        StayCommand::List {
            config,
            open,
            limit,
        } => {
            let site = load(&config)?;
            operator_output(operator::stay_list(&site, open, limit))
        }
    }
}

fn run(config: &Path) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let site = load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(parking_bridge::service::run(site))?;
    Ok(ExitCode::SUCCESS)
}
