//! The `parking-bridge` command line. Only argument handling lives here; each
//! command is implemented by the module that owns it.

use clap::{Parser, Subcommand};
use parking_bridge::config::SiteConfig;
use parking_bridge::operator::{self, EnterArgs, ExitArgs, OperatorError};
use parking_bridge::ops::logging::{self, LogFormat};
use parking_bridge::time::Timestamp;
use std::io::IsTerminal;
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
    /// Log line format on stderr (text adapts to a terminal or journald).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated lot end to end: simulated loops, gates and cameras on loopback
    /// (Modbus RTU over a pty, Modbus TCP, MQTT), the real bridge, and the mock platform
    /// (or a real one with --platform-url). Exit 0 only when the platform's record
    /// matches the simulation.
    Demo(parking_bridge::sim::demo::DemoArgs),
    /// Validate a site config; prints every error with file, line and key (exit 0 = valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// The configs of the lot's other nodes (`[cluster]`): checked together with
        /// this one (one lot node, each lane on one node, lanes known to the lot node).
        #[arg(long = "node", value_name = "CONFIG")]
        nodes: Vec<PathBuf>,
    },
    /// Installer's checklist: config, secret, storage, serial ports and devices, MQTT and
    /// cameras, platform, clock. One ✓/✗ line each with a hint (exit 0 = all ✓).
    Doctor {
        #[arg(long, short)]
        config: PathBuf,
        /// How long to wait for each camera to publish something (seconds).
        #[arg(long, default_value_t = 10)]
        camera_wait: u64,
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
    /// Reports waiting for the platform: pending count, oldest age, last error per kind;
    /// `held` lists the reports the platform refused too often, `retry` and `drop` act
    /// on them.
    Outbox {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<OutboxCommand>,
    },
    /// Show the occupied/free spaces, or correct them after a recount (`occupancy set N`).
    Occupancy {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<OccupancyCommand>,
    },
    /// A consistent copy of the state database, safe while `run` runs (SQLite's online
    /// backup, checked, then renamed into place). Restore: docs/operations.md.
    Backup {
        #[arg(long, short)]
        config: PathBuf,
        /// The backup file (default: `[storage] backup_file`).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Blind intervals across restarts (crash, watchdog restart, power cut, stop), per
    /// lane: from the previous run's last sign of life to the lane's devices reporting
    /// again, and what was recovered or could not be. Oldest first, times lot-local.
    Gaps {
        #[arg(long, short)]
        config: PathBuf,
        /// Print each gap as its JSON line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List serial ports with their /dev/serial/by-id and by-path names, and print the
    /// udev rule line that pins each USB-RS485 adapter to /dev/parking/<name>.
    Ports,
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
    /// Shape of refusals: result_code ({"success":false,"result_code":…}), error
    /// ({"success":false,"error":…}) or bare ({"success":false}), as in the spec.
    #[arg(long, default_value = "result_code")]
    refusal_shape: String,
    /// Code for an exit or snapshot of an unknown stay (ORDER_NOT_EXIST or
    /// OUT_ORDER_NO_NOT_EXIST).
    #[arg(long, default_value = "ORDER_NOT_EXIST")]
    not_exist_code: String,
    /// Answer every result code in lower case.
    #[arg(long)]
    lowercase_codes: bool,
    /// Refuse the snapshots of this plate's stays (repeatable).
    #[arg(long = "refuse-snapshots-of")]
    refuse_snapshots_of: Vec<String>,
    /// Refuse every report of this plate (repeatable).
    #[arg(long = "refuse-plate")]
    refuse_plate: Vec<String>,
    /// Refuse every request at the path given with --for, with this code.
    #[arg(long, requires = "for_path")]
    refuse_code: Option<String>,
    /// The path --refuse-code applies to, e.g. /barrier/uploadSnapshot.
    #[arg(long = "for", requires = "refuse_code")]
    for_path: Option<String>,
    /// Refuse requests whose envelope timestamp is further than this from the mock's
    /// clock (0: accept any).
    #[arg(long, default_value_t = 600)]
    timestamp_window_secs: u64,
    /// Accept a message_id seen before (default: refused as a replay).
    #[arg(long)]
    allow_replayed_message_ids: bool,
    /// Refuse every report of this many stays in a hundred (0–100), always the same
    /// stays (a stable hash of out_order_no).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    refuse_percent: u8,
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
        /// Record a plate whose format is not a Chinese one (foreign, temporary plates).
        #[arg(long)]
        any_plate: bool,
    },
    /// A vehicle left: closes the open stay of the plate; prints its out_order_no.
    /// Without --price/--should-pay/--paid the lot's tariff ([lot.tariff]) prices the
    /// stay (paid at the booth: should_pay 0, paid = price); no tariff: 0.
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
enum OutboxCommand {
    /// Reports held after repeated refusals: out_order_no, kind, plate (masked), first
    /// and last refusal, the platform's words.
    Held,
    /// Send held reports again (after fixing the cause), with a fresh refusal budget.
    Retry {
        /// The stay whose held reports go again.
        #[arg(required_unless_present = "all_held", conflicts_with = "all_held")]
        out_order_no: Option<String>,
        /// Every held report.
        #[arg(long)]
        all_held: bool,
    },
    /// Give up on a stay's held reports; they stay in the database as dropped, with the
    /// reason. Dropping a held entry drops the rest of its stay too.
    Drop {
        out_order_no: String,
        /// Why (kept with the dropped reports).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum OccupancyCommand {
    /// Set the number of occupied spaces.
    Set { occupied: i64 },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The demo's screen is its output: only warnings go to the log unless asked.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = logging::initial_filter(default_level);
    // The demo's live view owns a terminal: its log lines go to DIR/demo.log there.
    match &cli.command {
        Command::Demo(args) if std::io::stdout().is_terminal() => {
            logging::init_to_file(
                cli.log_format,
                &filter,
                &parking_bridge::sim::demo::log_file(args),
            )?;
        }
        _ => {
            logging::init(cli.log_format, &filter)?;
        }
    }
    match cli.command {
        Command::Demo(args) => demo(args),
        Command::PlatformTest { config } => platform_test(&config),
        Command::Run { config } => run(&config),
        Command::Stay { action } => stay(action),
        Command::Outbox { config, action } => {
            let Some(config) = config else {
                eprintln!("refused: outbox needs --config FILE");
                return Ok(ExitCode::from(2));
            };
            let site = load(&config)?;
            let now = Timestamp::now();
            operator_output(match action {
                None => operator::outbox(&site, now),
                Some(OutboxCommand::Held) => operator::outbox_held(&site),
                Some(OutboxCommand::Retry { out_order_no, .. }) => {
                    operator::outbox_retry(&site, out_order_no.as_deref(), now)
                }
                Some(OutboxCommand::Drop {
                    out_order_no,
                    reason,
                }) => operator::outbox_drop(&site, &out_order_no, &reason, now),
            })
        }
        Command::Occupancy { config, action } => {
            let site = load(&config)?;
            let set = action.map(|OccupancyCommand::Set { occupied }| occupied);
            operator_output(operator::occupancy(&site, set))
        }
        Command::MockPlatform(args) => mock_platform(args),
        Command::Ports => {
            let ports =
                parking_bridge::driver::ports::list_ports(Path::new("/sys"), Path::new("/dev"));
            print!("{}", parking_bridge::driver::ports::report(&ports));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, nodes } => Ok(check(&config, &nodes)),
        Command::Backup { config, to } => backup(&config, to),
        Command::Gaps { config, json } => gaps(&config, json),
        Command::Doctor {
            config,
            camera_wait,
        } => Ok(parking_bridge::ops::doctor::main(
            &config,
            std::time::Duration::from_secs(camera_wait),
        )),
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

fn gaps(config: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    use parking_bridge::lane::journal;
    let site = load(config)?;
    let dir = journal::journal_dir(&site.storage.dir);
    let gaps = journal::read_gaps(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let offset = site.platform.offset();
    if json {
        for g in &gaps {
            println!("{}", serde_json::to_string(g)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if gaps.is_empty() {
        println!("no restart gaps recorded in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<19} {:>8}  {:<5} {:<14} {:>9}  notes",
        "lane", "blind from", "seconds", "cause", "resumed", "recovered"
    );
    for g in &gaps {
        let mut notes = g.unresolved.join("; ");
        if !g.silent_devices.is_empty() {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&format!("silent: {}", g.silent_devices.join(", ")));
        }
        println!(
            "{:<12} {:<19} {:>8.1}  {:<5} {:<14} {:>9}  {}",
            g.lane,
            g.from.format_local(offset),
            (g.to.0 - g.from.0).max(0) as f64 / 1000.0,
            if g.clean_stop { "stop" } else { "crash" },
            g.resumed,
            g.recovered,
            notes
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let lang = parking_bridge::ops::i18n::Lang::from_env();
    let mut shown = Vec::new();
    let outcome = rt.block_on(commission::platform_test(&site, &client, &mut shown));
    print!(
        "{}",
        translate_verdict_lines(&String::from_utf8_lossy(&shown), lang)
    );
    Ok(if outcome.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// platform-test's `OK:`/`FAILED:` line in the installer's language (LANG); what was
/// sent and received stays verbatim.
fn translate_verdict_lines(text: &str, lang: parking_bridge::ops::i18n::Lang) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("FAILED: ") {
            Some(hint) if lang != parking_bridge::ops::i18n::Lang::En => {
                format!("{}: {}\n", lang.tr("FAILED"), lang.tr_text(hint))
            }
            _ => format!("{}\n", lang.tr_text(line)),
        })
        .collect()
}

fn mock_platform(a: MockPlatformArgs) -> anyhow::Result<ExitCode> {
    use parking_bridge::platform::Secret;
    use parking_bridge::platform::mock::{
        Faults, Mock, MockBehaviour, MockConfig, RefusalShape, RefuseRule, serve,
    };
    use std::io::Write;
    use std::time::Duration;
    // Logging is set up once in main (global --log-format).
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
    let Some(refusal_shape) = RefusalShape::parse(&a.refusal_shape) else {
        anyhow::bail!("--refusal-shape must be result_code, error or bare");
    };
    let mut rules: Vec<RefuseRule> = a
        .refuse_snapshots_of
        .iter()
        .map(|plate| RefuseRule {
            path: Some(parking_bridge::platform::wire::SNAPSHOT_PATH.to_string()),
            plate: Some(plate.clone()),
            code: None,
        })
        .collect();
    rules.extend(a.refuse_plate.iter().map(|plate| RefuseRule {
        plate: Some(plate.clone()),
        ..RefuseRule::default()
    }));
    if let (Some(code), Some(path)) = (a.refuse_code, a.for_path) {
        rules.push(RefuseRule {
            path: Some(path),
            plate: None,
            code: Some(code),
        });
    }
    let behaviour = MockBehaviour {
        refusal_shape,
        not_exist_code: a.not_exist_code,
        lowercase_codes: a.lowercase_codes,
        rules,
        timestamp_window: (a.timestamp_window_secs > 0)
            .then(|| Duration::from_secs(a.timestamp_window_secs)),
        refuse_replayed_message_ids: !a.allow_replayed_message_ids,
        refuse_percent: a.refuse_percent,
    };
    let cfg = MockConfig {
        app_id: a.app_id,
        secret,
        lots: a.parking_lot_no,
        offset,
        envelope_answers: a.envelope_answers,
        behaviour,
    };
    let mock = std::sync::Arc::new(Mock::new(cfg, faults, a.record)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        // Handlers before "listening on": whoever reads that line may stop us at once.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let listener = tokio::net::TcpListener::bind(&a.listen).await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        tokio::select! {
            r = serve(listener, mock) => r?,
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn backup(config: &Path, to: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use parking_bridge::ops::backup;
    let site = load(config)?;
    let Some(to) = to.or_else(|| site.storage.backup_file.clone()) else {
        eprintln!(
            "give --to FILE, or set [storage] backup_file in {}",
            config.display()
        );
        return Ok(ExitCode::from(2));
    };
    let db = site.storage.dir.join(parking_bridge::store::DB_FILE);
    let at = Timestamp::now();
    match backup::backup(&db, &to) {
        Ok(summary) => {
            tracing::info!(to = %summary.to.display(), bytes = summary.bytes, pending = summary.pending_reports, "backup written");
            println!("{}", backup::describe(&summary, at));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("backup failed: {e}");
            Ok(ExitCode::FAILURE)
        }
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
            any_plate,
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
                any_plate,
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
    // Logging is set up once in main (global --log-format); [logging] applies in run.
    parking_bridge::ops::remember_config_path(config);
    let site = load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(parking_bridge::service::run(site))?;
    Ok(ExitCode::SUCCESS)
}

/// `check`: prints what the library's check found; exit 0 only when it all passed.
fn check(config: &Path, nodes: &[PathBuf]) -> ExitCode {
    use parking_bridge::check::{self, Line};
    let report = check::check(config, nodes);
    for line in report.lines(parking_bridge::ops::i18n::Lang::from_env()) {
        match line {
            Line::Out(text) => println!("{text}"),
            Line::Err(text) => eprintln!("{text}"),
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(args: parking_bridge::sim::demo::DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(parking_bridge::sim::demo::run(args))?;
    // The embedded broker's threads never end on their own: leave without waiting.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
