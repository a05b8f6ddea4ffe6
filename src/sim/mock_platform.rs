//! `parking-bridge mock-platform`: the mock City Brain platform (`platform::mock`) as a
//! command. Its options are checked and turned into the mock's configuration and
//! fault dice ([`MockPlatformArgs::build`]); [`serve`] answers until SIGTERM/SIGINT,
//! after printing `listening on ADDR` (whoever starts it reads the port there).

use crate::platform::Secret;
use crate::platform::mock::{
    Faults, Mock, MockBehaviour, MockConfig, MockError, RefusalShape, RefuseRule,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct MockPlatformArgs {
    /// Address to listen on (port 0 picks a free port; see the first line printed).
    #[arg(long, default_value = "127.0.0.1:8780")]
    pub listen: String,
    /// The app id the mock accepts.
    #[arg(long)]
    pub app_id: String,
    /// The 16-character app secret (SM4 key).
    #[arg(long, env = "PARKING_BRIDGE_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// Registered lot(s); others get PARKING_LOT_NOT_EXIST. Default: any lot.
    #[arg(long = "parking-lot-no")]
    pub parking_lot_no: Vec<String>,
    /// Append each request, decrypted, as one JSON line; replayed on start.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction (0..1) of requests answered HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fraction (0..1) of connections closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Fraction (0..1) answered `success:true` with an error code.
    #[arg(long, default_value_t = 0.0)]
    pub error_code_rate: f64,
    /// Answer 503 to everything for this many seconds...
    #[arg(long, default_value_t = 0)]
    pub outage_secs: u64,
    /// ...starting this many seconds after start.
    #[arg(long, default_value_t = 0)]
    pub outage_start_secs: u64,
    /// Seed for the fault dice (same seed, same faults).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Offset of sign_time and the generated inner_oder_no.
    #[arg(long, default_value = "+08:00")]
    pub utc_offset: String,
    /// Wrap answers in the SM4 envelope instead of plain JSON.
    #[arg(long)]
    pub envelope_answers: bool,
    /// Shape of refusals: result_code ({"success":false,"result_code":…}), error
    /// ({"success":false,"error":…}) or bare ({"success":false}), as in the spec.
    #[arg(long, default_value = "result_code")]
    pub refusal_shape: String,
    /// Code for an exit or snapshot of an unknown stay (ORDER_NOT_EXIST or
    /// OUT_ORDER_NO_NOT_EXIST).
    #[arg(long, default_value = "ORDER_NOT_EXIST")]
    pub not_exist_code: String,
    /// Answer every result code in lower case.
    #[arg(long)]
    pub lowercase_codes: bool,
    /// Refuse the snapshots of this plate's stays (repeatable).
    #[arg(long = "refuse-snapshots-of")]
    pub refuse_snapshots_of: Vec<String>,
    /// Refuse every report of this plate (repeatable).
    #[arg(long = "refuse-plate")]
    pub refuse_plate: Vec<String>,
    /// Refuse every request at the path given with --for, with this code.
    #[arg(long, requires = "for_path")]
    pub refuse_code: Option<String>,
    /// The path --refuse-code applies to, e.g. /barrier/uploadSnapshot.
    #[arg(long = "for", requires = "refuse_code")]
    pub for_path: Option<String>,
    /// Refuse requests whose envelope timestamp is further than this from the mock's
    /// clock (0: accept any).
    #[arg(long, default_value_t = 600)]
    pub timestamp_window_secs: u64,
    /// Accept a message_id seen before (default: refused as a replay).
    #[arg(long)]
    pub allow_replayed_message_ids: bool,
    /// Refuse every report of this many stays in a hundred (0–100), always the same
    /// stays (a stable hash of out_order_no).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub refuse_percent: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum MockPlatformError {
    #[error("--app-secret: {0}")]
    Secret(String),
    #[error("--utc-offset: expected an offset like +08:00")]
    Offset,
    #[error("{0} must be between 0 and 1")]
    Rate(&'static str),
    #[error("the fault rates add up to more than 1")]
    Rates,
    #[error("--refusal-shape must be result_code, error or bare")]
    RefusalShape,
    #[error(transparent)]
    Mock(#[from] MockError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl MockPlatformArgs {
    /// The mock these options describe (its record file replayed), or what is wrong
    /// with them.
    pub fn build(self) -> Result<Mock, MockPlatformError> {
        let a = self;
        let secret =
            Secret::new(&a.app_secret).map_err(|e| MockPlatformError::Secret(e.to_string()))?;
        let offset = crate::time::parse_offset(&a.utc_offset).ok_or(MockPlatformError::Offset)?;
        for (name, rate) in [
            ("--fail-rate", a.fail_rate),
            ("--drop-rate", a.drop_rate),
            ("--error-code-rate", a.error_code_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(MockPlatformError::Rate(name));
            }
        }
        if a.fail_rate + a.drop_rate + a.error_code_rate > 1.0 {
            return Err(MockPlatformError::Rates);
        }
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
        let refusal_shape =
            RefusalShape::parse(&a.refusal_shape).ok_or(MockPlatformError::RefusalShape)?;
        let snapshots_of = a.refuse_snapshots_of.iter().map(|plate| RefuseRule {
            path: Some(crate::platform::wire::SNAPSHOT_PATH.to_string()),
            plate: Some(plate.clone()),
            code: None,
        });
        let plates = a.refuse_plate.iter().map(|plate| RefuseRule {
            plate: Some(plate.clone()),
            ..RefuseRule::default()
        });
        let at_path = match (a.refuse_code, a.for_path) {
            (Some(code), Some(path)) => Some(RefuseRule {
                path: Some(path),
                plate: None,
                code: Some(code),
            }),
            _ => None,
        };
        let behaviour = MockBehaviour {
            refusal_shape,
            not_exist_code: a.not_exist_code,
            lowercase_codes: a.lowercase_codes,
            rules: snapshots_of.chain(plates).chain(at_path).collect(),
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
        Ok(Mock::new(cfg, faults, a.record)?)
    }
}

/// Serves `mock` on `listen` until SIGTERM or SIGINT; writes `listening on ADDR` to
/// `out` once the signal handlers are in place and the port is bound.
pub async fn serve(mock: Mock, listen: &str, mut out: impl Write) -> Result<(), MockPlatformError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers before "listening on": whoever reads that line may stop us at once.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    tokio::select! {
        r = crate::platform::mock::serve(listener, Arc::new(mock)) => r?,
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockPlatformArgs,
    }

    fn args(extra: &[&str]) -> MockPlatformArgs {
        let base = ["mock", "--app-id", "a", "--app-secret", "0123456789abcdef"];
        Cli::parse_from(base.iter().chain(extra)).args
    }

    #[test]
    fn options_are_checked_before_the_mock_is_built() {
        assert!(args(&[]).build().is_ok());
        let err = |extra: &[&str]| args(extra).build().err().map(|e| e.to_string());
        assert_eq!(
            err(&["--fail-rate", "1.5"]).as_deref(),
            Some("--fail-rate must be between 0 and 1")
        );
        assert_eq!(
            err(&["--fail-rate", "0.6", "--drop-rate", "0.6"]).as_deref(),
            Some("the fault rates add up to more than 1")
        );
        assert!(
            err(&["--utc-offset", "8"])
                .unwrap()
                .starts_with("--utc-offset")
        );
        assert!(
            err(&["--refusal-shape", "loud"])
                .unwrap()
                .starts_with("--refusal-shape")
        );
        let short = MockPlatformArgs {
            app_secret: "short".into(),
            ..args(&[])
        };
        assert!(
            short
                .build()
                .err()
                .unwrap()
                .to_string()
                .starts_with("--app-secret: ")
        );
    }
}
