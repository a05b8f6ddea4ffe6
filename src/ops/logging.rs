//! Logging set-up: `tracing` to stderr.
//!
//! - text (default): compact and coloured on a terminal; without timestamps under
//!   journald (`JOURNAL_STREAM` is set), because the journal stamps every line itself;
//!   plain with timestamps otherwise (a pipe, a file);
//! - JSON with `--log-format json`, one object per line.
//!
//! The level comes from `RUST_LOG`, else `[logging] level`; SIGHUP re-reads
//! `[logging] level` from the config file and applies it without a restart (a reload
//! layer around the filter). Plates go into log fields through [`LogPlate`], which
//! masks them unless `[logging] mask_plates = false`. The app secret and image bytes
//! never go into logs: no code path formats them (tests below pin that).

use crate::plate;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter {filter:?}: {message}")]
    BadFilter { filter: String, message: String },
    #[error("logging is already initialised")]
    AlreadyInitialised,
    #[error("cannot apply the log level: {0}")]
    Reload(String),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot write the log file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable; adapts to a terminal or journald.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How text lines look, decided from where stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Text { ansi: bool, timestamps: bool },
    Json,
}

impl Style {
    /// Pure decision: `stderr_is_terminal`, `under_journald` (`JOURNAL_STREAM` set).
    pub fn choose(format: LogFormat, stderr_is_terminal: bool, under_journald: bool) -> Style {
        match format {
            LogFormat::Json => Style::Json,
            LogFormat::Text if stderr_is_terminal => Style::Text {
                ansi: true,
                timestamps: true,
            },
            LogFormat::Text => Style::Text {
                ansi: false,
                timestamps: !under_journald,
            },
        }
    }

    /// The style for this process's stderr.
    pub fn detect(format: LogFormat) -> Style {
        Style::choose(
            format,
            std::io::stderr().is_terminal(),
            std::env::var_os("JOURNAL_STREAM").is_some(),
        )
    }
}

/// `[logging] mask_plates`; masking is on until told otherwise. The flag lives in
/// [`plate`] so the drivers' log lines follow it too.
pub fn set_mask_plates(mask: bool) {
    plate::set_log_masking(mask);
}

pub fn mask_plates() -> bool {
    plate::log_masking()
}

/// A plate as a log field: `tracing::info!(plate = %LogPlate(&text), ...)` writes
/// `闽A1***5` unless masking is off. No allocation when masking is off.
pub struct LogPlate<'a>(pub &'a str);

impl fmt::Display for LogPlate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&plate_text(self.0, mask_plates()))
    }
}

/// A plate as shown to people: masked (`闽A1***5`) or whole.
pub fn plate_text(plate: &str, mask: bool) -> std::borrow::Cow<'_, str> {
    if mask {
        std::borrow::Cow::Owned(plate::mask(plate))
    } else {
        std::borrow::Cow::Borrowed(plate)
    }
}

/// Changes the level of a running subscriber.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    /// Applies a filter in `RUST_LOG` syntax.
    pub fn set_level(&self, filter: &str) -> Result<(), LoggingError> {
        let new = parse_filter(filter)?;
        self.handle
            .reload(new)
            .map_err(|e| LoggingError::Reload(e.to_string()))
    }
}

fn parse_filter(filter: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(filter).map_err(|e| LoggingError::BadFilter {
        filter: filter.to_string(),
        message: e.to_string(),
    })
}

/// The filter at start-up: `RUST_LOG` when set, else `fallback` (`[logging] level`,
/// or `info` before the config is read).
pub fn initial_filter(fallback: &str) -> String {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => fallback.to_string(),
    }
}

