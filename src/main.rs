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
    /// Commissioning: send one heartbeat to the platform and show what was sent (secret
    /// masked) and what came back. Exit 0 only if the platform accepted it; otherwise a
    /// hint says what to check (DNS, TLS, timeout, refused, wrong key, lot not registered).
    PlatformTest {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// A strict stand-in for the City Brain platform, for commissioning without a test
    /// environment and for tests. Prints `listening on ADDR` first.
    MockPlatform(MockPlatformArgs),
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

#[derive(clap::Args)]
struct MockPlatformArgs {
    /// Address to listen on (port 0 picks a free port; see the first line printed).
    #[arg(long, default_value = "127.0.0.1:8780")]
    listen: String,
    /// The app id the mock accepts.
    #[arg(long)]
    app_id: String,
    /// The 16-character app secret (SM4 key).
    #[arg(long, env = "PARKING_BRIDGE_APP_SECRET", hide_env_values = true)]
    app_secret: String,
    /// Registered lot(s); others get PARKING_LOT_NOT_EXIST. Default: any lot.
    #[arg(long = "parking-lot-no")]
    parking_lot_no: Vec<String>,
    /// Append each request, decrypted, as one JSON line; replayed on start.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0..1) of requests answered HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Fraction (0..1) of connections closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction (0..1) answered `success:true` with an error code.
    #[arg(long, default_value_t = 0.0)]
    error_code_rate: f64,
    /// Answer 503 to everything for this many seconds...
    #[arg(long, default_value_t = 0)]
    outage_secs: u64,
    /// ...starting this many seconds after start.
    #[arg(long, default_value_t = 0)]
    outage_start_secs: u64,
    /// Seed for the fault dice (same seed, same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Offset of sign_time and the generated inner_oder_no.
    #[arg(long, default_value = "+08:00")]
    utc_offset: String,
    /// Wrap answers in the SM4 envelope instead of plain JSON.
    #[arg(long)]
    envelope_answers: bool,
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
        Command::PlatformTest { config } => platform_test(&config),
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
        Command::MockPlatform(args) => mock_platform(args),
        Command::Check { config } => match SiteConfig::load_with_secret(&config) {
            Ok((site, secret)) => {
                // Building the client reads ca_file and parses proxy: report those too.
                if let Err(e) =
                    parking_bridge::platform::PlatformClient::new(&site.platform, secret)
                {
                    eprintln!("{}: platform: {e}", config.display());
                    return Ok(ExitCode::FAILURE);
                }
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

fn platform_test(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    use parking_bridge::platform::{PlatformClient, commission};
    let (site, secret) = match SiteConfig::load_with_secret(config) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let client = match PlatformClient::new(&site.platform, secret) {
        Ok(c) => c,
        Err(e) => {
            println!("FAILED: {e}\nhint: {}", e.hint());
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(commission::platform_test(
        &site,
        &client,
        &mut std::io::stdout(),
    ));
    Ok(if outcome.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn mock_platform(a: MockPlatformArgs) -> anyhow::Result<ExitCode> {
    use parking_bridge::platform::Secret;
    use parking_bridge::platform::mock::{Faults, Mock, MockConfig, serve};
    use std::io::Write;
    use std::time::Duration;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let secret = Secret::new(&a.app_secret).map_err(|e| anyhow::anyhow!("--app-secret: {e}"))?;
    let offset = parking_bridge::time::parse_offset(&a.utc_offset)
        .ok_or_else(|| anyhow::anyhow!("--utc-offset: expected an offset like +08:00"))?;
    for (name, rate) in [
        ("--fail-rate", a.fail_rate),
        ("--drop-rate", a.drop_rate),
        ("--error-code-rate", a.error_code_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1"
        );
    }
    anyhow::ensure!(
        a.fail_rate + a.drop_rate + a.error_code_rate <= 1.0,
        "the fault rates add up to more than 1"
    );
    let outage = (a.outage_secs > 0).then(|| {
        (
            Duration::from_secs(a.outage_start_secs),
            Duration::from_secs(a.outage_secs),
        )
    });
    let faults = Faults::new(
        Duration::from_millis(a.latency_ms),
        a.fail_rate,
        a.drop_rate,
        a.error_code_rate,
        outage,
        a.seed,
    );
    let cfg = MockConfig {
        app_id: a.app_id,
        secret,
        lots: a.parking_lot_no,
        offset,
        envelope_answers: a.envelope_answers,
    };
    let mock = std::sync::Arc::new(Mock::new(cfg, faults, a.record)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen).await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = serve(listener, mock) => r?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
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
