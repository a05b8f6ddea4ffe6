//! Site config: TOML → serde (`deny_unknown_fields`) → pure `validate()` → typed values.
//! Every error names the file, the line and the key.
//!
//! Each section's schema lives in its own file, owned by the part of the program that
//! uses it.

pub mod devices;
pub mod lanes;
pub mod lot;
pub mod ops;
pub mod platform;
pub mod storage;

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub use devices::{
    Attachment, BusConfig, CameraPushConfig, DeviceConfig, MqttConfig, Parity, Role,
};
pub use lanes::{Direction, LaneConfig};
pub use lot::LotConfig;
pub use ops::{HttpConfig, LoggingConfig};
pub use platform::PlatformConfig;
pub use storage::StorageConfig;

/// The whole site config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub platform: PlatformConfig,
    pub lot: LotConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub lanes: Vec<LaneConfig>,
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Extra directories searched for device profiles, before `./device-profiles`,
    /// `/usr/share/parking-bridge/device-profiles` and the built-in profiles.
    #[serde(default)]
    pub profile_dirs: Vec<String>,
    #[serde(default)]
    pub camera_push: Option<devices::CameraPushConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// One problem found by `validate()`: the dotted key path (`lanes[1].port_no`) and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A config error located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    /// 1-based; `None` when the key is absent from the file (a missing required key).
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Located>),
}

fn join_lines(errors: &[Located]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl SiteConfig {
    /// Reads, parses and validates a site config file.
    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` is only used in error messages and to
    /// resolve relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<SiteConfig, ConfigError> {
        let config: SiteConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            ConfigError::Invalid(vec![Located {
                file: path.to_path_buf(),
                line,
                key: String::new(),
                message: e.message().to_string(),
            }])
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|p| Located {
                        file: path.to_path_buf(),
                        line: locate_key(text, &p.key),
                        key: p.key,
                        message: p.message,
                    })
                    .collect(),
            ))
        }
    }

    /// Every rule that the types alone cannot express. Pure: no I/O.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        self.platform.validate(&mut out);
        self.lot.validate(&mut out);
        self.storage.validate(&mut out);
        lanes::validate_all(&self.lanes, &mut out);
        devices::validate_all(self, &mut out);
        self.http.validate(&mut out);
        out
    }

    pub fn lane(&self, id: &str) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| l.id == id)
    }
}

/// 1-based line of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a dotted key path like `lanes[1].port_no` or `platform.app_id`
/// in TOML text, using the parser's spans. Falls back to the enclosing table's line
/// when the key itself is absent, and `None` when nothing matches.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let doc: toml::Spanned<toml::de::DeTable> = toml::de::DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut table = doc.get_ref();
    let mut segments = split_key(key).into_iter().peekable();
    while let Some((name, index)) = segments.next() {
        let (k, v) = table.get_key_value(name.as_str())?;
        best = Some(line_of_offset(text, k.span().start));
        let mut value = v;
        if let Some(i) = index {
            match value.get_ref() {
                toml::de::DeValue::Array(items) => {
                    value = items.get(i)?;
                    best = Some(line_of_offset(text, value.span().start));
                }
                _ => return best,
            }
        }
        if segments.peek().is_none() {
            return best;
        }
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

fn split_key(key: &str) -> Vec<(String, Option<usize>)> {
    key.split('.')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.split_once('[') {
            Some((name, rest)) => (name.to_string(), rest.trim_end_matches(']').parse().ok()),
            None => (seg.to_string(), None),
        })
        .collect()
}