/// A subscriber writing to `writer` in `style`, and the control of its level.
pub fn build<W>(
    style: Style,
    filter: &str,
    writer: W,
) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, LogControl), LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter_layer, handle) = reload::Layer::new(parse_filter(filter)?);
    let output = match style {
        Style::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed(),
        Style::Text {
            ansi,
            timestamps: true,
        } => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        Style::Text {
            ansi,
            timestamps: false,
        } => tracing_subscriber::fmt::layer()
            .compact()
            .without_time()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = Registry::default().with(filter_layer).with(output);
    Ok((subscriber, LogControl { handle }))
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Installs the process-wide subscriber appending to the file `path` (created with
/// its directory), plain text without colours: the demo's live view owns the terminal.
pub fn init_to_file(
    format: LogFormat,
    filter: &str,
    path: &Path,
) -> Result<LogControl, LoggingError> {
    let open = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let file = open().map_err(|source| LoggingError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let style = match format {
        LogFormat::Json => Style::Json,
        LogFormat::Text => Style::Text {
            ansi: false,
            timestamps: true,
        },
    };
    let (subscriber, control) = build(style, filter, std::sync::Mutex::new(file))?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialised)?;
    let _ = CONTROL.set(control.clone());
    Ok(control)
}

/// Installs the process-wide subscriber on stderr. Called once by `main`.
pub fn init(format: LogFormat, filter: &str) -> Result<LogControl, LoggingError> {
    let (subscriber, control) = build(Style::detect(format), filter, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialised)?;
    // Cannot already be set: set_global_default above succeeds only once per process.
    let _ = CONTROL.set(control.clone());
    Ok(control)
}

/// The control installed by [`init`], if logging was initialised.
pub fn control() -> Option<&'static LogControl> {
    CONTROL.get()
}

/// Applies `[logging]` once the config is loaded: plate masking always, the level
/// only when `RUST_LOG` does not override it.
pub fn apply_config(logging: &crate::config::LoggingConfig) {
    set_mask_plates(logging.mask_plates);
    if std::env::var("RUST_LOG")
        .map(|v| v.trim().is_empty())
        .unwrap_or(true)
        && let Some(control) = control()
        && let Err(e) = control.set_level(&logging.level)
    {
        tracing::warn!(error = %e, "keeping the previous log level");
    }
}

/// Re-reads `[logging]` from the config file (level and masking). Invalid files keep
/// the current settings. Used on SIGHUP; here an explicit `level` in the file wins
/// over `RUST_LOG`, because the operator asked for the change.
pub fn reload_from(config_path: &Path) -> Result<String, String> {
    let config = crate::config::SiteConfig::load(config_path).map_err(|e| e.to_string())?;
    set_mask_plates(config.logging.mask_plates);
    if let Some(control) = control() {
        control
            .set_level(&config.logging.level)
            .map_err(|e| e.to_string())?;
    }
    Ok(config.logging.level)
}

/// Spawns the task that applies `[logging]` from `config_path` on every SIGHUP
/// (`systemctl reload parking-bridge`).
pub fn spawn_sighup_reload(
    config_path: PathBuf,
) -> Result<tokio::task::JoinHandle<()>, LoggingError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(LoggingError::Signal)?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reload_from(&config_path) {
                Ok(level) => tracing::info!(level = %level, "SIGHUP: log settings reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: config unreadable, log settings unchanged")
                }
            }
        }
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects everything a subscriber writes.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// What `f` logs, as JSON lines at `level` and above, with what `f` returns.
    pub(crate) fn json_log<R>(level: &str, f: impl FnOnce() -> R) -> (R, String) {
        let out = Captured::default();
        let (sub, _) = build(Style::Json, level, out.clone()).unwrap();
        let result = tracing::subscriber::with_default(sub, f);
        (result, out.text())
    }

    #[test]
    fn text_style_follows_terminal_and_journald() {
        assert_eq!(
            Style::choose(LogFormat::Text, true, false),
            Style::Text {
                ansi: true,
                timestamps: true
            }
        );
        assert_eq!(
            Style::choose(LogFormat::Text, false, true),
            Style::Text {
                ansi: false,
                timestamps: false
            }
        );
        assert_eq!(
            Style::choose(LogFormat::Text, false, false),
            Style::Text {
                ansi: false,
                timestamps: true
            }
        );
        assert_eq!(Style::choose(LogFormat::Json, true, true), Style::Json);
    }

    #[test]
    fn journald_lines_carry_no_timestamp() {
        let out = Captured::default();
        let (sub, _) = build(
            Style::Text {
                ansi: false,
                timestamps: false,
            },
            "info",
            out.clone(),
        )
        .unwrap();
        tracing::subscriber::with_default(sub, || tracing::info!(lane = "entry-1", "hello"));
        let line = out.text();
        assert!(
            line.starts_with(" INFO") || line.starts_with("INFO"),
            "{line:?}"
        );
        assert!(
            !line.contains(&chrono::Utc::now().format("%Y-%m-%d").to_string()),
            "{line:?}"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_fields() {
        let (_, log) = json_log("info", || {
            tracing::info!(lane = "entry-1", depth = 3, "outbox")
        });
        let v: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(v["fields"]["lane"], "entry-1");
        assert_eq!(v["fields"]["depth"], 3);
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn level_changes_without_a_new_subscriber() {
        let out = Captured::default();
        let (sub, control) = build(Style::Json, "warn", out.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("first-info");
            control.set_level("debug").unwrap();
            tracing::debug!("second-debug");
            assert!(control.set_level("=,=bad").is_err());
            tracing::debug!("third-debug");
        });
        let text = out.text();
        assert!(!text.contains("first-info"), "{text}");
        assert!(text.contains("second-debug"), "{text}");
        assert!(
            text.contains("third-debug"),
            "a bad filter keeps the old one: {text}"
        );
    }

    #[test]
    fn plates_are_masked_unless_turned_off() {
        // No test flips the global flag (tests run in parallel): it defaults to masking.
        assert_eq!(LogPlate("闽A12345").to_string(), "闽A1***5");
        assert_eq!(plate_text("闽A12345", true), "闽A1***5");
        assert_eq!(plate_text("闽A12345", false), "闽A12345");
    }
}
