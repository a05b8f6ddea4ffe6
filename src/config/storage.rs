//! `[storage]`: where the state database, images and the event journal live, and how
//! the outbox keeps and delivers reports.

use super::{Invalid, check_at_least, check_between};
use serde::Deserialize;
use std::path::PathBuf;

/// How snapshot images travel to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// A separate `uploadSnapshot` request after the entry/exit is acknowledged.
    #[default]
    Separate,
    /// Inside the entry/exit report itself.
    Inline,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub dir: PathBuf,
    /// Acknowledged reports (and closed stays) are kept this long, then pruned.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Space pending snapshot images may take; when reached, the oldest pending images
    /// are dropped (entry and exit reports never are).
    #[serde(default = "default_disk_budget_mb")]
    pub disk_budget_mb: u64,
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// Reports of different stays in flight to the platform at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// The heartbeat says `lost` once every device of some lane has been unreachable
    /// for longer than this.
    #[serde(default = "default_lane_lost_after_secs")]
    pub lane_lost_after_secs: u64,
    /// Where `parking-bridge backup` writes (the default of its `--to`), e.g. from the
    /// shipped daily timer; `doctor` reports this file's age.
    #[serde(default)]
    pub backup_file: Option<PathBuf>,
    /// `doctor` fails when the backup is older than this.
    #[serde(default = "default_backup_max_age_hours")]
    pub backup_max_age_hours: u64,
}

fn default_backup_max_age_hours() -> u64 {
    26
}

fn default_retention_days() -> u32 {
    30
}

fn default_disk_budget_mb() -> u64 {
    1024
}

fn default_max_in_flight() -> usize {
    4
}

fn default_lane_lost_after_secs() -> u64 {
    120
}

impl StorageConfig {
    /// A config with every default, for tests and tools.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            dir: dir.into(),
            retention_days: default_retention_days(),
            disk_budget_mb: default_disk_budget_mb(),
            snapshot_mode: SnapshotMode::default(),
            max_in_flight: default_max_in_flight(),
            lane_lost_after_secs: default_lane_lost_after_secs(),
            backup_file: None,
            backup_max_age_hours: default_backup_max_age_hours(),
        }
    }

    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if self.dir.as_os_str().is_empty() {
            out.push(Invalid::new("storage.dir", "must not be empty"));
        }
        check_between(
            "storage.retention_days",
            self.retention_days,
            1..=3650,
            "",
            out,
        );
        check_at_least("storage.disk_budget_mb", self.disk_budget_mb, 1, out);
        check_between("storage.max_in_flight", self.max_in_flight, 1..=64, "", out);
        check_at_least(
            "storage.lane_lost_after_secs",
            self.lane_lost_after_secs,
            1,
            out,
        );
        if self
            .backup_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty() || f.starts_with(&self.dir))
        {
            out.push(Invalid::new(
                "storage.backup_file",
                "must be a file outside the storage dir (ideally on another disk)",
            ));
        }
        check_at_least(
            "storage.backup_max_age_hours",
            self.backup_max_age_hours,
            1,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_file_must_lie_outside_the_storage_dir() {
        let parse = |extra: &str| -> Vec<String> {
            let s: StorageConfig =
                toml::from_str(&format!("dir = \"/var/lib/pb\"\n{extra}")).unwrap();
            let mut out = Vec::new();
            s.validate(&mut out);
            out.into_iter().map(|i| i.key.to_string()).collect()
        };
        assert!(parse("backup_file = \"/var/backups/pb/state.db\"").is_empty());
        assert_eq!(
            parse("backup_file = \"/var/lib/pb/copy.db\""),
            vec!["storage.backup_file"]
        );
        assert_eq!(
            parse("backup_max_age_hours = 0"),
            vec!["storage.backup_max_age_hours"]
        );
    }

    #[test]
    fn defaults_apply_when_only_dir_is_given() {
        let s: StorageConfig = toml::from_str("dir = \"/var/lib/pb\"").unwrap();
        assert_eq!(s.retention_days, 30);
        assert_eq!(s.snapshot_mode, SnapshotMode::Separate);
        assert_eq!(s.max_in_flight, 4);
        let mut out = Vec::new();
        s.validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn inline_mode_parses_and_bad_values_are_refused() {
        let s: StorageConfig =
            toml::from_str("dir = \"x\"\nsnapshot_mode = \"inline\"\nretention_days = 0").unwrap();
        assert_eq!(s.snapshot_mode, SnapshotMode::Inline);
        let mut out = Vec::new();
        s.validate(&mut out);
        assert_eq!(out[0].key, "storage.retention_days");
        assert!(toml::from_str::<StorageConfig>("dir = \"x\"\nsnapshot_mode = \"both\"").is_err());
    }
}
