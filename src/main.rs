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

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::PlatformTest { config } => platform_test(&config),
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
