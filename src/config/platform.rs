//! `[platform]`: where and how to reach City Brain.

use super::Invalid;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// `https://host`; paths are appended; a trailing slash is tolerated.
    pub base_url: String,
    pub app_id: String,
    /// The 16-character SM4 key. Prefer `app_secret_file`; the environment variable
    /// `PARKING_BRIDGE_APP_SECRET` overrides both.
    #[serde(default)]
    pub app_secret: Option<String>,
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// Offset of the lot's local time, e.g. `+08:00` (default China Standard Time).
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
}

fn default_utc_offset() -> String {
    "+08:00".to_string()
}

fn default_heartbeat_secs() -> u64 {
    30
}

impl PlatformConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if self.heartbeat_secs == 0 || self.heartbeat_secs > 60 {
            out.push(Invalid::new(
                "platform.heartbeat_secs",
                "must be between 1 and 60 (the platform requires a heartbeat at most 60 s apart)",
            ));
        }
        if crate::time::parse_offset(&self.utc_offset).is_none() {
            out.push(Invalid::new(
                "platform.utc_offset",
                "expected an offset like \"+08:00\"",
            ));
        }
    }
}
