//! `[storage]`: where the state database, images and the event journal live.

use super::Invalid;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub dir: PathBuf,
}

impl StorageConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if self.dir.as_os_str().is_empty() {
            out.push(Invalid::new("storage.dir", "must not be empty"));
        }
    }
}
